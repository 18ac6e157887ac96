//! The driver of one partition's exactly-once cycle: reads batches, runs the pipeline,
//! writes the outputs into the open transaction, and performs each action the pure
//! [`Cycle`] asks for through the seams (the checkpoint store, the control plane, the
//! broker), feeding each outcome back as the cycle's next event. The protocol's decisions
//! are all in `cycle.rs`; nothing here decides what comes next.

use super::cycle::{Action, Cycle, CycleConfig, Event, Phase, PrepareAnswer, StopReason};
use super::output_writer::{OutputTargets, Written};
use super::recovery::recover;
use super::snapshot_codec::encode_snapshot;
use super::{
    PartitionConfig, PartitionCounters, PartitionError, OFFSETS_REFRESH_INTERVAL_MS,
    PARTIAL_WINDOWS_FLUSH_AT, POLL_BATCH_RECORDS_MAX, POLL_WAIT_MS,
};
use crate::checkpoint_store::{Checkpoint, CheckpointStore};
use crate::control::{ControlError, ControlPlane};
use crate::operators::{Outputs, Pipeline};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use weir_broker::{Broker, BrokerError, PartitionReader, SourceOffset, TransactionalWriter};
use weir_core::bugs::{planted, PlantedBug};
use weir_core::ids::CheckpointId;
use weir_core::spec::stages::reads_repartition;
use weir_core::wire::{CheckpointPhase, CheckpointRefusal, CheckpointReport};

/// Actions one event may lead to before the cycle is back to waiting: a checkpoint is
/// store, prepare, commit, then report, begin, prune (and the planted bug's late store).
const ACTIONS_PER_EVENT_MAX: usize = 16;

/// One (job, partition) running the exactly-once protocol.
pub struct PartitionRunner<B: Broker, S: CheckpointStore, C: ControlPlane> {
    config: PartitionConfig,
    control: Arc<C>,
    store: S,
    reader: B::Reader,
    writer: B::Writer,
    pipeline: Pipeline,
    cycle: Cycle,
    outputs: Outputs,
    targets: OutputTargets,
    /// The topic and partition read: whose offset each commit records.
    input: (String, i32),
    counters: PartitionCounters,
    /// Figures of the checkpoint under way, recorded as metrics once it commits.
    under_way: Option<CheckpointFigures>,
    /// A "committed" report the group may not have: the last one sent failed, or the
    /// checkpoint restored at recovery (a previous owner's report may have been lost).
    /// Delivered before the partition counts as paused, so that the cut the group
    /// records for a paused or stopped job (what a savepoint of it pins) is Kafka's.
    unreported: Option<CheckpointReport>,
}

/// What a checkpoint measured, for its metrics.
#[derive(Debug, Clone, Copy)]
struct CheckpointFigures {
    started: Instant,
    snapshot_bytes: usize,
    changed_keys: usize,
}

impl<B: Broker, S: CheckpointStore, C: ControlPlane> std::fmt::Debug for PartitionRunner<B, S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionRunner")
            .field("job", &self.config.job)
            .field("partition", &self.config.partition)
            .field("epoch", &self.config.epoch)
            .field("phase", self.cycle.phase())
            .field("next_offset", &self.cycle.next_offset())
            .finish()
    }
}

impl<B: Broker, S: CheckpointStore, C: ControlPlane> PartitionRunner<B, S, C> {
    /// Takes over the partition: fences the previous owner, finds the last commit point,
    /// restores the matching snapshot and opens a transaction.
    pub async fn recover(
        config: PartitionConfig,
        broker: &B,
        store: S,
        control: Arc<C>,
        now_ms: u64,
    ) -> Result<Self, PartitionError> {
        let recovered = recover(&config, broker, &store).await?;
        let unreported = recovered
            .restored
            .map(|(checkpoint, offset)| CheckpointReport {
                job: config.job,
                partition: config.partition,
                epoch: config.epoch,
                checkpoint,
                phase: CheckpointPhase::Committed,
                offset,
                snapshot: String::new(),
            });
        let cycle_config = CycleConfig {
            checkpoint_interval_ms: config.spec.checkpoint_interval.as_millis(),
            offsets_refresh_interval_ms: OFFSETS_REFRESH_INTERVAL_MS,
            commit_before_snapshot: planted(PlantedBug::CommitBeforeSnapshot),
        };
        let cycle = Cycle::recovered(
            cycle_config,
            recovered.next_offset,
            recovered.next_checkpoint,
            recovered.has_commit_point,
            now_ms,
        );
        Ok(PartitionRunner {
            config,
            control,
            store,
            reader: recovered.reader,
            writer: recovered.writer,
            pipeline: recovered.pipeline,
            cycle,
            outputs: Outputs::new(),
            targets: recovered.targets,
            input: recovered.input,
            counters: PartitionCounters::default(),
            under_way: None,
            unreported,
        })
    }

    /// The partition's configuration.
    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// Counters since recovery.
    pub fn counters(&self) -> PartitionCounters {
        PartitionCounters {
            checkpoints: self.cycle.checkpoints(),
            ..self.counters
        }
    }

    /// The next source offset to process.
    pub fn next_offset(&self) -> i64 {
        self.cycle.next_offset()
    }

    /// Consumer lag as last seen, in records.
    pub fn lag(&self) -> Option<i64> {
        self.reader
            .high_watermark()
            .map(|hw| (hw - self.cycle.next_offset()).max(0))
    }

    /// The pipeline's watermark (downstream of a shuffle, the least of the upstream
    /// tasks' markers read so far).
    pub fn watermark_ms(&self) -> Option<i64> {
        self.pipeline.watermark_ms()
    }

    /// Estimated bytes of partition state.
    pub fn state_bytes(&self) -> usize {
        self.pipeline.state_bytes()
    }

    /// One round: reads a batch, processes it, writes its outputs into the open
    /// transaction, and checkpoints when one is due. Returns the number of source records
    /// processed.
    pub async fn step(&mut self, now_ms: u64) -> Result<usize, PartitionError> {
        self.fail_if_stopped()?;
        if self.cycle.is_paused() {
            // Paused: nothing is read, so nothing is skipped; time alone changes nothing.
            return Ok(0);
        }
        debug_assert!(
            self.cycle.is_open(),
            "a checkpoint runs to its end in one step"
        );
        let batch = self
            .reader
            .poll_batch(
                self.config
                    .poll_batch_records
                    .clamp(1, POLL_BATCH_RECORDS_MAX),
                Duration::from_millis(POLL_WAIT_MS),
            )
            .await?;
        let n = batch.len();
        if n > 0 {
            let started = Instant::now();
            self.outputs.clear();
            self.pipeline.process_batch(&batch, &mut self.outputs)?;
            if self.pipeline.partial_windows() >= PARTIAL_WINDOWS_FLUSH_AT {
                // Bounded: partial aggregates go out early rather than grow.
                self.pipeline.take_partials(&mut self.outputs);
            }
            if planted(PlantedBug::MarkerBeforeEvents) {
                // The mistake: the batch's watermark goes out before its events.
                self.targets
                    .write_markers(&mut self.writer, self.pipeline.watermark_ms())
                    .await?;
            }
            let written = self
                .targets
                .write(&mut self.writer, &mut self.outputs)
                .await?;
            let (job, partition) = (
                self.config.job.to_string(),
                self.config.partition.to_string(),
            );
            metrics::histogram!("weir_batch_processing_seconds", "job" => job.clone())
                .record(started.elapsed().as_secs_f64());
            self.count(n, written, job, partition);
            let actions = self.cycle.handle(Event::BatchProcessed {
                next_offset: self.reader.position(),
            });
            debug_assert!(actions.is_empty(), "a batch alone starts nothing");
        }
        self.drive(Event::Tick { now_ms }, now_ms).await?;
        Ok(n)
    }

    /// Checkpoints now, at the current record boundary, whether or not the interval
    /// passed. If the coordinator group cannot be reached the checkpoint is postponed (the
    /// transaction stays open and grows); processing goes on.
    pub async fn checkpoint(&mut self, now_ms: u64) -> Result<(), PartitionError> {
        self.fail_if_stopped()?;
        self.drive(Event::CheckpointNow { now_ms }, now_ms).await
    }

    /// Pauses the partition: commits what it processed (a checkpoint at once) and holds
    /// no transaction, reading nothing until [`PartitionRunner::resume`]. Returns whether
    /// it is paused; `false` when the checkpoint was postponed (the group unreachable):
    /// call again.
    pub async fn pause(&mut self, now_ms: u64) -> Result<bool, PartitionError> {
        self.fail_if_stopped()?;
        if planted(PlantedBug::ResumeSkipsInFlight) && !self.cycle.is_pausing() {
            // The mistake: what the reader fetched but the pipeline has not seen is
            // thrown away at the pause, and the resume reads on after it.
            let dropped = self
                .reader
                .poll_batch(POLL_BATCH_RECORDS_MAX, Duration::from_millis(0))
                .await?;
            tracing::debug!(
                records = dropped.len(),
                "planted bug: records in flight dropped"
            );
        }
        if !self.cycle.is_paused() {
            self.drive(Event::PauseRequested { now_ms }, now_ms).await?;
        }
        if self.cycle.is_paused() && self.unreported.is_some() {
            self.report_committed_again().await;
        }
        Ok(self.cycle.is_paused() && self.unreported.is_none())
    }

    /// Sends the "committed" report the group may not have; any answer settles it (a
    /// refusal means the group knows better: a newer commit, or a record long gone).
    async fn report_committed_again(&mut self) {
        let Some(report) = self.unreported.clone() else {
            return;
        };
        match self
            .control
            .report_checkpoints(&self.config.worker, vec![report])
            .await
        {
            Ok(_) => self.unreported = None,
            Err(e) => tracing::debug!(error = %e, "committed record still not written"),
        }
    }

    /// Whether the partition may pause now. A task reading a repartition topic is asked
    /// to pause only once every task writing it has paused, and reads it to its end first,
    /// so that the job's stages pause at one cut (a savepoint of a paused or stopped job
    /// that repartitions relies on it); it checks the end only when its last round read
    /// nothing (`idle`). Any other task pauses at once.
    pub async fn may_pause(&self, broker: &B, idle: bool) -> bool {
        let drains = !self.config.repartitions.is_empty()
            && reads_repartition(self.config.partition)
            && !self.cycle.is_pausing()
            && !planted(PlantedBug::PauseWithoutDrain);
        if !drains {
            return true;
        }
        if !idle {
            return false;
        }
        // Settled first: then nothing more can become readable below the end, and an
        // empty read means the topic is drained (every writer has paused or been fenced).
        // A broker that cannot answer now only means "not drained yet": the next idle
        // round asks again, and the partition keeps running meanwhile.
        let (topic, partition) = &self.input;
        let drained = async {
            if !broker.partition_settled(topic, *partition).await? {
                return Ok::<bool, BrokerError>(false);
            }
            let position = self.reader.position();
            let unread = broker
                .read_committed(topic, *partition, position, 1)
                .await?;
            Ok(unread.is_empty())
        };
        match drained.await {
            Ok(drained) => drained,
            Err(e) => {
                tracing::debug!(job = %self.config.job, partition = %self.config.partition, error = %e, "drain check failed; reading on");
                false
            }
        }
    }

    /// Whether the partition is paused (committed, no transaction open).
    pub fn is_paused(&self) -> bool {
        self.cycle.is_paused()
    }

    /// Whether a pause was asked for and not resumed yet.
    pub fn is_pausing(&self) -> bool {
        self.cycle.is_pausing()
    }

    /// Reads on where the pause left off: opens a transaction (or calls off a pause whose
    /// checkpoint was postponed).
    pub async fn resume(&mut self, now_ms: u64) -> Result<(), PartitionError> {
        self.fail_if_stopped()?;
        self.drive(Event::ResumeRequested, now_ms).await
    }

    /// Gives the partition up: aborts the open transaction so nothing uncommitted lingers.
    pub async fn stop(mut self) {
        if self.cycle.is_paused() {
            // Everything is committed and no transaction is open.
            let _ = self.cycle.handle(Event::StopRequested);
            return;
        }
        // Abort, or nothing once the cycle stopped; the writer aborts either way, since a
        // stopped cycle's transaction may still be open.
        let _ = self.cycle.handle(Event::StopRequested);
        if let Err(e) = self.writer.abort().await {
            tracing::debug!(error = %e, "abort on stop");
        }
    }

    fn count(&mut self, n: usize, written: Written, job: String, partition: String) {
        self.counters.records_in += n as u64;
        self.counters.records_out += written.records;
        self.counters.dead_letters += written.dead_letters;
        metrics::counter!("weir_records_in_total", "job" => job.clone(), "partition" => partition.clone())
            .increment(n as u64);
        if written.records + written.dead_letters > 0 {
            metrics::counter!("weir_records_out_total", "job" => job.clone(), "partition" => partition.clone()).increment(written.records);
            metrics::counter!("weir_dead_letters_total", "job" => job, "partition" => partition)
                .increment(written.dead_letters);
        }
    }

    /// A runner whose cycle stopped does nothing more.
    fn fail_if_stopped(&self) -> Result<(), PartitionError> {
        match self.cycle.phase() {
            Phase::Stopped(why) => Err(PartitionError::Aborted(format!(
                "the partition's runner stopped earlier: {why:?}"
            ))),
            _ => Ok(()),
        }
    }

    /// Feeds `event` to the cycle and performs what it asks, feeding each outcome back,
    /// until it waits for the next batch or tick. A cycle that stopped ends the runner
    /// with the error that stopped it.
    async fn drive(&mut self, event: Event, now_ms: u64) -> Result<(), PartitionError> {
        let mut queue: VecDeque<Action> = self.cycle.handle(event).into();
        // The typed error behind a failure the cycle only sees as its outcome.
        let mut failure = None;
        let mut performed = 0;
        while let Some(action) = queue.pop_front() {
            performed += 1;
            assert!(
                performed <= ACTIONS_PER_EVENT_MAX,
                "the exactly-once cycle asked for more than {ACTIONS_PER_EVENT_MAX} actions"
            );
            if let Some(outcome) = self.perform(action, now_ms, &mut failure).await? {
                queue.extend(self.cycle.handle(outcome));
            }
        }
        match self.cycle.phase() {
            Phase::Stopped(why) => Err(failure.unwrap_or_else(|| stop_error(why))),
            _ => Ok(()),
        }
    }

    /// Performs one action; returns the event its outcome is, if the cycle waits for one.
    /// Errors outside the cycle's events (opening the next transaction) end the runner.
    async fn perform(
        &mut self,
        action: Action,
        now_ms: u64,
        failure: &mut Option<PartitionError>,
    ) -> Result<Option<Event>, PartitionError> {
        match action {
            Action::StoreSnapshot {
                checkpoint,
                offset,
                base_offset,
            } => {
                let after = planted(PlantedBug::PartialsAfterSnapshot);
                if !after {
                    if let Some(event) = self.send_partials(failure).await {
                        return Ok(Some(event));
                    }
                }
                let stored = self
                    .store_snapshot(checkpoint, offset, base_offset, failure)
                    .await;
                if after {
                    // The mistake: the snapshot holds what is also sent.
                    if let Some(event) = self.send_partials(failure).await {
                        return Ok(Some(event));
                    }
                }
                Ok(Some(stored))
            }
            Action::ReportPrepared(p) => {
                let report = self.report(&p, CheckpointPhase::Prepared);
                let answer = self.prepare(report, failure).await;
                Ok(Some(Event::PreparedAnswered(answer)))
            }
            Action::Commit { offset } => Ok(Some(self.commit(offset, now_ms, failure).await)),
            Action::StoreSnapshotAfterCommit { checkpoint, offset } => {
                let snapshot = encode_snapshot(checkpoint, &self.pipeline.snapshot());
                let _ = self.pipeline.take_changes();
                self.store
                    .put(self.config.job, self.config.partition, offset, &snapshot)
                    .await?;
                Ok(None)
            }
            Action::ReportCommitted(p) => {
                // For visibility and garbage collection; losing it is harmless.
                let report = self.report(&p, CheckpointPhase::Committed);
                self.unreported = Some(report.clone());
                match self
                    .control
                    .report_checkpoints(&self.config.worker, vec![report])
                    .await
                {
                    Ok(_) => self.unreported = None,
                    Err(e) => tracing::debug!(error = %e, "committed record not written"),
                }
                Ok(None)
            }
            Action::Begin => {
                self.writer.begin()?;
                Ok(None)
            }
            Action::Abort => {
                // Markers of the aborted transaction are gone: send the next one again.
                if let Some(markers) = self.targets.markers.as_mut() {
                    markers.last_sent_ms = None;
                }
                if let Err(e) = self.writer.abort().await {
                    tracing::debug!(error = %e, "abort after a refused checkpoint");
                }
                Ok(None)
            }
            Action::Prune { offset } => {
                self.prune(offset).await;
                self.record_checkpoint_metrics();
                Ok(None)
            }
        }
    }

    /// Upstream of a shuffle, when it combines: sends the partial aggregates into the open
    /// transaction, before the snapshot (they are output, never state). A failure is the
    /// checkpoint's (its typed error goes to `failure`).
    async fn send_partials(&mut self, failure: &mut Option<PartitionError>) -> Option<Event> {
        let mut partials = Outputs::new();
        self.pipeline.take_partials(&mut partials);
        if partials.is_empty() {
            return None;
        }
        match self.targets.write(&mut self.writer, &mut partials).await {
            Ok(_) => None,
            Err(e) => {
                let error = e.to_string();
                *failure = Some(e);
                Some(Event::SnapshotFailed { error })
            }
        }
    }

    /// Deletes old snapshots before `offset` that the group's pins allow (see
    /// [`super::PrunePins`]): none at or after the committed cut it records, none a
    /// savepoint pins.
    async fn prune(&self, offset: i64) {
        let (offset, keep) = match &self.config.pins {
            None => (Some(offset), Vec::new()),
            Some(shared) => {
                let pins = shared.get();
                (pins.below.map(|below| below.min(offset)), pins.keep)
            }
        };
        let Some(offset) = offset else {
            return;
        };
        if let Err(e) = self
            .store
            .prune(self.config.job, self.config.partition, offset, &keep)
            .await
        {
            tracing::debug!(error = %e, "old snapshots not pruned");
        }
    }

    /// Stores the pipeline's state as `checkpoint` at `offset`; the outcome as the cycle's
    /// event (a failure's typed error goes to `failure`).
    async fn store_snapshot(
        &mut self,
        checkpoint: CheckpointId,
        offset: i64,
        base_offset: Option<i64>,
        failure: &mut Option<PartitionError>,
    ) -> Event {
        let started = Instant::now();
        let snapshot = encode_snapshot(checkpoint, &self.pipeline.snapshot());
        let changes = self.pipeline.take_changes();
        self.under_way = Some(CheckpointFigures {
            started,
            snapshot_bytes: snapshot.len(),
            changed_keys: changes.entries.len(),
        });
        // Changes not stored leave the next checkpoint with nothing to build on: the error
        // ends this runner, and the next one starts with a full write.
        let stored = Checkpoint {
            checkpoint: checkpoint.0,
            offset,
            snapshot: &snapshot,
            changes,
            base_offset,
        };
        let put = self
            .store
            .put_checkpoint(self.config.job, self.config.partition, stored)
            .await;
        match put {
            Ok(location) => Event::SnapshotStored { location },
            Err(e) => {
                let error = e.to_string();
                *failure = Some(e.into());
                Event::SnapshotFailed { error }
            }
        }
    }

    /// Commits the open transaction with the source offset `offset`; the outcome as the
    /// cycle's event.
    async fn commit(
        &mut self,
        offset: i64,
        now_ms: u64,
        failure: &mut Option<PartitionError>,
    ) -> Event {
        let refreshing = matches!(self.cycle.phase(), Phase::Refreshing { .. });
        // Upstream of a shuffle, the watermark markers of what this transaction holds
        // go last, after the events they cover.
        if let Err(e) = self
            .targets
            .write_markers(&mut self.writer, self.pipeline.watermark_ms())
            .await
        {
            let error = e.to_string();
            *failure = Some(e);
            return Event::TransactionFailed {
                fenced: false,
                error,
            };
        }
        let offsets = [SourceOffset {
            topic: self.input.0.clone(),
            partition: self.input.1,
            next_offset: offset,
        }];
        let started = Instant::now();
        match self.writer.commit(&self.config.group(), &offsets).await {
            Ok(()) if refreshing => {
                tracing::debug!(job = %self.config.job, partition = %self.config.partition, offset, "source offset committed again on an idle partition");
                Event::TransactionCommitted { now_ms }
            }
            Ok(()) => {
                metrics::histogram!("weir_transaction_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                Event::TransactionCommitted { now_ms }
            }
            Err(e) => {
                let fenced = matches!(e, BrokerError::Fenced(_));
                let error = e.to_string();
                *failure = Some(e.into());
                Event::TransactionFailed { fenced, error }
            }
        }
    }

    /// Reports "prepared" and turns the group's answer into the cycle's.
    async fn prepare(
        &self,
        report: CheckpointReport,
        failure: &mut Option<PartitionError>,
    ) -> PrepareAnswer {
        match self
            .control
            .report_checkpoints(&self.config.worker, vec![report])
            .await
        {
            Ok(results) => {
                // One answer for the one report; anything else is not an acceptance.
                let mut answers = results.results.into_iter();
                match (answers.next(), answers.next()) {
                    (Some(Ok(())), None) => PrepareAnswer::Accepted,
                    (Some(Err(refusal)), None) => PrepareAnswer::Refused(refusal),
                    _ => PrepareAnswer::Refused(CheckpointRefusal::NotAnsweredOnce),
                }
            }
            Err(ControlError::Unavailable(e)) => {
                tracing::warn!(error = %e, "coordinator unreachable; checkpoint postponed");
                PrepareAnswer::Unavailable
            }
            // The group no longer knows this worker (its lease ended) or refused the call
            // itself: the worker owns nothing there, so it stops as a fenced owner does.
            Err(e) => {
                *failure = Some(PartitionError::Fenced(e.to_string()));
                PrepareAnswer::Refused(CheckpointRefusal::NotOwner {
                    worker: self.config.worker.clone(),
                })
            }
        }
    }

    fn report(&self, p: &super::cycle::Pending, phase: CheckpointPhase) -> CheckpointReport {
        CheckpointReport {
            job: self.config.job,
            partition: self.config.partition,
            epoch: self.config.epoch,
            checkpoint: p.checkpoint,
            phase,
            offset: p.offset,
            snapshot: p.location.clone(),
        }
    }

    /// A committed checkpoint's figures.
    fn record_checkpoint_metrics(&mut self) {
        let Some(figures) = self.under_way.take() else {
            return;
        };
        let (job, partition) = (
            self.config.job.to_string(),
            self.config.partition.to_string(),
        );
        metrics::histogram!("weir_checkpoint_seconds", "job" => job.clone())
            .record(figures.started.elapsed().as_secs_f64());
        metrics::gauge!("weir_checkpoint_bytes", "job" => job.clone(), "partition" => partition.clone()).set(figures.snapshot_bytes as f64);
        metrics::gauge!("weir_state_bytes", "job" => job.clone(), "partition" => partition.clone())
            .set(self.state_bytes() as f64);
        metrics::gauge!("weir_checkpoint_changed_keys", "job" => job.clone(), "partition" => partition.clone())
            .set(figures.changed_keys as f64);
        if let Some(lag) = self.lag() {
            metrics::gauge!("weir_consumer_lag_records", "job" => job, "partition" => partition)
                .set(lag as f64);
        }
    }
}

/// The error of a cycle that stopped without a typed error behind it.
fn stop_error(why: &StopReason) -> PartitionError {
    match why {
        StopReason::Fenced(reason) => PartitionError::Fenced(reason.clone()),
        StopReason::Refused(refusal) => PartitionError::Refused(refusal.clone()),
        StopReason::CommitFailed(e) => PartitionError::Aborted(e.clone()),
        StopReason::StoreFailed(e) => PartitionError::Aborted(format!("snapshot not stored: {e}")),
        StopReason::Requested => PartitionError::Aborted("the partition was stopped".into()),
    }
}
