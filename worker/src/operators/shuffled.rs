//! The records of a repartition topic, between the stage that computes a key and the stage
//! that keeps state by it (docs/ARCHITECTURE.md, "Stages and repartition topics"). Two
//! kinds, both written by an upstream task inside its Kafka transaction:
//!
//! - an **event**: its Kafka key is the key text; its value carries the event time, the
//!   upstream watermark just before the event (which decides the windows it joins
//!   downstream), the source coordinates (for dead letters downstream) and the event's
//!   current object as JSON. An event of a join's second stream (`join.with`) is written
//!   with kind 3 instead of 0, so the downstream task knows its side; every other event
//!   (a job without a join, the join's left side) keeps kind 0;
//! - a **watermark marker**, sent to every downstream partition at each commit whose
//!   watermark moved: the upstream task's index and its watermark;
//! - a **partial aggregate**: when the window follows the shuffle directly, an upstream
//!   task aggregates its events per key and window itself and sends, at each checkpoint,
//!   one record per key (its Kafka key) with the windows it touched and their accumulators
//!   (in the snapshot's pane form), which the downstream task merges. The events' windows
//!   and lateness are decided upstream either way, so the result is the same; only far
//!   fewer records cross the topic.
//!
//! Layout (little-endian): `"WS" u8:version(1) u8:kind`, then for an event (kind 0 or 3)
//! `i64:event_ms u8:has_watermark [i64:watermark_ms] i32:source_partition
//! i64:source_offset` and the object's JSON to the end; for a marker (kind 1)
//! `u32:upstream i64:watermark_ms`; for a partial aggregate (kind 2) the panes to the
//! end. Anything else is refused: a repartition topic holds only what weir wrote, so a
//! record that does not read is corruption, never skipped. (Kinds 2 and 3 add to version 1
//! without changing it: every record written before them reads as it did.)

const MAGIC: &[u8; 2] = b"WS";
const VERSION: u8 = 1;
const KIND_EVENT: u8 = 0;
const KIND_WATERMARK: u8 = 1;
const KIND_PARTIAL: u8 = 2;
const KIND_EVENT_RIGHT: u8 = 3;
/// Bytes an event adds to its object: the largest event header.
pub const EVENT_HEADER_BYTES_MAX: usize = 4 + 8 + 1 + 8 + 4 + 8;

/// Which stream of a job an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JoinSide {
    /// The job's source: every event of a job without a join, and the left side of one.
    Left,
    /// The second stream of a job's `join` (`join.with`).
    Right,
}

/// One record of a repartition topic, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shuffled<'a> {
    /// An event routed by its key.
    Event {
        /// The stream it comes from.
        side: JoinSide,
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

/// The value of an event record of the job's source.
pub fn encode_event(
    event_ms: i64,
    watermark_before_ms: Option<i64>,
    source_partition: i32,
    source_offset: i64,
    object: &[u8],
) -> Vec<u8> {
    encode_side_event(
        JoinSide::Left,
        event_ms,
        watermark_before_ms,
        source_partition,
        source_offset,
        object,
    )
}

/// The value of an event record of `side`; its source coordinates are those of the
/// side's own topic.
pub fn encode_side_event(
    side: JoinSide,
    event_ms: i64,
    watermark_before_ms: Option<i64>,
    source_partition: i32,
    source_offset: i64,
    object: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(EVENT_HEADER_BYTES_MAX + object.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(match side {
        JoinSide::Left => KIND_EVENT,
        JoinSide::Right => KIND_EVENT_RIGHT,
    });
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
        kind @ (KIND_EVENT | KIND_EVENT_RIGHT) => {
            let side = if kind == KIND_EVENT {
                JoinSide::Left
            } else {
                JoinSide::Right
            };
            let event_ms = r.i64()?;
            let watermark_before_ms = match r.u8()? {
                0 => None,
                1 => Some(r.i64()?),
                tag => return Err(format!("bad watermark tag {tag}")),
            };
            let source_partition = i32::from_le_bytes(r.array()?);
            let source_offset = r.i64()?;
            Ok(Shuffled::Event {
                side,
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
                side: JoinSide::Left,
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
    fn an_event_says_its_side_and_a_version_1_event_reads_as_the_left_one() {
        let right = encode_side_event(JoinSide::Right, 5, Some(1), 2, 3, b"{}");
        assert_eq!(right[3], KIND_EVENT_RIGHT);
        assert_eq!(
            decode(&right),
            Ok(Shuffled::Event {
                side: JoinSide::Right,
                event_ms: 5,
                watermark_before_ms: Some(1),
                source_partition: 2,
                source_offset: 3,
                object: b"{}",
            })
        );
        // A record as written before sides existed, byte for byte.
        let mut before: Vec<u8> = b"WS\x01\x00".to_vec();
        before.extend_from_slice(&7i64.to_le_bytes());
        before.push(0);
        before.extend_from_slice(&1i32.to_le_bytes());
        before.extend_from_slice(&9i64.to_le_bytes());
        before.extend_from_slice(b"{}");
        assert_eq!(before, encode_event(7, None, 1, 9, b"{}"));
        assert!(matches!(
            decode(&before),
            Ok(Shuffled::Event {
                side: JoinSide::Left,
                ..
            })
        ));
        let mut other_kind = right.clone();
        other_kind[3] = 4;
        assert!(decode(&other_kind).is_err());
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
