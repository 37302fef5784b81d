//! A scenario = cluster shape + workload + nemesis plan + checks, all drawn from one seed.
//!
//! [`run_seed`] builds a fresh madsim runtime for the seed, starts the cluster, runs the clients
//! and the nemesis together, heals everything, waits for the members to converge, reads the final
//! state from every member, and judges the recorded history. The same seed gives the same history
//! (its hash is part of the [`RunReport`]).

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as WallInstant};

use detcd::planted::Bug;
use detcd_chaos::history::{History, Outcome, Recorder, Request, Response};
use detcd_chaos::plan::{Plan, ScenarioFn};
use detcd_chaos::rng::Rng;
use detcd_chaos::workload::{ClientWorkload, WorkloadKind};

use crate::client::{self, now_ns};
use crate::cluster::{client_url, ClusterOptions, SimCluster};
use crate::nemesis::Nemesis;

/// How long the cluster may take to elect its first leader.
const BOOT_LIMIT: Duration = Duration::from_secs(30);
/// How long the cluster may take to converge after every fault is healed.
const CONVERGE_LIMIT: Duration = Duration::from_secs(60);
/// Simulated time after which a run is declared hung.
const SIM_TIME_LIMIT: Duration = Duration::from_secs(600);

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
        "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo run --release -p detcd-sim --bin detcd-campaign -- --scenario {scenario} --seed {seed} --seeds 1"
    )
}

/// Runs `seed` of `scenario` in a fresh simulated world, on a fresh thread: std's hash maps seed
/// themselves from per-thread keys that advance with every map created, so a world that shared a
/// thread with an earlier one would hash (and iterate) differently, and the seed would not replay.
pub fn run_seed(scenario: &Scenario, seed: u64) -> RunReport {
    let scenario = scenario.clone();
    let scenario_name = scenario.name;
    let wall = WallInstant::now();
    let world = std::thread::Builder::new().name(format!("{}-seed-{seed}", scenario.name)).spawn(move || {
        let mut runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        runtime.set_time_limit(SIM_TIME_LIMIT);
        let mut report = runtime.block_on(async move { run_current(&scenario).await });
        let checking = WallInstant::now();
        report.html = crate::checks::judge(&report.history, &report.states, &mut report.violations, report.scenario);
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
    let clients = spawn_clients(scenario, &recorder, &mut rng, start, until_ns);
    let faults = {
        let mut nemesis = Nemesis::new(&mut cluster, recorder.clone(), rng.fork(), start);
        nemesis.run(&plan).await;
        tokio::time::sleep_until(start + scenario.duration).await;
        nemesis.heal_all();
        nemesis.injected
    };
    for client in clients {
        let _ = client.await;
    }
    finish(scenario, seed, &mut cluster, &recorder, start, faults, plan, violations).await
}

fn spawn_clients(
    scenario: &Scenario,
    recorder: &Recorder,
    rng: &mut Rng,
    start: tokio::time::Instant,
    until_ns: u64,
) -> Vec<madsim::task::JoinHandle<()>> {
    let handle = madsim::runtime::Handle::current();
    let members: Vec<(String, String)> =
        (0..scenario.cluster.members).map(|i| (format!("m{i}"), client_url(i))).collect();
    (0..scenario.clients)
        .map(|c| {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1 + (c / 250) as u8, (c % 250) as u8 + 1));
            let host = handle.create_node().name(format!("client{c}")).ip(ip).build();
            let workload = ClientWorkload::new(scenario.workload, c, rng.fork());
            host.spawn(client::run(workload, members.clone(), c as usize, recorder.clone(), start, until_ns))
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    scenario: &Scenario,
    seed: u64,
    cluster: &mut SimCluster,
    recorder: &Recorder,
    start: tokio::time::Instant,
    faults: usize,
    plan: Plan,
    mut violations: Vec<String>,
) -> RunReport {
    if let Err(e) = cluster.converge(CONVERGE_LIMIT).await {
        violations.push(format!("after healing: {e}"));
    }
    final_read(cluster, recorder, start, scenario.clients).await;
    let mut states = Vec::new();
    for index in 0..cluster.len() {
        match cluster.local_state(index).await {
            Ok((revision, kvs)) => states.push((cluster.name(index).to_string(), revision, kvs)),
            Err(e) => violations.push(format!("final state: {e}")),
        }
    }
    for exit in cluster.exits() {
        violations.push(format!("a member stopped on its own: {exit}"));
    }
    let history = recorder.finish(now_ns(start));
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
        history_hash: history_hash(&history),
        html: None,
        states,
        check_time: Duration::ZERO,
        plan: plan.to_string(),
        reasons: reasons(&history),
        history,
    }
}

/// One linearizable read of every workload key, recorded as an operation of its own client, so
/// the linearizability check covers the final state too (a lost write shows there).
async fn final_read(cluster: &SimCluster, recorder: &Recorder, start: tokio::time::Instant, client: u32) {
    for index in 0..cluster.len() {
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

/// A hash of everything in a history: equal seeds must give equal hashes.
pub fn history_hash(history: &History) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    history.hash(&mut hasher);
    hasher.finish()
}
