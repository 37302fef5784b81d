//! What the WAL keeps across simulated power loss ([`MemDisk::crash`]), and when it touches the
//! disk. The proptest compares the WAL against a reference model: the segments and records
//! appended, and how many records of the last segment were synced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::segment::{encode_header, segment_path};
use super::{
    CrashPolicy, Disk, MemDisk, Segment, StorageError, Wal, RECORD_HEADER_BYTES, ROOM_BYTES, SEGMENT_HEADER_BYTES,
    WRITE_BUFFER_BYTES_MAX,
};

fn wal_dir() -> PathBuf {
    PathBuf::from("/data/wal")
}

fn open(disk: &Arc<MemDisk>) -> (Wal, Vec<Segment>) {
    let dyn_disk: Arc<dyn Disk> = disk.clone();
    Wal::open(dyn_disk, &wal_dir()).unwrap()
}

fn all_records(segments: &[Segment]) -> Vec<Vec<u8>> {
    segments.iter().flat_map(|s| s.records.clone()).collect()
}

#[test]
fn crash_dropping_unsynced_bytes_loses_exactly_the_unsynced_records() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.append(b"synced-1").unwrap();
    wal.append(b"synced-2").unwrap();
    wal.sync().unwrap();
    wal.append(b"unsynced-1").unwrap();
    wal.append(b"unsynced-2").unwrap();
    disk.crash(CrashPolicy::DropUnsynced);
    let (_, segments) = open(&disk);
    assert_eq!(all_records(&segments), vec![b"synced-1".to_vec(), b"synced-2".to_vec()]);
}

#[test]
fn a_full_write_buffer_is_synced_by_append() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    let big = vec![9u8; WRITE_BUFFER_BYTES_MAX];
    wal.append(b"before").unwrap();
    wal.append(&big).unwrap();
    wal.append(b"buffered").unwrap();
    disk.crash(CrashPolicy::DropUnsynced);
    let (_, segments) = open(&disk);
    assert_eq!(all_records(&segments), vec![b"before".to_vec(), big]);
}

#[test]
fn crash_keeping_unsynced_bytes_keeps_the_records_written_to_the_file() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.append(b"synced").unwrap();
    wal.sync().unwrap();
    let big = vec![7u8; WRITE_BUFFER_BYTES_MAX];
    wal.append(&big).unwrap();
    wal.append(b"still-buffered").unwrap();
    disk.crash(CrashPolicy::KeepUnsynced);
    let (_, segments) = open(&disk);
    assert_eq!(all_records(&segments), vec![b"synced".to_vec(), big]);
}

#[test]
fn a_rotated_segment_survives_a_crash_with_its_header_records() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.append(b"old").unwrap();
    let seq = wal.rotate(&[b"head-a", b"head-b"]).unwrap();
    assert_eq!(disk.durable_entries(&wal_dir()).unwrap(), vec!["0000000000000000.wal", "0000000000000001.wal"]);
    disk.crash(CrashPolicy::DropUnsynced);
    let (wal, segments) = open(&disk);
    assert_eq!(seq, 1);
    assert_eq!(wal.current_seq(), 1);
    let expected = vec![
        Segment { seq: 0, records: vec![b"old".to_vec()] },
        Segment { seq: 1, records: vec![b"head-a".to_vec(), b"head-b".to_vec()] },
    ];
    assert_eq!(segments, expected);
}

#[test]
fn removed_segments_stay_removed_after_a_crash() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.rotate(&[]).unwrap();
    wal.rotate(&[]).unwrap();
    wal.remove_segments_before(2).unwrap();
    disk.crash(CrashPolicy::DropUnsynced);
    let (wal, segments) = open(&disk);
    assert_eq!(wal.first_seq(), 2);
    assert_eq!(segments.len(), 1);
}

#[test]
fn append_touches_no_file_until_sync() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    let path = segment_path(&wal_dir(), 0);
    wal.append(b"12345").unwrap();
    assert_eq!(disk.read_all(&path).unwrap().len() as u64, SEGMENT_HEADER_BYTES);
    assert_eq!(wal.current_len(), SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 5);
    wal.sync().unwrap();
    assert_eq!(disk.synced_len(&path), Some(wal.current_len() + ROOM_BYTES));
}

#[test]
fn syncs_write_records_over_the_room_and_more_room_only_when_it_runs_out() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.set_room_bytes(100);
    let path = segment_path(&wal_dir(), 0);
    wal.append(&[1; 10]).unwrap();
    wal.sync().unwrap();
    let first_end = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 10;
    assert_eq!((wal.current_len(), wal.file_len()), (first_end, first_end + 100));
    // 90 bytes fit in the room: the file does not grow.
    wal.append(&[2; 82]).unwrap();
    wal.sync().unwrap();
    assert_eq!((wal.current_len(), wal.file_len()), (first_end + 90, first_end + 100));
    let bytes = disk.read_all(&path).unwrap();
    assert!(bytes[(first_end + 90) as usize..].iter().all(|&b| b == 0));
    // 18 more do not: the records go past the room, and new room follows them.
    wal.append(&[3; 10]).unwrap();
    wal.sync().unwrap();
    assert_eq!((wal.current_len(), wal.file_len()), (first_end + 108, first_end + 208));
    assert_eq!(disk.synced_len(&path), Some(first_end + 208));
    drop(wal);
    let (wal, segments) = open(&disk);
    assert_eq!(all_records(&segments), vec![vec![1; 10], vec![2; 82], vec![3; 10]]);
    assert_eq!(wal.current_len(), first_end + 108);
}

#[test]
fn a_rotation_cuts_the_old_segment_to_its_records() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.append(b"old").unwrap();
    wal.sync().unwrap();
    let old_len = wal.current_len();
    wal.rotate(&[]).unwrap();
    assert_eq!(disk.synced_len(&segment_path(&wal_dir(), 0)), Some(old_len));
}

#[test]
fn a_torn_write_over_the_room_is_cut_off_with_every_byte_after_it() {
    // The records of the last sync tear: the file is cut where the records end, so that nothing
    // of the torn write is left to be read as records after later appends.
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.append(b"synced").unwrap();
    wal.sync().unwrap();
    let synced_end = wal.current_len();
    wal.append(&[5; 2000]).unwrap();
    wal.sync().unwrap();
    // Corrupt the second record's checksum in place, as a torn write would leave it.
    drop(wal);
    let path = segment_path(&wal_dir(), 0);
    let bytes = disk.read_all(&path).unwrap();
    let file = disk.open_positional(&path).unwrap();
    file.write_at(synced_end + 4, &[bytes[synced_end as usize + 4] ^ 1]).unwrap();
    file.sync().unwrap();
    drop(file);
    let (wal, segments) = open(&disk);
    assert_eq!(all_records(&segments), vec![b"synced".to_vec()]);
    assert_eq!((wal.current_len(), wal.file_len()), (synced_end, synced_end));
    assert_eq!(disk.synced_len(&path), Some(synced_end));
}

#[test]
fn a_failed_sync_poisons_the_wal() {
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.append(b"x").unwrap();
    disk.crash(CrashPolicy::KeepUnsynced); // the WAL's file handle is now dead
    assert!(matches!(wal.sync(), Err(StorageError::Io { .. })));
    assert!(matches!(wal.append(b"y"), Err(StorageError::Poisoned)));
    assert!(matches!(wal.sync(), Err(StorageError::Poisoned)));
    assert!(matches!(wal.rotate(&[]), Err(StorageError::Poisoned)));
}

#[test]
fn a_rotation_that_never_renamed_its_segment_is_discarded_at_open() {
    // A rotation whose rename never reached the disk: the temporary file is discarded, and the
    // log continues in the previous segment.
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    wal.append(b"kept").unwrap();
    wal.sync().unwrap();
    drop(wal);
    let tmp = wal_dir().join("0000000000000001.wal.tmp");
    let mut file = disk.create(&tmp).unwrap();
    file.write_all(b"DWAL").unwrap();
    disk.sync_dir(&wal_dir()).unwrap();
    disk.crash(CrashPolicy::tear_seeded(7));
    let (wal, segments) = open(&disk);
    assert_eq!(wal.current_seq(), 0);
    assert_eq!(all_records(&segments), vec![b"kept".to_vec()]);
    assert!(!disk.exists(Path::new(&tmp)).unwrap());
}

#[test]
fn records_recovered_from_the_page_cache_are_durable_after_open() {
    // kill -9 (no power loss): bytes written but never synced are still readable at restart.
    let disk = Arc::new(MemDisk::new());
    let (mut wal, _) = open(&disk);
    let big = vec![3u8; WRITE_BUFFER_BYTES_MAX];
    wal.append(&big).unwrap();
    drop(wal);
    let (_, segments) = open(&disk);
    assert_eq!(all_records(&segments), vec![big.clone()]);
    disk.crash(CrashPolicy::DropUnsynced);
    let (_, segments) = open(&disk);
    assert_eq!(all_records(&segments), vec![big]);
}

#[test]
fn a_segment_whose_name_was_never_synced_is_durable_after_open() {
    // kill -9 between a rotation's rename and its directory sync.
    let disk = Arc::new(MemDisk::new());
    drop(open(&disk));
    let mut file = disk.create(&segment_path(&wal_dir(), 1)).unwrap();
    file.write_all(&encode_header(1)).unwrap();
    file.sync().unwrap();
    let (wal, _) = open(&disk);
    assert_eq!(wal.current_seq(), 1);
    disk.crash(CrashPolicy::DropUnsynced);
    let (wal, _) = open(&disk);
    assert_eq!(wal.current_seq(), 1);
}

// ---------------------------------------------------------------------------------------------
// Property: against a reference model, across random appends, syncs, rotations, removals and
// crashes under every policy.

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    Sync,
    Rotate(u8),
    RemoveBefore(u8),
    /// The process dies (kill -9) and restarts: buffered records are lost, the disk is not.
    Restart,
    Crash(Policy),
}

#[derive(Debug, Clone, Copy)]
enum Policy {
    Drop,
    Keep,
    Tear(u64),
}

impl Policy {
    fn to_crash_policy(self) -> CrashPolicy<'static> {
        match self {
            Policy::Drop => CrashPolicy::DropUnsynced,
            Policy::Keep => CrashPolicy::KeepUnsynced,
            Policy::Tear(seed) => CrashPolicy::tear_seeded(seed),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let policy = prop_oneof![Just(Policy::Drop), Just(Policy::Keep), any::<u64>().prop_map(Policy::Tear),];
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..48).prop_map(Op::Append),
        3 => Just(Op::Sync),
        1 => (0u8..3).prop_map(Op::Rotate),
        1 => any::<u8>().prop_map(Op::RemoveBefore),
        1 => Just(Op::Restart),
        2 => policy.prop_map(Op::Crash),
    ]
}

/// What must be on disk: every segment (all but the last are durable whole) and how many
/// records of the last segment were synced.
struct Model {
    segments: Vec<Segment>,
    synced_in_last: usize,
}

impl Model {
    fn last(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Checks what the WAL recovered after a crash or restart, then adopts it as the new truth
    /// (all of it durable: open syncs what it recovered).
    fn check_recovered(&mut self, recovered: Vec<Segment>) -> Result<(), TestCaseError> {
        let seqs = |segments: &[Segment]| segments.iter().map(|s| s.seq).collect::<Vec<_>>();
        prop_assert_eq!(seqs(&recovered), seqs(&self.segments));
        let (last, earlier) = recovered.split_last().ok_or_else(|| TestCaseError::fail("no segment recovered"))?;
        prop_assert_eq!(earlier, &self.segments[..earlier.len()]);
        let appended = &self.last().records;
        prop_assert!(last.records.len() <= appended.len(), "records never appended");
        prop_assert_eq!(&last.records[..], &appended[..last.records.len()]);
        prop_assert!(
            last.records.len() >= self.synced_in_last,
            "lost synced records: kept {} of {} synced",
            last.records.len(),
            self.synced_in_last
        );
        self.synced_in_last = last.records.len();
        self.segments = recovered;
        Ok(())
    }
}

fn run(ops: Vec<Op>, write_buffer_bytes_max: usize, room_bytes: u64) -> Result<(), TestCaseError> {
    let disk = Arc::new(MemDisk::new());
    let open = |disk: &Arc<MemDisk>| {
        let (mut wal, recovered) = open(disk);
        wal.set_write_buffer_bytes_max(write_buffer_bytes_max);
        wal.set_room_bytes(room_bytes);
        (wal, recovered)
    };
    let (mut wal, recovered) = open(&disk);
    let mut model = Model { segments: recovered, synced_in_last: 0 };
    let final_crash = Op::Crash(Policy::Drop);
    for (step, op) in ops.into_iter().chain([final_crash]).enumerate() {
        match op {
            Op::Append(payload) => {
                wal.append(&payload).unwrap();
                model.last().records.push(payload);
            }
            Op::Sync => {
                wal.sync().unwrap();
                model.synced_in_last = model.last().records.len();
            }
            Op::Rotate(count) => {
                let headers: Vec<Vec<u8>> = (0..count).map(|i| format!("header {step}.{i}").into_bytes()).collect();
                let header_refs: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
                let seq = wal.rotate(&header_refs).unwrap();
                prop_assert_eq!(seq, model.last().seq + 1);
                model.synced_in_last = headers.len();
                model.segments.push(Segment { seq, records: headers });
            }
            Op::RemoveBefore(back) => {
                let count = model.segments.len() as u64;
                let target = wal.first_seq() + u64::from(back) % (count + 1);
                let removed = wal.remove_segments_before(target).unwrap();
                let expected = (target.min(wal.current_seq()) - model.segments[0].seq) as usize;
                prop_assert_eq!(removed as usize, expected);
                model.segments.drain(..expected);
            }
            Op::Restart => {
                drop(wal);
                let (reopened, recovered) = open(&disk);
                wal = reopened;
                model.check_recovered(recovered)?;
            }
            Op::Crash(policy) => {
                drop(wal);
                disk.crash(policy.to_crash_policy());
                let (reopened, recovered) = open(&disk);
                wal = reopened;
                model.check_recovered(recovered)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn recovery_keeps_every_synced_record_and_only_appended_ones(
        ops in proptest::collection::vec(op(), 0..80),
        write_buffer_bytes_max in prop_oneof![Just(WRITE_BUFFER_BYTES_MAX), 0usize..128],
        room_bytes in prop_oneof![Just(ROOM_BYTES), Just(0), 1u64..1200],
    ) {
        run(ops, write_buffer_bytes_max, room_bytes)?;
    }
}
