//! Runs `--total` requests over `--clients` concurrent workers, one request in flight per worker,
//! and times each one: the closed loop of etcd's `benchmark`. Workers take request numbers from a
//! shared counter, so a slow worker does fewer; each keeps its own latencies and failures, merged
//! at the end, so the hot path shares nothing but that counter and the progress count.
//!
//! A request that takes longer than `--timeout` is dropped and counted as failed, so a dead or
//! hung endpoint ends the run instead of hanging it.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::progress::Progress;
use crate::summary::{ErrorCounts, Summary};

/// Why one request failed. [`RequestError::label`] is what the summary counts it under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// The server (or the transport) answered with a gRPC status.
    Status { code: tonic::Code, message: String },
    /// No answer within `--timeout`.
    Timeout(Duration),
    /// The answer was not what the request asked for (a stream ended, a lease is gone).
    Unexpected(String),
}

impl RequestError {
    /// `code = Unavailable desc = ...`, as etcd's Go tools print a status.
    pub fn label(&self) -> String {
        match self {
            RequestError::Status { code, message } => format!("code = {code:?} desc = {message}"),
            RequestError::Timeout(timeout) => format!("no response within {timeout:?} (--timeout)"),
            RequestError::Unexpected(what) => what.clone(),
        }
    }
}

impl From<tonic::Status> for RequestError {
    /// Keeps the status's message and, for a transport failure, its causes (tonic's own message is
    /// only "tcp connect error").
    fn from(status: tonic::Status) -> RequestError {
        let mut message = status.message().to_string();
        let mut source = std::error::Error::source(&status);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !message.contains(&cause_text) {
                message.push_str(": ");
                message.push_str(&cause_text);
            }
            source = cause.source();
        }
        RequestError::Status { code: status.code(), message }
    }
}

/// One client's connection state; it sends one request at a time.
pub trait Worker: Send + 'static {
    /// Sends request number `i` and waits for its response. The driver may drop the future at
    /// its timeout, so a worker must stay usable after that.
    fn request(&mut self, i: u64) -> impl Future<Output = Result<(), RequestError>> + Send;
}

/// Latencies and failures of one worker.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    errors: ErrorCounts,
}

/// Sends requests `0..total` through `workers`, each request given at most `timeout`.
pub async fn drive<W: Worker>(workers: Vec<W>, total: u64, timeout: Duration, progress: &Progress) -> Summary {
    assert!(!workers.is_empty(), "no workers");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let share = total / workers.len() as u64 + 1;
    let started = Instant::now();
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let (next, progress) = (next.clone(), progress.clone());
            tokio::spawn(async move {
                let mut samples = Samples { latencies: Vec::with_capacity(share as usize), ..Samples::default() };
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let start = Instant::now();
                    match tokio::time::timeout(timeout, worker.request(i)).await {
                        Ok(Ok(())) => samples.latencies.push(start.elapsed()),
                        Ok(Err(error)) => samples.errors.add(error.label()),
                        Err(_) => samples.errors.add(RequestError::Timeout(timeout).label()),
                    }
                    progress.tick();
                }
                samples
            })
        })
        .collect();
    let mut all = Samples { latencies: Vec::with_capacity(total as usize), ..Samples::default() };
    for task in tasks {
        match task.await {
            Ok(samples) => {
                all.latencies.extend(samples.latencies);
                all.errors.merge(samples.errors);
            }
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        }
    }
    let summary = Summary::new(all.latencies, all.errors, started.elapsed());
    assert_eq!(summary.successes() + summary.errors().total(), total, "every request is counted once");
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails every third request, times out request 4 (the worker sleeps), succeeds otherwise.
    struct Scripted;

    impl Worker for Scripted {
        async fn request(&mut self, i: u64) -> Result<(), RequestError> {
            match i {
                4 => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(())
                }
                i if i % 3 == 2 => Err(tonic::Status::unavailable("connection refused").into()),
                _ => Ok(()),
            }
        }
    }

    #[tokio::test]
    async fn every_request_is_counted_once_as_a_latency_or_an_error() {
        let progress = Progress::start(10);
        let summary = drive(vec![Scripted, Scripted, Scripted], 10, Duration::from_millis(50), &progress).await;
        assert_eq!(progress.done(), 10);
        let errors: Vec<(&str, u64)> = summary.errors().iter().collect();
        assert_eq!(
            errors,
            [("code = Unavailable desc = connection refused", 3), ("no response within 50ms (--timeout)", 1)]
        );
        assert_eq!(summary.successes(), 6);
    }
}
