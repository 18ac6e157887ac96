//! The jobs the worker benches run, as users would write them, over the bids of
//! [`super::nexmark`].

use anyhow::Context;
use weir_core::spec::{parse_job_spec, JobSpec};

/// Which job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// No stages: every bid is checked to be JSON and copied to the sink unchanged.
    Copy,
    /// Stateless: `filter: "price > 100"` (half pass) and a 3-field `map`.
    FilterMap,
    /// Keyed tumbling-window count: `key_by: "bidder"` over 10,000 bidders, 10 s windows.
    /// The bids are partitioned by bidder, so it runs as one stage (as with a source that
    /// declares `partitioned_by`).
    WindowedCount,
    /// The same spec run as two stages through a repartition topic, as it runs when the
    /// source is not partitioned by bidder: what a shuffle costs.
    WindowedShuffled,
}

/// The tumbling window of [`Job::WindowedCount`].
pub const WINDOW_SIZE_MS: i64 = 10_000;

impl Job {
    /// Whether the job runs as two stages (upstream tasks, a repartition topic, downstream
    /// tasks).
    pub fn repartitions(self) -> bool {
        self == Job::WindowedShuffled
    }

    /// The job's short name, as the tables print it.
    pub fn name(self) -> &'static str {
        match self {
            Job::Copy => "copy",
            Job::FilterMap => "filter+map",
            Job::WindowedCount => "windowed count",
            Job::WindowedShuffled => "windowed count, repartitioned",
        }
    }

    /// The job's spec reading `source` and writing `sink`, checkpointing every second.
    pub fn spec(self, source: &str, sink: &str) -> anyhow::Result<JobSpec> {
        let pipeline = match self {
            Job::Copy => "pipeline: []".to_string(),
            Job::FilterMap => r#"pipeline:
  - filter: "price > 100"
  - map: { auction: "auction", price: "price", bidder: "bidder" }"#
                .to_string(),
            Job::WindowedCount | Job::WindowedShuffled => format!(
                r#"pipeline:
  - key_by: "bidder"
  - window: {{ tumbling: {}s }}
  - aggregate: {{ n: "count()" }}"#,
                WINDOW_SIZE_MS / 1_000
            ),
        };
        let yaml = format!(
            r#"name: bench-{name}
source: {{ topic: {source}, format: json, event_time: date_time, max_out_of_orderness: 1s }}
{pipeline}
sink: {{ topic: {sink}, format: json, delivery: exactly_once }}
dead_letter_topic: {sink}-dlq
checkpoint_interval: 1s
"#,
            name = self.name().replace([' ', '+', ','], "-").replace("--", "-"),
        );
        parse_job_spec(yaml.as_bytes()).with_context(|| format!("the {} job's spec", self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_compiles() {
        for job in [Job::Copy, Job::FilterMap, Job::WindowedCount] {
            let spec = job.spec("bids", "out").unwrap();
            weir_worker::operators::Pipeline::compile(&spec).unwrap();
        }
    }
}
