//! `weir job state ID --key K --checkpoint-dir DIR`: one key's state in a job, read from
//! its partitions' committed snapshots — the key's open windows (each with its aggregates
//! as a result would show them now) and what each dedupe stage remembers of it.
//!
//! The job is looked up through the API with the caller's token (another tenant's job is
//! not found), then each partition's snapshot at its committed offset is read from the
//! checkpoint store the workers write to (`--checkpoint-dir`, the same directory or
//! `file://` URL as `weir worker --checkpoint-dir`): read-only, and the running job is not
//! involved. The state is the last committed checkpoint's, at most one checkpoint interval
//! behind the job.

use super::print_json;
use super::weir_api_client_args::ClientArgs;
use anyhow::{bail, Context};
use serde::Serialize;
use weir_core::ids::JobId;
use weir_core::spec::stages::task_stage;
use weir_core::spec::JobSpec;
use weir_worker::checkpoint_store::DirCheckpointStore;
use weir_worker::state_inspection::{task_key_state, CommittedTask, TaskKeyState};

/// What `weir job state` prints with `--json`.
#[derive(Debug, Serialize)]
struct JobKeyState {
    job: JobId,
    key: String,
    /// The partitions holding state for the key (usually one: the key's).
    partitions: Vec<TaskKeyState>,
}

/// Runs `weir job state`.
pub async fn run(
    id: u64,
    key: String,
    checkpoint_dir: String,
    client: ClientArgs,
) -> anyhow::Result<()> {
    let local = checkpoint_dir
        .strip_prefix("file://")
        .unwrap_or(&checkpoint_dir);
    if !std::path::Path::new(local).is_dir() {
        bail!("--checkpoint-dir {checkpoint_dir} is not a directory");
    }
    let job = client.client().get_job(JobId(id)).await?;
    let spec: JobSpec = serde_json::from_value(job.spec.clone())
        .with_context(|| format!("job {id}'s spec as the group holds it cannot be read"))?;
    if spec
        .pipeline
        .iter()
        .any(|stage| matches!(stage, weir_core::spec::Stage::Join(_)))
    {
        bail!("job {id} joins two streams: `weir job state` does not read a join's state yet");
    }
    let Some(source_partitions) = job.partition_count else {
        bail!("job {id} has not started yet: no partition has committed any state");
    };
    // The downstream tasks (stage 1) are the repartition topic's partitions.
    let downstream = job
        .partitions
        .iter()
        .filter(|p| task_stage(p.partition).0 == 1)
        .count() as u32;
    let repartitions: Vec<u32> = if downstream > 0 {
        vec![downstream]
    } else {
        Vec::new()
    };
    let store = DirCheckpointStore::new(&checkpoint_dir)?;
    let mut partitions = Vec::new();
    for p in &job.partitions {
        let Some(offset) = p.offset else { continue };
        let task = CommittedTask {
            partition: p.partition,
            offset,
            checkpoint: p.checkpoint,
        };
        let found = task_key_state(
            &store,
            job.id,
            &spec,
            (&repartitions, source_partitions),
            task,
            &key,
        )
        .await
        .with_context(|| format!("partition {} of job {id}", p.partition))?;
        partitions.extend(found);
    }
    let answer = JobKeyState {
        job: job.id,
        key,
        partitions,
    };
    if client.json {
        return print_json(&answer);
    }
    print_state(&answer);
    Ok(())
}

fn print_state(answer: &JobKeyState) {
    if answer.partitions.is_empty() {
        println!(
            "job {}: no committed state for key {:?}",
            answer.job, answer.key
        );
        return;
    }
    for p in &answer.partitions {
        println!(
            "job {} key {:?}: partition {} at checkpoint {} (offset {})",
            answer.job, answer.key, p.partition, p.checkpoint.0, p.offset
        );
        for window in &p.state.windows {
            println!("  window {window}");
        }
        for d in &p.state.dedupe {
            println!(
                "  dedupe stage {}: last kept event at {} ms",
                d.dedupe_stage, d.last_kept_ms
            );
        }
    }
}
