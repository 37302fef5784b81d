//! Running a member: start Raft on the data dir, serve peers and clients, publish this member's
//! attributes, stop cleanly.
//!
//! This is what the `detcd` binary does, as a library function, so that tests and the simulator
//! run the very same path (config -> storage -> raft -> api).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use detcd_proto::detcdpb::internal_request::Request as InternalOp;
use detcd_proto::detcdpb::peer_server::PeerServer;
use detcd_proto::detcdpb::{InternalRequest, MemberAttributes};
use prost::Message;
use tokio::sync::watch;

use crate::api::{self, Context};
use crate::config::Config;
use crate::raft::{self, member_attributes, read_store, Node, PeerService};
use crate::storage::Disk;

/// How often a member retries publishing its attributes until a leader accepts them.
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// Serves the peer protocol on `addr` until `stop` resolves.
async fn serve_peers(
    node_service: PeerService,
    addr: SocketAddr,
    stop: impl Future<Output = ()>,
) -> Result<(), String> {
    tonic::transport::Server::builder()
        .add_service(PeerServer::new(node_service).max_decoding_message_size(usize::MAX))
        .serve_with_shutdown(addr, stop)
        .await
        .map_err(|e| format!("peer server on {addr}: {e}"))
}

/// etcd's "publish": once running, a member records its name and client URLs through Raft, so
/// every member's `MemberList` (and `etcdctl endpoint status --cluster`) can find it.
async fn publish(node_raft: raft::Raft, store: raft::SharedStore, proposer: raft::Proposer, attrs: MemberAttributes) {
    loop {
        let published = member_attributes(&read_store(&store), attrs.member_id);
        if published.as_ref() == Some(&attrs) {
            tracing::info!(name = %attrs.name, "published member attributes");
            return;
        }
        let request = InternalRequest {
            id: crate::runtime::random_u64(),
            request: Some(InternalOp::MemberAttributes(attrs.clone())),
        };
        let _ = crate::runtime::timeout(Duration::from_secs(5), proposer.propose(request.encode_to_vec())).await;
        if node_raft.metrics().borrow().running_state.is_err() {
            return;
        }
        crate::runtime::sleep(PUBLISH_RETRY).await;
    }
}

/// How often a member checks whether it was removed from the cluster.
const REMOVAL_CHECK: Duration = Duration::from_millis(500);

/// Resolves once this member has been removed from the cluster (it applied its removal, or
/// another member that did said so): it must stop serving, as etcd does.
async fn removed(node_raft: raft::Raft, store: raft::SharedStore, peers: raft::Peers, member_id: u64) {
    loop {
        crate::runtime::sleep(REMOVAL_CHECK).await;
        if peers.removed() || raft::was_removed(&read_store(&store), member_id) {
            return;
        }
        if node_raft.metrics().borrow().running_state.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// A leader that is asked to stop first hands leadership to its most caught-up voter, so the
/// cluster does not wait out an election timeout (etcd does the same on SIGTERM).
async fn hand_over_leadership(node: &Node, config: &Config) {
    let Some(target) = raft::transfer::best_transferee(&node.raft) else { return };
    let leading = node.raft.metrics().borrow().current_leader == Some(node.identity.member_id);
    if !leading {
        return;
    }
    let timeout = 3 * config.election_timeout;
    match raft::transfer::transfer_leadership(&node.raft, &node.peers, target, config.election_timeout, timeout).await {
        Ok(()) => tracing::info!(to = %format!("{target:x}"), "handed leadership over"),
        Err(e) => tracing::warn!(error = %e, "could not hand leadership over"),
    }
}

fn stop_signal(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// Runs a member until `shutdown` resolves, then stops Raft and makes the store durable.
pub async fn run(
    config: &Config,
    disk: Arc<dyn Disk>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let node: Node = raft::start(config, disk).await.map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Arc::new(Context::new(config, &node, stop_rx.clone()));
    let mut servers = Vec::new();
    for url in &config.listen_peer_urls {
        let addr = url.socket_addr()?;
        let service = PeerService::new(&node, raft::request_timeout(config), stop_rx.clone());
        tracing::info!(%url, "serving peer traffic");
        servers.push(crate::runtime::spawn(serve_peers(service, addr, stop_signal(&stop_rx))));
    }
    for url in &config.listen_client_urls {
        let addr = url.socket_addr()?;
        tracing::info!(%url, "serving client requests");
        servers.push(crate::runtime::spawn(api::serve(ctx.clone(), addr, stop_signal(&stop_rx))));
    }
    let attrs = MemberAttributes {
        member_id: node.identity.member_id,
        name: config.name.clone(),
        client_urls: config.advertise_client_urls.iter().map(ToString::to_string).collect(),
    };
    let publisher = crate::runtime::spawn(publish(node.raft.clone(), node.store.clone(), node.proposer.clone(), attrs));
    let (failed, finished) = {
        let watch_servers = futures::future::select_all(servers.iter_mut());
        let removal = removed(node.raft.clone(), node.store.clone(), node.peers.clone(), node.identity.member_id);
        tokio::select! {
            biased;
            () = shutdown => (None, None),
            () = removal => (Some(format!(
                "member {:x} has been permanently removed from the cluster",
                node.identity.member_id
            )), None),
            (result, index, _) = watch_servers => (Some(match result {
                Ok(Ok(())) => "a server stopped unexpectedly".to_string(),
                Ok(Err(e)) => e,
                Err(e) => format!("server task failed: {e}"),
            }), Some(index)),
        }
    };
    tracing::info!("shutting down");
    if failed.is_none() {
        hand_over_leadership(&node, config).await;
    }
    publisher.abort();
    let _ = stop_tx.send(true);
    // The server that stopped by itself has been awaited already; awaiting it again would panic.
    for (i, server) in servers.into_iter().enumerate() {
        if Some(i) != finished {
            let _ = server.await;
        }
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
