//! Cheap history checks that complement the linearizability search.
//!
//! - [`revisions_monotonic`]: header revisions never go back in real time nor along one client's
//!   operations, every write creates a revision of its own (etcd's revision is one global counter:
//!   the per-partition search cannot see order across partitions, this check can);
//! - [`no_lost_writes`]: a final read after healing still shows every acknowledged write, or
//!   something newer;
//! - [`members_agree`]: every member ends with the same revision and key-values.
//!
//! Each returns the first [`Violation`] found, naming the operations (or members) involved. Only
//! acknowledged operations are judged; indeterminate ones only ever excuse.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{History, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResult};
use crate::linearizability::Violation;

/// The response of an acknowledged operation.
pub(crate) fn acknowledged(op: &Operation) -> Option<&Response> {
    match &op.outcome {
        Outcome::Ok(response) => Some(response),
        Outcome::Fail { .. } | Outcome::Indeterminate { .. } => None,
    }
}

/// Whether the response says the operation created a new revision.
pub(crate) fn created_revision(response: &Response) -> bool {
    match response {
        Response::Get { .. } | Response::Range { .. } => false,
        Response::Put { .. } => true,
        Response::Delete { deleted, .. } => *deleted > 0,
        Response::Txn { results, .. } => results.iter().any(|result| {
            matches!(result, TxnOpResult::Put) || matches!(result, TxnOpResult::Delete { deleted } if *deleted > 0)
        }),
    }
}

/// The keys a request names (a range by its bounds).
fn keys_of(request: &Request) -> Vec<String> {
    match request {
        Request::Get { key } | Request::Put { key, .. } | Request::Delete { key } => vec![key.clone()],
        Request::Range { start, .. } => vec![start.clone()],
        Request::Txn { compares, success, failure } => {
            let mut keys: Vec<String> = compares.iter().map(|cmp| cmp.key.clone()).collect();
            keys.extend(success.iter().chain(failure).map(|op| match op {
                TxnOp::Get { key } | TxnOp::Put { key, .. } | TxnOp::Delete { key } => key.clone(),
            }));
            keys.sort();
            keys.dedup();
            keys
        }
    }
}

fn pair_violation(earlier: &Operation, later: &Operation, message: String) -> Violation {
    let mut keys = keys_of(&earlier.request);
    keys.extend(keys_of(&later.request));
    keys.sort();
    keys.dedup();
    Violation { keys, ops: vec![earlier.id, later.id], message, window: vec![earlier.clone(), later.clone()] }
}

/// Whether `later` may report `revision` after `earlier` reported `before`.
fn follows(before: i64, later: &Response) -> bool {
    let revision = later.revision();
    revision > before || (revision == before && !created_revision(later))
}

/// Revisions never decrease in real time (an operation invoked after another completed) nor along
/// one client's operations, and grow strictly across a write; no two writes share a revision.
/// O(n log n).
pub fn revisions_monotonic(history: &History) -> Result<(), Violation> {
    let ops: Vec<(&Operation, &Response)> =
        history.ops.iter().filter_map(|op| acknowledged(op).map(|response| (op, response))).collect();
    let mut creators: HashMap<i64, &Operation> = HashMap::new();
    for &(op, response) in ops.iter().filter(|(_, response)| created_revision(response)) {
        if let Some(other) = creators.insert(response.revision(), op) {
            let message =
                format!("operations #{} and #{} both created revision {}", other.id, op.id, response.revision());
            return Err(pair_violation(other, op, message));
        }
    }
    let mut by_completion: Vec<usize> = (0..ops.len()).collect();
    by_completion.sort_by_key(|&at| ops[at].0.complete_ns);
    let mut by_invocation: Vec<usize> = (0..ops.len()).collect();
    by_invocation.sort_by_key(|&at| (ops[at].0.invoke_ns, ops[at].0.id));
    let mut completed = by_completion.iter().peekable();
    // The completed operation with the highest revision so far.
    let mut highest: Option<usize> = None;
    let mut last_of_client: HashMap<u32, usize> = HashMap::new();
    for &at in &by_invocation {
        let (op, response) = ops[at];
        while let Some(&&done) = completed.peek().filter(|&&&done| ops[done].0.complete_ns < op.invoke_ns) {
            completed.next();
            if highest.is_none_or(|best| ops[done].1.revision() > ops[best].1.revision()) {
                highest = Some(done);
            }
        }
        let previous = last_of_client.insert(op.client, at);
        for (earlier, how) in
            [(highest, "completed before it was invoked"), (previous, "came earlier from the same client")]
        {
            let Some(earlier) = earlier else { continue };
            let (earlier_op, earlier_response) = ops[earlier];
            if earlier != at && !follows(earlier_response.revision(), response) {
                let message = format!(
                    "revision went back: #{} reported revision {} but #{}, which {how}, reported {}",
                    op.id,
                    response.revision(),
                    earlier_op.id,
                    earlier_response.revision()
                );
                return Err(pair_violation(earlier_op, op, message));
            }
        }
    }
    Ok(())
}

/// What an acknowledged write did to one key: put a value or deleted it, at a revision.
pub(crate) struct Effect<'h> {
    pub(crate) op: &'h Operation,
    pub(crate) key: &'h str,
    pub(crate) value: Option<&'h str>,
    pub(crate) revision: i64,
}

/// The per-key effects of acknowledged writes.
pub(crate) fn effects(history: &History) -> Vec<Effect<'_>> {
    let mut effects = Vec::new();
    for op in &history.ops {
        let Some(response) = acknowledged(op) else { continue };
        let revision = response.revision();
        match (&op.request, response) {
            (Request::Put { key, value }, _) => effects.push(Effect { op, key, value: Some(value), revision }),
            (Request::Delete { key }, Response::Delete { deleted: 1.., .. }) => {
                effects.push(Effect { op, key, value: None, revision });
            }
            (Request::Txn { success, failure, .. }, Response::Txn { succeeded, results, .. }) => {
                let branch = if *succeeded { success } else { failure };
                for (txn_op, result) in branch.iter().zip(results) {
                    match (txn_op, result) {
                        (TxnOp::Put { key, value }, _) => {
                            effects.push(Effect { op, key, value: Some(value), revision })
                        }
                        (TxnOp::Delete { key }, TxnOpResult::Delete { deleted: 1.. }) => {
                            effects.push(Effect { op, key, value: None, revision });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    effects
}

/// Keys some indeterminate operation may have deleted.
fn maybe_deleted(history: &History) -> HashSet<&str> {
    let mut keys = HashSet::new();
    for op in history.ops.iter().filter(|op| matches!(op.outcome, Outcome::Indeterminate { .. })) {
        match &op.request {
            Request::Delete { key } => {
                keys.insert(key.as_str());
            }
            Request::Txn { success, failure, .. } => {
                keys.extend(success.iter().chain(failure).filter_map(|op| match op {
                    TxnOp::Delete { key } => Some(key.as_str()),
                    _ => None,
                }));
            }
            _ => {}
        }
    }
    keys
}

/// Every acknowledged write is still visible in `final_kvs`, read at `final_revision` after the
/// cluster healed, or superseded: the key now holds a later revision, or, for a key now absent,
/// some later acknowledged delete, or an indeterminate one, may have removed it.
pub fn no_lost_writes(history: &History, final_revision: i64, final_kvs: &[KeyValue]) -> Result<(), Violation> {
    let finals: HashMap<&str, &KeyValue> = final_kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    let effects = effects(history);
    let mut deleted_at: HashMap<&str, i64> = HashMap::new();
    for effect in effects.iter().filter(|effect| effect.value.is_none()) {
        let at = deleted_at.entry(effect.key).or_insert(effect.revision);
        *at = (*at).max(effect.revision);
    }
    let maybe_deleted = maybe_deleted(history);
    for effect in &effects {
        let lost = |what: String| Violation {
            keys: vec![effect.key.to_string()],
            ops: vec![effect.op.id],
            message: format!("acknowledged write #{} at revision {} was lost: {what}", effect.op.id, effect.revision),
            window: vec![effect.op.clone()],
        };
        if effect.revision > final_revision {
            return Err(lost(format!("the final read is at revision {final_revision}")));
        }
        match (finals.get(effect.key), effect.value) {
            (Some(kv), _) if kv.mod_revision > effect.revision => {}
            (Some(kv), Some(value)) if kv.mod_revision == effect.revision && kv.value == value => {}
            (Some(kv), _) => {
                return Err(lost(format!("the final state holds {}", crate::linearizability::render_key_value(kv))))
            }
            (None, None) => {}
            (None, Some(_)) => {
                let later_delete = deleted_at.get(effect.key).is_some_and(|&at| at > effect.revision);
                if !later_delete && !maybe_deleted.contains(effect.key) {
                    return Err(lost(format!("{:?} is absent at the end and no later delete explains it", effect.key)));
                }
            }
        }
    }
    Ok(())
}

/// Every member reports the same revision and the same key-values. `states` holds, per member,
/// its name, its revision and its key-values (in any order).
pub fn members_agree(states: &[(String, i64, Vec<KeyValue>)]) -> Result<(), Violation> {
    let Some((first, first_revision, first_kvs)) = states.first() else { return Ok(()) };
    let reference: BTreeMap<&str, &KeyValue> = first_kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    for (member, revision, kvs) in &states[1..] {
        let differ = |keys: Vec<String>, what: String| Violation {
            keys,
            ops: Vec::new(),
            message: format!("members {first} and {member} disagree: {what}"),
            window: Vec::new(),
        };
        if revision != first_revision {
            return Err(differ(Vec::new(), format!("revision {first_revision} against {revision}")));
        }
        let theirs: BTreeMap<&str, &KeyValue> = kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
        let keys: std::collections::BTreeSet<&str> = reference.keys().chain(theirs.keys()).copied().collect();
        for key in keys {
            let (mine, other) = (reference.get(key), theirs.get(key));
            if mine != other {
                let show = |kv: Option<&&KeyValue>| {
                    kv.map_or("absent".to_string(), |kv| crate::linearizability::render_key_value(kv))
                };
                return Err(differ(vec![key.to_string()], format!("{} against {}", show(mine), show(other))));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, client: u32, interval: (u64, u64), request: Request, response: Response) -> Operation {
        Operation {
            id,
            client,
            member: "m1".to_string(),
            invoke_ns: interval.0,
            complete_ns: interval.1,
            request,
            outcome: Outcome::Ok(response),
        }
    }

    fn put(key: &str, value: &str) -> Request {
        Request::Put { key: key.to_string(), value: value.to_string() }
    }

    fn get(key: &str) -> Request {
        Request::Get { key: key.to_string() }
    }

    fn kv(key: &str, value: &str, modified: i64) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: value.to_string(),
            create_revision: modified,
            mod_revision: modified,
            version: 1,
        }
    }

    fn history(ops: Vec<Operation>) -> History {
        History { ops, faults: Vec::new() }
    }

    #[test]
    fn revisions_monotonic_accepts_growing_revisions_across_keys() {
        let history = history(vec![
            op(0, 1, (0, 10), put("a", "1"), Response::Put { revision: 2 }),
            op(1, 2, (20, 30), get("b"), Response::Get { revision: 2, kv: None }),
            op(2, 1, (40, 50), put("b", "2"), Response::Put { revision: 3 }),
        ]);
        assert_eq!(revisions_monotonic(&history), Ok(()));
    }

    #[test]
    fn revisions_monotonic_rejects_a_read_behind_an_earlier_write_on_another_key() {
        let history = history(vec![
            op(0, 1, (0, 10), put("a", "1"), Response::Put { revision: 5 }),
            op(1, 2, (20, 30), get("b"), Response::Get { revision: 4, kv: None }),
        ]);
        let violation = revisions_monotonic(&history).unwrap_err();
        assert_eq!(violation.ops, vec![0, 1]);
        assert_eq!(violation.keys, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn revisions_monotonic_rejects_a_write_reusing_a_revision_already_seen() {
        let history = history(vec![
            op(0, 1, (0, 10), get("a"), Response::Get { revision: 3, kv: None }),
            op(1, 2, (20, 30), put("b", "1"), Response::Put { revision: 3 }),
        ]);
        assert_eq!(revisions_monotonic(&history).unwrap_err().ops, vec![0, 1]);
    }

    #[test]
    fn revisions_monotonic_rejects_two_writes_creating_one_revision() {
        let history = history(vec![
            op(0, 1, (0, 100), put("a", "1"), Response::Put { revision: 3 }),
            op(1, 2, (0, 100), put("b", "1"), Response::Put { revision: 3 }),
        ]);
        assert!(revisions_monotonic(&history).unwrap_err().message.contains("both created revision 3"));
    }

    #[test]
    fn revisions_monotonic_rejects_going_back_along_one_client_at_equal_instants() {
        let history = history(vec![
            op(0, 1, (0, 10), get("a"), Response::Get { revision: 7, kv: None }),
            op(1, 1, (10, 20), get("a"), Response::Get { revision: 6, kv: None }),
        ]);
        assert!(revisions_monotonic(&history).unwrap_err().message.contains("same client"));
    }

    #[test]
    fn no_lost_writes_accepts_visible_and_superseded_writes() {
        let history = history(vec![
            op(0, 1, (0, 10), put("a", "1"), Response::Put { revision: 2 }),
            op(1, 1, (20, 30), put("a", "2"), Response::Put { revision: 3 }),
            op(2, 1, (40, 50), put("b", "1"), Response::Put { revision: 4 }),
            op(3, 1, (60, 70), Request::Delete { key: "b".to_string() }, Response::Delete { revision: 5, deleted: 1 }),
        ]);
        assert_eq!(no_lost_writes(&history, 5, &[kv("a", "2", 3)]), Ok(()));
    }

    #[test]
    fn no_lost_writes_rejects_a_final_state_older_than_an_acknowledged_put() {
        let history = history(vec![op(0, 1, (0, 10), put("a", "2"), Response::Put { revision: 3 })]);
        let violation = no_lost_writes(&history, 3, &[kv("a", "1", 2)]).unwrap_err();
        assert_eq!(violation.ops, vec![0]);
        assert!(violation.message.contains("the final state holds \"a\" = \"1\""), "{}", violation.message);
    }

    #[test]
    fn no_lost_writes_rejects_a_key_gone_without_a_delete() {
        let history = history(vec![op(0, 1, (0, 10), put("a", "1"), Response::Put { revision: 2 })]);
        assert!(no_lost_writes(&history, 2, &[]).unwrap_err().message.contains("absent at the end"));
    }

    #[test]
    fn no_lost_writes_excuses_a_key_an_indeterminate_delete_may_have_removed() {
        let mut maybe =
            op(1, 1, (20, 30), Request::Delete { key: "a".to_string() }, Response::Delete { revision: 0, deleted: 0 });
        maybe.outcome = Outcome::Indeterminate { reason: "timed out".to_string() };
        let history = history(vec![op(0, 1, (0, 10), put("a", "1"), Response::Put { revision: 2 }), maybe]);
        assert_eq!(no_lost_writes(&history, 3, &[]), Ok(()));
    }

    #[test]
    fn members_agree_accepts_identical_states_in_any_order() {
        let states = vec![
            ("m1".to_string(), 4, vec![kv("a", "1", 2), kv("b", "1", 4)]),
            ("m2".to_string(), 4, vec![kv("b", "1", 4), kv("a", "1", 2)]),
        ];
        assert_eq!(members_agree(&states), Ok(()));
    }

    #[test]
    fn members_agree_names_the_first_differing_key() {
        let states = vec![
            ("m1".to_string(), 4, vec![kv("a", "1", 2), kv("b", "1", 4)]),
            ("m2".to_string(), 4, vec![kv("a", "1", 2), kv("b", "2", 4)]),
        ];
        let violation = members_agree(&states).unwrap_err();
        assert_eq!(violation.keys, vec!["b".to_string()]);
        assert!(violation.message.starts_with("members m1 and m2 disagree"));
    }

    #[test]
    fn members_agree_rejects_different_revisions() {
        let states = vec![("m1".to_string(), 4, Vec::new()), ("m3".to_string(), 5, Vec::new())];
        assert!(members_agree(&states).unwrap_err().message.contains("revision 4 against 5"));
    }
}
