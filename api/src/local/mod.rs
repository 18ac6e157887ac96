//! `weir local`: the whole system in this process, so a newcomer sees it work with no
//! external service: a coordinator group on loopback, workers (each an actix system on a
//! thread of its own), and the in-memory Kafka model (or a real broker with `--kafka`).
//! It submits the sample job, produces generated payments (with malformed, late and
//! duplicate ones), kills a worker halfway and the coordinator leader after that, shows
//! progress, and closes by checking the committed outputs against an independent count.

pub mod expected;
pub mod generator;
mod workers;

use crate::client::Client;
use anyhow::{bail, Context};
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use weir_broker::{Broker, TransactionalWriter};
use weir_coordinator::node::CoordinatorConfig;
use weir_coordinator::server::{launch, RunningCoordinator};

/// The sample job submitted when `--job` is not given.
pub const SAMPLE_JOB: &str = include_str!("../../../docs/examples/card-velocity.yaml");
/// The administrator token of the local cluster.
const LOCAL_ADMIN_TOKEN: &str = "weir-local-admin-token";
/// How long the group may take to elect a leader or catch up.
const CONVERGE_TIMEOUT_MS: u64 = 20_000;
/// How long the workers may take to process and commit everything after the last event.
const LOCAL_DRAIN_TIMEOUT_MS: u64 = 60_000;

/// Flags of `weir local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// Coordinators in the group (3 or 5).
    #[arg(long, default_value_t = 3)]
    pub coordinators: u32,
    /// A job spec to submit instead of the sample job.
    #[arg(long)]
    pub job: Option<PathBuf>,
    /// Workers in the fleet.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Payment events to generate.
    #[arg(long, default_value_t = 30_000)]
    pub events: u64,
    /// Partitions of the source topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Run against this Kafka bootstrap address instead of the in-memory broker.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Events produced per second (so the run can be watched; 0 for as fast as possible).
    #[arg(long, default_value_t = 2_000)]
    pub rate: u64,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
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
/// Runs the local system and its closing check.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    if args.coordinators != 3 && args.coordinators != 5 {
        bail!("--coordinators must be 3 or 5");
    }
    if args.workers == 0 || args.workers > 16 {
        bail!("--workers must be between 1 and 16");
    }
    if args.partitions == 0 || args.partitions > 64 {
        bail!("--partitions must be between 1 and 64");
    }
    match &args.kafka {
        Some(bootstrap) => {
            let broker = weir_broker::kafka::KafkaBroker::new(bootstrap)
                .context("cannot configure the Kafka client")?;
            run_with(args, broker).await
        }
        None => run_with(args, weir_broker::memory::MemoryBroker::new()).await,
    }
}

/// Progress and closing counts of the sink and dead-letter topics.
struct Committed {
    alerts: Vec<Vec<u8>>,
    dead_letters: u64,
}

async fn read_all<B: Broker>(
    broker: &B,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<Vec<Vec<Vec<u8>>>> {
    let mut out = Vec::new();
    for p in 0..partitions as i32 {
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            let batch = broker.read_committed(topic, p, offset, 10_000).await?;
            let Some(last) = batch.last() else { break };
            offset = last.offset + 1;
            records.extend(batch.into_iter().map(|r| r.value.unwrap_or_default()));
        }
        out.push(records);
    }
    Ok(out)
}

async fn committed<B: Broker>(
    broker: &B,
    sink: &str,
    dlq: &str,
    partitions: u32,
) -> anyhow::Result<Committed> {
    let alerts = read_all(broker, sink, partitions)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let dead_letters = read_all(broker, dlq, 1)
        .await?
        .into_iter()
        .flatten()
        .count() as u64;
    Ok(Committed {
        alerts,
        dead_letters,
    })
}

fn progress_line(workers: &[workers::LocalWorker], produced: u64, c: &Committed) -> String {
    let mut parts = Vec::new();
    for w in workers {
        let status = w.status();
        let done: u64 = status.values().map(|s| s.counters.records_in).sum();
        let failing = status.values().filter(|s| s.error.is_some()).count();
        let owned: Vec<String> = status.keys().map(|(_, p)| p.to_string()).collect();
        parts.push(format!(
            "{}: partitions [{}] {} in{}",
            w.id,
            owned.join(","),
            done,
            if failing > 0 {
                format!(" ({failing} recovering)")
            } else {
                String::new()
            }
        ));
    }
    format!(
        "produced {produced} | committed alerts {} dead letters {} | {}",
        c.alerts.len(),
        c.dead_letters,
        parts.join(" | ")
    )
}

/// The cluster `weir local` runs: the group, an administrator's client, and the fleet.
struct Cluster {
    group: LocalGroup,
    admin: Client,
    fleet: Vec<workers::LocalWorker>,
}

/// The job's topics: source, sink, dead letters.
struct Topics {
    source: String,
    sink: String,
    dlq: String,
}

/// What the closing check found.
struct Verdict {
    missing: u64,
    duplicated: u64,
    unexpected: u64,
    dead_ok: bool,
}

impl Verdict {
    fn ok(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.unexpected == 0 && self.dead_ok
    }
}

/// Runs the phases of `weir local` in order: start, submit, produce with faults, drain,
/// check. Each phase is a function below.
async fn run_with<B: Broker + Unpin + Send>(args: LocalArgs, broker: B) -> anyhow::Result<()> {
    let spec_bytes = match &args.job {
        Some(path) => crate::cli::read_file(path)?,
        None => SAMPLE_JOB.as_bytes().to_vec(),
    };
    let spec = weir_core::spec::parse_job_spec(&spec_bytes)
        .map_err(|e| anyhow::anyhow!("the job spec is invalid: {e}"))?;
    let temp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary directory")?;
            temp.path().to_path_buf()
        }
    };
    let started = Instant::now();
    let topics = Topics {
        source: spec.source.topic.clone(),
        sink: spec.sink.topic.clone(),
        dlq: spec.dead_letter_topic_or_default(),
    };
    let mut cluster = start_cluster(&args, &dir, &broker, &topics, spec_bytes).await?;
    let produced = produce_with_faults(&args, &broker, &topics, &mut cluster).await?;

    // The independent count, from the source records as they sit in each partition.
    let source_records = read_all(&broker, &topics.source, args.partitions).await?;
    let (expected_alerts, expected_dead) = expected::expected(&source_records);
    let c = drain(&args, &broker, &topics, &cluster, produced, |c| {
        c.alerts.len() >= expected_alerts.len() && c.dead_letters >= expected_dead
    })
    .await?;
    let verdict = check(&c, &expected_alerts, expected_dead);
    println!(
        "summary: {} events; {} alerts committed ({} expected): {} missing, {} duplicated, {} unexpected; {} dead letters ({expected_dead} expected); {:.1} s",
        args.events,
        c.alerts.len(),
        expected_alerts.len(),
        verdict.missing,
        verdict.duplicated,
        verdict.unexpected,
        c.dead_letters,
        started.elapsed().as_secs_f64()
    );
    cluster.stop().await;
    report(&args, &c, &verdict, expected_dead)
}

/// Starts the group and the fleet, creates the topics, a tenant, and submits the job.
async fn start_cluster<B: Broker + Unpin + Send>(
    args: &LocalArgs,
    dir: &std::path::Path,
    broker: &B,
    topics: &Topics,
    spec_bytes: Vec<u8>,
) -> anyhow::Result<Cluster> {
    let group = LocalGroup::start(args.coordinators, dir.to_path_buf()).await?;
    let admin = Client::new(group.addrs(), Some(LOCAL_ADMIN_TOKEN.to_string()));
    println!(
        "started {} coordinators: {}",
        args.coordinators,
        group.addrs().join(", ")
    );
    wait_for_leader(&admin, &group.addrs()).await?;
    show_status(&admin.cluster_status().await?, "elected");
    broker.create_topic(&topics.source, args.partitions).await?;
    broker.create_topic(&topics.sink, args.partitions).await?;
    broker.create_topic(&topics.dlq, 1).await?;
    let tenant = admin.create_tenant("demo").await?;
    let demo = admin.with_token(tenant.token.clone());
    let job = demo.submit_job(spec_bytes, None).await?;
    println!(
        "job {} ({}) submitted: {} ({} partitions) -> {}, dead letters -> {}",
        job.id, job.name, topics.source, args.partitions, topics.sink, topics.dlq
    );
    let store = weir_worker::checkpoint_store::DirCheckpointStore::new(
        dir.join("checkpoints").to_string_lossy(),
    )
    .context("cannot create the checkpoint directory")?;
    let mut fleet = Vec::new();
    for i in 1..=args.workers {
        let name = format!("worker-{i}");
        let local =
            weir_worker::checkpoint_store::LocalFirst::open(&dir.join(&name), store.clone())
                .context("cannot open a worker's local state")?;
        fleet.push(workers::LocalWorker::start(
            &name,
            group.addrs(),
            LOCAL_ADMIN_TOKEN,
            broker.clone(),
            local,
        )?);
    }
    println!("started {} workers", args.workers);
    Ok(Cluster {
        group,
        admin,
        fleet,
    })
}

/// Produces the events in transactions of five hundred at `--rate`, killing a worker
/// halfway and the coordinator leader at three quarters, then a closing event per
/// partition. Returns how many events it produced.
async fn produce_with_faults<B: Broker + Unpin + Send>(
    args: &LocalArgs,
    broker: &B,
    topics: &Topics,
    cluster: &mut Cluster,
) -> anyhow::Result<u64> {
    let (events, mix) = generator::events(args.events, args.seed);
    let mut producer = broker.writer("weir-local-generator").await?;
    let mut produced = 0u64;
    let mut last_progress = Instant::now();
    let chunks: Vec<&[generator::Generated]> = events.chunks(500).collect();
    let n_chunks = chunks.len();
    let produce_started = Instant::now();
    for (i, chunk) in chunks.into_iter().enumerate() {
        producer.begin()?;
        for e in chunk {
            producer
                .send(weir_broker::OutgoingRecord {
                    topic: topics.source.clone(),
                    partition: None,
                    key: e.key.clone().map(String::into_bytes),
                    value: e.value.clone(),
                    timestamp_ms: None,
                })
                .await?;
        }
        producer.commit("weir-local-generator", &[]).await?;
        produced += chunk.len() as u64;
        if i == n_chunks / 2 && cluster.fleet.len() > 1 {
            let victim = cluster.fleet.len() - 1;
            println!(
                "killing {} (its partitions move once its lease expires)",
                cluster.fleet[victim].id
            );
            cluster.fleet[victim].kill();
            cluster.fleet.remove(victim);
        }
        if i == 3 * n_chunks / 4 {
            cluster.fail_over_leader().await?;
        }
        if last_progress.elapsed() > Duration::from_millis(500) {
            let c = committed(broker, &topics.sink, &topics.dlq, args.partitions).await?;
            println!("{}", progress_line(&cluster.fleet, produced, &c));
            last_progress = Instant::now();
        }
        if let Some(due_ms) = (produced * 1_000).checked_div(args.rate) {
            let due = Duration::from_millis(due_ms);
            let elapsed = produce_started.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
        tokio::task::yield_now().await;
    }
    producer.begin()?;
    for p in 0..args.partitions as i32 {
        producer
            .send(weir_broker::OutgoingRecord {
                topic: topics.source.clone(),
                partition: Some(p),
                key: None,
                value: generator::closing_event(args.events),
                timestamp_ms: None,
            })
            .await?;
    }
    producer.commit("weir-local-generator", &[]).await?;
    println!("produced {produced} events ({} valid, {} malformed, {} late, {} duplicates) and a closing event per partition", mix.valid, mix.malformed, mix.late, mix.duplicates);
    Ok(produced)
}

impl Cluster {
    /// Kills the coordinator leader, waits for a new one among the others (workers keep
    /// processing meanwhile), and restarts the old leader from its data directory.
    async fn fail_over_leader(&mut self) -> anyhow::Result<()> {
        let Some(l) = self.admin.cluster_status().await?.leader else {
            return Ok(());
        };
        println!("killing the coordinator leader {l}; workers keep processing");
        self.group.kill(l).await;
        let survivors: Vec<String> = self
            .group
            .peers
            .iter()
            .filter(|(id, _)| **id != l)
            .map(|(_, a)| a.clone())
            .collect();
        let deadline = Instant::now() + Duration::from_millis(CONVERGE_TIMEOUT_MS);
        loop {
            let mut new_leader = None;
            for a in &survivors {
                if let Ok(s) = self.admin.cluster_status_of(a).await {
                    new_leader = new_leader.or(s.leader.filter(|n| *n != l));
                }
            }
            if new_leader.is_some() {
                break;
            }
            if Instant::now() > deadline {
                bail!("no new leader within {CONVERGE_TIMEOUT_MS} ms");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        show_status(&self.admin.cluster_status().await?, "failed over");
        println!("restarting coordinator {l} from its data directory");
        self.group.restart(l).await
    }

    /// Kills every worker and coordinator.
    async fn stop(mut self) {
        for w in &mut self.fleet {
            w.kill();
        }
        let ids: Vec<u64> = self.group.running.keys().copied().collect();
        for id in ids {
            self.group.kill(id).await;
        }
    }
}

/// Waits (at most `LOCAL_DRAIN_TIMEOUT_MS`) until `complete` says every record is
/// processed and committed, showing progress; returns what was committed.
async fn drain<B: Broker>(
    args: &LocalArgs,
    broker: &B,
    topics: &Topics,
    cluster: &Cluster,
    produced: u64,
    complete: impl Fn(&Committed) -> bool,
) -> anyhow::Result<Committed> {
    let deadline = Instant::now() + Duration::from_millis(LOCAL_DRAIN_TIMEOUT_MS);
    let mut last_progress = Instant::now();
    loop {
        let c = committed(broker, &topics.sink, &topics.dlq, args.partitions).await?;
        if complete(&c) || Instant::now() > deadline {
            println!("{}", progress_line(&cluster.fleet, produced, &c));
            return Ok(c);
        }
        if last_progress.elapsed() > Duration::from_millis(1_000) {
            println!("{}", progress_line(&cluster.fleet, produced, &c));
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Compares the committed alerts and dead letters with the independent count.
fn check(
    c: &Committed,
    expected_alerts: &std::collections::BTreeSet<expected::Alert>,
    expected_dead: u64,
) -> Verdict {
    let mut seen = BTreeMap::new();
    let mut unreadable = 0u64;
    for bytes in &c.alerts {
        match expected::parse_alert(bytes) {
            Some(a) => *seen.entry(a).or_insert(0u64) += 1,
            None => unreadable += 1,
        }
    }
    let missing = expected_alerts
        .iter()
        .filter(|a| !seen.contains_key(*a))
        .count() as u64;
    let duplicated: u64 = seen.values().map(|n| n.saturating_sub(1)).sum();
    let unexpected = seen
        .keys()
        .filter(|a| !expected_alerts.contains(*a))
        .count() as u64
        + unreadable;
    Verdict {
        missing,
        duplicated,
        unexpected,
        dead_ok: c.dead_letters == expected_dead,
    }
}

/// Prints the verdict (with `--json`, as the last stdout line, pass or fail) and fails
/// unless the check passed.
fn report(args: &LocalArgs, c: &Committed, v: &Verdict, expected_dead: u64) -> anyhow::Result<()> {
    if v.ok() {
        println!("ok: every expected alert committed exactly once");
    }
    // With --json the summary is the last line on stdout (docs/CLI.md), pass or fail.
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "events": args.events,
                "outputs": c.alerts.len(),
                "dead_letters": c.dead_letters,
                "missing": v.missing,
                "duplicated": v.duplicated,
                "ok": v.ok(),
            })
        );
    }
    if !v.ok() {
        bail!(
            "the closing check failed: {} missing, {} duplicated, {} unexpected, {} dead letters against {expected_dead} expected",
            v.missing,
            v.duplicated,
            v.unexpected,
            c.dead_letters
        );
    }
    Ok(())
}
