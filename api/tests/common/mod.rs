//! Helpers shared by the integration tests: free loopback ports, in-process groups, and
//! waiting on a condition with a deadline (never a bare sleep).

#![allow(dead_code)]

pub mod processes;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;
use weir_coordinator::node::CoordinatorConfig;
use weir_coordinator::server::{launch, RunningCoordinator};

pub const ADMIN: &str = "test-admin-token";

/// Polls `check` until it yields `Some`, or panics with `what` after `timeout_ms`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout_ms: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout_ms} ms waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local addr").to_string()
}

/// A group of coordinators running in this process.
pub struct Group {
    pub peers: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, RunningCoordinator>,
    pub lease_timeout_ms: u64,
}

impl Group {
    /// Starts `n` coordinators with data under `dir`.
    pub async fn start(n: u64, dir: &Path, lease_timeout_ms: u64) -> Group {
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            listeners.insert(
                id,
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            );
        }
        let peers: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().expect("addr").to_string()))
            .collect();
        let mut group = Group {
            peers,
            nodes: BTreeMap::new(),
            lease_timeout_ms,
        };
        for (id, l) in listeners {
            group.launch_with(id, l, dir, group.peers.clone()).await;
        }
        group
    }

    /// Launches member `id` on a bound listener.
    pub async fn launch_with(
        &mut self,
        id: u64,
        listener: tokio::net::TcpListener,
        dir: &Path,
        peers: BTreeMap<u64, String>,
    ) {
        let addr = listener.local_addr().expect("addr").to_string();
        let mut config = CoordinatorConfig::new(id, addr, peers);
        config.lease_timeout_ms = self.lease_timeout_ms;
        let running = launch(config, &dir.join(format!("c{id}")), ADMIN, listener)
            .await
            .expect("launch");
        self.nodes.insert(id, running);
    }

    pub fn addrs(&self) -> Vec<String> {
        self.peers.values().cloned().collect()
    }

    pub fn leader(&self) -> Option<u64> {
        self.nodes
            .values()
            .find(|n| n.coordinator.is_leader())
            .map(|n| n.coordinator.id())
    }

    pub async fn wait_for_leader(&self) -> u64 {
        wait_for("a leader", 15_000, || async { self.leader() }).await
    }

    /// An address of a member that is not the leader.
    pub fn follower_addr(&self) -> String {
        let leader = self.leader();
        self.nodes
            .iter()
            .find(|(id, _)| Some(**id) != leader)
            .map(|(id, _)| self.peers[id].clone())
            .expect("a follower")
    }

    pub async fn stop_all(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(n) = self.nodes.remove(&id) {
                n.stop().await;
            }
        }
    }
}
