//! Server processes the bench starts: each is a guard that SIGKILLs and reaps its process when
//! dropped (on success, error, panic or Ctrl-C alike), and can be killed and started again
//! with the same command line, as an operator restarts a crashed member.

use anyhow::{bail, Context};
use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// How one member is started: program, arguments, extra environment and its log file.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// stdout and stderr of every incarnation are appended here.
    pub log: PathBuf,
}

/// A server process that dies with its guard.
#[derive(Debug)]
pub struct ManagedProcess {
    spec: LaunchSpec,
    child: Option<Child>,
}

impl ManagedProcess {
    /// Starts the process described by `spec`.
    pub fn start(spec: LaunchSpec) -> anyhow::Result<Self> {
        let mut process = ManagedProcess { spec, child: None };
        process.restart()?;
        Ok(process)
    }

    /// Starts the process again with the same command line; it must not be running.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} is still running", self.spec.program.display());
        }
        let log = open_log(&self.spec.log)?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("cannot share log file {}", self.spec.log.display()))?;
        let child = Command::new(&self.spec.program)
            .args(&self.spec.args)
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .with_context(|| format!("cannot start {}", self.spec.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILLs the process (kill -9) without reaping it: the kernel has closed its sockets
    /// when this returns, so the moment is the start of a failover. Call `reap` after.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        match &mut self.child {
            Some(child) => child.kill().context("cannot SIGKILL the process"),
            None => bail!("the process is not running"),
        }
    }

    /// Waits for a killed process to be gone.
    pub fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// The process id while running, for CPU accounting.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process has exited by itself (a crash at start, say).
    pub fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The log file of this member.
    pub fn log(&self) -> &Path {
        &self.spec.log
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
        }
        self.reap();
    }
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))
}

/// A loopback port nobody listens on right now (the OS picks it; the server binds it moments
/// later, so a clash with another program is possible but unlikely).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `check` every `poll` until it yields a value or `timeout` passes; `what` names the
/// condition in the error.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out after {} ms waiting for {what}",
                timeout.as_millis()
            );
        }
        tokio::time::sleep(poll).await;
    }
}

/// CPU time (user + system) a process has used so far, in milliseconds, from /proc.
pub fn cpu_ms(pid: u32, clock_ticks_per_s: u64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000 / clock_ticks_per_s.max(1))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked.
pub fn clock_ticks_per_s() -> u64 {
    const CLOCK_TICKS_DEFAULT: u64 = 100;
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CLOCK_TICKS_DEFAULT)
}
