//! A running coordinator: openraft over the redb store and a transport, the control loop the
//! leader runs (lease expiry, scheduling), and the operations the API calls. Everything
//! outside the process is reached through the seams: the transport, the redb backend, the
//! clock and the entropy source, and tokio's (virtual, in the simulation) timers.

use crate::group_commit::GroupCommit;
// Its home is `write_error`; re-exported here, where callers of `write` look for it.
use crate::lease::LeaseTable;
use crate::network::{Network, RaftTransport};
use crate::raft_types::Raft;
use crate::scheduler;
use crate::state::{Command, CommandResult};
use crate::store::{self, OpenError, SharedState};
pub use crate::write_error::WriteError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};
use redb::Database;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;
use weir_core::ids::{NodeId, WorkerId};
use weir_core::seams::Seams;
use weir_core::wire::{ClusterStatus, JobState, Lease, Member};

/// How often the leader's control loop looks at leases and placement.
pub const CONTROL_TICK_MS: u64 = 100;
/// Control rounds per tick that may propose; a plan the group keeps refusing waits a tick.
pub const CONTROL_ROUNDS_PER_TICK_MAX: usize = 8;
/// How long a read waits for a restarted leader to apply the log it restarted with
/// (see [`Coordinator::linearizable`]) before it is answered "unavailable".
pub const RESTART_READ_WAIT_MS: u64 = 2_000;

/// Tunables of one coordinator. The defaults suit a group on one LAN.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub id: NodeId,
    /// The address peers and clients reach this coordinator at.
    pub advertise_addr: String,
    /// The initial members (`--peers`); a node not listed here waits to be added.
    pub peers: BTreeMap<NodeId, String>,
    /// How often the leader sends Raft heartbeats.
    pub heartbeat_interval_ms: u64,
    /// openraft's election timeout range, drawn from once per process. A follower that has
    /// seen a leader waits `election_timeout_max_ms` (openraft's leader lease) *plus* its
    /// drawn timeout before standing, so the wait operators reason about is
    /// [`CoordinatorConfig::follower_wait_ms`]; set both with
    /// [`CoordinatorConfig::set_follower_wait_ms`].
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// Entries since the last snapshot that trigger a new one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, for slow followers.
    pub log_entries_kept_after_snapshot: u64,
    /// A worker lease lasts this long after each heartbeat.
    pub lease_timeout_ms: u64,
    /// Workers are told to heartbeat this often.
    pub worker_heartbeat_interval_ms: u64,
    /// Whether a member with no store forms the group with `peers` (`--initial-cluster-state
    /// new`) or only waits to be added (`existing`, for a member replacing a lost one).
    pub bootstrap: bool,
}

impl CoordinatorConfig {
    /// Defaults for a coordinator `id` reachable at `advertise_addr`.
    pub fn new(
        id: NodeId,
        advertise_addr: impl Into<String>,
        peers: BTreeMap<NodeId, String>,
    ) -> Self {
        CoordinatorConfig {
            id,
            advertise_addr: advertise_addr.into(),
            peers,
            // openraft 0.9 draws each member's election timeout once, at start, from this
            // range, and a follower that has seen a leader waits `election_timeout_max_ms`
            // (the leader lease) plus its own timeout before standing for election, checked
            // on ticks of 1.5 heartbeat intervals. Followers therefore wait 300..400 ms
            // (`follower_wait_ms`, the `--election-timeout-ms` default), and failover takes
            // about that plus one tick and a vote round.
            heartbeat_interval_ms: 30,
            election_timeout_min_ms: 100,
            election_timeout_max_ms: 200,
            snapshot_every_entries: 5_000,
            log_entries_kept_after_snapshot: 1_000,
            // A dead worker's partitions move after at most one lease: 1.2 s keeps
            // recovery under 3 s (at 1.5 s one kill in eight took 3.01 s). Workers renew
            // from a thread of their own (`weir_worker::fleet::HeartbeatThread`) every
            // 250 ms, each attempt bounded at 400 ms, so neither processing nor one hung
            // coordinator (one attempt lost, the next coordinator answers) lets a healthy
            // worker's lease lapse.
            lease_timeout_ms: 1_200,
            worker_heartbeat_interval_ms: 250,
            bootstrap: true,
        }
    }
}

/// Why a follower-wait range cannot be turned into openraft's election settings.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FollowerWaitError {
    #[error("MIN ({min} ms) must be below MAX ({max} ms)")]
    Empty { min: u64, max: u64 },
    #[error(
        "MIN ({min} ms) must exceed half of MAX ({half} ms) plus the heartbeat interval \
         ({heartbeat} ms): a follower first waits out the leader lease of MAX/2, then a random \
         time of at least one heartbeat"
    )]
    TooWide { min: u64, half: u64, heartbeat: u64 },
}

impl CoordinatorConfig {
    /// The range of time a follower that hears nothing from its leader waits before it
    /// stands for election: openraft 0.9's leader lease (its maximum election timeout) plus
    /// the election timeout it drew, `max + [min, max)`. This is what
    /// `weir coordinator --election-timeout-ms` sets and what failover bounds are stated in.
    pub fn follower_wait_ms(&self) -> (u64, u64) {
        (
            self.election_timeout_max_ms + self.election_timeout_min_ms,
            2 * self.election_timeout_max_ms,
        )
    }

    /// Sets openraft's election settings so a follower waits a random time in `min..max`
    /// ms (see [`CoordinatorConfig::follower_wait_ms`]): a lease of `max / 2` and timeouts
    /// drawn from `min - max / 2 .. max / 2`. Validated against the heartbeat interval, so
    /// set that first.
    pub fn set_follower_wait_ms(&mut self, min: u64, max: u64) -> Result<(), FollowerWaitError> {
        if min >= max {
            return Err(FollowerWaitError::Empty { min, max });
        }
        let half = max / 2;
        if min <= half + self.heartbeat_interval_ms {
            return Err(FollowerWaitError::TooWide {
                min,
                half,
                heartbeat: self.heartbeat_interval_ms,
            });
        }
        self.election_timeout_min_ms = min - half;
        self.election_timeout_max_ms = half;
        debug_assert!(self.election_timeout_min_ms < self.election_timeout_max_ms);
        debug_assert!(self.heartbeat_interval_ms < self.election_timeout_min_ms);
        Ok(())
    }
}

/// Why a coordinator could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error("Raft failed to start: {0}")]
    Raft(String),
    /// The member lost its store while the group counts it as having one.
    #[error("{0}")]
    LostStore(String),
}

/// One coordinator of the group.
pub struct Coordinator {
    config: CoordinatorConfig,
    raft: Raft,
    state: SharedState,
    seams: Seams,
    leases: Mutex<LeaseTable>,
    started: Instant,
    group_commit: GroupCommit,
    /// The index of the last log entry this process found on disk at start, if any.
    /// Everything an earlier incarnation applied (and so may have served) lies at or
    /// below it; see [`Coordinator::linearizable`].
    restart_log_index: Option<u64>,
    /// The term of the vote found on disk at start: the only term in which this process
    /// can lead without a first entry of its own after that log.
    restart_term: u64,
    /// Whether the applied state has reached `restart_log_index` (it never goes back).
    restart_log_applied: AtomicBool,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("id", &self.config.id)
            .finish()
    }
}

impl Coordinator {
    /// Starts a coordinator over `db` and `transport`, joining or forming the group, and
    /// spawns its control loop on the current tokio runtime.
    pub async fn start<T: RaftTransport>(
        config: CoordinatorConfig,
        db: Arc<Database>,
        transport: T,
        seams: Seams,
    ) -> Result<Arc<Coordinator>, StartError> {
        let raft_config = openraft::Config {
            cluster_name: "weir".to_string(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every_entries),
            max_in_snapshot_log_to_keep: config.log_entries_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
        let (mut log_store, sm_store) = store::open_stores(db)?;
        let restart_log_index = openraft::storage::RaftLogStorage::get_log_state(&mut log_store)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?
            .last_log_id
            .map(|id| id.index);
        let restart_term = openraft::storage::RaftLogStorage::read_vote(&mut log_store)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?
            .map_or(0, |vote| vote.leader_id().term);
        let state = sm_store.shared();
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            Network::new(transport, config.heartbeat_interval_ms),
            log_store,
            sm_store,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized && config.bootstrap && config.peers.contains_key(&config.id) {
            // Every member of the initial --peers list initializes with the same membership;
            // openraft accepts that, and the group forms once a majority is up.
            let members: BTreeMap<NodeId, BasicNode> = config
                .peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            if let Err(e) = raft.initialize(members).await {
                tracing::info!(error = %e, "initialize skipped");
            }
        }
        let group_commit = GroupCommit::start(raft.clone());
        let coordinator = Arc::new(Coordinator {
            group_commit,
            leases: Mutex::new(LeaseTable::new(config.lease_timeout_ms)),
            config,
            raft,
            state,
            seams,
            started: Instant::now(),
            restart_log_applied: AtomicBool::new(restart_log_index.is_none()),
            restart_log_index,
            restart_term,
        });
        tokio::spawn(control_loop(Arc::downgrade(&coordinator)));
        tokio::spawn(lease_clock(Arc::downgrade(&coordinator)));
        Ok(coordinator)
    }

    /// This coordinator's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The Raft handle, for the transport's receiving end.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The applied state, for reads.
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// The seams this coordinator was built with.
    pub fn seams(&self) -> &Seams {
        &self.seams
    }

    /// The leader as this node knows it, and its address.
    pub fn leader(&self) -> (Option<NodeId>, Option<String>) {
        let m = self.raft.metrics();
        let m = m.borrow();
        let addr = m.current_leader.and_then(|l| {
            m.membership_config
                .membership()
                .get_node(&l)
                .map(|n| n.addr.clone())
        });
        (m.current_leader, addr)
    }

    /// Whether this node currently believes it is the leader.
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.config.id)
    }

    fn not_leader(&self) -> WriteError {
        let (leader_id, leader_addr) = self.leader();
        WriteError::NotLeader {
            leader_id: leader_id.filter(|l| *l != self.config.id),
            leader_addr,
        }
    }

    /// Proposes a command and waits until it is committed and applied.
    pub async fn write(&self, command: Command) -> Result<CommandResult, WriteError> {
        let started = Instant::now();
        let result = self.group_commit.submit(command).await;
        metrics::histogram!("weir_raft_commit_latency_seconds")
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Waits until this node, as leader, has applied everything committed before the call:
    /// a read after it is linearizable (read-index).
    ///
    /// openraft 0.9 lets a node that was leader when it stopped restart as leader of the
    /// same term, and then reads at `max(committed, its term's first entry)`. Its committed
    /// index after a restart is only the hint on disk, which lags (it is written without
    /// fsync, every `COMMITTED_HINT_EVERY` entries), so such a read could see state older
    /// than what the earlier incarnation already served — an assignment epoch going back
    /// (simulation seed 5127). Reads therefore also wait, once per process, until the log
    /// found at start is applied: every entry the earlier incarnation applied is in it. A
    /// leader of any later term read-indexes past its own first entry, which follows every
    /// committed entry, so the wait is only for the term the process restarted in.
    pub async fn linearizable(&self) -> Result<(), WriteError> {
        match self.raft.ensure_linearizable().await {
            Ok(_) => {}
            Err(RaftError::APIError(_)) => return Err(self.not_leader()),
            Err(e) => return Err(WriteError::Unavailable(e.to_string())),
        }
        if self.restart_log_applied.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.raft.metrics().borrow().current_term != self.restart_term {
            self.restart_log_applied.store(true, Ordering::Release);
            return Ok(());
        }
        self.raft
            .wait(Some(Duration::from_millis(RESTART_READ_WAIT_MS)))
            .applied_index_at_least(self.restart_log_index, "the log found at start is applied")
            .await
            .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        self.restart_log_applied.store(true, Ordering::Release);
        Ok(())
    }

    /// Renews a worker's lease. Only the leader decides leases.
    pub fn heartbeat(&self, worker: &WorkerId) -> Result<Lease, WriteError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if !self.state.read().control.workers.contains_key(worker) {
            return Err(WriteError::Refused(crate::state::Refusal::NotFound(
                format!("worker {worker}"),
            )));
        }
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .renew(worker, self.monotonic_ms());
        Ok(self.lease_for(worker))
    }

    /// The lease terms a worker is told.
    pub fn lease_for(&self, worker: &WorkerId) -> Lease {
        Lease {
            worker: worker.clone(),
            lease_timeout_ms: self.config.lease_timeout_ms,
            heartbeat_interval_ms: self.config.worker_heartbeat_interval_ms,
        }
    }

    /// When a worker's lease expires, in wall-clock Unix ms, as this leader sees it.
    pub fn lease_expires_at_ms(&self, worker: &WorkerId) -> Option<u64> {
        let deadline = self
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .deadline_ms(worker)?;
        let left = deadline.saturating_sub(self.monotonic_ms());
        Some(self.seams.clock.now_ms() + left)
    }

    /// Milliseconds since this coordinator started, on the runtime's monotonic clock.
    fn monotonic_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The group as this node sees it.
    pub fn cluster_status(&self) -> ClusterStatus {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let state = if m.current_leader == Some(*id) {
                    "leader"
                } else if !voters.contains(id) {
                    "learner"
                } else if m.current_leader.is_some() {
                    "follower"
                } else {
                    "unknown"
                };
                Member {
                    id: *id,
                    addr: node.addr.clone(),
                    state: state.to_string(),
                }
            })
            .collect();
        ClusterStatus {
            leader: m.current_leader,
            term: m.current_term,
            members,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            seen: self
                .state
                .read()
                .control
                .members_seen
                .iter()
                .copied()
                .collect(),
        }
    }

    /// Adds a coordinator: first as a learner that catches up (from a snapshot if the log
    /// was compacted), then as a voter through joint consensus.
    pub async fn add_member(&self, id: NodeId, addr: String) -> Result<(), WriteError> {
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(|e| self.membership_error(e))?;
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(())
    }

    /// Removes a coordinator from the group through joint consensus.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), WriteError> {
        let known = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if !known {
            return Err(WriteError::Refused(crate::state::Refusal::NotFound(
                format!("member {id}"),
            )));
        }
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(())
    }

    fn membership_error(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> WriteError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => self.not_leader(),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                WriteError::Refused(crate::state::Refusal::Conflict(c.to_string()))
            }
            other => WriteError::Unavailable(other.to_string()),
        }
    }

    /// Waits until Raft stops on its own (a storage error: a failed fsync or a damaged
    /// store; openraft never retries one) and says why. The process then ends: a write
    /// whose fsync failed may or may not be on disk, and retrying it could acknowledge an
    /// entry that is not durable.
    pub async fn stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "Raft stopped".into();
            }
        }
    }

    /// Stops Raft; the control loop ends with it.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// One round of the leader's control loop; returns whether it proposed anything.
    async fn control_round(&self, elected_term: &mut Option<u64>) -> bool {
        let (is_leader, term) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (
                m.state == ServerState::Leader && m.current_leader == Some(self.config.id),
                m.current_term,
            )
        };
        self.record_gauges();
        if !is_leader {
            *elected_term = None;
            return false;
        }
        if *elected_term != Some(term) {
            // Newly elected: make sure everything committed is applied before deciding on
            // leases, then grant every registered worker a full lease from now — the time
            // read after that wait, which can last seconds.
            if self.linearizable().await.is_err() {
                return false;
            }
            let state = self.state.read();
            self.leases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .on_elected(self.monotonic_ms(), state.control.workers.keys());
            *elected_term = Some(term);
            metrics::counter!("weir_leader_elected_total", "node" => self.config.id.to_string())
                .increment(1);
            tracing::info!(node = self.config.id, term, "became leader");
        }
        let now_ms = self.monotonic_ms();
        let (expired, planned) = {
            let state = self.state.read();
            let expired = self
                .leases
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .expired(now_ms, state.control.workers.keys());
            (expired, scheduler::plan(&state.control))
        };
        if let Some(command) = self.members_seen_update() {
            // Best effort: a failed write is proposed again on the next round.
            let _ = self.write(command).await;
        }
        let mut proposed = false;
        for worker in expired {
            tracing::warn!(worker = %worker, "lease expired; removing worker");
            proposed = true;
            let _ = self
                .write(Command::RemoveWorker {
                    worker,
                    reason: "lease expired".into(),
                })
                .await;
        }
        if proposed {
            return true; // plan again on the state after the removals
        }
        for command in planned {
            proposed = true;
            if let Err(e) = self.write(command).await {
                tracing::debug!(error = %e, "placement not applied");
                break;
            }
        }
        proposed
    }

    /// The members this leader sees matching its log (itself included) that the state does
    /// not yet record as having stored part of it, as one command.
    fn members_seen_update(&self) -> Option<Command> {
        let matched: Vec<NodeId> = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let replication = m.replication.as_ref()?;
            replication
                .iter()
                .filter(|(_, matched)| matched.is_some())
                .map(|(id, _)| *id)
                .chain(std::iter::once(self.config.id))
                .collect()
        };
        let state = self.state.read();
        let new: Vec<NodeId> = matched
            .into_iter()
            .filter(|id| !state.control.members_seen.contains(id))
            .collect();
        (!new.is_empty()).then_some(Command::MembersSeen { members: new })
    }

    fn record_gauges(&self) {
        let node = self.config.id.to_string();
        {
            let m = self.raft.metrics();
            let m = m.borrow();
            metrics::gauge!("weir_raft_term", "node" => node.clone()).set(m.current_term as f64);
            metrics::gauge!("weir_raft_applied_index", "node" => node.clone())
                .set(m.last_applied.map(|l| l.index).unwrap_or(0) as f64);
            metrics::gauge!("weir_raft_is_leader", "node" => node.clone()).set(
                if m.state == ServerState::Leader {
                    1.0
                } else {
                    0.0
                },
            );
        }
        let state = self.state.read();
        for s in JobState::ALL {
            let n = state.control.jobs.values().filter(|j| j.state == s).count();
            metrics::gauge!("weir_jobs", "node" => node.clone(), "state" => s.as_str())
                .set(n as f64);
        }
        metrics::gauge!("weir_workers_live", "node" => node)
            .set(state.control.workers.len() as f64);
    }
}

/// Tells the lease table every [`crate::lease::OBSERVE_INTERVAL_MS`] that this process is
/// running, so that a pause of the process is told apart from a control round waiting on
/// its own writes (see [`LeaseTable::observe`]).
async fn lease_clock(coordinator: std::sync::Weak<Coordinator>) {
    loop {
        tokio::time::sleep(Duration::from_millis(crate::lease::OBSERVE_INTERVAL_MS)).await;
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        if c.raft.metrics().borrow().running_state.is_err() {
            return;
        }
        let now_ms = c.monotonic_ms();
        c.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(now_ms);
    }
}

async fn control_loop(coordinator: std::sync::Weak<Coordinator>) {
    let mut elected_term = None;
    let mut last_leader = None;
    let mut first = true;
    loop {
        // The first round at once, so the gauges exist from the start (a scrape right
        // after a fast election found none: api_contract's metrics test).
        if !std::mem::take(&mut first) {
            tokio::time::sleep(Duration::from_millis(CONTROL_TICK_MS)).await;
        }
        let Some(c) = coordinator.upgrade() else {
            return;
        };
        if c.raft.metrics().borrow().running_state.is_err() {
            return;
        }
        let leader = c.raft.metrics().borrow().current_leader;
        if leader != last_leader {
            metrics::counter!("weir_raft_leader_changes_total", "node" => c.config.id.to_string())
                .increment(1);
            last_leader = leader;
        }
        for _ in 0..CONTROL_ROUNDS_PER_TICK_MAX {
            if !c.control_round(&mut elected_term).await {
                break;
            }
        }
    }
}

#[cfg(test)]
mod follower_wait_tests {
    use super::*;

    fn config() -> CoordinatorConfig {
        CoordinatorConfig::new(1, "127.0.0.1:1", BTreeMap::new())
    }

    #[test]
    fn the_default_follower_wait_is_what_the_flag_defaults_to() {
        assert_eq!(config().follower_wait_ms(), (300, 400));
    }

    #[test]
    fn a_follower_wait_round_trips_through_openraft_settings() {
        let mut c = config();
        c.set_follower_wait_ms(300, 400).unwrap();
        assert_eq!(
            (c.election_timeout_min_ms, c.election_timeout_max_ms),
            (100, 200)
        );
        c.set_follower_wait_ms(1_500, 2_000).unwrap();
        assert_eq!(
            (c.election_timeout_min_ms, c.election_timeout_max_ms),
            (500, 1_000)
        );
        assert_eq!(c.follower_wait_ms(), (1_500, 2_000));
    }

    #[test]
    fn a_range_openraft_cannot_express_is_refused() {
        let mut c = config();
        assert_eq!(
            c.set_follower_wait_ms(400, 300),
            Err(FollowerWaitError::Empty { min: 400, max: 300 })
        );
        // 230 - 200 = 30 ms of random timeout is not above the 30 ms heartbeat.
        assert!(matches!(
            c.set_follower_wait_ms(230, 400),
            Err(FollowerWaitError::TooWide { .. })
        ));
        assert_eq!(c.follower_wait_ms(), (300, 400), "unchanged on error");
    }
}
