//! etcd's `Cluster` service: the member list (what `etcdctl member list` shows) and membership
//! changes (`etcdctl member add/remove/update/promote`), performed by the leader.

use std::sync::Arc;

use detcd_proto::etcdserverpb::cluster_server::Cluster;
use detcd_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::error::EtcdError;
use super::Context;
use crate::raft::membership::{self, MemberInfo, MembershipCall};
use crate::raft::{member_attributes, read_store};

pub struct ClusterService {
    ctx: Arc<Context>,
}

impl ClusterService {
    pub fn new(ctx: Arc<Context>) -> ClusterService {
        ClusterService { ctx }
    }
}

/// Parses and checks MemberAdd / MemberUpdate peer URLs (etcd: "given member URLs are invalid").
fn peer_urls(urls: &[String]) -> Result<Vec<String>, EtcdError> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    for url in urls {
        crate::config::Url::parse(url).map_err(|_| EtcdError::MemberBadUrls)?;
    }
    Ok(urls.to_vec())
}

impl ClusterService {
    async fn change(&self, call: MembershipCall) -> Result<Vec<MemberInfo>, EtcdError> {
        let ctx = &self.ctx;
        membership::change(&ctx.raft, &ctx.peers, &ctx.store, &call, ctx.request_timeout).await.map_err(EtcdError::from)
    }

    /// Members as etcd lists them; names and client URLs from what each member published.
    fn members(&self, list: &[MemberInfo]) -> Vec<Member> {
        let store = read_store(&self.ctx.store);
        list.iter()
            .map(|m| {
                let attrs = member_attributes(&store, m.id);
                Member {
                    id: m.id,
                    name: attrs.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
                    peer_ur_ls: m.peer_urls.clone(),
                    client_ur_ls: attrs.map(|a| a.client_urls).unwrap_or_default(),
                    is_learner: m.learner,
                }
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let req = request.into_inner();
        let urls = peer_urls(&req.peer_ur_ls)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let id = membership::added_member_id(&urls, &self.ctx.cluster_token, now);
        let list = self.change(MembershipCall::Add { id, peer_urls: urls.clone(), learner: req.is_learner }).await?;
        let member =
            Member { id, name: String::new(), peer_ur_ls: urls, client_ur_ls: Vec::new(), is_learner: req.is_learner };
        Ok(Response::new(MemberAddResponse {
            header: self.ctx.header_now(),
            member: Some(member),
            members: self.members(&list),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let req = request.into_inner();
        let list = self.change(MembershipCall::Remove { id: req.id }).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.ctx.header_now(), members: self.members(&list) }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        let urls = peer_urls(&req.peer_ur_ls)?;
        let list = self.change(MembershipCall::Update { id: req.id, peer_urls: urls }).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.ctx.header_now(), members: self.members(&list) }))
    }

    async fn member_list(&self, _request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let list = membership::members_of(&self.ctx.raft, &self.ctx.store);
        let members = self.members(&list);
        Ok(Response::new(MemberListResponse { header: self.ctx.header_now(), members }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let req = request.into_inner();
        let list = self.change(MembershipCall::Promote { id: req.id }).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.ctx.header_now(), members: self.members(&list) }))
    }
}
