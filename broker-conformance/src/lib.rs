//! The broker seam's conformance suite: the properties of Kafka that weir's exactly-once
//! protocol relies on, checked against any [`Broker`].
//!
//! The simulation's verdicts are only worth as much as the in-memory broker is faithful, so
//! the same cases run against the model (`broker/tests/memory_conformance.rs`) and against
//! a real Kafka broker through rdkafka (`broker/tests/kafka_conformance.rs`). What is
//! checked:
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
//! - records with the same key land in one partition, in order;
//! - topics weir owns: created with their settings and described as created, an existing
//!   one with another partition count or cleanup policy refused with a typed error,
//!   invalid specs refused, deletion idempotent and thorough (records, committed offsets).
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
//!
//! A crate of its own so that no production build compiles it: the broker's tests use it
//! as a dev-dependency. The cases are grouped by property: what a reader sees
//! (`visibility.rs`), what a transaction commits together and who may commit
//! (`transactions.rs`), where a reader or a crashed worker resumes (`resume.rs`), and
//! topics, partitions and keys (`topics.rs`), topics weir owns (`owned_topics.rs`);
//! `support.rs` holds the shared helpers
//! (naming, sending, reading with bounded waits).

mod owned_topics;
mod resume;
mod support;
mod topics;
mod transactions;
mod visibility;

pub use owned_topics::{
    existing_topics_with_other_settings_are_refused, invalid_topic_specs_are_refused,
    owned_topics_are_created_with_their_settings, topics_are_deleted_idempotently,
};
pub use resume::{consume_transform_produce_resumes_exactly, reader_resumes_at_any_offset};
pub use topics::{
    keyed_records_stay_in_one_partition, topics_report_their_partition_count,
    unknown_topics_and_partitions_are_errors,
};
pub use transactions::{group_offsets_commit_with_the_data, new_writer_fences_the_previous_one};
pub use visibility::{
    aborted_records_are_never_read, committed_records_are_read_in_order,
    open_transaction_holds_back_later_commits, open_transaction_is_hidden_until_commit,
    open_transaction_unsettles_its_partition,
};

use std::time::Duration;
use thiserror::Error;
use weir_broker::Broker;

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
    open_transaction_unsettles_its_partition(broker, topic_prefix).await?;
    group_offsets_commit_with_the_data(broker, topic_prefix).await?;
    new_writer_fences_the_previous_one(broker, topic_prefix).await?;
    reader_resumes_at_any_offset(broker, topic_prefix).await?;
    consume_transform_produce_resumes_exactly(broker, topic_prefix).await?;
    topics_report_their_partition_count(broker, topic_prefix).await?;
    unknown_topics_and_partitions_are_errors(broker, topic_prefix).await?;
    keyed_records_stay_in_one_partition(broker, topic_prefix).await?;
    owned_topics_are_created_with_their_settings(broker, topic_prefix).await?;
    existing_topics_with_other_settings_are_refused(broker, topic_prefix).await?;
    invalid_topic_specs_are_refused(broker, topic_prefix).await?;
    topics_are_deleted_idempotently(broker, topic_prefix).await?;
    Ok(())
}
