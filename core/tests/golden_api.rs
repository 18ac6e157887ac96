//! The HTTP API's bodies and the typed refusal, pinned by golden files under
//! `tests/golden/api/`: each fixed value must encode to exactly the committed JSON, and the
//! committed JSON must decode to the value. A changed body fails here until its golden file
//! is regenerated on purpose (`WEIR_UPDATE_GOLDEN=1 cargo test -p weir-core --test
//! golden_api`) and the change is reviewed as a format change. The bodies' version is the
//! `/v1/` of their paths (docs/HTTP_API.md).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::path::PathBuf;
use weir_core::ids::{CheckpointId, Epoch, JobId, PartitionId, SavepointId, TenantName, WorkerId};
use weir_core::wire::*;

/// Checks that `value` encodes to the golden file `name` and that the file decodes to it.
fn pinned<T: Serialize + DeserializeOwned + PartialEq + Debug>(name: &str, value: &T) {
    let encoded = serde_json::to_string_pretty(value).unwrap() + "\n";
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/api");
    let golden = String::from_utf8(weir_core::golden::check(&dir, name, encoded.as_bytes()))
        .expect("a golden body is UTF-8");
    let decoded: T = serde_json::from_str(&golden).unwrap();
    assert_eq!(
        &decoded, value,
        "{name}: the golden file decodes to another value"
    );
}

fn spec() -> serde_json::Value {
    serde_json::json!({
        "name": "velocity",
        "source": {"topic": "payments", "format": "json"},
        "pipeline": [{"filter": "amount > 0"}],
        "sink": {"topic": "alerts", "format": "json"},
    })
}

fn report(phase: CheckpointPhase) -> CheckpointReport {
    CheckpointReport {
        job: JobId(7),
        partition: PartitionId(2),
        epoch: Epoch(3),
        checkpoint: CheckpointId(41),
        phase,
        offset: 1200,
        snapshot: "/checkpoints/7/2/00000000000000001200.snap".into(),
    }
}

/// Every refusal kind, in declaration order.
fn every_refusal() -> Vec<CheckpointRefusal> {
    vec![
        CheckpointRefusal::UnknownJob { job: JobId(7) },
        CheckpointRefusal::UnknownPartition {
            job: JobId(7),
            partition: PartitionId(9),
        },
        CheckpointRefusal::StaleEpoch {
            got: Epoch(2),
            current: Epoch(3),
        },
        CheckpointRefusal::NotOwner {
            worker: WorkerId::from("w2"),
        },
        CheckpointRefusal::NegativeOffset { offset: -1 },
        CheckpointRefusal::NotNewer {
            checkpoint: CheckpointId(40),
            committed: CheckpointId(41),
        },
        CheckpointRefusal::NeverPrepared {
            checkpoint: CheckpointId(42),
        },
        CheckpointRefusal::OffsetMismatch {
            checkpoint: CheckpointId(42),
            prepared_offset: 1200,
            offset: 1300,
        },
        CheckpointRefusal::OlderThanCommitted {
            checkpoint: CheckpointId(39),
            committed: CheckpointId(41),
        },
        CheckpointRefusal::NotAnsweredOnce,
        CheckpointRefusal::Unknown,
    ]
}

#[test]
fn cluster_bodies_are_pinned() {
    pinned(
        "cluster_status.json",
        &ClusterStatus {
            leader: Some(1),
            term: 4,
            members: vec![
                Member {
                    id: 1,
                    addr: "10.0.0.1:7000".into(),
                    state: "leader".into(),
                },
                Member {
                    id: 2,
                    addr: "10.0.0.2:7000".into(),
                    state: "follower".into(),
                },
            ],
            last_applied: 812,
            seen: vec![1, 2],
        },
    );
    pinned(
        "add_member_request.json",
        &AddMemberRequest {
            id: 3,
            addr: "10.0.0.3:7000".into(),
        },
    );
}

#[test]
fn tenant_bodies_are_pinned() {
    pinned(
        "create_tenant_request.json",
        &CreateTenantRequest {
            name: "acme".into(),
        },
    );
    pinned(
        "tenant_token.json",
        &TenantToken {
            name: "acme".into(),
            token: "wt_0123456789abcdef".into(),
        },
    );
}

#[test]
fn job_bodies_are_pinned() {
    pinned(
        "submitted_job.json",
        &SubmittedJob {
            id: JobId(7),
            name: "velocity".into(),
            version: 1,
        },
    );
    pinned("job_states.json", &JobState::ALL.to_vec());
    pinned(
        "job_summaries.json",
        &vec![
            JobSummary {
                id: JobId(7),
                name: "velocity".into(),
                tenant: TenantName::from("acme"),
                state: JobState::Running,
                version: 1,
                reason: None,
            },
            JobSummary {
                id: JobId(8),
                name: "copy".into(),
                tenant: TenantName::from("acme"),
                state: JobState::Failed,
                version: 2,
                reason: Some("partition 0 kept failing".into()),
            },
        ],
    );
    pinned(
        "lifecycle_answer_with_savepoint.json",
        &LifecycleAnswer {
            job: JobSummary {
                id: JobId(7),
                name: "velocity".into(),
                tenant: TenantName::from("acme"),
                state: JobState::Stopping,
                version: 1,
                reason: None,
            },
            savepoint: Some(SavepointId(3)),
        },
    );
    pinned(
        "savepoints.json",
        &vec![
            SavepointInfo {
                savepoint: SavepointId(1),
                job: JobId(7),
                status: SavepointStatus::Complete,
                requested_at_ms: 1_700_000_000_000,
                reason: None,
                partitions: vec![
                    SavepointPartition {
                        partition: PartitionId(0),
                        checkpoint: Some(CheckpointId(30)),
                        offset: 1_200,
                        snapshot: Some(
                            "file:///var/lib/weir/checkpoints/7/0/00000000000000001200.snap".into(),
                        ),
                    },
                    SavepointPartition {
                        partition: PartitionId(1),
                        checkpoint: None,
                        offset: 0,
                        snapshot: None,
                    },
                ],
            },
            SavepointInfo {
                savepoint: SavepointId(2),
                job: JobId(7),
                status: SavepointStatus::Pending,
                requested_at_ms: 1_700_000_100_000,
                reason: None,
                partitions: vec![],
            },
            SavepointInfo {
                savepoint: SavepointId(3),
                job: JobId(7),
                status: SavepointStatus::Failed,
                requested_at_ms: 1_700_000_200_000,
                reason: Some("the job became cancelling before it stopped".into()),
                partitions: vec![],
            },
        ],
    );
    pinned(
        "job_detail.json",
        &JobDetail {
            id: JobId(7),
            name: "velocity".into(),
            tenant: TenantName::from("acme"),
            state: JobState::Running,
            version: 1,
            reason: None,
            partition_count: Some(2),
            spec: spec(),
            partitions: vec![
                PartitionStatus {
                    partition: PartitionId(0),
                    worker: Some(WorkerId::from("w1")),
                    epoch: Epoch(3),
                    checkpoint: Some(CheckpointId(41)),
                    offset: Some(1200),
                    problem: None,
                },
                PartitionStatus {
                    partition: PartitionId(1),
                    worker: None,
                    epoch: Epoch(1),
                    checkpoint: None,
                    offset: None,
                    problem: Some("source topic payments does not exist".into()),
                },
            ],
        },
    );
    pinned(
        "checkpoint_records.json",
        &vec![CheckpointRecord {
            job: JobId(7),
            partition: PartitionId(2),
            checkpoint: CheckpointId(41),
            epoch: Epoch(3),
            phase: CheckpointPhase::Committed,
            offset: 1200,
            snapshot: "/checkpoints/7/2/00000000000000001200.snap".into(),
            prepared_at_ms: 1_700_000_000_000,
            committed_at_ms: Some(1_700_000_000_050),
        }],
    );
    pinned(
        "report_partitions_request.json",
        &ReportPartitionsRequest {
            partition_count: 2,
            topic: None,
        },
    );
}

#[test]
fn worker_bodies_are_pinned() {
    pinned(
        "worker_statuses.json",
        &vec![WorkerStatus {
            id: WorkerId::from("w1"),
            addr: "10.0.1.1:7100".into(),
            lease_expires_at: Some(1_700_000_010_000),
            partitions: vec![AssignmentRef {
                job: JobId(7),
                partition: PartitionId(0),
                epoch: Epoch(3),
            }],
        }],
    );
    pinned(
        "register_worker_request.json",
        &RegisterWorkerRequest {
            id: WorkerId::from("w1"),
            addr: "10.0.1.1:7100".into(),
        },
    );
    pinned(
        "lease.json",
        &Lease {
            worker: WorkerId::from("w1"),
            lease_timeout_ms: 10_000,
            heartbeat_interval_ms: 2_000,
        },
    );
    pinned(
        "assignments.json",
        &Assignments {
            worker: WorkerId::from("w1"),
            assignments: vec![WorkerAssignment {
                job: JobId(7),
                partition: PartitionId(0),
                epoch: Epoch(3),
                job_version: 1,
                spec: spec(),
                committed_checkpoint: Some(CheckpointId(41)),
                pause: false,
                pause_recorded: false,
                repartitions: Vec::new(),
                repartition_generation: 0,
                keep_offsets: vec![],
                prune_below: None,
                restore: None,
                join_upstreams: None,
            }],
            unknown_partition_counts: vec![(JobId(8), "orders".into())],
            unknown_topic_partition_counts: Vec::new(),
            fence: vec![(JobId(5), PartitionId(1))],
            delete_topics: Vec::new(),
            fence_inputs: Vec::new(),
        },
    );
    pinned(
        "assignments_paused.json",
        &Assignments {
            worker: WorkerId::from("w1"),
            assignments: vec![WorkerAssignment {
                job: JobId(7),
                partition: PartitionId(0),
                epoch: Epoch(3),
                job_version: 1,
                spec: spec(),
                committed_checkpoint: Some(CheckpointId(41)),
                pause: true,
                pause_recorded: true,
                repartitions: Vec::new(),
                repartition_generation: 0,
                keep_offsets: vec![],
                prune_below: None,
                restore: None,
                join_upstreams: None,
            }],
            unknown_partition_counts: vec![],
            unknown_topic_partition_counts: Vec::new(),
            fence: vec![],
            delete_topics: Vec::new(),
            fence_inputs: Vec::new(),
        },
    );
    pinned(
        "assignments_restoring.json",
        &Assignments {
            worker: WorkerId::from("w1"),
            assignments: vec![WorkerAssignment {
                job: JobId(7),
                partition: PartitionId(0),
                epoch: Epoch(4),
                job_version: 1,
                spec: spec(),
                committed_checkpoint: Some(CheckpointId(45)),
                pause: false,
                pause_recorded: false,
                repartitions: Vec::new(),
                repartition_generation: 0,
                keep_offsets: vec![1_200, 4_096],
                prune_below: Some(1_200),
                restore: Some(RestorePoint {
                    savepoint: SavepointId(2),
                    checkpoint: Some(CheckpointId(30)),
                    offset: 1_200,
                    snapshot: Some(
                        "file:///var/lib/weir/checkpoints/7/0/00000000000000001200.snap".into(),
                    ),
                    after_checkpoint: Some(CheckpointId(45)),
                    spec_before: None,
                    state_drop: Vec::new(),
                    redistribute: Vec::new(),
                }),
                join_upstreams: None,
            }],
            unknown_partition_counts: vec![],
            unknown_topic_partition_counts: Vec::new(),
            fence: vec![],
            delete_topics: Vec::new(),
            fence_inputs: Vec::new(),
        },
    );
    pinned(
        "worker_reports.json",
        &vec![
            WorkerReport::PartitionProblem {
                job: JobId(7),
                partition: PartitionId(0),
                epoch: Epoch(3),
                problem: Some("checkpoint store unavailable".into()),
                fail: false,
            },
            WorkerReport::JobPending {
                job: JobId(8),
                reason: Some("source topic orders does not exist".into()),
            },
            WorkerReport::Fenced {
                job: JobId(5),
                partitions: vec![PartitionId(0), PartitionId(1)],
                commit_points: Vec::new(),
            },
            WorkerReport::Paused {
                job: JobId(7),
                partition: PartitionId(0),
                epoch: Epoch(3),
            },
        ],
    );
}

#[test]
fn checkpoint_bodies_and_refusals_are_pinned() {
    pinned(
        "checkpoint_report_batch.json",
        &CheckpointReportBatch {
            worker: WorkerId::from("w1"),
            reports: vec![
                report(CheckpointPhase::Prepared),
                report(CheckpointPhase::Committed),
            ],
        },
    );
    let mut results = vec![Ok(())];
    results.extend(every_refusal().into_iter().map(Err));
    pinned(
        "checkpoint_report_results.json",
        &CheckpointReportResults { results },
    );
    pinned(
        "error_body.json",
        &vec![
            ErrorBody {
                error: "checkpoint_interval must be at least 100ms".into(),
                field: Some("checkpoint_interval".into()),
            },
            ErrorBody {
                error: "job 9 not found".into(),
                field: None,
            },
        ],
    );
}

/// A newer coordinator's answer: a refusal kind this version does not know, and a known
/// kind whose fields changed. Each reads as `Unknown` (the report was not accepted), the
/// readable ones beside them as they are; the whole answer is not lost.
#[test]
fn refusals_this_version_cannot_read_are_unknown() {
    let newer = r#"{"results": [
        {"Ok": null},
        {"Err": {"refusal": "quota_exceeded", "limit": 3}},
        {"Err": {"refusal": "stale_epoch", "got": "3", "current": {"epoch": 4}}},
        {"Err": {"refusal": "not_owner", "worker": "w2", "since_ms": 17}},
        {"Err": {"kind": "stale_epoch"}},
        "accepted"
    ]}"#;
    let read: CheckpointReportResults = serde_json::from_str(newer).unwrap();
    assert_eq!(
        read.results,
        vec![
            Ok(()),
            Err(CheckpointRefusal::Unknown),
            Err(CheckpointRefusal::Unknown),
            // A field it does not know is ignored: a refusal may gain fields.
            Err(CheckpointRefusal::NotOwner {
                worker: WorkerId::from("w2")
            }),
            Err(CheckpointRefusal::Unknown),
            Err(CheckpointRefusal::Unknown),
        ]
    );
    for refusal in [&read.results[1], &read.results[2]] {
        let refusal = refusal.clone().unwrap_err();
        assert!(!refusal.means_fenced(), "{refusal} is not fencing");
        assert!(
            refusal.to_string().contains("newer coordinator"),
            "{refusal}"
        );
    }
    // The list itself must still be a list.
    assert!(serde_json::from_str::<CheckpointReportResults>(r#"{"results": 3}"#).is_err());
}

#[test]
fn upgrade_bodies_are_pinned() {
    pinned(
        "upgrade_request.json",
        &UpgradeRequest {
            spec: spec(),
            savepoint: Some(SavepointId(3)),
            allow_state_drop: vec!["window#0".into()],
        },
    );
    pinned(
        "upgrade_answer.json",
        &UpgradeAnswer {
            job: JobSummary {
                id: JobId(7),
                name: "velocity".into(),
                tenant: TenantName::from("acme"),
                state: JobState::Upgrading,
                version: 1,
                reason: None,
            },
            upgrade_version: 2,
            savepoint: SavepointId(4),
        },
    );
    pinned(
        "job_versions.json",
        &vec![
            JobVersionInfo {
                version: 1,
                created_at_ms: 1_000,
                spec: spec(),
                savepoint: None,
                from_version: None,
                state_dropped: vec![],
            },
            JobVersionInfo {
                version: 2,
                created_at_ms: 2_000,
                spec: spec(),
                savepoint: Some(SavepointId(4)),
                from_version: Some(1),
                state_dropped: vec!["dedupe#0".into()],
            },
        ],
    );
    pinned(
        "restore_point_upgrade.json",
        &RestorePoint {
            savepoint: SavepointId(4),
            checkpoint: Some(CheckpointId(9)),
            offset: 120,
            snapshot: Some("jobs/7/0/120".into()),
            after_checkpoint: Some(CheckpointId(9)),
            spec_before: Some(spec()),
            state_drop: vec!["dedupe#0".into()],
            redistribute: Vec::new(),
        },
    );
}

#[test]
fn rescale_bodies_are_pinned() {
    pinned("rescale_request.json", &RescaleRequest { parallelism: 6 });
    pinned(
        "restore_point_rescale.json",
        &RestorePoint {
            savepoint: SavepointId(5),
            checkpoint: None,
            offset: 0,
            snapshot: None,
            after_checkpoint: None,
            spec_before: Some(spec()),
            state_drop: Vec::new(),
            redistribute: vec![
                RestoreSource {
                    partition: PartitionId(10_000),
                    checkpoint: Some(CheckpointId(12)),
                    offset: 340,
                },
                RestoreSource {
                    partition: PartitionId(10_001),
                    checkpoint: None,
                    offset: 0,
                },
            ],
        },
    );
}
