//! The `weir` command line (docs/CLI.md): argument definitions and the
//! dispatch to one module per command group.

mod cluster;
pub mod coordinator;
mod job;
mod job_state;
pub mod reference;
pub mod sim;
mod tenant;
pub mod worker;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// weir: exactly-once stream processing on a Raft-replicated control plane.
#[derive(Debug, Parser)]
#[command(name = "weir", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `weir`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one member of the coordinator group.
    Coordinator(coordinator::CoordinatorArgs),
    /// Run one worker of the fleet.
    Worker(worker::WorkerArgs),
    /// Run a whole weir cluster in this process, with a sample job, and check it.
    Local(crate::local::LocalArgs),
    /// Submit, list, inspect, pause, resume, stop, start and cancel jobs.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Look at and change the coordinator group.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create tenants and issue their tokens (administrator).
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Run deterministic simulations of whole clusters under faults (the weir-sim binary).
    Sim(sim::SimPassthrough),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Coordinator(args) => coordinator::run(args).await,
        Command::Local(args) => crate::local::run(args).await,
        Command::Job(cmd) => job::run(cmd).await,
        Command::Cluster(cmd) => cluster::run(cmd).await,
        Command::Tenant(cmd) => tenant::run(cmd).await,
        // An actix system runs on a thread of its own.
        Command::Worker(args) => std::thread::spawn(move || worker::run(args))
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the worker panicked"))),
        Command::Sim(args) => match sim::run(args)? {
            0 => Ok(()),
            // weir-sim said why on stderr; keep its exit code.
            code => std::process::exit(code),
        },
    }
}

/// How a client command finds and authenticates to the cluster.
pub mod weir_api_client_args {
    use super::*;

    /// `--coordinator` and `--token`, shared by every client command.
    #[derive(Debug, Clone, Args)]
    pub struct ClientArgs {
        /// A coordinator's host:port; several may be given, comma-separated.
        #[arg(
            long,
            env = "WEIR_COORDINATOR",
            value_delimiter = ',',
            default_value = "127.0.0.1:7001",
            global = true
        )]
        pub coordinator: Vec<String>,
        /// The bearer token: the administrator token or a tenant's.
        #[arg(long, env = "WEIR_TOKEN", global = true, hide_env_values = true)]
        pub token: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        pub json: bool,
    }

    impl ClientArgs {
        /// The client these arguments describe.
        pub fn client(&self) -> crate::client::Client {
            crate::client::Client::new(self.coordinator.clone(), self.token.clone())
        }
    }
}

/// Reads a file named on the command line, with the file's name in the error.
pub fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// Prints a value as pretty JSON.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
