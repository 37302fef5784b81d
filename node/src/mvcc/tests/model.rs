//! A reference model of etcd 3.4's key space, for the property test in `model_check`.
//!
//! The model keeps, per key, the list of `(revision, Some(version) | None for a delete)` and
//! implements Range / Put / DeleteRange / Txn / Compact directly from etcd's apply code, with no
//! index, no disk and no journal: every operation on a clone, swapped in on success.

use std::collections::BTreeMap;

use super::MvccError;
use detcd_proto::etcdserverpb::compare::TargetUnion;
use detcd_proto::etcdserverpb::request_op::Request;
use detcd_proto::etcdserverpb::response_op::Response;
use detcd_proto::etcdserverpb::{
    CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use detcd_proto::mvccpb::KeyValue;

/// A live version: (value, create revision, mod revision, version, lease).
type Val = (Vec<u8>, i64, i64, i64, i64);

#[derive(Clone, Debug)]
pub(super) struct Model {
    keys: BTreeMap<Vec<u8>, Vec<(i64, Option<Val>)>>,
    pub current: i64,
    /// etcd's compactMainRev: -1 until the first compaction.
    pub compact: i64,
    pub meta: BTreeMap<String, Vec<u8>>,
}

fn hdr(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

fn in_interval(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        k >= key
    } else {
        k >= key && k < end
    }
}

/// Revision bookkeeping of one write transaction in the model.
pub(super) struct Tx {
    begin: i64,
    changed: bool,
}

impl Tx {
    fn view(&self) -> i64 {
        self.begin + i64::from(self.changed)
    }
}

impl Model {
    pub fn new() -> Model {
        Model { keys: BTreeMap::new(), current: 1, compact: -1, meta: BTreeMap::new() }
    }

    fn get(&self, key: &[u8], at: i64) -> Option<KeyValue> {
        let history = self.keys.get(key)?;
        let (_, val) = history.iter().rev().find(|(rev, _)| *rev <= at)?;
        let (value, create, modr, version, lease) = val.clone()?;
        Some(KeyValue { key: key.to_vec(), create_revision: create, mod_revision: modr, version, value, lease })
    }

    fn visible(&self, key: &[u8], end: &[u8], at: i64) -> Vec<KeyValue> {
        self.keys.keys().filter(|k| in_interval(k, key, end)).filter_map(|k| self.get(k, at)).collect()
    }

    pub fn range(&self, req: &RangeRequest, view: i64) -> Result<RangeResponse, MvccError> {
        if req.revision > view {
            return Err(MvccError::FutureRevision);
        }
        let at = if req.revision <= 0 { view } else { req.revision };
        if at < self.compact {
            return Err(MvccError::Compacted);
        }
        let all = self.visible(&req.key, &req.range_end, at);
        let count = all.len() as i64;
        let mut kvs = if req.count_only { Vec::new() } else { all };
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        if req.sort_order == 0 && !filtered && req.limit > 0 {
            kvs.truncate(req.limit as usize + 1);
        }
        kvs.retain(|kv| req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision);
        kvs.retain(|kv| req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision);
        kvs.retain(|kv| req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision);
        kvs.retain(|kv| req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision);
        let order = if req.sort_target != 0 && req.sort_order == 0 { 1 } else { req.sort_order };
        if order == 1 || order == 2 {
            let field = |kv: &KeyValue| -> (Vec<u8>, i64) {
                match req.sort_target {
                    0 => (kv.key.clone(), 0),
                    1 => (Vec::new(), kv.version),
                    2 => (Vec::new(), kv.create_revision),
                    3 => (Vec::new(), kv.mod_revision),
                    _ => (kv.value.clone(), 0),
                }
            };
            if order == 1 {
                kvs.sort_by_key(field);
            } else {
                kvs.sort_by_key(|kv| std::cmp::Reverse(field(kv)));
            }
        }
        let mut more = false;
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse { header: hdr(view), kvs, more, count })
    }

    fn write(&mut self, key: &[u8], tx: &mut Tx, val: Option<Val>) {
        tx.changed = true;
        self.keys.entry(key.to_vec()).or_default().push((tx.begin + 1, val));
    }

    pub fn put(&mut self, req: &PutRequest, tx: &mut Tx) -> Result<PutResponse, MvccError> {
        let prev = self.get(&req.key, i64::MAX);
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        let rev = tx.begin + 1;
        let value = match &prev {
            Some(p) if req.ignore_value => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match &prev {
            Some(p) if req.ignore_lease => p.lease,
            _ => req.lease,
        };
        let (create, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev, 1),
        };
        self.write(&req.key, tx, Some((value, create, rev, version, lease)));
        Ok(PutResponse { header: hdr(rev), prev_kv: if req.prev_kv { prev } else { None } })
    }

    pub fn delete(&mut self, req: &DeleteRangeRequest, tx: &mut Tx) -> DeleteRangeResponse {
        let doomed = self.visible(&req.key, &req.range_end, tx.view());
        for kv in &doomed {
            self.write(&kv.key, tx, None);
        }
        DeleteRangeResponse {
            header: hdr(tx.view()),
            deleted: doomed.len() as i64,
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        }
    }

    fn compare(&self, c: &Compare) -> bool {
        let kvs = self.visible(&c.key, &c.range_end, self.current);
        if kvs.is_empty() && c.target == 3 {
            return false;
        }
        let zero = [KeyValue::default()];
        let kvs: &[KeyValue] = if kvs.is_empty() { &zero } else { &kvs };
        kvs.iter().all(|kv| {
            let num = |v: i64| match (&c.target_union, c.target) {
                (Some(TargetUnion::Version(x)), 0)
                | (Some(TargetUnion::CreateRevision(x)), 1)
                | (Some(TargetUnion::ModRevision(x)), 2)
                | (Some(TargetUnion::Lease(x)), 4) => v.cmp(x),
                _ => v.cmp(&0),
            };
            let ord = match c.target {
                0 => num(kv.version),
                1 => num(kv.create_revision),
                2 => num(kv.mod_revision),
                3 => match &c.target_union {
                    Some(TargetUnion::Value(v)) => kv.value.cmp(v),
                    _ => kv.value.as_slice().cmp(&[][..]),
                },
                4 => num(kv.lease),
                _ => std::cmp::Ordering::Equal,
            };
            match c.result {
                0 => ord.is_eq(),
                1 => ord.is_gt(),
                2 => ord.is_lt(),
                3 => ord.is_ne(),
                _ => true,
            }
        })
    }

    /// The chosen branch of `req` judged on `self` (the state before the txn).
    fn branch<'r>(&self, req: &'r TxnRequest) -> (bool, &'r [RequestOp]) {
        let ok = req.compare.iter().all(|c| self.compare(c));
        (ok, if ok { &req.success } else { &req.failure })
    }

    /// The first pre-check failure among the chosen ops, puts before ranges (etcd's order).
    fn precheck(&self, req: &TxnRequest) -> Result<(), MvccError> {
        let mut ops = Vec::new();
        self.chosen_ops(req, &mut ops);
        for op in &ops {
            if let Some(Request::RequestPut(p)) = &op.request {
                if (p.ignore_value || p.ignore_lease) && self.get(&p.key, i64::MAX).is_none() {
                    return Err(MvccError::KeyNotFound);
                }
            }
        }
        for op in &ops {
            if let Some(Request::RequestRange(r)) = &op.request {
                if r.revision != 0 && r.revision > self.current {
                    return Err(MvccError::FutureRevision);
                }
                if r.revision != 0 && r.revision < self.compact {
                    return Err(MvccError::Compacted);
                }
            }
        }
        Ok(())
    }

    fn chosen_ops<'r>(&self, req: &'r TxnRequest, out: &mut Vec<&'r RequestOp>) {
        for op in self.branch(req).1 {
            match &op.request {
                Some(Request::RequestTxn(t)) => self.chosen_ops(t, out),
                _ => out.push(op),
            }
        }
    }

    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        self.precheck(req)?;
        let before = self.clone();
        let mut tx = Tx { begin: self.current, changed: false };
        let mut work = self.clone();
        let mut resp = work.exec(&before, req, &mut tx)?;
        resp.header = hdr(tx.view());
        work.current = tx.view();
        *self = work;
        Ok(resp)
    }

    fn exec(&mut self, before: &Model, req: &TxnRequest, tx: &mut Tx) -> Result<TxnResponse, MvccError> {
        let (succeeded, ops) = before.branch(req);
        let mut responses = Vec::new();
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Some(Response::ResponseRange(self.range(r, tx.view())?)),
                Some(Request::RequestPut(p)) => Some(Response::ResponsePut(self.put(p, tx)?)),
                Some(Request::RequestDeleteRange(d)) => Some(Response::ResponseDeleteRange(self.delete(d, tx))),
                Some(Request::RequestTxn(t)) => Some(Response::ResponseTxn(self.exec(before, t, tx)?)),
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse { header: Some(ResponseHeader::default()), succeeded, responses })
    }

    pub fn single<R>(&mut self, f: impl FnOnce(&mut Model, &mut Tx) -> Result<R, MvccError>) -> Result<R, MvccError> {
        let mut tx = Tx { begin: self.current, changed: false };
        let mut work = self.clone();
        let r = f(&mut work, &mut tx)?;
        work.current = tx.view();
        *self = work;
        Ok(r)
    }

    pub fn compact_at(&mut self, rev: i64) -> Result<CompactionResponse, MvccError> {
        if rev <= self.compact {
            return Err(MvccError::Compacted);
        }
        if rev > self.current {
            return Err(MvccError::FutureRevision);
        }
        for history in self.keys.values_mut() {
            if let Some(i) = history.iter().rposition(|(r, _)| *r <= rev) {
                let cut = if history[i].1.is_none() { i + 1 } else { i };
                history.drain(..cut);
            }
        }
        self.keys.retain(|_, h| !h.is_empty());
        self.compact = rev;
        Ok(CompactionResponse { header: hdr(self.current) })
    }
}
