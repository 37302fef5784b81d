//! Group commit: concurrent client requests share one Raft entry, hence one fsync.
//!
//! The proposer queues requests while earlier batches are in flight, and proposes everything
//! queued as one entry as soon as a batch slot frees up: under load, batches grow to fill the time
//! a replication round trip takes; with one client, every request is proposed at once, alone.
//! openraft replicates whatever entries are new in one AppendEntries per follower, so the slots
//! only bound how much is in the Raft pipeline at once.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::peer::{Method, PeerFault, Peers};
use super::types::{ApplyError, MemberNode, Raft, Request};

/// Batches proposed but not yet applied, at most. 2 (one being flushed, one being applied) was
/// right while openraft's leader waited for its own flush; once it no longer did, 8 gave 100
/// clients ~20% more puts per second, 32 no more than 8 (3 members on 2 cores, detcd-bench).
const BATCHES_IN_FLIGHT_MAX: usize = 8;
/// Requests in one entry, at most.
const BATCH_REQUESTS_MAX: usize = 1_024;
/// Encoded bytes of one entry, at most (a single larger request still goes alone).
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Requests waiting for a batch, at most, before callers wait to queue.
const QUEUE_REQUESTS_MAX: usize = 16_384;

/// Why a request was not applied. The API maps these to etcd's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProposeError {
    /// No leader is known.
    NoLeader,
    /// Another member leads; writes must go there.
    NotLeader { leader: u64 },
    /// The member is shutting down.
    Stopped,
    /// Raft refused the entry for a reason a client cannot fix.
    Refused,
    /// The outcome is unknown: the leader did not answer in time.
    Timeout,
    /// Leadership moved while a read index was being confirmed (etcd: "leader changed").
    LeaderChanged,
}

/// The applied outcome of one request: its encoded response or its apply error.
pub type Applied = Result<Vec<u8>, ApplyError>;

struct Pending {
    encoded: Vec<u8>,
    /// Whether a follower may pass it on to the leader (a forwarded request is never forwarded again).
    forwardable: bool,
    reply: oneshot::Sender<Result<Applied, ProposeError>>,
}

/// The front door for writes: cheap to clone, shared by every API handler.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the batching task for `raft`; followers forward through `peers`, waiting at most
    /// `forward_timeout` for the leader.
    pub fn start(raft: Raft, peers: Peers, forward_timeout: Duration) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS_MAX);
        let forwarder = Forwarder { peers, timeout: forward_timeout };
        crate::runtime::spawn(batch_loop(raft, forwarder, rx));
        Proposer { queue: tx }
    }

    /// Proposes one encoded `InternalRequest` (through the leader, wherever it is) and waits until
    /// it is applied.
    pub async fn propose(&self, encoded: Vec<u8>) -> Result<Applied, ProposeError> {
        self.submit(encoded, true).await
    }

    /// Proposes on this member only: a request forwarded by a follower.
    pub async fn propose_here(&self, encoded: Vec<u8>) -> Result<Applied, ProposeError> {
        self.submit(encoded, false).await
    }

    async fn submit(&self, encoded: Vec<u8>, forwardable: bool) -> Result<Applied, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.queue.send(Pending { encoded, forwardable, reply }).await.map_err(|_| ProposeError::Stopped)?;
        rx.await.map_err(|_| ProposeError::Stopped)?
    }
}

/// Passes a follower's batch to the leader.
#[derive(Clone)]
struct Forwarder {
    peers: Peers,
    timeout: Duration,
}

impl Forwarder {
    /// Forwards `batch` to `leader`; hands it back if it certainly did not reach it (no connection
    /// could be made), so it can go to the next leader.
    async fn forward(&self, leader: u64, node: &MemberNode, batch: Vec<Pending>) -> Result<(), Vec<Pending>> {
        let Some(url) = node.peer_urls.first() else {
            fail_all(batch, ProposeError::NoLeader);
            return Ok(());
        };
        let encoded: Vec<Vec<u8>> = batch.iter().map(|p| p.encoded.clone()).collect();
        let count = encoded.len();
        let result: Result<Vec<Result<Applied, ProposeError>>, PeerFault> =
            self.peers.call(leader, url, Method::Forward, &encoded, self.timeout).await;
        let error = match result {
            Ok(results) if results.len() == count => {
                for (pending, result) in batch.into_iter().zip(results) {
                    let _ = pending.reply.send(result);
                }
                return Ok(());
            }
            Err(PeerFault::NotDelivered(..)) => return Err(batch),
            Ok(_) | Err(PeerFault::Decode(_) | PeerFault::ClusterMismatch { .. } | PeerFault::Removed(_)) => {
                ProposeError::Refused
            }
            // The leader may have applied them: the outcome is unknown.
            Err(PeerFault::Timeout(_) | PeerFault::Unreachable(..)) => ProposeError::Timeout,
        };
        fail_all(batch, error);
        Ok(())
    }
}

/// Waits (until `deadline`) for a leader other than `old`; answers whether one appeared.
async fn await_new_leader(raft: &Raft, old: u64, deadline: crate::runtime::Instant) -> bool {
    let mut metrics = raft.metrics();
    loop {
        if metrics.borrow_and_update().current_leader.is_some_and(|l| l != old) {
            return true;
        }
        let remaining = deadline.saturating_duration_since(crate::runtime::Instant::now());
        if remaining.is_zero() {
            return false;
        }
        match crate::runtime::timeout(remaining, metrics.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

fn fail_all(batch: Vec<Pending>, error: ProposeError) {
    for pending in batch {
        let _ = pending.reply.send(Err(error));
    }
}

async fn batch_loop(raft: Raft, forwarder: Forwarder, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = rx.recv().await else { return };
        let mut bytes = first.encoded.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_REQUESTS_MAX && bytes < BATCH_BYTES_MAX {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.encoded.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (raft, forwarder) = (raft.clone(), forwarder.clone());
        crate::runtime::spawn(async move {
            propose_batch(&raft, &forwarder, batch).await;
            drop(slot);
        });
    }
}

/// Proposes one batch as one entry and hands each request its own outcome; on a follower the
/// batch goes to the leader instead. A batch that could not even reach a (dead) leader waits for
/// the next one, within the forwarding timeout, as etcd's followers do.
async fn propose_batch(raft: &Raft, forwarder: &Forwarder, batch: Vec<Pending>) {
    let deadline = crate::runtime::Instant::now() + forwarder.timeout;
    let mut batch = batch;
    loop {
        let encoded: Vec<Vec<u8>> = batch.iter().map(|p| p.encoded.clone()).collect();
        let count = encoded.len();
        match raft.client_write(Request { batch: std::sync::Arc::new(encoded) }).await {
            Ok(written) => {
                let results = written.data.results;
                assert_eq!(results.len(), count, "an applied batch yields one result per request");
                for (pending, result) in batch.into_iter().zip(results) {
                    let _ = pending.reply.send(Ok(result));
                }
                return;
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match (f.leader_id, f.leader_node) {
                (Some(leader), Some(node)) => {
                    let (forward, refuse): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| p.forwardable);
                    fail_all(refuse, ProposeError::NotLeader { leader });
                    if forward.is_empty() {
                        return;
                    }
                    match forwarder.forward(leader, &node, forward).await {
                        Ok(()) => return,
                        Err(undelivered) if await_new_leader(raft, leader, deadline).await => batch = undelivered,
                        Err(undelivered) => return fail_all(undelivered, ProposeError::NoLeader),
                    }
                }
                _ => return fail_all(batch, ProposeError::NoLeader),
            },
            Err(e) => return fail_all(batch, propose_error(&e)),
        }
    }
}

fn propose_error(e: &RaftError<u64, ClientWriteError<u64, MemberNode>>) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match f.leader_id {
            Some(leader) => ProposeError::NotLeader { leader },
            None => ProposeError::NoLeader,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => ProposeError::Refused,
        RaftError::Fatal(_) => ProposeError::Stopped,
    }
}
