//! The one thing the supervisor and a partition actor share about pausing: whether the
//! group wants the partition paused (the supervisor writes it from the assignments) and
//! whether the partition is paused now (the actor writes it once its exactly-once cycle
//! is paused: committed, no transaction open). The supervisor reports the second to the
//! group; the decisions themselves are the cycle's (`exactly_once::cycle`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared between one partition actor and its supervisor; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PauseSwitch(Arc<Flags>);

#[derive(Debug, Default)]
struct Flags {
    wanted: AtomicBool,
    paused: AtomicBool,
}

impl PauseSwitch {
    /// A switch starting as the assignment says.
    pub fn new(wanted: bool) -> Self {
        let switch = PauseSwitch::default();
        switch.set_wanted(wanted);
        switch
    }

    /// The group wants the partition paused (or no longer).
    pub fn set_wanted(&self, wanted: bool) {
        self.0.wanted.store(wanted, Ordering::Release);
    }

    /// Whether the group wants the partition paused.
    pub fn wanted(&self) -> bool {
        self.0.wanted.load(Ordering::Acquire)
    }

    /// The actor's word on whether the partition is paused now.
    pub fn set_paused(&self, paused: bool) {
        self.0.paused.store(paused, Ordering::Release);
    }

    /// Whether the partition is paused and still meant to be: what the group is told.
    pub fn paused(&self) -> bool {
        self.wanted() && self.0.paused.load(Ordering::Acquire)
    }
}
