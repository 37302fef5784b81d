//! Watches: the changes of the key space, fanned out to watchers, catching up from MVCC history.
//!
//! Owns: [`WatchHub`], which the apply path feeds with the events of every committed batch (a
//! bounded ring of recent revisions, and the current revision as a `watch` channel), and
//! [`Watchers`], the watchers of one client stream. Watchers pull: each remembers the next
//! revision it needs and reads it from the ring, or from MVCC when the ring no longer has it. So
//! apply never waits for a watcher, a slow client only delays its own stream, and a watcher that
//! fell behind catches up from history with no gap and no duplicate. A watcher whose next revision
//! was compacted is cancelled with the compaction revision, as etcd does.
//!
//! Never depends on Raft or the API. Lock order: the MVCC store's lock before the hub's.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use detcd_proto::etcdserverpb::watch_create_request::FilterType;
use detcd_proto::etcdserverpb::{RangeRequest, WatchCreateRequest};
use detcd_proto::mvccpb::event::EventType;
use detcd_proto::mvccpb::Event;
use tokio::sync::watch;

use crate::mvcc::{MvccError, Store};

/// Events the ring keeps, at least (whole revisions are kept or dropped).
const RING_EVENTS_MAX: usize = 16_384;
/// Revisions one watcher reads from history in one go: bounds the time a catch-up holds the store.
const CATCH_UP_REVISIONS_MAX: i64 = 1_000;

/// etcd's `AutoWatchID`: a create request with this ID lets the server choose.
pub const AUTO_WATCH_ID: i64 = 0;

#[derive(Debug)]
struct Ring {
    /// Events of recent revisions, oldest first, one entry per revision.
    revisions: VecDeque<(i64, Vec<Event>)>,
    events: usize,
    /// The ring holds every event of every revision from here to the current one.
    covered_from: i64,
}

/// The apply path's side of watching; see the module docs.
#[derive(Debug)]
pub struct WatchHub {
    ring: Mutex<Ring>,
    current: watch::Sender<i64>,
}

impl WatchHub {
    /// A hub for a store at `current_rev`: history before it is read from MVCC.
    pub fn new(current_rev: i64) -> WatchHub {
        let ring = Ring { revisions: VecDeque::new(), events: 0, covered_from: current_rev + 1 };
        WatchHub { ring: Mutex::new(ring), current: watch::Sender::new(current_rev) }
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| panic!("watch ring lock poisoned: {p}"))
    }

    /// Publishes a committed batch: its `events` in revision order, and the store's revision after
    /// it. Called with the store's write lock held, so readers never see a revision the store
    /// has not reached.
    pub fn publish(&self, current_rev: i64, events: Vec<Event>) {
        {
            let mut ring = self.ring();
            for event in events {
                let rev = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
                match ring.revisions.back_mut() {
                    Some((last, list)) if *last == rev => list.push(event),
                    last => {
                        assert!(last.is_none_or(|(l, _)| *l < rev), "watch events must arrive in revision order");
                        ring.revisions.push_back((rev, vec![event]));
                    }
                }
                ring.events += 1;
            }
            while ring.events > RING_EVENTS_MAX && ring.revisions.len() > 1 {
                if let Some((rev, list)) = ring.revisions.pop_front() {
                    ring.events -= list.len();
                    ring.covered_from = rev + 1;
                }
            }
        }
        self.current.send_if_modified(|current| {
            let moved = current_rev > *current;
            if moved {
                *current = current_rev;
            }
            moved
        });
    }

    /// The store was replaced (snapshot installed): forget the ring; history comes from MVCC.
    pub fn reset(&self, current_rev: i64) {
        {
            let mut ring = self.ring();
            ring.revisions.clear();
            ring.events = 0;
            ring.covered_from = current_rev + 1;
        }
        self.current.send_replace(current_rev);
    }

    /// The current revision, and a receiver that wakes when it moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.current.subscribe()
    }

    /// The events of revisions `from..=to` if the ring still has all of them.
    fn recent(&self, from: i64, to: i64) -> Option<Vec<Event>> {
        let ring = self.ring();
        if from < ring.covered_from {
            return None;
        }
        let start = ring.revisions.partition_point(|(rev, _)| *rev < from);
        let events = ring
            .revisions
            .iter()
            .skip(start)
            .take_while(|(rev, _)| *rev <= to)
            .flat_map(|(_, list)| list.iter().cloned())
            .collect();
        Some(events)
    }
}

/// Why a watcher could not be created (etcd's mvcc errors, as the API reports them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CreateError {
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
}

/// One watcher of a stream.
#[derive(Debug)]
struct Watcher {
    key: Vec<u8>,
    /// Empty: the key alone; `[0]`: every key from `key` on; otherwise the exclusive end.
    range_end: Vec<u8>,
    /// The next revision this watcher has not been given yet.
    next_rev: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    /// Whether it was sent anything since the last progress tick.
    active: bool,
}

impl Watcher {
    fn covers(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key.as_slice()
        } else if self.range_end == [0] {
            key >= self.key.as_slice()
        } else {
            key >= self.key.as_slice() && key < self.range_end.as_slice()
        }
    }

    fn wants(&self, event: &Event) -> bool {
        let put = event.r#type == EventType::Put as i32;
        let filtered = if put { self.no_put } else { self.no_delete };
        !filtered && event.kv.as_ref().is_some_and(|kv| self.covers(&kv.key))
    }
}

/// What a stream sends for its watchers.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// Events of whole revisions for one watcher (may be empty only for progress).
    Events { watch_id: i64, events: Vec<Event>, fragment: bool },
    /// The watcher's next revision was compacted: it is cancelled.
    Compacted { watch_id: i64, compact_revision: i64 },
}

/// The watchers of one client stream.
#[derive(Debug, Default)]
pub struct Watchers {
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
}

impl Watchers {
    pub fn new() -> Watchers {
        Watchers::default()
    }

    /// Creates a watcher (etcd's `watchStream.Watch`); answers its ID. `current_rev` is the
    /// revision "now" (a start revision of 0 means the one after it).
    pub fn create(&mut self, req: &WatchCreateRequest, current_rev: i64) -> Result<i64, CreateError> {
        if !req.range_end.is_empty() && req.range_end != [0] && req.key >= req.range_end {
            return Err(CreateError::EmptyRange);
        }
        let id = if req.watch_id == AUTO_WATCH_ID {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        } else if self.watchers.contains_key(&req.watch_id) {
            return Err(CreateError::DuplicateId);
        } else {
            req.watch_id
        };
        let filters = |f: FilterType| req.filters.contains(&(f as i32));
        let next_rev = if req.start_revision <= 0 { current_rev + 1 } else { req.start_revision };
        let watcher = Watcher {
            key: req.key.clone(),
            range_end: req.range_end.clone(),
            next_rev,
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            active: false,
        };
        self.watchers.insert(id, watcher);
        Ok(id)
    }

    /// Cancels watcher `id`; false if there is none.
    pub fn cancel(&mut self, id: i64) -> bool {
        self.watchers.remove(&id).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Whether `id` asked for fragmented responses.
    pub fn fragments(&self, id: i64) -> bool {
        self.watchers.get(&id).is_some_and(|w| w.fragment)
    }

    /// Whether any watcher has not yet been given revision `current`.
    pub fn behind(&self, current: i64) -> bool {
        self.watchers.values().any(|w| w.next_rev <= current)
    }

    /// Advances every watcher towards revision `current` (at most a bounded number of revisions
    /// each): answers the events to send, per watcher in revision order. A watcher whose
    /// history was compacted is cancelled and removed.
    pub fn poll(&mut self, hub: &WatchHub, store: &Store, current: i64) -> Result<Vec<Delivery>, MvccError> {
        let mut out = Vec::new();
        let mut compacted = Vec::new();
        for (&id, watcher) in &mut self.watchers {
            if watcher.next_rev > current {
                continue;
            }
            let to = current.min(watcher.next_rev.saturating_add(CATCH_UP_REVISIONS_MAX - 1));
            // Compaction may have removed part of the next revision's changes (a delete's
            // tombstone), so even a revision the ring still holds is no longer served whole.
            let compact_revision = store.compact_revision();
            let events = match hub.recent(watcher.next_rev, to) {
                Some(_) | None if watcher.next_rev <= compact_revision => Err(MvccError::Compacted),
                Some(events) => Ok(events),
                None => store.events(watcher.next_rev, to),
            };
            let events = match events {
                Ok(events) => events,
                Err(MvccError::Compacted) => {
                    let compact_revision = store.compact_revision();
                    out.push(Delivery::Compacted { watch_id: id, compact_revision });
                    compacted.push(id);
                    continue;
                }
                Err(e) => return Err(e),
            };
            watcher.next_rev = to + 1;
            let mut wanted: Vec<Event> = events.into_iter().filter(|e| watcher.wants(e)).collect();
            if wanted.is_empty() {
                continue;
            }
            if watcher.prev_kv {
                for event in &mut wanted {
                    event.prev_kv = previous(store, event);
                }
            }
            watcher.active = true;
            out.push(Delivery::Events { watch_id: id, events: wanted, fragment: watcher.fragment });
        }
        for id in compacted {
            self.watchers.remove(&id);
        }
        Ok(out)
    }

    /// Watchers that asked for progress notifications and were sent nothing since the last tick
    /// (etcd's progress notify); starts a new tick.
    pub fn progress_due(&mut self, current: i64) -> Vec<i64> {
        let mut due = Vec::new();
        for (&id, watcher) in &mut self.watchers {
            if watcher.progress_notify && !watcher.active && watcher.next_rev > current {
                due.push(id);
            }
            watcher.active = false;
        }
        due
    }
}

/// The key-value before `event` (a range at the revision before it), if it existed and is still
/// readable.
fn previous(store: &Store, event: &Event) -> Option<detcd_proto::mvccpb::KeyValue> {
    let kv = event.kv.as_ref()?;
    let req = RangeRequest { key: kv.key.clone(), revision: kv.mod_revision - 1, ..Default::default() };
    store.range(&req).ok()?.kvs.into_iter().next()
}

/// Splits the events of one response into fragments of at most `limit` encoded bytes each
/// (whole events; a single larger event goes alone), as etcd does for `fragment` watchers.
pub fn fragment(events: Vec<Event>, limit: usize) -> Vec<Vec<Event>> {
    use prost::Message;
    let mut fragments = vec![Vec::new()];
    let mut size = 0;
    for event in events {
        let len = event.encoded_len();
        let last = fragments.len() - 1;
        if size + len > limit && !fragments[last].is_empty() {
            fragments.push(Vec::new());
            size = 0;
        }
        size += len;
        let last = fragments.len() - 1;
        fragments[last].push(event);
    }
    fragments
}

#[cfg(test)]
mod tests {
    use detcd_proto::mvccpb::KeyValue;

    use super::*;

    fn event(key: &str, rev: i64) -> Event {
        let kv = KeyValue { key: key.as_bytes().to_vec(), mod_revision: rev, ..Default::default() };
        Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: None }
    }

    #[test]
    fn ring_serves_recent_revisions_and_forgets_old_ones() {
        let hub = WatchHub::new(1);
        assert_eq!(hub.recent(1, 1), None, "revision 1 predates the hub");
        hub.publish(3, vec![event("a", 2), event("b", 3), event("c", 3)]);
        assert_eq!(*hub.subscribe().borrow(), 3);
        assert_eq!(hub.recent(3, 3).map(|e| e.len()), Some(2));
        assert_eq!(hub.recent(2, 9).map(|e| e.len()), Some(3));
        let many: Vec<Event> = (4..4 + RING_EVENTS_MAX as i64).map(|r| event("k", r)).collect();
        hub.publish(3 + RING_EVENTS_MAX as i64, many);
        assert_eq!(hub.recent(2, 5), None, "the oldest revisions were dropped");
        hub.reset(100);
        assert_eq!(hub.recent(50, 100), None);
        assert_eq!(*hub.subscribe().borrow(), 100);
    }

    #[test]
    fn ids_are_assigned_or_checked() {
        let mut w = Watchers::new();
        let req = |watch_id, key: &str, end: &str| WatchCreateRequest {
            watch_id,
            key: key.as_bytes().to_vec(),
            range_end: end.as_bytes().to_vec(),
            ..Default::default()
        };
        assert_eq!(w.create(&req(0, "a", ""), 1), Ok(0));
        assert_eq!(w.create(&req(1, "a", ""), 1), Ok(1));
        assert_eq!(w.create(&req(0, "a", ""), 1), Ok(2));
        assert_eq!(w.create(&req(1, "a", ""), 1), Err(CreateError::DuplicateId));
        assert_eq!(w.create(&req(0, "b", "a"), 1), Err(CreateError::EmptyRange));
        assert!(w.cancel(1));
        assert!(!w.cancel(1));
        assert!(w.behind(2) && !w.behind(1));
    }

    #[test]
    fn fragments_split_between_events() {
        let events: Vec<Event> = (1..=10).map(|r| event("key", r)).collect();
        let one = prost::Message::encoded_len(&events[0]);
        let parts = fragment(events, one * 3);
        assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    }
}
