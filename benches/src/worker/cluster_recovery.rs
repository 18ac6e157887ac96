//! Recovery in a real cluster: three `weir coordinator` and two `weir worker` processes
//! against the bench's Kafka run a stateless job over a live 4-partition stream; the
//! worker holding the most partitions is killed with SIGKILL, and for each of its
//! partitions the bench times how long until a `read_committed` reader sees output of that
//! partition again. That span holds everything a user waits for: the lease running out,
//! the leader placing the partition elsewhere, the new owner's assignment poll, fencing the
//! dead producer, restoring the state and the first commit. The killed worker is then
//! restarted and the next trial kills whichever worker holds the most partitions.
//!
//! Output is keyless, so it stays on the sink partition numbered like its source partition
//! (the sink has as many partitions as the source).

use super::jobs::Job;
use super::recovery::LiveProducer;
use crate::process::{wait_until, LaunchSpec, ManagedProcess};
use crate::weir::{self as weir_group, ADMIN_TOKEN};
use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::time::Instant;
use weir_core::wire::{JobDetail, JobState, SubmittedJob};

/// Partitions of the source and sink topics.
pub const PARTITIONS: u32 = 4;
/// Bound on waiting for placement, flowing output, or a recovery.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Records the killed worker had already committed may still arrive this soon after the
/// kill; only later ones count as the new owner's.
pub const IN_FLIGHT_GRACE: Duration = Duration::from_millis(200);
/// Pause between looks at the group while waiting.
const POLL: Duration = Duration::from_millis(50);
/// Time one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Workers in the cluster.
const WORKERS: [&str; 2] = ["rec-w1", "rec-w2"];

/// One kill and what followed it, per partition of the killed worker.
#[derive(Debug, Clone)]
pub struct ClusterTrial {
    pub killed: String,
    /// Kill to the first output of each partition the killed worker held.
    pub recovered: Vec<(i32, Duration)>,
}

/// The first output seen on each sink partition after an armed moment.
#[derive(Debug, Default)]
struct Watch {
    armed_at: Option<Instant>,
    first_after: BTreeMap<i32, Instant>,
    last_seen: BTreeMap<i32, Instant>,
}

/// A `read_committed` reader of the sink on a thread of its own.
struct SinkWatcher {
    watch: Arc<Mutex<Watch>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl SinkWatcher {
    fn start(bootstrap: &str, sink: &str) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "bench-cluster-recovery")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "10")
            .set("fetch.queue.backoff.ms", "10")
            .create()
            .context("cannot create the sink reader")?;
        let mut assignment = TopicPartitionList::new();
        for p in 0..PARTITIONS as i32 {
            assignment
                .add_partition_offset(sink, p, Offset::End)
                .context("cannot assign the sink")?;
        }
        consumer
            .assign(&assignment)
            .context("cannot assign the sink")?;
        let watch = Arc::new(Mutex::new(Watch::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (w, s) = (watch.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("sink-watch".into())
            .spawn(move || -> anyhow::Result<()> {
                while !s.load(Ordering::Relaxed) {
                    let Some(message) = consumer.poll(Duration::from_millis(20)) else {
                        continue;
                    };
                    let message = message.context("reading the sink")?;
                    let now = Instant::now();
                    let mut watch = w.lock().unwrap_or_else(|e| e.into_inner());
                    let p = message.partition();
                    watch.last_seen.insert(p, now);
                    if watch.armed_at.is_some_and(|at| now >= at) {
                        watch.first_after.entry(p).or_insert(now);
                    }
                }
                Ok(())
            })
            .context("cannot start the sink reader")?;
        Ok(SinkWatcher {
            watch,
            stop,
            handle: Some(handle),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether every sink partition showed output in the last `within`.
    fn all_flowing(&self, within: Duration) -> bool {
        let watch = self.lock();
        let now = Instant::now();
        (0..PARTITIONS as i32).all(|p| {
            watch
                .last_seen
                .get(&p)
                .is_some_and(|seen| now.duration_since(*seen) < within)
        })
    }

    /// Counts output from `at` on, afresh.
    fn arm(&self, at: Instant) {
        let mut watch = self.lock();
        watch.armed_at = Some(at);
        watch.first_after.clear();
    }

    fn first_after(&self, p: i32) -> Option<Instant> {
        self.lock().first_after.get(&p).copied()
    }
}

impl Drop for SinkWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// How the benches start a `weir worker`: its data under `dir/<id>`, the checkpoint store
/// in `dir/checkpoints`, its log in `dir/<id>.log`.
pub fn worker_launch(
    weir_bin: &Path,
    id: &str,
    coordinators: &str,
    bootstrap: &str,
    dir: &Path,
) -> LaunchSpec {
    LaunchSpec {
        program: weir_bin.to_path_buf(),
        args: vec![
            "worker".into(),
            "--id".into(),
            id.into(),
            "--coordinators".into(),
            coordinators.into(),
            "--data-dir".into(),
            dir.join(id).display().to_string(),
            "--kafka".into(),
            bootstrap.into(),
            "--checkpoint-dir".into(),
            dir.join("checkpoints").display().to_string(),
            "--token".into(),
            ADMIN_TOKEN.into(),
        ],
        env: vec![("RUST_LOG".into(), "warn".into())],
        log: dir.join(format!("{id}.log")),
    }
}

/// Runs `trials` kills. `source` and `sink` must exist with [`PARTITIONS`] partitions.
pub async fn measure(
    weir_bin: &Path,
    bootstrap: &str,
    source: &str,
    sink: &str,
    rate_per_s: u64,
    trials: usize,
) -> anyhow::Result<Vec<ClusterTrial>> {
    let workers_dir = tempfile::tempdir().context("cannot create the workers' directory")?;
    let (group, _leader, coordinators) =
        weir_group::start_ready(weir_bin, "recovery-probe").await?;
    let mut workers: BTreeMap<&str, ManagedProcess> = BTreeMap::new();
    for id in WORKERS {
        let spec = worker_launch(
            weir_bin,
            id,
            &coordinators.join(","),
            bootstrap,
            workers_dir.path(),
        );
        workers.insert(id, ManagedProcess::start(spec)?);
    }
    // The production client, pointed at the whole group: it finds the leader itself.
    let group_api = weir_group::admin_client(&coordinators, REQUEST_TIMEOUT);
    let _: serde_json::Value = weir_group::post_admin(
        &group_api,
        "/v1/tenants",
        &serde_json::json!({ "name": "recovery" }),
    )
    .await?;
    let spec = Job::FilterMap.spec(source, sink)?;
    let job: SubmittedJob =
        weir_group::post_admin(&group_api, "/v1/jobs?tenant=recovery", &spec).await?;
    let watcher = SinkWatcher::start(bootstrap, sink)?;
    let live = LiveProducer::start_partitioned(bootstrap, source, rate_per_s, PARTITIONS)?;
    let path = format!("/v1/jobs/{}", job.id);
    let mut results = Vec::new();
    for trial in 0..trials {
        // Every partition placed and every sink partition taking output.
        let owners = wait_until(
            "every partition placed and running",
            WAIT_TIMEOUT,
            POLL,
            || async {
                let detail: JobDetail = weir_group::get_admin(&group_api, &path).await.ok()?;
                let owners: BTreeMap<i32, String> = detail
                    .partitions
                    .iter()
                    .filter_map(|p| Some((p.partition.0 as i32, p.worker.as_ref()?.0.clone())))
                    .collect();
                (detail.state == JobState::Running
                    && owners.len() == PARTITIONS as usize
                    && watcher.all_flowing(Duration::from_secs(2)))
                .then_some(owners)
            },
        )
        .await?;
        let mut held: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (p, w) in &owners {
            if let Some(id) = WORKERS.iter().find(|id| **id == w.as_str()) {
                held.entry(id).or_default().push(*p);
            }
        }
        let Some((victim, partitions)) = held.into_iter().max_by_key(|(_, ps)| ps.len()) else {
            bail!("no bench worker holds a partition");
        };
        let killed_at = Instant::now();
        watcher.arm(killed_at + IN_FLIGHT_GRACE);
        let process = workers.get_mut(victim).context("the victim's process")?;
        process.kill()?;
        process.reap();
        eprintln!(
            "pipeline-bench: cluster recovery trial {}: killed {victim} holding {partitions:?}",
            trial + 1
        );
        let recovered = wait_until(
            "the killed worker's partitions to commit output again",
            WAIT_TIMEOUT,
            POLL,
            || async {
                let times: Option<Vec<(i32, Duration)>> = partitions
                    .iter()
                    .map(|p| Some((*p, watcher.first_after(*p)?.duration_since(killed_at))))
                    .collect();
                times
            },
        )
        .await?;
        results.push(ClusterTrial {
            killed: victim.to_string(),
            recovered,
        });
        process.restart()?;
    }
    let produced = live.finish()?;
    eprintln!("pipeline-bench: the cluster's live stream carried {produced} records");
    drop(watcher);
    drop(workers);
    drop(group);
    Ok(results)
}
