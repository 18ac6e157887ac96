//! Production transport: Raft RPCs as JSON over HTTP/1.1 (`POST /raft/rpc`) on the same
//! listener as the API, with pooled keep-alive connections.

use super::{RaftRpc, RaftRpcReply, RaftTransport, TransportError};
use std::time::Duration;

/// Path the receiving coordinator serves Raft RPCs on.
pub const RAFT_RPC_PATH: &str = "/raft/rpc";
/// Idle connections kept per peer.
const POOL_IDLE_PER_PEER_MAX: usize = 8;

/// HTTP transport with a connection pool shared by all peers.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    /// Sent as a bearer token so that only members of the group can drive its Raft.
    cluster_secret: Option<String>,
}

impl HttpTransport {
    /// A transport authenticating with `cluster_secret` when one is set.
    pub fn new(cluster_secret: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(POOL_IDLE_PER_PEER_MAX)
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        HttpTransport {
            client,
            cluster_secret,
        }
    }
}

impl RaftTransport for HttpTransport {
    async fn call(
        &self,
        target: u64,
        addr: &str,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> Result<RaftRpcReply, TransportError> {
        let url = format!("http://{addr}{RAFT_RPC_PATH}");
        let mut req = self.client.post(url).json(&rpc).timeout(timeout);
        if let Some(secret) = &self.cluster_secret {
            req = req.bearer_auth(secret);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                TransportError::Unreachable(target, e.to_string())
            } else {
                TransportError::Failed(target, e.to_string())
            }
        })?;
        if !resp.status().is_success() {
            return Err(TransportError::Failed(
                target,
                format!("status {}", resp.status()),
            ));
        }
        resp.json::<RaftRpcReply>()
            .await
            .map_err(|e| TransportError::Failed(target, e.to_string()))
    }
}
