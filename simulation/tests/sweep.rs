//! The seed sweep: with no bug planted, 500 whole-cluster seeds (3 coordinators, 3 workers,
//! 2 jobs, every fault class) all keep every invariant. `#[ignore]`d in the debug build;
//! `scripts/test.sh` runs it in release (`cargo test --release -p weir-simulation --
//! --ignored`). A failure prints each failing seed's replay command.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use weir_simulation::{run_seed, SimOptions, SimOutcome};

/// Seeds per test function (four functions, so the sweep uses every core).
const SEEDS_PER_PART: u64 = 125;

fn sweep(part: u64) {
    let options = SimOptions::default();
    let first = part * SEEDS_PER_PART;
    let failed: Vec<SimOutcome> = (first..first + SEEDS_PER_PART)
        .map(|seed| run_seed(seed, &options))
        .filter(|o| !o.ok)
        .collect();
    let report: String = failed.iter().map(|o| o.to_string()).collect();
    assert!(
        failed.is_empty(),
        "{} seed(s) failed:\n{report}",
        failed.len()
    );
}

#[test]
#[ignore = "500 seeds: run in release by scripts/test.sh"]
fn seeds_0_to_124() {
    sweep(0);
}

#[test]
#[ignore = "500 seeds: run in release by scripts/test.sh"]
fn seeds_125_to_249() {
    sweep(1);
}

#[test]
#[ignore = "500 seeds: run in release by scripts/test.sh"]
fn seeds_250_to_374() {
    sweep(2);
}

#[test]
#[ignore = "500 seeds: run in release by scripts/test.sh"]
fn seeds_375_to_499() {
    sweep(3);
}
