//! Membership changes through joint consensus, and a new member catching up from a
//! snapshot after the log was compacted.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{wait_for, ADMIN};
use std::collections::BTreeMap;
use weir_api::client::Client;
use weir_coordinator::node::CoordinatorConfig;
use weir_coordinator::server::{launch, RunningCoordinator};

async fn start(
    id: u64,
    listener: tokio::net::TcpListener,
    dir: &std::path::Path,
    peers: &BTreeMap<u64, String>,
) -> RunningCoordinator {
    let addr = listener.local_addr().unwrap().to_string();
    let mut config = CoordinatorConfig::new(id, addr, peers.clone());
    // Snapshot and compact often, so that the new member cannot catch up from the log.
    config.snapshot_every_entries = 40;
    config.log_entries_kept_after_snapshot = 5;
    launch(config, &dir.join(format!("c{id}")), ADMIN, listener)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_from_a_snapshot_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = BTreeMap::new();
    for id in 1..=4u64 {
        listeners.insert(
            id,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        );
    }
    let addrs: BTreeMap<u64, String> = listeners
        .iter()
        .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
        .collect();
    let initial: BTreeMap<u64, String> = addrs
        .iter()
        .filter(|(id, _)| **id <= 3)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let mut nodes = BTreeMap::new();
    let l4 = listeners.remove(&4).unwrap();
    for (id, l) in listeners {
        nodes.insert(id, start(id, l, dir.path(), &initial).await);
    }
    let admin = Client::new(initial.values().cloned().collect(), Some(ADMIN.into()));
    wait_for("a leader", 15_000, || async {
        admin.cluster_status().await.ok()?.leader
    })
    .await;
    for i in 0..120 {
        admin.create_tenant(&format!("t{i}")).await.unwrap();
    }
    // Every member has compacted its log, so the new member must be sent a snapshot.
    wait_for("snapshots and purged logs", 10_000, || async {
        nodes
            .values()
            .all(|n| {
                let m = n.coordinator.raft().metrics().borrow().clone();
                m.snapshot.is_some() && m.purged.is_some_and(|p| p.index > 1)
            })
            .then_some(())
    })
    .await;

    // Node 4 starts with --peers naming the existing members only: it waits to be added.
    nodes.insert(4, start(4, l4, dir.path(), &initial).await);
    let status = admin.add_member(4, &addrs[&4]).await.unwrap();
    assert_eq!(status.members.len(), 4);
    assert!(
        status
            .members
            .iter()
            .any(|m| m.id == 4 && m.state != "learner"),
        "{status:?}"
    );
    wait_for("node 4 to catch up", 10_000, || async {
        let s = nodes[&4].coordinator.state().read();
        (s.control.tenants.len() == 120).then_some(())
    })
    .await;
    let installed_from_snapshot = nodes[&4]
        .coordinator
        .raft()
        .metrics()
        .borrow()
        .snapshot
        .is_some();
    assert!(
        installed_from_snapshot,
        "node 4 should have caught up from a snapshot"
    );

    // Writes keep working with 4 members; then remove node 1 (whoever leads).
    admin.create_tenant("after-add").await.unwrap();
    let status = admin.remove_member(1).await.unwrap();
    assert_eq!(
        status.members.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    let remaining = Client::new(
        vec![addrs[&2].clone(), addrs[&3].clone(), addrs[&4].clone()],
        Some(ADMIN.into()),
    );
    remaining.create_tenant("after-remove").await.unwrap();
    wait_for("node 4 to apply the last write", 10_000, || async {
        nodes[&4]
            .coordinator
            .state()
            .read()
            .control
            .tenants
            .keys()
            .any(|t| t.0 == "after-remove")
            .then_some(())
    })
    .await;
    assert_eq!(
        remaining
            .remove_member(99)
            .await
            .map_err(|e| e.status())
            .unwrap_err(),
        Some(404)
    );
    for (_, n) in nodes {
        n.stop().await;
    }
}
