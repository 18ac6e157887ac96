//! The exactly-once cycle of one partition as a state machine with no I/O: events in
//! (a batch processed, time passed, the snapshot stored, "prepared" answered, the
//! transaction committed or failed), actions out (store, report, commit, begin, abort,
//! prune, stop). No async, no clock reads, no broker or store: the driver
//! (`exactly_once::PartitionRunner`) performs each action through the seams and feeds its
//! outcome back as the next event, as openraft's engine and quinn-proto do.
//!
//! One checkpoint goes `Open → Storing → Preparing → Committing → Open`:
//!
//! 1. `StoreSnapshot`: the pipeline's state at the record boundary `offset`, durable
//!    before anything names it;
//! 2. `ReportPrepared`: "prepared c" to the coordinator group, which refuses it unless this
//!    worker owns the partition at this epoch; no answer postpones the checkpoint;
//! 3. `Commit`: the Kafka transaction with the source offset — the commit point;
//! 4. `ReportCommitted` (losing it is harmless), then `Begin` the next transaction and
//!    `Prune` old snapshots.
//!
//! A pause (the job pausing or stopping) runs one more checkpoint at once if anything is
//! uncommitted, and ends it without `Begin`: the cycle is then `Paused`, with no
//! transaction open and its next offset where the committed one is, until a resume
//! `Begin`s again and reading goes on from exactly there. With nothing uncommitted the
//! pause only `Abort`s the empty transaction.
//!
//! The invariants the explorer below checks over every interleaving of answers and
//! crashes: a `Commit` of outputs is only emitted after the snapshot at its offset was
//! stored and its "prepared" accepted; checkpoint ids only grow; an idle partition's
//! refresh commit never moves its commit point; and recovery ([`plan_recovery`]) restores
//! only the state at the offset Kafka committed.

use weir_core::ids::CheckpointId;
use weir_core::wire::CheckpointRefusal;

/// The cycle's settings, fixed for a runner's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleConfig {
    /// A checkpoint is due this long after the previous one.
    pub checkpoint_interval_ms: u64,
    /// An idle partition commits its unchanged offset again after this long (Kafka expires
    /// the offsets of a group without members).
    pub offsets_refresh_interval_ms: u64,
    /// Planted bug `commit-before-snapshot`: commit first, store the snapshot after.
    pub commit_before_snapshot: bool,
}

/// The checkpoint under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub checkpoint: CheckpointId,
    /// The next source offset after the checkpoint's record boundary.
    pub offset: i64,
    /// Where the snapshot was stored, once it was.
    pub location: String,
}

/// Where the cycle is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A transaction is open and records are processed into it.
    Open,
    /// The snapshot of the pending checkpoint is being stored.
    Storing(Pending),
    /// "prepared" of the pending checkpoint is being reported.
    Preparing(Pending),
    /// The transaction is being committed with the pending checkpoint's offset.
    Committing(Pending),
    /// An idle partition's empty transaction is being committed with its unchanged offset.
    Refreshing { offset: i64 },
    /// Paused: everything processed is committed, no transaction is open, nothing is read.
    Paused,
    /// The runner ends; the partition actor decides whether to recover.
    Stopped(StopReason),
}

/// Why the cycle stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Another owner took over: the group refused this epoch, or Kafka fenced the producer.
    Fenced(String),
    /// The group refused "prepared" for another reason (its typed refusal).
    Refused(CheckpointRefusal),
    /// The transaction could not commit (aborted or failed): recover from the commit point.
    CommitFailed(String),
    /// The snapshot could not be stored.
    StoreFailed(String),
    /// The partition was told to stop.
    Requested,
}

/// How the group answered "prepared".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareAnswer {
    /// Recorded: the commit may go ahead.
    Accepted,
    /// Refused, with the group's reason.
    Refused(CheckpointRefusal),
    /// No coordinator answered: the checkpoint is postponed, processing goes on.
    Unavailable,
}

/// What happened, fed to [`Cycle::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A batch went through the pipeline into the open transaction; reading resumes at
    /// `next_offset`.
    BatchProcessed { next_offset: i64 },
    /// The driver's clock, after each step.
    Tick { now_ms: u64 },
    /// A checkpoint is wanted now, whether or not the interval passed (a runner asked to
    /// checkpoint at once, as a test or a bench does before it stops).
    CheckpointNow { now_ms: u64 },
    /// `StoreSnapshot` is durable at `location`.
    SnapshotStored { location: String },
    /// `StoreSnapshot` failed.
    SnapshotFailed { error: String },
    /// The answer to `ReportPrepared`.
    PreparedAnswered(PrepareAnswer),
    /// `Commit` succeeded, at `now_ms`.
    TransactionCommitted { now_ms: u64 },
    /// `Commit` failed; `fenced` when a newer owner's producer fenced this one.
    TransactionFailed { fenced: bool, error: String },
    /// The partition is to stop (moved, cancelled, the worker leaving).
    StopRequested,
    /// The partition is to pause: commit what it processed and hold no transaction. The
    /// driver repeats it until the cycle is `Paused` (a postponed checkpoint leaves it
    /// open).
    PauseRequested { now_ms: u64 },
    /// The partition is to read again where it paused.
    ResumeRequested,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store the pipeline's state as `checkpoint` at `offset`, building on the stored
    /// state at `base_offset` (the previous checkpoint's) when there is one.
    StoreSnapshot {
        checkpoint: CheckpointId,
        offset: i64,
        base_offset: Option<i64>,
    },
    /// Report "prepared" to the group.
    ReportPrepared(Pending),
    /// Commit the open transaction with the source offset `offset`.
    Commit { offset: i64 },
    /// Planted bug only: store the snapshot after its commit.
    StoreSnapshotAfterCommit {
        checkpoint: CheckpointId,
        offset: i64,
    },
    /// Report "committed" to the group.
    ReportCommitted(Pending),
    /// Begin the next transaction.
    Begin,
    /// Abort the open transaction.
    Abort,
    /// Delete snapshots older than `offset` the store no longer needs.
    Prune { offset: i64 },
}

/// The exactly-once cycle of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    config: CycleConfig,
    phase: Phase,
    /// The next source offset after the last record processed.
    next_offset: i64,
    /// The id the next checkpoint takes.
    next_checkpoint: CheckpointId,
    /// Whether the open transaction holds anything not yet committed.
    dirty: bool,
    /// Whether Kafka holds a commit point with its snapshot stored: only then may an idle
    /// runner commit its offset again.
    has_commit_point: bool,
    /// Until this runner's first commit, checkpoint as soon as a batch was processed, so
    /// a recovered partition's outputs flow again at once, not an interval later.
    first_commit_pending: bool,
    /// Where this runner's last checkpoint is stored: the base of the next one's changes.
    stored_at: Option<i64>,
    last_checkpoint_ms: u64,
    last_commit_ms: u64,
    /// Checkpoints this runner committed.
    checkpoints: u64,
    /// A pause was asked for and not resumed: the next commit opens no transaction.
    pausing: bool,
}

impl Cycle {
    /// A cycle starting after recovery at `next_offset` with a transaction open (the
    /// driver began it), the next checkpoint id `next_checkpoint`, and whether Kafka holds
    /// a commit point for the partition.
    pub fn recovered(
        config: CycleConfig,
        next_offset: i64,
        next_checkpoint: CheckpointId,
        has_commit_point: bool,
        now_ms: u64,
    ) -> Cycle {
        Cycle {
            config,
            phase: Phase::Open,
            next_offset,
            next_checkpoint,
            dirty: false,
            has_commit_point,
            first_commit_pending: true,
            stored_at: None,
            last_checkpoint_ms: now_ms,
            last_commit_ms: now_ms,
            checkpoints: 0,
            pausing: false,
        }
    }

    /// Where the cycle is.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The next source offset to process.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The id the next checkpoint takes.
    pub fn next_checkpoint(&self) -> CheckpointId {
        self.next_checkpoint
    }

    /// Checkpoints committed since recovery.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }

    /// Whether records may be processed now (a transaction is open and no checkpoint is
    /// under way).
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Whether a pause was asked for and not resumed (paused, or its checkpoint postponed).
    pub fn is_pausing(&self) -> bool {
        self.pausing
    }

    /// Whether the partition is paused: committed, no transaction open, reading nothing.
    pub fn is_paused(&self) -> bool {
        self.phase == Phase::Paused
    }

    /// Handles one event; returns the actions to perform, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let phase = std::mem::replace(&mut self.phase, Phase::Open);
        let (phase, actions) = self.step(phase, event);
        self.phase = phase;
        actions
    }

    fn step(&mut self, phase: Phase, event: Event) -> (Phase, Vec<Action>) {
        if phase == Phase::Paused
            || matches!(event, Event::PauseRequested { .. } | Event::ResumeRequested)
        {
            return self.step_pause(phase, event);
        }
        match (phase, event) {
            (Phase::Stopped(why), _) => (Phase::Stopped(why), Vec::new()),
            (_, Event::StopRequested) => {
                (Phase::Stopped(StopReason::Requested), vec![Action::Abort])
            }
            (Phase::Open, Event::BatchProcessed { next_offset }) => {
                assert!(
                    next_offset >= self.next_offset,
                    "the source offset went back"
                );
                self.next_offset = next_offset;
                self.dirty = true;
                (Phase::Open, Vec::new())
            }
            (Phase::Open, Event::Tick { now_ms }) => self.tick(now_ms, false),
            (Phase::Open, Event::CheckpointNow { now_ms }) => self.tick(now_ms, true),
            (Phase::Storing(p), Event::SnapshotStored { location }) => {
                self.stored_at = Some(p.offset);
                let p = Pending { location, ..p };
                (Phase::Preparing(p.clone()), vec![Action::ReportPrepared(p)])
            }
            (Phase::Storing(_), Event::SnapshotFailed { error }) => {
                (Phase::Stopped(StopReason::StoreFailed(error)), Vec::new())
            }
            (Phase::Preparing(p), Event::PreparedAnswered(answer)) => self.prepared(p, answer),
            (Phase::Committing(p), Event::TransactionCommitted { now_ms }) => {
                self.committed(p, now_ms)
            }
            (Phase::Refreshing { offset }, Event::TransactionCommitted { now_ms }) => {
                debug_assert_eq!(offset, self.next_offset, "a refresh moved the commit point");
                self.last_commit_ms = now_ms;
                self.reopen(Vec::new())
            }
            (
                Phase::Committing(_) | Phase::Refreshing { .. },
                Event::TransactionFailed { fenced, error },
            ) => {
                let why = if fenced {
                    StopReason::Fenced(error)
                } else {
                    StopReason::CommitFailed(error)
                };
                (Phase::Stopped(why), Vec::new())
            }
            // Time passes and batches cannot arrive while a checkpoint is under way (the
            // driver runs a checkpoint to its end before the next step).
            (
                phase @ (Phase::Storing(_)
                | Phase::Preparing(_)
                | Phase::Committing(_)
                | Phase::Refreshing { .. }),
                Event::Tick { .. } | Event::CheckpointNow { .. },
            ) => (phase, Vec::new()),
            (phase, event) => panic!("exactly-once cycle: {event:?} cannot happen in {phase:?}"),
        }
    }

    /// The group answered "prepared": commit, stop, or postpone.
    fn prepared(&mut self, p: Pending, answer: PrepareAnswer) -> (Phase, Vec<Action>) {
        match answer {
            PrepareAnswer::Accepted => {
                let offset = p.offset;
                (Phase::Committing(p), vec![Action::Commit { offset }])
            }
            PrepareAnswer::Refused(refusal) => {
                let why = if refusal.means_fenced() {
                    StopReason::Fenced(refusal.to_string())
                } else {
                    StopReason::Refused(refusal)
                };
                (Phase::Stopped(why), vec![Action::Abort])
            }
            PrepareAnswer::Unavailable => {
                // Postponed: the transaction stays open and grows; the next try comes
                // a whole interval later, not at every step.
                self.first_commit_pending = false;
                (Phase::Open, Vec::new())
            }
        }
    }

    /// After a commit: the next transaction begins, unless the cycle is pausing.
    fn reopen(&self, mut actions: Vec<Action>) -> (Phase, Vec<Action>) {
        if self.pausing {
            return (Phase::Paused, actions);
        }
        actions.push(Action::Begin);
        (Phase::Open, actions)
    }

    /// A pause or resume asked for, or any event while paused.
    fn step_pause(&mut self, phase: Phase, event: Event) -> (Phase, Vec<Action>) {
        match (phase, event) {
            (Phase::Stopped(why), _) => (Phase::Stopped(why), Vec::new()),
            // No transaction is open to abort.
            (Phase::Paused, Event::StopRequested) => {
                (Phase::Stopped(StopReason::Requested), Vec::new())
            }
            (Phase::Open, Event::PauseRequested { now_ms }) => {
                self.pausing = true;
                if self.dirty {
                    return self.tick(now_ms, true);
                }
                // Nothing uncommitted: the open transaction is empty.
                (Phase::Paused, vec![Action::Abort])
            }
            (Phase::Open, Event::ResumeRequested) => {
                // A pause whose checkpoint was postponed is called off.
                self.pausing = false;
                (Phase::Open, Vec::new())
            }
            (Phase::Paused, Event::ResumeRequested) => {
                self.pausing = false;
                (Phase::Open, vec![Action::Begin])
            }
            // Paused, time passes and nothing is due; a checkpoint would hold nothing new.
            (
                Phase::Paused,
                Event::Tick { .. } | Event::CheckpointNow { .. } | Event::PauseRequested { .. },
            ) => (Phase::Paused, Vec::new()),
            // Mid-checkpoint: that checkpoint's commit opens no transaction.
            (
                phase @ (Phase::Storing(_)
                | Phase::Preparing(_)
                | Phase::Committing(_)
                | Phase::Refreshing { .. }),
                Event::PauseRequested { .. },
            ) => {
                self.pausing = true;
                (phase, Vec::new())
            }
            (phase, event) => panic!("exactly-once cycle: {event:?} cannot happen in {phase:?}"),
        }
    }

    /// Time passed: starts a checkpoint (or an idle refresh) when one is due, or at once
    /// when `forced`.
    fn tick(&mut self, now_ms: u64, forced: bool) -> (Phase, Vec<Action>) {
        let first_due = forced || (self.first_commit_pending && self.dirty);
        let interval_passed =
            now_ms.saturating_sub(self.last_checkpoint_ms) >= self.config.checkpoint_interval_ms;
        if !first_due && !interval_passed {
            return (Phase::Open, Vec::new());
        }
        self.last_checkpoint_ms = now_ms;
        if !self.dirty {
            let refresh_due = self.has_commit_point
                && now_ms.saturating_sub(self.last_commit_ms)
                    >= self.config.offsets_refresh_interval_ms;
            if refresh_due {
                let offset = self.next_offset;
                return (
                    Phase::Refreshing { offset },
                    vec![Action::Commit { offset }],
                );
            }
            return (Phase::Open, Vec::new());
        }
        let pending = Pending {
            checkpoint: self.next_checkpoint,
            offset: self.next_offset,
            location: String::new(),
        };
        if self.config.commit_before_snapshot {
            let p = Pending {
                location: "(written after the commit)".into(),
                ..pending
            };
            return (Phase::Preparing(p.clone()), vec![Action::ReportPrepared(p)]);
        }
        let store = Action::StoreSnapshot {
            checkpoint: pending.checkpoint,
            offset: pending.offset,
            base_offset: self.stored_at,
        };
        (Phase::Storing(pending), vec![store])
    }

    /// The commit point passed: report it, open the next transaction, prune.
    fn committed(&mut self, p: Pending, now_ms: u64) -> (Phase, Vec<Action>) {
        self.last_commit_ms = now_ms;
        self.has_commit_point = true;
        self.next_checkpoint = CheckpointId(p.checkpoint.0 + 1);
        self.checkpoints += 1;
        self.dirty = false;
        self.first_commit_pending = false;
        let offset = p.offset;
        let mut actions = Vec::with_capacity(4);
        if self.config.commit_before_snapshot {
            actions.push(Action::StoreSnapshotAfterCommit {
                checkpoint: p.checkpoint,
                offset,
            });
        }
        if self.pausing {
            actions.extend([Action::ReportCommitted(p), Action::Prune { offset }]);
            return (Phase::Paused, actions);
        }
        actions.extend([
            Action::ReportCommitted(p),
            Action::Begin,
            Action::Prune { offset },
        ]);
        (Phase::Open, actions)
    }
}

/// What recovery restores, decided from what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryPlan {
    /// No commit point: start at offset 0 with empty state and checkpoint ids from `next`.
    Fresh { next_checkpoint: CheckpointId },
    /// Restore the worker's local copy, which is at the committed offset.
    Local {
        offset: i64,
        next_checkpoint: CheckpointId,
    },
    /// Restore the snapshot stored under the committed offset.
    Snapshot { offset: i64 },
    /// Kafka has no commit point although the group recorded a committed checkpoint: the
    /// offsets expired or were deleted; starting from 0 would repeat every output.
    CommittedOffsetLost { checkpoint: CheckpointId },
}

/// Decides what recovery restores: only ever the state at the offset Kafka committed.
/// `local_checkpoint` is the checkpoint id of a usable local copy at exactly that offset.
pub fn plan_recovery(
    kafka_committed: Option<i64>,
    local_checkpoint: Option<u64>,
    group_committed: Option<CheckpointId>,
) -> RecoveryPlan {
    match (kafka_committed, local_checkpoint) {
        (None, _) => match group_committed {
            Some(checkpoint) => RecoveryPlan::CommittedOffsetLost { checkpoint },
            None => RecoveryPlan::Fresh {
                next_checkpoint: CheckpointId(1),
            },
        },
        (Some(offset), Some(checkpoint)) => RecoveryPlan::Local {
            offset,
            next_checkpoint: next_checkpoint_after(checkpoint, group_committed),
        },
        (Some(offset), None) => RecoveryPlan::Snapshot { offset },
    }
}

/// The id after `restored`, and above whatever the group recorded as committed (it refuses
/// ids that are not newer, and a local copy or a rewritten snapshot can carry an older id).
pub fn next_checkpoint_after(restored: u64, group_committed: Option<CheckpointId>) -> CheckpointId {
    let next = restored + 1;
    match group_committed {
        Some(committed) if committed.0 >= next => CheckpointId(committed.0 + 1),
        _ => CheckpointId(next),
    }
}

#[cfg(test)]
#[path = "cycle_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "cycle_pause_tests.rs"]
mod pause_tests;
