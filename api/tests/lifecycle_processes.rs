//! The job life cycle against real processes and a real Kafka broker: one `weir
//! coordinator`, one `weir worker`, a stateless job (with a checkpoint interval far away
//! where the test must see that a pause or a stop committed, since nothing else would).
//! One test per command:
//!
//! - pause: a running job goes paused; everything it processed before is visible to a
//!   read_committed reader at once (its transaction committed, none left open: a
//!   record committed to the sink topic by someone else is visible too, the last stable
//!   offset is not held); records produced while paused give no output;
//! - resume: the paused job runs again and every expected output appears exactly once;
//! - stop: the job goes stopped only once its partitions committed and were released;
//!   records produced while stopped give no output;
//! - start: the stopped job runs again from its last committed checkpoint, every
//!   expected output exactly once.
//!
//! - savepoints: a savepoint of the running job, a stop with a savepoint and a start from
//!   it (every output exactly once), a start from the earlier savepoint (the outputs of
//!   the input between its cut and the stop exactly twice, everything else once), delete.
//!
//! And requests in the wrong state are 409s naming the state; `drain` is a 501 naming
//! the field; the CLI commands answer in one line.
//!
//! Each test starts its own broker and processes; they run one at a time (a lock), so
//! that two JVMs and two clusters never share the machine's cores.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{free_addr, wait_for, ADMIN};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weir_api::client::{Client, ClientError};
use weir_api::local::generator;
use weir_broker::kafka::KafkaBroker;
use weir_broker::{Broker, OutgoingRecord, TransactionalWriter};
use weir_core::ids::JobId;
use weir_core::wire::JobState;

const PARTITIONS: u32 = 2;
/// Events per produced chunk.
const CHUNK_EVENTS: u64 = 400;
/// The job, with its checkpoint interval to fill in.
const SPEC: &str = r#"
name: big-payments
source: { topic: payments, format: json, event_time: created_at }
pipeline:
  - filter: "amount > 400.0 && status == 'succeeded'"
  - map: { card: "card_id", amount: "amount", event_id: "event_id" }
sink: { topic: big-payments, format: json }
dead_letter_topic: big-payments-dlq
checkpoint_interval: INTERVAL
"#;
/// The longest allowed, longer than the checks that use it take: after its first
/// checkpoint the job commits only when paused or stopped, so what is visible after a
/// pause was committed by the pause.
const INTERVAL_FAR: &str = "20s";
/// Short: outputs become visible soon after they are produced.
const INTERVAL_SHORT: &str = "500ms";
/// The bound of every wait on the cluster.
const WAIT_MS: u64 = 60_000;
/// How long the test watches for output that must not come (paused or stopped).
const QUIET_MS: u64 = 3_000;
/// How long the worker gets to read what was produced before the test pauses it; the
/// test checks afterwards that the pause committed progress, so too short fails loudly.
const READ_AHEAD_MS: u64 = 3_000;

/// One test at a time: each starts a broker and a cluster.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A broker, a coordinator and a worker; all stopped when dropped.
struct Cluster {
    _dir: tempfile::TempDir,
    kafka_dir: PathBuf,
    children: Vec<Child>,
    broker: KafkaBroker,
    admin: Client,
    coordinator: String,
    job: JobId,
    producer_chunks: u64,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
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
        .env("RUST_LOG", "warn")
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

impl Cluster {
    /// A running cluster with the job running at `interval` and a first chunk of input
    /// committed on every partition (the first checkpoint after a start comes at once).
    async fn start(interval: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let kafka_dir = dir.path().join("kafka");
        std::fs::create_dir_all(&kafka_dir).unwrap();
        let bootstrap = start_kafka(&kafka_dir);
        let broker = KafkaBroker::new(&bootstrap).unwrap();
        for (topic, n) in [
            ("payments", PARTITIONS),
            ("big-payments", PARTITIONS),
            ("big-payments-dlq", 1),
        ] {
            broker.create_topic(topic, n).await.unwrap();
        }
        let coordinator = free_addr();
        let mut children = Vec::new();
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c_dir = dir.path().join("c1").display().to_string();
        children.push(spawn(
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
        ));
        let admin = Client::new(vec![coordinator.clone()], Some(ADMIN.into()));
        wait_for("a leader", WAIT_MS, || async {
            admin.cluster_status().await.ok()?.leader
        })
        .await;
        admin.create_tenant("pay").await.unwrap();
        let job = admin
            .submit_job(SPEC.replace("INTERVAL", interval).into_bytes(), Some("pay"))
            .await
            .unwrap()
            .id;
        let (w_dir, cp_dir) = (
            dir.path().join("w1").display().to_string(),
            dir.path().join("checkpoints").display().to_string(),
        );
        children.push(spawn(
            &kafka_dir,
            "w1",
            &args(&[
                "worker",
                "--id",
                "w1",
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
        ));
        let mut cluster = Cluster {
            _dir: dir,
            kafka_dir,
            children,
            broker,
            admin,
            coordinator,
            job,
            producer_chunks: 0,
        };
        cluster.wait_state(JobState::Running).await;
        cluster.produce_chunk().await;
        wait_for("a first checkpoint on every partition", WAIT_MS, || async {
            let detail = cluster.admin.get_job(cluster.job).await.ok()?;
            detail
                .partitions
                .iter()
                .all(|p| p.offset.is_some_and(|o| o > 0))
                .then_some(())
        })
        .await;
        cluster
    }

    async fn state(&self) -> JobState {
        self.admin.get_job(self.job).await.unwrap().state
    }

    async fn wait_state(&self, state: JobState) {
        wait_for(state.as_str(), WAIT_MS, || async {
            (self.admin.get_job(self.job).await.ok()?.state == state).then_some(())
        })
        .await;
    }

    /// Produces one chunk of generated payments, committed.
    async fn produce_chunk(&mut self) {
        let (events, _) = generator::events(CHUNK_EVENTS, 100 + self.producer_chunks);
        self.producer_chunks += 1;
        let mut producer = self.broker.writer("test-generator").await.unwrap();
        producer.begin().unwrap();
        for e in events {
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
    }

    /// Every committed record of `topic`, per partition.
    async fn read(&self, topic: &str, partitions: u32) -> Vec<Vec<Vec<u8>>> {
        self.read_at(topic, partitions)
            .await
            .into_iter()
            .map(|p| p.into_iter().map(|(_, value)| value).collect())
            .collect()
    }

    /// The source records before each partition's offset in `offsets` (transaction
    /// markers take offsets too, so records are told apart by their own offset).
    async fn source_before(&self, offsets: &[i64]) -> Vec<Vec<Vec<u8>>> {
        self.read_at("payments", PARTITIONS)
            .await
            .into_iter()
            .zip(offsets)
            .map(|(records, end)| {
                records
                    .into_iter()
                    .filter(|(offset, _)| offset < end)
                    .map(|(_, value)| value)
                    .collect()
            })
            .collect()
    }

    /// Every committed record of `topic` with its offset, per partition.
    async fn read_at(&self, topic: &str, partitions: u32) -> Vec<Vec<(i64, Vec<u8>)>> {
        let mut out = Vec::new();
        for p in 0..partitions as i32 {
            let mut records = Vec::new();
            let mut offset = 0;
            loop {
                let batch = self
                    .broker
                    .read_committed(topic, p, offset, 10_000)
                    .await
                    .expect("read_committed");
                let Some(last) = batch.last() else { break };
                offset = last.offset + 1;
                records.extend(
                    batch
                        .into_iter()
                        .map(|r| (r.offset, r.value.unwrap_or_default())),
                );
            }
            out.push(records);
        }
        out
    }

    /// The outputs committed to the sink (the test's own markers left out), counted.
    async fn outputs(&self) -> BTreeMap<(String, String, i64), u64> {
        let mut seen = BTreeMap::new();
        for bytes in self
            .read("big-payments", PARTITIONS)
            .await
            .into_iter()
            .flatten()
        {
            if bytes.starts_with(MARKER) {
                continue;
            }
            *seen.entry(parse_output(&bytes)).or_insert(0) += 1;
        }
        seen
    }

    /// The outputs of the given source records, computed independently.
    fn expected(source: &[&[Vec<u8>]]) -> BTreeMap<(String, String, i64), u64> {
        let mut out = BTreeMap::new();
        for bytes in source.iter().flat_map(|p| p.iter()) {
            let Ok(serde_json::Value::Object(e)) =
                serde_json::from_slice::<serde_json::Value>(bytes)
            else {
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
        out
    }

    /// Waits until the sink holds the outputs of every source record, then checks each
    /// appears exactly once.
    async fn wait_all_outputs(&self) {
        let source = self.read("payments", PARTITIONS).await;
        let refs: Vec<&[Vec<u8>]> = source.iter().map(Vec::as_slice).collect();
        let expected = Self::expected(&refs);
        assert!(!expected.is_empty(), "the input has work");
        let total: u64 = expected.values().sum();
        let got = wait_for("every output to be committed", WAIT_MS, || async {
            let got = self.outputs().await;
            (got.values().sum::<u64>() >= total).then_some(got)
        })
        .await;
        assert_eq!(got, expected, "every expected output exactly once");
    }

    /// The committed source offset of each partition, as the group recorded it.
    async fn committed_offsets(&self) -> Vec<i64> {
        let detail = self.admin.get_job(self.job).await.unwrap();
        detail
            .partitions
            .iter()
            .map(|p| p.offset.unwrap_or(0))
            .collect()
    }

    /// Checks for [`QUIET_MS`] that no output appears beyond `outputs`.
    async fn assert_quiet(&self, outputs: &BTreeMap<(String, String, i64), u64>) {
        tokio::time::sleep(Duration::from_millis(QUIET_MS)).await;
        assert_eq!(
            &self.outputs().await,
            outputs,
            "no output while not running"
        );
    }

    /// `POST /v1/jobs/{job}/{path}` with a JSON body, as the administrator.
    async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!(
                "http://{}/v1/jobs/{}/{path}",
                self.coordinator, self.job
            ))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// The API's status and error sentence for a request expected to be refused.
    fn refused(result: Result<weir_core::wire::JobSummary, ClientError>) -> (u16, String) {
        match result {
            Err(ClientError::Api { status, error, .. }) => (status, error),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

/// What the test writes to the sink topic itself, to see the last stable offset move.
const MARKER: &[u8] = b"test-marker";

fn parse_output(bytes: &[u8]) -> (String, String, i64) {
    let v: serde_json::Value = serde_json::from_slice(bytes).expect("an output is JSON");
    (
        v["card"].as_str().unwrap_or_default().to_string(),
        v["event_id"].as_str().unwrap_or_default().to_string(),
        (v["amount"].as_f64().unwrap_or(f64::NAN) * 100.0).round() as i64,
    )
}

/// Pauses the cluster's job (through the CLI, as a user would) and waits for `paused`.
async fn pause_with_cli(c: &Cluster) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["job", "pause", &c.job.to_string(), "--coordinator"])
        .arg(&c.coordinator)
        .args(["--token", ADMIN])
        .output()
        .expect("run weir job pause");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.trim() == format!("job {} is pausing", c.job)
            || stdout.trim() == format!("job {} is paused", c.job),
        "{stdout}"
    );
    c.wait_state(JobState::Paused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_commits_what_was_processed_holds_no_transaction_and_outputs_nothing_more() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(INTERVAL_FAR).await;
    let before = c.committed_offsets().await;
    c.produce_chunk().await;
    tokio::time::sleep(Duration::from_millis(READ_AHEAD_MS)).await;
    pause_with_cli(&c).await;

    // The pause committed what the partitions had processed: the committed offsets moved
    // (the checkpoint interval is far away), and the outputs of exactly the records
    // before them are visible to a read_committed reader now.
    let at_pause = c.committed_offsets().await;
    assert!(
        at_pause.iter().zip(&before).any(|(now, was)| now > was),
        "the pause committed progress: {before:?} -> {at_pause:?}"
    );
    let source = c.source_before(&at_pause).await;
    let processed: Vec<&[Vec<u8>]> = source.iter().map(Vec::as_slice).collect();
    let outputs = c.outputs().await;
    assert_eq!(outputs, Cluster::expected(&processed));

    // No transaction is left open: a record committed to the sink by another producer is
    // visible at once (an open one would hold the last stable offset back).
    let mut other = c.broker.writer("test-marker").await.unwrap();
    other.begin().unwrap();
    for p in 0..PARTITIONS as i32 {
        let record = OutgoingRecord {
            topic: "big-payments".into(),
            partition: Some(p),
            key: None,
            value: MARKER.to_vec(),
            timestamp_ms: None,
        };
        other.send(record).await.unwrap();
    }
    other.commit("test-marker", &[]).await.unwrap();
    let sink = c.read("big-payments", PARTITIONS).await;
    assert!(
        sink.iter()
            .all(|p| p.last().map(Vec::as_slice) == Some(MARKER)),
        "the marker is visible on every partition at once"
    );

    // Paused: new input gives no output and moves no offset.
    c.produce_chunk().await;
    c.assert_quiet(&outputs).await;
    assert_eq!(c.committed_offsets().await, at_pause);
    assert_eq!(c.state().await, JobState::Paused);
    // A repeated pause changes nothing; a start is refused, naming the state.
    assert_eq!(
        c.admin.pause_job(c.job).await.unwrap().state,
        JobState::Paused
    );
    let (status, error) = Cluster::refused(c.admin.start_job(c.job).await);
    assert_eq!(status, 409);
    assert!(error.contains("is paused"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reads_on_where_the_pause_left_off_every_output_exactly_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(INTERVAL_SHORT).await;
    c.produce_chunk().await;
    pause_with_cli(&c).await;
    c.produce_chunk().await;
    let outputs = c.outputs().await;
    c.assert_quiet(&outputs).await;
    assert_eq!(
        c.admin.resume_job(c.job).await.unwrap().state,
        JobState::Running
    );
    c.wait_all_outputs().await;
    // And once more, with input arriving while running.
    c.produce_chunk().await;
    c.wait_all_outputs().await;
    // Resuming a running job changes nothing.
    assert_eq!(
        c.admin.resume_job(c.job).await.unwrap().state,
        JobState::Running
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_releases_every_partition_after_committing_and_refuses_what_a_stopped_job_cannot_do() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(INTERVAL_FAR).await;
    let before = c.committed_offsets().await;
    c.produce_chunk().await;
    tokio::time::sleep(Duration::from_millis(READ_AHEAD_MS)).await;
    let answer = c.admin.stop_job(c.job).await.unwrap();
    assert!(
        matches!(answer.state, JobState::Stopping | JobState::Stopped),
        "{answer:?}"
    );
    c.wait_state(JobState::Stopped).await;
    let detail = c.admin.get_job(c.job).await.unwrap();
    assert!(
        detail.partitions.iter().all(|p| p.worker.is_none()),
        "stopped means released: {detail:?}"
    );
    let at_stop = c.committed_offsets().await;
    assert!(
        at_stop.iter().zip(&before).any(|(now, was)| now > was),
        "the stop committed progress: {before:?} -> {at_stop:?}"
    );
    // Everything it processed is committed and visible.
    let source = c.source_before(&at_stop).await;
    let processed: Vec<&[Vec<u8>]> = source.iter().map(Vec::as_slice).collect();
    let outputs = c.outputs().await;
    assert_eq!(outputs, Cluster::expected(&processed));
    c.produce_chunk().await;
    c.assert_quiet(&outputs).await;

    // Wrong-state requests: 409 naming the state.
    for (request, result) in [
        ("pause", c.admin.pause_job(c.job).await),
        ("resume", c.admin.resume_job(c.job).await),
    ] {
        let (status, error) = Cluster::refused(result);
        assert_eq!(status, 409, "{request}: {error}");
        assert!(error.contains("is stopped"), "{request}: {error}");
    }
    // Draining is not supported yet: 501 naming the field; a savepoint value of the
    // wrong kind is a 400 naming it.
    for (path, body, status, field) in [
        ("stop", r#"{"drain": true}"#, 501, "drain"),
        ("stop", r#"{"savepoint": "sp-1"}"#, 400, "savepoint"),
        ("start", r#"{"savepoint": true}"#, 400, "savepoint"),
    ] {
        let resp = c.post(path, body).await;
        assert_eq!(resp.status().as_u16(), status, "{path} {body}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["field"], field, "{path}: {err}");
    }
    // A malformed id on the command line: one sentence on stderr.
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["job", "stop", "not-a-number", "--coordinator"])
        .arg(&c.coordinator)
        .output()
        .expect("run weir job stop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not-a-number"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_runs_a_stopped_job_again_from_its_last_committed_checkpoint_exactly_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(INTERVAL_SHORT).await;
    c.produce_chunk().await;
    c.admin.stop_job(c.job).await.unwrap();
    c.wait_state(JobState::Stopped).await;
    c.produce_chunk().await;
    let answer = c.admin.start_job(c.job).await.unwrap();
    assert!(
        matches!(answer.state, JobState::Pending | JobState::Running),
        "{answer:?}"
    );
    c.wait_state(JobState::Running).await;
    c.wait_all_outputs().await;
    c.produce_chunk().await;
    c.wait_all_outputs().await;
    // Starting a running job changes nothing; a stop and a start again still lose and
    // repeat nothing.
    assert_eq!(
        c.admin.start_job(c.job).await.unwrap().state,
        JobState::Running
    );
    c.admin.stop_job(c.job).await.unwrap();
    c.wait_state(JobState::Stopped).await;
    c.admin.start_job(c.job).await.unwrap();
    c.produce_chunk().await;
    c.wait_state(JobState::Running).await;
    c.wait_all_outputs().await;
}

/// Runs `weir job ARGS...` against the cluster as the administrator; its one line.
fn cli(c: &Cluster, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("job")
        .args(args)
        .arg("--coordinator")
        .arg(&c.coordinator)
        .args(["--token", ADMIN])
        .output()
        .expect("run weir job");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "weir job {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_stop_with_one_and_start_from_one_repeat_exactly_the_outputs_after_its_cut() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut c = Cluster::start(INTERVAL_SHORT).await;
    c.produce_chunk().await;
    c.wait_all_outputs().await;
    let job = c.job.to_string();

    // A savepoint of the running job pins every partition's committed cut.
    let line = cli(&c, &["savepoint", &job]);
    assert_eq!(line, format!("savepoint 1 of job {job} is complete"));
    let early = c.admin.savepoints(c.job).await.unwrap();
    assert_eq!(early.len(), 1);
    let early_cut: Vec<i64> = early[0].partitions.iter().map(|p| p.offset).collect();
    assert_eq!(early_cut.len(), PARTITIONS as usize);
    assert!(early_cut.iter().all(|o| *o > 0), "{early_cut:?}");

    // More input, committed over many checkpoints (the early savepoint's snapshots stay).
    c.produce_chunk().await;
    c.wait_all_outputs().await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;

    // Stop with a savepoint: its cut is exactly the stop's.
    let line = cli(&c, &["stop", &job, "--savepoint"]);
    assert!(
        line == format!("job {job} is stopping (savepoint 2)")
            || line == format!("job {job} is stopped (savepoint 2)"),
        "{line}"
    );
    c.wait_state(JobState::Stopped).await;
    let at_stop = c.committed_offsets().await;
    let savepoints = c.admin.savepoints(c.job).await.unwrap();
    let at_stop_sp = &savepoints[1];
    assert_eq!(
        at_stop_sp.status,
        weir_core::wire::SavepointStatus::Complete
    );
    let stop_cut: Vec<i64> = at_stop_sp.partitions.iter().map(|p| p.offset).collect();
    assert_eq!(stop_cut, at_stop, "the stop's savepoint is the stop's cut");

    // Starting from it loses and repeats nothing.
    c.produce_chunk().await;
    let line = cli(&c, &["start", &job, "--from-savepoint", "sp-2"]);
    assert!(line.ends_with("(savepoint 2)"), "{line}");
    c.wait_state(JobState::Running).await;
    c.wait_all_outputs().await;

    // Refusals: a start from a savepoint of a running job (409), of a savepoint that does
    // not exist (404), a savepoint of a job that does not exist (404).
    let resp = c.post("start", r#"{"savepoint": 1}"#).await;
    assert_eq!(resp.status().as_u16(), 409);
    let resp = c.post("start", r#"{"savepoint": 99}"#).await;
    assert_eq!(resp.status().as_u16(), 404);
    match c.admin.take_savepoint(JobId(999)).await {
        Err(ClientError::Api { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }

    // Stop, then start from the early savepoint: the outputs of the input between its cut
    // and the stop come again, exactly once more; everything else exactly once.
    c.admin.stop_job(c.job).await.unwrap();
    c.wait_state(JobState::Stopped).await;
    let second_stop = c.committed_offsets().await;
    cli(&c, &["start", &job, "--from-savepoint", "1"]);
    c.wait_state(JobState::Running).await;
    let source = c.read_at("payments", PARTITIONS).await;
    let all: Vec<Vec<Vec<u8>>> = source
        .iter()
        .map(|p| p.iter().map(|(_, v)| v.clone()).collect())
        .collect();
    let again: Vec<Vec<Vec<u8>>> = source
        .iter()
        .enumerate()
        .map(|(p, records)| {
            records
                .iter()
                .filter(|(o, _)| *o >= early_cut[p] && *o < second_stop[p])
                .map(|(_, v)| v.clone())
                .collect()
        })
        .collect();
    let mut expected = Cluster::expected(&all.iter().map(Vec::as_slice).collect::<Vec<_>>());
    for (key, n) in Cluster::expected(&again.iter().map(Vec::as_slice).collect::<Vec<_>>()) {
        *expected.entry(key).or_insert(0) += n;
    }
    let total: u64 = expected.values().sum();
    let got = wait_for("the repeated outputs", WAIT_MS, || async {
        let got = c.outputs().await;
        (got.values().sum::<u64>() >= total).then_some(got)
    })
    .await;
    assert_eq!(got, expected, "outputs after the early cut exactly twice");

    // Delete: gone from the list; starting from it is a 404.
    let line = cli(&c, &["delete-savepoint", &job, "sp-1"]);
    assert_eq!(line, format!("savepoint 1 of job {job} deleted"));
    let left: Vec<u64> = c
        .admin
        .savepoints(c.job)
        .await
        .unwrap()
        .iter()
        .map(|sp| sp.savepoint.0)
        .collect();
    assert_eq!(left, vec![2]);
    match c
        .admin
        .delete_savepoint(c.job, weir_core::ids::SavepointId(1))
        .await
    {
        Err(ClientError::Api { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
}
