//! [`MemoryReader`]: a `read_committed` reader of one partition of the model.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cluster::Cluster;
use super::fault_queue::BrokerCall;
use super::lock;
use crate::{BrokerError, BrokerRecord, PartitionReader};

/// A `read_committed` reader of one partition of a [`MemoryBroker`](super::MemoryBroker).
pub struct MemoryReader {
    pub(super) cluster: Arc<Mutex<Cluster>>,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) position: i64,
    pub(super) high_watermark: Option<i64>,
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
