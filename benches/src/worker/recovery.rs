//! Recovery of one partition: a runner is killed mid-stream (dropped with its transaction
//! open, as a crash leaves it) and a new runner for the same partition, at the next epoch,
//! recovers: creating its writer fences the old producer and aborts the open transaction,
//! the committed offset names the commit point, the snapshot stored there is restored.
//! Measured from the kill to the end of `recover`, and to the new runner's first commit
//! point (which, as in production, comes right after its first batch).
//!
//! The source is live: a producer thread appends bids to a one-partition topic at a fixed
//! rate, with event time following the wall clock, so the runner is caught up when killed
//! and its replacement has new records to commit. A cluster adds the lease timeout (and up
//! to one assignment poll) before the new runner starts; the report adds those apart.

use super::control::AcceptingControlPlane;
use super::e2e::partition_config;
use super::jobs::Job;
use super::nexmark::{rewrite_date_time, Bids, DATE_TIME_START_MS};
use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::time::Instant;
use weir_broker::kafka::KafkaBroker;
use weir_core::ids::{Epoch, JobId};
use weir_worker::checkpoint_store::DirCheckpointStore;
use weir_worker::exactly_once::PartitionRunner;

/// How long a killed runner's partition waits in a cluster before the leader places it
/// again: the coordinator's default lease timeout.
pub const CLUSTER_LEASE_TIMEOUT_MS: u64 = 1_200;
/// And then up to one assignment poll of the supervisor that receives it.
pub const CLUSTER_ASSIGNMENT_POLL_MS: u64 = 250;
/// How long after its second commit point a runner is killed, cycled through the trials
/// so kills land at different points of the checkpoint interval.
pub const KILL_DELAYS_MS: [u64; 4] = [150, 400, 650, 900];
/// Bound on any one wait of a trial.
pub const TRIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the live producer tops up to its rate.
const PRODUCER_TICK: Duration = Duration::from_millis(5);
/// Records of the live producer's bid set, cycled.
const LIVE_BIDS: usize = 50_000;

/// One kill and recovery.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryTrial {
    pub job: Job,
    /// Kill to the end of `recover` (fenced, offset found, snapshot restored, reading).
    pub recover: Duration,
    /// Kill to the new runner's first commit point.
    pub first_commit: Duration,
    /// Whether that commit carried output records.
    pub first_commit_had_output: bool,
    /// Records the killed runner had processed after its last commit point: read again.
    pub records_replayed: i64,
    /// Size of the restored snapshot's state, as the pipeline estimates it.
    pub state_bytes: usize,
}

/// A producer thread appending bids to partition 0 of a topic at a fixed rate.
pub struct LiveProducer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<anyhow::Result<u64>>>,
}

impl LiveProducer {
    /// Starts producing `rate_per_s` bids per second to `topic`; event time is the time since
    /// start, from [`DATE_TIME_START_MS`].
    pub fn start(bootstrap: &str, topic: &str, rate_per_s: u64) -> anyhow::Result<LiveProducer> {
        Self::start_partitioned(bootstrap, topic, rate_per_s, 1)
    }

    /// The same, spreading the bids round robin over `partitions` partitions of `topic`.
    pub fn start_partitioned(
        bootstrap: &str,
        topic: &str,
        rate_per_s: u64,
        partitions: u32,
    ) -> anyhow::Result<LiveProducer> {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "bench-live")
            .set("allow.auto.create.topics", "false")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "none")
            .create()
            .context("cannot create the live producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let topic = topic.to_string();
        let stopping = stop.clone();
        let handle = std::thread::Builder::new()
            .name("live-producer".into())
            .spawn(move || produce(producer, &topic, rate_per_s, partitions.max(1), &stopping))
            .context("cannot start the live producer")?;
        Ok(LiveProducer {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops producing; returns the records produced.
    pub fn finish(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the live producer panicked"),
            None => Ok(0),
        }
    }
}

impl Drop for LiveProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn produce(
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    rate_per_s: u64,
    partitions: u32,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
    let bids = Bids::generate(LIVE_BIDS, 99);
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let elapsed = started.elapsed();
        let due = (elapsed.as_secs_f64() * rate_per_s as f64) as u64;
        let date_time_ms = DATE_TIME_START_MS + elapsed.as_millis() as i64;
        while sent < due {
            let index = (sent % bids.len() as u64) as usize;
            let mut value = bids.values[index].clone();
            rewrite_date_time(&mut value, date_time_ms);
            let key = bids.bidders[index].to_string();
            let mut record = BaseRecord::to(topic)
                .partition((sent % u64::from(partitions)) as i32)
                .key(key.as_bytes())
                .payload(value.as_slice());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(PRODUCER_TICK);
                    }
                    Err((e, _)) => return Err(e).context("the live producer failed"),
                }
            }
            sent += 1;
        }
        std::thread::sleep(PRODUCER_TICK);
    }
    producer
        .flush(Duration::from_secs(10))
        .context("the live producer could not deliver everything")?;
    Ok(sent)
}

type Runner = PartitionRunner<KafkaBroker, DirCheckpointStore, AcceptingControlPlane>;

/// Kills and recovers partition 0 of `job` (as job `job_id`, reading `source`, writing
/// `sink`) `trials` times. Runs on the caller's single-threaded runtime.
#[allow(clippy::too_many_arguments)]
pub async fn trials(
    broker: &KafkaBroker,
    store: &DirCheckpointStore,
    job: Job,
    job_id: JobId,
    source: &str,
    sink: &str,
    trials: usize,
) -> anyhow::Result<Vec<RecoveryTrial>> {
    let control = Arc::new(AcceptingControlPlane::new());
    let clock = Instant::now();
    let now_ms = move || clock.elapsed().as_millis() as u64;
    let mut epoch = Epoch(1);
    let recover = |epoch: Epoch| {
        let control = control.clone();
        async move {
            let config = partition_config(job, job_id, 0, epoch, source, sink)?;
            let runner: Runner =
                PartitionRunner::recover(config, broker, store.clone(), control, now_ms()).await?;
            anyhow::Ok(runner)
        }
    };
    let mut runner = recover(epoch).await?;
    let mut results = Vec::with_capacity(trials);
    for trial in 0..trials {
        // Run to a second commit point, then on into the next interval.
        let give_up_at = Instant::now() + TRIAL_TIMEOUT;
        while runner.counters().checkpoints < 2 {
            if Instant::now() >= give_up_at {
                bail!("no second commit point within {TRIAL_TIMEOUT:?}");
            }
            runner.step(now_ms()).await?;
        }
        let kill_at = Instant::now() + Duration::from_millis(KILL_DELAYS_MS[trial % 4]);
        while Instant::now() < kill_at {
            runner.step(now_ms()).await?;
        }
        let offset_at_kill = runner.next_offset();
        let killed = Instant::now();
        drop(runner);
        epoch = epoch.next();
        runner = recover(epoch).await?;
        let recovered = killed.elapsed();
        let records_replayed = offset_at_kill - runner.next_offset();
        let state_bytes = runner.state_bytes();
        let give_up_at = Instant::now() + TRIAL_TIMEOUT;
        while runner.counters().checkpoints == 0 {
            if Instant::now() >= give_up_at {
                bail!("the recovered runner committed nothing within {TRIAL_TIMEOUT:?}");
            }
            runner.step(now_ms()).await?;
        }
        results.push(RecoveryTrial {
            job,
            recover: recovered,
            first_commit: killed.elapsed(),
            first_commit_had_output: runner.counters().records_out > 0,
            records_replayed,
            state_bytes,
        });
        eprintln!(
            "pipeline-bench: recovery {} trial {}: recover {:.0} ms, first commit {:.0} ms",
            job.name(),
            trial + 1,
            recovered.as_secs_f64() * 1000.0,
            killed.elapsed().as_secs_f64() * 1000.0
        );
    }
    runner.stop().await;
    Ok(results)
}
