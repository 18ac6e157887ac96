//! Topics, partitions and keys: partition counts, unknown topics and partitions, and
//! keyed records staying in one partition.

use weir_broker::{Broker, BrokerRecord, OutgoingRecord, PartitionReader};

use crate::support::*;
use crate::*;

/// `create_topic` makes a topic with the partitions asked for, `partition_count` reports
/// them, and creating an existing topic again succeeds and changes nothing.
pub async fn topics_report_their_partition_count<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("topics_report_their_partition_count", "partitions", prefix);
    let topic = fresh_topic(&case, broker, "data", 3).await?;
    case.call("create_topic again", broker.create_topic(&topic, 2).await)?;
    let count = case.call("partition_count", broker.partition_count(&topic).await)?;
    case.ensure(count == 3, || {
        format!("partition_count is {count} after creating the existing 3-partition topic again")
    })?;
    let single = fresh_topic(&case, broker, "single", 1).await?;
    let count = case.call("partition_count", broker.partition_count(&single).await)?;
    case.ensure(count == 1, || {
        format!("partition_count of a 1-partition topic is {count}")
    })
}

/// A topic that was never created, or a partition past a topic's last, is
/// `UnknownTopic` for `partition_count`, `reader` and `read_committed`.
pub async fn unknown_topics_and_partitions_are_errors<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new(
        "unknown_topics_and_partitions_are_errors",
        "unknown",
        prefix,
    );
    let missing = case.id("never-created");
    let existing = fresh_topic(&case, broker, "data", 1).await?;

    let count = broker.partition_count(&missing).await;
    expect_unknown(&case, "partition_count of a missing topic", &count)?;
    let reader = broker.reader(&missing, 0, 0).await.map(|_| ());
    expect_unknown(&case, "reader of a missing topic", &reader)?;
    let read = broker
        .read_committed(&missing, 0, 0, MAX_BATCH_RECORDS)
        .await;
    expect_unknown(&case, "read_committed of a missing topic", &read)?;
    let reader = broker.reader(&existing, 1, 0).await.map(|_| ());
    expect_unknown(
        &case,
        "reader of partition 1 of a 1-partition topic",
        &reader,
    )?;
    let read = broker
        .read_committed(&existing, 1, 0, MAX_BATCH_RECORDS)
        .await;
    expect_unknown(
        &case,
        "read_committed of partition 1 of a 1-partition topic",
        &read,
    )
}

/// Records sent with a key and no partition land in one partition per key, in send order,
/// and a transaction over several partitions commits in all of them.
pub async fn keyed_records_stay_in_one_partition<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("keyed_records_stay_in_one_partition", "keyed", prefix);
    const PARTITIONS: u32 = 3;
    const KEYS: usize = 4;
    const PER_KEY: usize = 2;
    let topic = fresh_topic(&case, broker, "data", PARTITIONS).await?;
    let sent: Vec<OutgoingRecord> = (0..PER_KEY)
        .flat_map(|round| (0..KEYS).map(move |key| (key, round)))
        .map(|(key, round)| {
            record(
                &topic,
                None,
                Some(&format!("key-{key}")),
                &format!("key-{key}/{round}"),
            )
        })
        .collect();
    let mut writer = case.call("writer", broker.writer(&case.id("writer")).await)?;
    commit_records(&case, &mut writer, &sent, &case.id("group"), &[]).await?;

    let mut readers = Vec::new();
    for partition in 0..PARTITIONS as i32 {
        readers.push(case.call("reader", broker.reader(&topic, partition, 0).await)?);
    }
    let mut read: Vec<BrokerRecord> = Vec::new();
    for _ in 0..VISIBILITY_POLLS {
        if read.len() >= sent.len() {
            break;
        }
        for reader in &mut readers {
            let batch = case.call(
                "poll_batch",
                reader.poll_batch(MAX_BATCH_RECORDS, POLL_WAIT).await,
            )?;
            read.extend(batch);
        }
    }
    case.ensure(read.len() == sent.len(), || {
        format!(
            "read {} of {} records: {}",
            read.len(),
            sent.len(),
            describe(&read)
        )
    })?;
    for key in 0..KEYS {
        let key_bytes = format!("key-{key}").into_bytes();
        let of_key: Vec<&BrokerRecord> = read
            .iter()
            .filter(|r| r.key.as_ref() == Some(&key_bytes))
            .collect();
        let expected: Vec<&OutgoingRecord> = sent
            .iter()
            .filter(|s| s.key.as_ref() == Some(&key_bytes))
            .collect();
        let same_partition = of_key.iter().all(|r| r.partition == of_key[0].partition);
        let in_order = of_key.len() == expected.len()
            && of_key.iter().zip(&expected).all(|(r, s)| matches(r, s));
        case.ensure(same_partition && in_order, || {
            let found: Vec<BrokerRecord> = of_key.iter().map(|r| (*r).clone()).collect();
            format!(
                "records of key-{key} are {}, expected all of them in one partition in send order",
                describe(&found)
            )
        })?;
    }
    Ok(())
}
