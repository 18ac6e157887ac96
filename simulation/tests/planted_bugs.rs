//! The simulation catches bugs planted in the real coordinator code: each planted bug makes
//! some seed in the first 200 fail. (With no bug planted, the sampled seeds of
//! `coordinator_group.rs` all pass.)

use weir_coordinator::bugs::PlantedBug;
use weir_simulation::{run_seed, SimOptions};

/// Seeds tried per bug before the test gives up.
const SEEDS_PER_BUG_MAX: u64 = 200;

fn first_failing_seed(bug: PlantedBug) -> Option<(u64, Vec<String>)> {
    let options = SimOptions {
        plant_bug: Some(bug),
        ..SimOptions::default()
    };
    (0..SEEDS_PER_BUG_MAX).find_map(|seed| {
        let outcome = run_seed(seed, &options);
        (!outcome.ok).then_some((seed, outcome.violations))
    })
}

#[test]
fn acknowledging_before_the_fsync_is_caught() {
    let (seed, violations) =
        first_failing_seed(PlantedBug::AckBeforeSync).expect("caught within 200 seeds");
    assert!(
        !violations.is_empty(),
        "seed {seed} failed with a violation"
    );
}

#[test]
fn a_vote_saved_without_fsync_is_caught() {
    let (seed, violations) =
        first_failing_seed(PlantedBug::VoteNotSynced).expect("caught within 200 seeds");
    assert!(
        !violations.is_empty(),
        "seed {seed} failed with a violation"
    );
}

#[test]
fn a_planted_bug_stays_on_its_own_thread() {
    // Planting happens for one run on the simulation's thread; a run without a bug right
    // after it on the same thread passes.
    let _ = run_seed(
        0,
        &SimOptions {
            plant_bug: Some(PlantedBug::AckBeforeSync),
            ..SimOptions::default()
        },
    );
    assert!(run_seed(0, &SimOptions::default()).ok);
}
