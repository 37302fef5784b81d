//! Every redb table of the MVCC store, and how revisions are laid out as table keys.

use redb::TableDefinition;

use super::MvccError;

/// `(main, sub)` revision -> encoded [`super::codec::Record`]. The key is `main << 64 | sub`,
/// so redb's numeric order on `u128` is revision order.
pub(super) const REVISIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("mvcc_revisions");

/// The store's own bookkeeping (`META_*` names below), values are big-endian integers.
pub(super) const MVCC_META: TableDefinition<&str, &[u8]> = TableDefinition::new("mvcc_meta");

/// Opaque values stored by the Raft layer. A table of their own, so no name of theirs can
/// collide with ours.
pub(super) const APP_META: TableDefinition<&str, &[u8]> = TableDefinition::new("mvcc_app_meta");

/// App meta names starting with this belong to this member alone (its identity): a snapshot image
/// leaves them out, and installing an image keeps the member's own.
pub const LOCAL_META_PREFIX: &str = "local.";

pub(super) fn is_local_meta(name: &str) -> bool {
    name.starts_with(LOCAL_META_PREFIX)
}

/// Current revision (i64). Absent on a fresh store, which is at revision 1.
pub(super) const META_CURRENT_REV: &str = "current_revision";
/// Compaction revision (i64). Absent if never compacted.
pub(super) const META_COMPACT_REV: &str = "compact_revision";
/// On-disk format version (u32).
pub(super) const META_FORMAT: &str = "format";
/// The only on-disk format this code reads and writes.
pub(super) const FORMAT_VERSION: u32 = 1;

/// The revision of a fresh store (etcd starts at 1; the first write gets 2).
pub(super) const FIRST_REVISION: i64 = 1;
/// etcd's `compactMainRev` before any compaction. Reported as 0 by `compact_revision()`.
pub(super) const NEVER_COMPACTED: i64 = -1;

/// A revision: the main revision of a write transaction and the position of one change in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Rev {
    pub main: i64,
    pub sub: i64,
}

impl Rev {
    pub fn new(main: i64, sub: i64) -> Rev {
        assert!(main > 0, "main revision {main} must be positive");
        assert!(sub >= 0, "sub revision {sub} must not be negative");
        Rev { main, sub }
    }

    /// The table key of this revision.
    pub fn to_key(self) -> u128 {
        assert!(self.main > 0 && self.sub >= 0, "invalid revision {self:?}");
        (u128::from(self.main.unsigned_abs()) << 64) | u128::from(self.sub.unsigned_abs())
    }

    /// Decodes a table key; disk data, so invalid keys are corruption, not a panic.
    pub fn from_key(key: u128) -> Result<Rev, MvccError> {
        let main = i64::try_from(key >> 64).ok().filter(|m| *m > 0);
        let sub = i64::try_from(key & u128::from(u64::MAX)).ok();
        match (main, sub) {
            (Some(main), Some(sub)) => Ok(Rev { main, sub }),
            _ => Err(MvccError::Corrupt(format!("revision table key {key:#x} is not a valid revision"))),
        }
    }
}

impl std::fmt::Display for Rev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

/// Decodes a big-endian i64 meta value.
pub(super) fn decode_i64(name: &str, bytes: &[u8]) -> Result<i64, MvccError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| MvccError::Corrupt(format!("meta value {name} has {} bytes, want 8", bytes.len())))?;
    Ok(i64::from_be_bytes(array))
}

/// Decodes a big-endian u32 meta value.
pub(super) fn decode_u32(name: &str, bytes: &[u8]) -> Result<u32, MvccError> {
    let array: [u8; 4] = bytes
        .try_into()
        .map_err(|_| MvccError::Corrupt(format!("meta value {name} has {} bytes, want 4", bytes.len())))?;
    Ok(u32::from_be_bytes(array))
}
