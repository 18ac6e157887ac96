//! The interval join of two keyed streams, as a pure state machine: the downstream stage
//! of a job with a `join` feeds it the events of both sides (already repartitioned by the
//! join key) and the downstream watermark; it answers with the joined records. No I/O and
//! no clock, and everything it remembers is in [`JoinState`], which a checkpoint writes
//! whole (`join_codec.rs`) or key by key ([`JoinState::take_changed_keys`]).
//!
//! # The rules
//!
//! With `within` the join's bound and `L` its `allowed_lateness`; `W_u` an event's own
//! upstream task's watermark before it, and `Wd` the downstream watermark (the least over
//! every upstream task of both sides):
//!
//! - **Lateness** is judged upstream, once ([`JoinPlan::is_late`]): a left event `l` is
//!   late iff `l.ts + within + L <= W_u(l)`, a right event `r` iff `r.ts + L <= W_u(r)`.
//!   A late event never reaches this state machine.
//! - **Matching.** Left `l` and right `r` with the same key match iff
//!   `l.ts <= r.ts <= l.ts + within`. Every matching pair of admitted events is emitted
//!   exactly once, when the second of the two arrives ([`JoinState::on_event`]).
//! - **Retention.** Every buffered event, of either side, is kept until
//!   `Wd >= ts + within + L` ([`JoinState::on_watermark`]).
//! - **Left outer.** A left event that matched nothing is emitted with `"right": null`
//!   when it leaves the state.
//!
//! Why the matched set does not depend on the order in which the two sides' events
//! arrive: an upstream task writes its watermark marker only after the events it covers,
//! so when an event `e` arrives downstream, `Wd <= W_u(e)`. If `l` came first and `r`
//! matches it, then at `r`'s arrival `Wd <= W_u(r) < r.ts + L <= l.ts + within + L`, so
//! `l` is still kept. If `r` came first, then at `l`'s arrival
//! `Wd <= W_u(l) < l.ts + within + L <= r.ts + within + L`, so `r` is still kept. Either
//! way the pair meets exactly once. And since `Wd` never decreases, a left event leaves
//! the state only after every right event that could match it has arrived: its outer
//! result is emitted only when no match can come any more. (The same inequalities show
//! no admitted event is already due when it arrives.)
//!
//! # Results
//!
//! A joined record is `{"left": <left object>, "right": <right object or null>}`, its
//! key the join key, its event time the later of the two event times (the left event's
//! for an outer result). Within one event, matches are emitted in the order the other
//! side's events arrived; on a watermark move, outer results in order of
//! (`ts + within + L`, key), then arrival.
//!
//! # Bounds
//!
//! [`JoinLimits`]: events per partition, events per key and buffered bytes per
//! partition. Reaching one stops the partition with [`PipelineError::StateLimit`] before
//! anything of the event is emitted: dropping state would change results silently.

use std::collections::{BTreeMap, BTreeSet};

pub(crate) use super::shuffled::JoinSide;

use super::limits::{
    PipelineError, StateLimit, JOIN_BYTES_PER_PARTITION_MAX, JOIN_ENTRIES_PER_KEY_MAX,
    JOIN_ENTRIES_PER_PARTITION_MAX,
};

/// Bytes of bookkeeping per buffered event beyond its object, counted in
/// [`JoinState::state_bytes`] and against [`JoinLimits::bytes_per_partition`].
pub(crate) const ENTRY_OVERHEAD_BYTES: usize = 48;

/// Which join, and what a left event that matched nothing gives (the spec's kind; a
/// temporal one runs `temporal.rs`).
pub(crate) use weir_core::spec::JoinKind;

/// The bounds on one partition's join state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JoinLimits {
    /// Buffered events of both sides, over all keys.
    pub(crate) entries_per_partition: usize,
    /// Buffered events of both sides of one key.
    pub(crate) entries_per_key: usize,
    /// Buffered bytes (objects, keys and bookkeeping).
    pub(crate) bytes_per_partition: usize,
}

impl Default for JoinLimits {
    fn default() -> Self {
        JoinLimits {
            entries_per_partition: JOIN_ENTRIES_PER_PARTITION_MAX,
            entries_per_key: JOIN_ENTRIES_PER_KEY_MAX,
            bytes_per_partition: JOIN_BYTES_PER_PARTITION_MAX,
        }
    }
}

/// A compiled `join` stage: what never changes while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JoinPlan {
    pub(crate) within_ms: i64,
    pub(crate) allowed_lateness_ms: i64,
    pub(crate) kind: JoinKind,
    pub(crate) limits: JoinLimits,
}

impl JoinPlan {
    /// The plan of a spec's `join`, with the default limits.
    pub(crate) fn from_spec(join: &weir_core::spec::Join) -> JoinPlan {
        JoinPlan {
            within_ms: super::compile::millis(join.within),
            allowed_lateness_ms: super::compile::millis(join.allowed_lateness_or_zero()),
            kind: join.kind,
            limits: JoinLimits::default(),
        }
    }

    #[cfg(test)]
    /// Whether an event of `side` at `event_ms` is late at its upstream task's watermark
    /// before it (`None`: nothing is late yet).
    pub(crate) fn is_late(&self, side: JoinSide, event_ms: i64, watermark_ms: Option<i64>) -> bool {
        let Some(watermark) = watermark_ms else {
            return false;
        };
        let bound = match side {
            JoinSide::Left => event_ms.saturating_add(self.within_ms),
            JoinSide::Right => event_ms,
        };
        bound.saturating_add(self.allowed_lateness_ms) <= watermark
    }

    /// The downstream watermark at which an event at `event_ms` (either side) leaves the
    /// state.
    pub(crate) fn due_ms(&self, event_ms: i64) -> i64 {
        event_ms
            .saturating_add(self.within_ms)
            .saturating_add(self.allowed_lateness_ms)
    }

    /// The watermark at which a temporal join fires a left event at `event_ms` (the right
    /// one) or lets go of the versions before one at `event_ms` (the downstream one).
    pub(crate) fn fire_ms(&self, event_ms: i64) -> i64 {
        event_ms.saturating_add(self.allowed_lateness_ms)
    }

    /// Whether left at `left_ms` and right at `right_ms` match (keys aside).
    pub(crate) fn matches(&self, left_ms: i64, right_ms: i64) -> bool {
        left_ms <= right_ms && right_ms <= left_ms.saturating_add(self.within_ms)
    }
}

/// One buffered event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Buffered {
    pub(crate) event_ms: i64,
    /// The event's object as compact JSON.
    pub(crate) object: Vec<u8>,
    /// Whether it was part of a pair (kept for left events; always false on the right).
    pub(crate) matched: bool,
}

/// One key's buffered events, each side in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyBuffers {
    pub(crate) left: Vec<Buffered>,
    pub(crate) right: Vec<Buffered>,
}

impl KeyBuffers {
    fn len(&self) -> usize {
        self.left.len() + self.right.len()
    }
}

/// A result of the join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    /// The join key: the result's Kafka key.
    pub(crate) key: String,
    /// The later event time of the pair; the left event's for an outer result.
    pub(crate) event_ms: i64,
    /// `{"left":...,"right":...}`.
    pub(crate) value: Vec<u8>,
}

/// One partition's join state: both sides' buffered events by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JoinState {
    keys: BTreeMap<String, KeyBuffers>,
    /// `(due_ms, key)` of every buffered event (one entry per distinct pair), so a
    /// watermark move visits only what it makes due.
    due: BTreeSet<(i64, String)>,
    entries: usize,
    bytes: usize,
    /// Keys whose buffers changed since the changes were last taken.
    changed: BTreeSet<String>,
}

impl JoinState {
    /// Takes the event of `side` with join key `key`, time `event_ms` and object `object`
    /// (compact JSON), appending the pairs it completes to `out`.
    pub(crate) fn on_event(
        &mut self,
        plan: &JoinPlan,
        side: JoinSide,
        key: &str,
        event_ms: i64,
        object: &[u8],
        out: &mut Vec<Joined>,
    ) -> Result<(), PipelineError> {
        let added = entry_bytes(key, object);
        if self.entries >= plan.limits.entries_per_partition {
            return Err(PipelineError::StateLimit(
                StateLimit::JoinEntriesPerPartition,
            ));
        }
        if self.bytes.saturating_add(added) > plan.limits.bytes_per_partition {
            return Err(PipelineError::StateLimit(StateLimit::JoinBytesPerPartition));
        }
        let buffers = self.keys.entry(key.to_string()).or_default();
        if buffers.len() >= plan.limits.entries_per_key {
            return Err(PipelineError::StateLimit(StateLimit::JoinEntriesPerKey));
        }
        let mut matched = false;
        match side {
            JoinSide::Left => {
                for right in &buffers.right {
                    if plan.matches(event_ms, right.event_ms) {
                        matched = true;
                        out.push(joined(
                            key,
                            event_ms,
                            object,
                            Some((right.event_ms, &right.object)),
                        ));
                    }
                }
            }
            JoinSide::Right => {
                for left in &mut buffers.left {
                    if plan.matches(left.event_ms, event_ms) {
                        left.matched = true;
                        out.push(joined(
                            key,
                            left.event_ms,
                            &left.object,
                            Some((event_ms, object)),
                        ));
                    }
                }
            }
        }
        let buffered = Buffered {
            event_ms,
            object: object.to_vec(),
            matched: matched && side == JoinSide::Left,
        };
        match side {
            JoinSide::Left => buffers.left.push(buffered),
            JoinSide::Right => buffers.right.push(buffered),
        }
        self.entries += 1;
        self.bytes += added;
        self.due.insert((plan.due_ms(event_ms), key.to_string()));
        self.changed.insert(key.to_string());
        Ok(())
    }

    /// Moves the downstream watermark to `watermark_ms`: every event with
    /// `ts + within + L <= watermark_ms` leaves the state; a left outer join emits the
    /// unmatched left ones into `out`.
    pub(crate) fn on_watermark(
        &mut self,
        plan: &JoinPlan,
        watermark_ms: i64,
        out: &mut Vec<Joined>,
    ) {
        while let Some((due_ms, _)) = self.due.first() {
            if *due_ms > watermark_ms {
                break;
            }
            let Some((_, key)) = self.due.pop_first() else {
                break;
            };
            let Some(buffers) = self.keys.get_mut(&key) else {
                continue;
            };
            let before = buffers.len();
            let mut freed = 0;
            buffers.left.retain(|left| {
                let keep = plan.due_ms(left.event_ms) > watermark_ms;
                if !keep {
                    freed += entry_bytes(&key, &left.object);
                    if plan.kind == JoinKind::LeftOuter && !left.matched {
                        out.push(joined(&key, left.event_ms, &left.object, None));
                    }
                }
                keep
            });
            buffers.right.retain(|right| {
                let keep = plan.due_ms(right.event_ms) > watermark_ms;
                if !keep {
                    freed += entry_bytes(&key, &right.object);
                }
                keep
            });
            let removed = before - buffers.len();
            if removed == 0 {
                continue;
            }
            if buffers.len() == 0 {
                self.keys.remove(&key);
            }
            debug_assert!(self.entries >= removed && self.bytes >= freed);
            self.entries -= removed;
            self.bytes -= freed;
            self.changed.insert(key);
        }
        debug_assert_eq!(self.keys.is_empty(), self.entries == 0);
    }

    #[cfg(test)]
    /// Buffered events of both sides.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// Estimated bytes the state holds.
    pub(crate) fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Every key with its buffers, in key order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (&str, &KeyBuffers)> {
        self.keys
            .iter()
            .map(|(key, buffers)| (key.as_str(), buffers))
    }

    /// One key's buffers, if it has any.
    pub(crate) fn key(&self, key: &str) -> Option<&KeyBuffers> {
        self.keys.get(key)
    }

    /// The keys whose buffers changed (kept, matched, forgotten) since the last call, in
    /// key order.
    pub(crate) fn take_changed_keys(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Puts back one key's buffers read from a snapshot or a local copy. Refuses what no
    /// running join could have held: a key given twice, an empty key entry, a limit
    /// exceeded.
    pub(crate) fn restore_key(
        &mut self,
        plan: &JoinPlan,
        key: &str,
        buffers: KeyBuffers,
    ) -> Result<(), String> {
        if buffers.len() == 0 {
            return Err(format!("join key {key:?} holds no events"));
        }
        if buffers.len() > plan.limits.entries_per_key {
            return Err(format!("join key {key:?} holds more events than allowed"));
        }
        if buffers.right.iter().any(|right| right.matched) {
            return Err(format!("join key {key:?} has a right event marked matched"));
        }
        if self.keys.contains_key(key) {
            return Err(format!("join key {key:?} given twice"));
        }
        let bytes: usize = buffers
            .left
            .iter()
            .chain(&buffers.right)
            .map(|b| entry_bytes(key, &b.object))
            .sum();
        if self.entries + buffers.len() > plan.limits.entries_per_partition
            || self.bytes.saturating_add(bytes) > plan.limits.bytes_per_partition
        {
            return Err("the join state exceeds its limits".into());
        }
        for buffered in buffers.left.iter().chain(&buffers.right) {
            self.due
                .insert((plan.due_ms(buffered.event_ms), key.to_string()));
        }
        self.entries += buffers.len();
        self.bytes += bytes;
        self.keys.insert(key.to_string(), buffers);
        Ok(())
    }
}

/// What one buffered event counts against the byte limit.
pub(crate) fn entry_bytes(key: &str, object: &[u8]) -> usize {
    key.len() + object.len() + ENTRY_OVERHEAD_BYTES
}

/// The result of `left` (at `left_ms`) with `right` (its time and object), or with
/// nothing.
pub(crate) fn joined(key: &str, left_ms: i64, left: &[u8], right: Option<(i64, &[u8])>) -> Joined {
    let right_len = right.map_or(4, |(_, object)| object.len());
    let mut value = Vec::with_capacity(left.len() + right_len + 20);
    value.extend_from_slice(b"{\"left\":");
    value.extend_from_slice(left);
    value.extend_from_slice(b",\"right\":");
    match right {
        Some((_, object)) => value.extend_from_slice(object),
        None => value.extend_from_slice(b"null"),
    }
    value.push(b'}');
    Joined {
        key: key.to_string(),
        event_ms: right.map_or(left_ms, |(right_ms, _)| right_ms.max(left_ms)),
        value,
    }
}
