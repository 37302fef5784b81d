//! The disk seam: the [`Disk`] and [`DiskFile`] traits and the real, std::fs-backed [`RealDisk`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StorageError;

/// The file system as the node sees it. Every file access of the node goes through one
/// `Arc<dyn Disk>`: [`RealDisk`] on hardware, [`MemDisk`](super::MemDisk) in tests and in the
/// simulator.
///
/// # Durability contract
///
/// Implementations guarantee, and callers may rely on, exactly this:
///
/// 1. **File contents.** Bytes appended through a [`DiskFile`] are durable once
///    [`DiskFile::sync`] on that file returns `Ok`. Until then a crash may drop them, keep them,
///    or keep only a prefix of them (a torn write). Reads ([`Disk::read_all`]) see every byte
///    written so far, durable or not, as a page cache would.
/// 2. **Directory entries.** Creating a file ([`Disk::open_append`] of a missing file,
///    [`Disk::create`], [`Disk::create_new`]), removing it ([`Disk::remove_file`]) and renaming it
///    ([`Disk::rename`]) change the directory immediately for every reader, but the change is
///    durable only once [`Disk::sync_dir`] on the parent directory returns `Ok` (for a rename
///    across directories, on both parents). Until then a crash may undo it. Syncing a file does
///    NOT make its name durable, and syncing the directory does NOT make the file's bytes durable.
///    A rename replaces its target atomically: after a crash, the target name refers to the old
///    file or the new one, never to a mix.
/// 3. **Durable on return.** [`Disk::create_dir_all`] (every directory it creates, with its entry
///    in its parent) and [`Disk::truncate`] (the new length and all the file's bytes) are durable
///    when they return `Ok`: implementations sync what is needed.
/// 4. **Failed syncs.** After a `sync` or `sync_dir` returns an error, what is durable is unknown;
///    retrying and getting `Ok` does not prove the earlier bytes reached the disk. Callers must
///    treat such an error as fatal for the data involved (the [`Wal`](super::Wal) poisons itself).
/// 5. **Ordering.** Nothing is promised about the order in which unsynced changes to different
///    files, or to a file and a directory, reach the disk.
///
/// Paths are used as given (no canonicalisation); every error is [`StorageError::Io`] naming the
/// path involved.
pub trait Disk: Send + Sync + 'static {
    /// Creates `path` and every missing ancestor. Durable when it returns (rule 3).
    fn create_dir_all(&self, path: &Path) -> Result<(), StorageError>;

    /// The names (not paths) of the entries of directory `path`, files and subdirectories,
    /// sorted bytewise.
    fn list_dir(&self, path: &Path) -> Result<Vec<String>, StorageError>;

    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> Result<bool, StorageError>;

    /// The whole current content of file `path`, durable or not (rule 1).
    fn read_all(&self, path: &Path) -> Result<Vec<u8>, StorageError>;

    /// `len` bytes of file `path` from `offset`, durable or not (rule 1); fails if the file is
    /// shorter.
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError>;

    /// Opens file `path` for appending, creating it empty if missing (the creation is durable only
    /// after `sync_dir` of the parent, rule 2). Writes go to the end of the file.
    fn open_append(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError>;

    /// Creates file `path` empty, replacing the content of an existing file, and opens it for
    /// appending. What a crash leaves of a replaced file before `sync` is unspecified: to replace
    /// a file safely, write a new one, sync it, [`rename`](Disk::rename) it over, then `sync_dir`.
    fn create(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError>;

    /// Creates file `path` empty and opens it for appending; fails (`AlreadyExists`) if a file or
    /// directory is already there.
    fn create_new(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError>;

    /// Removes file `path` (durable after `sync_dir` of the parent, rule 2).
    fn remove_file(&self, path: &Path) -> Result<(), StorageError>;

    /// Sets the length of file `path` to `len_bytes` (cutting it, or extending it with zeros) and
    /// makes the whole file durable before returning (rule 3).
    fn truncate(&self, path: &Path, len_bytes: u64) -> Result<(), StorageError>;

    /// Renames file `from` to `to`, atomically replacing any file at `to` (durable after
    /// `sync_dir` of the parent(s), rule 2).
    fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError>;

    /// Makes every entry change of directory `path` durable (rule 2).
    fn sync_dir(&self, path: &Path) -> Result<(), StorageError>;

    /// Opens file `path` for positional reads and writes, creating it empty if missing (the
    /// creation is durable only after `sync_dir` of the parent, rule 2). The file is locked for
    /// this handle: a second open of the same file, here or in another process, fails until the
    /// handle is dropped.
    fn open_random(&self, path: &Path) -> Result<Box<dyn RandomFile>, StorageError>;

    /// Opens file `path` for positional reads and writes like [`Disk::open_random`], without
    /// locking it: for a file whose owner is already exclusive (a WAL segment, in a directory the
    /// member's locked database guards), and which a restarted owner in the same process may
    /// reopen before the old handle is gone.
    fn open_positional(&self, path: &Path) -> Result<Box<dyn RandomFile>, StorageError>;
}

/// An open file of a [`Disk`] with positional access (the database file).
///
/// Rule 1 of the [`Disk`] contract holds per write: every [`RandomFile::write_at`] and
/// [`RandomFile::set_len`] since the last [`RandomFile::sync`] may, at a crash, be lost, kept, or
/// (for a write) torn at a 512-byte sector boundary, each independently of the others.
pub trait RandomFile: Send + Sync + fmt::Debug + 'static {
    /// The current length of the file in bytes, durable or not.
    fn len(&self) -> Result<u64, StorageError>;

    /// Whether the file is empty.
    fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.len()? == 0)
    }

    /// Fills `out` from `offset`; an error if that reaches past the end of the file.
    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), StorageError>;

    /// Writes all of `data` at `offset`, extending the file if needed (with zeros in any gap).
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StorageError>;

    /// Sets the length of the file, cutting it or extending it with zeros.
    fn set_len(&self, len_bytes: u64) -> Result<(), StorageError>;

    /// Makes every write and length change so far durable (fdatasync).
    fn sync(&self) -> Result<(), StorageError>;
}

/// An open file of a [`Disk`], append-only.
pub trait DiskFile: Send + 'static {
    /// Appends all of `buf` at the end of the file. Not durable until [`DiskFile::sync`].
    fn write_all(&mut self, buf: &[u8]) -> Result<(), StorageError>;

    /// Makes every byte written so far durable (fdatasync), with the file length.
    fn sync(&mut self) -> Result<(), StorageError>;

    /// The current length of the file in bytes, durable or not.
    fn len(&self) -> Result<u64, StorageError>;

    /// Whether the file is empty.
    fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.len()? == 0)
    }
}

/// The real file system, through `std::fs`. `sync` is `fdatasync`; `sync_dir` opens the directory
/// and fsyncs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealDisk;

impl RealDisk {
    /// The real disk.
    pub fn new() -> Self {
        RealDisk
    }

    fn open_with(path: &Path, options: &OpenOptions) -> Result<Box<dyn DiskFile>, StorageError> {
        let file = options.open(path).map_err(|e| StorageError::io(path, e))?;
        Ok(Box::new(RealFile { file, path: path.to_path_buf() }))
    }
}

/// The directory to fsync for an entry of `path`: its parent, `.` for a bare relative name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

impl Disk for RealDisk {
    fn create_dir_all(&self, path: &Path) -> Result<(), StorageError> {
        // Remember which directories are new: each one's entry in its parent must be synced.
        let mut created: Vec<&Path> = Vec::new();
        let mut missing = Some(path);
        while let Some(dir) = missing {
            if dir.as_os_str().is_empty() || dir.exists() {
                break;
            }
            created.push(dir);
            missing = dir.parent();
        }
        fs::create_dir_all(path).map_err(|e| StorageError::io(path, e))?;
        // Top-most first, so each directory's entry is durable before its children's.
        for dir in created.iter().rev() {
            self.sync_dir(parent_dir(dir))?;
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(|e| StorageError::io(path, e))? {
            let entry = entry.map_err(|e| StorageError::io(path, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> Result<bool, StorageError> {
        path.try_exists().map_err(|e| StorageError::io(path, e))
    }

    fn read_all(&self, path: &Path) -> Result<Vec<u8>, StorageError> {
        fs::read(path).map_err(|e| StorageError::io(path, e))
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
        let mut out = vec![0u8; len];
        file.read_exact_at(&mut out, offset).map_err(|e| StorageError::io(path, e))?;
        Ok(out)
    }

    fn open_append(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError> {
        Self::open_with(path, OpenOptions::new().append(true).create(true))
    }

    fn create(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError> {
        // `append` and `truncate` do not combine in std: truncate first, then append.
        File::create(path).map_err(|e| StorageError::io(path, e))?;
        Self::open_with(path, OpenOptions::new().append(true))
    }

    fn create_new(&self, path: &Path) -> Result<Box<dyn DiskFile>, StorageError> {
        Self::open_with(path, OpenOptions::new().append(true).create_new(true))
    }

    fn remove_file(&self, path: &Path) -> Result<(), StorageError> {
        fs::remove_file(path).map_err(|e| StorageError::io(path, e))
    }

    fn truncate(&self, path: &Path, len_bytes: u64) -> Result<(), StorageError> {
        let file = OpenOptions::new().write(true).open(path).map_err(|e| StorageError::io(path, e))?;
        file.set_len(len_bytes).map_err(|e| StorageError::io(path, e))?;
        file.sync_data().map_err(|e| StorageError::io(path, e))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        fs::rename(from, to).map_err(|e| StorageError::io(from, e))
    }

    fn sync_dir(&self, path: &Path) -> Result<(), StorageError> {
        let dir = File::open(path).map_err(|e| StorageError::io(path, e))?;
        dir.sync_all().map_err(|e| StorageError::io(path, e))
    }

    fn open_random(&self, path: &Path) -> Result<Box<dyn RandomFile>, StorageError> {
        let file = open_read_write(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealRandomFile { file, path: path.to_path_buf() })),
            Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::WouldBlock, "the file is in use by another process"),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(StorageError::io(path, e)),
        }
    }

    fn open_positional(&self, path: &Path) -> Result<Box<dyn RandomFile>, StorageError> {
        Ok(Box::new(RealRandomFile { file: open_read_write(path)?, path: path.to_path_buf() }))
    }
}

/// Opens `path` for reading and writing, creating it empty if missing.
fn open_read_write(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::io(path, e))
}

/// A positional file of the [`RealDisk`], locked (flock) while open if opened with
/// [`Disk::open_random`].
#[derive(Debug)]
struct RealRandomFile {
    file: File,
    path: PathBuf,
}

impl RandomFile for RealRandomFile {
    fn len(&self) -> Result<u64, StorageError> {
        let metadata = self.file.metadata().map_err(|e| StorageError::io(&self.path, e))?;
        Ok(metadata.len())
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        self.file.read_exact_at(out, offset).map_err(|e| StorageError::io(&self.path, e))
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.file.write_all_at(data, offset).map_err(|e| StorageError::io(&self.path, e))
    }

    fn set_len(&self, len_bytes: u64) -> Result<(), StorageError> {
        self.file.set_len(len_bytes).map_err(|e| StorageError::io(&self.path, e))
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(|e| StorageError::io(&self.path, e))
    }
}

/// A file of the [`RealDisk`].
struct RealFile {
    file: File,
    path: PathBuf,
}

impl DiskFile for RealFile {
    fn write_all(&mut self, buf: &[u8]) -> Result<(), StorageError> {
        self.file.write_all(buf).map_err(|e| StorageError::io(&self.path, e))
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(|e| StorageError::io(&self.path, e))
    }

    fn len(&self) -> Result<u64, StorageError> {
        let metadata = self.file.metadata().map_err(|e| StorageError::io(&self.path, e))?;
        Ok(metadata.len())
    }
}
