//! A watcher client: follows a key range (or one key) over etcd's Watch service and records every
//! response in a [`WatchRecorder`], one [`WatchStreamRecord`](detcd_chaos::watch::WatchStreamRecord)
//! per physical stream.
//!
//! Each stream carries exactly one watch. When a stream breaks (member killed, paused, no leader
//! for a `hasleader` watch, silence) or reaches the end of its drawn lifetime, the watcher moves to
//! the next member and creates the watch again from the revision after the last one it certainly
//! has (its last event, or a progress notification): the same resumption etcd's clients do. It
//! asks for progress now and then, so the checker has caught-up points, and once more when the run
//! stops.
//!
//! What the records cannot carry is checked here and reported as findings ([`Lines`]): the creation
//! response comes first and names the watch, events carry a key-value, and, for `prev_kv`
//! watchers, each event's previous key-value is the one this stream delivered last for that key
//! (streams are gap-free, so nothing came between), absent for a key's creation, and present for
//! every delete and every later version (nothing is compacted in these runs).

use std::collections::BTreeMap;
use std::time::Duration;

use detcd_chaos::rng::Rng;
use detcd_chaos::watch::{WatchEnd, WatchEvent, WatchEventKind, WatchHandle, WatchRecorder, WatchResponseRecord};
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::watch_client::WatchClient;
use detcd_proto::etcdserverpb::watch_request::RequestUnion;
use detcd_proto::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse};
use detcd_proto::mvccpb::{self, event::EventType};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::checks::Lines;
use crate::client::now_ns;

/// How long opening a stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);
/// A stream silent this long, though it was asked for progress, is given up.
const SILENCE_MAX: Duration = Duration::from_secs(3);
/// Pause before opening the next stream after one broke.
const BACKOFF: Duration = Duration::from_millis(200);
/// How long the last stream waits for the answer to its final progress request.
const FINAL_PROGRESS_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests one stream buffers (a create, then progress requests).
const REQUESTS_MAX: usize = 16;
/// gRPC metadata that makes the member cancel the stream when it loses its leader.
const REQUIRE_LEADER_KEY: &str = "hasleader";
/// etcd's watch id of a progress notification for the whole stream.
const STREAM_WATCH_ID: i64 = -1;

/// Where the first stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Revision 0: from now on.
    Now,
    /// After a delay drawn from `delay_ms`, from a revision drawn among those already written:
    /// the member replays history first.
    Past { delay_ms: (u64, u64) },
}

/// What one watcher watches and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    pub start: String,
    /// etcd's `range_end` (`""`: `start` alone).
    pub end: String,
    pub from: StartFrom,
    pub prev_kv: bool,
    /// Ask the member to cancel the stream when it has no leader (etcd's `WithRequireLeader`).
    pub require_leader: bool,
    /// Time between progress requests, drawn per request (ms).
    pub progress_ms: (u64, u64),
    /// Lifetime of one stream before the watcher moves on by itself (ms).
    pub lifetime_ms: (u64, u64),
}

/// One watcher's fixed context.
pub struct Watcher {
    pub spec: WatchSpec,
    pub client: u32,
    /// (name, client URL) of every member.
    pub members: Vec<(String, String)>,
    pub first: usize,
    pub rng: Rng,
    pub recorder: WatchRecorder,
    pub findings: Lines,
    /// The run's clock origin.
    pub start: Instant,
}

/// Why a stream ended, from the watcher's side.
enum Next {
    /// Move on to the next member.
    Rotate,
    /// The run is over.
    Stop,
}

/// The state of one physical stream.
#[derive(Default)]
struct Stream {
    responses: usize,
    watch_id: Option<i64>,
    /// The first revision the stream may deliver, once known.
    first: Option<i64>,
    /// Per key, what the last event of this stream left (`None`: deleted).
    last: BTreeMap<Vec<u8>, Option<mvccpb::KeyValue>>,
    /// Events of fragments not yet completed.
    fragments: Vec<mvccpb::Event>,
}

impl Watcher {
    /// Follows the spec until `stop` turns true.
    pub async fn run(mut self, mut stop: tokio::sync::watch::Receiver<bool>) {
        assert!(!self.members.is_empty(), "a watcher needs a member to talk to");
        let mut target = self.first % self.members.len();
        let mut resume = match self.spec.from {
            StartFrom::Now => 0,
            StartFrom::Past { delay_ms } => {
                let delay = Duration::from_millis(self.draw(delay_ms));
                tokio::select! {
                    biased;
                    () = stopped(&mut stop) => return,
                    () = tokio::time::sleep(delay) => {}
                }
                let current = current_revision(&self.members[target].1).await.unwrap_or(1);
                1 + self.rng.below(current.max(1) as u64) as i64
            }
        };
        loop {
            let (name, url) = self.members[target].clone();
            match self.follow(&name, &url, &mut resume, &mut stop).await {
                Next::Stop => return,
                Next::Rotate => target = (target + 1) % self.members.len(),
            }
            tokio::select! {
                biased;
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep(BACKOFF) => {}
            }
        }
    }

    fn draw(&mut self, (lo, hi): (u64, u64)) -> u64 {
        self.rng.range_inclusive(lo..=hi)
    }

    fn now(&self) -> u64 {
        now_ns(self.start)
    }

    /// One physical stream on `url`, from `resume` (updated as the stream proves progress).
    async fn follow(
        &mut self,
        name: &str,
        url: &str,
        resume: &mut i64,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Next {
        let start_revision = *resume;
        let (requests, queue) = mpsc::channel(REQUESTS_MAX);
        let create = WatchCreateRequest {
            key: self.spec.start.as_bytes().to_vec(),
            range_end: self.spec.end.as_bytes().to_vec(),
            start_revision,
            prev_kv: self.spec.prev_kv,
            ..Default::default()
        };
        // The channel is empty: the create always fits.
        let _ = requests.try_send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) });
        let queue = futures::stream::unfold(queue, |mut queue| async move { queue.recv().await.map(|r| (r, queue)) });
        let mut request = tonic::Request::new(queue);
        if self.spec.require_leader {
            request.metadata_mut().insert(REQUIRE_LEADER_KEY, tonic::metadata::MetadataValue::from_static("true"));
        }
        let handle = self.recorder.open(self.client, &self.spec.start, &self.spec.end, start_revision, self.now());
        let mut client = match tonic::transport::Endpoint::from_shared(url.to_string()) {
            Ok(endpoint) => WatchClient::new(endpoint.connect_lazy()),
            Err(e) => panic!("bad member URL {url}: {e}"),
        };
        let mut responses = match tokio::time::timeout(OPEN_TIMEOUT, client.watch(request)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return self.end(handle, failed(name, &status)),
            Err(_) => return self.end(handle, WatchEnd::Failed(format!("{name}: opening timed out"))),
        };
        let mut stream = Stream { first: (start_revision > 0).then_some(start_revision), ..Stream::default() };
        let lifetime_end = Instant::now() + Duration::from_millis(self.draw(self.spec.lifetime_ms));
        let mut next_progress = Instant::now() + Duration::from_millis(self.draw(self.spec.progress_ms));
        let mut heard = Instant::now();
        loop {
            let wake = next_progress.min(lifetime_end).min(heard + SILENCE_MAX);
            tokio::select! {
                biased;
                () = stopped(stop) => {
                    self.finish(handle, &mut stream, &requests, &mut responses, resume).await;
                    return Next::Stop;
                }
                message = responses.message() => match message {
                    Ok(Some(response)) => {
                        heard = Instant::now();
                        if let Some(end) = self.receive(handle, &mut stream, response, resume) {
                            return self.end(handle, end);
                        }
                    }
                    Ok(None) => return self.end(handle, WatchEnd::Failed(format!("{name}: the stream ended"))),
                    Err(status) => return self.end(handle, failed(name, &status)),
                },
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= heard + SILENCE_MAX {
                        let why = format!("{name}: silent for {SILENCE_MAX:?}");
                        return self.end(handle, WatchEnd::Failed(why));
                    }
                    if now >= lifetime_end {
                        return self.end(handle, WatchEnd::StillOpen);
                    }
                    if now >= next_progress {
                        // A full queue means the member is not reading: silence will tell.
                        let _ = requests.try_send(progress_request());
                        next_progress = now + Duration::from_millis(self.draw(self.spec.progress_ms));
                    }
                }
            }
        }
    }

    fn end(&self, handle: WatchHandle, how: WatchEnd) -> Next {
        self.recorder.end(handle, how);
        Next::Rotate
    }

    /// The run is over: one last progress request, so the stream ends on a caught-up point.
    async fn finish(
        &self,
        handle: WatchHandle,
        stream: &mut Stream,
        requests: &mpsc::Sender<WatchRequest>,
        responses: &mut tonic::Streaming<WatchResponse>,
        resume: &mut i64,
    ) {
        let mut how = WatchEnd::StillOpen;
        if requests.try_send(progress_request()).is_ok() {
            let deadline = Instant::now() + FINAL_PROGRESS_TIMEOUT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(message) = tokio::time::timeout(left, responses.message()).await else { break };
                let Ok(Some(response)) = message else { break };
                let progress = is_progress(&response);
                if let Some(end) = self.receive(handle, stream, response, resume) {
                    how = end;
                    break;
                }
                if progress {
                    break;
                }
            }
        }
        self.recorder.end(handle, how);
    }

    /// Records one response; returns how the stream ended if it did.
    fn receive(
        &self,
        handle: WatchHandle,
        stream: &mut Stream,
        response: WatchResponse,
        resume: &mut i64,
    ) -> Option<WatchEnd> {
        let at = self.now();
        let index = stream.responses;
        self.check_watch_id(handle, stream, &response);
        if response.fragment {
            stream.fragments.extend(response.events);
            return None;
        }
        let mut events = std::mem::take(&mut stream.fragments);
        events.extend(response.events);
        let header_revision = response.header.as_ref().map_or(0, |h| h.revision);
        if index == 0 && response.created && stream.first.is_none() {
            stream.first = Some(header_revision + 1);
        }
        let recorded: Vec<WatchEvent> = events.iter().filter_map(|event| self.event(handle, stream, event)).collect();
        stream.responses += 1;
        let progress = index > 0 && recorded.is_empty() && !response.canceled && response.compact_revision == 0;
        let reached = match recorded.last() {
            Some(event) => Some(event.revision),
            None if progress || (index == 0 && *resume == 0 && !response.canceled) => Some(header_revision),
            None => None,
        };
        if let Some(revision) = reached {
            *resume = (*resume).max(revision + 1);
        }
        self.recorder.respond(
            handle,
            WatchResponseRecord {
                at,
                header_revision,
                events: recorded,
                compact_revision: response.compact_revision,
                canceled: response.canceled,
            },
        );
        if !response.canceled {
            return None;
        }
        Some(if response.compact_revision > 0 {
            *resume = (*resume).max(response.compact_revision);
            WatchEnd::Canceled { compact_revision: response.compact_revision }
        } else {
            WatchEnd::Failed(format!("canceled: {}", response.cancel_reason))
        })
    }

    /// The creation response comes first and names the watch; later ones carry its id (or the
    /// stream's, for progress).
    fn check_watch_id(&self, handle: WatchHandle, stream: &mut Stream, response: &WatchResponse) {
        let problem = match stream.watch_id {
            None if !response.created => Some("the first response is not the creation response".to_string()),
            None => {
                stream.watch_id = Some(response.watch_id);
                None
            }
            Some(_) if response.created => Some("a second creation response".to_string()),
            Some(id) if response.watch_id != id && response.watch_id != STREAM_WATCH_ID => {
                Some(format!("a response for watch id {} on the stream of watch {id}", response.watch_id))
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            self.findings.push(format!("watch stream {handle:?} (client {}): {problem}", self.client));
        }
    }

    /// Converts one event, checking its previous key-value first.
    fn event(&self, handle: WatchHandle, stream: &mut Stream, event: &mvccpb::Event) -> Option<WatchEvent> {
        let Some(kv) = &event.kv else {
            self.findings
                .push(format!("watch stream {handle:?} (client {}): an event without a key-value", self.client));
            return None;
        };
        let put = event.r#type == EventType::Put as i32;
        if self.spec.prev_kv {
            if let Err(problem) = check_prev_kv(stream, kv, put, event.prev_kv.as_ref()) {
                let key = String::from_utf8_lossy(&kv.key);
                self.findings.push(format!(
                    "watch stream {handle:?} (client {}, prev_kv): event on {key:?} at revision {}: {problem}",
                    self.client, kv.mod_revision
                ));
            }
        }
        stream.last.insert(kv.key.clone(), put.then(|| kv.clone()));
        let kind = if put {
            WatchEventKind::Put {
                value: String::from_utf8_lossy(&kv.value).into_owned(),
                create_revision: kv.create_revision,
                version: kv.version,
            }
        } else {
            WatchEventKind::Delete
        };
        Some(WatchEvent { revision: kv.mod_revision, key: String::from_utf8_lossy(&kv.key).into_owned(), kind })
    }
}

/// An event's previous key-value against what the stream delivered before (see the module docs).
fn check_prev_kv(
    stream: &Stream,
    kv: &mvccpb::KeyValue,
    put: bool,
    prev: Option<&mvccpb::KeyValue>,
) -> Result<(), String> {
    let show = |kv: Option<&mvccpb::KeyValue>| match kv {
        Some(kv) => format!(
            "{:?} (mod {}, create {}, version {})",
            String::from_utf8_lossy(&kv.value),
            kv.mod_revision,
            kv.create_revision,
            kv.version
        ),
        None => "none".to_string(),
    };
    if let Some(prev) = prev {
        if prev.key != kv.key || prev.mod_revision >= kv.mod_revision {
            return Err(format!("prev_kv {} is of another key or not older", show(Some(prev))));
        }
    }
    let same = |a: &mvccpb::KeyValue, b: &mvccpb::KeyValue| {
        (&a.value, a.mod_revision, a.create_revision, a.version)
            == (&b.value, b.mod_revision, b.create_revision, b.version)
    };
    match stream.last.get(&kv.key) {
        Some(last) => {
            let agrees = match (last, prev) {
                (Some(last), Some(prev)) => same(last, prev),
                (None, None) => true,
                _ => false,
            };
            if !agrees {
                let problem =
                    format!("prev_kv is {}, but this stream's last event left {}", show(prev), show(last.as_ref()));
                return Err(problem);
            }
        }
        None => {
            if let (Some(first), Some(prev)) = (stream.first, prev) {
                if prev.mod_revision >= first {
                    return Err(format!(
                        "prev_kv {} is at or after revision {first}, where the stream starts, but it delivered no event there",
                        show(Some(prev))
                    ));
                }
            }
        }
    }
    let created = put && kv.version == 1;
    match (created, prev) {
        (true, Some(_)) => Err(format!("creates the key, yet prev_kv is {}", show(prev))),
        (false, None) => Err("prev_kv is missing, though the key existed (nothing is compacted)".to_string()),
        _ => Ok(()),
    }
}

/// Resolves once the run is over.
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens once the run is over.
    let _ = stop.wait_for(|stop| *stop).await;
}

fn progress_request() -> WatchRequest {
    WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) }
}

fn is_progress(response: &WatchResponse) -> bool {
    response.events.is_empty() && !response.created && !response.canceled && !response.fragment
}

fn failed(name: &str, status: &tonic::Status) -> WatchEnd {
    WatchEnd::Failed(format!("{name}: {:?}: {}", status.code(), status.message()))
}

/// The member's current revision, by a serializable read (not part of the history: it only picks
/// a start revision).
async fn current_revision(url: &str) -> Option<i64> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).ok()?;
    let mut client = KvClient::new(endpoint.connect_lazy());
    let request = RangeRequest { key: vec![0], limit: 1, serializable: true, ..Default::default() };
    let reply = tokio::time::timeout(OPEN_TIMEOUT, client.range(request)).await.ok()?.ok()?;
    reply.into_inner().header.map(|h| h.revision)
}
