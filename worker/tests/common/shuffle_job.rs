//! The job that repartitions which the worker's two-stage tests run: its spec (a
//! `key_by` then a tumbling count and sum, `parallelism` 2 over a 3-partition source), its
//! input, its set-up against the real control state machine, a task's placement and
//! recovery, and the window results computed from the input alone.

use super::LocalControl;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_broker::{Broker, OutgoingRecord, SourceOffset, TransactionalWriter};
use weir_coordinator::state::{Command, CommandResult, Move};
use weir_core::ids::{Epoch, JobId, PartitionId, TenantName, WorkerId};
use weir_core::spec::stages::task_id;
use weir_core::spec::{parse_job_spec, JobSpec};
use weir_worker::checkpoint_store::MemoryCheckpointStore;
use weir_worker::exactly_once::{PartitionConfig, PartitionRunner};

pub const SPEC: &str = r#"
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
pub const SOURCE_PARTITIONS: u32 = 3;
pub const DOWNSTREAM: u32 = 2;
pub const EVENTS: usize = 600;
/// Attempts at taking a task over while the broker is unavailable.
pub const RECOVER_ATTEMPTS_MAX: usize = 100;

/// Event `i`: on source partition `i % 3` (as a topic keyed by merchant would spread
/// cards), card `i % 5`, time `i * 300 ms` so every partition's time grows.
pub fn event(i: usize) -> (i32, String, i64, i64) {
    let partition = (i % SOURCE_PARTITIONS as usize) as i32;
    let card = format!("c{}", i % 5);
    let ts = i as i64 * 300;
    let amount = (i % 11) as i64 - 1; // some filtered out
    (partition, card, ts, amount)
}

/// Creates the topics, produces events `0..EVENTS`, and submits and plans the job.
pub async fn setup<B: Broker>(broker: &B) -> (JobSpec, Arc<LocalControl>) {
    setup_with(broker, 0..EVENTS).await
}

/// Creates the topics, produces `events`, and submits and plans the job.
pub async fn setup_with<B: Broker>(
    broker: &B,
    events: std::ops::Range<usize>,
) -> (JobSpec, Arc<LocalControl>) {
    let spec = parse_job_spec(SPEC.as_bytes()).unwrap();
    broker
        .create_topic("payments", SOURCE_PARTITIONS)
        .await
        .unwrap();
    for t in ["alerts", "dlq"] {
        broker.create_topic(t, 1).await.unwrap();
    }
    produce(broker, events).await;
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

pub fn tasks() -> Vec<PartitionId> {
    let upstream = (0..SOURCE_PARTITIONS).map(|p| task_id(0, p));
    upstream
        .chain((0..DOWNSTREAM).map(|p| task_id(1, p)))
        .collect()
}

#[allow(clippy::too_many_arguments)] // a task's whole placement, spelled out
pub async fn start<B: Broker>(
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
        repartition_generation: 0,
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
pub fn expected() -> Vec<String> {
    expected_of(0..EVENTS)
}

/// The window results of `events` alone (see [`expected`]).
pub fn expected_of(events: std::ops::Range<usize>) -> Vec<String> {
    let mut largest = BTreeMap::new();
    let mut windows: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for i in events {
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

pub async fn committed<B: Broker>(broker: &B, topic: &str) -> Vec<String> {
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

/// Produces events `events` to the source topic in one transaction.
pub async fn produce<B: Broker>(broker: &B, events: std::ops::Range<usize>) {
    let mut w = broker.writer("producer").await.unwrap();
    w.begin().unwrap();
    for i in events {
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
}
