//! The words of the transaction protocol that the cluster, the logs and the writers
//! share: a producer's id, a transaction's serial number, how it ended, and where it
//! stands.

/// A transaction's number, unique in the cluster, so a writer can tell its own transaction
/// from a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct TransactionSerial(u64);

impl TransactionSerial {
    /// The cluster's first transaction.
    pub(super) const FIRST: TransactionSerial = TransactionSerial(0);

    /// The transaction after this one.
    pub(super) fn next(self) -> TransactionSerial {
        TransactionSerial(self.0 + 1)
    }
}

/// The id the transaction coordinator gives a transactional id; its epochs share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ProducerId(i64);

impl ProducerId {
    /// The first producer id the cluster hands out.
    pub(super) const FIRST: ProducerId = ProducerId(0);

    /// The producer id after this one.
    pub(super) fn next(self) -> ProducerId {
        ProducerId(self.0 + 1)
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Committed,
    Aborted,
}

/// Where a writer's transaction stands at the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TransactionStatus {
    Open,
    Ended(Outcome),
}
