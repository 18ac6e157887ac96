//! Helpers shared by the cases: naming what a case creates, sending, and reading with
//! bounded waits (never a fixed sleep).

use weir_broker::{
    Broker, BrokerError, BrokerRecord, OutgoingRecord, PartitionReader, SourceOffset,
    TransactionalWriter,
};

use crate::*;

/// One running case: its name for failures, and the names of what it creates.
pub(crate) struct Case<'a> {
    name: &'static str,
    short: &'static str,
    prefix: &'a str,
}

impl<'a> Case<'a> {
    pub(crate) fn new(name: &'static str, short: &'static str, prefix: &'a str) -> Self {
        Case {
            name,
            short,
            prefix,
        }
    }

    /// A name for a topic, transactional id or group of this case.
    pub(crate) fn id(&self, what: &str) -> String {
        format!("{}-{}-{}", self.prefix, self.short, what)
    }

    pub(crate) fn fail(&self, detail: impl Into<String>) -> ConformanceFailure {
        ConformanceFailure {
            case: self.name,
            detail: detail.into(),
        }
    }

    pub(crate) fn ensure(
        &self,
        condition: bool,
        detail: impl FnOnce() -> String,
    ) -> Result<(), ConformanceFailure> {
        if condition {
            Ok(())
        } else {
            Err(self.fail(detail()))
        }
    }

    /// A broker call that must succeed.
    pub(crate) fn call<T>(
        &self,
        what: &str,
        result: Result<T, BrokerError>,
    ) -> Result<T, ConformanceFailure> {
        result.map_err(|error| self.fail(format!("{what} failed: {error}")))
    }
}

pub(crate) fn record(
    topic: &str,
    partition: Option<i32>,
    key: Option<&str>,
    value: &str,
) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_string(),
        partition,
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.as_bytes().to_vec(),
        timestamp_ms: Some(RECORD_TIMESTAMP_MS),
    }
}

pub(crate) fn source_offset(topic: &str, partition: i32, next_offset: i64) -> SourceOffset {
    SourceOffset {
        topic: topic.to_string(),
        partition,
        next_offset,
    }
}

/// Whether `read` is the record `sent` was, as far as the sender decided it.
pub(crate) fn matches(read: &BrokerRecord, sent: &OutgoingRecord) -> bool {
    let timestamp_kept = match sent.timestamp_ms {
        Some(timestamp_ms) => read.timestamp_ms == Some(timestamp_ms),
        None => read.timestamp_ms.is_some(),
    };
    read.topic == sent.topic
        && sent
            .partition
            .is_none_or(|partition| partition == read.partition)
        && read.key == sent.key
        && read.value.as_deref() == Some(sent.value.as_slice())
        && timestamp_kept
}

pub(crate) fn describe(records: &[BrokerRecord]) -> String {
    let items: Vec<String> = records
        .iter()
        .map(|r| {
            let value =
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            format!("{value}@{}/{}", r.partition, r.offset)
        })
        .collect();
    format!("[{}]", items.join(", "))
}

pub(crate) fn describe_sent(records: &[OutgoingRecord]) -> String {
    let items: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    format!("[{}]", items.join(", "))
}

/// Creates a topic for this case and waits until the broker reports it with its
/// partitions (a real cluster may answer the creation before its metadata has spread).
pub(crate) async fn fresh_topic<B: Broker>(
    case: &Case<'_>,
    broker: &B,
    what: &str,
    partitions: u32,
) -> Result<String, ConformanceFailure> {
    let topic = case.id(what);
    case.call(
        "create_topic",
        broker.create_topic(&topic, partitions).await,
    )?;
    for _ in 0..RECHECK_LIMIT {
        match broker.partition_count(&topic).await {
            Ok(count) if count == partitions => return Ok(topic),
            Ok(count) => {
                return Err(case.fail(format!(
                    "topic {topic} was created with {partitions} partitions but reports {count}; \
                     the topic prefix must be new to the cluster"
                )))
            }
            Err(BrokerError::UnknownTopic(_)) => tokio::time::sleep(RECHECK_INTERVAL).await,
            Err(error) => {
                return Err(case.fail(format!("partition_count of {topic} failed: {error}")))
            }
        }
    }
    Err(case.fail(format!(
        "topic {topic} was still unknown {RECHECK_LIMIT} checks after its creation"
    )))
}

pub(crate) async fn send_all<W: TransactionalWriter>(
    case: &Case<'_>,
    writer: &mut W,
    records: &[OutgoingRecord],
) -> Result<(), ConformanceFailure> {
    for record in records {
        case.call("send", writer.send(record.clone()).await)?;
    }
    Ok(())
}

/// One whole transaction: begin, send `records`, commit with `offsets`.
pub(crate) async fn commit_records<W: TransactionalWriter>(
    case: &Case<'_>,
    writer: &mut W,
    records: &[OutgoingRecord],
    group: &str,
    offsets: &[SourceOffset],
) -> Result<(), ConformanceFailure> {
    case.call("begin", writer.begin())?;
    send_all(case, writer, records).await?;
    case.call("commit", writer.commit(group, offsets).await)
}

/// Polls until `count` records came back or [`VISIBILITY_POLLS`] polls were made, never
/// asking for more than are still expected.
pub(crate) async fn poll_records<R: PartitionReader>(
    case: &Case<'_>,
    reader: &mut R,
    count: usize,
) -> Result<Vec<BrokerRecord>, ConformanceFailure> {
    let mut records = Vec::new();
    for _ in 0..VISIBILITY_POLLS {
        if records.len() >= count {
            break;
        }
        let max_records = count - records.len();
        let batch = case.call(
            "poll_batch",
            reader.poll_batch(max_records, POLL_WAIT).await,
        )?;
        case.ensure(batch.len() <= max_records, || {
            format!("poll_batch({max_records}) returned {} records", batch.len())
        })?;
        records.extend(batch);
    }
    Ok(records)
}

/// `read` are the records `expected` described, in order, at increasing offsets from
/// `from` on.
pub(crate) fn expect_records(
    case: &Case<'_>,
    read: &[BrokerRecord],
    expected: &[OutgoingRecord],
    from: i64,
) -> Result<(), ConformanceFailure> {
    let same =
        read.len() == expected.len() && read.iter().zip(expected).all(|(r, s)| matches(r, s));
    case.ensure(same, || {
        format!(
            "read {} from offset {from}, expected {}",
            describe(read),
            describe_sent(expected)
        )
    })?;
    let increasing = read.windows(2).all(|pair| pair[0].offset < pair[1].offset);
    let from_start = read.first().is_none_or(|first| first.offset >= from);
    case.ensure(increasing && from_start, || {
        format!(
            "offsets of {} are not increasing from {from}",
            describe(read)
        )
    })
}

/// Nothing more is visible to `reader` over [`ABSENCE_POLLS`] polls.
pub(crate) async fn expect_no_more<R: PartitionReader>(
    case: &Case<'_>,
    reader: &mut R,
    when: &str,
) -> Result<(), ConformanceFailure> {
    for _ in 0..ABSENCE_POLLS {
        let batch = case.call(
            "poll_batch",
            reader.poll_batch(MAX_BATCH_RECORDS, POLL_WAIT).await,
        )?;
        case.ensure(batch.is_empty(), || {
            format!("read {} {when}", describe(&batch))
        })?;
    }
    Ok(())
}

/// A new reader at `from` reads exactly `expected`, then nothing more.
pub(crate) async fn read_exactly<B: Broker>(
    case: &Case<'_>,
    broker: &B,
    topic: &str,
    partition: i32,
    from: i64,
    expected: &[OutgoingRecord],
) -> Result<Vec<BrokerRecord>, ConformanceFailure> {
    let mut reader = case.call("reader", broker.reader(topic, partition, from).await)?;
    let read = poll_records(case, &mut reader, expected.len()).await?;
    expect_records(case, &read, expected, from)?;
    let extra = case.call(
        "poll_batch",
        reader.poll_batch(MAX_BATCH_RECORDS, POLL_WAIT).await,
    )?;
    case.ensure(extra.is_empty(), || {
        format!(
            "after reading {} from {topic}/{partition} at {from}, also read {}",
            describe_sent(expected),
            describe(&extra)
        )
    })?;
    Ok(read)
}

/// [`Broker::read_committed`] returns what a reader returned (waiting, within bounds, for
/// a broker whose answer may lag behind a reader's).
pub(crate) async fn expect_read_committed<B: Broker>(
    case: &Case<'_>,
    broker: &B,
    topic: &str,
    partition: i32,
    from: i64,
    expected: &[BrokerRecord],
) -> Result<(), ConformanceFailure> {
    let mut read = Vec::new();
    for _ in 0..RECHECK_LIMIT {
        read = case.call(
            "read_committed",
            broker
                .read_committed(topic, partition, from, MAX_BATCH_RECORDS)
                .await,
        )?;
        if read.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(RECHECK_INTERVAL).await;
    }
    case.ensure(read == expected, || {
        format!(
            "read_committed of {topic}/{partition} from {from} returned {}, a reader returned {}",
            describe(&read),
            describe(expected)
        )
    })
}

/// The committed offset is `expected` now.
pub(crate) async fn expect_committed_offset<B: Broker>(
    case: &Case<'_>,
    broker: &B,
    group: &str,
    topic: &str,
    partition: i32,
    expected: Option<i64>,
) -> Result<(), ConformanceFailure> {
    let committed = case.call(
        "committed_offset",
        broker.committed_offset(group, topic, partition).await,
    )?;
    case.ensure(committed == expected, || {
        format!("committed offset of {group} for {topic}/{partition} is {committed:?}, expected {expected:?}")
    })
}

/// The committed offset becomes `expected` within [`RECHECK_LIMIT`] checks (Kafka makes a
/// transaction's offsets visible after `commit` returns).
pub(crate) async fn wait_committed_offset<B: Broker>(
    case: &Case<'_>,
    broker: &B,
    group: &str,
    topic: &str,
    partition: i32,
    expected: Option<i64>,
) -> Result<(), ConformanceFailure> {
    let mut committed = None;
    for _ in 0..RECHECK_LIMIT {
        committed = case.call(
            "committed_offset",
            broker.committed_offset(group, topic, partition).await,
        )?;
        if committed == expected {
            return Ok(());
        }
        tokio::time::sleep(RECHECK_INTERVAL).await;
    }
    Err(case.fail(format!(
        "committed offset of {group} for {topic}/{partition} stayed {committed:?}, expected {expected:?}"
    )))
}

pub(crate) fn expect_unknown<T: std::fmt::Debug>(
    case: &Case<'_>,
    what: &str,
    result: &Result<T, BrokerError>,
) -> Result<(), ConformanceFailure> {
    case.ensure(matches!(result, Err(BrokerError::UnknownTopic(_))), || {
        format!("{what} returned {result:?}, expected UnknownTopic")
    })
}
