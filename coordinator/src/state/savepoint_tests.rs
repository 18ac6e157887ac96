//! Savepoints through the control state: what they pin, their bound, a stop with a
//! savepoint, a start from one and how its restore point is cleared, and the refusals.

use super::lifecycle_flow::{change, paused, running, state};
use super::*;
use weir_core::wire::{CheckpointPhase, SavepointStatus};

fn tenant_a() -> Option<TenantName> {
    Some(TenantName::from("a"))
}

/// The partition's owner prepares and commits `checkpoint` at `offset`.
pub(super) fn checkpoint(s: &mut ControlState, partition: u32, checkpoint: u64, offset: i64) {
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(partition)];
    let (worker, epoch) = (p.worker.clone().expect("placed"), p.epoch.0);
    for phase in [CheckpointPhase::Prepared, CheckpointPhase::Committed] {
        let r = s.apply(&Command::Checkpoint {
            worker: worker.clone(),
            reports: vec![report(1, partition, epoch, checkpoint, phase, offset)],
            at_ms: 10,
        });
        assert_eq!(r, CommandResult::CheckpointResults(vec![Ok(())]));
    }
}

fn take(s: &mut ControlState) -> CommandResult {
    s.apply(&Command::TakeSavepoint {
        job: JobId(1),
        tenant: tenant_a(),
        at_ms: 20,
    })
}

fn taken(result: CommandResult) -> SavepointId {
    match result {
        CommandResult::SavepointTaken { id } => id,
        other => panic!("no savepoint: {other:?}"),
    }
}

fn savepoint(s: &ControlState, id: u64) -> &Savepoint {
    &s.jobs[&JobId(1)].savepoints[&SavepointId(id)]
}

fn conflict(result: CommandResult) -> String {
    match result {
        CommandResult::Refused(Refusal::Conflict(m)) => m,
        other => panic!("not a conflict: {other:?}"),
    }
}

/// Stops the running job of `running()`: both partitions pause, are released and fenced.
pub(super) fn stop_all(s: &mut ControlState) {
    paused(s, 0);
    paused(s, 1);
    settle(s);
    fence_all(s);
    settle(s);
    assert_eq!(state(s), JobState::Stopped);
}

#[test]
fn a_savepoint_of_a_running_job_pins_each_partitions_committed_cut_and_keeps_it() {
    let mut s = running();
    checkpoint(&mut s, 0, 1, 100);
    // Partition 1 never committed: empty state at offset 0.
    let id = taken(take(&mut s));
    assert_eq!(id, SavepointId(1));
    let sp = savepoint(&s, 1).clone();
    assert_eq!(sp.status, SavepointStatus::Complete);
    assert_eq!(
        sp.pins[&PartitionId(0)],
        Pin {
            checkpoint: Some(CheckpointId(1)),
            offset: 100,
            snapshot: Some("s1".into()),
            version: 1,
            state_drop: Vec::new(),
            sources: Vec::new(),
        }
    );
    assert_eq!(
        sp.pins[&PartitionId(1)],
        Pin {
            checkpoint: None,
            offset: 0,
            snapshot: None,
            version: 1,
            state_drop: Vec::new(),
            sources: Vec::new(),
        }
    );
    // Later checkpoints move the cut, not the savepoint, and the pinned offset stays in
    // what the owner must keep, however many records the bound drops.
    for c in 2..40 {
        checkpoint(&mut s, 0, c, 100 * c as i64);
    }
    assert_eq!(savepoint(&s, 1), &sp);
    let job = &s.jobs[&JobId(1)];
    assert_eq!(job.pinned_offsets(PartitionId(0)), vec![100]);
    assert!(job.pinned_offsets(PartitionId(1)).is_empty(), "no snapshot");
    assert_eq!(
        job.partitions[&PartitionId(0)].committed_cut(1).offset,
        3_900
    );
    assert!(
        job.partitions[&PartitionId(0)].checkpoints.len() <= CHECKPOINT_RECORDS_PER_PARTITION_MAX
    );
}

#[test]
fn the_record_bound_never_drops_the_newest_committed_record() {
    let mut s = running();
    checkpoint(&mut s, 0, 1, 100);
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(0)];
    let (worker, epoch) = (p.worker.clone().unwrap(), p.epoch.0);
    // Prepared records whose commits were never reported pile up behind it.
    for c in 2..(2 + 2 * CHECKPOINT_RECORDS_PER_PARTITION_MAX as u64) {
        s.apply(&Command::Checkpoint {
            worker: worker.clone(),
            reports: vec![report(
                1,
                0,
                epoch,
                c,
                CheckpointPhase::Prepared,
                100 + c as i64,
            )],
            at_ms: 10,
        });
    }
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(0)];
    assert_eq!(p.checkpoints.len(), CHECKPOINT_RECORDS_PER_PARTITION_MAX);
    assert_eq!(p.committed_cut(1).snapshot.as_deref(), Some("s1"));
}

#[test]
fn savepoints_are_bounded_per_job_and_ids_are_never_reused() {
    let mut s = running();
    for n in 1..=JOB_SAVEPOINTS_MAX as u64 {
        assert_eq!(taken(take(&mut s)), SavepointId(n));
    }
    let m = conflict(take(&mut s));
    assert!(m.contains("holds 32 savepoints"), "{m}");
    let delete = |s: &mut ControlState, sp: u64| {
        s.apply(&Command::DeleteSavepoint {
            job: JobId(1),
            tenant: tenant_a(),
            savepoint: SavepointId(sp),
        })
    };
    assert_eq!(delete(&mut s, 5), CommandResult::Done);
    assert!(matches!(
        delete(&mut s, 5),
        CommandResult::Refused(Refusal::NotFound(_))
    ));
    assert_eq!(taken(take(&mut s)), SavepointId(33));
}

#[test]
fn savepoints_are_tenant_scoped_and_refused_where_nothing_can_be_pinned() {
    let mut s = running();
    tenant(&mut s, "b");
    let other = s.apply(&Command::TakeSavepoint {
        job: JobId(1),
        tenant: Some(TenantName::from("b")),
        at_ms: 1,
    });
    assert!(matches!(
        other,
        CommandResult::Refused(Refusal::NotFound(_))
    ));
    let other = s.apply(&Command::DeleteSavepoint {
        job: JobId(1),
        tenant: Some(TenantName::from("b")),
        savepoint: SavepointId(1),
    });
    assert!(matches!(
        other,
        CommandResult::Refused(Refusal::NotFound(_))
    ));
    // A job whose partitions nobody has counted yet has nothing to pin.
    submit(&mut s, "a", "new");
    let r = s.apply(&Command::TakeSavepoint {
        job: JobId(2),
        tenant: tenant_a(),
        at_ms: 1,
    });
    assert!(conflict(r).contains("no partitions yet"));
    change(&mut s, JobRequest::Cancel);
    assert!(conflict(take(&mut s)).contains("is cancelling"));
}

#[test]
fn a_stop_with_a_savepoint_pins_the_stops_cut_once_stopped() {
    let mut s = running();
    checkpoint(&mut s, 0, 1, 100);
    checkpoint(&mut s, 1, 1, 50);
    let r = s.apply(&Command::StopWithSavepoint {
        job: JobId(1),
        tenant: tenant_a(),
        at_ms: 30,
    });
    assert_eq!(taken(r), SavepointId(1));
    assert_eq!(state(&s), JobState::Stopping);
    assert_eq!(savepoint(&s, 1).status, SavepointStatus::Pending);
    // The pausing partitions commit their last checkpoints before they stop.
    checkpoint(&mut s, 0, 2, 180);
    checkpoint(&mut s, 1, 2, 70);
    stop_all(&mut s);
    let sp = savepoint(&s, 1);
    assert_eq!(sp.status, SavepointStatus::Complete);
    assert_eq!(sp.pins[&PartitionId(0)].offset, 180);
    assert_eq!(sp.pins[&PartitionId(1)].offset, 70);
    assert_eq!(sp.pins[&PartitionId(1)].snapshot.as_deref(), Some("s2"));
    // A stopped job's savepoint is complete at once.
    let id = taken(take(&mut s));
    assert_eq!(savepoint(&s, id.0).status, SavepointStatus::Complete);
}

#[test]
fn a_stop_with_a_savepoint_that_is_cancelled_first_fails_the_savepoint() {
    let mut s = running();
    s.apply(&Command::StopWithSavepoint {
        job: JobId(1),
        tenant: tenant_a(),
        at_ms: 30,
    });
    change(&mut s, JobRequest::Cancel);
    let sp = savepoint(&s, 1);
    assert_eq!(sp.status, SavepointStatus::Failed);
    assert!(sp.reason.as_deref().unwrap().contains("cancelling"));
    // A stop with a savepoint the state refuses takes no savepoint.
    let r = s.apply(&Command::StopWithSavepoint {
        job: JobId(1),
        tenant: tenant_a(),
        at_ms: 31,
    });
    assert!(conflict(r).contains("is cancelling"));
    assert_eq!(s.jobs[&JobId(1)].savepoints.len(), 1);
}

#[test]
fn a_start_from_a_savepoint_restores_its_pins_until_a_newer_checkpoint_commits() {
    let mut s = running();
    checkpoint(&mut s, 0, 1, 100);
    let sp = taken(take(&mut s));
    checkpoint(&mut s, 0, 2, 200);
    checkpoint(&mut s, 0, 3, 300);
    let start = |s: &mut ControlState, savepoint: u64| {
        s.apply(&Command::StartFromSavepoint {
            job: JobId(1),
            tenant: tenant_a(),
            savepoint: SavepointId(savepoint),
        })
    };
    assert!(conflict(start(&mut s, sp.0)).contains("is running"));
    assert!(matches!(
        start(&mut s, 9),
        CommandResult::Refused(Refusal::NotFound(_))
    ));
    change(&mut s, JobRequest::Stop);
    stop_all(&mut s);
    assert_eq!(start(&mut s, sp.0), CommandResult::Done);
    assert_eq!(state(&s), JobState::Pending);
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(0)];
    let restore = p.restore.clone().expect("a restore point");
    assert_eq!(restore.pin.offset, 100);
    assert_eq!(restore.after_checkpoint, Some(CheckpointId(3)));
    assert_eq!(p.checkpoint_floor(), Some(CheckpointId(3)));
    assert_eq!(
        p.committed_cut(1).offset,
        100,
        "the cut moved back deliberately"
    );
    settle(&mut s);
    assert_eq!(state(&s), JobState::Running);
    // The new owner's assignment carries it; its first commit above 3 clears it.
    let job = &s.jobs[&JobId(1)];
    assert_eq!(job.pinned_offsets(PartitionId(0)), vec![100]);
    checkpoint(&mut s, 0, 4, 150);
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(0)];
    assert_eq!(p.restore, None);
    assert_eq!(p.committed_cut(1).offset, 150);
    // The partition that never committed restores empty state at offset 0.
    let p1 = &s.jobs[&JobId(1)].partitions[&PartitionId(1)];
    assert_eq!(p1.restore.as_ref().unwrap().pin.checkpoint, None);
}

#[test]
fn only_a_complete_savepoint_can_be_started_from() {
    let mut s = running();
    s.apply(&Command::StopWithSavepoint {
        job: JobId(1),
        tenant: tenant_a(),
        at_ms: 30,
    });
    let r = s.apply(&Command::StartFromSavepoint {
        job: JobId(1),
        tenant: tenant_a(),
        savepoint: SavepointId(1),
    });
    assert!(conflict(r).contains("is pending"));
}

#[test]
fn a_job_without_the_savepoint_fields_deserializes() {
    let mut s = running();
    let mut json = serde_json::to_value(&s.jobs[&JobId(1)]).unwrap();
    assert!(json.get("savepoints").is_none(), "left out when empty");
    json.as_object_mut().unwrap().remove("savepoints_taken");
    let job: Job = serde_json::from_value(json).unwrap();
    assert!(job.savepoints.is_empty());
    take(&mut s);
    let json = serde_json::to_value(&s.jobs[&JobId(1)]).unwrap();
    let back: Job = serde_json::from_value(json).unwrap();
    assert_eq!(back, s.jobs[&JobId(1)]);
}

#[test]
fn a_stop_with_a_savepoint_places_a_partition_that_lost_its_owner_again_to_settle_its_cut() {
    let mut s = running();
    checkpoint(&mut s, 0, 1, 100);
    checkpoint(&mut s, 1, 1, 50);
    s.apply(&Command::StopWithSavepoint {
        job: JobId(1),
        tenant: tenant_a(),
        at_ms: 30,
    });
    paused(&mut s, 0);
    settle(&mut s);
    // Partition 1's owner dies before it reports itself paused: its last commit may be
    // newer than the group's record, so it is placed again rather than left released.
    let owner = s.jobs[&JobId(1)].partitions[&PartitionId(1)]
        .worker
        .clone()
        .unwrap();
    s.apply(&Command::RemoveWorker {
        worker: owner,
        reason: "lease expired".into(),
    });
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopping);
    let p1 = &s.jobs[&JobId(1)].partitions[&PartitionId(1)];
    assert!(p1.worker.is_some(), "placed again: {p1:?}");
    assert!(
        s.jobs[&JobId(1)].partitions[&PartitionId(0)]
            .worker
            .is_none(),
        "released"
    );
    // Its new owner reports what it restored as committed, then pauses.
    checkpoint(&mut s, 1, 2, 70);
    paused(&mut s, 1);
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
    let sp = savepoint(&s, 1);
    assert_eq!(sp.status, SavepointStatus::Complete);
    assert_eq!(sp.pins[&PartitionId(1)].offset, 70);
    // Without a pending savepoint a partition that lost its owner while stopping stays
    // released, as before.
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(1)];
    assert!(p.released_paused);
}
