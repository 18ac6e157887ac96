//! One method per kind of fault: what it does to the group, the fleet, the broker or the
//! checkpoint store, and the follow-up it schedules (a restart, a heal, a release).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use weir_broker::memory::{BrokerCall, InjectedFailure};
use weir_core::ids::NodeId;

use super::timeline::{Action, Run};
use crate::disk::CrashMode;
use crate::faults::{FaultKind, ScheduledFault, Victim};
use crate::network::Partition;

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

impl Run {
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

    /// Injects one scheduled fault (the timeline's `Action::Fault`).
    pub(super) async fn inject(&mut self, fault: ScheduledFault) {
        let pick = fault.pick;
        match fault.kind {
            FaultKind::Crash { victim, down_ms } => self.crash(victim, pick, down_ms).await,
            FaultKind::PowerLoss {
                victim,
                mode,
                cut_after_ops,
                window_ms,
                down_ms,
            } => self.power_loss(victim, pick, mode, cut_after_ops, window_ms, down_ms),
            FaultKind::Isolate { victim, heal_ms } => self.isolate(victim, pick, heal_ms),
            FaultKind::OneWay {
                victim,
                outgoing,
                heal_ms,
            } => self.one_way(victim, pick, outgoing, heal_ms),
            FaultKind::Split { heal_ms } => self.split(pick, heal_ms),
            FaultKind::WorkerCrash { down_ms } => self.worker_crash(pick, down_ms),
            FaultKind::WorkerPause { pause_ms } => self.worker_pause(pick, pause_ms),
            FaultKind::WorkerIsolate { heal_ms } => self.worker_isolate(pick, heal_ms),
            FaultKind::BrokerOutage { outage_ms } => self.broker_outage(outage_ms),
            FaultKind::BrokerCallsFail { count, timeout } => {
                self.broker_calls_fail(pick, count, timeout)
            }
            FaultKind::BrokerCommitReplyLost => self.broker_commit_reply_lost(),
            FaultKind::BrokerExpiresTransaction => self.broker_expires_transaction(pick),
            FaultKind::StoreStall { stall_ms } => self.store_stall(stall_ms),
            FaultKind::ClockJump { delta_ms } => self.clock_jump(pick, delta_ms),
        }
    }

    /// The ids of the running coordinators.
    fn running_ids(&self) -> Vec<NodeId> {
        self.view.running().iter().map(|n| n.id).collect()
    }

    async fn crash(&mut self, victim: Victim, pick: u64, down_ms: u64) {
        let running = self.running_ids();
        let Some(node) = self.crash_victim(victim, pick, &running) else {
            return;
        };
        self.crash_node(node, CrashMode::KeepUnsynced).await;
        let restart_at = self.ctx.now_ms() + down_ms;
        self.at(restart_at, Action::Restart(node));
        self.faults_injected += 1;
    }

    /// The disk stops after `cut_after_ops` more operations; the machine dies `window_ms`
    /// later (`Action::PowerDown`).
    fn power_loss(
        &mut self,
        victim: Victim,
        pick: u64,
        mode: CrashMode,
        cut_after_ops: u64,
        window_ms: u64,
        down_ms: u64,
    ) {
        let running = self.running_ids();
        let Some(node) = self.crash_victim(victim, pick, &running) else {
            return;
        };
        let (Some(live), Some(disk)) = (self.view.get(node), self.cluster.disk(node)) else {
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

    fn isolate(&mut self, victim: Victim, pick: u64, heal_ms: u64) {
        let nodes = self.nodes.clone();
        if let Some(node) = self.victim(victim, pick, &nodes) {
            self.partition(
                Partition::isolate(node, &nodes),
                heal_ms,
                &format!("isolate n{node}"),
            );
        }
    }

    fn one_way(&mut self, victim: Victim, pick: u64, outgoing: bool, heal_ms: u64) {
        let nodes = self.nodes.clone();
        if let Some(node) = self.victim(victim, pick, &nodes) {
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

    /// A minority of the coordinators, shuffled by `pick`, from the rest.
    fn split(&mut self, pick: u64, heal_ms: u64) {
        let nodes = self.nodes.clone();
        let mut shuffled = nodes.clone();
        shuffled.shuffle(&mut StdRng::seed_from_u64(pick));
        let minority_max = (nodes.len() - 1) / 2;
        let size = 1 + (pick % minority_max.max(1) as u64) as usize;
        let (minority, majority) = shuffled.split_at(size.min(shuffled.len() - 1));
        self.partition(
            Partition::split(minority, majority),
            heal_ms,
            &format!("split {minority:?}|{majority:?}"),
        );
    }

    fn worker_crash(&mut self, pick: u64, down_ms: u64) {
        let Some(data) = self.data.as_mut() else {
            return;
        };
        let index = (pick % data.fleet.len() as u64) as usize;
        if data.fleet.is_running(index) {
            let modes = [
                CrashMode::KeepUnsynced,
                CrashMode::DropUnsynced,
                CrashMode::KeepUnsyncedPrefix,
            ];
            let mode = modes[((pick >> 8) % modes.len() as u64) as usize];
            data.fleet
                .crash(index, mode, &mut StdRng::seed_from_u64(pick));
            let restart_at = self.ctx.now_ms() + down_ms;
            self.at(restart_at, Action::RestartWorker(index));
            self.faults_injected += 1;
        }
    }

    fn worker_pause(&mut self, pick: u64, pause_ms: u64) {
        let Some(data) = self.data.as_mut() else {
            return;
        };
        let index = (pick % data.fleet.len() as u64) as usize;
        if data.fleet.is_running(index) && !data.fleet.is_paused(index) {
            data.fleet.pause(index);
            self.ctx
                .event(&format!("worker {index} frozen for {pause_ms}ms"));
            let resume_at = self.ctx.now_ms() + pause_ms;
            self.at(resume_at, Action::ResumeWorker(index));
            self.faults_injected += 1;
        }
    }

    fn worker_isolate(&mut self, pick: u64, heal_ms: u64) {
        let Some(data) = self.data.as_ref() else {
            return;
        };
        let index = (pick % data.fleet.len() as u64) as usize;
        let worker = data.fleet.node(index);
        let nodes = self.nodes.clone();
        self.partition(
            Partition::isolate(worker, &nodes),
            heal_ms,
            &format!("worker {index} from the coordinators"),
        );
    }

    fn broker_outage(&mut self, outage_ms: u64) {
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

    fn broker_calls_fail(&mut self, pick: u64, count: usize, timeout: bool) {
        let Some(data) = self.data.as_ref() else {
            return;
        };
        let call = BROKER_CALLS[(pick % BROKER_CALLS.len() as u64) as usize];
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

    fn broker_commit_reply_lost(&mut self) {
        let Some(data) = self.data.as_ref() else {
            return;
        };
        data.broker.faults().commit_outcome_unknown_next(1);
        self.ctx.event("broker loses the next commit's reply");
        self.faults_injected += 1;
    }

    /// Expires one of the workers' open transactions (ids starting `weir-`), if any.
    fn broker_expires_transaction(&mut self, pick: u64) {
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
            let id = &open[(pick % open.len() as u64) as usize];
            data.broker.faults().expire_transaction(id);
            self.ctx
                .event(&format!("broker expires the transaction of {id}"));
            self.faults_injected += 1;
        }
    }

    fn store_stall(&mut self, stall_ms: u64) {
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

    fn clock_jump(&mut self, pick: u64, delta_ms: i64) {
        let nodes = &self.nodes;
        let node = nodes[(pick % nodes.len() as u64) as usize];
        if let Some(clock) = self.cluster.clock(node) {
            clock.jump(delta_ms);
            self.ctx
                .event(&format!("clock of n{node} jumps {delta_ms:+}ms"));
            self.faults_injected += 1;
        }
    }
}
