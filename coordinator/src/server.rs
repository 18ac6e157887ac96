//! The production driver of one coordinator: its redb file under the data directory, the
//! HTTP transport to its peers, the OS clock and entropy, and the HTTP listener. `weir
//! coordinator` runs one; `weir local` and the tests run several in one process.
//!
//! Raft never waits behind the API. Each coordinator has a tokio runtime of its own for
//! Raft (its own OS threads, [`RAFT_RUNTIME_THREADS`]): openraft's core, its replication
//! and network tasks, the leader's control loop, and the server of `POST /raft/rpc` run
//! there, while the `/v1` API runs on the caller's runtime. Both are served on the one
//! address the member is known by (`--listen`, the `--peers` entry), so every existing
//! invocation keeps working: the Raft runtime accepts every connection and reads its first
//! bytes without consuming them ([`classify`]); a connection whose first request is
//! `POST /raft/rpc ` stays on the Raft runtime and is served by [`http::raft_router`],
//! any other is handed to the API runtime. Peers open their connections with a client of
//! their own and keep them alive, so a connection carries Raft RPCs only or API requests
//! only.

// The production driver: its listener and sockets are the network seam's production side.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use crate::http::{self, ApiState, RaftRpcState};
use crate::network::http::{HttpTransport, RAFT_RPC_PATH};
use crate::node::{Coordinator, CoordinatorConfig, StartError};
use crate::store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_core::seams::Seams;

/// OS threads of each coordinator's Raft runtime.
pub const RAFT_RUNTIME_THREADS: usize = 2;
/// How long stopping a coordinator waits for its Raft runtime's tasks to end.
const RAFT_RUNTIME_SHUTDOWN_MS: u64 = 2_000;
/// Accepted connections waiting for the server that takes them, per kind.
const ACCEPTED_QUEUE_MAX: usize = 1024;
/// How long a new connection may take to send the first bytes of its first request
/// before it is closed unclassified.
const CLASSIFY_TIMEOUT_MS: u64 = 1_000;
/// First pause between looks at a connection that sent only part of its first line; it
/// doubles up to [`CLASSIFY_POLL_MAX_MS`].
const CLASSIFY_POLL_MS: u64 = 2;
/// Longest pause between looks at a connection still undecided.
const CLASSIFY_POLL_MAX_MS: u64 = 64;
/// Connections being classified at once; more are closed at once, so a flood of silent or
/// stalling connections holds bounded work on the Raft runtime.
const CLASSIFYING_MAX: usize = 256;
/// How a connection carrying Raft RPCs starts.
const RAFT_REQUEST_PREFIX: &[u8] = b"POST /raft/rpc ";
/// Upper bounds, in seconds, of the buckets of every `_seconds` histogram: from a fsync on
/// fast storage to a forwarded request that timed out. Buckets, unlike quantiles, can be
/// added up across members.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the size histograms (entries per fsync, commands per batch).
pub const SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// How often the recorder's histogram samples are folded into their buckets. The recorder
/// is installed without the exporter's own upkeep task, and a histogram keeps every sample
/// (8 bytes each) until then: without this, until the next scrape of `/metrics`, and in a
/// process nobody scrapes, for ever (a coordinator records a few hundred a second).
pub const METRICS_UPKEEP_INTERVAL_MS: u64 = 5_000;

/// A coordinator serving HTTP.
#[derive(Debug)]
pub struct RunningCoordinator {
    pub coordinator: Arc<Coordinator>,
    pub addr: std::net::SocketAddr,
    server: JoinHandle<()>,
    raft_runtime: RaftRuntime,
}

/// The Raft runtime of one coordinator; shut down without waiting when dropped (a tokio
/// runtime may not be dropped from async code otherwise).
#[derive(Debug)]
struct RaftRuntime(Option<tokio::runtime::Runtime>);

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl RunningCoordinator {
    /// Stops serving and stops Raft, as an orderly shutdown. (A crash is simply the process
    /// ending; the tests use kill -9 on real processes for that.)
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.coordinator.shutdown().await;
        // Wait (bounded) until the Raft runtime's tasks are gone, the listener and the
        // database with them, so the address and the data directory can be used again at
        // once. A runtime is shut down from a thread that is not running async code.
        let mut raft_runtime = self.raft_runtime;
        if let Some(rt) = raft_runtime.0.take() {
            let (done, finished) = tokio::sync::oneshot::channel();
            let stopper = std::thread::Builder::new()
                .name("weir-raft-stop".into())
                .spawn(move || {
                    rt.shutdown_timeout(Duration::from_millis(RAFT_RUNTIME_SHUTDOWN_MS));
                    let _ = done.send(());
                });
            if stopper.is_ok() {
                let _ = finished.await;
            }
        }
    }
}

/// The process-wide Prometheus recorder, installed on first use: every metric described
/// (`# HELP`), latencies and sizes as histograms with buckets.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".to_string()),
                    &LATENCY_BUCKETS_SECONDS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("weir_raft_append_batch_entries".to_string()),
                        &SIZE_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("weir_raft_batch_commands".to_string()),
                        &SIZE_BUCKETS,
                    )
                });
            let installed = builder.and_then(|b| b.install_recorder());
            match installed {
                Ok(h) => {
                    crate::describe_metrics();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// Folds the recorder's histogram samples into their buckets every
/// [`METRICS_UPKEEP_INTERVAL_MS`], for as long as it runs (run it beside whatever serves
/// `/metrics`).
pub async fn metrics_upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_millis(METRICS_UPKEEP_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// Serves the `/v1` API until the task is aborted, with the metrics upkeep beside it.
async fn serve_api(
    listener: Accepted<std::net::TcpStream>,
    state: ApiState,
    metrics: Option<PrometheusHandle>,
) {
    let serve = std::future::IntoFuture::into_future(axum::serve(listener, http::router(state)));
    let upkeep = async move {
        match metrics {
            Some(handle) => metrics_upkeep(handle).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serve => {
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }
        () = upkeep => {}
    }
}

/// How long a fresh member waits for each peer's view of the group before starting.
pub const SEEN_PROBE_TIMEOUT_MS: u64 = 1_000;

/// Refuses to start a member whose data directory holds no store while a peer's group
/// records it as having stored part of the log: its vote and log are lost, and a member
/// that forgets its vote can vote twice in one term. A peer that does not answer within
/// [`SEEN_PROBE_TIMEOUT_MS`] counts as not knowing (a group starting for the first time
/// has no answer to give). Called by `weir coordinator` before [`launch`].
pub async fn refuse_lost_store(
    config: &CoordinatorConfig,
    data_dir: &Path,
    admin_token: &str,
) -> Result<(), StartError> {
    if store::store_exists(data_dir) {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(SEEN_PROBE_TIMEOUT_MS))
        .build()
        .map_err(|e| StartError::Config(e.to_string()))?;
    let probes = config
        .peers
        .iter()
        .filter(|(id, _)| **id != config.id)
        .map(|(id, addr)| {
            let request = client
                .get(format!("http://{addr}/v1/cluster"))
                .bearer_auth(admin_token)
                .send();
            async move {
                let status: weir_core::wire::ClusterStatus =
                    request.await.ok()?.json().await.ok()?;
                Some((*id, status))
            }
        });
    for (peer, status) in futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
    {
        let member = status.members.iter().any(|m| m.id == config.id);
        if member && status.seen.contains(&config.id) {
            return Err(StartError::LostStore(format!(
                "member {id} has no store in {dir}, but member {peer}'s group records it as having \
                 stored part of the log: its vote and log are lost. Remove it (weir cluster \
                 remove-member {id}), start it with --initial-cluster-state existing, then add it \
                 again (weir cluster add-member)",
                id = config.id,
                dir = data_dir.display(),
            )));
        }
    }
    Ok(())
}

/// A listener for axum fed with connections accepted elsewhere.
struct Accepted<S> {
    connections: mpsc::Receiver<(S, SocketAddr)>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for Accepted<TcpStream> {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.connections.recv().await {
            Some(c) => c,
            // The acceptor stopped: so does this server, by never accepting again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// API connections arrive as std sockets and are registered with the runtime serving them.
impl axum::serve::Listener for Accepted<std::net::TcpStream> {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some((stream, peer)) = self.connections.recv().await else {
                return std::future::pending().await;
            };
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, peer),
                Err(e) => tracing::debug!(error = %e, "dropped an API connection"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// What a new connection carries, decided from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Raft,
    Api,
    /// Closed, or silent for [`CLASSIFY_TIMEOUT_MS`].
    Gone,
}

/// Whether `first` (the bytes a connection sent so far) starts a Raft RPC, starts
/// something else, or cannot tell yet.
fn kind_of(first: &[u8]) -> Option<Kind> {
    let n = first.len().min(RAFT_REQUEST_PREFIX.len());
    if first[..n] != RAFT_REQUEST_PREFIX[..n] {
        Some(Kind::Api)
    } else if n == RAFT_REQUEST_PREFIX.len() {
        Some(Kind::Raft)
    } else {
        None
    }
}

/// Looks at a new connection's first bytes, leaving them to be read by its server.
async fn classify(stream: &TcpStream) -> Kind {
    let look = async {
        let mut buf = [0u8; 16];
        let mut poll_ms = CLASSIFY_POLL_MS;
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return Kind::Gone,
                Ok(n) => {
                    if let Some(kind) = kind_of(&buf[..n]) {
                        return kind;
                    }
                }
            }
            // Part of the first line arrived; peek would answer at once again, so wait,
            // longer each time: a client that stalls mid-line costs little.
            tokio::time::sleep(Duration::from_millis(poll_ms)).await;
            poll_ms = (poll_ms * 2).min(CLASSIFY_POLL_MAX_MS);
        }
    };
    tokio::time::timeout(Duration::from_millis(CLASSIFY_TIMEOUT_MS), look)
        .await
        .unwrap_or(Kind::Gone)
}

/// Runs on the Raft runtime: accepts every connection of the member's address and sends
/// each to the server of its kind.
async fn accept_loop(
    listener: TcpListener,
    raft: mpsc::Sender<(TcpStream, SocketAddr)>,
    api: mpsc::Sender<(std::net::TcpStream, SocketAddr)>,
) {
    let classifying = Arc::new(tokio::sync::Semaphore::new(CLASSIFYING_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = classifying.clone().try_acquire_owned() else {
            metrics::counter!("weir_connections_refused_total").increment(1);
            continue; // dropped: closed at once
        };
        let _ = stream.set_nodelay(true);
        let (raft, api) = (raft.clone(), api.clone());
        tokio::spawn(async move {
            let kind = classify(&stream).await;
            drop(permit);
            match kind {
                Kind::Raft => {
                    let _ = raft.send((stream, peer)).await;
                }
                Kind::Api => match stream.into_std() {
                    Ok(stream) => {
                        let _ = api.send((stream, peer)).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "dropped an API connection"),
                },
                Kind::Gone => {}
            }
        });
    }
}

/// Opens the coordinator's data under `data_dir`, starts Raft on a runtime of its own and
/// serves the API and the Raft RPCs on `listener` (already bound, so callers can pick free
/// ports without a race). The API is served on the caller's runtime.
pub async fn launch(
    config: CoordinatorConfig,
    data_dir: &Path,
    admin_token: &str,
    listener: TcpListener,
) -> Result<RunningCoordinator, StartError> {
    // The recorder first: gauges the coordinator sets from its first moment are kept.
    let metrics = metrics_handle();
    let id = config.id;
    let raft_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(RAFT_RUNTIME_THREADS)
        .thread_name(format!("weir-raft-{id}"))
        .enable_all()
        .build()
        .map_err(|e| StartError::Raft(format!("cannot start the Raft runtime: {e}")))?;
    let raft_runtime = RaftRuntime(Some(raft_runtime));
    let Some(handle) = raft_runtime.0.as_ref().map(|rt| rt.handle().clone()) else {
        return Err(StartError::Raft("the Raft runtime is gone".into()));
    };
    let db = store::open_in_dir(data_dir)?;
    let transport = HttpTransport::new(Some(admin_token.to_string()));
    // openraft spawns its tasks, and the coordinator its control loop, on the runtime
    // that starts them.
    let coordinator = handle
        .spawn(Coordinator::start(config, db, transport, Seams::system()))
        .await
        .map_err(|e| StartError::Raft(format!("the Raft runtime failed: {e}")))??;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let listener = listener
        .into_std()
        .map_err(|e| StartError::Raft(e.to_string()))?;

    let (raft_tx, raft_rx) = mpsc::channel(ACCEPTED_QUEUE_MAX);
    let (api_tx, api_rx) = mpsc::channel(ACCEPTED_QUEUE_MAX);
    let rpc_state = RaftRpcState {
        coordinator: coordinator.clone(),
        admin_token_hash: http::hash_token(admin_token).into(),
    };
    let started = handle
        .spawn(async move {
            let listener = TcpListener::from_std(listener)?;
            tokio::spawn(accept_loop(listener, raft_tx, api_tx));
            let raft_listener = Accepted {
                connections: raft_rx,
                local_addr: addr,
            };
            tokio::spawn(async move {
                if let Err(e) = axum::serve(raft_listener, http::raft_router(rpc_state)).await {
                    tracing::error!(error = %e, "Raft RPC server stopped");
                }
            });
            Ok::<(), std::io::Error>(())
        })
        .await;
    match started {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(StartError::Raft(format!("cannot listen: {e}"))),
        Err(e) => return Err(StartError::Raft(format!("the Raft runtime failed: {e}"))),
    }

    let upkeep = metrics.clone();
    let state = ApiState::new(coordinator.clone(), admin_token, metrics);
    let api_listener = Accepted {
        connections: api_rx,
        local_addr: addr,
    };
    let server = tokio::spawn(serve_api(api_listener, state, upkeep));
    tracing::debug!(%addr, raft_path = RAFT_RPC_PATH, "serving the API and Raft RPCs");
    Ok(RunningCoordinator {
        coordinator,
        addr,
        server,
        raft_runtime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn upkeep_folds_histogram_samples_into_buckets_and_loses_none() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS_SECONDS)
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        let upkeep = tokio::spawn(metrics_upkeep(handle.clone()));
        const ROUNDS: u64 = 5;
        const SAMPLES_PER_ROUND: u64 = 1_000;
        for _ in 0..ROUNDS {
            metrics::with_local_recorder(&recorder, || {
                let h = metrics::histogram!("weir_test_seconds");
                for _ in 0..SAMPLES_PER_ROUND {
                    h.record(0.001);
                }
            });
            tokio::time::sleep(Duration::from_millis(METRICS_UPKEEP_INTERVAL_MS)).await;
        }
        let text = handle.render();
        let count_line = format!("weir_test_seconds_count {}", ROUNDS * SAMPLES_PER_ROUND);
        assert!(text.contains(&count_line), "{text}");
        assert!(
            !upkeep.is_finished(),
            "the upkeep runs for as long as it is polled"
        );
        upkeep.abort();
    }

    #[test]
    fn connections_are_told_apart_by_their_first_line() {
        assert_eq!(kind_of(b"POST /raft/rpc HTTP/1.1\r\n"), Some(Kind::Raft));
        assert_eq!(kind_of(b"POST /raft/rpcx HTTP/1.1"), Some(Kind::Api));
        assert_eq!(kind_of(b"POST /v1/jobs HTTP/1.1\r\n"), Some(Kind::Api));
        assert_eq!(kind_of(b"GET /metrics HTTP/1.1\r\n"), Some(Kind::Api));
        assert_eq!(kind_of(b"POST /ra"), None, "not yet known");
        assert_eq!(kind_of(b"\x16\x03\x01"), Some(Kind::Api));
    }
}
