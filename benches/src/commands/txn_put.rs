//! `txn-put`: one Txn per request, with no compares and `--txn-ops` puts of distinct keys in its
//! success branch (etcd `benchmark txn-put`).

use std::sync::Arc;

use detcd_proto::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest, TxnResponse};

use super::{closed_loop, put, Report};
use crate::connect::spread;
use crate::driver::{RequestError, Worker};
use crate::grpc::{Connection, KV_TXN};
use crate::keys::Keys;
use crate::options::Options;
use crate::Error;

struct TxnPutWorker {
    kv: Connection,
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
        let response: TxnResponse = self.kv.unary(KV_TXN, &TxnRequest { success, ..TxnRequest::default() }).await?;
        if !response.succeeded {
            return Err(RequestError::Unexpected("txn without compares did not succeed".to_string()));
        }
        Ok(())
    }
}

pub async fn run(options: &Options, connections: &[Connection], txn_ops: usize) -> Result<Report, Error> {
    let keys = Arc::new(Keys::new(options.key_size, options.key_space_size, options.sequential_keys));
    let value = Arc::new(put::value(options.val_size));
    let workers = spread(connections, options.clients, |connection| TxnPutWorker {
        kv: connection,
        keys: keys.clone(),
        value: value.clone(),
        txn_ops,
    });
    Ok(closed_loop(options, workers).await)
}
