//! `watch-latency`: `--watchers` watchers of one key, spread round-robin over `--streams` Watch
//! streams (and the streams over the connections), and one putter writing that key at
//! `--put-rate` puts per second, `--put-total` times. An event's latency is the time from its put's
//! response reaching the putter to the event reaching a watcher's stream (zero if the event came
//! first); events and puts are matched by revision.
//!
//! The run ends when every watcher has seen every successful put, or when no event has arrived for
//! `--timeout` after the last put; events still missing then count as failures. Puts by anyone else
//! on the key are ignored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::watch_client::WatchClient;
use detcd_proto::etcdserverpb::watch_request::RequestUnion;
use detcd_proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest};
use detcd_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::{put, Report};
use crate::driver::RequestError;
use crate::keys::Keys;
use crate::options::{Options, WatchLatency};
use crate::progress::Progress;
use crate::summary::{ErrorCounts, Summary};
use crate::Error;

/// Arrivals queued from the streams to the collector.
const ARRIVALS_QUEUE_MAX: usize = 4096;
/// Create requests queued on one stream.
const WATCH_REQUESTS_QUEUE_MAX: usize = 16;

/// What a stream's task tells the collector.
enum Arrival {
    /// All of the stream's watchers are created.
    Ready,
    /// A put event on the key, at the time its response reached the stream.
    Event { revision: i64, at: Instant },
    /// The stream failed; no more arrivals from it.
    Failed(RequestError),
}

/// What the putter did.
struct Puts {
    /// When each successful put's response arrived, by its revision.
    done_at: HashMap<i64, Instant>,
    summary: Summary,
}

pub async fn run(options: &Options, channels: &[Channel], spec: &WatchLatency) -> Result<Report, Error> {
    assert!(spec.streams >= 1 && spec.streams <= spec.watchers);
    let key = Keys::new(options.key_size, options.key_space_size, options.sequential_keys).name(0);
    let (arrivals_in, mut arrivals) = mpsc::channel(ARRIVALS_QUEUE_MAX);
    for s in 0..spec.streams {
        let watchers = spec.watchers / spec.streams + usize::from(s < spec.watchers % spec.streams);
        let client = WatchClient::new(channels[s % channels.len()].clone());
        let stream = follow(client, key.clone(), watchers, options.timeout, arrivals_in.clone());
        tokio::spawn(async move {
            if let Err((error, arrivals)) = stream.await {
                let _ = arrivals.send(Arrival::Failed(error)).await;
            }
        });
    }
    drop(arrivals_in);
    wait_ready(&mut arrivals, spec.streams, options.timeout).await?;

    let progress = Progress::start(spec.watchers as u64 * spec.put_total);
    let started = Instant::now();
    let kv = KvClient::new(channels[0].clone());
    let putting = tokio::spawn(put_paced(kv, key, put::value(options.val_size), *spec, options.timeout));
    let (events, stream_errors, puts) =
        collect(&mut arrivals, putting, spec.watchers, options.timeout, &progress).await;
    progress.finish();
    drop(arrivals); // ends the streams

    let mut errors = stream_errors;
    for (label, count) in puts.summary.errors().iter() {
        errors.add_n(format!("put: {label}"), count);
    }
    let mut latencies = Vec::with_capacity(events.len());
    let mut last = started;
    for (revision, at) in events {
        if let Some(done) = puts.done_at.get(&revision) {
            latencies.push(at.saturating_duration_since(*done));
            last = last.max(at);
        }
    }
    let expected = spec.watchers as u64 * puts.done_at.len() as u64;
    let missing = expected.saturating_sub(latencies.len() as u64);
    errors.add_n(format!("watch event not received within {:?} (--timeout)", options.timeout), missing);
    let watch = Summary::new(latencies, errors, last.duration_since(started));
    Ok(Report { before: vec![("Put summary", puts.summary)], main: ("Watch latency summary", watch) })
}

/// Waits until every stream has created its watchers.
async fn wait_ready(arrivals: &mut mpsc::Receiver<Arrival>, streams: usize, timeout: Duration) -> Result<(), Error> {
    let mut ready = 0;
    while ready < streams {
        match tokio::time::timeout(timeout, arrivals.recv()).await {
            Ok(Some(Arrival::Ready)) => ready += 1,
            Ok(Some(Arrival::Event { .. })) => {} // someone else's put before the run
            Ok(Some(Arrival::Failed(error))) => return Err(Error::Setup(format!("Watch failed: {}", error.label()))),
            Ok(None) => return Err(Error::Setup("every watch stream ended before its watchers were created".into())),
            Err(_) => {
                return Err(Error::Setup(format!("{} of {streams} watch streams ready after {timeout:?}", ready)));
            }
        }
    }
    Ok(())
}

/// Gathers arrivals until every watcher has seen every successful put, every stream is gone, or
/// the putter is done and nothing arrived for `timeout`.
async fn collect(
    arrivals: &mut mpsc::Receiver<Arrival>,
    mut putting: tokio::task::JoinHandle<Puts>,
    watchers: usize,
    timeout: Duration,
    progress: &Progress,
) -> (Vec<(i64, Instant)>, ErrorCounts, Puts) {
    let mut events = Vec::new();
    let mut errors = ErrorCounts::default();
    let mut puts: Option<Puts> = None;
    let mut matched = 0u64;
    loop {
        if puts.as_ref().is_some_and(|p| matched >= watchers as u64 * p.done_at.len() as u64) {
            break;
        }
        tokio::select! {
            arrival = arrivals.recv() => match arrival {
                Some(Arrival::Event { revision, at }) => {
                    events.push((revision, at));
                    progress.tick();
                    matched += u64::from(puts.as_ref().is_some_and(|p| p.done_at.contains_key(&revision)));
                }
                Some(Arrival::Failed(error)) => errors.add(error.label()),
                Some(Arrival::Ready) => {}
                None => break,
            },
            joined = &mut putting, if puts.is_none() => {
                let done = joined.unwrap_or_else(|join_error| std::panic::resume_unwind(join_error.into_panic()));
                matched = events.iter().filter(|(revision, _)| done.done_at.contains_key(revision)).count() as u64;
                puts = Some(done);
            }
            _ = tokio::time::sleep(timeout), if puts.is_some() => break,
        }
    }
    let puts = match puts {
        Some(puts) => puts,
        None => putting.await.unwrap_or_else(|join_error| std::panic::resume_unwind(join_error.into_panic())),
    };
    (events, errors, puts)
}

/// Puts `key` `put_total` times, at most `put_rate` times a second, one at a time.
async fn put_paced(
    mut kv: KvClient<Channel>,
    key: Vec<u8>,
    value: Vec<u8>,
    spec: WatchLatency,
    timeout: Duration,
) -> Puts {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / spec.put_rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done_at = HashMap::with_capacity(spec.put_total as usize);
    let mut latencies = Vec::with_capacity(spec.put_total as usize);
    let mut errors = ErrorCounts::default();
    let started = Instant::now();
    for _ in 0..spec.put_total {
        ticks.tick().await;
        let put = PutRequest { key: key.clone(), value: value.clone(), ..PutRequest::default() };
        let start = Instant::now();
        match tokio::time::timeout(timeout, kv.put(put)).await {
            Ok(Ok(response)) => {
                let done = Instant::now();
                match &response.get_ref().header {
                    Some(header) => {
                        latencies.push(done - start);
                        done_at.insert(header.revision, done);
                    }
                    None => errors.add("PutResponse without a header".to_string()),
                }
            }
            Ok(Err(status)) => errors.add(RequestError::from(status).label()),
            Err(_) => errors.add(RequestError::Timeout(timeout).label()),
        }
    }
    Puts { done_at, summary: Summary::new(latencies, errors, started.elapsed()) }
}

/// Opens one Watch stream with `watchers` watchers of `key` and forwards its put events. Returns
/// when the collector is gone; on failure, hands `arrivals` back to report it.
async fn follow(
    mut client: WatchClient<Channel>,
    key: Vec<u8>,
    watchers: usize,
    timeout: Duration,
    arrivals: mpsc::Sender<Arrival>,
) -> Result<(), (RequestError, mpsc::Sender<Arrival>)> {
    let (requests, queue) = mpsc::channel(WATCH_REQUESTS_QUEUE_MAX);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest { key: key.clone(), ..Default::default() })),
    };
    // The server sends the stream's headers with its first answer, so the creates go out before
    // the stream is awaited; the sender then holds the request side open until the call ends.
    tokio::spawn(async move {
        for _ in 0..watchers {
            if requests.send(create.clone()).await.is_err() {
                return;
            }
        }
        requests.closed().await;
    });
    let opened = match tokio::time::timeout(timeout, client.watch(ReceiverStream::new(queue))).await {
        Ok(Ok(response)) => response,
        Ok(Err(status)) => return Err((status.into(), arrivals)),
        Err(_) => return Err((RequestError::Timeout(timeout), arrivals)),
    };
    let mut responses = opened.into_inner();
    let mut created = 0;
    loop {
        let message = tokio::select! {
            message = responses.message() => message,
            () = arrivals.closed() => return Ok(()),
        };
        let at = Instant::now();
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return Err((RequestError::Unexpected("watch stream ended".into()), arrivals)),
            Err(status) => return Err((status.into(), arrivals)),
        };
        if response.canceled {
            let why = format!("watch canceled: {}", response.cancel_reason);
            return Err((RequestError::Unexpected(why), arrivals));
        }
        if response.created {
            created += 1;
            if created == watchers && arrivals.send(Arrival::Ready).await.is_err() {
                return Ok(());
            }
        }
        for event in response.events.iter().filter(|e| e.r#type == EventType::Put as i32) {
            let Some(kv) = event.kv.as_ref().filter(|kv| kv.key == key) else { continue };
            if arrivals.send(Arrival::Event { revision: kv.mod_revision, at }).await.is_err() {
                return Ok(());
            }
        }
    }
}
