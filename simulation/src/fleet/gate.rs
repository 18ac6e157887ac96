//! The life of one simulated worker process, as its seams see it. Every call the worker
//! makes through the simulated broker, checkpoint store or control plane passes the gate
//! first and again after it returns:
//!
//! - running: the call goes through;
//! - paused (a stop-the-world pause, a swapped-out VM): the call waits until the process
//!   resumes — long pauses outlive the worker's lease and make it a zombie;
//! - dead (crashed): the call never returns, and a call already in flight never reports
//!   back, exactly as if the process vanished mid-request. Its effects at the broker or
//!   coordinator, if it got that far, stay.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a paused process checks whether it may go on.
pub const GATE_POLL_MS: u64 = 5;

const RUNNING: u8 = 0;
const PAUSED: u8 = 1;
const DEAD: u8 = 2;

/// Shared by every seam of one worker process (one incarnation).
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<AtomicU8>);

impl Gate {
    /// A running process.
    pub fn new() -> Self {
        Gate::default()
    }

    /// Waits until the process may make progress; never returns once it is dead.
    pub async fn pass(&self) {
        loop {
            match self.0.load(Ordering::Relaxed) {
                RUNNING => return,
                PAUSED => tokio::time::sleep(Duration::from_millis(GATE_POLL_MS)).await,
                _ => std::future::pending::<()>().await,
            }
        }
    }

    /// Freezes the process.
    pub fn pause(&self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, PAUSED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Lets a paused process go on.
    pub fn resume(&self) {
        let _ = self
            .0
            .compare_exchange(PAUSED, RUNNING, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Kills the process for good.
    pub fn kill(&self) {
        self.0.store(DEAD, Ordering::Relaxed);
    }

    /// Whether the process is paused.
    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::Relaxed) == PAUSED
    }

    /// Whether the process is dead.
    pub fn is_dead(&self) -> bool {
        self.0.load(Ordering::Relaxed) == DEAD
    }
}
