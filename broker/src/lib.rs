//! The broker seam. Worker logic reaches Kafka only through the traits here: reading one
//! partition with `read_committed` isolation from a given offset, producing inside a
//! transaction together with the source offsets (the exactly-once commit point), fencing
//! the previous owner of a transactional id, and reading committed group offsets and topic
//! metadata; and owning topics (`topic`: create with settings, ensure with a check of an
//! existing topic's partition count and cleanup policy, describe, delete), which the
//! planned multi-stage jobs need for their repartition topics.
//!
//! Two implementations stand behind it: `kafka` (rdkafka, production and the real-broker
//! tests: the cluster handle, reader, transactional writer, client settings, error
//! classification, a file each) and `memory` (a model of Kafka's transactional semantics
//! for the simulation and `weir local`: cluster and transaction coordinator, partition
//! logs, reader, writer, fault injection). One conformance suite (the
//! `weir-broker-conformance` crate, a test dependency only) runs against both, so the
//! model cannot drift from the real broker. Both writers keep the transaction as one typed
//! `WriterState`.
//!
//! The traits are async without a `Send` bound: partition actors run on single-threaded
//! runtimes (actix arbiters, or the simulation's one thread).

// Unit tests make files, sockets and threads freely; production code reaches them
// only through the seams (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod kafka;
pub mod memory;
pub mod topic;

pub use topic::{CleanupPolicy, Retention, TopicDescription, TopicSpec};

use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// A record read from a source partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The record's timestamp in epoch ms, if it has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    pub topic: String,
    /// The partition; `None` lets the producer choose from the key (a deterministic hash).
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp_ms: Option<i64>,
}

/// The position to commit for one source partition: the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOffset {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// What can go wrong talking to the broker. Every variant is something the caller must
/// handle; none is a reason to panic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BrokerError {
    /// Another producer with the same transactional id was initialized after this one:
    /// this producer is a zombie and must stop.
    #[error("producer fenced: {0}")]
    Fenced(String),
    /// The broker cannot be reached or is not ready; retry later.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The call did not finish in time; its outcome is unknown.
    #[error("broker call timed out: {0}")]
    Timeout(String),
    /// The transaction cannot be committed and must be aborted (e.g. it timed out at the
    /// broker); the outputs since the last commit must be produced again.
    #[error("transaction must be aborted: {0}")]
    AbortRequired(String),
    /// The topic or partition does not exist.
    #[error("unknown topic or partition: {0}")]
    UnknownTopic(String),
    /// A record is larger than the producer or the topic accepts. The record was not
    /// added to the transaction, which stays usable: the caller must send something smaller
    /// instead (see [`Broker::max_record_bytes`]).
    #[error("record too large: {0}")]
    RecordTooLarge(String),
    /// A topic spec or name no cluster would accept (an illegal name, a partition count
    /// out of range, a setting the cluster refuses): nothing was created or changed.
    #[error("invalid topic: {0}")]
    InvalidTopic(String),
    /// A topic weir owns exists with another partition count than asked for. Using it
    /// would route keys to other partitions than the job's stages expect, so it is refused.
    #[error("topic {topic} exists with {actual} partitions, expected {expected}")]
    PartitionCountMismatch {
        topic: String,
        expected: u32,
        actual: u32,
    },
    /// A topic weir owns exists with another `cleanup.policy` than asked for: compaction
    /// would drop records a stage has not read, deletion would drop a changelog's history.
    #[error("topic {topic} exists with cleanup.policy {actual}, expected {expected}")]
    CleanupPolicyMismatch {
        topic: String,
        expected: CleanupPolicy,
        actual: CleanupPolicy,
    },
    /// Anything else; the client must be rebuilt.
    #[error("broker error: {0}")]
    Fatal(String),
}

/// Bytes a record's framing in a record batch may take besides its key and value (batch
/// header, record header varints, headers): what [`Broker::max_record_bytes`] callers keep
/// free. Kafka's batch header is 61 bytes and a record's own varint overhead at most about
/// 40; the rest is margin.
pub const RECORD_FRAMING_BYTES_MAX: usize = 512;

/// A consumer of one partition, reading only committed records (`read_committed`).
pub trait PartitionReader {
    /// Up to `max_records` records from the current position, waiting at most `wait` for
    /// the first one; an empty batch means nothing new arrived in time.
    fn poll_batch(
        &mut self,
        max_records: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<BrokerRecord>, BrokerError>>;

    /// The offset of the next record `poll_batch` returns.
    fn position(&self) -> i64;

    /// The partition's high watermark as last seen, for consumer-lag metrics.
    fn high_watermark(&self) -> Option<i64>;
}

/// A transactional producer for one transactional id.
pub trait TransactionalWriter {
    /// Starts a transaction; records sent until `commit` or `abort` belong to it.
    fn begin(&mut self) -> Result<(), BrokerError>;

    /// Adds a record to the open transaction.
    fn send(&mut self, record: OutgoingRecord) -> impl Future<Output = Result<(), BrokerError>>;

    /// Commits the open transaction together with the consumer group's source offsets: the
    /// records become visible to `read_committed` readers and the offsets committed, both
    /// or neither.
    fn commit(
        &mut self,
        group: &str,
        offsets: &[SourceOffset],
    ) -> impl Future<Output = Result<(), BrokerError>>;

    /// Aborts the open transaction: its records are never visible to `read_committed`
    /// readers.
    fn abort(&mut self) -> impl Future<Output = Result<(), BrokerError>>;
}

/// A Kafka cluster, as the worker sees it.
pub trait Broker: Clone + 'static {
    type Reader: PartitionReader;
    type Writer: TransactionalWriter;

    /// Number of partitions of `topic`.
    fn partition_count(&self, topic: &str) -> impl Future<Output = Result<u32, BrokerError>>;

    /// Creates `topic` with `partitions` partitions if it does not exist (tests, local runs).
    fn create_topic(
        &self,
        topic: &str,
        partitions: u32,
    ) -> impl Future<Output = Result<(), BrokerError>>;

    /// Creates the topic `spec` describes, with its settings. `Ok(true)` when this call
    /// created it; `Ok(false)` when a topic of that name existed already, which is left as
    /// it was and not checked (see [`Broker::ensure_topic`]). An invalid spec is
    /// [`BrokerError::InvalidTopic`] and creates nothing. Returns once the topic is usable.
    fn create_topic_with(
        &self,
        spec: &TopicSpec,
    ) -> impl Future<Output = Result<bool, BrokerError>>;

    /// What the cluster says `topic` is: partitions, replication and the settings a
    /// [`TopicSpec`] sets. A missing topic is [`BrokerError::UnknownTopic`].
    fn describe_topic(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<TopicDescription, BrokerError>>;

    /// Deletes `topic` with its records and its groups' committed offsets. Deleting a
    /// topic that does not exist is `Ok`, so a retried deletion succeeds. Returns once the
    /// cluster no longer reports the topic (a new one of the same name may be created).
    fn delete_topic(&self, topic: &str) -> impl Future<Output = Result<(), BrokerError>>;

    /// Makes sure the topic `spec` describes exists as described: creates it if missing;
    /// if it exists, checks it ([`TopicSpec::check_existing`]) and refuses one with another
    /// partition count ([`BrokerError::PartitionCountMismatch`]) or cleanup policy
    /// ([`BrokerError::CleanupPolicyMismatch`]) instead of using it. Returns the topic's
    /// description, in which the caller may find a retention or size limit that differs
    /// from the spec's (not refused: those do not decide where records go).
    fn ensure_topic(
        &self,
        spec: &TopicSpec,
    ) -> impl Future<Output = Result<TopicDescription, BrokerError>> {
        async move {
            spec.check()?;
            let created = self.create_topic_with(spec).await?;
            let actual = self.describe_topic(&spec.name).await?;
            spec.check_existing(&actual)?;
            if !created
                && (actual.retention != spec.retention
                    || actual.max_message_bytes != spec.max_message_bytes)
            {
                tracing::warn!(
                    topic = %spec.name,
                    expected_retention = ?spec.retention,
                    actual_retention = ?actual.retention,
                    expected_max_message_bytes = ?spec.max_message_bytes,
                    actual_max_message_bytes = ?actual.max_message_bytes,
                    "an existing topic's retention or size limit differs from the spec; using it as it is"
                );
            }
            Ok(actual)
        }
    }

    /// The committed offset of `group` for a partition: the next offset to read, if any.
    fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<Option<i64>, BrokerError>>;

    /// A `read_committed` reader of one partition starting at `offset`.
    fn reader(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = Result<Self::Reader, BrokerError>>;

    /// A transactional producer for `transactional_id`. Creating it fences every earlier
    /// producer with the same id and aborts whatever transaction that one left open.
    fn writer(
        &self,
        transactional_id: &str,
    ) -> impl Future<Output = Result<Self::Writer, BrokerError>>;

    /// The largest record batch `topic` accepts from this broker's writers, in bytes: the
    /// smaller of the writers' `message.max.bytes` and the topic's `max.message.bytes`. A
    /// record whose key and value plus [`RECORD_FRAMING_BYTES_MAX`] exceed it would be
    /// refused ([`BrokerError::RecordTooLarge`], or a failed delivery that dooms the
    /// transaction), so callers shrink what they send to fit.
    fn max_record_bytes(&self, topic: &str) -> impl Future<Output = Result<usize, BrokerError>>;

    /// Whether no transaction is in progress on a partition: every record written to it
    /// is committed or aborted (its last stable offset is its end), so a `read_committed`
    /// reader that finds nothing more at its position has read all there is. Kafka
    /// answers a transaction's commit before it writes the commit markers, so a partition
    /// can stay unsettled briefly after its last writer's commit returned.
    fn partition_settled(
        &self,
        topic: &str,
        partition: i32,
    ) -> impl Future<Output = Result<bool, BrokerError>>;

    /// Every committed record of a partition from `offset`, for checks and tests: what a
    /// `read_committed` consumer sees.
    fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
    ) -> impl Future<Output = Result<Vec<BrokerRecord>, BrokerError>>;
}
