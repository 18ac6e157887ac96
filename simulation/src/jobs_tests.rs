//! The job families: what each kind's stage plan is, how its producer places records,
//! and that the reference evaluates what the producers make.

use super::*;
use crate::reference::{evaluate_job, RefRecord};
use rand::rngs::StdRng;
use rand::SeedableRng;
use weir_core::ids::JobId;
use weir_core::spec::stages::{plan_stages, KeyByDecision};

/// Jobs drawn from `family` over many seeds, at least one of each kind.
fn drawn(multi_stage: bool) -> Vec<SimJob> {
    let jobs: Vec<SimJob> = (0..200)
        .map(|seed| draw_job_from(&mut StdRng::seed_from_u64(seed), 0, multi_stage))
        .collect();
    let kinds = match multi_stage {
        false => &JobKind::SINGLE_STAGE[..],
        true => &JobKind::MULTI_STAGE[..],
    };
    for kind in kinds {
        assert!(jobs.iter().any(|j| j.kind == *kind), "no {kind:?} drawn");
    }
    jobs
}

/// The decision of the job's `key_by` that a window follows, if any.
fn windowed_key_by(job: &SimJob) -> Option<KeyByDecision> {
    let plan = plan_stages(&job.spec, JobId(1), job.source_partitions).unwrap();
    plan.key_bys
        .iter()
        .map(|k| k.decision)
        .find(|d| *d != KeyByDecision::NoKeyedState)
}

#[test]
fn the_multi_stage_family_shuffles_exactly_the_re_keying_jobs() {
    for job in drawn(true) {
        let decision = windowed_key_by(&job);
        match job.kind {
            JobKind::Stateless | JobKind::Dedupe => assert_eq!(decision, None),
            JobKind::Tumbling | JobKind::Sliding | JobKind::Rekey => {
                assert_eq!(
                    decision,
                    Some(KeyByDecision::Shuffle { stage: 1 }),
                    "{job:?}"
                );
                assert_eq!(job.placement, Placement::MerchantKey);
            }
            JobKind::Session => {
                assert_eq!(decision, Some(KeyByDecision::AlreadyPartitioned));
                assert_eq!(job.placement, Placement::CardPartition);
            }
            // The join repartitions both of its sides, and no key_by of it shuffles.
            JobKind::JoinInner
            | JobKind::JoinOuter
            | JobKind::TemporalInner
            | JobKind::TemporalOuter => {
                assert_eq!(decision, None);
                assert_eq!(job.placement, Placement::MerchantKey);
                let plan = plan_stages(&job.spec, JobId(1), job.source_partitions).unwrap();
                assert_eq!(plan.repartition_topics().len(), 1);
            }
        }
        assert_eq!(job.join_with.is_some(), job.kind.joins());
        let parallelism = job.spec.parallelism;
        match job.kind {
            JobKind::Rekey => {
                let parallelism = parallelism.expect("a re-keying job sets its parallelism");
                assert_ne!(parallelism, job.source_partitions);
                assert!((1..=4).contains(&parallelism));
            }
            _ => assert_eq!(parallelism, None),
        }
        assert!(job.multi_stage);
    }
}

/// `count` records of `job`'s producer, placed as the memory broker would (an explicit
/// partition, else the key's murmur2 partition, else round robin), with offsets.
fn produce(job: &SimJob, seed: u64, count: u64) -> Vec<RefRecord> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut gen = EventGen::for_job(job);
    let mut offsets = vec![0i64; job.source_partitions as usize];
    let mut records = Vec::new();
    for i in 0..count {
        let now_ms = i * 20;
        let record = gen.next(&mut rng, &job.source, now_ms);
        records.push(place(job, record, i, &mut offsets));
    }
    for p in 0..job.source_partitions as i32 {
        let flush = flush_record(&job.source, p, &job.flush_card(p), count * 20);
        records.push(place(job, flush, 0, &mut offsets));
    }
    records
}

/// `count` records of the producer of `job`'s join's right topic, placed the same way.
fn produce_right(job: &SimJob, seed: u64, count: u64) -> Vec<RefRecord> {
    let (topic, partitions) = job.join_with.clone().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut gen = EventGen::for_join(job).unwrap();
    let as_source = SimJob {
        source_partitions: partitions,
        ..job.clone()
    };
    let mut offsets = vec![0i64; partitions as usize];
    let mut records = Vec::new();
    for i in 0..count {
        let record = gen.next(&mut rng, &topic, i * 20);
        records.push(place(&as_source, record, i, &mut offsets));
    }
    for p in 0..partitions as i32 {
        let flush = flush_record(&topic, p, "flush", count * 20);
        records.push(place(&as_source, flush, 0, &mut offsets));
    }
    records
}

fn place(job: &SimJob, record: OutgoingRecord, i: u64, offsets: &mut [i64]) -> RefRecord {
    let partition = match (record.partition, &record.key) {
        (Some(p), _) => p,
        (None, Some(key)) => partition_of_key(key, job.source_partitions),
        (None, None) => (i % u64::from(job.source_partitions)) as i32,
    };
    let offset = offsets[partition as usize];
    offsets[partition as usize] += 1;
    RefRecord {
        partition,
        offset,
        timestamp_ms: 0,
        key: record.key,
        value: Some(record.value),
    }
}

#[test]
fn a_source_declared_partitioned_by_card_is_placed_by_card() {
    let jobs = drawn(true);
    let job = jobs
        .iter()
        .find(|j| j.kind == JobKind::Session && j.source_partitions > 1)
        .expect("a session job on several partitions");
    let records = produce(job, 3, 2_000);
    let out = evaluate_job(
        &job.spec,
        JobId(1),
        &job.source,
        job.source_partitions,
        &records,
    )
    .expect("the reference evaluates the family");
    assert!(out.misplaced.is_empty(), "{:?}", out.misplaced.first());
    assert!(!out.outputs.is_empty());
    for p in 0..job.source_partitions as i32 {
        let card = job.flush_card(p);
        assert_eq!(partition_of_key(card.as_bytes(), job.source_partitions), p);
    }
}

#[test]
fn the_reference_evaluates_every_kind_of_the_multi_stage_family() {
    let jobs = drawn(true);
    for kind in JobKind::MULTI_STAGE {
        let job = jobs.iter().find(|j| j.kind == kind).unwrap();
        let records = produce(job, 5, 3_000);
        if kind.joins() {
            let (topic, partitions) = job.join_with.clone().unwrap();
            let right = produce_right(job, 6, 3_000);
            let out = crate::reference::evaluate_join_job(
                &job.spec,
                JobId(9),
                crate::reference::JoinSideInput {
                    topic: &job.source,
                    partitions: job.source_partitions,
                    records: &records,
                },
                crate::reference::JoinSideInput {
                    topic: &topic,
                    partitions,
                    records: &right,
                },
            )
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert!(!out.outputs.is_empty(), "{kind:?} emits nothing");
            let reasons: Vec<&str> = out.dead_letters.iter().map(|d| d.reason.as_str()).collect();
            assert!(reasons.contains(&"late"), "{kind:?}: {reasons:?}");
            let outer = out
                .outputs
                .iter()
                .any(|o| o.value.ends_with(b",\"right\":null}"));
            assert_eq!(outer, kind.outer(), "{kind:?}");
            continue;
        }
        let out = evaluate_job(
            &job.spec,
            JobId(9),
            &job.source,
            job.source_partitions,
            &records,
        )
        .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert!(out.misplaced.is_empty(), "{kind:?}");
        assert!(!out.outputs.is_empty(), "{kind:?} emits nothing");
        if kind == JobKind::Rekey {
            // Its string amounts fail downstream, its windows of two after the aggregate.
            let reasons: Vec<(&str, bool)> = out
                .dead_letters
                .iter()
                .map(|d| (d.reason.as_str(), d.offset == -1))
                .collect();
            assert!(reasons.contains(&("expression_error", true)), "{reasons:?}");
            assert!(reasons.contains(&("expression_error", false)));
            let repartition = "weir-job-9-repartition-1";
            assert!(out
                .dead_letters
                .iter()
                .filter(|d| d.offset == -1)
                .all(|d| d.topic == repartition));
        }
    }
}
