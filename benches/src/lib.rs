//! Load tool for any etcd v3 endpoint (detcd or etcd), in the style of etcd's `benchmark` tool.
//!
//! How a run flows: `options` turns the command line into a [`options::Command`] and
//! [`options::Options`] (every limit is a named constant there, and every value is checked before
//! anything connects); `connect` opens the gRPC connections; one module per subcommand under
//! `commands` builds its requests, using `keys` for key names and, for the commands that time one
//! request after another, `driver` to spread them over concurrent clients with a per-request
//! timeout; `progress` draws the bar on stderr; `summary` turns the latencies and the failures into
//! etcd's report (or one JSON line).
//!
//! The pure parts (`options`, `keys`, `summary`, the bar's text) know nothing of gRPC and are unit
//! tested; only `connect`, `driver` and `commands` touch the network. Nothing here depends on the
//! detcd node: the tool speaks only etcd's wire protocol (`detcd-proto`), so it measures etcd and
//! detcd alike.

pub mod commands;
pub mod connect;
pub mod driver;
pub mod grpc;
pub mod keys;
pub mod options;
pub mod progress;
pub mod summary;

use std::fmt;

/// Why a run could not start or finish. Failed requests are not errors of the run: they are
/// counted in the summary.
#[derive(Debug)]
pub enum Error {
    /// The command line is wrong; the tool exits with status 2.
    Usage(String),
    /// An endpoint could not be reached.
    Connect { endpoint: String, reason: String },
    /// A request that prepares the run (a lease grant, a watch creation) failed.
    Setup(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(message) => write!(f, "{message}"),
            Error::Connect { endpoint, reason } => write!(f, "cannot connect to {endpoint}: {reason}"),
            Error::Setup(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {}
