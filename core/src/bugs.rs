//! Planted bugs: realistic mistakes that can be switched on inside the real code, so the
//! simulation can show it catches them (`weir sim --plant-bug NAME`). Each is a one-line
//! deviation at the place where the mistake would really be made. The switch is
//! thread-local and only the simulation sets it: a simulated run owns its thread. Planting
//! needs the `planted-bugs` feature, which only the simulation turns on: in the deployed
//! `weir` (built without it) [`planted`] is a constant `false` and nothing can plant.

#[cfg(feature = "planted-bugs")]
use std::cell::Cell;

/// A bug the simulation can plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The Raft log store acknowledges appended entries before they are synced to disk.
    AckBeforeSync,
    /// The Raft vote is saved without an fsync, so a crash can forget whom a node voted for.
    VoteNotSynced,
    /// The worker commits the Kafka transaction before the snapshot it names is durable.
    CommitBeforeSnapshot,
    /// Recovery restores the newest snapshot in the store instead of the one matching the
    /// offset Kafka committed.
    RestoreNewestSnapshot,
    /// A new owner of a partition does not fence the previous one: its transactional id
    /// includes the epoch, so the old producer is never fenced and its transaction never
    /// aborted.
    SkipFencing,
    /// A dead letter for an expression error is dropped instead of written.
    DropDeadLetter,
    /// Recovery takes the worker's local copy of the state without checking that it is at
    /// the committed offset (it may be ahead, from a checkpoint whose commit never
    /// happened).
    LocalCopyAnyOffset,
    /// A pausing partition drops the records its reader had already fetched (in flight at
    /// the pause) instead of leaving them to be read after the resume.
    ResumeSkipsInFlight,
    /// A downstream stage takes its watermark from the most advanced upstream task instead
    /// of the least advanced one, firing windows that a lagging upstream still feeds.
    DownstreamWatermarkNotMin,
    /// An upstream task writes each event to the repartition partition numbered like its
    /// own task instead of its key's partition, so one key's events reach several
    /// downstream tasks.
    ShuffleByTask,
    /// An upstream task writes its watermark marker for a batch before the batch's events
    /// instead of after them, so a downstream stage may fire a window before the events
    /// that belong to it arrive.
    MarkerBeforeEvents,
    /// The interval join's buffers are left out of the snapshot (and of the local copy's
    /// changes), so a partition restored from a checkpoint forgets the events waiting for
    /// their match.
    JoinStateNotInSnapshot,
    /// An upstream task that aggregates before the shuffle sends its partial aggregates
    /// after taking the snapshot instead of before, so the snapshot holds what the
    /// committed transaction also carries, and a restore counts it twice.
    PartialsAfterSnapshot,
    /// A result that a route takes is also written to the sink.
    RouteAlsoToSink,
    /// Pruning forgets the offsets savepoints pin: a savepoint's snapshots are deleted
    /// like any old checkpoint's, and starting from the savepoint finds them gone.
    SavepointSnapshotsPruned,
    /// The fencer of a stopped job's partition does not report Kafka's commit point, so a
    /// commit whose "committed" report its owner never delivered stays unrecorded, and a
    /// savepoint of the stop pins the checkpoint before it: a start from it repeats input.
    FenceForgetsCommitPoint,
    /// A task reading a repartition topic pauses as soon as it is asked, without reading
    /// the topic to its end, so a paused or stopped job's stages are not at one cut.
    PauseWithoutDrain,
    /// An upgrade carries the state of a stage that `allow_state_drop` named (whenever it
    /// could be carried) instead of starting it empty.
    UpgradeRestoresWrongStage,
    /// A task of a rescaled stage takes its keys only from the previous generation's task
    /// numbered like itself, so every key that moves to another partition loses its state.
    RescaleLosesMovedKeys,
    /// The temporal join enriches a left event with its key's newest version instead of
    /// the version valid at the event's time.
    TemporalJoinUsesLatest,
}

impl PlantedBug {
    /// Every bug, for `--list-bugs`.
    pub const ALL: [PlantedBug; 20] = [
        PlantedBug::AckBeforeSync,
        PlantedBug::VoteNotSynced,
        PlantedBug::CommitBeforeSnapshot,
        PlantedBug::RestoreNewestSnapshot,
        PlantedBug::SkipFencing,
        PlantedBug::DropDeadLetter,
        PlantedBug::LocalCopyAnyOffset,
        PlantedBug::ResumeSkipsInFlight,
        PlantedBug::DownstreamWatermarkNotMin,
        PlantedBug::ShuffleByTask,
        PlantedBug::MarkerBeforeEvents,
        PlantedBug::JoinStateNotInSnapshot,
        PlantedBug::PartialsAfterSnapshot,
        PlantedBug::RouteAlsoToSink,
        PlantedBug::SavepointSnapshotsPruned,
        PlantedBug::FenceForgetsCommitPoint,
        PlantedBug::PauseWithoutDrain,
        PlantedBug::UpgradeRestoresWrongStage,
        PlantedBug::RescaleLosesMovedKeys,
        PlantedBug::TemporalJoinUsesLatest,
    ];

    /// The name `--plant-bug` takes.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::AckBeforeSync => "ack-before-sync",
            PlantedBug::VoteNotSynced => "vote-not-synced",
            PlantedBug::CommitBeforeSnapshot => "commit-before-snapshot",
            PlantedBug::RestoreNewestSnapshot => "restore-newest-snapshot",
            PlantedBug::SkipFencing => "skip-fencing",
            PlantedBug::DropDeadLetter => "drop-dead-letter",
            PlantedBug::LocalCopyAnyOffset => "local-copy-any-offset",
            PlantedBug::ResumeSkipsInFlight => "resume-skips-in-flight",
            PlantedBug::DownstreamWatermarkNotMin => "downstream-watermark-not-min",
            PlantedBug::ShuffleByTask => "shuffle-by-task",
            PlantedBug::MarkerBeforeEvents => "marker-before-events",
            PlantedBug::JoinStateNotInSnapshot => "join-state-not-in-snapshot",
            PlantedBug::PartialsAfterSnapshot => "partials-after-snapshot",
            PlantedBug::RouteAlsoToSink => "route-also-to-sink",
            PlantedBug::SavepointSnapshotsPruned => "savepoint-snapshots-pruned",
            PlantedBug::FenceForgetsCommitPoint => "fence-forgets-commit-point",
            PlantedBug::PauseWithoutDrain => "pause-without-drain",
            PlantedBug::UpgradeRestoresWrongStage => "upgrade-restores-wrong-stage",
            PlantedBug::RescaleLosesMovedKeys => "rescale-loses-moved-keys",
            PlantedBug::TemporalJoinUsesLatest => "temporal-join-uses-latest",
        }
    }

    /// The bug with this name.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: Cell<Option<PlantedBug>> = const { Cell::new(None) };
}

/// Plants `bug` (or none) for code running on this thread.
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<PlantedBug>) {
    PLANTED.with(|p| p.set(bug));
}

/// Whether `bug` is planted on this thread.
#[cfg(feature = "planted-bugs")]
pub fn planted(bug: PlantedBug) -> bool {
    PLANTED.with(|p| p.get() == Some(bug))
}

/// Whether `bug` is planted: never, in a build without the `planted-bugs` feature.
#[cfg(not(feature = "planted-bugs"))]
pub fn planted(_bug: PlantedBug) -> bool {
    false
}
