//! A job that repartitions, run as its two stages with the real control state machine,
//! against the in-memory Kafka model and against a real Kafka broker: the source is spread
//! over its partitions without regard to the window's key, upstream and downstream tasks
//! run interleaved, one of each crashes and is taken over mid-run, and the committed
//! window results must equal, exactly once, the per-key counts computed here from the
//! input alone.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::collections::BTreeMap;
use std::sync::Arc;
use weir_broker::kafka::KafkaBroker;
use weir_broker::memory::MemoryBroker;
use weir_broker::{Broker, OutgoingRecord, SourceOffset, TransactionalWriter};
use weir_coordinator::state::{Command, CommandResult, Move};
use weir_core::ids::{Epoch, JobId, PartitionId, TenantName, WorkerId};
use weir_core::spec::stages::task_id;
use weir_core::spec::{parse_job_spec, JobSpec};
use weir_worker::checkpoint_store::MemoryCheckpointStore;
use weir_worker::exactly_once::{PartitionConfig, PartitionRunner};

mod common;
use common::kafka::Kafka;
use common::LocalControl;

const SPEC: &str = r#"
name: per-card
source: { topic: payments, format: json, event_time: ts }
pipeline:
  - filter: "amount > 0"
  - key_by: "card"
  - window: { tumbling: 10s }
  - aggregate: { n: "count()", total: "sum(amount)" }
sink: { topic: alerts, format: json }
dead_letter_topic: dlq
checkpoint_interval: 1s
parallelism: 2
"#;
const SOURCE_PARTITIONS: u32 = 3;
const DOWNSTREAM: u32 = 2;
const EVENTS: usize = 600;
/// Attempts at taking a task over while the broker is unavailable.
const RECOVER_ATTEMPTS_MAX: usize = 100;

/// Event `i`: on source partition `i % 3` (as a topic keyed by merchant would spread
/// cards), card `i % 5`, time `i * 300 ms` so every partition's time grows.
fn event(i: usize) -> (i32, String, i64, i64) {
    let partition = (i % SOURCE_PARTITIONS as usize) as i32;
    let card = format!("c{}", i % 5);
    let ts = i as i64 * 300;
    let amount = (i % 11) as i64 - 1; // some filtered out
    (partition, card, ts, amount)
}

async fn setup<B: Broker>(broker: &B) -> (JobSpec, Arc<LocalControl>) {
    let spec = parse_job_spec(SPEC.as_bytes()).unwrap();
    broker
        .create_topic("payments", SOURCE_PARTITIONS)
        .await
        .unwrap();
    for t in ["alerts", "dlq"] {
        broker.create_topic(t, 1).await.unwrap();
    }
    let mut w = broker.writer("producer").await.unwrap();
    w.begin().unwrap();
    for i in 0..EVENTS {
        let (partition, card, ts, amount) = event(i);
        let value = format!(r#"{{"card":"{card}","amount":{amount},"ts":{ts}}}"#);
        w.send(OutgoingRecord {
            topic: "payments".into(),
            partition: Some(partition),
            key: Some(format!("merchant-{}", i % 3).into_bytes()),
            value: value.into_bytes(),
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
        spec: serde_json::to_value(&spec).unwrap(),
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
        partition_count: SOURCE_PARTITIONS,
    });
    (spec, control)
}

fn tasks() -> Vec<PartitionId> {
    let upstream = (0..SOURCE_PARTITIONS).map(|p| task_id(0, p));
    upstream
        .chain((0..DOWNSTREAM).map(|p| task_id(1, p)))
        .collect()
}

#[allow(clippy::too_many_arguments)] // a task's whole placement, spelled out
async fn start<B: Broker>(
    broker: &B,
    spec: &JobSpec,
    control: &Arc<LocalControl>,
    store: &MemoryCheckpointStore,
    task: PartitionId,
    worker: &str,
    epoch: u64,
    now: u64,
) -> PartitionRunner<B, MemoryCheckpointStore, LocalControl> {
    let r = control.apply(Command::Place {
        moves: vec![Move {
            job: JobId(1),
            partition: task,
            worker: Some(WorkerId::from(worker)),
            epoch: Epoch(epoch),
        }],
    });
    assert_eq!(r, CommandResult::Done);
    let repartitions = control.state.lock().unwrap().jobs[&JobId(1)]
        .repartitions
        .clone();
    let config = PartitionConfig {
        worker: WorkerId::from(worker),
        job: JobId(1),
        partition: task,
        epoch: Epoch(epoch),
        spec: spec.clone(),
        poll_batch_records: 40,
        committed_checkpoint: None,
        repartitions,
        restore: None,
        pins: None,
        join_upstreams: None,
    };
    // A fresh broker may not have its group coordinator yet: retry what passes by itself.
    for _ in 0..RECOVER_ATTEMPTS_MAX {
        match PartitionRunner::recover(config.clone(), broker, store.clone(), control.clone(), now)
            .await
        {
            Ok(runner) => return runner,
            Err(e) if !e.counts_toward_failing_the_job() => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("task {task} did not recover: {e}"),
        }
    }
    panic!("task {task} did not recover in {RECOVER_ATTEMPTS_MAX} attempts");
}

/// The window results the job must commit, computed from the input alone: every key's
/// 10 s windows that end at or before the least of the source partitions' largest times.
fn expected() -> Vec<String> {
    let mut largest = BTreeMap::new();
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let (partition, card, ts, amount) = event(i);
        let seen = largest.entry(partition).or_insert(ts);
        *seen = (*seen).max(ts);
        if amount > 0 {
            let start = ts.div_euclid(10_000) * 10_000;
            let w = windows.entry((card, start)).or_insert((0, 0));
            w.0 += 1;
            w.1 += amount;
        }
    }
    let watermark = *largest.values().min().unwrap();
    let mut out: Vec<String> = windows
        .into_iter()
        .filter(|((_, start), _)| start + 10_000 <= watermark)
        .map(|((card, start), (n, total))| {
            format!(
                r#"{{"key":"{card}","window_start":{start},"window_end":{},"n":{n},"total":{total}}}"#,
                start + 10_000
            )
        })
        .collect();
    out.sort();
    out
}

async fn committed<B: Broker>(broker: &B, topic: &str) -> Vec<String> {
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

#[tokio::test]
async fn a_job_that_repartitions_counts_every_key_once_through_crashes_in_both_stages() {
    run_through_crashes(&MemoryBroker::new(), 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_kafka_too() {
    let kafka = Kafka::start();
    let broker = KafkaBroker::new(&kafka.bootstrap).unwrap();
    // Each empty poll waits for records in real time: fewer rounds, still past the crashes.
    run_through_crashes(&broker, 90).await;
}

/// Runs every task for `rounds` rounds, crashing one of each stage, and checks the results.
async fn run_through_crashes<B: Broker>(broker: &B, rounds: usize) {
    let (spec, control) = setup(broker).await;
    assert_eq!(
        control.state.lock().unwrap().jobs[&JobId(1)].repartitions,
        vec![DOWNSTREAM],
        "the group planned one repartition topic of `parallelism` partitions"
    );
    let store = MemoryCheckpointStore::new();
    let mut now = 0;
    let mut epochs: BTreeMap<PartitionId, u64> = tasks().into_iter().map(|t| (t, 1)).collect();
    let mut runners = Vec::new();
    for task in tasks() {
        runners.push(start(broker, &spec, &control, &store, task, "w1", 1, now).await);
    }
    for round in 0..rounds {
        now += 250;
        for runner in runners.iter_mut() {
            runner.step(now).await.unwrap();
        }
        // An upstream task and a downstream task crash (uncommitted work lost) and are
        // taken over by another worker.
        if round == 37 || round == 61 {
            let index = if round == 37 { 1 } else { 3 };
            let task = tasks()[index];
            let epoch = epochs[&task] + 1;
            epochs.insert(task, epoch);
            runners[index] = start(broker, &spec, &control, &store, task, "w2", epoch, now).await;
        }
    }
    for _ in 0..3 {
        now += 2_000;
        for runner in runners.iter_mut() {
            runner.step(now).await.unwrap();
            runner.checkpoint(now).await.unwrap();
        }
    }
    let topic = "weir-job-1-repartition-1";
    assert_eq!(broker.partition_count(topic).await.unwrap(), DOWNSTREAM);
    // The window follows the shuffle: upstream tasks send partial aggregates, one record
    // per key and checkpoint, and markers, not every event.
    let mut shuffled = 0;
    for p in 0..DOWNSTREAM as i32 {
        shuffled += broker
            .read_committed(topic, p, 0, 1_000_000)
            .await
            .unwrap()
            .len();
    }
    assert!(
        shuffled > 0 && shuffled < EVENTS / 2,
        "{shuffled} records crossed the shuffle"
    );
    let results = committed(broker, "alerts").await;
    let want = expected();
    assert!(
        want.len() > 50,
        "the test covers many windows: {}",
        want.len()
    );
    assert_eq!(results, want);
    assert!(committed(broker, "dlq").await.is_empty());
}
