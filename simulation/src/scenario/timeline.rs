//! The driver of a run and its timeline: the fault phase plays the scheduled faults and
//! their follow-ups (restarts, heals, power cuts taking effect) in time order; then every
//! fault heals, the healed group must accept a write, the jobs must catch up with outputs
//! equal to the reference's, and the group must converge.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use weir_broker::memory::MemoryBroker;
use weir_core::ids::{NodeId, TenantName};

use super::{SimOptions, CONVERGENCE_POLL_MS, PROBE_ATTEMPTS_MAX};
use crate::cluster::{ClusterView, SimCluster};
use crate::context::SimContext;
use crate::dataflow;
use crate::disk::CrashMode;
use crate::faults::ScheduledFault;
use crate::fleet::store::StoreService;
use crate::fleet::SimFleet;
use crate::jobs::SimJob;
use crate::network::{NetFaults, Partition};
use crate::workload::{self, Settled};

#[derive(Debug, Clone)]
pub(super) enum Action {
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
pub(super) struct Run {
    pub(super) options: SimOptions,
    pub(super) ctx: Arc<SimContext>,
    pub(super) cluster: SimCluster,
    pub(super) view: ClusterView,
    pub(super) nodes: Vec<NodeId>,
    /// The driver's own draws (crash prefixes, split members, probe targets).
    pub(super) rng: StdRng,
    pub(super) timeline: BTreeMap<(u64, u64), Action>,
    pub(super) timeline_seq: u64,
    pub(super) faults_injected: usize,
    /// Nodes whose power was cut and that have not died yet; they count as down.
    pub(super) doomed: BTreeSet<NodeId>,
    pub(super) applied_though_not_leader: usize,
    /// What the output check counted, over all jobs.
    pub(super) tally: dataflow::JobTally,
    /// The data side: workers, broker, checkpoint store and jobs (none in a
    /// coordinator-only run).
    pub(super) data: Option<DataSide>,
}

/// The worker fleet and what it works on.
pub(super) struct DataSide {
    pub(super) fleet: SimFleet,
    pub(super) broker: MemoryBroker,
    pub(super) store: StoreService,
    pub(super) jobs: Vec<SimJob>,
}

impl Run {
    pub(super) fn at(&mut self, at_ms: u64, action: Action) {
        self.timeline_seq += 1;
        self.timeline.insert((at_ms, self.timeline_seq), action);
    }

    fn instant(&self, at_ms: u64) -> Instant {
        self.ctx.started() + Duration::from_millis(at_ms)
    }

    pub(super) async fn start_node(&mut self, node: NodeId) {
        match self.cluster.start(node).await {
            Ok(live) => {
                self.ctx
                    .event(&format!("start n{node} (process {})", live.incarnation));
                self.ctx.spawn_watcher(live);
            }
            Err(e) => self.ctx.violation(e.to_string()),
        }
    }

    pub(super) async fn crash_node(&mut self, node: NodeId, mode: CrashMode) {
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
    pub(super) async fn fault_phase(&mut self) {
        let phase_ms = self.options.fault_phase_ms;
        while let Some(entry) = self.timeline.first_entry() {
            let (at_ms, _) = *entry.key();
            if at_ms >= phase_ms {
                break;
            }
            let action = entry.remove();
            tokio::time::sleep_until(self.instant(at_ms)).await;
            self.perform(action).await;
        }
        tokio::time::sleep_until(self.instant(phase_ms)).await;
        self.timeline.clear();
    }

    /// Does what the timeline says at this point of the fault phase.
    async fn perform(&mut self, action: Action) {
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

    /// Ends every fault: links heal, the network calms down, every node runs.
    pub(super) async fn heal(&mut self) {
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
    pub(super) async fn probe(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_millis(self.options.liveness_deadline_ms);
        let before_deadline = move || Instant::now() < deadline;
        let settled = workload::write_until_settled(
            &self.ctx,
            &self.view,
            &self.nodes,
            &mut self.rng,
            &TenantName("probe".to_string()),
            None,
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
    pub(super) async fn check_data(&mut self) {
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
        let stages_now = |id: u64| {
            let state = self.final_control_state()?;
            let job = state.jobs.get(&weir_core::ids::JobId(id))?;
            Some((job.repartitions.clone(), job.repartition_generation))
        };
        let behind = dataflow::await_caught_up(&data.broker, &ids, deadline, &stages_now).await;
        if !behind.is_empty() {
            self.ctx.violation(format!(
                "liveness: within {}ms of healing, jobs did not catch up: {}; {}",
                self.options.catch_up_deadline_ms,
                behind.join(", "),
                self.job_states()
            ));
        } else {
            self.ctx.event("every job caught up");
        }
        let versions = match self
            .final_control_state()
            .map(|s| crate::upgrades::version_chains(&s))
        {
            Some(Ok(chains)) => chains,
            Some(Err(e)) => {
                self.ctx
                    .violation(format!("upgraded jobs cannot be checked: {e}"));
                Default::default()
            }
            None => Default::default(),
        };
        let rescaled = self
            .final_control_state()
            .map(|s| crate::upgrades::rescaled_jobs(&s))
            .unwrap_or_default();
        for t in dataflow::check_outputs(&self.ctx, &data.broker, &ids, &versions, &rescaled).await
        {
            self.tally.input += t.input;
            self.tally.outputs += t.outputs;
            self.tally.dead_letters += t.dead_letters;
        }
        self.check_savepoints().await;
    }

    /// The control state of the most advanced running member.
    /// Each job's state, version and reason as the group ends: what tells a stuck job
    /// from a slow one.
    fn job_states(&self) -> String {
        let Some(state) = self.final_control_state() else {
            return "no member runs".into();
        };
        let jobs: Vec<String> = state
            .jobs
            .values()
            .map(|j| {
                format!(
                    "job {} {} version {} ({})",
                    j.id,
                    j.state.as_str(),
                    j.version,
                    j.reason.as_deref().unwrap_or("no reason")
                )
            })
            .collect();
        jobs.join("; ")
    }

    fn final_control_state(&self) -> Option<weir_coordinator::state::ControlState> {
        self.view
            .running()
            .iter()
            .max_by_key(|node| node.coordinator.raft().metrics().borrow().last_applied)
            .map(|node| node.coordinator.state().read().control.clone())
    }

    /// Every complete savepoint's pinned snapshots exist and restore, as the most
    /// advanced running member records them (a member behind may still list a deleted
    /// savepoint whose snapshots are rightly gone).
    async fn check_savepoints(&self) {
        let Some(data) = self.data.as_ref() else {
            return;
        };
        let Some(state) = self.final_control_state() else {
            return;
        };
        let (problems, checked) =
            crate::checker::savepoints::check(&state, data.store.snapshots()).await;
        self.ctx
            .event(&format!("savepoints: {checked} pinned snapshots checked"));
        for problem in problems {
            self.ctx.violation(problem);
        }
    }

    /// Waits until every node has applied the same last entry under the same leader, then
    /// checks states and logs.
    pub(super) async fn converge_and_check(&mut self) {
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
