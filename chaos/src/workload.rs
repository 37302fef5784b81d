//! Workload generators: the requests each client sends.
//!
//! A [`ClientWorkload`] is a per-client, seeded generator of [`Request`]s over a small key space
//! (`k00`, `k01`, ...), so that clients contend and the checker sees interesting histories. Its
//! sequence is a pure function of its [`Rng`] and of the outcomes it is shown through
//! [`ClientWorkload::observe`], which it uses to make compare-and-set guards likely to hold.
//!
//! Invariant the checkers rely on: every value a request writes is unique in the whole run
//! (`c{client}-{n}`, with `n` counting this client's writes), so a read names the write it saw.
//! This holds as long as client ids are unique; the tests check it across clients and kinds.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::history::{Compare, CompareOp, CompareTarget, KeyValue, Outcome, Request, Response, TxnOp, TxnOpResult};
use crate::rng::Rng;

/// The most keys a workload spans (names stay two digits wide, so they sort by index).
pub const KEYS_MAX: usize = 100;
/// The most keys one multi-key transaction touches.
pub const KEYS_PER_TXN_MAX: usize = 8;
/// The prefix every key starts with, and the exclusive end of a range covering all of them.
pub const KEY_PREFIX: &str = "k";
pub const KEY_PREFIX_END: &str = "l";
/// Keys per transaction in a [`WorkloadKind::Mixed`] workload.
const MIXED_KEYS_PER_TXN: usize = 2;
/// Chance that a compare-and-set guards on the value rather than the mod revision, when known.
const CAS_ON_VALUE_CHANCE: f64 = 0.5;
/// Chance that a multi-key request is a read rather than a transfer.
const MULTI_READ_CHANCE: f64 = 0.4;
/// Chance that a range covers the whole key space rather than a sub-range.
const FULL_RANGE_CHANCE: f64 = 0.5;

/// What kind of requests a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// Single-key get, put, compare-and-set and delete.
    Register { keys: usize },
    /// Transfers (multi-key writes guarded by mod revisions) and multi-key reads.
    MultiKeyTxn { keys: usize, keys_per_txn: usize },
    /// Ranges over the whole key space or a sub-range, with puts and deletes.
    Ranges { keys: usize },
    /// All of the above, drawn per request.
    Mixed { keys: usize },
}

impl WorkloadKind {
    fn keys(self) -> usize {
        match self {
            WorkloadKind::Register { keys }
            | WorkloadKind::MultiKeyTxn { keys, .. }
            | WorkloadKind::Ranges { keys }
            | WorkloadKind::Mixed { keys } => keys,
        }
    }

    fn assert_valid(self) {
        let keys = self.keys();
        assert!((1..=KEYS_MAX).contains(&keys), "workload over {keys} keys (1..={KEYS_MAX})");
        if let WorkloadKind::MultiKeyTxn { keys_per_txn, .. } = self {
            assert!(
                (1..=keys.min(KEYS_PER_TXN_MAX)).contains(&keys_per_txn),
                "{keys_per_txn} keys per txn over {keys} keys (at most {KEYS_PER_TXN_MAX})"
            );
        }
    }
}

/// The name of key `index`: `k03`.
pub fn key_name(index: usize) -> String {
    format!("{KEY_PREFIX}{index:02}")
}

/// What the client last learned about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// `None`: the key was absent.
    value: Option<String>,
    /// 0 when absent, as etcd compares it.
    mod_revision: i64,
}

const ABSENT: Seen = Seen { value: None, mod_revision: 0 };

/// One client's request generator.
#[derive(Debug, Clone)]
pub struct ClientWorkload {
    kind: WorkloadKind,
    client: u32,
    rng: Rng,
    /// Values this client has written so far (the `n` of `c{client}-{n}`).
    writes: u64,
    /// Last known state per key; a key whose state is uncertain is missing.
    seen: BTreeMap<String, Seen>,
}

impl ClientWorkload {
    /// A generator for `client` drawing from `rng`. Panics on a kind outside the limits.
    pub fn new(kind: WorkloadKind, client: u32, rng: Rng) -> Self {
        kind.assert_valid();
        ClientWorkload { kind, client, rng, writes: 0, seen: BTreeMap::new() }
    }

    /// The client this generator writes values for.
    pub fn client(&self) -> u32 {
        self.client
    }

    /// The next request to send.
    pub fn next_request(&mut self) -> Request {
        match self.kind {
            WorkloadKind::Register { keys } => self.register(keys),
            WorkloadKind::MultiKeyTxn { keys, keys_per_txn } => self.multi_key(keys, keys_per_txn),
            WorkloadKind::Ranges { keys } => self.ranges(keys),
            WorkloadKind::Mixed { keys } => match self.rng.below(3) {
                0 => self.register(keys),
                1 => self.multi_key(keys, MIXED_KEYS_PER_TXN.min(keys)),
                _ => self.ranges(keys),
            },
        }
    }

    /// Learns from how `request` ended, so later compares are likely to hold.
    pub fn observe(&mut self, request: &Request, outcome: &Outcome) {
        match outcome {
            Outcome::Ok(response) => self.learn(request, response),
            // It certainly did not take effect: nothing changed.
            Outcome::Fail { .. } => {}
            // It may or may not have taken effect: what it wrote is now uncertain.
            Outcome::Indeterminate { .. } => self.forget_writes(request),
        }
    }

    fn fresh_value(&mut self) -> String {
        self.writes += 1;
        format!("c{}-{}", self.client, self.writes)
    }

    fn random_key(&mut self, keys: usize) -> String {
        key_name(self.rng.index(keys))
    }

    fn register(&mut self, keys: usize) -> Request {
        let key = self.random_key(keys);
        match self.rng.below(100) {
            0..=29 => Request::Get { key },
            30..=54 => Request::Put { value: self.fresh_value(), key },
            55..=89 => self.compare_and_set(key),
            _ => Request::Delete { key },
        }
    }

    /// The compare that holds if `key` is still as last seen (absent if never seen).
    fn guard(&mut self, key: &str, allow_value: bool) -> Compare {
        let seen = self.seen.get(key).cloned().unwrap_or(ABSENT);
        let target = match seen.value {
            Some(value) if allow_value && self.rng.chance(CAS_ON_VALUE_CHANCE) => CompareTarget::Value(value),
            _ => CompareTarget::ModRevision(seen.mod_revision),
        };
        Compare { key: key.to_string(), op: CompareOp::Equal, target }
    }

    /// If `key` is as last seen, put a new value; else read it.
    fn compare_and_set(&mut self, key: String) -> Request {
        let compare = self.guard(&key, true);
        let success = vec![TxnOp::Put { key: key.clone(), value: self.fresh_value() }];
        Request::Txn { compares: vec![compare], success, failure: vec![TxnOp::Get { key }] }
    }

    fn multi_key(&mut self, keys: usize, keys_per_txn: usize) -> Request {
        let mut chosen: Vec<usize> = self.rng.sample(&(0..keys).collect::<Vec<_>>(), keys_per_txn);
        chosen.sort_unstable();
        let names: Vec<String> = chosen.into_iter().map(key_name).collect();
        let gets = names.iter().map(|key| TxnOp::Get { key: key.clone() }).collect();
        if self.rng.chance(MULTI_READ_CHANCE) {
            return Request::Txn { compares: Vec::new(), success: gets, failure: Vec::new() };
        }
        // A transfer: every key gets a new value, only if none changed since last seen.
        let compares = names.iter().map(|key| self.guard(key, false)).collect();
        let puts = names.into_iter().map(|key| TxnOp::Put { key, value: self.fresh_value() }).collect();
        Request::Txn { compares, success: puts, failure: gets }
    }

    fn ranges(&mut self, keys: usize) -> Request {
        match self.rng.below(10) {
            0..=3 => self.range(keys),
            4..=7 => {
                let key = self.random_key(keys);
                Request::Put { value: self.fresh_value(), key }
            }
            _ => Request::Delete { key: self.random_key(keys) },
        }
    }

    /// The whole key space (a prefix range) or a sub-range of it.
    fn range(&mut self, keys: usize) -> Request {
        if self.rng.chance(FULL_RANGE_CHANCE) {
            return Request::Range { start: KEY_PREFIX.to_string(), end: KEY_PREFIX_END.to_string() };
        }
        let start = self.rng.index(keys);
        let end = self.rng.range_inclusive(start as u64 + 1..=keys as u64) as usize;
        Request::Range { start: key_name(start), end: key_name(end) }
    }

    fn remember(&mut self, key: &str, kv: Option<&KeyValue>) {
        let seen = kv.map_or(ABSENT, |kv| Seen { value: Some(kv.value.clone()), mod_revision: kv.mod_revision });
        self.seen.insert(key.to_string(), seen);
    }

    fn learn(&mut self, request: &Request, response: &Response) {
        match (request, response) {
            (Request::Get { key }, Response::Get { kv, .. }) => self.remember(key, kv.as_ref()),
            (Request::Range { start, end }, Response::Range { kvs, .. }) => self.learn_range(start, end, kvs),
            (Request::Put { key, value }, Response::Put { revision }) => {
                self.seen.insert(key.clone(), Seen { value: Some(value.clone()), mod_revision: *revision });
            }
            (Request::Delete { key }, Response::Delete { .. }) => self.remember(key, None),
            (Request::Txn { success, failure, .. }, Response::Txn { revision, succeeded, results }) => {
                let branch = if *succeeded { success } else { failure };
                for (op, result) in branch.iter().zip(results) {
                    self.learn_txn_op(op, result, *revision);
                }
            }
            // A response of the wrong shape is the checker's to report; nothing to learn.
            _ => {}
        }
    }

    fn learn_range(&mut self, start: &str, end: &str, kvs: &[KeyValue]) {
        if start < end {
            let bounds = (Bound::Included(start), Bound::Excluded(end));
            for seen in self.seen.range_mut::<str, _>(bounds).map(|(_, seen)| seen) {
                *seen = ABSENT;
            }
        }
        for kv in kvs {
            self.remember(&kv.key, Some(kv));
        }
    }

    fn learn_txn_op(&mut self, op: &TxnOp, result: &TxnOpResult, revision: i64) {
        match (op, result) {
            (TxnOp::Get { key }, TxnOpResult::Get(kv)) => self.remember(key, kv.as_ref()),
            (TxnOp::Put { key, value }, TxnOpResult::Put) => {
                self.seen.insert(key.clone(), Seen { value: Some(value.clone()), mod_revision: revision });
            }
            (TxnOp::Delete { key }, TxnOpResult::Delete { .. }) => self.remember(key, None),
            _ => {}
        }
    }

    fn forget_writes(&mut self, request: &Request) {
        match request {
            Request::Put { key, .. } | Request::Delete { key } => {
                self.seen.remove(key);
            }
            Request::Txn { success, failure, .. } => {
                for op in success.iter().chain(failure) {
                    if let TxnOp::Put { key, .. } | TxnOp::Delete { key } = op {
                        self.seen.remove(key);
                    }
                }
            }
            Request::Get { .. } | Request::Range { .. } => {}
        }
    }
}

/// The values `request` would write, in order: what the uniqueness invariant is about.
pub fn written_values(request: &Request) -> Vec<&str> {
    match request {
        Request::Put { value, .. } => vec![value.as_str()],
        Request::Txn { success, failure, .. } => success
            .iter()
            .chain(failure)
            .filter_map(|op| match op {
                TxnOp::Put { value, .. } => Some(value.as_str()),
                TxnOp::Get { .. } | TxnOp::Delete { .. } => None,
            })
            .collect(),
        Request::Get { .. } | Request::Range { .. } | Request::Delete { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const KINDS: [WorkloadKind; 4] = [
        WorkloadKind::Register { keys: 3 },
        WorkloadKind::MultiKeyTxn { keys: 4, keys_per_txn: 2 },
        WorkloadKind::Ranges { keys: 5 },
        WorkloadKind::Mixed { keys: 3 },
    ];

    fn requests(kind: WorkloadKind, client: u32, seed: u64, count: usize) -> Vec<Request> {
        let mut workload = ClientWorkload::new(kind, client, Rng::new(seed));
        (0..count).map(|_| workload.next_request()).collect()
    }

    fn txn_compares(request: &Request) -> &[Compare] {
        match request {
            Request::Txn { compares, .. } => compares,
            _ => &[],
        }
    }

    /// Draws requests until a compare-and-set (a txn with a compare) comes up.
    fn next_cas(workload: &mut ClientWorkload) -> Request {
        (0..1_000).map(|_| workload.next_request()).find(|r| !txn_compares(r).is_empty()).unwrap()
    }

    #[test]
    fn same_seed_gives_the_same_requests() {
        for kind in KINDS {
            assert_eq!(requests(kind, 1, 99, 200), requests(kind, 1, 99, 200), "{kind:?}");
        }
    }

    #[test]
    fn different_seeds_give_different_requests() {
        for kind in KINDS {
            assert_ne!(requests(kind, 1, 1, 50), requests(kind, 1, 2, 50), "{kind:?}");
        }
    }

    #[test]
    fn written_values_are_unique_across_clients_and_kinds() {
        let mut values = BTreeSet::new();
        let mut total = 0;
        for (client, kind) in KINDS.into_iter().enumerate() {
            for request in requests(kind, client as u32, 5, 500) {
                for value in written_values(&request) {
                    total += 1;
                    values.insert(value.to_string());
                }
            }
        }
        assert!(total > 500);
        assert_eq!(values.len(), total);
    }

    #[test]
    fn requests_stay_in_the_key_space() {
        for kind in KINDS {
            for request in requests(kind, 0, 7, 300) {
                match &request {
                    Request::Get { key } | Request::Put { key, .. } | Request::Delete { key } => {
                        assert!(key.as_str() < key_name(kind.keys()).as_str(), "{request:?}")
                    }
                    Request::Range { start, end } => assert!(start < end && start.starts_with(KEY_PREFIX)),
                    Request::Txn { success, .. } => assert!(!success.is_empty()),
                }
            }
        }
    }

    #[test]
    fn transfers_guard_every_key_they_write_on_its_mod_revision() {
        let kind = WorkloadKind::MultiKeyTxn { keys: 6, keys_per_txn: 3 };
        let transfers: Vec<Request> =
            requests(kind, 0, 3, 200).into_iter().filter(|r| !txn_compares(r).is_empty()).collect();
        assert!(!transfers.is_empty());
        for transfer in transfers {
            let Request::Txn { compares, success, .. } = &transfer else { unreachable!() };
            let guarded: Vec<&str> = compares.iter().map(|c| c.key.as_str()).collect();
            let written: Vec<&str> = success
                .iter()
                .filter_map(|op| match op {
                    TxnOp::Put { key, .. } => Some(key.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(guarded.len(), 3);
            assert_eq!(guarded, written);
            assert!(compares.iter().all(|c| matches!(c.target, CompareTarget::ModRevision(_))));
        }
    }

    #[test]
    fn an_acknowledged_put_makes_the_next_cas_guard_on_it() {
        let mut workload = ClientWorkload::new(WorkloadKind::Register { keys: 1 }, 2, Rng::new(4));
        let put = Request::Put { key: key_name(0), value: "c9-1".to_string() };
        workload.observe(&put, &Outcome::Ok(Response::Put { revision: 7 }));
        let cas = next_cas(&mut workload);
        let target = &txn_compares(&cas)[0].target;
        assert!(
            *target == CompareTarget::Value("c9-1".to_string()) || *target == CompareTarget::ModRevision(7),
            "{cas:?}"
        );
    }

    #[test]
    fn an_indeterminate_write_makes_the_key_unknown() {
        let mut workload = ClientWorkload::new(WorkloadKind::Register { keys: 1 }, 2, Rng::new(4));
        let key = key_name(0);
        workload.observe(
            &Request::Put { key: key.clone(), value: "c9-1".to_string() },
            &Outcome::Ok(Response::Put { revision: 7 }),
        );
        let lost = Request::Put { key, value: "c9-2".to_string() };
        workload.observe(&lost, &Outcome::Indeterminate { reason: "timeout".to_string() });
        let cas = next_cas(&mut workload);
        assert_eq!(txn_compares(&cas)[0].target, CompareTarget::ModRevision(0));
    }

    #[test]
    fn a_range_marks_missing_keys_absent() {
        let mut workload = ClientWorkload::new(WorkloadKind::Register { keys: 1 }, 2, Rng::new(4));
        let key = key_name(0);
        workload.observe(&Request::Put { key, value: "c9-1".to_string() }, &Outcome::Ok(Response::Put { revision: 7 }));
        let range = Request::Range { start: KEY_PREFIX.to_string(), end: KEY_PREFIX_END.to_string() };
        workload.observe(&range, &Outcome::Ok(Response::Range { revision: 8, kvs: Vec::new() }));
        let cas = next_cas(&mut workload);
        assert_eq!(txn_compares(&cas)[0].target, CompareTarget::ModRevision(0));
    }

    #[test]
    #[should_panic(expected = "keys per txn")]
    fn more_keys_per_txn_than_keys_is_refused() {
        let _ = ClientWorkload::new(WorkloadKind::MultiKeyTxn { keys: 2, keys_per_txn: 3 }, 0, Rng::new(0));
    }
}
