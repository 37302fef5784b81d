//! Put, DeleteRange and Range: revisions, versions, intervals, limit, sort and filters.

use super::*;

// ---- revisions and puts ----

#[test]
fn empty_store_is_at_revision_one_and_never_compacted() {
    let f = Fixture::new();
    assert_eq!(f.store.current_revision(), 1);
    assert_eq!(f.store.compact_revision(), 0);
    assert_eq!(f.range(all()).unwrap().header, Some(ResponseHeader { revision: 1, ..Default::default() }));
}

#[test]
fn first_put_gets_revision_two_and_version_one() {
    let mut f = Fixture::new();
    assert_eq!(f.put("a", "1"), 2);
    assert_eq!(f.get("a"), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(f.store.current_revision(), 2);
}

#[test]
fn put_existing_key_keeps_create_revision_and_bumps_version() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("b", "x");
    f.put("a", "2");
    assert_eq!(f.get("a"), Some(kv("a", "2", 2, 4, 2)));
}

#[test]
fn put_after_delete_starts_a_new_generation() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    f.delete("a", "");
    f.put("a", "3");
    assert_eq!(f.get("a"), Some(kv("a", "3", 5, 5, 1)));
}

#[test]
fn put_stores_lease_and_returns_prev_kv_when_asked() {
    let mut f = Fixture::new();
    let first = f.put_req(PutRequest { lease: 7, prev_kv: true, ..put("a", "1") }).unwrap();
    assert_eq!(first.prev_kv, None);
    let second = f.put_req(PutRequest { prev_kv: true, ..put("a", "2") }).unwrap();
    assert_eq!(second.prev_kv, Some(KeyValue { lease: 7, ..kv("a", "1", 2, 2, 1) }));
    assert_eq!(f.get("a").unwrap().lease, 0);
}

#[test]
fn put_without_prev_kv_returns_none() {
    let mut f = Fixture::new();
    f.put("a", "1");
    assert_eq!(f.put_req(put("a", "2")).unwrap().prev_kv, None);
}

#[test]
fn put_ignore_value_keeps_existing_value() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put_req(PutRequest { ignore_value: true, lease: 3, ..put("a", "") }).unwrap();
    assert_eq!(f.get("a"), Some(KeyValue { lease: 3, ..kv("a", "1", 2, 3, 2) }));
}

#[test]
fn put_ignore_lease_keeps_existing_lease() {
    let mut f = Fixture::new();
    f.put_req(PutRequest { lease: 5, ..put("a", "1") }).unwrap();
    f.put_req(PutRequest { ignore_lease: true, ..put("a", "2") }).unwrap();
    assert_eq!(f.get("a"), Some(KeyValue { lease: 5, ..kv("a", "2", 2, 3, 2) }));
}

#[test]
fn put_ignore_value_on_missing_key_fails_without_effect() {
    let mut f = Fixture::new();
    f.put("b", "1");
    let err = f.put_req(PutRequest { ignore_value: true, ..put("a", "") });
    assert_eq!(err, Err(MvccError::KeyNotFound));
    let err = f.put_req(PutRequest { ignore_lease: true, ..put("a", "x") });
    assert_eq!(err, Err(MvccError::KeyNotFound));
    assert_eq!(f.store.current_revision(), 2);
    assert_eq!(f.get("a"), None);
    assert_eq!(f.records(), 1);
}

// ---- delete ----

#[test]
fn delete_of_missing_key_does_not_bump_revision() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let resp = f.delete("b", "");
    assert_eq!(resp.deleted, 0);
    assert_eq!(header_rev(&resp.header), 2);
    assert_eq!(f.store.current_revision(), 2);
}

#[test]
fn delete_range_deletes_interval_in_one_revision_with_prev_kvs() {
    let mut f = Fixture::new();
    for k in ["a", "b", "c", "d"] {
        f.put(k, k);
    }
    let resp = f.delete("b", "d");
    assert_eq!(resp.deleted, 2);
    assert_eq!(header_rev(&resp.header), 6);
    assert_eq!(resp.prev_kvs, vec![kv("b", "b", 3, 3, 1), kv("c", "c", 4, 4, 1)]);
    assert_eq!(keys(&f.range(all()).unwrap()), ["a", "d"]);
    assert_eq!(f.store.current_revision(), 6);
}

#[test]
fn delete_with_range_end_zero_deletes_every_key_from_key_on() {
    let mut f = Fixture::new();
    for k in ["a", "b", "c"] {
        f.put(k, k);
    }
    assert_eq!(f.delete("b", "\0").deleted, 2);
    assert_eq!(keys(&f.range(all()).unwrap()), ["a"]);
}

#[test]
fn deleted_key_stays_readable_at_older_revisions() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.delete("a", "");
    assert_eq!(f.get("a"), None);
    let old = f.range(RangeRequest { revision: 2, ..range("a", "") }).unwrap();
    assert_eq!(old.kvs, vec![kv("a", "1", 2, 2, 1)]);
}

// ---- range intervals and revisions ----

#[test]
fn range_intervals_follow_etcd() {
    let mut f = Fixture::new();
    for k in ["a", "b", "c"] {
        f.put(k, k);
    }
    assert_eq!(keys(&f.range(range("b", "")).unwrap()), ["b"]);
    assert_eq!(keys(&f.range(range("a", "c")).unwrap()), ["a", "b"]);
    assert_eq!(keys(&f.range(range("b", "\0")).unwrap()), ["b", "c"]);
    assert_eq!(keys(&f.range(range("c", "a")).unwrap()), Vec::<String>::new());
    assert_eq!(keys(&f.range(range("b", "b")).unwrap()), Vec::<String>::new());
    assert_eq!(keys(&f.range(all()).unwrap()), ["a", "b", "c"]);
    assert_eq!(f.range(range("c", "a")).unwrap().count, 0);
}

#[test]
fn range_at_old_revision_sees_old_value_and_reports_current_revision() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    let resp = f.range(RangeRequest { revision: 2, ..range("a", "") }).unwrap();
    assert_eq!(resp.kvs, vec![kv("a", "1", 2, 2, 1)]);
    assert_eq!(header_rev(&resp.header), 3);
}

#[test]
fn range_at_future_revision_fails() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let resp = f.range(RangeRequest { revision: 3, ..range("a", "") });
    assert_eq!(resp, Err(MvccError::FutureRevision));
}

#[test]
fn range_at_compacted_revision_fails() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    f.put("a", "3");
    f.compact(3).unwrap();
    let resp = f.range(RangeRequest { revision: 2, ..range("a", "") });
    assert_eq!(resp, Err(MvccError::Compacted));
}

#[test]
fn range_at_the_compaction_revision_succeeds() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    f.put("a", "3");
    f.compact(3).unwrap();
    let resp = f.range(RangeRequest { revision: 3, ..range("a", "") }).unwrap();
    assert_eq!(resp.kvs, vec![kv("a", "2", 2, 3, 2)]);
}

// ---- limit, count, sort, filters ----

fn abcd(f: &mut Fixture) {
    // versions: a=1, b=3, c=2, d=1; values chosen to sort differently from keys
    f.put("b", "z");
    f.put("c", "y");
    f.put("a", "x");
    f.put("b", "w");
    f.put("c", "v");
    f.put("b", "u");
    f.put("d", "t");
}

#[test]
fn limit_sets_more_and_count() {
    let mut f = Fixture::new();
    abcd(&mut f);
    let resp = f.range(RangeRequest { limit: 2, ..all() }).unwrap();
    assert_eq!(keys(&resp), ["a", "b"]);
    assert!(resp.more);
    assert_eq!(resp.count, 4);
    let resp = f.range(RangeRequest { limit: 4, ..all() }).unwrap();
    assert!(!resp.more);
    assert_eq!(resp.kvs.len(), 4);
}

#[test]
fn count_only_returns_count_without_kvs() {
    let mut f = Fixture::new();
    abcd(&mut f);
    let resp = f.range(RangeRequest { count_only: true, limit: 1, ..all() }).unwrap();
    assert_eq!(resp.count, 4);
    assert!(resp.kvs.is_empty());
    assert!(!resp.more);
}

#[test]
fn keys_only_empties_values() {
    let mut f = Fixture::new();
    abcd(&mut f);
    let resp = f.range(RangeRequest { keys_only: true, ..range("a", "") }).unwrap();
    assert_eq!(resp.kvs, vec![kv("a", "", 4, 4, 1)]);
}

#[test]
fn sort_by_version_descending() {
    let mut f = Fixture::new();
    abcd(&mut f);
    let req = RangeRequest { sort_order: SortOrder::Descend as i32, sort_target: SortTarget::Version as i32, ..all() };
    // ties (a and d, version 1) keep key order
    assert_eq!(keys(&f.range(req).unwrap()), ["b", "c", "a", "d"]);
}

#[test]
fn sort_by_key_descending_with_limit_sorts_before_truncating() {
    let mut f = Fixture::new();
    abcd(&mut f);
    let req = RangeRequest { sort_order: SortOrder::Descend as i32, limit: 2, ..all() };
    let resp = f.range(req).unwrap();
    assert_eq!(keys(&resp), ["d", "c"]);
    assert!(resp.more);
}

#[test]
fn sort_target_without_order_sorts_ascending() {
    let mut f = Fixture::new();
    abcd(&mut f);
    let req = RangeRequest { sort_target: SortTarget::Value as i32, ..all() };
    assert_eq!(keys(&f.range(req).unwrap()), ["d", "b", "c", "a"]);
}

#[test]
fn sort_target_without_order_and_limit_sorts_only_the_first_limit_plus_one_keys() {
    // etcd 3.4 fetches limit+1 keys in key order when sort_order is NONE, then sorts them.
    let mut f = Fixture::new();
    abcd(&mut f);
    let req = RangeRequest { sort_target: SortTarget::Value as i32, limit: 2, ..all() };
    let resp = f.range(req).unwrap();
    assert_eq!(keys(&resp), ["b", "c"]);
    assert!(resp.more);
}

#[test]
fn sort_by_create_and_mod_revision() {
    let mut f = Fixture::new();
    abcd(&mut f);
    let by =
        |target: SortTarget| RangeRequest { sort_order: SortOrder::Ascend as i32, sort_target: target as i32, ..all() };
    assert_eq!(keys(&f.range(by(SortTarget::Create)).unwrap()), ["b", "c", "a", "d"]);
    assert_eq!(keys(&f.range(by(SortTarget::Mod)).unwrap()), ["a", "c", "b", "d"]);
}

#[test]
fn revision_filters_prune_after_counting() {
    let mut f = Fixture::new();
    abcd(&mut f);
    // mod revisions: a=4, b=7, c=6, d=8; create: a=4, b=2, c=3, d=8
    let resp = f.range(RangeRequest { min_mod_revision: 6, max_mod_revision: 7, ..all() }).unwrap();
    assert_eq!(keys(&resp), ["b", "c"]);
    assert_eq!(resp.count, 4);
    let resp = f.range(RangeRequest { min_create_revision: 3, max_create_revision: 4, limit: 1, ..all() }).unwrap();
    assert_eq!(keys(&resp), ["a"]);
    assert!(resp.more);
}
