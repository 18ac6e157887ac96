//! `lifecycle-bench`: savepoint duration and upgrade/restart downtime of a windowed velocity
//! job holding K keys of open window state, on weir and on Flink, against the same Kafka,
//! the same topic layout and the same events (docs/BENCHMARKS.md, "Life cycle").
//!
//! The event-time layout makes outputs flow continuously while every key's window stays
//! open: all keyed events fall in one far window `[S, S + 1 s)`; each tick of the load adds,
//! per source partition, an "emitter" event in an early window and a "pusher" event that a
//! filter drops but whose event time moves the partition's watermark (the largest event
//! time seen minus the out-of-orderness bound, [`OUT_OF_ORDERNESS_MS`]) just past that early
//! window, so it fires at once. The watermark stays far below `S` for hours of ticks, so
//! the K keys' windows never fire. Each fired emitter window is one output, stamped with
//! the job's version `v` by a map after the aggregate: the sink shows which version wrote
//! what, and when, to a `read_committed` reader.

pub mod drive;
pub mod flink_side;
pub mod load;
pub mod sink;
pub mod stats;
pub mod weir_side;

/// Source partitions (and tasks on both sides): one per core of the bench machine.
pub const PARTITIONS: u32 = 2;
/// The tumbling window's size.
pub const WINDOW_MS: i64 = 1_000;
/// The watermark's bound on out-of-order events: far enough to keep the keys' window open
/// for [`OUT_OF_ORDERNESS_MS`] / [`WINDOW_MS`] ticks (days of them at the tick rate).
pub const OUT_OF_ORDERNESS_MS: i64 = 6 * 24 * 3_600_000;
/// The start of the first emitter window (a multiple of the window's size).
pub const BASE_MS: i64 = 1_700_000_000_000;
/// The start of the window that holds every key's state.
pub const STATE_WINDOW_MS: i64 = BASE_MS + OUT_OF_ORDERNESS_MS;
/// The checkpoint (and so commit) interval, the same on both sides.
pub const CHECKPOINT_INTERVAL_MS: u64 = 500;

/// Which system a row of figures is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Weir,
    Flink,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Weir => "weir",
            System::Flink => "Flink",
        }
    }
}

/// The Kafka topics of one run: fresh per system and key count.
#[derive(Debug, Clone)]
pub struct Topics {
    pub source: String,
    pub sink: String,
    pub dead_letters: String,
}

impl Topics {
    pub fn new(system: System, keys: u64) -> Topics {
        let stem = format!("lb-{}-{keys}", system.name().to_lowercase());
        Topics {
            source: format!("{stem}-events"),
            sink: format!("{stem}-out"),
            dead_letters: format!("{stem}-dlq"),
        }
    }
}

/// What one system measured at one key count.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Request to `complete` of a savepoint of the running job.
    pub savepoint_ms: Vec<f64>,
    /// Stop with a savepoint: request to stopped with the savepoint complete.
    pub stop_savepoint_ms: Vec<f64>,
    /// Last output of the old version to first output of the new one (per partition, the
    /// largest over partitions).
    pub upgrade_downtime_ms: Vec<f64>,
    /// Stop with a savepoint then start from it: the longest gap in each partition's output.
    pub restart_downtime_ms: Vec<f64>,
    /// The longest gap between two outputs of a partition in steady state: the noise floor.
    pub steady_gap_ms: f64,
    /// The savepoint's size on disk.
    pub state_bytes: Option<u64>,
    /// Emitter windows seen more than once, and never seen, over the whole run.
    pub duplicates: u64,
    pub missing: u64,
    /// Where an upgrade's time goes: each phase's end, in milliseconds after the request,
    /// one sample per upgrade, in the order the phases happen.
    pub upgrade_phases: Vec<(String, Vec<f64>)>,
    /// Notes on what happened (placement, retries), printed under the table.
    pub notes: Vec<String>,
}

impl Figures {
    /// Adds one sample of an upgrade phase.
    pub fn phase(&mut self, name: &str, ms: f64) {
        match self.upgrade_phases.iter_mut().find(|(n, _)| n == name) {
            Some((_, samples)) => samples.push(ms),
            None => self.upgrade_phases.push((name.to_string(), vec![ms])),
        }
    }
}

/// The bytes of every file under `path` (or of `path` itself when it is a file).
pub fn dir_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        total += dir_bytes(&entry?.path())?;
    }
    Ok(total)
}
