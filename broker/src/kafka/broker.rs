//! [`KafkaBroker`]: the handle on a Kafka cluster, with the calls that are not a reader's
//! or a writer's: topic creation, metadata, committed offsets, topic configurations, and
//! the `read_committed` scan for checks and tests. Creating topics with their settings,
//! describing and deleting them is in `admin.rs`.

use std::sync::Arc;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};

use super::admin::Created;
use super::classify::{classify, classify_code, partitions_of, replicas_of};
use super::config::{
    base_config, group_config, KafkaSettings, ReaderEnd, METADATA_TIMEOUT,
    READ_COMMITTED_SCAN_TIMEOUT, TOPIC_MESSAGE_BYTES_DEFAULT, WRITER_MESSAGE_BYTES_MAX,
};
use super::offload::blocking;
use super::reader::KafkaReader;
use super::writer::KafkaWriter;
use crate::{Broker, BrokerError, BrokerRecord, PartitionReader, TopicDescription, TopicSpec};

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

    /// The admin client all clones share.
    pub(super) fn admin(&self) -> &AdminClient<DefaultClientContext> {
        &self.shared.admin
    }

    /// Fresh metadata of `topic`, fetched on the blocking pool.
    async fn fetch_metadata(&self, topic: &str) -> Result<Metadata, BrokerError> {
        let shared = self.shared.clone();
        let topic_owned = topic.to_string();
        blocking(move || {
            shared
                .admin
                .inner()
                .fetch_metadata(Some(&topic_owned), METADATA_TIMEOUT)
        })
        .await?
        .map_err(|e| classify("fetching topic metadata", &e, None))
    }

    /// Partition count and whether every partition has a leader, from fresh metadata.
    pub(super) async fn topic_metadata(&self, topic: &str) -> Result<(u32, bool), BrokerError> {
        partitions_of(&self.fetch_metadata(topic).await?, topic)
    }

    /// Partition count and replication factor, from fresh metadata.
    pub(super) async fn topic_replicas(&self, topic: &str) -> Result<(u32, u16), BrokerError> {
        replicas_of(&self.fetch_metadata(topic).await?, topic)
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
                BrokerError::InvalidTopic(format!(
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
        self.await_topic_ready(topic).await
    }

    async fn create_topic_with(&self, spec: &TopicSpec) -> Result<bool, BrokerError> {
        spec.check()?;
        Ok(matches!(self.create(spec).await?, Created::Now))
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, BrokerError> {
        self.describe(topic).await
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), BrokerError> {
        self.delete(topic).await
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

    async fn partition_settled(&self, topic: &str, partition: i32) -> Result<bool, BrokerError> {
        self.check_partition(topic, partition).await?;
        let bootstrap = self.shared.settings.bootstrap_servers.clone();
        let topic = topic.to_string();
        blocking(move || {
            // librdkafka's ListOffsets honours isolation.level: a read_committed client
            // is told the last stable offset, a read_uncommitted one the high watermark.
            let end = |isolation: &str| -> Result<i64, BrokerError> {
                let consumer: BaseConsumer = base_config(&bootstrap, "weir-settled")
                    .set("isolation.level", isolation)
                    .create()
                    .map_err(|e| classify("creating a watermark client", &e, None))?;
                let (_, high) = consumer
                    .fetch_watermarks(&topic, partition, METADATA_TIMEOUT)
                    .map_err(|e| classify("fetching watermarks", &e, None))?;
                Ok(high)
            };
            Ok(end("read_committed")? == end("read_uncommitted")?)
        })
        .await?
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
