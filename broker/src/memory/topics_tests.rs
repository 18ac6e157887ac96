//! The model's topic administration where the conformance suite cannot reach: injected
//! failures of the admin calls, and deleting a topic an open transaction wrote to.

use super::*;
use crate::{OutgoingRecord, TransactionalWriter};

fn record(topic: &str, partition: i32, value: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.into(),
        partition: Some(partition),
        key: None,
        value: value.as_bytes().to_vec(),
        timestamp_ms: None,
    }
}

#[tokio::test]
async fn injected_failures_hit_the_admin_calls_without_effect() {
    let broker = MemoryBroker::new();
    let faults = broker.faults();
    let spec = TopicSpec::new("owned", 2);

    faults.fail_next(BrokerCall::CreateTopic, 1, InjectedFailure::Timeout);
    assert!(matches!(
        broker.ensure_topic(&spec).await,
        Err(BrokerError::Timeout(_))
    ));
    assert!(matches!(
        broker.describe_topic("owned").await,
        Err(BrokerError::UnknownTopic(_))
    ));
    broker.ensure_topic(&spec).await.unwrap();

    faults.fail_next(BrokerCall::DescribeTopic, 1, InjectedFailure::Unavailable);
    assert!(matches!(
        broker.ensure_topic(&spec).await,
        Err(BrokerError::Unavailable(_))
    ));
    faults.fail_next(BrokerCall::DeleteTopic, 1, InjectedFailure::Unavailable);
    assert!(matches!(
        broker.delete_topic("owned").await,
        Err(BrokerError::Unavailable(_))
    ));
    assert_eq!(broker.describe_topic("owned").await.unwrap().partitions, 2);

    faults.set_unreachable(true);
    assert!(broker.delete_topic("owned").await.is_err());
    faults.set_unreachable(false);
    broker.delete_topic("owned").await.unwrap();
    assert!(broker.describe_topic("owned").await.is_err());
}

#[tokio::test]
async fn deleting_a_topic_an_open_transaction_wrote_to_leaves_the_rest_of_it_whole() {
    let broker = MemoryBroker::new();
    broker.create_topic("kept", 1).await.unwrap();
    broker.create_topic("doomed", 2).await.unwrap();
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("kept", 0, "a")).await.unwrap();
    writer.send(record("doomed", 1, "b")).await.unwrap();

    broker.delete_topic("doomed").await.unwrap();
    broker.create_topic("doomed", 1).await.unwrap();
    assert!(matches!(
        writer.send(record("doomed", 1, "c")).await,
        Err(BrokerError::UnknownTopic(_))
    ));
    writer.commit("g", &[]).await.unwrap();

    let kept = broker.read_committed("kept", 0, 0, 10).await.unwrap();
    assert_eq!(kept.len(), 1);
    let fresh = broker.partition_offsets("doomed", 0).unwrap();
    assert_eq!(
        (fresh.log_end_offset, fresh.last_stable_offset),
        (0, 0),
        "no marker of the old transaction reaches the new topic"
    );
}

#[tokio::test]
async fn a_replication_factor_above_one_is_refused_as_on_one_broker() {
    let broker = MemoryBroker::new();
    let mut spec = TopicSpec::new("replicated", 1);
    spec.replication_factor = std::num::NonZeroU16::new(3);
    assert!(matches!(
        broker.ensure_topic(&spec).await,
        Err(BrokerError::InvalidTopic(_))
    ));
    spec.replication_factor = std::num::NonZeroU16::new(1);
    let described = broker.ensure_topic(&spec).await.unwrap();
    assert_eq!(described.replication_factor, 1);
}

#[tokio::test]
async fn a_size_limit_set_before_creation_is_described() {
    let broker = MemoryBroker::new();
    broker.set_max_message_bytes("limited", 100_000);
    broker.create_topic("limited", 1).await.unwrap();
    let described = broker.describe_topic("limited").await.unwrap();
    assert_eq!(described.max_message_bytes, Some(100_000));
    broker.delete_topic("limited").await.unwrap();
    broker.create_topic("limited", 1).await.unwrap();
    let described = broker.describe_topic("limited").await.unwrap();
    assert_eq!(described.max_message_bytes, None);
}
