//! The placement planner the leader runs: given the control state, which (job, partition)
//! should move where. Pure: the leader proposes its answer as one `Command::Place`.
//!
//! Rules: every partition of a pending, running, pausing or paused job is owned by a
//! registered worker; a stopping job's partition keeps its owner until the owner reported
//! it paused (committed, no open transaction), then is owned by nobody (one whose owner
//! was lost is placed again while a savepoint of the stop is pending); partitions of
//! stopped, cancelling, cancelled or failed jobs are owned by nobody; load (partitions per worker)
//! differs by at most one between workers; and nothing moves unless one of those rules needs
//! it. Each move takes the partition's epoch + 1, so a previous owner is fenced.

use crate::state::lifecycle;
use crate::state::{Command, ControlState, Job, Move, PartitionState};
use std::collections::BTreeMap;
use weir_core::ids::{JobId, PartitionId, WorkerId};
use weir_core::wire::JobState;

/// Moves in one `Place` command; a bigger plan is spread over several rounds.
pub const PLACEMENT_MOVES_PER_ROUND_MAX: usize = 1024;

/// The commands that bring placement in line with the rules, or nothing.
pub fn plan(state: &ControlState) -> Vec<Command> {
    let mut commands = Vec::new();
    let moves = plan_moves(state);
    if !moves.is_empty() {
        commands.push(Command::Place { moves });
    }
    for job in state.jobs.values() {
        // Cancelled or stopped once nothing runs and nothing a previous owner left open
        // remains (with no worker registered nobody can fence: Kafka's transaction timeout
        // ends it).
        let nobody = state.workers.is_empty();
        let released = |p: &PartitionState| p.worker.is_none() && (nobody || !p.needs_fencing());
        // A partition placed again for a pending savepoint is not released yet.
        let replacing = job
            .partitions
            .values()
            .any(|p| p.worker.is_none() && wants_owner(job, p) && !nobody);
        if replacing || !job.partitions.values().all(released) {
            continue;
        }
        match job.state {
            JobState::Cancelling => commands.push(Command::FinishCancel { job: job.id }),
            JobState::Stopping => commands.push(Command::FinishStop { job: job.id }),
            _ => {}
        }
    }
    commands
}

/// Whether a partition of `job` should have an owner: a stopping job's partition is
/// released once its owner reported it paused, and not placed again; one that lost its
/// owner otherwise is placed again while a savepoint of the stop is pending, so that its
/// committed cut is settled (its new owner reports what it restored, then pauses), and
/// always for a job that repartitions, so that the stop drains its repartition topics.
fn wants_owner(job: &Job, p: &PartitionState) -> bool {
    if !lifecycle::wants_owners(job.state) {
        return false;
    }
    if !lifecycle::releases_when_paused(job.state) {
        return true;
    }
    if p.paused || p.released_paused {
        return false;
    }
    p.worker.is_some() || job.has_pending_savepoint() || !job.repartitions.is_empty()
}

fn plan_moves(state: &ControlState) -> Vec<Move> {
    let mut moves = Vec::new();
    // Load of each live worker, and partitions that need an owner.
    let mut load: BTreeMap<&WorkerId, Vec<(JobId, PartitionId)>> =
        state.workers.keys().map(|w| (w, Vec::new())).collect();
    let mut unowned: Vec<(JobId, PartitionId)> = Vec::new();
    for job in state.jobs.values() {
        for (partition, p) in &job.partitions {
            let key = (job.id, *partition);
            match (&p.worker, wants_owner(job, p)) {
                (Some(_), false) => moves.push(Move {
                    job: job.id,
                    partition: *partition,
                    worker: None,
                    epoch: p.epoch.next(),
                }),
                (Some(w), true) => match load.get_mut(w) {
                    Some(owned) => owned.push(key),
                    None => unowned.push(key),
                },
                (None, true) => unowned.push(key),
                (None, false) => {}
            }
        }
    }
    if load.is_empty() {
        moves.truncate(PLACEMENT_MOVES_PER_ROUND_MAX);
        return moves;
    }
    let mut target: BTreeMap<(JobId, PartitionId), &WorkerId> = BTreeMap::new();
    for key in unowned {
        let least = least_loaded(&load);
        target.insert(key, least);
        load.get_mut(least).expect("worker from the map").push(key);
    }
    // Even out: move from the most to the least loaded until they differ by at most one.
    loop {
        let least = least_loaded(&load);
        let most = most_loaded(&load);
        if load[most].len() <= load[least].len() + 1 {
            break;
        }
        let key = load
            .get_mut(most)
            .expect("worker from the map")
            .pop()
            .expect("most loaded is not empty");
        target.insert(key, least);
        load.get_mut(least).expect("worker from the map").push(key);
    }
    for ((job, partition), worker) in target {
        let p = &state.jobs[&job].partitions[&partition];
        moves.push(Move {
            job,
            partition,
            worker: Some(worker.clone()),
            epoch: p.epoch.next(),
        });
    }
    moves.truncate(PLACEMENT_MOVES_PER_ROUND_MAX);
    moves
}

fn least_loaded<'a>(load: &BTreeMap<&'a WorkerId, Vec<(JobId, PartitionId)>>) -> &'a WorkerId {
    load.iter()
        .min_by_key(|(w, owned)| (owned.len(), *w))
        .map(|(w, _)| *w)
        .expect("at least one worker")
}

fn most_loaded<'a>(load: &BTreeMap<&'a WorkerId, Vec<(JobId, PartitionId)>>) -> &'a WorkerId {
    load.iter()
        .max_by_key(|(w, owned)| (owned.len(), std::cmp::Reverse(*w)))
        .map(|(w, _)| *w)
        .expect("at least one worker")
}
