//! Opens the run's gRPC connections: `--conns` of them, connection `i` to endpoint
//! `i % endpoints`, each one HTTP/2 connection that its clients' requests share. Clients are
//! spread over them round-robin with [`spread`]. The request loads use [`grpc::Connection`]s
//! ([`connect_unary`]), the streaming loads tonic channels ([`connect`]).

use std::future::Future;

use tonic::transport::{Channel, Endpoint};

use crate::options::Options;
use crate::{grpc, Error};

/// Connects every connection for unary calls, giving up on one after `--timeout`.
pub async fn connect_unary(options: &Options) -> Result<Vec<grpc::Connection>, Error> {
    let timeout = options.timeout;
    connect_each(options, |url| async move { grpc::Connection::open(&url, timeout).await }).await
}

/// Connects every tonic channel, giving up on one after `--timeout`.
pub async fn connect(options: &Options) -> Result<Vec<Channel>, Error> {
    let timeout = options.timeout;
    connect_each(options, |url| async move {
        let endpoint =
            Endpoint::from_shared(url).map_err(|e| e.to_string())?.connect_timeout(timeout).tcp_nodelay(true);
        tokio::time::timeout(timeout, endpoint.connect())
            .await
            .map_err(|_| format!("no connection within {timeout:?}"))?
            .map_err(|e| error_chain(&e))
    })
    .await
}

/// Opens `--conns` connections with `open`, connection `i` to endpoint `i % endpoints`; a failure
/// names its endpoint.
async fn connect_each<C, F: Future<Output = Result<C, String>>>(
    options: &Options,
    open: impl Fn(String) -> F,
) -> Result<Vec<C>, Error> {
    assert!(!options.endpoints.is_empty() && options.conns >= 1);
    let mut connections = Vec::with_capacity(options.conns);
    for i in 0..options.conns {
        let url = &options.endpoints[i % options.endpoints.len()];
        let connection = open(url.clone()).await.map_err(|reason| Error::Connect { endpoint: url.clone(), reason })?;
        connections.push(connection);
    }
    Ok(connections)
}

/// `count` clients, client `c` built by `client` from connection `c % channels.len()`.
pub fn spread<C: Clone, T>(channels: &[C], count: usize, client: impl Fn(C) -> T) -> Vec<T> {
    assert!(!channels.is_empty());
    (0..count).map(|c| client(channels[c % channels.len()].clone())).collect()
}

/// An error and its sources, `outer: inner: root` (tonic's own message is only "transport error").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
