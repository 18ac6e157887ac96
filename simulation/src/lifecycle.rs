//! The life-cycle requests a run makes while its faults play: a job is paused and
//! resumed, or stopped and started again, at drawn times, through the coordinator group
//! as a user's request would go (any member, following the leader). Half the pairs also
//! use savepoints: a savepoint taken of the running job before the pair (and, when the
//! job holds [`SAVEPOINTS_KEPT`], its oldest one deleted), one taken while it is paused,
//! or a stop with a savepoint closed by a start from that very savepoint. None of them
//! changes what a job outputs (a stop's savepoint is the stop's cut, exactly where a
//! plain start resumes), so the reference's expectation stands: every expected output and
//! dead letter exactly once. The savepoints themselves are checked at the end
//! (`checker::savepoints`): every pinned snapshot exists and restores.
//!
//! Now and then (at most [`crate::upgrades::UPGRADES_PER_JOB_MAX`] times a job) the driver
//! upgrades a job that runs as one stage instead (`crate::upgrades`): a compatible edit
//! after its stateful stages, sometimes dropping a stage's state. The reference then
//! evaluates each version from its cut on, read from the final state. A job that
//! repartitions is rescaled instead (its outputs do not change).
//!
//! A pair once begun is always closed (a resume after a pause, a start after a stop),
//! also after the fault phase ends, so that every job runs again before the data check;
//! a start waits for the job to be `stopped`, which needs the fleet to have committed,
//! released and fenced every partition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use weir_coordinator::state::lifecycle::JobRequest;
use weir_coordinator::state::{Command, CommandResult, Refusal};
use weir_coordinator::write_error::WriteError;
use weir_core::ids::{JobId, NodeId, SavepointId, TenantName};

use crate::cluster::ClusterView;
use crate::context::SimContext;
use crate::dataflow::SIM_TENANT;
use crate::jobs::SimJob;

/// Attempts one request may take (each waits for an answer at most
/// [`REQUEST_TIMEOUT_MS`], then a drawn pause); a closing request still refused or
/// unanswered after them is a liveness violation.
pub const REQUEST_ATTEMPTS_MAX: usize = 400;
/// Attempts an opening request (pause, stop) may take; a refusal ends it at once.
const OPEN_ATTEMPTS_MAX: usize = 20;
/// How long one attempt waits for the group's answer.
const REQUEST_TIMEOUT_MS: u64 = 2_000;
/// The pause between attempts, and between a pair's two requests, is drawn from this
/// range (ms).
const GAP_MS: (u64, u64) = (200, 3_000);

/// Savepoints a job keeps before the driver deletes its oldest (the group allows 32).
pub const SAVEPOINTS_KEPT: usize = 6;

/// How a request ended.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Accepted(CommandResult),
    Refused(Refusal),
    /// No member answered within the attempts.
    Unknown,
}

/// One request of the driver, as the command it sends.
#[derive(Debug, Clone, PartialEq)]
enum Request {
    Change(JobRequest),
    TakeSavepoint,
    StopWithSavepoint,
    StartFrom(SavepointId),
    DeleteSavepoint(SavepointId),
    /// An upgrade to this spec (as JSON), dropping these stages' state.
    Upgrade(serde_json::Value, Vec<String>),
    /// A rescale of the downstream stage to this partition count.
    Rescale(u32),
}

impl Request {
    fn command(&self, job: JobId) -> Command {
        let tenant = Some(TenantName(SIM_TENANT.to_string()));
        match self {
            Request::Change(request) => Command::ChangeJobState {
                job,
                tenant,
                request: *request,
            },
            Request::TakeSavepoint => Command::TakeSavepoint {
                job,
                tenant,
                at_ms: 0,
            },
            Request::StopWithSavepoint => Command::StopWithSavepoint {
                job,
                tenant,
                at_ms: 0,
            },
            Request::StartFrom(savepoint) => Command::StartFromSavepoint {
                job,
                tenant,
                savepoint: *savepoint,
            },
            Request::DeleteSavepoint(savepoint) => Command::DeleteSavepoint {
                job,
                tenant,
                savepoint: *savepoint,
            },
            Request::Upgrade(spec, allow_state_drop) => Command::UpgradeJob {
                job,
                tenant,
                spec: spec.clone(),
                savepoint: None,
                allow_state_drop: allow_state_drop.clone(),
                at_ms: 0,
            },
            Request::Rescale(parallelism) => Command::RescaleJob {
                job,
                tenant,
                parallelism: *parallelism,
                at_ms: 0,
            },
        }
    }

    /// Whether a refusal settles the request (an opening one) rather than being waited
    /// out (a closing one: a start waits for the job to finish stopping).
    fn ends_at_refusal(&self) -> bool {
        !matches!(
            self,
            Request::Change(JobRequest::Resume | JobRequest::Start) | Request::StartFrom(_)
        )
    }
}

/// Pauses and resumes, stops and starts the run's jobs until `stop` is set, then closes
/// the pair under way.
pub async fn drive(
    ctx: Arc<SimContext>,
    view: ClusterView,
    nodes: Vec<NodeId>,
    mut rng: StdRng,
    jobs: Vec<SimJob>,
    stop: Arc<AtomicBool>,
) {
    if jobs.is_empty() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        gap(&mut rng).await;
        let job = &jobs[rng.gen_range(0..jobs.len())];
        let Some(id) = job_id(&view, &job.name) else {
            continue;
        };
        let driver = Driver {
            ctx: &ctx,
            view: &view,
            nodes: &nodes,
            job: id,
            name: &job.name,
        };
        if let Some(edit) = crate::upgrades::draw(&mut rng, &view, id, job) {
            // Refused (the job is not running yet) or not: nothing to close.
            let request = match edit {
                crate::upgrades::Edit::Upgrade(spec, drop) => Request::Upgrade(spec, drop),
                crate::upgrades::Edit::Rescale(n) => Request::Rescale(n),
            };
            driver.send(&mut rng, request, OPEN_ATTEMPTS_MAX).await;
            continue;
        }
        let (open, close) = if rng.gen_bool(0.5) {
            (JobRequest::Pause, JobRequest::Resume)
        } else {
            (JobRequest::Stop, JobRequest::Start)
        };
        let savepoints = rng.gen_bool(0.5);
        if savepoints {
            driver.keep_savepoints_bounded(&mut rng).await;
            driver
                .send(&mut rng, Request::TakeSavepoint, OPEN_ATTEMPTS_MAX)
                .await;
        }
        // A savepoint of a job that repartitions is refused unless the job is paused or
        // stopped (its stages drained to one cut): the first one above is, mostly.
        let stop_with_savepoint = savepoints && open == JobRequest::Stop;
        let opening = if stop_with_savepoint {
            Request::StopWithSavepoint
        } else {
            Request::Change(open)
        };
        // A refused opening (a job not running yet cannot pause) skips the pair; one with
        // no answer may have applied, so the pair is closed all the same.
        let opened = driver.send(&mut rng, opening, OPEN_ATTEMPTS_MAX).await;
        if matches!(opened, Answer::Refused(_)) {
            continue;
        }
        gap(&mut rng).await;
        if savepoints && open == JobRequest::Pause {
            driver
                .send(&mut rng, Request::TakeSavepoint, OPEN_ATTEMPTS_MAX)
                .await;
        }
        // A stop's savepoint, when its answer named it; a start without it otherwise.
        let closing = match opened {
            Answer::Accepted(CommandResult::SavepointTaken { id }) => Request::StartFrom(id),
            _ => Request::Change(close),
        };
        if !driver.close(&mut rng, closing, close).await {
            return;
        }
    }
}

/// The driver's requests for one job.
struct Driver<'a> {
    ctx: &'a SimContext,
    view: &'a ClusterView,
    nodes: &'a [NodeId],
    job: JobId,
    name: &'a str,
}

impl Driver<'_> {
    /// Closes a pair with `closing` (falling back to a plain `close` when a start from a
    /// savepoint is refused); false, with a liveness violation, when it is not accepted.
    async fn close(&self, rng: &mut StdRng, closing: Request, close: JobRequest) -> bool {
        let mut closed = self.send(rng, closing.clone(), REQUEST_ATTEMPTS_MAX).await;
        if matches!(closing, Request::StartFrom(_)) && matches!(closed, Answer::Refused(_)) {
            // A job that repartitions whose stop could not drain (no worker was left to
            // run its downstream tasks) starts from its last commit instead.
            closed = self
                .send(rng, Request::Change(close), REQUEST_ATTEMPTS_MAX)
                .await;
        }
        if !matches!(closed, Answer::Accepted(_)) {
            self.ctx.violation(format!(
                "liveness: {closing:?} of job {} not accepted in {REQUEST_ATTEMPTS_MAX} attempts: {closed:?}",
                self.name
            ));
            return false;
        }
        true
    }

    /// Sends `request` (see [`request`]) and records how it ended.
    async fn send(&self, rng: &mut StdRng, request: Request, attempts: usize) -> Answer {
        let answer = send(
            self.ctx,
            self.view,
            self.nodes,
            rng,
            self.job,
            request.clone(),
            attempts,
        )
        .await;
        self.ctx
            .event(&format!("{request:?} {}: {answer:?}", self.name));
        answer
    }

    /// Deletes the job's oldest savepoint while it holds [`SAVEPOINTS_KEPT`] or more,
    /// never one an upgrade started from (the reference reads the cut from it).
    async fn keep_savepoints_bounded(&self, rng: &mut StdRng) {
        let oldest = self.view.running().iter().find_map(|node| {
            let state = node.coordinator.state().read();
            let job = state.control.jobs.get(&self.job)?;
            let upgraded_from: Vec<SavepointId> =
                job.versions.iter().filter_map(|v| v.savepoint).collect();
            (job.savepoints.len() >= SAVEPOINTS_KEPT)
                .then(|| {
                    job.savepoints
                        .keys()
                        .find(|id| !upgraded_from.contains(id))
                        .copied()
                })
                .flatten()
        });
        if let Some(oldest) = oldest {
            self.send(rng, Request::DeleteSavepoint(oldest), OPEN_ATTEMPTS_MAX)
                .await;
        }
    }
}

/// Whether `refusal` stays whatever is tried again: a start from a savepoint that is not
/// one cut across a job's stages, or after a stop that did not drain them
/// (`coordinator/src/state/stage_cut.rs`).
fn refused_for_good(refusal: &Refusal) -> bool {
    matches!(refusal, Refusal::Conflict(m)
        if m.contains("cannot be started from") || m.contains("did not drain"))
}

async fn gap(rng: &mut StdRng) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(GAP_MS.0..=GAP_MS.1))).await;
}

/// The id the group gave the job named `name`, as any running member knows it.
fn job_id(view: &ClusterView, name: &str) -> Option<JobId> {
    view.running().iter().find_map(|node| {
        let state = node.coordinator.state().read();
        state
            .control
            .jobs
            .values()
            .find(|j| j.name == name)
            .map(|j| j.id)
    })
}

/// Sends `request` until a member's answer settles it, at most `attempts` times. Every
/// request is safe to repeat (a repeated life-cycle request is accepted unchanged; a
/// savepoint request is idempotent under its key), so an attempt without an answer is
/// simply tried again. A closing request (resume, start) is tried
/// again after a refusal too: a start waits for the job to finish stopping.
async fn send(
    ctx: &SimContext,
    view: &ClusterView,
    nodes: &[NodeId],
    rng: &mut StdRng,
    job: JobId,
    request: Request,
    attempts: usize,
) -> Answer {
    let mut hint: Option<NodeId> = None;
    let mut last = Answer::Unknown;
    // Savepoint requests carry an idempotency key, the same on every attempt, as the
    // client sends one: a retry of a start from a savepoint whose first attempt applied
    // (the job is running now) gets the first answer rather than a refusal, and a retried
    // savepoint request takes one savepoint.
    let new_key = |rng: &mut StdRng| {
        (!matches!(request, Request::Change(_)))
            .then(|| format!("sim-lifecycle-{job}-{:016x}", rng.gen::<u64>()))
    };
    let mut key = new_key(rng);
    for _ in 0..attempts.max(1) {
        let target = hint
            .take()
            .unwrap_or_else(|| nodes[rng.gen_range(0..nodes.len())]);
        if let Some(node) = view.get(target) {
            let answer = tokio::time::timeout(
                Duration::from_millis(REQUEST_TIMEOUT_MS),
                node.coordinator.write(match &key {
                    Some(key) => Command::Idempotent {
                        key: key.clone(),
                        command: Box::new(request.command(job)),
                        digest: None,
                    },
                    None => request.command(job),
                }),
            )
            .await;
            match answer {
                Ok(Ok(result)) => return Answer::Accepted(result),
                Ok(Err(WriteError::Refused(refusal))) => {
                    if request.ends_at_refusal() || refused_for_good(&refusal) {
                        return Answer::Refused(refusal);
                    }
                    last = Answer::Refused(refusal);
                    // The group stores a refusal under its key too: the next attempt,
                    // a new request, gets a key of its own.
                    key = new_key(rng);
                }
                Ok(Err(WriteError::NotLeader { leader_id, .. })) => hint = leader_id,
                _ => {}
            }
        }
        gap(rng).await;
    }
    if last != Answer::Unknown {
        ctx.event(&format!("{request:?} of job {job}: last answer {last:?}"));
    }
    last
}
