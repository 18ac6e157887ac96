//! A `read_committed` reader of the sink on a thread of its own, noting for every output
//! which partition's emitter it is, which tick's window, which job version wrote it, and
//! when the reader received it (the bench's clock: downtime is measured as the reader
//! sees it, not by Kafka timestamps). The figures are pure functions of those notes.

use super::load::emitter_keys;
use super::{BASE_MS, PARTITIONS, WINDOW_MS};
use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one poll of the reader waits.
const POLL: Duration = Duration::from_millis(5);

/// One output as the reader received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The source partition whose emitter fired.
    pub partition: u32,
    /// The tick whose window fired.
    pub tick: u64,
    /// The job version that wrote it.
    pub version: u64,
    pub received: Instant,
}

/// The reader; stopped on drop.
pub struct SinkWatcher {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl SinkWatcher {
    /// Reads every partition of `sink` from its beginning.
    pub fn start(bootstrap: &str, sink: &str, sink_partitions: u32) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "lifecycle-bench-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.queue.backoff.ms", "5")
            .create()
            .context("cannot create the sink reader")?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..sink_partitions as i32 {
            assignment
                .add_partition_offset(sink, p, Offset::Beginning)
                .context("cannot assign the sink")?;
        }
        consumer
            .assign(&assignment)
            .context("cannot assign the sink")?;
        let emitters: BTreeMap<String, u32> = emitter_keys()
            .into_iter()
            .enumerate()
            .map(|(p, k)| (k, p as u32))
            .collect();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (seen.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("lifecycle-sink".into())
            .spawn(move || -> anyhow::Result<()> {
                while !s.load(Ordering::Relaxed) {
                    let Some(message) = consumer.poll(POLL) else {
                        continue;
                    };
                    let message = message.context("reading the sink")?;
                    let received = Instant::now();
                    if let Some(mut one) = parse(message.payload().unwrap_or_default(), &emitters) {
                        one.received = received;
                        w.lock().unwrap_or_else(|e| e.into_inner()).push(one);
                    }
                }
                Ok(())
            })
            .context("cannot start the sink reader")?;
        Ok(SinkWatcher {
            seen,
            stop,
            handle: Some(handle),
        })
    }

    /// Everything received so far, in receive order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for SinkWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// An emitter window's output, or None for anything else (no other window fires).
fn parse(payload: &[u8], emitters: &BTreeMap<String, u32>) -> Option<Seen> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let partition = *emitters.get(v["key"].as_str()?)?;
    let start = v["window_start"].as_i64()?;
    Some(Seen {
        partition,
        tick: u64::try_from((start - BASE_MS) / WINDOW_MS).ok()?,
        version: v["v"].as_u64()?,
        received: Instant::now(),
    })
}

/// Whether every partition has an output of `version` received at or after `from`.
pub fn every_partition_since(seen: &[Seen], version: Option<u64>, from: Instant) -> bool {
    (0..PARTITIONS).all(|p| {
        seen.iter().any(|s| {
            s.partition == p && s.received >= from && version.is_none_or(|v| s.version == v)
        })
    })
}

/// Per partition, the last output of `old` to the first of `new`; the largest over the
/// partitions. None while some partition has not shown both.
pub fn version_switch_gap(seen: &[Seen], old: u64, new: u64) -> Option<Duration> {
    (0..PARTITIONS)
        .map(|p| {
            let last_old = seen
                .iter()
                .filter(|s| s.partition == p && s.version == old)
                .map(|s| s.received)
                .max()?;
            let first_new = seen
                .iter()
                .filter(|s| s.partition == p && s.version == new)
                .map(|s| s.received)
                .min()?;
            Some(first_new.saturating_duration_since(last_old))
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// When the last partition showed its first output of `version`.
pub fn first_of_every_partition(seen: &[Seen], version: u64) -> Option<Instant> {
    (0..PARTITIONS)
        .map(|p| {
            seen.iter()
                .filter(|s| s.partition == p && s.version == version)
                .map(|s| s.received)
                .min()
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .max()
}

/// The longest time between two consecutive outputs of one partition received within
/// `[from, until]`, over every partition.
pub fn longest_gap(seen: &[Seen], from: Instant, until: Instant) -> Duration {
    (0..PARTITIONS)
        .map(|p| {
            let mut times: Vec<Instant> = seen
                .iter()
                .filter(|s| s.partition == p && s.received >= from && s.received <= until)
                .map(|s| s.received)
                .collect();
            times.sort_unstable();
            times
                .windows(2)
                .map(|w| w[1].duration_since(w[0]))
                .max()
                .unwrap_or_default()
        })
        .max()
        .unwrap_or_default()
}

/// Emitter windows received more than once, and never received between each partition's
/// first and last one: the run's exactly-once check.
pub fn duplicates_and_missing(seen: &[Seen]) -> (u64, u64) {
    let (mut duplicates, mut missing) = (0, 0);
    for p in 0..PARTITIONS {
        let mut ticks = BTreeSet::new();
        for s in seen.iter().filter(|s| s.partition == p) {
            if !ticks.insert(s.tick) {
                duplicates += 1;
            }
        }
        if let (Some(first), Some(last)) = (ticks.first(), ticks.last()) {
            missing += (last - first + 1) - ticks.len() as u64;
        }
    }
    (duplicates, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, partition: u32, tick: u64, version: u64, ms: u64) -> Seen {
        Seen {
            partition,
            tick,
            version,
            received: base + Duration::from_millis(ms),
        }
    }

    #[test]
    fn the_switch_gap_is_the_slowest_partitions() {
        let t = Instant::now();
        let seen = [
            at(t, 0, 1, 1, 0),
            at(t, 1, 1, 1, 10),
            at(t, 0, 2, 2, 500),
            at(t, 1, 2, 2, 910),
        ];
        assert_eq!(
            version_switch_gap(&seen, 1, 2),
            Some(Duration::from_millis(900))
        );
        assert_eq!(version_switch_gap(&seen[..3], 1, 2), None);
        assert_eq!(
            longest_gap(&seen, t, t + Duration::from_secs(1)),
            Duration::from_millis(900)
        );
    }

    #[test]
    fn duplicates_and_holes_are_counted_per_partition() {
        let t = Instant::now();
        let seen = [
            at(t, 0, 1, 1, 0),
            at(t, 0, 1, 1, 1),
            at(t, 0, 4, 1, 2),
            at(t, 1, 7, 1, 3),
        ];
        assert_eq!(duplicates_and_missing(&seen), (1, 2));
    }
}
