//! lifecycle-bench: savepoint duration, stop-with-savepoint duration, upgrade downtime and
//! restart-from-savepoint downtime of a windowed velocity job holding K keys of open window
//! state, on weir and on Flink 2.x (a local MiniCluster), one after the other on the same
//! Kafka (started here on loopback), the same events and the same checkpoint interval.
//! Prints a Markdown table (docs/BENCHMARKS.md, "Life cycle").

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use anyhow::Context;
use clap::Parser;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use weir_benches::lifecycle::drive::{self, Target};
use weir_benches::lifecycle::flink_side::{self, FlinkSide};
use weir_benches::lifecycle::load::{self, Ticker};
use weir_benches::lifecycle::sink::{self, SinkWatcher};
use weir_benches::lifecycle::weir_side::WeirSide;
use weir_benches::lifecycle::{stats, Figures, System, Topics, PARTITIONS};
use weir_benches::worker::kafka::KafkaProcess;
use weir_broker::kafka::KafkaBroker;
use weir_broker::Broker;

#[derive(Debug, Parser)]
#[command(about = "savepoints, upgrades and restarts with K keys of window state: weir and Flink")]
struct Args {
    /// Key counts, each with its own fresh cluster and topics.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    keys: Vec<u64>,
    /// Repetitions of each operation.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// A short run: 2,000 keys, one repetition.
    #[arg(long)]
    quick: bool,
    /// Systems to measure: weir, flink.
    #[arg(long, value_delimiter = ',', default_value = "weir,flink")]
    systems: Vec<String>,
    /// Members of weir's coordinator group: 1 or 3.
    #[arg(long, default_value_t = 1)]
    coordinators: usize,
    /// `RUST_LOG` of weir's workers (`info` logs each partition's stop, fence, start and
    /// restore, with timestamps: where an upgrade's time goes).
    #[arg(long, default_value = "warn")]
    worker_log: String,
    /// Keep weir's worker logs and data directories, and print where.
    #[arg(long)]
    keep_weir_logs: bool,
    /// Flink's state backend: hashmap or rocksdb.
    #[arg(long, default_value = "hashmap")]
    flink_backend: String,
    /// The release `weir` binary (`cargo build --release -p weir-api --bin weir`).
    #[arg(long, env = "WEIR_BIN", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/weir"))]
    weir_bin: PathBuf,
}

/// Bounds on the flags, so a run stays within the machine.
const KEYS_MAX: u64 = 2_000_000;
const REPS_MAX: usize = 10;
const QUICK_KEYS: u64 = 2_000;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    weir_benches::bench_main::run(
        "lifecycle-bench",
        weir_benches::bench_main::Runtime::MultiThread,
        run(args),
    )
}

fn parse_systems(names: &[String]) -> anyhow::Result<Vec<System>> {
    names
        .iter()
        .map(|n| match n.as_str() {
            "weir" => Ok(System::Weir),
            "flink" => Ok(System::Flink),
            other => anyhow::bail!("unknown system {other:?} (weir, flink)"),
        })
        .collect()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        args.keys = vec![QUICK_KEYS];
        args.reps = 1;
    }
    anyhow::ensure!(
        args.keys.iter().all(|k| (1..=KEYS_MAX).contains(k)),
        "--keys must each be 1..={KEYS_MAX}"
    );
    anyhow::ensure!(
        (1..=REPS_MAX).contains(&args.reps),
        "--reps must be 1..={REPS_MAX}"
    );
    anyhow::ensure!(
        matches!(args.coordinators, 1 | 3),
        "--coordinators must be 1 or 3"
    );
    anyhow::ensure!(
        matches!(args.flink_backend.as_str(), "hashmap" | "rocksdb"),
        "--flink-backend must be hashmap or rocksdb"
    );
    let systems = parse_systems(&args.systems)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?
        .to_path_buf();
    let classpath = if systems.contains(&System::Flink) {
        eprintln!("lifecycle-bench: building the Flink job");
        Some(flink_side::build(&repo).await?)
    } else {
        None
    };
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    eprintln!(
        "lifecycle-bench: starting Kafka; load average {}",
        load_average()
    );
    let kafka = KafkaProcess::start(&repo, &scratch.path().join("kafka"))?;
    let broker = KafkaBroker::new(&kafka.bootstrap).context("cannot configure the Kafka client")?;
    let mut results: BTreeMap<(u64, &'static str), Figures> = BTreeMap::new();
    for &keys in &args.keys {
        for &system in &systems {
            eprintln!(
                "lifecycle-bench: {} with {keys} keys; load average {}",
                system.name(),
                load_average()
            );
            let topics = Topics::new(system, keys);
            for (topic, n) in [
                (&topics.source, PARTITIONS),
                (&topics.sink, PARTITIONS),
                (&topics.dead_letters, 1),
            ] {
                broker
                    .create_topic(topic, n)
                    .await
                    .with_context(|| format!("cannot create topic {topic}"))?;
            }
            let watcher = SinkWatcher::start(&kafka.bootstrap, &topics.sink, PARTITIONS)?;
            let figures = match system {
                System::Weir => {
                    let mut side = WeirSide::start(
                        &args.weir_bin,
                        &kafka.bootstrap,
                        args.coordinators,
                        &args.worker_log,
                        &topics,
                    )
                    .await?;
                    let figures = one_run(
                        &mut side,
                        &kafka.bootstrap,
                        &topics,
                        keys,
                        &watcher,
                        args.reps,
                    )
                    .await;
                    if let Err(e) = side.check_workers() {
                        eprintln!("lifecycle-bench: {e:#}");
                    }
                    if let Some(kept) = side.stop(args.keep_weir_logs) {
                        eprintln!(
                            "lifecycle-bench: weir's worker logs kept in {}",
                            kept.display()
                        );
                    }
                    figures?
                }
                System::Flink => {
                    let classpath = classpath.as_deref().context("the Flink classpath")?;
                    let mut side =
                        FlinkSide::start(classpath, &kafka.bootstrap, &topics, &args.flink_backend)
                            .await?;
                    let figures = one_run(
                        &mut side,
                        &kafka.bootstrap,
                        &topics,
                        keys,
                        &watcher,
                        args.reps,
                    )
                    .await;
                    if figures.is_err() {
                        eprintln!("lifecycle-bench: Flink's log: {}", side.log().display());
                    }
                    side.stop().await;
                    figures?
                }
            };
            results.insert((keys, system.name()), figures);
        }
    }
    drop(kafka);
    println!("{}", stats::table(&results, &args.keys));
    println!("{}", stats::phases(&results));
    for ((keys, system), figures) in &results {
        for note in &figures.notes {
            println!("- {system}, {keys} keys: {note}");
        }
    }
    println!("- load average at the end: {}", load_average());
    Ok(())
}

/// Fills the keys, ticks, waits until the job holds every key, and measures.
async fn one_run<T: Target>(
    side: &mut T,
    bootstrap: &str,
    topics: &Topics,
    keys: u64,
    watcher: &SinkWatcher,
    reps: usize,
) -> anyhow::Result<Figures> {
    let started = Instant::now();
    let (b, t) = (bootstrap.to_string(), topics.source.clone());
    let bytes = tokio::task::spawn_blocking(move || load::fill(&b, &t, keys)).await??;
    eprintln!(
        "lifecycle-bench:   filled {keys} keys ({bytes} bytes of events) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ticker = Ticker::start(bootstrap, &topics.source, keys)?;
    let ticking = Instant::now();
    drive::wait_output(watcher, "the job to hold every key", None, ticking).await?;
    let caught_up_s = ticking.elapsed().as_secs_f64();
    eprintln!("lifecycle-bench:   every key held {caught_up_s:.1} s after the fill");
    let mut figures = drive::measure(side, watcher, reps, 1).await?;
    ticker.finish()?;
    let (duplicates, missing) = sink::duplicates_and_missing(&watcher.seen());
    figures.duplicates = duplicates;
    figures.missing = missing;
    figures.notes.push(format!(
        "{bytes} bytes of events filled; caught up with the keys {caught_up_s:.1} s after the fill"
    ));
    Ok(figures)
}
