//! `operators-bench`: the operator engine on one thread, no broker. Nexmark-style bids
//! (generated up front from a seed) go through `Pipeline::process_batch` for a stateless
//! filter+map, a keyed tumbling-window count over 10,000 bidders, and the same with a
//! checkpoint every second of processing; decoding the same bytes with serde_json alone is
//! the baseline. Prints Markdown tables (see docs/BENCHMARKS.md, "Worker").

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use clap::Parser;
use std::time::Duration;
use weir_benches::worker::operators::{self, OperatorsConfig, Variant};
use weir_benches::worker::report;
use weir_worker::exactly_once::POLL_BATCH_RECORDS_MAX;

#[derive(Debug, Parser)]
#[command(about = "Operator throughput per core, against serde_json decoding the same records")]
struct Args {
    /// Bids generated and replayed (each pass later in event time than the last).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Seed of the bid generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Processing time of each trial.
    #[arg(long, default_value_t = 3_000)]
    trial_ms: u64,
    /// Trials per variant, interleaved.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Records per process_batch call (the runner's poll batch).
    #[arg(long, default_value_t = POLL_BATCH_RECORDS_MAX)]
    batch_records: usize,
    /// Checkpoint interval of the checkpointed variant, in ms of processing.
    #[arg(long, default_value_t = 1_000)]
    checkpoint_interval_ms: u64,
    /// Variants to run: value, struct, copy, filter-map, windowed, checkpointed (the
    /// default), and the filter-map job built from libraries: serde-raw, sonic-lazy,
    /// cel-serde.
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let variants = if args.variants.is_empty() {
        Variant::ALL.to_vec()
    } else {
        let mut chosen = Vec::new();
        for name in &args.variants {
            match Variant::every().find(|v| v.flag() == name) {
                Some(v) => chosen.push(v),
                None => {
                    eprintln!("operators-bench: unknown variant {name}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        chosen
    };
    let config = OperatorsConfig {
        events: args.events,
        seed: args.seed,
        trial: Duration::from_millis(args.trial_ms),
        rounds: args.rounds,
        batch_records: args.batch_records,
        checkpoint_interval: Duration::from_millis(args.checkpoint_interval_ms),
        variants,
    };
    match operators::run(&config) {
        Ok(result) => {
            println!("{}", report::operators(&result, config.rounds));
            println!("{}", report::machine());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("operators-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
