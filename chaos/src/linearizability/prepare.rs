//! Turns a [`History`] into independent partitions of model operations.
//!
//! Failed operations never happened and indeterminate reads constrain nothing: both are dropped.
//! Keys are grouped by the connected components of the keys each remaining operation touches (a
//! transaction joins its compare and operation keys), so no operation spans two partitions. A
//! range is the exception: it is split into one read per partition, covering that partition's keys
//! in the range whether or not the range returned them. That keeps everything a range says about
//! each partition and gives up only atomicity across partitions, which the per-partition checks
//! cannot judge anyway (revisions are global: see `model`).
//!
//! Responses that do not fit their request (wrong kind, wrong number of results, a key outside the
//! range) are reported as violations here, before any search.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::model::{Action, Cmp, Expect, Gaps, KeyIdx, Observed, Seen, Step, Target, ValueId};
use super::Violation;
use crate::history::{CompareTarget, History, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResult};

/// One model operation: a whole request, or a range's share of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalOp {
    /// The history operation it comes from.
    pub id: u64,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub step: Step,
    /// The acknowledged response; `None` for an indeterminate operation.
    pub expect: Option<Expect>,
    /// For an acknowledged write whose response a window no longer checks: what it did, and by
    /// when it must have (see `window`).
    pub relaxed: Option<Relaxed>,
}

/// An acknowledged write whose response is not checked, only its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Relaxed {
    pub effect: Effect,
    pub until: Until,
}

/// By when a relaxed write must have taken effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Some time after its invocation.
    Eventually,
    /// Maybe never (it may have taken effect before the window).
    Maybe,
}

/// The branch an acknowledged write ran and the revision it created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Effect {
    pub revision: i64,
    pub succeeded: bool,
}

impl Effect {
    /// What an acknowledged response did, if it created a revision.
    pub(crate) fn of(expect: &Expect) -> Option<Effect> {
        expect.created().then_some(Effect { revision: expect.revision, succeeded: expect.succeeded })
    }
}

/// Keys that only ever interact with each other, and their operations in invocation order.
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub keys: Vec<String>,
    pub ops: Vec<LocalOp>,
}

/// A history ready for the search.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub partitions: Vec<Partition>,
    /// Interned values by id, in byte order.
    pub values: Vec<String>,
    /// History operations kept (acknowledged ones and indeterminate writes).
    pub ops_kept: usize,
    /// The revisions acknowledged writes created.
    pub gaps: Gaps,
}

/// Where each key went.
struct Layout<'h> {
    keys: Vec<&'h str>,
    key_ids: HashMap<&'h str, usize>,
    /// Partition and index within it, by global key id.
    placement: Vec<(usize, KeyIdx)>,
    values: HashMap<&'h str, ValueId>,
}

/// Splits `history` into partitions (see the module doc).
pub(crate) fn prepare(history: &History) -> Result<Prepared, Violation> {
    let kept: Vec<&Operation> = history.ops.iter().filter(|op| is_kept(op)).collect();
    for op in &kept {
        validate(op)?;
    }
    let (layout, mut partitions) = layout(&kept);
    for op in &kept {
        for (partition, local) in convert(op, &layout) {
            partitions[partition].ops.push(local);
        }
    }
    for partition in &mut partitions {
        partition.ops.sort_by_key(|op| (op.invoke_ns, op.id));
    }
    partitions.retain(|partition| !partition.ops.is_empty());
    let mut values: Vec<(&str, ValueId)> = layout.values.into_iter().collect();
    values.sort_by_key(|&(_, id)| id);
    let values = values.into_iter().map(|(value, _)| value.to_string()).collect();
    let claimed = partitions.iter().flat_map(|partition| &partition.ops);
    let claimed = claimed.filter_map(|op| op.expect.as_ref().and_then(Effect::of)).map(|effect| effect.revision);
    let gaps = Gaps::new(claimed.collect());
    Ok(Prepared { partitions, values, ops_kept: kept.len(), gaps })
}

fn is_kept(op: &Operation) -> bool {
    match &op.outcome {
        Outcome::Ok(_) => true,
        Outcome::Fail { .. } => false,
        Outcome::Indeterminate { .. } => writes(&op.request),
    }
}

/// Whether any branch of the request writes.
fn writes(request: &Request) -> bool {
    match request {
        Request::Get { .. } | Request::Range { .. } => false,
        Request::Put { .. } | Request::Delete { .. } => true,
        Request::Txn { success, failure, .. } => {
            success.iter().chain(failure).any(|op| !matches!(op, TxnOp::Get { .. }))
        }
    }
}

/// The keys a non-range request names.
fn request_keys(request: &Request) -> Vec<&str> {
    match request {
        Request::Get { key } | Request::Put { key, .. } | Request::Delete { key } => vec![key.as_str()],
        Request::Range { .. } => Vec::new(),
        Request::Txn { compares, success, failure } => {
            let ops = success.iter().chain(failure).map(|op| match op {
                TxnOp::Get { key } | TxnOp::Put { key, .. } | TxnOp::Delete { key } => key.as_str(),
            });
            compares.iter().map(|cmp| cmp.key.as_str()).chain(ops).collect()
        }
    }
}

/// Whether `key` lies in etcd's range `[start, end)`: an empty end means `start` alone, `"\0"`
/// means every key from `start` on.
pub(crate) fn in_range(key: &str, start: &str, end: &str) -> bool {
    match end {
        "" => key == start,
        "\0" => key >= start,
        _ => key >= start && key < end,
    }
}

fn malformed(op: &Operation, what: &str) -> Violation {
    Violation {
        keys: request_keys(&op.request).into_iter().map(str::to_string).collect(),
        ops: vec![op.id],
        message: format!("malformed history: operation #{}: {what}", op.id),
        window: vec![op.clone()],
    }
}

/// Checks that an acknowledged response has the shape of its request.
fn validate(op: &Operation) -> Result<(), Violation> {
    let Outcome::Ok(response) = &op.outcome else { return Ok(()) };
    match (&op.request, response) {
        (Request::Get { key }, Response::Get { kv, .. }) => {
            if kv.as_ref().is_some_and(|kv| &kv.key != key) {
                return Err(malformed(op, "the get returned another key"));
            }
        }
        (Request::Range { start, end }, Response::Range { kvs, .. }) => {
            let distinct: BTreeSet<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
            if distinct.len() != kvs.len() || !kvs.iter().all(|kv| in_range(&kv.key, start, end)) {
                return Err(malformed(op, "the range returned a key twice or outside the range"));
            }
        }
        (Request::Put { .. }, Response::Put { .. }) | (Request::Delete { .. }, Response::Delete { .. }) => {}
        (Request::Txn { success, failure, .. }, Response::Txn { succeeded, results, .. }) => {
            let branch = if *succeeded { success } else { failure };
            let fits = branch.len() == results.len()
                && branch.iter().zip(results).all(|(op, result)| match (op, result) {
                    (TxnOp::Get { key }, TxnOpResult::Get(kv)) => kv.as_ref().is_none_or(|kv| &kv.key == key),
                    (TxnOp::Put { .. }, TxnOpResult::Put) | (TxnOp::Delete { .. }, TxnOpResult::Delete { .. }) => true,
                    _ => false,
                });
            if !fits {
                return Err(malformed(op, "the transaction's results do not match its branch"));
            }
        }
        _ => return Err(malformed(op, "the response is of another kind than the request")),
    }
    Ok(())
}

/// Every key and value the kept operations mention, then the partitions by union-find.
fn layout<'h>(kept: &[&'h Operation]) -> (Layout<'h>, Vec<Partition>) {
    let mut keys = BTreeSet::new();
    let mut values = BTreeSet::new();
    for op in kept {
        keys.extend(request_keys(&op.request));
        collect_values(op, &mut values);
        if let Outcome::Ok(Response::Range { kvs, .. }) = &op.outcome {
            keys.extend(kvs.iter().map(|kv| kv.key.as_str()));
        }
    }
    let keys: Vec<&str> = keys.into_iter().collect();
    let key_ids: HashMap<&str, usize> = keys.iter().enumerate().map(|(id, key)| (*key, id)).collect();
    let mut sets = UnionFind::new(keys.len());
    for op in kept {
        let ids: Vec<usize> = request_keys(&op.request).iter().filter_map(|key| key_ids.get(key).copied()).collect();
        for pair in ids.windows(2) {
            sets.union(pair[0], pair[1]);
        }
    }
    let mut partitions: Vec<Partition> = Vec::new();
    let mut partition_of_root: HashMap<usize, usize> = HashMap::new();
    let mut placement = Vec::with_capacity(keys.len());
    for (id, key) in keys.iter().enumerate() {
        let root = sets.find(id);
        let partition = *partition_of_root.entry(root).or_insert_with(|| {
            partitions.push(Partition { keys: Vec::new(), ops: Vec::new() });
            partitions.len() - 1
        });
        let local = partitions[partition].keys.len() as KeyIdx;
        partitions[partition].keys.push(key.to_string());
        placement.push((partition, local));
    }
    let values = values.into_iter().enumerate().map(|(id, value)| (value, id as ValueId)).collect();
    (Layout { keys, key_ids, placement, values }, partitions)
}

fn collect_values<'h>(op: &'h Operation, values: &mut BTreeSet<&'h str>) {
    match &op.request {
        Request::Put { value, .. } => {
            values.insert(value);
        }
        Request::Txn { compares, success, failure } => {
            for cmp in compares {
                if let CompareTarget::Value(value) = &cmp.target {
                    values.insert(value);
                }
            }
            for op in success.iter().chain(failure) {
                if let TxnOp::Put { value, .. } = op {
                    values.insert(value);
                }
            }
        }
        Request::Get { .. } | Request::Range { .. } | Request::Delete { .. } => {}
    }
    let seen: Vec<&KeyValue> = match &op.outcome {
        Outcome::Ok(Response::Get { kv, .. }) => kv.iter().collect(),
        Outcome::Ok(Response::Range { kvs, .. }) => kvs.iter().collect(),
        Outcome::Ok(Response::Txn { results, .. }) => results
            .iter()
            .filter_map(|result| match result {
                TxnOpResult::Get(kv) => kv.as_ref(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    values.extend(seen.into_iter().map(|kv| kv.value.as_str()));
}

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(len: usize) -> Self {
        UnionFind { parent: (0..len).collect() }
    }

    fn find(&mut self, mut id: usize) -> usize {
        while self.parent[id] != id {
            self.parent[id] = self.parent[self.parent[id]];
            id = self.parent[id];
        }
        id
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.parent[a.max(b)] = a.min(b);
        }
    }
}

impl Layout<'_> {
    fn place(&self, key: &str) -> (usize, KeyIdx) {
        // Every key of a kept operation was collected by `layout`.
        self.placement[self.key_ids[key]]
    }

    fn value(&self, value: &str) -> ValueId {
        self.values[value]
    }

    fn observed(&self, kv: &KeyValue) -> Observed {
        Observed {
            value: self.value(&kv.value),
            create: kv.create_revision,
            modified: kv.mod_revision,
            version: kv.version,
        }
    }

    fn action(&self, op: &TxnOp) -> Action {
        match op {
            TxnOp::Get { key } => Action::Get(self.place(key).1),
            TxnOp::Put { key, value } => Action::Put(self.place(key).1, self.value(value)),
            TxnOp::Delete { key } => Action::Delete(self.place(key).1),
        }
    }

    fn target(&self, target: &CompareTarget) -> Target {
        match target {
            CompareTarget::Value(value) => Target::Value(self.value(value)),
            CompareTarget::ModRevision(revision) => Target::ModRevision(*revision),
            CompareTarget::CreateRevision(revision) => Target::CreateRevision(*revision),
            CompareTarget::Version(version) => Target::Version(*version),
        }
    }
}

/// The model operations of one kept (and validated) history operation, with their partitions.
fn convert(op: &Operation, layout: &Layout<'_>) -> Vec<(usize, LocalOp)> {
    let local = |step: Step, expect: Option<Expect>| LocalOp {
        id: op.id,
        invoke_ns: op.invoke_ns,
        complete_ns: op.complete_ns,
        step,
        expect,
        relaxed: None,
    };
    let response = match &op.outcome {
        Outcome::Ok(response) => Some(response),
        _ => None,
    };
    if let Request::Range { start, end } = &op.request {
        let Some(Response::Range { revision, kvs }) = response else { return Vec::new() };
        return split_range(layout, start, end, *revision, kvs)
            .into_iter()
            .map(|(partition, step, expect)| (partition, local(step, Some(expect))))
            .collect();
    }
    let Some(first_key) = request_keys(&op.request).first().copied() else { return Vec::new() };
    let partition = layout.place(first_key).0;
    let (step, expect) = convert_single(&op.request, response, layout);
    vec![(partition, local(step, expect))]
}

/// A non-range request as a transaction, with its response if acknowledged.
fn convert_single(request: &Request, response: Option<&Response>, layout: &Layout<'_>) -> (Step, Option<Expect>) {
    let single = |op: TxnOp| Step { success: vec![layout.action(&op)], ..Step::default() };
    let expect = |revision: i64, result: Seen| Expect { revision, succeeded: true, results: vec![result] };
    match (request, response) {
        (Request::Get { key }, response) => {
            let expect = match response {
                Some(Response::Get { revision, kv }) => {
                    Some(expect(*revision, Seen::Get(kv.as_ref().map(|kv| layout.observed(kv)))))
                }
                _ => None,
            };
            (single(TxnOp::Get { key: key.clone() }), expect)
        }
        (Request::Put { key, value }, response) => {
            let expect = match response {
                Some(Response::Put { revision }) => Some(expect(*revision, Seen::Put)),
                _ => None,
            };
            (single(TxnOp::Put { key: key.clone(), value: value.clone() }), expect)
        }
        (Request::Delete { key }, response) => {
            let expect = match response {
                Some(Response::Delete { revision, deleted }) => Some(expect(*revision, Seen::Delete(*deleted))),
                _ => None,
            };
            (single(TxnOp::Delete { key: key.clone() }), expect)
        }
        (Request::Txn { compares, success, failure }, response) => {
            let step = Step {
                compares: compares
                    .iter()
                    .map(|cmp| Cmp { key: layout.place(&cmp.key).1, op: cmp.op, target: layout.target(&cmp.target) })
                    .collect(),
                success: success.iter().map(|op| layout.action(op)).collect(),
                failure: failure.iter().map(|op| layout.action(op)).collect(),
            };
            let expect = match response {
                Some(Response::Txn { revision, succeeded, results }) => Some(Expect {
                    revision: *revision,
                    succeeded: *succeeded,
                    results: results.iter().map(|result| convert_result(result, layout)).collect(),
                }),
                _ => None,
            };
            (step, expect)
        }
        (Request::Range { .. }, _) => (Step::default(), None),
    }
}

fn convert_result(result: &TxnOpResult, layout: &Layout<'_>) -> Seen {
    match result {
        TxnOpResult::Get(kv) => Seen::Get(kv.as_ref().map(|kv| layout.observed(kv))),
        TxnOpResult::Put => Seen::Put,
        TxnOpResult::Delete { deleted } => Seen::Delete(*deleted),
    }
}

/// One read per partition with keys in `[start, end)`, each covering all of them.
fn split_range(
    layout: &Layout<'_>,
    start: &str,
    end: &str,
    revision: i64,
    kvs: &[KeyValue],
) -> Vec<(usize, Step, Expect)> {
    let returned: HashMap<&str, &KeyValue> = kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
    let first = layout.keys.partition_point(|key| *key < start);
    let mut pieces: BTreeMap<usize, (Step, Expect)> = BTreeMap::new();
    // The keys are sorted and `keys[first] >= start`, so those in the range are a run from `first`.
    for key in layout.keys[first..].iter().take_while(|key| in_range(key, start, end)) {
        let (partition, local) = layout.place(key);
        let (step, expect) = pieces
            .entry(partition)
            .or_insert_with(|| (Step::default(), Expect { revision, succeeded: true, results: Vec::new() }));
        step.success.push(Action::Get(local));
        expect.results.push(Seen::Get(returned.get(key).map(|kv| layout.observed(kv))));
    }
    pieces.into_iter().map(|(partition, (step, expect))| (partition, step, expect)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_range_follows_etcd_range_end_conventions() {
        assert!(in_range("a", "a", ""));
        assert!(!in_range("b", "a", ""));
        assert!(in_range("zzz", "b", "\0"));
        assert!(in_range("b", "a", "c"));
        assert!(!in_range("c", "a", "c"));
    }
}
