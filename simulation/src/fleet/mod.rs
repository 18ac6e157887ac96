//! The worker fleet of a simulated run: real `weir_worker` supervisors and partition
//! actors (actix, on the simulation's one thread), over simulated seams — the in-memory
//! Kafka model, an in-memory checkpoint store and a control plane into the simulated
//! coordinator group — each behind its process's [`gate::Gate`], so the fault schedule
//! can crash, restart and pause (zombify) worker processes.

pub mod broker;
pub mod control;
pub mod gate;
pub mod store;
mod workers;

pub use workers::{SimFleet, WORKER_NODE_BASE};
