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
//! - **Group offsets** given to [`TransactionalWriter::commit`] are committed atomically
//!   with the transaction's records: both or neither.
//! - **Faults.** [`MemoryBrokerFaults`] lets the simulation make calls fail with
//!   `Unavailable` or `Timeout`, make the broker unreachable, expire an open transaction
//!   as Kafka's transaction timeout would, and lose the reply of a commit that took effect.
//!   Nothing in here draws random numbers or reads a clock it was not given: the caller
//!   drives every fault, so a seed replays exactly.
//!
//! The state lives behind one `Arc<Mutex<..>>`, so clones of a [`MemoryBroker`] share one
//! cluster, on one thread (the simulation) or several (`weir local`). No call holds the
//! lock across an await point; in fact no call awaits at all.
//!
//! Where the model knowingly differs from Kafka, the item concerned says so; the summary
//! is in [`MemoryBroker`]'s documentation.

use crate::{
    Broker, BrokerError, BrokerRecord, OutgoingRecord, PartitionReader, SourceOffset,
    TransactionalWriter,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use weir_core::seams::Clock;

/// Most partitions the model lets one topic have. Kafka has no hard limit; a bound here
/// turns a runaway test setting into a clear error instead of memory exhaustion.
pub const MAX_TOPIC_PARTITIONS: u32 = 10_000;

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

/// Longest topic name Kafka accepts, in bytes.
const TOPIC_NAME_MAX_BYTES: usize = 249;

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
/// - Topics are never deleted and logs never truncated (no retention, no compaction).
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

/// A kind of broker call, to aim injected failures at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BrokerCall {
    /// [`Broker::partition_count`].
    PartitionCount,
    /// [`Broker::create_topic`].
    CreateTopic,
    /// [`Broker::committed_offset`].
    CommittedOffset,
    /// [`Broker::reader`].
    Reader,
    /// [`Broker::writer`]: a failed call neither bumps the epoch nor fences anyone.
    Writer,
    /// [`Broker::read_committed`].
    ReadCommitted,
    /// [`PartitionReader::poll_batch`]: a failed poll leaves the position where it was.
    Poll,
    /// [`TransactionalWriter::begin`].
    Begin,
    /// [`TransactionalWriter::send`]. `Unavailable` leaves the record out and the
    /// transaction usable (like a full local queue); `Timeout` leaves the record out and
    /// the transaction must be aborted, as after a delivery timeout in librdkafka.
    Send,
    /// [`TransactionalWriter::commit`]. `Unavailable` changes nothing. `Timeout` commits
    /// nothing, but the writer then accepts only a retried `commit` (which completes it),
    /// as librdkafka does after a commit times out.
    Commit,
    /// [`TransactionalWriter::abort`]. `Unavailable` changes nothing; `Timeout` aborts
    /// nothing, and the writer then accepts only a retried `abort`.
    Abort,
}

/// The error an injected failure returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedFailure {
    /// [`BrokerError::Unavailable`].
    Unavailable,
    /// [`BrokerError::Timeout`].
    Timeout,
}

/// The fault-injection handle of a [`MemoryBroker`], shared with it. Every fault is
/// applied when the caller says so; the model holds no randomness of its own.
#[derive(Clone)]
pub struct MemoryBrokerFaults {
    cluster: Arc<Mutex<Cluster>>,
}

impl MemoryBrokerFaults {
    /// Makes the next `count` calls of kind `call` (from any writer, reader or broker
    /// handle) fail with `failure`, without effect. Failures queue behind those already
    /// injected for the same kind.
    pub fn fail_next(&self, call: BrokerCall, count: usize, failure: InjectedFailure) {
        let injected = match failure {
            InjectedFailure::Unavailable => Injected::Unavailable,
            InjectedFailure::Timeout => Injected::Timeout,
        };
        lock(&self.cluster).faults.push(call, count, injected);
    }

    /// Makes the next `count` commits take effect (records visible, offsets committed) but
    /// return [`BrokerError::Timeout`], as when the broker's reply is lost: the outcome is
    /// unknown to the caller. A retried `commit` of that writer then returns `Ok`. These
    /// queue with the failures [`fail_next`](Self::fail_next) injects for
    /// [`BrokerCall::Commit`].
    pub fn commit_outcome_unknown_next(&self, count: usize) {
        lock(&self.cluster)
            .faults
            .push(BrokerCall::Commit, count, Injected::TimeoutAfterCommit);
    }

    /// While `unreachable` is true, every call fails with `Unavailable` without effect and
    /// without consuming injected failures, as if the cluster were cut off.
    pub fn set_unreachable(&self, unreachable: bool) {
        lock(&self.cluster).faults.unreachable = unreachable;
    }

    /// Aborts the open transaction of `transactional_id` at the broker, as Kafka does when
    /// a transaction outlives `transaction.timeout.ms`: its records are aborted, and the
    /// writer's next `send` or `commit` returns [`BrokerError::AbortRequired`]. Returns
    /// whether a transaction was open.
    pub fn expire_transaction(&self, transactional_id: &str) -> bool {
        lock(&self.cluster).expire_transaction(transactional_id)
    }

    /// Deletes every committed offset of `group`, as Kafka does once a group without
    /// members has not committed for `offsets.retention.minutes`. Returns how many
    /// partitions' offsets went.
    pub fn expire_group_offsets(&self, group: &str) -> usize {
        let mut cluster = lock(&self.cluster);
        let before = cluster.group_offsets.len();
        cluster.group_offsets.retain(|(g, _, _), _| g != group);
        before - cluster.group_offsets.len()
    }

    /// The transactional ids with a transaction open at the broker, in order, for a
    /// simulation choosing one to expire.
    pub fn open_transactions(&self) -> Vec<String> {
        let cluster = lock(&self.cluster);
        cluster
            .producers
            .iter()
            .filter(|(_, producer)| producer.open.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Drops every injected failure still waiting and makes the cluster reachable again:
    /// the healed cluster of a liveness phase.
    pub fn heal(&self) {
        let mut cluster = lock(&self.cluster);
        cluster.faults = Faults::default();
    }
}

impl fmt::Debug for MemoryBrokerFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster = lock(&self.cluster);
        f.debug_struct("MemoryBrokerFaults")
            .field("unreachable", &cluster.faults.unreachable)
            .field("pending", &cluster.faults.pending)
            .finish()
    }
}

/// Kafka's default partitioner for keyed records (Java's `BuiltInPartitioner` and
/// librdkafka's `murmur2_random`): `(murmur2(key) & 0x7fffffff) % partition_count`. The
/// model uses it, so a real producer configured with `partitioner=murmur2_random` places
/// keys in the same partitions.
///
/// # Panics
/// If `partition_count` is 0.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> i32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    (positive % partition_count) as i32
}

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), as a signed
/// 32-bit value like Java's.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java xors the seed with the length as an int; keys beyond 4 GiB wrap the same way.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Java's switch falls through from the highest remaining byte down.
        for (i, byte) in rest.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// A `read_committed` reader of one partition of a [`MemoryBroker`].
pub struct MemoryReader {
    cluster: Arc<Mutex<Cluster>>,
    topic: String,
    partition: i32,
    position: i64,
    high_watermark: Option<i64>,
}

impl fmt::Debug for MemoryReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReader")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("position", &self.position)
            .field("high_watermark", &self.high_watermark)
            .finish_non_exhaustive()
    }
}

impl PartitionReader for MemoryReader {
    /// Returns at once, whatever `wait` says: the model has nothing to wait for, and a
    /// caller polling in a loop must pace itself. Like Kafka's consumer, the position moves
    /// past markers and aborted records it skips, up to the last stable offset.
    async fn poll_batch(
        &mut self,
        max_records: usize,
        _wait: Duration,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        let mut cluster = lock(&self.cluster);
        cluster.take_fault(BrokerCall::Poll)?;
        let log = cluster.log(&self.topic, self.partition)?;
        let read = log.read_committed(&self.topic, self.partition, self.position, max_records)?;
        assert!(
            read.next_position >= self.position,
            "a reader never moves backwards"
        );
        self.position = read.next_position;
        self.high_watermark = Some(log.log_end_offset());
        Ok(read.records)
    }

    fn position(&self) -> i64 {
        self.position
    }

    /// The log end offset when the reader was made or last polled.
    fn high_watermark(&self) -> Option<i64> {
        self.high_watermark
    }
}

/// A transactional producer of a [`MemoryBroker`], for one transactional id and epoch.
pub struct MemoryWriter {
    cluster: Arc<Mutex<Cluster>>,
    transactional_id: String,
    producer_epoch: u32,
    state: WriterState,
    /// Round-robin position for records with neither key nor partition.
    keyless_sent: u32,
}

impl MemoryWriter {
    /// The transactional id this writer produces for.
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// The producer epoch this writer was given: 0 for the first writer of its
    /// transactional id, one more for each later one.
    pub fn producer_epoch(&self) -> u32 {
        self.producer_epoch
    }

    fn ensure_current(&self, cluster: &Cluster) -> Result<(), BrokerError> {
        let producer = cluster.producer(&self.transactional_id);
        if producer.epoch == self.producer_epoch {
            return Ok(());
        }
        assert!(producer.epoch > self.producer_epoch, "epochs only grow");
        Err(BrokerError::Fenced(format!(
            "transactional id {:?}: epoch {} was fenced by epoch {}",
            self.transactional_id, self.producer_epoch, producer.epoch
        )))
    }

    fn choose_partition(
        &mut self,
        cluster: &Cluster,
        record: &OutgoingRecord,
    ) -> Result<i32, BrokerError> {
        let partition_count = cluster.partition_count(&record.topic)?;
        match (record.partition, &record.key) {
            (Some(partition), _) => {
                cluster.log(&record.topic, partition)?;
                Ok(partition)
            }
            (None, Some(key)) => Ok(partition_for_key(key, partition_count)),
            (None, None) => {
                let partition = self.keyless_sent % partition_count;
                self.keyless_sent = self.keyless_sent.wrapping_add(1);
                Ok(partition as i32)
            }
        }
    }

    fn commit_now(
        &mut self,
        cluster: &mut Cluster,
        group: &str,
        offsets: &[SourceOffset],
    ) -> Result<TransactionSerial, BrokerError> {
        self.ensure_current(cluster)?;
        let serial = match self.state {
            WriterState::Open(serial) | WriterState::Committing(serial) => serial,
            WriterState::MustAbort(_) => return Err(abort_required(&self.transactional_id)),
            WriterState::Ready => {
                return Err(BrokerError::Fatal("commit without a transaction".into()))
            }
            WriterState::Aborting(_) => {
                return Err(BrokerError::Fatal(
                    "commit while a timed-out abort is in progress: retry the abort".into(),
                ))
            }
        };
        match cluster.transaction_status(&self.transactional_id, serial) {
            TransactionStatus::Open => {
                if let Err(error) = cluster.check_group_offsets(group, offsets) {
                    // As when librdkafka's send_offsets_to_transaction fails: the
                    // transaction can only be aborted.
                    self.state = WriterState::MustAbort(serial);
                    return Err(error);
                }
                cluster.end_transaction(
                    &self.transactional_id,
                    Outcome::Committed,
                    Some((group, offsets)),
                );
            }
            // A retry after a commit whose reply was lost.
            TransactionStatus::Ended(Outcome::Committed) => {}
            TransactionStatus::Ended(Outcome::Aborted) => {
                self.state = WriterState::MustAbort(serial);
                return Err(abort_required(&self.transactional_id));
            }
        }
        self.state = WriterState::Ready;
        Ok(serial)
    }
}

impl fmt::Debug for MemoryWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryWriter")
            .field("transactional_id", &self.transactional_id)
            .field("producer_epoch", &self.producer_epoch)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl TransactionalWriter for MemoryWriter {
    fn begin(&mut self) -> Result<(), BrokerError> {
        let shared = Arc::clone(&self.cluster);
        let mut cluster = lock(&shared);
        cluster.take_fault(BrokerCall::Begin)?;
        self.ensure_current(&cluster)?;
        match self.state {
            WriterState::Ready => {
                let serial = cluster.open_transaction(&self.transactional_id);
                self.state = WriterState::Open(serial);
                Ok(())
            }
            state => Err(BrokerError::Fatal(format!(
                "begin while {}",
                state.describe()
            ))),
        }
    }

    async fn send(&mut self, record: OutgoingRecord) -> Result<(), BrokerError> {
        let shared = Arc::clone(&self.cluster);
        let mut cluster = lock(&shared);
        if let Err(error) = cluster.take_fault(BrokerCall::Send) {
            if let (BrokerError::Timeout(_), WriterState::Open(serial)) = (&error, self.state) {
                // The record may or may not be in the log: only an abort is safe.
                self.state = WriterState::MustAbort(serial);
            }
            return Err(error);
        }
        self.ensure_current(&cluster)?;
        let serial = match self.state {
            WriterState::Open(serial) => serial,
            WriterState::MustAbort(_) => return Err(abort_required(&self.transactional_id)),
            state => {
                return Err(BrokerError::Fatal(format!(
                    "send while {}",
                    state.describe()
                )))
            }
        };
        if cluster.transaction_status(&self.transactional_id, serial) != TransactionStatus::Open {
            self.state = WriterState::MustAbort(serial);
            return Err(abort_required(&self.transactional_id));
        }
        let partition = self.choose_partition(&cluster, &record)?;
        let size =
            record.key.as_ref().map_or(0, Vec::len) + record.value.len() + RECORD_FRAMING_BYTES;
        let limit = cluster.max_record_bytes(&record.topic);
        if size > limit {
            // librdkafka refuses it before enqueueing; the transaction stays usable.
            return Err(BrokerError::RecordTooLarge(format!(
                "{} bytes for {} (at most {limit})",
                size, record.topic
            )));
        }
        cluster.append(&self.transactional_id, partition, record);
        Ok(())
    }

    async fn commit(&mut self, group: &str, offsets: &[SourceOffset]) -> Result<(), BrokerError> {
        let shared = Arc::clone(&self.cluster);
        let mut cluster = lock(&shared);
        match cluster.faults.take(BrokerCall::Commit) {
            None => self.commit_now(&mut cluster, group, offsets).map(|_| ()),
            Some(Injected::TimeoutAfterCommit) => {
                if let Ok(serial) = self.commit_now(&mut cluster, group, offsets) {
                    // Committed, but the caller cannot know: only a retried commit (which
                    // finds it done) or a new writer may follow.
                    self.state = WriterState::Committing(serial);
                }
                Err(BrokerError::Timeout(
                    "injected: commit reply lost (the commit took effect)".into(),
                ))
            }
            Some(Injected::Timeout) => {
                if let WriterState::Open(serial) = self.state {
                    self.state = WriterState::Committing(serial);
                }
                Err(Injected::Timeout.error(BrokerCall::Commit))
            }
            Some(injected) => Err(injected.error(BrokerCall::Commit)),
        }
    }

    async fn abort(&mut self) -> Result<(), BrokerError> {
        let shared = Arc::clone(&self.cluster);
        let mut cluster = lock(&shared);
        if let Err(error) = cluster.take_fault(BrokerCall::Abort) {
            if let (
                BrokerError::Timeout(_),
                WriterState::Open(serial) | WriterState::MustAbort(serial),
            ) = (&error, self.state)
            {
                self.state = WriterState::Aborting(serial);
            }
            return Err(error);
        }
        self.ensure_current(&cluster)?;
        let serial = match self.state {
            WriterState::Open(serial)
            | WriterState::MustAbort(serial)
            | WriterState::Aborting(serial) => serial,
            WriterState::Ready => {
                return Err(BrokerError::Fatal("abort without a transaction".into()))
            }
            WriterState::Committing(_) => {
                return Err(BrokerError::Fatal(
                    "abort while a timed-out commit is in progress: retry the commit".into(),
                ))
            }
        };
        match cluster.transaction_status(&self.transactional_id, serial) {
            TransactionStatus::Open => {
                cluster.end_transaction(&self.transactional_id, Outcome::Aborted, None)
            }
            // Expired at the broker already.
            TransactionStatus::Ended(Outcome::Aborted) => {}
            TransactionStatus::Ended(Outcome::Committed) => {
                unreachable!("a committed transaction leaves its writer ready or committing")
            }
        }
        self.state = WriterState::Ready;
        Ok(())
    }
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
        check_topic_name(topic)?;
        if !(1..=MAX_TOPIC_PARTITIONS).contains(&partitions) {
            return Err(BrokerError::Fatal(format!(
                "topic {topic:?}: {partitions} partitions is outside 1..={MAX_TOPIC_PARTITIONS}"
            )));
        }
        cluster
            .topics
            .entry(topic.to_string())
            .or_insert_with(|| (0..partitions).map(|_| PartitionLog::default()).collect());
        Ok(())
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

// ---------------------------------------------------------------------------------------
// The cluster state behind the handles.
// ---------------------------------------------------------------------------------------

fn lock(cluster: &Mutex<Cluster>) -> MutexGuard<'_, Cluster> {
    // A panic while the lock was held may have left the model half-updated; going on would
    // turn that into wrong answers instead of the crash the simulation should report.
    cluster
        .lock()
        .expect("memory broker state poisoned by an earlier panic")
}

fn abort_required(transactional_id: &str) -> BrokerError {
    BrokerError::AbortRequired(format!(
        "transactional id {transactional_id:?}: the transaction failed or was aborted by the broker"
    ))
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, and neither `.` nor `..`.
fn check_topic_name(topic: &str) -> Result<(), BrokerError> {
    let legal_chars = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    let legal = !topic.is_empty()
        && topic.len() <= TOPIC_NAME_MAX_BYTES
        && legal_chars
        && topic != "."
        && topic != "..";
    if legal {
        Ok(())
    } else {
        Err(BrokerError::Fatal(format!("invalid topic name {topic:?}")))
    }
}

/// A transaction's number, unique in the cluster, so a writer can tell its own transaction
/// from a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TransactionSerial(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ProducerId(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransactionStatus {
    Open,
    Ended(Outcome),
}

/// The writer's side of the transaction protocol, as librdkafka's state machine has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// No transaction: only `begin` is valid.
    Ready,
    /// In a transaction: `send`, `commit`, `abort`.
    Open(TransactionSerial),
    /// The transaction failed or was aborted by the broker: only `abort`.
    MustAbort(TransactionSerial),
    /// A commit timed out: only a retried `commit`, which completes it.
    Committing(TransactionSerial),
    /// An abort timed out: only a retried `abort`.
    Aborting(TransactionSerial),
}

impl WriterState {
    fn describe(self) -> &'static str {
        match self {
            WriterState::Ready => "no transaction is open",
            WriterState::Open(_) => "a transaction is open",
            WriterState::MustAbort(_) => "the transaction must be aborted",
            WriterState::Committing(_) => "a timed-out commit is in progress",
            WriterState::Aborting(_) => "a timed-out abort is in progress",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Injected {
    Unavailable,
    Timeout,
    /// Only ever queued for commits.
    TimeoutAfterCommit,
}

impl Injected {
    fn error(self, call: BrokerCall) -> BrokerError {
        match self {
            Injected::Unavailable => {
                BrokerError::Unavailable(format!("injected: {call:?} unavailable"))
            }
            Injected::Timeout | Injected::TimeoutAfterCommit => {
                BrokerError::Timeout(format!("injected: {call:?} timed out"))
            }
        }
    }
}

#[derive(Debug, Default)]
struct Faults {
    unreachable: bool,
    pending: BTreeMap<BrokerCall, VecDeque<Injected>>,
}

impl Faults {
    fn push(&mut self, call: BrokerCall, count: usize, injected: Injected) {
        let queue = self.pending.entry(call).or_default();
        assert!(
            queue.len().saturating_add(count) <= MAX_PENDING_FAULTS_PER_CALL,
            "at most {MAX_PENDING_FAULTS_PER_CALL} injected failures may wait for {call:?}"
        );
        queue.extend(std::iter::repeat_n(injected, count));
    }

    fn take(&mut self, call: BrokerCall) -> Option<Injected> {
        if self.unreachable {
            return Some(Injected::Unavailable);
        }
        self.pending.get_mut(&call)?.pop_front()
    }
}

#[derive(Debug)]
struct Cluster {
    topics: BTreeMap<String, Vec<PartitionLog>>,
    producers: BTreeMap<String, Producer>,
    /// (group, topic, partition) → the next offset to read.
    group_offsets: BTreeMap<(String, String, i32), i64>,
    next_producer_id: ProducerId,
    next_transaction: TransactionSerial,
    clock: Option<Arc<dyn Clock>>,
    logical_clock_ms: i64,
    faults: Faults,
    /// Topics whose `max.message.bytes` differs from [`TOPIC_MESSAGE_BYTES_DEFAULT`].
    max_message_bytes: BTreeMap<String, usize>,
}

/// The transaction coordinator's view of one transactional id.
#[derive(Debug)]
struct Producer {
    producer_id: ProducerId,
    epoch: u32,
    open: Option<OpenTransaction>,
    /// How the id's latest transaction ended, for a commit retried after a lost reply.
    last_ended: Option<(TransactionSerial, Outcome)>,
}

#[derive(Debug)]
struct OpenTransaction {
    serial: TransactionSerial,
    /// Every partition the transaction appended to: each gets a marker when it ends.
    partitions: BTreeSet<(String, i32)>,
}

impl Cluster {
    fn new(clock: Option<Arc<dyn Clock>>) -> Self {
        Cluster {
            topics: BTreeMap::new(),
            producers: BTreeMap::new(),
            group_offsets: BTreeMap::new(),
            next_producer_id: ProducerId(0),
            next_transaction: TransactionSerial(0),
            clock,
            logical_clock_ms: 0,
            faults: Faults::default(),
            max_message_bytes: BTreeMap::new(),
        }
    }

    /// The largest record `topic` accepts from the model's writers.
    fn max_record_bytes(&self, topic: &str) -> usize {
        self.max_message_bytes
            .get(topic)
            .copied()
            .unwrap_or(TOPIC_MESSAGE_BYTES_DEFAULT)
            .min(WRITER_MESSAGE_BYTES_MAX)
    }

    fn take_fault(&mut self, call: BrokerCall) -> Result<(), BrokerError> {
        match self.faults.take(call) {
            None => Ok(()),
            Some(injected) => Err(injected.error(call)),
        }
    }

    fn partition_count(&self, topic: &str) -> Result<u32, BrokerError> {
        let partitions = self
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::UnknownTopic(topic.to_string()))?;
        Ok(partitions.len() as u32)
    }

    fn log(&self, topic: &str, partition: i32) -> Result<&PartitionLog, BrokerError> {
        let partitions = self
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::UnknownTopic(topic.to_string()))?;
        usize::try_from(partition)
            .ok()
            .and_then(|index| partitions.get(index))
            .ok_or_else(|| BrokerError::UnknownTopic(format!("{topic}/{partition}")))
    }

    fn log_mut(&mut self, topic: &str, partition: i32) -> &mut PartitionLog {
        let partitions = self
            .topics
            .get_mut(topic)
            .expect("topics are never deleted");
        &mut partitions[partition as usize]
    }

    fn producer(&self, transactional_id: &str) -> &Producer {
        self.producers
            .get(transactional_id)
            .expect("a writer's transactional id is registered before the writer exists")
    }

    fn producer_mut(&mut self, transactional_id: &str) -> &mut Producer {
        self.producers
            .get_mut(transactional_id)
            .expect("a writer's transactional id is registered before the writer exists")
    }

    /// Registers a new epoch of `transactional_id`, aborting what the previous one left
    /// open, and returns the epoch. Every writer of an older epoch is fenced from now on.
    fn fence(&mut self, transactional_id: &str) -> u32 {
        if let Some(producer) = self.producers.get(transactional_id) {
            if producer.open.is_some() {
                self.end_transaction(transactional_id, Outcome::Aborted, None);
            }
            let producer = self.producer_mut(transactional_id);
            producer.epoch = producer
                .epoch
                .checked_add(1)
                .expect("producer epoch overflow");
            return producer.epoch;
        }
        let producer_id = self.next_producer_id;
        self.next_producer_id = ProducerId(producer_id.0 + 1);
        let producer = Producer {
            producer_id,
            epoch: 0,
            open: None,
            last_ended: None,
        };
        self.producers
            .insert(transactional_id.to_string(), producer);
        0
    }

    fn open_transaction(&mut self, transactional_id: &str) -> TransactionSerial {
        let serial = self.next_transaction;
        self.next_transaction = TransactionSerial(serial.0 + 1);
        let producer = self.producer_mut(transactional_id);
        assert!(
            producer.open.is_none(),
            "a ready writer has no transaction open at the broker"
        );
        producer.open = Some(OpenTransaction {
            serial,
            partitions: BTreeSet::new(),
        });
        serial
    }

    fn transaction_status(
        &self,
        transactional_id: &str,
        serial: TransactionSerial,
    ) -> TransactionStatus {
        let producer = self.producer(transactional_id);
        if producer
            .open
            .as_ref()
            .is_some_and(|open| open.serial == serial)
        {
            return TransactionStatus::Open;
        }
        match producer.last_ended {
            Some((ended, outcome)) if ended == serial => TransactionStatus::Ended(outcome),
            _ => unreachable!("a current writer's transaction is open or the latest to end"),
        }
    }

    /// Appends `record` to `partition` (already checked) inside the open transaction.
    fn append(&mut self, transactional_id: &str, partition: i32, record: OutgoingRecord) {
        let timestamp_ms = self.stamp(record.timestamp_ms);
        let producer = self.producer_mut(transactional_id);
        let producer_id = producer.producer_id;
        let open = producer
            .open
            .as_mut()
            .expect("send checked the transaction is open");
        open.partitions.insert((record.topic.clone(), partition));
        let entry = LogEntry::Data {
            producer: producer_id,
            status: DataStatus::Pending,
            key: record.key,
            value: record.value,
            timestamp_ms,
        };
        self.log_mut(&record.topic, partition)
            .append(producer_id, entry);
    }

    fn stamp(&mut self, given_ms: Option<i64>) -> i64 {
        if let Some(timestamp_ms) = given_ms {
            return timestamp_ms;
        }
        if let Some(clock) = &self.clock {
            return i64::try_from(clock.now_ms()).unwrap_or(i64::MAX);
        }
        let timestamp_ms = self.logical_clock_ms;
        self.logical_clock_ms += 1;
        timestamp_ms
    }

    fn check_group_offsets(
        &self,
        group: &str,
        offsets: &[SourceOffset],
    ) -> Result<(), BrokerError> {
        if group.is_empty() && !offsets.is_empty() {
            return Err(BrokerError::Fatal("empty consumer group id".into()));
        }
        for offset in offsets {
            self.log(&offset.topic, offset.partition)?;
            if offset.next_offset < 0 {
                return Err(BrokerError::Fatal(format!(
                    "negative offset to commit: {offset:?}"
                )));
            }
        }
        Ok(())
    }

    /// Ends the open transaction of `transactional_id`: a marker in every partition it
    /// wrote to, its records committed or aborted, and on commit the group offsets.
    fn end_transaction(
        &mut self,
        transactional_id: &str,
        outcome: Outcome,
        offsets: Option<(&str, &[SourceOffset])>,
    ) {
        let producer = self.producer_mut(transactional_id);
        let open = producer
            .open
            .take()
            .expect("ending a transaction that is not open");
        producer.last_ended = Some((open.serial, outcome));
        let producer_id = producer.producer_id;
        for (topic, partition) in &open.partitions {
            self.log_mut(topic, *partition)
                .end_transaction(producer_id, outcome);
        }
        if let (Outcome::Committed, Some((group, offsets))) = (outcome, offsets) {
            for offset in offsets {
                let key = (group.to_string(), offset.topic.clone(), offset.partition);
                self.group_offsets.insert(key, offset.next_offset);
            }
        }
    }

    fn expire_transaction(&mut self, transactional_id: &str) -> bool {
        let open = self
            .producers
            .get(transactional_id)
            .is_some_and(|producer| producer.open.is_some());
        if open {
            self.end_transaction(transactional_id, Outcome::Aborted, None);
        }
        open
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataStatus {
    Pending,
    Committed,
    Aborted,
}

#[derive(Debug)]
enum LogEntry {
    Data {
        producer: ProducerId,
        status: DataStatus,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        timestamp_ms: i64,
    },
    /// A control record ending a transaction in this partition. Readers only skip it, so
    /// it carries nothing of the transaction it ended.
    Marker,
}

/// One partition: the entry at index `i` has offset `i`.
#[derive(Debug, Default)]
struct PartitionLog {
    entries: Vec<LogEntry>,
    /// The first offset of each transaction open in this partition, by producer.
    open_first_offsets: BTreeMap<ProducerId, i64>,
}

/// What one `read_committed` pass found.
struct CommittedRead {
    records: Vec<BrokerRecord>,
    /// Where the next pass starts: just past the last entry this one looked at.
    next_position: i64,
}

impl PartitionLog {
    fn log_end_offset(&self) -> i64 {
        self.entries.len() as i64
    }

    fn last_stable_offset(&self) -> i64 {
        let first_open = self.open_first_offsets.values().min().copied();
        first_open.unwrap_or_else(|| self.log_end_offset())
    }

    fn append(&mut self, producer: ProducerId, entry: LogEntry) {
        let offset = self.log_end_offset();
        self.open_first_offsets.entry(producer).or_insert(offset);
        self.entries.push(entry);
    }

    fn end_transaction(&mut self, producer: ProducerId, outcome: Outcome) {
        let first_offset = self
            .open_first_offsets
            .remove(&producer)
            .expect("a transaction ends only in partitions it wrote to");
        let ended = match outcome {
            Outcome::Committed => DataStatus::Committed,
            Outcome::Aborted => DataStatus::Aborted,
        };
        // A producer has one transaction open at a time, so every entry of it from the
        // transaction's first offset on belongs to this transaction.
        for entry in &mut self.entries[first_offset as usize..] {
            if let LogEntry::Data {
                producer: owner,
                status,
                ..
            } = entry
            {
                if *owner == producer {
                    assert_eq!(
                        *status,
                        DataStatus::Pending,
                        "a transaction's records are pending until it ends"
                    );
                    *status = ended;
                }
            }
        }
        self.entries.push(LogEntry::Marker);
    }

    /// The committed data records from `offset` up to the last stable offset, at most
    /// `max_records` of them.
    fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
    ) -> Result<CommittedRead, BrokerError> {
        if offset < 0 || offset > self.log_end_offset() {
            return Err(BrokerError::Fatal(format!(
                "{topic}/{partition}: offset {offset} out of range 0..={}",
                self.log_end_offset()
            )));
        }
        let last_stable_offset = self.last_stable_offset();
        let mut records = Vec::new();
        let mut position = offset;
        while position < last_stable_offset && records.len() < max_records {
            if let LogEntry::Data {
                status,
                key,
                value,
                timestamp_ms,
                ..
            } = &self.entries[position as usize]
            {
                assert_ne!(
                    *status,
                    DataStatus::Pending,
                    "no pending record lies below the LSO"
                );
                if *status == DataStatus::Committed {
                    records.push(BrokerRecord {
                        topic: topic.to_string(),
                        partition,
                        offset: position,
                        timestamp_ms: Some(*timestamp_ms),
                        key: key.clone(),
                        value: Some(value.clone()),
                    });
                }
            }
            position += 1;
        }
        Ok(CommittedRead {
            records,
            next_position: position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            values(&broker.read_committed(TOPIC, 0, 0, 10).await.unwrap())
                .contains(&"n-1".to_string())
        );
        assert!(
            values(&broker.read_committed(TOPIC, 1, 0, 10).await.unwrap())
                .contains(&"n-2".to_string())
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
}
