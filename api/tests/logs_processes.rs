//! A real `weir coordinator` whose stderr is not a terminal writes plain log lines, without
//! ANSI colour codes.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

mod common;

use common::{free_addr, wait_for, ADMIN};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use weir_api::client::Client;

/// Kills the process when dropped, even if the test panics.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["coordinator", "--id", "1", "--listen", &addr])
            .arg("--data-dir")
            .arg(dir.path().join("c1"))
            .args(["--peers", &format!("1={addr}"), "--admin-token", ADMIN])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir coordinator"),
    );
    // Drain the pipe as the process writes, so that it never blocks on a full pipe.
    let mut pipe = child.0.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = pipe.read_to_string(&mut out);
        out
    });
    let client = Client::new(vec![addr.clone()], Some(ADMIN.into()));
    let served = wait_for("the coordinator to serve", 20_000, || async {
        client.cluster_status().await.ok()?.leader
    })
    .await;
    assert_eq!(served, 1);
    drop(child);
    let stderr = reader.join().expect("the reader");
    assert!(!stderr.trim().is_empty(), "some log lines");
    assert!(!stderr.contains('\u{1b}'), "colour codes in: {stderr:?}");
}
