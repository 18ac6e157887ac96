//! An event's time, in epoch milliseconds: from the field `source.event_time` names (an
//! RFC 3339 string or an integer of epoch ms), else from the record's Kafka timestamp.
//!
//! RFC 3339 is read strictly, by hand rather than through a date library, so the rule can
//! be stated exactly: `YYYY-MM-DD`, then `T`, `t` or one space, then `HH:MM:SS`, an
//! optional fraction of 1 to 9 digits after a `.`, and `Z`, `z` or an offset `+HH:MM` /
//! `-HH:MM`. Years 0000 to 9999 of the proleptic Gregorian calendar, hours 00-23, minutes
//! and seconds 00-59 (no leap second), offset hours 00-23 and minutes 00-59. A fraction is
//! truncated to whole milliseconds.

use super::datum::Datum;
use super::json::SourceDoc;

/// The largest event time magnitude accepted, in ms: that of JavaScript dates (about
/// 275,000 years either side of 1970). It keeps window arithmetic far from overflow.
pub const EVENT_TIME_ABS_MAX_MS: i64 = 8_640_000_000_000_000;

/// The event time of a record: from `field` of `doc` when the job names one, else the
/// record timestamp. The error is a detail for a `bad_event_time` dead letter.
pub(crate) fn event_time_ms(
    doc: &SourceDoc<'_>,
    field: Option<&str>,
    record_timestamp_ms: Option<i64>,
) -> Result<i64, String> {
    let ms = match field {
        None => record_timestamp_ms.ok_or("the record has no timestamp")?,
        Some(field) => {
            let raw = doc
                .get(field)
                .ok_or_else(|| format!("the event-time field `{field}` is missing"))?;
            match Datum::from_raw(raw) {
                Datum::Str(text) => parse_rfc3339_ms(&text).ok_or_else(|| {
                    format!("the event-time field `{field}` is not an RFC 3339 time: {raw}")
                })?,
                Datum::Int(ms) => ms,
                _ => {
                    return Err(format!(
                        "the event-time field `{field}` is neither an RFC 3339 string nor an \
                         integer of epoch ms: {}",
                        truncate(raw)
                    ))
                }
            }
        }
    };
    if ms.unsigned_abs() > EVENT_TIME_ABS_MAX_MS as u64 {
        return Err(format!(
            "the event time {ms} ms is beyond the supported range of ±{EVENT_TIME_ABS_MAX_MS} ms"
        ));
    }
    Ok(ms)
}

fn truncate(text: &str) -> &str {
    const QUOTE_LEN_MAX: usize = 64;
    match text.char_indices().nth(QUOTE_LEN_MAX) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Reads an RFC 3339 date-time as epoch ms, under the rules in the module doc.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut at = 19;
    let mut fraction_ms = 0;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let count = at - start;
        if count == 0 || count > 9 {
            return None;
        }
        // Truncate to milliseconds: the first three digits, padded with zeros.
        for i in 0..3 {
            let digit = if i < count { b[start + i] - b'0' } else { 0 };
            fraction_ms = fraction_ms * 10 + i64::from(digit);
        }
    }
    let offset_minutes = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = hours * 60 + minutes;
            if *sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(
        days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1_000 + fraction_ms
            - offset_minutes * 60_000,
    )
}

fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::json::index_object;

    #[test]
    fn reads_rfc_3339() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("1970-01-01T00:00:00.001Z", 1),
            ("1970-01-01T00:00:00.0019z", 1),
            ("1970-01-01t00:00:01.5+00:00", 1_500),
            ("1970-01-01 01:00:00+01:00", 0),
            ("1969-12-31T23:59:59.999Z", -1),
            ("1970-01-01T00:00:00-00:30", 1_800_000),
            ("2024-02-29T12:00:00Z", 1_709_208_000_000),
            ("2000-03-01T00:00:00Z", 951_868_800_000),
            ("0000-01-01T00:00:00Z", -62_167_219_200_000),
            ("9999-12-31T23:59:59.999999999Z", 253_402_300_799_999),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_rfc3339_ms(text), Some(ms), "{text}");
        }
    }

    #[test]
    fn rejects_near_misses() {
        for text in [
            "",
            "1970-01-01",
            "1970-01-01T00:00:00",
            "1970-01-01T00:00Z",
            "1970-1-01T00:00:00Z",
            "1970-01-01X00:00:00Z",
            "1970-13-01T00:00:00Z",
            "1970-00-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "1970-04-31T00:00:00Z",
            "1970-01-01T24:00:00Z",
            "1970-01-01T00:60:00Z",
            "1970-01-01T00:00:60Z",
            "1970-01-01T00:00:00.Z",
            "1970-01-01T00:00:00.1234567890Z",
            "1970-01-01T00:00:00+0100",
            "1970-01-01T00:00:00+24:00",
            "1970-01-01T00:00:00+01:60",
            "1970-01-01T00:00:00Z ",
            "+1970-01-01T00:00:00Z",
            "１970-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_ms(text), None, "{text:?}");
        }
    }

    fn time_of(value: &str, field: Option<&str>, timestamp: Option<i64>) -> Result<i64, String> {
        let mut fields = Vec::new();
        let doc = index_object(value.as_bytes(), &mut fields).unwrap();
        event_time_ms(&doc, field, timestamp)
    }

    #[test]
    fn takes_the_field_or_the_timestamp() {
        assert_eq!(time_of(r#"{"ts":5}"#, Some("ts"), Some(9)), Ok(5));
        assert_eq!(time_of(r#"{"ts":-5}"#, Some("ts"), None), Ok(-5));
        assert_eq!(
            time_of(r#"{"ts":"1970-01-01T00:00:01Z"}"#, Some("ts"), None),
            Ok(1_000)
        );
        assert_eq!(time_of(r#"{"ts":5}"#, None, Some(9)), Ok(9));
        assert!(time_of(r#"{"ts":5}"#, None, None).is_err());
        for bad in [
            r#"{}"#,
            r#"{"ts":5.0}"#,
            r#"{"ts":5e3}"#,
            r#"{"ts":"5"}"#,
            r#"{"ts":null}"#,
            r#"{"ts":[5]}"#,
            r#"{"ts":true}"#,
            r#"{"ts":9223372036854775807}"#,
            r#"{"ts":8640000000000001}"#,
        ] {
            assert!(time_of(bad, Some("ts"), Some(9)).is_err(), "{bad}");
        }
        assert!(time_of("{}", None, Some(EVENT_TIME_ABS_MAX_MS + 1)).is_err());
        assert_eq!(
            time_of("{}", None, Some(-EVENT_TIME_ABS_MAX_MS)),
            Ok(-EVENT_TIME_ABS_MAX_MS)
        );
    }
}
