//! An in-memory model of a Kafka cluster's transactional semantics, behind the broker seam.
//!
//! The simulation and `weir local` need a broker that behaves like Kafka where exactly-once
//! depends on it, runs on one thread with no I/O, and replays a seed exactly. librdkafka's
//! mock cluster is no such model (its `read_committed` readers see aborted records and it
//! drops transactional offsets), so this module models the parts that matter:
//!
//! - **Logs.** Each partition is an append-only log. A record takes its offset when it is
//!   sent, inside its transaction, as in Kafka. Ending a transaction appends a control
//!   record (a commit or abort marker) to every partition the transaction wrote to, so
//!   offsets of committed data are not contiguous.
//! - **Visibility.** `read_committed` readers see only committed data records, and never
//!   pass the last stable offset (LSO): the first offset of the oldest transaction still
//!   open in that partition. Aborted records are skipped forever.
//! - **Producers.** A transactional id has a producer id and an epoch. [`Broker::writer`]
//!   bumps the epoch, aborts whatever the previous epoch left open, and fences every older
//!   writer: their later calls return [`BrokerError::Fenced`].
//! - **Group offsets** given to [`TransactionalWriter::commit`](crate::TransactionalWriter::commit)
//!   are committed atomically with the transaction's records: both or neither.
//! - **Faults.** [`MemoryBrokerFaults`] lets the simulation make calls fail with
//!   `Unavailable` or `Timeout`, make the broker unreachable, expire an open transaction
//!   as Kafka's transaction timeout would, and lose the reply of a commit that took effect.
//!   Topic administration (create, describe, delete) fails on demand like every other
//!   call ([`BrokerCall::CreateTopic`], [`BrokerCall::DescribeTopic`],
//!   [`BrokerCall::DeleteTopic`]), without effect.
//!   Nothing in here draws random numbers or reads a clock it was not given: the caller
//!   drives every fault, so a seed replays exactly.
//!
//! The state lives behind one `Arc<Mutex<..>>`, so clones of a [`MemoryBroker`] share one
//! cluster, on one thread (the simulation) or several (`weir local`). No call holds the
//! lock across an await point; in fact no call awaits at all.
//!
//! Where the model knowingly differs from Kafka, the item concerned says so; the summary
//! is in [`MemoryBroker`]'s documentation.
//!
//! Where each part lives: the handle and the broker calls here; the cluster state and the
//! transaction coordinator in `cluster.rs`; one partition's log and what `read_committed`
//! sees of it in `log.rs`; the reader and the writer (its typed `WriterState`) in
//! `reader.rs` and `writer.rs`; the protocol's shared words (producer ids, transaction
//! serials, outcomes) in `transaction.rs`; fault injection in `faults.rs` (the handle) and
//! `fault_queue.rs` (what waits for the calls); Kafka's partitioner in `partitioner.rs`;
//! creating, describing and deleting topics with their settings in `topics.rs`.

mod cluster;
mod fault_queue;
mod faults;
mod log;
mod partitioner;
mod reader;
mod topics;
mod transaction;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod topics_tests;

pub use fault_queue::{BrokerCall, InjectedFailure};
pub use faults::MemoryBrokerFaults;
pub use partitioner::{murmur2, partition_for_key};
pub use reader::MemoryReader;
pub use writer::MemoryWriter;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use weir_core::seams::Clock;

use crate::{Broker, BrokerError, BrokerRecord, TopicDescription, TopicSpec};
use cluster::Cluster;
use writer::WriterState;

/// Most partitions the model lets one topic have: the seam's own bound
/// ([`crate::topic::TOPIC_PARTITIONS_MAX`]), which turns a runaway setting into a clear
/// error instead of memory exhaustion.
pub const MAX_TOPIC_PARTITIONS: u32 = crate::topic::TOPIC_PARTITIONS_MAX;

/// Most injected failures that may wait for one kind of call. Injecting more is a bug in
/// the test or simulation driving the model, and panics.
pub const MAX_PENDING_FAULTS_PER_CALL: usize = 100_000;

/// The writers' `message.max.bytes` in the model, as librdkafka's default and weir's
/// production writers have it.
pub const WRITER_MESSAGE_BYTES_MAX: usize = 1_000_000;
/// A topic's `max.message.bytes` unless set with [`MemoryBroker::set_max_message_bytes`]:
/// Kafka's default (1 MiB plus the 12-byte log overhead).
pub const TOPIC_MESSAGE_BYTES_DEFAULT: usize = 1_048_588;
/// What the model counts for a record besides its key and value when checking sizes: a
/// one-record batch's header and the record's varints, as Kafka frames them (at most
/// [`crate::RECORD_FRAMING_BYTES_MAX`]).
pub const RECORD_FRAMING_BYTES: usize = 100;

/// An in-memory Kafka cluster with Kafka's transactional semantics. Clones share the same
/// cluster.
///
/// Where the model knowingly differs from Kafka:
/// - It is one always-available broker with no replication: the high watermark is the log
///   end offset, and nothing is ever lost. Unavailability and timeouts happen only when
///   injected through [`MemoryBrokerFaults`].
/// - Calls take effect at once: a sent record is in the log when `send` returns, a
///   committed transaction's markers and offsets are visible when `commit` returns, and
///   `poll_batch` never waits (it returns an empty batch if nothing is visible). Kafka
///   writes transaction markers asynchronously after `commit` returns.
/// - A fenced writer learns it at its very next call, `begin` and `send` included.
///   librdkafka learns it from the broker's next answer, so a real zombie's `send` may
///   still succeed (locally queued) and only its `commit` report `Fenced`.
/// - `begin` registers the transaction with the model's coordinator at once (Kafka does it
///   at the first send), so a transaction with no records yet can be expired.
/// - A reader's position moves past the markers and aborted records it skipped, up to the
///   last stable offset (as Kafka's Java consumer does); a reader over librdkafka may
///   report just past the last record returned. Both are exact resume points.
/// - Expiring a transaction ([`MemoryBrokerFaults::expire_transaction`]) aborts it but does
///   not bump the producer epoch; the writer sees `AbortRequired`, as librdkafka reports it.
/// - Creating and deleting a topic take effect at once; a deleted topic's group offsets go
///   with it at once too (Kafka removes them shortly after). A replication factor above 1
///   is refused, as on a one-broker Kafka cluster.
/// - Logs are never truncated: a topic's `cleanup.policy` and `retention.ms` are stored
///   and described, but the model neither compacts nor deletes records for age.
/// - Keyless records with no partition go round-robin per writer (librdkafka picks at
///   random); keyed ones use Kafka's murmur2 partitioner ([`partition_for_key`]).
/// - Usage errors (a `send` outside a transaction, a second `begin`, an `abort` with no
///   transaction) are `BrokerError::Fatal`, where librdkafka reports a state error.
#[derive(Clone)]
pub struct MemoryBroker {
    cluster: Arc<Mutex<Cluster>>,
}

impl MemoryBroker {
    /// An empty cluster that stamps records sent without a timestamp from a logical clock:
    /// the n-th such record gets `timestamp_ms = n` (starting at 0), whatever the
    /// wall-clock time, so runs replay exactly.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// An empty cluster that stamps records sent without a timestamp with `clock` (the
    /// simulation's virtual wall clock), as a Kafka producer stamps `CreateTime`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self::build(Some(clock))
    }

    fn build(clock: Option<Arc<dyn Clock>>) -> Self {
        MemoryBroker {
            cluster: Arc::new(Mutex::new(Cluster::new(clock))),
        }
    }

    /// Sets `topic`'s `max.message.bytes` (as `kafka-configs --alter` would): records
    /// larger than it are refused with [`BrokerError::RecordTooLarge`].
    pub fn set_max_message_bytes(&self, topic: &str, bytes: usize) {
        lock(&self.cluster)
            .max_message_bytes
            .insert(topic.to_string(), bytes);
    }

    /// The handle through which a test or the simulation injects faults into this cluster.
    pub fn faults(&self) -> MemoryBrokerFaults {
        MemoryBrokerFaults {
            cluster: Arc::clone(&self.cluster),
        }
    }

    /// The log end offset and last stable offset of a partition, for checks and tests.
    /// Not subject to injected faults.
    pub fn partition_offsets(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<PartitionOffsets, BrokerError> {
        let cluster = lock(&self.cluster);
        let log = cluster.log(topic, partition)?;
        Ok(PartitionOffsets {
            log_end_offset: log.log_end_offset(),
            last_stable_offset: log.last_stable_offset(),
        })
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster = lock(&self.cluster);
        f.debug_struct("MemoryBroker")
            .field("topics", &cluster.topics.len())
            .field("transactional_ids", &cluster.producers.len())
            .finish_non_exhaustive()
    }
}

/// Where a partition's log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The offset the next appended record or marker takes (Kafka's log end offset; the
    /// model's high watermark too, as it has no replicas).
    pub log_end_offset: i64,
    /// The first offset of the oldest transaction still open in the partition, or the log
    /// end offset if none is: `read_committed` readers never reach past it.
    pub last_stable_offset: i64,
}

impl Broker for MemoryBroker {
    type Reader = MemoryReader;
    type Writer = MemoryWriter;

    async fn partition_count(&self, topic: &str) -> Result<u32, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::PartitionCount)?;
        cluster.partition_count(topic)
    }

    /// Does nothing if `topic` exists, whatever its partition count (Kafka answers
    /// `TopicAlreadyExists`, which the seam treats as success).
    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::CreateTopic)?;
        cluster
            .create_topic(&TopicSpec::new(topic, partitions))
            .map(drop)
    }

    async fn create_topic_with(&self, spec: &TopicSpec) -> Result<bool, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::CreateTopic)?;
        cluster.create_topic(spec)
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::DescribeTopic)?;
        cluster.describe_topic(topic)
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::DeleteTopic)?;
        cluster.delete_topic(topic)
    }

    /// `None` for a topic or partition that does not exist, as Kafka's offset fetch answers.
    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::CommittedOffset)?;
        let key = (group.to_string(), topic.to_string(), partition);
        Ok(cluster.group_offsets.get(&key).copied())
    }

    async fn reader(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<MemoryReader, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::Reader)?;
        let log = cluster.log(topic, partition)?;
        if offset < 0 {
            return Err(BrokerError::Fatal(format!("negative offset {offset}")));
        }
        Ok(MemoryReader {
            cluster: Arc::clone(&self.cluster),
            topic: topic.to_string(),
            partition,
            position: offset,
            high_watermark: Some(log.log_end_offset()),
        })
    }

    async fn writer(&self, transactional_id: &str) -> Result<MemoryWriter, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::Writer)?;
        if transactional_id.is_empty() {
            return Err(BrokerError::Fatal("empty transactional id".into()));
        }
        let producer_epoch = cluster.fence(transactional_id);
        Ok(MemoryWriter {
            cluster: Arc::clone(&self.cluster),
            transactional_id: transactional_id.to_string(),
            producer_epoch,
            state: WriterState::Ready,
            keyless_sent: 0,
        })
    }

    async fn max_record_bytes(&self, topic: &str) -> Result<usize, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::PartitionCount)?;
        cluster.partition_count(topic)?;
        Ok(cluster.max_record_bytes(topic))
    }

    async fn partition_settled(&self, topic: &str, partition: i32) -> Result<bool, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::ReadCommitted)?;
        let log = cluster.log(topic, partition)?;
        Ok(log.last_stable_offset() == log.log_end_offset())
    }

    async fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::ReadCommitted)?;
        let log = cluster.log(topic, partition)?;
        Ok(log
            .read_committed(topic, partition, offset, max_records)?
            .records)
    }
}

fn lock(cluster: &Mutex<Cluster>) -> MutexGuard<'_, Cluster> {
    // A panic while the lock was held may have left the model half-updated; going on would
    // turn that into wrong answers instead of the crash the simulation should report.
    cluster
        .lock()
        .expect("memory broker state poisoned by an earlier panic")
}
