//! The verdict on one run: every check of `detcd-chaos` over the recorded history, the watch
//! streams, the leases and the final member states. Each failed check adds one explanation; the
//! first violation with a window of operations also yields the HTML page that shows it.
//!
//! A linearizability search that hits its state limit proves nothing, so an inconclusive
//! partition counts as a failure too: it is reported, never passed silently.
//!
//! Keys deleted by a lease's end. Expiry and revocation delete keys that no client asked to
//! delete, which the KV model cannot explain on its own. [`with_lease_ends`] adds, for each put
//! sent with a lease, an indeterminate delete of its key invoked with the put ("the lease's end
//! may delete it, any time after"): for an acknowledged put at revision r it is guarded by
//! `mod_revision == r`, so it can only remove the version that put made (a later put, with or
//! without a lease, detaches the key and fails the guard, as in etcd); for an indeterminate put it
//! is unconditional. Every real deletion by a lease's end removes the version of exactly one put
//! made with that lease, after that put, so each is explained by that put's delete and the search
//! stays sound. One lease deleting several keys at one revision is fine because each lease key is
//! a partition of its own (see `lease_client`). The linearizability and lost-write checks judge
//! that history; the watch and lease checks judge the recorded one, where these deletes would
//! excuse exactly what they look for.

use std::sync::{Arc, Mutex};

use detcd_chaos::checks;
use detcd_chaos::history::{
    Compare, CompareOp, CompareTarget, History, KeyValue, Operation, Outcome, Request, Response, TxnOp,
};
use detcd_chaos::lease::{check_leases, LeaseRecord};
use detcd_chaos::linearizability::{self, Violation};
use detcd_chaos::report;
use detcd_chaos::watch::{check_watches, WatchStreamRecord};

/// A member's final state: its name, the revision it was read at, and every key.
pub type FinalState = (String, i64, Vec<KeyValue>);

/// What a lease's end may have done, for the history's reports.
const LEASE_END: &str = "lease end";

/// Lines clients append while running: problems they noticed that the chaos records cannot carry
/// (a watch event's previous key-value, a keepalive answered for another lease), or a journal of
/// what they did for failure reports. Cheap to clone; every clone appends to the same list.
#[derive(Debug, Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    /// The lines so far, in order.
    pub fn finish(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Everything a run recorded besides the KV history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Records {
    pub watches: Vec<WatchStreamRecord>,
    pub leases: Vec<LeaseRecord>,
    /// Every (key, value) put with a lease, whatever the put's outcome.
    pub lease_puts: Vec<(String, String)>,
    /// What clients noticed while running (each one fails the run).
    pub findings: Vec<String>,
    /// What the lease clients did, where and when (for failure reports; not judged).
    pub journal: Vec<String>,
}

/// `history` plus an indeterminate delete for every put sent with a lease (see the module docs).
pub fn with_lease_ends(history: &History, lease_puts: &[(String, String)]) -> History {
    let lease_puts: std::collections::BTreeSet<(&str, &str)> =
        lease_puts.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    let end_ns = history.ops.iter().map(|op| op.complete_ns).max().unwrap_or(0);
    let mut next_id = history.ops.iter().map(|op| op.id + 1).max().unwrap_or(0);
    let mut augmented = history.clone();
    for op in &history.ops {
        let Request::Put { key, value } = &op.request else { continue };
        if !lease_puts.contains(&(key.as_str(), value.as_str())) {
            continue;
        }
        let request = match &op.outcome {
            Outcome::Fail { .. } => continue,
            Outcome::Ok(Response::Put { revision }) => Request::Txn {
                compares: vec![Compare {
                    key: key.clone(),
                    op: CompareOp::Equal,
                    target: CompareTarget::ModRevision(*revision),
                }],
                success: vec![TxnOp::Delete { key: key.clone() }],
                failure: Vec::new(),
            },
            Outcome::Ok(_) | Outcome::Indeterminate { .. } => Request::Delete { key: key.clone() },
        };
        augmented.ops.push(Operation {
            id: next_id,
            client: op.client,
            member: LEASE_END.to_string(),
            invoke_ns: op.invoke_ns,
            complete_ns: end_ns.max(op.invoke_ns),
            request,
            outcome: Outcome::Indeterminate {
                reason: format!("the end of the lease put by #{} (expiry or revoke) may delete it", op.id),
            },
        });
        next_id += 1;
    }
    augmented
}

/// Runs every check; pushes one line per failure to `violations` and returns the HTML page of the
/// first failure that has a window of operations.
pub fn judge(
    history: &History,
    states: &[FinalState],
    records: &Records,
    violations: &mut Vec<String>,
    title: &str,
) -> Option<String> {
    let kv_history = with_lease_ends(history, &records.lease_puts);
    let mut found: Vec<(&str, Violation)> = Vec::new();
    match linearizability::check(&kv_history) {
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
        if let Err(v) = checks::no_lost_writes(&kv_history, *revision, kvs) {
            found.push(("an acknowledged write was lost", v));
        }
    }
    if let Err(v) = check_watches(history, &records.watches) {
        found.push(("a watch stream is wrong", v));
    }
    if let Err(v) = check_leases(history, &records.leases, &records.watches) {
        found.push(("a lease is wrong", v));
    }
    let html = found
        .iter()
        .find(|(_, v)| !v.ops.is_empty())
        .map(|(what, v)| report::html(&kv_history, &format!("{title}: {what}"), &v.message, &v.ops));
    violations.extend(found.iter().map(|(what, v)| format!("{what}: {v}")));
    violations.extend(records.findings.iter().map(|finding| format!("a client noticed: {finding}")));
    html
}

/// After every lease had time to expire: no member holds a lease, and no key put with a lease is
/// left. `leases` holds, per member, its name and the lease ids it lists.
pub fn leases_drained(
    leases: &[(String, Vec<i64>)],
    states: &[FinalState],
    lease_puts: &[(String, String)],
    violations: &mut Vec<String>,
) {
    for (member, ids) in leases.iter().filter(|(_, ids)| !ids.is_empty()) {
        violations.push(format!(
            "leases outlived every possible renewal: {member} still lists {} lease(s), e.g. {:x}",
            ids.len(),
            ids[0]
        ));
    }
    let Some((member, revision, kvs)) = states.first() else { return };
    let put: std::collections::BTreeSet<(&str, &str)> =
        lease_puts.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    for kv in kvs.iter().filter(|kv| put.contains(&(kv.key.as_str(), kv.value.as_str()))) {
        violations.push(format!(
            "a key outlived its lease: {member} still holds {:?} = {:?} (mod revision {}) at revision {revision}, put with a lease that can no longer exist",
            kv.key, kv.value, kv.mod_revision
        ));
    }
}
