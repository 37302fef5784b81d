//! The MVCC apply path alone: batches of puts into [`detcd::mvcc::Store`] on a real redb file, one
//! write batch (one redb write transaction) per batch, committed without fsync as the state machine
//! commits an applied Raft batch. No Raft, no gRPC, no network: the ceiling the rest of the write
//! path sits under.
//!
//! Each benchmark opens a fresh store in a temp dir (removed afterwards). Puts cycle through
//! [`KEY_SPACE`] 8-byte keys, so a long run overwrites keys as a steady workload does; nothing is
//! compacted, so the revision table grows for the whole run, as it does on a server under load.
//! Throughput is in puts.
//!
//! `cargo bench -p detcd-benches --bench mvcc_apply` (add `-- --test` to run each once).

#![allow(clippy::expect_used)] // a setup failure should stop the bench loudly

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use detcd::mvcc::{open_database, Store};
use detcd::storage::RealDisk;
use detcd_benches::keys::Keys;
use detcd_proto::etcdserverpb::PutRequest;

/// Value sizes, in bytes.
const VALUE_BYTES: [usize; 2] = [256, 1024];
/// Puts per write batch (per applied Raft batch).
const BATCH_PUTS: [usize; 3] = [1, 16, 256];
/// Key size, in bytes (etcd's benchmark default).
const KEY_BYTES: usize = 8;
/// Distinct keys the puts cycle through.
const KEY_SPACE: u64 = 100_000;
/// Measuring time per benchmark.
const MEASUREMENT: Duration = Duration::from_secs(5);

fn apply_puts(c: &mut Criterion) {
    let keys = Keys::new(KEY_BYTES, KEY_SPACE, true);
    let mut group = c.benchmark_group("mvcc_apply_put");
    for value_bytes in VALUE_BYTES {
        let value = vec![b'v'; value_bytes];
        for batch_puts in BATCH_PUTS {
            let dir = tempfile::tempdir().expect("create a temp dir");
            let db = open_database(&RealDisk, &dir.path().join("mvcc.redb")).expect("open the redb file");
            let mut store = Store::open(db).expect("open the store");
            let mut next = 0u64;
            group.throughput(Throughput::Elements(batch_puts as u64));
            let id = BenchmarkId::new(format!("value={value_bytes}B"), format!("batch={batch_puts}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    let mut batch = store.write().expect("begin a write batch");
                    // As the state machine applies: the revision table open for the whole batch.
                    batch
                        .with_table(|ops| {
                            for _ in 0..batch_puts {
                                let put =
                                    PutRequest { key: keys.key(next), value: value.clone(), ..PutRequest::default() };
                                ops.put(&put).expect("put");
                                next += 1;
                            }
                        })
                        .expect("open the revision table");
                    batch.commit(false).expect("commit the batch");
                })
            });
            let revision = store.current_revision();
            assert_eq!(revision, 1 + next as i64, "one revision per put");
            drop(store);
            dir.close().expect("remove the temp dir");
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(MEASUREMENT);
    targets = apply_puts
}
criterion_main!(benches);
