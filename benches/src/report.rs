//! The bench's figures as Markdown tables: throughput and latency per load level, what the
//! servers spent on it, failover times, the weir/etcd ratios of the same run, and the goals.

use crate::failover::{median, FailoverTrial};
use crate::load::LoadResult;
use std::fmt::Write;
use std::time::Duration;

/// The goal for writes/s at the highest client count, as a multiple of etcd's.
pub const GOAL_THROUGHPUT_RATIO_MIN: f64 = 2.0;
/// The goal for the failover median.
pub const GOAL_FAILOVER_MEDIAN_MS_MAX: f64 = 500.0;

/// What the servers and the bench itself spent during one measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    pub wall: Duration,
    /// CPU of all members of the group.
    pub server_cpu_ms: u64,
    /// CPU of the bench process (the load generator).
    pub bench_cpu_ms: u64,
    /// Raft log fsyncs on the leader, when its metrics say.
    pub leader_log_fsyncs: Option<f64>,
    /// Raft terms that began (elections) on the leader's count.
    pub terms_begun: Option<u64>,
    /// Median fsync of the disk under the data directories, probed just before the level.
    pub disk_fsync: Option<Duration>,
}

/// One load level of one system.
#[derive(Debug, Clone)]
pub struct Level {
    pub load: LoadResult,
    pub spent: Spent,
}

/// Everything measured on one system.
#[derive(Debug, Clone)]
pub struct SystemReport {
    pub name: &'static str,
    pub levels: Vec<Level>,
    pub failover: Vec<FailoverTrial>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The whole report, as Markdown.
pub fn render(reports: &[SystemReport], cores: usize) -> String {
    let mut out = String::new();
    throughput_table(&mut out, reports);
    spent_table(&mut out, reports, cores);
    failover_table(&mut out, reports);
    let Some(etcd) = reports.iter().find(|r| r.name == "etcd") else {
        return out;
    };
    for other in reports.iter().filter(|r| r.name != "etcd") {
        ratio_table(&mut out, other, etcd);
    }
    for other in reports.iter().filter(|r| r.name != "etcd") {
        goals(&mut out, other, etcd);
    }
    out
}

fn throughput_table(out: &mut String, reports: &[SystemReport]) {
    let _ = writeln!(
        out,
        "| system | clients | writes/s | p50 ms | p99 ms | errors |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in reports {
        for l in &r.levels {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} |",
                r.name,
                l.load.clients,
                l.load.writes_per_s(),
                l.load.latency_ms(0.50),
                l.load.latency_ms(0.99),
                l.load.errors
            );
        }
    }
    out.push('\n');
}

fn spent_table(out: &mut String, reports: &[SystemReport], cores: usize) {
    let _ = writeln!(
        out,
        "| system | clients | server CPU µs/write | server CPU % of {cores} cores | bench CPU % | writes per leader log fsync | elections | disk fsync µs |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in reports {
        for l in &r.levels {
            let wall_ms = ms(l.spent.wall).max(1.0);
            let writes = l.load.writes_acked().max(1) as f64;
            let per_fsync = match l.spent.leader_log_fsyncs {
                Some(f) if f > 0.0 => format!("{:.1}", writes / f),
                _ => "n/a".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
                r.name,
                l.load.clients,
                l.spent.server_cpu_ms as f64 * 1000.0 / writes,
                l.spent.server_cpu_ms as f64 * 100.0 / wall_ms / cores as f64,
                l.spent.bench_cpu_ms as f64 * 100.0 / wall_ms / cores as f64,
                per_fsync,
                l.spent
                    .terms_begun
                    .map_or_else(|| "n/a".to_string(), |t| t.to_string()),
                l.spent
                    .disk_fsync
                    .map_or_else(|| "n/a".to_string(), |d| d.as_micros().to_string())
            );
        }
    }
    out.push('\n');
}

fn failover_table(out: &mut String, reports: &[SystemReport]) {
    let _ = writeln!(
        out,
        "| system | failover median ms | min ms | max ms | trials | elections per failover | elections caused by restarts |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in reports {
        let Some(med) = median(&r.failover) else {
            continue;
        };
        let min = r
            .failover
            .iter()
            .map(|t| t.unavailable)
            .min()
            .unwrap_or_default();
        let max = r
            .failover
            .iter()
            .map(|t| t.unavailable)
            .max()
            .unwrap_or_default();
        let failover_terms: u64 = r.failover.iter().map(|t| t.failover_terms).sum();
        let restart_terms: u64 = r.failover.iter().map(|t| t.restart_terms).sum();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.1} | {} |",
            r.name,
            ms(med),
            ms(min),
            ms(max),
            r.failover.len(),
            failover_terms as f64 / r.failover.len().max(1) as f64,
            restart_terms
        );
    }
    out.push('\n');
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "n/a".to_string()
    }
}

fn ratio_table(out: &mut String, weir: &SystemReport, etcd: &SystemReport) {
    let _ = writeln!(out, "| {}/etcd | writes/s | p50 | p99 |", weir.name);
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    for w in &weir.levels {
        let Some(e) = etcd
            .levels
            .iter()
            .find(|e| e.load.clients == w.load.clients)
        else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} clients | {} | {} | {} |",
            w.load.clients,
            ratio(w.load.writes_per_s(), e.load.writes_per_s()),
            ratio(w.load.latency_ms(0.50), e.load.latency_ms(0.50)),
            ratio(w.load.latency_ms(0.99), e.load.latency_ms(0.99)),
        );
    }
    if let (Some(w), Some(e)) = (median(&weir.failover), median(&etcd.failover)) {
        let _ = writeln!(out, "| failover median | {} | | |", ratio(ms(w), ms(e)));
    }
    out.push('\n');
}

fn goals(out: &mut String, weir: &SystemReport, etcd: &SystemReport) {
    let top = |r: &SystemReport| r.levels.iter().max_by_key(|l| l.load.clients).cloned();
    if let (Some(w), Some(e)) = (top(weir), top(etcd)) {
        if w.load.clients == e.load.clients {
            let r = w.load.writes_per_s() / e.load.writes_per_s().max(f64::EPSILON);
            let _ = writeln!(
                out,
                "- goal: at {} clients {} writes/s >= {GOAL_THROUGHPUT_RATIO_MIN}x etcd's: {} ({r:.2}x)",
                w.load.clients,
                weir.name,
                verdict(r >= GOAL_THROUGHPUT_RATIO_MIN)
            );
            let (wp, ep) = (w.load.latency_ms(0.99), e.load.latency_ms(0.99));
            let _ = writeln!(
                out,
                "- goal: at {} clients {} p99 <= etcd's: {} ({wp:.2} ms vs {ep:.2} ms)",
                w.load.clients,
                weir.name,
                verdict(wp <= ep)
            );
        }
    }
    if let Some(m) = median(&weir.failover) {
        let _ = writeln!(
            out,
            "- goal: {} failover median < {GOAL_FAILOVER_MEDIAN_MS_MAX} ms: {} ({:.0} ms)",
            weir.name,
            verdict(ms(m) < GOAL_FAILOVER_MEDIAN_MS_MAX),
            ms(m)
        );
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}
