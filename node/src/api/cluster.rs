//! etcd's `Cluster` service: the member list (what `etcdctl member list` shows).

use std::sync::Arc;

use detcd_proto::etcdserverpb::cluster_server::Cluster;
use detcd_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    ResponseHeader,
};
use tonic::{Request, Response, Status};

use super::error::EtcdError;
use super::Context;
use crate::raft::{member_attributes, read_store};

pub struct ClusterService {
    ctx: Arc<Context>,
}

impl ClusterService {
    pub fn new(ctx: Arc<Context>) -> ClusterService {
        ClusterService { ctx }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(EtcdError::Unimplemented.into())
    }

    async fn member_remove(
        &self,
        _request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(EtcdError::Unimplemented.into())
    }

    async fn member_update(
        &self,
        _request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(EtcdError::Unimplemented.into())
    }

    async fn member_list(&self, _request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let metrics = self.ctx.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let store = read_store(&self.ctx.store);
        let revision = store.current_revision();
        // A member that has not yet published its attributes shows as unstarted (empty name).
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let attrs = member_attributes(&store, *id);
                Member {
                    id: *id,
                    name: attrs.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
                    peer_ur_ls: node.peer_urls.clone(),
                    client_ur_ls: attrs.map(|a| a.client_urls).unwrap_or_default(),
                    is_learner: !voters.contains(id),
                }
            })
            .collect();
        drop(store);
        let header = self.ctx.header(Some(ResponseHeader { revision, ..Default::default() }));
        Ok(Response::new(MemberListResponse { header, members }))
    }

    async fn member_promote(
        &self,
        _request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(EtcdError::Unimplemented.into())
    }
}
