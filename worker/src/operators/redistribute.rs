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

/// A rescaled task's pipeline being gathered from the previous generation's tasks, one
/// at a time, so that a task holds at most one previous task's state beside its own while
/// it restores.
pub struct Redistribution {
    new: Pipeline,
    range: KeyRange,
    /// Per upstream task, the least watermark of the previous tasks added so far; `None`
    /// before the first.
    upstream_watermarks: Option<Vec<Option<i64>>>,
    /// How many previous tasks were added.
    added: u32,
}

impl Redistribution {
    /// An empty pipeline of `spec`'s `role` (a downstream stage) for the task `range` names.
    pub fn new(
        spec: &JobSpec,
        role: PipelineRole,
        range: KeyRange,
    ) -> Result<Redistribution, RestoreError> {
        let PipelineRole::Downstream { .. } = role else {
            return Err(RestoreError::Upgrade(format!(
                "only a downstream stage is rescaled, not {role:?}"
            )));
        };
        Ok(Redistribution {
            new: Pipeline::compile_role(spec, role)?,
            range,
            upstream_watermarks: None,
            added: 0,
        })
    }

    /// Takes the keys of `old` (a previous task's restored pipeline) that route to this
    /// task, and its event-time progress.
    pub fn add(&mut self, old: &Pipeline) -> Result<(), RestoreError> {
        let task = self.added;
        self.added += 1;
        let state = &mut self.new.state;
        state.max_event_ms = state.max_event_ms.max(old.state.max_event_ms);
        self.upstream_watermarks =
            Some(match self.upstream_watermarks.take() {
                None => old.state.upstream_watermarks.clone(),
                Some(least) => {
                    let len = least.len().max(old.state.upstream_watermarks.len());
                    // `None` (no marker yet, or an upstream task one side does not know) is
                    // the least of all.
                    (0..len)
                        .map(|i| {
                            let theirs = old.state.upstream_watermarks.get(i).copied().flatten();
                            least.get(i).copied().flatten().min(theirs).filter(|_| {
                                i < least.len() && i < old.state.upstream_watermarks.len()
                            })
                        })
                        .collect()
                }
            });
        if old.state.dedupe.iter().any(|memory| memory.len() > 0) {
            return Err(RestoreError::Upgrade(
                "a downstream dedupe memory cannot be redistributed (it is keyed by the \
                 dedupe key, not the shuffle's)"
                    .into(),
            ));
        }
        if planted(PlantedBug::RescaleLosesMovedKeys) && task != self.range.index {
            return Ok(());
        }
        let (Some(windows), Some(old_windows)) = (&mut state.windows, &old.state.windows) else {
            return Ok(());
        };
        // Each previous task's windows are open under its own watermark, so under the
        // least one too: its own checks them.
        let own_watermark = watermark(&old.plan, &old.state);
        for (key, panes) in old_windows.keys_sorted() {
            if self.range.holds(key) {
                windows
                    .restore_key(key, panes.to_vec(), own_watermark)
                    .map_err(RestoreError::Corrupt)?;
            }
        }
        Ok(())
    }

    /// The task's pipeline, with every previous task added.
    pub fn finish(mut self) -> Pipeline {
        if let Some(least) = self.upstream_watermarks {
            let upstreams = self.new.state.upstream_watermarks.len().max(least.len());
            let mut watermarks = least;
            watermarks.resize(upstreams, None);
            self.new.state.upstream_watermarks = watermarks;
        }
        self.new
    }
}

#[cfg(test)]
#[path = "redistribute_tests.rs"]
mod tests;
