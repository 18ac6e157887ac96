//! Nexmark-style bid events as JSON bytes, generated up front from one seed so every run
//! and every variant sees the same records.
//!
//! A bid is `{"auction", "bidder", "price", "channel", "url", "date_time"}` as in Nexmark's
//! `Bid` (without `extra`). Bidders are drawn uniformly from [`BIDDERS`] values (the keyed
//! jobs group by bidder), prices log-uniformly from 1 to 10,000 (so `price > 100` keeps
//! half), and event time advances by [`EVENTS_PER_EVENT_SECOND`] per second of event time
//! with up to [`DATE_TIME_JITTER_MS`] of disorder, below the jobs' out-of-orderness bound:
//! no event is late.
//!
//! `date_time` is the last field and always 13 digits, so [`rewrite_date_time`] can move
//! a whole set of events forward in time in place, without generating them again: the
//! operator bench replays one set many times, each pass later than the one before, so its
//! windows keep firing as they would on an endless stream.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Distinct bidders: the key space of the keyed jobs.
pub const BIDDERS: u64 = 10_000;
/// The first bidder and auction id (Nexmark's ids start at 1000).
pub const FIRST_ID: u64 = 1_000;
/// Distinct auctions bid on.
pub const AUCTIONS: u64 = 1_000;
/// Events per second of event time: 1,000,000 per 10 s window, 100 per key and window.
pub const EVENTS_PER_EVENT_SECOND: u64 = 100_000;
/// The largest amount an event's time lags behind the newest before it.
pub const DATE_TIME_JITTER_MS: i64 = 500;
/// The first event's time: 2023-11-14T22:13:20Z. Every time used stays 13 digits long.
pub const DATE_TIME_START_MS: i64 = 1_700_000_000_000;
/// Times must stay below this to keep 13 digits (2286-11-20).
const DATE_TIME_END_MS: i64 = 10_000_000_000_000;
/// Nexmark's channels.
const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
/// `,"date_time":` + 13 digits + `}`.
const DATE_TIME_TAIL_BYTES: usize = 13 + 1;

/// One set of bids, each a JSON object of about 150 bytes.
#[derive(Debug, Clone)]
pub struct Bids {
    /// The records' values.
    pub values: Vec<Vec<u8>>,
    /// Each record's bidder, for partitioning by key.
    pub bidders: Vec<u64>,
    /// Each record's `date_time`, as currently written in `values`.
    date_times_ms: Vec<i64>,
}

impl Bids {
    /// `count` bids from `seed`.
    pub fn generate(count: usize, seed: u64) -> Bids {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut bids = Bids {
            values: Vec::with_capacity(count),
            bidders: Vec::with_capacity(count),
            date_times_ms: Vec::with_capacity(count),
        };
        for i in 0..count as u64 {
            let bidder = FIRST_ID + rng.gen_range(0..BIDDERS);
            let auction = FIRST_ID + rng.gen_range(0..AUCTIONS);
            let price = 10f64.powf(rng.gen_range(0.0..4.0)).round() as u64;
            let channel = CHANNELS[rng.gen_range(0..CHANNELS.len())];
            let path: u32 = rng.gen();
            let newest_ms = DATE_TIME_START_MS + (i * 1_000 / EVENTS_PER_EVENT_SECOND) as i64;
            let date_time_ms = newest_ms - rng.gen_range(0..=DATE_TIME_JITTER_MS);
            let value = format!(
                "{{\"auction\":{auction},\"bidder\":{bidder},\"price\":{price},\"channel\":\"{channel}\",\"url\":\"https://www.nexmark.com/{path:08x}/item.htm?query=1&channel_id={}\",\"date_time\":{date_time_ms}}}",
                path % 1_000,
            );
            bids.values.push(value.into_bytes());
            bids.bidders.push(bidder);
            bids.date_times_ms.push(date_time_ms);
        }
        bids
    }

    /// Number of bids.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no bids.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Total bytes of the values.
    pub fn bytes(&self) -> usize {
        self.values.iter().map(Vec::len).sum()
    }

    /// Event time the set spans, rounded up to whole `align_ms` (a window size), plus one
    /// `align_ms`: shifting by this starts the next pass in a window after every window of
    /// this one.
    pub fn span_ms(&self, align_ms: i64) -> i64 {
        let first = self.date_times_ms.iter().copied().min().unwrap_or(0);
        let last = self.date_times_ms.iter().copied().max().unwrap_or(0);
        ((last - first) / align_ms + 2) * align_ms
    }

    /// Each bid's `date_time` as written in its value.
    pub fn date_times_ms(&self) -> &[i64] {
        &self.date_times_ms
    }
}

/// Rewrites the `date_time` of a bid `value` (as [`Bids::generate`] writes it) in place.
pub fn rewrite_date_time(value: &mut [u8], date_time_ms: i64) {
    assert!(
        (DATE_TIME_START_MS..DATE_TIME_END_MS).contains(&date_time_ms),
        "event time {date_time_ms} does not fit 13 digits"
    );
    let at = value.len() - DATE_TIME_TAIL_BYTES;
    let mut rest = date_time_ms;
    for digit in value[at..at + 13].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bids_are_json_with_the_nexmark_fields() {
        let bids = Bids::generate(1_000, 7);
        for (value, bidder) in bids.values.iter().zip(&bids.bidders) {
            let v: serde_json::Value = serde_json::from_slice(value).unwrap();
            assert_eq!(v["bidder"].as_u64(), Some(*bidder));
            for field in ["auction", "price", "channel", "url", "date_time"] {
                assert!(v.get(field).is_some(), "{field} in {v}");
            }
        }
        assert_eq!(
            bids.values,
            Bids::generate(1_000, 7).values,
            "deterministic"
        );
    }

    #[test]
    fn shifting_rewrites_the_date_time_in_place() {
        let mut bids = Bids::generate(100, 1);
        let before: serde_json::Value = serde_json::from_slice(&bids.values[5]).unwrap();
        let shifted = bids.date_times_ms()[5] + bids.span_ms(10_000);
        rewrite_date_time(&mut bids.values[5], shifted);
        let after: serde_json::Value = serde_json::from_slice(&bids.values[5]).unwrap();
        let delta = after["date_time"].as_i64().unwrap() - before["date_time"].as_i64().unwrap();
        assert_eq!(delta, 20_000);
        assert_eq!(after["price"], before["price"]);
    }
}
