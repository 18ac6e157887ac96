//! The threads a worker's partition actors run on. An actix system runs every actor on one
//! thread unless told otherwise, which would hold a worker to one core however many
//! partitions it owns (Flink gives a task manager one slot per core for the same reason).
//! `ActorThreads` is a fixed pool of actix arbiters, one event loop each; the supervisor
//! starts each new partition actor on the thread with the fewest.
//!
//! Liveness: the heartbeat thread stops renewing the lease when the supervisor stops
//! ticking it (a stalled worker must give its partitions up). With the actors off the
//! supervisor's thread, a stuck actor thread would no longer stall the supervisor, so the
//! supervisor also pings every actor thread and ticks the heartbeat thread only while all
//! of them answer: one stuck thread still costs the worker its lease.

use actix::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The most actor threads a worker runs: bounds `--actor-threads`, so that a slip of the
/// finger cannot start thousands of event loops.
pub const ACTOR_THREADS_MAX: usize = 256;
/// When the pool is dropped, how long its actors get to end on their own (a partition actor
/// told to stop aborts its open transaction) before the threads are stopped.
pub const ACTOR_THREADS_STOP_GRACE_MS: u64 = 5_000;
/// How often the stopping pool looks whether its actors have ended.
const STOP_POLL_MS: u64 = 10;

/// Why the pool could not be made.
#[derive(Debug, Error)]
pub enum ActorThreadsError {
    /// A pool size outside 1..=[`ACTOR_THREADS_MAX`].
    #[error("actor threads must be 1..={ACTOR_THREADS_MAX}, not {0}")]
    Count(usize),
    /// The operating system refused a thread.
    #[error("cannot start an actor thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Whether an actor started on a thread is still running.
type Watched = Box<dyn Fn() -> bool + Send>;

/// One thread of the pool.
struct ActorThread {
    arbiter: Arbiter,
    /// The last ping sent to the thread, and the last it answered.
    sent: u64,
    answered: Arc<AtomicU64>,
    actors: Vec<Watched>,
}

impl ActorThread {
    fn start() -> Result<ActorThread, std::io::Error> {
        Ok(ActorThread {
            arbiter: Arbiter::try_new()?,
            sent: 0,
            answered: Arc::new(AtomicU64::new(0)),
            actors: Vec::new(),
        })
    }
}

/// A fixed pool of threads for partition actors.
pub struct ActorThreads {
    threads: Vec<ActorThread>,
    pings: u64,
}

impl ActorThreads {
    /// A pool of `count` threads, each running an actix arbiter (call it inside a running
    /// actix system).
    pub fn new(count: usize) -> Result<ActorThreads, ActorThreadsError> {
        if !(1..=ACTOR_THREADS_MAX).contains(&count) {
            return Err(ActorThreadsError::Count(count));
        }
        let threads = (0..count)
            .map(|_| ActorThread::start())
            .collect::<Result<_, _>>()?;
        Ok(ActorThreads { threads, pings: 0 })
    }

    /// How many threads the pool has.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Always false: a pool has at least one thread.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Replaces a thread whose event loop has ended (its actors ended with it), so that no
    /// actor is started on it and its silence does not read as a stall for ever.
    fn replace_dead_threads(&mut self) {
        for (index, thread) in self.threads.iter_mut().enumerate() {
            if thread.arbiter.alive() {
                continue;
            }
            match ActorThread::start() {
                Ok(fresh) => {
                    tracing::error!(thread = index, "an actor thread ended; replaced it");
                    *thread = fresh;
                }
                Err(e) => {
                    tracing::error!(thread = index, error = %e, "an actor thread ended and cannot be replaced")
                }
            }
        }
    }

    /// Starts the actor `make` builds for a thread (given its index) on the thread running
    /// the fewest actors.
    pub fn start<A>(&mut self, make: impl FnOnce(usize) -> A) -> Addr<A>
    where
        A: Actor<Context = Context<A>> + Send,
    {
        self.replace_dead_threads();
        for thread in &mut self.threads {
            thread.actors.retain(|connected| connected());
        }
        let (index, thread) = self
            .threads
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, t)| t.actors.len())
            .expect("a pool has at least one thread");
        let actor = make(index);
        let addr = A::start_in_arbiter(&thread.arbiter.handle(), move |_| actor);
        let watched = addr.clone();
        thread.actors.push(Box::new(move || watched.connected()));
        addr
    }

    /// Whether every thread answered its last ping; then pings them all again. At most
    /// one ping per thread is outstanding, so a stuck thread's queue does not grow.
    pub fn all_answered(&mut self) -> bool {
        self.replace_dead_threads();
        let all = self
            .threads
            .iter()
            .all(|t| t.answered.load(Ordering::Acquire) == t.sent);
        if all {
            self.pings += 1;
            let ping = self.pings;
            for thread in &mut self.threads {
                let answered = Arc::clone(&thread.answered);
                if thread.arbiter.spawn(async move {
                    answered.store(ping, Ordering::Release);
                }) {
                    thread.sent = ping;
                }
            }
        }
        all
    }
}

impl Drop for ActorThreads {
    /// Gives the actors up to [`ACTOR_THREADS_STOP_GRACE_MS`] to end on their own, then
    /// stops every thread: from a thread of its own, so that neither a slow teardown nor a
    /// stuck actor thread holds up whoever dropped the pool (the supervisor, at shutdown).
    fn drop(&mut self) {
        let threads = std::mem::take(&mut self.threads);
        let stop = move || {
            for _ in 0..ACTOR_THREADS_STOP_GRACE_MS / STOP_POLL_MS {
                if threads
                    .iter()
                    .all(|t| t.actors.iter().all(|connected| !connected()))
                {
                    break;
                }
                #[allow(clippy::disallowed_methods)] // a stopper thread of its own, no runtime
                std::thread::sleep(Duration::from_millis(STOP_POLL_MS));
            }
            for thread in &threads {
                thread.arbiter.stop();
            }
            for thread in threads {
                let _ = thread.arbiter.join();
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("actor-threads-stop".to_string())
            .spawn(stop)
        {
            tracing::warn!(error = %e, "cannot stop the actor threads in the background");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Reports the thread it runs on.
    struct WhereAmI(mpsc::Sender<std::thread::ThreadId>);

    impl Actor for WhereAmI {
        type Context = Context<Self>;

        fn started(&mut self, _: &mut Context<Self>) {
            let _ = self.0.send(std::thread::current().id());
        }
    }

    /// Waits (bounded) for `pool.all_answered()` to become `want`.
    fn wait_for(pool: &mut ActorThreads, want: bool) -> bool {
        (0..1_000).any(|_| {
            let seen = pool.all_answered() == want;
            if !seen {
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        })
    }

    #[test]
    fn actors_spread_over_the_threads_and_a_stuck_thread_stops_the_answers() {
        let system = System::new();
        system.block_on(async {
            assert!(ActorThreads::new(0).is_err());
            assert!(ActorThreads::new(ACTOR_THREADS_MAX + 1).is_err());
            let mut pool = ActorThreads::new(3).expect("a pool");
            let (tx, rx) = mpsc::channel();
            let addrs: Vec<_> = (0..6)
                .map(|_| pool.start(|_| WhereAmI(tx.clone())))
                .collect();
            let threads: std::collections::BTreeMap<_, usize> = (0..6)
                .map(|_| rx.recv_timeout(Duration::from_secs(5)).expect("started"))
                .fold(Default::default(), |mut by, id| {
                    *by.entry(format!("{id:?}")).or_default() += 1;
                    by
                });
            assert_eq!(threads.len(), 3, "{threads:?}");
            assert!(threads.values().all(|&n| n == 2), "{threads:?}");
            assert_ne!(
                threads.keys().next().cloned(),
                Some(format!("{:?}", std::thread::current().id()))
            );

            assert!(wait_for(&mut pool, true), "idle threads answer");
            // Block one thread; once it holds the only outstanding ping, answers stop.
            let (release, blocked) = mpsc::channel::<()>();
            pool.threads[1].arbiter.spawn(async move {
                let _ = blocked.recv_timeout(Duration::from_secs(10));
            });
            assert!(
                wait_for(&mut pool, false),
                "a stuck thread stops the answers"
            );
            assert!(!pool.all_answered());
            release.send(()).expect("the blocked thread waits");
            assert!(wait_for(&mut pool, true), "answers resume");

            // A thread whose event loop ended is replaced rather than counted as stuck.
            pool.threads[0].arbiter.stop();
            let ended = (0..1_000).any(|_| {
                std::thread::sleep(Duration::from_millis(5));
                !pool.threads[0].arbiter.alive()
            });
            assert!(ended, "a stopped arbiter ends");
            assert!(wait_for(&mut pool, true), "a dead thread is replaced");
            assert!(pool.threads[0].arbiter.alive());
            assert_eq!(pool.len(), 3);
            drop(addrs);
        });
    }
}
