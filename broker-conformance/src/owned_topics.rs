//! Topics weir owns: created with their settings and described as created, an existing
//! topic with another partition count or cleanup policy refused, invalid specs refused
//! before anything is created, and deletion (idempotent, taking the records and the
//! groups' committed offsets with it, leaving the name free for a new topic).

use weir_broker::{Broker, BrokerError, CleanupPolicy, Retention, TopicDescription, TopicSpec};

use crate::support::*;
use crate::*;

/// `ensure_topic` creates a topic with the spec's partitions and settings and
/// `describe_topic` reports them; ensuring it again changes nothing; a topic made by
/// `create_topic` describes with the defaults (cleanup policy `delete`, nothing of its own).
pub async fn owned_topics_are_created_with_their_settings<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new(
        "owned_topics_are_created_with_their_settings",
        "settings",
        prefix,
    );
    let mut repartition = TopicSpec::new(case.id("repartition"), 3);
    repartition.retention = Some(Retention::Ms(3_600_000));
    repartition.max_message_bytes = Some(2_000_000);
    let mut changelog = TopicSpec::new(case.id("changelog"), 2);
    changelog.cleanup_policy = CleanupPolicy::Compact;
    changelog.retention = Some(Retention::Forever);
    for spec in [&repartition, &changelog] {
        let ensured = case.call("ensure_topic", broker.ensure_topic(spec).await)?;
        expect_described_as(&case, spec, &ensured, "ensure_topic")?;
        let described = case.call("describe_topic", broker.describe_topic(&spec.name).await)?;
        expect_described_as(&case, spec, &described, "describe_topic")?;
        let again = case.call("ensure_topic again", broker.ensure_topic(spec).await)?;
        case.ensure(again == described, || {
            format!(
                "ensuring {} again described {again:?}, before {described:?}",
                spec.name
            )
        })?;
        let created = case.call("create_topic_with", broker.create_topic_with(spec).await)?;
        case.ensure(!created, || {
            format!(
                "create_topic_with of the existing {} said it created it",
                spec.name
            )
        })?;
    }
    let plain = fresh_topic(&case, broker, "plain", 1).await?;
    let described = case.call("describe_topic", broker.describe_topic(&plain).await)?;
    let defaults = described.partitions == 1
        && described.replication_factor >= 1
        && described.cleanup_policy == CleanupPolicy::Delete
        && described.retention.is_none()
        && described.max_message_bytes.is_none();
    case.ensure(defaults, || {
        format!("a topic made by create_topic describes as {described:?}, expected 1 partition, delete, nothing of its own")
    })
}

fn expect_described_as(
    case: &Case<'_>,
    spec: &TopicSpec,
    described: &TopicDescription,
    what: &str,
) -> Result<(), ConformanceFailure> {
    let same = described.partitions == spec.partitions
        && described.replication_factor >= 1
        && described.cleanup_policy == spec.cleanup_policy
        && described.retention == spec.retention
        && described.max_message_bytes == spec.max_message_bytes;
    case.ensure(same, || {
        format!(
            "{what} of {} returned {described:?} for the spec {spec:?}",
            spec.name
        )
    })
}

/// `ensure_topic` refuses an existing topic whose partition count or cleanup policy is not
/// the spec's, with the typed error naming both, and leaves the topic as it was.
pub async fn existing_topics_with_other_settings_are_refused<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new(
        "existing_topics_with_other_settings_are_refused",
        "mismatch",
        prefix,
    );
    let topic = fresh_topic(&case, broker, "data", 3).await?;
    let fewer = broker.ensure_topic(&TopicSpec::new(&topic, 2)).await;
    let expected = BrokerError::PartitionCountMismatch {
        topic: topic.clone(),
        expected: 2,
        actual: 3,
    };
    case.ensure(fewer.as_ref().err() == Some(&expected), || {
        format!("ensure_topic with 2 partitions of a 3-partition topic returned {fewer:?}")
    })?;
    let mut compacted = TopicSpec::new(&topic, 3);
    compacted.cleanup_policy = CleanupPolicy::Compact;
    let other_policy = broker.ensure_topic(&compacted).await;
    let expected = BrokerError::CleanupPolicyMismatch {
        topic: topic.clone(),
        expected: CleanupPolicy::Compact,
        actual: CleanupPolicy::Delete,
    };
    case.ensure(other_policy.as_ref().err() == Some(&expected), || {
        format!("ensure_topic compacted of a delete topic returned {other_policy:?}")
    })?;
    let count = case.call("partition_count", broker.partition_count(&topic).await)?;
    case.ensure(count == 3, || {
        format!("the refused topic has {count} partitions now, expected 3")
    })?;
    let same = case.call(
        "ensure_topic",
        broker.ensure_topic(&TopicSpec::new(&topic, 3)).await,
    )?;
    case.ensure(same.partitions == 3, || {
        format!("ensure_topic of the matching spec described {same:?}")
    })
}

/// Specs no cluster accepts are `InvalidTopic` and create nothing: an illegal name, no
/// partitions, too many, a zero retention.
pub async fn invalid_topic_specs_are_refused<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("invalid_topic_specs_are_refused", "invalid", prefix);
    let name = case.id("data");
    let mut retention_zero = TopicSpec::new(&name, 1);
    retention_zero.retention = Some(Retention::Ms(0));
    let refused = [
        TopicSpec::new(format!("{name}/slash"), 1),
        TopicSpec::new(&name, 0),
        TopicSpec::new(&name, weir_broker::topic::TOPIC_PARTITIONS_MAX + 1),
        retention_zero,
    ];
    for spec in &refused {
        let ensured = broker.ensure_topic(spec).await;
        case.ensure(matches!(ensured, Err(BrokerError::InvalidTopic(_))), || {
            format!("ensure_topic of {spec:?} returned {ensured:?}, expected InvalidTopic")
        })?;
        let created = broker.create_topic_with(spec).await;
        case.ensure(matches!(created, Err(BrokerError::InvalidTopic(_))), || {
            format!("create_topic_with of {spec:?} returned {created:?}, expected InvalidTopic")
        })?;
    }
    let described = broker.describe_topic(&name).await;
    expect_unknown(&case, "describe_topic after refused creations", &described)
}

/// `delete_topic` removes a topic with its records and committed offsets; deleting a
/// missing topic, or the same one twice, is `Ok`; the name can then hold a new topic of
/// another partition count, empty.
pub async fn topics_are_deleted_idempotently<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("topics_are_deleted_idempotently", "delete", prefix);
    let group = case.id("group");
    let source = fresh_topic(&case, broker, "source", 1).await?;
    let spec = TopicSpec::new(case.id("data"), 2);
    case.call("ensure_topic", broker.ensure_topic(&spec).await)?;
    let sent = [record(&spec.name, Some(0), None, "before-delete")];
    let mut writer = case.call("writer", broker.writer(&case.id("writer")).await)?;
    let offsets = [source_offset(&spec.name, 0, 1)];
    commit_records(&case, &mut writer, &sent, &group, &offsets).await?;
    read_exactly(&case, broker, &spec.name, 0, 0, &sent).await?;
    wait_committed_offset(&case, broker, &group, &spec.name, 0, Some(1)).await?;

    case.call("delete_topic", broker.delete_topic(&spec.name).await)?;
    let described = broker.describe_topic(&spec.name).await;
    expect_unknown(&case, "describe_topic of a deleted topic", &described)?;
    let count = broker.partition_count(&spec.name).await;
    expect_unknown(&case, "partition_count of a deleted topic", &count)?;
    case.call("delete_topic again", broker.delete_topic(&spec.name).await)?;
    let never = case.id("never-created");
    case.call(
        "delete_topic of a missing topic",
        broker.delete_topic(&never).await,
    )?;
    let other = broker.describe_topic(&source).await;
    case.ensure(other.is_ok(), || {
        format!("deleting a topic disturbed another: {other:?}")
    })?;

    let recreated = TopicSpec::new(&spec.name, 1);
    let described = case.call("ensure_topic", broker.ensure_topic(&recreated).await)?;
    case.ensure(described.partitions == 1, || {
        format!("the topic re-created with 1 partition describes as {described:?}")
    })?;
    read_exactly(&case, broker, &spec.name, 0, 0, &[]).await?;
    wait_committed_offset(&case, broker, &group, &spec.name, 0, None).await
}
