//! The clock and entropy seams of a simulated node.
//!
//! `SimClock` reads tokio's clock, which the simulation's runtime starts paused and advances
//! only when every task waits on a timer, so wall-clock readings replay exactly for a seed.
//! Each node has its own clock with its own offset, so a fault can jump one node's clock
//! forwards or backwards (NTP steps, a VM resumed after a pause) without touching the
//! others or the runtime's timers. `SimEntropy` is a seeded random source per node.

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use tokio::time::Instant;
use weir_core::seams::{Clock, Entropy};

/// Unix milliseconds the simulated wall clocks start at (2025-01-01T00:00:00Z), so times
/// look like real ones in traces and state.
pub const SIM_EPOCH_MS: u64 = 1_735_689_600_000;

/// A node's wall clock: the simulation's start epoch, plus simulated time elapsed, plus this
/// node's accumulated clock jumps.
#[derive(Debug)]
pub struct SimClock {
    started: Instant,
    epoch_ms: u64,
    offset_ms: AtomicI64,
}

impl SimClock {
    /// A clock reading `epoch_ms` now. Must be called inside the simulation's runtime:
    /// outside one, tokio's clock is the real one.
    pub fn new(epoch_ms: u64) -> Self {
        SimClock {
            started: Instant::now(),
            epoch_ms,
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Steps this clock by `delta_ms` (negative: backwards). Later readings move from there
    /// at the speed of simulated time.
    pub fn jump(&self, delta_ms: i64) {
        self.offset_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }

    /// The sum of all jumps so far.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        let elapsed_ms = self.started.elapsed().as_millis() as i64;
        let now = self.epoch_ms as i64 + elapsed_ms + self.offset_ms();
        now.max(0) as u64
    }
}

/// A seeded random source standing in for the operating system's.
#[derive(Debug)]
pub struct SimEntropy {
    rng: Mutex<StdRng>,
}

impl SimEntropy {
    /// A source producing the same bytes for the same seed.
    pub fn new(seed: u64) -> Self {
        SimEntropy {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }
}

impl Entropy for SimEntropy {
    fn fill(&self, buf: &mut [u8]) {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fill_bytes(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
    }

    #[test]
    fn the_clock_follows_simulated_time_and_jumps() {
        paused_runtime().block_on(async {
            let clock = SimClock::new(SIM_EPOCH_MS);
            assert_eq!(clock.now_ms(), SIM_EPOCH_MS);
            tokio::time::sleep(Duration::from_secs(3600)).await;
            assert_eq!(clock.now_ms(), SIM_EPOCH_MS + 3_600_000);
            clock.jump(-7_200_000);
            assert_eq!(clock.now_ms(), SIM_EPOCH_MS - 3_600_000);
            clock.jump(i64::MIN / 2);
            assert_eq!(clock.now_ms(), 0, "a clock never reads before the epoch");
        });
    }

    #[test]
    fn entropy_replays_for_a_seed() {
        let (a, b, c) = (SimEntropy::new(7), SimEntropy::new(7), SimEntropy::new(8));
        let (mut x, mut y, mut z) = ([0u8; 32], [0u8; 32], [0u8; 32]);
        a.fill(&mut x);
        b.fill(&mut y);
        c.fill(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
    }
}
