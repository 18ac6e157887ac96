//! An event's time: the top-level field `source.event_time` names, an RFC 3339 string or
//! an integer of epoch ms, else the record's timestamp; bounded by [`EVENT_TIME_ABS_MAX_MS`].

use super::json::Json;
use std::collections::BTreeMap;

/// The largest event-time magnitude accepted, in ms (the spec's 8.64e15).
pub(crate) const EVENT_TIME_ABS_MAX_MS: i64 = 8_640_000_000_000_000;

/// The event time of `object` (or `timestamp_ms` without a field); the error is a
/// `bad_event_time` detail.
pub(crate) fn event_time_ms(
    field: Option<&str>,
    object: &BTreeMap<String, Json>,
    timestamp_ms: i64,
) -> Result<i64, String> {
    let time_ms = match field {
        None => timestamp_ms,
        Some(name) => match object.get(name) {
            None => return Err(format!("field `{name}` is missing")),
            Some(Json::Int(ms)) => *ms,
            Some(Json::String(text)) => parse_rfc3339_ms(text)
                .ok_or_else(|| format!("field `{name}` is not an RFC 3339 time"))?,
            Some(_) => return Err(format!("field `{name}` is not a time")),
        },
    };
    if time_ms.unsigned_abs() > EVENT_TIME_ABS_MAX_MS.unsigned_abs() {
        return Err(format!("event time {time_ms} is out of range"));
    }
    Ok(time_ms)
}

/// Reads `YYYY-MM-DD(T|t| )HH:MM:SS[.d{1,9}](Z|z|±HH:MM)` into epoch ms, the fraction
/// truncated to ms.
pub(crate) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let year = number(0..4)?;
    let month = number(5..7)?;
    let day = number(8..10)?;
    let hour = number(11..13)?;
    let minute = number(14..16)?;
    let second = number(17..19)?;
    let separators_ok = b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && matches!(b.get(10), Some(b'T' | b't' | b' '))
        && b.get(13) == Some(&b':')
        && b.get(16) == Some(&b':');
    if !separators_ok {
        return None;
    }
    let mut pos = 19;
    let mut fraction_ms = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let digits = b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        // Truncated to ms: the first three digits, padded with zeros.
        for i in 0..3 {
            fraction_ms *= 10;
            if i < digits {
                fraction_ms += i64::from(b[pos + i] - b'0');
            }
        }
        pos += digits;
    }
    let offset_minutes = match b.get(pos) {
        Some(b'Z' | b'z') => {
            pos += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            let offset_hour = number(pos + 1..pos + 3)?;
            let offset_minute = number(pos + 4..pos + 6)?;
            if b.get(pos + 3) != Some(&b':') || offset_hour > 23 || offset_minute > 59 {
                return None;
            }
            pos += 6;
            sign * (offset_hour * 60 + offset_minute)
        }
        _ => return None,
    };
    let valid = pos == b.len()
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 59;
    if !valid {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000 + fraction_ms - offset_minutes * 60_000)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rfc3339() {
        let cases = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("1970-01-01t00:00:01.5z", Some(1_500)),
            ("1970-01-01 00:00:00.123456789Z", Some(123)),
            ("1970-01-01T01:00:00+01:00", Some(0)),
            ("1969-12-31T23:59:59.999Z", Some(-1)),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000)),
            ("0000-01-01T00:00:00Z", Some(-62_167_219_200_000)),
            ("2001-02-29T00:00:00Z", None),
            ("1970-01-01T24:00:00Z", None),
            ("1970-01-01T00:00:60Z", None),
            ("1970-01-01T00:00:00", None),
            ("1970-01-01T00:00:00.Z", None),
            ("1970-01-01T00:00:00.1234567890Z", None),
            ("1970-01-01T00:00:00+24:00", None),
            ("1970-01-01T00:00:00Z ", None),
            ("1970-1-01T00:00:00Z", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rfc3339_ms(text), expected, "{text}");
        }
    }
}
