//! One member end to end, in process: puts through the gRPC KV API of a single-member cluster
//! (`detcd::server::run` on loopback ports, real disk, fsync on), several requests in flight. Each
//! put goes the whole write path: gRPC, Raft proposal, log append and fsync (group commit), apply
//! to the MVCC store, response. Throughput is in puts.
//!
//! `cargo bench -p detcd-benches --bench member_put` (add `-- --test` to run each once).

#![allow(clippy::expect_used)] // a setup failure should stop the bench loudly

mod support;

use criterion::{criterion_group, criterion_main, Criterion};

/// Requests in flight.
const CLIENTS: [usize; 3] = [1, 16, 128];

fn member_put(c: &mut Criterion) {
    support::bench_puts(c, "member_put", 1, &CLIENTS);
}

criterion_group! {
    name = benches;
    config = support::config();
    targets = member_put
}
criterion_main!(benches);
