//! Fault injection: the handle through which the simulation and the tests make calls fail,
//! cut the cluster off, expire transactions and group offsets, and lose commit replies.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use super::cluster::Cluster;
use super::{lock, MAX_PENDING_FAULTS_PER_CALL};
use crate::BrokerError;

/// A kind of broker call, to aim injected failures at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BrokerCall {
    /// [`Broker::partition_count`](crate::Broker::partition_count).
    PartitionCount,
    /// [`Broker::create_topic`](crate::Broker::create_topic).
    CreateTopic,
    /// [`Broker::committed_offset`](crate::Broker::committed_offset).
    CommittedOffset,
    /// [`Broker::reader`](crate::Broker::reader).
    Reader,
    /// [`Broker::writer`](crate::Broker::writer): a failed call neither bumps the epoch nor fences
    /// anyone.
    Writer,
    /// [`Broker::read_committed`](crate::Broker::read_committed).
    ReadCommitted,
    /// [`PartitionReader::poll_batch`](crate::PartitionReader::poll_batch): a failed poll leaves
    /// the position where it was.
    Poll,
    /// [`TransactionalWriter::begin`](crate::TransactionalWriter::begin).
    Begin,
    /// [`TransactionalWriter::send`](crate::TransactionalWriter::send). `Unavailable` leaves the
    /// record out and the transaction usable (like a full local queue); `Timeout` leaves the record
    /// out and the transaction must be aborted, as after a delivery timeout in librdkafka.
    Send,
    /// [`TransactionalWriter::commit`](crate::TransactionalWriter::commit). `Unavailable` changes
    /// nothing. `Timeout` commits nothing, but the writer then accepts only a retried `commit`
    /// (which completes it), as librdkafka does after a commit times out.
    Commit,
    /// [`TransactionalWriter::abort`](crate::TransactionalWriter::abort). `Unavailable` changes
    /// nothing; `Timeout` aborts nothing, and the writer then accepts only a retried `abort`.
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

/// The fault-injection handle of a [`MemoryBroker`](super::MemoryBroker), shared with it. Every
/// fault is applied when the caller says so; the model holds no randomness of its own.
#[derive(Clone)]
pub struct MemoryBrokerFaults {
    pub(super) cluster: Arc<Mutex<Cluster>>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Injected {
    Unavailable,
    Timeout,
    /// Only ever queued for commits.
    TimeoutAfterCommit,
}

impl Injected {
    pub(super) fn error(self, call: BrokerCall) -> BrokerError {
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
pub(super) struct Faults {
    pub(super) unreachable: bool,
    pub(super) pending: BTreeMap<BrokerCall, VecDeque<Injected>>,
}

impl Faults {
    pub(super) fn push(&mut self, call: BrokerCall, count: usize, injected: Injected) {
        let queue = self.pending.entry(call).or_default();
        assert!(
            queue.len().saturating_add(count) <= MAX_PENDING_FAULTS_PER_CALL,
            "at most {MAX_PENDING_FAULTS_PER_CALL} injected failures may wait for {call:?}"
        );
        queue.extend(std::iter::repeat_n(injected, count));
    }

    pub(super) fn take(&mut self, call: BrokerCall) -> Option<Injected> {
        if self.unreachable {
            return Some(Injected::Unavailable);
        }
        self.pending.get_mut(&call)?.pop_front()
    }
}
