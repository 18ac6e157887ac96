//! What goes into the operator engine and what comes out of it: a source record as read
//! from Kafka, the result records for the sink topic, and the dead letters for the job's
//! dead-letter topic with the wire form docs/JOB_SPEC.md describes.

use sha2::{Digest, Sha256};
use std::fmt;

/// One record of the source topic, as the broker seam delivers it: the engine reads the
/// reader's records as they are, with no copy in between.
pub type SourceRecord = weir_broker::BrokerRecord;

/// What processing some records produced, in order: results for the sink topic and
/// dead letters for the dead-letter topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    /// Records for the sink topic, in the order they were produced.
    pub records: Vec<OutputRecord>,
    /// Records for the dead-letter topic, in the order they were produced.
    pub dead_letters: Vec<DeadLetter>,
}

impl Outputs {
    /// No outputs.
    pub fn new() -> Self {
        Outputs::default()
    }

    /// Whether nothing was produced.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.dead_letters.is_empty()
    }

    /// Forgets every output, keeping the allocations for reuse.
    pub fn clear(&mut self) {
        self.records.clear();
        self.dead_letters.clear();
    }
}

/// One result for the sink topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// The Kafka key: the key_by key (a window's key for window results), else none.
    pub key: Option<String>,
    /// The Kafka value: one JSON object.
    pub value: Vec<u8>,
    /// The offset of the source record it came from (for a window result, the record whose
    /// watermark fired it): the coordinates of its dead letter should it be too large to
    /// produce.
    pub source_offset: i64,
    /// Where it goes: 0 the sink, `i` the spec's route `i - 1` (the first whose `when`
    /// held).
    pub route: u16,
}

/// Why an event went to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterReason {
    /// The value is missing or is not JSON.
    Undecodable,
    /// The value is JSON but not an object.
    NotAnObject,
    /// The event-time field is missing or unreadable, or the record has no timestamp.
    BadEventTime,
    /// A CEL expression failed, or gave a result of the wrong type.
    ExpressionError,
    /// Every window the event belongs to had already fired.
    Late,
    /// A result was larger than the sink topic accepts; the dead letter carries it (cut to
    /// fit if need be).
    OutputTooLarge,
}

impl DeadLetterReason {
    /// Every reason.
    pub const ALL: [DeadLetterReason; 6] = [
        DeadLetterReason::Undecodable,
        DeadLetterReason::NotAnObject,
        DeadLetterReason::BadEventTime,
        DeadLetterReason::ExpressionError,
        DeadLetterReason::Late,
        DeadLetterReason::OutputTooLarge,
    ];

    /// The reason as the dead-letter record writes it, like `bad_event_time`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::NotAnObject => "not_an_object",
            DeadLetterReason::BadEventTime => "bad_event_time",
            DeadLetterReason::ExpressionError => "expression_error",
            DeadLetterReason::Late => "late",
            DeadLetterReason::OutputTooLarge => "output_too_large",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One record for the dead-letter topic: the reason, a human-readable detail, the source
/// coordinates and the original value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Why the event was not processed.
    pub reason: DeadLetterReason,
    /// What exactly went wrong, for people; not a stable format.
    pub detail: String,
    /// The source record's topic.
    pub topic: String,
    /// The source record's partition.
    pub partition: i32,
    /// The source record's offset.
    pub offset: i64,
    /// The source record's value (for a window result that failed a later stage, the
    /// result's JSON).
    pub payload: Option<Vec<u8>>,
}

impl DeadLetter {
    /// The dead-letter record's value: `{"reason", "detail", "topic", "partition",
    /// "offset", "payload"}`, where `payload` is the original value as a string when it is
    /// UTF-8 (null when the record had none); a value that is not UTF-8 is written
    /// base64-encoded (standard alphabet, padded) under `payload_base64` instead.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.detail.len() + self.payload_len());
        out.extend_from_slice(b"{\"reason\":");
        write_json_str(&mut out, self.reason.as_str());
        out.extend_from_slice(b",\"detail\":");
        write_json_str(&mut out, &self.detail);
        out.extend_from_slice(b",\"topic\":");
        write_json_str(&mut out, &self.topic);
        out.extend_from_slice(format!(",\"partition\":{}", self.partition).as_bytes());
        out.extend_from_slice(format!(",\"offset\":{}", self.offset).as_bytes());
        match &self.payload {
            None => out.extend_from_slice(b",\"payload\":null"),
            Some(payload) => match std::str::from_utf8(payload) {
                Ok(text) => {
                    out.extend_from_slice(b",\"payload\":");
                    write_json_str(&mut out, text);
                }
                Err(_) => {
                    out.extend_from_slice(b",\"payload_base64\":\"");
                    base64_encode(&mut out, payload);
                    out.push(b'"');
                }
            },
        }
        out.push(b'}');
        out
    }

    fn payload_len(&self) -> usize {
        self.payload.as_ref().map_or(0, Vec::len)
    }

    /// The dead-letter record's value in at most `max_bytes` bytes: [`DeadLetter::to_json`]
    /// when that fits. Otherwise the payload (and a detail over
    /// [`DEAD_LETTER_DETAIL_BYTES_MAX`]) is cut to fit, and the record says so:
    /// `"truncated": true`, `"original_bytes"` (the payload's full length) and `"sha256"`
    /// (hex digest of the whole payload) come before the payload prefix, which is written
    /// as `to_json` writes payloads (a UTF-8 prefix cut at a character boundary, or the
    /// base64 of a byte prefix). With a `max_bytes` too small for even that envelope
    /// (a few hundred bytes, far below any Kafka limit) the payload is written as null.
    pub fn to_json_within(&self, max_bytes: usize) -> Vec<u8> {
        let full = self.to_json();
        if full.len() <= max_bytes {
            return full;
        }
        let payload = self.payload.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(max_bytes.min(full.len()));
        out.extend_from_slice(b"{\"reason\":");
        write_json_str(&mut out, self.reason.as_str());
        out.extend_from_slice(b",\"detail\":");
        write_json_str(
            &mut out,
            utf8_prefix(&self.detail, DEAD_LETTER_DETAIL_BYTES_MAX),
        );
        out.extend_from_slice(b",\"topic\":");
        write_json_str(&mut out, &self.topic);
        out.extend_from_slice(format!(",\"partition\":{}", self.partition).as_bytes());
        out.extend_from_slice(format!(",\"offset\":{}", self.offset).as_bytes());
        out.extend_from_slice(b",\"truncated\":true");
        out.extend_from_slice(format!(",\"original_bytes\":{}", payload.len()).as_bytes());
        out.extend_from_slice(b",\"sha256\":\"");
        for byte in Sha256::digest(payload) {
            out.extend_from_slice(format!("{byte:02x}").as_bytes());
        }
        out.push(b'"');
        let utf8 = std::str::from_utf8(payload).ok();
        let field: &[u8] = match utf8 {
            Some(_) => b",\"payload\":\"",
            None => b",\"payload_base64\":\"",
        };
        // The field, its closing quote and the closing brace.
        let budget = max_bytes.saturating_sub(out.len() + field.len() + 2);
        if self.payload.is_none() || max_bytes < out.len() + field.len() + 2 {
            out.extend_from_slice(b",\"payload\":null}");
            return out;
        }
        out.extend_from_slice(field);
        match utf8 {
            Some(text) => {
                let mut taken = 0;
                let mut escaped = 0;
                for c in text.chars() {
                    let len = json_escaped_len(c);
                    if escaped + len > budget {
                        break;
                    }
                    escaped += len;
                    taken += c.len_utf8();
                }
                let mut quoted = Vec::with_capacity(escaped + 2);
                write_json_str(&mut quoted, &text[..taken]);
                // Without the quotes write_json_str put around it.
                out.extend_from_slice(&quoted[1..quoted.len() - 1]);
            }
            None => {
                let bytes = (budget / 4 * 3).min(payload.len());
                base64_encode(&mut out, &payload[..bytes]);
            }
        }
        out.extend_from_slice(b"\"}");
        debug_assert!(out.len() <= max_bytes, "{} > {max_bytes}", out.len());
        out
    }
}

/// Longest detail a cut-down dead letter keeps, in bytes.
pub const DEAD_LETTER_DETAIL_BYTES_MAX: usize = 512;

/// The longest prefix of `text` of at most `max_bytes` bytes that ends at a character
/// boundary.
fn utf8_prefix(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn json_escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Appends `text` as a JSON string, escaped the way serde_json escapes.
pub(crate) fn write_json_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Appends the standard, padded base64 encoding of `bytes` (RFC 4648, section 4).
fn base64_encode(out: &mut Vec<u8>, bytes: &[u8]) {
    use base64::Engine as _;
    // A payload is at most one broker record, far below where the length could overflow.
    let len = bytes.len().div_ceil(3) * 4;
    let start = out.len();
    out.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD.encode_slice(bytes, &mut out[start..]);
    // The space is exactly the padded length, so the engine has all it needs.
    assert_eq!(written.ok(), Some(len), "base64 fills its padded length");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: Option<&[u8]>) -> DeadLetter {
        DeadLetter {
            reason: DeadLetterReason::BadEventTime,
            detail: "field \"ts\" is missing".into(),
            topic: "payments".into(),
            partition: 3,
            offset: 42,
            payload: payload.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn reasons_are_snake_case() {
        let names: Vec<_> = DeadLetterReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "undecodable",
                "not_an_object",
                "bad_event_time",
                "expression_error",
                "late",
                "output_too_large"
            ]
        );
    }

    #[test]
    fn utf8_payloads_are_written_as_strings() {
        let json = letter(Some(br#"{"a":1}"#)).to_json();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "reason": "bad_event_time",
                "detail": "field \"ts\" is missing",
                "topic": "payments",
                "partition": 3,
                "offset": 42,
                "payload": "{\"a\":1}",
            })
        );
    }

    #[test]
    fn other_payloads_are_base64() {
        let json = letter(Some(&[0xff, 0x00, b'a', b'b'])).to_json();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["payload_base64"], "/wBhYg==");
        assert!(value.get("payload").is_none());
        let none: serde_json::Value = serde_json::from_slice(&letter(None).to_json()).unwrap();
        assert_eq!(none["payload"], serde_json::Value::Null);
    }

    fn within(letter: &DeadLetter, max_bytes: usize) -> serde_json::Value {
        let json = letter.to_json_within(max_bytes);
        assert!(json.len() <= max_bytes, "{} > {max_bytes}", json.len());
        serde_json::from_slice(&json).unwrap()
    }

    #[test]
    fn a_dead_letter_that_fits_is_written_whole() {
        let l = letter(Some(br#"{"a":1}"#));
        assert_eq!(l.to_json_within(10_000), l.to_json());
    }

    #[test]
    fn a_large_binary_payload_is_cut_to_fit_with_its_size_and_digest() {
        // A 1,000,000-byte record that is not UTF-8: its base64 alone is 1.33 MB.
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8 | 0x80).collect();
        let l = letter(Some(&payload));
        assert!(l.to_json().len() > 1_300_000);
        let value = within(&l, 999_000);
        assert_eq!(value["truncated"], true);
        assert_eq!(value["original_bytes"], 1_000_000);
        assert_eq!(value["offset"], 42);
        assert_eq!(value["partition"], 3);
        assert_eq!(value["topic"], "payments");
        assert_eq!(value["reason"], "bad_event_time");
        let digest: String = Sha256::digest(&payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(value["sha256"], digest);
        let kept = value["payload_base64"].as_str().unwrap();
        assert!(kept.len() > 990_000, "as much as fits: {}", kept.len());
        let mut expected = Vec::new();
        base64_encode(&mut expected, &payload[..kept.len() / 4 * 3]);
        assert_eq!(kept.as_bytes(), &expected[..]);
    }

    #[test]
    fn a_large_text_payload_is_cut_at_a_character_boundary() {
        let text = "é\"\n\u{1}x".repeat(50_000);
        let l = letter(Some(text.as_bytes()));
        for max in [1_000, 4_321, 100_000] {
            let value = within(&l, max);
            let kept = value["payload"].as_str().unwrap();
            assert!(text.starts_with(kept));
            assert!(kept.len() > max / 4, "{} of {max}", kept.len());
            assert_eq!(value["original_bytes"], text.len());
        }
        // Too small for anything but the envelope.
        let value: serde_json::Value = serde_json::from_slice(&l.to_json_within(200)).unwrap();
        assert_eq!(value["payload"], serde_json::Value::Null);
        assert_eq!(value["truncated"], true);
    }

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            let mut out = Vec::new();
            base64_encode(&mut out, input.as_bytes());
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{input}");
        }
    }

    /// The hand-written encoder the crate replaced, kept as the reference: dead letters
    /// must read the same as before.
    fn base64_reference(out: &mut Vec<u8>, bytes: &[u8]) {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for chunk in bytes.chunks(3) {
            let b0 = chunk[0];
            let b1 = chunk.get(1).copied().unwrap_or(0);
            let b2 = chunk.get(2).copied().unwrap_or(0);
            let triple = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
            out.push(ALPHABET[(triple >> 18) as usize & 63]);
            out.push(ALPHABET[(triple >> 12) as usize & 63]);
            out.push(match chunk.len() {
                1 => b'=',
                _ => ALPHABET[(triple >> 6) as usize & 63],
            });
            out.push(match chunk.len() {
                3 => ALPHABET[triple as usize & 63],
                _ => b'=',
            });
        }
    }

    #[test]
    fn base64_is_byte_identical_to_the_encoder_it_replaced() {
        // Every byte value, every length up to 1 KiB (all three paddings), appended after
        // existing output as the dead-letter writer does.
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        let mut x: u32 = 0x9e37_79b9;
        while bytes.len() < 1024 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bytes.push(x as u8);
        }
        for len in 0..=bytes.len() {
            let (mut ours, mut reference) = (b"prefix".to_vec(), b"prefix".to_vec());
            base64_encode(&mut ours, &bytes[..len]);
            base64_reference(&mut reference, &bytes[..len]);
            assert_eq!(ours, reference, "length {len}");
        }
    }
}
