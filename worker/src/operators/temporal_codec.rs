//! The temporal join's state as bytes, for checkpoints: the whole state (a snapshot
//! section) and one key's state (an entry of the local copy), with the interval join's
//! conventions (`join_codec.rs`): fixed-width little-endian numbers, length-prefixed byte
//! strings, keys in order, so one state always gives the same bytes. A version's deletion
//! flag is not written: it is read again from its object.
//!
//! ```text
//! state: u32:keys { u32:len key-bytes  key-state }*        (keys in byte order)
//! key-state: u32:versions { i64:event_ms u32:len object }*  (event times ascending)
//!            u32:waiting { i64:event_ms u32:len object }*   (arrival order)
//! ```

use super::join::JoinPlan;
use super::join_codec::{write_bytes, write_len, Reader};
use super::temporal::{is_deletion, TemporalKey, TemporalState, Version, Waiting};
use weir_core::bugs::{planted, PlantedBug};

/// Appends the whole state to `out`.
pub(crate) fn write_state(state: &TemporalState, out: &mut Vec<u8>) {
    if planted(PlantedBug::JoinStateNotInSnapshot) {
        write_len(out, 0);
        return;
    }
    let keys: Vec<(&str, &TemporalKey)> = state.keys().collect();
    write_len(out, keys.len());
    for (key, entry) in keys {
        write_bytes(out, key.as_bytes());
        write_key(out, entry);
    }
}

/// One key's state as a local-copy entry value; `None` when the key holds nothing.
pub(crate) fn key_value(state: &TemporalState, key: &str) -> Option<Vec<u8>> {
    if planted(PlantedBug::JoinStateNotInSnapshot) {
        return None;
    }
    let entry = state.key(key)?;
    let mut out = Vec::new();
    write_key(&mut out, entry);
    Some(out)
}

/// Reads a state written by [`write_state`] from the front of `bytes`; returns it and the
/// bytes after it.
pub(crate) fn read_state<'a>(
    plan: &JoinPlan,
    bytes: &'a [u8],
) -> Result<(TemporalState, &'a [u8]), String> {
    let mut r = Reader { bytes };
    let mut state = TemporalState::default();
    let keys = r.len(plan.limits.entries_per_partition)?;
    let mut previous: Option<String> = None;
    for _ in 0..keys {
        let key = std::str::from_utf8(r.bytes_prefixed()?)
            .map_err(|_| "a temporal join key is not UTF-8".to_string())?
            .to_string();
        if previous.as_deref().is_some_and(|p| p >= key.as_str()) {
            return Err("temporal join keys out of order".into());
        }
        let entry = read_key(&mut r, plan)?;
        state.restore_key(plan, &key, entry)?;
        previous = Some(key);
    }
    Ok((state, r.bytes))
}

/// Reads one key's state, written by [`key_value`], into `state`.
pub(crate) fn restore_key_value(
    plan: &JoinPlan,
    state: &mut TemporalState,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    let mut r = Reader { bytes: value };
    let entry = read_key(&mut r, plan)?;
    if !r.bytes.is_empty() {
        return Err(format!("trailing bytes after temporal join key {key:?}"));
    }
    state.restore_key(plan, key, entry)
}

fn write_key(out: &mut Vec<u8>, entry: &TemporalKey) {
    write_len(out, entry.versions.len());
    for version in &entry.versions {
        out.extend_from_slice(&version.event_ms.to_le_bytes());
        write_bytes(out, &version.object);
    }
    write_len(out, entry.waiting.len());
    for waiting in &entry.waiting {
        out.extend_from_slice(&waiting.event_ms.to_le_bytes());
        write_bytes(out, &waiting.object);
    }
}

fn read_key(r: &mut Reader<'_>, plan: &JoinPlan) -> Result<TemporalKey, String> {
    let mut entry = TemporalKey::default();
    let versions = r.len(plan.limits.entries_per_key)?;
    for _ in 0..versions {
        let event_ms = r.event_ms()?;
        let object = r.bytes_prefixed()?.to_vec();
        entry.versions.push(Version {
            event_ms,
            deleted: is_deletion(&object),
            object,
        });
    }
    let waiting = r.len(plan.limits.entries_per_key)?;
    for _ in 0..waiting {
        let event_ms = r.event_ms()?;
        let object = r.bytes_prefixed()?.to_vec();
        entry.waiting.push(Waiting { event_ms, object });
    }
    Ok(entry)
}
