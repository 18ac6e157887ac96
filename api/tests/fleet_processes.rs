//! The whole system as separate processes against a real Kafka broker: a single-node KRaft
//! Kafka (scripts/kafka/kafka.sh), three `weir coordinator` processes and two `weir worker`
//! processes running a windowed and a stateless job. The payments are keyed by merchant
//! and the windowed job counts per card, so it runs as two stages through a repartition
//! topic. A worker owning tasks of both stages and then the coordinator leader are killed
//! with SIGKILL mid-run and restarted. A read_committed reader of the
//! sink and dead-letter topics must see every expected output exactly once, as computed
//! independently from the source records.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{free_addr, wait_for, ADMIN};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use weir_api::client::Client;
use weir_api::local::{expected, generator};
use weir_broker::kafka::KafkaBroker;
use weir_broker::{Broker, OutgoingRecord, TransactionalWriter};

const PARTITIONS: u32 = 4;
const EVENTS: u64 = 6_000;
const WINDOWED: &str = include_str!("../../docs/examples/card-velocity.yaml");
const STATELESS: &str = r#"
name: big-payments
source: { topic: payments, format: json, event_time: created_at }
pipeline:
  - filter: "amount > 400.0 && status == 'succeeded'"
  - map: { card: "card_id", amount: "amount", event_id: "event_id" }
sink: { topic: big-payments, format: json }
dead_letter_topic: big-payments-dlq
checkpoint_interval: 500ms
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every process this test starts; all are killed when it ends, pass or fail.
struct Processes {
    children: BTreeMap<String, Child>,
    kafka_dir: PathBuf,
}

impl Processes {
    fn spawn(&mut self, name: &str, args: &[String]) {
        let log =
            std::fs::File::create(self.kafka_dir.join(format!("{name}.log"))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn weir");
        self.children.insert(name.to_string(), child);
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit on its own.
    fn terminate(&mut self, name: &str, within_ms: u64) -> Option<std::process::ExitStatus> {
        let child = self.children.get_mut(name)?;
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {name}");
        for _ in 0..within_ms / 50 {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                self.children.remove(name);
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    fn kill9(&mut self, name: &str) {
        if let Some(mut c) = self.children.remove(name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let names: Vec<String> = self.children.keys().cloned().collect();
        for n in names {
            self.kill9(&n);
        }
        let _ = Command::new(repo().join("scripts/kafka/kafka.sh"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.kafka_dir)
            .status();
    }
}

fn start_kafka(dir: &Path) -> String {
    let out = Command::new(repo().join("scripts/kafka/kafka.sh"))
        .args(["start", "--dir"])
        .arg(dir)
        .args(["--config", "log.retention.ms=-1"])
        .output()
        .expect("run kafka.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafka.sh start failed: {}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("bootstrap="))
        .map(str::to_string)
        .expect("kafka.sh printed the bootstrap address")
}

async fn read_all(broker: &KafkaBroker, topic: &str, partitions: u32) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for p in 0..partitions as i32 {
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            let batch = broker
                .read_committed(topic, p, offset, 10_000)
                .await
                .expect("read_committed");
            let Some(last) = batch.last() else { break };
            offset = last.offset + 1;
            records.extend(batch.into_iter().map(|r| r.value.unwrap_or_default()));
        }
        out.push(records);
    }
    out
}

/// The stateless job's outputs, computed from the source: (card, event id, amount in cents).
fn expected_big_payments(
    partitions: &[Vec<Vec<u8>>],
) -> (BTreeMap<(String, String, i64), u64>, u64) {
    let mut out = BTreeMap::new();
    let mut dead = 0;
    for bytes in partitions.iter().flatten() {
        let Ok(serde_json::Value::Object(e)) = serde_json::from_slice::<serde_json::Value>(bytes)
        else {
            dead += 1;
            continue;
        };
        let amount = e["amount"].as_f64().unwrap_or(0.0);
        if amount > 400.0 && e["status"] == "succeeded" {
            let key = (
                e["card_id"].as_str().unwrap_or_default().to_string(),
                e["event_id"].as_str().unwrap_or_default().to_string(),
                (amount * 100.0).round() as i64,
            );
            *out.entry(key).or_insert(0) += 1;
        }
    }
    (out, dead)
}

fn parse_big_payment(bytes: &[u8]) -> (String, String, i64) {
    let v: serde_json::Value = serde_json::from_slice(bytes).expect("an output is JSON");
    (
        v["card"].as_str().unwrap_or_default().to_string(),
        v["event_id"].as_str().unwrap_or_default().to_string(),
        (v["amount"].as_f64().unwrap_or(f64::NAN) * 100.0).round() as i64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_commit_every_output_exactly_once_through_sigkill_of_a_worker_and_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let kafka_dir = dir.path().join("kafka");
    let mut procs = Processes {
        children: BTreeMap::new(),
        kafka_dir: kafka_dir.clone(),
    };
    std::fs::create_dir_all(&kafka_dir).unwrap();
    let bootstrap = start_kafka(&kafka_dir);
    let broker = KafkaBroker::new(&bootstrap).unwrap();
    for (topic, n) in [
        ("payments", PARTITIONS),
        ("card-velocity-alerts", PARTITIONS),
        ("card-velocity-dlq", 1),
        ("big-payments", PARTITIONS),
        ("big-payments-dlq", 1),
    ] {
        broker.create_topic(topic, n).await.unwrap();
    }

    let peers: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let peers_flag = peers
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    let coordinator_args = |id: u64| -> Vec<String> {
        vec![
            "coordinator".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            peers[&id].clone(),
            "--data-dir".into(),
            dir.path().join(format!("c{id}")).display().to_string(),
            "--peers".into(),
            peers_flag.clone(),
            "--admin-token".into(),
            ADMIN.into(),
        ]
    };
    let coordinators = peers.values().cloned().collect::<Vec<_>>().join(",");
    let worker_args = |name: &str| -> Vec<String> {
        vec![
            "worker".into(),
            "--id".into(),
            name.into(),
            "--coordinators".into(),
            coordinators.clone(),
            "--data-dir".into(),
            dir.path().join(name).display().to_string(),
            "--kafka".into(),
            bootstrap.clone(),
            "--checkpoint-dir".into(),
            dir.path().join("checkpoints").display().to_string(),
            "--token".into(),
            ADMIN.into(),
        ]
    };
    for id in 1..=3 {
        procs.spawn(&format!("c{id}"), &coordinator_args(id));
    }
    let admin = Client::new(peers.values().cloned().collect(), Some(ADMIN.into()));
    wait_for("a leader", 30_000, || async {
        admin.cluster_status().await.ok()?.leader
    })
    .await;
    admin.create_tenant("pay").await.unwrap();
    let windowed = admin
        .submit_job(WINDOWED.as_bytes().to_vec(), Some("pay"))
        .await
        .unwrap();
    let stateless = admin
        .submit_job(STATELESS.as_bytes().to_vec(), Some("pay"))
        .await
        .unwrap();
    let metrics_addr = free_addr();
    let mut w1_args = worker_args("w1");
    w1_args.extend(["--metrics-listen".to_string(), metrics_addr.clone()]);
    procs.spawn("w1", &w1_args);
    procs.spawn("w2", &worker_args("w2"));
    for job in [windowed.id, stateless.id] {
        wait_for("the job to run", 60_000, || async {
            (admin.get_job(job).await.ok()?.state == weir_core::wire::JobState::Running)
                .then_some(())
        })
        .await;
    }

    // The windowed job repartitions: a task per source partition upstream and per
    // repartition partition downstream, and the worker killed below owns some of each.
    let placed = wait_for(
        "the windowed job's tasks placed on both workers",
        60_000,
        || async {
            let detail = admin.get_job(windowed.id).await.ok()?;
            let on_w2: Vec<u32> = detail
                .partitions
                .iter()
                .filter(|p| p.worker.as_ref().is_some_and(|w| w.0 == "w2"))
                .map(|p| p.partition.0)
                .collect();
            let both = on_w2.iter().any(|t| *t < 10_000) && on_w2.iter().any(|t| *t >= 10_000);
            (detail.partitions.len() == 2 * PARTITIONS as usize && both).then_some(on_w2)
        },
    )
    .await;
    assert!(!placed.is_empty());

    // Produce, with a SIGKILL of a worker at one third and of the leader at two thirds.
    let (events, _) = generator::events(EVENTS, 11);
    let mut producer = broker.writer("test-generator").await.unwrap();
    let chunks: Vec<_> = events.chunks(500).collect();
    let n = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        producer.begin().unwrap();
        for e in chunk {
            let record = OutgoingRecord {
                topic: "payments".into(),
                partition: None,
                key: e.key.clone().map(String::into_bytes),
                value: e.value.clone(),
                timestamp_ms: None,
            };
            producer.send(record).await.unwrap();
        }
        producer.commit("test-generator", &[]).await.unwrap();
        if i == n / 3 {
            procs.kill9("w2");
        }
        if i == 2 * n / 3 {
            let leader = admin.cluster_status().await.unwrap().leader.unwrap();
            procs.kill9(&format!("c{leader}"));
            procs.spawn(&format!("c{leader}"), &coordinator_args(leader));
            procs.spawn("w2", &worker_args("w2"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    producer.begin().unwrap();
    for p in 0..PARTITIONS as i32 {
        let record = OutgoingRecord {
            topic: "payments".into(),
            partition: Some(p),
            key: None,
            value: generator::closing_event(EVENTS),
            timestamp_ms: None,
        };
        producer.send(record).await.unwrap();
    }
    producer.commit("test-generator", &[]).await.unwrap();

    let source = read_all(&broker, "payments", PARTITIONS).await;
    let (alerts, alert_dead) = expected::expected(&source);
    let (big, big_dead) = expected_big_payments(&source);
    assert!(
        alerts.len() > 100 && big.len() > 100,
        "the jobs have work: {} alerts, {} big payments",
        alerts.len(),
        big.len()
    );

    let big_total: u64 = big.values().sum();
    let (got_alerts, got_alert_dead, got_big, got_big_dead) =
        wait_for("every output to be committed", 180_000, || async {
            let a: Vec<Vec<u8>> = read_all(&broker, "card-velocity-alerts", PARTITIONS)
                .await
                .into_iter()
                .flatten()
                .collect();
            let ad = read_all(&broker, "card-velocity-dlq", 1)
                .await
                .into_iter()
                .flatten()
                .count() as u64;
            let b: Vec<Vec<u8>> = read_all(&broker, "big-payments", PARTITIONS)
                .await
                .into_iter()
                .flatten()
                .collect();
            let bd = read_all(&broker, "big-payments-dlq", 1)
                .await
                .into_iter()
                .flatten()
                .count() as u64;
            let done = a.len() >= alerts.len()
                && ad >= alert_dead
                && b.len() as u64 >= big_total
                && bd >= big_dead;
            done.then_some((a, ad, b, bd))
        })
        .await;

    let mut seen_alerts = BTreeMap::new();
    for bytes in &got_alerts {
        *seen_alerts
            .entry(expected::parse_alert(bytes).expect("an alert"))
            .or_insert(0u64) += 1;
    }
    assert!(
        seen_alerts.values().all(|n| *n == 1),
        "an alert was committed twice"
    );
    assert_eq!(
        seen_alerts
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        alerts
    );
    assert_eq!(got_alert_dead, alert_dead);

    let mut seen_big = BTreeMap::new();
    for bytes in &got_big {
        *seen_big.entry(parse_big_payment(bytes)).or_insert(0u64) += 1;
    }
    assert_eq!(
        seen_big, big,
        "stateless outputs differ from the failure-free result"
    );
    assert_eq!(got_big_dead, big_dead);

    // The coordinators know how far each partition got: every partition of both jobs has a
    // committed checkpoint and an owner.
    for (job, tasks) in [(windowed.id, 2 * PARTITIONS), (stateless.id, PARTITIONS)] {
        let detail = admin.get_job(job).await.unwrap();
        assert_eq!(detail.partitions.len(), tasks as usize);
        for p in &detail.partitions {
            assert!(
                p.checkpoint.is_some() && p.offset.is_some_and(|o| o > 0),
                "partition {} has no committed checkpoint: {p:?}",
                p.partition
            );
            assert!(p.worker.is_some());
        }
        let records = admin.checkpoints(job).await.unwrap();
        assert!(records
            .iter()
            .any(|r| r.phase == weir_core::wire::CheckpointPhase::Committed));
    }

    // `weir job state` reads a card's state from every task's committed snapshot on disk
    // (both stages' snapshots decode, or it fails); a bad directory is one clear sentence.
    let checkpoint_dir = dir.path().join("checkpoints").display().to_string();
    let coordinator = peers.values().next().unwrap().clone();
    let state_of = |dir: &str| {
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([
                "job",
                "state",
                &windowed.id.to_string(),
                "--key",
                "card-0001",
            ])
            .args([
                "--checkpoint-dir",
                dir,
                "--json",
                "--coordinator",
                &coordinator,
            ])
            .args(["--token", ADMIN])
            .output()
            .expect("run weir job state")
    };
    let out = state_of(&checkpoint_dir);
    assert!(
        out.status.success(),
        "weir job state: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(state["job"], windowed.id.0);
    assert!(state["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["windows"].as_array().unwrap())
        .all(|w| w["key"] == "card-0001"));
    let out = state_of("/nonexistent/checkpoints");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));

    // The surviving worker exports its counters for Prometheus.
    let metrics = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "weir_records_in_total",
        "weir_records_out_total",
        "weir_dead_letters_total",
        "weir_checkpoint_seconds",
        "weir_transaction_commit_seconds",
        "weir_state_bytes",
    ] {
        assert!(metrics.contains(name), "worker metric {name} missing");
        assert!(
            metrics.contains(&format!("# HELP {name}")),
            "worker metric {name} has no # HELP line"
        );
    }

    // SIGTERM: the worker stops its partitions (each aborts its open transaction) and
    // exits by itself within the stop grace.
    let status = procs.terminate("w1", 15_000);
    assert!(
        status.is_some_and(|s| s.success()),
        "weir worker exits cleanly on SIGTERM: {status:?}"
    );
}
