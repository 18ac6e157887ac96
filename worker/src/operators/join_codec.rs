//! The interval join's state as bytes, for checkpoints: the whole state (a snapshot
//! section) and one key's buffers (an entry of the local copy). The same conventions as
//! the pipeline snapshot — fixed-width little-endian numbers, length-prefixed byte
//! strings, keys in order — so one state always gives the same bytes; reading refuses
//! anything a running join could not have written.
//!
//! ```text
//! state: u32:keys { u32:len key-bytes  buffers }*        (keys in byte order)
//! buffers: u32:left { i64:event_ms u8:matched u32:len object }*
//!          u32:right { i64:event_ms u32:len object }*
//! ```

use super::event_time::EVENT_TIME_ABS_MAX_MS;
use super::join::{Buffered, JoinPlan, JoinState, KeyBuffers};
use weir_core::bugs::{planted, PlantedBug};

/// Appends the whole state to `out`.
pub(crate) fn write_state(state: &JoinState, out: &mut Vec<u8>) {
    if planted(PlantedBug::JoinStateNotInSnapshot) {
        write_len(out, 0);
        return;
    }
    let keys: Vec<(&str, &KeyBuffers)> = state.keys().collect();
    write_len(out, keys.len());
    for (key, buffers) in keys {
        write_bytes(out, key.as_bytes());
        write_buffers(out, buffers);
    }
}

/// One key's buffers as a local-copy entry value; `None` when the key holds nothing.
pub(crate) fn key_value(state: &JoinState, key: &str) -> Option<Vec<u8>> {
    if planted(PlantedBug::JoinStateNotInSnapshot) {
        // The same mistake in the local copy: every key reads as forgotten.
        return None;
    }
    let buffers = state.key(key)?;
    let mut out = Vec::new();
    write_buffers(&mut out, buffers);
    Some(out)
}

/// Reads a state written by [`write_state`] from the front of `bytes`; returns it and the
/// bytes after it.
pub(crate) fn read_state<'a>(
    plan: &JoinPlan,
    bytes: &'a [u8],
) -> Result<(JoinState, &'a [u8]), String> {
    let mut r = Reader { bytes };
    let mut state = JoinState::default();
    let keys = r.len(plan.limits.entries_per_partition)?;
    let mut previous: Option<String> = None;
    for _ in 0..keys {
        let key = std::str::from_utf8(r.bytes_prefixed()?)
            .map_err(|_| "a join key is not UTF-8".to_string())?
            .to_string();
        if previous.as_deref().is_some_and(|p| p >= key.as_str()) {
            return Err("join keys out of order".into());
        }
        let buffers = r.buffers(plan)?;
        state.restore_key(plan, &key, buffers)?;
        previous = Some(key);
    }
    Ok((state, r.bytes))
}

/// Reads one key's buffers, written by [`key_value`], into `state`.
pub(crate) fn restore_key_value(
    plan: &JoinPlan,
    state: &mut JoinState,
    key: &str,
    value: &[u8],
) -> Result<(), String> {
    let mut r = Reader { bytes: value };
    let buffers = r.buffers(plan)?;
    if !r.bytes.is_empty() {
        return Err(format!("trailing bytes after join key {key:?}"));
    }
    state.restore_key(plan, key, buffers)
}

fn write_buffers(out: &mut Vec<u8>, buffers: &KeyBuffers) {
    write_len(out, buffers.left.len());
    for left in &buffers.left {
        out.extend_from_slice(&left.event_ms.to_le_bytes());
        out.push(u8::from(left.matched));
        write_bytes(out, &left.object);
    }
    write_len(out, buffers.right.len());
    for right in &buffers.right {
        out.extend_from_slice(&right.event_ms.to_le_bytes());
        write_bytes(out, &right.object);
    }
}

pub(crate) fn write_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

pub(crate) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Reads the numbers and byte strings of a join state, refusing what is cut short or out
/// of range.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("the join state is cut short".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A u32 count, refused above `max` before anything is allocated for it.
    pub(crate) fn len(&mut self, max: usize) -> Result<usize, String> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        if len > max {
            return Err(format!("a join state count of {len} is above {max}"));
        }
        Ok(len)
    }

    pub(crate) fn bytes_prefixed(&mut self) -> Result<&'a [u8], String> {
        let len = self.len(self.bytes.len())?;
        self.take(len)
    }

    pub(crate) fn event_ms(&mut self) -> Result<i64, String> {
        let ms = i64::from_le_bytes(self.array()?);
        if ms.unsigned_abs() > EVENT_TIME_ABS_MAX_MS as u64 {
            return Err(format!("a join event time of {ms} is out of range"));
        }
        Ok(ms)
    }

    fn buffers(&mut self, plan: &JoinPlan) -> Result<KeyBuffers, String> {
        let mut buffers = KeyBuffers::default();
        let left = self.len(plan.limits.entries_per_key)?;
        for _ in 0..left {
            let event_ms = self.event_ms()?;
            let matched = match self.take(1)?[0] {
                0 => false,
                1 => true,
                tag => return Err(format!("bad matched tag {tag}")),
            };
            let object = self.bytes_prefixed()?.to_vec();
            buffers.left.push(Buffered {
                event_ms,
                object,
                matched,
            });
        }
        let right = self.len(plan.limits.entries_per_key)?;
        for _ in 0..right {
            let event_ms = self.event_ms()?;
            let object = self.bytes_prefixed()?.to_vec();
            buffers.right.push(Buffered {
                event_ms,
                object,
                matched: false,
            });
        }
        Ok(buffers)
    }
}
