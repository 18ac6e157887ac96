//! The interval join's rules one by one, its bounds and its checkpoint form, then a
//! generated check: several upstream tasks of both sides write their repartition records
//! (`shuffled.rs`), interleaved in random orders into a downstream task
//! (`join_downstream.rs`) that crashes and is restored from its snapshot or its local
//! copy, against the pairs computed directly from the admitted events.

use super::changes::StateEntry;
use super::join::{JoinKind, JoinLimits, JoinPlan, JoinSide, JoinState, Joined};
use super::join_codec::{key_value, read_state, restore_key_value, write_state};
use super::join_downstream::JoinDownstream;
use super::limits::{PipelineError, StateLimit};
use super::record::{Outputs, SourceRecord};
use super::shuffled::{encode_side_event, encode_watermark};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

const WITHIN: i64 = 100;

fn plan(kind: JoinKind, lateness: i64) -> JoinPlan {
    JoinPlan {
        within_ms: WITHIN,
        allowed_lateness_ms: lateness,
        kind,
        limits: JoinLimits::default(),
    }
}

fn obj(id: u32, ts: i64) -> Vec<u8> {
    format!(r#"{{"id":{id},"ts":{ts}}}"#).into_bytes()
}

fn texts(out: &[Joined]) -> Vec<String> {
    out.iter()
        .map(|j| format!("{}|{}", j.key, String::from_utf8_lossy(&j.value)))
        .collect()
}

fn pair(key: &str, l: (u32, i64), r: Option<(u32, i64)>) -> String {
    let right = r.map_or("null".to_string(), |(id, ts)| {
        String::from_utf8(obj(id, ts)).unwrap_or_default()
    });
    format!(
        "{key}|{{\"left\":{},\"right\":{right}}}",
        String::from_utf8_lossy(&obj(l.0, l.1))
    )
}

fn event(
    state: &mut JoinState,
    plan: &JoinPlan,
    side: JoinSide,
    key: &str,
    id: u32,
    ts: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    state
        .on_event(plan, side, key, ts, &obj(id, ts), &mut out)
        .unwrap();
    texts(&out)
}

fn watermark(state: &mut JoinState, plan: &JoinPlan, wd: i64) -> Vec<String> {
    let mut out = Vec::new();
    state.on_watermark(plan, wd, &mut out);
    texts(&out)
}

#[test]
fn lateness_is_judged_by_each_sides_own_bound() {
    let p = plan(JoinKind::Inner, 10);
    // Left: late iff ts + within + L <= W.
    assert!(!p.is_late(JoinSide::Left, 0, None));
    assert!(!p.is_late(JoinSide::Left, 0, Some(109)));
    assert!(p.is_late(JoinSide::Left, 0, Some(110)));
    // Right: late iff ts + L <= W.
    assert!(!p.is_late(JoinSide::Right, 0, Some(9)));
    assert!(p.is_late(JoinSide::Right, 0, Some(10)));
    assert!(!p.is_late(JoinSide::Right, i64::MAX, Some(i64::MAX - 1)));
}

#[test]
fn a_pair_is_emitted_once_when_its_second_event_arrives_in_either_order() {
    let p = plan(JoinKind::Inner, 0);
    let mut s = JoinState::default();
    assert!(event(&mut s, &p, JoinSide::Left, "a", 1, 1_000).is_empty());
    assert_eq!(
        event(&mut s, &p, JoinSide::Right, "a", 2, 1_050),
        vec![pair("a", (1, 1_000), Some((2, 1_050)))]
    );
    // Right first, then left.
    let mut s = JoinState::default();
    assert!(event(&mut s, &p, JoinSide::Right, "a", 2, 1_050).is_empty());
    assert_eq!(
        event(&mut s, &p, JoinSide::Left, "a", 1, 1_000),
        vec![pair("a", (1, 1_000), Some((2, 1_050)))]
    );
    // A third event matching both earlier ones of the other side gives two pairs.
    assert_eq!(
        event(&mut s, &p, JoinSide::Left, "a", 3, 990),
        vec![pair("a", (3, 990), Some((2, 1_050)))]
    );
    assert_eq!(
        event(&mut s, &p, JoinSide::Right, "a", 4, 1_010),
        vec![
            pair("a", (1, 1_000), Some((4, 1_010))),
            pair("a", (3, 990), Some((4, 1_010)))
        ]
    );
}

#[test]
fn the_interval_is_closed_at_both_ends_and_keys_must_be_equal() {
    let p = plan(JoinKind::Inner, 0);
    let mut s = JoinState::default();
    event(&mut s, &p, JoinSide::Left, "a", 1, 1_000);
    assert_eq!(event(&mut s, &p, JoinSide::Right, "a", 2, 1_000).len(), 1);
    assert_eq!(event(&mut s, &p, JoinSide::Right, "a", 3, 1_100).len(), 1);
    assert!(event(&mut s, &p, JoinSide::Right, "a", 4, 999).is_empty());
    assert!(event(&mut s, &p, JoinSide::Right, "a", 5, 1_101).is_empty());
    assert!(event(&mut s, &p, JoinSide::Right, "b", 6, 1_000).is_empty());
}

#[test]
fn each_side_is_kept_until_the_watermark_passes_ts_plus_within_plus_lateness() {
    let p = plan(JoinKind::Inner, 5);
    let mut s = JoinState::default();
    event(&mut s, &p, JoinSide::Left, "a", 1, 1_000);
    event(&mut s, &p, JoinSide::Right, "b", 2, 1_050);
    assert!(watermark(&mut s, &p, 1_104).is_empty());
    assert_eq!(s.entries(), 2);
    watermark(&mut s, &p, 1_105);
    assert_eq!(s.entries(), 1, "the left event at 1000 is gone at 1105");
    // The right event still matches a left event that is admitted and early enough.
    assert_eq!(event(&mut s, &p, JoinSide::Left, "b", 3, 1_040).len(), 1);
    watermark(&mut s, &p, 1_144);
    assert_eq!(s.entries(), 2);
    watermark(&mut s, &p, 1_145);
    assert_eq!(s.entries(), 1, "the left event at 1040 is gone at 1145");
    watermark(&mut s, &p, 1_154);
    assert_eq!(s.entries(), 1, "the right event at 1050 stays until 1155");
    watermark(&mut s, &p, 1_155);
    assert_eq!(s.entries(), 0);
    assert_eq!(s.state_bytes(), 0);
}

#[test]
fn a_left_outer_join_emits_the_unmatched_left_events_when_they_leave() {
    let p = plan(JoinKind::LeftOuter, 0);
    let mut s = JoinState::default();
    event(&mut s, &p, JoinSide::Left, "a", 1, 1_000);
    event(&mut s, &p, JoinSide::Left, "b", 2, 1_010);
    event(&mut s, &p, JoinSide::Right, "b", 3, 1_020);
    assert!(watermark(&mut s, &p, 1_099).is_empty());
    assert_eq!(
        watermark(&mut s, &p, 1_200),
        vec![pair("a", (1, 1_000), None)],
        "the matched left event gives nothing more"
    );
    assert_eq!(s.entries(), 0);
    // An inner join emits nothing for it.
    let p = plan(JoinKind::Inner, 0);
    let mut s = JoinState::default();
    event(&mut s, &p, JoinSide::Left, "a", 1, 1_000);
    assert!(watermark(&mut s, &p, 10_000).is_empty());
}

#[test]
fn a_joined_record_carries_the_key_and_the_later_event_time() {
    let p = plan(JoinKind::LeftOuter, 0);
    let mut s = JoinState::default();
    let mut out = Vec::new();
    s.on_event(&p, JoinSide::Left, "k", 10, br#"{"x":1}"#, &mut out)
        .unwrap();
    s.on_event(&p, JoinSide::Right, "k", 60, br#"{"y":[2]}"#, &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key, "k");
    assert_eq!(out[0].event_ms, 60);
    let value: serde_json::Value = serde_json::from_slice(&out[0].value).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"left": {"x": 1}, "right": {"y": [2]}})
    );
    out.clear();
    s.on_event(&p, JoinSide::Left, "j", 20, br#"{"x":2}"#, &mut out)
        .unwrap();
    s.on_watermark(&p, 1_000, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event_ms, 20);
    let value: serde_json::Value = serde_json::from_slice(&out[0].value).unwrap();
    assert_eq!(value, serde_json::json!({"left": {"x": 2}, "right": null}));
}

#[test]
fn reaching_a_limit_stops_with_a_state_limit_and_emits_nothing() {
    let limited = |limits: JoinLimits| JoinPlan {
        limits,
        ..plan(JoinKind::Inner, 0)
    };
    let small = JoinLimits {
        entries_per_partition: 3,
        entries_per_key: 2,
        bytes_per_partition: 1_000_000,
    };
    let p = limited(small);
    let mut s = JoinState::default();
    event(&mut s, &p, JoinSide::Left, "a", 1, 0);
    event(&mut s, &p, JoinSide::Left, "a", 2, 0);
    let mut out = Vec::new();
    assert_eq!(
        s.on_event(&p, JoinSide::Right, "a", 10, &obj(3, 10), &mut out),
        Err(PipelineError::StateLimit(StateLimit::JoinEntriesPerKey))
    );
    assert!(out.is_empty(), "nothing of the refused event is emitted");
    event(&mut s, &p, JoinSide::Left, "b", 4, 0);
    assert_eq!(
        s.on_event(&p, JoinSide::Left, "c", 0, &obj(5, 0), &mut out),
        Err(PipelineError::StateLimit(
            StateLimit::JoinEntriesPerPartition
        ))
    );
    let p = limited(JoinLimits {
        bytes_per_partition: 100,
        ..JoinLimits::default()
    });
    let mut s = JoinState::default();
    assert_eq!(
        s.on_event(&p, JoinSide::Left, "a", 0, &[b'x'; 60], &mut out),
        Err(PipelineError::StateLimit(StateLimit::JoinBytesPerPartition))
    );
    assert_eq!(s.entries(), 0);
}

#[test]
fn the_state_reads_back_as_written_whole_and_key_by_key() {
    let p = plan(JoinKind::LeftOuter, 0);
    let mut s = JoinState::default();
    event(&mut s, &p, JoinSide::Left, "a", 1, 1_000);
    event(&mut s, &p, JoinSide::Right, "a", 2, 1_020);
    event(&mut s, &p, JoinSide::Left, "b", 3, -5_000);
    event(&mut s, &p, JoinSide::Right, "c\u{e9}", 4, 7);
    let mut bytes = Vec::new();
    write_state(&s, &mut bytes);
    bytes.extend_from_slice(b"rest");
    let (restored, rest) = read_state(&p, &bytes).unwrap();
    assert_eq!(rest, b"rest");
    let mut written_again = Vec::new();
    write_state(&restored, &mut written_again);
    assert_eq!(written_again, bytes[..bytes.len() - 4]);
    // The matched flag survives: the restored left event of "a" gives no outer result.
    let mut restored = restored;
    assert_eq!(
        watermark(&mut restored, &p, 100_000),
        vec![pair("b", (3, -5_000), None)]
    );
    // Key by key, from the changed keys.
    let mut rebuilt = JoinState::default();
    for key in s.take_changed_keys() {
        let value = key_value(&s, &key).unwrap();
        restore_key_value(&p, &mut rebuilt, &key, &value).unwrap();
    }
    let mut whole = Vec::new();
    write_state(&rebuilt, &mut whole);
    assert_eq!(whole, bytes[..bytes.len() - 4]);
    assert!(s.take_changed_keys().is_empty());
    // Forgetting a key is a change too, and its value is then gone.
    watermark(&mut s, &p, 100_000);
    assert_eq!(s.take_changed_keys(), vec!["a", "b", "c\u{e9}"]);
    assert_eq!(key_value(&s, "a"), None);
}

#[test]
fn a_state_no_join_could_have_written_is_refused() {
    let p = plan(JoinKind::Inner, 0);
    let mut s = JoinState::default();
    event(&mut s, &p, JoinSide::Left, "a", 1, 1_000);
    event(&mut s, &p, JoinSide::Right, "b", 2, 1_020);
    let mut bytes = Vec::new();
    write_state(&s, &mut bytes);
    for cut in 0..bytes.len() {
        assert!(read_state(&p, &bytes[..cut]).is_err(), "cut at {cut}");
    }
    // Keys out of order: swap "a" and "b".
    let swapped: Vec<u8> = bytes
        .iter()
        .map(|b| match b {
            b'a' => b'b',
            b'b' => b'a',
            other => *other,
        })
        .collect();
    assert!(read_state(&p, &swapped).is_err());
    // A key given twice in the local copy.
    let mut rebuilt = JoinState::default();
    let value = key_value(&s, "a").unwrap();
    restore_key_value(&p, &mut rebuilt, "a", &value).unwrap();
    assert!(restore_key_value(&p, &mut rebuilt, "a", &value).is_err());
    let mut long = value.clone();
    long.push(0);
    assert!(restore_key_value(&p, &mut JoinState::default(), "a", &long).is_err());
    // A state beyond the limits of the plan reading it.
    let strict = JoinPlan {
        limits: JoinLimits {
            entries_per_partition: 1,
            ..JoinLimits::default()
        },
        ..p
    };
    assert!(read_state(&strict, &bytes).is_err());
}

/// One record of an upstream task's log as the downstream reads it.
#[derive(Debug, Clone)]
enum Logged {
    Event {
        side: JoinSide,
        key: String,
        id: u32,
        ts: i64,
    },
    Marker {
        upstream: usize,
        watermark: i64,
    },
}

/// An admitted event, for the expected pairs.
#[derive(Debug, Clone)]
struct Admitted {
    side: JoinSide,
    key: String,
    id: u32,
    ts: i64,
}

const OUT_OF_ORDERNESS: i64 = 30;

/// The logs of `upstreams` upstream tasks (the first half left, the rest right) over
/// generated events, lateness judged upstream, and the admitted events.
fn upstream_logs(
    rng: &mut SmallRng,
    p: &JoinPlan,
    upstreams: usize,
) -> (Vec<Vec<Logged>>, Vec<Admitted>) {
    let mut logs = Vec::new();
    let mut admitted = Vec::new();
    let mut id = 0;
    for upstream in 0..upstreams {
        let side = if upstream < upstreams / 2 {
            JoinSide::Left
        } else {
            JoinSide::Right
        };
        let mut log = Vec::new();
        let mut max_ts: Option<i64> = None;
        // Times on a 10 ms grid, like the bounds, so events meet every bound exactly, some
        // 1 ms off it, so they meet every bound off by one too.
        let mut clock = rng.gen_range(0..5) * 10;
        for _ in 0..rng.gen_range(5..60) {
            clock += rng.gen_range(0..3) * 10;
            let ts = clock - rng.gen_range(0..16) * 10 + [0, 0, 0, 1, -1][rng.gen_range(0..5)];
            let key = format!("k{}", rng.gen_range(0..3));
            id += 1;
            let before = max_ts.map(|m| m - OUT_OF_ORDERNESS);
            if !p.is_late(side, ts, before) {
                log.push(Logged::Event {
                    side,
                    key: key.clone(),
                    id,
                    ts,
                });
                admitted.push(Admitted { side, key, id, ts });
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

/// The repartition record of `logged`, at `offset`, as an upstream task writes it.
fn shuffled_record(logged: &Logged, offset: i64) -> SourceRecord {
    let (key, value) = match logged {
        Logged::Event { side, key, id, ts } => (
            Some(key.as_bytes().to_vec()),
            encode_side_event(*side, *ts, None, 0, i64::from(*id), &obj(*id, *ts)),
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

/// Runs `records` through a downstream task (the first half of the upstreams left, the
/// rest right), crashing after each index in `crashes`: the task is restored from its
/// snapshot, or from the local copy kept from its changes, in turn.
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
        let header = changes.header;
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
                JoinDownstream::restore_entries(*p, left, right, &header, &entries).unwrap()
            };
        }
    }
    let mut results: Vec<String> = out
        .records
        .iter()
        .map(|r| {
            format!(
                "{}|{}",
                r.key.as_deref().unwrap_or_default(),
                String::from_utf8_lossy(&r.value)
            )
        })
        .collect();
    results.sort();
    (results, task.watermark())
}

/// The results computed from the admitted events alone.
fn expected(p: &JoinPlan, admitted: &[Admitted], final_wd: Option<i64>) -> Vec<String> {
    let mut results = Vec::new();
    for l in admitted.iter().filter(|e| e.side == JoinSide::Left) {
        let mut matched = false;
        for r in admitted.iter().filter(|e| e.side == JoinSide::Right) {
            if l.key == r.key && l.ts <= r.ts && r.ts <= l.ts + WITHIN {
                matched = true;
                results.push(pair(&l.key, (l.id, l.ts), Some((r.id, r.ts))));
            }
        }
        let due = l.ts + WITHIN + p.allowed_lateness_ms;
        if p.kind == JoinKind::LeftOuter && !matched && final_wd.is_some_and(|wd| wd >= due) {
            results.push(pair(&l.key, (l.id, l.ts), None));
        }
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
        let kind = if seed % 2 == 0 {
            JoinKind::Inner
        } else {
            JoinKind::LeftOuter
        };
        let p = plan(kind, rng.gen_range(0..3) * 10);
        let upstreams = 2 * rng.gen_range(1..3);
        let (logs, admitted) = upstream_logs(&mut rng, &p, upstreams);
        let records = interleave(&mut rng, &logs);
        let crashes: Vec<usize> = (0..records.len())
            .filter(|_| rng.gen_bool(crash_probability))
            .collect();
        let (got, final_wd) = run_downstream(&p, upstreams, &records, &crashes);
        let want = expected(&p, &admitted, final_wd);
        results += want.len();
        if got != want {
            mismatches += 1;
        }
    }
    (mismatches, results)
}

#[test]
fn any_interleaving_of_the_upstream_logs_gives_the_pairs_of_the_admitted_events() {
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
fn join_state_left_out_of_the_snapshot_is_caught() {
    use weir_core::bugs::{plant, PlantedBug};
    plant(Some(PlantedBug::JoinStateNotInSnapshot));
    let (mismatches, _) = generated_runs(0.1);
    plant(None);
    assert!(mismatches > 0, "the planted bug went unnoticed");
}

#[test]
fn the_downstream_watermark_waits_for_every_upstream_of_both_sides() {
    let p = plan(JoinKind::LeftOuter, 0);
    let mut task = JoinDownstream::new(p, 1, 2);
    let mut out = Outputs::new();
    let mut offset = 0;
    let mut feed = |task: &mut JoinDownstream, logged: Logged, out: &mut Outputs| {
        offset += 1;
        task.process(&shuffled_record(&logged, offset), out)
    };
    let left = Logged::Event {
        side: JoinSide::Left,
        key: "a".into(),
        id: 1,
        ts: 0,
    };
    feed(&mut task, left, &mut out).unwrap();
    for upstream in 0..2 {
        let marker = Logged::Marker {
            upstream,
            watermark: 1_000,
        };
        feed(&mut task, marker, &mut out).unwrap();
    }
    assert_eq!(
        task.watermark(),
        None,
        "the second right upstream has said nothing"
    );
    assert!(out.records.is_empty());
    let last = Logged::Marker {
        upstream: 2,
        watermark: 500,
    };
    feed(&mut task, last, &mut out).unwrap();
    assert_eq!(task.watermark(), Some(500));
    assert_eq!(out.records.len(), 1, "the unmatched left event is out");
    assert_eq!(out.records[0].key.as_deref(), Some("a"));
    // A marker beyond both sides' upstreams, an event without a key: corruption.
    let beyond = Logged::Marker {
        upstream: 3,
        watermark: 1,
    };
    assert!(matches!(
        feed(&mut task, beyond, &mut out),
        Err(PipelineError::CorruptRepartitionRecord(_))
    ));
    let mut keyless = shuffled_record(
        &Logged::Event {
            side: JoinSide::Right,
            key: "a".into(),
            id: 2,
            ts: 0,
        },
        9,
    );
    keyless.key = None;
    assert!(task.process(&keyless, &mut out).is_err());
    // A snapshot restores only into a task with the same upstreams.
    let snapshot = task.snapshot();
    let restored = JoinDownstream::restore(p, 1, 2, &snapshot).unwrap();
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored.watermark(), Some(500));
    assert!(JoinDownstream::restore(p, 2, 2, &snapshot).is_err());
    assert!(JoinDownstream::restore(p, 1, 2, &snapshot[1..]).is_err());
}
