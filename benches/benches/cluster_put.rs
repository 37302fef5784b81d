//! A three-member cluster end to end, in process: three `detcd::server::run` on loopback ports
//! (client and peer gRPC over real sockets, real disk, fsync on), the puts spread over all three
//! members (a follower forwards to the leader), several requests in flight. Throughput is in puts.
//!
//! `cargo bench -p detcd-benches --bench cluster_put` (add `-- --test` to run each once).

#![allow(clippy::expect_used)] // a setup failure should stop the bench loudly

mod support;

use criterion::{criterion_group, criterion_main, Criterion};

/// Requests in flight.
const CLIENTS: [usize; 3] = [1, 16, 128];

fn cluster_put(c: &mut Criterion) {
    support::bench_puts(c, "cluster3_put", 3, &CLIENTS);
}

criterion_group! {
    name = benches;
    config = support::config();
    targets = cluster_put
}
criterion_main!(benches);
