//! Worker leases, as the leader sees them. Heartbeats are not replicated: the leader keeps
//! each worker's deadline in memory and proposes `RemoveWorker` once it passes. A newly
//! elected leader starts every registered worker with a full lease (the grace period), so a
//! failover never expires a healthy worker that simply has not reached the new leader yet.
//! Times are milliseconds of the runtime's monotonic clock.
//!
//! A leader that was itself paused (SIGSTOP, a VM freeze, a starved runtime) finds every
//! deadline passed when it runs again, although no heartbeat could reach it meanwhile. The
//! table therefore watches the gaps between its own expiry checks: a gap longer than
//! [`LeaseTable::pause_gap_ms`] means the leader was not running, and every lease gets the
//! grace period again instead of expiring.

use std::collections::BTreeMap;
use weir_core::ids::WorkerId;

/// The leader's view of worker leases.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    lease_timeout_ms: u64,
    deadlines_ms: BTreeMap<WorkerId, u64>,
    /// When `expired` or `observe` last ran, to notice that this leader was paused.
    last_check_ms: Option<u64>,
    /// A pause `observe` saw that `expired` has not yet answered with the grace period.
    pause_pending: bool,
}

/// How often the leader's clock task calls [`LeaseTable::observe`].
pub const OBSERVE_INTERVAL_MS: u64 = 50;

/// The least gap between two expiry checks taken as a pause of the leader (its checks run
/// every 100 ms; a round that waits on a slow write can take longer without being one).
pub const PAUSE_GAP_MIN_MS: u64 = 500;

impl LeaseTable {
    /// An empty table whose leases last `lease_timeout_ms` after each renewal.
    pub fn new(lease_timeout_ms: u64) -> Self {
        assert!(lease_timeout_ms > 0);
        LeaseTable {
            lease_timeout_ms,
            deadlines_ms: BTreeMap::new(),
            last_check_ms: None,
            pause_pending: false,
        }
    }

    /// A gap between two expiry checks longer than this means the leader was not running
    /// (half a lease, and at least [`PAUSE_GAP_MIN_MS`]): a worker's heartbeats could not
    /// have reached it, so its deadlines say nothing about the worker.
    pub fn pause_gap_ms(&self) -> u64 {
        (self.lease_timeout_ms / 2).max(PAUSE_GAP_MIN_MS)
    }

    /// How long a lease lasts after a renewal.
    pub fn lease_timeout_ms(&self) -> u64 {
        self.lease_timeout_ms
    }

    /// Called when this node becomes leader: every registered worker gets a full lease, or
    /// keeps a later deadline it already earned (heartbeats reach a leader while it is
    /// still catching up, before this is called).
    pub fn on_elected<'a>(&mut self, now_ms: u64, workers: impl IntoIterator<Item = &'a WorkerId>) {
        let full = now_ms + self.lease_timeout_ms;
        self.last_check_ms = Some(now_ms);
        self.deadlines_ms = workers
            .into_iter()
            .map(|w| {
                let earned = self.deadlines_ms.get(w).copied().unwrap_or(0);
                (w.clone(), earned.max(full))
            })
            .collect();
    }

    /// Renews a worker's lease; returns its new deadline.
    pub fn renew(&mut self, worker: &WorkerId, now_ms: u64) -> u64 {
        let deadline = now_ms + self.lease_timeout_ms;
        let entry = self.deadlines_ms.entry(worker.clone()).or_insert(deadline);
        // A deadline never moves backwards, even if a clock does.
        *entry = (*entry).max(deadline);
        *entry
    }

    /// The deadline of a worker's lease, if the leader knows the worker.
    pub fn deadline_ms(&self, worker: &WorkerId) -> Option<u64> {
        self.deadlines_ms.get(worker).copied()
    }

    /// Notes that the leader's process was running at `now_ms`. A clock task calls it every
    /// [`OBSERVE_INTERVAL_MS`], so a control round that waits seconds on its own writes is
    /// not taken for a pause, while a stopped process (which runs no task) still is.
    pub fn observe(&mut self, now_ms: u64) {
        if let Some(last) = self.last_check_ms {
            if now_ms.saturating_sub(last) > self.pause_gap_ms() {
                self.pause_pending = true;
            }
        }
        self.last_check_ms = Some(self.last_check_ms.map_or(now_ms, |last| last.max(now_ms)));
    }

    /// Workers whose lease has passed, given the registered ones. A registered worker the
    /// table has not seen yet (registered through a previous leader a moment ago) gets a
    /// full lease from now instead of expiring. After a pause of the leader (see the module
    /// documentation) nothing expires: every registered worker gets the grace period.
    pub fn expired<'a>(
        &mut self,
        now_ms: u64,
        registered: impl IntoIterator<Item = &'a WorkerId>,
    ) -> Vec<WorkerId> {
        let paused = std::mem::take(&mut self.pause_pending)
            || self
                .last_check_ms
                .is_some_and(|last| now_ms.saturating_sub(last) > self.pause_gap_ms());
        self.last_check_ms = Some(self.last_check_ms.map_or(now_ms, |last| last.max(now_ms)));
        if paused {
            tracing::warn!(
                lease_timeout_ms = self.lease_timeout_ms,
                "the leader was not running for longer than half a lease; every worker gets the grace period again"
            );
            metrics::counter!("weir_lease_pause_grace_total").increment(1);
            self.on_elected(now_ms, registered);
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut seen = BTreeMap::new();
        for w in registered {
            let deadline = *self
                .deadlines_ms
                .get(w)
                .unwrap_or(&(now_ms + self.lease_timeout_ms));
            if deadline <= now_ms {
                out.push(w.clone());
            }
            seen.insert(w.clone(), deadline);
        }
        // Forget workers that are no longer registered.
        self.deadlines_ms = seen;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> WorkerId {
        WorkerId::from(s)
    }

    /// Runs the leader's checks every 100 ms from `from_ms` up to, not including, `to_ms`,
    /// as its control loop does, and asserts that none of them expires anybody.
    fn checks_expire_nobody(t: &mut LeaseTable, from_ms: u64, to_ms: u64, workers: &[WorkerId]) {
        for now in (from_ms..to_ms).step_by(100) {
            assert_eq!(
                t.expired(now, workers),
                Vec::<WorkerId>::new(),
                "at {now} ms"
            );
        }
    }

    #[test]
    fn a_renewed_lease_does_not_expire() {
        let mut t = LeaseTable::new(1000);
        let workers = [w("a"), w("b")];
        t.on_elected(0, &workers);
        checks_expire_nobody(&mut t, 100, 1000, &workers);
        t.renew(&w("a"), 900);
        assert_eq!(t.expired(1000, &workers), vec![w("b")]);
        checks_expire_nobody(&mut t, 1100, 1900, &workers[..1]);
        assert_eq!(t.expired(1900, &workers[..1]), vec![w("a")]);
    }

    #[test]
    fn a_new_leader_grants_a_full_grace_period() {
        let mut t = LeaseTable::new(1000);
        let workers = [w("a")];
        t.on_elected(5_000, &workers);
        checks_expire_nobody(&mut t, 5_100, 6_000, &workers);
        assert_eq!(t.expired(6_000, &workers), vec![w("a")]);
    }

    #[test]
    fn a_new_leader_keeps_the_renewals_it_took_while_catching_up() {
        let mut t = LeaseTable::new(1000);
        let workers = [w("a"), w("b")];
        // Heartbeats reach the new leader while it applies the log; the grace period it
        // grants afterwards must not cut them short.
        t.renew(&w("a"), 2_500);
        t.on_elected(2_000, &workers);
        assert_eq!(t.deadline_ms(&w("a")), Some(3_500));
        assert_eq!(t.deadline_ms(&w("b")), Some(3_000));
        checks_expire_nobody(&mut t, 2_100, 3_000, &workers);
        assert_eq!(t.expired(3_000, &workers), vec![w("b")]);
    }

    #[test]
    fn a_worker_unknown_to_the_table_is_not_expired_at_once() {
        let mut t = LeaseTable::new(1000);
        t.on_elected(0, []);
        checks_expire_nobody(&mut t, 100, 10_000, &[]);
        let workers = [w("late")];
        checks_expire_nobody(&mut t, 10_000, 11_000, &workers);
        assert_eq!(t.expired(11_000, &workers), vec![w("late")]);
    }

    #[test]
    fn a_leader_paused_longer_than_half_a_lease_expires_nobody() {
        // Found by hostile testing: all three coordinators stopped (SIGSTOP) and resumed;
        // the leader removed both workers 0.2 s later, before any heartbeat could reach it.
        let mut t = LeaseTable::new(1000);
        let workers = [w("a"), w("b")];
        t.on_elected(0, &workers);
        assert!(t.expired(100, &workers).is_empty());
        t.renew(&w("a"), 150);
        // Stopped from 200 ms to 30 s: the first check after it sees a 29.8 s gap.
        assert!(t.expired(30_000, &workers).is_empty());
        assert_eq!(t.deadline_ms(&w("a")), Some(31_000));
        for now in (30_100..31_000).step_by(100) {
            assert!(t.expired(now, &workers).is_empty());
        }
        // Without heartbeats the leases still end one lease after the pause.
        assert_eq!(t.expired(31_000, &workers), vec![w("a"), w("b")]);
    }

    #[test]
    fn a_round_waiting_on_its_writes_is_not_a_pause() {
        // The clock task observes every 50 ms while a round waits 3 s on a slow write: a
        // worker without heartbeats still expires on time.
        let mut t = LeaseTable::new(1000);
        let workers = [w("dead")];
        t.on_elected(0, &workers);
        for now in (50..3_000).step_by(50) {
            t.observe(now);
        }
        assert_eq!(t.expired(3_000, &workers), vec![w("dead")]);
    }

    #[test]
    fn a_pause_seen_by_the_clock_task_grants_the_grace_period() {
        let mut t = LeaseTable::new(1000);
        let workers = [w("a")];
        t.on_elected(0, &workers);
        t.observe(50);
        // Stopped for 10 s: the clock task runs first after SIGCONT, then the round.
        t.observe(10_050);
        t.observe(10_100);
        assert!(t.expired(10_120, &workers).is_empty());
        assert_eq!(t.deadline_ms(&w("a")), Some(11_120));
    }

    #[test]
    fn regular_checks_still_expire_leases() {
        let mut t = LeaseTable::new(1000);
        let workers = [w("a")];
        t.on_elected(0, &workers);
        for now in (100..1_000).step_by(100) {
            assert!(t.expired(now, &workers).is_empty());
        }
        assert_eq!(t.expired(1_000, &workers), vec![w("a")]);
        // A gap just under the pause threshold is not a pause.
        let mut t = LeaseTable::new(1000);
        t.on_elected(0, &workers);
        assert_eq!(
            t.expired(t.pause_gap_ms(), &workers),
            Vec::<WorkerId>::new()
        );
        assert_eq!(t.expired(1_000, &workers), vec![w("a")]);
    }

    #[test]
    fn deadlines_never_move_backwards() {
        let mut t = LeaseTable::new(1000);
        assert_eq!(t.renew(&w("a"), 5000), 6000);
        assert_eq!(t.renew(&w("a"), 100), 6000);
    }
}
