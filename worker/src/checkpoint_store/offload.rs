//! Where a checkpoint store's blocking disk work runs. A worker's partitions share a few
//! actor threads, each a single-threaded runtime: a snapshot written (and fsynced) on the
//! actor's own thread stalls every partition on that thread for as long as the disk takes.
//! The production stores (the directory store and the local redb copy) therefore run their
//! file and redb work on tokio's blocking pool, at most [`DISK_JOBS_MAX`] at once per store,
//! while the partition that asked waits for it (it never processes past its open
//! checkpoint). The simulation's disks run inline, on the one simulated thread, so its runs
//! stay deterministic.

use super::StoreError;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Blocking disk jobs one store runs at once; more wait for a turn.
pub const DISK_JOBS_MAX: usize = 4;

/// How a store runs its blocking work.
#[derive(Debug, Clone)]
pub enum Offload {
    /// On the caller's thread (the simulation's disks, some unit tests).
    Inline,
    /// On tokio's blocking pool, bounded by the permits.
    Blocking(Arc<Semaphore>),
}

impl Offload {
    /// Blocking work on tokio's pool, at most [`DISK_JOBS_MAX`] jobs at once.
    pub fn blocking_pool() -> Self {
        Offload::Blocking(Arc::new(Semaphore::new(DISK_JOBS_MAX)))
    }

    /// Runs `work` where this offload puts blocking work, and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        match self {
            Offload::Inline => work(),
            // The disk seam's production side: blocking work off the actor threads (the
            // simulation's stores run inline, on its one thread).
            #[allow(clippy::disallowed_methods)]
            Offload::Blocking(permits) => {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StoreError::Unavailable("the disk job pool closed".into()))?;
                // The permit lives as long as the job, even if the caller stops waiting.
                let job = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    work()
                });
                job.await.map_err(|e| {
                    StoreError::Unavailable(format!("a blocking disk job failed: {e}"))
                })?
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a job that takes time, on the blocking pool
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_disk_job_leaves_the_thread_to_other_tasks() {
        let offload = Offload::blocking_pool();
        let (release, wait) = mpsc::channel::<()>();
        let slow = offload.run(move || {
            wait.recv_timeout(Duration::from_secs(10))
                .map_err(|_| StoreError::Unavailable("never released".into()))
        });
        // On this one thread, other work runs while the job blocks, and releases it.
        let other = async move {
            let mut ticks = 0;
            for _ in 0..10 {
                tokio::task::yield_now().await;
                ticks += 1;
            }
            release.send(()).unwrap();
            ticks
        };
        let (slow, ticks) = tokio::join!(slow, other);
        assert_eq!(ticks, 10);
        slow.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn at_most_the_bound_of_jobs_run_at_once() {
        let offload = Offload::blocking_pool();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs = (0..3 * DISK_JOBS_MAX).map(|_| {
            let (running, most) = (running.clone(), most.clone());
            offload.run(move || {
                let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
        });
        for r in futures::future::join_all(jobs).await {
            r.unwrap();
        }
        let most = most.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=DISK_JOBS_MAX).contains(&most), "{most}");
    }
}
