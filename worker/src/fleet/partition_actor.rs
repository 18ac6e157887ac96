//! One actor per (job, partition): recovers the partition (fencing the previous owner),
//! then steps the exactly-once runner until it is stopped, fenced or fails. A failure other
//! than fencing recovers again after a pause, from the last commit point.

use super::supervisor::{PartitionStatus, StatusBoard};
use crate::checkpoint_store::CheckpointStore;
use crate::control::ControlPlane;
use crate::exactly_once::{PartitionConfig, PartitionError, PartitionRunner};
use actix::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use weir_broker::Broker;

/// Pause before recovering again after a failure.
pub const RECOVERY_BACKOFF_MS: u64 = 500;
/// Recoveries in a row before the actor gives up and reports the partition failed.
pub const RECOVERY_ATTEMPTS_MAX: u32 = 120;
/// Pause after a step that found nothing to read, so an idle partition does not spin.
pub const IDLE_PAUSE_MS: u64 = 20;

/// The actor running one partition.
pub struct PartitionActor<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> {
    config: PartitionConfig,
    broker: B,
    store: S,
    control: Arc<C>,
    board: StatusBoard,
    /// Set when the supervisor asks the actor to stop; the loop aborts the open
    /// transaction and ends.
    stopping: Arc<AtomicBool>,
    started: Instant,
}

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> PartitionActor<B, S, C> {
    /// An actor for `config`; it starts working when started.
    pub(super) fn new(
        config: PartitionConfig,
        broker: B,
        store: S,
        control: Arc<C>,
        board: StatusBoard,
    ) -> Self {
        PartitionActor {
            config,
            broker,
            store,
            control,
            board,
            stopping: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        }
    }
}

/// Asks a partition actor to give its partition up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPartition;

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> Actor
    for PartitionActor<B, S, C>
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let config = self.config.clone();
        let (broker, store, control) = (
            self.broker.clone(),
            self.store.clone(),
            self.control.clone(),
        );
        let board = self.board.clone();
        let stopping = self.stopping.clone();
        let started = self.started;
        let work = async move {
            let key = (config.job, config.partition);
            let now_ms = move || started.elapsed().as_millis() as u64;
            let mut attempts = 0u32;
            'recover: while !stopping.load(Ordering::Acquire) {
                let mut runner = match PartitionRunner::recover(
                    config.clone(),
                    &broker,
                    store.clone(),
                    control.clone(),
                    now_ms(),
                )
                .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        attempts += 1;
                        board.set(key, PartitionStatus::failing(&config, &e));
                        if matches!(e, PartitionError::Fenced(_))
                            || attempts >= RECOVERY_ATTEMPTS_MAX
                        {
                            tracing::warn!(job = %config.job, partition = %config.partition, error = %e, "partition gives up");
                            break 'recover;
                        }
                        tokio::time::sleep(Duration::from_millis(RECOVERY_BACKOFF_MS)).await;
                        continue 'recover;
                    }
                };
                attempts = 0;
                while !stopping.load(Ordering::Acquire) {
                    match runner.step(now_ms()).await {
                        Ok(n) => {
                            board.set(key, PartitionStatus::running(&config, &runner));
                            if n == 0 {
                                tokio::time::sleep(Duration::from_millis(IDLE_PAUSE_MS)).await;
                            }
                        }
                        Err(PartitionError::Fenced(reason)) => {
                            tracing::warn!(job = %config.job, partition = %config.partition, %reason, "fenced; stopping");
                            board.set(
                                key,
                                PartitionStatus::failing(&config, &PartitionError::Fenced(reason)),
                            );
                            break 'recover;
                        }
                        Err(e) => {
                            tracing::warn!(job = %config.job, partition = %config.partition, error = %e, "partition failed; recovering");
                            board.set(key, PartitionStatus::failing(&config, &e));
                            runner.stop().await;
                            tokio::time::sleep(Duration::from_millis(RECOVERY_BACKOFF_MS)).await;
                            continue 'recover;
                        }
                    }
                }
                runner.stop().await;
            }
            board.remove(&key, config.epoch);
        };
        ctx.spawn(work.into_actor(self).map(|_, _, ctx| ctx.stop()));
    }
}

impl<B: Broker + Unpin, S: CheckpointStore + Unpin, C: ControlPlane> Handler<StopPartition>
    for PartitionActor<B, S, C>
{
    type Result = ();

    fn handle(&mut self, _: StopPartition, _: &mut Self::Context) {
        // The work loop sees this at its next step, aborts the open transaction and ends
        // the actor.
        self.stopping.store(true, Ordering::Release);
    }
}
