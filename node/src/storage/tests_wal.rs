//! WAL behaviour, each test run on both disks: [`MemDisk`] and [`RealDisk`] in a temporary dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::segment::segment_path;
use super::{
    read_record, Disk, MemDisk, RealDisk, RecordLoc, Segment, StorageError, Wal, RECORD_BYTES_MAX, RECORD_HEADER_BYTES,
    ROOM_BYTES, SEGMENT_HEADER_BYTES,
};

/// A disk and a WAL directory on it (not created yet).
pub(super) struct Harness {
    pub disk: Arc<dyn Disk>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub(super) fn mem_harness() -> Harness {
    Harness { disk: Arc::new(MemDisk::new()), dir: PathBuf::from("/data/member/wal"), _tmp: None }
}

fn real_harness() -> Harness {
    let tmp = tempfile::tempdir().unwrap();
    Harness { disk: Arc::new(RealDisk::new()), dir: tmp.path().join("member").join("wal"), _tmp: Some(tmp) }
}

impl Harness {
    fn open(&self) -> (Wal, Vec<Segment>) {
        Wal::open(Arc::clone(&self.disk), &self.dir).unwrap()
    }

    fn open_err(&self) -> StorageError {
        Wal::open(Arc::clone(&self.disk), &self.dir).unwrap_err()
    }

    fn segment(&self, seq: u64) -> PathBuf {
        segment_path(&self.dir, seq)
    }

    fn read(&self, path: &Path) -> Vec<u8> {
        self.disk.read_all(path).unwrap()
    }

    /// Replaces the content of `path` durably, as a disk fault or a tamperer would.
    fn overwrite(&self, path: &Path, bytes: &[u8]) {
        let mut file = self.disk.create(path).unwrap();
        file.write_all(bytes).unwrap();
        file.sync().unwrap();
    }

    fn flip_byte(&self, path: &Path, at: u64) {
        let mut bytes = self.read(path);
        bytes[at as usize] ^= 0x01;
        self.overwrite(path, &bytes);
    }
}

fn segment(seq: u64, records: &[&[u8]]) -> Segment {
    Segment { seq, records: records.iter().map(|r| r.to_vec()).collect() }
}

fn framed(payload: &[u8]) -> u64 {
    RECORD_HEADER_BYTES + payload.len() as u64
}

/// Writes records "r0", "r1", "r2" to segment 0, synced; returns their offsets.
fn three_records(h: &Harness) -> [u64; 3] {
    let (mut wal, _) = h.open();
    let mut offsets = [0; 3];
    for (i, offset) in offsets.iter_mut().enumerate() {
        *offset = wal.current_len();
        wal.append(format!("r{i}").as_bytes()).unwrap();
    }
    wal.sync().unwrap();
    offsets
}

fn assert_corrupt(err: StorageError, expect_file: &Path, expect_offset: u64) {
    let shown = err.to_string();
    match err {
        StorageError::Corrupt { file, offset, .. } => {
            assert_eq!((file.as_path(), offset), (expect_file, expect_offset));
            assert!(shown.contains(&expect_file.display().to_string()), "{shown}");
            assert!(shown.contains(&format!("offset {expect_offset}")), "{shown}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn opening_a_missing_dir_creates_it_with_an_empty_first_segment(h: Harness) {
    let (wal, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[])]);
    assert_eq!(wal.current_seq(), 0);
    assert_eq!(wal.current_len(), SEGMENT_HEADER_BYTES);
    assert_eq!(h.disk.list_dir(&h.dir).unwrap(), vec!["0000000000000000.wal"]);
}

fn records_round_trip_across_reopen(h: Harness) {
    let (mut wal, _) = h.open();
    for payload in [&b"alpha"[..], b"", b"gamma"] {
        wal.append(payload).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let (wal, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[b"alpha", b"", b"gamma"])]);
    let expected_len = SEGMENT_HEADER_BYTES + framed(b"alpha") + framed(b"") + framed(b"gamma");
    assert_eq!(wal.current_len(), expected_len);
}

fn appends_after_reopen_continue_the_last_segment(h: Harness) {
    let (mut wal, _) = h.open();
    wal.append(b"before").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (mut wal, _) = h.open();
    wal.append(b"after").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[b"before", b"after"])]);
}

fn many_records_across_rotations_come_back_in_order(h: Harness) {
    let (mut wal, _) = h.open();
    let mut expected = vec![Segment { seq: 0, records: Vec::new() }];
    for i in 0..100u32 {
        if i % 10 == 9 {
            let header = format!("header-{i}");
            let seq = wal.rotate(&[header.as_bytes()]).unwrap();
            assert_eq!(seq, expected.len() as u64);
            expected.push(Segment { seq, records: vec![header.into_bytes()] });
        }
        let record = format!("record-{i}").into_bytes();
        wal.append(&record).unwrap();
        if let Some(last) = expected.last_mut() {
            last.records.push(record);
        }
    }
    wal.sync().unwrap();
    drop(wal);
    let (wal, segments) = h.open();
    assert_eq!(wal.current_seq(), 10);
    assert_eq!(segments, expected);
}

fn remove_segments_before_deletes_only_older_segments(h: Harness) {
    let (mut wal, _) = h.open();
    for i in 1..=3u8 {
        wal.rotate(&[&[i]]).unwrap();
    }
    assert_eq!(wal.remove_segments_before(2).unwrap(), 2);
    assert_eq!(wal.first_seq(), 2);
    let names = h.disk.list_dir(&h.dir).unwrap();
    assert_eq!(names, vec!["0000000000000002.wal", "0000000000000003.wal"]);
    assert_eq!(wal.remove_segments_before(u64::MAX).unwrap(), 1);
    assert_eq!(wal.first_seq(), 3);
    drop(wal);
    let (wal, segments) = h.open();
    assert_eq!(segments, vec![segment(3, &[&[3]])]);
    assert_eq!(wal.first_seq(), 3);
}

fn a_record_torn_at_any_byte_leaves_the_earlier_records(h: Harness) {
    let offsets = three_records(&h);
    let path = h.segment(0);
    let full = h.read(&path);
    let records_end = offsets[2] + framed(b"r2");
    for cut in offsets[2]..records_end {
        h.overwrite(&path, &full[..cut as usize]);
        let (wal, segments) = h.open();
        assert_eq!(segments, vec![segment(0, &[b"r0", b"r1"])], "cut at {cut}");
        assert_eq!(wal.current_len(), offsets[2]);
        assert_eq!(h.read(&path).len() as u64, offsets[2], "tail not cut at {cut}");
    }
}

fn a_reopened_log_appends_cleanly_after_a_torn_tail(h: Harness) {
    let offsets = three_records(&h);
    let path = h.segment(0);
    let full = h.read(&path);
    h.overwrite(&path, &full[..offsets[2] as usize + 3]);
    let (mut wal, _) = h.open();
    wal.append(b"new").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[b"r0", b"r1", b"new"])]);
}

fn a_checksum_flip_in_a_middle_record_is_corrupt_at_its_offset(h: Harness) {
    let offsets = three_records(&h);
    let path = h.segment(0);
    h.flip_byte(&path, offsets[1] + RECORD_HEADER_BYTES);
    assert_corrupt(h.open_err(), &path, offsets[1]);
}

fn a_checksum_flip_in_the_last_record_at_eof_is_a_torn_tail(h: Harness) {
    let offsets = three_records(&h);
    let path = h.segment(0);
    h.flip_byte(&path, offsets[2] + RECORD_HEADER_BYTES);
    let (_, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[b"r0", b"r1"])]);
    assert_eq!(h.read(&path).len() as u64, offsets[2]);
}

fn a_bad_magic_is_corrupt_at_offset_zero(h: Harness) {
    three_records(&h);
    let path = h.segment(0);
    h.flip_byte(&path, 0);
    assert_corrupt(h.open_err(), &path, 0);
}

fn a_flipped_length_in_a_middle_record_is_corrupt(h: Harness) {
    let offsets = three_records(&h);
    let path = h.segment(0);
    h.flip_byte(&path, offsets[0]);
    assert_corrupt(h.open_err(), &path, offsets[0]);
}

fn an_absurd_record_length_is_corrupt(h: Harness) {
    let offsets = three_records(&h);
    let path = h.segment(0);
    let mut bytes = h.read(&path);
    let absurd = (RECORD_BYTES_MAX as u32 + 1).to_le_bytes();
    bytes[offsets[1] as usize..offsets[1] as usize + 4].copy_from_slice(&absurd);
    h.overwrite(&path, &bytes);
    assert_corrupt(h.open_err(), &path, offsets[1]);
}

fn a_record_cut_short_in_an_earlier_segment_is_corrupt(h: Harness) {
    let offsets = three_records(&h);
    let (mut wal, _) = h.open();
    wal.rotate(&[b"head"]).unwrap();
    drop(wal);
    let path = h.segment(0);
    let bytes = h.read(&path);
    h.overwrite(&path, &bytes[..bytes.len() - 1]);
    assert_corrupt(h.open_err(), &path, offsets[2]);
}

fn a_gap_in_segment_numbers_is_corrupt(h: Harness) {
    let (mut wal, _) = h.open();
    wal.rotate(&[]).unwrap();
    wal.rotate(&[]).unwrap();
    drop(wal);
    h.disk.remove_file(&h.segment(1)).unwrap();
    assert_corrupt(h.open_err(), &h.segment(2), 0);
}

fn a_leftover_temporary_segment_is_removed_at_open(h: Harness) {
    let (mut wal, _) = h.open();
    wal.append(b"kept").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let tmp = h.dir.join("0000000000000001.wal.tmp");
    h.overwrite(&tmp, b"DWAL half a rotation");
    let (wal, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[b"kept"])]);
    assert_eq!(wal.current_seq(), 0);
    assert!(!h.disk.exists(&tmp).unwrap());
}

fn files_that_are_not_segments_are_left_alone(h: Harness) {
    h.open();
    let other = h.dir.join("LOCK");
    h.overwrite(&other, b"x");
    let (_, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[])]);
    assert!(h.disk.exists(&other).unwrap());
}

fn an_oversized_record_is_refused_and_the_wal_stays_usable(h: Harness) {
    let (mut wal, _) = h.open();
    let huge = vec![0u8; RECORD_BYTES_MAX as usize + 1];
    let err = wal.append(&huge).unwrap_err();
    assert!(matches!(err, StorageError::RecordTooLarge { .. }), "{err}");
    let err = wal.rotate(&[&huge]).unwrap_err();
    assert!(matches!(err, StorageError::RecordTooLarge { .. }), "{err}");
    assert_eq!(wal.current_seq(), 0);
    wal.append(b"fine").unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(h.open().1, vec![segment(0, &[b"fine"])]);
}

fn records_read_back_where_append_and_recovery_say_they_are(h: Harness) {
    let (mut wal, _) = h.open();
    let mut locs = Vec::new();
    for i in 0..5 {
        locs.push(wal.append(format!("record {i}").as_bytes()).unwrap());
    }
    wal.sync().unwrap();
    wal.rotate(&[b"header"]).unwrap();
    locs.push(wal.append(b"after rotation").unwrap());
    wal.sync().unwrap();
    let read = |loc| read_record(h.disk.as_ref(), &h.dir, loc).unwrap();
    let expected: Vec<Vec<u8>> =
        (0..5).map(|i| format!("record {i}").into_bytes()).chain([b"after rotation".to_vec()]).collect();
    assert_eq!(locs.iter().map(|loc| read(*loc)).collect::<Vec<_>>(), expected);
    drop(wal);
    // Recovery names the same places (segment 1 starts with its header record).
    let (_, segments) = h.open();
    let recovered: Vec<RecordLoc> =
        segments.iter().flat_map(Segment::locs).filter(|loc| read(*loc) != b"header").collect();
    assert_eq!(recovered, locs);
    // A damaged record is corrupt, named by file and offset, not returned.
    h.flip_byte(&h.segment(0), locs[2].offset + RECORD_HEADER_BYTES);
    assert_corrupt(read_record(h.disk.as_ref(), &h.dir, locs[2]).unwrap_err(), &h.segment(0), locs[2].offset);
}

fn appends_after_reopen_write_over_the_room_without_growing_the_file(h: Harness) {
    let offsets = three_records(&h);
    let path = h.segment(0);
    let records_end = offsets[2] + framed(b"r2");
    let file_len = h.read(&path).len() as u64;
    assert_eq!(file_len, records_end + ROOM_BYTES);
    let (mut wal, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[b"r0", b"r1", b"r2"])]);
    assert_eq!(wal.current_len(), records_end);
    wal.append(b"r3").unwrap();
    wal.sync().unwrap();
    drop(wal);
    assert_eq!(h.read(&path).len() as u64, file_len);
    let (wal, segments) = h.open();
    assert_eq!(segments, vec![segment(0, &[b"r0", b"r1", b"r2", b"r3"])]);
    assert_eq!(wal.current_len(), records_end + framed(b"r3"));
}

fn zeros_after_the_records_of_an_earlier_segment_are_corrupt(h: Harness) {
    let offsets = three_records(&h);
    let (mut wal, _) = h.open();
    wal.rotate(&[b"head"]).unwrap();
    drop(wal);
    let path = h.segment(0);
    let mut bytes = h.read(&path);
    let records_end = offsets[2] + framed(b"r2");
    assert_eq!(bytes.len() as u64, records_end, "rotation cuts the room off");
    bytes.resize(bytes.len() + 100, 0);
    h.overwrite(&path, &bytes);
    assert_corrupt(h.open_err(), &path, records_end);
}

macro_rules! on_both_disks {
    ($($name:ident),* $(,)?) => {
        mod mem {
            $( #[test] fn $name() { super::$name(super::mem_harness()) } )*
        }
        mod real {
            $( #[test] fn $name() { super::$name(super::real_harness()) } )*
        }
    };
}

on_both_disks!(
    opening_a_missing_dir_creates_it_with_an_empty_first_segment,
    records_round_trip_across_reopen,
    appends_after_reopen_continue_the_last_segment,
    many_records_across_rotations_come_back_in_order,
    remove_segments_before_deletes_only_older_segments,
    a_record_torn_at_any_byte_leaves_the_earlier_records,
    a_reopened_log_appends_cleanly_after_a_torn_tail,
    a_checksum_flip_in_a_middle_record_is_corrupt_at_its_offset,
    a_checksum_flip_in_the_last_record_at_eof_is_a_torn_tail,
    a_bad_magic_is_corrupt_at_offset_zero,
    a_flipped_length_in_a_middle_record_is_corrupt,
    an_absurd_record_length_is_corrupt,
    a_record_cut_short_in_an_earlier_segment_is_corrupt,
    a_gap_in_segment_numbers_is_corrupt,
    a_leftover_temporary_segment_is_removed_at_open,
    files_that_are_not_segments_are_left_alone,
    an_oversized_record_is_refused_and_the_wal_stays_usable,
    records_read_back_where_append_and_recovery_say_they_are,
    appends_after_reopen_write_over_the_room_without_growing_the_file,
    zeros_after_the_records_of_an_earlier_segment_are_corrupt,
);
