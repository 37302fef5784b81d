//! Request shape checks made before anything is proposed, as etcd's v3rpc layer makes them.

use detcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use detcd_proto::etcdserverpb::request_op::Request as Op;
use detcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use super::error::EtcdError;

pub fn range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    txn_shape(r, max_txn_ops)?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

fn txn_shape(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    if r.compare.len() > max_txn_ops || r.success.len() > max_txn_ops || r.failure.len() > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(Op::RequestRange(r)) => range(r)?,
            Some(Op::RequestPut(p)) => put(p)?,
            Some(Op::RequestDeleteRange(d)) => delete_range(d)?,
            Some(Op::RequestTxn(t)) => txn_shape(t, max_txn_ops)?,
            None => {}
        }
    }
    Ok(())
}

/// A key interval `[begin, end)`; an empty `end` is unbounded (etcd's string-affine intervals).
#[derive(Clone, Debug)]
struct Interval {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Interval {
    fn contains(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// Keys each op may write: puts by key, deletes by interval; nested txns included.
struct Writes {
    puts: Vec<Vec<u8>>,
    dels: Vec<Interval>,
}

impl Writes {
    fn deletes(&self, key: &[u8]) -> bool {
        self.dels.iter().any(|d| d.contains(key))
    }
}

/// etcd's `checkIntervals`: a key put twice, or put and deleted, in one branch is rejected; the
/// two branches of a nested txn are exclusive, so the same put in both is fine.
fn intervals(ops: &[RequestOp]) -> Result<Writes, EtcdError> {
    let mut writes = Writes { puts: Vec::new(), dels: Vec::new() };
    for op in ops {
        if let Some(Op::RequestDeleteRange(d)) = &op.request {
            let end = if d.range_end.is_empty() { point_end(&d.key) } else { d.range_end.clone() };
            writes.dels.push(Interval { begin: d.key.clone(), end });
        }
    }
    for op in ops {
        let Some(Op::RequestTxn(t)) = &op.request else { continue };
        let then = intervals(&t.success)?;
        let otherwise = intervals(&t.failure)?;
        for k in &then.puts {
            if writes.puts.contains(k) || writes.deletes(k) {
                return Err(EtcdError::DuplicateKey);
            }
            writes.puts.push(k.clone());
        }
        for k in &otherwise.puts {
            if (writes.puts.contains(k) && !then.puts.contains(k)) || writes.deletes(k) {
                return Err(EtcdError::DuplicateKey);
            }
            writes.puts.push(k.clone());
        }
        writes.dels.extend(then.dels);
        writes.dels.extend(otherwise.dels);
    }
    for op in ops {
        let Some(Op::RequestPut(p)) = &op.request else { continue };
        if writes.puts.contains(&p.key) || writes.deletes(&p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        writes.puts.push(p.key.clone());
    }
    Ok(writes)
}

/// The end of the single-key interval `[key, key + "\0")`.
fn point_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    end.push(0);
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op(key: &str) -> RequestOp {
        RequestOp { request: Some(Op::RequestPut(PutRequest { key: key.into(), ..Default::default() })) }
    }

    fn del_op(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn_op(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp { request: Some(Op::RequestTxn(TxnRequest { compare: vec![], success, failure })) }
    }

    fn check(success: Vec<RequestOp>) -> Result<(), EtcdError> {
        txn(&TxnRequest { compare: vec![], success, failure: vec![] }, 128)
    }

    #[test]
    fn same_key_put_twice_is_duplicate() {
        assert_eq!(check(vec![put_op("a"), put_op("a")]), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn put_inside_deleted_range_is_duplicate() {
        assert_eq!(check(vec![del_op("a", "c"), put_op("b")]), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn put_outside_deleted_range_is_fine() {
        assert_eq!(check(vec![del_op("a", "c"), put_op("c")]), Ok(()));
    }

    #[test]
    fn overlapping_deletes_are_fine() {
        assert_eq!(check(vec![del_op("a", "c"), del_op("b", "")]), Ok(()));
    }

    #[test]
    fn same_put_in_both_nested_branches_is_fine() {
        assert_eq!(check(vec![txn_op(vec![put_op("a")], vec![put_op("a")])]), Ok(()));
    }

    #[test]
    fn nested_put_colliding_with_outer_put_is_duplicate() {
        assert_eq!(check(vec![put_op("a"), txn_op(vec![put_op("a")], vec![])]), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn too_many_ops_is_rejected() {
        let ops: Vec<RequestOp> = (0..3).map(|i| put_op(&format!("k{i}"))).collect();
        let r = TxnRequest { compare: vec![], success: ops, failure: vec![] };
        assert_eq!(txn(&r, 2), Err(EtcdError::TooManyOps));
    }

    #[test]
    fn empty_key_in_nested_op_is_rejected() {
        assert_eq!(check(vec![put_op("")]), Err(EtcdError::EmptyKey));
    }
}
