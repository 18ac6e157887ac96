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
