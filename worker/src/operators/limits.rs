//! The bounds on what one partition's pipeline holds in memory. Reaching one is not
//! something the engine can resolve by itself — dropping state would silently change
//! results — so it fails fast: `Pipeline::process` returns [`PipelineError::StateLimit`]
//! naming the bound, the pipeline refuses further records, and the partition's driver
//! reports the job as failed (to be restarted from its last checkpoint once the job, or
//! these bounds, are changed).

use std::fmt;

/// The most keys with open windows one partition holds.
pub const KEYS_PER_PARTITION_MAX: usize = 1_000_000;
/// The most open windows (sessions included) one key holds.
pub const OPEN_WINDOWS_PER_KEY_MAX: usize = 10_000;
/// The most open windows one partition holds, over all its keys.
pub const OPEN_WINDOWS_PER_PARTITION_MAX: usize = 4_000_000;
/// The most keys one dedupe stage of one partition remembers at once.
pub const DEDUPE_KEYS_MAX: usize = 4_000_000;
/// The most events (both sides) one partition's interval join buffers; for a temporal
/// join, the most versions and waiting left events.
pub const JOIN_ENTRIES_PER_PARTITION_MAX: usize = 4_000_000;
/// The most events (both sides) one key of an interval join buffers; for a temporal join,
/// the most versions and waiting left events of one key.
pub const JOIN_ENTRIES_PER_KEY_MAX: usize = 100_000;
/// The most bytes (objects, keys, bookkeeping) one partition's join (interval or
/// temporal) buffers.
pub const JOIN_BYTES_PER_PARTITION_MAX: usize = 1 << 30;
/// The most windows one event may belong to (a sliding window's size / slide, rounded
/// up); validation refuses a spec beyond it at submit time.
pub use weir_core::spec::validate::WINDOWS_PER_EVENT_MAX;
/// The longest key (key_by or dedupe) in bytes; a longer one is an `expression_error`.
pub const KEY_LEN_MAX_BYTES: usize = 4_096;

/// A bound on partition state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateLimit {
    /// [`KEYS_PER_PARTITION_MAX`].
    KeysPerPartition,
    /// [`OPEN_WINDOWS_PER_KEY_MAX`].
    OpenWindowsPerKey,
    /// [`OPEN_WINDOWS_PER_PARTITION_MAX`].
    OpenWindowsPerPartition,
    /// [`DEDUPE_KEYS_MAX`].
    DedupeKeys,
    /// [`JOIN_ENTRIES_PER_PARTITION_MAX`].
    JoinEntriesPerPartition,
    /// [`JOIN_ENTRIES_PER_KEY_MAX`].
    JoinEntriesPerKey,
    /// [`JOIN_BYTES_PER_PARTITION_MAX`].
    JoinBytesPerPartition,
}

impl StateLimit {
    /// The bound's value.
    pub const fn max(self) -> usize {
        match self {
            StateLimit::KeysPerPartition => KEYS_PER_PARTITION_MAX,
            StateLimit::OpenWindowsPerKey => OPEN_WINDOWS_PER_KEY_MAX,
            StateLimit::OpenWindowsPerPartition => OPEN_WINDOWS_PER_PARTITION_MAX,
            StateLimit::DedupeKeys => DEDUPE_KEYS_MAX,
            StateLimit::JoinEntriesPerPartition => JOIN_ENTRIES_PER_PARTITION_MAX,
            StateLimit::JoinEntriesPerKey => JOIN_ENTRIES_PER_KEY_MAX,
            StateLimit::JoinBytesPerPartition => JOIN_BYTES_PER_PARTITION_MAX,
        }
    }

    /// What is bounded, in words.
    pub const fn what(self) -> &'static str {
        match self {
            StateLimit::KeysPerPartition => "keys with open windows in one partition",
            StateLimit::OpenWindowsPerKey => "open windows of one key",
            StateLimit::OpenWindowsPerPartition => "open windows in one partition",
            StateLimit::DedupeKeys => "keys remembered by one dedupe stage in one partition",
            StateLimit::JoinEntriesPerPartition => "events buffered by the join in one partition",
            StateLimit::JoinEntriesPerKey => "events buffered by the join for one key",
            StateLimit::JoinBytesPerPartition => "bytes buffered by the join in one partition",
        }
    }
}

impl fmt::Display for StateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at most {})", self.what(), self.max())
    }
}

/// Why a pipeline stopped processing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// A bound on partition state was reached.
    #[error("the job holds too much state: it reached the limit on {0}")]
    StateLimit(StateLimit),
    /// A record of a repartition topic is not one weir wrote there.
    #[error("a repartition record does not read: {0}")]
    CorruptRepartitionRecord(String),
    /// The source declared `partitioned_by`, and an event is on another partition than
    /// its key's: windows by that key would be split between tasks.
    #[error(
        "source.partitioned_by is wrong: the event at partition {partition} offset {offset} has \
         key {key:?}, which Kafka's keyed partitioner places on partition {expected}; \
         remove partitioned_by (the job then repartitions) or produce the topic keyed by it"
    )]
    NotPartitionedBy {
        partition: i32,
        offset: i64,
        key: String,
        expected: u32,
    },
}
