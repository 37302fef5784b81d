//! Linearizable reads: the leader confirms its read index with a quorum; a follower asks the
//! leader for it over the peer protocol, then waits until it has applied that far.
//!
//! Concurrent reads share one confirmation ([`ReadIndex`]): a read joins the next round that
//! starts after it arrived, so the index it gets was confirmed after its request began (which is
//! what linearizability needs), while a burst of reads costs one quorum round trip, not one each.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use openraft::error::{CheckIsLeaderError, RaftError};

use crate::planted::{is_planted, Bug};

use super::peer::{Method, Peers};
use super::proposer::ProposeError;
use super::types::Raft;

/// On the leader: the index a linearizable read must wait for, confirmed by a quorum.
pub async fn leader_read_index(raft: &Raft) -> Result<u64, ProposeError> {
    match raft.get_read_log_id().await {
        Ok((read, _applied)) => Ok(read.map_or(0, |l| l.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => match f.leader_id {
            Some(leader) => Err(ProposeError::NotLeader { leader }),
            None => Err(ProposeError::NoLeader),
        },
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Err(ProposeError::NoLeader),
        Err(RaftError::Fatal(_)) => Err(ProposeError::Stopped),
    }
}

type IndexResult = Result<u64, ProposeError>;

/// Reads waiting for the next round of one kind of read-index fetch.
#[derive(Default)]
struct Rounds {
    waiting: Vec<oneshot::Sender<IndexResult>>,
    running: bool,
}

/// Shares read-index fetches among concurrent readers; see the module docs.
#[derive(Clone, Default)]
struct Batcher {
    rounds: Arc<Mutex<Rounds>>,
}

impl Batcher {
    fn rounds(&self) -> std::sync::MutexGuard<'_, Rounds> {
        self.rounds.lock().unwrap_or_else(|p| panic!("read-index rounds lock poisoned: {p}"))
    }

    /// The result of the first fetch that starts after this call.
    async fn get<F, Fut>(&self, fetch: F) -> IndexResult
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = IndexResult> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut rounds = self.rounds();
            rounds.waiting.push(tx);
            !std::mem::replace(&mut rounds.running, true)
        };
        if start {
            let batcher = self.clone();
            crate::runtime::spawn(async move {
                loop {
                    let round = {
                        let mut rounds = batcher.rounds();
                        if rounds.waiting.is_empty() {
                            rounds.running = false;
                            return;
                        }
                        std::mem::take(&mut rounds.waiting)
                    };
                    let result = fetch().await;
                    for reader in round {
                        let _ = reader.send(result);
                    }
                }
            });
        }
        rx.await.unwrap_or(Err(ProposeError::Stopped))
    }
}

/// A member's linearizable reads, sharing read-index confirmations.
#[derive(Clone)]
pub struct ReadIndex {
    raft: Raft,
    peers: Peers,
    timeout: Duration,
    /// Reads served here (on the leader: confirmed here; on a follower: asked of the leader).
    local: Batcher,
    /// Quorum confirmations asked of the leader itself (followers' reads, lease renewals).
    on_leader: Batcher,
}

impl ReadIndex {
    pub fn new(raft: Raft, peers: Peers, timeout: Duration) -> ReadIndex {
        ReadIndex { raft, peers, timeout, local: Batcher::default(), on_leader: Batcher::default() }
    }

    /// Waits until this member may serve a linearizable read.
    pub async fn barrier(&self) -> Result<(), ProposeError> {
        let leader = self.raft.metrics().borrow().current_leader;
        if leader.is_some_and(|l| l != self.peers.self_id) && is_planted(Bug::FollowerLocalRead) {
            return Ok(());
        }
        let (raft, peers, timeout) = (self.raft.clone(), self.peers.clone(), self.timeout);
        let index = self
            .local
            .get(move || {
                let (raft, peers) = (raft.clone(), peers.clone());
                async move { read_index(&raft, &peers, timeout).await }
            })
            .await?;
        self.raft
            .wait(Some(self.timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|_| ProposeError::Timeout)
    }

    /// On the leader: a read index confirmed by a quorum after this call began (shared with
    /// concurrent callers). Fails on a member that is not, or is no longer, the leader.
    pub async fn leader_index(&self) -> IndexResult {
        let raft = self.raft.clone();
        self.on_leader
            .get(move || {
                let raft = raft.clone();
                async move { leader_read_index(&raft).await }
            })
            .await
    }
}

/// The read index, from wherever the leader is. A leader that turns out deposed (its own Raft,
/// or the member asked, says another leads) is asked no further: the read fails with etcd's
/// "leader changed", never "not leader" (a KV client has no leader to go to).
async fn read_index(raft: &Raft, peers: &Peers, timeout: Duration) -> IndexResult {
    match read_index_once(raft, peers, timeout).await {
        Err(ProposeError::NotLeader { .. }) => Err(ProposeError::LeaderChanged),
        other => other,
    }
}

async fn read_index_once(raft: &Raft, peers: &Peers, timeout: Duration) -> IndexResult {
    let Some((leader, leader_url)) = super::peer::known_leader(raft) else { return Err(ProposeError::NoLeader) };
    if leader == peers.self_id {
        return leader_read_index(raft).await;
    }
    let url = leader_url.ok_or(ProposeError::NoLeader)?;
    let reply: Result<u64, ProposeError> =
        peers.call(leader, &url, Method::ReadIndex, &(), timeout).await.map_err(|_| ProposeError::NoLeader)?;
    reply
}
