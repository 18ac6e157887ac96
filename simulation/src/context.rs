//! What every task of one run shares: simulated time since the start, the trace, and the
//! checker, plus the metrics watchers that feed the checker from every running node.
//!
//! A watcher per process follows openraft's metrics channel and hands each published
//! value to the checker at once, so the checker sees every leadership and every term a node
//! publishes, not samples of them. A process is retired before it is crashed or shut down:
//! what it publishes while dying (storage errors against its fenced disk) is not a finding.

use crate::checker::{Checker, ElectionSafety, MetricsSample};
use crate::cluster::LiveNode;
use crate::trace::Trace;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;
use weir_core::ids::NodeId;

#[derive(Debug)]
struct Shared {
    trace: Trace,
    checker: Checker,
    /// Processes (node, incarnation) being crashed or stopped on purpose.
    retired: BTreeSet<(NodeId, u64)>,
    /// Processes whose disk will fail under them: a storage error stopping them is
    /// expected, everything else they publish is still checked.
    doomed: BTreeSet<(NodeId, u64)>,
    /// Processes already reported as failed, so each is reported once.
    failed: BTreeSet<(NodeId, u64)>,
}

/// The shared state of one run.
#[derive(Debug)]
pub struct SimContext {
    started: Instant,
    shared: Mutex<Shared>,
}

impl SimContext {
    /// Starts the run's clock now.
    pub fn new(safety: ElectionSafety) -> Arc<Self> {
        Arc::new(SimContext {
            started: Instant::now(),
            shared: Mutex::new(Shared {
                trace: Trace::new(),
                checker: Checker::new(safety),
                retired: BTreeSet::new(),
                doomed: BTreeSet::new(),
                failed: BTreeSet::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instant the run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Simulated milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Appends a trace line.
    pub fn event(&self, text: &str) {
        let at = self.now_ms();
        self.lock().trace.push(at, text);
    }

    /// Records a violation found outside the checker, and traces it.
    pub fn violation(&self, text: String) {
        let at = self.now_ms();
        let mut shared = self.lock();
        shared.trace.push(at, &format!("VIOLATION {text}"));
        shared.checker.violation(at, text);
    }

    /// Runs `f` on the checker.
    pub fn with_checker<R>(&self, f: impl FnOnce(&mut Checker, u64) -> R) -> R {
        let at = self.now_ms();
        f(&mut self.lock().checker, at)
    }

    /// Marks a process as going down on purpose; its later metrics are ignored.
    pub fn retire(&self, node: &LiveNode) {
        self.lock().retired.insert((node.id, node.incarnation));
    }

    /// Marks a process whose disk is about to fail; its stopping on that is no finding.
    pub fn doom(&self, node: &LiveNode) {
        self.lock().doomed.insert((node.id, node.incarnation));
    }

    /// Feeds the node's current metrics to the checker.
    pub fn observe(&self, node: &LiveNode) {
        let metrics = node.coordinator.raft().metrics().borrow().clone();
        self.observe_metrics(node, &metrics);
    }

    fn observe_metrics(
        &self,
        node: &LiveNode,
        m: &openraft::RaftMetrics<u64, openraft::BasicNode>,
    ) {
        let at = self.now_ms();
        let key = (node.id, node.incarnation);
        let mut shared = self.lock();
        if shared.retired.contains(&key) {
            return;
        }
        if let Err(fatal) = &m.running_state {
            if shared.doomed.contains(&key) {
                if shared.failed.insert(key) {
                    let line = format!("n{} stopped as its disk failed: {fatal}", node.id);
                    shared.trace.push(at, &line);
                }
                return;
            }
            if shared.failed.insert(key) {
                let text = format!(
                    "n{} (process {}) stopped: {fatal}",
                    node.id, node.incarnation
                );
                shared.trace.push(at, &format!("VIOLATION {text}"));
                shared.checker.violation(at, text);
            }
            return;
        }
        let sample = MetricsSample::of(m, node.incarnation);
        let purged = m.purged.map(|p| p.index);
        let observed = shared
            .checker
            .observe(at, &sample, &|index| node.lookup(index, purged));
        if observed.new_leader {
            let how = if observed.restored {
                " (restored at startup)"
            } else {
                ""
            };
            let line = format!("leader n{} term {}{how}", node.id, sample.term);
            shared.trace.push(at, &line);
        }
    }

    /// Follows the node's metrics until its Raft stops.
    pub fn spawn_watcher(self: &Arc<Self>, node: LiveNode) {
        let ctx = self.clone();
        let mut rx = node.coordinator.raft().metrics();
        tokio::spawn(async move {
            loop {
                let m = rx.borrow_and_update().clone();
                ctx.observe_metrics(&node, &m);
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Ends the run: the trace's digest and lines, and the checker. Tasks that still hold
    /// the context afterwards find an empty one.
    pub fn finish(&self) -> (String, Vec<String>, Checker) {
        let mut shared = self.lock();
        let trace = std::mem::take(&mut shared.trace);
        let safety = shared.checker.election().safety();
        let checker = std::mem::replace(&mut shared.checker, Checker::new(safety));
        let (digest, lines) = trace.finish();
        (digest, lines, checker)
    }
}
