//! weir under test: a group of `weir coordinator`s (1 or 3) and two `weir worker`s of the
//! release binary on the bench's Kafka, the velocity job submitted over HTTP, and the life
//! cycle driven through the same routes the CLI uses (`POST .../savepoints`, `PUT
//! /v1/jobs/{id}`, `POST .../stop` with a savepoint, `POST .../start` from it).

use super::drive::Target;
use super::{Topics, CHECKPOINT_INTERVAL_MS, OUT_OF_ORDERNESS_MS, WINDOW_MS};
use crate::cluster::Cluster;
use crate::process::{wait_until, ManagedProcess};
use crate::weir::{self as weir_group, WeirLaunch};
use crate::worker::cluster_recovery::worker_launch;
use anyhow::{bail, Context};
use reqwest::Method;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use weir_client::GroupClient;
use weir_core::ids::JobId;
use weir_core::wire::{
    JobDetail, JobState, LifecycleAnswer, SavepointInfo, SavepointStatus, SubmittedJob,
};

/// Workers of the cluster.
pub const WORKERS: [&str; 2] = ["lb-w1", "lb-w2"];
/// Bound on the job reaching a state or a savepoint completing.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(600);
/// Time one HTTP request may take (a savepoint of a stopping job is answered at once).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two looks at a savepoint or the job.
const POLL: Duration = Duration::from_millis(10);
/// The bench's tenant.
const TENANT: &str = "lifecycle";

/// The job at `version`: its map stamps `"v": version` on every window result.
pub fn spec(topics: &Topics, version: u64) -> serde_json::Value {
    serde_json::json!({
        "name": "velocity",
        "source": {
            "topic": topics.source,
            "format": "json",
            "event_time": "ts",
            "max_out_of_orderness": format!("{}h", OUT_OF_ORDERNESS_MS / 3_600_000),
            "partitioned_by": "card",
        },
        "pipeline": [
            { "filter": "push == 0" },
            { "key_by": "card" },
            { "window": { "tumbling": format!("{WINDOW_MS}ms") }, "id": "velocity" },
            { "aggregate": { "n": "count()" } },
            { "map": {
                "key": "key",
                "window_start": "window_start",
                "window_end": "window_end",
                "n": "n",
                "v": version.to_string(),
            } },
        ],
        "sink": { "topic": topics.sink, "format": "json" },
        "dead_letter_topic": topics.dead_letters,
        "checkpoint_interval": format!("{CHECKPOINT_INTERVAL_MS}ms"),
    })
}

/// A running weir cluster with the job; every process dies with it.
pub struct WeirSide {
    // Before `dir`: the processes go before their directories.
    workers: Vec<ManagedProcess>,
    _group: Cluster,
    api: GroupClient,
    job: JobId,
    topics: Topics,
    checkpoints: PathBuf,
    _dir: TempDir,
}

impl WeirSide {
    /// Starts `coordinators` coordinators and the workers (logging at `worker_log`, a
    /// `RUST_LOG` value), and submits version 1.
    pub async fn start(
        weir_bin: &Path,
        bootstrap: &str,
        coordinators: usize,
        worker_log: &str,
        topics: &Topics,
    ) -> anyhow::Result<WeirSide> {
        let dir = tempfile::tempdir().context("cannot create the cluster's directory")?;
        let root =
            tempfile::tempdir_in(dir.path()).context("cannot create the group's directory")?;
        let launch = WeirLaunch {
            name: "weir",
            bin: weir_bin.to_path_buf(),
            extra_args: Vec::new(),
            env: Vec::new(),
        };
        let mut group = weir_group::start_members(&launch, root, coordinators)?;
        group.wait_ready("lifecycle-probe").await?;
        let addrs: Vec<String> = (0..group.len())
            .map(|i| group.addr(i).to_string())
            .collect();
        let mut workers = Vec::new();
        for id in WORKERS {
            let mut spec = worker_launch(weir_bin, id, &addrs.join(","), bootstrap, dir.path());
            spec.env = vec![("RUST_LOG".into(), worker_log.into())];
            workers.push(ManagedProcess::start(spec)?);
        }
        let api = weir_group::admin_client(&addrs, REQUEST_TIMEOUT);
        let _: serde_json::Value =
            weir_group::post_admin(&api, "/v1/tenants", &serde_json::json!({ "name": TENANT }))
                .await?;
        let submitted: SubmittedJob =
            weir_group::post_admin(&api, &format!("/v1/jobs?tenant={TENANT}"), &spec(topics, 1))
                .await?;
        let side = WeirSide {
            workers,
            _group: group,
            api,
            job: submitted.id,
            topics: topics.clone(),
            checkpoints: dir.path().join("checkpoints"),
            _dir: dir,
        };
        side.wait_state(JobState::Running).await?;
        Ok(side)
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/jobs/{}{rest}", self.job)
    }

    async fn detail(&self) -> anyhow::Result<JobDetail> {
        weir_group::get_admin(&self.api, &self.path("")).await
    }

    /// Waits for the job's state, failing at once if it failed.
    async fn wait_state(&self, state: JobState) -> anyhow::Result<()> {
        wait_until(state.as_str(), STATE_TIMEOUT, POLL, || async {
            let detail = self.detail().await.ok()?;
            if detail.state == JobState::Failed {
                // A failure cannot turn into the awaited state; the timeout reports it.
                eprintln!("lifecycle-bench: the weir job failed: {:?}", detail.reason);
            }
            (detail.state == state).then_some(())
        })
        .await
    }

    /// Waits until savepoint `id` is complete.
    async fn wait_complete(&self, id: u64) -> anyhow::Result<SavepointInfo> {
        let path = self.path("/savepoints");
        wait_until("the savepoint to complete", STATE_TIMEOUT, POLL, || async {
            let all: Vec<SavepointInfo> = weir_group::get_admin(&self.api, &path).await.ok()?;
            all.into_iter()
                .find(|s| s.savepoint.0 == id && s.status == SavepointStatus::Complete)
        })
        .await
    }

    /// Bytes of the snapshots a savepoint pins, in the checkpoint store.
    fn size_of(&self, savepoint: &SavepointInfo) -> Option<u64> {
        let mut total = 0;
        for part in &savepoint.partitions {
            let Some(snapshot) = &part.snapshot else {
                continue;
            };
            let named = self.checkpoints.join(snapshot);
            let laid_out = self
                .checkpoints
                .join(self.job.0.to_string())
                .join(part.partition.0.to_string())
                .join(format!("{:020}.snap", part.offset));
            let file = [named, laid_out].into_iter().find(|p| p.is_file())?;
            total += std::fs::metadata(file).ok()?.len();
        }
        Some(total)
    }

    /// Kills the workers and the group (also done on drop); with `keep`, leaves the
    /// workers' logs and data on disk and returns where.
    pub fn stop(self, keep: bool) -> Option<PathBuf> {
        let WeirSide {
            workers,
            _group,
            _dir,
            ..
        } = self;
        drop(workers);
        drop(_group);
        keep.then(|| _dir.keep())
    }

    /// Whether a worker exited by itself.
    pub fn check_workers(&mut self) -> anyhow::Result<()> {
        for w in &mut self.workers {
            if w.exited() {
                bail!("a weir worker exited; see {}", w.log().display());
            }
        }
        Ok(())
    }
}

impl Target for WeirSide {
    async fn savepoint(&mut self) -> anyhow::Result<(Duration, Option<u64>)> {
        let asked = Instant::now();
        let answer: SavepointInfo =
            weir_group::admin(&self.api, Method::POST, &self.path("/savepoints"), None).await?;
        let done = match answer.status {
            SavepointStatus::Complete => answer,
            _ => self.wait_complete(answer.savepoint.0).await?,
        };
        let took = asked.elapsed();
        Ok((took, self.size_of(&done)))
    }

    async fn upgrade(&mut self, version: u64) -> anyhow::Result<Vec<(&'static str, Duration)>> {
        let asked = Instant::now();
        let body = serde_json::to_vec(&serde_json::json!({ "spec": spec(&self.topics, version) }))?;
        let _: serde_json::Value =
            weir_group::admin(&self.api, Method::PUT, &self.path(""), Some(body.into())).await?;
        let mut phases = vec![("PUT answered 202 (upgrading)", asked.elapsed())];
        // The job's states as the group shows them: released, fenced and installed once it
        // is pending at the new version; running once every partition has an owner again.
        let deadline = Instant::now() + STATE_TIMEOUT;
        let mut pending_seen = false;
        loop {
            if let Ok(detail) = self.detail().await {
                if detail.version == version {
                    if !pending_seen {
                        pending_seen = true;
                        phases.push(("new version installed (released, fenced)", asked.elapsed()));
                    }
                    if detail.state == JobState::Running {
                        phases.push(("running (every partition placed)", asked.elapsed()));
                        break;
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!("version {version} was not running within {STATE_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(phases)
    }

    async fn stop_with_savepoint(&mut self) -> anyhow::Result<(Duration, String)> {
        let asked = Instant::now();
        let answer: LifecycleAnswer = weir_group::post_admin(
            &self.api,
            &self.path("/stop"),
            &serde_json::json!({ "savepoint": true }),
        )
        .await?;
        let id = answer.savepoint.context("the stop answered no savepoint")?;
        self.wait_complete(id.0).await?;
        self.wait_state(JobState::Stopped).await?;
        Ok((asked.elapsed(), id.0.to_string()))
    }

    async fn start_from(&mut self, savepoint: &str) -> anyhow::Result<()> {
        let id: u64 = savepoint.parse().context("a weir savepoint id")?;
        let _: LifecycleAnswer = weir_group::post_admin(
            &self.api,
            &self.path("/start"),
            &serde_json::json!({ "savepoint": id }),
        )
        .await?;
        Ok(())
    }

    async fn placement(&mut self) -> Option<String> {
        let detail = self.detail().await.ok()?;
        let owners: Vec<String> = detail
            .partitions
            .iter()
            .map(|p| {
                let w = p.worker.as_ref().map_or("-", |w| w.0.as_str());
                format!("p{}@{w}", p.partition.0)
            })
            .collect();
        Some(owners.join(" "))
    }
}
