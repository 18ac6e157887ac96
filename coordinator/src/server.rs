//! The production driver of one coordinator: its redb file under the data directory, the
//! HTTP transport to its peers, the OS clock and entropy, and the HTTP listener. `weir
//! coordinator` runs one; `weir local` and the tests run several in one process.

use crate::http::{self, ApiState};
use crate::network::http::HttpTransport;
use crate::node::{Coordinator, CoordinatorConfig, StartError};
use crate::store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use weir_core::seams::Seams;

/// A coordinator serving HTTP.
#[derive(Debug)]
pub struct RunningCoordinator {
    pub coordinator: Arc<Coordinator>,
    pub addr: std::net::SocketAddr,
    server: JoinHandle<()>,
}

impl RunningCoordinator {
    /// Stops serving and stops Raft, as an orderly shutdown. (A crash is simply the process
    /// ending; the tests use kill -9 on real processes for that.)
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.coordinator.shutdown().await;
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
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

/// Opens the coordinator's data under `data_dir`, starts Raft and serves the API on
/// `listener` (already bound, so callers can pick free ports without a race).
pub async fn launch(
    config: CoordinatorConfig,
    data_dir: &Path,
    admin_token: &str,
    listener: TcpListener,
) -> Result<RunningCoordinator, StartError> {
    // The recorder first: gauges the coordinator sets from its first moment are kept.
    let metrics = metrics_handle();
    let db = store::open_in_dir(data_dir)?;
    let transport = HttpTransport::new(Some(admin_token.to_string()));
    let coordinator = Coordinator::start(config, db, transport, Seams::system()).await?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let state = ApiState::new(coordinator.clone(), admin_token, metrics);
    let server = tokio::spawn(async move {
        if let Err(e) = http::serve(listener, state).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok(RunningCoordinator {
        coordinator,
        addr,
        server,
    })
}
