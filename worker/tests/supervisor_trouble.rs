//! The worker's supervisor and partition actors against the in-memory Kafka model and the
//! real control state machine and scheduler, on a paused clock: what users see when a job
//! cannot start, when a partition keeps failing, and when a stopped job's owner left a
//! transaction open.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_broker::memory::MemoryBroker;
use weir_broker::{Broker, OutgoingRecord, SourceOffset, TransactionalWriter};
use weir_coordinator::scheduler::plan;
use weir_coordinator::state::{Command, CommandResult, ControlState, Move};
use weir_core::ids::{CheckpointId, Epoch, JobId, PartitionId, TenantName, WorkerId};
use weir_core::spec::parse_job_spec;
use weir_core::wire::{
    Assignments, CheckpointPhase, CheckpointReport, CheckpointReportResults, JobState, Lease,
    WorkerAssignment, WorkerReport,
};
use weir_worker::checkpoint_store::MemoryCheckpointStore;
use weir_worker::control::{ControlError, ControlPlane};
use weir_worker::fleet::{StatusBoard, Supervisor, SupervisorConfig};

/// The control plane as the real state machine, in memory (what `worker_calls` does,
/// without the Raft group).
#[derive(Default)]
struct LocalControl {
    state: Mutex<ControlState>,
}

impl LocalControl {
    fn apply(&self, c: Command) -> CommandResult {
        self.state.lock().unwrap().apply(&c)
    }

    fn answer(&self, c: Command) -> Result<(), ControlError> {
        match self.apply(c) {
            CommandResult::Refused(r) => Err(ControlError::Refused {
                status: 409,
                message: r.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Runs the scheduler once, as the leader's control loop does.
    fn schedule(&self) {
        let mut s = self.state.lock().unwrap();
        for c in plan(&s) {
            s.apply(&c);
        }
    }

    fn job(&self, job: u64) -> weir_coordinator::state::Job {
        self.state.lock().unwrap().jobs[&JobId(job)].clone()
    }
}

fn lease(id: &WorkerId) -> Lease {
    Lease {
        worker: id.clone(),
        lease_timeout_ms: 60_000,
        heartbeat_interval_ms: 250,
    }
}

impl ControlPlane for LocalControl {
    async fn register(&self, id: &WorkerId, addr: &str) -> Result<Lease, ControlError> {
        self.answer(Command::RegisterWorker {
            worker: id.clone(),
            addr: addr.into(),
            at_ms: 0,
        })?;
        Ok(lease(id))
    }
    async fn deregister(&self, id: &WorkerId) -> Result<(), ControlError> {
        self.answer(Command::RemoveWorker {
            worker: id.clone(),
            reason: "left".into(),
        })
    }
    async fn heartbeat(&self, id: &WorkerId) -> Result<Lease, ControlError> {
        Ok(lease(id))
    }
    async fn assignments(&self, id: &WorkerId) -> Result<Assignments, ControlError> {
        let s = self.state.lock().unwrap();
        if !s.workers.contains_key(id) {
            return Err(ControlError::UnknownWorker(id.clone()));
        }
        let assignments = s
            .assignments_of(id)
            .into_iter()
            .map(|(job, partition, epoch)| {
                let j = &s.jobs[&job];
                WorkerAssignment {
                    job,
                    partition,
                    epoch,
                    job_version: j.version,
                    spec: j.spec.clone(),
                    committed_checkpoint: j.partitions[&partition].committed.map(|(c, _)| c),
                    pause: j.wants_partition_paused(partition),
                    pause_recorded: j.partitions[&partition].paused,
                    repartitions: j.repartitions.clone(),
                    repartition_generation: j.repartition_generation,
                    keep_offsets: j.pinned_offsets(partition),
                    prune_below: Some(j.partitions[&partition].committed_cut(j.version).offset),
                    restore: j.restore_point_of(&j.partitions[&partition]),
                    join_upstreams: None,
                }
            })
            .collect();
        let unknown_partition_counts = s
            .jobs
            .values()
            .filter(|j| j.partition_count.is_none() && j.state == JobState::Pending)
            .map(|j| {
                (
                    j.id,
                    j.spec["source"]["topic"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let fence = s.fence_duties(id, 32);
        let fence_inputs = fence
            .iter()
            .filter_map(|(job, partition)| s.jobs[job].fence_inputs(&[*partition]).pop())
            .collect();
        Ok(Assignments {
            worker: id.clone(),
            assignments,
            unknown_partition_counts,
            unknown_topic_partition_counts: Vec::new(),
            fence,
            delete_topics: s.topic_deletion_duties(id, 4),
            fence_inputs,
        })
    }
    async fn report_partitions(&self, job: JobId, n: u32) -> Result<(), ControlError> {
        self.answer(Command::SetPartitionCount {
            job,
            partition_count: n,
        })
    }
    async fn report_checkpoints(
        &self,
        id: &WorkerId,
        reports: Vec<CheckpointReport>,
    ) -> Result<CheckpointReportResults, ControlError> {
        match self.apply(Command::Checkpoint {
            worker: id.clone(),
            reports,
            at_ms: 0,
        }) {
            CommandResult::CheckpointResults(results) => Ok(CheckpointReportResults { results }),
            other => panic!("{other:?}"),
        }
    }
    async fn report(&self, id: &WorkerId, report: WorkerReport) -> Result<(), ControlError> {
        self.answer(Command::WorkerReport {
            worker: id.clone(),
            report,
        })
    }
}

fn spec(name: &str, source: &str, sink: &str) -> serde_json::Value {
    let text = format!(
        "name: {name}\nsource: {{ topic: {source}, format: json }}\npipeline:\n  - filter: \"amount >= 10\"\nsink: {{ topic: {sink}, format: json }}\ndead_letter_topic: dlq\ncheckpoint_interval: 1s\n"
    );
    serde_json::to_value(parse_job_spec(text.as_bytes()).unwrap()).unwrap()
}

fn submit(control: &LocalControl, name: &str, source: &str, sink: &str) {
    let r = control.apply(Command::SubmitJob {
        tenant: TenantName::from("t"),
        name: name.into(),
        spec: spec(name, source, sink),
        at_ms: 0,
    });
    assert!(matches!(r, CommandResult::JobSubmitted { .. }), "{r:?}");
}

/// Runs `f` in an actix system on a paused clock (time jumps whenever everything waits).
fn on_paused_clock<F: std::future::Future<Output = ()>>(f: F) {
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    });
    system.block_on(f);
}

/// Steps the scheduler every 250 ms of virtual time until `done` holds, for at most
/// `max`; returns how long it took.
async fn until(control: &LocalControl, max: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = tokio::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < max, "not within {max:?}");
        control.schedule();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    started.elapsed()
}

async fn start_worker(broker: &MemoryBroker, control: &Arc<LocalControl>) {
    let config = SupervisorConfig::new(WorkerId::from("w1"), "w1:0");
    let supervisor = Supervisor::new(
        config,
        broker.clone(),
        MemoryCheckpointStore::new(),
        control.clone(),
        StatusBoard::default(),
    );
    actix::Actor::start(supervisor);
}

fn setup() -> Arc<LocalControl> {
    let control = Arc::new(LocalControl::default());
    control.apply(Command::CreateTenant {
        name: TenantName::from("t"),
        token_hash: "h".into(),
        at_ms: 0,
    });
    control
}

/// A pending job whose source topic does not exist says so in its reason (it showed
/// `pending` with no reason, while the worker logged thousands of warnings a second).
#[test]
fn a_pending_job_whose_source_topic_is_missing_says_why() {
    on_paused_clock(async {
        let broker = MemoryBroker::new();
        let control = setup();
        submit(&control, "nowhere", "payments", "alerts");
        start_worker(&broker, &control).await;
        until(&control, Duration::from_secs(10), || {
            control.job(1).reason.is_some()
        })
        .await;
        let job = control.job(1);
        assert_eq!(job.state, JobState::Pending);
        assert_eq!(
            job.reason.as_deref(),
            Some("source topic payments does not exist")
        );
        // Once the topic exists the job starts and the reason goes.
        broker.create_topic("payments", 1).await.unwrap();
        broker.create_topic("alerts", 1).await.unwrap();
        broker.create_topic("dlq", 1).await.unwrap();
        until(&control, Duration::from_secs(10), || {
            control.job(1).state == JobState::Running
        })
        .await;
        assert_eq!(control.job(1).reason, None);
    });
}

/// A partition that can never progress (its sink topic does not exist) reports why, backs
/// off, and past the failure-rate limit fails its job with the reason, instead of
/// restarting every half second for ever while the job shows `running`.
#[test]
fn a_partition_that_keeps_failing_fails_its_job_with_the_reason() {
    on_paused_clock(async {
        let broker = MemoryBroker::new();
        for t in ["events", "dlq"] {
            broker.create_topic(t, 1).await.unwrap();
        }
        let control = setup();
        submit(&control, "doomed", "events", "missing-sink");
        start_worker(&broker, &control).await;
        until(&control, Duration::from_secs(30), || {
            control
                .job(1)
                .partitions
                .get(&PartitionId(0))
                .is_some_and(|p| p.problem.is_some())
        })
        .await;
        let job = control.job(1);
        assert_eq!(job.state, JobState::Running);
        let problem = job.partitions[&PartitionId(0)].problem.clone().unwrap();
        assert!(problem.contains("missing-sink"), "{problem}");
        let took = until(&control, Duration::from_secs(600), || {
            control.job(1).state == JobState::Failed
        })
        .await;
        // Backed off: ten failures took minutes, not five seconds.
        assert!(took > Duration::from_secs(60), "{took:?}");
        let reason = control.job(1).reason.unwrap();
        assert!(reason.contains("missing-sink"), "{reason}");
    });
}

/// A cancelled job whose owner is gone with a transaction open: a live worker fences its
/// transactional id, so the other writers' committed records become visible at once
/// instead of after the broker's transaction timeout, and only then is the job cancelled.
#[test]
fn a_cancelled_jobs_open_transaction_is_fenced_by_a_live_worker() {
    on_paused_clock(async {
        let broker = MemoryBroker::new();
        for t in ["events", "alerts", "dlq"] {
            broker.create_topic(t, 1).await.unwrap();
        }
        let control = setup();
        submit(&control, "wedged", "events", "alerts");
        control.apply(Command::RegisterWorker {
            worker: WorkerId::from("w-gone"),
            addr: String::new(),
            at_ms: 0,
        });
        control.apply(Command::SetPartitionCount {
            job: JobId(1),
            partition_count: 1,
        });
        let placed = control.apply(Command::Place {
            moves: vec![Move {
                job: JobId(1),
                partition: PartitionId(0),
                worker: Some(WorkerId::from("w-gone")),
                epoch: Epoch(1),
            }],
        });
        assert_eq!(placed, CommandResult::Done);
        // The owner wrote into a transaction and then wedged.
        let mut wedged = broker.writer("weir-1-0").await.unwrap();
        wedged.begin().unwrap();
        wedged
            .send(OutgoingRecord {
                topic: "alerts".into(),
                partition: Some(0),
                key: None,
                value: b"{\"uncommitted\":1}".to_vec(),
                timestamp_ms: None,
            })
            .await
            .unwrap();
        // Another writer (another job) commits after it: held back by the open transaction.
        let mut other = broker.writer("weir-2-0").await.unwrap();
        other.begin().unwrap();
        other
            .send(OutgoingRecord {
                topic: "alerts".into(),
                partition: Some(0),
                key: None,
                value: b"{\"other\":1}".to_vec(),
                timestamp_ms: None,
            })
            .await
            .unwrap();
        other.commit("g", &[] as &[SourceOffset]).await.unwrap();
        assert!(broker
            .read_committed("alerts", 0, 0, 10)
            .await
            .unwrap()
            .is_empty());
        // A live worker registers; the job is cancelled and its owner's lease runs out.
        start_worker(&broker, &control).await;
        until(&control, Duration::from_secs(5), || {
            control
                .state
                .lock()
                .unwrap()
                .workers
                .contains_key(&WorkerId::from("w1"))
        })
        .await;
        control.apply(Command::CancelJob {
            job: JobId(1),
            tenant: None,
        });
        control.apply(Command::RemoveWorker {
            worker: WorkerId::from("w-gone"),
            reason: "lease expired".into(),
        });
        let took = until(&control, Duration::from_secs(10), || {
            control.job(1).state == JobState::Cancelled
        })
        .await;
        assert!(took < Duration::from_secs(5), "{took:?}");
        let visible = broker.read_committed("alerts", 0, 0, 10).await.unwrap();
        assert_eq!(visible.len(), 1, "the other job's output is visible");
        assert_eq!(visible[0].value.as_deref(), Some(&b"{\"other\":1}"[..]));
        assert!(broker.faults().open_transactions().is_empty());
    });
}

/// A stopped job's owner committed in Kafka and vanished before its "committed" report
/// reached the group: the live worker that fences the partition reads the job's commit
/// point and reports it, so the group records the commit (and a savepoint of the stop
/// pins it) instead of the checkpoint before (simulation seed 193). With
/// `fence-forgets-commit-point` planted the record stays behind.
async fn a_lost_commit_report_as_the_fencer_settles_it() -> Option<(CheckpointId, i64)> {
    let broker = MemoryBroker::new();
    for t in ["events", "alerts", "dlq"] {
        broker.create_topic(t, 1).await.unwrap();
    }
    let control = setup();
    submit(&control, "lost", "events", "alerts");
    control.apply(Command::RegisterWorker {
        worker: WorkerId::from("w-gone"),
        addr: String::new(),
        at_ms: 0,
    });
    control.apply(Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 1,
    });
    let placed = control.apply(Command::Place {
        moves: vec![Move {
            job: JobId(1),
            partition: PartitionId(0),
            worker: Some(WorkerId::from("w-gone")),
            epoch: Epoch(1),
        }],
    });
    assert_eq!(placed, CommandResult::Done);
    // The owner prepares checkpoint 1 at offset 3 and commits it in Kafka with the
    // group's offset; its "committed" report never arrives.
    let prepared = control.apply(Command::Checkpoint {
        worker: WorkerId::from("w-gone"),
        reports: vec![CheckpointReport {
            job: JobId(1),
            partition: PartitionId(0),
            epoch: Epoch(1),
            checkpoint: CheckpointId(1),
            phase: CheckpointPhase::Prepared,
            offset: 3,
            snapshot: "s1".into(),
        }],
        at_ms: 0,
    });
    assert_eq!(prepared, CommandResult::CheckpointResults(vec![Ok(())]));
    let mut owner = broker.writer("weir-1-0").await.unwrap();
    owner.begin().unwrap();
    let offsets = [SourceOffset {
        topic: "events".into(),
        partition: 0,
        next_offset: 3,
    }];
    owner.commit("weir-job-1", &offsets).await.unwrap();
    // A live worker registers; the job stops; the owner's lease runs out, and the live
    // worker fences the partition.
    start_worker(&broker, &control).await;
    until(&control, Duration::from_secs(5), || {
        control
            .state
            .lock()
            .unwrap()
            .workers
            .contains_key(&WorkerId::from("w1"))
    })
    .await;
    control.apply(Command::ChangeJobState {
        job: JobId(1),
        tenant: None,
        request: weir_coordinator::state::lifecycle::JobRequest::Stop,
    });
    control.apply(Command::RemoveWorker {
        worker: WorkerId::from("w-gone"),
        reason: "lease expired".into(),
    });
    until(&control, Duration::from_secs(10), || {
        control.job(1).state == JobState::Stopped
    })
    .await;
    assert!(control.job(1).partitions[&PartitionId(0)].fenced);
    control.job(1).partitions[&PartitionId(0)].committed
}

#[test]
fn a_stopped_jobs_lost_commit_report_is_settled_by_the_fencer() {
    on_paused_clock(async {
        let committed = a_lost_commit_report_as_the_fencer_settles_it().await;
        assert_eq!(committed, Some((CheckpointId(1), 3)));
    });
}

#[cfg(feature = "planted-bugs")]
#[test]
fn a_fencer_that_forgets_the_commit_point_is_caught() {
    use weir_core::bugs::{plant, PlantedBug};
    on_paused_clock(async {
        plant(Some(PlantedBug::FenceForgetsCommitPoint));
        let committed = a_lost_commit_report_as_the_fencer_settles_it().await;
        plant(None);
        assert_eq!(committed, None, "the planted bug went unnoticed");
    });
}

/// A job that repartitions runs both its stages under a real supervisor (the repartition
/// topic created by its tasks, events counted per card across the source's partitions),
/// and once it is cancelled a worker deletes the topic, so no cancelled job leaves one
/// behind.
#[test]
fn a_job_that_repartitions_runs_both_stages_and_its_topic_goes_with_it() {
    on_paused_clock(async {
        let broker = MemoryBroker::new();
        broker.create_topic("payments", 2).await.unwrap();
        for t in ["alerts", "dlq"] {
            broker.create_topic(t, 1).await.unwrap();
        }
        let control = setup();
        let text = "name: per-card\nsource: { topic: payments, format: json, event_time: ts }\n\
                    pipeline:\n  - key_by: \"card\"\n  - window: { tumbling: 10s }\n  \
                    - aggregate: { n: \"count()\" }\n\
                    sink: { topic: alerts, format: json }\ndead_letter_topic: dlq\n\
                    checkpoint_interval: 1s\n";
        let r = control.apply(Command::SubmitJob {
            tenant: TenantName::from("t"),
            name: "per-card".into(),
            spec: serde_json::to_value(parse_job_spec(text.as_bytes()).unwrap()).unwrap(),
            at_ms: 0,
        });
        assert!(matches!(r, CommandResult::JobSubmitted { .. }), "{r:?}");
        // Card c1's events on both partitions: one window of 4, once the closing events
        // (ts 60 s, one per partition) move both partitions' watermarks past it.
        let mut producer = broker.writer("producer").await.unwrap();
        producer.begin().unwrap();
        for (partition, ts) in [
            (0, 1_000),
            (1, 2_000),
            (0, 3_000),
            (1, 4_000),
            (0, 60_000),
            (1, 60_000),
        ] {
            let card = if ts == 60_000 { "close" } else { "c1" };
            producer
                .send(OutgoingRecord {
                    topic: "payments".into(),
                    partition: Some(partition),
                    key: None,
                    value: format!(r#"{{"card":"{card}","ts":{ts}}}"#).into_bytes(),
                    timestamp_ms: None,
                })
                .await
                .unwrap();
        }
        producer
            .commit("producer", &[] as &[SourceOffset])
            .await
            .unwrap();
        start_worker(&broker, &control).await;
        until(&control, Duration::from_secs(60), || {
            control.job(1).state == JobState::Running
        })
        .await;
        let mut alerts = Vec::new();
        for _ in 0..240 {
            alerts = broker.read_committed("alerts", 0, 0, 100).await.unwrap();
            if !alerts.is_empty() {
                break;
            }
            control.schedule();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let values: Vec<String> = alerts
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
            .collect();
        assert_eq!(
            values,
            [r#"{"key":"c1","window_start":0,"window_end":10000,"n":4}"#],
            "one count over both partitions"
        );
        assert_eq!(control.job(1).partitions.len(), 4, "two tasks per stage");
        assert_eq!(
            broker
                .partition_count("weir-job-1-repartition-1")
                .await
                .unwrap(),
            2
        );
        control.apply(Command::CancelJob {
            job: JobId(1),
            tenant: None,
        });
        until(&control, Duration::from_secs(60), || {
            control.job(1).topics_deleted
        })
        .await;
        assert_eq!(control.job(1).state, JobState::Cancelled);
        assert!(broker
            .partition_count("weir-job-1-repartition-1")
            .await
            .is_err());
    });
}
