//! [`SimOptions`]: what a run simulates, and the `weir sim` command that replays it.

use std::collections::BTreeSet;

use crate::faults::FaultClasses;

/// What a run simulates.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Coordinators in the group (3 or 5; at most `cluster::CLUSTER_NODES_MAX`).
    pub coordinators: usize,
    /// The fault classes a seed may draw from.
    pub faults: FaultClasses,
    /// Simulated length of the safety phase.
    pub fault_phase_ms: u64,
    /// Simulated time the healed group gets to accept a write, and then again to converge.
    pub liveness_deadline_ms: u64,
    /// Concurrent clients writing during the safety phase.
    pub clients: usize,
    /// A client thinks for up to this long between writes.
    pub client_think_ms_max: u64,
    /// A bug to plant in the coordinator or worker code for this run (the simulation's
    /// self-test).
    pub plant_bug: Option<weir_coordinator::bugs::PlantedBug>,
    /// Worker processes (0: a coordinator group alone, with no jobs).
    pub workers: usize,
    /// Jobs the run submits and feeds (when it has workers).
    pub jobs: usize,
    /// Simulated time the healed fleet gets to commit every job's whole input.
    pub catch_up_deadline_ms: u64,
    /// Scheduled faults to leave out, by their index in the seed's schedule (shrinking a
    /// failing seed to the fewest faults that still fail).
    pub skip_faults: BTreeSet<usize>,
}

impl SimOptions {
    /// The `weir sim` command that runs `seed` with these options.
    pub fn replay_command(&self, seed: u64) -> String {
        let defaults = SimOptions::default();
        let mut cmd = format!("weir sim --seed {seed}");
        if self.coordinators != defaults.coordinators {
            cmd.push_str(&format!(" --coordinators {}", self.coordinators));
        }
        if self.workers != defaults.workers {
            cmd.push_str(&format!(" --workers {}", self.workers));
        }
        if self.jobs != defaults.jobs {
            cmd.push_str(&format!(" --jobs {}", self.jobs));
        }
        if self.fault_phase_ms != defaults.fault_phase_ms {
            cmd.push_str(&format!(" --fault-phase-ms {}", self.fault_phase_ms));
        }
        if self.faults != defaults.faults {
            let names = self.faults.names();
            let list = if names.is_empty() {
                "none".to_string()
            } else {
                names.join(",")
            };
            cmd.push_str(&format!(" --faults {list}"));
        }
        if let Some(bug) = self.plant_bug {
            cmd.push_str(&format!(" --plant-bug {}", bug.name()));
        }
        if !self.skip_faults.is_empty() {
            let list: Vec<String> = self.skip_faults.iter().map(|i| i.to_string()).collect();
            cmd.push_str(&format!(" --skip-faults {}", list.join(",")));
        }
        cmd
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            coordinators: 3,
            faults: FaultClasses::all(),
            fault_phase_ms: 20_000,
            liveness_deadline_ms: 10_000,
            clients: 3,
            client_think_ms_max: 100,
            plant_bug: None,
            workers: 3,
            jobs: 2,
            catch_up_deadline_ms: 30_000,
            skip_faults: BTreeSet::new(),
        }
    }
}
