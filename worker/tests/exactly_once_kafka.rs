//! The exactly-once runner against a real Kafka broker (single-node KRaft on loopback,
//! started by `scripts/kafka/kafka.sh`; set `WEIR_KAFKA_HOME` to reuse fetched jars):
//! records near Kafka's size limits. A 990,000-byte undecodable record (within the
//! producer's 1,000,000-byte limit) has a 1.32 MB dead letter, and a result can be larger
//! than a sink topic's `max.message.bytes`; both failed the partition at every retry.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use weir_broker::kafka::KafkaBroker;
use weir_broker::{Broker, OutgoingRecord, TransactionalWriter};
use weir_coordinator::state::{Command, Move};
use weir_core::ids::{Epoch, JobId, PartitionId, TenantName, WorkerId};
use weir_core::spec::parse_job_spec;
use weir_worker::checkpoint_store::MemoryCheckpointStore;
use weir_worker::exactly_once::{PartitionConfig, PartitionRunner};

mod common;
use common::kafka::Kafka;
use common::LocalControl;

const SPEC: &str = r#"
name: copy
source: { topic: kw-in, format: json }
pipeline:
  - map: { card: "card", cents: "amount * 100" }
sink: { topic: kw-out, format: json }
dead_letter_topic: kw-dlq
checkpoint_interval: 1s
"#;

#[test]
fn records_near_kafkas_size_limits_become_dead_letters_that_fit() {
    let kafka = Kafka::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let broker = KafkaBroker::new(&kafka.bootstrap).unwrap();
        for topic in ["kw-in", "kw-dlq"] {
            broker.create_topic(topic, 1).await.unwrap();
        }
        // A sink that accepts records up to 100,000 bytes.
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap)
            .create()
            .unwrap();
        let sink = NewTopic::new("kw-out", 1, TopicReplication::Fixed(1))
            .set("max.message.bytes", "100000");
        admin
            .create_topics([&sink], &AdminOptions::new())
            .await
            .unwrap();
        broker.create_topic("kw-out", 1).await.unwrap();

        let poison: Vec<u8> = (0..990_000u32).map(|i| 0x80 | (i % 113) as u8).collect();
        let huge = format!(r#"{{"card":"{}","amount":1}}"#, "x".repeat(300_000));
        let inputs = [
            poison.clone(),
            huge.into_bytes(),
            br#"{"card":"c1","amount":2}"#.to_vec(),
        ];
        let mut producer = broker.writer("kw-producer").await.unwrap();
        producer.begin().unwrap();
        for value in &inputs {
            producer
                .send(OutgoingRecord {
                    topic: "kw-in".into(),
                    partition: Some(0),
                    key: None,
                    value: value.clone(),
                    timestamp_ms: None,
                })
                .await
                .unwrap();
        }
        producer.commit("kw-producer-group", &[]).await.unwrap();

        let control = Arc::new(LocalControl::default());
        control.apply(Command::CreateTenant {
            name: TenantName::from("t"),
            token_hash: "h".into(),
            at_ms: 0,
        });
        let spec = parse_job_spec(SPEC.as_bytes()).unwrap();
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
        control.apply(Command::Place {
            moves: vec![Move {
                job: JobId(1),
                partition: PartitionId(0),
                worker: Some(WorkerId::from("w1")),
                epoch: Epoch(1),
            }],
        });
        let config = PartitionConfig {
            worker: WorkerId::from("w1"),
            job: JobId(1),
            partition: PartitionId(0),
            epoch: Epoch(1),
            spec,
            poll_batch_records: 16,
            committed_checkpoint: None,
            repartitions: Vec::new(),
            repartition_generation: 0,
            restore: None,
            pins: None,
            join_upstreams: None,
        };
        // A fresh broker's group coordinator takes a moment to load (NotCoordinator).
        let store = MemoryCheckpointStore::new();
        let mut attempts = 0;
        let mut runner = loop {
            match PartitionRunner::recover(
                config.clone(),
                &broker,
                store.clone(),
                control.clone(),
                0,
            )
            .await
            {
                Ok(runner) => break runner,
                Err(e) if attempts < 60 => {
                    eprintln!("recover: {e}; retrying");
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let started = tokio::time::Instant::now();
        let mut now = 0;
        while runner.next_offset() < inputs.len() as i64 {
            assert!(started.elapsed() < Duration::from_secs(60), "stalled");
            now += 100;
            runner.step(now).await.unwrap();
        }
        runner.checkpoint(now + 10_000).await.unwrap();

        let letters = broker.read_committed("kw-dlq", 0, 0, 10).await.unwrap();
        let letters: Vec<serde_json::Value> = letters
            .iter()
            .map(|r| {
                let value = r.value.as_deref().unwrap();
                assert!(value.len() < 1_000_000, "{}", value.len());
                serde_json::from_slice(value).unwrap()
            })
            .collect();
        assert_eq!(letters.len(), 2, "{letters:?}");
        assert_eq!(letters[0]["reason"], "undecodable");
        assert_eq!(letters[0]["offset"], 0);
        assert_eq!(letters[0]["truncated"], true);
        assert_eq!(letters[0]["original_bytes"], 990_000);
        assert!(letters[0]["payload_base64"].as_str().unwrap().len() > 990_000);
        assert_eq!(letters[1]["reason"], "output_too_large");
        assert_eq!(letters[1]["offset"], 1);
        assert!(letters[1].get("truncated").is_none());
        let out = broker.read_committed("kw-out", 0, 0, 10).await.unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].value.as_deref(),
            Some(&br#"{"card":"c1","cents":200}"#[..])
        );
    });
}
