//! Checkpoint records: steps 2 and 4 of the exactly-once protocol (ARCHITECTURE.md).
//! "Prepared c" names the snapshot and source offset of checkpoint c before the Kafka
//! commit; "committed c" follows it. Only the partition's current owner, at its current
//! epoch, may write either: anything else comes from a zombie and is refused.

use super::{ControlState, PartitionState, Refusal, CHECKPOINT_RECORDS_PER_PARTITION_MAX};
use crate::state::CommandResult;
use weir_core::ids::{CheckpointId, JobId, PartitionId, WorkerId};
use weir_core::wire::{CheckpointPhase, CheckpointRecord, CheckpointRefusal, CheckpointReport};

impl ControlState {
    /// Applies a worker's batch of reports; each one succeeds or is refused on its own.
    pub(super) fn apply_checkpoints(
        &mut self,
        worker: &WorkerId,
        reports: &[CheckpointReport],
        at_ms: u64,
    ) -> CommandResult {
        let results = reports
            .iter()
            .map(|r| self.apply_checkpoint(worker, r, at_ms))
            .collect();
        CommandResult::CheckpointResults(results)
    }

    fn apply_checkpoint(
        &mut self,
        worker: &WorkerId,
        report: &CheckpointReport,
        at_ms: u64,
    ) -> Result<(), CheckpointRefusal> {
        let job = self
            .jobs
            .get_mut(&report.job)
            .ok_or(CheckpointRefusal::UnknownJob { job: report.job })?;
        let p = job.partitions.get_mut(&report.partition).ok_or(
            CheckpointRefusal::UnknownPartition {
                job: report.job,
                partition: report.partition,
            },
        )?;
        if report.epoch != p.epoch {
            return Err(CheckpointRefusal::StaleEpoch {
                got: report.epoch,
                current: p.epoch,
            });
        }
        if p.worker.as_ref() != Some(worker) {
            return Err(CheckpointRefusal::NotOwner {
                worker: worker.clone(),
            });
        }
        if report.offset < 0 {
            return Err(CheckpointRefusal::NegativeOffset {
                offset: report.offset,
            });
        }
        match report.phase {
            CheckpointPhase::Prepared => {
                if let Some((committed, _)) = p.committed {
                    if report.checkpoint <= committed {
                        return Err(CheckpointRefusal::NotNewer {
                            checkpoint: report.checkpoint,
                            committed,
                        });
                    }
                }
                // A prepared record that never reached its commit point is dead once a new
                // owner (a later epoch) or the same owner after a restart prepares again:
                // the Kafka transaction it named was aborted when the writer was fenced.
                p.checkpoints.retain(|c| {
                    c.phase == CheckpointPhase::Committed
                        || (c.epoch == report.epoch && c.checkpoint != report.checkpoint)
                });
                p.checkpoints.push_back(CheckpointRecord {
                    job: report.job,
                    partition: report.partition,
                    checkpoint: report.checkpoint,
                    epoch: report.epoch,
                    phase: CheckpointPhase::Prepared,
                    offset: report.offset,
                    snapshot: report.snapshot.clone(),
                    prepared_at_ms: at_ms,
                    committed_at_ms: None,
                });
                // The oldest records go first, but never the newest committed one: it
                // names the snapshot the partition's committed cut (and so the next
                // savepoint) pins.
                let committed = p.committed.map(|(c, _)| c);
                while p.checkpoints.len() > CHECKPOINT_RECORDS_PER_PARTITION_MAX {
                    let oldest = p
                        .checkpoints
                        .iter()
                        .position(|c| Some(c.checkpoint) != committed)
                        .unwrap_or(0);
                    p.checkpoints.remove(oldest);
                }
                Ok(())
            }
            CheckpointPhase::Committed => {
                let record = p
                    .checkpoints
                    .iter_mut()
                    .find(|c| c.checkpoint == report.checkpoint)
                    .ok_or(CheckpointRefusal::NeverPrepared {
                        checkpoint: report.checkpoint,
                    })?;
                if record.offset != report.offset {
                    return Err(CheckpointRefusal::OffsetMismatch {
                        checkpoint: report.checkpoint,
                        prepared_offset: record.offset,
                        offset: report.offset,
                    });
                }
                if record.phase == CheckpointPhase::Committed {
                    return Ok(());
                }
                if let Some((committed, _)) = p.committed {
                    if report.checkpoint < committed {
                        return Err(CheckpointRefusal::OlderThanCommitted {
                            checkpoint: report.checkpoint,
                            committed,
                        });
                    }
                }
                record.phase = CheckpointPhase::Committed;
                record.committed_at_ms = Some(at_ms);
                p.mark_committed(report.checkpoint, report.offset);
                Ok(())
            }
        }
    }
}

impl PartitionState {
    /// Records checkpoint `checkpoint` at `offset` as the partition's last commit.
    fn mark_committed(&mut self, checkpoint: CheckpointId, offset: i64) {
        debug_assert!(self.committed.is_none_or(|(c, _)| c < checkpoint));
        self.committed = Some((checkpoint, offset));
        // A restored partition's first commit newer than every id it used before the
        // start moved Kafka's commit point past the savepoint for good.
        let restored = self
            .restore
            .as_ref()
            .is_some_and(|r| r.after_checkpoint.is_none_or(|after| checkpoint > after));
        if restored {
            self.restore = None;
        }
    }

    /// Kafka's commit point of a partition with no owner, read after fencing it: if the
    /// newest prepared checkpoint at exactly that offset is newer than the recorded
    /// commit, its Kafka transaction committed (the offset is written only with it) and
    /// only the owner's "committed" report was lost. Returns whether it was recorded.
    pub(super) fn commit_point_after_fencing(&mut self, offset: i64) -> bool {
        if self.restore.is_some() {
            // Started from a savepoint and not committed since: Kafka's commit point may
            // still be the run's before the start, at an offset the restored run prepared
            // again; only the restored run's own report settles it.
            return false;
        }
        let committed = self.committed.map(|(c, _)| c);
        let Some(record) = self
            .checkpoints
            .iter_mut()
            .filter(|c| c.offset == offset && c.phase == CheckpointPhase::Prepared)
            .filter(|c| committed.is_none_or(|done| c.checkpoint > done))
            .max_by_key(|c| c.checkpoint)
        else {
            return false;
        };
        record.phase = CheckpointPhase::Committed;
        // Committed at some moment after it was prepared; that moment went with the report.
        record.committed_at_ms = Some(record.prepared_at_ms);
        let checkpoint = record.checkpoint;
        self.mark_committed(checkpoint, offset);
        true
    }
}

impl ControlState {
    /// `WorkerReport::Fenced`: the partitions still without an owner are fenced, and
    /// each commit point the fencer read settles a commit whose report was lost (a stop's
    /// savepoint pins the cut recorded here, so it must be Kafka's).
    pub(super) fn partitions_fenced(
        &mut self,
        worker: &WorkerId,
        job: JobId,
        partitions: &[PartitionId],
        commit_points: &[(PartitionId, i64)],
    ) -> Result<CommandResult, Refusal> {
        if !self.workers.contains_key(worker) {
            return Err(Refusal::NotFound(format!("worker {worker}")));
        }
        let j = self.job_mut(job)?;
        for partition in partitions {
            // A partition placed again since has a new owner, whose own fencing counts.
            let Some(p) = j.partitions.get_mut(partition) else {
                continue;
            };
            if p.worker.is_some() {
                continue;
            }
            p.fenced = true;
            let point = commit_points.iter().find(|(q, _)| q == partition);
            if let Some(&(_, offset)) = point {
                if p.commit_point_after_fencing(offset) {
                    tracing::info!(job = %job, partition = %partition, offset, "a lost commit report settled from Kafka's commit point");
                }
            }
        }
        j.settle_savepoints();
        Ok(CommandResult::Done)
    }
}
