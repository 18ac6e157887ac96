//! Specs shared by the spec module's tests: the example of docs/JOB_SPEC.md, verbatim (a test checks the two agree), and the same
//! job written as JSON. Stage indices in tests refer to this pipeline: 0 filter, 1 map,
//! 2 dedupe, 3 key_by, 4 window, 5 aggregate, 6 filter.

/// The example from docs/JOB_SPEC.md, comments included.
pub(crate) const SPEC_EXAMPLE_YAML: &str = r#"name: card-velocity                 # [a-z0-9-]{1,63}, unique in its tenant
source:
  topic: payments
  format: json                      # each record value is one JSON object
  event_time: created_at            # optional field (RFC 3339 or epoch ms); else the record timestamp
  max_out_of_orderness: 5s          # watermark = max event time seen - this
pipeline:
  - filter: "amount > 0 && status == 'succeeded'"    # CEL over the event
  - map: { card: "card_id", amount: "amount" }       # CEL per output field
  - dedupe: { key: "event_id", ttl: 24h }             # drop repeats of a key seen within ttl
  - key_by: "card"
  - window: { tumbling: 60s }       # or { sliding: { size: 60s, slide: 10s } } or { session: { gap: 30s } }
  - aggregate: { count: "count()", total: "sum(amount)", largest: "max(amount)" }
  - filter: "count >= 5"
sink:
  topic: card-velocity-alerts
  format: json
  delivery: exactly_once            # or at_least_once
dead_letter_topic: card-velocity-dlq   # default: <name>-dlq
checkpoint_interval: 1s
"#;

/// [`SPEC_EXAMPLE_YAML`] as JSON.
pub(crate) const SPEC_EXAMPLE_JSON: &str = r#"{
  "name": "card-velocity",
  "source": {
    "topic": "payments",
    "format": "json",
    "event_time": "created_at",
    "max_out_of_orderness": "5s"
  },
  "pipeline": [
    { "filter": "amount > 0 && status == 'succeeded'" },
    { "map": { "card": "card_id", "amount": "amount" } },
    { "dedupe": { "key": "event_id", "ttl": "24h" } },
    { "key_by": "card" },
    { "window": { "tumbling": "60s" } },
    { "aggregate": { "count": "count()", "total": "sum(amount)", "largest": "max(amount)" } },
    { "filter": "count >= 5" }
  ],
  "sink": {
    "topic": "card-velocity-alerts",
    "format": "json",
    "delivery": "exactly_once"
  },
  "dead_letter_topic": "card-velocity-dlq",
  "checkpoint_interval": "1s"
}"#;

#[test]
fn the_reference_shows_this_example() {
    let doc = include_str!("../../../docs/JOB_SPEC.md");
    let start = doc
        .find("```yaml\n")
        .expect("a yaml block in docs/JOB_SPEC.md")
        + 8;
    let len = doc[start..].find("```").expect("the yaml block ends");
    assert_eq!(&doc[start..start + len], SPEC_EXAMPLE_YAML);
}
