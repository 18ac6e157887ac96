//! The jobs a simulated run submits, drawn from a family that covers every operator
//! (stateless filter/map/key_by, dedupe, tumbling, sliding and session windows with
//! allowed lateness, a filter after an aggregate), and the events they read: keyed
//! payments with out-of-order, late and repeated events, and malformed records of every
//! kind the engine dead-letters (undecodable bytes, JSON that is not an object, a missing
//! event time, no value at all, an amount whose type makes an expression fail).
//!
//! # The multi-stage family
//!
//! With [`MULTI_STAGE_JOBS`] on, runs draw the family for the runtime that runs a job as
//! its stage plan (`weir_core::spec::stages`): the tumbling and sliding jobs read a source
//! keyed by merchant and re-key by card, so they shuffle; the session job declares
//! `source.partitioned_by: card`, its producer placing each record on the partition
//! its card hashes to (no shuffle, the placement checked by the engine); a re-keying job
//! with a `parallelism` other than its source's partition count adds a `map` before its
//! key_by, a filter between key_by and window and a filter after the aggregate that
//! can fail. The stateless and dedupe jobs never shuffle. The join jobs (interval inner
//! and left outer, temporal inner and left outer) join their source on the card with a
//! second topic of their own ([`SimJob::join_with`]), fed by a second generator
//! ([`EventGen::for_join`]) with the same kinds of events: both sides repartition. For a
//! temporal join the right topic is the cards' versioned table: every event is a version
//! of its card, and every fifth new event deletes it (`"deleted": true`).

use crate::reference::partition_of_key;
use rand::Rng;
use weir_broker::OutgoingRecord;
use weir_core::spec::{parse_job_spec, JobSpec};

/// Whether runs draw the multi-stage job family (see the module documentation) and check
/// jobs by their stage plans: on, since the workers run jobs as their stage plans. The
/// single-stage family it replaced (sessions after a key_by that would now repartition)
/// is refused at submit; its draws stay only for the reference's differential tests.
pub const MULTI_STAGE_JOBS: bool = true;

/// The kinds of job a run may draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Stateless,
    Dedupe,
    Tumbling,
    Sliding,
    Session,
    /// A re-keying job with its own `parallelism` (the multi-stage family only).
    Rekey,
    /// An interval join of the source with a second topic on the card (the multi-stage
    /// family only): inner...
    JoinInner,
    /// ...and left outer.
    JoinOuter,
    /// A temporal (enrichment) join of the source with the cards' versions in a second
    /// topic (the multi-stage family only): inner...
    TemporalInner,
    /// ...and left outer.
    TemporalOuter,
}

impl JobKind {
    /// The single-stage family, in the order seeds draw from.
    pub const SINGLE_STAGE: [JobKind; 5] = [
        JobKind::Stateless,
        JobKind::Dedupe,
        JobKind::Tumbling,
        JobKind::Sliding,
        JobKind::Session,
    ];

    /// The kinds a seed draws from in the multi-stage family, in the order it always
    /// did; some stateless and dedupe draws then become joins ([`as_join`]).
    const DRAWN: [JobKind; 6] = [
        JobKind::Stateless,
        JobKind::Dedupe,
        JobKind::Tumbling,
        JobKind::Sliding,
        JobKind::Session,
        JobKind::Rekey,
    ];

    /// The multi-stage family.
    pub const MULTI_STAGE: [JobKind; 10] = [
        JobKind::Stateless,
        JobKind::Dedupe,
        JobKind::Tumbling,
        JobKind::Sliding,
        JobKind::Session,
        JobKind::Rekey,
        JobKind::JoinInner,
        JobKind::JoinOuter,
        JobKind::TemporalInner,
        JobKind::TemporalOuter,
    ];

    fn name(self) -> &'static str {
        match self {
            JobKind::Stateless => "stateless",
            JobKind::Dedupe => "dedupe",
            JobKind::Tumbling => "tumbling",
            JobKind::Sliding => "sliding",
            JobKind::Session => "session",
            JobKind::Rekey => "rekey",
            JobKind::JoinInner => "join",
            JobKind::JoinOuter => "outer",
            JobKind::TemporalInner => "temporal",
            JobKind::TemporalOuter => "temporal-outer",
        }
    }

    /// How the producer places this kind's source records.
    fn placement(self, multi_stage: bool) -> Placement {
        match (multi_stage, self) {
            (false, _) | (true, JobKind::Stateless | JobKind::Dedupe) => Placement::CardKey,
            (
                true,
                JobKind::Tumbling
                | JobKind::Sliding
                | JobKind::Rekey
                | JobKind::JoinInner
                | JobKind::JoinOuter
                | JobKind::TemporalInner
                | JobKind::TemporalOuter,
            ) => Placement::MerchantKey,
            (true, JobKind::Session) => Placement::CardPartition,
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
            // The string amounts fail the filter downstream; a window of two fails the
            // last filter (a division by zero), dead-lettered at the repartition topic.
            JobKind::Rekey => {
                r#"
  - map: { card: "card", amount: "amount", half: "id % 2" }
  - key_by: "card + '/' + string(half)"
  - filter: "amount > 20"
  - window: { tumbling: 4s, allowed_lateness: 1s }
  - aggregate: { n: "count()", total: "sum(amount)" }
  - filter: "total / (n - 2) > 10""#
            }
            // The join's own lines follow (`join_stage`): its right topic is the job's.
            JobKind::JoinInner
            | JobKind::JoinOuter
            | JobKind::TemporalInner
            | JobKind::TemporalOuter => {
                r#"
  - filter: "amount > 20""#
            }
        }
    }

    /// Whether the job joins its source with a second topic.
    pub fn joins(self) -> bool {
        matches!(
            self,
            JobKind::JoinInner
                | JobKind::JoinOuter
                | JobKind::TemporalInner
                | JobKind::TemporalOuter
        )
    }

    /// Whether the job's join is temporal (its right topic a versioned table).
    pub fn temporal(self) -> bool {
        matches!(self, JobKind::TemporalInner | JobKind::TemporalOuter)
    }

    /// Whether the job's join is left outer (interval or temporal).
    pub fn outer(self) -> bool {
        matches!(self, JobKind::JoinOuter | JobKind::TemporalOuter)
    }
}

/// How a producer places the records of a source topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Keyed by the card drawn for the record, placed by the broker's partitioner (a
    /// repeated event keeps its own card in its value: not partitioned by card).
    CardKey,
    /// Keyed by a merchant the event names, placed by the broker: not by card.
    MerchantKey,
    /// On the partition the card in the value hashes to (Kafka's murmur2), set
    /// explicitly: partitioned by card, as `source.partitioned_by: card` declares.
    CardPartition,
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
    /// Whether the job is checked by its stage plan (drawn from the multi-stage family).
    pub multi_stage: bool,
    /// How its source records are placed.
    pub placement: Placement,
    /// A join's right topic and its partition count (placed like the source).
    pub join_with: Option<(String, u32)>,
}

impl SimJob {
    /// The card of the flush event of source `partition` ([`flush_record`]): `flush`, or
    /// on a source partitioned by card, the first `flush-<n>` that hashes to it.
    pub fn flush_card(&self, partition: i32) -> String {
        if self.placement != Placement::CardPartition {
            return "flush".to_string();
        }
        (0..)
            .map(|n| format!("flush-{n}"))
            .find(|card| partition_of_key(card.as_bytes(), self.source_partitions) == partition)
            .unwrap_or_default()
    }
}

/// Draws job `index` of a run, from the family [`MULTI_STAGE_JOBS`] chooses.
pub fn draw_job(rng: &mut impl Rng, index: usize) -> SimJob {
    draw_job_from(rng, index, MULTI_STAGE_JOBS)
}

/// Draws job `index` of a run from the multi-stage family or the single-stage one.
pub fn draw_job_from(rng: &mut impl Rng, index: usize, multi_stage: bool) -> SimJob {
    let drawn = match multi_stage {
        false => JobKind::SINGLE_STAGE[rng.gen_range(0..JobKind::SINGLE_STAGE.len())],
        true => JobKind::DRAWN[rng.gen_range(0..JobKind::DRAWN.len())],
    };
    let checkpoint_ms = rng.gen_range(100..=1_500);
    let out_of_orderness_ms = rng.gen_range(0..=2_000);
    let kind = as_join(drawn, multi_stage, checkpoint_ms, out_of_orderness_ms);
    let name = format!("j{index}-{}", kind.name());
    let [source, sink, dead_letters] = ["in", "out", "dlq"].map(|end| format!("{name}-{end}"));
    // Drawn in the order they always were, so the single-stage family's seeds stay.
    let source_partitions: u32 = rng.gen_range(1..=4);
    let sink_partitions: u32 = rng.gen_range(1..=3);
    let placement = kind.placement(multi_stage);
    let source_extra = match placement {
        Placement::CardPartition => "  partitioned_by: card\n",
        Placement::CardKey | Placement::MerchantKey => "",
    };
    // Routes, so results reach several topics: the stateless job's large payments and the
    // tumbling job's busy windows go to topics of their own.
    let routes_extra = match kind {
        JobKind::Stateless => {
            format!("routes:\n  - {{ when: \"cents > 8000\", topic: {name}-big }}\n")
        }
        JobKind::Tumbling => {
            format!("routes:\n  - {{ when: \"count >= 3\", topic: {name}-busy }}\n")
        }
        _ => String::new(),
    };
    let job_extra = match kind {
        JobKind::Rekey => {
            // Any count but the source's.
            let drawn = rng.gen_range(1..=3);
            let parallelism = if drawn >= source_partitions {
                drawn + 1
            } else {
                drawn
            };
            format!("parallelism: {parallelism}\n")
        }
        _ => String::new(),
    };
    // Drawn only for joins, so the other kinds' seeds stay.
    let (join_with, join_stage) = draw_join(rng, kind, &name);
    let text = format!(
        r#"name: {name}
source:
  topic: {source}
  format: json
  event_time: ts
  max_out_of_orderness: {out_of_orderness_ms}ms
{source_extra}pipeline:{pipeline}{join_stage}
sink:
  topic: {sink}
  format: json
  delivery: exactly_once
dead_letter_topic: {dead_letters}
checkpoint_interval: {checkpoint_ms}ms
{routes_extra}{job_extra}"#,
        pipeline = kind.pipeline()
    );
    let spec = parse_job_spec(text.as_bytes())
        .unwrap_or_else(|e| panic!("the simulation's {name} spec is invalid: {e:?}"));
    SimJob {
        kind,
        name,
        source,
        source_partitions,
        sink,
        sink_partitions,
        dead_letters,
        spec,
        text,
        multi_stage,
        placement,
        join_with,
    }
}

/// Whether a drawn stateless or dedupe job is a join instead (inner or left outer): a
/// third of them, decided by values the seed draws anyway, so that every seed without a
/// join draws exactly what it drew before joins existed (the seeds that catch the planted
/// bugs stay). Half of the joins are temporal, again by a value already drawn: such a
/// seed draws the same values as before, only its join reads the right topic as a table.
fn as_join(
    drawn: JobKind,
    multi_stage: bool,
    checkpoint_ms: u64,
    out_of_orderness_ms: u64,
) -> JobKind {
    let eligible = multi_stage && matches!(drawn, JobKind::Stateless | JobKind::Dedupe);
    let temporal = (checkpoint_ms / 3) % 2 == 1;
    match (
        eligible,
        checkpoint_ms % 3,
        out_of_orderness_ms % 2,
        temporal,
    ) {
        (true, 0, 0, false) => JobKind::JoinInner,
        (true, 0, _, false) => JobKind::JoinOuter,
        (true, 0, 0, true) => JobKind::TemporalInner,
        (true, 0, _, true) => JobKind::TemporalOuter,
        _ => drawn,
    }
}

/// A join job's right topic with its partition count, and its `join` stage's lines
/// (nothing for the other kinds, which draw nothing here).
fn draw_join(rng: &mut impl Rng, kind: JobKind, name: &str) -> (Option<(String, u32)>, String) {
    if !kind.joins() {
        return (None, String::new());
    }
    let topic = format!("{name}-with");
    let partitions = rng.gen_range(1..=3u32);
    let right_out_of_orderness_ms = rng.gen_range(0..=2_000);
    let (join_kind, lateness) = match kind {
        JobKind::JoinOuter => ("left_outer", "\n      allowed_lateness: 500ms"),
        JobKind::TemporalInner => ("temporal", ""),
        JobKind::TemporalOuter => ("temporal_left_outer", "\n      allowed_lateness: 500ms"),
        _ => ("inner", ""),
    };
    // A temporal join keeps versions by the watermark: no `within`.
    let within = match kind.temporal() {
        true => "",
        false => "\n      within: 300ms",
    };
    let stage = format!(
        r#"
  - join:
      with: {{ topic: {topic}, format: json, event_time: ts, max_out_of_orderness: {right_out_of_orderness_ms}ms }}
      left_key: "card"
      right_key: "card"{within}
      kind: {join_kind}{lateness}"#
    );
    (Some((topic, partitions)), stage)
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

/// Merchants a re-keyed source is keyed by ([`Placement::MerchantKey`]).
const MERCHANTS: u64 = 5;

/// The last event of one source partition, sent once the faults are healed: its event
/// time is far enough ahead to close every window still open, so that the state restored
/// by the fleet's last recoveries has to produce outputs the reference checks. `card` is
/// [`SimJob::flush_card`].
pub fn flush_record(topic: &str, partition: i32, card: &str, now_ms: u64) -> OutgoingRecord {
    let ts = EVENT_TIME_START_MS + now_ms as i64 + FLUSH_AHEAD_MS;
    let id = 1_000_000_000 + i64::from(partition);
    OutgoingRecord {
        topic: topic.to_string(),
        partition: Some(partition),
        key: Some(b"flush".to_vec()),
        value: format!(r#"{{"id": {id}, "card": "{card}", "amount": 1, "ts": {ts}}}"#).into_bytes(),
        timestamp_ms: None,
    }
}

/// Makes the events of one source topic.
#[derive(Debug)]
pub struct EventGen {
    next_id: u64,
    recent: Vec<Recent>,
    placement: Placement,
    source_partitions: u32,
    /// A temporal join's right topic: every this many new events, one deletes its card.
    deletion_every: Option<u64>,
}

/// New events of a temporal join's right topic per deletion of a card.
const DELETION_EVERY: u64 = 5;

/// An event kept for repeats: its card and merchant, and its value.
#[derive(Debug, Clone)]
struct Recent {
    card: String,
    merchant: Option<String>,
    value: Vec<u8>,
}

/// Recent events kept for repeats.
const RECENT_KEPT: usize = 32;

impl Default for EventGen {
    fn default() -> Self {
        Self::new()
    }
}

impl EventGen {
    /// A generator starting at id 1, keying records by card.
    pub fn new() -> Self {
        EventGen {
            next_id: 1,
            recent: Vec::new(),
            placement: Placement::CardKey,
            source_partitions: 1,
            deletion_every: None,
        }
    }

    /// A generator for `job`'s join's right topic, placed like its source.
    pub fn for_join(job: &SimJob) -> Option<Self> {
        let (_, partitions) = job.join_with.as_ref()?;
        Some(EventGen {
            placement: job.placement,
            source_partitions: (*partitions).max(1),
            // Ids of their own, so a pair names both of its events.
            next_id: 500_000_000,
            deletion_every: job.kind.temporal().then_some(DELETION_EVERY),
            ..Self::new()
        })
    }

    /// A generator for `job`'s source, placing records as the job's placement says.
    pub fn for_job(job: &SimJob) -> Self {
        EventGen {
            placement: job.placement,
            source_partitions: job.source_partitions.max(1),
            ..Self::new()
        }
    }

    /// The record of `value`, placed: `card` is the one drawn for it, `value_card` the
    /// one its value names (if any), `merchant` the one drawn for re-keyed sources.
    fn place(
        &self,
        topic: &str,
        card: &str,
        value_card: Option<&str>,
        merchant: Option<&str>,
        value: Option<Vec<u8>>,
    ) -> OutgoingRecord {
        let (key, partition) = match self.placement {
            Placement::CardKey => (Some(card), None),
            Placement::MerchantKey => (merchant, None),
            Placement::CardPartition => {
                let card = value_card.unwrap_or(card);
                let partition = partition_of_key(card.as_bytes(), self.source_partitions);
                (Some(card), Some(partition))
            }
        };
        OutgoingRecord {
            topic: topic.to_string(),
            partition,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.unwrap_or_default(),
            timestamp_ms: None,
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
        // Drawn only for re-keyed sources, so the others' seeds stay.
        let merchant = (self.placement == Placement::MerchantKey)
            .then(|| format!("m{}", rng.gen_range(0..MERCHANTS)));
        let merchant = merchant.as_deref();
        let roll = rng.gen_range(0..1_000);
        if roll < 40 && !self.recent.is_empty() {
            // The same event again (a producer retry upstream).
            let recent = self.recent[rng.gen_range(0..self.recent.len())].clone();
            let merchant = recent.merchant.as_deref();
            return self.place(
                topic,
                &card,
                Some(&recent.card),
                merchant,
                Some(recent.value),
            );
        }
        if roll < 50 {
            let value = b"{\"id\": 7, \"card\": ".to_vec();
            return self.place(topic, &card, None, merchant, Some(value));
        }
        if roll < 58 {
            return self.place(topic, &card, None, merchant, Some(b"[1, 2, 3]".to_vec()));
        }
        if roll < 66 {
            let value = br#"{"id": 1, "card": "c1", "amount": 5}"#.to_vec();
            return self.place(topic, &card, Some("c1"), merchant, Some(value));
        }
        if roll < 70 {
            return self.place(topic, &card, None, merchant, None);
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
        let merchant_field = merchant.map_or(String::new(), |m| format!(r#", "merchant": "{m}""#));
        // Decided by the id, so no value is drawn for it and the seeds stay.
        let deleted = match self.deletion_every {
            Some(every) if id.is_multiple_of(every) => r#", "deleted": true"#,
            _ => "",
        };
        let value = format!(
            r#"{{"id": {id}, "card": "{card}", "amount": {amount}, "ts": {ts}{merchant_field}{deleted}}}"#
        )
        .into_bytes();
        if self.recent.len() == RECENT_KEPT {
            self.recent.remove(0);
        }
        self.recent.push(Recent {
            card: card.clone(),
            merchant: merchant.map(str::to_string),
            value: value.clone(),
        });
        self.place(topic, &card, Some(&card), merchant, Some(value))
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
