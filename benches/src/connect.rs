//! Opens the run's gRPC connections: `--conns` of them, connection `i` to endpoint
//! `i % endpoints`, each one HTTP/2 connection that its clients' requests share. Clients are
//! spread over them round-robin with [`spread`]. The request loads use [`grpc::Connection`]s
//! ([`connect_unary`]), the streaming loads tonic channels ([`connect`]).

use tonic::transport::{Channel, Endpoint};

use crate::options::Options;
use crate::{grpc, Error};

/// Connects every connection for unary calls, giving up on one after `--timeout`.
pub async fn connect_unary(options: &Options) -> Result<Vec<grpc::Connection>, Error> {
    assert!(!options.endpoints.is_empty() && options.conns >= 1);
    let mut connections = Vec::with_capacity(options.conns);
    for i in 0..options.conns {
        let url = &options.endpoints[i % options.endpoints.len()];
        let connection = grpc::Connection::open(url, options.timeout)
            .await
            .map_err(|reason| Error::Connect { endpoint: url.clone(), reason })?;
        connections.push(connection);
    }
    Ok(connections)
}

/// Connects every tonic channel, giving up on one after `--timeout`.
pub async fn connect(options: &Options) -> Result<Vec<Channel>, Error> {
    assert!(!options.endpoints.is_empty() && options.conns >= 1);
    let mut channels = Vec::with_capacity(options.conns);
    for i in 0..options.conns {
        let url = &options.endpoints[i % options.endpoints.len()];
        let failed = |reason: String| Error::Connect { endpoint: url.clone(), reason };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| failed(e.to_string()))?
            .connect_timeout(options.timeout)
            .tcp_nodelay(true);
        let channel = tokio::time::timeout(options.timeout, endpoint.connect())
            .await
            .map_err(|_| failed(format!("no connection within {:?}", options.timeout)))?
            .map_err(|e| failed(error_chain(&e)))?;
        channels.push(channel);
    }
    Ok(channels)
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
