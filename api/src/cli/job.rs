//! `weir job submit|list|get|cancel|pause|resume|stop|start|checkpoints`.

use super::weir_api_client_args::ClientArgs;
use super::{print_json, read_file};
use clap::Subcommand;
use std::path::PathBuf;
use weir_core::ids::JobId;
use weir_core::wire::{CheckpointRecord, JobDetail, JobSummary};

/// Job commands.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job spec (YAML or JSON).
    Submit {
        /// The spec file.
        file: PathBuf,
        /// The tenant the job belongs to (needed with the administrator token).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the jobs this token may see.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show one job and where its partitions run.
    Get {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel a job.
    Cancel {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Pause a running job: its partitions commit and stop consuming, keeping their state.
    Pause {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume a paused job where it left off.
    Resume {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a job: its partitions commit and are released; `start` runs it again.
    Stop {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a stopped job again from its last committed checkpoint.
    Start {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a job's checkpoint records, newest first.
    Checkpoints {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a job command.
pub async fn run(cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::Submit {
            file,
            tenant,
            client,
        } => {
            let spec = read_file(&file)?;
            let job = client.client().submit_job(spec, tenant.as_deref()).await?;
            if client.json {
                return print_json(&job);
            }
            println!(
                "submitted job {} ({}) version {}",
                job.id, job.name, job.version
            );
        }
        JobCommand::List { client } => {
            let jobs = client.client().list_jobs().await?;
            if client.json {
                return print_json(&jobs);
            }
            print_jobs(&jobs);
        }
        JobCommand::Get { id, client } => {
            let job = client.client().get_job(JobId(id)).await?;
            if client.json {
                return print_json(&job);
            }
            print_job(&job);
        }
        JobCommand::Cancel { id, client } => {
            let job = client.client().cancel_job(JobId(id)).await?;
            print_state(&job, client.json)?;
        }
        JobCommand::Pause { id, client } => {
            let job = client.client().pause_job(JobId(id)).await?;
            print_state(&job, client.json)?;
        }
        JobCommand::Resume { id, client } => {
            let job = client.client().resume_job(JobId(id)).await?;
            print_state(&job, client.json)?;
        }
        JobCommand::Stop { id, client } => {
            let job = client.client().stop_job(JobId(id)).await?;
            print_state(&job, client.json)?;
        }
        JobCommand::Start { id, client } => {
            let job = client.client().start_job(JobId(id)).await?;
            print_state(&job, client.json)?;
        }
        JobCommand::Checkpoints { id, client } => {
            let records = client.client().checkpoints(JobId(id)).await?;
            if client.json {
                return print_json(&records);
            }
            print_checkpoints(&records);
        }
    }
    Ok(())
}

/// The answer of a life-cycle command: the job's state now.
fn print_state(job: &JobSummary, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(job);
    }
    println!("job {} is {}", job.id, job.state.as_str());
    Ok(())
}

/// The job table of `weir job list`, a reason after a job's row when it has one.
fn print_jobs(jobs: &[JobSummary]) {
    println!(
        "{:<6} {:<32} {:<16} {:<11} VERSION",
        "ID", "NAME", "TENANT", "STATE"
    );
    for j in jobs {
        // Why a job failed or cannot start, after its row.
        let reason = j.reason.as_deref().map(|r| format!("  ({r})"));
        println!(
            "{:<6} {:<32} {:<16} {:<11} {}{}",
            j.id,
            j.name,
            j.tenant,
            j.state.as_str(),
            j.version,
            reason.unwrap_or_default()
        );
    }
}

/// One job and where its partitions run, for `weir job get`.
fn print_job(job: &JobDetail) {
    println!(
        "job {} ({}) tenant {} state {} version {}",
        job.id,
        job.name,
        job.tenant,
        job.state.as_str(),
        job.version
    );
    if let Some(reason) = &job.reason {
        println!("reason: {reason}");
    }
    match job.partition_count {
        Some(n) => println!("partitions: {n}"),
        None => {
            println!("partitions: not known yet (no worker has read the topic's metadata)")
        }
    }
    if !job.partitions.is_empty() {
        println!(
            "{:<10} {:<20} {:<6} {:<11} OFFSET",
            "PARTITION", "WORKER", "EPOCH", "CHECKPOINT"
        );
        for p in &job.partitions {
            println!(
                "{:<10} {:<20} {:<6} {:<11} {}",
                p.partition,
                p.worker.as_ref().map(|w| w.0.as_str()).unwrap_or("-"),
                p.epoch,
                p.checkpoint
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                p.offset
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "-".into()),
            );
        }
        for p in &job.partitions {
            if let Some(problem) = &p.problem {
                println!("partition {} cannot progress: {problem}", p.partition);
            }
        }
    }
}

/// The checkpoint records of `weir job checkpoints`.
fn print_checkpoints(records: &[CheckpointRecord]) {
    println!(
        "{:<10} {:<11} {:<6} {:<10} {:<12} SNAPSHOT",
        "PARTITION", "CHECKPOINT", "EPOCH", "PHASE", "OFFSET"
    );
    for r in records {
        println!(
            "{:<10} {:<11} {:<6} {:<10} {:<12} {}",
            r.partition,
            r.checkpoint,
            r.epoch,
            format!("{:?}", r.phase).to_lowercase(),
            r.offset,
            r.snapshot
        );
    }
}
