//! The transaction coordinator and the cluster state behind every handle: topics,
//! producers and their epochs, open transactions, group offsets, injected faults.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use weir_core::seams::Clock;

use super::fault_queue::BrokerCall;
use super::fault_queue::Faults;
use super::log::{DataStatus, LogEntry, PartitionLog};
use super::topics::TopicSettings;
use super::transaction::{Outcome, ProducerId, TransactionSerial, TransactionStatus};
use super::{TOPIC_MESSAGE_BYTES_DEFAULT, WRITER_MESSAGE_BYTES_MAX};
use crate::{BrokerError, OutgoingRecord, SourceOffset};

#[derive(Debug)]
pub(super) struct Cluster {
    pub(super) topics: BTreeMap<String, Vec<PartitionLog>>,
    pub(super) producers: BTreeMap<String, Producer>,
    /// (group, topic, partition) → the next offset to read.
    pub(super) group_offsets: BTreeMap<(String, String, i32), i64>,
    pub(super) next_producer_id: ProducerId,
    pub(super) next_transaction: TransactionSerial,
    pub(super) clock: Option<Arc<dyn Clock>>,
    pub(super) logical_clock_ms: i64,
    pub(super) faults: Faults,
    /// Topics whose `max.message.bytes` differs from [`TOPIC_MESSAGE_BYTES_DEFAULT`].
    pub(super) max_message_bytes: BTreeMap<String, usize>,
    /// The settings topics were created with; a topic missing here has the defaults.
    pub(super) topic_settings: BTreeMap<String, TopicSettings>,
}

/// The transaction coordinator's view of one transactional id.
#[derive(Debug)]
pub(super) struct Producer {
    pub(super) producer_id: ProducerId,
    pub(super) epoch: u32,
    pub(super) open: Option<OpenTransaction>,
    /// How the id's latest transaction ended, for a commit retried after a lost reply.
    pub(super) last_ended: Option<(TransactionSerial, Outcome)>,
}

#[derive(Debug)]
pub(super) struct OpenTransaction {
    pub(super) serial: TransactionSerial,
    /// Every partition the transaction appended to: each gets a marker when it ends.
    pub(super) partitions: BTreeSet<(String, i32)>,
}

impl Cluster {
    pub(super) fn new(clock: Option<Arc<dyn Clock>>) -> Self {
        Cluster {
            topics: BTreeMap::new(),
            producers: BTreeMap::new(),
            group_offsets: BTreeMap::new(),
            next_producer_id: ProducerId::FIRST,
            next_transaction: TransactionSerial::FIRST,
            clock,
            logical_clock_ms: 0,
            faults: Faults::default(),
            max_message_bytes: BTreeMap::new(),
            topic_settings: BTreeMap::new(),
        }
    }

    /// The largest record `topic` accepts from the model's writers.
    pub(super) fn max_record_bytes(&self, topic: &str) -> usize {
        self.max_message_bytes
            .get(topic)
            .copied()
            .unwrap_or(TOPIC_MESSAGE_BYTES_DEFAULT)
            .min(WRITER_MESSAGE_BYTES_MAX)
    }

    pub(super) fn take_fault(&mut self, call: BrokerCall) -> Result<(), BrokerError> {
        match self.faults.take(call) {
            None => Ok(()),
            Some(injected) => Err(injected.error(call)),
        }
    }

    pub(super) fn partition_count(&self, topic: &str) -> Result<u32, BrokerError> {
        let partitions = self
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::UnknownTopic(topic.to_string()))?;
        Ok(partitions.len() as u32)
    }

    pub(super) fn log(&self, topic: &str, partition: i32) -> Result<&PartitionLog, BrokerError> {
        let partitions = self
            .topics
            .get(topic)
            .ok_or_else(|| BrokerError::UnknownTopic(topic.to_string()))?;
        usize::try_from(partition)
            .ok()
            .and_then(|index| partitions.get(index))
            .ok_or_else(|| BrokerError::UnknownTopic(format!("{topic}/{partition}")))
    }

    pub(super) fn log_mut(&mut self, topic: &str, partition: i32) -> &mut PartitionLog {
        let partitions = self
            .topics
            .get_mut(topic)
            .expect("deleting a topic drops it from open transactions, and sends check it exists");
        &mut partitions[partition as usize]
    }

    pub(super) fn producer(&self, transactional_id: &str) -> &Producer {
        self.producers
            .get(transactional_id)
            .expect("a writer's transactional id is registered before the writer exists")
    }

    pub(super) fn producer_mut(&mut self, transactional_id: &str) -> &mut Producer {
        self.producers
            .get_mut(transactional_id)
            .expect("a writer's transactional id is registered before the writer exists")
    }

    /// Registers a new epoch of `transactional_id`, aborting what the previous one left
    /// open, and returns the epoch. Every writer of an older epoch is fenced from now on.
    pub(super) fn fence(&mut self, transactional_id: &str) -> u32 {
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
        self.next_producer_id = producer_id.next();
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

    pub(super) fn open_transaction(&mut self, transactional_id: &str) -> TransactionSerial {
        let serial = self.next_transaction;
        self.next_transaction = serial.next();
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

    pub(super) fn transaction_status(
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
    pub(super) fn append(
        &mut self,
        transactional_id: &str,
        partition: i32,
        record: OutgoingRecord,
    ) {
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

    pub(super) fn stamp(&mut self, given_ms: Option<i64>) -> i64 {
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

    pub(super) fn check_group_offsets(
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
    pub(super) fn end_transaction(
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

    pub(super) fn expire_transaction(&mut self, transactional_id: &str) -> bool {
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
