//! The worker benches' figures as Markdown tables, each against the baseline measured in the
//! same run, and the goals they are held to.

use super::cluster_recovery::ClusterTrial;
use super::idle::{IdleMemory, Memory};
use super::operators::{OperatorsResult, Trial, Variant};
use super::recovery::{RecoveryTrial, CLUSTER_ASSIGNMENT_POLL_MS, CLUSTER_LEASE_TIMEOUT_MS};
use std::fmt::Write;
use std::time::Duration;

/// Goal: windowed count events/s on one core.
pub const GOAL_WINDOWED_EVENTS_PER_S_MIN: f64 = 3_000_000.0;
/// Goal: throughput lost to 1 s checkpoints, in %.
pub const GOAL_CHECKPOINT_COST_PCT_MAX: f64 = 5.0;
/// Goal: weir's end-to-end records/s as a share of the copy loop's, in %.
pub const GOAL_E2E_SHARE_OF_COPY_PCT_MIN: f64 = 70.0;
/// Goal: what a shuffle may cost: the repartitioned windowed count's source records/s as a
/// share of the same job's without a shuffle, in %.
pub const GOAL_SHUFFLE_SHARE_PCT_MIN: f64 = 60.0;
/// Goal: idle worker resident memory, in MB (10^6 bytes).
pub const GOAL_IDLE_RSS_MB_MAX: f64 = 30.0;

/// The machine the run was on: cores and the load averages at the end of the run (the cores
/// are shared, so the load says how much of them the bench had).
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "Machine: {cores} cores (shared); load average at the end of the run (1, 5, 15 min): {}.",
        load.join(", ")
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

fn trials_of(result: &OperatorsResult, variant: Variant) -> Vec<&Trial> {
    result
        .trials
        .iter()
        .filter(|t| t.variant == variant)
        .collect()
}

/// Median events/s of a variant, if it ran.
fn median_rate(result: &OperatorsResult, variant: Variant) -> Option<f64> {
    let trials = trials_of(result, variant);
    (!trials.is_empty()).then(|| median(trials.iter().map(|t| t.events_per_s()).collect()))
}

/// The least margin by which a hand-written path must beat the library it stands for.
pub const HAND_WRITTEN_WIN_PCT_MIN: f64 = 15.0;

/// The library variants against the engine's filter+map, round by round: the engine's
/// events/s over the library's in each round (both ran within seconds of each other), and
/// the median of those ratios.
fn libraries_ab(result: &OperatorsResult) -> String {
    let mut out = String::new();
    let engine = trials_of(result, Variant::Engine(super::jobs::Job::FilterMap));
    if engine.is_empty() {
        return out;
    }
    let mut rows = Vec::new();
    for variant in Variant::LIBRARIES {
        let trials = trials_of(result, variant);
        if trials.is_empty() {
            continue;
        }
        let ratios: Vec<f64> = engine
            .iter()
            .zip(&trials)
            .map(|(e, l)| e.events_per_s() / l.events_per_s().max(1e-9))
            .collect();
        let (min, max) = ratios.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), r| {
            (lo.min(*r), hi.max(*r))
        });
        let ratio = median(ratios);
        let rate = median(trials.iter().map(|t| t.events_per_s()).collect());
        let verdict = if (ratio - 1.0) * 100.0 >= HAND_WRITTEN_WIN_PCT_MIN {
            format!(
                "engine wins by {:.0} % (>= {HAND_WRITTEN_WIN_PCT_MIN:.0} %)",
                (ratio - 1.0) * 100.0
            )
        } else if ratio >= 1.0 {
            format!(
                "engine ahead by {:.0} %, under {HAND_WRITTEN_WIN_PCT_MIN:.0} %",
                (ratio - 1.0) * 100.0
            )
        } else {
            format!(
                "the library is faster by {:.0} %",
                (1.0 / ratio - 1.0) * 100.0
            )
        };
        rows.push(format!(
            "| {} | {rate:.0} | {ratio:.2} | {min:.2} | {max:.2} | {verdict} |",
            variant.name()
        ));
    }
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "| library path | events/s (median) | engine filter+map ÷ library (median of rounds) | min | max | verdict |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | --- |");
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
    out
}

/// The operator bench's tables.
pub fn operators(result: &OperatorsResult, rounds: usize) -> String {
    let mut out = String::new();
    let value = median_rate(result, Variant::SerdeValue);
    let typed = median_rate(result, Variant::SerdeTyped);
    let ratio = |rate: f64, base: Option<f64>| match base {
        Some(b) if b > 0.0 => format!("{:.2}", rate / b),
        _ => "n/a".to_string(),
    };
    let _ = writeln!(
        out,
        "{} bids of {:.0} bytes on average, replayed; batches of 2,048 records; median of {rounds} trials.\n",
        result.events, result.event_bytes_mean
    );
    let _ = writeln!(
        out,
        "| variant | events/s | min | max | ns/event | × serde_json → Value | × serde_json → struct | outputs/event |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for variant in Variant::every() {
        let trials = trials_of(result, variant);
        if trials.is_empty() {
            continue;
        }
        let rates: Vec<f64> = trials.iter().map(|t| t.events_per_s()).collect();
        let rate = median(rates.clone());
        let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = rates.iter().copied().fold(0.0, f64::max);
        let events: u64 = trials.iter().map(|t| t.events).sum();
        let outputs: u64 = trials.iter().map(|t| t.records_out).sum();
        let dead: u64 = trials.iter().map(|t| t.dead_letters).sum();
        let outputs_cell = match variant {
            Variant::SerdeValue | Variant::SerdeTyped => "—".to_string(),
            _ if dead > 0 => format!(
                "{:.3} ({dead} dead letters!)",
                outputs as f64 / events as f64
            ),
            _ => format!("{:.3}", outputs as f64 / events as f64),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            variant.name(),
            rate,
            min,
            max,
            1e9 / rate,
            ratio(rate, value),
            ratio(rate, typed),
            outputs_cell
        );
    }
    out.push('\n');
    out.push_str(&libraries_ab(result));
    let checkpointed = trials_of(result, Variant::Checkpointed);
    let windowed = median_rate(result, Variant::Engine(super::jobs::Job::WindowedCount));
    if !checkpointed.is_empty() {
        let checkpoints: u64 = checkpointed.iter().map(|t| t.checkpoints).sum();
        let time: Duration = checkpointed.iter().map(|t| t.checkpoint_time).sum();
        let processing: Duration = checkpointed.iter().map(|t| t.processing).sum();
        let max = checkpointed
            .iter()
            .map(|t| t.checkpoint_time_max)
            .max()
            .unwrap_or_default();
        let bytes = checkpointed
            .iter()
            .map(|t| t.snapshot_bytes_max)
            .max()
            .unwrap_or(0);
        let share_pct = 100.0 * time.as_secs_f64() / processing.as_secs_f64().max(1e-9);
        let rate = median_rate(result, Variant::Checkpointed).unwrap_or(f64::NAN);
        let ratio_to_windowed = windowed.map_or(f64::NAN, |w| rate / w);
        let _ = writeln!(
            out,
            "| checkpoints | mean ms (snapshot + fsynced write + prune) | max ms | largest snapshot KiB | time in checkpoints | events/s × windowed count (medians) |"
        );
        let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
        let _ = writeln!(
            out,
            "| {checkpoints} | {:.2} | {:.2} | {:.0} | {share_pct:.2} % | {ratio_to_windowed:.2} |\n",
            ms(time) / checkpoints.max(1) as f64,
            ms(max),
            bytes as f64 / 1024.0,
        );
        let _ = writeln!(
            out,
            "- Goal: checkpointing costs < {GOAL_CHECKPOINT_COST_PCT_MAX:.0} % of throughput: {share_pct:.2} % of processing time went to checkpoints, {}. (The ratio of median throughputs, {ratio_to_windowed:.2}, moves with the trial-to-trial spread on shared cores; the time share is the measure.)",
            met(share_pct < GOAL_CHECKPOINT_COST_PCT_MAX)
        );
    }
    if let Some(w) = windowed {
        let _ = writeln!(
            out,
            "- Goal: windowed count >= {:.0} million events/s per core: {:.2} million, {}.",
            GOAL_WINDOWED_EVENTS_PER_S_MIN / 1e6,
            w / 1e6,
            met(w >= GOAL_WINDOWED_EVENTS_PER_S_MIN)
        );
    }
    out
}

/// One row of the end-to-end table.
#[derive(Debug, Clone)]
pub struct E2eRow {
    pub name: String,
    pub records: u64,
    pub wall: Duration,
    pub records_out: u64,
    /// Commit points (weir) or none (the copy loop).
    pub commits: Option<u64>,
    /// CPU of the bench process (runners or copy loop, with librdkafka's threads).
    pub bench_cpu_ms: u64,
    pub broker_cpu_ms: Option<u64>,
    pub is_baseline: bool,
    /// The round a weir run belongs to; for a baseline run, how many rounds ran before it.
    pub round: usize,
}

impl E2eRow {
    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// The baseline a row is held against: for a weir run, the mean of the baseline runs just
/// before and just after its round; for the others, the mean of all baseline runs.
fn baseline_of(rows: &[E2eRow], row: &E2eRow) -> f64 {
    let mean = |rates: Vec<f64>| rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let bracketing: Vec<f64> = rows
        .iter()
        .filter(|r| r.is_baseline && (r.round == row.round || r.round == row.round + 1))
        .map(E2eRow::records_per_s)
        .collect();
    if row.commits.is_some() && !bracketing.is_empty() {
        return mean(bracketing);
    }
    mean(
        rows.iter()
            .filter(|r| r.is_baseline)
            .map(E2eRow::records_per_s)
            .collect(),
    )
}

/// The end-to-end tables: every run, then each job's ratio to the copy loop over the rounds
/// (median), which the goal is held to.
pub fn e2e(rows: &[E2eRow], partitions: u32, driver_threads: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{partitions} source partitions; weir: one PartitionRunner per partition on {driver_threads} driver thread(s), exactly-once, 1 s checkpoints to a directory store. × copy loop: a weir run against the mean of the baseline runs just before and after its round; other rows against the mean of all baseline runs.\n"
    );
    let _ = writeln!(
        out,
        "| run | round | records | wall s | records/s | × copy loop | records out | commit points | bench CPU µs/record | broker CPU µs/record |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        let records = r.records.max(1) as f64;
        let round = if r.commits.is_some() {
            (r.round + 1).to_string()
        } else {
            "—".to_string()
        };
        let _ = writeln!(
            out,
            "| {} | {round} | {} | {:.2} | {:.0} | {:.2} | {} | {} | {:.2} | {} |",
            r.name,
            r.records,
            r.wall.as_secs_f64(),
            r.records_per_s(),
            r.records_per_s() / baseline_of(rows, r),
            r.records_out,
            r.commits.map_or_else(|| "—".to_string(), |c| c.to_string()),
            r.bench_cpu_ms as f64 * 1000.0 / records,
            r.broker_cpu_ms.map_or_else(
                || "n/a".to_string(),
                |c| format!("{:.2}", c as f64 * 1000.0 / records)
            ),
        );
    }
    out.push('\n');
    let mut names: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| r.commits.is_some()) {
        if !names.contains(&r.name.as_str()) {
            names.push(&r.name);
        }
    }
    let _ = writeln!(
        out,
        "| job | rounds | × copy loop (median) | min | max |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let mut goals = String::new();
    for name in names {
        let ratios: Vec<f64> = rows
            .iter()
            .filter(|r| r.commits.is_some() && r.name == name)
            .map(|r| r.records_per_s() / baseline_of(rows, r))
            .collect();
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(0.0, f64::max);
        let (count, share) = (ratios.len(), median(ratios));
        let _ = writeln!(
            out,
            "| {name} | {count} | {share:.2} | {min:.2} | {max:.2} |"
        );
        let _ = writeln!(
            goals,
            "- Goal: {name} >= {GOAL_E2E_SHARE_OF_COPY_PCT_MIN:.0} % of the copy loop: {:.0} % (median of {count} rounds), {}.",
            100.0 * share,
            met(100.0 * share >= GOAL_E2E_SHARE_OF_COPY_PCT_MIN)
        );
    }
    let shuffle = shuffle_goal(rows);
    out.push('\n');
    out.push_str(&goals);
    out.push_str(&shuffle);
    out
}

/// The shuffle's cost, when the run has the windowed count both ways: the median ratio of
/// each round's repartitioned to unrepartitioned source records/s.
fn shuffle_goal(rows: &[E2eRow]) -> String {
    let of = |name: &str| -> Vec<&E2eRow> {
        rows.iter()
            .filter(|r| r.commits.is_some() && r.name == name)
            .collect()
    };
    let (plain, shuffled) = (
        of("weir windowed count"),
        of("weir windowed count, repartitioned"),
    );
    let ratios: Vec<f64> = shuffled
        .iter()
        .filter_map(|s| {
            let p = plain.iter().find(|p| p.round == s.round)?;
            Some(s.records_per_s() / p.records_per_s())
        })
        .collect();
    if ratios.is_empty() {
        return String::new();
    }
    let count = ratios.len();
    let share = 100.0 * median(ratios);
    format!(
        "- Goal: a shuffle costs at most {:.0} % of the same job's throughput: the repartitioned windowed count ran at {share:.0} % of the one-stage run's source records/s (median of {count} rounds, each against its own round), {}.\n",
        100.0 - GOAL_SHUFFLE_SHARE_PCT_MIN,
        met(share >= GOAL_SHUFFLE_SHARE_PCT_MIN)
    )
}

/// The recovery table, one row per job.
pub fn recovery(trials: &[RecoveryTrial]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| job | trials | recover ms (median, min–max) | kill → first commit ms (median, min–max) | commits with output | records replayed (median) | state KiB | in a cluster: lease {CLUSTER_LEASE_TIMEOUT_MS} + poll ≤ {CLUSTER_ASSIGNMENT_POLL_MS} + first commit, ms |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut jobs: Vec<_> = trials.iter().map(|t| t.job).collect();
    jobs.dedup();
    for job in jobs {
        let of_job: Vec<&RecoveryTrial> = trials.iter().filter(|t| t.job == job).collect();
        let spread = |f: &dyn Fn(&RecoveryTrial) -> f64| {
            let values: Vec<f64> = of_job.iter().map(|t| f(t)).collect();
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(0.0, f64::max);
            (median(values), min, max)
        };
        let (recover, recover_min, recover_max) = spread(&|t| ms(t.recover));
        let (first, first_min, first_max) = spread(&|t| ms(t.first_commit));
        let (replayed, _, _) = spread(&|t| t.records_replayed as f64);
        let (state, _, _) = spread(&|t| t.state_bytes as f64 / 1024.0);
        let with_output = of_job.iter().filter(|t| t.first_commit_had_output).count();
        let _ = writeln!(
            out,
            "| {} | {} | {recover:.0} ({recover_min:.0}–{recover_max:.0}) | {first:.0} ({first_min:.0}–{first_max:.0}) | {with_output} of {} | {replayed:.0} | {state:.0} | {:.0}–{:.0} |",
            job.name(),
            of_job.len(),
            of_job.len(),
            CLUSTER_LEASE_TIMEOUT_MS as f64 + first,
            (CLUSTER_LEASE_TIMEOUT_MS + CLUSTER_ASSIGNMENT_POLL_MS) as f64 + first,
        );
    }
    out
}

/// Goal: a killed worker's partitions commit output again within this long.
pub const GOAL_CLUSTER_RECOVERY_MS_MAX: f64 = 3_000.0;

/// Recovery in a cluster: one row per kill, then the goal.
pub fn cluster_recovery(trials: &[ClusterTrial]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| trial | killed | partitions | kill → output again, ms (per partition) | slowest ms |"
    );
    let _ = writeln!(out, "| ---: | --- | --- | --- | ---: |");
    let mut slowest_all: f64 = 0.0;
    for (i, trial) in trials.iter().enumerate() {
        let times: Vec<String> = trial
            .recovered
            .iter()
            .map(|(p, d)| format!("p{p}: {:.0}", ms(*d)))
            .collect();
        let slowest = trial
            .recovered
            .iter()
            .map(|(_, d)| ms(*d))
            .fold(0.0, f64::max);
        slowest_all = slowest_all.max(slowest);
        let partitions: Vec<String> = trial.recovered.iter().map(|(p, _)| p.to_string()).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {slowest:.0} |",
            i + 1,
            trial.killed,
            partitions.join(", "),
            times.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\n- Goal: every partition of a killed worker commits output again within {GOAL_CLUSTER_RECOVERY_MS_MAX:.0} ms (default lease): slowest {slowest_all:.0} ms, {}.",
        met(slowest_all < GOAL_CLUSTER_RECOVERY_MS_MAX)
    );
    out
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// The idle-memory table.
pub fn idle(memory: &IdleMemory) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| idle `weir worker` | VmRSS MB | VmHWM MB | threads |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    let row = |out: &mut String, name: &str, m: &Memory| {
        let _ = writeln!(
            out,
            "| {name} | {:.1} | {:.1} | {} |",
            mb(m.rss_kib),
            mb(m.hwm_kib),
            m.threads
        );
    };
    row(&mut out, "registered, nothing assigned", &memory.unassigned);
    row(
        &mut out,
        &format!(
            "{} idle partitions of a stateless job",
            memory.assigned_partitions
        ),
        &memory.assigned,
    );
    out.push('\n');
    let _ = writeln!(
        out,
        "- Goal: an idle worker < {GOAL_IDLE_RSS_MB_MAX:.0} MB resident: {:.1} MB, {}.",
        mb(memory.unassigned.rss_kib),
        met(mb(memory.unassigned.rss_kib) < GOAL_IDLE_RSS_MB_MAX)
    );
    out
}
