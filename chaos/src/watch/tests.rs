//! Hand-built histories and streams: each check passes a correct run and catches its violation.

use super::*;
use crate::history::{Compare, CompareOp, CompareTarget, Response, TxnOpResult};

fn op(id: u64, request: Request, outcome: Outcome) -> Operation {
    Operation {
        id,
        client: 1,
        member: "m1".to_string(),
        invoke_ns: id * 10,
        complete_ns: id * 10 + 5,
        request,
        outcome,
    }
}

fn ok(id: u64, request: Request, response: Response) -> Operation {
    op(id, request, Outcome::Ok(response))
}

fn indeterminate(id: u64, request: Request) -> Operation {
    op(id, request, Outcome::Indeterminate { reason: "timed out".to_string() })
}

fn put(key: &str, value: &str) -> Request {
    Request::Put { key: key.to_string(), value: value.to_string() }
}

fn delete(key: &str) -> Request {
    Request::Delete { key: key.to_string() }
}

fn put_event(revision: i64, key: &str, value: &str) -> WatchEvent {
    put_event_version(revision, key, value, revision, 1)
}

fn put_event_version(revision: i64, key: &str, value: &str, create_revision: i64, version: i64) -> WatchEvent {
    WatchEvent {
        revision,
        key: key.to_string(),
        kind: WatchEventKind::Put { value: value.to_string(), create_revision, version },
    }
}

fn delete_event(revision: i64, key: &str) -> WatchEvent {
    WatchEvent { revision, key: key.to_string(), kind: WatchEventKind::Delete }
}

fn response(at: u64, header_revision: i64, events: Vec<WatchEvent>) -> WatchResponseRecord {
    WatchResponseRecord { at, header_revision, events, compact_revision: 0, canceled: false }
}

fn stream(
    id: usize,
    (start, end): (&str, &str),
    start_revision: i64,
    responses: Vec<WatchResponseRecord>,
) -> WatchStreamRecord {
    WatchStreamRecord {
        id,
        client: 7,
        start: start.to_string(),
        end: end.to_string(),
        start_revision,
        created_at: 0,
        responses,
        ended: WatchEnd::StillOpen,
    }
}

/// Puts a, b; a txn rewrites a and deletes b; a delete of the absent c; a put of c.
fn base_history() -> History {
    let txn = Request::Txn {
        compares: vec![Compare { key: "a".to_string(), op: CompareOp::Equal, target: CompareTarget::ModRevision(2) }],
        success: vec![
            TxnOp::Put { key: "a".to_string(), value: "v3".to_string() },
            TxnOp::Delete { key: "b".to_string() },
        ],
        failure: vec![],
    };
    let txn_response = Response::Txn {
        revision: 4,
        succeeded: true,
        results: vec![TxnOpResult::Put, TxnOpResult::Delete { deleted: 1 }],
    };
    History {
        ops: vec![
            ok(0, put("a", "v1"), Response::Put { revision: 2 }),
            ok(1, put("b", "v2"), Response::Put { revision: 3 }),
            ok(2, txn, txn_response),
            ok(3, delete("c"), Response::Delete { revision: 4, deleted: 0 }),
            ok(4, put("c", "v4"), Response::Put { revision: 5 }),
        ],
        faults: Vec::new(),
    }
}

/// Stream #0 watches ["a", "d") from revision 2 through all of it; stream #1 watches "a" from
/// "now" (revision 3 at creation).
fn base_streams() -> Vec<WatchStreamRecord> {
    vec![
        stream(
            0,
            ("a", "d"),
            2,
            vec![
                response(1, 1, vec![]),
                response(20, 3, vec![put_event(2, "a", "v1"), put_event(3, "b", "v2")]),
                response(40, 4, vec![put_event_version(4, "a", "v3", 2, 2), delete_event(4, "b")]),
                response(60, 5, vec![put_event(5, "c", "v4")]),
                response(70, 5, vec![]),
            ],
        ),
        stream(
            1,
            ("a", ""),
            0,
            vec![
                response(30, 3, vec![]),
                response(41, 4, vec![put_event_version(4, "a", "v3", 2, 2)]),
                response(71, 5, vec![]),
            ],
        ),
    ]
}

fn message(history: &History, streams: &[WatchStreamRecord]) -> String {
    match check_watches(history, streams) {
        Ok(()) => panic!("the check passed"),
        Err(violation) => violation.message,
    }
}

fn assert_rejected(history: &History, streams: &[WatchStreamRecord], expected: &str) {
    let message = message(history, streams);
    assert!(message.contains(expected), "expected {expected:?} in: {message}");
}

#[test]
fn accepts_a_correct_run() {
    assert_eq!(check_watches(&base_history(), &base_streams()), Ok(()));
}

#[test]
fn covered_runs_from_start_to_the_last_event_or_later_progress() {
    let streams = base_streams();
    assert_eq!(streams[0].covered(), Some((2, 5)));
    // Start revision 0: from the creation response's header + 1.
    assert_eq!(streams[1].covered(), Some((4, 5)));
    let created_only = stream(2, ("a", ""), 2, vec![response(1, 9, vec![])]);
    assert_eq!(created_only.covered(), None);
}

#[test]
fn rejects_revisions_going_back() {
    let mut streams = base_streams();
    streams[0].responses[1].events.reverse();
    assert_rejected(
        &base_history(),
        &streams,
        "put \"a\" = \"v1\" at revision 2 (create 2, version 1) comes after an event at revision 3",
    );
}

#[test]
fn rejects_a_revision_split_across_responses() {
    let mut streams = base_streams();
    let deleted = streams[0].responses[2].events.pop().unwrap();
    streams[0].responses.insert(3, response(50, 4, vec![deleted]));
    let violation = check_watches(&base_history(), &streams).unwrap_err();
    assert!(violation.message.contains("revision 4 was split, response #2 had part"), "{}", violation.message);
    assert!(violation.message.starts_with("watch #0 (client 7, [\"a\", \"d\") from revision 2): response #3"));
    assert_eq!(violation.keys, vec!["b".to_string()]);
}

#[test]
fn rejects_an_event_delivered_twice() {
    let mut streams = base_streams();
    let again = streams[0].responses[3].events[0].clone();
    streams[0].responses[3].events.push(again);
    assert_rejected(
        &base_history(),
        &streams,
        "put \"c\" = \"v4\" at revision 5 (create 5, version 1) is delivered twice",
    );
}

#[test]
fn rejects_an_event_at_or_below_reported_progress() {
    let mut streams = base_streams();
    streams[0].responses.insert(3, response(50, 5, vec![]));
    assert_rejected(&base_history(), &streams, "but response #3 reported progress up to 5");
}

#[test]
fn does_not_take_the_creation_response_for_progress() {
    // Created when the store was at revision 5, the stream catches up from revision 2 afterwards.
    let mut streams = base_streams();
    streams[0].responses[0].header_revision = 5;
    assert_eq!(check_watches(&base_history(), &streams), Ok(()));
    // The same stream ending right after its creation response is not held to anything...
    streams[0].responses.truncate(1);
    assert_eq!(check_watches(&base_history(), &streams), Ok(()));
    // ... but a later progress notification says it caught up.
    streams[0].responses.push(response(80, 5, vec![]));
    assert_rejected(&base_history(), &streams, "missed put \"a\" = \"v1\" at revision 2 by #0");
}

#[test]
fn rejects_an_event_beyond_its_header_revision() {
    let mut streams = base_streams();
    streams[0].responses[3].header_revision = 4;
    assert_rejected(&base_history(), &streams, "at revision 5 (create 5, version 1) is beyond the header revision 4");
}

#[test]
fn rejects_a_response_after_a_cancel() {
    let mut streams = base_streams();
    streams[1].responses[2].canceled = true;
    streams[1].responses[2].compact_revision = 5;
    assert_eq!(check_watches(&base_history(), &streams), Ok(()));
    streams[1].responses.push(response(90, 6, vec![]));
    assert_rejected(
        &base_history(),
        &streams,
        "response #3 (received at 0.000000090s): arrived after the stream was canceled in response #2",
    );
}

#[test]
fn rejects_a_key_outside_the_range() {
    let mut streams = base_streams();
    streams[1].responses.insert(2, response(61, 5, vec![put_event(5, "c", "v4")]));
    assert_rejected(&base_history(), &streams, "watch #1 (client 7, \"a\" from revision 0): response #2 (received at 0.000000061s): put \"c\" = \"v4\" at revision 5 (create 5, version 1) is outside the watched range");
}

#[test]
fn rejects_an_event_below_the_start_revision() {
    let mut streams = base_streams();
    streams[0].start_revision = 3;
    assert_rejected(
        &base_history(),
        &streams,
        "at revision 2 (create 2, version 1) is below the first revision the stream may deliver, 3",
    );
}

#[test]
fn rejects_a_value_only_a_failed_write_wrote() {
    let mut history = base_history();
    history.ops.push(op(5, put("a", "v9"), Outcome::Fail { reason: "no leader".to_string() }));
    let mut streams = base_streams();
    streams[1].responses.push(response(80, 6, vec![put_event_version(6, "a", "v9", 2, 3)]));
    assert_rejected(&history, &streams, "shows a value no operation that may have taken effect wrote to that key");
}

#[test]
fn rejects_a_value_shown_on_another_key_than_written() {
    let mut streams = base_streams();
    streams[0].responses[1].events[1] = put_event(3, "b", "v1");
    assert_rejected(&base_history(), &streams, "no operation that may have taken effect wrote to that key");
}

#[test]
fn rejects_a_value_at_another_revision_than_its_acknowledged_write() {
    let mut streams = base_streams();
    streams.push(stream(2, ("a", ""), 4, vec![response(45, 4, vec![put_event_version(4, "a", "v1", 2, 2)])]));
    let violation = check_watches(&base_history(), &streams).unwrap_err();
    assert!(violation.message.contains("but #0 wrote it at revision 2"), "{}", violation.message);
    assert_eq!(violation.ops, vec![0]);
}

#[test]
fn accepts_a_value_from_an_indeterminate_write_at_any_revision() {
    let mut history = base_history();
    history.ops.push(indeterminate(5, put("a", "v5")));
    let mut streams = base_streams();
    streams[0].responses.push(response(80, 6, vec![put_event_version(6, "a", "v5", 2, 3)]));
    assert_eq!(check_watches(&history, &streams), Ok(()));
}

#[test]
fn rejects_an_event_the_write_of_its_revision_did_not_make() {
    let mut streams = base_streams();
    streams[0].responses[1].events.push(delete_event(3, "c"));
    let violation = check_watches(&base_history(), &streams).unwrap_err();
    assert!(
        violation.message.contains("delete \"c\" at revision 3 but #1 created that revision with [put \"b\" = \"v2\"]"),
        "{}",
        violation.message
    );
    assert_eq!(violation.ops, vec![1]);
}

#[test]
fn rejects_a_delete_event_where_the_write_put() {
    let mut streams = base_streams();
    streams[0].responses[3].events[0] = delete_event(5, "c");
    assert_rejected(&base_history(), &streams, "but #4 created that revision with [put \"c\" = \"v4\"]");
}

#[test]
fn rejects_a_put_event_whose_version_does_not_fit_its_create_revision() {
    let mut streams = base_streams();
    streams[0].responses[1].events[0] = put_event_version(2, "a", "v1", 2, 2);
    assert_rejected(&base_history(), &streams, "is malformed");
    streams[0].responses[1].events[0] = put_event_version(2, "a", "v1", 3, 1);
    assert_rejected(&base_history(), &streams, "is malformed");
}

#[test]
fn rejects_a_missed_put() {
    let mut streams = base_streams();
    streams[0].responses[1].events.remove(0);
    let violation = check_watches(&base_history(), &streams).unwrap_err();
    assert_eq!(
        violation.message,
        "watch #0 (client 7, [\"a\", \"d\") from revision 2): missed put \"a\" = \"v1\" at revision 2 by #0, \
         though response #3 (received at 0.000000060s) shows it caught up to revision 5"
    );
    assert_eq!((violation.keys, violation.ops), (vec!["a".to_string()], vec![0]));
}

#[test]
fn rejects_a_partly_delivered_transaction() {
    let mut streams = base_streams();
    streams[0].responses[2].events.pop();
    assert_rejected(&base_history(), &streams, "missed delete \"b\" at revision 4 by #2");
}

#[test]
fn rejects_a_missed_write_after_a_start_from_now() {
    let mut streams = base_streams();
    streams[1].responses.remove(1);
    assert_rejected(
        &base_history(),
        &streams,
        "watch #1 (client 7, \"a\" from revision 0): missed put \"a\" = \"v3\" at revision 4",
    );
}

#[test]
fn accepts_missing_events_past_what_the_stream_caught_up_to() {
    let mut streams = base_streams();
    // The last event is at revision 4 and no progress notification follows: revision 5 may still come.
    streams[0].responses.truncate(3);
    assert_eq!(streams[0].covered(), Some((2, 4)));
    assert_eq!(check_watches(&base_history(), &streams), Ok(()));
}

#[test]
fn expects_the_chosen_branch_of_a_transaction_only() {
    let txn = Request::Txn {
        compares: vec![Compare { key: "a".to_string(), op: CompareOp::Equal, target: CompareTarget::Version(1) }],
        success: vec![TxnOp::Put { key: "a".to_string(), value: "yes".to_string() }],
        failure: vec![TxnOp::Put { key: "b".to_string(), value: "no".to_string() }],
    };
    let history = History {
        ops: vec![ok(0, txn, Response::Txn { revision: 2, succeeded: false, results: vec![TxnOpResult::Put] })],
        faults: Vec::new(),
    };
    let watching = |event: WatchEvent| {
        vec![stream(
            0,
            ("a", "\0"),
            1,
            vec![response(1, 1, vec![]), response(9, 2, vec![event]), response(10, 2, vec![])],
        )]
    };
    assert_eq!(check_watches(&history, &watching(put_event(2, "b", "no"))), Ok(()));
    assert_rejected(&history, &watching(put_event(2, "a", "yes")), "wrote to that key");
}

#[test]
fn rejects_streams_disagreeing_on_a_revision() {
    let history =
        History { ops: vec![indeterminate(0, put("a", "x")), indeterminate(1, put("a", "y"))], faults: Vec::new() };
    let streams = vec![
        stream(0, ("a", ""), 2, vec![response(50, 2, vec![put_event(2, "a", "x")])]),
        stream(1, ("a", ""), 2, vec![response(51, 2, vec![put_event(2, "a", "y")])]),
    ];
    // Each stream alone is consistent with the history.
    assert_eq!(check_watches(&history, &streams[..1]), Ok(()));
    assert_eq!(check_watches(&history, &streams[1..]), Ok(()));
    assert_rejected(
        &history,
        &streams,
        "watch #0 (client 7, \"a\" from revision 2) shows put \"a\" = \"x\" at revision 2 (create 2, version 1) \
         but watch #1 (client 7, \"a\" from revision 2) shows put \"a\" = \"y\" at revision 2",
    );
}

#[test]
fn rejects_one_value_at_two_revisions() {
    let history = History { ops: vec![indeterminate(0, put("a", "x"))], faults: Vec::new() };
    let streams = vec![
        stream(0, ("a", ""), 2, vec![response(50, 2, vec![put_event(2, "a", "x")])]),
        stream(1, ("a", ""), 2, vec![response(51, 3, vec![put_event(3, "a", "x")])]),
    ];
    assert_rejected(&history, &streams, "shows put \"a\" = \"x\" at revision 2 (create 2, version 1) but watch #1");
}

#[test]
fn rejects_a_stream_missing_what_another_delivered() {
    let mut history = base_history();
    history.ops.push(indeterminate(5, put("a", "v5")));
    let mut streams = base_streams();
    streams[0].responses.push(response(80, 6, vec![put_event_version(6, "a", "v5", 2, 3)]));
    assert_eq!(check_watches(&history, &streams), Ok(()));
    // Stream #1 reports progress to 6 without the indeterminate write stream #0 saw at 6.
    streams[1].responses.push(response(81, 6, vec![]));
    assert_rejected(
        &history,
        &streams,
        "watch #1 (client 7, \"a\" from revision 0) missed put \"a\" = \"v5\" at revision 6 (create 2, version 3) \
         that watch #0 (client 7, [\"a\", \"d\") from revision 2) delivered, though it caught up to revision 6",
    );
}

#[test]
fn rejects_a_compaction_cancel_without_a_compact_revision() {
    let mut streams = base_streams();
    streams[1].ended = WatchEnd::Canceled { compact_revision: 3 };
    assert_eq!(check_watches(&base_history(), &streams), Ok(()));
    streams[1].ended = WatchEnd::Canceled { compact_revision: 0 };
    assert_rejected(
        &base_history(),
        &streams,
        "watch #1 (client 7, \"a\" from revision 0): canceled for compaction with compact revision 0",
    );
}

#[test]
fn rejects_an_event_below_a_reported_compact_revision() {
    let mut streams = base_streams();
    let mut compacted = response(35, 3, vec![]);
    compacted.compact_revision = 5;
    streams[1].responses.insert(1, compacted);
    assert_rejected(
        &base_history(),
        &streams,
        "at revision 4 (create 2, version 2) is below compact revision 5, reported in response #1",
    );
}

#[test]
fn recorder_collects_streams_in_creation_order_from_every_clone() {
    let recorder = WatchRecorder::new();
    let first = recorder.open(1, "a", "", 0, 10);
    let clone = recorder.clone();
    let second = clone.open(2, "a", "\0", 4, 11);
    clone.respond(first, response(12, 3, vec![]));
    recorder.respond(second, response(13, 4, vec![put_event(4, "b", "x")]));
    recorder.end(second, WatchEnd::Failed("connection reset".to_string()));
    let streams = recorder.finish();
    assert_eq!(streams.len(), 2);
    assert_eq!((streams[0].id, streams[0].client, streams[0].created_at), (0, 1, 10));
    assert_eq!(streams[0].responses, vec![response(12, 3, vec![])]);
    assert_eq!(streams[0].ended, WatchEnd::StillOpen);
    assert_eq!(
        (streams[1].id, streams[1].start.as_str(), streams[1].end.as_str(), streams[1].start_revision),
        (1, "a", "\0", 4)
    );
    assert_eq!(streams[1].responses[0].events, vec![put_event(4, "b", "x")]);
    assert_eq!(streams[1].ended, WatchEnd::Failed("connection reset".to_string()));
}

#[test]
#[should_panic(expected = "watch #0 received a response after it ended")]
fn recorder_refuses_a_response_after_the_end() {
    let recorder = WatchRecorder::new();
    let handle = recorder.open(1, "a", "", 0, 10);
    recorder.end(handle, WatchEnd::StillOpen);
    recorder.respond(handle, response(12, 3, vec![]));
}
