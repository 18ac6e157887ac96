//! `pipeline-bench`: the worker end to end through a real Kafka, in one run on one machine.
//!
//! Starts a single-node Kafka (`scripts/kafka/kafka.sh`, in a temporary directory), fills a
//! source topic with Nexmark-style bids, then measures
//! 1. the baseline, a plain rdkafka consume-and-produce copy loop, before and after weir;
//! 2. weir's exactly-once `PartitionRunner`s, one per partition, for a copy job, a
//!    filter+map job and a windowed count, as records/s and as a share of the copy loop;
//! 3. recovery of a partition killed mid-stream, on a live one-partition stream;
//! 4. the resident memory of an idle `weir worker` process beside three coordinators.
//!
//! Every process started dies with the bench, on success, error, panic or Ctrl-C.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use anyhow::Context;
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_benches::process::{clock_ticks_per_s, cpu_ms};
use weir_benches::worker::cluster_recovery;
use weir_benches::worker::e2e::{self, Source};
use weir_benches::worker::idle;
use weir_benches::worker::jobs::Job;
use weir_benches::worker::kafka::{self, KafkaProcess};
use weir_benches::worker::nexmark::Bids;
use weir_benches::worker::recovery::{self, LiveProducer};
use weir_benches::worker::report::{self, E2eRow};
use weir_benches::worker::thread::on_thread;
use weir_benches::worker::tuned::{TunedKafkaBroker, FETCH_QUEUE_BACKOFF_MS};
use weir_broker::kafka::KafkaBroker;
use weir_broker::Broker;
use weir_core::ids::JobId;
use weir_worker::checkpoint_store::DirCheckpointStore;

#[derive(Debug, Parser)]
#[command(about = "weir's exactly-once runners through a real Kafka, against a plain copy loop")]
struct Args {
    /// Bids in the source topic.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Partitions of the source topic (one runner each).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Threads driving the runners (each a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    driver_threads: usize,
    /// Seed of the bid generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Jobs measured end to end: copy, filter-map, windowed, windowed-shuffled (the windowed
    /// count run as two stages through a repartition topic).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "copy,filter-map,windowed"
    )]
    jobs: Vec<String>,
    /// Readers the runners use: weir (weir_broker's KafkaReader) and tuned (the bench's own
    /// copy of it with fetch.queue.backoff.ms set; weir's reader has used the same 10 ms
    /// since this experiment, so `tuned` only matters for trying other values).
    #[arg(long, value_delimiter = ',', default_value = "weir")]
    readers: Vec<String>,
    /// Also time reading the source alone through each reader.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    read_only: bool,
    /// Kills and recoveries per job (0 skips the recovery bench).
    #[arg(long, default_value_t = 4)]
    recovery_trials: usize,
    /// Records per second of the live stream the recovery bench reads.
    #[arg(long, default_value_t = 20_000)]
    live_rate: u64,
    /// The release `weir` binary for the idle-memory bench (build it with
    /// `cargo build --release -p weir-api --bin weir`).
    #[arg(long, env = "WEIR_BIN", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/weir"))]
    weir_bin: PathBuf,
    /// Skip the idle-memory bench.
    #[arg(long)]
    no_idle: bool,
    /// Kills of a worker process in a real cluster (0 skips the cluster recovery bench).
    #[arg(long, default_value_t = 3)]
    cluster_recovery_trials: usize,
    /// How long the idle worker settles before its memory is read.
    #[arg(long, default_value_t = 5_000)]
    settle_ms: u64,
    /// Timed rounds of every job, each followed by a baseline copy loop.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Untimed warm-up rounds before the timed runs, each a plain copy loop and a weir copy
    /// job over the whole source: the broker's JIT compiles the transactional paths too.
    #[arg(long, default_value_t = 2)]
    warm_up_rounds: usize,
}

/// Bounds on the flags, so a run stays within minutes.
const EVENTS_MAX: usize = 10_000_000;
const PARTITIONS_MAX: u32 = 64;
const RECOVERY_TRIALS_MAX: usize = 20;
const WARM_UP_ROUNDS_MAX: usize = 10;
const ROUNDS_MAX: usize = 10;
/// Topics of the cluster recovery bench.
const CLUSTER_SOURCE: &str = "crec-bids";
const CLUSTER_SINK: &str = "crec-out";
const LIVE_RATE_MAX: u64 = 200_000;
/// Job ids of the recovery bench, apart from the end-to-end runs' 1, 2, ...
const RECOVERY_JOB_ID_FIRST: u64 = 1_001;
/// Job ids of the warm-up runs.
const WARM_UP_JOB_ID_FIRST: u64 = 2_001;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Returning (or an interruption) drops the bench's guards, which stop what it started.
    weir_benches::bench_main::run(
        "pipeline-bench",
        weir_benches::bench_main::Runtime::CurrentThread,
        run(args),
    )
}

fn parse_jobs(names: &[String]) -> anyhow::Result<Vec<Job>> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "copy" => Ok(Job::Copy),
            "filter-map" => Ok(Job::FilterMap),
            "windowed" => Ok(Job::WindowedCount),
            "windowed-shuffled" => Ok(Job::WindowedShuffled),
            other => {
                anyhow::bail!("unknown job {other} (copy, filter-map, windowed, windowed-shuffled)")
            }
        })
        .collect()
}

fn sink_of(job: Job) -> String {
    format!("out-{}", job.name().replace([' ', '+', ','], "-"))
}

/// CPU of this process and of the broker, in ms.
fn cpu_now(kafka: &KafkaProcess, ticks: u64) -> (u64, Option<u64>) {
    (
        cpu_ms(std::process::id(), ticks).unwrap_or(0),
        kafka.pid().and_then(|pid| cpu_ms(pid, ticks)),
    )
}

fn spent(before: (u64, Option<u64>), after: (u64, Option<u64>)) -> (u64, Option<u64>) {
    (
        after.0.saturating_sub(before.0),
        before.1.zip(after.1).map(|(b, a)| a.saturating_sub(b)),
    )
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=EVENTS_MAX).contains(&args.events),
        "--events must be 1..={EVENTS_MAX}"
    );
    anyhow::ensure!(
        (1..=PARTITIONS_MAX).contains(&args.partitions),
        "--partitions must be 1..={PARTITIONS_MAX}"
    );
    anyhow::ensure!(
        args.recovery_trials <= RECOVERY_TRIALS_MAX,
        "--recovery-trials must be at most {RECOVERY_TRIALS_MAX}"
    );
    anyhow::ensure!(
        args.cluster_recovery_trials <= RECOVERY_TRIALS_MAX,
        "--cluster-recovery-trials must be at most {RECOVERY_TRIALS_MAX}"
    );
    anyhow::ensure!(
        (1..=LIVE_RATE_MAX).contains(&args.live_rate),
        "--live-rate must be 1..={LIVE_RATE_MAX}"
    );
    anyhow::ensure!(
        (1..=ROUNDS_MAX).contains(&args.rounds),
        "--rounds must be 1..={ROUNDS_MAX}"
    );
    anyhow::ensure!(
        args.warm_up_rounds <= WARM_UP_ROUNDS_MAX,
        "--warm-up-rounds must be at most {WARM_UP_ROUNDS_MAX}"
    );
    let jobs = parse_jobs(&args.jobs)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?
        .to_path_buf();
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    eprintln!("pipeline-bench: starting Kafka");
    let kafka = KafkaProcess::start(&repo, &scratch.path().join("kafka"))?;
    let bootstrap = kafka.bootstrap.clone();
    let broker = KafkaBroker::new(&bootstrap).context("cannot configure the Kafka client")?;
    let p = args.partitions;
    let mut topics: Vec<(String, u32)> = vec![
        ("bids".into(), p),
        ("copy-out-1".into(), p),
        ("copy-out-2".into(), p),
        ("warmup-out".into(), p),
        ("live".into(), 1),
        ("idle-bids".into(), 4),
        (CLUSTER_SOURCE.into(), cluster_recovery::PARTITIONS),
        (CLUSTER_SINK.into(), cluster_recovery::PARTITIONS),
        (format!("{CLUSTER_SINK}-dlq"), 1),
        ("idle-out".into(), 4),
        ("idle-out-dlq".into(), 1),
    ];
    for job in [
        Job::Copy,
        Job::FilterMap,
        Job::WindowedCount,
        Job::WindowedShuffled,
    ] {
        topics.push((sink_of(job), p));
        topics.push((format!("{}-dlq", sink_of(job)), 1));
        topics.push((format!("live-{}", sink_of(job)), 1));
        topics.push((format!("live-{}-dlq", sink_of(job)), 1));
    }
    for (topic, partitions) in &topics {
        broker
            .create_topic(topic, *partitions)
            .await
            .with_context(|| format!("cannot create topic {topic}"))?;
    }

    let (events, seed) = (args.events, args.seed);
    let fill_bootstrap = bootstrap.clone();
    let started = tokio::time::Instant::now();
    let end_offsets = on_thread("fill", move || {
        let bids = Bids::generate(events, seed);
        kafka::fill(&fill_bootstrap, "bids", p, &bids)
    })
    .await?;
    let source = Source {
        topic: "bids".into(),
        end_offsets,
    };
    eprintln!(
        "pipeline-bench: filled {} records into {p} partitions in {:.1} s",
        source.records(),
        started.elapsed().as_secs_f64()
    );

    // The broker's JIT and page cache warm up on untimed runs first, so that the first
    // timed run is not the one that pays for them: a plain copy (the baseline's paths) and
    // a weir copy job (transactions, offsets in transactions, more clients), in rounds.
    // Before weir runs were part of the warm-up, the broker was still compiling during the
    // first weir run (C1/C2 compiler threads: over a fifth of all samples in a profile).
    let ticks = clock_ticks_per_s();
    for round in 0..args.warm_up_rounds {
        let (warm_bootstrap, warm_records) = (bootstrap.clone(), source.records());
        let warm = on_thread("warm-up", move || {
            kafka::copy_loop(
                &warm_bootstrap,
                "bids",
                "warmup-out",
                p,
                warm_records,
                Some(FETCH_QUEUE_BACKOFF_MS),
            )
        })
        .await?;
        eprintln!(
            "pipeline-bench: warm-up {}: plain copy of {} records in {:.2} s",
            round + 1,
            warm.records,
            warm.wall.as_secs_f64()
        );
        let run = Run {
            job: Job::Copy,
            job_id: JobId(WARM_UP_JOB_ID_FIRST + round as u64),
            driver_threads: args.driver_threads,
            checkpoints: scratch.path().join(format!("checkpoints-warm-up-{round}")),
        };
        weir_row(&kafka, &broker, &source, run, " (warm-up)", ticks).await?;
    }
    let tuned = TunedKafkaBroker::new(broker.clone());
    let mut rows = Vec::new();
    rows.push(copy_row(&kafka, &source, "copy-out-1", None, ticks).await?);
    rows.push(
        copy_row(
            &kafka,
            &source,
            "copy-out-1",
            Some(FETCH_QUEUE_BACKOFF_MS),
            ticks,
        )
        .await?,
    );
    if args.read_only {
        rows.push(
            read_only_row(
                &kafka,
                &broker,
                &source,
                "read only: weir KafkaReader",
                ticks,
            )
            .await?,
        );
        let name =
            format!("read only: same reader, fetch.queue.backoff.ms={FETCH_QUEUE_BACKOFF_MS}");
        rows.push(read_only_row(&kafka, &tuned, &source, &name, ticks).await?);
    }
    // Rounds of every job, each bracketed by baseline runs: a job's ratio in a round is
    // against the mean of the baselines just before and just after it, so that the broker's
    // drift (JIT, GC, page cache) and a neighbour's load weigh on both sides alike.
    let mut next_job_id = 1;
    for round in 0..args.rounds {
        for reader in &args.readers {
            for job in &jobs {
                let run = Run {
                    job: *job,
                    job_id: JobId(next_job_id),
                    driver_threads: args.driver_threads,
                    checkpoints: scratch.path().join(format!("checkpoints-{next_job_id}")),
                };
                next_job_id += 1;
                let mut row = match reader.as_str() {
                    "weir" => weir_row(&kafka, &broker, &source, run, "", ticks).await?,
                    "tuned" => {
                        let suffix = format!(
                            ", reader with fetch.queue.backoff.ms={FETCH_QUEUE_BACKOFF_MS}"
                        );
                        weir_row(&kafka, &tuned, &source, run, &suffix, ticks).await?
                    }
                    other => anyhow::bail!("unknown reader {other} (weir, tuned)"),
                };
                row.round = round;
                rows.push(row);
            }
        }
        let sink = if round % 2 == 0 {
            "copy-out-2"
        } else {
            "copy-out-1"
        };
        let mut baseline =
            copy_row(&kafka, &source, sink, Some(FETCH_QUEUE_BACKOFF_MS), ticks).await?;
        baseline.round = round + 1;
        rows.push(baseline);
    }

    let mut recovery_trials = Vec::new();
    if args.recovery_trials > 0 {
        let live = LiveProducer::start(&bootstrap, "live", args.live_rate)?;
        let store = DirCheckpointStore::new(
            scratch
                .path()
                .join("checkpoints-live")
                .display()
                .to_string(),
        )
        .context("cannot open the checkpoint store")?;
        for (i, job) in [Job::FilterMap, Job::WindowedCount].into_iter().enumerate() {
            let sink = format!("live-{}", sink_of(job));
            recovery_trials.extend(
                recovery::trials(
                    &broker,
                    &store,
                    job,
                    JobId(RECOVERY_JOB_ID_FIRST + i as u64),
                    "live",
                    &sink,
                    args.recovery_trials,
                )
                .await?,
            );
        }
        let produced = live.finish()?;
        eprintln!("pipeline-bench: the live stream carried {produced} records");
    }

    let idle_memory = match (args.no_idle, idle::check_binary(&args.weir_bin)) {
        (true, _) => None,
        (false, Err(e)) => {
            eprintln!("pipeline-bench: skipping the idle-memory bench: {e:#}");
            None
        }
        (false, Ok(())) => {
            eprintln!("pipeline-bench: idle worker memory");
            let settle = Duration::from_millis(args.settle_ms);
            Some(idle::measure(&args.weir_bin, &bootstrap, "idle-bids", settle).await?)
        }
    };

    let cluster_trials = match (
        args.cluster_recovery_trials,
        idle::check_binary(&args.weir_bin),
    ) {
        (0, _) => Vec::new(),
        (_, Err(e)) => {
            eprintln!("pipeline-bench: skipping the cluster recovery bench: {e:#}");
            Vec::new()
        }
        (trials, Ok(())) => {
            eprintln!("pipeline-bench: recovery in a cluster");
            cluster_recovery::measure(
                &args.weir_bin,
                &bootstrap,
                CLUSTER_SOURCE,
                CLUSTER_SINK,
                args.live_rate,
                trials,
            )
            .await?
        }
    };

    println!("### End to end\n");
    println!("{}", report::e2e(&rows, p, args.driver_threads));
    if !recovery_trials.is_empty() {
        println!("### Recovery\n");
        println!("{}", report::recovery(&recovery_trials));
    }
    if !cluster_trials.is_empty() {
        println!("### Recovery in a cluster\n");
        println!("{}", report::cluster_recovery(&cluster_trials));
    }
    if let Some(memory) = idle_memory {
        println!("### Idle worker memory\n");
        println!("{}", report::idle(&memory));
    }
    println!("{}", report::machine());
    drop(kafka);
    Ok(())
}

/// One weir job's run.
struct Run {
    job: Job,
    job_id: JobId,
    driver_threads: usize,
    checkpoints: PathBuf,
}

async fn weir_row<B: Broker + Send + 'static>(
    kafka: &KafkaProcess,
    broker: &B,
    source: &Source,
    run: Run,
    suffix: &str,
    ticks: u64,
) -> anyhow::Result<E2eRow> {
    let (broker, source) = (broker.clone(), source.clone());
    let source_records = source.records();
    let job = run.job;
    let before = cpu_now(kafka, ticks);
    let result = on_thread("e2e", move || {
        e2e::run_job(
            &broker,
            &source,
            &sink_of(job),
            job,
            run.job_id,
            run.driver_threads,
            &run.checkpoints,
        )
    })
    .await?;
    let (bench_cpu_ms, broker_cpu_ms) = spent(before, cpu_now(kafka, ticks));
    let name = format!("weir {}{suffix}", job.name());
    eprintln!(
        "pipeline-bench: {name}: {} records in {:.2} s",
        result.counters.records_in,
        result.wall.as_secs_f64()
    );
    // Two stages each count what they read: the job's throughput is of its source.
    let records = if job.repartitions() {
        source_records
    } else {
        result.counters.records_in
    };
    Ok(E2eRow {
        name,
        records,
        wall: result.wall,
        records_out: result.counters.records_out,
        commits: Some(result.counters.checkpoints),
        bench_cpu_ms,
        broker_cpu_ms,
        is_baseline: false,
        round: 0,
    })
}

async fn read_only_row<B: Broker + Send + 'static>(
    kafka: &KafkaProcess,
    broker: &B,
    source: &Source,
    name: &str,
    ticks: u64,
) -> anyhow::Result<E2eRow> {
    let (broker, source) = (broker.clone(), source.clone());
    let before = cpu_now(kafka, ticks);
    let (records, wall) = on_thread("read-only", move || e2e::read_only(&broker, &source)).await?;
    let (bench_cpu_ms, broker_cpu_ms) = spent(before, cpu_now(kafka, ticks));
    eprintln!(
        "pipeline-bench: {name}: {records} records in {:.2} s",
        wall.as_secs_f64()
    );
    Ok(E2eRow {
        name: name.to_string(),
        records,
        wall,
        records_out: 0,
        commits: None,
        bench_cpu_ms,
        broker_cpu_ms,
        is_baseline: false,
        round: 0,
    })
}

async fn copy_row(
    kafka: &KafkaProcess,
    source: &Source,
    sink: &str,
    fetch_queue_backoff_ms: Option<u32>,
    ticks: u64,
) -> anyhow::Result<E2eRow> {
    let (bootstrap, topic, sink_owned) = (
        kafka.bootstrap.clone(),
        source.topic.clone(),
        sink.to_string(),
    );
    let (partitions, records) = (source.end_offsets.len() as u32, source.records());
    let before = cpu_now(kafka, ticks);
    let copy = on_thread("copy-loop", move || {
        kafka::copy_loop(
            &bootstrap,
            &topic,
            &sink_owned,
            partitions,
            records,
            fetch_queue_backoff_ms,
        )
    })
    .await?;
    let (bench_cpu_ms, broker_cpu_ms) = spent(before, cpu_now(kafka, ticks));
    eprintln!(
        "pipeline-bench: copy loop: {} records in {:.2} s",
        copy.records,
        copy.wall.as_secs_f64()
    );
    let name = match fetch_queue_backoff_ms {
        None => "copy loop (rdkafka, librdkafka defaults)".to_string(),
        Some(ms) => format!("**copy loop (rdkafka), fetch.queue.backoff.ms={ms}** (baseline)"),
    };
    Ok(E2eRow {
        name,
        records: copy.records,
        wall: copy.wall,
        records_out: copy.records,
        commits: None,
        bench_cpu_ms,
        broker_cpu_ms,
        is_baseline: fetch_queue_backoff_ms.is_some(),
        round: 0,
    })
}
