//! Rescaling the downstream stage of a job that repartitions: an upgrade whose spec differs
//! only in `parallelism`, switching to a new generation of tasks at a drained cut.

use super::lifecycle_flow::{paused, state};
use super::savepoints::checkpoint;
use super::*;
use weir_core::spec::stages::{downstream_task, task_generation};

/// A running job that repartitions (`stage_cut_tests`): 2 source partitions (tasks 0, 1)
/// and 2 downstream tasks (10000, 10001), each of which committed a checkpoint.
fn running_shuffled() -> ControlState {
    let mut s = super::stage_cut::running_shuffled();
    for (task, offset) in [(0, 50), (1, 60), (10_000, 70), (10_001, 80)] {
        checkpoint(&mut s, task, 1, offset);
    }
    s
}

fn rescale(s: &mut ControlState, parallelism: u32) -> CommandResult {
    s.apply(&Command::RescaleJob {
        job: JobId(1),
        tenant: Some(TenantName::from("a")),
        parallelism,
        at_ms: 9,
    })
}

/// Every task pauses (the downstream ones once the upstream ones did), is released and
/// fenced: the stop finishes.
fn drain_and_release(s: &mut ControlState) {
    let tasks: Vec<u32> = s.jobs[&JobId(1)].partitions.keys().map(|p| p.0).collect();
    for task in tasks
        .iter()
        .filter(|t| **t < 10_000)
        .chain(tasks.iter().filter(|t| **t >= 10_000))
    {
        paused(s, *task);
    }
    settle(s);
    fence_all(s);
    settle(s);
}

fn refusal(result: CommandResult) -> String {
    match result {
        CommandResult::Refused(Refusal::Conflict(m) | Refusal::Invalid(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_rescale_drains_the_stages_then_starts_a_new_generation_fed_by_every_previous_task() {
    let mut s = running_shuffled();
    assert_eq!(
        rescale(&mut s, 3),
        CommandResult::JobSubmitted {
            id: JobId(1),
            version: 2
        }
    );
    assert_eq!(state(&s), JobState::Upgrading);
    // Downstream tasks pause only after the upstream ones: the cut is drained.
    assert!(!s.jobs[&JobId(1)].wants_partition_paused(PartitionId(10_000)));
    drain_and_release(&mut s);
    let j = &s.jobs[&JobId(1)];
    assert!(
        matches!(j.state, JobState::Pending | JobState::Running),
        "{:?} {:?}",
        j.state,
        j.reason
    );
    assert_eq!((j.version, j.repartitions.clone()), (2, vec![3]));
    assert_eq!(j.repartition_generation, 1);
    assert_eq!(j.spec["parallelism"], 3);
    let tasks: Vec<PartitionId> = j.partitions.keys().copied().collect();
    let expected: Vec<PartitionId> = [PartitionId(0), PartitionId(1)]
        .into_iter()
        .chain((0..3).map(|i| downstream_task(1, i)))
        .collect();
    assert_eq!(tasks, expected, "the previous generation's tasks are gone");
    for i in 0..3 {
        let p = &j.partitions[&downstream_task(1, i)];
        let point = j.restore_point_of(p).expect("a new task restores");
        assert_eq!((point.checkpoint, point.offset), (None, 0));
        let sources: Vec<(PartitionId, i64)> = point
            .redistribute
            .iter()
            .map(|r| (r.partition, r.offset))
            .collect();
        assert_eq!(
            sources,
            vec![(PartitionId(10_000), 70), (PartitionId(10_001), 80)]
        );
        assert!(
            point.spec_before.is_some(),
            "the sources were written by version 1"
        );
    }
    // Upstream tasks restore their own cut and write the new topic.
    let up = j.restore_point_of(&j.partitions[&PartitionId(0)]).unwrap();
    assert_eq!((up.offset, up.redistribute.len()), (50, 0));
    // Once placed, the new tasks run.
    settle(&mut s);
    assert!(s.jobs[&JobId(1)]
        .partitions
        .values()
        .all(|p| p.worker.is_some()));
    assert!(task_generation(downstream_task(1, 2)) == 1);
}

#[test]
fn a_rescale_is_refused_where_it_cannot_carry_the_state() {
    let mut s = running_shuffled();
    assert!(refusal(rescale(&mut s, 0)).starts_with("parallelism:"));
    assert!(refusal(rescale(&mut s, 2)).contains("already runs"));
    // A job of one stage has nothing to rescale.
    let mut one = ControlState::default();
    tenant(&mut one, "a");
    worker(&mut one, "w1");
    submit(&mut one, "a", "j");
    one.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 2,
    });
    assert!(refusal(rescale(&mut one, 4)).contains("does not repartition"));
    // Any other change to the plan of a job that repartitions is refused.
    let mut spec = s.jobs[&JobId(1)].spec.clone();
    spec["pipeline"][2]["aggregate"]["total"] = "sum(amount)".into();
    let r = s.apply(&Command::UpgradeJob {
        job: JobId(1),
        tenant: None,
        spec,
        savepoint: None,
        allow_state_drop: Vec::new(),
        at_ms: 9,
    });
    assert!(refusal(r).contains("pipeline"));
    assert_eq!(state(&s), JobState::Running, "a refusal changes nothing");
}

#[test]
fn a_rescale_whose_stop_did_not_drain_is_not_applied() {
    let mut s = running_shuffled();
    rescale(&mut s, 4);
    // Every worker goes before the downstream tasks paused: nobody drains the topic.
    for w in ["w1", "w2"] {
        s.apply(&Command::RemoveWorker {
            worker: WorkerId::from(w),
            reason: "lease expired".into(),
        });
    }
    settle(&mut s);
    let j = &s.jobs[&JobId(1)];
    assert_eq!(j.state, JobState::Pending, "the job runs on as it was");
    assert_eq!((j.version, j.repartitions.clone()), (1, vec![2]));
    assert!(
        j.reason.as_deref().unwrap_or("").contains("not applied"),
        "{:?}",
        j.reason
    );
    // Stopped without a drained cut (no worker), a rescale is refused until it ran again.
    assert_eq!(
        super::lifecycle_flow::change(&mut s, JobRequest::Stop),
        CommandResult::Done
    );
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
    assert!(refusal(rescale(&mut s, 4)).contains("did not drain"));
}

/// Places every task, pauses, drains and releases: `rescale` to `n` applied.
fn rescale_through(s: &mut ControlState, n: u32) {
    assert!(matches!(rescale(s, n), CommandResult::JobSubmitted { .. }));
    drain_and_release(s);
    settle(s);
    assert_eq!(
        s.jobs[&JobId(1)].repartitions,
        vec![n],
        "{:?}",
        s.jobs[&JobId(1)].reason
    );
}

fn sources_of(s: &ControlState, task: PartitionId) -> Vec<PartitionId> {
    let j = &s.jobs[&JobId(1)];
    let point = j.restore_point_of(&j.partitions[&task]).unwrap();
    point.redistribute.iter().map(|r| r.partition).collect()
}

#[test]
fn a_rescale_before_any_new_task_committed_restores_from_the_same_sources() {
    let mut s = running_shuffled();
    rescale_through(&mut s, 3);
    // No input reached the new tasks: a second rescale takes the first one's sources.
    rescale_through(&mut s, 4);
    let j = &s.jobs[&JobId(1)];
    assert_eq!(j.repartition_generation, 2);
    let first = vec![PartitionId(10_000), PartitionId(10_001)];
    for i in 0..4 {
        assert_eq!(sources_of(&s, downstream_task(2, i)), first);
    }
    // One new task commits, the others not: no single cut to restore from.
    checkpoint(&mut s, downstream_task(2, 0).0, 1, 5);
    let why = refusal(rescale(&mut s, 2));
    assert!(
        why.contains("have not committed since the last rescale"),
        "{why}"
    );
    for i in 1..4 {
        checkpoint(&mut s, downstream_task(2, i).0, 1, 5);
    }
    rescale_through(&mut s, 2);
    let second: Vec<PartitionId> = (0..4).map(|i| downstream_task(2, i)).collect();
    assert_eq!(sources_of(&s, downstream_task(3, 1)), second);
}

#[test]
fn an_upgrade_without_a_parallelism_keeps_the_jobs_and_a_start_clears_the_last_stops_release() {
    let mut s = running_shuffled();
    rescale_through(&mut s, 3);
    for i in 0..3 {
        checkpoint(&mut s, downstream_task(1, i).0, 1, 5);
    }
    // The submitted spec again, without `parallelism`, and a new sink: no rescale.
    let mut spec = s.jobs[&JobId(1)].spec.clone();
    spec.as_object_mut().unwrap().remove("parallelism");
    spec["sink"]["topic"] = "out-v3".into();
    let r = s.apply(&Command::UpgradeJob {
        job: JobId(1),
        tenant: None,
        spec,
        savepoint: None,
        allow_state_drop: Vec::new(),
        at_ms: 9,
    });
    assert!(
        matches!(r, CommandResult::JobSubmitted { version: 3, .. }),
        "{r:?}"
    );
    drain_and_release(&mut s);
    settle(&mut s);
    let j = &s.jobs[&JobId(1)];
    assert_eq!(
        (j.version, j.repartition_generation),
        (3, 1),
        "{:?}",
        j.reason
    );
    assert_eq!(
        j.spec["parallelism"], 3,
        "the recorded spec names the count it keeps"
    );
    assert!(
        j.partitions
            .values()
            .all(|p| !p.released_paused && !p.paused),
        "a started job's tasks carry nothing of the last stop's release"
    );
}
