//! The job spec as data (docs/JOB_SPEC.md): what a user submits, what the
//! coordinator stores and replicates, and what a worker builds its operators from. Field
//! names are the contract's; every struct rejects unknown fields so a typo such as
//! `checkpoint_intreval` is an error instead of a silently ignored setting.

use super::duration::SpecDuration;
use super::stage::Stage;
use serde::{Deserialize, Serialize};

/// The checkpoint interval when a spec does not set one.
pub const CHECKPOINT_INTERVAL_DEFAULT: SpecDuration = SpecDuration::from_secs(1);

/// The suffix of a job's dead-letter topic when a spec does not name one.
pub const DEAD_LETTER_TOPIC_SUFFIX: &str = "-dlq";

/// A job: read a topic, run its events through a pipeline, write the results to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's name, `[a-z0-9-]{1,63}`, unique in its tenant.
    pub name: String,
    /// Where events come from.
    pub source: Source,
    /// The stages each event goes through, in order; empty copies the source to the sink.
    #[serde(default)]
    pub pipeline: Vec<Stage>,
    /// Where results go: those no route takes.
    pub sink: Sink,
    /// Results sent to other topics than the sink: each result goes to the first route
    /// whose `when` holds, else to the sink. Empty: every result goes to the sink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Where events that cannot be processed go; `None` means `<name>-dlq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// How often every partition checkpoints its state and offsets.
    #[serde(default = "checkpoint_interval_default")]
    pub checkpoint_interval: SpecDuration,
    /// The partition count of the job's repartition topics, so of every stage after a
    /// shuffle ([`super::stages`]); `None` means the source topic's partition count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
}

fn checkpoint_interval_default() -> SpecDuration {
    CHECKPOINT_INTERVAL_DEFAULT
}

impl JobSpec {
    /// The dead-letter topic in effect: the one written, else `<name>-dlq`.
    pub fn dead_letter_topic_or_default(&self) -> String {
        match &self.dead_letter_topic {
            Some(topic) => topic.clone(),
            None => format!("{}{DEAD_LETTER_TOPIC_SUFFIX}", self.name),
        }
    }
}

/// The topic a job reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The Kafka topic; one task per partition reads it.
    pub topic: String,
    /// How record values are encoded.
    #[serde(default)]
    pub format: Format,
    /// The event field holding event time (RFC 3339 or epoch ms); `None` uses the record's
    /// timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
    /// How far behind the latest event time the watermark trails; `None` means zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_out_of_orderness: Option<SpecDuration>,
    /// The top-level event field the topic is partitioned by, if the producer keys records
    /// by it: a `key_by` on that field then needs no shuffle ([`super::stages`]), and every
    /// event reaching the window is checked to be on its key's partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioned_by: Option<String>,
}

impl Source {
    /// The watermark's delay, zero when not written.
    pub fn max_out_of_orderness_or_zero(&self) -> SpecDuration {
        self.max_out_of_orderness.unwrap_or(SpecDuration::ZERO)
    }
}

/// The topic a job writes its results to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sink {
    /// The Kafka topic.
    pub topic: String,
    /// How record values are encoded.
    #[serde(default)]
    pub format: Format,
    /// The delivery guarantee.
    #[serde(default)]
    pub delivery: Delivery,
}

/// One route: results for which `when` holds go to `topic` instead of the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// A CEL predicate over the result (as the stages after the last one see it).
    pub when: String,
    /// The Kafka topic.
    pub topic: String,
}

/// How a record value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Each record value is one JSON object.
    #[default]
    Json,
}

/// The delivery guarantee of a job's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Outputs are written in Kafka transactions committed with each checkpoint; a
    /// `read_committed` consumer sees each exactly once.
    #[default]
    ExactlyOnce,
    /// Outputs are written as produced; after a failure some may be written again.
    AtLeastOnce,
}
