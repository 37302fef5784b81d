//! Narrows a non-linearizable partition down to a small window that is still not linearizable.
//!
//! Cutting a history must not invent a violation, so every cut relaxes what it keeps. A read whose
//! response can no longer be trusted is dropped; such a write is *relaxed*: its response is not
//! checked, but what it did is a fact no cut changes (the branch it ran, the revision it created),
//! so if it takes effect in the window, it does exactly that (`prepare::Relaxed`).
//!
//! - The upper cut keeps the operations invoked before some instant. One still in flight then may
//!   have read the effects of operations the cut dropped: it is relaxed, and must still take
//!   effect, at any time after its invocation.
//! - The lower cut drops acknowledged operations that completed before some instant and starts the
//!   model from unknown keys (whatever those operations left). One in flight at that instant may
//!   have taken effect on either side: it is relaxed, and `settle` decides which side it can be
//!   on. Indeterminate writes stay.
//! - The shrink drops acknowledged operations that wrote nothing, which only ever constrain, while
//!   the window keeps failing.
//! - The window shown leaves out the writes that may never have taken effect and that no
//!   acknowledged read saw: leaving one out only removes possibilities.
//!
//! So if the window is not linearizable, neither is the partition. Cuts are found by bisection
//! over invocation times, each probe a bounded search ([`WINDOW_STATES_MAX`]); a probe that runs
//! out of budget counts as linearizable, which keeps the window larger, never wrong.

use std::collections::HashSet;

use super::model::{Gaps, Seen, ValueId};
use super::prepare::{Effect, LocalOp, Relaxed, Until};
use super::search::{search, Failure, Verdict};
use super::{WINDOW_SHRINK_TRIES_MAX, WINDOW_STATES_MAX, WITNESS_STATES_MAX, WITNESS_WIDTHS};

/// A sub-history of one partition that is not linearizable on its own.
#[derive(Debug)]
pub(crate) struct Window {
    pub ops: Vec<LocalOp>,
    /// Writes left out of `ops` that may never have taken effect: it fails with or without them.
    pub context: Vec<u64>,
    /// The lower cut, if one was made: the model then starts from unknown keys.
    pub start_ns: Option<u64>,
    /// The deepest dead end of the search over the whole window (`ops` and `context`), if it fit
    /// in the budget, with that window: the failure's indices point into it.
    pub failure: Option<(Vec<LocalOp>, Failure)>,
}

/// Runs bounded searches over sub-histories of one partition.
struct Probe<'a> {
    keys: usize,
    gaps: &'a Gaps,
    states_max: u64,
}

impl Probe<'_> {
    fn fails(&self, ops: &[LocalOp], unknown_start: bool) -> bool {
        let result = search(ops, self.keys, unknown_start, self.gaps, self.states_max, false);
        matches!(result.verdict, Verdict::NotLinearizable(_))
    }
}

/// An acknowledged operation whose response cannot be trusted (see the module doc); `None` for a
/// read, or for a write that created nothing.
fn relax(op: &LocalOp, until: Until) -> Option<LocalOp> {
    let effect = op.expect.as_ref().and_then(Effect::of)?;
    Some(LocalOp { expect: None, relaxed: Some(Relaxed { effect, until }), ..op.clone() })
}

/// The first `count` operations, with those still in flight when the next one was invoked relaxed.
fn upper_cut(ops: &[LocalOp], count: usize) -> Vec<LocalOp> {
    let cut_ns = ops.get(count).map(|op| op.invoke_ns);
    let in_flight = |op: &LocalOp| op.expect.is_some() && cut_ns.is_some_and(|cut| op.complete_ns >= cut);
    let cut = |op: &LocalOp| if in_flight(op) { relax(op, Until::Eventually) } else { Some(op.clone()) };
    ops[..count].iter().filter_map(cut).collect()
}

/// `ops` from `start_ns` on (see the module doc).
fn lower_cut(ops: &[LocalOp], start_ns: u64) -> Vec<LocalOp> {
    let cut = |op: &LocalOp| match (&op.expect, op.relaxed) {
        _ if op.invoke_ns >= start_ns => Some(op.clone()),
        (Some(_), _) if op.complete_ns < start_ns => None,
        (Some(_), _) => relax(op, Until::Maybe),
        (None, Some(relaxed)) => {
            Some(LocalOp { relaxed: Some(Relaxed { until: Until::Maybe, ..relaxed }), ..op.clone() })
        }
        (None, None) => Some(op.clone()),
    };
    settle(ops.iter().filter_map(cut).collect())
}

/// The highest floor a required operation of a window can be linearized at.
fn required_floor_max(op: &LocalOp) -> Option<i64> {
    match (&op.expect, op.relaxed) {
        (Some(expect), _) => Some(expect.floor_max()),
        (None, Some(Relaxed { effect, until: Until::Eventually })) => Some(effect.revision - 1),
        _ => None,
    }
}

/// Decides each write relaxed at the lower cut. If some required operation must precede it (its
/// floor cannot reach the write's revision), that one took effect after the cut, so the write did
/// too: it is required. Otherwise, if it took effect in the window, it was first, which the
/// unknown start already covers: it is dropped.
fn settle(ops: Vec<LocalOp>) -> Vec<LocalOp> {
    let lowest = ops.iter().filter_map(required_floor_max).min();
    ops.into_iter()
        .filter_map(|op| match op.relaxed {
            Some(Relaxed { effect, until: Until::Maybe }) => lowest
                .filter(|&floor| floor < effect.revision)
                .map(|_| LocalOp { relaxed: Some(Relaxed { effect, until: Until::Eventually }), ..op }),
            _ => Some(op),
        })
        .collect()
}

/// The smallest prefix count whose upper cut fails, given that all of `ops` fails.
fn shortest_failing_prefix(probe: &Probe<'_>, ops: &[LocalOp], unknown_start: bool) -> usize {
    let (mut passes, mut fails_at) = (0, ops.len());
    while fails_at - passes > 1 {
        let mid = passes + (fails_at - passes) / 2;
        if probe.fails(&upper_cut(ops, mid), unknown_start) {
            fails_at = mid;
        } else {
            passes = mid;
        }
    }
    fails_at
}

/// The latest lower cut of `ops` that still fails, given that `ops` fails as it is.
fn latest_failing_start(probe: &Probe<'_>, ops: &[LocalOp]) -> usize {
    let (mut fails_from, mut passes) = (0, ops.len());
    while passes - fails_from > 1 {
        let mid = fails_from + (passes - fails_from) / 2;
        if probe.fails(&lower_cut(ops, ops[mid].invoke_ns), true) {
            fails_from = mid;
        } else {
            passes = mid;
        }
    }
    fails_from
}

/// Drops acknowledged operations that wrote nothing (reads, failed compare-and-sets), latest
/// first, within [`WINDOW_SHRINK_TRIES_MAX`] probes, whenever the window still fails without them.
fn drop_reads(probe: &Probe<'_>, mut ops: Vec<LocalOp>, unknown_start: bool) -> Vec<LocalOp> {
    let mut tries = 0;
    for at in (0..ops.len()).rev() {
        let wrote = ops[at].expect.as_ref().is_none_or(|expect| Effect::of(expect).is_some());
        if wrote || tries == WINDOW_SHRINK_TRIES_MAX {
            continue;
        }
        tries += 1;
        let mut fewer = ops.clone();
        fewer.remove(at);
        if probe.fails(&fewer, unknown_start) {
            ops = fewer;
        }
    }
    ops
}

/// Splits a failing window into the operations to show and the writes that may never have taken
/// effect and that no acknowledged read saw.
fn core(ops: &[LocalOp]) -> (Vec<LocalOp>, Vec<u64>) {
    let seen: HashSet<ValueId> = ops
        .iter()
        .flat_map(|op| op.expect.iter().flat_map(|expect| &expect.results))
        .filter_map(|seen| match seen {
            Seen::Get(Some(kv)) => Some(kv.value),
            _ => None,
        })
        .collect();
    let shown = |op: &&LocalOp| {
        let optional = op.expect.is_none() && op.relaxed.is_none_or(|relaxed| relaxed.until == Until::Maybe);
        !optional || op.step.put_values().any(|value| seen.contains(&value))
    };
    let (core, context): (Vec<&LocalOp>, Vec<&LocalOp>) = ops.iter().partition(shown);
    (core.into_iter().cloned().collect(), context.into_iter().map(|op| op.id).collect())
}

/// A failing window found by sliding windows of [`WITNESS_WIDTHS`] operations over `ops` (sorted
/// by invocation), with where it starts; `None` if none fails. For when the whole partition is too
/// expensive to search: each window is small, and a failing one is as good a proof.
pub(crate) fn find_failing(ops: &[LocalOp], keys: usize, gaps: &Gaps) -> Option<(Vec<LocalOp>, Option<u64>)> {
    let probe = Probe { keys, gaps, states_max: WITNESS_STATES_MAX };
    for width in WITNESS_WIDTHS.into_iter().filter(|&width| width < ops.len()) {
        for first in (0..ops.len()).step_by(width / 2) {
            let prefix = upper_cut(ops, (first + width).min(ops.len()));
            let start_ns = (first > 0).then(|| ops[first].invoke_ns);
            let window = match start_ns {
                Some(start_ns) => lower_cut(&prefix, start_ns),
                None => prefix,
            };
            if probe.fails(&window, start_ns.is_some()) {
                return Some((window, start_ns));
            }
        }
    }
    None
}

/// A small failing window of `ops` (sorted by invocation), which must not be linearizable from
/// absent keys, or from unknown ones at `start_ns`.
pub(crate) fn minimal(ops: &[LocalOp], keys: usize, gaps: &Gaps, start_ns: Option<u64>) -> Window {
    let probe = Probe { keys, gaps, states_max: WINDOW_STATES_MAX };
    let prefix = upper_cut(ops, shortest_failing_prefix(&probe, ops, start_ns.is_some()));
    let first = latest_failing_start(&probe, &prefix);
    let start_ns = prefix.get(first).filter(|_| first > 0).map(|op| op.invoke_ns).or(start_ns);
    let unknown_start = start_ns.is_some();
    let window = if first > 0 { lower_cut(&prefix, prefix[first].invoke_ns) } else { prefix };
    let window = drop_reads(&probe, window, unknown_start);
    // Explained over the whole window, so that the dead end is the one the window really has.
    let failure = match search(&window, keys, unknown_start, gaps, WINDOW_STATES_MAX, true).verdict {
        Verdict::NotLinearizable(failure) => failure,
        Verdict::Linearizable | Verdict::Inconclusive => None,
    };
    let (ops, context) = core(&window);
    Window { ops, context, start_ns, failure: failure.map(|failure| (window, failure)) }
}
