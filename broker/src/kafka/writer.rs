//! [`KafkaWriter`]: a transactional, idempotent producer for one `transactional.id`, its
//! transaction held in one typed [`WriterState`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::classify::{classify, partitions_of};
use super::config::{
    group_config, producer_config, KafkaSettings, METADATA_TIMEOUT, TRANSACTION_CALL_TIMEOUT,
    WRITER_DELIVERIES_PENDING_MAX, WRITER_GROUP_CLIENTS_MAX, WRITER_QUEUE_FULL_RETRY_INTERVAL,
    WRITER_QUEUE_FULL_WAIT,
};
use super::delivery::{DeliveryTracker, WriterContext, WriterProducer};
use super::offload::{blocking, drop_off_thread};
use crate::memory::partition_for_key;
use crate::{BrokerError, OutgoingRecord, SourceOffset, TransactionalWriter};

/// The writer's side of the transaction protocol: the in-memory writer's states, as far as
/// librdkafka has them, and two of the rdkafka client's own. A timed-out commit or abort
/// leaves the transaction `Open` (or `MustAbort`): librdkafka lets either call be retried,
/// and the commit's retry skips offsets already sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WriterState {
    /// No transaction: only `begin` is valid. `aborted_reports`: the last transaction was
    /// aborted and the failures its purged records reported are not forgotten yet (the
    /// abort's wait for them was cancelled; `begin` finishes it).
    Ready { aborted_reports: bool },
    /// In a transaction: `send`, `commit`, `abort`. `offsets_sent`:
    /// `send_offsets_to_transaction` succeeded in it, so a commit retried after a timeout
    /// must not send them again.
    Open { offsets_sent: bool },
    /// The open transaction failed (librdkafka's abortable state): `send` and `commit`
    /// return AbortRequired; only `abort`.
    MustAbort,
    /// A blocking call is running. Seen by a later call only when the call's future was
    /// dropped, leaving its outcome unknown: every call fails; rebuild the writer.
    InFlight,
    /// Fenced or fatally failed: every call returns this error; rebuild the writer.
    Broken(BrokerError),
}

impl WriterState {
    /// A transaction is open, failed or not: `abort` is valid.
    fn in_transaction(&self) -> bool {
        matches!(self, WriterState::Open { .. } | WriterState::MustAbort)
    }

    /// The open transaction can only be aborted now. Outside a transaction there is
    /// nothing to doom: a failure reported then belongs to an aborted transaction.
    fn doom(&mut self) {
        if let WriterState::Open { .. } = self {
            *self = WriterState::MustAbort;
        }
    }
}

/// A transactional producer for one `transactional.id`. Dropping it with a transaction
/// open leaves that transaction to the next writer of the id (whose creation aborts it) or
/// to the coordinator's transaction timeout, as a crash would.
pub struct KafkaWriter {
    transactional_id: String,
    bootstrap_servers: String,
    /// `None` only while dropping (the producer is destroyed off the runtime thread).
    producer: Option<WriterProducer>,
    /// Delivery reports of enqueued records, shared with the producer's context.
    tracker: Arc<DeliveryTracker>,
    state: WriterState,
    partition_counts: BTreeMap<String, u32>,
    /// Round-robin position for records with neither key nor partition (one counter for
    /// all topics, as in the memory model).
    keyless_sent: u32,
    /// Clients whose consumer group metadata `send_offsets_to_transaction` needs.
    group_clients: BTreeMap<String, Arc<BaseConsumer>>,
}

impl KafkaWriter {
    pub(super) async fn start(
        settings: &KafkaSettings,
        transactional_id: &str,
    ) -> Result<Self, BrokerError> {
        if transactional_id.is_empty() {
            // librdkafka would make a non-transactional producer of it.
            return Err(BrokerError::Fatal("empty transactional id".to_string()));
        }
        let tracker = Arc::new(DeliveryTracker::default());
        let context = WriterContext {
            tracker: tracker.clone(),
        };
        let producer: WriterProducer = producer_config(settings, transactional_id)
            .create_with_context(context)
            .map_err(|e| classify("creating a producer", &e, None))?;
        let mut writer = Self {
            transactional_id: transactional_id.to_string(),
            bootstrap_servers: settings.bootstrap_servers.clone(),
            producer: Some(producer),
            tracker,
            state: WriterState::Ready {
                aborted_reports: false,
            },
            partition_counts: BTreeMap::new(),
            keyless_sent: 0,
            group_clients: BTreeMap::new(),
        };
        // Fences every older producer with this id and aborts what it left open; the
        // broker answers only once that abort is complete.
        writer
            .transactional_call("init_transactions", |p| {
                p.init_transactions(TRANSACTION_CALL_TIMEOUT)
            })
            .await?;
        Ok(writer)
    }

    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Waits until every record sent so far is in the broker's log (not yet visible to
    /// `read_committed` readers: that takes the commit). `commit` does this itself.
    pub async fn await_deliveries(&mut self) -> Result<(), BrokerError> {
        self.usable()?;
        self.wait_for_deliveries(0).await
    }

    fn producer(&self) -> &WriterProducer {
        self.producer
            .as_ref()
            .expect("the producer is taken only on drop")
    }

    fn usable(&self) -> Result<(), BrokerError> {
        match &self.state {
            WriterState::Broken(err) => Err(err.clone()),
            WriterState::InFlight => Err(BrokerError::Fatal(format!(
                "writer {}: an earlier call was cancelled while the broker worked on it",
                self.transactional_id
            ))),
            _ => Ok(()),
        }
    }

    /// Passes a result through, remembering what it means for later calls: fenced and
    /// fatal errors stick; after AbortRequired only `abort` can follow.
    fn settle<T>(&mut self, result: Result<T, BrokerError>) -> Result<T, BrokerError> {
        match &result {
            Err(err @ (BrokerError::Fenced(_) | BrokerError::Fatal(_))) => {
                self.state = WriterState::Broken(err.clone());
            }
            Err(BrokerError::AbortRequired(_)) => self.state.doom(),
            _ => {}
        }
        result
    }

    fn map_error(&self, what: &str, err: &KafkaError) -> BrokerError {
        classify(what, err, self.producer().client().fatal_error())
    }

    /// Runs one of librdkafka's blocking transactional calls on the blocking pool.
    async fn transactional_call<F>(
        &mut self,
        what: &'static str,
        call: F,
    ) -> Result<(), BrokerError>
    where
        F: FnOnce(&WriterProducer) -> rdkafka::error::KafkaResult<()> + Send + 'static,
    {
        let producer = self.producer().clone();
        let before = std::mem::replace(&mut self.state, WriterState::InFlight);
        let result = blocking(move || {
            call(&producer).map_err(|e| {
                let requires_abort =
                    matches!(&e, KafkaError::Transaction(rd) if rd.txn_requires_abort());
                (
                    classify(what, &e, producer.client().fatal_error()),
                    requires_abort,
                )
            })
        })
        .await;
        // Reached only if this future was not dropped: the call is over.
        self.state = before;
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err((err, requires_abort))) => {
                if requires_abort {
                    self.state.doom();
                }
                Err(err)
            }
            Err(err) => Err(err),
        };
        self.settle(result)
    }

    fn abort_required(&self) -> BrokerError {
        BrokerError::AbortRequired(format!(
            "writer {}: the transaction failed and must be aborted",
            self.transactional_id
        ))
    }

    /// The first failed delivery, if any: in a transaction any failed delivery means the
    /// transaction cannot commit (librdkafka has put it in the abortable state).
    fn check_deliveries(&mut self) -> Result<(), BrokerError> {
        let Some(err) = self.tracker.failure() else {
            return Ok(());
        };
        let result = match self.map_error("delivering a record", &err) {
            fatal @ (BrokerError::Fenced(_) | BrokerError::Fatal(_)) => Err(fatal),
            other => Err(BrokerError::AbortRequired(format!(
                "writer {}: a record was not delivered: {other}",
                self.transactional_id
            ))),
        };
        self.settle(result)
    }

    /// Waits until at most `max_pending` records await their delivery report; returns
    /// early with the first failed delivery. Every report arrives within the delivery
    /// timeout (`message.timeout.ms`), delivered or not.
    async fn wait_for_deliveries(&mut self, max_pending: usize) -> Result<(), BrokerError> {
        self.check_deliveries()?;
        if self.tracker.pending() > max_pending {
            self.tracker
                .wait_until(true, |t| t.pending() <= max_pending)
                .await;
        }
        self.check_deliveries()
    }

    /// The partition count of `topic`, checking that `partition` (if any) is one of its
    /// partitions. Counts are cached; a partition past the cached count refetches them
    /// (partitions can be added to a topic).
    async fn partition_count(
        &mut self,
        topic: &str,
        partition: Option<i32>,
    ) -> Result<u32, BrokerError> {
        if partition.is_some_and(|p| p < 0) {
            return Err(BrokerError::UnknownTopic(format!("{topic}/{partition:?}")));
        }
        let within = |count: u32| partition.is_none_or(|p| (p as u32) < count);
        if let Some(count) = self.partition_counts.get(topic) {
            if within(*count) {
                return Ok(*count);
            }
        }
        let producer = self.producer().clone();
        let topic_owned = topic.to_string();
        let metadata = blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic_owned), METADATA_TIMEOUT)
        })
        .await?
        .map_err(|e| classify("fetching topic metadata", &e, None))?;
        let count = partitions_of(&metadata, topic)?.0;
        self.partition_counts.insert(topic.to_string(), count);
        if !within(count) {
            return Err(BrokerError::UnknownTopic(format!(
                "{topic}/{} (the topic has {count} partitions)",
                partition.unwrap_or_default()
            )));
        }
        Ok(count)
    }

    async fn choose_partition(&mut self, record: &OutgoingRecord) -> Result<i32, BrokerError> {
        let count = self
            .partition_count(&record.topic, record.partition)
            .await?;
        if let Some(partition) = record.partition {
            return Ok(partition);
        }
        Ok(match &record.key {
            Some(key) => partition_for_key(key, count),
            None => {
                let partition = self.keyless_sent % count;
                self.keyless_sent = self.keyless_sent.wrapping_add(1);
                partition as i32
            }
        })
    }

    fn group_client(&mut self, group: &str) -> Result<Arc<BaseConsumer>, BrokerError> {
        if let Some(client) = self.group_clients.get(group) {
            return Ok(client.clone());
        }
        let client: BaseConsumer = group_config(&self.bootstrap_servers, group)
            .create()
            .map_err(|e| classify("creating a group client", &e, None))?;
        let client = Arc::new(client);
        if self.group_clients.len() >= WRITER_GROUP_CLIENTS_MAX {
            if let Some((_, evicted)) = self.group_clients.pop_first() {
                drop_off_thread(evicted);
            }
        }
        self.group_clients.insert(group.to_string(), client.clone());
        Ok(client)
    }

    async fn commit_open(
        &mut self,
        group: &str,
        offsets: &[SourceOffset],
    ) -> Result<(), BrokerError> {
        // commit_transaction flushes and fails on a failed delivery by itself; waiting here
        // first reports a failed delivery with its own error (and without blocking a thread).
        self.wait_for_deliveries(0).await?;
        let offsets_sent = matches!(self.state, WriterState::Open { offsets_sent: true });
        if !offsets.is_empty() && !offsets_sent {
            let mut tpl = TopicPartitionList::new();
            for offset in offsets {
                tpl.add_partition_offset(
                    &offset.topic,
                    offset.partition,
                    Offset::Offset(offset.next_offset),
                )
                .map_err(|e| classify("listing offsets", &e, None))?;
            }
            let client = self.group_client(group)?;
            // A consumer that never joins the group has generation -1 and no member id;
            // the coordinator accepts transactional offset commits from such a "simple"
            // client, and fencing comes from the transactional id instead.
            let metadata = client.group_metadata().ok_or_else(|| {
                BrokerError::Fatal(format!("no consumer group metadata for {group}"))
            })?;
            self.transactional_call("send_offsets_to_transaction", move |p| {
                // Serve the group client's queued events (errors, logs) so none pile up.
                let _ = client.poll(Duration::ZERO);
                p.send_offsets_to_transaction(&tpl, &metadata, TRANSACTION_CALL_TIMEOUT)
            })
            .await?;
            self.state = WriterState::Open { offsets_sent: true };
        }
        self.transactional_call("commit_transaction", |p| {
            p.commit_transaction(TRANSACTION_CALL_TIMEOUT)
        })
        .await
    }
}

impl TransactionalWriter for KafkaWriter {
    fn begin(&mut self) -> Result<(), BrokerError> {
        self.usable()?;
        let WriterState::Ready { aborted_reports } = self.state else {
            return Err(BrokerError::Fatal(format!(
                "writer {}: begin while a transaction is open",
                self.transactional_id
            )));
        };
        if aborted_reports {
            if self.tracker.pending() > 0 {
                return Err(BrokerError::Timeout(format!(
                    "writer {}: delivery reports of the aborted transaction are still arriving",
                    self.transactional_id
                )));
            }
            self.tracker.reset_failure();
            self.state = WriterState::Ready {
                aborted_reports: false,
            };
        }
        // Local to librdkafka: no request, no blocking.
        let result = self
            .producer()
            .begin_transaction()
            .map_err(|e| self.map_error("begin_transaction", &e));
        self.settle(result)?;
        self.state = WriterState::Open {
            offsets_sent: false,
        };
        Ok(())
    }

    async fn send(&mut self, record: OutgoingRecord) -> Result<(), BrokerError> {
        self.usable()?;
        match self.state {
            WriterState::Open { .. } => {}
            WriterState::MustAbort => return Err(self.abort_required()),
            _ => {
                return Err(BrokerError::Fatal(format!(
                    "writer {}: send outside a transaction",
                    self.transactional_id
                )))
            }
        }
        // Every await below happens before the record is enqueued, so a cancelled send
        // has enqueued nothing.
        //
        // Check earlier deliveries before adding more: the pending reports stay bounded,
        // and an earlier failure surfaces here rather than only at commit.
        self.wait_for_deliveries(WRITER_DELIVERIES_PENDING_MAX - 1)
            .await?;
        let partition = self.choose_partition(&record).await?;
        // Read the clock only once the queue is full: not once per record.
        let mut give_up_at = None;
        loop {
            let mut base_record = BaseRecord::<[u8], [u8]>::to(&record.topic)
                .partition(partition)
                .payload(record.value.as_slice());
            if let Some(key) = &record.key {
                base_record = base_record.key(key.as_slice());
            }
            if let Some(timestamp_ms) = record.timestamp_ms {
                base_record = base_record.timestamp(timestamp_ms);
            }
            // Counted before the enqueue: its report may arrive before `send` returns.
            self.tracker.pending.fetch_add(1, Ordering::AcqRel);
            let sent = self.producer().send(base_record);
            if sent.is_err() {
                self.tracker.pending.fetch_sub(1, Ordering::AcqRel);
            }
            match sent {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    let now = tokio::time::Instant::now();
                    if now >= *give_up_at.get_or_insert(now + WRITER_QUEUE_FULL_WAIT) {
                        return Err(BrokerError::Timeout(format!(
                            "writer {}: the producer queue stayed full for {WRITER_QUEUE_FULL_WAIT:?}",
                            self.transactional_id
                        )));
                    }
                    // Retry once a report frees queue space (or after the interval, if
                    // none of ours is pending).
                    let pending = self.tracker.pending();
                    let _ = tokio::time::timeout(
                        WRITER_QUEUE_FULL_RETRY_INTERVAL,
                        self.tracker.wait_until(true, |t| t.pending() < pending),
                    )
                    .await;
                    self.check_deliveries()?;
                }
                Err((err, _)) => {
                    let mapped = self.map_error("enqueueing a record", &err);
                    return self.settle(Err(mapped));
                }
            }
        }
    }

    async fn commit(&mut self, group: &str, offsets: &[SourceOffset]) -> Result<(), BrokerError> {
        self.usable()?;
        match self.state {
            WriterState::Open { .. } => {}
            WriterState::MustAbort => return Err(self.abort_required()),
            _ => {
                return Err(BrokerError::Fatal(format!(
                    "writer {}: commit without an open transaction",
                    self.transactional_id
                )))
            }
        }
        // librdkafka skips negative offsets silently; a negative offset here is a bug.
        if let Some(bad) = offsets.iter().find(|o| o.next_offset < 0) {
            return Err(BrokerError::Fatal(format!(
                "writer {}: negative offset to commit: {bad:?}",
                self.transactional_id
            )));
        }
        if group.is_empty() && !offsets.is_empty() {
            return Err(BrokerError::Fatal(format!(
                "writer {}: offsets to commit for an empty group id",
                self.transactional_id
            )));
        }
        // librdkafka retries offsets of an unknown partition until its call times out, and
        // the transaction can then only be aborted: check them first (cached metadata).
        for offset in offsets {
            match self
                .partition_count(&offset.topic, Some(offset.partition))
                .await
            {
                Ok(_) => {}
                Err(err @ BrokerError::UnknownTopic(_)) => {
                    self.state.doom();
                    return Err(err);
                }
                Err(err) => return self.settle(Err(err)),
            }
        }
        // On an error the transaction stays open: after Timeout the commit may be retried
        // (or the transaction aborted); after AbortRequired it must be aborted.
        self.commit_open(group, offsets).await?;
        self.state = WriterState::Ready {
            aborted_reports: false,
        };
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), BrokerError> {
        self.usable()?;
        if !self.state.in_transaction() {
            return Err(BrokerError::Fatal(format!(
                "writer {}: abort without an open transaction",
                self.transactional_id
            )));
        }
        // abort_transaction purges whatever is still queued and returns once every record's
        // report is out; those reports (failures included) no longer matter.
        self.transactional_call("abort_transaction", |p| {
            p.abort_transaction(TRANSACTION_CALL_TIMEOUT)
        })
        .await?;
        // The polling thread may still be running the last reports' callbacks: wait for
        // them, so none of them counts against the next transaction (`begin` finishes
        // this if the wait is cancelled).
        self.state = WriterState::Ready {
            aborted_reports: true,
        };
        let drained = tokio::time::timeout(
            TRANSACTION_CALL_TIMEOUT,
            self.tracker.wait_until(false, |t| t.pending() == 0),
        )
        .await;
        if drained.is_err() {
            let err = BrokerError::Fatal(format!(
                "writer {}: {} delivery reports still missing {TRANSACTION_CALL_TIMEOUT:?} after the abort",
                self.transactional_id,
                self.tracker.pending()
            ));
            return self.settle(Err(err));
        }
        self.tracker.reset_failure();
        self.state = WriterState::Ready {
            aborted_reports: false,
        };
        Ok(())
    }
}

impl std::fmt::Debug for KafkaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaWriter")
            .field("transactional_id", &self.transactional_id)
            .field("state", &self.state)
            .field("deliveries_pending", &self.tracker.pending())
            .finish_non_exhaustive()
    }
}

impl Drop for KafkaWriter {
    fn drop(&mut self) {
        // Destroying a producer purges, flushes for up to 500 ms and joins librdkafka's
        // threads: keep that off the caller's runtime thread.
        if let Some(producer) = self.producer.take() {
            drop_off_thread(producer);
        }
        for (_, client) in std::mem::take(&mut self.group_clients) {
            drop_off_thread(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_transaction_is_doomed() {
        let mut open = WriterState::Open { offsets_sent: true };
        assert!(open.in_transaction());
        open.doom();
        assert_eq!(open, WriterState::MustAbort);
        assert!(open.in_transaction());
        for mut state in [
            WriterState::Ready {
                aborted_reports: true,
            },
            WriterState::InFlight,
            WriterState::Broken(BrokerError::Fatal("x".into())),
        ] {
            let before = state.clone();
            state.doom();
            assert_eq!(state, before);
            assert!(!state.in_transaction());
        }
    }
}
