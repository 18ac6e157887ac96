//! Event-time windows of one partition: which windows an event belongs to, their running
//! aggregates per key, and firing them when the watermark passes their end. Windows are
//! half-open, `[start, end)`, aligned to epoch 0: tumbling windows of size `s` start at
//! multiples of `s`, sliding windows of size `s` every multiple of `slide`, and a key's
//! session grows from `[t, t + gap)` per event, merging sessions its events bridge.
//!
//! Timers are one ordered set of `(end, start, key slot)` over all keys, so the watermark's
//! advance finds due windows without looking at the others. A key whose last window fired
//! stays, idle and empty, for one window length of event time before it is forgotten: a
//! key busy in every window is then not re-created (allocated, hashed in) each time.

use super::aggregate::{Accumulator, Input};
use super::event_time::EVENT_TIME_ABS_MAX_MS;
use super::hash::FxHashMap;
use super::limits::{
    PipelineError, StateLimit, KEYS_PER_PARTITION_MAX, OPEN_WINDOWS_PER_KEY_MAX,
    OPEN_WINDOWS_PER_PARTITION_MAX,
};
use super::table_key::TableKey;
use smallvec::SmallVec;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use weir_core::spec::{AggregateFunction, WindowKind};

/// Bytes of bookkeeping per key, beyond the key's text, for [`Windows::state_bytes`].
const KEY_OVERHEAD_BYTES: usize = 96;
/// Bytes of bookkeeping per open window, beyond its accumulators.
const WINDOW_OVERHEAD_BYTES: usize = 80;

/// The shape of a job's windows, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assigner {
    Tumbling { size_ms: i64 },
    Sliding { size_ms: i64, slide_ms: i64 },
    Session { gap_ms: i64 },
}

impl Assigner {
    pub(crate) fn from_spec(kind: &WindowKind) -> Assigner {
        let ms =
            |d: weir_core::spec::SpecDuration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match kind {
            WindowKind::Tumbling(size) => Assigner::Tumbling { size_ms: ms(*size) },
            WindowKind::Sliding(sliding) => Assigner::Sliding {
                size_ms: ms(sliding.size),
                slide_ms: ms(sliding.slide),
            },
            WindowKind::Session(session) => Assigner::Session {
                gap_ms: ms(session.gap),
            },
        }
    }

    /// How many windows one event belongs to, at most.
    pub(crate) fn windows_per_event(&self) -> u64 {
        match *self {
            Assigner::Sliding { size_ms, slide_ms } => {
                (size_ms as u64).div_ceil(slide_ms.max(1) as u64)
            }
            Assigner::Tumbling { .. } | Assigner::Session { .. } => 1,
        }
    }

    /// For tumbling and sliding windows: the size and the step between window starts.
    fn size_and_slide(&self) -> Option<(i64, i64)> {
        match *self {
            Assigner::Tumbling { size_ms } => Some((size_ms, size_ms)),
            Assigner::Sliding { size_ms, slide_ms } => Some((size_ms, slide_ms)),
            Assigner::Session { .. } => None,
        }
    }
}

/// A window's accumulators, one per aggregate output. Held inline for the usual one or
/// two aggregates: the per-event update then touches the key's own slot, not a separate
/// allocation (one cache miss less per event once the keys outgrow the cache).
pub(crate) type Accumulators = SmallVec<[Accumulator; 1]>;

/// The open windows of one key, sorted by start. The usual one is inline, as above; a key
/// that spilled to the heap (a second window open) moves back when a window fires and
/// leaves it one (a session merge that leaves one keeps the heap buffer until then).
type KeyPanes = SmallVec<[Pane; 1]>;

/// One open window of one key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pane {
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    /// One per aggregate output, in the aggregate stage's (name) order.
    pub(crate) accumulators: Accumulators,
}

/// A window that fired: its key, bounds and final aggregates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fired {
    pub(crate) key: Arc<str>,
    pub(crate) start_ms: i64,
    pub(crate) end_ms: i64,
    pub(crate) accumulators: Accumulators,
}

#[derive(Debug, Clone)]
struct KeyWindows {
    key: Arc<str>,
    /// Sorted by start; sessions never overlap.
    panes: KeyPanes,
    /// The watermark at which the key's last window fired, while it has none open.
    idle_since_ms: Option<i64>,
    /// Whether the key is in `Windows::changed` already.
    changed: bool,
}

/// Keys whose changes a partition tracks between checkpoints; past this many the next
/// checkpoint rewrites the local copy whole (a key can be counted again after being
/// forgotten and seen anew, so this is above the key limit).
pub(crate) const CHANGED_KEYS_TRACKED_MAX: usize = 2 * KEYS_PER_PARTITION_MAX;

/// The open windows of one partition.
#[derive(Debug, Clone)]
pub(crate) struct Windows {
    assigner: Assigner,
    allowed_lateness_ms: i64,
    functions: Vec<AggregateFunction>,
    slot_of_key: FxHashMap<TableKey, u32>,
    slots: Vec<KeyWindows>,
    free_slots: Vec<u32>,
    /// `(end, start, slot)` of every open window.
    timers: BTreeSet<(i64, i64, u32)>,
    /// `(idle since, slot)` of keys that went idle, oldest first (some since reused).
    idle: VecDeque<(i64, u32)>,
    idle_keys: usize,
    /// How long an idle key is kept: one window length.
    idle_grace_ms: i64,
    key_bytes: usize,
    /// Keys whose open windows changed since the changes were last taken (a key may
    /// appear more than once), unless `changes_overflowed`.
    changed: Vec<Arc<str>>,
    changes_overflowed: bool,
}

impl Windows {
    pub(crate) fn new(
        assigner: Assigner,
        allowed_lateness_ms: i64,
        functions: Vec<AggregateFunction>,
    ) -> Windows {
        Windows {
            assigner,
            allowed_lateness_ms,
            functions,
            slot_of_key: FxHashMap::default(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            timers: BTreeSet::new(),
            idle: VecDeque::new(),
            idle_keys: 0,
            idle_grace_ms: match assigner {
                Assigner::Tumbling { size_ms } | Assigner::Sliding { size_ms, .. } => size_ms,
                Assigner::Session { gap_ms } => gap_ms,
            },
            key_bytes: 0,
            changed: Vec::new(),
            changes_overflowed: false,
        }
    }

    /// Whether an event of `key` at `event_ms` is late: no window it would join is open
    /// at `watermark_ms` (a window is open while `watermark < end + allowed_lateness`).
    pub(crate) fn is_late(&self, key: &str, event_ms: i64, watermark_ms: Option<i64>) -> bool {
        let Some(watermark) = watermark_ms else {
            return false;
        };
        match self.assigner.size_and_slide() {
            Some((size_ms, slide_ms)) => {
                let last_start = event_ms.div_euclid(slide_ms) * slide_ms;
                last_start + size_ms + self.allowed_lateness_ms <= watermark
            }
            None => {
                let Assigner::Session { gap_ms } = self.assigner else {
                    return false;
                };
                if event_ms + gap_ms + self.allowed_lateness_ms > watermark {
                    return false;
                }
                // Every pane held is open; the event is late unless it merges into one.
                let Some(&slot) = self.slot_of_key.get(key.as_bytes()) else {
                    return true;
                };
                !self.slots[slot as usize]
                    .panes
                    .iter()
                    .any(|pane| pane.start_ms < event_ms + gap_ms && event_ms < pane.end_ms)
            }
        }
    }

    /// Adds an event that is not late to every open window of `key` it belongs to.
    /// `inputs` holds one aggregate input per aggregate (`None` for `count()`).
    pub(crate) fn add(
        &mut self,
        key: &str,
        event_ms: i64,
        watermark_ms: Option<i64>,
        inputs: &[Option<Input>],
    ) -> Result<(), PipelineError> {
        let slot = self.slot_for(key)?;
        self.mark_changed(slot);
        match self.assigner {
            Assigner::Session { gap_ms } => self.add_to_session(slot, event_ms, gap_ms, inputs),
            Assigner::Tumbling { size_ms } => self.add_to_window(
                slot,
                event_ms.div_euclid(size_ms) * size_ms,
                size_ms,
                inputs,
            ),
            Assigner::Sliding { size_ms, slide_ms } => {
                let last_start = event_ms.div_euclid(slide_ms) * slide_ms;
                let mut first_start = last_start;
                while first_start - slide_ms > event_ms - size_ms {
                    first_start -= slide_ms;
                }
                let mut start = first_start;
                while start <= last_start {
                    let open = watermark_ms.is_none_or(|watermark| {
                        start + size_ms + self.allowed_lateness_ms > watermark
                    });
                    if open {
                        self.add_to_window(slot, start, size_ms, inputs)?;
                    }
                    start += slide_ms;
                }
                Ok(())
            }
        }
    }

    fn slot_for(&mut self, key: &str) -> Result<u32, PipelineError> {
        if let Some(&slot) = self.slot_of_key.get(key.as_bytes()) {
            if self.slots[slot as usize].idle_since_ms.take().is_some() {
                self.idle_keys -= 1;
            }
            return Ok(slot);
        }
        if self.keys() >= KEYS_PER_PARTITION_MAX {
            return Err(PipelineError::StateLimit(StateLimit::KeysPerPartition));
        }
        if self.slot_of_key.len() >= KEYS_PER_PARTITION_MAX {
            // Idle keys only stay while there is room.
            self.forget_idle_keys(i64::MAX);
        }
        let key: Arc<str> = Arc::from(key);
        let windows = KeyWindows {
            key: Arc::clone(&key),
            panes: KeyPanes::new(),
            idle_since_ms: None,
            changed: false,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = windows;
                slot
            }
            None => {
                self.slots.push(windows);
                (self.slots.len() - 1) as u32
            }
        };
        self.key_bytes += key.len();
        self.slot_of_key.insert(TableKey::new(&key), slot);
        Ok(slot)
    }

    fn new_pane(&self, slot: u32, start_ms: i64, end_ms: i64) -> Result<Pane, PipelineError> {
        if self.slots[slot as usize].panes.len() >= OPEN_WINDOWS_PER_KEY_MAX {
            return Err(PipelineError::StateLimit(StateLimit::OpenWindowsPerKey));
        }
        if self.timers.len() >= OPEN_WINDOWS_PER_PARTITION_MAX {
            return Err(PipelineError::StateLimit(
                StateLimit::OpenWindowsPerPartition,
            ));
        }
        Ok(Pane {
            start_ms,
            end_ms,
            accumulators: self
                .functions
                .iter()
                .map(|f| Accumulator::new(*f))
                .collect(),
        })
    }

    fn add_to_window(
        &mut self,
        slot: u32,
        start_ms: i64,
        size_ms: i64,
        inputs: &[Option<Input>],
    ) -> Result<(), PipelineError> {
        let panes = &self.slots[slot as usize].panes;
        // The newest window is the usual one: look there before searching.
        let index = match panes.last() {
            Some(last) if last.start_ms == start_ms => Ok(panes.len() - 1),
            _ => panes.binary_search_by_key(&start_ms, |pane| pane.start_ms),
        };
        let index = match index {
            Ok(index) => index,
            Err(index) => {
                let pane = self.new_pane(slot, start_ms, start_ms + size_ms)?;
                self.timers.insert((pane.end_ms, start_ms, slot));
                self.slots[slot as usize].panes.insert(index, pane);
                index
            }
        };
        accumulate(&mut self.slots[slot as usize].panes[index], inputs);
        Ok(())
    }

    fn add_to_session(
        &mut self,
        slot: u32,
        event_ms: i64,
        gap_ms: i64,
        inputs: &[Option<Input>],
    ) -> Result<(), PipelineError> {
        let (low, high) = (event_ms, event_ms + gap_ms);
        let panes = &self.slots[slot as usize].panes;
        let first = panes.partition_point(|pane| pane.end_ms <= low);
        let mut last = first;
        while last < panes.len() && panes[last].start_ms < high {
            last += 1;
        }
        if first == last {
            let pane = self.new_pane(slot, low, high)?;
            self.timers.insert((high, low, slot));
            self.slots[slot as usize].panes.insert(first, pane);
        } else {
            let panes = &mut self.slots[slot as usize].panes;
            let mut merged = panes.remove(first);
            self.timers.remove(&(merged.end_ms, merged.start_ms, slot));
            for _ in first + 1..last {
                let pane = panes.remove(first);
                self.timers.remove(&(pane.end_ms, pane.start_ms, slot));
                for (into, from) in merged.accumulators.iter_mut().zip(&pane.accumulators) {
                    into.merge(from);
                }
                merged.end_ms = merged.end_ms.max(pane.end_ms);
            }
            merged.start_ms = merged.start_ms.min(low);
            merged.end_ms = merged.end_ms.max(high);
            self.timers.insert((merged.end_ms, merged.start_ms, slot));
            panes.insert(first, merged);
        }
        accumulate(&mut self.slots[slot as usize].panes[first], inputs);
        Ok(())
    }

    /// Removes every window with `end + allowed_lateness <= watermark` into `fired`, in
    /// order of (end, start, key).
    pub(crate) fn fire(&mut self, watermark_ms: i64, fired: &mut Vec<Fired>) {
        let first_fired = fired.len();
        while let Some(&(end_ms, start_ms, slot)) = self.timers.first() {
            if end_ms + self.allowed_lateness_ms > watermark_ms {
                break;
            }
            self.timers.pop_first();
            self.mark_changed(slot);
            let windows = &mut self.slots[slot as usize];
            let Ok(index) = windows
                .panes
                .binary_search_by_key(&start_ms, |pane| pane.start_ms)
            else {
                debug_assert!(false, "a timer without its window");
                continue;
            };
            let pane = windows.panes.remove(index);
            debug_assert_eq!(pane.end_ms, end_ms);
            fired.push(Fired {
                key: Arc::clone(&windows.key),
                start_ms,
                end_ms,
                accumulators: pane.accumulators,
            });
            if windows.panes.len() == 1 && windows.panes.spilled() {
                windows.panes.shrink_to_fit();
            }
            if windows.panes.is_empty() {
                windows.idle_since_ms = Some(watermark_ms);
                self.idle_keys += 1;
                self.idle.push_back((watermark_ms, slot));
            }
        }
        self.forget_idle_keys(watermark_ms - self.idle_grace_ms);
        // No two fired windows share (end, start, key): an unstable sort is deterministic.
        fired[first_fired..].sort_unstable_by(|a, b| {
            (a.end_ms, a.start_ms, &a.key).cmp(&(b.end_ms, b.start_ms, &b.key))
        });
    }

    /// Notes that `slot`'s key's windows change (or may), for the next checkpoint's changes.
    fn mark_changed(&mut self, slot: u32) {
        let windows = &mut self.slots[slot as usize];
        if windows.changed || self.changes_overflowed {
            return;
        }
        if self.changed.len() >= CHANGED_KEYS_TRACKED_MAX {
            self.changes_overflowed = true;
            self.changed = Vec::new();
            return;
        }
        windows.changed = true;
        self.changed.push(Arc::clone(&windows.key));
    }

    /// The keys whose open windows may have changed since the last call, each once, in
    /// key order; `None` if more changed than are tracked.
    pub(crate) fn take_changed(&mut self) -> Option<Vec<Arc<str>>> {
        let overflowed = std::mem::take(&mut self.changes_overflowed);
        let mut changed = std::mem::take(&mut self.changed);
        if overflowed {
            self.slots.iter_mut().for_each(|w| w.changed = false);
            return None;
        }
        for key in &changed {
            if let Some(&slot) = self.slot_of_key.get(key.as_bytes()) {
                self.slots[slot as usize].changed = false;
            }
        }
        changed.sort_unstable();
        changed.dedup();
        Some(changed)
    }

    /// Takes every open window of every key out, in key order, and leaves the windows
    /// empty with no changes tracked: an upstream task's partial aggregates, sent at each
    /// checkpoint and never part of its state.
    pub(crate) fn drain_partials(&mut self) -> Vec<(Arc<str>, Vec<Pane>)> {
        let mut out: Vec<(Arc<str>, Vec<Pane>)> = self
            .slots
            .iter_mut()
            .filter(|windows| !windows.panes.is_empty())
            .map(|windows| (Arc::clone(&windows.key), windows.panes.drain(..).collect()))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        *self = Windows::new(
            self.assigner,
            self.allowed_lateness_ms,
            self.functions.clone(),
        );
        out
    }

    /// Merges an upstream task's partial aggregate of `key` into its open windows (a
    /// window it has not opened yet opens with the partial's accumulators).
    pub(crate) fn merge_partial(&mut self, key: &str, panes: &[Pane]) -> Result<(), PipelineError> {
        let slot = self.slot_for(key)?;
        self.mark_changed(slot);
        for partial in panes {
            let held = &self.slots[slot as usize].panes;
            let index = match held.binary_search_by_key(&partial.start_ms, |pane| pane.start_ms) {
                Ok(index) => index,
                Err(index) => {
                    let pane = self.new_pane(slot, partial.start_ms, partial.end_ms)?;
                    self.timers.insert((pane.end_ms, pane.start_ms, slot));
                    self.slots[slot as usize].panes.insert(index, pane);
                    index
                }
            };
            let pane = &mut self.slots[slot as usize].panes[index];
            debug_assert_eq!(pane.end_ms, partial.end_ms, "one window per start");
            for (mine, theirs) in pane.accumulators.iter_mut().zip(&partial.accumulators) {
                mine.merge(theirs);
            }
        }
        Ok(())
    }

    /// The open windows of `key` (empty if it has none).
    pub(crate) fn panes_of(&self, key: &str) -> &[Pane] {
        self.slot_of_key
            .get(key.as_bytes())
            .map_or(&[], |&slot| self.slots[slot as usize].panes.as_slice())
    }

    /// Forgets the keys idle since `up_to_ms` or before.
    fn forget_idle_keys(&mut self, up_to_ms: i64) {
        while let Some(&(since_ms, slot)) = self.idle.front() {
            if since_ms > up_to_ms {
                break;
            }
            self.idle.pop_front();
            let windows = &mut self.slots[slot as usize];
            // An entry of a key that was busy again since is stale.
            if windows.idle_since_ms != Some(since_ms) {
                continue;
            }
            windows.idle_since_ms = None;
            let key = Arc::clone(&windows.key);
            self.key_bytes -= key.len();
            self.slot_of_key.remove(key.as_bytes());
            self.free_slots.push(slot);
            self.idle_keys -= 1;
        }
    }

    /// How many windows are open.
    pub(crate) fn open_windows(&self) -> usize {
        self.timers.len()
    }

    /// How many keys have open windows.
    pub(crate) fn keys(&self) -> usize {
        self.slot_of_key.len() - self.idle_keys
    }

    /// An estimate of the memory held.
    pub(crate) fn state_bytes(&self) -> usize {
        let accumulators = self.functions.len() * std::mem::size_of::<Accumulator>();
        self.key_bytes
            + self.slot_of_key.len() * KEY_OVERHEAD_BYTES
            + self.open_windows() * (WINDOW_OVERHEAD_BYTES + accumulators)
    }

    /// Every key with its open windows, keys in order (for snapshots).
    pub(crate) fn keys_sorted(&self) -> Vec<(&str, &[Pane])> {
        let mut keys: Vec<(&str, &[Pane])> = self
            .slot_of_key
            .values()
            .map(|&slot| {
                let windows = &self.slots[slot as usize];
                (windows.key.as_ref(), windows.panes.as_slice())
            })
            .filter(|(_, panes)| !panes.is_empty())
            .collect();
        keys.sort_unstable_by_key(|(key, _)| *key);
        keys
    }

    /// Restores one key's open windows (from a snapshot), checking that they could have
    /// come from this pipeline at `watermark_ms`.
    pub(crate) fn restore_key(
        &mut self,
        key: &str,
        panes: Vec<Pane>,
        watermark_ms: Option<i64>,
    ) -> Result<(), String> {
        if self.slot_of_key.contains_key(key.as_bytes()) {
            return Err(format!("key {key:?} appears twice"));
        }
        if panes.is_empty() || panes.len() > OPEN_WINDOWS_PER_KEY_MAX {
            return Err(format!("key {key:?} has {} windows", panes.len()));
        }
        if self.timers.len() + panes.len() > OPEN_WINDOWS_PER_PARTITION_MAX {
            return Err("more open windows than the limit".to_string());
        }
        for (i, pane) in panes.iter().enumerate() {
            let previous = i.checked_sub(1).map(|i| &panes[i]);
            if !self.could_hold(pane, previous, watermark_ms) {
                return Err(format!(
                    "key {key:?} has an impossible window [{}, {})",
                    pane.start_ms, pane.end_ms
                ));
            }
        }
        let slot = self.slot_for(key).map_err(|err| err.to_string())?;
        for pane in &panes {
            self.timers.insert((pane.end_ms, pane.start_ms, slot));
        }
        self.slots[slot as usize].panes = KeyPanes::from_vec(panes);
        Ok(())
    }
}

impl Windows {
    /// Whether this pipeline could hold `pane` (after `previous`, if any, of the same
    /// key) at `watermark_ms`: its shape, order, openness and accumulators.
    fn could_hold(&self, pane: &Pane, previous: Option<&Pane>, watermark_ms: Option<i64>) -> bool {
        // Far outside the event-time range: refuse before any arithmetic can overflow.
        let bound = 2 * EVENT_TIME_ABS_MAX_MS;
        if pane.start_ms.abs() > bound || pane.end_ms.abs() > bound {
            return false;
        }
        let shape_ok = match self.assigner {
            Assigner::Session { gap_ms } => pane.end_ms - pane.start_ms >= gap_ms,
            Assigner::Tumbling { size_ms } => {
                pane.start_ms.rem_euclid(size_ms) == 0 && pane.end_ms == pane.start_ms + size_ms
            }
            Assigner::Sliding { size_ms, slide_ms } => {
                pane.start_ms.rem_euclid(slide_ms) == 0 && pane.end_ms == pane.start_ms + size_ms
            }
        };
        let ordered = previous.is_none_or(|previous| match self.assigner {
            // Sessions never overlap.
            Assigner::Session { .. } => previous.end_ms <= pane.start_ms,
            Assigner::Tumbling { .. } | Assigner::Sliding { .. } => {
                previous.start_ms < pane.start_ms
            }
        });
        let open =
            watermark_ms.is_none_or(|watermark| pane.end_ms + self.allowed_lateness_ms > watermark);
        let accumulators_ok = pane.accumulators.len() == self.functions.len()
            && pane
                .accumulators
                .iter()
                .zip(&self.functions)
                .all(|(accumulator, function)| accumulator.is_of(*function));
        shape_ok && ordered && open && accumulators_ok
    }
}

fn accumulate(pane: &mut Pane, inputs: &[Option<Input>]) {
    for (accumulator, input) in pane.accumulators.iter_mut().zip(inputs) {
        accumulator.add(*input);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_windows(assigner: Assigner, lateness_ms: i64) -> Windows {
        Windows::new(assigner, lateness_ms, vec![AggregateFunction::Count])
    }

    fn fire(windows: &mut Windows, watermark: i64) -> Vec<(String, i64, i64, i64)> {
        let mut fired = Vec::new();
        windows.fire(watermark, &mut fired);
        fired
            .into_iter()
            .map(|f| {
                let count = match f.accumulators[0].result() {
                    super::super::datum::Datum::Int(n) => n,
                    other => panic!("{other:?}"),
                };
                (f.key.to_string(), f.start_ms, f.end_ms, count)
            })
            .collect()
    }

    #[test]
    fn tumbling_windows_align_to_epoch_zero() {
        let mut windows = count_windows(Assigner::Tumbling { size_ms: 10 }, 0);
        for t in [0, 9, 10, -1, -10, -11] {
            windows.add("k", t, None, &[None]).unwrap();
        }
        assert_eq!(
            fire(&mut windows, 100),
            [
                ("k".into(), -20, -10, 1),
                ("k".into(), -10, 0, 2),
                ("k".into(), 0, 10, 2),
                ("k".into(), 10, 20, 1),
            ]
        );
        assert_eq!(windows.keys(), 0);
    }

    #[test]
    fn sliding_windows_cover_every_start_before_the_event() {
        let mut windows = count_windows(
            Assigner::Sliding {
                size_ms: 10,
                slide_ms: 4,
            },
            0,
        );
        windows.add("k", 9, None, &[None]).unwrap();
        // Starts 0, 4 and 8 contain 9; start -4 ends at 6.
        assert_eq!(
            fire(&mut windows, 100),
            [
                ("k".into(), 0, 10, 1),
                ("k".into(), 4, 14, 1),
                ("k".into(), 8, 18, 1)
            ]
        );
        // With the watermark at 12, windows ending by 12 are closed: only start 4 and 8.
        windows.add("k", 9, Some(12), &[None]).unwrap();
        assert_eq!(windows.open_windows(), 2);
        assert!(!windows.is_late("k", 9, Some(17)));
        assert!(windows.is_late("k", 9, Some(18)));
    }

    #[test]
    fn sessions_merge_what_events_bridge() {
        let mut windows = count_windows(Assigner::Session { gap_ms: 10 }, 0);
        windows.add("k", 0, None, &[None]).unwrap();
        windows.add("k", 30, None, &[None]).unwrap();
        // 12 after 0 is not within the gap: its own session.
        windows.add("k", 12, None, &[None]).unwrap();
        assert_eq!(windows.open_windows(), 3);
        // 21 bridges [12, 22) and [30, 40): [21, 31) overlaps both.
        windows.add("k", 21, None, &[None]).unwrap();
        assert_eq!(windows.open_windows(), 2);
        windows.add("j", 5, None, &[None]).unwrap();
        assert_eq!(
            fire(&mut windows, 40),
            [
                ("k".into(), 0, 10, 1),
                ("j".into(), 5, 15, 1),
                ("k".into(), 12, 40, 3)
            ]
        );
    }

    #[test]
    fn session_lateness_depends_on_open_sessions() {
        let mut windows = count_windows(Assigner::Session { gap_ms: 10 }, 5);
        windows.add("k", 100, None, &[None]).unwrap();
        // At watermark 100, an event at 80 (session [80, 90) + 5 <= 100) is late ...
        assert!(windows.is_late("k", 80, Some(100)));
        // ... unless it merges into the open session.
        assert!(!windows.is_late("k", 91, Some(100)));
        assert!(windows.is_late("other", 80, Some(100)));
        assert!(!windows.is_late("other", 86, Some(100)));
    }

    #[test]
    fn ties_fire_in_key_order() {
        let mut windows = count_windows(Assigner::Tumbling { size_ms: 10 }, 0);
        for key in ["b", "c", "a"] {
            windows.add(key, 5, None, &[None]).unwrap();
        }
        windows.add("a", 15, None, &[None]).unwrap();
        let keys: Vec<_> = fire(&mut windows, 30)
            .into_iter()
            .map(|f| (f.0, f.1))
            .collect();
        assert_eq!(
            keys,
            [
                ("a".into(), 0),
                ("b".into(), 0),
                ("c".into(), 0),
                ("a".into(), 10)
            ]
        );
    }

    #[test]
    fn idle_keys_are_kept_one_window_length_then_forgotten() {
        let mut windows = count_windows(Assigner::Tumbling { size_ms: 10 }, 0);
        windows.add("a", 5, None, &[None]).unwrap();
        windows.add("b", 5, None, &[None]).unwrap();
        assert_eq!(fire(&mut windows, 10).len(), 2);
        assert_eq!((windows.keys(), windows.slot_of_key.len()), (0, 2));
        // `a` is busy again; `b` stays idle.
        windows.add("a", 12, Some(10), &[None]).unwrap();
        assert_eq!((windows.keys(), windows.slot_of_key.len()), (1, 2));
        assert!(fire(&mut windows, 19).is_empty());
        assert_eq!(windows.slot_of_key.len(), 2);
        // At 20, `b` has been idle for a window length; `a` fires and goes idle.
        assert_eq!(fire(&mut windows, 20).len(), 1);
        assert_eq!((windows.keys(), windows.slot_of_key.len()), (0, 1));
        assert!(windows.keys_sorted().is_empty());
        assert!(fire(&mut windows, 30).is_empty());
        assert_eq!(windows.slot_of_key.len(), 0);
        assert_eq!(windows.key_bytes, 0);
    }

    #[test]
    fn allowed_lateness_delays_firing() {
        let mut windows = count_windows(Assigner::Tumbling { size_ms: 10 }, 5);
        windows.add("k", 5, None, &[None]).unwrap();
        assert!(fire(&mut windows, 14).is_empty());
        assert!(!windows.is_late("k", 5, Some(14)));
        assert_eq!(fire(&mut windows, 15).len(), 1);
        assert!(windows.is_late("k", 5, Some(15)));
    }
}
