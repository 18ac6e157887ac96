//! Fault injection: the handle through which the simulation and the tests make calls fail,
//! cut the cluster off, expire transactions and group offsets, and lose commit replies.
//! The injected failures wait in the cluster's queue (`fault_queue.rs`).

use std::fmt;
use std::sync::{Arc, Mutex};

use super::cluster::Cluster;
use super::fault_queue::{BrokerCall, Faults, Injected, InjectedFailure};
use super::lock;

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
    /// return [`crate::BrokerError::Timeout`], as when the broker's reply is lost: the outcome is
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
    /// writer's next `send` or `commit` returns [`crate::BrokerError::AbortRequired`]. Returns
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
