//! The measuring procedure, the same for both systems: a [`Target`] is a running job that
//! can take a savepoint, be upgraded, be stopped with a savepoint and started from it; the
//! figures come from the sink reader's notes ([`super::sink`]) and the targets' own timings.

use super::sink::{self, SinkWatcher};
use super::Figures;
use crate::process::wait_until;
use std::time::{Duration, Instant};

/// Bound on the job catching up with the filled keys, and on any output reappearing.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(900);
/// Steady-state span watched for the noise floor.
pub const STEADY: Duration = Duration::from_secs(3);
/// Pause between two operations, so each starts from a steady job.
pub const SETTLE: Duration = Duration::from_secs(2);
/// Pause between two looks at the sink notes.
const POLL: Duration = Duration::from_millis(10);

/// A running job of one system.
#[allow(async_fn_in_trait)] // the bench's own trait, used generically, never boxed
pub trait Target {
    /// A savepoint of the running job: request to complete, and its size on disk.
    async fn savepoint(&mut self) -> anyhow::Result<(Duration, Option<u64>)>;
    /// Replaces the running job with `version` (its map writes `"v": version`), state carried;
    /// returns when the new version is running, with the end of each phase the system
    /// shows, after the request.
    async fn upgrade(&mut self, version: u64) -> anyhow::Result<Vec<(&'static str, Duration)>>;
    /// Stops the job with a savepoint: request to stopped with the savepoint complete, and the
    /// savepoint's name.
    async fn stop_with_savepoint(&mut self) -> anyhow::Result<(Duration, String)>;
    /// Starts the stopped job from `savepoint` (same version), returning once asked.
    async fn start_from(&mut self, savepoint: &str) -> anyhow::Result<()>;
    /// Where the job's partitions run, for the notes.
    async fn placement(&mut self) -> Option<String>;
}

/// Waits until every partition shows output received at or after `from`.
pub async fn wait_output(
    watcher: &SinkWatcher,
    what: &str,
    version: Option<u64>,
    from: Instant,
) -> anyhow::Result<()> {
    wait_until(what, CATCH_UP_TIMEOUT, POLL, || async {
        sink::every_partition_since(&watcher.seen(), version, from).then_some(())
    })
    .await
}

/// Runs every measurement `reps` times on a job that runs `version` and holds its keys.
pub async fn measure<T: Target>(
    target: &mut T,
    watcher: &SinkWatcher,
    reps: usize,
    mut version: u64,
) -> anyhow::Result<Figures> {
    let mut figures = Figures::default();
    if let Some(p) = target.placement().await {
        figures.notes.push(format!("placement before: {p}"));
    }
    tokio::time::sleep(STEADY).await;
    let now = Instant::now();
    figures.steady_gap_ms = ms(sink::longest_gap(&watcher.seen(), now - STEADY, now));
    for _ in 0..reps {
        let (took, size) = target.savepoint().await?;
        figures.savepoint_ms.push(ms(took));
        figures.state_bytes = size.or(figures.state_bytes);
        eprintln!(
            "lifecycle-bench:   savepoint {:.0} ms, {size:?} bytes",
            ms(took)
        );
        tokio::time::sleep(SETTLE).await;
    }
    for _ in 0..reps {
        let (old, new) = (version, version + 1);
        let asked = Instant::now();
        eprintln!(
            "lifecycle-bench:   upgrade to v{new} asked at {} ms since the epoch",
            epoch_ms()
        );
        let phases = target.upgrade(new).await?;
        wait_output(watcher, "the new version's output", Some(new), asked).await?;
        version = new;
        let seen = watcher.seen();
        let gap = sink::version_switch_gap(&seen, old, new).unwrap_or_default();
        figures.upgrade_downtime_ms.push(ms(gap));
        if let Some(last) = seen
            .iter()
            .filter(|s| s.version == old)
            .map(|s| s.received)
            .max()
        {
            figures.phase("last output of the old version", signed_ms(last, asked));
        }
        for (name, at) in phases {
            figures.phase(name, ms(at));
        }
        if let Some(first) = sink::first_of_every_partition(&seen, new) {
            figures.phase(
                "first output of the new version, every partition",
                signed_ms(first, asked),
            );
        }
        eprintln!(
            "lifecycle-bench:   upgrade v{old} → v{new}: downtime {:.0} ms",
            ms(gap)
        );
        if let Some(p) = target.placement().await {
            figures
                .notes
                .push(format!("placement after upgrade to v{new}: {p}"));
        }
        tokio::time::sleep(SETTLE).await;
    }
    for _ in 0..reps {
        let asked = Instant::now();
        eprintln!(
            "lifecycle-bench:   stop with savepoint asked at {} ms since the epoch",
            epoch_ms()
        );
        let (took, savepoint) = target.stop_with_savepoint().await?;
        figures.stop_savepoint_ms.push(ms(took));
        target.start_from(&savepoint).await?;
        let started = Instant::now();
        wait_output(watcher, "output after the restart", Some(version), started).await?;
        tokio::time::sleep(SETTLE).await;
        let gap = sink::longest_gap(&watcher.seen(), asked - STEADY, Instant::now());
        figures.restart_downtime_ms.push(ms(gap));
        eprintln!(
            "lifecycle-bench:   stop with savepoint {:.0} ms; restart downtime {:.0} ms",
            ms(took),
            ms(gap)
        );
    }
    Ok(figures)
}

/// The wall clock, to line the bench's moments up with the processes' logs.
fn epoch_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Milliseconds from `from` to `at`, negative when `at` came first.
fn signed_ms(at: Instant, from: Instant) -> f64 {
    match at.checked_duration_since(from) {
        Some(d) => ms(d),
        None => -ms(from.duration_since(at)),
    }
}

/// Milliseconds, for the tables.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}
