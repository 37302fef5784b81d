//! [`WriteBatch`]: one redb write transaction holding any number of etcd write transactions.
//!
//! The batch changes the store's key index and revisions in place, so its own reads see its
//! writes, and journals every index change. Commit publishes; dropping the batch (or a failed
//! commit) undoes the journal, so the store always reflects committed state only. An operation
//! that fails on a request (compacted revision, missing key) is undone on its own and the batch
//! stays usable; an operation that fails in storage poisons the batch, which can then only be
//! dropped.

use detcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use detcd_proto::mvccpb::event::EventType;
use detcd_proto::mvccpb::{Event, KeyValue};
use redb::{Durability, Table, WriteTransaction};

use super::codec::Record;
use super::index::{Entry, Generation, Interval, KeyIndex, Undo};
use super::range::{self, fetch, header, View};
use super::schema::{Rev, APP_META, META_COMPACT_REV, META_CURRENT_REV, MVCC_META, NEVER_COMPACTED, REVISIONS};
use super::store::Store;
use super::MvccError;

/// A batch of writes applied in one redb write transaction; see the module docs.
pub struct WriteBatch<'a> {
    store: &'a mut Store,
    /// `None` once committed.
    txn: Option<WriteTransaction>,
    /// Index changes since the batch began, oldest first.
    journal: Vec<Undo>,
    start_current_rev: i64,
    start_compact_rev: i64,
    /// The storage failure that made this batch unusable.
    poisoned: Option<MvccError>,
    committed: bool,
    /// The changes of every successful etcd write transaction in this batch, in revision order.
    events: Vec<Event>,
    /// Whether a lease exists; a put naming a lease it denies fails with [`MvccError::LeaseNotFound`].
    lease_exists: Box<dyn Fn(i64) -> bool + 'a>,
}

impl std::fmt::Debug for WriteBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("start_current_rev", &self.start_current_rev)
            .field("current_rev", &self.store.current_rev)
            .field("journal", &self.journal.len())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// The transaction of a batch that is still usable.
fn usable<'t>(
    txn: &'t Option<WriteTransaction>,
    poisoned: &Option<MvccError>,
) -> Result<&'t WriteTransaction, MvccError> {
    not_poisoned(poisoned)?;
    txn.as_ref().ok_or_else(|| MvccError::Storage("write batch already committed".to_string()))
}

/// Fails if an earlier storage failure poisoned the batch.
fn not_poisoned(poisoned: &Option<MvccError>) -> Result<(), MvccError> {
    match poisoned {
        Some(e) => Err(MvccError::Storage(format!("write batch unusable after an earlier failure: {e}"))),
        None => Ok(()),
    }
}

/// Poisons the batch with `e` if it is a storage failure and nothing poisoned it before.
fn poison_if_fatal(poisoned: &mut Option<MvccError>, e: &MvccError) {
    if e.is_fatal() && poisoned.is_none() {
        *poisoned = Some(e.clone());
    }
}

impl<'a> WriteBatch<'a> {
    pub(super) fn begin(store: &'a mut Store) -> Result<WriteBatch<'a>, MvccError> {
        let txn = store.db.begin_write()?;
        Ok(WriteBatch {
            start_current_rev: store.current_rev,
            start_compact_rev: store.compact_rev,
            store,
            txn: Some(txn),
            journal: Vec::new(),
            poisoned: None,
            committed: false,
            events: Vec::new(),
            lease_exists: Box::new(|_| true),
        })
    }

    /// The store's revision as of this batch's writes so far.
    pub fn revision(&self) -> i64 {
        self.store.current_rev
    }

    /// Makes puts check their lease with `exists` (by default every lease is taken to exist: the
    /// store itself knows nothing of leases).
    pub fn check_leases_with(&mut self, exists: impl Fn(i64) -> bool + 'a) {
        self.lease_exists = Box::new(exists);
    }

    /// The changes written so far by this batch's successful write transactions, oldest first:
    /// what watchers see. A put's event carries the new key-value; a delete's carries the key and
    /// the deleting revision only, as etcd's do.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Takes the changes recorded so far (see [`WriteBatch::events`]).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Runs `f` on the batch with its revision table open for all of `f`. Each operation of a
    /// [`WriteBatch`] opens the table for itself; opening and closing it is a lookup in redb's
    /// table of tables, a type check and a write back of the table's root, which cost as much as
    /// the put they wrap in the apply benchmark. An applier running many operations runs them
    /// here. Fails only if the batch is unusable or the table cannot be opened.
    pub fn with_table<R>(&mut self, f: impl FnOnce(&mut BatchOps<'_, '_>) -> R) -> Result<R, MvccError> {
        let result = (|| -> Result<_, MvccError> {
            let txn = usable(&self.txn, &self.poisoned)?;
            Ok((txn, txn.open_table(REVISIONS)?))
        })();
        let (txn, table) = match result {
            Ok(open) => open,
            Err(e) => {
                poison_if_fatal(&mut self.poisoned, &e);
                return Err(e);
            }
        };
        let mut ops = BatchOps {
            txn,
            table,
            store: &mut *self.store,
            journal: &mut self.journal,
            events: &mut self.events,
            poisoned: &mut self.poisoned,
            lease_exists: self.lease_exists.as_ref(),
        };
        Ok(f(&mut ops))
    }

    /// Removes an opaque value stored by [`WriteBatch::set_meta`], committed with the batch.
    pub fn delete_meta(&mut self, name: &str) -> Result<(), MvccError> {
        change_meta(usable(&self.txn, &self.poisoned), &mut self.poisoned, name, None)
    }

    /// etcd's Put as its own write transaction.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        self.with_table(|ops| ops.put(req))?
    }

    /// etcd's DeleteRange as its own write transaction.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        self.with_table(|ops| ops.delete_range(req))?
    }

    /// etcd's Txn: compares, then the chosen branch's operations, all in one revision.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        self.with_table(|ops| ops.txn(req))?
    }

    /// etcd's Range, seeing this batch's writes.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let txn = usable(&self.txn, &self.poisoned)?;
        let table = txn.open_table(REVISIONS)?;
        let view = View { rev: self.store.current_rev, compact_rev: self.store.compact_rev };
        range::range(&self.store.index, &table, view, req)
    }

    /// Compacts history at `req.revision`, physically deleting what no read at or after it needs.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, MvccError> {
        self.with_table(|ops| ops.compact(req))?
    }

    /// Stores an opaque value for the Raft layer, committed with the batch.
    pub fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), MvccError> {
        change_meta(usable(&self.txn, &self.poisoned), &mut self.poisoned, name, Some(value))
    }

    /// Commits the batch (`durable`: fsync before returning) and publishes it to the store. On
    /// error nothing is published and the store is as before the batch.
    pub fn commit(mut self, durable: bool) -> Result<(), MvccError> {
        usable(&self.txn, &self.poisoned).map_err(|e| MvccError::Storage(format!("cannot commit: {e}")))?;
        let Some(mut txn) = self.txn.take() else {
            return Err(MvccError::Storage("write batch already committed".to_string()));
        };
        let (current_rev, compact_rev) = (self.store.current_rev, self.store.compact_rev);
        assert!(current_rev >= self.start_current_rev, "the revision only grows");
        assert!(compact_rev >= self.start_compact_rev, "the compaction point only grows");
        if current_rev != self.start_current_rev || compact_rev != self.start_compact_rev {
            let mut meta = txn.open_table(MVCC_META)?;
            meta.insert(META_CURRENT_REV, current_rev.to_be_bytes().as_slice())?;
            if compact_rev != NEVER_COMPACTED {
                meta.insert(META_COMPACT_REV, compact_rev.to_be_bytes().as_slice())?;
            }
        }
        txn.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
        txn.commit()?;
        self.committed = true;
        self.journal.clear();
        Ok(())
    }
}

/// Sets (`Some`) or removes (`None`) the opaque value `name` in `txn`, if the batch is usable,
/// poisoning the batch if storage fails.
fn change_meta(
    txn: Result<&WriteTransaction, MvccError>,
    poisoned: &mut Option<MvccError>,
    name: &str,
    value: Option<&[u8]>,
) -> Result<(), MvccError> {
    let result = txn.and_then(|txn| {
        let mut table = txn.open_table(APP_META)?;
        match value {
            Some(value) => table.insert(name, value)?,
            None => table.remove(name)?,
        };
        Ok(())
    });
    if let Err(e) = &result {
        poison_if_fatal(poisoned, e);
    }
    result
}

/// A [`WriteBatch`] with its revision table open: see [`WriteBatch::with_table`]. The same
/// operations, with the same semantics.
pub struct BatchOps<'o, 't> {
    txn: &'t WriteTransaction,
    table: Table<'t, u128, &'static [u8]>,
    store: &'o mut Store,
    journal: &'o mut Vec<Undo>,
    events: &'o mut Vec<Event>,
    poisoned: &'o mut Option<MvccError>,
    lease_exists: &'o dyn Fn(i64) -> bool,
}

impl BatchOps<'_, '_> {
    /// The store's revision as of this batch's writes so far.
    pub fn revision(&self) -> i64 {
        self.store.current_rev
    }

    /// The changes written so far by this batch (see [`WriteBatch::events`]).
    pub fn events(&self) -> &[Event] {
        self.events
    }

    fn check_usable(&self) -> Result<(), MvccError> {
        not_poisoned(self.poisoned)
    }

    /// Removes an opaque value stored by [`WriteBatch::set_meta`], committed with the batch.
    pub fn delete_meta(&mut self, name: &str) -> Result<(), MvccError> {
        let txn = self.check_usable().map(|()| self.txn);
        change_meta(txn, self.poisoned, name, None)
    }

    /// etcd's Put as its own write transaction.
    pub fn put(&mut self, req: &PutRequest) -> Result<PutResponse, MvccError> {
        self.run(|w, ctx| w.put(ctx, req))
    }

    /// etcd's DeleteRange as its own write transaction.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
        self.run(|w, ctx| w.delete_range(ctx, req))
    }

    /// etcd's Txn: compares, then the chosen branch's operations, all in one revision.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
        self.run(|w, ctx| w.txn(ctx, req))
    }

    /// etcd's Range, seeing this batch's writes.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.check_usable()?;
        let view = View { rev: self.store.current_rev, compact_rev: self.store.compact_rev };
        range::range(&self.store.index, &self.table, view, req)
    }

    /// Compacts history at `req.revision`, physically deleting what no read at or after it needs.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, MvccError> {
        self.check_usable()?;
        let at = req.revision;
        if at <= self.store.compact_rev {
            return Err(MvccError::Compacted);
        }
        if at > self.store.current_rev {
            return Err(MvccError::FutureRevision);
        }
        let dropped = self.store.index.compact(at, self.journal);
        let removed = (|| -> Result<(), MvccError> {
            for rev in &dropped {
                if self.table.remove(rev.to_key())?.is_none() {
                    return Err(MvccError::Corrupt(format!(
                        "compaction found no record at revision {rev}, which the index holds"
                    )));
                }
            }
            Ok(())
        })();
        if let Err(e) = removed {
            *self.poisoned = Some(e.clone());
            return Err(e);
        }
        assert!(at > self.store.compact_rev, "the compaction point only grows");
        self.store.compact_rev = at;
        tracing::debug!(at, records = dropped.len(), "mvcc compaction");
        Ok(CompactionResponse { header: header(self.store.current_rev) })
    }

    /// Stores an opaque value for the Raft layer, committed with the batch.
    pub fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), MvccError> {
        let txn = self.check_usable().map(|()| self.txn);
        change_meta(txn, self.poisoned, name, Some(value))
    }

    /// Runs one etcd write transaction: on success the store's revision moves to the one it
    /// wrote (if it wrote anything); on failure every trace of it is removed.
    fn run<R>(
        &mut self,
        op: impl FnOnce(&mut Writer<'_, '_>, &mut TxnCtx) -> Result<R, MvccError>,
    ) -> Result<R, MvccError> {
        let mut ctx = TxnCtx::new(self.store.current_rev);
        let mark = self.journal.len();
        let events_mark = self.events.len();
        let result = self.check_usable().and_then(|()| {
            let mut writer = Writer {
                index: &mut self.store.index,
                journal: self.journal,
                table: &mut self.table,
                compact_rev: self.store.compact_rev,
                events: self.events,
                lease_exists: self.lease_exists,
            };
            op(&mut writer, &mut ctx)
        });
        match result {
            Ok(r) => {
                assert!(ctx.view_rev() >= self.store.current_rev, "the revision only grows");
                self.store.current_rev = ctx.view_rev();
                Ok(r)
            }
            Err(e) => {
                self.events.truncate(events_mark);
                self.undo_op(mark, &ctx, &e);
                Err(e)
            }
        }
    }

    /// Removes what a failed operation wrote: its index changes and its records.
    fn undo_op(&mut self, mark: usize, ctx: &TxnCtx, cause: &MvccError) {
        while self.journal.len() > mark {
            if let Some(undo) = self.journal.pop() {
                self.store.index.undo(undo);
            }
        }
        poison_if_fatal(self.poisoned, cause);
        if self.poisoned.is_some() || !ctx.changed() {
            return;
        }
        let removed = (|| -> Result<(), MvccError> {
            for rev in ctx.written() {
                if self.table.remove(rev.to_key())?.is_none() {
                    return Err(MvccError::Corrupt(format!("undo found no record at revision {rev}, which it wrote")));
                }
            }
            Ok(())
        })();
        if let Err(e) = removed {
            *self.poisoned = Some(e);
        }
    }
}

impl Drop for WriteBatch<'_> {
    /// An uncommitted batch leaves the store as it was: redb aborts the transaction when it is
    /// dropped, and the journal undoes the index.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        while let Some(undo) = self.journal.pop() {
            self.store.index.undo(undo);
        }
        self.store.current_rev = self.start_current_rev;
        self.store.compact_rev = self.start_compact_rev;
    }
}

/// The revision bookkeeping of one etcd write transaction.
#[derive(Debug)]
pub(super) struct TxnCtx {
    /// The store's revision before the transaction.
    begin_rev: i64,
    /// Changes written so far, which are also the next sub revision.
    changes: i64,
}

impl TxnCtx {
    fn new(begin_rev: i64) -> TxnCtx {
        assert!((1..i64::MAX).contains(&begin_rev), "revision {begin_rev} out of range");
        TxnCtx { begin_rev, changes: 0 }
    }

    /// The revision reads inside the transaction see: the new one once it wrote something.
    pub fn view_rev(&self) -> i64 {
        if self.changed() {
            self.begin_rev + 1
        } else {
            self.begin_rev
        }
    }

    pub fn changed(&self) -> bool {
        self.changes > 0
    }

    /// The revision for the next change.
    pub fn next_rev(&mut self) -> Rev {
        let rev = Rev::new(self.begin_rev + 1, self.changes);
        self.changes += 1;
        rev
    }

    fn written(&self) -> impl Iterator<Item = Rev> + '_ {
        (0..self.changes).map(|sub| Rev::new(self.begin_rev + 1, sub))
    }
}

/// What the operations of one etcd write transaction work on.
pub(super) struct Writer<'b, 't> {
    pub index: &'b mut KeyIndex,
    pub journal: &'b mut Vec<Undo>,
    pub table: &'b mut Table<'t, u128, &'static [u8]>,
    pub compact_rev: i64,
    pub events: &'b mut Vec<Event>,
    pub lease_exists: &'b dyn Fn(i64) -> bool,
}

impl Writer<'_, '_> {
    /// etcd's Range inside a write transaction: reads at the transaction's view.
    pub fn range(&self, ctx: &TxnCtx, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        let view = View { rev: ctx.view_rev(), compact_rev: self.compact_rev };
        range::range(self.index, &*self.table, view, req)
    }

    /// etcd's Put (applierV3backend.Put plus storeTxnWrite.put).
    pub fn put(&mut self, ctx: &mut TxnCtx, req: &PutRequest) -> Result<PutResponse, MvccError> {
        // The previous record is read only when its value, lease or itself is asked for: the
        // key's create revision and version are in the index, which the push below reads.
        let wants_prev = req.prev_kv || req.ignore_value || req.ignore_lease;
        let latest = if wants_prev { self.index.latest(&req.key) } else { None };
        if (req.ignore_value || req.ignore_lease) && latest.is_none() {
            return Err(MvccError::KeyNotFound);
        }
        if req.lease != 0 && !req.ignore_lease && !(self.lease_exists)(req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        let prev = match latest {
            Some(rev) => Some(fetch(&*self.table, &req.key, rev)?),
            None => None,
        };
        let value = match &prev {
            Some(p) if req.ignore_value => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match &prev {
            Some(p) if req.ignore_lease => p.lease,
            _ => req.lease,
        };
        let rev = ctx.next_rev();
        // Indexed before the record is written: if writing fails, the operation's undo pops it.
        let generation = self.index.push_put(&req.key, rev, self.journal);
        debug_assert!(
            prev.as_ref().is_none_or(|p| (p.create_revision, p.version.saturating_add(1))
                == (generation.create_revision, generation.version)),
            "the index and the record disagree on the generation of {:?}",
            req.key
        );
        let record = Record {
            key: req.key.clone(),
            value,
            create_revision: generation.create_revision,
            mod_revision: rev.main,
            version: generation.version,
            lease,
            tombstone: false,
        };
        self.write(rev, record)?;
        Ok(PutResponse { header: header(rev.main), prev_kv: prev.filter(|_| req.prev_kv).map(Record::into_kv) })
    }

    /// etcd's DeleteRange: a tombstone for every key of the interval visible now.
    pub fn delete_range(
        &mut self,
        ctx: &mut TxnCtx,
        req: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let visible: Vec<(Vec<u8>, Rev)> = self
            .index
            .visible(Interval::new(&req.key, &req.range_end), ctx.view_rev())
            .into_iter()
            .map(|(key, rev)| (key.to_vec(), rev))
            .collect();
        let mut prev_kvs = Vec::new();
        if req.prev_kv {
            for (key, rev) in &visible {
                prev_kvs.push(fetch(&*self.table, key, *rev)?.into_kv());
            }
        }
        for (key, _) in &visible {
            let rev = ctx.next_rev();
            self.append(rev, Record::tombstone(key, rev.main))?;
        }
        Ok(DeleteRangeResponse {
            header: header(ctx.view_rev()),
            deleted: i64::try_from(visible.len()).unwrap_or(i64::MAX),
            prev_kvs,
        })
    }

    /// Writes `record` at the fresh revision `rev` and indexes it.
    fn append(&mut self, rev: Rev, record: Record) -> Result<(), MvccError> {
        let entry = Entry { rev, tombstone: record.tombstone };
        let generation = Generation { create_revision: record.create_revision, version: record.version };
        self.index.push(&record.key, entry, generation, self.journal);
        self.write(rev, record)
    }

    /// Writes `record`, already indexed, at the fresh revision `rev`, and its watch event.
    fn write(&mut self, rev: Rev, record: Record) -> Result<(), MvccError> {
        let existed = self.table.insert(rev.to_key(), record.encode().as_slice())?.is_some();
        assert!(!existed, "revision {rev} was written twice");
        self.events.push(event_of(record));
        Ok(())
    }
}

/// The watch event of one stored record.
pub(super) fn event_of(record: Record) -> Event {
    if record.tombstone {
        let kv = KeyValue { key: record.key, mod_revision: record.mod_revision, ..Default::default() };
        Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: None }
    } else {
        Event { r#type: EventType::Put as i32, kv: Some(record.into_kv()), prev_kv: None }
    }
}
