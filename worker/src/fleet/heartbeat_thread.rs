//! Lease renewal on a thread of its own, as Kafka's consumer renews its group session from
//! a background heartbeat thread. The supervisor's thread waits on the control plane and
//! the actors' threads on checkpoints of large states (encoding, an fsync); heartbeats sent
//! from either would sometimes be late, and a lease short enough for fast failover would
//! lapse on a healthy worker. The thread renews the lease at the interval the group asks
//! for, as long as the supervisor shows it is alive (it ticks at least every
//! `PROCESSING_STALL_MAX_MS`, the counterpart of Kafka's `max.poll.interval.ms`, and only
//! while every actor thread answers its pings): a worker whose supervisor or actor thread
//! is wedged stops renewing and its partitions move elsewhere.
//!
//! Production only: the simulation keeps heartbeats inside the supervisor actor, on its
//! one seeded thread.

use crate::control::{ControlError, ControlPlane};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use weir_core::ids::WorkerId;

/// How long the supervisor may go without ticking before the thread stops renewing.
pub const PROCESSING_STALL_MAX_MS: u64 = 10_000;
/// How often the thread wakes to see whether a heartbeat is due or it should stop.
const WAKE_MS: u64 = 20;

/// What the supervisor and the thread share.
#[derive(Debug, Default)]
struct Shared {
    /// The longest the supervisor may go without ticking while the lease is renewed.
    stall_max_ms: u64,
    stop: AtomicBool,
    /// Renew while set, every `interval_ms`.
    active: AtomicBool,
    interval_ms: AtomicU64,
    /// The thread's clock (ms since it started) at the supervisor's last tick.
    last_tick_ms: AtomicU64,
    /// Set by the thread when the group no longer knows the worker.
    lease_lost: AtomicBool,
    /// Bumped by every activation, so that an answer to a heartbeat sent before it (an
    /// "unknown worker" from before a registration) does not undo it.
    generation: AtomicU64,
    /// Milliseconds since the thread started, as the thread last read its clock.
    now_ms: AtomicU64,
}

/// The handle the supervisor holds on its heartbeat thread; dropping it stops the thread
/// (within one wake-up, or once a heartbeat under way times out).
#[derive(Debug)]
pub struct HeartbeatThread {
    shared: Arc<Shared>,
}

impl HeartbeatThread {
    /// Starts the thread for `worker`, renewing through `control` (which should be its own
    /// client, with attempt timeouts well below the lease, so that no call waits on the
    /// processing thread's connections).
    /// It stops renewing once the supervisor has not ticked for `stall_max_ms`
    /// ([`PROCESSING_STALL_MAX_MS`] in production).
    pub fn spawn<C: ControlPlane>(
        control: C,
        worker: WorkerId,
        stall_max_ms: u64,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            stall_max_ms,
            ..Shared::default()
        });
        let thread_shared = shared.clone();
        let _detached: JoinHandle<()> = std::thread::Builder::new()
            .name(format!("heartbeat-{worker}"))
            .spawn(move || run(control, worker, thread_shared))?;
        Ok(HeartbeatThread { shared })
    }

    /// The supervisor is alive (call it from the supervisor's own timer).
    pub fn tick(&self) {
        let now = self.shared.now_ms.load(Ordering::Acquire);
        self.shared.last_tick_ms.store(now, Ordering::Release);
    }

    /// Renew every `interval_ms` from now on (the worker is registered).
    pub fn activate(&self, interval_ms: u64) {
        self.activator().activate(interval_ms);
    }

    /// A handle that can switch renewals on from elsewhere (the supervisor's registration
    /// call, the moment the lease starts).
    pub fn activator(&self) -> LeaseActivator {
        LeaseActivator {
            shared: self.shared.clone(),
        }
    }

    /// Stop renewing (the worker is registering again).
    pub fn deactivate(&self) {
        self.shared.active.store(false, Ordering::Release);
    }

    /// Whether the group answered that it no longer knows the worker, since the last call.
    pub fn take_lease_lost(&self) -> bool {
        self.shared.lease_lost.swap(false, Ordering::AcqRel)
    }
}

/// Switches a [`HeartbeatThread`]'s renewals on; cheap to clone and to send.
#[derive(Debug, Clone)]
pub struct LeaseActivator {
    shared: Arc<Shared>,
}

impl LeaseActivator {
    /// Renew every `interval_ms` from now on (the worker is registered).
    pub fn activate(&self, interval_ms: u64) {
        let shared = &self.shared;
        shared
            .interval_ms
            .store(interval_ms.max(1), Ordering::Release);
        shared.generation.fetch_add(1, Ordering::AcqRel);
        shared.lease_lost.store(false, Ordering::Release);
        let now = shared.now_ms.load(Ordering::Acquire);
        shared.last_tick_ms.store(now, Ordering::Release);
        shared.active.store(true, Ordering::Release);
    }
}

impl Drop for HeartbeatThread {
    fn drop(&mut self) {
        // Not joined: an actor's thread must not wait on a heartbeat under way.
        self.shared.stop.store(true, Ordering::Release);
    }
}

/// What the thread does at a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Not registered: nothing to renew.
    Inactive,
    /// The last heartbeat was less than an interval ago.
    NotDue,
    /// A heartbeat is due but the supervisor has not ticked for longer than the stall
    /// bound; `first` on the first such wake-up of a stall (to log it once).
    Stalled { since_tick_ms: u64, first: bool },
    /// Send a heartbeat now.
    Beat,
}

/// The thread's decisions, as a state machine over the times it is given (the thread reads
/// its clock; the tests give exact times).
#[derive(Debug, Default)]
struct BeatSchedule {
    last_beat_ms: Option<u64>,
    stalled: bool,
}

impl BeatSchedule {
    fn on_wake(
        &mut self,
        now_ms: u64,
        active: bool,
        interval_ms: u64,
        last_tick_ms: u64,
        stall_max_ms: u64,
    ) -> Wake {
        if !active {
            // The next activation beats at once.
            self.last_beat_ms = None;
            return Wake::Inactive;
        }
        if self
            .last_beat_ms
            .is_some_and(|last| now_ms < last.saturating_add(interval_ms))
        {
            return Wake::NotDue;
        }
        let since_tick_ms = now_ms.saturating_sub(last_tick_ms);
        if since_tick_ms > stall_max_ms {
            let first = !self.stalled;
            self.stalled = true;
            return Wake::Stalled {
                since_tick_ms,
                first,
            };
        }
        self.stalled = false;
        self.last_beat_ms = Some(now_ms);
        Wake::Beat
    }
}

fn run<C: ControlPlane>(control: C, worker: WorkerId, shared: Arc<Shared>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "the heartbeat thread cannot start a runtime");
            return;
        }
    };
    runtime.block_on(async move {
        // The production side of the clock seam: this thread exists only in production.
        #[allow(clippy::disallowed_methods)]
        let started = std::time::Instant::now();
        let now_ms = || started.elapsed().as_millis() as u64;
        let mut schedule = BeatSchedule::default();
        while !shared.stop.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(WAKE_MS)).await;
            let now = now_ms();
            shared.now_ms.store(now, Ordering::Release);
            let wake = schedule.on_wake(
                now,
                shared.active.load(Ordering::Acquire),
                shared.interval_ms.load(Ordering::Acquire),
                shared.last_tick_ms.load(Ordering::Acquire),
                shared.stall_max_ms,
            );
            match wake {
                Wake::Inactive | Wake::NotDue => continue,
                Wake::Stalled { since_tick_ms, first } => {
                    if first {
                        tracing::warn!(worker = %worker, since_tick_ms, "processing stalled; no longer renewing the lease");
                    }
                    continue;
                }
                Wake::Beat => {}
            }
            let generation = shared.generation.load(Ordering::Acquire);
            match control.heartbeat(&worker).await {
                Ok(_) => {}
                Err(ControlError::UnknownWorker(_))
                    if shared.generation.load(Ordering::Acquire) == generation =>
                {
                    shared.active.store(false, Ordering::Release);
                    shared.lease_lost.store(true, Ordering::Release);
                }
                Err(ControlError::UnknownWorker(_)) => {} // from before a new registration
                Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use weir_core::ids::JobId;
    use weir_core::wire::{Assignments, CheckpointReport, CheckpointReportResults, Lease};

    /// Counts heartbeats; answers "unknown worker" once `forget` is set.
    #[derive(Clone, Default)]
    struct Counting {
        beats: Arc<AtomicU64>,
        forget: Arc<AtomicBool>,
        worker: Arc<Mutex<Option<WorkerId>>>,
    }

    fn lease() -> Lease {
        Lease {
            worker: WorkerId("w1".into()),
            lease_timeout_ms: 1_500,
            heartbeat_interval_ms: 50,
        }
    }

    impl ControlPlane for Counting {
        async fn register(&self, _: &WorkerId, _: &str) -> Result<Lease, ControlError> {
            Ok(lease())
        }
        async fn deregister(&self, _: &WorkerId) -> Result<(), ControlError> {
            Ok(())
        }
        async fn heartbeat(&self, id: &WorkerId) -> Result<Lease, ControlError> {
            *self.worker.lock().unwrap() = Some(id.clone());
            if self.forget.load(Ordering::Acquire) {
                return Err(ControlError::UnknownWorker(id.clone()));
            }
            self.beats.fetch_add(1, Ordering::AcqRel);
            Ok(lease())
        }
        async fn assignments(&self, _: &WorkerId) -> Result<Assignments, ControlError> {
            Err(ControlError::Unavailable("not in this test".into()))
        }
        async fn report_partitions(&self, _: JobId, _: u32) -> Result<(), ControlError> {
            Ok(())
        }
        async fn report(
            &self,
            _: &WorkerId,
            _: weir_core::wire::WorkerReport,
        ) -> Result<(), ControlError> {
            Ok(())
        }
        async fn report_checkpoints(
            &self,
            _: &WorkerId,
            _: Vec<CheckpointReport>,
        ) -> Result<CheckpointReportResults, ControlError> {
            Err(ControlError::Unavailable("not in this test".into()))
        }
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out waiting until {what}");
    }

    #[test]
    fn the_schedule_beats_every_interval_while_ticked_and_not_while_stalled() {
        let mut s = BeatSchedule::default();
        // (now, active, last tick) -> what the thread does; interval 250, stall bound 1000.
        let mut wake = |now, active, tick| s.on_wake(now, active, 250, tick, 1_000);
        assert_eq!(wake(0, false, 0), Wake::Inactive);
        assert_eq!(wake(20, true, 20), Wake::Beat, "activation beats at once");
        assert_eq!(wake(40, true, 40), Wake::NotDue);
        assert_eq!(wake(269, true, 260), Wake::NotDue);
        assert_eq!(wake(270, true, 260), Wake::Beat);
        // The supervisor stops ticking at 300: renewals go on up to the bound, then stop.
        assert_eq!(wake(520, true, 300), Wake::Beat);
        assert_eq!(
            wake(1_300, true, 300),
            Wake::Beat,
            "exactly the bound is not a stall"
        );
        assert_eq!(
            wake(1_560, true, 300),
            Wake::Stalled {
                since_tick_ms: 1_260,
                first: true
            }
        );
        assert_eq!(
            wake(1_580, true, 300),
            Wake::Stalled {
                since_tick_ms: 1_280,
                first: false
            }
        );
        // A tick resumes them at once (the beat is overdue).
        assert_eq!(wake(1_600, true, 1_590), Wake::Beat);
        assert_eq!(wake(1_620, true, 1_610), Wake::NotDue);
        // Deactivated and activated again: beats at once, not an interval later.
        assert_eq!(wake(1_640, false, 1_630), Wake::Inactive);
        assert_eq!(wake(1_660, true, 1_650), Wake::Beat);
    }

    #[test]
    fn renews_while_active_and_reports_a_lost_lease() {
        let control = Counting::default();
        let thread =
            HeartbeatThread::spawn(control.clone(), WorkerId("w1".into()), 10_000).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(
            control.beats.load(Ordering::Acquire),
            0,
            "not registered yet"
        );
        thread.activate(50);
        wait_until("three heartbeats", || {
            thread.tick();
            control.beats.load(Ordering::Acquire) >= 3
        });
        assert_eq!(
            control
                .worker
                .lock()
                .unwrap()
                .as_ref()
                .map(|w| w.0.as_str()),
            Some("w1")
        );
        assert!(!thread.take_lease_lost());
        control.forget.store(true, Ordering::Release);
        wait_until("the lost lease is reported", || {
            thread.tick();
            thread.take_lease_lost()
        });
        // Inactive after a lost lease until activated again.
        let beats = control.beats.load(Ordering::Acquire);
        control.forget.store(false, Ordering::Release);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(control.beats.load(Ordering::Acquire), beats);
        thread.activate(50);
        wait_until("renewing again", || {
            thread.tick();
            control.beats.load(Ordering::Acquire) > beats
        });
    }

    #[test]
    fn a_stalled_supervisor_lets_the_lease_lapse() {
        let control = Counting::default();
        let thread = HeartbeatThread::spawn(control.clone(), WorkerId("w1".into()), 200).unwrap();
        thread.activate(20);
        wait_until("a heartbeat", || {
            thread.tick();
            control.beats.load(Ordering::Acquire) >= 1
        });
        // No more ticks: renewals stop within the stall bound.
        std::thread::sleep(Duration::from_millis(400));
        let beats = control.beats.load(Ordering::Acquire);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(control.beats.load(Ordering::Acquire), beats);
        // Ticking again resumes them.
        wait_until("renewing again", || {
            thread.tick();
            control.beats.load(Ordering::Acquire) > beats
        });
    }
}
