//! The `weir` binary: parses the command line, runs the command, and turns any error into
//! one sentence on stderr and a non-zero exit.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use clap::Parser;
use std::process::ExitCode;
use weir_api::cli::{run, Cli, Command};

fn main() -> ExitCode {
    // Before any thread: the allocator keeps less of a long-running process's peaks.
    weir_api::malloc::limit_retained_memory();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            let rendered = e.render().to_string();
            eprintln!(
                "weir: {} (see weir --help)",
                weir_core::cli_error::one_sentence(&rendered)
            );
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Command::Coordinator(_) | Command::Worker(_)) {
        if let Err(e) = weir_api::malloc::start_trimming() {
            eprintln!("weir: cannot start the memory trimming thread: {e}");
            return ExitCode::FAILURE;
        }
    }
    let default_filter = match cli.command {
        Command::Coordinator(_) | Command::Worker(_) => "info,openraft=warn,rdkafka=warn",
        _ => "error,openraft=off,rdkafka=off",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: piped or redirected logs stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("weir: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
