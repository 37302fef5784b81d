//! Seeded plan generation: alternating quiet and fault windows of the enabled [`FaultKind`]s.
//!
//! A plan starts quiet; then each window injects the faults of one kind (or, with
//! `PlanConfig::overlap_pct`, a process fault together with a network fault, or a membership
//! change together with either), holds them for a
//! drawn `fault_ms`, heals exactly what it injected at the window's end, and is followed by a drawn
//! `quiet_ms`. Windows never overlap, so every window starts from a healed cluster, and a window
//! only starts if it can end by `duration_ms`: the plan always ends healed.
//!
//! Process faults (kill, power loss, pause) take at most `max_down` members down at once;
//! [`FaultKind::PowerLossAll`] is the one kind that takes every member down on purpose. Network
//! faults do not count: a majority partition is fine. Membership windows grow the cluster and
//! shrink it back, so later windows target the indices that are members at that time.
//! [`Plan::generate`] asserts all this through [`Plan::audit`] before returning.

use super::{Action, DiskFault, Fault, Heal, Partition, Plan, Step, Target};
use crate::rng::Rng;

/// The largest cluster a plan may grow to.
pub const MEMBERS_MAX: usize = 9;
/// Default fault window and quiet gap lengths, in ms (inclusive ranges).
const FAULT_MS_DEFAULT: (u64, u64) = (1_000, 5_000);
const QUIET_MS_DEFAULT: (u64, u64) = (500, 2_000);
/// The most windows one plan holds, whatever the durations.
const WINDOWS_MAX: usize = 10_000;
/// Directed links one `OneWay` window cuts, and links one `Clog` window clogs.
const ONE_WAY_LINKS_MAX: usize = 3;
const CLOG_LINKS_MAX: usize = 2;
/// `Delay` draws its minimum in `0..=DELAY_MIN_MS_MAX` and adds `1..=DELAY_SPREAD_MS_MAX`.
const DELAY_MIN_MS_MAX: u64 = 50;
const DELAY_SPREAD_MS_MAX: u64 = 500;
/// `Loss` drops this percentage range of messages.
const LOSS_PCT_MIN: u64 = 5;
const LOSS_PCT_MAX: u64 = 50;
/// Clock skew magnitudes, in ms.
const CLOCK_SKEW_MS_MIN: u64 = 50;
const CLOCK_SKEW_MS_MAX: u64 = 5_000;
/// Members one membership window adds (then removes).
const MEMBERSHIP_GROW_MAX: usize = 2;
const LEARNER_CHANCE: f64 = 0.5;
/// Chance that a `KillLeader` window also kills a follower half-way (if `max_down` allows).
const SECOND_KILL_CHANCE: f64 = 0.5;
/// Chance that a `Pause` window pauses the leader rather than members by index.
const PAUSE_LEADER_CHANCE: f64 = 0.33;
const DISK_FAULTS: [DiskFault; 3] = [DiskFault::LoseUnsynced, DiskFault::TearUnsynced, DiskFault::Mixed];

/// The largest minority of a cluster of `members`: how many can fail with a quorum left.
pub fn minority(members: usize) -> usize {
    members.saturating_sub(1) / 2
}

/// A family of fault windows the generator can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A random minority partitioned from the rest.
    MinorityPartition,
    /// The leader and some followers on the minority side.
    LeaderMinorityPartition,
    IsolateLeader,
    IsolateMember,
    Bridge,
    OneWay,
    Clog,
    Delay,
    Loss,
    /// Kill -9 up to `max_down` members by index, restart them at the window's end.
    KillMember,
    /// Kill -9 the leader (and maybe a follower), restart all at the window's end.
    KillLeader,
    /// Kill -9 members one per window in cyclic index order.
    RollingRestart,
    /// Power loss on up to `max_down` members by index.
    PowerLoss,
    /// Power loss on every member at once (exempt from `max_down`).
    PowerLossAll,
    Pause,
    ClockSkew,
    /// Grow the cluster by one or two members (maybe via learners), then shrink it back.
    Membership,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 17] = [
        FaultKind::MinorityPartition,
        FaultKind::LeaderMinorityPartition,
        FaultKind::IsolateLeader,
        FaultKind::IsolateMember,
        FaultKind::Bridge,
        FaultKind::OneWay,
        FaultKind::Clog,
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::KillMember,
        FaultKind::KillLeader,
        FaultKind::RollingRestart,
        FaultKind::PowerLoss,
        FaultKind::PowerLossAll,
        FaultKind::Pause,
        FaultKind::ClockSkew,
        FaultKind::Membership,
    ];

    /// Faults on links between members, lifted by [`Heal::Network`].
    pub fn is_network(self) -> bool {
        use FaultKind::*;
        matches!(
            self,
            MinorityPartition
                | LeaderMinorityPartition
                | IsolateLeader
                | IsolateMember
                | Bridge
                | OneWay
                | Clog
                | Delay
                | Loss
        )
    }

    /// Faults that take some members down, counted against `max_down`.
    pub fn is_process(self) -> bool {
        use FaultKind::*;
        matches!(self, KillMember | KillLeader | RollingRestart | PowerLoss | Pause)
    }

    /// The kind takes down more than `max_down` members on purpose.
    pub fn exceeds_max_down(self) -> bool {
        self == FaultKind::PowerLossAll
    }
}

/// What [`Plan::generate`] draws from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    /// Initial members, indices `0..members`.
    pub members: usize,
    /// Every step happens at or before this time, and the plan is healed by then.
    pub duration_ms: u64,
    /// The kinds windows are drawn from (uniformly; repeat a kind to weight it).
    pub kinds: Vec<FaultKind>,
    /// Fault window length, inclusive range in ms.
    pub fault_ms: (u64, u64),
    /// Quiet gap before each window, inclusive range in ms.
    pub quiet_ms: (u64, u64),
    /// The most members process faults take down at once.
    pub max_down: usize,
    /// Chance, in percent, that a window pairs a process fault with a network fault.
    pub overlap_pct: u8,
}

impl PlanConfig {
    /// Defaults: windows of 1–5 s, quiet gaps of 0.5–2 s, at most a minority down, no overlap.
    pub fn new(members: usize, duration_ms: u64, kinds: &[FaultKind]) -> Self {
        PlanConfig {
            members,
            duration_ms,
            kinds: kinds.to_vec(),
            fault_ms: FAULT_MS_DEFAULT,
            quiet_ms: QUIET_MS_DEFAULT,
            max_down: minority(members),
            overlap_pct: 0,
        }
    }

    fn assert_valid(&self) {
        assert!((1..=MEMBERS_MAX).contains(&self.members), "plan for {} members (1..={MEMBERS_MAX})", self.members);
        assert!(1 <= self.fault_ms.0 && self.fault_ms.0 <= self.fault_ms.1, "bad fault_ms {:?}", self.fault_ms);
        assert!(self.quiet_ms.0 <= self.quiet_ms.1, "bad quiet_ms {:?}", self.quiet_ms);
        assert!(self.max_down <= self.members, "max_down {} of {} members", self.max_down, self.members);
        assert!(self.overlap_pct <= 100, "overlap_pct {} > 100", self.overlap_pct);
    }
}

/// The signature of the named scenario constructors.
pub type ScenarioFn = fn(&mut Rng, usize, u64) -> Plan;

/// Every named scenario family, by name, for campaign runners.
pub const SCENARIOS: [(&str, ScenarioFn); 13] = [
    ("leader_kill_loop", Plan::leader_kill_loop),
    ("partitions_minority", Plan::partitions_minority),
    ("partitions_majority", Plan::partitions_majority),
    ("rolling_restarts", Plan::rolling_restarts),
    ("power_loss_torn_writes", Plan::power_loss_torn_writes),
    ("mixed", Plan::mixed),
    ("clogged_links", Plan::clogged_links),
    ("isolate_leader", Plan::isolate_leader),
    ("bridge", Plan::bridge),
    ("one_way", Plan::one_way),
    ("pause_resume", Plan::pause_resume),
    ("clock_skew", Plan::clock_skew),
    ("membership_changes", Plan::membership_changes),
];

/// One fault window: faults at offsets (ms) from its start, heals at its end.
#[derive(Debug, Default)]
struct Window {
    faults: Vec<(u64, Fault)>,
    heals: Vec<Action>,
}

impl Window {
    fn at_start(faults: Vec<Fault>, heal: Heal) -> Self {
        Window { faults: faults.into_iter().map(|fault| (0, fault)).collect(), heals: vec![Action::Heal(heal)] }
    }

    fn merge(mut self, other: Window) -> Window {
        self.faults.extend(other.faults);
        self.faults.sort_by_key(|(offset_ms, _)| *offset_ms);
        self.heals.extend(other.heals);
        self
    }
}

/// Generation state: the current members and where the rolling restart is.
struct Generator<'a> {
    rng: &'a mut Rng,
    cfg: &'a PlanConfig,
    /// Current members, ascending.
    members: Vec<usize>,
    next_index: usize,
    rolling_next: usize,
}

impl Plan {
    /// A plan drawn from `rng` as `cfg` says; see the module docs for its shape.
    pub fn generate(rng: &mut Rng, cfg: &PlanConfig) -> Plan {
        cfg.assert_valid();
        let mut gen =
            Generator { rng, cfg, members: (0..cfg.members).collect(), next_index: cfg.members, rolling_next: 0 };
        let mut steps = Vec::new();
        let mut start_ms = gen.draw(cfg.quiet_ms);
        for _ in 0..WINDOWS_MAX {
            let len_ms = gen.draw(cfg.fault_ms);
            let Some(end_ms) = start_ms.checked_add(len_ms).filter(|&end| end <= cfg.duration_ms) else { break };
            let Some(window) = gen.next_window(len_ms) else { break };
            steps.extend(
                window
                    .faults
                    .into_iter()
                    .map(|(offset_ms, fault)| Step { at_ms: start_ms + offset_ms, action: Action::Fault(fault) }),
            );
            steps.extend(window.heals.into_iter().map(|action| Step { at_ms: end_ms, action }));
            start_ms = end_ms.saturating_add(gen.draw(cfg.quiet_ms));
        }
        let plan = Plan { steps };
        assert_sound(&plan, cfg);
        plan
    }

    fn scenario(rng: &mut Rng, cfg: PlanConfig) -> Plan {
        Plan::generate(rng, &cfg)
    }

    /// Kill the leader, restart it, again and again.
    pub fn leader_kill_loop(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        let cfg =
            PlanConfig { fault_ms: (500, 3_000), ..PlanConfig::new(members, duration_ms, &[FaultKind::KillLeader]) };
        Plan::scenario(rng, cfg)
    }

    /// Random minorities (or single members) partitioned away.
    pub fn partitions_minority(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        let kinds = [FaultKind::MinorityPartition, FaultKind::IsolateMember];
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &kinds))
    }

    /// Partitions with the leader on the minority side.
    pub fn partitions_majority(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &[FaultKind::LeaderMinorityPartition]))
    }

    /// Kill and restart one member at a time, in index order.
    pub fn rolling_restarts(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        let cfg = PlanConfig {
            fault_ms: (300, 2_000),
            quiet_ms: (1_000, 3_000),
            ..PlanConfig::new(members, duration_ms, &[FaultKind::RollingRestart])
        };
        Plan::scenario(rng, cfg)
    }

    /// Power loss with unsynced writes lost or torn, on a minority or on every member.
    pub fn power_loss_torn_writes(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        let kinds = [FaultKind::PowerLoss, FaultKind::PowerLoss, FaultKind::PowerLossAll];
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &kinds))
    }

    /// Every kind, sometimes a process fault during a network fault.
    pub fn mixed(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        let cfg = PlanConfig { overlap_pct: 30, ..PlanConfig::new(members, duration_ms, &FaultKind::ALL) };
        Plan::scenario(rng, cfg)
    }

    /// Clogged links, delays and message loss.
    pub fn clogged_links(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        let kinds = [FaultKind::Clog, FaultKind::Delay, FaultKind::Loss];
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &kinds))
    }

    /// The leader cut off from every other member.
    pub fn isolate_leader(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &[FaultKind::IsolateLeader]))
    }

    /// Two halves that only one bridge member connects.
    pub fn bridge(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &[FaultKind::Bridge]))
    }

    /// Asymmetric link failures.
    pub fn one_way(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &[FaultKind::OneWay]))
    }

    /// Pause and resume members or the leader.
    pub fn pause_resume(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &[FaultKind::Pause]))
    }

    /// Members' clocks skewed ahead or behind.
    pub fn clock_skew(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &[FaultKind::ClockSkew]))
    }

    /// Grow the cluster (e.g. 3 -> 5) through learners or voters, then shrink it back.
    pub fn membership_changes(rng: &mut Rng, members: usize, duration_ms: u64) -> Plan {
        Plan::scenario(rng, PlanConfig::new(members, duration_ms, &[FaultKind::Membership]))
    }
}

/// Asserts what the module docs promise about a generated plan.
fn assert_sound(plan: &Plan, cfg: &PlanConfig) {
    let audit = match plan.audit(cfg.members) {
        Ok(audit) => audit,
        Err(error) => panic!("generated an invalid plan ({error}):\n{plan}"),
    };
    assert!(audit.ends_healed, "generated a plan that does not end healed:\n{plan}");
    assert_eq!(audit.final_members, cfg.members, "generated a plan that changes the member count:\n{plan}");
    assert!(audit.end_ms <= cfg.duration_ms, "generated a plan past {} ms:\n{plan}", cfg.duration_ms);
    let exempt = cfg.kinds.iter().any(|kind| kind.exceeds_max_down());
    assert!(exempt || audit.peak_down <= cfg.max_down, "generated a plan with {} down:\n{plan}", audit.peak_down);
}

impl Generator<'_> {
    fn draw(&mut self, (lo, hi): (u64, u64)) -> u64 {
        self.rng.range_inclusive(lo..=hi)
    }

    /// `1..=max` members drawn from the current ones, ascending.
    fn some_members(&mut self, max: usize) -> Vec<usize> {
        let count = 1 + self.rng.index(max.min(self.members.len()));
        let mut chosen = self.rng.sample(&self.members, count);
        chosen.sort_unstable();
        chosen
    }

    fn applicable(&self, kind: FaultKind) -> bool {
        use FaultKind::*;
        let n = self.members.len();
        match kind {
            MinorityPartition | LeaderMinorityPartition | Bridge => n >= 3,
            IsolateLeader | IsolateMember | OneWay | Clog | Delay | Loss => n >= 2,
            KillMember | KillLeader | RollingRestart | PowerLoss | Pause => self.cfg.max_down >= 1,
            PowerLossAll | ClockSkew => true,
            Membership => n < MEMBERS_MAX,
        }
    }

    /// A kind drawn from the enabled, applicable kinds that satisfy `filter`.
    fn draw_kind(&mut self, filter: impl Fn(FaultKind) -> bool) -> Option<FaultKind> {
        let kinds: Vec<FaultKind> =
            self.cfg.kinds.iter().copied().filter(|&kind| filter(kind) && self.applicable(kind)).collect();
        (!kinds.is_empty()).then(|| *self.rng.pick(&kinds))
    }

    /// The next window, or `None` if no enabled kind applies.
    fn next_window(&mut self, len_ms: u64) -> Option<Window> {
        let first = self.draw_kind(|_| true)?;
        let overlap = self.cfg.overlap_pct > 0 && self.rng.chance(f64::from(self.cfg.overlap_pct) / 100.0);
        if first == FaultKind::Membership {
            // The paired fault is drawn against the members before the change, and healed before
            // the window's removals: it only names members that exist throughout the window.
            let paired = match overlap {
                true => self.draw_kind(|kind| kind.is_network() || kind.is_process()),
                false => None,
            };
            let paired = paired.map(|kind| self.window(kind, len_ms));
            let membership = self.window(first, len_ms);
            return Some(match paired {
                Some(window) => window.merge(membership),
                None => membership,
            });
        }
        let second = match overlap {
            true if first.is_process() => self.draw_kind(FaultKind::is_network),
            true if first.is_network() => self.draw_kind(FaultKind::is_process),
            _ => None,
        };
        let window = self.window(first, len_ms);
        Some(match second {
            Some(kind) => window.merge(self.window(kind, len_ms)),
            None => window,
        })
    }

    fn window(&mut self, kind: FaultKind, len_ms: u64) -> Window {
        use FaultKind::*;
        match kind {
            MinorityPartition | LeaderMinorityPartition | IsolateLeader | IsolateMember | Bridge | OneWay => {
                Window::at_start(self.partition(kind), Heal::Network)
            }
            Clog | Delay | Loss => Window::at_start(self.degraded_links(kind), Heal::Network),
            KillMember | PowerLoss => self.stop_members(kind, len_ms),
            KillLeader => self.kill_leader(len_ms),
            RollingRestart => self.rolling_restart(),
            PowerLossAll => self.power_loss_all(),
            Pause => self.pause(len_ms),
            ClockSkew => self.clock_skew(),
            Membership => self.membership(len_ms),
        }
    }

    fn partition(&mut self, kind: FaultKind) -> Vec<Fault> {
        let n = self.members.len();
        match kind {
            FaultKind::MinorityPartition => {
                let minority = self.some_members(minority(n));
                vec![Fault::Partition(Partition::MajorityMinority { minority })]
            }
            FaultKind::LeaderMinorityPartition => {
                let followers = self.rng.index(minority(n));
                vec![Fault::Partition(Partition::LeaderMinority { followers })]
            }
            FaultKind::IsolateLeader => vec![Fault::Partition(Partition::Isolate(Target::Leader))],
            FaultKind::IsolateMember => {
                let member = *self.rng.pick(&self.members);
                vec![Fault::Partition(Partition::Isolate(Target::Member(member)))]
            }
            FaultKind::Bridge => vec![Fault::Partition(self.bridge())],
            _ => self.one_way(),
        }
    }

    fn bridge(&mut self) -> Partition {
        let mut order = self.members.clone();
        self.rng.shuffle(&mut order);
        let bridge = order[0];
        let half = 1 + (order.len() - 1) / 2;
        let (mut left, mut right) = (order[1..half].to_vec(), order[half..].to_vec());
        left.sort_unstable();
        right.sort_unstable();
        Partition::Bridge { bridge, left, right }
    }

    /// Ordered pairs `(a, b)` of distinct members, `a < b` if `unordered`.
    fn links(&self, unordered: bool) -> Vec<(usize, usize)> {
        let members = &self.members;
        let pairs = members.iter().flat_map(|&a| members.iter().map(move |&b| (a, b)));
        pairs.filter(|&(a, b)| if unordered { a < b } else { a != b }).collect()
    }

    fn one_way(&mut self) -> Vec<Fault> {
        let links = self.links(false);
        let count = 1 + self.rng.index(ONE_WAY_LINKS_MAX.min(links.len()));
        let chosen = self.rng.sample(&links, count);
        chosen.into_iter().map(|(from, to)| Fault::Partition(Partition::OneWay { from, to })).collect()
    }

    fn degraded_links(&mut self, kind: FaultKind) -> Vec<Fault> {
        match kind {
            FaultKind::Clog => {
                let links = self.links(true);
                let count = 1 + self.rng.index(CLOG_LINKS_MAX.min(links.len()));
                self.rng.sample(&links, count).into_iter().map(|(a, b)| Fault::Clog { a, b }).collect()
            }
            FaultKind::Delay => {
                let min_ms = self.rng.range_inclusive(0..=DELAY_MIN_MS_MAX);
                let max_ms = min_ms + self.rng.range_inclusive(1..=DELAY_SPREAD_MS_MAX);
                vec![Fault::Delay { min_ms, max_ms }]
            }
            _ => {
                let rate_pct = self.rng.range_inclusive(LOSS_PCT_MIN..=LOSS_PCT_MAX) as u8;
                vec![Fault::Loss { rate_pct }]
            }
        }
    }

    /// Kill or power off up to `max_down` members by index, staggered over the first half.
    fn stop_members(&mut self, kind: FaultKind, len_ms: u64) -> Window {
        let chosen = self.some_members(self.cfg.max_down);
        let stagger_ms = len_ms / (2 * chosen.len() as u64);
        let mut window = Window::default();
        for (i, &member) in chosen.iter().enumerate() {
            let target = Target::Member(member);
            let fault = match kind {
                FaultKind::PowerLoss => Fault::PowerLoss { target, disk: *self.rng.pick(&DISK_FAULTS) },
                _ => Fault::Kill(target),
            };
            window.faults.push((i as u64 * stagger_ms, fault));
            window.heals.push(Action::Heal(Heal::Restart(member)));
        }
        window
    }

    fn kill_leader(&mut self, len_ms: u64) -> Window {
        let mut window = Window::at_start(vec![Fault::Kill(Target::Leader)], Heal::RestartAll);
        if self.cfg.max_down >= 2 && self.rng.chance(SECOND_KILL_CHANCE) {
            window.faults.push((len_ms / 2, Fault::Kill(Target::AnyFollower)));
        }
        window
    }

    fn rolling_restart(&mut self) -> Window {
        let member = self.members[self.rolling_next % self.members.len()];
        self.rolling_next += 1;
        Window::at_start(vec![Fault::Kill(Target::Member(member))], Heal::Restart(member))
    }

    fn power_loss_all(&mut self) -> Window {
        let members = self.members.clone();
        let faults = members
            .into_iter()
            .map(|member| Fault::PowerLoss { target: Target::Member(member), disk: *self.rng.pick(&DISK_FAULTS) })
            .collect();
        Window::at_start(faults, Heal::RestartAll)
    }

    fn pause(&mut self, len_ms: u64) -> Window {
        if self.rng.chance(PAUSE_LEADER_CHANCE) {
            return Window::at_start(vec![Fault::Pause(Target::Leader)], Heal::ResumeAll);
        }
        let chosen = self.some_members(self.cfg.max_down);
        let stagger_ms = len_ms / (2 * chosen.len() as u64);
        let faults = chosen.iter().enumerate().map(|(i, &m)| (i as u64 * stagger_ms, Fault::Pause(Target::Member(m))));
        let heals = chosen.iter().map(|&member| Action::Heal(Heal::Resume(member)));
        Window { faults: faults.collect(), heals: heals.collect() }
    }

    fn clock_skew(&mut self) -> Window {
        let chosen = self.some_members(self.members.len());
        let faults = chosen
            .into_iter()
            .map(|member| {
                let magnitude = self.rng.range_inclusive(CLOCK_SKEW_MS_MIN..=CLOCK_SKEW_MS_MAX) as i64;
                let skew_ms = if self.rng.chance(0.5) { magnitude } else { -magnitude };
                Fault::ClockSkew { target: Target::Member(member), skew_ms }
            })
            .collect();
        Window::at_start(faults, Heal::Clocks)
    }

    /// Adds one or two members over the window (a learner is promoted before the next add), then
    /// removes as many members, chosen among all current ones, at its end.
    fn membership(&mut self, len_ms: u64) -> Window {
        let grow = 1 + self.rng.index(MEMBERSHIP_GROW_MAX.min(MEMBERS_MAX - self.members.len()));
        let slot_ms = len_ms / (2 * grow as u64 + 1);
        let mut window = Window::default();
        for i in 0..grow as u64 {
            let learner = self.rng.chance(LEARNER_CHANCE);
            window.faults.push((2 * i * slot_ms, Fault::AddMember { learner }));
            if learner {
                window.faults.push(((2 * i + 1) * slot_ms, Fault::PromoteLearner));
            }
            self.members.push(self.next_index);
            self.next_index += 1;
        }
        let removed = self.rng.sample(&self.members, grow);
        self.members.retain(|member| !removed.contains(member));
        window.heals = removed.into_iter().map(|m| Action::Fault(Fault::RemoveMember(Target::Member(m)))).collect();
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION_MS: u64 = 60_000;

    fn audit(plan: &Plan, members: usize) -> crate::plan::Audit {
        plan.audit(members).unwrap()
    }

    #[test]
    fn same_seed_gives_the_same_plan() {
        for (name, scenario) in SCENARIOS {
            let a = scenario(&mut Rng::new(17), 5, DURATION_MS);
            let b = scenario(&mut Rng::new(17), 5, DURATION_MS);
            assert_eq!(a, b, "{name}");
        }
    }

    #[test]
    fn different_seeds_give_different_plans() {
        for (name, scenario) in SCENARIOS {
            let a = scenario(&mut Rng::new(1), 5, DURATION_MS);
            let b = scenario(&mut Rng::new(2), 5, DURATION_MS);
            assert_ne!(a, b, "{name}");
        }
    }

    #[test]
    fn every_scenario_ends_healed_within_its_duration() {
        for seed in 0..50 {
            for (name, scenario) in SCENARIOS {
                for members in [1, 3, 5] {
                    let plan = scenario(&mut Rng::new(seed), members, DURATION_MS);
                    let audit = audit(&plan, members);
                    assert!(audit.ends_healed, "{name} seed {seed}:\n{plan}");
                    assert_eq!(audit.final_members, members, "{name} seed {seed}");
                    assert!(plan.end_ms() <= DURATION_MS, "{name} seed {seed}");
                }
            }
        }
    }

    #[test]
    fn scenarios_keep_at_most_a_minority_down_except_total_power_loss() {
        for seed in 0..50 {
            let with_total_power_loss = ["power_loss_torn_writes", "mixed"];
            for (name, scenario) in SCENARIOS.iter().filter(|(name, _)| !with_total_power_loss.contains(name)) {
                let plan = scenario(&mut Rng::new(seed), 5, DURATION_MS);
                let peak = audit(&plan, 5).peak_down;
                assert!(peak <= minority(5), "{name} seed {seed}: {peak} down\n{plan}");
            }
        }
    }

    #[test]
    fn generate_respects_a_custom_max_down() {
        let process_kinds: Vec<FaultKind> = FaultKind::ALL.into_iter().filter(|k| k.is_process()).collect();
        for seed in 0..100 {
            let cfg = PlanConfig { max_down: 3, ..PlanConfig::new(7, DURATION_MS, &process_kinds) };
            let plan = Plan::generate(&mut Rng::new(seed), &cfg);
            assert!(audit(&plan, 7).peak_down <= 3, "seed {seed}:\n{plan}");
        }
    }

    #[test]
    fn windows_alternate_with_quiet_gaps_of_the_configured_length() {
        let cfg = PlanConfig {
            fault_ms: (1_000, 1_000),
            quiet_ms: (2_000, 2_000),
            ..PlanConfig::new(3, 10_000, &[FaultKind::Loss])
        };
        let plan = Plan::generate(&mut Rng::new(3), &cfg);
        let times: Vec<u64> = plan.steps.iter().map(|step| step.at_ms).collect();
        assert_eq!(times, vec![2_000, 3_000, 5_000, 6_000, 8_000, 9_000]);
    }

    #[test]
    fn total_power_loss_takes_down_every_member() {
        let cfg = PlanConfig::new(3, 10_000, &[FaultKind::PowerLossAll]);
        let plan = Plan::generate(&mut Rng::new(4), &cfg);
        assert_eq!(audit(&plan, 3).peak_down, 3);
    }

    #[test]
    fn rolling_restarts_visit_members_in_index_order() {
        let plan = Plan::rolling_restarts(&mut Rng::new(8), 3, DURATION_MS);
        let killed: Vec<Target> = plan
            .faults()
            .map(|fault| match fault {
                Fault::Kill(target) => *target,
                other => panic!("unexpected fault {other}"),
            })
            .collect();
        assert!(killed.len() >= 4, "{plan}");
        for (i, target) in killed.iter().enumerate() {
            assert_eq!(*target, Target::Member(i % 3));
        }
    }

    #[test]
    fn membership_changes_grow_the_cluster_and_use_fresh_indices() {
        let plan = Plan::membership_changes(&mut Rng::new(6), 3, DURATION_MS);
        let adds = plan.faults().filter(|fault| matches!(fault, Fault::AddMember { .. })).count();
        let removes = plan.faults().filter(|fault| matches!(fault, Fault::RemoveMember(_))).count();
        assert!(adds > 0 && adds == removes, "{plan}");
        let removed_new = plan.faults().any(|fault| matches!(fault, Fault::RemoveMember(Target::Member(m)) if *m >= 3));
        let removed_old = plan.faults().any(|fault| matches!(fault, Fault::RemoveMember(Target::Member(m)) if *m < 3));
        assert!(removed_new || removed_old);
    }

    #[test]
    fn membership_changes_overlap_with_partitions_and_kills_and_stay_sound() {
        let kinds = [FaultKind::Membership, FaultKind::MinorityPartition, FaultKind::KillMember, FaultKind::KillLeader];
        let mut overlapped = 0;
        for seed in 0..200 {
            let cfg = PlanConfig { overlap_pct: 100, ..PlanConfig::new(3, DURATION_MS, &kinds) };
            // generate() asserts the plan is sound (valid, healed, same member count, max_down).
            let plan = Plan::generate(&mut Rng::new(seed), &cfg);
            let paired = plan.steps.windows(2).any(|pair| {
                let membership = pair.iter().any(|s| matches!(s.action, Action::Fault(Fault::AddMember { .. })));
                let other =
                    pair.iter().any(|s| matches!(s.action, Action::Fault(Fault::Kill(_) | Fault::Partition(_))));
                membership && other
            });
            overlapped += usize::from(paired);
        }
        assert!(overlapped > 20, "only {overlapped} of 200 plans paired a membership change with a fault");
    }

    #[test]
    fn mixed_overlaps_process_and_network_faults_in_some_windows() {
        let plan = Plan::mixed(&mut Rng::new(12), 5, 600_000);
        let overlapped = plan.steps.windows(2).any(|pair| {
            let kinds = pair.iter().map(|step| &step.action).collect::<Vec<_>>();
            let process = kinds.iter().any(|a| matches!(a, Action::Fault(Fault::Kill(_) | Fault::Pause(_))));
            let network = kinds.iter().any(|a| matches!(a, Action::Fault(Fault::Partition(_) | Fault::Clog { .. })));
            process && network
        });
        assert!(overlapped, "{plan}");
    }

    #[test]
    fn a_run_shorter_than_one_window_has_no_faults() {
        let plan = Plan::mixed(&mut Rng::new(1), 3, 400);
        assert_eq!(plan, Plan::default());
    }
}
