//! Reading a dead-letter record as the worker writes it (`{"reason", "detail", "topic",
//! "partition", "offset", "payload"}`, or `payload_base64` for a value that is not UTF-8)
//! back into a [`RefDeadLetter`], dropping the free-text detail, for comparison.

use super::{RefDeadLetter, ReferenceError};
use serde_json::Value;

/// Parses one dead-letter record's value.
pub fn parse_dead_letter(bytes: &[u8]) -> Result<RefDeadLetter, ReferenceError> {
    let bad = |what: &str| ReferenceError::BadDeadLetter(what.to_string());
    let value: Value = serde_json::from_slice(bytes).map_err(|err| bad(&err.to_string()))?;
    let object = value.as_object().ok_or_else(|| bad("not an object"))?;
    let text = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad(&format!("`{name}` is not a string")))
    };
    let integer = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(&format!("`{name}` is not an integer")))
    };
    let partition = i32::try_from(integer("partition")?).map_err(|_| bad("partition range"))?;
    let payload = match (object.get("payload"), object.get("payload_base64")) {
        (Some(Value::Null), None) => None,
        (Some(Value::String(text)), None) => Some(text.as_bytes().to_vec()),
        (None, Some(Value::String(encoded))) => {
            Some(base64_decode(encoded).ok_or_else(|| bad("`payload_base64` is not base64"))?)
        }
        _ => return Err(bad("needs exactly one of `payload`, `payload_base64`")),
    };
    let truncated = match object.get("truncated") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => {
            let original = object
                .get("original_bytes")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("`original_bytes` is not an integer"))?;
            Some((original, text("sha256")?))
        }
        Some(_) => return Err(bad("`truncated` is not a boolean")),
    };
    Ok(RefDeadLetter {
        reason: text("reason")?,
        topic: text("topic")?,
        partition,
        offset: integer("offset")?,
        payload,
        truncated,
    })
}

/// Decodes standard, padded base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let padding = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 {
            return None;
        }
        let mut triple: u32 = 0;
        for &b in &chunk[..4 - padding] {
            let sextet = ALPHABET.iter().position(|&a| a == b)?;
            triple = (triple << 6) | sextet as u32;
        }
        triple <<= 6 * padding;
        let decoded = [(triple >> 16) as u8, (triple >> 8) as u8, triple as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ];
        for (encoded, decoded) in cases {
            assert_eq!(
                base64_decode(encoded).unwrap(),
                decoded.as_bytes(),
                "{encoded}"
            );
        }
        assert_eq!(base64_decode("/wBhYg==").unwrap(), [0xff, 0x00, b'a', b'b']);
        assert!(base64_decode("Zm9").is_none());
        assert!(base64_decode("Zm9!").is_none());
    }

    #[test]
    fn reads_both_payload_forms() {
        let text = br#"{"reason":"late","detail":"x","topic":"t","partition":2,"offset":9,"payload":"{}"}"#;
        let letter = parse_dead_letter(text).unwrap();
        assert_eq!(
            letter,
            RefDeadLetter {
                reason: "late".into(),
                topic: "t".into(),
                partition: 2,
                offset: 9,
                payload: Some(b"{}".to_vec()),
                truncated: None,
            }
        );
        let binary = br#"{"reason":"undecodable","detail":"","topic":"t","partition":0,"offset":1,"payload_base64":"/w=="}"#;
        assert_eq!(parse_dead_letter(binary).unwrap().payload, Some(vec![0xff]));
        let none = br#"{"reason":"undecodable","detail":"","topic":"t","partition":0,"offset":1,"payload":null}"#;
        assert_eq!(parse_dead_letter(none).unwrap().payload, None);
    }
}
