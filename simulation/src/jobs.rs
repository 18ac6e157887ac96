//! The jobs a simulated run submits, drawn from a family that covers every operator
//! (stateless filter/map/key_by, dedupe, tumbling, sliding and session windows with
//! allowed lateness, a filter after an aggregate), and the events they read: keyed
//! payments with out-of-order, late and repeated events, and malformed records of every
//! kind the engine dead-letters (undecodable bytes, JSON that is not an object, a missing
//! event time, no value at all, an amount whose type makes an expression fail).

use rand::Rng;
use weir_broker::OutgoingRecord;
use weir_core::spec::{parse_job_spec, JobSpec};

/// The kinds of job a run may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Stateless,
    Dedupe,
    Tumbling,
    Sliding,
    Session,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 5] = [
        JobKind::Stateless,
        JobKind::Dedupe,
        JobKind::Tumbling,
        JobKind::Sliding,
        JobKind::Session,
    ];

    fn name(self) -> &'static str {
        match self {
            JobKind::Stateless => "stateless",
            JobKind::Dedupe => "dedupe",
            JobKind::Tumbling => "tumbling",
            JobKind::Sliding => "sliding",
            JobKind::Session => "session",
        }
    }

    fn pipeline(self) -> &'static str {
        match self {
            JobKind::Stateless => {
                r#"
  - filter: "amount > 50"
  - map: { card: "card", cents: "amount * 100", id: "id" }
  - key_by: "card""#
            }
            JobKind::Dedupe => {
                r#"
  - dedupe: { key: "id", ttl: 10s }
  - filter: "amount % 3 != 0""#
            }
            JobKind::Tumbling => {
                r#"
  - key_by: "card"
  - window: { tumbling: 5s, allowed_lateness: 2s }
  - aggregate: { count: "count()", total: "sum(amount)" }"#
            }
            JobKind::Sliding => {
                r#"
  - key_by: "card"
  - window: { sliding: { size: 10s, slide: 5s } }
  - aggregate: { n: "count()", top: "max(amount)" }
  - filter: "n >= 2""#
            }
            JobKind::Session => {
                r#"
  - key_by: "card"
  - window: { session: { gap: 3s }, allowed_lateness: 1s }
  - aggregate: { n: "count()", low: "min(amount)", mean: "avg(amount)" }"#
            }
        }
    }
}

/// One job of a run, with its topics.
#[derive(Debug, Clone)]
pub struct SimJob {
    pub kind: JobKind,
    pub name: String,
    pub source: String,
    pub source_partitions: u32,
    pub sink: String,
    pub sink_partitions: u32,
    pub dead_letters: String,
    pub spec: JobSpec,
    /// The spec as a user would submit it.
    pub text: String,
}

/// Draws job `index` of a run.
pub fn draw_job(rng: &mut impl Rng, index: usize) -> SimJob {
    let kind = JobKind::ALL[rng.gen_range(0..JobKind::ALL.len())];
    let name = format!("j{index}-{}", kind.name());
    let (source, sink, dead_letters) = (
        format!("{name}-in"),
        format!("{name}-out"),
        format!("{name}-dlq"),
    );
    let checkpoint_ms = rng.gen_range(100..=1_500);
    let out_of_orderness_ms = rng.gen_range(0..=2_000);
    let text = format!(
        r#"name: {name}
source:
  topic: {source}
  format: json
  event_time: ts
  max_out_of_orderness: {out_of_orderness_ms}ms
pipeline:{pipeline}
sink:
  topic: {sink}
  format: json
  delivery: exactly_once
dead_letter_topic: {dead_letters}
checkpoint_interval: {checkpoint_ms}ms
"#,
        pipeline = kind.pipeline()
    );
    let spec = parse_job_spec(text.as_bytes())
        .unwrap_or_else(|e| panic!("the simulation's {name} spec is invalid: {e:?}"));
    SimJob {
        kind,
        name,
        source,
        source_partitions: rng.gen_range(1..=4),
        sink,
        sink_partitions: rng.gen_range(1..=3),
        dead_letters,
        spec,
        text,
    }
}

/// Cards (keys) events are spread over.
const CARDS: u64 = 12;
/// Each card falls quiet for one span in every `QUIET_CYCLE` spans of this length, staggered
/// by card, so that session windows (gap 3 s) close during a run instead of growing forever.
const QUIET_SPAN_MS: u64 = 6_000;
/// Spans in one cycle of a card's activity.
const QUIET_CYCLE: u64 = 3;
/// Event time of the first event (a fixed instant, so runs replay).
const EVENT_TIME_START_MS: i64 = 1_700_000_000_000;
/// How far an ordinary event's time strays from the run's clock.
const JITTER_MS: (i64, i64) = (-1_500, 300);
/// How far a late event's time lags.
const LATE_BY_MS: (i64, i64) = (5_000, 30_000);

/// How far past the run's simulated time the flush event lies: beyond every window size,
/// session gap, allowed lateness, out-of-orderness and dedupe ttl the job family uses.
const FLUSH_AHEAD_MS: i64 = 60_000;

/// The last event of one source partition, sent once the faults are healed: its event
/// time is far enough ahead to close every window still open, so that the state restored
/// by the fleet's last recoveries has to produce outputs the reference checks.
pub fn flush_record(topic: &str, partition: i32, now_ms: u64) -> OutgoingRecord {
    let ts = EVENT_TIME_START_MS + now_ms as i64 + FLUSH_AHEAD_MS;
    let id = 1_000_000_000 + i64::from(partition);
    OutgoingRecord {
        topic: topic.to_string(),
        partition: Some(partition),
        key: Some(b"flush".to_vec()),
        value: format!(r#"{{"id": {id}, "card": "flush", "amount": 1, "ts": {ts}}}"#).into_bytes(),
        timestamp_ms: None,
    }
}

/// Makes the events of one source topic.
#[derive(Debug)]
pub struct EventGen {
    next_id: u64,
    recent: Vec<Vec<u8>>,
}

/// Recent events kept for repeats.
const RECENT_KEPT: usize = 32;

impl Default for EventGen {
    fn default() -> Self {
        Self::new()
    }
}

impl EventGen {
    /// A generator starting at id 1.
    pub fn new() -> Self {
        EventGen {
            next_id: 1,
            recent: Vec::new(),
        }
    }

    /// One record for `topic` at simulated time `now_ms`.
    pub fn next(&mut self, rng: &mut impl Rng, topic: &str, now_ms: u64) -> OutgoingRecord {
        let span = now_ms / QUIET_SPAN_MS;
        let active: Vec<u64> = (0..CARDS)
            .filter(|c| !(span + c).is_multiple_of(QUIET_CYCLE))
            .collect();
        debug_assert!(!active.is_empty());
        let card = format!("c{}", active[rng.gen_range(0..active.len())]);
        let record = |key: Option<&str>, value: Option<Vec<u8>>| OutgoingRecord {
            topic: topic.to_string(),
            partition: None,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.unwrap_or_default(),
            timestamp_ms: None,
        };
        let roll = rng.gen_range(0..1_000);
        if roll < 40 && !self.recent.is_empty() {
            // The same event again (a producer retry upstream).
            let value = self.recent[rng.gen_range(0..self.recent.len())].clone();
            return record(Some(&card), Some(value));
        }
        if roll < 50 {
            return record(Some(&card), Some(b"{\"id\": 7, \"card\": ".to_vec()));
        }
        if roll < 58 {
            return record(Some(&card), Some(b"[1, 2, 3]".to_vec()));
        }
        if roll < 66 {
            return record(
                Some(&card),
                Some(br#"{"id": 1, "card": "c1", "amount": 5}"#.to_vec()),
            );
        }
        if roll < 70 {
            return record(Some(&card), None);
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut ts = EVENT_TIME_START_MS + now_ms as i64 + rng.gen_range(JITTER_MS.0..=JITTER_MS.1);
        if roll < 110 {
            ts -= rng.gen_range(LATE_BY_MS.0..=LATE_BY_MS.1);
        }
        let amount = if roll < 125 {
            format!("\"{}\"", rng.gen_range(1..500))
        } else {
            rng.gen_range(1..500).to_string()
        };
        let value = format!(r#"{{"id": {id}, "card": "{card}", "amount": {amount}, "ts": {ts}}}"#)
            .into_bytes();
        if self.recent.len() == RECENT_KEPT {
            self.recent.remove(0);
        }
        self.recent.push(value.clone());
        record(Some(&card), Some(value))
    }
}
