//! Every `.sip` file of the vendor corpus (tests/fixtures/corpus, copied from
//! shared/corpus/siprec) through the SIP core: the response code on the
//! wire, one answered m-line per offered one with its label echoed, and the
//! participant-to-label attribution. The harness (srs::testkit) fixes line
//! ends and Content-Length and completes header templates; the files are
//! kept as found.

use std::time::Instant;

use srs::plan::MediaPlan;
use srs::sip::core::{CoreConfig, Event, Peer, SipCore, Transport};
use srs::sip::message::{parse, Message, StartLine};
use srs::siprec::sdp::{parse_offer, AnswerMedia, Direction};
use srs::testkit::corpus_request;

mod common;

fn corpus(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/corpus/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn peer() -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5070".parse().unwrap(),
        conn: None,
    }
}

fn code(m: &Message) -> u16 {
    match m.start {
        StartLine::Response { code, .. } => code,
        _ => 0,
    }
}

/// Feeds one INVITE, accepts every recordable line; returns the final
/// response and the plan.
fn offer_and_answer(core: &mut SipCore, bytes: &[u8]) -> (Message, Option<MediaPlan>) {
    let now = Instant::now();
    core.handle_input(now, peer(), bytes);
    let mut plan = None;
    while let Some(ev) = core.poll_event() {
        if let Event::Offered { session, offer, .. } = ev {
            let p = MediaPlan::from_offer(&offer);
            let answers = p
                .streams
                .iter()
                .map(|s| AnswerMedia::recv(s.codec.as_ref().map(|_| 20000 + 2 * s.index as u16)))
                .collect();
            assert!(core.accept(now, session, "127.0.0.1".parse().unwrap(), answers));
            plan = Some(p);
        }
    }
    let last = std::iter::from_fn(|| core.poll_transmit())
        .map(|t| parse(&t.payload).unwrap())
        .last()
        .expect("a response");
    (last, plan)
}

/// (file, [(label, substring of the sender's aor or name, or "" for none)])
const INITIAL: &[(&str, &[(&str, &str)])] = &[
    (
        "sipp-generated-invite.sip",
        &[("1", "alice@example.com"), ("2", "bob@example.com")],
    ),
    (
        "opensips-generated-invite.sip",
        &[("1", "alice@127.0.0.1"), ("0", "bob@127.0.0.1")],
    ),
    (
        "opensips-generated-invite-2.sip",
        &[("1", "alice@"), ("0", "bob@")],
    ),
    (
        "acme-sbc-offer-body.sip",
        &[
            ("16777227", "9000@192.168.50.102"),
            ("16777228", "1002@192.168.50.10"),
        ],
    ),
    (
        "acme-sbc-avaya-ucid-offer-body.sip",
        &[("201835599", "31624895902@"), ("201835600", "33187164021@")],
    ),
    (
        "acme-sbc-genesys-record-invite-tcp.sip",
        &[
            ("1006644281", "Genesys@"),
            ("1006644282", "record="),
            ("1006644283", "Genesys@"),
            ("1006644284", "record="),
        ],
    ),
    (
        "acme-sbc-carrier-invite-xacme-callid.sip",
        &[
            ("739440565", "+19195184357@"),
            ("739440566", "+18442820485@"),
        ],
    ),
    (
        "audiocodes-mediant-invite-tcp.sip",
        &[("1", "+18888888888@"), ("2", "+17777777777@")],
    ),
    (
        "avaya-sbce-offer-body-dataMode.sip",
        &[("10", "9878942259@"), ("20", "ASBCE@")],
    ),
    (
        "cisco-cube-offer-body-gtd.sip",
        &[("1", "7301"), ("2", "7300")],
    ),
    (
        "cisco-cube-inactive-offer-body.sip",
        &[("1", ""), ("2", "")],
    ),
    ("cisco-cube-ios16-invite-sparse-metadata.sip", &[]),
    ("intrado-viper-invite-tcp.sip", &[("1", "4058327108@")]),
    (
        "opensips-connectel-offer-body.sip",
        &[("1", "0771121212@"), ("2", "0760516936@")],
    ),
    (
        "sems-procomm-offer-body.sip",
        &[("a_leg", "016190200@"), ("b_leg", "Extension-016190619@")],
    ),
    ("sonus-sbc-offer-body.sip", &[("1", "2249888012@")]),
    (
        "ietf-rfc8068-basic-av-invite-complete.sip",
        &[("96", "alice@atlanta.com"), ("98", "bob@biloxy.com")],
    ),
];

#[test]
fn every_initial_corpus_offer_is_answered_and_attributed() {
    let mut failures = Vec::new();
    for (i, (file, expect)) in INITIAL.iter().enumerate() {
        let mut core = SipCore::new(CoreConfig::default());
        let req = corpus_request(&corpus(file), &format!("corpus-{i}"));
        let offered =
            parse(&req).unwrap_or_else(|e| panic!("{file}: harness output unparsable: {e}"));
        let offered_sdp = srs::siprec::split_body(&offered).unwrap().0.unwrap();
        let offer = parse_offer(&offered_sdp).unwrap();
        let (resp, plan) = offer_and_answer(&mut core, &req);
        if code(&resp) != 200 {
            failures.push(format!(
                "{file}: {} {:?}",
                code(&resp),
                resp.header("Warning")
            ));
            continue;
        }
        let answer = parse_offer(&resp.body).unwrap();
        assert_eq!(
            answer.media.len(),
            offer.media.len(),
            "{file}: one answered m-line per offered"
        );
        for (o, a) in offer.media.iter().zip(&answer.media) {
            assert_eq!(o.label, a.label, "{file}: label echoed");
            if o.is_recordable() {
                assert_ne!(a.port, 0, "{file}: recordable line {:?} accepted", o.label);
                let want = match o.direction {
                    Direction::Inactive | Direction::RecvOnly => Direction::Inactive,
                    _ => Direction::RecvOnly,
                };
                assert_eq!(a.direction, want, "{file}: direction of {:?}", o.label);
            } else {
                assert_eq!(
                    a.port, 0,
                    "{file}: unrecordable line {:?} rejected",
                    o.label
                );
            }
        }
        let plan = plan.unwrap();
        for (label, who) in expect.iter() {
            let s = plan
                .streams
                .iter()
                .find(|s| s.label == *label)
                .unwrap_or_else(|| panic!("{file}: no stream labelled {label}"));
            let sender = s
                .participant_id
                .as_ref()
                .and_then(|id| plan.participants.iter().find(|p| &p.id == id));
            match (who.is_empty(), sender) {
                (true, _) => {}
                (false, Some(p)) => {
                    let desc = format!("{:?} {:?}", p.aor, p.name);
                    assert!(
                        desc.contains(who),
                        "{file}: label {label} sent by {desc}, want {who}"
                    );
                }
                (false, None) => {
                    failures.push(format!("{file}: label {label} has no sender, want {who}"))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn rfc8068_mid_dialog_messages_are_accepted_in_their_dialog() {
    // The basic INVITE opens the dialog; hold, transfer, mixed join are
    // re-INVITEs in it; the BYE carries partial metadata.
    let mut core = SipCore::new(CoreConfig::default());
    let inv = corpus_request(
        &corpus("ietf-rfc8068-basic-av-invite-complete.sip"),
        "rfc8068",
    );
    let (ok, _) = offer_and_answer(&mut core, &inv);
    assert_eq!(code(&ok), 200);
    let tag = ok.to_tag().unwrap().to_string();
    let to = format!("<sip:recorder@example.com>;tag={tag}");
    let now = Instant::now();
    let ack = format!("ACK sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP src.example.com;branch=z9hG4bKack1\r\nFrom: <sip:2000@example.com>;tag=35e195d2-947d-4585-946f-09839247\r\nTo: {to}\r\nCall-ID: d253c800-b0d1ea39-4a7dd-3f0e20a\r\nCSeq: 101 ACK\r\nContent-Length: 0\r\n\r\n");
    core.handle_input(now, peer(), ack.as_bytes());
    while core.poll_event().is_some() {}
    for (n, file) in [
        "ietf-rfc8068-hold-reinvite-partial.sip",
        "ietf-rfc8068-transfer-reinvite-partial.sip",
        "ietf-rfc8068-mixed-participant-join-partial.sip",
    ]
    .iter()
    .enumerate()
    {
        let mut req = corpus_request(&corpus(file), "rfc8068");
        req = srs::testkit::set_header(&req, "To", &to);
        req = srs::testkit::set_header(&req, "CSeq", &format!("{} INVITE", 102 + n));
        req = srs::testkit::set_header(
            &req,
            "Via",
            &format!("SIP/2.0/TCP src.example.com;branch=z9hG4bKre{n}"),
        );
        core.handle_input(now, peer(), &req);
        let ev: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
        let (session, lines) = ev
            .iter()
            .find_map(|e| match e {
                Event::Reoffered {
                    session,
                    sdp,
                    metadata_xml: Some(_),
                } => Some((*session, sdp.media.len())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{file}: re-offer with metadata reported: {ev:?}"));
        let answers = (0..lines)
            .map(|i| AnswerMedia::recv(Some(20000 + 2 * i as u16)))
            .collect();
        assert!(core.accept(now, session, "127.0.0.1".parse().unwrap(), answers));
        let resp: Vec<Message> = std::iter::from_fn(|| core.poll_transmit())
            .map(|t| parse(&t.payload).unwrap())
            .collect();
        assert_eq!(resp.iter().map(code).collect::<Vec<_>>(), [200], "{file}");
        assert_eq!(
            parse_offer(&resp[0].body).unwrap().media.len(),
            lines,
            "{file}"
        );
        let ack = ack
            .replace("branch=z9hG4bKack1", &format!("branch=z9hG4bKack{n}2"))
            .replace("101 ACK", &format!("{} ACK", 102 + n));
        core.handle_input(now, peer(), ack.as_bytes());
        while core.poll_event().is_some() {}
    }
    let mut bye = corpus_request(
        &corpus("ietf-rfc8068-bye-with-partial-metadata.sip"),
        "rfc8068",
    );
    bye = srs::testkit::set_header(&bye, "To", &to);
    core.handle_input(now, peer(), &bye);
    let resp = parse(&core.poll_transmit().unwrap().payload).unwrap();
    assert_eq!(code(&resp), 200);
    assert!(matches!(
        core.poll_event(),
        Some(Event::Ended { metadata_xml: Some(x), .. }) if x.contains("stop-time")
    ));
}

/// The same offers over UDP to a real `srs serve`: INVITE, ACK, BYE, then
/// each published recording's metadata.json names the expected senders.
#[test]
fn every_initial_corpus_offer_is_recorded_by_the_server() {
    let srs = common::Server::start();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut call_ids = Vec::new();
    for (i, (file, _)) in INITIAL.iter().enumerate() {
        let req = corpus_request(&corpus(file), &format!("wire-{i}"));
        let inv = parse(&req).unwrap();
        let ok = common::final_response(&sock, srs.sip, &req);
        assert_eq!(code(&ok), 200, "{file}: {:?}", ok.header("Warning"));
        let to = ok.header("To").unwrap().to_string();
        let call_id = inv.call_id().unwrap().to_string();
        let from = inv.header("From").unwrap();
        let via = |b: &str| {
            format!(
                "SIP/2.0/UDP {};branch=z9hG4bK{b}{i}",
                sock.local_addr().unwrap()
            )
        };
        let (n, _) = inv.cseq().unwrap();
        for (method, cseq, branch) in [("ACK", n, "ack"), ("BYE", n + 1, "bye")] {
            let m = format!(
                "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: {}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
                via(branch)
            );
            sock.send_to(m.as_bytes(), srs.sip).unwrap();
        }
        let mut buf = [0u8; 65535];
        let (n, _) = sock.recv_from(&mut buf).expect("BYE answered");
        assert_eq!(code(&parse(&buf[..n]).unwrap()), 200, "{file}: BYE");
        call_ids.push(call_id);
    }
    let list = srs.wait_recordings(INITIAL.len(), std::time::Duration::from_secs(20));
    for ((file, expect), call_id) in INITIAL.iter().zip(&call_ids) {
        let rec = list
            .iter()
            .find(|r| r["call_id"] == call_id.as_str())
            .unwrap_or_else(|| panic!("{file}: recording for {call_id}"));
        assert_eq!(rec["status"], "complete", "{file}");
        for (label, who) in expect.iter().filter(|(_, w)| !w.is_empty()) {
            let stream = rec["streams"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["label"] == *label)
                .unwrap_or_else(|| panic!("{file}: stream {label}"));
            let pid = stream["participant_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{file}: {label} has a sender"));
            let p = rec["participants"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == pid)
                .unwrap();
            let desc = format!("{} {}", p["aor"], p["name"]);
            assert!(
                desc.contains(who),
                "{file}: label {label} sent by {desc}, want {who}"
            );
        }
        // every recorded stream has a playable file spanning the session
        for f in rec["files"].as_array().unwrap() {
            let path = srs
                .recordings
                .join(rec["path"].as_str().unwrap())
                .join(f["name"].as_str().unwrap());
            let (samples, rate) = common::read_wav(&path);
            assert_eq!(
                u64::from(rate),
                f["sample_rate"].as_u64().unwrap(),
                "{file}"
            );
            let want = rec["duration_ms"].as_u64().unwrap() * u64::from(rate) / 1000;
            assert!(
                samples.len() as u64 + u64::from(rate) / 50 >= want,
                "{file}: {} samples, want {want}",
                samples.len()
            );
        }
    }
}
