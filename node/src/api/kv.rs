//! etcd's `KV` service: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use detcd_proto::detcdpb::internal_request::Request as InternalOp;
use detcd_proto::etcdserverpb::kv_server::Kv;
use detcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::error::EtcdError;
use super::{validate, Context};
use crate::raft::read_store;

pub struct KvService {
    ctx: Arc<Context>,
}

impl KvService {
    pub fn new(ctx: Arc<Context>) -> KvService {
        KvService { ctx }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = request.into_inner();
        validate::range(&req)?;
        if !req.serializable {
            self.ctx.linearizable_read().await?;
        }
        let mut resp = read_store(&self.ctx.store).range(&req).map_err(EtcdError::from)?;
        resp.header = self.ctx.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        validate::put(&req)?;
        let mut resp: PutResponse = self.ctx.propose(InternalOp::Put(req)).await?;
        resp.header = self.ctx.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = request.into_inner();
        validate::delete_range(&req)?;
        let mut resp: DeleteRangeResponse = self.ctx.propose(InternalOp::DeleteRange(req)).await?;
        resp.header = self.ctx.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = request.into_inner();
        validate::txn(&req, self.ctx.max_txn_ops)?;
        let mut resp: TxnResponse = self.ctx.propose(InternalOp::Txn(req)).await?;
        resp.header = self.ctx.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let req = request.into_inner();
        let mut resp: CompactionResponse = self.ctx.propose(InternalOp::Compaction(req)).await?;
        resp.header = self.ctx.header(resp.header);
        Ok(Response::new(resp))
    }
}
