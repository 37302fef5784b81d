//! The verdict on one run: every check of `detcd-chaos` over the recorded history and the final
//! member states. Each failed check adds one explanation; the first violation with a window of
//! operations also yields the HTML page that shows it.
//!
//! A linearizability search that hits its state limit proves nothing, so an inconclusive
//! partition counts as a failure too: it is reported, never passed silently.

use detcd_chaos::checks;
use detcd_chaos::history::{History, KeyValue};
use detcd_chaos::linearizability::{self, Violation};
use detcd_chaos::report;

/// A member's final state: its name, the revision it was read at, and every key.
pub type FinalState = (String, i64, Vec<KeyValue>);

/// Runs every check; pushes one line per failure to `violations` and returns the HTML page of the
/// first failure that has a window of operations.
pub fn judge(history: &History, states: &[FinalState], violations: &mut Vec<String>, title: &str) -> Option<String> {
    let mut found: Vec<(&str, Violation)> = Vec::new();
    match linearizability::check(history) {
        Ok(summary) => {
            for partition in &summary.inconclusive {
                violations.push(format!(
                    "linearizability inconclusive for keys {:?}: {} ops, {} states explored",
                    partition.keys, partition.ops, partition.states_explored
                ));
            }
        }
        Err(v) => found.push(("not linearizable", v)),
    }
    if let Err(v) = checks::revisions_monotonic(history) {
        found.push(("revisions went backwards", v));
    }
    if let Err(v) = checks::members_agree(states) {
        found.push(("members disagree after healing", v));
    }
    if let Some((_, revision, kvs)) = states.first() {
        if let Err(v) = checks::no_lost_writes(history, *revision, kvs) {
            found.push(("an acknowledged write was lost", v));
        }
    }
    let html = found
        .iter()
        .find(|(_, v)| !v.ops.is_empty())
        .map(|(what, v)| report::html(history, &format!("{title}: {what}"), &v.message, &v.ops));
    violations.extend(found.iter().map(|(what, v)| format!("{what}: {v}")));
    html
}
