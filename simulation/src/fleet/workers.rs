//! Starting, crashing, pausing and restarting the simulated worker processes.

use super::broker::GatedBroker;
use super::control::{EpochsSeen, SimControlPlane};
use super::gate::Gate;
use super::store::{GatedStore, StoreService};
use crate::cluster::ClusterView;
use crate::context::SimContext;
use crate::disk::{CrashMode, SimDisk};
use crate::network::SimNet;
use actix::{Actor, Addr};
use rand::Rng;
use std::sync::Arc;
use weir_broker::memory::MemoryBroker;
use weir_core::ids::{NodeId, WorkerId};
use weir_worker::checkpoint_store::LocalFirst;
use weir_worker::fleet::{StatusBoard, StopSupervisor, Supervisor, SupervisorConfig};

/// Network node ids of workers start here (coordinators are 1..=7).
pub const WORKER_NODE_BASE: NodeId = 100;

type SimSupervisor = Supervisor<GatedBroker, LocalFirst<GatedStore>, SimControlPlane>;

/// One worker machine: its identity, and its process when one runs.
struct Machine {
    id: WorkerId,
    node: NodeId,
    incarnations: u64,
    process: Option<(Gate, Addr<SimSupervisor>)>,
    /// The machine's disk, under its local copy of partition state (the production
    /// `LocalFirst` store over redb); it outlives the process.
    disk: SimDisk,
}

/// The workers of a run.
pub struct SimFleet {
    machines: Vec<Machine>,
    broker: MemoryBroker,
    store: StoreService,
    coordinators: Vec<NodeId>,
    view: ClusterView,
    net: SimNet,
    ctx: Arc<SimContext>,
    epochs: EpochsSeen,
    poll_batch_records: usize,
    seed: u64,
}

impl SimFleet {
    /// `workers` machines (nothing runs yet).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        workers: usize,
        broker: MemoryBroker,
        store: StoreService,
        coordinators: Vec<NodeId>,
        view: ClusterView,
        net: SimNet,
        ctx: Arc<SimContext>,
        poll_batch_records: usize,
        seed: u64,
    ) -> Self {
        let machines = (0..workers)
            .map(|i| Machine {
                id: WorkerId(format!("w{}", i + 1)),
                node: WORKER_NODE_BASE + i as NodeId + 1,
                incarnations: 0,
                process: None,
                disk: SimDisk::new(),
            })
            .collect();
        SimFleet {
            machines,
            broker,
            store,
            coordinators,
            view,
            net,
            ctx,
            epochs: EpochsSeen::default(),
            poll_batch_records,
            seed,
        }
    }

    /// How many worker machines there are.
    pub fn len(&self) -> usize {
        self.machines.len()
    }

    /// Whether there is no worker machine.
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    /// The network node of worker `index`.
    pub fn node(&self, index: usize) -> NodeId {
        self.machines[index].node
    }

    /// Whether worker `index` has a process (running or paused).
    pub fn is_running(&self, index: usize) -> bool {
        self.machines[index].process.is_some()
    }

    /// Whether worker `index`'s process is paused.
    pub fn is_paused(&self, index: usize) -> bool {
        self.machines[index]
            .process
            .as_ref()
            .is_some_and(|(gate, _)| gate.is_paused())
    }

    /// Starts a process on worker `index` (a restart after a crash registers again under
    /// the same id, as a rebooted machine would).
    pub fn start(&mut self, index: usize) {
        let m = &mut self.machines[index];
        if m.process.is_some() {
            return;
        }
        m.incarnations += 1;
        let gate = Gate::new();
        let control = SimControlPlane::new(
            m.node,
            self.coordinators.clone(),
            self.view.clone(),
            self.net.clone(),
            gate.clone(),
            self.ctx.clone(),
            self.epochs.clone(),
            self.seed ^ (m.node << 32) ^ m.incarnations,
        );
        let mut config = SupervisorConfig::new(m.id.clone(), format!("sim-{}", m.id));
        config.poll_batch_records = self.poll_batch_records;
        let store = match LocalFirst::with_backend(m.disk.open(), self.store.handle(gate.clone())) {
            Ok(store) => store,
            Err(e) => {
                self.ctx
                    .violation(format!("{} cannot open its local state: {e}", m.id));
                return;
            }
        };
        let supervisor = Supervisor::new(
            config,
            GatedBroker::new(self.broker.clone(), gate.clone()),
            store,
            Arc::new(control),
            StatusBoard::default(),
        )
        .start();
        self.ctx
            .event(&format!("start {} (process {})", m.id, m.incarnations));
        m.process = Some((gate, supervisor));
    }

    /// Kills worker `index`'s process at once: nothing it has in flight reports back, and
    /// its disk keeps what `mode` says of the writes not yet synced.
    pub fn crash(&mut self, index: usize, mode: CrashMode, rng: &mut impl Rng) {
        let m = &mut self.machines[index];
        if let Some((gate, supervisor)) = m.process.take() {
            gate.kill();
            supervisor.do_send(StopSupervisor);
            let report = m.disk.crash(mode, rng);
            self.ctx.event(&format!(
                "crash {} {mode:?}: kept {} of {} unsynced writes",
                m.id, report.kept, report.pending
            ));
        }
    }

    /// Freezes worker `index`'s process.
    pub fn pause(&mut self, index: usize) {
        let m = &self.machines[index];
        if let Some((gate, _)) = &m.process {
            gate.pause();
            self.ctx.event(&format!("pause {}", m.id));
        }
    }

    /// Lets worker `index`'s process go on.
    pub fn resume(&mut self, index: usize) {
        let m = &self.machines[index];
        if let Some((gate, _)) = &m.process {
            if gate.is_paused() {
                gate.resume();
                self.ctx.event(&format!("resume {}", m.id));
            }
        }
    }

    /// Resumes every paused process and restarts every crashed one.
    pub fn heal(&mut self) {
        for index in 0..self.machines.len() {
            self.resume(index);
            self.start(index);
        }
    }

    /// Kills every process (the end of a run).
    pub fn shutdown(&mut self) {
        // Every later operation fails anyway; nothing is drawn from the run's generators.
        let mut no_draws = rand::rngs::mock::StepRng::new(0, 0);
        for index in 0..self.machines.len() {
            self.crash(index, CrashMode::KeepUnsynced, &mut no_draws);
        }
    }
}
