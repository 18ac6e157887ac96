//! The worker's control-plane seam in the simulation. Each call goes to a coordinator of
//! the simulated group over the simulated network's links (a partition between the worker
//! and a coordinator blocks it; a request's latency is drawn per call), and runs the very
//! functions the HTTP handlers run (`weir_coordinator::worker_calls`). Which coordinator
//! each attempt goes to and how long it waits first is decided by the production client's
//! policy (`weir_core::leader_client`, with the worker's `CONTROL_POLICY`), fed the
//! simulated answers and the simulated clock: calls stick to the coordinator last known to
//! lead, a "not the leader" answer is followed at once, failures rotate and back off with
//! jitter drawn from this process's seeded generator. Production's followers forward to
//! the leader and name it; here a follower's "not the leader" answer names it, which is the
//! same discovery without the extra hop.
//!
//! It also watches what the group answers: the epoch of a (job, partition) read from a
//! linearizable assignments call must never go back (checked across every worker).

use super::gate::Gate;
use crate::cluster::ClusterView;
use crate::context::SimContext;
use crate::network::SimNet;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_coordinator::node::{Coordinator, WriteError};
use weir_coordinator::state::Refusal;
use weir_coordinator::worker_calls;
use weir_core::ids::{Epoch, JobId, NodeId, PartitionId, WorkerId};
use weir_core::leader_client::{Answer, LeaderMemory, Retry, Step};
use weir_core::wire::{
    Assignments, CheckpointReport, CheckpointReportResults, Lease, WorkerReport,
};
use weir_worker::control::{ControlError, ControlPlane, CONTROL_POLICY, CONTROL_TIMEOUT_MS};

/// One-way latency of a control request or reply.
pub const CONTROL_LATENCY_MS: (u64, u64) = (1, 5);
/// How long a request to a coordinator behind a partition hangs before it fails (the
/// production client's connect timeout).
pub const CONTROL_CONNECT_TIMEOUT_MS: u64 = 300;

/// The highest epoch each (job, partition) was seen at, across the whole fleet.
pub type EpochsSeen = Arc<Mutex<BTreeMap<(JobId, PartitionId), Epoch>>>;

/// One worker process's control plane.
pub struct SimControlPlane {
    node: NodeId,
    coordinators: Vec<NodeId>,
    view: ClusterView,
    net: SimNet,
    gate: Gate,
    ctx: Arc<SimContext>,
    epochs: EpochsSeen,
    rng: Mutex<StdRng>,
    /// Which coordinator leads, as far as this process knows (the production client's).
    memory: Mutex<LeaderMemory>,
    /// What this process last learned it runs, to trace changes.
    running: Arc<Mutex<Vec<(JobId, PartitionId, Epoch)>>>,
}

impl SimControlPlane {
    /// The control plane of the worker on network node `node`, behind `gate`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: NodeId,
        coordinators: Vec<NodeId>,
        view: ClusterView,
        net: SimNet,
        gate: Gate,
        ctx: Arc<SimContext>,
        epochs: EpochsSeen,
        seed: u64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let start = rng.gen_range(0..coordinators.len().max(1));
        SimControlPlane {
            memory: Mutex::new(LeaderMemory::new(coordinators.len(), start)),
            node,
            coordinators,
            view,
            net,
            gate,
            ctx,
            epochs,
            rng: Mutex::new(rng),
            running: Arc::default(),
        }
    }

    fn draw(&self, range: (u64, u64)) -> u64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .gen_range(range.0..=range.1)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, LeaderMemory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `call` to coordinators until one answers, as the HTTP control plane does: the
    /// same policy decides where each attempt goes and how long it waits.
    async fn call<T, F, Fut>(&self, worker: Option<&WorkerId>, call: F) -> Result<T, ControlError>
    where
        F: Fn(Arc<Coordinator>) -> Fut,
        Fut: Future<Output = Result<T, WriteError>>,
    {
        let started = tokio::time::Instant::now();
        let now_ms = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let seed = self
            .rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_u64();
        let (mut retry, mut member) = Retry::start(CONTROL_POLICY, &self.memory(), 0, seed);
        loop {
            self.gate.pass().await;
            let (answer, outcome, note) = self.attempt(worker, member, &call).await;
            let step = retry.on_answer(now_ms(), member, &answer, &mut self.memory());
            match (step, outcome) {
                (Step::Finish, Some(outcome)) => return outcome,
                (Step::Finish | Step::GiveUp(_), _) => return Err(ControlError::Unavailable(note)),
                (
                    Step::Send {
                        member: next,
                        delay_ms,
                    },
                    _,
                ) => {
                    if delay_ms > 0 {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                    member = next;
                }
            }
        }
    }

    /// One attempt at the coordinator `member` (an index into this process's list): the
    /// policy's answer, the call's outcome when final, and what happened, for the error.
    async fn attempt<T, F, Fut>(
        &self,
        worker: Option<&WorkerId>,
        member: usize,
        call: &F,
    ) -> (Answer, Option<Result<T, ControlError>>, String)
    where
        F: Fn(Arc<Coordinator>) -> Fut,
        Fut: Future<Output = Result<T, WriteError>>,
    {
        let target = self.coordinators[member];
        let node = match self.view.get(target) {
            Some(node) if !self.net.is_blocked(self.node, target) => node,
            _ => {
                tokio::time::sleep(Duration::from_millis(CONTROL_CONNECT_TIMEOUT_MS)).await;
                return (Answer::Unreachable, None, format!("n{target}: unreachable"));
            }
        };
        tokio::time::sleep(Duration::from_millis(self.draw(CONTROL_LATENCY_MS))).await;
        let answer = tokio::time::timeout(
            Duration::from_millis(CONTROL_TIMEOUT_MS),
            call(node.coordinator.clone()),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(self.draw(CONTROL_LATENCY_MS))).await;
        self.gate.pass().await;
        if self.net.is_blocked(target, self.node) {
            return (
                Answer::NoAnswer,
                None,
                format!("n{target}: the reply was lost"),
            );
        }
        // Only the leader serves these calls: an answer names the member that gave it.
        let served = Answer::Served {
            leader: Some(member),
        };
        match answer {
            Ok(Ok(value)) => (served, Some(Ok(value)), String::new()),
            Ok(Err(WriteError::Refused(refusal))) => {
                (served, Some(Err(refused(worker, refusal))), String::new())
            }
            Ok(Err(WriteError::NotLeader { leader_id, .. })) => {
                let leader = leader_id.and_then(|l| self.coordinators.iter().position(|c| *c == l));
                let note = format!("n{target}: not the leader");
                (Answer::NotLeader { leader }, None, note)
            }
            Ok(Err(WriteError::Unavailable(e))) => {
                (Answer::Unavailable, None, format!("n{target}: {e}"))
            }
            Err(_) => (Answer::NoAnswer, None, format!("n{target}: timed out")),
        }
    }
}

/// Checks that no epoch went back since any worker last read it. Called in the same step
/// as the linearizable read, so checks happen in the order of the reads.
fn check_epochs(epochs: &EpochsSeen, ctx: &SimContext, assignments: &Assignments) {
    let mut seen = epochs.lock().unwrap_or_else(|e| e.into_inner());
    for a in &assignments.assignments {
        let key = (a.job, a.partition);
        match seen.get(&key) {
            Some(before) if a.epoch < *before => ctx.violation(format!(
                "epoch of job {} partition {} went back from {} to {} (read by {})",
                a.job, a.partition, before, a.epoch, assignments.worker
            )),
            _ => {
                seen.insert(key, a.epoch);
            }
        }
    }
}

/// The error the HTTP control plane would return for a refusal.
fn refused(worker: Option<&WorkerId>, refusal: Refusal) -> ControlError {
    match (refusal, worker) {
        (Refusal::NotFound(m), Some(w)) if m.contains("worker") => {
            ControlError::UnknownWorker(w.clone())
        }
        (refusal, _) => {
            let status = match refusal {
                Refusal::NotFound(_) => 404,
                Refusal::Invalid(_) => 400,
                _ => 409,
            };
            ControlError::Refused {
                status,
                message: refusal.to_string(),
            }
        }
    }
}

impl ControlPlane for SimControlPlane {
    async fn register(&self, id: &WorkerId, addr: &str) -> Result<Lease, ControlError> {
        let (id, addr) = (id.clone(), addr.to_string());
        self.call(None, |c| {
            let (id, addr) = (id.clone(), addr.clone());
            async move { worker_calls::register(&c, &id, &addr).await }
        })
        .await
    }

    async fn deregister(&self, id: &WorkerId) -> Result<(), ControlError> {
        let id = id.clone();
        self.call(Some(&id), |c| {
            let id = id.clone();
            async move { worker_calls::deregister(&c, &id).await }
        })
        .await
    }

    async fn heartbeat(&self, id: &WorkerId) -> Result<Lease, ControlError> {
        let id = id.clone();
        self.call(Some(&id), |c| {
            let id = id.clone();
            async move { c.heartbeat(&id) }
        })
        .await
    }

    async fn assignments(&self, id: &WorkerId) -> Result<Assignments, ControlError> {
        let id = id.clone();
        self.call(Some(&id), |c| {
            let id = id.clone();
            let (epochs, ctx, running) =
                (self.epochs.clone(), self.ctx.clone(), self.running.clone());
            async move {
                let assignments = worker_calls::assignments(&c, &id).await?;
                check_epochs(&epochs, &ctx, &assignments);
                let now: Vec<_> = assignments
                    .assignments
                    .iter()
                    .map(|a| (a.job, a.partition, a.epoch))
                    .collect();
                let mut last = running.lock().unwrap_or_else(|e| e.into_inner());
                if *last != now {
                    let list: Vec<String> = now
                        .iter()
                        .map(|(j, p, e)| format!("j{j}/p{p}@e{e}"))
                        .collect();
                    ctx.event(&format!("{id} assigned [{}]", list.join(" ")));
                    *last = now;
                }
                Ok(assignments)
            }
        })
        .await
    }

    async fn report_partitions(
        &self,
        job: JobId,
        partition_count: u32,
    ) -> Result<(), ControlError> {
        self.call(None, |c| async move {
            worker_calls::report_partitions(&c, job, partition_count).await
        })
        .await
    }

    async fn report_topic_partitions(
        &self,
        job: JobId,
        topic: String,
        partition_count: u32,
    ) -> Result<(), ControlError> {
        self.call(None, |c| {
            let topic = topic.clone();
            async move { worker_calls::report_topic_partitions(&c, job, topic, partition_count).await }
        })
        .await
    }

    async fn report_checkpoints(
        &self,
        id: &WorkerId,
        reports: Vec<CheckpointReport>,
    ) -> Result<CheckpointReportResults, ControlError> {
        let id = id.clone();
        let ctx = self.ctx.clone();
        let results = self
            .call(Some(&id), |c| {
                let (id, reports, ctx) = (id.clone(), reports.clone(), ctx.clone());
                async move {
                    let results =
                        worker_calls::report_checkpoints(&c, &id, reports.clone()).await?;
                    for (r, result) in reports.iter().zip(&results) {
                        let answer = match result {
                            Ok(()) => "ok".to_string(),
                            Err(reason) => format!("refused: {reason}"),
                        };
                        ctx.event(&format!(
                            "{id} {:?} j{}/p{} c{} e{} offset {}: {answer}",
                            r.phase, r.job, r.partition, r.checkpoint, r.epoch, r.offset
                        ));
                    }
                    Ok(results)
                }
            })
            .await?;
        Ok(CheckpointReportResults { results })
    }

    async fn report(&self, id: &WorkerId, report: WorkerReport) -> Result<(), ControlError> {
        let id = id.clone();
        self.ctx.event(&format!("{id} reports {report:?}"));
        self.call(Some(&id), |c| {
            let (id, report) = (id.clone(), report.clone());
            async move { worker_calls::report(&c, &id, report).await }
        })
        .await
    }
}
