//! weir under test: three `weir coordinator` processes of the release binary. The write is
//! `POST /v1/tenants` with the administrator token, a real command through Raft (leader
//! fsync, replication, follower fsync, apply) answered 201 once applied.

use crate::cluster::{Cluster, MemberStatus, System, MEMBERS};
use crate::process::{free_port, LaunchSpec, ManagedProcess};
use anyhow::{bail, Context};
use bytes::Bytes;
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use weir_client::{GroupClient, Request, Timeouts};
use weir_core::leader_client::RetryPolicy;
use weir_core::wire::{ClusterStatus, CreateTenantRequest};

/// The administrator token of the bench's group (only ever on loopback).
pub const ADMIN_TOKEN: &str = "weir-bench-admin-token";

/// weir's wire protocol. `name` tells a candidate build (`weir-b`) from the baseline.
#[derive(Debug)]
pub struct Weir {
    pub name: &'static str,
}

impl System for Weir {
    fn name(&self) -> &'static str {
        self.name
    }

    fn write_request(&self, http: &Client, addr: &str, key: &str) -> RequestBuilder {
        http.post(format!("http://{addr}/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&CreateTenantRequest {
                name: key.to_string(),
            })
    }

    fn write_acked(&self, status: StatusCode) -> bool {
        status == StatusCode::CREATED
    }

    fn status_request(&self, http: &Client, addr: &str) -> RequestBuilder {
        http.get(format!("http://{addr}/v1/cluster"))
            .bearer_auth(ADMIN_TOKEN)
    }

    fn parse_status(&self, body: &[u8]) -> anyhow::Result<MemberStatus> {
        let status: ClusterStatus =
            serde_json::from_slice(body).context("GET /v1/cluster answered no ClusterStatus")?;
        Ok(MemberStatus {
            self_id: None,
            leader_id: status.leader,
            term: status.term,
            applied_index: status.last_applied,
        })
    }

    fn log_fsyncs_metric(&self) -> &'static str {
        // One redb commit with Durability::Immediate (one fsync) per `append` call.
        "weir_raft_append_batch_entries_count"
    }
}

/// How to start one weir group.
#[derive(Debug, Clone)]
pub struct WeirLaunch {
    /// "weir", or "weir-b" for a candidate build measured beside it.
    pub name: &'static str,
    pub bin: std::path::PathBuf,
    /// Appended to every `weir coordinator` command line.
    pub extra_args: Vec<String>,
    /// Set in every coordinator's environment.
    pub env: Vec<(String, String)>,
}

/// A group of the release `weir_bin` with default flags in a new temporary directory,
/// ready (a write went through `probe`): the group, its leader's index and every member's
/// address, as the worker benches start it.
pub async fn start_ready(
    weir_bin: &std::path::Path,
    probe: &str,
) -> anyhow::Result<(Cluster, usize, Vec<String>)> {
    let root = tempfile::tempdir().context("cannot create a directory for the group")?;
    let launch = WeirLaunch {
        name: "weir",
        bin: weir_bin.to_path_buf(),
        extra_args: Vec::new(),
        env: Vec::new(),
    };
    let mut group = start(&launch, root)?;
    let leader = group.wait_ready(probe).await?;
    let addrs = (0..group.len())
        .map(|i| group.addr(i).to_string())
        .collect();
    Ok((group, leader, addrs))
}

/// Starts three coordinators with fresh data directories under `root`.
pub fn start(launch: &WeirLaunch, root: tempfile::TempDir) -> anyhow::Result<Cluster> {
    start_members(launch, root, MEMBERS)
}

/// Starts a group of `members` coordinators (1 or 3) with fresh data directories under
/// `root`.
pub fn start_members(
    launch: &WeirLaunch,
    root: tempfile::TempDir,
    members: usize,
) -> anyhow::Result<Cluster> {
    let ports = (0..members)
        .map(|_| free_port())
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut processes = Vec::with_capacity(members);
    for (i, addr) in addrs.iter().enumerate() {
        let id = i + 1;
        let mut args = vec![
            "coordinator".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr.clone(),
            "--data-dir".into(),
            root.path().join(format!("weir-{id}")).display().to_string(),
            "--peers".into(),
            peers.clone(),
            "--admin-token".into(),
            ADMIN_TOKEN.into(),
        ];
        args.extend(launch.extra_args.iter().cloned());
        let spec = LaunchSpec {
            program: launch.bin.clone(),
            args,
            env: launch.env.clone(),
            log: root.path().join(format!("weir-{id}.log")),
        };
        processes.push(ManagedProcess::start(spec)?);
    }
    let ids = (1..=members as u64).map(Some).collect();
    let system = Arc::new(Weir { name: launch.name });
    Cluster::new(system, processes, addrs, ids, root)
}

/// The benches' calls to the group: the production leader-sticky client, patient enough
/// for a group that is still electing or failing over.
pub const ADMIN_POLICY: RetryPolicy = RetryPolicy {
    attempts_max: 40,
    deadline_ms: 60_000,
    backoff_min_ms: 100,
    backoff_max_ms: 1_000,
    too_many_requests_max: 8,
    retry_after_default_ms: 1_000,
    retry_after_max_ms: 5_000,
};

/// A client of the group at `coordinators` for the benches' setup and status calls (one
/// attempt may take `attempt_timeout`).
pub fn admin_client(coordinators: &[String], attempt_timeout: Duration) -> GroupClient {
    let timeouts = Timeouts {
        attempt_ms: u64::try_from(attempt_timeout.as_millis()).unwrap_or(u64::MAX),
        connect_ms: 500,
    };
    GroupClient::new(coordinators.to_vec(), ADMIN_POLICY, timeouts)
}

/// Sends a request as the administrator (a write with an idempotency key, the same on
/// every attempt); a final answer that is not 2xx is an error, a 2xx one is decoded.
pub async fn admin<T: serde::de::DeserializeOwned>(
    group: &GroupClient,
    method: Method,
    path: &str,
    body: Option<Bytes>,
) -> anyhow::Result<T> {
    let key = (method != Method::GET).then(|| format!("bench-{:032x}", rand::random::<u128>()));
    let request = Request {
        method: method.clone(),
        path,
        token: Some(ADMIN_TOKEN),
        idempotency_key: key.as_deref(),
        body: body.map(|b| (b, "application/json")),
    };
    let reply = group
        .send(&request)
        .await
        .with_context(|| format!("{method} {path}"))?;
    if !reply.status.is_success() {
        bail!(
            "{method} {path} answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    serde_json::from_slice(&reply.body).with_context(|| {
        format!(
            "{method} {path} answered {}",
            String::from_utf8_lossy(&reply.body)
        )
    })
}

/// POSTs `body` to `path` as the administrator; a non-2xx answer is an error.
pub async fn post_admin<T: serde::de::DeserializeOwned>(
    group: &GroupClient,
    path: &str,
    body: &impl serde::Serialize,
) -> anyhow::Result<T> {
    let bytes = serde_json::to_vec(body).context("cannot encode the request")?;
    admin(group, Method::POST, path, Some(bytes.into())).await
}

/// GETs `path` as the administrator (from the leader, as the group's reads are served).
pub async fn get_admin<T: serde::de::DeserializeOwned>(
    group: &GroupClient,
    path: &str,
) -> anyhow::Result<T> {
    admin(group, Method::GET, path, None).await
}
