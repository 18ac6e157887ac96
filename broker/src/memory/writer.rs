//! [`MemoryWriter`]: a transactional producer of the model, its side of the transaction
//! protocol one typed [`WriterState`], as librdkafka's state machine has it.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::cluster::Cluster;
use super::fault_queue::{BrokerCall, Injected};
use super::transaction::{Outcome, TransactionSerial, TransactionStatus};
use super::{lock, partition_for_key, RECORD_FRAMING_BYTES};
use crate::{BrokerError, OutgoingRecord, SourceOffset, TransactionalWriter};

/// A transactional producer of a [`MemoryBroker`](super::MemoryBroker), for one transactional id
/// and epoch.
pub struct MemoryWriter {
    pub(super) cluster: Arc<Mutex<Cluster>>,
    pub(super) transactional_id: String,
    pub(super) producer_epoch: u32,
    pub(super) state: WriterState,
    /// Round-robin position for records with neither key nor partition.
    pub(super) keyless_sent: u32,
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

fn abort_required(transactional_id: &str) -> BrokerError {
    BrokerError::AbortRequired(format!(
        "transactional id {transactional_id:?}: the transaction failed or was aborted by the broker"
    ))
}

/// The writer's side of the transaction protocol, as librdkafka's state machine has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriterState {
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
    pub(super) fn describe(self) -> &'static str {
        match self {
            WriterState::Ready => "no transaction is open",
            WriterState::Open(_) => "a transaction is open",
            WriterState::MustAbort(_) => "the transaction must be aborted",
            WriterState::Committing(_) => "a timed-out commit is in progress",
            WriterState::Aborting(_) => "a timed-out abort is in progress",
        }
    }
}
