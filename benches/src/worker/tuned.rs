//! An experiment, not production code: weir's Kafka broker with one reader setting changed,
//! to measure what that setting costs the runners.
//!
//! `weir_broker::kafka::KafkaReader` bounds its prefetch queue (`queued.min.messages`
//! 10,000, `queued.max.messages.kbytes` 4 MiB). It used to keep librdkafka's default
//! `fetch.queue.backoff.ms` of 1,000 ms (it sets 10 ms since this experiment measured it): whenever the queue is above either bound after a
//! fetch, librdkafka postpones the partition's next fetch by a whole second, although the
//! runner drains 10,000 records in a few milliseconds. [`TunedKafkaBroker`] is
//! `KafkaBroker` with a reader that sets it to [`FETCH_QUEUE_BACKOFF_MS`] and is otherwise
//! configured the same (its `poll_batch` follows `KafkaReader`'s); the writer, offsets and
//! metadata are `KafkaBroker`'s own.

use futures::{FutureExt, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::time::Duration;
use weir_broker::kafka::{
    KafkaBroker, KafkaWriter, READER_FETCH_BYTES_MAX, READER_FETCH_WAIT_MAX_MS, READER_GROUP_ID,
    READER_PARTITION_FETCH_BYTES_MAX, READER_QUEUE_KBYTES_MAX, READER_QUEUE_MESSAGES_MIN,
};
use weir_broker::{
    Broker, BrokerError, BrokerRecord, PartitionReader, TopicDescription, TopicSpec,
};

/// The changed setting: how long librdkafka postpones a partition's next fetch while its
/// queue is above the bounds.
pub const FETCH_QUEUE_BACKOFF_MS: u32 = 10;

/// `KafkaBroker` with the tuned reader.
#[derive(Clone)]
pub struct TunedKafkaBroker {
    inner: KafkaBroker,
}

impl TunedKafkaBroker {
    pub fn new(inner: KafkaBroker) -> Self {
        TunedKafkaBroker { inner }
    }
}

/// A `read_committed` reader of one partition, as `KafkaReader` but for the one setting.
pub struct TunedReader {
    consumer: StreamConsumer,
    topic: String,
    partition: i32,
    position: i64,
}

fn reader_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "weir-reader")
        .set("allow.auto.create.topics", "false")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("group.id", READER_GROUP_ID)
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
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
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS.to_string());
    config
}

fn fatal(what: &str, e: &KafkaError) -> BrokerError {
    BrokerError::Fatal(format!("{what}: {e}"))
}

impl PartitionReader for TunedReader {
    async fn poll_batch(
        &mut self,
        max_records: usize,
        wait: Duration,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut records = Vec::new();
        let mut stream = self.consumer.stream();
        while records.len() < max_records {
            let item = if records.is_empty() {
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => break,
                    Ok(item) => item,
                }
            } else {
                match stream.next().now_or_never() {
                    None => break,
                    Some(item) => item,
                }
            };
            let message = match item {
                None => return Err(BrokerError::Fatal("the consumer's stream ended".into())),
                Some(Err(e)) => return Err(fatal("reading", &e)),
                Some(Ok(message)) => message,
            };
            if message.offset() < self.position || message.partition() != self.partition {
                return Err(BrokerError::Fatal(format!(
                    "reader of {}/{} at {} got {}/{}",
                    self.topic,
                    self.partition,
                    self.position,
                    message.partition(),
                    message.offset()
                )));
            }
            self.position = message.offset() + 1;
            records.push(BrokerRecord {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
            });
        }
        Ok(records)
    }

    fn position(&self) -> i64 {
        self.position
    }

    fn high_watermark(&self) -> Option<i64> {
        None
    }
}

impl Broker for TunedKafkaBroker {
    type Reader = TunedReader;
    type Writer = KafkaWriter;

    async fn partition_count(&self, topic: &str) -> Result<u32, BrokerError> {
        self.inner.partition_count(topic).await
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), BrokerError> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn create_topic_with(&self, spec: &TopicSpec) -> Result<bool, BrokerError> {
        self.inner.create_topic_with(spec).await
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, BrokerError> {
        self.inner.describe_topic(topic).await
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), BrokerError> {
        self.inner.delete_topic(topic).await
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, BrokerError> {
        self.inner.committed_offset(group, topic, partition).await
    }

    async fn reader(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<TunedReader, BrokerError> {
        let consumer: StreamConsumer = reader_config(&self.inner.settings().bootstrap_servers)
            .create()
            .map_err(|e| fatal("creating a reader", &e))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| fatal("assigning the partition", &e))?;
        consumer
            .assign(&assignment)
            .map_err(|e| fatal("assigning the partition", &e))?;
        Ok(TunedReader {
            consumer,
            topic: topic.to_string(),
            partition,
            position: offset,
        })
    }

    async fn writer(&self, transactional_id: &str) -> Result<KafkaWriter, BrokerError> {
        self.inner.writer(transactional_id).await
    }

    async fn max_record_bytes(&self, topic: &str) -> Result<usize, BrokerError> {
        self.inner.max_record_bytes(topic).await
    }

    async fn partition_settled(&self, topic: &str, partition: i32) -> Result<bool, BrokerError> {
        self.inner.partition_settled(topic, partition).await
    }

    async fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        self.inner
            .read_committed(topic, partition, offset, max_records)
            .await
    }
}
