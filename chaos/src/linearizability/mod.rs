//! The linearizability checker: proves a [`History`] linearizable against the etcd v3 KV model,
//! or returns a small window of operations that is not.
//!
//! Front door: [`check`]. The pipeline, one module each:
//!
//! 1. `prepare` drops what cannot constrain (failed operations, indeterminate reads), validates
//!    that responses fit their requests and splits keys into independent partitions;
//! 2. `classify` decides which operations the search must place and which it may, and `search`
//!    looks for a linearization of each partition (Wing & Gong with Lowe's memo, in `memo`) over
//!    the model in `model`, which owns every etcd rule and every invariant about revisions;
//! 3. on failure, `window` narrows the failing partition to a small sub-history that still fails,
//!    and `render` prints it. When a partition is too expensive to search whole, `window` also
//!    looks for a small sub-history that fails on its own, which proves the violation as well.
//!
//! The checker must never report a violation on a history a correct etcd could produce: every
//! approximation (partitioning, unknown revisions of indeterminate writes, cuts of the window)
//! relaxes the model, and the module docs say why each one does. What it gives up is completeness
//! across partitions (cross-partition atomicity of ranges), which `checks::revisions_monotonic`
//! covers in part. Histories must start from an empty store.
//!
//! A search that exceeds its budget proves nothing: the partition is listed in
//! [`Summary::inconclusive`] instead of hanging the run. Everything is deterministic: budgets count
//! states, not time.

mod classify;
mod memo;
mod model;
mod prepare;
mod render;
mod search;
#[doc(hidden)]
pub mod testgen;
mod window;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::history::{History, Operation};

use self::model::{Gaps, KeyIdx};
use self::prepare::{LocalOp, Partition};
use self::search::{search, Failure, Verdict};

pub(crate) use self::prepare::in_range;
pub(crate) use self::render::key_value as render_key_value;
pub use self::render::operation_line;
pub(crate) use self::render::seconds as render_seconds;

/// Memoized states one partition's search may visit before it is declared inconclusive (unless a
/// window of it fails, see [`WITNESS_WIDTHS`]).
pub const SEARCH_STATES_MAX: u64 = 1_000_000;

/// Memoized states of the first, brief search of a partition; past them, windows of it are tried
/// before the search resumes from scratch with [`SEARCH_STATES_MAX`].
pub const FIRST_PASS_STATES_MAX: u64 = 100_000;

/// Widths, in operations, of the windows slid over a partition whose brief search was
/// inconclusive, looking for one that fails on its own.
pub const WITNESS_WIDTHS: [usize; 3] = [64, 256, 1024];

/// Memoized states each search of a sliding window may visit.
pub const WITNESS_STATES_MAX: u64 = 20_000;

/// Memoized states each search probing a window may visit.
pub const WINDOW_STATES_MAX: u64 = 200_000;

/// Operations the window shrink tries to drop, at most.
pub const WINDOW_SHRINK_TRIES_MAX: usize = 128;

/// Operation ids a violation message lists in one sentence, at most.
const CONTEXT_SHOWN_MAX: usize = 20;

/// What a successful check covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Independent key groups searched.
    pub partitions: usize,
    /// History operations that took part (acknowledged ones and indeterminate writes).
    pub ops_checked: usize,
    /// Memoized states over all searches.
    pub states_explored: u64,
    /// Model operations in the largest partition.
    pub largest_partition_ops: usize,
    /// Partitions whose search hit [`SEARCH_STATES_MAX`]: nothing is proven about them.
    pub inconclusive: Vec<Inconclusive>,
}

impl Summary {
    /// Whether every partition was proven linearizable.
    pub fn is_conclusive(&self) -> bool {
        self.inconclusive.is_empty()
    }
}

/// A partition the search gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconclusive {
    pub keys: Vec<String>,
    /// Model operations in it.
    pub ops: usize,
    pub states_explored: u64,
}

/// A history that breaks a checked property, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The keys involved.
    pub keys: Vec<String>,
    /// Ids of the operations of the window, in invocation order.
    pub ops: Vec<u64>,
    /// What is wrong, and why the window shows it.
    pub message: String,
    /// The operations of `ops`, as recorded, for reports.
    pub window: Vec<Operation>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.message)?;
        if !self.window.is_empty() {
            writeln!(f, "window ({} operations, invocation order):", self.window.len())?;
        }
        for op in &self.window {
            writeln!(f, "  {}", operation_line(op))?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// Checks `history` with the default search budget.
pub fn check(history: &History) -> Result<Summary, Violation> {
    check_with_limit(history, SEARCH_STATES_MAX)
}

/// Checks `history`, giving up on a partition after `states_max` memoized states.
pub fn check_with_limit(history: &History, states_max: u64) -> Result<Summary, Violation> {
    let prepared = prepare::prepare(history)?;
    let mut summary =
        Summary { partitions: prepared.partitions.len(), ops_checked: prepared.ops_kept, ..Summary::default() };
    for partition in &prepared.partitions {
        summary.largest_partition_ops = summary.largest_partition_ops.max(partition.ops.len());
        let (verdict, states_explored) = check_partition(partition, &prepared.gaps, states_max);
        summary.states_explored += states_explored;
        match verdict {
            Settled::Linearizable => {}
            Settled::Inconclusive => summary.inconclusive.push(Inconclusive {
                keys: partition.keys.clone(),
                ops: partition.ops.len(),
                states_explored,
            }),
            Settled::Fails { ops, start_ns } => {
                return Err(violation(history, partition, &prepared, &ops, start_ns));
            }
        }
    }
    Ok(summary)
}

/// What the checks of one partition found.
enum Settled {
    Linearizable,
    Inconclusive,
    /// This sub-history of it is not linearizable from absent keys, or from unknown ones at
    /// `start_ns` (see [`window::minimal`]).
    Fails {
        ops: Vec<LocalOp>,
        start_ns: Option<u64>,
    },
}

/// Searches one partition: briefly, then, if that did not settle it, for a small window that
/// fails on its own, then at length. Returns what it found and the states explored.
fn check_partition(partition: &Partition, gaps: &Gaps, states_max: u64) -> (Settled, u64) {
    let keys = partition.keys.len();
    let mut explored = 0;
    for (pass, budget) in [FIRST_PASS_STATES_MAX.min(states_max), states_max].into_iter().enumerate() {
        let result = search(&partition.ops, keys, false, gaps, budget, false);
        explored += result.states_explored;
        match result.verdict {
            Verdict::Linearizable => return (Settled::Linearizable, explored),
            Verdict::NotLinearizable(_) => {
                return (Settled::Fails { ops: partition.ops.clone(), start_ns: None }, explored);
            }
            Verdict::Inconclusive if pass == 0 && budget < states_max => {
                if let Some((ops, start_ns)) = window::find_failing(&partition.ops, keys, gaps) {
                    return (Settled::Fails { ops, start_ns }, explored);
                }
            }
            Verdict::Inconclusive => return (Settled::Inconclusive, explored),
        }
    }
    (Settled::Inconclusive, explored)
}

/// Builds the violation of a partition from the minimal window of `ops`, a failing sub-history of it
/// (starting from unknown keys at `start_ns`, if given).
fn violation(
    history: &History,
    partition: &Partition,
    prepared: &prepare::Prepared,
    ops: &[LocalOp],
    start_ns: Option<u64>,
) -> Violation {
    let window = window::minimal(ops, partition.keys.len(), &prepared.gaps, start_ns);
    let by_id: HashMap<u64, &Operation> = history.ops.iter().map(|op| (op.id, op)).collect();
    let touched: BTreeSet<KeyIdx> = window.ops.iter().flat_map(|op| op.step.keys()).collect();
    let keys: Vec<(&str, usize)> =
        touched.iter().map(|&key| (partition.keys[key as usize].as_str(), key as usize)).collect();
    let mut ids: Vec<u64> = window.ops.iter().map(|op| op.id).collect();
    ids.dedup();
    let message = explain(&window, &keys, &prepared.values);
    Violation {
        keys: keys.iter().map(|(name, _)| name.to_string()).collect(),
        window: ids.iter().filter_map(|id| by_id.get(id).map(|op| (*op).clone())).collect(),
        ops: ids,
        message,
    }
}

/// Says which operation could not take effect, after which order, in which state, and what the
/// window's cuts assumed.
fn explain(window: &window::Window, keys: &[(&str, usize)], values: &[String]) -> String {
    let names: Vec<&str> = keys.iter().map(|(name, _)| *name).collect();
    let mut message = format!(
        "not linearizable: no order of these {} operations on {names:?} agrees with etcd's KV model and real time.",
        window.ops.len()
    );
    match &window.failure {
        Some((searched, failure)) => message += &explain_dead_end(searched, failure, keys, values),
        None => message += "\n(Explaining it exceeded the search budget.)",
    }
    message + &explain_assumptions(window)
}

/// The deepest dead end: the order that got furthest and the operation that could not follow it.
fn explain_dead_end(searched: &[LocalOp], failure: &Failure, keys: &[(&str, usize)], values: &[String]) -> String {
    let order: Vec<String> = failure.order.iter().map(|&at| format!("#{}", searched[at].id)).collect();
    let order = if order.is_empty() { "empty".to_string() } else { order.join(", ") };
    let blocked = &searched[failure.blocked];
    let deadline = match (&blocked.expect, blocked.relaxed) {
        (Some(_), _) => format!("by {}", render::seconds(blocked.complete_ns)),
        (None, Some(_)) => "before the window ends".to_string(),
        (None, None) => "before the read of its value completed".to_string(),
    };
    let impossible: Vec<u64> = failure.impossible.iter().map(|&at| searched[at].id).collect();
    let impossible = match impossible.as_slice() {
        [] => String::new(),
        [id] if *id == blocked.id => String::new(),
        [id] => format!(" In that state the response of #{id} is impossible."),
        ids => format!(" In that state the responses of {} are impossible.", list_ids(ids)),
    };
    format!(
        "\nLongest consistent order: {order}, leaving {}.\nThen #{} must take effect {deadline}, and cannot: \
         what it did or saw disagrees with every state reachable in time.{impossible}",
        render::state(&failure.state, keys, values),
        blocked.id
    )
}

/// Up to [`CONTEXT_SHOWN_MAX`] operation ids, then how many more.
fn list_ids(ids: &[u64]) -> String {
    let mut shown: Vec<String> = ids.iter().take(CONTEXT_SHOWN_MAX).map(|id| format!("#{id}")).collect();
    if ids.len() > CONTEXT_SHOWN_MAX {
        shown.push(format!("and {} more", ids.len() - CONTEXT_SHOWN_MAX));
    }
    shown.join(", ")
}

/// What the window assumed about what it cut off.
fn explain_assumptions(window: &window::Window) -> String {
    let mut message = String::new();
    if let Some(start_ns) = window.start_ns {
        message += &format!(
            "\nOperations completed before {} are summarized as an unknown starting state.",
            render::seconds(start_ns)
        );
    }
    let relaxed: Vec<u64> = window.ops.iter().filter(|op| op.relaxed.is_some()).map(|op| op.id).collect();
    if !relaxed.is_empty() {
        message += &format!(
            "\nIn flight at the window's edges, so only their effects count, not their responses: {}.",
            list_ids(&relaxed)
        );
    }
    if !window.context.is_empty() {
        message += &format!(
            "\nIt stays so whether or not these writes took effect, at any time after their invocation: {}.",
            list_ids(&window.context)
        );
    }
    message
}

#[cfg(test)]
mod tests;
