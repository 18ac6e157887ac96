//! The data side of a simulated run: the topics, the jobs submitted to the coordinator
//! group, the producers feeding the source topics, and the end-of-run checks — every job
//! caught up with its input (liveness), and what a `read_committed` consumer sees on each
//! sink and dead-letter topic equal, exactly once, to what the reference evaluator
//! computes from the committed input (safety).

use crate::cluster::ClusterView;
use crate::context::SimContext;
use crate::jobs::{EventGen, SimJob};
use crate::reference::{self, RefDeadLetter, RefOutput, RefOutputs, RefRecord, ReferenceError};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_broker::memory::MemoryBroker;
use weir_broker::{Broker, BrokerRecord, TransactionalWriter};
use weir_coordinator::node::WriteError;
use weir_coordinator::state::{Command, Refusal};
use weir_core::ids::{JobId, NodeId, TenantName};
use weir_core::spec::stages::plan_stages;

/// The tenant owning the run's jobs.
pub const SIM_TENANT: &str = "sim";
/// Attempts at submitting one job before the run gives up on it (a liveness failure).
pub const SUBMIT_ATTEMPTS_MAX: usize = 200;
/// How long one submit attempt may take.
const SUBMIT_TIMEOUT_MS: u64 = 2_000;
/// Producer rounds: one batch per source topic every this long...
pub const PRODUCE_EVERY_MS: (u64, u64) = (20, 120);
/// ...of this many records.
pub const PRODUCE_BATCH: (usize, usize) = (1, 12);
/// Poison records: undecodable (not UTF-8, not JSON) values this large, within the
/// model's record limit but with a dead letter (their base64 alone) over it, so the
/// worker must cut the dead letter to fit rather than fail the partition at every retry.
pub const POISON_RECORD_BYTES: (usize, usize) = (800_000, 900_000);
/// A producer batch carries a poison record with this chance, in thousandths...
pub const POISON_PER_MILLE: u32 = 8;
/// ...and each source topic gets at most this many (they are large).
pub const POISON_RECORDS_PER_TOPIC_MAX: usize = 2;
/// Records read back per call when checking.
const READ_CHUNK: usize = 10_000;
/// Mismatches shown per job and kind in a violation.
const EXAMPLES_SHOWN: usize = 3;
/// How often the liveness phase looks at the jobs' committed offsets.
const CATCH_UP_POLL_MS: u64 = 50;

/// The transactional id of the producer feeding `topic`.
fn producer_id(topic: &str) -> String {
    format!("sim-producer-{topic}")
}

/// Creates every topic of the run's jobs.
pub async fn create_topics(broker: &MemoryBroker, jobs: &[SimJob]) {
    for job in jobs {
        let routes = job
            .spec
            .routes
            .iter()
            .map(|route| (&route.topic, job.sink_partitions));
        let fixed = [
            (&job.source, job.source_partitions),
            (&job.sink, job.sink_partitions),
            (&job.dead_letters, 1),
        ];
        let joined = job.join_with.iter().map(|(topic, n)| (topic, *n));
        for (topic, partitions) in fixed.into_iter().chain(routes).chain(joined) {
            broker
                .create_topic(topic, partitions)
                .await
                .unwrap_or_else(|e| panic!("the in-memory broker creates {topic}: {e}"));
        }
    }
}

/// Submits `job` until the group accepts it (a conflict means an earlier attempt did).
pub async fn submit(
    ctx: &SimContext,
    view: &ClusterView,
    nodes: &[NodeId],
    rng: &mut StdRng,
    job: &SimJob,
) -> bool {
    let spec = match serde_json::to_value(&job.spec) {
        Ok(s) => s,
        Err(e) => {
            ctx.violation(format!("cannot encode the spec of {}: {e}", job.name));
            return false;
        }
    };
    let mut hint: Option<NodeId> = None;
    for attempt in 1..=SUBMIT_ATTEMPTS_MAX {
        let target = hint
            .take()
            .unwrap_or_else(|| nodes[rng.gen_range(0..nodes.len())]);
        if let Some(node) = view.get(target) {
            let command = Command::SubmitJob {
                tenant: TenantName(SIM_TENANT.to_string()),
                name: job.name.clone(),
                spec: spec.clone(),
                at_ms: node.coordinator.seams().clock.now_ms(),
            };
            let answer = tokio::time::timeout(
                Duration::from_millis(SUBMIT_TIMEOUT_MS),
                node.coordinator.write(command),
            )
            .await;
            match answer {
                Ok(Ok(_)) | Ok(Err(WriteError::Refused(Refusal::Conflict(_)))) => {
                    ctx.event(&format!("submitted {} (attempt {attempt})", job.name));
                    return true;
                }
                Ok(Err(WriteError::NotLeader { leader_id, .. })) => hint = leader_id,
                Ok(Err(WriteError::Refused(other))) => {
                    ctx.violation(format!("job {} refused: {other}", job.name));
                    return false;
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..=100))).await;
    }
    ctx.violation(format!(
        "liveness: job {} not accepted in {SUBMIT_ATTEMPTS_MAX} attempts",
        job.name
    ));
    false
}

/// Feeds every job's source topic until `stop` is set: small transactions of generated
/// events. Whatever the broker's faults let through is the input; the checks read the
/// input back rather than trusting the producer.
pub async fn produce(
    broker: MemoryBroker,
    jobs: Vec<SimJob>,
    mut rng: StdRng,
    ctx: Arc<SimContext>,
    stop: Arc<AtomicBool>,
) {
    // One feed per topic: every job's source, then (right after it) a join's right topic.
    let mut feeds: Vec<(String, EventGen)> = Vec::new();
    for job in &jobs {
        feeds.push((job.source.clone(), EventGen::for_job(job)));
        if let (Some((topic, _)), Some(gen)) = (&job.join_with, EventGen::for_join(job)) {
            feeds.push((topic.clone(), gen));
        }
    }
    let mut writers = BTreeMap::new();
    // Poison records are drawn from a generator of their own, so that the events and the
    // pauses every seed drew before they existed stay the same.
    let mut poison_rng: StdRng =
        rand::SeedableRng::seed_from_u64(rng.clone().gen::<u64>() ^ 0x706f_6973_6f6e);
    let mut poisoned = vec![0usize; feeds.len()];
    while !stop.load(Ordering::Relaxed) {
        let pause = rng.gen_range(PRODUCE_EVERY_MS.0..=PRODUCE_EVERY_MS.1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        for (index, (topic, gen)) in feeds.iter_mut().enumerate() {
            let id = producer_id(topic);
            if !writers.contains_key(&id) {
                match broker.writer(&id).await {
                    Ok(w) => {
                        writers.insert(id.clone(), w);
                    }
                    Err(_) => continue,
                }
            }
            let Some(writer) = writers.get_mut(&id) else {
                continue;
            };
            let n = rng.gen_range(PRODUCE_BATCH.0..=PRODUCE_BATCH.1);
            let now_ms = ctx.now_ms();
            let mut sent = writer.begin().is_ok();
            for _ in 0..n {
                if !sent {
                    break;
                }
                let record = gen.next(&mut rng, topic, now_ms);
                sent = writer.send(record).await.is_ok();
            }
            if sent
                && poisoned[index] < POISON_RECORDS_PER_TOPIC_MAX
                && poison_rng.gen_range(0..1_000) < POISON_PER_MILLE
            {
                poisoned[index] += 1;
                let record = poison_record(&mut poison_rng, topic);
                ctx.event(&format!(
                    "poison record of {} bytes into {topic}",
                    record.value.len(),
                ));
                sent = writer.send(record).await.is_ok();
            }
            let done = sent && writer.commit("sim-producer", &[]).await.is_ok();
            if !done && writer.abort().await.is_err() {
                // A writer in a state it cannot leave is replaced (fencing its open
                // transaction).
                writers.remove(&id);
            }
        }
    }
}

/// An undecodable record of [`POISON_RECORD_BYTES`]: bytes with the high bit set, which
/// no UTF-8 text starts with.
fn poison_record(rng: &mut StdRng, topic: &str) -> weir_broker::OutgoingRecord {
    let len = rng.gen_range(POISON_RECORD_BYTES.0..=POISON_RECORD_BYTES.1);
    let step: u8 = rng.gen_range(1..=127);
    weir_broker::OutgoingRecord {
        topic: topic.to_string(),
        partition: None,
        key: Some(b"poison".to_vec()),
        value: (0..len)
            .map(|i| 0x80 | ((i as u8).wrapping_mul(step) & 0x7f))
            .collect(),
        timestamp_ms: None,
    }
}

/// Aborts whatever transaction a producer left open (the end of the fault phase), so the
/// sources' last stable offsets reach their ends.
pub fn close_producers(broker: &MemoryBroker, jobs: &[SimJob]) {
    for job in jobs {
        broker
            .faults()
            .expire_transaction(&producer_id(&job.source));
        if let Some((topic, _)) = &job.join_with {
            broker.faults().expire_transaction(&producer_id(topic));
        }
    }
}

/// Sends each source partition its flush event ([`crate::jobs::flush_record`]) in one committed
/// transaction per job. Called once the faults are healed.
pub async fn flush(broker: &MemoryBroker, jobs: &[SimJob], ctx: &SimContext) {
    for job in jobs {
        let sent = async {
            let mut writer = broker
                .writer(&format!("{}-flush", producer_id(&job.source)))
                .await?;
            writer.begin()?;
            for partition in 0..job.source_partitions as i32 {
                let card = job.flush_card(partition);
                let record = crate::jobs::flush_record(&job.source, partition, &card, ctx.now_ms());
                writer.send(record).await?;
            }
            // A join's right side too: the join's watermark is the least of both sides'.
            if let Some((topic, partitions)) = &job.join_with {
                for partition in 0..*partitions as i32 {
                    let record = crate::jobs::flush_record(topic, partition, "flush", ctx.now_ms());
                    writer.send(record).await?;
                }
            }
            writer.commit("sim-producer", &[]).await
        }
        .await;
        if let Err(e) = sent {
            ctx.violation(format!(
                "the flush events of {} were not sent: {e}",
                job.name
            ));
        }
    }
}

/// Waits until every job has committed its whole input, or the deadline passes. Returns
/// the jobs (and partitions) still behind.
///
/// A job checked by its stage plan is caught up when its group has also committed the
/// whole of each repartition topic (the workers create them; one not there yet is
/// behind). The source is looked at first: once it is caught up, every record its
/// upstream stage wrote is committed (in the same transactions as the source offsets),
/// so a downstream found caught up after it has read them all.
///
/// `stages_now` tells a job's repartition counts and generation as the group records them
/// now (a rescale switches the downstream stage to a new topic); `None` falls back to the
/// job's stage plan.
pub async fn await_caught_up(
    broker: &MemoryBroker,
    jobs: &[(SimJob, u64)],
    deadline: tokio::time::Instant,
    stages_now: &dyn Fn(u64) -> Option<(Vec<u32>, u32)>,
) -> Vec<String> {
    loop {
        let mut behind = Vec::new();
        for (job, id) in jobs {
            let group = format!("weir-job-{id}");
            let mut topics = vec![(job.source.clone(), job.source_partitions)];
            topics.extend(job.join_with.clone());
            topics.extend(repartition_topics(job, *id, stages_now(*id)));
            for (topic, partitions) in topics {
                for p in 0..partitions as i32 {
                    if let Some(lag) = partition_behind(broker, &group, &topic, p).await {
                        let at = match topic == job.source {
                            true => String::new(),
                            false => format!(" {topic}"),
                        };
                        behind.push(format!("{}{at} partition {p} {lag}", job.name));
                    }
                }
            }
        }
        if behind.is_empty() || tokio::time::Instant::now() >= deadline {
            return behind;
        }
        tokio::time::sleep(Duration::from_millis(CATCH_UP_POLL_MS)).await;
    }
}

/// The repartition topics of job `id` and their partition counts, when it is checked by
/// its stage plan.
fn repartition_topics(job: &SimJob, id: u64, now: Option<(Vec<u32>, u32)>) -> Vec<(String, u32)> {
    if !job.multi_stage {
        return Vec::new();
    }
    if let Some((counts, generation)) = now.filter(|(counts, _)| !counts.is_empty()) {
        return counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let name =
                    weir_core::spec::stages::repartition_topic_at(JobId(id), i + 1, generation);
                (name, n)
            })
            .collect();
    }
    match plan_stages(&job.spec, JobId(id), job.source_partitions) {
        Ok(plan) => plan
            .repartition_topics()
            .into_iter()
            .map(|topic| (topic.name.clone(), topic.partitions))
            .collect(),
        // The reference reports the same error when it checks the outputs.
        Err(_) => Vec::new(),
    }
}

/// How far `group` is behind on `topic` partition `p`, or `None` when caught up: no
/// committed record at or after its committed offset. (The offset may stop short of the
/// end by transaction markers, which hold no record.)
async fn partition_behind(
    broker: &MemoryBroker,
    group: &str,
    topic: &str,
    p: i32,
) -> Option<String> {
    let Ok(offsets) = broker.partition_offsets(topic, p) else {
        return Some("does not exist".to_string());
    };
    let committed = broker
        .committed_offset(group, topic, p)
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    let unread = broker
        .read_committed(topic, p, committed, 1)
        .await
        .map(|r| r.len())
        .unwrap_or(1);
    (unread > 0).then(|| format!("at {committed} of {}", offsets.last_stable_offset))
}

async fn read_all(broker: &MemoryBroker, topic: &str, partitions: u32) -> Vec<BrokerRecord> {
    let mut out = Vec::new();
    for p in 0..partitions as i32 {
        let mut offset = 0;
        loop {
            let chunk = broker
                .read_committed(topic, p, offset, READ_CHUNK)
                .await
                .unwrap_or_default();
            let Some(last) = chunk.last() else { break };
            offset = last.offset + 1;
            out.extend(chunk);
        }
    }
    out
}

/// What is wrong with a dead letter cut to fit, if anything: it must keep a prefix of its
/// source record's value, as much as fits (at least half the limit for the large records
/// the simulation cuts).
fn truncation_problem(letter: &RefDeadLetter, input: &[BrokerRecord]) -> Option<String> {
    let at = format!(
        "dead letter of partition {} offset {}",
        letter.partition, letter.offset
    );
    let Some(source) = input.iter().find(|r| {
        r.topic == letter.topic && r.partition == letter.partition && r.offset == letter.offset
    }) else {
        return Some(format!("{at} is cut down but has no source record"));
    };
    let kept = letter.payload.as_deref().unwrap_or_default();
    let value = source.value.as_deref().unwrap_or_default();
    if !value.starts_with(kept) {
        return Some(format!(
            "{at} keeps something other than a prefix of its value"
        ));
    }
    if kept.len() < reference::DEAD_LETTER_RECORD_BYTES_MAX / 2 {
        return Some(format!("{at} keeps only {} bytes of its value", kept.len()));
    }
    None
}

/// What a check of one job found.
#[derive(Debug, Default, Clone, Copy)]
pub struct JobTally {
    pub input: usize,
    pub outputs: usize,
    pub dead_letters: usize,
}

/// Compares `got` with `expected` as multisets; returns a description of the difference.
fn compare<T: Ord + Clone + std::fmt::Debug>(
    what: &str,
    expected: &[T],
    got: &[T],
) -> Option<String> {
    let mut counts: BTreeMap<T, i64> = BTreeMap::new();
    for e in expected {
        *counts.entry(e.clone()).or_default() += 1;
    }
    for g in got {
        *counts.entry(g.clone()).or_default() -= 1;
    }
    let missing: Vec<_> = counts.iter().filter(|(_, c)| **c > 0).collect();
    let extra: Vec<_> = counts.iter().filter(|(_, c)| **c < 0).collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let show = |v: &[(&T, &i64)]| {
        v.iter()
            .take(EXAMPLES_SHOWN)
            .map(|(t, c)| format!("{}x {t:?}", c.abs()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Some(format!(
        "{what}: {} expected, {} committed; {} missing [{}], {} extra or duplicated [{}]",
        expected.len(),
        got.len(),
        missing.len(),
        show(&missing),
        extra.len(),
        show(&extra)
    ))
}

/// A result record, as compared: its topic (the sink or a route's), key and value as text
/// where they are UTF-8.
type SinkEntry = (String, Option<String>, String);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The source records as the reference takes them.
fn ref_records<'a>(input: impl Iterator<Item = &'a BrokerRecord>) -> Vec<RefRecord> {
    input
        .map(|r| RefRecord {
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms.unwrap_or(0),
            key: r.key.clone(),
            value: r.value.clone(),
        })
        .collect()
}

/// What the reference expects of `job` (id `id`) over its committed `input`: the whole
/// job by its stage plan when it is checked so, else each source partition on its own
/// (every job runs as one stage until the multi-stage runtime). An error is reported as
/// a violation and leaves out what it could not evaluate.
fn expected_outputs(
    ctx: &SimContext,
    job: &SimJob,
    id: u64,
    input: &[BrokerRecord],
    versions: Option<&[reference::RefVersion]>,
    right_input: &[BrokerRecord],
) -> RefOutputs {
    let failed = |what: &str, e: ReferenceError| {
        ctx.violation(format!(
            "the reference cannot evaluate {}{what}: {e}",
            job.name
        ));
    };
    if let Some(versions) = versions {
        // Upgraded (so one stage): each partition by the version in force at each offset.
        let mut expected = RefOutputs::default();
        for p in 0..job.source_partitions as i32 {
            let records = ref_records(input.iter().filter(|r| r.partition == p));
            match reference::evaluate_upgraded_partition(versions, &job.source, p, &records) {
                Ok(outs) => {
                    expected.outputs.extend(outs.outputs);
                    expected.dead_letters.extend(outs.dead_letters);
                }
                Err(e) => failed(&format!(" partition {p} across its versions"), e),
            }
        }
        return expected;
    }
    if let Some((topic, partitions)) = &job.join_with {
        let right = ref_records(right_input.iter());
        let left = reference::JoinSideInput {
            topic: &job.source,
            partitions: job.source_partitions,
            records: &ref_records(input.iter()),
        };
        let right = reference::JoinSideInput {
            topic,
            partitions: *partitions,
            records: &right,
        };
        return reference::evaluate_join_job(&job.spec, JobId(id), left, right).unwrap_or_else(
            |e| {
                failed("", e);
                RefOutputs::default()
            },
        );
    }
    if job.multi_stage {
        let records = ref_records(input.iter());
        let spec = &job.spec;
        return reference::evaluate_job(
            spec,
            JobId(id),
            &job.source,
            job.source_partitions,
            &records,
        )
        .unwrap_or_else(|e| {
            failed("", e);
            RefOutputs::default()
        });
    }
    let mut expected = RefOutputs::default();
    for p in 0..job.source_partitions as i32 {
        let records = ref_records(input.iter().filter(|r| r.partition == p));
        match reference::evaluate_partition(&job.spec, &job.source, &records) {
            Ok(outs) => {
                expected.outputs.extend(outs.outputs);
                expected.dead_letters.extend(outs.dead_letters);
            }
            Err(e) => failed(&format!(" partition {p}"), e),
        }
    }
    expected
}

/// Checks every job's (with its id) committed outputs and dead letters against the
/// reference evaluator over the committed input, as multisets over the whole job.
/// Returns per-job tallies for the trace.
/// An upgraded job is checked against its `versions` (`crate::upgrades::version_chains`).
pub async fn check_outputs(
    ctx: &SimContext,
    broker: &MemoryBroker,
    jobs: &[(SimJob, u64)],
    versions: &std::collections::BTreeMap<JobId, Vec<reference::RefVersion>>,
    rescaled: &std::collections::BTreeSet<JobId>,
) -> Vec<JobTally> {
    let mut tallies = Vec::new();
    for (job, id) in jobs {
        let mut input = read_all(broker, &job.source, job.source_partitions).await;
        let right_input = match &job.join_with {
            Some((topic, partitions)) => read_all(broker, topic, *partitions).await,
            None => Vec::new(),
        };
        let chain = versions.get(&JobId(*id)).map(Vec::as_slice);
        let expected = expected_outputs(ctx, job, *id, &input, chain, &right_input);
        // A join's dead letters come from both of its topics.
        input.extend(right_input);
        if let Some(first) = expected.misplaced.first() {
            // The simulation's producers place records as the source declares.
            ctx.violation(format!(
                "{}: {} records on the wrong partition of a source declared partitioned_by, \
                 e.g. partition {} offset {} key {:?} (belongs on {})",
                job.name,
                expected.misplaced.len(),
                first.partition,
                first.offset,
                first.key,
                first.expected_partition
            ));
        }
        let expected_out: Vec<SinkEntry> = expected
            .outputs
            .into_iter()
            .map(|RefOutput { key, value, route }| {
                let topic = match route {
                    0 => job.sink.clone(),
                    i => job.spec.routes[usize::from(i) - 1].topic.clone(),
                };
                (topic, key.as_deref().map(text), text(&value))
            })
            .collect();
        let expected_dead: Vec<RefDeadLetter> = expected
            .dead_letters
            .into_iter()
            .map(|d| reference::as_written(d, reference::DEAD_LETTER_RECORD_BYTES_MAX))
            .collect();
        let mut got_out: Vec<SinkEntry> = Vec::new();
        let topics = std::iter::once(&job.sink).chain(job.spec.routes.iter().map(|r| &r.topic));
        for topic in topics {
            for r in read_all(broker, topic, job.sink_partitions).await {
                got_out.push((
                    topic.clone(),
                    r.key.as_deref().map(text),
                    text(r.value.as_deref().unwrap_or_default()),
                ));
            }
        }
        let mut got_dead = Vec::new();
        let mut unreadable = Vec::new();
        for r in read_all(broker, &job.dead_letters, 1).await {
            match reference::parse_dead_letter(r.value.as_deref().unwrap_or_default()) {
                Ok(mut d) if d.truncated.is_some() => {
                    if let Some(problem) = truncation_problem(&d, &input) {
                        ctx.violation(format!("{}: {problem}", job.name));
                    }
                    // Compared by length and digest from here on.
                    d.payload = None;
                    got_dead.push(d);
                }
                Ok(d) => got_dead.push(d),
                Err(e) => unreadable.push(format!("offset {}: {e}", r.offset)),
            }
        }
        if !unreadable.is_empty() {
            ctx.violation(format!(
                "{}: {} unreadable dead letters, e.g. {}",
                job.name,
                unreadable.len(),
                unreadable[0]
            ));
        }
        if let Some(diff) = compare(&format!("{} outputs", job.name), &expected_out, &got_out) {
            ctx.violation(diff);
        }
        let (expected_dead, got_dead) = if rescaled.contains(&JobId(*id)) {
            (
                without_downstream_partition(expected_dead),
                without_downstream_partition(got_dead),
            )
        } else {
            (expected_dead, got_dead)
        };
        if let Some(diff) = compare(
            &format!("{} dead letters", job.name),
            &expected_dead,
            &got_dead,
        ) {
            ctx.violation(diff);
        }
        let tally = JobTally {
            input: input.len(),
            outputs: got_out.len(),
            dead_letters: got_dead.len(),
        };
        ctx.event(&format!(
            "{}: {} input records, {} outputs, {} dead letters",
            job.name, tally.input, tally.outputs, tally.dead_letters
        ));
        tallies.push(tally);
    }
    tallies
}

/// A rescaled job's dead letters with the repartition topic and partition of those the
/// downstream stage wrote (offset -1: a result failing after the aggregate) left out:
/// they name the topic and partition of the generation whose task fired the window,
/// which depends on when the rescale cut the run.
fn without_downstream_partition(letters: Vec<RefDeadLetter>) -> Vec<RefDeadLetter> {
    letters
        .into_iter()
        .map(|mut d| {
            if d.offset == -1
                && d.topic
                    .starts_with(weir_core::spec::stages::REPARTITION_TOPIC_PREFIX)
            {
                d.topic = "<a repartition topic>".into();
                d.partition = 0;
            }
            d
        })
        .collect()
}
