//! Group commit: writes that queue up while earlier ones are being committed travel in one
//! log entry, so one fsync on the leader and one on each follower carry many of them.
//! openraft 0.9 appends each `client_write` on its own and waits for that append's flush
//! before taking the next, so without this the leader's throughput is one write per fsync
//! (docs/BENCHMARKS.md). Commands in a batch are applied in order and each gets its own
//! result, so a batch is invisible to callers.

use crate::raft_types::Raft;
use crate::state::{Command, CommandResult};
use crate::write_error::WriteError;
use openraft::error::{ClientWriteError, RaftError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Writes waiting for a batch; more make `submit` wait (backpressure).
pub const PROPOSALS_QUEUED_MAX: usize = 4_096;
/// Commands in one log entry.
pub const BATCH_COMMANDS_MAX: usize = 256;
/// Batches being committed at once. One or two keep the pipeline full; more only split
/// the queue into smaller batches (measured: three or four in flight were slower).
pub const BATCHES_IN_FLIGHT_MAX: usize = 2;
/// How long a batch waits for openraft to answer before its writes are answered
/// "unavailable" (outcome unknown) and its slot freed. openraft 0.9 can leave a write
/// unanswered for good. In simulation seed 8921 a member restarted as leader of its old
/// term while cut off (openraft restores leadership), took two writes it could never
/// commit, and rejoined as a follower without answering them (openraft answers waiting
/// writes when it truncates their entries, not when a snapshot replaces them); both slots
/// stayed taken, and once elected again the member never committed another write.
pub const BATCH_ANSWER_WAIT_MS: u64 = 5_000;

type Reply = oneshot::Sender<Result<CommandResult, WriteError>>;

/// The sending side of the group-commit task.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<(Command, Reply)>,
}

impl GroupCommit {
    /// Starts the task that batches proposals for `raft`; it ends when every sender is gone.
    pub fn start(raft: Raft) -> Self {
        let (queue, rx) = mpsc::channel(PROPOSALS_QUEUED_MAX);
        tokio::spawn(run(raft, rx));
        GroupCommit { queue }
    }

    /// Proposes one command and waits for its own result.
    pub async fn submit(&self, command: Command) -> Result<CommandResult, WriteError> {
        let (reply, answer) = oneshot::channel();
        if self.queue.send((command, reply)).await.is_err() {
            return Err(WriteError::Unavailable(
                "the coordinator is shutting down".into(),
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(WriteError::Unavailable(
                "the coordinator is shutting down".into(),
            ))
        })
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<(Command, Reply)>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while we waited for a permit goes into this batch.
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        metrics::histogram!("weir_raft_batch_commands").record(batch.len() as f64);
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (mut commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
            let single = commands.len() == 1;
            let entry = if single {
                commands.pop().expect("one command")
            } else {
                Command::Batch(commands)
            };
            let answer = tokio::time::timeout(
                Duration::from_millis(BATCH_ANSWER_WAIT_MS),
                raft.client_write(entry),
            )
            .await;
            let Ok(answer) = answer else {
                metrics::counter!("weir_raft_batches_unanswered_total").increment(1);
                tracing::warn!(
                    commands = replies.len(),
                    "openraft did not answer a batch in time; its writes' outcome is unknown"
                );
                for reply in replies {
                    let _ = reply.send(Err(WriteError::Unavailable(
                        "the write was not answered in time; it may still be applied".into(),
                    )));
                }
                return;
            };
            match answer {
                Ok(resp) => {
                    let results = match resp.data {
                        CommandResult::Batch(results) if !single => results,
                        other => vec![other],
                    };
                    debug_assert_eq!(results.len(), replies.len());
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(match result {
                            CommandResult::Refused(r) => Err(WriteError::Refused(r)),
                            other => Ok(other),
                        });
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let err = match &e {
                            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                                WriteError::NotLeader {
                                    leader_id: f.leader_id,
                                    leader_addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
                                }
                            }
                            other => WriteError::Unavailable(other.to_string()),
                        };
                        let _ = reply.send(Err(err));
                    }
                }
            }
        });
    }
}
