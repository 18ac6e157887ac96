//! Which part of a job's pipeline one task runs. A job whose `key_by` must repartition
//! (`weir_core::spec::stages`) runs as two stages: the **upstream** one reads the source
//! and runs the pipeline up to and including that `key_by`, then writes each event to the
//! repartition topic, routed by its key; the **downstream** one reads the repartition
//! topic and runs the rest (the window, its aggregate and what follows). A job with a
//! `join` runs three: the join's **left** and **right** upstream tasks (over the source
//! and over `join.with.topic`) and its **downstream** tasks (`join_stage.rs`). Every
//! other job runs **whole**, as one stage.

use super::window::Assigner;

/// The part of the pipeline a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineRole {
    /// Every stage, reading the source and writing the sink.
    Whole,
    /// Stages `0..=shuffle_at` (`shuffle_at` is the repartitioning `key_by`), reading the
    /// source and writing events and watermark markers to the repartition topic. When the
    /// window follows the `key_by` directly, the task also aggregates per key and window
    /// and sends partial aggregates instead of events ([`combines`](Self::combines)).
    Upstream { shuffle_at: usize },
    /// Stages after `shuffle_at`, reading the repartition topic that `upstreams` upstream
    /// tasks write, and writing the sink.
    Downstream { shuffle_at: usize, upstreams: u32 },
    /// Upstream of a `join` (at pipeline index `join_at`), its left side: the stages
    /// before the join over a source partition, then each event keyed by `left_key` to
    /// the repartition topic.
    JoinLeft { join_at: usize },
    /// Upstream of a `join`, its right side: a partition of `join.with.topic`, each event
    /// keyed by `right_key` to the repartition topic.
    JoinRight { join_at: usize },
    /// The `join` and the stages after it, reading the repartition topic that
    /// `left_upstreams` left and `right_upstreams` right upstream tasks write.
    JoinDownstream {
        join_at: usize,
        left_upstreams: u32,
        right_upstreams: u32,
    },
}

impl PipelineRole {
    /// Whether this role runs the pipeline stage at `index`.
    pub(crate) fn runs(&self, index: usize) -> bool {
        match *self {
            PipelineRole::Whole => true,
            PipelineRole::Upstream { shuffle_at } => index <= shuffle_at,
            PipelineRole::Downstream { shuffle_at, .. } => index > shuffle_at,
            PipelineRole::JoinLeft { join_at } => index < join_at,
            PipelineRole::JoinRight { .. } => false,
            PipelineRole::JoinDownstream { join_at, .. } => index > join_at,
        }
    }

    /// Whether an upstream task of `pipeline` sends partial aggregates: the stage after
    /// its shuffle is the window (no stage between whose result could differ).
    pub(crate) fn combines(&self, pipeline: &[weir_core::spec::Stage]) -> bool {
        match *self {
            PipelineRole::Upstream { shuffle_at } => matches!(
                pipeline.get(shuffle_at + 1),
                Some(weir_core::spec::Stage::Window(_))
            ),
            _ => false,
        }
    }

    /// What goes into the snapshot fingerprint besides the spec: nothing for a whole
    /// pipeline (so its snapshots read as before stages existed).
    pub(crate) fn fingerprint_tag(&self) -> Option<String> {
        match *self {
            PipelineRole::Whole => None,
            PipelineRole::Upstream { shuffle_at } => Some(format!("upstream-v2-{shuffle_at}")),
            PipelineRole::Downstream { shuffle_at, .. } => Some(format!("downstream-{shuffle_at}")),
            PipelineRole::JoinLeft { join_at } => Some(format!("join-left-{join_at}")),
            PipelineRole::JoinRight { join_at } => Some(format!("join-right-{join_at}")),
            PipelineRole::JoinDownstream { join_at, .. } => {
                Some(format!("join-downstream-{join_at}"))
            }
        }
    }
}

/// What an upstream task needs of the stage that follows its shuffle (a window, or a
/// join): lateness is judged there, once, with the task's own watermark, since every
/// downstream decision must be one a replay repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LatenessRule {
    pub(crate) bound: LateBound,
    pub(crate) allowed_lateness_ms: i64,
}

/// What an event's lateness is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LateBound {
    /// The end of the last window the event belongs to.
    Windows(Assigner),
    /// A join's left side: `ts + within`, the last time a right event can match.
    JoinLeft { within_ms: i64 },
    /// A join's right side: the event's own time.
    JoinRight,
}

impl LatenessRule {
    /// Whether an event at `event_ms` is late at `watermark_ms`: every window it belongs
    /// to has closed (tumbling and sliding windows: a session window never follows a
    /// shuffle, and is never called late here); for a join, by the side's rule (`join.rs`).
    pub(crate) fn is_late(&self, event_ms: i64, watermark_ms: Option<i64>) -> bool {
        let Some(watermark) = watermark_ms else {
            return false;
        };
        let bound = match self.bound {
            LateBound::Windows(Assigner::Tumbling { size_ms }) => {
                (event_ms.div_euclid(size_ms) * size_ms).saturating_add(size_ms)
            }
            LateBound::Windows(Assigner::Sliding { size_ms, slide_ms }) => {
                (event_ms.div_euclid(slide_ms) * slide_ms).saturating_add(size_ms)
            }
            LateBound::Windows(Assigner::Session { .. }) => return false,
            LateBound::JoinLeft { within_ms } => event_ms.saturating_add(within_ms),
            LateBound::JoinRight => event_ms,
        };
        bound.saturating_add(self.allowed_lateness_ms) <= watermark
    }

    /// The side of the join the task's events are on (every event of a job without a
    /// join is on the left).
    pub(crate) fn side(&self) -> super::shuffled::JoinSide {
        match self.bound {
            LateBound::JoinRight => super::shuffled::JoinSide::Right,
            LateBound::Windows(_) | LateBound::JoinLeft { .. } => super::shuffled::JoinSide::Left,
        }
    }
}
