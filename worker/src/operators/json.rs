//! Reading record values without building a tree. One pass over the bytes checks that the
//! value is JSON (RFC 8259, with the limits below) and notes where each top-level field's
//! name and value are; a field's value is then read only when an expression asks for it,
//! and nested objects and arrays stay text until something looks inside. This is the
//! difference between parsing every event into maps of strings and the few hundred
//! nanoseconds per event the throughput goal allows.
//!
//! Rules beyond RFC 8259, chosen to agree with serde_json:
//! - the value must be UTF-8; no byte-order mark; whitespace is space, tab, LF and CR;
//! - `\u` escapes must form valid UTF-16: a lone surrogate is an error;
//! - a number whose magnitude rounds beyond the largest double is an error;
//! - containers nest at most [`JSON_NESTING_MAX`] deep.

use std::borrow::Cow;

/// The deepest nesting of arrays and objects a record value may have (the top-level
/// object counts as one level).
pub const JSON_NESTING_MAX: usize = 128;

/// Where one top-level field sits in the value's text: byte ranges of its name (inside
/// the quotes) and of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldSpan {
    key_start: u32,
    key_end: u32,
    value_start: u32,
    value_end: u32,
    key_escaped: bool,
}

/// Why a record value could not be read as an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Not JSON: what is wrong and the byte offset where it was found.
    NotJson { offset: usize, what: &'static str },
    /// JSON, but not an object; names what it is instead.
    NotAnObject(&'static str),
}

impl DecodeError {
    /// One sentence for a dead letter's detail.
    pub(crate) fn detail(&self) -> String {
        match self {
            DecodeError::NotJson { offset, what } => {
                format!("not JSON: {what} at byte {offset}")
            }
            DecodeError::NotAnObject(kind) => format!("the value is a JSON {kind}, not an object"),
        }
    }
}

/// A record value that is known to be a JSON object, with its top-level fields indexed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceDoc<'a> {
    text: &'a str,
    fields: &'a [FieldSpan],
}

impl<'a> SourceDoc<'a> {
    /// The value's text.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// The raw JSON text of the top-level field `name`; with duplicate names, the last one
    /// wins, as in serde_json's maps.
    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        let text = self.text;
        self.fields.iter().rev().find_map(|field| {
            let key = &text[field.key_start as usize..field.key_end as usize];
            let matches = if field.key_escaped {
                unescape(key) == name
            } else {
                key == name
            };
            matches.then(|| &text[field.value_start as usize..field.value_end as usize])
        })
    }
}

/// Checks that `bytes` is a JSON object and indexes its top-level fields into `fields`
/// (cleared first; a buffer kept across records so that indexing does not allocate).
pub(crate) fn index_object<'a>(
    bytes: &'a [u8],
    fields: &'a mut Vec<FieldSpan>,
) -> Result<SourceDoc<'a>, DecodeError> {
    fields.clear();
    let text = std::str::from_utf8(bytes).map_err(|err| DecodeError::NotJson {
        offset: err.valid_up_to(),
        what: "invalid UTF-8",
    })?;
    if bytes.len() > u32::MAX as usize {
        return Err(DecodeError::NotJson {
            offset: 0,
            what: "a value longer than 4 GiB",
        });
    }
    let mut scanner = Scanner { bytes, at: 0 };
    scanner.skip_whitespace();
    if scanner.peek() != Some(b'{') {
        let kind = scanner.kind_of_next();
        scanner.skip_value(0)?;
        scanner.expect_end()?;
        return Err(DecodeError::NotAnObject(kind));
    }
    scanner.at += 1;
    scanner.skip_whitespace();
    if scanner.peek() == Some(b'}') {
        scanner.at += 1;
    } else {
        loop {
            scanner.skip_whitespace();
            let key_start = scanner.at + 1;
            let key_escaped = scanner.expect_string()?;
            let key_end = scanner.at - 1;
            scanner.skip_whitespace();
            scanner.expect_byte(b':', "expected ':' after an object key")?;
            scanner.skip_whitespace();
            let value_start = scanner.at;
            scanner.skip_value(1)?;
            fields.push(FieldSpan {
                key_start: key_start as u32,
                key_end: key_end as u32,
                value_start: value_start as u32,
                value_end: scanner.at as u32,
                key_escaped,
            });
            scanner.skip_whitespace();
            match scanner.next_byte() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(scanner.error_before("expected ',' or '}' in an object")),
            }
        }
    }
    scanner.expect_end()?;
    Ok(SourceDoc { text, fields })
}

/// Checks that `text` is one JSON value (any kind) under the same rules as record values.
#[cfg(test)]
pub(crate) fn validate(text: &str) -> Result<(), DecodeError> {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    scanner.skip_whitespace();
    scanner.skip_value(0)?;
    scanner.expect_end()
}

/// Bytes that end a plain run inside a string: the quote, the backslash, and controls.
const STRING_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn error(&self, what: &'static str) -> DecodeError {
        DecodeError::NotJson {
            offset: self.at,
            what,
        }
    }

    /// An error about the byte just consumed.
    fn error_before(&self, what: &'static str) -> DecodeError {
        DecodeError::NotJson {
            offset: self.at.saturating_sub(1),
            what,
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn expect_byte(&mut self, byte: u8, what: &'static str) -> Result<(), DecodeError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn expect_end(&mut self) -> Result<(), DecodeError> {
        self.skip_whitespace();
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error("trailing characters after the value"))
        }
    }

    fn expect_literal(&mut self, literal: &'static [u8]) -> Result<(), DecodeError> {
        if self.bytes[self.at..].starts_with(literal) {
            self.at += literal.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn kind_of_next(&self) -> &'static str {
        match self.peek() {
            Some(b'[') => "array",
            Some(b'"') => "string",
            Some(b't' | b'f') => "boolean",
            Some(b'n') => "null",
            _ => "number",
        }
    }

    /// Skips one value of any kind, checking it, without recursing: `depth` is how many
    /// containers already enclose it. Whitespace before the value must be skipped already.
    fn skip_value(&mut self, depth: usize) -> Result<(), DecodeError> {
        // One bit per open container, set for an object.
        let mut open_is_object = [0u64; JSON_NESTING_MAX.div_ceil(64)];
        let mut open = 0usize;
        'value: loop {
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    let is_object = self.peek() == Some(b'{');
                    self.at += 1;
                    if depth + open + 1 > JSON_NESTING_MAX {
                        return Err(self.error_before("nesting deeper than 128 levels"));
                    }
                    let (word, bit) = (open / 64, open % 64);
                    if is_object {
                        open_is_object[word] |= 1 << bit;
                    } else {
                        open_is_object[word] &= !(1 << bit);
                    }
                    open += 1;
                    self.skip_whitespace();
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.at += 1;
                        open -= 1;
                    } else {
                        if is_object {
                            self.expect_member_key()?;
                        }
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    self.expect_string()?;
                }
                Some(b't') => self.expect_literal(b"true")?,
                Some(b'f') => self.expect_literal(b"false")?,
                Some(b'n') => self.expect_literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.skip_number()?,
                Some(_) => return Err(self.error("expected a value")),
                None => return Err(self.error("unexpected end of input")),
            }
            // After a value: close containers or go on to the next element.
            loop {
                if open == 0 {
                    return Ok(());
                }
                let top = open - 1;
                let in_object = open_is_object[top / 64] & (1 << (top % 64)) != 0;
                self.skip_whitespace();
                match self.next_byte() {
                    Some(b',') => {
                        self.skip_whitespace();
                        if in_object {
                            self.expect_member_key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if in_object => open -= 1,
                    Some(b']') if !in_object => open -= 1,
                    Some(_) if in_object => {
                        return Err(self.error_before("expected ',' or '}' in an object"))
                    }
                    Some(_) => return Err(self.error_before("expected ',' or ']' in an array")),
                    None => return Err(self.error("unexpected end of input")),
                }
            }
        }
    }

    /// A member's key and colon, leaving the scanner at the start of its value.
    fn expect_member_key(&mut self) -> Result<(), DecodeError> {
        self.expect_string()?;
        self.skip_whitespace();
        self.expect_byte(b':', "expected ':' after an object key")?;
        self.skip_whitespace();
        Ok(())
    }

    /// Skips a string, checking its escapes; returns whether it has any.
    fn expect_string(&mut self) -> Result<bool, DecodeError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string"));
        }
        self.at += 1;
        let mut escaped = false;
        loop {
            self.skip_plain_words();
            while self.at < self.bytes.len() && !STRING_SPECIAL[self.bytes[self.at] as usize] {
                self.at += 1;
            }
            match self.next_byte() {
                Some(b'"') => return Ok(escaped),
                Some(b'\\') => {
                    escaped = true;
                    self.skip_escape()?;
                }
                Some(_) => return Err(self.error_before("a control character in a string")),
                None => return Err(self.error("unexpected end of input in a string")),
            }
        }
    }

    /// Skips 8 bytes at a time while none of them ends a plain run of string text (a
    /// quote, a backslash or a control character), and stops at the first such byte of the
    /// word holding one; near the end of the input the byte loop finishes. URLs and names
    /// dominate event text, and this is most of the time spent indexing them.
    fn skip_plain_words(&mut self) {
        const ONES: u64 = u64::from_le_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
        // The lowest flagged byte is exactly the first zero byte (borrows only flag bytes
        // above a true zero), and likewise for bytes below 0x20.
        let zero_bytes = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            let quotes = zero_bytes(word ^ u64::from_le_bytes([b'"'; 8]));
            let backslashes = zero_bytes(word ^ u64::from_le_bytes([b'\\'; 8]));
            let controls = word.wrapping_sub(u64::from_le_bytes([0x20; 8])) & !word & HIGHS;
            let special = quotes | backslashes | controls;
            if special != 0 {
                self.at += (special.trailing_zeros() / 8) as usize;
                debug_assert!(STRING_SPECIAL[self.bytes[self.at] as usize]);
                return;
            }
            self.at += 8;
        }
    }

    /// Checks the escape after a backslash.
    fn skip_escape(&mut self) -> Result<(), DecodeError> {
        match self.next_byte() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(()),
            Some(b'u') => {
                let unit = self.hex4()?;
                match unit {
                    0xDC00..=0xDFFF => Err(self.error_before("a lone surrogate in a \\u escape")),
                    0xD800..=0xDBFF => {
                        if self.bytes[self.at..].starts_with(b"\\u") {
                            self.at += 2;
                            let low = self.hex4()?;
                            if (0xDC00..=0xDFFF).contains(&low) {
                                return Ok(());
                            }
                        }
                        Err(self.error("a lone surrogate in a \\u escape"))
                    }
                    _ => Ok(()),
                }
            }
            _ => Err(self.error_before("an invalid escape in a string")),
        }
    }

    fn hex4(&mut self) -> Result<u16, DecodeError> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = match self.next_byte() {
                Some(byte @ b'0'..=b'9') => byte - b'0',
                Some(byte @ b'a'..=b'f') => byte - b'a' + 10,
                Some(byte @ b'A'..=b'F') => byte - b'A' + 10,
                _ => return Err(self.error_before("an invalid \\u escape")),
            };
            unit = unit * 16 + u16::from(digit);
        }
        Ok(unit)
    }

    fn skip_digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn skip_number(&mut self) -> Result<(), DecodeError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.at += 1;
                1
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return Err(self.error("expected a digit")),
        };
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.skip_digits() == 0 {
                return Err(self.error("expected a digit after the decimal point"));
            }
        }
        let mut has_exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            has_exponent = true;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.skip_digits() == 0 {
                return Err(self.error("expected a digit in the exponent"));
            }
        }
        // Only an exponent or 309 integer digits can reach past the largest double.
        if has_exponent || int_digits > 308 {
            let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
            if !text.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(DecodeError::NotJson {
                    offset: start,
                    what: "a number out of the range of a double",
                });
            }
        }
        Ok(())
    }
}

/// A JSON number's value: an integer when it is written without fraction or exponent and
/// fits in i64, else the nearest double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i64),
    Float(f64),
}

/// Reads a number's text, already checked to be a JSON number.
pub(crate) fn parse_number(text: &str) -> Number {
    let integral = !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if integral {
        // Up to 18 digits always fit: accumulate without the general parser.
        let (negative, digits) = match text.strip_prefix('-') {
            Some(digits) => (true, digits),
            None => (false, text),
        };
        if digits.len() <= 18 {
            let magnitude = digits
                .bytes()
                .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
            return Number::Int(if negative { -magnitude } else { magnitude });
        }
        if let Ok(int) = text.parse::<i64>() {
            return Number::Int(int);
        }
    }
    Number::Float(text.parse::<f64>().unwrap_or(f64::NAN))
}

/// A string's value from its text inside the quotes, already checked.
pub(crate) fn unescape(inner: &str) -> Cow<'_, str> {
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut rest = inner;
    while let Some(backslash) = rest.find('\\') {
        out.push_str(&rest[..backslash]);
        let escape = &rest[backslash + 1..];
        let (ch, used) = match escape.as_bytes()[0] {
            b'"' => ('"', 1),
            b'\\' => ('\\', 1),
            b'/' => ('/', 1),
            b'b' => ('\u{8}', 1),
            b'f' => ('\u{c}', 1),
            b'n' => ('\n', 1),
            b'r' => ('\r', 1),
            b't' => ('\t', 1),
            _ => {
                let unit = u32::from_str_radix(&escape[1..5], 16).unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&unit) {
                    let low = u32::from_str_radix(&escape[7..11], 16).unwrap_or(0xDC00);
                    let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    (char::from_u32(code).unwrap_or('\u{FFFD}'), 11)
                } else {
                    (char::from_u32(unit).unwrap_or('\u{FFFD}'), 5)
                }
            }
        };
        out.push(ch);
        rest = &escape[used..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Iterates over the members of an object's text, already checked: (raw key inside the
/// quotes, raw value).
pub(crate) fn object_members(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut walker = Walker::new(raw);
    std::iter::from_fn(move || {
        let key = walker.next_string()?;
        walker.skip_to_value();
        let value = walker.next_value();
        Some((key, value))
    })
}

/// Iterates over the elements of an array's text, already checked.
pub(crate) fn array_elements(raw: &str) -> impl Iterator<Item = &str> {
    let mut walker = Walker::new(raw);
    std::iter::from_fn(move || {
        walker.skip_separators();
        if walker.at >= walker.text.len() - 1 {
            return None;
        }
        Some(walker.next_value())
    })
}

/// The raw value of member `key` in an object's text; the last one wins.
pub(crate) fn object_get<'a>(raw: &'a str, key: &str) -> Option<&'a str> {
    let mut found = None;
    for (member, value) in object_members(raw) {
        if unescape(member) == key {
            found = Some(value);
        }
    }
    found
}

/// Steps through the inside of an already checked container's text.
struct Walker<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Walker<'a> {
    fn new(text: &'a str) -> Self {
        Walker { text, at: 1 }
    }

    fn skip_separators(&mut self) {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b':') = bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn skip_to_value(&mut self) {
        self.skip_separators();
    }

    /// The next string's inside, or `None` at the container's end.
    fn next_string(&mut self) -> Option<&'a str> {
        self.skip_separators();
        let bytes = self.text.as_bytes();
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let start = self.at + 1;
        self.at = string_end(bytes, start);
        Some(&self.text[start..self.at - 1])
    }

    /// The next value's text.
    fn next_value(&mut self) -> &'a str {
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut depth = 0usize;
        while self.at < bytes.len() {
            match bytes[self.at] {
                b'"' => {
                    self.at = string_end(bytes, self.at + 1);
                    if depth == 0 {
                        break;
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        break;
                    }
                }
                b',' | b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => break,
                _ => {}
            }
            self.at += 1;
        }
        &self.text[start..self.at]
    }
}

/// The index just past the closing quote of the string whose inside starts at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut at = start;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => return at + 1,
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn index(text: &str) -> Result<Vec<(String, String)>, DecodeError> {
        let mut fields = Vec::new();
        let doc = index_object(text.as_bytes(), &mut fields)?;
        let names: Vec<_> = doc
            .fields
            .iter()
            .map(|field| {
                let key = &text[field.key_start as usize..field.key_end as usize];
                let value = &text[field.value_start as usize..field.value_end as usize];
                (unescape(key).into_owned(), value.to_string())
            })
            .collect();
        Ok(names)
    }

    #[test]
    fn indexes_top_level_fields() {
        let fields =
            index(r#" { "a" : 1 , "b\u0041":{"x":[1,2,{"y":null}]}, "c":"s\"t" } "#).unwrap();
        assert_eq!(
            fields,
            [
                ("a".to_string(), "1".to_string()),
                ("bA".to_string(), r#"{"x":[1,2,{"y":null}]}"#.to_string()),
                ("c".to_string(), r#""s\"t""#.to_string()),
            ]
        );
        assert_eq!(index("{}").unwrap(), []);
    }

    #[test]
    fn the_last_duplicate_wins() {
        let mut fields = Vec::new();
        let doc = index_object(br#"{"a":1,"a":2}"#, &mut fields).unwrap();
        assert_eq!(doc.get("a"), Some("2"));
        assert_eq!(doc.get("b"), None);
    }

    #[test]
    fn strings_end_at_their_first_special_byte_wherever_it_falls_in_a_word() {
        // Plain runs of every length before a quote, an escape or a control character,
        // with text after it, so the 8-byte scan meets each at every position of a word.
        for len in 0..20 {
            let plain = "é".repeat(len / 2) + &"a".repeat(len % 2);
            let text = format!(r#"{{"k":"{plain}","k2":"{plain}\"{plain}"}}"#);
            let fields = index(&text).unwrap_or_else(|err| panic!("{text}: {err:?}"));
            assert_eq!(fields[0].1, format!("\"{plain}\""));
            assert_eq!(fields[1].1, format!(r#""{plain}\"{plain}""#));
            let bad = format!("{{\"k\":\"{plain}\u{1}{plain}\"}}");
            assert_eq!(
                index(&bad),
                Err(DecodeError::NotJson {
                    offset: 6 + plain.len(),
                    what: "a control character in a string"
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn numbers_end_at_their_first_non_digit_wherever_it_falls_in_a_word() {
        for len in 1..20 {
            let digits: String = (0..len).map(|i| char::from(b'1' + (i % 9) as u8)).collect();
            for (number, after) in [
                (digits.clone(), "}"),
                (digits.clone(), ",\"x\":1}"),
                (format!("{digits}.5"), "}"),
                (format!("-{digits}e3"), " }"),
                (format!("0.{digits}"), "\t}"),
            ] {
                let text = format!("{{\"n\":{number}{after}");
                let fields = index(&text).unwrap_or_else(|err| panic!("{text}: {err:?}"));
                assert_eq!(fields[0].1, number, "{text}");
            }
            for bad in [
                format!("{{\"n\":{digits}x}}"),
                format!("{{\"n\":{digits}\u{e9}}}"),
                format!("{{\"n\":{digits}:}}"),
            ] {
                assert!(index(&bad).is_err(), "{bad}");
            }
        }
    }

    #[test]
    fn tells_non_objects_from_non_json() {
        for (text, kind) in [
            ("[1]", "array"),
            ("1", "number"),
            ("\"s\"", "string"),
            ("null", "null"),
            ("true", "boolean"),
        ] {
            assert_eq!(index(text), Err(DecodeError::NotAnObject(kind)), "{text}");
        }
        for text in [
            "",
            " ",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1} x",
            "{'a':1}",
            "{a:1}",
            "[1,]",
            "01",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":1e}",
            "{\"a\":+1}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\t\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\"}",
            "{\"a\":1e999}",
            "{\"a\":-1e400}",
            "\u{feff}{}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
        ] {
            assert!(
                matches!(index(text), Err(DecodeError::NotJson { .. })),
                "{text:?}: {:?}",
                index(text)
            );
        }
        let invalid_utf8 = [b'{', b'"', 0xff, b'"', b':', b'1', b'}'];
        let mut fields = Vec::new();
        assert!(matches!(
            index_object(&invalid_utf8, &mut fields),
            Err(DecodeError::NotJson { .. })
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| "[".repeat(depth - 1) + &"]".repeat(depth - 1);
        let ok = format!("{{\"a\":{}}}", nested(JSON_NESTING_MAX));
        assert!(index(&ok).is_ok());
        let deep = format!("{{\"a\":{}}}", nested(JSON_NESTING_MAX + 1));
        assert!(matches!(index(&deep), Err(DecodeError::NotJson { .. })));
        // Far deeper input is rejected without recursion.
        let very_deep = "[".repeat(1_000_000);
        assert!(validate(&very_deep).is_err());
    }

    #[test]
    fn numbers_read_as_integers_or_doubles() {
        assert_eq!(parse_number("0"), Number::Int(0));
        assert_eq!(parse_number("-0"), Number::Int(0));
        assert_eq!(parse_number("-12"), Number::Int(-12));
        assert_eq!(parse_number("9223372036854775807"), Number::Int(i64::MAX));
        assert_eq!(parse_number("-9223372036854775808"), Number::Int(i64::MIN));
        assert_eq!(
            parse_number("9223372036854775808"),
            Number::Float(9223372036854775808.0)
        );
        assert_eq!(parse_number("1.0"), Number::Float(1.0));
        assert_eq!(parse_number("1e2"), Number::Float(100.0));
        assert_eq!(parse_number("-0.0"), Number::Float(-0.0));
    }

    #[test]
    fn unescapes_every_escape() {
        assert_eq!(
            unescape(r#"a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\ud83d\ude00"#),
            "a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti\u{e9}\u{1F600}"
        );
    }

    #[test]
    fn walks_members_and_elements() {
        let object = r#"{ "a" : [1, {"b": "]"}] , "c":{"d":"}"} ,"e" : -1.5e3 }"#;
        let members: Vec<_> = object_members(object).collect();
        assert_eq!(
            members,
            [
                ("a", r#"[1, {"b": "]"}]"#),
                ("c", r#"{"d":"}"}"#),
                ("e", "-1.5e3"),
            ]
        );
        let array = r#"[ 1 , "x,y", [2,3] , {"a":null}, true ]"#;
        let elements: Vec<_> = array_elements(array).collect();
        assert_eq!(
            elements,
            ["1", r#""x,y""#, "[2,3]", r#"{"a":null}"#, "true"]
        );
        assert_eq!(array_elements("[]").count(), 0);
        assert_eq!(array_elements("[ ]").count(), 0);
        assert_eq!(object_members("{ }").count(), 0);
        assert_eq!(object_get(r#"{"a":1,"a":2}"#, "a"), Some("2"));
    }

    /// Random JSON-ish text: mostly valid values with a sprinkling of corruption.
    fn random_text(rng: &mut SmallRng, depth: usize, out: &mut String) {
        const ATOMS: &[&str] = &[
            "0",
            "-0",
            "12",
            "-3.5",
            "1e3",
            "1E-2",
            "2.5e+1",
            "true",
            "false",
            "null",
            "\"\"",
            "\"a\\nb\"",
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"é\"",
            "9223372036854775808",
            "1e308",
            "01",
            "1.",
            ".1",
            "-",
            "\"\\ud800\"",
            "\"\\q\"",
            "tru",
            "1e400",
            "\"\t\"",
        ];
        match rng.gen_range(0..10) {
            0..=4 => out.push_str(ATOMS[rng.gen_range(0..ATOMS.len())]),
            5..=6 if depth < 4 => {
                out.push('[');
                for i in 0..rng.gen_range(0..4) {
                    if i > 0 {
                        out.push_str(if rng.gen_bool(0.95) { "," } else { "" });
                    }
                    random_text(rng, depth + 1, out);
                }
                out.push(']');
            }
            7..=9 if depth < 4 => {
                out.push('{');
                for i in 0..rng.gen_range(0..4) {
                    if i > 0 {
                        out.push_str(if rng.gen_bool(0.95) { ", " } else { " " });
                    }
                    const NAMES: &[&str] = &[
                        "\"k\"",
                        "\"k\\\"2\"",
                        "k",
                        "\"\"",
                        "\"\\u006b\"",
                        "\"\\ud800\"",
                    ];
                    out.push_str(NAMES[rng.gen_range(0..NAMES.len())]);
                    out.push_str(if rng.gen_bool(0.95) { ":" } else { "" });
                    random_text(rng, depth + 1, out);
                }
                out.push('}');
            }
            _ => out.push_str("null"),
        }
    }

    #[test]
    fn agrees_with_serde_json_on_generated_text() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut valid = 0;
        for _ in 0..20_000 {
            let mut text = String::new();
            random_text(&mut rng, 0, &mut text);
            let ours = validate(&text).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            assert_eq!(ours, theirs, "{text}");
            valid += usize::from(ours);
            if ours {
                // Walking the checked text finds what serde_json found.
                let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(walk(&text), parsed, "{text}");
            }
        }
        assert!(valid > 5_000, "too few valid cases: {valid}");
    }

    /// Rebuilds a serde_json value with the walker, to check it against serde_json.
    fn walk(raw: &str) -> serde_json::Value {
        let raw = raw.trim();
        match raw.as_bytes()[0] {
            b'{' => serde_json::Value::Object(
                object_members(raw)
                    .map(|(k, v)| (unescape(k).into_owned(), walk(v)))
                    .collect(),
            ),
            b'[' => serde_json::Value::Array(array_elements(raw).map(walk).collect()),
            b'"' => serde_json::Value::String(unescape(&raw[1..raw.len() - 1]).into_owned()),
            b't' => true.into(),
            b'f' => false.into(),
            b'n' => serde_json::Value::Null,
            // serde_json reads `-0` as the double -0.0; weir reads it as the int 0.
            _ if raw == "-0" => serde_json::Number::from_f64(-0.0).unwrap().into(),
            _ => match parse_number(raw) {
                Number::Int(i) => i.into(),
                Number::Float(f) => {
                    // serde_json reads integers beyond i64 as u64 when they fit.
                    match raw.parse::<u64>() {
                        Ok(u) => u.into(),
                        Err(_) => serde_json::Number::from_f64(f).unwrap().into(),
                    }
                }
            },
        }
    }

    /// The index agrees with serde_json's reading of the same object: every name it finds
    /// (escaped or not, repeated or not) leads to the text of the value serde_json read.
    #[test]
    fn indexes_generated_objects_as_serde_json_reads_them() {
        let mut rng = SmallRng::seed_from_u64(11);
        let mut objects = 0;
        for _ in 0..20_000 {
            let mut text = String::new();
            while !text.starts_with('{') {
                text.clear();
                random_text(&mut rng, 0, &mut text);
            }
            if rng.gen_bool(0.3) {
                text = format!(" \n{text}\t ");
            }
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            let mut fields = Vec::new();
            match (index_object(text.as_bytes(), &mut fields), theirs) {
                (Ok(doc), Ok(serde_json::Value::Object(map))) => {
                    objects += 1;
                    for (name, value) in &map {
                        let raw = doc.get(name).unwrap_or_else(|| panic!("{name} in {text}"));
                        let ours: serde_json::Value = serde_json::from_str(raw).unwrap();
                        assert_eq!(&ours, value, "{name} in {text}");
                    }
                    assert!(doc.fields.len() >= map.len(), "{text}");
                }
                (Err(DecodeError::NotJson { .. }), Err(_)) => {}
                (ours, theirs) => panic!("{text}: {ours:?} against {theirs:?}"),
            }
        }
        assert!(objects > 3_000, "too few objects: {objects}");
    }
}
