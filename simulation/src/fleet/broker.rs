//! The worker's broker seam in the simulation: the in-memory Kafka model (shared by every
//! process of the run, like a real cluster) behind the worker process's gate.

use super::gate::Gate;
use std::time::Duration;
use weir_broker::memory::{MemoryBroker, MemoryReader, MemoryWriter};
use weir_broker::{
    Broker, BrokerError, BrokerRecord, OutgoingRecord, PartitionReader, SourceOffset,
    TopicDescription, TopicSpec, TransactionalWriter,
};

/// One process's handle on the simulated Kafka cluster.
#[derive(Debug, Clone)]
pub struct GatedBroker {
    inner: MemoryBroker,
    gate: Gate,
}

impl GatedBroker {
    /// `inner` as seen by the process behind `gate`.
    pub fn new(inner: MemoryBroker, gate: Gate) -> Self {
        GatedBroker { inner, gate }
    }
}

/// A reader behind its process's gate.
pub struct GatedReader {
    inner: MemoryReader,
    gate: Gate,
}

/// A transactional writer behind its process's gate.
pub struct GatedWriter {
    inner: MemoryWriter,
    gate: Gate,
}

impl PartitionReader for GatedReader {
    async fn poll_batch(
        &mut self,
        max_records: usize,
        wait: Duration,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        self.gate.pass().await;
        let batch = self.inner.poll_batch(max_records, wait).await;
        self.gate.pass().await;
        batch
    }

    fn position(&self) -> i64 {
        self.inner.position()
    }

    fn high_watermark(&self) -> Option<i64> {
        self.inner.high_watermark()
    }
}

impl TransactionalWriter for GatedWriter {
    fn begin(&mut self) -> Result<(), BrokerError> {
        self.inner.begin()
    }

    async fn send(&mut self, record: OutgoingRecord) -> Result<(), BrokerError> {
        self.gate.pass().await;
        let sent = self.inner.send(record).await;
        self.gate.pass().await;
        sent
    }

    async fn commit(&mut self, group: &str, offsets: &[SourceOffset]) -> Result<(), BrokerError> {
        self.gate.pass().await;
        let committed = self.inner.commit(group, offsets).await;
        self.gate.pass().await;
        committed
    }

    async fn abort(&mut self) -> Result<(), BrokerError> {
        self.gate.pass().await;
        let aborted = self.inner.abort().await;
        self.gate.pass().await;
        aborted
    }
}

impl Broker for GatedBroker {
    type Reader = GatedReader;
    type Writer = GatedWriter;

    async fn partition_count(&self, topic: &str) -> Result<u32, BrokerError> {
        self.gate.pass().await;
        let n = self.inner.partition_count(topic).await;
        self.gate.pass().await;
        n
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), BrokerError> {
        self.gate.pass().await;
        let created = self.inner.create_topic(topic, partitions).await;
        self.gate.pass().await;
        created
    }

    async fn create_topic_with(&self, spec: &TopicSpec) -> Result<bool, BrokerError> {
        self.gate.pass().await;
        let created = self.inner.create_topic_with(spec).await;
        self.gate.pass().await;
        created
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, BrokerError> {
        self.gate.pass().await;
        let described = self.inner.describe_topic(topic).await;
        self.gate.pass().await;
        described
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), BrokerError> {
        self.gate.pass().await;
        let deleted = self.inner.delete_topic(topic).await;
        self.gate.pass().await;
        deleted
    }

    async fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, BrokerError> {
        self.gate.pass().await;
        let offset = self.inner.committed_offset(group, topic, partition).await;
        self.gate.pass().await;
        offset
    }

    async fn reader(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<GatedReader, BrokerError> {
        self.gate.pass().await;
        let inner = self.inner.reader(topic, partition, offset).await;
        self.gate.pass().await;
        Ok(GatedReader {
            inner: inner?,
            gate: self.gate.clone(),
        })
    }

    async fn writer(&self, transactional_id: &str) -> Result<GatedWriter, BrokerError> {
        self.gate.pass().await;
        let inner = self.inner.writer(transactional_id).await;
        self.gate.pass().await;
        Ok(GatedWriter {
            inner: inner?,
            gate: self.gate.clone(),
        })
    }

    async fn max_record_bytes(&self, topic: &str) -> Result<usize, BrokerError> {
        self.gate.pass().await;
        let bytes = self.inner.max_record_bytes(topic).await;
        self.gate.pass().await;
        bytes
    }

    async fn partition_settled(&self, topic: &str, partition: i32) -> Result<bool, BrokerError> {
        self.gate.pass().await;
        let settled = self.inner.partition_settled(topic, partition).await;
        self.gate.pass().await;
        settled
    }

    async fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
    ) -> Result<Vec<BrokerRecord>, BrokerError> {
        self.gate.pass().await;
        let records = self
            .inner
            .read_committed(topic, partition, offset, max_records)
            .await;
        self.gate.pass().await;
        records
    }
}
