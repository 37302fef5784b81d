//! The one error type of the storage layer.

use std::path::PathBuf;

/// Every way a storage operation can fail.
///
/// `Corrupt` is the data dir's fault and must make the node refuse to start; `Io` is the
/// environment's (permissions, full disk, failing device); the rest are caller mistakes that
/// depend on input (too large a record) or a consequence of an earlier failure (`Poisoned`).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O error on `path`.
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes of `file` at `offset` are not what this layer wrote.
    #[error("corrupt data in {} at offset {offset}: {reason}", .file.display())]
    Corrupt { file: PathBuf, offset: u64, reason: String },
    /// A record larger than the limit was offered to the WAL.
    #[error("record of {len_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    RecordTooLarge { len_bytes: u64, max_bytes: u64 },
    /// Appending would grow the current segment past its hard limit: the owner must rotate.
    #[error("segment {seq:016x} would exceed {max_bytes} bytes; rotate first")]
    SegmentFull { seq: u64, max_bytes: u64 },
    /// An earlier write or sync of the WAL failed, so what is on disk is unknown; the WAL refuses
    /// further use until it is reopened (recovered from disk).
    #[error("the WAL failed an earlier write or sync and refuses further use; reopen it")]
    Poisoned,
}

impl StorageError {
    /// Wraps an `std::io::Error` with the path it happened on.
    pub(super) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io { path: path.into(), source }
    }

    /// A corruption report for `file` at `offset`.
    pub(super) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt { file: file.into(), offset, reason: reason.into() }
    }
}
