//! `weir coordinator`: run one member of the group until interrupted.

use anyhow::{bail, Context};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use weir_coordinator::node::CoordinatorConfig;

/// Flags of `weir coordinator` (docs/CLI.md).
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
    /// from a leader for a random time in this range stands for election. MIN must exceed
    /// MAX/2 plus the heartbeat interval (the first MAX/2 is Raft's leader lease).
    #[arg(long, default_value = "300..400", value_parser = parse_range)]
    pub election_timeout_ms: (u64, u64),
    /// `new`: a member with no store forms the group with --peers (the group's first
    /// start). `existing`: a member with no store only waits to be added with `weir cluster
    /// add-member` (a new member, or one replacing a lost one). A member with a store
    /// restarts from it either way. As etcd's flag of the same name.
    #[arg(long, value_enum, default_value_t = InitialClusterState::New)]
    pub initial_cluster_state: InitialClusterState,
}

/// How a member with no store starts (`--initial-cluster-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialClusterState {
    /// Form the group with the members in `--peers`.
    #[value(alias = "bootstrap")]
    New,
    /// Wait to be added to a running group.
    #[value(alias = "join")]
    Existing,
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
        if id == 0 {
            bail!("--peers entry {p:?}: ids are positive integers");
        }
        let Some((host, port)) = addr.trim().rsplit_once(':') else {
            bail!("--peers entry {p:?} has no port");
        };
        if host.is_empty() {
            bail!("--peers entry {p:?} has no host");
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => {}
            _ => bail!("--peers entry {p:?} has port {port:?}, not a number from 1 to 65535"),
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

/// Checks that `--listen` is this member's own address in `--peers`: the same port, and the
/// same host or a wildcard one (0.0.0.0, [::]). Peers and forwarded requests reach the
/// member at its `--peers` address; a member listening elsewhere is unreachable to them
/// (or is a second process claiming the id of a member that listens there).
pub fn check_listen_matches(listen: &str, own: &str, id: u64) -> anyhow::Result<()> {
    let split = |a: &str| {
        a.rsplit_once(':').map(|(h, p)| {
            (
                h.trim_matches(|c| c == '[' || c == ']').to_string(),
                p.to_string(),
            )
        })
    };
    let Some((listen_host, listen_port)) = split(listen) else {
        bail!("--listen {listen:?} is not host:port");
    };
    let (own_host, own_port) = split(own).unwrap_or_default();
    let wildcard = matches!(listen_host.as_str(), "0.0.0.0" | "::");
    if listen_port != own_port || !(wildcard || listen_host == own_host) {
        bail!(
            "--listen {listen} is not member {id}'s address in --peers ({own}); peers reach it \
             there, so the two must name the same port (and host, unless --listen is 0.0.0.0)"
        );
    }
    Ok(())
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
    if let Some(own) = peers.get(&args.id) {
        check_listen_matches(&args.listen, own, args.id)?;
    }
    let advertise = peers
        .get(&args.id)
        .cloned()
        .unwrap_or_else(|| args.listen.clone());
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (is another member already running as id {} there?)",
                args.listen, args.id
            )
        })?;
    let mut config = CoordinatorConfig::new(args.id, advertise, peers);
    config.lease_timeout_ms = args.lease_timeout_ms;
    config.bootstrap = args.initial_cluster_state == InitialClusterState::New;
    config.heartbeat_interval_ms = args.heartbeat_interval_ms;
    let (wait_min, wait_max) = args.election_timeout_ms;
    config
        .set_follower_wait_ms(wait_min, wait_max)
        .map_err(|e| anyhow::anyhow!("--election-timeout-ms {wait_min}..{wait_max}: {e}"))?;
    if config.lease_timeout_ms <= config.worker_heartbeat_interval_ms {
        bail!(
            "--lease-timeout-ms must be longer than the workers' heartbeat interval ({} ms)",
            config.worker_heartbeat_interval_ms
        );
    }
    weir_coordinator::server::refuse_lost_store(&config, &args.data_dir, &args.admin_token).await?;
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

    #[test]
    fn peers_with_a_bad_port_are_refused() {
        // Hostile testing: these were accepted and the member led a group of one.
        for bad in [
            "5=127.0.0.1:notaport",
            "5=127.0.0.1:99999",
            "5=:99999",
            "5=127.0.0.1:0",
            "5=:7001",
            "0=127.0.0.1:7001",
        ] {
            let err = parse_peers(&[bad.into()]).expect_err(bad).to_string();
            assert!(err.contains("--peers"), "{err}");
        }
        assert!(parse_peers(&["5=[::1]:7001".into()]).is_ok());
    }

    #[test]
    fn listen_must_be_the_members_own_address() {
        use super::check_listen_matches;
        assert!(check_listen_matches("127.0.0.1:7001", "127.0.0.1:7001", 1).is_ok());
        assert!(check_listen_matches("0.0.0.0:7001", "10.0.0.5:7001", 1).is_ok());
        assert!(check_listen_matches("[::]:7001", "[fd00::5]:7001", 1).is_ok());
        let err = check_listen_matches("127.0.0.1:7002", "127.0.0.1:7001", 1).unwrap_err();
        assert!(err.to_string().contains("--listen"), "{err}");
        assert!(check_listen_matches("10.0.0.6:7001", "10.0.0.5:7001", 1).is_err());
    }
}
