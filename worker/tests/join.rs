//! A job with a join (interval or temporal), run as its three groups of tasks (the left side's
//! upstream tasks over the source, the right side's over `join.with.topic`, the join's
//! downstream tasks) with the real control state machine, against the in-memory Kafka
//! model and against a real Kafka broker. Tasks run interleaved; one task of each group
//! crashes and is taken over mid-run. The committed pairs (and, for a left outer join,
//! the unmatched authorizations) and the dead letters must equal, exactly once, what is
//! computed here from the input alone. The temporal join reads the captures as versions
//! of each payment (some of them deletions), each authorization enriched with its
//! payment's version as of its time.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::collections::BTreeMap;
use std::sync::Arc;
use weir_broker::kafka::KafkaBroker;
use weir_broker::memory::MemoryBroker;
use weir_broker::{Broker, OutgoingRecord, SourceOffset, TransactionalWriter};
use weir_coordinator::state::{Command, CommandResult, Move};
use weir_core::ids::{Epoch, JobId, PartitionId, TenantName, WorkerId};
use weir_core::spec::stages::{task_id, JOIN_RIGHT_STAGE};
use weir_core::spec::{parse_job_spec, JobSpec};
use weir_worker::checkpoint_store::MemoryCheckpointStore;
use weir_worker::exactly_once::{PartitionConfig, PartitionRunner};

mod common;
use common::kafka::Kafka;
use common::LocalControl;

const LEFT_PARTITIONS: u32 = 2;
const RIGHT_PARTITIONS: u32 = 3;
const DOWNSTREAM: u32 = 2;
const AUTHORIZATIONS: usize = 240;
const WITHIN_MS: i64 = 10_000;
const OUT_OF_ORDERNESS_MS: i64 = 4_000;
/// Rounds after the crashes in which every task catches up.
const DRAIN_ROUNDS_MAX: usize = 1_000;
/// Attempts at taking a task over while the broker is unavailable.
const RECOVER_ATTEMPTS_MAX: usize = 100;

fn is_temporal(kind: &str) -> bool {
    kind.starts_with("temporal")
}

fn spec_text(kind: &str) -> String {
    let within = if is_temporal(kind) { "" } else { "within: 10s" };
    format!(
        r#"
name: auth-capture
source: {{ topic: authorizations, format: json, event_time: ts, max_out_of_orderness: 4s }}
pipeline:
  - filter: "amount > 0"
  - join:
      with: {{ topic: captures, format: json, event_time: ts, max_out_of_orderness: 4s }}
      left_key: "payment_id"
      right_key: "payment_id"
      {within}
      kind: {kind}
sink: {{ topic: matched, format: json }}
dead_letter_topic: dlq
checkpoint_interval: 1s
parallelism: 2
"#
    )
}

/// One input event: (is it a capture, partition, id, payment, ts, amount).
type Event = (bool, i32, i64, String, i64, i64);

/// Authorization `i` on partition `i % 2`, payment `p{i % 97}` (so payments repeat), at
/// `i * 250 ms` shifted so that its capture (on partition `i % 3`, about 5 s after
/// `i * 250 ms`) comes within the bound, exactly at it, just beyond it, or before the
/// authorization; some events of each side are late. Every input, in the order it is
/// produced.
fn events() -> Vec<Event> {
    let mut out = Vec::new();
    for i in 0..AUTHORIZATIONS as i64 {
        let payment = format!("p{}", i % 97);
        let shift = [-6_000, -5_001, -5_000, 0, 4_999, 5_000, 5_001][(i % 7) as usize];
        let late = if i % 17 == 16 { 20_000 } else { 0 };
        let ts = i * 250 + shift - late;
        let amount = (i % 9) - 1; // some filtered out
        out.push((false, (i % 2) as i32, i, payment.clone(), ts, amount));
        if i % 5 != 0 {
            let late = if i % 13 == 12 { 6_000 } else { 0 };
            let ts = i * 250 + 5_000 - late;
            out.push((true, (i % 3) as i32, 10_000 + i, payment, ts, 1));
        }
    }
    out
}

/// An event's record value: a capture with an id of 3 modulo 11 deletes its payment (a
/// temporal join's convention; the interval join pairs it like any other).
fn value_of(capture: bool, id: i64, payment: &str, amount: i64, ts: i64) -> String {
    let deleted = if capture && id % 11 == 3 {
        r#","deleted":true"#
    } else {
        ""
    };
    format!(r#"{{"id":{id},"payment_id":"{payment}","amount":{amount},"ts":{ts}{deleted}}}"#)
}

async fn setup<B: Broker>(broker: &B, kind: &str) -> (JobSpec, Arc<LocalControl>) {
    let spec = parse_job_spec(spec_text(kind).as_bytes()).unwrap();
    broker
        .create_topic("authorizations", LEFT_PARTITIONS)
        .await
        .unwrap();
    broker
        .create_topic("captures", RIGHT_PARTITIONS)
        .await
        .unwrap();
    for t in ["matched", "dlq"] {
        broker.create_topic(t, 1).await.unwrap();
    }
    let mut w = broker.writer("producer").await.unwrap();
    w.begin().unwrap();
    for (capture, partition, id, payment, ts, amount) in events() {
        let value = if id == 7 {
            "not json".to_string()
        } else {
            value_of(capture, id, &payment, amount, ts)
        };
        w.send(OutgoingRecord {
            topic: if capture {
                "captures"
            } else {
                "authorizations"
            }
            .into(),
            partition: Some(partition),
            key: None,
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
        partition_count: LEFT_PARTITIONS,
    });
    assert!(
        control.state.lock().unwrap().jobs[&JobId(1)]
            .partitions
            .is_empty(),
        "no task before the right side's partition count is known"
    );
    control.apply(Command::SetTopicPartitionCount {
        job: JobId(1),
        topic: "captures".into(),
        partition_count: RIGHT_PARTITIONS,
    });
    let planned: Vec<PartitionId> = control.state.lock().unwrap().jobs[&JobId(1)]
        .partitions
        .keys()
        .copied()
        .collect();
    assert_eq!(planned, tasks());
    (spec, control)
}

/// Every task: left upstream, join downstream, right upstream, by task id.
fn tasks() -> Vec<PartitionId> {
    (0..LEFT_PARTITIONS)
        .map(|p| task_id(0, p))
        .chain((0..DOWNSTREAM).map(|p| task_id(1, p)))
        .chain((0..RIGHT_PARTITIONS).map(|p| task_id(JOIN_RIGHT_STAGE, p)))
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
    let (repartitions, join_upstreams) = {
        let state = control.state.lock().unwrap();
        let job = &state.jobs[&JobId(1)];
        let counts = job.join_left_partitions.zip(job.join_partition_count);
        (job.repartitions.clone(), counts)
    };
    assert_eq!(join_upstreams, Some((LEFT_PARTITIONS, RIGHT_PARTITIONS)));
    let config = PartitionConfig {
        worker: WorkerId::from(worker),
        job: JobId(1),
        partition: task,
        epoch: Epoch(epoch),
        spec: spec.clone(),
        poll_batch_records: 4,
        committed_checkpoint: None,
        repartitions,
        repartition_generation: 0,
        restore: None,
        pins: None,
        join_upstreams,
    };
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

/// What the job must commit, from the rules alone: the (left id, right id) pairs (`-1`
/// for no right), and the dead letters as (reason, topic, partition, offset).
type Expected = (Vec<(i64, i64)>, Vec<(String, String, i64, i64)>);

fn expected(kind: &str) -> Expected {
    let outer = kind.ends_with("left_outer");
    let mut largest: BTreeMap<(bool, i32), i64> = BTreeMap::new();
    let mut offsets: BTreeMap<(bool, i32), i64> = BTreeMap::new();
    let mut left = Vec::new();
    let mut right = Vec::new();
    let mut dead = Vec::new();
    for (capture, partition, id, payment, ts, amount) in events() {
        let offset = offsets.entry((capture, partition)).or_insert(0);
        let at = *offset;
        *offset += 1;
        let topic = if capture {
            "captures"
        } else {
            "authorizations"
        };
        if id == 7 {
            dead.push(("undecodable".into(), topic.into(), partition as i64, at));
            continue;
        }
        let watermark = largest
            .get(&(capture, partition))
            .map(|m| m - OUT_OF_ORDERNESS_MS);
        let seen = largest.entry((capture, partition)).or_insert(ts);
        *seen = (*seen).max(ts);
        if amount <= 0 {
            continue;
        }
        let bound = if capture || is_temporal(kind) {
            ts
        } else {
            ts + WITHIN_MS
        };
        if watermark.is_some_and(|w| bound <= w) {
            dead.push(("late".into(), topic.into(), partition as i64, at));
            continue;
        }
        if capture {
            right.push((id, payment, ts));
        } else {
            left.push((id, payment, ts));
        }
    }
    let downstream_watermark = largest.values().min().unwrap() - OUT_OF_ORDERNESS_MS;
    assert_eq!(largest.len(), (LEFT_PARTITIONS + RIGHT_PARTITIONS) as usize);
    if is_temporal(kind) {
        let right_watermark = largest
            .iter()
            .filter(|((capture, _), _)| *capture)
            .map(|(_, largest)| largest - OUT_OF_ORDERNESS_MS)
            .min()
            .unwrap();
        let mut pairs = temporal_pairs(&left, &right, right_watermark, outer);
        pairs.sort();
        dead.sort();
        return (pairs, dead);
    }
    let mut pairs = Vec::new();
    for (lid, lkey, lts) in &left {
        let before = pairs.len();
        for (rid, rkey, rts) in &right {
            if lkey == rkey && lts <= rts && *rts <= lts + WITHIN_MS {
                pairs.push((*lid, *rid));
            }
        }
        if outer && pairs.len() == before && downstream_watermark >= lts + WITHIN_MS {
            pairs.push((*lid, -1));
        }
    }
    pairs.sort();
    dead.sort();
    (pairs, dead)
}

/// A temporal join's results: each left event the right watermark passed, with its
/// payment's capture of the greatest time at or before it (of two at one time, the greater
/// value), none if that one deletes the payment.
fn temporal_pairs(
    left: &[(i64, String, i64)],
    right: &[(i64, String, i64)],
    right_watermark: i64,
    outer: bool,
) -> Vec<(i64, i64)> {
    let mut pairs = Vec::new();
    for (lid, lkey, lts) in left.iter().filter(|l| l.2 <= right_watermark) {
        let version = right
            .iter()
            .filter(|(_, rkey, rts)| rkey == lkey && rts <= lts)
            .max_by_key(|(rid, rkey, rts)| (*rts, value_of(true, *rid, rkey, 1, *rts)))
            .filter(|(rid, _, _)| rid % 11 != 3);
        match version {
            Some((rid, _, _)) => pairs.push((*lid, *rid)),
            None if outer => pairs.push((*lid, -1)),
            None => {}
        }
    }
    pairs
}

async fn committed<B: Broker>(broker: &B, topic: &str) -> Vec<serde_json::Value> {
    broker
        .read_committed(topic, 0, 0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_slice(&r.value.unwrap_or_default()).unwrap())
        .collect()
}

#[tokio::test]
async fn an_inner_join_commits_each_pair_once_through_crashes_in_every_group() {
    let (got, want) = run_through_crashes(&MemoryBroker::new(), "inner", 30).await;
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_left_outer_join_adds_each_unmatched_left_event_once() {
    let (got, want) = run_through_crashes(&MemoryBroker::new(), "left_outer", 30).await;
    assert_eq!(got, want);
}

#[cfg(feature = "planted-bugs")]
#[tokio::test]
async fn join_state_left_out_of_the_snapshot_is_caught() {
    use weir_core::bugs::{plant, PlantedBug};
    plant(Some(PlantedBug::JoinStateNotInSnapshot));
    let (got, want) = run_through_crashes(&MemoryBroker::new(), "inner", 30).await;
    plant(None);
    assert_ne!(got, want, "the planted bug went unnoticed");
}

#[tokio::test]
async fn a_temporal_join_enriches_each_left_event_once_through_crashes_in_every_group() {
    let (got, want) = run_through_crashes(&MemoryBroker::new(), "temporal", 30).await;
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_temporal_left_outer_join_adds_each_left_event_without_a_version_once() {
    let (got, want) = run_through_crashes(&MemoryBroker::new(), "temporal_left_outer", 30).await;
    assert_eq!(got, want);
}

#[cfg(feature = "planted-bugs")]
#[tokio::test]
async fn a_temporal_join_with_the_newest_version_is_caught() {
    use weir_core::bugs::{plant, PlantedBug};
    plant(Some(PlantedBug::TemporalJoinUsesLatest));
    let (got, want) = run_through_crashes(&MemoryBroker::new(), "temporal", 30).await;
    plant(None);
    assert_ne!(got, want, "the planted bug went unnoticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporal_join_on_a_real_kafka_too() {
    let kafka = Kafka::start();
    let broker = KafkaBroker::new(&kafka.bootstrap).unwrap();
    let (got, want) = run_through_crashes(&broker, "temporal_left_outer", 30).await;
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_kafka_too() {
    let kafka = Kafka::start();
    let broker = KafkaBroker::new(&kafka.bootstrap).unwrap();
    let (got, want) = run_through_crashes(&broker, "left_outer", 30).await;
    assert_eq!(got, want);
}

/// Runs every task for `rounds` rounds, crashing one task of each group; returns what
/// was committed and what was expected.
async fn run_through_crashes<B: Broker>(
    broker: &B,
    kind: &str,
    rounds: usize,
) -> (Expected, Expected) {
    let (spec, control) = setup(broker, kind).await;
    assert_eq!(
        control.state.lock().unwrap().jobs[&JobId(1)].repartitions,
        vec![DOWNSTREAM]
    );
    let store = MemoryCheckpointStore::new();
    let mut now = 0;
    let mut epochs: BTreeMap<PartitionId, u64> = tasks().into_iter().map(|t| (t, 1)).collect();
    let mut runners = Vec::new();
    for task in tasks() {
        runners.push(start(broker, &spec, &control, &store, task, "w1", 1, now).await);
    }
    // A left upstream task, a downstream task and a right upstream task.
    let crashes = [(5, 1), (8, 6), (12, 2), (16, 3)];
    for round in 0..rounds {
        now += 250;
        for runner in runners.iter_mut() {
            runner.step(now).await.unwrap();
        }
        for (at, index) in crashes {
            if round == at {
                let task = tasks()[index];
                let epoch = epochs[&task] + 1;
                epochs.insert(task, epoch);
                runners[index] =
                    start(broker, &spec, &control, &store, task, "w2", epoch, now).await;
            }
        }
    }
    // Then until every task has read everything: three rounds in a row read nothing.
    let mut idle = 0;
    for _ in 0..DRAIN_ROUNDS_MAX {
        now += 2_000;
        let mut read = 0;
        for runner in runners.iter_mut() {
            read += runner.step(now).await.unwrap();
            runner.checkpoint(now).await.unwrap();
        }
        idle = if read == 0 { idle + 1 } else { 0 };
        if idle == 3 {
            break;
        }
    }
    assert_eq!(idle, 3, "the tasks kept reading");
    let (want_pairs, want_dead) = expected(kind);
    let mut pairs: Vec<(i64, i64)> = committed(broker, "matched")
        .await
        .iter()
        .map(|v| {
            if !v["right"].is_null() {
                assert_eq!(v["left"]["payment_id"], v["right"]["payment_id"]);
            }
            (
                v["left"]["id"].as_i64().unwrap(),
                v["right"]["id"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    pairs.sort();
    let mut dead: Vec<(String, String, i64, i64)> = committed(broker, "dlq")
        .await
        .iter()
        .map(|v| {
            (
                v["reason"].as_str().unwrap().to_string(),
                v["topic"].as_str().unwrap().to_string(),
                v["partition"].as_i64().unwrap(),
                v["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    dead.sort();
    assert!(want_pairs.len() > 40, "pairs: {}", want_pairs.len());
    assert!(
        want_dead.iter().any(|d| d.0 == "late"),
        "the input has late events"
    );
    if kind.ends_with("left_outer") {
        assert!(want_pairs.iter().any(|p| p.1 == -1));
    }
    ((pairs, dead), (want_pairs, want_dead))
}
