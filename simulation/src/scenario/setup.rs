//! The run from start to end: the group, the fleet, the jobs and the clients are set up in
//! the order the seed draws them (the order is part of the replay: a draw moved is another
//! run), then the phases follow one another, and the outcome is read off the checker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use weir_broker::memory::MemoryBroker;
use weir_core::ids::{NodeId, TenantName};

use super::timeline::{Action, DataSide, Run};
use super::{
    draw_schedule, SimOptions, SimOutcome, LOG_KEPT_AFTER_SNAPSHOT, POLL_BATCH_RECORDS,
    SNAPSHOT_EVERY_ENTRIES,
};
use crate::api_load;
use crate::checker::ElectionSafety;
use crate::cluster::{ClusterSpec, ClusterView, SimCluster};
use crate::context::SimContext;
use crate::dataflow;
use crate::fleet::store::StoreService;
use crate::fleet::SimFleet;
use crate::jobs::{self, SimJob};
use crate::lifecycle;
use crate::network::SimNet;
use crate::workload::{self, ClientPacing, Settled};

/// Mixed into the seed for the life-cycle requests' generator.
const LIFECYCLE_SEED_SALT: u64 = 0x6c69_6665_6379_636c;

/// The data side's background tasks: the job submitter (false if the group never took
/// the jobs) and the producer feeding the source topics.
type DataTasks = (JoinHandle<bool>, JoinHandle<()>);

/// One seeded run: setup, the safety phase, then healing, liveness and the checks.
pub(super) async fn run(seed: u64, options: SimOptions) -> SimOutcome {
    let mut master = StdRng::seed_from_u64(seed);
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
    let mut run = Run::new(
        options,
        ctx.clone(),
        SimCluster::new(&spec, net),
        &mut master,
    );
    for node in run.nodes.clone() {
        run.start_node(node).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The data side draws from its own generators, so a coordinator-only run draws what
    // it always drew.
    let mut data_rng = StdRng::seed_from_u64(master.gen());
    let data_tasks = if run.options.workers > 0 {
        Some(start_data_side(&mut run, &mut data_rng, &stop).await)
    } else {
        None
    };
    let clients = spawn_clients(&run, &mut master, &stop);
    let lifecycle = spawn_lifecycle(&run, seed, &stop);
    let bursts = spawn_bursts(&run, seed);

    for (index, fault) in schedule.into_iter().enumerate() {
        if !run.options.skip_faults.contains(&index) {
            run.at(fault.at_ms, Action::Fault(index, fault));
        }
    }
    run.fault_phase().await;

    stop.store(true, Ordering::Relaxed);
    let submitted = match data_tasks {
        Some(tasks) => join_data_tasks(&ctx, tasks).await,
        None => false,
    };
    run.heal().await;
    let accepted = run.probe().await;
    join_lifecycle(&ctx, lifecycle).await;
    for client in clients {
        if let Err(e) = client.await {
            ctx.violation(format!("a client task failed: {e}"));
        }
    }
    if let Err(e) = bursts.await {
        ctx.violation(format!("the bursts' task failed: {e}"));
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
    finish(seed, run).await
}

impl Run {
    /// The driver of a run over `cluster`, before any node starts.
    fn new(
        options: SimOptions,
        ctx: Arc<SimContext>,
        cluster: SimCluster,
        master: &mut StdRng,
    ) -> Self {
        let view = cluster.view();
        let nodes = cluster.node_ids();
        Run {
            options,
            ctx,
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
        }
    }
}

/// Draws the jobs, creates their topics, starts the fleet and the tasks that submit the
/// jobs and feed their sources.
async fn start_data_side(
    run: &mut Run,
    data_rng: &mut StdRng,
    stop: &Arc<AtomicBool>,
) -> DataTasks {
    let ctx = run.ctx.clone();
    let jobs: Vec<SimJob> = (0..run.options.jobs.max(1))
        .map(|i| jobs::draw_job(data_rng, i))
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
        ctx,
        stop.clone(),
    ));
    run.data = Some(DataSide {
        fleet,
        broker,
        store,
        jobs,
    });
    (submitter, producer)
}

/// The seed's bursts of writes at the leader (`api-load`), as one task.
fn spawn_bursts(run: &Run, seed: u64) -> JoinHandle<()> {
    let faults = &run.options.faults;
    let bursts = api_load::draw(seed, faults.api_load, run.options.fault_phase_ms);
    let (ctx, view, nodes) = (run.ctx.clone(), run.view.clone(), run.nodes.clone());
    api_load::spawn(ctx, view, nodes, seed, bursts)
}

/// The clients writing to the group during the safety phase, one generator each.
fn spawn_clients(run: &Run, master: &mut StdRng, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (0..run.options.clients)
        .map(|client| {
            tokio::spawn(workload::run_client(
                client,
                run.ctx.clone(),
                run.view.clone(),
                run.nodes.clone(),
                StdRng::seed_from_u64(master.gen()),
                ClientPacing {
                    think_ms_max: run.options.client_think_ms_max,
                },
                stop.clone(),
            ))
        })
        .collect()
}

/// The task pausing and resuming, stopping and starting the jobs (with a data side),
/// drawing from a generator of its own so that the run's other draws stay as they were.
fn spawn_lifecycle(run: &Run, seed: u64, stop: &Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    let data = run.data.as_ref()?;
    Some(tokio::spawn(lifecycle::drive(
        run.ctx.clone(),
        run.view.clone(),
        run.nodes.clone(),
        StdRng::seed_from_u64(seed ^ LIFECYCLE_SEED_SALT),
        data.jobs.clone(),
        stop.clone(),
    )))
}

/// Waits for the life-cycle task to close the pair it began (after healing: a start may
/// wait for the fleet).
async fn join_lifecycle(ctx: &SimContext, task: Option<JoinHandle<()>>) {
    if let Some(task) = task {
        if let Err(e) = task.await {
            ctx.violation(format!("the life-cycle task failed: {e}"));
        }
    }
}

/// Waits for the producer, then the submitter; whether every job was submitted.
async fn join_data_tasks(ctx: &SimContext, (submitter, producer): DataTasks) -> bool {
    if let Err(e) = producer.await {
        ctx.violation(format!("the producer task failed: {e}"));
    }
    match submitter.await {
        Ok(ok) => ok,
        Err(e) => {
            ctx.violation(format!("the job submitter failed: {e}"));
            false
        }
    }
}

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
        None,
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

/// Stops the group and reads the outcome off the checker.
async fn finish(seed: u64, mut run: Run) -> SimOutcome {
    let ctx = run.ctx.clone();
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
