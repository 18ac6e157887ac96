//! Medians with their spread, and the table `lifecycle-bench` prints (Markdown, so it goes
//! into docs/BENCHMARKS.md as it is).

use super::{Figures, System};
use std::collections::BTreeMap;

/// The median of the samples (the mean of the middle two for an even count).
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// "median (min–max, n)" in milliseconds, or "–" without samples.
pub fn cell(samples: &[f64]) -> String {
    match median(samples) {
        None => "–".into(),
        Some(m) => {
            let lo = samples.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{m:.0} ({lo:.0}–{hi:.0}, n={})", samples.len())
        }
    }
}

/// weir's median over Flink's, when both exist.
fn ratio(weir: &[f64], flink: &[f64]) -> String {
    match (median(weir), median(flink)) {
        (Some(w), Some(f)) if f > 0.0 => format!("{:.2}", w / f),
        _ => "–".into(),
    }
}

fn bytes(b: Option<u64>) -> String {
    b.map_or("–".into(), |b| format!("{:.1} MB", b as f64 / 1e6))
}

/// The table: one block of rows per key count, weir and Flink side by side.
pub fn table(results: &BTreeMap<(u64, &'static str), Figures>, keys: &[u64]) -> String {
    let mut out = String::from(
        "| keys | measure (ms) | weir | Flink | weir/Flink |\n| ---: | --- | ---: | ---: | ---: |\n",
    );
    let empty = Figures::default();
    for k in keys {
        let w = results.get(&(*k, System::Weir.name())).unwrap_or(&empty);
        let f = results.get(&(*k, System::Flink.name())).unwrap_or(&empty);
        let rows: [(&str, &[f64], &[f64]); 4] = [
            (
                "savepoint (request → complete)",
                &w.savepoint_ms,
                &f.savepoint_ms,
            ),
            (
                "stop with savepoint",
                &w.stop_savepoint_ms,
                &f.stop_savepoint_ms,
            ),
            (
                "upgrade downtime",
                &w.upgrade_downtime_ms,
                &f.upgrade_downtime_ms,
            ),
            (
                "restart-from-savepoint downtime",
                &w.restart_downtime_ms,
                &f.restart_downtime_ms,
            ),
        ];
        for (name, a, b) in rows {
            out.push_str(&format!(
                "| {k} | {name} | {} | {} | {} |\n",
                cell(a),
                cell(b),
                ratio(a, b)
            ));
        }
        out.push_str(&format!(
            "| {k} | steady-state longest output gap (noise floor) | {:.0} | {:.0} | |\n",
            w.steady_gap_ms, f.steady_gap_ms
        ));
        out.push_str(&format!(
            "| {k} | savepoint size | {} | {} | |\n",
            bytes(w.state_bytes),
            bytes(f.state_bytes)
        ));
        out.push_str(&format!(
            "| {k} | duplicate / missing outputs | {} / {} | {} / {} | |\n",
            w.duplicates, w.missing, f.duplicates, f.missing
        ));
    }
    out
}

/// Where the upgrades' time went: each phase's end after the request, per system and keys.
pub fn phases(results: &BTreeMap<(u64, &'static str), Figures>) -> String {
    let mut out = String::from(
        "| keys | system | upgrade phase: its end after the request (ms) | median (min–max, n) |\n| ---: | --- | --- | ---: |\n",
    );
    for ((keys, system), figures) in results {
        for (name, samples) in &figures.upgrade_phases {
            out.push_str(&format!(
                "| {keys} | {system} | {name} | {} |\n",
                cell(samples)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(cell(&[5.0, 1.0, 3.0]), "3 (1–5, n=3)");
    }
}
