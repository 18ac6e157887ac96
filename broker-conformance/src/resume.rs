//! Where reading resumes: a reader made at any offset, and a consume-transform-produce
//! cycle that crashes and is taken over by a successor.

use weir_broker::{
    Broker, BrokerError, BrokerRecord, OutgoingRecord, PartitionReader, TransactionalWriter,
};

use crate::support::*;
use crate::*;

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
