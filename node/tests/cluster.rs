//! Replicated clusters of real `detcd` processes on loopback, driven by the real `etcdctl`: the etcd
//! tutorial's 3-member cluster, leader failure, loss of quorum, and a 5-member cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup failures should panic loudly

mod common;

use std::time::{Duration, Instant};

use common::{endpoints, etcdctl, start_cluster, Member, Server};

/// What `etcdctl endpoint status -w json` says about one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Status {
    member_id: u64,
    leader: u64,
    raft_term: u64,
    applied: u64,
}

fn status(member: &Member) -> Option<Status> {
    let out = etcdctl(&member.endpoint, &["--command-timeout=2s", "endpoint", "status", "-w", "json"], None);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    let s = &json.as_array()?.first()?["Status"];
    Some(Status {
        member_id: s["header"]["member_id"].as_u64()?,
        leader: s["leader"].as_u64()?,
        raft_term: s["raftTerm"].as_u64()?,
        applied: s["raftAppliedIndex"].as_u64()?,
    })
}

/// The index of the member every reachable member agrees leads.
fn leader_index(members: &[Member], alive: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses: Vec<Option<Status>> = alive.iter().map(|&i| status(&members[i])).collect();
        if let Some(Some(first)) = statuses.first() {
            let agreed = statuses.iter().all(|s| s.is_some_and(|s| s.leader == first.leader));
            let leader =
                alive.iter().copied().zip(&statuses).find(|(_, s)| s.is_some_and(|s| s.member_id == first.leader));
            if agreed && first.leader != 0 {
                if let Some((i, _)) = leader {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader among {alive:?}: {statuses:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Retries a put (bounded) while a new leader is elected; returns how long it took.
fn put_until_ok(member: &Member, key: &str, value: &str) -> Duration {
    let start = Instant::now();
    loop {
        let out = etcdctl(&member.endpoint, &["--command-timeout=1s", "put", key, value], None);
        if out.stdout == "OK\n" {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "put {key} never succeeded: {}", out.stderr);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get_value(member: &Member, key: &str, serializable: bool) -> String {
    let consistency = if serializable { "--consistency=s" } else { "--consistency=l" };
    etcdctl(&member.endpoint, &["get", key, "--print-value-only", consistency], None).stdout
}

/// Waits until every listed member has applied the same index, and returns it.
fn converged_applied(members: &[Member], alive: &[usize]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let applied: Vec<Option<u64>> = alive.iter().map(|&i| status(&members[i]).map(|s| s.applied)).collect();
        if let Some(Some(first)) = applied.first() {
            if applied.iter().all(|a| *a == Some(*first)) {
                return *first;
            }
        }
        assert!(Instant::now() < deadline, "applied indexes never converged: {applied:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn writes_through_any_member_are_read_on_every_member() {
    let dir = tempfile::tempdir().unwrap();
    let members = start_cluster(Server::Detcd, dir.path(), 3, &[]);
    for (i, m) in members.iter().enumerate() {
        assert_eq!(etcdctl(&m.endpoint, &["put", &format!("key{i}"), &format!("from-{i}")], None).stdout, "OK\n");
    }
    for m in &members {
        for i in 0..members.len() {
            assert_eq!(get_value(m, &format!("key{i}"), false), format!("from-{i}\n"), "linearizable on {}", m.name);
        }
    }
    converged_applied(&members, &[0, 1, 2]);
    for m in &members {
        for i in 0..members.len() {
            assert_eq!(get_value(m, &format!("key{i}"), true), format!("from-{i}\n"), "serializable on {}", m.name);
        }
    }
    let list = etcdctl(&members[0].endpoint, &["member", "list"], None).stdout;
    for m in &members {
        let line =
            format!("started, {}, http://127.0.0.1:{}, http://127.0.0.1:{}, false", m.name, m.peer_port, m.client_port);
        assert!(list.contains(&line), "member list lacks {line:?}:\n{list}");
    }
}

#[test]
fn killing_the_leader_elects_another_and_it_rejoins_with_identical_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = start_cluster(Server::Detcd, dir.path(), 3, &[]);
    assert_eq!(etcdctl(&endpoints(&[&members[0]]), &["put", "before", "1"], None).stdout, "OK\n");
    let leader = leader_index(&members, &[0, 1, 2]);
    let term_before = status(&members[leader]).unwrap().raft_term;
    members[leader].kill();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    put_until_ok(&members[survivors[0]], "after", "2");
    let new_leader = leader_index(&members, &survivors);
    assert_ne!(new_leader, leader);
    assert!(status(&members[new_leader]).unwrap().raft_term > term_before, "a new term must start");
    for i in 0..20 {
        assert_eq!(etcdctl(&members[survivors[1]].endpoint, &["put", &format!("k{i}"), "v"], None).stdout, "OK\n");
    }
    members[leader].spawn();
    members[leader].wait_ready();
    let applied = converged_applied(&members, &[0, 1, 2]);
    assert!(applied > 0);
    let dump = |m: &Member| etcdctl(&m.endpoint, &["get", "", "--prefix", "--consistency=s"], None).stdout;
    assert_eq!(dump(&members[leader]), dump(&members[new_leader]), "the rejoined member must hold the same data");
    assert_eq!(get_value(&members[leader], "after", true), "2\n");
}

#[test]
fn without_quorum_writes_fail_promptly_and_recover_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = start_cluster(Server::Detcd, dir.path(), 3, &[]);
    for i in 0..10 {
        assert_eq!(etcdctl(&members[0].endpoint, &["put", &format!("acked{i}"), "yes"], None).stdout, "OK\n");
    }
    members[1].kill();
    members[2].kill();
    let start = Instant::now();
    let out = etcdctl(&members[0].endpoint, &["--command-timeout=3s", "put", "lost", "maybe"], None);
    assert_ne!(out.code, 0, "a write without quorum must fail");
    assert!(start.elapsed() < Duration::from_secs(10), "the failed write must not hang: {:?}", start.elapsed());
    members[1].spawn();
    put_until_ok(&members[0], "recovered", "yes");
    for i in 0..10 {
        assert_eq!(get_value(&members[1], &format!("acked{i}"), false), "yes\n");
    }
}

#[test]
fn five_members_tolerate_two_failures() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = start_cluster(Server::Detcd, dir.path(), 5, &[]);
    assert_eq!(etcdctl(&members[0].endpoint, &["put", "five", "1"], None).stdout, "OK\n");
    let leader = leader_index(&members, &[0, 1, 2, 3, 4]);
    let victims: Vec<usize> = vec![leader, (leader + 1) % 5];
    for &v in &victims {
        members[v].kill();
    }
    let survivors: Vec<usize> = (0..5).filter(|i| !victims.contains(i)).collect();
    put_until_ok(&members[survivors[0]], "five", "2");
    for &s in &survivors {
        assert_eq!(get_value(&members[s], "five", false), "2\n");
    }
}
