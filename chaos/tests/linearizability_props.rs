//! Property tests of the linearizability checker against the sequential reference model in
//! `testgen`: histories it produces are linearizable by construction; a stale read planted in one
//! is not.

use detcd_chaos::linearizability::check;
use detcd_chaos::linearizability::testgen::{generate, plant_stale_read, GenConfig};
use proptest::prelude::*;

/// Cases per property: each builds and checks a history of up to a few hundred operations.
const CASES: u32 = 128;

fn config() -> impl Strategy<Value = GenConfig> {
    (any::<u64>(), 10usize..300, 1usize..4, 1u32..12, 0u64..25, 1usize..3).prop_map(
        |(seed, ops, keys, clients, indeterminate_percent, group_keys)| GenConfig {
            seed,
            ops,
            keys,
            clients,
            group_keys,
            indeterminate_percent,
            ..GenConfig::default()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn histories_of_a_correct_store_are_accepted(config in config()) {
        let history = generate(&config);
        match check(&history) {
            Ok(summary) => prop_assert!(summary.is_conclusive(), "inconclusive: {:?}", summary),
            Err(violation) => prop_assert!(false, "rejected a correct history:\n{}", violation),
        }
    }

    #[test]
    fn a_planted_stale_read_is_rejected_with_it_in_the_window(config in config(), pick in any::<u64>()) {
        let history = generate(&GenConfig { ops: config.ops + 100, ..config });
        let planted = plant_stale_read(&history, pick);
        prop_assume!(planted.is_some());
        let Some((planted, stale)) = planted else { return Ok(()) };
        match check(&planted) {
            Ok(summary) => prop_assert!(false, "accepted a stale read (#{}): {:?}", stale, summary),
            Err(violation) => prop_assert!(violation.ops.contains(&stale), "#{} not in\n{}", stale, violation),
        }
    }
}
