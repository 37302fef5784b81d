//! Leases: what clients saw of each lease, and [`check_leases`], which judges it against the KV
//! [`History`] and the recorded watch streams.
//!
//! The simulator records one [`LeaseRecord`] per granted lease through a [`LeaseRecorder`]: the
//! granted TTL, when the grant was sent, every keepalive and the revoke, and the keys attached to
//! it. The history's requests carry no lease id, so a record names each attachment by the key and
//! the revision of the acknowledged put that attached it ([`Attachment`]): that revision is the
//! `mod_revision` of the version the lease owns, and the put is found in the history by it.
//!
//! Properties, each the first broken one reported as a [`Violation`]:
//!
//! - **attachments are real**: each names an acknowledged put of that key at that revision;
//! - **revoke deletes**: once a revoke is acknowledged, no acknowledged read invoked later returns
//!   a version the lease owned, and no keepalive invoked later renews the lease;
//! - **no early expiry**: a lease cannot vanish before its earliest expiry, the latest of the
//!   grant's send time + TTL and, for each renewing keepalive, its send time + the TTL it returned.
//!   Vanishing is shown by a keepalive answering "not found", or by a key the lease owned seen
//!   absent by a read (at a revision at or after the attaching put), or deleted by a watch event,
//!   when that read completed or that event arrived before the earliest expiry. A lease that said
//!   "not found" never renews again;
//! - **never read after deletion**: once a watch event shows a lease key deleted at revision D, no
//!   acknowledged read at revision D or later returns a version of it older than D.
//!
//! Soundness: absence only counts when nothing else can explain it: no revoke sent before the
//! observation, no acknowledged write of the key between the attaching put and the observed
//! revision, no indeterminate write of it sent before the observation. Reads in a transaction
//! that wrote are taken at the revision before it (etcd reads a key's previous state until the
//! transaction writes it; reads after that are ignored). Times are those of the history's clock;
//! when the nemesis skews the members' clocks, [`check_leases_with_slack`] forgives that much.
//! Reads are taken as linearizable, as the linearizability checker takes them. Lease ids are
//! assumed unique in a run (records sharing an id are not held to "never renews").
//!
//! Depends on `history`, `checks` (effects of acknowledged writes), `watch` (the records) and
//! `linearizability` (the [`Violation`] type); never on a runtime.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::checks::{acknowledged, created_revision, effects, Effect};
use crate::history::{History, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResult};
use crate::linearizability::{in_range, render_key_value, render_seconds, Violation};
use crate::watch::{violation, WatchEventKind, WatchStreamRecord};

#[cfg(test)]
mod tests;

const NS_PER_SEC: u64 = 1_000_000_000;

/// One keepalive request and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeepAliveRecord {
    /// When it was sent, in ns.
    pub invoked_at: u64,
    /// When its answer (or failure) came, in ns.
    pub completed_at: u64,
    /// The TTL returned, in seconds: `Some(ttl > 0)` renewed, `Some(0)` lease not found, `None`
    /// failed or unknown.
    pub ttl: Option<i64>,
}

/// The lease's revoke request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RevokeRecord {
    pub invoked_at: u64,
    pub completed_at: u64,
    /// Acknowledged (a "lease not found" answer counts: the lease is gone either way). `false`:
    /// failed or unknown, it may still have taken effect.
    pub ok: bool,
}

/// A key put with the lease by an acknowledged put, named by the put's revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    pub key: String,
    pub revision: i64,
}

/// One granted lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseRecord {
    pub id: i64,
    /// The TTL the grant returned, in seconds.
    pub ttl: i64,
    /// When the grant was SENT, in ns (the lease cannot start earlier).
    pub granted_at: u64,
    /// Sent after the grant was acknowledged, in sending order.
    pub keepalives: Vec<KeepAliveRecord>,
    pub revoke: Option<RevokeRecord>,
    pub attached: Vec<Attachment>,
}

impl LeaseRecord {
    /// The earliest instant, in ns, the lease may expire, and what sets it.
    fn earliest_expiry(&self) -> (u64, String) {
        let after = |from: u64, ttl: i64| from.saturating_add((ttl.max(0) as u64).saturating_mul(NS_PER_SEC));
        let mut best =
            (after(self.granted_at, self.ttl), format!("granted at {} for {}s", at(self.granted_at), self.ttl));
        for keepalive in &self.keepalives {
            let Some(ttl @ 1..) = keepalive.ttl else { continue };
            let until = after(keepalive.invoked_at, ttl);
            if until > best.0 {
                best = (until, format!("a keepalive sent at {} renewed it for {ttl}s", at(keepalive.invoked_at)));
            }
        }
        best
    }
}

fn at(ns: u64) -> String {
    render_seconds(ns)
}

/// Records leases while clients run. Cheap to clone; every clone appends to the same record.
#[derive(Debug, Clone, Default)]
pub struct LeaseRecorder {
    inner: Arc<Mutex<Vec<LeaseRecord>>>,
}

/// The handle of a recorded lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseHandle(usize);

impl LeaseRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LeaseRecord>> {
        // A poisoned lock means a client panicked mid-record: the records are still well formed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records lease `id`, granted for `ttl` seconds by a grant sent at `granted_at` ns.
    pub fn grant(&self, id: i64, ttl: i64, granted_at: u64) -> LeaseHandle {
        let mut leases = self.lock();
        leases.push(LeaseRecord { id, ttl, granted_at, keepalives: Vec::new(), revoke: None, attached: Vec::new() });
        LeaseHandle(leases.len() - 1)
    }

    pub fn keepalive(&self, handle: LeaseHandle, keepalive: KeepAliveRecord) {
        assert!(keepalive.completed_at >= keepalive.invoked_at, "keepalive completes before it was sent");
        self.lock()[handle.0].keepalives.push(keepalive);
    }

    pub fn revoke(&self, handle: LeaseHandle, revoke: RevokeRecord) {
        assert!(revoke.completed_at >= revoke.invoked_at, "revoke completes before it was sent");
        let mut leases = self.lock();
        let lease = &mut leases[handle.0];
        assert!(lease.revoke.is_none(), "lease {} revoked twice", lease.id);
        lease.revoke = Some(revoke);
    }

    /// Records that an acknowledged put of `key` at `revision` attached it to the lease.
    pub fn attach(&self, handle: LeaseHandle, key: &str, revision: i64) {
        self.lock()[handle.0].attached.push(Attachment { key: key.to_string(), revision });
    }

    /// The leases recorded so far, in grant order.
    pub fn finish(&self) -> Vec<LeaseRecord> {
        self.lock().clone()
    }
}

/// [`check_leases_with_slack`] with no slack: the members' clocks agree with the history's.
pub fn check_leases(history: &History, leases: &[LeaseRecord], watches: &[WatchStreamRecord]) -> Result<(), Violation> {
    check_leases_with_slack(history, leases, watches, 0)
}

/// Checks the leases against the properties of the module docs, forgiving an expiry up to
/// `slack_ns` early (the most the nemesis skews a member's clock); returns the first violation.
pub fn check_leases_with_slack(
    history: &History,
    leases: &[LeaseRecord],
    watches: &[WatchStreamRecord],
    slack_ns: u64,
) -> Result<(), Violation> {
    let index = Index::new(history, watches);
    let mut ids: HashMap<i64, usize> = HashMap::new();
    for lease in leases {
        *ids.entry(lease.id).or_default() += 1;
    }
    for lease in leases {
        let owned = index.resolve(lease)?;
        let unique = ids.get(&lease.id) == Some(&1);
        check_revoke_deletes(lease, &owned, &index, unique)?;
        check_no_early_expiry(lease, &owned, &index, slack_ns, unique)?;
    }
    check_never_read_after_deletion(leases, &index)
}

/// A version a lease owns: the attachment and the put that made it.
struct Owned<'h> {
    key: &'h str,
    revision: i64,
    put: &'h Operation,
}

/// A watch event deleting a key.
struct Deletion<'w> {
    revision: i64,
    at: u64,
    stream: &'w WatchStreamRecord,
}

/// The history and watches, indexed by key.
struct Index<'h> {
    ops: &'h [Operation],
    /// Acknowledged writes' effects per key.
    effects: HashMap<&'h str, Vec<Effect<'h>>>,
    /// Indeterminate operations that may have put or deleted each key.
    maybe_writes: HashMap<&'h str, Vec<&'h Operation>>,
    /// Watch delete events per key.
    deletions: HashMap<&'h str, Vec<Deletion<'h>>>,
}

impl<'h> Index<'h> {
    fn new(history: &'h History, watches: &'h [WatchStreamRecord]) -> Self {
        let mut by_key: HashMap<&str, Vec<Effect<'h>>> = HashMap::new();
        for effect in effects(history) {
            by_key.entry(effect.key).or_default().push(effect);
        }
        let mut maybe_writes: HashMap<&str, Vec<&Operation>> = HashMap::new();
        for op in history.ops.iter().filter(|op| matches!(op.outcome, Outcome::Indeterminate { .. })) {
            for key in written_keys(&op.request) {
                maybe_writes.entry(key).or_default().push(op);
            }
        }
        let mut deletions: HashMap<&str, Vec<Deletion<'h>>> = HashMap::new();
        for stream in watches {
            for response in &stream.responses {
                for event in response.events.iter().filter(|event| event.kind == WatchEventKind::Delete) {
                    let deletion = Deletion { revision: event.revision, at: response.at, stream };
                    deletions.entry(event.key.as_str()).or_default().push(deletion);
                }
            }
        }
        Index { ops: &history.ops, effects: by_key, maybe_writes, deletions }
    }

    /// The versions `lease` owns, each matched to its acknowledged put.
    fn resolve(&self, lease: &'h LeaseRecord) -> Result<Vec<Owned<'h>>, Violation> {
        let mut owned = Vec::new();
        for attachment in &lease.attached {
            let key = attachment.key.as_str();
            let put = self.effects.get(key).and_then(|effects| {
                effects.iter().find(|effect| effect.revision == attachment.revision && effect.value.is_some())
            });
            let Some(put) = put else {
                let message = format!(
                    "lease {}: attachment of {key:?} at revision {} matches no acknowledged put (recording error)",
                    lease.id, attachment.revision
                );
                return Err(violation(key, &[], message));
            };
            owned.push(Owned { key, revision: attachment.revision, put: put.op });
        }
        Ok(owned)
    }

    /// Whether something other than the lease's end may have removed `owned`'s version before
    /// revision `until` was observed at `observed_at` ns: a revoke sent earlier, an acknowledged
    /// write of the key after the attaching put and up to `until`, or an indeterminate write of it
    /// sent earlier.
    fn excused(&self, lease: &LeaseRecord, owned: &Owned<'_>, until: i64, observed_at: u64) -> bool {
        lease.revoke.as_ref().is_some_and(|revoke| revoke.invoked_at < observed_at)
            || self.effects.get(owned.key).is_some_and(|effects| {
                effects.iter().any(|effect| effect.revision > owned.revision && effect.revision <= until)
            })
            || self.maybe_writes.get(owned.key).is_some_and(|ops| ops.iter().any(|op| op.invoke_ns < observed_at))
    }
}

/// The keys `request` may put or delete, in either branch.
fn written_keys(request: &Request) -> Vec<&str> {
    match request {
        Request::Put { key, .. } | Request::Delete { key } => vec![key],
        Request::Txn { success, failure, .. } => success
            .iter()
            .chain(failure)
            .filter_map(|op| match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } => Some(key.as_str()),
                TxnOp::Get { .. } => None,
            })
            .collect(),
        Request::Get { .. } | Request::Range { .. } => Vec::new(),
    }
}

/// What acknowledged read `op` saw of `key`: the revision it read at and the key-value (`None`:
/// absent), once per read of the key it made. A transaction that wrote read at the revision before
/// its own; its reads of a key after writing it are skipped.
fn observations<'h>(op: &'h Operation, key: &str) -> Vec<(i64, Option<&'h KeyValue>)> {
    let Some(response) = acknowledged(op) else { return Vec::new() };
    match (&op.request, response) {
        (Request::Get { key: read }, Response::Get { revision, kv }) if read == key => vec![(*revision, kv.as_ref())],
        (Request::Range { start, end }, Response::Range { revision, kvs }) if in_range(key, start, end) => {
            vec![(*revision, kvs.iter().find(|kv| kv.key == key))]
        }
        (Request::Txn { success, failure, .. }, Response::Txn { revision, succeeded, results }) => {
            let read_at = if created_revision(response) { revision - 1 } else { *revision };
            let branch = if *succeeded { success } else { failure };
            let mut seen = Vec::new();
            for (txn_op, result) in branch.iter().zip(results) {
                match (txn_op, result) {
                    (TxnOp::Get { key: read }, TxnOpResult::Get(kv)) if read == key => {
                        seen.push((read_at, kv.as_ref()))
                    }
                    (TxnOp::Put { key: written, .. } | TxnOp::Delete { key: written }, _) if written == key => break,
                    _ => {}
                }
            }
            seen
        }
        _ => Vec::new(),
    }
}

/// Revoke deletes: nothing the lease owned is read, and the lease is not renewed, once a revoke
/// was acknowledged.
fn check_revoke_deletes(
    lease: &LeaseRecord,
    owned: &[Owned<'_>],
    index: &Index<'_>,
    unique: bool,
) -> Result<(), Violation> {
    let Some(revoke) = lease.revoke.as_ref().filter(|revoke| revoke.ok) else { return Ok(()) };
    let revoked = format!("lease {} was revoked by {}", lease.id, at(revoke.completed_at));
    for version in owned {
        for op in index.ops.iter().filter(|op| op.invoke_ns > revoke.completed_at) {
            let returned = observations(op, version.key).into_iter().find_map(|(_, kv)| kv);
            if let Some(kv) = returned.filter(|kv| kv.mod_revision == version.revision) {
                let message = format!(
                    "{revoked}, but read #{}, sent at {}, returned {}, the version its put #{} attached",
                    op.id,
                    at(op.invoke_ns),
                    render_key_value(kv),
                    version.put.id
                );
                return Err(violation(version.key, &[version.put, op], message));
            }
        }
    }
    let renewed = lease.keepalives.iter().find(|k| k.invoked_at > revoke.completed_at && k.ttl.is_some_and(|t| t > 0));
    match renewed {
        Some(keepalive) if unique => {
            let message = format!("{revoked}, but a keepalive sent at {} renewed it", at(keepalive.invoked_at));
            Err(violation("", &[], message))
        }
        _ => Ok(()),
    }
}

/// The earliest instant a lease may expire, with what sets it and the slack forgiven.
struct Expiry {
    lease: i64,
    earliest: u64,
    why: String,
    slack_ns: u64,
}

impl Expiry {
    fn new(lease: &LeaseRecord, slack_ns: u64) -> Self {
        let (earliest, why) = lease.earliest_expiry();
        Expiry { lease: lease.id, earliest, why, slack_ns }
    }

    /// Whether something seen gone at `observed_at` ns was gone too early.
    fn early(&self, observed_at: u64) -> bool {
        observed_at.saturating_add(self.slack_ns) < self.earliest
    }

    fn violation(&self, what: String, key: &str, ops: &[&Operation]) -> Violation {
        let message = format!(
            "lease {} expired early: {what}, but it may not expire before {} ({})",
            self.lease,
            at(self.earliest),
            self.why
        );
        violation(key, ops, message)
    }
}

/// No early expiry, by keepalive answers, reads and watch deletions.
fn check_no_early_expiry(
    lease: &LeaseRecord,
    owned: &[Owned<'_>],
    index: &Index<'_>,
    slack_ns: u64,
    unique: bool,
) -> Result<(), Violation> {
    let expiry = Expiry::new(lease, slack_ns);
    for (index_of, gone) in lease.keepalives.iter().enumerate().filter(|(_, k)| k.ttl == Some(0)) {
        let back = lease.keepalives[index_of..]
            .iter()
            .find(|k| k.invoked_at > gone.completed_at && k.ttl.is_some_and(|t| t > 0));
        if let Some(back) = back.filter(|_| unique) {
            let message = format!(
                "lease {}: a keepalive answered \"not found\" by {}, but one sent at {} renewed it",
                lease.id,
                at(gone.completed_at),
                at(back.invoked_at)
            );
            return Err(violation("", &[], message));
        }
        let revoked_before = lease.revoke.as_ref().is_some_and(|revoke| revoke.invoked_at < gone.completed_at);
        if expiry.early(gone.completed_at) && !revoked_before {
            let what = format!("a keepalive answered \"not found\" by {}", at(gone.completed_at));
            return Err(expiry.violation(what, "", &[]));
        }
    }
    owned.iter().try_for_each(|version| check_kept(lease, version, index, &expiry))
}

/// The version `version` of a lease key is not seen gone, by a read or a watch, too early.
fn check_kept(lease: &LeaseRecord, version: &Owned<'_>, index: &Index<'_>, expiry: &Expiry) -> Result<(), Violation> {
    for op in index.ops.iter().filter(|op| expiry.early(op.complete_ns)) {
        for (revision, _) in observations(op, version.key).into_iter().filter(|(_, kv)| kv.is_none()) {
            if revision >= version.revision && !index.excused(lease, version, revision, op.complete_ns) {
                let what = format!(
                    "read #{} found {:?} absent at revision {revision} by {}, after put #{} attached it at revision {}",
                    op.id,
                    version.key,
                    at(op.complete_ns),
                    version.put.id,
                    version.revision
                );
                return Err(expiry.violation(what, version.key, &[version.put, op]));
            }
        }
    }
    for deletion in index.deletions.get(version.key).map_or(&[][..], Vec::as_slice) {
        if deletion.revision > version.revision
            && expiry.early(deletion.at)
            && !index.excused(lease, version, deletion.revision, deletion.at)
        {
            let what = format!(
                "{} saw {:?} deleted at revision {} by {}, after put #{} attached it at revision {}",
                deletion.stream.name(),
                version.key,
                deletion.revision,
                at(deletion.at),
                version.put.id,
                version.revision
            );
            return Err(expiry.violation(what, version.key, &[version.put]));
        }
    }
    Ok(())
}

/// Never read after deletion: a read at or after a watched deletion of a lease key returns no
/// version older than the deletion.
fn check_never_read_after_deletion(leases: &[LeaseRecord], index: &Index<'_>) -> Result<(), Violation> {
    let keys: HashSet<&str> = leases.iter().flat_map(|lease| &lease.attached).map(|a| a.key.as_str()).collect();
    let mut keys: Vec<&str> = keys.into_iter().collect();
    keys.sort_unstable();
    for key in keys {
        let Some(deletions) = index.deletions.get(key) else { continue };
        for op in index.ops {
            for (revision, kv) in observations(op, key) {
                let Some(kv) = kv else { continue };
                let deletion = deletions.iter().find(|d| kv.mod_revision < d.revision && d.revision <= revision);
                if let Some(deletion) = deletion {
                    let owner = leases
                        .iter()
                        .find(|lease| lease.attached.iter().any(|a| a.key == key && a.revision == kv.mod_revision));
                    let owner = owner.map_or(String::new(), |lease| format!(", the version lease {} owned", lease.id));
                    let message = format!(
                        "read #{} at revision {revision} returned {}{owner}, but {} saw {key:?} deleted at revision {}",
                        op.id,
                        render_key_value(kv),
                        deletion.stream.name(),
                        deletion.revision
                    );
                    return Err(violation(key, &[op], message));
                }
            }
        }
    }
    Ok(())
}
