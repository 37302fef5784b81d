//! The `detcd` binary: parse etcd's flags, run a member, stop cleanly on SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use detcd::config::{self, Command, DETCD_VERSION, ETCD_COMPAT_VERSION};
use detcd::storage::RealDisk;

/// mimalloc instead of glibc's malloc: under load, glibc's `_int_malloc`, `_int_free` and
/// `malloc_consolidate` took about a fifth of the leader's CPU (perf, 100 clients putting).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("ETCD_")).collect();
    let config = match config::parse(std::env::args().skip(1), &env) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Version) => {
            // A closed stdout (`detcd --version | head -1`) is not an error worth a panic.
            let _ =
                writeln!(std::io::stdout(), "detcd Version: {DETCD_VERSION}\netcd API Version: {ETCD_COMPAT_VERSION}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            let _ = write!(std::io::stdout(), "{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("detcd: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // With tokio's LIFO slot a connection's task, woken by the stream task that just finished a
    // response, runs right after it and writes that one response, though an applied batch holds
    // ~24 puts. Without it the connection task waits its turn while the batch's other streams
    // finish, and writes them together: 0.21 writev per put instead of 0.77 at 100 clients on 10
    // connections, ~15% less leader CPU per put, 1-client latency unchanged
    // (reports/bench-vs-etcd.md). Real builds get the cfg from .cargo/config.toml.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("detcd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(detcd::server::run(&config, Arc::new(RealDisk), shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("detcd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let level = match level {
        "panic" | "fatal" => "error",
        other => other,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},openraft=warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("detcd: cannot watch SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        biased;
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
