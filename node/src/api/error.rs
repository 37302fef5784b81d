//! The one table that turns errors into gRPC statuses, with etcd's exact codes and messages
//! (etcd's `rpctypes`). Nothing else in the node builds a `Status` from an error.

use tonic::{Code, Status};

use crate::mvcc::MvccError;
use crate::raft::types::ApplyError;
use crate::raft::ProposeError;

/// Every error a client can see, by etcd's name for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdError {
    EmptyKey,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    InvalidSortOption,
    Compacted,
    FutureRevision,
    LeaseNotFound,
    LeaseExists,
    LeaseTtlTooLarge,
    RequestTooLarge,
    NoLeader,
    NotLeader,
    LeaderChanged,
    Timeout,
    Stopped,
    Corrupt,
    NotCapable,
    BadLeaderTransferee,
    LeaderTransferTimeout,
    MemberExists,
    PeerUrlExists,
    MemberNotEnoughStarted,
    MemberBadUrls,
    MemberNotFound,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    /// An etcd RPC detcd does not implement yet.
    Unimplemented,
    /// The election recipe's `ErrElectionNotLeader` (a plain Go error: gRPC code Unknown).
    ElectionNotLeader,
    /// The election recipe's `ErrElectionNoLeader` (a plain Go error: gRPC code Unknown).
    ElectionNoLeader,
    /// v3election's `ErrMissingLeaderKey` (a plain Go error: gRPC code Unknown).
    MissingLeaderKey,
    /// An error as etcd's lock and election services pass it on: they call the server through
    /// an in-process client, which keeps the message and drops the code. Holds the message.
    Uncoded(&'static str),
}

impl EtcdError {
    /// etcd's gRPC code and message for this error.
    pub fn code_and_message(self) -> (Code, &'static str) {
        use EtcdError::*;
        match self {
            EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
            KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
            ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
            LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
            TooManyOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
            InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
            Compacted => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            FutureRevision => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
            LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
            LeaseExists => (Code::FailedPrecondition, "etcdserver: lease already exists"),
            LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
            RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
            NoLeader => (Code::Unavailable, "etcdserver: no leader"),
            NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
            LeaderChanged => (Code::Unavailable, "etcdserver: leader changed"),
            Timeout => (Code::Unavailable, "etcdserver: request timed out"),
            Stopped => (Code::Unavailable, "etcdserver: server stopped"),
            Corrupt => (Code::DataLoss, "etcdserver: corrupt cluster"),
            NotCapable => (Code::Unavailable, "etcdserver: not capable"),
            BadLeaderTransferee => (Code::FailedPrecondition, "etcdserver: bad leader transferee"),
            LeaderTransferTimeout => {
                (Code::Unavailable, "etcdserver: request timed out, leader transfer took too long")
            }
            MemberExists => (Code::FailedPrecondition, "etcdserver: member ID already exist"),
            PeerUrlExists => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
            MemberNotEnoughStarted => {
                (Code::FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
            }
            MemberBadUrls => (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
            MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
            MemberNotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
            LearnerNotReady => {
                (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
            }
            TooManyLearners => (Code::FailedPrecondition, "etcdserver: too many learner members in cluster"),
            Unimplemented => (Code::Unimplemented, "detcd: this RPC is not implemented yet"),
            ElectionNotLeader => (Code::Unknown, "election: not leader"),
            ElectionNoLeader => (Code::Unknown, "election: no leader"),
            MissingLeaderKey => (Code::Unknown, "\"leader\" field must be provided"),
            Uncoded(message) => (Code::Unknown, message),
        }
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        let (code, message) = e.code_and_message();
        Status::new(code, message)
    }
}

impl From<ApplyError> for EtcdError {
    fn from(e: ApplyError) -> EtcdError {
        match e {
            ApplyError::Compacted => EtcdError::Compacted,
            ApplyError::FutureRevision => EtcdError::FutureRevision,
            ApplyError::KeyNotFound => EtcdError::KeyNotFound,
            ApplyError::LeaseNotFound => EtcdError::LeaseNotFound,
            ApplyError::LeaseExists => EtcdError::LeaseExists,
            ApplyError::LeaseTtlTooLarge => EtcdError::LeaseTtlTooLarge,
            ApplyError::Malformed => EtcdError::Corrupt,
        }
    }
}

impl From<MvccError> for EtcdError {
    fn from(e: MvccError) -> EtcdError {
        match e {
            MvccError::Compacted => EtcdError::Compacted,
            MvccError::FutureRevision => EtcdError::FutureRevision,
            MvccError::KeyNotFound => EtcdError::KeyNotFound,
            MvccError::LeaseNotFound => EtcdError::LeaseNotFound,
            MvccError::Storage(reason) | MvccError::Corrupt(reason) => {
                tracing::error!(%reason, "store failed while serving a read");
                EtcdError::Corrupt
            }
        }
    }
}

impl From<ProposeError> for EtcdError {
    fn from(e: ProposeError) -> EtcdError {
        match e {
            ProposeError::NoLeader => EtcdError::NoLeader,
            ProposeError::NotLeader { .. } => EtcdError::NotLeader,
            ProposeError::Stopped => EtcdError::Stopped,
            ProposeError::Refused => EtcdError::NotCapable,
            ProposeError::Timeout => EtcdError::Timeout,
            ProposeError::LeaderChanged => EtcdError::LeaderChanged,
        }
    }
}

impl From<crate::raft::membership::MembershipError> for EtcdError {
    fn from(e: crate::raft::membership::MembershipError) -> EtcdError {
        use crate::raft::membership::MembershipError as M;
        match e {
            M::MemberExists => EtcdError::MemberExists,
            M::PeerUrlExists => EtcdError::PeerUrlExists,
            M::NotEnoughStarted => EtcdError::MemberNotEnoughStarted,
            M::MemberNotFound => EtcdError::MemberNotFound,
            M::NotLearner => EtcdError::MemberNotLearner,
            M::LearnerNotReady => EtcdError::LearnerNotReady,
            M::TooManyLearners => EtcdError::TooManyLearners,
            M::NoLeader => EtcdError::NoLeader,
            M::Timeout => EtcdError::Timeout,
            M::Failed(reason) => {
                tracing::warn!(%reason, "membership change failed");
                EtcdError::NotCapable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacted_is_out_of_range_with_etcd_message() {
        let status = Status::from(EtcdError::Compacted);
        assert_eq!(status.code(), Code::OutOfRange);
        assert_eq!(status.message(), "etcdserver: mvcc: required revision has been compacted");
    }

    #[test]
    fn no_leader_is_unavailable() {
        let status = Status::from(EtcdError::NoLeader);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "etcdserver: no leader");
    }
}
