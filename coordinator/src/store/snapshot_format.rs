//! The bytes of a Raft snapshot: the applied state as JSON, with the version of this
//! encoding as its first field (`format_version`). The same bytes are stored in the
//! `raft_snapshot` table and sent to a member that is too far behind, so the version
//! travels with them. A snapshot without the field was written before versions existed
//! and is version 1; one of a newer version is refused with a sentence naming both
//! versions, never read as something else.

use super::state_machine::AppliedState;
use crate::raft_types::{LogId, StoredMembership};
use crate::state::ControlState;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The snapshot format this code writes, and the newest it reads. Bump it (and regenerate
/// `coordinator/tests/golden/raft_snapshot.json`) when the applied state's encoding
/// changes.
pub const SNAPSHOT_FORMAT_VERSION: u64 = 1;

/// Why snapshot bytes cannot be read.
#[derive(Debug, Error)]
pub enum SnapshotFormatError {
    #[error(
        "the Raft snapshot has format version {found}, but this coordinator reads versions up \
         to {supported}: it was written by a newer weir"
    )]
    Newer { found: u64, supported: u64 },
    #[error("the Raft snapshot does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A snapshot as written: the version first, then the applied state's fields.
#[derive(Serialize)]
struct Written<'a> {
    format_version: u64,
    last_applied: &'a Option<LogId>,
    membership: &'a StoredMembership,
    control: &'a ControlState,
}

/// A snapshot as read: any version, checked before the state is used.
#[derive(Deserialize)]
struct Read {
    #[serde(default = "unrecorded_version")]
    format_version: u64,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    control: ControlState,
}

/// The version of a snapshot written before the version was recorded.
fn unrecorded_version() -> u64 {
    1
}

/// The bytes of a snapshot of `applied`, at [`SNAPSHOT_FORMAT_VERSION`].
pub fn encode(applied: &AppliedState) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Written {
        format_version: SNAPSHOT_FORMAT_VERSION,
        last_applied: &applied.last_applied,
        membership: &applied.membership,
        control: &applied.control,
    })
}

/// The applied state in snapshot bytes of any version this code reads.
pub fn decode(bytes: &[u8]) -> Result<AppliedState, SnapshotFormatError> {
    let read: Read = serde_json::from_slice(bytes)?;
    if read.format_version > SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotFormatError::Newer {
            found: read.format_version,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    Ok(AppliedState {
        last_applied: read.last_applied,
        membership: read.membership,
        control: read.control,
    })
}
