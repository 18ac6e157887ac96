//! Resident memory of an idle `weir worker` process: three `weir coordinator` processes and
//! one worker against the bench's Kafka, read from `/proc/<pid>/status` after the worker
//! has settled — first with nothing assigned, then holding every partition of a stateless
//! job over an empty 4-partition topic (one reader and one transactional writer each).

use crate::process::{wait_until, ManagedProcess};
use crate::weir as weir_group;
use anyhow::{bail, Context};
use std::path::Path;
use std::time::Duration;
use weir_core::wire::{JobDetail, JobState, SubmittedJob, WorkerStatus};

/// Bound on waiting for the worker to register and for its partitions to be placed.
pub const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between looks at the group while waiting.
const POLL: Duration = Duration::from_millis(100);
/// Time one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The worker's name in the group.
const WORKER_ID: &str = "idle-worker";

/// Memory of the idle worker, in KiB, as `/proc/<pid>/status` says.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
    pub threads: u64,
    /// The part of `rss_kib` that is the process's own memory (heap, stacks)...
    pub rss_anon_kib: u64,
    /// ...and the part that is pages of mapped files, the binary's code above all (shared,
    /// clean, and growing as code runs for the first time).
    pub rss_file_kib: u64,
}

/// Both measurements.
#[derive(Debug, Clone, Copy)]
pub struct IdleMemory {
    /// Registered, nothing assigned.
    pub unassigned: Memory,
    /// Holding every partition of a job whose source topic stays empty.
    pub assigned: Memory,
    pub assigned_partitions: usize,
}

/// Fails unless `weir_bin` is a `weir` build that has the `worker` subcommand (a build
/// from before the worker fleet has not).
pub fn check_binary(weir_bin: &Path) -> anyhow::Result<()> {
    let build = "build it with `cargo build --release -p weir-api --bin weir`";
    let status = std::process::Command::new(weir_bin)
        .args(["worker", "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {} ({build})", weir_bin.display()))?;
    if !status.success() {
        bail!(
            "{} has no `worker` subcommand: it predates the worker fleet; {build}",
            weir_bin.display()
        );
    }
    Ok(())
}

/// `VmRSS`, `VmHWM` and `Threads` of a process.
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("/proc/{pid}/status has no {name}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        threads: field("Threads:")?,
        rss_anon_kib: field("RssAnon:")?,
        rss_file_kib: field("RssFile:")?,
    })
}

/// Starts the group and the worker, settles, measures; then submits a job over
/// `idle_topic` (which must exist, empty, with its sink `idle-out` and `idle-out-dlq`)
/// and measures again once every partition is placed and has settled.
pub async fn measure(
    weir_bin: &Path,
    bootstrap: &str,
    idle_topic: &str,
    settle: Duration,
) -> anyhow::Result<IdleMemory> {
    check_binary(weir_bin)?;
    let worker_dir = tempfile::tempdir().context("cannot create the worker's directory")?;
    let (group, _leader, coordinators) = weir_group::start_ready(weir_bin, "idle-probe").await?;
    let worker = ManagedProcess::start(super::cluster_recovery::worker_launch(
        weir_bin,
        WORKER_ID,
        &coordinators.join(","),
        bootstrap,
        worker_dir.path(),
    ))?;
    let pid = worker.pid().context("the worker did not start")?;
    // The production client, pointed at the whole group: it finds the leader itself.
    let group_api = weir_group::admin_client(&coordinators, REQUEST_TIMEOUT);
    wait_until(
        "the worker to register",
        PLACEMENT_TIMEOUT,
        POLL,
        || async {
            let workers: Vec<WorkerStatus> = weir_group::get_admin(&group_api, "/v1/workers")
                .await
                .ok()?;
            workers.iter().any(|w| w.id.0 == WORKER_ID).then_some(())
        },
    )
    .await?;
    tokio::time::sleep(settle).await;
    let unassigned = memory_of(pid)?;

    let tenant = serde_json::json!({ "name": "bench" });
    let _: serde_json::Value = weir_group::post_admin(&group_api, "/v1/tenants", &tenant).await?;
    let spec = super::jobs::Job::FilterMap.spec(idle_topic, "idle-out")?;
    let job: SubmittedJob =
        weir_group::post_admin(&group_api, "/v1/jobs?tenant=bench", &spec).await?;
    let path = format!("/v1/jobs/{}", job.id);
    let assigned_partitions = wait_until(
        "every partition to be placed on the worker",
        PLACEMENT_TIMEOUT,
        POLL,
        || async {
            let detail: JobDetail = weir_group::get_admin(&group_api, &path).await.ok()?;
            let placed = detail
                .partitions
                .iter()
                .filter(|p| p.worker.as_ref().is_some_and(|w| w.0 == WORKER_ID))
                .count();
            (detail.state == JobState::Running
                && detail.partition_count.is_some_and(|n| n as usize == placed))
            .then_some(placed)
        },
    )
    .await?;
    tokio::time::sleep(settle).await;
    let assigned = memory_of(pid)?;
    drop(worker);
    drop(group);
    Ok(IdleMemory {
        unassigned,
        assigned,
        assigned_partitions,
    })
}
