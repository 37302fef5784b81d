//! etcd's `Lease` service: LeaseGrant, LeaseRevoke, LeaseKeepAlive (a stream), LeaseTimeToLive,
//! LeaseLeases.
//!
//! Grant and revoke go through Raft; keep-alive and time-to-live are answered by the leader, which
//! alone tracks time (a follower passes them on); the lease list is this member's applied table.

use std::pin::Pin;
use std::sync::Arc;

use detcd_proto::detcdpb::internal_request::Request as InternalOp;
use detcd_proto::etcdserverpb::lease_server::Lease;
use detcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::error::EtcdError;
use super::Context;
use crate::lease::MAX_LEASE_TTL;
use crate::raft::{lease_call, LeaseAnswer, LeaseCall};

/// Keep-alive responses buffered per stream before the stream stops reading requests.
const KEEPALIVE_BUFFER: usize = 16;

pub struct LeaseService {
    ctx: Arc<Context>,
}

impl LeaseService {
    pub fn new(ctx: Arc<Context>) -> LeaseService {
        LeaseService { ctx }
    }
}

/// A server stream fed by a channel.
pub(super) type ChannelStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A server stream fed by `rx` that ends, with etcd's `etcdserver: server stopped` (Unavailable:
/// clients go to another member), when the member stops. Without that end, a long-lived stream
/// (a watch, keep-alives) would hold the server's graceful shutdown open for as long as its client
/// keeps it.
pub(super) fn channel_stream<T: Send + 'static>(
    rx: mpsc::Receiver<Result<T, Status>>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> ChannelStream<T> {
    Box::pin(futures::stream::unfold(Some((rx, stopping)), |state| async move {
        let (mut rx, mut stopping) = state?;
        let next = tokio::select! {
            item = rx.recv() => Some(item?),
            _ = stopping.wait_for(|stopping| *stopping) => None,
        };
        match next {
            Some(item) => Some((item, Some((rx, stopping)))),
            None => Some((Err(EtcdError::Stopped.into()), None)),
        }
    }))
}

async fn call(ctx: &Context, call: LeaseCall) -> Result<LeaseAnswer, EtcdError> {
    lease_call(&ctx.raft, &ctx.reads, &ctx.peers, &ctx.lessor, &call, ctx.request_timeout)
        .await
        .map_err(EtcdError::from)
}

/// Answers the keep-alives of one stream, in order, until the client closes it or an error ends it.
async fn keep_alive_loop(
    ctx: Arc<Context>,
    mut requests: Streaming<LeaseKeepAliveRequest>,
    tx: mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
) {
    loop {
        let req = match requests.message().await {
            Ok(Some(req)) => req,
            Ok(None) | Err(_) => return,
        };
        let reply = match call(&ctx, LeaseCall::KeepAlive(req.id)).await {
            Ok(LeaseAnswer::Renewed(ttl)) => Ok(LeaseKeepAliveResponse { header: ctx.header_now(), id: req.id, ttl }),
            // etcd answers a keep-alive for an unknown lease with TTL 0.
            Ok(_) => Ok(LeaseKeepAliveResponse { header: ctx.header_now(), id: req.id, ttl: 0 }),
            Err(e) => Err(Status::from(e)),
        };
        let failed = reply.is_err();
        if tx.send(reply).await.is_err() || failed {
            return;
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge.into());
        }
        // etcd picks a positive ID when the client names none; the cluster refuses duplicates.
        while req.id <= 0 {
            req.id = (crate::runtime::random_u64() >> 1) as i64;
        }
        let mut resp: LeaseGrantResponse = self.ctx.propose(InternalOp::LeaseGrant(req)).await?;
        resp.header = self.ctx.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let req = request.into_inner();
        let mut resp: LeaseRevokeResponse = self.ctx.propose(InternalOp::LeaseRevoke(req)).await?;
        resp.header = self.ctx.header(resp.header);
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream = ChannelStream<LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let (tx, rx) = mpsc::channel(KEEPALIVE_BUFFER);
        crate::runtime::spawn(keep_alive_loop(self.ctx.clone(), request.into_inner(), tx));
        Ok(Response::new(channel_stream(rx, self.ctx.stopping.clone())))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let resp = match call(&self.ctx, LeaseCall::TimeToLive { id: req.id, keys: req.keys }).await? {
            LeaseAnswer::TimeToLive { remaining, granted, keys } => LeaseTimeToLiveResponse {
                header: self.ctx.header_now(),
                id: req.id,
                ttl: remaining,
                granted_ttl: granted,
                keys,
            },
            // etcd answers TTL -1 for a lease that does not exist.
            _ => LeaseTimeToLiveResponse { header: self.ctx.header_now(), id: req.id, ttl: -1, ..Default::default() },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self.ctx.lessor.ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: self.ctx.header_now(), leases }))
    }
}
