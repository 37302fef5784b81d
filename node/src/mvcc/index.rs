//! The in-memory key index: for every key, the revisions at which it changed.
//!
//! A key's history is a list of entries in strictly increasing revision order; a tombstone entry
//! ends a generation (the key was deleted) and the next entry, if any, starts a new one. The
//! index answers "which revision of this key is visible at revision R" without touching disk;
//! the records themselves live in redb under those revisions.
//!
//! Invariants, asserted on every change: revisions of a key strictly increase; a tombstone only
//! follows a live entry (never first, never twice in a row); a key with no entries is removed.
//! Changes made through a write batch are journaled ([`Undo`]) so the batch can undo them.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::schema::Rev;

/// One change of a key: a put (live) or a delete (tombstone) at `rev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub rev: Rev,
    pub tombstone: bool,
}

/// The history of one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct KeyHistory {
    entries: Vec<Entry>,
    /// The create revision and version its record gives the last entry (0 and 0 for a
    /// tombstone): what the next put of the key builds on, without reading that record.
    last: Generation,
}

/// A record's place in its key's generation: the revision that created the key and how many
/// times it was put since (etcd's `create_revision` and `version`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Generation {
    pub create_revision: i64,
    pub version: i64,
}

impl KeyHistory {
    /// The revision of the version visible at main revision `at`, if the key exists then.
    pub fn visible_at(&self, at: i64) -> Option<Rev> {
        let n = self.entries.partition_point(|e| e.rev.main <= at);
        let entry = n.checked_sub(1).map(|i| self.entries[i])?;
        (!entry.tombstone).then_some(entry.rev)
    }

    /// Why `entry` may not be appended, if it may not.
    fn refuse(&self, entry: Entry) -> Option<String> {
        match self.entries.last() {
            Some(last) if last.rev >= entry.rev => {
                Some(format!("revision {} does not follow revision {}", entry.rev, last.rev))
            }
            Some(last) if last.tombstone && entry.tombstone => {
                Some(format!("tombstone at {} follows tombstone at {}", entry.rev, last.rev))
            }
            None if entry.tombstone => Some(format!("history starts with a tombstone at {}", entry.rev)),
            _ => None,
        }
    }

    /// How many of the oldest entries compaction at `at` no longer needs: every entry older than
    /// the newest one at or before `at`, and that one too if it is a tombstone.
    fn compaction_cut(&self, at: i64) -> usize {
        let n = self.entries.partition_point(|e| e.rev.main <= at);
        match n.checked_sub(1) {
            None => 0,
            Some(newest) if self.entries[newest].tombstone => n,
            Some(newest) => newest,
        }
    }
}

/// A key interval in etcd's terms (`key`, `range_end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Interval<'a> {
    /// `range_end` empty: just `key`.
    Single(&'a [u8]),
    /// `range_end == [0]`: every key `>= key`.
    From(&'a [u8]),
    /// `[key, range_end)`, with `key < range_end`.
    Between(&'a [u8], &'a [u8]),
    /// `range_end <= key`: nothing.
    Empty,
}

impl<'a> Interval<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Interval<'a> {
        if range_end.is_empty() {
            Interval::Single(key)
        } else if range_end == [0] {
            Interval::From(key)
        } else if range_end <= key {
            Interval::Empty
        } else {
            Interval::Between(key, range_end)
        }
    }
}

/// How to undo one change of the index.
#[derive(Debug)]
pub(super) enum Undo {
    /// An entry was appended to this key's history, whose last entry's generation was this.
    Pushed(Vec<u8>, Generation),
    /// This key's history was replaced (by compaction); the previous one.
    Replaced(Vec<u8>, KeyHistory),
}

/// All keys and their histories, sorted by key.
#[derive(Debug, Default)]
pub(super) struct KeyIndex {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
}

impl KeyIndex {
    /// Number of keys with any history (live or not).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Keys of `interval` that exist at main revision `at`, in key order, each with the revision
    /// of its visible version.
    pub fn visible(&self, interval: Interval<'_>, at: i64) -> Vec<(&[u8], Rev)> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = match interval {
            Interval::Single(key) => {
                return self
                    .keys
                    .get_key_value(key)
                    .and_then(|(k, h)| h.visible_at(at).map(|rev| (k.as_slice(), rev)))
                    .into_iter()
                    .collect();
            }
            Interval::Empty => return Vec::new(),
            Interval::From(start) => (Bound::Included(start), Bound::Unbounded),
            Interval::Between(start, end) => {
                assert!(start < end, "an interval's start must precede its end");
                (Bound::Included(start), Bound::Excluded(end))
            }
        };
        let out: Vec<(&[u8], Rev)> = self
            .keys
            .range::<[u8], _>(bounds)
            .filter_map(|(k, h)| h.visible_at(at).map(|rev| (k.as_slice(), rev)))
            .collect();
        debug_assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "keys out of order");
        out
    }

    /// The revision of the key's latest version, if it currently exists.
    pub fn latest(&self, key: &[u8]) -> Option<Rev> {
        self.keys.get(key).and_then(|h| h.visible_at(i64::MAX))
    }

    /// Appends a change made by a write batch, with its record's generation, journaling it.
    /// Panics if it breaks an invariant: the write path only ever appends at a fresh revision,
    /// deleting only live keys.
    pub fn push(&mut self, key: &[u8], entry: Entry, generation: Generation, journal: &mut Vec<Undo>) {
        self.push_with(key, entry, journal, |_| generation);
    }

    /// Appends a put made by a write batch at `rev`, journaling it, and returns its record's
    /// generation: the next version of the key's current generation, or a new generation created
    /// at `rev` if the key does not exist now. One index lookup: reading the generation first and
    /// pushing after would take two.
    pub fn push_put(&mut self, key: &[u8], rev: Rev, journal: &mut Vec<Undo>) -> Generation {
        self.push_with(key, Entry { rev, tombstone: false }, journal, |history| match history.entries.last() {
            Some(last) if !last.tombstone => Generation {
                create_revision: history.last.create_revision,
                version: history.last.version.saturating_add(1),
            },
            _ => Generation { create_revision: rev.main, version: 1 },
        })
    }

    fn push_with(
        &mut self,
        key: &[u8],
        entry: Entry,
        journal: &mut Vec<Undo>,
        generation_of: impl FnOnce(&KeyHistory) -> Generation,
    ) -> Generation {
        // Most writes change a key that exists: look it up before allocating a copy of the key.
        let history = match self.keys.get_mut(key) {
            Some(history) => history,
            None => self.keys.entry(key.to_vec()).or_default(),
        };
        if let Some(why) = history.refuse(entry) {
            panic!("key index invariant broken for key {key:?}: {why}");
        }
        let generation = generation_of(history);
        history.entries.push(entry);
        let previous = std::mem::replace(&mut history.last, generation);
        journal.push(Undo::Pushed(key.to_vec(), previous));
        generation
    }

    /// Appends a change read from disk while rebuilding, with its record's generation; a broken
    /// invariant is corruption.
    pub fn load(&mut self, key: &[u8], entry: Entry, generation: Generation) -> Result<(), String> {
        let history = self.keys.entry(key.to_vec()).or_default();
        if let Some(why) = history.refuse(entry) {
            if history.entries.is_empty() {
                self.keys.remove(key);
            }
            return Err(format!("key {key:?}: {why}"));
        }
        history.entries.push(entry);
        history.last = generation;
        Ok(())
    }

    /// Compacts every key at main revision `at`, journaling each changed history; returns the
    /// revisions whose records are no longer needed, in no particular order.
    pub fn compact(&mut self, at: i64, journal: &mut Vec<Undo>) -> Vec<Rev> {
        let mut dropped = Vec::new();
        let mut emptied = Vec::new();
        for (key, history) in self.keys.iter_mut() {
            let cut = history.compaction_cut(at);
            if cut == 0 {
                continue;
            }
            journal.push(Undo::Replaced(key.clone(), history.clone()));
            dropped.extend(history.entries.drain(..cut).map(|e| e.rev));
            assert!(
                history.entries.first().is_none_or(|e| !e.tombstone),
                "compaction left key {key:?} starting with a tombstone"
            );
            if history.entries.is_empty() {
                emptied.push(key.clone());
            }
        }
        for key in emptied {
            self.keys.remove(&key);
        }
        dropped
    }

    /// Undoes one journaled change. Changes must be undone newest first.
    pub fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Pushed(key, previous) => {
                let history = self.keys.get_mut(&key);
                let Some(history) = history else {
                    panic!("undo of a push to key {key:?} that is not in the index");
                };
                assert!(history.entries.pop().is_some(), "undo of a push to an empty history");
                history.last = previous;
                if history.entries.is_empty() {
                    self.keys.remove(&key);
                }
            }
            Undo::Replaced(key, previous) => {
                assert!(!previous.entries.is_empty(), "journaled an empty history for key {key:?}");
                self.keys.insert(key, previous);
            }
        }
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;

    fn live(main: i64) -> Entry {
        Entry { rev: Rev::new(main, 0), tombstone: false }
    }

    fn tomb(main: i64) -> Entry {
        Entry { rev: Rev::new(main, 0), tombstone: true }
    }

    #[test]
    fn visibility_follows_generations() {
        let mut index = KeyIndex::default();
        let mut journal = Vec::new();
        for e in [live(2), tomb(4), live(6)] {
            index.push(b"a", e, Generation::default(), &mut journal);
        }
        let at = |rev| index.visible(Interval::Single(b"a"), rev);
        assert!(at(1).is_empty());
        assert_eq!(at(3), vec![(&b"a"[..], Rev::new(2, 0))]);
        assert!(at(4).is_empty());
        assert!(at(5).is_empty());
        assert_eq!(at(6), vec![(&b"a"[..], Rev::new(6, 0))]);
    }

    #[test]
    fn compaction_drops_older_generation_with_its_tombstone() {
        let mut index = KeyIndex::default();
        let mut journal = Vec::new();
        for e in [live(2), live(3), tomb(4), live(6), live(7)] {
            index.push(b"a", e, Generation::default(), &mut journal);
        }
        let dropped = index.compact(6, &mut journal);
        assert_eq!(dropped, vec![Rev::new(2, 0), Rev::new(3, 0), Rev::new(4, 0)]);
        assert_eq!(index.latest(b"a"), Some(Rev::new(7, 0)));
        while let Some(u) = journal.pop() {
            index.undo(u);
        }
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn compaction_at_tombstone_removes_key() {
        let mut index = KeyIndex::default();
        let mut journal = Vec::new();
        index.push(b"a", live(2), Generation::default(), &mut journal);
        index.push(b"a", tomb(3), Generation::default(), &mut journal);
        assert_eq!(index.compact(3, &mut journal).len(), 2);
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn a_put_builds_on_the_latest_generation_and_its_undo_restores_it() {
        let mut index = KeyIndex::default();
        let mut journal = Vec::new();
        let gen = |create_revision, version| Generation { create_revision, version };
        assert_eq!(index.push_put(b"a", Rev::new(2, 0), &mut journal), gen(2, 1), "a new key");
        assert_eq!(index.push_put(b"a", Rev::new(3, 0), &mut journal), gen(2, 2));
        index.push(b"a", tomb(4), gen(0, 0), &mut journal);
        assert_eq!(index.push_put(b"a", Rev::new(5, 1), &mut journal), gen(5, 1), "after a delete: a new generation");
        for _ in 0..2 {
            index.undo(journal.pop().unwrap());
        }
        assert_eq!(index.latest(b"a"), Some(Rev::new(3, 0)));
        assert_eq!(index.push_put(b"a", Rev::new(4, 0), &mut journal), gen(2, 3), "builds on the restored put");
        while let Some(undo) = journal.pop() {
            index.undo(undo);
        }
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn loading_a_leading_tombstone_is_refused() {
        let mut index = KeyIndex::default();
        assert!(index.load(b"a", tomb(3), Generation::default()).is_err());
        assert_eq!(index.len(), 0);
    }

    #[test]
    fn interval_forms() {
        assert_eq!(Interval::new(b"a", b""), Interval::Single(b"a"));
        assert_eq!(Interval::new(b"a", b"\0"), Interval::From(b"a"));
        assert_eq!(Interval::new(b"b", b"a"), Interval::Empty);
        assert_eq!(Interval::new(b"a", b"a"), Interval::Empty);
        assert_eq!(Interval::new(b"a", b"c"), Interval::Between(b"a", b"c"));
    }
}
