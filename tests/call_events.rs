//! Issue 14 end to end against `srs serve`, on calls recorded over SIP:
//! call events before, during and after a recording (CallUUID, ConnID, a
//! ConnID changed by a transfer) in its JSON, its `call-events.json` and
//! its searches; malformed posts refused whole; who may post; webhooks
//! signed, retried and delivered once, across a restart; `/metrics`
//! against what the test did; a hanging webhook receiver that delays no
//! publication.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- HTTP

use common::http::Resp;

fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> Resp {
    common::http::call(addr, method, path, token, "", body)
}

fn post_events(srs: &Server, token: Option<&str>, body: &str) -> Resp {
    call(srs.http, "POST", "/api/v1/call-events", token, body)
}

fn token_add(recordings: &Path, name: &str, role: &str) -> String {
    common::token_add(recordings, name, role, &[])
}

// ---------------------------------------------------------------- SIP

use common::leg::Leg;

/// A Genesys record leg (Request-URI parameters `params`) for agent 7001.
fn start_call(srs: &Server, params: &str, tag: &str) -> Leg {
    Leg::start(srs, params, "sip:7001@pbx", tag)
}

fn show(srs: &Server, id: &str) -> serde_json::Value {
    serde_json::from_str(&srs.cli(&["show", "--json", id])).unwrap()
}

fn call_ids(srs: &Server, args: &[&str]) -> Vec<String> {
    let mut a = vec!["list", "--json"];
    a.extend_from_slice(args);
    let v: Vec<serde_json::Value> = serde_json::from_str(&srs.cli(&a)).unwrap();
    v.iter()
        .map(|r| r["call_id"].as_str().unwrap().to_string())
        .collect()
}

fn api_ids(srs: &Server, query: &str) -> Vec<String> {
    let r = call(
        srs.http,
        "GET",
        &format!("/api/v1/recordings?{query}"),
        None,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["call_id"].as_str().unwrap().to_string())
        .collect()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn names(events: &serde_json::Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

fn ago(secs: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::seconds(secs)).to_rfc3339()
}

#[test]
fn events_before_during_and_after_a_recording_reach_its_json_file_and_searches() {
    let srs = Server::start();
    // Before the recording: ringing on the agent's DN (ConnID only), then
    // established with the CallUUID.
    let before = format!(
        r#"[{{"event":"EventRinging","time":"{}","conn_id":"00a1","this_dn":"7001","other_dn":"15551230000"}},
            {{"event":"EventEstablished","time":"{}","call_uuid":"UUID-T1","conn_id":"00a1","agent_id":"agent-alice","user_data":{{"CustomerID":"CUST-1"}}}},
            {{"event":"EventEstablished","call_uuid":"UUID-OTHER","conn_id":"ffff","this_dn":"7999"}}]"#,
        ago(10),
        ago(9)
    );
    let r = post_events(&srs, None, &before);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["accepted"], 3);
    let leg = start_call(
        &srs,
        "calluuid=UUID-T1;connid=00A1;dn=7001;recorddn=7001",
        "ev-1",
    );
    // During: attached data, then a transfer gives the call a new ConnID.
    let during = r#"[{"event":"EventAttachedDataChanged","conn_id":"00a1","user_data":{"CaseNumber":"C-42"}},
                     {"event":"EventPartyChanged","conn_id":"00b2","previous_conn_id":"00a1","this_dn":"7002","other_dn":"88001234"}]"#;
    assert_eq!(post_events(&srs, None, during).status, 202);
    leg.talk(1000.0, 0.3, 0x5151_0001);
    let call_id = leg.bye();
    let rec = wait_indexed(&srs, &call_id, Duration::from_secs(15));
    let id = rec["recording_id"].as_str().unwrap().to_string();
    // After publication, on the new ConnID only (upper case, as some
    // connectors print it): released, then the disposition.
    std::thread::sleep(Duration::from_millis(50));
    let after = r#"[{"event":"EventReleased","conn_id":"00B2","this_dn":"7002"},
                    {"event":"EventAttachedDataChanged","conn_id":"00b2","user_data":{"Disposition":"sale","CaseNumber":"C-43"}}]"#;
    assert_eq!(post_events(&srs, None, after).status, 202);
    let shown = wait_for("six call events", Duration::from_secs(10), || {
        let v = show(&srs, &id);
        (v["call_events"].as_array().map_or(0, |a| a.len()) == 6).then_some(v)
    });
    assert_eq!(
        names(&shown["call_events"]),
        [
            "EventRinging",
            "EventEstablished",
            "EventAttachedDataChanged",
            "EventPartyChanged",
            "EventReleased",
            "EventAttachedDataChanged"
        ],
        "time order, the other call's event left out"
    );
    assert_eq!(shown["call_events"][1]["agent_id"], "agent-alice");
    assert!(shown["call_events"][0]["event_id"].is_i64());
    let attached = &shown["attached_data"];
    assert_eq!(attached["CustomerID"], "CUST-1");
    assert_eq!(attached["CaseNumber"], "C-43", "the latest value wins");
    assert_eq!(attached["Disposition"], "sale");
    // The API gives the same.
    let api = call(
        srs.http,
        "GET",
        &format!("/api/v1/recordings/{id}"),
        None,
        "",
    )
    .json();
    assert_eq!(api["call_events"], shown["call_events"]);
    assert_eq!(api["attached_data"], shown["attached_data"]);
    // call-events.json beside metadata.json, replaced after publication.
    let file = srs
        .recordings
        .join(rec["path"].as_str().unwrap())
        .join("call-events.json");
    let drop_json = wait_for(
        "call-events.json with six events",
        Duration::from_secs(10),
        || {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).ok()?).ok()?;
            (v["call_events"].as_array()?.len() == 6).then_some(v)
        },
    );
    assert_eq!(drop_json["recording_id"], id.as_str());
    assert_eq!(drop_json["attached_data"], shown["attached_data"]);
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file.with_file_name("metadata.json")).unwrap())
            .unwrap();
    assert_eq!(metadata["recording_id"], id.as_str());
    // Searches: attached data (exact, latest value, all pairs) and DNs of
    // the events, in the CLI and the API.
    assert_eq!(
        call_ids(&srs, &["--attached", "CaseNumber=C-43"]),
        [call_id.as_str()]
    );
    assert!(call_ids(&srs, &["--attached", "CaseNumber=C-42"]).is_empty());
    assert!(
        call_ids(&srs, &["--attached", "CaseNumber=c-43"]).is_empty(),
        "exact"
    );
    assert_eq!(
        call_ids(
            &srs,
            &[
                "--attached",
                "Disposition=sale",
                "--attached",
                "CustomerID=CUST-1"
            ]
        ),
        [call_id.as_str()]
    );
    assert!(call_ids(
        &srs,
        &[
            "--attached",
            "Disposition=sale",
            "--attached",
            "CustomerID=X"
        ]
    )
    .is_empty());
    for dn in ["7002", "88001234", "agent-alice"] {
        assert_eq!(call_ids(&srs, &["--dn", dn]), [call_id.as_str()], "{dn}");
    }
    assert!(
        call_ids(&srs, &["--dn", "7999"]).is_empty(),
        "another call's DN"
    );
    assert_eq!(
        api_ids(&srs, "attached.CaseNumber=C-43"),
        [call_id.as_str()]
    );
    assert_eq!(
        api_ids(&srs, "attached.Disposition=sale&dn=agent-alice"),
        [call_id.as_str()]
    );
    assert!(api_ids(&srs, "attached.Disposition=none").is_empty());

    // A malformed event refuses the whole post, naming it; nothing of it
    // is stored (the good event of the same post never shows).
    let bad = r#"[{"event":"EventAttachedDataChanged","conn_id":"00b2","user_data":{"Poisoned":"yes"}},
                  {"event":"EventAttachedDataChanged","conn_id":"00b2","user_data":{"n":1}}]"#;
    let r = post_events(&srs, None, bad);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(
        (e["field"].as_str(), e["index"].as_u64()),
        (Some("user_data.n"), Some(1))
    );
    assert!(e["error"].as_str().unwrap().contains("user_data.n"), "{e}");
    for (body, field) in [
        (r#"{"conn_id":"00b2"}"#, "event"),
        (r#"{"event":"EventReleased"}"#, "call_uuid"),
        (
            r#"{"event":"EventReleased","conn_id":"00b2","time":"tuesday"}"#,
            "time",
        ),
        ("not json", "body"),
    ] {
        let r = post_events(&srs, None, body);
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["field"], field, "{body}");
    }
    // The same good event alone is accepted: it was not stored before.
    let good = r#"{"event":"EventAttachedDataChanged","conn_id":"00b2","time":"2030-01-01T00:00:00Z","user_data":{"Late":"1"}}"#;
    let r = post_events(&srs, None, good);
    assert_eq!((r.status, r.json()["duplicates"].as_u64()), (202, Some(0)));
    let r = post_events(&srs, None, good);
    assert_eq!(r.json()["duplicates"], 1, "posted twice, stored once");
    std::thread::sleep(Duration::from_millis(500));
    let v = show(&srs, &id);
    assert!(
        v["attached_data"].get("Poisoned").is_none(),
        "{}",
        v["attached_data"]
    );
    assert_eq!(
        v["call_events"].as_array().unwrap().len(),
        6,
        "2030 is outside the window"
    );
}

#[test]
fn integration_tokens_post_events_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("recordings");
    let admin = token_add(&rec, "admin", "admin");
    let integ = token_add(&rec, "cti", "integration");
    let viewer = token_add(&rec, "supervisor", "viewer");
    let srs = Server::start_with(&["--recordings", rec.to_str().unwrap()]);
    let ev = r#"{"event":"EventRinging","conn_id":"0001"}"#;
    assert_eq!(post_events(&srs, Some(&integ), ev).status, 202);
    let ev2 = r#"{"event":"EventRinging","conn_id":"0002"}"#;
    assert_eq!(post_events(&srs, Some(&admin), ev2).status, 202);
    assert_eq!(post_events(&srs, Some(&viewer), ev).status, 403);
    assert_eq!(post_events(&srs, None, ev).status, 401);
    for path in [
        "/api/v1/recordings",
        "/api/v1/sessions",
        "/metrics",
        "/api/v1/webhooks/deliveries",
        "/api/v1/audit",
    ] {
        assert_eq!(
            call(srs.http, "GET", path, Some(&integ), "").status,
            403,
            "{path}"
        );
    }
    let m = call(srs.http, "GET", "/metrics", Some(&viewer), "");
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains("srs_call_events_received_total 2"),
        "{}",
        m.text()
    );
    assert_eq!(
        call(
            srs.http,
            "GET",
            "/api/v1/webhooks/deliveries",
            Some(&viewer),
            ""
        )
        .status,
        403
    );
    assert_eq!(
        call(
            srs.http,
            "GET",
            "/api/v1/webhooks/deliveries",
            Some(&admin),
            ""
        )
        .status,
        200
    );
    // The posts are in the audit trail, by token.
    let audit = call(
        srs.http,
        "GET",
        "/api/v1/audit?action=call-events",
        Some(&admin),
        "",
    )
    .json();
    let actors: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&"cti") && actors.contains(&"admin"),
        "{audit}"
    );
}

// ---------------------------------------------------------------- webhooks

#[derive(Debug, Clone)]
struct Hit {
    event: String,
    delivery: String,
    signed: bool,
    body: serde_json::Value,
    answered: u16,
}

#[derive(Default)]
struct Receiver {
    /// Answer 503 to everything (a receiver that is down).
    down: bool,
    /// Fail this many first attempts of each delivery (500).
    fail_first: usize,
    hits: Vec<Hit>,
}

/// A webhook receiver in the test: verifies each signature with the
/// secret (ring's HMAC, not srs's code) and answers as told.
fn receiver(secret: &'static str) -> (SocketAddr, Arc<Mutex<Receiver>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let state = Arc::new(Mutex::new(Receiver::default()));
    let st = state.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let st = st.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p;
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| v.trim().to_string())
                    })
                };
                let len: usize = header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + 4 + len {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = &buf[head_end + 4..head_end + 4 + len];
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
                let signed = header("x-srs-signature")
                    .and_then(|v| v.strip_prefix("sha256=").map(str::to_string))
                    .and_then(|hex| {
                        (0..hex.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                            .collect::<Option<Vec<u8>>>()
                    })
                    .is_some_and(|tag| ring::hmac::verify(&key, body, &tag).is_ok());
                let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let delivery = header("x-srs-delivery").unwrap_or_default();
                let answered = {
                    let mut r = st.lock().unwrap();
                    let seen = r.hits.iter().filter(|h| h.delivery == delivery).count();
                    let code = if r.down {
                        503
                    } else if seen < r.fail_first {
                        500
                    } else {
                        200
                    };
                    r.hits.push(Hit {
                        event: header("x-srs-event").unwrap_or_default(),
                        delivery,
                        signed,
                        body: json,
                        answered: code,
                    });
                    code
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {answered} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            });
        }
    });
    (addr, state)
}

fn accepted(state: &Arc<Mutex<Receiver>>, event: &str) -> Vec<Hit> {
    state
        .lock()
        .unwrap()
        .hits
        .iter()
        .filter(|h| h.event == event && h.answered == 200)
        .cloned()
        .collect()
}

#[test]
fn webhooks_are_signed_retried_and_delivered_once_even_across_a_restart() {
    const SECRET: &str = "s3cret-shared-with-the-receiver";
    let (addr, state) = receiver(SECRET);
    state.lock().unwrap().fail_first = 2;
    // A closed port: its deliveries die after retry_for.
    let dead_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[webhooks]]\nurl = \"http://{addr}/hook\"\nsecret = \"{SECRET}\"\nretry_initial_ms = 200\ntimeout_ms = 3000\n\n\
             [[webhooks]]\nurl = \"http://127.0.0.1:{dead_port}/gone\"\nsecret = \"x\"\nevents = [\"recording.published\"]\nretry_for = 1\nretry_initial_ms = 100\n"
        ),
    )
    .unwrap();
    let mut srs = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let leg = start_call(&srs, "calluuid=UUID-W1;connid=0c01;dn=7001", "wh-1");
    let call_id = leg.bye();
    let rec = wait_indexed(&srs, &call_id, Duration::from_secs(15));
    let id = rec["recording_id"].as_str().unwrap().to_string();
    let assoc =
        r#"{"event":"EventAttachedDataChanged","call_uuid":"UUID-W1","user_data":{"Case":"W-1"}}"#;
    assert_eq!(post_events(&srs, None, assoc).status, 202);
    for event in [
        "recording.started",
        "recording.published",
        "call-events.associated",
    ] {
        wait_for(event, Duration::from_secs(20), || {
            (!accepted(&state, event).is_empty()).then_some(())
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let hits = state.lock().unwrap().hits.clone();
    assert!(
        hits.iter().all(|h| h.signed),
        "every request signed: {hits:#?}"
    );
    let mut by_id: HashMap<String, Vec<&Hit>> = HashMap::new();
    for h in &hits {
        by_id.entry(h.delivery.clone()).or_default().push(h);
    }
    assert_eq!(by_id.len(), 3, "one delivery per event: {hits:#?}");
    for (d, tries) in &by_id {
        let codes: Vec<u16> = tries.iter().map(|h| h.answered).collect();
        assert_eq!(
            codes,
            [500, 500, 200],
            "{d}: two failures, then accepted once, never again"
        );
        assert!(
            tries.windows(2).all(|w| w[0].body == w[1].body),
            "the same body on every retry"
        );
        let b = &tries[0].body;
        assert_eq!(b["delivery"], d.as_str());
        assert_eq!(b["event"], tries[0].event.as_str());
        assert!(b["at"].is_string());
        assert_eq!(b["recording"]["recording_id"], id.as_str());
    }
    let published = &accepted(&state, "recording.published")[0].body;
    assert_eq!(published["recording"]["status"], "complete");
    let associated = &accepted(&state, "call-events.associated")[0].body;
    assert_eq!(associated["recording"]["attached_data"]["Case"], "W-1");

    // The dead receiver's delivery: in the dead-letter list, and sent again
    // on demand.
    let dead = wait_for("a dead delivery", Duration::from_secs(15), || {
        let out = srs.cli(&["webhooks", "--failed", "--json"]);
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|d| d["status"] == "dead")
    });
    assert!(dead["url"].as_str().unwrap().ends_with("/gone"), "{dead}");
    let api = call(
        srs.http,
        "GET",
        "/api/v1/webhooks/deliveries?failed=true",
        None,
        "",
    )
    .json();
    assert!(api["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["id"] == dead["id"]));
    let dead_id = dead["id"].as_str().unwrap();
    assert!(srs
        .cli(&["webhooks", "--retry", dead_id])
        .contains("queued again"));

    // Deliveries survive a restart: the receiver is down while a call is
    // published, the server restarts, then the receiver comes back.
    {
        let mut r = state.lock().unwrap();
        r.down = true;
        r.fail_first = 0;
    }
    let leg = start_call(&srs, "calluuid=UUID-W2;connid=0c02;dn=7001", "wh-2");
    let call_id = leg.bye();
    wait_indexed(&srs, &call_id, Duration::from_secs(15));
    let pending = wait_for("a refused attempt", Duration::from_secs(15), || {
        state
            .lock()
            .unwrap()
            .hits
            .iter()
            .find(|h| {
                h.event == "recording.published"
                    && h.body["recording"]["call_id"] == call_id.as_str()
            })
            .map(|h| h.delivery.clone())
    });
    srs.restart();
    state.lock().unwrap().down = false;
    let got = wait_for(
        "the delivery after the restart",
        Duration::from_secs(20),
        || {
            accepted(&state, "recording.published")
                .into_iter()
                .find(|h| h.delivery == pending)
        },
    );
    assert_eq!(got.body["recording"]["call_id"], call_id.as_str());
    std::thread::sleep(Duration::from_secs(1));
    let n = accepted(&state, "recording.published")
        .iter()
        .filter(|h| h.delivery == pending)
        .count();
    assert_eq!(n, 1, "accepted once");
    let all: Vec<serde_json::Value> = srs
        .cli(&["webhooks", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let row = all.iter().find(|d| d["id"] == pending.as_str()).unwrap();
    assert_eq!(row["status"], "delivered", "{row}");

    // A deletion (issue 15's `DELETE /api/v1/recordings/{id}`) tells the
    // receivers: `recording.deleted`, queued with the deletion itself.
    let admin = token_add(&srs.recordings, "ops", "admin");
    // The running server sees the new token within a second or two.
    let gone = wait_for("the deletion", Duration::from_secs(10), || {
        let r = call(
            srs.http,
            "DELETE",
            &format!("/api/v1/recordings/{id}"),
            Some(&admin),
            "",
        );
        (r.status != 403).then_some(r)
    });
    assert_eq!(gone.status, 200, "{}", String::from_utf8_lossy(&gone.body));
    let deleted = wait_for("recording.deleted", Duration::from_secs(20), || {
        accepted(&state, "recording.deleted").into_iter().next()
    });
    assert!(deleted.signed);
    assert_eq!(deleted.body["recording"]["recording_id"], id.as_str());
}

// ---------------------------------------------------------------- metrics

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
}

#[test]
fn metrics_match_what_the_test_did() {
    let srs = Server::start();
    let mut call_ids = Vec::new();
    for i in 0..3 {
        let leg = start_call(
            &srs,
            &format!("calluuid=UUID-M{i};dn=7001"),
            &format!("m-{i}"),
        );
        leg.talk(1000.0, 0.5, 0x5151_0001); // 25 packets
        call_ids.push(leg.bye());
    }
    // One refusal: an extension we do not support.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = one_stream_sdp(me.ip(), "RTP/AVP", "");
    let inv = invite_request("UDP", me, "m-refused", &sdp)
        .replace("Content-Type:", "Require: 100rel-bogus\r\nContent-Type:");
    assert_eq!(status(&final_response(&sock, srs.sip, inv.as_bytes())), 420);
    let mut received = 0.0;
    for c in &call_ids {
        let r = wait_indexed(&srs, c, Duration::from_secs(15));
        received += r["streams"][0]["packets_received"].as_f64().unwrap();
    }
    assert_eq!(received, 75.0, "25 packets per call on loopback");
    let text = call(srs.http, "GET", "/metrics", None, "").text();
    assert_eq!(
        metric(
            &text,
            "srs_sessions_total{outcome=\"answered\",reason=\"\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(
            &text,
            "srs_sessions_total{outcome=\"refused\",reason=\"bad-extension\"}"
        ),
        1.0
    );
    assert_eq!(metric(&text, "srs_sip_responses_total{code=\"420\"}"), 1.0);
    assert!(
        metric(&text, "srs_sip_responses_total{code=\"200\"}") >= 6.0,
        "3 INVITEs, 3 BYEs"
    );
    assert_eq!(metric(&text, "srs_rtp_packets_received_total"), received);
    assert_eq!(metric(&text, "srs_rtp_packets_lost_total"), 0.0);
    assert_eq!(metric(&text, "srs_rtp_packets_foreign_total"), 0.0);
    assert_eq!(
        metric(&text, "srs_recordings_published_total{status=\"complete\"}"),
        3.0
    );
    assert_eq!(metric(&text, "srs_publish_duration_seconds_count"), 3.0);
    assert_eq!(metric(&text, "srs_sessions_active"), 0.0);
    assert_eq!(metric(&text, "srs_publish_backlog"), 0.0);
    assert_eq!(metric(&text, "srs_overload_active"), 0.0);
    assert!(metric(&text, "srs_disk_free_bytes") > 0.0);
    // Packets of a live call are counted before it ends (folded on scrape).
    let leg = start_call(&srs, "calluuid=UUID-M9;dn=7001", "m-live");
    leg.talk(1000.0, 0.2, 0x5151_0001); // 10 packets
    let text = wait_for("the live packets", Duration::from_secs(5), || {
        let t = call(srs.http, "GET", "/metrics", None, "").text();
        (metric(&t, "srs_rtp_packets_received_total") == received + 10.0).then_some(t)
    });
    assert_eq!(metric(&text, "srs_sessions_active"), 1.0);
    leg.bye();
}

/// A receiver that accepts connections and never answers.
fn hanging_receiver() -> (SocketAddr, Arc<Mutex<usize>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let open = Arc::new(Mutex::new(0usize));
    let o = open.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            *o.lock().unwrap() += 1;
            held.push(s);
        }
    });
    (addr, open)
}

#[test]
fn a_hanging_webhook_receiver_delays_no_publication() {
    let (addr, opened) = hanging_receiver();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    std::fs::write(
        &cfg,
        format!("[[webhooks]]\nurl = \"http://{addr}/hook\"\nsecret = \"k\"\ntimeout_ms = 60000\nmax_in_flight = 4\n"),
    )
    .unwrap();
    let srs = Arc::new(Server::start_with(&["--config", cfg.to_str().unwrap()]));
    const THREADS: usize = 10;
    const PER_THREAD: usize = 20;
    let t0 = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let srs = srs.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let leg = start_call(&srs, "dn=7001", &format!("hang-{t}-{i}"));
                        std::thread::sleep(Duration::from_millis(100));
                        let c = leg.bye_reliably();
                        (c, Instant::now())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let calls: Vec<(String, Instant)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let last_bye = calls.iter().map(|c| c.1).max().unwrap();
    assert_eq!(calls.len(), THREADS * PER_THREAD);
    // Every recording is in the drop within seconds of its BYE, while the
    // receiver holds every delivery slot.
    let deadline = Instant::now() + Duration::from_secs(60);
    let published = loop {
        let seen = srs::store::FileDrop::new(&srs.recordings)
            .scan()
            .map_or(0, |v| v.len());
        if seen == THREADS * PER_THREAD {
            break Instant::now();
        }
        if Instant::now() >= deadline {
            let found: Vec<String> = srs::store::FileDrop::new(&srs.recordings)
                .scan()
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.call_id)
                .collect();
            let missing: Vec<&String> = calls
                .iter()
                .map(|c| &c.0)
                .filter(|c| !found.contains(c))
                .collect();
            let log = srs.log();
            panic!(
                "{seen} of 200 recordings in the drop; missing {missing:?}; the server said:\n{}\nabout the missing:\n{}",
                log.lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                log.lines()
                    .filter(|l| missing.iter().any(|m| l.contains(m.split('@').next().unwrap())))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lag = published.saturating_duration_since(last_bye);
    assert!(
        lag < Duration::from_secs(5),
        "published {lag:?} after the last BYE; warnings of the server:\n{}",
        srs.log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("index batch"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "200 calls in {:?}, all published {:?} after the last BYE",
        last_bye - t0,
        lag
    );
    let text = call(srs.http, "GET", "/metrics", None, "").text();
    assert_eq!(
        metric(&text, "srs_recordings_published_total{status=\"complete\"}"),
        200.0
    );
    // The histogram's bucket of at most 3 s holds every publication.
    let (le, within) = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("srs_publish_duration_seconds_bucket{le=\"")?;
            let (le, n) = rest.split_once("\"} ")?;
            Some((le.parse::<f64>().ok()?, n.parse::<f64>().ok()?))
        })
        .filter(|(le, _)| *le <= 3.0)
        .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    assert_eq!(
        within, 200.0,
        "every publication within {le} s of its session's end"
    );
    // Every notification is waiting in the outbox (started + published).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = call(srs.http, "GET", "/metrics", None, "").text();
        let backlog = metric(&t, "srs_webhook_backlog");
        if backlog == 400.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "webhook backlog {backlog}, not 400:\n{t}\n{}",
            srs.cli(&["webhooks", "--json", "--limit", "1000"])
                .lines()
                .filter(|l| !l.contains("\"status\":\"pending\""))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(*opened.lock().unwrap() <= 4, "max_in_flight holds");
}

// ------------------------------------------------- retention by attached data

/// Issue 15's `attached.KEY` retention rules match the values call events
/// attached: a recording whose call was marked `Case = GDPR-*` goes, the
/// same kind of call without that value stays.
#[test]
fn retention_rules_match_attached_data() {
    let srs = Server::start();
    let marked = start_call(&srs, "calluuid=UUID-R1;connid=0d01;dn=7001", "ret-1").bye();
    let other = start_call(&srs, "calluuid=UUID-R2;connid=0d02;dn=7001", "ret-2").bye();
    wait_indexed(&srs, &marked, Duration::from_secs(15));
    wait_indexed(&srs, &other, Duration::from_secs(15));
    let ev = r#"[{"event":"EventAttachedDataChanged","call_uuid":"UUID-R1","user_data":{"Case":"GDPR-7"}},
                {"event":"EventAttachedDataChanged","call_uuid":"UUID-R2","user_data":{"Case":"SALES-3"}}]"#;
    assert_eq!(post_events(&srs, None, ev).status, 202);
    wait_for("the attached data", Duration::from_secs(15), || {
        (call_ids(&srs, &["--attached", "Case=GDPR-7"]) == [marked.clone()]).then_some(())
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("retention.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nrecordings = {:?}\n\n[[retention]]\nname = \"gdpr-cases\"\ndays = 0\nattached = {{ Case = \"GDPR-*\" }}\n",
            srs.recordings.display().to_string()
        ),
    )
    .unwrap();
    let out = srs.cli(&[
        "retention",
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.contains(&marked) || out.contains("gdpr-cases"), "{out}");
    let left = call_ids(&srs, &[]);
    assert!(!left.contains(&marked), "the GDPR case is gone: {left:?}");
    assert!(left.contains(&other), "the other call stays: {left:?}");
    // Its call events (the attached case number) went with it; the other
    // call's stay.
    let ix = rusqlite::Connection::open(srs.recordings.join("index.sqlite")).unwrap();
    let events_of = |uuid: &str| -> i64 {
        ix.query_row(
            "SELECT COUNT(*) FROM call_events WHERE call_uuid = ?1",
            [uuid],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        events_of("UUID-R1"),
        0,
        "the deleted call's events are deleted"
    );
    assert_eq!(events_of("UUID-R2"), 1, "the other call's events stay");
}
