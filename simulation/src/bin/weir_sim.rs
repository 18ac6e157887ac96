//! The `weir-sim` binary (also reached as `weir sim`): parses the command line, runs the
//! simulation, and turns any error into one sentence on stderr and a non-zero exit.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use clap::Parser;
use std::process::ExitCode;
use weir_simulation::cli::{run, SimArgs};

/// weir-sim: deterministic simulations of whole weir clusters under faults.
#[derive(Debug, Parser)]
#[command(name = "weir-sim", version, about)]
struct Cli {
    #[command(flatten)]
    args: SimArgs,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let rendered = e.render().to_string();
            eprintln!(
                "weir sim: {} (see weir sim --help)",
                weir_core::cli_error::one_sentence(&rendered)
            );
            return ExitCode::from(2);
        }
    };
    match run(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("weir sim: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
