//! The downstream task of a job with a join, up to the join's results: it reads the
//! repartition topic that the upstream tasks of *both* sides write (`shuffled.rs`: events
//! say their side; markers carry a global upstream index) and drives the join state
//! machine — the interval join's (`join.rs`) or the temporal join's (`temporal.rs`) —
//! with the events and the watermarks.
//!
//! - **Upstream indices.** The left side's upstream task for source partition `p` writes
//!   markers as upstream `p`; the right side's, for partition `p` of `join.with.topic`,
//!   as upstream `left_partitions + p`. The downstream watermark `Wd` is the least over
//!   all `left_partitions + right_partitions` of them, none until each has sent one; the
//!   right watermark `Wr` (a temporal join's) the least over the right ones only.
//! - **An event** goes to the join with its Kafka key (the join key text) and its
//!   object; the pairs it completes are results, keyed by the join key.
//! - **A marker** moves its upstream's watermark (repeats and regressions of one upstream
//!   are ignored, as a restarted upstream task may repeat one); when `Wd` moves, the
//!   interval join forgets what it passed and a left outer join emits what is unmatched;
//!   when `Wr` or `Wd` moves, the temporal join fires the left events `Wr` passed and
//!   prunes the versions `Wd` made unreachable.
//!
//! A result's `source_offset` is the offset of the repartition record that produced it.
//! Its snapshot ([`JoinDownstream::snapshot`]) holds the upstream watermarks and the join
//! state; [`JoinDownstream::take_changes`] gives the same key by key.

use super::changes::{StateChanges, StateEntry};
use super::join::{JoinPlan, JoinState, Joined};
use super::join_codec;
use super::limits::PipelineError;
use super::plan::least_watermark;
use super::record::SourceRecord;
use super::shuffled::{self, JoinSide, Shuffled};
use super::snapshot::UPSTREAMS_MAX;
use super::temporal::TemporalState;
use super::temporal_codec;

/// The section of local-copy entries holding the join's keys.
pub const JOIN_SECTION: u32 = u32::MAX - 1;

const MAGIC: &[u8; 8] = b"WEIRJOIN";
const VERSION: u32 = 1;

/// The state machine a join runs, by its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Machine {
    Interval(JoinState),
    Temporal(TemporalState),
}

impl Machine {
    fn new(plan: &JoinPlan) -> Machine {
        match plan.kind.is_temporal() {
            false => Machine::Interval(JoinState::default()),
            true => Machine::Temporal(TemporalState::default()),
        }
    }

    fn state_bytes(&self) -> usize {
        match self {
            Machine::Interval(state) => state.state_bytes(),
            Machine::Temporal(state) => state.state_bytes(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Machine::Interval(state) => join_codec::write_state(state, out),
            Machine::Temporal(state) => temporal_codec::write_state(state, out),
        }
    }

    fn read<'a>(plan: &JoinPlan, bytes: &'a [u8]) -> Result<(Machine, &'a [u8]), String> {
        Ok(match plan.kind.is_temporal() {
            false => {
                let (state, rest) = join_codec::read_state(plan, bytes)?;
                (Machine::Interval(state), rest)
            }
            true => {
                let (state, rest) = temporal_codec::read_state(plan, bytes)?;
                (Machine::Temporal(state), rest)
            }
        })
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Machine::Interval(state) => state.keys().map(|(key, _)| key.to_string()).collect(),
            Machine::Temporal(state) => state.keys().map(|(key, _)| key.to_string()).collect(),
        }
    }

    fn take_changed_keys(&mut self) -> Vec<String> {
        match self {
            Machine::Interval(state) => state.take_changed_keys(),
            Machine::Temporal(state) => state.take_changed_keys(),
        }
    }

    fn key_value(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Machine::Interval(state) => join_codec::key_value(state, key),
            Machine::Temporal(state) => temporal_codec::key_value(state, key),
        }
    }

    fn restore_key_value(
        &mut self,
        plan: &JoinPlan,
        key: &str,
        value: &[u8],
    ) -> Result<(), String> {
        match self {
            Machine::Interval(state) => join_codec::restore_key_value(plan, state, key, value),
            Machine::Temporal(state) => temporal_codec::restore_key_value(plan, state, key, value),
        }
    }
}

/// A downstream task's join: the state and every upstream task's watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinDownstream {
    plan: JoinPlan,
    state: Machine,
    /// By global upstream index: left tasks first, then right ones.
    upstream_watermarks: Vec<Option<i64>>,
    /// How many of them are the left side's.
    left_upstreams: usize,
    /// Whether the changes tracked since they were last taken are complete (false for a
    /// new or restored task: write it whole).
    changes_complete: bool,
}

impl JoinDownstream {
    /// A task with nothing read yet, fed by `left_upstreams + right_upstreams` upstream
    /// tasks.
    pub(crate) fn new(plan: JoinPlan, left_upstreams: u32, right_upstreams: u32) -> Self {
        JoinDownstream {
            state: Machine::new(&plan),
            plan,
            upstream_watermarks: vec![None; (left_upstreams + right_upstreams) as usize],
            left_upstreams: left_upstreams as usize,
            changes_complete: false,
        }
    }

    /// The right watermark: the least of the right side's upstream tasks', none until
    /// each has sent one.
    pub(crate) fn right_watermark(&self) -> Option<i64> {
        least_watermark(self.upstream_watermarks.get(self.left_upstreams..)?)
    }

    /// The downstream watermark: the least of every upstream task's, none until each has
    /// sent one.
    pub(crate) fn watermark(&self) -> Option<i64> {
        least_watermark(&self.upstream_watermarks)
    }

    #[cfg(test)]
    /// Processes one record of the repartition topic.
    pub(crate) fn process(
        &mut self,
        record: &SourceRecord,
        out: &mut super::record::Outputs,
    ) -> Result<(), PipelineError> {
        let mut joined = Vec::new();
        let result = self.process_into(record, &mut joined);
        for joined in joined {
            out.records.push(super::record::OutputRecord {
                key: Some(joined.key),
                value: joined.value,
                source_offset: record.offset,
                route: 0,
            });
        }
        result
    }

    /// Processes one record of the repartition topic, appending the join's results to
    /// `joined` (for the stages after the join to run on).
    pub(crate) fn process_into(
        &mut self,
        record: &SourceRecord,
        joined: &mut Vec<Joined>,
    ) -> Result<(), PipelineError> {
        let value = record.value.as_deref().unwrap_or_default();
        let shuffled = shuffled::decode(value).map_err(|detail| corrupt(record, &detail))?;
        match shuffled {
            Shuffled::Watermark {
                upstream,
                watermark_ms,
            } => {
                let before = (self.watermark(), self.right_watermark());
                let Some(slot) = self.upstream_watermarks.get_mut(upstream as usize) else {
                    return Err(corrupt(
                        record,
                        &format!(
                            "a marker from upstream task {upstream}, beyond both sides' partitions"
                        ),
                    ));
                };
                if slot.is_some_and(|known| known >= watermark_ms) {
                    return Ok(());
                }
                *slot = Some(watermark_ms);
                let after = (self.watermark(), self.right_watermark());
                if before != after {
                    self.on_watermarks(before.0, after, joined);
                }
            }
            Shuffled::Partial { .. } => {
                return Err(corrupt(record, "a partial aggregate, in a join"));
            }
            Shuffled::Event {
                side,
                event_ms,
                object,
                ..
            } => {
                let Some(key) = record
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                else {
                    return Err(corrupt(record, "an event without a UTF-8 key"));
                };
                match (&mut self.state, side) {
                    (Machine::Interval(state), _) => {
                        state.on_event(&self.plan, side, key, event_ms, object, joined)?;
                    }
                    (Machine::Temporal(state), JoinSide::Left) => {
                        // Only a temporal join's left events wait for the right side.
                        let right_watermark = self
                            .upstream_watermarks
                            .get(self.left_upstreams..)
                            .and_then(least_watermark);
                        state.on_left(
                            &self.plan,
                            key,
                            event_ms,
                            object,
                            right_watermark,
                            joined,
                        )?;
                    }
                    (Machine::Temporal(state), JoinSide::Right) => {
                        state.on_right(&self.plan, key, event_ms, object)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The join's answer to new watermarks `(Wd, Wr)`, `Wd` having been `before`: the
    /// interval join answers only to `Wd`.
    fn on_watermarks(
        &mut self,
        before: Option<i64>,
        (watermark, right): (Option<i64>, Option<i64>),
        joined: &mut Vec<Joined>,
    ) {
        match &mut self.state {
            Machine::Interval(state) => {
                if let Some(watermark) = watermark.filter(|w| before != Some(*w)) {
                    state.on_watermark(&self.plan, watermark, joined);
                }
            }
            Machine::Temporal(state) => state.on_watermarks(&self.plan, right, watermark, joined),
        }
    }

    /// An estimate, in bytes, of the memory the join state holds.
    pub(crate) fn state_bytes(&self) -> usize {
        self.state.state_bytes()
    }

    /// The whole state as bytes: `"WEIRJOIN" u32:version u32:upstreams
    /// { opt<i64>:watermark }*` then the join state (`join_codec.rs`).
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let mut out = self.header();
        self.state.write(&mut out);
        out
    }

    /// The task [`snapshot`](Self::snapshot) wrote, for `plan` and the same upstream
    /// counts; refuses anything else.
    pub(crate) fn restore(
        plan: JoinPlan,
        left_upstreams: u32,
        right_upstreams: u32,
        bytes: &[u8],
    ) -> Result<Self, String> {
        let mut task = JoinDownstream::new(plan, left_upstreams, right_upstreams);
        let rest = task.read_header(bytes)?;
        let (state, rest) = Machine::read(&task.plan, rest)?;
        if !rest.is_empty() {
            return Err("trailing bytes after the join state".into());
        }
        task.state = state;
        Ok(task)
    }

    /// The changes since the last call, for the local copy: every key the first time
    /// (and after a restore), else the keys that changed; the header is the upstream
    /// watermarks.
    pub(crate) fn take_changes(&mut self) -> StateChanges {
        let changed = self.state.take_changed_keys();
        let full = !self.changes_complete;
        self.changes_complete = true;
        let keys: Vec<String> = if full { self.state.keys() } else { changed };
        StateChanges {
            full,
            header: self.header(),
            entries: keys
                .into_iter()
                .map(|key| StateEntry {
                    section: JOIN_SECTION,
                    value: self.state.key_value(&key),
                    key,
                })
                .collect(),
        }
    }

    /// The task from a local copy: the header and every entry of
    /// [`take_changes`](Self::take_changes) applied in order.
    pub(crate) fn restore_entries(
        plan: JoinPlan,
        left_upstreams: u32,
        right_upstreams: u32,
        header: &[u8],
        entries: &[StateEntry],
    ) -> Result<Self, String> {
        let mut task = JoinDownstream::new(plan, left_upstreams, right_upstreams);
        if !task.read_header(header)?.is_empty() {
            return Err("trailing bytes after the join header".into());
        }
        for entry in entries {
            if entry.section != JOIN_SECTION {
                return Err(format!("an entry of section {} in a join", entry.section));
            }
            let Some(value) = &entry.value else {
                return Err(format!("join key {:?} without a value", entry.key));
            };
            task.state
                .restore_key_value(&task.plan, &entry.key, value)?;
        }
        Ok(task)
    }

    fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 9 * self.upstream_watermarks.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let count = u32::try_from(self.upstream_watermarks.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for watermark in &self.upstream_watermarks {
            match watermark {
                None => out.push(0),
                Some(ms) => {
                    out.push(1);
                    out.extend_from_slice(&ms.to_le_bytes());
                }
            }
        }
        out
    }

    /// Reads a header into the upstream watermarks; returns the bytes after it.
    fn read_header<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a [u8], String> {
        let cut = || "the join header is cut short".to_string();
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not a join state")?;
        let (version, rest) = rest.split_first_chunk::<4>().ok_or_else(cut)?;
        if u32::from_le_bytes(*version) != VERSION {
            return Err(format!(
                "unknown join state version {}",
                u32::from_le_bytes(*version)
            ));
        }
        let (count, mut rest) = rest.split_first_chunk::<4>().ok_or_else(cut)?;
        let count = u32::from_le_bytes(*count) as usize;
        if count != self.upstream_watermarks.len() || count > UPSTREAMS_MAX {
            return Err(format!(
                "the state has {count} upstream tasks; the job has {}",
                self.upstream_watermarks.len()
            ));
        }
        for slot in &mut self.upstream_watermarks {
            let (tag, after) = rest.split_first().ok_or_else(cut)?;
            rest = after;
            *slot = match tag {
                0 => None,
                1 => {
                    let (ms, after) = rest.split_first_chunk::<8>().ok_or_else(cut)?;
                    rest = after;
                    Some(i64::from_le_bytes(*ms))
                }
                tag => return Err(format!("bad watermark tag {tag}")),
            };
        }
        Ok(rest)
    }
}

/// A repartition record weir did not write: the partition stops rather than skip it.
fn corrupt(record: &SourceRecord, detail: &str) -> PipelineError {
    PipelineError::CorruptRepartitionRecord(format!(
        "{} partition {} offset {}: {detail}",
        record.topic, record.partition, record.offset
    ))
}
