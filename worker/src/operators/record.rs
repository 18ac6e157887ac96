//! What goes into the operator engine and what comes out of it: a source record as read
//! from Kafka, the result records for the sink topic, and the dead letters for the job's
//! dead-letter topic with the wire form docs/JOB_SPEC.md describes.

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
}

impl DeadLetterReason {
    /// Every reason.
    pub const ALL: [DeadLetterReason; 5] = [
        DeadLetterReason::Undecodable,
        DeadLetterReason::NotAnObject,
        DeadLetterReason::BadEventTime,
        DeadLetterReason::ExpressionError,
        DeadLetterReason::Late,
    ];

    /// The reason as the dead-letter record writes it, like `bad_event_time`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::NotAnObject => "not_an_object",
            DeadLetterReason::BadEventTime => "bad_event_time",
            DeadLetterReason::ExpressionError => "expression_error",
            DeadLetterReason::Late => "late",
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
}

/// Appends `text` as a JSON string, escaped the way serde_json escapes.
pub(crate) fn write_json_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Appends the standard, padded base64 encoding of `bytes`.
fn base64_encode(out: &mut Vec<u8>, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
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
                "late"
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
}
