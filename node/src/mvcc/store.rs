//! [`Store`]: opening (and rebuilding the key index), committed reads, meta values, snapshot and
//! restore.

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use detcd_proto::etcdserverpb::{RangeRequest, RangeResponse};
use detcd_proto::mvccpb::Event;

use super::batch::WriteBatch;
use super::codec::Record;
use super::index::{Entry, Generation, Interval, KeyIndex};
use super::range::{self, View};
use super::schema::{
    decode_i64, decode_u32, Rev, APP_META, FIRST_REVISION, FORMAT_VERSION, META_COMPACT_REV, META_CURRENT_REV,
    META_FORMAT, MVCC_META, NEVER_COMPACTED, REVISIONS,
};
use super::snapshot;
use super::MvccError;

/// The MVCC key-value store: a redb database plus the in-memory key index, which always
/// reflects exactly the committed contents of the database.
pub struct Store {
    pub(super) db: Database,
    pub(super) index: KeyIndex,
    /// The revision of the last committed change (1 on an empty store).
    pub(super) current_rev: i64,
    /// etcd's `compactMainRev`: [`NEVER_COMPACTED`] until the first compaction.
    pub(super) compact_rev: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.index.len())
            .field("current_rev", &self.current_rev)
            .field("compact_rev", &self.compact_rev)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store in `db`: creates its tables if missing, validates every record and
    /// rebuilds the key index from disk.
    pub fn open(db: Database) -> Result<Store, MvccError> {
        init_tables(&db)?;
        let read = db.begin_read()?;
        let (current_rev, compact_rev) = read_revisions(&read.open_table(MVCC_META)?)?;
        let mut index = KeyIndex::default();
        let revisions = read.open_table(REVISIONS)?;
        let mut records = 0u64;
        for item in revisions.iter()? {
            let (key, value) = item?;
            load_record(&mut index, Rev::from_key(key.value())?, value.value(), current_rev)?;
            records += 1;
        }
        drop(revisions);
        drop(read);
        tracing::info!(current_rev, compact_rev, keys = index.len(), records, "mvcc store opened");
        Ok(Store { db, index, current_rev, compact_rev })
    }

    /// The revision of the last committed change; 1 on an empty store.
    pub fn current_revision(&self) -> i64 {
        self.current_rev
    }

    /// The revision of the last compaction; 0 if never compacted.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.max(0)
    }

    fn view(&self) -> View {
        View { rev: self.current_rev, compact_rev: self.compact_rev }
    }

    /// etcd's Range against committed state.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(REVISIONS)?;
        range::range(&self.index, &table, self.view(), req)
    }

    /// The changes of revisions `from..=to` in revision order, as watch events (see
    /// [`WriteBatch::events`]). `from` must be above the compaction point: compaction
    /// removes records a watcher would need, so older revisions answer [`MvccError::Compacted`].
    pub fn events(&self, from: i64, to: i64) -> Result<Vec<Event>, MvccError> {
        if from <= self.compact_rev {
            return Err(MvccError::Compacted);
        }
        let to = to.min(self.current_rev);
        if from > to {
            return Ok(Vec::new());
        }
        let read = self.db.begin_read()?;
        let table = read.open_table(REVISIONS)?;
        let mut events = Vec::new();
        for item in table.range(Rev::new(from, 0).to_key()..Rev::new(to + 1, 0).to_key())? {
            let (key, value) = item?;
            let rev = Rev::from_key(key.value())?;
            let record = Record::decode(value.value())
                .map_err(|why| MvccError::Corrupt(format!("record at revision {rev}: {why}")))?;
            events.push(super::batch::event_of(record));
        }
        Ok(events)
    }

    /// Every live key attached to a lease, with its lease: what the lessor rebuilds its
    /// attachments from.
    pub fn leased_keys(&self) -> Result<Vec<(Vec<u8>, i64)>, MvccError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(REVISIONS)?;
        let mut leased = Vec::new();
        for (key, rev) in self.index.visible(Interval::From(b""), self.current_rev) {
            let record = range::fetch(&table, key, rev)?;
            if record.lease != 0 {
                leased.push((record.key, record.lease));
            }
        }
        Ok(leased)
    }

    /// Every value stored by [`WriteBatch::set_meta`] whose name starts with `prefix`.
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, MvccError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(APP_META)?;
        let mut found = Vec::new();
        for item in table.range(prefix..)? {
            let (name, value) = item?;
            if !name.value().starts_with(prefix) {
                break;
            }
            found.push((name.value().to_string(), value.value().to_vec()));
        }
        Ok(found)
    }

    /// Begins one batch of writes: one redb write transaction.
    pub fn write(&mut self) -> Result<WriteBatch<'_>, MvccError> {
        WriteBatch::begin(self)
    }

    /// A value stored by [`WriteBatch::set_meta`], as committed.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, MvccError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(APP_META)?;
        let value = table.get(name)?.map(|v| v.value().to_vec());
        Ok(value)
    }

    /// A self-contained, checksummed image of all committed data, the compaction point, the
    /// revision and the meta values, taken from one read transaction.
    pub fn snapshot(&self) -> Result<Vec<u8>, MvccError> {
        let read = self.db.begin_read()?;
        snapshot::write_image(&read)
    }

    /// Replaces the whole contents with `image` in one durable write transaction. A corrupt
    /// image is refused with [`MvccError::Corrupt`] and leaves the store unchanged.
    pub fn restore(&mut self, image: &[u8]) -> Result<(), MvccError> {
        let image = snapshot::read_image(image)?;
        let mut txn = self.db.begin_write()?;
        snapshot::install(&txn, &image)?;
        txn.set_durability(Durability::Immediate)?;
        txn.commit()?;
        tracing::info!(
            current_rev = image.current_rev,
            compact_rev = image.compact_rev,
            keys = image.index.len(),
            records = image.records.len(),
            "mvcc store restored from a snapshot"
        );
        self.current_rev = image.current_rev;
        self.compact_rev = image.compact_rev;
        self.index = image.index;
        Ok(())
    }

    /// Approximate bytes in use by the database (allocated pages); 0 if it cannot be measured.
    pub fn db_size_bytes(&self) -> u64 {
        let measure = || -> Result<u64, MvccError> {
            let txn = self.db.begin_write()?;
            let stats = txn.stats()?;
            txn.abort()?;
            let page_bytes = u64::try_from(stats.page_size()).unwrap_or(0);
            Ok(stats.allocated_pages().saturating_mul(page_bytes))
        };
        measure().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot measure the mvcc database size");
            0
        })
    }
}

/// Creates the tables if missing and checks (or, on a new database, records) the format.
fn init_tables(db: &Database) -> Result<(), MvccError> {
    let txn = db.begin_write()?;
    {
        let revisions = txn.open_table(REVISIONS)?;
        txn.open_table(APP_META)?;
        let mut meta = txn.open_table(MVCC_META)?;
        let format = match meta.get(META_FORMAT)? {
            Some(v) => Some(decode_u32(META_FORMAT, v.value())?),
            None => None,
        };
        match format {
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(MvccError::Corrupt(format!(
                    "unsupported mvcc format {other}, this build reads {FORMAT_VERSION}"
                )))
            }
            None if !revisions.is_empty()? || meta.get(META_CURRENT_REV)?.is_some() => {
                return Err(MvccError::Corrupt("mvcc tables hold data but no format marker".to_string()))
            }
            None => {
                meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes().as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// The current and compaction revisions recorded in the mvcc meta table, validated.
pub(super) fn read_revisions<T>(meta: &T) -> Result<(i64, i64), MvccError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let current_rev = match meta.get(META_CURRENT_REV)? {
        Some(v) => decode_i64(META_CURRENT_REV, v.value())?,
        None => FIRST_REVISION,
    };
    let compact_rev = match meta.get(META_COMPACT_REV)? {
        Some(v) => decode_i64(META_COMPACT_REV, v.value())?,
        None => NEVER_COMPACTED,
    };
    check_revisions(current_rev, compact_rev)?;
    Ok((current_rev, compact_rev))
}

/// The revisions a store may be at: current at least 1, compaction point at most current.
pub(super) fn check_revisions(current_rev: i64, compact_rev: i64) -> Result<(), MvccError> {
    if current_rev < FIRST_REVISION || compact_rev > current_rev || compact_rev < NEVER_COMPACTED {
        return Err(MvccError::Corrupt(format!(
            "impossible revisions: current {current_rev}, compacted {compact_rev}"
        )));
    }
    Ok(())
}

/// Validates one stored record and adds it to the index being rebuilt.
pub(super) fn load_record(index: &mut KeyIndex, rev: Rev, bytes: &[u8], current_rev: i64) -> Result<(), MvccError> {
    if rev.main > current_rev {
        return Err(MvccError::Corrupt(format!(
            "record at revision {rev} is newer than the current revision {current_rev}"
        )));
    }
    let record = Record::decode(bytes).map_err(|why| MvccError::Corrupt(format!("record at revision {rev}: {why}")))?;
    if record.mod_revision != rev.main {
        return Err(MvccError::Corrupt(format!(
            "record at revision {rev} claims mod revision {}",
            record.mod_revision
        )));
    }
    let entry = Entry { rev, tombstone: record.tombstone };
    let generation = Generation { create_revision: record.create_revision, version: record.version };
    index
        .load(&record.key, entry, generation)
        .map_err(|why| MvccError::Corrupt(format!("record at revision {rev}: {why}")))
}
