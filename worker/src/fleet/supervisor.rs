//! The worker's supervisor actor: registers with the coordinator group, renews its lease,
//! reports source partition counts it learns from Kafka, and reconciles its partition
//! actors with the assignments the leader made — starting the new ones, stopping the ones
//! taken away or moved to a newer epoch. A coordinator failover is invisible here: the
//! control plane retries the other coordinators, and running partitions go on meanwhile.

use super::actor_threads::ActorThreads;
use super::heartbeat_thread::HeartbeatThread;
use super::partition_actor::{PartitionActor, StopPartition};
use super::pause_switch::PauseSwitch;
use super::status::StatusBoard;
use crate::checkpoint_store::CheckpointStore;
use crate::control::{ControlError, ControlPlane};
use crate::exactly_once::{
    group_of, transactional_id, PartitionConfig, PrunePins, SharedPins, POLL_BATCH_RECORDS_MAX,
};
use crate::rate_limit::{LogLimiter, LOG_LIMITER_KEYS_MAX, LOG_REPEAT_INTERVAL_MS};
use actix::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weir_broker::{Broker, BrokerError};
use weir_core::bugs::{planted, PlantedBug};
use weir_core::ids::{Epoch, JobId, PartitionId, WorkerId};
use weir_core::spec::JobSpec;
use weir_core::wire::{Assignments, Lease, TaskInput, WorkerAssignment, WorkerReport};

/// Pending jobs whose reported reason the supervisor remembers, so that it reports each
/// change once; when full it forgets them all (and may report some again).
pub const PENDING_REASONS_TRACKED_MAX: usize = 10_000;

/// What the supervisor remembers between rounds about pending jobs it could not start:
/// the reason last reported per job, and which warnings were logged when.
#[derive(Debug)]
struct PendingJobs {
    reported: BTreeMap<JobId, String>,
    log: LogLimiter<JobId>,
    /// When the source topic of a job whose lookup failed is looked up again: every
    /// reconcile round (250 ms) for 600 such jobs was 2,400 metadata requests a second.
    retry_at_ms: BTreeMap<JobId, u64>,
    /// The log limiter's time origin (tokio's clock, virtual in the simulation), set at
    /// first use.
    origin: Option<tokio::time::Instant>,
}

impl PendingJobs {
    fn now_ms(&mut self) -> u64 {
        let origin = *self.origin.get_or_insert_with(tokio::time::Instant::now);
        origin.elapsed().as_millis() as u64
    }

    /// Whether `job`'s source topic may be looked up at `now_ms`.
    fn lookup_due(&self, job: JobId, now_ms: u64) -> bool {
        self.retry_at_ms.get(&job).is_none_or(|at| now_ms >= *at)
    }

    /// The lookup of `job`'s source topic failed at `now_ms`: not again for
    /// [`PARTITION_COUNT_RETRY_MS`].
    fn lookup_failed(&mut self, job: JobId, now_ms: u64) {
        if self.retry_at_ms.len() >= PENDING_REASONS_TRACKED_MAX {
            self.retry_at_ms.clear();
        }
        self.retry_at_ms
            .insert(job, now_ms.saturating_add(PARTITION_COUNT_RETRY_MS));
    }
}

/// How long a supervisor waits before looking up again the source topic of a job whose
/// lookup failed (a topic that does not exist yet): a job starts at most this long after
/// its topic appears.
pub const PARTITION_COUNT_RETRY_MS: u64 = 2_000;

impl Default for PendingJobs {
    fn default() -> Self {
        PendingJobs {
            reported: BTreeMap::new(),
            log: LogLimiter::new(LOG_REPEAT_INTERVAL_MS, LOG_LIMITER_KEYS_MAX),
            retry_at_ms: BTreeMap::new(),
            origin: None,
        }
    }
}

/// How a supervisor runs.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub worker: WorkerId,
    /// The address the worker announces (informational).
    pub addr: String,
    /// How often assignments are fetched and reconciled.
    pub reconcile_interval_ms: u64,
    /// Records per processing step of each partition.
    pub poll_batch_records: usize,
}

impl SupervisorConfig {
    /// Defaults for worker `id`.
    pub fn new(worker: WorkerId, addr: impl Into<String>) -> Self {
        SupervisorConfig {
            worker,
            addr: addr.into(),
            reconcile_interval_ms: 250,
            poll_batch_records: POLL_BATCH_RECORDS_MAX,
        }
    }
}

/// Stops a supervisor, and with it every partition actor it runs (each aborts its open
/// transaction when it next gets the chance).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopSupervisor;

/// A running partition: the epoch it runs at, its actor, its pause switch and what its
/// pruning must keep.
type RunningPartition<B, S, C> = (
    Epoch,
    Addr<PartitionActor<B, S, C>>,
    PauseSwitch,
    SharedPins,
);

/// Starts a partition actor on one of the pool's threads, with that thread's own control
/// plane (made where the seams are known to be `Send`).
type StartOnThreads<B, S, C> = Box<
    dyn Fn(
        &mut ActorThreads,
        PartitionConfig,
        B,
        S,
        StatusBoard,
        PauseSwitch,
    ) -> Addr<PartitionActor<B, S, C>>,
>;

/// The supervisor actor of one worker.
pub struct Supervisor<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> {
    config: SupervisorConfig,
    broker: B,
    store: S,
    control: Arc<C>,
    board: StatusBoard,
    lease: Option<Lease>,
    running: BTreeMap<(JobId, PartitionId), RunningPartition<B, S, C>>,
    reconciling: bool,
    /// Whether partition counts are being reported (one report round at a time).
    reporting: bool,
    /// Pending jobs' reasons reported and warnings logged (shared with the report task).
    pending: Arc<Mutex<PendingJobs>>,
    /// Whether fence duties are being carried out (one round at a time).
    fencing: bool,
    /// Whether paused partitions are being reported (one round at a time).
    reporting_paused: bool,
    heartbeating: bool,
    /// Counts lease losses: a reconcile round that began before the latest one answers
    /// for a registration the group has dropped, and its assignments are not applied.
    lease_generation: u64,
    /// Renews the lease from its own thread when set; otherwise this actor does.
    heartbeat_thread: Option<HeartbeatThread>,
    /// Threads for the partition actors when set; otherwise they run on this actor's.
    actor_threads: Option<(ActorThreads, StartOnThreads<B, S, C>)>,
}

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> Supervisor<B, S, C> {
    /// A supervisor over the given seams; `board` receives partition statuses.
    pub fn new(
        config: SupervisorConfig,
        broker: B,
        store: S,
        control: Arc<C>,
        board: StatusBoard,
    ) -> Self {
        Supervisor {
            config,
            broker,
            store,
            control,
            board,
            lease: None,
            running: BTreeMap::new(),
            reconciling: false,
            reporting: false,
            pending: Arc::default(),
            fencing: false,
            reporting_paused: false,
            heartbeating: false,
            lease_generation: 0,
            heartbeat_thread: None,
            actor_threads: None,
        }
    }

    /// Runs the partition actors on `threads` instead of this actor's thread, so that a
    /// worker uses as many cores as it has threads (production). Each thread gets a control
    /// plane of its own from `control_per_thread`: an HTTP client's pooled connections are
    /// driven by the thread that opened them, so a shared one would let a thread busy with
    /// a checkpoint hold up the others' calls.
    pub fn with_actor_threads(
        mut self,
        threads: ActorThreads,
        control_per_thread: impl Fn() -> C,
    ) -> Self
    where
        B: Send,
        S: Send,
        C: Send + Sync,
    {
        let controls: Vec<Arc<C>> = (0..threads.len())
            .map(|_| Arc::new(control_per_thread()))
            .collect();
        let start: StartOnThreads<B, S, C> =
            Box::new(move |pool, config, broker, store, board, pause| {
                pool.start(|thread| {
                    PartitionActor::new(
                        config,
                        broker,
                        store,
                        controls[thread].clone(),
                        board,
                        pause,
                    )
                })
            });
        self.actor_threads = Some((threads, start));
        self
    }

    /// Renews the lease from `thread` instead of from this actor, so that a long stretch
    /// of processing on an actor thread cannot delay a heartbeat (production).
    pub fn with_heartbeat_thread(mut self, thread: HeartbeatThread) -> Self {
        self.heartbeat_thread = Some(thread);
        self
    }

    /// The group no longer knows this worker: stop everything and register again.
    fn lease_lost(&mut self) {
        tracing::warn!(worker = %self.config.worker, "lease lost; stopping partitions and registering again");
        self.lease = None;
        self.lease_generation += 1;
        if let Some(thread) = &self.heartbeat_thread {
            thread.deactivate();
        }
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for (_, (_, addr, _, _)) in std::mem::take(&mut self.running) {
            addr.do_send(StopPartition);
        }
    }

    /// Starts and stops partition actors to match `assignments`, and tells each whether
    /// to pause. Returns the reports of partitions that paused and the group has not
    /// recorded so yet.
    fn apply(&mut self, assignments: Assignments) -> Vec<WorkerReport> {
        let wanted: BTreeMap<(JobId, PartitionId), WorkerAssignment> = assignments
            .assignments
            .into_iter()
            .map(|a| ((a.job, a.partition), a))
            .collect();
        let stale: Vec<(JobId, PartitionId)> = self
            .running
            .iter()
            .filter(|(key, (epoch, addr, _, _))| {
                // An actor that ended (fenced, or out of recovery attempts) is restarted if
                // the partition is still ours: a transaction the broker timed out looks
                // like fencing, and only the coordinator knows who owns the partition.
                !addr.connected() || wanted.get(key).is_none_or(|a| a.epoch != *epoch)
            })
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            if let Some((_, addr, _, _)) = self.running.remove(&key) {
                tracing::info!(job = %key.0, partition = %key.1, "partition taken away; stopping");
                addr.do_send(StopPartition);
            }
        }
        let mut paused = Vec::new();
        for (key, assignment) in wanted {
            if let Some((epoch, _, pause, pins)) = self.running.get(&key) {
                pause.set_wanted(assignment.pause);
                pins.set(prune_pins(&assignment));
                if assignment.pause && !assignment.pause_recorded && pause.paused() {
                    paused.push(WorkerReport::Paused {
                        job: key.0,
                        partition: key.1,
                        epoch: *epoch,
                    });
                }
                continue;
            }
            let pins = SharedPins::new(prune_pins(&assignment));
            let Some(config) = partition_config(&self.config, key, &assignment, &pins) else {
                continue;
            };
            tracing::info!(job = %key.0, partition = %key.1, epoch = %assignment.epoch, "starting partition");
            let (broker, store, board) =
                (self.broker.clone(), self.store.clone(), self.board.clone());
            let pause = PauseSwitch::new(assignment.pause);
            let addr = match &mut self.actor_threads {
                Some((pool, start)) => start(pool, config, broker, store, board, pause.clone()),
                None => PartitionActor::new(
                    config,
                    broker,
                    store,
                    self.control.clone(),
                    board,
                    pause.clone(),
                )
                .start(),
            };
            self.running
                .insert(key, (assignment.epoch, addr, pause, pins));
        }
        let live: BTreeSet<(JobId, PartitionId)> = self.running.keys().copied().collect();
        metrics::gauge!("weir_worker_partitions", "worker" => self.config.worker.0.clone())
            .set(live.len() as f64);
        paused
    }
}

/// What the partition of `key` runs, from its assignment; `None` (logged) for a spec
/// this worker cannot read.
fn partition_config(
    supervisor: &SupervisorConfig,
    key: (JobId, PartitionId),
    assignment: &WorkerAssignment,
    pins: &SharedPins,
) -> Option<PartitionConfig> {
    let spec: JobSpec = match serde_json::from_value(assignment.spec.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(job = %key.0, error = %e, "assigned a spec this worker cannot read");
            return None;
        }
    };
    Some(PartitionConfig {
        worker: supervisor.worker.clone(),
        job: key.0,
        partition: key.1,
        epoch: assignment.epoch,
        spec,
        poll_batch_records: supervisor.poll_batch_records,
        committed_checkpoint: assignment.committed_checkpoint,
        repartitions: assignment.repartitions.clone(),
        repartition_generation: assignment.repartition_generation,
        restore: assignment.restore.clone(),
        pins: Some(pins.clone()),
        join_upstreams: assignment.join_upstreams,
    })
}

/// What an assignment says the partition's pruning must keep.
fn prune_pins(assignment: &WorkerAssignment) -> PrunePins {
    PrunePins {
        below: assignment.prune_below,
        keep: assignment.keep_offsets.clone(),
    }
}

/// Which topic of a job a partition count is learned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CountedTopic {
    /// The job's source.
    Source,
    /// The right side of the job's `join`.
    Joined,
}

/// Learns the partition count of each job's source topic (or of its join's topic,
/// `counted`) and reports it. A job whose topic cannot be read gets the reason reported
/// (once per change: it shows in `GET /v1/jobs/{id}` as the pending job's reason) and a
/// warning logged at most once per [`LOG_REPEAT_INTERVAL_MS`] per job: 600 such jobs
/// logged 2,000 lines a second.
async fn report_partition_counts<B: Broker, C: ControlPlane>(
    broker: &B,
    control: &C,
    worker: &WorkerId,
    pending: &Mutex<PendingJobs>,
    (jobs, counted): (&[(JobId, String)], CountedTopic),
) {
    let what = match counted {
        CountedTopic::Source => "source topic",
        CountedTopic::Joined => "the join's topic",
    };
    let lock = || pending.lock().unwrap_or_else(|e| e.into_inner());
    for (job, topic) in jobs {
        let now_ms = lock().now_ms();
        if !lock().lookup_due(*job, now_ms) {
            continue;
        }
        let lookup = broker.partition_count(topic).await;
        if lookup.is_err() {
            lock().lookup_failed(*job, now_ms);
        } else {
            lock().retry_at_ms.remove(job);
        }
        match lookup {
            Ok(n) => {
                let reported = match counted {
                    CountedTopic::Source => control.report_partitions(*job, n).await,
                    CountedTopic::Joined => {
                        control
                            .report_topic_partitions(*job, topic.clone(), n)
                            .await
                    }
                };
                if let Err(e) = reported {
                    if let Some(held) = lock().log.check(job, now_ms) {
                        tracing::warn!(job = %job, error = %e, repeats_not_logged = held, "partition count not reported");
                    }
                } else {
                    let mut pending = lock();
                    pending.reported.remove(job);
                    pending.log.forget(job);
                }
            }
            Err(e) => {
                let reason = match &e {
                    BrokerError::UnknownTopic(_) => format!("{what} {topic} does not exist"),
                    other => format!("cannot read the metadata of {what} {topic}: {other}"),
                };
                if let Some(held) = lock().log.check(job, now_ms) {
                    tracing::warn!(job = %job, topic, error = %e, repeats_not_logged = held, "cannot read the metadata of a topic the job reads");
                }
                let changed = lock().reported.get(job) != Some(&reason);
                if changed {
                    let report = WorkerReport::JobPending {
                        job: *job,
                        reason: Some(reason.clone()),
                    };
                    if control.report(worker, report).await.is_ok() {
                        let mut pending = lock();
                        if pending.reported.len() >= PENDING_REASONS_TRACKED_MAX {
                            pending.reported.clear();
                        }
                        pending.reported.insert(*job, reason);
                    }
                }
            }
        }
    }
}

/// Tells the group which partitions paused (committed, no open transaction); one not
/// recorded is reported again in the next round.
async fn report_paused<C: ControlPlane>(
    control: &C,
    worker: &WorkerId,
    reports: Vec<WorkerReport>,
) {
    for report in reports {
        if let Err(e) = control.report(worker, report).await {
            tracing::debug!(error = %e, "paused partition not reported");
        }
    }
}

/// Fences the transactional ids of partitions of stopped jobs (fence duties from the
/// group): creating a writer with the id aborts whatever its last owner left open, even if
/// that owner is wedged or gone. Then reads the job's commit point of each fenced
/// partition whose input the group named (final now: nobody can commit for it any more),
/// so that a commit whose report the owner never delivered is recorded. Reports the ones
/// fenced; a failed fence is retried when the group hands the duty out again.
async fn fence_partitions<B: Broker, C: ControlPlane>(
    broker: &B,
    control: &C,
    worker: &WorkerId,
    duties: &[(JobId, PartitionId)],
    inputs: &[TaskInput],
) {
    // Per job: the partitions fenced, and the commit points read after fencing.
    type Fenced = (Vec<PartitionId>, Vec<(PartitionId, i64)>);
    let mut fenced: BTreeMap<JobId, Fenced> = BTreeMap::new();
    for (job, partition) in duties {
        match broker.writer(&transactional_id(*job, *partition)).await {
            Ok(writer) => {
                drop(writer);
                tracing::info!(job = %job, partition = %partition, "fenced the partition of a stopped job");
                let input = inputs
                    .iter()
                    .find(|i| i.job == *job && i.partition == *partition);
                let mut point = None;
                if let Some(input) = input {
                    let group = group_of(*job);
                    match broker
                        .committed_offset(&group, &input.topic, input.topic_partition)
                        .await
                    {
                        Ok(found) => point = found,
                        Err(e) => {
                            // Not reported fenced: the duty comes again, and the commit
                            // point is read then.
                            tracing::warn!(job = %job, partition = %partition, error = %e, "commit point of a fenced partition not read");
                            continue;
                        }
                    }
                }
                let entry = fenced.entry(*job).or_default();
                entry.0.push(*partition);
                entry.1.extend(point.map(|offset| (*partition, offset)));
            }
            Err(e) => {
                tracing::warn!(job = %job, partition = %partition, error = %e, "could not fence the partition of a stopped job")
            }
        }
    }
    for (job, (partitions, mut commit_points)) in fenced {
        if planted(PlantedBug::FenceForgetsCommitPoint) {
            commit_points.clear();
        }
        let report = WorkerReport::Fenced {
            job,
            partitions,
            commit_points,
        };
        if let Err(e) = control.report(worker, report).await {
            tracing::debug!(job = %job, error = %e, "fencing not reported");
        }
    }
}

/// Deletes the topics weir created for cancelled jobs (duties from the group, after their
/// partitions were fenced) and reports each job whose topics are all gone; a failed
/// deletion is retried when the group hands the duty out again.
async fn delete_job_topics<B: Broker, C: ControlPlane>(
    broker: &B,
    control: &C,
    worker: &WorkerId,
    duties: &[(JobId, Vec<String>)],
) {
    for (job, topics) in duties {
        let mut all_gone = true;
        for topic in topics {
            match broker.delete_topic(topic).await {
                Ok(()) => tracing::info!(job = %job, topic, "deleted the topic of a cancelled job"),
                Err(e) => {
                    all_gone = false;
                    tracing::warn!(job = %job, topic, error = %e, "could not delete the topic of a cancelled job");
                }
            }
        }
        if all_gone {
            if let Err(e) = control
                .report(worker, WorkerReport::TopicsDeleted { job: *job })
                .await
            {
                tracing::debug!(job = %job, error = %e, "topic deletion not reported");
            }
        }
    }
}

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> Actor for Supervisor<B, S, C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_millis(self.config.reconcile_interval_ms), |act, ctx| {
            if act.reconciling {
                return;
            }
            act.reconciling = true;
            let control = act.control.clone();
            let config = act.config.clone();
            let registered = act.lease.is_some();
            let generation = act.lease_generation;
            let activator = act.heartbeat_thread.as_ref().map(HeartbeatThread::activator);
            let round = async move {
                let lease = if registered {
                    None
                } else {
                    let lease = control.register(&config.worker, &config.addr).await?;
                    // The lease runs from now: renew it before the rest of the round, which
                    // may wait on a slow coordinator for longer than the lease.
                    if let Some(activator) = &activator {
                        activator.activate(lease.heartbeat_interval_ms);
                    }
                    Some(lease)
                };
                let assignments = control.assignments(&config.worker).await?;
                Ok::<_, ControlError>((lease, assignments))
            };
            ctx.spawn(round.into_actor(act).map(move |result, act, ctx| {
                act.reconciling = false;
                if act.lease_generation != generation {
                    tracing::debug!("a reconcile round from before the lease was lost; dropped");
                    return;
                }
                match result {
                    Ok((lease, mut assignments)) => {
                        if let Some(lease) = lease {
                            tracing::info!(worker = %act.config.worker, "registered");
                            act.lease = Some(lease);
                        }
                        // Partition counts are reported on their own, after the
                        // assignments are applied: a slow Kafka or coordinator must not hold
                        // up starting and stopping partitions.
                        let unknown = std::mem::take(&mut assignments.unknown_partition_counts);
                        let unknown_topics = std::mem::take(&mut assignments.unknown_topic_partition_counts);
                        let duties = std::mem::take(&mut assignments.fence);
                        let inputs = std::mem::take(&mut assignments.fence_inputs);
                        let deletions = std::mem::take(&mut assignments.delete_topics);
                        let paused = act.apply(assignments);
                        if !paused.is_empty() && !act.reporting_paused {
                            act.reporting_paused = true;
                            let control = act.control.clone();
                            let worker = act.config.worker.clone();
                            let report = async move {
                                report_paused(control.as_ref(), &worker, paused).await;
                            };
                            ctx.spawn(report.into_actor(act).map(|(), act, _| act.reporting_paused = false));
                        }
                        if (!unknown.is_empty() || !unknown_topics.is_empty()) && !act.reporting {
                            act.reporting = true;
                            let (broker, control) = (act.broker.clone(), act.control.clone());
                            let (worker, pending) = (act.config.worker.clone(), act.pending.clone());
                            let report = async move {
                                let control = control.as_ref();
                                report_partition_counts(&broker, control, &worker, &pending, (&unknown, CountedTopic::Source)).await;
                                report_partition_counts(&broker, control, &worker, &pending, (&unknown_topics, CountedTopic::Joined)).await;
                            };
                            ctx.spawn(report.into_actor(act).map(|(), act, _| act.reporting = false));
                        }
                        if (!duties.is_empty() || !deletions.is_empty()) && !act.fencing {
                            act.fencing = true;
                            let (broker, control) = (act.broker.clone(), act.control.clone());
                            let worker = act.config.worker.clone();
                            let fence = async move {
                                fence_partitions(&broker, control.as_ref(), &worker, &duties, &inputs).await;
                                delete_job_topics(&broker, control.as_ref(), &worker, &deletions).await;
                            };
                            ctx.spawn(fence.into_actor(act).map(|(), act, _| act.fencing = false));
                        }
                    }
                    Err(ControlError::UnknownWorker(_)) => act.lease_lost(),
                    Err(e) => tracing::warn!(error = %e, "reconcile failed; keeping partitions running"),
                }
            }));
        });
        // Heartbeats at the interval the lease asks for (checked often, sent when due).
        let mut last_beat = tokio::time::Instant::now();
        ctx.run_interval(Duration::from_millis(50), move |act, ctx| {
            if let Some(thread) = &act.heartbeat_thread {
                // A stuck actor thread stalls the worker as a stuck supervisor would.
                let actors_alive = act
                    .actor_threads
                    .as_mut()
                    .is_none_or(|(pool, _)| pool.all_answered());
                if actors_alive {
                    thread.tick();
                }
                if thread.take_lease_lost() {
                    act.lease_lost();
                }
                return;
            }
            let Some(lease) = &act.lease else { return };
            if act.heartbeating
                || last_beat.elapsed() < Duration::from_millis(lease.heartbeat_interval_ms)
            {
                return;
            }
            last_beat = tokio::time::Instant::now();
            act.heartbeating = true;
            let control = act.control.clone();
            let worker = act.config.worker.clone();
            ctx.spawn(
                async move { control.heartbeat(&worker).await }
                    .into_actor(act)
                    .map(|result, act, _| {
                        act.heartbeating = false;
                        match result {
                            Ok(_) => {}
                            Err(ControlError::UnknownWorker(_)) => act.lease_lost(),
                            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
                        }
                    }),
            );
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.stop_all();
        Running::Stop
    }
}

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> Handler<StopSupervisor>
    for Supervisor<B, S, C>
{
    type Result = ();

    fn handle(&mut self, _: StopSupervisor, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_whose_topic_lookup_failed_is_looked_up_again_only_after_a_pause() {
        let mut pending = PendingJobs::default();
        let job = JobId(7);
        assert!(pending.lookup_due(job, 0));
        pending.lookup_failed(job, 1_000);
        assert!(!pending.lookup_due(job, 1_000 + PARTITION_COUNT_RETRY_MS - 1));
        assert!(pending.lookup_due(job, 1_000 + PARTITION_COUNT_RETRY_MS));
        assert!(pending.lookup_due(JobId(8), 1_000));
        for j in 0..PENDING_REASONS_TRACKED_MAX as u64 + 5 {
            pending.lookup_failed(JobId(j), 0);
        }
        assert!(pending.retry_at_ms.len() <= PENDING_REASONS_TRACKED_MAX);
    }
}
