//! Running a member: start Raft on the data dir, serve the client API, stop cleanly.
//!
//! This is what the `detcd` binary does, as a library function, so that tests and the simulator
//! run the very same path (config -> storage -> raft -> api).

use std::future::Future;
use std::sync::Arc;

use crate::api::{self, Context};
use crate::config::Config;
use crate::raft::{self, StartError};
use crate::storage::Disk;

/// Runs a member until `shutdown` resolves, then stops Raft and makes the store durable.
pub async fn run(
    config: &Config,
    disk: Arc<dyn Disk>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let node = raft::start(config, disk).await.map_err(|e: StartError| e.to_string())?;
    let ctx = Arc::new(Context::new(config, node.raft.clone(), node.store.clone(), node.identity.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for url in &config.listen_client_urls {
        let addr = url.socket_addr()?;
        let mut rx = stop_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        tracing::info!(%url, "serving client requests");
        servers.push(crate::runtime::spawn(api::serve(ctx.clone(), addr, stop)));
    }
    let failed = {
        let watch_servers = futures::future::select_all(servers.iter_mut());
        tokio::select! {
            biased;
            () = shutdown => None,
            (result, _, _) = watch_servers => Some(match result {
                Ok(Ok(())) => "client server stopped unexpectedly".to_string(),
                Ok(Err(e)) => e,
                Err(e) => format!("client server task failed: {e}"),
            }),
        }
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for server in servers {
        let _ = server.await;
    }
    if let Err(e) = node.raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not stop cleanly");
    }
    raft::flush(&node.store).map_err(|e| format!("final flush of the store failed: {e}"))?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
