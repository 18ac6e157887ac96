//! The model's own unit tests: Kafka's murmur2 vectors and the cases the conformance suite
//! cannot reach (injected faults, epochs, the model's logical clock).

use super::*;
use crate::{OutgoingRecord, PartitionReader, SourceOffset, TransactionalWriter};
use std::time::Duration;

const TOPIC: &str = "t";

fn record(value: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: TOPIC.into(),
        partition: Some(0),
        key: None,
        value: value.as_bytes().to_vec(),
        timestamp_ms: None,
    }
}

fn values(records: &[BrokerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap_or_default()).unwrap())
        .collect()
}

async fn broker_with_topic(partitions: u32) -> MemoryBroker {
    let broker = MemoryBroker::new();
    broker.create_topic(TOPIC, partitions).await.unwrap();
    broker.create_topic("source", 1).await.unwrap();
    broker
}

async fn visible(broker: &MemoryBroker) -> Vec<String> {
    values(&broker.read_committed(TOPIC, 0, 0, 100).await.unwrap())
}

fn offset(next_offset: i64) -> Vec<SourceOffset> {
    vec![SourceOffset {
        topic: "source".into(),
        partition: 0,
        next_offset,
    }]
}

#[test]
fn murmur2_matches_kafkas_utils_test_vectors() {
    let cases: [(&[u8], i32); 6] = [
        (b"21", -973_932_308),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        (b"abc", 479_470_107),
    ];
    for (key, expected) in cases {
        assert_eq!(
            murmur2(key),
            expected,
            "murmur2({:?})",
            String::from_utf8_lossy(key)
        );
    }
    assert_eq!(partition_for_key(b"foobar", 50), 16);
}

#[tokio::test]
async fn records_take_offsets_at_send_and_markers_take_one_more() {
    let broker = broker_with_topic(1).await;
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("a")).await.unwrap();
    writer.send(record("b")).await.unwrap();
    let offsets = broker.partition_offsets(TOPIC, 0).unwrap();
    assert_eq!(
        offsets,
        PartitionOffsets {
            log_end_offset: 2,
            last_stable_offset: 0
        }
    );
    writer.commit("g", &[]).await.unwrap();
    let offsets = broker.partition_offsets(TOPIC, 0).unwrap();
    assert_eq!(
        offsets,
        PartitionOffsets {
            log_end_offset: 3,
            last_stable_offset: 3
        }
    );

    writer.begin().unwrap();
    writer.send(record("c")).await.unwrap();
    writer.commit("g", &[]).await.unwrap();
    let read = broker.read_committed(TOPIC, 0, 0, 100).await.unwrap();
    let read_offsets: Vec<i64> = read.iter().map(|r| r.offset).collect();
    assert_eq!(
        read_offsets,
        vec![0, 1, 3],
        "the commit marker occupies offset 2"
    );
    assert_eq!(
        read[0].timestamp_ms,
        Some(0),
        "the logical clock stamps records"
    );
    assert_eq!(read[2].timestamp_ms, Some(2));
}

#[tokio::test]
async fn open_transaction_blocks_later_commits_of_others_until_it_ends() {
    let broker = broker_with_topic(1).await;
    let mut slow = broker.writer("slow").await.unwrap();
    let mut fast = broker.writer("fast").await.unwrap();
    slow.begin().unwrap();
    slow.send(record("slow-1")).await.unwrap();
    fast.begin().unwrap();
    fast.send(record("fast-1")).await.unwrap();
    fast.commit("g", &[]).await.unwrap();

    let mut reader = broker.reader(TOPIC, 0, 0).await.unwrap();
    assert!(reader
        .poll_batch(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(reader.position(), 0, "a reader never passes the LSO");
    assert_eq!(reader.high_watermark(), Some(3));
    assert_eq!(
        broker
            .partition_offsets(TOPIC, 0)
            .unwrap()
            .last_stable_offset,
        0
    );

    slow.abort().await.unwrap();
    let batch = reader.poll_batch(10, Duration::ZERO).await.unwrap();
    assert_eq!(values(&batch), vec!["fast-1"]);
    assert_eq!(
        reader.position(),
        4,
        "the position moves past trailing markers"
    );
    assert!(reader
        .poll_batch(10, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn lso_is_the_oldest_open_transaction_across_producers() {
    let broker = broker_with_topic(1).await;
    let mut a = broker.writer("a").await.unwrap();
    let mut b = broker.writer("b").await.unwrap();
    a.begin().unwrap();
    b.begin().unwrap();
    b.send(record("b-1")).await.unwrap(); // offset 0
    a.send(record("a-1")).await.unwrap(); // offset 1
    b.commit("g", &[]).await.unwrap(); // marker at 2
    assert_eq!(
        broker
            .partition_offsets(TOPIC, 0)
            .unwrap()
            .last_stable_offset,
        1
    );
    assert_eq!(visible(&broker).await, vec!["b-1"]);
    a.commit("g", &[]).await.unwrap();
    assert_eq!(visible(&broker).await, vec!["b-1", "a-1"]);
}

#[tokio::test]
async fn a_new_writer_fences_the_zombie_and_aborts_its_transaction() {
    let broker = broker_with_topic(1).await;
    let mut zombie = broker.writer("w").await.unwrap();
    zombie.begin().unwrap();
    zombie.send(record("zombie")).await.unwrap();
    let mut successor = broker.writer("w").await.unwrap();
    assert_eq!(
        (zombie.producer_epoch(), successor.producer_epoch()),
        (0, 1)
    );
    assert_eq!(
        broker
            .partition_offsets(TOPIC, 0)
            .unwrap()
            .last_stable_offset,
        2
    );

    assert!(matches!(
        zombie.send(record("late")).await,
        Err(BrokerError::Fenced(_))
    ));
    assert!(matches!(
        zombie.commit("g", &offset(5)).await,
        Err(BrokerError::Fenced(_))
    ));
    assert!(matches!(zombie.abort().await, Err(BrokerError::Fenced(_))));
    assert!(matches!(zombie.begin(), Err(BrokerError::Fenced(_))));
    assert_eq!(
        broker.committed_offset("g", "source", 0).await.unwrap(),
        None
    );

    successor.begin().unwrap();
    successor.send(record("successor")).await.unwrap();
    successor.commit("g", &offset(1)).await.unwrap();
    assert_eq!(visible(&broker).await, vec!["successor"]);
    assert_eq!(
        broker.committed_offset("g", "source", 0).await.unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn an_expired_transaction_is_aborted_and_the_writer_must_abort() {
    let broker = broker_with_topic(1).await;
    let faults = broker.faults();
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("expired")).await.unwrap();
    assert_eq!(faults.open_transactions(), vec!["w".to_string()]);
    assert!(faults.expire_transaction("w"));
    assert!(!faults.expire_transaction("w"), "nothing left to expire");
    assert!(faults.open_transactions().is_empty());
    assert_eq!(
        broker
            .partition_offsets(TOPIC, 0)
            .unwrap()
            .last_stable_offset,
        2
    );

    let commit = writer.commit("g", &offset(1)).await;
    assert!(
        matches!(commit, Err(BrokerError::AbortRequired(_))),
        "{commit:?}"
    );
    assert!(matches!(
        writer.send(record("more")).await,
        Err(BrokerError::AbortRequired(_))
    ));
    assert!(matches!(
        writer.commit("g", &offset(1)).await,
        Err(BrokerError::AbortRequired(_))
    ));
    writer.abort().await.unwrap();
    assert_eq!(
        broker.committed_offset("g", "source", 0).await.unwrap(),
        None
    );

    writer.begin().unwrap();
    writer.send(record("again")).await.unwrap();
    writer.commit("g", &offset(1)).await.unwrap();
    assert_eq!(visible(&broker).await, vec!["again"]);
}

#[tokio::test]
async fn expiry_found_by_send_requires_abort() {
    let broker = broker_with_topic(1).await;
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    broker.faults().expire_transaction("w");
    assert!(matches!(
        writer.send(record("x")).await,
        Err(BrokerError::AbortRequired(_))
    ));
    assert_eq!(
        broker.partition_offsets(TOPIC, 0).unwrap().log_end_offset,
        0
    );
    writer.abort().await.unwrap();
}

#[tokio::test]
async fn a_commit_whose_reply_is_lost_took_effect_and_a_retry_succeeds() {
    let broker = broker_with_topic(1).await;
    broker.faults().commit_outcome_unknown_next(1);
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("a")).await.unwrap();
    assert!(matches!(
        writer.commit("g", &offset(7)).await,
        Err(BrokerError::Timeout(_))
    ));
    assert_eq!(visible(&broker).await, vec!["a"]);
    assert_eq!(
        broker.committed_offset("g", "source", 0).await.unwrap(),
        Some(7)
    );

    assert!(
        matches!(writer.abort().await, Err(BrokerError::Fatal(_))),
        "only a retried commit"
    );
    assert!(matches!(writer.begin(), Err(BrokerError::Fatal(_))));
    writer.commit("g", &offset(7)).await.unwrap();
    writer.begin().unwrap();
    writer.send(record("b")).await.unwrap();
    writer.commit("g", &offset(8)).await.unwrap();
    assert_eq!(visible(&broker).await, vec!["a", "b"]);
}

#[tokio::test]
async fn a_commit_whose_reply_is_lost_is_kept_by_a_new_writer() {
    let broker = broker_with_topic(1).await;
    broker.faults().commit_outcome_unknown_next(1);
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("a")).await.unwrap();
    assert!(matches!(
        writer.commit("g", &offset(3)).await,
        Err(BrokerError::Timeout(_))
    ));
    let _successor = broker.writer("w").await.unwrap();
    assert_eq!(visible(&broker).await, vec!["a"]);
    assert_eq!(
        broker.committed_offset("g", "source", 0).await.unwrap(),
        Some(3)
    );
    assert!(matches!(
        writer.commit("g", &offset(3)).await,
        Err(BrokerError::Fenced(_))
    ));
}

#[tokio::test]
async fn a_timed_out_commit_without_effect_completes_on_retry() {
    let broker = broker_with_topic(1).await;
    let faults = broker.faults();
    faults.fail_next(BrokerCall::Commit, 1, InjectedFailure::Timeout);
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("a")).await.unwrap();
    assert!(matches!(
        writer.commit("g", &offset(1)).await,
        Err(BrokerError::Timeout(_))
    ));
    assert!(visible(&broker).await.is_empty());
    assert!(matches!(writer.abort().await, Err(BrokerError::Fatal(_))));
    writer.commit("g", &offset(1)).await.unwrap();
    assert_eq!(visible(&broker).await, vec!["a"]);
    assert_eq!(
        broker.committed_offset("g", "source", 0).await.unwrap(),
        Some(1)
    );
}

#[tokio::test]
async fn a_commit_retried_after_expiry_requires_abort() {
    let broker = broker_with_topic(1).await;
    let faults = broker.faults();
    faults.fail_next(BrokerCall::Commit, 1, InjectedFailure::Timeout);
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("a")).await.unwrap();
    assert!(writer.commit("g", &offset(1)).await.is_err());
    faults.expire_transaction("w");
    assert!(matches!(
        writer.commit("g", &offset(1)).await,
        Err(BrokerError::AbortRequired(_))
    ));
    writer.abort().await.unwrap();
    assert!(visible(&broker).await.is_empty());
}

#[tokio::test]
async fn injected_failures_have_no_effect_and_run_out() {
    let broker = broker_with_topic(1).await;
    let faults = broker.faults();
    faults.fail_next(BrokerCall::Writer, 2, InjectedFailure::Unavailable);
    assert!(matches!(
        broker.writer("w").await,
        Err(BrokerError::Unavailable(_))
    ));
    assert!(matches!(
        broker.writer("w").await,
        Err(BrokerError::Unavailable(_))
    ));
    let mut writer = broker.writer("w").await.unwrap();
    assert_eq!(
        writer.producer_epoch(),
        0,
        "failed calls did not bump the epoch"
    );

    writer.begin().unwrap();
    faults.fail_next(BrokerCall::Send, 1, InjectedFailure::Unavailable);
    assert!(matches!(
        writer.send(record("lost")).await,
        Err(BrokerError::Unavailable(_))
    ));
    writer.send(record("kept")).await.unwrap();
    faults.fail_next(BrokerCall::Commit, 1, InjectedFailure::Unavailable);
    assert!(matches!(
        writer.commit("g", &offset(1)).await,
        Err(BrokerError::Unavailable(_))
    ));
    writer.commit("g", &offset(1)).await.unwrap();

    faults.fail_next(BrokerCall::Poll, 1, InjectedFailure::Timeout);
    let mut reader = broker.reader(TOPIC, 0, 0).await.unwrap();
    assert!(matches!(
        reader.poll_batch(10, Duration::ZERO).await,
        Err(BrokerError::Timeout(_))
    ));
    assert_eq!(reader.position(), 0);
    assert_eq!(
        values(&reader.poll_batch(10, Duration::ZERO).await.unwrap()),
        vec!["kept"]
    );

    for call in [
        BrokerCall::PartitionCount,
        BrokerCall::CreateTopic,
        BrokerCall::CommittedOffset,
        BrokerCall::Reader,
        BrokerCall::ReadCommitted,
    ] {
        faults.fail_next(call, 1, InjectedFailure::Timeout);
    }
    assert!(broker.partition_count(TOPIC).await.is_err());
    assert!(broker.create_topic("new", 1).await.is_err());
    assert!(broker.committed_offset("g", "source", 0).await.is_err());
    assert!(broker.reader(TOPIC, 0, 0).await.is_err());
    assert!(broker.read_committed(TOPIC, 0, 0, 10).await.is_err());
    assert!(matches!(
        broker.partition_count("new").await,
        Err(BrokerError::UnknownTopic(_))
    ));
}

#[tokio::test]
async fn a_timed_out_send_leaves_the_record_out_and_requires_abort() {
    let broker = broker_with_topic(1).await;
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("a")).await.unwrap();
    broker
        .faults()
        .fail_next(BrokerCall::Send, 1, InjectedFailure::Timeout);
    assert!(matches!(
        writer.send(record("b")).await,
        Err(BrokerError::Timeout(_))
    ));
    assert!(matches!(
        writer.commit("g", &[]).await,
        Err(BrokerError::AbortRequired(_))
    ));
    writer.abort().await.unwrap();
    assert!(visible(&broker).await.is_empty());
}

#[tokio::test]
async fn a_timed_out_abort_is_completed_by_a_retry() {
    let broker = broker_with_topic(1).await;
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("a")).await.unwrap();
    broker
        .faults()
        .fail_next(BrokerCall::Abort, 1, InjectedFailure::Timeout);
    assert!(matches!(writer.abort().await, Err(BrokerError::Timeout(_))));
    assert!(matches!(
        writer.commit("g", &[]).await,
        Err(BrokerError::Fatal(_))
    ));
    assert_eq!(
        broker
            .partition_offsets(TOPIC, 0)
            .unwrap()
            .last_stable_offset,
        0
    );
    writer.abort().await.unwrap();
    assert_eq!(
        broker
            .partition_offsets(TOPIC, 0)
            .unwrap()
            .last_stable_offset,
        2
    );
}

#[tokio::test]
async fn an_unreachable_cluster_fails_every_call_until_healed() {
    let broker = broker_with_topic(1).await;
    let faults = broker.faults();
    faults.fail_next(BrokerCall::PartitionCount, 1, InjectedFailure::Timeout);
    faults.set_unreachable(true);
    assert!(matches!(
        broker.partition_count(TOPIC).await,
        Err(BrokerError::Unavailable(_))
    ));
    assert!(matches!(
        broker.writer("w").await,
        Err(BrokerError::Unavailable(_))
    ));
    faults.set_unreachable(false);
    assert!(
        matches!(
            broker.partition_count(TOPIC).await,
            Err(BrokerError::Timeout(_))
        ),
        "the queued failure was kept while unreachable"
    );
    faults.fail_next(BrokerCall::PartitionCount, 3, InjectedFailure::Timeout);
    faults.heal();
    assert_eq!(broker.partition_count(TOPIC).await.unwrap(), 1);
}

#[tokio::test]
async fn usage_errors_are_reported_not_ignored() {
    let broker = broker_with_topic(1).await;
    let mut writer = broker.writer("w").await.unwrap();
    assert!(matches!(
        writer.send(record("x")).await,
        Err(BrokerError::Fatal(_))
    ));
    assert!(matches!(
        writer.commit("g", &[]).await,
        Err(BrokerError::Fatal(_))
    ));
    assert!(matches!(writer.abort().await, Err(BrokerError::Fatal(_))));
    writer.begin().unwrap();
    assert!(matches!(writer.begin(), Err(BrokerError::Fatal(_))));

    let mut to_nowhere = record("x");
    to_nowhere.topic = "nowhere".into();
    assert!(matches!(
        writer.send(to_nowhere).await,
        Err(BrokerError::UnknownTopic(_))
    ));
    let mut bad_partition = record("x");
    bad_partition.partition = Some(1);
    assert!(matches!(
        writer.send(bad_partition).await,
        Err(BrokerError::UnknownTopic(_))
    ));
    writer.send(record("ok")).await.unwrap();

    let unknown_source = vec![SourceOffset {
        topic: "nowhere".into(),
        partition: 0,
        next_offset: 1,
    }];
    assert!(matches!(
        writer.commit("g", &unknown_source).await,
        Err(BrokerError::UnknownTopic(_))
    ));
    assert!(matches!(
        writer.commit("g", &[]).await,
        Err(BrokerError::AbortRequired(_))
    ));
    writer.abort().await.unwrap();
    assert!(visible(&broker).await.is_empty());

    assert!(broker.create_topic("bad name", 1).await.is_err());
    assert!(broker.create_topic("empty", 0).await.is_err());
    assert!(broker.writer("").await.is_err());
    assert!(broker.reader(TOPIC, 0, -1).await.is_err());
    let mut beyond = broker.reader(TOPIC, 0, 99).await.unwrap();
    assert!(matches!(
        beyond.poll_batch(1, Duration::ZERO).await,
        Err(BrokerError::Fatal(_))
    ));
}

#[tokio::test]
async fn partitioning_is_deterministic() {
    let broker = broker_with_topic(4).await;
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    for (key, value) in [
        (Some("k"), "k-1"),
        (None, "n-1"),
        (None, "n-2"),
        (Some("k"), "k-2"),
    ] {
        let outgoing = OutgoingRecord {
            topic: TOPIC.into(),
            partition: None,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.as_bytes().to_vec(),
            timestamp_ms: Some(42),
        };
        writer.send(outgoing).await.unwrap();
    }
    writer.commit("g", &[]).await.unwrap();
    let keyed = partition_for_key(b"k", 4);
    let read = broker.read_committed(TOPIC, keyed, 0, 10).await.unwrap();
    let keyed_values: Vec<String> = values(&read)
        .into_iter()
        .filter(|v| v.starts_with('k'))
        .collect();
    assert_eq!(keyed_values, vec!["k-1", "k-2"]);
    assert!(read.iter().all(|r| r.timestamp_ms == Some(42)));
    assert!(
        values(&broker.read_committed(TOPIC, 0, 0, 10).await.unwrap()).contains(&"n-1".to_string())
    );
    assert!(
        values(&broker.read_committed(TOPIC, 1, 0, 10).await.unwrap()).contains(&"n-2".to_string())
    );
}

#[tokio::test]
async fn a_supplied_clock_stamps_records() {
    #[derive(Debug)]
    struct FixedClock;
    impl Clock for FixedClock {
        fn now_ms(&self) -> u64 {
            1_735_689_600_000
        }
    }
    let broker = MemoryBroker::with_clock(Arc::new(FixedClock));
    broker.create_topic(TOPIC, 1).await.unwrap();
    let mut writer = broker.writer("w").await.unwrap();
    writer.begin().unwrap();
    writer.send(record("a")).await.unwrap();
    writer.commit("g", &[]).await.unwrap();
    let read = broker.read_committed(TOPIC, 0, 0, 10).await.unwrap();
    assert_eq!(read[0].timestamp_ms, Some(1_735_689_600_000));
}

#[tokio::test]
async fn clones_share_one_cluster_across_threads() {
    let broker = broker_with_topic(1).await;
    let other = broker.clone();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut writer = other.writer("w").await.unwrap();
            writer.begin().unwrap();
            writer.send(record("from-thread")).await.unwrap();
            writer.commit("g", &[]).await.unwrap();
        });
    });
    handle.join().unwrap();
    assert_eq!(visible(&broker).await, vec!["from-thread"]);
}
