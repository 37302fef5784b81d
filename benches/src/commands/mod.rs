//! One module per subcommand. Each connects, prepares what it needs (leases, watchers), runs its
//! load and returns a [`Report`]; none prints anything but the progress bar. `put`, `range`,
//! `txn-put` and `lease-keepalive` are [`crate::driver::Worker`]s driven by the shared closed
//! loop; `watch-latency` paces its puts itself and times events, not requests.

mod lease_keepalive;
mod put;
mod range;
mod txn_put;
mod watch_latency;

use crate::driver::{drive, Worker};
use crate::options::{Command, Options, Output};
use crate::progress::Progress;
use crate::summary::Summary;
use crate::{connect, grpc, Error};

/// What a run measured: the main summary (the one `--output json` prints), and for the text
/// report any summaries printed before it (`watch-latency`'s puts).
pub struct Report {
    pub before: Vec<(&'static str, Summary)>,
    pub main: (&'static str, Summary),
}

impl Report {
    fn single(summary: Summary) -> Report {
        Report { before: Vec::new(), main: ("Summary", summary) }
    }

    /// The report as `output` asks, ending in a newline.
    pub fn render(&self, output: Output) -> String {
        match output {
            Output::Json => format!("{}\n", self.main.1.render_json()),
            Output::Text => {
                let sections: Vec<String> = self
                    .before
                    .iter()
                    .chain(std::iter::once(&self.main))
                    .map(|(title, summary)| summary.render_text(title))
                    .collect();
                sections.join("\n")
            }
        }
    }
}

/// Runs `command` against the endpoints in `options`: the request loads over lean unary
/// connections ([`crate::grpc`]), the streaming ones over tonic channels.
pub async fn run(command: &Command, options: &Options) -> Result<Report, Error> {
    match command {
        Command::WatchLatency(spec) => watch_latency::run(options, &connect::connect(options).await?, spec).await,
        Command::LeaseKeepalive => lease_keepalive::run(options, &connect::connect(options).await?).await,
        Command::Put | Command::Range { .. } | Command::TxnPut { .. } => {
            run_on(command, options, &connect::connect_unary(options).await?).await
        }
    }
}

/// Runs a request load (`put`, `range`, `txn-put`) over connections already open
/// ([`connect::connect_unary`] with the same `options`), so that a caller timing many runs (the
/// criterion benches) pays for connecting once.
pub async fn run_on(command: &Command, options: &Options, connections: &[grpc::Connection]) -> Result<Report, Error> {
    assert_eq!(connections.len(), options.conns, "one connection per --conns");
    match command {
        Command::Put => put::run(options, connections).await,
        Command::Range { key, end, consistency } => {
            range::run(options, connections, key, end.as_deref(), *consistency).await
        }
        Command::TxnPut { txn_ops } => txn_put::run(options, connections, *txn_ops).await,
        Command::WatchLatency(_) | Command::LeaseKeepalive => {
            Err(Error::Usage("watch-latency and lease-keepalive open their own streams: use commands::run".into()))
        }
    }
}

/// Drives `--total` requests through `workers` with a progress bar.
async fn closed_loop<W: Worker>(options: &Options, workers: Vec<W>) -> Report {
    let progress = Progress::start(options.total);
    let summary = drive(workers, options.total, options.timeout, &progress).await;
    progress.finish();
    Report::single(summary)
}
