//! Command-line flags and `ETCD_*` environment variables, with etcd's names, meanings and defaults.
//!
//! Owns: turning `argv` + environment into a validated [`Config`], and the one-line errors users see
//! for an unknown flag or a bad value. Depends on nothing else in the node.
//!
//! Parsing follows Go's `flag` package, which etcd uses: `-name value`, `--name value`,
//! `--name=value`; boolean flags take no value. A flag given on the command line wins over its
//! environment variable (`--data-dir` <- `ETCD_DATA_DIR`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The version this binary reports for `--version`.
pub const DETCD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The etcd server version detcd is wire-compatible with; reported to clients (`Status.version`).
pub const ETCD_COMPAT_VERSION: &str = "3.4.23";
/// The etcd cluster version reported on `/version`.
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";

/// etcd caps the election timeout at 50 s.
const ELECTION_TIMEOUT_MS_MAX: u64 = 50_000;
/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const MAX_REQUEST_BYTES_DEFAULT: u64 = 1_572_864;
/// etcd's default backend quota when `--quota-backend-bytes` is 0 (2 GiB).
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's hard upper bound for the backend quota (8 GiB).
const QUOTA_BACKEND_BYTES_MAX: u64 = 8 * 1024 * 1024 * 1024;

/// Whether this member bootstraps a new cluster or joins an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// A URL as etcd's flags take it: `scheme://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Url {
    /// Parses `http://host:port` (https is recognised but needs TLS flags, see validation).
    pub fn parse(text: &str) -> Result<Url, String> {
        let (scheme, rest) =
            text.split_once("://").ok_or_else(|| format!("URL scheme must be http, https, unix, or unixs: {text}"))?;
        if scheme != "http" && scheme != "https" {
            return Err(format!("URL scheme must be http, https, unix, or unixs: {text}"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!("URL must not contain a path: {text}"));
        }
        let (host, port) =
            split_host_port(rest).ok_or_else(|| format!("URL address does not have the form \"host:port\": {text}"))?;
        let port: u16 = port.parse().map_err(|_| format!("invalid port in URL: {text}"))?;
        Ok(Url { scheme: scheme.to_string(), host: host.to_string(), port })
    }

    /// The socket address to listen on or dial; `localhost` means the IPv4 loopback.
    pub fn socket_addr(&self) -> Result<SocketAddr, String> {
        let host = if self.host == "localhost" { "127.0.0.1" } else { self.host.as_str() };
        (host, self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {self}: {e}"))?
            .next()
            .ok_or_else(|| format!("cannot resolve {self}"))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        return Some((host, port));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.is_empty() || host.contains(':') {
        return None;
    }
    Some((host, port))
}

/// A validated member configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<Url>,
    /// `(name, peer URL)` pairs of `--initial-cluster`, in the order given.
    pub initial_cluster: Vec<(String, Url)>,
    pub initial_cluster_token: String,
    pub initial_cluster_state: ClusterState,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub max_request_bytes: u64,
    pub max_txn_ops: usize,
    pub quota_backend_bytes: u64,
    pub snapshot_count: u64,
    pub log_level: String,
    /// Bytes of durable Raft entries kept in memory (older ones are read from the WAL). Not a
    /// flag: etcd has none; the simulator lowers it so that catching up reads the WAL.
    pub raft_log_cache_bytes: u64,
}

/// The default of [`Config::raft_log_cache_bytes`].
pub const RAFT_LOG_CACHE_BYTES_DEFAULT: u64 = 8 * 1024 * 1024;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    Version,
    Help,
}

/// The flags detcd understands: name, default (None = boolean flag), help text.
const FLAGS: &[(&str, Option<&str>, &str)] = &[
    ("name", Some("default"), "Human-readable name for this member."),
    ("data-dir", Some(""), "Path to the data directory (default: ${name}.detcd)."),
    ("listen-client-urls", Some("http://localhost:2379"), "List of URLs to listen on for client traffic."),
    (
        "advertise-client-urls",
        Some("http://localhost:2379"),
        "List of this member's client URLs to advertise to the public.",
    ),
    ("listen-peer-urls", Some("http://localhost:2380"), "List of URLs to listen on for peer traffic."),
    (
        "initial-advertise-peer-urls",
        Some("http://localhost:2380"),
        "List of this member's peer URLs to advertise to the rest of the cluster.",
    ),
    (
        "initial-cluster",
        Some(""),
        "Initial cluster configuration for bootstrapping (default: ${name}=${initial-advertise-peer-urls}).",
    ),
    ("initial-cluster-token", Some("etcd-cluster"), "Initial cluster token for the cluster during bootstrap."),
    ("initial-cluster-state", Some("new"), "Initial cluster state ('new' or 'existing')."),
    ("heartbeat-interval", Some("100"), "Time (in milliseconds) of a heartbeat interval."),
    ("election-timeout", Some("1000"), "Time (in milliseconds) for an election to timeout."),
    ("max-request-bytes", Some("1572864"), "Maximum client request size in bytes the server will accept."),
    ("max-txn-ops", Some("128"), "Maximum number of operations permitted in a transaction."),
    (
        "quota-backend-bytes",
        Some("0"),
        "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota).",
    ),
    ("snapshot-count", Some("100000"), "Number of committed transactions to trigger a snapshot to disk."),
    ("log-level", Some("info"), "Configures log level. Only supports debug, info, warn, error, panic, or fatal."),
    ("version", None, "Print the version and exit."),
    ("help", None, "Show this help and exit."),
];

/// The usage text printed for `--help`.
pub fn usage() -> String {
    let mut text = String::from("Usage:\n\n  detcd [flags]\n\nFlags (each may also be set as ETCD_<FLAG_NAME>):\n");
    for (name, default, help) in FLAGS {
        match default {
            Some(d) if !d.is_empty() => text.push_str(&format!("  --{name} '{d}'\n      {help}\n")),
            _ => text.push_str(&format!("  --{name}\n      {help}\n")),
        }
    }
    text
}

/// Parses the command line (without the program name) and environment.
///
/// Errors are one line, naming the offending flag or variable, as users of etcd expect.
pub fn parse<I, S>(args: I, env: &BTreeMap<String, String>) -> Result<Command, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let given = parse_args(args)?;
    if given.contains_key("help") {
        return Ok(Command::Help);
    }
    if given.contains_key("version") {
        return Ok(Command::Version);
    }
    let mut values: BTreeMap<&'static str, String> = BTreeMap::new();
    for (name, default, _) in FLAGS {
        let Some(default) = default else { continue };
        let value = match given.get(*name) {
            Some(v) => v.clone(),
            None => match env.get(&env_name(name)) {
                Some(v) => v.clone(),
                None => (*default).to_string(),
            },
        };
        values.insert(name, value);
    }
    build(&values, &given).map(|c| Command::Run(Box::new(c)))
}

/// `data-dir` -> `ETCD_DATA_DIR`.
fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

fn parse_args<I, S>(args: I) -> Result<BTreeMap<&'static str, String>, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut given = BTreeMap::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.as_ref();
        let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|b| !b.is_empty());
        let Some(body) = body else {
            return Err(format!("'{arg}' is not a valid flag"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some((flag, default, _)) = FLAGS.iter().find(|(n, _, _)| *n == name) else {
            return Err(format!("flag provided but not defined: -{name}"));
        };
        let value = match (default, inline) {
            (None, None) => "true".to_string(),
            (None, Some(v)) => match v.as_str() {
                "true" | "1" => "true".to_string(),
                "false" | "0" => continue,
                _ => return Err(format!("invalid boolean value {v:?} for -{name}")),
            },
            (Some(_), Some(v)) => v,
            (Some(_), None) => {
                args.next().map(|v| v.as_ref().to_string()).ok_or_else(|| format!("flag needs an argument: -{name}"))?
            }
        };
        given.insert(*flag, value);
    }
    Ok(given)
}

fn number<T: std::str::FromStr>(values: &BTreeMap<&'static str, String>, name: &str) -> Result<T, String> {
    let text = values.get(name).map(String::as_str).unwrap_or("");
    text.trim().parse().map_err(|_| format!("invalid value {text:?} for flag -{name}: parse error"))
}

fn urls(values: &BTreeMap<&'static str, String>, name: &str) -> Result<Vec<Url>, String> {
    let text = values.get(name).map(String::as_str).unwrap_or("");
    let list: Result<Vec<Url>, String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|u| Url::parse(u).map_err(|e| format!("invalid value {text:?} for flag -{name}: {e}")))
        .collect();
    let list = list?;
    if list.is_empty() {
        return Err(format!("invalid value {text:?} for flag -{name}: at least one URL is required"));
    }
    Ok(list)
}

fn build(values: &BTreeMap<&'static str, String>, given: &BTreeMap<&'static str, String>) -> Result<Config, String> {
    let text = |name: &str| values.get(name).cloned().unwrap_or_default();
    let name = text("name");
    let data_dir = match text("data-dir") {
        d if d.is_empty() => PathBuf::from(format!("{name}.detcd")),
        d => PathBuf::from(d),
    };
    let initial_advertise_peer_urls = urls(values, "initial-advertise-peer-urls")?;
    let initial_cluster = match text("initial-cluster") {
        c if c.is_empty() => initial_advertise_peer_urls.iter().map(|u| (name.clone(), u.clone())).collect(),
        c => parse_initial_cluster(&c)?,
    };
    let initial_cluster_state = match text("initial-cluster-state").as_str() {
        "new" => ClusterState::New,
        "existing" => ClusterState::Existing,
        other => {
            return Err(format!(
                "invalid value {other:?} for flag -initial-cluster-state: valid values are \"new\", \"existing\""
            ))
        }
    };
    let heartbeat_ms: u64 = number(values, "heartbeat-interval")?;
    let election_ms: u64 = number(values, "election-timeout")?;
    if heartbeat_ms == 0 {
        return Err("--heartbeat-interval must be greater than 0".to_string());
    }
    if election_ms < 5 * heartbeat_ms {
        return Err(format!("--election-timeout[{election_ms}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat_ms}ms]"));
    }
    if election_ms > ELECTION_TIMEOUT_MS_MAX {
        return Err(format!(
            "--election-timeout[{election_ms}ms] is too long, and should be set less than {ELECTION_TIMEOUT_MS_MAX}ms"
        ));
    }
    let quota: u64 = number(values, "quota-backend-bytes")?;
    if quota > QUOTA_BACKEND_BYTES_MAX {
        return Err(format!("--quota-backend-bytes[{quota}] exceeds the maximum of {QUOTA_BACKEND_BYTES_MAX} bytes"));
    }
    let max_request_bytes: u64 = number(values, "max-request-bytes")?;
    if max_request_bytes == 0 {
        return Err("--max-request-bytes must be greater than 0".to_string());
    }
    let max_txn_ops: usize = number(values, "max-txn-ops")?;
    if max_txn_ops == 0 {
        return Err("--max-txn-ops must be greater than 0".to_string());
    }
    let log_level = text("log-level");
    if !["debug", "info", "warn", "error", "panic", "fatal"].contains(&log_level.as_str()) {
        return Err(format!(
            "invalid value {log_level:?} for flag -log-level: only supports debug, info, warn, error, panic, or fatal"
        ));
    }
    let config = Config {
        name: name.clone(),
        data_dir,
        listen_client_urls: urls(values, "listen-client-urls")?,
        advertise_client_urls: urls(values, "advertise-client-urls")?,
        listen_peer_urls: urls(values, "listen-peer-urls")?,
        initial_advertise_peer_urls,
        initial_cluster,
        initial_cluster_token: text("initial-cluster-token"),
        initial_cluster_state,
        heartbeat_interval: Duration::from_millis(heartbeat_ms),
        election_timeout: Duration::from_millis(election_ms),
        max_request_bytes,
        max_txn_ops,
        quota_backend_bytes: if quota == 0 { QUOTA_BACKEND_BYTES_DEFAULT } else { quota },
        snapshot_count: number(values, "snapshot-count")?,
        raft_log_cache_bytes: RAFT_LOG_CACHE_BYTES_DEFAULT,
        log_level,
    };
    validate_membership(&config, given)?;
    Ok(config)
}

fn parse_initial_cluster(text: &str) -> Result<Vec<(String, Url)>, String> {
    let mut members = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| {
            format!("invalid value {text:?} for flag -initial-cluster: {part:?} is not of the form name=url")
        })?;
        let url = Url::parse(url).map_err(|e| format!("invalid value {text:?} for flag -initial-cluster: {e}"))?;
        members.push((name.to_string(), url));
    }
    if members.is_empty() {
        return Err(format!("invalid value {text:?} for flag -initial-cluster: no members"));
    }
    Ok(members)
}

/// etcd refuses a bootstrap where this member's advertised peer URLs do not match its entry in
/// `--initial-cluster`; so do we.
fn validate_membership(config: &Config, _given: &BTreeMap<&'static str, String>) -> Result<(), String> {
    let mine: Vec<&Url> = config.initial_cluster.iter().filter(|(n, _)| *n == config.name).map(|(_, u)| u).collect();
    if mine.is_empty() {
        return Err(format!("couldn't find local name {:?} in the initial cluster configuration", config.name));
    }
    let mut advertised: Vec<String> = config.initial_advertise_peer_urls.iter().map(Url::to_string).collect();
    let mut listed: Vec<String> = mine.iter().map(|u| u.to_string()).collect();
    advertised.sort();
    listed.sort();
    if advertised != listed {
        return Err(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
            config.name,
            listed.join(","),
            advertised.join(",")
        ));
    }
    for url in config.listen_client_urls.iter().chain(&config.listen_peer_urls) {
        if url.scheme == "https" {
            return Err(format!("{url}: https URLs need TLS flags, which detcd does not support yet"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match parse(args, &env)? {
            Command::Run(c) => Ok(*c),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    #[test]
    fn defaults_match_etcd() {
        let c = run(&[], &[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.detcd"));
        assert_eq!(c.listen_client_urls[0].socket_addr().unwrap(), "127.0.0.1:2379".parse().unwrap());
        assert_eq!(c.listen_peer_urls[0].port, 2380);
        assert_eq!(c.initial_cluster, vec![("default".to_string(), Url::parse("http://localhost:2380").unwrap())]);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(c.election_timeout, Duration::from_millis(1000));
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
        assert_eq!(c.snapshot_count, 100_000);
        assert_eq!(c.initial_cluster_state, ClusterState::New);
    }

    #[test]
    fn go_style_flag_forms_are_accepted() {
        let c = run(&["-name", "a", "--data-dir=/tmp/x", "--max-txn-ops", "7"], &[]).unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.max_txn_ops, 7);
    }

    #[test]
    fn environment_fills_flags_and_command_line_wins() {
        let c = run(&["--max-txn-ops=9"], &[("ETCD_NAME", "envname"), ("ETCD_MAX_TXN_OPS", "3")]).unwrap();
        assert_eq!(c.name, "envname");
        assert_eq!(c.data_dir, PathBuf::from("envname.detcd"));
        assert_eq!(c.max_txn_ops, 9);
    }

    #[test]
    fn unknown_flag_is_named() {
        let err = run(&["--bogus", "1"], &[]).unwrap_err();
        assert_eq!(err, "flag provided but not defined: -bogus");
    }

    #[test]
    fn bad_number_is_named() {
        let err = run(&["--heartbeat-interval", "abc"], &[]).unwrap_err();
        assert_eq!(err, "invalid value \"abc\" for flag -heartbeat-interval: parse error");
    }

    #[test]
    fn election_timeout_must_be_five_heartbeats() {
        let err = run(&["--heartbeat-interval=100", "--election-timeout=400"], &[]).unwrap_err();
        assert!(err.contains("should be at least as 5 times"), "{err}");
    }

    #[test]
    fn missing_flag_argument_is_an_error() {
        assert_eq!(run(&["--name"], &[]).unwrap_err(), "flag needs an argument: -name");
    }

    #[test]
    fn initial_cluster_must_contain_this_member() {
        let err = run(&["--name", "x", "--initial-cluster", "y=http://127.0.0.1:2380"], &[]).unwrap_err();
        assert!(err.contains("couldn't find local name \"x\""), "{err}");
    }

    #[test]
    fn three_member_initial_cluster_parses() {
        let c = run(
            &[
                "--name=infra2",
                "--initial-advertise-peer-urls=http://127.0.0.1:22380",
                "--initial-cluster=infra1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.initial_cluster[1].1.port, 22380);
    }

    #[test]
    fn version_and_help_are_commands() {
        assert!(matches!(parse(["--version"], &BTreeMap::new()), Ok(Command::Version)));
        assert!(matches!(parse(["-help"], &BTreeMap::new()), Ok(Command::Help)));
    }

    #[test]
    fn bad_scheme_is_rejected() {
        let err = run(&["--listen-client-urls", "ftp://x:1"], &[]).unwrap_err();
        assert!(err.starts_with("invalid value \"ftp://x:1\" for flag -listen-client-urls"), "{err}");
    }
}
