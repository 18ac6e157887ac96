//! The clients of a simulated run: each creates tenants with unique names, one after the
//! other, the way the HTTP API would on their behalf.
//!
//! A client does not know who leads. It sends to the node a `NotLeader` answer pointed at,
//! or else to a node drawn from its seeded generator, and retries the same write until an
//! answer settles it or its attempts run out. Each attempt carries a fresh token (from the
//! receiving node's entropy seam, as the API handler would draw it) and the creation time
//! read once from the first node's clock seam. Every attempt and its answer go to the
//! write oracle; the settled ones also go to the trace.

use crate::checker::{Attempt, AttemptOutcome};
use crate::cluster::{ClusterView, LiveNode};
use crate::context::SimContext;
use rand::rngs::StdRng;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use weir_coordinator::node::WriteError;
use weir_coordinator::state::{Command, Refusal};
use weir_core::ids::{NodeId, TenantName};

/// Attempts (including ones that found no running node) a client makes for one write
/// before it gives up with the outcome unknown.
pub const CLIENT_ATTEMPTS_MAX: usize = 16;
/// How long a client waits for one attempt's answer.
pub const CLIENT_WRITE_TIMEOUT_MS: u64 = 2_000;
/// A client's pause between attempts of one write.
pub const CLIENT_BACKOFF_MS: (u64, u64) = (5, 50);
/// Bytes in a tenant token.
const TOKEN_BYTES: usize = 16;

/// How a client paces itself.
#[derive(Debug, Clone, Copy)]
pub struct ClientPacing {
    /// A client thinks for up to this long between writes.
    pub think_ms_max: u64,
}

/// How one write ended for its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Acknowledged, or found created by an earlier attempt.
    Yes,
    /// Attempts or time ran out first.
    Unknown,
}

/// Sends one attempt of the write creating `name` to `node`, and classifies the answer.
/// Returns the outcome, the token hash sent, and the leader the node pointed at.
async fn attempt(
    node: &LiveNode,
    name: &TenantName,
    at_ms: u64,
) -> (AttemptOutcome, String, Option<NodeId>) {
    let mut token = [0u8; TOKEN_BYTES];
    node.coordinator.seams().entropy.fill(&mut token);
    let token_hash = hex::encode(Sha256::digest(token));
    let command = Command::CreateTenant {
        name: name.clone(),
        token_hash: token_hash.clone(),
        at_ms,
    };
    let timeout = Duration::from_millis(CLIENT_WRITE_TIMEOUT_MS);
    let answer = tokio::time::timeout(timeout, node.coordinator.write(command)).await;
    let (outcome, hint) = match answer {
        Ok(Ok(_)) => (AttemptOutcome::Acked, None),
        Ok(Err(WriteError::NotLeader { leader_id, .. })) => (AttemptOutcome::NotLeader, leader_id),
        Ok(Err(WriteError::Refused(Refusal::Conflict(_)))) => (AttemptOutcome::Exists, None),
        Ok(Err(WriteError::Refused(other))) => (AttemptOutcome::Refused(other.to_string()), None),
        Ok(Err(WriteError::Unavailable(_))) => (AttemptOutcome::Unavailable, None),
        Err(_elapsed) => (AttemptOutcome::TimedOut, None),
    };
    (outcome, token_hash, hint)
}

/// Writes `name` until an answer settles it, `attempts_max` attempts pass, or `keep_going`
/// turns false; the first attempt goes to `first` when given.
#[allow(clippy::too_many_arguments)] // the write, where to send it, and its retry policy
pub async fn write_until_settled(
    ctx: &SimContext,
    view: &ClusterView,
    nodes: &[NodeId],
    rng: &mut StdRng,
    name: &TenantName,
    first: Option<NodeId>,
    attempts_max: usize,
    keep_going: &(dyn Fn() -> bool + Sync),
) -> Settled {
    let mut hint: Option<NodeId> = first;
    let mut at_ms: Option<u64> = None;
    let mut sent = 0;
    for _ in 0..attempts_max {
        if !keep_going() {
            break;
        }
        let target = hint
            .take()
            .unwrap_or_else(|| nodes[rng.gen_range(0..nodes.len())]);
        if let Some(node) = view.get(target) {
            let created_at_ms =
                *at_ms.get_or_insert_with(|| node.coordinator.seams().clock.now_ms());
            let (outcome, token_hash, leader) = attempt(&node, name, created_at_ms).await;
            sent += 1;
            let settled = matches!(outcome, AttemptOutcome::Acked | AttemptOutcome::Exists);
            let line = format!("write {name} {outcome:?} via n{target} (attempt {sent})");
            ctx.with_checker(|c, at| {
                c.record_attempt(
                    at,
                    name,
                    created_at_ms,
                    Attempt {
                        node: target,
                        token_hash,
                        outcome,
                    },
                )
            });
            if settled {
                ctx.event(&line);
                return Settled::Yes;
            }
            hint = leader;
        }
        let backoff = rng.gen_range(CLIENT_BACKOFF_MS.0..=CLIENT_BACKOFF_MS.1);
        tokio::time::sleep(Duration::from_millis(backoff)).await;
    }
    if sent > 0 {
        ctx.event(&format!("write {name} unknown after {sent} attempts"));
    }
    Settled::Unknown
}

/// One client: writes tenants `c{client}-{n}` until `stop` is set. A write under way when
/// `stop` is set still runs to its end (settled, or its attempts spent), so that stopping
/// the clients never leaves a write unknown on its own (seed 42 without faults did).
pub async fn run_client(
    client: usize,
    ctx: Arc<SimContext>,
    view: ClusterView,
    nodes: Vec<NodeId>,
    mut rng: StdRng,
    pacing: ClientPacing,
    stop: Arc<AtomicBool>,
) {
    let keep_going = || !stop.load(Ordering::Relaxed);
    let mut n: u64 = 0;
    while keep_going() {
        let think = rng.gen_range(0..=pacing.think_ms_max);
        tokio::time::sleep(Duration::from_millis(think)).await;
        if !keep_going() {
            break;
        }
        n += 1;
        let name = TenantName(format!("c{client}-{n}"));
        write_until_settled(
            &ctx,
            &view,
            &nodes,
            &mut rng,
            &name,
            None,
            CLIENT_ATTEMPTS_MAX,
            &|| true,
        )
        .await;
    }
}
