//! The broker seam's conformance suite: the properties of Kafka that weir's exactly-once
//! protocol relies on, checked against any [`Broker`].
//!
//! The simulation's verdicts are only worth as much as the in-memory broker is faithful, so
//! the same cases run against the model (`tests/memory_conformance.rs`) and against a real
//! Kafka broker through rdkafka. What is checked:
//!
//! - committed records are read in order, with increasing offsets, fields intact;
//! - aborted records are never read, in any partition the transaction wrote to;
//! - an open transaction's records stay hidden until it commits, and hold back the
//!   committed records of other producers behind them (the last stable offset);
//! - group offsets commit with the data, both or neither (abort and fencing leave them);
//! - a second writer with the same transactional id fences the first and aborts its open
//!   transaction;
//! - a reader resumes exactly from any offset, including one just past a record;
//! - a consume-transform-produce cycle that crashes resumes from the committed offset
//!   with no output lost or repeated;
//! - `create_topic` and `partition_count`; unknown topics and partitions are errors;
//! - records with the same key land in one partition, in order.
//!
//! Every case is small (a few records) and bounded in time, and makes its own topics,
//! transactional ids and groups from the caller's prefix, so cases never see each other's
//! data. Against a persistent cluster, give every run a new prefix.
//!
//! The cases allow for a real broker: Kafka writes transaction markers after `commit`
//! returns, so visibility is awaited by polling with a bound (never by sleeping a fixed
//! time), and nothing depends on the offsets of control records — only on order,
//! visibility, and committed offsets pointing just past the data. The cases run on a tokio
//! runtime with its time driver (they pause between rechecks); under a paused clock, as in
//! the simulation, those pauses take no real time.

use crate::{
    Broker, BrokerError, BrokerRecord, OutgoingRecord, PartitionReader, SourceOffset,
    TransactionalWriter,
};
use std::time::Duration;
use thiserror::Error;

/// How long one `poll_batch` of the suite waits for a first record.
pub const POLL_WAIT: Duration = Duration::from_millis(200);

/// Polls after which records that should be visible count as missing: with [`POLL_WAIT`],
/// 15 s against a real broker.
pub const VISIBILITY_POLLS: u32 = 75;

/// Polls that must all come back empty to conclude that records stay hidden: with
/// [`POLL_WAIT`], 1 s against a real broker. Where a later visible record can prove the
/// same, the cases use that instead.
pub const ABSENCE_POLLS: u32 = 5;

/// Pause between two checks of a condition no call waits for (a committed offset, a new
/// topic's metadata).
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Checks of such a condition before it counts as failed: with [`RECHECK_INTERVAL`], 15 s.
pub const RECHECK_LIMIT: u32 = 150;

/// Attempts of the last-stable-offset case, whose premise (one producer's record reaching
/// the log before another's) a real broker's timing can spoil.
pub const RACE_ATTEMPTS: u32 = 3;

/// Polls of the last-stable-offset case waiting for the high watermark to show that the
/// held-open transaction's record is in the log: with [`POLL_WAIT`], 2 s.
const LANDING_POLLS: u32 = 10;

/// The most records any case expects from one read.
const MAX_BATCH_RECORDS: usize = 100;

/// The timestamp of records the suite stamps itself: in the past (brokers reject
/// timestamps far in the future) and easy to recognise.
const RECORD_TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// A case of the suite that failed, with what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("broker conformance case `{case}` failed: {detail}")]
pub struct ConformanceFailure {
    /// The name of the case (its function's name).
    pub case: &'static str,
    /// What was expected and what the broker did instead.
    pub detail: String,
}

/// Runs every case against `broker`, stopping at the first failure. Topics, transactional
/// ids and groups are named `<topic_prefix>-<case>-<what>`; `topic_prefix` must be a legal
/// Kafka topic name and new to the cluster.
pub async fn run_all<B: Broker>(broker: &B, topic_prefix: &str) -> Result<(), ConformanceFailure> {
    committed_records_are_read_in_order(broker, topic_prefix).await?;
    aborted_records_are_never_read(broker, topic_prefix).await?;
    open_transaction_is_hidden_until_commit(broker, topic_prefix).await?;
    open_transaction_holds_back_later_commits(broker, topic_prefix).await?;
    group_offsets_commit_with_the_data(broker, topic_prefix).await?;
    new_writer_fences_the_previous_one(broker, topic_prefix).await?;
    reader_resumes_at_any_offset(broker, topic_prefix).await?;
    consume_transform_produce_resumes_exactly(broker, topic_prefix).await?;
    topics_report_their_partition_count(broker, topic_prefix).await?;
    unknown_topics_and_partitions_are_errors(broker, topic_prefix).await?;
    keyed_records_stay_in_one_partition(broker, topic_prefix).await?;
    Ok(())
}

/// A committed transaction's records are read back by a `read_committed` reader and by
/// [`Broker::read_committed`], in send order, with increasing offsets and the key, value
/// and timestamp they were sent with (a record sent without a timestamp gets one).
pub async fn committed_records_are_read_in_order<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("committed_records_are_read_in_order", "in-order", prefix);
    let topic = fresh_topic(&case, broker, "data", 1).await?;
    let mut sent = vec![
        record(&topic, Some(0), Some("k0"), "v0"),
        record(&topic, Some(0), Some("k1"), "v1"),
        record(&topic, Some(0), None, "v2"),
    ];
    sent[2].timestamp_ms = None;
    let mut writer = case.call("writer", broker.writer(&case.id("writer")).await)?;
    commit_records(&case, &mut writer, &sent, &case.id("group"), &[]).await?;

    let mut reader = case.call("reader", broker.reader(&topic, 0, 0).await)?;
    let read = poll_records(&case, &mut reader, sent.len()).await?;
    expect_records(&case, &read, &sent, 0)?;
    expect_no_more(&case, &mut reader, "after the committed records").await?;
    let last_offset = read[read.len() - 1].offset;
    case.ensure(reader.position() > last_offset, || {
        format!(
            "position {} is not past the last record read ({last_offset})",
            reader.position()
        )
    })?;
    if let Some(high_watermark) = reader.high_watermark() {
        case.ensure(high_watermark > last_offset, || {
            format!(
                "high watermark {high_watermark} is not past the last record read ({last_offset})"
            )
        })?;
    }
    expect_read_committed(&case, broker, &topic, 0, 0, &read).await
}

/// An aborted transaction's records are never read, in any partition it wrote to; a later
/// committed transaction's records are (and prove the reader got past the aborted ones).
pub async fn aborted_records_are_never_read<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("aborted_records_are_never_read", "aborted", prefix);
    let topic = fresh_topic(&case, broker, "data", 2).await?;
    let aborted = [
        record(&topic, Some(0), Some("a"), "aborted-0"),
        record(&topic, Some(1), Some("a"), "aborted-1"),
    ];
    let committed = [
        record(&topic, Some(0), Some("c"), "committed-0"),
        record(&topic, Some(1), Some("c"), "committed-1"),
    ];
    let mut writer = case.call("writer", broker.writer(&case.id("writer")).await)?;
    case.call("begin", writer.begin())?;
    send_all(&case, &mut writer, &aborted).await?;
    case.call("abort", writer.abort().await)?;
    commit_records(&case, &mut writer, &committed, &case.id("group"), &[]).await?;

    for (partition, sentinel) in [(0, &committed[0]), (1, &committed[1])] {
        let read = read_exactly(
            &case,
            broker,
            &topic,
            partition,
            0,
            std::slice::from_ref(sentinel),
        )
        .await?;
        expect_read_committed(&case, broker, &topic, partition, 0, &read).await?;
    }
    Ok(())
}

/// Records of an open transaction are not read; once it commits, they are.
pub async fn open_transaction_is_hidden_until_commit<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("open_transaction_is_hidden_until_commit", "open", prefix);
    let topic = fresh_topic(&case, broker, "data", 1).await?;
    let sent = [
        record(&topic, Some(0), Some("k"), "open-0"),
        record(&topic, Some(0), Some("k"), "open-1"),
    ];
    let mut writer = case.call("writer", broker.writer(&case.id("writer")).await)?;
    case.call("begin", writer.begin())?;
    send_all(&case, &mut writer, &sent).await?;

    let mut reader = case.call("reader", broker.reader(&topic, 0, 0).await)?;
    expect_no_more(&case, &mut reader, "while the transaction is open").await?;
    let early = case.call(
        "read_committed",
        broker.read_committed(&topic, 0, 0, MAX_BATCH_RECORDS).await,
    )?;
    case.ensure(early.is_empty(), || {
        format!(
            "read_committed returned {} while the transaction is open",
            describe(&early)
        )
    })?;

    case.call("commit", writer.commit(&case.id("group"), &[]).await)?;
    let read = poll_records(&case, &mut reader, sent.len()).await?;
    expect_records(&case, &read, &sent, 0)?;
    expect_no_more(&case, &mut reader, "after the commit").await
}

/// A transaction left open holds back the committed records other producers wrote after
/// its first record in the same partition (a reader never passes the last stable offset);
/// when it aborts, they become visible and its own records never do.
///
/// Against a real broker the held-open record may reach the log after the other
/// producer's (the seam's `send` need not wait for delivery). The case waits for the
/// reader's high watermark to show the record landed, tells a lost race from a broken
/// broker by the offsets afterwards, and tries again, up to [`RACE_ATTEMPTS`] times.
pub async fn open_transaction_holds_back_later_commits<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("open_transaction_holds_back_later_commits", "lso", prefix);
    for attempt in 1..=RACE_ATTEMPTS {
        if lso_attempt(&case, broker, attempt).await? == Premise::Held {
            return Ok(());
        }
    }
    Err(case.fail(format!(
        "in {RACE_ATTEMPTS} attempts the open transaction's record never reached the log before the \
         other producer's, so the last stable offset could not be checked"
    )))
}

/// Whether the order of appends a case needs actually happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Premise {
    Held,
    Spoiled,
}

async fn lso_attempt<B: Broker>(
    case: &Case<'_>,
    broker: &B,
    attempt: u32,
) -> Result<Premise, ConformanceFailure> {
    let topic = fresh_topic(case, broker, &format!("data-{attempt}"), 1).await?;
    let held_open = record(&topic, Some(0), Some("slow"), "slow-0");
    let later = record(&topic, Some(0), Some("fast"), "fast-0");
    let mut slow = case.call(
        "writer",
        broker.writer(&case.id(&format!("slow-{attempt}"))).await,
    )?;
    case.call("begin", slow.begin())?;
    case.call("send", slow.send(held_open.clone()).await)?;
    // `send` may return before the record is in the log, and the seam has no flush. The
    // high watermark counts records of open transactions, so a reader that reports one
    // shows the record has landed; a reader that does not only makes the race likelier,
    // and the check after the abort tells a lost race from a broken broker.
    let mut reader = case.call("reader", broker.reader(&topic, 0, 0).await)?;
    let mut seen_while_open = Vec::new();
    for _ in 0..LANDING_POLLS {
        let batch = case.call(
            "poll_batch",
            reader.poll_batch(MAX_BATCH_RECORDS, POLL_WAIT).await,
        )?;
        seen_while_open.extend(batch);
        if reader
            .high_watermark()
            .is_some_and(|high_watermark| high_watermark > 0)
        {
            break;
        }
    }
    let mut fast = case.call(
        "writer",
        broker.writer(&case.id(&format!("fast-{attempt}"))).await,
    )?;
    commit_records(
        case,
        &mut fast,
        std::slice::from_ref(&later),
        &case.id("group"),
        &[],
    )
    .await?;

    for _ in 0..ABSENCE_POLLS {
        let batch = case.call(
            "poll_batch",
            reader.poll_batch(MAX_BATCH_RECORDS, POLL_WAIT).await,
        )?;
        seen_while_open.extend(batch);
    }
    case.call("abort", slow.abort().await)?;

    let read = read_exactly(case, broker, &topic, 0, 0, std::slice::from_ref(&later)).await?;
    let held_open_seen = seen_while_open.iter().any(|r| matches(r, &held_open));
    case.ensure(!held_open_seen, || {
        format!(
            "read {} before the transaction ended in an abort",
            describe(&seen_while_open)
        )
    })?;
    // In a fresh partition only the held-open record can come before the later one; if the
    // later one took offset 0, the held-open record reached the log after it (or never).
    if read[0].offset == 0 {
        return Ok(Premise::Spoiled);
    }
    case.ensure(seen_while_open.is_empty(), || {
        format!(
            "read {} while an earlier transaction in the partition was still open",
            describe(&seen_while_open)
        )
    })?;
    Ok(Premise::Held)
}

/// Group offsets given to `commit` are committed with the transaction's records: both
/// visible after a commit; neither after an abort or a commit refused to a fenced writer.
/// Offsets of several partitions commit together.
pub async fn group_offsets_commit_with_the_data<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("group_offsets_commit_with_the_data", "offsets", prefix);
    let source = fresh_topic(&case, broker, "source", 2).await?;
    let output = fresh_topic(&case, broker, "output", 1).await?;
    let group = case.id("group");
    let transactional_id = case.id("writer");
    let offsets = |next_0: i64, next_1: i64| {
        vec![
            source_offset(&source, 0, next_0),
            source_offset(&source, 1, next_1),
        ]
    };
    for partition in [0, 1] {
        expect_committed_offset(&case, broker, &group, &source, partition, None).await?;
    }

    let first = [
        record(&output, Some(0), None, "d0"),
        record(&output, Some(0), None, "d1"),
    ];
    let mut writer = case.call("writer", broker.writer(&transactional_id).await)?;
    commit_records(&case, &mut writer, &first, &group, &offsets(2, 5)).await?;
    wait_committed_offset(&case, broker, &group, &source, 0, Some(2)).await?;
    wait_committed_offset(&case, broker, &group, &source, 1, Some(5)).await?;
    read_exactly(&case, broker, &output, 0, 0, &first).await?;

    // Aborted: the data never shows, the offsets stay.
    case.call("begin", writer.begin())?;
    case.call(
        "send",
        writer.send(record(&output, Some(0), None, "aborted")).await,
    )?;
    case.call("abort", writer.abort().await)?;
    expect_committed_offset(&case, broker, &group, &source, 0, Some(2)).await?;

    // Fenced before its commit: neither the data nor the offsets.
    case.call("begin", writer.begin())?;
    case.call(
        "send",
        writer.send(record(&output, Some(0), None, "zombie")).await,
    )?;
    let mut successor = case.call("writer", broker.writer(&transactional_id).await)?;
    let zombie_commit = writer.commit(&group, &offsets(9, 9)).await;
    case.ensure(matches!(zombie_commit, Err(BrokerError::Fenced(_))), || {
        format!("commit of a fenced writer returned {zombie_commit:?}, expected Fenced")
    })?;
    expect_committed_offset(&case, broker, &group, &source, 0, Some(2)).await?;
    expect_committed_offset(&case, broker, &group, &source, 1, Some(5)).await?;

    let last = [record(&output, Some(0), None, "d2")];
    commit_records(&case, &mut successor, &last, &group, &offsets(3, 6)).await?;
    wait_committed_offset(&case, broker, &group, &source, 0, Some(3)).await?;
    wait_committed_offset(&case, broker, &group, &source, 1, Some(6)).await?;
    let all = [first[0].clone(), first[1].clone(), last[0].clone()];
    read_exactly(&case, broker, &output, 0, 0, &all).await?;

    // A transaction with no records commits its offsets alone (as an idle partition's
    // runner does to keep its offsets from expiring).
    commit_records(&case, &mut successor, &[], &group, &offsets(4, 7)).await?;
    wait_committed_offset(&case, broker, &group, &source, 0, Some(4)).await?;
    wait_committed_offset(&case, broker, &group, &source, 1, Some(7)).await?;
    read_exactly(&case, broker, &output, 0, 0, &all).await?;
    Ok(())
}

/// A second `writer` with the same transactional id fences the first (whose commit then
/// returns `Fenced`) and aborts the transaction the first left open: its records are never
/// read, and they do not hold back the second writer's records.
pub async fn new_writer_fences_the_previous_one<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("new_writer_fences_the_previous_one", "fencing", prefix);
    let topic = fresh_topic(&case, broker, "data", 1).await?;
    let source = fresh_topic(&case, broker, "source", 1).await?;
    let group = case.id("group");
    let transactional_id = case.id("writer");

    let mut zombie = case.call("writer", broker.writer(&transactional_id).await)?;
    case.call("begin", zombie.begin())?;
    case.call(
        "send",
        zombie
            .send(record(&topic, Some(0), Some("z"), "zombie"))
            .await,
    )?;
    let mut successor = case.call("writer", broker.writer(&transactional_id).await)?;

    let zombie_commit = zombie.commit(&group, &[source_offset(&source, 0, 1)]).await;
    case.ensure(matches!(zombie_commit, Err(BrokerError::Fenced(_))), || {
        format!("commit of the fenced writer returned {zombie_commit:?}, expected Fenced")
    })?;
    expect_committed_offset(&case, broker, &group, &source, 0, None).await?;

    let sent = [record(&topic, Some(0), Some("s"), "successor")];
    commit_records(
        &case,
        &mut successor,
        &sent,
        &group,
        &[source_offset(&source, 0, 2)],
    )
    .await?;
    read_exactly(&case, broker, &topic, 0, 0, &sent).await?;
    wait_committed_offset(&case, broker, &group, &source, 0, Some(2)).await
}

/// A reader made at any offset returns exactly the committed records from there on: at a
/// record's own offset, just past a record (where control records may lie), past aborted
/// records, and at the position a previous reader reached, where it then sees only what
/// is committed later.
pub async fn reader_resumes_at_any_offset<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("reader_resumes_at_any_offset", "resume", prefix);
    let topic = fresh_topic(&case, broker, "data", 1).await?;
    let group = case.id("group");
    let r = |value: &str| record(&topic, Some(0), None, value);
    let mut writer = case.call("writer", broker.writer(&case.id("writer")).await)?;
    commit_records(
        &case,
        &mut writer,
        &[r("r0"), r("r1"), r("r2")],
        &group,
        &[],
    )
    .await?;
    commit_records(&case, &mut writer, &[r("r3"), r("r4")], &group, &[]).await?;
    case.call("begin", writer.begin())?;
    case.call("send", writer.send(r("aborted")).await)?;
    case.call("abort", writer.abort().await)?;
    commit_records(&case, &mut writer, &[r("r5")], &group, &[]).await?;

    let sent: Vec<OutgoingRecord> = ["r0", "r1", "r2", "r3", "r4", "r5"]
        .iter()
        .map(|v| r(v))
        .collect();
    let mut reader = case.call("reader", broker.reader(&topic, 0, 0).await)?;
    let all = poll_records(&case, &mut reader, sent.len()).await?;
    expect_records(&case, &all, &sent, 0)?;
    expect_no_more(&case, &mut reader, "after the last committed record").await?;

    // At a record; just past a transaction's last record (r2, r4); past the aborted record.
    for (from, first_expected) in [
        (all[1].offset, 1),
        (all[2].offset + 1, 3),
        (all[4].offset + 1, 5),
        (all[5].offset, 5),
    ] {
        read_exactly(&case, broker, &topic, 0, from, &sent[first_expected..]).await?;
    }
    read_exactly(&case, broker, &topic, 0, all[5].offset + 1, &[]).await?;

    // A new reader at the old one's position sees exactly what is committed afterwards.
    let position = reader.position();
    let later = [r("r6")];
    commit_records(&case, &mut writer, &later, &group, &[]).await?;
    read_exactly(&case, broker, &topic, 0, position, &later).await?;
    let read = poll_records(&case, &mut reader, later.len()).await?;
    expect_records(&case, &read, &later, position)
}

/// The worker's cycle, with a crash: read source records, write outputs and commit them
/// with the source offset just past the last record read; a worker that crashes before
/// its next commit is fenced by its successor, which resumes from the committed offset.
/// Every output appears once, and the committed offset ends just past the last source
/// record.
pub async fn consume_transform_produce_resumes_exactly<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new("consume_transform_produce_resumes_exactly", "cycle", prefix);
    let input = fresh_topic(&case, broker, "input", 1).await?;
    let output = fresh_topic(&case, broker, "output", 1).await?;
    let group = case.id("group");
    let worker_id = case.id("worker");
    let inputs: Vec<OutgoingRecord> = (0..4)
        .map(|i| record(&input, Some(0), None, &format!("in-{i}")))
        .collect();
    let mut source_writer = case.call("writer", broker.writer(&case.id("source")).await)?;
    commit_records(&case, &mut source_writer, &inputs, &group, &[]).await?;
    let transform = |read: &BrokerRecord| {
        let value = String::from_utf8_lossy(read.value.as_deref().unwrap_or_default()).into_owned();
        record(&output, Some(0), None, &format!("out-{value}"))
    };

    // The first worker: one checkpoint, then a crash with a transaction open.
    expect_committed_offset(&case, broker, &group, &input, 0, None).await?;
    let mut crashed = case.call("writer", broker.writer(&worker_id).await)?;
    let mut reader = case.call("reader", broker.reader(&input, 0, 0).await)?;
    let first = poll_records(&case, &mut reader, 2).await?;
    expect_records(&case, &first, &inputs[..2], 0)?;
    let checkpoint = first[1].offset + 1;
    let outputs: Vec<OutgoingRecord> = first.iter().map(transform).collect();
    commit_records(
        &case,
        &mut crashed,
        &outputs,
        &group,
        &[source_offset(&input, 0, checkpoint)],
    )
    .await?;
    let unfinished = poll_records(&case, &mut reader, 2).await?;
    expect_records(&case, &unfinished, &inputs[2..], checkpoint)?;
    case.call("begin", crashed.begin())?;
    send_all(
        &case,
        &mut crashed,
        &unfinished.iter().map(transform).collect::<Vec<_>>(),
    )
    .await?;

    // The successor: fence, resume from the committed offset, finish the work.
    let mut successor = case.call("writer", broker.writer(&worker_id).await)?;
    wait_committed_offset(&case, broker, &group, &input, 0, Some(checkpoint)).await?;
    let rest = read_exactly(&case, broker, &input, 0, checkpoint, &inputs[2..]).await?;
    let end = rest[rest.len() - 1].offset + 1;
    let outputs_rest: Vec<OutgoingRecord> = rest.iter().map(transform).collect();
    commit_records(
        &case,
        &mut successor,
        &outputs_rest,
        &group,
        &[source_offset(&input, 0, end)],
    )
    .await?;
    let zombie_commit = crashed
        .commit(&group, &[source_offset(&input, 0, end)])
        .await;
    case.ensure(matches!(zombie_commit, Err(BrokerError::Fenced(_))), || {
        format!("commit of the crashed worker returned {zombie_commit:?}, expected Fenced")
    })?;

    wait_committed_offset(&case, broker, &group, &input, 0, Some(end)).await?;
    let expected: Vec<OutgoingRecord> = outputs.into_iter().chain(outputs_rest).collect();
    read_exactly(&case, broker, &output, 0, 0, &expected).await?;
    Ok(())
}

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

// ---------------------------------------------------------------------------------------
// Helpers: naming, sending, and reading with bounded waits.
// ---------------------------------------------------------------------------------------

/// One running case: its name for failures, and the names of what it creates.
struct Case<'a> {
    name: &'static str,
    short: &'static str,
    prefix: &'a str,
}

impl<'a> Case<'a> {
    fn new(name: &'static str, short: &'static str, prefix: &'a str) -> Self {
        Case {
            name,
            short,
            prefix,
        }
    }

    /// A name for a topic, transactional id or group of this case.
    fn id(&self, what: &str) -> String {
        format!("{}-{}-{}", self.prefix, self.short, what)
    }

    fn fail(&self, detail: impl Into<String>) -> ConformanceFailure {
        ConformanceFailure {
            case: self.name,
            detail: detail.into(),
        }
    }

    fn ensure(
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
    fn call<T>(&self, what: &str, result: Result<T, BrokerError>) -> Result<T, ConformanceFailure> {
        result.map_err(|error| self.fail(format!("{what} failed: {error}")))
    }
}

fn record(topic: &str, partition: Option<i32>, key: Option<&str>, value: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_string(),
        partition,
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.as_bytes().to_vec(),
        timestamp_ms: Some(RECORD_TIMESTAMP_MS),
    }
}

fn source_offset(topic: &str, partition: i32, next_offset: i64) -> SourceOffset {
    SourceOffset {
        topic: topic.to_string(),
        partition,
        next_offset,
    }
}

/// Whether `read` is the record `sent` was, as far as the sender decided it.
fn matches(read: &BrokerRecord, sent: &OutgoingRecord) -> bool {
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

fn describe(records: &[BrokerRecord]) -> String {
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

fn describe_sent(records: &[OutgoingRecord]) -> String {
    let items: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    format!("[{}]", items.join(", "))
}

/// Creates a topic for this case and waits until the broker reports it with its
/// partitions (a real cluster may answer the creation before its metadata has spread).
async fn fresh_topic<B: Broker>(
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

async fn send_all<W: TransactionalWriter>(
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
async fn commit_records<W: TransactionalWriter>(
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
async fn poll_records<R: PartitionReader>(
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
fn expect_records(
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
async fn expect_no_more<R: PartitionReader>(
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
async fn read_exactly<B: Broker>(
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
async fn expect_read_committed<B: Broker>(
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
async fn expect_committed_offset<B: Broker>(
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
async fn wait_committed_offset<B: Broker>(
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

fn expect_unknown<T: std::fmt::Debug>(
    case: &Case<'_>,
    what: &str,
    result: &Result<T, BrokerError>,
) -> Result<(), ConformanceFailure> {
    case.ensure(matches!(result, Err(BrokerError::UnknownTopic(_))), || {
        format!("{what} returned {result:?}, expected UnknownTopic")
    })
}
