//! JSON as the specification reads and writes it, parsed by hand so every rule is visible
//! here rather than hidden in a library's defaults: UTF-8 only, no byte-order mark, the
//! four whitespace bytes, `\u` escapes that form valid UTF-16, no number beyond the double
//! range, at most [`NESTING_MAX`] levels, the last of a repeated name wins, and a number
//! written without fraction or exponent that fits i64 is an integer.
//!
//! Writing is compact: object keys in byte order (a `BTreeMap<String, _>` iterates so),
//! integers as integers, doubles and strings exactly as serde_json writes them.

use std::collections::BTreeMap;

/// The deepest nesting of arrays and objects a record value may have (the spec's
/// `JSON_NESTING_MAX`).
pub(crate) const NESTING_MAX: usize = 128;

/// A JSON value. Objects keep one entry a name, ordered by the name's bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// A number written without fraction or exponent that fits i64.
    Int(i64),
    /// Only produced by CEL results (`uint`), never by parsing.
    UInt(u64),
    /// Any other number: the nearest double. Always finite.
    Double(f64),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

/// Why a text is not JSON, for the dead letter's detail.
pub(crate) type ParseError = String;

/// Parses one JSON text.
pub(crate) fn parse(bytes: &[u8]) -> Result<Json, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|err| format!("not UTF-8: {err}"))?;
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    parser.skip_whitespace();
    let value = parser.value(1)?;
    parser.skip_whitespace();
    if parser.pos != parser.bytes.len() {
        return Err(format!("trailing bytes at {}", parser.pos));
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, literal: &str) -> Result<(), ParseError> {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(format!("expected `{literal}` at {}", self.pos))
        }
    }

    /// A value at nesting `depth` (1 for the top level); arrays and objects open a level.
    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        match self.peek() {
            None => Err("unexpected end of input".to_string()),
            Some(b'n') => self.expect("null").map(|()| Json::Null),
            Some(b't') => self.expect("true").map(|()| Json::Bool(true)),
            Some(b'f') => self.expect("false").map(|()| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'[') => self.array(depth),
            Some(b'{') => self.object(depth),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(other) => Err(format!("unexpected byte {other:#04x} at {}", self.pos)),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), ParseError> {
        if depth > NESTING_MAX {
            return Err(format!("nested deeper than {NESTING_MAX} levels"));
        }
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.check_depth(depth)?;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth + 1)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(format!("expected `,` or `]` at {}", self.pos)),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.check_depth(depth)?;
        self.pos += 1;
        let mut fields = BTreeMap::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(fields));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(format!("expected a name at {}", self.pos));
            }
            let name = self.string()?;
            self.skip_whitespace();
            self.expect(":")?;
            self.skip_whitespace();
            let value = self.value(depth + 1)?;
            // A repeated name: the last occurrence wins.
            fields.insert(name, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(fields));
                }
                _ => return Err(format!("expected `,` or `}}` at {}", self.pos)),
            }
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err("unterminated string".to_string());
            };
            match byte {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                0x00..=0x1f => return Err(format!("control byte in a string at {}", self.pos)),
                _ => {
                    // The input is valid UTF-8, so copy one whole character.
                    let rest = std::str::from_utf8(&self.bytes[self.pos..])
                        .map_err(|_| "not UTF-8".to_string())?;
                    let c = rest.chars().next().unwrap_or('\u{fffd}');
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// One escape, the backslash already consumed.
    fn escape(&mut self, out: &mut String) -> Result<(), ParseError> {
        let Some(byte) = self.peek() else {
            return Err("unterminated escape".to_string());
        };
        self.pos += 1;
        let c = match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode_escape()?,
            other => return Err(format!("bad escape `\\{}`", other as char)),
        };
        out.push(c);
        Ok(())
    }

    /// The character of a `\uXXXX` escape (the `\u` consumed), pairing surrogates.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let first = self.hex4()?;
        match first {
            0xd800..=0xdbff => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err("lone high surrogate".to_string());
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err("high surrogate without its low surrogate".to_string());
                }
                let code = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
                char::from_u32(code).ok_or_else(|| "bad surrogate pair".to_string())
            }
            0xdc00..=0xdfff => Err("lone low surrogate".to_string()),
            _ => char::from_u32(first).ok_or_else(|| "bad \\u escape".to_string()),
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| "short \\u escape".to_string())?;
        let text = std::str::from_utf8(digits).map_err(|_| "bad \\u escape".to_string())?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("bad \\u escape".to_string());
        }
        self.pos += 4;
        u32::from_str_radix(text, 16).map_err(|_| "bad \\u escape".to_string())
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(format!("bad number at {start}")),
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.pos += 1;
            self.require_digits(start)?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integral = false;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.require_digits(start)?;
        }
        // ASCII only, so the slice is valid UTF-8.
        let text = std::str::from_utf8(&self.bytes[start..self.pos]).unwrap_or_default();
        if integral {
            if let Ok(int) = text.parse::<i64>() {
                return Ok(Json::Int(int));
            }
        }
        // Rust's float parsing rounds to the nearest double, as the spec asks.
        let double: f64 = text.parse().map_err(|_| format!("bad number `{text}`"))?;
        if !double.is_finite() {
            return Err(format!("number `{text}` is beyond the double range"));
        }
        Ok(Json::Double(double))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self, start: usize) -> Result<(), ParseError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(format!("bad number at {start}"));
        }
        self.digits();
        Ok(())
    }
}

/// The compact JSON text of `value`.
pub(crate) fn to_bytes(value: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, value);
    out
}

/// Appends the compact JSON text of `value`.
pub(crate) fn write(out: &mut Vec<u8>, value: &Json) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Json::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Json::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Json::Double(d) => write_double(out, *d),
        Json::String(s) => write_str(out, s),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Json::Object(fields) => {
            out.push(b'{');
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, name);
                out.push(b':');
                write(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Appends `text` as a JSON string, escaped as serde_json escapes.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Appends a finite double as serde_json writes it (shortest round-trip form).
pub(crate) fn write_double(out: &mut Vec<u8>, value: f64) {
    debug_assert!(value.is_finite(), "only finite doubles are written");
    let _ = serde_json::to_writer(&mut *out, &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_ints_only_without_fraction_or_exponent() {
        assert_eq!(parse(b"7").unwrap(), Json::Int(7));
        assert_eq!(parse(b"-0").unwrap(), Json::Int(0));
        assert_eq!(parse(b"7.0").unwrap(), Json::Double(7.0));
        assert_eq!(parse(b"7e0").unwrap(), Json::Double(7.0));
        assert_eq!(
            parse(b"9223372036854775808").unwrap(),
            Json::Double(9.223_372_036_854_776e18)
        );
        assert!(parse(b"1e400").is_err());
        assert!(parse(b"01").is_err());
        assert!(parse(b"1.").is_err());
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        assert!(parse(b"\xef\xbb\xbf{}").is_err());
        assert!(parse(b"{}\x0c").is_err());
        assert!(parse(br#""\ud800""#).is_err());
        assert!(parse(br#""\udc00""#).is_err());
        assert!(parse(b"\xff").is_err());
        assert!(parse(b"").is_err());
        assert_eq!(
            parse(br#""\ud83d\ude00""#).unwrap(),
            Json::String("\u{1f600}".into())
        );
    }

    #[test]
    fn nesting_is_bounded_at_128() {
        let ok = "[".repeat(NESTING_MAX) + &"]".repeat(NESTING_MAX);
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = "[".repeat(NESTING_MAX + 1) + &"]".repeat(NESTING_MAX + 1);
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn last_repeated_name_wins_and_keys_come_out_sorted() {
        let value = parse(br#"{"b":1,"a":[1.5,"x"],"b":2.0}"#).unwrap();
        assert_eq!(to_bytes(&value), br#"{"a":[1.5,"x"],"b":2.0}"#);
    }

    #[test]
    fn doubles_are_written_as_serde_json_writes_them() {
        let mut out = Vec::new();
        for d in [1.0, 0.1, 1e20, -0.0] {
            write_double(&mut out, d);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "{} {} {} {} ",
                serde_json::to_string(&1.0).unwrap(),
                serde_json::to_string(&0.1).unwrap(),
                serde_json::to_string(&1e20).unwrap(),
                serde_json::to_string(&-0.0).unwrap(),
            )
        );
    }
}
