//! TEMPORARY placeholder until the reference evaluator lands.
#![allow(missing_docs, dead_code)]
use weir_core::spec::JobSpec;
pub struct RefRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}
pub struct RefOutput {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefDeadLetter {
    pub reason: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
}
pub struct RefOutputs {
    pub outputs: Vec<RefOutput>,
    pub dead_letters: Vec<RefDeadLetter>,
}
pub fn evaluate_partition(_: &JobSpec, _: &str, _: &[RefRecord]) -> Result<RefOutputs, String> {
    Ok(RefOutputs {
        outputs: vec![],
        dead_letters: vec![],
    })
}
pub fn parse_dead_letter(_: &[u8]) -> Result<RefDeadLetter, String> {
    Err("stub".into())
}
