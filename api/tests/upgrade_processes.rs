//! An upgrade against real processes and a real Kafka broker: one `weir coordinator`,
//! two `weir worker`s, a windowed velocity job (counts per card in one-minute tumbling
//! windows, an alert threshold after the aggregate) under load. The test upgrades the job
//! to a lower threshold through the CLI while every window is open, kills a worker with
//! SIGKILL while the job is upgrading, goes on producing, and then checks with a
//! read_committed reader that the sink holds exactly the alerts it computes itself: each
//! window's count over the input before and after the upgrade (the counts continue
//! across it), judged by the new threshold (no window closed before the cut), each alert
//! exactly once. A second test rescales the same job run as two stages (no
//! `partitioned_by`) from 2 to 3 downstream partitions through the CLI while every window
//! is open, a worker SIGKILLed mid-rescale: the counts continue across the rescale, each
//! alert exactly once.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{free_addr, wait_for, ADMIN};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use weir_api::client::Client;
use weir_broker::kafka::KafkaBroker;
use weir_broker::{Broker, OutgoingRecord, TransactionalWriter};
use weir_core::ids::{JobId, PartitionId};
use weir_core::wire::JobState;
use weir_simulation::reference::partition_of_key;

const PARTITIONS: u32 = 2;
const CARDS: u32 = 24;
/// The start of the first window: a multiple of the window's size.
const BASE_MS: i64 = 1_700_000_040_000;
const WINDOW_MS: i64 = 60_000;
/// The job, with its threshold to fill in.
const SPEC: &str = r#"
name: velocity
source: { topic: payments, format: json, event_time: ts, partitioned_by: card }
pipeline:
  - key_by: card
  - window: { tumbling: 60s }
    id: velocity
  - aggregate: { n: "count()" }
  - filter: "n >= THRESHOLD"
sink: { topic: alerts, format: json }
dead_letter_topic: velocity-dlq
checkpoint_interval: 300ms
"#;
const THRESHOLD_BEFORE: u32 = 6;
const THRESHOLD_AFTER: u32 = 4;
/// The bound of every wait on the cluster.
const WAIT_MS: u64 = 90_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Kafka, a coordinator and two workers; all stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    kafka_dir: PathBuf,
    children: BTreeMap<String, Child>,
    broker: KafkaBroker,
    admin: Client,
    coordinator: String,
    job: JobId,
    produced: u64,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new(repo().join("scripts/kafka/kafka.sh"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.kafka_dir)
            .status();
    }
}

fn spawn(dir: &Path, name: &str, args: &[String]) -> Child {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn weir")
}

fn start_kafka(dir: &Path) -> String {
    let out = Command::new(repo().join("scripts/kafka/kafka.sh"))
        .args(["start", "--dir"])
        .arg(dir)
        .args(["--config", "log.retention.ms=-1"])
        .output()
        .expect("run kafka.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kafka.sh start failed: {stdout}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("bootstrap="))
        .map(str::to_string)
        .expect("kafka.sh printed the bootstrap address")
}

fn spec(threshold: u32) -> String {
    SPEC.replace("THRESHOLD", &threshold.to_string())
}

impl Cluster {
    async fn start(spec: String) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let kafka_dir = dir.path().join("kafka");
        std::fs::create_dir_all(&kafka_dir).unwrap();
        let bootstrap = start_kafka(&kafka_dir);
        let broker = KafkaBroker::new(&bootstrap).unwrap();
        for (topic, n) in [
            ("payments", PARTITIONS),
            ("alerts", PARTITIONS),
            ("velocity-dlq", 1),
        ] {
            broker.create_topic(topic, n).await.unwrap();
        }
        let coordinator = free_addr();
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut children = BTreeMap::new();
        let c_dir = dir.path().join("c1").display().to_string();
        children.insert(
            "c1".to_string(),
            spawn(
                &kafka_dir,
                "c1",
                &args(&[
                    "coordinator",
                    "--id",
                    "1",
                    "--listen",
                    &coordinator,
                    "--data-dir",
                    &c_dir,
                    "--peers",
                    &format!("1={coordinator}"),
                    "--admin-token",
                    ADMIN,
                ]),
            ),
        );
        let admin = Client::new(vec![coordinator.clone()], Some(ADMIN.into()));
        wait_for("a leader", WAIT_MS, || async {
            admin.cluster_status().await.ok()?.leader
        })
        .await;
        admin.create_tenant("pay").await.unwrap();
        let job = admin
            .submit_job(spec.into_bytes(), Some("pay"))
            .await
            .unwrap()
            .id;
        let cp_dir = dir.path().join("checkpoints").display().to_string();
        for w in ["w1", "w2"] {
            let w_dir = dir.path().join(w).display().to_string();
            children.insert(
                w.to_string(),
                spawn(
                    &kafka_dir,
                    w,
                    &args(&[
                        "worker",
                        "--id",
                        w,
                        "--coordinators",
                        &coordinator,
                        "--data-dir",
                        &w_dir,
                        "--kafka",
                        &bootstrap,
                        "--checkpoint-dir",
                        &cp_dir,
                        "--token",
                        ADMIN,
                    ]),
                ),
            );
        }
        let cluster = Cluster {
            dir,
            kafka_dir,
            children,
            broker,
            admin,
            coordinator,
            job,
            produced: 0,
        };
        cluster.wait_state(JobState::Running).await;
        cluster
    }

    async fn wait_state(&self, state: JobState) {
        wait_for(state.as_str(), WAIT_MS, || async {
            (self.admin.get_job(self.job).await.ok()?.state == state).then_some(())
        })
        .await;
    }

    /// Produces `(card, event time)` events, each on the partition its card hashes to (as
    /// `source.partitioned_by: card` declares), in one committed transaction.
    async fn produce(&mut self, events: &[(String, i64)]) {
        let mut producer = self.broker.writer("test-generator").await.unwrap();
        producer.begin().unwrap();
        for (card, ts) in events {
            self.produced += 1;
            let value = serde_json::json!({"card": card, "ts": ts, "id": self.produced});
            let record = OutgoingRecord {
                topic: "payments".into(),
                partition: Some(partition_of_key(card.as_bytes(), PARTITIONS)),
                key: Some(card.clone().into_bytes()),
                value: value.to_string().into_bytes(),
                timestamp_ms: None,
            };
            producer.send(record).await.unwrap();
        }
        producer.commit("test-generator", &[]).await.unwrap();
    }

    /// Every committed alert, as (card, window start, count), counted.
    async fn alerts(&self) -> BTreeMap<(String, i64, u64), u64> {
        let mut seen = BTreeMap::new();
        for p in 0..PARTITIONS as i32 {
            let mut offset = 0;
            loop {
                let batch = self
                    .broker
                    .read_committed("alerts", p, offset, 10_000)
                    .await
                    .expect("read_committed");
                let Some(last) = batch.last() else { break };
                offset = last.offset + 1;
                for record in batch {
                    let v: serde_json::Value =
                        serde_json::from_slice(&record.value.unwrap_or_default()).unwrap();
                    let key = (
                        v["key"].as_str().unwrap_or_default().to_string(),
                        v["window_start"].as_i64().unwrap_or(-1),
                        v["n"].as_u64().unwrap_or(0),
                    );
                    *seen.entry(key).or_insert(0) += 1;
                }
            }
        }
        seen
    }

    /// Runs the CLI as the administrator.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .args(["--coordinator", &self.coordinator, "--token", ADMIN])
            .output()
            .expect("run weir");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "weir {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Waits until the job's source tasks have committed `count` records in all.
    async fn wait_committed(&self, count: usize) {
        wait_for("the loads processed and committed", WAIT_MS, || async {
            let detail = self.admin.get_job(self.job).await.ok()?;
            let committed: i64 = detail
                .partitions
                .iter()
                .filter(|p| p.partition.0 < PartitionId(10_000).0)
                .map(|p| p.offset.unwrap_or(0))
                .sum();
            (committed >= count as i64).then_some(())
        })
        .await;
    }

    /// Waits for the job to run `version`.
    async fn wait_version_running(&self, version: u64) {
        wait_for("the new version running", WAIT_MS, || async {
            let detail = self.admin.get_job(self.job).await.ok()?;
            (detail.version == version && detail.state == JobState::Running).then_some(())
        })
        .await;
    }

    /// Waits until the sink holds as many alerts as `expected`, then returns them.
    async fn wait_alerts(&self, expected: &Alerts) -> Alerts {
        let total: u64 = expected.values().sum();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(WAIT_MS);
        loop {
            let got = self.alerts().await;
            if got.values().sum::<u64>() >= total {
                return got;
            }
            if std::time::Instant::now() > deadline {
                self.explain_timeout(&got, expected).await;
                panic!("timed out after {WAIT_MS} ms waiting for every alert committed");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// What a failed wait needs to be understood: the job as the group sees it, the alerts
    /// missing or extra, and the tail of every process's log.
    async fn explain_timeout(
        &self,
        got: &BTreeMap<(String, i64, u64), u64>,
        expected: &BTreeMap<(String, i64, u64), u64>,
    ) {
        eprintln!("job: {:#?}", self.admin.get_job(self.job).await);
        let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, n)| expected.get(*k) != Some(*n))
            .collect();
        eprintln!(
            "missing alerts ({}): {:?}",
            missing.len(),
            missing.iter().take(20).collect::<Vec<_>>()
        );
        eprintln!(
            "unexpected alerts: {:?}",
            extra.iter().take(20).collect::<Vec<_>>()
        );
        for name in self.children.keys() {
            let log = std::fs::read_to_string(self.kafka_dir.join(format!("{name}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {name}.log (last {} lines, newest first)", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }

    fn kill9(&mut self, name: &str) {
        let child = self.children.get_mut(name).expect("a child of that name");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Alerts by (card, window start, count), with how often each was seen.
type Alerts = BTreeMap<(String, i64, u64), u64>;

/// Each window's event count by (card, window start).
type Counts = BTreeMap<(String, i64), u64>;

/// `per_card(k)` events for each card `k` of `range` in window `window` (0 the first),
/// counted into `counts`.
fn events(
    counts: &mut Counts,
    range: std::ops::Range<u32>,
    window: i64,
    per_card: &dyn Fn(u32) -> u32,
) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for k in range {
        for i in 0..per_card(k) {
            let ts = BASE_MS + window * WINDOW_MS + 1_000 * i64::from(i + 1) + i64::from(k);
            out.push((card(k), ts));
            *counts
                .entry((card(k), BASE_MS + window * WINDOW_MS))
                .or_insert(0) += 1;
        }
    }
    out
}

/// One event per source partition far ahead: it closes every window of the test.
fn flush() -> Vec<(String, i64)> {
    (0..PARTITIONS as i32)
        .map(|p| (flush_card(p), BASE_MS + 10 * WINDOW_MS))
        .collect()
}

/// The alerts `counts` give at `threshold`, each once.
fn expected_alerts(counts: &Counts, threshold: u32) -> Alerts {
    counts
        .iter()
        .filter(|(_, n)| **n >= u64::from(threshold))
        .map(|((card, start), n)| ((card.clone(), *start, *n), 1))
        .collect()
}

fn card(k: u32) -> String {
    format!("card-{k}")
}

/// A card on `partition` that no other event uses: its event moves that partition's
/// watermark past every window of the test.
fn flush_card(partition: i32) -> String {
    (0..)
        .map(|n| format!("flush-{n}"))
        .find(|c| partition_of_key(c.as_bytes(), PARTITIONS) == partition)
        .expect("some card hashes to every partition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_carries_open_windows_and_every_alert_appears_exactly_once() {
    let mut c = Cluster::start(spec(THRESHOLD_BEFORE)).await;
    // Before the upgrade: 3 events per card in the first window, which stays open (no
    // event time reaches its end), in two loads.
    let mut counts = Counts::new();
    let first = events(&mut counts, 0..CARDS, 0, &|_| 2);
    let second = events(&mut counts, 0..CARDS, 0, &|_| 1);
    c.produce(&first).await;
    c.produce(&second).await;
    c.wait_committed(first.len() + second.len()).await;
    assert!(c.alerts().await.is_empty(), "no window closed yet");

    // The upgrade, through the CLI, while every window is open; then a worker dies.
    let file = c.dir.path().join("velocity-v2.yaml");
    std::fs::write(&file, spec(THRESHOLD_AFTER)).unwrap();
    let job = c.job.to_string();
    let answer = c.cli(&["job", "upgrade", &job, file.to_str().unwrap()]);
    assert!(answer.contains("version 2"), "{answer}");
    c.kill9("w1");
    // The cut is where the stop lands: a partition still running when the upgrade is
    // accepted processes what it reads with the old version until it learns of the stop.
    // So the input meant for after the cut is produced once the new version runs (the
    // stop had to finish without w1, its partitions fenced and moved to w2).
    c.wait_version_running(2).await;

    // After the cut: more events in the first window (card k gets k % 4 more), events
    // in the second, and a flush event per partition that closes both.
    let third = events(&mut counts, 0..CARDS, 0, &|k| k % 4);
    let fourth = events(&mut counts, 0..CARDS, 1, &|k| k % 6);
    c.produce(&third).await;
    c.produce(&fourth).await;
    c.produce(&flush()).await;

    // Every window closed is judged by the new threshold, its count over all its events.
    let expected = expected_alerts(&counts, THRESHOLD_AFTER);
    assert!(
        expected
            .keys()
            .any(|(_, start, n)| *start == BASE_MS && *n < 6),
        "some alert needs counts from both sides of the cut and the new threshold"
    );
    let got = c.wait_alerts(&expected).await;
    assert_eq!(got, expected, "every expected alert exactly once");

    let detail = c.admin.get_job(c.job).await.unwrap();
    assert_eq!((detail.state, detail.version), (JobState::Running, 2));
    let versions = c.admin.job_versions(c.job).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1].from_version, Some(1));
    let listed = c.cli(&["job", "versions", &job]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescale_under_load_moves_every_open_window_to_its_new_task_exactly_once() {
    // The same job, run as two stages: the source does not declare it is partitioned by
    // card, so the key_by repartitions to a topic of `parallelism` partitions.
    let two_stages =
        spec(THRESHOLD_AFTER).replace(", partitioned_by: card", "") + "parallelism: 2\n";
    let mut c = Cluster::start(two_stages).await;
    let mut counts = Counts::new();
    let first = events(&mut counts, 0..CARDS, 0, &|_| 3);
    c.produce(&first).await;
    c.wait_committed(first.len()).await;
    assert!(c.alerts().await.is_empty(), "no window closed yet");

    // The rescale, through the CLI, while every window is open.
    let job = c.job.to_string();
    let answer = c.cli(&["job", "rescale", &job, "--parallelism", "3"]);
    assert!(answer.contains("version 2"), "{answer}");
    // A worker dies mid-rescale: the drain finishes on the other (its tasks placed again).
    c.kill9("w1");
    c.wait_version_running(2).await;
    let detail = c.admin.get_job(c.job).await.unwrap();
    let downstream: Vec<u32> = detail
        .partitions
        .iter()
        .map(|p| p.partition.0)
        .filter(|p| *p >= 10_000)
        .collect();
    assert_eq!(downstream.len(), 3, "{downstream:?}");
    assert!(
        downstream.iter().all(|p| *p / 10_000 == 1_001),
        "the downstream tasks are the first rescaled generation's: {downstream:?}"
    );
    assert_eq!(detail.spec["parallelism"], 3);

    // After the rescale: card k gets k % 4 more events in the first window (so every
    // alert's count spans the rescale: 3 before it), events in the second, then a flush.
    let second = events(&mut counts, 0..CARDS, 0, &|k| k % 4);
    let third = events(&mut counts, 0..CARDS, 1, &|k| k % 6);
    c.produce(&second).await;
    c.produce(&third).await;
    c.produce(&flush()).await;
    let expected = expected_alerts(&counts, THRESHOLD_AFTER);
    assert!(
        expected.keys().any(|(_, start, _)| *start == BASE_MS),
        "some alert counts events from both sides of the rescale"
    );
    let got = c.wait_alerts(&expected).await;
    assert_eq!(got, expected, "every expected alert exactly once");
    let versions = c.admin.job_versions(c.job).await.unwrap();
    assert_eq!(versions.len(), 2);
}
