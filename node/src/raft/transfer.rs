//! Leadership transfer (etcd's `MoveLeader`, and the hand-over of a leader stopped by SIGTERM).
//!
//! openraft 0.9 has no transfer of its own, and its voters refuse to elect anyone while their
//! leader lease (an election timeout after the last heartbeat) runs. So the leader stops sending
//! heartbeats and tells the transferee to campaign just after those leases end: the transferee is
//! first to ask and, being caught up, wins. The leader waits until it sees the new leader and
//! turns its heartbeats back on whatever happened, so a failed transfer degrades into an ordinary
//! election.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::peer::{Method, PeerFault, Peers};
use super::types::{MemberNode, Raft};

/// Why a transfer did not happen (etcd's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("not leader")]
    NotLeader,
    #[error("bad leader transferee")]
    BadTransferee,
    #[error("leader transfer took too long")]
    Timeout,
}

/// Sent to the transferee: campaign after this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignAfter {
    pub delay_ms: u64,
}

/// On the transferee: campaigns once `request.delay_ms` has passed.
pub fn campaign_after(raft: &Raft, request: CampaignAfter) {
    let raft = raft.clone();
    crate::runtime::spawn(async move {
        crate::runtime::sleep(Duration::from_millis(request.delay_ms)).await;
        if let Err(e) = raft.trigger().elect().await {
            tracing::warn!(error = %e, "could not campaign for a leadership transfer");
        }
    });
}

/// The voter (other than this member) that has replicated the most, if any.
pub fn best_transferee(raft: &Raft) -> Option<u64> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let replication = m.replication.as_ref()?;
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != m.id)
        .max_by_key(|id| replication.get(id).cloned().flatten().map_or(0, |l| l.index))
}

/// Hands leadership from this member (the leader) to voter `target`; `lease` is the followers'
/// leader lease (the election timeout).
pub async fn transfer_leadership(
    raft: &Raft,
    peers: &Peers,
    target: u64,
    lease: Duration,
    timeout: Duration,
) -> Result<(), TransferError> {
    let url = {
        let metrics = raft.metrics();
        let m = metrics.borrow();
        if m.current_leader != Some(m.id) {
            return Err(TransferError::NotLeader);
        }
        let membership = m.membership_config.membership();
        if target == m.id || !membership.voter_ids().any(|id| id == target) {
            return Err(TransferError::BadTransferee);
        }
        membership.get_node(&target).and_then(|n: &MemberNode| n.peer_urls.first().cloned())
    };
    let url = url.ok_or(TransferError::BadTransferee)?;
    let delay = lease + lease / 10;
    let request = CampaignAfter { delay_ms: delay.as_millis() as u64 };
    raft.runtime_config().heartbeat(false);
    let told: Result<(), PeerFault> = peers.call(target, &url, Method::CampaignAfter, &request, timeout).await;
    let outcome = match told {
        Ok(()) => {
            let waiter = raft.wait(Some(timeout.max(delay * 2)));
            let elected = waiter.metrics(|m| m.current_leader == Some(target), "leader transfer").await;
            elected.map(|_| ()).map_err(|_| TransferError::Timeout)
        }
        Err(_) => Err(TransferError::Timeout),
    };
    raft.runtime_config().heartbeat(true);
    outcome
}
