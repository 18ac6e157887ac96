//! One seeded run of a coordinator group, in the shape of TigerBeetle's VOPR.
//!
//! 1. The seed draws everything: the fault mix (swarm testing), the fault schedule, the
//!    network's and the clients' random choices, openraft's election timeouts and tokio's
//!    own scheduling choices. The whole run happens on one thread, on a paused clock that
//!    jumps from timer to timer, so it replays exactly and runs faster than real time.
//! 2. Safety phase: clients write while the schedule crashes and restarts nodes (losing
//!    unsynced writes or not), partitions the network (isolating the leader, one-way links,
//!    minority splits), jumps clocks, and the network drops, duplicates and delays messages.
//!    The checker watches every node's published Raft state all along.
//! 3. Liveness phase: every fault heals and every node restarts; within a bounded simulated
//!    time a leader must accept a write and all nodes must converge on one state.
//! 4. The converged state and the committed logs are checked against what clients were told.
//!
//! The outcome carries the violations, a trace and its digest: the same seed must give the
//! same digest, and a failing seed prints the command that replays it.

use crate::checker::ElectionSafety;
use crate::cluster::{ClusterSpec, ClusterView, SimCluster};
use crate::context::SimContext;
use crate::dataflow;
use crate::disk::CrashMode;
use crate::faults::{FaultClasses, FaultKind, ScheduledFault, Swarm, Victim};
use crate::fleet::store::StoreService;
use crate::fleet::SimFleet;
use crate::jobs::{self, SimJob};
use crate::network::{NetFaults, NetStats, Partition, SimNet};
use crate::workload::{self, ClientPacing, Settled};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use weir_broker::memory::{BrokerCall, InjectedFailure, MemoryBroker};
use weir_core::ids::{NodeId, TenantName};

/// How often the liveness phase looks at whether the group has converged.
pub const CONVERGENCE_POLL_MS: u64 = 10;
/// Attempts the liveness probe may make (it also stops at the liveness deadline).
pub const PROBE_ATTEMPTS_MAX: usize = 1_000;
/// Log entries between snapshots are drawn from this range, so runs exercise compaction and
/// snapshot installation as well as plain replication.
const SNAPSHOT_EVERY_ENTRIES: (u64, u64) = (50, 2_000);
/// Records per processing step of each partition are drawn from this range (small steps
/// interleave more).
const POLL_BATCH_RECORDS: (usize, usize) = (8, 512);
/// The broker calls an injected failure may aim at.
const BROKER_CALLS: [BrokerCall; 9] = [
    BrokerCall::PartitionCount,
    BrokerCall::CommittedOffset,
    BrokerCall::Reader,
    BrokerCall::Writer,
    BrokerCall::Poll,
    BrokerCall::Begin,
    BrokerCall::Send,
    BrokerCall::Commit,
    BrokerCall::Abort,
];

/// Creates the run's tenant, then submits every job; false if the group never took one.
async fn submit_jobs(
    ctx: Arc<SimContext>,
    view: ClusterView,
    nodes: Vec<NodeId>,
    mut rng: StdRng,
    jobs: Vec<SimJob>,
) -> bool {
    let tenant = TenantName(dataflow::SIM_TENANT.to_string());
    // One write, retried as long as the jobs' submissions are: its attempts must carry one
    // creation time (seeds 689 and 1012 failed when each round of attempts read the clock
    // again, as a new write would).
    let settled = workload::write_until_settled(
        &ctx,
        &view,
        &nodes,
        &mut rng,
        &tenant,
        dataflow::SUBMIT_ATTEMPTS_MAX * workload::CLIENT_ATTEMPTS_MAX,
        &|| true,
    )
    .await;
    if settled != Settled::Yes {
        ctx.violation("liveness: the tenant of the jobs was never created".to_string());
        return false;
    }
    for job in &jobs {
        if !dataflow::submit(&ctx, &view, &nodes, &mut rng, job).await {
            return false;
        }
    }
    true
}

/// Entries kept behind a snapshot are drawn from this range.
const LOG_KEPT_AFTER_SNAPSHOT: (u64, u64) = (10, 500);

/// What a run simulates.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Coordinators in the group (3 or 5; at most `cluster::CLUSTER_NODES_MAX`).
    pub coordinators: usize,
    /// The fault classes a seed may draw from.
    pub faults: FaultClasses,
    /// Simulated length of the safety phase.
    pub fault_phase_ms: u64,
    /// Simulated time the healed group gets to accept a write, and then again to converge.
    pub liveness_deadline_ms: u64,
    /// Concurrent clients writing during the safety phase.
    pub clients: usize,
    /// A client thinks for up to this long between writes.
    pub client_think_ms_max: u64,
    /// A bug to plant in the coordinator or worker code for this run (the simulation's
    /// self-test).
    pub plant_bug: Option<weir_coordinator::bugs::PlantedBug>,
    /// Worker processes (0: a coordinator group alone, with no jobs).
    pub workers: usize,
    /// Jobs the run submits and feeds (when it has workers).
    pub jobs: usize,
    /// Simulated time the healed fleet gets to commit every job's whole input.
    pub catch_up_deadline_ms: u64,
    /// Scheduled faults to leave out, by their index in the seed's schedule (shrinking a
    /// failing seed to the fewest faults that still fail).
    pub skip_faults: BTreeSet<usize>,
}

impl SimOptions {
    /// The `weir sim` command that runs `seed` with these options.
    pub fn replay_command(&self, seed: u64) -> String {
        let defaults = SimOptions::default();
        let mut cmd = format!("weir sim --seed {seed}");
        if self.coordinators != defaults.coordinators {
            cmd.push_str(&format!(" --coordinators {}", self.coordinators));
        }
        if self.workers != defaults.workers {
            cmd.push_str(&format!(" --workers {}", self.workers));
        }
        if self.jobs != defaults.jobs {
            cmd.push_str(&format!(" --jobs {}", self.jobs));
        }
        if self.fault_phase_ms != defaults.fault_phase_ms {
            cmd.push_str(&format!(" --fault-phase-ms {}", self.fault_phase_ms));
        }
        if self.faults != defaults.faults {
            let names = self.faults.names();
            let list = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(",")
            };
            cmd.push_str(&format!(" --faults {list}"));
        }
        if let Some(bug) = self.plant_bug {
            cmd.push_str(&format!(" --plant-bug {}", bug.name()));
        }
        if !self.skip_faults.is_empty() {
            let list: Vec<String> = self.skip_faults.iter().map(|i| i.to_string()).collect();
            cmd.push_str(&format!(" --skip-faults {}", list.join(",")));
        }
        cmd
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            coordinators: 3,
            faults: FaultClasses::all(),
            fault_phase_ms: 20_000,
            liveness_deadline_ms: 10_000,
            clients: 3,
            client_think_ms_max: 100,
            plant_bug: None,
            workers: 3,
            jobs: 2,
            catch_up_deadline_ms: 30_000,
            skip_faults: BTreeSet::new(),
        }
    }
}

/// What one run found.
#[derive(Debug, Clone)]
pub struct SimOutcome {
    /// The seed that drew the run.
    pub seed: u64,
    /// The `weir sim` command that replays this run exactly.
    pub replay: String,
    /// No invariant was violated.
    pub ok: bool,
    /// SHA-256 (hex) of the trace; equal for equal seeds and options.
    pub trace_hash: String,
    /// Every invariant violation found, stamped with simulated time.
    pub violations: Vec<String>,
    /// The event lines the digest covers (the first `trace::TRACE_LINES_KEPT_MAX`).
    pub trace: Vec<String>,
    /// Simulated time the run took.
    pub simulated_ms: u64,
    /// Writes whose clients learned they applied.
    pub writes_acked: usize,
    /// Writes whose outcome no answer settled.
    pub writes_unknown: usize,
    /// Writes that took effect through an attempt answered "not the leader" (legal: the
    /// answer is ambiguous; see `checker::writes`).
    pub writes_applied_though_not_leader: usize,
    /// Crashes, partitions and clock jumps injected.
    pub faults_injected: usize,
    /// Distinct (term, node) leaderships observed.
    pub leaderships: usize,
    /// Terms with more than one leader (legal only in openraft's advanced mode).
    pub terms_with_several_leaders: usize,
    /// The election rule that was enforced.
    pub election_safety: ElectionSafety,
    /// What the network did.
    pub net: NetStats,
    /// Records in the jobs' source topics, summed over jobs.
    pub job_input_records: usize,
    /// Records committed to the jobs' sink topics.
    pub job_outputs: usize,
    /// Records committed to the jobs' dead-letter topics.
    pub job_dead_letters: usize,
}

impl SimOutcome {
    /// The command that replays this seed.
    pub fn reproduce(&self) -> String {
        self.replay.clone()
    }
}

impl std::fmt::Display for SimOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seed {}: {} in {} simulated ms; {} writes acked, {} unknown, {} applied though not-leader; {} faults; {} leaderships ({} terms with several); trace {}",
            self.seed,
            if self.ok { "ok" } else { "FAILED" },
            self.simulated_ms,
            self.writes_acked,
            self.writes_unknown,
            self.writes_applied_though_not_leader,
            self.faults_injected,
            self.leaderships,
            self.terms_with_several_leaders,
            self.trace_hash
        )?;
        for v in &self.violations {
            writeln!(f, "  violation: {v}")?;
        }
        if !self.ok {
            writeln!(f, "  replay: {}", self.reproduce())?;
        }
        Ok(())
    }
}

/// Runs one seed to completion on a fresh single-threaded runtime with a paused clock.
pub fn run_seed(seed: u64, options: &SimOptions) -> SimOutcome {
    // openraft draws election timeouts from this thread's generator; the runtime below
    // polls every task on this thread.
    weir_coordinator::runtime::seed_thread_rng(seed);
    // actix's system runs on this very runtime (the worker fleet's actors are polled on
    // this thread like every other task).
    let system = actix::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()))
            .build()
            .expect("a current-thread runtime builds")
    });
    weir_coordinator::bugs::plant(options.plant_bug);
    // The key tables' hash seed comes from the run's seed, so the run replays exactly.
    weir_worker::operators::seed_key_hash_this_thread(seed);
    let outcome = system.block_on(run(seed, options.clone()));
    // Dropping the runtime drops every task still parked on it (in-flight messages,
    // duplicates, dead workers' calls), so nothing leaks into the next run.
    drop(system);
    weir_coordinator::bugs::plant(None);
    outcome
}

/// The seed's swarm and fault schedule, drawn from the run's master generator first.
fn draw_schedule(master: &mut StdRng, options: &SimOptions) -> (Swarm, Vec<ScheduledFault>) {
    let mut schedule_rng = StdRng::seed_from_u64(master.gen());
    let swarm = Swarm::draw(&mut schedule_rng, &options.faults, options.workers > 0);
    let schedule = swarm.schedule(&mut schedule_rng, options.fault_phase_ms);
    (swarm, schedule)
}

/// The faults `seed` schedules with `options` (before `skip_faults` leaves any out).
pub fn fault_schedule(seed: u64, options: &SimOptions) -> Vec<ScheduledFault> {
    draw_schedule(&mut StdRng::seed_from_u64(seed), options).1
}

/// Something the fault phase does at a given time.
#[derive(Debug, Clone)]
enum Action {
    /// The schedule's fault with this index.
    Fault(usize, ScheduledFault),
    /// The machine whose power was cut dies (if that process still runs).
    PowerDown {
        node: NodeId,
        incarnation: u64,
        mode: CrashMode,
        down_ms: u64,
    },
    Restart(NodeId),
    Heal(Partition),
    RestartWorker(usize),
    ResumeWorker(usize),
    BrokerReachable,
    StoreReleased,
}

/// The driver of one run.
struct Run {
    options: SimOptions,
    ctx: Arc<SimContext>,
    cluster: SimCluster,
    view: ClusterView,
    nodes: Vec<NodeId>,
    /// The driver's own draws (crash prefixes, split members, probe targets).
    rng: StdRng,
    timeline: BTreeMap<(u64, u64), Action>,
    timeline_seq: u64,
    faults_injected: usize,
    /// Nodes whose power was cut and that have not died yet; they count as down.
    doomed: BTreeSet<NodeId>,
    applied_though_not_leader: usize,
    /// What the output check counted, over all jobs.
    tally: dataflow::JobTally,
    /// The data side: workers, broker, checkpoint store and jobs (none in a
    /// coordinator-only run).
    data: Option<DataSide>,
}

/// The worker fleet and what it works on.
struct DataSide {
    fleet: SimFleet,
    broker: MemoryBroker,
    store: StoreService,
    jobs: Vec<SimJob>,
}

async fn run(seed: u64, options: SimOptions) -> SimOutcome {
    let mut master = StdRng::seed_from_u64(seed);
    let with_workers = options.workers > 0;
    let (swarm, schedule) = draw_schedule(&mut master, &options);
    let net = SimNet::new(master.gen(), swarm.net);
    let spec = ClusterSpec {
        nodes: options.coordinators,
        snapshot_every_entries: master
            .gen_range(SNAPSHOT_EVERY_ENTRIES.0..=SNAPSHOT_EVERY_ENTRIES.1),
        log_entries_kept_after_snapshot: master
            .gen_range(LOG_KEPT_AFTER_SNAPSHOT.0..=LOG_KEPT_AFTER_SNAPSHOT.1),
        entropy_seed: master.gen(),
    };
    let ctx = SimContext::new(ElectionSafety::of_openraft_build());
    ctx.event(&format!(
        "seed {seed}: {} nodes, snapshot every {} entries, {swarm}",
        spec.nodes, spec.snapshot_every_entries
    ));
    let cluster = SimCluster::new(&spec, net);
    let view = cluster.view();
    let nodes = cluster.node_ids();
    let mut run = Run {
        options,
        ctx: ctx.clone(),
        cluster,
        view,
        nodes,
        rng: StdRng::seed_from_u64(master.gen()),
        timeline: BTreeMap::new(),
        timeline_seq: 0,
        faults_injected: 0,
        doomed: BTreeSet::new(),
        applied_though_not_leader: 0,
        tally: dataflow::JobTally::default(),
        data: None,
    };
    for node in run.nodes.clone() {
        run.start_node(node).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The data side draws from its own generators, so a coordinator-only run draws what
    // it always drew.
    let mut data_rng = StdRng::seed_from_u64(master.gen());
    let mut data_tasks = None;
    if with_workers {
        let jobs: Vec<SimJob> = (0..run.options.jobs.max(1))
            .map(|i| jobs::draw_job(&mut data_rng, i))
            .collect();
        let broker = MemoryBroker::new();
        dataflow::create_topics(&broker, &jobs).await;
        let store = StoreService::new(data_rng.gen());
        let mut fleet = SimFleet::new(
            run.options.workers,
            broker.clone(),
            store.clone(),
            run.nodes.clone(),
            run.view.clone(),
            run.cluster.net().clone(),
            ctx.clone(),
            data_rng.gen_range(POLL_BATCH_RECORDS.0..=POLL_BATCH_RECORDS.1),
            data_rng.gen(),
        );
        for (i, job) in jobs.iter().enumerate() {
            ctx.event(&format!(
                "job {i} {}: {} source partitions, {} sink partitions",
                job.name, job.source_partitions, job.sink_partitions
            ));
        }
        for index in 0..fleet.len() {
            fleet.start(index);
        }
        let submitter = tokio::spawn(submit_jobs(
            ctx.clone(),
            run.view.clone(),
            run.nodes.clone(),
            StdRng::seed_from_u64(data_rng.gen()),
            jobs.clone(),
        ));
        let producer = tokio::spawn(dataflow::produce(
            broker.clone(),
            jobs.clone(),
            StdRng::seed_from_u64(data_rng.gen()),
            ctx.clone(),
            stop.clone(),
        ));
        data_tasks = Some((submitter, producer));
        run.data = Some(DataSide {
            fleet,
            broker,
            store,
            jobs,
        });
    }
    let clients: Vec<_> = (0..run.options.clients)
        .map(|client| {
            tokio::spawn(workload::run_client(
                client,
                ctx.clone(),
                run.view.clone(),
                run.nodes.clone(),
                StdRng::seed_from_u64(master.gen()),
                ClientPacing {
                    think_ms_max: run.options.client_think_ms_max,
                },
                stop.clone(),
            ))
        })
        .collect();

    for (index, fault) in schedule.into_iter().enumerate() {
        if !run.options.skip_faults.contains(&index) {
            run.at(fault.at_ms, Action::Fault(index, fault));
        }
    }
    run.fault_phase().await;

    stop.store(true, Ordering::Relaxed);
    let mut submitted = false;
    if let Some((submitter, producer)) = data_tasks {
        if let Err(e) = producer.await {
            ctx.violation(format!("the producer task failed: {e}"));
        }
        match submitter.await {
            Ok(ok) => submitted = ok,
            Err(e) => ctx.violation(format!("the job submitter failed: {e}")),
        }
    }
    run.heal().await;
    let accepted = run.probe().await;
    for client in clients {
        if let Err(e) = client.await {
            ctx.violation(format!("a client task failed: {e}"));
        }
    }
    if accepted && submitted {
        run.check_data().await;
    }
    if let Some(data) = run.data.as_mut() {
        data.fleet.shutdown();
    }
    if accepted {
        run.converge_and_check().await;
    }
    let net = run.cluster.net().stats();
    ctx.event(&format!("net {net:?}"));
    for node in run.view.running() {
        ctx.retire(&node);
    }
    run.cluster.shutdown().await;

    let simulated_ms = ctx.now_ms();
    let (trace_hash, trace, checker) = ctx.finish();
    let (writes_acked, writes_unknown) = checker.writes().settled_and_unknown();
    let violations = checker.violations().to_vec();
    SimOutcome {
        seed,
        replay: run.options.replay_command(seed),
        ok: violations.is_empty(),
        trace_hash,
        violations,
        trace,
        simulated_ms,
        writes_acked,
        writes_unknown,
        writes_applied_though_not_leader: run.applied_though_not_leader,
        faults_injected: run.faults_injected,
        leaderships: checker.election().leaderships(),
        terms_with_several_leaders: checker.election().terms_with_several_leaders(),
        election_safety: checker.election().safety(),
        net,
        job_input_records: run.tally.input,
        job_outputs: run.tally.outputs,
        job_dead_letters: run.tally.dead_letters,
    }
}

impl Run {
    fn at(&mut self, at_ms: u64, action: Action) {
        self.timeline_seq += 1;
        self.timeline.insert((at_ms, self.timeline_seq), action);
    }

    fn instant(&self, at_ms: u64) -> Instant {
        self.ctx.started() + Duration::from_millis(at_ms)
    }

    async fn start_node(&mut self, node: NodeId) {
        match self.cluster.start(node).await {
            Ok(live) => {
                self.ctx
                    .event(&format!("start n{node} (process {})", live.incarnation));
                self.ctx.spawn_watcher(live);
            }
            Err(e) => self.ctx.violation(e.to_string()),
        }
    }

    async fn crash_node(&mut self, node: NodeId, mode: CrashMode) {
        if let Some(live) = self.view.get(node) {
            // Take its last word before it goes: the checker must see every leadership.
            self.ctx.observe(&live);
            self.ctx.retire(&live);
        }
        if let Some(report) = self.cluster.crash(node, mode, &mut self.rng).await {
            self.ctx.event(&format!(
                "crash n{node} {mode:?}: kept {} of {} unsynced writes",
                report.kept, report.pending
            ));
        }
    }

    /// Runs the timeline until the end of the fault phase.
    async fn fault_phase(&mut self) {
        let phase_ms = self.options.fault_phase_ms;
        while let Some(entry) = self.timeline.first_entry() {
            let (at_ms, _) = *entry.key();
            if at_ms >= phase_ms {
                break;
            }
            let action = entry.remove();
            tokio::time::sleep_until(self.instant(at_ms)).await;
            match action {
                Action::Fault(index, fault) => {
                    self.ctx.event(&format!("fault #{index}: {:?}", fault.kind));
                    self.inject(fault).await
                }
                Action::PowerDown {
                    node,
                    incarnation,
                    mode,
                    down_ms,
                } => {
                    self.doomed.remove(&node);
                    if self
                        .view
                        .get(node)
                        .is_some_and(|n| n.incarnation == incarnation)
                    {
                        self.crash_node(node, mode).await;
                        let restart_at = self.ctx.now_ms() + down_ms;
                        self.at(restart_at, Action::Restart(node));
                    }
                }
                Action::Restart(node) => {
                    if !self.cluster.is_running(node) {
                        self.start_node(node).await;
                    }
                }
                Action::Heal(partition) => {
                    self.cluster.net().heal(&partition);
                    self.ctx.event(&format!("heal {partition}"));
                }
                Action::RestartWorker(index) => {
                    if let Some(data) = self.data.as_mut() {
                        data.fleet.start(index);
                    }
                }
                Action::ResumeWorker(index) => {
                    if let Some(data) = self.data.as_mut() {
                        data.fleet.resume(index);
                    }
                }
                Action::BrokerReachable => {
                    if let Some(data) = &self.data {
                        data.broker.faults().set_unreachable(false);
                        self.ctx.event("broker reachable again");
                    }
                }
                Action::StoreReleased => {
                    if let Some(data) = &self.data {
                        data.store.set_stalled(false);
                        self.ctx.event("checkpoint store released");
                    }
                }
            }
        }
        tokio::time::sleep_until(self.instant(phase_ms)).await;
        self.timeline.clear();
    }

    /// The node a fault hits: the leader if asked and there is one, else one of
    /// `candidates` chosen by `pick`.
    fn victim(&self, victim: Victim, pick: u64, candidates: &[NodeId]) -> Option<NodeId> {
        if victim == Victim::Leader {
            if let Some(leader) = self.view.leader() {
                return Some(leader.id);
            }
        }
        (!candidates.is_empty()).then(|| candidates[(pick % candidates.len() as u64) as usize])
    }

    /// The victim of a crash among the `running` nodes, unless crashing it would leave
    /// less than a majority up: safety holds either way, but a group that cannot commit
    /// tests little during the safety phase.
    fn crash_victim(&self, victim: Victim, pick: u64, running: &[NodeId]) -> Option<NodeId> {
        let alive: Vec<NodeId> = running
            .iter()
            .copied()
            .filter(|n| !self.doomed.contains(n))
            .collect();
        let node = self.victim(victim, pick, &alive)?;
        let down = self.nodes.len() - alive.len();
        if self.doomed.contains(&node) || down + 1 > (self.nodes.len() - 1) / 2 {
            self.ctx
                .event(&format!("skip crash of n{node}: a majority must stay up"));
            return None;
        }
        Some(node)
    }

    fn partition(&mut self, partition: Partition, heal_ms: u64, what: &str) {
        self.cluster.net().partition(&partition);
        self.ctx
            .event(&format!("partition {what} {partition} for {heal_ms}ms"));
        let heal_at = self.ctx.now_ms() + heal_ms;
        self.at(heal_at, Action::Heal(partition));
        self.faults_injected += 1;
    }

    async fn inject(&mut self, fault: ScheduledFault) {
        let nodes = self.nodes.clone();
        let running: Vec<NodeId> = self.view.running().iter().map(|n| n.id).collect();
        match fault.kind {
            FaultKind::Crash { victim, down_ms } => {
                let Some(node) = self.crash_victim(victim, fault.pick, &running) else {
                    return;
                };
                self.crash_node(node, CrashMode::KeepUnsynced).await;
                let restart_at = self.ctx.now_ms() + down_ms;
                self.at(restart_at, Action::Restart(node));
                self.faults_injected += 1;
            }
            FaultKind::PowerLoss {
                victim,
                mode,
                cut_after_ops,
                window_ms,
                down_ms,
            } => {
                let Some(node) = self.crash_victim(victim, fault.pick, &running) else {
                    return;
                };
                let (Some(live), Some(disk)) = (self.view.get(node), self.cluster.disk(node))
                else {
                    return;
                };
                disk.schedule_power_cut(cut_after_ops);
                self.ctx.doom(&live);
                self.doomed.insert(node);
                self.ctx.event(&format!(
                    "power fails on n{node} after {cut_after_ops} more disk operations"
                ));
                let down_at = self.ctx.now_ms() + window_ms;
                self.at(
                    down_at,
                    Action::PowerDown {
                        node,
                        incarnation: live.incarnation,
                        mode,
                        down_ms,
                    },
                );
                self.faults_injected += 1;
            }
            FaultKind::Isolate { victim, heal_ms } => {
                if let Some(node) = self.victim(victim, fault.pick, &nodes) {
                    self.partition(
                        Partition::isolate(node, &nodes),
                        heal_ms,
                        &format!("isolate n{node}"),
                    );
                }
            }
            FaultKind::OneWay {
                victim,
                outgoing,
                heal_ms,
            } => {
                if let Some(node) = self.victim(victim, fault.pick, &nodes) {
                    let (partition, what) = if outgoing {
                        (
                            Partition::one_way(node, &nodes),
                            format!("n{node} cannot send"),
                        )
                    } else {
                        (
                            Partition::one_way_into(node, &nodes),
                            format!("n{node} cannot receive"),
                        )
                    };
                    self.partition(partition, heal_ms, &what);
                }
            }
            FaultKind::Split { heal_ms } => {
                let mut shuffled = nodes.clone();
                shuffled.shuffle(&mut StdRng::seed_from_u64(fault.pick));
                let minority_max = (nodes.len() - 1) / 2;
                let size = 1 + (fault.pick % minority_max.max(1) as u64) as usize;
                let (minority, majority) = shuffled.split_at(size.min(shuffled.len() - 1));
                self.partition(
                    Partition::split(minority, majority),
                    heal_ms,
                    &format!("split {minority:?}|{majority:?}"),
                );
            }
            FaultKind::WorkerCrash { down_ms } => {
                let Some(data) = self.data.as_mut() else {
                    return;
                };
                let index = (fault.pick % data.fleet.len() as u64) as usize;
                if data.fleet.is_running(index) {
                    let modes = [
                        CrashMode::KeepUnsynced,
                        CrashMode::DropUnsynced,
                        CrashMode::KeepUnsyncedPrefix,
                    ];
                    let mode = modes[((fault.pick >> 8) % modes.len() as u64) as usize];
                    data.fleet
                        .crash(index, mode, &mut StdRng::seed_from_u64(fault.pick));
                    let restart_at = self.ctx.now_ms() + down_ms;
                    self.at(restart_at, Action::RestartWorker(index));
                    self.faults_injected += 1;
                }
            }
            FaultKind::WorkerPause { pause_ms } => {
                let Some(data) = self.data.as_mut() else {
                    return;
                };
                let index = (fault.pick % data.fleet.len() as u64) as usize;
                if data.fleet.is_running(index) && !data.fleet.is_paused(index) {
                    data.fleet.pause(index);
                    self.ctx
                        .event(&format!("worker {index} frozen for {pause_ms}ms"));
                    let resume_at = self.ctx.now_ms() + pause_ms;
                    self.at(resume_at, Action::ResumeWorker(index));
                    self.faults_injected += 1;
                }
            }
            FaultKind::WorkerIsolate { heal_ms } => {
                let Some(data) = self.data.as_ref() else {
                    return;
                };
                let index = (fault.pick % data.fleet.len() as u64) as usize;
                let worker = data.fleet.node(index);
                self.partition(
                    Partition::isolate(worker, &nodes),
                    heal_ms,
                    &format!("worker {index} from the coordinators"),
                );
            }
            FaultKind::BrokerOutage { outage_ms } => {
                let Some(data) = self.data.as_ref() else {
                    return;
                };
                data.broker.faults().set_unreachable(true);
                self.ctx
                    .event(&format!("broker unreachable for {outage_ms}ms"));
                let back_at = self.ctx.now_ms() + outage_ms;
                self.at(back_at, Action::BrokerReachable);
                self.faults_injected += 1;
            }
            FaultKind::BrokerCallsFail { count, timeout } => {
                let Some(data) = self.data.as_ref() else {
                    return;
                };
                let call = BROKER_CALLS[(fault.pick % BROKER_CALLS.len() as u64) as usize];
                let failure = if timeout {
                    InjectedFailure::Timeout
                } else {
                    InjectedFailure::Unavailable
                };
                data.broker.faults().fail_next(call, count, failure);
                self.ctx.event(&format!(
                    "broker fails the next {count} {call:?} calls: {failure:?}"
                ));
                self.faults_injected += 1;
            }
            FaultKind::BrokerCommitReplyLost => {
                let Some(data) = self.data.as_ref() else {
                    return;
                };
                data.broker.faults().commit_outcome_unknown_next(1);
                self.ctx.event("broker loses the next commit's reply");
                self.faults_injected += 1;
            }
            FaultKind::BrokerExpiresTransaction => {
                let Some(data) = self.data.as_ref() else {
                    return;
                };
                let open: Vec<String> = data
                    .broker
                    .faults()
                    .open_transactions()
                    .into_iter()
                    .filter(|id| id.starts_with("weir-"))
                    .collect();
                if !open.is_empty() {
                    let id = &open[(fault.pick % open.len() as u64) as usize];
                    data.broker.faults().expire_transaction(id);
                    self.ctx
                        .event(&format!("broker expires the transaction of {id}"));
                    self.faults_injected += 1;
                }
            }
            FaultKind::StoreStall { stall_ms } => {
                let Some(data) = self.data.as_ref() else {
                    return;
                };
                data.store.set_stalled(true);
                self.ctx
                    .event(&format!("checkpoint store stalls for {stall_ms}ms"));
                let back_at = self.ctx.now_ms() + stall_ms;
                self.at(back_at, Action::StoreReleased);
                self.faults_injected += 1;
            }
            FaultKind::ClockJump { delta_ms } => {
                let node = nodes[(fault.pick % nodes.len() as u64) as usize];
                if let Some(clock) = self.cluster.clock(node) {
                    clock.jump(delta_ms);
                    self.ctx
                        .event(&format!("clock of n{node} jumps {delta_ms:+}ms"));
                    self.faults_injected += 1;
                }
            }
        }
    }

    /// Ends every fault: links heal, the network calms down, every node runs.
    async fn heal(&mut self) {
        // A machine whose power was cut dies now, before anything restarts.
        for node in std::mem::take(&mut self.doomed) {
            self.crash_node(node, CrashMode::DropUnsynced).await;
        }
        self.cluster.net().heal_all();
        self.cluster.net().set_faults(NetFaults::calm());
        if let Some(data) = self.data.as_mut() {
            data.broker.faults().heal();
            data.store.set_stalled(false);
            dataflow::close_producers(&data.broker, &data.jobs);
            data.fleet.heal();
        }
        if let Some(data) = self.data.as_ref() {
            dataflow::flush(&data.broker, &data.jobs, &self.ctx).await;
        }
        self.ctx.event("heal everything");
        for node in self.nodes.clone() {
            if !self.cluster.is_running(node) {
                self.start_node(node).await;
            }
        }
    }

    /// The healed group must accept a write within the liveness deadline.
    async fn probe(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_millis(self.options.liveness_deadline_ms);
        let before_deadline = move || Instant::now() < deadline;
        let settled = workload::write_until_settled(
            &self.ctx,
            &self.view,
            &self.nodes,
            &mut self.rng,
            &TenantName("probe".to_string()),
            PROBE_ATTEMPTS_MAX,
            &before_deadline,
        )
        .await;
        if settled == Settled::Unknown {
            self.trace_raft_states();
            self.ctx.violation(format!(
                "liveness: the healed group accepted no write within {}ms",
                self.options.liveness_deadline_ms
            ));
            return false;
        }
        true
    }

    /// Each running node's Raft state, into the trace: what a stalled group looks like.
    fn trace_raft_states(&self) {
        for node in self.view.running() {
            let m = node.coordinator.raft().metrics().borrow().clone();
            self.ctx.event(&format!(
                "n{} {:?} term {} vote {} leader {:?} last log {:?} applied {:?}",
                node.id,
                m.state,
                m.current_term,
                m.vote,
                m.current_leader,
                m.last_log_index,
                m.last_applied,
            ));
        }
    }

    /// Once the group is healed: every job must commit its whole input within the catch-up
    /// deadline, and what it committed must equal the reference evaluator's outputs.
    async fn check_data(&mut self) {
        let Some(data) = self.data.as_ref() else {
            return;
        };
        let mut ids = Vec::new();
        for job in &data.jobs {
            let id = self.view.running().iter().find_map(|node| {
                let state = node.coordinator.state().read();
                state
                    .control
                    .jobs
                    .values()
                    .find(|j| j.name == job.name)
                    .map(|j| j.id.0)
            });
            match id {
                Some(id) => ids.push((job.clone(), id)),
                None => {
                    self.ctx.violation(format!(
                        "job {} was accepted but is not in the state",
                        job.name
                    ));
                    return;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_millis(self.options.catch_up_deadline_ms);
        let behind = dataflow::await_caught_up(&data.broker, &ids, deadline).await;
        if !behind.is_empty() {
            self.ctx.violation(format!(
                "liveness: within {}ms of healing, jobs did not catch up: {}",
                self.options.catch_up_deadline_ms,
                behind.join(", ")
            ));
        } else {
            self.ctx.event("every job caught up");
        }
        for t in dataflow::check_outputs(&self.ctx, &data.broker, &data.jobs).await {
            self.tally.input += t.input;
            self.tally.outputs += t.outputs;
            self.tally.dead_letters += t.dead_letters;
        }
    }

    /// Waits until every node has applied the same last entry under the same leader, then
    /// checks states and logs.
    async fn converge_and_check(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(self.options.liveness_deadline_ms);
        let settled = loop {
            let running = self.view.running();
            let metrics: Vec<_> = running
                .iter()
                .map(|n| n.coordinator.raft().metrics().borrow().clone())
                .collect();
            let first = metrics.first().map(|m| (m.last_applied, m.current_leader));
            let agreed = running.len() == self.nodes.len()
                && first.is_some_and(|(applied, leader)| applied.is_some() && leader.is_some())
                && metrics
                    .iter()
                    .all(|m| Some((m.last_applied, m.current_leader)) == first);
            if agreed {
                break first.and_then(|(applied, _)| applied).map(|a| (running, a));
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(CONVERGENCE_POLL_MS)).await;
        };
        let Some((running, applied)) = settled else {
            self.ctx.violation(format!(
                "liveness: the healed group did not converge within {}ms",
                self.options.liveness_deadline_ms
            ));
            return;
        };
        let mut states = BTreeMap::new();
        let mut logs = BTreeMap::new();
        for node in &running {
            states.insert(node.id, node.coordinator.state().read().control.clone());
            match node.committed_log(applied.index) {
                Ok(log) => {
                    logs.insert(node.id, log);
                }
                Err(e) => self
                    .ctx
                    .violation(format!("cannot read n{}'s log: {e}", node.id)),
            }
        }
        if let Some(state) = states.values().next() {
            let bytes = serde_json::to_vec(state).unwrap_or_default();
            self.ctx.event(&format!(
                "converged at {applied}: {} tenants, state {}",
                state.tenants.len(),
                hex::encode(Sha256::digest(bytes))
            ));
            let answers = self
                .ctx
                .with_checker(|c, _| c.writes().applied_attempt_answers(state));
            self.applied_though_not_leader = answers.get("not-leader").copied().unwrap_or(0);
            self.ctx
                .event(&format!("applied attempts by answer: {answers:?}"));
        }
        self.ctx
            .with_checker(|c, at| c.check_final(at, &states, &logs));
    }
}
