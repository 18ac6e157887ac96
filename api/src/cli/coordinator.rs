//! `weir coordinator`: run one member of the group until interrupted.

use anyhow::{bail, Context};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use weir_coordinator::node::CoordinatorConfig;

/// Flags of `weir coordinator` (CONTRACT.md).
#[derive(Debug, Clone, Args)]
pub struct CoordinatorArgs {
    /// This member's Raft id (a positive integer, unique in the group).
    #[arg(long)]
    pub id: u64,
    /// host:port to serve the API and Raft on.
    #[arg(long)]
    pub listen: String,
    /// Directory for the Raft log, vote and snapshots.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The initial members, id=host:port, comma-separated, the same on every member. A
    /// member not in the list starts empty and waits for `weir cluster add-member`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub peers: Vec<String>,
    /// The administrator's token; the same on every member.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// How long a worker lease lasts after each heartbeat, in milliseconds: how soon a dead
    /// worker's partitions move to another.
    #[arg(long, default_value_t = 1200)]
    pub lease_timeout_ms: u64,
    /// How often the leader sends Raft heartbeats, in milliseconds.
    #[arg(long, default_value_t = 30)]
    pub heartbeat_interval_ms: u64,
    /// Election timeout range in milliseconds, as MIN..MAX; a follower that hears nothing
    /// from a leader for a random time in this range stands for election.
    #[arg(long, default_value = "100..200", value_parser = parse_range)]
    pub election_timeout_ms: (u64, u64),
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not MIN..MAX"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a number of milliseconds"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a number of milliseconds"))?;
    if a == 0 || a >= b {
        return Err(format!("{s:?} needs 0 < MIN < MAX"));
    }
    Ok((a, b))
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(peers: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for p in peers {
        let Some((id, addr)) = p.split_once('=') else {
            bail!("--peers entry {p:?} is not id=host:port");
        };
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("--peers entry {p:?} has a non-numeric id"))?;
        if !addr.contains(':') {
            bail!("--peers entry {p:?} has no port");
        }
        if out.insert(id, addr.trim().to_string()).is_some() {
            bail!("--peers names id {id} twice");
        }
    }
    if out.is_empty() {
        bail!("--peers is empty");
    }
    Ok(out)
}

/// Runs a coordinator until Ctrl-C or SIGTERM.
pub async fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    if args.id == 0 {
        bail!("--id must be a positive integer");
    }
    if args.admin_token.len() < 8 {
        bail!("--admin-token must be at least 8 characters");
    }
    let peers = parse_peers(&args.peers)?;
    let advertise = peers
        .get(&args.id)
        .cloned()
        .unwrap_or_else(|| args.listen.clone());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut config = CoordinatorConfig::new(args.id, advertise, peers);
    config.lease_timeout_ms = args.lease_timeout_ms;
    config.heartbeat_interval_ms = args.heartbeat_interval_ms;
    (
        config.election_timeout_min_ms,
        config.election_timeout_max_ms,
    ) = args.election_timeout_ms;
    if config.lease_timeout_ms <= config.worker_heartbeat_interval_ms {
        bail!(
            "--lease-timeout-ms must be longer than the workers' heartbeat interval ({} ms)",
            config.worker_heartbeat_interval_ms
        );
    }
    if config.heartbeat_interval_ms >= config.election_timeout_min_ms {
        bail!("--heartbeat-interval-ms must be shorter than the minimum election timeout");
    }
    let running =
        weir_coordinator::server::launch(config, &args.data_dir, &args.admin_token, listener)
            .await?;
    tracing::info!(id = args.id, addr = %running.addr, "coordinator serving");
    let coordinator = running.coordinator.clone();
    tokio::select! {
        _ = shutdown_signal() => {}
        why = coordinator.stopped() => {
            tracing::error!(reason = %why, "Raft stopped; ending the process");
            bail!("Raft stopped on a storage error ({why}); the process ends rather than retry it");
        }
    }
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::parse_peers;

    #[test]
    fn peers_parse_and_reject_nonsense() {
        let p = parse_peers(&["1=127.0.0.1:7001".into(), "2=127.0.0.1:7002".into()]).unwrap();
        assert_eq!(p[&2], "127.0.0.1:7002");
        assert!(parse_peers(&["x=127.0.0.1:1".into()]).is_err());
        assert!(parse_peers(&["1127.0.0.1:1".into()]).is_err());
        assert!(parse_peers(&["1=a:1".into(), "1=b:2".into()]).is_err());
        assert!(parse_peers(&["1=nohost".into()]).is_err());
    }
}
