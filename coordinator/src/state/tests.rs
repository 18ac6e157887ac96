//! Unit tests of the control state machine and the scheduler working on it.

use super::*;
use crate::scheduler::plan;
use weir_core::wire::{CheckpointPhase, CheckpointReport, WorkerReport};

fn tenant(s: &mut ControlState, name: &str) {
    let r = s.apply(&Command::CreateTenant {
        name: TenantName::from(name),
        token_hash: format!("h-{name}"),
        at_ms: 1,
    });
    assert_eq!(r, CommandResult::Done);
}

fn submit(s: &mut ControlState, tenant: &str, name: &str) -> CommandResult {
    s.apply(&Command::SubmitJob {
        tenant: TenantName::from(tenant),
        name: name.into(),
        spec: serde_json::json!({"name": name}),
        at_ms: 2,
    })
}

fn worker(s: &mut ControlState, id: &str) {
    s.apply(&Command::RegisterWorker {
        worker: WorkerId::from(id),
        addr: format!("{id}:1"),
        at_ms: 3,
    });
}

/// Carries out every worker's fence duties, as the workers would.
fn fence_all(s: &mut ControlState) {
    let workers: Vec<WorkerId> = s.workers.keys().cloned().collect();
    for w in workers {
        for (job, partition) in s.fence_duties(&w, usize::MAX) {
            let r = s.apply(&Command::WorkerReport {
                worker: w.clone(),
                report: WorkerReport::Fenced {
                    job,
                    partitions: vec![partition],
                    commit_points: Vec::new(),
                },
            });
            assert_eq!(r, CommandResult::Done);
        }
    }
}

/// Applies the scheduler's plan until it has nothing more to do.
fn settle(s: &mut ControlState) -> Vec<Move> {
    let mut moves = Vec::new();
    for _ in 0..10 {
        let commands = plan(s);
        if commands.is_empty() {
            return moves;
        }
        for c in commands {
            if let Command::Place { moves: m } = &c {
                moves.extend(m.iter().cloned());
            }
            let r = s.apply(&c);
            assert!(
                !matches!(r, CommandResult::Refused(_)),
                "scheduler proposed a refused command: {r:?}"
            );
        }
    }
    panic!("the scheduler did not settle");
}

fn load(s: &ControlState) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for w in s.workers.keys() {
        out.insert(w.0.clone(), s.assignments_of(w).len());
    }
    out
}

fn report(
    job: u64,
    partition: u32,
    epoch: u64,
    checkpoint: u64,
    phase: CheckpointPhase,
    offset: i64,
) -> CheckpointReport {
    CheckpointReport {
        job: JobId(job),
        partition: PartitionId(partition),
        epoch: Epoch(epoch),
        checkpoint: CheckpointId(checkpoint),
        phase,
        offset,
        snapshot: format!("s{checkpoint}"),
    }
}

#[test]
fn job_names_are_unique_per_tenant_and_ids_grow() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    tenant(&mut s, "b");
    assert_eq!(
        submit(&mut s, "a", "j"),
        CommandResult::JobSubmitted {
            id: JobId(1),
            version: 1
        }
    );
    assert!(matches!(
        submit(&mut s, "a", "j"),
        CommandResult::Refused(Refusal::Conflict(_))
    ));
    assert_eq!(
        submit(&mut s, "b", "j"),
        CommandResult::JobSubmitted {
            id: JobId(2),
            version: 1
        }
    );
    assert!(matches!(
        submit(&mut s, "nobody", "j"),
        CommandResult::Refused(Refusal::NotFound(_))
    ));
    assert!(matches!(
        s.apply(&Command::CreateTenant {
            name: "a".into(),
            token_hash: "x".into(),
            at_ms: 0
        }),
        CommandResult::Refused(Refusal::Conflict(_))
    ));
}

#[test]
fn tokens_resolve_to_their_tenant_and_rotation_retires_them() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    assert_eq!(s.tenant_by_token_hash("h-a"), Some(&TenantName::from("a")));
    s.apply(&Command::RotateTenantToken {
        name: "a".into(),
        token_hash: "new".into(),
    });
    assert_eq!(s.tenant_by_token_hash("h-a"), None);
    assert_eq!(s.tenant_by_token_hash("new"), Some(&TenantName::from("a")));
}

#[test]
fn placement_is_even_and_moves_as_little_as_possible() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "j");
    worker(&mut s, "w1");
    worker(&mut s, "w2");
    // Nothing to place until the partition count is known.
    assert!(settle(&mut s).is_empty());
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Pending);
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 6,
    });
    assert_eq!(settle(&mut s).len(), 6);
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Running);
    assert_eq!(
        load(&s),
        BTreeMap::from([("w1".into(), 3), ("w2".into(), 3)])
    );

    // A third worker takes exactly two partitions, each at epoch 2.
    worker(&mut s, "w3");
    let moved = settle(&mut s);
    assert_eq!(moved.len(), 2);
    assert!(moved
        .iter()
        .all(|m| m.worker == Some(WorkerId::from("w3")) && m.epoch == Epoch(2)));
    assert_eq!(
        load(&s),
        BTreeMap::from([("w1".into(), 2), ("w2".into(), 2), ("w3".into(), 2)])
    );

    // A worker leaves: only its partitions move, with epoch + 1.
    let before: Vec<_> = s.assignments_of(&WorkerId::from("w1"));
    s.apply(&Command::RemoveWorker {
        worker: WorkerId::from("w2"),
        reason: "lease expired".into(),
    });
    let moved = settle(&mut s);
    assert_eq!(moved.len(), 2);
    assert_eq!(
        load(&s),
        BTreeMap::from([("w1".into(), 3), ("w3".into(), 3)])
    );
    for (job, partition, epoch) in before {
        let p = &s.jobs[&job].partitions[&partition];
        assert_eq!(
            (p.worker.clone(), p.epoch),
            (Some(WorkerId::from("w1")), epoch),
            "w1 kept its partitions"
        );
    }
}

#[test]
fn a_placement_with_a_stale_epoch_is_refused_whole() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "j");
    worker(&mut s, "w1");
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 2,
    });
    settle(&mut s);
    let before = s.clone();
    let r = s.apply(&Command::Place {
        moves: vec![
            Move {
                job: JobId(1),
                partition: PartitionId(0),
                worker: None,
                epoch: Epoch(2),
            },
            Move {
                job: JobId(1),
                partition: PartitionId(1),
                worker: None,
                epoch: Epoch(1),
            },
        ],
    });
    assert!(matches!(
        r,
        CommandResult::Refused(Refusal::StaleEpoch { .. })
    ));
    assert_eq!(s, before);
}

#[test]
fn cancelling_unplaces_every_partition_then_cancels() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "j");
    worker(&mut s, "w1");
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 3,
    });
    settle(&mut s);
    // Another tenant cannot cancel it.
    assert!(matches!(
        s.apply(&Command::CancelJob {
            job: JobId(1),
            tenant: Some("b".into())
        }),
        CommandResult::Refused(Refusal::NotFound(_))
    ));
    s.apply(&Command::CancelJob {
        job: JobId(1),
        tenant: Some("a".into()),
    });
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Cancelling);
    settle(&mut s);
    // Unplaced, but not cancelled until their transactional ids are fenced: the owner may
    // be wedged with a transaction open.
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Cancelling);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Cancelled);
    assert!(s.jobs[&JobId(1)]
        .partitions
        .values()
        .all(|p| p.worker.is_none() && p.epoch == Epoch(2)));
}

#[test]
fn checkpoints_follow_the_protocol_and_fence_stale_epochs() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "j");
    worker(&mut s, "w1");
    worker(&mut s, "w2");
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 1,
    });
    settle(&mut s);
    let owner = s.jobs[&JobId(1)].partitions[&PartitionId(0)]
        .worker
        .clone()
        .unwrap();
    let other = if owner.0 == "w1" {
        WorkerId::from("w2")
    } else {
        WorkerId::from("w1")
    };
    let apply = |s: &mut ControlState, w: &WorkerId, r: CheckpointReport| match s.apply(
        &Command::Checkpoint {
            worker: w.clone(),
            reports: vec![r],
            at_ms: 10,
        },
    ) {
        CommandResult::CheckpointResults(mut v) => v.remove(0),
        other => panic!("{other:?}"),
    };
    use CheckpointPhase::{Committed, Prepared};
    assert!(
        apply(&mut s, &owner, report(1, 0, 1, 1, Committed, 10)).is_err(),
        "commit before prepare"
    );
    assert!(apply(&mut s, &owner, report(1, 0, 1, 1, Prepared, 10)).is_ok());
    assert!(
        apply(&mut s, &owner, report(1, 0, 1, 1, Prepared, 10)).is_ok(),
        "a retry is idempotent"
    );
    assert!(
        apply(&mut s, &owner, report(1, 0, 1, 1, Prepared, 11)).is_ok(),
        "a restarted owner prepares the same id again"
    );
    assert_eq!(
        s.jobs[&JobId(1)].partitions[&PartitionId(0)]
            .checkpoints
            .len(),
        1,
        "replaced, not added"
    );
    assert!(apply(&mut s, &owner, report(1, 0, 1, 1, Prepared, 10)).is_ok());
    assert!(
        apply(&mut s, &other, report(1, 0, 1, 2, Prepared, 20)).is_err(),
        "not the owner"
    );
    assert!(
        apply(&mut s, &owner, report(1, 0, 2, 2, Prepared, 20)).is_err(),
        "future epoch"
    );
    assert!(
        apply(&mut s, &owner, report(1, 0, 1, 1, Committed, 12)).is_err(),
        "offset differs from prepared"
    );
    assert!(apply(&mut s, &owner, report(1, 0, 1, 1, Committed, 10)).is_ok());
    assert_eq!(
        s.jobs[&JobId(1)].partitions[&PartitionId(0)].committed,
        Some((CheckpointId(1), 10))
    );
    assert!(
        apply(&mut s, &owner, report(1, 0, 1, 1, Prepared, 10)).is_err(),
        "not newer than committed"
    );

    // Reassignment bumps the epoch: the old owner is fenced from then on.
    s.apply(&Command::RemoveWorker {
        worker: owner.clone(),
        reason: "test".into(),
    });
    settle(&mut s);
    let p = &s.jobs[&JobId(1)].partitions[&PartitionId(0)];
    assert_eq!((p.worker.clone(), p.epoch), (Some(other.clone()), Epoch(2)));
    worker(&mut s, &owner.0);
    assert!(
        apply(&mut s, &owner, report(1, 0, 1, 2, Prepared, 20)).is_err(),
        "zombie with epoch 1"
    );
    assert!(apply(&mut s, &other, report(1, 0, 2, 2, Prepared, 20)).is_ok());

    // Records are bounded per partition.
    for c in 3..(3 + CHECKPOINT_RECORDS_PER_PARTITION_MAX as u64 * 2) {
        assert!(apply(&mut s, &other, report(1, 0, 2, c, Prepared, c as i64 * 10)).is_ok());
    }
    assert_eq!(
        s.jobs[&JobId(1)].partitions[&PartitionId(0)]
            .checkpoints
            .len(),
        CHECKPOINT_RECORDS_PER_PARTITION_MAX
    );
}

#[test]
fn partition_counts_only_grow_and_are_bounded() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "j");
    let set = |s: &mut ControlState, n| {
        s.apply(&Command::SetPartitionCount {
            job: JobId(1),
            partition_count: n,
        })
    };
    assert!(matches!(
        set(&mut s, 0),
        CommandResult::Refused(Refusal::Invalid(_))
    ));
    assert!(matches!(
        set(&mut s, JOB_PARTITIONS_MAX + 1),
        CommandResult::Refused(Refusal::Invalid(_))
    ));
    assert_eq!(set(&mut s, 4), CommandResult::Done);
    assert_eq!(set(&mut s, 4), CommandResult::Done);
    assert!(matches!(
        set(&mut s, 2),
        CommandResult::Refused(Refusal::Conflict(_))
    ));
    assert_eq!(set(&mut s, 8), CommandResult::Done);
    assert_eq!(s.jobs[&JobId(1)].partitions.len(), 8);
}

#[test]
fn the_state_survives_a_json_round_trip() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "j");
    worker(&mut s, "w1");
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 3,
    });
    settle(&mut s);
    let bytes = serde_json::to_vec(&s).unwrap();
    let back: ControlState = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, s);
}

#[test]
fn an_idempotent_request_is_applied_once_and_answered_again() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    let submit = |key: &str| Command::Idempotent {
        key: key.into(),
        digest: None,
        command: Box::new(Command::SubmitJob {
            tenant: "a".into(),
            name: "j".into(),
            spec: serde_json::json!({}),
            at_ms: 0,
        }),
    };
    let first = s.apply(&submit("k1"));
    assert_eq!(
        first,
        CommandResult::JobSubmitted {
            id: JobId(1),
            version: 1
        }
    );
    // The retry after a lost answer gets the same answer, not a 409, and nothing changes.
    let before = s.clone();
    assert_eq!(s.apply(&submit("k1")), first);
    assert_eq!(s, before);
    // Another key is another request.
    assert!(matches!(
        s.apply(&submit("k2")),
        CommandResult::Refused(Refusal::Conflict(_))
    ));
    // Keys are bounded.
    for i in 0..(IDEMPOTENCY_KEYS_MAX + 5) {
        s.apply(&Command::Idempotent {
            key: format!("n{i}"),
            digest: Some(format!("d{i}")),
            command: Box::new(Command::Noop),
        });
    }
    assert_eq!(s.answered.len(), IDEMPOTENCY_KEYS_MAX);
    assert_eq!(s.answered_digests.len(), IDEMPOTENCY_KEYS_MAX);
    assert!(
        !s.answered.contains_key("k1"),
        "the oldest key is forgotten"
    );
    assert!(matches!(
        s.apply(&Command::Idempotent {
            key: String::new(),
            digest: None,
            command: Box::new(Command::Noop)
        }),
        CommandResult::Refused(Refusal::Invalid(_))
    ));
}

#[test]
fn a_batch_applies_in_order_with_a_result_each() {
    let mut s = ControlState::default();
    let create = |n: &str| Command::CreateTenant {
        name: n.into(),
        token_hash: format!("h{n}"),
        at_ms: 0,
    };
    let r = s.apply(&Command::Batch(vec![
        create("a"),
        create("a"),
        create("b"),
        Command::Batch(vec![]),
    ]));
    let CommandResult::Batch(results) = r else {
        panic!("{r:?}")
    };
    assert_eq!(results.len(), 4);
    assert_eq!(results[0], CommandResult::Done);
    assert!(
        matches!(results[1], CommandResult::Refused(Refusal::Conflict(_))),
        "the second sees the first"
    );
    assert_eq!(results[2], CommandResult::Done);
    assert!(
        matches!(results[3], CommandResult::Refused(Refusal::Invalid(_))),
        "no nesting"
    );
    assert_eq!(s.tenants.len(), 2);
}

#[test]
fn a_key_reused_for_another_request_is_refused_and_applies_nothing() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    let submit = |name: &str, digest: &str| Command::Idempotent {
        key: "tenant:a/k".into(),
        digest: Some(digest.into()),
        command: Box::new(Command::SubmitJob {
            tenant: "a".into(),
            name: name.into(),
            spec: serde_json::json!({}),
            at_ms: 0,
        }),
    };
    let first = s.apply(&submit("j1", "d1"));
    assert!(matches!(first, CommandResult::JobSubmitted { .. }));
    // The same request again: the first answer.
    assert_eq!(s.apply(&submit("j1", "d1")), first);
    // Another request under the same key: refused, and the second job is not created
    // under the first one's answer.
    let before = s.clone();
    assert_eq!(
        s.apply(&submit("j2", "d2")),
        CommandResult::Refused(Refusal::IdempotencyKeyReused)
    );
    assert_eq!(s, before);
    // An entry without a digest (written by an older member) still answers as before.
    let mut old = before.clone();
    let old_retry = Command::Idempotent {
        key: "tenant:a/k".into(),
        digest: None,
        command: Box::new(Command::Noop),
    };
    assert_eq!(old.apply(&old_retry), first);
}

#[test]
fn the_key_bound_applies_to_the_clients_key_not_the_prefix() {
    let mut s = ControlState::default();
    // 120 bytes as the client sent them, plus the longest tenant prefix.
    let key = format!(
        "tenant:{}/{}",
        "t".repeat(63),
        "k".repeat(IDEMPOTENCY_KEY_BYTES_MAX)
    );
    let with_digest = Command::Idempotent {
        key: key.clone(),
        digest: Some("d".into()),
        command: Box::new(Command::Noop),
    };
    assert_eq!(s.apply(&with_digest), CommandResult::Done);
    // Entries from before digests keep the bound they were applied with.
    let without = Command::Idempotent {
        key: format!("{key}-old"),
        digest: None,
        command: Box::new(Command::Noop),
    };
    assert!(matches!(
        s.apply(&without),
        CommandResult::Refused(Refusal::Invalid(_))
    ));
}

/// A cancelled job's partitions are fenced by some live worker even when their owner is
/// wedged or dead: each partition is one registered worker's duty, the duty passes on when
/// that worker is removed, and the job is cancelled only once all are fenced. A wedged
/// job's open transaction held back another job's outputs for a minute.
#[test]
fn a_cancelled_job_is_cancelled_only_after_a_live_worker_fenced_its_partitions() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "wedged");
    worker(&mut s, "w1");
    worker(&mut s, "w2");
    worker(&mut s, "w3");
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 6,
    });
    settle(&mut s);
    s.apply(&Command::CancelJob {
        job: JobId(1),
        tenant: None,
    });
    settle(&mut s);
    let duties = |s: &ControlState| -> Vec<Vec<(JobId, PartitionId)>> {
        s.workers
            .keys()
            .map(|w| s.fence_duties(w, usize::MAX))
            .collect()
    };
    let before = duties(&s);
    assert_eq!(before.iter().map(Vec::len).sum::<usize>(), 6, "{before:?}");
    assert!(before.iter().all(|d| d.len() == 2), "spread: {before:?}");
    // w2 dies (its lease ran out): its duties pass to the others.
    s.apply(&Command::RemoveWorker {
        worker: WorkerId::from("w2"),
        reason: "lease expired".into(),
    });
    assert_eq!(duties(&s).iter().map(Vec::len).sum::<usize>(), 6);
    // A report from a worker the group does not know is refused.
    let r = s.apply(&Command::WorkerReport {
        worker: WorkerId::from("w2"),
        report: WorkerReport::Fenced {
            job: JobId(1),
            partitions: vec![PartitionId(0)],
            commit_points: Vec::new(),
        },
    });
    assert!(matches!(r, CommandResult::Refused(Refusal::NotFound(_))));
    settle(&mut s);
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Cancelling);
    assert!(matches!(
        s.apply(&Command::FinishCancel { job: JobId(1) }),
        CommandResult::Refused(Refusal::Conflict(_))
    ));
    fence_all(&mut s);
    assert!(duties(&s).iter().all(Vec::is_empty));
    settle(&mut s);
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Cancelled);
    // A job whose partitions never ran has nothing to fence.
    submit(&mut s, "a", "never-ran");
    s.apply(&Command::CancelJob {
        job: JobId(2),
        tenant: None,
    });
    settle(&mut s);
    assert_eq!(s.jobs[&JobId(2)].state, JobState::Cancelled);
    // With no worker registered nobody can fence: the job is cancelled anyway (Kafka's
    // transaction timeout ends what its owner left open) rather than stay cancelling.
    submit(&mut s, "a", "alone");
    s.apply(&Command::SetPartitionCount {
        job: JobId(3),
        partition_count: 2,
    });
    settle(&mut s);
    s.apply(&Command::CancelJob {
        job: JobId(3),
        tenant: None,
    });
    for w in ["w1", "w3"] {
        s.apply(&Command::RemoveWorker {
            worker: WorkerId::from(w),
            reason: "left".into(),
        });
    }
    settle(&mut s);
    assert_eq!(s.jobs[&JobId(3)].state, JobState::Cancelled);
    // The first worker to come fences them all the same.
    worker(&mut s, "w4");
    let late = s.fence_duties(&WorkerId::from("w4"), usize::MAX);
    assert_eq!(
        late,
        [(JobId(3), PartitionId(0)), (JobId(3), PartitionId(1))]
    );
    fence_all(&mut s);
    assert!(s.fence_duties(&WorkerId::from("w4"), usize::MAX).is_empty());
}

/// A partition's owner reports why it cannot progress (shown in `GET /v1/jobs/{id}`), and
/// past its failure-rate limit fails the job with that reason; a stale owner cannot.
#[test]
fn a_partition_that_keeps_failing_fails_its_job_with_the_reason() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "j");
    worker(&mut s, "w1");
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 2,
    });
    settle(&mut s);
    let epoch = s.jobs[&JobId(1)].partitions[&PartitionId(1)].epoch;
    let report = |problem: Option<&str>, fail: bool, epoch: Epoch, w: &str| Command::WorkerReport {
        worker: WorkerId::from(w),
        report: WorkerReport::PartitionProblem {
            job: JobId(1),
            partition: PartitionId(1),
            epoch,
            problem: problem.map(String::from),
            fail,
        },
    };
    let r = s.apply(&report(
        Some("broker: record too large"),
        false,
        epoch,
        "w1",
    ));
    assert_eq!(r, CommandResult::Done);
    let j = &s.jobs[&JobId(1)];
    assert_eq!(j.state, JobState::Running);
    assert_eq!(
        j.partitions[&PartitionId(1)].problem.as_deref(),
        Some("broker: record too large")
    );
    // Cleared when it progresses again.
    s.apply(&report(None, false, epoch, "w1"));
    assert_eq!(s.jobs[&JobId(1)].partitions[&PartitionId(1)].problem, None);
    // Not from a stale epoch or another worker.
    let stale = s.apply(&report(Some("x"), true, Epoch(epoch.0 + 1), "w1"));
    assert!(matches!(
        stale,
        CommandResult::Refused(Refusal::StaleEpoch { .. })
    ));
    let other = s.apply(&report(Some("x"), true, epoch, "w9"));
    assert!(matches!(other, CommandResult::Refused(_)));
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Running);
    // Past the limit: failed, with the reason, and nothing placed any more.
    let huge = "y".repeat(10 * REPORTED_REASON_BYTES_MAX);
    s.apply(&report(Some(&huge), true, epoch, "w1"));
    let j = &s.jobs[&JobId(1)];
    assert_eq!(j.state, JobState::Failed);
    let reason = j.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("partition 1 kept failing: yyy"),
        "{reason}"
    );
    assert!(reason.len() <= REPORTED_REASON_BYTES_MAX);
    settle(&mut s);
    assert!(s.jobs[&JobId(1)]
        .partitions
        .values()
        .all(|p| p.worker.is_none()));
}

/// A worker that cannot read a pending job's source topic says why; the reason goes
/// once the partition count is known, and never overwrites a failed job's reason.
#[test]
fn a_pending_job_shows_why_it_cannot_start() {
    let mut s = ControlState::default();
    tenant(&mut s, "a");
    submit(&mut s, "a", "j");
    worker(&mut s, "w1");
    let pending = |reason: Option<&str>| Command::WorkerReport {
        worker: WorkerId::from("w1"),
        report: WorkerReport::JobPending {
            job: JobId(1),
            reason: reason.map(String::from),
        },
    };
    s.apply(&pending(Some("source topic payments does not exist")));
    let j = &s.jobs[&JobId(1)];
    assert_eq!(j.state, JobState::Pending);
    assert_eq!(
        j.reason.as_deref(),
        Some("source topic payments does not exist")
    );
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 1,
    });
    assert_eq!(s.jobs[&JobId(1)].reason, None);
    s.apply(&Command::FailJob {
        job: JobId(1),
        reason: "broken".into(),
    });
    s.apply(&pending(Some("source topic payments does not exist")));
    assert_eq!(s.jobs[&JobId(1)].reason.as_deref(), Some("broken"));
}

/// An old snapshot (before partitions carried `problem` and `fenced`) still loads.
#[test]
fn partition_state_without_the_new_fields_deserializes() {
    let old = serde_json::json!({
        "worker": null, "epoch": 3, "checkpoints": [], "committed": null
    });
    let p: PartitionState = serde_json::from_value(old).unwrap();
    assert!(p.needs_fencing());
    assert_eq!(p.problem, None);
}

#[path = "lifecycle_flow_tests.rs"]
mod lifecycle_flow;

/// A spec (as submitted, JSON) whose `key_by` repartitions: source `payments`.
fn shuffling_spec(name: &str, parallelism: u32) -> serde_json::Value {
    let yaml = format!(
        "name: {name}\nsource: {{ topic: payments }}\npipeline:\n  - key_by: \"card\"\n  \
         - window: {{ tumbling: 10s }}\n  - aggregate: {{ n: \"count()\" }}\n\
         sink: {{ topic: out }}\nparallelism: {parallelism}\n"
    );
    serde_json::to_value(weir_core::spec::parse_job_spec(yaml.as_bytes()).unwrap()).unwrap()
}

#[test]
fn a_job_that_repartitions_gets_the_tasks_of_both_stages_and_its_topic_deleted_when_cancelled() {
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
        partition_count: 3,
    });
    let job = &s.jobs[&JobId(1)];
    assert_eq!(job.repartitions, vec![2]);
    let tasks: Vec<u32> = job.partitions.keys().map(|p| p.0).collect();
    assert_eq!(tasks, vec![0, 1, 2, 10_000, 10_001]);
    // The source grows: upstream tasks are added, the downstream ones stay.
    s.apply(&Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 4,
    });
    let tasks: Vec<u32> = s.jobs[&JobId(1)].partitions.keys().map(|p| p.0).collect();
    assert_eq!(tasks, vec![0, 1, 2, 3, 10_000, 10_001]);
    settle(&mut s);
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Running);
    // Nothing to delete while it runs.
    let duties = |s: &ControlState| -> Vec<(JobId, Vec<String>)> {
        s.workers
            .keys()
            .flat_map(|w| s.topic_deletion_duties(w, usize::MAX))
            .collect()
    };
    assert!(duties(&s).is_empty());
    s.apply(&Command::CancelJob {
        job: JobId(1),
        tenant: None,
    });
    settle(&mut s);
    fence_all(&mut s);
    settle(&mut s);
    assert_eq!(s.jobs[&JobId(1)].state, JobState::Cancelled);
    let due = duties(&s);
    assert_eq!(
        due,
        vec![(JobId(1), vec!["weir-job-1-repartition-1".to_string()])],
        "one worker is asked to delete the topic"
    );
    let (owner, _) = s
        .workers
        .keys()
        .map(|w| (w.clone(), s.topic_deletion_duties(w, usize::MAX)))
        .find(|(_, d)| !d.is_empty())
        .unwrap();
    let r = s.apply(&Command::WorkerReport {
        worker: owner,
        report: WorkerReport::TopicsDeleted { job: JobId(1) },
    });
    assert_eq!(r, CommandResult::Done);
    assert!(s.jobs[&JobId(1)].topics_deleted);
    assert!(duties(&s).is_empty());
}
#[path = "savepoint_tests.rs"]
mod savepoints;

#[path = "stage_cut_tests.rs"]
mod stage_cut;

#[path = "versions_tests.rs"]
mod versions;

#[path = "rescale_tests.rs"]
mod rescale;
