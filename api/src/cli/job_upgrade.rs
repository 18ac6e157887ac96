//! `weir job upgrade ID SPEC [--from-savepoint SP] [--allow-state-drop ID]...`,
//! `weir job rescale ID --parallelism N` (an upgrade to a new `parallelism`) and
//! `weir job versions ID`.

use super::job::JobCommand;
use super::{print_json, read_file};
use weir_core::ids::JobId;
use weir_core::wire::JobVersionInfo;

/// Runs `upgrade`, `rescale` or `versions`.
pub(super) async fn run(cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::Upgrade {
            id,
            file,
            from_savepoint,
            allow_state_drop,
            client,
        } => {
            let bytes = read_file(&file)?;
            let spec = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", file.display()))?;
            let answer = client
                .client()
                .upgrade_job(JobId(id), &spec, from_savepoint, &allow_state_drop)
                .await?;
            if client.json {
                return print_json(&answer);
            }
            println!(
                "job {} is {}: version {} starts from savepoint {}",
                answer.job.id,
                answer.job.state.as_str(),
                answer.upgrade_version,
                answer.savepoint
            );
        }
        JobCommand::Rescale {
            id,
            parallelism,
            client,
        } => {
            let answer = client.client().rescale_job(JobId(id), parallelism).await?;
            if client.json {
                return print_json(&answer);
            }
            println!(
                "job {} is {}: version {} runs its downstream stage with {parallelism} \
                 partitions, its state redistributed from savepoint {}",
                answer.job.id,
                answer.job.state.as_str(),
                answer.upgrade_version,
                answer.savepoint
            );
        }
        JobCommand::Versions { id, client } => {
            let versions = client.client().job_versions(JobId(id)).await?;
            if client.json {
                return print_json(&versions);
            }
            print_versions(&versions);
        }
        other => unreachable!("not an upgrade, rescale or versions command: {other:?}"),
    }
    Ok(())
}

/// The table of `weir job versions`.
fn print_versions(versions: &[JobVersionInfo]) {
    println!(
        "{:<8} {:<16} {:<13} {:<10} STATE DROPPED",
        "VERSION", "CREATED_MS", "FROM_VERSION", "SAVEPOINT"
    );
    let or_dash = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    for v in versions {
        let dropped = if v.state_dropped.is_empty() {
            "-".to_string()
        } else {
            v.state_dropped.join(",")
        };
        println!(
            "{:<8} {:<16} {:<13} {:<10} {dropped}",
            v.version,
            v.created_at_ms,
            or_dash(v.from_version),
            or_dash(v.savepoint.map(|sp| sp.0)),
        );
    }
}
