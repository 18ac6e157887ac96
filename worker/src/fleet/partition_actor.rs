//! One actor per (job, partition): recovers the partition (fencing the previous owner),
//! then steps the exactly-once runner until it is stopped, fenced or fails. A failure other
//! than fencing recovers again from the last commit point after a pause that doubles with
//! each failure in a row (`crate::rate_limit::FailureLimiter`). The partition's problem is
//! reported to the group (shown in `GET /v1/jobs/{id}`) and counted in
//! `weir_partition_failures_total{job,partition,reason}`; past the failure-rate limit the
//! actor reports the job failed, with the problem as its reason, instead of restarting
//! for ever.

use super::pause_switch::PauseSwitch;
use super::status::{PartitionStatus, StatusBoard};
use crate::checkpoint_store::CheckpointStore;
use crate::control::ControlPlane;
use crate::exactly_once::{PartitionConfig, PartitionError, PartitionRunner};
use crate::rate_limit::{FailureLimiter, FailureVerdict};
use actix::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use weir_broker::Broker;
use weir_core::wire::WorkerReport;

/// Pause after a step that found nothing to read, so an idle partition does not spin.
pub const IDLE_PAUSE_MS: u64 = 20;

/// The actor running one partition.
pub struct PartitionActor<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> {
    config: PartitionConfig,
    broker: B,
    store: S,
    control: Arc<C>,
    board: StatusBoard,
    /// Set when the supervisor asks the actor to stop; the loop aborts the open
    /// transaction and ends.
    stopping: Arc<AtomicBool>,
    /// Whether the group wants the partition paused, and whether it is.
    pause: PauseSwitch,
    started: Instant,
}

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> PartitionActor<B, S, C> {
    /// An actor for `config`; it starts working when started.
    pub(super) fn new(
        config: PartitionConfig,
        broker: B,
        store: S,
        control: Arc<C>,
        board: StatusBoard,
        pause: PauseSwitch,
    ) -> Self {
        PartitionActor {
            config,
            broker,
            store,
            control,
            board,
            stopping: Arc::new(AtomicBool::new(false)),
            pause,
            started: Instant::now(),
        }
    }
}

/// Asks a partition actor to give its partition up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPartition;

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> Actor
    for PartitionActor<B, S, C>
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let config = self.config.clone();
        let (broker, store, control) = (
            self.broker.clone(),
            self.store.clone(),
            self.control.clone(),
        );
        let board = self.board.clone();
        let stopping = self.stopping.clone();
        let pause = self.pause.clone();
        let started = self.started;
        let work = async move {
            let key = (config.job, config.partition);
            let now_ms = move || started.elapsed().as_millis() as u64;
            let mut failures = FailureLimiter::new();
            // The problem last reported to the group, so each is reported once.
            let mut reported: Option<String> = None;
            let (job_label, partition_label) =
                (config.job.to_string(), config.partition.to_string());
            let failing_gauge = metrics::gauge!("weir_partition_failing", "job" => job_label.clone(), "partition" => partition_label.clone());
            // What to do after a failure: false ends the actor.
            let on_failure = |e: PartitionError,
                              failures: &mut FailureLimiter,
                              reported: &mut Option<String>| {
                let (config, control, board) = (config.clone(), control.clone(), board.clone());
                let (job_label, partition_label) = (job_label.clone(), partition_label.clone());
                let failing_gauge = failing_gauge.clone();
                let verdict = failures.on_failure(now_ms(), e.counts_toward_failing_the_job());
                let problem = e.to_string();
                let report_now = reported.as_deref() != Some(problem.as_str())
                    || matches!(verdict, FailureVerdict::GiveUp(_));
                *reported = Some(problem.clone());
                async move {
                    metrics::counter!("weir_partition_failures_total", "job" => job_label, "partition" => partition_label, "reason" => e.kind()).increment(1);
                    failing_gauge.set(1.0);
                    board.set(key, PartitionStatus::failing(&config, &e));
                    if let PartitionError::Fenced(reason) = &e {
                        tracing::warn!(job = %config.job, partition = %config.partition, %reason, "fenced; stopping");
                        return false;
                    }
                    let (pause, fail) = match verdict {
                        FailureVerdict::RetryAfter(pause) => (pause, false),
                        FailureVerdict::GiveUp(pause) => (pause, true),
                    };
                    if fail {
                        tracing::error!(job = %config.job, partition = %config.partition, error = %e, "partition failed too often; failing its job");
                    } else {
                        tracing::warn!(job = %config.job, partition = %config.partition, error = %e, retry_in_ms = pause.as_millis() as u64, "partition failed; recovering");
                    }
                    if report_now {
                        let report = WorkerReport::PartitionProblem {
                            job: config.job,
                            partition: config.partition,
                            epoch: config.epoch,
                            problem: Some(problem),
                            fail,
                        };
                        if let Err(e) = control.report(&config.worker, report).await {
                            tracing::debug!(error = %e, "partition problem not reported");
                        }
                    }
                    // Once the job failed the group takes the partition away, and the
                    // supervisor stops this actor; until then, keep trying at the pause.
                    tokio::time::sleep(pause).await;
                    true
                }
            };
            'recover: while !stopping.load(Ordering::Acquire) {
                let mut runner = match PartitionRunner::recover(
                    config.clone(),
                    &broker,
                    store.clone(),
                    control.clone(),
                    now_ms(),
                )
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        if !on_failure(e, &mut failures, &mut reported).await {
                            break 'recover;
                        }
                        continue 'recover;
                    }
                };
                let mut checkpoints = 0;
                let mut idle = false;
                while !stopping.load(Ordering::Acquire) {
                    match follow_pause(&mut runner, &broker, &pause, idle, now_ms()).await {
                        Ok(true) => {
                            // Paused, or a pause postponed: nothing is read.
                            board.set(key, PartitionStatus::running(&config, &runner));
                            tokio::time::sleep(Duration::from_millis(IDLE_PAUSE_MS)).await;
                            continue;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            pause.set_paused(false);
                            if !matches!(e, PartitionError::Fenced(_)) {
                                runner.stop().await;
                            }
                            if !on_failure(e, &mut failures, &mut reported).await {
                                break 'recover;
                            }
                            continue 'recover;
                        }
                    }
                    match runner.step(now_ms()).await {
                        Ok(n) => {
                            idle = n == 0;
                            board.set(key, PartitionStatus::running(&config, &runner));
                            if runner.counters().checkpoints > checkpoints {
                                checkpoints = runner.counters().checkpoints;
                                if failures.in_a_row() > 0 || reported.is_some() {
                                    failures.on_progress();
                                    failing_gauge.set(0.0);
                                    if reported.take().is_some() {
                                        let report = WorkerReport::PartitionProblem {
                                            job: config.job,
                                            partition: config.partition,
                                            epoch: config.epoch,
                                            problem: None,
                                            fail: false,
                                        };
                                        if let Err(e) = control.report(&config.worker, report).await
                                        {
                                            tracing::debug!(error = %e, "partition recovery not reported");
                                        }
                                    }
                                }
                            }
                            if n == 0 {
                                tokio::time::sleep(Duration::from_millis(IDLE_PAUSE_MS)).await;
                            }
                        }
                        Err(e) => {
                            if !matches!(e, PartitionError::Fenced(_)) {
                                runner.stop().await;
                            }
                            if !on_failure(e, &mut failures, &mut reported).await {
                                break 'recover;
                            }
                            continue 'recover;
                        }
                    }
                }
                runner.stop().await;
            }
            board.remove(&key, config.epoch);
        };
        ctx.spawn(work.into_actor(self).map(|_, _, ctx| ctx.stop()));
    }
}

/// Brings the runner in line with what the group wants: pauses it (committing what it
/// processed; a task reading a repartition topic reads it to its end first) or resumes
/// it. Returns whether the actor should read nothing this round.
async fn follow_pause<B: Broker, S: CheckpointStore, C: ControlPlane>(
    runner: &mut PartitionRunner<B, S, C>,
    broker: &B,
    pause: &PauseSwitch,
    idle: bool,
    now_ms: u64,
) -> Result<bool, PartitionError> {
    if pause.wanted() {
        if !runner.may_pause(broker, idle).await {
            // Reads on: the repartition topic it reads is not drained yet.
            return Ok(false);
        }
        let paused = runner.pause(now_ms).await?;
        pause.set_paused(paused);
        return Ok(true);
    }
    pause.set_paused(false);
    if runner.is_pausing() {
        runner.resume(now_ms).await?;
    }
    Ok(false)
}

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> Handler<StopPartition>
    for PartitionActor<B, S, C>
{
    type Result = ();

    fn handle(&mut self, _: StopPartition, _: &mut Self::Context) {
        // The work loop sees this at its next step, aborts the open transaction and ends
        // the actor.
        self.stopping.store(true, Ordering::Release);
    }
}
