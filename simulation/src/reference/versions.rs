//! An upgraded job's partition: each version evaluates the input from its cut on (the
//! first offset it reads, from the savepoint it started from), carrying the previous
//! version's state as the upgrade says ([`Evaluator::upgraded`]). The outputs are those of
//! the first version before the first cut, of the second from there to the next cut, and
//! so on: every input processed once, by the version in force at its offset.

use super::evaluator::Evaluator;
use super::plan::Plan;
use super::{RefOutputs, RefRecord, ReferenceError};
use std::collections::BTreeMap;
use weir_core::spec::JobSpec;

/// One version of a job as the reference needs it.
#[derive(Debug, Clone)]
pub struct RefVersion {
    pub spec: JobSpec,
    /// Per source partition, the first offset this version reads (empty for version 1).
    pub cuts: BTreeMap<i32, i64>,
    /// The stateful stages (by id) whose state this version started without.
    pub state_drop: Vec<String>,
}

/// Evaluates `versions` (oldest first, at least one) over `records`, one source
/// partition's records of `topic` in offset order.
pub fn evaluate_upgraded_partition(
    versions: &[RefVersion],
    topic: &str,
    partition: i32,
    records: &[RefRecord],
) -> Result<RefOutputs, ReferenceError> {
    let Some(first) = versions.first() else {
        return Err(ReferenceError::InvalidSpec("a job without versions".into()));
    };
    let mut evaluator = Evaluator::new(Plan::compile(&first.spec)?, topic);
    let mut next = 1;
    for record in records {
        while let Some(version) = versions.get(next) {
            let Some(cut) = version.cuts.get(&partition) else {
                return Err(ReferenceError::Unsupported(format!(
                    "version {} has no cut for partition {partition}",
                    next + 1
                )));
            };
            if record.offset < *cut {
                break;
            }
            evaluator = evaluator.upgraded(Plan::compile(&version.spec)?, &version.state_drop)?;
            next += 1;
        }
        evaluator.process(record)?;
    }
    Ok(evaluator.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::spec::parse_job_spec;

    fn spec(extra: &str) -> JobSpec {
        let yaml = format!(
            "name: j\nsource: {{ topic: in, event_time: ts }}\npipeline:\n  \
             - dedupe: {{ key: id, ttl: 1h }}\n{extra}sink: {{ topic: out }}\n"
        );
        parse_job_spec(yaml.as_bytes()).unwrap()
    }

    fn record(offset: i64, id: u32) -> RefRecord {
        RefRecord {
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: None,
            value: Some(format!(r#"{{"id": {id}, "ts": {}}}"#, 1_000 + offset).into_bytes()),
        }
    }

    fn ids(versions: &[RefVersion]) -> Vec<String> {
        // Ids 1, 2, 1, 3, 2, 4 at offsets 0..6; the upgrade's cut is offset 2.
        let records: Vec<RefRecord> = [1, 2, 1, 3, 2, 4]
            .iter()
            .enumerate()
            .map(|(offset, id)| record(offset as i64, *id))
            .collect();
        evaluate_upgraded_partition(versions, "in", 0, &records)
            .unwrap()
            .outputs
            .iter()
            .map(|o| {
                let v: serde_json::Value = serde_json::from_slice(&o.value).unwrap();
                v["id"].to_string()
            })
            .collect()
    }

    fn versions(drop: &[&str]) -> Vec<RefVersion> {
        vec![
            RefVersion {
                spec: spec(""),
                cuts: BTreeMap::new(),
                state_drop: vec![],
            },
            RefVersion {
                spec: spec("  - filter: \"id != 4\"\n"),
                cuts: BTreeMap::from([(0, 2)]),
                state_drop: drop.iter().map(|d| d.to_string()).collect(),
            },
        ]
    }

    #[test]
    fn each_version_evaluates_from_its_cut_with_the_state_carried() {
        // Before the cut: 1, 2. After it: the repeats still dropped, 4 filtered out.
        assert_eq!(ids(&versions(&[])), ["1", "2", "3"]);
        // The dedupe dropped at the cut: the repeats of 1 and 2 pass again.
        assert_eq!(ids(&versions(&["dedupe#0"])), ["1", "2", "1", "3", "2"]);
    }
}
