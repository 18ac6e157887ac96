//! Durations as job specs write them: a whole number and a unit, like `500ms`, `5s`, `10m`,
//! `24h` or `1d`. They get their own type so a spec carries a [`std::time::Duration`] the
//! rest of weir can compute with, while YAML and JSON keep the short human form — the form
//! Flink and Kafka users already write in their configuration.
//!
//! Precision is one millisecond, the unit of event times and watermarks in weir.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Milliseconds in each unit a spec may write, largest first so that formatting picks the
/// largest unit that represents a duration exactly.
const UNITS_MS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The longest duration text accepted; anything longer is not a duration a person wrote.
const DURATION_TEXT_LEN_MAX: usize = 32;

/// A duration in a job spec, written as text like `"500ms"`, `"5s"`, `"10m"`, `"24h"` or
/// `"1d"`. Whole milliseconds: sub-millisecond parts are dropped when it is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SpecDuration(pub Duration);

impl SpecDuration {
    /// The zero duration.
    pub const ZERO: SpecDuration = SpecDuration(Duration::ZERO);

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        SpecDuration(Duration::from_millis(ms))
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        SpecDuration(Duration::from_secs(secs))
    }

    /// The duration in whole milliseconds, saturating at `u64::MAX`.
    pub fn as_millis(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// The duration as a [`std::time::Duration`].
    pub const fn as_duration(&self) -> Duration {
        self.0
    }

    /// Whether the duration is shorter than one millisecond, which weir treats as zero.
    pub fn is_zero(&self) -> bool {
        self.as_millis() == 0
    }
}

impl From<Duration> for SpecDuration {
    fn from(duration: Duration) -> Self {
        SpecDuration(duration)
    }
}

impl From<SpecDuration> for Duration {
    fn from(duration: SpecDuration) -> Self {
        duration.0
    }
}

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason}")]
pub struct ParseDurationError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ParseDurationError {
    fn new(input: &str, reason: &str) -> Self {
        let input: String = input.chars().take(DURATION_TEXT_LEN_MAX).collect();
        ParseDurationError {
            input,
            reason: reason.to_string(),
        }
    }
}

impl FromStr for SpecDuration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str =
            "expected a whole number followed by ms, s, m, h or d, like `500ms` or `5s`";
        if text.len() > DURATION_TEXT_LEN_MAX {
            return Err(ParseDurationError::new(text, "too long"));
        }
        let digits_len = text.bytes().take_while(u8::is_ascii_digit).count();
        let (digits, unit) = text.split_at(digits_len);
        if digits.is_empty() {
            return Err(ParseDurationError::new(text, EXPECTED));
        }
        let Some(&(_, unit_ms)) = UNITS_MS.iter().find(|(name, _)| *name == unit) else {
            return Err(ParseDurationError::new(text, EXPECTED));
        };
        let count: u64 = digits
            .parse()
            .map_err(|_| ParseDurationError::new(text, "too large"))?;
        let ms = count
            .checked_mul(unit_ms)
            .ok_or_else(|| ParseDurationError::new(text, "too large"))?;
        Ok(SpecDuration::from_millis(ms))
    }
}

impl fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        // The last unit is 1 ms, so some unit always divides; the fallback is never taken.
        let (unit, unit_ms) = UNITS_MS
            .iter()
            .find(|(_, unit_ms)| ms.is_multiple_of(*unit_ms))
            .copied()
            .unwrap_or(("ms", 1));
        write!(f, "{}{}", ms / unit_ms, unit)
    }
}

impl Serialize for SpecDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpecDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = SpecDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string like \"500ms\", \"5s\", \"10m\", \"24h\" or \"1d\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<SpecDuration, E> {
        text.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let cases = [
            ("500ms", 500),
            ("5s", 5_000),
            ("60s", 60_000),
            ("10m", 600_000),
            ("24h", 86_400_000),
            ("1d", 86_400_000),
            ("0s", 0),
            ("0ms", 0),
        ];
        for (text, ms) in cases {
            let duration: SpecDuration = text.parse().unwrap();
            assert_eq!(duration.as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn rejects_malformed_text() {
        let bad = [
            "", "s", "5", "5 s", " 5s", "5s ", "-5s", "+5s", "1.5s", "5sec", "5S", "5us", "1h30m",
            "ms5",
        ];
        for text in bad {
            assert!(text.parse::<SpecDuration>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn rejects_overflow_without_panicking() {
        assert!("18446744073709551615d".parse::<SpecDuration>().is_err());
        assert!("99999999999999999999999ms".parse::<SpecDuration>().is_err());
        let long = "1".repeat(100) + "s";
        assert!(long.parse::<SpecDuration>().is_err());
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        let cases = [
            (0, "0s"),
            (1, "1ms"),
            (500, "500ms"),
            (1_500, "1500ms"),
            (5_000, "5s"),
            (60_000, "1m"),
            (90_000, "90s"),
            (3_600_000, "1h"),
            (86_400_000, "1d"),
            (2 * 86_400_000 + 3_600_000, "49h"),
        ];
        for (ms, text) in cases {
            assert_eq!(SpecDuration::from_millis(ms).to_string(), text);
        }
    }

    #[test]
    fn round_trips_through_text_yaml_and_json() {
        for ms in [
            0,
            1,
            999,
            1_000,
            59_999,
            60_000,
            3_600_000,
            86_400_000,
            7 * 86_400_000,
        ] {
            let duration = SpecDuration::from_millis(ms);
            assert_eq!(duration.to_string().parse::<SpecDuration>(), Ok(duration));

            let json = serde_json::to_string(&duration).unwrap();
            assert_eq!(
                serde_json::from_str::<SpecDuration>(&json).unwrap(),
                duration
            );

            let yaml = serde_yaml::to_string(&duration).unwrap();
            assert_eq!(
                serde_yaml::from_str::<SpecDuration>(&yaml).unwrap(),
                duration
            );
        }
        for text in ["500ms", "5s", "60s", "10m", "24h", "1d"] {
            let duration: SpecDuration = text.parse().unwrap();
            let again: SpecDuration = duration.to_string().parse().unwrap();
            assert_eq!(again, duration, "{text}");
        }
    }

    #[test]
    fn numbers_are_not_durations() {
        let err = serde_json::from_str::<SpecDuration>("5000").unwrap_err();
        assert!(err.to_string().contains("duration string"), "{err}");
        assert!(serde_yaml::from_str::<SpecDuration>("5000").is_err());
    }
}
