//! The temporal (enrichment) join, as a pure state machine: the right side is a
//! *versioned table* — each right event is its key's version from its event time on — and
//! each left event is joined with its key's version valid at the left event's time. The
//! downstream stage of a job with `kind: temporal | temporal_left_outer` feeds it both
//! sides' events (already repartitioned by the join key) and two watermarks; it answers
//! with the joined records. No I/O and no clock; everything it remembers is in
//! [`TemporalState`], which a checkpoint writes whole (`temporal_codec.rs`) or key by key
//! ([`TemporalState::take_changed_keys`]).
//!
//! # The rules
//!
//! With `L` the join's `allowed_lateness`, `W_u` an event's own upstream task's watermark
//! before it, `Wr` the *right* watermark (the least over the right side's upstream tasks)
//! and `Wd` the downstream watermark (the least over every upstream task of both sides):
//!
//! - **Lateness** is judged upstream, once, alike on both sides: an event is late iff
//!   `ts + L <= W_u` (the interval join's rules with `within` zero).
//! - **Versions.** An admitted right event `r` is a version of its key valid from `r.ts`
//!   until the key's next version. It is a *deletion* iff its object has the member
//!   `"deleted": true`: from `r.ts` on the key has no value. Of two versions of one key
//!   with the same event time, the one whose object is greater in byte order is kept (a
//!   tie-break that does not depend on which upstream task delivered it first).
//! - **Firing.** An admitted left event `l` waits until `Wr >= l.ts + L`, then is joined
//!   with the version of its key with the greatest `ts <= l.ts`: `{"left": l, "right":
//!   <version>}`. With no such version, or a deletion, an inner temporal join emits
//!   nothing and `temporal_left_outer` emits `{"left": l, "right": null}`.
//! - **Pruning.** A version is forgotten once a newer version of its key has
//!   `ts + L <= Wd`; a key whose newest version is a deletion with `ts + L <= Wd` is
//!   forgotten whole (once no left event of it waits). The newest version of a key
//!   is otherwise always kept.
//!
//! Why the result does not depend on arrival order: an upstream task writes its marker
//! only after the events it covers, so when an event `e` arrives downstream the
//! downstream's view of its upstream is `<= W_u(e)`. A right event arriving later than
//! now has `r.ts + L > W_u(r) >= Wr`; so once `Wr >= l.ts + L`, every future right event
//! has `r.ts > l.ts` and cannot change `l`'s version: firing then sees every version `l`
//! can see. A version `v` is pruned only when a newer `v'` has `v'.ts + L <= Wd`; a left
//! event arriving later has `l.ts + L > W_u(l) >= Wd`, so `l.ts > v'.ts` and `v` is not its
//! version; a left event still waiting has `l.ts + L > Wr >= Wd` (firing runs before
//! pruning), likewise. A deleted key pruned whole reads as "no version", which is what
//! its deletion gave every later left event anyway.
//!
//! # Results
//!
//! A joined record is keyed by the join key, its event time the left event's. On one
//! watermark move, fired left events come in order of (`ts + L`, key), then arrival; a
//! left event that arrives already fireable is joined at once.
//!
//! # Bounds
//!
//! The interval join's `JoinLimits`: versions and waiting left events per partition and
//! per key, and bytes per partition. Reaching one stops the partition with
//! [`PipelineError::StateLimit`] before anything of the event is emitted.

use std::collections::{BTreeMap, BTreeSet};

use super::join::{entry_bytes, joined, JoinKind, JoinPlan, Joined};
use super::json;
use super::limits::{PipelineError, StateLimit};
use weir_core::bugs::{planted, PlantedBug};

/// One version of a key: a right event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    pub(crate) event_ms: i64,
    /// The right event's object as compact JSON.
    pub(crate) object: Vec<u8>,
    /// Whether the object says `"deleted": true`.
    pub(crate) deleted: bool,
}

/// A left event waiting for the right watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub(crate) event_ms: i64,
    pub(crate) object: Vec<u8>,
}

/// One key's versions (by event time, ascending, at most one a time) and waiting left
/// events (in arrival order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TemporalKey {
    pub(crate) versions: Vec<Version>,
    pub(crate) waiting: Vec<Waiting>,
}

impl TemporalKey {
    fn len(&self) -> usize {
        self.versions.len() + self.waiting.len()
    }

    fn bytes(&self, key: &str) -> usize {
        let versions = self.versions.iter().map(|v| entry_bytes(key, &v.object));
        let waiting = self.waiting.iter().map(|w| entry_bytes(key, &w.object));
        versions.chain(waiting).sum()
    }

    /// The version valid at `event_ms`, unless it is a deletion.
    fn version_at(&self, event_ms: i64) -> Option<&Version> {
        let valid = if planted(PlantedBug::TemporalJoinUsesLatest) {
            self.versions.last()
        } else {
            let after = self.versions.partition_point(|v| v.event_ms <= event_ms);
            after.checked_sub(1).and_then(|at| self.versions.get(at))
        };
        valid.filter(|v| !v.deleted)
    }
}

/// One partition's temporal join state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TemporalState {
    keys: BTreeMap<String, TemporalKey>,
    /// `(ts + L, key)` of every waiting left event: a right watermark move visits only
    /// what it makes fireable.
    fire: BTreeSet<(i64, String)>,
    /// `(ts + L, key)` of every version: when `Wd` passes it, older versions of the key
    /// (or the whole key, after a deletion) can go.
    prune: BTreeSet<(i64, String)>,
    entries: usize,
    bytes: usize,
    /// Keys whose state changed since the changes were last taken.
    changed: BTreeSet<String>,
}

impl TemporalState {
    /// Takes a left event with join key `key`, time `event_ms` and object `object`; joins
    /// it at once into `out` if the right watermark `right_watermark_ms` already passed
    /// it, else keeps it waiting.
    pub(crate) fn on_left(
        &mut self,
        plan: &JoinPlan,
        key: &str,
        event_ms: i64,
        object: &[u8],
        right_watermark_ms: Option<i64>,
        out: &mut Vec<Joined>,
    ) -> Result<(), PipelineError> {
        let fire_ms = plan.fire_ms(event_ms);
        if right_watermark_ms.is_some_and(|w| fire_ms <= w) {
            let versions = self.keys.get(key);
            fire(plan, key, event_ms, object, versions, out);
            return Ok(());
        }
        let added = self.admit(plan, key, object)?;
        let entry = self.keys.entry(key.to_string()).or_default();
        entry.waiting.push(Waiting {
            event_ms,
            object: object.to_vec(),
        });
        self.entries += 1;
        self.bytes += added;
        self.fire.insert((fire_ms, key.to_string()));
        self.changed.insert(key.to_string());
        Ok(())
    }

    /// Takes a right event: a new version of `key` from `event_ms` on.
    pub(crate) fn on_right(
        &mut self,
        plan: &JoinPlan,
        key: &str,
        event_ms: i64,
        object: &[u8],
    ) -> Result<(), PipelineError> {
        let version = Version {
            event_ms,
            object: object.to_vec(),
            deleted: is_deletion(object),
        };
        let same_time = self.keys.get(key).and_then(|entry| {
            entry
                .versions
                .binary_search_by_key(&event_ms, |v| v.event_ms)
                .ok()
                .map(|at| (entry, at))
        });
        if let Some((entry, at)) = same_time {
            // One version a time: the greater object wins, whichever came first.
            if entry.versions[at].object >= version.object {
                return Ok(());
            }
            let old = entry_bytes(key, &entry.versions[at].object);
            let new = entry_bytes(key, &version.object);
            if self.bytes.saturating_sub(old).saturating_add(new) > plan.limits.bytes_per_partition
            {
                return Err(PipelineError::StateLimit(StateLimit::JoinBytesPerPartition));
            }
            if let Some(entry) = self.keys.get_mut(key) {
                entry.versions[at] = version;
            }
            self.bytes = self.bytes - old + new;
            self.changed.insert(key.to_string());
            return Ok(());
        }
        let added = self.admit(plan, key, object)?;
        let entry = self.keys.entry(key.to_string()).or_default();
        let at = entry.versions.partition_point(|v| v.event_ms < event_ms);
        entry.versions.insert(at, version);
        self.entries += 1;
        self.bytes += added;
        self.prune.insert((plan.fire_ms(event_ms), key.to_string()));
        self.changed.insert(key.to_string());
        Ok(())
    }

    /// Moves the watermarks: fires every waiting left event with `ts + L <= Wr` into
    /// `out`, then prunes what `Wd` makes unreachable (in that order: see the module
    /// documentation).
    pub(crate) fn on_watermarks(
        &mut self,
        plan: &JoinPlan,
        right_watermark_ms: Option<i64>,
        watermark_ms: Option<i64>,
        out: &mut Vec<Joined>,
    ) {
        if let Some(right) = right_watermark_ms {
            self.fire_due(plan, right, out);
        }
        if let Some(watermark) = watermark_ms {
            self.prune_due(plan, watermark);
        }
        debug_assert_eq!(self.keys.is_empty(), self.entries == 0);
    }

    fn fire_due(&mut self, plan: &JoinPlan, right_watermark_ms: i64, out: &mut Vec<Joined>) {
        while let Some((fire_ms, _)) = self.fire.first() {
            if *fire_ms > right_watermark_ms {
                break;
            }
            let Some((_, key)) = self.fire.pop_first() else {
                break;
            };
            let Some(entry) = self.keys.get_mut(&key) else {
                continue;
            };
            let waiting = std::mem::take(&mut entry.waiting);
            let (due, kept): (Vec<Waiting>, Vec<Waiting>) = waiting
                .into_iter()
                .partition(|w| plan.fire_ms(w.event_ms) <= right_watermark_ms);
            entry.waiting = kept;
            if due.is_empty() {
                continue;
            }
            let freed: usize = due.iter().map(|w| entry_bytes(&key, &w.object)).sum();
            for left in &due {
                fire(plan, &key, left.event_ms, &left.object, Some(entry), out);
            }
            debug_assert!(self.entries >= due.len() && self.bytes >= freed);
            self.entries -= due.len();
            self.bytes -= freed;
            if entry.len() == 0 {
                self.keys.remove(&key);
            }
            self.changed.insert(key);
        }
    }

    fn prune_due(&mut self, plan: &JoinPlan, watermark_ms: i64) {
        while let Some((prune_ms, _)) = self.prune.first() {
            if *prune_ms > watermark_ms {
                break;
            }
            let Some((_, key)) = self.prune.pop_first() else {
                break;
            };
            let Some(entry) = self.keys.get_mut(&key) else {
                continue;
            };
            // The newest version `Wd` has passed: everything before it is unreachable.
            let passed = entry
                .versions
                .partition_point(|v| plan.fire_ms(v.event_ms) <= watermark_ms);
            let mut drop = passed.saturating_sub(1);
            let newest_gone =
                passed == entry.versions.len() && entry.versions.last().is_some_and(|v| v.deleted);
            if newest_gone {
                drop = passed;
            }
            if drop == 0 {
                continue;
            }
            let freed: usize = entry.versions[..drop]
                .iter()
                .map(|v| entry_bytes(&key, &v.object))
                .sum();
            entry.versions.drain(..drop);
            debug_assert!(self.entries >= drop && self.bytes >= freed);
            self.entries -= drop;
            self.bytes -= freed;
            if entry.len() == 0 {
                self.keys.remove(&key);
            }
            self.changed.insert(key);
        }
    }

    /// Checks the limits for one more entry of `key` with `object`; its byte count.
    fn admit(&self, plan: &JoinPlan, key: &str, object: &[u8]) -> Result<usize, PipelineError> {
        let added = entry_bytes(key, object);
        if self.entries >= plan.limits.entries_per_partition {
            return Err(PipelineError::StateLimit(
                StateLimit::JoinEntriesPerPartition,
            ));
        }
        if self.bytes.saturating_add(added) > plan.limits.bytes_per_partition {
            return Err(PipelineError::StateLimit(StateLimit::JoinBytesPerPartition));
        }
        if self
            .keys
            .get(key)
            .is_some_and(|entry| entry.len() >= plan.limits.entries_per_key)
        {
            return Err(PipelineError::StateLimit(StateLimit::JoinEntriesPerKey));
        }
        Ok(added)
    }

    #[cfg(test)]
    /// Versions and waiting left events, over all keys.
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// Estimated bytes the state holds.
    pub(crate) fn state_bytes(&self) -> usize {
        self.bytes
    }

    /// Every key with its state, in key order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = (&str, &TemporalKey)> {
        self.keys.iter().map(|(key, entry)| (key.as_str(), entry))
    }

    /// One key's state, if it has any.
    pub(crate) fn key(&self, key: &str) -> Option<&TemporalKey> {
        self.keys.get(key)
    }

    /// The keys whose state changed since the last call, in key order.
    pub(crate) fn take_changed_keys(&mut self) -> Vec<String> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Puts back one key's state read from a snapshot or a local copy. Refuses what no
    /// running join could have held: an empty key, a key given twice, versions out of
    /// order or at one time twice, a limit exceeded. (The codec derives each version's
    /// deletion flag from its object.)
    pub(crate) fn restore_key(
        &mut self,
        plan: &JoinPlan,
        key: &str,
        entry: TemporalKey,
    ) -> Result<(), String> {
        if entry.len() == 0 {
            return Err(format!("temporal join key {key:?} holds nothing"));
        }
        if entry.len() > plan.limits.entries_per_key {
            return Err(format!("temporal join key {key:?} holds more than allowed"));
        }
        if entry
            .versions
            .windows(2)
            .any(|pair| pair[0].event_ms >= pair[1].event_ms)
        {
            return Err(format!("temporal join key {key:?}: versions out of order"));
        }
        if self.keys.contains_key(key) {
            return Err(format!("temporal join key {key:?} given twice"));
        }
        let bytes = entry.bytes(key);
        if self.entries + entry.len() > plan.limits.entries_per_partition
            || self.bytes.saturating_add(bytes) > plan.limits.bytes_per_partition
        {
            return Err("the temporal join state exceeds its limits".into());
        }
        for version in &entry.versions {
            self.prune
                .insert((plan.fire_ms(version.event_ms), key.to_string()));
        }
        for waiting in &entry.waiting {
            self.fire
                .insert((plan.fire_ms(waiting.event_ms), key.to_string()));
        }
        self.entries += entry.len();
        self.bytes += bytes;
        self.keys.insert(key.to_string(), entry);
        Ok(())
    }
}

/// Joins left event (`key`, `event_ms`, `object`) with its key's version valid at
/// `event_ms`, or with nothing for an outer join.
fn fire(
    plan: &JoinPlan,
    key: &str,
    event_ms: i64,
    object: &[u8],
    entry: Option<&TemporalKey>,
    out: &mut Vec<Joined>,
) {
    match entry.and_then(|entry| entry.version_at(event_ms)) {
        // The result's event time is the left event's, whatever the version's.
        Some(version) => out.push(joined(
            key,
            event_ms,
            object,
            Some((event_ms, &version.object)),
        )),
        None if plan.kind == JoinKind::TemporalLeftOuter => {
            out.push(joined(key, event_ms, object, None));
        }
        None => {}
    }
}

/// Whether a right object deletes its key: it has the member `"deleted": true`.
pub(crate) fn is_deletion(object: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(object) else {
        return false;
    };
    let text = text.trim();
    text.starts_with('{') && json::object_get(text, "deleted") == Some("true")
}
