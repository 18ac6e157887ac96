//! The consistent cut of a job that repartitions (a downstream task pauses only after
//! every upstream task), its savepoints, and a lost commit report settled by the fencer.

use super::lifecycle_flow::{change, paused, running, state};
use super::*;

use weir_core::wire::{CheckpointPhase, SavepointStatus};

/// A running job that repartitions: 2 source partitions (tasks 0, 1), 2 downstream
/// tasks (10000, 10001), on two workers.
pub(super) fn running_shuffled() -> ControlState {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    worker(&mut s, "w1");
    worker(&mut s, "w2");
    s.apply(&Command::SubmitJob {
        tenant: TenantName::from("a"),
        name: "per-card".into(),
        spec: shuffling_spec("per-card", 2),
        at_ms: 2,
    });
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 2,
    });
    settle(&mut s);
    assert_eq!(state(&s), JobState::Running);
    s
}

fn take(s: &mut ControlState) -> CommandResult {
    s.apply(&Command::TakeSavepoint {
        job: JobId(1),
        tenant: None,
        at_ms: 5,
    })
}

fn wants_paused(s: &ControlState, task: u32) -> bool {
    s.jobs[&JobId(1)].wants_partition_paused(PartitionId(task))
}

#[test]
fn downstream_tasks_pause_only_after_every_upstream_task_and_only_then_a_savepoint_is_cut() {
    let mut s = running_shuffled();
    // Running: no common cut, so no savepoint.
    match take(&mut s) {
        CommandResult::Refused(Refusal::Conflict(m)) => {
            assert!(m.contains("repartitions") && m.contains("running"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(change(&mut s, JobRequest::Pause), CommandResult::Done);
    assert!(wants_paused(&s, 0) && wants_paused(&s, 1));
    assert!(!wants_paused(&s, 10_000) && !wants_paused(&s, 10_001));
    assert_eq!(paused(&mut s, 0), CommandResult::Done);
    assert!(!wants_paused(&s, 10_000), "one upstream task still writes");
    assert!(matches!(take(&mut s), CommandResult::Refused(_)), "pausing");
    assert_eq!(paused(&mut s, 1), CommandResult::Done);
    assert!(wants_paused(&s, 10_000) && wants_paused(&s, 10_001));
    paused(&mut s, 10_000);
    paused(&mut s, 10_001);
    assert_eq!(state(&s), JobState::Paused);
    let CommandResult::SavepointTaken { id } = take(&mut s) else {
        panic!("a paused job's stages are at one cut");
    };
    // Stopped, the job starts from it.
    assert_eq!(change(&mut s, JobRequest::Stop), CommandResult::Done);
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
    let r = s.apply(&Command::StartFromSavepoint {
        job: JobId(1),
        tenant: None,
        savepoint: id,
    });
    assert_eq!(r, CommandResult::Done);
    assert_eq!(state(&s), JobState::Pending);
}

#[test]
fn a_stopping_job_places_an_upstream_task_that_lost_its_owner_and_drains_before_it_stops() {
    let mut s = running_shuffled();
    let r = s.apply(&Command::StopWithSavepoint {
        job: JobId(1),
        tenant: None,
        at_ms: 3,
    });
    let CommandResult::SavepointTaken { id } = r else {
        panic!("{r:?}");
    };
    paused(&mut s, 1);
    settle(&mut s);
    // Upstream task 0's owner goes: the task is placed again, and until its new owner
    // pauses the downstream tasks read on.
    let owner = s.jobs[&JobId(1)].partitions[&PartitionId(0)]
        .worker
        .clone()
        .unwrap();
    s.apply(&Command::RemoveWorker {
        worker: owner,
        reason: "lease expired".into(),
    });
    settle(&mut s);
    assert!(s.jobs[&JobId(1)].partitions[&PartitionId(0)]
        .worker
        .is_some());
    assert!(!wants_paused(&s, 10_000) && !wants_paused(&s, 10_001));
    paused(&mut s, 0);
    assert!(wants_paused(&s, 10_000) && wants_paused(&s, 10_001));
    paused(&mut s, 10_000);
    paused(&mut s, 10_001);
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
    let j = &s.jobs[&JobId(1)];
    assert!(j.stopped_drained);
    assert!(j.savepoints[&id].stage_cut);
}

#[test]
fn a_stop_that_did_not_drain_and_an_old_savepoint_are_not_started_from() {
    let mut s = running_shuffled();
    assert_eq!(change(&mut s, JobRequest::Pause), CommandResult::Done);
    for t in [0, 1, 10_000, 10_001] {
        paused(&mut s, t);
    }
    let CommandResult::SavepointTaken { id } = take(&mut s) else {
        panic!("paused: one cut");
    };
    assert!(s.jobs[&JobId(1)].savepoints[&id].stage_cut);
    // Resumed, then stopped while no worker is left: nobody drains the topic.
    assert_eq!(change(&mut s, JobRequest::Resume), CommandResult::Done);
    assert_eq!(change(&mut s, JobRequest::Stop), CommandResult::Done);
    for w in ["w1", "w2"] {
        s.apply(&Command::RemoveWorker {
            worker: WorkerId::from(w),
            reason: "gone".into(),
        });
    }
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
    assert!(!s.jobs[&JobId(1)].stopped_drained);
    let start = |s: &mut ControlState, savepoint| {
        s.apply(&Command::StartFromSavepoint {
            job: JobId(1),
            tenant: None,
            savepoint,
        })
    };
    match start(&mut s, id) {
        CommandResult::Refused(Refusal::Conflict(m)) => assert!(m.contains("did not drain"), "{m}"),
        other => panic!("{other:?}"),
    }
    match take(&mut s) {
        CommandResult::Refused(Refusal::Conflict(m)) => assert!(m.contains("repartitions"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A savepoint recorded before cuts were drained reads as not one cut.
    s.jobs.get_mut(&JobId(1)).unwrap().stopped_drained = true;
    s.jobs
        .get_mut(&JobId(1))
        .unwrap()
        .savepoints
        .get_mut(&id)
        .unwrap()
        .stage_cut = false;
    match start(&mut s, id) {
        CommandResult::Refused(Refusal::Conflict(m)) => {
            assert!(m.contains("not taken at a cut"), "{m}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn after_the_source_grew_a_start_from_a_savepoint_reads_the_new_partitions_from_the_start() {
    let mut s = running_shuffled();
    assert_eq!(change(&mut s, JobRequest::Pause), CommandResult::Done);
    for t in [0, 1, 10_000, 10_001] {
        paused(&mut s, t);
    }
    let CommandResult::SavepointTaken { id } = take(&mut s) else {
        panic!("paused: one cut");
    };
    assert_eq!(change(&mut s, JobRequest::Stop), CommandResult::Done);
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 3,
    });
    for _ in 0..5 {
        let owned: Vec<u32> = s.jobs[&JobId(1)]
            .partitions
            .iter()
            .filter(|(_, p)| p.worker.is_some() && !p.paused)
            .map(|(id, _)| id.0)
            .collect();
        for t in owned {
            paused(&mut s, t);
        }
        settle(&mut s);
        fence_all(&mut s);
        settle(&mut s);
    }
    assert_eq!(state(&s), JobState::Stopped);
    let r = s.apply(&Command::StartFromSavepoint {
        job: JobId(1),
        tenant: None,
        savepoint: id,
    });
    assert_eq!(r, CommandResult::Done);
    let grown = &s.jobs[&JobId(1)].partitions[&PartitionId(2)];
    let restore = grown.restore.as_ref().expect("the new task restores too");
    assert_eq!((restore.pin.offset, restore.pin.checkpoint), (0, None));
}

#[test]
fn a_fencer_reports_the_commit_point_of_a_commit_whose_report_was_lost() {
    let mut s = running();
    // Partition 0 commits c1 at 10, then prepares c2 at 20; its Kafka commit happens but
    // the report never arrives.
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(0)];
    let (owner, epoch) = (p.worker.clone().unwrap(), p.epoch.0);
    for (c, phase, offset) in [
        (1, CheckpointPhase::Prepared, 10),
        (1, CheckpointPhase::Committed, 10),
        (2, CheckpointPhase::Prepared, 20),
    ] {
        let r = s.apply(&Command::Checkpoint {
            worker: owner.clone(),
            reports: vec![report(1, 0, epoch, c, phase, offset)],
            at_ms: 10,
        });
        assert_eq!(r, CommandResult::CheckpointResults(vec![Ok(())]));
    }
    assert_eq!(change(&mut s, JobRequest::Stop), CommandResult::Done);
    paused(&mut s, 1);
    settle(&mut s);
    s.apply(&Command::RemoveWorker {
        worker: owner,
        reason: "lease expired".into(),
    });
    settle(&mut s);
    assert!(s.jobs[&JobId(1)].partitions[&PartitionId(0)].needs_fencing());
    // Fenced by a worker that read Kafka's commit point 20 afterwards.
    let fencer = s.workers.keys().next().unwrap().clone();
    let r = s.apply(&Command::WorkerReport {
        worker: fencer,
        report: WorkerReport::Fenced {
            job: JobId(1),
            partitions: vec![PartitionId(0)],
            commit_points: vec![(PartitionId(0), 20)],
        },
    });
    assert_eq!(r, CommandResult::Done);
    assert_eq!(
        s.jobs[&JobId(1)].partitions[&PartitionId(0)].committed,
        Some((CheckpointId(2), 20))
    );
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
    // The stopped job's savepoint pins Kafka's cut, not c1 (a start from c1 would repeat
    // the input between 10 and 20, whose outputs Kafka committed).
    let r = s.apply(&Command::TakeSavepoint {
        job: JobId(1),
        tenant: None,
        at_ms: 12,
    });
    let CommandResult::SavepointTaken { id } = r else {
        panic!("{r:?}");
    };
    let sp = &s.jobs[&JobId(1)].savepoints[&id];
    assert_eq!(sp.status, SavepointStatus::Complete);
    assert_eq!(sp.pins[&PartitionId(0)].offset, 20);
    assert_eq!(sp.pins[&PartitionId(0)].checkpoint, Some(CheckpointId(2)));
    assert_eq!(sp.pins[&PartitionId(0)].snapshot.as_deref(), Some("s2"));
}

#[test]
fn a_commit_point_that_names_no_newer_prepared_checkpoint_changes_nothing() {
    let mut p: PartitionState = serde_json::from_value(serde_json::json!({
        "worker": null, "epoch": 3, "checkpoints": [], "committed": [3, 30]
    }))
    .unwrap();
    assert!(!p.commit_point_after_fencing(30));
    assert!(!p.commit_point_after_fencing(45), "nothing prepared at 45");
    assert_eq!(p.committed, Some((CheckpointId(3), 30)));
}
