//! The production broker: the seam's traits over a real Kafka cluster, through rdkafka
//! (librdkafka, compiled from the sources bundled with `rdkafka-sys`).
//!
//! - A [`KafkaReader`] is a consumer that never joins a group: it is assigned exactly one
//!   partition at the caller's offset, reads with `isolation.level=read_committed`, stores
//!   and commits nothing itself (offsets are committed only inside producer transactions),
//!   and keeps its prefetch queue small so memory stays bounded per partition.
//! - A [`KafkaWriter`] is a transactional, idempotent producer for one `transactional.id`.
//!   Creating it runs `init_transactions`, which fences every older producer with the same
//!   id. `commit` adds the source offsets with `send_offsets_to_transaction` (using the
//!   metadata of a consumer created with the group's id, which never joins the group) and
//!   then commits: records and offsets become visible together, or neither does.
//! - Partitions are chosen here, not by librdkafka's partitioner, exactly as the in-memory
//!   model chooses them: keyed records by Kafka's Java client's murmur2 partitioner
//!   ([`crate::memory::partition_for_key`]), keyless ones round-robin per writer.
//!
//! librdkafka's transactional calls, metadata requests and committed-offset lookups block
//! the calling thread for up to a network round trip (or their timeout). Partition actors
//! run on single-threaded runtimes, so those calls go to tokio's blocking pool
//! ([`blocking`]); this file is the one place in weir where that is allowed, because it is
//! the production side of the seam the simulation replaces. Record delivery and reading are
//! asynchronous already (delivery reports counted by the writer's producer context, the
//! stream consumer's wakeups).
//!
//! Transactions use Kafka's v1 transaction protocol: librdkafka does not implement KIP-890's
//! v2 and Kafka 4.x brokers still serve v1 to clients that do not ask for v2.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::task::AtomicWaker;
use futures::{FutureExt, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::memory::partition_for_key;
use crate::{
    Broker, BrokerError, BrokerRecord, OutgoingRecord, PartitionReader, SourceOffset,
    TransactionalWriter,
};

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
/// Bound on [`Broker::read_committed`]'s scan up to the last stable offset.
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
/// [`Broker::max_record_bytes`] knows it).
pub const WRITER_MESSAGE_BYTES_MAX: u32 = 1_000_000;
/// What [`Broker::max_record_bytes`] assumes of a topic whose `max.message.bytes` cannot be
/// read (Kafka's default: 1 MiB plus the 12-byte log overhead).
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

/// A Kafka cluster reached through rdkafka. Cloning is cheap; clones share one admin
/// client (used for topic creation and metadata).
#[derive(Clone)]
pub struct KafkaBroker {
    shared: Arc<Shared>,
}

struct Shared {
    settings: KafkaSettings,
    admin: AdminClient<DefaultClientContext>,
}

/// The settings of a [`KafkaBroker`] that callers may change; every other client setting
/// that matters is set explicitly where the client is configured.
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

impl std::fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("settings", &self.shared.settings)
            .finish()
    }
}

impl KafkaBroker {
    /// A broker handle for `bootstrap_servers` (`host:port[,host:port...]`) with weir's
    /// production settings. Nothing is sent until the first call.
    pub fn new(bootstrap_servers: &str) -> Result<Self, BrokerError> {
        Self::with_settings(KafkaSettings::new(bootstrap_servers))
    }

    pub fn with_settings(settings: KafkaSettings) -> Result<Self, BrokerError> {
        if settings.delivery_timeout_ms > settings.transaction_timeout_ms {
            return Err(BrokerError::Fatal(format!(
                "delivery timeout {} ms exceeds the transaction timeout {} ms",
                settings.delivery_timeout_ms, settings.transaction_timeout_ms
            )));
        }
        let admin = base_config(&settings.bootstrap_servers, "weir-admin")
            .create::<AdminClient<DefaultClientContext>>()
            .map_err(|e| classify("creating the admin client", &e, None))?;
        Ok(Self {
            shared: Arc::new(Shared { settings, admin }),
        })
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.shared.settings
    }

    /// Partition count and whether every partition has a leader, from fresh metadata.
    async fn topic_metadata(&self, topic: &str) -> Result<(u32, bool), BrokerError> {
        let shared = self.shared.clone();
        let topic_owned = topic.to_string();
        let metadata = blocking(move || {
            shared
                .admin
                .inner()
                .fetch_metadata(Some(&topic_owned), METADATA_TIMEOUT)
        })
        .await?
        .map_err(|e| classify("fetching topic metadata", &e, None))?;
        partitions_of(&metadata, topic)
    }

    async fn check_partition(&self, topic: &str, partition: i32) -> Result<(), BrokerError> {
        let (count, _) = self.topic_metadata(topic).await?;
        if partition < 0 || partition as u32 >= count {
            return Err(BrokerError::UnknownTopic(format!(
                "{topic}/{partition} (the topic has {count} partitions)"
            )));
        }
        Ok(())
    }
}

impl Broker for KafkaBroker {
    type Reader = KafkaReader;
    type Writer = KafkaWriter;

    async fn partition_count(&self, topic: &str) -> Result<u32, BrokerError> {
        let (count, _) = self.topic_metadata(topic).await?;
        Ok(count)
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), BrokerError> {
        let partitions_i32 = i32::try_from(partitions)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                BrokerError::Fatal(format!(
                    "topic {topic}: {partitions} is not a valid partition count"
                ))
            })?;
        // Replication -1: the cluster's default.replication.factor (KIP-464).
        let new_topic = NewTopic::new(topic, partitions_i32, TopicReplication::Fixed(-1));
        let options = AdminOptions::new()
            .request_timeout(Some(METADATA_TIMEOUT))
            .operation_timeout(Some(METADATA_TIMEOUT));
        let results = self
            .shared
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| classify("creating a topic", &e, None))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(classify_code(&format!("creating topic {name}"), code));
                }
            }
        }
        // CreateTopics returns once the controller has the topic; wait until this broker's
        // metadata shows every partition with a leader, so the next call can use it.
        let deadline = tokio::time::Instant::now() + TOPIC_READY_TIMEOUT;
        loop {
            match self.topic_metadata(topic).await {
                Ok((_, true)) => return Ok(()),
                Ok(_) | Err(BrokerError::UnknownTopic(_)) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::Timeout(format!(
                    "topic {topic} was created but its partitions had no leaders within {TOPIC_READY_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, BrokerError> {
        let config = group_config(&self.shared.settings.bootstrap_servers, group);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let committed = blocking(move || {
            // require_stable: with read_committed, librdkafka's OffsetFetch asks the
            // coordinator to wait out pending transactional offset commits (KIP-447).
            let consumer: BaseConsumer = config
                .create()
                .map_err(|e| classify("creating a group client", &e, None))?;
            consumer
                .committed_offsets(tpl, METADATA_TIMEOUT)
                .map_err(|e| classify("fetching committed offsets", &e, None))
        })
        .await??;
        let element = committed.find_partition(topic, partition).ok_or_else(|| {
            BrokerError::Fatal(format!(
                "the committed offsets of {group} lack {topic}/{partition}"
            ))
        })?;
        if let Err(e) = element.error() {
            return Err(classify("the committed offset", &e, None));
        }
        match element.offset() {
            Offset::Offset(offset) => Ok(Some(offset)),
            Offset::Invalid => Ok(None),
            other => Err(BrokerError::Fatal(format!(
                "unexpected committed offset {other:?} of {group} for {topic}/{partition}"
            ))),
        }
    }

    async fn reader(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<KafkaReader, BrokerError> {
        self.check_partition(topic, partition).await?;
        KafkaReader::start(
            &self.shared.settings.bootstrap_servers,
            topic,
            partition,
            offset,
            ReaderEnd::Never,
        )
    }

    async fn writer(&self, transactional_id: &str) -> Result<KafkaWriter, BrokerError> {
        KafkaWriter::start(&self.shared.settings, transactional_id).await
    }

    /// The topic's `max.message.bytes` from DescribeConfigs, capped by the writers'
    /// `message.max.bytes`. A cluster that will not describe the topic (no
    /// DescribeConfigs permission, say) gets Kafka's default assumed, with a warning: the
    /// writers' own limit still holds, and a record the topic refuses anyway is cut
    /// further by the caller.
    async fn max_record_bytes(&self, topic: &str) -> Result<usize, BrokerError> {
        let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
        let resource = ResourceSpecifier::Topic(topic);
        let described = self
            .shared
            .admin
            .describe_configs([&resource], &options)
            .await
            .map_err(|e| classify("describing a topic's configuration", &e, None))
            .and_then(|results| {
                let mut topic_max = None;
                for result in results {
                    let config = result.map_err(|code| {
                        classify_code(&format!("describing the configuration of {topic}"), code)
                    })?;
                    topic_max = config
                        .get("max.message.bytes")
                        .and_then(|entry| entry.value.as_deref())
                        .and_then(|value| value.parse::<usize>().ok());
                }
                Ok(topic_max)
            });
        let topic_max = match described {
            Ok(max) => max.unwrap_or(TOPIC_MESSAGE_BYTES_DEFAULT),
            Err(e @ (BrokerError::Unavailable(_) | BrokerError::Timeout(_))) => return Err(e),
            Err(e) => {
                tracing::warn!(topic, error = %e, "cannot read the topic's max.message.bytes; assuming Kafka's default");
                TOPIC_MESSAGE_BYTES_DEFAULT
            }
        };
        Ok(topic_max.min(WRITER_MESSAGE_BYTES_MAX as usize))
    }

    async fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        self.check_partition(topic, partition).await?;
        if max_records == 0 {
            return Ok(Vec::new());
        }
        let mut reader = KafkaReader::start(
            &self.shared.settings.bootstrap_servers,
            topic,
            partition,
            offset,
            ReaderEnd::LastStableOffset,
        )?;
        let deadline = tokio::time::Instant::now() + READ_COMMITTED_SCAN_TIMEOUT;
        let mut records = Vec::new();
        while records.len() < max_records && !reader.end_reached {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(BrokerError::Timeout(format!(
                    "{topic}/{partition}: no end of the committed records within {READ_COMMITTED_SCAN_TIMEOUT:?}"
                )));
            }
            let batch = reader
                .poll_batch(max_records - records.len(), deadline - now)
                .await?;
            records.extend(batch);
        }
        Ok(records)
    }
}

/// Where a reader's records end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReaderEnd {
    /// A partition actor's reader: the partition never ends.
    Never,
    /// A snapshot: stop at the last stable offset (librdkafka's partition EOF for a
    /// `read_committed` consumer), past which no committed record is visible yet.
    LastStableOffset,
}

/// A `read_committed` consumer of one partition, assigned (never subscribed) at an offset.
pub struct KafkaReader {
    /// `None` only while dropping (the consumer is destroyed off the runtime thread).
    consumer: Option<StreamConsumer>,
    topic: String,
    topic_c: CString,
    partition: i32,
    /// The offset after the last record returned.
    position: i64,
    high_watermark: Option<i64>,
    /// An error that came after records in one poll: returned by the next poll, so those
    /// records are not lost and the error is not either.
    deferred_error: Option<BrokerError>,
    end_reached: bool,
}

impl KafkaReader {
    fn start(
        bootstrap_servers: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        end: ReaderEnd,
    ) -> Result<Self, BrokerError> {
        if offset < 0 {
            return Err(BrokerError::Fatal(format!(
                "{topic}/{partition}: cannot read from offset {offset}"
            )));
        }
        let topic_c = CString::new(topic)
            .map_err(|_| BrokerError::UnknownTopic(format!("{topic:?} (contains NUL)")))?;
        let consumer: StreamConsumer = reader_config(bootstrap_servers, end)
            .create()
            .map_err(|e| classify("creating a reader", &e, None))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| classify("assigning the partition", &e, None))?;
        consumer
            .assign(&assignment)
            .map_err(|e| classify("assigning the partition", &e, None))?;
        Ok(Self {
            consumer: Some(consumer),
            topic: topic.to_string(),
            topic_c,
            partition,
            position: offset,
            high_watermark: None,
            deferred_error: None,
            end_reached: false,
        })
    }

    fn consumer(&self) -> &StreamConsumer {
        self.consumer
            .as_ref()
            .expect("the consumer is taken only on drop")
    }

    /// The high watermark librdkafka cached from the last fetch response; no request.
    fn cached_high_watermark(&self) -> Option<i64> {
        let mut low: i64 = -1;
        let mut high: i64 = -1;
        // SAFETY: the client pointer lives as long as `self.consumer`, `topic_c` is a valid
        // NUL-terminated string for the call, and the call only reads librdkafka's cached
        // offsets under its own locks (rdkafka's safe API does not expose it).
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer().client().native_ptr(),
                self.topic_c.as_ptr(),
                self.partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }
}

/// The record of `message`, which must be the next one of `topic`/`partition` at or after
/// `position`; moves `position` past it.
fn accept_record<M: Message>(
    topic: &str,
    partition: i32,
    position: &mut i64,
    message: &M,
) -> Result<BrokerRecord, BrokerError> {
    let offset = message.offset();
    if message.topic() != topic || message.partition() != partition {
        return Err(BrokerError::Fatal(format!(
            "reader of {topic}/{partition} got a record of {}/{}",
            message.topic(),
            message.partition()
        )));
    }
    if offset < *position {
        return Err(BrokerError::Fatal(format!(
            "reader of {topic}/{partition} went back from offset {position} to {offset}"
        )));
    }
    *position = offset + 1;
    Ok(BrokerRecord {
        topic: topic.to_string(),
        partition,
        offset,
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
    })
}

impl PartitionReader for KafkaReader {
    async fn poll_batch(
        &mut self,
        max_records: usize,
        wait: Duration,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        if let Some(err) = self.deferred_error.take() {
            return Err(err);
        }
        if max_records == 0 || self.end_reached {
            return Ok(Vec::new());
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut records = Vec::new();
        // Disjoint borrows: the stream borrows the consumer while records move the position.
        let Self {
            consumer,
            topic,
            partition,
            position,
            deferred_error,
            end_reached,
            ..
        } = self;
        let consumer = consumer
            .as_ref()
            .expect("the consumer is taken only on drop");
        let mut stream = consumer.stream();
        loop {
            let item = if records.is_empty() {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => break,
                    Ok(item) => item,
                }
            } else {
                // After the first record, take only what is already here.
                match stream.next().now_or_never() {
                    None => break,
                    Some(item) => item,
                }
            };
            match item {
                None => {
                    return Err(BrokerError::Fatal(
                        "the consumer's stream ended".to_string(),
                    ));
                }
                Some(Ok(message)) => {
                    records.push(accept_record(topic, *partition, position, &message)?);
                    if records.len() >= max_records {
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    *end_reached = true;
                    break;
                }
                Some(Err(err)) => {
                    let mapped = classify("reading", &err, None);
                    if matches!(mapped, BrokerError::Unavailable(_)) {
                        // librdkafka reconnects and refetches on its own; these are notices.
                        tracing::debug!(%topic, partition, error = %err, "transient consumer error");
                        continue;
                    }
                    if records.is_empty() {
                        return Err(mapped);
                    }
                    *deferred_error = Some(mapped);
                    break;
                }
            }
        }
        drop(stream);
        if let Some(high) = self.cached_high_watermark() {
            self.high_watermark = Some(high);
        }
        Ok(records)
    }

    fn position(&self) -> i64 {
        self.position
    }

    fn high_watermark(&self) -> Option<i64> {
        self.high_watermark
    }
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("position", &self.position)
            .field("high_watermark", &self.high_watermark)
            .finish_non_exhaustive()
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        // Destroying a librdkafka client joins its threads: keep that off the caller's
        // runtime thread.
        if let Some(consumer) = self.consumer.take() {
            drop_off_thread(consumer);
        }
    }
}

/// The delivery reports of one writer's records, kept by its producer's context: a count
/// of records enqueued and not yet reported, and the first failed delivery. librdkafka
/// calls [`WriterContext::delivery`] on the producer's polling thread (or on the thread of
/// a `flush`, which `commit_transaction` and `abort_transaction` run), so `send` costs a
/// counter update instead of a delivery future per record.
#[derive(Default)]
struct DeliveryTracker {
    /// Records enqueued whose delivery report has not arrived yet.
    pending: AtomicUsize,
    /// A delivery failed since the last reset; `first_failure` holds its error.
    failed: AtomicBool,
    first_failure: Mutex<Option<KafkaError>>,
    /// The writer's task while it waits for reports (backpressure, commit, abort).
    waker: AtomicWaker,
}

impl DeliveryTracker {
    fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    fn failure(&self) -> Option<KafkaError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let failure = self
            .first_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(failure.clone().unwrap_or(KafkaError::Canceled))
    }

    /// Forgets failures once an aborted transaction's reports have all arrived.
    fn reset_failure(&self) {
        let mut failure = self
            .first_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *failure = None;
        self.failed.store(false, Ordering::Release);
    }

    /// Waits until `done` holds, or (if `until_failure`) a delivery has failed.
    async fn wait_until(&self, until_failure: bool, done: impl Fn(&Self) -> bool) {
        let over = || done(self) || (until_failure && self.failed.load(Ordering::Acquire));
        futures::future::poll_fn(|cx| {
            if over() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A report may have arrived before the waker was registered.
            if over() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// The writer's producer context: counts delivery reports into a [`DeliveryTracker`].
struct WriterContext {
    tracker: Arc<DeliveryTracker>,
}

impl ClientContext for WriterContext {}

impl ProducerContext for WriterContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if let Err((err, _message)) = result {
            let mut failure = self
                .tracker
                .first_failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if failure.is_none() {
                *failure = Some(err.clone());
            }
            self.tracker.failed.store(true, Ordering::Release);
        }
        self.tracker.pending.fetch_sub(1, Ordering::AcqRel);
        self.tracker.waker.wake();
    }
}

type WriterProducer = ThreadedProducer<WriterContext>;

/// The writer's side of the transaction protocol: the in-memory writer's states, as far as
/// librdkafka has them, and two of the rdkafka client's own. A timed-out commit or abort
/// leaves the transaction `Open` (or `MustAbort`): librdkafka lets either call be retried,
/// and the commit's retry skips offsets already sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WriterState {
    /// No transaction: only `begin` is valid. `aborted_reports`: the last transaction was
    /// aborted and the failures its purged records reported are not forgotten yet (the
    /// abort's wait for them was cancelled; `begin` finishes it).
    Ready { aborted_reports: bool },
    /// In a transaction: `send`, `commit`, `abort`. `offsets_sent`:
    /// `send_offsets_to_transaction` succeeded in it, so a commit retried after a timeout
    /// must not send them again.
    Open { offsets_sent: bool },
    /// The open transaction failed (librdkafka's abortable state): `send` and `commit`
    /// return AbortRequired; only `abort`.
    MustAbort,
    /// A blocking call is running. Seen by a later call only when the call's future was
    /// dropped, leaving its outcome unknown: every call fails; rebuild the writer.
    InFlight,
    /// Fenced or fatally failed: every call returns this error; rebuild the writer.
    Broken(BrokerError),
}

impl WriterState {
    /// A transaction is open, failed or not: `abort` is valid.
    fn in_transaction(&self) -> bool {
        matches!(self, WriterState::Open { .. } | WriterState::MustAbort)
    }

    /// The open transaction can only be aborted now. Outside a transaction there is
    /// nothing to doom: a failure reported then belongs to an aborted transaction.
    fn doom(&mut self) {
        if let WriterState::Open { .. } = self {
            *self = WriterState::MustAbort;
        }
    }
}

/// A transactional producer for one `transactional.id`. Dropping it with a transaction
/// open leaves that transaction to the next writer of the id (whose creation aborts it) or
/// to the coordinator's transaction timeout, as a crash would.
pub struct KafkaWriter {
    transactional_id: String,
    bootstrap_servers: String,
    /// `None` only while dropping (the producer is destroyed off the runtime thread).
    producer: Option<WriterProducer>,
    /// Delivery reports of enqueued records, shared with the producer's context.
    tracker: Arc<DeliveryTracker>,
    state: WriterState,
    partition_counts: BTreeMap<String, u32>,
    /// Round-robin position for records with neither key nor partition (one counter for
    /// all topics, as in the memory model).
    keyless_sent: u32,
    /// Clients whose consumer group metadata `send_offsets_to_transaction` needs.
    group_clients: BTreeMap<String, Arc<BaseConsumer>>,
}

impl KafkaWriter {
    async fn start(settings: &KafkaSettings, transactional_id: &str) -> Result<Self, BrokerError> {
        if transactional_id.is_empty() {
            // librdkafka would make a non-transactional producer of it.
            return Err(BrokerError::Fatal("empty transactional id".to_string()));
        }
        let tracker = Arc::new(DeliveryTracker::default());
        let context = WriterContext {
            tracker: tracker.clone(),
        };
        let producer: WriterProducer = producer_config(settings, transactional_id)
            .create_with_context(context)
            .map_err(|e| classify("creating a producer", &e, None))?;
        let mut writer = Self {
            transactional_id: transactional_id.to_string(),
            bootstrap_servers: settings.bootstrap_servers.clone(),
            producer: Some(producer),
            tracker,
            state: WriterState::Ready {
                aborted_reports: false,
            },
            partition_counts: BTreeMap::new(),
            keyless_sent: 0,
            group_clients: BTreeMap::new(),
        };
        // Fences every older producer with this id and aborts what it left open; the
        // broker answers only once that abort is complete.
        writer
            .transactional_call("init_transactions", |p| {
                p.init_transactions(TRANSACTION_CALL_TIMEOUT)
            })
            .await?;
        Ok(writer)
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Waits until every record sent so far is in the broker's log (not yet visible to
    /// `read_committed` readers: that takes the commit). `commit` does this itself.
    pub async fn await_deliveries(&mut self) -> Result<(), BrokerError> {
        self.usable()?;
        self.wait_for_deliveries(0).await
    }

    fn producer(&self) -> &WriterProducer {
        self.producer
            .as_ref()
            .expect("the producer is taken only on drop")
    }

    fn usable(&self) -> Result<(), BrokerError> {
        match &self.state {
            WriterState::Broken(err) => Err(err.clone()),
            WriterState::InFlight => Err(BrokerError::Fatal(format!(
                "writer {}: an earlier call was cancelled while the broker worked on it",
                self.transactional_id
            ))),
            _ => Ok(()),
        }
    }

    /// Passes a result through, remembering what it means for later calls: fenced and
    /// fatal errors stick; after AbortRequired only `abort` can follow.
    fn settle<T>(&mut self, result: Result<T, BrokerError>) -> Result<T, BrokerError> {
        match &result {
            Err(err @ (BrokerError::Fenced(_) | BrokerError::Fatal(_))) => {
                self.state = WriterState::Broken(err.clone());
            }
            Err(BrokerError::AbortRequired(_)) => self.state.doom(),
            _ => {}
        }
        result
    }

    fn map_error(&self, what: &str, err: &KafkaError) -> BrokerError {
        classify(what, err, self.producer().client().fatal_error())
    }

    /// Runs one of librdkafka's blocking transactional calls on the blocking pool.
    async fn transactional_call<F>(
        &mut self,
        what: &'static str,
        call: F,
    ) -> Result<(), BrokerError>
    where
        F: FnOnce(&WriterProducer) -> rdkafka::error::KafkaResult<()> + Send + 'static,
    {
        let producer = self.producer().clone();
        let before = std::mem::replace(&mut self.state, WriterState::InFlight);
        let result = blocking(move || {
            call(&producer).map_err(|e| {
                let requires_abort =
                    matches!(&e, KafkaError::Transaction(rd) if rd.txn_requires_abort());
                (
                    classify(what, &e, producer.client().fatal_error()),
                    requires_abort,
                )
            })
        })
        .await;
        // Reached only if this future was not dropped: the call is over.
        self.state = before;
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err((err, requires_abort))) => {
                if requires_abort {
                    self.state.doom();
                }
                Err(err)
            }
            Err(err) => Err(err),
        };
        self.settle(result)
    }

    fn abort_required(&self) -> BrokerError {
        BrokerError::AbortRequired(format!(
            "writer {}: the transaction failed and must be aborted",
            self.transactional_id
        ))
    }

    /// The first failed delivery, if any: in a transaction any failed delivery means the
    /// transaction cannot commit (librdkafka has put it in the abortable state).
    fn check_deliveries(&mut self) -> Result<(), BrokerError> {
        let Some(err) = self.tracker.failure() else {
            return Ok(());
        };
        let result = match self.map_error("delivering a record", &err) {
            fatal @ (BrokerError::Fenced(_) | BrokerError::Fatal(_)) => Err(fatal),
            other => Err(BrokerError::AbortRequired(format!(
                "writer {}: a record was not delivered: {other}",
                self.transactional_id
            ))),
        };
        self.settle(result)
    }

    /// Waits until at most `max_pending` records await their delivery report; returns
    /// early with the first failed delivery. Every report arrives within the delivery
    /// timeout (`message.timeout.ms`), delivered or not.
    async fn wait_for_deliveries(&mut self, max_pending: usize) -> Result<(), BrokerError> {
        self.check_deliveries()?;
        if self.tracker.pending() > max_pending {
            self.tracker
                .wait_until(true, |t| t.pending() <= max_pending)
                .await;
        }
        self.check_deliveries()
    }

    /// The partition count of `topic`, checking that `partition` (if any) is one of its
    /// partitions. Counts are cached; a partition past the cached count refetches them
    /// (partitions can be added to a topic).
    async fn partition_count(
        &mut self,
        topic: &str,
        partition: Option<i32>,
    ) -> Result<u32, BrokerError> {
        if partition.is_some_and(|p| p < 0) {
            return Err(BrokerError::UnknownTopic(format!("{topic}/{partition:?}")));
        }
        let within = |count: u32| partition.is_none_or(|p| (p as u32) < count);
        if let Some(count) = self.partition_counts.get(topic) {
            if within(*count) {
                return Ok(*count);
            }
        }
        let producer = self.producer().clone();
        let topic_owned = topic.to_string();
        let metadata = blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic_owned), METADATA_TIMEOUT)
        })
        .await?
        .map_err(|e| classify("fetching topic metadata", &e, None))?;
        let count = partitions_of(&metadata, topic)?.0;
        self.partition_counts.insert(topic.to_string(), count);
        if !within(count) {
            return Err(BrokerError::UnknownTopic(format!(
                "{topic}/{} (the topic has {count} partitions)",
                partition.unwrap_or_default()
            )));
        }
        Ok(count)
    }

    async fn choose_partition(&mut self, record: &OutgoingRecord) -> Result<i32, BrokerError> {
        let count = self
            .partition_count(&record.topic, record.partition)
            .await?;
        if let Some(partition) = record.partition {
            return Ok(partition);
        }
        Ok(match &record.key {
            Some(key) => partition_for_key(key, count),
            None => {
                let partition = self.keyless_sent % count;
                self.keyless_sent = self.keyless_sent.wrapping_add(1);
                partition as i32
            }
        })
    }

    fn group_client(&mut self, group: &str) -> Result<Arc<BaseConsumer>, BrokerError> {
        if let Some(client) = self.group_clients.get(group) {
            return Ok(client.clone());
        }
        let client: BaseConsumer = group_config(&self.bootstrap_servers, group)
            .create()
            .map_err(|e| classify("creating a group client", &e, None))?;
        let client = Arc::new(client);
        if self.group_clients.len() >= WRITER_GROUP_CLIENTS_MAX {
            if let Some((_, evicted)) = self.group_clients.pop_first() {
                drop_off_thread(evicted);
            }
        }
        self.group_clients.insert(group.to_string(), client.clone());
        Ok(client)
    }

    async fn commit_open(
        &mut self,
        group: &str,
        offsets: &[SourceOffset],
    ) -> Result<(), BrokerError> {
        // commit_transaction flushes and fails on a failed delivery by itself; waiting here
        // first reports a failed delivery with its own error (and without blocking a thread).
        self.wait_for_deliveries(0).await?;
        let offsets_sent = matches!(self.state, WriterState::Open { offsets_sent: true });
        if !offsets.is_empty() && !offsets_sent {
            let mut tpl = TopicPartitionList::new();
            for offset in offsets {
                tpl.add_partition_offset(
                    &offset.topic,
                    offset.partition,
                    Offset::Offset(offset.next_offset),
                )
                .map_err(|e| classify("listing offsets", &e, None))?;
            }
            let client = self.group_client(group)?;
            // A consumer that never joins the group has generation -1 and no member id;
            // the coordinator accepts transactional offset commits from such a "simple"
            // client, and fencing comes from the transactional id instead.
            let metadata = client.group_metadata().ok_or_else(|| {
                BrokerError::Fatal(format!("no consumer group metadata for {group}"))
            })?;
            self.transactional_call("send_offsets_to_transaction", move |p| {
                // Serve the group client's queued events (errors, logs) so none pile up.
                let _ = client.poll(Duration::ZERO);
                p.send_offsets_to_transaction(&tpl, &metadata, TRANSACTION_CALL_TIMEOUT)
            })
            .await?;
            self.state = WriterState::Open { offsets_sent: true };
        }
        self.transactional_call("commit_transaction", |p| {
            p.commit_transaction(TRANSACTION_CALL_TIMEOUT)
        })
        .await
    }
}

impl TransactionalWriter for KafkaWriter {
    fn begin(&mut self) -> Result<(), BrokerError> {
        self.usable()?;
        let WriterState::Ready { aborted_reports } = self.state else {
            return Err(BrokerError::Fatal(format!(
                "writer {}: begin while a transaction is open",
                self.transactional_id
            )));
        };
        if aborted_reports {
            if self.tracker.pending() > 0 {
                return Err(BrokerError::Timeout(format!(
                    "writer {}: delivery reports of the aborted transaction are still arriving",
                    self.transactional_id
                )));
            }
            self.tracker.reset_failure();
            self.state = WriterState::Ready {
                aborted_reports: false,
            };
        }
        // Local to librdkafka: no request, no blocking.
        let result = self
            .producer()
            .begin_transaction()
            .map_err(|e| self.map_error("begin_transaction", &e));
        self.settle(result)?;
        self.state = WriterState::Open {
            offsets_sent: false,
        };
        Ok(())
    }

    async fn send(&mut self, record: OutgoingRecord) -> Result<(), BrokerError> {
        self.usable()?;
        match self.state {
            WriterState::Open { .. } => {}
            WriterState::MustAbort => return Err(self.abort_required()),
            _ => {
                return Err(BrokerError::Fatal(format!(
                    "writer {}: send outside a transaction",
                    self.transactional_id
                )))
            }
        }
        // Every await below happens before the record is enqueued, so a cancelled send
        // has enqueued nothing.
        //
        // Check earlier deliveries before adding more: the pending reports stay bounded,
        // and an earlier failure surfaces here rather than only at commit.
        self.wait_for_deliveries(WRITER_DELIVERIES_PENDING_MAX - 1)
            .await?;
        let partition = self.choose_partition(&record).await?;
        // Read the clock only once the queue is full: not once per record.
        let mut give_up_at = None;
        loop {
            let mut base_record = BaseRecord::<[u8], [u8]>::to(&record.topic)
                .partition(partition)
                .payload(record.value.as_slice());
            if let Some(key) = &record.key {
                base_record = base_record.key(key.as_slice());
            }
            if let Some(timestamp_ms) = record.timestamp_ms {
                base_record = base_record.timestamp(timestamp_ms);
            }
            // Counted before the enqueue: its report may arrive before `send` returns.
            self.tracker.pending.fetch_add(1, Ordering::AcqRel);
            let sent = self.producer().send(base_record);
            if sent.is_err() {
                self.tracker.pending.fetch_sub(1, Ordering::AcqRel);
            }
            match sent {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    let now = tokio::time::Instant::now();
                    if now >= *give_up_at.get_or_insert(now + WRITER_QUEUE_FULL_WAIT) {
                        return Err(BrokerError::Timeout(format!(
                            "writer {}: the producer queue stayed full for {WRITER_QUEUE_FULL_WAIT:?}",
                            self.transactional_id
                        )));
                    }
                    // Retry once a report frees queue space (or after the interval, if
                    // none of ours is pending).
                    let pending = self.tracker.pending();
                    let _ = tokio::time::timeout(
                        WRITER_QUEUE_FULL_RETRY_INTERVAL,
                        self.tracker.wait_until(true, |t| t.pending() < pending),
                    )
                    .await;
                    self.check_deliveries()?;
                }
                Err((err, _)) => {
                    let mapped = self.map_error("enqueueing a record", &err);
                    return self.settle(Err(mapped));
                }
            }
        }
    }

    async fn commit(&mut self, group: &str, offsets: &[SourceOffset]) -> Result<(), BrokerError> {
        self.usable()?;
        match self.state {
            WriterState::Open { .. } => {}
            WriterState::MustAbort => return Err(self.abort_required()),
            _ => {
                return Err(BrokerError::Fatal(format!(
                    "writer {}: commit without an open transaction",
                    self.transactional_id
                )))
            }
        }
        // librdkafka skips negative offsets silently; a negative offset here is a bug.
        if let Some(bad) = offsets.iter().find(|o| o.next_offset < 0) {
            return Err(BrokerError::Fatal(format!(
                "writer {}: negative offset to commit: {bad:?}",
                self.transactional_id
            )));
        }
        if group.is_empty() && !offsets.is_empty() {
            return Err(BrokerError::Fatal(format!(
                "writer {}: offsets to commit for an empty group id",
                self.transactional_id
            )));
        }
        // librdkafka retries offsets of an unknown partition until its call times out, and
        // the transaction can then only be aborted: check them first (cached metadata).
        for offset in offsets {
            match self
                .partition_count(&offset.topic, Some(offset.partition))
                .await
            {
                Ok(_) => {}
                Err(err @ BrokerError::UnknownTopic(_)) => {
                    self.state.doom();
                    return Err(err);
                }
                Err(err) => return self.settle(Err(err)),
            }
        }
        // On an error the transaction stays open: after Timeout the commit may be retried
        // (or the transaction aborted); after AbortRequired it must be aborted.
        self.commit_open(group, offsets).await?;
        self.state = WriterState::Ready {
            aborted_reports: false,
        };
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), BrokerError> {
        self.usable()?;
        if !self.state.in_transaction() {
            return Err(BrokerError::Fatal(format!(
                "writer {}: abort without an open transaction",
                self.transactional_id
            )));
        }
        // abort_transaction purges whatever is still queued and returns once every record's
        // report is out; those reports (failures included) no longer matter.
        self.transactional_call("abort_transaction", |p| {
            p.abort_transaction(TRANSACTION_CALL_TIMEOUT)
        })
        .await?;
        // The polling thread may still be running the last reports' callbacks: wait for
        // them, so none of them counts against the next transaction (`begin` finishes
        // this if the wait is cancelled).
        self.state = WriterState::Ready {
            aborted_reports: true,
        };
        let drained = tokio::time::timeout(
            TRANSACTION_CALL_TIMEOUT,
            self.tracker.wait_until(false, |t| t.pending() == 0),
        )
        .await;
        if drained.is_err() {
            let err = BrokerError::Fatal(format!(
                "writer {}: {} delivery reports still missing {TRANSACTION_CALL_TIMEOUT:?} after the abort",
                self.transactional_id,
                self.tracker.pending()
            ));
            return self.settle(Err(err));
        }
        self.tracker.reset_failure();
        self.state = WriterState::Ready {
            aborted_reports: false,
        };
        Ok(())
    }
}

impl std::fmt::Debug for KafkaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWriter")
            .field("transactional_id", &self.transactional_id)
            .field("state", &self.state)
            .field("deliveries_pending", &self.tracker.pending())
            .finish_non_exhaustive()
    }
}

impl Drop for KafkaWriter {
    fn drop(&mut self) {
        // Destroying a producer purges, flushes for up to 500 ms and joins librdkafka's
        // threads: keep that off the caller's runtime thread.
        if let Some(producer) = self.producer.take() {
            drop_off_thread(producer);
        }
        for (_, client) in std::mem::take(&mut self.group_clients) {
            drop_off_thread(client);
        }
    }
}

/// Runs a blocking librdkafka call on tokio's blocking pool.
// The production side of the broker seam: librdkafka's transactional and metadata calls
// block for up to a round trip or their timeout, which would stall a partition actor's
// single-threaded runtime. The simulation uses the in-memory broker, never this.
#[allow(clippy::disallowed_methods)]
async fn blocking<T, F>(call: F) -> Result<T, BrokerError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| BrokerError::Fatal(format!("a blocking broker call failed: {e}")))
}

/// Drops a librdkafka client on the blocking pool when there is a runtime (destroying one
/// joins its threads), inline otherwise.
#[allow(clippy::disallowed_methods)] // see `blocking`
fn drop_off_thread<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || drop(value));
        }
        Err(_) => drop(value),
    }
}

fn base_config(bootstrap_servers: &str, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", client_id)
        // weir creates every topic it uses; a misspelt name must fail, not create a topic.
        .set("allow.auto.create.topics", "false");
    config
}

fn producer_config(settings: &KafkaSettings, transactional_id: &str) -> ClientConfig {
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

fn reader_config(bootstrap_servers: &str, end: ReaderEnd) -> ClientConfig {
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
fn group_config(bootstrap_servers: &str, group: &str) -> ClientConfig {
    let mut config = consumer_base_config(bootstrap_servers, "weir-group");
    config.set("group.id", group);
    config
}

/// A topic's partition count in `metadata`, and whether every partition has a leader.
/// A topic with no partitions (being deleted) counts as unknown.
fn partitions_of(
    metadata: &rdkafka::metadata::Metadata,
    topic: &str,
) -> Result<(u32, bool), BrokerError> {
    let Some(entry) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(BrokerError::UnknownTopic(topic.to_string()));
    };
    if let Some(err) = entry.error() {
        return Err(classify_code(
            &format!("metadata of topic {topic}"),
            err.into(),
        ));
    }
    let partitions = entry.partitions();
    if partitions.is_empty() {
        return Err(BrokerError::UnknownTopic(topic.to_string()));
    }
    let count = u32::try_from(partitions.len())
        .map_err(|_| BrokerError::Fatal(format!("topic {topic} has too many partitions")))?;
    let led = partitions
        .iter()
        .all(|p| p.error().is_none() && p.leader() >= 0);
    Ok((count, led))
}

fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
    )
}

/// Maps an rdkafka error to the seam's. `fatal` is the client's fatal error, if it has one:
/// once set, the client is unusable whatever the call's own error says.
fn classify(
    what: &str,
    err: &KafkaError,
    fatal: Option<(RDKafkaErrorCode, String)>,
) -> BrokerError {
    if let Some((code, reason)) = fatal {
        let message = format!("{what}: {reason} ({code:?})");
        return if is_fenced(code) {
            BrokerError::Fenced(message)
        } else {
            BrokerError::Fatal(message)
        };
    }
    if let KafkaError::Transaction(rd) = err {
        let code = rd.code();
        let message = format!("{what}: {rd} ({code:?})");
        if is_fenced(code) {
            return BrokerError::Fenced(message);
        }
        if rd.is_fatal() {
            return BrokerError::Fatal(message);
        }
        if rd.txn_requires_abort() {
            // The transaction can only be aborted now; a missing topic is still named as
            // such (the memory model does the same), and the next commit says AbortRequired.
            return match classify_code(what, code) {
                unknown @ BrokerError::UnknownTopic(_) => unknown,
                _ => BrokerError::AbortRequired(message),
            };
        }
        if rd.is_retriable() {
            return match classify_code(what, code) {
                e @ (BrokerError::Timeout(_) | BrokerError::Unavailable(_)) => e,
                _ => BrokerError::Timeout(message),
            };
        }
        return classify_code(what, code);
    }
    match err.rdkafka_error_code() {
        Some(code) => match classify_code(what, code) {
            BrokerError::Fatal(_) => BrokerError::Fatal(format!("{what}: {err}")),
            other => other,
        },
        None => BrokerError::Fatal(format!("{what}: {err}")),
    }
}

fn classify_code(what: &str, code: RDKafkaErrorCode) -> BrokerError {
    use RDKafkaErrorCode as C;
    let message = format!("{what}: {code}");
    match code {
        c if is_fenced(c) => BrokerError::Fenced(message),
        C::UnknownTopicOrPartition | C::UnknownPartition | C::UnknownTopic | C::UnknownTopicId => {
            BrokerError::UnknownTopic(message)
        }
        C::MessageSizeTooLarge => BrokerError::RecordTooLarge(message),
        C::OperationTimedOut | C::RequestTimedOut | C::MessageTimedOut | C::TimedOutQueue => {
            BrokerError::Timeout(message)
        }
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::BrokerNotAvailable
        | C::NetworkException
        | C::CoordinatorLoadInProgress
        | C::CoordinatorNotAvailable
        | C::NotCoordinator
        | C::PreferredLeaderNotAvailable => BrokerError::Unavailable(message),
        _ => BrokerError::Fatal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_codes_map_to_fenced() {
        for code in [
            RDKafkaErrorCode::Fenced,
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
        ] {
            assert!(matches!(classify_code("x", code), BrokerError::Fenced(_)));
            let err = KafkaError::MessageProduction(code);
            assert!(matches!(classify("x", &err, None), BrokerError::Fenced(_)));
        }
        let fatal = Some((RDKafkaErrorCode::ProducerFenced, "fenced".to_string()));
        let err = KafkaError::MessageProduction(RDKafkaErrorCode::Fatal);
        assert!(matches!(classify("x", &err, fatal), BrokerError::Fenced(_)));
        let fatal = Some((RDKafkaErrorCode::InvalidMessage, "bad".to_string()));
        assert!(matches!(classify("x", &err, fatal), BrokerError::Fatal(_)));
    }

    #[test]
    fn only_an_open_transaction_is_doomed() {
        let mut open = WriterState::Open { offsets_sent: true };
        assert!(open.in_transaction());
        open.doom();
        assert_eq!(open, WriterState::MustAbort);
        assert!(open.in_transaction());
        for mut state in [
            WriterState::Ready {
                aborted_reports: true,
            },
            WriterState::InFlight,
            WriterState::Broken(BrokerError::Fatal("x".into())),
        ] {
            let before = state.clone();
            state.doom();
            assert_eq!(state, before);
            assert!(!state.in_transaction());
        }
    }
}
