//! An independent count of what the sample job must output, computed straight from the
//! records in each source partition: per card and 60 s window **over every partition**
//! (the source is keyed by merchant, so the job repartitions by card), the succeeded
//! payments with a positive amount, each event id once (a re-sent duplicate has the same
//! merchant key, so it sits on the same partition), judged late by its own partition's
//! watermark; alerts where a card paid five or more times. Written for this one job, apart
//! from the operator engine, so the two check each other.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const WINDOW_MS: i64 = 60_000;
const OUT_OF_ORDERNESS_MS: i64 = 5_000;
const ALERT_COUNT_MIN: u64 = 5;

/// One alert: card, window start, and the aggregates, with amounts in cents so they
/// compare exactly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Alert {
    pub card: String,
    pub window_start: i64,
    pub count: u64,
    pub total_cents: i64,
    pub largest_cents: i64,
}

/// The expected alerts and dead-letter count for the records of every partition (each in
/// offset order).
pub fn expected(partitions: &[Vec<Vec<u8>>]) -> (BTreeSet<Alert>, u64) {
    let mut alerts = BTreeSet::new();
    let mut dead = 0u64;
    let mut windows: BTreeMap<(String, i64), (u64, i64, i64)> = BTreeMap::new();
    for records in partitions {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut max_ts: Option<i64> = None;
        for bytes in records {
            let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(bytes) else {
                dead += 1;
                continue;
            };
            let Some(ts) = e.get("created_at").and_then(Value::as_i64) else {
                dead += 1;
                continue;
            };
            let watermark = max_ts.map(|m| m - OUT_OF_ORDERNESS_MS);
            max_ts = Some(max_ts.map_or(ts, |m| m.max(ts)));
            let amount = e.get("amount").and_then(Value::as_f64).unwrap_or(0.0);
            let succeeded = e.get("status").and_then(Value::as_str) == Some("succeeded");
            if !(amount > 0.0 && succeeded) {
                continue;
            }
            let id = e
                .get("event_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !seen.insert(id) {
                continue; // a re-sent duplicate (all within the 24 h ttl here)
            }
            let start = ts.div_euclid(WINDOW_MS) * WINDOW_MS;
            if watermark.is_some_and(|w| start + WINDOW_MS <= w) {
                dead += 1; // late
                continue;
            }
            let card = e
                .get("card_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let cents = (amount * 100.0).round() as i64;
            let w = windows.entry((card, start)).or_insert((0, 0, i64::MIN));
            w.0 += 1;
            w.1 += cents;
            w.2 = w.2.max(cents);
        }
    }
    // The closing events moved every partition's watermark past every window: all fired.
    for ((card, window_start), (count, total_cents, largest_cents)) in windows {
        if count >= ALERT_COUNT_MIN {
            alerts.insert(Alert {
                card,
                window_start,
                count,
                total_cents,
                largest_cents,
            });
        }
    }
    (alerts, dead)
}

/// Reads an alert the job emitted.
pub fn parse_alert(bytes: &[u8]) -> Option<Alert> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    Some(Alert {
        card: v.get("key")?.as_str()?.to_string(),
        window_start: v.get("window_start")?.as_i64()?,
        count: v.get("count")?.as_u64()?,
        total_cents: (v.get("total")?.as_f64()? * 100.0).round() as i64,
        largest_cents: (v.get("largest")?.as_f64()? * 100.0).round() as i64,
    })
}
