//! `weir worker`: run one worker of the fleet until interrupted — an actix system with a
//! supervisor actor and one actor per assigned (job, partition), over real Kafka.

use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use weir_broker::kafka::KafkaBroker;
use weir_core::ids::WorkerId;
use weir_worker::checkpoint_store::{DirCheckpointStore, LocalFirst};
use weir_worker::control::{ControlPlane, HttpControlPlane};
use weir_worker::fleet::{
    ActorThreads, HeartbeatThread, StatusBoard, StopSupervisor, Supervisor, SupervisorConfig,
    ACTOR_THREADS_MAX, ACTOR_THREADS_STOP_GRACE_MS, PROCESSING_STALL_MAX_MS,
};

/// How often shutdown looks whether every partition has ended.
const SHUTDOWN_POLL_MS: u64 = 20;
/// How long a stopping worker waits for the group to take its deregistration.
const DEREGISTER_WAIT_MS: u64 = 3_000;

/// Flags of `weir worker` (docs/CLI.md).
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// This worker's name, unique in the fleet.
    #[arg(long)]
    pub id: String,
    /// Coordinators to talk to, host:port, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub coordinators: Vec<String>,
    /// Directory for the worker's local files: `state.redb`, a local copy of its partitions'
    /// snapshots that recovery on this machine reads first.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Kafka bootstrap servers.
    #[arg(long)]
    pub kafka: String,
    /// Where state snapshots go: a directory or a file:// URL.
    #[arg(long)]
    pub checkpoint_dir: String,
    /// The cluster's administrator token (workers act for the cluster).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: String,
    /// host:port to serve `/metrics` (Prometheus) and `/healthz` on.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Threads the partition actors run on (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=ACTOR_THREADS_MAX as i64))]
    pub actor_threads: Option<u16>,
}

/// Serves the process's metrics until the system stops.
async fn serve_metrics(listener: tokio::net::TcpListener) {
    let handle = weir_coordinator::server::metrics_handle();
    weir_worker::metrics::describe_metrics();
    let upkeep = handle.clone();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move { handle.map(|h| h.render()).unwrap_or_default() }
            }),
        );
    let serve = std::future::IntoFuture::into_future(axum::serve(listener, app));
    let upkeep = async move {
        match upkeep {
            Some(h) => weir_coordinator::server::metrics_upkeep(h).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serve => {
            if let Err(e) = served {
                tracing::error!(error = %e, "metrics server stopped");
            }
        }
        () = upkeep => {}
    }
}

/// Runs a worker until Ctrl-C or SIGTERM.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    if !WorkerId::is_valid(&args.id) {
        bail!("--id must be 1 to 128 letters, digits, '.', '_' or '-'");
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let remote = DirCheckpointStore::new(&args.checkpoint_dir)
        .context("cannot open the checkpoint directory")?;
    let store =
        LocalFirst::open(&args.data_dir, remote).context("cannot open the worker's local state")?;
    let broker = KafkaBroker::new(&args.kafka).context("cannot configure the Kafka client")?;
    let control = Arc::new(HttpControlPlane::new(
        args.coordinators.clone(),
        args.token.clone(),
    ));
    let heartbeats = HeartbeatThread::spawn(
        HttpControlPlane::for_heartbeats(args.coordinators.clone(), args.token.clone()),
        WorkerId(args.id.clone()),
        PROCESSING_STALL_MAX_MS,
    )
    .context("cannot start the heartbeat thread")?;
    let config = SupervisorConfig::new(WorkerId(args.id.clone()), args.id.clone());
    let system = actix::System::new();
    let metrics_listen = args.metrics_listen.clone();
    system.block_on(async move {
        if let Some(addr) = metrics_listen {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?;
            actix::spawn(serve_metrics(listener));
        }
        let board = StatusBoard::default();
        let threads = match args.actor_threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let threads = threads.min(ACTOR_THREADS_MAX);
        let pool = ActorThreads::new(threads)?;
        let (coordinators, token) = (args.coordinators.clone(), args.token.clone());
        let supervisor = actix::Actor::start(
            Supervisor::new(config, broker, store, control, board.clone())
                .with_heartbeat_thread(heartbeats)
                .with_actor_threads(pool, move || {
                    HttpControlPlane::new(coordinators.clone(), token.clone())
                }),
        );
        tracing::info!(worker = %args.id, threads, "worker running");
        super::coordinator::shutdown_signal().await;
        tracing::info!("worker shutting down");
        // Partitions abort their open transactions and end (bounded), then the system stops.
        let _ = supervisor.send(StopSupervisor).await;
        for _ in 0..ACTOR_THREADS_STOP_GRACE_MS / SHUTDOWN_POLL_MS {
            if board.snapshot().is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(SHUTDOWN_POLL_MS)).await;
        }
        // Leaving the group at once moves this worker's partitions now rather than when its
        // lease runs out (a rolling restart); if no coordinator answers, the lease does it.
        let leaving = HttpControlPlane::new(args.coordinators.clone(), args.token.clone());
        let left = tokio::time::timeout(
            std::time::Duration::from_millis(DEREGISTER_WAIT_MS),
            leaving.deregister(&WorkerId(args.id.clone())),
        )
        .await;
        match left {
            Ok(Ok(())) => tracing::info!("worker deregistered"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "deregistration failed; the lease will expire")
            }
            Err(_) => tracing::warn!("deregistration timed out; the lease will expire"),
        }
        actix::System::current().stop();
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
