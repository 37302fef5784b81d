//! The load tool's request loads against a real in-process detcd member: every request succeeds
//! and lands, and a request the server refuses is counted under etcd's code and message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test setup failures should panic loudly

#[path = "../benches/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::time::Duration;

use detcd_benches::commands;
use detcd_benches::grpc::{Connection, KV_RANGE};
use detcd_benches::keys::Keys;
use detcd_benches::options::{Command, Consistency, Options, Output};
use detcd_proto::etcdserverpb::{RangeRequest, RangeResponse};

fn options(endpoint: &str, total: u64, val_size: usize) -> Options {
    Options {
        endpoints: vec![endpoint.to_string()],
        conns: 2,
        clients: 8,
        total,
        key_size: 8,
        val_size,
        sequential_keys: true,
        key_space_size: 50,
        timeout: Duration::from_secs(10),
        output: Output::Json,
    }
}

#[test]
fn request_loads_succeed_land_and_count_refusals() {
    let cluster = support::Cluster::start(1);
    let endpoint = cluster.endpoints[0].clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let run = |command: &Command, options: &Options| {
        let report = runtime.block_on(commands::run(command, options)).expect("the run starts");
        let summary = &report.main.1;
        (summary.successes(), summary.errors().iter().map(|(label, n)| (label.to_string(), n)).collect::<Vec<_>>())
    };

    assert_eq!(run(&Command::Put, &options(&endpoint, 300, 256)), (300, vec![]));
    assert_eq!(run(&Command::TxnPut { txn_ops: 3 }, &options(&endpoint, 40, 16)), (40, vec![]));
    for consistency in [Consistency::Linearizable, Consistency::Serializable] {
        let range = Command::Range { key: "k".to_string(), end: None, consistency };
        assert_eq!(run(&range, &options(&endpoint, 200, 0)), (200, vec![]));
    }

    // The puts landed: every key of the space is there, and key 7 was written more than once.
    let keys = Keys::new(8, 50, true);
    let mut connection = runtime.block_on(Connection::open(&endpoint, Duration::from_secs(10))).unwrap();
    let all = RangeRequest { key: keys.key(0), range_end: vec![0], count_only: true, ..Default::default() };
    let counted: RangeResponse = runtime.block_on(connection.unary(KV_RANGE, &all)).unwrap();
    assert_eq!(counted.count, 50, "keys after 300 sequential puts over 50 keys");
    let one = RangeRequest { key: keys.key(7), ..Default::default() };
    let got: RangeResponse = runtime.block_on(connection.unary(KV_RANGE, &one)).unwrap();
    assert_eq!(got.kvs.len(), 1, "key 7 is there");
    assert!(got.kvs[0].version >= 2, "key 7 was written more than once: {:?}", got.kvs[0].version);

    // A value over the 1.5 MiB request limit: refused by the member, counted, not retried. A
    // message over the limit plus gRPC's 512 KiB is refused before decoding, as grpc-go does.
    let refusals = [
        (1_600_000, "code = InvalidArgument desc = etcdserver: request is too large"),
        (
            2 * 1024 * 1024,
            "code = ResourceExhausted desc = grpc: received message larger than max (2097167 vs. 2097152)",
        ),
    ];
    for (val_size, label) in refusals {
        assert_eq!(run(&Command::Put, &options(&endpoint, 3, val_size)), (0, vec![(label.to_string(), 3)]));
    }
    assert_eq!(run(&Command::Put, &options(&endpoint, 10, 256)), (10, vec![]), "still serving");
    cluster.shutdown();
}
