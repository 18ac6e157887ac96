//! Every librdkafka client setting weir relies on, set explicitly (never left to a
//! default that could change), and the bounds they are built from.

use std::time::Duration;

use rdkafka::config::ClientConfig;

/// How long the transaction coordinator lets a transaction stay open before it aborts it
/// on its own. It bounds how long a crashed writer's records block `read_committed`
/// readers (the last stable offset). Must not exceed the broker's
/// `transaction.max.timeout.ms` (15 min by default).
pub const TRANSACTION_TIMEOUT_MS: u32 = 60_000;
// A transaction stays open for up to two checkpoint intervals (one postponed checkpoint)
// and the commit: the longest interval a job spec may ask for must leave room for that.
const _: () = assert!(
    weir_core::spec::validate::CHECKPOINT_INTERVAL_MAX
        .as_duration()
        .as_millis()
        * 2
        + 15_000
        <= TRANSACTION_TIMEOUT_MS as u128
);
/// How long librdkafka keeps trying to deliver one record; below the transaction timeout,
/// as librdkafka requires for transactional producers.
pub const DELIVERY_TIMEOUT_MS: u32 = 30_000;
/// Bound on each blocking transactional call (`init_transactions`,
/// `send_offsets_to_transaction`, `commit_transaction`, `abort_transaction`).
pub const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on metadata requests and committed-offset lookups.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on waiting for a new topic's partitions to have leaders.
pub const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on waiting for a deleted topic to leave the metadata.
pub const TOPIC_DELETED_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on [`Broker::read_committed`](crate::Broker::read_committed)'s scan up to the last
/// stable offset.
pub const READ_COMMITTED_SCAN_TIMEOUT: Duration = Duration::from_secs(30);
/// Records a writer may have enqueued whose delivery is not yet reported; past this,
/// `send` waits for reports first (backpressure).
pub const WRITER_DELIVERIES_PENDING_MAX: usize = 10_000;
/// How long `send` keeps retrying while librdkafka's producer queue is full.
pub const WRITER_QUEUE_FULL_WAIT: Duration = Duration::from_secs(30);
/// Pause between retries while the producer queue is full and nothing of ours is pending.
pub const WRITER_QUEUE_FULL_RETRY_INTERVAL: Duration = Duration::from_millis(10);
/// How long the producer waits to fill a batch: librdkafka's default. Longer would not be
/// free although records stay invisible until the commit: `commit` first waits for every
/// delivery report (to name a failed delivery), and a part-filled batch leaves only when
/// its linger ends; and `send` waits once `WRITER_DELIVERIES_PENDING_MAX` reports are
/// pending, which keyed records spread over many sink partitions can reach before any
/// batch fills.
pub const WRITER_LINGER_MS: u32 = 5;
/// librdkafka's producer queue bounds (messages, then KiB: the byte bound wins).
pub const WRITER_QUEUE_MESSAGES_MAX: u32 = 100_000;
/// `message.max.bytes` of every writer: the largest request librdkafka builds, and so the
/// largest record it accepts (librdkafka's default, set explicitly so that
/// [`Broker::max_record_bytes`](crate::Broker::max_record_bytes) knows it).
pub const WRITER_MESSAGE_BYTES_MAX: u32 = 1_000_000;
/// What [`Broker::max_record_bytes`](crate::Broker::max_record_bytes) assumes of a topic
/// whose `max.message.bytes` cannot be read (Kafka's default: 1 MiB plus the 12-byte log
/// overhead).
pub const TOPIC_MESSAGE_BYTES_DEFAULT: usize = 1_048_588;
pub const WRITER_QUEUE_KBYTES_MAX: u32 = 64 * 1024;
/// Consumer groups whose metadata one writer keeps a client for (one per group it
/// commits for; a worker's writer normally commits for exactly one).
pub const WRITER_GROUP_CLIENTS_MAX: usize = 8;
/// Bounds on one reader's fetches and prefetch queue: memory per partition stays near
/// `READER_QUEUE_KBYTES_MAX` plus one fetch.
pub const READER_FETCH_BYTES_MAX: u32 = 4 * 1024 * 1024;
pub const READER_PARTITION_FETCH_BYTES_MAX: u32 = 1024 * 1024;
pub const READER_QUEUE_KBYTES_MAX: u32 = 4 * 1024;
pub const READER_QUEUE_MESSAGES_MIN: u32 = 10_000;
/// The group id readers carry only because librdkafka's `assign` requires one.
pub const READER_GROUP_ID: &str = "weir-reader-unjoined";
/// How long the broker may hold a fetch open waiting for data (reader latency bound).
pub const READER_FETCH_WAIT_MAX_MS: u32 = 100;

/// The settings of a [`KafkaBroker`](super::KafkaBroker) that callers may change; every
/// other client setting that matters is set explicitly where the client is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `transaction.timeout.ms` of every writer: see [`TRANSACTION_TIMEOUT_MS`].
    pub transaction_timeout_ms: u32,
    /// `message.timeout.ms` of every writer: see [`DELIVERY_TIMEOUT_MS`]. At most
    /// `transaction_timeout_ms`.
    pub delivery_timeout_ms: u32,
}

impl KafkaSettings {
    /// weir's production settings for a cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: &str) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.to_string(),
            transaction_timeout_ms: TRANSACTION_TIMEOUT_MS,
            delivery_timeout_ms: DELIVERY_TIMEOUT_MS,
        }
    }
}

pub(super) fn base_config(bootstrap_servers: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", client_id)
        // weir creates every topic it uses; a misspelt name must fail, not create a topic.
        .set("allow.auto.create.topics", "false")
        // Client telemetry for the brokers (KIP-714, on by default) is not used by weir,
        // and costs every broker connection of every client six latency histograms,
        // about 60 KiB: 2.5 MB of a soak worker's 5.5 MB of heap, made and freed again
        // each time a partition moves (its freed pages stayed resident between the
        // worker's longer-lived blocks).
        .set("enable.metrics.push", "false");
    config
}

pub(super) fn producer_config(settings: &KafkaSettings, transactional_id: &str) -> ClientConfig {
    let mut config = base_config(&settings.bootstrap_servers, "weir-writer");
    config
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "transaction.timeout.ms",
            settings.transaction_timeout_ms.to_string(),
        )
        .set(
            "message.timeout.ms",
            settings.delivery_timeout_ms.to_string(),
        )
        .set("max.in.flight.requests.per.connection", "5")
        .set(
            "queue.buffering.max.messages",
            WRITER_QUEUE_MESSAGES_MAX.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            WRITER_QUEUE_KBYTES_MAX.to_string(),
        )
        .set("linger.ms", WRITER_LINGER_MS.to_string())
        .set("message.max.bytes", WRITER_MESSAGE_BYTES_MAX.to_string())
        .set("compression.type", "none");
    config
}

fn consumer_base_config(bootstrap_servers: &str, client_id: &str) -> ClientConfig {
    let mut config = base_config(bootstrap_servers, client_id);
    config
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    config
}

/// How long the reader pauses fetching when its queue is full.
const READER_FETCH_QUEUE_BACKOFF_MS: u64 = 10;

pub(super) fn reader_config(bootstrap_servers: &str, end: ReaderEnd) -> ClientConfig {
    let mut config = consumer_base_config(bootstrap_servers, "weir-reader");
    config
        // librdkafka refuses `assign` without a group id. The reader never joins this
        // group (no subscribe) and never commits for it (auto commit off, no commits).
        .set("group.id", READER_GROUP_ID)
        // An offset outside the log is an error for the caller to see, never a silent
        // jump to the start or the end (which would replay or skip records).
        .set("auto.offset.reset", "error")
        .set(
            "enable.partition.eof",
            if end == ReaderEnd::LastStableOffset {
                "true"
            } else {
                "false"
            },
        )
        .set("fetch.max.bytes", READER_FETCH_BYTES_MAX.to_string())
        .set(
            "max.partition.fetch.bytes",
            READER_PARTITION_FETCH_BYTES_MAX.to_string(),
        )
        .set(
            "queued.max.messages.kbytes",
            READER_QUEUE_KBYTES_MAX.to_string(),
        )
        .set("queued.min.messages", READER_QUEUE_MESSAGES_MIN.to_string())
        .set("fetch.wait.max.ms", READER_FETCH_WAIT_MAX_MS.to_string())
        // With the small queue bounds above, librdkafka's default (1000 ms) pauses fetching
        // for a whole second each time the queue is full after a fetch, although the
        // partition actor drains it in milliseconds: measured 0.10x of a plain copy loop
        // with the default, 0.68x to 1.40x with 10 ms (docs/BENCHMARKS.md).
        .set(
            "fetch.queue.backoff.ms",
            READER_FETCH_QUEUE_BACKOFF_MS.to_string(),
        );
    config
}

/// A client for one consumer group that never joins it: for committed-offset lookups and
/// for the group metadata `send_offsets_to_transaction` needs.
pub(super) fn group_config(bootstrap_servers: &str, group: &str) -> ClientConfig {
    let mut config = consumer_base_config(bootstrap_servers, "weir-group");
    config.set("group.id", group);
    config
}

/// Where a reader's records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReaderEnd {
    /// A partition actor's reader: the partition never ends.
    Never,
    /// A snapshot: stop at the last stable offset (librdkafka's partition EOF for a
    /// `read_committed` consumer), past which no committed record is visible yet.
    LastStableOffset,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_client_pushes_telemetry_to_the_brokers() {
        let settings = KafkaSettings::new("localhost:9092");
        let configs = [
            base_config(&settings.bootstrap_servers, "weir-admin"),
            producer_config(&settings, "weir-t"),
            reader_config(&settings.bootstrap_servers, ReaderEnd::LastStableOffset),
            group_config(&settings.bootstrap_servers, "weir-g"),
        ];
        for config in configs {
            assert_eq!(config.get("enable.metrics.push"), Some("false"));
        }
    }
}
