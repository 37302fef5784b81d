//! [`Wal`]: a segmented, append-only, checksummed record log on one directory of a [`Disk`].
//!
//! # Life of a record
//!
//! [`Wal::append`] frames the record into an in-memory buffer (cheap: no system call until the
//! buffer passes [`WRITE_BUFFER_BYTES_MAX`], which syncs). [`Wal::sync`] writes the buffer to the
//! current segment and syncs it: every record appended before a successful `sync` survives any
//! crash. The owner appends many records, then syncs once (group commit). Every sync covers one
//! write of records, so a crash can only ever tear the records written after the last sync.
//!
//! # Room written ahead
//!
//! The current segment is kept longer than its records: zeros, written and synced ahead of them
//! in steps of [`ROOM_BYTES`]. A sync of records written over those zeros changes no file
//! metadata (neither its size nor its allocation), which on ext4 makes `fdatasync` markedly
//! cheaper than one that grows the file (measured: 123–134 µs against 183–227 µs per 8 KiB
//! append on this project's machines). The records end where the zeros begin: a record header is
//! never all zeros (see `segment.rs`). A segment is cut to its records when the next one is
//! created, so only the last segment has room.
//!
//! # Segments
//!
//! The log is a run of segment files `{seq:016x}.wal` with contiguous sequence numbers (format in
//! `segment.rs`). Only the last one, the current segment, grows. The owner decides when to start a
//! new one ([`Wal::rotate`], typically once [`Wal::current_len`] passes [`SEGMENT_BYTES_TARGET`])
//! and which records open it (e.g. the state needed to read it without its predecessors). A new
//! segment is written whole under a temporary name, synced, renamed into place, and the directory
//! synced: a segment visible under its final name is always complete up to its header records, and
//! a leftover temporary file is a rotation that never happened (removed at open).
//!
//! # Recovery ([`Wal::open`])
//!
//! Every segment is decoded and checked. Only the tail of the last segment may be torn (records
//! appended after the last sync); it is cut off, durably, with a warning. Cutting, rather than
//! zeroing, also removes any stale bytes past the records, so that no leftover of a torn write can
//! ever follow records appended later. Everything recovered is
//! then made durable (the last segment and the directory are synced), because the previous
//! process may have died with written but unsynced records in the page cache, and the owner
//! treats recovered records as durable. Anything else that is not
//! what this module wrote is [`StorageError::Corrupt`], naming the file and offset: the node must
//! refuse to start rather than serve from a damaged log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::segment::{
    classify, decode_record, decode_segment, encode_header, encode_record, segment_path, tmp_path, EntryKind,
    RECORD_BYTES_MAX, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use super::{Disk, RandomFile, StorageError};

/// The segment size past which the owner should [`Wal::rotate`]. Advisory: the WAL does not rotate
/// by itself, because a new segment opens with the owner's header records.
pub const SEGMENT_BYTES_TARGET: u64 = 64 * 1024 * 1024;
/// The hard limit of one segment: [`Wal::append`] refuses to grow the current segment past it
/// ([`StorageError::SegmentFull`]). Recovery reads whole segments into memory; this bounds that.
pub const SEGMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Buffered (appended, not yet written) bytes past which [`Wal::append`] syncs, to bound the
/// WAL's memory between syncs.
pub const WRITE_BUFFER_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How much zero-filled room a sync that runs out of it writes ahead of the records.
#[cfg(not(madsim))]
pub const ROOM_BYTES: u64 = 1024 * 1024;
/// Under the simulator, 64 KiB: runs cross the end of the room more often, and the in-memory
/// disk, which copies a file's image on every crash and reopen, has less to copy (with 1 MiB a
/// 66-seed campaign took 64.7 s instead of 53.8 s).
#[cfg(madsim)]
pub const ROOM_BYTES: u64 = 64 * 1024;
/// Zeros written ahead, a piece at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Where a record is: its segment, the offset of its frame in the segment, its payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLoc {
    pub seq: u64,
    pub offset: u64,
    pub len: u32,
}

/// Reads back, and checks, the record at `loc` of the WAL in `dir`. The record must have been
/// written (appended and synced, or recovered) and its segment not removed since.
pub fn read_record(disk: &dyn Disk, dir: &Path, loc: RecordLoc) -> Result<Vec<u8>, StorageError> {
    let path = segment_path(dir, loc.seq);
    let framed = disk.read_range(&path, loc.offset, RECORD_HEADER_BYTES as usize + loc.len as usize)?;
    decode_record(&path, loc.offset, &framed)
}

/// One segment as recovered by [`Wal::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its sequence number; consecutive segments have consecutive numbers.
    pub seq: u64,
    /// Its records, in append order (header records first).
    pub records: Vec<Vec<u8>>,
}

impl Segment {
    /// Where each of its records is, in the same order as `records`.
    pub fn locs(&self) -> Vec<RecordLoc> {
        let mut offset = SEGMENT_HEADER_BYTES;
        self.records
            .iter()
            .map(|record| {
                let loc = RecordLoc { seq: self.seq, offset, len: record.len() as u32 };
                offset += RECORD_HEADER_BYTES + record.len() as u64;
                loc
            })
            .collect()
    }
}

/// A segmented, append-only, checksummed record log; see the module doc.
pub struct Wal {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// The oldest segment still on disk.
    first_seq: u64,
    /// The current segment, the only one that grows.
    seq: u64,
    file: Box<dyn RandomFile>,
    /// Bytes of records (and header) of the current segment handed to the file, durable or not.
    written_len: u64,
    /// Bytes of the current segment's records known durable.
    synced_len: u64,
    /// The length of the current segment's file: past `written_len` it holds only zeros.
    file_len: u64,
    /// [`ROOM_BYTES`], lowered by tests to exercise records written over and past the room.
    room_bytes: u64,
    /// Framed records appended but not yet handed to the file.
    buf: Vec<u8>,
    /// Set by a failed write or sync: what reached the disk is unknown.
    poisoned: bool,
    /// [`WRITE_BUFFER_BYTES_MAX`], lowered by tests to exercise written-but-unsynced bytes.
    write_buffer_bytes_max: usize,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("first_seq", &self.first_seq)
            .field("seq", &self.seq)
            .field("written_len", &self.written_len)
            .field("synced_len", &self.synced_len)
            .field("file_len", &self.file_len)
            .field("buffered_bytes", &self.buf.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

fn check_record_len(payload: &[u8]) -> Result<u64, StorageError> {
    let len_bytes = payload.len() as u64;
    if len_bytes > RECORD_BYTES_MAX {
        return Err(StorageError::RecordTooLarge { len_bytes, max_bytes: RECORD_BYTES_MAX });
    }
    Ok(RECORD_HEADER_BYTES + len_bytes)
}

impl Wal {
    /// Opens the log in `dir`, creating the directory and a first segment (seq 0) if there is
    /// none, and recovers every segment on disk, oldest first. A torn tail of the last segment is
    /// cut off (durably, through the disk) with a warning; see the module doc for what is corrupt.
    pub fn open(disk: Arc<dyn Disk>, dir: &Path) -> Result<(Wal, Vec<Segment>), StorageError> {
        disk.create_dir_all(dir)?;
        let seqs = scan_dir(disk.as_ref(), dir)?;
        let (Some(&first_seq), Some(&last_seq)) = (seqs.first(), seqs.last()) else {
            let (file, len) = create_segment(disk.as_ref(), dir, 0, &[])?;
            let wal = Wal::new(disk, dir, 0, 0, file, len)?;
            return Ok((wal, vec![Segment { seq: 0, records: Vec::new() }]));
        };
        let mut segments = Vec::with_capacity(seqs.len());
        let mut end = SEGMENT_HEADER_BYTES;
        for &seq in &seqs {
            let (records, records_end) = recover_segment(disk.as_ref(), dir, seq, seq == last_seq)?;
            segments.push(Segment { seq, records });
            end = records_end;
        }
        // What was recovered may sit unsynced in the page cache (the previous process was killed
        // between a write and its sync, or between a rotation's rename and its directory sync).
        // The owner will treat recovered records as durable: make them so.
        let file = disk.open_positional(&segment_path(dir, last_seq))?;
        file.sync()?;
        disk.sync_dir(dir)?;
        let wal = Wal::new(disk, dir, first_seq, last_seq, file, end)?;
        Ok((wal, segments))
    }

    /// A log whose current segment `seq` holds records up to `end`, and only zeros after that.
    fn new(
        disk: Arc<dyn Disk>,
        dir: &Path,
        first_seq: u64,
        seq: u64,
        file: Box<dyn RandomFile>,
        end: u64,
    ) -> Result<Wal, StorageError> {
        assert!(first_seq <= seq, "first segment after the current one");
        let file_len = file.len()?;
        assert!(end <= file_len, "records end past the end of their segment");
        Ok(Wal {
            disk,
            dir: dir.to_path_buf(),
            first_seq,
            seq,
            file,
            written_len: end,
            synced_len: end,
            file_len,
            room_bytes: ROOM_BYTES,
            buf: Vec::new(),
            poisoned: false,
            write_buffer_bytes_max: WRITE_BUFFER_BYTES_MAX,
        })
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number of the current segment (the one appended to).
    pub fn current_seq(&self) -> u64 {
        self.seq
    }

    /// The sequence number of the oldest segment still on disk.
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// The length of the current segment in bytes, counting its header and every record appended,
    /// synced or not.
    pub fn current_len(&self) -> u64 {
        self.written_len + self.buf.len() as u64
    }

    /// Lowers the write-buffer limit, so that tests sync in the middle of a run of appends.
    #[cfg(test)]
    pub(super) fn set_write_buffer_bytes_max(&mut self, bytes: usize) {
        assert!(bytes <= WRITE_BUFFER_BYTES_MAX);
        self.write_buffer_bytes_max = bytes;
    }

    /// Lowers the room written ahead, so that tests write records over it and past it.
    #[cfg(test)]
    pub(super) fn set_room_bytes(&mut self, bytes: u64) {
        assert!(bytes <= ROOM_BYTES);
        self.room_bytes = bytes;
    }

    /// The length of the current segment's file, room included.
    #[cfg(test)]
    pub(super) fn file_len(&self) -> u64 {
        self.file_len
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }

    /// Appends one record to the current segment and returns where it is, for [`read_record`].
    /// Not durable until [`Wal::sync`] returns `Ok` (a full buffer syncs here). Fails with
    /// [`StorageError::RecordTooLarge`] past [`RECORD_BYTES_MAX`], and with
    /// [`StorageError::SegmentFull`] if the segment would pass [`SEGMENT_BYTES_MAX`].
    pub fn append(&mut self, payload: &[u8]) -> Result<RecordLoc, StorageError> {
        self.check_usable()?;
        let framed_bytes = check_record_len(payload)?;
        if self.current_len() + framed_bytes > SEGMENT_BYTES_MAX {
            return Err(StorageError::SegmentFull { seq: self.seq, max_bytes: SEGMENT_BYTES_MAX });
        }
        let loc = RecordLoc { seq: self.seq, offset: self.current_len(), len: payload.len() as u32 };
        encode_record(&mut self.buf, payload);
        if self.buf.len() >= self.write_buffer_bytes_max {
            // Synced, not just written: a second write before the sync could reach the disk while
            // this one did not, leaving zeros between records.
            self.sync()?;
        }
        Ok(loc)
    }

    /// Hands the buffered records to the file (no sync) after the records already there, and
    /// zeros after them if they used up the room. Poisons the WAL on failure.
    fn write_buffer(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(err) = self.write_records_and_room() {
            self.poisoned = true;
            return Err(err);
        }
        Ok(())
    }

    fn write_records_and_room(&mut self) -> Result<(), StorageError> {
        self.file.write_at(self.written_len, &self.buf)?;
        self.written_len += self.buf.len() as u64;
        self.buf.clear();
        self.file_len = self.file_len.max(self.written_len);
        if self.file_len > self.written_len {
            return Ok(());
        }
        // Never past the size recovery accepts.
        let room_end = (self.written_len + self.room_bytes).min(SEGMENT_BYTES_MAX);
        while self.file_len < room_end {
            let piece = (room_end - self.file_len).min(ZEROS.len() as u64) as usize;
            self.file.write_at(self.file_len, &ZEROS[..piece])?;
            self.file_len += piece as u64;
        }
        Ok(())
    }

    /// Makes every record appended so far durable: writes the buffer to the current segment and
    /// syncs it. Does nothing if nothing was appended since the last sync. A failure poisons the
    /// WAL: every later call fails with [`StorageError::Poisoned`] until it is reopened.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        self.write_buffer()?;
        if self.synced_len == self.written_len {
            return Ok(());
        }
        if let Err(err) = self.file.sync() {
            self.poisoned = true;
            return Err(err);
        }
        assert!(self.buf.is_empty(), "unwritten bytes after a sync");
        self.synced_len = self.written_len;
        Ok(())
    }

    /// Syncs the current segment, then starts segment `current_seq() + 1` holding
    /// `header_records`, durably (file and directory synced), and makes it current. Returns its
    /// sequence number. A failure poisons the WAL.
    pub fn rotate(&mut self, header_records: &[&[u8]]) -> Result<u64, StorageError> {
        self.check_usable()?;
        let mut framed_bytes = 0;
        for record in header_records {
            framed_bytes += check_record_len(record)?;
        }
        if framed_bytes > SEGMENT_BYTES_MAX {
            let next = self.seq.saturating_add(1);
            return Err(StorageError::SegmentFull { seq: next, max_bytes: SEGMENT_BYTES_MAX });
        }
        self.sync()?;
        match self.start_next_segment(header_records) {
            Ok(next) => Ok(next),
            Err(err) => {
                self.poisoned = true;
                Err(err)
            }
        }
    }

    fn start_next_segment(&mut self, header_records: &[&[u8]]) -> Result<u64, StorageError> {
        let Some(next) = self.seq.checked_add(1) else {
            let path = segment_path(&self.dir, self.seq);
            return Err(StorageError::corrupt(path, 8, "segment numbers exhausted"));
        };
        // Only the last segment may end in zeros: cut this one to its records, durably, first.
        if self.file_len > self.written_len {
            self.file.set_len(self.written_len)?;
            self.file.sync()?;
            self.file_len = self.written_len;
        }
        let (file, len) = create_segment(self.disk.as_ref(), &self.dir, next, header_records)?;
        assert!(next > self.seq, "segment numbers must strictly increase");
        self.seq = next;
        self.file = file;
        self.written_len = len;
        self.synced_len = len;
        self.file_len = len;
        Ok(next)
    }

    /// Deletes every segment older than `seq` (never the current one), oldest first, syncing the
    /// directory after each removal so that a crash leaves a contiguous run of segments on any file
    /// system. Returns how many were removed.
    pub fn remove_segments_before(&mut self, seq: u64) -> Result<u64, StorageError> {
        self.check_usable()?;
        let end = seq.min(self.seq);
        let mut removed = 0;
        while self.first_seq < end {
            self.disk.remove_file(&segment_path(&self.dir, self.first_seq))?;
            self.disk.sync_dir(&self.dir)?;
            self.first_seq += 1;
            removed += 1;
        }
        assert!(self.first_seq <= self.seq, "removed the current segment");
        Ok(removed)
    }
}

/// Lists the segments of `dir`, sorted and checked contiguous, after removing leftover temporary
/// files (rotations that never completed).
fn scan_dir(disk: &dyn Disk, dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut seqs = Vec::new();
    let mut removed_tmp = false;
    for name in disk.list_dir(dir)? {
        match classify(dir, &name)? {
            EntryKind::Segment(seq) => seqs.push(seq),
            EntryKind::Tmp => {
                let path = dir.join(&name);
                tracing::warn!(file = %path.display(), "removing an unfinished WAL segment");
                disk.remove_file(&path)?;
                removed_tmp = true;
            }
            EntryKind::Other => {
                tracing::debug!(dir = %dir.display(), name, "ignoring a non-WAL file");
            }
        }
    }
    if removed_tmp {
        disk.sync_dir(dir)?;
    }
    seqs.sort_unstable();
    for pair in seqs.windows(2) {
        if pair[1] != pair[0] + 1 {
            let reason =
                format!("segment numbers jump from {:016x} to {:016x}: segments are missing", pair[0], pair[1]);
            return Err(StorageError::corrupt(segment_path(dir, pair[1]), 0, reason));
        }
    }
    Ok(seqs)
}

/// Reads and decodes segment `seq`; in the last segment, cuts a torn tail off durably. Returns its
/// records and where they end.
fn recover_segment(disk: &dyn Disk, dir: &Path, seq: u64, is_last: bool) -> Result<(Vec<Vec<u8>>, u64), StorageError> {
    let path = segment_path(dir, seq);
    let bytes = disk.read_all(&path)?;
    if bytes.len() as u64 > SEGMENT_BYTES_MAX {
        let reason = format!("segment is larger than the limit of {SEGMENT_BYTES_MAX} bytes");
        return Err(StorageError::corrupt(&path, SEGMENT_BYTES_MAX, reason));
    }
    let decoded = decode_segment(&path, &bytes, seq, is_last)?;
    if let Some(reason) = decoded.torn {
        tracing::warn!(
            file = %path.display(),
            offset = decoded.end,
            cut_bytes = bytes.len() as u64 - decoded.end,
            reason,
            "truncating the torn tail of the last WAL segment"
        );
        disk.truncate(&path, decoded.end)?;
    }
    Ok((decoded.records, decoded.end))
}

/// Writes segment `seq` holding `records` under a temporary name, syncs it, renames it into place
/// and syncs the directory. Returns it open for positional writes, with its length.
fn create_segment(
    disk: &dyn Disk,
    dir: &Path,
    seq: u64,
    records: &[&[u8]],
) -> Result<(Box<dyn RandomFile>, u64), StorageError> {
    let path = segment_path(dir, seq);
    if disk.exists(&path)? {
        return Err(StorageError::corrupt(&path, 0, "segment exists already"));
    }
    let mut bytes = encode_header(seq);
    for record in records {
        encode_record(&mut bytes, record);
    }
    let tmp = tmp_path(dir, seq);
    let mut file = disk.create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync()?;
    drop(file);
    disk.rename(&tmp, &path)?;
    disk.sync_dir(dir)?;
    let file = disk.open_positional(&path)?;
    let len = file.len()?;
    if len != bytes.len() as u64 {
        let reason = format!("new segment is {len} bytes, {} were written", bytes.len());
        return Err(StorageError::corrupt(&path, len, reason));
    }
    Ok((file, len))
}
