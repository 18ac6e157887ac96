//! Both stages of a join, at the operator level: the upstream tasks of each side
//! (`Pipeline::compile_join_upstream`) over generated source partitions, their
//! repartition records routed by key and followed by watermark markers at each commit,
//! and the downstream tasks (`JoinDownstream`). Tasks of both stages run in a random
//! order, one batch at a time, and crash at random: a crashed task loses what it produced
//! since its last commit and restarts from that commit's snapshot, as the exactly-once
//! runner does. The committed results and dead letters must be what the events give,
//! computed here directly from the source records.

use super::join::JoinPlan;
use super::join_downstream::JoinDownstream;
use super::record::{DeadLetterReason, Outputs, SourceRecord};
use super::shuffled::{encode_watermark, JoinSide};
use super::Pipeline;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use weir_core::routing::partition_for_key;
use weir_core::spec::{parse_job_spec, JobSpec, Join};

const LEFT_PARTITIONS: u32 = 2;
const RIGHT_PARTITIONS: u32 = 3;
const DOWNSTREAM: u32 = 2;
const OUT_OF_ORDERNESS: i64 = 20;
const WITHIN: i64 = 100;
const LATENESS: i64 = 10;

fn join(kind: &str) -> Join {
    serde_json::from_value(serde_json::json!({
        "with": { "topic": "captures", "event_time": "ts", "max_out_of_orderness": "20ms" },
        "left_key": "payment_id",
        "right_key": "payment_id",
        "within": "100ms",
        "kind": kind,
        "allowed_lateness": "10ms",
    }))
    .unwrap()
}

/// The left side's upstream: the job's stages before the join, then the key.
fn left_spec() -> JobSpec {
    parse_job_spec(
        b"name: j\nsource: { topic: authorizations, event_time: ts, max_out_of_orderness: 20ms }\n\
          pipeline:\n  - filter: \"amount > 0\"\n  - key_by: \"payment_id\"\nsink: { topic: matched }\n",
    )
    .unwrap()
}

/// The right side's upstream: its source, then the key.
fn right_spec() -> JobSpec {
    parse_job_spec(
        b"name: j\nsource: { topic: captures, event_time: ts, max_out_of_orderness: 20ms }\n\
          pipeline:\n  - key_by: \"payment_id\"\nsink: { topic: matched }\n",
    )
    .unwrap()
}

/// Generated source partitions: `(side, partition, records)`.
fn sources(rng: &mut SmallRng) -> Vec<(JoinSide, u32, Vec<SourceRecord>)> {
    let mut id = 0;
    let mut out = Vec::new();
    let sides = (0..LEFT_PARTITIONS)
        .map(|p| (JoinSide::Left, p))
        .chain((0..RIGHT_PARTITIONS).map(|p| (JoinSide::Right, p)));
    for (side, partition) in sides {
        let topic = match side {
            JoinSide::Left => "authorizations",
            JoinSide::Right => "captures",
        };
        let mut clock = rng.gen_range(0..5) * 10;
        let mut records = Vec::new();
        for offset in 0..rng.gen_range(0..50) {
            clock += rng.gen_range(0..3) * 10;
            let ts = clock - rng.gen_range(0..16) * 10 + [0, 0, 0, 1, -1][rng.gen_range(0..5)];
            id += 1;
            let key = format!("p{}", rng.gen_range(0..4));
            let value = match rng.gen_range(0..40) {
                0 => "not json".to_string(),
                1 => format!(r#"{{"id":{id},"ts":{ts},"amount":5}}"#),
                2 => format!(r#"{{"id":{id},"ts":{ts},"amount":0,"payment_id":"{key}"}}"#),
                _ => format!(r#"{{"id":{id},"ts":{ts},"amount":5,"payment_id":"{key}"}}"#),
            };
            records.push(SourceRecord {
                topic: topic.into(),
                partition: partition as i32,
                offset,
                timestamp_ms: None,
                key: None,
                value: Some(value.into_bytes()),
            });
        }
        out.push((side, partition, records));
    }
    out
}

struct Upstream {
    side: JoinSide,
    /// Its index in the downstream's markers.
    global: u32,
    records: Vec<SourceRecord>,
    pipeline: Pipeline,
    committed_snapshot: Vec<u8>,
    committed_offset: usize,
    last_marker: Option<i64>,
}

struct Downstream {
    task: JoinDownstream,
    committed_snapshot: Vec<u8>,
    committed_offset: usize,
}

/// What a run committed: results as (left id, right id) and dead letters as
/// (reason, topic, partition, offset).
type Committed = (Vec<(i64, Option<i64>)>, Vec<(String, String, i32, i64)>);

fn run(seed: u64, kind: &str) -> (Committed, Committed) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let join = join(kind);
    let plan = JoinPlan::from_spec(&join);
    let sources = sources(&mut rng);
    let expected = expected(&plan, &sources);
    let mut upstreams: Vec<Upstream> = sources
        .into_iter()
        .map(|(side, partition, records)| {
            let spec = match side {
                JoinSide::Left => left_spec(),
                JoinSide::Right => right_spec(),
            };
            let pipeline = Pipeline::compile_join_upstream(&spec, side, &join).unwrap();
            Upstream {
                side,
                global: match side {
                    JoinSide::Left => partition,
                    JoinSide::Right => LEFT_PARTITIONS + partition,
                },
                records,
                committed_snapshot: pipeline.snapshot(),
                pipeline,
                committed_offset: 0,
                last_marker: None,
            }
        })
        .collect();
    let mut logs: Vec<Vec<SourceRecord>> = vec![Vec::new(); DOWNSTREAM as usize];
    let mut downstreams: Vec<Downstream> = (0..DOWNSTREAM)
        .map(|_| {
            let task = JoinDownstream::new(plan, LEFT_PARTITIONS, RIGHT_PARTITIONS);
            Downstream {
                committed_snapshot: task.snapshot(),
                task,
                committed_offset: 0,
            }
        })
        .collect();
    let mut results = Vec::new();
    let mut dead_letters = Vec::new();
    loop {
        let mut ready: Vec<(bool, usize)> = Vec::new();
        for (i, up) in upstreams.iter().enumerate() {
            if up.committed_offset < up.records.len() {
                ready.push((true, i));
            }
        }
        for (i, down) in downstreams.iter().enumerate() {
            if down.committed_offset < logs[i].len() {
                ready.push((false, i));
            }
        }
        if ready.is_empty() {
            break;
        }
        let (is_upstream, i) = ready[rng.gen_range(0..ready.len())];
        let batch = rng.gen_range(1..6);
        let crash = rng.gen_bool(0.2);
        if is_upstream {
            let up = &mut upstreams[i];
            let end = (up.committed_offset + batch).min(up.records.len());
            let mut out = Outputs::new();
            up.pipeline
                .process_batch(&up.records[up.committed_offset..end], &mut out)
                .unwrap();
            if crash {
                let spec = match up.side {
                    JoinSide::Left => left_spec(),
                    JoinSide::Right => right_spec(),
                };
                up.pipeline =
                    Pipeline::restore_join_upstream(&spec, up.side, &join, &up.committed_snapshot)
                        .unwrap();
                continue;
            }
            for record in out.records {
                let key = record.key.clone().unwrap_or_default();
                let partition = partition_for_key(key.as_bytes(), DOWNSTREAM) as usize;
                let log = &mut logs[partition];
                log.push(SourceRecord {
                    topic: "weir-job-1-repartition-1".into(),
                    partition: partition as i32,
                    offset: log.len() as i64,
                    timestamp_ms: None,
                    key: Some(key.into_bytes()),
                    value: Some(record.value),
                });
            }
            let watermark = up.pipeline.watermark_ms();
            if let Some(ms) = watermark.filter(|&ms| up.last_marker.is_none_or(|last| ms > last)) {
                for (partition, log) in logs.iter_mut().enumerate() {
                    log.push(SourceRecord {
                        topic: "weir-job-1-repartition-1".into(),
                        partition: partition as i32,
                        offset: log.len() as i64,
                        timestamp_ms: None,
                        key: None,
                        value: Some(encode_watermark(up.global, ms)),
                    });
                }
                up.last_marker = Some(ms);
            }
            for dl in out.dead_letters {
                dead_letters.push((
                    dl.reason.as_str().to_string(),
                    dl.topic,
                    dl.partition,
                    dl.offset,
                ));
            }
            up.committed_offset = end;
            up.committed_snapshot = up.pipeline.snapshot();
        } else {
            let down = &mut downstreams[i];
            let end = (down.committed_offset + batch).min(logs[i].len());
            let mut out = Outputs::new();
            for record in &logs[i][down.committed_offset..end] {
                down.task.process(record, &mut out).unwrap();
            }
            if crash {
                down.task = JoinDownstream::restore(
                    plan,
                    LEFT_PARTITIONS,
                    RIGHT_PARTITIONS,
                    &down.committed_snapshot,
                )
                .unwrap();
                continue;
            }
            for record in out.records {
                let value: Value = serde_json::from_slice(&record.value).unwrap();
                assert_eq!(
                    record.key.as_deref(),
                    value["left"]["payment_id"].as_str(),
                    "a result is keyed by its join key"
                );
                results.push((
                    value["left"]["id"].as_i64().unwrap_or(-1),
                    value["right"]["id"].as_i64(),
                ));
            }
            down.committed_offset = end;
            down.committed_snapshot = down.task.snapshot();
        }
    }
    results.sort();
    dead_letters.sort();
    ((results, dead_letters), expected)
}

/// What the source records give, from the rules alone.
fn expected(plan: &JoinPlan, sources: &[(JoinSide, u32, Vec<SourceRecord>)]) -> Committed {
    let mut admitted: Vec<(JoinSide, String, i64, i64)> = Vec::new();
    let mut dead_letters = Vec::new();
    let mut least: Option<Option<i64>> = None;
    for (side, partition, records) in sources {
        let mut max_ts: Option<i64> = None;
        for record in records {
            let dead = |reason: DeadLetterReason| {
                (
                    reason.as_str().to_string(),
                    record.topic.clone(),
                    *partition as i32,
                    record.offset,
                )
            };
            let Ok(value) =
                serde_json::from_slice::<Value>(record.value.as_deref().unwrap_or_default())
            else {
                dead_letters.push(dead(DeadLetterReason::Undecodable));
                continue;
            };
            let ts = value["ts"].as_i64().unwrap_or_default();
            let watermark = max_ts.map(|m| m - OUT_OF_ORDERNESS);
            max_ts = Some(max_ts.map_or(ts, |m| m.max(ts)));
            if *side == JoinSide::Left && value["amount"].as_i64() == Some(0) {
                continue;
            }
            let Some(key) = value["payment_id"].as_str() else {
                dead_letters.push(dead(DeadLetterReason::ExpressionError));
                continue;
            };
            let bound = match side {
                JoinSide::Left => ts + WITHIN,
                JoinSide::Right => ts,
            };
            if watermark.is_some_and(|w| bound + LATENESS <= w) {
                dead_letters.push(dead(DeadLetterReason::Late));
                continue;
            }
            let id = value["id"].as_i64().unwrap_or_default();
            admitted.push((*side, key.to_string(), ts, id));
        }
        let final_watermark = max_ts.map(|m| m - OUT_OF_ORDERNESS);
        least = Some(match least {
            None => final_watermark,
            Some(least) => least.zip(final_watermark).map(|(a, b)| a.min(b)),
        });
    }
    let downstream_watermark = least.flatten();
    let mut results = Vec::new();
    for (_, key, lts, lid) in admitted.iter().filter(|a| a.0 == JoinSide::Left) {
        let mut matched = false;
        for (_, rkey, rts, rid) in admitted.iter().filter(|a| a.0 == JoinSide::Right) {
            if key == rkey && lts <= rts && *rts <= lts + WITHIN {
                matched = true;
                results.push((*lid, Some(*rid)));
            }
        }
        let outer = plan.kind == super::join::JoinKind::LeftOuter;
        if outer && !matched && downstream_watermark.is_some_and(|w| w >= lts + WITHIN + LATENESS) {
            results.push((*lid, None));
        }
    }
    results.sort();
    dead_letters.sort();
    (results, dead_letters)
}

/// How many of 100 seeds of each kind committed something else than expected, and how
/// many results were expected in all.
fn mismatches() -> (usize, usize) {
    let mut wrong = 0;
    let mut results = 0;
    for seed in 0..100 {
        for kind in ["inner", "left_outer"] {
            let (got, want) = run(seed, kind);
            results += want.0.len();
            if got != want {
                wrong += 1;
            }
        }
    }
    (wrong, results)
}

#[test]
fn both_stages_through_crashes_commit_each_pair_and_dead_letter_once() {
    let (got, want) = run(3, "left_outer");
    assert_eq!(got, want);
    let (wrong, results) = mismatches();
    assert_eq!(wrong, 0);
    assert!(results > 1_000, "the runs join something: {results}");
}

#[cfg(feature = "planted-bugs")]
#[test]
fn join_state_left_out_of_the_snapshot_is_caught_through_both_stages() {
    use weir_core::bugs::{plant, PlantedBug};
    plant(Some(PlantedBug::JoinStateNotInSnapshot));
    let (wrong, _) = mismatches();
    plant(None);
    assert!(wrong > 0, "the planted bug went unnoticed");
}
