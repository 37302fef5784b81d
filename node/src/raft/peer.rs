//! The peer protocol on `--listen-peer-urls`: openraft's RPCs, writes forwarded to the leader, and
//! read-index requests, all as gRPC with a bincode payload inside a `PeerEnvelope`. AppendEntries
//! travel on a long-lived stream per follower ([`AppendStream`]); every other call is unary.
//!
//! Connections are kept per member and reused (a tonic `Channel` multiplexes and reconnects).
//! Every envelope names its cluster; a member of another cluster is refused, not obeyed. Failures
//! travel inside the payload, so this module never builds a gRPC status.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd_proto::detcdpb::peer_client::PeerClient;
use detcd_proto::detcdpb::peer_server::Peer;
use detcd_proto::detcdpb::PeerEnvelope;
use futures::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sync_wrapper::SyncWrapper;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::proposer::{Applied, ProposeError, Proposer};
use super::types::{Raft, TypeConfig};
use crate::lease::Lessor;

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a peer call failed before the peer could answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerFault {
    #[error("peer {peer:x} belongs to cluster {theirs:x}, this member to cluster {ours:x}")]
    ClusterMismatch { peer: u64, ours: u64, theirs: u64 },
    #[error("peer message does not decode: {0}")]
    Decode(String),
    #[error("peer {0:x} is unreachable: {1}")]
    Unreachable(u64, String),
    /// No connection to the peer could be made, so the request was certainly not delivered.
    #[error("cannot connect to peer {0:x}: {1}")]
    NotDelivered(u64, String),
    #[error("peer {0:x} did not answer in time")]
    Timeout(u64),
    /// The sender is not a member of the receiver's cluster (any more).
    #[error("member {0:x} has been removed from the cluster")]
    Removed(u64),
}

/// The RPCs of the peer service.
#[derive(Clone, Copy, Debug)]
pub enum Method {
    Vote,
    InstallSnapshot,
    Forward,
    ReadIndex,
    Lease,
    Membership,
    Join,
    CampaignAfter,
}

/// Connections to the other members, shared by openraft's network, forwarding and reads.
#[derive(Clone)]
pub struct Peers {
    pub cluster_id: u64,
    pub self_id: u64,
    channels: Arc<Mutex<HashMap<u64, (String, Channel)>>>,
    /// Set when another member answered that this one was removed from the cluster.
    removed: Arc<AtomicBool>,
}

impl Peers {
    pub fn new(cluster_id: u64, self_id: u64) -> Peers {
        Peers {
            cluster_id,
            self_id,
            channels: Arc::new(Mutex::new(HashMap::new())),
            removed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether another member told this one it has been removed from the cluster.
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    fn channel(&self, target: u64, url: &str) -> Result<Channel, PeerFault> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| panic!("peer channel cache poisoned: {p}"));
        if let Some((known, channel)) = channels.get(&target) {
            if known == url {
                return Ok(channel.clone());
            }
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| PeerFault::Unreachable(target, e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT);
        let channel = endpoint.connect_lazy();
        channels.insert(target, (url.to_string(), channel.clone()));
        Ok(channel)
    }

    /// Wraps a serialisable request in this member's envelope.
    fn envelope<Req: Serialize>(&self, request: &Req) -> Result<PeerEnvelope, PeerFault> {
        let payload = bincode::serialize(request).map_err(|e| PeerFault::Decode(e.to_string()))?;
        Ok(PeerEnvelope { cluster_id: self.cluster_id, from: self.self_id, payload })
    }

    /// Decodes a peer's reply, noting a verdict that concerns this member itself.
    fn open_reply<Resp: DeserializeOwned>(&self, reply: &PeerEnvelope) -> Result<Resp, PeerFault> {
        let result: Result<Resp, PeerFault> =
            bincode::deserialize(&reply.payload).map_err(|e| PeerFault::Decode(e.to_string()))?;
        match &result {
            Err(PeerFault::Removed(id)) if *id == self.self_id => self.removed.store(true, Ordering::Relaxed),
            Err(fault @ PeerFault::ClusterMismatch { .. }) => {
                tracing::error!(%fault, "a peer refuses this member: check --initial-cluster and --initial-cluster-token");
            }
            _ => {}
        }
        result
    }

    /// Opens an [`AppendStream`] to member `target` at `url`.
    pub async fn open_append_stream(
        &self,
        target: u64,
        url: &str,
        timeout: Duration,
    ) -> Result<AppendStream, PeerFault> {
        let (requests, outbound) = mpsc::channel(APPEND_STREAM_BUFFER);
        let mut client = PeerClient::new(self.channel(target, url)?).max_decoding_message_size(usize::MAX);
        match crate::runtime::timeout(timeout, client.append_stream(receiver_stream(outbound))).await {
            Ok(Ok(replies)) => Ok(AppendStream {
                peers: self.clone(),
                target,
                requests,
                replies: SyncWrapper::new(replies.into_inner()),
            }),
            Ok(Err(status)) => Err(call_fault(target, &status)),
            Err(_) => Err(PeerFault::Timeout(target)),
        }
    }

    /// Calls `method` on member `target` at `url` with a serialisable request.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: u64,
        url: &str,
        method: Method,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerFault> {
        let envelope = self.envelope(request)?;
        let mut client = PeerClient::new(self.channel(target, url)?).max_decoding_message_size(usize::MAX);
        let call = async move {
            match method {
                Method::Vote => client.vote(envelope).await,
                Method::InstallSnapshot => client.install_snapshot(envelope).await,
                Method::Forward => client.forward(envelope).await,
                Method::ReadIndex => client.read_index(envelope).await,
                Method::Lease => client.lease(envelope).await,
                Method::Membership => client.membership(envelope).await,
                Method::Join => client.join(envelope).await,
                Method::CampaignAfter => client.campaign_after(envelope).await,
            }
        };
        let reply = match crate::runtime::timeout(timeout, call).await {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => return Err(call_fault(target, &status)),
            Err(_) => return Err(PeerFault::Timeout(target)),
        };
        self.open_reply(&reply)
    }
}

/// How many envelopes may wait in either direction of an [`AppendStream`].
const APPEND_STREAM_BUFFER: usize = 4;

/// A long-lived gRPC stream of AppendEntries from the leader to one follower: each request is one
/// message on an open HTTP/2 stream, answered in order, instead of a unary call with its own
/// HEADERS and a body sent from a separate task. openraft sends one AppendEntries at a time per
/// follower, so one answer is awaited at a time. Any failure ends the stream: the caller drops it
/// and opens a new one (AppendEntries is idempotent, so a request that may have been delivered is
/// safe to send again).
pub struct AppendStream {
    peers: Peers,
    target: u64,
    requests: mpsc::Sender<PeerEnvelope>,
    /// Only ever used through `&mut`; the wrapper makes the stream `Sync` (openraft's network
    /// client must be), which the simulator's `Streaming` is not by itself.
    replies: SyncWrapper<Streaming<PeerEnvelope>>,
}

impl AppendStream {
    /// Sends one request and waits for its answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(&mut self, request: &Req) -> Result<Resp, PeerFault> {
        let envelope = self.peers.envelope(request)?;
        let closed = |why: &str| PeerFault::Unreachable(self.target, format!("append stream {why}"));
        self.requests.send(envelope).await.map_err(|_| closed("closed"))?;
        match self.replies.get_mut().message().await {
            Ok(Some(reply)) => self.peers.open_reply(&reply),
            Ok(None) => Err(closed("ended")),
            Err(status) => Err(PeerFault::Unreachable(self.target, status.message().to_string())),
        }
    }
}

/// The leader this member knows of, and its first peer URL if the membership has one.
pub fn known_leader(raft: &Raft) -> Option<(u64, Option<String>)> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let leader = m.current_leader?;
    let url = m.membership_config.membership().get_node(&leader).and_then(|n| n.peer_urls.first().cloned());
    Some((leader, url))
}

/// The fault of a call that failed with `status`: not delivered if the connection itself could not
/// be made (a lazy channel sends nothing before it connects); anything else may have been delivered.
fn call_fault(target: u64, status: &Status) -> PeerFault {
    let message = status.message();
    let never_connected = status.code() == tonic::Code::Unavailable
        && (message.contains("tcp connect error") || message.contains("Connection refused"));
    if never_connected {
        PeerFault::NotDelivered(target, message.to_string())
    } else {
        PeerFault::Unreachable(target, message.to_string())
    }
}

/// The messages of `rx` as a stream: a gRPC streaming body.
fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

/// The server side of the peer protocol.
pub struct PeerService {
    raft: Raft,
    proposer: Proposer,
    lessor: Arc<Lessor>,
    store: super::SharedStore,
    reads: super::ReadIndex,
    cluster_id: u64,
    /// How long the leader may wait on its own Raft to answer a lease call.
    timeout: Duration,
    /// Becomes true when this member stops: open append streams end then, so that the server's
    /// graceful shutdown does not wait on leaders that keep them open.
    stopping: watch::Receiver<bool>,
}

impl PeerService {
    pub fn new(node: &super::Node, timeout: Duration, stopping: watch::Receiver<bool>) -> PeerService {
        PeerService {
            raft: node.raft.clone(),
            proposer: node.proposer.clone(),
            lessor: node.lessor.clone(),
            store: node.store.clone(),
            reads: node.reads.clone(),
            cluster_id: node.identity.cluster_id,
            timeout,
            stopping,
        }
    }

    /// Checks the envelope and decodes its request.
    fn open<T: DeserializeOwned>(&self, envelope: &PeerEnvelope) -> Result<T, PeerFault> {
        open_envelope(self.cluster_id, envelope)
    }

    /// Whether `from` was removed from the cluster (this member applied its removal): its
    /// campaigns must not disturb the cluster. A member merely unknown here may be a new one
    /// whose add this member has not applied yet.
    fn is_removed(&self, from: u64) -> bool {
        super::state_machine::was_removed(&super::read_store(&self.store), from)
    }

    fn seal<T: Serialize>(&self, result: Result<T, PeerFault>) -> Result<Response<PeerEnvelope>, Status> {
        Ok(Response::new(seal_envelope(self.cluster_id, result)))
    }
}

/// Checks an envelope sent to a member of cluster `cluster_id` and decodes its request.
fn open_envelope<T: DeserializeOwned>(cluster_id: u64, envelope: &PeerEnvelope) -> Result<T, PeerFault> {
    if envelope.cluster_id != cluster_id {
        tracing::warn!(peer = %format!("{:x}", envelope.from), theirs = %format!("{:x}", envelope.cluster_id),
            "refusing a peer of another cluster");
        return Err(PeerFault::ClusterMismatch { peer: envelope.from, ours: cluster_id, theirs: envelope.cluster_id });
    }
    bincode::deserialize(&envelope.payload).map_err(|e| PeerFault::Decode(e.to_string()))
}

/// The envelope of an answer (or of the fault that prevented one).
fn seal_envelope<T: Serialize>(cluster_id: u64, result: Result<T, PeerFault>) -> PeerEnvelope {
    let payload = match bincode::serialize(&result) {
        Ok(bytes) => bytes,
        Err(e) => bincode::serialize(&Err::<T, _>(PeerFault::Decode(e.to_string()))).unwrap_or_default(),
    };
    PeerEnvelope { cluster_id, from: 0, payload }
}

/// The follower's side of an [`AppendStream`]: answers each AppendEntries in order until the
/// leader closes the stream, this member stops listening, or it is stopping.
async fn serve_appends(
    raft: Raft,
    cluster_id: u64,
    mut requests: Streaming<PeerEnvelope>,
    replies: mpsc::Sender<Result<PeerEnvelope, Status>>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let envelope = tokio::select! {
            message = requests.message() => match message {
                Ok(Some(envelope)) => envelope,
                _ => return,
            },
            _ = stopping.wait_for(|stopping| *stopping) => return,
        };
        let result = match open_envelope::<AppendReq>(cluster_id, &envelope) {
            Ok(rpc) => Ok(raft.append_entries(rpc).await),
            Err(fault) => Err(fault),
        };
        if replies.send(Ok(seal_envelope(cluster_id, result))).await.is_err() {
            return;
        }
    }
}

/// A server stream of envelopes fed by a channel.
type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<PeerEnvelope, Status>> + Send>>;

type AppendReq = openraft::raft::AppendEntriesRequest<TypeConfig>;
type VoteReq = openraft::raft::VoteRequest<u64>;
type SnapshotReq = openraft::raft::InstallSnapshotRequest<TypeConfig>;

#[tonic::async_trait]
impl Peer for PeerService {
    type AppendStreamStream = EnvelopeStream;

    async fn append_stream(
        &self,
        request: Request<Streaming<PeerEnvelope>>,
    ) -> Result<Response<EnvelopeStream>, Status> {
        let (replies, outbound) = mpsc::channel(APPEND_STREAM_BUFFER);
        let serve =
            serve_appends(self.raft.clone(), self.cluster_id, request.into_inner(), replies, self.stopping.clone());
        crate::runtime::spawn(serve);
        Ok(Response::new(Box::pin(receiver_stream(outbound))))
    }

    async fn vote(&self, request: Request<PeerEnvelope>) -> Result<Response<PeerEnvelope>, Status> {
        let result = match self.open::<VoteReq>(request.get_ref()) {
            Ok(_) if self.is_removed(request.get_ref().from) => Err(PeerFault::Removed(request.get_ref().from)),
            Ok(rpc) => Ok(self.raft.vote(rpc).await),
            Err(fault) => Err(fault),
        };
        self.seal(result)
    }

    async fn install_snapshot(&self, request: Request<PeerEnvelope>) -> Result<Response<PeerEnvelope>, Status> {
        let result = match self.open::<SnapshotReq>(request.get_ref()) {
            Ok(rpc) => Ok(self.raft.install_snapshot(rpc).await),
            Err(fault) => Err(fault),
        };
        self.seal(result)
    }

    async fn forward(&self, request: Request<PeerEnvelope>) -> Result<Response<PeerEnvelope>, Status> {
        let result = match self.open::<Vec<Vec<u8>>>(request.get_ref()) {
            Ok(batch) => {
                let proposals = batch.into_iter().map(|encoded| self.proposer.propose_here(encoded));
                let results: Vec<Result<Applied, ProposeError>> = futures::future::join_all(proposals).await;
                Ok(results)
            }
            Err(fault) => Err(fault),
        };
        self.seal(result)
    }

    async fn read_index(&self, request: Request<PeerEnvelope>) -> Result<Response<PeerEnvelope>, Status> {
        let result = match self.open::<()>(request.get_ref()) {
            Ok(()) => Ok(self.reads.leader_index().await),
            Err(fault) => Err(fault),
        };
        self.seal(result)
    }

    async fn lease(&self, request: Request<PeerEnvelope>) -> Result<Response<PeerEnvelope>, Status> {
        let result = match self.open::<super::leases::LeaseCall>(request.get_ref()) {
            Ok(call) => {
                Ok(super::leases::answer_here(&self.raft, &self.reads, &self.lessor, &call, self.timeout).await)
            }
            Err(fault) => Err(fault),
        };
        self.seal(result)
    }

    async fn membership(&self, request: Request<PeerEnvelope>) -> Result<Response<PeerEnvelope>, Status> {
        let result = match self.open::<super::membership::MembershipCall>(request.get_ref()) {
            Ok(call) => {
                let change = super::membership::change_here(&self.raft, &self.store, &call);
                Ok(match crate::runtime::timeout(self.timeout, change).await {
                    Ok(result) => result,
                    Err(_) => Err(super::membership::MembershipError::Timeout),
                })
            }
            Err(fault) => Err(fault),
        };
        self.seal(result)
    }

    async fn join(&self, _request: Request<PeerEnvelope>) -> Result<Response<PeerEnvelope>, Status> {
        self.seal(Ok(super::membership::cluster_info(&self.raft, &self.store, self.cluster_id)))
    }

    async fn campaign_after(&self, request: Request<PeerEnvelope>) -> Result<Response<PeerEnvelope>, Status> {
        let result = match self.open::<super::transfer::CampaignAfter>(request.get_ref()) {
            Ok(after) => {
                super::transfer::campaign_after(&self.raft, after);
                Ok(())
            }
            Err(fault) => Err(fault),
        };
        self.seal(result)
    }
}
