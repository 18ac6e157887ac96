//! A two-stage windowed job at the operator level, rescaled between two loads of input:
//! its results must be exactly those of the same job never rescaled, and each key must be
//! held by exactly one new task.

use super::KeyRange;
use crate::operators::record::{Outputs, SourceRecord};
use crate::operators::shuffled::encode_watermark;
use crate::operators::{Pipeline, PipelineRole};
use weir_core::routing::partition_for_key;
use weir_core::spec::{parse_job_spec, JobSpec};

const UPSTREAMS: u32 = 2;
const TOPIC: &str = "weir-job-1-repartition-1";

fn spec() -> JobSpec {
    parse_job_spec(
        b"name: j\nsource: { topic: payments, event_time: ts }\n\
          pipeline:\n  - key_by: \"card\"\n  - window: { tumbling: 100ms }\n\
          \x20 - aggregate: { n: \"count()\", total: \"sum(amount)\" }\nsink: { topic: out }\n",
    )
    .unwrap()
}

fn downstream_role() -> PipelineRole {
    PipelineRole::Downstream {
        shuffle_at: 0,
        upstreams: UPSTREAMS,
    }
}

/// The source events of partition `p` in `load`: cards c0..c11, times spread over three
/// windows per load, each load later than the one before.
fn events(load: i64, p: u32) -> Vec<SourceRecord> {
    (0..40)
        .map(|i| {
            let ts = load * 300 + i * 7 + i64::from(p);
            let card = (i * 5 + p as i64 * 3) % 12;
            SourceRecord {
                topic: "payments".into(),
                partition: p as i32,
                offset: load * 40 + i,
                timestamp_ms: None,
                key: None,
                value: Some(
                    format!(r#"{{"card":"c{card}","ts":{ts},"amount":{}}}"#, i + 1).into_bytes(),
                ),
            }
        })
        .collect()
}

/// Runs `load` through the upstream tasks and returns each downstream partition's input
/// (of `partitions`): the partial aggregates routed by key, then every upstream's marker.
fn shuffle(upstream: &mut [Pipeline], load: i64, partitions: u32) -> Vec<Vec<SourceRecord>> {
    let mut logs: Vec<Vec<SourceRecord>> = vec![Vec::new(); partitions as usize];
    let push = |logs: &mut Vec<Vec<SourceRecord>>, p: usize, key: Option<Vec<u8>>, value| {
        let offset = logs[p].len() as i64;
        logs[p].push(SourceRecord {
            topic: TOPIC.into(),
            partition: p as i32,
            offset,
            timestamp_ms: None,
            key,
            value: Some(value),
        });
    };
    for (index, up) in upstream.iter_mut().enumerate() {
        let mut out = Outputs::default();
        up.process_batch(&events(load, index as u32), &mut out)
            .unwrap();
        up.take_partials(&mut out);
        for record in out.records {
            let key = record.key.clone().unwrap_or_default();
            let p = partition_for_key(key.as_bytes(), partitions) as usize;
            push(&mut logs, p, Some(key.into_bytes()), record.value);
        }
        let watermark = up.watermark_ms().expect("events have times");
        for p in 0..partitions as usize {
            push(
                &mut logs,
                p,
                None,
                encode_watermark(index as u32, watermark),
            );
        }
    }
    logs
}

/// Runs each downstream task over its input; the sink records as sorted text.
fn run(downstream: &mut [Pipeline], logs: &[Vec<SourceRecord>]) -> Vec<String> {
    let mut results = Vec::new();
    for (task, log) in downstream.iter_mut().zip(logs) {
        let mut out = Outputs::default();
        task.process_batch(log, &mut out).unwrap();
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        results.extend(
            out.records
                .into_iter()
                .map(|r| String::from_utf8_lossy(&r.value).into_owned()),
        );
    }
    results
}

/// Two loads through a job whose downstream stage has `before` tasks, rescaled to `after`
/// between them; the sorted results.
fn two_loads(before: u32, after: u32) -> Vec<String> {
    let spec = spec();
    let up_role = PipelineRole::Upstream { shuffle_at: 0 };
    let mut upstream: Vec<Pipeline> = (0..UPSTREAMS)
        .map(|_| Pipeline::compile_role(&spec, up_role).unwrap())
        .collect();
    let mut downstream: Vec<Pipeline> = (0..before)
        .map(|_| Pipeline::compile_role(&spec, downstream_role()).unwrap())
        .collect();
    let mut results = run(&mut downstream, &shuffle(&mut upstream, 0, before));
    if after != before {
        // The cut: every previous task's snapshot, restored as recovery restores it.
        let previous: Vec<Pipeline> = downstream
            .iter()
            .map(|t| Pipeline::restore_role(&spec, downstream_role(), &t.snapshot()).unwrap())
            .collect();
        downstream = (0..after)
            .map(|index| {
                let range = KeyRange {
                    index,
                    partitions: after,
                };
                Pipeline::redistribute(&spec, downstream_role(), &previous, range).unwrap()
            })
            .collect();
        let held: usize = downstream
            .iter()
            .map(|t| t.state.windows.as_ref().unwrap().keys())
            .sum();
        let before_keys: usize = previous
            .iter()
            .map(|t| t.state.windows.as_ref().unwrap().keys())
            .sum();
        assert_eq!(
            held, before_keys,
            "every key is held by exactly one new task"
        );
        assert!(held > 0, "windows were open at the cut");
    }
    results.extend(run(&mut downstream, &shuffle(&mut upstream, 1, after)));
    results.sort();
    results
}

#[test]
fn a_rescaled_stage_gives_the_results_of_one_never_rescaled() {
    let unchanged = two_loads(2, 2);
    assert!(!unchanged.is_empty());
    assert_eq!(two_loads(2, 3), unchanged, "grown");
    assert_eq!(two_loads(3, 1), two_loads(3, 3), "shrunk to one");
    assert_eq!(two_loads(2, 5), unchanged, "grown more");
}

#[test]
fn a_rescale_refuses_any_other_role() {
    let spec = spec();
    let err = Pipeline::redistribute(
        &spec,
        PipelineRole::Upstream { shuffle_at: 0 },
        &[],
        KeyRange {
            index: 0,
            partitions: 2,
        },
    );
    assert!(err.is_err());
}
