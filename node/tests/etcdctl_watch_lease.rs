//! Watches, leases, locks and elections with the real `etcdctl` 3.4: the same session gives the
//! same output on detcd as on real etcd 3.4.23 (IDs, lease IDs and remaining TTLs aside), and the
//! client-side lock and election recipes exclude and elect.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup failures should panic loudly

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{etcdctl, normalize, tool, CtlOutput, Member, Server};

/// A long-running `etcdctl` (watch, lock, elect), killed when dropped.
struct Background {
    child: Child,
}

impl Background {
    fn start(endpoint: &str, args: &[&str]) -> Background {
        let child = Command::new(tool("etcdctl"))
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn etcdctl");
        Background { child }
    }

    /// Whether it exited by itself.
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits up to `limit` for it to exit by itself.
    fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.exited() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Asks it to stop as a user's Ctrl-C would (SIGTERM: locks are released, candidates resign),
    /// waiting for it to exit.
    fn terminate(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        assert!(self.wait_exit(Duration::from_secs(10)), "etcdctl did not exit on SIGTERM");
    }

    /// Stops it (if still running) and answers what it printed on stdout and stderr.
    fn finish(mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut err);
        }
        (out, err)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces lease IDs (hex as etcdctl prints them, decimal as JSON carries them) by `L1`, `L2`,
/// ... in the order they were granted, remaining TTLs (which tick) by `R`, and sorts the names in
/// `attached keys([..])`: etcd lists them from a Go map, in no fixed order.
fn normalize_leases(text: &str, leases: &[String]) -> String {
    let mut out = normalize(text);
    for (i, hex) in leases.iter().enumerate() {
        let name = format!("L{}", i + 1);
        out = out.replace(hex.as_str(), &name);
        if let Ok(id) = i64::from_str_radix(hex, 16) {
            out = out.replace(&id.to_string(), &name);
        }
    }
    let mut result = String::new();
    let mut rest = out.as_str();
    while let Some(pos) = rest.find("remaining(") {
        let (head, tail) = rest.split_at(pos + "remaining(".len());
        result.push_str(head);
        result.push('R');
        rest = &tail[tail.find('s').unwrap_or(0)..];
    }
    result.push_str(rest);
    sort_attached_keys(&result)
}

fn sort_attached_keys(text: &str) -> String {
    const OPEN: &str = "attached keys([";
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find(OPEN) {
        let (head, tail) = rest.split_at(pos + OPEN.len());
        out.push_str(head);
        let end = tail.find(']').unwrap_or(tail.len());
        let mut keys: Vec<&str> = tail[..end].split_whitespace().collect();
        keys.sort_unstable();
        out.push_str(&keys.join(" "));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The lease ID in `lease <hex> granted with TTL(..)`.
fn granted_id(out: &CtlOutput) -> String {
    out.stdout.split_whitespace().nth(1).unwrap_or_else(|| panic!("no lease granted: {out:?}")).to_string()
}

/// Runs the session on `member`; answers its transcript.
fn session(member: &Member) -> String {
    let ep = member.endpoint.as_str();
    let mut transcript = String::new();
    let mut leases: Vec<String> = Vec::new();
    let mut log = |args: &[&str], out: CtlOutput, leases: &[String]| {
        transcript.push_str(&format!(
            "$ etcdctl {}\n{}{}--- exit {}\n",
            args.join(" "),
            out.stdout,
            out.stderr.lines().filter(|l| !l.starts_with('{')).map(|l| format!("{l}\n")).collect::<String>(),
            out.code
        ));
        transcript = normalize_leases(&transcript, leases);
    };
    let live = Background::start(ep, &["watch", "foo", "--prefix", "--prev-kv"]);
    let json = Background::start(ep, &["watch", "foo3", "-w", "json"]);
    std::thread::sleep(Duration::from_millis(500));
    for args in [
        &["put", "foo1", "a"][..],
        &["put", "foo2", "b"],
        &["put", "foo1", "a2"],
        &["del", "foo1"],
        &["put", "bar", "x"],
    ] {
        log(args, etcdctl(ep, args, None), &leases);
    }
    let grant = etcdctl(ep, &["lease", "grant", "60"], None);
    leases.push(granted_id(&grant));
    log(&["lease", "grant", "60"], grant, &leases);
    let l1 = leases[0].clone();
    let steps: Vec<Vec<&str>> = vec![
        vec!["put", "--lease", &l1, "foo3", "leased"],
        vec!["put", "--lease", &l1, "foo4", "leased-too"],
        vec!["lease", "timetolive", &l1],
        vec!["lease", "timetolive", &l1, "--keys"],
        vec!["lease", "list"],
        vec!["lease", "keep-alive", "--once", &l1],
        vec!["get", "foo", "--prefix", "-w", "json"],
        vec!["lease", "revoke", &l1],
        vec!["lease", "revoke", &l1],
        vec!["lease", "timetolive", &l1],
        vec!["lease", "keep-alive", "--once", &l1],
        vec!["put", "--lease", &l1, "foo5", "x"],
        vec!["put", "--lease", "1234", "foo5", "x"],
        vec!["get", "foo", "--prefix"],
        vec!["lease", "grant", "9000000001"],
        vec!["lease", "list"],
    ];
    for args in &steps {
        log(args, etcdctl(ep, args, None), &leases);
    }
    // A lease below the minimum TTL is raised to it (2 s with the default timing) and expires.
    let short = etcdctl(ep, &["lease", "grant", "1"], None);
    leases.push(granted_id(&short));
    log(&["lease", "grant", "1"], short, &leases);
    let l2 = leases[1].clone();
    log(
        &["put", "--lease", &l2, "foo6", "short"],
        etcdctl(ep, &["put", "--lease", &l2, "foo6", "short"], None),
        &leases,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !etcdctl(ep, &["get", "foo6"], None).stdout.is_empty() {
        std::thread::sleep(Duration::from_millis(200));
    }
    for args in [&["get", "foo6"][..], &["lease", "timetolive", &l2]] {
        log(args, etcdctl(ep, args, None), &leases);
    }
    // History: from revision 2, and from a compacted revision.
    let replay = Background::start(ep, &["watch", "--rev=2", "foo", "--prefix"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (replayed, _) = replay.finish();
    log(&["compaction", "4"], etcdctl(ep, &["compaction", "4"], None), &leases);
    let mut compacted = Background::start(ep, &["watch", "--rev=2", "foo"]);
    compacted.wait_exit(Duration::from_secs(5));
    let (compacted_out, compacted_err) = compacted.finish();
    std::thread::sleep(Duration::from_millis(500));
    let (live_out, _) = live.finish();
    let (json_out, _) = json.finish();
    let json_out: String = json_out.lines().map(|l| format!("{l}\n")).collect();
    format!(
        "{transcript}=== watch foo --prefix --prev-kv\n{live_out}=== watch foo3 -w json\n{}=== watch --rev=2 foo \
         --prefix\n{replayed}=== watch --rev=2 foo after compaction 4\n{compacted_out}{}",
        normalize_leases(&json_out, &leases),
        compacted_err.lines().filter(|l| !l.starts_with('{')).map(|l| format!("{l}\n")).collect::<String>()
    )
}

#[test]
fn attached_keys_compare_in_any_order() {
    let line = "lease L1 granted with TTL(60s), remaining(Rs), attached keys([foo4 foo3])\nnext";
    assert_eq!(
        sort_attached_keys(line),
        "lease L1 granted with TTL(60s), remaining(Rs), attached keys([foo3 foo4])\nnext"
    );
}

#[test]
fn watch_and_lease_session_matches_real_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = Member::start(Server::Etcd, &dir.path().join("etcd"));
    let expected = session(&etcd);
    drop(etcd);
    let detcd = Member::start(Server::Detcd, &dir.path().join("detcd"));
    let actual = session(&detcd);
    if let Ok(path) = std::env::var("DETCD_TRANSCRIPT") {
        std::fs::write(path, &actual).expect("write transcript");
    }
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .map(|(i, (e, a))| format!("line {}:\n  etcd:  {e}\n  detcd: {a}", i + 1))
            .collect();
        panic!(
            "sessions differ ({} lines differ; etcd {} lines, detcd {} lines):\n{}\n=== etcd 3.4.23\n{expected}\n=== detcd\n{actual}",
            diff.len(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

#[test]
fn lock_excludes_and_elect_elects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = Member::start(Server::Detcd, &dir.path().join("data"));
    let ep = m.endpoint.as_str();
    // A holds the lock until killed; B must wait for it.
    let holder = Background::start(ep, &["lock", "mylock"]);
    std::thread::sleep(Duration::from_millis(1000));
    let mut waiter = Background::start(ep, &["lock", "mylock", "echo", "got the lock"]);
    assert!(!waiter.wait_exit(Duration::from_secs(2)), "a second locker ran while the lock was held");
    let mut holder = holder;
    holder.terminate();
    let (held, _) = holder.finish();
    assert!(held.starts_with("mylock/"), "the holder prints its lock key: {held:?}");
    assert!(waiter.wait_exit(Duration::from_secs(10)), "the waiter never got the lock after the holder died");
    let (out, err) = waiter.finish();
    assert_eq!(out, "got the lock\n", "stderr: {err}");

    // The first candidate leads; an observer sees it; when it dies the second takes over.
    let first = Background::start(ep, &["elect", "myelection", "first"]);
    std::thread::sleep(Duration::from_millis(1000));
    let second = Background::start(ep, &["elect", "myelection", "second"]);
    std::thread::sleep(Duration::from_millis(500));
    let observer = Background::start(ep, &["elect", "-l", "myelection"]);
    std::thread::sleep(Duration::from_millis(1000));
    let mut first = first;
    first.terminate();
    std::thread::sleep(Duration::from_millis(3000));
    let (seen, _) = observer.finish();
    let (second_out, _) = second.finish();
    let proposals: Vec<&str> = seen.lines().filter(|l| !l.starts_with("myelection/")).collect();
    assert_eq!(proposals, vec!["first", "second"], "observer output: {seen:?}");
    assert!(second_out.ends_with("second\n"), "the second candidate announces itself once elected: {second_out:?}");
}
