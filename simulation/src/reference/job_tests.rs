//! The reference for whole jobs, against expectations computed by hand from the
//! specification: re-keying across source partitions, lateness judged by the upstream
//! watermark, windows a lagging partition keeps open, a partition with no valid time,
//! dead letters' coordinates on both sides of the shuffle, and a declared partitioning
//! checked.

use super::*;
use weir_core::ids::JobId;
use weir_core::spec::parse_job_spec;

const TOPIC: &str = "payments";
const JOB: JobId = JobId(7);
const REPARTITION: &str = "weir-job-7-repartition-1";

/// A spec with event time `ts` (no out-of-orderness: W = the largest time), `source_extra`
/// and `job_extra` YAML lines, and `pipeline` (one flow item a line).
fn spec_with(source_extra: &str, job_extra: &str, pipeline: &str) -> JobSpec {
    let mut yaml = format!("name: j\nsource:\n  topic: {TOPIC}\n  event_time: ts\n{source_extra}");
    yaml.push_str("pipeline:\n");
    for line in pipeline.lines().map(str::trim).filter(|l| !l.is_empty()) {
        yaml.push_str(&format!("  - {line}\n"));
    }
    yaml.push_str(&format!("sink:\n  topic: out\n{job_extra}"));
    parse_job_spec(yaml.as_bytes()).unwrap_or_else(|err| panic!("{err}\n{yaml}"))
}

fn spec(pipeline: &str) -> JobSpec {
    spec_with("", "", pipeline)
}

fn record(partition: i32, offset: i64, value: &str) -> RefRecord {
    RefRecord {
        partition,
        offset,
        timestamp_ms: 0,
        key: None,
        value: Some(value.as_bytes().to_vec()),
    }
}

/// `(card, ts)` events as records, offsets from 0 in each partition.
fn events(partition: i32, events: &[(&str, i64)]) -> Vec<RefRecord> {
    events
        .iter()
        .enumerate()
        .map(|(offset, (card, ts))| {
            let value = format!(r#"{{"ts": {ts}, "card": "{card}", "amount": 1}}"#);
            record(partition, offset as i64, &value)
        })
        .collect()
}

/// The sink values, sorted (a job's outputs are compared as a multiset).
fn values(out: &RefOutputs) -> Vec<String> {
    let mut values: Vec<String> = out
        .outputs
        .iter()
        .map(|o| String::from_utf8(o.value.clone()).unwrap())
        .collect();
    values.sort();
    values
}

fn run(spec: &JobSpec, partitions: u32, records: &[RefRecord]) -> RefOutputs {
    evaluate_job(spec, JOB, TOPIC, partitions, records).unwrap()
}

fn tumbling_count() -> JobSpec {
    spec(
        r#"key_by: "card"
           window: { tumbling: 10s }
           aggregate: { n: "count()" }"#,
    )
}

#[test]
fn a_tumbling_window_counts_a_key_over_every_source_partition() {
    let spec = spec(
        r#"key_by: "card"
           window: { tumbling: 10s }
           aggregate: { n: "count()", total: "sum(amount)" }"#,
    );
    let records = [
        record(0, 0, r#"{"ts": 1000, "card": "a", "amount": 1}"#),
        record(0, 1, r#"{"ts": 12000, "card": "b", "amount": 2}"#),
        record(0, 2, r#"{"ts": 25000, "card": "z", "amount": 0}"#),
        record(1, 0, r#"{"ts": 3000, "card": "a", "amount": 10}"#),
        record(1, 1, r#"{"ts": 15000, "card": "b", "amount": 20}"#),
        record(1, 2, r#"{"ts": 21000, "card": "c", "amount": 5}"#),
    ];
    let out = run(&spec, 2, &records);
    // Wd = min(25000, 21000): a's and b's first windows fired with both partitions'
    // events; z's and c's windows (end 30000) stay open.
    assert_eq!(
        values(&out),
        [
            r#"{"key":"a","window_start":0,"window_end":10000,"n":2,"total":11}"#,
            r#"{"key":"b","window_start":10000,"window_end":20000,"n":2,"total":22}"#,
        ]
    );
    assert_eq!(out.outputs[0].key.as_deref(), Some(&b"a"[..]));
    assert!(out.dead_letters.is_empty() && out.misplaced.is_empty());
    // Evaluated per partition, each partition would count its own events alone.
    let alone = evaluate_partition(&spec, TOPIC, &records[..3]).unwrap();
    assert_eq!(
        values(&alone)[0],
        r#"{"key":"a","window_start":0,"window_end":10000,"n":1,"total":1}"#
    );
}

#[test]
fn a_sliding_event_joins_only_the_windows_open_under_its_own_partitions_watermark() {
    let spec = spec(
        r#"key_by: "card"
           window: { sliding: { size: 10s, slide: 5s } }
           aggregate: { n: "count()" }"#,
    );
    let mut records = events(0, &[("x", 20_000), ("a", 16_000), ("x", 30_000)]);
    records.extend(events(1, &[("a", 17_000), ("y", 40_000)]));
    let out = run(&spec, 2, &records);
    // a@16000 on partition 0 comes under W = 20000: [10000, 20000) is closed for it, so it
    // joins [15000, 25000) only; a@17000 on partition 1 (W none) joins both. Wd = 30000.
    assert_eq!(
        values(&out),
        [
            r#"{"key":"a","window_start":10000,"window_end":20000,"n":1}"#,
            r#"{"key":"a","window_start":15000,"window_end":25000,"n":2}"#,
            r#"{"key":"x","window_start":15000,"window_end":25000,"n":1}"#,
            r#"{"key":"x","window_start":20000,"window_end":30000,"n":1}"#,
        ]
    );
    assert!(out.dead_letters.is_empty());
}

#[test]
fn lateness_is_judged_upstream_by_the_events_own_partition() {
    let mut records = events(0, &[("q", 50_000), ("a", 5_000)]);
    records.extend(events(1, &[("a", 5_000), ("r", 60_000)]));
    let out = run(&tumbling_count(), 2, &records);
    // On partition 0, a@5000 comes under W = 50000: its window [0, 10000) closed, late.
    // On partition 1 the same time comes before any watermark: admitted, though partition
    // 0 was far ahead. Wd = 50000 fires [0, 10000) with the one admitted event.
    assert_eq!(
        values(&out),
        [r#"{"key":"a","window_start":0,"window_end":10000,"n":1}"#]
    );
    assert_eq!(
        out.dead_letters,
        [RefDeadLetter {
            reason: "late".into(),
            topic: TOPIC.into(),
            partition: 0,
            offset: 1,
            payload: records[1].value.clone(),
            truncated: None,
        }]
    );
}

#[test]
fn allowed_lateness_admits_under_the_upstream_watermark() {
    let spec = spec(
        r#"key_by: "card"
           window: { tumbling: 10s, allowed_lateness: 5s }
           aggregate: { n: "count()" }"#,
    );
    // a@5000 under W = 14999: 10000 + 5000 > 14999, admitted; a@6000 under W = 15000:
    // late (10000 + 5000 <= 15000). Wd = 15000 fires [0, 10000) and keeps z's
    // [10000, 20000) open until 25000.
    let mut records = events(
        0,
        &[("z", 14_999), ("a", 5_000), ("z", 15_000), ("a", 6_000)],
    );
    records.extend(events(1, &[("z", 90_000)]));
    let out = run(&spec, 2, &records);
    assert_eq!(
        values(&out),
        [r#"{"key":"a","window_start":0,"window_end":10000,"n":1}"#]
    );
    let late: Vec<(i32, i64)> = out
        .dead_letters
        .iter()
        .map(|d| (d.partition, d.offset))
        .collect();
    assert_eq!(late, [(0, 3)]);
}

#[test]
fn a_lagging_partition_keeps_later_windows_open() {
    let mut records = events(0, &[("a", 1_000), ("a", 15_000), ("a", 35_000)]);
    records.extend(events(1, &[("a", 2_000), ("b", 12_000)]));
    let out = run(&tumbling_count(), 2, &records);
    // Wd = min(35000, 12000): only [0, 10000) has closed.
    assert_eq!(
        values(&out),
        [r#"{"key":"a","window_start":0,"window_end":10000,"n":2}"#]
    );
}

#[test]
fn nothing_fires_while_a_source_partition_never_had_a_valid_time() {
    let mut records = events(0, &[("a", 1_000), ("a", 90_000)]);
    records.extend(events(1, &[("a", 2_000), ("a", 90_000)]));
    // Partition 2 has a record with no event time only.
    records.push(record(2, 0, r#"{"card": "a", "amount": 1}"#));
    let out = run(&tumbling_count(), 3, &records);
    assert!(out.outputs.is_empty());
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].reason, "bad_event_time");
    assert_eq!(out.dead_letters[0].partition, 2);
    // A partition with no record at all holds the watermark back the same way; once
    // partition 2 has a time, the first windows fire.
    assert!(run(&tumbling_count(), 3, &records[..4]).outputs.is_empty());
    records.extend(events(2, &[("b", 50_000)]).into_iter().map(|mut r| {
        r.offset = 1;
        r
    }));
    assert_eq!(
        values(&run(&tumbling_count(), 3, &records)),
        [r#"{"key":"a","window_start":0,"window_end":10000,"n":2}"#]
    );
}

#[test]
fn a_failing_result_is_dead_lettered_at_its_keys_repartition_partition() {
    let spec = spec_with(
        "",
        "parallelism: 5\n",
        r#"key_by: "card"
           window: { tumbling: 10s }
           aggregate: { n: "count()" }
           filter: "10 / (n - 2) > 1""#,
    );
    let mut records = events(0, &[("foobar", 1_000), ("abc", 1_500), ("z", 30_000)]);
    records.extend(events(
        1,
        &[("foobar", 2_000), ("abc", 2_500), ("abc", 3_000)],
    ));
    records.extend(
        events(1, &[("one", 4_000), ("z", 30_000)])
            .into_iter()
            .map(|mut r| {
                r.offset += 3;
                r
            }),
    );
    let out = run(&spec, 2, &records);
    // abc: n = 3, 10 / 1 > 1 kept; one: n = 1, 10 / -1 dropped; foobar: n = 2 divides
    // by zero. murmur2("foobar") & 0x7fffffff = 1357151166, 1 mod 5.
    assert_eq!(
        values(&out),
        [r#"{"key":"abc","window_start":0,"window_end":10000,"n":3}"#]
    );
    assert_eq!(
        out.dead_letters,
        [RefDeadLetter {
            reason: "expression_error".into(),
            topic: REPARTITION.into(),
            partition: 1,
            offset: -1,
            payload: Some(
                br#"{"key":"foobar","window_start":0,"window_end":10000,"n":2}"#.to_vec()
            ),
            truncated: None,
        }]
    );
}

#[test]
fn a_failure_after_the_shuffle_carries_source_coordinates_and_the_object_as_shuffled() {
    let mapped = spec(
        r#"map: { card: "card", amount: "amount" }
           key_by: "card"
           filter: "amount > 20"
           window: { tumbling: 10s }
           aggregate: { total: "sum(amount)" }"#,
    );
    let bad = r#"{"ts": 1000,  "card": "a", "amount": "lots", "extra": 1}"#;
    let records = [record(0, 0, bad), record(1, 4, bad)];
    let out = run(&mapped, 2, &records);
    let coordinates: Vec<(&str, i32, i64, Vec<u8>)> = out
        .dead_letters
        .iter()
        .map(|d| {
            let payload = d.payload.clone().unwrap();
            (d.reason.as_str(), d.partition, d.offset, payload)
        })
        .collect();
    let shuffled = br#"{"amount":"lots","card":"a"}"#.to_vec();
    assert_eq!(
        coordinates,
        [
            ("expression_error", 0, 0, shuffled.clone()),
            ("expression_error", 1, 4, shuffled),
        ]
    );
    assert!(out.dead_letters.iter().all(|d| d.topic == TOPIC));
    // With no map before the key_by, the object as shuffled is the source value, bytes
    // and all; an aggregate argument failing downstream is dead-lettered the same way.
    let unmapped = spec(
        r#"key_by: "card"
           window: { tumbling: 10s }
           aggregate: { total: "sum(amount)" }"#,
    );
    let out = run(&unmapped, 2, &records);
    assert_eq!(out.dead_letters.len(), 2);
    assert_eq!(out.dead_letters[1].payload.as_deref(), Some(bad.as_bytes()));
    assert_eq!(
        (out.dead_letters[1].partition, out.dead_letters[1].offset),
        (1, 4)
    );
}

#[test]
fn a_job_that_does_not_shuffle_is_each_partition_on_its_own() {
    let declared = spec_with(
        "  partitioned_by: card\n",
        "",
        r#"key_by: "card"
           window: { session: { gap: 3s } }
           aggregate: { n: "count()" }"#,
    );
    let stateless = spec(
        r#"filter: "amount > 0"
           key_by: "card""#,
    );
    // murmur2 places "foobar" on partition 1 of 5; "abc" (479470107) on 2.
    let mut records = events(
        1,
        &[("foobar", 1_000), ("foobar", 2_000), ("foobar", 9_000)],
    );
    records.extend(events(2, &[("abc", 1_000), ("abc", 20_000)]));
    for spec in [&declared, &stateless] {
        let out = run(spec, 5, &records);
        let mut expected = evaluate_partition(spec, TOPIC, &records[..3]).unwrap();
        expected.outputs.extend(
            evaluate_partition(spec, TOPIC, &records[3..])
                .unwrap()
                .outputs,
        );
        assert_eq!(out.outputs, expected.outputs);
        assert!(out.misplaced.is_empty());
    }
}

#[test]
fn a_declared_partitioning_is_checked_at_its_key_by() {
    let declared = spec_with(
        "  partitioned_by: card\n",
        "",
        r#"key_by: "card"
           window: { tumbling: 10s }
           aggregate: { n: "count()" }"#,
    );
    let mut records = events(1, &[("foobar", 1_000)]);
    records.extend(events(0, &[("foobar", 2_000)]));
    records.push(record(3, 0, r#"{"card": "foobar"}"#));
    let out = run(&declared, 5, &records);
    // The record without a time never reaches the key_by, so only one is misplaced.
    assert_eq!(
        out.misplaced,
        [RefMisplaced {
            partition: 0,
            offset: 0,
            key: "foobar".into(),
            expected_partition: 1,
        }]
    );
    // A key_by that only labels records is not checked.
    let labels = spec_with("  partitioned_by: card\n", "", r#"key_by: "card""#);
    assert!(run(&labels, 5, &records).misplaced.is_empty());
}

#[test]
fn a_session_or_a_dedupe_after_a_shuffle_is_refused() {
    // Written valid (no shuffle: the source is partitioned by card), then the
    // declaration removed, so the spec needs the shuffle the runtime refuses.
    let mut session = spec_with(
        "  partitioned_by: card\n",
        "",
        r#"key_by: "card"
           window: { session: { gap: 3s } }
           aggregate: { n: "count()" }"#,
    );
    session.source.partitioned_by = None;
    let mut dedupe = spec_with(
        "  partitioned_by: card\n",
        "",
        r#"key_by: "card"
           dedupe: { key: "id", ttl: 5s }
           window: { tumbling: 3s }
           aggregate: { n: "count()" }"#,
    );
    dedupe.source.partitioned_by = None;
    let refusal = |spec: &JobSpec| match evaluate_job(spec, JOB, TOPIC, 2, &[]) {
        Err(ReferenceError::InvalidSpec(message)) => message,
        other => panic!("not refused: {other:?}"),
    };
    assert!(refusal(&session).starts_with("pipeline[1].window"));
    assert!(refusal(&dedupe).starts_with("pipeline[1].dedupe"));
}
