//! detcd: an etcd-compatible, Raft-replicated key-value store.
//!
//! The crate is the node: `config` -> `storage` -> `mvcc` -> `lease`, `watch` -> `raft` -> `api`, each module owning one
//! thing (see `shared/DESIGN.md`). Dependencies only point down that list; `runtime` is the seam
//! every module uses for time, tasks and randomness, and together with `storage` it is the only
//! place that knows whether it runs on hardware or under the madsim simulator.

pub mod api;
pub mod config;
pub mod lease;
pub mod mvcc;
pub mod planted;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod storage;
pub mod watch;
