//! The life cycle through the control state and the scheduler: pause and resume keep
//! the owners, stop releases them only after each reported itself paused, start places
//! them again; wrong-state requests are refused naming the state.

use super::*;

pub(super) fn change(s: &mut ControlState, request: JobRequest) -> CommandResult {
    s.apply(&Command::ChangeJobState {
        job: JobId(1),
        tenant: Some(TenantName::from("a")),
        request,
    })
}

pub(super) fn paused(s: &mut ControlState, partition: u32) -> CommandResult {
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(partition)];
    let (worker, epoch) = (p.worker.clone().expect("placed"), p.epoch);
    s.apply(&Command::WorkerReport {
        worker,
        report: WorkerReport::Paused {
            job: JobId(1),
            partition: PartitionId(partition),
            epoch,
        },
    })
}

/// A running job of two partitions on two workers.
pub(super) fn running() -> ControlState {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    worker(&mut s, "w1");
    worker(&mut s, "w2");
    submit(&mut s, "a", "j");
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 2,
    });
    settle(&mut s);
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Running);
    s
}

pub(super) fn state(s: &ControlState) -> JobState {
    s.jobs[&JobId(1)].state
}

#[test]
fn pause_waits_for_every_partition_then_resume_keeps_the_owners() {
    let mut s = running();
    let owners_before: Vec<_> = s.jobs[&JobId(1)].partitions.values().cloned().collect();
    assert_eq!(change(&mut s, JobRequest::Pause), CommandResult::Done);
    assert_eq!(state(&s), JobState::Pausing);
    assert!(settle(&mut s).is_empty(), "a pause moves nothing");
    assert_eq!(paused(&mut s, 0), CommandResult::Done);
    assert_eq!(
        state(&s),
        JobState::Pausing,
        "one partition is still running"
    );
    assert_eq!(paused(&mut s, 1), CommandResult::Done);
    assert_eq!(state(&s), JobState::Paused);
    // Repeating the request changes nothing; a start is refused, naming the state.
    assert_eq!(change(&mut s, JobRequest::Pause), CommandResult::Done);
    match change(&mut s, JobRequest::Start) {
        CommandResult::Refused(Refusal::Conflict(m)) => assert!(m.contains("paused"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(change(&mut s, JobRequest::Resume), CommandResult::Done);
    assert_eq!(state(&s), JobState::Running);
    assert!(settle(&mut s).is_empty(), "a resume moves nothing");
    let after: Vec<_> = s.jobs[&JobId(1)].partitions.values().cloned().collect();
    assert_eq!(
        after, owners_before,
        "same owners, epochs, no pause left recorded"
    );
    // A pause report arriving after the resume is refused and records nothing.
    assert!(matches!(
        paused(&mut s, 0),
        CommandResult::Refused(Refusal::Conflict(_))
    ));
    assert!(!s.jobs[&JobId(1)].partitions[&PartitionId(0)].paused);
}

#[test]
fn a_partition_moved_while_pausing_must_report_again_from_its_new_owner() {
    let mut s = running();
    change(&mut s, JobRequest::Pause);
    assert_eq!(paused(&mut s, 0), CommandResult::Done);
    let owner = s.jobs[&JobId(1)].partitions[&PartitionId(0)]
        .worker
        .clone()
        .unwrap();
    s.apply(&Command::RemoveWorker {
        worker: owner.clone(),
        reason: "lease expired".into(),
    });
    settle(&mut s);
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(0)];
    assert!(
        p.worker.is_some() && !p.paused,
        "placed again, not paused yet"
    );
    // The old owner's report is stale.
    let r = s.apply(&Command::WorkerReport {
        worker: owner,
        report: WorkerReport::Paused {
            job: JobId(1),
            partition: PartitionId(0),
            epoch: Epoch(1),
        },
    });
    assert!(matches!(r, CommandResult::Refused(_)), "{r:?}");
    paused(&mut s, 1);
    assert_eq!(state(&s), JobState::Pausing);
    paused(&mut s, 0);
    assert_eq!(state(&s), JobState::Paused);
}

#[test]
fn stop_releases_each_partition_once_it_paused_then_start_places_them_again() {
    let mut s = running();
    assert_eq!(change(&mut s, JobRequest::Stop), CommandResult::Done);
    assert_eq!(state(&s), JobState::Stopping);
    assert!(
        settle(&mut s).is_empty(),
        "nothing released before it paused"
    );
    paused(&mut s, 0);
    let released = settle(&mut s);
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0].worker, None);
    assert_eq!(
        state(&s),
        JobState::Stopping,
        "partition 1 has not committed yet"
    );
    paused(&mut s, 1);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopping, "released but not fenced yet");
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
    assert!(s.jobs[&JobId(1)]
        .partitions
        .values()
        .all(|p| p.worker.is_none()));
    for refused in [JobRequest::Pause, JobRequest::Resume] {
        match change(&mut s, refused) {
            CommandResult::Refused(Refusal::Conflict(m)) => {
                assert!(m.contains("is stopped"), "{m}")
            }
            other => panic!("{refused:?}: {other:?}"),
        }
    }
    assert_eq!(change(&mut s, JobRequest::Start), CommandResult::Done);
    assert_eq!(state(&s), JobState::Pending);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Running);
    assert!(s.jobs[&JobId(1)]
        .partitions
        .values()
        .all(|p| p.worker.is_some() && !p.paused));
}

#[test]
fn a_partition_whose_owner_died_while_stopping_is_not_placed_again() {
    let mut s = running();
    change(&mut s, JobRequest::Stop);
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
        .is_none());
    paused(&mut s, 1);
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
}

#[test]
fn another_tenants_job_is_not_found_and_cancel_works_in_every_new_state() {
    let mut s = running();
    let r = s.apply(&Command::ChangeJobState {
        job: JobId(1),
        tenant: Some(TenantName::from("b")),
        request: JobRequest::Pause,
    });
    assert!(matches!(r, CommandResult::Refused(Refusal::NotFound(_))));
    change(&mut s, JobRequest::Pause);
    s.apply(&Command::CancelJob {
        job: JobId(1),
        tenant: None,
    });
    assert_eq!(state(&s), JobState::Cancelling);
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Cancelled);
}
