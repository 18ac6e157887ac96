//! Topics weir owns: what it asks of one ([`TopicSpec`]), what the cluster says one is
//! ([`TopicDescription`]), and the rules both broker implementations apply alike — which
//! specs are valid before anything is sent, and when an existing topic may be used as the
//! one asked for.
//!
//! A job's internal topics (repartition topics between its stages, changelog topics) are
//! created, checked and deleted by weir, so a topic that already exists under such a name
//! must be the one weir would have made: a topic with another partition count would route
//! keys to other partitions than the job's stages expect, and one with another cleanup
//! policy would have Kafka compact away records a stage has not read yet (or delete the
//! history a changelog must keep). Both are refused with a typed error
//! ([`BrokerError::PartitionCountMismatch`], [`BrokerError::CleanupPolicyMismatch`]),
//! never used. Retention and the record size limit are reported but not compared: they
//! bound how long and how large, not where or whether records are kept.

use std::fmt;
use std::num::NonZeroU16;

use crate::BrokerError;

/// Longest topic name Kafka accepts, in bytes.
pub const TOPIC_NAME_MAX_BYTES: usize = 249;

/// Most partitions weir asks for in one topic. Kafka has no hard limit; a bound here turns
/// a runaway setting into a clear refusal instead of a cluster-wide metadata burden.
pub const TOPIC_PARTITIONS_MAX: u32 = 10_000;

/// Kafka's `cleanup.policy` of a topic: what the broker does with old log segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CleanupPolicy {
    /// `delete`: segments older than the retention are deleted. Repartition topics, whose
    /// records are read once by the next stage.
    #[default]
    Delete,
    /// `compact`: only the latest record of each key is kept (a tombstone deletes the
    /// key). Changelog topics, which hold a table's current state.
    Compact,
    /// `compact,delete`: compacted, and segments past the retention deleted too. weir does
    /// not ask for it; a topic made elsewhere may have it, so a description can say so.
    CompactDelete,
}

impl CleanupPolicy {
    /// The value of Kafka's `cleanup.policy` setting.
    pub const fn as_config(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    /// Reads a `cleanup.policy` value as Kafka writes it (a comma-separated list, in
    /// either order); `None` for anything else.
    pub fn from_config(value: &str) -> Option<Self> {
        let mut compact = false;
        let mut delete = false;
        for part in value.split(',').map(str::trim) {
            match part {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        match (compact, delete) {
            (true, true) => Some(CleanupPolicy::CompactDelete),
            (true, false) => Some(CleanupPolicy::Compact),
            (false, true) => Some(CleanupPolicy::Delete),
            (false, false) => None,
        }
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_config())
    }
}

/// Kafka's `retention.ms` of a topic: how long records are kept before their segment may
/// be deleted (with [`CleanupPolicy::Delete`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retention {
    /// `retention.ms = -1`: never deleted for age.
    Forever,
    /// `retention.ms = n`, at least 1.
    Ms(u64),
}

impl Retention {
    /// The value of Kafka's `retention.ms` setting.
    pub fn as_config(self) -> String {
        match self {
            Retention::Forever => "-1".to_string(),
            Retention::Ms(ms) => ms.to_string(),
        }
    }

    /// Reads a `retention.ms` value; `None` for anything Kafka would not write.
    pub fn from_config(value: &str) -> Option<Self> {
        match value.trim().parse::<i64>().ok()? {
            -1 => Some(Retention::Forever),
            ms if ms >= 1 => Some(Retention::Ms(ms as u64)),
            _ => None,
        }
    }
}

/// A topic as weir wants it: what [`Broker::create_topic_with`](crate::Broker::create_topic_with)
/// creates and [`Broker::ensure_topic`](crate::Broker::ensure_topic) checks an existing
/// topic against. Every setting left `None` is the cluster's default, and is not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic's name: 1 to [`TOPIC_NAME_MAX_BYTES`] of `[a-zA-Z0-9._-]`, not `.` or `..`.
    pub name: String,
    /// Its partition count, 1 to [`TOPIC_PARTITIONS_MAX`]: fixed for the topic's life,
    /// since keys are routed by it.
    pub partitions: u32,
    /// Copies of each partition; `None` is the cluster's `default.replication.factor`
    /// (1 on a single broker, as in tests and `weir local`).
    pub replication_factor: Option<NonZeroU16>,
    /// `cleanup.policy`, always sent (never left to the cluster's default, which an
    /// operator may have changed): [`CleanupPolicy::Delete`] or [`CleanupPolicy::Compact`].
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms`; `None` is the cluster's `log.retention.*`.
    pub retention: Option<Retention>,
    /// `max.message.bytes`, the largest record batch the topic accepts; `None` is the
    /// cluster's `message.max.bytes`.
    pub max_message_bytes: Option<u32>,
}

impl TopicSpec {
    /// A topic of `partitions` partitions with the cleanup policy `delete` and every other
    /// setting the cluster's default.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replication_factor: None,
            cleanup_policy: CleanupPolicy::Delete,
            retention: None,
            max_message_bytes: None,
        }
    }

    /// Refuses a spec no Kafka cluster would accept, before anything is sent, so that both
    /// broker implementations refuse the same specs with the same error.
    pub fn check(&self) -> Result<(), BrokerError> {
        check_topic_name(&self.name)?;
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&self.partitions) {
            return Err(BrokerError::InvalidTopic(format!(
                "topic {}: {} partitions is outside 1..={TOPIC_PARTITIONS_MAX}",
                self.name, self.partitions
            )));
        }
        if self.cleanup_policy == CleanupPolicy::CompactDelete {
            return Err(BrokerError::InvalidTopic(format!(
                "topic {}: weir creates topics with cleanup.policy delete or compact only",
                self.name
            )));
        }
        if self.retention == Some(Retention::Ms(0)) {
            return Err(BrokerError::InvalidTopic(format!(
                "topic {}: retention.ms must be at least 1 (or forever)",
                self.name
            )));
        }
        if self.max_message_bytes == Some(0) {
            return Err(BrokerError::InvalidTopic(format!(
                "topic {}: max.message.bytes must be at least 1",
                self.name
            )));
        }
        Ok(())
    }

    /// Whether an existing topic described as `actual` may be used as this one: the same
    /// partition count and cleanup policy, else the typed error naming both.
    pub fn check_existing(&self, actual: &TopicDescription) -> Result<(), BrokerError> {
        if actual.partitions != self.partitions {
            return Err(BrokerError::PartitionCountMismatch {
                topic: self.name.clone(),
                expected: self.partitions,
                actual: actual.partitions,
            });
        }
        if actual.cleanup_policy != self.cleanup_policy {
            return Err(BrokerError::CleanupPolicyMismatch {
                topic: self.name.clone(),
                expected: self.cleanup_policy,
                actual: actual.cleanup_policy,
            });
        }
        Ok(())
    }

    /// The `(name, value)` configuration entries to create the topic with: the cleanup
    /// policy always, the others when set.
    pub fn config_entries(&self) -> Vec<(&'static str, String)> {
        let mut entries = vec![(
            "cleanup.policy",
            self.cleanup_policy.as_config().to_string(),
        )];
        if let Some(retention) = self.retention {
            entries.push(("retention.ms", retention.as_config()));
        }
        if let Some(bytes) = self.max_message_bytes {
            entries.push(("max.message.bytes", bytes.to_string()));
        }
        entries
    }
}

/// What the cluster says a topic is, from
/// [`Broker::describe_topic`](crate::Broker::describe_topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The partition count.
    pub partitions: u32,
    /// Copies of each partition (of partition 0; Kafka keeps them equal unless an operator
    /// reassigned some).
    pub replication_factor: u16,
    /// The cleanup policy in effect, whether set on the topic or inherited.
    pub cleanup_policy: CleanupPolicy,
    /// `retention.ms` if set on the topic itself; `None` when the topic inherits the
    /// cluster's retention.
    pub retention: Option<Retention>,
    /// `max.message.bytes` if set on the topic itself; `None` when the topic inherits the
    /// cluster's.
    pub max_message_bytes: Option<u32>,
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
pub fn check_topic_name(topic: &str) -> Result<(), BrokerError> {
    let legal_chars = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    let legal = !topic.is_empty()
        && topic.len() <= TOPIC_NAME_MAX_BYTES
        && legal_chars
        && topic != "."
        && topic != "..";
    if legal {
        Ok(())
    } else {
        Err(BrokerError::InvalidTopic(format!(
            "invalid topic name {topic:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_policies_read_as_kafka_writes_them() {
        for policy in [
            CleanupPolicy::Delete,
            CleanupPolicy::Compact,
            CleanupPolicy::CompactDelete,
        ] {
            assert_eq!(CleanupPolicy::from_config(policy.as_config()), Some(policy));
        }
        assert_eq!(
            CleanupPolicy::from_config("delete, compact"),
            Some(CleanupPolicy::CompactDelete)
        );
        for bad in ["", "keep", "compact,keep", ","] {
            assert_eq!(CleanupPolicy::from_config(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retention_reads_as_kafka_writes_it() {
        assert_eq!(Retention::from_config("-1"), Some(Retention::Forever));
        assert_eq!(
            Retention::from_config("604800000"),
            Some(Retention::Ms(604_800_000))
        );
        for bad in ["0", "-2", "soon", ""] {
            assert_eq!(Retention::from_config(bad), None, "{bad:?}");
        }
        assert_eq!(Retention::Forever.as_config(), "-1");
    }

    #[test]
    fn invalid_specs_are_refused_before_anything_is_sent() {
        let valid = TopicSpec::new("weir-job-7-repartition-1", 3);
        assert_eq!(valid.check(), Ok(()));
        let refused = |edit: fn(&mut TopicSpec)| {
            let mut spec = valid.clone();
            edit(&mut spec);
            matches!(spec.check(), Err(BrokerError::InvalidTopic(_)))
        };
        assert!(refused(|s| s.name = String::new()));
        assert!(refused(|s| s.name = "..".into()));
        assert!(refused(|s| s.name = "a/b".into()));
        assert!(refused(|s| s.name = "t".repeat(TOPIC_NAME_MAX_BYTES + 1)));
        assert!(refused(|s| s.partitions = 0));
        assert!(refused(|s| s.partitions = TOPIC_PARTITIONS_MAX + 1));
        assert!(refused(|s| s.cleanup_policy = CleanupPolicy::CompactDelete));
        assert!(refused(|s| s.retention = Some(Retention::Ms(0))));
        assert!(refused(|s| s.max_message_bytes = Some(0)));
    }

    #[test]
    fn an_existing_topic_must_match_in_partitions_and_cleanup_policy() {
        let spec = TopicSpec::new("t", 4);
        let mut actual = TopicDescription {
            partitions: 4,
            replication_factor: 1,
            cleanup_policy: CleanupPolicy::Delete,
            retention: Some(Retention::Forever),
            max_message_bytes: None,
        };
        assert_eq!(spec.check_existing(&actual), Ok(()));
        actual.partitions = 2;
        assert_eq!(
            spec.check_existing(&actual),
            Err(BrokerError::PartitionCountMismatch {
                topic: "t".into(),
                expected: 4,
                actual: 2
            })
        );
        actual.partitions = 4;
        actual.cleanup_policy = CleanupPolicy::Compact;
        let error = spec.check_existing(&actual).unwrap_err();
        assert_eq!(
            error.to_string(),
            "topic t exists with cleanup.policy compact, expected delete"
        );
    }

    #[test]
    fn config_entries_always_name_the_cleanup_policy() {
        let mut spec = TopicSpec::new("t", 1);
        assert_eq!(
            spec.config_entries(),
            vec![("cleanup.policy", "delete".to_string())]
        );
        spec.cleanup_policy = CleanupPolicy::Compact;
        spec.retention = Some(Retention::Ms(60_000));
        spec.max_message_bytes = Some(2_000_000);
        assert_eq!(
            spec.config_entries(),
            vec![
                ("cleanup.policy", "compact".to_string()),
                ("retention.ms", "60000".to_string()),
                ("max.message.bytes", "2000000".to_string()),
            ]
        );
    }
}
