//! `weir local`: a whole weir cluster in this process, so a newcomer sees it work with no
//! external service. Today that is the coordinator group: it starts the coordinators on
//! loopback, creates a tenant, submits the sample job, streams acknowledged writes at the
//! group, kills the leader halfway, restarts it, and checks that every acknowledged write
//! survived exactly once.

use crate::client::Client;
use anyhow::{bail, Context};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use weir_coordinator::node::CoordinatorConfig;
use weir_coordinator::server::{launch, RunningCoordinator};

/// The sample job submitted when `--job` is not given.
pub const SAMPLE_JOB: &str = include_str!("../../docs/examples/card-velocity.yaml");
/// The administrator token of the local cluster.
const LOCAL_ADMIN_TOKEN: &str = "weir-local-admin-token";
/// How long the group may take to elect a leader or catch up.
const CONVERGE_TIMEOUT_MS: u64 = 20_000;

/// Flags of `weir local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// Coordinators in the group (3 or 5).
    #[arg(long, default_value_t = 3)]
    pub coordinators: u32,
    /// A job spec to submit instead of the sample job.
    #[arg(long)]
    pub job: Option<PathBuf>,
    /// Acknowledged writes to stream at the group (the leader is killed halfway).
    #[arg(long, default_value_t = 200)]
    pub writes: u32,
    /// Where the coordinators keep their data (default: a new temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Make the last line of stdout a JSON summary.
    #[arg(long)]
    pub json: bool,
}

struct LocalGroup {
    dir: PathBuf,
    peers: BTreeMap<u64, String>,
    running: BTreeMap<u64, RunningCoordinator>,
}

impl LocalGroup {
    async fn start(n: u32, dir: PathBuf) -> anyhow::Result<Self> {
        let mut listeners = BTreeMap::new();
        for id in 1..=n as u64 {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot bind a loopback port")?;
            listeners.insert(id, l);
        }
        let peers: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(id, l)| Ok((*id, l.local_addr()?.to_string())))
            .collect::<std::io::Result<_>>()?;
        let mut group = LocalGroup {
            dir,
            peers,
            running: BTreeMap::new(),
        };
        for (id, listener) in listeners {
            group.launch(id, listener).await?;
        }
        Ok(group)
    }

    async fn launch(&mut self, id: u64, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        let config = CoordinatorConfig::new(id, self.peers[&id].clone(), self.peers.clone());
        let data_dir = self.dir.join(format!("coordinator-{id}"));
        let running = launch(config, &data_dir, LOCAL_ADMIN_TOKEN, listener).await?;
        self.running.insert(id, running);
        Ok(())
    }

    async fn kill(&mut self, id: u64) {
        if let Some(r) = self.running.remove(&id) {
            r.stop().await;
        }
    }

    async fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
        loop {
            // The port was freed when the old server stopped; the database lock too, once
            // Raft's tasks have wound down.
            let bound = tokio::net::TcpListener::bind(&self.peers[&id]).await;
            let attempt = match bound {
                Ok(listener) => self.launch(id, listener).await,
                Err(e) => Err(e.into()),
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn addrs(&self) -> Vec<String> {
        self.peers.values().cloned().collect()
    }
}

async fn wait_for_leader(client: &Client, addrs: &[String]) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
    while Instant::now() < deadline {
        for a in addrs {
            if let Ok(s) = client.cluster_status_of(a).await {
                if let Some(l) = s.leader {
                    return Ok(l);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("no leader was elected within {CONVERGE_TIMEOUT_MS} ms")
}

fn show_status(client_view: &weir_core::wire::ClusterStatus, label: &str) {
    let members: Vec<String> = client_view
        .members
        .iter()
        .map(|m| format!("{}:{}", m.id, m.state))
        .collect();
    println!(
        "[{label}] leader={} term={} applied={} members=[{}]",
        client_view
            .leader
            .map(|l| l.to_string())
            .unwrap_or_else(|| "none".into()),
        client_view.term,
        client_view.last_applied,
        members.join(" ")
    );
}

/// Runs the local cluster and its closing check.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    if args.coordinators != 3 && args.coordinators != 5 {
        bail!("--coordinators must be 3 or 5");
    }
    let spec = match &args.job {
        Some(path) => crate::cli::read_file(path)?,
        None => SAMPLE_JOB.as_bytes().to_vec(),
    };
    let temp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let started = Instant::now();
    let mut group = LocalGroup::start(args.coordinators, dir).await?;
    let admin = Client::new(group.addrs(), Some(LOCAL_ADMIN_TOKEN.to_string()));
    println!(
        "started {} coordinators: {}",
        args.coordinators,
        group.addrs().join(", ")
    );
    let leader = wait_for_leader(&admin, &group.addrs()).await?;
    show_status(&admin.cluster_status().await?, "elected");

    let tenant = admin.create_tenant("demo").await?;
    let demo = admin.with_token(tenant.token.clone());
    let job = demo.submit_job(spec, None).await?;
    println!(
        "tenant demo created; job {} ({}) submitted as version {}",
        job.id, job.name, job.version
    );

    // Stream writes; kill the leader halfway and time the failover.
    let mut acknowledged = Vec::new();
    let mut failover_ms = None;
    let kill_at = args.writes / 2;
    for i in 0..args.writes {
        if i == kill_at {
            let leader = admin.cluster_status().await?.leader.unwrap_or(leader);
            println!("killing the leader, coordinator {leader}");
            group.kill(leader).await;
            let killed_at = Instant::now();
            let name = format!("load-{i:05}");
            admin.create_tenant(&name).await?;
            acknowledged.push(name);
            failover_ms = Some(killed_at.elapsed().as_millis() as u64);
            show_status(&admin.cluster_status().await?, "failed over");
            println!(
                "first write acknowledged by the new leader {} ms after the kill",
                failover_ms.unwrap_or(0)
            );
            println!("restarting coordinator {leader} from its data directory");
            group.restart(leader).await?;
            continue;
        }
        let name = format!("load-{i:05}");
        admin.create_tenant(&name).await?;
        acknowledged.push(name);
        if (i + 1) % 50 == 0 {
            println!("{} writes acknowledged", i + 1);
        }
    }

    // Every member must converge on the same applied state.
    let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
    let target = admin.cluster_status().await?.last_applied;
    loop {
        let mut behind = Vec::new();
        for (id, r) in &group.running {
            if r.coordinator
                .state()
                .read()
                .last_applied
                .map(|l| l.index)
                .unwrap_or(0)
                < target
            {
                behind.push(*id);
            }
        }
        if behind.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("coordinators {behind:?} did not catch up within {CONVERGE_TIMEOUT_MS} ms");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    show_status(&admin.cluster_status().await?, "converged");

    let mut missing = 0u64;
    let mut duplicated = 0u64;
    let mut states = Vec::new();
    for r in group.running.values() {
        let s = r.coordinator.state().read();
        states.push(s.control.clone());
        for name in &acknowledged {
            match s.control.tenants.keys().filter(|t| &t.0 == name).count() {
                0 => missing += 1,
                1 => {}
                _ => duplicated += 1,
            }
        }
    }
    let agree = states.windows(2).all(|w| w[0] == w[1]);
    let job_visible = demo.get_job(job.id).await.is_ok();
    let ok = missing == 0 && duplicated == 0 && agree && job_visible;
    println!(
        "summary: {} writes acknowledged, {missing} missing, {duplicated} duplicated across {} members; state machines {}; failover {} ms; {:.1} s in all",
        acknowledged.len(),
        group.running.len(),
        if agree { "agree" } else { "DISAGREE" },
        failover_ms.unwrap_or(0),
        started.elapsed().as_secs_f64()
    );
    let ids: Vec<u64> = group.running.keys().copied().collect();
    for id in ids {
        group.kill(id).await;
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": acknowledged.len(),
                "outputs": acknowledged.len() as u64 - missing / args.coordinators.max(1) as u64,
                "dead_letters": 0,
                "missing": missing,
                "duplicated": duplicated,
                "failover_ms": failover_ms,
                "ok": ok,
            })
        );
    }
    if !ok {
        bail!("the closing check failed: {missing} missing, {duplicated} duplicated, state machines agree: {agree}");
    }
    Ok(())
}
