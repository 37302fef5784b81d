//! A simulated detcd cluster: one madsim host per member running the real `detcd::server::run`
//! on its own [`MemDisk`], plus a control host from which the harness asks members for their
//! status and state over the etcd API (never by reaching into a node).
//!
//! Members are `10.0.0.{i+1}` (client port 2379, peer port 2380); clients live on `10.0.1.x`, the
//! control host on `10.0.2.1`. Partitions clog links between members only: clients and the control
//! host reach every member, as in Jepsen.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::storage::{CrashPolicy, MemDisk};
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::lease_client::LeaseClient;
use detcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd_proto::etcdserverpb::{LeaseLeasesRequest, RangeRequest, StatusRequest, StatusResponse};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use tonic::transport::Channel;

/// The data directory of every member (each has its own disk).
const DATA_DIR: &str = "/var/lib/detcd";
/// How long one status or read call of the harness may take.
const CONTROL_RPC_TIMEOUT: Duration = Duration::from_secs(2);

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
}

struct SimMember {
    name: String,
    ip: IpAddr,
    node: NodeHandle,
    disk: MemDisk,
    state: MemberState,
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
    members: Vec<SimMember>,
    control: NodeHandle,
    /// Errors of members whose `run` returned (a member must never stop on its own).
    exits: Arc<Mutex<Vec<String>>>,
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

fn member_args(index: usize, options: &ClusterOptions) -> Vec<String> {
    let initial_cluster: Vec<String> = (0..options.members).map(|i| format!("m{i}={}", peer_url(i))).collect();
    [
        ("--name", format!("m{index}")),
        ("--data-dir", DATA_DIR.to_string()),
        ("--listen-client-urls", client_url(index)),
        ("--advertise-client-urls", client_url(index)),
        ("--listen-peer-urls", peer_url(index)),
        ("--initial-advertise-peer-urls", peer_url(index)),
        ("--initial-cluster", initial_cluster.join(",")),
        ("--initial-cluster-token", "detcd-sim".to_string()),
        ("--initial-cluster-state", "new".to_string()),
        ("--heartbeat-interval", options.heartbeat_ms.to_string()),
        ("--election-timeout", options.election_ms.to_string()),
        ("--snapshot-count", options.snapshot_count.to_string()),
        ("--log-level", "error".to_string()),
    ]
    .into_iter()
    .map(|(flag, value)| format!("{flag}={value}"))
    .collect()
}

impl SimCluster {
    /// Creates and starts every member (through etcd's flags, as the binary parses them).
    pub fn start(options: &ClusterOptions) -> Result<SimCluster, String> {
        let handle = Handle::current();
        let exits = Arc::new(Mutex::new(Vec::new()));
        let mut members = Vec::new();
        for index in 0..options.members {
            let args = member_args(index, options);
            let config = match detcd::config::parse(&args, &BTreeMap::new()) {
                Ok(detcd::config::Command::Run(config)) => config,
                Ok(_) => return Err("member flags did not describe a run".to_string()),
                Err(e) => return Err(format!("member flags rejected: {e}")),
            };
            let disk = MemDisk::new();
            let name = format!("m{index}");
            let node = {
                let (disk, exits, name) = (disk.clone(), exits.clone(), name.clone());
                handle
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
                            lock(&exits).push(format!("{name}: {why}"));
                        }
                    })
                    .build()
            };
            members.push(SimMember { name, ip: member_ip(index), node, disk, state: MemberState::Up });
        }
        let control = handle.create_node().name("control").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1))).build();
        Ok(SimCluster { handle, members, control, exits, clogged: BTreeSet::new() })
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

    /// What members reported when their `run` returned.
    pub fn exits(&self) -> Vec<String> {
        lock(&self.exits).clone()
    }

    /// `kill -9`: the process dies, the page cache survives (unsynced bytes are kept).
    pub fn kill(&mut self, index: usize) {
        self.power_off(index, CrashPolicy::KeepUnsynced);
    }

    /// Power loss: the process dies and the disk keeps what `policy` says of its unsynced writes.
    pub fn power_off(&mut self, index: usize, policy: CrashPolicy<'_>) {
        let member = &mut self.members[index];
        if member.state == MemberState::Paused {
            self.handle.resume(member.node.id());
        }
        self.handle.kill(member.node.id());
        member.disk.crash(policy);
        member.state = MemberState::Down;
    }

    /// Starts a member that is down again (a no-op if it runs).
    pub fn restart(&mut self, index: usize) {
        let member = &mut self.members[index];
        if member.state == MemberState::Down {
            self.handle.restart(member.node.id());
            member.state = MemberState::Up;
        }
    }

    /// Freezes a running member (a stop-the-world pause).
    pub fn pause(&mut self, index: usize) {
        let member = &mut self.members[index];
        if member.state == MemberState::Up {
            self.handle.pause(member.node.id());
            member.state = MemberState::Paused;
        }
    }

    /// Unfreezes a paused member.
    pub fn resume(&mut self, index: usize) {
        let member = &mut self.members[index];
        if member.state == MemberState::Paused {
            self.handle.resume(member.node.id());
            member.state = MemberState::Up;
        }
    }

    /// Drops every message from member `from` to member `to` until [`SimCluster::heal_network`].
    pub fn clog(&mut self, from: usize, to: usize) {
        if from != to && self.clogged.insert((from, to)) {
            NetSim::current().clog_link(self.members[from].node.id(), self.members[to].node.id());
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
            net.unclog_link(self.members[from].node.id(), self.members[to].node.id());
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
        for index in 0..self.members.len() {
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
            for index in 0..self.members.len() {
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
