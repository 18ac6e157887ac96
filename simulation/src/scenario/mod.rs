//! One seeded run of a coordinator group, in the shape of TigerBeetle's VOPR.
//!
//! 1. The seed draws everything: the fault mix (swarm testing), the fault schedule, the
//!    network's and the clients' random choices, openraft's election timeouts and tokio's
//!    own scheduling choices. The whole run happens on one thread, on a paused clock that
//!    jumps from timer to timer, so it replays exactly and runs faster than real time.
//! 2. Safety phase: clients write while the schedule crashes and restarts nodes (losing
//!    unsynced writes or not), partitions the network (isolating the leader, one-way links,
//!    minority splits), jumps clocks, and the network drops, duplicates and delays messages.
//!    The checker watches every node's published Raft state all along.
//! 3. Liveness phase: every fault heals and every node restarts; within a bounded simulated
//!    time a leader must accept a write and all nodes must converge on one state.
//! 4. The converged state and the committed logs are checked against what clients were told.
//!
//! The outcome carries the violations, a trace and its digest: the same seed must give the
//! same digest, and a failing seed prints the command that replays it.
//!
//! Where each part lives: the options and the outcome in `options.rs` and `outcome.rs`;
//! the run's setup (group, fleet, jobs, clients) and its phases in order in `setup.rs`;
//! the timeline of the fault phase and the healing, probing and final checks in
//! `timeline.rs`; one method per kind of fault in `inject.rs`.

mod inject;
mod options;
mod outcome;
mod setup;
mod timeline;

pub use options::SimOptions;
pub use outcome::SimOutcome;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::{ScheduledFault, Swarm};

/// How often the liveness phase looks at whether the group has converged.
pub const CONVERGENCE_POLL_MS: u64 = 10;
/// Attempts the liveness probe may make (it also stops at the liveness deadline).
pub const PROBE_ATTEMPTS_MAX: usize = 1_000;
/// Log entries between snapshots are drawn from this range, so runs exercise compaction and
/// snapshot installation as well as plain replication.
const SNAPSHOT_EVERY_ENTRIES: (u64, u64) = (50, 2_000);
/// Records per processing step of each partition are drawn from this range (small steps
/// interleave more).
const POLL_BATCH_RECORDS: (usize, usize) = (8, 512);
/// Entries kept behind a snapshot are drawn from this range.
const LOG_KEPT_AFTER_SNAPSHOT: (u64, u64) = (10, 500);

/// Runs one seed to completion on a fresh single-threaded runtime with a paused clock.
pub fn run_seed(seed: u64, options: &SimOptions) -> SimOutcome {
    // openraft draws election timeouts from this thread's generator; the runtime below
    // polls every task on this thread.
    weir_coordinator::runtime::seed_thread_rng(seed);
    // actix's system runs on this very runtime (the worker fleet's actors are polled on
    // this thread like every other task).
    let system = actix::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()))
            .build()
            .expect("a current-thread runtime builds")
    });
    weir_coordinator::bugs::plant(options.plant_bug);
    // The key tables' hash seed comes from the run's seed, so the run replays exactly.
    weir_worker::operators::seed_key_hash_this_thread(seed);
    let outcome = system.block_on(setup::run(seed, options.clone()));
    // Dropping the runtime drops every task still parked on it (in-flight messages,
    // duplicates, dead workers' calls), so nothing leaks into the next run.
    drop(system);
    weir_coordinator::bugs::plant(None);
    outcome
}

/// The seed's swarm and fault schedule, drawn from the run's master generator first.
fn draw_schedule(master: &mut StdRng, options: &SimOptions) -> (Swarm, Vec<ScheduledFault>) {
    let mut schedule_rng = StdRng::seed_from_u64(master.gen());
    let swarm = Swarm::draw(&mut schedule_rng, &options.faults, options.workers > 0);
    let schedule = swarm.schedule(&mut schedule_rng, options.fault_phase_ms);
    (swarm, schedule)
}

/// The faults `seed` schedules with `options` (before `skip_faults` leaves any out).
pub fn fault_schedule(seed: u64, options: &SimOptions) -> Vec<ScheduledFault> {
    draw_schedule(&mut StdRng::seed_from_u64(seed), options).1
}
