//! The KV commands of the real `etcdctl` 3.4 against a real `detcd` member: exact output, and the
//! same output as real etcd 3.4.23 gives for the same command sequence on a fresh member (IDs and
//! raft term aside).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup failures should panic loudly

mod common;

use common::{etcdctl, normalize, CtlOutput, Member, Server};

/// One step of a scripted session: etcdctl arguments and optional stdin.
struct Step {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
}

const fn step(args: &'static [&'static str]) -> Step {
    Step { args, stdin: None }
}

const TXN_INPUT: &str = "value(\"zoo\") = \"val\"\n\nput zoo val2\nget zoo\n\nget foo\n\n";
const TXN_FAIL_INPUT: &str = "mod(\"zoo\") > \"1000\"\n\nput zoo never\n\nget zoo\n\n";

/// The session run against both servers. Every KV feature the issue names appears here.
const SCRIPT: &[Step] = &[
    step(&["put", "foo", "bar"]),
    step(&["put", "foo1", "bar1"]),
    step(&["put", "foo2", "bar2"]),
    step(&["put", "zoo", "val"]),
    step(&["put", "foo", "bar-again"]),
    step(&["get", "foo"]),
    step(&["get", "foo", "-w", "json"]),
    step(&["get", "foo", "--prefix"]),
    step(&["get", "foo", "--prefix", "-w", "json"]),
    step(&["get", "foo", "--from-key"]),
    step(&["get", "foo", "foo2"]),
    step(&["get", "foo", "--rev=2"]),
    step(&["get", "foo", "--rev=2", "-w", "json"]),
    step(&["get", "foo", "--prefix", "--limit=2"]),
    step(&["get", "foo", "--prefix", "--limit=2", "-w", "json"]),
    step(&["get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"]),
    step(&["get", "foo", "--prefix", "--sort-by=VALUE", "--order=ASCEND"]),
    step(&["get", "foo", "--prefix", "--sort-by=VERSION", "--order=DESCEND"]),
    step(&["get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit=1"]),
    step(&["get", "foo", "--prefix", "--order=DESCEND"]),
    step(&["get", "foo", "--prefix", "--keys-only"]),
    step(&["get", "foo", "--prefix", "--print-value-only"]),
    step(&["get", "foo", "--prefix", "--limit=1", "--order=DESCEND", "-w", "json"]),
    step(&["get", "foo", "--consistency=s"]),
    step(&["get", "foo", "--consistency=s", "-w", "json"]),
    step(&["get", "", "--prefix"]),
    step(&["get", "nosuch"]),
    step(&["get", "nosuch", "-w", "json"]),
    step(&["put", "foo", "baz", "--prev-kv"]),
    step(&["put", "foo", "--ignore-value"]),
    step(&["put", "nosuch", "--ignore-value"]),
    step(&["put", "foo", "x", "--lease=1234"]),
    step(&["put", "foo", "--prev-kv", "qux", "-w", "json"]),
    step(&["del", "foo1"]),
    step(&["del", "nosuch"]),
    step(&["del", "nosuch", "-w", "json"]),
    step(&["get", "foo", "--prefix", "-w", "json"]),
    Step { args: &["txn", "-i"], stdin: Some(TXN_INPUT) },
    Step { args: &["txn", "-w", "json"], stdin: Some(TXN_FAIL_INPUT) },
    Step { args: &["txn"], stdin: Some(TXN_FAIL_INPUT) },
    step(&["del", "foo", "--prefix", "--prev-kv"]),
    step(&["del", "foo", "--prefix", "-w", "json"]),
    step(&["put", "a", "1"]),
    step(&["put", "b", "2"]),
    step(&["put", "c", "3"]),
    step(&["del", "a", "c"]),
    step(&["get", "", "--from-key", "-w", "json"]),
    step(&["compaction", "5"]),
    step(&["compaction", "5"]),
    step(&["compaction", "1000"]),
    step(&["get", "foo", "--rev=4"]),
    step(&["get", "zoo", "--rev=5"]),
    step(&["get", "zoo", "--rev=1000"]),
    step(&["get", "zoo", "-w", "json"]),
    step(&["compaction", "--physical", "12"]),
    step(&["get", "", "--prefix", "-w", "json"]),
];

fn run_script(member: &Member) -> Vec<CtlOutput> {
    SCRIPT.iter().map(|s| etcdctl(&member.endpoint, s.args, s.stdin)).collect()
}

fn describe(step: &Step, out: &CtlOutput) -> String {
    format!(
        "$ etcdctl {}\n--- stdout\n{}--- stderr\n{}--- exit {}\n",
        step.args.join(" "),
        normalize(&out.stdout),
        normalize(&out.stderr),
        out.code
    )
}

#[test]
fn etcdctl_session_matches_real_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Member::start(Server::Etcd, &dir.path().join("etcd"));
    let expected = run_script(&etcd);
    drop(etcd);
    let detcd = Member::start(Server::Detcd, &dir.path().join("detcd"));
    let actual = run_script(&detcd);
    let mut mismatches = Vec::new();
    for ((step, want), got) in SCRIPT.iter().zip(&expected).zip(&actual) {
        let (want_text, got_text) = (describe(step, want), describe(step, got));
        if want_text != got_text {
            mismatches.push(format!("=== etcd 3.4.23:\n{want_text}=== detcd:\n{got_text}"));
        }
    }
    if let Ok(path) = std::env::var("DETCD_TRANSCRIPT") {
        let transcript: String = SCRIPT.iter().zip(&actual).map(|(s, o)| describe(s, o)).collect();
        std::fs::write(path, transcript).expect("write transcript");
    }
    assert!(mismatches.is_empty(), "{} of {} steps differ:\n{}", mismatches.len(), SCRIPT.len(), mismatches.join("\n"));
}

fn fresh_detcd() -> (tempfile::TempDir, Member) {
    let dir = tempfile::tempdir().expect("tempdir");
    let member = Member::start(Server::Detcd, &dir.path().join("data"));
    (dir, member)
}

#[test]
fn put_then_get_prints_key_and_value() {
    let (_dir, m) = fresh_detcd();
    assert_eq!(etcdctl(&m.endpoint, &["put", "greeting", "hello world"], None).stdout, "OK\n");
    assert_eq!(etcdctl(&m.endpoint, &["get", "greeting"], None).stdout, "greeting\nhello world\n");
}

#[test]
fn revision_starts_at_one_and_counts_write_transactions() {
    let (_dir, m) = fresh_detcd();
    let json = etcdctl(&m.endpoint, &["get", "x", "-w", "json"], None).stdout;
    assert!(json.contains("\"revision\":1,"), "{json}");
    etcdctl(&m.endpoint, &["put", "x", "1"], None);
    etcdctl(&m.endpoint, &["del", "missing"], None);
    let json = etcdctl(&m.endpoint, &["get", "x", "-w", "json"], None).stdout;
    assert!(json.contains("\"revision\":2,"), "a delete of nothing must not bump the revision: {json}");
}

#[test]
fn reads_below_compaction_fail_with_etcd_error() {
    let (_dir, m) = fresh_detcd();
    for v in ["1", "2", "3"] {
        etcdctl(&m.endpoint, &["put", "k", v], None);
    }
    assert_eq!(etcdctl(&m.endpoint, &["compaction", "3"], None).stdout, "compacted revision 3\n");
    let out = etcdctl(&m.endpoint, &["get", "k", "--rev=2"], None);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.lines().last(), Some("Error: etcdserver: mvcc: required revision has been compacted"));
    assert_eq!(etcdctl(&m.endpoint, &["get", "k", "--rev=3", "--print-value-only"], None).stdout, "2\n");
}

#[test]
fn oversized_put_is_rejected_and_member_keeps_serving() {
    let (_dir, m) = fresh_detcd();
    let big = "v".repeat(1_600_000);
    // Too long for one argv string: etcdctl reads the value from stdin.
    let out = etcdctl(&m.endpoint, &["put", "big"], Some(&big));
    assert_eq!(out.stderr.lines().last(), Some("Error: etcdserver: request is too large"));
    assert_eq!(etcdctl(&m.endpoint, &["put", "small", "ok"], None).stdout, "OK\n");
}
