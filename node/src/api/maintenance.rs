//! etcd's `Maintenance` service: member status (what `etcdctl endpoint status` shows).

use std::pin::Pin;
use std::sync::Arc;

use detcd_proto::etcdserverpb::maintenance_server::Maintenance;
use detcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest,
    HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use super::error::EtcdError;
use super::Context;
use crate::config::ETCD_COMPAT_VERSION;
use crate::raft::{applied_index, read_store};

pub struct MaintenanceService {
    ctx: Arc<Context>,
}

impl MaintenanceService {
    pub fn new(ctx: Arc<Context>) -> MaintenanceService {
        MaintenanceService { ctx }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, _request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // No alarm is ever raised yet (space quota enforcement is not implemented).
        let revision = read_store(&self.ctx.store).current_revision();
        let header =
            self.ctx.header(Some(detcd_proto::etcdserverpb::ResponseHeader { revision, ..Default::default() }));
        Ok(Response::new(AlarmResponse { header, alarms: Vec::new() }))
    }

    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let (revision, db_size, applied) = {
            let store = read_store(&self.ctx.store);
            (store.current_revision(), store.db_size_bytes() as i64, applied_index(&store))
        };
        let metrics = self.ctx.raft.metrics().borrow().clone();
        let header =
            self.ctx.header(Some(detcd_proto::etcdserverpb::ResponseHeader { revision, ..Default::default() }));
        let is_learner =
            !metrics.membership_config.membership().voter_ids().any(|id| id == self.ctx.identity.member_id);
        Ok(Response::new(StatusResponse {
            header,
            version: ETCD_COMPAT_VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: applied,
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner,
        }))
    }

    async fn defragment(&self, _request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Err(EtcdError::Unimplemented.into())
    }

    async fn hash(&self, _request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(EtcdError::Unimplemented.into())
    }

    async fn hash_kv(&self, _request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(EtcdError::Unimplemented.into())
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, _request: Request<SnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        Err(EtcdError::Unimplemented.into())
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        use crate::raft::transfer::{transfer_leadership, TransferError};
        let target = request.into_inner().target_id;
        let ctx = &self.ctx;
        match transfer_leadership(&ctx.raft, &ctx.peers, target, ctx.election_timeout, ctx.request_timeout).await {
            Ok(()) => Ok(Response::new(MoveLeaderResponse { header: ctx.header_now() })),
            Err(TransferError::NotLeader) => Err(EtcdError::NotLeader.into()),
            Err(TransferError::BadTransferee) => Err(EtcdError::BadLeaderTransferee.into()),
            Err(TransferError::Timeout) => Err(EtcdError::LeaderTransferTimeout.into()),
        }
    }
}
