//! Wire types of detcd: etcd's v3 gRPC API (packages `mvccpb`, `authpb`, `etcdserverpb`,
//! `v3lockpb`, `v3electionpb`, field for field etcd 3.4's, so that `etcdctl` and etcd
//! client libraries interoperate) and detcd's own peer protocol (`detcdpb`).
//!
//! Everything here is generated at build time from the `.proto` files under `proto/` (see
//! `build.rs`); every file found there is compiled, clients and servers both. With
//! `--cfg madsim` the generated services are madsim-tonic's simulated ones, otherwise
//! plain tonic.
//!
//! This crate owns only the wire format: it never depends on the node, and holds no logic.

/// Declares a module holding the generated code of one protobuf package. Generated code is
/// exempt from the workspace's lints.
macro_rules! proto_module {
    ($(#[$meta:meta])* $name:ident = $package:literal) => {
        $(#[$meta])*
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::unwrap_used,
            clippy::expect_used,
            missing_docs,
            rustdoc::all
        )]
        pub mod $name {
            tonic::include_proto!($package);
        }
    };
}

proto_module!(
    /// Key-values and watch events (`mvccpb`).
    mvccpb = "mvccpb"
);
proto_module!(
    /// Users, roles and permissions (`authpb`).
    authpb = "authpb"
);
proto_module!(
    /// etcd's client services and their messages (`etcdserverpb`).
    etcdserverpb = "etcdserverpb"
);
proto_module!(
    /// The lock service (`v3lockpb`).
    v3lockpb = "v3lockpb"
);
proto_module!(
    /// The election service (`v3electionpb`).
    v3electionpb = "v3electionpb"
);
proto_module!(
    /// detcd's peer protocol (`detcdpb`).
    detcdpb = "detcdpb"
);
