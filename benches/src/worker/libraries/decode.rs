//! Decoding a bid with a library instead of the engine's JSON indexer: the whole value is
//! checked (one JSON text, UTF-8, an object), and only the fields the filter-map job's
//! expressions and event time read are located, as borrowed raw texts, not parsed.
//!
//! serde_json's value is checked as UTF-8 first: skipping a field it does not check its
//! bytes, the engine does.
//!
//! Differences from the engine's indexer, none of which the bench's records reach: a
//! repeated field name fails the record here (serde's derive) where the engine takes the
//! last; sonic-rs allows 255 levels of nesting where the engine and serde_json allow 128;
//! a number beyond the double range in a field no expression reads passes here.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use weir_worker::operators::DeadLetterReason;

/// The raw JSON texts of the fields the job reads; `None` for a missing field.
#[derive(Debug, Default)]
pub struct RawFields<'a> {
    pub auction: Option<Cow<'a, str>>,
    pub bidder: Option<Cow<'a, str>>,
    pub price: Option<Cow<'a, str>>,
    pub date_time: Option<Cow<'a, str>>,
}

impl RawFields<'_> {
    /// The raw text of a field by name, for the CEL interpreter's variables.
    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "auction" => self.auction.as_deref(),
            "bidder" => self.bidder.as_deref(),
            "price" => self.price.as_deref(),
            "date_time" => self.date_time.as_deref(),
            _ => None,
        }
    }
}

/// Why a value is no object: the engine's dead-letter reason and a detail.
pub type DecodeFailure = (DeadLetterReason, String);

/// A field present in the object, whatever its value (`null` included, which an
/// `Option<&RawValue>` would take for a missing field).
#[derive(Debug)]
struct Present<T>(Option<T>);

impl<T> Default for Present<T> {
    fn default() -> Self {
        Present(None)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Present<&'a RawValue> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(|raw| Present(Some(raw)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Present<sonic_rs::LazyValue<'a>> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        sonic_rs::LazyValue::deserialize(deserializer).map(|lazy| Present(Some(lazy)))
    }
}

/// The bid's fields as serde_json's borrowed raw values; other fields are skipped (and
/// checked).
#[derive(Debug, Deserialize)]
struct SerdeBid<'a> {
    #[serde(default, borrow)]
    auction: Present<&'a RawValue>,
    #[serde(default, borrow)]
    bidder: Present<&'a RawValue>,
    #[serde(default, borrow)]
    price: Present<&'a RawValue>,
    #[serde(default, borrow)]
    date_time: Present<&'a RawValue>,
}

/// The same through sonic-rs's lazy values.
#[derive(Debug, Deserialize)]
struct SonicBid<'a> {
    #[serde(default, borrow)]
    auction: Present<sonic_rs::LazyValue<'a>>,
    #[serde(default, borrow)]
    bidder: Present<sonic_rs::LazyValue<'a>>,
    #[serde(default, borrow)]
    price: Present<sonic_rs::LazyValue<'a>>,
    #[serde(default, borrow)]
    date_time: Present<sonic_rs::LazyValue<'a>>,
}

/// Decodes with serde_json.
pub fn serde_json_fields(value: &[u8]) -> Result<RawFields<'_>, DecodeFailure> {
    // A derived struct also accepts a JSON array of its fields: only objects are events.
    if first_byte(value) != Some(b'{') {
        return Err(not_an_object(value));
    }
    // serde_json skips the fields a struct does not name without checking their UTF-8:
    // the engine checks the whole value, so check it first (as `from_str` requires).
    let text = std::str::from_utf8(value).map_err(undecodable)?;
    let bid: SerdeBid<'_> = serde_json::from_str(text).map_err(undecodable)?;
    fn raw(field: Present<&RawValue>) -> Option<Cow<'_, str>> {
        field.0.map(|raw| Cow::Borrowed(raw.get()))
    }
    Ok(RawFields {
        auction: raw(bid.auction),
        bidder: raw(bid.bidder),
        price: raw(bid.price),
        date_time: raw(bid.date_time),
    })
}

/// Decodes with sonic-rs.
pub fn sonic_fields(value: &[u8]) -> Result<RawFields<'_>, DecodeFailure> {
    if first_byte(value) != Some(b'{') {
        return Err(not_an_object(value));
    }
    let bid: SonicBid<'_> = sonic_rs::from_slice(value).map_err(undecodable)?;
    fn raw(field: Present<sonic_rs::LazyValue<'_>>) -> Option<Cow<'_, str>> {
        field.0.map(|lazy| lazy.as_raw_cow())
    }
    Ok(RawFields {
        auction: raw(bid.auction),
        bidder: raw(bid.bidder),
        price: raw(bid.price),
        date_time: raw(bid.date_time),
    })
}

fn first_byte(value: &[u8]) -> Option<u8> {
    value
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// A value that did not start an object: `not_an_object` if it is JSON at all.
fn not_an_object(value: &[u8]) -> DecodeFailure {
    match serde_json::from_slice::<serde::de::IgnoredAny>(value) {
        Ok(_) => (DeadLetterReason::NotAnObject, "not an object".to_string()),
        Err(err) => (DeadLetterReason::Undecodable, err.to_string()),
    }
}

fn undecodable(err: impl std::fmt::Display) -> DecodeFailure {
    (DeadLetterReason::Undecodable, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_libraries_locate_the_same_raw_fields() {
        let value =
            br#"{"auction":1,"bidder":"x\"y","price":null,"url":[1,{"a":2}],"date_time":1.5e3}"#;
        for fields in [serde_json_fields(value), sonic_fields(value)] {
            let fields = fields.unwrap();
            assert_eq!(fields.get("auction"), Some("1"));
            assert_eq!(fields.get("bidder"), Some(r#""x\"y""#));
            assert_eq!(fields.get("price"), Some("null"));
            assert_eq!(fields.get("date_time"), Some("1.5e3"));
            assert_eq!(fields.get("url"), None);
        }
    }

    #[test]
    fn bad_values_fail_with_the_engine_reasons() {
        for decode in [serde_json_fields, sonic_fields] {
            for (value, reason) in [
                (&b"[1,2,3,4]"[..], DeadLetterReason::NotAnObject),
                (b" 7", DeadLetterReason::NotAnObject),
                (b"{\"price\":1", DeadLetterReason::Undecodable),
                (b"{\"price\":1} x", DeadLetterReason::Undecodable),
                (b"{\"url\":\"\xff\"}", DeadLetterReason::Undecodable),
                (b"{\"url\":tru}", DeadLetterReason::Undecodable),
                (b"", DeadLetterReason::Undecodable),
            ] {
                let failure = decode(value).map(|_| ()).unwrap_err();
                assert_eq!(failure.0, reason, "{}", String::from_utf8_lossy(value));
            }
        }
    }
}
