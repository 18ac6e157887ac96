//! `sim-bench`: how fast the deterministic simulation runs. The standard scenario (3
//! coordinators, 3 workers, 2 jobs, every fault class, 60 simulated seconds of faults) is
//! timed for a few seeds, beside the same run with the coordinator group alone and with no
//! faults, so that the table shows where the time goes. The figure is simulated seconds per
//! wall second: real time itself is the baseline (1x). Prints a Markdown table (see
//! docs/BENCHMARKS.md, "Simulation").

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use clap::Parser;
use std::time::Duration;
use weir_simulation::{run_seed, FaultClasses, SimOptions};

/// Goal of issue "Deterministic simulation": simulated seconds per wall second.
const GOAL_SPEEDUP_MIN: f64 = 1_000.0;

#[derive(Debug, Parser)]
#[command(about = "Simulated seconds per wall second of the deterministic simulation")]
struct Args {
    /// First seed; each variant runs the same seeds.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Seeds per variant.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    seeds: u64,
    /// Simulated milliseconds of the fault phase.
    #[arg(long, default_value_t = 60_000)]
    fault_phase_ms: u64,
}

/// One configuration timed over the seeds.
struct Variant {
    name: &'static str,
    options: SimOptions,
}

/// Simulated and wall time of one variant, summed over its seeds.
struct Timing {
    simulated: Duration,
    wall: Duration,
    failed: u64,
}

fn time_variant(variant: &Variant, seeds: std::ops::Range<u64>) -> Timing {
    let mut timing = Timing {
        simulated: Duration::ZERO,
        wall: Duration::ZERO,
        failed: 0,
    };
    for seed in seeds {
        #[allow(clippy::disallowed_methods)] // wall time is what this bench measures
        let started = std::time::Instant::now();
        let outcome = run_seed(seed, &variant.options);
        timing.wall += started.elapsed();
        timing.simulated += Duration::from_millis(outcome.simulated_ms);
        if !outcome.ok {
            timing.failed += 1;
            eprintln!(
                "{}: seed {seed} failed: {:?}",
                variant.name, outcome.violations
            );
        }
    }
    timing
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let standard = SimOptions {
        fault_phase_ms: args.fault_phase_ms,
        ..SimOptions::default()
    };
    let variants = [
        Variant {
            name: "standard: 3 coordinators, 3 workers, 2 jobs, all faults",
            options: standard.clone(),
        },
        Variant {
            name: "the same without faults",
            options: SimOptions {
                faults: FaultClasses::none(),
                ..standard.clone()
            },
        },
        Variant {
            name: "coordinator group alone (3), all faults",
            options: SimOptions {
                workers: 0,
                ..standard.clone()
            },
        },
    ];
    let seeds = args.first_seed..args.first_seed + args.seeds;
    println!(
        "| scenario | seeds | simulated s | wall s | simulated s per wall s | goal ({GOAL_SPEEDUP_MIN:.0}x) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut failed = 0;
    for (i, variant) in variants.iter().enumerate() {
        let timing = time_variant(variant, seeds.clone());
        failed += timing.failed;
        let speedup = timing.simulated.as_secs_f64() / timing.wall.as_secs_f64().max(1e-9);
        let goal = if i == 0 {
            if speedup >= GOAL_SPEEDUP_MIN {
                "met"
            } else {
                "**not met**"
            }
        } else {
            "—"
        };
        println!(
            "| {} | {} | {:.1} | {:.2} | {:.0}x | {goal} |",
            variant.name,
            args.seeds,
            timing.simulated.as_secs_f64(),
            timing.wall.as_secs_f64(),
            speedup
        );
    }
    println!();
    println!("{}", weir_benches::worker::report::machine());
    if failed > 0 {
        eprintln!("{failed} seeds failed: the figures above are of failing runs");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
