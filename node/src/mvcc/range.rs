//! The read path: etcd 3.4's `Range` (revision checks, count, limit, filters, sort) and `Compare`
//! evaluation, over the key index plus any readable revision table (a read transaction's or the
//! current write transaction's, so a batch sees its own writes).

use std::cmp::Ordering;

use detcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use detcd_proto::etcdserverpb::{Compare, RangeRequest, RangeResponse, ResponseHeader};
use detcd_proto::mvccpb::KeyValue;
use redb::ReadableTable;

use super::codec::Record;
use super::index::{Interval, KeyIndex};
use super::schema::Rev;
use super::MvccError;

/// A response header carrying only the revision; the API layer fills in the rest.
pub(super) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

/// What a read sees: the revision it reads at by default (and reports in its header), and the
/// compaction point below which nothing can be read.
#[derive(Clone, Copy, Debug)]
pub(super) struct View {
    pub rev: i64,
    pub compact_rev: i64,
}

impl View {
    /// The revision a request for `requested` reads at (etcd's `rangeKeys`): `<= 0` means the
    /// view's own revision.
    pub fn resolve(&self, requested: i64) -> Result<i64, MvccError> {
        if requested > self.rev {
            return Err(MvccError::FutureRevision);
        }
        let at = if requested <= 0 { self.rev } else { requested };
        if at < self.compact_rev {
            return Err(MvccError::Compacted);
        }
        Ok(at)
    }
}

/// Reads and cross-checks the record the index names for `key` at `rev`.
pub(super) fn fetch<T>(table: &T, key: &[u8], rev: Rev) -> Result<Record, MvccError>
where
    T: ReadableTable<u128, &'static [u8]>,
{
    let guard = table.get(rev.to_key())?.ok_or_else(|| {
        MvccError::Corrupt(format!(
            "the index names revision {rev} for key \"{}\" but no record exists",
            key.escape_ascii()
        ))
    })?;
    let record =
        Record::decode(guard.value()).map_err(|why| MvccError::Corrupt(format!("record at revision {rev}: {why}")))?;
    if record.key != key || record.mod_revision != rev.main || record.tombstone {
        return Err(MvccError::Corrupt(format!(
            "record at revision {rev} (key \"{}\", mod revision {}, tombstone {}) does not match \
             the index (key \"{}\")",
            record.key.escape_ascii(),
            record.mod_revision,
            record.tombstone,
            key.escape_ascii()
        )));
    }
    Ok(record)
}

/// etcd 3.4's `applierV3backend.Range` against `view`.
pub(super) fn range<T>(index: &KeyIndex, table: &T, view: View, req: &RangeRequest) -> Result<RangeResponse, MvccError>
where
    T: ReadableTable<u128, &'static [u8]>,
{
    let at = view.resolve(req.revision)?;
    let visible = index.visible(Interval::new(&req.key, &req.range_end), at);
    let count = visible.len();
    // etcd fetches everything when it must sort or filter (deciding on the raw sort order, not
    // the defaulted one), else one more than the limit to learn whether there is more.
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    let limit = usize::try_from(req.limit).ok().filter(|l| *l > 0);
    let fetch_n = match limit {
        _ if req.count_only => 0,
        Some(l) if req.sort_order == SortOrder::None as i32 && !filtered => count.min(l.saturating_add(1)),
        _ => count,
    };
    let mut kvs = visible[..fetch_n]
        .iter()
        .map(|(key, rev)| fetch(table, key, *rev).map(Record::into_kv))
        .collect::<Result<Vec<_>, _>>()?;
    apply_filters(&mut kvs, req);
    sort(&mut kvs, req);
    let mut more = false;
    if let Some(l) = limit.filter(|l| kvs.len() > *l) {
        kvs.truncate(l);
        more = true;
    }
    if req.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value = Vec::new());
    }
    assert!(kvs.len() <= count, "a range returned more keys than it counted");
    Ok(RangeResponse { header: header(view.rev), kvs, more, count: i64::try_from(count).unwrap_or(i64::MAX) })
}

fn apply_filters(kvs: &mut Vec<KeyValue>, req: &RangeRequest) {
    if req.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= req.max_mod_revision);
    }
    if req.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= req.min_mod_revision);
    }
    if req.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= req.max_create_revision);
    }
    if req.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= req.min_create_revision);
    }
}

/// Sorts per the request; a sort target other than KEY with order NONE sorts ascending. Ties
/// keep key order (a stable sort). Unknown enum values leave the order unchanged.
fn sort(kvs: &mut [KeyValue], req: &RangeRequest) {
    let mut order = SortOrder::try_from(req.sort_order).ok();
    let target = SortTarget::try_from(req.sort_target).ok();
    if req.sort_target != SortTarget::Key as i32 && order == Some(SortOrder::None) {
        order = Some(SortOrder::Ascend);
    }
    let descending = match order {
        Some(SortOrder::Ascend) => false,
        Some(SortOrder::Descend) => true,
        Some(SortOrder::None) | None => return,
    };
    let by: fn(&KeyValue, &KeyValue) -> Ordering = match target {
        Some(SortTarget::Key) => |a, b| a.key.cmp(&b.key),
        Some(SortTarget::Version) => |a, b| a.version.cmp(&b.version),
        Some(SortTarget::Create) => |a, b| a.create_revision.cmp(&b.create_revision),
        Some(SortTarget::Mod) => |a, b| a.mod_revision.cmp(&b.mod_revision),
        Some(SortTarget::Value) => |a, b| a.value.cmp(&b.value),
        None => return,
    };
    if descending {
        kvs.sort_by(|a, b| by(b, a));
    } else {
        kvs.sort_by(by);
    }
}

/// etcd's `applyCompare`: every key of the compare's interval visible at `at` must satisfy it;
/// with no key, a VALUE compare fails and the others compare against a zero key-value.
pub(super) fn compare<T>(index: &KeyIndex, table: &T, at: i64, c: &Compare) -> Result<bool, MvccError>
where
    T: ReadableTable<u128, &'static [u8]>,
{
    let visible = index.visible(Interval::new(&c.key, &c.range_end), at);
    if visible.is_empty() {
        if c.target == CompareTarget::Value as i32 {
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    for (key, rev) in visible {
        if !compare_kv(c, &fetch(table, key, rev)?.into_kv()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// etcd's `compareKV`. A target union of the wrong kind compares against zero (or the empty
/// value); an unknown target compares equal; an unknown result is true.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let number = |field: i64, pick: fn(&TargetUnion) -> Option<i64>| {
        field.cmp(&c.target_union.as_ref().and_then(pick).unwrap_or(0))
    };
    let ordering = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Ok(CompareTarget::Version) => number(kv.version, |u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Create) => number(kv.create_revision, |u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Mod) => number(kv.mod_revision, |u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        }),
        Ok(CompareTarget::Lease) => number(kv.lease, |u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        }),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => true,
    }
}
