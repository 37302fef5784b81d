//! Deterministic generator of linearizable histories, for the checker's tests and benchmarks.
//!
//! Clients issue requests with random think times and latencies; each request that takes effect
//! gets a linearization point inside its interval (or, for an indeterminate one, anywhere after
//! its invocation), and a sequential reference KV ([`Kv`], etcd semantics) applies them in that
//! order to produce the responses. Values are unique per put. Not part of the crate's API.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::prepare::in_range;
use crate::history::{
    Compare, CompareOp, CompareTarget, History, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResult,
};
use crate::rng::Rng;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    pub ops: usize,
    pub keys: usize,
    pub clients: u32,
    /// Keys per group: a transaction writes one key or two of the same group.
    pub group_keys: usize,
    pub read_percent: u64,
    pub delete_percent: u64,
    pub txn_percent: u64,
    pub range_percent: u64,
    pub indeterminate_percent: u64,
    pub fail_percent: u64,
    pub latency_max_ns: u64,
    pub think_max_ns: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            ops: 1_000,
            keys: 10,
            clients: 10,
            group_keys: 1,
            read_percent: 40,
            delete_percent: 5,
            txn_percent: 15,
            range_percent: 5,
            indeterminate_percent: 2,
            fail_percent: 1,
            latency_max_ns: 5_000_000,
            think_max_ns: 1_000_000,
        }
    }
}

/// The name of key `index`.
pub fn key_name(index: usize) -> String {
    format!("k{index:05}")
}

/// A sequential etcd KV: the reference the generated responses come from.
#[derive(Debug, Clone, Default)]
pub struct Kv {
    pub revision: i64,
    pub data: BTreeMap<String, KeyValue>,
}

impl Kv {
    fn put(&mut self, key: &str, value: &str, revision: i64) {
        let previous = self.data.get(key);
        let kv = KeyValue {
            key: key.to_string(),
            value: value.to_string(),
            create_revision: previous.map_or(revision, |kv| kv.create_revision),
            mod_revision: revision,
            version: previous.map_or(1, |kv| kv.version + 1),
        };
        self.data.insert(key.to_string(), kv);
    }

    fn holds(&self, cmp: &Compare) -> bool {
        let kv = self.data.get(&cmp.key);
        let (stored, target) = match (&cmp.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(target), Some(kv)) => return ordered(kv.value.as_str().cmp(target), cmp.op),
            (CompareTarget::ModRevision(t), kv) => (kv.map_or(0, |kv| kv.mod_revision), *t),
            (CompareTarget::CreateRevision(t), kv) => (kv.map_or(0, |kv| kv.create_revision), *t),
            (CompareTarget::Version(t), kv) => (kv.map_or(0, |kv| kv.version), *t),
        };
        ordered(stored.cmp(&target), cmp.op)
    }

    /// Applies one request as etcd would and returns its response.
    pub fn apply(&mut self, request: &Request) -> Response {
        match request {
            Request::Get { key } => Response::Get { revision: self.revision, kv: self.data.get(key).cloned() },
            Request::Range { start, end } => Response::Range {
                revision: self.revision,
                kvs: self
                    .data
                    .range(start.clone()..)
                    .map(|(_, kv)| kv)
                    .take_while(|kv| in_range(&kv.key, start, end))
                    .cloned()
                    .collect(),
            },
            Request::Put { key, value } => {
                self.revision += 1;
                self.put(key, value, self.revision);
                Response::Put { revision: self.revision }
            }
            Request::Delete { key } => {
                let deleted = i64::from(self.data.remove(key).is_some());
                self.revision += deleted;
                Response::Delete { revision: self.revision, deleted }
            }
            Request::Txn { compares, success, failure } => {
                let succeeded = compares.iter().all(|cmp| self.holds(cmp));
                let branch = if succeeded { success } else { failure };
                let revision = self.revision + 1;
                let mut wrote = false;
                let results = branch.iter().map(|op| self.txn_op(op, revision, &mut wrote)).collect();
                if wrote {
                    self.revision = revision;
                }
                Response::Txn { revision: self.revision, succeeded, results }
            }
        }
    }

    fn txn_op(&mut self, op: &TxnOp, revision: i64, wrote: &mut bool) -> TxnOpResult {
        match op {
            TxnOp::Get { key } => TxnOpResult::Get(self.data.get(key).cloned()),
            TxnOp::Put { key, value } => {
                *wrote = true;
                self.put(key, value, revision);
                TxnOpResult::Put
            }
            TxnOp::Delete { key } => {
                let deleted = self.data.remove(key).is_some();
                *wrote |= deleted;
                TxnOpResult::Delete { deleted: i64::from(deleted) }
            }
        }
    }
}

fn ordered(ordering: std::cmp::Ordering, op: CompareOp) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    matches!((op, ordering), (CompareOp::Equal, Equal) | (CompareOp::Greater, Greater) | (CompareOp::Less, Less))
        || (op == CompareOp::NotEqual && ordering != Equal)
}

/// How a generated operation ends.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Acknowledged, taking effect at this instant.
    Ok(u64),
    /// Unknown to the client; took effect at this instant, or never.
    Indeterminate(Option<u64>),
    Fail,
}

struct Draft {
    client: u32,
    invoke_ns: u64,
    complete_ns: u64,
    request: Request,
    fate: Fate,
}

/// Draws requests; remembers each key's values so compares sometimes hold.
struct Requests<'c> {
    config: &'c GenConfig,
    values: Vec<Vec<String>>,
}

impl Requests<'_> {
    fn next(&mut self, rng: &mut Rng, index: usize) -> Request {
        let c = self.config;
        let key_index = rng.index(c.keys.max(1));
        let key = key_name(key_index);
        let roll = rng.below(100);
        let thresholds = [c.read_percent, c.delete_percent, c.txn_percent, c.range_percent];
        let mut bound = 0;
        let mut kind = thresholds.len();
        for (at, percent) in thresholds.iter().enumerate() {
            bound += percent;
            if roll < bound {
                kind = at;
                break;
            }
        }
        match kind {
            0 => Request::Get { key },
            1 => Request::Delete { key },
            2 => self.txn(rng, index, key_index),
            3 => {
                let span = 1 + rng.index(4);
                Request::Range { start: key, end: key_name(key_index + span) }
            }
            _ => {
                let value = format!("v{index}");
                self.values[key_index].push(value.clone());
                Request::Put { key, value }
            }
        }
    }

    /// A compare-and-set on one key, writing a second key of its group when groups have several.
    fn txn(&mut self, rng: &mut Rng, index: usize, key_index: usize) -> Request {
        let key = key_name(key_index);
        let known = &self.values[key_index];
        let expected = match known.len() {
            0 => "none".to_string(),
            len if rng.chance(0.7) => known[len - 1].clone(),
            len => known[rng.index(len)].clone(),
        };
        let compares = vec![Compare { key: key.clone(), op: CompareOp::Equal, target: CompareTarget::Value(expected) }];
        let value = format!("v{index}");
        self.values[key_index].push(value.clone());
        let mut success = vec![TxnOp::Put { key: key.clone(), value }];
        let mut failure = vec![TxnOp::Get { key }];
        let group = self.config.group_keys.max(1);
        if group > 1 {
            let other = (key_index / group) * group + rng.index(group);
            if other != key_index && other < self.config.keys {
                let value = format!("v{index}b");
                self.values[other].push(value.clone());
                success.push(TxnOp::Put { key: key_name(other), value });
                failure.push(TxnOp::Get { key: key_name(other) });
            }
        }
        Request::Txn { compares, success, failure }
    }
}

fn draw_fate(rng: &mut Rng, config: &GenConfig, invoke_ns: u64, latency_ns: u64) -> Fate {
    let roll = rng.below(100);
    if roll < config.fail_percent {
        Fate::Fail
    } else if roll < config.fail_percent + config.indeterminate_percent {
        let applied = rng.chance(0.5).then(|| invoke_ns + rng.below(3 * latency_ns + 1));
        Fate::Indeterminate(applied)
    } else {
        Fate::Ok(invoke_ns + rng.below(latency_ns + 1))
    }
}

fn drafts(config: &GenConfig, rng: &mut Rng) -> Vec<Draft> {
    let mut requests = Requests { config, values: vec![Vec::new(); config.keys.max(1)] };
    let mut free: BinaryHeap<Reverse<(u64, u32)>> = (0..config.clients.max(1)).map(|c| Reverse((0, c))).collect();
    let mut drafts = Vec::with_capacity(config.ops);
    for index in 0..config.ops {
        let Some(Reverse((free_ns, client))) = free.pop() else { break };
        let invoke_ns = free_ns + rng.below(config.think_max_ns + 1);
        let latency_ns = 1 + rng.below(config.latency_max_ns.max(1));
        let request = requests.next(rng, index);
        let fate = draw_fate(rng, config, invoke_ns, latency_ns);
        drafts.push(Draft { client, invoke_ns, complete_ns: invoke_ns + latency_ns, request, fate });
        free.push(Reverse((invoke_ns + latency_ns, client)));
    }
    drafts
}

/// A linearizable history drawn from `config.seed`.
pub fn generate(config: &GenConfig) -> History {
    let mut rng = Rng::new(config.seed);
    let drafts = drafts(config, &mut rng);
    let mut points: Vec<(u64, usize)> = drafts
        .iter()
        .enumerate()
        .filter_map(|(at, draft)| match draft.fate {
            Fate::Ok(point) | Fate::Indeterminate(Some(point)) => Some((point, at)),
            Fate::Indeterminate(None) | Fate::Fail => None,
        })
        .collect();
    points.sort_unstable();
    let mut kv = Kv::default();
    let mut responses: HashMap<usize, Response> = HashMap::new();
    for (_, at) in points {
        responses.insert(at, kv.apply(&drafts[at].request));
    }
    let mut order: Vec<usize> = (0..drafts.len()).collect();
    order.sort_by_key(|&at| (drafts[at].invoke_ns, at));
    let ops = order
        .into_iter()
        .enumerate()
        .map(|(id, at)| {
            let draft = &drafts[at];
            let outcome = match (draft.fate, responses.remove(&at)) {
                (Fate::Ok(_), Some(response)) => Outcome::Ok(response),
                (Fate::Fail, _) => Outcome::Fail { reason: "rejected".to_string() },
                _ => Outcome::Indeterminate { reason: "timed out".to_string() },
            };
            Operation {
                id: id as u64,
                client: draft.client,
                member: format!("m{}", draft.client % 3),
                invoke_ns: draft.invoke_ns,
                complete_ns: draft.complete_ns,
                request: draft.request.clone(),
                outcome,
            }
        })
        .collect();
    History { ops, faults: Vec::new() }
}

/// The acknowledged writes of single-key requests to `key`: (completion, revision).
fn key_writes(history: &History) -> HashMap<&str, Vec<(u64, i64)>> {
    let mut writes: HashMap<&str, Vec<(u64, i64)>> = HashMap::new();
    for op in &history.ops {
        let key = match (&op.request, &op.outcome) {
            (Request::Put { key, .. }, Outcome::Ok(_)) => key,
            (Request::Delete { key }, Outcome::Ok(Response::Delete { deleted: 1, .. })) => key,
            _ => continue,
        };
        if let Outcome::Ok(response) = &op.outcome {
            writes.entry(key.as_str()).or_default().push((op.complete_ns, response.revision()));
        }
    }
    writes
}

/// Replaces what one acknowledged get saw by an older state of its key that a write acknowledged
/// before the get was invoked had already replaced: a stale read. Returns the new history and the
/// stale read's id, or `None` if no get qualifies. `pick` chooses among the candidates.
pub fn plant_stale_read(history: &History, pick: u64) -> Option<(History, u64)> {
    let writes = key_writes(history);
    let mut seen: HashMap<&str, Vec<&KeyValue>> = HashMap::new();
    for op in &history.ops {
        if let (Request::Get { key }, Outcome::Ok(Response::Get { kv: Some(kv), .. })) = (&op.request, &op.outcome) {
            seen.entry(key.as_str()).or_default().push(kv);
        }
    }
    let mut candidates = Vec::new();
    for (at, op) in history.ops.iter().enumerate() {
        let (Request::Get { key }, Outcome::Ok(Response::Get { kv, .. })) = (&op.request, &op.outcome) else {
            continue;
        };
        let superseded =
            writes.get(key.as_str()).into_iter().flatten().filter(|(complete, _)| *complete < op.invoke_ns);
        let Some(newest) = superseded.map(|&(_, revision)| revision).max() else { continue };
        let stale = seen.get(key.as_str()).into_iter().flatten().filter(|old| old.mod_revision < newest);
        let stale =
            stale.filter(|old| kv.as_ref().is_none_or(|kv| kv.value != old.value)).max_by_key(|old| old.mod_revision);
        if let Some(old) = stale {
            candidates.push((at, (*old).clone()));
        }
    }
    if candidates.is_empty() {
        return None;
    }
    let (at, old) = candidates.swap_remove((pick % candidates.len() as u64) as usize);
    let mut planted = history.clone();
    let op = &mut planted.ops[at];
    if let Outcome::Ok(Response::Get { kv, .. }) = &mut op.outcome {
        *kv = Some(old);
    }
    let id = op.id;
    Some((planted, id))
}
