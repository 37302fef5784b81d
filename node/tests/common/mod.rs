//! Process-level test harness: real `detcd` and real `etcd` binaries on loopback ports, driven by
//! the real `etcdctl`. Every process is killed when its handle drops; every wait is bounded.

#![allow(dead_code)]
#![allow(clippy::expect_used)] // test setup failures should panic loudly

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a member may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A free loopback port (bound then released; good enough on a test machine).
///
/// The kernel may hand the same ephemeral port out again once it is released, so ports already
/// given to this test process are never returned twice (a member whose client and peer ports
/// collide cannot start).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Which server a [`Member`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Detcd,
    Etcd,
}

/// A running server process.
pub struct Member {
    child: Option<Child>,
    pub server: Server,
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub name: String,
    /// `--initial-cluster` (for a single member: just itself).
    pub initial_cluster: String,
    /// Flags beyond the ones every member gets (e.g. `--snapshot-count=100`).
    pub extra_args: Vec<String>,
    pub client_port: u16,
    pub peer_port: u16,
    log_path: PathBuf,
}

pub fn detcd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_detcd")
}

/// Path of a tool that CI installs (`etcdctl`, `etcd`); panics with a clear message if missing.
pub fn tool(name: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path.display().to_string();
        }
    }
    panic!("`{name}` is not installed: run scripts/test (it installs etcd-client and etcd-server with apt-get)");
}

impl Member {
    /// Starts a single member on fresh loopback ports and waits until it serves.
    pub fn start(server: Server, data_dir: &Path) -> Member {
        Member::start_with(server, data_dir, &[])
    }

    /// Starts a single member with extra flags.
    pub fn start_with(server: Server, data_dir: &Path, extra_args: &[&str]) -> Member {
        let mut member = Member::new(server, "default", data_dir, extra_args);
        member.initial_cluster = format!("default=http://127.0.0.1:{}", member.peer_port);
        member.spawn();
        member.wait_ready();
        member
    }

    /// A member on fresh ports, not yet started.
    pub fn new(server: Server, name: &str, data_dir: &Path, extra_args: &[&str]) -> Member {
        let client_port = free_port();
        Member {
            child: None,
            server,
            endpoint: format!("127.0.0.1:{client_port}"),
            data_dir: data_dir.to_path_buf(),
            name: name.to_string(),
            initial_cluster: String::new(),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            client_port,
            peer_port: free_port(),
            log_path: data_dir.with_extension("log"),
        }
    }

    pub fn args(&self) -> Vec<String> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", self.initial_cluster),
        ]
        .into_iter()
        .chain(self.extra_args.iter().cloned())
        .collect()
    }

    /// Spawns the process with this member's flags (again, after a kill).
    pub fn spawn(&mut self) {
        let bin = match self.server {
            Server::Detcd => detcd_bin().to_string(),
            Server::Etcd => tool("etcd"),
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open log file");
        let child =
            Command::new(bin).args(self.args()).stdout(Stdio::null()).stderr(log).spawn().expect("spawn server");
        self.child = Some(child);
    }

    /// Waits until a linearizable read succeeds.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = etcdctl(&self.endpoint, &["--command-timeout=1s", "get", "readiness-probe"], None);
            if out.code == 0 {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("{:?} exited during start ({status}); log:\n{}", self.server, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{:?} not ready after {START_TIMEOUT:?}; log:\n{}",
                self.server,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Restarts after a kill and waits until it serves.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready();
    }

    /// Waits (bounded) for the process to exit by itself; answers whether it did.
    pub fn exits_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `size` members of one new cluster (token `token`) under `dir` and waits until every one
/// serves linearizable reads.
pub fn start_cluster(server: Server, dir: &Path, size: usize, extra_args: &[&str]) -> Vec<Member> {
    let mut members: Vec<Member> = (1..=size)
        .map(|i| Member::new(server, &format!("infra{i}"), &dir.join(format!("infra{i}")), extra_args))
        .collect();
    let initial: Vec<String> = members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect();
    for member in &mut members {
        member.initial_cluster = initial.join(",");
        member.spawn();
    }
    for member in &mut members {
        member.wait_ready();
    }
    members
}

/// The endpoints of members, comma separated, for `--endpoints`.
pub fn endpoints(members: &[&Member]) -> String {
    members.iter().map(|m| m.endpoint.as_str()).collect::<Vec<_>>().join(",")
}

/// What one `etcdctl` run printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs `etcdctl --endpoints=<endpoint> <args>` (API v3), with optional stdin, bounded in time.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> CtlOutput {
    let mut cmd = Command::new(tool("etcdctl"));
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--dial-timeout=2s")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn etcdctl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(input.as_bytes()).expect("write etcdctl stdin");
    }
    let out: Output = wait_bounded(child, Duration::from_secs(20));
    CtlOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("collect etcdctl output");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("collect etcdctl output");
    panic!("etcdctl did not finish within {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Replaces the per-cluster numbers etcd and detcd legitimately differ in (IDs, raft term) with
/// placeholders, in JSON, fields and table output alike.
pub fn normalize(text: &str) -> String {
    let mut out = text.to_string();
    for field in ["\"cluster_id\":", "\"member_id\":", "\"raft_term\":"] {
        out = replace_number_after(&out, field);
    }
    // etcdctl's client-side retry warnings carry a timestamp and a random client name.
    for field in ["\"ts\":\"", "\"target\":\""] {
        out = replace_string_after(&out, field);
    }
    out
}

fn replace_string_after(text: &str, marker: &str) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(marker) {
        let (head, tail) = rest.split_at(pos + marker.len());
        result.push_str(head);
        result.push('S');
        rest = &tail[tail.find('"').unwrap_or(tail.len())..];
    }
    result.push_str(rest);
    result
}

fn replace_number_after(text: &str, marker: &str) -> String {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(marker) {
        let (head, tail) = rest.split_at(pos + marker.len());
        result.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        result.push('N');
        rest = &tail[digits..];
    }
    result.push_str(rest);
    result
}
