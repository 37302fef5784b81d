//! Tests of the MVCC store: behaviour tests named for the etcd rule they check (`kv`, `txn`,
//! `lifecycle`), and a property test against a reference model (`model`, `model_check`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash;
mod kv;
mod lifecycle;
mod model;
mod model_check;
mod txn;

use std::path::{Path, PathBuf};

use detcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use detcd_proto::etcdserverpb::request_op::Request;
use detcd_proto::etcdserverpb::response_op::Response;
use detcd_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader,
    TxnRequest, TxnResponse,
};
use detcd_proto::mvccpb::KeyValue;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::schema::{Rev, REVISIONS};
use super::{MvccError, Store, WriteBatch};

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mvcc.redb");
        let store = open(&path);
        Fixture { _dir: dir, path, store }
    }

    fn reopen(self) -> Fixture {
        let Fixture { _dir, path, store } = self;
        drop(store);
        let store = open(&path);
        Fixture { _dir, path, store }
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        let resp = self.apply(|b| b.put(&put(key, value))).unwrap();
        resp.header.unwrap().revision
    }

    fn put_req(&mut self, req: PutRequest) -> Result<detcd_proto::etcdserverpb::PutResponse, MvccError> {
        self.apply(|b| b.put(&req))
    }

    fn delete(&mut self, key: &str, end: &str) -> detcd_proto::etcdserverpb::DeleteRangeResponse {
        self.apply(|b| b.delete_range(&delete(key, end, true))).unwrap()
    }

    fn txn(&mut self, req: TxnRequest) -> Result<TxnResponse, MvccError> {
        self.apply(|b| b.txn(&req))
    }

    fn compact(&mut self, rev: i64) -> Result<i64, MvccError> {
        self.apply(|b| b.compact(&CompactionRequest { revision: rev, physical: true }))
            .map(|r| r.header.unwrap().revision)
    }

    /// Runs one write in its own batch, committed (non-durably) whatever its outcome.
    fn apply<R>(&mut self, f: impl FnOnce(&mut WriteBatch<'_>) -> Result<R, MvccError>) -> Result<R, MvccError> {
        let mut batch = self.store.write().unwrap();
        let result = f(&mut batch);
        batch.commit(false).unwrap();
        result
    }

    fn range(&self, req: RangeRequest) -> Result<RangeResponse, MvccError> {
        self.store.range(&req)
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        self.range(range(key, "")).unwrap().kvs.pop()
    }

    fn records(&self) -> u64 {
        let read = self.store.db.begin_read().unwrap();
        read.open_table(REVISIONS).unwrap().len().unwrap()
    }
}

fn open(path: &Path) -> Store {
    Store::open(Database::create(path).unwrap()).unwrap()
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.into(), value: value.into(), ..Default::default() }
}

fn delete(key: &str, end: &str, prev_kv: bool) -> DeleteRangeRequest {
    DeleteRangeRequest { key: key.into(), range_end: end.into(), prev_kv }
}

fn range(key: &str, end: &str) -> RangeRequest {
    RangeRequest { key: key.into(), range_end: end.into(), ..Default::default() }
}

fn all() -> RangeRequest {
    RangeRequest { key: vec![0], range_end: vec![0], ..Default::default() }
}

fn keys(resp: &RangeResponse) -> Vec<String> {
    resp.kvs.iter().map(|kv| String::from_utf8(kv.key.clone()).unwrap()).collect()
}

fn kv(key: &str, value: &str, create: i64, modr: i64, version: i64) -> KeyValue {
    KeyValue { key: key.into(), value: value.into(), create_revision: create, mod_revision: modr, version, lease: 0 }
}

fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(put(key, value))) }
}

fn op_range(key: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestRange(range(key, ""))) }
}

fn op_delete(key: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestDeleteRange(delete(key, "", false))) }
}

fn cmp(key: &str, result: CompareResult, target: CompareTarget, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

fn header_rev(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().unwrap().revision
}

fn range_resp(resp: &TxnResponse, i: usize) -> &RangeResponse {
    match &resp.responses[i].response {
        Some(Response::ResponseRange(r)) => r,
        other => panic!("not a range response: {other:?}"),
    }
}
