//! Flink under test: the same velocity job (benches/flink) in a local MiniCluster, run by
//! `dev.weir.bench.LifecycleDriver` in a JVM of bounded heap that the bench steers one line
//! at a time over stdin/stdout. Flink has no in-place upgrade: an upgrade is its savepoint
//! workflow, stop with a savepoint then submit the new version from it.

use super::drive::Target;
use super::{Topics, CHECKPOINT_INTERVAL_MS, OUT_OF_ORDERNESS_MS, PARTITIONS, WINDOW_MS};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Bound on any one command of the driver (a savepoint of 1 M keys takes seconds).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// The JVM's heap: room for 1 M keys of heap state and their savepoint, bounded.
pub const HEAP: &str = "-Xmx4g";

/// Builds benches/flink with benches/scripts/flink.sh and returns the classpath it prints.
pub async fn build(repo: &Path) -> anyhow::Result<String> {
    let script = repo.join("benches/scripts/flink.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed", script.display());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("classpath=").map(str::to_string))
        .context("flink.sh printed no classpath= line")
}

/// The driver's JVM with the job running; killed on drop.
pub struct FlinkSide {
    // Before `dir`: the JVM goes before its directory.
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    version: u64,
    dir: TempDir,
}

impl FlinkSide {
    /// Starts the MiniCluster with the `backend` state backend and submits version 1.
    pub async fn start(
        classpath: &str,
        bootstrap: &str,
        topics: &Topics,
        backend: &str,
    ) -> anyhow::Result<FlinkSide> {
        let dir = tempfile::tempdir().context("cannot create Flink's directory")?;
        let log = std::fs::File::create(dir.path().join("flink.log"))
            .context("cannot create Flink's log")?;
        let mut child = Command::new("java")
            .arg(HEAP)
            .arg("-cp")
            .arg(classpath)
            .arg("dev.weir.bench.LifecycleDriver")
            .args(["--bootstrap", bootstrap])
            .args(["--source", &topics.source, "--sink", &topics.sink])
            .args(["--parallelism", &PARTITIONS.to_string()])
            .args(["--window-ms", &WINDOW_MS.to_string()])
            .args(["--out-of-orderness-ms", &OUT_OF_ORDERNESS_MS.to_string()])
            .args(["--checkpoint-ms", &CHECKPOINT_INTERVAL_MS.to_string()])
            .args(["--backend", backend])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start java")?;
        let stdin = child.stdin.take().context("the driver's stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("the driver's stdout")?).lines();
        let mut side = FlinkSide {
            child,
            stdin,
            stdout,
            version: 1,
            dir,
        };
        side.expect("ready").await?;
        side.command("start 1").await?;
        Ok(side)
    }

    /// The next line the driver answers, which must start with `word`.
    async fn expect(&mut self, word: &str) -> anyhow::Result<Vec<String>> {
        let line = tokio::time::timeout(COMMAND_TIMEOUT, self.stdout.next_line())
            .await
            .with_context(|| format!("the Flink driver did not answer {word} in time"))?
            .context("reading the Flink driver")?
            .with_context(|| format!("the Flink driver exited; see {}", self.log().display()))?;
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if words.first().map(String::as_str) != Some(word) {
            bail!("the Flink driver answered {line:?} (expected {word})");
        }
        Ok(words)
    }

    /// Sends one command and returns its answer's words.
    async fn command(&mut self, command: &str) -> anyhow::Result<Vec<String>> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .context("writing to the Flink driver")?;
        self.stdin
            .flush()
            .await
            .context("writing to the Flink driver")?;
        let word = match command.split_whitespace().next() {
            Some("start") => "started",
            Some("savepoint") => "savepoint",
            Some("stop") => "stopped",
            _ => "bye",
        };
        self.expect(word).await
    }

    /// The driver's log (Flink's own logs).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("flink.log")
    }

    /// Asks the driver to stop, then kills the JVM whatever it answered.
    pub async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.command("quit")).await;
        let _ = self.child.kill().await;
    }
}

/// A savepoint's path (`file:/...`) and its size on disk.
fn savepoint_of(words: &[String]) -> anyhow::Result<(String, Option<u64>)> {
    let path = words
        .get(1)
        .context("the driver named no savepoint")?
        .clone();
    let local = path.trim_start_matches("file:").trim_start_matches("//");
    Ok((path.clone(), super::dir_bytes(Path::new(local)).ok()))
}

impl Target for FlinkSide {
    async fn savepoint(&mut self) -> anyhow::Result<(Duration, Option<u64>)> {
        let asked = Instant::now();
        let words = self.command("savepoint").await?;
        let took = asked.elapsed();
        let (_, size) = savepoint_of(&words)?;
        Ok((took, size))
    }

    async fn upgrade(&mut self, version: u64) -> anyhow::Result<Vec<(&'static str, Duration)>> {
        let asked = Instant::now();
        let (_, savepoint) = self.stop_with_savepoint().await?;
        let stopped = asked.elapsed();
        self.version = version;
        self.command(&format!("start {version} {savepoint}"))
            .await?;
        Ok(vec![
            ("stopped with a savepoint", stopped),
            ("new version submitted and RUNNING", asked.elapsed()),
        ])
    }

    async fn stop_with_savepoint(&mut self) -> anyhow::Result<(Duration, String)> {
        let asked = Instant::now();
        let words = self.command("stop").await?;
        let took = asked.elapsed();
        let (path, _) = savepoint_of(&words)?;
        Ok((took, path))
    }

    async fn start_from(&mut self, savepoint: &str) -> anyhow::Result<()> {
        let version = self.version;
        self.command(&format!("start {version} {savepoint}"))
            .await?;
        Ok(())
    }

    async fn placement(&mut self) -> Option<String> {
        None
    }
}
