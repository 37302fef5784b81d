//! Storage: the disk seam and the write-ahead log.
//!
//! # What this module owns
//!
//! - [`Disk`] / [`DiskFile`]: THE disk seam. Every file access of the node goes through an
//!   `Arc<dyn Disk>`. Two implementations: [`RealDisk`] (std::fs, fdatasync) for production and
//!   [`MemDisk`] (in memory, tracks written vs durable bytes and directory entries, simulates power
//!   loss with [`MemDisk::crash`]) for tests and the simulator. The durability contract both honour
//!   is written on the [`Disk`] trait.
//! - [`Wal`]: a segmented, append-only, checksummed record log on one directory. It knows nothing
//!   about what the records mean (Raft entries, hard state, ...): its owner encodes them.
//! - [`StorageError`]: the one error type of this layer.
//!
//! # What it must never depend on
//!
//! Nothing of the node outside this module: no `crate::` paths (only `super::` inside), no async
//! runtime, no threads, no global randomness. It uses std, `crc32fast`, `thiserror` and `tracing`
//! only, so it builds alone and behaves identically on hardware and in the simulator. Which world
//! it runs in is decided by which [`Disk`] the caller passes, never by a `cfg` here.
//!
//! # Where invariants are checked
//!
//! - Input from disk is never trusted: [`Wal::open`] validates every segment header, record length
//!   (bounded by [`RECORD_BYTES_MAX`]) and checksum, and the contiguity of segment numbers. A torn
//!   tail of the last segment (a crash before fsync) is truncated with a warning; anything else is
//!   [`StorageError::Corrupt`] naming the file and offset. Decoding never panics.
//! - Internal invariants (segment numbers strictly increase, the durable length of a file never
//!   exceeds its length, the write buffer is empty after a sync) are `assert!`ed where they are
//!   established.
//! - After a failed write or sync the [`Wal`] is poisoned and refuses further use: what reached the
//!   disk is unknown, so only a restart and recovery from disk can say (the "fsyncgate" lesson).

mod disk;
mod error;
mod mem_disk;
mod segment;
mod wal;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests_crash;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests_wal;

pub use disk::{Disk, DiskFile, RandomFile, RealDisk};
pub use error::StorageError;
pub use mem_disk::{CrashPolicy, MemDisk};
pub use segment::{RECORD_BYTES_MAX, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES};
pub use wal::{
    read_record, RecordLoc, Segment, Wal, ROOM_BYTES, SEGMENT_BYTES_MAX, SEGMENT_BYTES_TARGET, WRITE_BUFFER_BYTES_MAX,
};
