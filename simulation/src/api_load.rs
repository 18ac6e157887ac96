//! API load on the leader: bursts of concurrent client writes aimed at whoever leads, on
//! top of the steady clients and whatever else the seed's schedule does.
//!
//! The simulated runtime spends no CPU time on a request, so the load that cost a real
//! group its elections (parsing bodies, queueing behind them) cannot happen here; what
//! can is the concurrency: a hundred proposals at once in the leader's write path, its
//! group commit and its log, through crashes, partitions and leader changes. Every burst
//! write goes through the write oracle like any client's (an acknowledged write is
//! applied exactly once, whatever the answer said), and a test runs bursts alone to check
//! that they never cost the group its leader.
//!
//! Bursts are drawn from a generator of their own, derived from the seed, so that every
//! other draw of a seed (fault schedule, clients, jobs) stays what it was before bursts
//! existed.

use crate::cluster::ClusterView;
use crate::context::SimContext;
use crate::workload::{self, Settled, CLIENT_ATTEMPTS_MAX};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use weir_core::ids::{NodeId, TenantName};

/// Concurrent writes in one burst.
pub const BURST_WRITES: (usize, usize) = (50, 200);
/// Bursts in one run, at most.
pub const BURSTS_MAX: usize = 3;
/// Chance that a seed with the class enabled uses it (as for the other classes).
const BURST_CLASS_PROBABILITY: f64 = 0.75;
/// Mixed into the seed for the bursts' own generator ("API_LOAD").
const BURST_STREAM: u64 = 0x4150_495f_4c4f_4144;
/// Bursts start no earlier than this, so the group can form first.
const BURST_START_MS: u64 = 500;

/// One burst: `writes` concurrent writes at `at_ms` of the fault phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// Simulated time it starts at.
    pub at_ms: u64,
    /// How many writes it sends at once.
    pub writes: usize,
}

/// The bursts of `seed`, within a fault phase `phase_ms` long: none unless `enabled`.
pub fn draw(seed: u64, enabled: bool, phase_ms: u64) -> Vec<Burst> {
    let mut rng = StdRng::seed_from_u64(seed ^ BURST_STREAM);
    if !enabled || !rng.gen_bool(BURST_CLASS_PROBABILITY) || phase_ms <= BURST_START_MS {
        return Vec::new();
    }
    let count = rng.gen_range(1..=BURSTS_MAX);
    let mut bursts: Vec<Burst> = (0..count)
        .map(|_| Burst {
            at_ms: rng.gen_range(BURST_START_MS..phase_ms),
            writes: rng.gen_range(BURST_WRITES.0..=BURST_WRITES.1),
        })
        .collect();
    bursts.sort_by_key(|b| b.at_ms);
    bursts
}

/// Runs `bursts` as one task: each starts at its time (from the run's start) and the task
/// ends when every write of every burst has settled or spent its attempts.
pub fn spawn(
    ctx: Arc<SimContext>,
    view: ClusterView,
    nodes: Vec<NodeId>,
    seed: u64,
    bursts: Vec<Burst>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut writers = Vec::new();
        for (index, burst) in bursts.into_iter().enumerate() {
            let start = ctx.started() + Duration::from_millis(burst.at_ms);
            tokio::time::sleep_until(start).await;
            let leader = view.leader().map(|n| n.id);
            ctx.event(&format!(
                "burst #{index}: {} writes at once, aimed at {}",
                burst.writes,
                leader.map_or("no leader".to_string(), |id| format!("n{id}"))
            ));
            for n in 0..burst.writes {
                let (ctx, view, nodes) = (ctx.clone(), view.clone(), nodes.clone());
                let mut rng =
                    StdRng::seed_from_u64(seed ^ BURST_STREAM ^ ((index as u64) << 32 | n as u64));
                writers.push(tokio::spawn(async move {
                    let name = TenantName(format!("burst{index}-{n}"));
                    workload::write_until_settled(
                        &ctx,
                        &view,
                        &nodes,
                        &mut rng,
                        &name,
                        leader,
                        CLIENT_ATTEMPTS_MAX,
                        &|| true,
                    )
                    .await
                }));
            }
        }
        let mut unknown = 0;
        for writer in writers {
            match writer.await {
                Ok(Settled::Yes) => {}
                Ok(Settled::Unknown) => unknown += 1,
                Err(e) => ctx.violation(format!("a burst writer failed: {e}")),
            }
        }
        if unknown > 0 {
            ctx.event(&format!("bursts: {unknown} writes unknown"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_bursts_within_bounds() {
        for seed in 0..200 {
            let bursts = draw(seed, true, 20_000);
            assert_eq!(bursts, draw(seed, true, 20_000));
            assert!(bursts.len() <= BURSTS_MAX);
            for b in &bursts {
                assert!((BURST_START_MS..20_000).contains(&b.at_ms));
                assert!((BURST_WRITES.0..=BURST_WRITES.1).contains(&b.writes));
            }
            assert!(draw(seed, false, 20_000).is_empty());
        }
        let with = (0..200)
            .filter(|s| !draw(*s, true, 20_000).is_empty())
            .count();
        assert!((100..200).contains(&with), "{with} of 200 seeds burst");
    }
}
