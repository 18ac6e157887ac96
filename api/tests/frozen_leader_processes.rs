//! Three real `weir coordinator` processes on loopback; the leader is frozen (SIGSTOP).
//! A write sent to a follower must follow the newly elected leader instead of waiting on
//! the frozen one until the forward timeout.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{free_addr, wait_for, ADMIN};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;
use weir_api::client::Client;

/// The coordinator processes; resumed (SIGCONT) and killed when dropped, even if the test
/// panics.
struct Processes {
    children: BTreeMap<u64, Child>,
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status();
}

impl Drop for Processes {
    fn drop(&mut self) {
        for c in self.children.values_mut() {
            signal(c, "-CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(dir: &std::path::Path, peers: &BTreeMap<u64, String>) -> Processes {
    let flag = peers
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    let children = peers
        .iter()
        .map(|(id, addr)| {
            let child = Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["coordinator", "--id", &id.to_string(), "--listen", addr])
                .arg("--data-dir")
                .arg(dir.join(format!("c{id}")))
                .args(["--peers", &flag, "--admin-token", ADMIN])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn weir coordinator");
            (*id, child)
        })
        .collect();
    Processes { children }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_follower_follows_the_new_leader_when_the_old_one_freezes() {
    let dir = tempfile::tempdir().unwrap();
    let peers: BTreeMap<u64, String> = (1..=3).map(|id| (id, free_addr())).collect();
    let procs = start(dir.path(), &peers);
    let addrs: Vec<String> = peers.values().cloned().collect();
    let admin = Client::new(addrs.clone(), Some(ADMIN.into()));
    admin
        .create_tenant("before")
        .await
        .expect("the group serves");
    let leader = wait_for("a leader", 20_000, || async {
        admin.cluster_status().await.ok()?.leader
    })
    .await;
    let follower = *peers.keys().find(|id| **id != leader).unwrap();
    // Open the follower's connection to the leader before the freeze, as a busy group
    // would have it.
    admin.create_tenant("warm").await.expect("write");

    signal(&procs.children[&leader], "-STOP");
    let started = Instant::now();
    // One attempt, straight to the follower: no client-side retry hides the forwarding.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/tenants", peers[&follower]))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "during"}))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("the follower answers");
    let took = started.elapsed();
    eprintln!("the write through the follower took {took:?}");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status.as_u16(), 201, "{body}");
    assert!(
        took < Duration::from_secs(5),
        "the write waited {took:?} on the frozen leader"
    );

    signal(&procs.children[&leader], "-CONT");
    // The old leader rejoins; the write exists exactly once (a second application would
    // have answered 409 to the one request).
    let others: Vec<String> = addrs.clone();
    let client = Client::new(others, Some(ADMIN.into()));
    let tenants = client.list_tenants().await.expect("list");
    assert_eq!(tenants.iter().filter(|t| *t == "during").count(), 1);
    drop(procs);
}
