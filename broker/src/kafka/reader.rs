//! [`KafkaReader`]: a `read_committed` consumer of one partition, assigned at an offset
//! and never joining a group.

use std::ffi::CString;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::classify::classify;
use super::config::{reader_config, ReaderEnd};
use super::offload::drop_off_thread;
use crate::{BrokerError, BrokerRecord, PartitionReader};

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
    pub(super) end_reached: bool,
}

impl KafkaReader {
    pub(super) fn start(
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
