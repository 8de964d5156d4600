use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn err(body: &str) -> EventError {
    parse_events(body.as_bytes(), now()).unwrap_err()
}

#[test]
fn one_object_or_an_array_with_every_field_and_the_rest_kept() {
    let one = parse_events(
        br#"{"event":" EventEstablished ","time":"2026-11-23T11:00:00.5+01:00",
             "call_uuid":"01ABC","conn_id":"006F02A5","this_dn":"7001","other_dn":"88001234",
             "this_queue":"sales","agent_id":"alice","ani":"+1555","dnis":"800","call_type":"Inbound",
             "user_data":{"CaseNumber":"C-42","Queue":"sales"},"CallHistory":[1,2],"vendor":{"x":1}}"#,
        now(),
    )
    .unwrap();
    assert_eq!(one.len(), 1);
    let e = &one[0];
    assert_eq!(e.event, "EventEstablished");
    assert_eq!(e.time, "2026-11-23T10:00:00.500Z", "normalised to UTC ms");
    assert_eq!(e.conn_id.as_deref(), Some("006F02A5"));
    assert_eq!(e.user_data["CaseNumber"], "C-42");
    assert_eq!(e.extra["CallHistory"], serde_json::json!([1, 2]));
    assert_eq!(e.extra["vendor"]["x"], 1);
    assert_eq!(e.dns().collect::<Vec<_>>(), ["7001", "88001234", "alice"]);
    // The JSON of a stored event: named fields, extras beside them.
    let v = serde_json::to_value(StoredEvent {
        event_id: 7,
        received_at: "t".into(),
        event: e.clone(),
    })
    .unwrap();
    assert_eq!(v["event_id"], 7);
    assert_eq!(v["CallHistory"], serde_json::json!([1, 2]));
    let back: StoredEvent = serde_json::from_value(v).unwrap();
    assert_eq!(&back.event, e);

    let many = parse_events(
        br#"[{"event":"EventRinging","conn_id":"a"},{"event":"EventReleased","call_uuid":"U","time":null}]"#,
        now(),
    )
    .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[0].time, "2026-11-23T10:00:00.000Z", "now by default");
}

#[test]
fn a_bad_field_is_named_with_its_event() {
    let cases: &[(&str, Option<usize>, &str)] = &[
        ("not json", None, "body"),
        ("42", None, "body"),
        ("[]", None, "body"),
        (r#"{"conn_id":"a"}"#, None, "event"),
        (r#"{"event":"  ","conn_id":"a"}"#, None, "event"),
        (r#"{"event":5,"conn_id":"a"}"#, None, "event"),
        (r#"{"event":"E"}"#, None, "call_uuid"),
        (
            r#"{"event":"E","call_uuid":" ","conn_id":""}"#,
            None,
            "call_uuid",
        ),
        (r#"{"event":"E","conn_id":7}"#, None, "conn_id"),
        (
            r#"{"event":"E","conn_id":"a","time":"yesterday"}"#,
            None,
            "time",
        ),
        (r#"{"event":"E","conn_id":"a","time":12}"#, None, "time"),
        (
            r#"{"event":"E","conn_id":"a","this_dn":["7001"]}"#,
            None,
            "this_dn",
        ),
        (
            r#"{"event":"E","conn_id":"a","agent_id":"a\u0007b"}"#,
            None,
            "agent_id",
        ),
        (
            r#"{"event":"E","conn_id":"a","user_data":"x"}"#,
            None,
            "user_data",
        ),
        (
            r#"{"event":"E","conn_id":"a","user_data":{"n":1}}"#,
            None,
            "user_data.n",
        ),
        (
            r#"{"event":"E","conn_id":"a","event_id":1}"#,
            None,
            "event_id",
        ),
        (
            r#"[{"event":"E","conn_id":"a"},{"event":"E","conn_id":"b","ani":{}}]"#,
            Some(1),
            "ani",
        ),
        (r#"[{"event":"E","conn_id":"a"}, 3]"#, Some(1), "body"),
    ];
    for (body, index, field) in cases {
        let e = err(body);
        assert_eq!((e.index, e.field.as_str()), (*index, *field), "{body}: {e}");
        assert!(e.to_string().contains(field), "{e}");
    }
    let big = format!(
        r#"{{"event":"E","conn_id":"a","user_data":{{"k":"{}"}}}}"#,
        "x".repeat(MAX_USER_DATA_BYTES)
    );
    assert_eq!(err(&big).field, "user_data");
    let long = format!(
        r#"{{"event":"E","conn_id":"{}"}}"#,
        "x".repeat(MAX_FIELD_LEN + 1)
    );
    assert_eq!(err(&long).field, "conn_id");
    let many = format!(
        "[{}]",
        vec![r#"{"event":"E","conn_id":"a"}"#; MAX_EVENTS_PER_REQUEST + 1].join(",")
    );
    assert_eq!(err(&many).field, "body");
}

fn t(s: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

fn ev(id: i64, at: &str, uuid: Option<&str>, conn: Option<&str>, prev: Option<&str>) -> Candidate {
    Candidate {
        id,
        at: t(at),
        call_uuid: uuid.map(Into::into),
        conn_id: conn.map(Into::into),
        previous_conn_id: prev.map(Into::into),
    }
}

fn rec(uuid: Option<&str>, conn: Option<&str>) -> RecordingKeys {
    RecordingKeys {
        call_uuid: uuid.map(Into::into),
        conn_id: conn.map(Into::into),
        started_at: t("2026-11-23T10:00:00Z"),
        ended_at: t("2026-11-23T10:05:00Z"),
    }
}

#[test]
fn call_uuid_first_any_time_and_a_different_one_never() {
    let events = [
        ev(1, "2026-11-20T00:00:00Z", Some("u1"), None, None),
        ev(2, "2026-11-23T10:01:00Z", Some("U1"), Some("c9"), None),
        // Same ConnID as the recording but another call: CallUUID decides.
        ev(3, "2026-11-23T10:01:00Z", Some("u2"), Some("c1"), None),
        ev(4, "2026-11-23T10:01:00Z", None, Some("c1"), None),
    ];
    assert_eq!(associate(&rec(Some("U1"), Some("c1")), &events), [1, 2, 4]);
    // Without a CallUUID on the recording, ConnID (in the window) decides.
    assert_eq!(associate(&rec(None, Some("C1")), &events), [3, 4]);
    assert_eq!(associate(&rec(None, None), &events), Vec::<i64>::new());
}

#[test]
fn conn_id_follows_transfers_both_ways_inside_the_window() {
    let events = [
        ev(1, "2026-11-23T09:59:00Z", None, Some("a"), None), // ringing
        ev(2, "2026-11-23T10:02:00Z", None, Some("b"), Some("a")), // party changed
        ev(3, "2026-11-23T10:03:00Z", None, Some("c"), Some("b")), // second transfer
        ev(4, "2026-11-23T12:00:00Z", None, Some("c"), None), // wrap-up, hours later
        ev(5, "2026-11-23T10:01:00Z", None, Some("z"), None), // another call
        ev(6, "2026-11-26T10:00:00Z", None, Some("a"), None), // ConnID reused days later
        ev(7, "2026-11-23T05:00:00Z", None, Some("a"), None), // 5 h before: outside
    ];
    assert_eq!(associate(&rec(None, Some("a")), &events), [1, 2, 3, 4]);
    // A recording of the leg after the transfer finds the call's start.
    assert_eq!(associate(&rec(None, Some("C")), &events), [1, 2, 3, 4]);
    // The ConnIDs of CallUUID matches extend the chain.
    let events = [
        ev(1, "2026-11-23T10:01:00Z", Some("u"), Some("x"), None),
        ev(2, "2026-11-23T10:02:00Z", None, Some("x"), None),
    ];
    assert_eq!(associate(&rec(Some("u"), None), &events), [1, 2]);
}

#[test]
fn attached_data_latest_value_wins_in_time_order() {
    let mk = |id: i64, time: &str, kv: &[(&str, &str)]| StoredEvent {
        event_id: id,
        received_at: String::new(),
        event: CallEvent {
            time: time.into(),
            user_data: kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        },
    };
    // Arrival order differs from time order: time wins.
    let events = [
        mk(1, "2026-11-23T10:05:00.000Z", &[("disposition", "sale")]),
        mk(
            2,
            "2026-11-23T10:00:00.000Z",
            &[("disposition", "none"), ("case", "C-1")],
        ),
        mk(3, "2026-11-23T10:01:00.000Z", &[("case", "C-2")]),
    ];
    let m = merge_attached(&events);
    assert_eq!(m["disposition"], "sale");
    assert_eq!(m["case"], "C-2");
}
