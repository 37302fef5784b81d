//! A workload client: sends the requests of a [`ClientWorkload`] to a member over the etcd gRPC
//! API and records each one (invoke, outcome) in the shared [`Recorder`].
//!
//! Outcomes are classified conservatively: a write whose fate is unknown (timeout, connection
//! lost, a server error after it may have been proposed) is indeterminate, never guessed. Only
//! errors etcd returns before proposing anything count as definite failures.

use std::time::Duration;

use detcd_chaos::history::{
    Compare, CompareOp, CompareTarget, KeyValue, Outcome, Recorder, Request, Response, TxnOp, TxnOpResult,
};
use detcd_chaos::workload::ClientWorkload;
use detcd_proto::etcdserverpb as pb;
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::mvccpb;
use tonic::transport::Channel;
use tonic::Code;

use crate::cluster::Endpoints;

/// How long a client waits for one request before recording it as indeterminate.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed request before the next one (no hot loops against a dead member).
const BACKOFF_AFTER_ERROR: Duration = Duration::from_millis(100);

/// Nanoseconds of simulated time since `start`.
pub fn now_ns(start: tokio::time::Instant) -> u64 {
    tokio::time::Instant::now().saturating_duration_since(start).as_nanos() as u64
}

/// Converts a stored key-value.
pub fn key_value(kv: &mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: String::from_utf8_lossy(&kv.value).into_owned(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
    }
}

fn range_of(key: &str) -> pb::RangeRequest {
    pb::RangeRequest { key: key.as_bytes().to_vec(), ..Default::default() }
}

fn compare(c: &Compare) -> pb::Compare {
    use pb::compare::{CompareResult, CompareTarget as T, TargetUnion as U};
    let result = match c.op {
        CompareOp::Equal => CompareResult::Equal,
        CompareOp::NotEqual => CompareResult::NotEqual,
        CompareOp::Greater => CompareResult::Greater,
        CompareOp::Less => CompareResult::Less,
    };
    let (target, union) = match &c.target {
        CompareTarget::Value(v) => (T::Value, U::Value(v.as_bytes().to_vec())),
        CompareTarget::ModRevision(r) => (T::Mod, U::ModRevision(*r)),
        CompareTarget::CreateRevision(r) => (T::Create, U::CreateRevision(*r)),
        CompareTarget::Version(v) => (T::Version, U::Version(*v)),
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: c.key.as_bytes().to_vec(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

fn request_op(op: &TxnOp) -> pb::RequestOp {
    use pb::request_op::Request as R;
    let request = match op {
        TxnOp::Get { key } => R::RequestRange(range_of(key)),
        TxnOp::Put { key, value } => R::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        }),
        TxnOp::Delete { key } => {
            R::RequestDeleteRange(pb::DeleteRangeRequest { key: key.as_bytes().to_vec(), ..Default::default() })
        }
    };
    pb::RequestOp { request: Some(request) }
}

fn op_result(op: &pb::ResponseOp) -> TxnOpResult {
    use pb::response_op::Response as R;
    match &op.response {
        Some(R::ResponseRange(r)) => TxnOpResult::Get(r.kvs.first().map(key_value)),
        Some(R::ResponseDeleteRange(r)) => TxnOpResult::Delete { deleted: r.deleted },
        Some(R::ResponsePut(_)) | Some(R::ResponseTxn(_)) | None => TxnOpResult::Put,
    }
}

fn revision(header: &Option<pb::ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |h| h.revision)
}

/// Sends one request; `Err` carries the gRPC status.
pub async fn send(client: &mut KvClient<Channel>, request: &Request) -> Result<Response, tonic::Status> {
    Ok(match request {
        Request::Get { key } => {
            let r = client.range(range_of(key)).await?.into_inner();
            Response::Get { revision: revision(&r.header), kv: r.kvs.first().map(key_value) }
        }
        Request::Range { start, end } => {
            let req = pb::RangeRequest {
                key: start.as_bytes().to_vec(),
                range_end: end.as_bytes().to_vec(),
                ..Default::default()
            };
            let r = client.range(req).await?.into_inner();
            Response::Range { revision: revision(&r.header), kvs: r.kvs.iter().map(key_value).collect() }
        }
        Request::Put { key, value } => {
            let req =
                pb::PutRequest { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), ..Default::default() };
            Response::Put { revision: revision(&client.put(req).await?.into_inner().header) }
        }
        Request::Delete { key } => {
            let req = pb::DeleteRangeRequest { key: key.as_bytes().to_vec(), ..Default::default() };
            let r = client.delete_range(req).await?.into_inner();
            Response::Delete { revision: revision(&r.header), deleted: r.deleted }
        }
        Request::Txn { compares, success, failure } => {
            let req = pb::TxnRequest {
                compare: compares.iter().map(compare).collect(),
                success: success.iter().map(request_op).collect(),
                failure: failure.iter().map(request_op).collect(),
            };
            let r = client.txn(req).await?.into_inner();
            Response::Txn {
                revision: revision(&r.header),
                succeeded: r.succeeded,
                results: r.responses.iter().map(op_result).collect(),
            }
        }
    })
}

fn is_read_only(request: &Request) -> bool {
    match request {
        Request::Get { .. } | Request::Range { .. } => true,
        Request::Txn { success, failure, .. } => {
            success.iter().chain(failure).all(|op| matches!(op, TxnOp::Get { .. }))
        }
        Request::Put { .. } | Request::Delete { .. } => false,
    }
}

/// The outcome of a request that failed with `status`.
pub fn classify(request: &Request, status: &tonic::Status) -> Outcome {
    let reason = format!("{:?}: {}", status.code(), status.message());
    // A read has no effect, so whatever happened to it is a definite failure. For a write, only
    // errors raised by validation before anything is proposed are definite.
    let rejected_before_proposal = matches!(
        status.code(),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::ResourceExhausted
    );
    if is_read_only(request) || rejected_before_proposal {
        Outcome::Fail { reason }
    } else {
        Outcome::Indeterminate { reason }
    }
}

/// Runs one client until `until_ns` of simulated time since `start`: sends the workload's
/// requests one at a time to `members[first]`, recording each; after a failure it moves on to the
/// next member, as etcd clients fail over between endpoints. The endpoint list follows membership
/// changes; a client keeps its connection until a request fails.
pub async fn run(
    mut workload: ClientWorkload,
    members: Endpoints,
    first: usize,
    recorder: Recorder,
    start: tokio::time::Instant,
    until_ns: u64,
) {
    assert!(!members.is_empty(), "a client needs a member to talk to");
    let client_id = workload.client();
    let mut target = first;
    let mut client: Option<(String, KvClient<Channel>)> = None;
    while now_ns(start) < until_ns {
        let (name, kv) = match &mut client {
            Some((name, kv)) => (name.clone(), kv),
            None => {
                let (name, url) = members.get(target);
                let kv = match tonic::transport::Endpoint::from_shared(url.clone()) {
                    Ok(endpoint) => KvClient::new(endpoint.connect_lazy()),
                    Err(e) => panic!("bad member URL {url}: {e}"),
                };
                let (name, kv) = client.insert((name, kv));
                (name.clone(), kv)
            }
        };
        let request = workload.next_request();
        let handle = recorder.invoke(client_id, &name, request.clone(), now_ns(start));
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, send(kv, &request)).await {
            Ok(Ok(response)) => Outcome::Ok(response),
            Ok(Err(status)) => classify(&request, &status),
            Err(_) if is_read_only(&request) => Outcome::Fail { reason: "timed out".to_string() },
            Err(_) => Outcome::Indeterminate { reason: "timed out".to_string() },
        };
        let failed = !matches!(outcome, Outcome::Ok(_));
        workload.observe(&request, &outcome);
        recorder.complete(handle, outcome, now_ns(start));
        if failed {
            client = None;
            target = target.wrapping_add(1);
            tokio::time::sleep(BACKOFF_AFTER_ERROR).await;
        }
    }
}
