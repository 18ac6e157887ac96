//! The injected failures waiting for the calls they are aimed at, held by the cluster and
//! taken by each call before it does anything; the kinds of call and failure a test or the
//! simulation names when injecting them.

use std::collections::{BTreeMap, VecDeque};

use super::MAX_PENDING_FAULTS_PER_CALL;
use crate::BrokerError;

/// A kind of broker call, to aim injected failures at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BrokerCall {
    /// [`Broker::partition_count`](crate::Broker::partition_count).
    PartitionCount,
    /// [`Broker::create_topic`](crate::Broker::create_topic) and
    /// [`Broker::create_topic_with`](crate::Broker::create_topic_with): a failed call creates
    /// nothing.
    CreateTopic,
    /// [`Broker::describe_topic`](crate::Broker::describe_topic).
    DescribeTopic,
    /// [`Broker::delete_topic`](crate::Broker::delete_topic): a failed call deletes nothing.
    DeleteTopic,
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
    /// [`crate::BrokerError::Timeout`].
    Timeout,
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
