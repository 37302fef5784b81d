//! A scenario = cluster shape + workload + nemesis plan + checks, all drawn from one seed; some
//! add watcher clients and lease clients.
//!
//! [`run_seed`] builds a fresh madsim runtime for the seed, starts the cluster, runs the clients
//! and the nemesis together, heals everything, waits for the members to converge (and, with lease
//! clients, for every lease to have expired), reads the final state from every member, stops the
//! watchers after a last progress request, and judges the recorded history, watch streams and
//! leases. The same seed gives the same history
//! (its hash is part of the [`RunReport`]).

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as WallInstant};

use detcd::planted::Bug;
use detcd_chaos::history::{History, Outcome, Recorder, Request, Response};
use detcd_chaos::lease::LeaseRecorder;
use detcd_chaos::plan::{Plan, ScenarioFn};
use detcd_chaos::rng::Rng;
use detcd_chaos::watch::WatchRecorder;
use detcd_chaos::workload::{ClientWorkload, WorkloadKind, KEY_PREFIX, KEY_PREFIX_END};

use crate::checks::{Lines, Records};
use crate::client::{self, now_ns};
use crate::cluster::{client_url, ClusterOptions, Endpoints, SimCluster};
use crate::lease_client::{self, LeaseClientConfig, LeasePuts, LeaseRecords};
use crate::nemesis::Nemesis;
use crate::watcher::{StartFrom, WatchSpec, Watcher};

/// How long the cluster may take to elect its first leader.
const BOOT_LIMIT: Duration = Duration::from_secs(30);
/// How long the cluster may take to converge after every fault is healed.
const CONVERGE_LIMIT: Duration = Duration::from_secs(60);
/// The longest a lease can be renewed after its client stopped: a keepalive forwarded to the leader
/// is answered within the members' request timeout (5 s + 2 election timeouts).
const RENEWAL_LAG_MAX: Duration = Duration::from_secs(7);
/// What a new leader adds to every lease (one election timeout), and the leader's expiry scan and
/// revoke on top.
const EXPIRY_LAG_MAX: Duration = Duration::from_secs(3);
/// Time between a watcher's progress requests (ms).
const PROGRESS_MS: (u64, u64) = (300, 1_500);
/// Lifetime of a watch stream before its watcher moves on to another member (ms).
const WATCH_LIFETIME_MS: (u64, u64) = (2_000, 8_000);
/// When a watcher that replays history starts (ms after the clients).
const REPLAY_DELAY_MS: (u64, u64) = (1_000, 8_000);

/// One named scenario.
#[derive(Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub cluster: ClusterOptions,
    pub clients: u32,
    pub workload: WorkloadKind,
    /// Generates the nemesis plan from the seed.
    pub plan: ScenarioFn,
    /// How long clients run and the nemesis acts (simulated).
    pub duration: Duration,
    /// Planted bugs (empty for a correct node).
    pub bugs: &'static [Bug],
    /// Watcher clients (see [`crate::watcher`]).
    pub watchers: u32,
    /// Lease clients (see [`crate::lease_client`]).
    pub lease_clients: u32,
}

/// What one seed of a scenario did and found.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub scenario: &'static str,
    pub seed: u64,
    pub ops: usize,
    pub ok_ops: usize,
    pub indeterminate_ops: usize,
    pub faults: usize,
    pub sim_time: Duration,
    pub wall_time: Duration,
    /// Every check that failed, each with its explanation.
    pub violations: Vec<String>,
    /// A hash of the whole history: equal for equal seeds.
    pub history_hash: u64,
    /// The HTML page of the first violation's window, if any.
    pub html: Option<String>,
    /// The plan that ran, for failure reports.
    pub plan: String,
    /// How many operations failed or ended unknown, by reason.
    pub reasons: std::collections::BTreeMap<String, usize>,
    /// The whole history, for dumps of failures.
    pub history: History,
    /// Watch streams, leases and what clients noticed.
    pub records: Records,
    /// Every member's final state (name, revision, keys).
    pub states: Vec<crate::checks::FinalState>,
    /// Wall time spent checking the history (part of `wall_time`).
    pub check_time: Duration,
}

impl RunReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The command that replays `seed` of `scenario`.
pub fn replay_command(scenario: &str, seed: u64) -> String {
    format!(
        "RUSTFLAGS=\"--cfg madsim --cfg tokio_unstable\" CARGO_TARGET_DIR=target/madsim cargo run --release -p detcd-sim --bin detcd-campaign -- --scenario {scenario} --seed {seed} --seeds 1"
    )
}

/// Runs `seed` of `scenario` in a fresh simulated world ([`crate::world::run`]), on a fresh
/// thread: std's hash maps seed themselves from per-thread keys that advance with every map
/// created, so a world that shared a thread with an earlier one would hash (and iterate)
/// differently, and the seed would not replay.
pub fn run_seed(scenario: &Scenario, seed: u64) -> RunReport {
    let scenario = scenario.clone();
    let scenario_name = scenario.name;
    let wall = WallInstant::now();
    let world = std::thread::Builder::new().name(format!("{}-seed-{seed}", scenario.name)).spawn(move || {
        let mut report = crate::world::run(seed, move || async move { run_current(&scenario).await });
        let checking = WallInstant::now();
        report.html = crate::checks::judge(
            &report.history,
            &report.states,
            &report.records,
            &mut report.violations,
            report.scenario,
        );
        report.check_time = checking.elapsed();
        report.wall_time = wall.elapsed();
        report
    });
    match world.map(|handle| handle.join()) {
        Ok(Ok(report)) => report,
        Ok(Err(panic)) => RunReport::panicked(scenario_name, seed, &panic, wall.elapsed()),
        Err(e) => panic!("cannot start a thread for the simulated world: {e}"),
    }
}

impl RunReport {
    /// The report of a world that panicked: a member's invariant assertion (or the harness) failed.
    fn panicked(scenario: &'static str, seed: u64, panic: &Box<dyn std::any::Any + Send>, wall: Duration) -> Self {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string());
        RunReport {
            scenario,
            seed,
            ops: 0,
            ok_ops: 0,
            indeterminate_ops: 0,
            faults: 0,
            sim_time: Duration::ZERO,
            wall_time: wall,
            violations: vec![format!("the simulated world panicked (an invariant assertion failed): {message}")],
            history_hash: 0,
            html: None,
            plan: String::new(),
            reasons: std::collections::BTreeMap::new(),
            history: History::default(),
            records: Records::default(),
            states: Vec::new(),
            check_time: Duration::ZERO,
        }
    }
}

/// Runs `scenario` in the current simulated world, with the world's seed, up to the point of
/// judging: the report holds the history and final states, and the violations seen while running
/// (a cluster that did not converge, a member that stopped); [`run_seed`] adds the checks.
pub async fn run_current(scenario: &Scenario) -> RunReport {
    let seed = madsim::runtime::Handle::current().seed();
    detcd::planted::plant(scenario.bugs);
    let mut rng = Rng::new(seed ^ 0x6465_7463_6473_696d); // "detcdsim": plans differ from madsim's draws
    let plan = (scenario.plan)(&mut rng.fork(), scenario.cluster.members, scenario.duration.as_millis() as u64);
    let recorder = Recorder::new();
    let mut violations = Vec::new();
    let mut cluster = match SimCluster::start(&scenario.cluster) {
        Ok(cluster) => cluster,
        Err(e) => panic!("cannot start the simulated cluster: {e}"),
    };
    if let Err(e) = cluster.converge(BOOT_LIMIT).await {
        violations.push(format!("boot: {e}"));
    }
    let start = tokio::time::Instant::now();
    let until_ns = scenario.duration.as_nanos() as u64;
    let clients = spawn_clients(scenario, cluster.endpoints(), &recorder, &mut rng, start, until_ns);
    let extras = Extras::default();
    let watchers = spawn_watchers(scenario, &extras, &mut rng, start);
    let lease_clients = spawn_lease_clients(scenario, &recorder, &extras, &mut rng, start, until_ns);
    let faults = {
        let mut nemesis = Nemesis::new(&mut cluster, recorder.clone(), rng.fork(), start);
        nemesis.run(&plan).await;
        tokio::time::sleep_until(start + scenario.duration).await;
        nemesis.heal_all();
        nemesis.injected
    };
    for client in clients.into_iter().chain(lease_clients) {
        let _ = client.await;
    }
    let run = Run { seed, recorder, start, faults, plan, violations, extras, watchers };
    finish(scenario, &mut cluster, run).await
}

/// What the clients record besides the KV history, and the signal that stops the watchers.
struct Extras {
    watches: WatchRecorder,
    leases: LeaseRecorder,
    lease_puts: LeasePuts,
    findings: Lines,
    journal: Lines,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Default for Extras {
    fn default() -> Self {
        Extras {
            watches: WatchRecorder::new(),
            leases: LeaseRecorder::new(),
            lease_puts: LeasePuts::default(),
            findings: Lines::default(),
            journal: Lines::default(),
            stop: tokio::sync::watch::Sender::new(false),
        }
    }
}

/// A run between its clients and its verdict.
struct Run {
    seed: u64,
    recorder: Recorder,
    start: tokio::time::Instant,
    faults: usize,
    plan: Plan,
    violations: Vec<String>,
    extras: Extras,
    watchers: Vec<madsim::task::JoinHandle<()>>,
}

fn members(scenario: &Scenario) -> Vec<(String, String)> {
    (0..scenario.cluster.members).map(|i| (format!("m{i}"), client_url(i))).collect()
}

/// A client host: `10.0.{subnet}.{index + 1}`.
fn client_host(name: String, subnet: u8, index: u32) -> madsim::runtime::NodeHandle {
    assert!(index < 250, "at most 250 hosts per client subnet");
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, subnet, index as u8 + 1));
    madsim::runtime::Handle::current().create_node().name(name).ip(ip).build()
}

fn spawn_clients(
    scenario: &Scenario,
    members: Endpoints,
    recorder: &Recorder,
    rng: &mut Rng,
    start: tokio::time::Instant,
    until_ns: u64,
) -> Vec<madsim::task::JoinHandle<()>> {
    let handle = madsim::runtime::Handle::current();
    (0..scenario.clients)
        .map(|c| {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1 + (c / 250) as u8, (c % 250) as u8 + 1));
            let host = handle.create_node().name(format!("client{c}")).ip(ip).build();
            let workload = ClientWorkload::new(scenario.workload, c, rng.fork());
            host.spawn(client::run(workload, members.clone(), c as usize, recorder.clone(), start, until_ns))
        })
        .collect()
}

/// What a watcher watches, drawn: the workload's whole range or one key (a workload key or a lease
/// key), from now or from a past revision, with or without previous key-values and `hasleader`.
fn watch_spec(rng: &mut Rng) -> WatchSpec {
    let (start, end) = match rng.below(10) {
        0..=5 => (KEY_PREFIX.to_string(), KEY_PREFIX_END.to_string()),
        6..=7 => (detcd_chaos::workload::key_name(rng.index(4)), String::new()),
        _ => (lease_client::lease_key(rng.index(lease_client::LEASE_KEYS)), String::new()),
    };
    let from = if rng.chance(0.5) { StartFrom::Now } else { StartFrom::Past { delay_ms: REPLAY_DELAY_MS } };
    WatchSpec {
        start,
        end,
        from,
        prev_kv: rng.chance(0.5),
        require_leader: rng.chance(0.3),
        progress_ms: PROGRESS_MS,
        lifetime_ms: WATCH_LIFETIME_MS,
    }
}

/// Watcher clients are `clients + 1 ..` (after the final read's), on `10.0.3.x`.
fn spawn_watchers(
    scenario: &Scenario,
    extras: &Extras,
    rng: &mut Rng,
    start: tokio::time::Instant,
) -> Vec<madsim::task::JoinHandle<()>> {
    let members = members(scenario);
    (0..scenario.watchers)
        .map(|w| {
            let host = client_host(format!("watcher{w}"), 3, w);
            let mut rng = rng.fork();
            let watcher = Watcher {
                spec: watch_spec(&mut rng),
                client: scenario.clients + 1 + w,
                members: members.clone(),
                first: w as usize,
                rng,
                recorder: extras.watches.clone(),
                findings: extras.findings.clone(),
                start,
            };
            host.spawn(watcher.run(extras.stop.subscribe()))
        })
        .collect()
}

/// Lease clients are numbered after the watchers, on `10.0.4.x`.
fn spawn_lease_clients(
    scenario: &Scenario,
    recorder: &Recorder,
    extras: &Extras,
    rng: &mut Rng,
    start: tokio::time::Instant,
    until_ns: u64,
) -> Vec<madsim::task::JoinHandle<()>> {
    let members = members(scenario);
    (0..scenario.lease_clients)
        .map(|l| {
            let host = client_host(format!("lessee{l}"), 4, l);
            let config = LeaseClientConfig {
                client: scenario.clients + 1 + scenario.watchers + l,
                members: members.clone(),
                first: l as usize,
                start,
                until_ns,
            };
            let records = LeaseRecords {
                history: recorder.clone(),
                leases: extras.leases.clone(),
                puts: extras.lease_puts.clone(),
                findings: extras.findings.clone(),
                journal: extras.journal.clone(),
            };
            host.spawn(lease_client::run(config, rng.fork(), records))
        })
        .collect()
}

async fn finish(scenario: &Scenario, cluster: &mut SimCluster, run: Run) -> RunReport {
    let Run { seed, recorder, start, faults, plan, mut violations, extras, watchers } = run;
    if let Err(e) = cluster.converge(CONVERGE_LIMIT).await {
        violations.push(format!("after healing: {e}"));
    }
    if scenario.lease_clients > 0 {
        for index in cluster.active() {
            if let Some(status) = cluster.status(index).await {
                extras.journal.push(format!("member {} has id {:x}", cluster.name(index), status.member_id));
            }
        }
    }
    let leases = if scenario.lease_clients > 0 {
        drain_leases(cluster, start, scenario, &mut violations).await
    } else {
        Vec::new()
    };
    final_read(cluster, &recorder, start, scenario.clients).await;
    let mut states = Vec::new();
    for index in cluster.active() {
        match cluster.local_state(index).await {
            Ok((revision, kvs)) => states.push((cluster.name(index).to_string(), revision, kvs)),
            Err(e) => violations.push(format!("final state: {e}")),
        }
    }
    extras.stop.send_replace(true);
    for watcher in watchers {
        let _ = watcher.await;
    }
    for exit in cluster.exits() {
        violations.push(format!("a member stopped on its own: {exit}"));
    }
    let history = recorder.finish(now_ns(start));
    let records = Records {
        watches: extras.watches.finish(),
        leases: extras.leases.finish(),
        lease_puts: extras.lease_puts.finish(),
        findings: extras.findings.finish(),
        journal: extras.journal.finish(),
    };
    if scenario.lease_clients > 0 {
        crate::checks::leases_drained(&leases, &states, &records.lease_puts, &mut violations);
    }
    RunReport {
        scenario: scenario.name,
        seed,
        ops: history.ops.len(),
        ok_ops: history.ops.iter().filter(|op| matches!(op.outcome, Outcome::Ok(_))).count(),
        indeterminate_ops: history.ops.iter().filter(|op| matches!(op.outcome, Outcome::Indeterminate { .. })).count(),
        faults,
        sim_time: start.elapsed(),
        wall_time: Duration::ZERO,
        violations,
        history_hash: history_hash(&history, &records),
        html: None,
        states,
        check_time: Duration::ZERO,
        plan: plan.to_string(),
        reasons: reasons(&history),
        history,
        records,
    }
}

/// Waits until every lease must have expired (its client stopped renewing, the longest renewal
/// lag, the longest TTL, a new leader's extension and the expiry scan), lets the cluster converge,
/// and lists every member's leases.
async fn drain_leases(
    cluster: &SimCluster,
    start: tokio::time::Instant,
    scenario: &Scenario,
    violations: &mut Vec<String>,
) -> Vec<(String, Vec<i64>)> {
    let ttl_max = Duration::from_secs(lease_client::TTL_S.1);
    let renewed_by = (start + scenario.duration + RENEWAL_LAG_MAX).max(tokio::time::Instant::now());
    tokio::time::sleep_until(renewed_by + ttl_max + EXPIRY_LAG_MAX).await;
    if let Err(e) = cluster.converge(CONVERGE_LIMIT).await {
        violations.push(format!("after the leases' expiry: {e}"));
    }
    let mut leases = Vec::new();
    for index in cluster.active() {
        match cluster.leases(index).await {
            Ok(ids) => leases.push((cluster.name(index).to_string(), ids)),
            Err(e) => violations.push(format!("lease list: {e}")),
        }
    }
    leases
}

/// One linearizable read of every workload key, recorded as an operation of its own client, so
/// the linearizability check covers the final state too (a lost write shows there).
async fn final_read(cluster: &SimCluster, recorder: &Recorder, start: tokio::time::Instant, client: u32) {
    for index in cluster.active() {
        let request = Request::Range {
            start: detcd_chaos::workload::KEY_PREFIX.to_string(),
            end: detcd_chaos::workload::KEY_PREFIX_END.to_string(),
        };
        let handle = recorder.invoke(client, cluster.name(index), request.clone(), now_ns(start));
        let outcome = match cluster.read(index, &request).await {
            Ok(response @ Response::Range { .. }) => Outcome::Ok(response),
            Ok(other) => Outcome::Fail { reason: format!("unexpected response {other:?}") },
            Err(e) => Outcome::Fail { reason: e },
        };
        recorder.complete(handle, outcome, now_ns(start));
    }
}

fn reasons(history: &History) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for op in &history.ops {
        let reason = match &op.outcome {
            Outcome::Ok(_) => continue,
            Outcome::Fail { reason } => format!("fail: {reason}"),
            Outcome::Indeterminate { reason } => format!("unknown: {reason}"),
        };
        *counts.entry(reason).or_insert(0) += 1;
    }
    counts
}

/// A hash of everything a run recorded: equal seeds must give equal hashes.
pub fn history_hash(history: &History, records: &Records) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    history.hash(&mut hasher);
    records.hash(&mut hasher);
    hasher.finish()
}
