//! The bench's events: K keys filled once into the far state window, then a ticker thread
//! that keeps the job loaded (an emitter and a pusher per partition per tick, plus events
//! of random keys into their open windows). Events are `{"card", "ts", "push"}` JSON, each
//! keyed by its card and on the partition Kafka's default partitioner gives that key (the
//! job declares `partitioned_by: card`); pushers are dropped by the job's filter
//! (`push == 0`) and only move the watermark.

use super::{BASE_MS, OUT_OF_ORDERNESS_MS, PARTITIONS, STATE_WINDOW_MS, WINDOW_MS};
use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weir_core::routing::partition_for_key;

/// Time between two ticks: the resolution of the downtime figures, well under the
/// checkpoint interval that makes outputs visible.
pub const TICK_MS: u64 = 50;
/// Events of random keys per tick under continuous load (400 a second).
pub const KEY_EVENTS_PER_TICK: u64 = 20;
/// Bound on filling the keys and on flushing the ticker at its end.
pub const FILL_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause while librdkafka's queue is full.
const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(1);
/// Ticks the layout allows before the keys' window would fire.
pub const TICKS_MAX: u64 = (OUT_OF_ORDERNESS_MS / WINDOW_MS) as u64 - 1;

/// The card of key `i`.
pub fn state_key(i: u64) -> String {
    format!("c{i}")
}

/// The emitter card of each partition: the first `e<n>` Kafka places there.
pub fn emitter_keys() -> Vec<String> {
    (0..PARTITIONS)
        .map(|p| {
            (0u64..)
                .map(|n| format!("e{n}"))
                .find(|k| partition_for_key(k.as_bytes(), PARTITIONS) == p)
                .unwrap_or_default()
        })
        .collect()
}

/// One event's JSON.
pub fn event(card: &str, ts_ms: i64, push: bool) -> String {
    format!(
        "{{\"card\":\"{card}\",\"ts\":{ts_ms},\"push\":{}}}",
        u8::from(push)
    )
}

/// The emitter event of tick `tick`: in window `tick`, counting from [`BASE_MS`].
pub fn emitter_ts(tick: u64) -> i64 {
    BASE_MS + tick as i64 * WINDOW_MS + 1
}

/// The pusher of tick `tick`: moves the watermark one millisecond past the emitter's window.
pub fn pusher_ts(tick: u64) -> i64 {
    emitter_ts(tick) + WINDOW_MS + OUT_OF_ORDERNESS_MS
}

fn producer(
    bootstrap: &str,
    linger_ms: u32,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "lifecycle-load")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("cannot create the load producer")
}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: u32,
    key: &str,
    value: &str,
    give_up_at: Instant,
) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic)
        .partition(partition as i32)
        .key(key.as_bytes())
        .payload(value.as_bytes());
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                if Instant::now() >= give_up_at {
                    bail!("the load producer's queue stayed full");
                }
                record = back;
                std::thread::sleep(QUEUE_FULL_PAUSE);
            }
            Err((e, _)) => return Err(e).context("cannot enqueue an event"),
        }
    }
}

/// Gives each of `keys` keys one event in the state window, and waits for the acks.
/// Returns the bytes of event values sent.
pub fn fill(bootstrap: &str, topic: &str, keys: u64) -> anyhow::Result<u64> {
    let producer = producer(bootstrap, 20)?;
    let give_up_at = Instant::now() + FILL_TIMEOUT;
    let mut bytes = 0u64;
    for i in 0..keys {
        let card = state_key(i);
        let value = event(&card, STATE_WINDOW_MS + (i as i64 % WINDOW_MS), false);
        bytes += value.len() as u64;
        let p = partition_for_key(card.as_bytes(), PARTITIONS);
        send(&producer, topic, p, &card, &value, give_up_at)?;
    }
    producer
        .flush(FILL_TIMEOUT)
        .context("the fill producer could not deliver every event")?;
    Ok(bytes)
}

/// The ticker thread; stopped (and flushed) by [`Ticker::finish`] or on drop.
pub struct Ticker {
    stop: Arc<AtomicBool>,
    ticks: Arc<AtomicU64>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Ticker {
    /// Starts ticking into `topic`; random key events pick among `keys` keys.
    pub fn start(bootstrap: &str, topic: &str, keys: u64) -> anyhow::Result<Ticker> {
        let producer = producer(bootstrap, 0)?;
        let emitters = emitter_keys();
        let (stop, ticks) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, t, topic) = (stop.clone(), ticks.clone(), topic.to_string());
        let handle = std::thread::Builder::new()
            .name("lifecycle-ticker".into())
            .spawn(move || tick_loop(&producer, &topic, &emitters, keys, &s, &t))
            .context("cannot start the ticker")?;
        Ok(Ticker {
            stop,
            ticks,
            handle: Some(handle),
        })
    }

    /// Ticks sent so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Stops ticking and reports the thread's error, if any.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| anyhow::anyhow!("the ticker panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn tick_loop(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    emitters: &[String],
    keys: u64,
    stop: &AtomicBool,
    ticks: &AtomicU64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if tick >= TICKS_MAX {
            bail!("the run outlived the event-time layout ({TICKS_MAX} ticks)");
        }
        let give_up_at = Instant::now() + FILL_TIMEOUT;
        for (p, emitter) in emitters.iter().enumerate() {
            let p = p as u32;
            send(
                producer,
                topic,
                p,
                emitter,
                &event(emitter, emitter_ts(tick), false),
                give_up_at,
            )?;
            send(
                producer,
                topic,
                p,
                "push",
                &event("push", pusher_ts(tick), true),
                give_up_at,
            )?;
        }
        for _ in 0..KEY_EVENTS_PER_TICK {
            let card = state_key(rand::random::<u64>() % keys.max(1));
            let ts = STATE_WINDOW_MS + (rand::random::<u64>() % WINDOW_MS as u64) as i64;
            let p = partition_for_key(card.as_bytes(), PARTITIONS);
            send(
                producer,
                topic,
                p,
                &card,
                &event(&card, ts, false),
                give_up_at,
            )?;
        }
        tick += 1;
        ticks.store(tick, Ordering::Relaxed);
        let next = started + Duration::from_millis(TICK_MS * tick);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    producer
        .flush(FILL_TIMEOUT)
        .context("the ticker could not deliver its last events")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pusher_moves_the_watermark_just_past_its_emitter_and_not_to_the_keys() {
        for tick in [0, 1, 1_000, TICKS_MAX] {
            let watermark = pusher_ts(tick) - OUT_OF_ORDERNESS_MS;
            let emitter_end = BASE_MS + (tick as i64 + 1) * WINDOW_MS;
            assert_eq!(watermark, emitter_end + 1);
            // The next emitter is not late.
            assert!(BASE_MS + (tick as i64 + 2) * WINDOW_MS > watermark);
            // The keys' window stays open.
            assert!(watermark < STATE_WINDOW_MS + WINDOW_MS);
        }
    }

    #[test]
    fn every_partition_has_an_emitter_of_its_own() {
        let keys = emitter_keys();
        for (p, k) in keys.iter().enumerate() {
            assert_eq!(partition_for_key(k.as_bytes(), PARTITIONS), p as u32);
        }
    }
}
