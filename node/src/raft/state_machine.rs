//! The replicated state machine: committed entries applied, in log order, to the MVCC store.
//!
//! Apply is atomic per batch: one redb write transaction holds the data, the applied log id and
//! the membership (STYLE habit 6). It commits without fsync; a snapshot makes it durable before
//! openraft may purge the log behind it, so a restart replays whatever the store lost.

// openraft fixes the error types of its storage and network traits; they are large by design.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftLogId, RaftSnapshotBuilder, StorageIOError};
use prost::Message;

use detcd_proto::detcdpb::internal_request::Request as InternalOp;
use detcd_proto::detcdpb::InternalRequest;
use detcd_proto::etcdserverpb::request_op::Request as TxnOp;
use detcd_proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, RequestOp,
    ResponseHeader, TxnRequest,
};

use super::proposer::Applied;
use super::types::{
    ApplyError, Entry, LogId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::lease::{LeaseError, Lessor};
use crate::mvcc::{BatchOps, MvccError, Store};
use crate::watch::WatchHub;

/// Meta keys the Raft layer keeps in the MVCC store's meta table.
const META_APPLIED: &str = "raft.applied";
const META_MEMBERSHIP: &str = "raft.membership";
/// Prefix of the meta keys holding granted leases: `lease.<id as 16 hex digits>` -> TTL (i64 BE).
const META_LEASE_PREFIX: &str = "lease.";
const META_REMOVED_PREFIX: &str = "removed.";

fn lease_key(id: i64) -> String {
    format!("{META_LEASE_PREFIX}{:016x}", id as u64)
}

/// Rebuilds the lessor from what `store` holds: its granted leases and the keys attached to them.
pub fn rebuild_lessor(store: &Store, lessor: &Lessor) -> Result<(), MvccError> {
    let mut leases = Vec::new();
    for (name, value) in store.meta_with_prefix(META_LEASE_PREFIX)? {
        let id = u64::from_str_radix(&name[META_LEASE_PREFIX.len()..], 16)
            .map_err(|_| MvccError::Corrupt(format!("lease meta key {name:?} is not a lease ID")))?;
        let ttl: [u8; 8] =
            value.as_slice().try_into().map_err(|_| MvccError::Corrupt(format!("lease {name:?} has a bad TTL")))?;
        leases.push((id as i64, i64::from_be_bytes(ttl)));
    }
    lessor.rebuild(&leases, store.leased_keys()?);
    Ok(())
}

/// The MVCC store shared between apply (writer) and the API (readers).
pub type SharedStore = Arc<RwLock<Store>>;

pub fn read_store(store: &SharedStore) -> RwLockReadGuard<'_, Store> {
    store.read().unwrap_or_else(|p| panic!("mvcc store lock poisoned: {p}"))
}

pub fn write_store(store: &SharedStore) -> RwLockWriteGuard<'_, Store> {
    store.write().unwrap_or_else(|p| panic!("mvcc store lock poisoned: {p}"))
}

fn sm_error(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn read_error(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_state_machine(AnyError::error(e.to_string())).into()
}

/// Applied log id and membership as recorded in the store.
fn applied_state(store: &Store) -> Result<(Option<LogId>, StoredMembership), StorageError> {
    let applied = match store.meta(META_APPLIED).map_err(read_error)? {
        Some(bytes) => bincode::deserialize(&bytes).map_err(read_error)?,
        None => None,
    };
    let membership = match store.meta(META_MEMBERSHIP).map_err(read_error)? {
        Some(bytes) => bincode::deserialize(&bytes).map_err(read_error)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// The applied (so committed) membership: what etcd's member list shows.
pub fn applied_membership(store: &Store) -> Result<StoredMembership, StorageError> {
    applied_state(store).map(|(_, membership)| membership)
}

/// Meta key recording that member `id` was removed from the cluster (replicated, so in snapshots;
/// etcd keeps removed member IDs the same way).
fn removed_key(id: u64) -> String {
    format!("{META_REMOVED_PREFIX}{id:016x}")
}

/// Whether member `id` was removed from the cluster: a membership change that dropped it was
/// applied. Not merely "absent from the membership": a member that lags has not seen a new
/// member's add yet, and must not tell it that it was removed (simulator, `scale_under_faults`
/// seed 17: a just-added voter asked a lagging member for its vote, was told "removed", and
/// stopped for good).
pub fn was_removed(store: &Store, id: u64) -> bool {
    matches!(store.meta(&removed_key(id)), Ok(Some(_)))
}

/// The planted bug [`Bug::ApplyTwiceAfterRestart`](crate::planted::Bug): records `previous` (the
/// log id before the last applied one) as applied, so the last entry is applied a second time.
pub(super) fn forget_last_apply(store: &mut Store, previous: LogId) -> Result<(), StorageError> {
    let mut batch = store.write().map_err(sm_error)?;
    batch.set_meta(META_APPLIED, &bincode::serialize(&Some(previous)).map_err(sm_error)?).map_err(sm_error)?;
    batch.commit(true).map_err(sm_error)
}

/// openraft's state machine.
pub struct StateMachine {
    store: SharedStore,
    lessor: Arc<Lessor>,
    hub: Arc<WatchHub>,
}

impl StateMachine {
    pub fn new(store: SharedStore, lessor: Arc<Lessor>, hub: Arc<WatchHub>) -> StateMachine {
        StateMachine { store, lessor, hub }
    }
}

/// Maps a state-machine error: request outcomes become responses, disk failures stop the member.
fn outcome<T: Message>(result: Result<T, MvccError>) -> Result<Applied, StorageError> {
    match result {
        Ok(resp) => Ok(Ok(resp.encode_to_vec())),
        Err(MvccError::Compacted) => Ok(Err(ApplyError::Compacted)),
        Err(MvccError::FutureRevision) => Ok(Err(ApplyError::FutureRevision)),
        Err(MvccError::KeyNotFound) => Ok(Err(ApplyError::KeyNotFound)),
        Err(MvccError::LeaseNotFound) => Ok(Err(ApplyError::LeaseNotFound)),
        Err(e @ (MvccError::Storage(_) | MvccError::Corrupt(_))) => Err(sm_error(e)),
    }
}

fn revision_header(batch: &BatchOps<'_, '_>) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision: batch.revision(), ..Default::default() })
}

/// etcd's LeaseGrant as applied: the lessor grants, the store records it.
fn lease_grant(
    batch: &mut BatchOps<'_, '_>,
    lessor: &Lessor,
    req: &LeaseGrantRequest,
) -> Result<Applied, StorageError> {
    match lessor.grant(req.id, req.ttl) {
        Ok(ttl) => {
            batch.set_meta(&lease_key(req.id), &ttl.to_be_bytes()).map_err(sm_error)?;
            let resp = LeaseGrantResponse { header: revision_header(batch), id: req.id, ttl, error: String::new() };
            Ok(Ok(resp.encode_to_vec()))
        }
        Err(LeaseError::Exists) => Ok(Err(ApplyError::LeaseExists)),
        Err(LeaseError::TtlTooLarge) => Ok(Err(ApplyError::LeaseTtlTooLarge)),
        Err(e @ (LeaseError::NotFound | LeaseError::NotPrimary | LeaseError::Expired)) => {
            Err(sm_error(format!("lease grant: {e}")))
        }
    }
}

/// etcd's LeaseRevoke as applied (by a client, or by the leader at expiry): every attached key is
/// deleted in one revision.
fn lease_revoke(
    batch: &mut BatchOps<'_, '_>,
    lessor: &Lessor,
    req: &LeaseRevokeRequest,
) -> Result<Applied, StorageError> {
    let keys = match lessor.revoke(req.id) {
        Ok(keys) => keys,
        Err(_) => return Ok(Err(ApplyError::LeaseNotFound)),
    };
    if !keys.is_empty() {
        let success = keys
            .into_iter()
            .map(|key| RequestOp {
                request: Some(TxnOp::RequestDeleteRange(DeleteRangeRequest { key, ..Default::default() })),
            })
            .collect();
        batch.txn(&TxnRequest { success, ..Default::default() }).map_err(sm_error)?;
    }
    batch.delete_meta(&lease_key(req.id)).map_err(sm_error)?;
    Ok(Ok(LeaseRevokeResponse { header: revision_header(batch) }.encode_to_vec()))
}

/// Applies one client request inside the batch; the lessor follows the keys it attaches and
/// detaches.
fn apply_request(batch: &mut BatchOps<'_, '_>, lessor: &Lessor, encoded: &[u8]) -> Result<Applied, StorageError> {
    let Ok(request) = InternalRequest::decode(encoded) else {
        return Ok(Err(ApplyError::Malformed));
    };
    let mark = batch.events().len();
    let applied = apply_op(batch, lessor, request)?;
    lessor.apply_events(&batch.events()[mark..]);
    Ok(applied)
}

fn apply_op(batch: &mut BatchOps<'_, '_>, lessor: &Lessor, request: InternalRequest) -> Result<Applied, StorageError> {
    match request.request {
        Some(InternalOp::Put(put)) => outcome(batch.put(&put)),
        Some(InternalOp::DeleteRange(del)) => outcome(batch.delete_range(&del)),
        Some(InternalOp::Txn(txn)) => outcome(batch.txn(&txn)),
        Some(InternalOp::Compaction(compact)) => outcome(batch.compact(&compact)),
        Some(InternalOp::MemberAttributes(attrs)) => {
            let key = super::member_attributes_key(attrs.member_id);
            batch.set_meta(&key, &attrs.encode_to_vec()).map_err(sm_error)?;
            Ok(Ok(Vec::new()))
        }
        Some(InternalOp::LeaseGrant(grant)) => lease_grant(batch, lessor, &grant),
        Some(InternalOp::LeaseRevoke(revoke)) => lease_revoke(batch, lessor, &revoke),
        None => Ok(Err(ApplyError::Malformed)),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        applied_state(&read_store(&self.store))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut store = write_store(&self.store);
        let (mut applied, mut membership) = applied_state(&store)?;
        let mut batch = store.write().map_err(sm_error)?;
        let lessor = self.lessor.clone();
        batch.check_leases_with(move |id| lessor.exists(id));
        let mut responses = Vec::new();
        let mut membership_changed = false;
        let lessor = &self.lessor;
        let applying = batch.with_table(|batch| -> Result<(), StorageError> {
            for entry in entries {
                let log_id = *entry.get_log_id();
                assert!(applied.is_none_or(|a| a < log_id), "applied index must only grow: {applied:?} then {log_id}");
                let response = match &entry.payload {
                    EntryPayload::Blank => Response::default(),
                    EntryPayload::Normal(request) => {
                        let results: Result<Vec<Applied>, StorageError> =
                            request.batch.iter().map(|encoded| apply_request(batch, lessor, encoded)).collect();
                        Response { results: results? }
                    }
                    EntryPayload::Membership(m) => {
                        let gone =
                            membership.membership().nodes().map(|(id, _)| *id).filter(|id| m.get_node(id).is_none());
                        for id in gone.collect::<Vec<u64>>() {
                            batch.set_meta(&removed_key(id), &[]).map_err(sm_error)?;
                        }
                        membership = StoredMembership::new(Some(log_id), m.clone());
                        membership_changed = true;
                        Response::default()
                    }
                };
                responses.push(response);
                applied = Some(log_id);
            }
            Ok(())
        });
        applying.map_err(sm_error)??;
        batch.set_meta(META_APPLIED, &bincode::serialize(&applied).map_err(sm_error)?).map_err(sm_error)?;
        // The stored membership only changes with a membership entry; rewriting it on every batch
        // cost a serialisation and a table update per apply.
        if membership_changed {
            batch.set_meta(META_MEMBERSHIP, &bincode::serialize(&membership).map_err(sm_error)?).map_err(sm_error)?;
        }
        let events = batch.take_events();
        batch.commit(false).map_err(sm_error)?;
        self.hub.publish(store.current_revision(), events);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let mut store = write_store(&self.store);
        store.restore(snapshot.get_ref()).map_err(sm_error)?;
        rebuild_lessor(&store, &self.lessor).map_err(sm_error)?;
        self.hub.reset(store.current_revision());
        let (applied, _) = applied_state(&store)?;
        if applied != meta.last_log_id {
            return Err(sm_error(format!(
                "installed snapshot records applied {applied:?}, its meta says {:?}",
                meta.last_log_id
            )));
        }
        tracing::info!(last_log_id = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let store = read_store(&self.store);
        let (applied, _) = applied_state(&store)?;
        if applied.is_none() {
            return Ok(None);
        }
        build(&store).map(Some)
    }
}

/// Builds a snapshot image of the store as it is now.
fn build(store: &Store) -> Result<Snapshot, StorageError> {
    let (applied, membership) = applied_state(store)?;
    let image = store.snapshot().map_err(read_error)?;
    let snapshot_id = match applied {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, store.current_revision()),
        None => "empty".to_string(),
    };
    let meta = SnapshotMeta { last_log_id: applied, last_membership: membership, snapshot_id };
    Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(image)) })
}

/// Makes the store durable and images it; after this openraft may purge the log it covers.
pub struct SnapshotBuilder {
    store: SharedStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let mut store = write_store(&self.store);
        store.write().map_err(sm_error)?.commit(true).map_err(sm_error)?;
        let snapshot = build(&store)?;
        tracing::info!(id = %snapshot.meta.snapshot_id, "snapshot built; state machine durable");
        Ok(snapshot)
    }
}

/// Reads the applied log id of a store (for status reporting).
pub fn applied_index(store: &Store) -> u64 {
    applied_log_id(store).map_or(0, |a| a.index)
}

/// The log id of the last entry the store has applied.
pub fn applied_log_id(store: &Store) -> Option<LogId> {
    applied_state(store).ok().and_then(|(a, _)| a)
}
