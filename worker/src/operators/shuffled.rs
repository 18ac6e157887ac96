//! The records of a repartition topic, between the stage that computes a key and the stage
//! that keeps state by it (docs/ARCHITECTURE.md, "Stages and repartition topics"). Two
//! kinds, both written by an upstream task inside its Kafka transaction:
//!
//! - an **event**: its Kafka key is the key text; its value carries the event time, the
//!   upstream watermark just before the event (which decides the windows it joins
//!   downstream), the source coordinates (for dead letters downstream) and the event's
//!   current object as JSON;
//! - a **watermark marker**, sent to every downstream partition at each commit whose
//!   watermark moved: the upstream task's index and its watermark;
//! - a **partial aggregate**: when the window follows the shuffle directly, an upstream
//!   task aggregates its events per key and window itself and sends, at each checkpoint,
//!   one record per key (its Kafka key) with the windows it touched and their accumulators
//!   (in the snapshot's pane form), which the downstream task merges. The events' windows
//!   and lateness are decided upstream either way, so the result is the same; only far
//!   fewer records cross the topic.
//!
//! Layout (little-endian): `"WS" u8:version(1) u8:kind`, then for an event
//! `i64:event_ms u8:has_watermark [i64:watermark_ms] i32:source_partition
//! i64:source_offset` and the object's JSON to the end; for a marker `u32:upstream
//! i64:watermark_ms`; for a partial aggregate the panes to the end. Anything else is refused: a repartition topic holds only what weir
//! wrote, so a record that does not read is corruption, never skipped.

const MAGIC: &[u8; 2] = b"WS";
const VERSION: u8 = 1;
const KIND_EVENT: u8 = 0;
const KIND_WATERMARK: u8 = 1;
const KIND_PARTIAL: u8 = 2;
/// Bytes an event adds to its object: the largest event header.
pub const EVENT_HEADER_BYTES_MAX: usize = 4 + 8 + 1 + 8 + 4 + 8;

/// One record of a repartition topic, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shuffled<'a> {
    /// An event routed by its key.
    Event {
        event_ms: i64,
        /// The upstream task's watermark before this event.
        watermark_before_ms: Option<i64>,
        source_partition: i32,
        source_offset: i64,
        /// The event's current object, as JSON.
        object: &'a [u8],
    },
    /// An upstream task's watermark, sent to every downstream partition.
    Watermark { upstream: u32, watermark_ms: i64 },
    /// An upstream task's partial aggregate of the record's key: its windows' panes.
    Partial { panes: &'a [u8] },
}

/// The value of a partial aggregate record: `panes` as the snapshot writes a key's panes.
pub fn encode_partial(panes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + panes.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(KIND_PARTIAL);
    out.extend_from_slice(panes);
    out
}

/// The value of an event record.
pub fn encode_event(
    event_ms: i64,
    watermark_before_ms: Option<i64>,
    source_partition: i32,
    source_offset: i64,
    object: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(EVENT_HEADER_BYTES_MAX + object.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(KIND_EVENT);
    out.extend_from_slice(&event_ms.to_le_bytes());
    match watermark_before_ms {
        None => out.push(0),
        Some(ms) => {
            out.push(1);
            out.extend_from_slice(&ms.to_le_bytes());
        }
    }
    out.extend_from_slice(&source_partition.to_le_bytes());
    out.extend_from_slice(&source_offset.to_le_bytes());
    out.extend_from_slice(object);
    out
}

/// The value of a watermark marker.
pub fn encode_watermark(upstream: u32, watermark_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(KIND_WATERMARK);
    out.extend_from_slice(&upstream.to_le_bytes());
    out.extend_from_slice(&watermark_ms.to_le_bytes());
    out
}

/// Reads a repartition record's value; the error says what is wrong with it.
pub fn decode(value: &[u8]) -> Result<Shuffled<'_>, String> {
    let mut r = Cursor { bytes: value };
    if r.take(2)? != MAGIC {
        return Err("not a weir repartition record".into());
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!("unknown repartition record version {version}"));
    }
    match r.u8()? {
        KIND_EVENT => {
            let event_ms = r.i64()?;
            let watermark_before_ms = match r.u8()? {
                0 => None,
                1 => Some(r.i64()?),
                tag => return Err(format!("bad watermark tag {tag}")),
            };
            let source_partition = i32::from_le_bytes(r.array()?);
            let source_offset = r.i64()?;
            Ok(Shuffled::Event {
                event_ms,
                watermark_before_ms,
                source_partition,
                source_offset,
                object: r.bytes,
            })
        }
        KIND_WATERMARK => {
            let upstream = u32::from_le_bytes(r.array()?);
            let watermark_ms = r.i64()?;
            if !r.bytes.is_empty() {
                return Err("trailing bytes after a watermark marker".into());
            }
            Ok(Shuffled::Watermark {
                upstream,
                watermark_ms,
            })
        }
        KIND_PARTIAL => Ok(Shuffled::Partial { panes: r.bytes }),
        kind => Err(format!("unknown repartition record kind {kind}")),
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("a repartition record is cut short".into());
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
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_markers_read_back_as_written() {
        let value = encode_event(1_000, Some(-5), 3, 77, br#"{"a":1}"#);
        assert!(value.len() <= EVENT_HEADER_BYTES_MAX + 7);
        assert_eq!(
            decode(&value),
            Ok(Shuffled::Event {
                event_ms: 1_000,
                watermark_before_ms: Some(-5),
                source_partition: 3,
                source_offset: 77,
                object: br#"{"a":1}"#,
            })
        );
        let value = encode_event(i64::MIN, None, 0, 0, b"");
        assert!(matches!(
            decode(&value),
            Ok(Shuffled::Event {
                watermark_before_ms: None,
                ..
            })
        ));
        assert_eq!(
            decode(&encode_partial(b"panes")),
            Ok(Shuffled::Partial { panes: b"panes" })
        );
        assert_eq!(
            decode(&encode_watermark(9, 123)),
            Ok(Shuffled::Watermark {
                upstream: 9,
                watermark_ms: 123
            })
        );
    }

    #[test]
    fn anything_weir_did_not_write_is_refused() {
        let marker = encode_watermark(1, 2);
        for cut in 0..marker.len() {
            assert!(decode(&marker[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = marker.clone();
        long.push(0);
        assert!(decode(&long).is_err());
        assert!(decode(br#"{"a":1}"#).is_err());
        let mut other_version = marker.clone();
        other_version[2] = 9;
        assert!(decode(&other_version).is_err());
        let event = encode_event(1, None, 0, 0, b"{}");
        for cut in 0..(event.len() - 2) {
            assert!(decode(&event[..cut]).is_err(), "cut at {cut}");
        }
    }
}
