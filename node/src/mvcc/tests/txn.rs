//! Txn: compares, branch choice, pre-checks, execution order and response headers.

use super::*;

// ---- txn ----

#[test]
fn txn_takes_success_branch_when_all_compares_hold() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let resp = f
        .txn(TxnRequest {
            compare: vec![
                cmp("a", CompareResult::Equal, CompareTarget::Value, TargetUnion::Value(b"1".to_vec())),
                cmp("a", CompareResult::Greater, CompareTarget::Version, TargetUnion::Version(0)),
            ],
            success: vec![op_put("b", "s")],
            failure: vec![op_put("b", "f")],
        })
        .unwrap();
    assert!(resp.succeeded);
    assert_eq!(header_rev(&resp.header), 3);
    assert_eq!(f.get("b").unwrap().value, b"s");
}

#[test]
fn txn_takes_failure_branch_when_a_compare_fails() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let resp = f
        .txn(TxnRequest {
            compare: vec![cmp("a", CompareResult::Less, CompareTarget::Mod, TargetUnion::ModRevision(2))],
            success: vec![op_put("b", "s")],
            failure: vec![op_put("b", "f")],
        })
        .unwrap();
    assert!(!resp.succeeded);
    assert_eq!(f.get("b").unwrap().value, b"f");
}

#[test]
fn compare_value_on_missing_key_is_false() {
    let mut f = Fixture::new();
    let resp = f
        .txn(TxnRequest {
            compare: vec![cmp("a", CompareResult::NotEqual, CompareTarget::Value, TargetUnion::Value(b"x".to_vec()))],
            ..Default::default()
        })
        .unwrap();
    assert!(!resp.succeeded);
}

#[test]
fn compare_on_missing_key_uses_zero_values() {
    let mut f = Fixture::new();
    let resp = f
        .txn(TxnRequest {
            compare: vec![
                cmp("a", CompareResult::Equal, CompareTarget::Version, TargetUnion::Version(0)),
                cmp("a", CompareResult::Equal, CompareTarget::Create, TargetUnion::CreateRevision(0)),
                cmp("a", CompareResult::Equal, CompareTarget::Lease, TargetUnion::Lease(0)),
            ],
            ..Default::default()
        })
        .unwrap();
    assert!(resp.succeeded);
}

#[test]
fn compare_over_a_range_requires_every_key() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("b", "1");
    f.put("b", "2");
    let version_is_one = |end: &str| Compare {
        range_end: end.into(),
        ..cmp("a", CompareResult::Equal, CompareTarget::Version, TargetUnion::Version(1))
    };
    let resp = f.txn(TxnRequest { compare: vec![version_is_one("b")], ..Default::default() });
    assert!(resp.unwrap().succeeded);
    let resp = f.txn(TxnRequest { compare: vec![version_is_one("c")], ..Default::default() });
    assert!(!resp.unwrap().succeeded);
}

#[test]
fn compare_with_mismatched_target_union_compares_against_zero() {
    let mut f = Fixture::new();
    f.put("a", "1");
    // target MOD with a VERSION union: mod (2) > 0
    let resp = f
        .txn(TxnRequest {
            compare: vec![cmp("a", CompareResult::Greater, CompareTarget::Mod, TargetUnion::Version(100))],
            ..Default::default()
        })
        .unwrap();
    assert!(resp.succeeded);
}

#[test]
fn txn_later_ops_see_earlier_writes() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let resp = f
        .txn(TxnRequest { success: vec![op_range("a"), op_put("a", "2"), op_range("a")], ..Default::default() })
        .unwrap();
    let before = range_resp(&resp, 0);
    assert_eq!(before.kvs, vec![kv("a", "1", 2, 2, 1)]);
    assert_eq!(header_rev(&before.header), 2);
    let after = range_resp(&resp, 2);
    assert_eq!(after.kvs, vec![kv("a", "2", 2, 3, 2)]);
    assert_eq!(header_rev(&after.header), 3);
    assert_eq!(header_rev(&resp.header), 3);
}

#[test]
fn txn_ops_share_one_revision() {
    let mut f = Fixture::new();
    f.txn(TxnRequest { success: vec![op_put("a", "1"), op_put("b", "2"), op_delete("a")], ..Default::default() })
        .unwrap();
    assert_eq!(f.store.current_revision(), 2);
    assert_eq!(f.get("a"), None);
    assert_eq!(f.get("b"), Some(kv("b", "2", 2, 2, 1)));
}

#[test]
fn read_only_txn_does_not_bump_revision() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let resp = f.txn(TxnRequest { success: vec![op_range("a"), op_delete("zz")], ..Default::default() }).unwrap();
    assert_eq!(header_rev(&resp.header), 2);
    assert_eq!(f.store.current_revision(), 2);
}

#[test]
fn txn_delete_header_is_pre_txn_revision_until_something_changed() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let resp = f
        .txn(TxnRequest { success: vec![op_delete("zz"), op_put("b", "1"), op_delete("zz")], ..Default::default() })
        .unwrap();
    let rev_of = |i: usize| match &resp.responses[i].response {
        Some(Response::ResponseDeleteRange(d)) => header_rev(&d.header),
        Some(Response::ResponsePut(p)) => header_rev(&p.header),
        other => panic!("{other:?}"),
    };
    assert_eq!((rev_of(0), rev_of(1), rev_of(2)), (2, 3, 3));
}

#[test]
fn txn_ignore_value_on_missing_key_fails_without_effect() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let resp = f.txn(TxnRequest {
        success: vec![
            op_put("b", "1"),
            RequestOp { request: Some(Request::RequestPut(PutRequest { ignore_value: true, ..put("c", "") })) },
        ],
        ..Default::default()
    });
    assert_eq!(resp, Err(MvccError::KeyNotFound));
    assert_eq!(f.store.current_revision(), 2);
    assert_eq!(f.get("b"), None);
    assert_eq!(f.records(), 1);
}

#[test]
fn txn_failure_found_during_execution_is_undone() {
    // etcd would panic: the key exists before the txn but an earlier op deletes it.
    let mut f = Fixture::new();
    f.put("a", "1");
    let mut batch = f.store.write().unwrap();
    let resp = batch.txn(&TxnRequest {
        success: vec![
            op_put("b", "1"),
            op_delete("a"),
            RequestOp { request: Some(Request::RequestPut(PutRequest { ignore_value: true, ..put("a", "") })) },
        ],
        ..Default::default()
    });
    assert_eq!(resp, Err(MvccError::KeyNotFound));
    // the batch stays usable and the next write takes the revision the failed txn did not
    assert_eq!(header_rev(&batch.put(&put("c", "1")).unwrap().header), 3);
    batch.commit(true).unwrap();
    assert_eq!(keys(&f.range(all()).unwrap()), ["a", "c"]);
    assert_eq!(f.records(), 2);
}

#[test]
fn txn_range_at_compacted_revision_fails_without_effect() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    f.compact(3).unwrap();
    let resp = f.txn(TxnRequest {
        success: vec![
            op_put("b", "1"),
            RequestOp { request: Some(Request::RequestRange(RangeRequest { revision: 2, ..range("a", "") })) },
        ],
        ..Default::default()
    });
    assert_eq!(resp, Err(MvccError::Compacted));
    assert_eq!(f.store.current_revision(), 3);
}

#[test]
fn txn_range_at_future_revision_fails_even_after_a_write() {
    let mut f = Fixture::new();
    let resp = f.txn(TxnRequest {
        success: vec![
            op_put("b", "1"),
            RequestOp { request: Some(Request::RequestRange(RangeRequest { revision: 2, ..range("b", "") })) },
        ],
        ..Default::default()
    });
    assert_eq!(resp, Err(MvccError::FutureRevision));
}

#[test]
fn nested_txn_compares_see_the_state_before_the_txn() {
    let mut f = Fixture::new();
    let inner = TxnRequest {
        compare: vec![cmp("a", CompareResult::Equal, CompareTarget::Version, TargetUnion::Version(0))],
        success: vec![op_put("inner", "saw-no-a")],
        failure: vec![op_put("inner", "saw-a")],
    };
    let resp = f
        .txn(TxnRequest {
            success: vec![op_put("a", "1"), RequestOp { request: Some(Request::RequestTxn(inner)) }],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(f.get("inner").unwrap().value, b"saw-no-a");
    match &resp.responses[1].response {
        Some(Response::ResponseTxn(t)) => {
            assert!(t.succeeded);
            assert_eq!(t.header, Some(ResponseHeader::default()));
            assert_eq!(t.responses.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_request_op_gets_empty_response_op() {
    let mut f = Fixture::new();
    let resp = f.txn(TxnRequest { success: vec![RequestOp { request: None }], ..Default::default() }).unwrap();
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].response, None);
}
