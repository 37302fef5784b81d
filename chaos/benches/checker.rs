//! Checker throughput on generated linearizable histories (see `linearizability::testgen`), and
//! the cost of finding the window of a planted stale read.
//!
//! `cargo bench -p detcd-chaos` runs them all.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use detcd_chaos::history::History;
use detcd_chaos::linearizability::check;
use detcd_chaos::linearizability::testgen::{generate, plant_stale_read, GenConfig};

/// Samples per benchmark: the large histories take a good fraction of a second each.
const SAMPLES: usize = 10;

/// Measuring time per benchmark.
const MEASUREMENT: Duration = Duration::from_secs(5);

fn history(ops: usize, keys: usize, clients: u32, indeterminate_percent: u64, group_keys: usize) -> History {
    generate(&GenConfig { seed: 42, ops, keys, clients, indeterminate_percent, group_keys, ..GenConfig::default() })
}

fn bench_accepts(c: &mut Criterion, name: &str, history: &History) {
    c.bench_function(name, |b| {
        b.iter(|| {
            let summary = check(history);
            assert!(summary.as_ref().is_ok_and(|summary| summary.is_conclusive()), "{summary:?}");
        })
    });
}

fn linearizable_histories(c: &mut Criterion) {
    bench_accepts(c, "check 10k ops, 10 keys, 50 clients, 2% indeterminate", &history(10_000, 10, 50, 2, 1));
    bench_accepts(c, "check 10k ops, 10 keys in pairs, 50 clients, 10% indeterminate", &history(10_000, 10, 50, 10, 2));
    bench_accepts(c, "check 10k ops, 1 key, 50 clients, 5% indeterminate", &history(10_000, 1, 50, 5, 1));
    bench_accepts(
        c,
        "check 100k ops, 1000 keys in pairs, 50 clients, 5% indeterminate",
        &history(100_000, 1_000, 50, 5, 2),
    );
}

fn stale_read_window(c: &mut Criterion) {
    let Some((planted, stale)) = plant_stale_read(&history(1_000, 2, 8, 2, 1), 500) else {
        panic!("the generated history has no get to make stale");
    };
    c.bench_function("reject 1k ops with a stale read, window included", |b| {
        b.iter_batched(
            || planted.clone(),
            |planted| {
                let violation = check(&planted).err();
                assert!(violation.is_some_and(|violation| violation.ops.contains(&stale)));
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(SAMPLES).measurement_time(MEASUREMENT);
    targets = linearizable_histories, stale_read_window
}
criterion_main!(benches);
