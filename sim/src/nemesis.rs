//! Executes a chaos [`Plan`] against a [`SimCluster`]: each step at its time, roles (leader, any
//! follower) resolved when the step runs, every fault recorded in the history for reports.
//!
//! Membership changes run through the etcd API ([`SimCluster::add_member`] and friends); while
//! one is retried, the plan waits (later steps run late, as an operator's would).
//!
//! Not supported by the simulator, recorded as skipped: clock skew (madsim has one global clock,
//! so a member's clock cannot run apart).

use std::time::Duration;

use detcd::storage::CrashPolicy;
use detcd_chaos::history::Recorder;
use detcd_chaos::plan::{Action, DiskFault, Fault, Heal, Partition, Plan, Target};
use detcd_chaos::rng::Rng;

use crate::client::now_ns;
use crate::cluster::SimCluster;

/// Runs the plan's steps in order, sleeping until each one's time.
pub struct Nemesis<'a> {
    pub cluster: &'a mut SimCluster,
    pub recorder: Recorder,
    pub rng: Rng,
    pub start: tokio::time::Instant,
    /// Open fault records by what heals them.
    open: Vec<(Healer, usize)>,
    /// How many faults were injected (skipped ones excluded).
    pub injected: usize,
}

/// What ends a recorded fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Healer {
    Network,
    Restart(usize),
    Resume(usize),
}

impl<'a> Nemesis<'a> {
    pub fn new(cluster: &'a mut SimCluster, recorder: Recorder, rng: Rng, start: tokio::time::Instant) -> Self {
        Nemesis { cluster, recorder, rng, start, open: Vec::new(), injected: 0 }
    }

    /// Executes every step of `plan`.
    pub async fn run(&mut self, plan: &Plan) {
        for step in &plan.steps {
            let at = self.start + Duration::from_millis(step.at_ms);
            tokio::time::sleep_until(at).await;
            match &step.action {
                Action::Fault(fault) if !self.names_known_members(fault) => self.skip(fault, "names an unknown member"),
                Action::Fault(fault) => self.inject(fault).await,
                Action::Heal(heal) => self.heal(*heal),
            }
        }
    }

    /// Ends every fault: network healed, every member resumed and restarted.
    pub fn heal_all(&mut self) {
        self.heal(Heal::Network);
        self.heal(Heal::ResumeAll);
        self.heal(Heal::RestartAll);
    }

    /// Whether every member index `fault` names exists (plans may name members that membership
    /// changes, unsupported here, would have added).
    fn names_known_members(&self, fault: &Fault) -> bool {
        let n = self.cluster.len();
        let target_ok = |t: &Target| !matches!(t, Target::Member(i) if *i >= n);
        match fault {
            Fault::Partition(Partition::MajorityMinority { minority }) => minority.iter().all(|&i| i < n),
            Fault::Partition(Partition::Isolate(t)) => target_ok(t),
            Fault::Partition(Partition::Bridge { bridge, left, right }) => {
                *bridge < n && left.iter().chain(right).all(|&i| i < n)
            }
            Fault::Partition(Partition::OneWay { from, to }) => *from < n && *to < n,
            Fault::Partition(Partition::LeaderMinority { followers }) => *followers < n,
            Fault::Clog { a, b } => *a < n && *b < n,
            Fault::Kill(t) | Fault::Pause(t) | Fault::PowerLoss { target: t, .. } => target_ok(t),
            _ => true,
        }
    }

    fn skip(&mut self, fault: &Fault, why: &str) {
        let index = self.recorder.fault(format!("skipped ({why}): {fault:?}"), now_ns(self.start));
        self.recorder.heal(index, now_ns(self.start));
    }

    fn record(&mut self, healer: Option<Healer>, description: String) {
        let index = self.recorder.fault(description, now_ns(self.start));
        match healer {
            Some(healer) => self.open.push((healer, index)),
            None => self.recorder.heal(index, now_ns(self.start)),
        }
        self.injected += 1;
    }

    fn close(&mut self, healer: Healer) {
        let now = now_ns(self.start);
        let recorder = self.recorder.clone();
        self.open.retain(|(h, index)| {
            let ends = *h == healer;
            if ends {
                recorder.heal(*index, now);
            }
            !ends
        });
    }

    /// The member a target names now, if any runs.
    async fn resolve(&mut self, target: Target) -> Option<usize> {
        match target {
            Target::Member(i) => (i < self.cluster.len()).then_some(i),
            Target::Leader => match self.cluster.leader().await {
                Some(leader) => Some(leader),
                None => self.pick(&self.cluster.running()),
            },
            Target::AnyFollower => {
                let leader = self.cluster.leader().await;
                let followers: Vec<usize> = self.cluster.running().into_iter().filter(|&i| Some(i) != leader).collect();
                self.pick(&followers)
            }
        }
    }

    fn pick(&mut self, members: &[usize]) -> Option<usize> {
        (!members.is_empty()).then(|| *self.rng.pick(members))
    }

    async fn inject(&mut self, fault: &Fault) {
        match fault {
            Fault::Partition(partition) => self.partition(partition).await,
            Fault::Clog { a, b } => {
                self.cluster.clog(*a, *b);
                self.cluster.clog(*b, *a);
                self.record(
                    Some(Healer::Network),
                    format!("clog {}<->{}", self.cluster.name(*a), self.cluster.name(*b)),
                );
            }
            Fault::Delay { min_ms, max_ms } => {
                self.cluster.set_latency(Duration::from_millis(*min_ms), Duration::from_millis(*max_ms));
                self.record(Some(Healer::Network), format!("delay {min_ms}..{max_ms} ms"));
            }
            Fault::Loss { rate_pct } => {
                self.cluster.set_loss(f64::from(*rate_pct) / 100.0);
                self.record(Some(Healer::Network), format!("loss {rate_pct}%"));
            }
            Fault::Kill(target) => {
                if let Some(i) = self.resolve(*target).await {
                    self.cluster.kill(i);
                    self.record(Some(Healer::Restart(i)), format!("kill -9 {} ({target:?})", self.cluster.name(i)));
                }
            }
            Fault::PowerLoss { target, disk } => {
                if let Some(i) = self.resolve(*target).await {
                    let policy = self.crash_policy(*disk);
                    self.cluster.power_off(i, policy);
                    let name = self.cluster.name(i).to_string();
                    self.record(Some(Healer::Restart(i)), format!("power loss {name} ({target:?}, {disk:?})"));
                }
            }
            Fault::Pause(target) => {
                if let Some(i) = self.resolve(*target).await {
                    self.cluster.pause(i);
                    self.record(Some(Healer::Resume(i)), format!("pause {} ({target:?})", self.cluster.name(i)));
                }
            }
            Fault::ClockSkew { .. } => self.skip(fault, "unsupported in the simulator"),
            Fault::AddMember { learner } => {
                let kind = if *learner { "learner" } else { "voter" };
                match self.cluster.add_member(*learner).await {
                    Ok(i) => self.record(None, format!("member add {} as a {kind}", self.cluster.name(i))),
                    Err(e) => self.record(None, format!("member add as a {kind} failed: {e}")),
                }
            }
            Fault::RemoveMember(target) => {
                if let Some(i) = self.resolve(*target).await {
                    let name = self.cluster.name(i).to_string();
                    match self.cluster.remove_member(i).await {
                        Ok(()) => self.record(None, format!("member remove {name} ({target:?})")),
                        Err(e) => self.record(None, format!("member remove {name} failed: {e}")),
                    }
                }
            }
            Fault::PromoteLearner => match self.cluster.promote_learner().await {
                Ok(Some(i)) => self.record(None, format!("member promote {}", self.cluster.name(i))),
                Ok(None) => self.skip(fault, "no learner"),
                Err(e) => self.record(None, format!("member promote failed: {e}")),
            },
        }
    }

    fn crash_policy(&mut self, disk: DiskFault) -> CrashPolicy<'static> {
        match disk {
            DiskFault::LoseUnsynced => CrashPolicy::DropUnsynced,
            DiskFault::TearUnsynced | DiskFault::Mixed => CrashPolicy::tear_seeded(self.rng.next_u64()),
        }
    }

    async fn partition(&mut self, partition: &Partition) {
        let n = self.cluster.len();
        let description = match partition {
            Partition::MajorityMinority { minority } => {
                self.cluster.isolate(minority);
                format!("partition minority {}", self.names(minority))
            }
            Partition::LeaderMinority { followers } => {
                let leader = self.resolve(Target::Leader).await.unwrap_or(0);
                let side: Vec<usize> = (0..=*followers).map(|k| (leader + k) % n).collect();
                self.cluster.isolate(&side);
                format!("partition leader's minority {}", self.names(&side))
            }
            Partition::Isolate(target) => {
                let Some(i) = self.resolve(*target).await else { return };
                self.cluster.isolate(&[i]);
                format!("isolate {} ({target:?})", self.cluster.name(i))
            }
            Partition::Bridge { bridge, left, right } => {
                for &a in left {
                    for &b in right {
                        self.cluster.clog(a, b);
                        self.cluster.clog(b, a);
                    }
                }
                format!("bridge {} between {} and {}", self.cluster.name(*bridge), self.names(left), self.names(right))
            }
            Partition::OneWay { from, to } => {
                self.cluster.clog(*from, *to);
                format!("one-way drop {} -> {}", self.cluster.name(*from), self.cluster.name(*to))
            }
        };
        self.record(Some(Healer::Network), description);
    }

    fn names(&self, members: &[usize]) -> String {
        let names: Vec<&str> = members.iter().map(|&i| self.cluster.name(i)).collect();
        format!("{{{}}}", names.join(","))
    }

    fn heal(&mut self, heal: Heal) {
        match heal {
            Heal::Network => {
                self.cluster.heal_network();
                self.close(Healer::Network);
            }
            Heal::Restart(i) => self.restart(i),
            Heal::RestartAll => (0..self.cluster.len()).for_each(|i| self.restart(i)),
            Heal::Resume(i) => self.resume(i),
            Heal::ResumeAll => (0..self.cluster.len()).for_each(|i| self.resume(i)),
            Heal::Clocks => {}
        }
    }

    fn restart(&mut self, i: usize) {
        if i < self.cluster.len() {
            self.cluster.restart(i);
            self.close(Healer::Restart(i));
        }
    }

    fn resume(&mut self, i: usize) {
        if i < self.cluster.len() {
            self.cluster.resume(i);
            self.close(Healer::Resume(i));
        }
    }
}
