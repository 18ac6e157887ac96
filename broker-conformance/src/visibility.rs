//! What a `read_committed` reader sees: committed records in order, never aborted ones,
//! and nothing at or past the oldest open transaction (the last stable offset).

use weir_broker::{Broker, PartitionReader, TransactionalWriter};

use crate::support::*;
use crate::*;

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

/// A partition is settled while no transaction is in progress on it: not once a
/// transaction's record is in the log, and again once the transaction committed (Kafka
/// writes the commit markers after `commit` returns, so within bounded rechecks).
pub async fn open_transaction_unsettles_its_partition<B: Broker>(
    broker: &B,
    prefix: &str,
) -> Result<(), ConformanceFailure> {
    let case = Case::new(
        "open_transaction_unsettles_its_partition",
        "settled",
        prefix,
    );
    let topic = fresh_topic(&case, broker, "data", 1).await?;
    let settled = || broker.partition_settled(&topic, 0);
    case.ensure(case.call("partition_settled", settled().await)?, || {
        "a new topic's partition is not settled".to_string()
    })?;
    let mut writer = case.call("writer", broker.writer(&case.id("writer")).await)?;
    case.call("begin", writer.begin())?;
    send_all(
        &case,
        &mut writer,
        &[record(&topic, Some(0), Some("k"), "open-0")],
    )
    .await?;
    // `send` may return before the record is in the log: wait, bounded, for it to count.
    let mut open_seen = false;
    for _ in 0..RECHECK_LIMIT {
        if !case.call("partition_settled", settled().await)? {
            open_seen = true;
            break;
        }
        tokio::time::sleep(RECHECK_INTERVAL).await;
    }
    case.ensure(open_seen, || {
        "the partition stayed settled while a transaction held a record in it".to_string()
    })?;
    case.call("commit", writer.commit(&case.id("group"), &[]).await)?;
    for _ in 0..RECHECK_LIMIT {
        if case.call("partition_settled", settled().await)? {
            return Ok(());
        }
        tokio::time::sleep(RECHECK_INTERVAL).await;
    }
    Err(case.fail("the partition never settled after the transaction committed"))
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
