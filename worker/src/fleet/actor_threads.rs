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
use thiserror::Error;

/// The most actor threads a worker runs.
pub const ACTOR_THREADS_MAX: usize = 256;

/// Why the pool could not be made.
#[derive(Debug, Error)]
pub enum ActorThreadsError {
    #[error("actor threads must be 1..={ACTOR_THREADS_MAX}, not {0}")]
    Count(usize),
}

/// One thread of the pool.
struct ActorThread {
    arbiter: Arbiter,
    /// The last ping sent to the thread, and the last it answered.
    sent: u64,
    answered: Arc<AtomicU64>,
    /// Whether each actor started on the thread is still running.
    actors: Vec<Box<dyn Fn() -> bool>>,
}

/// A fixed pool of threads for partition actors.
pub struct ActorThreads {
    threads: Vec<ActorThread>,
    pings: u64,
}

impl ActorThreads {
    /// A pool of `count` threads, each running an actix arbiter.
    pub fn new(count: usize) -> Result<ActorThreads, ActorThreadsError> {
        if !(1..=ACTOR_THREADS_MAX).contains(&count) {
            return Err(ActorThreadsError::Count(count));
        }
        let threads = (0..count)
            .map(|_| ActorThread {
                arbiter: Arbiter::new(),
                sent: 0,
                answered: Arc::new(AtomicU64::new(0)),
                actors: Vec::new(),
            })
            .collect();
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

    /// Starts `actor` on the thread running the fewest connected actors.
    pub fn start<A>(&mut self, actor: A) -> Addr<A>
    where
        A: Actor<Context = Context<A>> + Send,
    {
        for thread in &mut self.threads {
            thread.actors.retain(|connected| connected());
        }
        let thread = self
            .threads
            .iter_mut()
            .min_by_key(|t| t.actors.len())
            .expect("a pool has at least one thread");
        let addr = A::start_in_arbiter(&thread.arbiter.handle(), move |_| actor);
        let watched = addr.clone();
        thread.actors.push(Box::new(move || watched.connected()));
        addr
    }

    /// Whether every thread answered its last ping; then pings them all again. At most
    /// one ping per thread is outstanding, so a stuck thread's queue does not grow.
    pub fn all_answered(&mut self) -> bool {
        let all = self
            .threads
            .iter()
            .all(|t| t.answered.load(Ordering::Acquire) == t.sent);
        if all {
            self.pings += 1;
            let ping = self.pings;
            for thread in &mut self.threads {
                let answered = Arc::clone(&thread.answered);
                thread.sent = ping;
                let spawned = thread.arbiter.spawn(async move {
                    answered.store(ping, Ordering::Release);
                });
                debug_assert!(spawned, "an actor thread ended while the pool is alive");
            }
        }
        all
    }
}

impl Drop for ActorThreads {
    fn drop(&mut self) {
        for thread in self.threads.drain(..) {
            thread.arbiter.stop();
            let _ = thread.arbiter.join();
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
            let addrs: Vec<_> = (0..6).map(|_| pool.start(WhereAmI(tx.clone()))).collect();
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
            drop(addrs);
        });
    }
}
