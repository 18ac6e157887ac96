//! The async runtime openraft runs on: tokio, with one change. openraft draws its election
//! timeouts from `AsyncRuntime::thread_rng`; here that is a thread-local generator that the
//! simulation seeds, so a seed replays elections exactly. In production it is seeded from
//! the operating system's entropy on first use in each thread.

use openraft::{AsyncRuntime, TokioInstant};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

thread_local! {
    // The production side of the randomness seam; the simulation seeds it (below).
    #[allow(clippy::disallowed_methods)]
    static RAFT_RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_entropy());
}

/// Seeds this thread's Raft random generator. The simulation calls it before it builds a
/// cluster; production never does.
pub fn seed_thread_rng(seed: u64) {
    RAFT_RNG.with(|rng| *rng.borrow_mut() = SmallRng::seed_from_u64(seed));
}

/// A handle on this thread's Raft random generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRaftRng;

impl RngCore for ThreadRaftRng {
    fn next_u32(&mut self) -> u32 {
        RAFT_RNG.with(|rng| rng.borrow_mut().next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        RAFT_RNG.with(|rng| rng.borrow_mut().next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        RAFT_RNG.with(|rng| rng.borrow_mut().fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// tokio, with the seedable random generator above.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WeirRuntime;

impl AsyncRuntime for WeirRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: Send + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + Send> = tokio::time::Timeout<T>;
    type ThreadLocalRng = ThreadRaftRng;
    type OneshotSender<T: Send> = openraft::async_runtime::TokioOneShotSender<T>;
    type OneshotReceiver<T: Send> = tokio::sync::oneshot::Receiver<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + Send + 'static,
        T::Output: Send + 'static,
    {
        tokio::task::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + Send>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + Send>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRaftRng
    }

    fn oneshot<T: Send>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (openraft::async_runtime::TokioOneShotSender(tx), rx)
    }
}
