//! Plain-text rendering of operations and model states for violation messages.

use std::fmt::Write as _;

use super::model::{Slot, Span, State, GHOST_VALUE, UNBOUNDED};
use crate::history::{
    Compare, CompareOp, CompareTarget, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResult,
};

const NS_PER_SEC: u64 = 1_000_000_000;

/// Nanoseconds as seconds with nanosecond precision, e.g. `12.000345678s`.
pub(crate) fn seconds(ns: u64) -> String {
    format!("{}.{:09}s", ns / NS_PER_SEC, ns % NS_PER_SEC)
}

/// One operation on one line: id, client, member, interval, request and outcome.
pub fn operation_line(op: &Operation) -> String {
    format!(
        "#{} client {} via {} [{} .. {}] {} => {}",
        op.id,
        op.client,
        op.member,
        seconds(op.invoke_ns),
        seconds(op.complete_ns),
        request(&op.request),
        outcome(&op.outcome)
    )
}

pub(crate) fn request(request: &Request) -> String {
    match request {
        Request::Get { key } => format!("get {key:?}"),
        Request::Range { start, end } => format!("range [{start:?}, {end:?})"),
        Request::Put { key, value } => format!("put {key:?} = {value:?}"),
        Request::Delete { key } => format!("delete {key:?}"),
        Request::Txn { compares, success, failure } => format!(
            "txn if [{}] then [{}] else [{}]",
            list(compares.iter().map(compare)),
            list(success.iter().map(txn_op)),
            list(failure.iter().map(txn_op))
        ),
    }
}

fn list(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn compare(cmp: &Compare) -> String {
    let op = match cmp.op {
        CompareOp::Equal => "==",
        CompareOp::NotEqual => "!=",
        CompareOp::Greater => ">",
        CompareOp::Less => "<",
    };
    let (field, target) = match &cmp.target {
        CompareTarget::Value(value) => ("value", format!("{value:?}")),
        CompareTarget::ModRevision(revision) => ("mod", revision.to_string()),
        CompareTarget::CreateRevision(revision) => ("create", revision.to_string()),
        CompareTarget::Version(version) => ("version", version.to_string()),
    };
    format!("{field}({:?}) {op} {target}", cmp.key)
}

fn txn_op(op: &TxnOp) -> String {
    match op {
        TxnOp::Get { key } => format!("get {key:?}"),
        TxnOp::Put { key, value } => format!("put {key:?} = {value:?}"),
        TxnOp::Delete { key } => format!("delete {key:?}"),
    }
}

pub(crate) fn key_value(kv: &KeyValue) -> String {
    format!(
        "{:?} = {:?} (create {}, mod {}, version {})",
        kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version
    )
}

fn maybe_key_value(kv: &Option<KeyValue>) -> String {
    kv.as_ref().map_or_else(|| "absent".to_string(), key_value)
}

pub(crate) fn outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok(response) => format!("ok {}", self::response(response)),
        Outcome::Fail { reason } => format!("failed ({reason})"),
        Outcome::Indeterminate { reason } => format!("indeterminate ({reason})"),
    }
}

fn response(response: &Response) -> String {
    match response {
        Response::Get { revision, kv } => format!("rev {revision}: {}", maybe_key_value(kv)),
        Response::Range { revision, kvs } => format!("rev {revision}: [{}]", list(kvs.iter().map(key_value))),
        Response::Put { revision } => format!("rev {revision}"),
        Response::Delete { revision, deleted } => format!("rev {revision}: deleted {deleted}"),
        Response::Txn { revision, succeeded, results } => {
            let results = results.iter().map(|result| match result {
                TxnOpResult::Get(kv) => maybe_key_value(kv),
                TxnOpResult::Put => "put".to_string(),
                TxnOpResult::Delete { deleted } => format!("deleted {deleted}"),
            });
            let branch = if *succeeded { "succeeded" } else { "failed" };
            format!("rev {revision}: {branch} [{}]", list(results))
        }
    }
}

fn span(span: Span) -> String {
    match span {
        _ if span.is_exact() => span.lo.to_string(),
        Span { lo, hi: UNBOUNDED } => format!(">={lo}"),
        Span { lo, hi } => format!("{lo}..={hi}"),
    }
}

/// The model state, restricted to `keys` (name and index in the state).
pub(crate) fn state(state: &State, keys: &[(&str, usize)], values: &[String]) -> String {
    let mut out = String::new();
    for (name, index) in keys {
        let _ = match state.slots.get(*index) {
            Some(Slot::Present(key)) => {
                let value = match key.value {
                    GHOST_VALUE => "<a value no acknowledged operation read>".to_string(),
                    value => format!("{:?}", values.get(value as usize).map_or("?", String::as_str)),
                };
                write!(
                    out,
                    "{name:?} = {value} (create {}, mod {}, version {}); ",
                    self::span(key.create),
                    self::span(key.modified),
                    self::span(key.version)
                )
            }
            Some(Slot::Absent) => write!(out, "{name:?} absent; "),
            Some(Slot::Unknown) | None => write!(out, "{name:?} as before the window; "),
        };
    }
    let _ = write!(out, "revision >= {}", state.floor);
    out
}
