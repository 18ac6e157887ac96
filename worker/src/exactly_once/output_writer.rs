//! Writes a batch's results and dead letters into the open transaction, so that no single
//! record can stall its partition: a result larger than the sink topic accepts becomes an
//! `output_too_large` dead letter, and a dead letter is cut to fit the dead-letter topic's
//! limit (and cut further if the broker still refuses it).

use super::{PartitionError, DEAD_LETTER_FALLBACK_BYTES};
use crate::operators::shuffled::encode_watermark;
use crate::operators::{DeadLetter, DeadLetterReason, Outputs};
use weir_broker::{BrokerError, OutgoingRecord, TransactionalWriter};
use weir_core::bugs::{planted, PlantedBug};
use weir_core::ids::{JobId, PartitionId};
use weir_core::routing::partition_for_key;

/// Where one partition's results and dead letters go, and how large each may be.
#[derive(Debug, Clone)]
pub struct OutputTargets {
    pub job: JobId,
    pub partition: PartitionId,
    /// The source topic, named in dead letters.
    pub source_topic: String,
    pub sink_topic: String,
    pub dead_letter_topic: String,
    /// Where keyless outputs go; keyed ones are placed by their key.
    pub sink_partition: i32,
    /// Where this partition's dead letters go.
    pub dead_letter_partition: i32,
    /// Largest key plus value the sink topic accepts; a larger result is dead-lettered.
    pub sink_record_max: usize,
    /// Largest dead letter the dead-letter topic accepts; larger ones are cut to fit.
    pub dead_letter_max: usize,
    /// Upstream of a shuffle: keyed records go to the partition of this many that Kafka's
    /// keyed partitioner gives their key, whatever the producer would choose.
    pub route_by_key: Option<u32>,
    /// Upstream of a shuffle: the watermark markers this task sends.
    pub markers: Option<Markers>,
    /// The spec's routes' topics, in order: a result with route `i` goes to `routes[i - 1]`.
    pub routes: Vec<RouteTarget>,
}

/// Where one route's results go, and how large each may be.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub topic: String,
    /// Where keyless results go; keyed ones are placed by their key.
    pub partition: i32,
    /// Largest key plus value the topic accepts; a larger result is dead-lettered.
    pub record_max: usize,
}

/// The watermark markers an upstream task writes to every partition of the repartition
/// topic, in its transaction, after the events they cover.
#[derive(Debug, Clone)]
pub struct Markers {
    pub topic: String,
    pub partitions: u32,
    /// The upstream task's index: its source partition.
    pub upstream: u32,
    /// The watermark last sent in a transaction that committed or is open.
    pub last_sent_ms: Option<i64>,
}

/// How many results and dead letters a batch wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub records: u64,
    pub dead_letters: u64,
}

impl OutputTargets {
    /// Sends `outputs` (emptied) through `writer`: results first, then dead letters.
    pub async fn write<W: TransactionalWriter>(
        &self,
        writer: &mut W,
        outputs: &mut Outputs,
    ) -> Result<Written, PartitionError> {
        let mut written = Written {
            records: outputs.records.len() as u64,
            dead_letters: outputs.dead_letters.len() as u64,
        };
        for r in std::mem::take(&mut outputs.records) {
            let size = r.key.as_ref().map_or(0, String::len) + r.value.len();
            let (topic, keyless_partition, record_max) = match r.route {
                0 => (&self.sink_topic, self.sink_partition, self.sink_record_max),
                route => match self.routes.get(usize::from(route) - 1) {
                    Some(target) => (&target.topic, target.partition, target.record_max),
                    None => {
                        debug_assert!(false, "route {route} of {} routes", self.routes.len());
                        (&self.sink_topic, self.sink_partition, self.sink_record_max)
                    }
                },
            };
            if size > record_max {
                let letter =
                    self.output_too_large(topic, record_max, size, r.source_offset, Some(r.value));
                outputs.dead_letters.push(letter);
                written.records -= 1;
                written.dead_letters += 1;
                continue;
            }
            let partition = match (&r.key, self.route_by_key) {
                (None, _) => Some(keyless_partition),
                (Some(_), Some(n)) if planted(PlantedBug::ShuffleByTask) => {
                    Some(self.partition.0 as i32 % n as i32)
                }
                (Some(key), Some(n)) => Some(partition_for_key(key.as_bytes(), n) as i32),
                (Some(_), None) => None,
            };
            let record = OutgoingRecord {
                topic: topic.clone(),
                partition,
                key: r.key.map(String::into_bytes),
                value: r.value,
                timestamp_ms: None,
            };
            match writer.send(record).await {
                Ok(()) => {}
                // The broker's limit is below what it said (the record moved into the
                // refused send, so the letter goes without it; its size is in the detail).
                Err(BrokerError::RecordTooLarge(e)) => {
                    tracing::warn!(job = %self.job, partition = %self.partition, error = %e, "a result the sink refused as too large goes to the dead-letter topic");
                    let letter =
                        self.output_too_large(topic, record_max, size, r.source_offset, None);
                    outputs.dead_letters.push(letter);
                    written.records -= 1;
                    written.dead_letters += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        for letter in std::mem::take(&mut outputs.dead_letters) {
            if letter.reason == DeadLetterReason::ExpressionError
                && planted(PlantedBug::DropDeadLetter)
            {
                continue;
            }
            self.send_dead_letter(writer, &letter).await?;
        }
        Ok(written)
    }

    /// Upstream of a shuffle: sends `watermark_ms` to every repartition partition, unless
    /// it was sent already. Call after the events it covers are written.
    pub async fn write_markers<W: TransactionalWriter>(
        &mut self,
        writer: &mut W,
        watermark_ms: Option<i64>,
    ) -> Result<(), PartitionError> {
        let (Some(markers), Some(watermark_ms)) = (self.markers.as_mut(), watermark_ms) else {
            return Ok(());
        };
        if markers.last_sent_ms == Some(watermark_ms) {
            return Ok(());
        }
        debug_assert!(markers.last_sent_ms.is_none_or(|sent| sent < watermark_ms));
        for partition in 0..markers.partitions {
            let record = OutgoingRecord {
                topic: markers.topic.clone(),
                partition: Some(partition as i32),
                key: None,
                value: encode_watermark(markers.upstream, watermark_ms),
                timestamp_ms: None,
            };
            writer.send(record).await?;
        }
        markers.last_sent_ms = Some(watermark_ms);
        Ok(())
    }

    /// Sends one dead letter cut to the topic's limit, cut further once if refused.
    async fn send_dead_letter<W: TransactionalWriter>(
        &self,
        writer: &mut W,
        letter: &DeadLetter,
    ) -> Result<(), PartitionError> {
        let mut cut_to = self.dead_letter_max;
        loop {
            let record = OutgoingRecord {
                topic: self.dead_letter_topic.clone(),
                partition: Some(self.dead_letter_partition),
                key: None,
                value: letter.to_json_within(cut_to),
                timestamp_ms: None,
            };
            match writer.send(record).await {
                Ok(()) => return Ok(()),
                Err(BrokerError::RecordTooLarge(e)) if cut_to > DEAD_LETTER_FALLBACK_BYTES => {
                    tracing::warn!(job = %self.job, partition = %self.partition, error = %e, "a dead letter cut to the topic's limit was refused; cutting it further");
                    cut_to = DEAD_LETTER_FALLBACK_BYTES;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The dead letter of a result too large for its topic (the sink or a route's).
    fn output_too_large(
        &self,
        topic: &str,
        record_max: usize,
        size: usize,
        source_offset: i64,
        payload: Option<Vec<u8>>,
    ) -> DeadLetter {
        DeadLetter {
            reason: DeadLetterReason::OutputTooLarge,
            detail: format!(
                "output too large: {size} bytes; the sink topic {topic} accepts at most {record_max}"
            ),
            topic: self.source_topic.clone(),
            partition: self.partition.0 as i32,
            offset: source_offset,
            payload,
        }
    }
}
