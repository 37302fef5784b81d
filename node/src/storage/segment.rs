//! The on-disk format of a WAL segment: its file name, its header, the record framing, and the
//! decoder that validates all three. Pure functions over bytes; no I/O.
//!
//! ```text
//! segment file  {seq:016x}.wal
//! header        magic "DWAL" | version: u32 LE | seq: u64 LE                 (16 bytes)
//! record        len: u32 LE | crc32(len LE bytes ++ payload): u32 LE | payload   (8 + len bytes)
//! ```
//!
//! The checksum covers the length field too, so a flipped length is caught, and a run of zero
//! bytes never decodes as a valid record (crc32 of four zero bytes is not zero).
//!
//! The last segment may end in zeros: room written ahead of the records (see `wal.rs`), so that
//! appending overwrites bytes already on disk instead of growing the file. Records end where the
//! zeros begin; every other segment ends exactly with its last record.

use std::path::{Path, PathBuf};

use super::StorageError;

/// The first bytes of every segment.
pub(super) const SEGMENT_MAGIC: [u8; 4] = *b"DWAL";
/// The format version written in every segment header.
pub(super) const SEGMENT_VERSION: u32 = 1;
/// Size of the segment header: magic, version, sequence number.
pub const SEGMENT_HEADER_BYTES: u64 = 16;
/// Size of a record's framing: length and checksum.
pub const RECORD_HEADER_BYTES: u64 = 8;
/// The largest payload of one record. A longer length on disk is corruption, never a torn write.
pub const RECORD_BYTES_MAX: u64 = 64 * 1024 * 1024;

const SEGMENT_SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".wal.tmp";
/// Hex digits of the sequence number in a segment file name.
const SEQ_DIGITS: usize = 16;

/// The path of segment `seq` in `dir`.
pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}{SEGMENT_SUFFIX}"))
}

/// The path under which segment `seq` is written before it is renamed into place.
pub(super) fn tmp_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016x}{TMP_SUFFIX}"))
}

/// What a directory entry is to the WAL.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EntryKind {
    Segment(u64),
    /// A segment whose creation never completed (crash before its rename).
    Tmp,
    /// Not the WAL's: left alone.
    Other,
}

/// Classifies a directory entry by name; a `.wal` name that is not `{seq:016x}.wal` is corrupt.
pub(super) fn classify(dir: &Path, name: &str) -> Result<EntryKind, StorageError> {
    if name.ends_with(TMP_SUFFIX) {
        return Ok(EntryKind::Tmp);
    }
    let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) else {
        return Ok(EntryKind::Other);
    };
    let well_formed =
        stem.len() == SEQ_DIGITS && stem.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match u64::from_str_radix(stem, 16) {
        Ok(seq) if well_formed => Ok(EntryKind::Segment(seq)),
        _ => Err(StorageError::corrupt(dir.join(name), 0, "segment file name is not {seq:016x}.wal")),
    }
}

/// The header of segment `seq`.
pub(super) fn encode_header(seq: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    header.extend_from_slice(&SEGMENT_MAGIC);
    header.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header.extend_from_slice(&seq.to_le_bytes());
    assert_eq!(header.len() as u64, SEGMENT_HEADER_BYTES);
    header
}

fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends the framed `payload` to `buf`. The caller has checked it against [`RECORD_BYTES_MAX`].
pub(super) fn encode_record(buf: &mut Vec<u8>, payload: &[u8]) {
    assert!(payload.len() as u64 <= RECORD_BYTES_MAX, "unchecked record");
    let len_bytes = (payload.len() as u32).to_le_bytes();
    buf.extend_from_slice(&len_bytes);
    buf.extend_from_slice(&checksum(len_bytes, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

/// Checks one framed record read back from `file` at `offset` (`framed`: its header and payload)
/// and returns its payload.
pub(super) fn decode_record(file: &Path, offset: u64, framed: &[u8]) -> Result<Vec<u8>, StorageError> {
    let header = RECORD_HEADER_BYTES as usize;
    if framed.len() < header {
        return Err(StorageError::corrupt(file, offset, "record shorter than its header".to_string()));
    }
    let len = u32_at(framed, 0);
    let payload = &framed[header..];
    if len as usize != payload.len() {
        let reason = format!("record holds {len} bytes, {} expected", payload.len());
        return Err(StorageError::corrupt(file, offset, reason));
    }
    if u32_at(framed, 4) != checksum(len.to_le_bytes(), payload) {
        return Err(StorageError::corrupt(file, offset, "record checksum mismatch".to_string()));
    }
    Ok(payload.to_vec())
}

/// A segment as decoded from its bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Decoded {
    pub records: Vec<Vec<u8>>,
    /// Where the records end: the next record goes there.
    pub end: u64,
    /// For the last segment only: why the bytes from `end` on are a torn tail (the file must be
    /// cut there, as they are neither records nor zeros).
    pub torn: Option<String>,
}

/// Reads 4 bytes at `at`; the caller has checked the bounds.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn decode_header(file: &Path, bytes: &[u8], seq: u64) -> Result<(), StorageError> {
    if (bytes.len() as u64) < SEGMENT_HEADER_BYTES {
        let reason = format!("segment is {} bytes, shorter than its {SEGMENT_HEADER_BYTES}-byte header", bytes.len());
        return Err(StorageError::corrupt(file, 0, reason));
    }
    if bytes[..4] != SEGMENT_MAGIC {
        let reason = format!("bad magic {:02x?}, expected {SEGMENT_MAGIC:02x?}", &bytes[..4]);
        return Err(StorageError::corrupt(file, 0, reason));
    }
    let version = u32_at(bytes, 4);
    if version != SEGMENT_VERSION {
        let reason = format!("unsupported segment version {version}");
        return Err(StorageError::corrupt(file, 4, reason));
    }
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&bytes[8..16]);
    let header_seq = u64::from_le_bytes(seq_bytes);
    if header_seq != seq {
        let reason = format!("header names segment {header_seq:016x}, file name {seq:016x}");
        return Err(StorageError::corrupt(file, 8, reason));
    }
    Ok(())
}

/// Where the data of a segment ends: after its last non-zero byte, and never inside the header.
/// Past it there are only zeros (room written ahead in the last segment).
fn data_end(bytes: &[u8]) -> usize {
    let header = SEGMENT_HEADER_BYTES as usize;
    bytes.iter().rposition(|&b| b != 0).map_or(header, |last| (last + 1).max(header))
}

/// Decodes segment `seq` read from `file`. Records end at the first position from which only
/// zeros follow (a record header is never all zeros): in the last segment that is the room
/// written ahead; in any other it is corruption, because a segment is cut to its records before
/// the next one is created. In the last segment (`is_last`), a record cut short by the end of the
/// file or by the zeros after the data, or a final record whose checksum fails, is a torn write:
/// decoding stops there and reports it, unless whole records follow the bad one up to the end of
/// the data (a damaged length field, see [`whole_records_follow`]). Anything else that is not a
/// valid record is [`StorageError::Corrupt`].
pub(super) fn decode_segment(file: &Path, bytes: &[u8], seq: u64, is_last: bool) -> Result<Decoded, StorageError> {
    decode_header(file, bytes, seq)?;
    let file_len = bytes.len();
    let data_end = data_end(bytes);
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES as usize;
    // Bounded: every iteration advances `at` by at least RECORD_HEADER_BYTES.
    while at < data_end {
        let offset = at as u64;
        let remaining = file_len - at;
        if (remaining as u64) < RECORD_HEADER_BYTES {
            let reason = format!("record header cut short: {remaining} bytes before end of file");
            return torn_tail(file, offset, is_last, reason, records);
        }
        let len = u32_at(bytes, at);
        let stored_crc = u32_at(bytes, at + 4);
        if u64::from(len) > RECORD_BYTES_MAX {
            let reason = format!("record length {len} exceeds the limit of {RECORD_BYTES_MAX}");
            return Err(StorageError::corrupt(file, offset, reason));
        }
        let payload_at = at + RECORD_HEADER_BYTES as usize;
        let end = payload_at + len as usize;
        if end > file_len {
            let reason = format!("record of {len} bytes cut short: {} bytes before end of file", file_len - payload_at);
            if whole_records_follow(bytes, payload_at, data_end) {
                return Err(StorageError::corrupt(file, offset, format!("{reason}, yet whole records follow it")));
            }
            return torn_tail(file, offset, is_last, reason, records);
        }
        let payload = &bytes[payload_at..end];
        let crc = checksum(len.to_le_bytes(), payload);
        if crc != stored_crc {
            let reason = format!("checksum mismatch: stored {stored_crc:08x}, computed {crc:08x}");
            if end >= data_end && !whole_records_follow(bytes, payload_at, data_end) {
                return torn_tail(file, offset, is_last, reason, records);
            }
            return Err(StorageError::corrupt(file, offset, reason));
        }
        records.push(payload.to_vec());
        at = end;
    }
    if at < file_len && !is_last {
        let reason = format!("{} zero bytes after the last record of a segment that is not the last", file_len - at);
        return Err(StorageError::corrupt(file, at as u64, reason));
    }
    Ok(Decoded { records, end: at as u64, torn: None })
}

/// Whether a run of valid records starts somewhere at or after `from` and reaches the end of the
/// data (`data_end`, see [`data_end`]). A torn write keeps a prefix of what was written, so the
/// bytes after the header of the record it cut are a prefix of that record's payload and never
/// end in whole records. When they do, the record's length field was damaged in place:
/// corruption, not a torn tail (cutting the file there would drop records that were durable).
fn whole_records_follow(bytes: &[u8], from: usize, data_end: usize) -> bool {
    (from..data_end).any(|start| records_reach(bytes, start, data_end))
}

/// Whether valid records, one after another from `at`, reach `data_end` (the last one ends at
/// or past it, within the file).
fn records_reach(bytes: &[u8], mut at: usize, data_end: usize) -> bool {
    let header = RECORD_HEADER_BYTES as usize;
    while bytes.len() - at >= header {
        let len = u32_at(bytes, at) as usize;
        let payload_at = at + header;
        let Some(payload) = bytes.get(payload_at..payload_at.saturating_add(len)) else {
            return false;
        };
        if u32_at(bytes, at + 4) != checksum((len as u32).to_le_bytes(), payload) {
            return false;
        }
        at = payload_at + len;
        if at >= data_end {
            return true;
        }
    }
    false
}

/// The end of decoding at a tail that looks torn: a torn write in the last segment, corruption
/// in any other (every segment but the last was synced whole before the next one was created).
fn torn_tail(
    file: &Path,
    offset: u64,
    is_last: bool,
    reason: String,
    records: Vec<Vec<u8>>,
) -> Result<Decoded, StorageError> {
    if !is_last {
        return Err(StorageError::corrupt(file, offset, reason));
    }
    Ok(Decoded { records, end: offset, torn: Some(reason) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn segment(seq: u64, payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = encode_header(seq);
        for payload in payloads {
            encode_record(&mut bytes, payload);
        }
        bytes
    }

    #[test]
    fn a_zero_filled_record_never_has_a_valid_checksum() {
        assert_ne!(checksum([0; 4], &[]), 0);
    }

    #[test]
    fn decode_returns_every_record_in_order() {
        let bytes = segment(3, &[b"a", b"", b"ccc"]);
        let decoded = decode_segment(Path::new("s"), &bytes, 3, false).unwrap();
        assert_eq!(decoded.records, vec![b"a".to_vec(), vec![], b"ccc".to_vec()]);
        assert_eq!(decoded.end, bytes.len() as u64);
        assert_eq!(decoded.torn, None);
    }

    #[test]
    fn zeros_after_the_records_of_the_last_segment_are_room_not_a_torn_tail() {
        // The last record's payload ends in zeros too: the records still end after it.
        let mut bytes = segment(0, &[b"kept", b"ends in zeros\0\0\0"]);
        let good_len = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 100]);
        let decoded = decode_segment(Path::new("s"), &bytes, 0, true).unwrap();
        assert_eq!(decoded.records, vec![b"kept".to_vec(), b"ends in zeros\0\0\0".to_vec()]);
        assert_eq!((decoded.end, decoded.torn), (good_len, None));
        let err = decode_segment(Path::new("s"), &bytes, 0, false).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset, .. } if offset == good_len), "{err}");
    }

    #[test]
    fn a_record_torn_inside_the_room_is_a_torn_tail() {
        let mut bytes = segment(0, &[b"kept"]);
        let good_len = bytes.len();
        encode_record(&mut bytes, &[7; 700]);
        // Only the first sector-sized piece of the new record reached the disk.
        bytes.truncate(good_len + 300);
        bytes.resize(good_len + 4096, 0);
        let decoded = decode_segment(Path::new("s"), &bytes, 0, true).unwrap();
        assert_eq!(decoded.records, vec![b"kept".to_vec()]);
        assert_eq!(decoded.end, good_len as u64);
        assert!(decoded.torn.is_some());
    }

    #[test]
    fn a_damaged_length_before_the_room_is_corrupt_not_a_torn_tail() {
        let payloads: Vec<&[u8]> = vec![b"first record", b"second record", b"third record"];
        let mut bytes = segment(0, &payloads);
        bytes.resize(bytes.len() + 4096, 0);
        let second_at = SEGMENT_HEADER_BYTES as usize + RECORD_HEADER_BYTES as usize + payloads[0].len();
        // Byte 1 of the length: the record now claims ~64 KiB, past the data and the room.
        bytes[second_at + 1] ^= 0xff;
        let err = decode_segment(Path::new("s"), &bytes, 0, true).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset, .. } if offset == second_at as u64), "{err}");
    }

    #[test]
    fn a_damaged_length_in_the_middle_is_corrupt_not_a_torn_tail() {
        let payloads: Vec<&[u8]> = vec![b"first record", b"second record", b"third record"];
        let clean = segment(0, &payloads);
        let second_at = SEGMENT_HEADER_BYTES as usize + RECORD_HEADER_BYTES as usize + payloads[0].len();
        // Byte 1 of the length: the record now claims ~64 KiB, past the end of the file.
        let mut bytes = clean.clone();
        bytes[second_at + 1] ^= 0xff;
        let err = decode_segment(Path::new("s"), &bytes, 0, true).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset, .. } if offset == second_at as u64), "{err}");
        // The length now claims exactly the rest of the file: checksum mismatch ending at EOF.
        let mut bytes = clean;
        let rest = (bytes.len() - second_at - RECORD_HEADER_BYTES as usize) as u32;
        bytes[second_at..second_at + 4].copy_from_slice(&rest.to_le_bytes());
        let err = decode_segment(Path::new("s"), &bytes, 0, true).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset, .. } if offset == second_at as u64), "{err}");
    }

    #[test]
    fn an_absurd_length_is_corrupt_even_at_the_tail() {
        let mut bytes = segment(0, &[]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let err = decode_segment(Path::new("s"), &bytes, 0, true).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset: 16, .. }), "{err}");
    }

    #[test]
    fn a_header_naming_another_segment_is_corrupt() {
        let bytes = segment(1, &[]);
        let err = decode_segment(Path::new("s"), &bytes, 2, true).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset: 8, .. }), "{err}");
    }

    #[test]
    fn an_unknown_version_is_corrupt() {
        let mut bytes = segment(0, &[]);
        bytes[4] = 9;
        let err = decode_segment(Path::new("s"), &bytes, 0, true).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset: 4, .. }), "{err}");
    }

    #[test]
    fn a_header_cut_short_is_corrupt_even_in_the_last_segment() {
        let bytes = segment(0, &[]);
        let err = decode_segment(Path::new("s"), &bytes[..10], 0, true).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { offset: 0, .. }), "{err}");
    }

    #[test]
    fn classify_recognises_segments_tmp_files_and_strangers() {
        let dir = Path::new("/w");
        assert_eq!(classify(dir, "000000000000002a.wal").unwrap(), EntryKind::Segment(42));
        assert_eq!(classify(dir, "000000000000002a.wal.tmp").unwrap(), EntryKind::Tmp);
        assert_eq!(classify(dir, "README").unwrap(), EntryKind::Other);
        assert!(matches!(classify(dir, "2a.wal"), Err(StorageError::Corrupt { .. })));
        assert!(matches!(classify(dir, "000000000000002A.wal"), Err(StorageError::Corrupt { .. })));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..256),
            is_last in any::<bool>(),
        ) {
            let mut bytes = encode_header(0);
            bytes.extend_from_slice(&tail);
            let _ = decode_segment(Path::new("s"), &bytes, 0, is_last);
        }

        #[test]
        fn a_last_segment_cut_anywhere_is_a_torn_tail_never_corruption(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
            cut in any::<proptest::sample::Index>(),
            room in prop_oneof![Just(0usize), 1usize..600],
        ) {
            // Cut, then (with room written ahead) zeros where the rest of the write never landed.
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let mut bytes = segment(0, &refs);
            let header = SEGMENT_HEADER_BYTES as usize;
            let keep = header + cut.index(bytes.len() - header + 1);
            let full_len = bytes.len();
            bytes.truncate(keep);
            if room > 0 {
                bytes.resize(full_len + room, 0);
            }
            let decoded = decode_segment(Path::new("s"), &bytes, 0, true);
            let decoded = decoded.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&decoded.records[..], &payloads[..decoded.records.len()]);
        }

        #[test]
        fn a_damaged_byte_never_yields_a_record_that_was_not_written(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..32), 1..8),
            position in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
            is_last in any::<bool>(),
            room in prop_oneof![Just(0usize), 1usize..600],
        ) {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let mut bytes = segment(0, &refs);
            let at = SEGMENT_HEADER_BYTES as usize
                + position.index(bytes.len() - SEGMENT_HEADER_BYTES as usize);
            bytes[at] ^= flip;
            if is_last {
                bytes.resize(bytes.len() + room, 0);
            }
            match decode_segment(Path::new("s"), &bytes, 0, is_last) {
                Ok(decoded) => {
                    prop_assert!(is_last, "damage in a non-last segment went unnoticed");
                    prop_assert!(decoded.torn.is_some(), "damage went unnoticed");
                    prop_assert!(decoded.records.len() < payloads.len());
                    prop_assert_eq!(&decoded.records[..], &payloads[..decoded.records.len()]);
                }
                Err(err) => prop_assert!(matches!(err, StorageError::Corrupt { .. }), "{}", err),
            }
        }
    }
}
