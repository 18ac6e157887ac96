//! End to end through a real broker: one `PartitionRunner` per source partition, with the
//! exactly-once protocol and 1 s checkpoints (snapshots in a `DirCheckpointStore`, reports
//! to an in-process control plane that accepts them), copying or aggregating every record
//! of a pre-filled source topic into a sink topic.
//!
//! Runners are spread over driver threads, each a single-threaded tokio runtime running
//! every runner as a task of its own (as an actix arbiter runs partition actors). The clock starts once
//! every runner has recovered (fenced, found no commit point, opened its transaction) and
//! stops when the last one has committed its last record.

use super::control::AcceptingControlPlane;
use super::jobs::Job;
use anyhow::{bail, Context};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use tokio::time::Instant;
use weir_broker::{Broker, PartitionReader};
use weir_core::ids::{Epoch, JobId, PartitionId, WorkerId};
use weir_core::spec::stages::task_id;
use weir_worker::checkpoint_store::DirCheckpointStore;
use weir_worker::exactly_once::{
    PartitionConfig, PartitionCounters, PartitionRunner, POLL_BATCH_RECORDS_MAX, POLL_WAIT_MS,
};

/// Bound on one job's run over the whole topic.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// Driver threads at most.
pub const DRIVER_THREADS_MAX: usize = 16;

/// The worker the bench's runners act for.
pub const BENCH_WORKER: &str = "bench-worker";

type Runner<B> = PartitionRunner<B, DirCheckpointStore, AcceptingControlPlane>;
/// One thread's recovered runners, each with where it stops, and the slowest
/// recovery.
type Recovered<B> = (Vec<(Runner<B>, Goal)>, Duration);

/// A source topic filled up front.
#[derive(Debug, Clone)]
pub struct Source {
    pub topic: String,
    /// The end offset of each partition: the runners stop there.
    pub end_offsets: Vec<i64>,
}

impl Source {
    pub fn records(&self) -> u64 {
        self.end_offsets.iter().map(|o| *o as u64).sum()
    }
}

/// What one job's run did.
#[derive(Debug, Clone, Copy)]
pub struct WeirRun {
    pub job: Job,
    pub counters: PartitionCounters,
    /// From the start signal to the last commit.
    pub wall: Duration,
    /// The slowest recovery (fence, committed offset, reader, begin) before the start.
    pub recover_max: Duration,
}

/// The configuration of partition `partition` of job `job_id` (of one stage).
pub fn partition_config(
    job: Job,
    job_id: JobId,
    partition: u32,
    epoch: Epoch,
    source: &str,
    sink: &str,
) -> anyhow::Result<PartitionConfig> {
    task_config(
        job,
        job_id,
        PartitionId(partition),
        epoch,
        source,
        sink,
        Vec::new(),
    )
}

/// The configuration of task `task` of job `job_id`, whose repartition topics have
/// `repartitions` partitions (none: one stage).
pub fn task_config(
    job: Job,
    job_id: JobId,
    task: PartitionId,
    epoch: Epoch,
    source: &str,
    sink: &str,
    repartitions: Vec<u32>,
) -> anyhow::Result<PartitionConfig> {
    Ok(PartitionConfig {
        worker: WorkerId(BENCH_WORKER.to_string()),
        job: job_id,
        partition: task,
        epoch,
        spec: job.spec(source, sink)?,
        poll_batch_records: POLL_BATCH_RECORDS_MAX,
        committed_checkpoint: None,
        repartitions,
        repartition_generation: 0,
        restore: None,
        pins: None,
        join_upstreams: None,
    })
}

/// Where a runner stops.
#[derive(Debug, Clone, Copy)]
enum Goal {
    /// A task reading the source: at this end offset.
    SourceEnd(i64),
    /// A task downstream of a shuffle: once every upstream task finished and its watermark
    /// reached the least of theirs (their last markers read, so every event before them).
    UpstreamsDone,
}

/// How far the upstream tasks of a job that repartitions got.
#[derive(Debug)]
struct StageProgress {
    upstreams_left: std::sync::atomic::AtomicUsize,
    /// The final watermark of each upstream task finished so far.
    finals: std::sync::Mutex<Vec<Option<i64>>>,
}

impl StageProgress {
    fn upstream_finished(&self, watermark_ms: Option<i64>) {
        self.finals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(watermark_ms);
        self.upstreams_left
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The watermark a downstream task ends at, once every upstream task finished: the
    /// least of theirs, none if one never had an event.
    fn final_watermark(&self) -> Option<Option<i64>> {
        let left = self
            .upstreams_left
            .load(std::sync::atomic::Ordering::SeqCst);
        let finals = self.finals.lock().unwrap_or_else(|e| e.into_inner());
        (left == 0).then(|| {
            finals
                .iter()
                .copied()
                .try_fold(i64::MAX, |m, w| w.map(|w| m.min(w)))
        })
    }
}

/// Runs `job` as job `job_id` over every partition of `source` into `sink` (which must
/// exist, with its dead-letter topic `<sink>-dlq`), on `driver_threads` threads.
pub fn run_job<B: Broker + Send>(
    broker: &B,
    source: &Source,
    sink: &str,
    job: Job,
    job_id: JobId,
    driver_threads: usize,
    checkpoint_root: &Path,
) -> anyhow::Result<WeirRun> {
    if !(1..=DRIVER_THREADS_MAX).contains(&driver_threads) {
        bail!("--driver-threads must be 1..={DRIVER_THREADS_MAX}");
    }
    let store = DirCheckpointStore::new(checkpoint_root.display().to_string())
        .context("cannot open the checkpoint store")?;
    let control = Arc::new(AcceptingControlPlane::new());
    let partitions = source.end_offsets.len() as u32;
    let clock = Instant::now();
    let tasks = job_tasks(job, job_id, source, sink)?;
    let progress = Arc::new(StageProgress {
        upstreams_left: std::sync::atomic::AtomicUsize::new(partitions as usize),
        finals: std::sync::Mutex::new(Vec::new()),
    });
    let threads = driver_threads.min(tasks.len()).max(1);
    let barrier = Arc::new(Barrier::new(threads));
    let mut handles = Vec::with_capacity(threads);
    for thread in 0..threads {
        let mine: Vec<(PartitionConfig, Goal)> = tasks
            .iter()
            .enumerate()
            .filter(|(i, _)| i % threads == thread)
            .map(|(_, task)| task.clone())
            .collect();
        let progress = progress.clone();
        let (broker, store, control, barrier) = (
            broker.clone(),
            store.clone(),
            control.clone(),
            barrier.clone(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("driver-{thread}"))
            .spawn(move || drive_thread(mine, broker, store, control, barrier, clock, progress))
            .context("cannot start a driver thread")?;
        handles.push(handle);
    }
    let mut counters = PartitionCounters::default();
    let (mut started, mut finished) = (None::<Instant>, None::<Instant>);
    let mut recover_max = Duration::ZERO;
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(done)) => {
                started = Some(started.map_or(done.started, |s| s.min(done.started)));
                finished = Some(finished.map_or(done.finished, |f| f.max(done.finished)));
                recover_max = recover_max.max(done.recover_max);
                for c in done.counters {
                    counters.records_in += c.records_in;
                    counters.records_out += c.records_out;
                    counters.dead_letters += c.dead_letters;
                    counters.checkpoints += c.checkpoints;
                }
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow::anyhow!("a driver thread panicked"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e.context(format!("the {} job failed", job.name())));
    }
    let (Some(started), Some(finished)) = (started, finished) else {
        bail!("no driver thread ran");
    };
    Ok(WeirRun {
        job,
        counters,
        wall: finished - started,
        recover_max,
    })
}

/// What one driver thread did.
struct ThreadDone {
    started: Instant,
    finished: Instant,
    recover_max: Duration,
    counters: Vec<PartitionCounters>,
}

fn drive_thread<B: Broker>(
    partitions: Vec<(PartitionConfig, Goal)>,
    broker: B,
    store: DirCheckpointStore,
    control: Arc<AcceptingControlPlane>,
    barrier: Arc<Barrier>,
    clock: Instant,
    progress: Arc<StageProgress>,
) -> anyhow::Result<ThreadDone> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let now_ms = move || clock.elapsed().as_millis() as u64;
    // Every thread reaches the barrier, even one that failed, so none waits forever.
    let recovered: anyhow::Result<Recovered<B>> = match &runtime {
        Ok(runtime) => runtime.block_on(async {
            let mut runners = Vec::with_capacity(partitions.len());
            let mut recover_max = Duration::ZERO;
            for (config, goal) in partitions {
                let started = Instant::now();
                let runner = PartitionRunner::recover(
                    config,
                    &broker,
                    store.clone(),
                    control.clone(),
                    now_ms(),
                )
                .await?;
                recover_max = recover_max.max(started.elapsed());
                runners.push((runner, goal));
            }
            Ok((runners, recover_max))
        }),
        Err(e) => Err(anyhow::anyhow!("cannot start a driver runtime: {e}")),
    };
    barrier.wait();
    let (runners, recover_max) = recovered?;
    let runtime = runtime.context("cannot start a driver runtime")?;
    let started = Instant::now();
    let results = run_as_tasks(
        &runtime,
        runners
            .into_iter()
            .map(|(runner, goal)| drive(runner, goal, now_ms, progress.clone()))
            .collect(),
    );
    let mut counters = Vec::with_capacity(results.len());
    let mut finished = started;
    for result in results {
        let (c, done) = result?;
        counters.push(c);
        finished = finished.max(done);
    }
    Ok(ThreadDone {
        started,
        finished,
        recover_max,
        counters,
    })
}

/// Steps one runner until it reaches its goal, then commits what it processed.
async fn drive<B: Broker>(
    mut runner: Runner<B>,
    goal: Goal,
    now_ms: impl Fn() -> u64,
    progress: Arc<StageProgress>,
) -> anyhow::Result<(PartitionCounters, Instant)> {
    let give_up_at = Instant::now() + RUN_TIMEOUT;
    loop {
        let reached = match goal {
            Goal::SourceEnd(end_offset) => runner.next_offset() >= end_offset,
            Goal::UpstreamsDone => progress
                .final_watermark()
                .is_some_and(|last| runner.watermark_ms() == last),
        };
        if reached {
            break;
        }
        if Instant::now() >= give_up_at {
            bail!(
                "task {} reached offset {} (goal {goal:?}) in {RUN_TIMEOUT:?}",
                runner.config().partition,
                runner.next_offset()
            );
        }
        runner.step(now_ms()).await?;
    }
    // The tail since the last interval: one more commit point (upstream, with the last
    // watermark markers).
    runner.checkpoint(now_ms()).await?;
    if let Goal::SourceEnd(_) = goal {
        progress.upstream_finished(runner.watermark_ms());
    }
    let finished = Instant::now();
    let counters = runner.counters();
    runner.stop().await;
    Ok((counters, finished))
}

/// Every task of `job` with where it stops: one per source partition, and for a job that
/// repartitions as many downstream tasks (the repartition topic has the source's partition
/// count).
fn job_tasks(
    job: Job,
    job_id: JobId,
    source: &Source,
    sink: &str,
) -> anyhow::Result<Vec<(PartitionConfig, Goal)>> {
    let partitions = source.end_offsets.len() as u32;
    let repartitions = if job.repartitions() {
        vec![partitions]
    } else {
        Vec::new()
    };
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let config = task_config(
            job,
            job_id,
            task_id(0, p),
            Epoch(1),
            &source.topic,
            sink,
            repartitions.clone(),
        )?;
        tasks.push((config, Goal::SourceEnd(source.end_offsets[p as usize])));
    }
    if job.repartitions() {
        for p in 0..partitions {
            let config = task_config(
                job,
                job_id,
                task_id(1, p),
                Epoch(1),
                &source.topic,
                sink,
                repartitions.clone(),
            )?;
            tasks.push((config, Goal::UpstreamsDone));
        }
    }
    Ok(tasks)
}

/// Reads every record of `source` through `broker`'s readers (one per partition, all on one
/// thread, batches as the runner polls them) and does nothing else: the source side of the
/// runners alone. Returns the records read and the time taken.
pub fn read_only<B: Broker>(broker: &B, source: &Source) -> anyhow::Result<(u64, Duration)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let readers = runtime.block_on(async {
        let mut readers = Vec::with_capacity(source.end_offsets.len());
        for (partition, end_offset) in source.end_offsets.iter().enumerate() {
            let reader = broker.reader(&source.topic, partition as i32, 0).await?;
            readers.push((reader, *end_offset));
        }
        anyhow::Ok(readers)
    })?;
    let started = Instant::now();
    let give_up_at = started + RUN_TIMEOUT;
    let counts = run_as_tasks(
        &runtime,
        readers
            .into_iter()
            .map(|(mut reader, end_offset)| async move {
                let mut records = 0u64;
                while reader.position() < end_offset {
                    if Instant::now() >= give_up_at {
                        bail!(
                            "a reader reached {} of {end_offset} in {RUN_TIMEOUT:?}",
                            reader.position()
                        );
                    }
                    let batch = reader
                        .poll_batch(POLL_BATCH_RECORDS_MAX, Duration::from_millis(POLL_WAIT_MS))
                        .await?;
                    records += batch.len() as u64;
                }
                anyhow::Ok(records)
            })
            .collect(),
    );
    let wall = started.elapsed();
    let mut records = 0;
    for count in counts {
        records += count?;
    }
    Ok((records, wall))
}

/// Runs each future as a task of its own on `runtime`'s thread, as an actix arbiter runs
/// each partition actor: a wake-up polls only the task it wakes (a `join_all` would poll
/// every runner on every wake-up). Returns the results in order.
fn run_as_tasks<T, F>(runtime: &tokio::runtime::Runtime, futures: Vec<F>) -> Vec<anyhow::Result<T>>
where
    T: 'static,
    F: Future<Output = anyhow::Result<T>> + 'static,
{
    let local = tokio::task::LocalSet::new();
    local.block_on(runtime, async {
        let handles: Vec<_> = futures.into_iter().map(tokio::task::spawn_local).collect();
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            results.push(
                handle
                    .await
                    .unwrap_or_else(|e| Err(anyhow::anyhow!("a task failed: {e}"))),
            );
        }
        results
    })
}
