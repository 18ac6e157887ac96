//! The temporal join's rules one by one (versions, ties, deletions, outer results,
//! firing, pruning, limits, its checkpoint form), then a generated check: upstream tasks
//! of both sides write their repartition records, interleaved in random orders into a
//! downstream task that crashes and is restored from its snapshot or its local copy,
//! against the results computed directly from the admitted events.

use super::changes::StateEntry;
use super::join::{JoinKind, JoinLimits, JoinPlan, JoinSide, Joined};
use super::join_downstream::JoinDownstream;
use super::limits::{PipelineError, StateLimit};
use super::record::{Outputs, SourceRecord};
use super::shuffled::{encode_side_event, encode_watermark};
use super::temporal::TemporalState;
use super::temporal_codec::{key_value, read_state, restore_key_value, write_state};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn plan(kind: JoinKind, lateness: i64) -> JoinPlan {
    JoinPlan {
        within_ms: 0,
        allowed_lateness_ms: lateness,
        kind,
        limits: JoinLimits::default(),
    }
}

fn texts(out: &[Joined]) -> Vec<String> {
    out.iter()
        .map(|j| {
            format!(
                "{}@{}|{}",
                j.key,
                j.event_ms,
                String::from_utf8_lossy(&j.value)
            )
        })
        .collect()
}

fn left(
    state: &mut TemporalState,
    p: &JoinPlan,
    key: &str,
    ts: i64,
    wr: Option<i64>,
) -> Vec<String> {
    let mut out = Vec::new();
    let object = format!(r#"{{"pay":{ts}}}"#);
    state
        .on_left(p, key, ts, object.as_bytes(), wr, &mut out)
        .unwrap();
    texts(&out)
}

fn right(state: &mut TemporalState, p: &JoinPlan, key: &str, ts: i64, object: &str) {
    state.on_right(p, key, ts, object.as_bytes()).unwrap();
}

fn marks(state: &mut TemporalState, p: &JoinPlan, wr: i64, wd: i64) -> Vec<String> {
    let mut out = Vec::new();
    state.on_watermarks(p, Some(wr), Some(wd), &mut out);
    texts(&out)
}

#[test]
fn a_left_event_gets_the_version_valid_at_its_time_once_the_right_watermark_passed_it() {
    let p = plan(JoinKind::Temporal, 0);
    let mut s = TemporalState::default();
    right(&mut s, &p, "m", 10, r#"{"tier":"low"}"#);
    right(&mut s, &p, "m", 30, r#"{"tier":"high"}"#);
    assert!(left(&mut s, &p, "m", 20, None).is_empty(), "waits for Wr");
    assert!(left(&mut s, &p, "m", 5, Some(4)).is_empty(), "Wr below it");
    assert!(left(&mut s, &p, "m", 30, Some(19)).is_empty());
    // A version at 15 arrives before Wr passes 20: it is the one valid at 20.
    right(&mut s, &p, "m", 15, r#"{"tier":"mid"}"#);
    // Inner: the event at 5 has no version and gives nothing.
    assert_eq!(
        marks(&mut s, &p, 20, 0),
        [r#"m@20|{"left":{"pay":20},"right":{"tier":"mid"}}"#]
    );
    // A left event the right watermark already passed is joined at once; the version
    // at exactly its time counts.
    assert_eq!(
        left(&mut s, &p, "m", 10, Some(100)),
        [r#"m@10|{"left":{"pay":10},"right":{"tier":"low"}}"#]
    );
    assert_eq!(
        marks(&mut s, &p, 30, 0),
        [r#"m@30|{"left":{"pay":30},"right":{"tier":"high"}}"#]
    );
    assert!(left(&mut s, &p, "other", 50, Some(100)).is_empty());
}

#[test]
fn a_left_outer_temporal_join_emits_null_without_a_version_or_after_a_deletion() {
    let p = plan(JoinKind::TemporalLeftOuter, 0);
    let mut s = TemporalState::default();
    right(&mut s, &p, "m", 10, r#"{"tier":"low"}"#);
    right(&mut s, &p, "m", 20, r#"{"tier":"low","deleted":true}"#);
    right(&mut s, &p, "m", 30, r#"{"tier":"high"}"#);
    for ts in [5, 10, 25, 35] {
        assert!(left(&mut s, &p, "m", ts, None).is_empty());
    }
    assert_eq!(
        marks(&mut s, &p, 100, 0),
        [
            r#"m@5|{"left":{"pay":5},"right":null}"#,
            r#"m@10|{"left":{"pay":10},"right":{"tier":"low"}}"#,
            r#"m@25|{"left":{"pay":25},"right":null}"#,
            r#"m@35|{"left":{"pay":35},"right":{"tier":"high"}}"#,
        ]
    );
    // `deleted` must be the literal true.
    right(&mut s, &p, "n", 10, r#"{"deleted":"true"}"#);
    assert_eq!(
        left(&mut s, &p, "n", 10, Some(100)),
        [r#"n@10|{"left":{"pay":10},"right":{"deleted":"true"}}"#]
    );
}

#[test]
fn of_two_versions_at_one_time_the_greater_object_wins_in_either_order() {
    let p = plan(JoinKind::Temporal, 0);
    for order in [["a", "b"], ["b", "a"]] {
        let mut s = TemporalState::default();
        for tier in order {
            right(&mut s, &p, "m", 10, &format!(r#"{{"tier":"{tier}"}}"#));
        }
        assert_eq!(s.entries(), 1);
        assert_eq!(
            left(&mut s, &p, "m", 10, Some(10)),
            [r#"m@10|{"left":{"pay":10},"right":{"tier":"b"}}"#]
        );
    }
}

#[test]
fn the_lateness_delays_firing_and_pruning_alike() {
    let p = plan(JoinKind::TemporalLeftOuter, 5);
    let mut s = TemporalState::default();
    right(&mut s, &p, "m", 10, r#"{"v":1}"#);
    assert!(
        left(&mut s, &p, "m", 12, Some(16)).is_empty(),
        "12 + 5 > 16"
    );
    assert!(marks(&mut s, &p, 16, 16).is_empty());
    assert_eq!(marks(&mut s, &p, 17, 16).len(), 1);
}

#[test]
fn versions_no_left_event_can_reach_are_pruned_keeping_the_newest() {
    let p = plan(JoinKind::Temporal, 0);
    let mut s = TemporalState::default();
    for (ts, v) in [(10, 1), (20, 2), (30, 3)] {
        right(&mut s, &p, "m", ts, &format!(r#"{{"v":{v}}}"#));
    }
    marks(&mut s, &p, 100, 19);
    assert_eq!(s.entries(), 3, "nothing at or before 19 is superseded");
    marks(&mut s, &p, 100, 20);
    assert_eq!(
        s.entries(),
        2,
        "the version at 10 is superseded by the one at 20"
    );
    marks(&mut s, &p, 100, 1_000);
    assert_eq!(s.entries(), 1, "the newest version stays");
    assert_eq!(
        left(&mut s, &p, "m", 1_001, Some(2_000)),
        [r#"m@1001|{"left":{"pay":1001},"right":{"v":3}}"#]
    );
    // A deleted key goes whole once its deletion is passed, but not while a left event
    // of it waits.
    right(&mut s, &p, "d", 40, r#"{"deleted":true}"#);
    left(&mut s, &p, "d", 2_000, Some(1_000));
    marks(&mut s, &p, 1_000, 1_000);
    assert_eq!(
        s.entries(),
        2,
        "the waiting left event and nothing of d's versions"
    );
    marks(&mut s, &p, 2_000, 2_000);
    assert_eq!(s.entries(), 1);
    assert_eq!(s.keys().map(|(k, _)| k).collect::<Vec<_>>(), ["m"]);
}

#[test]
fn a_full_key_partition_or_byte_budget_stops_the_partition() {
    let mut p = plan(JoinKind::Temporal, 0);
    p.limits = JoinLimits {
        entries_per_partition: 3,
        entries_per_key: 2,
        bytes_per_partition: 1 << 20,
    };
    let mut s = TemporalState::default();
    right(&mut s, &p, "a", 1, "{}");
    left(&mut s, &p, "a", 2, None);
    let err = s.on_right(&p, "a", 3, b"{}").unwrap_err();
    assert_eq!(
        err,
        PipelineError::StateLimit(StateLimit::JoinEntriesPerKey)
    );
    right(&mut s, &p, "b", 1, "{}");
    let mut out = Vec::new();
    let err = s.on_left(&p, "c", 1, b"{}", None, &mut out).unwrap_err();
    assert_eq!(
        err,
        PipelineError::StateLimit(StateLimit::JoinEntriesPerPartition)
    );
    p.limits.bytes_per_partition = 10;
    let err = TemporalState::default()
        .on_right(&p, "a", 1, b"{}")
        .unwrap_err();
    assert_eq!(
        err,
        PipelineError::StateLimit(StateLimit::JoinBytesPerPartition)
    );
}

#[test]
fn the_state_reads_back_whole_or_key_by_key_and_refuses_what_no_join_wrote() {
    let p = plan(JoinKind::TemporalLeftOuter, 0);
    let mut s = TemporalState::default();
    right(&mut s, &p, "a", 10, r#"{"v":1}"#);
    right(&mut s, &p, "a", 20, r#"{"deleted":true}"#);
    left(&mut s, &p, "b", 5, None);
    let mut bytes = Vec::new();
    write_state(&s, &mut bytes);
    let (read, rest) = read_state(&p, &bytes).unwrap();
    assert!(rest.is_empty());
    let mut rebuilt = TemporalState::default();
    for key in ["a", "b"] {
        let value = key_value(&s, key).unwrap();
        restore_key_value(&p, &mut rebuilt, key, &value).unwrap();
    }
    for mut restored in [read, rebuilt] {
        let mut out = Vec::new();
        restored.on_watermarks(&p, Some(100), Some(100), &mut out);
        assert_eq!(texts(&out), [r#"b@5|{"left":{"pay":5},"right":null}"#]);
        assert_eq!(
            restored.entries(),
            0,
            "a's deletion is passed: a goes whole"
        );
    }
    assert!(key_value(&s, "none").is_none());
    assert!(read_state(&p, &bytes[..bytes.len() - 1]).is_err());
    let value = key_value(&s, "a").unwrap();
    assert!(
        restore_key_value(&p, &mut s.clone(), "a", &value).is_err(),
        "twice"
    );
    // Versions out of order.
    let mut swapped = Vec::new();
    swapped.extend_from_slice(&2u32.to_le_bytes());
    for ts in [20i64, 10] {
        swapped.extend_from_slice(&ts.to_le_bytes());
        swapped.extend_from_slice(&2u32.to_le_bytes());
        swapped.extend_from_slice(b"{}");
    }
    swapped.extend_from_slice(&0u32.to_le_bytes());
    let err = restore_key_value(&p, &mut TemporalState::default(), "a", &swapped);
    assert!(err.is_err());
    let empty = [0u8; 8];
    assert!(restore_key_value(&p, &mut TemporalState::default(), "a", &empty).is_err());
}

/// An upstream task's repartition record, as the generated runs log it.
#[derive(Debug, Clone)]
enum Logged {
    Event {
        side: JoinSide,
        key: String,
        ts: i64,
        object: String,
    },
    Marker {
        upstream: usize,
        watermark: i64,
    },
}

/// An admitted event.
#[derive(Debug, Clone)]
struct Admitted {
    side: JoinSide,
    key: String,
    ts: i64,
    object: String,
}

const OUT_OF_ORDERNESS: i64 = 30;

/// The logs of `upstreams` upstream tasks (the first half left, the rest right), lateness
/// judged upstream (`ts + L <= W_u`), and the admitted events.
fn upstream_logs(
    rng: &mut SmallRng,
    p: &JoinPlan,
    upstreams: usize,
) -> (Vec<Vec<Logged>>, Vec<Admitted>) {
    let mut logs = Vec::new();
    let mut admitted = Vec::new();
    let mut id = 0;
    for upstream in 0..upstreams {
        let side = match upstream < upstreams / 2 {
            true => JoinSide::Left,
            false => JoinSide::Right,
        };
        let mut log = Vec::new();
        let mut max_ts: Option<i64> = None;
        let mut clock = rng.gen_range(0..5) * 10;
        for _ in 0..rng.gen_range(5..60) {
            clock += rng.gen_range(0..3) * 10;
            let ts = clock - rng.gen_range(0..16) * 10 + [0, 0, 1, -1][rng.gen_range(0..4)];
            let key = format!("k{}", rng.gen_range(0..3));
            id += 1;
            // Right objects: a tier (few values, so ties at one time differ or not), now
            // and then a deletion.
            let object = match (side, rng.gen_range(0..6)) {
                (JoinSide::Left, _) => format!(r#"{{"id":{id}}}"#),
                (JoinSide::Right, 0) => r#"{"deleted":true}"#.to_string(),
                (JoinSide::Right, tier) => format!(r#"{{"tier":{tier}}}"#),
            };
            let late = max_ts.is_some_and(|m| ts + p.allowed_lateness_ms <= m - OUT_OF_ORDERNESS);
            if !late {
                log.push(Logged::Event {
                    side,
                    key: key.clone(),
                    ts,
                    object: object.clone(),
                });
                admitted.push(Admitted {
                    side,
                    key,
                    ts,
                    object,
                });
            }
            max_ts = Some(max_ts.map_or(ts, |m| m.max(ts)));
            if rng.gen_bool(0.3) {
                if let Some(m) = max_ts {
                    log.push(Logged::Marker {
                        upstream,
                        watermark: m - OUT_OF_ORDERNESS,
                    });
                }
            }
        }
        if let Some(m) = max_ts {
            log.push(Logged::Marker {
                upstream,
                watermark: m - OUT_OF_ORDERNESS,
            });
        }
        logs.push(log);
    }
    (logs, admitted)
}

/// The logs interleaved in a random order that keeps each log's own order.
fn interleave(rng: &mut SmallRng, logs: &[Vec<Logged>]) -> Vec<Logged> {
    let mut next = vec![0; logs.len()];
    let mut merged = Vec::new();
    loop {
        let open: Vec<usize> = (0..logs.len())
            .filter(|&u| next[u] < logs[u].len())
            .collect();
        if open.is_empty() {
            return merged;
        }
        let u = open[rng.gen_range(0..open.len())];
        merged.push(logs[u][next[u]].clone());
        next[u] += 1;
    }
}

fn shuffled_record(logged: &Logged, offset: i64) -> SourceRecord {
    let (key, value) = match logged {
        Logged::Event {
            side,
            key,
            ts,
            object,
        } => (
            Some(key.as_bytes().to_vec()),
            encode_side_event(*side, *ts, None, 0, offset, object.as_bytes()),
        ),
        Logged::Marker {
            upstream,
            watermark,
        } => (None, encode_watermark(*upstream as u32, *watermark)),
    };
    SourceRecord {
        topic: "weir-job-1-repartition-1".into(),
        partition: 0,
        offset,
        timestamp_ms: None,
        key,
        value: Some(value),
    }
}

/// Runs `records` through a downstream task, crashing after each index in `crashes`
/// (restored from its snapshot or its local copy in turn); its sorted results and final
/// right watermark.
fn run_downstream(
    p: &JoinPlan,
    upstreams: usize,
    records: &[Logged],
    crashes: &[usize],
) -> (Vec<String>, Option<i64>) {
    let (left, right) = ((upstreams / 2) as u32, (upstreams - upstreams / 2) as u32);
    let mut task = JoinDownstream::new(*p, left, right);
    let mut local: BTreeMap<String, StateEntry> = BTreeMap::new();
    let mut out = Outputs::new();
    for (index, logged) in records.iter().enumerate() {
        task.process(&shuffled_record(logged, index as i64), &mut out)
            .unwrap();
        let changes = task.take_changes();
        if changes.full {
            local.clear();
        }
        for entry in changes.entries {
            match entry.value {
                Some(_) => local.insert(entry.key.clone(), entry),
                None => local.remove(&entry.key),
            };
        }
        if let Some(crash) = crashes.iter().position(|&c| c == index) {
            task = if crash % 2 == 0 {
                JoinDownstream::restore(*p, left, right, &task.snapshot()).unwrap()
            } else {
                let entries: Vec<StateEntry> = local.values().cloned().collect();
                JoinDownstream::restore_entries(*p, left, right, &changes.header, &entries).unwrap()
            };
        }
    }
    let mut results: Vec<String> = out
        .records
        .iter()
        .map(|r| {
            let key = r.key.as_deref().unwrap_or_default();
            format!("{key}|{}", String::from_utf8_lossy(&r.value))
        })
        .collect();
    results.sort();
    (results, task.right_watermark())
}

/// The results computed from the admitted events alone, by the stated rules.
fn expected(p: &JoinPlan, admitted: &[Admitted], final_wr: Option<i64>) -> Vec<String> {
    let mut results = Vec::new();
    let fired = admitted.iter().filter(|e| {
        e.side == JoinSide::Left && final_wr.is_some_and(|w| e.ts + p.allowed_lateness_ms <= w)
    });
    for l in fired {
        // The greatest time <= l.ts; at that time the greatest object.
        let version = admitted
            .iter()
            .filter(|r| r.side == JoinSide::Right && r.key == l.key && r.ts <= l.ts)
            .max_by(|a, b| (a.ts, a.object.as_bytes()).cmp(&(b.ts, b.object.as_bytes())))
            .filter(|r| r.object != r#"{"deleted":true}"#);
        let right = match (version, p.kind) {
            (Some(r), _) => r.object.clone(),
            (None, JoinKind::TemporalLeftOuter) => "null".to_string(),
            (None, _) => continue,
        };
        results.push(format!(
            "{}|{{\"left\":{},\"right\":{right}}}",
            l.key, l.object
        ));
    }
    results.sort();
    results
}

/// Over 300 generated runs: how many gave other results than expected, and how many
/// results were expected in all.
fn generated_runs(crash_probability: f64) -> (usize, usize) {
    let mut mismatches = 0;
    let mut results = 0;
    for seed in 0..300u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let kind = match seed % 2 {
            0 => JoinKind::Temporal,
            _ => JoinKind::TemporalLeftOuter,
        };
        let p = plan(kind, rng.gen_range(0..3) * 10);
        let upstreams = 2 * rng.gen_range(1..3);
        let (logs, admitted) = upstream_logs(&mut rng, &p, upstreams);
        let records = interleave(&mut rng, &logs);
        let crashes: Vec<usize> = (0..records.len())
            .filter(|_| rng.gen_bool(crash_probability))
            .collect();
        let (got, final_wr) = run_downstream(&p, upstreams, &records, &crashes);
        let want = expected(&p, &admitted, final_wr);
        results += want.len();
        if got != want {
            mismatches += 1;
        }
    }
    (mismatches, results)
}

#[test]
fn any_interleaving_of_the_upstream_logs_gives_the_versions_valid_at_each_left_event() {
    let (mismatches, results) = generated_runs(0.0);
    assert_eq!(mismatches, 0);
    assert!(results > 1_000, "the runs join something: {results}");
}

#[test]
fn a_crash_restored_from_the_snapshot_or_the_local_copy_changes_no_result() {
    assert_eq!(generated_runs(0.1).0, 0);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn the_planted_bugs_of_the_temporal_join_are_caught() {
    use weir_core::bugs::{plant, PlantedBug};
    for (bug, crashes) in [
        (PlantedBug::JoinStateNotInSnapshot, 0.1),
        (PlantedBug::TemporalJoinUsesLatest, 0.0),
    ] {
        plant(Some(bug));
        let (mismatches, _) = generated_runs(crashes);
        plant(None);
        assert!(mismatches > 0, "{bug:?} went unnoticed");
    }
}

#[test]
fn the_right_watermark_waits_for_every_right_upstream_only() {
    let p = plan(JoinKind::TemporalLeftOuter, 0);
    let mut task = JoinDownstream::new(p, 1, 2);
    let mut out = Outputs::new();
    let left = Logged::Event {
        side: JoinSide::Left,
        key: "a".into(),
        ts: 0,
        object: "{}".into(),
    };
    task.process(&shuffled_record(&left, 0), &mut out).unwrap();
    for (offset, upstream) in [(1, 1), (2, 2)] {
        let marker = Logged::Marker {
            upstream,
            watermark: 10,
        };
        task.process(&shuffled_record(&marker, offset), &mut out)
            .unwrap();
    }
    assert_eq!(task.right_watermark(), Some(10));
    assert_eq!(task.watermark(), None, "the left upstream said nothing yet");
    assert_eq!(out.records.len(), 1, "fired by the right watermark alone");
    let snapshot = task.snapshot();
    let restored = JoinDownstream::restore(p, 1, 2, &snapshot).unwrap();
    assert_eq!(restored.snapshot(), snapshot);
    // An interval join's plan does not read a temporal join's state, nor the reverse,
    // unless both happen to be empty.
    let interval = plan(JoinKind::LeftOuter, 0);
    let mut with_state = JoinDownstream::new(p, 1, 2);
    let right = Logged::Event {
        side: JoinSide::Right,
        key: "a".into(),
        ts: 0,
        object: r#"{"v":1}"#.into(),
    };
    with_state
        .process(&shuffled_record(&right, 0), &mut out)
        .unwrap();
    let restored = JoinDownstream::restore(interval, 1, 2, &with_state.snapshot());
    assert!(restored.map_or(true, |r| r.snapshot() != with_state.snapshot()));
}
