//! The Lock and Election services (`v3lockpb`, `v3electionpb`) with real processes and a raw gRPC
//! client. Each behaviour runs on real etcd 3.4 first, which pins the expected answer, then on
//! detcd, which must give the same one: keys, revisions, values, error codes and messages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup failures should panic loudly

mod common;

use std::future::Future;
use std::time::Duration;

use common::{Member, Server};
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::lease_client::LeaseClient;
use detcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};
use detcd_proto::mvccpb::KeyValue;
use detcd_proto::v3electionpb::election_client::ElectionClient;
use detcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ResignRequest,
};
use detcd_proto::v3lockpb::lock_client::LockClient;
use detcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// How long one scenario may take on one server.
const SCENARIO_LIMIT: Duration = Duration::from_secs(12);
/// How long a call that must block is watched before it is declared blocked.
const BLOCKED_FOR: Duration = Duration::from_millis(1000);
/// How long a call that must complete, or a change that must arrive, may take.
const ARRIVES_WITHIN: Duration = Duration::from_secs(5);
/// The TTL of the leases the tests grant: long enough never to expire during a test.
const LEASE_TTL_S: i64 = 60;

/// Clients of one server.
#[derive(Clone)]
struct Clients {
    server: Server,
    lock: LockClient<Channel>,
    election: ElectionClient<Channel>,
    lease: LeaseClient<Channel>,
    kv: KvClient<Channel>,
}

/// Runs `scenario` against a fresh etcd, then a fresh detcd.
fn on_etcd_then_detcd<F, Fut>(scenario: F)
where
    F: Fn(Clients) -> Fut,
    Fut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    for server in [Server::Etcd, Server::Detcd] {
        let dir = tempfile::tempdir().expect("tempdir");
        let member = Member::start(server, &dir.path().join("data"));
        let url = format!("http://{}", member.endpoint);
        runtime.block_on(async {
            let channel = Channel::from_shared(url).expect("url").connect().await.expect("connect");
            let clients = Clients {
                server,
                lock: LockClient::new(channel.clone()),
                election: ElectionClient::new(channel.clone()),
                lease: LeaseClient::new(channel.clone()),
                kv: KvClient::new(channel),
            };
            let ran = tokio::time::timeout(SCENARIO_LIMIT, scenario(clients)).await;
            assert!(ran.is_ok(), "{server:?}: the scenario did not finish within {SCENARIO_LIMIT:?}");
        });
    }
}

async fn grant(c: &mut Clients) -> i64 {
    let req = LeaseGrantRequest { ttl: LEASE_TTL_S, id: 0 };
    c.lease.lease_grant(req).await.expect("lease grant").into_inner().id
}

async fn lock(c: &mut Clients, name: &str, lease: i64) -> Result<LockResponse, Status> {
    let req = LockRequest { name: name.into(), lease };
    c.lock.lock(req).await.map(|r| r.into_inner())
}

async fn campaign(c: &mut Clients, name: &str, lease: i64, value: &str) -> Result<CampaignResponse, Status> {
    let req = CampaignRequest { name: name.into(), lease, value: value.into() };
    c.election.campaign(req).await.map(|r| r.into_inner())
}

async fn leader(c: &mut Clients, name: &str) -> Result<LeaderResponse, Status> {
    c.election.leader(LeaderRequest { name: name.into() }).await.map(|r| r.into_inner())
}

async fn proclaim(c: &mut Clients, leader: Option<LeaderKey>, value: &str) -> Result<(), Status> {
    c.election.proclaim(ProclaimRequest { leader, value: value.into() }).await.map(|_| ())
}

async fn observe(c: &mut Clients, name: &str) -> Streaming<LeaderResponse> {
    c.election.observe(LeaderRequest { name: name.into() }).await.expect("observe").into_inner()
}

/// The next leader an Observe stream reports (bounded).
async fn observed(stream: &mut Streaming<LeaderResponse>) -> KeyValue {
    let next = tokio::time::timeout(ARRIVES_WITHIN, stream.message()).await.expect("a leader in time");
    next.expect("the stream is healthy").expect("the stream is open").kv.expect("a leader key-value")
}

/// The keys under `prefix`, in key order.
async fn keys(c: &mut Clients, prefix: &str) -> Vec<String> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("a non-empty prefix") += 1;
    let req = RangeRequest { key: prefix.into(), range_end: end, keys_only: true, ..Default::default() };
    let kvs = c.kv.range(req).await.expect("range").into_inner().kvs;
    kvs.into_iter().map(|kv| String::from_utf8(kv.key).expect("utf-8 key")).collect()
}

/// Asserts `call` is still blocked after [`BLOCKED_FOR`].
async fn assert_blocked<T>(server: Server, call: &mut JoinHandle<T>, what: &str) {
    let finished = tokio::time::timeout(BLOCKED_FOR, call).await.is_ok();
    assert!(!finished, "{server:?}: {what} returned while it should still wait");
}

/// The result of a call that must now complete.
async fn completes<T>(server: Server, call: JoinHandle<T>, what: &str) -> T {
    let done = tokio::time::timeout(ARRIVES_WITHIN, call).await;
    done.unwrap_or_else(|_| panic!("{server:?}: {what} still waits")).expect("the call's task")
}

fn assert_status<T: std::fmt::Debug>(server: Server, got: Result<T, Status>, code: Code, message: &str) {
    let status = got.expect_err("the call must fail");
    assert_eq!((status.code(), status.message()), (code, message), "{server:?}");
}

fn revision_of(header: &Option<detcd_proto::etcdserverpb::ResponseHeader>) -> i64 {
    header.as_ref().expect("a header").revision
}

#[test]
fn a_second_lock_waits_until_the_first_is_unlocked() {
    on_etcd_then_detcd(|mut c| async move {
        let (a, b) = (grant(&mut c).await, grant(&mut c).await);
        let first = lock(&mut c, "mylock", a).await.expect("the free lock");
        assert_eq!(first.key, format!("mylock/{a:x}").into_bytes(), "{:?}", c.server);
        assert_eq!(revision_of(&first.header), 2, "{:?}: answered at the put of its key", c.server);
        let mut second = tokio::spawn({
            let mut c = c.clone();
            async move { lock(&mut c, "mylock", b).await }
        });
        assert_blocked(c.server, &mut second, "the second Lock").await;
        let unlocked = c.lock.unlock(UnlockRequest { key: first.key }).await.expect("unlock").into_inner();
        assert_eq!(revision_of(&unlocked.header), 4, "{:?}", c.server);
        let second = completes(c.server, second, "the second Lock").await.expect("the released lock");
        assert_eq!(second.key, format!("mylock/{b:x}").into_bytes(), "{:?}", c.server);
        assert_eq!(revision_of(&second.header), 4, "{:?}: answered after the unlock", c.server);
    });
}

#[test]
fn a_lock_on_a_missing_lease_fails_and_writes_nothing() {
    on_etcd_then_detcd(|mut c| async move {
        let got = lock(&mut c, "mylock", 0x1234).await;
        assert_status(c.server, got, Code::Unknown, "etcdserver: requested lease not found");
        assert_eq!(keys(&mut c, "mylock/").await, Vec::<String>::new(), "{:?}", c.server);
    });
}

#[test]
fn revoking_the_holders_lease_releases_the_lock() {
    on_etcd_then_detcd(|mut c| async move {
        let (a, b) = (grant(&mut c).await, grant(&mut c).await);
        lock(&mut c, "mylock", a).await.expect("the free lock");
        let mut second = tokio::spawn({
            let mut c = c.clone();
            async move { lock(&mut c, "mylock", b).await }
        });
        assert_blocked(c.server, &mut second, "the second Lock").await;
        c.lease.lease_revoke(LeaseRevokeRequest { id: a }).await.expect("revoke");
        let second = completes(c.server, second, "the second Lock").await.expect("the released lock");
        assert_eq!(second.key, format!("mylock/{b:x}").into_bytes(), "{:?}", c.server);
    });
}

#[test]
fn an_abandoned_lock_wait_removes_its_key() {
    on_etcd_then_detcd(|mut c| async move {
        let (a, b) = (grant(&mut c).await, grant(&mut c).await);
        lock(&mut c, "mylock", a).await.expect("the free lock");
        let abandoned = tokio::time::timeout(BLOCKED_FOR, lock(&mut c, "mylock", b)).await;
        assert!(abandoned.is_err(), "{:?}: the second Lock returned while the lock was held", c.server);
        let only_holder = vec![format!("mylock/{a:x}")];
        let deadline = tokio::time::Instant::now() + ARRIVES_WITHIN;
        while keys(&mut c, "mylock/").await != only_holder {
            assert!(tokio::time::Instant::now() < deadline, "{:?}: the abandoned waiter's key stayed", c.server);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

#[test]
fn a_lock_without_a_lease_runs_on_a_fresh_60_second_lease() {
    on_etcd_then_detcd(|mut c| async move {
        let held = lock(&mut c, "mylock", 0).await.expect("the free lock");
        let key = String::from_utf8(held.key).expect("utf-8 key");
        let hex = key.strip_prefix("mylock/").expect("a key under the lock's prefix");
        let id = i64::from_str_radix(hex, 16).expect("the lease ID in hex");
        let ttl = c.lease.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }).await.expect("ttl");
        let ttl = ttl.into_inner();
        assert_eq!(ttl.granted_ttl, 60, "{:?}", c.server);
        assert_eq!(ttl.keys, vec![key.into_bytes()], "{:?}", c.server);
    });
}

#[test]
fn the_first_candidate_leads_and_observers_see_what_it_proclaims() {
    on_etcd_then_detcd(|mut c| async move {
        let a = grant(&mut c).await;
        let won = campaign(&mut c, "myelection", a, "first").await.expect("an uncontested campaign");
        let key = format!("myelection/{a:x}").into_bytes();
        let expected = LeaderKey { name: b"myelection".to_vec(), key: key.clone(), rev: 2, lease: a };
        assert_eq!(won.leader.as_ref(), Some(&expected), "{:?}", c.server);
        let now = leader(&mut c, "myelection").await.expect("a leader").kv.expect("its key-value");
        assert_eq!((now.key, now.value), (key.clone(), b"first".to_vec()), "{:?}", c.server);

        let mut stream = observe(&mut c, "myelection").await;
        assert_eq!(observed(&mut stream).await.value, b"first", "{:?}: the current leader first", c.server);
        proclaim(&mut c, won.leader, "second thoughts").await.expect("the leader proclaims");
        let seen = observed(&mut stream).await;
        assert_eq!((seen.key, seen.value), (key, b"second thoughts".to_vec()), "{:?}", c.server);
        let now = leader(&mut c, "myelection").await.expect("a leader").kv.expect("its key-value");
        assert_eq!(now.value, b"second thoughts", "{:?}", c.server);
    });
}

#[test]
fn a_proclaim_with_a_stale_leader_key_fails_as_not_leader() {
    on_etcd_then_detcd(|mut c| async move {
        let a = grant(&mut c).await;
        let won = campaign(&mut c, "myelection", a, "first").await.expect("an uncontested campaign");
        let mut stale = won.leader.expect("a leader key");
        stale.rev += 1;
        let got = proclaim(&mut c, Some(stale), "usurped").await;
        assert_status(c.server, got, Code::Unknown, "election: not leader");
        let now = leader(&mut c, "myelection").await.expect("a leader").kv.expect("its key-value");
        assert_eq!(now.value, b"first", "{:?}", c.server);
    });
}

#[test]
fn an_election_without_candidates_has_no_leader() {
    on_etcd_then_detcd(|mut c| async move {
        let got = leader(&mut c, "myelection").await;
        assert_status(c.server, got, Code::Unknown, "election: no leader");
        let got = proclaim(&mut c, None, "anything").await;
        assert_status(c.server, got, Code::Unknown, "\"leader\" field must be provided");
    });
}

#[test]
fn resigning_hands_leadership_to_the_next_candidate() {
    on_etcd_then_detcd(|mut c| async move {
        let (a, b) = (grant(&mut c).await, grant(&mut c).await);
        let first = campaign(&mut c, "myelection", a, "first").await.expect("an uncontested campaign");
        let mut stream = observe(&mut c, "myelection").await;
        assert_eq!(observed(&mut stream).await.value, b"first", "{:?}", c.server);
        let mut second = tokio::spawn({
            let mut c = c.clone();
            async move { campaign(&mut c, "myelection", b, "second").await }
        });
        assert_blocked(c.server, &mut second, "the second Campaign").await;
        c.election.resign(ResignRequest { leader: first.leader }).await.expect("resign");
        let second = completes(c.server, second, "the second Campaign").await.expect("the vacated leadership");
        let key = format!("myelection/{b:x}").into_bytes();
        assert_eq!(second.leader.map(|l| (l.key, l.rev)), Some((key.clone(), 3)), "{:?}", c.server);
        let seen = observed(&mut stream).await;
        assert_eq!((seen.key, seen.value), (key, b"second".to_vec()), "{:?}", c.server);
        let now = leader(&mut c, "myelection").await.expect("a leader").kv.expect("its key-value");
        assert_eq!(now.value, b"second", "{:?}", c.server);
    });
}

#[test]
fn campaigning_again_keeps_the_place_and_proclaims_the_new_value() {
    on_etcd_then_detcd(|mut c| async move {
        let a = grant(&mut c).await;
        let first = campaign(&mut c, "myelection", a, "first").await.expect("an uncontested campaign");
        let again = campaign(&mut c, "myelection", a, "changed").await.expect("the same candidate");
        assert_eq!(again.leader, first.leader, "{:?}: the same key, created at the same revision", c.server);
        let now = leader(&mut c, "myelection").await.expect("a leader").kv.expect("its key-value");
        assert_eq!((now.create_revision, now.value), (2, b"changed".to_vec()), "{:?}", c.server);
    });
}

#[test]
fn a_waiter_whose_lease_ends_while_waiting_still_gets_its_key_as_in_etcd_3_4() {
    // etcd 3.4's Mutex checks nothing after the wait (3.5 answers "mutex: session is expired").
    on_etcd_then_detcd(|mut c| async move {
        let (a, b) = (grant(&mut c).await, grant(&mut c).await);
        let first = lock(&mut c, "mylock", a).await.expect("the free lock");
        let mut second = tokio::spawn({
            let mut c = c.clone();
            async move { lock(&mut c, "mylock", b).await }
        });
        assert_blocked(c.server, &mut second, "the second Lock").await;
        c.lease.lease_revoke(LeaseRevokeRequest { id: b }).await.expect("revoke the waiter's lease");
        c.lock.unlock(UnlockRequest { key: first.key }).await.expect("unlock");
        let second = completes(c.server, second, "the second Lock").await.expect("an answer, not an error");
        assert_eq!(second.key, format!("mylock/{b:x}").into_bytes(), "{:?}", c.server);
        assert_eq!(revision_of(&second.header), 5, "{:?}: answered after the unlock", c.server);
        assert_eq!(keys(&mut c, "mylock/").await, Vec::<String>::new(), "{:?}", c.server);
    });
}

#[test]
fn observing_an_empty_election_waits_for_the_first_candidate() {
    on_etcd_then_detcd(|mut c| async move {
        let a = grant(&mut c).await;
        // etcd sends the stream's headers with its first message: open it aside.
        let opening = tokio::spawn({
            let mut c = c.clone();
            async move { observe(&mut c, "myelection").await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.kv.put(PutRequest { key: "myelection-not".into(), ..Default::default() }).await.expect("put");
        let won = campaign(&mut c, "myelection", a, "first").await.expect("an uncontested campaign");
        let mut stream = completes(c.server, opening, "opening Observe").await;
        let first = tokio::time::timeout(ARRIVES_WITHIN, stream.message()).await.expect("in time");
        let first = first.expect("a healthy stream").expect("an open stream");
        assert_eq!(revision_of(&first.header), 3, "{:?}: reported at the candidate's put", c.server);
        assert_eq!(first.kv.map(|kv| kv.value), Some(b"first".to_vec()), "{:?}", c.server);
        proclaim(&mut c, won.leader, "second").await.expect("the leader proclaims");
        let next = tokio::time::timeout(ARRIVES_WITHIN, stream.message()).await.expect("in time");
        let next = next.expect("a healthy stream").expect("an open stream");
        assert_eq!(revision_of(&next.header), 4, "{:?}: reported at the proclaim", c.server);
        assert_eq!(next.kv.map(|kv| kv.value), Some(b"second".to_vec()), "{:?}", c.server);
    });
}

#[test]
fn unlocking_no_key_fails_as_etcd_does() {
    on_etcd_then_detcd(|mut c| async move {
        let got = c.lock.unlock(UnlockRequest { key: Vec::new() }).await;
        assert_status(c.server, got, Code::Unknown, "etcdserver: key is not provided");
    });
}
