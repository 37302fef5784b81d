//! openraft's type configuration and the values that travel through the Raft log.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::runtime::DetcdRuntime;

/// A member as the Raft membership records it (etcd's `Member`, minus the ID which is the key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl std::fmt::Display for MemberNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

/// One Raft entry of client requests (group commit), each a prost-encoded
/// `detcdpb::InternalRequest`, applied in order, each as its own etcd write transaction.
///
/// Kept as bytes so that the log codec never depends on prost types and the encoded size that the
/// API checks against `--max-request-bytes` is exactly what is replicated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub batch: Vec<Vec<u8>>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "requests({})", self.batch.len())
    }
}

/// Why an applied request failed. Deterministic: every member reaches the same outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyError {
    Compacted,
    FutureRevision,
    KeyNotFound,
    LeaseNotFound,
    LeaseExists,
    LeaseTtlTooLarge,
    /// The entry could not be decoded (never produced by a correct leader).
    Malformed,
}

/// The outcome of applying one entry: per request, a prost-encoded etcd response or an error.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub results: Vec<Result<Vec<u8>, ApplyError>>,
}

openraft::declare_raft_types!(
    /// detcd's Raft types.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = DetcdRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StorageError = openraft::StorageError<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, MemberNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, MemberNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
