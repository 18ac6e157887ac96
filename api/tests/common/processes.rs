//! Real `weir coordinator` processes on loopback for the black-box tests: start, kill -9,
//! stop (SIGSTOP) and resume them, with each process's stderr kept in a file the test can
//! read. Every process is killed when the harness is dropped, even if the test panics.

use super::{free_addr, ADMIN};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long a process that must refuse to start may take to exit.
pub const REFUSAL_TIMEOUT_MS: u64 = 20_000;

/// A group of coordinator processes with fixed addresses.
pub struct CoordinatorProcesses {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub peers: BTreeMap<u64, String>,
    pub children: BTreeMap<u64, Child>,
}

impl CoordinatorProcesses {
    /// `n` members with free loopback addresses and data under `dir`; none started yet.
    pub fn new(dir: &Path, n: u64) -> Self {
        CoordinatorProcesses {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_weir")),
            dir: dir.to_path_buf(),
            peers: (1..=n).map(|id| (id, free_addr())).collect(),
            children: BTreeMap::new(),
        }
    }

    /// The `--peers` value naming every member.
    pub fn peers_flag(&self) -> String {
        self.peers
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("c{id}"))
    }

    /// Member `id`'s stderr file.
    pub fn stderr_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("c{id}.stderr"))
    }

    fn command(&self, id: u64, extra: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args([
            "coordinator",
            "--id",
            &id.to_string(),
            "--listen",
            &self.peers[&id],
        ])
        .arg("--data-dir")
        .arg(self.data_dir(id))
        .args(["--peers", &self.peers_flag(), "--admin-token", ADMIN])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
        c
    }

    /// Starts member `id` with `extra` flags, its stderr going to [`Self::stderr_path`].
    pub fn start_with(&mut self, id: u64, extra: &[&str]) {
        let stderr = std::fs::File::create(self.stderr_path(id)).expect("stderr file");
        let child = self
            .command(id, extra)
            .stderr(stderr)
            .spawn()
            .expect("spawn weir coordinator");
        self.children.insert(id, child);
    }

    /// Starts member `id`.
    pub fn start(&mut self, id: u64) {
        self.start_with(id, &[]);
    }

    /// Runs member `id` expecting it to refuse to start: returns its output once it exited
    /// (within [`REFUSAL_TIMEOUT_MS`], else the test fails).
    pub fn run_refused(&self, id: u64, extra: &[&str]) -> Output {
        let child = self
            .command(id, extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir coordinator");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_millis(REFUSAL_TIMEOUT_MS)) {
            Ok(out) => out.expect("wait for weir coordinator"),
            Err(_) => {
                signal(pid, "KILL");
                panic!("member {id} did not refuse to start within {REFUSAL_TIMEOUT_MS} ms");
            }
        }
    }

    /// kill -9 of member `id`.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut c) = self.children.remove(&id) {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    /// SIGSTOP (`stop == true`) or SIGCONT of member `id`.
    pub fn pause(&self, id: u64, stop: bool) {
        let pid = self.children[&id].id();
        signal(pid, if stop { "STOP" } else { "CONT" });
    }

    /// Whether member `id` is still running.
    pub fn running(&mut self, id: u64) -> bool {
        self.children
            .get_mut(&id)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for CoordinatorProcesses {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.children.keys().copied().collect();
        for id in ids {
            // A stopped process must be resumed to die of SIGKILL promptly on some systems.
            if let Some(c) = self.children.get(&id) {
                signal(c.id(), "CONT");
            }
            self.kill9(id);
        }
    }
}

/// Sends a signal by name with kill(1).
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Asserts a refused start: a non-zero exit, one line on stderr containing `needle`, and
/// no panic.
pub fn assert_one_sentence(out: &Output, needle: &str) {
    assert!(
        !out.status.success(),
        "the process should have refused to start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .trim()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        lines.last().is_some_and(|l| l.contains(needle)),
        "the last line should name {needle:?}: {stderr}"
    );
}
