//! Planted bugs: deliberate defects the simulator must catch, to prove its checks can fail.
//!
//! They exist only with the `planted-bugs` cargo feature, which only `detcd-sim` enables; without
//! it [`is_planted`] is a constant `false` and every buggy path compiles away. A scenario plants a
//! bug with [`plant`] before it starts the cluster; the default is none.

/// The defects the simulator has to find (see `reports/` for the campaigns that find them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Bug {
    /// The Raft log reports an append durable before it is written and fsynced.
    AckBeforeFsync = 1,
    /// A follower answers linearizable reads from its own state without asking the leader.
    FollowerLocalRead = 2,
    /// A vote is remembered in memory but never written to the log.
    VoteNotPersisted = 4,
    /// On restart the state machine forgets it applied its last entry and applies it again.
    ApplyTwiceAfterRestart = 8,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 4] =
        [Bug::AckBeforeFsync, Bug::FollowerLocalRead, Bug::VoteNotPersisted, Bug::ApplyTwiceAfterRestart];

    /// The bug's name as scenarios and reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::FollowerLocalRead => "follower-local-read",
            Bug::VoteNotPersisted => "vote-not-persisted",
            Bug::ApplyTwiceAfterRestart => "apply-twice-after-restart",
        }
    }
}

// Per thread: a simulated world runs on one thread, and tests run worlds on parallel threads.
#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Plants exactly `bugs` (replacing whatever was planted before) for the calling thread, which in
/// the simulator is the whole simulated world.
#[cfg(feature = "planted-bugs")]
pub fn plant(bugs: &[Bug]) {
    let mask = bugs.iter().fold(0, |mask, bug| mask | *bug as u32);
    PLANTED.with(|planted| planted.set(mask));
}

/// Whether `bug` is planted.
#[inline]
pub fn is_planted(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        PLANTED.with(|planted| planted.get() & bug as u32 != 0)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
