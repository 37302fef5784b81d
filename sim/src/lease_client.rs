//! A lease client: grants leases, puts keys with them, keeps some alive over a LeaseKeepAlive
//! stream, lets others expire and revokes some, recording everything in a [`LeaseRecorder`]; its
//! key-value requests (puts with a lease, plain puts and deletes that detach, reads) are ordinary
//! operations of the KV [`Recorder`] history.
//!
//! Its keys, [`lease_key`], lie in the workload's range (`k`..`l`, so watchers and full ranges see
//! them) but no workload client names them: only this client writes them, one key per request, so
//! each is a partition of its own for the linearizability checker, and a lease's end deleting
//! several of them at one revision stays explainable key by key (see `checks::with_lease_ends`).
//!
//! What the lease checker needs is recorded as it asks: the grant's SEND time, keepalives only
//! once the grant was acknowledged (each with its send time, and the TTL answered or `None` when
//! the answer never came), a revoke as acknowledged when it answered or said "not found", every
//! acknowledged put with a lease as an attachment. Every (key, value) sent with a lease is also
//! listed, whatever its outcome, for the lease-end deletes.
//!
//! Two tasks share the client's host: [`run`] issues the requests one at a time (one history
//! client), and the keepalive task renews the leases it is handed until their keep-alive time is
//! up or they answer "not found".

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd_chaos::history::{Outcome, Recorder, Request, Response};
use detcd_chaos::lease::{KeepAliveRecord, LeaseHandle, LeaseRecorder, RevokeRecord};
use detcd_chaos::rng::Rng;
use detcd_chaos::workload::KEY_PREFIX;
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::lease_client::LeaseClient;
use detcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest, PutRequest, ResponseHeader,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Code;

use crate::checks::Lines;
use crate::client::{classify, now_ns, REQUEST_TIMEOUT};

/// Keys this client writes.
pub const LEASE_KEYS: usize = 6;
/// TTLs drawn for grants, in seconds (etcd's minimum with the simulator's timing is 2 s).
pub const TTL_S: (u64, u64) = (2, 6);
/// Leases the client holds at once, at most.
const LEASES_HELD_MAX: usize = 4;
/// Keys put with a new lease right after its grant.
const KEYS_PER_GRANT: (u64, u64) = (1, 3);
/// How long a kept lease is kept alive, in ms.
const KEEP_MS: (u64, u64) = (2_000, 10_000);
/// Pause between two requests, in ms.
const PAUSE_MS: (u64, u64) = (30, 300);
/// Pause after a failed request.
const BACKOFF: Duration = Duration::from_millis(100);
/// A keepalive unanswered this long breaks its stream.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(4);
/// Lifetime of one keepalive stream before the task moves on to the next member, in ms.
const KEEPALIVE_STREAM_MS: (u64, u64) = (2_000, 6_000);
/// How often the keepalive task looks for leases handed to it.
const KEEPALIVE_POLL: Duration = Duration::from_millis(100);
/// Keepalives one stream buffers.
const KEEPALIVE_QUEUE_MAX: usize = 64;

/// Lease key `index`: `klease-3`.
pub fn lease_key(index: usize) -> String {
    format!("{KEY_PREFIX}lease-{index}")
}

/// Every (key, value) sent with a lease. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LeasePuts(Arc<Mutex<Vec<(String, String)>>>);

impl LeasePuts {
    fn push(&self, key: &str, value: &str) {
        lock(&self.0).push((key.to_string(), value.to_string()));
    }

    /// The puts recorded so far, in sending order.
    pub fn finish(&self) -> Vec<(String, String)> {
        lock(&self.0).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the client means to do with a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Keep it alive until `until_ns`, then let it expire.
    Keep { until_ns: u64 },
    /// Never renew it.
    Expire,
    /// Revoke it at `at_ns` (kept alive until then if `keep`).
    Revoke { at_ns: u64, keep: bool },
}

/// A lease the client was granted.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: i64,
    handle: LeaseHandle,
    fate: Fate,
    /// After this, the client forgets it (it expired long ago).
    forget_ns: u64,
}

/// A lease the keepalive task renews.
#[derive(Debug, Clone, Copy)]
struct Kept {
    handle: LeaseHandle,
    ttl: i64,
    until_ns: u64,
    next_ns: u64,
}

/// Leases handed to the keepalive task, by id.
type KeptLeases = Arc<Mutex<BTreeMap<i64, Kept>>>;

/// Everything the lease client records into.
#[derive(Clone)]
pub struct LeaseRecords {
    pub history: Recorder,
    pub leases: LeaseRecorder,
    pub puts: LeasePuts,
    pub findings: Lines,
    /// Where each grant, keepalive and revoke went and who answered, for failure reports.
    pub journal: Lines,
}

/// The lease client's fixed context.
pub struct LeaseClientConfig {
    pub client: u32,
    /// (name, client URL) of every member.
    pub members: Vec<(String, String)>,
    pub first: usize,
    pub start: Instant,
    pub until_ns: u64,
}

/// Runs the client (and its keepalive task) until `until_ns`.
pub async fn run(config: LeaseClientConfig, mut rng: Rng, records: LeaseRecords) {
    assert!(!config.members.is_empty(), "a lease client needs a member to talk to");
    let kept: KeptLeases = Arc::default();
    let keepalive = KeepAlive {
        rng: rng.fork(),
        members: config.members.clone(),
        target: (config.first + 1) % config.members.len(),
        start: config.start,
        until_ns: config.until_ns,
        leases: records.leases.clone(),
        findings: records.findings.clone(),
        journal: records.journal.clone(),
        kept: kept.clone(),
    };
    let keepalive = madsim::task::spawn(keepalive.run());
    let mut client = Client {
        target: config.first % config.members.len(),
        config,
        rng,
        records,
        kv: None,
        lease: None,
        held: Vec::new(),
        writes: 0,
        kept,
    };
    client.run().await;
    let _ = keepalive.await;
}

struct Client {
    config: LeaseClientConfig,
    rng: Rng,
    records: LeaseRecords,
    target: usize,
    kv: Option<KvClient<Channel>>,
    lease: Option<LeaseClient<Channel>>,
    held: Vec<Held>,
    /// Values written so far (the `n` of `c{client}-{n}`).
    writes: u64,
    kept: KeptLeases,
}

impl Client {
    fn now(&self) -> u64 {
        now_ns(self.config.start)
    }

    fn draw(&mut self, (lo, hi): (u64, u64)) -> u64 {
        self.rng.range_inclusive(lo..=hi)
    }

    fn member(&self) -> String {
        self.config.members[self.target].0.clone()
    }

    /// After a failure: the next member, fresh connections, a pause.
    async fn fail_over(&mut self) {
        self.kv = None;
        self.lease = None;
        self.target = (self.target + 1) % self.config.members.len();
        tokio::time::sleep(BACKOFF).await;
    }

    async fn run(&mut self) {
        while self.now() < self.config.until_ns {
            let now = self.now();
            self.held.retain(|held| held.forget_ns > now);
            let due = self.held.iter().position(|held| matches!(held.fate, Fate::Revoke { at_ns, .. } if at_ns <= now));
            let ok = match due {
                Some(at) => {
                    let held = self.held.remove(at);
                    self.revoke(held).await
                }
                None => self.act().await,
            };
            if !ok {
                self.fail_over().await;
            }
            let pause = Duration::from_millis(self.draw(PAUSE_MS));
            tokio::time::sleep(pause).await;
        }
    }

    /// One request drawn at random; false if it failed.
    async fn act(&mut self) -> bool {
        let key = lease_key(self.rng.index(LEASE_KEYS));
        match self.rng.below(100) {
            0..=24 if self.held.len() < LEASES_HELD_MAX => self.grant().await,
            0..=59 => self.kv(Request::Get { key }).await,
            60..=74 if !self.held.is_empty() => {
                let held = *self.rng.pick(&self.held);
                self.put_with(held, key).await
            }
            60..=84 => {
                let value = self.fresh_value();
                self.kv(Request::Put { key, value }).await
            }
            85..=91 => self.kv(Request::Delete { key }).await,
            _ => {
                let (start, end) = (lease_key(0), format!("{KEY_PREFIX}lease."));
                self.kv(Request::Range { start, end }).await
            }
        }
    }

    fn fresh_value(&mut self) -> String {
        self.writes += 1;
        format!("c{}-{}", self.config.client, self.writes)
    }

    fn lease_client(&mut self) -> &mut LeaseClient<Channel> {
        let url = &self.config.members[self.target].1;
        self.lease.get_or_insert_with(|| LeaseClient::new(lazy_channel(url)))
    }

    fn kv_client(&mut self) -> &mut KvClient<Channel> {
        let url = &self.config.members[self.target].1;
        self.kv.get_or_insert_with(|| KvClient::new(lazy_channel(url)))
    }

    /// A plain request through the history; false if it failed.
    async fn kv(&mut self, request: Request) -> bool {
        let member = self.member();
        let handle = self.records.history.invoke(self.config.client, &member, request.clone(), self.now());
        let kv = self.kv_client();
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, crate::client::send(kv, &request)).await {
            Ok(Ok(response)) => Outcome::Ok(response),
            Ok(Err(status)) => classify(&request, &status),
            Err(_) if matches!(request, Request::Get { .. } | Request::Range { .. }) => {
                Outcome::Fail { reason: "timed out".to_string() }
            }
            Err(_) => Outcome::Indeterminate { reason: "timed out".to_string() },
        };
        let ok = matches!(outcome, Outcome::Ok(_));
        self.records.history.complete(handle, outcome, self.now());
        ok
    }

    /// Grants a lease, draws its fate and puts a few keys with it; false if a request failed.
    async fn grant(&mut self) -> bool {
        let ttl = self.draw(TTL_S) as i64;
        let sent_at = self.now();
        let request = LeaseGrantRequest { ttl, id: 0 };
        let lease = self.lease_client();
        let granted = match tokio::time::timeout(REQUEST_TIMEOUT, lease.lease_grant(request)).await {
            Ok(Ok(response)) => response.into_inner(),
            // It may have been granted: an unknown lease with no keys, which simply expires.
            Ok(Err(_)) | Err(_) => return false,
        };
        if !granted.error.is_empty() || granted.id <= 0 {
            self.records.findings.push(format!("lease grant answered {granted:?}"));
            return false;
        }
        let handle = self.records.leases.grant(granted.id, granted.ttl, sent_at);
        let now = self.now();
        self.records.journal.push(format!(
            "{} lease {}: granted for {}s, sent at {} via {}{}",
            seconds(now),
            granted.id,
            granted.ttl,
            seconds(sent_at),
            self.member(),
            header_text(granted.header.as_ref())
        ));
        let fate = match self.rng.below(100) {
            0..=39 => Fate::Keep { until_ns: now + self.draw(KEEP_MS) * 1_000_000 },
            40..=64 => Fate::Expire,
            _ => {
                let at_ns = now + self.draw((300, (granted.ttl as u64 + 2) * 1_000)) * 1_000_000;
                Fate::Revoke { at_ns, keep: self.rng.chance(0.5) }
            }
        };
        let keep_until_ns = match fate {
            Fate::Keep { until_ns } => Some(until_ns),
            Fate::Revoke { at_ns, keep: true } => Some(at_ns + 2_000_000_000),
            Fate::Revoke { keep: false, .. } | Fate::Expire => None,
        };
        let last_renewal_ns = keep_until_ns.unwrap_or(now).max(now);
        let forget_ns = last_renewal_ns + (granted.ttl as u64 + 4) * 1_000_000_000;
        let held = Held { id: granted.id, handle, fate, forget_ns };
        if let Some(until_ns) = keep_until_ns {
            let period_ns = keepalive_period_ns(granted.ttl);
            let kept = Kept { handle, ttl: granted.ttl, until_ns, next_ns: now + period_ns };
            lock(&self.kept).insert(granted.id, kept);
        }
        self.held.push(held);
        for _ in 0..self.draw(KEYS_PER_GRANT) {
            let key = lease_key(self.rng.index(LEASE_KEYS));
            if !self.put_with(held, key).await {
                return false;
            }
        }
        true
    }

    /// Puts `key` with `held`'s lease, through the history; false if it failed.
    async fn put_with(&mut self, held: Held, key: String) -> bool {
        let value = self.fresh_value();
        self.records.puts.push(&key, &value);
        let request = Request::Put { key: key.clone(), value: value.clone() };
        let member = self.member();
        let handle = self.records.history.invoke(self.config.client, &member, request.clone(), self.now());
        let put = PutRequest {
            key: key.clone().into_bytes(),
            value: value.into_bytes(),
            lease: held.id,
            ..Default::default()
        };
        let kv = self.kv_client();
        let (outcome, member_failed) = match tokio::time::timeout(REQUEST_TIMEOUT, kv.put(put)).await {
            Ok(Ok(response)) => {
                let revision = response.into_inner().header.map_or(0, |h| h.revision);
                self.records.leases.attach(held.handle, &key, revision);
                (Outcome::Ok(Response::Put { revision }), false)
            }
            // The lease is gone ("requested lease not found"): the member answered, stay with it.
            Ok(Err(status)) => (classify(&request, &status), status.code() != Code::NotFound),
            Err(_) => (Outcome::Indeterminate { reason: "timed out".to_string() }, true),
        };
        self.records.history.complete(handle, outcome, self.now());
        !member_failed
    }

    /// Revokes `held`; false if the member failed to answer.
    async fn revoke(&mut self, held: Held) -> bool {
        let invoked_at = self.now();
        let lease = self.lease_client();
        let request = LeaseRevokeRequest { id: held.id };
        let (ok, answer) = match tokio::time::timeout(REQUEST_TIMEOUT, lease.lease_revoke(request)).await {
            Ok(Ok(response)) => (true, format!("revoked{}", header_text(response.into_inner().header.as_ref()))),
            // The lease is gone either way.
            Ok(Err(status)) if status.code() == Code::NotFound => (true, "not found".to_string()),
            Ok(Err(status)) => (false, format!("{:?}: {}", status.code(), status.message())),
            Err(_) => (false, "timed out".to_string()),
        };
        let completed_at = self.now();
        self.records.journal.push(format!(
            "{} lease {}: revoke sent at {} via {}: {answer}",
            seconds(completed_at),
            held.id,
            seconds(invoked_at),
            self.member()
        ));
        self.records.leases.revoke(held.handle, RevokeRecord { invoked_at, completed_at, ok });
        ok
    }
}

/// `1.234567s`, for the journal.
fn seconds(ns: u64) -> String {
    format!("{:.6}s", ns as f64 / 1e9)
}

/// `, by member 1f2e... in term 3 at revision 61`: who answered.
fn header_text(header: Option<&ResponseHeader>) -> String {
    header.map_or(String::new(), |h| {
        format!(", by member {:x} in term {} at revision {}", h.member_id, h.raft_term, h.revision)
    })
}

fn lazy_channel(url: &str) -> Channel {
    match tonic::transport::Endpoint::from_shared(url.to_string()) {
        Ok(endpoint) => endpoint.connect_lazy(),
        Err(e) => panic!("bad member URL {url}: {e}"),
    }
}

/// How often a lease with `ttl` seconds is renewed: a third of its TTL, as etcd's client does.
fn keepalive_period_ns(ttl: i64) -> u64 {
    (ttl.max(1) as u64) * 1_000_000_000 / 3
}

/// The keepalive task.
struct KeepAlive {
    rng: Rng,
    members: Vec<(String, String)>,
    target: usize,
    start: Instant,
    until_ns: u64,
    leases: LeaseRecorder,
    findings: Lines,
    journal: Lines,
    kept: KeptLeases,
}

/// A keepalive sent and not answered yet.
struct InFlight {
    id: i64,
    handle: LeaseHandle,
    invoked_at: u64,
    sent: Instant,
}

impl KeepAlive {
    fn now(&self) -> u64 {
        now_ns(self.start)
    }

    async fn run(mut self) {
        while self.now() < self.until_ns {
            self.stream().await;
            self.target = (self.target + 1) % self.members.len();
            tokio::time::sleep(BACKOFF).await;
        }
    }

    /// One keepalive stream, until it breaks or the run ends. It is opened once a keepalive is
    /// due, with that keepalive queued: a member answers the opening with its first response.
    async fn stream(&mut self) {
        let (name, url) = self.members[self.target].clone();
        let (requests, queue) = mpsc::channel::<LeaseKeepAliveRequest>(KEEPALIVE_QUEUE_MAX);
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        while in_flight.is_empty() {
            if self.now() >= self.until_ns {
                return;
            }
            self.send_due(&requests, &mut in_flight);
            if in_flight.is_empty() {
                tokio::time::sleep_until(self.next_wake(&in_flight)).await;
            }
        }
        let queue = futures::stream::unfold(queue, |mut queue| async move { queue.recv().await.map(|r| (r, queue)) });
        let mut client = LeaseClient::new(lazy_channel(&url));
        let opened = tokio::time::timeout(KEEPALIVE_TIMEOUT, client.lease_keep_alive(queue)).await;
        if let Ok(Ok(responses)) = opened {
            let mut responses = responses.into_inner();
            self.follow(&name, &requests, &mut responses, &mut in_flight).await;
        }
        let completed_at = self.now();
        for lost in in_flight {
            let (at, sent_at) = (seconds(completed_at), seconds(lost.invoked_at));
            self.journal.push(format!("{at} lease {}: keepalive sent at {sent_at} via {name} got no answer", lost.id));
            let record = KeepAliveRecord { invoked_at: lost.invoked_at, completed_at, ttl: None };
            self.leases.keepalive(lost.handle, record);
        }
    }

    /// Sends keepalives as they fall due and records their answers, until the stream breaks, a
    /// keepalive goes unanswered too long, the stream's drawn lifetime is over (so keepalives
    /// reach every member in turn, a deposed leader among them) or the run ends.
    async fn follow(
        &mut self,
        name: &str,
        requests: &mpsc::Sender<LeaseKeepAliveRequest>,
        responses: &mut tonic::Streaming<LeaseKeepAliveResponse>,
        in_flight: &mut VecDeque<InFlight>,
    ) {
        let lifetime_ms = self.rng.range_inclusive(KEEPALIVE_STREAM_MS.0..=KEEPALIVE_STREAM_MS.1);
        let lifetime_end = Instant::now() + Duration::from_millis(lifetime_ms);
        loop {
            if self.now() >= self.until_ns {
                return;
            }
            let now = Instant::now();
            if in_flight.front().is_some_and(|oldest| now >= oldest.sent + KEEPALIVE_TIMEOUT) {
                return;
            }
            // Past its lifetime, the stream sends nothing more and closes once answered.
            if now < lifetime_end {
                self.send_due(requests, in_flight);
            } else if in_flight.is_empty() {
                return;
            }
            let wake = self.next_wake(in_flight).min(lifetime_end.max(now + KEEPALIVE_POLL));
            tokio::select! {
                biased;
                message = responses.message() => match message {
                    Ok(Some(response)) => self.answered(name, in_flight, response),
                    Ok(None) | Err(_) => return,
                },
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Sends every keepalive that is due; forgets leases kept long enough.
    fn send_due(&self, requests: &mpsc::Sender<LeaseKeepAliveRequest>, in_flight: &mut VecDeque<InFlight>) {
        let now = self.now();
        let mut kept = lock(&self.kept);
        kept.retain(|_, lease| lease.until_ns > now);
        for (&id, lease) in kept.iter_mut().filter(|(_, lease)| lease.next_ns <= now) {
            if requests.try_send(LeaseKeepAliveRequest { id }).is_err() {
                // The member is not reading: the oldest unanswered keepalive will time out.
                return;
            }
            in_flight.push_back(InFlight { id, handle: lease.handle, invoked_at: now, sent: Instant::now() });
            lease.next_ns = now + keepalive_period_ns(lease.ttl);
        }
    }

    /// When to look again: the next keepalive due, the oldest one's timeout, the run's end, and
    /// soon enough to notice a lease just handed over.
    fn next_wake(&self, in_flight: &VecDeque<InFlight>) -> Instant {
        let now_ns = self.now();
        let now = Instant::now();
        let next_ns = lock(&self.kept).values().map(|lease| lease.next_ns).min().unwrap_or(self.until_ns);
        let next = now + Duration::from_nanos(next_ns.min(self.until_ns).saturating_sub(now_ns)).min(KEEPALIVE_POLL);
        match in_flight.front() {
            Some(oldest) => next.min(oldest.sent + KEEPALIVE_TIMEOUT),
            None => next,
        }
    }

    /// Records the answer to the oldest keepalive in flight.
    fn answered(&self, member: &str, in_flight: &mut VecDeque<InFlight>, response: LeaseKeepAliveResponse) {
        let Some(sent) = in_flight.pop_front() else {
            self.findings.push(format!("{member}: a keepalive answer nobody asked for: {response:?}"));
            return;
        };
        if response.id != sent.id {
            self.findings.push(format!(
                "{member}: keepalives are answered in order, but lease {} got the answer for {}",
                sent.id, response.id
            ));
        }
        let ttl = response.ttl.max(0);
        self.journal.push(format!(
            "{} lease {}: keepalive sent at {} via {member} answered TTL {}{}",
            seconds(self.now()),
            sent.id,
            seconds(sent.invoked_at),
            response.ttl,
            header_text(response.header.as_ref())
        ));
        let record = KeepAliveRecord { invoked_at: sent.invoked_at, completed_at: self.now(), ttl: Some(ttl) };
        self.leases.keepalive(sent.handle, record);
        if ttl == 0 {
            lock(&self.kept).remove(&sent.id);
        }
    }
}
