//! `soak`: a soak and chaos run of a whole weir deployment, run by hand (not part of CI or
//! the tests).
//!
//! Starts a real Kafka broker (`scripts/kafka/kafka.sh`), three `weir coordinator` and two
//! `weir worker` processes of a `weir` build, creates a tenant and an exactly-once job
//! (filter, dedupe, map: see [`job_spec`]) whose every output and dead letter follows from
//! its input, and produces a steady stream into the source topic for `--minutes`, about
//! one event in 500 not JSON and one in 500 failing the filter's expression (dead
//! letters). Meanwhile a seeded schedule of faults runs, one at a time, each printed with
//! its time as it happens:
//! - kill -9 of a coordinator (the leader among them) or a worker, restarted seconds later
//!   (after the memory baseline, never the first worker, so that one worker's memory is
//!   always compared);
//! - SIGSTOP then SIGCONT, seconds later, of any process: a coordinator, the leader, a
//!   worker or the Kafka broker;
//! - a full disk: coordinator 3's data directory, the second worker's data directory and
//!   the workers' shared checkpoint directory sit on small tmpfs mounts; one is filled up
//!   to ENOSPC and freed after a while (skipped, with the reason printed, when mounting is
//!   impossible);
//! - an API flood from the job's tenant: many concurrent requests, oversized and deeply
//!   nested bodies among them, and valid job submissions (cancelled after the flood).
//!
//! A process that exits by itself is recorded as a crash (or, when it ends while its own
//! disk is full or shortly after, as a storage exit, by design) and started again, as a
//! supervisor would: after 0.5 s, doubling to at most 8 s while it keeps ending within
//! 10 s of its start (systemd's `RestartSec`, see `weir_benches::soak_support`); a coordinator that keeps running but whose answers stay behind the
//! group (an older term, or an applied index far behind) for [`WEDGED_AFTER`] is recorded
//! as wedged and restarted (kill -9, start), as a health check would. At the end, with the
//! producer stopped:
//! - an independent `read_committed` reader reads the source, the sink and the dead-letter
//!   topic: every output and dead letter predicted from the source must be there exactly
//!   once, and nothing else;
//! - no partition stuck: every source partition's committed offset of the group
//!   `weir-job-<job>` reaches its log end, no committed offset stood still behind its log
//!   end for longer than [`STALL_MAX`], and no transaction was left open in the sink;
//! - the group was never leaderless (no member answering `GET /v1/cluster` that it leads
//!   at the newest term any member has reported) for longer than twice the maximum
//!   election timeout (the `--election-timeout-ms` range, a follower's wait before
//!   standing). The figure is the gap between two such answers, polled every
//!   [`LEADER_POLL`] from each member: an upper bound, by up to about two polls. A leader
//!   whose Raft core has stopped still answers that it leads, and counts until another
//!   member reports a newer term;
//! - at the end, the job is running with every partition placed and every coordinator is
//!   at the group's term, agrees on the leader and has applied the log;
//! - after the last fault, every partition caught up with the log end as it was when the
//!   fault ended within [`DRAIN_MAX`];
//! - the resident memory of each weir process not restarted since the baseline (minute 5,
//!   or half the run if shorter) grew at most [`RSS_GROWTH_MAX`] times. Each side is the
//!   median of seven samples 5 s apart (30 s from the baseline on; the end's in the
//!   fault-free last stretch, ending 5 s before the load stops), so one sample taken at a
//!   passing peak does not decide the check; a process restarted within or between the
//!   windows is not compared.
//!
//! The table of figures goes to stdout; the exit code is non-zero when a check fails.
//! Every process started dies with the run (guards that kill on drop, on success, error,
//! panic or Ctrl-C), and the tmpfs mounts are unmounted.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use reqwest::{Client, Method, StatusCode};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::time::Instant;
use weir_benches::process::{free_port, LaunchSpec, ManagedProcess};
use weir_benches::soak_support::{RestartBackoff, RssWindow, RSS_SAMPLES, RSS_SAMPLE_EVERY};
use weir_benches::weir::ADMIN_TOKEN;
use weir_benches::worker::cluster_recovery::worker_launch;
use weir_benches::worker::idle::memory_of;
use weir_benches::worker::kafka::KafkaProcess;
use weir_broker::kafka::KafkaBroker;
use weir_broker::Broker;
use weir_client::{GroupClient, Request, Timeouts};
use weir_core::leader_client::RetryPolicy;
use weir_core::wire::{ClusterStatus, JobDetail, JobState, JobSummary, SubmittedJob, TenantToken};

// ---- bounds and settings ---------------------------------------------------------------

/// Partitions of the source and sink topics.
const PARTITIONS: u32 = 4;
/// Coordinators in the group.
const COORDINATORS: usize = 3;
/// The workers' ids.
const WORKERS: [&str; 2] = ["soak-w1", "soak-w2"];
/// The coordinators' election timeout range, passed on their command line: the time a
/// follower that hears nothing from a leader waits before standing for election.
const ELECTION_TIMEOUT_MIN_MS: u64 = 300;
const ELECTION_TIMEOUT_MAX_MS: u64 = 400;
/// The longest the group may go without a member answering that it leads.
const LEADERLESS_MAX: Duration = Duration::from_millis(2 * ELECTION_TIMEOUT_MAX_MS);
/// How often each coordinator is asked for `GET /v1/cluster`.
const LEADER_POLL: Duration = Duration::from_millis(20);
/// Time one `GET /v1/cluster` may take.
const LEADER_STATUS_TIMEOUT: Duration = Duration::from_millis(1_000);
/// A member whose applied index trails the group's by more than this is behind.
const APPLIED_LAG_MAX: u64 = 200;
/// A coordinator that answers but stays behind the group this long is wedged: recorded,
/// and restarted as an operator's health check would.
const WEDGED_AFTER: Duration = Duration::from_secs(15);
/// A gap between two leadership answers longer than this is listed as a leaderless stretch.
const LEADERLESS_LISTED_MIN: Duration = Duration::from_millis(150);
/// How often the source's log ends and the job's committed offsets are sampled.
const LAG_POLL: Duration = Duration::from_millis(500);
/// Time one Kafka metadata or offsets request may take.
const KAFKA_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// After the last fault, every partition must catch up with the log end within this.
const DRAIN_MAX: Duration = Duration::from_secs(30);
/// Once the producer stops, the committed offsets must reach the log end within this.
const FINAL_LAG_MAX: Duration = Duration::from_secs(30);
/// And the run waits at most this long for them, to report how long it took.
const FINAL_LAG_WAIT: Duration = Duration::from_secs(90);
/// A partition whose committed offset stands still this long behind its log end is stuck.
const STALL_MAX: Duration = Duration::from_secs(60);
/// Resident memory at the end may be at most this multiple of the baseline.
const RSS_GROWTH_MAX: f64 = 1.1;
/// How often every process's RSS is logged.
const RSS_LOG_EVERY: Duration = Duration::from_secs(60);
/// When the memory baseline is taken (or at half the run, if that is sooner).
const RSS_BASELINE_AT: Duration = Duration::from_secs(5 * 60);
/// No fault before this, so the job is flowing first.
const FAULTS_START: Duration = Duration::from_secs(30);
/// No fault in the last stretch of the run, so the drain after the last one is measured.
const QUIET_TAIL: Duration = Duration::from_secs(60);
/// Seconds between the end of a fault and the start of the next, drawn in this range.
const FAULT_GAP_S: (u64, u64) = (10, 30);
/// Seconds a killed process stays down before its restart.
const KILL_DOWN_S: (u64, u64) = (1, 5);
/// Seconds a process stays stopped.
const PAUSE_S: (u64, u64) = (2, 8);
/// Seconds a full disk stays full.
const DISK_FULL_S: (u64, u64) = (10, 20);
/// Seconds an API flood lasts.
const FLOOD_S: (u64, u64) = (5, 10);
/// Directories on a tmpfs of their own, for the disk-full faults.
const DISK_TARGETS: usize = 3;
/// Size of each tmpfs data directory.
const TMPFS_SIZE_MIB: u64 = 128;
/// Chunk the disk filler writes.
const FILL_CHUNK_BYTES: usize = 1 << 20;
/// Requests in flight during an API flood.
const FLOOD_CONCURRENCY: usize = 32;
/// Time one flood request may take.
const FLOOD_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// An oversized body: above the coordinators' 8 MiB body limit.
const OVERSIZED_BODY_BYTES: usize = 9 * 1024 * 1024;
/// Nesting of the deeply nested bodies.
const NESTING_DEPTH: usize = 100_000;
/// Distinct names of the valid jobs a flood submits (later ones are refused as duplicates).
const FLOOD_JOB_NAMES: usize = 4;
/// Every this many events, one repeats the dedupe key of the event before it in its
/// partition (and must be dropped when that one passed the filter).
const DUP_EVERY: u64 = 50;
/// The dedupe stage's ttl, in seconds.
const DEDUPE_TTL_S: u64 = 10;
/// Every this many events, one is not JSON at all (dead-lettered `undecodable`).
const POISON_EVERY: u64 = 997;
/// Every this many events, one has a string amount (dead-lettered `expression_error`).
const EXPRESSION_ERROR_EVERY: u64 = 1_009;
/// The retries of one setup or cleanup API call, across the coordinators.
const API_POLICY: RetryPolicy = RetryPolicy {
    attempts_max: 40,
    deadline_ms: 120_000,
    backoff_min_ms: 250,
    backoff_max_ms: 2_000,
    too_many_requests_max: 8,
    retry_after_default_ms: 1_000,
    retry_after_max_ms: 5_000,
};
/// Time one setup API request may take.
const API_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on the group electing a leader, the job being placed and output flowing.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on reading one topic whole at the end.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the end-of-run checks of the group (caught up, placed) may take.
const GROUP_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after its disk is freed a process's exit still counts as ending on the
/// storage error the full disk caused.
const STORAGE_EXIT_GRACE: Duration = Duration::from_secs(30);
/// How often the main loop looks for processes that exited by themselves.
const CRASH_POLL: Duration = Duration::from_millis(250);
/// Bounds on the flags.
const MINUTES_MAX: u64 = 24 * 60;
const RATE_MAX: u64 = 50_000;
/// Examples listed per kind of discrepancy.
const EXAMPLES_MAX: usize = 10;
/// Pause of the producer between two top-ups to its rate.
const PRODUCER_TICK: Duration = Duration::from_millis(5);
/// Bound on flushing the producer at the end.
const PRODUCER_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

const SOURCE: &str = "soak-in";
const SINK: &str = "soak-out";
const DEAD_LETTERS: &str = "soak-dlq";
const FLOOD_SOURCE: &str = "soak-flood-in";
const TENANT: &str = "soak";

#[derive(Debug, Parser)]
#[command(about = "A soak and chaos run of weir: real Kafka, 3 coordinators, 2 workers, faults")]
struct Args {
    /// Length of the run (steady load all along), in minutes.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seed of the fault schedule and of the events' amounts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Events produced per second into the source topic.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// The `weir` binary (build it with `cargo build --release -p weir-api --bin weir`).
    #[arg(long, env = "WEIR_BIN", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/weir"))]
    weir_bin: PathBuf,
    /// Directory for the processes' data and logs (kept after the run); a new one under
    /// the system's temporary directory by default.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the fault schedule of `--seed` and `--minutes` and exit.
    #[arg(long)]
    dry_run: bool,
    /// Keep only these kinds of fault of the seed's schedule, at their times (to look into
    /// one kind, such as the memory the floods leave); every kind by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<FaultClass>,
}

/// The kinds of fault, as `--faults` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FaultClass {
    Kill,
    Pause,
    Disk,
    Flood,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    weir_benches::bench_main::run(
        "soak",
        weir_benches::bench_main::Runtime::MultiThread,
        run(args),
    )
}

// ---- events and what the job makes of them --------------------------------------------

/// The job: a filter, a dedupe (state that is checkpointed, kept key by key in the
/// workers' local redb and restored on recovery) and a map. Every event carries its own
/// dedupe key but every [`DUP_EVERY`]th repeats the key of the event [`PARTITIONS`] before
/// it (the one before it in its partition), so that whether it is dropped depends on the
/// state: every output follows from the input.
fn job_spec() -> String {
    format!(
        r#"name: soak
source: {{ topic: {SOURCE}, format: json, event_time: ts, max_out_of_orderness: 5s }}
pipeline:
  - filter: "amount % 4 != 0"
  - dedupe: {{ key: "dup", ttl: {DEDUPE_TTL_S}s }}
  - map: {{ seq: "seq", amount: "amount", double: "amount * 2" }}
sink: {{ topic: {SINK}, format: json, delivery: exactly_once }}
dead_letter_topic: {DEAD_LETTERS}
checkpoint_interval: 1s
"#
    )
}

/// What the job must make of event `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// One output `{"amount":a,"double":2a,"seq":seq}`.
    Output(i64),
    /// Filtered out: nothing.
    Dropped,
    /// One dead letter with this reason.
    DeadLetter(&'static str),
}

/// SplitMix64: the events' amounts from the seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn amount_of(seed: u64, seq: u64) -> i64 {
    (mix(seed ^ mix(seq)) % 1_000) as i64
}

fn fate(seed: u64, seq: u64) -> Fate {
    if seq % POISON_EVERY == POISON_EVERY - 1 {
        return Fate::DeadLetter("undecodable");
    }
    if seq % EXPRESSION_ERROR_EVERY == EXPRESSION_ERROR_EVERY - 1 {
        return Fate::DeadLetter("expression_error");
    }
    let amount = amount_of(seed, seq);
    if amount % 4 != 0 {
        Fate::Output(amount)
    } else {
        Fate::Dropped
    }
}

const POISON_PREFIX: &str = "soak poison seq=";

/// The dedupe key of event `seq`: its own, or the key of the event before it in its
/// partition for every [`DUP_EVERY`]th.
fn dup_of(seq: u64) -> u64 {
    if seq % DUP_EVERY == DUP_EVERY - 1 && seq >= u64::from(PARTITIONS) {
        seq - u64::from(PARTITIONS)
    } else {
        seq
    }
}

/// What the job must make of event `seq`, the dedupe included, given the source: by seq,
/// (copies in the source, offset, event time).
fn predicted(seed: u64, source: &[(u8, i64, i64)], seq: u64) -> Fate {
    let own = fate(seed, seq);
    let key = dup_of(seq);
    if key == seq || !matches!(own, Fate::Output(_)) {
        return own;
    }
    // The earlier event with this key was kept by the dedupe if it passed the filter; it
    // is remembered within the ttl (the watermark trails by 5 s, well inside the ttl).
    let (Some(earlier), Some(this)) = (source.get(key as usize), source.get(seq as usize)) else {
        return own;
    };
    let ttl_ms = DEDUPE_TTL_S as i64 * 1_000;
    if earlier.0 > 0
        && matches!(fate(seed, key), Fate::Output(_))
        && (this.2 - earlier.2).abs() < ttl_ms
    {
        Fate::Dropped
    } else {
        own
    }
}

/// The source record of event `seq` at wall-clock time `ts_ms`.
fn event(seed: u64, seq: u64, ts_ms: i64) -> String {
    match fate(seed, seq) {
        Fate::DeadLetter("undecodable") => format!("{POISON_PREFIX}{seq} {{"),
        Fate::DeadLetter(_) => {
            format!(r#"{{"seq":{seq},"dup":{seq},"amount":"x","ts":{ts_ms}}}"#)
        }
        _ => format!(
            r#"{{"seq":{seq},"dup":{},"amount":{},"ts":{ts_ms}}}"#,
            dup_of(seq),
            amount_of(seed, seq)
        ),
    }
}

/// The sequence number and time of a source record (or a dead letter's payload).
fn parse_event(payload: &[u8]) -> Option<(u64, Option<i64>)> {
    let text = std::str::from_utf8(payload).ok()?;
    if let Some(rest) = text.strip_prefix(POISON_PREFIX) {
        let seq = rest.split(' ').next()?.parse().ok()?;
        return Some((seq, None));
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    Some((value.get("seq")?.as_u64()?, value.get("ts")?.as_i64()))
}

/// Wall-clock milliseconds since the Unix epoch (the events' time).
#[allow(clippy::disallowed_methods)]
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---- the load ----------------------------------------------------------------------------

/// A thread producing events at a steady rate, round robin over the source partitions.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: Option<JoinHandle<anyhow::Result<u64>>>,
}

impl Load {
    fn start(bootstrap: &str, seed: u64, rate: u64) -> anyhow::Result<Load> {
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "soak-load")
            .set("allow.auto.create.topics", "false")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "none")
            .create()
            .context("cannot create the load producer")?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stopping, counter) = (stop.clone(), sent.clone());
        let handle = std::thread::Builder::new()
            .name("soak-load".into())
            .spawn(move || -> anyhow::Result<u64> {
                let started = Instant::now();
                let mut seq = 0u64;
                while !stopping.load(Ordering::Relaxed) {
                    let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                    while seq < due && !stopping.load(Ordering::Relaxed) {
                        let value = event(seed, seq, wall_ms());
                        let mut record = BaseRecord::<[u8], [u8]>::to(SOURCE)
                            .partition((seq % u64::from(PARTITIONS)) as i32)
                            .payload(value.as_bytes());
                        loop {
                            match producer.send(record) {
                                Ok(()) => break,
                                Err((
                                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                    back,
                                )) => {
                                    record = back;
                                    std::thread::sleep(PRODUCER_TICK);
                                }
                                Err((e, _)) => return Err(e).context("the load producer failed"),
                            }
                        }
                        seq += 1;
                        counter.store(seq, Ordering::Relaxed);
                    }
                    std::thread::sleep(PRODUCER_TICK);
                }
                producer
                    .flush(PRODUCER_FLUSH_TIMEOUT)
                    .context("the load producer could not deliver everything")?;
                Ok(seq)
            })
            .context("cannot start the load producer")?;
        Ok(Load {
            stop,
            sent,
            handle: Some(handle),
        })
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops producing and flushes; returns the events sent.
    fn finish(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the load producer panicked"),
            None => Ok(0),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

// ---- watching the group's leadership -----------------------------------------------------

/// Answers claiming leadership, and the gaps between them.
#[derive(Debug, Default)]
struct LeaderLog {
    /// The last answer of a member saying it leads: when, and which member.
    last_claim: Option<(Instant, usize)>,
    /// Gaps between two leadership answers above [`LEADERLESS_LISTED_MIN`]: start, length.
    stretches: Vec<(Instant, Duration)>,
    /// The longest gap seen, whatever its length.
    longest: Duration,
    /// Answers received per member.
    answers: [u64; COORDINATORS],
    /// The highest term and applied index any member reported.
    max_term: u64,
    max_applied: u64,
    /// Per member: since when its answers show it behind the group (an older term, or an
    /// applied index more than [`APPLIED_LAG_MAX`] behind), while they do.
    behind_since: [Option<Instant>; COORDINATORS],
    /// Per member: its last answer (term, leader, applied index).
    last: [Option<(u64, Option<u64>, u64)>; COORDINATORS],
}

/// Pollers of every coordinator's `GET /v1/cluster`, on a thread and runtime of their own
/// so that the run's own load (the API flood) cannot delay them.
struct LeaderWatch {
    log: Arc<Mutex<LeaderLog>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl LeaderWatch {
    fn start(addrs: Vec<String>) -> anyhow::Result<LeaderWatch> {
        let log = Arc::new(Mutex::new(LeaderLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (log.clone(), stop.clone());
        let http = Client::builder()
            .timeout(LEADER_STATUS_TIMEOUT)
            .connect_timeout(LEADER_STATUS_TIMEOUT)
            .tcp_nodelay(true)
            .build()
            .context("cannot build the leader watch's HTTP client")?;
        let handle = std::thread::Builder::new()
            .name("soak-leader-watch".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let pollers = addrs.into_iter().enumerate().map(|(member, addr)| {
                        let (http, log, stop) = (http.clone(), l.clone(), s.clone());
                        async move {
                            while !stop.load(Ordering::Relaxed) {
                                let own_id = member as u64 + 1;
                                let answer = http
                                    .get(format!("http://{addr}/v1/cluster"))
                                    .bearer_auth(ADMIN_TOKEN)
                                    .send()
                                    .await;
                                if let Ok(response) = answer {
                                    if let Ok(status) = response.json::<ClusterStatus>().await {
                                        let now = Instant::now();
                                        let mut log = lock(&log);
                                        log.answers[member] += 1;
                                        log.max_term = log.max_term.max(status.term);
                                        log.max_applied = log.max_applied.max(status.last_applied);
                                        let behind = status.term < log.max_term
                                            || status.last_applied + APPLIED_LAG_MAX
                                                < log.max_applied;
                                        log.behind_since[member] = match log.behind_since[member] {
                                            Some(t) if behind => Some(t),
                                            _ => behind.then_some(now),
                                        };
                                        log.last[member] =
                                            Some((status.term, status.leader, status.last_applied));
                                        // A member that says it leads at an older term than
                                        // another member has seen (paused, or its Raft core
                                        // stopped) is not the group's leader.
                                        if status.leader == Some(own_id)
                                            && status.term >= log.max_term
                                        {
                                            if let Some((at, _)) = log.last_claim {
                                                let gap = now.saturating_duration_since(at);
                                                log.longest = log.longest.max(gap);
                                                if gap > LEADERLESS_LISTED_MIN {
                                                    log.stretches.push((at, gap));
                                                }
                                            }
                                            log.last_claim = Some((now, member));
                                        }
                                    }
                                }
                                tokio::time::sleep(LEADER_POLL).await;
                            }
                        }
                    });
                    futures::future::join_all(pollers).await;
                });
            })
            .context("cannot start the leader watch")?;
        Ok(LeaderWatch {
            log,
            stop,
            handle: Some(handle),
        })
    }

    /// The member that last said it leads, if it said so in the last second.
    fn leader(&self) -> Option<usize> {
        let log = lock(&self.log);
        let (at, member) = log.last_claim?;
        (at.elapsed() < Duration::from_secs(1)).then_some(member)
    }

    /// Forgets whether `member` was behind (it was restarted or resumed).
    fn forget(&self, member: usize) {
        lock(&self.log).behind_since[member] = None;
    }

    /// Members whose answers have shown them behind the group for longer than `after`.
    fn wedged(&self, after: Duration) -> Vec<(usize, String)> {
        let log = lock(&self.log);
        (0..COORDINATORS)
            .filter_map(|m| {
                let since = log.behind_since[m]?;
                (since.elapsed() > after).then(|| {
                    let (term, leader, applied) = log.last[m].unwrap_or_default();
                    (
                        m,
                        format!(
                            "behind for {:.0} s: says term {term}, leader {leader:?}, applied {applied}; the group has reached term {} and applied {}",
                            since.elapsed().as_secs_f64(),
                            log.max_term,
                            log.max_applied
                        ),
                    )
                })
            })
            .collect()
    }

    /// Every member's last answer, for the report.
    fn views(&self) -> String {
        let log = lock(&self.log);
        (0..COORDINATORS)
            .map(|m| match log.last[m] {
                Some((term, leader, applied)) => format!(
                    "c{}: term {term}, leader {}, applied {applied}",
                    m + 1,
                    leader.map_or("none".into(), |l| format!("c{l}"))
                ),
                None => format!("c{}: no answer", m + 1),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Stops the pollers; the current gap, if any, counts as a stretch.
    fn finish(&mut self) -> LeaderLog {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        let mut log = std::mem::take(&mut *lock(&self.log));
        if let Some((at, _)) = log.last_claim {
            let gap = at.elapsed();
            log.longest = log.longest.max(gap);
            if gap > LEADERLESS_LISTED_MIN {
                log.stretches.push((at, gap));
            }
        }
        log
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- watching the job's consumer lag -------------------------------------------------------

/// The source's log ends and the job's committed offsets at one moment.
#[derive(Debug, Clone)]
struct LagSample {
    at: Instant,
    end: Vec<i64>,
    /// -1 where the group has committed nothing yet.
    committed: Vec<i64>,
}

/// Samples of the job's lag, taken on a thread of their own every [`LAG_POLL`].
struct LagWatch {
    samples: Arc<Mutex<Vec<LagSample>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl LagWatch {
    fn start(bootstrap: &str, group: &str) -> anyhow::Result<LagWatch> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "soak-lag")
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("cannot create the lag watch's consumer")?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (out, s) = (samples.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("soak-lag-watch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(sample) = lag_sample(&consumer) {
                        lock(&out).push(sample);
                    }
                    std::thread::sleep(LAG_POLL);
                }
            })
            .context("cannot start the lag watch")?;
        Ok(LagWatch {
            samples,
            stop,
            handle: Some(handle),
        })
    }

    fn latest(&self) -> Option<LagSample> {
        lock(&self.samples).last().cloned()
    }

    fn finish(mut self) -> Vec<LagSample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        std::mem::take(&mut *lock(&self.samples))
    }
}

impl Drop for LagWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn lag_sample(consumer: &BaseConsumer) -> Option<LagSample> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition(SOURCE, p);
    }
    // The log ends first: a committed offset read after them can only be further on.
    let end = (0..PARTITIONS as i32)
        .map(|p| {
            consumer
                .fetch_watermarks(SOURCE, p, KAFKA_REQUEST_TIMEOUT)
                .ok()
                .map(|(_, high)| high)
        })
        .collect::<Option<Vec<i64>>>()?;
    let at = Instant::now();
    let committed = consumer
        .committed_offsets(tpl, KAFKA_REQUEST_TIMEOUT)
        .ok()?;
    let committed = (0..PARTITIONS as i32)
        .map(
            |p| match committed.find_partition(SOURCE, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            },
        )
        .collect();
    Some(LagSample { at, end, committed })
}

fn caught_up(sample: &LagSample, target: &[i64]) -> bool {
    sample
        .committed
        .iter()
        .zip(target)
        .all(|(committed, end)| committed >= end)
}

// ---- the processes -------------------------------------------------------------------------

/// One weir process of the run.
struct Proc {
    name: String,
    process: ManagedProcess,
    /// Starts so far (1 for the first).
    incarnation: u32,
    /// Killed by the run and not yet restarted.
    down: bool,
    /// When the running incarnation started.
    started: Instant,
    /// Ended by itself: restarted at this time (the supervisor's backoff).
    restart_at: Option<Instant>,
    /// Delays between restarts after it ends by itself.
    backoff: RestartBackoff,
}

impl Proc {
    fn start(name: &str, spec: LaunchSpec) -> anyhow::Result<Proc> {
        Ok(Proc {
            name: name.to_string(),
            process: ManagedProcess::start(spec)?,
            incarnation: 1,
            down: false,
            started: Instant::now(),
            restart_at: None,
            backoff: RestartBackoff::default(),
        })
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart()?;
        self.incarnation += 1;
        self.down = false;
        self.started = Instant::now();
        self.restart_at = None;
        Ok(())
    }
}

/// A tmpfs mounted over a data directory; unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={TMPFS_SIZE_MIB}m"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .context("cannot run mount")?;
        if !out.status.success() {
            bail!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn filler(&self) -> PathBuf {
        self.path.join("soak-filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still holds a file there must not keep the mount forever.
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

/// Sends SIGCONT to a stopped process when dropped (also on an early exit of the run).
struct Stopped {
    pid: u32,
}

impl Stopped {
    fn stop(pid: u32) -> anyhow::Result<Stopped> {
        signal(pid, "STOP")?;
        Ok(Stopped { pid })
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = signal(self.pid, "CONT");
    }
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

// ---- the API -------------------------------------------------------------------------------

/// Setup and cleanup calls to the group, through the production leader-sticky client.
struct Api {
    group: GroupClient,
}

impl Api {
    /// Sends until a final answer arrives (anything but a 503, and 429s once waited out),
    /// within [`API_POLICY`]; the same idempotency key on every attempt.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let key = format!("soak-{path}-{}", wall_ms());
        let content_type = match body.map(str::trim_start) {
            Some(b) if b.starts_with('{') => "application/json",
            _ => "application/yaml",
        };
        let request = Request {
            method: method.clone(),
            path,
            token: Some(token),
            idempotency_key: Some(&key),
            body: body.map(|b| (Bytes::copy_from_slice(b.as_bytes()), content_type)),
        };
        let reply = self
            .group
            .send(&request)
            .await
            .with_context(|| format!("{method} {path}"))?;
        Ok((
            reply.status,
            String::from_utf8_lossy(&reply.body).into_owned(),
        ))
    }

    /// A call that must succeed, decoded.
    async fn ok<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&str>,
    ) -> anyhow::Result<T> {
        let (status, text) = self.call(method.clone(), path, token, body).await?;
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path} answered {text}"))
    }
}

// ---- the fault schedule ----------------------------------------------------------------

/// Which weir process a kill or pause hits.
#[derive(Debug, Clone, Copy)]
enum Target {
    Coordinator(usize),
    /// Whichever coordinator leads when the fault starts.
    Leader,
    Worker(usize),
    /// Pauses only.
    Kafka,
}

#[derive(Debug, Clone, Copy)]
enum FaultKind {
    Kill { target: Target, down: Duration },
    Pause { target: Target, hold: Duration },
    DiskFull { mount: usize, hold: Duration },
    Flood { hold: Duration },
}

impl FaultKind {
    fn name(&self) -> &'static str {
        match self {
            FaultKind::Kill { .. } => "kill -9 and restart",
            FaultKind::Pause { .. } => "SIGSTOP, SIGCONT",
            FaultKind::DiskFull { .. } => "disk full",
            FaultKind::Flood { .. } => "API flood",
        }
    }

    fn class(&self) -> FaultClass {
        match self {
            FaultKind::Kill { .. } => FaultClass::Kill,
            FaultKind::Pause { .. } => FaultClass::Pause,
            FaultKind::DiskFull { .. } => FaultClass::Disk,
            FaultKind::Flood { .. } => FaultClass::Flood,
        }
    }

    fn length(&self) -> Duration {
        match *self {
            FaultKind::Kill { down, .. } => down,
            FaultKind::Pause { hold, .. }
            | FaultKind::DiskFull { hold, .. }
            | FaultKind::Flood { hold } => hold,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct PlannedFault {
    /// From the start of the load.
    at: Duration,
    kind: FaultKind,
}

fn secs(rng: &mut SmallRng, (lo, hi): (u64, u64)) -> Duration {
    Duration::from_secs(rng.gen_range(lo..=hi))
}

/// The seeded schedule: the first four faults are one of each kind in a seeded order,
/// then kinds are drawn; faults never overlap. `mounts` is how many disk-full targets
/// there are (0: no disk faults). Kills after `spare_after` never hit `spared_worker`, so
/// that one worker's memory can be compared over the run.
fn schedule(seed: u64, run: Duration, mounts: usize, spare_after: Duration) -> Vec<PlannedFault> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let last_start = run.saturating_sub(QUIET_TAIL);
    let mut kinds_first = [0u8, 1, 2, 3];
    kinds_first.shuffle(&mut rng);
    let mut plan = Vec::new();
    let mut at = FAULTS_START;
    while at < last_start {
        let class = match kinds_first.get(plan.len()) {
            Some(k) => *k,
            None => match rng.gen_range(0..100) {
                0..=34 => 0,
                35..=69 => 1,
                70..=84 => 2,
                _ => 3,
            },
        };
        let kind = match class {
            0 => {
                let choices: &[Target] = if at >= spare_after {
                    &[
                        Target::Coordinator(0),
                        Target::Coordinator(1),
                        Target::Coordinator(2),
                        Target::Leader,
                        Target::Leader,
                        Target::Worker(1),
                    ]
                } else {
                    &[
                        Target::Coordinator(0),
                        Target::Coordinator(1),
                        Target::Coordinator(2),
                        Target::Leader,
                        Target::Worker(0),
                        Target::Worker(1),
                    ]
                };
                FaultKind::Kill {
                    target: *choices.choose(&mut rng).unwrap_or(&Target::Leader),
                    down: secs(&mut rng, KILL_DOWN_S),
                }
            }
            1 => {
                let choices = [
                    Target::Coordinator(0),
                    Target::Coordinator(1),
                    Target::Coordinator(2),
                    Target::Leader,
                    Target::Leader,
                    Target::Worker(0),
                    Target::Worker(1),
                    Target::Kafka,
                ];
                FaultKind::Pause {
                    target: *choices.choose(&mut rng).unwrap_or(&Target::Leader),
                    hold: secs(&mut rng, PAUSE_S),
                }
            }
            2 if mounts > 0 => FaultKind::DiskFull {
                mount: rng.gen_range(0..mounts),
                hold: secs(&mut rng, DISK_FULL_S),
            },
            // Without a tmpfs the disk fault is skipped at run time, with its reason.
            2 => FaultKind::DiskFull {
                mount: usize::MAX,
                hold: secs(&mut rng, DISK_FULL_S),
            },
            _ => FaultKind::Flood {
                hold: secs(&mut rng, FLOOD_S),
            },
        };
        plan.push(PlannedFault { at, kind });
        at += kind.length() + secs(&mut rng, FAULT_GAP_S);
    }
    plan
}

/// One fault as it happened.
#[derive(Debug, Clone)]
struct DoneFault {
    kind: &'static str,
    what: String,
    start: Instant,
    end: Instant,
    skipped: bool,
}

// ---- the run -------------------------------------------------------------------------------

/// Everything the fault loop works on.
struct Soak {
    started: Instant,
    /// Coordinators first (member i has id i + 1), then the workers.
    procs: Vec<Proc>,
    coordinator_addrs: Vec<String>,
    /// Disk-full targets: (tmpfs, the process using it).
    mounts: Vec<(Tmpfs, String)>,
    mount_skipped: Option<String>,
    kafka_pid: Option<u32>,
    leader: LeaderWatch,
    api: Api,
    tenant_token: String,
    soak_job: u64,
    seed: u64,
    done: Vec<DoneFault>,
    /// Processes that exited by themselves: name, time, last lines of the log.
    crashes: Vec<(String, Instant, String)>,
    /// Coordinators found running but behind the group: name, time, what they said.
    wedged: Vec<(String, Instant, String)>,
    /// Processes that ended on a storage error while their disk was full (or shortly
    /// after), as designed: a failed fsync ends a coordinator rather than being retried.
    storage_exits: Vec<(String, Instant)>,
    /// Disk-full faults: whose disk it was (the process's name begins the description),
    /// and until when its exit counts as a storage exit.
    full_disks: Vec<(String, Instant)>,
    /// The process the current pause holds stopped.
    paused: Option<usize>,
    /// The memory windows: the baseline's (from minute 5) and the end's (the run's last
    /// stretch, fault-free), each with its start.
    /// Each: its start, VmRSS (the check) and RssAnon (its anonymous part, reported).
    rss_baseline: (Instant, RssWindow, RssWindow),
    rss_end: (Instant, RssWindow, RssWindow),
    /// When every process's RSS is next logged (a growth curve for the log, not a check).
    rss_logged_next: Instant,
}

impl Soak {
    fn t(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_secs_f64()
    }

    fn say(&self, text: &str) {
        println!("[t+{:7.1}s] {text}", self.t(Instant::now()));
        let _ = std::io::stdout().flush();
    }

    /// Sleeps until `until`, restarting processes that exit by themselves and taking the
    /// memory baseline when it is due.
    async fn idle_until(&mut self, until: Instant) -> anyhow::Result<()> {
        loop {
            self.check_crashes()?;
            self.sample_rss();
            if Instant::now() >= self.rss_logged_next {
                self.rss_logged_next += RSS_LOG_EVERY;
                self.log_rss();
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep((until - now).min(CRASH_POLL)).await;
        }
    }

    /// Records processes that ended by themselves and restarts them once their backoff
    /// delay has passed (as systemd's `Restart=on-failure` with a doubling `RestartSec`);
    /// restarts coordinators found wedged.
    fn check_crashes(&mut self) -> anyhow::Result<()> {
        let mut crashed = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            if !p.down && p.restart_at.is_none() && p.process.exited() {
                crashed.push(i);
            }
        }
        for i in crashed {
            let tail = log_tail(self.procs[i].process.log());
            let name = self.procs[i].name.clone();
            let now = Instant::now();
            let uptime = now.saturating_duration_since(self.procs[i].started);
            let delay = self.procs[i].backoff.on_exit(uptime);
            // The disk's description begins with its owner's name: "c3's data directory".
            let owner = format!("{name}'s ");
            let disk_was_full = self
                .full_disks
                .iter()
                .any(|(user, until)| user.starts_with(owner.as_str()) && now <= *until);
            if disk_was_full {
                self.say(&format!(
                    "EXIT: {name} ended on a storage error while its disk was full, as designed (up {}); restarting it in {}. Its log ends:\n{tail}",
                    fmt_s(uptime),
                    fmt_s(delay)
                ));
                self.storage_exits.push((name, now));
            } else {
                self.say(&format!(
                    "CRASH: {name} exited by itself (up {}); restarting it in {}. Its log ends:\n{tail}",
                    fmt_s(uptime),
                    fmt_s(delay)
                ));
                self.crashes.push((name, now, tail));
            }
            let p = &mut self.procs[i];
            p.process.reap();
            p.restart_at = Some(now + delay);
            if i < COORDINATORS {
                self.leader.forget(i);
            }
        }
        let now = Instant::now();
        for i in 0..self.procs.len() {
            if self.procs[i].restart_at.is_some_and(|at| now >= at) {
                self.procs[i].restart()?;
                self.say(&format!("      restarted {}", self.procs[i].name));
                if i < COORDINATORS {
                    self.leader.forget(i);
                }
            }
        }
        for (i, detail) in self.leader.wedged(WEDGED_AFTER) {
            if self.procs[i].down || self.procs[i].restart_at.is_some() || self.paused == Some(i) {
                continue;
            }
            let name = self.procs[i].name.clone();
            self.say(&format!(
                "WEDGED: {name} is running but {detail}; kill -9 and restart, as a health check would"
            ));
            self.wedged.push((name, Instant::now(), detail));
            let p = &mut self.procs[i];
            p.process.kill()?;
            p.process.reap();
            p.restart()?;
            self.leader.forget(i);
        }
        Ok(())
    }

    /// Logs every process's RSS and thread count now.
    fn log_rss(&self) {
        let text = self
            .procs
            .iter()
            .map(
                |p| match p.process.pid().and_then(|pid| memory_of(pid).ok()) {
                    Some(m) => format!(
                        "{} {:.1} MiB (anon {:.1}, file {:.1}; {} threads, start {})",
                        p.name,
                        m.rss_kib as f64 / 1024.0,
                        m.rss_anon_kib as f64 / 1024.0,
                        m.rss_file_kib as f64 / 1024.0,
                        m.threads,
                        p.incarnation
                    ),
                    None => format!("{} not running", p.name),
                },
            )
            .collect::<Vec<_>>()
            .join(", ");
        self.say(&format!("memory: {text}"));
    }

    /// Takes the memory samples that are due, in either window; says each window's
    /// samples once it is complete.
    fn sample_rss(&mut self) {
        let now = Instant::now();
        for end_window in [false, true] {
            let (start, window, _) = if end_window {
                &self.rss_end
            } else {
                &self.rss_baseline
            };
            if now < *start || !window.due(now.saturating_duration_since(*start)) {
                continue;
            }
            let memory: Vec<(String, u32, Option<_>)> = self
                .procs
                .iter()
                .map(|p| {
                    let m = p.process.pid().and_then(|pid| memory_of(pid).ok());
                    (p.name.clone(), p.incarnation, m)
                })
                .collect();
            let (_, window, anon) = if end_window {
                &mut self.rss_end
            } else {
                &mut self.rss_baseline
            };
            anon.record(
                memory
                    .iter()
                    .map(|(n, i, m)| (n.clone(), *i, m.map(|m| m.rss_anon_kib))),
            );
            window.record(
                memory
                    .into_iter()
                    .map(|(n, i, m)| (n, i, m.map(|m| m.rss_kib))),
            );
            if window.complete() {
                let window = window.clone();
                let text = window
                    .figures()
                    .iter()
                    .map(|(name, f)| {
                        format!(
                            "{name} median {:.1} MiB of {:?} KiB",
                            f.median_kib as f64 / 1024.0,
                            window.samples_of(name)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let which = if end_window { "end" } else { "baseline" };
                self.say(&format!("memory {which} (RSS): {text}"));
            }
        }
    }

    fn resolve(&self, target: Target) -> Option<usize> {
        match target {
            Target::Coordinator(i) => Some(i),
            Target::Leader => self.leader.leader(),
            Target::Worker(i) => Some(COORDINATORS + i),
            Target::Kafka => None,
        }
    }

    async fn run_fault(&mut self, kind: FaultKind) -> anyhow::Result<()> {
        let start = Instant::now();
        let (what, skipped) = match kind {
            FaultKind::Kill { target, down } => {
                let Some(i) = self.resolve(target) else {
                    let what: String =
                        "kill -9 of the leader: no member said it leads; skipped".into();
                    self.say(&what);
                    self.finish_fault(kind, what, start, true);
                    return Ok(());
                };
                let name = self.procs[i].name.clone();
                let leader_note = if matches!(target, Target::Leader) {
                    " (the leader)"
                } else {
                    ""
                };
                // A process waiting for its restart after ending by itself has none to kill.
                if self.procs[i].process.pid().is_some() {
                    self.procs[i].process.kill()?;
                }
                self.procs[i].process.reap();
                self.procs[i].down = true;
                self.procs[i].restart_at = None;
                self.say(&format!(
                    "FAULT kill -9 {name}{leader_note}; restart in {} s",
                    down.as_secs()
                ));
                self.idle_until(Instant::now() + down).await?;
                self.procs[i].restart()?;
                if i < COORDINATORS {
                    self.leader.forget(i);
                }
                self.say(&format!("      restarted {name}"));
                (
                    format!("kill -9 {name}{leader_note}, down {} s", down.as_secs()),
                    false,
                )
            }
            FaultKind::Pause { target, hold } => {
                let (pid, name) = match (target, self.resolve(target)) {
                    (Target::Kafka, _) => (self.kafka_pid, "the Kafka broker".to_string()),
                    (Target::Leader, Some(i)) => (
                        self.procs[i].process.pid(),
                        format!("{} (the leader)", self.procs[i].name),
                    ),
                    (_, Some(i)) => (self.procs[i].process.pid(), self.procs[i].name.clone()),
                    (_, None) => (None, "the leader".to_string()),
                };
                let Some(pid) = pid else {
                    let what = format!("SIGSTOP of {name}: no process id; skipped");
                    self.say(&what);
                    self.finish_fault(kind, what, start, true);
                    return Ok(());
                };
                let index = match target {
                    Target::Kafka => None,
                    _ => self.resolve(target),
                };
                self.paused = index;
                let stopped = Stopped::stop(pid)?;
                self.say(&format!(
                    "FAULT SIGSTOP {name} (pid {pid}); SIGCONT in {} s",
                    hold.as_secs()
                ));
                self.idle_until(Instant::now() + hold).await?;
                drop(stopped);
                self.paused = None;
                if let Some(i) = index.filter(|i| *i < COORDINATORS) {
                    self.leader.forget(i);
                }
                self.say(&format!("      SIGCONT {name}"));
                (format!("SIGSTOP {name} for {} s", hold.as_secs()), false)
            }
            FaultKind::DiskFull { mount, hold } => {
                let Some((tmpfs, user)) = self.mounts.get(mount) else {
                    let what = format!(
                        "disk full: skipped, {}",
                        self.mount_skipped.clone().unwrap_or_default()
                    );
                    self.say(&what);
                    self.finish_fault(kind, what, start, true);
                    return Ok(());
                };
                let (filler, user) = (tmpfs.filler(), user.clone());
                self.full_disks
                    .push((user.clone(), Instant::now() + hold + STORAGE_EXIT_GRACE));
                let written = fill_disk(&filler)?;
                self.say(&format!(
                    "FAULT disk full: {user} (tmpfs {TMPFS_SIZE_MIB} MiB) filled with {} MiB up to ENOSPC; freed in {} s",
                    written >> 20,
                    hold.as_secs()
                ));
                self.idle_until(Instant::now() + hold).await?;
                std::fs::remove_file(&filler)
                    .with_context(|| format!("cannot remove {}", filler.display()))?;
                self.say(&format!("      freed {user}"));
                (format!("{user} full for {} s", hold.as_secs()), false)
            }
            FaultKind::Flood { hold } => {
                self.say(&format!(
                    "FAULT API flood from tenant {TENANT}: {FLOOD_CONCURRENCY} requests in flight for {} s",
                    hold.as_secs()
                ));
                let outcomes = self.flood(hold).await?;
                let total: u64 = outcomes.values().sum();
                let text = outcomes
                    .iter()
                    .map(|(k, n)| format!("        {n:6} {k}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                self.say(&format!("      flood over: {total} requests\n{text}"));
                let cancelled = self.cancel_flood_jobs().await?;
                self.say(&format!(
                    "      cancelled {cancelled} job(s) the flood created"
                ));
                (
                    format!("API flood for {} s, {total} requests", hold.as_secs()),
                    false,
                )
            }
        };
        self.finish_fault(kind, what, start, skipped);
        Ok(())
    }

    fn finish_fault(&mut self, kind: FaultKind, what: String, start: Instant, skipped: bool) {
        self.done.push(DoneFault {
            kind: kind.name(),
            what,
            start,
            end: Instant::now(),
            skipped,
        });
    }

    /// Many concurrent requests from the tenant for `hold`; outcome counts by request kind.
    async fn flood(&mut self, hold: Duration) -> anyhow::Result<BTreeMap<String, u64>> {
        let http = Client::builder()
            .timeout(FLOOD_REQUEST_TIMEOUT)
            .build()
            .context("cannot build the flood's HTTP client")?;
        let deadline = Instant::now() + hold;
        let oversized = Arc::new(vec![b' '; OVERSIZED_BODY_BYTES]);
        let nested_json = Arc::new(format!(
            "{{\"name\":{}{}}}",
            "[".repeat(NESTING_DEPTH),
            "]".repeat(NESTING_DEPTH)
        ));
        let nested_yaml = Arc::new(format!(
            "name: deep\nsource: {}{}\n",
            "{a: ".repeat(NESTING_DEPTH),
            "}".repeat(NESTING_DEPTH)
        ));
        let outcomes = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
        let round = self.done.len() as u64;
        let mut tasks = Vec::new();
        for worker in 0..FLOOD_CONCURRENCY {
            let (http, addrs, token) = (
                http.clone(),
                self.coordinator_addrs.clone(),
                self.tenant_token.clone(),
            );
            let (oversized, nested_json, nested_yaml, outcomes) = (
                oversized.clone(),
                nested_json.clone(),
                nested_yaml.clone(),
                outcomes.clone(),
            );
            let soak_job = self.soak_job;
            let mut rng =
                SmallRng::seed_from_u64(mix(self.seed ^ mix(round * 1_000 + worker as u64)));
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let addr = &addrs[rng.gen_range(0..addrs.len())];
                    let jobs = format!("http://{addr}/v1/jobs");
                    let (label, request) = match rng.gen_range(0..100) {
                        0..=24 => {
                            let name = format!("flood-{}", rng.gen_range(0..FLOOD_JOB_NAMES));
                            (
                                "valid job submission",
                                http.post(&jobs).body(flood_job_spec(&name)),
                            )
                        }
                        25..=34 => (
                            "oversized body (9 MiB)",
                            http.post(&jobs).body(oversized.as_ref().clone()),
                        ),
                        35..=54 => (
                            "JSON nested 100,000 deep",
                            http.post(&jobs)
                                .header("content-type", "application/json")
                                .body(nested_json.as_ref().clone()),
                        ),
                        55..=64 => (
                            "YAML nested 100,000 deep",
                            http.post(&jobs).body(nested_yaml.as_ref().clone()),
                        ),
                        65..=74 => (
                            "invalid spec",
                            http.post(&jobs).body("name: bad\nsource: 7\n"),
                        ),
                        75..=89 => ("list jobs", http.get(&jobs)),
                        _ => ("get the soak job", http.get(format!("{jobs}/{soak_job}"))),
                    };
                    let outcome = match request.bearer_auth(&token).send().await {
                        Ok(r) => r.status().as_u16().to_string(),
                        Err(e) if e.is_timeout() => "timeout".to_string(),
                        Err(e) if e.is_connect() => "connection refused or failed".to_string(),
                        Err(_) => "connection error".to_string(),
                    };
                    *lock(&outcomes)
                        .entry(format!("{label} -> {outcome}"))
                        .or_default() += 1;
                }
            }));
        }
        // Meanwhile the run keeps restarting crashed processes.
        self.idle_until(deadline).await?;
        for task in tasks {
            let _ = tokio::time::timeout(FLOOD_REQUEST_TIMEOUT * 2, task).await;
        }
        let outcomes = std::mem::take(&mut *lock(&outcomes));
        Ok(outcomes)
    }

    /// Cancels the jobs a flood created; returns how many.
    async fn cancel_flood_jobs(&self) -> anyhow::Result<usize> {
        let jobs: Vec<JobSummary> = self
            .api
            .ok(Method::GET, "/v1/jobs", &self.tenant_token, None)
            .await?;
        let mut cancelled = 0;
        for job in jobs.iter().filter(|j| {
            j.name.starts_with("flood-") && matches!(j.state, JobState::Pending | JobState::Running)
        }) {
            let path = format!("/v1/jobs/{}", job.id.0);
            let (status, text) = self
                .api
                .call(Method::DELETE, &path, &self.tenant_token, None)
                .await?;
            if status.is_success() {
                cancelled += 1;
            } else {
                self.say(&format!(
                    "      cancelling flood job {} answered {status}: {text}",
                    job.id.0
                ));
            }
        }
        Ok(cancelled)
    }
}

/// A valid job the flood submits: a copy of an idle topic.
fn flood_job_spec(name: &str) -> String {
    format!(
        "name: {name}\nsource: {{ topic: {FLOOD_SOURCE}, format: json }}\npipeline: []\nsink: {{ topic: {FLOOD_SOURCE}-out, format: json, delivery: exactly_once }}\ndead_letter_topic: {FLOOD_SOURCE}-dlq\n"
    )
}

/// Writes `path` until the file system is full; returns the bytes written.
fn fill_disk(path: &Path) -> anyhow::Result<u64> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let chunk = vec![0xa5u8; FILL_CHUNK_BYTES];
    let chunks_max = (TMPFS_SIZE_MIB << 20) as usize / FILL_CHUNK_BYTES + 2;
    let mut written = 0u64;
    for _ in 0..chunks_max {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => return Err(e).context("cannot fill the disk"),
        }
    }
    let _ = file.flush();
    Ok(written)
}

fn log_tail(path: &Path) -> String {
    const LINES: usize = 5;
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..]
        .iter()
        .map(|l| format!("        | {}", l.chars().take(300).collect::<String>()))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- reading topics at the end -------------------------------------------------------------

/// Reads every committed record of `topic` (partitions `0..partitions`) from the start to
/// the end, calling `each(partition, offset, timestamp ms, value)`. Returns the partitions
/// whose read position stayed below the log end (an open transaction that never ended).
fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    mut each: impl FnMut(i32, i64, i64, &[u8]),
) -> anyhow::Result<Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "soak-verify")
        .set("group.id", "soak-verify")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .context("cannot create the verifying reader")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut at_eof = vec![false; partitions as usize];
    loop {
        if Instant::now() >= deadline {
            bail!("reading {topic} took longer than {READ_TIMEOUT:?}");
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some(eof) = at_eof.get_mut(p as usize) {
                    *eof = true;
                }
                if at_eof.iter().all(|e| *e) {
                    let open = open_partitions(&consumer, topic, partitions)?;
                    if open.is_empty() {
                        return Ok(open);
                    }
                    // An open transaction may still end: look again a few times.
                    if Instant::now() + Duration::from_secs(30) >= deadline {
                        return Ok(open);
                    }
                }
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic}")),
            Some(Ok(m)) => {
                let p = m.partition();
                if let Some(eof) = at_eof.get_mut(p as usize) {
                    *eof = false;
                }
                let ts = m.timestamp().to_millis().unwrap_or(0);
                each(p, m.offset(), ts, m.payload().unwrap_or(&[]));
            }
        }
    }
}

/// Partitions whose position is below the log end, as "p: position < end".
fn open_partitions(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: u32,
) -> anyhow::Result<Vec<String>> {
    let position = consumer.position().context("cannot read the position")?;
    let mut open = Vec::new();
    for p in 0..partitions as i32 {
        let (_, end) = consumer
            .fetch_watermarks(topic, p, KAFKA_REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the end of {topic}/{p}"))?;
        let at = match position.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        };
        if at < end {
            open.push(format!(
                "{topic}/{p}: committed reads end at {at}, log end {end}"
            ));
        }
    }
    Ok(open)
}

/// What the independent reader found.
#[derive(Debug, Default)]
struct Verdict {
    source_events: u64,
    expected_outputs: u64,
    expected_dead_letters: u64,
    /// Events that pass the filter but the dedupe must drop.
    expected_deduplicated: u64,
    outputs: u64,
    dead_letters: u64,
    missing_outputs: u64,
    missing_dead_letters: u64,
    duplicated_outputs: u64,
    duplicated_dead_letters: u64,
    /// Records that should not be there, or whose content is wrong.
    unexpected: u64,
    examples: Vec<String>,
    open_transactions: Vec<String>,
}

/// Reads the three topics and compares the sink and dead letters with what the source
/// predicts; `sent` bounds the sequence numbers the load produced.
fn verify(bootstrap: &str, seed: u64, sent: u64, started_wall_ms: i64) -> anyhow::Result<Verdict> {
    let mut v = Verdict::default();
    // By seq: (count, offset, time) in the source.
    let mut source: Vec<(u8, i64, i64)> = vec![(0, 0, 0); sent as usize];
    let mut source_problems = Vec::new();
    let open = read_topic(
        bootstrap,
        SOURCE,
        PARTITIONS,
        |p, offset, _, value| match parse_event(value) {
            Some((seq, ts)) if seq < sent => {
                let entry = &mut source[seq as usize];
                entry.0 = entry.0.saturating_add(1);
                entry.1 = offset;
                entry.2 = ts.unwrap_or(0);
                v.source_events += 1;
            }
            _ => source_problems.push(format!("{SOURCE}/{p}@{offset}: not an event the load sent")),
        },
    )?;
    v.open_transactions.extend(open);
    v.examples
        .extend(source_problems.into_iter().take(EXAMPLES_MAX));
    let at_run = |ts: i64| (ts - started_wall_ms) as f64 / 1_000.0;
    let expected = |seq: usize| -> (u8, Fate) {
        let count = source.get(seq).map_or(0, |e| e.0);
        (count, predicted(seed, &source, seq as u64))
    };

    let mut outputs = vec![0u8; source.len()];
    let mut examples = Vec::new();
    let open = read_topic(bootstrap, SINK, PARTITIONS, |p, offset, ts, value| {
        v.outputs += 1;
        let parsed: Option<(u64, i64, i64)> = serde_json::from_slice::<serde_json::Value>(value)
            .ok()
            .and_then(|o| {
                Some((
                    o.get("seq")?.as_u64()?,
                    o.get("amount")?.as_i64()?,
                    o.get("double")?.as_i64()?,
                ))
            });
        let Some((seq, amount, double)) = parsed else {
            v.unexpected += 1;
            examples.push(format!("{SINK}/{p}@{offset}: not an output of the job"));
            return;
        };
        let (count, fate) = expected(seq as usize);
        if count == 0 || fate != Fate::Output(amount) || double != 2 * amount {
            v.unexpected += 1;
            examples.push(format!(
                "{SINK}/{p}@{offset}: seq {seq} amount {amount} double {double}, expected {fate:?} x{count}"
            ));
            return;
        }
        let seen = &mut outputs[seq as usize];
        *seen = seen.saturating_add(1);
        if *seen > count {
            examples.push(format!(
                "duplicate output: seq {seq} (source partition {}) again at {SINK}/{p}@{offset}, committed around t+{:.1}s",
                seq % u64::from(PARTITIONS),
                at_run(ts)
            ));
        }
    })?;
    v.open_transactions.extend(open);

    let mut dead = vec![0u8; source.len()];
    let open = read_topic(bootstrap, DEAD_LETTERS, 1, |p, offset, ts, value| {
        v.dead_letters += 1;
        let letter: Option<(String, u64)> = serde_json::from_slice::<serde_json::Value>(value)
            .ok()
            .and_then(|o| {
                let reason = o.get("reason")?.as_str()?.to_string();
                let payload = o.get("payload")?.as_str()?.to_string();
                Some((reason, parse_event(payload.as_bytes())?.0))
            });
        let Some((reason, seq)) = letter else {
            v.unexpected += 1;
            examples.push(format!(
                "{DEAD_LETTERS}/{p}@{offset}: not a dead letter of the job"
            ));
            return;
        };
        let (count, fate) = expected(seq as usize);
        if count == 0 || !matches!(fate, Fate::DeadLetter(r) if r == reason) {
            v.unexpected += 1;
            examples.push(format!(
                "{DEAD_LETTERS}/{p}@{offset}: seq {seq} reason {reason}, expected {fate:?} x{count}"
            ));
            return;
        }
        let seen = &mut dead[seq as usize];
        *seen = seen.saturating_add(1);
        if *seen > count {
            examples.push(format!(
                "duplicate dead letter: seq {seq} again at {DEAD_LETTERS}/{p}@{offset}, committed around t+{:.1}s",
                at_run(ts)
            ));
        }
    })?;
    v.open_transactions.extend(open);

    for (seq, (count, offset, ts)) in source.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let count = u64::from(*count);
        let fate = predicted(seed, &source, seq as u64);
        if fate == Fate::Dropped && matches!(self::fate(seed, seq as u64), Fate::Output(_)) {
            v.expected_deduplicated += count;
        }
        match fate {
            Fate::Output(_) => {
                v.expected_outputs += count;
                let seen = u64::from(outputs[seq]);
                v.missing_outputs += count.saturating_sub(seen);
                v.duplicated_outputs += seen.saturating_sub(count);
                if seen < count {
                    examples.push(format!(
                        "missing output: seq {seq} ({SOURCE}/{}@{offset}, produced at t+{:.1}s)",
                        seq % PARTITIONS as usize,
                        at_run(*ts)
                    ));
                }
            }
            Fate::DeadLetter(_) => {
                v.expected_dead_letters += count;
                let seen = u64::from(dead[seq]);
                v.missing_dead_letters += count.saturating_sub(seen);
                v.duplicated_dead_letters += seen.saturating_sub(count);
                if seen < count {
                    examples.push(format!(
                        "missing dead letter: seq {seq} ({SOURCE}/{}@{offset})",
                        seq % PARTITIONS as usize
                    ));
                }
            }
            Fate::Dropped => {}
        }
    }
    // Keep a few examples of each kind.
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    for e in examples {
        let kind = e.split(':').next().unwrap_or_default().to_string();
        let n = per_kind.entry(kind).or_default();
        *n += 1;
        if *n <= EXAMPLES_MAX {
            v.examples.push(e);
        }
    }
    Ok(v)
}

// ---- setup ---------------------------------------------------------------------------------

fn coordinator_launch(
    weir_bin: &Path,
    id: usize,
    addr: &str,
    peers: &str,
    dir: &Path,
) -> LaunchSpec {
    LaunchSpec {
        program: weir_bin.to_path_buf(),
        args: vec![
            "coordinator".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr.into(),
            "--data-dir".into(),
            dir.join(format!("c{id}")).display().to_string(),
            "--peers".into(),
            peers.into(),
            "--admin-token".into(),
            ADMIN_TOKEN.into(),
            "--election-timeout-ms".into(),
            format!("{ELECTION_TIMEOUT_MIN_MS}..{ELECTION_TIMEOUT_MAX_MS}"),
        ],
        env: Vec::new(),
        log: dir.join(format!("c{id}.log")),
    }
}

/// Polls `check` every 200 ms until it yields a value or `timeout` passes.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    weir_benches::process::wait_until(what, timeout, Duration::from_millis(200), check).await
}

fn fmt_s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MINUTES_MAX).contains(&args.minutes),
        "--minutes must be 1..={MINUTES_MAX}"
    );
    anyhow::ensure!(
        (1..=RATE_MAX).contains(&args.rate),
        "--rate must be 1..={RATE_MAX}"
    );
    let run_len = Duration::from_secs(args.minutes * 60);
    let rss_baseline_after = RSS_BASELINE_AT.min(run_len / 2);
    if args.dry_run {
        for f in schedule(args.seed, run_len, DISK_TARGETS, rss_baseline_after)
            .into_iter()
            .filter(|f| args.faults.is_empty() || args.faults.contains(&f.kind.class()))
        {
            println!("t+{:6.1}s  {:?}", f.at.as_secs_f64(), f.kind);
        }
        return Ok(());
    }
    weir_benches::worker::idle::check_binary(&args.weir_bin)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?
        .to_path_buf();
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("weir-soak-seed{}-{}", args.seed, wall_ms())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(&repo)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!(
        "soak: seed {}, {} min, {} events/s, weir binary {}, commit {commit}, data and logs in {}",
        args.seed,
        args.minutes,
        args.rate,
        args.weir_bin.display(),
        dir.display()
    );

    // Disk-full targets, mounted before anything uses them: coordinator 3 and worker 2.
    let mut mounts = Vec::new();
    let mut mount_skipped = None;
    for (sub, user) in [
        ("c3", "c3's data directory".to_string()),
        (WORKERS[1], format!("{}'s data directory", WORKERS[1])),
        (
            "checkpoints",
            "the workers' checkpoint directory".to_string(),
        ),
    ] {
        match Tmpfs::mount(&dir.join(sub)) {
            Ok(m) => mounts.push((m, user.to_string())),
            Err(e) => {
                let reason = format!("cannot mount a tmpfs over {user}: {e:#}");
                println!("soak: {reason}; disk-full faults on it are skipped");
                mount_skipped = Some(reason);
            }
        }
    }

    println!("soak: starting Kafka");
    let kafka = KafkaProcess::start(&repo, &dir.join("kafka"))?;
    let bootstrap = kafka.bootstrap.clone();
    let broker = KafkaBroker::new(&bootstrap).context("cannot configure the Kafka client")?;
    for (topic, partitions) in [
        (SOURCE.to_string(), PARTITIONS),
        (SINK.to_string(), PARTITIONS),
        (DEAD_LETTERS.to_string(), 1),
        (FLOOD_SOURCE.to_string(), 1),
        (format!("{FLOOD_SOURCE}-out"), 1),
        (format!("{FLOOD_SOURCE}-dlq"), 1),
    ] {
        broker
            .create_topic(&topic, partitions)
            .await
            .with_context(|| format!("cannot create topic {topic}"))?;
    }

    let addrs = (0..COORDINATORS)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let spec = coordinator_launch(&args.weir_bin, i + 1, addr, &peers, &dir);
        procs.push(Proc::start(&format!("c{}", i + 1), spec)?);
    }
    for id in WORKERS {
        let mut spec = worker_launch(&args.weir_bin, id, &addrs.join(","), &bootstrap, &dir);
        spec.env = vec![("RUST_LOG".into(), "info,openraft=warn,rdkafka=warn".into())];
        procs.push(Proc::start(id, spec)?);
    }
    let timeouts = Timeouts {
        attempt_ms: API_REQUEST_TIMEOUT.as_millis() as u64,
        connect_ms: 500,
    };
    let api = Api {
        group: GroupClient::new(addrs.clone(), API_POLICY, timeouts),
    };
    let leader = LeaderWatch::start(addrs.clone())?;
    wait_for("a leader", READY_TIMEOUT, || async { leader.leader() }).await?;
    let tenant: TenantToken = api
        .ok(
            Method::POST,
            "/v1/tenants",
            ADMIN_TOKEN,
            Some(&serde_json::json!({ "name": TENANT }).to_string()),
        )
        .await?;
    let job: SubmittedJob = api
        .ok(Method::POST, "/v1/jobs", &tenant.token, Some(&job_spec()))
        .await?;
    println!("soak: job {} submitted by tenant {TENANT}", job.id.0);
    let job_path = format!("/v1/jobs/{}", job.id.0);
    wait_for(
        "every partition of the job placed",
        READY_TIMEOUT,
        || async {
            let detail: JobDetail = api
                .ok(Method::GET, &job_path, &tenant.token, None)
                .await
                .ok()?;
            (detail.state == JobState::Running
                && detail.partitions.len() == PARTITIONS as usize
                && detail.partitions.iter().all(|p| p.worker.is_some()))
            .then_some(())
        },
    )
    .await?;

    let started_wall_ms = wall_ms();
    let load = Load::start(&bootstrap, args.seed, args.rate)?;
    let started = Instant::now();
    let lag = LagWatch::start(&bootstrap, &format!("weir-job-{}", job.id.0))?;
    wait_for("the job's first commit", READY_TIMEOUT, || async {
        lag.latest()
            .filter(|s| s.committed.iter().all(|c| *c > 0))
            .map(|_| ())
    })
    .await?;
    println!(
        "soak: load running at {} events/s; every partition committing",
        args.rate
    );

    let plan: Vec<PlannedFault> = schedule(args.seed, run_len, mounts.len(), rss_baseline_after)
        .into_iter()
        .filter(|f| args.faults.is_empty() || args.faults.contains(&f.kind.class()))
        .collect();
    println!("soak: {} faults scheduled:", plan.len());
    for f in &plan {
        println!("    t+{:6.1}s  {:?}", f.at.as_secs_f64(), f.kind);
    }
    let kafka_pid = kafka.pid();
    let mut soak = Soak {
        started,
        procs,
        coordinator_addrs: addrs.clone(),
        mounts,
        mount_skipped,
        kafka_pid,
        leader,
        api,
        tenant_token: tenant.token.clone(),
        soak_job: job.id.0,
        seed: args.seed,
        done: Vec::new(),
        crashes: Vec::new(),
        wedged: Vec::new(),
        storage_exits: Vec::new(),
        full_disks: Vec::new(),
        paused: None,
        rss_baseline: (
            started + rss_baseline_after,
            RssWindow::default(),
            RssWindow::default(),
        ),
        rss_logged_next: started,
        rss_end: (
            started + run_len.saturating_sub(RSS_SAMPLE_EVERY * RSS_SAMPLES),
            RssWindow::default(),
            RssWindow::default(),
        ),
    };
    for fault in &plan {
        soak.idle_until(started + fault.at).await?;
        soak.run_fault(fault.kind).await?;
    }
    soak.idle_until(started + run_len).await?;
    // Normally complete by now (the end window closes a sample interval before the end).
    while !(soak.rss_baseline.1.complete() && soak.rss_end.1.complete()) {
        soak.idle_until(Instant::now() + RSS_SAMPLE_EVERY).await?;
    }
    let rss_base = soak.rss_baseline.1.figures();
    let rss_end = soak.rss_end.1.figures();
    let anon_base = soak.rss_baseline.2.figures();
    let anon_end = soak.rss_end.2.figures();
    soak.say(&format!(
        "run over; stopping the load ({} events sent)",
        load.sent()
    ));
    let sent = load.finish()?;
    let load_stopped = Instant::now();

    // Lag 0: every source partition's committed offset at its log end.
    let mut final_lag = None;
    let wait_end = load_stopped + FINAL_LAG_WAIT;
    while Instant::now() < wait_end {
        soak.check_crashes()?;
        if let Some(s) = lag.latest() {
            if s.at > load_stopped && caught_up(&s, &s.end) {
                final_lag = Some(s.at.saturating_duration_since(load_stopped));
                break;
            }
        }
        tokio::time::sleep(LAG_POLL).await;
    }
    soak.say(&match final_lag {
        Some(d) => format!(
            "every partition at its log end {} after the load stopped",
            fmt_s(d)
        ),
        None => {
            format!("some partition NOT at its log end {FINAL_LAG_WAIT:?} after the load stopped")
        }
    });

    // The group at the end: the job running and placed, every member at the group's term,
    // agreeing on the leader and caught up (checkpoint records keep the log moving).
    let group_deadline = Instant::now() + GROUP_CHECK_TIMEOUT;
    let (group_ok, group_detail) = loop {
        let job_view = match soak
            .api
            .ok::<JobDetail>(Method::GET, &job_path, &soak.tenant_token, None)
            .await
        {
            Ok(d) => {
                let placed = d.partitions.iter().filter(|p| p.worker.is_some()).count();
                (
                    d.state == JobState::Running && placed == PARTITIONS as usize,
                    format!(
                        "job {:?}, {placed} of {PARTITIONS} partitions placed",
                        d.state
                    ),
                )
            }
            Err(e) => (false, format!("job not readable: {e:#}")),
        };
        let members_ok = {
            let log = lock(&soak.leader.log);
            let leaders: Vec<Option<u64>> = log.last.iter().map(|l| l.and_then(|l| l.1)).collect();
            log.last.iter().all(|l| {
                l.is_some_and(|(term, leader, applied)| {
                    term == log.max_term
                        && leader.is_some()
                        && applied + APPLIED_LAG_MAX >= log.max_applied
                })
            }) && leaders.windows(2).all(|w| w[0] == w[1])
        };
        let detail = format!("{}; {}", job_view.1, soak.leader.views());
        if (job_view.0 && members_ok) || Instant::now() >= group_deadline {
            break (job_view.0 && members_ok, detail);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    soak.say(&format!("group at the end: {group_detail}"));

    let leader_log = soak.leader.finish();
    let samples = lag.finish();
    soak.say("reading the source, sink and dead-letter topics with read_committed");
    let verify_bootstrap = bootstrap.clone();
    let seed = args.seed;
    let verdict = weir_benches::worker::thread::on_thread("soak-verify", move || {
        verify(&verify_bootstrap, seed, sent, started_wall_ms)
    })
    .await?;

    // ---- figures and checks ----
    let faults: Vec<&DoneFault> = soak.done.iter().filter(|f| !f.skipped).collect();
    let last_fault_end = faults.iter().map(|f| f.end).max();
    let drain_after = |end: Instant| -> Option<Duration> {
        let at_end = samples.iter().find(|s| s.at >= end)?;
        samples
            .iter()
            .find(|s| s.at >= at_end.at && caught_up(s, &at_end.end))
            .map(|s| s.at.saturating_duration_since(end))
    };
    let drain_last = last_fault_end.and_then(drain_after);
    let mut per_fault_drain = Vec::new();
    for f in &faults {
        per_fault_drain.push(drain_after(f.end));
    }
    // Stalls: a committed offset standing still while behind its log end.
    let mut stalls = vec![(Duration::ZERO, None::<Instant>); PARTITIONS as usize];
    for (p, stall) in stalls.iter_mut().enumerate() {
        let mut since: Option<(Instant, i64)> = None;
        for s in &samples {
            let behind = s.committed[p] < s.end[p];
            match since {
                Some((t0, c)) if s.committed[p] == c && behind => {
                    let d = s.at.saturating_duration_since(t0);
                    if d > stall.0 {
                        *stall = (d, Some(t0));
                    }
                }
                _ => since = behind.then_some((s.at, s.committed[p])),
            }
        }
    }
    let longest_stall = stalls.iter().map(|s| s.0).max().unwrap_or_default();

    let mut by_kind: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for f in &soak.done {
        let e = by_kind.entry(f.kind).or_default();
        if f.skipped {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
    }

    let mut rss_rows = Vec::new();
    let mut rss_ok = true;
    let mut compared = Vec::new();
    for p in &soak.procs {
        let base = rss_base.get(&p.name);
        let end = rss_end.get(&p.name);
        // Comparable: one incarnation through both windows (not restarted in between).
        let same = matches!((base, end), (Some(b), Some(e))
            if b.incarnation.is_some() && b.incarnation == e.incarnation);
        let ratio = match (base, end) {
            (Some(b), Some(e)) if same && b.median_kib > 0 => {
                Some(e.median_kib as f64 / b.median_kib as f64)
            }
            _ => None,
        };
        if let Some(r) = ratio {
            compared.push(p.name.clone());
            if r > RSS_GROWTH_MAX {
                rss_ok = false;
            }
        }
        let mib = |f: Option<&weir_benches::soak_support::RssFigure>| {
            f.map_or("-".into(), |f| {
                format!("{:.1} MiB", f.median_kib as f64 / 1024.0)
            })
        };
        let anon = match (anon_base.get(&p.name), anon_end.get(&p.name)) {
            (Some(b), Some(e)) if same && b.median_kib > 0 => format!(
                "{} → {} ({:.2}x)",
                mib(Some(b)),
                mib(Some(e)),
                e.median_kib as f64 / b.median_kib as f64
            ),
            (b, e) => format!("{} → {}", mib(b), mib(e)),
        };
        rss_rows.push(format!(
            "| RSS {} | {} | {} | {} | {anon} |",
            p.name,
            mib(base),
            mib(end),
            match ratio {
                Some(r) => format!("{r:.2}x"),
                None => format!(
                    "not compared: restarted since the baseline ({} starts)",
                    p.incarnation
                ),
            }
        ));
    }

    let mut checks: Vec<(&str, bool, String)> = Vec::new();
    checks.push((
        "nothing lost",
        verdict.missing_outputs == 0 && verdict.missing_dead_letters == 0,
        format!(
            "{} outputs and {} dead letters missing",
            verdict.missing_outputs, verdict.missing_dead_letters
        ),
    ));
    checks.push((
        "nothing duplicated",
        verdict.duplicated_outputs == 0 && verdict.duplicated_dead_letters == 0,
        format!(
            "{} outputs and {} dead letters duplicated",
            verdict.duplicated_outputs, verdict.duplicated_dead_letters
        ),
    ));
    checks.push((
        "nothing unexpected",
        verdict.unexpected == 0,
        format!(
            "{} records that the input does not predict",
            verdict.unexpected
        ),
    ));
    checks.push((
        "no partition stuck",
        final_lag.is_some_and(|d| d <= FINAL_LAG_MAX)
            && longest_stall <= STALL_MAX
            && verdict.open_transactions.is_empty(),
        format!(
            "log end reached {} after the load stopped (max {}); longest stall {} (max {}); open transactions: {}",
            final_lag.map_or("never".into(), fmt_s),
            fmt_s(FINAL_LAG_MAX),
            fmt_s(longest_stall),
            fmt_s(STALL_MAX),
            if verdict.open_transactions.is_empty() { "none".into() } else { verdict.open_transactions.join("; ") }
        ),
    ));
    checks.push((
        "never leaderless too long",
        leader_log.longest <= LEADERLESS_MAX,
        format!(
            "longest stretch {} (max {}, twice the {ELECTION_TIMEOUT_MAX_MS} ms maximum election timeout)",
            fmt_s(leader_log.longest),
            fmt_s(LEADERLESS_MAX)
        ),
    ));
    checks.push((
        "drained after the last fault",
        last_fault_end.is_none() || drain_last.is_some_and(|d| d <= DRAIN_MAX),
        format!(
            "{} (max {})",
            drain_last.map_or("never".into(), fmt_s),
            fmt_s(DRAIN_MAX)
        ),
    ));
    checks.push((
        "memory",
        rss_ok,
        format!(
            "RSS at the end at most {RSS_GROWTH_MAX}x the baseline (medians of {RSS_SAMPLES} samples {} apart); compared: {}",
            fmt_s(RSS_SAMPLE_EVERY),
            if compared.is_empty() {
                "none".into()
            } else {
                compared.join(", ")
            }
        ),
    ));
    checks.push(("group healthy at the end", group_ok, group_detail));
    checks.push((
        "no process exited by itself",
        soak.crashes.is_empty(),
        format!("{} crash(es)", soak.crashes.len()),
    ));
    checks.push((
        "no coordinator wedged",
        soak.wedged.is_empty(),
        format!(
            "{} time(s) a running coordinator stayed behind the group for over {} (then restarted)",
            soak.wedged.len(),
            fmt_s(WEDGED_AFTER)
        ),
    ));

    // ---- report ----
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## Soak and chaos run: seed {}, {} min, {} events/s\n",
        args.seed, args.minutes, args.rate
    );
    let _ = writeln!(out, "| figure | value |\n| --- | --- |");
    let _ = writeln!(
        out,
        "| events produced (sent / in the source topic) | {sent} / {} |",
        verdict.source_events
    );
    let _ = writeln!(
        out,
        "| outputs expected / committed | {} / {} |",
        verdict.expected_outputs, verdict.outputs
    );
    let _ = writeln!(
        out,
        "| dead letters expected / committed | {} / {} |",
        verdict.expected_dead_letters, verdict.dead_letters
    );
    let _ = writeln!(
        out,
        "| events the dedupe must drop (repeated key) | {} |",
        verdict.expected_deduplicated
    );
    let _ = writeln!(
        out,
        "| missing (outputs + dead letters) | {} |",
        verdict.missing_outputs + verdict.missing_dead_letters
    );
    let _ = writeln!(
        out,
        "| duplicated (outputs + dead letters) | {} |",
        verdict.duplicated_outputs + verdict.duplicated_dead_letters
    );
    let _ = writeln!(out, "| unexpected records | {} |", verdict.unexpected);
    for (kind, (n, skipped)) in &by_kind {
        let _ = writeln!(
            out,
            "| faults: {kind} | {n}{} |",
            if *skipped > 0 {
                format!(" ({skipped} skipped)")
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "| processes that ended on a storage error while their disk was full (as designed) | {} |\n| processes that exited by themselves otherwise | {} |",
        soak.storage_exits.len(),
        soak.crashes.len()
    );
    let _ = writeln!(
        out,
        "| coordinators wedged (running, behind the group for {}) | {} |",
        fmt_s(WEDGED_AFTER),
        soak.wedged.len()
    );
    let _ = writeln!(
        out,
        "| longest leaderless stretch | {} |",
        fmt_s(leader_log.longest)
    );
    let _ = writeln!(
        out,
        "| leaderless stretches over {} ms | {} |",
        LEADERLESS_LISTED_MIN.as_millis(),
        leader_log.stretches.len()
    );
    let _ = writeln!(
        out,
        "| time to drain after the last fault | {} |",
        drain_last.map_or("never".into(), fmt_s)
    );
    let _ = writeln!(
        out,
        "| longest drain after any fault | {} |",
        per_fault_drain
            .iter()
            .flatten()
            .max()
            .map_or("-".into(), |d| fmt_s(*d))
    );
    let _ = writeln!(
        out,
        "| lag 0 after the load stopped | {} |",
        final_lag.map_or("never".into(), fmt_s)
    );
    let _ = writeln!(
        out,
        "| longest stall of a committed offset | {} |",
        fmt_s(longest_stall)
    );
    let _ = writeln!(
        out,
        "\n| process | RSS at the baseline (median, t+{:.0}s to t+{:.0}s) | RSS at the end (median, t+{:.0}s to t+{:.0}s) | end / baseline | of which anonymous (RssAnon, not checked) |\n| --- | --- | --- | --- | --- |",
        rss_baseline_after.as_secs_f64(),
        (rss_baseline_after + RSS_SAMPLE_EVERY * (RSS_SAMPLES - 1)).as_secs_f64(),
        soak.t(soak.rss_end.0),
        soak.t(soak.rss_end.0 + RSS_SAMPLE_EVERY * (RSS_SAMPLES - 1)),
    );
    for row in &rss_rows {
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out, "\n### Checks\n");
    for (name, ok, detail) in &checks {
        let _ = writeln!(
            out,
            "- {} {name}: {detail}",
            if *ok { "PASS" } else { "FAIL" }
        );
    }
    let _ = writeln!(out, "\n### Fault timeline\n");
    for (f, drain) in soak.done.iter().zip(soak.done.iter().map(|f| {
        if f.skipped {
            None
        } else {
            drain_after(f.end)
        }
    })) {
        let _ = writeln!(
            out,
            "- t+{:.1}s to t+{:.1}s: {}{}",
            soak.t(f.start),
            soak.t(f.end),
            f.what,
            if f.skipped {
                String::new()
            } else {
                format!("; drained {} after", drain.map_or("never".into(), fmt_s))
            }
        );
    }
    if !leader_log.stretches.is_empty() {
        let _ = writeln!(
            out,
            "\n### Leaderless stretches over {} ms\n",
            LEADERLESS_LISTED_MIN.as_millis()
        );
        for (at, d) in &leader_log.stretches {
            let _ = writeln!(out, "- from t+{:.2}s, {}", soak.t(*at), fmt_s(*d));
        }
    }
    if !soak.wedged.is_empty() {
        let _ = writeln!(
            out,
            "\n### Coordinators wedged (running, behind the group)\n"
        );
        for (name, at, detail) in &soak.wedged {
            let _ = writeln!(out, "- {name} found at t+{:.1}s: {detail}", soak.t(*at));
        }
    }
    if !soak.crashes.is_empty() {
        let _ = writeln!(out, "\n### Processes that exited by themselves\n");
        for (name, at, tail) in &soak.crashes {
            let _ = writeln!(out, "- {name} at t+{:.1}s:\n{tail}", soak.t(*at));
        }
    }
    if !verdict.examples.is_empty() {
        let _ = writeln!(out, "\n### Discrepancies (examples)\n");
        for e in &verdict.examples {
            let _ = writeln!(out, "- {e}");
        }
    }
    for (p, (d, at)) in stalls.iter().enumerate() {
        if let Some(at) = at {
            let _ = writeln!(
                out,
                "\nlongest stall of {SOURCE}/{p}: {} from t+{:.1}s",
                fmt_s(*d),
                soak.t(*at)
            );
        }
    }
    let _ = writeln!(out, "\ndata and logs: {}", dir.display());
    println!("{out}");
    let failed: Vec<&str> = checks.iter().filter(|c| !c.1).map(|c| c.0).collect();
    drop(soak);
    drop(kafka);
    if !failed.is_empty() {
        bail!("checks failed: {}", failed.join(", "));
    }
    Ok(())
}
