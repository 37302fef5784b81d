//! openraft's network: its RPCs sent to peers over the peer protocol (`peer`).

// openraft fixes the error types of its network trait; they are large by design.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::peer::{AppendStream, Method, PeerFault, Peers};
use super::types::{MemberNode, TypeConfig};

/// Builds clients for peers; all share one connection cache.
#[derive(Clone)]
pub struct PeerNetwork {
    pub peers: Peers,
}

/// openraft's client for one peer.
pub struct PeerClient {
    peers: Peers,
    target: u64,
    url: String,
    /// AppendEntries go on this stream once it is open.
    stream: Option<AppendStream>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, MemberNode, RaftError<u64, E>>>;

impl PeerClient {
    async fn send<Req, Resp, E>(&self, method: Method, rpc: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result = self.peers.call(self.target, &self.url, method, rpc, option.hard_ttl()).await;
        rpc_result(self.target, result)
    }

    /// Sends an AppendEntries on this peer's [`AppendStream`], opening it first if there is none.
    /// A stream that failed or timed out is dropped: its state is unknown.
    async fn append_on_stream(
        &mut self,
        rpc: &AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Result<Result<AppendEntriesResponse<u64>, RaftError<u64>>, PeerFault> {
        let exchange = async {
            let stream = match &mut self.stream {
                Some(stream) => stream,
                none => none.insert(self.peers.open_append_stream(self.target, &self.url, timeout).await?),
            };
            stream.call(rpc).await
        };
        let result = crate::runtime::timeout(timeout, exchange).await.unwrap_or(Err(PeerFault::Timeout(self.target)));
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

/// openraft's view of a peer call's outcome.
fn rpc_result<Resp, E: std::error::Error>(
    target: u64,
    result: Result<Result<Resp, RaftError<u64, E>>, PeerFault>,
) -> RpcResult<Resp, E> {
    match result {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(target, remote))),
        Err(fault @ (PeerFault::Unreachable(..) | PeerFault::NotDelivered(..) | PeerFault::Timeout(_))) => {
            Err(RPCError::Unreachable(Unreachable::new(&fault)))
        }
        Err(fault) => Err(RPCError::Network(NetworkError::new(&fault))),
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerClient {
        let url = node.peer_urls.first().cloned().unwrap_or_default();
        PeerClient { peers: self.peers.clone(), target, url, stream: None }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let result = self.append_on_stream(&rpc, option.hard_ttl()).await;
        rpc_result(self.target, result)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.send(Method::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        self.send(Method::Vote, &rpc, &option).await
    }
}
