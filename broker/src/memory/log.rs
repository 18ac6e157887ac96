//! One partition's log: data records and transaction markers at their offsets, and what
//! a `read_committed` reader sees of them (never past the last stable offset).

use std::collections::BTreeMap;

use super::transaction::{Outcome, ProducerId};
use crate::{BrokerError, BrokerRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DataStatus {
    Pending,
    Committed,
    Aborted,
}

#[derive(Debug)]
pub(super) enum LogEntry {
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
pub(super) struct PartitionLog {
    pub(super) entries: Vec<LogEntry>,
    /// The first offset of each transaction open in this partition, by producer.
    pub(super) open_first_offsets: BTreeMap<ProducerId, i64>,
}

/// What one `read_committed` pass found.
pub(super) struct CommittedRead {
    pub(super) records: Vec<BrokerRecord>,
    /// Where the next pass starts: just past the last entry this one looked at.
    pub(super) next_position: i64,
}

impl PartitionLog {
    pub(super) fn log_end_offset(&self) -> i64 {
        self.entries.len() as i64
    }

    pub(super) fn last_stable_offset(&self) -> i64 {
        let first_open = self.open_first_offsets.values().min().copied();
        first_open.unwrap_or_else(|| self.log_end_offset())
    }

    pub(super) fn append(&mut self, producer: ProducerId, entry: LogEntry) {
        let offset = self.log_end_offset();
        self.open_first_offsets.entry(producer).or_insert(offset);
        self.entries.push(entry);
    }

    pub(super) fn end_transaction(&mut self, producer: ProducerId, outcome: Outcome) {
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
    pub(super) fn read_committed(
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
