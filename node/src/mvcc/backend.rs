//! redb on the disk seam: [`DiskBackend`] adapts a positional [`RandomFile`] of a [`Disk`] to
//! redb's `StorageBackend`, so the database file gets the same treatment as the WAL — real files
//! with fsync on hardware, the crash-simulating disk in tests and the simulator.

use std::io;
use std::path::Path;

use redb::{Database, StorageBackend};

use crate::storage::{Disk, RandomFile, StorageError};

/// redb's storage backend over a [`RandomFile`]. The file's lock (taken by
/// [`Disk::open_random`]) keeps a second process off the database.
#[derive(Debug)]
pub struct DiskBackend {
    file: Box<dyn RandomFile>,
}

fn to_io(e: StorageError) -> io::Error {
    match e {
        StorageError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

impl StorageBackend for DiskBackend {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len().map_err(to_io)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read_at(offset, out).map_err(to_io)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len).map_err(to_io)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.file.sync().map_err(to_io)
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.file.write_at(offset, data).map_err(to_io)
    }
}

/// Memory redb may hold for pages: a read cache, and up to half of it for pages written by
/// commits not yet flushed to the file. redb's default (1 GiB) let non-durable commits — every
/// apply — keep every page they wrote in memory until the next snapshot: 100,000 puts of 256-byte
/// values held ~45 MiB per member. Beyond this budget redb writes pages out to the file (without
/// fsync; durability is unchanged: only a durable commit is durable).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Opens (creating if missing, with its directory) the redb database at `path` on `disk`.
pub fn open_database(disk: &dyn Disk, path: &Path) -> Result<Database, String> {
    if let Some(parent) = path.parent() {
        disk.create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let fresh = !disk.exists(path).map_err(|e| e.to_string())?;
    let file = disk.open_random(path).map_err(|e| e.to_string())?;
    if fresh {
        if let Some(parent) = path.parent() {
            disk.sync_dir(parent).map_err(|e| e.to_string())?;
        }
    }
    Database::builder().set_cache_size(CACHE_BYTES).create_with_backend(DiskBackend { file }).map_err(|e| e.to_string())
}
