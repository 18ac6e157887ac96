//! The values the engine passes between stages: what a field of an event holds, what an
//! expression yields, what a `map` stage stores. A datum borrows from the record's text
//! where it can (strings without escapes, nested objects and arrays kept as text until
//! something looks inside), so the common stages run without allocating.
//!
//! Conversions fix the meaning of JSON in CEL and of CEL results in JSON:
//! - a JSON number written without fraction or exponent that fits in i64 is a CEL `int`;
//!   every other number is a `double` (the nearest one);
//! - JSON objects are CEL maps with string keys (duplicates: the last wins), arrays lists;
//! - a CEL result goes back to JSON only if it is null, bool, int, uint, a finite double,
//!   a string, or a list or map (string keys only) of such values; anything else (bytes,
//!   timestamps, durations, NaN, ...) is an expression error where JSON is needed.

use super::json::{self, Number};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// A value flowing through the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Datum<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    /// A JSON array or object from the record, checked but not yet parsed.
    Raw(&'a str),
    List(Vec<Datum<'a>>),
    /// An object built by an expression: string keys, unique, in byte order.
    Map(Vec<(String, Datum<'a>)>),
}

impl<'a> Datum<'a> {
    /// The value of a checked JSON text.
    pub(crate) fn from_raw(raw: &'a str) -> Datum<'a> {
        match raw.as_bytes().first() {
            Some(b'{' | b'[') => Datum::Raw(raw),
            Some(b'"') => Datum::Str(json::unescape(&raw[1..raw.len() - 1])),
            Some(b't') => Datum::Bool(true),
            Some(b'f') => Datum::Bool(false),
            Some(b'n') => Datum::Null,
            _ => match json::parse_number(raw) {
                Number::Int(int) => Datum::Int(int),
                Number::Float(float) => Datum::Float(float),
            },
        }
    }

    /// The CEL type name, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Datum::Null => "null",
            Datum::Bool(_) => "bool",
            Datum::Int(_) => "int",
            Datum::UInt(_) => "uint",
            Datum::Float(_) => "double",
            Datum::Str(_) => "string",
            Datum::Raw(raw) if raw.starts_with('[') => "list",
            Datum::Raw(_) => "map",
            Datum::List(_) => "list",
            Datum::Map(_) => "map",
        }
    }

    /// The value with everything it borrows copied.
    pub(crate) fn into_owned(self) -> Datum<'static> {
        match self {
            Datum::Null => Datum::Null,
            Datum::Bool(b) => Datum::Bool(b),
            Datum::Int(i) => Datum::Int(i),
            Datum::UInt(u) => Datum::UInt(u),
            Datum::Float(f) => Datum::Float(f),
            Datum::Str(s) => Datum::Str(Cow::Owned(s.into_owned())),
            Datum::Raw(raw) => Datum::from_raw_deep(raw),
            Datum::List(items) => Datum::List(items.into_iter().map(Datum::into_owned).collect()),
            Datum::Map(entries) => Datum::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, v.into_owned()))
                    .collect(),
            ),
        }
    }

    /// A checked JSON text parsed all the way down.
    fn from_raw_deep(raw: &str) -> Datum<'static> {
        match raw.as_bytes().first() {
            Some(b'[') => Datum::List(
                json::array_elements(raw)
                    .map(Datum::from_raw_deep)
                    .collect(),
            ),
            Some(b'{') => {
                let mut entries: Vec<(String, Datum<'static>)> = Vec::new();
                for (key, value) in json::object_members(raw) {
                    entries.push((
                        json::unescape(key).into_owned(),
                        Datum::from_raw_deep(value),
                    ));
                }
                Datum::Map(sorted_last_wins(entries))
            }
            _ => Datum::from_raw(raw).into_owned(),
        }
    }

    /// Whether the value can be written as JSON: no NaN or infinite doubles anywhere.
    pub(crate) fn check_json(&self) -> Result<(), String> {
        match self {
            Datum::Float(f) if !f.is_finite() => Err(format!("the double {f} has no JSON form")),
            Datum::List(items) => items.iter().try_for_each(Datum::check_json),
            Datum::Map(entries) => entries.iter().try_for_each(|(_, v)| v.check_json()),
            _ => Ok(()),
        }
    }

    /// Appends the value as compact JSON: objects with keys in byte order and no
    /// duplicates, integers as integers, doubles in their shortest round-trip form (as
    /// serde_json writes them, e.g. `1.0`, `0.1`, `1e+20`). Must satisfy [`check_json`].
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Datum::Null => out.extend_from_slice(b"null"),
            Datum::Bool(true) => out.extend_from_slice(b"true"),
            Datum::Bool(false) => out.extend_from_slice(b"false"),
            Datum::Int(i) => write_i64(out, *i),
            Datum::UInt(u) => out.extend_from_slice(u.to_string().as_bytes()),
            Datum::Float(f) => write_f64(out, *f),
            Datum::Str(s) => super::record::write_json_str(out, s),
            Datum::Raw(raw) => Datum::from_raw_deep(raw).write_json(out),
            Datum::List(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_json(out);
                }
                out.push(b']');
            }
            Datum::Map(entries) => {
                out.push(b'{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    super::record::write_json_str(out, key);
                    out.push(b':');
                    value.write_json(out);
                }
                out.push(b'}');
            }
        }
    }

    /// The value as a key: a string as it is, anything else as its JSON text.
    pub(crate) fn into_key_text(self) -> Result<Cow<'a, str>, String> {
        match self {
            Datum::Str(s) => Ok(s),
            other => {
                other.check_json()?;
                let mut out = Vec::new();
                other.write_json(&mut out);
                Ok(Cow::Owned(String::from_utf8(out).unwrap_or_default()))
            }
        }
    }

    /// The value as a CEL value.
    pub(crate) fn to_cel(&self) -> cel::Value {
        match self {
            Datum::Null => cel::Value::Null,
            Datum::Bool(b) => cel::Value::Bool(*b),
            Datum::Int(i) => cel::Value::Int(*i),
            Datum::UInt(u) => cel::Value::UInt(*u),
            Datum::Float(f) => cel::Value::Float(*f),
            Datum::Str(s) => cel::Value::String(Arc::new(s.to_string())),
            Datum::Raw(raw) => Datum::from_raw_deep(raw).to_cel(),
            Datum::List(items) => {
                cel::Value::List(Arc::new(items.iter().map(Datum::to_cel).collect()))
            }
            Datum::Map(entries) => {
                let map: HashMap<cel::objects::Key, cel::Value> = entries
                    .iter()
                    .map(|(k, v)| (cel::objects::Key::String(Arc::new(k.clone())), v.to_cel()))
                    .collect();
                cel::Value::Map(cel::objects::Map { map: Arc::new(map) })
            }
        }
    }

    /// A CEL result as a datum, if it has a JSON form.
    pub(crate) fn from_cel(value: cel::Value) -> Result<Datum<'static>, String> {
        Ok(match value {
            cel::Value::Null => Datum::Null,
            cel::Value::Bool(b) => Datum::Bool(b),
            cel::Value::Int(i) => Datum::Int(i),
            cel::Value::UInt(u) => Datum::UInt(u),
            cel::Value::Float(f) => Datum::Float(f),
            cel::Value::String(s) => Datum::Str(Cow::Owned(Arc::unwrap_or_clone(s))),
            cel::Value::List(items) => Datum::List(
                Arc::unwrap_or_clone(items)
                    .into_iter()
                    .map(Datum::from_cel)
                    .collect::<Result<_, _>>()?,
            ),
            cel::Value::Map(map) => {
                let mut entries = Vec::with_capacity(map.map.len());
                for (key, value) in Arc::unwrap_or_clone(map.map) {
                    let cel::objects::Key::String(key) = key else {
                        return Err(format!(
                            "a map with the key {key} has no JSON form: JSON keys are strings"
                        ));
                    };
                    entries.push((Arc::unwrap_or_clone(key), Datum::from_cel(value)?));
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Datum::Map(entries)
            }
            other => return Err(format!("a {} value has no JSON form", other.type_of())),
        })
    }
}

/// Sorts object entries by key, keeping only the last of duplicates.
fn sorted_last_wins(entries: Vec<(String, Datum<'static>)>) -> Vec<(String, Datum<'static>)> {
    let mut indexed: Vec<(usize, (String, Datum<'static>))> =
        entries.into_iter().enumerate().collect();
    // By key, later duplicates first, so dedup keeps the last one written.
    indexed.sort_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(&a.0)));
    indexed.dedup_by(|later, earlier| later.1 .0 == earlier.1 .0);
    indexed.into_iter().map(|(_, entry)| entry).collect()
}

/// Appends an integer.
pub(crate) fn write_i64(out: &mut Vec<u8>, value: i64) {
    let mut buffer = [0u8; 20];
    let mut at = buffer.len();
    let mut magnitude = value.unsigned_abs();
    loop {
        at -= 1;
        buffer[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buffer[at..]);
}

/// Appends a double as serde_json writes it; a non-finite one as `null`.
pub(crate) fn write_f64(out: &mut Vec<u8>, value: f64) {
    // serde_json writes NaN and infinities as null.
    let _ = serde_json::to_writer(&mut *out, &value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_of(datum: &Datum<'_>) -> String {
        let mut out = Vec::new();
        datum.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn reads_scalars_and_keeps_containers_as_text() {
        assert_eq!(Datum::from_raw("12"), Datum::Int(12));
        assert_eq!(Datum::from_raw("1.5"), Datum::Float(1.5));
        assert_eq!(Datum::from_raw("\"a\\tb\""), Datum::Str("a\tb".into()));
        assert!(matches!(
            Datum::from_raw("\"ab\""),
            Datum::Str(Cow::Borrowed("ab"))
        ));
        assert_eq!(Datum::from_raw("[1]"), Datum::Raw("[1]"));
        assert_eq!(Datum::from_raw("null"), Datum::Null);
    }

    #[test]
    fn writes_canonical_json() {
        let raw = Datum::Raw(r#"{ "b": [1, 2.50, 1e2], "a": {"y": 1, "x": "s"}, "b": 0 }"#);
        assert_eq!(json_of(&raw), r#"{"a":{"x":"s","y":1},"b":0}"#);
        assert_eq!(json_of(&Datum::Float(1.0)), "1.0");
        assert_eq!(json_of(&Datum::Float(1e20)), "1e+20");
        assert_eq!(json_of(&Datum::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(json_of(&Datum::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(
            json_of(&Datum::Str("\"\n\u{1}é".into())),
            r#""\"\n\u0001é""#
        );
    }

    #[test]
    fn keys_are_strings_as_is_and_json_text_otherwise() {
        let key = |d: Datum<'static>| d.into_key_text().unwrap().into_owned();
        assert_eq!(key(Datum::Str("c1".into())), "c1");
        assert_eq!(key(Datum::Int(-7)), "-7");
        assert_eq!(key(Datum::Float(2.0)), "2.0");
        assert_eq!(key(Datum::Bool(true)), "true");
        assert_eq!(key(Datum::Null), "null");
        assert_eq!(key(Datum::Raw("[1, \"a\"]")), "[1,\"a\"]");
        assert!(Datum::Float(f64::NAN).into_key_text().is_err());
    }

    #[test]
    fn round_trips_through_cel() {
        let raw = Datum::Raw(r#"{"a":[1,2.5,"x",null,true],"b":{"c":-1}}"#);
        let back = Datum::from_cel(raw.to_cel()).unwrap();
        assert_eq!(json_of(&back), json_of(&raw));
        assert!(Datum::from_cel(cel::Value::Bytes(Arc::new(vec![1]))).is_err());
        let int_keyed = cel::Value::Map(cel::objects::Map {
            map: Arc::new(HashMap::from([(
                cel::objects::Key::Int(1),
                cel::Value::Null,
            )])),
        });
        assert!(Datum::from_cel(int_keyed).is_err());
    }
}
