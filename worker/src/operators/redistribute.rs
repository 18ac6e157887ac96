//! A rescaled downstream task's state: the keys that route to it, gathered from the
//! pipelines every task of the stage's previous generation restored at the rescale's cut
//! (docs/ARCHITECTURE.md, "Rescaling"). Keys move one by one (no key groups), so any
//! partition count can follow any other.
//!
//! The cut was drained: every upstream task had paused and every previous task had read
//! the repartition topic to its end, so every previous task saw every upstream task's
//! watermark markers up to the same point. The new task takes, per upstream task, the
//! least watermark any previous task holds (they agree after a drain; the least is the
//! safe choice should they not), and the greatest event time any of them saw.

use super::pipeline::Pipeline;
use super::plan::{watermark, RestoreError};
use super::role::PipelineRole;
use weir_core::bugs::{planted, PlantedBug};
use weir_core::routing::partition_for_key;
use weir_core::spec::JobSpec;

/// Which keys a rescaled task keeps: those routed to partition `index` of `partitions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange {
    pub index: u32,
    pub partitions: u32,
}

impl KeyRange {
    /// Whether `key` routes to this task, as upstream tasks route it (Kafka's murmur2).
    pub fn holds(&self, key: &str) -> bool {
        partition_for_key(key.as_bytes(), self.partitions) == self.index
    }
}

impl Pipeline {
    /// The pipeline of `spec`'s `role` (a downstream stage) for the task `range` names,
    /// holding the keys of `previous` (the restored pipelines of the previous generation's
    /// tasks, in task order) that route to it.
    pub fn redistribute(
        spec: &JobSpec,
        role: PipelineRole,
        previous: &[Pipeline],
        range: KeyRange,
    ) -> Result<Pipeline, RestoreError> {
        let PipelineRole::Downstream { .. } = role else {
            return Err(RestoreError::Upgrade(format!(
                "only a downstream stage is rescaled, not {role:?}"
            )));
        };
        let mut new = Pipeline::compile_role(spec, role)?;
        let state = &mut new.state;
        for old in previous {
            state.max_event_ms = state.max_event_ms.max(old.state.max_event_ms);
            let upstreams = state.upstream_watermarks.len();
            if old.state.upstream_watermarks.len() > upstreams {
                state
                    .upstream_watermarks
                    .resize(old.state.upstream_watermarks.len(), None);
            }
        }
        for (i, least) in state.upstream_watermarks.iter_mut().enumerate() {
            // `None` (no marker yet) is the least of all.
            *least = previous
                .iter()
                .map(|old| old.state.upstream_watermarks.get(i).copied().flatten())
                .min()
                .flatten();
        }
        let watermark_ms = watermark(&new.plan, &new.state);
        let corrupt = |message: String| RestoreError::Corrupt(message);
        for (task, old) in previous.iter().enumerate() {
            if planted(PlantedBug::RescaleLosesMovedKeys) && task as u32 != range.index {
                continue;
            }
            for (memory, old_memory) in new.state.dedupe.iter_mut().zip(&old.state.dedupe) {
                for (key, last_ms) in old_memory.entries_sorted() {
                    if range.holds(key) {
                        memory.restore_entry(key, last_ms).map_err(corrupt)?;
                    }
                }
            }
            let (Some(windows), Some(old_windows)) = (&mut new.state.windows, &old.state.windows)
            else {
                continue;
            };
            for (key, panes) in old_windows.keys_sorted() {
                if range.holds(key) {
                    windows
                        .restore_key(key, panes.to_vec(), watermark_ms)
                        .map_err(corrupt)?;
                }
            }
        }
        Ok(new)
    }
}

#[cfg(test)]
#[path = "redistribute_tests.rs"]
mod tests;
