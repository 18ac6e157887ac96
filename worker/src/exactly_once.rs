//! The exactly-once protocol for one (job, partition), in one place (ARCHITECTURE.md,
//! "Exactly-once, per partition"). A `PartitionRunner` reads its source partition, runs the
//! job's pipeline, writes outputs and dead letters inside a Kafka transaction, and every
//! `checkpoint_interval`, at a record boundary:
//!
//! 1. writes the pipeline's state snapshot to the checkpoint store, named by the next
//!    source offset, and waits until it is durable;
//! 2. records "prepared c" (offset, snapshot location) in the coordinator group, which
//!    refuses it unless this worker owns the partition at this epoch;
//! 3. commits the Kafka transaction together with the source offset
//!    (`send_offsets_to_transaction`): the commit point;
//! 4. records "committed c".
//!
//! Recovery, on any worker: creating the transactional writer fences the previous owner
//! (same transactional id) and aborts what it left open; the committed group offset says
//! where the last commit point was, and the snapshot stored under that offset is exactly the
//! state the committed outputs were computed from. Restore it and read on from there.
//!
//! Everything outside goes through seams: the broker, the checkpoint store, the control
//! plane, and `now_ms` given by the caller.

pub mod cycle;

use crate::checkpoint_store::{Checkpoint, CheckpointStore, StoreError};
use crate::control::{ControlError, ControlPlane};
use crate::operators::{
    CompileError, DeadLetter, DeadLetterReason, Outputs, Pipeline, PipelineError, RestoreError,
};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use weir_broker::{
    Broker, BrokerError, OutgoingRecord, PartitionReader, SourceOffset, TransactionalWriter,
    RECORD_FRAMING_BYTES_MAX,
};
use weir_core::bugs::{planted, PlantedBug};
use weir_core::ids::{CheckpointId, Epoch, JobId, PartitionId, WorkerId};
use weir_core::spec::JobSpec;
use weir_core::wire::{CheckpointPhase, CheckpointReport};

/// Records read and processed per step: the unit of batching between Kafka and operators.
pub const POLL_BATCH_RECORDS_MAX: usize = 2_048;
/// How long one poll waits for the first record.
pub const POLL_WAIT_MS: u64 = 50;
/// How long an idle partition goes without a commit before it commits its unchanged source
/// offset again, in an otherwise empty transaction. Kafka deletes the committed offsets of a
/// group that has no members (weir assigns partitions itself) once they are
/// `offsets.retention.minutes` old (7 days by default), and a partition that had no input
/// for that long would otherwise lose its commit point.
pub const OFFSETS_REFRESH_INTERVAL_MS: u64 = 3_600_000;
/// The size a dead letter is cut to when the broker refused one already cut to the topic's
/// limit (a limit that changed, or was misread): small enough for any Kafka setting.
pub const DEAD_LETTER_FALLBACK_BYTES: usize = 64 * 1024;
/// Length of the checkpoint id prefix in a stored snapshot.
const SNAPSHOT_HEADER_BYTES: usize = 8;

/// Why a partition stopped. The caller (the partition actor) decides whether to recover.
#[derive(Debug, Error)]
pub enum PartitionError {
    /// Another owner took over (Kafka fenced the producer or the coordinator refused the
    /// epoch): this runner is a zombie and must stop without committing anything.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The group refused a checkpoint report for a reason other than another owner (a
    /// checkpoint id not newer, an offset that does not match, a kind this worker does
    /// not know): recover, backing off, and fail the job if it keeps happening.
    #[error("checkpoint refused: {0}")]
    Refused(weir_core::wire::CheckpointRefusal),
    /// The open transaction had to be aborted; recover from the last commit point.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    #[error("broker: {0}")]
    Broker(BrokerError),
    #[error("checkpoint store: {0}")]
    Store(#[from] StoreError),
    #[error("pipeline: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("the job cannot run: {0}")]
    Compile(#[from] CompileError),
    #[error("the snapshot cannot be restored: {0}")]
    Restore(#[from] RestoreError),
    /// Kafka committed an offset for which no snapshot exists: the store lost data.
    #[error("no snapshot for committed offset {committed} (newest stored: {newest:?})")]
    MissingSnapshot { committed: i64, newest: Option<i64> },
    /// Kafka has no committed offset although the group recorded a committed checkpoint:
    /// the offsets expired or were deleted. Starting from the beginning would emit every
    /// output again, so the partition does not start.
    #[error("Kafka has no committed offset for this partition, yet checkpoint {checkpoint} was committed: the group's offsets expired or were deleted; not starting from offset 0, which would repeat every output")]
    CommittedOffsetLost { checkpoint: CheckpointId },
}

impl PartitionError {
    /// A short name of the kind of failure, for the `reason` label of
    /// `weir_partition_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            PartitionError::Fenced(_) => "fenced",
            PartitionError::Aborted(_) => "aborted",
            PartitionError::Refused(_) => "refused",
            PartitionError::Broker(BrokerError::Unavailable(_)) => "broker_unavailable",
            PartitionError::Broker(BrokerError::Timeout(_)) => "broker_timeout",
            PartitionError::Broker(BrokerError::UnknownTopic(_)) => "unknown_topic",
            PartitionError::Broker(BrokerError::RecordTooLarge(_)) => "record_too_large",
            PartitionError::Broker(_) => "broker",
            PartitionError::Store(_) => "checkpoint_store",
            PartitionError::Pipeline(_) => "pipeline",
            PartitionError::Compile(_) => "compile",
            PartitionError::Restore(_) => "restore",
            PartitionError::MissingSnapshot { .. } => "missing_snapshot",
            PartitionError::CommittedOffsetLost { .. } => "committed_offset_lost",
        }
    }

    /// Whether the failure counts toward the failure-rate limit that fails the job: not
    /// when the broker was unreachable or slow, which says nothing about the job and
    /// passes by itself.
    pub fn counts_toward_failing_the_job(&self) -> bool {
        !matches!(
            self,
            PartitionError::Fenced(_)
                | PartitionError::Broker(BrokerError::Unavailable(_) | BrokerError::Timeout(_))
        )
    }
}

impl From<BrokerError> for PartitionError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::Fenced(m) => PartitionError::Fenced(m),
            BrokerError::AbortRequired(m) => PartitionError::Aborted(m),
            other => PartitionError::Broker(other),
        }
    }
}

/// The transactional id of `partition` of `job`: every owner's, and the one a fence duty
/// fences (creating a writer with it aborts what an earlier owner left open).
pub fn transactional_id(job: JobId, partition: PartitionId) -> String {
    format!("weir-{job}-{partition}")
}

/// What one partition runs.
#[derive(Debug, Clone)]
pub struct PartitionConfig {
    pub worker: WorkerId,
    pub job: JobId,
    pub partition: PartitionId,
    pub epoch: Epoch,
    pub spec: JobSpec,
    /// Records read and processed per step, at most `POLL_BATCH_RECORDS_MAX`.
    pub poll_batch_records: usize,
    /// The newest checkpoint id the group has recorded as committed for the partition:
    /// this runner's ids start above it even if the state it restores carries an older id
    /// (a local copy, or a snapshot a fenced owner rewrote at the same offset), since the
    /// group refuses ids that are not newer.
    pub committed_checkpoint: Option<CheckpointId>,
}

impl PartitionConfig {
    /// The transactional id shared by every owner of this partition, so that a new owner
    /// fences the old one.
    pub fn transactional_id(&self) -> String {
        if planted(PlantedBug::SkipFencing) {
            return format!("weir-{}-{}-{}", self.job, self.partition, self.epoch);
        }
        transactional_id(self.job, self.partition)
    }

    /// The consumer group whose committed offsets mark the job's commit points.
    pub fn group(&self) -> String {
        format!("weir-job-{}", self.job)
    }
}

/// Counters of one runner since it started, for metrics and progress displays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionCounters {
    pub records_in: u64,
    pub records_out: u64,
    pub dead_letters: u64,
    pub checkpoints: u64,
}

/// One (job, partition) running the exactly-once protocol.
pub struct PartitionRunner<B: Broker, S: CheckpointStore, C: ControlPlane> {
    config: PartitionConfig,
    control: Arc<C>,
    store: S,
    reader: B::Reader,
    writer: B::Writer,
    pipeline: Pipeline,
    /// The next source offset after the last record processed.
    next_offset: i64,
    /// The next checkpoint id to use.
    next_checkpoint: CheckpointId,
    last_checkpoint_ms: u64,
    /// When the source offset was last committed to Kafka (or this runner recovered).
    last_commit_ms: u64,
    /// Whether Kafka holds a commit point for the partition, with its snapshot stored:
    /// only then may an idle runner commit its offset again.
    has_commit_point: bool,
    /// Whether the open transaction holds anything not yet committed.
    dirty: bool,
    /// The offset of this runner's last checkpoint in the store: where the state changes
    /// of its next checkpoint start.
    stored_at: Option<i64>,
    /// Until this runner's first commit: checkpoint as soon as a batch was processed
    /// rather than a whole interval after recovery, so that a partition's outputs flow
    /// again right after a failover.
    first_commit_pending: bool,
    outputs: Outputs,
    counters: PartitionCounters,
    sink_topic: String,
    dead_letter_topic: String,
    /// Where keyless outputs go; keyed ones are placed by their key.
    sink_partition: i32,
    /// Where this partition's dead letters go.
    dead_letter_partition: i32,
    /// Largest key plus value the sink topic accepts; a larger result is dead-lettered.
    sink_record_max: usize,
    /// Largest dead letter the dead-letter topic accepts; larger ones are cut to fit.
    dead_letter_max: usize,
}

impl<B: Broker, S: CheckpointStore, C: ControlPlane> std::fmt::Debug for PartitionRunner<B, S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionRunner")
            .field("job", &self.config.job)
            .field("partition", &self.config.partition)
            .field("epoch", &self.config.epoch)
            .field("next_offset", &self.next_offset)
            .finish()
    }
}

pub(crate) fn encode_snapshot(checkpoint: CheckpointId, pipeline: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + pipeline.len());
    out.extend_from_slice(&checkpoint.0.to_le_bytes());
    out.extend_from_slice(pipeline);
    out
}

pub(crate) fn decode_snapshot(bytes: &[u8]) -> Result<(CheckpointId, &[u8]), RestoreError> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(RestoreError::Corrupt("shorter than its header".into()));
    }
    let (head, rest) = bytes.split_at(SNAPSHOT_HEADER_BYTES);
    let id = u64::from_le_bytes(
        head.try_into()
            .map_err(|_| RestoreError::Corrupt("header".into()))?,
    );
    Ok((CheckpointId(id), rest))
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
        let topic = config.spec.source.topic.clone();
        let partition = config.partition.0 as i32;
        // Fence first: after this, the previous owner can commit nothing more.
        let mut writer = broker.writer(&config.transactional_id()).await?;
        let committed = broker
            .committed_offset(&config.group(), &topic, partition)
            .await?;
        let committed = match committed {
            Some(_) if planted(PlantedBug::RestoreNewestSnapshot) => {
                store.newest_offset(config.job, config.partition).await?
            }
            other => other,
        };
        // The local copy first (a restart on the same machine); any trouble with it sends
        // recovery to the checkpoint store, which is the source of truth.
        let mut restored_locally = None;
        if let Some(offset) = committed {
            match store.get_local(config.job, config.partition, offset).await {
                Ok(Some(local)) => {
                    match Pipeline::restore_entries(&config.spec, &local.header, &local.entries) {
                        Ok(pipeline) => restored_locally = Some((pipeline, local.checkpoint)),
                        Err(e) => {
                            tracing::warn!(job = %config.job, partition = %config.partition, error = %e, "local state copy unusable; restoring from the checkpoint store")
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(job = %config.job, partition = %config.partition, error = %e, "local state copy unreadable; restoring from the checkpoint store")
                }
            }
        }
        if let (None, Some(checkpoint)) = (committed, config.committed_checkpoint) {
            return Err(PartitionError::CommittedOffsetLost { checkpoint });
        }
        let (pipeline, next_offset, next_checkpoint) = match (committed, restored_locally) {
            (Some(offset), Some((pipeline, checkpoint))) => {
                (pipeline, offset, CheckpointId(checkpoint + 1))
            }
            (Some(offset), None) => {
                let Some(bytes) = store.get(config.job, config.partition, offset).await? else {
                    let newest = store.newest_offset(config.job, config.partition).await?;
                    return Err(PartitionError::MissingSnapshot {
                        committed: offset,
                        newest,
                    });
                };
                let (checkpoint, state) = decode_snapshot(&bytes)?;
                (
                    Pipeline::restore(&config.spec, state)?,
                    offset,
                    CheckpointId(checkpoint.0 + 1),
                )
            }
            (None, _) => (Pipeline::compile(&config.spec)?, 0, CheckpointId(1)),
        };
        // Ids only grow: above whatever the group has recorded as committed.
        let next_checkpoint = match config.committed_checkpoint {
            Some(committed) if committed.0 >= next_checkpoint.0 => CheckpointId(committed.0 + 1),
            _ => next_checkpoint,
        };
        let reader = broker.reader(&topic, partition, next_offset).await?;
        // Keyless outputs stay on the sink partition numbered like their source partition
        // (modulo the sink's size): they keep their source order and batch well, instead
        // of being spread record by record.
        let sink_topic = config.spec.sink.topic.clone();
        let dead_letter_topic = config.spec.dead_letter_topic_or_default();
        let sink_partition = partition % broker.partition_count(&sink_topic).await?.max(1) as i32;
        let dead_letter_partition =
            partition % broker.partition_count(&dead_letter_topic).await?.max(1) as i32;
        // Records over these would be refused and fail the partition at every retry: a
        // result is dead-lettered instead, and a dead letter cut to fit.
        let sink_record_max = broker
            .max_record_bytes(&sink_topic)
            .await?
            .saturating_sub(RECORD_FRAMING_BYTES_MAX);
        let dead_letter_max = broker
            .max_record_bytes(&dead_letter_topic)
            .await?
            .saturating_sub(RECORD_FRAMING_BYTES_MAX);
        writer.begin()?;
        tracing::info!(job = %config.job, partition = %config.partition, epoch = %config.epoch, next_offset, "partition recovered");
        Ok(PartitionRunner {
            sink_topic,
            dead_letter_topic,
            sink_partition,
            dead_letter_partition,
            sink_record_max,
            dead_letter_max,
            config,
            control,
            store,
            reader,
            writer,
            pipeline,
            next_offset,
            next_checkpoint,
            last_checkpoint_ms: now_ms,
            last_commit_ms: now_ms,
            has_commit_point: committed.is_some(),
            dirty: false,
            stored_at: None,
            first_commit_pending: true,
            outputs: Outputs::new(),
            counters: PartitionCounters::default(),
        })
    }

    /// The partition's configuration.
    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// Counters since recovery.
    pub fn counters(&self) -> PartitionCounters {
        self.counters
    }

    /// The next source offset to process.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Consumer lag as last seen, in records.
    pub fn lag(&self) -> Option<i64> {
        self.reader
            .high_watermark()
            .map(|hw| (hw - self.next_offset).max(0))
    }

    /// Estimated bytes of partition state.
    pub fn state_bytes(&self) -> usize {
        self.pipeline.state_bytes()
    }

    /// One round: reads a batch, processes it, writes its outputs into the open
    /// transaction, and checkpoints when the interval has passed. Returns the number of
    /// source records processed.
    pub async fn step(&mut self, now_ms: u64) -> Result<usize, PartitionError> {
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
            let started = tokio::time::Instant::now();
            self.outputs.clear();
            self.pipeline.process_batch(&batch, &mut self.outputs)?;
            self.produce_outputs().await?;
            metrics::histogram!("weir_batch_processing_seconds", "job" => self.config.job.to_string())
                .record(started.elapsed().as_secs_f64());
            self.next_offset = self.reader.position();
            self.counters.records_in += n as u64;
            self.dirty = true;
            let (job, partition) = (
                self.config.job.to_string(),
                self.config.partition.to_string(),
            );
            metrics::counter!("weir_records_in_total", "job" => job, "partition" => partition)
                .increment(n as u64);
        }
        let interval_ms = self.config.spec.checkpoint_interval.as_millis();
        let first_due = self.first_commit_pending && self.dirty;
        if first_due || now_ms.saturating_sub(self.last_checkpoint_ms) >= interval_ms {
            self.checkpoint(now_ms).await?;
        }
        Ok(n)
    }

    /// The source position this runner commits with its transaction: the next offset to read.
    fn source_offsets(&self) -> [SourceOffset; 1] {
        [SourceOffset {
            topic: self.config.spec.source.topic.clone(),
            partition: self.config.partition.0 as i32,
            next_offset: self.next_offset,
        }]
    }

    /// Commits the open transaction, which holds nothing, with the unchanged source offset
    /// (see [`OFFSETS_REFRESH_INTERVAL_MS`]). The commit point stays where it was, and so
    /// does the snapshot it names; a fenced runner's commit fails like any other.
    async fn refresh_offsets(&mut self, now_ms: u64) -> Result<(), PartitionError> {
        debug_assert!(
            !self.dirty,
            "only an empty transaction is committed this way"
        );
        self.writer
            .commit(&self.config.group(), &self.source_offsets())
            .await?;
        self.last_commit_ms = now_ms;
        self.writer.begin()?;
        tracing::debug!(job = %self.config.job, partition = %self.config.partition, offset = self.next_offset, "source offset committed again on an idle partition");
        Ok(())
    }

    async fn produce_outputs(&mut self) -> Result<(), PartitionError> {
        let (mut out, mut dead) = (
            self.outputs.records.len() as u64,
            self.outputs.dead_letters.len() as u64,
        );
        let records = std::mem::take(&mut self.outputs.records);
        for r in records {
            let size = r.key.as_ref().map_or(0, String::len) + r.value.len();
            if size > self.sink_record_max {
                let letter = self.output_too_large(size, r.source_offset, Some(r.value));
                self.outputs.dead_letters.push(letter);
                (out, dead) = (out - 1, dead + 1);
                continue;
            }
            let sent = self
                .writer
                .send(OutgoingRecord {
                    topic: self.sink_topic.clone(),
                    partition: if r.key.is_none() {
                        Some(self.sink_partition)
                    } else {
                        None
                    },
                    key: r.key.map(String::into_bytes),
                    value: r.value,
                    timestamp_ms: None,
                })
                .await;
            match sent {
                Ok(()) => {}
                // The broker's limit is below what it said (the record moved into the
                // refused send, so the letter goes without it; its size is in the detail).
                Err(BrokerError::RecordTooLarge(e)) => {
                    tracing::warn!(job = %self.config.job, partition = %self.config.partition, error = %e, "a result the sink refused as too large goes to the dead-letter topic");
                    let letter = self.output_too_large(size, r.source_offset, None);
                    self.outputs.dead_letters.push(letter);
                    (out, dead) = (out - 1, dead + 1);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let letters = std::mem::take(&mut self.outputs.dead_letters);
        for d in letters {
            if d.reason == DeadLetterReason::ExpressionError && planted(PlantedBug::DropDeadLetter)
            {
                continue;
            }
            let mut cut_to = self.dead_letter_max;
            loop {
                let sent = self
                    .writer
                    .send(OutgoingRecord {
                        topic: self.dead_letter_topic.clone(),
                        partition: Some(self.dead_letter_partition),
                        key: None,
                        value: d.to_json_within(cut_to),
                        timestamp_ms: None,
                    })
                    .await;
                match sent {
                    Ok(()) => break,
                    Err(BrokerError::RecordTooLarge(e)) if cut_to > DEAD_LETTER_FALLBACK_BYTES => {
                        tracing::warn!(job = %self.config.job, partition = %self.config.partition, error = %e, "a dead letter cut to the topic's limit was refused; cutting it further");
                        cut_to = DEAD_LETTER_FALLBACK_BYTES;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.counters.records_out += out;
        self.counters.dead_letters += dead;
        if out + dead > 0 {
            let (job, partition) = (
                self.config.job.to_string(),
                self.config.partition.to_string(),
            );
            metrics::counter!("weir_records_out_total", "job" => job.clone(), "partition" => partition.clone()).increment(out);
            metrics::counter!("weir_dead_letters_total", "job" => job, "partition" => partition)
                .increment(dead);
        }
        Ok(())
    }

    /// The dead letter of a result too large for the sink topic.
    fn output_too_large(
        &self,
        size: usize,
        source_offset: i64,
        payload: Option<Vec<u8>>,
    ) -> DeadLetter {
        DeadLetter {
            reason: DeadLetterReason::OutputTooLarge,
            detail: format!(
                "output too large: {size} bytes; the sink topic {} accepts at most {}",
                self.sink_topic, self.sink_record_max
            ),
            topic: self.config.spec.source.topic.clone(),
            partition: self.config.partition.0 as i32,
            offset: source_offset,
            payload,
        }
    }

    fn report(
        &self,
        checkpoint: CheckpointId,
        phase: CheckpointPhase,
        snapshot: &str,
    ) -> CheckpointReport {
        CheckpointReport {
            job: self.config.job,
            partition: self.config.partition,
            epoch: self.config.epoch,
            checkpoint,
            phase,
            offset: self.next_offset,
            snapshot: snapshot.to_string(),
        }
    }

    /// Runs the four steps at the current record boundary. If the coordinator group cannot
    /// be reached the checkpoint is skipped (the transaction stays open and grows) and
    /// retried at the next interval; processing goes on.
    pub async fn checkpoint(&mut self, now_ms: u64) -> Result<(), PartitionError> {
        self.last_checkpoint_ms = now_ms;
        if !self.dirty {
            if self.has_commit_point
                && now_ms.saturating_sub(self.last_commit_ms) >= OFFSETS_REFRESH_INTERVAL_MS
            {
                return self.refresh_offsets(now_ms).await;
            }
            return Ok(());
        }
        let checkpoint = self.next_checkpoint;
        let started = tokio::time::Instant::now();
        // 1. The snapshot, durable before anything refers to it.
        let snapshot = encode_snapshot(checkpoint, &self.pipeline.snapshot());
        let changes = self.pipeline.take_changes();
        let commit_first = planted(PlantedBug::CommitBeforeSnapshot);
        let location = if commit_first {
            String::from("(written after the commit)")
        } else {
            // Changes not stored leave the next checkpoint with nothing to build on: the
            // error ends this runner, and the next one starts with a full write.
            let stored = Checkpoint {
                checkpoint: checkpoint.0,
                offset: self.next_offset,
                snapshot: &snapshot,
                changes: &changes,
                base_offset: self.stored_at,
            };
            let location = self
                .store
                .put_checkpoint(self.config.job, self.config.partition, stored)
                .await?;
            self.stored_at = Some(self.next_offset);
            location
        };
        // 2. Prepared, in the coordinator: refused unless we own the partition at our epoch.
        let prepared = self.report(checkpoint, CheckpointPhase::Prepared, &location);
        match self
            .control
            .report_checkpoints(&self.config.worker, vec![prepared])
            .await
        {
            Ok(results) => {
                // One answer for the one report; anything else is not an acceptance.
                let mut answers = results.results.into_iter();
                let answer = match (answers.next(), answers.next()) {
                    (Some(answer), None) => answer,
                    _ => Err(weir_core::wire::CheckpointRefusal::NotAnsweredOnce),
                };
                if let Err(refusal) = answer {
                    let _ = self.writer.abort().await;
                    if refusal.means_fenced() {
                        return Err(PartitionError::Fenced(refusal.to_string()));
                    }
                    return Err(PartitionError::Refused(refusal));
                }
            }
            Err(ControlError::Unavailable(e)) => {
                tracing::warn!(error = %e, "coordinator unreachable; checkpoint postponed");
                // The next try comes a whole interval later, not at every step.
                self.first_commit_pending = false;
                return Ok(());
            }
            Err(e) => {
                let _ = self.writer.abort().await;
                return Err(PartitionError::Fenced(e.to_string()));
            }
        }
        // 3. The commit point: outputs and the source offset, atomically.
        let offsets = self.source_offsets();
        let commit_started = tokio::time::Instant::now();
        self.writer.commit(&self.config.group(), &offsets).await?;
        self.last_commit_ms = now_ms;
        self.has_commit_point = true;
        if commit_first {
            self.store
                .put(
                    self.config.job,
                    self.config.partition,
                    self.next_offset,
                    &snapshot,
                )
                .await?;
        }
        metrics::histogram!("weir_transaction_commit_seconds")
            .record(commit_started.elapsed().as_secs_f64());
        // 4. Committed, for visibility and garbage collection; losing it is harmless.
        let committed = self.report(checkpoint, CheckpointPhase::Committed, &location);
        if let Err(e) = self
            .control
            .report_checkpoints(&self.config.worker, vec![committed])
            .await
        {
            tracing::debug!(error = %e, "committed record not written");
        }
        self.next_checkpoint = CheckpointId(checkpoint.0 + 1);
        self.counters.checkpoints += 1;
        self.dirty = false;
        self.first_commit_pending = false;
        self.writer.begin()?;
        if let Err(e) = self
            .store
            .prune(self.config.job, self.config.partition, self.next_offset)
            .await
        {
            tracing::debug!(error = %e, "old snapshots not pruned");
        }
        let (job, partition) = (
            self.config.job.to_string(),
            self.config.partition.to_string(),
        );
        metrics::histogram!("weir_checkpoint_seconds", "job" => job.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("weir_checkpoint_bytes", "job" => job.clone(), "partition" => partition.clone()).set(snapshot.len() as f64);
        metrics::gauge!("weir_state_bytes", "job" => job.clone(), "partition" => partition.clone())
            .set(self.state_bytes() as f64);
        metrics::gauge!("weir_checkpoint_changed_keys", "job" => job.clone(), "partition" => partition.clone())
            .set(changes.entries.len() as f64);
        if let Some(lag) = self.lag() {
            metrics::gauge!("weir_consumer_lag_records", "job" => job, "partition" => partition)
                .set(lag as f64);
        }
        Ok(())
    }

    /// Gives the partition up: aborts the open transaction so nothing uncommitted lingers.
    pub async fn stop(mut self) {
        if let Err(e) = self.writer.abort().await {
            tracing::debug!(error = %e, "abort on stop");
        }
    }
}
