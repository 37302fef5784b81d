//! Plans a partition's search: which operations are required (with their deadlines), which are
//! optional and interchangeable, and which values nothing acknowledged can tell apart.
//!
//! - An acknowledged operation is required by its completion.
//! - A write a window relaxed (`prepare::Relaxed`) runs its known branch at its known revision,
//!   required at any time after its invocation, or optional.
//! - An indeterminate read is dropped: it constrains nothing.
//! - An indeterminate write whose unique value an acknowledged read saw must have taken effect
//!   before that read completed: it is required by then (with any response); if it writes
//!   unconditionally, the mod revision the read saw is the revision it created.
//! - Any other indeterminate write is optional. Values no acknowledged operation reads or names are
//!   replaced by [`GHOST_VALUE`] everywhere, which makes many optional writes identical; identical
//!   ones form a class, and the search only ever tries a class's earliest-invoked unused member
//!   (any later member could be swapped for it: it was invoked no later and acts the same).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::model::{Action, Expect, Known, Seen, Step, Target, ValueId, GHOST_VALUE};
use super::prepare::{LocalOp, Relaxed, Until};

/// An operation as the search sees it.
#[derive(Debug)]
pub(crate) struct Planned<'a> {
    /// Index into the searched operations.
    pub source: usize,
    pub step: Cow<'a, Step>,
    pub known: Known<'a>,
    pub invoke_ns: u64,
    /// When it must have taken effect; `None` for an optional (indeterminate) one.
    pub deadline_ns: Option<u64>,
    /// Its class of interchangeable optional operations and its rank there by invocation.
    pub class: Option<(usize, u32)>,
    /// For an operation whose revision is known, the highest floor it can still be linearized
    /// at: its revision, less one if it created that revision.
    pub floor_max: Option<i64>,
}

/// Which values matter to which operation.
#[derive(Default)]
struct Values {
    /// Earliest completion of an acknowledged operation that read each value.
    read_by_ns: HashMap<ValueId, u64>,
    /// The mod revision an acknowledged read saw with each value.
    read_at_revision: HashMap<ValueId, i64>,
    /// How many operations put each value.
    writers: HashMap<ValueId, u32>,
    /// Values some acknowledged compare names.
    named: HashSet<ValueId>,
    /// Whether some indeterminate write is optional: only then are values replaced by the ghost.
    ghosts: bool,
}

impl Values {
    fn of(ops: &[LocalOp]) -> Values {
        let mut values = Values::default();
        for op in ops {
            for value in op.step.put_values() {
                *values.writers.entry(value).or_default() += 1;
            }
            for cmp in op.step.compares.iter().filter(|_| op.expect.is_some()) {
                if let Target::Value(value) = cmp.target {
                    values.named.insert(value);
                }
            }
            let results = op.expect.iter().flat_map(|expect| &expect.results);
            for seen in results {
                if let Seen::Get(Some(kv)) = seen {
                    let at = values.read_by_ns.entry(kv.value).or_insert(op.complete_ns);
                    *at = (*at).min(op.complete_ns);
                    values.read_at_revision.entry(kv.value).or_insert(kv.modified);
                }
            }
        }
        values.ghosts = ops.iter().any(|op| op.expect.is_none() && values.deadline_ns(op).is_none());
        values
    }

    /// When an indeterminate write must have taken effect: before the first acknowledged read of a
    /// value only it puts completed (if that read completed before the write was even invoked, the
    /// history is not linearizable and an immediate deadline says so).
    fn deadline_ns(&self, op: &LocalOp) -> Option<u64> {
        let reads = op.step.put_values().filter(|value| self.writers.get(value) == Some(&1));
        reads.filter_map(|value| self.read_by_ns.get(&value).copied()).min().map(|at| at.max(op.invoke_ns))
    }

    /// The revision a required indeterminate write created, when it puts unconditionally and a read
    /// saw one of its values (each only it puts): the mod revision that read saw. Should two reads
    /// disagree, the one this picks makes the other fail, as it must.
    fn revision(&self, op: &LocalOp) -> Option<i64> {
        if !op.step.compares.is_empty() || op.relaxed.is_some() {
            return None;
        }
        let unique = op.step.put_values().filter(|value| self.writers.get(value) == Some(&1));
        unique.filter_map(|value| self.read_at_revision.get(&value).copied()).next()
    }

    /// Whether no acknowledged operation reads or names `value`.
    fn unseen(&self, value: ValueId) -> bool {
        !self.read_by_ns.contains_key(&value) && !self.named.contains(&value)
    }

    /// Replaces the values no acknowledged operation reads or names by the ghost, in puts and in
    /// compares; `None` if there are none. Nothing acknowledged can tell such values apart: only the
    /// versions, revisions and deleted counts their puts leave show, the same for all of them.
    /// Their compares in indeterminate operations become undecided (see `model::compare_values`).
    fn ghostly(&self, step: &Step) -> Option<Step> {
        let puts = step.put_values().any(|value| self.unseen(value));
        let compares = step.compares.iter().any(|cmp| matches!(cmp.target, Target::Value(value) if self.unseen(value)));
        if !self.ghosts || !puts && !compares {
            return None;
        }
        let mut step = step.clone();
        for action in step.success.iter_mut().chain(step.failure.iter_mut()) {
            if let Action::Put(_, value) = action {
                if self.unseen(*value) {
                    *value = GHOST_VALUE;
                }
            }
        }
        for cmp in &mut step.compares {
            if let Target::Value(value) = &mut cmp.target {
                if self.unseen(*value) {
                    *value = GHOST_VALUE;
                }
            }
        }
        Some(step)
    }
}

/// Plans the search: acknowledged operations are required until their completion; indeterminate
/// reads are dropped; indeterminate writes are required (see [`Values::deadline_ns`]) or optional
/// and classed.
pub(crate) fn plan(ops: &[LocalOp], ghosts: bool) -> Vec<Planned<'_>> {
    let mut values = Values::of(ops);
    values.ghosts &= ghosts;
    let mut classes: HashMap<Step, (usize, u32)> = HashMap::new();
    let mut plan = Vec::with_capacity(ops.len());
    for (source, op) in ops.iter().enumerate() {
        let mut planned = Planned {
            source,
            step: values.ghostly(&op.step).map_or(Cow::Borrowed(&op.step), Cow::Owned),
            known: match (&op.expect, op.relaxed) {
                (Some(expect), _) => Known::Response(expect),
                (None, Some(Relaxed { effect, .. })) => {
                    Known::Effect { revision: effect.revision, succeeded: effect.succeeded }
                }
                (None, None) => Known::Nothing,
            },
            invoke_ns: op.invoke_ns,
            deadline_ns: Some(op.complete_ns),
            class: None,
            floor_max: op.expect.as_ref().map(Expect::floor_max),
        };
        if op.expect.is_none() {
            if op.step.is_read_only() {
                continue;
            }
            planned.deadline_ns = match op.relaxed {
                Some(Relaxed { until: Until::Eventually, .. }) => Some(u64::MAX),
                Some(Relaxed { until: Until::Maybe, .. }) | None => values.deadline_ns(op),
            };
            if let Some(revision) = values.revision(op).filter(|_| planned.deadline_ns.is_some()) {
                planned.known = Known::Effect { revision, succeeded: true };
            }
            if let (Some(_), Known::Effect { revision, .. }) = (planned.deadline_ns, planned.known) {
                planned.floor_max = Some(revision - 1);
            }
            if planned.deadline_ns.is_none() && op.relaxed.is_none() {
                let next_class = classes.len();
                let class = classes.entry(planned.step.as_ref().clone()).or_insert((next_class, 0));
                planned.class = Some(*class);
                class.1 += 1;
            }
        }
        plan.push(planned);
    }
    plan
}
