//! Linearizable reads: the leader confirms its read index with a quorum; a follower asks the
//! leader for it over the peer protocol, then waits until it has applied that far.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};

use crate::planted::{is_planted, Bug};

use super::peer::{Method, Peers};
use super::proposer::ProposeError;
use super::types::{MemberNode, Raft};

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

/// Waits until this member may serve a linearizable read, on any member.
pub async fn linearizable_barrier(raft: &Raft, peers: &Peers, timeout: Duration) -> Result<(), ProposeError> {
    let (leader, leader_url) = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        let Some(leader) = m.current_leader else { return Err(ProposeError::NoLeader) };
        let url =
            m.membership_config.membership().get_node(&leader).and_then(|n: &MemberNode| n.peer_urls.first().cloned());
        (leader, url)
    };
    if leader != peers.self_id && is_planted(Bug::FollowerLocalRead) {
        return Ok(());
    }
    let index = if leader == peers.self_id {
        leader_read_index(raft).await?
    } else {
        let url = leader_url.ok_or(ProposeError::NoLeader)?;
        let reply: Result<u64, ProposeError> =
            peers.call(leader, &url, Method::ReadIndex, &(), timeout).await.map_err(|_| ProposeError::NoLeader)?;
        reply?
    };
    raft.wait(Some(timeout))
        .applied_index_at_least(Some(index), "linearizable read")
        .await
        .map(|_| ())
        .map_err(|_| ProposeError::Timeout)
}
