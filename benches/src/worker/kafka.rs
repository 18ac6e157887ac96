//! The real broker of the end-to-end benches, and what the bench does with rdkafka directly:
//! start a single-node Kafka with `scripts/kafka/kafka.sh` (stopped, and its directory
//! deleted, when the guard drops), fill the source topic with a fast non-transactional
//! producer, and the baseline: a plain consume-and-produce copy loop.

use super::nexmark::Bids;
use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

/// Bound on filling the source topic and on each copy loop.
pub const FILL_TIMEOUT: Duration = Duration::from_secs(120);
pub const COPY_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on one metadata or watermark request.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause while librdkafka's producer queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(1);

/// A Kafka broker started by `kafka.sh`; stopped and its directory removed on drop.
#[derive(Debug)]
pub struct KafkaProcess {
    script: PathBuf,
    dir: PathBuf,
    pub bootstrap: String,
}

impl KafkaProcess {
    /// Starts a broker in `dir` (which `kafka.sh stop` deletes) with unlimited retention.
    pub fn start(repo: &Path, dir: &Path) -> anyhow::Result<KafkaProcess> {
        let script = repo.join("scripts/kafka/kafka.sh");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let out = Command::new(&script)
            .args(["start", "--dir"])
            .arg(dir)
            .args(["--config", "log.retention.ms=-1"])
            .output()
            .with_context(|| format!("cannot run {}", script.display()))?;
        // From here on the guard stops whatever was started, even if parsing fails.
        let mut process = KafkaProcess {
            script,
            dir: dir.to_path_buf(),
            bootstrap: String::new(),
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "kafka.sh start failed: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        process.bootstrap = stdout
            .lines()
            .find_map(|l| l.strip_prefix("bootstrap="))
            .context("kafka.sh start printed no bootstrap= line")?
            .to_string();
        Ok(process)
    }

    /// The broker's process id, for CPU accounting.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("broker.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for KafkaProcess {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .output();
    }
}

/// Client settings every bench client shares.
fn base_config(bootstrap: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", client_id)
        .set("allow.auto.create.topics", "false");
    config
}

/// Sends `record`, waiting while the producer's queue is full.
fn send_blocking(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, [u8], [u8]>,
    give_up_at: Instant,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if Instant::now() >= give_up_at {
                    bail!("the producer queue stayed full");
                }
                record = back;
                std::thread::sleep(QUEUE_FULL_PAUSE);
            }
            Err((e, _)) => return Err(e).context("cannot enqueue a record"),
        }
    }
}

/// The partition of a bid: by bidder, so each key lives in one partition (weir's `key_by`
/// groups within the source partition).
pub fn partition_of(bidder: u64, partitions: u32) -> i32 {
    (bidder % u64::from(partitions)) as i32
}

/// Produces every bid to `topic` (keyed by bidder, partitioned by [`partition_of`]),
/// without transactions, and waits until all are acknowledged. Returns each partition's
/// end offset.
pub fn fill(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    bids: &Bids,
) -> anyhow::Result<Vec<i64>> {
    let producer: ThreadedProducer<DefaultProducerContext> = base_config(bootstrap, "bench-fill")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("compression.type", "none")
        .create()
        .context("cannot create the fill producer")?;
    let give_up_at = Instant::now() + FILL_TIMEOUT;
    for (value, bidder) in bids.values.iter().zip(&bids.bidders) {
        let key = bidder.to_string();
        let record = BaseRecord::to(topic)
            .partition(partition_of(*bidder, partitions))
            .key(key.as_bytes())
            .payload(value.as_slice());
        send_blocking(&producer, record, give_up_at)?;
    }
    producer
        .flush(FILL_TIMEOUT)
        .context("the fill producer could not deliver everything")?;
    end_offsets(bootstrap, topic, partitions)
}

/// Each partition's high watermark.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: u32) -> anyhow::Result<Vec<i64>> {
    let consumer: BaseConsumer = base_config(bootstrap, "bench-watermarks")
        .create()
        .context("cannot create a consumer")?;
    (0..partitions as i32)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, METADATA_TIMEOUT)
                .map(|(_, high)| high)
                .with_context(|| format!("cannot read the end offset of {topic}/{p}"))
        })
        .collect()
}

/// What the copy loop did.
#[derive(Debug, Clone, Copy)]
pub struct CopyResult {
    pub records: u64,
    /// From the first poll to the last delivery acknowledged.
    pub wall: Duration,
}

/// The baseline: one thread, one `read_committed` consumer assigned every partition of
/// `source` from offset 0, one producer (idempotent, `acks=all`, `linger.ms=5` as weir's
/// writer, but no transactions), every record produced to the same partition of `sink`,
/// then `flush`. Ends when `records` have been copied. The consumer keeps librdkafka's
/// defaults but for `fetch_queue_backoff_ms`, when given (see `super::tuned`).
pub fn copy_loop(
    bootstrap: &str,
    source: &str,
    sink: &str,
    partitions: u32,
    records: u64,
    fetch_queue_backoff_ms: Option<u32>,
) -> anyhow::Result<CopyResult> {
    let mut consumer_config = base_config(bootstrap, "bench-copy");
    consumer_config
        .set("group.id", "bench-copy-loop")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error");
    if let Some(backoff_ms) = fetch_queue_backoff_ms {
        consumer_config.set("fetch.queue.backoff.ms", backoff_ms.to_string());
    }
    let consumer: BaseConsumer = consumer_config
        .create()
        .context("cannot create the copy loop's consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(source, p, Offset::Offset(0))?;
    }
    consumer.assign(&assignment)?;
    let producer: ThreadedProducer<DefaultProducerContext> = base_config(bootstrap, "bench-copy")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .create()
        .context("cannot create the copy loop's producer")?;
    let started = Instant::now();
    let give_up_at = started + COPY_TIMEOUT;
    let mut copied = 0u64;
    while copied < records {
        if Instant::now() >= give_up_at {
            bail!("the copy loop copied {copied} of {records} records in {COPY_TIMEOUT:?}");
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.context("the copy loop's consumer failed")?;
        let mut record = BaseRecord::to(sink).partition(message.partition());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        send_blocking(&producer, record, give_up_at)?;
        copied += 1;
    }
    producer
        .flush(COPY_TIMEOUT)
        .context("the copy loop could not deliver everything")?;
    Ok(CopyResult {
        records: copied,
        wall: started.elapsed(),
    })
}
