//! THE seam between the real world (tokio) and the simulator (madsim).
//!
//! Owns: spawning, time and randomness as the rest of the node sees them, and openraft's
//! [`AsyncRuntime`] adapter. Everything else imports these through this module, never from tokio or
//! madsim directly, so business logic never knows which world it runs in. `cfg(madsim)` may appear
//! here and in `storage` only.
//!
//! Depends on nothing else in the node.
//!
//! In the real world `tokio` is plain tokio (the `madsim-tokio` package re-exports it); under
//! `--cfg madsim` it is the simulator. openraft's `Instant` is implemented for tokio's `Instant`
//! only, so we keep that type in both worlds: madsim intercepts the clock, so `Instant::now()` reads
//! simulated time there.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::async_runtime::AsyncOneshotSendExt;
use openraft::{AsyncRuntime, OptionalSend, TokioInstant};

pub use tokio::task::spawn;

/// How long simulated disk work takes: drawn uniformly from this range (microseconds), so that a
/// crash can fall between a write being issued and its fsync returning.
#[cfg(madsim)]
const SIM_DISK_LATENCY_US: std::ops::Range<u64> = 100..1_500;

/// Runs blocking work (disk I/O) off the async workers: on tokio's blocking pool, or in the
/// simulator as a plain task that first waits a seeded disk latency.
pub async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    #[cfg(madsim)]
    let handle = tokio::task::spawn(async move {
        let span = SIM_DISK_LATENCY_US.end - SIM_DISK_LATENCY_US.start;
        sleep(Duration::from_micros(SIM_DISK_LATENCY_US.start + random_u64() % span)).await;
        f()
    });
    #[cfg(not(madsim))]
    let handle = tokio::task::spawn_blocking(f);
    match handle.await {
        Ok(value) => value,
        Err(e) => panic!("blocking task failed: {e}"),
    }
}

/// The monotonic clock used across the node.
pub type Instant = TokioInstant;

/// Sleeps for `duration` in the current world's time.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// The error of a future that did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// A future bounded by a deadline, nameable in both worlds.
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(out) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Bounds `future` by `duration`.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout { future: Box::pin(future), sleep: Box::pin(tokio::time::sleep(duration)) }
}

/// Bounds `future` by the instant `deadline`.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    let duration = deadline.saturating_duration_since(Instant::now());
    timeout(duration, future)
}

/// A random u64 from the world's generator (seeded and deterministic under madsim).
pub fn random_u64() -> u64 {
    #[cfg(madsim)]
    {
        madsim::rand::random()
    }
    #[cfg(not(madsim))]
    {
        rand::random()
    }
}

/// openraft's view of the runtime: spawning, time, randomness and oneshots.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct DetcdRuntime;

/// A oneshot sender for openraft.
pub struct OneshotSender<T>(tokio::sync::oneshot::Sender<T>);

impl<T> Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneshotSender")
    }
}

impl<T: OptionalSend> AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

/// The sleep future type of the current world.
pub type SleepFuture = tokio::time::Sleep;

#[cfg(not(madsim))]
type Rng = rand::rngs::ThreadRng;
#[cfg(madsim)]
type Rng = madsim::rand::GlobalRng;

impl AsyncRuntime for DetcdRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = SleepFuture;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = Rng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        #[cfg(madsim)]
        {
            tokio::time::sleep(deadline.saturating_duration_since(Instant::now()))
        }
        #[cfg(not(madsim))]
        {
            tokio::time::sleep_until(deadline)
        }
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        // madsim's JoinError never reports a panic (a panic aborts the simulation instead).
        #[cfg(madsim)]
        {
            let _ = join_error;
            false
        }
        #[cfg(not(madsim))]
        {
            join_error.is_panic()
        }
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        #[cfg(madsim)]
        {
            madsim::rand::thread_rng()
        }
        #[cfg(not(madsim))]
        {
            rand::thread_rng()
        }
    }

    fn oneshot<T: OptionalSend>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OneshotSender(tx), rx)
    }
}
