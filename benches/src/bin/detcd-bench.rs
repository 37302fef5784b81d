//! `detcd-bench`: a load tool for any etcd v3 endpoint (detcd or etcd), in the style of etcd's
//! `benchmark` tool.
//!
//! `detcd-bench put --endpoints=127.0.0.1:2379 --clients=100 --total=100000 --key-size=8 --val-size=256`
//! prints the throughput and a latency summary (p50/p90/p99/p99.9/max).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::PutRequest;
use tokio::sync::Mutex;

/// Options shared by every subcommand.
struct Options {
    endpoints: Vec<String>,
    clients: usize,
    total: usize,
    key_size: usize,
    val_size: usize,
    sequential_keys: bool,
    key_space_size: usize,
}

fn parse(args: &[String]) -> Result<(String, Options), String> {
    let mut flags: BTreeMap<String, String> = BTreeMap::new();
    let mut command = None;
    for arg in args {
        match arg.strip_prefix("--") {
            Some(flag) => {
                let (name, value) = flag.split_once('=').unwrap_or((flag, "true"));
                flags.insert(name.to_string(), value.to_string());
            }
            None if command.is_none() => command = Some(arg.clone()),
            None => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let number = |name: &str, default: usize| -> Result<usize, String> {
        flags.get(name).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{name}: not a number: {v:?}")))
    };
    let options = Options {
        endpoints: flags
            .get("endpoints")
            .map_or("127.0.0.1:2379", String::as_str)
            .split(',')
            .map(str::to_string)
            .collect(),
        clients: number("clients", 1)?.max(1),
        total: number("total", 10_000)?,
        key_size: number("key-size", 8)?.max(1),
        val_size: number("val-size", 8)?,
        sequential_keys: flags.contains_key("sequential-keys"),
        key_space_size: number("key-space-size", 1)?.max(1),
    };
    let known = ["endpoints", "clients", "total", "key-size", "val-size", "sequential-keys", "key-space-size"];
    if let Some(unknown) = flags.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(format!("unknown flag --{unknown}"));
    }
    Ok((command.ok_or("usage: detcd-bench put [--endpoints=..] [--clients=N] [--total=N] ...")?, options))
}

/// The key for operation `i`, `key_size` bytes.
fn key(options: &Options, i: usize) -> Vec<u8> {
    let n = if options.sequential_keys {
        i % options.key_space_size
    } else {
        (i.wrapping_mul(2_654_435_761)) % options.key_space_size
    };
    let mut k = format!("{n:0width$}", width = options.key_size).into_bytes();
    k.truncate(options.key_size);
    k
}

async fn run_put(options: Arc<Options>) -> Result<Vec<Duration>, String> {
    let next = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for c in 0..options.clients {
        let endpoint = format!("http://{}", options.endpoints[c % options.endpoints.len()]);
        let mut client = KvClient::connect(endpoint.clone()).await.map_err(|e| format!("{endpoint}: {e}"))?;
        let (next, options) = (next.clone(), options.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let value = vec![b'v'; options.val_size];
            loop {
                let i = {
                    let mut n = next.lock().await;
                    if *n >= options.total {
                        break;
                    }
                    *n += 1;
                    *n - 1
                };
                let put = PutRequest { key: key(&options, i), value: value.clone(), ..Default::default() };
                let start = Instant::now();
                client.put(put).await.map_err(|e| e.to_string())?;
                latencies.push(start.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut all = Vec::with_capacity(options.total);
    for task in tasks {
        all.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).copied().unwrap_or_default()
}

fn report(mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("Summary:");
    println!("  Total:\t{:.4} secs.", elapsed.as_secs_f64());
    println!("  Requests:\t{}", latencies.len());
    println!("  Requests/sec:\t{:.1}", latencies.len() as f64 / elapsed.as_secs_f64());
    for (name, p) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
        println!("  {name}:\t{:.3} ms", ms(percentile(&latencies, p)));
    }
    println!("  max:\t{:.3} ms", ms(latencies.last().copied().unwrap_or_default()));
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, options) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("detcd-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("detcd-bench: cannot start the runtime");
        return ExitCode::FAILURE;
    };
    let options = Arc::new(options);
    let start = Instant::now();
    let result = match command.as_str() {
        "put" => runtime.block_on(run_put(options)),
        other => Err(format!("unknown command {other:?} (available: put)")),
    };
    match result {
        Ok(latencies) => {
            report(latencies, start.elapsed());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("detcd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
