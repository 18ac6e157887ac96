//! Workers of `weir local`: each an actix system on a thread of its own, as a worker
//! process would be, sharing the broker and the checkpoint store with the others.

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use weir_broker::Broker;
use weir_core::ids::WorkerId;
use weir_worker::checkpoint_store::CheckpointStore;
use weir_worker::control::HttpControlPlane;
use weir_worker::fleet::{
    ActorThreads, FleetStatus, HeartbeatThread, StatusBoard, Supervisor, SupervisorConfig,
    ACTOR_THREADS_MAX, PROCESSING_STALL_MAX_MS,
};

/// A running worker.
pub struct LocalWorker {
    pub id: String,
    pub board: StatusBoard,
    thread: Option<JoinHandle<()>>,
    stop: Option<actix::System>,
}

impl std::fmt::Debug for LocalWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWorker").field("id", &self.id).finish()
    }
}

impl LocalWorker {
    /// Starts worker `id` over the given broker and store.
    pub fn start<B, S>(
        id: &str,
        coordinators: Vec<String>,
        token: &str,
        broker: B,
        store: S,
    ) -> anyhow::Result<Self>
    where
        B: Broker + Unpin + Send,
        S: CheckpointStore + Unpin + Send,
    {
        let board = StatusBoard::default();
        let (tx, rx) = mpsc::channel();
        let (b, worker_id, token) = (board.clone(), id.to_string(), token.to_string());
        let heartbeats = HeartbeatThread::spawn(
            HttpControlPlane::for_heartbeats(coordinators.clone(), token.clone()),
            WorkerId(worker_id.clone()),
            PROCESSING_STALL_MAX_MS,
        )?;
        let thread = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                let system = actix::System::new();
                system.block_on(async move {
                    let control = Arc::new(HttpControlPlane::new(
                        coordinators.clone(),
                        token.clone(),
                    ));
                    let config = SupervisorConfig::new(WorkerId(worker_id.clone()), worker_id);
                    let mut supervisor = Supervisor::new(config, broker, store, control, b)
                        .with_heartbeat_thread(heartbeats);
                    // As `weir worker` runs them: partition actors on one thread per core.
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                    match ActorThreads::new(cores.min(ACTOR_THREADS_MAX)) {
                        Ok(pool) => {
                            supervisor = supervisor.with_actor_threads(pool, move || {
                                HttpControlPlane::new(coordinators.clone(), token.clone())
                            });
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "partition actors stay on the worker's thread")
                        }
                    }
                    actix::Actor::start(supervisor);
                    let _ = tx.send(actix::System::current());
                });
                let _ = system.run();
            })?;
        let stop = rx.recv_timeout(Duration::from_secs(10))?;
        Ok(LocalWorker {
            id: id.to_string(),
            board,
            thread: Some(thread),
            stop: Some(stop),
        })
    }

    /// What its partitions are doing.
    pub fn status(&self) -> FleetStatus {
        self.board.snapshot()
    }

    /// Stops the worker at once, as a crash would: its open transactions stay open until
    /// the next owner of each partition fences them.
    pub fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            s.stop();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        self.kill();
    }
}
