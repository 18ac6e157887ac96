//! Three real `weir coordinator` processes on loopback: kill -9 the leader, restart it,
//! kill -9 them all and restart them, and check that no acknowledged write was lost.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::processes::CoordinatorProcesses;
use common::{wait_for, ADMIN};
use std::process::Command;
use weir_api::client::{Client, ClientError};
use weir_core::ids::WorkerId;
use weir_worker::control::{ControlPlane, HttpControlPlane};

/// Writes `n` tenants named `<prefix>-<i>`; returns those acknowledged. A write whose answer
/// was lost and that turns out to exist (409 on retry) counts as acknowledged too.
async fn write(client: &Client, prefix: &str, n: usize) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        match client.create_tenant(&name).await {
            Ok(_) | Err(ClientError::Api { status: 409, .. }) => acked.push(name),
            Err(e) => panic!("write {name} failed: {e}"),
        }
    }
    acked
}

async fn leader(client: &Client) -> u64 {
    wait_for("a leader", 20_000, || async {
        client.cluster_status().await.ok()?.leader
    })
    .await
}

async fn assert_all_present(client: &Client, acked: &[String], addrs: &[String]) {
    let tenants = client.list_tenants().await.expect("list tenants");
    for name in acked {
        assert!(tenants.contains(name), "acknowledged write {name} was lost");
    }
    // Every member converges on the same applied index.
    wait_for("members to converge", 20_000, || async {
        let mut applied = Vec::new();
        for a in addrs {
            match client.cluster_status_of(a).await {
                Ok(s) => applied.push(s.last_applied),
                Err(e) => {
                    eprintln!("{a}: {e}");
                    return None;
                }
            }
        }
        eprintln!("applied {applied:?}");
        applied.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_the_leader_and_then_everyone_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = CoordinatorProcesses::new(dir.path(), 3);
    for id in 1..=3 {
        p.start(id);
    }
    let addrs: Vec<String> = p.peers.values().cloned().collect();
    let client = Client::new(addrs.clone(), Some(ADMIN.into()));
    let first = leader(&client).await;
    let mut acked = write(&client, "before", 40).await;

    p.kill9(first);
    acked.extend(write(&client, "leaderless", 40).await);
    let second = leader(&client).await;
    assert_ne!(second, first, "a killed node cannot lead");
    p.start(first);
    acked.extend(write(&client, "rejoined", 40).await);
    assert_all_present(&client, &acked, &addrs).await;

    for id in 1..=3 {
        p.kill9(id);
    }
    for id in 1..=3 {
        p.start(id);
    }
    leader(&client).await;
    acked.extend(write(&client, "restarted", 10).await);
    assert_all_present(&client, &acked, &addrs).await;
    assert_eq!(acked.len(), 130);
}

/// The CLI's client and a worker's control plane, each given the followers first, find the
/// leader from their first answer and send to it from then on; after the leader is killed
/// they find the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_given_a_follower_first_find_the_leader_and_follow_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = CoordinatorProcesses::new(dir.path(), 3);
    for id in 1..=3 {
        p.start(id);
    }
    let addrs: Vec<String> = p.peers.values().cloned().collect();
    let first = leader(&Client::new(addrs, Some(ADMIN.into()))).await;
    let leader_addr = p.peers[&first].clone();
    let mut followers_first: Vec<String> = p
        .peers
        .iter()
        .filter(|(id, _)| **id != first)
        .map(|(_, a)| a.clone())
        .collect();
    followers_first.push(leader_addr.clone());

    let cli = Client::new(followers_first.clone(), Some(ADMIN.into()));
    assert_eq!(cli.leader(), None);
    cli.create_tenant("sticky").await.expect("create a tenant");
    assert_eq!(cli.leader().as_deref(), Some(leader_addr.as_str()));

    let control = HttpControlPlane::new(followers_first, ADMIN.into());
    let worker = WorkerId("w-sticky".into());
    control
        .register(&worker, "127.0.0.1:9")
        .await
        .expect("register");
    assert_eq!(control.leader().as_deref(), Some(leader_addr.as_str()));

    p.kill9(first);
    let moved = wait_for("the clients to find the new leader", 30_000, || async {
        cli.list_tenants().await.ok()?;
        // Its lease has lapsed by now: a refusal is an answer too, naming the leader.
        let _ = control.assignments(&worker).await;
        let (a, b) = (cli.leader()?, control.leader()?);
        (a == b && a != leader_addr).then_some(a)
    })
    .await;
    let status = cli
        .cluster_status_of(&moved)
        .await
        .expect("the new leader's view");
    assert_eq!(
        status.leader.map(|id| p.peers[&id].clone()).as_deref(),
        Some(moved.as_str())
    );
}

/// Runs `weir coordinator` with `args`; it must fail with one line on stderr naming `flag`.
fn refused_in_one_sentence(args: &[&str], flag: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("coordinator")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(flag), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_flag_is_one_sentence_on_stderr() {
    refused_in_one_sentence(&["--bogus"], "--bogus");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let base = [
        "--id",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--admin-token",
        ADMIN,
    ];
    refused_in_one_sentence(&[&base[..], &["--peers", "one"]].concat(), "--peers");
    // A lease no heartbeat could renew in time (0 ms panicked before).
    refused_in_one_sentence(
        &[
            &base[..],
            &["--peers", "2=127.0.0.1:1", "--lease-timeout-ms", "0"],
        ]
        .concat(),
        "--lease-timeout-ms",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_id_the_api_would_refuse_is_one_sentence_on_stderr() {
    // An id the coordinators refuse (or one that is not a URL path segment) made the
    // worker retry its registration for ever.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["worker", "--id", "a/b", "--coordinators", "127.0.0.1:1"])
        .args(["--kafka", "127.0.0.1:1", "--token", ADMIN, "--data-dir"])
        .arg(dir.path())
        .arg("--checkpoint-dir")
        .arg(dir.path().join("checkpoints"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--id"), "{stderr}");
}
