//! openraft's network: its RPCs sent to peers over the peer protocol (`peer`).

// openraft fixes the error types of its network trait; they are large by design.
#![allow(clippy::result_large_err)]

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::peer::{Method, PeerFault, Peers};
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
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, MemberNode, RaftError<u64, E>>>;

impl PeerClient {
    async fn send<Req, Resp, E>(&self, method: Method, rpc: &Req, option: &RPCOption) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<Result<Resp, RaftError<u64, E>>, PeerFault> =
            self.peers.call(self.target, &self.url, method, rpc, option.hard_ttl()).await;
        match result {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(fault @ (PeerFault::Unreachable(..) | PeerFault::NotDelivered(..) | PeerFault::Timeout(_))) => {
                Err(RPCError::Unreachable(Unreachable::new(&fault)))
            }
            Err(fault) => Err(RPCError::Network(NetworkError::new(&fault))),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerClient {
        let url = node.peer_urls.first().cloned().unwrap_or_default();
        PeerClient { peers: self.peers.clone(), target, url }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.send(Method::AppendEntries, &rpc, &option).await
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
