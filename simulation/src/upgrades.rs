//! Upgrades in a simulated run: which edits the life-cycle driver makes to a running
//! job (`lifecycle`), and the version chain the reference evaluates an upgraded job by,
//! read from the final coordinator state.
//!
//! Jobs that repartition (other than joins) are rescaled too: their downstream stage gets
//! a new partition count (1 to [`RESCALE_PARTITIONS_MAX`]), an upgrade whose spec changes
//! only `parallelism`; and their upgrades append a filter after the aggregate that every
//! result passes. Neither changes what the job outputs, so the reference evaluates such a
//! job as one version (a result dead-lettered downstream names the partition of the
//! generation that fired it, which the check leaves out for rescaled jobs); what they
//! check is that every task's state is carried through them under every fault.
//!
//! Jobs that run as one stage are upgraded. Each
//! upgrade appends one stage after the job's stateful stages — a filter after the
//! aggregate (or after the dedupe), or a map — so every stateful stage carries its state;
//! one upgrade in [`STATE_DROP_ONE_IN`] also names the job's stateful stage in
//! `allow_state_drop`, which then starts empty. The cuts come from the savepoint each
//! version started from (the driver never deletes those).

use std::collections::BTreeMap;

use rand::Rng;
use weir_coordinator::state::ControlState;
use weir_core::ids::JobId;
use weir_core::spec::{JobSpec, Stage};

use crate::cluster::ClusterView;
use crate::jobs::{JobKind, SimJob};
use crate::reference::RefVersion;

/// Upgrades the driver makes of one job in a run.
pub const UPGRADES_PER_JOB_MAX: u64 = 3;
/// The chance that a turn of the driver on an upgradable job upgrades it.
const UPGRADE_PROBABILITY: f64 = 0.2;
/// One upgrade in this many drops the job's stateful stage's state.
const STATE_DROP_ONE_IN: u32 = 4;
/// The chance that a turn of the driver on a job that repartitions rescales it.
const RESCALE_PROBABILITY: f64 = 0.25;
/// The largest partition count a rescale draws.
pub const RESCALE_PARTITIONS_MAX: u32 = 4;

/// What the driver changes of a job on one turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// An upgrade to this spec (as JSON), dropping these stages' state.
    Upgrade(serde_json::Value, Vec<String>),
    /// A rescale of the job's downstream stage to this partition count.
    Rescale(u32),
}

/// The stage the `n`-th upgrade of a job of `kind` appends (a filter, a map keeping what
/// the next filter reads, another filter), and the stateful stage it may drop; `None`
/// for a kind that is not upgraded.
fn edit(kind: JobKind, n: u64) -> Option<(Stage, Option<&'static str>)> {
    let filter = |text: &str| Stage::Filter(text.to_string());
    let map = |fields: &[(&str, &str)]| {
        Stage::Map(
            fields
                .iter()
                .map(|(name, expr)| (name.to_string(), expr.to_string()))
                .collect(),
        )
    };
    let (stages, drop) = match kind {
        JobKind::Stateless => (
            [
                filter("cents % 7 != 0"),
                map(&[("card", "card"), ("cents", "cents"), ("id", "id")]),
                filter("cents % 11 != 0"),
            ],
            None,
        ),
        JobKind::Dedupe => (
            [
                filter("id % 5 != 0"),
                map(&[("id", "id"), ("card", "card"), ("amount", "amount")]),
                filter("id % 7 != 0"),
            ],
            Some("dedupe#0"),
        ),
        JobKind::Session => (
            [
                filter("n >= 2"),
                map(&[("card", "key"), ("n", "n"), ("mean", "mean")]),
                filter("n >= 3"),
            ],
            Some("window#0"),
        ),
        // Jobs that repartition are upgraded only after their aggregate: a filter every
        // result passes, so the outputs stay one version's while every task's state is
        // carried into the new version (upstream partial aggregates, downstream windows).
        JobKind::Tumbling => (
            [
                filter("count >= 1"),
                filter("count >= 0"),
                filter("count > -1"),
            ],
            None,
        ),
        JobKind::Sliding | JobKind::Rekey => {
            ([filter("n >= 1"), filter("n >= 0"), filter("n > -1")], None)
        }
        JobKind::JoinInner
        | JobKind::JoinOuter
        | JobKind::TemporalInner
        | JobKind::TemporalOuter => return None,
    };
    let stage = stages.into_iter().nth(n as usize)?;
    Some((stage, drop))
}

/// The change the driver makes of `job` (id `id`) on this turn, if any: an upgrade (the
/// new spec and the stages it drops) or a rescale.
pub fn draw(rng: &mut impl Rng, view: &ClusterView, id: JobId, job: &SimJob) -> Option<Edit> {
    let (current, version, repartitions) = view.running().iter().find_map(|node| {
        let state = node.coordinator.state().read();
        let j = state.control.jobs.get(&id)?;
        Some((j.spec.clone(), j.version, j.repartitions.clone()))
    })?;
    let upgrades = version.saturating_sub(1);
    if upgrades >= UPGRADES_PER_JOB_MAX {
        return None;
    }
    if weir_core::spec::stages::shuffling_key_by(&job.spec).is_some() {
        let count = *repartitions.first()?;
        if job.kind.joins() {
            return None;
        }
        if rng.gen_bool(RESCALE_PROBABILITY) {
            let drawn = rng.gen_range(1..RESCALE_PARTITIONS_MAX);
            return Some(Edit::Rescale(if drawn >= count {
                drawn + 1
            } else {
                drawn
            }));
        }
    }
    let (stage, drop) = edit(job.kind, upgrades)?;
    if !rng.gen_bool(UPGRADE_PROBABILITY) {
        return None;
    }
    let mut spec: JobSpec = serde_json::from_value(current).ok()?;
    spec.pipeline.push(stage);
    weir_core::spec::validate(&spec).ok()?;
    let drop = match drop {
        Some(id) if rng.gen_ratio(1, STATE_DROP_ONE_IN) => vec![id.to_string()],
        _ => Vec::new(),
    };
    Some(Edit::Upgrade(serde_json::to_value(&spec).ok()?, drop))
}

/// The jobs whose downstream stage was rescaled.
pub fn rescaled_jobs(state: &ControlState) -> std::collections::BTreeSet<JobId> {
    state
        .jobs
        .values()
        .filter(|j| j.repartition_generation > 0)
        .map(|j| j.id)
        .collect()
}

/// Every upgraded job's versions, oldest first, with each version's cuts (the pins of
/// the savepoint it started from) and dropped stages; `Err` names what cannot be read.
pub fn version_chains(state: &ControlState) -> Result<BTreeMap<JobId, Vec<RefVersion>>, String> {
    let mut chains = BTreeMap::new();
    for job in state.jobs.values() {
        // Rescales change only `parallelism`: the job's outputs are one version's.
        if job.versions.len() < 2 || !job.repartitions.is_empty() {
            continue;
        }
        let mut chain = Vec::new();
        for version in &job.versions {
            let spec: JobSpec = serde_json::from_value(version.spec.clone())
                .map_err(|e| format!("job {} version {}: {e}", job.id, version.version))?;
            let mut cuts = BTreeMap::new();
            if let Some(sp) = version.savepoint {
                let savepoint = job.savepoints.get(&sp).ok_or_else(|| {
                    format!(
                        "job {} version {}: its savepoint {sp} is gone",
                        job.id, version.version
                    )
                })?;
                for (partition, pin) in &savepoint.pins {
                    cuts.insert(partition.0 as i32, pin.offset);
                }
            }
            chain.push(RefVersion {
                spec,
                cuts,
                state_drop: version.state_dropped.clone(),
            });
        }
        chains.insert(job.id, chain);
    }
    Ok(chains)
}
