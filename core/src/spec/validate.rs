//! The rules a decoded [`JobSpec`] must meet before the coordinator accepts it. Decoding
//! already fixed the spec's shape; this checks values (names, topics, duration ranges), the
//! order of pipeline stages, and compiles every expression. The first failure, in document
//! order, is reported with the path of the field at fault.

use super::aggregate::parse_aggregate_call;
use super::cel::compile_expression;
use super::duration::SpecDuration;
use super::error::SpecError;
use super::model::{JobSpec, Source};
use super::stage::{Dedupe, Stage, Window, WindowKind};
use std::collections::BTreeMap;

/// The longest job name, so that derived names (`<name>-dlq`, consumer groups,
/// transactional ids) stay within Kafka's limits.
pub const NAME_LEN_MAX: usize = 63;
/// Kafka's limit on a topic name's length.
pub const TOPIC_LEN_MAX: usize = 249;
/// The most stages a pipeline may have.
pub const PIPELINE_STAGES_MAX: usize = 64;
/// The most outputs one `map` or `aggregate` stage may have.
pub const STAGE_OUTPUTS_MAX: usize = 64;
/// The longest output name of a `map` or `aggregate` stage.
pub const OUTPUT_NAME_LEN_MAX: usize = 128;
/// The longest `source.event_time` field name.
pub const EVENT_TIME_FIELD_LEN_MAX: usize = 256;
/// The longest `source.partitioned_by` field name.
pub const PARTITIONED_BY_FIELD_LEN_MAX: usize = 256;
/// The most routes a job may have.
pub const ROUTES_MAX: usize = 16;
/// The largest `parallelism`: partitions of a repartition topic, and actors of a stage.
/// The broker seam's bound on a topic's partitions.
pub const PARALLELISM_MAX: u32 = 10_000;
/// The longest window (tumbling or sliding size, session gap). Window state lives until the
/// window closes, so this bounds how long a partition holds state for one key.
pub const WINDOW_SIZE_MAX: SpecDuration = SpecDuration::from_secs(7 * 24 * 3600);
/// The most event time may lag (`max_out_of_orderness`, `allowed_lateness`): each keeps
/// closed windows' state alive for as long.
pub const LATENESS_MAX: SpecDuration = SpecDuration::from_secs(7 * 24 * 3600);
/// The most windows one event may belong to: a sliding window's size / slide, rounded up.
/// Each event updates every one of them, so this bounds the work per event.
pub const WINDOWS_PER_EVENT_MAX: u64 = 1_000;
/// The longest dedupe `ttl`: a key is remembered this long in event time (and its state
/// kept as long).
pub const DEDUPE_TTL_MAX: SpecDuration = SpecDuration::from_secs(366 * 24 * 3600);
/// The shortest checkpoint interval: each checkpoint commits a Kafka transaction.
pub const CHECKPOINT_INTERVAL_MIN: SpecDuration = SpecDuration::from_millis(100);
/// The longest checkpoint interval. Each checkpoint commits the Kafka transaction that has
/// been open since the one before, and Kafka aborts a transaction older than the writers'
/// `transaction.timeout.ms` (60 s, `weir_broker::kafka::TRANSACTION_TIMEOUT_MS`); a
/// checkpoint postponed while the coordinator group is unreachable waits one interval more.
/// Two intervals and the commit itself must fit in the timeout, or a partition would have
/// every transaction aborted and never get past its first batch after recovery.
pub const CHECKPOINT_INTERVAL_MAX: SpecDuration = SpecDuration::from_secs(20);

/// The fields every window result carries besides its aggregates.
const WINDOW_RESULT_FIELDS: [&str; 3] = ["key", "window_start", "window_end"];

/// Words CEL reserves; an output with such a name could not be referred to by later stages.
const CEL_RESERVED_WORDS: [&str; 21] = [
    "as",
    "break",
    "const",
    "continue",
    "else",
    "false",
    "for",
    "function",
    "if",
    "import",
    "in",
    "let",
    "loop",
    "namespace",
    "null",
    "package",
    "return",
    "true",
    "var",
    "void",
    "while",
];

/// Checks every rule of the contract's job spec; the error names the first field at fault.
pub fn validate(spec: &JobSpec) -> Result<(), SpecError> {
    check_name(&spec.name)?;
    check_source(&spec.source)?;
    check_pipeline(&spec.pipeline)?;
    check_topic("sink.topic", &spec.sink.topic)?;
    if spec.sink.topic == spec.source.topic {
        return Err(SpecError::new(
            "sink.topic",
            "must differ from source.topic, or the job would read its own output",
        ));
    }
    check_dead_letter_topic(spec)?;
    check_routes(spec)?;
    check_range(
        "checkpoint_interval",
        spec.checkpoint_interval,
        CHECKPOINT_INTERVAL_MIN,
        CHECKPOINT_INTERVAL_MAX,
    )?;
    check_parallelism(spec.parallelism)?;
    check_joins(spec)?;
    super::stages::check_shuffle_supported(spec)
        .map_err(|(field, message)| SpecError::new(field, message))
}

fn check_parallelism(parallelism: Option<u32>) -> Result<(), SpecError> {
    match parallelism {
        Some(count) if !(1..=PARALLELISM_MAX).contains(&count) => Err(SpecError::new(
            "parallelism",
            format!("{count} is outside the allowed range of 1 to {PARALLELISM_MAX}"),
        )),
        _ => Ok(()),
    }
}

fn check_name(name: &str) -> Result<(), SpecError> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if name.is_empty() || name.len() > NAME_LEN_MAX || !valid_chars {
        return Err(SpecError::new(
            "name",
            format!(
                "`{}` is not a job name: use 1 to {NAME_LEN_MAX} lowercase letters, digits \
                 and '-'",
                truncated(name)
            ),
        ));
    }
    Ok(())
}

fn check_source(source: &Source) -> Result<(), SpecError> {
    check_topic("source.topic", &source.topic)?;
    if let Some(field) = &source.event_time {
        if field.trim().is_empty() || field.len() > EVENT_TIME_FIELD_LEN_MAX {
            return Err(SpecError::new(
                "source.event_time",
                format!("must name an event field, 1 to {EVENT_TIME_FIELD_LEN_MAX} bytes long"),
            ));
        }
    }
    if let Some(delay) = source.max_out_of_orderness {
        check_at_most("source.max_out_of_orderness", delay, LATENESS_MAX)?;
    }
    if let Some(field) = &source.partitioned_by {
        check_partitioned_by(field)?;
    }
    Ok(())
}

/// A field a `key_by` can name as it is: a CEL identifier, not a reserved word.
fn check_partitioned_by(field: &str) -> Result<(), SpecError> {
    const FIELD: &str = "source.partitioned_by";
    let mut bytes = field.bytes();
    let starts_well = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let continues_well = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !starts_well || !continues_well || field.len() > PARTITIONED_BY_FIELD_LEN_MAX {
        return Err(SpecError::new(
            FIELD,
            format!(
                "`{}` is not a field name a key_by can refer to: use an identifier, \
                 [a-zA-Z_][a-zA-Z0-9_]*, of at most {PARTITIONED_BY_FIELD_LEN_MAX} characters",
                truncated(field)
            ),
        ));
    }
    if CEL_RESERVED_WORDS.contains(&field) {
        return Err(SpecError::new(
            FIELD,
            format!("`{field}` is a reserved word in CEL; a key_by could not refer to it"),
        ));
    }
    Ok(())
}

fn check_dead_letter_topic(spec: &JobSpec) -> Result<(), SpecError> {
    const FIELD: &str = "dead_letter_topic";
    if let Some(topic) = &spec.dead_letter_topic {
        check_topic(FIELD, topic)?;
    }
    let topic = spec.dead_letter_topic_or_default();
    let clash = if topic == spec.sink.topic {
        "sink.topic"
    } else if topic == spec.source.topic {
        "source.topic"
    } else {
        return Ok(());
    };
    let message = match spec.dead_letter_topic {
        Some(_) => format!("must differ from {clash}"),
        None => format!(
            "the default dead-letter topic `{topic}` is also {clash}; set dead_letter_topic \
             to another topic"
        ),
    };
    Err(SpecError::new(FIELD, message))
}

/// Every route names a valid predicate and a topic of its own: not the source (the job
/// would read its own output), the sink, the dead-letter topic or another route's.
fn check_routes(spec: &JobSpec) -> Result<(), SpecError> {
    if spec.routes.len() > ROUTES_MAX {
        return Err(SpecError::new(
            "routes",
            format!("{} routes; the limit is {ROUTES_MAX}", spec.routes.len()),
        ));
    }
    let dead_letters = spec.dead_letter_topic_or_default();
    for (index, route) in spec.routes.iter().enumerate() {
        check_expression(&format!("routes[{index}].when"), &route.when)?;
        let field = format!("routes[{index}].topic");
        check_topic(&field, &route.topic)?;
        let clash = if route.topic == spec.source.topic {
            Some("source.topic".to_string())
        } else if route.topic == spec.sink.topic {
            Some("sink.topic".to_string())
        } else if route.topic == dead_letters {
            Some("the dead-letter topic".to_string())
        } else {
            spec.routes[..index]
                .iter()
                .position(|earlier| earlier.topic == route.topic)
                .map(|earlier| format!("routes[{earlier}].topic"))
        };
        if let Some(clash) = clash {
            return Err(SpecError::new(field, format!("must differ from {clash}")));
        }
    }
    Ok(())
}

/// Kafka's topic rules: `[a-zA-Z0-9._-]{1,249}`, and neither `.` nor `..`.
pub(super) fn check_topic(field: &str, topic: &str) -> Result<(), SpecError> {
    if topic.is_empty() {
        return Err(SpecError::new(field, "must not be empty"));
    }
    let valid_chars = topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if topic.len() > TOPIC_LEN_MAX || !valid_chars || topic == "." || topic == ".." {
        return Err(SpecError::new(
            field,
            format!(
                "`{}` is not a Kafka topic name: use 1 to {TOPIC_LEN_MAX} letters, digits, \
                 '.', '_' and '-'",
                truncated(topic)
            ),
        ));
    }
    Ok(())
}

fn check_pipeline(pipeline: &[Stage]) -> Result<(), SpecError> {
    if pipeline.len() > PIPELINE_STAGES_MAX {
        return Err(SpecError::new(
            "pipeline",
            format!(
                "has {} stages; the limit is {PIPELINE_STAGES_MAX}",
                pipeline.len()
            ),
        ));
    }
    for (index, stage) in pipeline.iter().enumerate() {
        let field = format!("pipeline[{index}].{}", stage.kind());
        check_stage(&field, stage)?;
        let before = pipeline.get(..index).unwrap_or_default();
        check_stage_order(&field, stage, before, pipeline.get(index + 1))?;
    }
    super::identity::check_ids(pipeline)
}

/// A stage's own settings, without regard to its neighbours.
fn check_stage(field: &str, stage: &Stage) -> Result<(), SpecError> {
    match stage {
        Stage::Filter(expression) | Stage::KeyBy(expression) => check_expression(field, expression),
        Stage::Map(outputs) => check_map(field, outputs),
        Stage::Dedupe(dedupe) => check_dedupe(field, dedupe),
        Stage::Window(window) => check_window(field, window),
        Stage::Aggregate(outputs) => check_aggregate(field, outputs),
        // Checked with the whole spec in view (its topics): `check_joins`.
        Stage::Join(_) => Ok(()),
    }
}

/// A `join`'s own settings (its topic against the job's) and where it stands.
fn check_joins(spec: &JobSpec) -> Result<(), SpecError> {
    let kinds: Vec<&str> = spec.pipeline.iter().map(Stage::kind).collect();
    for (index, stage) in spec.pipeline.iter().enumerate() {
        if let Stage::Join(join) = stage {
            super::join::check_join_placement(&kinds, index)?;
            super::join::check_join(&format!("pipeline[{index}].join"), join, spec)?;
            for (route_index, route) in spec.routes.iter().enumerate() {
                if route.topic == join.with.topic {
                    return Err(SpecError::new(
                        format!("pipeline[{index}].join.with.topic"),
                        format!("must differ from routes[{route_index}].topic"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Where a stage may stand: one window, after a key_by, directly followed by its aggregate.
fn check_stage_order(
    field: &str,
    stage: &Stage,
    before: &[Stage],
    next: Option<&Stage>,
) -> Result<(), SpecError> {
    match stage {
        Stage::Window(_) => {
            if before.iter().any(|stage| matches!(stage, Stage::Window(_))) {
                return Err(SpecError::new(
                    field,
                    "a pipeline may have only one window stage",
                ));
            }
            if !before.iter().any(|stage| matches!(stage, Stage::KeyBy(_))) {
                return Err(SpecError::new(
                    field,
                    "a window stage needs a key_by stage before it",
                ));
            }
            if !matches!(next, Some(Stage::Aggregate(_))) {
                return Err(SpecError::new(
                    field,
                    "a window stage must be followed directly by an aggregate stage",
                ));
            }
        }
        Stage::Aggregate(_) => {
            if !matches!(before.last(), Some(Stage::Window(_))) {
                return Err(SpecError::new(
                    field,
                    "an aggregate stage must follow a window stage directly",
                ));
            }
        }
        Stage::Filter(_) | Stage::Map(_) | Stage::Dedupe(_) | Stage::KeyBy(_) | Stage::Join(_) => {}
    }
    Ok(())
}

fn check_map(field: &str, outputs: &BTreeMap<String, String>) -> Result<(), SpecError> {
    check_output_count(field, outputs)?;
    for (name, expression) in outputs {
        let output_field = format!("{field}.{name}");
        check_output_name(&output_field, name)?;
        check_expression(&output_field, expression)?;
    }
    Ok(())
}

fn check_dedupe(field: &str, dedupe: &Dedupe) -> Result<(), SpecError> {
    check_expression(&format!("{field}.key"), &dedupe.key)?;
    let ttl_field = format!("{field}.ttl");
    check_positive(&ttl_field, dedupe.ttl)?;
    check_at_most(&ttl_field, dedupe.ttl, DEDUPE_TTL_MAX)
}

fn check_window(field: &str, window: &Window) -> Result<(), SpecError> {
    match &window.kind {
        WindowKind::Tumbling(size) => {
            check_range(&format!("{field}.tumbling"), *size, ms(1), WINDOW_SIZE_MAX)?;
        }
        WindowKind::Sliding(sliding) => {
            let size_field = format!("{field}.sliding.size");
            check_range(&size_field, sliding.size, ms(1), WINDOW_SIZE_MAX)?;
            let slide_field = format!("{field}.sliding.slide");
            check_positive(&slide_field, sliding.slide)?;
            if sliding.slide > sliding.size {
                return Err(SpecError::new(
                    slide_field,
                    format!(
                        "{} is longer than the window size {}; events between windows would \
                         be lost",
                        sliding.slide, sliding.size
                    ),
                ));
            }
            let windows = sliding
                .size
                .as_millis()
                .div_ceil(sliding.slide.as_millis().max(1));
            if windows > WINDOWS_PER_EVENT_MAX {
                return Err(SpecError::new(
                    format!("{field}.sliding"),
                    format!(
                        "each event would belong to {windows} windows; the limit is \
                         {WINDOWS_PER_EVENT_MAX} (a longer slide or a shorter size)"
                    ),
                ));
            }
        }
        WindowKind::Session(session) => {
            check_range(
                &format!("{field}.session.gap"),
                session.gap,
                ms(1),
                WINDOW_SIZE_MAX,
            )?;
        }
    }
    if let Some(lateness) = window.allowed_lateness {
        check_at_most(&format!("{field}.allowed_lateness"), lateness, LATENESS_MAX)?;
    }
    Ok(())
}

fn check_aggregate(field: &str, outputs: &BTreeMap<String, String>) -> Result<(), SpecError> {
    check_output_count(field, outputs)?;
    for (name, call) in outputs {
        let output_field = format!("{field}.{name}");
        check_output_name(&output_field, name)?;
        if WINDOW_RESULT_FIELDS.contains(&name.as_str()) {
            return Err(SpecError::new(
                output_field,
                format!(
                    "`{name}` is already a field of every window result ({})",
                    WINDOW_RESULT_FIELDS.join(", ")
                ),
            ));
        }
        parse_aggregate_call(call).map_err(|message| SpecError::new(output_field, message))?;
    }
    Ok(())
}

fn check_output_count(field: &str, outputs: &BTreeMap<String, String>) -> Result<(), SpecError> {
    if outputs.is_empty() {
        return Err(SpecError::new(field, "needs at least one output"));
    }
    if outputs.len() > STAGE_OUTPUTS_MAX {
        return Err(SpecError::new(
            field,
            format!(
                "has {} outputs; the limit is {STAGE_OUTPUTS_MAX}",
                outputs.len()
            ),
        ));
    }
    Ok(())
}

/// Output names are identifiers, so later stages' CEL can refer to them.
fn check_output_name(field: &str, name: &str) -> Result<(), SpecError> {
    let mut bytes = name.bytes();
    let starts_well = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let continues_well = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !starts_well || !continues_well || name.len() > OUTPUT_NAME_LEN_MAX {
        return Err(SpecError::new(
            field,
            format!(
                "`{}` is not an output name: use an identifier, [a-zA-Z_][a-zA-Z0-9_]*, of at \
                 most {OUTPUT_NAME_LEN_MAX} characters",
                truncated(name)
            ),
        ));
    }
    if CEL_RESERVED_WORDS.contains(&name) {
        return Err(SpecError::new(
            field,
            format!("`{name}` is a reserved word in CEL; later stages could not refer to it"),
        ));
    }
    Ok(())
}

pub(super) fn check_expression(field: &str, expression: &str) -> Result<(), SpecError> {
    compile_expression(expression)
        .map(drop)
        .map_err(|message| SpecError::new(field, message))
}

pub(super) fn check_positive(field: &str, duration: SpecDuration) -> Result<(), SpecError> {
    if duration.is_zero() {
        return Err(SpecError::new(field, "must be longer than zero"));
    }
    Ok(())
}

pub(super) fn check_at_most(
    field: &str,
    duration: SpecDuration,
    max: SpecDuration,
) -> Result<(), SpecError> {
    if duration > max {
        return Err(SpecError::new(
            field,
            format!("{duration} is longer than the limit of {max}"),
        ));
    }
    Ok(())
}

fn check_range(
    field: &str,
    duration: SpecDuration,
    min: SpecDuration,
    max: SpecDuration,
) -> Result<(), SpecError> {
    if duration.is_zero() {
        return Err(SpecError::new(field, "must be longer than zero"));
    }
    if duration < min || duration > max {
        return Err(SpecError::new(
            field,
            format!("{duration} is outside the allowed range of {min} to {max}"),
        ));
    }
    Ok(())
}

const fn ms(ms: u64) -> SpecDuration {
    SpecDuration::from_millis(ms)
}

/// A user's text, shortened for quoting in an error message.
fn truncated(text: &str) -> String {
    const QUOTE_LEN_MAX: usize = 64;
    match text.char_indices().nth(QUOTE_LEN_MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::fixtures::SPEC_EXAMPLE_YAML;
    use crate::spec::{parse_job_spec, Delivery, Session, Sliding};

    /// A change to the example spec.
    type Edit = fn(&mut JobSpec);

    fn example() -> JobSpec {
        parse_job_spec(SPEC_EXAMPLE_YAML.as_bytes()).unwrap()
    }

    /// The field `validate` blames after `edit` is applied to the contract example.
    fn field_after(edit: impl FnOnce(&mut JobSpec)) -> String {
        let mut spec = example();
        edit(&mut spec);
        match validate(&spec) {
            Ok(()) => panic!("accepted: {spec:#?}"),
            Err(err) => err.field,
        }
    }

    fn accepts(edit: impl FnOnce(&mut JobSpec)) {
        let mut spec = example();
        edit(&mut spec);
        if let Err(err) = validate(&spec) {
            panic!("rejected with {err}: {spec:#?}");
        }
    }

    fn window(spec: &mut JobSpec) -> &mut Window {
        match &mut spec.pipeline[4] {
            Stage::Window(window) => window,
            other => panic!("stage 4 is {other:?}"),
        }
    }

    fn outputs(spec: &mut JobSpec, index: usize) -> &mut BTreeMap<String, String> {
        match &mut spec.pipeline[index] {
            Stage::Map(outputs) | Stage::Aggregate(outputs) => outputs,
            other => panic!("stage {index} is {other:?}"),
        }
    }

    fn secs(secs: u64) -> SpecDuration {
        SpecDuration::from_secs(secs)
    }

    fn set_aggregate(spec: &mut JobSpec, name: &str, call: &str) {
        outputs(spec, 5).insert(name.to_string(), call.to_string());
    }

    #[test]
    fn the_example_is_valid() {
        assert_eq!(validate(&example()), Ok(()));
    }

    #[test]
    fn names_must_be_lowercase_words_of_at_most_63() {
        for bad in [
            "",
            "Card",
            "card_velocity",
            "card velocity",
            "carte-bleue-é",
        ] {
            assert_eq!(field_after(|s| s.name = bad.into()), "name", "{bad:?}");
        }
        assert_eq!(field_after(|s| s.name = "a".repeat(64)), "name");
        accepts(|s| s.name = "a".repeat(63));
        accepts(|s| s.name = "0-job-9".into());
    }

    #[test]
    fn topics_must_be_kafka_topic_names() {
        for bad in ["", ".", "..", "pay ments", "pay/ments", "päyments"] {
            assert_eq!(field_after(|s| s.source.topic = bad.into()), "source.topic");
            assert_eq!(field_after(|s| s.sink.topic = bad.into()), "sink.topic");
            assert_eq!(
                field_after(|s| s.dead_letter_topic = Some(bad.into())),
                "dead_letter_topic"
            );
        }
        assert_eq!(
            field_after(|s| s.sink.topic = "t".repeat(250)),
            "sink.topic"
        );
        accepts(|s| s.sink.topic = "t".repeat(249));
        accepts(|s| s.source.topic = "Pay.ments_v2-x".into());
    }

    #[test]
    fn routes_name_a_predicate_and_a_topic_of_their_own() {
        use crate::spec::model::Route;
        let route = |when: &str, topic: &str| Route {
            when: when.into(),
            topic: topic.into(),
        };
        accepts(|s| s.routes = vec![route("count >= 10", "busy"), route("total > 1000.0", "big")]);
        assert_eq!(
            field_after(|s| s.routes = vec![route("count >=", "busy")]),
            "routes[0].when"
        );
        assert_eq!(
            field_after(|s| s.routes = vec![route("true", "bad topic")]),
            "routes[0].topic"
        );
        for clash in ["payments", "card-velocity-alerts", "card-velocity-dlq"] {
            assert_eq!(
                field_after(|s| s.routes = vec![route("true", clash)]),
                "routes[0].topic",
                "{clash}"
            );
        }
        assert_eq!(
            field_after(|s| s.routes = vec![route("true", "a"), route("false", "a")]),
            "routes[1].topic"
        );
        assert_eq!(
            field_after(|s| s.routes = vec![route("true", "t"); ROUTES_MAX + 1]),
            "routes"
        );
    }

    #[test]
    fn topics_must_differ() {
        assert_eq!(
            field_after(|s| s.sink.topic = "payments".into()),
            "sink.topic"
        );
        assert_eq!(
            field_after(|s| s.dead_letter_topic = Some("payments".into())),
            "dead_letter_topic"
        );
        assert_eq!(
            field_after(|s| s.dead_letter_topic = Some("card-velocity-alerts".into())),
            "dead_letter_topic"
        );
        // The default, `<name>-dlq`, is checked too.
        assert_eq!(
            field_after(|s| {
                s.dead_letter_topic = None;
                s.sink.topic = "card-velocity-dlq".into();
            }),
            "dead_letter_topic"
        );
        accepts(|s| s.dead_letter_topic = None);
    }

    #[test]
    fn source_settings_are_bounded() {
        assert_eq!(
            field_after(|s| s.source.event_time = Some(" ".into())),
            "source.event_time"
        );
        assert_eq!(
            field_after(|s| s.source.max_out_of_orderness = Some(secs(8 * 86_400))),
            "source.max_out_of_orderness"
        );
        accepts(|s| s.source.max_out_of_orderness = Some(SpecDuration::ZERO));
        accepts(|s| s.source.max_out_of_orderness = None);
        accepts(|s| s.source.event_time = None);
    }

    #[test]
    fn checkpoint_interval_is_between_100ms_and_20s() {
        for bad in [0, 1, 99, 20_001, 3_600_000] {
            assert_eq!(
                field_after(|s| s.checkpoint_interval = ms(bad)),
                "checkpoint_interval",
                "{bad}"
            );
        }
        accepts(|s| s.checkpoint_interval = ms(100));
        accepts(|s| s.checkpoint_interval = secs(20));
    }

    #[test]
    fn tumbling_windows_are_positive_and_at_most_7_days() {
        let field = "pipeline[4].window.tumbling";
        assert_eq!(
            field_after(|s| window(s).kind = WindowKind::Tumbling(ms(0))),
            field
        );
        assert_eq!(
            field_after(|s| window(s).kind = WindowKind::Tumbling(secs(7 * 86_400 + 1))),
            field
        );
        accepts(|s| window(s).kind = WindowKind::Tumbling(secs(7 * 86_400)));
        accepts(|s| window(s).kind = WindowKind::Tumbling(ms(1)));
    }

    #[test]
    fn sliding_windows_slide_by_at_most_their_size() {
        let sliding = |size, slide| WindowKind::Sliding(Sliding { size, slide });
        assert_eq!(
            field_after(|s| window(s).kind = sliding(ms(0), secs(1))),
            "pipeline[4].window.sliding.size"
        );
        assert_eq!(
            field_after(|s| window(s).kind = sliding(secs(8 * 86_400), secs(1))),
            "pipeline[4].window.sliding.size"
        );
        assert_eq!(
            field_after(|s| window(s).kind = sliding(secs(60), ms(0))),
            "pipeline[4].window.sliding.slide"
        );
        assert_eq!(
            field_after(|s| window(s).kind = sliding(secs(60), secs(61))),
            "pipeline[4].window.sliding.slide"
        );
        // The size need not be a multiple of the slide.
        accepts(|s| window(s).kind = sliding(secs(60), secs(7)));
        accepts(|s| window(s).kind = sliding(secs(60), secs(60)));
        // Each event updates every window it belongs to: at most 1,000 (accepted before
        // and refused by every worker, so the job never ran).
        accepts(|s| window(s).kind = sliding(secs(1000), secs(1)));
        assert_eq!(
            field_after(|s| window(s).kind = sliding(secs(3600), secs(1))),
            "pipeline[4].window.sliding"
        );
        assert_eq!(
            field_after(|s| window(s).kind = sliding(ms(1001), ms(1))),
            "pipeline[4].window.sliding"
        );
    }

    #[test]
    fn session_gaps_are_positive() {
        let session = |gap| WindowKind::Session(Session { gap });
        assert_eq!(
            field_after(|s| window(s).kind = session(ms(0))),
            "pipeline[4].window.session.gap"
        );
        // A session window needs its source partitioned by the key (no shuffle).
        accepts(|s| {
            window(s).kind = session(secs(30));
            s.source.partitioned_by = Some("card_id".into());
        });
    }

    #[test]
    fn allowed_lateness_is_bounded() {
        assert_eq!(
            field_after(|s| window(s).allowed_lateness = Some(secs(8 * 86_400))),
            "pipeline[4].window.allowed_lateness"
        );
        accepts(|s| window(s).allowed_lateness = Some(SpecDuration::ZERO));
        accepts(|s| window(s).allowed_lateness = Some(secs(30)));
    }

    #[test]
    fn dedupe_needs_a_positive_ttl_and_a_compiling_key() {
        let dedupe = |spec: &mut JobSpec| match &mut spec.pipeline[2] {
            Stage::Dedupe(dedupe) => dedupe.clone(),
            other => panic!("stage 2 is {other:?}"),
        };
        assert_eq!(
            field_after(|s| {
                let ttl = Dedupe {
                    ttl: ms(0),
                    ..dedupe(s)
                };
                s.pipeline[2] = Stage::Dedupe(ttl);
            }),
            "pipeline[2].dedupe.ttl"
        );
        assert_eq!(
            field_after(|s| {
                let key = Dedupe {
                    key: "event_id ==".into(),
                    ..dedupe(s)
                };
                s.pipeline[2] = Stage::Dedupe(key);
            }),
            "pipeline[2].dedupe.key"
        );
        // A ttl past a year overflowed event-time arithmetic (dedupe silently off).
        accepts(|s| {
            let ttl = Dedupe {
                ttl: secs(366 * 86_400),
                ..dedupe(s)
            };
            s.pipeline[2] = Stage::Dedupe(ttl);
        });
        assert_eq!(
            field_after(|s| {
                let ttl = Dedupe {
                    ttl: secs(366 * 86_400 + 1),
                    ..dedupe(s)
                };
                s.pipeline[2] = Stage::Dedupe(ttl);
            }),
            "pipeline[2].dedupe.ttl"
        );
    }

    #[test]
    fn expressions_deeper_than_the_interpreter_allows_are_refused() {
        // A flat chain has no brackets but is as deep as it is long: accepted before, and
        // refused by every worker when compiled.
        let chain = |n: usize| format!("a{} > 0", " + a".repeat(n - 1));
        accepts(|s| s.pipeline[0] = Stage::Filter(chain(31)));
        assert_eq!(
            field_after(|s| s.pipeline[0] = Stage::Filter(chain(32))),
            "pipeline[0].filter"
        );
    }

    #[test]
    fn cel_syntax_errors_name_the_stage_field() {
        let cases: [(&str, Edit); 5] = [
            ("pipeline[0].filter", |s| {
                s.pipeline[0] = Stage::Filter("amount >".into())
            }),
            ("pipeline[0].filter", |s| {
                s.pipeline[0] = Stage::Filter("".into())
            }),
            ("pipeline[6].filter", |s| {
                s.pipeline[6] = Stage::Filter("count >= (5".into())
            }),
            ("pipeline[3].key_by", |s| {
                s.pipeline[3] = Stage::KeyBy("card +".into())
            }),
            ("pipeline[1].map.card", |s| {
                outputs(s, 1).insert("card".into(), "card_id.".into());
            }),
        ];
        for (field, edit) in cases {
            assert_eq!(field_after(edit), field);
        }
        let mut spec = example();
        spec.pipeline[0] = Stage::Filter("amount > 0 &&".into());
        let err = validate(&spec).unwrap_err();
        assert!(err.message.starts_with("invalid CEL expression"), "{err}");
    }

    #[test]
    fn map_outputs_are_named_identifiers() {
        assert_eq!(field_after(|s| outputs(s, 1).clear()), "pipeline[1].map");
        for bad in ["1card", "card-id", "card id", "", "in", "true", "if"] {
            let field = field_after(|s| {
                outputs(s, 1).insert(bad.into(), "card_id".into());
            });
            assert_eq!(field, format!("pipeline[1].map.{bad}"), "{bad:?}");
        }
        accepts(|s| {
            outputs(s, 1).insert("_card2".into(), "card_id".into());
        });
    }

    #[test]
    fn stage_outputs_are_bounded() {
        assert_eq!(
            field_after(|s| {
                for i in 0..=STAGE_OUTPUTS_MAX {
                    outputs(s, 1).insert(format!("f{i}"), "amount".into());
                }
            }),
            "pipeline[1].map"
        );
    }

    #[test]
    fn aggregates_call_known_functions() {
        let cases = [
            ("total", "median(amount)"),
            ("total", "sum()"),
            ("total", "sum(amount +)"),
            ("count", "count(amount)"),
            ("total", "amount"),
        ];
        for (name, call) in cases {
            assert_eq!(
                field_after(|s| set_aggregate(s, name, call)),
                format!("pipeline[5].aggregate.{name}"),
                "{call}"
            );
        }
        accepts(|s| set_aggregate(s, "mean", "avg(amount)"));
        accepts(|s| set_aggregate(s, "smallest", "min(amount * 2)"));
    }

    #[test]
    fn aggregate_outputs_are_identifiers_apart_from_the_result_fields() {
        for bad in ["key", "window_start", "window_end", "2x", "a.b"] {
            assert_eq!(
                field_after(|s| set_aggregate(s, bad, "count()")),
                format!("pipeline[5].aggregate.{bad}")
            );
        }
        assert_eq!(
            field_after(|s| outputs(s, 5).clear()),
            "pipeline[5].aggregate"
        );
    }

    #[test]
    fn a_window_needs_a_key_by_before_and_an_aggregate_after() {
        // Without key_by, the window (now stage 3) is at fault.
        assert_eq!(
            field_after(|s| _ = s.pipeline.remove(3)),
            "pipeline[3].window"
        );
        // Without its aggregate, the window is at fault.
        assert_eq!(
            field_after(|s| _ = s.pipeline.remove(5)),
            "pipeline[4].window"
        );
        // A filter between window and aggregate breaks both; the window comes first.
        assert_eq!(
            field_after(|s| s.pipeline.insert(5, Stage::Filter("true".into()))),
            "pipeline[4].window"
        );
        // A key_by after the window does not count.
        assert_eq!(
            field_after(|s| {
                let key_by = s.pipeline.remove(3);
                s.pipeline.push(key_by);
            }),
            "pipeline[3].window"
        );
    }

    #[test]
    fn an_aggregate_needs_a_window_directly_before() {
        // Without the window, the aggregate (now stage 4) is at fault.
        assert_eq!(
            field_after(|s| _ = s.pipeline.remove(4)),
            "pipeline[4].aggregate"
        );
        // A second aggregate has no window directly before it.
        assert_eq!(
            field_after(|s| {
                let aggregate = s.pipeline[5].clone();
                s.pipeline.insert(6, aggregate);
            }),
            "pipeline[6].aggregate"
        );
        assert_eq!(
            field_after(|s| s.pipeline.insert(0, s.pipeline[5].clone())),
            "pipeline[0].aggregate"
        );
    }

    #[test]
    fn only_one_window_is_allowed() {
        assert_eq!(
            field_after(|s| {
                let window_and_aggregate = s.pipeline[4..6].to_vec();
                s.pipeline.extend(window_and_aggregate);
            }),
            "pipeline[7].window"
        );
    }

    #[test]
    fn pipelines_have_at_most_64_stages() {
        assert_eq!(
            field_after(|s| {
                while s.pipeline.len() <= PIPELINE_STAGES_MAX {
                    s.pipeline.push(Stage::Filter("true".into()));
                }
            }),
            "pipeline"
        );
        accepts(|s| {
            while s.pipeline.len() < PIPELINE_STAGES_MAX {
                s.pipeline.push(Stage::Filter("true".into()));
            }
        });
    }

    #[test]
    fn stateless_pipelines_are_valid() {
        accepts(|s| s.pipeline.clear());
        accepts(|s| s.pipeline.truncate(4));
        accepts(|s| {
            s.pipeline = vec![Stage::KeyBy("card_id".into())];
            s.sink.delivery = Delivery::AtLeastOnce;
        });
    }

    #[test]
    fn the_first_error_in_document_order_is_reported() {
        assert_eq!(
            field_after(|s| {
                s.name = "Bad".into();
                s.checkpoint_interval = ms(0);
            }),
            "name"
        );
        assert_eq!(
            field_after(|s| {
                s.pipeline[6] = Stage::Filter("(".into());
                s.pipeline[0] = Stage::Filter(")".into());
            }),
            "pipeline[0].filter"
        );
    }

    #[test]
    fn parallelism_is_between_one_and_its_limit() {
        assert_eq!(field_after(|s| s.parallelism = Some(0)), "parallelism");
        assert_eq!(
            field_after(|s| s.parallelism = Some(PARALLELISM_MAX + 1)),
            "parallelism"
        );
        accepts(|s| s.parallelism = Some(1));
        accepts(|s| s.parallelism = Some(PARALLELISM_MAX));
        accepts(|s| s.parallelism = None);
    }

    #[test]
    fn partitioned_by_names_a_field_a_key_by_can_refer_to() {
        for bad in ["", "card id", "card.id", "9card", "null", "in", "céline"] {
            assert_eq!(
                field_after(|s| s.source.partitioned_by = Some(bad.into())),
                "source.partitioned_by",
                "{bad:?}"
            );
        }
        assert_eq!(
            field_after(|s| s.source.partitioned_by = Some("f".repeat(257))),
            "source.partitioned_by"
        );
        accepts(|s| s.source.partitioned_by = Some("f".repeat(256)));
        accepts(|s| s.source.partitioned_by = Some("card_id".into()));
        accepts(|s| s.source.partitioned_by = Some("_merchant2".into()));
    }
}
