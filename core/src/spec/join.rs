//! The `join` stage's settings: a join of the job's source (the *left* side, after the
//! stages before the join) with a second stream (`with`, the *right* side), on a key
//! computed on each side (docs/JOB_SPEC.md). Two families share the settings and the
//! runtime: the *interval* join (`kind: inner | left_outer`), matching
//! `left.ts <= right.ts <= left.ts + within`, and the *temporal* (enrichment) join
//! (`kind: temporal | temporal_left_outer`), which reads the right side as a versioned
//! table and joins each left event with its key's version valid at the event's time. Its
//! checks are here too ([`check_join`]), so the rules of a join live in one file.
//!
//! It is the pipeline stage `join` (`Stage::Join`): validation calls [`check_join`] on its
//! settings and [`check_join_placement`] on where it stands. Its runtime is a third group
//! of tasks reading the right side (`stages.rs`, `JOIN_RIGHT_STAGE`).

use super::duration::SpecDuration;
use super::error::SpecError;
use super::model::{JobSpec, Source};
use super::validate::{check_at_most, check_expression, check_positive, check_topic};
use super::validate::{LATENESS_MAX, WINDOW_SIZE_MAX};
use serde::{Deserialize, Serialize};

/// The longest `within`: both sides' events are kept this long (plus the lateness) in
/// event time, so it bounds the join's state as [`WINDOW_SIZE_MAX`] bounds a window's.
pub const JOIN_WITHIN_MAX: SpecDuration = WINDOW_SIZE_MAX;

/// The settings of a `join` stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The right side: a topic with its own format and event time, read by its own
    /// upstream tasks.
    pub with: Source,
    /// CEL over the left event (the current object at the join): the join key.
    pub left_key: String,
    /// CEL over the right event: the join key.
    pub right_key: String,
    /// Interval kinds: a left event at `t` matches right events at `t` to `t + within`,
    /// both included (required). Temporal kinds: not used, and refused unless zero — a
    /// temporal join keeps versions by the watermark, not by a bound.
    #[serde(default, skip_serializing_if = "SpecDuration::is_zero")]
    pub within: SpecDuration,
    /// Which join, and what an unmatched left event gives.
    #[serde(default)]
    pub kind: JoinKind,
    /// How much later than `within` events are still admitted, and kept; `None` means zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness: Option<SpecDuration>,
}

impl Join {
    /// The allowed lateness, zero when not written.
    pub fn allowed_lateness_or_zero(&self) -> SpecDuration {
        self.allowed_lateness.unwrap_or(SpecDuration::ZERO)
    }
}

/// Which join a `join` stage is, and what an unmatched left event gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// Interval join; nothing for an unmatched left event: only pairs are emitted.
    #[default]
    Inner,
    /// Interval join; `{"left": <event>, "right": null}`, once the watermark has passed
    /// the event's last chance of a match.
    LeftOuter,
    /// Temporal (enrichment) join: each left event with its key's right version valid at
    /// its event time; nothing when the key has none (or it was deleted).
    Temporal,
    /// Temporal join; `{"left": <event>, "right": null}` when the key has no version
    /// valid at the event's time.
    TemporalLeftOuter,
}

impl JoinKind {
    /// Whether this is a temporal (enrichment) join rather than an interval join.
    pub fn is_temporal(self) -> bool {
        matches!(self, JoinKind::Temporal | JoinKind::TemporalLeftOuter)
    }

    /// Whether an unmatched left event gives a result with `"right": null`.
    pub fn is_outer(self) -> bool {
        matches!(self, JoinKind::LeftOuter | JoinKind::TemporalLeftOuter)
    }
}

/// Checks a join's own settings, at spec field `field` (`pipeline[i].join`), in a job
/// `spec`.
pub fn check_join(field: &str, join: &Join, spec: &JobSpec) -> Result<(), SpecError> {
    let with = &join.with;
    let topic_field = format!("{field}.with.topic");
    check_topic(&topic_field, &with.topic)?;
    // One consumer group per job keeps each input partition's offset: the same topic on
    // both sides would share them.
    for (other, name) in [
        (&spec.source.topic, "source.topic"),
        (&spec.sink.topic, "sink.topic"),
        (
            &spec.dead_letter_topic_or_default(),
            "the dead-letter topic",
        ),
    ] {
        if &with.topic == other {
            return Err(SpecError::new(
                topic_field,
                format!("must differ from {name}"),
            ));
        }
    }
    if let Some(event_field) = &with.event_time {
        if event_field.trim().is_empty()
            || event_field.len() > super::validate::EVENT_TIME_FIELD_LEN_MAX
        {
            return Err(SpecError::new(
                format!("{field}.with.event_time"),
                format!(
                    "must name an event field, 1 to {} bytes long",
                    super::validate::EVENT_TIME_FIELD_LEN_MAX
                ),
            ));
        }
    }
    if let Some(delay) = with.max_out_of_orderness {
        check_at_most(
            &format!("{field}.with.max_out_of_orderness"),
            delay,
            LATENESS_MAX,
        )?;
    }
    if with.partitioned_by.is_some() {
        return Err(SpecError::new(
            format!("{field}.with.partitioned_by"),
            "is not supported: a join always repartitions both sides by their key",
        ));
    }
    check_expression(&format!("{field}.left_key"), &join.left_key)?;
    check_expression(&format!("{field}.right_key"), &join.right_key)?;
    if join.kind.is_temporal() {
        if !join.within.is_zero() {
            return Err(SpecError::new(
                format!("{field}.within"),
                "is not used by a temporal join (it keeps each key's versions until the \
                 watermark passes them); remove it",
            ));
        }
    } else {
        check_positive(&format!("{field}.within"), join.within)?;
        check_at_most(&format!("{field}.within"), join.within, JOIN_WITHIN_MAX)?;
    }
    if let Some(lateness) = join.allowed_lateness {
        check_at_most(&format!("{field}.allowed_lateness"), lateness, LATENESS_MAX)?;
    }
    Ok(())
}

/// Where a join may stand, given the kinds of the pipeline's stages in order
/// (`Stage::kind`) and the join's index: at most one join; no `window` or `aggregate`
/// anywhere in the job (a joined record has no window semantics yet); no `dedupe` or
/// `key_by` after it (dedupe's "keep the first" has no first across the two sides'
/// upstream tasks, and the join already keys its results).
pub fn check_join_placement(kinds: &[&str], join_at: usize) -> Result<(), SpecError> {
    for (index, kind) in kinds.iter().enumerate() {
        let field = format!("pipeline[{index}].{kind}");
        let refused = match *kind {
            "join" if index != join_at => Some("a job has at most one join"),
            "window" | "aggregate" => Some("a job with a join has no window"),
            "dedupe" | "key_by" if index > join_at => Some(
                "is not supported after a join; put it before the join (the join keys its \
                 results by the join key)",
            ),
            _ => None,
        };
        if let Some(message) = refused {
            return Err(SpecError::new(field, message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_job_spec;

    fn job() -> JobSpec {
        parse_job_spec(
            b"name: auth-capture\nsource: { topic: authorizations, event_time: ts }\nsink: { topic: matched }\n",
        )
        .unwrap()
    }

    fn join(yaml: &str) -> Result<Join, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    const JOIN: &str = r#"
with: { topic: captures, format: json, event_time: ts, max_out_of_orderness: 5s }
left_key: "payment_id"
right_key: "payment_id"
within: 7d
kind: left_outer
allowed_lateness: 1s
"#;

    #[test]
    fn a_join_reads_and_writes_back_as_written() {
        let parsed = join(JOIN).unwrap();
        assert_eq!(parsed.kind, JoinKind::LeftOuter);
        assert_eq!(parsed.within, SpecDuration::from_secs(7 * 24 * 3600));
        assert_eq!(parsed.with.topic, "captures");
        let json = serde_json::to_string(&parsed).unwrap();
        assert_eq!(serde_json::from_str::<Join>(&json).unwrap(), parsed);
        check_join("pipeline[0].join", &parsed, &job()).unwrap();
        // kind defaults to inner, lateness to zero.
        let minimal =
            join("with: { topic: captures }\nleft_key: a\nright_key: b\nwithin: 1s\n").unwrap();
        assert_eq!(minimal.kind, JoinKind::Inner);
        assert_eq!(minimal.allowed_lateness_or_zero(), SpecDuration::ZERO);
        assert!(
            join("with: { topic: c }\nleft_key: a\nright_key: b\nwithin: 1s\nkind: outer\n")
                .is_err()
        );
        assert!(
            join("with: { topic: c }\nleft_key: a\nright_key: b\nwithin: 1s\nextra: 1\n").is_err()
        );
    }

    #[test]
    fn each_bad_setting_is_refused_naming_its_field() {
        let field_of = |edit: &dyn Fn(&mut Join)| {
            let mut parsed = join(JOIN).unwrap();
            edit(&mut parsed);
            check_join("pipeline[2].join", &parsed, &job())
                .err()
                .map(|e| e.field)
        };
        type Edit<'a> = &'a dyn Fn(&mut Join);
        let cases: [(Edit<'_>, &str); 10] = [
            (
                &|j| j.with.topic = "bad topic".into(),
                "pipeline[2].join.with.topic",
            ),
            (
                &|j| j.with.topic = "authorizations".into(),
                "pipeline[2].join.with.topic",
            ),
            (
                &|j| j.with.topic = "matched".into(),
                "pipeline[2].join.with.topic",
            ),
            (
                &|j| j.with.topic = "auth-capture-dlq".into(),
                "pipeline[2].join.with.topic",
            ),
            (
                &|j| j.with.event_time = Some(" ".into()),
                "pipeline[2].join.with.event_time",
            ),
            (
                &|j| j.with.partitioned_by = Some("payment_id".into()),
                "pipeline[2].join.with.partitioned_by",
            ),
            (&|j| j.left_key = "a +".into(), "pipeline[2].join.left_key"),
            (&|j| j.right_key = "".into(), "pipeline[2].join.right_key"),
            (
                &|j| j.within = SpecDuration::ZERO,
                "pipeline[2].join.within",
            ),
            (
                &|j| j.within = SpecDuration::from_secs(8 * 24 * 3600),
                "pipeline[2].join.within",
            ),
        ];
        for (edit, field) in cases {
            assert_eq!(field_of(edit).as_deref(), Some(field));
        }
        assert_eq!(
            field_of(&|j| j.allowed_lateness = Some(SpecDuration::from_secs(8 * 24 * 3600)))
                .as_deref(),
            Some("pipeline[2].join.allowed_lateness")
        );
        assert_eq!(
            field_of(
                &|j| j.with.max_out_of_orderness = Some(SpecDuration::from_secs(8 * 24 * 3600))
            )
            .as_deref(),
            Some("pipeline[2].join.with.max_out_of_orderness")
        );
    }

    #[test]
    fn a_temporal_join_takes_no_within_and_an_interval_join_needs_one() {
        let temporal =
            join("with: { topic: merchants }\nleft_key: merchant\nright_key: id\nkind: temporal\n")
                .unwrap();
        assert!(temporal.kind.is_temporal() && !temporal.kind.is_outer());
        assert!(temporal.within.is_zero());
        check_join("pipeline[0].join", &temporal, &job()).unwrap();
        let json = serde_json::to_string(&temporal).unwrap();
        assert!(!json.contains("within"), "{json}");
        assert_eq!(serde_json::from_str::<Join>(&json).unwrap(), temporal);
        let outer =
            join("with: { topic: m }\nleft_key: a\nright_key: b\nkind: temporal_left_outer\n")
                .unwrap();
        assert!(outer.kind.is_temporal() && outer.kind.is_outer());
        let field = |yaml: &str| {
            check_join("pipeline[1].join", &join(yaml).unwrap(), &job())
                .unwrap_err()
                .field
        };
        assert_eq!(
            field("with: { topic: m }\nleft_key: a\nright_key: b\nkind: temporal\nwithin: 1s\n"),
            "pipeline[1].join.within"
        );
        assert_eq!(
            field("with: { topic: m }\nleft_key: a\nright_key: b\nkind: inner\n"),
            "pipeline[1].join.within"
        );
    }

    #[test]
    fn one_join_no_window_and_nothing_keyed_after_it() {
        assert!(check_join_placement(&["filter", "join", "map", "filter"], 1).is_ok());
        assert!(check_join_placement(&["key_by", "dedupe", "join"], 2).is_ok());
        let field = |kinds: &[&str], at| check_join_placement(kinds, at).unwrap_err().field;
        assert_eq!(field(&["join", "join"], 0), "pipeline[1].join");
        assert_eq!(
            field(&["key_by", "window", "aggregate", "join"], 3),
            "pipeline[1].window"
        );
        assert_eq!(field(&["join", "dedupe"], 0), "pipeline[1].dedupe");
        assert_eq!(field(&["join", "map", "key_by"], 0), "pipeline[2].key_by");
    }

    #[test]
    fn the_reference_examples_are_accepted_specs() {
        let doc = include_str!("../../../docs/JOB_SPEC.md");
        let mut section = &doc[doc.find("## Interval join").expect("the join section")..];
        section = &section[..section.find("\n## ").unwrap_or(section.len())];
        let mut kinds = Vec::new();
        while let Some(start) = section.find("```yaml\n") {
            let start = start + 8;
            let len = section[start..].find("```").expect("the example ends");
            let example = &section[start..start + len];
            section = &section[start + len..];
            let spec = format!("name: auth-capture\n{example}");
            let spec = parse_job_spec(spec.as_bytes()).unwrap();
            let Some(crate::spec::Stage::Join(join)) = spec
                .pipeline
                .iter()
                .find(|stage| matches!(stage, crate::spec::Stage::Join(_)))
            else {
                panic!("an example without a join: {example}");
            };
            assert_eq!(join.left_key, "payment_id");
            kinds.push(join.kind);
        }
        assert_eq!(kinds, [JoinKind::Inner, JoinKind::LeftOuter]);
    }

    #[test]
    fn the_temporal_join_examples_are_accepted_specs() {
        let doc = include_str!("../../../docs/JOB_SPEC.md");
        let mut section = &doc[doc.find("## Temporal join").expect("the temporal section")..];
        section = &section[..section.find("\n## ").unwrap_or(section.len())];
        let mut kinds = Vec::new();
        while let Some(start) = section.find("```yaml\n") {
            let start = start + 8;
            let len = section[start..].find("```").expect("the example ends");
            let example = &section[start..start + len];
            section = &section[start + len..];
            let spec = format!("name: payments-with-risk\n{example}");
            let spec = parse_job_spec(spec.as_bytes()).unwrap();
            let Some(crate::spec::Stage::Join(join)) = spec
                .pipeline
                .iter()
                .find(|stage| matches!(stage, crate::spec::Stage::Join(_)))
            else {
                panic!("an example without a join: {example}");
            };
            assert_eq!(join.with.topic, "merchant-risk");
            assert!(join.within.is_zero());
            kinds.push(join.kind);
        }
        assert_eq!(kinds, [JoinKind::Temporal, JoinKind::TemporalLeftOuter]);
    }

    #[test]
    fn a_spec_with_a_bad_join_is_refused_naming_the_field() {
        let field = |pipeline: &str| {
            let yaml = format!(
                "name: j\nsource: {{ topic: auths, event_time: ts }}\npipeline: [{pipeline}]\n\
                 sink: {{ topic: matched }}\nroutes: [{{ when: \"true\", topic: big }}]\n"
            );
            parse_job_spec(yaml.as_bytes()).err().map(|e| e.field)
        };
        let join = |with: &str, within: &str| {
            format!(
                "{{ join: {{ with: {{ topic: {with} }}, left_key: id, right_key: id, within: {within} }} }}"
            )
        };
        assert_eq!(field(&join("captures", "1h")), None);
        let temporal = |extra: &str| {
            format!(
                "{{ join: {{ with: {{ topic: risk }}, left_key: m, right_key: m, kind: temporal{extra} }} }}"
            )
        };
        assert_eq!(field(&temporal("")), None);
        assert_eq!(
            field(&temporal(", within: 1h")).as_deref(),
            Some("pipeline[0].join.within")
        );
        assert_eq!(
            field(&format!(
                "{{ filter: \"true\" }}, {}",
                join("captures", "8d")
            ))
            .as_deref(),
            Some("pipeline[1].join.within")
        );
        assert_eq!(
            field(&join("auths", "1h")).as_deref(),
            Some("pipeline[0].join.with.topic")
        );
        assert_eq!(
            field(&join("big", "1h")).as_deref(),
            Some("pipeline[0].join.with.topic")
        );
        assert_eq!(
            field(&format!("{}, {}", join("a", "1h"), join("b", "1h"))).as_deref(),
            Some("pipeline[1].join")
        );
        assert_eq!(
            field(&format!(
                "{}, {{ dedupe: {{ key: id, ttl: 1h }} }}",
                join("a", "1h")
            ))
            .as_deref(),
            Some("pipeline[1].dedupe")
        );
        assert_eq!(
            field(&format!(
                "{{ key_by: id }}, {{ window: {{ tumbling: 1m }} }}, {{ aggregate: {{ n: \"count()\" }} }}, {}",
                join("a", "1h")
            ))
            .as_deref(),
            Some("pipeline[1].window")
        );
    }
}
