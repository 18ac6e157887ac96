//! The worker process's actors (actix): one `Supervisor` per worker that holds the lease and
//! reconciles assignments, and one `PartitionActor` per (job, partition) it owns, each
//! running the exactly-once protocol of `crate::exactly_once`.
//!
//! Everything outside goes through the seams the actors are built with: the broker
//! (`weir_broker::Broker`), the checkpoint store, the control plane, and the clock (actix's
//! timers run on tokio's clock, paused in the simulation).

mod actor_threads;
mod heartbeat_thread;
mod partition_actor;
mod pause_switch;
mod status;
mod supervisor;

pub use actor_threads::{
    ActorThreads, ActorThreadsError, ACTOR_THREADS_MAX, ACTOR_THREADS_STOP_GRACE_MS,
};
pub use heartbeat_thread::{HeartbeatThread, LeaseActivator, PROCESSING_STALL_MAX_MS};
pub use partition_actor::PartitionActor;
pub use pause_switch::PauseSwitch;
pub use status::{FleetStatus, PartitionStatus, StatusBoard};
pub use supervisor::{StopSupervisor, Supervisor, SupervisorConfig};
