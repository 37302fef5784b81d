//! `put`: one Put per request, keys from `--key-size`, `--key-space-size` and
//! `--sequential-keys`, values of `--val-size` bytes.

use std::sync::Arc;

use detcd_proto::etcdserverpb::{PutRequest, PutResponse};

use super::{closed_loop, Report};
use crate::connect::spread;
use crate::driver::{RequestError, Worker};
use crate::grpc::{Connection, KV_PUT};
use crate::keys::Keys;
use crate::options::Options;
use crate::Error;

struct PutWorker {
    kv: Connection,
    keys: Arc<Keys>,
    value: Arc<Vec<u8>>,
}

impl Worker for PutWorker {
    async fn request(&mut self, i: u64) -> Result<(), RequestError> {
        let put = PutRequest { key: self.keys.key(i), value: self.value.to_vec(), ..PutRequest::default() };
        let _: PutResponse = self.kv.unary(KV_PUT, &put).await?;
        Ok(())
    }
}

pub async fn run(options: &Options, connections: &[Connection]) -> Result<Report, Error> {
    let keys = Arc::new(Keys::new(options.key_size, options.key_space_size, options.sequential_keys));
    let value = Arc::new(value(options.val_size));
    let workers = spread(connections, options.clients, |connection| PutWorker {
        kv: connection,
        keys: keys.clone(),
        value: value.clone(),
    });
    Ok(closed_loop(options, workers).await)
}

/// A value of `size` bytes.
pub(super) fn value(size: usize) -> Vec<u8> {
    vec![b'v'; size]
}
