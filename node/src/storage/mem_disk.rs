//! [`MemDisk`]: an in-memory [`Disk`] that tracks written vs durable state and simulates power
//! loss, for tests and the simulator.
//!
//! # Model
//!
//! - A file is an inode: its bytes and the length of their durable prefix (`synced_len`).
//!   Appends grow the bytes; [`DiskFile::sync`] makes them all durable. Because files are
//!   append-only (plus [`Disk::truncate`], which is durable on return), the durable content is
//!   always a prefix of the current content, and one length describes it.
//! - A directory maps names to inodes twice: the current entries, which every call sees, and the
//!   durable entries, as of the last [`Disk::sync_dir`]. Creation, removal and rename change the
//!   current entries only.
//! - A file opened with [`Disk::open_random`] is positional: it keeps its durable image and the list
//!   of writes and length changes since its last sync; at a crash each of those is kept, dropped or
//!   (a write) torn at a 512-byte sector boundary, independently, in the order they were made.
//!   Such a file is only used through its [`RandomFile`] handle (not appended to nor truncated).
//! - Directories themselves are created durably ([`Disk::create_dir_all`] is durable on return by
//!   contract) and are never removed.
//! - [`MemDisk::crash`] is power loss: every directory with unsynced entry changes keeps them or
//!   reverts to its durable entries as a whole; inodes no longer named anywhere vanish; every
//!   surviving file keeps its durable prefix and, per the [`CrashPolicy`], none, all or a prefix of
//!   its unsynced bytes. Every file handle opened before the crash is dead afterwards: it errors.
//!
//! # Simplifications (each one documented where a real file system may differ)
//!
//! - A torn write keeps a *prefix* of the unsynced bytes; it never reorders sectors nor writes
//!   garbage. A real disk may also expose zeros past the durable length; the WAL tolerates that.
//! - A file replaced by [`Disk::create`] loses its old content at once (`synced_len` drops to 0);
//!   a real file system may still show the old content after a crash. Neither is safe to rely on.
//! - A directory's unsynced changes survive or revert together, per directory; a rename across
//!   two directories is therefore not atomic under [`CrashPolicy::Tear`] (unlike on journaling
//!   file systems). The node renames within one directory only.
//! - A removed file whose name is durable nowhere is dropped at once; writing to a handle still
//!   open on it errors (POSIX would let the write go to the unlinked inode).
//!
//! Determinism: the state lives in ordered maps and the crash asks the policy in a fixed order
//! (directories by path, then files by creation order), so the same seed gives the same disk.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{Disk, DiskFile, RandomFile, StorageError};

/// What a simulated power loss does to the bytes written since the last sync of each file (and
/// to each directory's entry changes since its last `sync_dir`).
pub enum CrashPolicy<'a> {
    /// Lose every unsynced byte and every unsynced directory change.
    DropUnsynced,
    /// Keep every unsynced byte and directory change, as if everything was flushed in time.
    KeepUnsynced,
    /// Tear: for each file with `n > 0` unsynced bytes, keep the first `keep_bytes_of(n)` of them
    /// (clamped to `n`). For each directory with unsynced entry changes, `keep_bytes_of(1)` is
    /// asked too: `1` keeps the current entries, `0` reverts to the durable ones. Calls happen in
    /// a fixed order, so a seeded function gives a deterministic crash; see
    /// [`CrashPolicy::tear_seeded`].
    Tear { keep_bytes_of: Box<dyn FnMut(u64) -> u64 + 'a> },
}

impl CrashPolicy<'static> {
    /// A [`CrashPolicy::Tear`] whose choices are drawn uniformly from `0..=n` by a small PRNG
    /// (SplitMix64) seeded with `seed`: the same seed tears the same way.
    pub fn tear_seeded(seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        CrashPolicy::Tear {
            keep_bytes_of: Box::new(move |unsynced_bytes| {
                let draw = rng.next_u64();
                match unsynced_bytes.checked_add(1) {
                    Some(choices) => draw % choices,
                    None => draw,
                }
            }),
        }
    }
}

impl fmt::Debug for CrashPolicy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashPolicy::DropUnsynced => f.write_str("DropUnsynced"),
            CrashPolicy::KeepUnsynced => f.write_str("KeepUnsynced"),
            CrashPolicy::Tear { .. } => f.write_str("Tear { .. }"),
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, seedable, good enough to choose tear points.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

type InodeId = u64;

struct Inode {
    data: Vec<u8>,
    /// Length of the durable prefix of `data` (append files).
    synced_len: usize,
    /// For a file opened with [`Disk::open_random`]: what is durable and what is not.
    random: Option<RandomJournal>,
}

/// The durable image of a positional file and the changes made to it since its last sync.
#[derive(Default)]
struct RandomJournal {
    durable: Vec<u8>,
    changes: Vec<Change>,
    /// The handle holding the file's lock, if any.
    locked_by: Option<u64>,
}

/// One unsynced change of a positional file.
enum Change {
    Write { offset: usize, data: Vec<u8> },
    SetLen(usize),
}

/// A torn write keeps whole sectors: the unit a disk writes atomically.
const SECTOR_BYTES: usize = 512;

impl Change {
    fn apply(&self, image: &mut Vec<u8>) {
        match self {
            Change::Write { offset, data } => write_into(image, *offset, data),
            Change::SetLen(len) => image.resize(*len, 0),
        }
    }
}

fn write_into(image: &mut Vec<u8>, offset: usize, data: &[u8]) {
    let end = offset + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset..end].copy_from_slice(data);
}

impl RandomJournal {
    /// Power loss: rebuilds the file from its durable image and, per `policy`, each unsynced
    /// change kept, dropped, or (a write) torn at a sector boundary.
    fn crash(&mut self, policy: &mut CrashPolicy<'_>) -> Vec<u8> {
        let mut image = std::mem::take(&mut self.durable);
        for change in self.changes.drain(..) {
            let (size, keep_all) = match &change {
                Change::Write { data, .. } => (data.len() as u64, data.len() as u64),
                Change::SetLen(_) => (1, 1),
            };
            let kept = match policy {
                CrashPolicy::DropUnsynced => 0,
                CrashPolicy::KeepUnsynced => keep_all,
                CrashPolicy::Tear { keep_bytes_of } => keep_bytes_of(size).min(size),
            };
            match change {
                _ if kept == keep_all => change.apply(&mut image),
                Change::Write { offset, data } if kept > 0 => {
                    // Keep the sectors entirely inside the kept prefix.
                    let cut = (offset + kept as usize) / SECTOR_BYTES * SECTOR_BYTES;
                    if cut > offset {
                        write_into(&mut image, offset, &data[..cut - offset]);
                    }
                }
                _ => {}
            }
        }
        self.locked_by = None;
        self.durable = image.clone();
        image
    }
}

#[derive(Default)]
struct MemDir {
    entries: BTreeMap<String, InodeId>,
    durable: BTreeMap<String, InodeId>,
}

#[derive(Default)]
struct MemState {
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    dirs: BTreeMap<PathBuf, MemDir>,
    inodes: BTreeMap<InodeId, Inode>,
    next_inode: InodeId,
    /// Numbers positional file handles, which own their file's lock.
    next_handle: u64,
}

/// An in-memory [`Disk`] that tracks written vs durable bytes and directory entries, and
/// simulates power loss with [`MemDisk::crash`]. Clones share the same disk. See the module doc
/// for the model and its simplifications.
#[derive(Clone, Default)]
pub struct MemDisk {
    state: Arc<Mutex<MemState>>,
}

impl fmt::Debug for MemDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemDisk")
            .field("generation", &state.generation)
            .field("dirs", &state.dirs.len())
            .field("files", &state.inodes.len())
            .finish()
    }
}

fn io_error(path: &Path, kind: io::ErrorKind, what: &str) -> StorageError {
    StorageError::io(path, io::Error::new(kind, what.to_string()))
}

/// Splits a file path into its parent directory key and its name.
fn split(path: &Path) -> Result<(PathBuf, String), StorageError> {
    let name = path.file_name().ok_or_else(|| io_error(path, io::ErrorKind::InvalidInput, "path has no file name"))?;
    let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
    Ok((parent, name.to_string_lossy().into_owned()))
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        // A panic while holding the lock leaves the state consistent enough for a test to report.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Simulates power loss: see [`CrashPolicy`] and the module doc. Every file handle opened
    /// before the crash errors from now on; the disk itself stays usable (the "reboot").
    pub fn crash(&self, mut policy: CrashPolicy<'_>) {
        let mut state = self.lock();
        state.generation += 1;
        for dir in state.dirs.values_mut() {
            if dir.entries == dir.durable {
                continue;
            }
            let keep = match &mut policy {
                CrashPolicy::DropUnsynced => false,
                CrashPolicy::KeepUnsynced => true,
                CrashPolicy::Tear { keep_bytes_of } => keep_bytes_of(1) >= 1,
            };
            if keep {
                dir.durable = dir.entries.clone();
            } else {
                dir.entries = dir.durable.clone();
            }
        }
        state.collect_garbage();
        for inode in state.inodes.values_mut() {
            if let Some(journal) = &mut inode.random {
                inode.data = journal.crash(&mut policy);
                continue;
            }
            assert!(inode.synced_len <= inode.data.len(), "durable past the end");
            let unsynced = (inode.data.len() - inode.synced_len) as u64;
            if unsynced == 0 {
                continue;
            }
            let kept = match &mut policy {
                CrashPolicy::DropUnsynced => 0,
                CrashPolicy::KeepUnsynced => unsynced,
                CrashPolicy::Tear { keep_bytes_of } => keep_bytes_of(unsynced).min(unsynced),
            };
            // `kept <= unsynced`, which is a `usize`, so the cast is lossless.
            inode.data.truncate(inode.synced_len + kept as usize);
            inode.synced_len = inode.data.len();
        }
    }

    /// The durable length of file `path`, or `None` if no file is named so.
    pub fn synced_len(&self, path: &Path) -> Option<u64> {
        let state = self.lock();
        let id = state.lookup(path).ok()?;
        state.inodes.get(&id).map(|inode| match &inode.random {
            Some(journal) => journal.durable.len() as u64,
            None => inode.synced_len as u64,
        })
    }

    /// The names of directory `dir` that would survive a crash (as of its last `sync_dir`), or
    /// `None` if there is no such directory.
    pub fn durable_entries(&self, dir: &Path) -> Option<Vec<String>> {
        let state = self.lock();
        let dir = state.dirs.get(dir)?;
        Some(dir.durable.keys().cloned().collect())
    }

    fn open_file(&self, path: &Path, mode: OpenMode) -> Result<Box<dyn DiskFile>, StorageError> {
        let mut state = self.lock();
        if state.dirs.contains_key(path) {
            return Err(io_error(path, io::ErrorKind::AlreadyExists, "is a directory"));
        }
        let (parent, name) = split(path)?;
        let existing = state.dir(&parent)?.entries.get(&name).copied();
        let inode = match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io_error(path, io::ErrorKind::AlreadyExists, "file exists"));
            }
            (Some(id), OpenMode::Append) => id,
            (Some(id), OpenMode::Replace) => {
                let inode = state.inode_mut(path, id)?;
                inode.data.clear();
                inode.synced_len = 0;
                // An append file from now on: its earlier positional image is gone.
                inode.random = None;
                id
            }
            (None, _) => {
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode { data: Vec::new(), synced_len: 0, random: None });
                state.dir_mut(&parent)?.entries.insert(name, id);
                id
            }
        };
        Ok(Box::new(MemFile {
            state: Arc::clone(&self.state),
            inode,
            generation: state.generation,
            path: path.to_path_buf(),
        }))
    }
}

#[derive(Clone, Copy)]
enum OpenMode {
    Append,
    Replace,
    CreateNew,
}

impl MemState {
    fn dir(&self, path: &Path) -> Result<&MemDir, StorageError> {
        self.dirs.get(path).ok_or_else(|| io_error(path, io::ErrorKind::NotFound, "no such directory"))
    }

    fn dir_mut(&mut self, path: &Path) -> Result<&mut MemDir, StorageError> {
        self.dirs.get_mut(path).ok_or_else(|| io_error(path, io::ErrorKind::NotFound, "no such directory"))
    }

    fn lookup(&self, path: &Path) -> Result<InodeId, StorageError> {
        let (parent, name) = split(path)?;
        self.dir(&parent)?
            .entries
            .get(&name)
            .copied()
            .ok_or_else(|| io_error(path, io::ErrorKind::NotFound, "no such file"))
    }

    /// The inode a handle opened in `generation` refers to; an error if the disk crashed since.
    fn live_inode(&mut self, path: &Path, id: InodeId, generation: u64) -> Result<&mut Inode, StorageError> {
        if self.generation != generation {
            return Err(io_error(
                path,
                io::ErrorKind::Other,
                "stale file handle: the disk crashed since it was opened",
            ));
        }
        self.inode_mut(path, id)
    }

    fn inode_mut(&mut self, path: &Path, id: InodeId) -> Result<&mut Inode, StorageError> {
        self.inodes.get_mut(&id).ok_or_else(|| io_error(path, io::ErrorKind::NotFound, "file was removed"))
    }

    /// Drops every inode that no current or durable directory entry names.
    fn collect_garbage(&mut self) {
        let dirs = &self.dirs;
        self.inodes.retain(|id, _| {
            dirs.values().any(|dir| {
                dir.entries.values().any(|named| named == id) || dir.durable.values().any(|named| named == id)
            })
        });
    }
}

impl Disk for MemDisk {
    fn create_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        let mut state = self.lock();
        for dir in path.ancestors() {
            if state.dirs.contains_key(dir) {
                continue;
            }
            if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
                let name = name.to_string_lossy();
                let is_file = state.dirs.get(parent).is_some_and(|p| p.entries.contains_key(name.as_ref()));
                if is_file {
                    return Err(io_error(dir, io::ErrorKind::AlreadyExists, "is a file"));
                }
            }
            state.dirs.insert(dir.to_path_buf(), MemDir::default());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>, StorageError> {
        let state = self.lock();
        let mut names: Vec<String> = state.dir(path)?.entries.keys().cloned().collect();
        for sub in state.dirs.keys() {
            if sub.parent() == Some(path) {
                if let Some(name) = sub.file_name() {
                    names.push(name.to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> Result<bool, StorageError> {
        let state = self.lock();
        Ok(state.dirs.contains_key(path) || state.lookup(path).is_ok())
    }

    fn read_all(&self, path: &Path) -> Result<Vec<u8>, StorageError> {
        let mut state = self.lock();
        let id = state.lookup(path)?;
        Ok(state.inode_mut(path, id)?.data.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut state = self.lock();
        let id = state.lookup(path)?;
        let data = &state.inode_mut(path, id)?.data;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start.checked_add(len).and_then(|end| data.get(start..end)) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Err(io_error(path, io::ErrorKind::UnexpectedEof, "read past the end of the file")),
        }
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError> {
        self.open_file(path, OpenMode::Append)
    }

    fn create(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError> {
        self.open_file(path, OpenMode::Replace)
    }

    fn create_new(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError> {
        self.open_file(path, OpenMode::CreateNew)
    }

    fn remove_file(&self, path: &Path) -> Result<(), StorageError> {
        let mut state = self.lock();
        let (parent, name) = split(path)?;
        if state.dir_mut(&parent)?.entries.remove(&name).is_none() {
            return Err(io_error(path, io::ErrorKind::NotFound, "no such file"));
        }
        state.collect_garbage();
        Ok(())
    }

    fn truncate(&self, path: &Path, len_bytes: u64) -> Result<(), StorageError> {
        let mut state = self.lock();
        let id = state.lookup(path)?;
        let len =
            usize::try_from(len_bytes).map_err(|_| io_error(path, io::ErrorKind::InvalidInput, "length too large"))?;
        let inode = state.inode_mut(path, id)?;
        inode.data.resize(len, 0);
        inode.synced_len = len;
        if let Some(journal) = &mut inode.random {
            // Durable on return, with every earlier change: the whole file is synced.
            journal.changes.clear();
            journal.durable = inode.data.clone();
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        let mut state = self.lock();
        let id = state.lookup(from)?;
        let (to_parent, to_name) = split(to)?;
        if state.dirs.contains_key(to) {
            return Err(io_error(to, io::ErrorKind::AlreadyExists, "is a directory"));
        }
        state.dir(&to_parent)?;
        let (from_parent, from_name) = split(from)?;
        state.dir_mut(&from_parent)?.entries.remove(&from_name);
        state.dir_mut(&to_parent)?.entries.insert(to_name, id);
        state.collect_garbage();
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> Result<(), StorageError> {
        let mut state = self.lock();
        let dir = state.dir_mut(path)?;
        dir.durable = dir.entries.clone();
        state.collect_garbage();
        Ok(())
    }

    fn open_random(&self, path: &Path) -> Result<Box<dyn RandomFile>, StorageError> {
        self.open_positional_file(path, true)
    }

    fn open_positional(&self, path: &Path) -> Result<Box<dyn RandomFile>, StorageError> {
        self.open_positional_file(path, false)
    }
}

impl MemDisk {
    /// [`Disk::open_random`] (`lock`) or [`Disk::open_positional`].
    fn open_positional_file(&self, path: &Path, lock: bool) -> Result<Box<dyn RandomFile>, StorageError> {
        let handle = self.open_file(path, OpenMode::Append)?;
        let mut state = self.lock();
        let id = state.lookup(path)?;
        let handle_id = state.next_handle;
        state.next_handle += 1;
        let inode = state.inode_mut(path, id)?;
        if inode.random.is_none() {
            assert_eq!(inode.synced_len, inode.data.len(), "a positional file starts out durable");
            inode.random = Some(RandomJournal { durable: inode.data.clone(), ..RandomJournal::default() });
        }
        let journal = inode.random.as_mut().ok_or_else(|| io_error(path, io::ErrorKind::Other, "not positional"))?;
        if lock {
            if journal.locked_by.is_some() {
                return Err(io_error(path, io::ErrorKind::WouldBlock, "the file is in use by another process"));
            }
            journal.locked_by = Some(handle_id);
        }
        drop(handle);
        Ok(Box::new(MemRandomFile {
            state: Arc::clone(&self.state),
            inode: id,
            handle: handle_id,
            generation: state.generation,
            path: path.to_path_buf(),
        }))
    }
}

/// A positional file handle of a [`MemDisk`]; dead after a crash, unlocks its file when dropped.
struct MemRandomFile {
    state: Arc<Mutex<MemState>>,
    inode: InodeId,
    handle: u64,
    generation: u64,
    path: PathBuf,
}

impl fmt::Debug for MemRandomFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemRandomFile").field("path", &self.path).finish()
    }
}

impl MemRandomFile {
    fn with_file<T>(&self, f: impl FnOnce(&mut Vec<u8>, &mut RandomJournal) -> T) -> Result<T, StorageError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let inode = state.live_inode(&self.path, self.inode, self.generation)?;
        match &mut inode.random {
            Some(journal) => Ok(f(&mut inode.data, journal)),
            None => Err(io_error(&self.path, io::ErrorKind::Other, "not a positional file")),
        }
    }
}

impl Drop for MemRandomFile {
    fn drop(&mut self) {
        let _ = self.with_file(|_, journal| {
            if journal.locked_by == Some(self.handle) {
                journal.locked_by = None;
            }
        });
    }
}

impl RandomFile for MemRandomFile {
    fn len(&self) -> Result<u64, StorageError> {
        self.with_file(|data, _| data.len() as u64)
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        let path = &self.path;
        self.with_file(|data, _| {
            let start = usize::try_from(offset).ok().filter(|s| s.saturating_add(out.len()) <= data.len());
            match start {
                Some(start) => {
                    out.copy_from_slice(&data[start..start + out.len()]);
                    Ok(())
                }
                None => Err(io_error(path, io::ErrorKind::UnexpectedEof, "read past the end of the file")),
            }
        })?
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let offset = usize::try_from(offset)
            .map_err(|_| io_error(&self.path, io::ErrorKind::InvalidInput, "offset too large"))?;
        self.with_file(|data, journal| {
            write_into(data, offset, bytes);
            journal.changes.push(Change::Write { offset, data: bytes.to_vec() });
        })
    }

    fn set_len(&self, len_bytes: u64) -> Result<(), StorageError> {
        let len = usize::try_from(len_bytes)
            .map_err(|_| io_error(&self.path, io::ErrorKind::InvalidInput, "length too large"))?;
        self.with_file(|data, journal| {
            data.resize(len, 0);
            journal.changes.push(Change::SetLen(len));
        })
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.with_file(|_, journal| {
            let mut durable = std::mem::take(&mut journal.durable);
            for change in journal.changes.drain(..) {
                change.apply(&mut durable);
            }
            journal.durable = durable;
        })
    }
}

/// A file handle of a [`MemDisk`]; dead after a crash.
struct MemFile {
    state: Arc<Mutex<MemState>>,
    inode: InodeId,
    generation: u64,
    path: PathBuf,
}

impl MemFile {
    fn with_inode<T>(&self, f: impl FnOnce(&mut Inode) -> T) -> Result<T, StorageError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let inode = state.live_inode(&self.path, self.inode, self.generation)?;
        Ok(f(inode))
    }
}

impl DiskFile for MemFile {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), StorageError> {
        self.with_inode(|inode| inode.data.extend_from_slice(buf))
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.with_inode(|inode| inode.synced_len = inode.data.len())
    }

    fn len(&self) -> Result<u64, StorageError> {
        self.with_inode(|inode| inode.data.len() as u64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn write_file(disk: &MemDisk, path: &str, bytes: &[u8], sync: bool) {
        let mut file = disk.open_append(Path::new(path)).unwrap();
        file.write_all(bytes).unwrap();
        if sync {
            file.sync().unwrap();
        }
    }

    fn disk_with_dir() -> MemDisk {
        let disk = MemDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk
    }

    #[test]
    fn crash_drop_unsynced_keeps_only_the_synced_prefix() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/f", b"durable", true);
        disk.sync_dir(Path::new("/d")).unwrap();
        write_file(&disk, "/d/f", b"-volatile", false);
        disk.crash(CrashPolicy::DropUnsynced);
        assert_eq!(disk.read_all(Path::new("/d/f")).unwrap(), b"durable");
    }

    #[test]
    fn crash_keep_unsynced_keeps_everything_and_makes_it_durable() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/f", b"abc", false);
        disk.crash(CrashPolicy::KeepUnsynced);
        assert_eq!(disk.read_all(Path::new("/d/f")).unwrap(), b"abc");
        assert_eq!(disk.synced_len(Path::new("/d/f")), Some(3));
        assert_eq!(disk.durable_entries(Path::new("/d")).unwrap(), vec!["f"]);
    }

    #[test]
    fn crash_tear_keeps_the_chosen_prefix_of_unsynced_bytes() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/f", b"ab", true);
        disk.sync_dir(Path::new("/d")).unwrap();
        write_file(&disk, "/d/f", b"cdef", false);
        let mut asked = Vec::new();
        disk.crash(CrashPolicy::Tear {
            keep_bytes_of: Box::new(|n| {
                asked.push(n);
                1
            }),
        });
        assert_eq!(asked, vec![4]);
        assert_eq!(disk.read_all(Path::new("/d/f")).unwrap(), b"abc");
    }

    #[test]
    fn crash_drops_a_file_whose_creation_was_never_synced_in_its_directory() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/f", b"synced data, unsynced name", true);
        disk.crash(CrashPolicy::DropUnsynced);
        assert!(!disk.exists(Path::new("/d/f")).unwrap());
        assert!(disk.list_dir(Path::new("/d")).unwrap().is_empty());
    }

    #[test]
    fn crash_restores_a_removed_file_whose_removal_was_never_synced() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/f", b"x", true);
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.remove_file(Path::new("/d/f")).unwrap();
        assert!(!disk.exists(Path::new("/d/f")).unwrap());
        disk.crash(CrashPolicy::DropUnsynced);
        assert_eq!(disk.read_all(Path::new("/d/f")).unwrap(), b"x");
    }

    #[test]
    fn crash_reverts_an_unsynced_rename_to_the_old_name() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/tmp", b"new", true);
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.rename(Path::new("/d/tmp"), Path::new("/d/final")).unwrap();
        disk.crash(CrashPolicy::DropUnsynced);
        assert_eq!(disk.list_dir(Path::new("/d")).unwrap(), vec!["tmp"]);
        disk.rename(Path::new("/d/tmp"), Path::new("/d/final")).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.crash(CrashPolicy::DropUnsynced);
        assert_eq!(disk.list_dir(Path::new("/d")).unwrap(), vec!["final"]);
        assert_eq!(disk.read_all(Path::new("/d/final")).unwrap(), b"new");
    }

    #[test]
    fn handles_opened_before_a_crash_are_dead_after_it() {
        let disk = disk_with_dir();
        let mut file = disk.open_append(Path::new("/d/f")).unwrap();
        disk.crash(CrashPolicy::KeepUnsynced);
        assert!(matches!(file.write_all(b"late"), Err(StorageError::Io { .. })));
        assert!(file.sync().is_err());
    }

    #[test]
    fn truncate_is_durable_on_return() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/f", b"abcdef", false);
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.truncate(Path::new("/d/f"), 4).unwrap();
        disk.crash(CrashPolicy::DropUnsynced);
        assert_eq!(disk.read_all(Path::new("/d/f")).unwrap(), b"abcd");
    }

    #[test]
    fn truncate_of_a_positional_file_is_durable_with_its_earlier_writes() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/f", b"", true);
        disk.sync_dir(Path::new("/d")).unwrap();
        let file = disk.open_random(Path::new("/d/f")).unwrap();
        file.write_at(0, b"abcdef").unwrap();
        drop(file);
        disk.truncate(Path::new("/d/f"), 4).unwrap();
        assert_eq!(disk.synced_len(Path::new("/d/f")), Some(4));
        disk.crash(CrashPolicy::DropUnsynced);
        assert_eq!(disk.read_all(Path::new("/d/f")).unwrap(), b"abcd");
    }

    #[test]
    fn create_new_refuses_an_existing_file() {
        let disk = disk_with_dir();
        write_file(&disk, "/d/f", b"", false);
        let err = disk.create_new(Path::new("/d/f")).err().unwrap();
        match err {
            StorageError::Io { source, .. } => {
                assert_eq!(source.kind(), io::ErrorKind::AlreadyExists)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn list_dir_names_files_and_subdirectories_sorted() {
        let disk = disk_with_dir();
        disk.create_dir_all(Path::new("/d/sub")).unwrap();
        write_file(&disk, "/d/b", b"", false);
        write_file(&disk, "/d/a", b"", false);
        assert_eq!(disk.list_dir(Path::new("/d")).unwrap(), vec!["a", "b", "sub"]);
    }

    #[test]
    fn seeded_tear_is_deterministic() {
        let crash_with = |seed| {
            let disk = disk_with_dir();
            for i in 0..8 {
                write_file(&disk, &format!("/d/f{i}"), &[7; 100], false);
            }
            disk.sync_dir(Path::new("/d")).unwrap();
            disk.crash(CrashPolicy::tear_seeded(seed));
            (0..8).map(|i| disk.read_all(Path::new(&format!("/d/f{i}"))).unwrap().len()).collect::<Vec<_>>()
        };
        assert_eq!(crash_with(42), crash_with(42));
        assert_ne!(crash_with(42), crash_with(43));
    }
}
