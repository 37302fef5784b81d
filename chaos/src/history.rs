//! The operation history: what clients asked, when, and what they saw.
//!
//! A history is built by a [`Recorder`] while clients run (invoke, then complete with an
//! [`Outcome`]) and read by the checkers afterwards. Timestamps are nanoseconds of whatever clock
//! the clients share (simulated time under madsim, a monotonic clock on hardware).
//!
//! The model is the etcd v3 KV API restricted to what workloads use: single-key get/put/delete,
//! ranges, and transactions whose compares and operations name single keys. Revisions are etcd's:
//! one global counter, +1 per write transaction, reported in every response header.

use std::sync::{Arc, Mutex};

/// A key-value pair as a range returns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// What a [`Compare`] looks at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CompareTarget {
    /// The value; a missing key never compares true.
    Value(String),
    /// The mod revision; 0 for a missing key.
    ModRevision(i64),
    /// The create revision; 0 for a missing key.
    CreateRevision(i64),
    /// The version; 0 for a missing key.
    Version(i64),
}

/// How a [`Compare`] compares (etcd's `Compare.CompareResult`): `stored <op> target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

/// One compare of a transaction's guard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Compare {
    pub key: String,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnOp {
    Get { key: String },
    Put { key: String, value: String },
    Delete { key: String },
}

/// The result of one [`TxnOp`], in branch order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnOpResult {
    Get(Option<KeyValue>),
    Put,
    Delete { deleted: i64 },
}

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// A single-key read.
    Get {
        key: String,
    },
    /// The keys in `[start, end)` (end exclusive, as etcd's `range_end`).
    Range {
        start: String,
        end: String,
    },
    Put {
        key: String,
        value: String,
    },
    /// A single-key delete.
    Delete {
        key: String,
    },
    Txn {
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
}

/// What a client saw when the request succeeded. `revision` is the response header's revision:
/// the new revision for a request that wrote, the store's current revision otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Response {
    Get { revision: i64, kv: Option<KeyValue> },
    Range { revision: i64, kvs: Vec<KeyValue> },
    Put { revision: i64 },
    Delete { revision: i64, deleted: i64 },
    Txn { revision: i64, succeeded: bool, results: Vec<TxnOpResult> },
}

impl Response {
    /// The response header's revision.
    pub fn revision(&self) -> i64 {
        match self {
            Response::Get { revision, .. }
            | Response::Range { revision, .. }
            | Response::Put { revision }
            | Response::Delete { revision, .. }
            | Response::Txn { revision, .. } => *revision,
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It took effect and the client saw this response.
    Ok(Response),
    /// It certainly did not take effect (e.g. rejected before being proposed).
    Fail { reason: String },
    /// It may or may not have taken effect (timeout, connection lost, leader changed): the checkers
    /// must allow both, at any point after its invocation.
    Indeterminate { reason: String },
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Operation {
    /// Unique within the history, in invocation order.
    pub id: u64,
    /// The client (one operation at a time per client).
    pub client: u32,
    /// The member the client sent it to, for reports.
    pub member: String,
    pub invoke_ns: u64,
    /// When the outcome was known; for an operation still open when the history closed, the
    /// closing time (and the outcome is indeterminate).
    pub complete_ns: u64,
    pub request: Request,
    pub outcome: Outcome,
}

/// A fault the nemesis injected, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FaultEvent {
    pub start_ns: u64,
    /// When it was healed, if it was.
    pub end_ns: Option<u64>,
    pub description: String,
}

/// A complete history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct History {
    pub ops: Vec<Operation>,
    pub faults: Vec<FaultEvent>,
}

/// Records a history while clients run. Cheap to clone; every clone appends to the same history.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    inner: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    /// Operations by id; `None` outcome while in flight.
    ops: Vec<(Operation, bool)>,
    faults: Vec<FaultEvent>,
}

/// The handle of an invoked, not yet completed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "complete the operation with Recorder::complete"]
pub struct OpHandle(u64);

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // A poisoned lock means a client panicked mid-record: the history is still well formed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `client` sent `request` to `member` at `now_ns`.
    pub fn invoke(&self, client: u32, member: &str, request: Request, now_ns: u64) -> OpHandle {
        let mut open = self.lock();
        let id = open.ops.len() as u64;
        let op = Operation {
            id,
            client,
            member: member.to_string(),
            invoke_ns: now_ns,
            complete_ns: now_ns,
            request,
            outcome: Outcome::Indeterminate { reason: "still in flight".to_string() },
        };
        open.ops.push((op, false));
        OpHandle(id)
    }

    /// Records how the operation ended, at `now_ns`.
    pub fn complete(&self, handle: OpHandle, outcome: Outcome, now_ns: u64) {
        let mut open = self.lock();
        let (op, done) = &mut open.ops[handle.0 as usize];
        assert!(!*done, "operation {} completed twice", handle.0);
        assert!(now_ns >= op.invoke_ns, "operation {} completes before it was invoked", handle.0);
        op.complete_ns = now_ns;
        op.outcome = outcome;
        *done = true;
    }

    /// Records a fault starting at `now_ns`; returns its index for [`Recorder::heal`].
    pub fn fault(&self, description: String, now_ns: u64) -> usize {
        let mut open = self.lock();
        open.faults.push(FaultEvent { start_ns: now_ns, end_ns: None, description });
        open.faults.len() - 1
    }

    /// Records that fault `index` ended at `now_ns`.
    pub fn heal(&self, index: usize, now_ns: u64) {
        let mut open = self.lock();
        if let Some(fault) = open.faults.get_mut(index) {
            fault.end_ns.get_or_insert(now_ns);
        }
    }

    /// Closes the history at `now_ns`: operations still in flight become indeterminate, ending now.
    pub fn finish(&self, now_ns: u64) -> History {
        let open = self.lock();
        let ops = open
            .ops
            .iter()
            .map(|(op, done)| {
                let mut op = op.clone();
                if !done {
                    op.complete_ns = now_ns.max(op.invoke_ns);
                }
                op
            })
            .collect();
        History { ops, faults: open.faults.clone() }
    }
}
