//! Reading a submitted job spec body, YAML or JSON, into a validated [`JobSpec`]. Decoding
//! errors are mapped to the same field paths validation uses, so a user gets
//! `pipeline[4].window.tumbling` whether the value was unreadable or merely out of range.

use super::error::SpecError;
use super::model::JobSpec;
use super::validate::validate;
use serde_path_to_error::{Path, Segment};
use std::fmt::{Display, Write as _};

/// The largest spec body accepted, in bytes. Real specs are a few hundred bytes; the bound
/// keeps a hostile body from costing the coordinator more than a moment to reject.
pub const SPEC_LEN_MAX_BYTES: usize = 256 * 1024;

/// The field named when an error is about the body as a whole.
const FIELD_WHOLE_SPEC: &str = "spec";

/// Reads a job spec from YAML or JSON and validates it.
///
/// A body starting with `{` is read as JSON first; if it is not JSON it is read as YAML,
/// which also accepts JSON-like flow maps. Unknown fields are rejected by name.
pub fn parse_job_spec(body: &[u8]) -> Result<JobSpec, SpecError> {
    let spec = decode(body)?;
    validate(&spec)?;
    Ok(spec)
}

fn decode(body: &[u8]) -> Result<JobSpec, SpecError> {
    if body.len() > SPEC_LEN_MAX_BYTES {
        return Err(SpecError::new(
            FIELD_WHOLE_SPEC,
            format!(
                "the spec is {} bytes long; the limit is {SPEC_LEN_MAX_BYTES}",
                body.len()
            ),
        ));
    }
    if body.trim_ascii().is_empty() {
        return Err(SpecError::new(FIELD_WHOLE_SPEC, "the spec is empty"));
    }
    if body.trim_ascii_start().starts_with(b"{") {
        match decode_json(body) {
            Ok(spec) => return Ok(spec),
            // Well-formed JSON that is not a valid spec: YAML would say the same, less well.
            Err((path, err)) if err.is_data() => return Err(spec_error(&path, err)),
            // Not JSON: it may still be YAML written in flow style.
            Err(_) => {}
        }
    }
    let deserializer = serde_yaml::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer)
        .map_err(|err| spec_error(&err.path().clone(), err.into_inner()))
}

fn decode_json(body: &[u8]) -> Result<JobSpec, (Path, serde_json::Error)> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let spec = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|err| (err.path().clone(), err.into_inner()))?;
    deserializer.end().map_err(|err| (root_path(), err))?;
    Ok(spec)
}

/// Builds the error for a decoding failure at `path`.
fn spec_error(path: &Path, err: impl Display) -> SpecError {
    let mut field = field_path(path);
    let mut message = err.to_string();
    // serde_yaml starts its messages with its own copy of the path (`?` for a place it could
    // not name, and sometimes one key short); the field already carries it.
    if let Some((prefix, rest)) = message.split_once(": ") {
        let is_path = !prefix.is_empty() && !prefix.contains(char::is_whitespace);
        if is_path && (path.to_string().starts_with(prefix) || prefix.ends_with('?')) {
            message = rest.to_string();
        }
    }
    // For a missing or unknown key, the key itself is the field at fault.
    let named = quoted_after(&message, "missing field `")
        .or_else(|| quoted_after(&message, "unknown field `"));
    if let Some(name) = named {
        if !path_ends_with(path, name) {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
        }
    }
    if field.is_empty() {
        field = FIELD_WHOLE_SPEC.to_string();
    }
    SpecError::new(field, message)
}

/// Renders `path` as `pipeline[2].window.tumbling`; empty for the root.
fn field_path(path: &Path) -> String {
    let mut field = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(field, "[{index}]");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            // A key that is not a string, or a place the parser could not name: blame the
            // closest field that has a name.
            Segment::Unknown => break,
        }
    }
    field
}

fn path_ends_with(path: &Path, name: &str) -> bool {
    matches!(path.iter().next_back(), Some(Segment::Map { key }) if key == name)
}

/// The text between `start` and the next backtick, when `message` begins with `start`.
/// Only a prefix counts: further on, the message may quote the user's own text.
fn quoted_after<'a>(message: &'a str, start: &str) -> Option<&'a str> {
    let after = message.strip_prefix(start)?;
    let (name, _) = after.split_once('`')?;
    Some(name)
}

/// The path of the document as a whole, for errors after its last value.
fn root_path() -> Path {
    serde_path_to_error::Track::new().path()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::fixtures::{SPEC_EXAMPLE_JSON, SPEC_EXAMPLE_YAML};
    use crate::spec::{Delivery, Format, SpecDuration, Stage, WindowKind};

    fn field_of(body: &str) -> String {
        match parse_job_spec(body.as_bytes()) {
            Ok(_) => panic!("accepted:\n{body}"),
            Err(err) => err.field,
        }
    }

    fn message_of(body: &str) -> String {
        match parse_job_spec(body.as_bytes()) {
            Ok(_) => panic!("accepted:\n{body}"),
            Err(err) => err.message,
        }
    }

    /// The contract example without its comments, with `from` replaced by `to`, which must
    /// occur exactly once.
    fn example_with(from: &str, to: &str) -> String {
        let example: String = SPEC_EXAMPLE_YAML
            .lines()
            .map(|line| line.split(" #").next().unwrap_or(line).trim_end())
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(example.matches(from).count(), 1, "{from}");
        example.replace(from, to)
    }

    #[test]
    fn the_contract_example_parses_and_validates() {
        let spec = parse_job_spec(SPEC_EXAMPLE_YAML.as_bytes()).unwrap();
        assert_eq!(spec.name, "card-velocity");
        assert_eq!(spec.source.topic, "payments");
        assert_eq!(spec.source.format, Format::Json);
        assert_eq!(spec.source.event_time.as_deref(), Some("created_at"));
        assert_eq!(
            spec.source.max_out_of_orderness,
            Some(SpecDuration::from_secs(5))
        );
        let kinds: Vec<&str> = spec.pipeline.iter().map(Stage::kind).collect();
        assert_eq!(
            kinds,
            [
                "filter",
                "map",
                "dedupe",
                "key_by",
                "window",
                "aggregate",
                "filter"
            ]
        );
        let Stage::Window(window) = &spec.pipeline[4] else {
            panic!("stage 4 is {:?}", spec.pipeline[4]);
        };
        assert_eq!(
            window.kind,
            WindowKind::Tumbling(SpecDuration::from_secs(60))
        );
        let Stage::Aggregate(outputs) = &spec.pipeline[5] else {
            panic!("stage 5 is {:?}", spec.pipeline[5]);
        };
        assert_eq!(outputs["total"], "sum(amount)");
        assert_eq!(spec.sink.topic, "card-velocity-alerts");
        assert_eq!(spec.sink.delivery, Delivery::ExactlyOnce);
        assert_eq!(spec.dead_letter_topic.as_deref(), Some("card-velocity-dlq"));
        assert_eq!(spec.checkpoint_interval, SpecDuration::from_secs(1));
    }

    #[test]
    fn json_parses_identically_to_yaml() {
        let from_yaml = parse_job_spec(SPEC_EXAMPLE_YAML.as_bytes()).unwrap();
        let from_json = parse_job_spec(SPEC_EXAMPLE_JSON.as_bytes()).unwrap();
        assert_eq!(from_json, from_yaml);
    }

    #[test]
    fn a_spec_round_trips_through_its_own_json_and_yaml() {
        let spec = parse_job_spec(SPEC_EXAMPLE_YAML.as_bytes()).unwrap();
        let json = serde_json::to_vec(&spec).unwrap();
        assert_eq!(parse_job_spec(&json).unwrap(), spec);
        let yaml = serde_yaml::to_string(&spec).unwrap();
        assert!(yaml.contains("- filter: "), "{yaml}");
        assert!(!yaml.contains('!'), "YAML tags leaked:\n{yaml}");
        assert_eq!(parse_job_spec(yaml.as_bytes()).unwrap(), spec);
    }

    #[test]
    fn json_with_leading_whitespace_and_flow_yaml_are_read() {
        let json = format!("\n  {SPEC_EXAMPLE_JSON}");
        assert!(parse_job_spec(json.as_bytes()).is_ok());
        let flow = "{name: j, source: {topic: a}, sink: {topic: b}}";
        let spec = parse_job_spec(flow.as_bytes()).unwrap();
        assert_eq!(spec.name, "j");
        assert_eq!(spec.sink.delivery, Delivery::ExactlyOnce);
        assert!(spec.pipeline.is_empty());
    }

    #[test]
    fn defaults_fill_what_the_spec_leaves_out() {
        let minimal = "name: j\nsource: { topic: a }\nsink: { topic: b }\n";
        let spec = parse_job_spec(minimal.as_bytes()).unwrap();
        assert_eq!(spec.source.format, Format::Json);
        assert_eq!(spec.sink.format, Format::Json);
        assert_eq!(spec.sink.delivery, Delivery::ExactlyOnce);
        assert_eq!(spec.dead_letter_topic, None);
        assert_eq!(spec.dead_letter_topic_or_default(), "j-dlq");
        assert_eq!(spec.checkpoint_interval, SpecDuration::from_secs(1));
        assert_eq!(
            spec.source.max_out_of_orderness_or_zero(),
            SpecDuration::ZERO
        );
        assert_eq!(spec.parallelism, None);
        assert_eq!(spec.source.partitioned_by, None);
    }

    #[test]
    fn parallelism_and_partitioned_by_are_read_and_written_only_when_set() {
        let yaml = "name: j\nsource: { topic: a, partitioned_by: card }\nsink: { topic: b }\n\
                    parallelism: 8\n";
        let spec = parse_job_spec(yaml.as_bytes()).unwrap();
        assert_eq!(spec.parallelism, Some(8));
        assert_eq!(spec.source.partitioned_by.as_deref(), Some("card"));
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("\"parallelism\":8") && json.contains("\"partitioned_by\":\"card\""));
        let minimal = "name: j\nsource: { topic: a }\nsink: { topic: b }\n";
        let json = serde_json::to_string(&parse_job_spec(minimal.as_bytes()).unwrap()).unwrap();
        assert!(
            !json.contains("parallelism") && !json.contains("partitioned_by"),
            "a spec without them is written as before: {json}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let body = example_with("checkpoint_interval: 1s", "checkpoint_intreval: 1s");
        assert_eq!(field_of(&body), "checkpoint_intreval");
        assert!(message_of(&body).contains("unknown field `checkpoint_intreval`"));

        let body = example_with(
            "  format: json\n  event_time",
            "  colour: red\n  event_time",
        );
        assert_eq!(field_of(&body), "source.colour");

        let body = example_with(
            "delivery: exactly_once",
            "delivery: exactly_once\n  acks: all",
        );
        assert_eq!(field_of(&body), "sink.acks");

        let body = example_with("  - key_by: \"card\"", "  - group_by: \"card\"");
        assert_eq!(field_of(&body), "pipeline[3].group_by");

        let body = example_with("{ tumbling: 60s }", "{ tumbling: 60s, watermark: 1s }");
        assert_eq!(field_of(&body), "pipeline[4].window.watermark");

        let body = example_with("ttl: 24h }", "ttl: 24h, scope: global }");
        assert_eq!(field_of(&body), "pipeline[2].dedupe.scope");

        let json = SPEC_EXAMPLE_JSON.replacen("\"name\":", "\"owner\": \"me\", \"name\":", 1);
        assert_eq!(field_of(&json), "owner");
    }

    #[test]
    fn missing_fields_are_named() {
        let body = example_with("  topic: payments\n", "");
        assert_eq!(field_of(&body), "source.topic");
        assert!(message_of(&body).contains("missing field `topic`"));

        let body = example_with("name: card-velocity\n", "");
        assert_eq!(field_of(&body), "name");

        let body = example_with("{ key: \"event_id\", ttl: 24h }", "{ key: \"event_id\" }");
        assert_eq!(field_of(&body), "pipeline[2].dedupe.ttl");

        let json = r#"{"name": "j", "source": {"topic": "a"}}"#;
        assert_eq!(field_of(json), "sink");
    }

    #[test]
    fn unreadable_values_are_named_by_path() {
        let cases = [
            (
                example_with("tumbling: 60s", "tumbling: 60"),
                "pipeline[4].window.tumbling",
            ),
            (
                example_with("tumbling: 60s", "tumbling: 1min"),
                "pipeline[4].window.tumbling",
            ),
            (
                example_with("ttl: 24h", "ttl: soon"),
                "pipeline[2].dedupe.ttl",
            ),
            (
                example_with("format: json\n  event", "format: avro\n  event"),
                "source.format",
            ),
            (
                example_with("delivery: exactly_once", "delivery: maybe"),
                "sink.delivery",
            ),
            (
                example_with("checkpoint_interval: 1s", "checkpoint_interval: 1.5s"),
                "checkpoint_interval",
            ),
            (
                example_with("max_out_of_orderness: 5s", "max_out_of_orderness: -5s"),
                "source.max_out_of_orderness",
            ),
            (
                example_with(
                    "{ tumbling: 60s }",
                    "{ tumbling: 60s, session: { gap: 1s } }",
                ),
                "pipeline[4].window",
            ),
            (
                example_with("{ tumbling: 60s }", "{ sliding: { size: 60s, slide: x } }"),
                "pipeline[4].window.sliding.slide",
            ),
            (
                example_with("{ tumbling: 60s }", "{ session: { gap: [] } }"),
                "pipeline[4].window.session.gap",
            ),
            (
                example_with("  - key_by: \"card\"", "  - key_by: [card]"),
                "pipeline[3].key_by",
            ),
            (
                example_with("  - key_by: \"card\"", "  - key_by"),
                "pipeline[3]",
            ),
            (
                example_with("  - key_by: \"card\"", "  - { key_by: card, filter: x }"),
                "pipeline[3]",
            ),
            (example_with("name: card-velocity", "name: [a]"), "name"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(&body), field, "{body}");
        }
    }

    #[test]
    fn json_errors_are_named_by_path_too() {
        let body = SPEC_EXAMPLE_JSON.replace("\"60s\"", "\"sixty\"");
        assert_eq!(field_of(&body), "pipeline[4].window.tumbling");
        let body = SPEC_EXAMPLE_JSON.replace("\"exactly_once\"", "\"twice\"");
        assert_eq!(field_of(&body), "sink.delivery");
    }

    #[test]
    fn malformed_bodies_blame_the_whole_spec() {
        for body in [
            "",
            " \n\t",
            "just text",
            "[1, 2]",
            "{",
            "\u{0}",
            "- a\nb: 1",
        ] {
            let err = parse_job_spec(body.as_bytes()).unwrap_err();
            assert_eq!(err.field, "spec", "{body:?}: {err}");
        }
        assert_eq!(
            parse_job_spec(&[0xff, 0xfe, 0x00]).unwrap_err().field,
            "spec"
        );
        let huge = vec![b' '; SPEC_LEN_MAX_BYTES + 1];
        assert_eq!(parse_job_spec(&huge).unwrap_err().field, "spec");
    }

    #[test]
    fn a_second_yaml_document_is_rejected() {
        let body = format!("{SPEC_EXAMPLE_YAML}---\nname: other\n");
        assert_eq!(field_of(&body), "spec");
    }

    #[test]
    fn quoted_user_text_does_not_change_the_field() {
        let body = example_with("ttl: 24h", "ttl: \"missing field `x`\"");
        assert_eq!(field_of(&body), "pipeline[2].dedupe.ttl");
    }

    #[test]
    fn yaml_messages_do_not_repeat_the_path() {
        let body = example_with("tumbling: 60s", "tumbling: sixty");
        let err = parse_job_spec(body.as_bytes()).unwrap_err();
        assert_eq!(err.field, "pipeline[4].window.tumbling");
        assert!(
            err.message.starts_with("invalid duration `sixty`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn parsing_runs_validation() {
        let body = example_with("name: card-velocity", "name: Card_Velocity");
        assert_eq!(field_of(&body), "name");
    }
}
