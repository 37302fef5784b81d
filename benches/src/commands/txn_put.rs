//! `txn-put`: one Txn per request, with no compares and `--txn-ops` puts of distinct keys in its
//! success branch (etcd `benchmark txn-put`).

use std::sync::Arc;

use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use super::{closed_loop, put, Report};
use crate::connect::spread;
use crate::driver::{RequestError, Worker};
use crate::keys::Keys;
use crate::options::Options;
use crate::Error;

struct TxnPutWorker {
    kv: KvClient<Channel>,
    keys: Arc<Keys>,
    value: Arc<Vec<u8>>,
    txn_ops: usize,
}

impl Worker for TxnPutWorker {
    async fn request(&mut self, i: u64) -> Result<(), RequestError> {
        let success = self
            .keys
            .group(i, self.txn_ops)
            .map(|key| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key,
                    value: self.value.to_vec(),
                    ..PutRequest::default()
                })),
            })
            .collect();
        let response = self.kv.txn(TxnRequest { success, ..TxnRequest::default() }).await?;
        if !response.get_ref().succeeded {
            return Err(RequestError::Unexpected("txn without compares did not succeed".to_string()));
        }
        Ok(())
    }
}

pub async fn run(options: &Options, channels: &[Channel], txn_ops: usize) -> Result<Report, Error> {
    let keys = Arc::new(Keys::new(options.key_size, options.key_space_size, options.sequential_keys));
    let value = Arc::new(put::value(options.val_size));
    let workers = spread(channels, options.clients, |channel| TxnPutWorker {
        kv: KvClient::new(channel),
        keys: keys.clone(),
        value: value.clone(),
        txn_ops,
    });
    Ok(closed_loop(options, workers).await)
}
