//! etcd's v3 gRPC services on the client port.
//!
//! Owns: the services clients call, request validation, proposing writes and serving reads, and
//! filling response headers. This is the ONLY place where errors become gRPC statuses (`error`).
//! Handlers are thin: validate -> call -> map the error -> fill the header.

mod cluster;
mod election;
pub mod error;
mod kv;
mod lease;
mod lock;
mod maintenance;
#[cfg(not(madsim))]
mod oversize;
pub mod validate;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use detcd_proto::detcdpb::internal_request::Request as InternalOp;
use detcd_proto::detcdpb::InternalRequest;
use detcd_proto::etcdserverpb::cluster_server::ClusterServer;
use detcd_proto::etcdserverpb::kv_server::KvServer;
use detcd_proto::etcdserverpb::lease_server::LeaseServer;
use detcd_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use detcd_proto::etcdserverpb::watch_server::WatchServer;
use detcd_proto::etcdserverpb::ResponseHeader;
use prost::Message;

use crate::config::Config;
use crate::lease::Lessor;
use crate::raft::{Identity, Node, Peers, Proposer, Raft, SharedStore};
use crate::watch::WatchHub;
use error::EtcdError;

/// gRPC allows this much beyond `--max-request-bytes` for framing, as etcd does.
const GRPC_OVERHEAD_BYTES: u64 = 512 * 1024;

/// What every handler needs: the member's Raft, its store and its limits.
pub struct Context {
    pub raft: Raft,
    pub proposer: Proposer,
    pub peers: Peers,
    pub reads: crate::raft::ReadIndex,
    pub store: SharedStore,
    pub lessor: Arc<Lessor>,
    pub hub: Arc<WatchHub>,
    pub identity: Identity,
    pub max_request_bytes: u64,
    /// `--initial-cluster-token`: part of the ID of a member added at run time.
    pub cluster_token: String,
    pub max_txn_ops: usize,
    /// How long a request may wait for Raft before `etcdserver: request timed out`.
    pub request_timeout: Duration,
    /// `--election-timeout`: the followers' leader lease.
    pub election_timeout: Duration,
    /// Becomes true when the member stops; long-lived streams end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    pub fn new(config: &Config, node: &Node, stopping: tokio::sync::watch::Receiver<bool>) -> Context {
        let request_timeout = crate::raft::request_timeout(config);
        Context {
            proposer: node.proposer.clone(),
            peers: node.peers.clone(),
            reads: node.reads.clone(),
            raft: node.raft.clone(),
            store: node.store.clone(),
            lessor: node.lessor.clone(),
            hub: node.hub.clone(),
            identity: node.identity.clone(),
            max_request_bytes: config.max_request_bytes,
            cluster_token: config.initial_cluster_token.clone(),
            max_txn_ops: config.max_txn_ops,
            request_timeout,
            election_timeout: config.election_timeout,
            stopping,
        }
    }

    /// The header of a response: `revision` as set by the store, the rest from this member.
    pub fn header(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let revision = header.map_or(0, |h| h.revision);
        let raft_term = self.raft.metrics().borrow().current_term;
        Some(ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision,
            raft_term,
        })
    }

    /// A header at the store's current revision.
    pub fn header_now(&self) -> Option<ResponseHeader> {
        let revision = *self.hub.subscribe().borrow();
        self.header(Some(ResponseHeader { revision, ..Default::default() }))
    }

    /// Proposes a write through Raft and decodes the applied response.
    pub async fn propose<T: Message + Default>(&self, op: InternalOp) -> Result<T, EtcdError> {
        let request = InternalRequest { id: crate::runtime::random_u64(), request: Some(op) };
        let encoded = request.encode_to_vec();
        if encoded.len() as u64 > self.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let applied = match crate::runtime::timeout(self.request_timeout, self.proposer.propose(encoded)).await {
            Ok(result) => result.map_err(EtcdError::from)?,
            Err(_) => return Err(EtcdError::Timeout),
        };
        let bytes = applied.map_err(EtcdError::from)?;
        T::decode(bytes.as_slice()).map_err(|_| EtcdError::Corrupt)
    }

    /// Waits until this member may serve a linearizable read (read index confirmed and applied).
    pub async fn linearizable_read(&self) -> Result<(), EtcdError> {
        let barrier = self.reads.barrier();
        match crate::runtime::timeout(self.request_timeout, barrier).await {
            Ok(result) => result.map_err(EtcdError::from),
            Err(_) => Err(EtcdError::Timeout),
        }
    }
}

/// Serves the client API on `addr` until `shutdown` resolves.
///
/// Services are built and served in this one function: the simulator's server type has an extra
/// type parameter that must never be named.
pub async fn serve(
    ctx: Arc<Context>,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // etcd limits every received message, on every service, to the request limit plus overhead.
    let limit = (ctx.max_request_bytes + GRPC_OVERHEAD_BYTES) as usize;
    let kv = KvServer::new(kv::KvService::new(ctx.clone())).max_decoding_message_size(limit);
    let maintenance =
        MaintenanceServer::new(maintenance::MaintenanceService::new(ctx.clone())).max_decoding_message_size(limit);
    let cluster = ClusterServer::new(cluster::ClusterService::new(ctx.clone())).max_decoding_message_size(limit);
    let watch = WatchServer::new(watch::WatchService::new(ctx.clone())).max_decoding_message_size(limit);
    let lease = LeaseServer::new(lease::LeaseService::new(ctx.clone())).max_decoding_message_size(limit);
    let lock = detcd_proto::v3lockpb::lock_server::LockServer::new(lock::LockService::new(ctx.clone()))
        .max_decoding_message_size(limit);
    let election =
        detcd_proto::v3electionpb::election_server::ElectionServer::new(election::ElectionService::new(ctx.clone()))
            .max_decoding_message_size(limit);
    #[cfg(not(madsim))]
    let mut builder = tonic::transport::Server::builder().layer(oversize::OversizeLayer);
    #[cfg(madsim)]
    let mut builder = tonic::transport::Server::builder();
    builder
        .add_service(kv)
        .add_service(watch)
        .add_service(lease)
        .add_service(maintenance)
        .add_service(cluster)
        .add_service(lock)
        .add_service(election)
        .serve_with_shutdown(addr, shutdown)
        .await
        .map_err(|e| format!("client server on {addr}: {e}"))
}
