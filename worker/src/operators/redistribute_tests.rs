//! A two-stage windowed job at the operator level, rescaled (or upgraded, its tail
//! changed) between two loads of input: its results must be exactly those of the same job
//! never rescaled, and each key must be held by exactly one new task; an upgrade's new
//! tail applies to every window fired after it, with the counts carried.

use super::{KeyRange, Redistribution};
use crate::operators::record::{Outputs, SourceRecord};
use crate::operators::shuffled::encode_watermark;
use crate::operators::{Pipeline, PipelineRole};
use weir_core::routing::partition_for_key;
use weir_core::spec::{parse_job_spec, JobSpec};

const UPSTREAMS: u32 = 2;
const TOPIC: &str = "weir-job-1-repartition-1";

fn spec() -> JobSpec {
    spec_with_tail("")
}

/// The pipeline of the task `range` names, gathered from `previous` as recovery does.
fn redistribute(
    spec: &JobSpec,
    role: PipelineRole,
    previous: impl IntoIterator<Item = Pipeline>,
    range: KeyRange,
) -> Result<Pipeline, crate::operators::RestoreError> {
    let mut redistribution = Redistribution::new(spec, role, range)?;
    for old in previous {
        redistribution.add(&old)?;
    }
    Ok(redistribution.finish())
}

/// The job with `tail` (YAML stages) after its aggregate.
fn spec_with_tail(tail: &str) -> JobSpec {
    let yaml = format!(
        "name: j\nsource: {{ topic: payments, event_time: ts }}\n\
         pipeline:\n  - key_by: \"card\"\n  - window: {{ tumbling: 100ms }}\n\
         \x20 - aggregate: {{ n: \"count()\", total: \"sum(amount)\" }}\n{tail}\
         sink: {{ topic: out }}\n"
    );
    parse_job_spec(yaml.as_bytes()).unwrap()
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
    let (mut first, second) = two_loads_upgraded(before, after, &spec());
    first.extend(second);
    first.sort();
    first
}

/// Two loads as [`two_loads`], the job upgraded to `new_spec` at the cut; the results of
/// each load.
fn two_loads_upgraded(before: u32, after: u32, new_spec: &JobSpec) -> (Vec<String>, Vec<String>) {
    let spec = spec();
    let up_role = PipelineRole::Upstream { shuffle_at: 0 };
    let mut upstream: Vec<Pipeline> = (0..UPSTREAMS)
        .map(|_| Pipeline::compile_role(&spec, up_role).unwrap())
        .collect();
    let mut downstream: Vec<Pipeline> = (0..before)
        .map(|_| Pipeline::compile_role(&spec, downstream_role()).unwrap())
        .collect();
    let first = run(&mut downstream, &shuffle(&mut upstream, 0, before));
    // The cut: every task's snapshot, restored as recovery restores an upgrade's.
    let restore =
        |role, bytes: &[u8]| Pipeline::restore_upgraded(&spec, new_spec, role, &[], bytes).unwrap();
    let up_role = PipelineRole::Upstream { shuffle_at: 0 };
    upstream = upstream
        .iter()
        .map(|t| restore(up_role, &t.snapshot()))
        .collect();
    let spec = new_spec.clone();
    if after == before {
        downstream = downstream
            .iter()
            .map(|t| restore(downstream_role(), &t.snapshot()))
            .collect();
    } else {
        let snapshots: Vec<Vec<u8>> = downstream.iter().map(Pipeline::snapshot).collect();
        let previous: Vec<Pipeline> = snapshots
            .iter()
            .map(|bytes| restore(downstream_role(), bytes))
            .collect();
        downstream = (0..after)
            .map(|index| {
                let range = KeyRange {
                    index,
                    partitions: after,
                };
                let restored = snapshots.iter().map(|b| restore(downstream_role(), b));
                redistribute(&spec, downstream_role(), restored, range).unwrap()
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
    let second = run(&mut downstream, &shuffle(&mut upstream, 1, after));
    (first, second)
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
fn an_upgrade_of_the_tail_carries_both_stages_state_and_judges_later_windows_by_it() {
    let (before_unchanged, after_unchanged) = two_loads_upgraded(2, 2, &spec());
    let threshold = spec_with_tail("  - filter: \"n >= 3\"\n");
    for after in [2, 3] {
        let (before, later) = two_loads_upgraded(2, after, &threshold);
        assert_eq!(before, before_unchanged, "the old version's results stand");
        let n_at_least_3 = |r: &&String| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            v["n"].as_u64().unwrap() >= 3
        };
        let mut expected: Vec<String> = after_unchanged
            .iter()
            .filter(n_at_least_3)
            .cloned()
            .collect();
        let mut later = later;
        expected.sort();
        later.sort();
        assert!(!expected.is_empty() && expected.len() < after_unchanged.len());
        assert_eq!(
            later, expected,
            "counts carried, the new threshold applied ({after})"
        );
    }
    // A change of a stateful stage does not carry.
    let window = spec_with_tail("").clone();
    let mut other = window;
    other.source.max_out_of_orderness = Some(std::time::Duration::from_millis(5).into());
    let bytes = Pipeline::compile_role(&spec(), downstream_role())
        .unwrap()
        .snapshot();
    assert!(Pipeline::restore_upgraded(&spec(), &other, downstream_role(), &[], &bytes).is_err());
}

#[test]
fn a_rescale_refuses_any_other_role() {
    let spec = spec();
    let err = redistribute(
        &spec,
        PipelineRole::Upstream { shuffle_at: 0 },
        Vec::new(),
        KeyRange {
            index: 0,
            partitions: 2,
        },
    );
    assert!(err.is_err());
}
