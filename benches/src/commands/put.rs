//! `put`: one Put per request, keys from `--key-size`, `--key-space-size` and
//! `--sequential-keys`, values of `--val-size` bytes.

use std::sync::Arc;

use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::PutRequest;
use tonic::transport::Channel;

use super::{closed_loop, Report};
use crate::connect::spread;
use crate::driver::{RequestError, Worker};
use crate::keys::Keys;
use crate::options::Options;
use crate::Error;

struct PutWorker {
    kv: KvClient<Channel>,
    keys: Arc<Keys>,
    value: Arc<Vec<u8>>,
}

impl Worker for PutWorker {
    async fn request(&mut self, i: u64) -> Result<(), RequestError> {
        let put = PutRequest { key: self.keys.key(i), value: self.value.to_vec(), ..PutRequest::default() };
        self.kv.put(put).await?;
        Ok(())
    }
}

pub async fn run(options: &Options, channels: &[Channel]) -> Result<Report, Error> {
    let keys = Arc::new(Keys::new(options.key_size, options.key_space_size, options.sequential_keys));
    let value = Arc::new(value(options.val_size));
    let workers = spread(channels, options.clients, |channel| PutWorker {
        kv: KvClient::new(channel),
        keys: keys.clone(),
        value: value.clone(),
    });
    Ok(closed_loop(options, workers).await)
}

/// A value of `size` bytes.
pub(super) fn value(size: usize) -> Vec<u8> {
    vec![b'v'; size]
}
