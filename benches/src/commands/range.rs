//! `range <key> [end]`: the same Range request over and over, linearizable (`--consistency l`,
//! through the leader's read index) or serializable (`s`, answered by the member itself).

use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::RangeRequest;
use tonic::transport::Channel;

use super::{closed_loop, Report};
use crate::connect::spread;
use crate::driver::{RequestError, Worker};
use crate::options::{Consistency, Options};
use crate::Error;

struct RangeWorker {
    kv: KvClient<Channel>,
    request: RangeRequest,
}

impl Worker for RangeWorker {
    async fn request(&mut self, _i: u64) -> Result<(), RequestError> {
        self.kv.range(self.request.clone()).await?;
        Ok(())
    }
}

pub async fn run(
    options: &Options,
    channels: &[Channel],
    key: &str,
    end: Option<&str>,
    consistency: Consistency,
) -> Result<Report, Error> {
    let request = RangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.map(|end| end.as_bytes().to_vec()).unwrap_or_default(),
        serializable: consistency == Consistency::Serializable,
        ..RangeRequest::default()
    };
    let workers = spread(channels, options.clients, |channel| RangeWorker {
        kv: KvClient::new(channel),
        request: request.clone(),
    });
    Ok(closed_loop(options, workers).await)
}
