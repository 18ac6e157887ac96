//! Which faults a run injects, and when: all drawn from the seed before the run starts.
//!
//! Swarm testing (as in TigerBeetle's VOPR): each seed first decides which of the enabled
//! fault classes it uses and how hard (drop rate, duplicate rate, slow-message rate), so
//! some seeds hammer one kind of failure and others mix several. Then it draws a schedule of
//! discrete faults (crashes, partitions, clock jumps) with their times and durations. Whom a
//! fault hits ("the leader", "some node") is resolved when it fires, from a number drawn up
//! front, so the schedule itself never depends on how the run went.

use crate::disk::CrashMode;
use crate::network::{NetFaults, NET_DELAY_MIN_MS};
use rand::Rng;

/// The fault classes a run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultClasses {
    /// Process crashes and restarts (unsynced writes survive in the page cache).
    pub crash: bool,
    /// Symmetric, one-way and leader-isolating partitions.
    pub partition: bool,
    /// Lost requests and replies.
    pub drop: bool,
    /// Requests delivered twice.
    pub duplicate: bool,
    /// Slow messages, overtaken by later ones and outliving timeouts.
    pub delay: bool,
    /// Machine crashes that lose unsynced writes (all, or all but a prefix).
    pub lost_writes: bool,
    /// A node's wall clock jumping forwards or backwards.
    pub clock_jump: bool,
    /// Worker processes crashing (and restarting), in-flight calls lost.
    pub worker_crash: bool,
    /// Worker processes pausing long enough to outlive their lease (zombies), and workers
    /// cut off from the coordinators.
    pub zombie: bool,
    /// The broker unavailable, calls timing out, commit replies lost, transactions
    /// expired by the broker.
    pub broker: bool,
    /// The checkpoint store stalling.
    pub slow_disk: bool,
    /// Bursts of concurrent client writes aimed at the leader (`crate::api_load`).
    pub api_load: bool,
}

impl FaultClasses {
    /// Every class.
    pub fn all() -> Self {
        FaultClasses {
            crash: true,
            partition: true,
            drop: true,
            duplicate: true,
            delay: true,
            lost_writes: true,
            clock_jump: true,
            worker_crash: true,
            zombie: true,
            broker: true,
            slow_disk: true,
            api_load: true,
        }
    }

    /// No faults: the run checks the happy path.
    pub fn none() -> Self {
        FaultClasses {
            crash: false,
            partition: false,
            drop: false,
            duplicate: false,
            delay: false,
            lost_writes: false,
            clock_jump: false,
            worker_crash: false,
            zombie: false,
            broker: false,
            slow_disk: false,
            api_load: false,
        }
    }

    /// The classes as `--faults` names them, in order.
    pub const NAMES: [&'static str; 12] = [
        "crash",
        "partition",
        "drop",
        "duplicate",
        "delay",
        "lost-writes",
        "clock-jump",
        "worker-crash",
        "zombie",
        "broker",
        "slow-disk",
        "api-load",
    ];

    /// The names of the classes switched on, in `NAMES` order.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [
            self.crash,
            self.partition,
            self.drop,
            self.duplicate,
            self.delay,
            self.lost_writes,
            self.clock_jump,
            self.worker_crash,
            self.zombie,
            self.broker,
            self.slow_disk,
            self.api_load,
        ];
        Self::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Switches on the class `--faults` calls `name`; false if there is no such class.
    pub fn enable(&mut self, name: &str) -> bool {
        let flag = match name {
            "crash" => &mut self.crash,
            "partition" => &mut self.partition,
            "drop" => &mut self.drop,
            "duplicate" => &mut self.duplicate,
            "delay" => &mut self.delay,
            "lost-writes" => &mut self.lost_writes,
            "clock-jump" => &mut self.clock_jump,
            "worker-crash" => &mut self.worker_crash,
            "zombie" => &mut self.zombie,
            "broker" => &mut self.broker,
            "slow-disk" => &mut self.slow_disk,
            "api-load" => &mut self.api_load,
            _ => return false,
        };
        *flag = true;
        true
    }
}

/// Chance that a seed uses an enabled fault class (swarm testing).
const SWARM_CLASS_PROBABILITY: f64 = 0.75;
/// Faults start no earlier than this, so the group can form first.
const SCHEDULE_START_MS: (u64, u64) = (300, 1_500);
/// Time between the starts of consecutive faults.
const SCHEDULE_GAP_MS: (u64, u64) = (300, 2_500);
/// How long a crashed node stays down.
const CRASH_DOWN_MS: (u64, u64) = (100, 3_000);
/// How long a partition lasts.
const PARTITION_MS: (u64, u64) = (200, 4_000);
/// A power cut fires after this many more disk operations of the victim (a small redb
/// commit takes about six), so it usually tears a commit in the middle...
const POWER_CUT_AFTER_OPS: (u64, u64) = (0, 40);
/// ...and the machine is declared dead this long after the cut was armed, whether or not
/// the cut fired.
const POWER_CUT_WINDOW_MS: (u64, u64) = (1, 300);
/// How far a clock jumps, either way.
const CLOCK_JUMP_MS: (i64, i64) = (1_000, 86_400_000);
/// How long a crashed worker stays down.
const WORKER_DOWN_MS: (u64, u64) = (50, 4_000);
/// How long a worker pauses: from a hiccup to well past the 1.2 s lease.
const WORKER_PAUSE_MS: (u64, u64) = (200, 9_000);
/// How long the broker stays unreachable.
const BROKER_OUTAGE_MS: (u64, u64) = (100, 3_000);
/// Calls of one kind an injected broker failure hits.
const BROKER_FAILED_CALLS: (usize, usize) = (1, 5);
/// How long the checkpoint store stalls.
const STORE_STALL_MS: (u64, u64) = (100, 4_000);

/// Whom a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    /// The current leader (or some node, when there is none).
    Leader,
    /// Some node.
    Any,
}

/// One discrete fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Crash a node's process (the page cache survives) and restart it `down_ms` later.
    Crash {
        /// Whom it hits.
        victim: Victim,
        /// How long the node stays down.
        down_ms: u64,
    },
    /// Cut a node's power: its disk fails from the `cut_after_ops`-th operation on, the
    /// machine dies `window_ms` later losing unsynced writes as `mode` says, and restarts
    /// `down_ms` after that.
    PowerLoss {
        /// Whom it hits.
        victim: Victim,
        /// What becomes of unsynced writes.
        mode: CrashMode,
        /// Disk operations that still succeed after the cut is armed.
        cut_after_ops: u64,
        /// Time from arming the cut to the machine's death.
        window_ms: u64,
        /// How long the node stays down.
        down_ms: u64,
    },
    /// Cut a node off both ways for `heal_ms`.
    Isolate {
        /// Whom it cuts off.
        victim: Victim,
        /// How long the partition lasts.
        heal_ms: u64,
    },
    /// Block a node's outgoing (or incoming) links for `heal_ms`.
    OneWay {
        /// Whose links are cut.
        victim: Victim,
        /// True: it cannot send; false: it cannot receive.
        outgoing: bool,
        /// How long the partition lasts.
        heal_ms: u64,
    },
    /// Split the group into a minority and a majority for `heal_ms`.
    Split {
        /// How long the partition lasts.
        heal_ms: u64,
    },
    /// Step a node's wall clock.
    ClockJump {
        /// The step, negative for backwards.
        delta_ms: i64,
    },
    /// Kill a worker process and restart it `down_ms` later.
    WorkerCrash {
        /// How long the worker stays down.
        down_ms: u64,
    },
    /// Freeze a worker process for `pause_ms` (past its lease, it comes back a zombie).
    WorkerPause {
        /// How long it is frozen.
        pause_ms: u64,
    },
    /// Cut a worker off from every coordinator (not from the broker) for `heal_ms`.
    WorkerIsolate {
        /// How long the partition lasts.
        heal_ms: u64,
    },
    /// Make every broker call fail as unreachable for `outage_ms`.
    BrokerOutage {
        /// How long the outage lasts.
        outage_ms: u64,
    },
    /// Make the next `count` broker calls of one kind fail.
    BrokerCallsFail {
        /// Which kind of call (`pick` chooses it when the fault fires).
        count: usize,
        /// Timeouts (outcome unknown to the caller) rather than unavailability.
        timeout: bool,
    },
    /// The broker commits the next transaction but its reply is lost.
    BrokerCommitReplyLost,
    /// The broker expires an open transaction (its timeout passed).
    BrokerExpiresTransaction,
    /// The checkpoint store hangs for `stall_ms`.
    StoreStall {
        /// How long it hangs.
        stall_ms: u64,
    },
}

/// A fault and when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledFault {
    /// Simulated time it fires at.
    pub at_ms: u64,
    /// What it does.
    pub kind: FaultKind,
    /// Chooses among the candidate victims (or minority members) when the fault fires.
    pub pick: u64,
}

/// What one seed does with the enabled fault classes.
#[derive(Debug, Clone)]
pub struct Swarm {
    /// The network's misbehaviour during the fault phase.
    pub net: NetFaults,
    /// The discrete faults this seed may draw from.
    kinds: Vec<KindClass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KindClass {
    Crash,
    LostWrites,
    Isolate,
    OneWay,
    Split,
    ClockJump,
    WorkerCrash,
    WorkerPause,
    WorkerIsolate,
    Broker,
    StoreStall,
}

impl Swarm {
    /// Draws the classes and intensities of one seed from those `enabled`.
    pub fn draw(rng: &mut impl Rng, enabled: &FaultClasses, with_workers: bool) -> Self {
        let mut on = |enabled: bool| enabled && rng.gen_bool(SWARM_CLASS_PROBABILITY);
        let (crash, partition, drop, duplicate, delay, lost_writes, clock_jump) = (
            on(enabled.crash),
            on(enabled.partition),
            on(enabled.drop),
            on(enabled.duplicate),
            on(enabled.delay),
            on(enabled.lost_writes),
            on(enabled.clock_jump),
        );
        // Worker-side classes exist only when the run has workers (a coordinator-only run
        // draws exactly what it drew before they existed).
        let (worker_crash, zombie, broker, slow_disk) = if with_workers {
            (
                on(enabled.worker_crash),
                on(enabled.zombie),
                on(enabled.broker),
                on(enabled.slow_disk),
            )
        } else {
            (false, false, false, false)
        };
        let mut net = NetFaults::calm();
        net.delay_ms = (NET_DELAY_MIN_MS, rng.gen_range(NET_DELAY_MIN_MS..=5));
        if drop {
            net.drop_probability = rng.gen_range(0.005..0.08);
        }
        if duplicate {
            net.duplicate_probability = rng.gen_range(0.005..0.05);
        }
        if delay {
            net.slow_probability = rng.gen_range(0.01..0.1);
            net.slow_extra_ms_max = rng.gen_range(20..=150);
        }
        let mut kinds = Vec::new();
        if crash {
            kinds.push(KindClass::Crash);
        }
        if lost_writes {
            kinds.push(KindClass::LostWrites);
        }
        if partition {
            kinds.extend([KindClass::Isolate, KindClass::OneWay, KindClass::Split]);
        }
        if clock_jump {
            kinds.push(KindClass::ClockJump);
        }
        if worker_crash {
            kinds.push(KindClass::WorkerCrash);
        }
        if zombie {
            kinds.extend([KindClass::WorkerPause, KindClass::WorkerIsolate]);
        }
        if broker {
            kinds.push(KindClass::Broker);
        }
        if slow_disk {
            kinds.push(KindClass::StoreStall);
        }
        Swarm { net, kinds }
    }

    /// Draws the discrete faults of a fault phase `phase_ms` long.
    pub fn schedule(&self, rng: &mut impl Rng, phase_ms: u64) -> Vec<ScheduledFault> {
        let mut faults = Vec::new();
        if self.kinds.is_empty() {
            return faults;
        }
        let mut at_ms = rng.gen_range(SCHEDULE_START_MS.0..=SCHEDULE_START_MS.1);
        while at_ms < phase_ms {
            let class = self.kinds[rng.gen_range(0..self.kinds.len())];
            let kind = draw_kind(rng, class);
            faults.push(ScheduledFault {
                at_ms,
                kind,
                pick: rng.gen(),
            });
            at_ms += rng.gen_range(SCHEDULE_GAP_MS.0..=SCHEDULE_GAP_MS.1);
        }
        faults
    }
}

fn victim(rng: &mut impl Rng) -> Victim {
    if rng.gen_bool(0.5) {
        Victim::Leader
    } else {
        Victim::Any
    }
}

fn draw_kind(rng: &mut impl Rng, class: KindClass) -> FaultKind {
    let heal_ms = rng.gen_range(PARTITION_MS.0..=PARTITION_MS.1);
    match class {
        KindClass::Crash => FaultKind::Crash {
            victim: victim(rng),
            down_ms: rng.gen_range(CRASH_DOWN_MS.0..=CRASH_DOWN_MS.1),
        },
        KindClass::LostWrites => FaultKind::PowerLoss {
            victim: victim(rng),
            mode: if rng.gen_bool(0.5) {
                CrashMode::DropUnsynced
            } else {
                CrashMode::KeepUnsyncedPrefix
            },
            cut_after_ops: rng.gen_range(POWER_CUT_AFTER_OPS.0..=POWER_CUT_AFTER_OPS.1),
            window_ms: rng.gen_range(POWER_CUT_WINDOW_MS.0..=POWER_CUT_WINDOW_MS.1),
            down_ms: rng.gen_range(CRASH_DOWN_MS.0..=CRASH_DOWN_MS.1),
        },
        KindClass::Isolate => FaultKind::Isolate {
            victim: victim(rng),
            heal_ms,
        },
        KindClass::OneWay => FaultKind::OneWay {
            victim: victim(rng),
            outgoing: rng.gen_bool(0.5),
            heal_ms,
        },
        KindClass::Split => FaultKind::Split { heal_ms },
        KindClass::WorkerCrash => FaultKind::WorkerCrash {
            down_ms: rng.gen_range(WORKER_DOWN_MS.0..=WORKER_DOWN_MS.1),
        },
        KindClass::WorkerPause => FaultKind::WorkerPause {
            pause_ms: rng.gen_range(WORKER_PAUSE_MS.0..=WORKER_PAUSE_MS.1),
        },
        KindClass::WorkerIsolate => FaultKind::WorkerIsolate { heal_ms },
        KindClass::Broker => match rng.gen_range(0..4) {
            0 => FaultKind::BrokerOutage {
                outage_ms: rng.gen_range(BROKER_OUTAGE_MS.0..=BROKER_OUTAGE_MS.1),
            },
            1 => FaultKind::BrokerCallsFail {
                count: rng.gen_range(BROKER_FAILED_CALLS.0..=BROKER_FAILED_CALLS.1),
                timeout: rng.gen_bool(0.5),
            },
            2 => FaultKind::BrokerCommitReplyLost,
            _ => FaultKind::BrokerExpiresTransaction,
        },
        KindClass::StoreStall => FaultKind::StoreStall {
            stall_ms: rng.gen_range(STORE_STALL_MS.0..=STORE_STALL_MS.1),
        },
        KindClass::ClockJump => {
            let magnitude = rng.gen_range(CLOCK_JUMP_MS.0..=CLOCK_JUMP_MS.1);
            FaultKind::ClockJump {
                delta_ms: if rng.gen_bool(0.5) {
                    magnitude
                } else {
                    -magnitude
                },
            }
        }
    }
}

impl std::fmt::Display for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = &self.net;
        write!(
            f,
            "drop={:.3} dup={:.3} delay={}..{}ms slow={:.3}(+{}ms) faults={:?}",
            n.drop_probability,
            n.duplicate_probability,
            n.delay_ms.0,
            n.delay_ms.1,
            n.slow_probability,
            n.slow_extra_ms_max,
            self.kinds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn a_seed_draws_the_same_swarm_and_schedule() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let swarm = Swarm::draw(&mut rng, &FaultClasses::all(), true);
            (swarm.to_string(), swarm.schedule(&mut rng, 20_000))
        };
        assert_eq!(draw(5), draw(5));
        let (_, schedule) = draw(5);
        assert!(schedule.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }

    #[test]
    fn no_enabled_class_means_no_faults() {
        let mut rng = StdRng::seed_from_u64(1);
        let swarm = Swarm::draw(&mut rng, &FaultClasses::none(), true);
        assert!(swarm.schedule(&mut rng, 20_000).is_empty());
        assert_eq!(swarm.net.drop_probability, 0.0);
        assert_eq!(swarm.net.duplicate_probability, 0.0);
    }
}
