//! Watch streams: what watchers received, and [`check_watches`], which judges them against each
//! other and against the KV [`History`].
//!
//! The simulator records one [`WatchStreamRecord`] per watch (one watch id) through a
//! [`WatchRecorder`]: its key range, its start revision and every response in arrival order. A
//! response must be recorded whole: fragments (etcd's `fragment` option) are joined first. The
//! creation response, when recorded, comes first; a stream the client closed itself ends
//! [`WatchEnd::StillOpen`], one the server canceled for compaction [`WatchEnd::Canceled`].
//!
//! Properties, checked in this order, each the first broken one reported as a [`Violation`]:
//!
//! - **ordered and atomic**: event revisions never decrease along a stream; all events of one
//!   revision come in one response; no `(revision, key)` twice; no event beyond its response's
//!   header revision nor at or below a revision a progress notification already reported; nothing
//!   after a canceled response;
//! - **in range, after start**: every event's key is in the watched range, its revision at least
//!   the start revision;
//! - **compaction**: a stream canceled for compaction names a compact revision; no event below a
//!   compact revision the stream already reported;
//! - **real**: every put event's value was written to that key by an operation that may have taken
//!   effect, at the revision the event says if the write was acknowledged; at the revision of an
//!   acknowledged write, events show exactly what it wrote; a put event's create revision and
//!   version fit its revision; one value appears at one revision across all streams;
//! - **gap-free**: every acknowledged write in the range whose revision lies in the stream's
//!   covered window (see [`WatchStreamRecord::covered`]) appears as an event;
//! - **agreement**: streams covering the same revision of a key show the same event there, or
//!   none.
//!
//! Soundness: a stream is only held to the revisions it certainly caught up to: its last event, or
//! a later progress notification (an event-less, uncanceled response other than the first, which
//! may be the creation response: etcd stamps that one with the current revision before catching
//! up). Header revisions of event responses are not trusted for that (etcd's catch-up may send
//! the current revision with a partial batch). Indeterminate writes excuse a missing event, never
//! a wrong one. Delete events at revisions no acknowledged write made are allowed (lease expiry
//! and revocation delete too). Every KV write of the run must be in the history.
//!
//! Depends on `history`, `checks` (the effects of acknowledged writes) and `linearizability` (the
//! [`Violation`] type and etcd's range rule); never on a runtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::checks::{acknowledged, effects, Effect};
use crate::history::{History, Operation, Outcome, Request, TxnOp};
use crate::linearizability::{in_range, render_seconds, Violation};

#[cfg(test)]
mod tests;

/// One event of a watch response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchEvent {
    /// The event's mod revision.
    pub revision: i64,
    pub key: String,
    pub kind: WatchEventKind,
}

/// What happened to the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchEventKind {
    Put { value: String, create_revision: i64, version: i64 },
    Delete,
}

/// One response of a watch stream, as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchResponseRecord {
    /// When the client received it, in ns of the history's clock.
    pub at: u64,
    pub header_revision: i64,
    pub events: Vec<WatchEvent>,
    /// 0 unless the server reported a compaction.
    pub compact_revision: i64,
    pub canceled: bool,
}

impl WatchResponseRecord {
    fn name(&self, index: usize) -> String {
        format!("response #{index} (received at {})", render_seconds(self.at))
    }
}

/// How a watch stream ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WatchEnd {
    /// Open when the recording ended, or closed by the client.
    StillOpen,
    /// Canceled by the server because its start revision was compacted.
    Canceled { compact_revision: i64 },
    /// The stream broke (connection lost, member stopped...).
    Failed(String),
}

/// One watch, from creation to end.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchStreamRecord {
    /// Unique within the run, in creation order.
    pub id: usize,
    pub client: u32,
    pub start: String,
    /// etcd's `range_end`: `""` watches `start` alone, `"\0"` every key from `start` on.
    pub end: String,
    /// The first revision asked for; 0 for "from now".
    pub start_revision: i64,
    /// When the watch was created, in ns.
    pub created_at: u64,
    /// In arrival order.
    pub responses: Vec<WatchResponseRecord>,
    pub ended: WatchEnd,
}

impl WatchStreamRecord {
    /// Whether `key` is in the watched range.
    pub fn covers_key(&self, key: &str) -> bool {
        in_range(key, &self.start, &self.end)
    }

    /// The revisions the stream must have delivered every event of: from its start (for a start
    /// revision of 0, the revision after the first response's header, which is at least the
    /// revision it started from) to the highest it certainly caught up to. `None` when empty.
    pub fn covered(&self) -> Option<(i64, i64)> {
        let first = match self.start_revision {
            1.. => self.start_revision,
            _ => self.responses.first()?.header_revision.checked_add(1)?,
        };
        let (last, _) = self.caught_up()?;
        (first <= last).then_some((first, last))
    }

    /// The highest revision the stream certainly caught up to, and the response that shows it.
    fn caught_up(&self) -> Option<(i64, usize)> {
        let mut best: Option<(i64, usize)> = None;
        for (index, response) in self.responses.iter().enumerate() {
            let shown = response.events.iter().map(|event| event.revision).max();
            let shown = shown.or_else(|| self.is_progress(index).then_some(response.header_revision));
            if let Some(revision) = shown.filter(|&revision| best.is_none_or(|(best, _)| revision > best)) {
                best = Some((revision, index));
            }
        }
        best
    }

    /// Whether response `index` is a progress notification: event-less, uncanceled, no
    /// compaction, and not the first (which may be the creation response).
    fn is_progress(&self, index: usize) -> bool {
        let response = &self.responses[index];
        index > 0 && response.events.is_empty() && !response.canceled && response.compact_revision == 0
    }

    /// The events with the index of the response that carried them, in arrival order.
    fn events(&self) -> impl Iterator<Item = (usize, &WatchEvent)> {
        self.responses.iter().enumerate().flat_map(|(index, response)| response.events.iter().map(move |e| (index, e)))
    }

    /// "watch #3 (client 2, ["k00", "l") from revision 5)", for messages.
    pub fn name(&self) -> String {
        let range = match self.end.as_str() {
            "" => format!("{:?}", self.start),
            "\0" => format!("[{:?}, end)", self.start),
            end => format!("[{:?}, {end:?})", self.start),
        };
        format!("watch #{} (client {}, {range} from revision {})", self.id, self.client, self.start_revision)
    }
}

/// Records watch streams while clients run. Cheap to clone; every clone appends to the same record.
#[derive(Debug, Clone, Default)]
pub struct WatchRecorder {
    inner: Arc<Mutex<Vec<(WatchStreamRecord, bool)>>>,
}

/// The handle of a recorded stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchHandle(usize);

impl WatchRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(WatchStreamRecord, bool)>> {
        // A poisoned lock means a client panicked mid-record: the records are still well formed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `client` created a watch on `[start, end)` from `start_revision` at `now_ns`.
    pub fn open(&self, client: u32, start: &str, end: &str, start_revision: i64, now_ns: u64) -> WatchHandle {
        let mut streams = self.lock();
        let id = streams.len();
        streams.push((
            WatchStreamRecord {
                id,
                client,
                start: start.to_string(),
                end: end.to_string(),
                start_revision,
                created_at: now_ns,
                responses: Vec::new(),
                ended: WatchEnd::StillOpen,
            },
            false,
        ));
        WatchHandle(id)
    }

    /// Records a response the stream received.
    pub fn respond(&self, handle: WatchHandle, response: WatchResponseRecord) {
        let mut streams = self.lock();
        let (stream, ended) = &mut streams[handle.0];
        assert!(!*ended, "watch #{} received a response after it ended", handle.0);
        assert!(response.at >= stream.created_at, "watch #{} received a response before it was created", handle.0);
        stream.responses.push(response);
    }

    /// Records how the stream ended.
    pub fn end(&self, handle: WatchHandle, how: WatchEnd) {
        let mut streams = self.lock();
        let (stream, ended) = &mut streams[handle.0];
        assert!(!*ended, "watch #{} ended twice", handle.0);
        stream.ended = how;
        *ended = true;
    }

    /// The streams recorded so far, in creation order; open ones end [`WatchEnd::StillOpen`].
    pub fn finish(&self) -> Vec<WatchStreamRecord> {
        self.lock().iter().map(|(stream, _)| stream.clone()).collect()
    }
}

/// Checks every stream against the properties of the module docs; returns the first violation.
pub fn check_watches(history: &History, streams: &[WatchStreamRecord]) -> Result<(), Violation> {
    let writes = Writes::new(history);
    for stream in streams {
        check_order(stream)?;
        check_bounds(stream)?;
        check_compaction(stream)?;
        check_real(stream, &writes)?;
        check_gaps(stream, &writes)?;
    }
    check_agreement(streams)
}

/// A violation about `key` (none if empty), showing `ops` (the lease checker's too).
pub(crate) fn violation(key: &str, ops: &[&Operation], message: String) -> Violation {
    let mut window: Vec<Operation> = ops.iter().map(|&op| op.clone()).collect();
    window.sort_by_key(|op| op.id);
    window.dedup_by_key(|op| op.id);
    let keys = if key.is_empty() { Vec::new() } else { vec![key.to_string()] };
    Violation { keys, ops: window.iter().map(|op| op.id).collect(), message, window }
}

/// `put "k01" = "c1-3" at revision 7` / `delete "k01" at revision 7`.
fn event_text(event: &WatchEvent) -> String {
    match &event.kind {
        WatchEventKind::Put { value, create_revision, version } => format!(
            "put {:?} = {value:?} at revision {} (create {create_revision}, version {version})",
            event.key, event.revision
        ),
        WatchEventKind::Delete => format!("delete {:?} at revision {}", event.key, event.revision),
    }
}

fn effect_text(effect: &Effect<'_>) -> String {
    match effect.value {
        Some(value) => format!("put {:?} = {value:?}", effect.key),
        None => format!("delete {:?}", effect.key),
    }
}

/// Whether `event` shows what `effect` did (the revision aside).
fn shows(event: &WatchEvent, effect: &Effect<'_>) -> bool {
    event.key == effect.key
        && match (&event.kind, effect.value) {
            (WatchEventKind::Put { value, .. }, Some(written)) => value == written,
            (WatchEventKind::Delete, None) => true,
            _ => false,
        }
}

/// Ordered and atomic.
fn check_order(stream: &WatchStreamRecord) -> Result<(), Violation> {
    // The last event's revision and response; the highest progress notification and its response.
    let mut last: Option<(i64, usize)> = None;
    let mut progress: Option<(i64, usize)> = None;
    let mut canceled: Option<usize> = None;
    let mut pairs: HashSet<(i64, &str)> = HashSet::new();
    for (index, response) in stream.responses.iter().enumerate() {
        let fail = |key: &str, what: String| {
            Err(violation(key, &[], format!("{}: {}: {what}", stream.name(), response.name(index))))
        };
        if let Some(at) = canceled {
            return fail("", format!("arrived after the stream was canceled in response #{at}"));
        }
        for event in &response.events {
            let text = event_text(event);
            if event.revision > response.header_revision {
                return fail(&event.key, format!("{text} is beyond the header revision {}", response.header_revision));
            }
            match last {
                Some((revision, _)) if event.revision < revision => {
                    return fail(&event.key, format!("{text} comes after an event at revision {revision}"));
                }
                Some((revision, at)) if event.revision == revision && at != index => {
                    return fail(&event.key, format!("{text}: revision {revision} was split, response #{at} had part"));
                }
                _ => {}
            }
            if let Some((revision, at)) = progress.filter(|&(revision, _)| event.revision <= revision) {
                return fail(&event.key, format!("{text}, but response #{at} reported progress up to {revision}"));
            }
            if !pairs.insert((event.revision, &event.key)) {
                return fail(&event.key, format!("{text} is delivered twice"));
            }
            last = Some((event.revision, index));
        }
        if stream.is_progress(index) && progress.is_none_or(|(revision, _)| response.header_revision > revision) {
            progress = Some((response.header_revision, index));
        }
        if response.canceled {
            canceled = Some(index);
        }
    }
    Ok(())
}

/// In range, after start.
fn check_bounds(stream: &WatchStreamRecord) -> Result<(), Violation> {
    let first = stream.start_revision.max(1);
    for (index, event) in stream.events() {
        let what = if !stream.covers_key(&event.key) {
            "is outside the watched range".to_string()
        } else if event.revision < first {
            format!("is below the first revision the stream may deliver, {first}")
        } else {
            continue;
        };
        let response = &stream.responses[index];
        let message = format!("{}: {}: {} {what}", stream.name(), response.name(index), event_text(event));
        return Err(violation(&event.key, &[], message));
    }
    Ok(())
}

/// A canceled stream names its compact revision; no event below a reported compact revision.
fn check_compaction(stream: &WatchStreamRecord) -> Result<(), Violation> {
    if let WatchEnd::Canceled { compact_revision } = stream.ended {
        if compact_revision <= 0 {
            let message =
                format!("{}: canceled for compaction with compact revision {compact_revision}", stream.name());
            return Err(violation("", &[], message));
        }
    }
    let mut compacted: Option<(i64, usize)> = None;
    for (index, response) in stream.responses.iter().enumerate() {
        if response.compact_revision > 0 && compacted.is_none_or(|(revision, _)| response.compact_revision > revision) {
            compacted = Some((response.compact_revision, index));
        }
        let Some((revision, at)) = compacted else { continue };
        if let Some(event) = response.events.iter().find(|event| event.revision < revision) {
            let message = format!(
                "{}: {}: {} is below compact revision {revision}, reported in response #{at}",
                stream.name(),
                response.name(index),
                event_text(event)
            );
            return Err(violation(&event.key, &[], message));
        }
    }
    Ok(())
}

/// The KV history seen from the watch side.
struct Writes<'h> {
    /// The effects of the acknowledged write that created each revision (of all of them, if two
    /// claim it: `checks::revisions_monotonic` reports that, this checker skips the revision).
    by_revision: BTreeMap<i64, Vec<Effect<'h>>>,
    /// The operations that may have written each (key, value): acknowledged ones in their chosen
    /// branch, indeterminate ones in either.
    writers: HashMap<(&'h str, &'h str), Vec<&'h Operation>>,
}

impl<'h> Writes<'h> {
    fn new(history: &'h History) -> Self {
        let mut by_revision: BTreeMap<i64, Vec<Effect<'h>>> = BTreeMap::new();
        let mut writers: HashMap<(&str, &str), Vec<&Operation>> = HashMap::new();
        for effect in effects(history) {
            if let Some(value) = effect.value {
                writers.entry((effect.key, value)).or_default().push(effect.op);
            }
            by_revision.entry(effect.revision).or_default().push(effect);
        }
        for op in history.ops.iter().filter(|op| matches!(op.outcome, Outcome::Indeterminate { .. })) {
            for (key, value) in puts(&op.request) {
                writers.entry((key, value)).or_default().push(op);
            }
        }
        Writes { by_revision, writers }
    }

    /// The effects of the one acknowledged write that created `revision`, if exactly one did.
    fn at(&self, revision: i64) -> Option<&[Effect<'h>]> {
        let effects = self.by_revision.get(&revision)?;
        let op = effects.first()?.op.id;
        effects.iter().all(|effect| effect.op.id == op).then_some(effects.as_slice())
    }
}

/// The (key, value) pairs `request` may put, in either branch.
fn puts(request: &Request) -> Vec<(&str, &str)> {
    match request {
        Request::Put { key, value } => vec![(key, value)],
        Request::Txn { success, failure, .. } => success
            .iter()
            .chain(failure)
            .filter_map(|op| match op {
                TxnOp::Put { key, value } => Some((key.as_str(), value.as_str())),
                TxnOp::Get { .. } | TxnOp::Delete { .. } => None,
            })
            .collect(),
        Request::Get { .. } | Request::Range { .. } | Request::Delete { .. } => Vec::new(),
    }
}

/// Real: values come from writes, revisions agree with acknowledged writes.
fn check_real(stream: &WatchStreamRecord, writes: &Writes<'_>) -> Result<(), Violation> {
    for (index, event) in stream.events() {
        let fail = |ops: &[&Operation], what: String| {
            let response = &stream.responses[index];
            let message = format!("{}: {}: {} {what}", stream.name(), response.name(index), event_text(event));
            Err(violation(&event.key, ops, message))
        };
        if let WatchEventKind::Put { value, create_revision, version } = &event.kind {
            let fresh = *create_revision == event.revision;
            if !(1..=event.revision).contains(create_revision) || *version < 1 || fresh != (*version == 1) {
                return fail(&[], "is malformed: a key's version is 1 exactly at its create revision".to_string());
            }
            let writers = writes.writers.get(&(event.key.as_str(), value.as_str())).map_or(&[][..], Vec::as_slice);
            if writers.is_empty() {
                return fail(
                    &[],
                    "shows a value no operation that may have taken effect wrote to that key".to_string(),
                );
            }
            for &op in writers {
                if let Some(response) = acknowledged(op).filter(|response| response.revision() != event.revision) {
                    return fail(&[op], format!("but #{} wrote it at revision {}", op.id, response.revision()));
                }
            }
        }
        let Some(effects) = writes.at(event.revision) else { continue };
        if !effects.iter().any(|effect| shows(event, effect)) {
            let op = effects[0].op;
            let wrote: Vec<String> = effects.iter().map(effect_text).collect();
            return fail(&[op], format!("but #{} created that revision with [{}]", op.id, wrote.join(", ")));
        }
    }
    Ok(())
}

/// Gap-free: every acknowledged write in range within the covered window is delivered.
fn check_gaps(stream: &WatchStreamRecord, writes: &Writes<'_>) -> Result<(), Violation> {
    let Some((first, last)) = stream.covered() else { return Ok(()) };
    let delivered: HashSet<(i64, &str)> =
        stream.events().map(|(_, event)| (event.revision, event.key.as_str())).collect();
    for (&revision, effects) in writes.by_revision.range(first..=last) {
        if writes.at(revision).is_none() {
            continue;
        }
        let Some(missed) =
            effects.iter().find(|effect| stream.covers_key(effect.key) && !delivered.contains(&(revision, effect.key)))
        else {
            continue;
        };
        let shown_by = stream.caught_up().map_or(0, |(_, index)| index);
        let message = format!(
            "{}: missed {} at revision {revision} by #{}, though {} shows it caught up to revision {last}",
            stream.name(),
            effect_text(missed),
            missed.op.id,
            stream.responses[shown_by].name(shown_by)
        );
        return Err(violation(missed.key, &[missed.op], message));
    }
    Ok(())
}

/// Agreement: one event per (revision, key) across streams, present in every stream covering it;
/// one revision per written value.
fn check_agreement(streams: &[WatchStreamRecord]) -> Result<(), Violation> {
    let mut first_seen: BTreeMap<(i64, &str), (&WatchStreamRecord, &WatchEvent)> = BTreeMap::new();
    let mut revision_of_value: HashMap<(&str, &str), (&WatchStreamRecord, &WatchEvent)> = HashMap::new();
    for stream in streams {
        for (_, event) in stream.events() {
            let disagree = |other: &WatchStreamRecord, theirs: &WatchEvent| {
                let message = format!(
                    "{} shows {} but {} shows {}",
                    other.name(),
                    event_text(theirs),
                    stream.name(),
                    event_text(event)
                );
                Err(violation(&event.key, &[], message))
            };
            let (other, theirs) = *first_seen.entry((event.revision, event.key.as_str())).or_insert((stream, event));
            if theirs.kind != event.kind {
                return disagree(other, theirs);
            }
            if let WatchEventKind::Put { value, .. } = &event.kind {
                let (other, theirs) =
                    *revision_of_value.entry((event.key.as_str(), value.as_str())).or_insert((stream, event));
                if theirs.revision != event.revision {
                    return disagree(other, theirs);
                }
            }
        }
    }
    let delivered: Vec<HashSet<(i64, &str)>> = streams
        .iter()
        .map(|stream| stream.events().map(|(_, event)| (event.revision, event.key.as_str())).collect())
        .collect();
    for (stream, delivered) in streams.iter().zip(&delivered) {
        let Some((first, last)) = stream.covered() else { continue };
        let Some((&(revision, key), &(other, event))) = first_seen
            .range((first, "")..)
            .take_while(|((revision, _), _)| *revision <= last)
            .find(|((revision, key), _)| stream.covers_key(key) && !delivered.contains(&(*revision, *key)))
        else {
            continue;
        };
        debug_assert_eq!((revision, key), (event.revision, event.key.as_str()));
        let message = format!(
            "{} missed {} that {} delivered, though it caught up to revision {last}",
            stream.name(),
            event_text(event),
            other.name()
        );
        return Err(violation(key, &[], message));
    }
    Ok(())
}
