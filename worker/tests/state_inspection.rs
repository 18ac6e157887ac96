//! `weir job state`'s reading of one key's state, through the real runtime: the two-stage
//! job of `common::shuffle_job` runs over its whole input and checkpoints; then every
//! task's committed snapshot is read back for a key, and the open windows found must be
//! exactly the key's windows the input has not closed yet, with the counts and sums the
//! input gives them (computed here), all in the downstream stage.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::collections::BTreeMap;
use weir_broker::memory::MemoryBroker;
use weir_core::ids::JobId;
use weir_core::spec::stages::task_stage;
use weir_worker::checkpoint_store::MemoryCheckpointStore;
use weir_worker::state_inspection::{task_key_state, CommittedTask};

mod common;
use common::shuffle_job::{event, setup, start, tasks, EVENTS, SOURCE_PARTITIONS};

/// The key's windows that are still open once every event was read: (start, n, total).
fn open_windows_of(card: &str) -> Vec<(i64, i64, i64)> {
    let mut largest = BTreeMap::new();
    let mut windows: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for i in 0..EVENTS {
        let (partition, c, ts, amount) = event(i);
        let seen = largest.entry(partition).or_insert(ts);
        *seen = (*seen).max(ts);
        if c == card && amount > 0 {
            let w = windows
                .entry(ts.div_euclid(10_000) * 10_000)
                .or_insert((0, 0));
            w.0 += 1;
            w.1 += amount;
        }
    }
    let watermark = *largest.values().min().unwrap();
    windows
        .into_iter()
        .filter(|(start, _)| start + 10_000 > watermark)
        .map(|(start, (n, total))| (start, n, total))
        .collect()
}

#[tokio::test]
async fn a_keys_open_windows_are_read_from_the_committed_snapshots() {
    let broker = MemoryBroker::new();
    let (spec, control) = setup(&broker).await;
    let store = MemoryCheckpointStore::new();
    let mut runners = Vec::new();
    for task in tasks() {
        runners.push(start(&broker, &spec, &control, &store, task, "w1", 1, 0).await);
    }
    let mut now = 0;
    for _ in 0..60 {
        now += 250;
        for runner in runners.iter_mut() {
            runner.step(now).await.unwrap();
        }
    }
    for _ in 0..3 {
        now += 2_000;
        for runner in runners.iter_mut() {
            runner.step(now).await.unwrap();
            runner.checkpoint(now).await.unwrap();
        }
    }
    let (repartitions, committed) = {
        let s = control.state.lock().unwrap();
        let job = &s.jobs[&JobId(1)];
        let committed: Vec<CommittedTask> = job
            .partitions
            .iter()
            .filter_map(|(id, p)| {
                p.committed.map(|(checkpoint, offset)| CommittedTask {
                    partition: *id,
                    offset,
                    checkpoint: Some(checkpoint),
                })
            })
            .collect();
        (job.repartitions.clone(), committed)
    };
    assert_eq!(committed.len(), tasks().len(), "every task committed");
    for card in ["c1", "c3"] {
        let mut found = Vec::new();
        for task in &committed {
            let state = task_key_state(
                &store,
                JobId(1),
                &spec,
                (&repartitions, SOURCE_PARTITIONS),
                *task,
                card,
            )
            .await
            .unwrap();
            if let Some(state) = state {
                assert_eq!(task_stage(state.partition).0, 1, "windows live downstream");
                found.extend(state.state.windows.iter().map(|w| {
                    (
                        w["window_start"].as_i64().unwrap(),
                        w["n"].as_i64().unwrap(),
                        w["total"].as_i64().unwrap(),
                    )
                }));
            }
        }
        let want = open_windows_of(card);
        assert!(!want.is_empty(), "the input leaves {card} a window open");
        assert_eq!(found, want, "{card}");
    }
    // A key the job never saw has no state anywhere.
    for task in &committed {
        let none = task_key_state(
            &store,
            JobId(1),
            &spec,
            (&repartitions, SOURCE_PARTITIONS),
            *task,
            "nobody",
        )
        .await
        .unwrap();
        assert!(none.is_none());
    }
}
