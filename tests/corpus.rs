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
                .map(|s| AnswerMedia {
                    port: s.codec.as_ref().map(|_| 20000 + 2 * s.index as u16),
                })
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
            .map(|i| AnswerMedia {
                port: Some(20000 + 2 * i as u16),
            })
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
