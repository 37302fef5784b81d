//! One simulated world per seed, and nothing in it that depends on what ran before in the process.
//!
//! madsim seeds its own scheduler, network, clock and std's hash maps from the seed. One source it
//! does not reach: tokio's thread-local random generator, which picks the first branch of an
//! unbiased `select!` (openraft has some) and the slot a `tokio::sync::watch` waiter queues on (so the
//! order waiters wake in). tokio seeds it from a process-wide counter, so a world run after another
//! in the same process drew differently from one run first: a failing seed found inside a campaign
//! did not replay on its own, and two runs of one seed diverged (seen as the determinism checks
//! failing; tracked down by diffing the node logs of two runs, which first differ where two waiters
//! on openraft's metrics channel woke in the other order). [`run`] therefore runs the world inside a
//! tokio runtime seeded from the seed (`tokio::runtime::Builder::rng_seed`, behind
//! `--cfg tokio_unstable`), which reseeds that generator for as long as the world runs.

#[cfg(not(tokio_unstable))]
compile_error!("detcd-sim needs tokio's seeded runtime: build it with RUSTFLAGS=\"--cfg madsim --cfg tokio_unstable\"");

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Simulated time after which a world is declared hung.
pub const SIM_TIME_LIMIT: Duration = Duration::from_secs(600);

/// How often [`trace`] samples the world's random generator.
const TRACE_EVERY: Duration = Duration::from_millis(20);

/// Runs `world` to completion in a fresh simulated world seeded by `seed`, on the calling thread
/// (which must not have run a world before: std's hash map keys are per thread, and madsim seeds
/// them when the thread's first map is made).
pub fn run<F, T>(seed: u64, world: impl FnOnce() -> F) -> T
where
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut simulator = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    simulator.set_time_limit(SIM_TIME_LIMIT);
    let seeded = real_tokio::runtime::Builder::new_current_thread()
        .rng_seed(real_tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()))
        .build()
        .unwrap_or_else(|e| panic!("cannot build the seeded tokio context: {e}"));
    // The whole world runs inside one poll of this future. `unconstrained`: tokio's cooperative
    // budget must not apply, as it does not outside a tokio runtime.
    seeded.block_on(real_tokio::task::unconstrained(async move { simulator.block_on(world()) }))
}

/// One sample of a world's random generator: simulated nanoseconds, and the next draw. Every draw
/// (the scheduler's choices, latencies, the node's own) advances the generator, so equal samples
/// mean the same number of draws had been made by the same instant.
pub type Sample = (u128, u64);

/// Runs `world` as [`run`] does, with a probe that samples the random generator every
/// [`TRACE_EVERY`] of simulated time; answers the world's output and the samples. Two runs of one
/// seed must give identical samples: the first that differs says when the runs diverged.
pub fn trace<F, T>(seed: u64, world: impl FnOnce() -> F + Send + 'static) -> (T, Vec<Sample>)
where
    F: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let samples = Arc::new(Mutex::new(Vec::new()));
    let probe_samples = samples.clone();
    let thread = std::thread::Builder::new().name(format!("trace-seed-{seed}")).spawn(move || {
        run(seed, move || async move {
            let start = madsim::time::Instant::now();
            let probe = madsim::task::spawn(async move {
                loop {
                    madsim::time::sleep(TRACE_EVERY).await;
                    let draw: u64 = madsim::rand::random();
                    let mut samples = probe_samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    samples.push((start.elapsed().as_nanos(), draw));
                }
            });
            let output = world().await;
            probe.abort();
            output
        })
    });
    let output = match thread.map(|t| t.join()) {
        Ok(Ok(output)) => output,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => panic!("cannot start a thread for the simulated world: {e}"),
    };
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    (output, samples)
}
