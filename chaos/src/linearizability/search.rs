//! The search for a linearization of one partition: Wing & Gong's algorithm with Lowe's
//! memoization, iterative, over a doubly linked list of call and return events.
//!
//! A required operation (see `classify`) has a call at its invocation and a return at its
//! deadline and must take effect between them; an optional one has only a call: it may take effect
//! any time after, or never (never is the same as after everything else). From each node the walk
//! tries, in invocation order, the operations whose calls precede the first pending return;
//! reaching that return means backtracking. Pruning, each step argued where applied:
//!
//! - the memo skips nodes a visited node subsumes (see `memo`);
//! - a class of optional operations is only tried through its earliest unused member;
//! - an optional step that changes nothing, or only touches keys the model knows nothing about
//!   yet, is never taken;
//! - the revision floor only rises along a path, so a step that lifts it past the revision an
//!   acknowledged operation still to place reported leads nowhere.
//!
//! The search gives up with [`Verdict::Inconclusive`] after `states_max` nodes, or once the memo
//! would exceed [`MEMO_BYTES_MAX`].

use std::collections::BTreeSet;

use super::classify::{plan, Planned};
use super::memo::Memo;
use super::model::{apply, Gaps, State};
use super::prepare::LocalOp;

/// Memory the memo may take before the search gives up, whatever `states_max` says.
const MEMO_BYTES_MAX: u64 = 2 << 30;

/// Rough bytes per key of a memoized state (a `Slot` and its share of the box).
const SLOT_BYTES: u64 = 72;

/// Rough fixed bytes per memo entry (the entry, its box headers and the index).
const MEMO_ENTRY_OVERHEAD_BYTES: u64 = 96;

/// The search's answer for one partition.
#[derive(Debug)]
pub(crate) enum Verdict {
    Linearizable,
    /// With the deepest dead end when the search ran with `explain`.
    NotLinearizable(Option<Failure>),
    /// The memo reached its limit first.
    Inconclusive,
}

/// The deepest point the search reached before giving up on every order.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Indices (into the searched operations) of the longest consistent order found.
    pub order: Vec<usize>,
    /// The operation whose deadline came next without it being able to take effect.
    pub blocked: usize,
    /// The required operations that could have come next but whose responses the state rules out.
    pub impossible: Vec<usize>,
    /// The model state after `order`.
    pub state: State,
    /// How many required operations `order` holds: dead ends are ranked by it.
    required: usize,
}

#[derive(Debug)]
pub(crate) struct SearchResult {
    pub verdict: Verdict,
    pub states_explored: u64,
}

/// Searches a linearization of `ops` (sorted by invocation) over `keys` keys, starting from absent
/// keys or, with `unknown_start`, from keys in any state.
pub(crate) fn search(
    ops: &[LocalOp],
    keys: usize,
    unknown_start: bool,
    gaps: &Gaps,
    states_max: u64,
    explain: bool,
) -> SearchResult {
    // Explaining shows real values: no ghosts (they only speed the search up).
    let plan = plan(ops, !explain);
    let words = plan.len().div_ceil(64);
    let entry_bytes = words as u64 * 8 + keys as u64 * SLOT_BYTES + MEMO_ENTRY_OVERHEAD_BYTES;
    let states_max = states_max.min(MEMO_BYTES_MAX / entry_bytes).min(u64::from(u32::MAX - 1));
    let mut search = Search::new(plan, State::initial(keys, unknown_start), gaps);
    let verdict = search.run(states_max, explain);
    SearchResult { verdict, states_explored: search.memo.nodes() }
}

/// A call or a return.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    is_return: bool,
}

/// One linearized operation, to undo on backtrack.
struct Frame {
    op: usize,
    /// Its call event, where the walk resumes.
    event: usize,
    /// Which of its possible outcomes was taken.
    variant: usize,
    previous: State,
}

/// A set of operations as bits, required and optional ones counted apart.
struct Linearized {
    /// Per operation: whether it is optional, and its bit in its set.
    bit_of: Vec<(bool, usize)>,
    required: Vec<u64>,
    optional: Vec<u64>,
}

impl Linearized {
    fn new(plan: &[Planned<'_>]) -> Self {
        let (mut required, mut optional) = (0, 0);
        let bit_of = plan
            .iter()
            .map(|planned| {
                let counter = if planned.deadline_ns.is_some() { &mut required } else { &mut optional };
                *counter += 1;
                (planned.deadline_ns.is_none(), *counter - 1)
            })
            .collect();
        Linearized { bit_of, required: vec![0; required.div_ceil(64)], optional: vec![0; optional.div_ceil(64)] }
    }

    fn flip(&mut self, op: usize) {
        let (optional, bit) = self.bit_of[op];
        let set = if optional { &mut self.optional } else { &mut self.required };
        set[bit / 64] ^= 1 << (bit % 64);
    }
}

struct Search<'a> {
    plan: Vec<Planned<'a>>,
    gaps: &'a Gaps,
    events: Vec<Event>,
    /// The event list, circular through `head`.
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    call_of: Vec<usize>,
    return_of: Vec<Option<usize>>,
    /// Members of each class linearized so far (always its earliest ones).
    class_used: Vec<u32>,
    /// (floor_max, op) of the acknowledged operations not linearized yet.
    pending_floors: BTreeSet<(i64, usize)>,
    linearized: Linearized,
    required_left: usize,
    state: State,
    stack: Vec<Frame>,
    memo: Memo,
    /// Reused buffer for the outcomes of one step.
    outcomes: Vec<State>,
}

impl<'a> Search<'a> {
    fn new(plan: Vec<Planned<'a>>, state: State, gaps: &'a Gaps) -> Self {
        let mut timed: Vec<(u64, bool, usize)> = Vec::with_capacity(plan.len() * 2);
        for (op, planned) in plan.iter().enumerate() {
            timed.push((planned.invoke_ns, false, op));
            if let Some(deadline) = planned.deadline_ns {
                timed.push((deadline, true, op));
            }
        }
        // Calls sort before returns at the same instant: operations that touch in time overlap.
        timed.sort_unstable();
        let events: Vec<Event> = timed.iter().map(|&(_, is_return, op)| Event { op, is_return }).collect();
        let head = events.len();
        let mut call_of = vec![0; plan.len()];
        let mut return_of = vec![None; plan.len()];
        for (at, event) in events.iter().enumerate() {
            if event.is_return {
                return_of[event.op] = Some(at);
            } else {
                call_of[event.op] = at;
            }
        }
        let classes = plan.iter().filter_map(|planned| planned.class.map(|(class, _)| class + 1)).max().unwrap_or(0);
        Search {
            next: (0..=head).map(|at| (at + 1) % (head + 1)).collect(),
            prev: (0..=head).map(|at| (at + head) % (head + 1)).collect(),
            required_left: plan.iter().filter(|planned| planned.deadline_ns.is_some()).count(),
            linearized: Linearized::new(&plan),
            class_used: vec![0; classes],
            pending_floors: plan
                .iter()
                .enumerate()
                .filter_map(|(op, planned)| planned.floor_max.map(|floor| (floor, op)))
                .collect(),
            plan,
            gaps,
            events,
            head,
            call_of,
            return_of,
            state,
            stack: Vec::new(),
            memo: Memo::default(),
            outcomes: Vec::new(),
        }
    }

    fn unlink(&mut self, at: usize) {
        let (prev, next) = (self.prev[at], self.next[at]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, at: usize) {
        let (prev, next) = (self.prev[at], self.next[at]);
        self.next[prev] = at;
        self.prev[next] = at;
    }

    fn lift(&mut self, op: usize) {
        debug_assert!(self.plan[op].deadline_ns.is_none() || self.required_left > 0, "lifting a required op twice");
        self.linearized.flip(op);
        self.unlink(self.call_of[op]);
        if let Some(at) = self.return_of[op] {
            self.unlink(at);
            self.required_left -= 1;
        }
        if let Some((class, _)) = self.plan[op].class {
            self.class_used[class] += 1;
        }
        if let Some(floor) = self.plan[op].floor_max {
            self.pending_floors.remove(&(floor, op));
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(floor) = self.plan[op].floor_max {
            self.pending_floors.insert((floor, op));
        }
        if let Some((class, _)) = self.plan[op].class {
            self.class_used[class] -= 1;
        }
        if let Some(at) = self.return_of[op] {
            self.relink(at);
            self.required_left += 1;
        }
        self.relink(self.call_of[op]);
        self.linearized.flip(op);
    }

    /// Whether, at `floor`, some acknowledged operation other than `op` still to place could no
    /// longer be placed.
    fn strands_another(&self, op: usize, floor: i64) -> bool {
        let mut pending = self.pending_floors.iter().filter(|&&(_, other)| other != op);
        pending.next().is_some_and(|&(floor_max, _)| floor_max < floor)
    }

    /// Tries to linearize `op` now, from its outcome `first_variant` on. Skips a class member that
    /// is not its class's earliest unused one (an earlier member could stand in for it anywhere it
    /// could go), a step that strands another operation, and an optional step that changes
    /// nothing or only touches keys the model knows nothing about yet: the node without it, being
    /// explored, has more options and a state that allows at least as much (unknown keys may hold
    /// anything, and the floor is no higher).
    fn try_lift(&mut self, op: usize, first_variant: usize) -> Option<(usize, State)> {
        let planned = &self.plan[op];
        if planned.class.is_some_and(|(class, rank)| self.class_used[class] != rank) {
            return None;
        }
        if planned.deadline_ns.is_none() && self.state.all_unknown(planned.step.keys()) {
            return None;
        }
        self.outcomes.clear();
        apply(&self.state, &planned.step, planned.known, self.gaps, &mut self.outcomes);
        let optional = planned.deadline_ns.is_none();
        for variant in first_variant..self.outcomes.len() {
            let outcome = &self.outcomes[variant];
            if optional && *outcome == self.state || self.strands_another(op, outcome.floor) {
                continue;
            }
            self.linearized.flip(op);
            let fresh = self.memo.insert(&self.linearized.required, &self.linearized.optional, outcome);
            self.linearized.flip(op);
            if fresh {
                let previous = std::mem::replace(&mut self.state, self.outcomes.swap_remove(variant));
                self.lift(op);
                return Some((variant, previous));
            }
        }
        None
    }

    fn run(&mut self, states_max: u64, explain: bool) -> Verdict {
        let (mut cursor, mut first_variant) = (self.next[self.head], 0);
        let mut deepest: Option<Failure> = None;
        loop {
            if self.required_left == 0 {
                return Verdict::Linearizable;
            }
            if self.memo.nodes() >= states_max {
                return Verdict::Inconclusive;
            }
            // A required operation is left, so its return lies ahead of any walk from the head.
            debug_assert!(cursor != self.head, "the walk passed every return");
            match self.events.get(cursor).copied() {
                Some(Event { op, is_return: false }) => {
                    match self.try_lift(op, first_variant) {
                        Some((variant, previous)) => {
                            self.stack.push(Frame { op, event: cursor, variant, previous });
                            cursor = self.next[self.head];
                        }
                        None => cursor = self.next[cursor],
                    }
                    first_variant = 0;
                }
                event => {
                    if explain {
                        self.record(event.map(|event| event.op), &mut deepest);
                    }
                    let Some(frame) = self.stack.pop() else { return Verdict::NotLinearizable(deepest) };
                    self.unlift(frame.op);
                    self.state = frame.previous;
                    (cursor, first_variant) = (frame.event, frame.variant + 1);
                }
            }
        }
    }

    /// Keeps the deepest dead end (most required operations placed, then fewest optional ones):
    /// the order so far and the operation whose deadline stopped it.
    fn record(&self, blocked: Option<usize>, deepest: &mut Option<Failure>) {
        let Some(blocked) = blocked else { return };
        let required = self.stack.iter().filter(|frame| self.plan[frame.op].deadline_ns.is_some()).count();
        let optional = self.stack.len() - required;
        let deeper = |failure: &Failure| {
            let failure_optional = failure.order.len() - failure.required;
            required > failure.required || required == failure.required && optional < failure_optional
        };
        if deepest.as_ref().is_some_and(|failure| !deeper(failure)) {
            return;
        }
        *deepest = Some(Failure {
            order: self.stack.iter().map(|frame| self.plan[frame.op].source).collect(),
            blocked: self.plan[blocked].source,
            impossible: self.impossible_now(),
            state: self.state.clone(),
            required,
        });
    }

    /// The required operations the walk could reach now whose responses the state rules out.
    fn impossible_now(&self) -> Vec<usize> {
        let mut impossible = Vec::new();
        let mut outcomes = Vec::new();
        let mut cursor = self.next[self.head];
        while let Some(Event { op, is_return: false }) = self.events.get(cursor).copied() {
            let planned = &self.plan[op];
            outcomes.clear();
            apply(&self.state, &planned.step, planned.known, self.gaps, &mut outcomes);
            if planned.deadline_ns.is_some() && outcomes.is_empty() {
                impossible.push(planned.source);
            }
            cursor = self.next[cursor];
        }
        impossible
    }
}
