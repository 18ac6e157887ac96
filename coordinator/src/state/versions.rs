//! Job versions and upgrades (docs/ARCHITECTURE.md, "Upgrades"): a job keeps its
//! versions (the submitted spec is version 1, each upgrade adds one), and an upgrade
//! switches the job to a new spec at a consistent cut, each stateful stage's state carried
//! by identity (`weir_core::spec::upgrade`).
//!
//! An upgrade always starts the new version from a savepoint: the one the request names,
//! or one the upgrade takes itself, of a stopped job's last commit or of a running job's
//! stop (the job is `upgrading`, released exactly as for a stop, and the savepoint pins
//! the stop's cut once every partition is released and fenced). Then every partition gets
//! a restore point, as a start from a savepoint gives it, naming the version whose
//! pipeline wrote the pinned snapshot: the worker restores that snapshot with the old
//! spec and carries its state into the new pipeline. Kafka's commit point moves to the
//! cut with the new version's first commit, so the old version's transactional ids
//! (the same ids: `weir-<job>-<partition>`) are fenced by the stop before, and by every
//! recovery after.

use super::lifecycle::{self, JobRequest};
use super::savepoints::{new_savepoint, Pin, Restore};
use super::{CommandResult, ControlState, Job, PartitionState, Refusal};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use weir_core::ids::{JobId, PartitionId, SavepointId, TenantName};
use weir_core::spec::upgrade::{check_upgrade, known_stage_ids};
use weir_core::spec::JobSpec;
use weir_core::wire::{JobState, JobVersionInfo, RestorePoint, SavepointStatus};

/// Versions kept per job, the current one included. The oldest version no savepoint
/// and no pending restore refers to is forgotten first; an upgrade that would need to
/// forget one still referred to is refused (409) until a savepoint is deleted.
pub const JOB_VERSIONS_MAX: usize = 64;

/// An upgrade of a running job, waiting for its partitions to be released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpgrade {
    /// The new version's spec (validated, as JSON).
    pub spec: serde_json::Value,
    /// The savepoint the new version starts from (the stop's own, or the one named).
    pub savepoint: SavepointId,
    /// Stateful stages that start empty.
    pub allow_state_drop: Vec<String>,
    pub at_ms: u64,
}

/// What an upgrade request carries into the state machine.
#[derive(Debug, Clone, Copy)]
pub(super) struct UpgradeAsk<'a> {
    pub job: JobId,
    pub tenant: Option<&'a TenantName>,
    pub spec: &'a serde_json::Value,
    pub savepoint: Option<SavepointId>,
    pub allow_state_drop: &'a [String],
    pub at_ms: u64,
}

impl Job {
    /// The job's versions, oldest first: the recorded ones, or (never upgraded) version 1.
    pub fn versions(&self) -> Vec<JobVersionInfo> {
        if !self.versions.is_empty() {
            return self.versions.clone();
        }
        vec![first_version(self)]
    }

    /// The spec of `version`, if the job still keeps it.
    pub fn version_spec(&self, version: u64) -> Option<&serde_json::Value> {
        if version == self.version {
            return Some(&self.spec);
        }
        self.versions
            .iter()
            .find(|v| v.version == version)
            .map(|v| &v.spec)
    }

    /// The restore point a worker is told for `p`, with the old spec when the pinned
    /// snapshot was written by another version than the current one.
    pub fn restore_point_of(&self, p: &PartitionState) -> Option<RestorePoint> {
        let mut point = p.restore_point()?;
        let written_by = p.restore.as_ref().map(|r| r.pin.version)?;
        if written_by != self.version {
            point.spec_before = self.version_spec(written_by).cloned();
        }
        Some(point)
    }

    /// The versions whose pipelines wrote state a restore of these pins reads.
    fn pinned_versions<'a>(&self, pins: impl Iterator<Item = &'a Pin>) -> BTreeSet<u64> {
        pins.flat_map(|pin| {
            std::iter::once(pin.version).chain(pin.sources.iter().map(|(_, source)| source.version))
        })
        .collect()
    }

    /// Versions referred to by a savepoint's pin or a pending restore: kept.
    fn referenced_versions(&self) -> BTreeSet<u64> {
        let savepoint_pins = self.savepoints.values().flat_map(|sp| sp.pins.values());
        let restore_pins = self
            .partitions
            .values()
            .filter_map(|p| p.restore.as_ref().map(|r| &r.pin));
        let mut versions = self.pinned_versions(savepoint_pins.chain(restore_pins));
        versions.insert(self.version);
        versions
    }

    /// The oldest version that may be forgotten, if one may.
    fn prunable_version(&self) -> Option<u64> {
        let referenced = self.referenced_versions();
        self.versions()
            .iter()
            .map(|v| v.version)
            .find(|v| !referenced.contains(v))
    }

    /// Checks that `new` can take over the state of every pin, each from the version that
    /// wrote it, dropping what the pin's own drops and `allow_state_drop` name.
    fn check_carry<'a>(
        &self,
        new: &JobSpec,
        pins: impl Iterator<Item = &'a Pin>,
        allow_state_drop: &[String],
    ) -> Result<(), Refusal> {
        let mut checked: BTreeSet<(u64, &[String])> = BTreeSet::new();
        for pin in pins {
            if !checked.insert((pin.version, pin.state_drop.as_slice())) {
                continue;
            }
            let version = pin.version;
            let old = self
                .version_spec(version)
                .and_then(|spec| serde_json::from_value::<JobSpec>(spec.clone()).ok())
                .ok_or_else(|| {
                    Refusal::Conflict(format!(
                        "job {}: the state to carry was written by version {version}, which \
                         is no longer kept",
                        self.id
                    ))
                })?;
            // The pin's own drops are checked at their upgrade; they apply where they can.
            let mut drops = known_stage_ids(&old, new, &pin.state_drop);
            drops.extend(allow_state_drop.iter().cloned());
            check_upgrade(&old, new, &drops).map_err(|e| Refusal::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// Switches the job to the pending upgrade's spec: a new version, and every
    /// partition restores the savepoint's pin (a partition it does not cover, its own
    /// committed cut) carried into the new pipeline. The job must be stopped.
    fn install_upgrade(&mut self, upgrade: PendingUpgrade) {
        debug_assert_eq!(self.state, JobState::Stopped);
        if self
            .savepoints
            .get(&upgrade.savepoint)
            .is_some_and(|sp| sp.status == SavepointStatus::Pending)
        {
            // Still waiting for a fence no registered worker can do: the committed cuts,
            // as a plain start would resume from.
            self.pin_all(upgrade.savepoint);
        }
        let pins: BTreeMap<PartitionId, Pin> = self
            .savepoints
            .get(&upgrade.savepoint)
            .map(|sp| sp.pins.clone())
            .unwrap_or_default();
        let version = self.version;
        for (partition, p) in self.partitions.iter_mut() {
            let pin = pins
                .get(partition)
                .cloned()
                .unwrap_or_else(|| p.committed_cut(version));
            let mut state_drop = pin.state_drop.clone();
            for id in &upgrade.allow_state_drop {
                if !state_drop.contains(id) {
                    state_drop.push(id.clone());
                }
            }
            p.restore = Some(Restore {
                savepoint: upgrade.savepoint,
                pin,
                after_checkpoint: p.highest_checkpoint(),
                state_drop,
            });
        }
        if self.versions.is_empty() {
            self.versions.push(first_version(self));
        }
        self.version += 1;
        self.spec = upgrade.spec.clone();
        self.start_next_generation(upgrade.savepoint);
        self.versions.push(JobVersionInfo {
            version: self.version,
            created_at_ms: upgrade.at_ms,
            spec: upgrade.spec,
            savepoint: Some(upgrade.savepoint),
            from_version: Some(version),
            state_dropped: upgrade.allow_state_drop,
        });
        while self.versions.len() > JOB_VERSIONS_MAX {
            let Some(oldest) = self.prunable_version() else {
                break;
            };
            self.versions.retain(|v| v.version != oldest);
        }
        self.state = JobState::Pending;
        for p in self.partitions.values_mut() {
            p.paused = false;
            p.released_paused = false;
        }
    }

    /// Called once an upgrading job has no partition placed and none to fence: the stop
    /// is complete, the upgrade's savepoint pins its cut, and the new version starts.
    pub(super) fn finish_upgrade(&mut self) {
        self.state = JobState::Stopped;
        self.settle_savepoints();
        let blocked = self.upgrade.as_ref().and_then(|upgrade| {
            let spec = serde_json::from_value::<JobSpec>(upgrade.spec.clone()).ok()?;
            self.upgrade_blocked(&spec)
        });
        if let Some(why) = blocked {
            // The job stays stopped at its cut; a start resumes it as it was.
            self.upgrade = None;
            self.reason = Some(format!(
                "the upgrade to version {} was not applied: {why}; start the job and upgrade \
                 it again",
                self.version + 1
            ));
            return;
        }
        match self.upgrade.take() {
            Some(upgrade) => self.install_upgrade(upgrade),
            // Cannot happen (an upgrading job always has one); stopped is safe.
            None => debug_assert!(false, "an upgrading job without its upgrade"),
        }
    }
}

/// Version 1 as recorded at the first upgrade: the submitted spec.
fn first_version(job: &Job) -> JobVersionInfo {
    JobVersionInfo {
        version: 1,
        created_at_ms: job.submitted_at_ms,
        spec: if job.version == 1 {
            job.spec.clone()
        } else {
            serde_json::Value::Null
        },
        savepoint: None,
        from_version: None,
        state_dropped: Vec::new(),
    }
}

impl ControlState {
    /// Applies `Command::UpgradeJob`, `Command::RescaleJob` or `Command::FinishStop`
    /// (which installs an upgrading job's new version); any other command is refused as
    /// invalid.
    pub(super) fn apply_version_command(
        &mut self,
        command: &super::Command,
    ) -> Result<CommandResult, Refusal> {
        if let super::Command::FinishStop { job } = command {
            return self.finish_stop(*job);
        }
        if let super::Command::RescaleJob {
            job,
            tenant,
            parallelism,
            at_ms,
        } = command
        {
            return self.rescale_job(*job, tenant.as_ref(), *parallelism, *at_ms);
        }
        let super::Command::UpgradeJob {
            job,
            tenant,
            spec,
            savepoint,
            allow_state_drop,
            at_ms,
        } = command
        else {
            return Err(Refusal::Invalid(format!("not an upgrade: {command:?}")));
        };
        self.upgrade_job(UpgradeAsk {
            job: *job,
            tenant: tenant.as_ref(),
            spec,
            savepoint: *savepoint,
            allow_state_drop,
            at_ms: *at_ms,
        })
    }

    /// `Command::FinishStop`: a stopping job becomes stopped, an upgrading one starts its
    /// new version.
    fn finish_stop(&mut self, job: JobId) -> Result<CommandResult, Refusal> {
        let upgrading = self
            .jobs
            .get(&job)
            .is_some_and(|j| j.state == JobState::Upgrading);
        let releasing = if upgrading {
            JobState::Upgrading
        } else {
            JobState::Stopping
        };
        self.finish_release(job, releasing)
    }

    /// `Command::UpgradeJob`: checks the new spec against the state it takes over, then
    /// starts it at once (a stopped job) or once the running job is released.
    pub(super) fn upgrade_job(&mut self, ask: UpgradeAsk<'_>) -> Result<CommandResult, Refusal> {
        let job = ask.job;
        let mut new: JobSpec = serde_json::from_value(ask.spec.clone())
            .map_err(|e| Refusal::Invalid(format!("spec: {e}")))?;
        let j = self.visible_job_mut(job, ask.tenant)?;
        let spec_json = keep_parallelism(j, &mut new, ask.spec);
        let ask = UpgradeAsk {
            spec: &spec_json,
            ..ask
        };
        let next = lifecycle::on_request(j.state, JobRequest::Upgrade)
            .map_err(|e| Refusal::Conflict(format!("job {job}: {e}")))?;
        let repartitions = !j.repartitions.is_empty();
        if repartitions {
            j.check_repartitioning_upgrade(&new, ask.savepoint, ask.allow_state_drop)?;
        }
        if j.versions().len() >= JOB_VERSIONS_MAX && j.prunable_version().is_none() {
            return Err(Refusal::Conflict(format!(
                "job {job} keeps {JOB_VERSIONS_MAX} versions, each still referred to by a \
                 savepoint; delete a savepoint first"
            )));
        }
        match ask.savepoint {
            Some(id) => {
                let sp = j
                    .savepoints
                    .get(&id)
                    .ok_or_else(|| Refusal::NotFound(format!("savepoint {id} of job {job}")))?;
                if sp.status != SavepointStatus::Complete {
                    return Err(Refusal::Conflict(format!(
                        "savepoint {id} of job {job} is {}; only a complete savepoint can be \
                         upgraded from",
                        sp.status.as_str()
                    )));
                }
                j.check_carry(&new, sp.pins.values(), ask.allow_state_drop)?;
            }
            None => {
                let version = j.version;
                let cuts: Vec<Pin> = j
                    .partitions
                    .values()
                    .map(|p| p.committed_cut(version))
                    .chain(std::iter::once(current_pin(version)))
                    .collect();
                j.check_carry(&new, cuts.iter(), ask.allow_state_drop)?;
            }
        }
        let savepoint = match ask.savepoint {
            Some(id) => id,
            // A job that repartitions has a cut common to its stages only once its stop
            // drained them: the savepoint is the upgrade's stop's.
            None if repartitions && next != JobState::Pending => {
                let before = j.state;
                j.state = next;
                new_savepoint(j, ask.at_ms).inspect_err(|_| j.state = before)?
            }
            None => new_savepoint(j, ask.at_ms)?,
        };
        let upgrade = PendingUpgrade {
            spec: ask.spec.clone(),
            savepoint,
            allow_state_drop: ask.allow_state_drop.to_vec(),
            at_ms: ask.at_ms,
        };
        let version = j.version + 1;
        j.upgrade = Some(upgrade.clone());
        if next == JobState::Pending {
            // Stopped: the savepoint (if the upgrade took it) pins the last commit now.
            j.settle_savepoints();
            j.upgrade = None;
            j.install_upgrade(upgrade);
        } else {
            j.state = next;
        }
        Ok(CommandResult::JobSubmitted { id: job, version })
    }
}

/// `new` (and its JSON, `spec`) with the job's current repartition count as its
/// `parallelism` when it names none, for a job that repartitions: only an explicit
/// parallelism rescales (the default, the source's partition count, may have grown or been
/// left behind by an earlier rescale). The recorded spec then says which count it keeps.
fn keep_parallelism(j: &Job, new: &mut JobSpec, spec: &serde_json::Value) -> serde_json::Value {
    let mut spec = spec.clone();
    if let (None, Some(&current)) = (new.parallelism, j.repartitions.first()) {
        new.parallelism = Some(current);
        if let Some(fields) = spec.as_object_mut() {
            fields.insert("parallelism".into(), current.into());
        }
    }
    spec
}

/// A pin standing for state the current version writes (a running partition's next
/// commit), so that the check covers it.
fn current_pin(version: u64) -> Pin {
    Pin {
        checkpoint: None,
        offset: 0,
        snapshot: None,
        version,
        state_drop: Vec::new(),
        sources: Vec::new(),
    }
}
