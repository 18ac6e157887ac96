//! Upgrades and versions through the control state: a stopped job's upgrade starts the
//! new version from its last commit, a running job's is released first (`upgrading`) and
//! starts from the stop's cut, the restore points name the old version's spec, and the
//! refusals (incompatible spec 400, wrong state or repartitions 409, another tenant 404).

use super::lifecycle_flow::{change, paused, state};
use super::savepoints::checkpoint;
use super::*;
use weir_core::wire::SavepointStatus;

/// A velocity job's spec with `threshold` and `window` (like `tumbling: 60s`).
fn velocity(threshold: u32, window: &str) -> serde_json::Value {
    let yaml = format!(
        "name: j\nsource: {{ topic: payments, partitioned_by: card }}\npipeline:\n  \
         - key_by: card\n  - window: {{ {window} }}\n  - aggregate: {{ n: 'count()' }}\n  \
         - filter: 'n >= {threshold}'\nsink: {{ topic: alerts }}\n"
    );
    serde_json::to_value(weir_core::spec::parse_job_spec(yaml.as_bytes()).unwrap()).unwrap()
}

/// A running velocity job of two partitions on two workers.
fn running_velocity() -> ControlState {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    worker(&mut s, "w1");
    worker(&mut s, "w2");
    s.apply(&Command::SubmitJob {
        tenant: TenantName::from("a"),
        name: "j".into(),
        spec: velocity(5, "tumbling: 60s"),
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

fn upgrade(
    s: &mut ControlState,
    spec: serde_json::Value,
    savepoint: Option<u64>,
    drop: &[&str],
) -> CommandResult {
    s.apply(&Command::UpgradeJob {
        job: JobId(1),
        tenant: Some(TenantName::from("a")),
        spec,
        savepoint: savepoint.map(SavepointId),
        allow_state_drop: drop.iter().map(|d| d.to_string()).collect(),
        at_ms: 50,
    })
}

/// Stops the running job: both partitions pause, are released and fenced.
fn stop_all(s: &mut ControlState) {
    assert_eq!(change(s, JobRequest::Stop), CommandResult::Done);
    super::savepoints::stop_all(s);
}

fn job(s: &ControlState) -> &Job {
    &s.jobs[&JobId(1)]
}

fn refused(result: CommandResult) -> Refusal {
    match result {
        CommandResult::Refused(refusal) => refusal,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_stopped_job_upgrades_at_once_from_its_last_commit() {
    let mut s = running_velocity();
    checkpoint(&mut s, 0, 1, 100);
    stop_all(&mut s);
    let new = velocity(3, "tumbling: 60s");
    assert_eq!(
        upgrade(&mut s, new.clone(), None, &[]),
        CommandResult::JobSubmitted {
            id: JobId(1),
            version: 2
        }
    );
    let j = job(&s);
    assert_eq!((j.state, j.version), (JobState::Pending, 2));
    assert_eq!(j.spec, new);
    // The upgrade's savepoint pins the last commit, written by version 1.
    let sp = &j.savepoints[&SavepointId(1)];
    assert_eq!(sp.status, SavepointStatus::Complete);
    assert_eq!(sp.pins[&PartitionId(0)].offset, 100);
    assert_eq!(sp.pins[&PartitionId(0)].version, 1);
    let versions = j.versions();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].spec, velocity(5, "tumbling: 60s"));
    assert_eq!(
        (
            versions[1].version,
            versions[1].from_version,
            versions[1].savepoint
        ),
        (2, Some(1), Some(SavepointId(1)))
    );
    // Every partition restores the pin with the old spec; the checkpoint ids go on above.
    let p0 = &j.partitions[&PartitionId(0)];
    let point = j.restore_point_of(p0).unwrap();
    assert_eq!(
        (point.offset, point.checkpoint),
        (100, Some(CheckpointId(1)))
    );
    assert_eq!(point.spec_before, Some(velocity(5, "tumbling: 60s")));
    assert_eq!(point.after_checkpoint, Some(CheckpointId(1)));
    let p1 = j.restore_point_of(&j.partitions[&PartitionId(1)]).unwrap();
    assert_eq!((p1.offset, p1.checkpoint), (0, None));
    settle(&mut s);
    assert_eq!(state(&s), JobState::Running);
    // The new version's first commit clears the restore point: its state is version 2's.
    checkpoint(&mut s, 0, 2, 150);
    let j = job(&s);
    assert!(j.partitions[&PartitionId(0)].restore.is_none());
    assert_eq!(
        j.partitions[&PartitionId(0)]
            .committed_cut(j.version)
            .version,
        2
    );
}

#[test]
fn a_running_job_is_released_first_and_starts_from_the_stops_cut() {
    let mut s = running_velocity();
    checkpoint(&mut s, 0, 1, 100);
    upgrade(&mut s, velocity(3, "tumbling: 60s"), None, &[]);
    assert_eq!(state(&s), JobState::Upgrading);
    assert_eq!(job(&s).version, 1, "the new version starts once released");
    assert_eq!(
        job(&s).savepoints[&SavepointId(1)].status,
        SavepointStatus::Pending
    );
    // Every other request but cancel waits, naming the state.
    for request in [
        JobRequest::Pause,
        JobRequest::Resume,
        JobRequest::Stop,
        JobRequest::Start,
    ] {
        let refusal = refused(change(&mut s, request));
        assert!(refusal.to_string().contains("upgrading"), "{refusal}");
    }
    let again = refused(upgrade(&mut s, velocity(2, "tumbling: 60s"), None, &[]));
    assert!(matches!(again, Refusal::Conflict(_)), "{again}");
    // The partitions commit further before they pause: the cut is the stop's.
    checkpoint(&mut s, 0, 2, 120);
    paused(&mut s, 0);
    paused(&mut s, 1);
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    let j = job(&s);
    assert_eq!(j.version, 2);
    assert_eq!(
        j.savepoints[&SavepointId(1)].pins[&PartitionId(0)].offset,
        120
    );
    let point = j.restore_point_of(&j.partitions[&PartitionId(0)]).unwrap();
    assert_eq!(
        (point.offset, point.checkpoint),
        (120, Some(CheckpointId(2)))
    );
    assert!(point.spec_before.is_some());
    assert_eq!(
        state(&s),
        JobState::Running,
        "placed again: the new version runs"
    );
}

#[test]
fn an_incompatible_spec_is_refused_naming_the_stage_unless_its_state_may_be_dropped() {
    let mut s = running_velocity();
    stop_all(&mut s);
    let bigger = velocity(5, "tumbling: 120s");
    let Refusal::Invalid(reason) = refused(upgrade(&mut s, bigger.clone(), None, &[])) else {
        panic!("not a 400");
    };
    assert!(reason.contains("pipeline[1].window"), "{reason}");
    assert_eq!((state(&s), job(&s).version), (JobState::Stopped, 1));
    assert!(
        job(&s).savepoints.is_empty(),
        "a refused upgrade takes no savepoint"
    );
    let unknown = refused(upgrade(&mut s, bigger.clone(), None, &["nope"]));
    assert!(matches!(unknown, Refusal::Invalid(_)), "{unknown}");
    upgrade(&mut s, bigger, None, &["window#0"]);
    let j = job(&s);
    assert_eq!(j.version, 2);
    let point = j.restore_point_of(&j.partitions[&PartitionId(0)]).unwrap();
    assert_eq!(point.state_drop, vec!["window#0".to_string()]);
    assert_eq!(j.versions()[1].state_dropped, vec!["window#0".to_string()]);
}

#[test]
fn upgrades_are_tenant_scoped_and_refused_where_they_cannot_apply() {
    let mut s = running_velocity();
    let other = s.apply(&Command::UpgradeJob {
        job: JobId(1),
        tenant: Some(TenantName::from("b")),
        spec: velocity(3, "tumbling: 60s"),
        savepoint: None,
        allow_state_drop: vec![],
        at_ms: 5,
    });
    assert!(matches!(refused(other), Refusal::NotFound(_)));
    let missing = refused(upgrade(&mut s, velocity(3, "tumbling: 60s"), Some(9), &[]));
    assert!(matches!(missing, Refusal::NotFound(_)), "{missing}");
    change(&mut s, JobRequest::Cancel);
    let cancelling = refused(upgrade(&mut s, velocity(3, "tumbling: 60s"), None, &[]));
    assert!(
        cancelling.to_string().contains("cancelling"),
        "{cancelling}"
    );
}

#[test]
fn a_job_that_repartitions_is_upgraded_only_with_its_plan_unchanged() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    worker(&mut s, "w1");
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
    let mut changed = shuffling_spec("per-card", 2);
    changed["pipeline"][2]["aggregate"]["total"] = "sum(amount)".into();
    let refusal = refused(upgrade(&mut s, changed, None, &[]));
    assert!(
        matches!(&refusal, Refusal::Invalid(m) if m.contains("repartitions")),
        "{refusal}"
    );
    assert!(matches!(
        upgrade(&mut s, shuffling_spec("per-card", 2), None, &[]),
        CommandResult::JobSubmitted { version: 2, .. }
    ));
}

#[test]
fn a_cancel_while_upgrading_abandons_the_upgrade() {
    let mut s = running_velocity();
    upgrade(&mut s, velocity(3, "tumbling: 60s"), None, &[]);
    assert_eq!(change(&mut s, JobRequest::Cancel), CommandResult::Done);
    let j = job(&s);
    assert_eq!((j.state, j.version), (JobState::Cancelling, 1));
    assert!(j.upgrade.is_none());
    assert_eq!(
        j.savepoints[&SavepointId(1)].status,
        SavepointStatus::Failed
    );
}

#[test]
fn a_savepoint_of_another_version_is_started_from_only_through_an_upgrade() {
    let mut s = running_velocity();
    checkpoint(&mut s, 0, 1, 100);
    stop_all(&mut s);
    upgrade(&mut s, velocity(3, "tumbling: 60s"), None, &[]);
    settle(&mut s);
    change(&mut s, JobRequest::Stop);
    paused(&mut s, 0);
    paused(&mut s, 1);
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(state(&s), JobState::Stopped);
    let start = s.apply(&Command::StartFromSavepoint {
        job: JobId(1),
        tenant: None,
        savepoint: SavepointId(1),
    });
    let refusal = refused(start);
    assert!(refusal.to_string().contains("version 1"), "{refusal}");
    // A rollback: the first version's spec, from the savepoint its state is in.
    upgrade(&mut s, velocity(5, "tumbling: 60s"), Some(1), &[]);
    let j = job(&s);
    assert_eq!(j.version, 3);
    assert_eq!(j.spec, velocity(5, "tumbling: 60s"));
    let point = j.restore_point_of(&j.partitions[&PartitionId(0)]).unwrap();
    assert_eq!(point.offset, 100);
    assert_eq!(point.spec_before, Some(velocity(5, "tumbling: 60s")));
}

#[test]
fn versions_are_bounded_and_the_referenced_ones_kept() {
    let mut s = running_velocity();
    stop_all(&mut s);
    for round in 0..(JOB_VERSIONS_MAX as u32 + 6) {
        let r = upgrade(&mut s, velocity(round % 7 + 1, "tumbling: 60s"), None, &[]);
        assert!(matches!(r, CommandResult::JobSubmitted { .. }), "{r:?}");
        // Keep only the newest savepoint, as a careful user would.
        let sp = job(&s).savepoints.keys().copied().collect::<Vec<_>>();
        for id in &sp[..sp.len() - 1] {
            s.apply(&Command::DeleteSavepoint {
                job: JobId(1),
                tenant: None,
                savepoint: *id,
            });
        }
        change(&mut s, JobRequest::Stop);
        settle(&mut s);
        fence_all(&mut s);
        settle(&mut s);
        assert_eq!(state(&s), JobState::Stopped, "round {round}");
    }
    let j = job(&s);
    assert_eq!(j.version, JOB_VERSIONS_MAX as u64 + 7);
    assert_eq!(j.versions().len(), JOB_VERSIONS_MAX);
    assert_eq!(j.versions().last().map(|v| v.version), Some(j.version));
}

#[test]
fn a_partition_idle_between_two_upgrades_keeps_the_first_ones_drops() {
    let mut s = running_velocity();
    checkpoint(&mut s, 0, 1, 100);
    checkpoint(&mut s, 1, 1, 40);
    stop_all(&mut s);
    upgrade(&mut s, velocity(5, "tumbling: 120s"), None, &["window#0"]);
    settle(&mut s);
    // Partition 0 commits under version 2; partition 1 stays idle.
    checkpoint(&mut s, 0, 2, 130);
    stop_all(&mut s);
    // Compatible with version 2, though not with version 1's state: partition 1's pin
    // is still version 1's, and carries the window drop of the first upgrade along.
    let r = upgrade(&mut s, velocity(3, "tumbling: 120s"), None, &[]);
    assert!(
        matches!(r, CommandResult::JobSubmitted { version: 3, .. }),
        "{r:?}"
    );
    let j = job(&s);
    let p0 = j.restore_point_of(&j.partitions[&PartitionId(0)]).unwrap();
    assert_eq!((p0.offset, p0.state_drop.len()), (130, 0));
    assert_eq!(p0.spec_before, Some(velocity(5, "tumbling: 120s")));
    let p1 = j.restore_point_of(&j.partitions[&PartitionId(1)]).unwrap();
    assert_eq!(p1.offset, 40);
    assert_eq!(p1.spec_before, Some(velocity(5, "tumbling: 60s")));
    assert_eq!(p1.state_drop, vec!["window#0".to_string()]);
}
