//! The downstream task of a job with a join, up to the join's results: it reads the
//! repartition topic that the upstream tasks of *both* sides write (`shuffled.rs`: events
//! say their side; markers carry a global upstream index) and drives the join state
//! machine (`join.rs`) with the events and the downstream watermark.
//!
//! - **Upstream indices.** The left side's upstream task for source partition `p` writes
//!   markers as upstream `p`; the right side's, for partition `p` of `join.with.topic`,
//!   as upstream `left_partitions + p`. The downstream watermark `Wd` is the least over
//!   all `left_partitions + right_partitions` of them, none until each has sent one.
//! - **An event** goes to the join with its Kafka key (the join key text) and its
//!   object; the pairs it completes are results, keyed by the join key.
//! - **A marker** moves its upstream's watermark (repeats and regressions of one upstream
//!   are ignored, as a restarted upstream task may repeat one); when `Wd` moves, the join
//!   forgets what it passed and a left outer join emits what is unmatched.
//!
//! A result's `source_offset` is the offset of the repartition record that produced it.
//! Its snapshot ([`JoinDownstream::snapshot`]) holds the upstream watermarks and the join
//! state; [`JoinDownstream::take_changes`] gives the same key by key.

use super::changes::{StateChanges, StateEntry};
use super::join::{JoinPlan, JoinState, Joined};
use super::join_codec::{key_value, read_state, restore_key_value, write_state};
use super::limits::PipelineError;
use super::record::SourceRecord;
use super::shuffled::{self, Shuffled};
use super::snapshot::UPSTREAMS_MAX;

/// The section of local-copy entries holding the join's keys.
pub const JOIN_SECTION: u32 = u32::MAX - 1;

const MAGIC: &[u8; 8] = b"WEIRJOIN";
const VERSION: u32 = 1;

/// A downstream task's join: the state and every upstream task's watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinDownstream {
    plan: JoinPlan,
    state: JoinState,
    /// By global upstream index: left tasks first, then right ones.
    upstream_watermarks: Vec<Option<i64>>,
    /// Whether the changes tracked since they were last taken are complete (false for a
    /// new or restored task: write it whole).
    changes_complete: bool,
}

impl JoinDownstream {
    /// A task with nothing read yet, fed by `left_upstreams + right_upstreams` upstream
    /// tasks.
    pub(crate) fn new(plan: JoinPlan, left_upstreams: u32, right_upstreams: u32) -> Self {
        JoinDownstream {
            plan,
            state: JoinState::default(),
            upstream_watermarks: vec![None; (left_upstreams + right_upstreams) as usize],
            changes_complete: false,
        }
    }

    /// The downstream watermark: the least of every upstream task's, none until each has
    /// sent one.
    pub(crate) fn watermark(&self) -> Option<i64> {
        if self.upstream_watermarks.is_empty() {
            return None;
        }
        self.upstream_watermarks
            .iter()
            .try_fold(i64::MAX, |least, w| w.map(|w| least.min(w)))
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
                let before = self.watermark();
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
                if let Some(watermark) = self.watermark() {
                    if before != Some(watermark) {
                        self.state.on_watermark(&self.plan, watermark, joined);
                    }
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
                self.state
                    .on_event(&self.plan, side, key, event_ms, object, joined)?;
            }
        }
        Ok(())
    }

    /// An estimate, in bytes, of the memory the join state holds.
    pub(crate) fn state_bytes(&self) -> usize {
        self.state.state_bytes()
    }

    /// The whole state as bytes: `"WEIRJOIN" u32:version u32:upstreams
    /// { opt<i64>:watermark }*` then the join state (`join_codec.rs`).
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let mut out = self.header();
        write_state(&self.state, &mut out);
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
        let (state, rest) = read_state(&task.plan, rest)?;
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
        let keys: Vec<String> = if full {
            self.state.keys().map(|(key, _)| key.to_string()).collect()
        } else {
            changed
        };
        StateChanges {
            full,
            header: self.header(),
            entries: keys
                .into_iter()
                .map(|key| StateEntry {
                    section: JOIN_SECTION,
                    value: key_value(&self.state, &key),
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
            restore_key_value(&task.plan, &mut task.state, &entry.key, value)?;
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
