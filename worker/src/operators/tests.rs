//! Pipeline-level tests: every stage and dead-letter reason through `Pipeline::process`,
//! windows with out-of-order and late events, and checkpoints (snapshot, restore,
//! continue) against uninterrupted runs on generated inputs.

use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use weir_core::spec::{parse_job_spec, JobSpec};

/// A job spec with `pipeline` (YAML flow list items, one per line) and source settings.
fn spec_with(source_extra: &str, pipeline: &str) -> JobSpec {
    let mut yaml = format!("name: test-job\nsource:\n  topic: events\n{source_extra}");
    if pipeline.trim().is_empty() {
        yaml.push_str("pipeline: []\n");
    } else {
        yaml.push_str("pipeline:\n");
        for line in pipeline.lines().map(str::trim).filter(|l| !l.is_empty()) {
            yaml.push_str(&format!("  - {line}\n"));
        }
    }
    yaml.push_str("sink:\n  topic: results\n");
    parse_job_spec(yaml.as_bytes()).unwrap_or_else(|err| panic!("{err}\n{yaml}"))
}

/// A spec whose event time is the field `ts`.
fn spec(pipeline: &str) -> JobSpec {
    spec_with("  event_time: ts\n", pipeline)
}

fn record(offset: i64, value: &str) -> SourceRecord {
    SourceRecord {
        topic: "events".into(),
        partition: 0,
        offset,
        timestamp_ms: Some(1_000_000 + offset),
        key: None,
        value: Some(value.as_bytes().to_vec()),
    }
}

/// Records from JSON values, offsets 0, 1, ...
fn records(values: &[Value]) -> Vec<SourceRecord> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| record(i as i64, &v.to_string()))
        .collect()
}

fn run(spec: &JobSpec, input: &[SourceRecord]) -> Outputs {
    let mut pipeline = Pipeline::compile(spec).unwrap();
    let mut out = Outputs::new();
    pipeline.process_batch(input, &mut out).unwrap();
    out
}

/// The output values, parsed.
fn values(out: &Outputs) -> Vec<Value> {
    out.records
        .iter()
        .map(|r| serde_json::from_slice(&r.value).unwrap())
        .collect()
}

fn keys(out: &Outputs) -> Vec<Option<String>> {
    out.records.iter().map(|r| r.key.clone()).collect()
}

fn reasons(out: &Outputs) -> Vec<(i64, DeadLetterReason)> {
    out.dead_letters
        .iter()
        .map(|d| (d.offset, d.reason))
        .collect()
}

#[test]
fn an_empty_pipeline_copies_values_unchanged() {
    let input = [record(0, r#"{ "ts": 5, "b": 1.50 }"#)];
    let out = run(&spec(""), &input);
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0].value, input[0].value.clone().unwrap());
    assert_eq!(out.records[0].key, None);
    assert!(out.dead_letters.is_empty());
}

#[test]
fn filter_keeps_true_drops_false_and_dead_letters_the_rest() {
    let spec = spec(r#"filter: "amount > 10 && status == 'ok'""#);
    let out = run(
        &spec,
        &records(&[
            json!({"ts": 1, "amount": 11, "status": "ok"}),
            json!({"ts": 2, "amount": 10, "status": "ok"}),
            json!({"ts": 3, "amount": 12.5, "status": "no"}),
            json!({"ts": 4, "status": "ok"}),
            json!({"ts": 5, "amount": "11", "status": "ok"}),
        ]),
    );
    assert_eq!(
        values(&out),
        [json!({"ts": 1, "amount": 11, "status": "ok"})]
    );
    assert_eq!(
        reasons(&out),
        [
            (3, DeadLetterReason::ExpressionError),
            (4, DeadLetterReason::ExpressionError)
        ]
    );
    assert!(out.dead_letters[0]
        .detail
        .starts_with("pipeline[0].filter: "));
    let not_bool = run(
        &self::spec(r#"filter: "amount""#),
        &records(&[json!({"ts": 1, "amount": 1})]),
    );
    assert_eq!(reasons(&not_bool), [(0, DeadLetterReason::ExpressionError)]);
    assert!(not_bool.dead_letters[0]
        .detail
        .contains("must yield a bool"));
}

#[test]
fn map_builds_a_new_object() {
    let spec = spec(
        r#"map: { card: "card_id", cents: "amount * 100", info: "meta", tag: "'t-' + card_id", part: "double(amount) / 4.0" }"#,
    );
    let out = run(
        &spec,
        &records(&[
            json!({"ts": 1, "card_id": "c1", "amount": 2, "meta": {"z": 1, "a": [1.50, "x"]}}),
            json!({"ts": 2, "card_id": "c2", "amount": 3, "meta": null}),
            json!({"ts": 3, "card_id": 7, "amount": 1, "meta": null}),
        ]),
    );
    let texts: Vec<String> = out
        .records
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            r#"{"card":"c1","cents":200,"info":{"a":[1.5,"x"],"z":1},"part":0.5,"tag":"t-c1"}"#,
            r#"{"card":"c2","cents":300,"info":null,"part":0.75,"tag":"t-c2"}"#,
        ]
    );
    // An int times a double is no CEL overload; an int plus a string neither.
    let mixed = run(
        &spec,
        &records(&[json!({"ts": 1, "card_id": "c", "amount": 0.5, "meta": 1})]),
    );
    assert_eq!(reasons(&mixed), [(0, DeadLetterReason::ExpressionError)]);
    assert!(
        mixed.dead_letters[0]
            .detail
            .starts_with("pipeline[0].map.cents: "),
        "{}",
        mixed.dead_letters[0].detail
    );
    assert_eq!(reasons(&out), [(2, DeadLetterReason::ExpressionError)]);
    assert!(out.dead_letters[0]
        .detail
        .starts_with("pipeline[0].map.tag: "));
    // A value without a JSON form is an expression error.
    let bytes = run(
        &self::spec(r#"map: { b: "b'x'" }"#),
        &records(&[json!({"ts": 1})]),
    );
    assert_eq!(reasons(&bytes), [(0, DeadLetterReason::ExpressionError)]);
    let nan = run(
        &self::spec(r#"map: { x: "0.0 / 0.0" }"#),
        &records(&[json!({"ts": 1})]),
    );
    assert_eq!(reasons(&nan), [(0, DeadLetterReason::ExpressionError)]);
}

#[test]
fn dedupe_drops_repeats_within_ttl_and_forgets_behind_the_watermark() {
    let spec = spec(r#"dedupe: { key: "id", ttl: 10ms }"#);
    let events = [
        (0, "a", 100), // kept
        (1, "a", 105), // repeat
        (2, "b", 105), // kept
        (3, "a", 95),  // repeat (before)
        (4, "a", 110), // ttl away: kept, now the reference
        (5, "a", 119), // repeat of 110
        (6, "a", 130), // kept
        // The watermark is 130: `b` (105 + 10 <= 130) is forgotten.
        (7, "b", 106), // kept again
    ];
    let input: Vec<_> = events
        .iter()
        .map(|(i, id, ts)| record(*i, &json!({"ts": ts, "id": id}).to_string()))
        .collect();
    let out = run(&spec, &input);
    let kept: Vec<i64> = values(&out)
        .iter()
        .map(|v| v["ts"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, [100, 105, 110, 130, 106]);
}

#[test]
fn key_by_sets_the_output_key_from_key_text() {
    let spec = spec(r#"key_by: "k""#);
    let out = run(
        &spec,
        &records(&[
            json!({"ts": 1, "k": "card-1"}),
            json!({"ts": 2, "k": 42}),
            json!({"ts": 3, "k": 2.0}),
            json!({"ts": 4, "k": {"b": 1, "a": [true, null]}}),
            json!({"ts": 5}),
        ]),
    );
    assert_eq!(
        keys(&out),
        [
            Some("card-1".to_string()),
            Some("42".to_string()),
            Some("2.0".to_string()),
            Some(r#"{"a":[true,null],"b":1}"#.to_string()),
        ]
    );
    assert_eq!(reasons(&out), [(4, DeadLetterReason::ExpressionError)]);
    let long = "x".repeat(KEY_LEN_MAX_BYTES + 1);
    let too_long = run(&spec, &records(&[json!({"ts": 1, "k": long})]));
    assert_eq!(reasons(&too_long), [(0, DeadLetterReason::ExpressionError)]);
}

#[test]
fn every_dead_letter_reason_has_its_cause() {
    let spec = spec(
        r#"key_by: "k"
        window: { tumbling: 10ms }
        aggregate: { n: "count()", total: "sum(v)" }"#,
    );
    let mut input = vec![
        record(0, "not json"),
        record(1, "[1, 2]"),
        record(2, r#"{"k": "a", "v": 1}"#),
        record(3, r#"{"ts": "yesterday", "k": "a", "v": 1}"#),
        record(4, r#"{"ts": 5, "v": 1}"#),
        record(5, r#"{"ts": 6, "k": "a", "v": "1"}"#),
        record(6, r#"{"ts": 30, "k": "a", "v": 1}"#),
        record(7, r#"{"ts": 15, "k": "a", "v": 1}"#),
    ];
    input.push(SourceRecord {
        value: None,
        ..record(8, "")
    });
    input.push(SourceRecord {
        value: Some(vec![0xff, 0xfe]),
        ..record(9, "")
    });
    let out = run(&spec, &input);
    use DeadLetterReason::*;
    assert_eq!(
        reasons(&out),
        [
            (0, Undecodable),
            (1, NotAnObject),
            (2, BadEventTime),
            (3, BadEventTime),
            (4, ExpressionError),
            (5, ExpressionError),
            (7, Late),
            (8, Undecodable),
            (9, Undecodable),
        ]
    );
    let late: Value = serde_json::from_slice(&out.dead_letters[6].to_json()).unwrap();
    assert_eq!(late["reason"], "late");
    assert_eq!(late["topic"], "events");
    assert_eq!(late["partition"], 0);
    assert_eq!(late["offset"], 7);
    assert_eq!(late["payload"], r#"{"ts": 15, "k": "a", "v": 1}"#);
    let binary: Value = serde_json::from_slice(&out.dead_letters[8].to_json()).unwrap();
    assert_eq!(binary["payload_base64"], "//4=");
    // Without an event-time field, a record without a timestamp has no event time.
    let no_timestamp = SourceRecord {
        timestamp_ms: None,
        ..record(0, "{}")
    };
    let out = run(&spec_with("", ""), &[no_timestamp]);
    assert_eq!(reasons(&out), [(0, BadEventTime)]);
}

/// Window results as (key, start, end, the rest of the object).
fn results(out: &Outputs) -> Vec<(String, i64, i64, Value)> {
    values(out)
        .into_iter()
        .map(|mut v| {
            let object = v.as_object_mut().unwrap();
            let key = object.remove("key").unwrap().as_str().unwrap().to_string();
            let start = object.remove("window_start").unwrap().as_i64().unwrap();
            let end = object.remove("window_end").unwrap().as_i64().unwrap();
            (key, start, end, v)
        })
        .collect()
}

fn event(ts: i64, k: &str, v: Value) -> Value {
    json!({"ts": ts, "k": k, "v": v})
}

#[test]
fn tumbling_windows_fire_once_when_the_watermark_passes_their_end() {
    let spec = spec_with(
        "  event_time: ts\n  max_out_of_orderness: 5ms\n",
        r#"key_by: "k"
        window: { tumbling: 10ms }
        aggregate: { n: "count()", total: "sum(v)", low: "min(v)", high: "max(v)", mean: "avg(v)" }"#,
    );
    let input = records(&[
        event(1, "a", json!(1)),
        event(12, "b", json!(2)),
        event(3, "a", json!(3)), // out of order, window [0, 10) still open (W = 7)
        event(14, "a", json!(2.5)),
        event(9, "b", json!(4)),  // W = 9: [0, 10) open until W >= 10
        event(15, "b", json!(1)), // W = 10: fires [0, 10) for a and b
        event(8, "a", json!(1)),  // late: [0, 10) has fired
        event(40, "c", json!(1)), // W = 35: fires [10, 20)
    ]);
    let out = run(&spec, &input);
    assert_eq!(reasons(&out), [(6, DeadLetterReason::Late)]);
    assert_eq!(
        results(&out),
        [
            (
                "a".into(),
                0,
                10,
                json!({"n": 2, "total": 4, "low": 1, "high": 3, "mean": 2.0})
            ),
            (
                "b".into(),
                0,
                10,
                json!({"n": 1, "total": 4, "low": 4, "high": 4, "mean": 4.0})
            ),
            (
                "a".into(),
                10,
                20,
                json!({"n": 1, "total": 2.5, "low": 2.5, "high": 2.5, "mean": 2.5})
            ),
            (
                "b".into(),
                10,
                20,
                json!({"n": 2, "total": 3, "low": 1, "high": 2, "mean": 1.5})
            ),
        ]
    );
    assert_eq!(keys(&out)[0], Some("a".to_string()));
    // The results of [0, 10) come out with the record that moved the watermark to 10.
    let mut pipeline = Pipeline::compile(&spec).unwrap();
    let mut out = Outputs::new();
    for (i, r) in input.iter().enumerate() {
        let before = out.records.len();
        pipeline.process(r, &mut out).unwrap();
        let fired = out.records.len() - before;
        assert_eq!(
            fired,
            match i {
                5 => 2,
                7 => 2,
                _ => 0,
            },
            "record {i}"
        );
    }
    assert_eq!(pipeline.watermark_ms(), Some(35));
    // The result object's fields come in order: key, bounds, then aggregates by name.
    let text = String::from_utf8(out.records[0].value.clone()).unwrap();
    assert_eq!(
        text,
        r#"{"key":"a","window_start":0,"window_end":10,"high":3,"low":1,"mean":2.0,"n":2,"total":4}"#
    );
}

#[test]
fn allowed_lateness_keeps_windows_open_longer() {
    let spec = spec(
        r#"key_by: "k"
        window: { tumbling: 10ms, allowed_lateness: 5ms }
        aggregate: { n: "count()" }"#,
    );
    let out = run(
        &spec,
        &records(&[
            event(5, "a", json!(0)),
            event(14, "a", json!(0)), // W = 14 < 10 + 5
            event(6, "a", json!(0)),  // still joins [0, 10)
            event(15, "a", json!(0)), // W = 15: fires [0, 10)
            event(7, "a", json!(0)),  // late
        ]),
    );
    assert_eq!(results(&out), [("a".into(), 0, 10, json!({"n": 2}))]);
    assert_eq!(reasons(&out), [(4, DeadLetterReason::Late)]);
}

#[test]
fn sliding_windows_take_events_in_every_open_window() {
    let spec = spec_with(
        "  event_time: ts\n  max_out_of_orderness: 10ms\n",
        r#"key_by: "k"
        window: { sliding: { size: 10ms, slide: 5ms } }
        aggregate: { n: "count()", s: "sum(v)" }"#,
    );
    let out = run(
        &spec,
        &records(&[
            event(7, "a", json!(1)),   // [0, 10), [5, 15)
            event(12, "a", json!(2)),  // [5, 15), [10, 20); W = 2
            event(3, "a", json!(4)),   // [-5, 5), [0, 10)
            event(1, "a", json!(8)),   // [-5, 5), [0, 10)
            event(25, "a", json!(16)), // W = 15: fires [-5, 5), [0, 10), [5, 15)
            event(4, "a", json!(32)),  // every window of 4 has fired: late
            event(14, "a", json!(64)), // [5, 15) fired, but [10, 20) is open
            event(40, "a", json!(0)),  // W = 30: fires [10, 20), [15, 25), [20, 30)
        ]),
    );
    assert_eq!(
        results(&out),
        [
            ("a".into(), -5, 5, json!({"n": 2, "s": 12})),
            ("a".into(), 0, 10, json!({"n": 3, "s": 13})),
            ("a".into(), 5, 15, json!({"n": 2, "s": 3})),
            ("a".into(), 10, 20, json!({"n": 2, "s": 66})),
            ("a".into(), 20, 30, json!({"n": 1, "s": 16})),
        ]
    );
    assert_eq!(reasons(&out), [(5, DeadLetterReason::Late)]);
}

#[test]
fn sessions_merge_out_of_order_events_and_reject_late_ones() {
    // A session window needs a source partitioned by its key (no shuffle).
    let spec = spec_with(
        "  event_time: ts\n  partitioned_by: k\n",
        r#"key_by: "k"
        window: { session: { gap: 10ms } }
        aggregate: { n: "count()" }"#,
    );
    let out = run(
        &spec,
        &records(&[
            event(100, "a", json!(0)), // [100, 110)
            event(120, "a", json!(0)), // [120, 130); W = 120 fires [100, 110)
            event(115, "a", json!(0)), // merges into [115, 130)
            event(104, "a", json!(0)), // 104 + 10 <= 120 and no open session: late
            event(105, "b", json!(0)), // [105, 115): 115 <= 120: late
            event(111, "b", json!(0)), // [111, 121) still open
            event(140, "a", json!(0)), // W = 140: fires [111, 121) for b and [115, 130) for a
        ]),
    );
    assert_eq!(
        results(&out),
        [
            ("a".into(), 100, 110, json!({"n": 1})),
            ("b".into(), 111, 121, json!({"n": 1})),
            ("a".into(), 115, 130, json!({"n": 2})),
        ]
    );
    assert_eq!(
        reasons(&out),
        [(3, DeadLetterReason::Late), (4, DeadLetterReason::Late)]
    );
}

#[test]
fn results_fire_in_order_of_end_start_and_key() {
    let spec = spec_with(
        "  event_time: ts\n  max_out_of_orderness: 20ms\n",
        r#"key_by: "k"
        window: { sliding: { size: 20ms, slide: 10ms } }
        aggregate: { n: "count()" }"#,
    );
    let out = run(
        &spec,
        &records(&[
            event(15, "b", json!(0)),
            event(5, "c", json!(0)),
            event(15, "a", json!(0)),
            event(100, "z", json!(0)),
        ]),
    );
    let order: Vec<(String, i64, i64)> = results(&out)
        .into_iter()
        .map(|(k, s, e, _)| (k, s, e))
        .collect();
    assert_eq!(
        order,
        [
            ("c".into(), -10, 10),
            ("a".into(), 0, 20),
            ("b".into(), 0, 20),
            ("c".into(), 0, 20),
            ("a".into(), 10, 30),
            ("b".into(), 10, 30),
        ]
    );
}

#[test]
fn stages_after_the_aggregate_see_the_result() {
    let spec = spec(
        r#"key_by: "k"
        window: { tumbling: 10ms }
        aggregate: { n: "count()", total: "sum(v)" }
        filter: "n >= 2"
        map: { who: "key", n: "n", big: "total > 100", since: "window_start" }
        key_by: "'all'""#,
    );
    let out = run(
        &spec,
        &records(&[
            event(1, "a", json!(1)),
            event(2, "a", json!(200)),
            event(3, "b", json!(1)),
            event(20, "c", json!(1)),
        ]),
    );
    assert_eq!(
        values(&out),
        [json!({"who": "a", "n": 2, "big": true, "since": 0})]
    );
    assert_eq!(keys(&out), [Some("all".to_string())]);
    // A failure after the aggregate is dead-lettered with the result as payload.
    let failing = self::spec(
        r#"key_by: "k"
        window: { tumbling: 10ms }
        aggregate: { n: "count()" }
        filter: "missing > 1""#,
    );
    let out = run(
        &failing,
        &records(&[event(1, "a", json!(1)), event(20, "a", json!(1))]),
    );
    assert_eq!(reasons(&out), [(1, DeadLetterReason::ExpressionError)]);
    assert_eq!(
        out.dead_letters[0].payload.as_deref(),
        Some(br#"{"key":"a","window_start":0,"window_end":10,"n":1}"#.as_slice())
    );
}

#[test]
fn the_watermark_only_grows() {
    let spec = spec_with(
        "  event_time: ts\n  max_out_of_orderness: 7ms\n",
        r#"key_by: "k"
        window: { tumbling: 5ms }
        aggregate: { n: "count()" }"#,
    );
    let mut pipeline = Pipeline::compile(&spec).unwrap();
    let mut rng = SmallRng::seed_from_u64(3);
    let mut out = Outputs::new();
    let mut largest: Option<i64> = None;
    assert_eq!(pipeline.watermark_ms(), None);
    for offset in 0..2_000 {
        let ts = rng.gen_range(-50..1_000);
        let value = if rng.gen_bool(0.1) {
            "{\"k\":\"a\"}".to_string()
        } else {
            json!({"ts": ts, "k": "a"}).to_string()
        };
        let before = pipeline.watermark_ms();
        pipeline.process(&record(offset, &value), &mut out).unwrap();
        if value.contains("ts") {
            largest = Some(largest.map_or(ts, |l| l.max(ts)));
        }
        let after = pipeline.watermark_ms();
        assert!(after >= before, "{before:?} -> {after:?}");
        assert_eq!(after, largest.map(|l| l - 7));
    }
}

#[test]
fn compile_refuses_what_cannot_run() {
    // Specs that never passed validation (built in code): the worker checks again, with
    // the same rules, rather than overflowing a stack or looping over 2,000 windows.
    let deep = format!("a{} > 0", " + a".repeat(EXPRESSION_DEPTH_MAX));
    let mut too_deep = spec("filter: \"a > 0\"");
    too_deep.pipeline[0] = weir_core::spec::Stage::Filter(deep);
    let err = Pipeline::compile(&too_deep).unwrap_err();
    assert!(
        matches!(err, CompileError::InvalidSpec(ref e) if e.field == "pipeline[0].filter" && e.message.contains("levels deep")),
        "{err}"
    );
    let mut too_many = spec(
        r#"key_by: "k"
        window: { sliding: { size: 2s, slide: 1s } }
        aggregate: { n: "count()" }"#,
    );
    if let weir_core::spec::Stage::Window(window) = &mut too_many.pipeline[1] {
        window.kind = weir_core::spec::WindowKind::Sliding(weir_core::spec::Sliding {
            size: weir_core::spec::SpecDuration::from_secs(2),
            slide: weir_core::spec::SpecDuration::from_millis(1),
        });
    }
    let err = Pipeline::compile(&too_many).unwrap_err();
    assert!(
        matches!(err, CompileError::InvalidSpec(ref e) if e.field == "pipeline[1].window.sliding" && e.message.contains("2000 windows")),
        "{err}"
    );
    let mut invalid = spec("");
    invalid.sink.topic = invalid.source.topic.clone();
    assert!(matches!(
        Pipeline::compile(&invalid),
        Err(CompileError::InvalidSpec(_))
    ));
}

#[test]
fn a_state_limit_stops_the_pipeline_for_good() {
    let spec = spec_with(
        "  event_time: ts\n  max_out_of_orderness: 1d\n",
        r#"key_by: "k"
        window: { tumbling: 1ms }
        aggregate: { n: "count()" }"#,
    );
    let mut pipeline = Pipeline::compile(&spec).unwrap();
    let mut out = Outputs::new();
    let input: Vec<_> = (0..=OPEN_WINDOWS_PER_KEY_MAX as i64)
        .map(|ts| record(ts, &json!({"ts": ts, "k": "a"}).to_string()))
        .collect();
    let err = pipeline.process_batch(&input, &mut out).unwrap_err();
    assert_eq!(
        err,
        PipelineError::StateLimit(StateLimit::OpenWindowsPerKey)
    );
    assert!(err.to_string().contains("open windows of one key"), "{err}");
    let again = pipeline.process(&record(0, r#"{"ts":0,"k":"b"}"#), &mut out);
    assert_eq!(again, Err(err));
    assert!(pipeline.state_bytes() > OPEN_WINDOWS_PER_KEY_MAX * 80);
}

#[test]
fn restore_refuses_other_pipelines_and_corrupt_bytes() {
    let spec = spec(
        r#"key_by: "k"
        window: { tumbling: 10ms }
        aggregate: { n: "count()" }"#,
    );
    let mut pipeline = Pipeline::compile(&spec).unwrap();
    let mut out = Outputs::new();
    pipeline
        .process_batch(
            &records(&[event(1, "a", json!(0)), event(2, "b", json!(0))]),
            &mut out,
        )
        .unwrap();
    let bytes = pipeline.snapshot();
    assert!(Pipeline::restore(&spec, &bytes).is_ok());
    // Changing the sink keeps the state valid; changing a stage does not.
    let mut other_sink = spec.clone();
    other_sink.sink.topic = "elsewhere".into();
    assert!(Pipeline::restore(&other_sink, &bytes).is_ok());
    let other = self::spec(
        r#"key_by: "k"
        window: { tumbling: 20ms }
        aggregate: { n: "count()" }"#,
    );
    assert_eq!(
        Pipeline::restore(&other, &bytes).unwrap_err(),
        RestoreError::SpecMismatch
    );
    for cut in 0..bytes.len() {
        assert!(
            matches!(
                Pipeline::restore(&spec, &bytes[..cut]),
                Err(RestoreError::Corrupt(_))
            ),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        Pipeline::restore(&spec, &longer),
        Err(RestoreError::Corrupt(_))
    ));
    let mut version = bytes.clone();
    version[8] = 9;
    assert_eq!(
        Pipeline::restore(&spec, &version).unwrap_err(),
        RestoreError::UnknownVersion(9)
    );
    // Flipping any byte after the header is refused or restores some valid state: never
    // a panic.
    for at in 44..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x5a;
        let _ = Pipeline::restore(&spec, &flipped);
    }
}

/// The jobs the checkpoint property runs over: every window kind, dedupe before and
/// after the window, filters and maps.
fn checkpoint_specs() -> Vec<JobSpec> {
    let ooo = "  event_time: ts\n  max_out_of_orderness: 20ms\n";
    vec![
        spec_with(
            ooo,
            r#"filter: "v != 13"
            dedupe: { key: "id", ttl: 30ms }
            key_by: "k"
            window: { tumbling: 25ms, allowed_lateness: 10ms }
            aggregate: { n: "count()", s: "sum(v)", lo: "min(v)", hi: "max(v)", m: "avg(v)" }
            filter: "n > 1""#,
        ),
        spec_with(
            &format!("{ooo}  partitioned_by: k\n"),
            r#"map: { k: "k", v: "v + v", id: "id" }
            key_by: "k"
            window: { sliding: { size: 40ms, slide: 15ms } }
            aggregate: { n: "count()", s: "sum(v)" }
            dedupe: { key: "n", ttl: 50ms }"#,
        ),
        spec_with(
            &format!("{ooo}  partitioned_by: k\n"),
            r#"key_by: "k"
            window: { session: { gap: 12ms }, allowed_lateness: 5ms }
            aggregate: { n: "count()", s: "sum(v)", hi: "max(v)" }"#,
        ),
        spec_with(
            ooo,
            r#"dedupe: { key: "id", ttl: 25ms }
            key_by: "k""#,
        ),
    ]
}

/// Random events: keys, ids that repeat, integer and double values, times that move
/// forward with jitter, and some bad records.
fn random_records(rng: &mut SmallRng, count: usize) -> Vec<SourceRecord> {
    let mut clock = 0i64;
    (0..count as i64)
        .map(|offset| {
            clock += rng.gen_range(0..6);
            let ts = clock - rng.gen_range(0..40);
            let v = if rng.gen_bool(0.8) {
                json!(rng.gen_range(-20..20))
            } else {
                json!(rng.gen_range(-20.0..20.0))
            };
            let k = ["a", "b", "c", "d", "e"][rng.gen_range(0..5)];
            let id = rng.gen_range(0..30);
            let text = match rng.gen_range(0..100) {
                0 => "garbage".to_string(),
                1 => json!({"k": k, "v": v}).to_string(),
                2 => json!({"ts": ts, "k": k, "v": "text", "id": id}).to_string(),
                _ => json!({"ts": ts, "k": k, "v": v, "id": id}).to_string(),
            };
            record(offset, &text)
        })
        .collect()
}

#[test]
fn snapshot_restore_continue_equals_an_uninterrupted_run() {
    let mut rng = SmallRng::seed_from_u64(99);
    for spec in checkpoint_specs() {
        for _ in 0..12 {
            let input = random_records(&mut rng, 400);
            let expected = run(&spec, &input);
            assert!(!expected.records.is_empty());
            // Checkpoint at a few random boundaries, restoring each time.
            let mut cuts: Vec<usize> = (0..3).map(|_| rng.gen_range(0..=input.len())).collect();
            cuts.sort_unstable();
            let mut pipeline = Pipeline::compile(&spec).unwrap();
            let mut out = Outputs::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([input.len()]) {
                pipeline.process_batch(&input[at..cut], &mut out).unwrap();
                at = cut;
                let bytes = pipeline.snapshot();
                pipeline = Pipeline::restore(&spec, &bytes).unwrap();
                // A restored pipeline writes back exactly what it read.
                assert_eq!(pipeline.snapshot(), bytes);
            }
            assert_eq!(out, expected);
        }
    }
}

/// A local copy of a pipeline's state kept only from its changes, as a worker's redb
/// copy is: full changes replace it, others update and delete keys.
#[derive(Default)]
struct CopyFromChanges {
    header: Vec<u8>,
    entries: std::collections::BTreeMap<(u32, String), Vec<u8>>,
}

impl CopyFromChanges {
    fn apply(&mut self, changes: StateChanges) {
        if changes.full {
            self.entries.clear();
        }
        self.header = changes.header;
        for entry in changes.entries {
            match entry.value {
                Some(value) => self.entries.insert((entry.section, entry.key), value),
                None => self.entries.remove(&(entry.section, entry.key)),
            };
        }
    }

    fn entries(&self) -> Vec<StateEntry> {
        self.entries
            .iter()
            .map(|((section, key), value)| StateEntry {
                section: *section,
                key: key.clone(),
                value: Some(value.clone()),
            })
            .collect()
    }
}

#[test]
fn state_kept_from_changes_alone_restores_the_same_pipeline() {
    let mut rng = SmallRng::seed_from_u64(7);
    for spec in checkpoint_specs() {
        for _ in 0..8 {
            let input = random_records(&mut rng, 400);
            let mut pipeline = Pipeline::compile(&spec).unwrap();
            let mut copy = CopyFromChanges::default();
            let mut out = Outputs::new();
            let mut at = 0;
            let mut partial = 0;
            while at < input.len() {
                let cut = (at + rng.gen_range(1..60)).min(input.len());
                pipeline.process_batch(&input[at..cut], &mut out).unwrap();
                at = cut;
                let changes = pipeline.take_changes();
                assert_eq!(changes.full, copy.header.is_empty());
                if !changes.full {
                    partial += 1;
                }
                copy.apply(changes);
                let restored = Pipeline::restore_entries(
                    &spec,
                    PipelineRole::Whole,
                    &copy.header,
                    &copy.entries(),
                )
                .unwrap();
                assert_eq!(restored.snapshot(), pipeline.snapshot());
                // A restored pipeline's first changes are full again.
                if rng.gen_bool(0.2) {
                    pipeline = restored;
                    copy = CopyFromChanges::default();
                }
            }
            assert!(partial > 0);
        }
    }
}

#[test]
fn changes_name_only_the_keys_that_changed() {
    let spec = spec(
        r#"key_by: "k"
        window: { tumbling: 100ms }
        aggregate: { n: "count()" }"#,
    );
    let mut pipeline = Pipeline::compile(&spec).unwrap();
    let mut out = Outputs::new();
    let event = |ts: i64, k: &str| json!({"ts": ts, "k": k}).to_string();
    let input: Vec<SourceRecord> = [(1, "a"), (2, "b"), (3, "c")]
        .iter()
        .enumerate()
        .map(|(i, (ts, k))| record(i as i64, &event(*ts, k)))
        .collect();
    pipeline.process_batch(&input, &mut out).unwrap();
    let first = pipeline.take_changes();
    assert!(first.full);
    assert_eq!(first.entries.len(), 3);
    assert!(!pipeline.take_changes().full, "nothing changed");
    pipeline
        .process(&record(3, &event(4, "b")), &mut out)
        .unwrap();
    let second = pipeline.take_changes();
    assert!(!second.full);
    let keys: Vec<&str> = second.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["b"]);
    // The watermark passes the window's end: every key's window fires and is deleted.
    pipeline
        .process(&record(4, &event(250, "d")), &mut out)
        .unwrap();
    let third = pipeline.take_changes();
    let deleted: Vec<&str> = third
        .entries
        .iter()
        .filter(|e| e.value.is_none())
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(deleted, ["a", "b", "c"]);
    assert!(third
        .entries
        .iter()
        .any(|e| e.key == "d" && e.value.is_some()));
}

#[test]
fn snapshots_are_deterministic() {
    let spec = &checkpoint_specs()[0];
    let input = random_records(&mut SmallRng::seed_from_u64(5), 300);
    let snapshot_after = |records: &[SourceRecord]| {
        let mut pipeline = Pipeline::compile(spec).unwrap();
        pipeline
            .process_batch(records, &mut Outputs::new())
            .unwrap();
        pipeline.snapshot()
    };
    assert_eq!(snapshot_after(&input), snapshot_after(&input));
}

#[test]
fn pipelines_can_move_between_threads() {
    fn is_send<T: Send>(_: &T) {}
    let pipeline = Pipeline::compile(&checkpoint_specs()[0]).unwrap();
    is_send(&pipeline);
}

/// Prints the throughput of a keyed tumbling-window count over 10,000 keys (the
/// benchmark's shape). Not an assertion: run it with `--release -- --nocapture` for a
/// figure; `WEIR_OPERATORS_EVENTS` sets the number of events.
#[test]
#[allow(clippy::disallowed_methods)] // a wall-clock figure for people, not for the logic
fn throughput_figure() {
    let events: usize = std::env::var("WEIR_OPERATORS_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    // Event time advances 1 ms every `per_ms` events: 1,000 puts 100 events of each key in
    // a window; 1 makes every event open and fire a window of its own.
    let per_ms: i64 = std::env::var("WEIR_OPERATORS_EVENTS_PER_MS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let spec = spec_with(
        "",
        r#"key_by: "card_id"
        window: { tumbling: 1s }
        aggregate: { count: "count()" }"#,
    );
    let input: Vec<SourceRecord> = (0..events)
        .map(|i| SourceRecord {
            topic: "events".into(),
            partition: 0,
            offset: i as i64,
            timestamp_ms: Some(1_700_000_000_000 + (i as i64) / per_ms),
            key: None,
            value: Some(
                format!(
                    r#"{{"card_id":"card-{:05}","amount":{}.{:02},"status":"succeeded"}}"#,
                    (i * 7919) % 10_000,
                    i % 500,
                    i % 100
                )
                .into_bytes(),
            ),
        })
        .collect();
    let mut pipeline = Pipeline::compile(&spec).unwrap();
    let mut out = Outputs::new();
    let started = std::time::Instant::now();
    let mut results = 0;
    for batch in input.chunks(1_024) {
        pipeline.process_batch(batch, &mut out).unwrap();
        results += out.records.len();
        out.clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "throughput: {events} events ({per_ms} per ms of event time) in {seconds:.3} s = \
         {:.0} events/s (single thread), {} results",
        events as f64 / seconds,
        results
    );
}
