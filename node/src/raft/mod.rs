//! Raft: openraft's type configuration, the log on the WAL, the state machine on the MVCC store,
//! the peer transport, and starting a member.
//!
//! Owns: member and cluster identity (derived from peer URLs and the cluster token exactly as etcd
//! derives them), the data-dir layout, converting configuration into openraft's `Config` (in one
//! function), and bootstrap. Never depends on `api`.
//!
//! Invariants checked here: the applied index only grows (state machine); an entry is reported
//! flushed only after its fsync (log store); a data dir is only ever served by the identity that
//! created it.

mod leases;
mod log_store;
pub mod membership;
mod network;
pub mod peer;
mod proposer;
mod read;
mod state_machine;
pub mod transfer;
pub mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftLogStorage;
use openraft::RaftLogReader;
use serde::{Deserialize, Serialize};

pub use leases::{lease_call, LeaseAnswer, LeaseCall};
pub use peer::{PeerService, Peers};
pub use proposer::{Applied, ProposeError, Proposer};
pub use read::ReadIndex;
pub use state_machine::{applied_index, read_store, was_removed, SharedStore};
pub use types::{MemberNode, Raft, Request, Response};

use crate::config::{ClusterState, Config};
use crate::lease::Lessor;
use crate::mvcc::Store;
use crate::storage::Disk;
use crate::watch::WatchHub;

/// Where a member keeps its files below `--data-dir` (etcd's layout).
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("wal")
}

/// The MVCC database file below `--data-dir`.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap").join("db")
}

/// Meta key of the member's identity in the store: member-local, so snapshots neither carry it to
/// other members nor overwrite it (simulator, `multi_key_txn` seed 2: a member that installed the
/// leader's snapshot restarted as the leader).
const META_IDENTITY: &str = "local.identity";

/// Who this member is; fixed when its data dir is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub member_id: u64,
    pub cluster_id: u64,
}

/// etcd's member ID: the first 8 bytes (big endian) of SHA-1 over the sorted peer URLs, joined,
/// followed by the cluster token.
pub fn compute_member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut bytes = urls.concat().into_bytes();
    bytes.extend_from_slice(cluster_token.as_bytes());
    first_u64(&sha1_smol::Sha1::from(bytes).digest().bytes())
}

/// etcd's cluster ID: the first 8 bytes (big endian) of SHA-1 over the sorted member IDs.
pub fn compute_cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    first_u64(&sha1_smol::Sha1::from(bytes).digest().bytes())
}

fn first_u64(digest: &[u8; 20]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Why a member could not start. Printed as one line by `main`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("{path}: {reason}")]
    Database { path: PathBuf, reason: String },
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Refused(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// A started member: the Raft handle and the store the API reads.
pub struct Node {
    pub raft: Raft,
    pub store: SharedStore,
    pub identity: Identity,
    /// The initial cluster as bootstrapped: member ID -> member.
    pub members: BTreeMap<u64, MemberNode>,
    /// Connections to the other members.
    pub peers: Peers,
    /// The front door for writes (batches, forwards to the leader).
    pub proposer: Proposer,
    /// The lease table, kept by apply; the leader also tracks expiry in it.
    pub lessor: Arc<Lessor>,
    /// The events of applied writes, for watchers.
    pub hub: Arc<WatchHub>,
    /// Linearizable reads, sharing read-index confirmations.
    pub reads: ReadIndex,
}

/// openraft's configuration from etcd's flags (the one place this conversion lives).
///
/// Elections: an etcd follower campaigns a random `[election, 2 * election)` after the last word
/// from its leader. An openraft 0.9 follower that knows a leader waits `leader_lease` (=
/// `election_timeout_max`) plus its own random draw from `[election_timeout_min,
/// election_timeout_max)`. With `max = election` and `min` just above twice the heartbeat, that is
/// `[election + 2 * heartbeat, 2 * election)`: etcd's window. (Setting min/max to etcd's range
/// directly would make followers wait up to 4 election timeouts: detcd's first failover numbers.)
fn raft_config(config: &Config) -> Result<Arc<openraft::Config>, StartError> {
    let heartbeat_ms = config.heartbeat_interval.as_millis() as u64;
    let election_ms = config.election_timeout.as_millis() as u64;
    let raft = openraft::Config {
        cluster_name: config.initial_cluster_token.clone(),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: (2 * heartbeat_ms + 1).min(election_ms.saturating_sub(1)),
        election_timeout_max: election_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count.max(1)),
        // etcd keeps 5,000 entries after a snapshot so slow followers can catch up from the log;
        // a smaller --snapshot-count keeps that many (so small test clusters purge their logs).
        max_in_snapshot_log_to_keep: config.snapshot_count.clamp(1, 5_000),
        ..Default::default()
    };
    raft.validate().map(Arc::new).map_err(|e| StartError::Config(e.to_string()))
}

/// The members `--initial-cluster` names, with their IDs.
fn initial_members(config: &Config) -> BTreeMap<u64, MemberNode> {
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, url) in &config.initial_cluster {
        by_name.entry(name.as_str()).or_default().push(url.to_string());
    }
    by_name
        .into_iter()
        .map(|(name, peer_urls)| {
            let id = compute_member_id(&peer_urls, &config.initial_cluster_token);
            let client_urls = if name == config.name {
                config.advertise_client_urls.iter().map(ToString::to_string).collect()
            } else {
                Vec::new()
            };
            (id, MemberNode { name: name.to_string(), peer_urls, client_urls })
        })
        .collect()
}

fn open_db(disk: &dyn Disk, path: &Path) -> Result<redb::Database, StartError> {
    crate::mvcc::open_database(disk, path).map_err(|reason| StartError::Database { path: path.to_path_buf(), reason })
}

/// Reads the stored identity, or establishes it on first start.
fn stored_identity(store: &Store) -> Result<Option<Vec<u8>>, StartError> {
    store.meta(META_IDENTITY).map_err(|e| StartError::Refused(e.to_string()))
}

/// Reads the stored identity, or establishes it on first start: from the initial cluster, or, for
/// a member joining a running cluster, as `joined` (cluster ID, member ID) learnt from it.
fn identity(
    store: &mut Store,
    config: &Config,
    members: &BTreeMap<u64, MemberNode>,
    joined: Option<(u64, u64)>,
) -> Result<(Identity, bool), StartError> {
    if let Some(bytes) = stored_identity(store)? {
        let id: Identity = bincode::deserialize(&bytes)
            .map_err(|e| StartError::Refused(format!("stored member identity is unreadable: {e}")))?;
        if id.name != config.name {
            tracing::warn!(stored = %id.name, flag = %config.name, "data dir belongs to another name; keeping the stored identity");
        }
        return Ok((id, false));
    }
    let id = match joined {
        Some((cluster_id, member_id)) => Identity { name: config.name.clone(), member_id, cluster_id },
        None => {
            let mine: Vec<String> = config.initial_advertise_peer_urls.iter().map(ToString::to_string).collect();
            let member_id = compute_member_id(&mine, &config.initial_cluster_token);
            let ids: Vec<u64> = members.keys().copied().collect();
            Identity { name: config.name.clone(), member_id, cluster_id: compute_cluster_id(&ids) }
        }
    };
    let encoded = bincode::serialize(&id).map_err(|e| StartError::Refused(e.to_string()))?;
    let mut batch = store.write().map_err(|e| StartError::Refused(e.to_string()))?;
    batch.set_meta(META_IDENTITY, &encoded).map_err(|e| StartError::Refused(e.to_string()))?;
    batch.commit(true).map_err(|e| StartError::Refused(e.to_string()))?;
    Ok((id, true))
}

/// Makes everything the store has applied durable (clean shutdown).
pub fn flush(store: &SharedStore) -> Result<(), crate::mvcc::MvccError> {
    state_machine::write_store(store).write()?.commit(true)
}

/// Opens the data dir and starts Raft. A fresh single member bootstraps its cluster.
pub async fn start(config: &Config, disk: Arc<dyn Disk>) -> Result<Node, StartError> {
    let members = initial_members(config);
    let raft_config = raft_config(config)?;
    let db_path = db_path(&config.data_dir);
    let db = open_db(disk.as_ref(), &db_path)?;
    let mut store =
        Store::open(db).map_err(|e| StartError::Database { path: db_path.clone(), reason: e.to_string() })?;
    let joining = config.initial_cluster_state == ClusterState::Existing && stored_identity(&store)?.is_none();
    let joined = if joining {
        let mine: Vec<String> = config.initial_advertise_peer_urls.iter().map(ToString::to_string).collect();
        let others: Vec<String> =
            members.values().flat_map(|m| m.peer_urls.iter()).filter(|u| !mine.contains(u)).cloned().collect();
        let found = membership::discover(&others, &mine, std::time::Duration::from_secs(5))
            .await
            .map_err(StartError::Refused)?;
        tracing::info!(cluster_id = %format!("{:x}", found.0), member_id = %format!("{:x}", found.1), "joining a running cluster");
        Some(found)
    } else {
        None
    };
    let (identity, fresh) = identity(&mut store, config, &members, joined)?;
    let mut log = log_store::LogStore::open(disk, &wal_dir(&config.data_dir), config.raft_log_cache_bytes)?;
    let log_state = log.get_log_state().await.map_err(|e| StartError::Raft(e.to_string()))?;
    let applied = applied_index(&store);
    let last_index = log_state.last_log_id.map_or(0, |l| l.index);
    if let Some(applied_id) = state_machine::applied_log_id(&store).filter(|a| a.index > last_index) {
        // The database was made durable ahead of this member's log: a snapshot was installed or
        // built (a leader applies entries a follower quorum committed before its own flush), and
        // the power went before the log's purge record, or its tail, reached the disk (simulator,
        // `power_loss_torn_writes` seed 302). Everything applied is committed, so the database is a
        // snapshot of the log up to `applied`: record the log as purged up to there, as after an
        // install, and the leader sends what follows.
        tracing::warn!(
            log_ends_at = last_index,
            applied,
            "the database is ahead of the raft log; treating the log as purged up to the applied entry"
        );
        log.purge_durably(applied_id).await.map_err(|e| StartError::Raft(e.to_string()))?;
    }
    if crate::planted::is_planted(crate::planted::Bug::ApplyTwiceAfterRestart) && applied > 1 {
        let purged = log_state.last_purged_log_id.map_or(0, |p| p.index);
        if let Ok(Some(previous)) =
            log.try_get_log_entries(applied - 1..applied).await.map(|e| e.first().map(|e| e.log_id))
        {
            if purged < applied - 1 {
                state_machine::forget_last_apply(&mut store, previous).map_err(|e| StartError::Raft(e.to_string()))?;
            }
        }
    }
    let lessor = Arc::new(Lessor::new(crate::lease::min_ttl(config.heartbeat_interval, config.election_timeout)));
    state_machine::rebuild_lessor(&store, &lessor)
        .map_err(|e| StartError::Database { path: db_path.clone(), reason: e.to_string() })?;
    let hub = Arc::new(WatchHub::new(store.current_revision()));
    let store = Arc::new(RwLock::new(store));
    let sm = state_machine::StateMachine::new(store.clone(), lessor.clone(), hub.clone());
    let peers = Peers::new(identity.cluster_id, identity.member_id);
    let network = network::PeerNetwork { peers: peers.clone() };
    let raft = Raft::new(identity.member_id, raft_config, network, log, sm)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let initialized = raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))?;
    if initialized && was_removed(&read_store(&store), identity.member_id) {
        let _ = raft.shutdown().await;
        return Err(StartError::Refused(format!(
            "member {:x} has been permanently removed from the cluster; start it with an empty data dir after `etcdctl member add`",
            identity.member_id
        )));
    }
    if !initialized && joined.is_some() {
        tracing::info!("waiting for the leader to replicate the cluster to this member");
    } else if !initialized {
        if !fresh {
            tracing::warn!("data dir has an identity but no raft state; bootstrapping again");
        }
        raft.initialize(members.clone()).await.map_err(|e| StartError::Raft(e.to_string()))?;
    }
    tracing::info!(
        name = %identity.name,
        member_id = %format!("{:x}", identity.member_id),
        cluster_id = %format!("{:x}", identity.cluster_id),
        "member started"
    );
    let proposer = Proposer::start(raft.clone(), peers.clone(), request_timeout(config));
    crate::runtime::spawn(leases::drive(
        raft.clone(),
        lessor.clone(),
        proposer.clone(),
        config.election_timeout,
        request_timeout(config),
    ));
    let reads = ReadIndex::new(raft.clone(), peers.clone(), request_timeout(config));
    Ok(Node { raft, store, identity, members, peers, proposer, lessor, hub, reads })
}

/// How long a client request may wait on Raft (etcd: 5 s plus two election timeouts).
pub fn request_timeout(config: &Config) -> std::time::Duration {
    std::time::Duration::from_secs(5) + 2 * config.election_timeout
}

/// Meta key under which a member's published attributes are applied.
pub fn member_attributes_key(member_id: u64) -> String {
    format!("member.{member_id:016x}")
}

/// The attributes member `id` published (name, client URLs), if it has.
pub fn member_attributes(store: &Store, member_id: u64) -> Option<detcd_proto::detcdpb::MemberAttributes> {
    use prost::Message;
    let bytes = store.meta(&member_attributes_key(member_id)).ok().flatten()?;
    detcd_proto::detcdpb::MemberAttributes::decode(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_member_id_matches_etcd() {
        // etcd's well-known ID for `etcd` started with no flags: 8e9e05c52164694d.
        let id = compute_member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
    }

    #[test]
    fn default_cluster_id_matches_etcd() {
        // etcd's cluster ID for the default single member: cdf818194e3a8c32.
        assert_eq!(format!("{:x}", compute_cluster_id(&[0x8e9e05c52164694d])), "cdf818194e3a8c32");
    }
}
