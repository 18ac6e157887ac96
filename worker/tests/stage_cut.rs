//! A savepoint of a job that repartitions is one cut across its stages: the job pauses
//! (upstream tasks first; each downstream task reads the repartition topic to its end
//! before it pauses), a savepoint is taken, the job resumes, reads more, stops, and
//! starts again from the savepoint. Every window result committed must then be one the
//! input gives (results after the cut are produced twice, identically, as a start from a
//! savepoint promises), and none may be missing. With the downstream tasks pausing
//! without draining (`pause-without-drain` planted), the restored downstream state lacks
//! the records in flight at the pause, and a window's count comes out short.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and binaries

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use weir_broker::memory::MemoryBroker;
use weir_coordinator::scheduler::plan;
use weir_coordinator::state::lifecycle::JobRequest;
use weir_coordinator::state::{Command, CommandResult, Move};
use weir_core::ids::{JobId, PartitionId, SavepointId, WorkerId};
use weir_core::spec::JobSpec;
use weir_core::wire::{JobState, WorkerReport};
use weir_worker::checkpoint_store::MemoryCheckpointStore;
use weir_worker::control::ControlPlane;
use weir_worker::exactly_once::{PartitionConfig, PartitionRunner};

mod common;
use common::shuffle_job::{committed, expected_of, produce, setup_with, start, tasks, EVENTS};
use common::LocalControl;

type Runner = PartitionRunner<MemoryBroker, MemoryCheckpointStore, LocalControl>;

/// Rounds any phase of the test may take before it counts as stuck.
const ROUNDS_MAX: usize = 400;

struct Job {
    broker: MemoryBroker,
    spec: JobSpec,
    control: Arc<LocalControl>,
    store: MemoryCheckpointStore,
    runners: BTreeMap<PartitionId, Runner>,
    idle: BTreeMap<PartitionId, bool>,
    now: u64,
}

impl Job {
    fn state(&self) -> JobState {
        self.control.state.lock().unwrap().jobs[&JobId(1)].state
    }

    fn request(&self, request: JobRequest) {
        let r = self.control.apply(Command::ChangeJobState {
            job: JobId(1),
            tenant: None,
            request,
        });
        assert_eq!(r, CommandResult::Done, "{request:?}");
    }

    /// Applies the scheduler's plan, except its placements (this test places tasks
    /// itself): a release stops the task's runner.
    async fn settle(&mut self) {
        for _ in 0..10 {
            let commands = plan(&self.control.state.lock().unwrap());
            let mut applied = false;
            for c in commands {
                let c = match c {
                    Command::Place { moves } => {
                        let moves: Vec<Move> =
                            moves.into_iter().filter(|m| m.worker.is_none()).collect();
                        if moves.is_empty() {
                            continue;
                        }
                        for m in &moves {
                            if let Some(runner) = self.runners.remove(&m.partition) {
                                runner.stop().await;
                            }
                            self.idle.remove(&m.partition);
                        }
                        Command::Place { moves }
                    }
                    other => other,
                };
                self.control.apply(c);
                applied = true;
            }
            if !applied {
                return;
            }
        }
    }

    /// One round of every task: a task the group wants paused pauses once it may (a
    /// downstream task after draining), as the worker's partition actor does; the others
    /// read a batch.
    async fn round(&mut self) {
        self.now += 250;
        for (task, runner) in self.runners.iter_mut() {
            let wanted = {
                let s = self.control.state.lock().unwrap();
                s.jobs[&JobId(1)].wants_partition_paused(*task)
            };
            if wanted {
                let idle = self.idle.get(task).copied().unwrap_or(false);
                if runner.may_pause(&self.broker, idle).await {
                    if runner.pause(self.now).await.unwrap() {
                        let epoch = runner.config().epoch;
                        let report = WorkerReport::Paused {
                            job: JobId(1),
                            partition: *task,
                            epoch,
                        };
                        let _ = self.control.report(&runner.config().worker, report).await;
                    }
                    continue;
                }
            } else if runner.is_pausing() {
                runner.resume(self.now).await.unwrap();
            }
            let n = runner.step(self.now).await.unwrap();
            self.idle.insert(*task, n == 0);
        }
    }

    /// Rounds until the job is in `state`.
    async fn until(&mut self, state: JobState) {
        for _ in 0..ROUNDS_MAX {
            self.settle().await;
            if self.state() == state {
                return;
            }
            self.round().await;
        }
        panic!("the job did not become {state:?}: {:?}", self.state());
    }

    /// Rounds until every task read everything there is, then a checkpoint of each.
    async fn drain_input(&mut self) {
        for _ in 0..ROUNDS_MAX {
            self.round().await;
            if self.idle.values().all(|idle| *idle) {
                break;
            }
        }
        for _ in 0..3 {
            self.now += 2_000;
            for runner in self.runners.values_mut() {
                runner.step(self.now).await.unwrap();
                runner.checkpoint(self.now).await.unwrap();
            }
        }
    }

    /// Places every task again (a new epoch, worker `w2`) and recovers it as the group
    /// says: from its restore point when the job started from a savepoint.
    async fn restart_all(&mut self) {
        for task in tasks() {
            let (epoch, restore, floor, repartitions) = {
                let s = self.control.state.lock().unwrap();
                let j = &s.jobs[&JobId(1)];
                let p = &j.partitions[&task];
                (
                    p.epoch.next(),
                    p.restore_point(),
                    p.checkpoint_floor(),
                    j.repartitions.clone(),
                )
            };
            let r = self.control.apply(Command::Place {
                moves: vec![Move {
                    job: JobId(1),
                    partition: task,
                    worker: Some(WorkerId::from("w2")),
                    epoch,
                }],
            });
            assert_eq!(r, CommandResult::Done);
            let config = PartitionConfig {
                worker: WorkerId::from("w2"),
                job: JobId(1),
                partition: task,
                epoch,
                spec: self.spec.clone(),
                poll_batch_records: 40,
                committed_checkpoint: floor,
                repartitions,
                repartition_generation: 0,
                restore,
                pins: None,
                join_upstreams: None,
            };
            let runner = PartitionRunner::recover(
                config,
                &self.broker,
                self.store.clone(),
                self.control.clone(),
                self.now,
            )
            .await
            .unwrap();
            self.runners.insert(task, runner);
            self.idle.insert(task, false);
        }
    }
}

async fn savepoint_then_restart_from_it() -> (Vec<String>, Vec<String>) {
    let broker = MemoryBroker::new();
    let half = EVENTS / 2;
    let (spec, control) = setup_with(&broker, 0..half).await;
    let store = MemoryCheckpointStore::new();
    let mut runners = BTreeMap::new();
    for task in tasks() {
        let runner = start(&broker, &spec, &control, &store, task, "w1", 1, 0).await;
        runners.insert(task, runner);
    }
    let idle = tasks().into_iter().map(|t| (t, false)).collect();
    let mut job = Job {
        broker: broker.clone(),
        spec,
        control,
        store,
        runners,
        idle,
        now: 0,
    };
    job.settle().await;
    // Midway through the first half (each source partition holds 100 events, a round
    // reads 40, a checkpoint is due after 4 rounds), the job pauses and a savepoint is cut.
    for _ in 0..2 {
        job.round().await;
    }
    job.request(JobRequest::Pause);
    job.until(JobState::Paused).await;
    let taken = job.control.apply(Command::TakeSavepoint {
        job: JobId(1),
        tenant: None,
        at_ms: job.now,
    });
    let CommandResult::SavepointTaken { id } = taken else {
        panic!("a paused job's savepoint: {taken:?}");
    };
    // It resumes, reads the rest, and stops.
    job.request(JobRequest::Resume);
    produce(&broker, half..EVENTS).await;
    job.drain_input().await;
    job.request(JobRequest::Stop);
    job.until(JobState::Stopping).await;
    for _ in 0..ROUNDS_MAX {
        job.round().await;
        job.settle().await;
        let all_released = {
            let s = job.control.state.lock().unwrap();
            s.jobs[&JobId(1)]
                .partitions
                .values()
                .all(|p| p.worker.is_none())
        };
        if all_released {
            break;
        }
    }
    fence_all(&job.control);
    job.until(JobState::Stopped).await;
    // And starts from the savepoint.
    let r = job.control.apply(Command::StartFromSavepoint {
        job: JobId(1),
        tenant: None,
        savepoint: SavepointId(id.0),
    });
    assert_eq!(r, CommandResult::Done);
    job.restart_all().await;
    job.settle().await;
    // More input, so that the windows open at the stop fire too.
    produce(&broker, EVENTS..EVENTS + half).await;
    job.drain_input().await;
    (
        committed(&broker, "alerts").await,
        expected_of(0..EVENTS + half),
    )
}

/// Fences every partition that needs it, as a worker's fence duty would.
fn fence_all(control: &LocalControl) {
    let duties: Vec<PartitionId> = {
        let s = control.state.lock().unwrap();
        s.jobs[&JobId(1)]
            .partitions
            .iter()
            .filter(|(_, p)| p.needs_fencing())
            .map(|(id, _)| *id)
            .collect()
    };
    if duties.is_empty() {
        return;
    }
    let r = control.apply(Command::WorkerReport {
        worker: WorkerId::from("w1"),
        report: WorkerReport::Fenced {
            job: JobId(1),
            partitions: duties,
            commit_points: Vec::new(),
        },
    });
    assert_eq!(r, CommandResult::Done);
}

/// The distinct results, and whether some came twice (the replay after the cut).
fn distinct(results: &[String]) -> (Vec<String>, bool) {
    let set: BTreeSet<&String> = results.iter().collect();
    let repeated = set.len() < results.len();
    (set.into_iter().cloned().collect(), repeated)
}

#[tokio::test]
async fn a_start_from_a_paused_jobs_savepoint_gives_every_window_result_right() {
    let (results, want) = savepoint_then_restart_from_it().await;
    let (results, repeated) = distinct(&results);
    assert!(want.len() > 50, "many windows: {}", want.len());
    assert!(repeated, "the results after the cut are produced again");
    assert_eq!(results, want);
}

#[cfg(feature = "planted-bugs")]
#[tokio::test]
async fn a_downstream_task_that_pauses_without_draining_is_caught() {
    use weir_core::bugs::{plant, PlantedBug};
    plant(Some(PlantedBug::PauseWithoutDrain));
    let (results, want) = savepoint_then_restart_from_it().await;
    plant(None);
    let (results, _) = distinct(&results);
    assert_ne!(results, want, "the planted bug went unnoticed");
}
