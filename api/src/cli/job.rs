//! `weir job submit|list|get|cancel|pause|resume|stop|start|checkpoints|savepoint|
//! savepoints|delete-savepoint|state|upgrade|rescale|versions` (the last three in
//! `job_upgrade.rs`).

use super::weir_api_client_args::ClientArgs;
use super::{print_json, read_file};
use clap::Subcommand;
use std::path::PathBuf;
use weir_core::ids::{JobId, SavepointId};
use weir_core::wire::{CheckpointRecord, JobDetail, JobSummary, LifecycleAnswer, SavepointInfo};

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
        /// Also take a savepoint of the stop's cut (named in the answer; complete once the
        /// job is stopped).
        #[arg(long)]
        savepoint: bool,
        /// Fire open windows before stopping (not supported yet: refused, naming it).
        #[arg(long)]
        drain: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a stopped job again from its last committed checkpoint, or from a savepoint.
    Start {
        id: u64,
        /// Restore every partition from this savepoint (`N` or `sp-N`) instead: outputs
        /// after its cut are produced again.
        #[arg(long, value_name = "SP", value_parser = parse_savepoint)]
        from_savepoint: Option<SavepointId>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a savepoint of a job: every partition's committed cut, kept until deleted.
    Savepoint {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a job's savepoints.
    Savepoints {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a savepoint (its snapshots are then pruned like old checkpoints).
    DeleteSavepoint {
        id: u64,
        #[arg(value_parser = parse_savepoint)]
        savepoint: SavepointId,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Upgrade a job to a new spec, carrying each stateful stage's state: a running job
    /// is stopped with a savepoint and the new version starts from its cut; a stopped one
    /// starts from its last commit.
    Upgrade {
        id: u64,
        /// The new spec file (YAML or JSON).
        file: PathBuf,
        /// Start the new version from this savepoint (`N` or `sp-N`) instead: outputs
        /// after its cut are produced again (a rollback is an upgrade to an earlier spec
        /// from a savepoint of it).
        #[arg(long, value_name = "SP", value_parser = parse_savepoint)]
        from_savepoint: Option<SavepointId>,
        /// A stateful stage (its `id:`, or `dedupe#N` / `window#N`) whose state may be
        /// dropped: it starts empty. Repeat for several.
        #[arg(long, value_name = "ID")]
        allow_state_drop: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change the partition count of the stage behind a job's shuffle (a job that
    /// repartitions): the job is stopped at a drained cut, and the stage's keys and their
    /// state are redistributed over N new tasks reading a new repartition topic. A new
    /// version of the job, its spec's `parallelism` N.
    Rescale {
        id: u64,
        /// The new partition count (1 to 10000).
        #[arg(long, value_name = "N")]
        parallelism: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a job's versions.
    Versions {
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
    /// Show one key's state (open windows, dedupe memory) from the job's last committed
    /// checkpoint, read from the checkpoint store.
    State {
        id: u64,
        /// The key, as window results name it.
        #[arg(long)]
        key: String,
        /// The checkpoint store the workers write to (a directory or a file:// URL).
        #[arg(long)]
        checkpoint_dir: String,
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
        JobCommand::State {
            id,
            key,
            checkpoint_dir,
            client,
        } => super::job_state::run(id, key, checkpoint_dir, client).await?,
        JobCommand::Checkpoints { id, client } => {
            let records = client.client().checkpoints(JobId(id)).await?;
            if client.json {
                return print_json(&records);
            }
            print_checkpoints(&records);
        }
        JobCommand::Upgrade { .. } | JobCommand::Versions { .. } | JobCommand::Rescale { .. } => {
            return super::job_upgrade::run(cmd).await
        }
        other => return run_stop_start_savepoints(other).await,
    }
    Ok(())
}

/// Runs `stop`, `start` and the savepoint commands.
async fn run_stop_start_savepoints(cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::Stop {
            id,
            savepoint: false,
            drain: false,
            client,
        } => {
            let job = client.client().stop_job(JobId(id)).await?;
            print_state(&job, client.json)?;
        }
        JobCommand::Stop {
            id,
            savepoint,
            drain,
            client,
        } => {
            let answer = client
                .client()
                .stop_job_with(JobId(id), savepoint, drain)
                .await?;
            print_answer(&answer, client.json)?;
        }
        JobCommand::Start {
            id,
            from_savepoint: None,
            client,
        } => {
            let job = client.client().start_job(JobId(id)).await?;
            print_state(&job, client.json)?;
        }
        JobCommand::Start {
            id,
            from_savepoint: Some(sp),
            client,
        } => {
            let answer = client
                .client()
                .start_job_from_savepoint(JobId(id), sp)
                .await?;
            print_answer(&answer, client.json)?;
        }
        JobCommand::Savepoint { id, client } => {
            let sp = client.client().take_savepoint(JobId(id)).await?;
            if client.json {
                return print_json(&sp);
            }
            println!(
                "savepoint {} of job {} is {}",
                sp.savepoint,
                sp.job,
                sp.status.as_str()
            );
        }
        JobCommand::Savepoints { id, client } => {
            let savepoints = client.client().savepoints(JobId(id)).await?;
            if client.json {
                return print_json(&savepoints);
            }
            print_savepoints(&savepoints);
        }
        JobCommand::DeleteSavepoint {
            id,
            savepoint,
            client,
        } => {
            client
                .client()
                .delete_savepoint(JobId(id), savepoint)
                .await?;
            if !client.json {
                println!("savepoint {savepoint} of job {id} deleted");
            }
        }
        other => unreachable!("not a stop, start or savepoint command: {other:?}"),
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

/// The answer of a stop with a savepoint or a start from one.
fn print_answer(answer: &LifecycleAnswer, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(answer);
    }
    match answer.savepoint {
        Some(sp) => println!(
            "job {} is {} (savepoint {sp})",
            answer.job.id,
            answer.job.state.as_str()
        ),
        None => println!("job {} is {}", answer.job.id, answer.job.state.as_str()),
    }
    Ok(())
}

/// A savepoint id as the CLI takes it: `N` or `sp-N`.
pub(super) fn parse_savepoint(raw: &str) -> Result<SavepointId, String> {
    raw.strip_prefix("sp-")
        .unwrap_or(raw)
        .parse::<u64>()
        .map(SavepointId)
        .map_err(|_| format!("{raw:?} is not a savepoint id (N or sp-N)"))
}

/// The savepoint table of `weir job savepoints`: one row per partition pin.
fn print_savepoints(savepoints: &[SavepointInfo]) {
    println!(
        "{:<10} {:<9} {:<10} {:<11} {:<12} SNAPSHOT",
        "SAVEPOINT", "STATUS", "PARTITION", "CHECKPOINT", "OFFSET"
    );
    for sp in savepoints {
        if sp.partitions.is_empty() {
            let why = sp.reason.as_deref().unwrap_or("-");
            println!("{:<10} {:<9} {why}", sp.savepoint, sp.status.as_str());
        }
        for p in &sp.partitions {
            println!(
                "{:<10} {:<9} {:<10} {:<11} {:<12} {}",
                sp.savepoint,
                sp.status.as_str(),
                p.partition,
                p.checkpoint
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                p.offset,
                p.snapshot.as_deref().unwrap_or("(empty state)")
            );
        }
    }
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
