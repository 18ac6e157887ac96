//! Topic administration in the model: creating a topic with its settings, describing it,
//! deleting it. The settings are stored and described exactly as Kafka describes them,
//! but not enforced: the model never compacts a log or deletes records for age.

use super::cluster::Cluster;
use super::log::PartitionLog;
use crate::{BrokerError, CleanupPolicy, Retention, TopicDescription, TopicSpec};

/// The settings of one topic besides its partitions and `max.message.bytes` (which the
/// cluster keeps apart, as [`MemoryBroker::set_max_message_bytes`](super::MemoryBroker::set_max_message_bytes)
/// may set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TopicSettings {
    pub(super) replication_factor: u16,
    pub(super) cleanup_policy: CleanupPolicy,
    /// `None`: inherited from the cluster, as a topic created without `retention.ms`.
    pub(super) retention: Option<Retention>,
}

impl Default for TopicSettings {
    /// A topic created with no settings: one copy (the model is one broker), Kafka's
    /// default cleanup policy, the cluster's retention.
    fn default() -> Self {
        TopicSettings {
            replication_factor: 1,
            cleanup_policy: CleanupPolicy::Delete,
            retention: None,
        }
    }
}

impl Cluster {
    /// Creates the topic of a checked `spec`; `false` if a topic of that name exists (left
    /// as it is). A replication factor above 1 is refused as Kafka refuses it on a
    /// one-broker cluster.
    pub(super) fn create_topic(&mut self, spec: &TopicSpec) -> Result<bool, BrokerError> {
        spec.check()?;
        if self.topics.contains_key(&spec.name) {
            return Ok(false);
        }
        let replication_factor = spec.replication_factor.map_or(1, |n| n.get());
        if replication_factor > 1 {
            return Err(BrokerError::InvalidTopic(format!(
                "topic {}: replication factor {replication_factor} is larger than the 1 \
                 broker available",
                spec.name
            )));
        }
        let logs = (0..spec.partitions)
            .map(|_| PartitionLog::default())
            .collect();
        self.topics.insert(spec.name.clone(), logs);
        let settings = TopicSettings {
            replication_factor,
            cleanup_policy: spec.cleanup_policy,
            retention: spec.retention,
        };
        self.topic_settings.insert(spec.name.clone(), settings);
        // Without a limit of its own the topic keeps one set before it was created
        // (`set_max_message_bytes`); deleting a topic forgets its limit.
        if let Some(bytes) = spec.max_message_bytes {
            self.max_message_bytes
                .insert(spec.name.clone(), bytes as usize);
        }
        Ok(true)
    }

    pub(super) fn describe_topic(&self, topic: &str) -> Result<TopicDescription, BrokerError> {
        let partitions = self.partition_count(topic)?;
        let settings = self.topic_settings.get(topic).copied().unwrap_or_default();
        let max_message_bytes = self
            .max_message_bytes
            .get(topic)
            .map(|&bytes| u32::try_from(bytes).unwrap_or(u32::MAX));
        Ok(TopicDescription {
            partitions,
            replication_factor: settings.replication_factor,
            cleanup_policy: settings.cleanup_policy,
            retention: settings.retention,
            max_message_bytes,
        })
    }

    /// Deletes `topic` with its logs, settings and every group's committed offsets for it,
    /// at once (Kafka does it within moments). Open transactions forget its partitions, so
    /// their markers never reach a later topic of the same name. `Ok` if it is missing.
    pub(super) fn delete_topic(&mut self, topic: &str) -> Result<(), BrokerError> {
        crate::topic::check_topic_name(topic)?;
        if self.topics.remove(topic).is_none() {
            return Ok(());
        }
        self.topic_settings.remove(topic);
        self.max_message_bytes.remove(topic);
        self.group_offsets.retain(|(_, t, _), _| t != topic);
        for producer in self.producers.values_mut() {
            if let Some(open) = producer.open.as_mut() {
                open.partitions.retain(|(t, _)| t != topic);
            }
        }
        Ok(())
    }
}
