//! One key's state in a partition's pipeline, read-only: what `weir job state ID --key K`
//! shows an operator (its open windows with the aggregates as a result would carry them
//! now, and the last event time each dedupe stage kept for it). Nothing here changes
//! the state.

use super::pipeline::{window_result_json, Pipeline};
use super::window::Fired;
use serde::Serialize;

/// What a pipeline holds for one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyState {
    /// The key's open windows, oldest first, each as the result it would give if it fired
    /// now (`key`, `window_start`, `window_end` and every aggregate).
    pub windows: Vec<serde_json::Value>,
    /// Per dedupe stage that remembers the key (looked up by the key as given, which is
    /// the dedupe key only when the stage dedupes on the same expression the window is
    /// keyed by): its index among the job's dedupe stages and the event time of the last
    /// event it kept.
    pub dedupe: Vec<DedupeEntry>,
}

/// A dedupe stage's memory of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DedupeEntry {
    /// Which dedupe stage, counted among the pipeline's dedupe stages from 0.
    pub dedupe_stage: usize,
    /// The event time of the last event the stage kept for the key.
    pub last_kept_ms: i64,
}

impl KeyState {
    /// Whether the pipeline holds nothing for the key.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.dedupe.is_empty()
    }
}

impl Pipeline {
    /// The state this pipeline holds for `key` (the key as window results name it).
    pub fn key_state(&self, key: &str) -> KeyState {
        let windows = match (&self.state.windows, &self.plan.window) {
            (Some(windows), Some(plan)) => windows
                .panes_of(key)
                .iter()
                .map(|pane| {
                    let fired = Fired {
                        key: key.into(),
                        start_ms: pane.start_ms,
                        end_ms: pane.end_ms,
                        accumulators: pane.accumulators.clone(),
                    };
                    let text = window_result_json(plan, &fired);
                    serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null)
                })
                .collect(),
            _ => Vec::new(),
        };
        let dedupe = self
            .state
            .dedupe
            .iter()
            .enumerate()
            .filter_map(|(dedupe_stage, memory)| {
                memory.last_kept_ms(key).map(|last_kept_ms| DedupeEntry {
                    dedupe_stage,
                    last_kept_ms,
                })
            })
            .collect();
        KeyState { windows, dedupe }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::{Outputs, SourceRecord};
    use weir_core::spec::parse_job_spec;

    #[test]
    fn a_keys_open_windows_and_dedupe_memory_are_shown_and_other_keys_are_not() {
        let spec = parse_job_spec(
            br#"
name: v
source: { topic: p, format: json, event_time: ts }
pipeline:
  - dedupe: { key: "card", ttl: 1h }
  - key_by: "card"
  - window: { tumbling: 10s }
  - aggregate: { n: "count()", total: "sum(amount)" }
sink: { topic: out }
"#,
        )
        .unwrap();
        let mut pipeline = Pipeline::compile(&spec).unwrap();
        let mut out = Outputs::new();
        for (i, (card, ts, amount)) in [("c1", 1_000, 5), ("c2", 2_000, 7), ("c1", 3_000, 9)]
            .into_iter()
            .enumerate()
        {
            let value = format!(r#"{{"card":"{card}","ts":{ts},"amount":{amount}}}"#);
            let record = SourceRecord {
                topic: "p".into(),
                partition: 0,
                offset: i as i64,
                timestamp_ms: None,
                key: None,
                value: Some(value.into_bytes()),
            };
            pipeline.process(&record, &mut out).unwrap();
        }
        let state = pipeline.key_state("c1");
        assert_eq!(
            state.windows,
            vec![serde_json::json!({
                "key": "c1", "window_start": 0, "window_end": 10_000, "n": 1, "total": 5
            })],
            "the second c1 event is a duplicate by card within the ttl"
        );
        assert_eq!(
            state.dedupe,
            vec![DedupeEntry {
                dedupe_stage: 0,
                last_kept_ms: 1_000
            }]
        );
        assert!(pipeline.key_state("c9").is_empty());
    }
}
