//! The simulation suite: every named scenario over a fixed set of seeds, the determinism check,
//! and proof that each planted bug is caught.
//!
//! Run with `RUSTFLAGS="--cfg madsim --cfg tokio_unstable" cargo test --release -p detcd-sim` (CI uses
//! `CARGO_TARGET_DIR=target/madsim`). `DETCD_SIM_SEEDS=N` changes how many seeds each scenario
//! runs (default [`SEEDS_DEFAULT`]). A failure prints its violations and the command that replays
//! the seed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use detcd::planted::Bug;
use detcd_sim::scenario::{replay_command, run_seed, Scenario};
use detcd_sim::scenarios;

/// Seeds per scenario in the suite (1..=N).
const SEEDS_DEFAULT: u64 = 20;
/// A planted bug must be caught within this many seeds.
const PLANTED_SEEDS_MAX: u64 = 200;

fn seeds() -> u64 {
    std::env::var("DETCD_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS_DEFAULT)
}

fn scenario(name: &str) -> Scenario {
    scenarios::by_name(name).unwrap_or_else(|| panic!("no scenario named {name}"))
}

/// Runs seeds 1..=N of `name`; panics on the first seed that fails a check.
fn run_suite_scenario(name: &str) {
    let scenario = scenario(name);
    for seed in 1..=seeds() {
        let report = run_seed(&scenario, seed);
        assert!(
            report.ok_ops > 0,
            "{name} seed {seed}: no operation succeeded; replay: {}",
            replay_command(name, seed)
        );
        if !report.passed() {
            panic!(
                "{name} seed {seed} failed:\n  {}\nplan:\n{}\nreplay: {}",
                report.violations.join("\n  "),
                report.plan,
                replay_command(name, seed)
            );
        }
    }
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_suite_scenario(stringify!($name));
            }
        )*

        #[test]
        fn every_suite_scenario_has_a_test() {
            let tested = [$(stringify!($name)),*];
            for scenario in scenarios::suite() {
                assert!(tested.contains(&scenario.name), "scenario {} has no test", scenario.name);
            }
        }
    };
}

suite!(
    leader_kill_loop,
    partitions_minority,
    partitions_majority,
    rolling_restarts,
    power_loss_torn_writes,
    mixed,
    clogged_links,
    isolate_leader,
    bridge,
    one_way,
    pause_resume,
    multi_key_txn,
    ranges,
    many_clients,
    restarts,
    power_loss_all,
    watch_under_partitions,
    watch_leader_kills,
    lease_leader_kills,
    lease_partitions,
    scale_out_and_in,
    scale_under_faults,
);

/// Scenarios whose replays are compared: the KV workload alone, and with watchers and lease
/// clients (their records are part of the hash).
const DETERMINISM_SCENARIOS: [&str; 3] = ["mixed", "watch_under_partitions", "lease_leader_kills"];

#[test]
fn the_same_seed_gives_the_same_history() {
    for name in DETERMINISM_SCENARIOS {
        let scenario = scenario(name);
        let first = run_seed(&scenario, 7);
        let second = run_seed(&scenario, 7);
        assert!(first.ops > 0);
        assert_eq!(first.history_hash, second.history_hash, "seed 7 of {name} replayed differently");
        let other = run_seed(&scenario, 8);
        assert_ne!(first.history_hash, other.history_hash, "different seeds of {name} gave the same history");
    }
}

/// Two runs of one seed make the same random draws at the same simulated instants (sampled every
/// 20 ms of simulated time, see `detcd_sim::world::trace`), even when another world ran first in
/// the process. (Stronger than madsim's own `check_determinism`, which cannot be used: it builds its
/// worlds itself, without the seeded tokio context of `detcd_sim::world`.)
#[test]
fn random_draws_replay_at_the_same_instants() {
    for name in ["leader_kill_loop", "watch_leader_kills", "lease_partitions"] {
        let traced = |seed: u64| {
            let scenario = scenario(name);
            detcd_sim::world::trace(seed, move || async move { detcd_sim::scenario::run_current(&scenario).await })
        };
        let (first, first_samples) = traced(3);
        let (second, second_samples) = traced(3);
        assert!(
            first.ops > 0 && first_samples.len() > 100,
            "{name}: {} ops, {} samples",
            first.ops,
            first_samples.len()
        );
        if let Some(at) = first_samples.iter().zip(&second_samples).position(|(a, b)| a != b) {
            panic!(
                "{name} seed 3 diverged between {} and {} ms of simulated time (sample {at}: {:?} then {:?})",
                at.checked_sub(1).map_or(0, |before| first_samples[before].0 / 1_000_000),
                first_samples[at].0 / 1_000_000,
                first_samples[at],
                second_samples[at]
            );
        }
        assert_eq!(first_samples.len(), second_samples.len(), "{name} seed 3 ran for a different time");
        assert_eq!(first.history_hash, second.history_hash, "{name} seed 3 recorded a different history");
    }
}

fn assert_caught(bug: Bug) {
    let scenario = scenarios::planted(bug);
    for seed in 1..=PLANTED_SEEDS_MAX {
        let report = run_seed(&scenario, seed);
        if !report.passed() {
            eprintln!("{} caught at seed {seed}: {}", bug.name(), report.violations[0]);
            return;
        }
    }
    panic!("planted bug {} was not caught in {PLANTED_SEEDS_MAX} seeds", bug.name());
}

#[test]
fn planted_ack_before_fsync_is_caught() {
    assert_caught(Bug::AckBeforeFsync);
}

#[test]
fn planted_follower_local_read_is_caught() {
    assert_caught(Bug::FollowerLocalRead);
}

#[test]
fn planted_vote_not_persisted_is_caught() {
    assert_caught(Bug::VoteNotPersisted);
}

#[test]
fn planted_apply_twice_after_restart_is_caught() {
    assert_caught(Bug::ApplyTwiceAfterRestart);
}

/// Seeds that once found a bug, kept as scenarios of their own (each names the fix).
const REGRESSIONS: [(&str, u64, &str); 8] = [
    (
        "leader_kill_loop",
        10,
        "a restarted leader resumed its old term with a shorter log (log_store::restart_as_follower)",
    ),
    ("leader_kill_loop", 7, "failed in the same campaign (a read went back in revision); passes since the same fix"),
    (
        "lease_partitions",
        2,
        "a cut-off leader kept renewing leases its successor expired (leases::answer_here confirms leadership first)",
    ),
    ("lease_partitions", 31, "the same cut-off leader renewed a lease after its revoke was acknowledged; same fix"),
    (
        "multi_key_txn",
        2,
        "a member that installed the leader's snapshot took the leader's identity from it (local meta stays out of images)",
    ),
    (
        "scale_under_faults_mixed",
        11,
        "a new member asked a peer that had not applied its add, and gave up (join asks every peer; member list shows applied membership)",
    ),
    (
        "scale_under_faults_mixed",
        17,
        "a lagging member told a just-added voter it was removed, and the voter stopped (only applied removals count)",
    ),
    (
        "power_loss_torn_writes",
        302,
        "power went after a snapshot install, before the log's purge record was durable: the member refused to start (a log behind the database now counts as purged up to the applied entry)",
    ),
];

#[test]
fn regression_seeds_stay_fixed() {
    for (name, seed, why) in REGRESSIONS {
        let report = run_seed(&scenario(name), seed);
        assert!(
            report.passed(),
            "regression {name} seed {seed} ({why}) is back:\n  {}\nreplay: {}",
            report.violations.join("\n  "),
            replay_command(name, seed)
        );
    }
}
