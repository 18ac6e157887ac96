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
        }
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
}

impl Swarm {
    /// Draws the classes and intensities of one seed from those `enabled`.
    pub fn draw(rng: &mut impl Rng, enabled: &FaultClasses) -> Self {
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
            let swarm = Swarm::draw(&mut rng, &FaultClasses::all());
            (swarm.to_string(), swarm.schedule(&mut rng, 20_000))
        };
        assert_eq!(draw(5), draw(5));
        let (_, schedule) = draw(5);
        assert!(schedule.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }

    #[test]
    fn no_enabled_class_means_no_faults() {
        let mut rng = StdRng::seed_from_u64(1);
        let swarm = Swarm::draw(&mut rng, &FaultClasses::none());
        assert!(swarm.schedule(&mut rng, 20_000).is_empty());
        assert_eq!(swarm.net.drop_probability, 0.0);
        assert_eq!(swarm.net.duplicate_probability, 0.0);
    }
}
