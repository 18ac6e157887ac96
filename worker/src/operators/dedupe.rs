//! The memory of one `dedupe` stage: for each key, the event time of its last kept
//! occurrence. A key is remembered while `t_prev + ttl > watermark`; an index ordered by
//! that time lets the watermark's advance forget keys in order, so memory follows the
//! watermark instead of growing with every key ever seen.
//!
//! The stage itself ([`Dedupe`]) is here too: its key expression, its ttl and which
//! memory is its own.

use super::compile::{compile_expr, millis, CompileError};
use super::expr::{CelEnv, Expr};
use super::hash::{FxHashMap, FxHashSet};
use super::key_by::key_text;
use super::limits::{PipelineError, StateLimit, DEDUPE_KEYS_MAX};
use super::object::Obj;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Bytes of bookkeeping per remembered key, beyond the key itself, for
/// [`DedupeMemory::state_bytes`]: two table entries and two reference counts.
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// A compiled `dedupe` stage.
#[derive(Debug)]
pub(crate) struct Dedupe {
    /// The spec field it came from, for dead letters (`pipeline[i].dedupe`).
    field: String,
    key: Expr,
    ttl_ms: i64,
    /// Its memory's index among the pipeline's dedupe memories.
    memory: usize,
}

impl Dedupe {
    /// The stage at spec field `field`, remembering in the pipeline's memory `memory`.
    pub(crate) fn compile(
        field: String,
        spec: &weir_core::spec::Dedupe,
        memory: usize,
        env: &cel::Env,
    ) -> Result<Self, CompileError> {
        Ok(Dedupe {
            key: compile_expr(&format!("{field}.key"), &spec.key, env)?,
            field,
            ttl_ms: millis(spec.ttl),
            memory,
        })
    }

    pub(crate) fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// Whether the event goes on (`Ok(true)`) or is a repeat (`Ok(false)`), remembered in
    /// its memory among `memories`; an inner error is the dead letter's detail (the key
    /// failed), an outer one a state limit.
    #[inline]
    pub(crate) fn admit(
        &self,
        memories: &mut [DedupeMemory],
        obj: &Obj<'_>,
        env: &CelEnv,
        event_ms: i64,
        watermark_ms: Option<i64>,
    ) -> Result<Result<bool, String>, PipelineError> {
        let text = match key_text(&self.key, obj, env) {
            Ok(text) => text,
            Err(message) => return Ok(Err(format!("{}.key: {message}", self.field))),
        };
        let admitted = memories[self.memory].admit(&text, event_ms, watermark_ms, self.ttl_ms)?;
        Ok(Ok(admitted))
    }
}

/// What one dedupe stage remembers.
#[derive(Debug, Clone, Default)]
pub(crate) struct DedupeMemory {
    last_kept_ms: FxHashMap<Arc<str>, i64>,
    by_time: BTreeSet<(i64, Arc<str>)>,
    key_bytes: usize,
    /// Keys kept or forgotten since the changes were last taken, unless
    /// `changes_overflowed`.
    changed: FxHashSet<Arc<str>>,
    changes_overflowed: bool,
}

/// Keys whose changes one dedupe stage tracks between checkpoints; past this many the next
/// checkpoint rewrites the local copy whole.
pub(crate) const CHANGED_KEYS_TRACKED_MAX: usize = 2 * DEDUPE_KEYS_MAX;

impl DedupeMemory {
    /// Decides on an event with `key` at `event_ms`: `Ok(true)` to keep it (and remember
    /// it), `Ok(false)` to drop it as a repeat of a remembered key kept less than `ttl_ms`
    /// away from it, before or after.
    pub(crate) fn admit(
        &mut self,
        key: &str,
        event_ms: i64,
        watermark_ms: Option<i64>,
        ttl_ms: i64,
    ) -> Result<bool, PipelineError> {
        if let Some((key, &last_ms)) = self.last_kept_ms.get_key_value(key) {
            let remembered =
                watermark_ms.is_none_or(|watermark| last_ms.saturating_add(ttl_ms) > watermark);
            if remembered && (event_ms - last_ms).abs() < ttl_ms {
                return Ok(false);
            }
            let key = Arc::clone(key);
            self.by_time.remove(&(last_ms, Arc::clone(&key)));
            self.by_time.insert((event_ms, Arc::clone(&key)));
            self.mark_changed(&key);
            self.last_kept_ms.insert(key, event_ms);
            return Ok(true);
        }
        if self.last_kept_ms.len() >= DEDUPE_KEYS_MAX {
            if let Some(watermark) = watermark_ms {
                self.forget(watermark, ttl_ms);
            }
            if self.last_kept_ms.len() >= DEDUPE_KEYS_MAX {
                return Err(PipelineError::StateLimit(StateLimit::DedupeKeys));
            }
        }
        let key: Arc<str> = Arc::from(key);
        self.mark_changed(&key);
        self.insert(key, event_ms);
        Ok(true)
    }

    fn mark_changed(&mut self, key: &Arc<str>) {
        if self.changes_overflowed || self.changed.contains(key) {
            return;
        }
        if self.changed.len() >= CHANGED_KEYS_TRACKED_MAX {
            self.changes_overflowed = true;
            self.changed = FxHashSet::default();
            return;
        }
        self.changed.insert(Arc::clone(key));
    }

    /// The keys kept or forgotten since the last call, in key order; `None` if more
    /// changed than are tracked.
    pub(crate) fn take_changed(&mut self) -> Option<Vec<Arc<str>>> {
        let changed = std::mem::take(&mut self.changed);
        if std::mem::take(&mut self.changes_overflowed) {
            return None;
        }
        let mut changed: Vec<Arc<str>> = changed.into_iter().collect();
        changed.sort_unstable();
        Some(changed)
    }

    /// When `key`'s last kept occurrence was, if it is remembered.
    pub(crate) fn last_kept_ms(&self, key: &str) -> Option<i64> {
        self.last_kept_ms.get(key).copied()
    }

    fn insert(&mut self, key: Arc<str>, last_ms: i64) {
        self.key_bytes += key.len();
        self.by_time.insert((last_ms, Arc::clone(&key)));
        self.last_kept_ms.insert(key, last_ms);
    }

    /// Forgets the keys the watermark has passed: those with `t_prev + ttl <= watermark`.
    pub(crate) fn forget(&mut self, watermark_ms: i64, ttl_ms: i64) {
        while let Some((last_ms, _)) = self.by_time.first() {
            if last_ms.saturating_add(ttl_ms) > watermark_ms {
                break;
            }
            if let Some((_, key)) = self.by_time.pop_first() {
                self.key_bytes -= key.len();
                self.last_kept_ms.remove(&key);
                self.mark_changed(&key);
            }
        }
    }

    /// How many keys are remembered.
    pub(crate) fn len(&self) -> usize {
        self.last_kept_ms.len()
    }

    /// An estimate of the memory held.
    pub(crate) fn state_bytes(&self) -> usize {
        self.key_bytes + self.len() * ENTRY_OVERHEAD_BYTES
    }

    /// Every remembered key and its last kept time, in key order (for snapshots).
    pub(crate) fn entries_sorted(&self) -> Vec<(&str, i64)> {
        let mut entries: Vec<(&str, i64)> = self
            .last_kept_ms
            .iter()
            .map(|(key, &ms)| (key.as_ref(), ms))
            .collect();
        entries.sort_unstable();
        entries
    }

    /// Restores one entry (from a snapshot).
    pub(crate) fn restore_entry(&mut self, key: &str, last_ms: i64) -> Result<(), String> {
        if self.last_kept_ms.contains_key(key) {
            return Err(format!("dedupe key {key:?} appears twice"));
        }
        if self.last_kept_ms.len() >= DEDUPE_KEYS_MAX {
            return Err("more dedupe keys than the limit".to_string());
        }
        self.insert(Arc::from(key), last_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_within_ttl_either_side() {
        let mut memory = DedupeMemory::default();
        assert_eq!(memory.admit("a", 100, None, 10), Ok(true));
        assert_eq!(memory.admit("a", 109, None, 10), Ok(false));
        assert_eq!(memory.admit("a", 91, None, 10), Ok(false));
        assert_eq!(memory.admit("a", 100, None, 10), Ok(false));
        // Exactly ttl away is not a repeat; it is kept and becomes the reference.
        assert_eq!(memory.admit("a", 110, None, 10), Ok(true));
        assert_eq!(memory.admit("a", 101, None, 10), Ok(false));
        assert_eq!(memory.admit("a", 100, None, 10), Ok(true));
        assert_eq!(memory.admit("b", 100, None, 10), Ok(true));
    }

    #[test]
    fn forgets_what_the_watermark_passed() {
        let mut memory = DedupeMemory::default();
        assert_eq!(memory.admit("a", 100, Some(0), 10), Ok(true));
        assert_eq!(memory.admit("b", 105, Some(0), 10), Ok(true));
        memory.forget(109, 10);
        assert_eq!(memory.len(), 2);
        memory.forget(110, 10);
        assert_eq!(memory.len(), 1);
        // `a` is forgotten: a repeat within ttl is kept.
        assert_eq!(memory.admit("a", 105, Some(110), 10), Ok(true));
        // A remembered key past the watermark but not yet forgotten is not a repeat.
        assert_eq!(memory.admit("c", 50, Some(110), 10), Ok(true));
        assert_eq!(memory.admit("c", 52, Some(110), 10), Ok(true));
        assert_eq!(memory.entries_sorted(), [("a", 105), ("b", 105), ("c", 52)]);
        assert_eq!(memory.state_bytes(), 3 + 3 * ENTRY_OVERHEAD_BYTES);
    }
}
