//! The exactly-once cycle: every answer in every phase (a table), and an exhaustive
//! explorer of every interleaving of answers and crashes up to a depth, checking the
//! protocol's invariants against a model of the world the driver talks to.

use super::*;
use std::collections::BTreeSet;
use weir_core::ids::{Epoch, WorkerId};

const CONFIG: CycleConfig = CycleConfig {
    checkpoint_interval_ms: 1_000,
    offsets_refresh_interval_ms: 3_600_000,
    commit_before_snapshot: false,
};

fn cycle() -> Cycle {
    Cycle::recovered(CONFIG, 10, CheckpointId(4), true, 0)
}

fn pending(location: &str) -> Pending {
    Pending {
        checkpoint: CheckpointId(4),
        offset: 25,
        location: location.into(),
    }
}

fn stale() -> CheckpointRefusal {
    CheckpointRefusal::StaleEpoch {
        got: Epoch(1),
        current: Epoch(2),
    }
}

/// A cycle in each phase of a checkpoint, reached through the events that lead there.
fn in_phase(name: &str) -> Cycle {
    let mut c = cycle();
    c.handle(Event::BatchProcessed { next_offset: 25 });
    if name == "open-dirty" {
        return c;
    }
    c.handle(Event::Tick { now_ms: 1 });
    if name == "storing" {
        return c;
    }
    c.handle(Event::SnapshotStored {
        location: "s".into(),
    });
    if name == "preparing" {
        return c;
    }
    c.handle(Event::PreparedAnswered(PrepareAnswer::Accepted));
    assert_eq!(name, "committing");
    c
}

#[test]
fn a_checkpoint_goes_store_prepare_commit_report_begin_prune() {
    let mut c = cycle();
    assert_eq!(
        c.handle(Event::Tick { now_ms: 1 }),
        vec![],
        "nothing to checkpoint"
    );
    assert_eq!(c.handle(Event::BatchProcessed { next_offset: 25 }), vec![]);
    // The first checkpoint after recovery is due at once.
    assert_eq!(
        c.handle(Event::Tick { now_ms: 2 }),
        vec![Action::StoreSnapshot {
            checkpoint: CheckpointId(4),
            offset: 25,
            base_offset: None
        }]
    );
    assert_eq!(
        c.handle(Event::SnapshotStored {
            location: "s".into()
        }),
        vec![Action::ReportPrepared(pending("s"))]
    );
    assert_eq!(
        c.handle(Event::PreparedAnswered(PrepareAnswer::Accepted)),
        vec![Action::Commit { offset: 25 }]
    );
    assert_eq!(
        c.handle(Event::TransactionCommitted { now_ms: 3 }),
        vec![
            Action::ReportCommitted(pending("s")),
            Action::Begin,
            Action::Prune { offset: 25 }
        ]
    );
    assert_eq!(c.phase(), &Phase::Open);
    assert_eq!(c.next_checkpoint(), CheckpointId(5));
    // The next one waits for the interval, and builds on the stored one.
    c.handle(Event::BatchProcessed { next_offset: 30 });
    assert_eq!(c.handle(Event::Tick { now_ms: 500 }), vec![]);
    assert_eq!(
        c.handle(Event::Tick { now_ms: 1_002 }),
        vec![Action::StoreSnapshot {
            checkpoint: CheckpointId(5),
            offset: 30,
            base_offset: Some(25)
        }]
    );
}

#[test]
fn every_answer_to_prepared() {
    let table: Vec<(PrepareAnswer, Phase, Vec<Action>)> = vec![
        (
            PrepareAnswer::Accepted,
            Phase::Committing(pending("s")),
            vec![Action::Commit { offset: 25 }],
        ),
        (
            PrepareAnswer::Refused(stale()),
            Phase::Stopped(StopReason::Fenced(stale().to_string())),
            vec![Action::Abort],
        ),
        (
            PrepareAnswer::Refused(CheckpointRefusal::NotOwner {
                worker: WorkerId::from("w"),
            }),
            Phase::Stopped(StopReason::Fenced(
                "worker w does not own the partition".into(),
            )),
            vec![Action::Abort],
        ),
        (
            PrepareAnswer::Refused(CheckpointRefusal::NotNewer {
                checkpoint: CheckpointId(4),
                committed: CheckpointId(4),
            }),
            Phase::Stopped(StopReason::Refused(CheckpointRefusal::NotNewer {
                checkpoint: CheckpointId(4),
                committed: CheckpointId(4),
            })),
            vec![Action::Abort],
        ),
        (
            PrepareAnswer::Refused(CheckpointRefusal::Unknown),
            Phase::Stopped(StopReason::Refused(CheckpointRefusal::Unknown)),
            vec![Action::Abort],
        ),
        (PrepareAnswer::Unavailable, Phase::Open, vec![]),
    ];
    for (answer, phase, actions) in table {
        let mut c = in_phase("preparing");
        assert_eq!(
            c.handle(Event::PreparedAnswered(answer.clone())),
            actions,
            "{answer:?}"
        );
        assert_eq!(c.phase(), &phase, "{answer:?}");
    }
}

#[test]
fn a_checkpoint_asked_for_now_starts_at_once_or_refreshes_when_idle() {
    let mut c = cycle();
    c.handle(Event::BatchProcessed { next_offset: 25 });
    c.handle(Event::Tick { now_ms: 2 });
    c.handle(Event::SnapshotStored {
        location: "s".into(),
    });
    c.handle(Event::PreparedAnswered(PrepareAnswer::Accepted));
    c.handle(Event::TransactionCommitted { now_ms: 3 });
    c.handle(Event::BatchProcessed { next_offset: 30 });
    // Long before the interval: a tick does nothing, asking for one does.
    assert_eq!(c.handle(Event::Tick { now_ms: 4 }), vec![]);
    assert_eq!(
        c.handle(Event::CheckpointNow { now_ms: 5 }),
        vec![Action::StoreSnapshot {
            checkpoint: CheckpointId(5),
            offset: 30,
            base_offset: Some(25)
        }]
    );
    // Mid-checkpoint it changes nothing.
    assert_eq!(c.handle(Event::CheckpointNow { now_ms: 6 }), vec![]);
    // Idle: nothing to store; the refresh still waits for its own interval.
    let mut idle = cycle();
    assert_eq!(idle.handle(Event::CheckpointNow { now_ms: 1 }), vec![]);
    assert_eq!(
        idle.handle(Event::CheckpointNow { now_ms: 3_600_000 }),
        vec![Action::Commit { offset: 10 }]
    );
}

#[test]
fn a_postponed_checkpoint_keeps_its_records_and_waits_an_interval() {
    let mut c = in_phase("preparing");
    c.handle(Event::PreparedAnswered(PrepareAnswer::Unavailable));
    // Not retried at every step: a whole interval later, with the same offset and id.
    assert_eq!(c.handle(Event::Tick { now_ms: 2 }), vec![]);
    assert_eq!(
        c.handle(Event::Tick { now_ms: 1_001 }),
        vec![Action::StoreSnapshot {
            checkpoint: CheckpointId(4),
            offset: 25,
            base_offset: Some(25)
        }]
    );
}

#[test]
fn every_outcome_of_store_and_commit() {
    let mut c = in_phase("storing");
    assert_eq!(
        c.handle(Event::SnapshotFailed {
            error: "disk".into()
        }),
        vec![]
    );
    assert_eq!(
        c.phase(),
        &Phase::Stopped(StopReason::StoreFailed("disk".into()))
    );
    for (fenced, why) in [
        (true, StopReason::Fenced("epoch".into())),
        (false, StopReason::CommitFailed("epoch".into())),
    ] {
        let mut c = in_phase("committing");
        let error = "epoch".to_string();
        assert_eq!(c.handle(Event::TransactionFailed { fenced, error }), vec![]);
        assert_eq!(c.phase(), &Phase::Stopped(why));
    }
}

#[test]
fn a_stop_aborts_in_every_phase_and_a_stopped_cycle_does_nothing() {
    for phase in ["open-dirty", "storing", "preparing", "committing"] {
        let mut c = in_phase(phase);
        assert_eq!(
            c.handle(Event::StopRequested),
            vec![Action::Abort],
            "{phase}"
        );
        assert_eq!(c.phase(), &Phase::Stopped(StopReason::Requested));
        assert_eq!(c.handle(Event::Tick { now_ms: 99_999 }), vec![]);
        assert_eq!(c.handle(Event::StopRequested), vec![]);
    }
}

#[test]
fn time_passing_mid_checkpoint_changes_nothing() {
    for phase in ["storing", "preparing", "committing"] {
        let mut c = in_phase(phase);
        let before = c.clone();
        assert_eq!(c.handle(Event::Tick { now_ms: 5_000 }), vec![], "{phase}");
        assert_eq!(c, before);
    }
}

#[test]
fn an_idle_partition_refreshes_its_offsets_hourly_without_moving_them() {
    let mut c = cycle();
    assert_eq!(c.handle(Event::Tick { now_ms: 1_000 }), vec![]);
    assert_eq!(
        c.handle(Event::Tick { now_ms: 3_600_000 }),
        vec![Action::Commit { offset: 10 }]
    );
    assert_eq!(c.phase(), &Phase::Refreshing { offset: 10 });
    assert_eq!(
        c.handle(Event::TransactionCommitted { now_ms: 3_600_001 }),
        vec![Action::Begin]
    );
    assert_eq!(
        c.next_checkpoint(),
        CheckpointId(4),
        "a refresh is not a checkpoint"
    );
    // Without a commit point there is nothing to refresh.
    let mut fresh = Cycle::recovered(CONFIG, 0, CheckpointId(1), false, 0);
    assert_eq!(fresh.handle(Event::Tick { now_ms: 3_600_000 }), vec![]);
}

#[test]
fn the_planted_bug_commits_before_the_snapshot_is_stored() {
    let config = CycleConfig {
        commit_before_snapshot: true,
        ..CONFIG
    };
    let mut c = Cycle::recovered(config, 10, CheckpointId(4), true, 0);
    c.handle(Event::BatchProcessed { next_offset: 25 });
    let actions = c.handle(Event::Tick { now_ms: 1 });
    assert!(
        matches!(actions[..], [Action::ReportPrepared(_)]),
        "{actions:?}"
    );
}

#[test]
fn recovery_restores_only_the_state_at_the_committed_offset() {
    assert_eq!(
        plan_recovery(None, None, None),
        RecoveryPlan::Fresh {
            next_checkpoint: CheckpointId(1)
        }
    );
    assert_eq!(
        plan_recovery(None, None, Some(CheckpointId(7))),
        RecoveryPlan::CommittedOffsetLost {
            checkpoint: CheckpointId(7)
        }
    );
    assert_eq!(
        plan_recovery(Some(40), None, Some(CheckpointId(7))),
        RecoveryPlan::Snapshot { offset: 40 }
    );
    // A local copy carrying an older id than the group committed: ids still grow.
    assert_eq!(
        plan_recovery(Some(40), Some(5), Some(CheckpointId(7))),
        RecoveryPlan::Local {
            offset: 40,
            next_checkpoint: CheckpointId(8)
        }
    );
    assert_eq!(
        next_checkpoint_after(9, Some(CheckpointId(7))),
        CheckpointId(10)
    );
}

// ---- the explorer -------------------------------------------------------------------

/// Events an explorer run may take; the depth bounds how many.
const EXPLORE_DEPTH: usize = 16;

/// Crashes in one history: enough for a crash in every phase after a recovery.
const CRASHES_MAX: u32 = 2;

/// The world the driver talks to, as far as the invariants care.
#[derive(Debug, Clone, Default)]
struct World {
    /// Offsets with a durable snapshot.
    stored: BTreeSet<i64>,
    /// (checkpoint, offset) the group accepted as prepared.
    accepted: BTreeSet<(u64, i64)>,
    /// Kafka's committed source offset (the commit point).
    kafka_committed: Option<i64>,
    /// Checkpoint ids committed, in order.
    committed_ids: Vec<u64>,
    /// The group's newest committed checkpoint id.
    group_committed: Option<u64>,
    /// Offsets read so far (what the source holds).
    source_end: i64,
    /// Where the last recovery started reading.
    recovered_at: i64,
}

/// One explored history: the cycle, the world, and actions not yet performed.
#[derive(Debug, Clone)]
struct Run {
    cycle: Cycle,
    world: World,
    queue: std::collections::VecDeque<Action>,
    now_ms: u64,
    crashes: u32,
    /// Whether the driver may ask for pauses and resumes in this exploration.
    pausing: bool,
}

/// A choice the environment makes at one step.
#[derive(Debug, Clone, Copy)]
enum Choice {
    Batch,
    Tick,
    Crash,
    Answer(usize),
    Pause,
    Resume,
}

fn answers(action: &Action) -> usize {
    match action {
        Action::StoreSnapshot { .. } => 2, // stored, failed
        Action::ReportPrepared(_) => 3,    // accepted, refused, unavailable
        Action::Commit { .. } => 3,        // committed, fenced, failed
        _ => 1,                            // done
    }
}

/// Violations of the protocol's invariants, if any, after `choice`.
fn apply(run: &mut Run, choice: Choice, config: CycleConfig) -> Result<(), String> {
    match choice {
        Choice::Batch => {
            run.world.source_end += 5;
            let next_offset = run.world.source_end;
            run.cycle.handle(Event::BatchProcessed { next_offset });
        }
        Choice::Tick => {
            run.now_ms += 700;
            let now_ms = run.now_ms;
            run.queue.extend(run.cycle.handle(Event::Tick { now_ms }));
        }
        Choice::Pause => {
            run.now_ms += 1;
            let now_ms = run.now_ms;
            run.queue
                .extend(run.cycle.handle(Event::PauseRequested { now_ms }));
        }
        Choice::Resume => {
            run.queue.extend(run.cycle.handle(Event::ResumeRequested));
        }
        Choice::Crash => {
            // The process dies: the open transaction is gone (the next owner's fencing
            // aborts it), and recovery plans from what Kafka and the group hold.
            run.crashes += 1;
            run.queue.clear();
            let plan = plan_recovery(
                run.world.kafka_committed,
                None,
                run.world.group_committed.map(CheckpointId),
            );
            let (offset, next) = match plan {
                RecoveryPlan::Fresh { next_checkpoint } => (0, next_checkpoint),
                RecoveryPlan::Snapshot { offset } => {
                    if !run.world.stored.contains(&offset) {
                        return Err(format!(
                            "recovery needs the snapshot at {offset}, which was never stored"
                        ));
                    }
                    let restored = run.world.committed_ids.last().copied().unwrap_or(0);
                    (
                        offset,
                        next_checkpoint_after(
                            restored,
                            run.world.group_committed.map(CheckpointId),
                        ),
                    )
                }
                RecoveryPlan::Local { .. } => unreachable!("no local copy in this model"),
                RecoveryPlan::CommittedOffsetLost { .. } => {
                    return Err("recovery found the commit point lost".into())
                }
            };
            if Some(offset) != run.world.kafka_committed && run.world.kafka_committed.is_some() {
                return Err(format!(
                    "recovery restored {offset}, Kafka committed {:?}",
                    run.world.kafka_committed
                ));
            }
            run.world.source_end = offset;
            run.world.recovered_at = offset;
            run.cycle = Cycle::recovered(
                config,
                offset,
                next,
                run.world.kafka_committed.is_some(),
                run.now_ms,
            );
        }
        Choice::Answer(i) => {
            let action = run.queue.pop_front().expect("an action to answer");
            let event = match (action, i) {
                (Action::StoreSnapshot { offset, .. }, 0) => {
                    run.world.stored.insert(offset);
                    Some(Event::SnapshotStored {
                        location: format!("at {offset}"),
                    })
                }
                (Action::StoreSnapshot { .. }, _) => Some(Event::SnapshotFailed {
                    error: "disk".into(),
                }),
                (Action::ReportPrepared(p), 0) => {
                    run.world.accepted.insert((p.checkpoint.0, p.offset));
                    Some(Event::PreparedAnswered(PrepareAnswer::Accepted))
                }
                (Action::ReportPrepared(_), 1) => {
                    Some(Event::PreparedAnswered(PrepareAnswer::Refused(stale())))
                }
                (Action::ReportPrepared(_), _) => {
                    Some(Event::PreparedAnswered(PrepareAnswer::Unavailable))
                }
                (Action::Commit { offset }, 0) => {
                    match run.cycle.phase().clone() {
                        Phase::Committing(p) => {
                            if !run.world.stored.contains(&offset) {
                                return Err(format!(
                                    "committed offset {offset} before its snapshot was stored"
                                ));
                            }
                            if !run.world.accepted.contains(&(p.checkpoint.0, offset)) {
                                return Err(format!(
                                    "committed checkpoint {} without an accepted prepare",
                                    p.checkpoint.0
                                ));
                            }
                            if run
                                .world
                                .committed_ids
                                .last()
                                .is_some_and(|last| *last >= p.checkpoint.0)
                            {
                                return Err(format!(
                                    "checkpoint id {} does not grow",
                                    p.checkpoint.0
                                ));
                            }
                            run.world.committed_ids.push(p.checkpoint.0);
                            run.world.group_committed = Some(p.checkpoint.0);
                        }
                        Phase::Refreshing { offset: refreshed } => {
                            if Some(refreshed) != run.world.kafka_committed {
                                return Err("an idle refresh moved the commit point".into());
                            }
                        }
                        other => return Err(format!("a commit in phase {other:?}")),
                    }
                    run.world.kafka_committed = Some(offset);
                    run.now_ms += 1;
                    Some(Event::TransactionCommitted { now_ms: run.now_ms })
                }
                (Action::Commit { .. }, 1) => Some(Event::TransactionFailed {
                    fenced: true,
                    error: "fenced".into(),
                }),
                (Action::Commit { .. }, _) => Some(Event::TransactionFailed {
                    fenced: false,
                    error: "aborted".into(),
                }),
                (Action::StoreSnapshotAfterCommit { offset, .. }, _) => {
                    run.world.stored.insert(offset);
                    None
                }
                _ => None,
            };
            if let Some(event) = event {
                run.queue.extend(run.cycle.handle(event));
            }
        }
    }
    check_paused(run)
}

/// A paused cycle, once its actions are performed, holds nothing uncommitted: every
/// record it processed is behind Kafka's commit point (or it processed none since its
/// recovery), and it reads on from exactly there.
fn check_paused(run: &Run) -> Result<(), String> {
    if !run.cycle.is_paused() || !run.queue.is_empty() {
        return Ok(());
    }
    let processed = run.world.source_end;
    let clean = run.world.kafka_committed == Some(processed) || processed == run.world.recovered_at;
    if !clean || run.cycle.next_offset() != processed {
        return Err(format!(
            "paused at {} with records up to {processed} and Kafka's commit point at {:?}",
            run.cycle.next_offset(),
            run.world.kafka_committed
        ));
    }
    Ok(())
}

/// The choices open at this point of a run.
fn choices(run: &Run) -> Vec<Choice> {
    let mut out = Vec::new();
    if run.crashes < CRASHES_MAX {
        out.push(Choice::Crash);
    }
    if let Some(action) = run.queue.front() {
        out.extend((0..answers(action)).map(Choice::Answer));
    } else if let Phase::Stopped(_) = run.cycle.phase() {
        // Only a crash (the actor recovering) follows a stop.
    } else if run.cycle.is_paused() {
        // The driver reads nothing while paused.
        out.extend([Choice::Tick, Choice::Resume]);
    } else {
        out.extend([Choice::Batch, Choice::Tick]);
        if run.pausing {
            out.push(Choice::Pause);
            if run.cycle.is_pausing() {
                out.push(Choice::Resume);
            }
        }
    }
    out
}

/// Explores every history up to `depth`; returns the number of histories, or the first
/// violation with the choices that led to it.
fn explore(config: CycleConfig, depth: usize) -> Result<u64, String> {
    explore_with(config, depth, false)
}

/// [`explore`], with pauses and resumes among the driver's choices when `pausing`.
fn explore_with(config: CycleConfig, depth: usize, pausing: bool) -> Result<u64, String> {
    let start = Run {
        cycle: Cycle::recovered(config, 0, CheckpointId(1), false, 0),
        world: World::default(),
        queue: Default::default(),
        now_ms: 0,
        crashes: 0,
        pausing,
    };
    let mut stack = vec![(start, Vec::<Choice>::new())];
    let mut histories = 0u64;
    while let Some((run, path)) = stack.pop() {
        let open = choices(&run);
        if path.len() == depth || open.is_empty() {
            histories += 1;
            continue;
        }
        for choice in open {
            let mut next = run.clone();
            let mut path = path.clone();
            path.push(choice);
            if let Err(violation) = apply(&mut next, choice, config) {
                return Err(format!("{violation} after {path:?}"));
            }
            stack.push((next, path));
        }
    }
    Ok(histories)
}

#[test]
fn every_interleaving_of_answers_and_crashes_keeps_the_invariants() {
    let histories = explore(CONFIG, EXPLORE_DEPTH).unwrap_or_else(|v| panic!("{v}"));
    assert!(histories > 100_000, "only {histories} histories explored");
}

#[test]
fn the_explorer_catches_a_commit_before_the_snapshot() {
    let config = CycleConfig {
        commit_before_snapshot: true,
        ..CONFIG
    };
    let violation = explore(config, EXPLORE_DEPTH).expect_err("the planted bug is caught");
    assert!(
        violation.contains("before its snapshot was stored"),
        "{violation}"
    );
}

/// Pauses and resumes widen every step's choices, so their histories are explored less
/// deep.
const EXPLORE_DEPTH_PAUSING: usize = 13;

#[test]
fn every_interleaving_with_pauses_and_resumes_keeps_the_invariants() {
    let histories =
        explore_with(CONFIG, EXPLORE_DEPTH_PAUSING, true).unwrap_or_else(|v| panic!("{v}"));
    assert!(histories > 100_000, "only {histories} histories explored");
}
