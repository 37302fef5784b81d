//! The Raft log on the write-ahead log: openraft's `RaftLogStorage`, with group commit.
//!
//! Every change (entries, vote, committed index, truncation, purge) is a record in the WAL, in the
//! order openraft issues it. A single writer task owns the WAL: it takes every record queued while
//! the previous fsync ran, appends them all, fsyncs once, and only then tells openraft the entries
//! are flushed — so a member counts itself in a quorum only for entries on stable storage, and many
//! concurrent proposals share one fsync.
//!
//! The newest entries are also kept in memory for the log readers (replication, apply), up to
//! [`crate::config::Config::raft_log_cache_bytes`] of them once they are durable; older ones are read back from the WAL (a
//! follower catching up). Unbounded, the cache held every entry since the last snapshot: with
//! etcd's default `--snapshot-count` of 100,000, tens of MiB per member.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, RaftLogId, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::planted::{is_planted, Bug};

use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::storage::{read_record, Disk, RecordLoc, Wal};

/// Records queued for the writer before `append` waits (bounds memory under overload).
const WRITE_QUEUE_OPS_MAX: usize = 16_384;
/// Records the writer takes into one fsync at most.
const WRITE_BATCH_OPS_MAX: usize = 4_096;
/// A segment past this size is closed and a new one started.
const SEGMENT_BYTES_TARGET: u64 = 64 * 1024 * 1024;

/// One record of the Raft log in the WAL.
#[derive(Debug, Serialize, Deserialize)]
enum WalRecord {
    Entry(Entry),
    Vote(Vote),
    Committed(Option<LogId>),
    /// Delete every entry with index >= this.
    Truncate(u64),
    /// Delete every entry up to and including this log id.
    Purge(LogId),
}

/// One entry of the log view: in memory, or only in the WAL.
#[derive(Debug)]
enum Slot {
    /// `loc` is known once the entry is durable; only then may it leave memory.
    Mem {
        entry: Entry,
        bytes: u64,
        loc: Option<RecordLoc>,
    },
    Wal {
        log_id: LogId,
        loc: RecordLoc,
    },
}

impl Slot {
    fn log_id(&self) -> LogId {
        match self {
            Slot::Mem { entry, .. } => *entry.get_log_id(),
            Slot::Wal { log_id, .. } => *log_id,
        }
    }

    fn mem_bytes(&self) -> u64 {
        match self {
            Slot::Mem { bytes, .. } => *bytes,
            Slot::Wal { .. } => 0,
        }
    }
}

/// What the in-memory view of the log holds.
#[derive(Debug, Default)]
struct LogCache {
    entries: BTreeMap<u64, Slot>,
    /// Sum of the `bytes` of the entries held in memory.
    mem_bytes: u64,
    /// Every entry below this index is only in the WAL (entries leave memory oldest first).
    mem_from: u64,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

impl LogCache {
    /// Applies a record; `loc` is where it is in the WAL if it is known to be durable there.
    fn apply(&mut self, record: &WalRecord, loc: Option<RecordLoc>) {
        match record {
            WalRecord::Entry(entry) => {
                let index = entry.get_log_id().index;
                // An entry at an index we hold replaces it and everything after (a lost truncate).
                self.remove_from(index);
                let bytes = entry_bytes(entry);
                self.entries.insert(index, Slot::Mem { entry: entry.clone(), bytes, loc });
                self.mem_bytes += bytes;
            }
            WalRecord::Vote(vote) => self.vote = Some(*vote),
            WalRecord::Committed(committed) => self.committed = *committed,
            WalRecord::Truncate(index) => self.remove_from(*index),
            WalRecord::Purge(log_id) => {
                let kept = self.entries.split_off(&(log_id.index + 1));
                self.mem_bytes -= bytes_in_memory(&std::mem::replace(&mut self.entries, kept));
                if self.last_purged.is_none_or(|p| p.index < log_id.index) {
                    self.last_purged = Some(*log_id);
                }
            }
        }
    }

    fn remove_from(&mut self, index: u64) {
        self.mem_from = self.mem_from.min(index);
        self.mem_bytes -= bytes_in_memory(&self.entries.split_off(&index));
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries.values().next_back().map(Slot::log_id).or(self.last_purged)
    }

    /// Records where durable entries are in the WAL, then moves the oldest durable entries out of
    /// memory while it holds more than `max_bytes`.
    fn note_durable(&mut self, written: &[(LogId, RecordLoc)], max_bytes: u64) {
        for (log_id, at) in written {
            if let Some(Slot::Mem { entry, loc, .. }) = self.entries.get_mut(&log_id.index) {
                // The entry may have been replaced (truncated, appended again) since it was written.
                if entry.get_log_id() == log_id {
                    *loc = Some(*at);
                }
            }
        }
        for (index, slot) in self.entries.range_mut(self.mem_from..) {
            if self.mem_bytes <= max_bytes {
                break;
            }
            match slot {
                Slot::Wal { .. } => {}
                Slot::Mem { entry, bytes, loc: Some(loc) } => {
                    self.mem_bytes -= *bytes;
                    *slot = Slot::Wal { log_id: *entry.get_log_id(), loc: *loc };
                }
                // Not durable yet, and neither is anything after it.
                Slot::Mem { loc: None, .. } => break,
            }
            self.mem_from = index + 1;
        }
    }
}

/// A member never restarts as leader. openraft 0.9 resumes leading in the old term when the stored
/// vote is committed; but a leader may have sent entries to its followers before its own fsync, so
/// the tail of its log can die with it while a quorum of followers committed it. Resuming in the
/// same term, it would then hand out those same log ids (same term, same index) to new entries,
/// which the followers take for the ones they hold: logs diverge and acknowledged writes vanish
/// (found by the simulator, `leader_kill_loop` seed 10). Un-committing the vote keeps its promise —
/// no other candidate can get this member's vote in this term — and makes the member a follower
/// that needs a new election, in a higher term, to lead again, as an etcd member does.
fn restart_as_follower(cache: &mut LogCache) {
    if let Some(vote) = &mut cache.vote {
        vote.committed = false;
    }
}

/// How the writer reports that a record is durable.
enum Completion {
    Flushed(LogFlushed<TypeConfig>),
    Done(oneshot::Sender<Result<(), String>>),
}

struct WriteOp {
    record: WalRecord,
    done: Option<Completion>,
}

/// The shared in-memory view; readers and the store see the same cache. Entries no longer in
/// memory are read from the WAL in `dir`.
#[derive(Clone)]
pub struct LogReader {
    cache: Arc<Mutex<LogCache>>,
    disk: Arc<dyn Disk>,
    dir: PathBuf,
}

/// An entry as a reader finds it in the cache.
enum Found {
    Mem(Entry),
    Wal(LogId, RecordLoc),
}

fn lock(cache: &Mutex<LogCache>) -> MutexGuard<'_, LogCache> {
    // A poisoned lock means a thread panicked while changing the log: nothing sane can follow.
    cache.lock().unwrap_or_else(|poisoned| panic!("raft log cache poisoned: {poisoned}"))
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let found: Vec<Found> = lock(&self.cache)
            .entries
            .range(range)
            .map(|(_, slot)| match slot {
                Slot::Mem { entry, .. } => Found::Mem(entry.clone()),
                Slot::Wal { log_id, loc } => Found::Wal(*log_id, *loc),
            })
            .collect();
        if found.iter().all(|f| matches!(f, Found::Mem(_))) {
            return Ok(found.into_iter().filter_map(|f| if let Found::Mem(e) = f { Some(e) } else { None }).collect());
        }
        let (disk, dir) = (self.disk.clone(), self.dir.clone());
        let read = crate::runtime::run_blocking(move || read_found(disk.as_ref(), &dir, found)).await;
        let (entries, failure) = read;
        if let Some((log_id, loc, error)) = failure {
            // A purge may have removed the entry (and its segment) after the cache named it: the
            // caller gets the entries before it, as the log now holds them. Anything else is a
            // damaged log.
            let still_there = matches!(lock(&self.cache).entries.get(&log_id.index),
                Some(Slot::Wal { log_id: l, loc: at }) if *l == log_id && *at == loc);
            if still_there {
                return Err(StorageIOError::read_logs(AnyError::error(error)).into());
            }
        }
        Ok(entries)
    }
}

/// Resolves what the cache found, reading entries that left memory from the WAL; stops at the
/// first that cannot be read, and reports it.
fn read_found(disk: &dyn Disk, dir: &Path, found: Vec<Found>) -> (Vec<Entry>, Option<(LogId, RecordLoc, String)>) {
    let mut entries = Vec::with_capacity(found.len());
    for f in found {
        match f {
            Found::Mem(entry) => entries.push(entry),
            Found::Wal(log_id, loc) => {
                let record = read_record(disk, dir, loc).map_err(|e| e.to_string()).and_then(|bytes| {
                    bincode::deserialize::<WalRecord>(&bytes).map_err(|e| format!("record does not decode: {e}"))
                });
                match record {
                    Ok(WalRecord::Entry(entry)) if *entry.get_log_id() == log_id => entries.push(entry),
                    Ok(other) => {
                        let error = format!("WAL record at {loc:?} is {other:?}, expected entry {log_id}");
                        return (entries, Some((log_id, loc, error)));
                    }
                    Err(error) => return (entries, Some((log_id, loc, error))),
                }
            }
        }
    }
    (entries, None)
}

/// The bytes an entry is counted for in the cache (its requests, plus a little for the rest).
fn entry_bytes(entry: &Entry) -> u64 {
    const OVERHEAD: u64 = 64;
    match &entry.payload {
        openraft::EntryPayload::Normal(request) => {
            OVERHEAD + request.batch.iter().map(|r| r.len() as u64 + 24).sum::<u64>()
        }
        _ => OVERHEAD * 4,
    }
}

/// What `slots` hold in memory.
fn bytes_in_memory(slots: &BTreeMap<u64, Slot>) -> u64 {
    slots.values().map(Slot::mem_bytes).sum()
}

/// openraft's log storage.
pub struct LogStore {
    reader: LogReader,
    writer: mpsc::Sender<WriteOp>,
}

fn stopped() -> StorageError {
    StorageIOError::write_logs(AnyError::error("the WAL writer has stopped")).into()
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replays it, and starts the writer task.
    /// Keeps up to `cache_bytes` of durable entries in memory.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path, cache_bytes: u64) -> Result<LogStore, crate::storage::StorageError> {
        let (wal, segments) = Wal::open(disk.clone(), dir)?;
        let mut cache = LogCache::default();
        let mut segment_last_index = BTreeMap::new();
        for segment in segments {
            for ((i, bytes), loc) in segment.records.iter().enumerate().zip(segment.locs()) {
                let record: WalRecord =
                    bincode::deserialize(bytes).map_err(|e| crate::storage::StorageError::Corrupt {
                        file: dir.join(format!("{:016x}.wal", segment.seq)),
                        offset: loc.offset,
                        reason: format!("record {i} does not decode: {e}"),
                    })?;
                if let WalRecord::Entry(entry) = &record {
                    segment_last_index.insert(segment.seq, entry.get_log_id().index);
                }
                // Recovered records are durable (the WAL made them so).
                cache.apply(&record, Some(loc));
            }
            cache.note_durable(&[], cache_bytes);
        }
        restart_as_follower(&mut cache);
        tracing::info!(
            entries = cache.entries.len(),
            last_log = ?cache.last_log_id(),
            vote = ?cache.vote,
            "raft log replayed"
        );
        let state = WriterState {
            vote: cache.vote,
            committed: cache.committed,
            last_purged: cache.last_purged,
            segment_last_index,
        };
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_OPS_MAX);
        let cache = Arc::new(Mutex::new(cache));
        crate::runtime::spawn(writer_loop(wal, rx, state, cache.clone(), cache_bytes));
        Ok(LogStore { reader: LogReader { cache, disk, dir: dir.to_path_buf() }, writer: tx })
    }

    /// Queues a record; the in-memory view changes at once, the disk at the next group commit.
    async fn submit(&self, record: WalRecord, done: Option<Completion>) -> Result<(), StorageError> {
        lock(&self.reader.cache).apply(&record, None);
        self.writer.send(WriteOp { record, done }).await.map_err(|_| stopped())
    }

    /// Purges the log up to and including `log_id`, and records that entry as committed, before
    /// openraft starts: for a log found behind the state machine at start-up.
    pub async fn purge_durably(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.submit(WalRecord::Committed(Some(log_id)), None).await?;
        self.submit_durable(WalRecord::Purge(log_id)).await
    }

    /// Queues a record and waits until it is durable.
    async fn submit_durable(&self, record: WalRecord) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.submit(record, Some(Completion::Done(tx))).await?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageIOError::write_logs(AnyError::error(e)).into()),
            Err(_) => Err(stopped()),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let cache = lock(&self.reader.cache);
        Ok(LogState { last_purged_log_id: cache.last_purged, last_log_id: cache.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        if is_planted(Bug::VoteNotPersisted) {
            lock(&self.reader.cache).apply(&WalRecord::Vote(*vote), None);
            return Ok(());
        }
        self.submit_durable(WalRecord::Vote(*vote)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.reader.cache).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.submit(WalRecord::Committed(committed), None).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(lock(&self.reader.cache).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.len().checked_sub(1) else {
            // Nothing to append: report once everything queued before is durable.
            let committed = lock(&self.reader.cache).committed;
            self.submit_durable(WalRecord::Committed(committed)).await?;
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let mut callback = Some(callback);
        if is_planted(Bug::AckBeforeFsync) {
            if let Some(callback) = callback.take() {
                callback.log_io_completed(Ok(()));
            }
        }
        for (i, entry) in entries.into_iter().enumerate() {
            // The callback rides on the last entry: the writer completes ops in order.
            let done = if i == last { callback.take().map(Completion::Flushed) } else { None };
            self.submit(WalRecord::Entry(entry), done).await?;
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.submit(WalRecord::Truncate(log_id.index), None).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.submit(WalRecord::Purge(log_id), None).await
    }
}

/// What the writer remembers to start a segment and to know which segments may be deleted.
struct WriterState {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    /// Segment sequence -> index of the last entry it holds.
    segment_last_index: BTreeMap<u64, u64>,
}

/// Owns the WAL: batches queued records, one fsync per batch, completes callbacks in order.
async fn writer_loop(
    wal: Wal,
    mut rx: mpsc::Receiver<WriteOp>,
    mut state: WriterState,
    cache: Arc<Mutex<LogCache>>,
    cache_bytes: u64,
) {
    let mut wal = Some(wal);
    // Entries written since the last fsync, and where.
    let mut unsynced: Vec<(LogId, RecordLoc)> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH_OPS_MAX {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut encoded = Vec::with_capacity(batch.len());
        let mut completions = Vec::with_capacity(batch.len());
        for op in batch {
            state.note(&op.record);
            match bincode::serialize(&op.record) {
                Ok(bytes) => encoded.push((bytes, entry_log_id(&op.record))),
                Err(e) => panic!("a raft log record must always encode: {e}"),
            }
            completions.extend(op.done);
        }
        // Records nobody waits on (committed index, truncate, purge) ride along with the next fsync.
        let must_sync = !completions.is_empty();
        let Some(mut owned) = wal.take() else { return };
        let header = state.segment_header();
        let purged = state.last_purged.map(|p| p.index);
        let mut segments = std::mem::take(&mut state.segment_last_index);
        let (owned, result, segments) = crate::runtime::run_blocking(move || {
            let result = write_batch(&mut owned, &encoded, &header, purged, &mut segments, must_sync);
            (owned, result, segments)
        })
        .await;
        wal = Some(owned);
        state.segment_last_index = segments;
        let outcome = result.map(|written| unsynced.extend(written)).map_err(|e| e.to_string());
        if outcome.is_ok() && must_sync {
            lock(&cache).note_durable(&unsynced, cache_bytes);
            unsynced.clear();
        }
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "WAL write failed; the member cannot make progress");
        }
        for done in completions {
            match done {
                Completion::Flushed(cb) => cb.log_io_completed(outcome.clone().map_err(std::io::Error::other)),
                Completion::Done(tx) => {
                    let _ = tx.send(outcome.clone());
                }
            }
        }
        if outcome.is_err() {
            // Never acknowledge anything after a failed fsync: the disk state is unknown.
            return;
        }
    }
}

fn entry_log_id(record: &WalRecord) -> Option<LogId> {
    match record {
        WalRecord::Entry(e) => Some(*e.get_log_id()),
        _ => None,
    }
}

/// Appends a batch, fsyncs it, rotates a full segment and deletes segments wholly purged.
/// Returns where the batch's entries are in the WAL.
fn write_batch(
    wal: &mut Wal,
    encoded: &[(Vec<u8>, Option<LogId>)],
    header: &[Vec<u8>],
    purged_index: Option<u64>,
    segment_last_index: &mut BTreeMap<u64, u64>,
    must_sync: bool,
) -> Result<Vec<(LogId, RecordLoc)>, crate::storage::StorageError> {
    let seq = wal.current_seq();
    let mut written = Vec::new();
    for (bytes, log_id) in encoded {
        let loc = wal.append(bytes)?;
        if let Some(log_id) = log_id {
            segment_last_index.insert(seq, log_id.index);
            written.push((*log_id, loc));
        }
    }
    if !must_sync {
        return Ok(written);
    }
    wal.sync()?;
    if wal.current_len() >= SEGMENT_BYTES_TARGET {
        let refs: Vec<&[u8]> = header.iter().map(Vec::as_slice).collect();
        wal.rotate(&refs)?;
    }
    if let Some(purged) = purged_index {
        // Every segment before the first one still holding a live entry can go.
        let current = wal.current_seq();
        let keep_from =
            segment_last_index.iter().find(|(_, last)| **last > purged).map_or(current, |(seq, _)| (*seq).min(current));
        if segment_last_index.keys().next().is_some_and(|first| *first < keep_from) {
            wal.remove_segments_before(keep_from)?;
            *segment_last_index = segment_last_index.split_off(&keep_from);
        }
    }
    Ok(written)
}

impl WriterState {
    fn note(&mut self, record: &WalRecord) {
        match record {
            WalRecord::Vote(v) => self.vote = Some(*v),
            WalRecord::Committed(c) => self.committed = *c,
            WalRecord::Purge(p) => self.last_purged = Some(*p),
            WalRecord::Entry(_) | WalRecord::Truncate(_) => {}
        }
    }

    /// Records that re-state everything older segments held besides entries.
    fn segment_header(&self) -> Vec<Vec<u8>> {
        let mut header = Vec::new();
        let records = [
            self.vote.map(WalRecord::Vote),
            self.last_purged.map(WalRecord::Purge),
            Some(WalRecord::Committed(self.committed)),
        ];
        for record in records.into_iter().flatten() {
            match bincode::serialize(&record) {
                Ok(bytes) => header.push(bytes),
                Err(e) => panic!("a raft log record must always encode: {e}"),
            }
        }
        header
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::storage::MemDisk;

    const CACHE_BYTES: u64 = crate::config::RAFT_LOG_CACHE_BYTES_DEFAULT;

    #[tokio::test]
    async fn a_member_that_led_restarts_with_its_vote_uncommitted() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
        let dir = Path::new("/data/member/wal");
        disk.create_dir_all(dir).unwrap();
        let leading = Vote { leader_id: openraft::LeaderId::new(3, 7), committed: true };
        {
            let mut store = LogStore::open(disk.clone(), dir, CACHE_BYTES).unwrap();
            store.save_vote(&leading).await.unwrap();
            assert_eq!(store.read_vote().await.unwrap(), Some(leading));
        }
        let mut reopened = LogStore::open(disk, dir, CACHE_BYTES).unwrap();
        let vote = reopened.read_vote().await.unwrap().unwrap();
        assert_eq!(vote.leader_id, leading.leader_id, "the promise of term 3 is kept");
        assert!(!vote.committed, "but it must win a new election to lead");
    }

    fn entry(index: u64, fill: u8) -> Entry {
        let request = super::super::types::Request { batch: std::sync::Arc::new(vec![vec![fill; 100 * 1024]]) };
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(request),
        }
    }

    fn in_memory(store: &LogStore) -> (u64, usize) {
        let cache = lock(&store.reader.cache);
        (cache.mem_bytes, cache.entries.values().filter(|s| matches!(s, Slot::Mem { .. })).count())
    }

    #[tokio::test]
    async fn durable_entries_past_the_budget_leave_memory_and_read_back_from_the_wal() {
        let disk: Arc<dyn Disk> = Arc::new(MemDisk::new());
        let dir = Path::new("/data/member/wal");
        disk.create_dir_all(dir).unwrap();
        let written: Vec<Entry> = (1..=120).map(|i| entry(i, i as u8)).collect();
        let mut store = LogStore::open(disk.clone(), dir, CACHE_BYTES).unwrap();
        for e in &written {
            store.submit(WalRecord::Entry(e.clone()), None).await.unwrap();
        }
        assert_eq!(in_memory(&store).1, 120, "nothing leaves memory before it is durable");
        store.submit_durable(WalRecord::Committed(None)).await.unwrap();
        let (bytes, held) = in_memory(&store);
        assert!(bytes <= CACHE_BYTES && held < 120 && held > 0, "{bytes} bytes in {held} entries");
        assert_eq!(store.try_get_log_entries(..).await.unwrap(), written);
        assert_eq!(store.try_get_log_entries(3..7).await.unwrap(), written[2..6].to_vec());

        // The replayed log keeps to the same budget and reads the same.
        drop(store);
        let mut reopened = LogStore::open(disk.clone(), dir, CACHE_BYTES).unwrap();
        assert!(in_memory(&reopened).0 <= CACHE_BYTES);
        assert_eq!(reopened.try_get_log_entries(..).await.unwrap(), written);

        // Purged entries are gone; an entry that replaces one read from the WAL is the new one.
        reopened.purge(*written[49].get_log_id()).await.unwrap();
        let replacement = entry(51, 0xee);
        reopened.submit(WalRecord::Entry(replacement.clone()), None).await.unwrap();
        let expected: Vec<Entry> = vec![replacement];
        assert_eq!(reopened.try_get_log_entries(..).await.unwrap(), expected);
        assert_eq!(reopened.get_log_state().await.unwrap().last_log_id, Some(*expected[0].get_log_id()));
    }
}
