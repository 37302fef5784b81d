//! The command line: `detcd-bench <command> [args] [--flag=value | --flag value]...`.
//!
//! Flags may come before or after the command; `--` ends the flags (for a key that starts with
//! `-`). A flag given twice keeps its last value, as etcd's tools do. Every value is checked here,
//! against the limits below, so a bad command line never opens a connection: it is a
//! [`Error::Usage`], which `main` turns into exit status 2.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Error;

/// Most gRPC connections a run opens.
pub const CONNS_MAX: usize = 1_000;
/// Most concurrent clients (requests in flight).
pub const CLIENTS_MAX: usize = 100_000;
/// Most requests in one run: every latency is kept in memory (16 bytes each).
pub const TOTAL_MAX: u64 = 20_000_000;
/// Largest key, in bytes.
pub const KEY_SIZE_MAX: usize = 1 << 20;
/// Largest value, in bytes.
pub const VAL_SIZE_MAX: usize = 16 << 20;
/// Most puts in one `txn-put` transaction.
pub const TXN_OPS_MAX: usize = 10_000;
/// Most watchers in `watch-latency`.
pub const WATCHERS_MAX: usize = 100_000;
/// Most watch events `watch-latency` waits for (watchers x puts); each arrival is kept in memory.
pub const WATCH_EVENTS_MAX: u64 = TOTAL_MAX;
/// Highest `--put-rate`, in puts per second.
pub const PUT_RATE_MAX: u64 = 1_000_000;
/// Longest `--timeout`.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// Options every command shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `http://host:port` URLs, in the order given.
    pub endpoints: Vec<String>,
    /// gRPC connections; connection `i` goes to endpoint `i % endpoints.len()`.
    pub conns: usize,
    /// Concurrent clients; client `c` uses connection `c % conns`.
    pub clients: usize,
    /// Requests to send.
    pub total: u64,
    pub key_size: usize,
    pub val_size: usize,
    pub sequential_keys: bool,
    /// Distinct keys the requests use.
    pub key_space_size: u64,
    /// How long one request may take before it counts as failed.
    pub timeout: Duration,
    pub output: Output,
}

/// How the summary is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// etcd's `benchmark` report.
    Text,
    /// One JSON object on one line, for scripts.
    Json,
}

/// Range reads' consistency: `l` (linearizable, through the leader) or `s` (serializable, local).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Linearizable,
    Serializable,
}

/// What `watch-latency` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchLatency {
    /// Watchers of the one key, spread round-robin over the streams.
    pub watchers: usize,
    pub streams: usize,
    pub put_total: u64,
    pub put_rate: u64,
}

/// A subcommand and its own arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put,
    Range { key: String, end: Option<String>, consistency: Consistency },
    TxnPut { txn_ops: usize },
    WatchLatency(WatchLatency),
    LeaseKeepalive,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Parsed {
    Help,
    Run(Command, Options),
}

/// The text `--help` prints.
pub const USAGE: &str = "\
detcd-bench: a load tool for any etcd v3 endpoint (detcd or etcd)

Usage: detcd-bench <command> [args] [flags]

Commands:
  put                      put keys (--key-size, --val-size, --key-space-size, --sequential-keys)
  range <key> [end]        range reads of [key, end)
      --consistency l|s        linearizable or serializable (default l)
  txn-put                  transactions of --txn-ops puts each
      --txn-ops N              puts per transaction (default 1, at most --key-space-size)
  watch-latency            time from a put's response to its watch event arriving
      --watchers N             watchers of the key (default 10)
      --streams N              watch streams the watchers are spread over (default 10)
      --put-total N            puts (default 1000)
      --put-rate N             puts per second (default 100)
  lease-keepalive          grant a lease per client, then time LeaseKeepAlive round trips

Flags (every command):
  --endpoints LIST         comma-separated host:port or http://host:port (default 127.0.0.1:2379)
  --conns N                gRPC connections; clients are spread over them round-robin (default 1)
  --clients N              concurrent requests in flight (default 1)
  --total N                requests to send (default 10000)
  --key-size N             key size in bytes (default 8)
  --val-size N             value size in bytes (default 8)
  --sequential-keys        use keys 0, 1, 2, ... instead of pseudo-random ones
  --key-space-size N       distinct keys (default 1)
  --timeout DURATION       per-request timeout, e.g. 500ms, 10s, 1m (default 10s)
  --output text|json       etcd's report, or one JSON line (default text)
  -h, --help               show this help

watch-latency ignores --clients and --total. Exit status: 0 after a run (failed requests are
counted in the summary), 1 if the run cannot start, 2 for a bad command line.
";

/// Flags every command accepts.
const COMMON_FLAGS: &[&str] = &[
    "endpoints",
    "conns",
    "clients",
    "total",
    "key-size",
    "val-size",
    "sequential-keys",
    "key-space-size",
    "timeout",
    "output",
    "help",
];

/// Flags that take no value (`--flag` means `--flag=true`).
const BOOL_FLAGS: &[&str] = &["sequential-keys", "help"];

const COMMANDS: &[&str] = &["put", "range", "txn-put", "watch-latency", "lease-keepalive"];

/// The flags only `command` accepts.
fn command_flags(command: &str) -> &'static [&'static str] {
    match command {
        "range" => &["consistency"],
        "txn-put" => &["txn-ops"],
        "watch-latency" => &["watchers", "streams", "put-total", "put-rate"],
        _ => &[],
    }
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

/// The command line, split into flags (name -> value) and positional arguments.
#[derive(Debug, Default)]
struct Words {
    flags: BTreeMap<String, String>,
    positional: Vec<String>,
}

fn split(args: &[String]) -> Result<Words, Error> {
    let mut words = Words::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            words.positional.extend(rest.by_ref().cloned());
            break;
        }
        if arg == "-h" {
            words.flags.insert("help".to_string(), "true".to_string());
            continue;
        }
        let Some(flag) = arg.strip_prefix("--") else {
            if arg.starts_with('-') && arg.len() > 1 {
                return Err(usage(format!("unknown flag {arg:?}")));
            }
            words.positional.push(arg.clone());
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value.to_string()),
            None if BOOL_FLAGS.contains(&flag) => (flag, "true".to_string()),
            None => match rest.next() {
                Some(value) => (flag, value.clone()),
                None => return Err(usage(format!("flag --{flag} needs a value"))),
            },
        };
        words.flags.insert(name.to_string(), value);
    }
    Ok(words)
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Parsed, Error> {
    let mut words = split(args)?;
    if words.flags.contains_key("help") {
        return Ok(Parsed::Help);
    }
    if words.positional.is_empty() {
        return Err(usage(format!("missing command (one of: {})", COMMANDS.join(", "))));
    }
    let name = words.positional.remove(0);
    if !COMMANDS.contains(&name.as_str()) {
        return Err(usage(format!("unknown command {name:?} (one of: {})", COMMANDS.join(", "))));
    }
    let allowed = command_flags(&name);
    if let Some(unknown) =
        words.flags.keys().find(|k| !COMMON_FLAGS.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
    {
        return Err(usage(format!("unknown flag --{unknown} for {name}")));
    }
    let flags = &words.flags;
    let options = options(flags)?;
    let command = command(&name, words.positional, flags, &options)?;
    Ok(Parsed::Run(command, options))
}

fn options(flags: &BTreeMap<String, String>) -> Result<Options, Error> {
    let key_size = number(flags, "key-size", 8, 1, KEY_SIZE_MAX)?;
    let key_space_size = number(flags, "key-space-size", 1, 1, TOTAL_MAX)?;
    if !key_space_fits(key_space_size, key_size) {
        return Err(usage(format!(
            "--key-space-size {key_space_size} does not fit in --key-size {key_size} (keys are decimal numbers)"
        )));
    }
    Ok(Options {
        endpoints: endpoints(flags.get("endpoints").map_or("127.0.0.1:2379", String::as_str))?,
        conns: number(flags, "conns", 1, 1, CONNS_MAX)?,
        clients: number(flags, "clients", 1, 1, CLIENTS_MAX)?,
        total: number(flags, "total", 10_000, 1, TOTAL_MAX)?,
        key_size,
        val_size: number(flags, "val-size", 8, 0, VAL_SIZE_MAX)?,
        sequential_keys: boolean(flags, "sequential-keys")?,
        key_space_size,
        timeout: match flags.get("timeout") {
            Some(value) => duration(value).map_err(|why| usage(format!("invalid --timeout {value:?}: {why}")))?,
            None => Duration::from_secs(10),
        },
        output: match flags.get("output").map(String::as_str) {
            None | Some("text") => Output::Text,
            Some("json") => Output::Json,
            Some(other) => return Err(usage(format!("invalid --output {other:?}: must be text or json"))),
        },
    })
}

fn command(
    name: &str,
    positional: Vec<String>,
    flags: &BTreeMap<String, String>,
    options: &Options,
) -> Result<Command, Error> {
    let takes = if name == "range" { 1..=2 } else { 0..=0 };
    if !takes.contains(&positional.len()) {
        let wanted = if name == "range" { "a key and an optional range end" } else { "no arguments" };
        return Err(usage(format!("{name} takes {wanted}, got {positional:?}")));
    }
    Ok(match name {
        "put" => Command::Put,
        "range" => {
            let mut positional = positional.into_iter();
            let key = positional.next().unwrap_or_default();
            let consistency = match flags.get("consistency").map(String::as_str) {
                None | Some("l") => Consistency::Linearizable,
                Some("s") => Consistency::Serializable,
                Some(other) => return Err(usage(format!("invalid --consistency {other:?}: must be l or s"))),
            };
            Command::Range { key, end: positional.next(), consistency }
        }
        "txn-put" => {
            let txn_ops = number(flags, "txn-ops", 1, 1, TXN_OPS_MAX)?;
            if txn_ops as u64 > options.key_space_size {
                return Err(usage(format!(
                    "--txn-ops {txn_ops} needs --key-space-size of at least {txn_ops} (the keys of one txn must differ)"
                )));
            }
            Command::TxnPut { txn_ops }
        }
        "watch-latency" => Command::WatchLatency(watch_latency(flags)?),
        "lease-keepalive" => Command::LeaseKeepalive,
        other => unreachable!("command {other:?} passed the check against COMMANDS"),
    })
}

fn watch_latency(flags: &BTreeMap<String, String>) -> Result<WatchLatency, Error> {
    let watchers = number(flags, "watchers", 10, 1, WATCHERS_MAX)?;
    let streams = number(flags, "streams", 10.min(watchers), 1, watchers)?;
    let put_total = number(flags, "put-total", 1_000, 1, TOTAL_MAX)?;
    let put_rate = number(flags, "put-rate", 100, 1, PUT_RATE_MAX)?;
    if (watchers as u64).saturating_mul(put_total) > WATCH_EVENTS_MAX {
        return Err(usage(format!("--watchers x --put-total must be at most {WATCH_EVENTS_MAX}")));
    }
    Ok(WatchLatency { watchers, streams, put_total, put_rate })
}

/// Whether `space` keys numbered `0..space` all fit in `size` decimal digits.
fn key_space_fits(space: u64, size: usize) -> bool {
    let digits = u32::try_from(size).unwrap_or(u32::MAX);
    10u64.checked_pow(digits).is_none_or(|capacity| space <= capacity)
}

/// An integer flag between `min` and `max`, or `default`.
fn number<T>(flags: &BTreeMap<String, String>, name: &str, default: T, min: T, max: T) -> Result<T, Error>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(value) = flags.get(name) else {
        return Ok(default);
    };
    match value.parse::<T>() {
        Ok(n) if min <= n && n <= max => Ok(n),
        _ => Err(usage(format!("invalid --{name} {value:?}: must be an integer from {min} to {max}"))),
    }
}

fn boolean(flags: &BTreeMap<String, String>, name: &str) -> Result<bool, Error> {
    match flags.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(usage(format!("invalid --{name}={other:?}: must be true or false"))),
    }
}

/// The comma-separated endpoints as `http://host:port` URLs.
fn endpoints(list: &str) -> Result<Vec<String>, Error> {
    list.split(',').map(|endpoint| endpoint_url(endpoint.trim())).collect()
}

/// `host:port` or `http://host:port` as `http://host:port`.
pub fn endpoint_url(endpoint: &str) -> Result<String, Error> {
    let bad = |why: &str| usage(format!("invalid endpoint {endpoint:?}: {why}"));
    let authority = match endpoint.split_once("://") {
        None => endpoint,
        Some(("http", authority)) => authority,
        Some(("https", _)) => return Err(bad("TLS is not supported, use http://")),
        Some(_) => return Err(bad("the scheme must be http")),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(bad("expected host:port"));
    };
    if host.is_empty() || host.contains('/') {
        return Err(bad("expected host:port"));
    }
    if port.parse::<u16>().map_or(true, |port| port == 0) {
        return Err(bad("the port must be a number from 1 to 65535"));
    }
    Ok(format!("http://{authority}"))
}

/// A duration such as `500ms`, `10s`, `1.5s` or `2m`, above zero and at most [`TIMEOUT_MAX`].
pub fn duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "" => return Err("needs a unit: ms, s or m".to_string()),
        _ => return Err(format!("unknown unit {unit:?}: use ms, s or m")),
    };
    let number: f64 = number.parse().map_err(|_| format!("{number:?} is not a number"))?;
    let seconds = number * seconds_per_unit;
    if !(seconds > 0.0 && seconds <= TIMEOUT_MAX.as_secs_f64()) {
        return Err(format!("must be above zero and at most {}s", TIMEOUT_MAX.as_secs()));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn run(line: &str) -> (Command, Options) {
        match parse(&args(line)) {
            Ok(Parsed::Run(command, options)) => (command, options),
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    fn usage_error(line: &str) -> String {
        match parse(&args(line)) {
            Err(Error::Usage(message)) => message,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn defaults_match_etcd_benchmark() {
        let (command, options) = run("put");
        assert_eq!(command, Command::Put);
        assert_eq!(
            options,
            Options {
                endpoints: vec!["http://127.0.0.1:2379".to_string()],
                conns: 1,
                clients: 1,
                total: 10_000,
                key_size: 8,
                val_size: 8,
                sequential_keys: false,
                key_space_size: 1,
                timeout: Duration::from_secs(10),
                output: Output::Text,
            }
        );
    }

    #[test]
    fn flags_take_values_after_equals_or_as_the_next_word_before_or_after_the_command() {
        let (_, options) =
            run("--clients 50 put --conns=4 --total 200 --key-size=16 --val-size 256 --sequential-keys --key-space-size=1000");
        assert_eq!((options.clients, options.conns, options.total), (50, 4, 200));
        assert_eq!((options.key_size, options.val_size, options.key_space_size), (16, 256, 1000));
        assert!(options.sequential_keys);
    }

    #[test]
    fn a_flag_given_twice_keeps_its_last_value() {
        let (_, options) = run("put --total=5 --total=7");
        assert_eq!(options.total, 7);
    }

    #[test]
    fn endpoints_become_http_urls() {
        let (_, options) = run("put --endpoints=127.0.0.1:23790,http://10.0.0.2:2379,[::1]:2379/");
        assert_eq!(options.endpoints, ["http://127.0.0.1:23790", "http://10.0.0.2:2379", "http://[::1]:2379"]);
    }

    #[test]
    fn bad_endpoints_are_usage_errors() {
        assert!(usage_error("put --endpoints=localhost").contains("expected host:port"));
        assert!(usage_error("put --endpoints=https://h:2379").contains("TLS is not supported"));
        assert!(usage_error("put --endpoints=unix://x:1").contains("scheme must be http"));
        assert!(usage_error("put --endpoints=h:99999").contains("port must be a number"));
        assert!(usage_error("put --endpoints=h:1,").contains("invalid endpoint \"\""));
    }

    #[test]
    fn range_takes_a_key_an_optional_end_and_a_consistency() {
        let (command, _) = run("range foo");
        assert_eq!(command, Command::Range { key: "foo".into(), end: None, consistency: Consistency::Linearizable });
        let (command, _) = run("range a z --consistency=s");
        assert_eq!(
            command,
            Command::Range { key: "a".into(), end: Some("z".into()), consistency: Consistency::Serializable }
        );
        let (command, _) = run("range -- --odd-key");
        assert!(matches!(command, Command::Range { key, .. } if key == "--odd-key"));
        assert!(usage_error("range").contains("range takes a key"));
        assert!(usage_error("range a b c").contains("range takes a key"));
        assert!(usage_error("range a --consistency=x").contains("must be l or s"));
    }

    #[test]
    fn command_flags_are_rejected_for_other_commands() {
        assert_eq!(usage_error("put --consistency=s"), "unknown flag --consistency for put");
        assert_eq!(usage_error("range k --txn-ops=2"), "unknown flag --txn-ops for range");
    }

    #[test]
    fn unknown_flags_commands_and_stray_arguments_are_usage_errors() {
        assert_eq!(usage_error("put --bogus=1"), "unknown flag --bogus for put");
        assert_eq!(usage_error("put -x"), "unknown flag \"-x\"");
        assert!(usage_error("get").starts_with("unknown command \"get\""));
        assert!(usage_error("").starts_with("missing command"));
        assert!(usage_error("put extra").contains("put takes no arguments"));
        assert_eq!(usage_error("put --total"), "flag --total needs a value");
    }

    #[test]
    fn numbers_out_of_range_or_malformed_are_usage_errors() {
        assert_eq!(usage_error("put --clients=0"), "invalid --clients \"0\": must be an integer from 1 to 100000");
        assert_eq!(usage_error("put --total=-3"), "invalid --total \"-3\": must be an integer from 1 to 20000000");
        assert!(usage_error("put --conns=many").starts_with("invalid --conns \"many\""));
        assert!(usage_error("put --conns=1001").starts_with("invalid --conns"));
        assert!(usage_error("put --sequential-keys=yes").contains("must be true or false"));
        assert!(usage_error("put --output=xml").contains("must be text or json"));
    }

    #[test]
    fn the_key_space_must_fit_in_the_key_size() {
        let (_, options) = run("put --key-size=2 --key-space-size=100");
        assert_eq!(options.key_space_size, 100);
        assert!(usage_error("put --key-size=2 --key-space-size=101").contains("does not fit in --key-size 2"));
        assert!(key_space_fits(TOTAL_MAX, 20));
        assert!(key_space_fits(TOTAL_MAX, KEY_SIZE_MAX));
    }

    #[test]
    fn txn_ops_cannot_exceed_the_key_space() {
        let (command, _) = run("txn-put --txn-ops=4 --key-space-size=4");
        assert_eq!(command, Command::TxnPut { txn_ops: 4 });
        assert_eq!(run("txn-put").0, Command::TxnPut { txn_ops: 1 });
        assert!(usage_error("txn-put --txn-ops=2").contains("needs --key-space-size of at least 2"));
    }

    #[test]
    fn watch_latency_defaults_and_limits() {
        let (command, _) = run("watch-latency");
        let expected = WatchLatency { watchers: 10, streams: 10, put_total: 1_000, put_rate: 100 };
        assert_eq!(command, Command::WatchLatency(expected));
        let (command, _) = run("watch-latency --watchers=3");
        assert!(matches!(command, Command::WatchLatency(WatchLatency { watchers: 3, streams: 3, .. })));
        assert!(usage_error("watch-latency --watchers=2 --streams=3").starts_with("invalid --streams"));
        assert!(usage_error("watch-latency --watchers=100000 --put-total=1000").contains("at most 20000000"));
    }

    #[test]
    fn help_wins_over_everything_but_malformed_words() {
        assert_eq!(parse(&args("--help")).ok(), Some(Parsed::Help));
        assert_eq!(parse(&args("put -h --bogus=1")).ok(), Some(Parsed::Help));
        assert!(parse(&args("put --total")).is_err());
    }

    #[test]
    fn durations_need_a_unit_and_stay_in_range() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("10"), Err("needs a unit: ms, s or m".to_string()));
        assert!(duration("10h").is_err_and(|e| e.contains("unknown unit")));
        assert!(duration("0s").is_err_and(|e| e.contains("above zero")));
        assert!(duration("61m").is_err_and(|e| e.contains("at most 3600s")));
        assert!(duration("1..5s").is_err_and(|e| e.contains("not a number")));
        assert_eq!(run("put --timeout=250ms").1.timeout, Duration::from_millis(250));
    }
}
