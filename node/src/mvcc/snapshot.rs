//! The snapshot image: every record, the revisions and the Raft layer's meta values, in one
//! self-contained, checksummed byte string.
//!
//! Layout: `magic (8 bytes) | format u32 | current revision i64 | compaction revision i64 |
//! meta count u64 | (name, value)* | record count u64 | (main i64, sub i64, record)* | crc32`,
//! byte strings length-prefixed (u64), integers big-endian. Reading validates everything (image
//! checksum, every record's checksum, the key index invariants) before anything is installed.

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::codec::{ByteReader, ByteWriter};
use super::index::KeyIndex;
use super::schema::{
    is_local_meta, Rev, APP_META, FORMAT_VERSION, META_COMPACT_REV, META_CURRENT_REV, META_FORMAT, MVCC_META,
    NEVER_COMPACTED, REVISIONS,
};
use super::store::{check_revisions, load_record, read_revisions};
use super::MvccError;

const MAGIC: &[u8; 8] = b"detcdMVC";
const IMAGE_FORMAT: u32 = 1;

/// A validated image, ready to install.
pub(super) struct Image {
    pub current_rev: i64,
    pub compact_rev: i64,
    pub app_meta: Vec<(String, Vec<u8>)>,
    /// Encoded records, in revision order.
    pub records: Vec<(Rev, Vec<u8>)>,
    /// The key index of `records`.
    pub index: KeyIndex,
}

/// Serializes everything visible to `read`.
pub(super) fn write_image(read: &ReadTransaction) -> Result<Vec<u8>, MvccError> {
    let (current_rev, compact_rev) = read_revisions(&read.open_table(MVCC_META)?)?;
    let mut w = ByteWriter::with_capacity(4096);
    w.raw(MAGIC);
    w.u32(IMAGE_FORMAT);
    w.i64(current_rev);
    w.i64(compact_rev);
    let mut shared_meta = Vec::new();
    for item in read.open_table(APP_META)?.iter()? {
        let (name, value) = item?;
        if !is_local_meta(name.value()) {
            shared_meta.push((name.value().to_string(), value.value().to_vec()));
        }
    }
    w.u64(shared_meta.len() as u64);
    for (name, value) in &shared_meta {
        w.bytes(name.as_bytes());
        w.bytes(value);
    }
    let revisions = read.open_table(REVISIONS)?;
    w.u64(revisions.len()?);
    let mut check = KeyIndex::default();
    for item in revisions.iter()? {
        let (key, value) = item?;
        let rev = Rev::from_key(key.value())?;
        // Never ship a corrupt record to another member: validate as the receiver would.
        load_record(&mut check, rev, value.value(), current_rev)?;
        w.i64(rev.main);
        w.i64(rev.sub);
        w.bytes(value.value());
    }
    Ok(w.finish_with_crc())
}

/// Parses and validates an image; any defect is [`MvccError::Corrupt`].
pub(super) fn read_image(bytes: &[u8]) -> Result<Image, MvccError> {
    let corrupt = |why: String| MvccError::Corrupt(format!("snapshot image: {why}"));
    let mut r = ByteReader::with_crc(bytes).map_err(corrupt)?;
    if r.take(MAGIC.len()).map_err(corrupt)? != MAGIC {
        return Err(corrupt("bad magic".to_string()));
    }
    let format = r.u32().map_err(corrupt)?;
    if format != IMAGE_FORMAT {
        return Err(corrupt(format!("unsupported format {format}")));
    }
    let current_rev = r.i64().map_err(corrupt)?;
    let compact_rev = r.i64().map_err(corrupt)?;
    check_revisions(current_rev, compact_rev)?;
    let mut app_meta = Vec::new();
    for _ in 0..r.u64().map_err(corrupt)? {
        let at = r.position();
        let name = std::str::from_utf8(r.bytes().map_err(corrupt)?)
            .map_err(|_| corrupt(format!("meta name at offset {at} is not UTF-8")))?;
        let value = r.bytes().map_err(corrupt)?;
        app_meta.push((name.to_string(), value.to_vec()));
    }
    let mut records: Vec<(Rev, Vec<u8>)> = Vec::new();
    let mut index = KeyIndex::default();
    for _ in 0..r.u64().map_err(corrupt)? {
        let at = r.position();
        let (main, sub) = (r.i64().map_err(corrupt)?, r.i64().map_err(corrupt)?);
        if main <= 0 || sub < 0 || records.last().is_some_and(|(last, _)| *last >= Rev { main, sub }) {
            return Err(corrupt(format!("record revision {main}.{sub} at offset {at} is out of order")));
        }
        let rev = Rev::new(main, sub);
        let record = r.bytes().map_err(corrupt)?;
        load_record(&mut index, rev, record, current_rev)?;
        records.push((rev, record.to_vec()));
    }
    r.finish().map_err(corrupt)?;
    Ok(Image { current_rev, compact_rev, app_meta, records, index })
}

/// Replaces the contents of every mvcc table in `txn` with `image`, but keeps this member's local
/// meta values (an image never carries another member's identity).
pub(super) fn install(txn: &WriteTransaction, image: &Image) -> Result<(), MvccError> {
    let mut local_meta = Vec::new();
    for item in txn.open_table(APP_META)?.iter()? {
        let (name, value) = item?;
        if is_local_meta(name.value()) {
            local_meta.push((name.value().to_string(), value.value().to_vec()));
        }
    }
    txn.delete_table(REVISIONS)?;
    txn.delete_table(APP_META)?;
    txn.delete_table(MVCC_META)?;
    let mut revisions = txn.open_table(REVISIONS)?;
    for (rev, record) in &image.records {
        revisions.insert(rev.to_key(), record.as_slice())?;
    }
    let mut app_meta = txn.open_table(APP_META)?;
    for (name, value) in image.app_meta.iter().filter(|(name, _)| !is_local_meta(name)).chain(&local_meta) {
        app_meta.insert(name.as_str(), value.as_slice())?;
    }
    let mut meta = txn.open_table(MVCC_META)?;
    meta.insert(META_FORMAT, FORMAT_VERSION.to_be_bytes().as_slice())?;
    meta.insert(META_CURRENT_REV, image.current_rev.to_be_bytes().as_slice())?;
    if image.compact_rev != NEVER_COMPACTED {
        meta.insert(META_COMPACT_REV, image.compact_rev.to_be_bytes().as_slice())?;
    }
    Ok(())
}
