//! A pipeline's state as keyed entries, and which of them changed since the last
//! checkpoint, so that a worker-local copy of the state is updated key by key instead of
//! rewritten whole at every checkpoint. The entries and the header together give back the
//! exact snapshot bytes ([`Pipeline::restore_entries`](super::Pipeline::restore_entries)),
//! so a restore from the local copy goes through the same checks as one from a snapshot.

/// The section of entries holding the open windows (dedupe stage `i` is section `i`).
pub const WINDOWS_SECTION: u32 = u32::MAX;

/// One key of a pipeline's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// Which part of the state: a dedupe stage's index, or [`WINDOWS_SECTION`].
    pub section: u32,
    /// The key (the dedupe key, or the `key_by` key of the windows).
    pub key: String,
    /// The key's state in snapshot form; `None` when the key no longer has state.
    pub value: Option<Vec<u8>>,
}

/// What a checkpoint writes to the local copy of a partition's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChanges {
    /// The entries are every key of the state, and the local copy is replaced by them
    /// (the first checkpoint of a pipeline, or more changes than were tracked); otherwise
    /// they are the keys that changed since the previous checkpoint.
    pub full: bool,
    /// The parts of the state that are not per key.
    pub header: Vec<u8>,
    /// The entries, in (section, key) order.
    pub entries: Vec<StateEntry>,
}
