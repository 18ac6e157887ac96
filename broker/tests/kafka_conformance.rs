//! `KafkaBroker` against a real Kafka broker (Kafka 4.3.1, single-node KRaft on loopback,
//! started by `scripts/kafka/kafka.sh`, which fetches the jars from Maven Central on first
//! use). The tests of this file share one broker while any of them runs; the last one to
//! finish stops it (a Drop guard, so a failing test stops it too).
//!
//! Besides the conformance suite every broker implementation passes, these are the checks
//! that only a real broker can answer: that a zombie producer is fenced, that aborted and
//! still-open transactions stay invisible to `read_committed` readers, and that offsets
//! sent with `send_offsets_to_transaction` become the group's committed offsets exactly
//! when the transaction commits.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use weir_broker::kafka::{KafkaBroker, KafkaSettings};
use weir_broker::memory::partition_for_key;
use weir_broker::{
    Broker, BrokerError, BrokerRecord, OutgoingRecord, PartitionReader, SourceOffset,
    TransactionalWriter,
};
use weir_broker_conformance as conformance;

/// The test broker's `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
const EXPIRY_CHECK_INTERVAL_MS: u32 = 500;

/// A broker started by kafka.sh in its own temporary directory; stopped on drop.
struct KafkaFixture {
    script: PathBuf,
    dir: PathBuf,
    bootstrap: String,
    _tempdir: tempfile::TempDir,
}

impl KafkaFixture {
    fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka/kafka.sh");
        let tempdir = tempfile::Builder::new()
            .prefix("weir-kafka-test-")
            .tempdir()
            .expect("a temporary directory");
        let dir = tempdir.path().join("broker");
        let output = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg("--dir")
            .arg(&dir)
            // How often the coordinator looks for expired transactions (default 10 s), so
            // the expiry test need not wait long.
            .arg("--config")
            .arg(format!(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms={EXPIRY_CHECK_INTERVAL_MS}"
            ))
            // Records stamped in 2023 (the suite's fixed timestamp) are past the default
            // 7-day retention: the first retention pass, 30 s after start, would delete
            // them and move the log start offset.
            .arg("--config")
            .arg("log.retention.ms=-1")
            .stdin(Stdio::null())
            .output()
            .expect("running scripts/kafka/kafka.sh start");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprint!("{stderr}");
        assert!(
            output.status.success(),
            "kafka.sh start --dir {} failed ({}): {stdout}{stderr}",
            dir.display(),
            output.status
        );
        let bootstrap = stdout
            .lines()
            .find_map(|line| line.strip_prefix("bootstrap="))
            .unwrap_or_else(|| panic!("kafka.sh start printed no bootstrap= line: {stdout}"))
            .trim()
            .to_string();
        Self {
            script,
            dir,
            bootstrap,
            _tempdir: tempdir,
        }
    }
}

impl Drop for KafkaFixture {
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "kafka.sh stop --dir {} failed: {status:?}",
                self.dir.display()
            );
        }
    }
}

/// The broker all running tests share: started by the first, stopped after the last.
fn shared_kafka() -> Arc<KafkaFixture> {
    static SHARED: Mutex<Weak<KafkaFixture>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(fixture) = shared.upgrade() {
        return fixture;
    }
    let fixture = Arc::new(KafkaFixture::start());
    *shared = Arc::downgrade(&fixture);
    fixture
}

fn runtime() -> tokio::runtime::Runtime {
    // Partition actors run on single-threaded runtimes: so do these tests.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn connect(fixture: &KafkaFixture) -> KafkaBroker {
    KafkaBroker::new(&fixture.bootstrap).expect("a broker handle")
}

fn record(topic: &str, partition: i32, value: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_string(),
        partition: Some(partition),
        key: Some(format!("k-{value}").into_bytes()),
        value: value.as_bytes().to_vec(),
        timestamp_ms: Some(1_700_000_000_000),
    }
}

fn values(records: &[BrokerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

async fn send_all<W: TransactionalWriter>(
    writer: &mut W,
    topic: &str,
    partition: i32,
    vals: &[&str],
) {
    for v in vals {
        writer
            .send(record(topic, partition, v))
            .await
            .expect("send");
    }
}

/// The suite every broker implementation passes (`tests/memory_conformance.rs` runs it
/// against the model).
#[test]
fn conformance_suite() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let started = tokio::time::Instant::now();
        if let Err(failure) = conformance::run_all(&broker, "kafka-conformance").await {
            panic!("{failure}");
        }
        eprintln!("conformance suite passed in {:?}", started.elapsed());
    });
}

#[test]
fn committed_records_are_visible_and_aborted_ones_never() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let topic = "kc-visibility";
        broker.create_topic(topic, 1).await.expect("create topic");
        // Creating an existing topic is fine.
        broker
            .create_topic(topic, 1)
            .await
            .expect("create topic again");
        assert_eq!(broker.partition_count(topic).await.unwrap(), 1);

        let mut writer = broker.writer("kc-visibility-tx").await.expect("writer");
        writer.begin().unwrap();
        send_all(&mut writer, topic, 0, &["a", "b", "c"]).await;
        writer
            .commit("kc-visibility-group", &[])
            .await
            .expect("commit");

        writer.begin().unwrap();
        send_all(&mut writer, topic, 0, &["x", "y"]).await;
        // Into the log first: an abort would otherwise purge them before they are written.
        writer.await_deliveries().await.expect("x and y delivered");
        writer.abort().await.expect("abort");

        writer.begin().unwrap();
        send_all(&mut writer, topic, 0, &["d"]).await;
        writer
            .commit("kc-visibility-group", &[])
            .await
            .expect("commit");

        let seen = broker.read_committed(topic, 0, 0, 100).await.unwrap();
        assert_eq!(values(&seen), ["a", "b", "c", "d"]);
        // Offsets: a b c at 0..3, their commit marker at 3, x y at 4..6 and the abort
        // marker at 6, d at 7.
        let offsets: Vec<i64> = seen.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [0, 1, 2, 7]);
        assert_eq!(seen[0].key.as_deref(), Some(&b"k-a"[..]));
        assert_eq!(seen[0].timestamp_ms, Some(1_700_000_000_000));

        // A partition reader sees the same, batch by batch.
        let mut reader = broker.reader(topic, 0, 0).await.unwrap();
        let mut read = Vec::new();
        for _ in 0..50 {
            read.extend(
                reader
                    .poll_batch(2, Duration::from_millis(500))
                    .await
                    .unwrap(),
            );
            if read.len() >= 4 {
                break;
            }
        }
        assert_eq!(values(&read), ["a", "b", "c", "d"]);
        assert_eq!(reader.position(), 8);
        // Nothing more: an empty batch once the wait is over.
        let more = reader
            .poll_batch(10, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(more.is_empty(), "{more:?}");
        assert_eq!(
            reader.high_watermark(),
            Some(9),
            "after d's commit marker at 8"
        );

        // Reading from the middle, and from the end.
        let tail = broker.read_committed(topic, 0, 2, 100).await.unwrap();
        assert_eq!(values(&tail), ["c", "d"]);
        let none = broker.read_committed(topic, 0, 9, 100).await.unwrap();
        assert!(none.is_empty());
        let capped = broker.read_committed(topic, 0, 0, 2).await.unwrap();
        assert_eq!(values(&capped), ["a", "b"]);
    });
}

#[test]
fn an_open_transaction_hides_later_records_until_it_ends() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let topic = "kc-open";
        broker.create_topic(topic, 1).await.unwrap();
        let mut slow = broker.writer("kc-open-slow").await.unwrap();
        let mut fast = broker.writer("kc-open-fast").await.unwrap();
        slow.begin().unwrap();
        send_all(&mut slow, topic, 0, &["slow-1"]).await;
        // Let the slow record reach the log before the fast transaction starts.
        slow.await_deliveries().await.unwrap();
        fast.begin().unwrap();
        send_all(&mut fast, topic, 0, &["fast-1"]).await;
        fast.commit("g", &[]).await.unwrap();

        // The last stable offset is at slow-1: fast-1, though committed, is not visible.
        let seen = broker.read_committed(topic, 0, 0, 100).await.unwrap();
        assert!(seen.is_empty(), "{:?}", values(&seen));

        slow.commit("g", &[]).await.unwrap();
        let seen = broker.read_committed(topic, 0, 0, 100).await.unwrap();
        assert_eq!(values(&seen), ["slow-1", "fast-1"]);
    });
}

#[test]
fn a_zombie_producer_is_fenced() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let topic = "kc-fencing";
        broker.create_topic(topic, 1).await.unwrap();
        broker.create_topic("kc-fencing-src", 1).await.unwrap();

        // The zombie has an open transaction when its successor starts.
        let mut zombie = broker.writer("kc-fencing-tx").await.unwrap();
        zombie.begin().unwrap();
        send_all(&mut zombie, topic, 0, &["zombie-open"]).await;
        let mut successor = broker.writer("kc-fencing-tx").await.unwrap();
        let err = zombie
            .commit("kc-fencing-group", &[offset("kc-fencing-src", 0, 5)])
            .await
            .expect_err("a fenced producer cannot commit");
        eprintln!("zombie with an open transaction, at commit: {err}");
        assert!(matches!(err, BrokerError::Fenced(_)), "{err:?}");
        // Fenced sticks: every later call says so.
        assert!(matches!(zombie.begin(), Err(BrokerError::Fenced(_))));
        assert!(matches!(zombie.abort().await, Err(BrokerError::Fenced(_))));

        successor.begin().unwrap();
        send_all(&mut successor, topic, 0, &["successor"]).await;
        successor.commit("kc-fencing-group", &[]).await.unwrap();

        // A zombie idle when fenced finds out on its next transaction.
        let mut idle_zombie = successor;
        let mut third = broker.writer("kc-fencing-tx").await.unwrap();
        idle_zombie
            .begin()
            .expect("begin is local; the zombie cannot know yet");
        let outcome = async {
            idle_zombie.send(record(topic, 0, "idle-zombie")).await?;
            idle_zombie.commit("kc-fencing-group", &[]).await
        }
        .await;
        eprintln!("zombie idle when fenced, at send or commit: {outcome:?}");
        assert!(
            matches!(outcome, Err(BrokerError::Fenced(_))),
            "{outcome:?}"
        );

        third.begin().unwrap();
        send_all(&mut third, topic, 0, &["third"]).await;
        third.commit("kc-fencing-group", &[]).await.unwrap();

        let seen = broker.read_committed(topic, 0, 0, 100).await.unwrap();
        assert_eq!(values(&seen), ["successor", "third"]);
        // The zombie's offsets were never committed.
        assert_eq!(
            broker
                .committed_offset("kc-fencing-group", "kc-fencing-src", 0)
                .await
                .unwrap(),
            None
        );
    });
}

fn offset(topic: &str, partition: i32, next_offset: i64) -> SourceOffset {
    SourceOffset {
        topic: topic.to_string(),
        partition,
        next_offset,
    }
}

#[test]
fn offsets_commit_with_the_transaction_and_only_then() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let source = "kc-offsets-src";
        let sink = "kc-offsets-sink";
        let group = "kc-offsets-group";
        broker.create_topic(source, 2).await.unwrap();
        broker.create_topic(sink, 1).await.unwrap();
        assert_eq!(
            broker.committed_offset(group, source, 0).await.unwrap(),
            None
        );

        let mut writer = broker.writer("kc-offsets-tx").await.unwrap();
        writer.begin().unwrap();
        send_all(&mut writer, sink, 0, &["out-1"]).await;
        writer
            .commit(group, &[offset(source, 0, 10), offset(source, 1, 3)])
            .await
            .unwrap();
        assert_eq!(
            broker.committed_offset(group, source, 0).await.unwrap(),
            Some(10)
        );
        assert_eq!(
            broker.committed_offset(group, source, 1).await.unwrap(),
            Some(3)
        );

        // Offsets in an aborted transaction are not committed.
        writer.begin().unwrap();
        send_all(&mut writer, sink, 0, &["out-aborted"]).await;
        writer.await_deliveries().await.unwrap();
        writer.abort().await.unwrap();
        assert_eq!(
            broker.committed_offset(group, source, 0).await.unwrap(),
            Some(10)
        );

        // A transaction of offsets only (nothing produced) commits them too.
        writer.begin().unwrap();
        writer
            .commit(group, &[offset(source, 0, 12)])
            .await
            .unwrap();
        assert_eq!(
            broker.committed_offset(group, source, 0).await.unwrap(),
            Some(12)
        );
        assert_eq!(
            broker.committed_offset(group, source, 1).await.unwrap(),
            Some(3)
        );
        // Another group is not affected.
        assert_eq!(
            broker
                .committed_offset("kc-other", source, 0)
                .await
                .unwrap(),
            None
        );

        let seen = broker.read_committed(sink, 0, 0, 100).await.unwrap();
        assert_eq!(values(&seen), ["out-1"]);
    });
}

#[test]
fn keys_land_on_the_java_clients_partition() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let topic = "kc-keys";
        broker.create_topic(topic, 4).await.unwrap();
        let mut writer = broker.writer("kc-keys-tx").await.unwrap();
        writer.begin().unwrap();
        let keys: Vec<String> = (0..20).map(|i| format!("key-{i}")).collect();
        for key in &keys {
            writer
                .send(OutgoingRecord {
                    topic: topic.to_string(),
                    partition: None,
                    key: Some(key.clone().into_bytes()),
                    value: key.clone().into_bytes(),
                    timestamp_ms: None,
                })
                .await
                .unwrap();
        }
        writer.commit("g", &[]).await.unwrap();
        let mut placed = 0;
        for partition in 0..4 {
            for r in broker
                .read_committed(topic, partition, 0, 100)
                .await
                .unwrap()
            {
                let key = r.key.clone().unwrap();
                assert_eq!(partition_for_key(&key, 4), partition);
                assert!(
                    r.timestamp_ms.is_some(),
                    "Kafka stamps records without a timestamp"
                );
                placed += 1;
            }
        }
        assert_eq!(placed, keys.len());
    });
}

#[test]
fn unknown_topics_and_partitions_are_reported() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let missing = "kc-missing";
        assert!(matches!(
            broker.partition_count(missing).await,
            Err(BrokerError::UnknownTopic(_))
        ));
        assert!(matches!(
            broker.reader(missing, 0, 0).await,
            Err(BrokerError::UnknownTopic(_))
        ));
        assert!(matches!(
            broker.read_committed(missing, 0, 0, 10).await,
            Err(BrokerError::UnknownTopic(_))
        ));
        broker.create_topic("kc-small", 2).await.unwrap();
        assert!(matches!(
            broker.reader("kc-small", 2, 0).await,
            Err(BrokerError::UnknownTopic(_))
        ));

        assert!(matches!(
            broker.writer("").await,
            Err(BrokerError::Fatal(_))
        ));
        assert!(matches!(
            broker.reader("kc-small", 0, -1).await,
            Err(BrokerError::Fatal(_))
        ));
        assert!(matches!(
            broker.create_topic("kc-none", 0).await,
            Err(BrokerError::InvalidTopic(_))
        ));
        // An offset past the log end is an error, never a silent jump.
        let mut beyond = broker.reader("kc-small", 0, 99).await.unwrap();
        let polled = beyond.poll_batch(1, Duration::from_secs(5)).await;
        assert!(matches!(polled, Err(BrokerError::Fatal(_))), "{polled:?}");

        let mut writer = broker.writer("kc-unknown-tx").await.unwrap();
        writer.begin().unwrap();
        let err = writer
            .send(OutgoingRecord {
                topic: missing.to_string(),
                partition: None,
                key: Some(b"k".to_vec()),
                value: b"v".to_vec(),
                timestamp_ms: None,
            })
            .await
            .expect_err("no such topic");
        assert!(matches!(err, BrokerError::UnknownTopic(_)), "{err:?}");
        // The writer is still usable.
        writer.abort().await.unwrap();

        // Offsets of a missing topic: the transaction can only be aborted.
        writer.begin().unwrap();
        let err = writer
            .send(record("kc-small", 2, "nowhere"))
            .await
            .expect_err("no partition 2");
        assert!(matches!(err, BrokerError::UnknownTopic(_)), "{err:?}");
        send_all(&mut writer, "kc-small", 0, &["doomed"]).await;
        let err = writer
            .commit("kc-unknown-group", &[offset(missing, 0, 1)])
            .await
            .expect_err("no such source topic");
        assert!(matches!(err, BrokerError::UnknownTopic(_)), "{err:?}");
        let again = writer.commit("kc-unknown-group", &[]).await;
        assert!(
            matches!(again, Err(BrokerError::AbortRequired(_))),
            "{again:?}"
        );
        writer.abort().await.unwrap();

        // Usage errors, which leave the writer usable.
        assert!(matches!(writer.abort().await, Err(BrokerError::Fatal(_))));
        assert!(matches!(
            writer.send(record("kc-small", 0, "outside")).await,
            Err(BrokerError::Fatal(_))
        ));
        writer.begin().unwrap();
        assert!(matches!(writer.begin(), Err(BrokerError::Fatal(_))));
        let negative = writer.commit("g", &[offset("kc-small", 0, -1)]).await;
        assert!(
            matches!(negative, Err(BrokerError::Fatal(_))),
            "{negative:?}"
        );
        send_all(&mut writer, "kc-small", 1, &["kept"]).await;
        writer
            .commit("kc-unknown-group", &[offset("kc-small", 0, 0)])
            .await
            .unwrap();
        let seen = broker.read_committed("kc-small", 1, 0, 10).await.unwrap();
        assert_eq!(values(&seen), ["kept"]);
        assert!(broker
            .read_committed("kc-small", 0, 0, 10)
            .await
            .unwrap()
            .is_empty());
    });
}

/// A transaction open longer than its `transaction.timeout.ms` is aborted by the
/// coordinator, which bumps the producer epoch; the writer then finds itself fenced.
#[test]
fn a_transaction_the_broker_expired_cannot_commit() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let topic = "kc-expired";
        broker.create_topic(topic, 1).await.unwrap();
        broker.create_topic("kc-expired-src", 1).await.unwrap();
        let short = KafkaBroker::with_settings(KafkaSettings {
            transaction_timeout_ms: 1_000,
            delivery_timeout_ms: 1_000,
            ..KafkaSettings::new(&kafka.bootstrap)
        })
        .unwrap();
        let mut expiring = short.writer("kc-expired-tx").await.unwrap();
        expiring.begin().unwrap();
        send_all(&mut expiring, topic, 0, &["expired"]).await;
        expiring.await_deliveries().await.unwrap();

        // Another producer's record after it becomes visible once the coordinator has
        // aborted the expired transaction (the last stable offset moves past it).
        let mut other = broker.writer("kc-expired-other").await.unwrap();
        other.begin().unwrap();
        send_all(&mut other, topic, 0, &["after"]).await;
        other.commit("g", &[]).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = broker.read_committed(topic, 0, 0, 10).await.unwrap();
            if !seen.is_empty() {
                assert_eq!(values(&seen), ["after"]);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the expired transaction was never aborted"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // librdkafka reports the coordinator's epoch bump (KIP-360) as being fenced, a
        // fatal error: the producer cannot abort and go on, only be replaced.
        let commit = expiring
            .commit("kc-expired-group", &[offset("kc-expired-src", 0, 1)])
            .await;
        eprintln!("commit of a transaction the broker expired: {commit:?}");
        assert!(matches!(commit, Err(BrokerError::Fenced(_))), "{commit:?}");
        assert!(matches!(
            expiring.abort().await,
            Err(BrokerError::Fenced(_))
        ));
        assert!(matches!(expiring.begin(), Err(BrokerError::Fenced(_))));

        let mut replacement = short.writer("kc-expired-tx").await.unwrap();
        replacement.begin().unwrap();
        send_all(&mut replacement, topic, 0, &["replacement"]).await;
        replacement
            .commit("kc-expired-group", &[offset("kc-expired-src", 0, 1)])
            .await
            .unwrap();
        let seen = broker.read_committed(topic, 0, 0, 10).await.unwrap();
        assert_eq!(values(&seen), ["after", "replacement"]);
        assert_eq!(
            broker
                .committed_offset("kc-expired-group", "kc-expired-src", 0)
                .await
                .unwrap(),
            Some(1)
        );
    });
}

/// The record limit comes from the topic's `max.message.bytes` (DescribeConfigs) and the
/// writers' `message.max.bytes`; a record over it is `RecordTooLarge` and leaves the
/// transaction usable. An 800 KB record's 1.07 MB dead letter failed its partition at
/// every retry.
#[test]
fn record_limits_come_from_the_topic_and_a_record_over_them_is_refused() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        broker.create_topic("kc-limits-default", 1).await.unwrap();
        assert_eq!(
            broker.max_record_bytes("kc-limits-default").await.unwrap(),
            weir_broker::kafka::WRITER_MESSAGE_BYTES_MAX as usize
        );
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &kafka.bootstrap)
            .create()
            .unwrap();
        let small = NewTopic::new("kc-limits-small", 1, TopicReplication::Fixed(1))
            .set("max.message.bytes", "100000");
        admin
            .create_topics([&small], &AdminOptions::new())
            .await
            .unwrap();
        // Wait for the topic to have a leader (create_topic returns once it does).
        broker.create_topic("kc-limits-small", 1).await.unwrap();
        assert_eq!(
            broker.max_record_bytes("kc-limits-small").await.unwrap(),
            100_000
        );
        let mut writer = broker.writer("kc-limits-tx").await.unwrap();
        writer.begin().unwrap();
        let mut huge = record("kc-limits-default", 0, "x");
        huge.value = vec![b'x'; 1_100_000];
        let refused = writer.send(huge).await;
        assert!(
            matches!(refused, Err(BrokerError::RecordTooLarge(_))),
            "{refused:?}"
        );
        send_all(&mut writer, "kc-limits-default", 0, &["after"]).await;
        writer.commit("kc-limits-group", &[]).await.unwrap();
        let seen = broker
            .read_committed("kc-limits-default", 0, 0, 10)
            .await
            .unwrap();
        assert_eq!(values(&seen), ["after"]);
    });
}

/// A wedged producer's open transaction holds back every `read_committed` reader of its
/// partitions, other producers' committed records included, until the broker's
/// transaction timeout (60 s for weir's writers). Creating a writer with its transactional
/// id — what a fence duty does for a stopped job's partition — ends it at once.
#[test]
fn fencing_a_wedged_transactional_id_releases_readers_at_once() {
    let kafka = shared_kafka();
    runtime().block_on(async {
        let broker = connect(&kafka);
        let topic = "kc-fence-duty";
        broker.create_topic(topic, 1).await.unwrap();
        let mut wedged = broker.writer("weir-901-0").await.unwrap();
        wedged.begin().unwrap();
        send_all(&mut wedged, topic, 0, &["uncommitted"]).await;
        wedged.await_deliveries().await.unwrap();
        let mut other = broker.writer("weir-902-0").await.unwrap();
        other.begin().unwrap();
        send_all(&mut other, topic, 0, &["other-job"]).await;
        other.commit("kc-fence-group", &[]).await.unwrap();
        let held = broker.read_committed(topic, 0, 0, 10).await.unwrap();
        assert!(held.is_empty(), "held back: {:?}", values(&held));
        // The fence: InitProducerId on the wedged id.
        let started = tokio::time::Instant::now();
        drop(broker.writer("weir-901-0").await.unwrap());
        loop {
            let seen = broker.read_committed(topic, 0, 0, 10).await.unwrap();
            if !seen.is_empty() {
                assert_eq!(values(&seen), ["other-job"]);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still held back after fencing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("visible {:?} after the fence", started.elapsed());
        // The wedged writer is a zombie now.
        assert!(matches!(
            wedged.commit("kc-fence-group", &[]).await,
            Err(BrokerError::Fenced(_))
        ));
    });
}
