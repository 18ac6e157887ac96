//! The sample payments events `weir local` feeds the sample job: mostly valid card
//! payments with a little out-of-orderness, plus malformed records, late events and
//! re-sent duplicates, and at the end one event per partition far in the future so that
//! every window closes. Records are keyed by **merchant**, as a payments topic usually
//! is, while the job counts per card: one card's payments sit on several partitions, and
//! the job must repartition them by card.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Cards the generator spreads payments over.
pub const CARDS: u64 = 200;
/// Merchants, the records' Kafka key.
pub const MERCHANTS: u64 = 40;
/// Event time of the first event (2026-01-01T00:00:00Z).
pub const START_MS: i64 = 1_767_225_600_000;
/// Event-time distance between consecutive events.
pub const STEP_MS: i64 = 40;
/// How far behind the newest event an ordinary event may be (under the job's 5 s bound).
pub const JITTER_MS: i64 = 3_000;

/// One generated record: its key (the merchant) and its bytes.
#[derive(Debug, Clone)]
pub struct Generated {
    pub key: Option<String>,
    pub value: Vec<u8>,
}

/// What the generator meant each record to be, so the summary can tell the parts apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mix {
    pub valid: u64,
    pub malformed: u64,
    pub late: u64,
    pub duplicates: u64,
}

/// `n` events from `seed`, then the closing events (one per partition, routed by the
/// caller).
pub fn events(n: u64, seed: u64) -> (Vec<Generated>, Mix) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n as usize + n as usize / 50);
    let mut mix = Mix::default();
    for i in 0..n {
        let now = START_MS + i as i64 * STEP_MS;
        let card = format!("card-{:03}", rng.gen_range(0..CARDS));
        let merchant = format!("merchant-{:02}", rng.gen_range(0..MERCHANTS));
        let roll = rng.gen_range(0..1000);
        if roll < 5 {
            mix.malformed += 1;
            out.push(Generated {
                key: Some(merchant),
                value: format!("{{\"event_id\": \"e{i}\", \"amount\": ").into_bytes(),
            });
            continue;
        }
        // Late events only once event time is well past the first windows: ten minutes
        // behind the newest event is behind every open window.
        let late = roll < 8 && i as i64 * STEP_MS > 15 * 60_000;
        let ts = if late {
            now - 10 * 60_000
        } else {
            now - rng.gen_range(0..JITTER_MS)
        };
        let status = if rng.gen_range(0..10) == 0 {
            "failed"
        } else {
            "succeeded"
        };
        let amount = rng.gen_range(1..50_000) as f64 / 100.0;
        let status = if late { "succeeded" } else { status };
        let value = format!(
            r#"{{"event_id":"e{i}","card_id":"{card}","merchant":"{merchant}","amount":{amount},"status":"{status}","created_at":{ts}}}"#
        )
        .into_bytes();
        if late {
            mix.late += 1;
        } else {
            mix.valid += 1;
        }
        out.push(Generated {
            key: Some(merchant.clone()),
            value: value.clone(),
        });
        if !late && rng.gen_range(0..100) == 0 {
            // Re-sent by an at-least-once producer upstream: the job's dedupe drops it.
            mix.duplicates += 1;
            out.push(Generated {
                key: Some(merchant),
                value,
            });
        }
    }
    (out, mix)
}

/// An event far past every window, not a payment (amount 0), that moves a partition's
/// watermark so that every window closes.
pub fn closing_event(n: u64) -> Vec<u8> {
    let ts = START_MS + n as i64 * STEP_MS + 60 * 60_000;
    format!(
        r#"{{"event_id":"close","card_id":"none","amount":0,"status":"closing","created_at":{ts}}}"#
    )
    .into_bytes()
}
