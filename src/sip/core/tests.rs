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
        .map(|i| AnswerMedia {
            port: Some(20000 + 2 * i as u16),
        })
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
    assert_eq!(core.poll_timeout(), None, "no retransmission after ACK");
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
    assert!(
        matches!(core.poll_event(), Some(Event::Updated { session, metadata_xml: Some(_), sdp: None }) if session == id)
    );
    // re-INVITE with the same SDP, direction inactive: answered inactive on the same ports
    let inv = parse(&crlf(SIPP_INVITE)).unwrap();
    let body = String::from_utf8_lossy(&inv.body).replace("a=sendonly", "a=inactive");
    let reinvite = crlf(&format!(
        "INVITE sip:srs@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-ri\nFrom: <sip:src@127.0.0.1:5070>;tag=20223SIPpTag001\nTo: <sip:srs@127.0.0.1:5080>;tag={tag}\nCall-ID: 1-20223@127.0.0.1\nCSeq: 3 INVITE\nContent-Type: {}\nContent-Length: 0\n\n{body}",
        inv.header("Content-Type").unwrap()
    ));
    core.handle_input(t0, udp_peer(), &reinvite);
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
