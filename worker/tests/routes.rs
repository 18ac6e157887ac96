//! A job with routes, through the exactly-once runner on the in-memory Kafka model: each
//! result goes to the first route whose `when` holds, else to the sink, all in the same
//! transaction; a `when` that fails is an expression dead letter; a window result is
//! routed like any result.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::sync::Arc;
use weir_broker::memory::MemoryBroker;
use weir_broker::{Broker, OutgoingRecord, SourceOffset, TransactionalWriter};
use weir_coordinator::state::{Command, CommandResult, Move};
use weir_core::ids::{Epoch, JobId, PartitionId, TenantName, WorkerId};
use weir_core::spec::parse_job_spec;
use weir_worker::checkpoint_store::MemoryCheckpointStore;
use weir_worker::exactly_once::{PartitionConfig, PartitionRunner};

mod common;
use common::LocalControl;

/// Runs `spec` over `values` on one partition and returns what each of `topics` holds,
/// committed, in order.
async fn run(spec: &str, values: &[&str], topics: &[&str]) -> Vec<Vec<String>> {
    let spec = parse_job_spec(spec.as_bytes()).unwrap();
    let broker = MemoryBroker::new();
    broker.create_topic("payments", 1).await.unwrap();
    for t in topics {
        broker.create_topic(t, 1).await.unwrap();
    }
    let mut w = broker.writer("producer").await.unwrap();
    w.begin().unwrap();
    for v in values {
        w.send(OutgoingRecord {
            topic: "payments".into(),
            partition: Some(0),
            key: None,
            value: v.as_bytes().to_vec(),
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
    control.apply(Command::RegisterWorker {
        worker: WorkerId::from("w1"),
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
            worker: Some(WorkerId::from("w1")),
            epoch: Epoch(1),
        }],
    });
    assert_eq!(placed, CommandResult::Done);
    let config = PartitionConfig {
        worker: WorkerId::from("w1"),
        job: JobId(1),
        partition: PartitionId(0),
        epoch: Epoch(1),
        spec,
        poll_batch_records: 50,
        committed_checkpoint: None,
        repartitions: Vec::new(),
        repartition_generation: 0,
        restore: None,
        pins: None,
        join_upstreams: None,
    };
    let store = MemoryCheckpointStore::new();
    let mut runner = PartitionRunner::recover(config, &broker, store, control, 0)
        .await
        .unwrap();
    let mut now = 0;
    while runner.next_offset() < values.len() as i64 {
        now += 300;
        runner.step(now).await.unwrap();
    }
    runner.checkpoint(now + 5_000).await.unwrap();
    let mut out = Vec::new();
    for t in topics {
        let records = broker.read_committed(t, 0, 0, 1_000).await.unwrap();
        out.push(
            records
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap()).unwrap())
                .collect(),
        );
    }
    out
}

#[tokio::test]
async fn each_result_goes_to_the_first_route_that_takes_it_else_to_the_sink() {
    let spec = r#"
name: routed
source: { topic: payments, format: json }
pipeline:
  - filter: "amount > 0"
sink: { topic: rest, format: json }
routes:
  - { when: "amount >= 1000", topic: big }
  - { when: "amount >= 100", topic: medium }
dead_letter_topic: dlq
"#;
    let values = [
        r#"{"amount":5}"#,
        r#"{"amount":150}"#,
        r#"{"amount":5000}"#,
        r#"{"amount":0}"#,
        r#"{"amount":"lots"}"#,
        r#"{"amount":999}"#,
    ];
    let got = run(spec, &values, &["rest", "big", "medium", "dlq"]).await;
    assert_eq!(got[0], [r#"{"amount":5}"#]);
    assert_eq!(got[1], [r#"{"amount":5000}"#]);
    assert_eq!(got[2], [r#"{"amount":150}"#, r#"{"amount":999}"#]);
    // "lots" fails the filter: the one dead letter.
    assert_eq!(got[3].len(), 1, "{:?}", got[3]);
    assert!(got[3][0].contains("expression_error"), "{}", got[3][0]);
}

#[tokio::test]
async fn a_route_that_fails_is_a_dead_letter_and_window_results_are_routed() {
    let failing = r#"
name: routed
source: { topic: payments, format: json }
sink: { topic: rest, format: json }
routes:
  - { when: "size > 3", topic: long }
dead_letter_topic: dlq
"#;
    let got = run(
        failing,
        &[r#"{"size":5}"#, r#"{"size":"x"}"#, r#"{"size":1}"#],
        &["rest", "long", "dlq"],
    )
    .await;
    assert_eq!(got[0], [r#"{"size":1}"#]);
    assert_eq!(got[1], [r#"{"size":5}"#]);
    assert_eq!(got[2].len(), 1);
    assert!(got[2][0].contains("routes[0].when"), "{}", got[2][0]);

    let windowed = r#"
name: routed
source: { topic: payments, format: json, event_time: ts, partitioned_by: card }
pipeline:
  - key_by: "card"
  - window: { tumbling: 10s }
  - aggregate: { n: "count()" }
sink: { topic: quiet, format: json }
routes:
  - { when: "n >= 3", topic: busy }
dead_letter_topic: dlq
"#;
    // One partition: every key's partition is 0, so partitioned_by holds.
    let values = [
        r#"{"card":"a","ts":1000}"#,
        r#"{"card":"a","ts":2000}"#,
        r#"{"card":"a","ts":3000}"#,
        r#"{"card":"b","ts":4000}"#,
        r#"{"card":"z","ts":60000}"#,
    ];
    let got = run(windowed, &values, &["quiet", "busy", "dlq"]).await;
    assert_eq!(
        got[0],
        [r#"{"key":"b","window_start":0,"window_end":10000,"n":1}"#]
    );
    assert_eq!(
        got[1],
        [r#"{"key":"a","window_start":0,"window_end":10000,"n":3}"#]
    );
    assert!(got[2].is_empty(), "{:?}", got[2]);
}
