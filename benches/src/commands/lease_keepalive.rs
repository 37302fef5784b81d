//! `lease-keepalive`: grants one lease per client, opens one LeaseKeepAlive stream per client, then
//! times request/response round trips on those streams. A stream that fails is reopened by its
//! client's next request (timed with it), as a client library would. The leases are revoked at the
//! end.
//!
//! (etcd's `benchmark lease-keepalive` times `KeepAliveOnce`, which opens a stream per request;
//! this times the steady state a client library sees.)

use std::time::Duration;

use detcd_proto::etcdserverpb::lease_client::LeaseClient;
use detcd_proto::etcdserverpb::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use super::{closed_loop, Report};
use crate::connect::spread;
use crate::driver::{RequestError, Worker};
use crate::options::Options;
use crate::Error;

/// TTL the leases are granted with, in seconds; keepalives renew it long before it runs out.
const LEASE_TTL_S: i64 = 60;
/// Keepalive requests queued on one stream: a worker has one in flight, plus one whose wait timed
/// out.
const KEEPALIVE_QUEUE_MAX: usize = 4;

struct KeepAliveWorker {
    id: i64,
    lease: LeaseClient<Channel>,
    /// The open keepalive stream; none after a failure, until the next request reopens it.
    stream: Option<KeepAliveStream>,
}

impl Worker for KeepAliveWorker {
    async fn request(&mut self, _i: u64) -> Result<(), RequestError> {
        let result = self.round_trip().await;
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

impl KeepAliveWorker {
    async fn round_trip(&mut self) -> Result<(), RequestError> {
        let stream = match &mut self.stream {
            Some(stream) => {
                stream.drain().await?;
                stream.send(self.id).await?;
                stream
            }
            None => self.stream.insert(KeepAliveStream::open(&mut self.lease, self.id).await?),
        };
        stream.receive(self.id).await
    }
}

/// One LeaseKeepAlive stream.
struct KeepAliveStream {
    requests: mpsc::Sender<LeaseKeepAliveRequest>,
    responses: Streaming<LeaseKeepAliveResponse>,
    /// Requests sent whose responses are not read yet.
    unanswered: u32,
}

impl KeepAliveStream {
    /// Opens a stream with its first request sent: the server sends the stream's headers with
    /// its first answer, so the request must go out before the stream is awaited.
    async fn open(lease: &mut LeaseClient<Channel>, id: i64) -> Result<KeepAliveStream, RequestError> {
        let (requests, queue) = mpsc::channel(KEEPALIVE_QUEUE_MAX);
        requests.send(LeaseKeepAliveRequest { id }).await.map_err(|_| closed())?;
        let responses = lease.lease_keep_alive(ReceiverStream::new(queue)).await?.into_inner();
        Ok(KeepAliveStream { requests, responses, unanswered: 1 })
    }

    async fn send(&mut self, id: i64) -> Result<(), RequestError> {
        self.requests.send(LeaseKeepAliveRequest { id }).await.map_err(|_| closed())?;
        self.unanswered += 1;
        Ok(())
    }

    /// Reads the late answers to requests the driver gave up on at its timeout.
    async fn drain(&mut self) -> Result<(), RequestError> {
        while self.unanswered > 0 {
            self.responses.message().await?.ok_or_else(closed)?;
            self.unanswered -= 1;
        }
        Ok(())
    }

    async fn receive(&mut self, id: i64) -> Result<(), RequestError> {
        assert_eq!(self.unanswered, 1, "one keepalive in flight");
        let response = self.responses.message().await?.ok_or_else(closed)?;
        self.unanswered -= 1;
        if response.ttl <= 0 {
            return Err(RequestError::Unexpected(format!("lease {id:x} not found (keepalive TTL {})", response.ttl)));
        }
        Ok(())
    }
}

fn closed() -> RequestError {
    RequestError::Unexpected("keepalive stream closed".to_string())
}

/// Grants a lease on `lease` and opens its keepalive stream with one untimed round trip.
async fn open(mut lease: LeaseClient<Channel>, timeout: Duration) -> Result<KeepAliveWorker, Error> {
    let failed = |what: &str, error: RequestError| Error::Setup(format!("{what} failed: {}", error.label()));
    let grant = tokio::time::timeout(timeout, lease.lease_grant(LeaseGrantRequest { ttl: LEASE_TTL_S, id: 0 }))
        .await
        .map_err(|_| failed("LeaseGrant", RequestError::Timeout(timeout)))?
        .map_err(|status| failed("LeaseGrant", status.into()))?
        .into_inner();
    if !grant.error.is_empty() {
        return Err(Error::Setup(format!("LeaseGrant failed: {}", grant.error)));
    }
    let mut worker = KeepAliveWorker { id: grant.id, lease, stream: None };
    tokio::time::timeout(timeout, worker.request(0))
        .await
        .map_err(|_| failed("LeaseKeepAlive", RequestError::Timeout(timeout)))?
        .map_err(|error| failed("LeaseKeepAlive", error))?;
    Ok(worker)
}

pub async fn run(options: &Options, channels: &[Channel]) -> Result<Report, Error> {
    let opening: Vec<_> = spread(channels, options.clients, LeaseClient::new)
        .into_iter()
        .map(|lease| tokio::spawn(open(lease, options.timeout)))
        .collect();
    let mut workers = Vec::with_capacity(opening.len());
    for task in opening {
        match task.await {
            Ok(worker) => workers.push(worker?),
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
    let ids: Vec<i64> = workers.iter().map(|w| w.id).collect();
    let report = closed_loop(options, workers).await;
    revoke(channels, &ids, options.timeout).await;
    Ok(report)
}

/// Revokes the run's leases, best effort: a lease left behind expires after its TTL anyway.
async fn revoke(channels: &[Channel], ids: &[i64], timeout: Duration) {
    let revoking: Vec<_> = spread(channels, ids.len(), LeaseClient::new)
        .into_iter()
        .zip(ids)
        .map(|(mut lease, &id)| {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, lease.lease_revoke(LeaseRevokeRequest { id })).await;
            })
        })
        .collect();
    for task in revoking {
        let _ = task.await;
    }
}
