//! A seed replays exactly: two runs of one seed, on two threads at once, give the same
//! trace, line for line, and the same digest. Running them concurrently also shows that
//! runs share no state (thread-local generators, globals) with each other.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use weir_simulation::{run_seed, SimOptions, SimOutcome};

fn twice_at_once(seed: u64, options: &SimOptions) -> (SimOutcome, SimOutcome) {
    std::thread::scope(|s| {
        let a = s.spawn(|| run_seed(seed, options));
        let b = s.spawn(|| run_seed(seed, options));
        (a.join().expect("run a"), b.join().expect("run b"))
    })
}

fn assert_replays(seed: u64, options: &SimOptions) -> SimOutcome {
    let (a, b) = twice_at_once(seed, options);
    if let Some((i, (x, y))) = a
        .trace
        .iter()
        .zip(&b.trace)
        .enumerate()
        .find(|(_, (x, y))| x != y)
    {
        panic!("seed {seed}: traces part at line {i}:\n  {x}\n  {y}");
    }
    assert_eq!(a.trace.len(), b.trace.len(), "seed {seed}: trace lengths");
    assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
    assert_eq!(a.simulated_ms, b.simulated_ms, "seed {seed}");
    assert_eq!(a.net, b.net, "seed {seed}");
    assert!(a.ok, "{a}");
    a
}

#[test]
fn whole_system_seeds_replay_exactly() {
    // Coordinators, workers, broker, checkpoint store and jobs, every fault class.
    let options = SimOptions {
        fault_phase_ms: 8_000,
        ..SimOptions::default()
    };
    let x = assert_replays(7, &options);
    let y = assert_replays(8, &options);
    assert_ne!(
        x.trace_hash, y.trace_hash,
        "different seeds, different runs"
    );
}

#[test]
fn three_node_seeds_replay_exactly() {
    let options = SimOptions {
        workers: 0,
        ..SimOptions::default()
    };
    let x = assert_replays(3, &options);
    let y = assert_replays(11, &options);
    assert_ne!(
        x.trace_hash, y.trace_hash,
        "different seeds, different runs"
    );
}

#[test]
fn a_five_node_seed_replays_exactly() {
    let options = SimOptions {
        coordinators: 5,
        fault_phase_ms: 8_000,
        workers: 0,
        ..SimOptions::default()
    };
    assert_replays(1_001, &options);
}
