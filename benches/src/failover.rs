//! Leader failover time: kill -9 the leader, then clients retry the surviving members every
//! few milliseconds until one write is acknowledged. The time from the kill to that first
//! acknowledgement is the write unavailability a client sees.
//!
//! A new attempt starts every `FAILOVER_RETRY_INTERVAL_MS` on each survivor even while
//! earlier ones are pending: a write sent to a follower that still believes in the dead
//! leader may hang until its timeout, and the moment the new leader can serve must not hide
//! behind it.

use crate::cluster::{Cluster, System, CONNECT_TIMEOUT_MS};
use anyhow::{bail, Context};
use reqwest::Client;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

/// Pause between two attempts on the same member.
pub const FAILOVER_RETRY_INTERVAL_MS: u64 = 5;
/// Time one attempt may take; longer than a write to a settled leader ever takes here.
pub const FAILOVER_ATTEMPT_TIMEOUT_MS: u64 = 200;
/// Attempts pending at once on one member (200 ms / 5 ms = 40 never blocks a new one).
pub const FAILOVER_ATTEMPTS_PENDING_MAX: usize = 48;
/// A trial in which no write is acknowledged within this time fails the run.
pub const FAILOVER_DEADLINE_MS: u64 = 20_000;
/// Before a trial, the group must have kept one leader in one term for this long, so that a
/// trial never starts inside the disturbance the previous restart caused.
pub const SETTLED_MS: u64 = 1_500;
/// Time the group has to settle after a restart.
pub const SETTLE_TIMEOUT_MS: u64 = 30_000;

/// One trial: which member was killed, how long writes were unavailable, and how many
/// elections (new terms) the failover and the killed member's restart each took.
#[derive(Debug, Clone, Copy)]
pub struct FailoverTrial {
    pub killed: usize,
    pub unavailable: Duration,
    /// Terms begun between the kill and the survivors agreeing on a leader; 1 is ideal.
    pub failover_terms: u64,
    /// Terms begun while the killed member restarted and caught up; 0 is ideal (a member
    /// coming back should not depose a working leader).
    pub restart_terms: u64,
}

/// Runs `trials` failovers, restarting the killed member and waiting for it to catch up
/// between them.
pub async fn measure(
    cluster: &mut Cluster,
    trials: usize,
    key_prefix: &str,
) -> anyhow::Result<Vec<FailoverTrial>> {
    let http = Client::builder()
        .timeout(Duration::from_millis(FAILOVER_ATTEMPT_TIMEOUT_MS))
        .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(FAILOVER_ATTEMPTS_PENDING_MAX)
        .build()?;
    let mut results = Vec::with_capacity(trials);
    for trial in 0..trials {
        let (leader, term_before) = settled_leader(cluster).await?;
        cluster
            .wait_ready(&format!("{key_prefix}-{trial}-ready"))
            .await?;
        let survivors: Vec<String> = (0..cluster.len())
            .filter(|m| *m != leader)
            .map(|m| cluster.addr(m).to_string())
            .collect();
        cluster.kill(leader)?;
        let killed_at = Instant::now();
        let acked = first_ack(
            cluster.system(),
            &http,
            &survivors,
            killed_at,
            &format!("{key_prefix}-{trial}"),
        )
        .await;
        cluster.reap(leader);
        let unavailable = acked.with_context(|| format!("failover trial {}", trial + 1))?;
        let after_failover = new_leader(cluster).await?;
        cluster
            .restart_and_catch_up(leader, after_failover.applied_index)
            .await?;
        let (_, term_settled) = settled_leader(cluster).await?;
        let t = FailoverTrial {
            killed: leader,
            unavailable,
            failover_terms: after_failover.term.saturating_sub(term_before),
            restart_terms: term_settled.saturating_sub(after_failover.term),
        };
        eprintln!(
            "  {} failover {}/{trials}: member {} killed, writes back after {:.0} ms; {} election(s), {} more on its restart",
            cluster.system().name(),
            trial + 1,
            leader + 1,
            unavailable.as_secs_f64() * 1000.0,
            t.failover_terms,
            t.restart_terms,
        );
        results.push(t);
    }
    Ok(results)
}

/// The status of the new leader the survivors agree on.
async fn new_leader(cluster: &mut Cluster) -> anyhow::Result<crate::cluster::MemberStatus> {
    let started = Instant::now();
    loop {
        if let Some((_, status)) = cluster.agreed_leader().await {
            return Ok(status);
        }
        if started.elapsed() >= Duration::from_millis(FAILOVER_DEADLINE_MS) {
            bail!("the survivors did not agree on a new leader");
        }
        tokio::time::sleep(Duration::from_millis(FAILOVER_RETRY_INTERVAL_MS)).await;
    }
}

/// Waits until every member has agreed on the same leader in the same term for
/// `SETTLED_MS`, and returns that leader and term.
async fn settled_leader(cluster: &mut Cluster) -> anyhow::Result<(usize, u64)> {
    let started = Instant::now();
    let mut stable_since: Option<(Instant, usize, u64)> = None;
    loop {
        let now = Instant::now();
        match (cluster.agreed_leader().await, stable_since) {
            (Some((leader, status)), Some((since, l, term)))
                if leader == l && status.term == term =>
            {
                if now.duration_since(since) >= Duration::from_millis(SETTLED_MS) {
                    return Ok((leader, term));
                }
            }
            (Some((leader, status)), _) => stable_since = Some((now, leader, status.term)),
            (None, _) => stable_since = None,
        }
        if started.elapsed() >= Duration::from_millis(SETTLE_TIMEOUT_MS) {
            bail!("the group did not keep one leader for {SETTLED_MS} ms within {SETTLE_TIMEOUT_MS} ms");
        }
        tokio::time::sleep(Duration::from_millis(crate::cluster::STATUS_POLL_MS)).await;
    }
}

/// Time from `since` until the first write acknowledged by any of `addrs`.
async fn first_ack(
    system: Arc<dyn System>,
    http: &Client,
    addrs: &[String],
    since: Instant,
    key_prefix: &str,
) -> anyhow::Result<Duration> {
    let mut pending = vec![0usize; addrs.len()];
    let mut attempts = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(FAILOVER_RETRY_INTERVAL_MS));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let deadline = tokio::time::sleep_until(since + Duration::from_millis(FAILOVER_DEADLINE_MS));
    tokio::pin!(deadline);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for (member, addr) in addrs.iter().enumerate() {
                    if pending[member] >= FAILOVER_ATTEMPTS_PENDING_MAX {
                        continue;
                    }
                    seq += 1;
                    pending[member] += 1;
                    let request = system.write_request(http, addr, &format!("{key_prefix}-{seq}"));
                    let system = system.clone();
                    attempts.spawn(async move {
                        let acked = match request.send().await {
                            Ok(resp) => {
                                let status = resp.status();
                                resp.bytes().await.is_ok() && system.write_acked(status)
                            }
                            Err(_) => false,
                        };
                        (member, acked.then(Instant::now))
                    });
                }
            }
            Some(joined) = attempts.join_next() => {
                let (member, acked_at) = joined?;
                pending[member] -= 1;
                if let Some(at) = acked_at {
                    attempts.abort_all();
                    return Ok(at.duration_since(since));
                }
            }
            _ = &mut deadline => {
                attempts.abort_all();
                bail!("no write was acknowledged within {FAILOVER_DEADLINE_MS} ms of the kill");
            }
        }
    }
}

/// The median of the trials' unavailability.
pub fn median(trials: &[FailoverTrial]) -> Option<Duration> {
    let mut v: Vec<Duration> = trials.iter().map(|t| t.unavailable).collect();
    v.sort_unstable();
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}
