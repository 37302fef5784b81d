//! detcd-sim: the real node under the madsim simulator.
//!
//! Every member runs `detcd::server::run` — the binary's path: etcd flags → config → storage →
//! raft → api — on a simulated host with its own [`MemDisk`](detcd::storage::MemDisk); only the
//! runtime and disk seams differ from production. Clients on their own hosts speak the etcd gRPC
//! API and record every operation; a nemesis executes a seeded chaos plan; `detcd-chaos` judges
//! the history.
//!
//! - [`cluster`]: members, control host, kill/power loss/pause, partitions, status, final states.
//! - [`client`]: workload clients and the conservative outcome classification.
//! - [`watcher`]: watcher clients (resumable watch streams); [`lease_client`]: lease clients.
//! - [`nemesis`]: plan execution.
//! - [`scenario`]: one seed end to end; [`scenarios`]: the named scenarios; [`checks`]: the verdict.
//! - [`world`]: a fresh, fully seeded simulated world per seed.
//!
//! This crate only builds with `RUSTFLAGS="--cfg madsim --cfg tokio_unstable"`: without the first
//! there is no simulator, without the second no way to seed tokio (see [`world`]), and it refuses
//! to compile rather than run different code.

#[cfg(not(madsim))]
compile_error!("detcd-sim runs only in the simulator: build it with RUSTFLAGS=\"--cfg madsim --cfg tokio_unstable\"");

pub mod checks;
pub mod client;
pub mod cluster;
pub mod lease_client;
pub mod nemesis;
pub mod scenario;
pub mod scenarios;
pub mod watcher;
pub mod world;
