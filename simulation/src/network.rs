//! The simulated network between coordinators: the `RaftTransport` seam, in memory.
//!
//! Every RPC becomes a flight: a seeded delay, delivery to the target's Raft through
//! `serve_rpc` (the same receiving end production's HTTP server calls), a seeded delay back,
//! and the reply. On the way the network may drop the request or the reply, deliver the
//! request twice (the copy's reply goes nowhere), hold a message long enough that a later
//! one overtakes it, or swallow it in a partition. Partitions are sets of blocked directed
//! links, so symmetric splits, one-way links and an isolated leader are all expressible.
//! A target that is down refuses at once (connection refused); a swallowed message leaves
//! the caller waiting for its full timeout, as a black hole does.
//!
//! All randomness comes from one seeded generator, drawn when an RPC is sent, so the draws
//! happen in the order the single-threaded runtime runs the senders: a seed replays exactly.
//! Every path takes at least a millisecond of simulated time, so no retry loop inside
//! openraft can spin without letting the clock move.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use weir_coordinator::network::{serve_rpc, RaftRpc, RaftRpcReply, RaftTransport, TransportError};
use weir_coordinator::raft_types::Raft;
use weir_core::ids::NodeId;

/// Time a refused connection takes to fail.
pub const RPC_REFUSED_MS: u64 = 1;
/// The longest a caller waits for a reply, whatever timeout openraft asks for.
pub const RPC_TIMEOUT_MAX_MS: u64 = 60_000;
/// The shortest one-way delay; keeps simulated time moving on every path.
pub const NET_DELAY_MIN_MS: u64 = 1;

/// How the network misbehaves. Probabilities are per message and per direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetFaults {
    /// Chance that a request or a reply is lost.
    pub drop_probability: f64,
    /// Chance that a request is delivered a second time.
    pub duplicate_probability: f64,
    /// One-way delays are drawn uniformly from this range (milliseconds)...
    pub delay_ms: (u64, u64),
    /// ...and with this chance a message is slow by up to `slow_extra_ms_max` more, which
    /// reorders it behind later ones and may outlast the caller's timeout.
    pub slow_probability: f64,
    /// The most a slow message is delayed beyond its drawn delay (milliseconds).
    pub slow_extra_ms_max: u64,
}

impl NetFaults {
    /// A healthy LAN: short delays, nothing lost, duplicated or slow.
    pub fn calm() -> Self {
        NetFaults {
            drop_probability: 0.0,
            duplicate_probability: 0.0,
            delay_ms: (NET_DELAY_MIN_MS, 3),
            slow_probability: 0.0,
            slow_extra_ms_max: 0,
        }
    }
}

/// What happened to the messages sent so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// RPCs handed to the network (not counting duplicates).
    pub sent: u64,
    /// Replies that reached their caller.
    pub delivered: u64,
    /// Requests or replies lost by chance.
    pub dropped: u64,
    /// Extra copies of requests the network delivered.
    pub duplicated: u64,
    /// Messages swallowed by a partition.
    pub partitioned: u64,
    /// Messages lost because the receiving process was down or restarted meanwhile.
    pub lost_to_crash: u64,
    /// Calls that failed at once because the target was down.
    pub refused: u64,
    /// Calls whose caller gave up waiting.
    pub timed_out: u64,
}

/// A set of blocked directed links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partition {
    links: BTreeSet<(NodeId, NodeId)>,
}

impl Partition {
    /// Cuts `node` off from every other node in both directions.
    pub fn isolate(node: NodeId, nodes: &[NodeId]) -> Self {
        let others: Vec<NodeId> = nodes.iter().copied().filter(|n| *n != node).collect();
        Partition::split(&[node], &others)
    }

    /// Blocks every link between the two sides, both ways.
    pub fn split(a: &[NodeId], b: &[NodeId]) -> Self {
        let mut links = BTreeSet::new();
        for x in a {
            for y in b {
                links.insert((*x, *y));
                links.insert((*y, *x));
            }
        }
        Partition { links }
    }

    /// Blocks messages from `from` to each of `to`; the other direction still works.
    pub fn one_way(from: NodeId, to: &[NodeId]) -> Self {
        Partition {
            links: to
                .iter()
                .filter(|t| **t != from)
                .map(|t| (from, *t))
                .collect(),
        }
    }

    /// Blocks messages from each of `from` to `to`; `to` can still send.
    pub fn one_way_into(to: NodeId, from: &[NodeId]) -> Self {
        Partition {
            links: from
                .iter()
                .filter(|f| **f != to)
                .map(|f| (*f, to))
                .collect(),
        }
    }

    /// The blocked links, in order.
    pub fn links(&self) -> impl Iterator<Item = &(NodeId, NodeId)> {
        self.links.iter()
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let links: Vec<String> = self.links.iter().map(|(a, b)| format!("{a}>{b}")).collect();
        write!(f, "[{}]", links.join(" "))
    }
}

struct Endpoint {
    /// The process currently running on the node; older ones can no longer send.
    incarnation: u64,
    /// Set while the process is up and serving.
    raft: Option<Raft>,
    up: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("incarnation", &self.incarnation)
            .field("serving", &self.raft.is_some())
            .field("up", &self.up)
            .finish()
    }
}

#[derive(Debug)]
struct NetState {
    rng: StdRng,
    faults: NetFaults,
    endpoints: BTreeMap<NodeId, Endpoint>,
    /// Blocked links, counted so overlapping partitions heal independently.
    blocked: BTreeMap<(NodeId, NodeId), u32>,
    stats: NetStats,
}

/// The network shared by every node of a simulated cluster. Cloning shares it.
#[derive(Debug, Clone)]
pub struct SimNet {
    state: Arc<Mutex<NetState>>,
}

/// One direction of one message's trip.
#[derive(Debug, Clone, Copy)]
struct Leg {
    delay: Duration,
    lost: bool,
}

/// A request's trip there and its reply's trip back.
#[derive(Debug, Clone, Copy)]
struct Flight {
    request: Leg,
    reply: Leg,
}

enum Dispatch {
    Refused,
    Fly {
        flight: Flight,
        duplicate: Option<Flight>,
    },
}

impl SimNet {
    /// A network with no nodes yet, misbehaving as `faults` says, drawing from `seed`.
    pub fn new(seed: u64, faults: NetFaults) -> Self {
        SimNet {
            state: Arc::new(Mutex::new(NetState {
                rng: StdRng::seed_from_u64(seed),
                faults,
                endpoints: BTreeMap::new(),
                blocked: BTreeMap::new(),
                stats: NetStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes how the network misbehaves from now on.
    pub fn set_faults(&self, faults: NetFaults) {
        self.lock().faults = faults;
    }

    /// How the network misbehaves now.
    pub fn faults(&self) -> NetFaults {
        self.lock().faults
    }

    /// The transport a process `incarnation` of `node` sends through.
    pub fn transport(&self, node: NodeId, incarnation: u64) -> SimTransport {
        SimTransport {
            net: self.clone(),
            from: node,
            incarnation,
        }
    }

    /// A new process of `node` is starting: it may send, but is not reachable until
    /// `serve`. Fences the node's earlier processes.
    pub fn boot(&self, node: NodeId, incarnation: u64) {
        self.lock().endpoints.insert(
            node,
            Endpoint {
                incarnation,
                raft: None,
                up: true,
            },
        );
    }

    /// The node's current process serves RPCs on `raft`.
    pub fn serve(&self, node: NodeId, raft: Raft) {
        if let Some(e) = self.lock().endpoints.get_mut(&node) {
            e.raft = Some(raft);
        }
    }

    /// The node is down: it neither sends nor receives until it boots again.
    pub fn down(&self, node: NodeId) {
        if let Some(e) = self.lock().endpoints.get_mut(&node) {
            e.raft = None;
            e.up = false;
        }
    }

    /// Blocks the partition's links (on top of any already blocked).
    pub fn partition(&self, partition: &Partition) {
        let mut state = self.lock();
        for link in partition.links() {
            *state.blocked.entry(*link).or_insert(0) += 1;
        }
    }

    /// Unblocks the partition's links, unless another partition also blocks them.
    pub fn heal(&self, partition: &Partition) {
        let mut state = self.lock();
        for link in partition.links() {
            if let Some(n) = state.blocked.get_mut(link) {
                *n -= 1;
                if *n == 0 {
                    state.blocked.remove(link);
                }
            }
        }
    }

    /// Unblocks every link.
    pub fn heal_all(&self) {
        self.lock().blocked.clear();
    }

    /// Whether messages from `from` to `to` are swallowed now.
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.lock().blocked.contains_key(&(from, to))
    }

    /// What happened to the messages sent so far.
    pub fn stats(&self) -> NetStats {
        self.lock().stats
    }

    fn dispatch(&self, from: NodeId, incarnation: u64, target: NodeId) -> Dispatch {
        let mut state = self.lock();
        let sender_alive = state
            .endpoints
            .get(&from)
            .is_some_and(|e| e.up && e.incarnation == incarnation);
        let target_up = state
            .endpoints
            .get(&target)
            .is_some_and(|e| e.raft.is_some());
        if !sender_alive || !target_up {
            state.stats.refused += 1;
            return Dispatch::Refused;
        }
        state.stats.sent += 1;
        let faults = state.faults;
        let flight = draw_flight(&mut state.rng, &faults);
        let duplicate = if state
            .rng
            .gen_bool(faults.duplicate_probability.clamp(0.0, 1.0))
        {
            state.stats.duplicated += 1;
            Some(draw_flight(&mut state.rng, &faults))
        } else {
            None
        };
        Dispatch::Fly { flight, duplicate }
    }

    /// The request arrives at `target`, unless it was lost on the way: returns the Raft to
    /// serve it and the incarnation serving it.
    fn arrive(&self, from: NodeId, target: NodeId, leg: Leg) -> Option<(Raft, u64)> {
        let mut state = self.lock();
        if leg.lost {
            state.stats.dropped += 1;
            return None;
        }
        if state.blocked.contains_key(&(from, target)) {
            state.stats.partitioned += 1;
            return None;
        }
        let endpoint = state.endpoints.get(&target);
        match endpoint.and_then(|e| e.raft.clone().map(|r| (r, e.incarnation))) {
            Some(served) => Some(served),
            None => {
                state.stats.lost_to_crash += 1;
                None
            }
        }
    }

    /// Whether the reply from process `incarnation` of `target` makes it back to `from`.
    fn reply_arrives(&self, target: NodeId, incarnation: u64, from: NodeId, leg: Leg) -> bool {
        let mut state = self.lock();
        if leg.lost {
            state.stats.dropped += 1;
            return false;
        }
        if state.blocked.contains_key(&(target, from)) {
            state.stats.partitioned += 1;
            return false;
        }
        let still_up = state
            .endpoints
            .get(&target)
            .is_some_and(|e| e.up && e.incarnation == incarnation);
        if !still_up {
            state.stats.lost_to_crash += 1;
            return false;
        }
        state.stats.delivered += 1;
        true
    }

    fn count_timeout(&self) {
        self.lock().stats.timed_out += 1;
    }
}

fn draw_leg(rng: &mut StdRng, faults: &NetFaults) -> Leg {
    let (lo, hi) = faults.delay_ms;
    let lo = lo.max(NET_DELAY_MIN_MS);
    let mut delay_ms = rng.gen_range(lo..=hi.max(lo));
    if faults.slow_extra_ms_max > 0 && rng.gen_bool(faults.slow_probability.clamp(0.0, 1.0)) {
        delay_ms += rng.gen_range(1..=faults.slow_extra_ms_max);
    }
    Leg {
        delay: Duration::from_millis(delay_ms),
        lost: rng.gen_bool(faults.drop_probability.clamp(0.0, 1.0)),
    }
}

fn draw_flight(rng: &mut StdRng, faults: &NetFaults) -> Flight {
    let request = draw_leg(rng, faults);
    let reply = draw_leg(rng, faults);
    Flight { request, reply }
}

/// Carries one copy of a request to its target and its reply back to `reply_to`.
async fn fly(
    net: SimNet,
    from: NodeId,
    target: NodeId,
    rpc: RaftRpc,
    flight: Flight,
    reply_to: Option<oneshot::Sender<RaftRpcReply>>,
) {
    tokio::time::sleep(flight.request.delay).await;
    let Some((raft, incarnation)) = net.arrive(from, target, flight.request) else {
        return;
    };
    let reply = serve_rpc(&raft, rpc).await;
    drop(raft);
    tokio::time::sleep(flight.reply.delay).await;
    if net.reply_arrives(target, incarnation, from, flight.reply) {
        if let Some(tx) = reply_to {
            // The caller may have timed out or died meanwhile; then the reply is moot.
            let _ = tx.send(reply);
        }
    }
}

/// The transport one process of one node sends its RPCs through.
#[derive(Debug, Clone)]
pub struct SimTransport {
    net: SimNet,
    from: NodeId,
    incarnation: u64,
}

impl RaftTransport for SimTransport {
    fn call(
        &self,
        target: u64,
        _addr: &str,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<RaftRpcReply, TransportError>> + Send {
        let net = self.net.clone();
        let from = self.from;
        let incarnation = self.incarnation;
        async move {
            let (flight, duplicate) = match net.dispatch(from, incarnation, target) {
                Dispatch::Refused => {
                    tokio::time::sleep(Duration::from_millis(RPC_REFUSED_MS)).await;
                    return Err(TransportError::Unreachable(
                        target,
                        "connection refused".into(),
                    ));
                }
                Dispatch::Fly { flight, duplicate } => (flight, duplicate),
            };
            let deadline = Instant::now() + timeout.min(Duration::from_millis(RPC_TIMEOUT_MAX_MS));
            let (tx, rx) = oneshot::channel();
            if let Some(copy) = duplicate {
                tokio::spawn(fly(net.clone(), from, target, rpc.clone(), copy, None));
            }
            tokio::spawn(fly(net.clone(), from, target, rpc, flight, Some(tx)));
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_lost)) => {
                    // A lost message is silence, not an error: wait out the timeout.
                    tokio::time::sleep_until(deadline).await;
                    net.count_timeout();
                    Err(TransportError::Failed(target, "timed out".into()))
                }
                Err(_elapsed) => {
                    net.count_timeout();
                    Err(TransportError::Failed(target, "timed out".into()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_block_directed_links_and_heal_independently() {
        let net = SimNet::new(0, NetFaults::calm());
        let nodes = [1, 2, 3];
        let isolate = Partition::isolate(1, &nodes);
        let one_way = Partition::one_way(1, &[2]);
        net.partition(&isolate);
        net.partition(&one_way);
        assert!(net.is_blocked(1, 2) && net.is_blocked(2, 1) && net.is_blocked(3, 1));
        assert!(!net.is_blocked(2, 3));
        net.heal(&isolate);
        assert!(
            net.is_blocked(1, 2),
            "still blocked by the one-way partition"
        );
        assert!(!net.is_blocked(2, 1) && !net.is_blocked(1, 3));
        net.heal(&one_way);
        assert!(!net.is_blocked(1, 2));
        assert_eq!(one_way.to_string(), "[1>2]");
    }

    #[test]
    fn flights_replay_for_a_seed() {
        let faults = NetFaults {
            drop_probability: 0.1,
            duplicate_probability: 0.1,
            delay_ms: (1, 5),
            slow_probability: 0.2,
            slow_extra_ms_max: 50,
        };
        let draws = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..100)
                .map(|_| {
                    let f = draw_flight(&mut rng, &faults);
                    (f.request.delay, f.request.lost, f.reply.delay, f.reply.lost)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
        assert!(draws(3).iter().all(|d| d.0 >= Duration::from_millis(1)));
    }
}
