//! Behaviour of `check` on small hand-written histories.

use super::testgen::{generate, plant_stale_read, GenConfig};
use super::*;
use crate::history::Outcome;
use crate::history::{Compare, CompareOp, CompareTarget, KeyValue, Request, Response, TxnOp, TxnOpResult};

/// Builds histories one operation at a time; ids follow insertion order.
#[derive(Default)]
struct Builder {
    ops: Vec<Operation>,
}

impl Builder {
    fn op(mut self, client: u32, interval: (u64, u64), request: Request, outcome: Outcome) -> Self {
        self.ops.push(Operation {
            id: self.ops.len() as u64,
            client,
            member: "m1".to_string(),
            invoke_ns: interval.0,
            complete_ns: interval.1,
            request,
            outcome,
        });
        self
    }

    fn history(mut self) -> History {
        self.ops.sort_by_key(|op| (op.invoke_ns, op.id));
        History { ops: self.ops, faults: Vec::new() }
    }
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: value.to_string(),
        create_revision: create,
        mod_revision: modified,
        version,
    }
}

fn put(key: &str, value: &str) -> Request {
    Request::Put { key: key.to_string(), value: value.to_string() }
}

fn get(key: &str) -> Request {
    Request::Get { key: key.to_string() }
}

fn delete(key: &str) -> Request {
    Request::Delete { key: key.to_string() }
}

fn put_ok(revision: i64) -> Outcome {
    Outcome::Ok(Response::Put { revision })
}

fn get_ok(revision: i64, kv: Option<KeyValue>) -> Outcome {
    Outcome::Ok(Response::Get { revision, kv })
}

fn indeterminate() -> Outcome {
    Outcome::Indeterminate { reason: "timed out".to_string() }
}

fn cas(key: &str, expected: &str, value: &str) -> Request {
    Request::Txn {
        compares: vec![Compare {
            key: key.to_string(),
            op: CompareOp::Equal,
            target: CompareTarget::Value(expected.to_string()),
        }],
        success: vec![TxnOp::Put { key: key.to_string(), value: value.to_string() }],
        failure: vec![TxnOp::Get { key: key.to_string() }],
    }
}

fn rejected(history: &History) -> Violation {
    match check(history) {
        Ok(summary) => panic!("accepted: {summary:?}"),
        Err(violation) => violation,
    }
}

fn accepted(history: &History) -> Summary {
    match check(history) {
        Ok(summary) => {
            assert!(summary.is_conclusive(), "inconclusive: {summary:?}");
            summary
        }
        Err(violation) => panic!("rejected:\n{violation}"),
    }
}

#[test]
fn accepts_a_sequential_history() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(1, (20, 30), get("a"), get_ok(2, Some(kv("a", "v1", 2, 2, 1))))
        .op(1, (40, 50), put("a", "v2"), put_ok(3))
        .op(1, (60, 70), delete("a"), Outcome::Ok(Response::Delete { revision: 4, deleted: 1 }))
        .op(1, (80, 90), get("a"), get_ok(4, None))
        .op(1, (100, 110), delete("a"), Outcome::Ok(Response::Delete { revision: 4, deleted: 0 }))
        .history();
    let summary = accepted(&history);
    assert_eq!(summary.partitions, 1);
    assert_eq!(summary.ops_checked, 6);
}

#[test]
fn accepts_concurrent_operations_reordered_within_their_intervals() {
    let history = Builder::default()
        .op(1, (0, 100), put("a", "v1"), put_ok(3))
        .op(2, (10, 20), put("a", "v0"), put_ok(2))
        .op(3, (5, 50), get("a"), get_ok(2, Some(kv("a", "v0", 2, 2, 1))))
        .op(4, (60, 70), get("a"), get_ok(3, Some(kv("a", "v1", 2, 3, 2))))
        .history();
    accepted(&history);
}

#[test]
fn accepts_an_indeterminate_put_whose_value_appears_later() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), indeterminate())
        .op(2, (20, 30), get("a"), get_ok(1, None))
        .op(2, (40, 50), get("a"), get_ok(2, Some(kv("a", "v1", 2, 2, 1))))
        .history();
    accepted(&history);
}

#[test]
fn accepts_an_indeterminate_put_that_never_appears() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(1, (20, 30), put("a", "v2"), indeterminate())
        .op(2, (40, 50), get("a"), get_ok(2, Some(kv("a", "v1", 2, 2, 1))))
        .history();
    accepted(&history);
}

#[test]
fn accepts_an_unseen_indeterminate_put_counted_only_in_the_version() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(2, (20, 30), put("a", "v2"), indeterminate())
        .op(1, (40, 50), put("a", "v3"), put_ok(4))
        .op(1, (60, 70), get("a"), get_ok(4, Some(kv("a", "v3", 2, 4, 3))))
        .history();
    accepted(&history);
}

#[test]
fn accepts_an_indeterminate_put_taking_effect_after_its_timeout() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), indeterminate())
        .op(2, (20, 30), get("a"), get_ok(1, None))
        .op(2, (40, 50), put("b", "w1"), put_ok(2))
        .op(2, (60, 70), get("a"), get_ok(3, Some(kv("a", "v1", 3, 3, 1))))
        .history();
    accepted(&history);
}

#[test]
fn rejects_a_version_gap_that_no_free_revision_explains() {
    // Revisions 2 and 3 are both acknowledged writes of "a": the unseen put cannot sit between.
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(2, (0, 100), put("a", "v2"), indeterminate())
        .op(1, (20, 30), put("a", "v3"), put_ok(3))
        .op(1, (40, 50), get("a"), get_ok(3, Some(kv("a", "v3", 2, 3, 3))))
        .history();
    assert!(rejected(&history).ops.contains(&3));
}

#[test]
fn accepts_an_indeterminate_delete_seen_as_absence() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(2, (20, 30), delete("a"), indeterminate())
        .op(1, (40, 50), get("a"), get_ok(3, None))
        .history();
    accepted(&history);
}

#[test]
fn drops_failed_operations() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), Outcome::Fail { reason: "no leader".to_string() })
        .op(1, (20, 30), get("a"), get_ok(1, None))
        .history();
    assert_eq!(accepted(&history).ops_checked, 1);
}

#[test]
fn rejects_a_stale_read_after_an_acknowledged_put() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(1, (20, 30), put("a", "v2"), put_ok(3))
        .op(2, (40, 50), get("a"), get_ok(3, Some(kv("a", "v1", 2, 2, 1))))
        .history();
    let violation = rejected(&history);
    assert_eq!(violation.keys, vec!["a".to_string()]);
    assert!(violation.ops.contains(&2), "{violation}");
    assert!(violation.message.contains("#2 must take effect"), "{violation}");
}

#[test]
fn rejects_a_lost_acknowledged_write() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(2, (20, 30), get("a"), get_ok(2, None))
        .history();
    assert_eq!(rejected(&history).ops, vec![0, 1]);
}

#[test]
fn rejects_a_revision_going_backwards() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(5))
        .op(2, (20, 30), get("a"), get_ok(6, Some(kv("a", "v1", 5, 5, 1))))
        .op(2, (40, 50), get("a"), get_ok(5, Some(kv("a", "v1", 5, 5, 1))))
        .history();
    let violation = rejected(&history);
    assert!(violation.ops.contains(&2), "{violation}");
}

#[test]
fn rejects_a_read_of_a_value_never_written() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(2, (20, 30), get("a"), get_ok(3, Some(kv("a", "v9", 3, 3, 1))))
        .history();
    assert!(rejected(&history).ops.contains(&1));
}

#[test]
fn rejects_a_cas_that_succeeded_when_it_should_have_failed() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(1, (20, 30), put("a", "v2"), put_ok(3))
        .op(
            2,
            (40, 50),
            cas("a", "v1", "v3"),
            Outcome::Ok(Response::Txn { revision: 4, succeeded: true, results: vec![TxnOpResult::Put] }),
        )
        .history();
    assert!(rejected(&history).ops.contains(&2));
}

#[test]
fn accepts_a_cas_that_failed_and_read_the_current_value() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(1, (20, 30), put("a", "v2"), put_ok(3))
        .op(
            2,
            (40, 50),
            cas("a", "v1", "v3"),
            Outcome::Ok(Response::Txn {
                revision: 3,
                succeeded: false,
                results: vec![TxnOpResult::Get(Some(kv("a", "v2", 2, 3, 2)))],
            }),
        )
        .history();
    accepted(&history);
}

fn put_both(value: &str) -> Request {
    Request::Txn {
        compares: Vec::new(),
        success: vec![
            TxnOp::Put { key: "a".to_string(), value: format!("{value}a") },
            TxnOp::Put { key: "b".to_string(), value: format!("{value}b") },
        ],
        failure: Vec::new(),
    }
}

fn put_both_ok(revision: i64) -> Outcome {
    Outcome::Ok(Response::Txn { revision, succeeded: true, results: vec![TxnOpResult::Put, TxnOpResult::Put] })
}

#[test]
fn accepts_a_multi_key_txn_seen_whole() {
    let history = Builder::default()
        .op(1, (0, 10), put_both("x"), put_both_ok(2))
        .op(2, (5, 30), get("a"), get_ok(2, Some(kv("a", "xa", 2, 2, 1))))
        .op(2, (40, 50), get("b"), get_ok(2, Some(kv("b", "xb", 2, 2, 1))))
        .history();
    assert_eq!(accepted(&history).partitions, 1);
}

#[test]
fn rejects_a_multi_key_txn_seen_half_applied() {
    let history = Builder::default()
        .op(1, (0, 100), put_both("x"), put_both_ok(2))
        .op(2, (10, 20), get("a"), get_ok(2, Some(kv("a", "xa", 2, 2, 1))))
        .op(2, (30, 40), get("b"), get_ok(2, None))
        .history();
    let violation = rejected(&history);
    assert_eq!(violation.keys, vec!["a".to_string(), "b".to_string()]);
}

fn range(start: &str, end: &str) -> Request {
    Request::Range { start: start.to_string(), end: end.to_string() }
}

#[test]
fn accepts_a_range_over_keys_in_separate_partitions() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "va"), put_ok(2))
        .op(1, (20, 30), put("b", "vb"), put_ok(3))
        .op(1, (40, 50), put("c", "vc"), put_ok(4))
        .op(
            2,
            (60, 70),
            range("a", "c"),
            Outcome::Ok(Response::Range { revision: 4, kvs: vec![kv("a", "va", 2, 2, 1), kv("b", "vb", 3, 3, 1)] }),
        )
        .history();
    assert_eq!(accepted(&history).partitions, 3);
}

#[test]
fn rejects_a_range_that_misses_an_acknowledged_key() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "va"), put_ok(2))
        .op(1, (20, 30), put("b", "vb"), put_ok(3))
        .op(
            2,
            (40, 50),
            range("a", "\0"),
            Outcome::Ok(Response::Range { revision: 3, kvs: vec![kv("a", "va", 2, 2, 1)] }),
        )
        .history();
    let violation = rejected(&history);
    assert_eq!(violation.keys, vec!["b".to_string()]);
    assert_eq!(violation.ops, vec![1, 2]);
}

#[test]
fn rejects_a_response_of_the_wrong_kind_as_malformed() {
    let history = Builder::default().op(1, (0, 10), put("a", "v1"), get_ok(1, None)).history();
    assert!(rejected(&history).message.starts_with("malformed history"));
}

#[test]
fn gives_up_as_inconclusive_past_the_state_limit() {
    let history = generate(&GenConfig { ops: 200, keys: 1, ..GenConfig::default() });
    let summary = check_with_limit(&history, 3).expect("no violation is claimed when out of budget");
    assert_eq!(summary.inconclusive.len(), 1);
    assert_eq!(summary.inconclusive[0].keys, vec![testgen::key_name(0)]);
}

#[test]
fn display_prints_one_line_per_window_operation() {
    let history = Builder::default()
        .op(1, (0, 10), put("a", "v1"), put_ok(2))
        .op(2, (20, 30), get("a"), get_ok(2, None))
        .history();
    let text = rejected(&history).to_string();
    let lines: Vec<&str> = text.lines().filter(|line| line.starts_with("  #")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[1].contains("#1 client 2 via m1 [0.000000020s .. 0.000000030s] get \"a\" => ok rev 2: absent"));
}

#[test]
fn accepts_generated_histories_with_many_clients_and_indeterminate_writes() {
    let config = GenConfig { ops: 2_000, keys: 3, clients: 30, indeterminate_percent: 10, ..GenConfig::default() };
    let summary = accepted(&generate(&config));
    assert_eq!(summary.partitions, 3);
}

#[test]
fn window_of_a_planted_stale_read_is_a_few_operations() {
    let history = generate(&GenConfig { ops: 1_000, keys: 2, clients: 8, seed: 7, ..GenConfig::default() });
    let (planted, stale) = plant_stale_read(&history, 500).expect("a get to make stale");
    let violation = rejected(&planted);
    assert!(violation.ops.contains(&stale), "{violation}");
    assert!(violation.ops.len() <= 6, "{violation}");
}
