//! Leases on the Raft side: the leader drives expiry, and lease calls that only the leader can
//! answer (keep-alive, time-to-live) reach it from any member.
//!
//! The [`drive`] task follows this member's Raft role: on becoming leader it promotes the lessor
//! (every lease restarts its clock, extended by an election timeout), on losing leadership it
//! demotes it, and while leading it proposes a `LeaseRevoke` through Raft for every expired lease,
//! so expiry is applied at the same revision on every member.

use std::sync::Arc;
use std::time::Duration;

use detcd_proto::detcdpb::internal_request::Request as InternalOp;
use detcd_proto::detcdpb::InternalRequest;
use detcd_proto::etcdserverpb::LeaseRevokeRequest;
use openraft::ServerState;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::peer::{Method, PeerFault, Peers};
use super::proposer::{ProposeError, Proposer};
use super::read::ReadIndex;
use super::types::Raft;
use crate::lease::{LeaseError, Lessor, TimeToLive};

/// How often the leader looks for expired leases.
const EXPIRY_TICK: Duration = Duration::from_millis(250);
/// Revokes proposed per tick, at most (etcd limits expiry to a rate as well).
const REVOKES_PER_TICK: usize = 500;

/// A lease call for the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseCall {
    KeepAlive(i64),
    TimeToLive { id: i64, keys: bool },
}

/// The leader's answer to a [`LeaseCall`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseAnswer {
    /// Renewed for this many seconds.
    Renewed(i64),
    TimeToLive {
        remaining: i64,
        granted: i64,
        keys: Vec<Vec<u8>>,
    },
    NotFound,
}

fn try_answer(lessor: &Lessor, call: &LeaseCall) -> Result<LeaseAnswer, LeaseError> {
    match call {
        LeaseCall::KeepAlive(id) => lessor.renew(*id).map(LeaseAnswer::Renewed),
        LeaseCall::TimeToLive { id, keys } => lessor
            .time_to_live(*id, *keys)
            .map(|TimeToLive { remaining, granted, keys }| LeaseAnswer::TimeToLive { remaining, granted, keys }),
    }
}

/// Answers `call` on this member, which must lead.
///
/// Leadership is confirmed by a quorum first: openraft 0.9 has no check-quorum, so a leader cut off
/// from the others keeps believing it leads, and a renewal it granted would let the client trust a
/// lease that the real leader expires on its own clock. Confirmed at time c, this member was leader
/// then, and no other can be elected before the voters' leader leases (an election timeout after
/// c) run out; the new leader then restarts every lease at its full TTL plus an election timeout,
/// which outlasts a renewal made right after c. The confirmation also covers a grant the leader
/// committed but has not applied yet: it waits until it applied that far before answering "not
/// found" (etcd waits for its applied index the same way).
pub async fn answer_here(
    raft: &Raft,
    reads: &ReadIndex,
    lessor: &Lessor,
    call: &LeaseCall,
    timeout: Duration,
) -> Result<LeaseAnswer, ProposeError> {
    let deadline = crate::runtime::Instant::now() + timeout;
    let index = reads.leader_index().await?;
    let answer = match answer_unless_expiring(lessor, call, deadline).await? {
        Err(LeaseError::NotFound) => {
            raft.wait(Some(timeout))
                .applied_index_at_least(Some(index), "lease call")
                .await
                .map_err(|_| ProposeError::Timeout)?;
            answer_unless_expiring(lessor, call, deadline).await?
        }
        other => other,
    };
    match answer {
        Ok(answer) => Ok(answer),
        Err(LeaseError::NotFound) => Ok(LeaseAnswer::NotFound),
        Err(LeaseError::NotPrimary | LeaseError::Exists | LeaseError::TtlTooLarge | LeaseError::Expired) => {
            match raft.metrics().borrow().current_leader {
                Some(leader) if leader != raft_id(raft) => Err(ProposeError::NotLeader { leader }),
                _ => Err(ProposeError::NoLeader),
            }
        }
    }
}

/// Answers `call`, first waiting out a renewal of an expired lease (see [`LeaseError::Expired`])
/// until its revoke applied or this member stopped leading; "request timed out" at `deadline`
/// (found by the simulator, `watch_leader_kills` seed 4: a keep-alive answered "not found" while
/// the revoke never committed, and the next leader kept the lease and its keys).
async fn answer_unless_expiring(
    lessor: &Lessor,
    call: &LeaseCall,
    deadline: crate::runtime::Instant,
) -> Result<Result<LeaseAnswer, LeaseError>, ProposeError> {
    loop {
        let mut changed = std::pin::pin!(lessor.changed());
        changed.as_mut().enable();
        match try_answer(lessor, call) {
            Err(LeaseError::Expired) => {
                crate::runtime::timeout_at(deadline, changed).await.map_err(|_| ProposeError::Timeout)?;
            }
            other => return Ok(other),
        }
    }
}

fn raft_id(raft: &Raft) -> u64 {
    raft.metrics().borrow().id
}

/// Answers `call` on the leader, wherever it is.
pub async fn lease_call(
    raft: &Raft,
    reads: &ReadIndex,
    peers: &Peers,
    lessor: &Lessor,
    call: &LeaseCall,
    timeout: Duration,
) -> Result<LeaseAnswer, ProposeError> {
    let Some((leader, url)) = super::peer::known_leader(raft) else { return Err(ProposeError::NoLeader) };
    if leader == peers.self_id {
        return answer_here(raft, reads, lessor, call, timeout).await;
    }
    let url = url.ok_or(ProposeError::NoLeader)?;
    let reply: Result<Result<LeaseAnswer, ProposeError>, PeerFault> =
        peers.call(leader, &url, Method::Lease, call, timeout).await;
    match reply {
        Ok(answer) => answer,
        Err(PeerFault::Timeout(_)) => Err(ProposeError::Timeout),
        Err(_) => Err(ProposeError::NoLeader),
    }
}

/// Follows this member's role and expires leases while it leads; runs until Raft stops.
pub async fn drive(raft: Raft, lessor: Arc<Lessor>, proposer: Proposer, extend: Duration, timeout: Duration) {
    let mut metrics = raft.metrics();
    let mut next_scan = crate::runtime::Instant::now();
    loop {
        let leading = {
            let m = metrics.borrow_and_update();
            if m.running_state.is_err() {
                return;
            }
            m.state == ServerState::Leader
        };
        match (leading, lessor.is_primary()) {
            (true, false) => {
                tracing::info!("leading: lease clocks restart");
                lessor.promote(extend);
            }
            (false, true) => lessor.demote(),
            _ => {}
        }
        if leading && crate::runtime::Instant::now() >= next_scan {
            next_scan = crate::runtime::Instant::now() + EXPIRY_TICK;
            let expired: Vec<i64> = lessor.expired().into_iter().take(REVOKES_PER_TICK).collect();
            if !expired.is_empty() {
                tracing::debug!(count = expired.len(), "revoking expired leases");
                let revokes = expired.into_iter().map(|id| {
                    let request = InternalRequest {
                        id: crate::runtime::random_u64(),
                        request: Some(InternalOp::LeaseRevoke(LeaseRevokeRequest { id })),
                    };
                    crate::runtime::timeout(timeout, proposer.propose_here(request.encode_to_vec()))
                });
                futures::future::join_all(revokes).await;
            }
        }
        let now = crate::runtime::Instant::now();
        let wait = if leading { next_scan.saturating_duration_since(now) } else { EXPIRY_TICK };
        tokio::select! {
            biased;
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = crate::runtime::sleep(wait) => {}
        }
    }
}
