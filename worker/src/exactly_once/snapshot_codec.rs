//! The bytes a checkpoint stores: the checkpoint id (8 bytes, little endian) before the
//! pipeline's own snapshot, so recovery knows which id it restored and the next
//! checkpoint's id can be above it.

use crate::operators::RestoreError;
use weir_core::ids::CheckpointId;

/// Length of the checkpoint id prefix in a stored snapshot.
const SNAPSHOT_HEADER_BYTES: usize = 8;

/// The stored form of the pipeline snapshot `pipeline` taken for `checkpoint`.
pub fn encode_snapshot(checkpoint: CheckpointId, pipeline: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + pipeline.len());
    out.extend_from_slice(&checkpoint.0.to_le_bytes());
    out.extend_from_slice(pipeline);
    out
}

/// The checkpoint id and the pipeline snapshot of stored `bytes`.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(CheckpointId, &[u8]), RestoreError> {
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(RestoreError::Corrupt("shorter than its header".into()));
    }
    let (head, rest) = bytes.split_at(SNAPSHOT_HEADER_BYTES);
    let id = u64::from_le_bytes(
        head.try_into()
            .map_err(|_| RestoreError::Corrupt("header".into()))?,
    );
    Ok((CheckpointId(id), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_with_its_checkpoint_id() {
        let bytes = encode_snapshot(CheckpointId(7), b"state");
        assert_eq!(&bytes[..8], &7u64.to_le_bytes());
        assert_eq!(
            decode_snapshot(&bytes).unwrap(),
            (CheckpointId(7), &b"state"[..])
        );
    }

    #[test]
    fn a_snapshot_shorter_than_its_header_is_corrupt() {
        assert!(matches!(
            decode_snapshot(b"1234567"),
            Err(RestoreError::Corrupt(_))
        ));
    }
}
