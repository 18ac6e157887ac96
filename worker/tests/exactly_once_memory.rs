//! The exactly-once protocol against the in-memory Kafka model and the real control state
//! machine: a run with a crash, a reassignment and a zombie must commit exactly the outputs
//! of a failure-free run.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use weir_broker::memory::MemoryBroker;
use weir_broker::{Broker, OutgoingRecord, SourceOffset, TransactionalWriter};
use weir_coordinator::state::{Command, CommandResult, Move};
use weir_core::ids::{Epoch, JobId, PartitionId, TenantName, WorkerId};
use weir_core::spec::{parse_job_spec, JobSpec};
use weir_core::wire::CheckpointReport;
use weir_worker::checkpoint_store::{CheckpointStore, MemoryCheckpointStore};
use weir_worker::control::ControlPlane;
use weir_worker::exactly_once::{
    PartitionConfig, PartitionError, PartitionRunner, PrunePins, SharedPins,
};

mod common;
use common::LocalControl;

const WINDOWED: &str = r#"
name: velocity
source: { topic: payments, format: json, event_time: ts }
pipeline:
  - filter: "amount > 0"
  - key_by: "card"
  - window: { tumbling: 10s }
  - aggregate: { n: "count()", total: "sum(amount)" }
sink: { topic: alerts, format: json }
dead_letter_topic: dlq
checkpoint_interval: 1s
"#;

const STATELESS: &str = r#"
name: copy
source: { topic: payments, format: json }
pipeline:
  - filter: "amount >= 10"
  - map: { card: "card", cents: "amount * 100" }
sink: { topic: alerts, format: json }
dead_letter_topic: dlq
checkpoint_interval: 1s
"#;

fn events(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            if i % 97 == 13 {
                return b"{not json".to_vec();
            }
            let card = i % 7;
            let ts = (i as i64) * 700; // 0.7 s apart: many windows close along the way
            let amount = (i % 23) as i64 - 2;
            format!(r#"{{"card":"c{card}","amount":{amount},"ts":{ts}}}"#).into_bytes()
        })
        .collect()
}

async fn setup(spec_text: &str, inputs: &[Vec<u8>]) -> (MemoryBroker, JobSpec, Arc<LocalControl>) {
    let spec = parse_job_spec(spec_text.as_bytes()).unwrap();
    let broker = MemoryBroker::new();
    for t in ["payments", "alerts", "dlq"] {
        broker.create_topic(t, 1).await.unwrap();
    }
    let mut w = broker.writer("producer").await.unwrap();
    w.begin().unwrap();
    for v in inputs {
        w.send(OutgoingRecord {
            topic: "payments".into(),
            partition: Some(0),
            key: None,
            value: v.clone(),
            timestamp_ms: Some(0),
        })
        .await
        .unwrap();
    }
    w.commit("unused", &[] as &[SourceOffset]).await.unwrap();
    let control = Arc::new(LocalControl::default());
    control.apply(Command::CreateTenant {
        name: TenantName::from("t"),
        token_hash: "h".into(),
        at_ms: 0,
    });
    control.apply(Command::SubmitJob {
        tenant: "t".into(),
        name: spec.name.clone(),
        spec: serde_json::json!({}),
        at_ms: 0,
    });
    for w in ["w1", "w2"] {
        control.apply(Command::RegisterWorker {
            worker: WorkerId::from(w),
            addr: String::new(),
            at_ms: 0,
        });
    }
    control.apply(Command::SetPartitionCount {
        job: JobId(1),
        partition_count: 1,
    });
    (broker, spec, control)
}

fn place(control: &LocalControl, worker: &str, epoch: u64) {
    let r = control.apply(Command::Place {
        moves: vec![Move {
            job: JobId(1),
            partition: PartitionId(0),
            worker: Some(WorkerId::from(worker)),
            epoch: Epoch(epoch),
        }],
    });
    assert_eq!(r, CommandResult::Done);
}

fn config(spec: &JobSpec, worker: &str, epoch: u64) -> PartitionConfig {
    PartitionConfig {
        worker: WorkerId::from(worker),
        job: JobId(1),
        partition: PartitionId(0),
        epoch: Epoch(epoch),
        spec: spec.clone(),
        poll_batch_records: 50,
        committed_checkpoint: None,
        repartitions: Vec::new(),
        repartition_generation: 0,
        restore: None,
        pins: None,
        join_upstreams: None,
    }
}

/// Recovers the partition for `worker` at `epoch`, reading and writing `store`.
async fn runner<S: CheckpointStore>(
    broker: &MemoryBroker,
    spec: &JobSpec,
    control: &Arc<LocalControl>,
    store: S,
    worker: &str,
    epoch: u64,
    now: u64,
) -> PartitionRunner<MemoryBroker, S, LocalControl> {
    PartitionRunner::recover(
        config(spec, worker, epoch),
        broker,
        store,
        control.clone(),
        now,
    )
    .await
    .unwrap()
}

async fn committed(broker: &MemoryBroker, topic: &str) -> Vec<String> {
    let mut out: Vec<String> = broker
        .read_committed(topic, 0, 0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap())
        .collect();
    out.sort();
    out
}

/// Runs steps until the input is consumed, advancing time by 300 ms a step.
async fn drain<S: CheckpointStore>(
    runner: &mut PartitionRunner<MemoryBroker, S, LocalControl>,
    now_ms: &mut u64,
    until_offset: i64,
) -> Result<(), PartitionError> {
    for _ in 0..10_000 {
        if runner.next_offset() >= until_offset {
            return Ok(());
        }
        *now_ms += 300;
        runner.step(*now_ms).await?;
    }
    panic!("did not reach offset {until_offset}");
}

async fn failure_free(spec_text: &str, inputs: &[Vec<u8>]) -> (Vec<String>, Vec<String>) {
    let (broker, spec, control) = setup(spec_text, inputs).await;
    place(&control, "w1", 1);
    let store = MemoryCheckpointStore::new();
    let mut now = 0;
    let mut r = runner(&broker, &spec, &control, store, "w1", 1, now).await;
    drain(&mut r, &mut now, inputs.len() as i64).await.unwrap();
    r.checkpoint(now + 10_000).await.unwrap();
    (
        committed(&broker, "alerts").await,
        committed(&broker, "dlq").await,
    )
}

async fn with_crash_reassignment_and_zombie(
    spec_text: &str,
    inputs: &[Vec<u8>],
) -> (Vec<String>, Vec<String>) {
    let (broker, spec, control) = setup(spec_text, inputs).await;
    let store = MemoryCheckpointStore::new();
    let mut now = 0;
    place(&control, "w1", 1);
    // w1 processes a third, checkpointing along the way, then crashes with a transaction open.
    let mut a = runner(&broker, &spec, &control, store.clone(), "w1", 1, now).await;
    drain(&mut a, &mut now, inputs.len() as i64 / 3)
        .await
        .unwrap();
    assert!(
        a.counters().checkpoints > 0,
        "{:?} at {} now {now}",
        a.counters(),
        a.next_offset()
    );
    drop(a);
    // w1 restarts on the same assignment (same epoch) and gets another third in.
    let mut a = runner(&broker, &spec, &control, store.clone(), "w1", 1, now).await;
    drain(&mut a, &mut now, 2 * inputs.len() as i64 / 3)
        .await
        .unwrap();
    // The partition moves to w2 (epoch 2) while w1 is still running: w1 is now a zombie.
    place(&control, "w2", 2);
    let mut b = runner(&broker, &spec, &control, store.clone(), "w2", 2, now).await;
    let zombie = async {
        for _ in 0..50 {
            now += 300;
            if let Err(e) = a.step(now).await {
                return e;
            }
        }
        panic!("the zombie was never fenced");
    };
    assert!(matches!(zombie.await, PartitionError::Fenced(_)));
    drain(&mut b, &mut now, inputs.len() as i64).await.unwrap();
    b.checkpoint(now + 10_000).await.unwrap();
    (
        committed(&broker, "alerts").await,
        committed(&broker, "dlq").await,
    )
}

#[tokio::test]
async fn a_windowed_job_commits_each_result_once_through_crash_reassignment_and_zombie() {
    let inputs = events(3_000);
    let expected = failure_free(WINDOWED, &inputs).await;
    assert!(expected.0.len() > 100, "the job should emit many windows");
    assert!(
        !expected.1.is_empty(),
        "bad records reach the dead-letter topic"
    );
    let actual = with_crash_reassignment_and_zombie(WINDOWED, &inputs).await;
    assert_eq!(actual.0.len(), expected.0.len());
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn a_stateless_job_commits_each_result_once_through_crash_reassignment_and_zombie() {
    let inputs = events(3_000);
    let expected = failure_free(STATELESS, &inputs).await;
    assert!(expected.0.len() > 1_000);
    let actual = with_crash_reassignment_and_zombie(STATELESS, &inputs).await;
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn a_restart_on_the_same_machine_recovers_from_the_local_copy_alone() {
    use weir_worker::checkpoint_store::LocalFirst;
    let inputs = events(3_000);
    let expected = failure_free(WINDOWED, &inputs).await;
    let (broker, spec, control) = setup(WINDOWED, &inputs).await;
    place(&control, "w1", 1);
    let disk = tempfile::tempdir().unwrap();
    let store = LocalFirst::open(disk.path(), MemoryCheckpointStore::new()).unwrap();
    let mut now = 0;
    let mut a = runner(&broker, &spec, &control, store, "w1", 1, now).await;
    drain(&mut a, &mut now, inputs.len() as i64 / 2)
        .await
        .unwrap();
    assert!(a.counters().checkpoints > 1, "{:?}", a.counters());
    // A crash with a transaction open; the restarted worker's checkpoint store has lost
    // every snapshot, so only the local copy (kept from changes) can restore the state.
    drop(a);
    let store = LocalFirst::open(disk.path(), MemoryCheckpointStore::new()).unwrap();
    let mut a = runner(&broker, &spec, &control, store, "w1", 1, now).await;
    drain(&mut a, &mut now, inputs.len() as i64).await.unwrap();
    a.checkpoint(now + 10_000).await.unwrap();
    let actual = (
        committed(&broker, "alerts").await,
        committed(&broker, "dlq").await,
    );
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn a_recovered_runner_commits_right_after_its_first_batch() {
    let inputs = events(500);
    let (broker, spec, control) = setup(STATELESS, &inputs).await;
    place(&control, "w1", 1);
    let interval_ms = spec.checkpoint_interval.as_millis();
    assert!(
        interval_ms >= 100,
        "the test needs steps well inside one interval"
    );
    let mut r = runner(
        &broker,
        &spec,
        &control,
        MemoryCheckpointStore::new(),
        "w1",
        1,
        0,
    )
    .await;
    let mut now = 0;
    while r.counters().records_in == 0 {
        now += 1;
        assert!(now < interval_ms / 2, "no batch arrived");
        r.step(now).await.unwrap();
    }
    assert_eq!(
        r.counters().checkpoints,
        1,
        "committed with the first batch"
    );
    assert!(!committed(&broker, "alerts").await.is_empty());
    // Later batches wait for the interval.
    r.step(now + 1).await.unwrap();
    assert_eq!(r.counters().checkpoints, 1);
}

#[tokio::test]
async fn checkpoint_ids_start_above_what_the_group_recorded_as_committed() {
    use weir_core::ids::CheckpointId;
    use weir_core::wire::CheckpointPhase;
    let inputs = events(600);
    let (broker, spec, control) = setup(STATELESS, &inputs).await;
    place(&control, "w1", 1);
    let store = MemoryCheckpointStore::new();
    let mut now = 0;
    let mut a = runner(&broker, &spec, &control, store.clone(), "w1", 1, now).await;
    drain(&mut a, &mut now, inputs.len() as i64 / 2)
        .await
        .unwrap();
    drop(a);
    // The group has recorded a newer committed checkpoint than the snapshot holds (a
    // snapshot a fenced owner rewrote at the same offset, or a local copy that kept an
    // older id): a restarted runner must not reuse ids at or below it.
    let recorded = CheckpointId(50);
    for phase in [CheckpointPhase::Prepared, CheckpointPhase::Committed] {
        let report = CheckpointReport {
            job: JobId(1),
            partition: PartitionId(0),
            epoch: Epoch(1),
            checkpoint: recorded,
            phase,
            offset: 1,
            snapshot: "elsewhere".into(),
        };
        let results = control
            .report_checkpoints(&WorkerId::from("w1"), vec![report])
            .await
            .unwrap();
        assert_eq!(results.results, vec![Ok(())]);
    }
    // Not knowing the recorded id, its first checkpoint is refused as not newer: a
    // refusal, not fencing (the partition backs off and counts it toward failing).
    let mut blind = runner(&broker, &spec, &control, store.clone(), "w1", 1, now).await;
    let refused = drain(&mut blind, &mut now, inputs.len() as i64).await;
    assert!(
        matches!(
            refused,
            Err(PartitionError::Refused(
                weir_core::wire::CheckpointRefusal::NotNewer { .. }
            ))
        ),
        "{refused:?}"
    );
    drop(blind);
    // Told it, as the assignment does, it goes on above it.
    let mut told = config(&spec, "w1", 1);
    told.committed_checkpoint = Some(recorded);
    let mut b = PartitionRunner::recover(told, &broker, store, control.clone(), now)
        .await
        .unwrap();
    drain(&mut b, &mut now, inputs.len() as i64).await.unwrap();
    b.checkpoint(now + 10_000).await.unwrap();
    assert!(b.counters().checkpoints >= 1);
}

#[tokio::test]
async fn a_prepared_record_answered_with_no_result_is_not_taken_as_accepted() {
    let inputs = events(200);
    let (broker, spec, control) = setup(STATELESS, &inputs).await;
    place(&control, "w1", 1);
    control.answer_nothing.store(true, Ordering::Relaxed);
    let mut r = runner(
        &broker,
        &spec,
        &control,
        MemoryCheckpointStore::new(),
        "w1",
        1,
        0,
    )
    .await;
    let mut now = 0;
    let ended = drain(&mut r, &mut now, inputs.len() as i64).await;
    assert!(
        matches!(
            ended,
            Err(PartitionError::Refused(
                weir_core::wire::CheckpointRefusal::NotAnsweredOnce
            ))
        ),
        "{ended:?}"
    );
    assert!(
        committed(&broker, "alerts").await.is_empty(),
        "nothing committed"
    );
}

/// A newer coordinator's refusal: a kind this worker does not know, or a known kind with
/// fields it cannot read. Either stops the partition with an error saying so: not taken for
/// fencing (which would stop it quietly), not for an unanswered call (which would postpone
/// the checkpoint and retry it forever), and counted toward failing the job.
#[tokio::test]
async fn a_refusal_this_worker_cannot_read_stops_the_partition_with_a_clear_error() {
    for body in [
        r#"{"results": [{"Err": {"refusal": "quota_exceeded", "limit": 3}}]}"#,
        r#"{"results": [{"Err": {"refusal": "stale_epoch", "got": "1", "current": "2"}}]}"#,
    ] {
        let inputs = events(200);
        let (broker, spec, control) = setup(STATELESS, &inputs).await;
        place(&control, "w1", 1);
        *control.answer_body.lock().unwrap() = Some(body.into());
        let mut r = runner(
            &broker,
            &spec,
            &control,
            MemoryCheckpointStore::new(),
            "w1",
            1,
            0,
        )
        .await;
        let mut now = 0;
        let ended = drain(&mut r, &mut now, inputs.len() as i64).await;
        let Err(err) = ended else {
            panic!("{body}: the partition went on");
        };
        assert!(
            matches!(
                err,
                PartitionError::Refused(weir_core::wire::CheckpointRefusal::Unknown)
            ),
            "{body}: {err:?}"
        );
        assert!(err.counts_toward_failing_the_job(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("cannot read") && message.contains("newer coordinator"),
            "{message}"
        );
        assert!(
            committed(&broker, "alerts").await.is_empty(),
            "nothing committed"
        );
    }
}

#[tokio::test]
async fn an_idle_partition_commits_its_offset_again_before_kafka_forgets_it() {
    use weir_worker::exactly_once::OFFSETS_REFRESH_INTERVAL_MS;
    let inputs = events(300);
    let (broker, spec, control) = setup(STATELESS, &inputs).await;
    place(&control, "w1", 1);
    let mut now = 0;
    let mut r = runner(
        &broker,
        &spec,
        &control,
        MemoryCheckpointStore::new(),
        "w1",
        1,
        now,
    )
    .await;
    drain(&mut r, &mut now, inputs.len() as i64).await.unwrap();
    now += 10_000;
    r.checkpoint(now).await.unwrap();
    let outputs = committed(&broker, "alerts").await;
    let group = config(&spec, "w1", 1).group();
    let end = Some(inputs.len() as i64);
    assert_eq!(
        broker
            .committed_offset(&group, "payments", 0)
            .await
            .unwrap(),
        end
    );
    // Kafka deletes the offsets of a group that has not committed for a long while.
    assert_eq!(broker.faults().expire_group_offsets(&group), 1);
    r.step(now + 60_000).await.unwrap();
    assert_eq!(
        broker
            .committed_offset(&group, "payments", 0)
            .await
            .unwrap(),
        None,
        "an hour has not passed"
    );
    r.step(now + OFFSETS_REFRESH_INTERVAL_MS).await.unwrap();
    assert_eq!(
        broker
            .committed_offset(&group, "payments", 0)
            .await
            .unwrap(),
        end,
        "committed again, unchanged"
    );
    assert_eq!(committed(&broker, "alerts").await, outputs, "nothing new");
    // Were the offsets gone when a runner recovers, it must not start from offset 0.
    drop(r);
    broker.faults().expire_group_offsets(&group);
    let mut told = config(&spec, "w1", 1);
    told.committed_checkpoint = Some(weir_core::ids::CheckpointId(1));
    let refused = PartitionRunner::recover(
        told,
        &broker,
        MemoryCheckpointStore::new(),
        control.clone(),
        now,
    )
    .await;
    assert!(
        matches!(refused, Err(PartitionError::CommittedOffsetLost { .. })),
        "{refused:?}"
    );
}

/// A record within Kafka's limits whose dead letter is not (the base64 of 800 KB of
/// binary is 1.07 MB): it must become a cut-down dead letter, and the records after it
/// must flow. It failed the partition at every retry, for ever.
#[tokio::test]
async fn an_undecodable_record_near_the_size_limit_becomes_a_dead_letter_that_fits() {
    let poison: Vec<u8> = (0..800_000u32).map(|i| (i % 127) as u8 | 0x80).collect();
    let mut inputs = events(50);
    inputs.insert(10, poison.clone());
    let (broker, spec, control) = setup(STATELESS, &inputs).await;
    place(&control, "w1", 1);
    let mut now = 0;
    let mut r = runner(
        &broker,
        &spec,
        &control,
        MemoryCheckpointStore::new(),
        "w1",
        1,
        now,
    )
    .await;
    drain(&mut r, &mut now, inputs.len() as i64).await.unwrap();
    r.checkpoint(now + 10_000).await.unwrap();
    let letters = broker.read_committed("dlq", 0, 0, 1_000).await.unwrap();
    let big: Vec<serde_json::Value> = letters
        .iter()
        .filter_map(|l| serde_json::from_slice(l.value.as_deref().unwrap()).ok())
        .filter(|v: &serde_json::Value| v["offset"] == 10)
        .collect();
    assert_eq!(big.len(), 1, "one dead letter for the poison record");
    assert_eq!(big[0]["reason"], "undecodable");
    assert_eq!(big[0]["truncated"], true);
    assert_eq!(big[0]["original_bytes"], 800_000);
    assert!(big[0]["payload_base64"].as_str().unwrap().len() > 900_000);
    let (expected_out, _) = failure_free(STATELESS, &events(50)).await;
    assert_eq!(committed(&broker, "alerts").await, expected_out);
}

/// A result larger than the sink topic accepts is dead-lettered `output_too_large`, with
/// the coordinates of the record it came from, instead of failing the partition.
#[tokio::test]
async fn an_output_too_large_for_the_sink_is_dead_lettered() {
    let huge = format!(r#"{{"card":"{}","amount":50}}"#, "x".repeat(200_000));
    let mut inputs = events(20);
    inputs.insert(5, huge.into_bytes());
    let (broker, spec, control) = setup(STATELESS, &inputs).await;
    broker.set_max_message_bytes("alerts", 100_000);
    place(&control, "w1", 1);
    let mut now = 0;
    let mut r = runner(
        &broker,
        &spec,
        &control,
        MemoryCheckpointStore::new(),
        "w1",
        1,
        now,
    )
    .await;
    drain(&mut r, &mut now, inputs.len() as i64).await.unwrap();
    r.checkpoint(now + 10_000).await.unwrap();
    let letters: Vec<serde_json::Value> = committed(&broker, "dlq")
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["reason"] == "output_too_large")
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["offset"], 5);
    assert!(letters[0]["payload"].as_str().unwrap().contains("xxxx"));
    let (expected_out, _) = failure_free(STATELESS, &events(20)).await;
    assert_eq!(committed(&broker, "alerts").await, expected_out);
}

/// A redb disk whose fsync waits, while its gate is closed, until the test opens it.
#[derive(Debug)]
struct GatedDisk {
    inner: redb::backends::InMemoryBackend,
    gate: Arc<DiskGate>,
}

#[derive(Debug, Default)]
struct DiskGate {
    closed: AtomicBool,
    /// True while an fsync is waiting at the closed gate.
    waiting: AtomicBool,
    open: Mutex<bool>,
    opened: std::sync::Condvar,
}

impl DiskGate {
    fn close(&self) {
        *self.open.lock().unwrap() = false;
        self.closed.store(true, Ordering::SeqCst);
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
    /// Holds the first fsync after `close` until `open`, or at most 30 s, so a store that
    /// blocked its caller's thread fails the test instead of hanging it.
    fn pass(&self) {
        if !self.closed.swap(false, Ordering::SeqCst) {
            return;
        }
        self.waiting.store(true, Ordering::SeqCst);
        let open = self.open.lock().unwrap();
        let _ = self
            .opened
            .wait_timeout_while(open, std::time::Duration::from_secs(30), |open| !*open)
            .unwrap();
        self.waiting.store(false, Ordering::SeqCst);
    }
}

impl redb::StorageBackend for GatedDisk {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.gate.pass();
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.inner.write(offset, data)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_local_disk_stalls_only_its_own_partition() {
    use weir_worker::checkpoint_store::{LocalFirst, Offload};
    // Two partitions on one thread (an actor thread is a single-threaded runtime); A's
    // local copy waits on its fsync. B keeps processing meanwhile, and A waits at its open
    // checkpoint: it processes nothing past it.
    let inputs = events(2_000);
    let (broker_a, spec, control_a) = setup(WINDOWED, &inputs).await;
    let (broker_b, _, control_b) = setup(WINDOWED, &inputs).await;
    place(&control_a, "w1", 1);
    place(&control_b, "w1", 1);
    let gate = Arc::new(DiskGate::default());
    let disk = GatedDisk {
        inner: redb::backends::InMemoryBackend::new(),
        gate: gate.clone(),
    };
    let store_a = LocalFirst::with_backend(disk, MemoryCheckpointStore::new())
        .unwrap()
        .with_offload(Offload::blocking_pool());
    let mut a = runner(&broker_a, &spec, &control_a, store_a, "w1", 1, 0).await;
    let mut b = runner(
        &broker_b,
        &spec,
        &control_b,
        MemoryCheckpointStore::new(),
        "w1",
        1,
        0,
    )
    .await;
    gate.close();
    let a_offset = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let run_a = {
        let a_offset = a_offset.clone();
        async move {
            let mut now = 0;
            // The first batch makes the first checkpoint due at once: it waits on the disk.
            while a.next_offset() < inputs.len() as i64 {
                now += 300;
                a.step(now).await.unwrap();
                a_offset.store(a.next_offset(), Ordering::SeqCst);
            }
            a
        }
    };
    let run_b = async {
        for _ in 0..1_000 {
            if gate.waiting.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            gate.waiting.load(Ordering::SeqCst),
            "B ran only when A's fsync was not held (the store blocked the thread)"
        );
        let held_at = a_offset.load(Ordering::SeqCst);
        let mut now = 0;
        drain(&mut b, &mut now, 2_000).await.unwrap();
        assert!(
            gate.waiting.load(Ordering::SeqCst),
            "A's fsync was let go before B finished"
        );
        assert_eq!(
            a_offset.load(Ordering::SeqCst),
            held_at,
            "A processed past its open checkpoint"
        );
        gate.open();
        b
    };
    let (mut a, mut b) = tokio::join!(run_a, run_b);
    assert_eq!(a.next_offset(), 2_000);
    assert_eq!(b.next_offset(), 2_000);
    a.checkpoint(1_000_000).await.unwrap();
    b.checkpoint(1_000_000).await.unwrap();
    assert_eq!(
        committed(&broker_a, "alerts").await,
        committed(&broker_b, "alerts").await
    );
}

/// Pauses mid-input (and once a runner that recovers while paused), steps while paused,
/// resumes: the committed outputs are those of a run without pauses.
async fn with_pauses(spec_text: &str, inputs: &[Vec<u8>]) -> (Vec<String>, Vec<String>) {
    let (broker, spec, control) = setup(spec_text, inputs).await;
    let store = MemoryCheckpointStore::new();
    let mut now = 0;
    place(&control, "w1", 1);
    let mut a = runner(&broker, &spec, &control, store.clone(), "w1", 1, now).await;
    drain(&mut a, &mut now, inputs.len() as i64 / 3)
        .await
        .unwrap();
    // The pause commits at once what was processed, whatever the interval says.
    let at_pause = a.next_offset();
    assert!(a.pause(now + 1).await.unwrap(), "paused at once");
    let visible = committed(&broker, "alerts").await;
    for _ in 0..20 {
        now += 300;
        assert_eq!(
            a.step(now).await.unwrap(),
            0,
            "nothing is read while paused"
        );
    }
    assert_eq!(a.next_offset(), at_pause);
    assert_eq!(
        committed(&broker, "alerts").await,
        visible,
        "no output while paused"
    );
    a.resume(now).await.unwrap();
    drain(&mut a, &mut now, 2 * inputs.len() as i64 / 3)
        .await
        .unwrap();
    // Paused again, then the worker crashes: the next runner recovers at the pause's
    // commit point, pauses at once with nothing to commit, and resumes from there.
    assert!(a.pause(now + 1).await.unwrap());
    let at_second_pause = a.next_offset();
    drop(a);
    let mut b = runner(&broker, &spec, &control, store.clone(), "w1", 1, now).await;
    assert_eq!(b.next_offset(), at_second_pause, "the pause's commit point");
    assert!(b.pause(now + 2).await.unwrap());
    b.resume(now + 3).await.unwrap();
    drain(&mut b, &mut now, inputs.len() as i64).await.unwrap();
    b.checkpoint(now + 10_000).await.unwrap();
    (
        committed(&broker, "alerts").await,
        committed(&broker, "dlq").await,
    )
}

#[tokio::test]
async fn a_paused_and_resumed_windowed_job_commits_each_result_once() {
    let inputs = events(3_000);
    let expected = failure_free(WINDOWED, &inputs).await;
    let actual = with_pauses(WINDOWED, &inputs).await;
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn a_paused_and_resumed_stateless_job_commits_each_result_once() {
    let inputs = events(3_000);
    let expected = failure_free(STATELESS, &inputs).await;
    let actual = with_pauses(STATELESS, &inputs).await;
    assert_eq!(actual, expected);
}

/// What the group tells the partition's owner: its config with the restore point and
/// the checkpoint floor, and the pins pruning must keep.
fn config_from_group(
    control: &LocalControl,
    spec: &JobSpec,
    worker: &str,
    pins: &SharedPins,
) -> PartitionConfig {
    let s = control.state.lock().unwrap();
    let job = &s.jobs[&JobId(1)];
    let p = &job.partitions[&PartitionId(0)];
    pins.set(PrunePins {
        below: Some(p.committed_cut(job.version).offset),
        keep: job.pinned_offsets(PartitionId(0)),
    });
    PartitionConfig {
        committed_checkpoint: p.checkpoint_floor(),
        restore: job.restore_point_of(p),
        pins: Some(pins.clone()),
        join_upstreams: None,
        ..config(spec, worker, p.epoch.0)
    }
}

/// Stops the job as the group and the scheduler would: the owner paused, the partition
/// released at `epoch` and fenced.
fn stop_job(control: &LocalControl, worker: &str, epoch: u64) {
    let tenant = Some(TenantName::from("t"));
    let apply = |c| assert!(!matches!(control.apply(c), CommandResult::Refused(_)));
    apply(Command::ChangeJobState {
        job: JobId(1),
        tenant,
        request: weir_coordinator::state::lifecycle::JobRequest::Stop,
    });
    apply(Command::WorkerReport {
        worker: WorkerId::from(worker),
        report: weir_core::wire::WorkerReport::Paused {
            job: JobId(1),
            partition: PartitionId(0),
            epoch: Epoch(epoch - 1),
        },
    });
    apply(Command::Place {
        moves: vec![Move {
            job: JobId(1),
            partition: PartitionId(0),
            worker: None,
            epoch: Epoch(epoch),
        }],
    });
    apply(Command::WorkerReport {
        worker: WorkerId::from(worker),
        report: weir_core::wire::WorkerReport::Fenced {
            job: JobId(1),
            partitions: vec![PartitionId(0)],
            commit_points: Vec::new(),
        },
    });
    apply(Command::FinishStop { job: JobId(1) });
}

#[tokio::test]
async fn a_start_from_a_savepoint_reads_again_from_its_cut_and_moves_the_commit_point_once() {
    let inputs = events(3_000);
    let n = inputs.len() as i64;
    let (all_alerts, _) = failure_free(STATELESS, &inputs).await;
    let (broker, spec, control) = setup(STATELESS, &inputs).await;
    let store = MemoryCheckpointStore::new();
    let pins = SharedPins::default();
    let mut now = 0;
    place(&control, "w1", 1);
    let config_a = config_from_group(&control, &spec, "w1", &pins);
    let mut a = PartitionRunner::recover(config_a, &broker, store.clone(), control.clone(), now)
        .await
        .unwrap();
    drain(&mut a, &mut now, n / 3).await.unwrap();
    a.checkpoint(now + 1).await.unwrap();
    let cut = a.next_offset();
    let taken = control.apply(Command::TakeSavepoint {
        job: JobId(1),
        tenant: None,
        at_ms: now,
    });
    assert!(
        matches!(taken, CommandResult::SavepointTaken { .. }),
        "{taken:?}"
    );
    // The owner hears of the pin with its next assignments.
    config_from_group(&control, &spec, "w1", &pins);
    drain(&mut a, &mut now, 2 * n / 3).await.unwrap();
    assert!(a.pause(now + 1).await.unwrap());
    let stopped_at = a.next_offset();
    drop(a);
    assert!(
        store
            .get(JobId(1), PartitionId(0), cut)
            .await
            .unwrap()
            .is_some(),
        "pinned snapshot kept"
    );
    stop_job(&control, "w1", 2);
    let started = control.apply(Command::StartFromSavepoint {
        job: JobId(1),
        tenant: None,
        savepoint: weir_core::ids::SavepointId(1),
    });
    assert_eq!(started, CommandResult::Done);
    place(&control, "w2", 3);
    // A new owner that dies before its first commit leaves Kafka's point at the stop; the
    // next one restores the savepoint again.
    for _ in 0..2 {
        let b = PartitionRunner::recover(
            config_from_group(&control, &spec, "w2", &pins),
            &broker,
            store.clone(),
            control.clone(),
            now,
        )
        .await
        .unwrap();
        assert_eq!(b.next_offset(), cut, "read again from the savepoint's cut");
    }
    let mut c = PartitionRunner::recover(
        config_from_group(&control, &spec, "w2", &pins),
        &broker,
        store.clone(),
        control.clone(),
        now,
    )
    .await
    .unwrap();
    now += 300;
    c.step(now).await.unwrap();
    assert!(
        c.counters().checkpoints >= 1,
        "the first batch commits at once"
    );
    let moved_to = c.next_offset();
    assert!(
        moved_to > cut && moved_to < stopped_at,
        "{cut} < {moved_to} < {stopped_at}"
    );
    {
        let s = control.state.lock().unwrap();
        assert_eq!(
            s.jobs[&JobId(1)].partitions[&PartitionId(0)].restore,
            None,
            "cleared by the commit"
        );
    }
    drop(c);
    // Recovery after that commit (with the stale restore point it started with, too)
    // resumes at the restored run's own commit point.
    let config_d = PartitionConfig {
        restore: config_from_group(&control, &spec, "w2", &pins)
            .restore
            .or_else(|| {
                let s = control.state.lock().unwrap();
                s.jobs[&JobId(1)].savepoints.values().next().map(|sp| {
                    weir_core::wire::RestorePoint {
                        savepoint: sp.id,
                        checkpoint: sp.pins[&PartitionId(0)].checkpoint,
                        offset: sp.pins[&PartitionId(0)].offset,
                        snapshot: None,
                        after_checkpoint: Some(weir_core::ids::CheckpointId(1)),
                        spec_before: None,
                        state_drop: Vec::new(),
                        redistribute: Vec::new(),
                    }
                })
            }),
        ..config_from_group(&control, &spec, "w2", &pins)
    };
    let mut d = PartitionRunner::recover(config_d, &broker, store.clone(), control.clone(), now)
        .await
        .unwrap();
    assert_eq!(d.next_offset(), moved_to);
    drain(&mut d, &mut now, n).await.unwrap();
    d.checkpoint(now + 10_000).await.unwrap();
    // Every output once, and those of the input between the savepoint and the stop
    // twice: what a start from an earlier savepoint means.
    let (again, _) = failure_free(STATELESS, &inputs[cut as usize..stopped_at as usize]).await;
    let mut expected = all_alerts;
    expected.extend(again);
    expected.sort();
    assert_eq!(committed(&broker, "alerts").await, expected);
}
