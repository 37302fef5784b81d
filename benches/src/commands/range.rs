//! `range <key> [end]`: the same Range request over and over, linearizable (`--consistency l`,
//! through the leader's read index) or serializable (`s`, answered by the member itself).

use detcd_proto::etcdserverpb::{RangeRequest, RangeResponse};

use super::{closed_loop, Report};
use crate::connect::spread;
use crate::driver::{RequestError, Worker};
use crate::grpc::{Connection, KV_RANGE};
use crate::options::{Consistency, Options};
use crate::Error;

struct RangeWorker {
    kv: Connection,
    request: RangeRequest,
}

impl Worker for RangeWorker {
    async fn request(&mut self, _i: u64) -> Result<(), RequestError> {
        let _: RangeResponse = self.kv.unary(KV_RANGE, &self.request).await?;
        Ok(())
    }
}

pub async fn run(
    options: &Options,
    connections: &[Connection],
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
    let workers =
        spread(connections, options.clients, |connection| RangeWorker { kv: connection, request: request.clone() });
    Ok(closed_loop(options, workers).await)
}
