//! The etcd v3 KV model the search steps through, restricted to one partition's keys.
//!
//! A [`State`] holds, per key, a [`Slot`] and a revision `floor`: the largest header revision any
//! operation linearized so far in this partition reported. Revisions are global to the cluster, so
//! a partition cannot know them exactly; what it knows is that along a linearization they never
//! decrease and grow with every write. Hence the two rules every acknowledged operation obeys here:
//! a write's revision is greater than the floor, a read's is at least the floor.
//!
//! Revisions and versions are [`Span`]s, inclusive ranges of what they may be. An acknowledged
//! write's revision is exact; an indeterminate one's is only known to exceed the floor at the moment
//! it is linearized and to be none that an acknowledged write created ([`Gaps`]), and later
//! operations cap it (it precedes them). A read that sees the field binds it. A window that starts mid-history begins with [`Slot::Unknown`] keys, bound by whatever
//! is seen first. Every rule only ever relaxes towards "possible": the model never rejects a step
//! a real etcd could have taken (see `apply` for where each check lives).

use crate::history::CompareOp;

/// A key's index within its partition.
pub(crate) type KeyIdx = u32;

/// An interned value. Ids follow the values' byte order, so value compares can compare ids.
pub(crate) type ValueId = u32;

/// The stand-in value of a put that no read observed and no compare names: all such puts of a key
/// are interchangeable, which lets the search try only one of them at a time.
pub(crate) const GHOST_VALUE: ValueId = ValueId::MAX;

/// The upper end of an unbounded [`Span`].
pub(crate) const UNBOUNDED: i64 = i64::MAX;

/// An inclusive range of the values a revision or a version may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Span {
    pub lo: i64,
    pub hi: i64,
}

/// What a compare evaluates to when the state is only partly known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truth {
    True,
    False,
    Maybe,
}

impl Truth {
    fn of(value: bool) -> Truth {
        if value {
            Truth::True
        } else {
            Truth::False
        }
    }

    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Maybe => Truth::Maybe,
        }
    }
}

impl Span {
    pub(crate) fn exact(value: i64) -> Span {
        Span { lo: value, hi: value }
    }

    pub(crate) fn is_exact(self) -> bool {
        self.lo == self.hi
    }

    fn plus_one(self) -> Span {
        Span { lo: self.lo.saturating_add(1), hi: self.hi.saturating_add(1) }
    }

    /// Binds the span to `seen` if it may be `seen` and `seen <= cap`.
    fn bind(self, seen: i64, cap: i64) -> Option<Span> {
        (self.lo <= seen && seen <= self.hi.min(cap)).then_some(Span::exact(seen))
    }

    /// `stored <op> target` for every stored value the span allows.
    fn compare(self, op: CompareOp, target: i64) -> Truth {
        match op {
            CompareOp::Equal if self.is_exact() => Truth::of(self.lo == target),
            CompareOp::Equal if target < self.lo || target > self.hi => Truth::False,
            CompareOp::Equal => Truth::Maybe,
            CompareOp::NotEqual => self.compare(CompareOp::Equal, target).not(),
            CompareOp::Greater if self.lo > target => Truth::True,
            CompareOp::Greater if self.hi <= target => Truth::False,
            CompareOp::Less if self.hi < target => Truth::True,
            CompareOp::Less if self.lo >= target => Truth::False,
            CompareOp::Greater | CompareOp::Less => Truth::Maybe,
        }
    }
}

/// A present key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KeyState {
    pub value: ValueId,
    pub create: Span,
    pub modified: Span,
    pub version: Span,
}

/// What the model knows about one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// Anything: the key as it was before a window that starts mid-history.
    Unknown,
    Absent,
    Present(KeyState),
}

/// The model state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct State {
    /// The largest header revision reported by an operation linearized so far.
    pub floor: i64,
    pub slots: Box<[Slot]>,
}

/// What a compare compares against (see [`crate::history::CompareTarget`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    Value(ValueId),
    ModRevision(i64),
    CreateRevision(i64),
    Version(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Cmp {
    pub key: KeyIdx,
    pub op: CompareOp,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Get(KeyIdx),
    Put(KeyIdx, ValueId),
    Delete(KeyIdx),
}

/// Every request, as the transaction it is equivalent to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Step {
    pub compares: Vec<Cmp>,
    pub success: Vec<Action>,
    pub failure: Vec<Action>,
}

impl Step {
    /// Every key the step names.
    pub(crate) fn keys(&self) -> impl Iterator<Item = KeyIdx> + '_ {
        let actions = self.success.iter().chain(&self.failure).map(|action| match action {
            Action::Get(key) | Action::Put(key, _) | Action::Delete(key) => *key,
        });
        self.compares.iter().map(|cmp| cmp.key).chain(actions)
    }

    /// Whether no branch writes.
    pub(crate) fn is_read_only(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|action| matches!(action, Action::Get(_)))
    }

    /// The values either branch puts.
    pub(crate) fn put_values(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.success.iter().chain(&self.failure).filter_map(|action| match action {
            Action::Put(_, value) => Some(*value),
            _ => None,
        })
    }
}

/// A key-value pair as a response reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Observed {
    pub value: ValueId,
    pub create: i64,
    pub modified: i64,
    pub version: i64,
}

/// The result of one [`Action`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seen {
    Get(Option<Observed>),
    Put,
    Delete(i64),
}

/// An acknowledged response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Expect {
    pub revision: i64,
    pub succeeded: bool,
    pub results: Vec<Seen>,
}

impl Expect {
    /// Whether the response says the operation created its revision (it put, or deleted something).
    pub(crate) fn created(&self) -> bool {
        self.results.iter().any(|seen| matches!(seen, Seen::Put | Seen::Delete(1..)))
    }

    /// The highest floor the response can be linearized at: its revision, less one if it created
    /// that revision (see [`apply`]).
    pub(crate) fn floor_max(&self) -> i64 {
        self.revision - i64::from(self.created())
    }
}

impl State {
    /// The state before any operation: every key absent (a whole history) or unknown (a window).
    pub(crate) fn initial(keys: usize, unknown: bool) -> State {
        let slot = if unknown { Slot::Unknown } else { Slot::Absent };
        State { floor: 0, slots: vec![slot; keys].into_boxed_slice() }
    }

    /// Whether nothing is known yet about any of `keys`.
    pub(crate) fn all_unknown(&self, mut keys: impl Iterator<Item = KeyIdx>) -> bool {
        keys.all(|key| self.slots[key as usize] == Slot::Unknown)
    }

    fn slot_mut(&mut self, key: KeyIdx) -> &mut Slot {
        &mut self.slots[key as usize]
    }

    /// Caps every not yet exact revision at `revision`: whatever wrote them precedes the operation
    /// being applied. Fails if a span becomes empty.
    fn cap_revisions(&mut self, revision: i64) -> Option<()> {
        for slot in self.slots.iter_mut() {
            if let Slot::Present(state) = slot {
                for span in [&mut state.create, &mut state.modified] {
                    if !span.is_exact() {
                        span.hi = span.hi.min(revision);
                        if span.hi < span.lo {
                            return None;
                        }
                    }
                }
            }
        }
        Some(())
    }

    /// Compares one key; a missing key's value never compares true, its revisions and version are 0.
    fn compare(&self, cmp: &Cmp) -> Truth {
        match &self.slots[cmp.key as usize] {
            Slot::Unknown => Truth::Maybe,
            Slot::Absent => match cmp.target {
                Target::Value(_) => Truth::False,
                Target::ModRevision(t) | Target::CreateRevision(t) | Target::Version(t) => {
                    Span::exact(0).compare(cmp.op, t)
                }
            },
            Slot::Present(state) => match cmp.target {
                Target::Value(t) => compare_values(state.value, cmp.op, t),
                Target::ModRevision(t) => state.modified.compare(cmp.op, t),
                Target::CreateRevision(t) => state.create.compare(cmp.op, t),
                Target::Version(t) => state.version.compare(cmp.op, t),
            },
        }
    }

    /// The conjunction of a guard.
    fn guard(&self, compares: &[Cmp]) -> Truth {
        let mut all = Truth::True;
        for cmp in compares {
            match self.compare(cmp) {
                Truth::False => return Truth::False,
                Truth::Maybe => all = Truth::Maybe,
                Truth::True => {}
            }
        }
        all
    }

    fn put(&mut self, key: KeyIdx, value: ValueId, revision: Span) {
        let slot = self.slot_mut(key);
        let (create, version) = match slot {
            Slot::Absent => (revision, Span::exact(1)),
            Slot::Present(state) => (state.create, state.version.plus_one()),
            Slot::Unknown => (Span { lo: 1, hi: revision.hi }, Span { lo: 1, hi: UNBOUNDED }),
        };
        *slot = Slot::Present(KeyState { value, create, modified: revision, version });
    }

    /// Deletes `key`; returns whether it deleted something, or `None` if that contradicts the
    /// `expected` deleted count.
    fn delete(&mut self, key: KeyIdx, expected: Option<i64>) -> Option<bool> {
        let slot = self.slot_mut(key);
        let deleted = match (&*slot, expected) {
            (Slot::Absent, None | Some(0)) => false,
            (Slot::Present(_), None | Some(1)) => true,
            // Whether it deleted something is unknown: say no, so that no floor is raised for it.
            (Slot::Unknown, None) => false,
            (Slot::Unknown, Some(count)) if count == 0 || count == 1 => count == 1,
            _ => return None,
        };
        *slot = Slot::Absent;
        Some(deleted)
    }

    /// Checks a read of `key` at header revision `revision` against the model, binding what the
    /// model did not know yet.
    fn observe(&mut self, key: KeyIdx, seen: Option<&Observed>, revision: i64) -> Option<()> {
        let slot = self.slot_mut(key);
        match (&mut *slot, seen) {
            (Slot::Absent, None) => {}
            (Slot::Unknown, None) => *slot = Slot::Absent,
            (Slot::Unknown, Some(kv)) => {
                if kv.modified > revision || kv.create > kv.modified {
                    return None;
                }
                *slot = Slot::Present(KeyState {
                    value: kv.value,
                    create: Span::exact(kv.create),
                    modified: Span::exact(kv.modified),
                    version: Span::exact(kv.version),
                });
            }
            (Slot::Present(state), Some(kv)) => {
                if state.value != kv.value {
                    return None;
                }
                state.create = state.create.bind(kv.create, revision)?;
                state.modified = state.modified.bind(kv.modified, revision)?;
                state.version = state.version.bind(kv.version, UNBOUNDED)?;
            }
            (Slot::Absent, Some(_)) | (Slot::Present(_), None) => return None,
        }
        Some(())
    }

    /// Runs one action of an acknowledged response; returns whether it wrote.
    fn act_acknowledged(&mut self, action: &Action, seen: &Seen, revision: i64) -> Option<bool> {
        match (action, seen) {
            (Action::Get(key), Seen::Get(kv)) => self.observe(*key, kv.as_ref(), revision).map(|()| false),
            (Action::Put(key, value), Seen::Put) => {
                self.put(*key, *value, Span::exact(revision));
                Some(true)
            }
            (Action::Delete(key), Seen::Delete(count)) => self.delete(*key, Some(*count)),
            _ => None,
        }
    }
}

/// `stored <op> target` on values. The ghost stands for values no acknowledged operation reads or
/// names: it equals no other value; against another ghost, or in order, it is undecided.
fn compare_values(stored: ValueId, op: CompareOp, target: ValueId) -> Truth {
    let ghosts = (stored == GHOST_VALUE, target == GHOST_VALUE);
    match (op, ghosts) {
        (CompareOp::Equal | CompareOp::NotEqual, (true, true)) => Truth::Maybe,
        (CompareOp::Equal, _) => Truth::of(stored == target),
        (CompareOp::NotEqual, _) => Truth::of(stored != target),
        (_, (true, _) | (_, true)) => Truth::Maybe,
        (CompareOp::Greater, _) => Truth::of(stored > target),
        (CompareOp::Less, _) => Truth::of(stored < target),
    }
}

/// What is known of an operation's response.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Known<'a> {
    /// Acknowledged with this response.
    Response(&'a Expect),
    /// Not trusted or not seen, but known to have run this branch and created this revision if it
    /// took effect: an acknowledged write a window relaxed, or an unconditional indeterminate one
    /// whose state a read saw.
    Effect { revision: i64, succeeded: bool },
    /// Indeterminate.
    Nothing,
}

/// The revisions acknowledged writes created, anywhere in the history. Revisions count write
/// transactions one by one, so an indeterminate write that took effect created one of the others.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gaps {
    /// Sorted, distinct.
    claimed: Vec<i64>,
    /// For each claimed revision, the last of the run of consecutive claimed ones it starts or
    /// belongs to.
    run_end: Vec<i64>,
}

impl Gaps {
    pub(crate) fn new(mut claimed: Vec<i64>) -> Gaps {
        claimed.sort_unstable();
        claimed.dedup();
        let mut run_end = claimed.clone();
        for at in (0..claimed.len().saturating_sub(1)).rev() {
            if claimed[at + 1] == claimed[at] + 1 {
                run_end[at] = run_end[at + 1];
            }
        }
        Gaps { claimed, run_end }
    }

    /// The first revision from `at` on that no acknowledged write created.
    pub(crate) fn first_free(&self, at: i64) -> i64 {
        match self.claimed.binary_search(&at) {
            Ok(index) => self.run_end[index].saturating_add(1),
            Err(_) => at,
        }
    }
}

/// Appends to `out` every state that applying `step` to `state` may lead to: none if what is
/// known of the response is impossible here, one or two for an indeterminate operation (two when
/// the guard cannot be decided).
pub(crate) fn apply(state: &State, step: &Step, known: Known<'_>, gaps: &Gaps, out: &mut Vec<State>) {
    match known {
        Known::Response(expect) => out.extend(apply_acknowledged(state, step, expect)),
        Known::Effect { revision, succeeded } => {
            let branch = if succeeded { &step.success } else { &step.failure };
            out.extend(apply_effect(state, branch, revision));
        }
        Known::Nothing => apply_indeterminate(state, step, gaps, out),
    }
}

/// A branch known to have created `revision`: it exceeds the floor, caps what came before and
/// becomes the floor, like an acknowledged write whose results are not checked.
fn apply_effect(state: &State, branch: &[Action], revision: i64) -> Option<State> {
    if revision <= state.floor {
        return None;
    }
    let mut next = state.clone();
    next.cap_revisions(revision - 1)?;
    for action in branch {
        match action {
            Action::Get(_) => {}
            Action::Put(key, value) => next.put(*key, *value, Span::exact(revision)),
            Action::Delete(key) => {
                next.delete(*key, None);
            }
        }
    }
    next.floor = revision;
    Some(next)
}

/// The etcd rules for an acknowledged response: the guard agrees with `succeeded`, each result
/// matches the model, a write's revision exceeds the floor, a read's is at least the floor.
fn apply_acknowledged(state: &State, step: &Step, expect: &Expect) -> Option<State> {
    let impossible = match state.guard(&step.compares) {
        Truth::True => !expect.succeeded,
        Truth::False => expect.succeeded,
        Truth::Maybe => false,
    };
    let branch = if expect.succeeded { &step.success } else { &step.failure };
    if impossible || expect.revision < state.floor || branch.len() != expect.results.len() {
        return None;
    }
    let mut next = state.clone();
    next.cap_revisions(expect.floor_max())?;
    let mut wrote = false;
    for (action, seen) in branch.iter().zip(&expect.results) {
        wrote |= next.act_acknowledged(action, seen, expect.revision)?;
    }
    if wrote && expect.revision == state.floor {
        return None;
    }
    debug_assert!(expect.revision >= state.floor, "the floor never falls");
    next.floor = expect.revision;
    Some(next)
}

/// An indeterminate operation: any response; if it wrote, a revision above the floor that no
/// acknowledged write created, which then bounds the floor from below.
fn apply_indeterminate(state: &State, step: &Step, gaps: &Gaps, out: &mut Vec<State>) {
    let guard = state.guard(&step.compares);
    let lowest = gaps.first_free(state.floor.saturating_add(1));
    let revision = Span { lo: lowest, hi: UNBOUNDED };
    for (branch, possible) in [(&step.success, guard != Truth::False), (&step.failure, guard != Truth::True)] {
        if !possible {
            continue;
        }
        let mut next = state.clone();
        let mut wrote = false;
        for action in branch {
            match action {
                Action::Get(_) => {}
                Action::Put(key, value) => {
                    next.put(*key, *value, revision);
                    wrote = true;
                }
                Action::Delete(key) => wrote |= next.delete(*key, None) == Some(true),
            }
        }
        if wrote {
            debug_assert!(lowest > state.floor, "an indeterminate write lands above the floor");
            next.floor = lowest;
        }
        if !out.contains(&next) {
            out.push(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_step(key: KeyIdx, value: ValueId) -> Step {
        Step { success: vec![Action::Put(key, value)], ..Step::default() }
    }

    fn get_expect(revision: i64, kv: Option<Observed>) -> Expect {
        Expect { revision, succeeded: true, results: vec![Seen::Get(kv)] }
    }

    fn applied(state: &State, step: &Step, expect: Option<&Expect>) -> Vec<State> {
        let mut out = Vec::new();
        let known = expect.map_or(Known::Nothing, Known::Response);
        apply(state, step, known, &Gaps::default(), &mut out);
        out
    }

    #[test]
    fn span_compare_decides_only_when_every_value_agrees() {
        let span = Span { lo: 5, hi: 9 };
        assert_eq!(span.compare(CompareOp::Greater, 4), Truth::True);
        assert_eq!(span.compare(CompareOp::Greater, 9), Truth::False);
        assert_eq!(span.compare(CompareOp::Greater, 6), Truth::Maybe);
        assert_eq!(span.compare(CompareOp::Equal, 10), Truth::False);
        assert_eq!(span.compare(CompareOp::NotEqual, 3), Truth::True);
        assert_eq!(Span::exact(7).compare(CompareOp::Equal, 7), Truth::True);
    }

    #[test]
    fn acknowledged_put_must_exceed_the_floor() {
        let state = State { floor: 5, slots: vec![Slot::Absent].into_boxed_slice() };
        let expect = |revision| Expect { revision, succeeded: true, results: vec![Seen::Put] };
        assert!(applied(&state, &put_step(0, 1), Some(&expect(5))).is_empty());
        let next = applied(&state, &put_step(0, 1), Some(&expect(6)));
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].floor, 6);
    }

    #[test]
    fn indeterminate_put_revision_is_bound_by_a_later_read() {
        let state = State { floor: 5, slots: vec![Slot::Absent].into_boxed_slice() };
        let after_put = applied(&state, &put_step(0, 1), None).remove(0);
        let get = Step { success: vec![Action::Get(0)], ..Step::default() };
        let kv = |modified| Observed { value: 1, create: modified, modified, version: 1 };
        assert!(applied(&after_put, &get, Some(&get_expect(9, Some(kv(5))))).is_empty());
        assert!(applied(&after_put, &get, Some(&get_expect(9, Some(kv(10))))).is_empty());
        assert_eq!(applied(&after_put, &get, Some(&get_expect(9, Some(kv(8))))).len(), 1);
    }

    #[test]
    fn indeterminate_txn_with_undecided_guard_has_two_outcomes() {
        let state = State::initial(1, true);
        let step = Step {
            compares: vec![Cmp { key: 0, op: CompareOp::Equal, target: Target::Value(3) }],
            success: vec![Action::Put(0, 4)],
            failure: vec![],
        };
        assert_eq!(applied(&state, &step, None).len(), 2);
    }
}
