//! A field the filter-map job reads, from the raw JSON text a library located for it,
//! under the engine's documented rules (see `weir_worker::operators`): a number written
//! without fraction or exponent that fits i64 is an int, every other number a double (the
//! nearest; none beyond the double range), strings unescaped, arrays and objects kept as
//! JSON trees. Written back as the engine writes JSON: integers as integers, doubles in
//! serde_json's shortest round-trip form, object keys in byte order without duplicates.

use std::borrow::Cow;
use weir_worker::operators::{parse_rfc3339_ms, EVENT_TIME_ABS_MAX_MS};

/// One field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array or object, parsed all the way down (a rare shape here: the bench's fields
    /// are numbers).
    Tree(serde_json::Value),
}

impl<'a> Field<'a> {
    /// The value of `raw`, one JSON value the decoding library has already checked.
    pub fn from_raw(raw: &'a str) -> Result<Field<'a>, String> {
        match raw.as_bytes().first() {
            Some(b'n') => Ok(Field::Null),
            Some(b't') => Ok(Field::Bool(true)),
            Some(b'f') => Ok(Field::Bool(false)),
            Some(b'"') => match serde_json::from_str::<&str>(raw) {
                Ok(text) => Ok(Field::Str(Cow::Borrowed(text))),
                // Escapes: decoded into an owned string.
                Err(_) => serde_json::from_str::<String>(raw)
                    .map(|text| Field::Str(Cow::Owned(text)))
                    .map_err(|err| format!("string {raw}: {err}")),
            },
            Some(b'[' | b'{') => serde_json::from_str::<serde_json::Value>(raw)
                .map(|mut tree| {
                    doubles_beyond_i64(&mut tree);
                    Field::Tree(tree)
                })
                .map_err(|err| format!("value {raw}: {err}")),
            _ => number(raw),
        }
    }

    /// The CEL type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Bool(_) => "bool",
            Field::Int(_) => "int",
            Field::Float(_) => "double",
            Field::Str(_) => "string",
            Field::Tree(serde_json::Value::Array(_)) => "list",
            Field::Tree(_) => "map",
        }
    }

    /// Appends the value as compact JSON.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Field::Null => out.extend_from_slice(b"null"),
            Field::Bool(true) => out.extend_from_slice(b"true"),
            Field::Bool(false) => out.extend_from_slice(b"false"),
            Field::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Field::Float(f) => serde_json::to_writer(&mut *out, f).map_err(|e| e.to_string())?,
            Field::Str(s) => serde_json::to_writer(&mut *out, s).map_err(|e| e.to_string())?,
            Field::Tree(tree) => {
                serde_json::to_writer(&mut *out, tree).map_err(|e| e.to_string())?
            }
        }
        Ok(())
    }

    /// CEL's `self > limit` for an int `limit`: ints and doubles compare by value; any
    /// other type has no such overload.
    pub fn greater_than(&self, limit: i64) -> Result<bool, String> {
        match self {
            Field::Int(i) => Ok(*i > limit),
            Field::Float(f) => Ok(*f > limit as f64),
            other => Err(format!("no such overload: {} > int", other.type_name())),
        }
    }
}

/// The event time a field gives: an integer of epoch ms or an RFC 3339 string, within
/// the engine's range.
pub fn event_time_ms(raw: Option<&str>) -> Result<i64, String> {
    let raw = raw.ok_or("the event-time field is missing")?;
    let ms = match Field::from_raw(raw)? {
        Field::Int(ms) => ms,
        Field::Str(text) => {
            parse_rfc3339_ms(&text).ok_or_else(|| format!("not an RFC 3339 time: {text}"))?
        }
        other => return Err(format!("a {} is no event time", other.type_name())),
    };
    if ms.unsigned_abs() > EVENT_TIME_ABS_MAX_MS as u64 {
        return Err(format!("the event time {ms} ms is out of range"));
    }
    Ok(ms)
}

fn number(raw: &str) -> Result<Field<'static>, String> {
    let integral = !raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'));
    if integral {
        if let Ok(int) = raw.parse::<i64>() {
            return Ok(Field::Int(int));
        }
    }
    match raw.parse::<f64>() {
        Ok(float) if float.is_finite() => Ok(Field::Float(float)),
        _ => Err(format!("the number {raw} is beyond the double range")),
    }
}

/// serde_json keeps integers above i64 as u64; the engine reads every integer beyond i64
/// as the nearest double.
fn doubles_beyond_i64(tree: &mut serde_json::Value) {
    match tree {
        serde_json::Value::Number(n) if n.is_u64() && !n.is_i64() => {
            if let Some(float) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = float;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(doubles_beyond_i64),
        serde_json::Value::Object(members) => members.values_mut().for_each(doubles_beyond_i64),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_engine_rules() {
        assert_eq!(Field::from_raw("7"), Ok(Field::Int(7)));
        assert_eq!(Field::from_raw("-0"), Ok(Field::Int(0)));
        assert_eq!(Field::from_raw("1.0"), Ok(Field::Float(1.0)));
        assert_eq!(Field::from_raw("1e3"), Ok(Field::Float(1000.0)));
        assert_eq!(
            Field::from_raw("9223372036854775808"),
            Ok(Field::Float(9_223_372_036_854_775_808.0))
        );
        assert!(Field::from_raw("1e400").is_err());
        let mut out = Vec::new();
        Field::Float(1.0).write_json(&mut out).unwrap();
        assert_eq!(out, b"1.0");
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        assert!(matches!(
            Field::from_raw(r#""abc""#),
            Ok(Field::Str(Cow::Borrowed("abc")))
        ));
        assert_eq!(
            Field::from_raw(r#""a\u00e9""#),
            Ok(Field::Str(Cow::Owned("aé".to_string())))
        );
    }

    #[test]
    fn comparisons_need_numbers() {
        assert_eq!(Field::Int(101).greater_than(100), Ok(true));
        assert_eq!(Field::Float(100.5).greater_than(100), Ok(true));
        assert!(Field::Str("101".into()).greater_than(100).is_err());
        assert!(Field::Null.greater_than(100).is_err());
    }

    #[test]
    fn event_times_are_ints_or_rfc3339() {
        assert_eq!(event_time_ms(Some("1700000000000")), Ok(1_700_000_000_000));
        assert_eq!(event_time_ms(Some(r#""1970-01-01T00:00:01Z""#)), Ok(1_000));
        assert!(event_time_ms(Some("1.5")).is_err());
        assert!(event_time_ms(None).is_err());
        assert!(event_time_ms(Some("9000000000000000000")).is_err());
    }
}
