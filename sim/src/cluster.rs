//! A simulated detcd cluster: one madsim host per member running the real `detcd::server::run`
//! on its own [`MemDisk`], plus a control host from which the harness asks members for their
//! status and state over the etcd API (never by reaching into a node).
//!
//! Members are `10.0.0.{i+1}` (client port 2379, peer port 2380); clients live on `10.0.1.x`, the
//! control host on `10.0.2.1`. Partitions clog links between members only: clients and the control
//! host reach every member, as in Jepsen.
//!
//! Membership changes go through the etcd API as an operator's would: `MemberAdd` on a running
//! member, then a new host started with the flags `etcdctl member add` prints
//! (`--initial-cluster-state existing`); `MemberRemove`, then the process stopped; `MemberPromote`.
//! A member index is never reused; a removed member stays in the table as [`MemberState::Removed`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::storage::{CrashPolicy, MemDisk};
use detcd_proto::etcdserverpb::cluster_client::ClusterClient;
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::lease_client::LeaseClient;
use detcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd_proto::etcdserverpb::{
    LeaseLeasesRequest, Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    RangeRequest, StatusRequest, StatusResponse,
};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use tonic::transport::Channel;

/// The data directory of every member (each has its own disk).
const DATA_DIR: &str = "/var/lib/detcd";
/// How long one status or read call of the harness may take.
const CONTROL_RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one membership change may keep being retried (faults may block it for a while).
const MEMBERSHIP_CHANGE_LIMIT: Duration = Duration::from_secs(30);
/// The pause between attempts of a membership change.
const MEMBERSHIP_RETRY: Duration = Duration::from_millis(500);

/// Bytes of durable Raft entries a simulated member keeps in memory (see `spawn_member`).
const SIM_RAFT_LOG_CACHE_BYTES: u64 = 16 * 1024;

/// Cluster settings a scenario chooses (the rest are etcd's defaults).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub members: usize,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub snapshot_count: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { members: 3, heartbeat_ms: 100, election_ms: 1000, snapshot_count: 200 }
    }
}

/// Whether a member's process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Up,
    /// Killed or powered off; restarted by a heal.
    Down,
    Paused,
    /// Removed from the cluster (its process stopped), or never added: never comes back.
    Removed,
}

struct SimMember {
    name: String,
    ip: IpAddr,
    /// `None` for a member whose add never went through.
    node: Option<NodeHandle>,
    disk: MemDisk,
    state: MemberState,
    learner: bool,
}

/// The members clients may send to (name, client URL): updated as members are added and removed.
#[derive(Clone, Default)]
pub struct Endpoints(Arc<Mutex<Vec<(String, String)>>>);

impl Endpoints {
    /// The `i`-th endpoint, counting round the list.
    pub fn get(&self, i: usize) -> (String, String) {
        let list = lock(&self.0);
        list[i % list.len()].clone()
    }

    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One member's view, as `Maintenance.Status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub leader: u64,
    pub raft_term: u64,
    pub applied_index: u64,
    pub revision: i64,
}

/// A running simulated cluster.
pub struct SimCluster {
    handle: Handle,
    options: ClusterOptions,
    members: Vec<SimMember>,
    endpoints: Endpoints,
    control: NodeHandle,
    /// Members whose `run` returned, and why (a member must never stop on its own, unless removed).
    exits: Arc<Mutex<Vec<(String, String)>>>,
    /// Member pairs whose link (from, to) is clogged.
    clogged: BTreeSet<(usize, usize)>,
}

fn member_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, index as u8 + 1))
}

/// The client URL of member `index`.
pub fn client_url(index: usize) -> String {
    format!("http://{}:2379", member_ip(index))
}

fn peer_url(index: usize) -> String {
    format!("http://{}:2380", member_ip(index))
}

fn member_args(index: usize, options: &ClusterOptions, initial_cluster: &str, state: &str) -> Vec<String> {
    [
        ("--name", format!("m{index}")),
        ("--data-dir", DATA_DIR.to_string()),
        ("--listen-client-urls", client_url(index)),
        ("--advertise-client-urls", client_url(index)),
        ("--listen-peer-urls", peer_url(index)),
        ("--initial-advertise-peer-urls", peer_url(index)),
        ("--initial-cluster", initial_cluster.to_string()),
        ("--initial-cluster-token", "detcd-sim".to_string()),
        ("--initial-cluster-state", state.to_string()),
        ("--heartbeat-interval", options.heartbeat_ms.to_string()),
        ("--election-timeout", options.election_ms.to_string()),
        ("--snapshot-count", options.snapshot_count.to_string()),
        ("--log-level", "error".to_string()),
    ]
    .into_iter()
    .map(|(flag, value)| format!("{flag}={value}"))
    .collect()
}

/// The member index whose peer URL is `url`.
fn index_of_peer_url(url: &str) -> Option<usize> {
    let host = url.strip_prefix("http://10.0.0.")?.strip_suffix(":2380")?;
    host.parse::<usize>().ok()?.checked_sub(1)
}

impl SimCluster {
    /// Creates and starts every member (through etcd's flags, as the binary parses them).
    pub fn start(options: &ClusterOptions) -> Result<SimCluster, String> {
        let handle = Handle::current();
        let control = handle.create_node().name("control").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1))).build();
        let mut cluster = SimCluster {
            handle,
            options: options.clone(),
            members: Vec::new(),
            endpoints: Endpoints::default(),
            control,
            exits: Arc::new(Mutex::new(Vec::new())),
            clogged: BTreeSet::new(),
        };
        let initial: Vec<String> = (0..options.members).map(|i| format!("m{i}={}", peer_url(i))).collect();
        for index in 0..options.members {
            cluster.spawn_member(index, &initial.join(","), "new", false)?;
        }
        Ok(cluster)
    }

    /// Starts a host for member `index` (the next unused index) with these initial-cluster flags.
    fn spawn_member(&mut self, index: usize, initial_cluster: &str, state: &str, learner: bool) -> Result<(), String> {
        assert_eq!(index, self.members.len(), "member indices are handed out in order");
        let args = member_args(index, &self.options, initial_cluster, state);
        let mut config = match detcd::config::parse(&args, &BTreeMap::new()) {
            Ok(detcd::config::Command::Run(config)) => config,
            Ok(_) => return Err("member flags did not describe a run".to_string()),
            Err(e) => return Err(format!("member flags rejected: {e}")),
        };
        // Simulated runs write far less than the real default keeps in memory: a small cache makes
        // a member that catches up read entries back from its WAL, as a real one does after a
        // long partition.
        config.raft_log_cache_bytes = SIM_RAFT_LOG_CACHE_BYTES;
        let disk = MemDisk::new();
        let name = format!("m{index}");
        let node = {
            let (disk, exits, name) = (disk.clone(), self.exits.clone(), name.clone());
            self.handle
                .create_node()
                .name(&name)
                .ip(member_ip(index))
                .init(move || {
                    let (config, disk, exits, name) = (config.clone(), disk.clone(), exits.clone(), name.clone());
                    async move {
                        let result = detcd::server::run(&config, Arc::new(disk), std::future::pending()).await;
                        let why = match result {
                            Ok(()) => "stopped".to_string(),
                            Err(e) => e,
                        };
                        lock(&exits).push((name, why));
                    }
                })
                .build()
        };
        lock(&self.endpoints.0).push((name.clone(), client_url(index)));
        self.members.push(SimMember {
            name,
            ip: member_ip(index),
            node: Some(node),
            disk,
            state: MemberState::Up,
            learner,
        });
        Ok(())
    }

    /// The endpoints clients send to (kept current through membership changes).
    pub fn endpoints(&self) -> Endpoints {
        self.endpoints.clone()
    }

    /// Indices of the members not removed.
    pub fn active(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| self.members[i].state != MemberState::Removed).collect()
    }

    /// Indices of the members whose process runs.
    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|&i| self.members[i].state == MemberState::Up).collect()
    }

    /// Runs a cluster API call on the control host against member `index`, bounded by `limit`.
    async fn call_member<T, F, Fut>(&self, index: usize, limit: Duration, call: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(ClusterClient<Channel>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
    {
        let url = client_url(index);
        self.on_control(async move {
            let endpoint = tonic::transport::Endpoint::from_shared(url).map_err(|e| e.to_string())?;
            let client = ClusterClient::new(endpoint.connect_lazy());
            match tokio::time::timeout(limit, call(client)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                Err(_) => Err("timed out".to_string()),
            }
        })
        .await
    }

    /// Runs a cluster API call against each running member in turn until one answers; answers the
    /// last error otherwise.
    async fn cluster_call<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: Fn(ClusterClient<Channel>) -> Fut + Send + Sync + Clone + 'static,
        Fut: std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
    {
        let mut last = "no running member".to_string();
        for index in self.running() {
            match self.call_member(index, 2 * CONTROL_RPC_TIMEOUT, call.clone()).await {
                Ok(value) => return Ok(value),
                Err(e) => last = format!("{}: {e}", self.members[index].name),
            }
        }
        Err(last)
    }

    /// A member list, from any running member, that lists peer URL `url`.
    async fn member_list_naming(&self, url: &str) -> Option<Vec<Member>> {
        for index in self.running() {
            let list = self
                .call_member(index, CONTROL_RPC_TIMEOUT, |mut client| async move {
                    client.member_list(MemberListRequest {}).await.map(|r| r.into_inner().members)
                })
                .await;
            if let Ok(list) = list {
                if list.iter().any(|m| m.peer_ur_ls.iter().any(|u| u == url)) {
                    return Some(list);
                }
            }
        }
        None
    }

    /// The member ID of member `index`, from any member that lists it (one that lags or is cut off
    /// may not yet); `None` if no running member does.
    async fn member_id(&self, index: usize) -> Option<u64> {
        let url = peer_url(index);
        let members = self.member_list_naming(&url).await?;
        members.iter().find(|m| m.peer_ur_ls.contains(&url)).map(|m| m.id)
    }

    /// `etcdctl member add` then a new member started with the printed flags; retried while faults
    /// block it (an add that errs may still have committed: the member list says). Answers the new
    /// member's index, which is consumed even when the add never went through.
    pub async fn add_member(&mut self, learner: bool) -> Result<usize, String> {
        let index = self.members.len();
        let url = peer_url(index);
        let deadline = tokio::time::Instant::now() + MEMBERSHIP_CHANGE_LIMIT;
        let members = loop {
            let request = MemberAddRequest { peer_ur_ls: vec![url.clone()], is_learner: learner };
            let added = self
                .cluster_call(move |mut client| {
                    let request = request.clone();
                    async move { client.member_add(request).await.map(|r| r.into_inner().members) }
                })
                .await;
            let error = match added {
                Ok(members) => break members,
                Err(e) => e,
            };
            // An attempt that erred (a timeout, a lost leader) may have committed: the URL is then
            // listed, or the next attempt is refused because it exists.
            if let Some(members) = self.member_list_naming(&url).await {
                break members;
            }
            if tokio::time::Instant::now() >= deadline {
                self.members.push(SimMember {
                    name: format!("m{index}"),
                    ip: member_ip(index),
                    node: None,
                    disk: MemDisk::new(),
                    state: MemberState::Removed,
                    learner,
                });
                return Err(format!("member add m{index}: {error}"));
            }
            // Retried, also after "Peer URLs already exists": an earlier attempt committed and the
            // list naming the member has not reached a member that answers yet.
            tokio::time::sleep(MEMBERSHIP_RETRY).await;
        };
        let mut initial = Vec::new();
        for member in &members {
            for peer in &member.peer_ur_ls {
                let i = index_of_peer_url(peer).ok_or_else(|| format!("member add: unexpected peer URL {peer}"))?;
                initial.push(format!("m{i}={peer}"));
            }
        }
        self.spawn_member(index, &initial.join(","), "existing", learner)?;
        Ok(index)
    }

    /// `etcdctl member remove` of member `index`, retried while faults block it, then its process
    /// stopped. A member no longer listed counts as removed.
    pub async fn remove_member(&mut self, index: usize) -> Result<(), String> {
        if self.members[index].state == MemberState::Removed {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + MEMBERSHIP_CHANGE_LIMIT;
        let outcome = loop {
            let attempt = match self.member_id(index).await {
                None => break Ok(()),
                Some(id) => {
                    self.cluster_call(move |mut client| async move {
                        client.member_remove(MemberRemoveRequest { id }).await.map(|_| ())
                    })
                    .await
                }
            };
            match attempt {
                Ok(()) => break Ok(()),
                // The leader no longer knows it: an earlier attempt that erred committed.
                Err(e) if e.contains("member not found") => break Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => break Err(format!("member remove m{index}: {e}")),
                Err(_) => tokio::time::sleep(MEMBERSHIP_RETRY).await,
            }
        };
        if outcome.is_ok() {
            let member = &mut self.members[index];
            if let Some(node) = &member.node {
                if member.state == MemberState::Paused {
                    self.handle.resume(node.id());
                }
                self.handle.kill(node.id());
            }
            member.state = MemberState::Removed;
            let name = member.name.clone();
            lock(&self.endpoints.0).retain(|(n, _)| *n != name);
        }
        outcome
    }

    /// `etcdctl member promote` of the oldest learner, retried until it has caught up (or faults
    /// let it); answers the promoted index.
    pub async fn promote_learner(&mut self) -> Result<Option<usize>, String> {
        let Some(index) = self.active().into_iter().find(|&i| self.members[i].learner) else { return Ok(None) };
        let deadline = tokio::time::Instant::now() + MEMBERSHIP_CHANGE_LIMIT;
        loop {
            let attempt = match self.member_id(index).await {
                Some(id) => {
                    self.cluster_call(move |mut client| async move {
                        client.member_promote(MemberPromoteRequest { id }).await.map(|_| ())
                    })
                    .await
                }
                None => Err(format!("no running member lists m{index}")),
            };
            let promoted = match attempt {
                Ok(()) => true,
                // An earlier attempt that errored may have committed.
                Err(e) if e.contains("can only promote a learner member") && !e.contains("in sync") => true,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(format!("member promote m{index}: {e}"))
                }
                Err(_) => false,
            };
            if promoted {
                self.members[index].learner = false;
                return Ok(Some(index));
            }
            tokio::time::sleep(MEMBERSHIP_RETRY).await;
        }
    }

    /// How many members the cluster has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `index`'s name.
    pub fn name(&self, index: usize) -> &str {
        &self.members[index].name
    }

    /// Member `index`'s state.
    pub fn state(&self, index: usize) -> MemberState {
        self.members[index].state
    }

    /// What members not removed reported when their `run` returned (a removed member stops
    /// itself when it learns of its removal, as etcd's does).
    pub fn exits(&self) -> Vec<String> {
        let removed: BTreeSet<&str> = (0..self.members.len())
            .filter(|&i| self.members[i].state == MemberState::Removed)
            .map(|i| self.members[i].name.as_str())
            .collect();
        lock(&self.exits)
            .iter()
            .filter(|(name, _)| !removed.contains(name.as_str()))
            .map(|(name, why)| format!("{name}: {why}"))
            .collect()
    }

    /// `kill -9`: the process dies, the page cache survives (unsynced bytes are kept).
    pub fn kill(&mut self, index: usize) {
        self.power_off(index, CrashPolicy::KeepUnsynced);
    }

    /// Power loss: the process dies and the disk keeps what `policy` says of its unsynced writes.
    pub fn power_off(&mut self, index: usize, policy: CrashPolicy<'_>) {
        let member = &mut self.members[index];
        let Some(node) = &member.node else { return };
        match member.state {
            MemberState::Removed | MemberState::Down => return,
            MemberState::Paused => self.handle.resume(node.id()),
            MemberState::Up => {}
        }
        self.handle.kill(node.id());
        member.disk.crash(policy);
        member.state = MemberState::Down;
    }

    /// Starts a member that is down again (a no-op if it runs).
    pub fn restart(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let (MemberState::Down, Some(node)) = (member.state, &member.node) {
            self.handle.restart(node.id());
            member.state = MemberState::Up;
        }
    }

    /// Freezes a running member (a stop-the-world pause).
    pub fn pause(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let (MemberState::Up, Some(node)) = (member.state, &member.node) {
            self.handle.pause(node.id());
            member.state = MemberState::Paused;
        }
    }

    /// Unfreezes a paused member.
    pub fn resume(&mut self, index: usize) {
        let member = &mut self.members[index];
        if let (MemberState::Paused, Some(node)) = (member.state, &member.node) {
            self.handle.resume(node.id());
            member.state = MemberState::Up;
        }
    }

    /// Drops every message from member `from` to member `to` until [`SimCluster::heal_network`].
    pub fn clog(&mut self, from: usize, to: usize) {
        let (Some(a), Some(b)) = (&self.members[from].node, &self.members[to].node) else { return };
        if from != to && self.clogged.insert((from, to)) {
            NetSim::current().clog_link(a.id(), b.id());
        }
    }

    /// Cuts every link between `side` and the other members, both ways.
    pub fn isolate(&mut self, side: &[usize]) {
        for &a in side {
            for b in 0..self.members.len() {
                if !side.contains(&b) {
                    self.clog(a, b);
                    self.clog(b, a);
                }
            }
        }
    }

    /// Lifts every clogged link and restores the default latency and loss.
    pub fn heal_network(&mut self) {
        let net = NetSim::current();
        for (from, to) in std::mem::take(&mut self.clogged) {
            if let (Some(a), Some(b)) = (&self.members[from].node, &self.members[to].node) {
                net.unclog_link(a.id(), b.id());
            }
        }
        net.update_config(|c| *c = madsim::net::Config::default());
    }

    /// Sets the latency of every message to `min..max`.
    pub fn set_latency(&self, min: Duration, max: Duration) {
        NetSim::current().update_config(|c| c.send_latency = min..max.max(min + Duration::from_micros(1)));
    }

    /// Drops `rate` of the packets (TCP streams retransmit, so this shows as delay).
    pub fn set_loss(&self, rate: f64) {
        NetSim::current().update_config(|c| c.packet_loss_rate = rate);
    }

    /// Runs `future` on the control host.
    async fn on_control<T: Send + 'static>(&self, future: impl std::future::Future<Output = T> + Send + 'static) -> T {
        match self.control.spawn(future).await {
            Ok(value) => value,
            Err(e) => panic!("control task failed: {e}"),
        }
    }

    /// Member `index`'s status, if it answers in time.
    pub async fn status(&self, index: usize) -> Option<MemberStatus> {
        if self.members[index].state != MemberState::Up {
            return None;
        }
        let url = client_url(index);
        let reply = self.on_control(async move { call_status(url).await }).await?;
        let header = reply.header.unwrap_or_default();
        Some(MemberStatus {
            member_id: header.member_id,
            leader: reply.leader,
            raft_term: reply.raft_term,
            applied_index: reply.raft_applied_index,
            revision: header.revision,
        })
    }

    /// The index of the member that leads in the highest term any running member reports.
    pub async fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for index in self.active() {
            if let Some(status) = self.status(index).await {
                if status.leader == status.member_id && best.is_none_or(|(term, _)| status.raft_term > term) {
                    best = Some((status.raft_term, index));
                }
            }
        }
        best.map(|(_, index)| index)
    }

    /// Waits until every member runs, one leads, and all have applied the same index; gives up
    /// after `limit`. Returns the statuses it converged to.
    pub async fn converge(&self, limit: Duration) -> Result<Vec<MemberStatus>, String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut statuses = Vec::new();
            for index in self.active() {
                statuses.push(self.status(index).await);
            }
            let all: Option<Vec<MemberStatus>> = statuses.iter().copied().collect();
            if let Some(all) = all {
                let leader = all[0].leader;
                let agreed = leader != 0 && all.iter().all(|s| s.leader == leader);
                if agreed && all.iter().all(|s| s.applied_index == all[0].applied_index) {
                    return Ok(all);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("the cluster did not converge within {limit:?}; last statuses: {statuses:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every key of member `index` by a serializable read, with the revision it was read at.
    pub async fn local_state(&self, index: usize) -> Result<(i64, Vec<detcd_chaos::history::KeyValue>), String> {
        let url = client_url(index);
        let name = self.members[index].name.clone();
        self.on_control(async move {
            let mut client = connect(&url).await.map_err(|e| format!("{name}: {e}"))?;
            let request = RangeRequest { key: vec![0], range_end: vec![0], serializable: true, ..Default::default() };
            let reply = tokio::time::timeout(CONTROL_RPC_TIMEOUT, client.range(request))
                .await
                .map_err(|_| format!("{name}: range timed out"))?
                .map_err(|e| format!("{name}: {e}"))?
                .into_inner();
            let revision = reply.header.map_or(0, |h| h.revision);
            Ok((revision, reply.kvs.iter().map(crate::client::key_value).collect()))
        })
        .await
    }

    /// The ids of the leases member `index` holds (its applied lease table).
    pub async fn leases(&self, index: usize) -> Result<Vec<i64>, String> {
        let url = client_url(index);
        let name = self.members[index].name.clone();
        self.on_control(async move {
            let endpoint = tonic::transport::Endpoint::from_shared(url).map_err(|e| e.to_string())?;
            let mut client = LeaseClient::new(endpoint.connect_lazy());
            let reply = tokio::time::timeout(CONTROL_RPC_TIMEOUT, client.lease_leases(LeaseLeasesRequest {}))
                .await
                .map_err(|_| format!("{name}: lease list timed out"))?
                .map_err(|e| format!("{name}: {e}"))?
                .into_inner();
            Ok(reply.leases.iter().map(|lease| lease.id).collect())
        })
        .await
    }

    /// Sends `request` to member `index` from the control host (a linearizable read unless the
    /// request says otherwise).
    pub async fn read(
        &self,
        index: usize,
        request: &detcd_chaos::history::Request,
    ) -> Result<detcd_chaos::history::Response, String> {
        let url = client_url(index);
        let request = request.clone();
        self.on_control(async move {
            let mut client = connect(&url).await?;
            tokio::time::timeout(CONTROL_RPC_TIMEOUT, crate::client::send(&mut client, &request))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| format!("{:?}: {}", e.code(), e.message()))
        })
        .await
    }

    /// Member `index`'s IP.
    pub fn ip(&self, index: usize) -> IpAddr {
        self.members[index].ip
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

async fn connect(url: &str) -> Result<KvClient<Channel>, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).map_err(|e| e.to_string())?;
    let channel = tokio::time::timeout(CONTROL_RPC_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(KvClient::new(channel))
}

async fn call_status(url: String) -> Option<StatusResponse> {
    let endpoint = tonic::transport::Endpoint::from_shared(url).ok()?;
    let channel = tokio::time::timeout(CONTROL_RPC_TIMEOUT, endpoint.connect()).await.ok()?.ok()?;
    let mut client = MaintenanceClient::new(channel);
    let reply = tokio::time::timeout(CONTROL_RPC_TIMEOUT, client.status(StatusRequest {})).await.ok()?.ok()?;
    Some(reply.into_inner())
}
