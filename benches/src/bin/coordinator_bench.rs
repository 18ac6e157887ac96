//! `coordinator-bench`: weir's coordinator group against etcd, in one run on one machine.
//!
//! For each system: start 3 members on loopback with fresh data directories, measure
//! acknowledged writes to the leader at each client count (warm-up, then a measured window),
//! then measure leader failover (kill -9 the leader, time to the first acknowledged write),
//! restarting the killed member between trials. Every process started dies with the bench,
//! on success, error, panic or Ctrl-C.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use anyhow::{bail, Context};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_benches::cluster::Cluster;
use weir_benches::disk::fsync_probe;
use weir_benches::etcd::EtcdTimers;
use weir_benches::process::{clock_ticks_per_s, cpu_ms};
use weir_benches::report::{self, Level, Spent, SystemReport};
use weir_benches::weir::WeirLaunch;
use weir_benches::{etcd, failover, load, weir};

/// Time the etcd install script may take (apt-get update and install).
const ETCD_INSTALL_TIMEOUT_MS: u64 = 600_000;

#[derive(Debug, Parser)]
#[command(about = "Write throughput, latency and failover of weir's coordinators against etcd")]
struct Args {
    /// The release `weir` binary (build it with `cargo build --release -p weir-api --bin weir`).
    #[arg(long, env = "WEIR_BIN", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/weir"))]
    weir_bin: PathBuf,
    /// An extra argument for every `weir coordinator`, e.g.
    /// `--weir-arg=--election-timeout-ms=300..400`; repeat for several.
    #[arg(long = "weir-arg", allow_hyphen_values = true)]
    weir_args: Vec<String>,
    /// A candidate build measured as system `weir-b` beside `weir` (A/B in one run); add
    /// `weir-b` to --systems.
    #[arg(long)]
    weir_b_bin: Option<PathBuf>,
    /// An extra argument for every `weir-b` coordinator; repeat for several.
    #[arg(long = "weir-b-arg", allow_hyphen_values = true)]
    weir_b_args: Vec<String>,
    /// KEY=VALUE set in every `weir-b` coordinator's environment; repeat for several.
    #[arg(long = "weir-b-env")]
    weir_b_env: Vec<String>,
    /// The `etcd` binary; installed with benches/scripts/etcd.sh when missing.
    #[arg(long, env = "ETCD_BIN", default_value = "etcd")]
    etcd_bin: PathBuf,
    /// Systems to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "weir,etcd")]
    systems: Vec<String>,
    /// Concurrent clients of each load level.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Warm-up of each load level, not counted.
    #[arg(long, default_value_t = 1_000)]
    warmup_ms: u64,
    /// Measured window of each load level.
    #[arg(long, default_value_t = 5_000)]
    measure_ms: u64,
    /// Leader failovers measured per system.
    #[arg(long, default_value_t = 10)]
    failover_trials: usize,
    /// etcd's --heartbeat-interval; etcd's default (100) when not given.
    #[arg(long)]
    etcd_heartbeat_ms: Option<u64>,
    /// etcd's --election-timeout; etcd's default (1000) when not given.
    #[arg(long)]
    etcd_election_ms: Option<u64>,
    /// Fail instead of installing etcd when it is missing.
    #[arg(long)]
    no_install: bool,
    /// Keep the data directories and logs of the members, and print where they are.
    #[arg(long)]
    keep_data: bool,
}

/// Bounds on the flags, so a run stays within minutes.
const CLIENTS_MAX: usize = 256;
const MEASURE_MS_MAX: u64 = 60_000;
const FAILOVER_TRIALS_MAX: usize = 100;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Returning (or an interruption) drops the bench's guards, which stop what it started.
    weir_benches::bench_main::run(
        "coordinator-bench",
        weir_benches::bench_main::Runtime::MultiThread,
        run(args),
    )
}

async fn run(args: Args) -> anyhow::Result<()> {
    validate(&args)?;
    let ticks = clock_ticks_per_s();
    // Every system runs for the whole bench, and the load levels alternate between them, so
    // that whatever else the shared machine does weighs on both alike.
    let mut clusters = Vec::new();
    for name in &args.systems {
        clusters.push(match name.as_str() {
            "weir" => start_weir(&WeirLaunch {
                name: "weir",
                bin: args.weir_bin.clone(),
                extra_args: args.weir_args.clone(),
                env: Vec::new(),
            })?,
            "weir-b" => start_weir(&weir_b(&args)?)?,
            "etcd" => start_etcd(&args).await?,
            other => bail!("unknown system {other:?}; the systems are weir, weir-b and etcd"),
        });
    }
    let result = measure_all(&mut clusters, &args, ticks).await;
    if args.keep_data {
        for cluster in &mut clusters {
            if let Some(dir) = cluster.keep_data() {
                eprintln!(
                    "{}: data and logs kept in {}",
                    cluster.system().name(),
                    dir.display()
                );
            }
        }
    }
    let reports = result?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{}", report::render(&reports, cores));
    Ok(())
}

fn validate(args: &Args) -> anyhow::Result<()> {
    if args.clients.is_empty() || args.clients.iter().any(|c| !(1..=CLIENTS_MAX).contains(c)) {
        bail!("--clients must list counts between 1 and {CLIENTS_MAX}");
    }
    if !(1..=MEASURE_MS_MAX).contains(&args.measure_ms) || args.warmup_ms > MEASURE_MS_MAX {
        bail!("--measure-ms and --warmup-ms must be at most {MEASURE_MS_MAX}");
    }
    if args.failover_trials > FAILOVER_TRIALS_MAX {
        bail!("--failover-trials must be at most {FAILOVER_TRIALS_MAX}");
    }
    Ok(())
}

fn weir_b(args: &Args) -> anyhow::Result<WeirLaunch> {
    let Some(bin) = &args.weir_b_bin else {
        bail!("--systems names weir-b but --weir-b-bin is not given");
    };
    let env = args
        .weir_b_env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(anyhow::anyhow!("--weir-b-env {kv:?} is not KEY=VALUE")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(WeirLaunch {
        name: "weir-b",
        bin: bin.clone(),
        extra_args: args.weir_b_args.clone(),
        env,
    })
}

fn start_weir(launch: &WeirLaunch) -> anyhow::Result<Cluster> {
    if !launch.bin.is_file() {
        bail!(
            "no weir binary at {}; build it with `cargo build --release -p weir-api --bin weir` or pass --weir-bin",
            launch.bin.display()
        );
    }
    eprintln!(
        "starting 3 {} coordinators ({} {})",
        launch.name,
        launch
            .bin
            .canonicalize()
            .unwrap_or_else(|_| launch.bin.clone())
            .display(),
        launch.extra_args.join(" ")
    );
    weir::start(launch, data_dir(launch.name)?)
}

async fn start_etcd(args: &Args) -> anyhow::Result<Cluster> {
    ensure_etcd(&args.etcd_bin, args.no_install).await?;
    eprintln!("starting 3 etcd members ({})", args.etcd_bin.display());
    let timers = EtcdTimers {
        heartbeat_ms: args.etcd_heartbeat_ms,
        election_ms: args.etcd_election_ms,
    };
    etcd::start(&args.etcd_bin, data_dir("etcd")?, timers)
}

fn data_dir(system: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("weir-bench-{system}-"))
        .tempdir()
        .context("cannot create a temporary data directory")
}

/// Runs benches/scripts/etcd.sh when `etcd_bin` does not run.
async fn ensure_etcd(etcd_bin: &Path, no_install: bool) -> anyhow::Result<()> {
    let runs = |bin: &Path| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs(etcd_bin) {
        return Ok(());
    }
    if no_install {
        bail!(
            "{} does not run and --no-install was given",
            etcd_bin.display()
        );
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/etcd.sh");
    eprintln!("etcd is missing; installing it with {script}");
    let mut child = tokio::process::Command::new("bash")
        .arg(script)
        .kill_on_drop(true)
        .spawn()
        .context("cannot run the etcd install script")?;
    let status = tokio::time::timeout(Duration::from_millis(ETCD_INSTALL_TIMEOUT_MS), child.wait())
        .await
        .context("the etcd install script took too long")??;
    if !status.success() || !runs(etcd_bin) {
        bail!("could not install etcd; install Debian's etcd-server or pass --etcd-bin");
    }
    Ok(())
}

async fn measure_all(
    clusters: &mut [Cluster],
    args: &Args,
    ticks: u64,
) -> anyhow::Result<Vec<SystemReport>> {
    let warmup = Duration::from_millis(args.warmup_ms);
    let measure = Duration::from_millis(args.measure_ms);
    let mut reports: Vec<SystemReport> = clusters
        .iter()
        .map(|c| SystemReport {
            name: c.system().name(),
            levels: Vec::new(),
            failover: Vec::new(),
        })
        .collect();
    for &clients in &args.clients {
        for (cluster, report) in clusters.iter_mut().zip(&mut reports) {
            let leader = cluster.wait_ready(&format!("r{clients}")).await?;
            let level = measure_level(cluster, leader, clients, warmup, measure, ticks).await?;
            eprintln!(
                "  {} {clients:>3} clients: {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                report.name,
                level.load.writes_per_s(),
                level.load.latency_ms(0.50),
                level.load.latency_ms(0.99),
                level.load.errors
            );
            if let Some(e) = &level.load.first_error {
                eprintln!("    first error: {e}");
            }
            report.levels.push(level);
        }
    }
    for (cluster, report) in clusters.iter_mut().zip(&mut reports) {
        report.failover = failover::measure(cluster, args.failover_trials, "f").await?;
    }
    Ok(reports)
}

/// One load level, with what the servers and the bench spent in its measured window.
async fn measure_level(
    cluster: &Cluster,
    leader: usize,
    clients: usize,
    warmup: Duration,
    measure: Duration,
    ticks: u64,
) -> anyhow::Result<Level> {
    let system = cluster.system();
    let addr = cluster.addr(leader).to_string();
    let prefix = format!("c{clients}");
    let disk_fsync = cluster.data_dir().and_then(fsync_probe);
    let load = load::run(system.clone(), &addr, clients, warmup, measure, &prefix);
    let sample = async {
        tokio::time::sleep(warmup).await;
        let before = sample(cluster, leader, ticks).await;
        let started = tokio::time::Instant::now();
        tokio::time::sleep(measure).await;
        let after = sample(cluster, leader, ticks).await;
        Spent {
            wall: started.elapsed(),
            server_cpu_ms: after.server_cpu_ms.saturating_sub(before.server_cpu_ms),
            bench_cpu_ms: after.bench_cpu_ms.saturating_sub(before.bench_cpu_ms),
            leader_log_fsyncs: after
                .leader_log_fsyncs
                .zip(before.leader_log_fsyncs)
                .map(|(a, b)| a - b),
            terms_begun: after
                .terms_begun
                .zip(before.terms_begun)
                .map(|(a, b)| a.saturating_sub(b)),
            disk_fsync,
        }
    };
    let (load, spent) = tokio::join!(load, sample);
    Ok(Level { load: load?, spent })
}

async fn sample(cluster: &Cluster, leader: usize, ticks: u64) -> Spent {
    let metric = cluster.system().log_fsyncs_metric();
    Spent {
        wall: Duration::ZERO,
        server_cpu_ms: cluster.cpu_ms(ticks),
        bench_cpu_ms: cpu_ms(std::process::id(), ticks).unwrap_or(0),
        leader_log_fsyncs: cluster.metric(leader, metric).await,
        // The term itself; the window's difference is the number of elections in it.
        terms_begun: cluster.status(leader).await.map(|s| s.term),
        disk_fsync: None,
    }
}
