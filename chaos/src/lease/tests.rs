//! Hand-built leases, histories and watch events: each check passes a correct run and catches its
//! violation.

use super::*;
use crate::watch::{WatchEnd, WatchEvent, WatchResponseRecord};

/// Lease 7 (10s TTL) is granted at 1s; put #0 attaches "k" at revision 2.
const LEASE: i64 = 7;

fn ms(ms: u64) -> u64 {
    ms * 1_000_000
}

fn op(id: u64, (invoke_ms, complete_ms): (u64, u64), request: Request, outcome: Outcome) -> Operation {
    Operation {
        id,
        client: 1,
        member: "m1".to_string(),
        invoke_ns: ms(invoke_ms),
        complete_ns: ms(complete_ms),
        request,
        outcome,
    }
}

fn kv(value: &str, mod_revision: i64) -> KeyValue {
    KeyValue { key: "k".to_string(), value: value.to_string(), create_revision: 2, mod_revision, version: 1 }
}

fn put(id: u64, interval: (u64, u64), value: &str, revision: i64) -> Operation {
    let request = Request::Put { key: "k".to_string(), value: value.to_string() };
    op(id, interval, request, Outcome::Ok(Response::Put { revision }))
}

fn get(id: u64, interval: (u64, u64), revision: i64, kv: Option<KeyValue>) -> Operation {
    op(id, interval, Request::Get { key: "k".to_string() }, Outcome::Ok(Response::Get { revision, kv }))
}

fn delete(id: u64, interval: (u64, u64), outcome: Outcome) -> Operation {
    op(id, interval, Request::Delete { key: "k".to_string() }, outcome)
}

fn history(ops: Vec<Operation>) -> History {
    History { ops, faults: Vec::new() }
}

fn lease() -> LeaseRecord {
    LeaseRecord {
        id: LEASE,
        ttl: 10,
        granted_at: ms(1000),
        keepalives: Vec::new(),
        revoke: None,
        attached: vec![Attachment { key: "k".to_string(), revision: 2 }],
    }
}

fn keepalive(invoked_ms: u64, ttl: Option<i64>) -> KeepAliveRecord {
    KeepAliveRecord { invoked_at: ms(invoked_ms), completed_at: ms(invoked_ms + 100), ttl }
}

fn revoke((invoked_ms, completed_ms): (u64, u64), ok: bool) -> Option<RevokeRecord> {
    Some(RevokeRecord { invoked_at: ms(invoked_ms), completed_at: ms(completed_ms), ok })
}

/// A watch on "k" from revision 2 that saw the put, then the key deleted at `revision`, at `at_ms`.
fn watched_deletion(revision: i64, at_ms: u64) -> WatchStreamRecord {
    let put_event = WatchEvent {
        revision: 2,
        key: "k".to_string(),
        kind: WatchEventKind::Put { value: "v1".to_string(), create_revision: 2, version: 1 },
    };
    let response = |at_ms: u64, header_revision: i64, events: Vec<WatchEvent>| WatchResponseRecord {
        at: ms(at_ms),
        header_revision,
        events,
        compact_revision: 0,
        canceled: false,
    };
    WatchStreamRecord {
        id: 0,
        client: 3,
        start: "k".to_string(),
        end: String::new(),
        start_revision: 2,
        created_at: ms(1000),
        responses: vec![
            response(1300, 2, vec![put_event]),
            response(
                at_ms,
                revision,
                vec![WatchEvent { revision, key: "k".to_string(), kind: WatchEventKind::Delete }],
            ),
        ],
        ended: WatchEnd::StillOpen,
    }
}

fn message(history: &History, leases: &[LeaseRecord], watches: &[WatchStreamRecord]) -> String {
    match check_leases(history, leases, watches) {
        Ok(()) => panic!("the check passed"),
        Err(violation) => violation.message,
    }
}

fn assert_rejected(history: &History, leases: &[LeaseRecord], watches: &[WatchStreamRecord], expected: &str) {
    let message = message(history, leases, watches);
    assert!(message.contains(expected), "expected {expected:?} in: {message}");
}

#[test]
fn accepts_a_lease_kept_alive_then_revoked() {
    let mut lease = lease();
    lease.keepalives.push(keepalive(5000, Some(10)));
    lease.revoke = revoke((20_000, 20_500), true);
    let history = history(vec![
        put(0, (1100, 1200), "v1", 2),
        get(1, (2000, 2100), 2, Some(kv("v1", 2))),
        get(2, (21_000, 21_100), 3, None),
    ]);
    assert_eq!(check_leases(&history, &[lease], &[watched_deletion(3, 20_400)]), Ok(()));
}

#[test]
fn earliest_expiry_is_the_latest_renewal_plus_its_ttl() {
    let mut lease = lease();
    assert_eq!(lease.earliest_expiry().0, ms(11_000));
    lease.keepalives = vec![keepalive(5000, Some(10)), keepalive(6000, None), keepalive(7000, Some(0))];
    let (earliest, why) = lease.earliest_expiry();
    assert_eq!(earliest, ms(15_000));
    assert_eq!(why, "a keepalive sent at 5.000000000s renewed it for 10s");
}

#[test]
fn rejects_an_attachment_no_acknowledged_put_made() {
    let mut lease = lease();
    lease.attached[0].revision = 3;
    let history = history(vec![put(0, (1100, 1200), "v1", 2)]);
    let violation = check_leases(&history, &[lease], &[]).unwrap_err();
    assert_eq!(
        violation.message,
        "lease 7: attachment of \"k\" at revision 3 matches no acknowledged put (recording error)"
    );
    assert_eq!(violation.keys, vec!["k".to_string()]);
}

#[test]
fn rejects_a_read_of_a_revoked_lease_key() {
    let mut lease = lease();
    lease.revoke = revoke((20_000, 20_500), true);
    let history = history(vec![put(0, (1100, 1200), "v1", 2), get(1, (21_000, 21_100), 2, Some(kv("v1", 2)))]);
    let violation = check_leases(&history, &[lease], &[]).unwrap_err();
    assert_eq!(
        violation.message,
        "lease 7 was revoked by 20.500000000s, but read #1, sent at 21.000000000s, returned \"k\" = \"v1\" \
         (create 2, mod 2, version 1), the version its put #0 attached"
    );
    assert_eq!(violation.ops, vec![0, 1]);
}

#[test]
fn accepts_a_read_concurrent_with_the_revoke_or_of_a_newer_version() {
    let mut lease = lease();
    lease.revoke = revoke((20_000, 20_500), true);
    let history = history(vec![
        put(0, (1100, 1200), "v1", 2),
        get(1, (20_100, 20_600), 2, Some(kv("v1", 2))),
        put(2, (20_700, 20_800), "v2", 4),
        get(3, (21_000, 21_100), 4, Some(kv("v2", 4))),
    ]);
    assert_eq!(check_leases(&history, &[lease], &[]), Ok(()));
}

#[test]
fn rejects_a_keepalive_renewing_a_revoked_lease() {
    let mut lease = lease();
    lease.revoke = revoke((20_000, 20_500), true);
    lease.keepalives.push(keepalive(21_000, Some(10)));
    let history = history(vec![put(0, (1100, 1200), "v1", 2)]);
    assert_eq!(
        message(&history, &[lease.clone()], &[]),
        "lease 7 was revoked by 20.500000000s, but a keepalive sent at 21.000000000s renewed it"
    );
    // Two leases sharing an id: the keepalive may have found the other one.
    let twin = LeaseRecord { revoke: None, keepalives: Vec::new(), ..lease.clone() };
    assert_eq!(check_leases(&history, &[lease, twin], &[]), Ok(()));
}

#[test]
fn rejects_a_key_gone_before_the_granted_ttl() {
    let history = history(vec![put(0, (1100, 1200), "v1", 2), get(1, (8000, 8100), 3, None)]);
    let violation = check_leases(&history, &[lease()], &[]).unwrap_err();
    assert_eq!(
        violation.message,
        "lease 7 expired early: read #1 found \"k\" absent at revision 3 by 8.100000000s, after put #0 attached it \
         at revision 2, but it may not expire before 11.000000000s (granted at 1.000000000s for 10s)"
    );
    assert_eq!(violation.ops, vec![0, 1]);
}

#[test]
fn judges_absence_against_the_latest_keepalive() {
    let absent_at =
        |complete_ms: u64| history(vec![put(0, (1100, 1200), "v1", 2), get(1, (11_500, complete_ms), 3, None)]);
    assert_eq!(check_leases(&absent_at(11_600), &[lease()], &[]), Ok(()));
    let mut renewed = lease();
    renewed.keepalives.push(keepalive(5000, Some(10)));
    assert_rejected(
        &absent_at(11_600),
        &[renewed.clone()],
        &[],
        "(a keepalive sent at 5.000000000s renewed it for 10s)",
    );
    assert_eq!(check_leases(&absent_at(15_100), &[renewed], &[]), Ok(()));
}

#[test]
fn accepts_absence_a_client_delete_or_a_later_put_explains() {
    let gone = get(2, (8000, 8100), 3, None);
    let deleted = delete(1, (7000, 7100), Outcome::Ok(Response::Delete { revision: 3, deleted: 1 }));
    assert_eq!(
        check_leases(&history(vec![put(0, (1100, 1200), "v1", 2), deleted, gone.clone()]), &[lease()], &[]),
        Ok(())
    );
    let maybe = delete(1, (7000, 7100), Outcome::Indeterminate { reason: "timed out".to_string() });
    let maybe_deleted = history(vec![put(0, (1100, 1200), "v1", 2), maybe.clone(), gone.clone()]);
    assert_eq!(check_leases(&maybe_deleted, &[lease()], &[]), Ok(()));
    // Another put of "k" (perhaps with another lease) at revision 3, then "k" absent at 4.
    let replaced =
        history(vec![put(0, (1100, 1200), "v1", 2), put(1, (7000, 7100), "v2", 3), get(2, (8000, 8100), 4, None)]);
    assert_eq!(check_leases(&replaced, &[lease()], &[]), Ok(()));
    // An indeterminate delete sent after the read completed explains nothing.
    let mut late = maybe;
    (late.invoke_ns, late.complete_ns) = (ms(9000), ms(9100));
    let too_late = history(vec![put(0, (1100, 1200), "v1", 2), late, gone]);
    assert_rejected(&too_late, &[lease()], &[], "lease 7 expired early: read #2 found \"k\" absent at revision 3");
}

#[test]
fn accepts_absence_before_the_attaching_put_or_after_a_revoke_was_sent() {
    let before = history(vec![get(0, (1050, 1150), 1, None), put(1, (1100, 1200), "v1", 2)]);
    let mut lease_before = lease();
    lease_before.attached[0].revision = 2;
    assert_eq!(check_leases(&before, &[lease_before], &[]), Ok(()));
    let mut revoking = lease();
    revoking.revoke = revoke((7000, 30_000), false);
    let after = history(vec![put(0, (1100, 1200), "v1", 2), get(1, (8000, 8100), 3, None)]);
    assert_eq!(check_leases(&after, &[revoking], &[]), Ok(()));
}

#[test]
fn rejects_a_watched_deletion_before_the_earliest_expiry() {
    let history = history(vec![put(0, (1100, 1200), "v1", 2)]);
    assert_eq!(check_leases(&history, &[lease()], &[watched_deletion(3, 11_200)]), Ok(()));
    let violation = check_leases(&history, &[lease()], &[watched_deletion(3, 6000)]).unwrap_err();
    assert_eq!(
        violation.message,
        "lease 7 expired early: watch #0 (client 3, \"k\" from revision 2) saw \"k\" deleted at revision 3 by \
         6.000000000s, after put #0 attached it at revision 2, but it may not expire before 11.000000000s \
         (granted at 1.000000000s for 10s)"
    );
}

#[test]
fn rejects_a_keepalive_not_finding_the_lease_before_its_earliest_expiry() {
    let history = history(vec![put(0, (1100, 1200), "v1", 2)]);
    let mut lease = lease();
    lease.keepalives.push(keepalive(11_000, Some(0)));
    assert_eq!(check_leases(&history, &[lease.clone()], &[]), Ok(()));
    lease.keepalives[0] = keepalive(5000, Some(0));
    assert_rejected(
        &history,
        &[lease],
        &[],
        "lease 7 expired early: a keepalive answered \"not found\" by 5.100000000s",
    );
}

#[test]
fn rejects_a_lease_renewed_after_it_was_not_found() {
    let history = history(vec![put(0, (1100, 1200), "v1", 2)]);
    let mut lease = lease();
    lease.keepalives = vec![keepalive(12_000, Some(0)), keepalive(13_000, Some(10))];
    assert_eq!(
        message(&history, &[lease], &[]),
        "lease 7: a keepalive answered \"not found\" by 12.100000000s, but one sent at 13.000000000s renewed it"
    );
}

#[test]
fn slack_forgives_that_much_clock_skew() {
    let history = history(vec![put(0, (1100, 1200), "v1", 2), get(1, (10_000, 10_500), 3, None)]);
    assert_rejected(&history, &[lease()], &[], "expired early");
    assert_eq!(check_leases_with_slack(&history, &[lease()], &[], ms(500)), Ok(()));
}

#[test]
fn rejects_a_read_after_a_watched_deletion() {
    let mut lease = lease();
    lease.revoke = revoke((20_000, 20_500), true);
    let history = history(vec![
        put(0, (1100, 1200), "v1", 2),
        get(1, (20_100, 20_400), 2, Some(kv("v1", 2))),
        get(2, (20_100, 20_400), 3, Some(kv("v1", 2))),
    ]);
    let violation = check_leases(&history, &[lease], &[watched_deletion(3, 20_300)]).unwrap_err();
    assert_eq!(
        violation.message,
        "read #2 at revision 3 returned \"k\" = \"v1\" (create 2, mod 2, version 1), the version lease 7 owned, but \
         watch #0 (client 3, \"k\" from revision 2) saw \"k\" deleted at revision 3"
    );
    assert_eq!(violation.ops, vec![2]);
}

#[test]
fn takes_a_writing_transaction_to_read_before_its_own_revision() {
    let txn = |success: Vec<TxnOp>, revision: i64, results: Vec<TxnOpResult>| {
        let request = Request::Txn { compares: Vec::new(), success, failure: Vec::new() };
        op(1, (20_100, 20_200), request, Outcome::Ok(Response::Txn { revision, succeeded: true, results }))
    };
    let get_k = || TxnOp::Get { key: "k".to_string() };
    let mut lease = lease();
    lease.revoke = revoke((20_000, 20_500), true);
    let watches = [watched_deletion(3, 20_300)];
    // Reads "k", then deletes it: revision 3 is its own; it read at 2.
    let get_then_delete = txn(
        vec![get_k(), TxnOp::Delete { key: "k".to_string() }],
        3,
        vec![TxnOpResult::Get(Some(kv("v1", 2))), TxnOpResult::Delete { deleted: 1 }],
    );
    assert_eq!(observations(&get_then_delete, "k"), vec![(2, Some(&kv("v1", 2)))]);
    let ok = history(vec![put(0, (1100, 1200), "v1", 2), get_then_delete]);
    assert_eq!(check_leases(&ok, &[lease.clone()], &watches), Ok(()));
    // A read-only transaction at revision 3 read at 3.
    let read_only = txn(vec![get_k()], 3, vec![TxnOpResult::Get(Some(kv("v1", 2)))]);
    let stale = history(vec![put(0, (1100, 1200), "v1", 2), read_only]);
    assert_rejected(&stale, &[lease], &watches, "read #1 at revision 3 returned \"k\"");
    // A read after the transaction's own write of the key is not an observation of the store.
    let delete_then_get = txn(
        vec![TxnOp::Delete { key: "k".to_string() }, get_k()],
        3,
        vec![TxnOpResult::Delete { deleted: 1 }, TxnOpResult::Get(None)],
    );
    assert!(observations(&delete_then_get, "k").is_empty());
}

#[test]
fn observes_ranges_covering_the_key() {
    let range = |start: &str, end: &str, kvs: Vec<KeyValue>| {
        let request = Request::Range { start: start.to_string(), end: end.to_string() };
        op(0, (0, 1), request, Outcome::Ok(Response::Range { revision: 5, kvs }))
    };
    assert_eq!(observations(&range("a", "z", vec![kv("v1", 2)]), "k"), vec![(5, Some(&kv("v1", 2)))]);
    assert_eq!(observations(&range("a", "\0", Vec::new()), "k"), vec![(5, None)]);
    assert!(observations(&range("l", "z", Vec::new()), "k").is_empty());
}

#[test]
fn recorder_collects_leases_from_every_clone() {
    let recorder = LeaseRecorder::new();
    let handle = recorder.grant(LEASE, 10, ms(1000));
    let clone = recorder.clone();
    clone.attach(handle, "k", 2);
    clone.keepalive(handle, keepalive(5000, Some(10)));
    recorder.revoke(handle, RevokeRecord { invoked_at: ms(20_000), completed_at: ms(20_500), ok: true });
    let mut expected = lease();
    expected.keepalives.push(keepalive(5000, Some(10)));
    expected.revoke = revoke((20_000, 20_500), true);
    assert_eq!(recorder.finish(), vec![expected]);
}

#[test]
#[should_panic(expected = "lease 7 revoked twice")]
fn recorder_refuses_a_second_revoke() {
    let recorder = LeaseRecorder::new();
    let handle = recorder.grant(LEASE, 10, 0);
    recorder.revoke(handle, RevokeRecord { invoked_at: 1, completed_at: 2, ok: false });
    recorder.revoke(handle, RevokeRecord { invoked_at: 3, completed_at: 4, ok: true });
}
