//! Crash durability with real processes: every acknowledged put survives `kill -9`, and a
//! corrupted data dir is refused at start, naming the file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup failures should panic loudly

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{detcd_bin, etcdctl, tool, Member, Server};
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::{PutRequest, RangeRequest};

/// Acknowledged puts to collect before the kill.
const ACKED_BEFORE_KILL: usize = 500;
const WRITERS: usize = 8;

async fn writer(endpoint: String, id: usize, acked: Arc<Mutex<Vec<(String, String)>>>, stop: Arc<AtomicBool>) {
    let Ok(mut client) = KvClient::connect(format!("http://{endpoint}")).await else { return };
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (key, value) = (format!("w{id}-{i:06}"), format!("value-{id}-{i}"));
        let put = PutRequest { key: key.clone().into(), value: value.clone().into(), ..Default::default() };
        match tokio::time::timeout(Duration::from_secs(2), client.put(put)).await {
            Ok(Ok(_)) => acked.lock().expect("acked list").push((key, value)),
            _ => return, // the member is gone: the outcome of this put is unknown, it is not counted
        }
        i += 1;
    }
}

/// Runs `WRITERS` concurrent writers until at least `count` puts are acknowledged, calls `at_count`
/// while they are still writing, stops them, and returns every acknowledged put.
fn write_until(
    runtime: &tokio::runtime::Runtime,
    member: &mut Member,
    count: usize,
    at_count: impl FnOnce(&mut Member),
) -> Vec<(String, String)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|id| runtime.spawn(writer(member.endpoint.clone(), id, acked.clone(), stop.clone())))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().expect("acked list").len() < count {
        assert!(Instant::now() < deadline, "fewer than {count} puts acknowledged in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    at_count(member);
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for task in tasks {
            let _ = task.await;
        }
    });
    let acked = acked.lock().expect("acked list").clone();
    assert!(acked.len() >= count);
    acked
}

#[test]
fn acknowledged_puts_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut member = Member::start(Server::Detcd, &dir.path().join("data"));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // Kill while the writers are still writing.
    let acked = write_until(&runtime, &mut member, ACKED_BEFORE_KILL, Member::kill);
    member.spawn();
    member.wait_ready();
    let endpoint = member.endpoint.clone();
    let missing: Vec<String> = runtime.block_on(async move {
        let mut client = KvClient::connect(format!("http://{endpoint}")).await.expect("connect after restart");
        let mut missing = Vec::new();
        for (key, value) in &acked {
            let req = RangeRequest { key: key.clone().into(), ..Default::default() };
            let resp = client.range(req).await.expect("range after restart").into_inner();
            if resp.kvs.first().map(|kv| kv.value.as_slice()) != Some(value.as_bytes()) {
                missing.push(key.clone());
            }
        }
        missing
    });
    assert!(missing.is_empty(), "acknowledged puts lost after kill -9: {missing:?}");
}

/// Counts the keys visible on the member (one linearizable range over everything).
async fn count_keys(endpoint: &str) -> i64 {
    let mut client = KvClient::connect(format!("http://{endpoint}")).await.expect("connect");
    let all = RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() };
    client.range(all).await.expect("count range").into_inner().count
}

#[test]
fn snapshots_and_log_purge_keep_every_write_across_kill_9() {
    // Past openraft's 5,000 kept entries, so snapshots are followed by log purges.
    const PUTS: usize = 6_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut member = Member::start_with(Server::Detcd, &dir.path().join("data"), &["--snapshot-count=100"]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let written = write_until(&runtime, &mut member, PUTS, |_| {}).len() as i64;
    member.kill();
    member.spawn();
    member.wait_ready();
    assert_eq!(runtime.block_on(count_keys(&member.endpoint)), written);
    assert!(member.log().contains("snapshot built"), "no snapshot was taken; log:\n{}", member.log());
}

#[test]
fn sigterm_stops_cleanly_and_data_remains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut member = Member::start(Server::Detcd, &dir.path().join("data"));
    assert_eq!(etcdctl(&member.endpoint, &["put", "k", "v"], None).stdout, "OK\n");
    // An open watch stream must not hold the shutdown open: it ends with "server stopped".
    let mut watch = Command::new(tool("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", member.endpoint))
        .args(["watch", "k", "--rev=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcdctl watch");
    let mut first_line = String::new();
    let mut watch_out = BufReader::new(watch.stdout.take().expect("watch stdout"));
    watch_out.read_line(&mut first_line).expect("read the watch");
    assert_eq!(first_line, "PUT\n", "the watch replays the put once its stream is open");
    let stopped = member.terminate();
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(stopped, "detcd must exit 0 on SIGTERM, open watch or not; log:\n{}", member.log());
    member.spawn();
    member.wait_ready();
    assert_eq!(etcdctl(&member.endpoint, &["get", "k", "--print-value-only"], None).stdout, "v\n");
}

/// Runs detcd to completion (it is expected to refuse to start) and returns (exit code, stderr).
fn run_expecting_exit(args: &[String]) -> (i32, String) {
    let child =
        Command::new(detcd_bin()).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut child = child;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().expect("output");
            return (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("detcd kept running on a corrupted data dir");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The offset of every record in a WAL segment (format: 16-byte header; records of
/// `len: u32 LE | crc: u32 LE | payload`).
fn record_offsets(segment: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 16;
    while at + 8 <= segment.len() {
        offsets.push(at);
        at += 8 + u32::from_le_bytes(segment[at..at + 4].try_into().expect("4 bytes")) as usize;
    }
    offsets
}

#[test]
fn corrupted_wal_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut member = Member::start(Server::Detcd, &dir.path().join("data"));
    for i in 0..50 {
        assert_eq!(etcdctl(&member.endpoint, &["put", &format!("k{i}"), "some value"], None).stdout, "OK\n");
    }
    assert!(member.terminate());
    let wal_dir = member.data_dir.join("member").join("wal");
    let segment = std::fs::read_dir(&wal_dir)
        .expect("wal dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wal"))
        .expect("a wal segment");
    let clean = std::fs::read(&segment).expect("read segment");
    let offsets = record_offsets(&clean);
    assert!(offsets.len() >= 50, "expected a record per put, found {}", offsets.len());
    let middle = offsets[offsets.len() / 2];
    let name = segment.file_name().expect("file name").to_string_lossy().into_owned();
    // A byte of a payload (checksum mismatch), and the second byte of a length field: the record
    // then claims ~64 KiB, past the end of the file, like a torn write would, yet whole records
    // follow it.
    for (what, at) in [("a payload byte", middle + 10), ("a length byte", middle + 1)] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0xff;
        std::fs::write(&segment, &bytes).expect("write segment");
        let (code, stderr) = run_expecting_exit(&member.args());
        assert_ne!(code, 0, "detcd must refuse a WAL with {what} damaged");
        assert!(stderr.contains(&name), "the error for {what} must name {name}: {stderr}");
        assert_eq!(std::fs::read(&segment).expect("read segment"), bytes, "refusing must not change the WAL");
    }
    // Repaired by hand, the member starts with every write.
    std::fs::write(&segment, &clean).expect("write segment");
    member.spawn();
    member.wait_ready();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    assert_eq!(runtime.block_on(count_keys(&member.endpoint)), 50);
}
