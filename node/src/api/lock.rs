//! etcd's `Lock` service (`v3lockpb`): Lock and Unlock, as etcd 3.4 serves them — by running
//! clientv3's `concurrency.Mutex` recipe inside the server — and the pieces of that recipe the
//! election service shares: the session lease, a contender's key, and waiting for the contenders
//! ahead of it to go (`waitDeletes`).
//!
//! A contender's key is `name/<lease in hex>`; contenders are served in create-revision order.
//! Writes go through Raft like any client's; reads are linearizable; waiting uses the same
//! watchers as the Watch service (`crate::watch`), so a wait resumes from history with no gap.
//!
//! etcd answers these RPCs through an in-process client that keeps an error's message and drops
//! its gRPC code, so every error here reaches the caller as code Unknown with etcd's message
//! ([`recipe_status`]).

use std::sync::Arc;

use detcd_proto::detcdpb::internal_request::Request as InternalOp;
use detcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use detcd_proto::etcdserverpb::request_op::Request as Op;
use detcd_proto::etcdserverpb::response_op::Response as OpResponse;
use detcd_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, PutRequest, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest,
};
use detcd_proto::mvccpb::event::EventType;
use detcd_proto::mvccpb::{Event, KeyValue};
use detcd_proto::v3lockpb::lock_server::Lock;
use detcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::error::EtcdError;
use super::{validate, Context};
use crate::raft::read_store;
use crate::watch::{Delivery, Watchers};

/// clientv3's `NoLease`: a Lock or Campaign naming it runs on a fresh session lease.
const NO_LEASE: i64 = 0;
/// clientv3 concurrency's `defaultSessionTTL`: the TTL of a lease granted for a session.
const SESSION_TTL_S: i64 = 60;

pub struct LockService {
    ctx: Arc<Context>,
}

impl LockService {
    pub fn new(ctx: Arc<Context>) -> LockService {
        LockService { ctx }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let req = request.into_inner();
        let resp = lock(&self.ctx, req).await.map_err(recipe_status)?;
        Ok(Response::new(resp))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let req = DeleteRangeRequest { key: request.into_inner().key, ..Default::default() };
        validate::delete_range(&req).map_err(recipe_status)?;
        let resp: DeleteRangeResponse = self.ctx.propose(InternalOp::DeleteRange(req)).await.map_err(recipe_status)?;
        Ok(Response::new(UnlockResponse { header: self.ctx.header(resp.header) }))
    }
}

/// etcd's `Mutex.Lock` on the session of `req.lease`.
async fn lock(ctx: &Arc<Context>, req: LockRequest) -> Result<LockResponse, EtcdError> {
    let lease = session_lease(ctx, req.lease).await?;
    let prefix = prefix_of(&req.name);
    let key = contender_key(&prefix, lease);
    // Join the waiters unless this session already did; learn the owner in the same step.
    let put = PutRequest { key: key.clone(), lease, ..Default::default() };
    let txn = TxnRequest {
        compare: vec![created_at(&key, 0)],
        success: vec![op(Op::RequestPut(put)), op(Op::RequestRange(first_created(&prefix)))],
        failure: vec![op(Op::RequestRange(key_only(&key))), op(Op::RequestRange(first_created(&prefix)))],
    };
    let resp = txn_through_raft(ctx, txn).await?;
    let my_rev = if resp.succeeded { revision(&resp.header) } else { range_kv(&resp, 0)?.create_revision };
    let owner = range_response(&resp, 1)?.kvs.first().map(|kv| kv.create_revision);
    if owner.is_none_or(|rev| rev == my_rev) {
        return Ok(LockResponse { header: resp.header, key });
    }
    // A wait that fails or is abandoned deletes the key, whether this call put it or not (etcd's
    // `Mutex.Unlock`).
    let withdraw = Withdraw::new(ctx.clone(), TxnRequest { success: vec![delete(&key)], ..Default::default() });
    match wait_deletes(ctx, &prefix, my_rev - 1).await {
        Ok(header) => {
            withdraw.disarm();
            Ok(LockResponse { header, key })
        }
        Err(e) => {
            withdraw.now().await;
            Err(e)
        }
    }
}

/// An error as etcd's lock and election services answer it: code Unknown, etcd's message.
pub(super) fn recipe_status(e: EtcdError) -> Status {
    EtcdError::Uncoded(e.code_and_message().1).into()
}

/// The lease of a recipe's session: `lease` itself, or a fresh one when it names none
/// (clientv3's `NewSession`).
pub(super) async fn session_lease(ctx: &Context, lease: i64) -> Result<i64, EtcdError> {
    if lease != NO_LEASE {
        return Ok(lease);
    }
    // Like LeaseGrant with no ID: a positive ID of our choosing.
    let id = ((crate::runtime::random_u64() >> 1) as i64).max(1);
    let grant = LeaseGrantRequest { ttl: SESSION_TTL_S, id };
    let resp: LeaseGrantResponse = ctx.propose(InternalOp::LeaseGrant(grant)).await?;
    Ok(resp.id)
}

/// The key prefix of lock or election `name`.
pub(super) fn prefix_of(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// The key of the contender holding `lease`: the prefix and the lease ID as Go's `%x` prints it.
pub(super) fn contender_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    [prefix, hex.as_bytes()].concat()
}

/// etcd's `GetPrefixRangeEnd`: the end of the range of every key starting with `prefix`.
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The oldest key under `prefix` (clientv3's `WithFirstCreate`).
pub(super) fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

pub(super) fn key_only(key: &[u8]) -> RangeRequest {
    RangeRequest { key: key.to_vec(), ..Default::default() }
}

pub(super) fn op(request: Op) -> RequestOp {
    RequestOp { request: Some(request) }
}

pub(super) fn delete(key: &[u8]) -> RequestOp {
    op(Op::RequestDeleteRange(DeleteRangeRequest { key: key.to_vec(), ..Default::default() }))
}

/// `create_revision(key) == rev`.
pub(super) fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

pub(super) fn revision(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

/// A transaction as a client's would run: checked, proposed, answered with a full header.
pub(super) async fn txn_through_raft(ctx: &Context, txn: TxnRequest) -> Result<TxnResponse, EtcdError> {
    validate::txn(&txn, ctx.max_txn_ops)?;
    let mut resp: TxnResponse = ctx.propose(InternalOp::Txn(txn)).await?;
    resp.header = ctx.header(resp.header);
    Ok(resp)
}

/// A linearizable range, answered with a full header.
pub(super) async fn linearizable_range(ctx: &Context, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    validate::range(req)?;
    ctx.linearizable_read().await?;
    let mut resp = read_store(&ctx.store).range(req)?;
    resp.header = ctx.header(resp.header);
    Ok(resp)
}

/// The answer of the range at `index` in a transaction's responses.
pub(super) fn range_response(resp: &TxnResponse, index: usize) -> Result<&RangeResponse, EtcdError> {
    match resp.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(OpResponse::ResponseRange(range)) => Ok(range),
        other => {
            tracing::error!(index, ?other, "a recipe's transaction answered without its range");
            Err(EtcdError::Corrupt)
        }
    }
}

/// The key-value the range at `index` found: the compare that failed promised it exists.
pub(super) fn range_kv(resp: &TxnResponse, index: usize) -> Result<&KeyValue, EtcdError> {
    range_response(resp, index)?.kvs.first().ok_or_else(|| {
        tracing::error!(index, "a key whose create revision was not 0 was not found in the same transaction");
        EtcdError::Corrupt
    })
}

/// etcd's `waitDeletes`: waits until no key under `prefix` was created at or before
/// `max_create_rev`, deletion by deletion, newest first; answers the header of the last read.
pub(super) async fn wait_deletes(
    ctx: &Context,
    prefix: &[u8],
    max_create_rev: i64,
) -> Result<Option<ResponseHeader>, EtcdError> {
    let newest = RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create_rev,
        ..Default::default()
    };
    // No key can be created at or below `max_create_rev` any more, so each round waits on a key
    // no newer than the last one's: the rounds end once the keys present at the start are gone.
    let mut waited_on = max_create_rev;
    loop {
        let resp = linearizable_range(ctx, &newest).await?;
        let Some(last) = resp.kvs.first() else { return Ok(resp.header) };
        assert!(last.create_revision <= waited_on, "waitDeletes went back to a newer key");
        waited_on = last.create_revision;
        wait_delete(ctx, &last.key, revision(&resp.header)).await?;
    }
}

/// etcd's `waitDelete`: waits for a deletion of `key` at or after revision `from`.
async fn wait_delete(ctx: &Context, key: &[u8], from: i64) -> Result<(), EtcdError> {
    let mut watch = RecipeWatch::new(ctx, key, Vec::new(), from);
    loop {
        let (_, events) = watch.next().await?;
        if events.iter().any(is_delete) {
            return Ok(());
        }
    }
}

pub(super) fn is_delete(event: &Event) -> bool {
    event.r#type == EventType::Delete as i32
}

/// One watcher, as a recipe uses clientv3's `Watch`: the changes of a key or a prefix from a
/// revision on, read as the Watch service reads them.
pub(super) struct RecipeWatch<'a> {
    ctx: &'a Context,
    watchers: Watchers,
    current: watch::Receiver<i64>,
}

impl<'a> RecipeWatch<'a> {
    /// Watches `key` (or `key..range_end`) from revision `from` on.
    pub(super) fn new(ctx: &'a Context, key: &[u8], range_end: Vec<u8>, from: i64) -> RecipeWatch<'a> {
        let current = ctx.hub.subscribe();
        let mut watchers = Watchers::new();
        let create = WatchCreateRequest { key: key.to_vec(), range_end, start_revision: from, ..Default::default() };
        let now = *current.borrow();
        if let Err(e) = watchers.create(&create, now) {
            panic!("a recipe watches a key or a non-empty prefix, yet: {e}");
        }
        RecipeWatch { ctx, watchers, current }
    }

    /// Waits for the next events, in revision order; answers them with the revision they were
    /// read at.
    pub(super) async fn next(&mut self) -> Result<(i64, Vec<Event>), EtcdError> {
        loop {
            let current = *self.current.borrow_and_update();
            while self.watchers.behind(current) {
                let deliveries = {
                    let store = read_store(&self.ctx.store);
                    self.watchers.poll(&self.ctx.hub, &store, current)?
                };
                let mut events = Vec::new();
                for delivery in deliveries {
                    match delivery {
                        Delivery::Events { events: more, .. } => events.extend(more),
                        Delivery::Compacted { .. } => return Err(EtcdError::Compacted),
                    }
                }
                if !events.is_empty() {
                    return Ok((current, events));
                }
            }
            if self.current.changed().await.is_err() {
                return Err(EtcdError::Stopped);
            }
        }
    }
}

/// Withdraws a contender's key when its call is abandoned — the client cancelled, or its deadline
/// passed — as etcd does when the context of a Lock or a Campaign ends while it waits.
pub(super) struct Withdraw {
    ctx: Arc<Context>,
    txn: Option<TxnRequest>,
}

impl Withdraw {
    pub(super) fn new(ctx: Arc<Context>, txn: TxnRequest) -> Withdraw {
        Withdraw { ctx, txn: Some(txn) }
    }

    /// The call completed: nothing to withdraw.
    pub(super) fn disarm(mut self) {
        self.txn = None;
    }

    /// Withdraws now, waiting for it; a failure is only logged (etcd ignores it too). Abandoned
    /// half way, it is withdrawn again from `drop` (withdrawing twice deletes nothing more).
    pub(super) async fn now(mut self) {
        if let Some(txn) = self.txn.clone() {
            withdraw(&self.ctx, txn).await;
            self.txn = None;
        }
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(txn) = self.txn.take() {
            let ctx = self.ctx.clone();
            crate::runtime::spawn(async move { withdraw(&ctx, txn).await });
        }
    }
}

async fn withdraw(ctx: &Context, txn: TxnRequest) {
    if let Err(e) = txn_through_raft(ctx, txn).await {
        tracing::warn!(?e, "could not withdraw an abandoned lock or campaign key");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contender_keys_print_the_lease_as_go_does() {
        assert_eq!(contender_key(b"mylock/", 0x694d_7f6a_1c2b_3d4e), b"mylock/694d7f6a1c2b3d4e");
        assert_eq!(contender_key(b"e/", 10), b"e/a");
        assert_eq!(contender_key(b"e/", -10), b"e/-a");
    }

    #[test]
    fn prefix_end_is_etcds() {
        assert_eq!(prefix_end(b"lock/"), b"lock0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn errors_answer_unknown_with_etcds_message() {
        let status = recipe_status(EtcdError::LeaseNotFound);
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert_eq!(status.message(), "etcdserver: requested lease not found");
    }
}
