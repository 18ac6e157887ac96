//! A pipeline's state as bytes, for checkpoints. The form is a small hand-written binary
//! one — fixed-width little-endian numbers, length-prefixed UTF-8 strings, every
//! collection in key order — so that one state always gives the same bytes, and a
//! restored pipeline writes back exactly what it read. Reading checks everything: a
//! snapshot of another pipeline, or bytes this code could not have written, is refused
//! rather than half-restored.
//!
//! Layout (version 1):
//! ```text
//! "WEIRPIPE" u32:version [32]:fingerprint
//! opt<i64>:max_event_ms
//! [ u32:upstreams { opt<i64>:watermark_ms }* ]   (downstream of a shuffle only)
//! u32:dedupe_stages { u32:entries { str:key i64:last_kept_ms }* }*
//! u8:has_windows [ u32:keys { str:key u32:windows { i64:start i64:end accumulator* }* }* ]
//! ```
//! An accumulator is a tag (0 count, 1 sum, 2 avg, 3 min, 4 max) and its fields.

use super::aggregate::{Accumulator, ExactSum, Extreme};
use super::changes::{StateEntry, WINDOWS_SECTION};
use super::dedupe::DedupeMemory;
use super::event_time::EVENT_TIME_ABS_MAX_MS;
use super::exact::{ExactFloatSum, LIMBS_MAX};
use super::limits::{DEDUPE_KEYS_MAX, KEYS_PER_PARTITION_MAX, OPEN_WINDOWS_PER_KEY_MAX};
use super::plan::{watermark, Plan, RestoreError, State};
use super::role::PipelineRole;
use super::window::{Accumulators, Pane};
use sha2::{Digest, Sha256};
use weir_core::spec::{AggregateFunction, JobSpec};

const MAGIC: &[u8; 8] = b"WEIRPIPE";
const VERSION: u32 = 1;
/// The most upstream tasks a downstream snapshot may name: a source's partitions.
pub(crate) const UPSTREAMS_MAX: usize = 100_000;

/// What identifies the state a spec's pipeline keeps: its event-time settings and stages.
/// Sink, checkpoint interval and the like may change between runs; these may not.
/// A stage of a job that shuffles adds its role, so one stage's snapshot never restores
/// into another.
pub(crate) fn fingerprint(spec: &JobSpec, role: PipelineRole) -> [u8; 32] {
    let defining = (
        "weir-pipeline-state-v1",
        &spec.source.event_time,
        spec.source.max_out_of_orderness_or_zero(),
        &spec.pipeline,
    );
    let mut bytes = serde_json::to_vec(&defining).unwrap_or_default();
    if let Some(tag) = role.fingerprint_tag() {
        bytes.extend_from_slice(tag.as_bytes());
    }
    Sha256::digest(bytes).into()
}

pub(crate) fn write(plan: &Plan, state: &State) -> Vec<u8> {
    let mut w = Writer::default();
    w.prefix(plan, state);
    w.len(state.dedupe.len());
    for memory in &state.dedupe {
        let entries = memory.entries_sorted();
        w.len(entries.len());
        for (key, last_ms) in entries {
            w.str(key);
            w.i64(last_ms);
        }
    }
    match &state.windows {
        None => w.u8(0),
        Some(windows) => {
            w.u8(1);
            let keys = windows.keys_sorted();
            w.len(keys.len());
            for (key, panes) in keys {
                w.str(key);
                w.panes(panes);
            }
        }
    }
    w.out
}

/// The parts of a snapshot that are not per key, as [`assemble`] takes them: the prefix
/// (magic, version, fingerprint, largest event time), then the number of dedupe stages
/// (u32) and whether there are windows (u8).
pub(crate) fn header(plan: &Plan, state: &State) -> Vec<u8> {
    let mut w = Writer::default();
    w.prefix(plan, state);
    w.len(state.dedupe.len());
    w.u8(u8::from(state.windows.is_some()));
    w.out
}

/// A dedupe entry's value: the last kept event time.
pub(crate) fn dedupe_value(last_kept_ms: i64) -> Vec<u8> {
    last_kept_ms.to_le_bytes().to_vec()
}

/// A window key's value: its open windows.
pub(crate) fn panes_value(panes: &[Pane]) -> Vec<u8> {
    let mut w = Writer::default();
    w.panes(panes);
    w.out
}

/// Reads a key's open windows as [`panes_value`] wrote them, each accumulator of the
/// function at its place in `functions`: an upstream task's partial aggregate.
pub(crate) fn read_panes_value(
    bytes: &[u8],
    functions: &[AggregateFunction],
) -> Result<Vec<Pane>, RestoreError> {
    let mut r = Reader { bytes, at: 0 };
    let count = r.len(OPEN_WINDOWS_PER_KEY_MAX)?;
    let mut panes = Vec::with_capacity(count);
    for _ in 0..count {
        let start_ms = r.i64()?;
        let end_ms = r.i64()?;
        if end_ms <= start_ms {
            return Err(corrupt(format!(
                "a window [{start_ms}, {end_ms}) ends before it starts"
            )));
        }
        let mut accumulators = Accumulators::new();
        for function in functions {
            let accumulator = r.accumulator()?;
            if !accumulator.is_of(*function) {
                return Err(corrupt("an accumulator of another function".into()));
            }
            accumulators.push(accumulator);
        }
        panes.push(Pane {
            start_ms,
            end_ms,
            accumulators,
        });
    }
    if r.at != bytes.len() {
        return Err(corrupt("trailing bytes".into()));
    }
    Ok(panes)
}

/// The snapshot that [`write`] gives for the state whose [`header`] and entries (every
/// key, with its value, by section) these are. Refuses entries it cannot place; the
/// snapshot's own reading checks the rest.
pub(crate) fn assemble(header: &[u8], entries: &[StateEntry]) -> Result<Vec<u8>, RestoreError> {
    let split = header
        .len()
        .checked_sub(5)
        .ok_or_else(|| corrupt("a state header is too short".into()))?;
    let (prefix, tail) = header.split_at(split);
    let mut stage_count = [0u8; 4];
    stage_count.copy_from_slice(&tail[..4]);
    let stages = u32::from_le_bytes(stage_count);
    let has_windows = tail[4];
    let mut sorted: Vec<&StateEntry> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| (a.section, &a.key).cmp(&(b.section, &b.key)));
    let mut w = Writer::default();
    w.bytes(prefix);
    w.u32(stages);
    let mut rest = sorted.as_slice();
    let section = |rest: &mut &[&StateEntry], id: u32, w: &mut Writer| {
        let count = rest.iter().take_while(|e| e.section == id).count();
        let (these, after) = rest.split_at(count);
        *rest = after;
        w.len(these.len());
        for entry in these {
            let Some(value) = &entry.value else {
                return Err(corrupt(format!("entry {:?} has no value", entry.key)));
            };
            w.str(&entry.key);
            w.bytes(value);
        }
        Ok(())
    };
    for stage in 0..stages {
        section(&mut rest, stage, &mut w)?;
    }
    w.u8(has_windows);
    if has_windows == 1 {
        section(&mut rest, WINDOWS_SECTION, &mut w)?;
    }
    if let Some(entry) = rest.first() {
        return Err(corrupt(format!(
            "an entry in section {} that the state does not have",
            entry.section
        )));
    }
    Ok(w.out)
}

pub(crate) fn read(plan: &Plan, state: &mut State, bytes: &[u8]) -> Result<(), RestoreError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(RestoreError::Corrupt("not a weir pipeline snapshot".into()));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(RestoreError::UnknownVersion(version));
    }
    if r.take(32)? != plan.fingerprint {
        return Err(RestoreError::SpecMismatch);
    }
    *state = State::new(plan);
    state.max_event_ms = match r.u8()? {
        0 => None,
        1 => Some(r.event_time()?),
        tag => return Err(corrupt(format!("bad watermark tag {tag}"))),
    };
    if let PipelineRole::Downstream { .. } = plan.role {
        let count = r.len(UPSTREAMS_MAX)?;
        let mut read = Vec::with_capacity(count);
        for _ in 0..count {
            read.push(match r.u8()? {
                0 => None,
                1 => Some(r.i64()?),
                tag => return Err(corrupt(format!("bad upstream watermark tag {tag}"))),
            });
        }
        // The source may have gained partitions since: their upstream tasks are new.
        let upstreams = state.upstream_watermarks.len().max(read.len());
        read.resize(upstreams, None);
        state.upstream_watermarks = read;
    }
    let watermark_ms = watermark(plan, state);
    if r.len(usize::MAX)? != state.dedupe.len() {
        return Err(corrupt("the number of dedupe stages differs".into()));
    }
    for memory in &mut state.dedupe {
        read_dedupe(&mut r, memory)?;
    }
    match (r.u8()?, state.windows.as_mut(), &plan.window) {
        (0, None, _) => {}
        (1, Some(windows), Some(window_plan)) => {
            let functions = window_plan.functions();
            let keys = r.len(KEYS_PER_PARTITION_MAX)?;
            let mut previous: Option<String> = None;
            for _ in 0..keys {
                let key = r.str()?;
                if previous.as_deref().is_some_and(|p| p >= key.as_str()) {
                    return Err(corrupt("window keys out of order".into()));
                }
                let count = r.len(OPEN_WINDOWS_PER_KEY_MAX)?;
                let mut panes = Vec::with_capacity(count);
                for _ in 0..count {
                    let start_ms = r.i64()?;
                    let end_ms = r.i64()?;
                    let accumulators = functions.iter().map(|_| r.accumulator()).collect::<Result<
                        Accumulators,
                        _,
                    >>(
                    )?;
                    panes.push(Pane {
                        start_ms,
                        end_ms,
                        accumulators,
                    });
                }
                windows
                    .restore_key(&key, panes, watermark_ms)
                    .map_err(corrupt)?;
                previous = Some(key);
            }
        }
        (tag, _, _) => return Err(corrupt(format!("bad window state tag {tag}"))),
    }
    if r.at != bytes.len() {
        return Err(corrupt("trailing bytes".into()));
    }
    Ok(())
}

fn read_dedupe(r: &mut Reader<'_>, memory: &mut DedupeMemory) -> Result<(), RestoreError> {
    let entries = r.len(DEDUPE_KEYS_MAX)?;
    let mut previous: Option<String> = None;
    for _ in 0..entries {
        let key = r.str()?;
        let last_ms = r.event_time()?;
        if previous.as_deref().is_some_and(|p| p >= key.as_str()) {
            return Err(corrupt("dedupe keys out of order".into()));
        }
        memory.restore_entry(&key, last_ms).map_err(corrupt)?;
        previous = Some(key);
    }
    Ok(())
}

fn corrupt(message: String) -> RestoreError {
    RestoreError::Corrupt(message)
}

#[derive(Default)]
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn prefix(&mut self, plan: &Plan, state: &State) {
        self.bytes(MAGIC);
        self.u32(VERSION);
        self.bytes(&plan.fingerprint);
        match state.max_event_ms {
            None => self.u8(0),
            Some(ms) => {
                self.u8(1);
                self.i64(ms);
            }
        }
        if let PipelineRole::Downstream { .. } = plan.role {
            self.len(state.upstream_watermarks.len());
            for watermark in &state.upstream_watermarks {
                match watermark {
                    None => self.u8(0),
                    Some(ms) => {
                        self.u8(1);
                        self.i64(*ms);
                    }
                }
            }
        }
    }
    fn panes(&mut self, panes: &[Pane]) {
        self.len(panes.len());
        for pane in panes {
            self.i64(pane.start_ms);
            self.i64(pane.end_ms);
            pane.accumulators
                .iter()
                .for_each(|acc| self.accumulator(acc));
        }
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
    fn u8(&mut self, value: u8) {
        self.out.push(value);
    }
    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_le_bytes());
    }
    fn len(&mut self, len: usize) {
        self.u32(u32::try_from(len).unwrap_or(u32::MAX));
    }
    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_le_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.bytes(&value.to_le_bytes());
    }
    fn i128(&mut self, value: i128) {
        self.bytes(&value.to_le_bytes());
    }
    fn f64(&mut self, value: f64) {
        self.u64(value.to_bits());
    }
    fn str(&mut self, text: &str) {
        self.len(text.len());
        self.bytes(text.as_bytes());
    }
    fn accumulator(&mut self, accumulator: &Accumulator) {
        match accumulator {
            Accumulator::Count(count) => {
                self.u8(0);
                self.u64(*count);
            }
            Accumulator::Sum(sum) => {
                self.u8(1);
                self.exact_sum(sum);
            }
            Accumulator::Avg(sum) => {
                self.u8(2);
                self.exact_sum(sum);
            }
            Accumulator::Min(extreme) => {
                self.u8(3);
                self.extreme(extreme);
            }
            Accumulator::Max(extreme) => {
                self.u8(4);
                self.extreme(extreme);
            }
        }
    }
    fn exact_sum(&mut self, sum: &ExactSum) {
        self.u64(sum.count);
        self.i128(sum.int_sum);
        self.u8(u8::from(sum.has_float));
        let (low, limbs) = sum.floats.parts();
        self.u32(low);
        self.len(limbs.len());
        limbs.iter().for_each(|limb| self.u64(*limb));
    }
    fn extreme(&mut self, extreme: &Extreme) {
        match extreme.int {
            None => self.u8(0),
            Some(int) => {
                self.u8(1);
                self.i128(int);
            }
        }
        match extreme.float {
            None => self.u8(0),
            Some(float) => {
                self.u8(1);
                self.f64(float);
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], RestoreError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt("truncated".into()))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RestoreError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }
    fn u8(&mut self) -> Result<u8, RestoreError> {
        Ok(self.array::<1>()?[0])
    }
    fn bool(&mut self) -> Result<bool, RestoreError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(corrupt(format!("bad flag {other}"))),
        }
    }
    fn u32(&mut self) -> Result<u32, RestoreError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// A length, at most `max`.
    fn len(&mut self, max: usize) -> Result<usize, RestoreError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(corrupt(format!(
                "a count of {len} exceeds its limit of {max}"
            )));
        }
        Ok(len)
    }
    fn u64(&mut self) -> Result<u64, RestoreError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, RestoreError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// An event time, within the range events may have.
    fn event_time(&mut self) -> Result<i64, RestoreError> {
        let ms = self.i64()?;
        if ms.unsigned_abs() > EVENT_TIME_ABS_MAX_MS as u64 {
            return Err(corrupt(format!("event time {ms} is out of range")));
        }
        Ok(ms)
    }
    fn i128(&mut self) -> Result<i128, RestoreError> {
        Ok(i128::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, RestoreError> {
        Ok(f64::from_bits(self.u64()?))
    }
    fn str(&mut self) -> Result<String, RestoreError> {
        let len = self.len(self.bytes.len())?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("a key is not UTF-8".into()))
    }
    fn accumulator(&mut self) -> Result<Accumulator, RestoreError> {
        Ok(match self.u8()? {
            0 => Accumulator::Count(self.u64()?),
            1 => Accumulator::Sum(self.exact_sum()?),
            2 => Accumulator::Avg(self.exact_sum()?),
            3 => Accumulator::Min(self.extreme()?),
            4 => Accumulator::Max(self.extreme()?),
            tag => return Err(corrupt(format!("bad accumulator tag {tag}"))),
        })
    }
    fn exact_sum(&mut self) -> Result<ExactSum, RestoreError> {
        let count = self.u64()?;
        let int_sum = self.i128()?;
        // Each integer input lies within [i64::MIN, u64::MAX].
        if int_sum.unsigned_abs() > u128::from(count) << 64 {
            return Err(corrupt(format!(
                "a sum of {count} inputs cannot be {int_sum}"
            )));
        }
        let has_float = self.bool()?;
        let low = self.u32()?;
        let len = self.len(LIMBS_MAX)?;
        let limbs = (0..len).map(|_| self.u64()).collect::<Result<_, _>>()?;
        let floats = ExactFloatSum::from_parts(low, limbs)
            .filter(|floats| has_float || *floats == ExactFloatSum::default())
            .ok_or_else(|| corrupt("an exact sum is not in normal form".into()))?;
        Ok(ExactSum {
            count,
            int_sum,
            has_float,
            floats,
        })
    }
    fn extreme(&mut self) -> Result<Extreme, RestoreError> {
        let int = if self.bool()? {
            Some(self.i128()?)
        } else {
            None
        };
        let input_range = i128::from(i64::MIN)..=i128::from(u64::MAX);
        if int.is_some_and(|int| !input_range.contains(&int)) {
            return Err(corrupt("an extreme outside the range of inputs".into()));
        }
        let float = if self.bool()? {
            Some(self.f64()?)
        } else {
            None
        };
        Ok(Extreme { int, float })
    }
}
