//! The property test: random steps applied to the store and to the reference model.

use std::path::PathBuf;

use detcd_proto::etcdserverpb::compare::TargetUnion;
use detcd_proto::etcdserverpb::request_op::Request;
use detcd_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use proptest::prelude::*;
use redb::Database;

use super::model::Model;
use super::{Store, WriteBatch};

// Operations as generated; revisions are chosen relative to the state when they run.

const KEYS: &[&str] = &["a", "ab", "b", "c", "d"];
const ENDS: &[&str] = &["a", "b", "c", "e"];
const VALUES: &[&str] = &["", "x", "y", "zz"];
const META_NAMES: &[&str] = &["applied", "membership"];

#[derive(Clone, Debug)]
struct RangeSpec {
    key: Vec<u8>,
    end: Vec<u8>,
    rev_sel: u16,
    limit: i64,
    order: i32,
    target: i32,
    keys_only: bool,
    count_only: bool,
    filters: [i64; 4],
}

#[derive(Clone, Debug)]
enum OpSpec {
    Range(RangeSpec),
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnSpec),
    Empty,
}

#[derive(Clone, Debug)]
struct TxnSpec {
    compares: Vec<Compare>,
    success: Vec<OpSpec>,
    failure: Vec<OpSpec>,
}

#[derive(Clone, Debug)]
enum BatchOp {
    Op(OpSpec),
    Compact(u16),
    SetMeta(usize, Vec<u8>),
}

#[derive(Clone, Debug)]
enum End {
    Commit { durable: bool },
    Drop,
}

#[derive(Clone, Debug)]
enum Step {
    Batch(Vec<BatchOp>, End),
    Read(RangeSpec),
    Reopen,
    SnapshotRestore,
}

/// A revision for `sel` given the current revision: mostly 0 (current), else anything from
/// -1 to current+1, so compacted and future revisions both occur.
fn pick_rev(sel: u16, current: i64) -> i64 {
    match sel % 8 {
        0..=2 => 0,
        3 if sel % 64 == 3 => -1,
        _ => i64::from(sel / 8) % (current + 2),
    }
}

impl RangeSpec {
    fn request(&self, current: i64) -> RangeRequest {
        RangeRequest {
            key: self.key.clone(),
            range_end: self.end.clone(),
            limit: self.limit,
            revision: pick_rev(self.rev_sel, current),
            sort_order: self.order,
            sort_target: self.target,
            serializable: false,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.filters[0],
            max_mod_revision: self.filters[1],
            min_create_revision: self.filters[2],
            max_create_revision: self.filters[3],
        }
    }
}

impl OpSpec {
    fn request(&self, current: i64) -> RequestOp {
        let request = match self {
            OpSpec::Range(r) => Some(Request::RequestRange(r.request(current))),
            OpSpec::Put(p) => Some(Request::RequestPut(p.clone())),
            OpSpec::Delete(d) => Some(Request::RequestDeleteRange(d.clone())),
            OpSpec::Txn(t) => Some(Request::RequestTxn(t.request(current))),
            OpSpec::Empty => None,
        };
        RequestOp { request }
    }
}

impl TxnSpec {
    fn request(&self, current: i64) -> TxnRequest {
        TxnRequest {
            compare: self.compares.clone(),
            success: self.success.iter().map(|o| o.request(current)).collect(),
            failure: self.failure.iter().map(|o| o.request(current)).collect(),
        }
    }
}

fn bytes_of(choices: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(choices).prop_map(|s| s.as_bytes().to_vec())
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => Just(Vec::new()), 1 => Just(vec![0]), 2 => bytes_of(ENDS)]
}

fn filter() -> impl Strategy<Value = i64> {
    prop_oneof![4 => Just(0i64), 1 => 1i64..30]
}

fn range_spec() -> impl Strategy<Value = RangeSpec> {
    (
        (bytes_of(KEYS), range_end(), any::<u16>()),
        (prop_oneof![2 => Just(0i64), 1 => 1i64..4], 0..3i32, 0..5i32),
        (prop::bool::weighted(0.2), prop::bool::weighted(0.15)),
        [filter(), filter(), filter(), filter()],
    )
        .prop_map(|((key, end, rev_sel), (limit, order, target), (keys_only, count_only), filters)| RangeSpec {
            key,
            end,
            rev_sel,
            limit,
            order,
            target,
            keys_only,
            count_only,
            filters,
        })
}

fn put_req() -> impl Strategy<Value = PutRequest> {
    (bytes_of(KEYS), bytes_of(VALUES), 0i64..3, any::<bool>(), prop::bool::weighted(0.15), prop::bool::weighted(0.15))
        .prop_map(|(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
            key,
            value: if ignore_value { Vec::new() } else { value },
            lease,
            prev_kv,
            ignore_value,
            ignore_lease,
        })
}

fn delete_req() -> impl Strategy<Value = DeleteRangeRequest> {
    (bytes_of(KEYS), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn compare() -> impl Strategy<Value = Compare> {
    (
        prop_oneof![8 => 0..4i32, 1 => Just(9i32)],
        prop_oneof![8 => 0..5i32, 1 => Just(9i32)],
        bytes_of(KEYS),
        prop_oneof![5 => Just(Vec::new()), 1 => Just(vec![0]), 1 => bytes_of(ENDS)],
        (0i64..12, bytes_of(VALUES), prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)]),
    )
        .prop_map(|(result, target, key, range_end, (n, value, kind))| {
            let matched = match target {
                0 => Some(TargetUnion::Version(n % 4)),
                1 => Some(TargetUnion::CreateRevision(n)),
                2 => Some(TargetUnion::ModRevision(n)),
                3 => Some(TargetUnion::Value(value.clone())),
                4 => Some(TargetUnion::Lease(n % 3)),
                _ => None,
            };
            let target_union = match kind {
                0 => matched,
                1 => None,
                _ if target == 3 => Some(TargetUnion::Version(n)),
                _ => Some(TargetUnion::Value(value)),
            };
            Compare { result, target, key, range_end, target_union }
        })
}

fn leaf_op() -> BoxedStrategy<OpSpec> {
    prop_oneof![
        3 => range_spec().prop_map(OpSpec::Range),
        4 => put_req().prop_map(OpSpec::Put),
        2 => delete_req().prop_map(OpSpec::Delete),
        1 => Just(OpSpec::Empty),
    ]
    .boxed()
}

fn txn_of(ops: BoxedStrategy<OpSpec>) -> impl Strategy<Value = TxnSpec> {
    (prop::collection::vec(compare(), 0..3), prop::collection::vec(ops.clone(), 0..4), prop::collection::vec(ops, 0..4))
        .prop_map(|(compares, success, failure)| TxnSpec { compares, success, failure })
}

fn txn_spec() -> impl Strategy<Value = TxnSpec> {
    let nested = prop_oneof![4 => leaf_op(), 1 => txn_of(leaf_op()).prop_map(OpSpec::Txn)].boxed();
    txn_of(nested)
}

fn batch_op() -> impl Strategy<Value = BatchOp> {
    prop_oneof![
        5 => put_req().prop_map(|p| BatchOp::Op(OpSpec::Put(p))),
        2 => delete_req().prop_map(|d| BatchOp::Op(OpSpec::Delete(d))),
        4 => txn_spec().prop_map(|t| BatchOp::Op(OpSpec::Txn(t))),
        2 => range_spec().prop_map(|r| BatchOp::Op(OpSpec::Range(r))),
        1 => any::<u16>().prop_map(BatchOp::Compact),
        1 => (0..META_NAMES.len(), bytes_of(VALUES)).prop_map(|(n, v)| BatchOp::SetMeta(n, v)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let end = prop_oneof![
        3 => Just(End::Commit { durable: false }),
        2 => Just(End::Commit { durable: true }),
        1 => Just(End::Drop),
    ];
    prop_oneof![
        8 => (prop::collection::vec(batch_op(), 1..6), end).prop_map(|(ops, end)| Step::Batch(ops, end)),
        3 => range_spec().prop_map(Step::Read),
        1 => Just(Step::Reopen),
        1 => Just(Step::SnapshotRestore),
    ]
}

// The harness.

struct Harness {
    dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
    files: u32,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db0");
        let store = Store::open(Database::create(&path).unwrap()).unwrap();
        Harness { dir, path, store, files: 0 }
    }

    fn reopen(self) -> Harness {
        let Harness { dir, path, store, files } = self;
        drop(store);
        let store = Store::open(Database::create(&path).unwrap()).unwrap();
        Harness { dir, path, store, files }
    }

    fn snapshot_restore(&mut self) {
        let image = self.store.snapshot().unwrap();
        self.files += 1;
        self.path = self.dir.path().join(format!("db{}", self.files));
        let mut fresh = Store::open(Database::create(&self.path).unwrap()).unwrap();
        fresh.restore(&image).unwrap();
        self.store = fresh;
    }
}

fn apply_batch_op(batch: &mut WriteBatch<'_>, model: &mut Model, op: &BatchOp) -> Result<(), TestCaseError> {
    let current = model.current;
    match op {
        BatchOp::Op(OpSpec::Put(p)) => {
            prop_assert_eq!(batch.put(p), model.single(|m, tx| m.put(p, tx)), "put {:?}", p);
        }
        BatchOp::Op(OpSpec::Delete(d)) => {
            let expected = model.single(|m, tx| Ok(m.delete(d, tx)));
            prop_assert_eq!(batch.delete_range(d), expected, "delete {:?}", d);
        }
        BatchOp::Op(OpSpec::Txn(t)) => {
            let req = t.request(current);
            prop_assert_eq!(batch.txn(&req), model.txn(&req), "txn {:?}", req);
        }
        BatchOp::Op(OpSpec::Range(r)) => {
            let req = r.request(current);
            prop_assert_eq!(batch.range(&req), model.range(&req, current), "range {:?}", req);
        }
        BatchOp::Op(OpSpec::Empty) => {}
        BatchOp::Compact(sel) => {
            let revision = i64::from(*sel) % (current + 3) - 1;
            let req = CompactionRequest { revision, physical: false };
            prop_assert_eq!(batch.compact(&req), model.compact_at(revision), "compact {}", revision);
        }
        BatchOp::SetMeta(n, value) => {
            batch.set_meta(META_NAMES[*n], value).unwrap();
            model.meta.insert(META_NAMES[*n].to_string(), value.clone());
        }
    }
    Ok(())
}

/// The store holds exactly the model's contents at every readable revision.
fn check_state(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(store.current_revision(), model.current);
    prop_assert_eq!(store.compact_revision(), model.compact.max(0));
    for rev in model.compact.max(1)..=model.current {
        let req = RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..Default::default() };
        prop_assert_eq!(store.range(&req), model.range(&req, model.current), "state at {}", rev);
    }
    for name in META_NAMES {
        prop_assert_eq!(store.meta(name).unwrap(), model.meta.get(*name).cloned());
    }
    Ok(())
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    let mut model = Model::new();
    for step in steps {
        match step {
            Step::Batch(ops, end) => {
                let mut work = model.clone();
                let mut batch = h.store.write().unwrap();
                for op in ops {
                    apply_batch_op(&mut batch, &mut work, op)?;
                }
                match end {
                    End::Commit { durable } => {
                        batch.commit(*durable).unwrap();
                        model = work;
                    }
                    End::Drop => drop(batch),
                }
            }
            Step::Read(r) => {
                let req = r.request(model.current);
                prop_assert_eq!(h.store.range(&req), model.range(&req, model.current), "read {:?}", req);
            }
            Step::Reopen => h = h.reopen(),
            Step::SnapshotRestore => h.snapshot_restore(),
        }
        check_state(&h.store, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_reference_model(steps in prop::collection::vec(step(), 1..30)) {
        run(&steps)?;
    }
}
