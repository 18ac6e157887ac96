//! Topic administration over a real cluster: creating a topic with its settings,
//! describing it (metadata for partitions and replicas, DescribeConfigs for the settings
//! a [`TopicSpec`] sets), and deleting it. Every request carries a timeout, every wait for
//! the cluster to catch up has a deadline, and every answer is read without panicking.

use std::time::Duration;

use rdkafka::admin::{
    AdminOptions, ConfigResource, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::error::RDKafkaErrorCode;

use super::broker::KafkaBroker;
use super::classify::{classify, classify_code};
use super::config::{METADATA_TIMEOUT, TOPIC_DELETED_TIMEOUT, TOPIC_READY_TIMEOUT};
use crate::{BrokerError, CleanupPolicy, Retention, TopicDescription, TopicSpec};

/// Pause between two metadata checks while waiting for a topic to appear or go.
const TOPIC_RECHECK_INTERVAL: Duration = Duration::from_millis(50);

/// What the cluster answered to a topic's creation.
pub(super) enum Created {
    /// This request created it.
    Now,
    /// A topic of that name existed already.
    AlreadyExisted,
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(METADATA_TIMEOUT))
        .operation_timeout(Some(METADATA_TIMEOUT))
}

impl KafkaBroker {
    /// Creates the topic of a checked `spec` and waits until every partition has a leader.
    /// A refusal of the spec's values (`InvalidPartitions`, `InvalidReplicationFactor`,
    /// `InvalidConfig`, a policy) is [`BrokerError::InvalidTopic`].
    pub(super) async fn create(&self, spec: &TopicSpec) -> Result<Created, BrokerError> {
        let partitions = i32::try_from(spec.partitions).map_err(|_| {
            BrokerError::InvalidTopic(format!(
                "topic {}: {} partitions",
                spec.name, spec.partitions
            ))
        })?;
        // -1: the cluster's default.replication.factor (KIP-464).
        let replication = spec
            .replication_factor
            .map_or(-1, |factor| i32::from(factor.get()));
        let entries = spec.config_entries();
        let mut new_topic =
            NewTopic::new(&spec.name, partitions, TopicReplication::Fixed(replication));
        for (name, value) in &entries {
            new_topic = new_topic.set(name, value);
        }
        let results = self
            .admin()
            .create_topics([&new_topic], &admin_options())
            .await
            .map_err(|e| classify("creating a topic", &e, None))?;
        let mut created = Created::Now;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = Created::AlreadyExisted,
                Err((name, code)) => {
                    return Err(refusal(&format!("creating topic {name}"), code));
                }
            }
        }
        self.await_topic_ready(&spec.name).await?;
        Ok(created)
    }

    /// CreateTopics returns once the controller has the topic; wait until this broker's
    /// metadata shows every partition with a leader, so the next call can use it.
    pub(super) async fn await_topic_ready(&self, topic: &str) -> Result<(), BrokerError> {
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
            tokio::time::sleep(TOPIC_RECHECK_INTERVAL).await;
        }
    }

    /// The topic's partitions and replicas from fresh metadata, its settings from
    /// DescribeConfigs.
    pub(super) async fn describe(&self, topic: &str) -> Result<TopicDescription, BrokerError> {
        let (partitions, replication_factor) = self.topic_replicas(topic).await?;
        let resource = ResourceSpecifier::Topic(topic);
        let results = self
            .admin()
            .describe_configs([&resource], &admin_options())
            .await
            .map_err(|e| classify("describing a topic's configuration", &e, None))?;
        let mut described = None;
        for result in results {
            let config = result.map_err(|code| {
                classify_code(&format!("describing the configuration of {topic}"), code)
            })?;
            described = Some(settings_of(topic, &config)?);
        }
        let (cleanup_policy, retention, max_message_bytes) = described.ok_or_else(|| {
            BrokerError::Fatal(format!(
                "DescribeConfigs answered nothing for topic {topic}"
            ))
        })?;
        Ok(TopicDescription {
            partitions,
            replication_factor,
            cleanup_policy,
            retention,
            max_message_bytes,
        })
    }

    /// Deletes `topic` (a missing one is fine) and waits until the metadata no longer
    /// shows it.
    pub(super) async fn delete(&self, topic: &str) -> Result<(), BrokerError> {
        crate::topic::check_topic_name(topic)?;
        let results = self
            .admin()
            .delete_topics(&[topic], &admin_options())
            .await
            .map_err(|e| classify("deleting a topic", &e, None))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => {
                    return Err(refusal(&format!("deleting topic {name}"), code));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + TOPIC_DELETED_TIMEOUT;
        loop {
            match self.topic_metadata(topic).await {
                Err(BrokerError::UnknownTopic(_)) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::Timeout(format!(
                    "topic {topic} was deleted but the metadata still showed it after {TOPIC_DELETED_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(TOPIC_RECHECK_INTERVAL).await;
        }
    }
}

/// A refused admin request: the spec's fault ([`BrokerError::InvalidTopic`]) or the
/// cluster's (classified as any other answer).
fn refusal(what: &str, code: RDKafkaErrorCode) -> BrokerError {
    use RDKafkaErrorCode as C;
    match code {
        C::InvalidTopic
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::InvalidReplicaAssignment
        | C::InvalidConfig
        | C::PolicyViolation => BrokerError::InvalidTopic(format!("{what}: {code}")),
        _ => classify_code(what, code),
    }
}

/// The cleanup policy in effect, and the retention and size limit set on the topic itself
/// (inherited values are `None`, as the seam describes them).
fn settings_of(
    topic: &str,
    config: &ConfigResource,
) -> Result<(CleanupPolicy, Option<Retention>, Option<u32>), BrokerError> {
    let unreadable = |name: &str, value: &str| {
        BrokerError::Fatal(format!("topic {topic}: unreadable {name} {value:?}"))
    };
    let cleanup_policy = match config
        .get("cleanup.policy")
        .and_then(|e| e.value.as_deref())
    {
        Some(value) => {
            CleanupPolicy::from_config(value).ok_or_else(|| unreadable("cleanup.policy", value))?
        }
        // Not described at all (an old broker): Kafka's default.
        None => CleanupPolicy::Delete,
    };
    let own_value = |name: &str| {
        config
            .get(name)
            .filter(|entry| entry.source == ConfigSource::DynamicTopic)
            .and_then(|entry| entry.value.as_deref())
    };
    let retention = own_value("retention.ms")
        .map(|value| Retention::from_config(value).ok_or_else(|| unreadable("retention.ms", value)))
        .transpose()?;
    let max_message_bytes = own_value("max.message.bytes")
        .map(|value| {
            value
                .trim()
                .parse::<u32>()
                .map_err(|_| unreadable("max.message.bytes", value))
        })
        .transpose()?;
    Ok((cleanup_policy, retention, max_message_bytes))
}
