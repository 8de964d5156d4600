//! Deterministic tests of the SIP core with a simulated clock.

use super::*;
use crate::sip::message::parse;
use std::time::{Duration, Instant};

const SIPP_INVITE: &str = include_str!("../../../tests/fixtures/corpus/sipp-generated-invite.sip");

fn udp_peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5070".parse().unwrap(),
        conn: None,
    }
}

/// Sends `text` (LF endings fixed to CRLF, Content-Length recomputed).
fn crlf(text: &str) -> Vec<u8> {
    crate::testkit::normalise_sip(text.as_bytes())
}

fn drain(core: &mut SipCore) -> Vec<Message> {
    std::iter::from_fn(|| core.poll_transmit())
        .map(|t| parse(&t.payload).expect("we send parsable messages"))
        .collect()
}

fn code(m: &Message) -> u16 {
    match m.start {
        StartLine::Response { code, .. } => code,
        _ => 0,
    }
}

fn offered(core: &mut SipCore) -> (SessionId, Box<RecordingOffer>) {
    match core.poll_event() {
        Some(Event::Offered { session, offer, .. }) => (session, offer),
        other => panic!("expected Offered, got {other:?}"),
    }
}

fn accept_all(core: &mut SipCore, now: Instant, id: SessionId, offer: &RecordingOffer) {
    let answers = (0..offer.sdp.media.len())
        .map(|i| AnswerMedia::recv(Some(20000 + 2 * i as u16)))
        .collect();
    assert!(core.accept(now, id, "127.0.0.1".parse().unwrap(), answers));
}

fn request(method: &str, to_tag: &str, branch: &str, cseq: u32) -> Vec<u8> {
    crlf(&format!(
        "{method} sip:srs@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\n\
From: <sip:src@127.0.0.1:5070>;tag=20223SIPpTag001\nTo: <sip:srs@127.0.0.1:5080>;tag={to_tag}\n\
Call-ID: 1-20223@127.0.0.1\nCSeq: {cseq} {method}\nContent-Length: 0\n\n"
    ))
}

/// INVITE -> 100 + Offered; accept -> 200 with +sip.srs and a recvonly
/// answer per m-line. Returns the local tag.
fn establish(core: &mut SipCore, t0: Instant) -> (SessionId, String) {
    core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
    let out = drain(core);
    assert_eq!(out.iter().map(code).collect::<Vec<_>>(), [100]);
    let (id, offer) = offered(core);
    assert!(offer.is_siprec);
    accept_all(core, t0, id, &offer);
    let out = drain(core);
    assert_eq!(out.len(), 1);
    let ok = &out[0];
    assert_eq!(code(ok), 200);
    assert!(ok.header("Contact").unwrap().ends_with(";+sip.srs"));
    let sdp = crate::siprec::sdp::parse_offer(&ok.body).unwrap();
    assert_eq!(sdp.media.len(), 2);
    assert_eq!(sdp.media[0].label.as_deref(), Some("1"));
    assert_eq!(sdp.media[1].label.as_deref(), Some("2"));
    assert!(sdp
        .media
        .iter()
        .all(|m| m.direction == crate::siprec::sdp::Direction::RecvOnly));
    assert_eq!(sdp.media[0].port, 20000);
    (id, ok.to_tag().unwrap().to_string())
}

#[test]
fn invite_accept_ack_bye() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let (id, tag) = establish(&mut core, t0);
    core.handle_input(t0, udp_peer(), &request("ACK", &tag, "z9hG4bK-ack", 1));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.poll_event(), Some(Event::Confirmed { session: id }));
    // No 2xx retransmission after the ACK (only Timer L of the INVITE
    // transaction remains, which sends nothing).
    for ms in [500, 1500, 3500, 7500, 40_000] {
        core.handle_timeout(t0 + Duration::from_millis(ms));
        assert!(drain(&mut core).is_empty(), "nothing sent at {ms} ms");
    }
    core.handle_input(t0, udp_peer(), &request("BYE", &tag, "z9hG4bK-bye", 2));
    let out = drain(&mut core);
    assert_eq!(code(&out[0]), 200);
    assert!(matches!(
        core.poll_event(),
        Some(Event::Ended { session, reason: EndReason::Bye, .. }) if session == id
    ));
    assert_eq!(core.active_sessions(), 0);
    // A retransmitted BYE gets the same 200, not 481.
    core.handle_input(t0, udp_peer(), &request("BYE", &tag, "z9hG4bK-bye", 2));
    assert_eq!(code(&drain(&mut core)[0]), 200);
    // After Timer J the cache is gone, and a new BYE for the dead dialog is 481.
    core.handle_timeout(t0 + Duration::from_secs(33));
    core.handle_input(t0, udp_peer(), &request("BYE", &tag, "z9hG4bK-bye2", 3));
    assert_eq!(code(&drain(&mut core)[0]), 481);
}

#[test]
fn a_branch_reused_for_another_call_is_a_new_request() {
    // A client that reuses a Via branch from the same address and port
    // within Timer J (32 s) for another call's BYE: that BYE is processed,
    // not answered with the first call's cached 200 (its recording would
    // otherwise never end).
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let (first, tag1) = establish(&mut core, t0);
    core.handle_input(t0, udp_peer(), &request("ACK", &tag1, "z9hG4bK-ack1", 1));
    let second_invite = SIPP_INVITE
        .replace("1-20223@127.0.0.1", "2-20223@127.0.0.1")
        .replace("tag=20223SIPpTag001", "tag=20223SIPpTag002");
    core.handle_input(t0, udp_peer(), &crlf(&second_invite));
    assert_eq!(drain(&mut core).iter().map(code).collect::<Vec<_>>(), [100]);
    assert_eq!(core.poll_event(), Some(Event::Confirmed { session: first }));
    let (second, offer) = offered(&mut core);
    accept_all(&mut core, t0, second, &offer);
    let tag2 = drain(&mut core)[0].to_tag().unwrap().to_string();
    let bye = |call: &str, from_tag: &str, to_tag: &str| {
        crlf(&format!(
            "BYE sip:srs@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-same\n\
From: <sip:src@127.0.0.1:5070>;tag={from_tag}\nTo: <sip:srs@127.0.0.1:5080>;tag={to_tag}\n\
Call-ID: {call}\nCSeq: 2 BYE\nContent-Length: 0\n\n"
        ))
    };
    core.handle_input(
        t0,
        udp_peer(),
        &bye("1-20223@127.0.0.1", "20223SIPpTag001", &tag1),
    );
    assert_eq!(code(&drain(&mut core)[0]), 200);
    assert!(matches!(
        core.poll_event(),
        Some(Event::Ended { session, reason: EndReason::Bye, .. }) if session == first
    ));
    core.handle_input(
        t0,
        udp_peer(),
        &bye("2-20223@127.0.0.1", "20223SIPpTag002", &tag2),
    );
    let out = drain(&mut core);
    assert_eq!(code(&out[0]), 200);
    assert_eq!(out[0].call_id(), Some("2-20223@127.0.0.1"));
    assert!(matches!(
        core.poll_event(),
        Some(Event::Ended { session, reason: EndReason::Bye, .. }) if session == second
    ));
    assert_eq!(core.active_sessions(), 0);
}

#[test]
fn ok_retransmitted_until_ack_with_doubling_intervals() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let (_id, tag) = establish(&mut core, t0);
    let mut sent_at = Vec::new();
    let mut now = t0;
    // Step a simulated clock through the timeouts for 10 s.
    while let Some(t) = core.poll_timeout() {
        if t > t0 + Duration::from_secs(10) {
            break;
        }
        now = t;
        core.handle_timeout(now);
        for m in drain(&mut core) {
            assert_eq!(code(&m), 200);
            sent_at.push((now - t0).as_millis());
        }
    }
    // T1=500: 0.5, 1.5, 3.5, 7.5 (interval capped at T2=4 s), 11.5...
    assert_eq!(sent_at, [500, 1500, 3500, 7500]);
    core.handle_input(now, udp_peer(), &request("ACK", &tag, "z9hG4bK-ack", 1));
    core.handle_timeout(now + Duration::from_secs(5));
    assert!(drain(&mut core).is_empty());
}

#[test]
fn lost_ack_ends_session_with_bye_after_64_t1() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let (id, _tag) = establish(&mut core, t0);
    let mut now = t0;
    while core.active_sessions() > 0 {
        now = core.poll_timeout().expect("a timer while unacknowledged");
        core.handle_timeout(now);
    }
    assert_eq!(now - t0, Duration::from_secs(32));
    let out = drain(&mut core);
    let bye = out.last().unwrap();
    assert_eq!(bye.method(), Some(&Method::Bye));
    assert_eq!(
        bye.request_uri(),
        Some("sip:src@127.0.0.1:5070;transport=UDP")
    );
    assert!(bye.from_tag().is_some());
    let ev: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(ev.contains(&Event::Ended {
        session: id,
        reason: EndReason::AckTimeout,
        metadata_xml: None
    }));
}

#[test]
fn invite_retransmissions_are_absorbed() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = crlf(SIPP_INVITE);
    core.handle_input(t0, udp_peer(), &inv);
    core.handle_input(t0, udp_peer(), &inv);
    let codes: Vec<_> = drain(&mut core).iter().map(code).collect();
    assert_eq!(codes, [100, 100], "retransmission replays 100");
    let (id, offer) = offered(&mut core);
    assert_eq!(core.poll_event(), None, "one session only");
    accept_all(&mut core, t0, id, &offer);
    drain(&mut core);
    core.handle_input(t0, udp_peer(), &inv);
    let out = drain(&mut core);
    assert_eq!(code(&out[0]), 200, "after the answer, the 200 is replayed");
    assert_eq!(core.active_sessions(), 1);
}

#[test]
fn options_unknown_dialog_and_methods() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let opts = crlf("OPTIONS sip:srs@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-o\nFrom: <sip:a@b>;tag=1\nTo: <sip:srs@127.0.0.1>\nCall-ID: opt-1\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n");
    core.handle_input(t0, udp_peer(), &opts);
    let ok = &drain(&mut core)[0];
    assert_eq!(code(ok), 200);
    assert!(ok.tokens("Supported").contains(&"siprec".to_string()));
    assert!(ok.tokens("Allow").contains(&"update".to_string()));
    for (method, want) in [
        ("BYE", 481),
        ("UPDATE", 481),
        ("INFO", 481),
        ("INVITE", 481),
        ("SUBSCRIBE", 405),
    ] {
        core.handle_input(
            t0,
            udp_peer(),
            &request(method, "nosuch", &format!("z9hG4bK-{method}"), 5),
        );
        assert_eq!(code(&drain(&mut core)[0]), want, "{method}");
    }
    core.handle_input(t0, udp_peer(), &request("ACK", "nosuch", "z9hG4bK-a", 5));
    assert!(drain(&mut core).is_empty(), "ACK never gets a response");
}

/// A dispatcher's OPTIONS probe learns that a draining recorder is going
/// away (503 with Retry-After, like a new INVITE), so it stops choosing it;
/// before the drain the same probe gets 200.
#[test]
fn options_while_draining_get_503() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let probe = |n: u32| {
        crlf(&format!("OPTIONS sip:srs@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-p{n}\nFrom: <sip:dispatcher@127.0.0.1>;tag={n}\nTo: <sip:srs@127.0.0.1>\nCall-ID: probe-{n}\nCSeq: 1 OPTIONS\nContent-Length: 0\n\n"))
    };
    core.handle_input(t0, udp_peer(), &probe(1));
    let ok = &drain(&mut core)[0];
    assert_eq!(code(ok), 200);
    assert_eq!(ok.header("Retry-After"), None);
    core.drain();
    core.handle_input(t0, udp_peer(), &probe(2));
    let r = &drain(&mut core)[0];
    assert_eq!(code(r), 503, "a draining recorder refuses the probe");
    assert_eq!(r.header("Retry-After"), Some("30"));
    assert!(r.tokens("Allow").contains(&"invite".to_string()));
    // And a new INVITE gets the same answer.
    core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
    assert_eq!(code(&drain(&mut core)[0]), 503);
}

#[test]
fn rejections_carry_reasons() {
    let mut core = SipCore::new(CoreConfig {
        max_sessions: 1,
        ..CoreConfig::default()
    });
    let t0 = Instant::now();
    // unknown Require
    let inv = SIPP_INVITE
        .replace("Require: siprec", "Require: siprec, foo")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-w");
    core.handle_input(t0, udp_peer(), &crlf(&inv));
    let r = &drain(&mut core)[0];
    assert_eq!(code(r), 420);
    assert_eq!(r.header("Unsupported"), Some("foo"));
    // unusable body type
    let inv = SIPP_INVITE
        .replace("Call-ID: ", "Call-ID: x")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-x")
        .replace("multipart/mixed;boundary", "text/plain;boundary");
    core.handle_input(t0, udp_peer(), &crlf(&inv));
    assert_eq!(code(&drain(&mut core)[0]), 415);
    // nothing recordable
    let inv = SIPP_INVITE
        .replace("Call-ID: ", "Call-ID: y")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-y")
        .replace("RTP/AVP 0", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
    core.handle_input(t0, udp_peer(), &crlf(&inv));
    assert_eq!(code(&drain(&mut core)[0]), 488);
    // the session limit
    establish(&mut core, t0);
    let inv = SIPP_INVITE
        .replace("Call-ID: ", "Call-ID: z")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-z");
    core.handle_input(t0, udp_peer(), &crlf(&inv));
    let r = &drain(&mut core)[0];
    assert_eq!(code(r), 503);
    assert_eq!(r.header("Retry-After"), Some("5"));
    // garbage with readable headers: 400; pure garbage: silence, no panic
    core.handle_input(t0, udp_peer(), b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-g\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: g\r\nCSeq: 1 INVITE\r\nContent-Length: 500\r\n\r\nshort");
    assert_eq!(code(&drain(&mut core)[0]), 400);
    core.handle_input(t0, udp_peer(), b"\x00\x01garbage");
    assert!(drain(&mut core).is_empty());
}

#[test]
fn cancel_before_answer_gives_487() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = parse(&crlf(SIPP_INVITE)).unwrap();
    core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
    drain(&mut core);
    let (id, offer) = offered(&mut core);
    let cancel = crlf(&format!(
        "CANCEL sip:srs@127.0.0.1:5080 SIP/2.0\nVia: {}\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: 1 CANCEL\nContent-Length: 0\n\n",
        inv.header("Via").unwrap(),
        inv.header("From").unwrap(),
        inv.header("To").unwrap(),
        inv.call_id().unwrap()
    ));
    core.handle_input(t0, udp_peer(), &cancel);
    let codes: Vec<_> = drain(&mut core).iter().map(code).collect();
    assert_eq!(codes, [200, 487]);
    assert!(matches!(
        core.poll_event(),
        Some(Event::Ended {
            reason: EndReason::Cancelled,
            ..
        })
    ));
    assert!(
        !core.accept(t0, id, "127.0.0.1".parse().unwrap(), vec![]),
        "too late to accept"
    );
    let _ = offer;
}

#[test]
fn metadata_update_and_reinvite_keep_ports() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let (id, tag) = establish(&mut core, t0);
    core.handle_input(t0, udp_peer(), &request("ACK", &tag, "z9hG4bK-ack", 1));
    drain(&mut core);
    core.poll_event();
    let update = crlf(&format!(
        "UPDATE sip:srs@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-u\nFrom: <sip:src@127.0.0.1:5070>;tag=20223SIPpTag001\nTo: <sip:srs@127.0.0.1:5080>;tag={tag}\nCall-ID: 1-20223@127.0.0.1\nCSeq: 2 UPDATE\nContent-Type: application/rs-metadata+xml\nContent-Length: 0\n\n<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>partial</datamode></recording>"
    ));
    core.handle_input(t0, udp_peer(), &update);
    assert_eq!(code(&drain(&mut core)[0]), 200);
    assert!(matches!(core.poll_event(), Some(Event::Updated { session, .. }) if session == id));
    // re-INVITE with the same SDP, direction inactive: answered inactive on the same ports
    let inv = parse(&crlf(SIPP_INVITE)).unwrap();
    let body = String::from_utf8_lossy(&inv.body).replace("a=sendonly", "a=inactive");
    let reinvite = crlf(&format!(
        "INVITE sip:srs@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ri\nFrom: <sip:src@127.0.0.1:5070>;tag=20223SIPpTag001\nTo: <sip:srs@127.0.0.1:5080>;tag={tag}\nCall-ID: 1-20223@127.0.0.1\nCSeq: 3 INVITE\nContent-Type: {}\nContent-Length: 0\n\n{body}",
        inv.header("Content-Type").unwrap()
    ));
    core.handle_input(t0, udp_peer(), &reinvite);
    assert!(
        drain(&mut core).is_empty(),
        "the answer waits for the IO layer"
    );
    let Some(Event::Reoffered { session, sdp, .. }) = core.poll_event() else {
        panic!("re-offer reported");
    };
    assert_eq!(session, id);
    assert_eq!(
        sdp.media[0].direction,
        crate::siprec::sdp::Direction::Inactive
    );
    let answers = vec![
        AnswerMedia::recv(Some(20000)),
        AnswerMedia::recv(Some(20002)),
    ];
    assert!(core.accept(t0, id, "127.0.0.1".parse().unwrap(), answers));
    let ok = &drain(&mut core)[0];
    assert_eq!(code(ok), 200);
    let sdp = crate::siprec::sdp::parse_offer(&ok.body).unwrap();
    assert_eq!(sdp.media[0].port, 20000);
    assert_eq!(sdp.media[1].port, 20002);
    assert!(sdp
        .media
        .iter()
        .all(|m| m.direction == crate::siprec::sdp::Direction::Inactive));
}

fn established(config: CoreConfig, invite: &str) -> (SipCore, SessionId, String, Instant) {
    let mut core = SipCore::new(config);
    let t0 = Instant::now();
    core.handle_input(t0, udp_peer(), &crlf(invite));
    drain(&mut core);
    let (id, offer) = offered(&mut core);
    accept_all(&mut core, t0, id, &offer);
    let ok = drain(&mut core).pop().unwrap();
    let tag = ok.to_tag().unwrap().to_string();
    core.handle_input(t0, udp_peer(), &request("ACK", &tag, "z9hG4bK-ack0", 1));
    while core.poll_event().is_some() {}
    (core, id, tag, t0)
}

#[test]
fn answer_delay_sends_ringing_then_200_and_cancel_in_between_gives_487() {
    let cfg = CoreConfig {
        answer_delay: Duration::from_millis(20),
        ringing: true,
        ..CoreConfig::default()
    };
    let mut core = SipCore::new(cfg.clone());
    let t0 = Instant::now();
    core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
    let (id, offer) = offered(&mut core);
    accept_all(&mut core, t0, id, &offer);
    assert_eq!(
        drain(&mut core).iter().map(code).collect::<Vec<_>>(),
        [100, 180]
    );
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(20)));
    core.handle_timeout(t0 + Duration::from_millis(19));
    assert!(drain(&mut core).is_empty(), "not before the delay");
    core.handle_timeout(t0 + Duration::from_millis(20));
    assert_eq!(drain(&mut core).iter().map(code).collect::<Vec<_>>(), [200]);

    // A CANCEL inside the delay window ends the session with 487.
    let mut core = SipCore::new(cfg);
    core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
    let (id, offer) = offered(&mut core);
    accept_all(&mut core, t0, id, &offer);
    drain(&mut core);
    let inv = parse(&crlf(SIPP_INVITE)).unwrap();
    let cancel = crlf(&format!(
        "CANCEL sip:srs@127.0.0.1:5080 SIP/2.0\nVia: {}\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: 1 CANCEL\nContent-Length: 0\n\n",
        inv.header("Via").unwrap(), inv.header("From").unwrap(), inv.header("To").unwrap(), inv.call_id().unwrap()
    ));
    core.handle_input(t0 + Duration::from_millis(5), udp_peer(), &cancel);
    assert_eq!(
        drain(&mut core).iter().map(code).collect::<Vec<_>>(),
        [200, 487]
    );
    core.handle_timeout(t0 + Duration::from_millis(30));
    assert!(drain(&mut core).is_empty(), "no 200 after the 487");
}

#[test]
fn shutdown_refuses_sessions_not_yet_answered_with_503() {
    // At SIGTERM a session whose 200 is held for the answer delay, or
    // whose streams are still starting, gets 503 Shutting Down with
    // Retry-After at once (a dispatcher in front takes the call to another
    // recorder now, not at its own timeout) and ends as Refused (nothing
    // published: the call is recorded where it goes). Before, it got no
    // final response at all and was published here too: a duplicate.
    let cfg = CoreConfig {
        answer_delay: Duration::from_millis(20),
        ..CoreConfig::default()
    };
    let t0 = Instant::now();
    for accepted in [true, false] {
        let mut core = SipCore::new(cfg.clone());
        core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
        let (id, offer) = offered(&mut core);
        if accepted {
            accept_all(&mut core, t0, id, &offer);
        }
        assert_eq!(drain(&mut core).iter().map(code).collect::<Vec<_>>(), [100]);
        core.drain();
        core.terminate(t0 + Duration::from_millis(5), id);
        let out = drain(&mut core);
        assert_eq!(
            out.iter().map(code).collect::<Vec<_>>(),
            [503],
            "accepted: {accepted}"
        );
        assert_eq!(out[0].header("Retry-After"), Some("30"));
        assert!(matches!(
            core.poll_event(),
            Some(Event::Ended { session, reason: EndReason::Refused, .. }) if session == id
        ));
        // No 200 after the delay, the streams' start no longer answers.
        core.handle_timeout(t0 + Duration::from_millis(30));
        assert!(!core.accept(t0, id, "127.0.0.1".parse().unwrap(), vec![]));
        assert!(drain(&mut core).is_empty(), "nothing after the 503");
        assert_eq!(core.active_sessions(), 0);
    }
}

#[test]
fn session_timer_too_small_gets_422_with_min_se() {
    let mut core = SipCore::new(CoreConfig::default());
    let inv = SIPP_INVITE.replace(
        "Supported: replaces",
        "Supported: replaces, timer\nSession-Expires: 30",
    );
    core.handle_input(Instant::now(), udp_peer(), &crlf(&inv));
    let r = &drain(&mut core)[0];
    assert_eq!(code(r), 422);
    assert_eq!(r.header("Min-SE"), Some("90"));
}

#[test]
fn client_refresher_that_never_refreshes_gets_bye() {
    let inv = SIPP_INVITE.replace(
        "Supported: replaces",
        "Supported: replaces, timer\nSession-Expires: 120",
    );
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    core.handle_input(t0, udp_peer(), &crlf(&inv));
    drain(&mut core);
    let (id, offer) = offered(&mut core);
    accept_all(&mut core, t0, id, &offer);
    let ok = drain(&mut core).pop().unwrap();
    assert_eq!(ok.header("Session-Expires"), Some("120;refresher=uac"));
    assert!(ok.tokens("Require").contains(&"timer".to_string()));
    let tag = ok.to_tag().unwrap().to_string();
    core.handle_input(t0, udp_peer(), &request("ACK", &tag, "z9hG4bK-ack", 1));
    // A refresh at 60 s (UPDATE without body) moves the deadline.
    core.handle_input(
        t0 + Duration::from_secs(60),
        udp_peer(),
        &request("UPDATE", &tag, "z9hG4bK-r1", 2),
    );
    assert_eq!(code(&drain(&mut core)[0]), 200);
    // Due at refresh + 120 - min(32, 40) = 148 s after t0.
    core.handle_timeout(t0 + Duration::from_secs(147));
    assert_eq!(core.active_sessions(), 1);
    core.handle_timeout(t0 + Duration::from_secs(148));
    assert_eq!(core.active_sessions(), 0);
    let bye = drain(&mut core).pop().unwrap();
    assert_eq!(bye.method(), Some(&Method::Bye));
    let ev: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Ended {
            reason: EndReason::SessionExpired,
            ..
        }
    )));
}

#[test]
fn server_refresher_sends_update_at_half_interval() {
    let inv = SIPP_INVITE.replace(
        "Supported: replaces",
        "Supported: replaces\nSession-Expires: 200;refresher=uas",
    );
    let (mut core, id, tag, t0) = established(CoreConfig::default(), &inv);
    core.handle_timeout(t0 + Duration::from_secs(100));
    let upd = drain(&mut core).pop().expect("a refresh");
    assert_eq!(upd.method(), Some(&Method::Update));
    assert_eq!(upd.to_tag(), Some("20223SIPpTag001"));
    assert_eq!(upd.from_tag(), Some(tag.as_str()));
    assert!(upd.header("Contact").unwrap().contains("+sip.srs"));
    // 200 to our UPDATE: refreshed; a 481 would end the session.
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        upd.header("Via").unwrap(), upd.header("From").unwrap(), upd.header("To").unwrap(),
        upd.call_id().unwrap(), upd.header("CSeq").unwrap()
    );
    core.handle_input(t0 + Duration::from_secs(100), udp_peer(), ok.as_bytes());
    assert_eq!(core.poll_event(), Some(Event::Refreshed { session: id }));
    // The same response again is a retransmission, absorbed (Timer K).
    core.handle_input(t0 + Duration::from_secs(101), udp_peer(), ok.as_bytes());
    assert_eq!(core.poll_event(), None);
    // The next refresh, 100 s later, is refused with 481: the session ends.
    core.handle_timeout(t0 + Duration::from_secs(200));
    let upd2 = drain(&mut core).pop().expect("a second refresh");
    assert_ne!(upd2.via_branch(), upd.via_branch());
    let gone = format!(
        "SIP/2.0 481 Call/Transaction Does Not Exist\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        upd2.header("Via").unwrap(), upd2.header("From").unwrap(), upd2.header("To").unwrap(),
        upd2.call_id().unwrap(), upd2.header("CSeq").unwrap()
    );
    core.handle_input(t0 + Duration::from_secs(200), udp_peer(), gone.as_bytes());
    assert_eq!(core.active_sessions(), 0);
    assert_eq!(drain(&mut core).pop().unwrap().method(), Some(&Method::Bye));
}

#[test]
fn non_2xx_final_is_retransmitted_until_ack_and_our_bye_until_answered() {
    // 488 over UDP: Timer G resends at 0.5, 1.5, 3.5 s; the ACK stops it.
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let inv = SIPP_INVITE
        .replace("RTP/AVP 0", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:18 G729/8000");
    core.handle_input(t0, udp_peer(), &crlf(&inv));
    let r = drain(&mut core).pop().unwrap();
    assert_eq!(code(&r), 488);
    let mut sent = Vec::new();
    for ms in [500, 1500, 3500] {
        core.handle_timeout(t0 + Duration::from_millis(ms));
        sent.extend(drain(&mut core).iter().map(code));
    }
    assert_eq!(sent, [488, 488, 488]);
    let m = parse(&crlf(&inv)).unwrap();
    let ack = format!(
        "ACK sip:srs@127.0.0.1:5080 SIP/2.0\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        m.header("Via").unwrap(), m.header("From").unwrap(), r.header("To").unwrap(), m.call_id().unwrap()
    );
    core.handle_input(t0 + Duration::from_millis(3600), udp_peer(), ack.as_bytes());
    core.handle_timeout(t0 + Duration::from_millis(7500));
    assert!(drain(&mut core).is_empty(), "the ACK stopped Timer G");

    // Our BYE (shutdown) is retransmitted by Timer E until a response.
    let (mut core, id, _tag, t0) = established(CoreConfig::default(), SIPP_INVITE);
    core.terminate(t0, id);
    let bye = drain(&mut core).pop().unwrap();
    assert_eq!(bye.method(), Some(&Method::Bye));
    core.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(
        drain(&mut core).pop().unwrap().via_branch(),
        bye.via_branch()
    );
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        bye.header("Via").unwrap(), bye.header("From").unwrap(), bye.header("To").unwrap(),
        bye.call_id().unwrap(), bye.header("CSeq").unwrap()
    );
    core.handle_input(t0 + Duration::from_millis(600), udp_peer(), ok.as_bytes());
    core.handle_timeout(t0 + Duration::from_millis(1500));
    assert!(drain(&mut core).is_empty(), "answered: no more BYE");
}

#[test]
fn glare_offerless_reinvite_and_snapshot_request() {
    let (mut core, id, tag, t0) = established(CoreConfig::default(), SIPP_INVITE);
    let inv = parse(&crlf(SIPP_INVITE)).unwrap();
    let body = String::from_utf8_lossy(&inv.body).to_string();
    let reinvite = |branch: &str, cseq: u32| {
        crlf(&format!(
            "INVITE sip:srs@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\nFrom: <sip:src@127.0.0.1:5070>;tag=20223SIPpTag001\nTo: <sip:srs@127.0.0.1:5080>;tag={tag}\nCall-ID: 1-20223@127.0.0.1\nCSeq: {cseq} INVITE\nContent-Type: {}\nContent-Length: 0\n\n{body}",
            inv.header("Content-Type").unwrap()
        ))
    };
    core.handle_input(t0, udp_peer(), &reinvite("z9hG4bK-g1", 2));
    assert!(matches!(core.poll_event(), Some(Event::Reoffered { .. })));
    // A second offer while the first waits: 491.
    core.handle_input(t0, udp_peer(), &reinvite("z9hG4bK-g2", 3));
    assert_eq!(drain(&mut core).iter().map(code).collect::<Vec<_>>(), [491]);
    let answers = vec![
        AnswerMedia::recv(Some(20000)),
        AnswerMedia::recv(Some(20002)),
    ];
    core.accept(t0, id, "127.0.0.1".parse().unwrap(), answers);
    drain(&mut core);
    core.handle_input(t0, udp_peer(), &request("ACK", &tag, "z9hG4bK-ack2", 2));
    // Offerless re-INVITE: our 200 carries our SDP as the offer.
    core.handle_input(t0, udp_peer(), &request("INVITE", &tag, "z9hG4bK-ol", 4));
    let ok = drain(&mut core).pop().unwrap();
    assert_eq!(code(&ok), 200);
    let sdp = crate::siprec::sdp::parse_offer(&ok.body).unwrap();
    assert_eq!(sdp.media.len(), 2);
    assert!(sdp
        .media
        .iter()
        .all(|m| m.direction == crate::siprec::sdp::Direction::RecvOnly));
    // requestsnapshot: an UPDATE from us, no SDP, Require: siprec.
    core.request_snapshot(t0, id, "SRS internal error");
    let upd = drain(&mut core).pop().unwrap();
    assert_eq!(upd.method(), Some(&Method::Update));
    assert_eq!(upd.tokens("Require"), ["siprec"]);
    assert!(String::from_utf8_lossy(&upd.body).contains("<requestsnapshot"));
    assert_eq!(upd.header("Content-Disposition"), Some("recording-session"));
}

#[test]
fn allow_list_rate_limit_stream_cap_and_draining() {
    let t0 = Instant::now();
    // Not in the allow-list: 403, no session, no event.
    let mut core = SipCore::new(CoreConfig {
        allow: vec!["10.0.0.0/8".parse().unwrap()],
        ..CoreConfig::default()
    });
    core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
    assert_eq!(drain(&mut core).iter().map(code).collect::<Vec<_>>(), [403]);
    assert_eq!(core.poll_event(), None);
    let mut core = SipCore::new(CoreConfig {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        ..CoreConfig::default()
    });
    core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
    assert!(matches!(core.poll_event(), Some(Event::Offered { .. })));
    // Rate limit: 2 per second from one source.
    let mut core = SipCore::new(CoreConfig {
        rate_limit: 2,
        ..CoreConfig::default()
    });
    let mut codes = Vec::new();
    for i in 0..3 {
        let inv = SIPP_INVITE
            .replace("Call-ID: ", &format!("Call-ID: r{i}"))
            .replace("branch=z9hG4bK-", &format!("branch=z9hG4bK-r{i}"));
        core.handle_input(t0, udp_peer(), &crlf(&inv));
        codes.extend(drain(&mut core).iter().map(code));
    }
    assert_eq!(codes, [100, 100, 503]);
    // 17 m-lines: 488.
    let inv = SIPP_INVITE
        .replace("Call-ID: ", "Call-ID: many")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-many");
    let nl = if inv.contains("\r\n") { "\r\n" } else { "\n" };
    let extra: String = (0..15)
        .map(|k| {
            format!(
                "{nl}m=audio {} RTP/AVP 0{nl}a=rtpmap:0 PCMU/8000{nl}a=label:x{k}{nl}a=sendonly",
                17000 + 2 * k
            )
        })
        .collect();
    let inv = inv.replacen("a=label:2", &format!("a=label:2{extra}"), 1);
    let mut core = SipCore::new(CoreConfig::default());
    core.handle_input(t0, udp_peer(), &crlf(&inv));
    assert_eq!(drain(&mut core).iter().map(code).collect::<Vec<_>>(), [488]);
    // Draining: new sessions get 503, existing ones go on.
    let (mut core, _id, tag, t0) = established(CoreConfig::default(), SIPP_INVITE);
    core.drain();
    let inv = SIPP_INVITE
        .replace("Call-ID: ", "Call-ID: late")
        .replace("branch=z9hG4bK-", "branch=z9hG4bK-late");
    core.handle_input(t0, udp_peer(), &crlf(&inv));
    let r = drain(&mut core).pop().unwrap();
    assert_eq!((code(&r), r.header("Retry-After")), (503, Some("30")));
    core.handle_input(t0, udp_peer(), &request("BYE", &tag, "z9hG4bK-byed", 2));
    assert_eq!(code(&drain(&mut core)[0]), 200);
    // Overloaded: new sessions get 503 (no event, nothing allocated), the
    // established one still gets its BYE answered; accepted again after.
    let (mut core, id, tag, t0) = established(CoreConfig::default(), SIPP_INVITE);
    core.set_overloaded(true);
    let inv = |n: &str| {
        SIPP_INVITE
            .replace("Call-ID: ", &format!("Call-ID: {n}"))
            .replace("branch=z9hG4bK-", &format!("branch=z9hG4bK-{n}"))
    };
    core.handle_input(t0, udp_peer(), &crlf(&inv("busy")));
    let r = drain(&mut core).pop().unwrap();
    assert_eq!((code(&r), r.header("Retry-After")), (503, Some("1")));
    assert!(
        matches!(&r.start, StartLine::Response { reason, .. } if reason == "Overloaded"),
        "{:?}",
        r.start
    );
    assert_eq!(core.poll_event(), None);
    assert_eq!(core.sessions(), [id]);
    core.handle_input(t0, udp_peer(), &request("BYE", &tag, "z9hG4bK-byeo", 2));
    assert_eq!(code(&drain(&mut core)[0]), 200);
    core.set_overloaded(false);
    core.handle_input(t0, udp_peer(), &crlf(&inv("calm")));
    assert!(matches!(
        std::iter::from_fn(|| core.poll_event()).find(|e| matches!(e, Event::Offered { .. })),
        Some(Event::Offered { .. })
    ));
}

#[test]
fn contact_and_via_follow_the_transport() {
    let config = CoreConfig {
        sip_port: 5060,
        tls_port: Some(5061),
        ..CoreConfig::default()
    };
    for (transport, contact, via) in [
        (
            Transport::Udp,
            "<sip:srs@127.0.0.1:5060>",
            "SIP/2.0/UDP 127.0.0.1:5060",
        ),
        (
            Transport::Tcp,
            "<sip:srs@127.0.0.1:5060;transport=tcp>",
            "SIP/2.0/TCP 127.0.0.1:5060",
        ),
        (
            Transport::Tls,
            "<sips:srs@127.0.0.1:5061>",
            "SIP/2.0/TLS 127.0.0.1:5061",
        ),
    ] {
        let mut core = SipCore::new(config.clone());
        let t0 = Instant::now();
        let peer = Peer {
            transport,
            conn: (transport != Transport::Udp).then_some(7),
            ..udp_peer()
        };
        core.handle_input(t0, peer, &crlf(SIPP_INVITE));
        drain(&mut core);
        let (id, offer) = offered(&mut core);
        accept_all(&mut core, t0, id, &offer);
        let out = drain(&mut core);
        let contact_hdr = out[0].header("Contact").unwrap();
        assert!(
            contact_hdr.starts_with(contact),
            "{transport:?}: {contact_hdr}"
        );
        // Our BYE: Via and Contact on the same transport, same connection.
        core.terminate(t0, id);
        let t = core.poll_transmit().expect("our BYE");
        assert_eq!(t.peer, peer);
        let bye = parse(&t.payload).unwrap();
        assert!(bye.header("Via").unwrap().starts_with(via), "{transport:?}");
        assert!(bye.header("Contact").unwrap().starts_with(contact));
    }
}

/// RFC 3261 §12.2.2: an in-dialog request is matched on Call-ID and both
/// tags. A BYE or UPDATE carrying the Call-ID and From tag but no To tag
/// (what anyone who saw the INVITE can forge) gets 481 and changes nothing.
#[test]
fn in_dialog_requests_without_our_to_tag_get_481() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let (id, tag) = establish(&mut core, t0);
    core.handle_input(t0, udp_peer(), &request("ACK", &tag, "z9hG4bK-ack", 1));
    drain(&mut core);
    assert_eq!(core.poll_event(), Some(Event::Confirmed { session: id }));
    let no_to_tag = |method: &str, branch: &str, cseq: u32, body: &str| {
        crlf(&format!(
            "{method} sip:srs@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.9:5070;branch={branch}\n\
From: <sip:src@127.0.0.1:5070>;tag=20223SIPpTag001\nTo: <sip:srs@127.0.0.1:5080>\n\
Call-ID: 1-20223@127.0.0.1\nCSeq: {cseq} {method}\nContent-Type: application/sdp\nContent-Length: 0\n\n{body}"
        ))
    };
    let inactive = "v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 6000 RTP/AVP 0\na=inactive\n";
    let other = Peer {
        addr: "127.0.0.9:5070".parse().unwrap(),
        ..udp_peer()
    };
    core.handle_input(t0, other, &no_to_tag("BYE", "z9hG4bK-forged-bye", 5, ""));
    core.handle_input(
        t0,
        other,
        &no_to_tag("UPDATE", "z9hG4bK-forged-upd", 6, inactive),
    );
    core.handle_input(t0, other, &no_to_tag("INFO", "z9hG4bK-forged-info", 7, ""));
    let codes: Vec<u16> = drain(&mut core).iter().map(code).collect();
    assert_eq!(codes, [481, 481, 481]);
    assert_eq!(core.poll_event(), None, "no event: the session goes on");
    assert_eq!(core.active_sessions(), 1);
    // A wrong To tag is refused too, from the client itself.
    core.handle_input(t0, udp_peer(), &request("BYE", "not-ours", "z9hG4bK-b1", 8));
    assert_eq!(code(&drain(&mut core)[0]), 481);
    // From the dialog's own client address, an UPDATE without To tag is
    // still 481; only a BYE is taken (RFC 2543-style clients, the corpus's
    // BroadWorks scenario).
    let own = |m: &str, b: &str, c: u32| {
        String::from_utf8(no_to_tag(m, b, c, ""))
            .unwrap()
            .replace("127.0.0.9", "127.0.0.1")
            .into_bytes()
    };
    core.handle_input(t0, udp_peer(), &own("UPDATE", "z9hG4bK-own-upd", 9));
    assert_eq!(code(&drain(&mut core)[0]), 481);
    assert_eq!(core.poll_event(), None);
    let _ = &tag;
    core.handle_input(t0, udp_peer(), &own("BYE", "z9hG4bK-own-bye", 10));
    assert_eq!(code(&drain(&mut core)[0]), 200);
    assert!(matches!(
        core.poll_event(),
        Some(Event::Ended {
            reason: EndReason::Bye,
            ..
        })
    ));
}

/// Refused requests that can be addressed get an answer, never silence:
/// 505 for another SIP version, 400 for a request line with a trailing
/// token or too many header lines, 513 for an oversized stream message.
#[test]
fn malformed_requests_get_400_505_513() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let tail = "\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-m{n}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: m{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let msg = |line: &str, extra: &str, n: u32| {
        format!("{line}{extra}{}", tail.replace("{n}", &n.to_string())).into_bytes()
    };
    let many = "\r\nX-H: 1".repeat(300);
    core.handle_input(t0, udp_peer(), &msg("OPTIONS sip:srs@h SIP/3.0", "", 1));
    core.handle_input(
        t0,
        udp_peer(),
        &msg("OPTIONS sip:srs@h SIP/2.0 junk", "", 2),
    );
    core.handle_input(t0, udp_peer(), &msg("OPTIONS sip:srs@h SIP/2.0", &many, 3));
    core.handle_oversized(t0, udp_peer(), &msg("INVITE sip:srs@h SIP/2.0", "", 4));
    let out = drain(&mut core);
    let got: Vec<(u16, String)> = out
        .iter()
        .map(|m| match &m.start {
            StartLine::Response { code, reason } => (*code, reason.clone()),
            _ => (0, String::new()),
        })
        .collect();
    assert_eq!(
        got,
        [
            (505, "Version Not Supported".to_string()),
            (400, "Bad Request".to_string()),
            (400, "Too Many Headers".to_string()),
            (513, "Message Too Large".to_string()),
        ]
    );
    let ids: Vec<&str> = out.iter().filter_map(|m| m.call_id()).collect();
    assert_eq!(
        ids,
        ["m1", "m2", "m3", "m4"],
        "each answer goes to its request"
    );
    // An ACK or a response that cannot be parsed is never answered.
    core.handle_input(t0, udp_peer(), &msg("ACK sip:srs@h SIP/3.0", "", 5));
    core.handle_input(t0, udp_peer(), b"SIP/3.0 200 OK\r\n\r\n");
    assert!(drain(&mut core).is_empty());
}

/// re-INVITEs and UPDATEs are rate-limited per dialog: a burst of twice
/// `reoffer_rate` passes, then 503 Too Many Updates with Retry-After, and
/// the dialog goes on; the bucket refills with time.
#[test]
fn reoffers_are_rate_limited_per_dialog() {
    let mut core = SipCore::new(CoreConfig {
        reoffer_rate: 10,
        ..CoreConfig::default()
    });
    let t0 = Instant::now();
    let (id, tag) = establish(&mut core, t0);
    core.handle_input(t0, udp_peer(), &request("ACK", &tag, "z9hG4bK-ack", 1));
    drain(&mut core);
    assert_eq!(core.poll_event(), Some(Event::Confirmed { session: id }));
    let mut codes = Vec::new();
    for n in 0..25 {
        core.handle_input(
            t0,
            udp_peer(),
            &request("UPDATE", &tag, &format!("z9hG4bK-u{n}"), 2 + n),
        );
        let out = drain(&mut core);
        if code(&out[0]) == 503 {
            assert_eq!(out[0].header("Retry-After"), Some("1"));
        }
        codes.push(code(&out[0]));
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 20, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 503).count(), 5, "{codes:?}");
    let t1 = t0 + Duration::from_secs(1);
    core.handle_input(
        t1,
        udp_peer(),
        &request("UPDATE", &tag, "z9hG4bK-later", 100),
    );
    assert_eq!(code(&drain(&mut core)[0]), 200, "refilled after a second");
    assert_eq!(core.active_sessions(), 1);
}

#[test]
fn a_refused_offer_can_say_when_to_retry_and_dialogs_name_their_connection() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let tcp = |conn| Peer {
        transport: Transport::Tcp,
        conn: Some(conn),
        ..udp_peer()
    };
    core.handle_input(t0, tcp(7), &crlf(SIPP_INVITE));
    drain(&mut core);
    let (id, _) = offered(&mut core);
    assert_eq!(core.conns_in_use(), std::collections::HashSet::from([7]));
    core.reject_retry_after(t0, id, 503, "Out Of Descriptors", Some(10));
    let r = &drain(&mut core)[0];
    assert_eq!(code(r), 503);
    assert!(
        matches!(&r.start, StartLine::Response { reason, .. } if reason == "Out Of Descriptors")
    );
    assert_eq!(r.header("Retry-After"), Some("10"));
    assert!(core.conns_in_use().is_empty(), "the refused dialog is gone");
    // A UDP dialog names no connection.
    let mut udp = SipCore::new(CoreConfig::default());
    establish(&mut udp, t0);
    assert_eq!(udp.active_sessions(), 1);
    assert!(udp.conns_in_use().is_empty());
}

/// The 200 a client sends to a request of ours.
fn ok_to(req: &Message) -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        req.header("Via").unwrap(), req.header("From").unwrap(), req.header("To").unwrap(),
        req.call_id().unwrap(), req.header("CSeq").unwrap()
    )
    .into_bytes()
}

/// Dialog deadlines live in a queue that must follow every change: a
/// refreshed session timer moves its deadline later (the old one is never
/// reported again), and a dialog that ends takes its deadlines with it.
#[test]
fn timeouts_follow_deadlines_that_move_or_go() {
    let secs = Duration::from_secs;
    let inv = SIPP_INVITE.replace(
        "Supported: replaces",
        "Supported: replaces, timer\nSession-Expires: 120",
    );
    let (mut core, id, tag, t0) = established(CoreConfig::default(), &inv);
    // Timer L of the INVITE transaction, then the session timer:
    // 120 - min(32, 40) = 88 s.
    assert_eq!(core.poll_timeout(), Some(t0 + secs(32)));
    core.handle_timeout(t0 + secs(32));
    assert_eq!(core.poll_timeout(), Some(t0 + secs(88)));
    // Refreshed at 60 s: due at 148 s. Before it, Timer J of the UPDATE
    // (92 s), and never the stale 88 s.
    core.handle_input(
        t0 + secs(60),
        udp_peer(),
        &request("UPDATE", &tag, "z9hG4bK-r1", 2),
    );
    assert_eq!(code(&drain(&mut core)[0]), 200);
    assert_eq!(core.poll_event(), Some(Event::Refreshed { session: id }));
    assert_eq!(core.poll_timeout(), Some(t0 + secs(92)));
    core.handle_timeout(t0 + secs(92));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.poll_timeout(), Some(t0 + secs(148)));
    core.handle_timeout(t0 + secs(147));
    assert_eq!(core.active_sessions(), 1, "not before the new deadline");
    core.handle_timeout(t0 + secs(148));
    assert_eq!(drain(&mut core)[0].method(), Some(&Method::Bye));
    assert_eq!(core.active_sessions(), 0);

    // Ended by the client before its session timer: only the transactions'
    // timers remain, then none, and nothing fires at the old deadline.
    let (mut core, id, tag, t0) = established(CoreConfig::default(), &inv);
    core.handle_input(
        t0 + secs(10),
        udp_peer(),
        &request("BYE", &tag, "z9hG4bK-b", 2),
    );
    assert_eq!(code(&drain(&mut core)[0]), 200);
    assert!(matches!(core.poll_event(), Some(Event::Ended { session, .. }) if session == id));
    let mut fired = Vec::new();
    while let Some(t) = core.poll_timeout() {
        fired.push(t - t0);
        core.handle_timeout(t);
    }
    assert_eq!(
        fired,
        [secs(32), secs(42)],
        "Timer L of the INVITE, Timer J of the BYE"
    );
    core.handle_timeout(t0 + secs(88));
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.poll_event(), None);

    // Cancelled inside the answer delay: the delayed answer is forgotten;
    // next comes Timer G of the 487.
    let mut core = SipCore::new(CoreConfig {
        answer_delay: Duration::from_millis(20),
        ..CoreConfig::default()
    });
    core.handle_input(t0, udp_peer(), &crlf(SIPP_INVITE));
    let (id, offer) = offered(&mut core);
    accept_all(&mut core, t0, id, &offer);
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(20)));
    let inv = parse(&crlf(SIPP_INVITE)).unwrap();
    let cancel = crlf(&format!(
        "CANCEL sip:srs@127.0.0.1:5080 SIP/2.0\nVia: {}\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: 1 CANCEL\nContent-Length: 0\n\n",
        inv.header("Via").unwrap(), inv.header("From").unwrap(), inv.header("To").unwrap(), inv.call_id().unwrap()
    ));
    core.handle_input(t0 + Duration::from_millis(5), udp_peer(), &cancel);
    assert_eq!(
        drain(&mut core).iter().map(code).collect::<Vec<_>>(),
        [100, 200, 487]
    );
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_millis(505)));
}

/// Sending an UPDATE of our own (here a metadata snapshot request) before
/// the client's ACK does not stop the 2xx retransmission: the 200 is still
/// resent and, with no ACK, the session still ends after 64*T1.
#[test]
fn our_update_before_the_ack_keeps_the_2xx_retransmitted() {
    let mut core = SipCore::new(CoreConfig::default());
    let t0 = Instant::now();
    let (id, _tag) = establish(&mut core, t0);
    core.request_snapshot(t0, id, "no snapshot yet");
    let update = drain(&mut core).pop().unwrap();
    assert_eq!(update.method(), Some(&Method::Update));
    core.handle_input(t0, udp_peer(), &ok_to(&update));
    let mut ok_at = Vec::new();
    let mut now = t0;
    while core.active_sessions() > 0 {
        now = core.poll_timeout().expect("a timer while unacknowledged");
        core.handle_timeout(now);
        for m in drain(&mut core) {
            if code(&m) == 200 {
                ok_at.push((now - t0).as_millis());
            }
        }
    }
    assert_eq!(&ok_at[..4], [500, 1500, 3500, 7500]);
    assert_eq!(now - t0, Duration::from_secs(32));
    let ev: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(ev.contains(&Event::Ended {
        session: id,
        reason: EndReason::AckTimeout,
        metadata_xml: None
    }));
}

#[test]
fn refusals_name_their_status_and_what_to_do() {
    let cases = [
        (
            Refusal::BadExtension("100rel, foo".into()),
            (420, "Bad Extension"),
            ("Unsupported", "100rel, foo"),
        ),
        (
            Refusal::ShuttingDown,
            (503, "Shutting Down"),
            ("Retry-After", "30"),
        ),
        (
            Refusal::LowSpace,
            (503, "Low Disk Space"),
            ("Retry-After", "60"),
        ),
        (
            Refusal::Overloaded,
            (503, "Overloaded"),
            ("Retry-After", "1"),
        ),
        (
            Refusal::RateLimit,
            (503, "Rate Limit"),
            ("Retry-After", "1"),
        ),
        (
            Refusal::SessionLimit,
            (503, "Session Limit Reached"),
            ("Retry-After", "5"),
        ),
    ];
    for (refusal, status, (header, value)) in cases {
        assert_eq!(refusal.status(), status, "{refusal}");
        assert_eq!(refusal.header(), (header, value.to_string()), "{refusal}");
    }
    let e = SessionTimerError::TooSmall {
        asked: Duration::from_secs(30),
        min_se: Duration::from_secs(90),
    };
    assert_eq!(e.status(), (422, "Session Interval Too Small"));
}
