//! What the end-to-end benches share: an in-process detcd cluster and a put load against it.
//!
//! [`Cluster::start`] runs `n` members of one cluster, each the binary's own path
//! (`detcd::server::run` on a config parsed from etcd's flags, on the real disk) on loopback
//! ports, with a temp data dir each, all on one tokio runtime, and returns once every member
//! answers a put. [`Cluster::shutdown`] (or dropping it) stops every member, waits for each to
//! flush and exit, and removes the data dirs.
//!
//! [`PutLoad`] is detcd-bench's own closed loop (`detcd_benches::commands`): `clients` requests
//! in flight over `conns` gRPC connections spread round-robin over the members, opened once, so
//! that the time of a run is the time of its puts.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use detcd::config::{self, Config};
use detcd::storage::RealDisk;
use detcd_benches::commands::{self, Report};
use detcd_benches::options::{Command, Options, Output};
use detcd_benches::{connect, grpc};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a cluster may take to elect a leader and answer a put on every member.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between readiness probes.
const READY_RETRY: Duration = Duration::from_millis(100);
/// How long a member may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Key size, in bytes (etcd's benchmark default).
pub const KEY_BYTES: usize = 8;
/// Value size, in bytes (the value size of etcd's published benchmarks).
pub const VALUE_BYTES: usize = 256;
/// Distinct keys the puts cycle through.
const KEY_SPACE: u64 = 100_000;
/// Per-request timeout: a put slower than this fails the bench.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Samples per benchmark (criterion's minimum): each sample is thousands of fsynced puts.
const SAMPLES: usize = 10;
/// Warm-up time per benchmark.
const WARM_UP: Duration = Duration::from_secs(2);
/// Measuring time per benchmark.
const MEASUREMENT: Duration = Duration::from_secs(10);

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener.local_addr().expect("the bound address").port()
}

struct Member {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), String>>,
}

/// Members of one cluster, running in this process.
pub struct Cluster {
    runtime: Arc<Runtime>,
    members: Vec<Member>,
    /// Client URLs (`http://127.0.0.1:port`), member by member.
    pub endpoints: Vec<String>,
    data: Option<tempfile::TempDir>,
}

/// The configs of `size` members on fresh loopback ports, data dirs under `data`.
fn configs(size: usize, data: &std::path::Path) -> Vec<Config> {
    let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
    let initial_cluster: Vec<String> =
        ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
    let initial_cluster = initial_cluster.join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, (client, peer))| {
            let (client, peer) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
            let data_dir = data.join(format!("m{i}")).display().to_string();
            let args = [
                format!("--name=m{i}"),
                format!("--data-dir={data_dir}"),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-token=detcd-bench".to_string(),
            ];
            match config::parse(args, &BTreeMap::new()) {
                Ok(config::Command::Run(config)) => *config,
                other => panic!("member flags rejected: {other:?}"),
            }
        })
        .collect()
}

impl Cluster {
    /// Starts `size` members and waits until each answers a put.
    pub fn start(size: usize) -> Cluster {
        assert!(size >= 1, "a cluster has members");
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the tokio runtime"),
        );
        let data = tempfile::Builder::new().prefix("detcd-bench-").tempdir().expect("create a temp dir");
        let configs = configs(size, data.path());
        let endpoints = configs.iter().map(|c| c.advertise_client_urls[0].to_string()).collect();
        let members = configs
            .into_iter()
            .map(|config| {
                let (stop, stopped) = oneshot::channel::<()>();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let task =
                    runtime.spawn(async move { detcd::server::run(&config, Arc::new(RealDisk), shutdown).await });
                Member { stop, task }
            })
            .collect();
        let cluster = Cluster { runtime, members, endpoints, data: Some(data) };
        cluster.wait_ready();
        cluster
    }

    /// Waits until a put through every member succeeds.
    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for endpoint in &self.endpoints {
            let options = options(std::slice::from_ref(endpoint), 1, 1, 1);
            loop {
                let answered = self.runtime.block_on(commands::run(&Command::Put, &options));
                if answered.is_ok_and(|report| report.main.1.errors().total() == 0) {
                    break;
                }
                assert!(Instant::now() < deadline, "{endpoint} did not answer a put within {READY_TIMEOUT:?}");
                std::thread::sleep(READY_RETRY);
            }
        }
    }

    /// Opens a put load of `clients` concurrent requests over `conns` connections.
    pub fn put_load(&self, clients: usize, conns: usize) -> PutLoad {
        let options = options(&self.endpoints, clients, conns, 1);
        let connections = self.runtime.block_on(connect::connect_unary(&options)).expect("connect to the cluster");
        PutLoad { runtime: self.runtime.clone(), options, connections }
    }

    /// Stops every member, waits for each to exit cleanly, removes the data dirs.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let tasks: Vec<_> = self
            .members
            .drain(..)
            .map(|member| {
                let _ = member.stop.send(());
                member.task
            })
            .collect();
        for task in tasks {
            let exited = self.runtime.block_on(async { tokio::time::timeout(STOP_TIMEOUT, task).await });
            match exited {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("a member stopped with an error: {e}"),
                Ok(Err(e)) => panic!("a member's task failed: {e}"),
                Err(_) => panic!("a member did not stop within {STOP_TIMEOUT:?}"),
            }
        }
        if let Some(data) = self.data.take() {
            data.close().expect("remove the data dirs");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.members.is_empty() && !std::thread::panicking() {
            self.stop();
        }
    }
}

/// detcd-bench's options for a put load: 8-byte sequential keys, 256-byte values, JSON summary.
fn options(endpoints: &[String], clients: usize, conns: usize, total: u64) -> Options {
    Options {
        endpoints: endpoints.to_vec(),
        conns,
        clients,
        total,
        key_size: KEY_BYTES,
        val_size: VALUE_BYTES,
        sequential_keys: true,
        key_space_size: KEY_SPACE,
        timeout: REQUEST_TIMEOUT,
        output: Output::Json,
    }
}

/// Puts through open connections to a cluster.
pub struct PutLoad {
    runtime: Arc<Runtime>,
    options: Options,
    connections: Vec<grpc::Connection>,
}

impl PutLoad {
    /// Sends `total` puts through the closed loop; returns the wall time they took. Panics if any
    /// failed: a bench of failing requests measures nothing.
    pub fn run(&mut self, total: u64) -> Duration {
        self.options.total = total.max(1);
        let started = Instant::now();
        let report: Report =
            self.runtime.block_on(commands::run_on(&Command::Put, &self.options, &self.connections)).expect("put load");
        let elapsed = started.elapsed();
        let summary = &report.main.1;
        let failed: Vec<(&str, u64)> = summary.errors().iter().collect();
        assert!(failed.is_empty(), "puts failed: {failed:?}");
        elapsed
    }
}

/// Criterion's settings for these benches; the command line (`--measurement-time` ...) overrides them.
pub fn config() -> Criterion {
    Criterion::default().sample_size(SAMPLES).warm_up_time(WARM_UP).measurement_time(MEASUREMENT)
}

/// Benchmarks puts through a cluster of `size` members, one benchmark per entry of `clients`
/// (requests in flight), as group `group`. Throughput is in puts. The cluster starts on the first
/// benchmark that runs (none starts when a filter excludes them all) and stops at the end.
pub fn bench_puts(c: &mut Criterion, group: &str, size: usize, clients: &[usize]) {
    let mut cluster: Option<Cluster> = None;
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    for &clients in clients {
        // About ten requests in flight per connection, and every member reached when there are
        // enough clients, as scripts/bench-vs-etcd scales --conns.
        let conns = clients.div_ceil(10).max(size.min(clients));
        let mut load: Option<PutLoad> = None;
        group.bench_function(BenchmarkId::new("clients", clients), |b| {
            let load = load
                .get_or_insert_with(|| cluster.get_or_insert_with(|| Cluster::start(size)).put_load(clients, conns));
            b.iter_custom(|puts| load.run(puts));
        });
    }
    group.finish();
    if let Some(cluster) = cluster {
        cluster.shutdown();
    }
}
