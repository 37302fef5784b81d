//! Membership changes with the real `etcdctl`, as the guides scale a StatefulSet: 3 members, add a
//! learner and promote it, add a voter (5 members), remove two including the leader (3 members),
//! writes succeeding throughout; a removed member stops and refuses to come back with its old data;
//! re-added with a wiped data dir it catches up by snapshot; etcd's errors for bad changes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup failures should panic loudly

mod common;

use std::time::{Duration, Instant};

use common::{endpoints, etcdctl, start_cluster, Member, Server};

/// `etcdctl member list -w json`: (id, name, is learner), in ID order.
fn member_list(m: &Member) -> Vec<(u64, String, bool)> {
    let out = etcdctl(&m.endpoint, &["member", "list", "-w", "json"], None);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let mut list: Vec<(u64, String, bool)> = json["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["ID"].as_u64().expect("ID"),
                m["name"].as_str().unwrap_or_default().to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    list.sort();
    list
}

/// The member ID and the leader's ID as `endpoint status` reports them.
fn ids(m: &Member) -> (u64, u64) {
    let out = etcdctl(&m.endpoint, &["endpoint", "status", "-w", "json"], None);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    let s = &json[0]["Status"];
    (s["header"]["member_id"].as_u64().expect("member_id"), s["leader"].as_u64().expect("leader"))
}

fn put(m: &Member, key: &str, value: &str) {
    let out = etcdctl(&m.endpoint, &["put", key, value], None);
    assert_eq!(out.stdout, "OK\n", "put {key} through {}: {out:?}", m.endpoint);
}

/// `etcdctl member add NAME --peer-urls=URL [--learner]`, checked like a user would read it;
/// answers (new member ID, the ETCD_INITIAL_CLUSTER it printed).
fn member_add(via: &Member, new: &Member, learner: bool) -> (u64, String) {
    let peer = format!("--peer-urls=http://127.0.0.1:{}", new.peer_port);
    let mut args = vec!["member", "add", new.name.as_str(), peer.as_str()];
    if learner {
        args.push("--learner");
    }
    let out = etcdctl(&via.endpoint, &args, None);
    assert_eq!(out.code, 0, "member add: {out:?}");
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.starts_with("Member ") && first.contains(" added to cluster "), "{}", out.stdout);
    let id = u64::from_str_radix(first.split_whitespace().nth(1).expect("id"), 16).expect("hex id");
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no {name} in {}", out.stdout))
            .to_string()
    };
    assert_eq!(field("ETCD_NAME"), new.name);
    assert_eq!(field("ETCD_INITIAL_ADVERTISE_PEER_URLS"), format!("http://127.0.0.1:{}", new.peer_port));
    assert_eq!(field("ETCD_INITIAL_CLUSTER_STATE"), "existing");
    (id, field("ETCD_INITIAL_CLUSTER"))
}

/// Starts `member` with what `member add` printed.
fn join(member: &mut Member, initial_cluster: String) {
    member.initial_cluster = initial_cluster;
    member.extra_args.push("--initial-cluster-state=existing".to_string());
    member.spawn();
    member.wait_ready();
}

fn retry_until_ok(what: &str, mut f: impl FnMut() -> common::CtlOutput) -> common::CtlOutput {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = f();
        if out.code == 0 {
            return out;
        }
        assert!(Instant::now() < deadline, "{what} kept failing: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `m`'s member list satisfies `ok`: a member lists the membership it applied, so
/// right after a change commits one that has not applied it yet still lists the old one (as etcd).
fn until_listed(what: &str, m: &Member, ok: impl Fn(&[(u64, String, bool)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = member_list(m);
        if ok(&list) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {} lists {list:?}", m.name);
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn data(m: &Member) -> String {
    etcdctl(&m.endpoint, &["get", "k", "--prefix", "--consistency=s"], None).stdout
}

#[test]
fn scale_three_to_five_to_three_with_writes_throughout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--snapshot-count=50"];
    let mut members = start_cluster(Server::Detcd, dir.path(), 3, &args);
    put(&members[0], "k00", "three");

    // A learner joins and is promoted once in sync.
    let mut infra4 = Member::new(Server::Detcd, "infra4", &dir.path().join("infra4"), &args);
    let (id4, cluster) = member_add(&members[1], &infra4, true);
    until_listed("an added learner is unstarted", &members[0], |list| list.contains(&(id4, String::new(), true)));
    put(&members[2], "k01", "learner-added");
    join(&mut infra4, cluster);
    put(&infra4, "k02", "through-the-learner");
    let promoted = retry_until_ok("member promote", || {
        etcdctl(&members[0].endpoint, &["member", "promote", &format!("{id4:x}")], None)
    });
    assert!(promoted.stdout.contains(&format!("Member {id4:16x} promoted in cluster")), "{}", promoted.stdout);
    until_listed("promoted", &infra4, |list| list.contains(&(id4, "infra4".to_string(), false)));

    // A fifth member joins as a voter.
    let mut infra5 = Member::new(Server::Detcd, "infra5", &dir.path().join("infra5"), &args);
    let (id5, cluster) = member_add(&infra4, &infra5, false);
    put(&members[0], "k03", "five-configured");
    join(&mut infra5, cluster);
    members.push(infra4);
    members.push(infra5);
    for (i, m) in members.iter().enumerate() {
        put(m, &format!("k1{i}"), "five");
    }
    let all: Vec<&Member> = members.iter().collect();
    let status = etcdctl(&endpoints(&all[..1]), &["endpoint", "status", "--cluster", "-w", "table"], None);
    assert_eq!(status.stdout.matches("3.4.23").count(), 5, "{}", status.stdout);
    until_listed("five members", &members[3], |list| list.len() == 5);
    until_listed("the fifth a voter", &members[0], |list| list.iter().any(|(id, _, learner)| *id == id5 && !learner));

    // Remove the leader and one follower, through a member that stays.
    let (_, leader) = ids(&members[0]);
    let leader_at = members.iter().position(|m| ids(m).0 == leader).expect("the leader is a member");
    let other = (0..members.len()).find(|&i| i != leader_at).expect("a follower");
    let stay: Vec<usize> = (0..members.len()).filter(|&i| i != leader_at && i != other).collect();
    for gone in [leader_at, other] {
        let id = ids(&members[gone]).0;
        let out = etcdctl(&members[stay[0]].endpoint, &["member", "remove", &format!("{id:x}")], None);
        assert!(out.stdout.contains(&format!("Member {id:16x} removed from cluster")), "{out:?}");
        assert!(members[gone].exits_within(Duration::from_secs(10)), "a removed member keeps running");
        assert!(members[gone].log().contains("has been permanently removed from the cluster"));
        retry_until_ok("a write after a removal", || {
            etcdctl(&members[stay[1]].endpoint, &["put", &format!("k2{gone}"), "x"], None)
        });
    }
    until_listed("three members", &members[stay[2]], |list| list.len() == 3);
    let remaining: Vec<&Member> = stay.iter().map(|&i| &members[i]).collect();
    let status = etcdctl(&endpoints(&remaining[..1]), &["endpoint", "status", "--cluster", "-w", "table"], None);
    assert_eq!(status.stdout.matches("3.4.23").count(), 3, "{}", status.stdout);
    for m in &remaining {
        assert!(
            status.stdout.contains(&format!("127.0.0.1:{}", m.client_port)),
            "{} missing:
{}",
            m.name,
            status.stdout
        );
    }
    for &i in &stay {
        put(&members[i], &format!("k3{i}"), "three-again");
    }
    let reference = etcdctl(&members[stay[0]].endpoint, &["get", "k", "--prefix"], None).stdout;
    assert_eq!(reference.lines().count(), 2 * 14, "every acknowledged write: {reference}");
    for &i in &stay {
        assert_eq!(data(&members[i]), reference, "member {i} differs");
    }

    // A removed member refuses to come back with its old identity.
    let removed = &mut members[other];
    removed.spawn();
    assert!(removed.exits_within(Duration::from_secs(10)), "a removed member started serving again");
    assert!(removed.log().contains("permanently removed"), "{}", removed.log());

    // Re-added with a wiped data dir, it catches up by snapshot (the log was purged: 120 writes
    // with --snapshot-count=50).
    for i in 0..120 {
        put(&members[stay[i % 3]], &format!("k4{i:03}"), "bulk");
    }
    let mut again = Member::new(Server::Detcd, "again", &dir.path().join("again"), &args);
    let (_, cluster) = member_add(&members[stay[0]], &again, false);
    join(&mut again, cluster);
    assert!(again.log().contains("snapshot installed"), "caught up without a snapshot:\n{}", again.log());
    let reference = etcdctl(&members[stay[0]].endpoint, &["get", "k", "--prefix"], None).stdout;
    let deadline = Instant::now() + Duration::from_secs(10);
    while data(&again) != reference {
        assert!(Instant::now() < deadline, "the re-added member never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bad_membership_changes_get_etcd_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let members = start_cluster(Server::Detcd, dir.path(), 3, &[]);
    // A member counts as started (etcd's strict reconfiguration check) once it published its name,
    // which it does through Raft just after it starts.
    let published = || member_list(&members[0]).iter().all(|(_, name, _)| !name.is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !published() {
        assert!(
            std::time::Instant::now() < deadline,
            "members did not publish their names: {:?}",
            member_list(&members[0])
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ep = members[0].endpoint.as_str();
    let err = |args: &[&str]| etcdctl(ep, args, None).stderr.lines().last().unwrap_or_default().to_string();
    let taken = format!("--peer-urls=http://127.0.0.1:{}", members[1].peer_port);
    assert_eq!(err(&["member", "add", "dup", &taken]), "Error: etcdserver: Peer URLs already exists");
    assert_eq!(err(&["member", "remove", "1234"]), "Error: etcdserver: member not found");
    let (voter, _) = ids(&members[1]);
    assert_eq!(
        err(&["member", "promote", &format!("{voter:x}")]),
        "Error: etcdserver: can only promote a learner member"
    );
    let first = Member::new(Server::Detcd, "l1", &dir.path().join("l1"), &[]);
    member_add(&members[0], &first, true);
    let second = format!("--peer-urls=http://127.0.0.1:{}", common::free_port());
    assert_eq!(
        err(&["member", "add", "l2", &second, "--learner"]),
        "Error: etcdserver: too many learner members in cluster"
    );
    // The unstarted learner never catches up, so it cannot be promoted.
    until_listed("the learner", &members[0], |list| list.iter().any(|(_, _, l)| *l));
    let (learner, _, _) = member_list(&members[0]).into_iter().find(|(_, _, l)| *l).expect("the learner");
    assert_eq!(
        err(&["member", "promote", &format!("{learner:x}")]),
        "Error: etcdserver: can only promote a learner member which is in sync with leader"
    );
    // Voters that never start count in the quorum: with 3 started of 5 voters, a sixth voter
    // would need 4 started members.
    for name in ["v1", "v2"] {
        let unstarted = Member::new(Server::Detcd, name, &dir.path().join(name), &[]);
        member_add(&members[0], &unstarted, false);
    }
    let sixth = format!("--peer-urls=http://127.0.0.1:{}", common::free_port());
    assert_eq!(
        err(&["member", "add", "v3", &sixth]),
        "Error: etcdserver: re-configuration failed due to not enough started members"
    );
    put(&members[2], "still", "writable");
}

#[test]
fn move_leader_and_sigterm_hand_leadership_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(Server::Detcd, dir.path(), 3, &[]);
    let all: Vec<&Member> = members.iter().collect();
    let eps = endpoints(&all);
    let (_, leader) = ids(&members[0]);
    let target = members.iter().map(|m| ids(m).0).find(|id| *id != leader).expect("a follower");
    let out = etcdctl(&eps, &["move-leader", &format!("{target:x}")], None);
    assert_eq!(out.stdout, format!("Leadership transferred from {leader:x} to {target:x}\n"), "{out:?}");
    assert!(members.iter().all(|m| ids(m).1 == target), "every member follows the transferee");
    let bad = etcdctl(&eps, &["move-leader", "1234"], None);
    assert_eq!(bad.stderr.lines().last(), Some("Error: etcdserver: bad leader transferee"));

    // SIGTERM on the leader: it hands over before it stops, and exits cleanly.
    let at = members.iter().position(|m| ids(m).0 == target).expect("the new leader");
    assert!(members[at].terminate(), "the leader did not stop cleanly:\n{}", members[at].log());
    assert!(members[at].log().contains("handed leadership over"), "{}", members[at].log());
    let rest: Vec<usize> = (0..3).filter(|&i| i != at).collect();
    let (_, next) = ids(&members[rest[0]]);
    assert!(next != 0 && next != target, "a new leader right after the hand-over");
    put(&members[rest[1]], "after-handover", "ok");
}

#[test]
fn a_member_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let members = start_cluster(Server::Detcd, dir.path(), 3, &[]);
    put(&members[0], "k", "before");
    let (_, leader) = ids(&members[0]);
    // Same peers, another token: another cluster ID, so the members refuse to deal with it.
    let mut rogue = Member::new(Server::Detcd, "rogue", &dir.path().join("rogue"), &["--initial-cluster-token=other"]);
    let mut initial: Vec<String> =
        members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
    initial.push(format!("rogue=http://127.0.0.1:{}", rogue.peer_port));
    rogue.initial_cluster = initial.join(",");
    rogue.spawn();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !rogue.log().contains("a peer refuses this member") {
        assert!(Instant::now() < deadline, "no clear refusal in the rogue's log:\n{}", rogue.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(rogue.log().contains("belongs to cluster"), "{}", rogue.log());
    assert!(members[1].log().contains("refusing a peer of another cluster"), "{}", members[1].log());
    assert_eq!(ids(&members[2]).1, leader, "the cluster kept its leader");
    put(&members[1], "k", "after");
    let got = etcdctl(&rogue.endpoint, &["--command-timeout=2s", "put", "x", "y"], None);
    assert_ne!(got.code, 0, "the rogue has no quorum and must not accept writes: {got:?}");
}
