//! etcd's `Election` service (`v3electionpb`): Campaign, Proclaim, Leader, Observe and Resign, as
//! etcd 3.4 serves them — by running clientv3's `concurrency.Election` recipe inside the server.
//!
//! A candidate's key is `name/<lease in hex>` and its value the candidate's proposal; the leader
//! is the candidate with the oldest key, and a `LeaderKey` (key and create revision) proves
//! leadership to Proclaim and Resign. The pieces shared with the lock recipe live in `lock`;
//! errors reach the caller as etcd's do, code Unknown with etcd's message.

use std::sync::Arc;

use detcd_proto::etcdserverpb::request_op::Request as Op;
use detcd_proto::etcdserverpb::{PutRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse};
use detcd_proto::mvccpb::KeyValue;
use detcd_proto::v3electionpb::election_server::Election;
use detcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::error::EtcdError;
use super::lease::{channel_stream, ChannelStream};
use super::lock::{
    contender_key, created_at, delete, first_created, is_delete, key_only, linearizable_range, op, prefix_end,
    prefix_of, range_kv, recipe_status, revision, session_lease, txn_through_raft, wait_deletes, RecipeWatch, Withdraw,
};
use super::Context;

/// Leader responses buffered per Observe stream.
const OBSERVE_BUFFER: usize = 16;

type Sender = mpsc::Sender<Result<LeaderResponse, Status>>;

pub struct ElectionService {
    ctx: Arc<Context>,
}

impl ElectionService {
    pub fn new(ctx: Arc<Context>) -> ElectionService {
        ElectionService { ctx }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let resp = campaign(&self.ctx, request.into_inner()).await.map_err(recipe_status)?;
        Ok(Response::new(resp))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let req = request.into_inner();
        let leader = req.leader.ok_or(EtcdError::MissingLeaderKey).map_err(recipe_status)?;
        let header = async {
            let lease = session_lease(&self.ctx, leader.lease).await?;
            proclaim(&self.ctx, &leader.key, leader.rev, lease, req.value).await
        };
        Ok(Response::new(ProclaimResponse { header: header.await.map_err(recipe_status)?.header }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let prefix = prefix_of(&request.into_inner().name);
        let resp = linearizable_range(&self.ctx, &first_created(&prefix)).await.map_err(recipe_status)?;
        let RangeResponse { header, kvs, .. } = resp;
        let kv = kvs.into_iter().next().ok_or(EtcdError::ElectionNoLeader).map_err(recipe_status)?;
        Ok(Response::new(LeaderResponse { header, kv: Some(kv) }))
    }

    type ObserveStream = ChannelStream<LeaderResponse>;

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let prefix = prefix_of(&request.into_inner().name);
        let (tx, rx) = mpsc::channel(OBSERVE_BUFFER);
        let ctx = self.ctx.clone();
        crate::runtime::spawn(async move {
            tokio::select! {
                biased;
                _ = tx.closed() => {}
                // etcd ends the stream without an error when observing fails.
                ended = observe(&ctx, &prefix, &tx) => if let Err(e) = ended {
                    tracing::debug!(?e, "an Observe stream ended");
                }
            }
        });
        Ok(Response::new(channel_stream(rx, self.ctx.stopping.clone())))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let leader = request.into_inner().leader.ok_or(EtcdError::MissingLeaderKey).map_err(recipe_status)?;
        let header = async {
            // Unused here, yet etcd opens the session (granting a lease for lease 0) all the same.
            session_lease(&self.ctx, leader.lease).await?;
            resign(&self.ctx, &leader.key, leader.rev).await
        };
        Ok(Response::new(ResignResponse { header: header.await.map_err(recipe_status)?.header }))
    }
}

/// etcd's `Election.Campaign` on the session of `req.lease`.
async fn campaign(ctx: &Arc<Context>, req: CampaignRequest) -> Result<CampaignResponse, EtcdError> {
    let lease = session_lease(ctx, req.lease).await?;
    let prefix = prefix_of(&req.name);
    let key = contender_key(&prefix, lease);
    let put = PutRequest { key: key.clone(), value: req.value.clone(), lease, ..Default::default() };
    let txn = TxnRequest {
        compare: vec![created_at(&key, 0)],
        success: vec![op(Op::RequestPut(put))],
        failure: vec![op(Op::RequestRange(key_only(&key)))],
    };
    let resp = txn_through_raft(ctx, txn).await?;
    let mut rev = revision(&resp.header);
    if !resp.succeeded {
        // This session is a candidate already: keep its place, announce the new value.
        let kv = range_kv(&resp, 0)?;
        rev = kv.create_revision;
        if kv.value != req.value {
            if let Err(e) = proclaim(ctx, &key, rev, lease, req.value.clone()).await {
                let _ = resign(ctx, &key, rev).await;
                return Err(e);
            }
        }
    }
    // Only a cancelled wait resigns; a failed one leaves the candidate in place, as etcd does.
    let withdraw = Withdraw::new(ctx.clone(), resign_txn(&key, rev));
    let waited = wait_deletes(ctx, &prefix, rev - 1).await;
    withdraw.disarm();
    waited?;
    let leader = LeaderKey { name: req.name, key, rev, lease };
    Ok(CampaignResponse { header: resp.header, leader: Some(leader) })
}

/// etcd's `Election.Proclaim`: sets the leader's value if `key` is still the one created at `rev`.
async fn proclaim(ctx: &Context, key: &[u8], rev: i64, lease: i64, value: Vec<u8>) -> Result<TxnResponse, EtcdError> {
    let put = PutRequest { key: key.to_vec(), value, lease, ..Default::default() };
    let txn =
        TxnRequest { compare: vec![created_at(key, rev)], success: vec![op(Op::RequestPut(put))], failure: vec![] };
    let resp = txn_through_raft(ctx, txn).await?;
    if !resp.succeeded {
        return Err(EtcdError::ElectionNotLeader);
    }
    Ok(resp)
}

fn resign_txn(key: &[u8], rev: i64) -> TxnRequest {
    TxnRequest { compare: vec![created_at(key, rev)], success: vec![delete(key)], failure: vec![] }
}

/// etcd's `Election.Resign`: deletes `key` if it is still the one created at `rev`.
async fn resign(ctx: &Context, key: &[u8], rev: i64) -> Result<TxnResponse, EtcdError> {
    txn_through_raft(ctx, resign_txn(key, rev)).await
}

/// etcd's `Election.observe`: sends the leader, then each new value of its key; when the key goes,
/// starts over with the next leader (waiting for one if there is none). Runs until the client
/// leaves or a read fails.
async fn observe(ctx: &Context, prefix: &[u8], tx: &Sender) -> Result<(), EtcdError> {
    loop {
        let RangeResponse { header, kvs, .. } = linearizable_range(ctx, &first_created(prefix)).await?;
        let (header, leader) = match kvs.into_iter().next() {
            Some(kv) => (header, kv),
            None => first_put(ctx, prefix, revision(&header)).await?,
        };
        let mut changes = RecipeWatch::new(ctx, &leader.key, Vec::new(), revision(&header) + 1);
        if !send(tx, header, leader).await {
            return Ok(());
        }
        'leader: loop {
            let (current, events) = changes.next().await?;
            for event in events {
                if is_delete(&event) {
                    break 'leader;
                }
                let Some(kv) = event.kv else { continue };
                if !send(tx, at(ctx, current), kv).await {
                    return Ok(());
                }
            }
        }
    }
}

/// The first key put under `prefix` from revision `from` on, with a header at its revision.
async fn first_put(ctx: &Context, prefix: &[u8], from: i64) -> Result<(Option<ResponseHeader>, KeyValue), EtcdError> {
    let mut puts = RecipeWatch::new(ctx, prefix, prefix_end(prefix), from);
    loop {
        let (_, events) = puts.next().await?;
        if let Some(kv) = events.into_iter().find(|e| !is_delete(e)).and_then(|e| e.kv) {
            return Ok((at(ctx, kv.mod_revision), kv));
        }
    }
}

fn at(ctx: &Context, revision: i64) -> Option<ResponseHeader> {
    ctx.header(Some(ResponseHeader { revision, ..Default::default() }))
}

/// Sends one leader response; false once the client is gone.
async fn send(tx: &Sender, header: Option<ResponseHeader>, kv: KeyValue) -> bool {
    tx.send(Ok(LeaderResponse { header, kv: Some(kv) })).await.is_ok()
}
