//! Operator throughput on one core, without a broker: the same bid records through
//! `Pipeline::process_batch` in batches of the runner's size, against decoding them with
//! serde_json alone, measured in the same run.
//!
//! Variants run in rounds, each variant once per round (so a noisy neighbour on the shared
//! cores hurts all of them alike), each trial for a fixed amount of processing time. One
//! set of records is replayed pass after pass; between passes, untimed, every record's
//! `date_time` moves forward by the set's span, so windows keep opening and firing as on
//! an endless stream and nothing is late. Each trial starts a fresh pipeline.
//!
//! The library variants ([`super::libraries`]) do the filter-map job's work with
//! serde_json, sonic-rs or the `cel` interpreter in place of the engine's hand-written
//! paths; before any trial, each is checked to give the engine's outputs on the records.
//!
//! The checkpointed variant takes `pipeline.snapshot()` and writes it to a
//! `DirCheckpointStore` (fsync, rename, directory fsync) whenever a checkpoint interval of
//! processing time has passed, and prunes old snapshots, as the runner does; that time
//! counts as processing time and is also reported on its own.

use super::jobs::{Job, WINDOW_SIZE_MS};
use super::libraries::{self, FilterMapByLibrary, LibraryPath};
use super::nexmark::{rewrite_date_time, Bids};
use anyhow::{bail, Context};
use serde::Deserialize;
use std::hint::black_box;
use std::time::Duration;
use tokio::time::Instant;
use weir_core::ids::{JobId, PartitionId};
use weir_worker::checkpoint_store::{CheckpointStore, DirCheckpointStore};
use weir_worker::exactly_once::POLL_BATCH_RECORDS_MAX;
use weir_worker::operators::{Outputs, Pipeline, SourceRecord};

/// What one trial runs over the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `serde_json::from_slice::<serde_json::Value>`: a generic tree per record.
    SerdeValue,
    /// `serde_json::from_slice::<Bid>`: a typed struct borrowing its strings.
    SerdeTyped,
    /// A job through the engine.
    Engine(Job),
    /// The windowed count with a checkpoint every interval of processing time.
    Checkpointed,
    /// The filter-map job built from libraries instead of the engine's own paths.
    Library(LibraryPath),
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 6] = [
        Variant::SerdeValue,
        Variant::SerdeTyped,
        Variant::Engine(Job::Copy),
        Variant::Engine(Job::FilterMap),
        Variant::Engine(Job::WindowedCount),
        Variant::Checkpointed,
    ];

    /// The library variants, run only when asked for (`--variants`), in table order.
    pub const LIBRARIES: [Variant; 3] = [
        Variant::Library(LibraryPath::SerdeRaw),
        Variant::Library(LibraryPath::SonicLazy),
        Variant::Library(LibraryPath::CelSerdeRaw),
    ];

    /// Every variant there is: [`Variant::ALL`] then [`Variant::LIBRARIES`].
    pub fn every() -> impl Iterator<Item = Variant> {
        Variant::ALL.into_iter().chain(Variant::LIBRARIES)
    }

    /// The variant's name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Variant::SerdeValue => "serde_json → Value",
            Variant::SerdeTyped => "serde_json → struct",
            Variant::Engine(job) => job.name(),
            Variant::Checkpointed => "windowed count + checkpoints",
            Variant::Library(path) => path.name(),
        }
    }

    /// A short name for `--variants`.
    pub fn flag(self) -> &'static str {
        match self {
            Variant::SerdeValue => "value",
            Variant::SerdeTyped => "struct",
            Variant::Engine(Job::Copy) => "copy",
            Variant::Engine(Job::FilterMap) => "filter-map",
            Variant::Engine(Job::WindowedCount) => "windowed",
            // The operator bench runs one pipeline: a shuffle is the end-to-end bench's.
            Variant::Engine(Job::WindowedShuffled) => "windowed-shuffled",
            Variant::Checkpointed => "checkpointed",
            Variant::Library(path) => path.flag(),
        }
    }

    fn job(self) -> Option<Job> {
        match self {
            Variant::SerdeValue | Variant::SerdeTyped | Variant::Library(_) => None,
            Variant::Engine(job) => Some(job),
            Variant::Checkpointed => Some(Job::WindowedCount),
        }
    }
}

/// A bid as a typed serde_json decode sees it.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // read only through black_box
struct Bid<'a> {
    auction: u64,
    bidder: u64,
    price: u64,
    channel: &'a str,
    url: &'a str,
    date_time: i64,
}

/// How the operator bench runs.
#[derive(Debug, Clone)]
pub struct OperatorsConfig {
    /// Records generated (and replayed).
    pub events: usize,
    pub seed: u64,
    /// Processing time of one trial.
    pub trial: Duration,
    /// Trials per variant.
    pub rounds: usize,
    /// Records per `process_batch` call.
    pub batch_records: usize,
    pub checkpoint_interval: Duration,
    pub variants: Vec<Variant>,
}

/// Bounds on the configuration, so a run stays within minutes and memory.
pub const EVENTS_MAX: usize = 5_000_000;
pub const TRIAL_MAX: Duration = Duration::from_secs(30);
pub const ROUNDS_MAX: usize = 20;

/// One trial's figures.
#[derive(Debug, Clone, Copy)]
pub struct Trial {
    pub variant: Variant,
    pub events: u64,
    /// Time spent processing (and checkpointing), excluding the untimed replays.
    pub processing: Duration,
    pub records_out: u64,
    pub dead_letters: u64,
    pub checkpoints: u64,
    pub checkpoint_time: Duration,
    pub checkpoint_time_max: Duration,
    pub snapshot_bytes_max: usize,
}

impl Trial {
    fn new(variant: Variant) -> Trial {
        Trial {
            variant,
            events: 0,
            processing: Duration::ZERO,
            records_out: 0,
            dead_letters: 0,
            checkpoints: 0,
            checkpoint_time: Duration::ZERO,
            checkpoint_time_max: Duration::ZERO,
            snapshot_bytes_max: 0,
        }
    }

    /// Events per second of processing time.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.processing.as_secs_f64().max(1e-9)
    }
}

/// What the bench measured, and on what.
#[derive(Debug, Clone)]
pub struct OperatorsResult {
    pub events: usize,
    pub event_bytes_mean: f64,
    pub trials: Vec<Trial>,
}

/// The records, replayed pass after pass with event time moving forward.
struct Replay {
    records: Vec<SourceRecord>,
    date_times_ms: Vec<i64>,
    span_ms: i64,
}

impl Replay {
    fn new(bids: Bids) -> Replay {
        let span_ms = bids.span_ms(WINDOW_SIZE_MS);
        let date_times_ms = bids.date_times_ms().to_vec();
        let records = bids
            .values
            .into_iter()
            .zip(&date_times_ms)
            .enumerate()
            .map(|(offset, (value, date_time_ms))| SourceRecord {
                topic: "bids".to_string(),
                partition: 0,
                offset: offset as i64,
                timestamp_ms: Some(*date_time_ms),
                key: None,
                value: Some(value),
            })
            .collect();
        Replay {
            records,
            date_times_ms,
            span_ms,
        }
    }

    /// Moves every record one span later (untimed).
    fn next_pass(&mut self) {
        for (record, date_time_ms) in self.records.iter_mut().zip(&mut self.date_times_ms) {
            *date_time_ms += self.span_ms;
            record.timestamp_ms = Some(*date_time_ms);
            if let Some(value) = record.value.as_mut() {
                rewrite_date_time(value, *date_time_ms);
            }
        }
    }
}

/// Runs the operator bench: generates the records, then every variant for `rounds`
/// rounds.
pub fn run(config: &OperatorsConfig) -> anyhow::Result<OperatorsResult> {
    if config.events == 0 || config.events > EVENTS_MAX {
        bail!("--events must be 1..={EVENTS_MAX}");
    }
    if config.trial.is_zero() || config.trial > TRIAL_MAX || config.rounds > ROUNDS_MAX {
        bail!(
            "--trial-ms must be 1..={} and --rounds at most {ROUNDS_MAX}",
            TRIAL_MAX.as_millis()
        );
    }
    if !(1..=POLL_BATCH_RECORDS_MAX).contains(&config.batch_records) {
        bail!("--batch-records must be 1..={POLL_BATCH_RECORDS_MAX}");
    }
    let bids = Bids::generate(config.events, config.seed);
    let event_bytes_mean = bids.bytes() as f64 / bids.len() as f64;
    let mut replay = Replay::new(bids);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start a runtime for the checkpoint store")?;
    let dir = tempfile::tempdir().context("cannot create the checkpoint directory")?;
    let store = DirCheckpointStore::new(dir.path().display().to_string())
        .context("cannot open the checkpoint store")?;
    let filter_map = Job::FilterMap.spec("bids", "out")?;
    for variant in &config.variants {
        if let Variant::Library(path) = variant {
            libraries::check_against_engine(*path, &filter_map, &replay.records)?;
        }
    }
    // Warm-up, untimed: touch every record once.
    for record in &replay.records {
        black_box(serde_json::from_slice::<Bid>(value(record)).ok());
    }
    let mut trials = Vec::new();
    let mut next_job_id = 1;
    for round in 0..config.rounds {
        for &variant in &config.variants {
            let checkpointing = Checkpointing {
                store: &store,
                runtime: &runtime,
                job: JobId(next_job_id),
                interval: config.checkpoint_interval,
            };
            next_job_id += 1;
            let trial = run_trial(variant, &mut replay, config, &checkpointing)?;
            eprintln!(
                "operators-bench: round {} {:<28} {:>10.0} events/s",
                round + 1,
                variant.name(),
                trial.events_per_s()
            );
            trials.push(trial);
        }
    }
    Ok(OperatorsResult {
        events: config.events,
        event_bytes_mean,
        trials,
    })
}

fn value(record: &SourceRecord) -> &[u8] {
    record.value.as_deref().unwrap_or_default()
}

/// Where and how often the checkpointed variant checkpoints.
struct Checkpointing<'a> {
    store: &'a DirCheckpointStore,
    runtime: &'a tokio::runtime::Runtime,
    job: JobId,
    interval: Duration,
}

impl Checkpointing<'_> {
    /// Snapshot, durable write, prune: steps 1 and the clean-up of the runner's checkpoint.
    fn checkpoint(&self, pipeline: &Pipeline, offset: i64) -> anyhow::Result<usize> {
        let snapshot = pipeline.snapshot();
        self.runtime.block_on(async {
            self.store
                .put(self.job, PartitionId(0), offset, &snapshot)
                .await?;
            self.store
                .prune(self.job, PartitionId(0), offset, &[])
                .await
        })?;
        Ok(snapshot.len())
    }
}

fn run_trial(
    variant: Variant,
    replay: &mut Replay,
    config: &OperatorsConfig,
    checkpointing: &Checkpointing<'_>,
) -> anyhow::Result<Trial> {
    let mut pipeline = match variant.job() {
        Some(job) => Some(Pipeline::compile(&job.spec("bids", "out")?)?),
        None => None,
    };
    let mut library = match variant {
        Variant::Library(path) => Some(FilterMapByLibrary::new(
            path,
            &Job::FilterMap.spec("bids", "out")?,
        )?),
        _ => None,
    };
    let mut out = Outputs::new();
    let mut trial = Trial::new(variant);
    let mut since_checkpoint = Duration::ZERO;
    let mut offset = 0i64;
    loop {
        for batch in replay.records.chunks(config.batch_records) {
            let started = Instant::now();
            match (variant, pipeline.as_mut()) {
                (Variant::SerdeValue, _) => {
                    for record in batch {
                        black_box(serde_json::from_slice::<serde_json::Value>(value(record))?);
                    }
                }
                (Variant::SerdeTyped, _) => {
                    for record in batch {
                        black_box(serde_json::from_slice::<Bid>(value(record))?);
                    }
                }
                (Variant::Library(_), _) => {
                    let Some(library) = library.as_mut() else {
                        bail!("{} has no job", variant.name());
                    };
                    library.process_batch(batch, &mut out);
                    trial.records_out += out.records.len() as u64;
                    trial.dead_letters += out.dead_letters.len() as u64;
                    out.clear();
                }
                (_, Some(pipeline)) => {
                    pipeline.process_batch(batch, &mut out)?;
                    trial.records_out += out.records.len() as u64;
                    trial.dead_letters += out.dead_letters.len() as u64;
                    out.clear();
                }
                (_, None) => bail!("{} has no pipeline", variant.name()),
            }
            let spent = started.elapsed();
            trial.processing += spent;
            since_checkpoint += spent;
            trial.events += batch.len() as u64;
            offset += batch.len() as i64;
            if let (Variant::Checkpointed, Some(pipeline)) = (variant, pipeline.as_ref()) {
                if since_checkpoint >= checkpointing.interval {
                    let started = Instant::now();
                    let bytes = checkpointing.checkpoint(pipeline, offset)?;
                    let spent = started.elapsed();
                    trial.processing += spent;
                    trial.checkpoint_time += spent;
                    trial.checkpoint_time_max = trial.checkpoint_time_max.max(spent);
                    trial.snapshot_bytes_max = trial.snapshot_bytes_max.max(bytes);
                    trial.checkpoints += 1;
                    since_checkpoint = Duration::ZERO;
                }
            }
            if trial.processing >= config.trial {
                return Ok(trial);
            }
        }
        replay.next_pass();
    }
}
