//! The seams for time and randomness. Coordinator and worker logic take these as inputs
//! (never `SystemTime::now` or `thread_rng` directly), so the simulation can run the same
//! code on a virtual clock and a seeded random source.

use std::fmt::Debug;
use std::sync::Arc;

/// Wall-clock time, in Unix epoch milliseconds, for timestamps users read (lease expiry,
/// checkpoint times). Timers and timeouts use the async runtime's clock instead.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// A source of unpredictable bytes for secrets such as tenant tokens.
pub trait Entropy: Debug + Send + Sync + 'static {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        #[allow(clippy::disallowed_methods)] // the production side of the clock seam
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The operating system's random source.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        use rand::RngCore;
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

/// The seams a coordinator or worker is built with.
#[derive(Debug, Clone)]
pub struct Seams {
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
}

impl Seams {
    /// The production seams: the OS clock and random source.
    pub fn system() -> Self {
        Seams {
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
        }
    }
}
