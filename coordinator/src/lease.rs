//! Worker leases, as the leader sees them. Heartbeats are not replicated: the leader keeps
//! each worker's deadline in memory and proposes `RemoveWorker` once it passes. A newly
//! elected leader starts every registered worker with a full lease (the grace period), so a
//! failover never expires a healthy worker that simply has not reached the new leader yet.
//! Times are milliseconds of the runtime's monotonic clock.

use std::collections::BTreeMap;
use weir_core::ids::WorkerId;

/// The leader's view of worker leases.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    lease_timeout_ms: u64,
    deadlines_ms: BTreeMap<WorkerId, u64>,
}

impl LeaseTable {
    /// An empty table whose leases last `lease_timeout_ms` after each renewal.
    pub fn new(lease_timeout_ms: u64) -> Self {
        assert!(lease_timeout_ms > 0);
        LeaseTable {
            lease_timeout_ms,
            deadlines_ms: BTreeMap::new(),
        }
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

    /// Workers whose lease has passed, given the registered ones. A registered worker the
    /// table has not seen yet (registered through a previous leader a moment ago) gets a
    /// full lease from now instead of expiring.
    pub fn expired<'a>(
        &mut self,
        now_ms: u64,
        registered: impl IntoIterator<Item = &'a WorkerId>,
    ) -> Vec<WorkerId> {
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

    #[test]
    fn a_renewed_lease_does_not_expire() {
        let mut t = LeaseTable::new(1000);
        let workers = [w("a"), w("b")];
        t.on_elected(0, &workers);
        t.renew(&w("a"), 900);
        assert_eq!(t.expired(1000, &workers), vec![w("b")]);
        assert_eq!(t.expired(1899, &workers[..1]), Vec::<WorkerId>::new());
        assert_eq!(t.expired(1900, &workers[..1]), vec![w("a")]);
    }

    #[test]
    fn a_new_leader_grants_a_full_grace_period() {
        let mut t = LeaseTable::new(1000);
        let workers = [w("a")];
        t.on_elected(5_000, &workers);
        assert!(t.expired(5_999, &workers).is_empty());
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
        assert_eq!(t.expired(3_000, &workers), vec![w("b")]);
    }

    #[test]
    fn a_worker_unknown_to_the_table_is_not_expired_at_once() {
        let mut t = LeaseTable::new(1000);
        t.on_elected(0, []);
        let workers = [w("late")];
        assert!(t.expired(10_000, &workers).is_empty());
        assert!(t.expired(10_999, &workers).is_empty());
        assert_eq!(t.expired(11_000, &workers), vec![w("late")]);
    }

    #[test]
    fn deadlines_never_move_backwards() {
        let mut t = LeaseTable::new(1000);
        assert_eq!(t.renew(&w("a"), 5000), 6000);
        assert_eq!(t.renew(&w("a"), 100), 6000);
    }
}
