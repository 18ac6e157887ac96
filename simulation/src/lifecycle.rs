//! The life-cycle requests a run makes while its faults play: a job is paused and
//! resumed, or stopped and started again, at drawn times, through the coordinator group
//! as a user's request would go (any member, following the leader). None of them changes
//! what a job outputs, so the reference's expectation stands: every expected output and
//! dead letter exactly once.
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
use weir_coordinator::state::{Command, Refusal};
use weir_coordinator::write_error::WriteError;
use weir_core::ids::{JobId, NodeId, TenantName};

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

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Accepted,
    Refused(Refusal),
    /// No member answered within the attempts.
    Unknown,
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
        let (open, close) = if rng.gen_bool(0.5) {
            (JobRequest::Pause, JobRequest::Resume)
        } else {
            (JobRequest::Stop, JobRequest::Start)
        };
        // A refused opening (a job not running yet cannot pause) skips the pair; one with
        // no answer may have applied, so the pair is closed all the same.
        let opened = request(&ctx, &view, &nodes, &mut rng, id, open, OPEN_ATTEMPTS_MAX).await;
        ctx.event(&format!("{} {}: {opened:?}", open.as_str(), job.name));
        if matches!(opened, Answer::Refused(_)) {
            continue;
        }
        gap(&mut rng).await;
        let closed = request(
            &ctx,
            &view,
            &nodes,
            &mut rng,
            id,
            close,
            REQUEST_ATTEMPTS_MAX,
        )
        .await;
        ctx.event(&format!("{} {}: {closed:?}", close.as_str(), job.name));
        if closed != Answer::Accepted {
            ctx.violation(format!(
                "liveness: {} of job {} not accepted in {REQUEST_ATTEMPTS_MAX} attempts: {closed:?}",
                close.as_str(),
                job.name
            ));
            return;
        }
    }
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
/// request is safe to repeat (a repeated one is accepted unchanged), so an attempt
/// without an answer is simply tried again. A closing request (resume, start) is tried
/// again after a refusal too: a start waits for the job to finish stopping.
async fn request(
    ctx: &SimContext,
    view: &ClusterView,
    nodes: &[NodeId],
    rng: &mut StdRng,
    job: JobId,
    request: JobRequest,
    attempts: usize,
) -> Answer {
    let mut hint: Option<NodeId> = None;
    let mut last = Answer::Unknown;
    for _ in 0..attempts.max(1) {
        let target = hint
            .take()
            .unwrap_or_else(|| nodes[rng.gen_range(0..nodes.len())]);
        if let Some(node) = view.get(target) {
            let command = Command::ChangeJobState {
                job,
                tenant: Some(TenantName(SIM_TENANT.to_string())),
                request,
            };
            let answer = tokio::time::timeout(
                Duration::from_millis(REQUEST_TIMEOUT_MS),
                node.coordinator.write(command),
            )
            .await;
            match answer {
                Ok(Ok(_)) => return Answer::Accepted,
                Ok(Err(WriteError::Refused(refusal))) => {
                    if matches!(request, JobRequest::Pause | JobRequest::Stop) {
                        return Answer::Refused(refusal);
                    }
                    last = Answer::Refused(refusal);
                }
                Ok(Err(WriteError::NotLeader { leader_id, .. })) => hint = leader_id,
                _ => {}
            }
        }
        gap(rng).await;
    }
    if last != Answer::Unknown {
        ctx.event(&format!(
            "{} of job {job}: last answer {last:?}",
            request.as_str()
        ));
    }
    last
}
