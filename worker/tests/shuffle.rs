//! A job that repartitions, run as its two stages with the real control state machine,
//! against the in-memory Kafka model and against a real Kafka broker: the source is spread
//! over its partitions without regard to the window's key, upstream and downstream tasks
//! run interleaved, one of each crashes and is taken over mid-run, and the committed
//! window results must equal, exactly once, the per-key counts computed here from the
//! input alone.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::collections::BTreeMap;
use weir_broker::kafka::KafkaBroker;
use weir_broker::memory::MemoryBroker;
use weir_broker::Broker;
use weir_core::ids::{JobId, PartitionId};
use weir_worker::checkpoint_store::MemoryCheckpointStore;

mod common;
use common::kafka::Kafka;
use common::shuffle_job::{committed, expected, setup, start, tasks, DOWNSTREAM, EVENTS};

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
