//! openraft's type configuration and the values that travel through the Raft log.

use std::io::Cursor;
use std::sync::Arc;

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
///
/// The batch is shared: openraft clones an entry for the log cache, for every follower it is sent to
/// and for apply, and a clone of the list itself copied every request's bytes each time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    #[serde(with = "byte_strings")]
    pub batch: Arc<Vec<Vec<u8>>>,
}

/// Serde for a list of byte strings as byte strings rather than as sequences of `u8`. bincode
/// writes the very same bytes either way (a u64 length, then the bytes), so the log and peer
/// formats are unchanged; but element by element it makes a call per byte, which was ~7% of a
/// follower's CPU under load (perf), on every member, for every copy of an entry.
mod byte_strings {
    use std::fmt;
    use std::sync::Arc;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    struct AsBytes<'a>(&'a [u8]);

    impl Serialize for AsBytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    pub fn serialize<S: Serializer>(list: &Arc<Vec<Vec<u8>>>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(list.iter().map(|bytes| AsBytes(bytes)))
    }

    struct ByteString(Vec<u8>);

    impl<'de> Deserialize<'de> for ByteString {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_byte_buf(ByteStringVisitor)
        }
    }

    struct ByteStringVisitor;

    impl<'de> Visitor<'de> for ByteStringVisitor {
        type Value = ByteString;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E>(self, bytes: &[u8]) -> Result<ByteString, E> {
            Ok(ByteString(bytes.to_vec()))
        }

        fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<ByteString, E> {
            Ok(ByteString(bytes))
        }

        /// Formats that write bytes as a list of numbers (JSON) hand them over one by one.
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteString, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(ByteString(bytes))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Arc<Vec<Vec<u8>>>, D::Error> {
        let list = Vec::<ByteString>::deserialize(deserializer)?;
        Ok(Arc::new(list.into_iter().map(|bytes| bytes.0).collect()))
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
    mod tests {
        use proptest::prelude::*;

        use super::super::Request;

        proptest! {
            #[test]
            fn bincode_bytes_are_those_of_a_plain_list_and_round_trip(
                batch in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            ) {
                let request = Request { batch: std::sync::Arc::new(batch.clone()) };
                let encoded = bincode::serialize(&request).unwrap();
                // The format every existing WAL and peer already holds: a plain Vec<Vec<u8>>.
                prop_assert_eq!(&encoded, &bincode::serialize(&batch).unwrap());
                prop_assert_eq!(bincode::deserialize::<Request>(&encoded).unwrap(), request.clone());
                let json = serde_json::to_string(&request).unwrap();
                prop_assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
            }
        }
    }
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
