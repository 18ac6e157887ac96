//! A coordinator group running on one thread: N real `Coordinator`s, each over its own
//! simulated disk and clock, all joined by one simulated network.
//!
//! The cluster owns what outlives a process (disks, clocks, entropy sources, configs) and
//! starts, crashes and restarts the processes. A crash is instantaneous from the group's
//! point of view: the node drops off the network and its disk fences the old process and
//! loses what a crash of that kind loses, before openraft is shut down; a restart reopens
//! redb on the same disk and starts a new `Coordinator` with the same config, as a real
//! process would after a reboot.
//!
//! Clients and observers reach the running processes through `ClusterView`, a shared
//! directory that the cluster updates at every start and crash.

use crate::clock::{SimClock, SimEntropy, SIM_EPOCH_MS};
use crate::disk::{CrashMode, CrashReport, SimDisk};
use crate::network::SimNet;
use openraft::ServerState;
use rand::Rng;
use redb::{Database, ReadableDatabase, TableDefinition};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use thiserror::Error;
use weir_coordinator::node::{Coordinator, CoordinatorConfig, StartError};
use weir_coordinator::raft_types::Entry;
use weir_coordinator::store::{open_with_backend, OpenError};
use weir_core::ids::NodeId;
use weir_core::seams::Seams;

use crate::checker::{LogLookup, StoredLog};

/// The coordinator's Raft log table, read directly for the log checks. It mirrors the
/// coordinator's private `store::LOG`; if that name changes, reading fails loudly (a
/// violation), never silently.
const RAFT_LOG: TableDefinition<u64, &[u8]> = weir_coordinator::store::LOG;

/// The largest group the simulation builds.
pub const CLUSTER_NODES_MAX: usize = 7;

/// What the cluster is built with.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Coordinators in the group (ids 1..=n).
    pub nodes: usize,
    /// Log entries between snapshots (small values exercise compaction and snapshot
    /// installation).
    pub snapshot_every_entries: u64,
    /// Entries kept behind a snapshot.
    pub log_entries_kept_after_snapshot: u64,
    /// Seeds each node's entropy source.
    pub entropy_seed: u64,
}

/// Why a node could not be started.
#[derive(Debug, Error)]
pub enum NodeStartError {
    /// The cluster has no such node.
    #[error("no node n{0} in this cluster")]
    Unknown(NodeId),
    /// A process already runs on the node.
    #[error("n{0} is already running")]
    Running(NodeId),
    /// redb could not open (or recover) the node's disk.
    #[error("cannot open n{0}'s database: {1}")]
    Open(NodeId, OpenError),
    /// The coordinator refused to start.
    #[error("cannot start n{0}: {1}")]
    Start(NodeId, StartError),
}

/// One running coordinator process.
#[derive(Debug, Clone)]
pub struct LiveNode {
    /// The node it runs on.
    pub id: NodeId,
    /// Counts the node's processes; a restart gets a new one.
    pub incarnation: u64,
    /// The coordinator, as the API would hold it.
    pub coordinator: Arc<Coordinator>,
    /// The process's database, for reading its log.
    pub db: Arc<Database>,
}

impl LiveNode {
    /// Whether this process believes it leads, and in which term.
    pub fn leadership(&self) -> Option<u64> {
        let m = self.coordinator.raft().metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.id))
            .then_some(m.current_term)
    }

    /// What its log holds at `index`; `purged_up_to` is the highest compacted index.
    pub fn lookup(&self, index: u64, purged_up_to: Option<u64>) -> LogLookup {
        match read_entry(&self.db, index) {
            Ok(Some(bytes)) => match serde_json::from_slice::<Entry>(&bytes) {
                Ok(entry) => LogLookup::Present(entry.log_id),
                Err(e) => LogLookup::Unreadable(e.to_string()),
            },
            Ok(None) if purged_up_to.is_some_and(|p| index <= p) => LogLookup::Purged,
            Ok(None) => LogLookup::Missing,
            Err(e) => LogLookup::Unreadable(e),
        }
    }

    /// Its log entries up to `last_index` (its committed ones, when that is its last
    /// applied index), as stored.
    pub fn committed_log(&self, last_index: u64) -> Result<StoredLog, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(RAFT_LOG).map_err(|e| e.to_string())?;
        let mut log = BTreeMap::new();
        for item in table.range(..=last_index).map_err(|e| e.to_string())? {
            let (k, v) = item.map_err(|e| e.to_string())?;
            log.insert(k.value(), v.value().to_vec());
        }
        Ok(log)
    }
}

fn read_entry(db: &Database, index: u64) -> Result<Option<Vec<u8>>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = txn.open_table(RAFT_LOG).map_err(|e| e.to_string())?;
    let value = table.get(index).map_err(|e| e.to_string())?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// The running processes, shared with clients and observers.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    live: Arc<Mutex<BTreeMap<NodeId, LiveNode>>>,
}

impl ClusterView {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<NodeId, LiveNode>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running process of `node`, if any.
    pub fn get(&self, node: NodeId) -> Option<LiveNode> {
        self.lock().get(&node).cloned()
    }

    /// Every running process, by node id.
    pub fn running(&self) -> Vec<LiveNode> {
        self.lock().values().cloned().collect()
    }

    /// The running node that believes it leads the highest term (ties: the highest id,
    /// which is the one openraft's advanced mode lets win).
    pub fn leader(&self) -> Option<LiveNode> {
        self.running()
            .into_iter()
            .filter_map(|n| n.leadership().map(|term| ((term, n.id), n)))
            .max_by_key(|(key, _)| *key)
            .map(|(_, n)| n)
    }
}

/// What a node keeps across its processes.
#[derive(Debug)]
struct Machine {
    config: CoordinatorConfig,
    disk: SimDisk,
    clock: Arc<SimClock>,
    entropy: Arc<SimEntropy>,
    incarnations: u64,
}

/// A simulated coordinator group.
#[derive(Debug)]
pub struct SimCluster {
    machines: BTreeMap<NodeId, Machine>,
    net: SimNet,
    view: ClusterView,
}

impl SimCluster {
    /// Builds the machines (nothing runs yet). Must be called inside the simulation's
    /// runtime, since clocks start from its current time.
    pub fn new(spec: &ClusterSpec, net: SimNet) -> Self {
        assert!(
            (1..=CLUSTER_NODES_MAX).contains(&spec.nodes),
            "a cluster has 1..={CLUSTER_NODES_MAX} nodes"
        );
        let ids: Vec<NodeId> = (1..=spec.nodes as NodeId).collect();
        let peers: BTreeMap<NodeId, String> = ids.iter().map(|id| (*id, addr(*id))).collect();
        let machines = ids
            .iter()
            .map(|id| {
                let mut config = CoordinatorConfig::new(*id, addr(*id), peers.clone());
                config.snapshot_every_entries = spec.snapshot_every_entries;
                config.log_entries_kept_after_snapshot = spec.log_entries_kept_after_snapshot;
                let machine = Machine {
                    config,
                    disk: SimDisk::new(),
                    clock: Arc::new(SimClock::new(SIM_EPOCH_MS)),
                    entropy: Arc::new(SimEntropy::new(spec.entropy_seed.wrapping_add(*id))),
                    incarnations: 0,
                };
                (*id, machine)
            })
            .collect();
        SimCluster {
            machines,
            net,
            view: ClusterView::default(),
        }
    }

    /// The node ids, in order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.machines.keys().copied().collect()
    }

    /// The shared directory of running processes.
    pub fn view(&self) -> ClusterView {
        self.view.clone()
    }

    /// The network.
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// A node's wall clock (for clock jumps).
    pub fn clock(&self, node: NodeId) -> Option<&SimClock> {
        self.machines.get(&node).map(|m| m.clock.as_ref())
    }

    /// A node's disk.
    pub fn disk(&self, node: NodeId) -> Option<&SimDisk> {
        self.machines.get(&node).map(|m| &m.disk)
    }

    /// Whether `node` has a running process.
    pub fn is_running(&self, node: NodeId) -> bool {
        self.view.get(node).is_some()
    }

    /// Starts a process on `node`: opens redb on its disk (recovering from whatever a crash
    /// left) and starts a coordinator with the node's config.
    pub async fn start(&mut self, node: NodeId) -> Result<LiveNode, NodeStartError> {
        if self.is_running(node) {
            return Err(NodeStartError::Running(node));
        }
        let machine = self
            .machines
            .get_mut(&node)
            .ok_or(NodeStartError::Unknown(node))?;
        machine.incarnations += 1;
        let incarnation = machine.incarnations;
        let db =
            open_with_backend(machine.disk.open()).map_err(|e| NodeStartError::Open(node, e))?;
        self.net.boot(node, incarnation);
        let seams = Seams {
            clock: machine.clock.clone(),
            entropy: machine.entropy.clone(),
        };
        let transport = self.net.transport(node, incarnation);
        let started =
            Coordinator::start(machine.config.clone(), db.clone(), transport, seams).await;
        let coordinator = match started {
            Ok(c) => c,
            Err(e) => {
                self.net.down(node);
                return Err(NodeStartError::Start(node, e));
            }
        };
        self.net.serve(node, coordinator.raft().clone());
        let live = LiveNode {
            id: node,
            incarnation,
            coordinator,
            db,
        };
        self.view.lock().insert(node, live.clone());
        Ok(live)
    }

    /// Crashes `node`'s process, losing unsynced writes as `mode` says. Returns what the
    /// disk kept, or `None` if the node was not running.
    pub async fn crash(
        &mut self,
        node: NodeId,
        mode: CrashMode,
        rng: &mut impl Rng,
    ) -> Option<CrashReport> {
        let live = self.view.lock().remove(&node)?;
        self.net.down(node);
        let report = self.machines.get(&node)?.disk.crash(mode, rng);
        // openraft still runs the dead process's tasks until shut down; they now meet a
        // fenced disk and an unreachable network, as a dying process would.
        live.coordinator.shutdown().await;
        Some(report)
    }

    /// Stops every process without crashing any disk (the end of a run).
    pub async fn shutdown(&mut self) {
        let live: Vec<LiveNode> = std::mem::take(&mut *self.view.lock())
            .into_values()
            .collect();
        for node in live {
            self.net.down(node.id);
            node.coordinator.shutdown().await;
        }
    }
}

fn addr(node: NodeId) -> String {
    format!("sim://n{node}")
}
