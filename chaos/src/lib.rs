//! detcd-chaos: the runtime-agnostic correctness kit.
//!
//! Owns the operation [`history`] clients record, the checkers that judge it, the [`watch`] and
//! [`lease`] records and their checkers, the fault vocabulary (nemesis plans) and the reports. It
//! never depends on the node's internals nor on an async runtime: the simulator (`detcd-sim`) and
//! real-process runs feed it the same histories.

pub mod checks;
pub mod history;
pub mod lease;
pub mod linearizability;
pub mod plan;
pub mod report;
pub mod rng;
pub mod watch;
pub mod workload;
