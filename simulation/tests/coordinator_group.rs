//! The coordinator group alone (no workers, no jobs) under the fault simulation: a fixed
//! sample of seeds must all keep every invariant. A failing seed prints the command that
//! replays it. The whole system is simulated in `whole_system.rs` and `sweep.rs`.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use weir_simulation::{run_seed, SimOptions, SimOutcome};

/// Seeds of three-node groups checked on every `cargo test` (split over the test functions
/// below so they run in parallel).
const SEEDS_PER_TEST: u64 = 5;

fn assert_seeds_pass(seeds: std::ops::Range<u64>, options: &SimOptions) {
    let failed: Vec<SimOutcome> = seeds
        .map(|seed| run_seed(seed, options))
        .filter(|outcome| !outcome.ok)
        .collect();
    let report: String = failed.iter().map(|o| o.to_string()).collect();
    assert!(
        failed.is_empty(),
        "{} seed(s) failed:\n{report}",
        failed.len()
    );
}

/// A coordinator group without workers.
fn group_only() -> SimOptions {
    SimOptions {
        workers: 0,
        ..SimOptions::default()
    }
}

fn three_nodes(first: u64) {
    assert_seeds_pass(first..first + SEEDS_PER_TEST, &group_only());
}

#[test]
fn three_nodes_seeds_0_to_4() {
    three_nodes(0);
}

#[test]
fn three_nodes_seeds_5_to_9() {
    three_nodes(5);
}

#[test]
fn three_nodes_seeds_10_to_14() {
    three_nodes(10);
}

#[test]
fn three_nodes_seeds_15_to_19() {
    three_nodes(15);
}

#[test]
fn five_nodes_seeds_1000_to_1002() {
    let options = SimOptions {
        coordinators: 5,
        fault_phase_ms: 10_000,
        ..group_only()
    };
    assert_seeds_pass(1_000..1_003, &options);
}

#[test]
fn without_faults_every_write_is_acknowledged() {
    let options = SimOptions {
        faults: weir_simulation::FaultClasses::none(),
        fault_phase_ms: 5_000,
        ..group_only()
    };
    let outcome = run_seed(42, &options);
    assert!(outcome.ok, "{outcome}");
    assert_eq!(outcome.writes_unknown, 0, "{outcome}");
    assert_eq!(outcome.faults_injected, 0);
    assert!(outcome.writes_acked > 50, "{outcome}");
    // A calm group elects in its first term and keeps that leader. (openraft's advanced
    // mode may let two candidates both win term 1; only the higher id leads on.)
    let leader_lines: Vec<&String> = outcome
        .trace
        .iter()
        .filter(|l| l.contains(" leader n"))
        .collect();
    assert!(!leader_lines.is_empty(), "{outcome}");
    assert!(
        leader_lines.iter().all(|l| l.ends_with(" term 1")),
        "{leader_lines:?}"
    );
}

/// Replays the seed in `WEIR_SIM_SEED` (and `WEIR_SIM_NODES`, default 3) and prints its
/// trace; does nothing when the variable is not set.
#[test]
fn replay_seed_from_env() {
    let Some(seed) = std::env::var("WEIR_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let options = SimOptions {
        coordinators: std::env::var("WEIR_SIM_NODES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
        ..group_only()
    };
    let outcome = run_seed(seed, &options);
    for line in &outcome.trace {
        println!("{line}");
    }
    assert!(outcome.ok, "{outcome}");
    print!("{outcome}");
}
