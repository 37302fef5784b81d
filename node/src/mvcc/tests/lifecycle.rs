//! Compaction, persistence, batches, meta values, snapshots and corruption.

use super::*;

// ---- compaction ----

#[test]
fn compact_rejects_compacted_and_future_revisions() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    assert_eq!(f.compact(4), Err(MvccError::FutureRevision));
    assert_eq!(f.compact(2), Ok(3));
    assert_eq!(f.compact(2), Err(MvccError::Compacted));
    assert_eq!(f.compact(1), Err(MvccError::Compacted));
    assert_eq!(f.store.compact_revision(), 2);
}

#[test]
fn compact_zero_on_a_never_compacted_store_succeeds_once() {
    // etcd's compactMainRev starts at -1
    let mut f = Fixture::new();
    assert_eq!(f.compact(0), Ok(1));
    assert_eq!(f.compact(0), Err(MvccError::Compacted));
    assert_eq!(f.store.compact_revision(), 0);
}

#[test]
fn compaction_keeps_reads_at_and_after_the_compaction_revision() {
    let mut f = Fixture::new();
    f.put("a", "1"); // 2
    f.put("b", "1"); // 3
    f.put("a", "2"); // 4
    f.delete("b", ""); // 5
    f.put("a", "3"); // 6
    let before: Vec<_> = (4..=6).map(|rev| f.range(RangeRequest { revision: rev, ..all() }).unwrap()).collect();
    f.compact(4).unwrap();
    let after: Vec<_> = (4..=6).map(|rev| f.range(RangeRequest { revision: rev, ..all() }).unwrap()).collect();
    assert_eq!(before, after);
    // a@2 is gone; a@4, a@6, b@3 (visible at 4), b's tombstone @5 remain
    assert_eq!(f.records(), 4);
}

#[test]
fn compaction_at_a_tombstone_removes_the_whole_generation() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("a", "2");
    f.delete("a", "");
    f.put("b", "1");
    f.compact(4).unwrap();
    assert_eq!(f.records(), 1);
    assert_eq!(f.store.index.len(), 1);
}

// ---- persistence, batches, meta ----

#[test]
fn reopen_rebuilds_index() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("b", "2");
    f.delete("a", "");
    f.put("c", "3");
    f.compact(3).unwrap();
    let before = f.range(all()).unwrap();
    let f = f.reopen();
    assert_eq!(f.store.current_revision(), 5);
    assert_eq!(f.store.compact_revision(), 3);
    assert_eq!(f.range(all()).unwrap(), before);
    assert_eq!(f.range(RangeRequest { revision: 2, ..all() }), Err(MvccError::Compacted));
}

#[test]
fn non_durable_commit_survives_a_clean_reopen() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let f = f.reopen();
    assert_eq!(f.get("a"), Some(kv("a", "1", 2, 2, 1)));
}

#[test]
fn dropped_batch_leaves_store_unchanged() {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("b", "1");
    {
        let mut batch = f.store.write().unwrap();
        batch.put(&put("a", "2")).unwrap();
        batch.delete_range(&delete("b", "", false)).unwrap();
        batch.compact(&CompactionRequest { revision: 3, physical: false }).unwrap();
        batch.set_meta("applied", b"9").unwrap();
        assert_eq!(batch.range(&range("a", "")).unwrap().kvs[0].value, b"2");
    }
    assert_eq!(f.store.current_revision(), 3);
    assert_eq!(f.store.compact_revision(), 0);
    assert_eq!(f.get("a"), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(f.get("b"), Some(kv("b", "1", 3, 3, 1)));
    assert_eq!(f.store.meta("applied").unwrap(), None);
    assert_eq!(f.records(), 2);
    let f = f.reopen();
    assert_eq!(f.store.current_revision(), 3);
}

#[test]
fn batch_range_sees_its_own_writes() {
    let mut f = Fixture::new();
    let mut batch = f.store.write().unwrap();
    batch.put(&put("a", "1")).unwrap();
    let resp = batch.range(&range("a", "")).unwrap();
    assert_eq!(resp.kvs, vec![kv("a", "1", 2, 2, 1)]);
    assert_eq!(header_rev(&resp.header), 2);
}

#[test]
fn meta_values_commit_with_the_batch() {
    let mut f = Fixture::new();
    assert_eq!(f.store.meta("applied").unwrap(), None);
    let mut batch = f.store.write().unwrap();
    batch.set_meta("applied", b"42").unwrap();
    batch.commit(true).unwrap();
    assert_eq!(f.store.meta("applied").unwrap(), Some(b"42".to_vec()));
    let f = f.reopen();
    assert_eq!(f.store.meta("applied").unwrap(), Some(b"42".to_vec()));
    assert_eq!(f.store.current_revision(), 1);
}

#[test]
fn db_size_is_reported() {
    let mut f = Fixture::new();
    f.put("a", "1");
    assert!(f.store.db_size_bytes() > 0);
}

// ---- snapshots and corruption ----

fn populated() -> Fixture {
    let mut f = Fixture::new();
    f.put("a", "1");
    f.put("b", "2");
    f.put("a", "3");
    f.delete("b", "");
    f.put("c", "4");
    f.compact(3).unwrap();
    let mut batch = f.store.write().unwrap();
    batch.set_meta("applied", b"17").unwrap();
    batch.commit(true).unwrap();
    f
}

#[test]
fn snapshot_restore_round_trip() {
    let source = populated();
    let image = source.store.snapshot().unwrap();
    let mut target = Fixture::new();
    target.put("zzz", "old");
    target.store.restore(&image).unwrap();
    for f in [&target, &target.reopen_ref()] {
        assert_eq!(f.store.current_revision(), 6);
        assert_eq!(f.store.compact_revision(), 3);
        assert_eq!(f.store.meta("applied").unwrap(), Some(b"17".to_vec()));
        for rev in 3..=6 {
            let req = RangeRequest { revision: rev, ..all() };
            assert_eq!(f.range(req.clone()), source.range(req));
        }
        assert_eq!(f.store.snapshot().unwrap(), image);
    }
}

#[test]
fn snapshots_neither_carry_nor_replace_local_meta() {
    let mut source = populated();
    let mut batch = source.store.write().unwrap();
    batch.set_meta("local.identity", b"source").unwrap();
    batch.commit(true).unwrap();
    let image = source.store.snapshot().unwrap();
    let mut target = Fixture::new();
    let mut batch = target.store.write().unwrap();
    batch.set_meta("local.identity", b"target").unwrap();
    batch.set_meta("stale", b"gone after restore").unwrap();
    batch.commit(true).unwrap();
    target.store.restore(&image).unwrap();
    // Images leave local meta out: the target's equals the source's.
    assert_eq!(target.store.snapshot().unwrap(), image);
    let target = target.reopen();
    assert_eq!(target.store.meta("local.identity").unwrap(), Some(b"target".to_vec()));
    assert_eq!(target.store.meta("stale").unwrap(), None);
    assert_eq!(target.store.meta("applied").unwrap(), Some(b"17".to_vec()));
}

impl Fixture {
    /// A second store on a copy of this one's file.
    fn reopen_ref(&self) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy.redb");
        let image = self.store.snapshot().unwrap();
        let mut store = open(&path);
        store.restore(&image).unwrap();
        drop(store);
        let store = open(&path);
        Fixture { _dir: dir, path, store }
    }
}

#[test]
fn corrupt_snapshot_is_rejected() {
    let image = populated().store.snapshot().unwrap();
    let mut target = populated();
    target.put("x", "1");
    let before = target.store.snapshot().unwrap();
    for i in (0..image.len()).step_by(7) {
        let mut bad = image.clone();
        bad[i] ^= 0x40;
        assert!(matches!(target.store.restore(&bad), Err(MvccError::Corrupt(_))), "flip at {i}");
    }
    for n in [0, 3, 8, image.len() / 2, image.len() - 1] {
        assert!(matches!(target.store.restore(&image[..n]), Err(MvccError::Corrupt(_))), "cut at {n}");
    }
    assert_eq!(target.store.snapshot().unwrap(), before);
    assert_eq!(target.get("x").unwrap().value, b"1");
}

#[test]
fn corrupt_record_on_disk_refuses_open() {
    let mut f = Fixture::new();
    f.put("a", "1");
    let Fixture { _dir, path, store } = f;
    drop(store);
    let db = Database::create(&path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut table = txn.open_table(REVISIONS).unwrap();
        let mut bytes = table.get(Rev::new(2, 0).to_key()).unwrap().unwrap().value().to_vec();
        bytes[3] ^= 1;
        table.insert(Rev::new(2, 0).to_key(), bytes.as_slice()).unwrap();
    }
    txn.commit().unwrap();
    match Store::open(db) {
        Err(MvccError::Corrupt(msg)) => assert!(msg.contains("revision 2.0"), "{msg}"),
        other => panic!("expected corruption, got {other:?}"),
    }
}
