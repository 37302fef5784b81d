//! The nemesis vocabulary: what faults a run injects, when, and how they are healed.
//!
//! A [`Plan`] is a list of timed [`Step`]s, each a [`Fault`] or a [`Heal`]. The same plan values
//! are executed by the simulator (madsim: kill/restart/pause nodes, partition/clog links, crash the
//! simulated disk) and by the real-process runner; this module only describes them. Plans are
//! generated from a seed ([`Plan::generate`] and the named scenarios in [`SCENARIOS`]), so a failing run's plan is replayed by its seed, and they
//! print one step per line ([`Plan`]'s `Display`) for failure reports.
//!
//! # Execution contract
//!
//! - `Step::at_ms` is milliseconds since the nemesis started; steps run in order, and steps with
//!   the same `at_ms` run in list order.
//! - Members are named by index. The initial members are `0..members`; [`Fault::AddMember`] creates
//!   the next index never used before (`members`, `members + 1`, ...); a removed index is never
//!   reused. The executor maps indices to hosts.
//! - [`Target::Leader`] and [`Target::AnyFollower`] are resolved when the step executes: the
//!   member that currently leads (if none is known, a running member chosen by the executor's
//!   seeded rng), or a running non-leader chosen by that rng. The executor records the resolved
//!   index in the fault's description.
//! - Network faults accumulate (each blocks or degrades more links) until [`Heal::Network`] lifts
//!   them all. A partition only drops messages between members; clients reach every member.
//! - A heal names what it ends. A fault aimed at a fixed member is ended by the matching indexed
//!   heal ([`Heal::Restart`], [`Heal::Resume`]); a fault aimed at a role, whose index is only known
//!   at execution time, is ended by [`Heal::RestartAll`] / [`Heal::ResumeAll`], which end that
//!   condition on every member. A heal of a member that is not down is a no-op.
//! - [`Fault::Kill`] is `kill -9`: the process dies, the OS page cache survives, so bytes written
//!   but not fsynced are kept. [`Fault::PowerLoss`] loses the page cache as [`DiskFault`] says.
//!
//! # Invariants
//!
//! [`Plan::audit`] replays a plan against a small model of the cluster (who is down, paused,
//! partitioned, skewed, a member) and reports the peak number of members down at once and whether
//! the plan ends healed. The generator asserts that its plans end healed, restore the member count
//! and respect `max_down`; the tests check the same for many seeds.

use std::collections::BTreeSet;
use std::fmt;

mod generate;

pub use generate::{minority, FaultKind, PlanConfig, ScenarioFn, MEMBERS_MAX, SCENARIOS};

/// Whom a fault is aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A fixed member, by index.
    Member(usize),
    /// Whoever leads when the step executes.
    Leader,
    /// A running follower chosen when the step executes.
    AnyFollower,
}

/// Which messages between members a partition drops.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Partition {
    /// `minority` on one side, every other member on the other.
    MajorityMinority { minority: Vec<usize> },
    /// The leader and `followers` followers on the minority side (the followers after the leader
    /// in cyclic index order), the rest on the other: the leader must step down.
    LeaderMinority { followers: usize },
    /// One member cut off from all others.
    Isolate(Target),
    /// `left` and `right` cannot talk to each other; `bridge` talks to both.
    Bridge { bridge: usize, left: Vec<usize>, right: Vec<usize> },
    /// Messages from `from` to `to` are dropped; the other direction still flows.
    OneWay { from: usize, to: usize },
}

/// What happens to bytes written but not yet fsynced when power is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFault {
    /// Every unsynced write is dropped.
    LoseUnsynced,
    /// Every unsynced write keeps a prefix of itself (a torn write).
    TearUnsynced,
    /// Each unsynced write is kept, dropped or torn, chosen per write by the executor's seed.
    Mixed,
}

/// A fault the nemesis injects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fault {
    Partition(Partition),
    /// The link between `a` and `b` drops everything, both ways.
    Clog {
        a: usize,
        b: usize,
    },
    /// Every message between members is delayed by a uniform `min_ms..=max_ms`.
    Delay {
        min_ms: u64,
        max_ms: u64,
    },
    /// Every message between members is dropped with probability `rate_pct` percent.
    Loss {
        rate_pct: u8,
    },
    /// `kill -9`: unsynced bytes survive in the page cache. Ended by a restart.
    Kill(Target),
    /// The machine loses power: unsynced bytes meet `disk`. Ended by a restart.
    PowerLoss {
        target: Target,
        disk: DiskFault,
    },
    /// The process is stopped (SIGSTOP): alive but silent. Ended by a resume.
    Pause(Target),
    /// The member's clock runs `skew_ms` ahead (negative: behind). Ended by [`Heal::Clocks`].
    ClockSkew {
        target: Target,
        skew_ms: i64,
    },
    /// Start a new member with an empty data dir and add it, as a learner or a voter.
    AddMember {
        learner: bool,
    },
    /// Remove a member from the cluster and stop its process.
    RemoveMember(Target),
    /// Promote the oldest learner to a voter.
    PromoteLearner,
}

/// An action that ends faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Heal {
    /// Lift every network fault (partitions, clogs, delay, loss).
    Network,
    /// Restart member `i` if it was killed or lost power.
    Restart(usize),
    /// Restart every member that was killed or lost power.
    RestartAll,
    /// Resume member `i` if it was paused.
    Resume(usize),
    /// Resume every paused member.
    ResumeAll,
    /// Reset every member's clock skew to zero.
    Clocks,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Fault(Fault),
    Heal(Heal),
}

/// One timed action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Step {
    /// Milliseconds since the nemesis started.
    pub at_ms: u64,
    pub action: Action,
}

/// A nemesis plan: steps in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Plan {
    pub steps: Vec<Step>,
}

/// What [`Plan::audit`] learned from replaying a plan against the cluster model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The most members killed, powered off or paused at the same time.
    pub peak_down: usize,
    /// Nothing is down, paused, partitioned, skewed or a learner after the last step.
    pub ends_healed: bool,
    /// Members after the last step.
    pub final_members: usize,
    /// The last step's time (0 for an empty plan).
    pub end_ms: u64,
}

/// A plan that cannot be executed as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// Step `step` is earlier than the step before it.
    OutOfOrder { step: usize },
    /// Step `step` names a member that does not exist at that point.
    UnknownMember { step: usize, member: usize },
    /// Step `step` kills, powers off or pauses a member that is already down.
    AlreadyDown { step: usize, member: usize },
    /// Step `step` promotes a learner when there is none.
    NoLearner { step: usize },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::OutOfOrder { step } => write!(f, "step {step} is earlier than the step before it"),
            PlanError::UnknownMember { step, member } => write!(f, "step {step} names unknown member {member}"),
            PlanError::AlreadyDown { step, member } => write!(f, "step {step}: member {member} is already down"),
            PlanError::NoLearner { step } => write!(f, "step {step} promotes a learner but there is none"),
        }
    }
}

impl std::error::Error for PlanError {}

/// The cluster as [`Plan::audit`] models it.
struct Model {
    members: BTreeSet<usize>,
    next_index: usize,
    /// Members killed or powered off by index, and by role (count only).
    down: BTreeSet<usize>,
    down_by_role: usize,
    paused: BTreeSet<usize>,
    paused_by_role: usize,
    removed_by_role: usize,
    learners: usize,
    network_faulted: bool,
    clocks_skewed: bool,
}

impl Model {
    fn new(members: usize) -> Self {
        Model {
            members: (0..members).collect(),
            next_index: members,
            down: BTreeSet::new(),
            down_by_role: 0,
            paused: BTreeSet::new(),
            paused_by_role: 0,
            removed_by_role: 0,
            learners: 0,
            network_faulted: false,
            clocks_skewed: false,
        }
    }

    fn down_now(&self) -> usize {
        self.down.len() + self.down_by_role + self.paused.len() + self.paused_by_role
    }

    fn healed(&self) -> bool {
        self.down_now() == 0 && self.learners == 0 && !self.network_faulted && !self.clocks_skewed
    }

    fn known(&self, step: usize, member: usize) -> Result<(), PlanError> {
        match self.members.contains(&member) {
            true => Ok(()),
            false => Err(PlanError::UnknownMember { step, member }),
        }
    }

    fn known_target(&self, step: usize, target: Target) -> Result<(), PlanError> {
        match target {
            Target::Member(member) => self.known(step, member),
            Target::Leader | Target::AnyFollower => Ok(()),
        }
    }

    /// Marks `target` down in `set` (by index) or in `by_role`.
    fn take_down(step: usize, target: Target, set: &mut BTreeSet<usize>, by_role: &mut usize) -> Result<(), PlanError> {
        match target {
            Target::Member(member) if !set.insert(member) => Err(PlanError::AlreadyDown { step, member }),
            Target::Member(_) => Ok(()),
            Target::Leader | Target::AnyFollower => {
                *by_role += 1;
                Ok(())
            }
        }
    }

    fn apply_network(&mut self, step: usize, fault: &Fault) -> Result<(), PlanError> {
        let named: Vec<usize> = match fault {
            Fault::Partition(Partition::MajorityMinority { minority }) => minority.clone(),
            Fault::Partition(Partition::Isolate(Target::Member(member))) => vec![*member],
            Fault::Partition(Partition::Bridge { bridge, left, right }) => {
                left.iter().chain(right).copied().chain([*bridge]).collect()
            }
            Fault::Partition(Partition::OneWay { from, to }) => vec![*from, *to],
            Fault::Clog { a, b } => vec![*a, *b],
            _ => Vec::new(),
        };
        named.into_iter().try_for_each(|member| self.known(step, member))?;
        self.network_faulted = true;
        Ok(())
    }

    fn apply_fault(&mut self, step: usize, fault: &Fault) -> Result<(), PlanError> {
        match fault {
            Fault::Partition(_) | Fault::Clog { .. } | Fault::Delay { .. } | Fault::Loss { .. } => {
                self.apply_network(step, fault)
            }
            Fault::Kill(target) | Fault::PowerLoss { target, .. } => {
                self.known_target(step, *target)?;
                Self::take_down(step, *target, &mut self.down, &mut self.down_by_role)
            }
            Fault::Pause(target) => {
                self.known_target(step, *target)?;
                Self::take_down(step, *target, &mut self.paused, &mut self.paused_by_role)
            }
            Fault::ClockSkew { target, .. } => {
                self.known_target(step, *target)?;
                self.clocks_skewed = true;
                Ok(())
            }
            Fault::AddMember { learner } => {
                self.members.insert(self.next_index);
                self.next_index += 1;
                self.learners += usize::from(*learner);
                Ok(())
            }
            Fault::RemoveMember(target) => self.remove(step, *target),
            Fault::PromoteLearner if self.learners == 0 => Err(PlanError::NoLearner { step }),
            Fault::PromoteLearner => {
                self.learners -= 1;
                Ok(())
            }
        }
    }

    fn remove(&mut self, step: usize, target: Target) -> Result<(), PlanError> {
        match target {
            Target::Member(member) => {
                self.known(step, member)?;
                self.members.remove(&member);
                self.down.remove(&member);
                self.paused.remove(&member);
            }
            Target::Leader | Target::AnyFollower => self.removed_by_role += 1,
        }
        Ok(())
    }

    fn apply_heal(&mut self, heal: Heal) {
        match heal {
            Heal::Network => self.network_faulted = false,
            Heal::Restart(member) => {
                self.down.remove(&member);
            }
            Heal::RestartAll => {
                self.down.clear();
                self.down_by_role = 0;
            }
            Heal::Resume(member) => {
                self.paused.remove(&member);
            }
            Heal::ResumeAll => {
                self.paused.clear();
                self.paused_by_role = 0;
            }
            Heal::Clocks => self.clocks_skewed = false,
        }
    }
}

impl Plan {
    /// Replays the plan against a model of a cluster of `members` members; see [`Audit`].
    pub fn audit(&self, members: usize) -> Result<Audit, PlanError> {
        let mut model = Model::new(members);
        let mut peak_down = 0;
        let mut previous_ms = 0;
        for (index, step) in self.steps.iter().enumerate() {
            if step.at_ms < previous_ms {
                return Err(PlanError::OutOfOrder { step: index });
            }
            previous_ms = step.at_ms;
            match &step.action {
                Action::Fault(fault) => model.apply_fault(index, fault)?,
                Action::Heal(heal) => model.apply_heal(*heal),
            }
            peak_down = peak_down.max(model.down_now());
        }
        Ok(Audit {
            peak_down,
            ends_healed: model.healed(),
            final_members: model.members.len().saturating_sub(model.removed_by_role),
            end_ms: previous_ms,
        })
    }

    /// The time of the last step (0 for an empty plan).
    pub fn end_ms(&self) -> u64 {
        self.steps.last().map_or(0, |step| step.at_ms)
    }

    /// The faults (not heals) of the plan, in order.
    pub fn faults(&self) -> impl Iterator<Item = &Fault> {
        self.steps.iter().filter_map(|step| match &step.action {
            Action::Fault(fault) => Some(fault),
            Action::Heal(_) => None,
        })
    }
}

/// Writes `members` as `[0, 2]`.
fn write_members(f: &mut fmt::Formatter<'_>, members: &[usize]) -> fmt::Result {
    f.write_str("[")?;
    for (i, member) in members.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{member}")?;
    }
    f.write_str("]")
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Member(member) => write!(f, "member {member}"),
            Target::Leader => f.write_str("the leader"),
            Target::AnyFollower => f.write_str("a follower"),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::MajorityMinority { minority } => {
                f.write_str("partition minority ")?;
                write_members(f, minority)?;
                f.write_str(" from the rest")
            }
            Partition::LeaderMinority { followers } => {
                write!(f, "partition the leader and {followers} follower(s) from the rest")
            }
            Partition::Isolate(target) => write!(f, "isolate {target}"),
            Partition::Bridge { bridge, left, right } => {
                f.write_str("bridge partition ")?;
                write_members(f, left)?;
                write!(f, " <-> {bridge} <-> ")?;
                write_members(f, right)
            }
            Partition::OneWay { from, to } => write!(f, "drop messages from member {from} to member {to}"),
        }
    }
}

impl fmt::Display for DiskFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskFault::LoseUnsynced => "unsynced writes lost",
            DiskFault::TearUnsynced => "unsynced writes torn",
            DiskFault::Mixed => "unsynced writes kept, lost or torn",
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition(partition) => write!(f, "{partition}"),
            Fault::Clog { a, b } => write!(f, "clog the link between members {a} and {b}"),
            Fault::Delay { min_ms, max_ms } => write!(f, "delay messages by {min_ms}..={max_ms} ms"),
            Fault::Loss { rate_pct } => write!(f, "drop {rate_pct}% of messages"),
            Fault::Kill(target) => write!(f, "kill -9 {target}"),
            Fault::PowerLoss { target, disk } => write!(f, "power loss on {target} ({disk})"),
            Fault::Pause(target) => write!(f, "pause {target}"),
            Fault::ClockSkew { target, skew_ms } => write!(f, "skew the clock of {target} by {skew_ms:+} ms"),
            Fault::AddMember { learner: true } => f.write_str("add a member as a learner"),
            Fault::AddMember { learner: false } => f.write_str("add a member as a voter"),
            Fault::RemoveMember(target) => write!(f, "remove {target} from the cluster"),
            Fault::PromoteLearner => f.write_str("promote the oldest learner"),
        }
    }
}

impl fmt::Display for Heal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Heal::Network => f.write_str("heal the network"),
            Heal::Restart(member) => write!(f, "restart member {member}"),
            Heal::RestartAll => f.write_str("restart every stopped member"),
            Heal::Resume(member) => write!(f, "resume member {member}"),
            Heal::ResumeAll => f.write_str("resume every paused member"),
            Heal::Clocks => f.write_str("reset every clock"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Fault(fault) => write!(f, "fault  {fault}"),
            Action::Heal(heal) => write!(f, "heal   {heal}"),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8} ms  {}", self.at_ms, self.action)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str("(no faults)\n");
        }
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(at_ms: u64, action: Action) -> Step {
        Step { at_ms, action }
    }

    #[test]
    fn display_prints_one_line_per_step() {
        let plan = Plan {
            steps: vec![
                step(100, Action::Fault(Fault::Kill(Target::Leader))),
                step(2_500, Action::Heal(Heal::RestartAll)),
            ],
        };
        assert_eq!(
            plan.to_string(),
            "     100 ms  fault  kill -9 the leader\n    2500 ms  heal   restart every stopped member\n"
        );
    }

    #[test]
    fn display_names_partition_sides_and_skew_sign() {
        let bridge = Fault::Partition(Partition::Bridge { bridge: 1, left: vec![0], right: vec![2, 3] });
        assert_eq!(bridge.to_string(), "bridge partition [0] <-> 1 <-> [2, 3]");
        let skew = Fault::ClockSkew { target: Target::Member(2), skew_ms: 300 };
        assert_eq!(skew.to_string(), "skew the clock of member 2 by +300 ms");
    }

    #[test]
    fn audit_counts_role_and_indexed_kills_toward_peak_down() {
        let plan = Plan {
            steps: vec![
                step(0, Action::Fault(Fault::Kill(Target::Leader))),
                step(1, Action::Fault(Fault::Pause(Target::Member(2)))),
                step(2, Action::Heal(Heal::RestartAll)),
                step(3, Action::Heal(Heal::Resume(2))),
            ],
        };
        let audit = plan.audit(5).unwrap();
        assert_eq!(audit.peak_down, 2);
        assert!(audit.ends_healed);
    }

    #[test]
    fn audit_reports_an_unhealed_end() {
        let plan = Plan { steps: vec![step(0, Action::Fault(Fault::Loss { rate_pct: 10 }))] };
        assert!(!plan.audit(3).unwrap().ends_healed);
    }

    #[test]
    fn audit_rejects_unknown_members_and_out_of_order_steps() {
        let unknown = Plan { steps: vec![step(0, Action::Fault(Fault::Clog { a: 0, b: 3 }))] };
        assert_eq!(unknown.audit(3), Err(PlanError::UnknownMember { step: 0, member: 3 }));
        let unordered =
            Plan { steps: vec![step(5, Action::Heal(Heal::Network)), step(4, Action::Heal(Heal::Network))] };
        assert_eq!(unordered.audit(3), Err(PlanError::OutOfOrder { step: 1 }));
    }

    #[test]
    fn audit_gives_added_members_the_next_unused_index() {
        let plan = Plan {
            steps: vec![
                step(0, Action::Fault(Fault::AddMember { learner: true })),
                step(1, Action::Fault(Fault::RemoveMember(Target::Member(0)))),
                step(2, Action::Fault(Fault::Kill(Target::Member(3)))),
                step(3, Action::Heal(Heal::Restart(3))),
            ],
        };
        let audit = plan.audit(3).unwrap();
        assert_eq!(audit.final_members, 3);
        assert!(!audit.ends_healed, "the learner was never promoted");
    }
}
