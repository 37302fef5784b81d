//! etcd's `Watch` service: one bidirectional stream carrying any number of watchers.
//!
//! Each stream is one task: it reads create/cancel/progress requests and, whenever the applied
//! revision moves, pulls the events its watchers need (`crate::watch`). Responses go out in
//! order through a bounded channel, so a slow client only ever delays its own stream.

use std::sync::Arc;
use std::time::Duration;

use detcd_proto::etcdserverpb::watch_request::RequestUnion;
use detcd_proto::etcdserverpb::watch_server::Watch;
use detcd_proto::etcdserverpb::{ResponseHeader, WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::error::EtcdError;
use super::lease::{channel_stream, ChannelStream};
use super::Context;
use crate::raft::read_store;
use crate::watch::{fragment, Delivery, Watchers};

/// Responses buffered per stream.
const RESPONSE_BUFFER: usize = 128;
/// etcd's default progress-notify interval (`--experimental-watch-progress-notify-interval`).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);
/// How often a `hasleader` stream checks that this member still has a leader.
const LEADER_CHECK: Duration = Duration::from_millis(500);
/// gRPC metadata a client sets to have its watches cancelled when the member loses its leader.
const REQUIRE_LEADER_KEY: &str = "hasleader";

pub struct WatchService {
    ctx: Arc<Context>,
}

impl WatchService {
    pub fn new(ctx: Arc<Context>) -> WatchService {
        WatchService { ctx }
    }
}

/// The sending half of one stream.
struct Out {
    ctx: Arc<Context>,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
}

impl Out {
    fn header(&self, revision: i64) -> Option<ResponseHeader> {
        self.ctx.header(Some(ResponseHeader { revision, ..Default::default() }))
    }

    /// Sends one response; false once the client is gone.
    async fn send(&self, resp: WatchResponse) -> bool {
        self.tx.send(Ok(resp)).await.is_ok()
    }
}

/// Reads the client's requests into a channel, so the stream loop can wait on them alongside
/// revision changes.
async fn read_requests(mut requests: Streaming<WatchRequest>, tx: mpsc::Sender<WatchRequest>) {
    while let Ok(Some(req)) = requests.message().await {
        if tx.send(req).await.is_err() {
            return;
        }
    }
}

fn has_leader(ctx: &Context) -> bool {
    ctx.raft.metrics().borrow().current_leader.is_some()
}

/// Handles one request; false once the client is gone.
async fn handle(out: &Out, watchers: &mut Watchers, req: WatchRequest, current: i64) -> bool {
    match req.request_union {
        Some(RequestUnion::CreateRequest(create)) => {
            let (watch_id, cancel_reason) = match watchers.create(&create, current) {
                Ok(id) => (id, String::new()),
                Err(e) => (-1, e.to_string()),
            };
            let canceled = !cancel_reason.is_empty();
            out.send(WatchResponse {
                header: out.header(current),
                watch_id,
                created: true,
                canceled,
                cancel_reason,
                ..Default::default()
            })
            .await
        }
        Some(RequestUnion::CancelRequest(cancel)) => {
            if !watchers.cancel(cancel.watch_id) {
                return true;
            }
            out.send(WatchResponse {
                header: out.header(current),
                watch_id: cancel.watch_id,
                canceled: true,
                ..Default::default()
            })
            .await
        }
        // Answered by the caller once every watcher has caught up.
        Some(RequestUnion::ProgressRequest(_)) | None => true,
    }
}

/// Sends what the watchers need up to `current`; false once the client is gone.
async fn deliver(out: &Out, watchers: &mut Watchers, current: i64) -> Result<bool, EtcdError> {
    while watchers.behind(current) {
        let deliveries = {
            let store = read_store(&out.ctx.store);
            watchers.poll(&out.ctx.hub, &store, current).map_err(EtcdError::from)?
        };
        for delivery in deliveries {
            let sent = match delivery {
                Delivery::Events { watch_id, events, fragment: false } => {
                    out.send(WatchResponse { header: out.header(current), watch_id, events, ..Default::default() })
                        .await
                }
                Delivery::Events { watch_id, events, fragment: true } => {
                    let parts = fragment(events, out.ctx.max_request_bytes as usize);
                    let last = parts.len() - 1;
                    let mut sent = true;
                    for (i, events) in parts.into_iter().enumerate() {
                        let resp = WatchResponse {
                            header: out.header(current),
                            watch_id,
                            events,
                            fragment: i < last,
                            ..Default::default()
                        };
                        sent = sent && out.send(resp).await;
                    }
                    sent
                }
                Delivery::Compacted { watch_id, compact_revision } => {
                    out.send(WatchResponse {
                        header: out.header(current),
                        watch_id,
                        canceled: true,
                        compact_revision,
                        ..Default::default()
                    })
                    .await
                }
            };
            if !sent {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Serves one watch stream until the client closes it.
async fn serve_stream(out: Out, mut requests: mpsc::Receiver<WatchRequest>, require_leader: bool) {
    let mut revision = out.ctx.hub.subscribe();
    let mut watchers = Watchers::new();
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    progress.reset();
    let mut leader_check = tokio::time::interval(LEADER_CHECK);
    loop {
        let current = *revision.borrow_and_update();
        match deliver(&out, &mut watchers, current).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = out.tx.send(Err(e.into())).await;
                return;
            }
        }
        tokio::select! {
            biased;
            req = requests.recv() => {
                let Some(req) = req else { return };
                let progress_request = matches!(req.request_union, Some(RequestUnion::ProgressRequest(_)));
                let current = *revision.borrow();
                if progress_request {
                    // Catch every watcher up first, so the progress revision promises no gap.
                    if !matches!(deliver(&out, &mut watchers, current).await, Ok(true)) {
                        return;
                    }
                    let resp = WatchResponse { header: out.header(current), watch_id: -1, ..Default::default() };
                    if !out.send(resp).await {
                        return;
                    }
                } else if !handle(&out, &mut watchers, req, current).await {
                    return;
                }
            }
            changed = revision.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = progress.tick() => {
                let current = *revision.borrow();
                for watch_id in watchers.progress_due(current) {
                    let resp = WatchResponse { header: out.header(current), watch_id, ..Default::default() };
                    if !out.send(resp).await {
                        return;
                    }
                }
            }
            _ = leader_check.tick(), if require_leader => {
                if !has_leader(&out.ctx) {
                    let _ = out.tx.send(Err(EtcdError::NoLeader.into())).await;
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ChannelStream<WatchResponse>;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = request.metadata().get(REQUIRE_LEADER_KEY).is_some_and(|v| v == "true");
        if require_leader && !has_leader(&self.ctx) {
            return Err(EtcdError::NoLeader.into());
        }
        let (req_tx, req_rx) = mpsc::channel(RESPONSE_BUFFER);
        crate::runtime::spawn(read_requests(request.into_inner(), req_tx));
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let out = Out { ctx: self.ctx.clone(), tx };
        crate::runtime::spawn(serve_stream(out, req_rx, require_leader));
        Ok(Response::new(channel_stream(rx, self.ctx.stopping.clone())))
    }
}
