//! `weir-sim` (also run as `weir sim`): deterministic simulations of whole clusters
//! (coordinator group, worker fleet, broker, checkpoint store, jobs), one seed or a range,
//! printing `seed=N result=ok|fail trace=<hex>` per seed (docs/CLI.md). It is a binary of
//! its own so that the deployed `weir` holds neither the simulation's paused clock nor a way
//! to plant bugs. A failing seed is shrunk to
//! the fewest scheduled faults that still fail it, and printed with the command that
//! replays it and the trace that led to its first violation.

use crate::{run_seed, shrink, trace_to_first_violation, FaultClasses, SimOptions, SimOutcome};
use anyhow::{bail, Context};
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use weir_coordinator::bugs::PlantedBug;

/// Trace lines shown before a failing seed's first violation.
pub const TRACE_LINES_SHOWN: usize = 40;

/// Seeds one `--seeds` range may hold.
pub const SEEDS_PER_RUN_MAX: u64 = 1_000_000;

/// Threads `--threads` may ask for.
pub const THREADS_MAX: usize = 64;

/// Stack of a thread that runs seeds (a whole cluster's futures nest deeply).
const SEED_THREAD_STACK_BYTES: usize = 16 * 1024 * 1024;

/// Flags of `weir-sim` (`weir sim`).
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Run this one seed.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Run the seeds A..B (B excluded).
    #[arg(long)]
    pub seeds: Option<String>,
    /// Fault classes to switch on, comma-separated (default: all): crash, partition, drop,
    /// duplicate, delay, lost-writes, clock-jump, worker-crash, zombie, broker, slow-disk;
    /// or `none`.
    #[arg(long, value_delimiter = ',')]
    pub faults: Option<Vec<String>>,
    /// Coordinators in the simulated group (3 or 5).
    #[arg(long, default_value_t = 3)]
    pub coordinators: usize,
    /// Worker processes (0 to 5; 0 simulates the coordinator group alone).
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
    /// Jobs the run submits (1 to 4), drawn from the job family.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Simulated milliseconds of the fault phase.
    #[arg(long, default_value_t = 20_000)]
    pub fault_phase_ms: u64,
    /// Leave out these faults of the seed's schedule (comma-separated indices, as a shrunk
    /// failure's replay command gives them).
    #[arg(long, value_delimiter = ',')]
    pub skip_faults: Option<Vec<usize>>,
    /// Do not shrink failing seeds.
    #[arg(long)]
    pub no_shrink: bool,
    /// Print the trace of every failing seed.
    #[arg(long)]
    pub trace: bool,
    /// Plant this bug in the real code (see --list-bugs); the run should then fail.
    #[arg(long)]
    pub plant_bug: Option<String>,
    /// Print the names of the bugs --plant-bug can switch on, one per line.
    #[arg(long)]
    pub list_bugs: bool,
    /// Seeds run at once, one per thread (default: one per core). Each seed replays
    /// exactly whatever thread runs it; results print in seed order.
    #[arg(long)]
    pub threads: Option<usize>,
}

fn parse_faults(list: &[String]) -> anyhow::Result<FaultClasses> {
    let mut f = FaultClasses::none();
    for name in list {
        match name.trim() {
            "none" => {}
            "all" => f = FaultClasses::all(),
            other => {
                if !f.enable(other) {
                    bail!(
                        "unknown fault class {other:?}; the classes are {}",
                        FaultClasses::NAMES.join(", ")
                    );
                }
            }
        }
    }
    Ok(f)
}

fn parse_seeds(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s
        .split_once("..")
        .with_context(|| format!("--seeds {s:?} is not A..B"))?;
    let a: u64 = a
        .parse()
        .with_context(|| format!("--seeds start {a:?} is not a number"))?;
    let b: u64 = b
        .parse()
        .with_context(|| format!("--seeds end {b:?} is not a number"))?;
    if a >= b || b - a > SEEDS_PER_RUN_MAX {
        bail!("--seeds {s:?} must be A..B with A < B and at most {SEEDS_PER_RUN_MAX} seeds");
    }
    Ok((a, b))
}

/// Runs the simulation; fails unless every seed held every invariant.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.list_bugs {
        for bug in PlantedBug::ALL {
            println!("{}", bug.name());
        }
        return Ok(());
    }
    let sweep = Sweep::from_args(&args)?;
    sweep.run(&args)
}

/// The seeds to run and how, from the flags once they are checked.
struct Sweep {
    options: SimOptions,
    threads: usize,
    /// The seeds `first..end`.
    first: u64,
    end: u64,
}

impl Sweep {
    /// Checks the flags; an error names the flag and its legal values.
    fn from_args(args: &SimArgs) -> anyhow::Result<Self> {
        if args.coordinators != 3 && args.coordinators != 5 {
            bail!("--coordinators must be 3 or 5");
        }
        if args.workers > 5 {
            bail!("--workers must be 0 to 5");
        }
        if !(1..=4).contains(&args.jobs) {
            bail!("--jobs must be 1 to 4");
        }
        if !(1_000..=600_000).contains(&args.fault_phase_ms) {
            bail!("--fault-phase-ms must be 1000 to 600000");
        }
        let threads = match args.threads {
            Some(n) if !(1..=THREADS_MAX).contains(&n) => {
                bail!("--threads must be 1 to {THREADS_MAX}")
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let mut options = SimOptions {
            coordinators: args.coordinators,
            workers: args.workers,
            jobs: args.jobs,
            fault_phase_ms: args.fault_phase_ms,
            skip_faults: args
                .skip_faults
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect::<BTreeSet<usize>>(),
            ..SimOptions::default()
        };
        if let Some(name) = &args.plant_bug {
            let bug = PlantedBug::from_name(name).with_context(|| {
                format!("unknown bug {name:?}; weir sim --list-bugs names them")
            })?;
            options.plant_bug = Some(bug);
        }
        if let Some(list) = &args.faults {
            options.faults = parse_faults(list)?;
        }
        let (first, end) = match (&args.seed, &args.seeds) {
            (Some(s), _) => (*s, *s + 1),
            (None, Some(range)) => parse_seeds(range)?,
            (None, None) => bail!("give --seed N or --seeds A..B"),
        };
        Ok(Sweep {
            options,
            threads,
            first,
            end,
        })
    }

    /// Runs every seed, one line each on stdout, progress on stderr, and a summary; an
    /// error if any seed failed.
    fn run(&self, args: &SimArgs) -> anyhow::Result<()> {
        let (options, threads, first, end) = (&self.options, self.threads, self.first, self.end);
        #[allow(clippy::disallowed_methods)] // wall time of the whole run, for the summary only
        let started = std::time::Instant::now();
        let mut failed = Vec::new();
        let total = end - first;
        let mut last_progress_ms = 0u128;
        let mut done: u64 = 0;
        run_seeds(first..end, options, threads, |seed, outcome| {
            done += 1;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(panic) => {
                    // The run itself broke: a failure, with what it said.
                    println!("seed={seed} result=fail trace={}", "0".repeat(64));
                    eprintln!("  the run panicked: {panic}");
                    eprintln!("  replay: weir sim --seed {seed}");
                    failed.push(seed);
                    return;
                }
            };
            println!(
                "seed={seed} result={} trace={}",
                if outcome.ok { "ok" } else { "fail" },
                outcome.trace_hash
            );
            if !outcome.ok {
                report_failure(args, options, seed, &outcome);
                failed.push(seed);
            }
            // Progress on stderr (seeds/s, failures so far) about once a second; stdout keeps
            // exactly one line per seed for scripts.
            let elapsed_ms = started.elapsed().as_millis();
            if total > 1 && elapsed_ms >= last_progress_ms + 1_000 {
                last_progress_ms = elapsed_ms;
                let rate = done as f64 / (elapsed_ms as f64 / 1_000.0).max(1e-9);
                eprintln!(
                    "progress: {done}/{total} seeds, {rate:.1} seeds/s, {} failed",
                    failed.len()
                );
            }
        })?;
        if end - first > 1 {
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{} seeds, {} failed, {:.1} s ({:.1} seeds/s){}",
                end - first,
                failed.len(),
                secs,
                (end - first) as f64 / secs.max(1e-9),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!("; failing seeds: {failed:?}")
                }
            );
        }
        if !failed.is_empty() {
            bail!(
                "{} of {} seeds violated an invariant",
                failed.len(),
                end - first
            );
        }
        Ok(())
    }
}

/// Runs `seeds` on `threads` threads and hands each outcome to `each`, in seed order, on
/// the calling thread. Passing outcomes travel without their trace, so the results waiting
/// for an earlier seed stay small.
fn run_seeds(
    seeds: std::ops::Range<u64>,
    options: &SimOptions,
    threads: usize,
    mut each: impl FnMut(u64, Result<SimOutcome, String>),
) -> anyhow::Result<()> {
    let next = AtomicU64::new(seeds.start);
    let threads = threads.min((seeds.end - seeds.start).max(1) as usize);
    let (tx, rx) = mpsc::sync_channel::<(u64, Result<SimOutcome, String>)>(2 * threads);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for i in 0..threads {
            let (tx, next) = (tx.clone(), &next);
            std::thread::Builder::new()
                .name(format!("sim-{i}"))
                .stack_size(SEED_THREAD_STACK_BYTES)
                .spawn_scoped(scope, move || loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    // A panicking seed is reported as one failure, in its place.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_seed(seed, options)
                    }))
                    .map(|mut outcome| {
                        if outcome.ok {
                            outcome.trace = Vec::new();
                        }
                        outcome
                    })
                    .map_err(|panic| {
                        panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "a panic without a message".into())
                    });
                    if tx.send((seed, outcome)).is_err() {
                        break;
                    }
                })
                .context("cannot start a simulation thread")?;
        }
        drop(tx);
        let mut waiting: BTreeMap<u64, Result<SimOutcome, String>> = BTreeMap::new();
        let mut expected = seeds.start;
        for (seed, outcome) in rx {
            waiting.insert(seed, outcome);
            while let Some(outcome) = waiting.remove(&expected) {
                each(expected, outcome);
                expected += 1;
            }
        }
        debug_assert!(waiting.is_empty());
        Ok(())
    })
}

/// Prints a failing seed's violations, replay command, shrunk schedule and trace.
fn report_failure(args: &SimArgs, options: &SimOptions, seed: u64, outcome: &SimOutcome) {
    for v in &outcome.violations {
        eprintln!("  violation: {v}");
    }
    eprintln!("  replay: {}", outcome.reproduce());
    let mut shown = outcome.clone();
    if !args.no_shrink {
        if let Some(shrunk) = shrink(seed, options, outcome) {
            eprintln!(
                "  shrunk to {} of {} scheduled faults in {} runs; replay: {}",
                shrunk.kept(),
                shrunk.scheduled,
                shrunk.runs,
                shrunk.outcome.reproduce()
            );
            for v in &shrunk.outcome.violations {
                eprintln!("    violation: {v}");
            }
            shown = shrunk.outcome;
        }
    }
    if args.trace {
        for line in &shown.trace {
            eprintln!("  {line}");
        }
    } else {
        eprintln!("  trace up to the first violation:");
        for line in trace_to_first_violation(&shown, TRACE_LINES_SHOWN) {
            eprintln!("    {line}");
        }
    }
}
