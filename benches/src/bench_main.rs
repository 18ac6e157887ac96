//! The `main` every bench binary shares: the bench's async body on a runtime of the kind it
//! asks for, ended early by Ctrl-C or SIGTERM so that its guards are dropped (stopping
//! Kafka, killing the processes it started) instead of left running, and any error as one
//! line on stderr with a failing exit code.

use std::future::Future;
use std::process::ExitCode;

/// Which tokio runtime a bench runs on.
#[derive(Debug, Clone, Copy)]
pub enum Runtime {
    /// A worker thread per core (load generators).
    MultiThread,
    /// One thread (a partition driver measured on its own).
    CurrentThread,
}

/// Runs `bench` and turns its outcome into the process's exit code.
pub fn run<F: Future<Output = anyhow::Result<()>>>(
    name: &str,
    runtime: Runtime,
    bench: F,
) -> ExitCode {
    let built = match runtime {
        Runtime::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let rt = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        tokio::select! {
            r = bench => r,
            e = interrupted() => Err(e),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() -> anyhow::Error {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => return anyhow::anyhow!("cannot watch for SIGTERM: {e}"),
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => anyhow::anyhow!("interrupted"),
        _ = term.recv() => anyhow::anyhow!("terminated"),
    }
}
