//! Membership changes: etcd's MemberAdd / MemberRemove / MemberUpdate / MemberPromote as openraft
//! configuration changes (joint consensus), with etcd's safety checks, run on the leader wherever
//! the request arrives; and the discovery a member started with `--initial-cluster-state existing`
//! does to learn its identity from the running cluster.
//!
//! A voter added by MemberAdd counts in the quorum at once (as in etcd), so MemberAdd of a voter
//! is refused when the members that have started would no longer form a quorum; at most one
//! learner; a learner is promoted only when caught up with the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use serde::{Deserialize, Serialize};

use super::peer::{Method, PeerFault, Peers};
use super::state_machine::{read_store, SharedStore};
use super::types::{MemberNode, Raft};

/// How many times a joining member asks every peer, and the pause between rounds.
const DISCOVER_ROUNDS: usize = 5;
const DISCOVER_PAUSE: Duration = Duration::from_secs(1);

/// etcd's `maxLearners`.
const MAX_LEARNERS: usize = 1;
/// etcd promotes a learner whose log is within this fraction of the leader's (`readyPercent`).
const LEARNER_READY_PERCENT: f64 = 0.9;

/// A membership change, as sent to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipCall {
    Add { id: u64, peer_urls: Vec<String>, learner: bool },
    Remove { id: u64 },
    Update { id: u64, peer_urls: Vec<String> },
    Promote { id: u64 },
}

/// Why a membership change was refused (etcd's names); the API maps them to etcd's errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MembershipError {
    #[error("member ID already exists")]
    MemberExists,
    #[error("peer URLs already exist")]
    PeerUrlExists,
    #[error("not enough started members")]
    NotEnoughStarted,
    #[error("member not found")]
    MemberNotFound,
    #[error("not a learner")]
    NotLearner,
    #[error("learner not ready")]
    LearnerNotReady,
    #[error("too many learners")]
    TooManyLearners,
    #[error("no leader")]
    NoLeader,
    #[error("request timed out")]
    Timeout,
    #[error("membership change failed: {0}")]
    Failed(String),
}

/// A member as the membership lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: u64,
    pub peer_urls: Vec<String>,
    pub learner: bool,
}

/// The leader's current membership: every member with whether it is a learner.
fn members(raft: &Raft) -> BTreeMap<u64, (MemberNode, bool)> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    with_roles(m.membership_config.membership())
}

/// Every member of `membership` with whether it is a learner.
fn with_roles(membership: &openraft::Membership<u64, MemberNode>) -> BTreeMap<u64, (MemberNode, bool)> {
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    membership.nodes().map(|(id, node)| (*id, (node.clone(), !voters.contains(id)))).collect()
}

/// The membership this member applied (so committed), in ID order: what etcd's member list shows.
/// A change still in flight (uncommitted, or committed but not applied here) is not listed; the
/// safety checks of a change use the effective membership instead ([`members`]), which counts it.
/// Before anything is applied (a member that has not caught up yet), the effective membership.
pub fn members_of(raft: &Raft, store: &SharedStore) -> Vec<MemberInfo> {
    let applied = super::state_machine::applied_membership(&read_store(store))
        .map(|stored| with_roles(stored.membership()))
        .ok()
        .filter(|members| !members.is_empty());
    applied
        .unwrap_or_else(|| members(raft))
        .into_iter()
        .map(|(id, (node, learner))| MemberInfo { id, peer_urls: node.peer_urls, learner })
        .collect()
}

/// Members that have published their attributes, i.e. have run (etcd's "started").
fn started(store: &SharedStore, ids: impl Iterator<Item = u64>) -> usize {
    let store = read_store(store);
    ids.filter(|id| super::member_attributes(&store, *id).is_some()).count()
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn write_error(e: RaftError<u64, ClientWriteError<u64, MemberNode>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => MembershipError::NoLeader,
        other => MembershipError::Failed(other.to_string()),
    }
}

/// Checks and performs `call` on this member, which must lead; answers the membership after it.
pub async fn change_here(
    raft: &Raft,
    store: &SharedStore,
    call: &MembershipCall,
) -> Result<Vec<MemberInfo>, MembershipError> {
    let current = members(raft);
    let voters: Vec<u64> = current.iter().filter(|(_, (_, learner))| !learner).map(|(id, _)| *id).collect();
    let url_taken = |urls: &[String], except: Option<u64>| {
        current.iter().any(|(id, (node, _))| Some(*id) != except && node.peer_urls.iter().any(|u| urls.contains(u)))
    };
    match call {
        MembershipCall::Add { id, peer_urls, learner } => {
            if current.contains_key(id) {
                return Err(MembershipError::MemberExists);
            }
            if url_taken(peer_urls, None) {
                return Err(MembershipError::PeerUrlExists);
            }
            if *learner {
                if current.values().filter(|(_, l)| *l).count() >= MAX_LEARNERS {
                    return Err(MembershipError::TooManyLearners);
                }
            } else if started(store, voters.iter().copied()) < quorum(voters.len() + 1) {
                return Err(MembershipError::NotEnoughStarted);
            }
            let node = MemberNode { name: String::new(), peer_urls: peer_urls.clone(), client_urls: Vec::new() };
            raft.add_learner(*id, node, false).await.map_err(write_error)?;
            if !learner {
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), false)
                    .await
                    .map_err(write_error)?;
            }
        }
        MembershipCall::Remove { id } => {
            let Some((_, learner)) = current.get(id) else { return Err(MembershipError::MemberNotFound) };
            if !learner {
                let remaining: Vec<u64> = voters.iter().copied().filter(|v| v != id).collect();
                if remaining.is_empty() || started(store, remaining.iter().copied()) < quorum(remaining.len()) {
                    return Err(MembershipError::NotEnoughStarted);
                }
                raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([*id])), false)
                    .await
                    .map_err(write_error)?;
            } else {
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([*id])), false)
                    .await
                    .map_err(write_error)?;
            }
        }
        MembershipCall::Update { id, peer_urls } => {
            let Some((node, _)) = current.get(id) else { return Err(MembershipError::MemberNotFound) };
            if url_taken(peer_urls, Some(*id)) {
                return Err(MembershipError::PeerUrlExists);
            }
            let node = MemberNode { peer_urls: peer_urls.clone(), ..node.clone() };
            raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(*id, node)])), false)
                .await
                .map_err(write_error)?;
        }
        MembershipCall::Promote { id } => {
            let Some((_, learner)) = current.get(id) else { return Err(MembershipError::MemberNotFound) };
            if !learner {
                return Err(MembershipError::NotLearner);
            }
            let (matched, committed) = {
                let metrics = raft.metrics();
                let m = metrics.borrow();
                let matched = m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map_or(0, |l| l.index);
                (matched, m.last_applied.map_or(0, |l| l.index))
            };
            if (matched as f64) < (committed as f64) * LEARNER_READY_PERCENT {
                return Err(MembershipError::LearnerNotReady);
            }
            if started(store, voters.iter().copied().chain([*id])) < quorum(voters.len() + 1) {
                return Err(MembershipError::NotEnoughStarted);
            }
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), false)
                .await
                .map_err(write_error)?;
        }
    }
    Ok(members_of(raft, store))
}

/// Performs `call` on the leader, wherever it is.
pub async fn change(
    raft: &Raft,
    peers: &Peers,
    store: &SharedStore,
    call: &MembershipCall,
    timeout: Duration,
) -> Result<Vec<MemberInfo>, MembershipError> {
    let Some((leader, url)) = super::peer::known_leader(raft) else { return Err(MembershipError::NoLeader) };
    if leader == peers.self_id {
        return match crate::runtime::timeout(timeout, change_here(raft, store, call)).await {
            Ok(result) => result,
            Err(_) => Err(MembershipError::Timeout),
        };
    }
    let url = url.ok_or(MembershipError::NoLeader)?;
    let reply: Result<Result<Vec<MemberInfo>, MembershipError>, PeerFault> =
        peers.call(leader, &url, Method::Membership, call, timeout).await;
    match reply {
        Ok(result) => result,
        Err(PeerFault::Timeout(_)) => Err(MembershipError::Timeout),
        Err(_) => Err(MembershipError::NoLeader),
    }
}

/// What a running member tells a member that joins: the cluster and its members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: u64,
    pub members: Vec<MemberInfo>,
}

/// Answers a joining member (see [`ClusterInfo`]): the applied membership, so a member whose add
/// has not committed is not let in.
pub fn cluster_info(raft: &Raft, store: &SharedStore, cluster_id: u64) -> ClusterInfo {
    ClusterInfo { cluster_id, members: members_of(raft, store) }
}

/// etcd's ID for a member added at run time: SHA-1 over its sorted peer URLs, the cluster token
/// and the time in seconds.
pub fn added_member_id(peer_urls: &[String], cluster_token: &str, unix_seconds: u64) -> u64 {
    super::compute_member_id(peer_urls, &format!("{cluster_token}{unix_seconds}"))
}

/// Asks the members at `peer_urls` for the cluster and finds this member in it by its peer
/// URLs: answers (cluster ID, member ID). Every peer is asked, since one that lags may not have
/// applied the add yet; a few rounds, a second apart, before giving up.
pub async fn discover(peer_urls: &[String], my_urls: &[String], timeout: Duration) -> Result<(u64, u64), String> {
    let mut last = String::new();
    for round in 0..DISCOVER_ROUNDS {
        if round > 0 {
            crate::runtime::sleep(DISCOVER_PAUSE).await;
        }
        let mut errors = Vec::new();
        let mut without_me = None;
        for url in peer_urls {
            let peers = Peers::new(0, 0);
            let reply: Result<ClusterInfo, PeerFault> = peers.call(0, url, Method::Join, &(), timeout).await;
            match reply {
                Ok(info) => match info.members.iter().find(|m| m.peer_urls.iter().any(|u| my_urls.contains(u))) {
                    Some(m) => return Ok((info.cluster_id, m.id)),
                    None => without_me = Some(url.clone()),
                },
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        last = match without_me {
            Some(url) => format!(
                "the cluster at {url} has no member with peer URLs {}: add it first with `etcdctl member add`",
                my_urls.join(",")
            ),
            None => format!("cannot reach any member of the existing cluster ({})", errors.join("; ")),
        };
    }
    Err(last)
}
