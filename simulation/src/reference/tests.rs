//! Differential tests: the real worker pipeline and the reference evaluator over the same
//! seeded inputs — out-of-order and late events, garbage bytes, non-object JSON, missing
//! and unreadable times, records without a value — must agree exactly on every output
//! (key and value bytes) and every dead letter (reason and coordinates).

use super::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_broker::BrokerRecord;
use weir_core::spec::parse_job_spec;
use weir_worker::operators::{Outputs, Pipeline};

const TOPIC: &str = "events";
const SEEDS_PER_SPEC: u64 = 50;
/// The event-time cursor starts here (2023-11-14), so RFC 3339 texts look real.
const TIME_START_MS: i64 = 1_700_000_000_000;

/// A spec with `source_extra` source settings and `pipeline` (one YAML flow item a line).
fn spec_with(source_extra: &str, pipeline: &str) -> JobSpec {
    let mut yaml = format!("name: ref-job\nsource:\n  topic: {TOPIC}\n{source_extra}pipeline:\n");
    for line in pipeline.lines().map(str::trim).filter(|l| !l.is_empty()) {
        yaml.push_str(&format!("  - {line}\n"));
    }
    yaml.push_str("sink:\n  topic: results\n");
    parse_job_spec(yaml.as_bytes()).unwrap_or_else(|err| panic!("{err}\n{yaml}"))
}

/// Event time from the field `ts`, the watermark 3 s behind.
fn spec(pipeline: &str) -> JobSpec {
    spec_with("  event_time: ts\n  max_out_of_orderness: 3s\n", pipeline)
}

/// The family of specs every seed runs against, by name.
fn families() -> Vec<(&'static str, JobSpec)> {
    vec![
        (
            "stateless filter, map, key_by",
            spec(
                r#"filter: "amount > 10"
                   map: { card: "card", amount: "amount", big: "amount > 500", ts: "ts", tags: "tags" }
                   key_by: "card""#,
            ),
        ),
        (
            "dedupe with ttl",
            spec(
                r#"dedupe: { key: "id", ttl: 5s }
                   key_by: "card""#,
            ),
        ),
        (
            "tumbling count and sum",
            spec(
                r#"key_by: "card"
                   window: { tumbling: 10s, allowed_lateness: 2s }
                   aggregate: { n: "count()", total: "sum(amount)" }"#,
            ),
        ),
        (
            "sliding count and max",
            spec(
                r#"key_by: "card"
                   window: { sliding: { size: 10s, slide: 4s }, allowed_lateness: 1s }
                   aggregate: { n: "count()", top: "max(price)" }"#,
            ),
        ),
        (
            // Declared partitioned by card: submit refuses a session window after a
            // key_by that repartitions. (The differential runs one partition's records
            // through the pipeline alone, which checks no declaration unless asked.)
            "session count and min",
            spec_with(
                "  event_time: ts\n  max_out_of_orderness: 3s\n  partitioned_by: card\n",
                r#"key_by: "card"
                   window: { session: { gap: 3s }, allowed_lateness: 1s }
                   aggregate: { n: "count()", low: "min(amount)" }"#,
            ),
        ),
        (
            "filter after an aggregate",
            spec(
                r#"filter: "status == 'ok'"
                   key_by: "card"
                   window: { tumbling: 5s }
                   aggregate: { n: "count()", mean: "avg(amount)", total: "sum(amount)" }
                   filter: "n >= 3 && total / (n - 3) > 10""#,
            ),
        ),
        (
            // Declared partitioned by region, as submit refuses a dedupe after a key_by
            // that repartitions.
            "map, key_by and dedupe after an aggregate",
            spec_with(
                "  event_time: ts\n  max_out_of_orderness: 3s\n  partitioned_by: region\n",
                r#"key_by: "region"
                   window: { tumbling: 4s, allowed_lateness: 1s }
                   aggregate: { n: "count()", spent: "sum(price)", cheapest: "min(price)" }
                   map: { region: "key", n: "n", spent: "spent", cheapest: "cheapest", end: "window_end" }
                   key_by: "region + '/' + string(n)"
                   dedupe: { key: "n", ttl: 4s }"#,
            ),
        ),
        (
            // A result rewritten by a map and then failing: the payload is the result
            // as fired.
            "map then a failing filter after an aggregate",
            spec(
                r#"key_by: "card"
                   window: { tumbling: 5s }
                   aggregate: { n: "count()", total: "sum(amount)" }
                   map: { n: "n", t: "total" }
                   filter: "t / (n - 2) > 10""#,
            ),
        ),
        (
            "record timestamps, dedupe on a computed key",
            spec_with(
                "",
                r#"dedupe: { key: "card + ':' + string(amount)", ttl: 2s }
                   map: { card: "card", amount: "amount" }"#,
            ),
        ),
    ]
}

/// Draws one partition's records: mostly events whose times wander forward with jitter,
/// some very late, and a sprinkling of every malformed kind. Two seeds in three put every
/// time on a coarse grid, so that the boundaries (`W == end + L`, `|t - t_prev| == ttl`)
/// are hit exactly, not only by chance.
fn generate(seed: u64) -> Vec<RefRecord> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let grid_ms = [1, 100, 500][(seed % 3) as usize];
    let count = rng.gen_range(200..400);
    let mut cursor_ms = TIME_START_MS + rng.gen_range(-5_000..5_000);
    (0..count)
        .map(|offset| {
            cursor_ms += rng.gen_range(0..600);
            let timestamp_ms = cursor_ms + rng.gen_range(-1_500..200);
            RefRecord {
                partition: 3,
                offset: offset + 100,
                timestamp_ms: timestamp_ms - timestamp_ms.rem_euclid(grid_ms),
                key: None,
                value: value(&mut rng, cursor_ms, grid_ms),
            }
        })
        .collect()
}

fn value(rng: &mut SmallRng, cursor_ms: i64, grid_ms: i64) -> Option<Vec<u8>> {
    let roll = rng.gen_range(0..100);
    let text = match roll {
        0..=1 => return None,
        2..=4 => return Some((0..rng.gen_range(0..12)).map(|_| rng.gen()).collect()),
        5..=7 => ["[1,2]", "\"x\"", "7", "null", "true", " [] "][rng.gen_range(0..6)].to_string(),
        _ => event(rng, cursor_ms, grid_ms, roll < 11),
    };
    Some(text.into_bytes())
}

/// One event object's text; without `ts` when `missing_time`.
fn event(rng: &mut SmallRng, cursor_ms: i64, grid_ms: i64, missing_time: bool) -> String {
    let time_ms = match rng.gen_range(0..100) {
        0..=5 => cursor_ms - rng.gen_range(5_000..30_000),
        _ => cursor_ms + rng.gen_range(-3_000..500),
    };
    let time_ms = time_ms - time_ms.rem_euclid(grid_ms);
    let mut fields: Vec<(String, String)> = Vec::new();
    if !missing_time {
        let ts = match rng.gen_range(0..100) {
            0..=79 => time_ms.to_string(),
            80..=93 => format!("\"{}\"", rfc3339(time_ms, rng.gen_range(0..4))),
            94..=95 => format!("{time_ms}.0"),
            96..=97 => "\"yesterday\"".to_string(),
            _ => "null".to_string(),
        };
        fields.push(("ts".into(), ts));
    }
    let amount = match rng.gen_range(0..100) {
        0..=2 => "\"lots\"".to_string(),
        3..=4 => format!("{}.5", rng.gen_range(0..100)),
        5 => "-0".to_string(),
        _ => rng.gen_range(-50..1_000).to_string(),
    };
    let price = match rng.gen_range(0..10) {
        0..=2 => rng.gen_range(-5..500).to_string(),
        3 => format!("{}e-1", rng.gen_range(1..999)),
        _ => format!("{}.{:02}", rng.gen_range(0..300), rng.gen_range(0..100)),
    };
    fields.push(("card".into(), format!("\"c{}\"", rng.gen_range(0..6))));
    fields.push(("region".into(), format!("\"r{}\"", rng.gen_range(0..2))));
    fields.push(("amount".into(), amount));
    fields.push(("price".into(), price));
    fields.push(("id".into(), format!("\"e{}\"", rng.gen_range(0..40))));
    let status = if rng.gen_bool(0.8) { "ok" } else { "failed" };
    fields.push(("status".into(), format!("\"{status}\"")));
    fields.push((
        "tags".into(),
        r#"{"z": [1, 2.50, {"b": null, "a": true}], "a": "\u00e9"}"#.into(),
    ));
    if rng.gen_bool(0.05) {
        // A repeated name: the last occurrence wins.
        fields.push(("card".into(), format!("\"c{}\"", rng.gen_range(0..6))));
    }
    // Shuffle the field order a little, and vary the whitespace.
    if rng.gen_bool(0.3) {
        fields.reverse();
    }
    let separator = if rng.gen_bool(0.5) { "," } else { " ,\n\t" };
    let body: Vec<String> = fields
        .into_iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{{}}}", body.join(separator))
}

/// `time_ms` as RFC 3339, in four styles of fraction, separator and offset.
fn rfc3339(time_ms: i64, style: u32) -> String {
    let offset_ms = if style == 3 { 7_200_000 } else { 0 };
    let local_ms = time_ms + offset_ms;
    let days = local_ms.div_euclid(86_400_000);
    let ms_of_day = local_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000,
    );
    let date = format!("{year:04}-{month:02}-{day:02}");
    match style {
        0 => format!("{date}T{h:02}:{m:02}:{s:02}.{ms:03}Z"),
        // Nanoseconds that truncate away.
        1 => format!("{date}T{h:02}:{m:02}:{s:02}.{ms:03}999999Z"),
        2 => format!("{date} {h:02}:{m:02}:{s:02}.{ms:03}+00:00"),
        _ => format!("{date}t{h:02}:{m:02}:{s:02}.{ms:03}+02:00"),
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The real worker pipeline's outputs for `records`, in the reference's terms; dead
/// letters go through their wire form and [`parse_dead_letter`].
fn run_worker(spec: &JobSpec, records: &[RefRecord]) -> RefOutputs {
    let input: Vec<BrokerRecord> = records
        .iter()
        .map(|r| BrokerRecord {
            topic: TOPIC.to_string(),
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: Some(r.timestamp_ms),
            key: r.key.clone(),
            value: r.value.clone(),
        })
        .collect();
    let mut pipeline = Pipeline::compile(spec).expect("the worker compiles the spec");
    let mut out = Outputs::new();
    pipeline
        .process_batch(&input, &mut out)
        .expect("the worker processes the records");
    RefOutputs {
        outputs: out
            .records
            .into_iter()
            .map(|r| RefOutput {
                key: r.key.map(String::into_bytes),
                value: r.value,
                route: r.route,
            })
            .collect(),
        dead_letters: out
            .dead_letters
            .iter()
            .map(|d| parse_dead_letter(&d.to_json()).expect("the worker's dead letter reads back"))
            .collect(),
        misplaced: Vec::new(),
    }
}

fn show(bytes: &Option<Vec<u8>>) -> String {
    match bytes {
        None => "None".to_string(),
        Some(b) => format!("{:?}", String::from_utf8_lossy(b)),
    }
}

/// The first difference between two lists, described, or `None` when equal.
fn first_difference<T: PartialEq>(
    what: &str,
    worker: &[T],
    reference: &[T],
    describe: impl Fn(&T) -> String,
) -> Option<String> {
    let index =
        (0..worker.len().max(reference.len())).find(|&i| worker.get(i) != reference.get(i))?;
    Some(format!(
        "{what} differ at #{index} (worker has {}, reference {}):\n  worker:    {}\n  reference: {}",
        worker.len(),
        reference.len(),
        worker.get(index).map_or("-".to_string(), &describe),
        reference.get(index).map_or("-".to_string(), &describe),
    ))
}

fn compare(name: &str, spec: &JobSpec, seed: u64) -> Option<String> {
    let records = generate(seed);
    let worker = run_worker(spec, &records);
    let reference = evaluate_partition(spec, TOPIC, &records).expect("the reference evaluates");
    let outputs = first_difference("outputs", &worker.outputs, &reference.outputs, |o| {
        format!(
            "key {} value {}",
            show(&o.key),
            show(&Some(o.value.clone()))
        )
    });
    let letters = first_difference(
        "dead letters",
        &worker.dead_letters,
        &reference.dead_letters,
        |d| format!("{} @{} payload {}", d.reason, d.offset, show(&d.payload)),
    );
    let problems: Vec<String> = [outputs, letters].into_iter().flatten().collect();
    match problems.is_empty() {
        true => None,
        false => Some(format!("[{name}] seed {seed}: {}", problems.join("\n"))),
    }
}

#[test]
fn the_worker_agrees_with_the_reference_on_every_family() {
    let mut failures = Vec::new();
    for (name, spec) in families() {
        for seed in 0..SEEDS_PER_SPEC {
            if let Some(failure) = compare(name, &spec, seed) {
                failures.push(failure);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n\n")
    );
}

/// The generator does reach every dead-letter reason and every family emits, so the
/// agreement above is not vacuous.
#[test]
fn the_inputs_exercise_every_reason() {
    let mut reasons = std::collections::BTreeSet::new();
    for (name, spec) in families() {
        let mut outputs = 0;
        for seed in 0..5 {
            let result = evaluate_partition(&spec, TOPIC, &generate(seed)).unwrap();
            outputs += result.outputs.len();
            reasons.extend(result.dead_letters.into_iter().map(|d| d.reason));
        }
        assert!(outputs > 0, "{name} emits nothing");
    }
    let expected = [
        "bad_event_time",
        "expression_error",
        "late",
        "not_an_object",
        "undecodable",
    ];
    assert_eq!(reasons.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn windows_fire_in_order_of_end_start_and_key() {
    let spec = spec(
        r#"key_by: "card"
           window: { sliding: { size: 4s, slide: 2s } }
           aggregate: { n: "count()", total: "sum(amount)" }"#,
    );
    let record = |offset: i64, text: &str| RefRecord {
        partition: 0,
        offset,
        timestamp_ms: 0,
        key: None,
        value: Some(text.as_bytes().to_vec()),
    };
    let records = [
        record(0, r#"{"ts": 1000, "card": "b", "amount": 1}"#),
        record(1, r#"{"ts": 1500, "card": "a", "amount": 2.5}"#),
        record(2, r#"{"ts": 9000, "card": "a", "amount": 1}"#),
    ];
    let out = evaluate_partition(&spec, TOPIC, &records).unwrap();
    let values: Vec<String> = out
        .outputs
        .iter()
        .map(|o| String::from_utf8(o.value.clone()).unwrap())
        .collect();
    assert_eq!(
        values,
        [
            r#"{"key":"a","window_start":-2000,"window_end":2000,"n":1,"total":2.5}"#,
            r#"{"key":"b","window_start":-2000,"window_end":2000,"n":1,"total":1}"#,
            r#"{"key":"a","window_start":0,"window_end":4000,"n":1,"total":2.5}"#,
            r#"{"key":"b","window_start":0,"window_end":4000,"n":1,"total":1}"#,
        ]
    );
    assert_eq!(out.outputs[0].key.as_deref(), Some(&b"a"[..]));
}
