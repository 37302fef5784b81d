//! The store on the crash-simulating disk: what a durable commit wrote survives power loss with
//! unsynced writes lost or torn; nothing after it is required to, and the database always opens.

use proptest::prelude::*;

use super::*;
use crate::mvcc::open_database;
use crate::storage::{CrashPolicy, Disk, MemDisk};

const DB: &str = "/data/member/snap/db";

fn open_on(disk: &MemDisk) -> Store {
    Store::open(open_database(disk, Path::new(DB)).unwrap()).unwrap()
}

fn put_all(store: &mut Store, keys: std::ops::Range<u32>, durable: bool) {
    let mut batch = store.write().unwrap();
    for i in keys {
        batch.put(&put(&format!("k{i:04}"), &"v".repeat(300))).unwrap();
    }
    batch.commit(durable).unwrap();
}

fn count(store: &Store) -> usize {
    store.range(&all()).unwrap().kvs.len()
}

#[test]
fn durable_commit_survives_power_loss_that_drops_everything_unsynced() {
    let disk = MemDisk::new();
    let mut store = open_on(&disk);
    put_all(&mut store, 0..50, true);
    put_all(&mut store, 50..80, false);
    disk.crash(CrashPolicy::DropUnsynced); // power loss first: the store never closes cleanly
    drop(store);
    assert_eq!(count(&open_on(&disk)), 50);
}

#[test]
fn a_second_open_of_the_same_database_is_refused_while_the_first_is_open() {
    let disk = MemDisk::new();
    let _store = open_on(&disk);
    let err = open_database(&disk, Path::new(DB)).err().unwrap();
    assert!(err.contains("in use"), "{err}");
}

#[test]
fn a_clean_close_makes_non_durable_commits_durable() {
    let disk = MemDisk::new();
    let mut store = open_on(&disk);
    put_all(&mut store, 0..10, true);
    put_all(&mut store, 10..20, false);
    drop(store);
    disk.crash(CrashPolicy::DropUnsynced);
    assert_eq!(count(&open_on(&disk)), 20);
}

#[test]
fn a_kill_keeps_every_durable_commit_and_may_lose_later_ones() {
    let disk = MemDisk::new();
    let mut store = open_on(&disk);
    put_all(&mut store, 0..10, true);
    put_all(&mut store, 10..20, false);
    disk.crash(CrashPolicy::KeepUnsynced); // the process dies with redb's buffers; its handles die with it
    drop(store);
    let found = count(&open_on(&disk));
    assert!((10..=20).contains(&found), "{found}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Rounds of durable and non-durable commits, then power loss tearing unsynced writes at
    /// seeded sector boundaries: the database opens, holds every durably committed key, and no
    /// more keys than were ever written.
    #[test]
    fn torn_unsynced_writes_never_lose_a_durable_commit(
        rounds in proptest::collection::vec((1u32..40, any::<bool>()), 1..8),
        seed in any::<u64>(),
    ) {
        let disk = MemDisk::new();
        disk.create_dir_all(Path::new("/data")).unwrap();
        let mut store = open_on(&disk);
        let (mut written, mut durable) = (0u32, 0u32);
        for (n, is_durable) in rounds {
            put_all(&mut store, written..written + n, is_durable);
            written += n;
            if is_durable {
                durable = written;
            }
        }
        disk.crash(CrashPolicy::tear_seeded(seed));
        drop(store);
        let reopened = open_on(&disk);
        let found = count(&reopened) as u32;
        prop_assert!(found >= durable && found <= written, "found {found}, durable {durable}, written {written}");
    }
}
