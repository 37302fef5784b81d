//! The MVCC store: etcd's multi-version key space on top of redb.
//!
//! What it owns: revisions (one main revision per write transaction, sub revisions per operation
//! inside it), the in-memory key index, the read path (`Range` with etcd's limit, sort and filter
//! rules), the write path (`Put`, `DeleteRange`, `Txn` with compares and nested transactions),
//! compaction, and a checksummed snapshot image of the whole state.
//!
//! The front door is [`Store`]: reads go through [`Store::range`], writes through one
//! [`WriteBatch`] per applied Raft batch (one redb write transaction); an applier running many
//! operations runs them through [`WriteBatch::with_table`] ([`BatchOps`]), which keeps the revision
//! table open across them. Each call on the batch is one etcd write transaction: it succeeds
//! completely (bumping the revision by one if it changed anything) or fails with no effect. The
//! in-memory index only ever reflects committed state: the batch journals every index change and
//! undoes them if it is dropped without a commit. The index also keeps each key's latest create
//! revision and version, so a put reads the previous record only when it needs its value or lease.
//!
//! What it must never depend on: gRPC, tonic, the API layer, Raft, leases or watches. It speaks
//! the wire types of `detcd_proto` only as plain data; mapping [`MvccError`] to etcd's gRPC status
//! messages is the API layer's job.
//!
//! Where invariants are checked: [`index`] asserts that a key's revisions strictly increase and
//! that a tombstone only ends a live generation; the batch asserts that the revision and the
//! compaction point only grow; every record on disk carries a CRC-32 ([`codec`]) and is
//! cross-checked against the index when read; opening and restoring validate everything they load
//! and answer [`MvccError::Corrupt`] rather than serve bad data.
//!
//! Layout (all table definitions live in [`schema`]): a revision table keyed by
//! `(main, sub)` revision holding one encoded record per key version (tombstones included), and
//! two meta tables: the store's own (current revision, compaction revision, format) and the
//! opaque values of the Raft layer.

mod backend;
mod batch;
mod codec;
mod index;
mod range;
mod schema;
mod snapshot;
mod store;
mod txn;

#[cfg(test)]
mod tests;

pub use backend::{open_database, DiskBackend};
pub use batch::{BatchOps, WriteBatch};
pub use schema::LOCAL_META_PREFIX;
pub use store::Store;

/// Errors of the MVCC layer. The API layer maps them to etcd's gRPC statuses and messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MvccError {
    /// The requested revision is older than the compaction point.
    #[error("the requested revision has been compacted")]
    Compacted,
    /// The requested revision is newer than the current revision.
    #[error("the requested revision is in the future")]
    FutureRevision,
    /// A put with `ignore_value` or `ignore_lease` named a key that does not exist.
    #[error("the key does not exist")]
    KeyNotFound,
    /// A put named a lease that does not exist.
    #[error("the lease does not exist")]
    LeaseNotFound,
    /// The storage engine failed (I/O, a poisoned batch, a closed database).
    #[error("storage failure: {0}")]
    Storage(String),
    /// Data on disk or in a snapshot image failed validation.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl MvccError {
    /// Whether this error means the storage itself can no longer be trusted, as opposed to a
    /// request that cannot be served.
    fn is_fatal(&self) -> bool {
        matches!(self, MvccError::Storage(_) | MvccError::Corrupt(_))
    }
}

impl From<redb::StorageError> for MvccError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Corrupted(msg) => MvccError::Corrupt(format!("redb: {msg}")),
            other => MvccError::Storage(other.to_string()),
        }
    }
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {
        $(impl From<$t> for MvccError {
            fn from(e: $t) -> Self {
                MvccError::Storage(e.to_string())
            }
        })*
    };
}

storage_error_from!(
    redb::Error,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::DatabaseError
);
