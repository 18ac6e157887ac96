//! The stage plan of every shape of pipeline: no key_by, a key_by the source is
//! partitioned by (directly or through a map), a key_by on another field, key_bys with no
//! window after them, a chain of shuffles; names, partition counts and operator ranges.

use super::*;
use crate::spec::fixtures::SPEC_EXAMPLE_YAML;
use crate::spec::{parse_job_spec, validate, SpecError};

const JOB: JobId = JobId(42);

/// A validated spec reading `payments` with `source_extra` in its source, `pipeline` as
/// YAML flow items, and `top_extra` at the top level.
fn spec(source_extra: &str, pipeline: &str, top_extra: &str) -> JobSpec {
    let yaml = format!(
        "name: j\nsource: {{ topic: payments{source_extra} }}\npipeline: [{pipeline}]\n\
         sink: {{ topic: out }}\n{top_extra}"
    );
    let spec = parse_job_spec(yaml.as_bytes()).unwrap();
    assert_eq!(validate(&spec), Ok(()));
    spec
}

const WINDOWED: &str = r#"{ window: { tumbling: 60s } }, { aggregate: { n: "count()" } }"#;

fn decisions(plan: &StagePlan) -> Vec<(usize, KeyByDecision)> {
    plan.key_bys.iter().map(|k| (k.index, k.decision)).collect()
}

#[test]
fn a_pipeline_without_key_by_is_one_stage_over_the_source() {
    let spec = spec(
        "",
        r#"{ filter: "amount > 0" }, { map: { a: "amount" } }"#,
        "",
    );
    let plan = plan_stages(&spec, JOB, 6).unwrap();
    assert_eq!(
        plan.stages,
        vec![PlannedStage {
            input: StageInput::Source {
                topic: "payments".into()
            },
            partitions: 6,
            operators: 0..2,
            output: StageOutput::Sink,
        }]
    );
    assert!(plan.key_bys.is_empty());
    assert!(plan.repartition_topics().is_empty());

    let empty = self::spec("", "", "");
    let plan = plan_stages(&empty, JOB, 1).unwrap();
    assert_eq!(plan.stages.len(), 1);
    assert_eq!(plan.stages[0].operators, 0..0);
}

#[test]
fn a_key_by_on_another_field_shuffles_into_a_second_stage() {
    let pipeline = format!(r#"{{ filter: "amount > 0" }}, {{ key_by: "card" }}, {WINDOWED}"#);
    let spec = spec(", partitioned_by: merchant", &pipeline, "");
    let plan = plan_stages(&spec, JOB, 6).unwrap();
    let topic = RepartitionTopic {
        name: "weir-job-42-repartition-1".into(),
        partitions: 6,
        key_by: 1,
        retention_ms: REPARTITION_RETENTION_MS,
    };
    assert_eq!(
        plan.stages,
        vec![
            PlannedStage {
                input: StageInput::Source {
                    topic: "payments".into()
                },
                partitions: 6,
                operators: 0..2,
                output: StageOutput::Repartition(topic.clone()),
            },
            PlannedStage {
                input: StageInput::Repartition {
                    topic: topic.name.clone()
                },
                partitions: 6,
                operators: 2..4,
                output: StageOutput::Sink,
            },
        ]
    );
    assert_eq!(
        decisions(&plan),
        vec![(1, KeyByDecision::Shuffle { stage: 1 })]
    );
    assert_eq!(plan.repartition_topics(), vec![&topic]);
}

#[test]
fn parallelism_sets_the_partitions_of_every_stage_after_a_shuffle() {
    let pipeline = format!(r#"{{ key_by: "card" }}, {WINDOWED}"#);
    let spec = spec("", &pipeline, "parallelism: 16\n");
    let plan = plan_stages(&spec, JOB, 3).unwrap();
    assert_eq!(
        plan.stages[0].partitions, 3,
        "stage 0 runs per source partition"
    );
    assert_eq!(plan.stages[1].partitions, 16);
    assert_eq!(plan.repartition_topics()[0].partitions, 16);

    let without_shuffle = self::spec("", r#"{ filter: "true" }"#, "parallelism: 16\n");
    let plan = plan_stages(&without_shuffle, JOB, 3).unwrap();
    assert_eq!(
        plan.stages[0].partitions, 3,
        "parallelism does not change how the source is read"
    );
}

#[test]
fn a_key_by_on_the_field_the_source_is_partitioned_by_does_not_shuffle() {
    let pipeline = format!(r#"{{ filter: "amount > 0" }}, {{ key_by: " card " }}, {WINDOWED}"#);
    let spec = spec(", partitioned_by: card", &pipeline, "");
    let plan = plan_stages(&spec, JOB, 4).unwrap();
    assert_eq!(plan.stages.len(), 1);
    assert_eq!(plan.stages[0].operators, 0..4);
    assert_eq!(
        decisions(&plan),
        vec![(1, KeyByDecision::AlreadyPartitioned)]
    );
}

#[test]
fn the_partitioning_field_is_followed_through_maps_that_copy_it() {
    let through = |map: &str| {
        let pipeline = format!(r#"{{ map: {map} }}, {{ key_by: "card" }}, {WINDOWED}"#);
        let spec = spec(", partitioned_by: card_id", &pipeline, "");
        plan_stages(&spec, JOB, 4).unwrap().key_bys[0].decision
    };
    assert_eq!(
        through(r#"{ card: "card_id", amount: "amount" }"#),
        KeyByDecision::AlreadyPartitioned
    );
    assert_eq!(
        through(r#"{ card: "card_id + 'x'" }"#),
        KeyByDecision::Shuffle { stage: 1 },
        "a computed field is another key"
    );
    assert_eq!(
        through(r#"{ card: "merchant", id: "card_id" }"#),
        KeyByDecision::Shuffle { stage: 1 },
        "the name alone does not carry the partitioning"
    );
    let dropped = format!(
        r#"{{ map: {{ card: "card_id" }} }}, {{ map: {{ x: "card" }} }}, {{ key_by: "card" }}, {WINDOWED}"#
    );
    let spec = spec(", partitioned_by: card_id", &dropped, "");
    assert_eq!(
        plan_stages(&spec, JOB, 4).unwrap().key_bys[0].decision,
        KeyByDecision::Shuffle { stage: 1 },
        "a later map that drops the field loses the partitioning"
    );
}

#[test]
fn a_key_by_with_no_window_after_it_does_not_shuffle() {
    let spec = spec("", r#"{ key_by: "card" }, { filter: "true" }"#, "");
    let plan = plan_stages(&spec, JOB, 4).unwrap();
    assert_eq!(plan.stages.len(), 1);
    assert_eq!(decisions(&plan), vec![(0, KeyByDecision::NoKeyedState)]);
}

#[test]
fn of_two_key_bys_only_the_one_a_window_uses_shuffles() {
    let pipeline = format!(
        r#"{{ key_by: "merchant" }}, {{ dedupe: {{ key: "id", ttl: 1h }} }}, {{ key_by: "card" }}, {WINDOWED}"#
    );
    let spec = spec("", &pipeline, "");
    let plan = plan_stages(&spec, JOB, 4).unwrap();
    assert_eq!(
        decisions(&plan),
        vec![
            (0, KeyByDecision::NoKeyedState),
            (2, KeyByDecision::Shuffle { stage: 1 }),
        ]
    );
    assert_eq!(plan.stages.len(), 2);
    assert_eq!(plan.stages[0].operators, 0..3);
    assert_eq!(plan.stages[1].operators, 3..5);
}

/// A validated spec has one window, so at most one shuffle; the planner already makes a
/// chain of any length (here from a spec built past validation), each topic named after
/// the stage it feeds.
#[test]
fn a_chain_of_shuffles_names_each_topic_after_the_stage_it_feeds() {
    let mut spec = spec(
        "",
        &format!(r#"{{ key_by: "card" }}, {WINDOWED}"#),
        "parallelism: 2\n",
    );
    // key_by card, window, aggregate, key_by key, window, aggregate: two windows.
    let windowed = spec.pipeline[1..].to_vec();
    spec.pipeline.push(Stage::KeyBy("key".into()));
    spec.pipeline.extend(windowed);
    assert!(
        validate(&spec).is_err(),
        "validation allows one window today"
    );
    let plan = plan_stages(&spec, JOB, 4).unwrap();
    let names: Vec<&str> = plan
        .repartition_topics()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["weir-job-42-repartition-1", "weir-job-42-repartition-2"]
    );
    let partitions: Vec<u32> = plan.stages.iter().map(|s| s.partitions).collect();
    assert_eq!(partitions, [4, 2, 2]);
    let operators: Vec<Range<usize>> = plan.stages.iter().map(|s| s.operators.clone()).collect();
    assert_eq!(operators, [0..1, 1..4, 4..6]);
    assert_eq!(
        plan.stages[2].input,
        StageInput::Repartition {
            topic: names[1].to_string()
        }
    );
    assert_eq!(
        decisions(&plan),
        vec![
            (0, KeyByDecision::Shuffle { stage: 1 }),
            (3, KeyByDecision::Shuffle { stage: 2 }),
        ],
        "an aggregate's result is a new object: the first shuffle's partitioning is forgotten"
    );
}

#[test]
fn a_shuffle_partitions_by_its_key_until_a_map_or_aggregate() {
    let by_expression = Partitioning::by_key(" string(card) ");
    assert!(by_expression.is_by("string(card)"));
    assert!(!by_expression.is_by("card"));
    let outputs = [("card".to_string(), "card".to_string())];
    let mapped = by_expression.through_map(outputs.iter().map(|(k, v)| (k, v)));
    assert_eq!(
        mapped,
        Partitioning::Unknown,
        "a map may change the expression's inputs"
    );

    let by_field = Partitioning::by_key("card");
    assert!(by_field.is_by(" card "));
    let outputs = [
        ("a".to_string(), "card".to_string()),
        ("b".to_string(), " card ".to_string()),
        ("c".to_string(), "merchant".to_string()),
    ];
    let mapped = by_field.through_map(outputs.iter().map(|(k, v)| (k, v)));
    assert!(mapped.is_by("a") && mapped.is_by("b") && !mapped.is_by("c") && !mapped.is_by("card"));
}

#[test]
fn the_documented_example_shuffles_after_its_dedupe() {
    let spec = parse_job_spec(SPEC_EXAMPLE_YAML.as_bytes()).unwrap();
    let plan = plan_stages(&spec, JobId(7), 12).unwrap();
    let operators: Vec<Range<usize>> = plan.stages.iter().map(|s| s.operators.clone()).collect();
    assert_eq!(operators, [0..4, 4..7]);
    assert_eq!(
        plan.repartition_topics()[0].name,
        "weir-job-7-repartition-1"
    );
    assert_eq!(plan.repartition_topics()[0].partitions, 12);
}

#[test]
fn names_are_legal_kafka_topics_within_their_bound() {
    let longest = repartition_topic_at(
        JobId(u64::MAX),
        PIPELINE_STAGES_MAX - 1,
        REPARTITION_GENERATIONS_MAX,
    );
    assert_eq!(longest.len(), REPARTITION_TOPIC_NAME_LEN_MAX);
    assert!(longest.len() <= TOPIC_LEN_MAX);
    assert!(longest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    assert_eq!(
        repartition_topic_name(JobId(0), 1),
        repartition_topic_name(JobId(0), 1),
        "stable"
    );
    assert_ne!(
        repartition_topic_name(JobId(1), 1),
        repartition_topic_name(JobId(11), 1)
    );
}

#[test]
fn a_source_without_partitions_or_an_unvalidated_pipeline_is_refused() {
    let spec = spec("", "", "");
    assert_eq!(
        plan_stages(&spec, JOB, 0),
        Err(StagePlanError::NoSourcePartitions {
            topic: "payments".into()
        })
    );
    let mut long = spec.clone();
    long.pipeline = vec![Stage::Filter("true".into()); PIPELINE_STAGES_MAX + 1];
    assert_eq!(
        plan_stages(&long, JOB, 1),
        Err(StagePlanError::PipelineTooLong {
            stages: PIPELINE_STAGES_MAX + 1
        })
    );
}

/// What submitting a spec with `source_extra` and `pipeline` says.
fn refused(source_extra: &str, pipeline: &str) -> SpecError {
    let yaml = format!(
        "name: j\nsource: {{ topic: payments{source_extra} }}\npipeline: [{pipeline}]\n\
         sink: {{ topic: out }}\n"
    );
    parse_job_spec(yaml.as_bytes()).unwrap_err()
}

#[test]
fn a_session_window_or_a_dedupe_after_a_shuffle_is_refused_naming_the_stage() {
    let session = r#"{ key_by: "card" }, { window: { session: { gap: 3s } } }, { aggregate: { n: "count()" } }"#;
    let err = refused("", session);
    assert_eq!(err.field, "pipeline[1].window");
    assert!(err.message.contains("partitioned_by"), "{}", err.message);

    let dedupe =
        format!(r#"{{ key_by: "card" }}, {{ dedupe: {{ key: "id", ttl: 10s }} }}, {WINDOWED}"#);
    assert_eq!(refused("", &dedupe).field, "pipeline[1].dedupe");

    // Partitioned by the key: no shuffle, so both run.
    assert_eq!(
        shuffling_key_by(&spec(", partitioned_by: card", session, "")),
        None
    );
    spec(", partitioned_by: card", &dedupe, "");
    // A dedupe before the shuffle is fine.
    let before =
        format!(r#"{{ dedupe: {{ key: "id", ttl: 10s }} }}, {{ key_by: "card" }}, {WINDOWED}"#);
    assert_eq!(shuffling_key_by(&spec("", &before, "")), Some(1));
    assert_eq!(
        shuffling_key_by(&spec("", r#"{ key_by: "card" }"#, "")),
        None
    );
}

#[test]
fn a_join_is_stage_0_over_the_source_and_stage_1_over_its_repartition_topic() {
    let spec = spec(
        "",
        r#"{ filter: "amount > 0" }, { key_by: "card" }, { join: { with: { topic: captures }, left_key: id, right_key: id, within: 1h } }, { map: { a: "left.id" } }"#,
        "parallelism: 3\n",
    );
    assert_eq!(join_at(&spec), Some(2));
    let plan = plan_stages(&spec, JOB, 6).unwrap();
    let topic = RepartitionTopic {
        name: "weir-job-42-repartition-1".into(),
        partitions: 3,
        key_by: 2,
        retention_ms: REPARTITION_RETENTION_MS,
    };
    assert_eq!(
        plan.stages,
        vec![
            PlannedStage {
                input: StageInput::Source {
                    topic: "payments".into()
                },
                partitions: 6,
                operators: 0..2,
                output: StageOutput::Repartition(topic.clone()),
            },
            PlannedStage {
                input: StageInput::Repartition {
                    topic: topic.name.clone()
                },
                partitions: 3,
                operators: 2..4,
                output: StageOutput::Sink,
            },
        ]
    );
    // The key_by before the join only labels records: no window follows it.
    assert_eq!(decisions(&plan), vec![(1, KeyByDecision::NoKeyedState)]);
    assert_eq!(shuffling_key_by(&spec), Some(2), "the join shuffles");
    assert_eq!(plan.repartition_topics(), vec![&topic]);
}

#[test]
fn each_task_reads_its_stages_input() {
    let job = JobId(7);
    let topics = ("payments", Some("captures"));
    assert_eq!(
        task_input(job, topics, &[4], task_id(0, 2)),
        Some(("payments".to_string(), 2))
    );
    assert_eq!(
        task_input(job, topics, &[4], task_id(1, 3)),
        Some(("weir-job-7-repartition-1".to_string(), 3))
    );
    assert_eq!(
        task_input(job, topics, &[4], task_id(JOIN_RIGHT_STAGE, 1)),
        Some(("captures".to_string(), 1))
    );
    // A job of one stage has no stage 1; one without a join no right side.
    assert_eq!(task_input(job, topics, &[], task_id(1, 0)), None);
    assert_eq!(
        task_input(job, ("payments", None), &[4], task_id(JOIN_RIGHT_STAGE, 0)),
        None
    );
}

#[test]
fn each_generation_of_the_downstream_stage_has_tasks_and_a_topic_of_its_own() {
    let job = JobId(7);
    let first = downstream_task(0, 3);
    assert_eq!(
        first,
        task_id(1, 3),
        "generation 0 numbers tasks as planned"
    );
    let second = downstream_task(1, 3);
    let last = downstream_task(REPARTITION_GENERATIONS_MAX, TASK_STAGE_STRIDE - 1);
    assert_ne!(first, second);
    for (task, generation) in [(first, 0), (second, 1), (last, REPARTITION_GENERATIONS_MAX)] {
        assert_eq!(task_stage(task).0, 1, "{task} is a downstream task");
        assert_eq!(task_generation(task), generation);
        assert!(reads_repartition(task));
    }
    assert_eq!(task_stage(second), (1, 3));
    assert_eq!(
        task_stage(task_id(JOIN_RIGHT_STAGE, 2)),
        (JOIN_RIGHT_STAGE, 2)
    );
    assert_eq!(task_generation(task_id(0, 9)), 0);
    assert_eq!(
        task_input(job, ("payments", None), &[6], second),
        Some(("weir-job-7-repartition-1-g1".to_string(), 3))
    );
    let longest = repartition_topic_at(JobId(u64::MAX), 99, REPARTITION_GENERATIONS_MAX);
    assert!(longest.len() <= REPARTITION_TOPIC_NAME_LEN_MAX, "{longest}");
}
