//! What a transaction commits together (records and group offsets, both or neither) and
//! who may commit (a new writer of a transactional id fences the previous one).

use weir_broker::{Broker, BrokerError, TransactionalWriter};

use crate::support::*;
use crate::*;

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
