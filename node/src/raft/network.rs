//! The peer transport openraft uses to reach other members.
//!
//! A single-member cluster never sends a Raft RPC; detcd refuses to bootstrap a multi-member
//! cluster until the gRPC peer transport exists (see `raft::start`), so every call here reports the
//! peer unreachable rather than pretending to deliver.

// openraft fixes the error types of its storage and network traits; they are large by design.
#![allow(clippy::result_large_err)]

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::AnyError;

use super::types::{MemberNode, TypeConfig};

/// Builds clients for peers.
#[derive(Clone, Debug, Default)]
pub struct PeerNetwork;

/// A client for one peer.
pub struct PeerClient {
    target: u64,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<u64, MemberNode, RaftError<u64, E>>>;

impl PeerClient {
    fn unreachable<T, E: std::error::Error>(&self) -> Result<T, RPCError<u64, MemberNode, RaftError<u64, E>>> {
        let msg = format!("member {:x}: detcd has no peer transport yet (single-member clusters only)", self.target);
        Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(msg))))
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, _node: &MemberNode) -> PeerClient {
        PeerClient { target }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        self.unreachable()
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.unreachable()
    }

    async fn vote(&mut self, _rpc: VoteRequest<u64>, _option: RPCOption) -> RpcResult<VoteResponse<u64>> {
        self.unreachable()
    }
}
