//! SIP on the wire against `srs serve`: large UDP datagrams, TCP framing
//! (one message over several writes, several in one), responses as a real
//! client sees them.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn corpus(name: &str) -> String {
    std::fs::read_to_string(manifest_dir().join("tests/fixtures/corpus").join(name)).unwrap()
}

fn status_lines(text: &str) -> Vec<String> {
    text.split("SIP/2.0 ")
        .skip(1)
        .map(|r| r.lines().next().unwrap_or("").to_string())
        .collect()
}

/// The corpus SIPp INVITE (two PCMU streams) as a new call: its own
/// Call-ID and branch.
fn corpus_call(id: &str) -> Vec<u8> {
    let text = corpus("sipp-generated-invite.sip")
        .replace("1-20223@127.0.0.1", id)
        .replace("z9hG4bK-20223-1-0", &format!("z9hG4bK-{id}"));
    srs::testkit::corpus_request(&text, id)
}

/// `method` (CANCEL, or the ACK of its 487) for the pending `inv`.
fn for_pending(method: &str, inv: &srs::sip::message::Message, to_tag: &str) -> String {
    format!(
        "{method} {} SIP/2.0\r\nVia: {}\r\nFrom: {}\r\nTo: {}{to_tag}\r\nCall-ID: {}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n",
        inv.request_uri().unwrap(),
        inv.header("Via").unwrap(),
        inv.header("From").unwrap(),
        inv.header("To").unwrap(),
        inv.call_id().unwrap()
    )
}

/// A two-stream call, tried until answered 200 (an ended call's ports
/// are free once it is published); fails after 5 s.
fn call_once_ports_are_free(srs: &Server, sock: &UdpSocket, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for attempt in 0.. {
        let r = final_response(sock, srs.sip, &corpus_call(&format!("{prefix}-{attempt}")));
        if status(&r) == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ports kept: {:?}\n{}",
            r.start,
            srs.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn udp_invite_larger_than_an_ethernet_frame_is_answered() {
    let srs = Server::start();
    let req =
        srs::testkit::corpus_request(&corpus("acme-sbc-genesys-record-invite-tcp.sip"), "big-udp");
    assert!(req.len() > 3000, "{} bytes", req.len());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(&req, srs.sip).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65535];
    while got.len() < 2 {
        let (n, _) = sock.recv_from(&mut buf).expect("responses");
        got.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(got[0].starts_with("SIP/2.0 100 Trying"), "{}", got[0]);
    assert!(got[1].starts_with("SIP/2.0 200 OK"), "{}", got[1]);
    let answer = got[1].split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        answer.matches("m=audio").count(),
        4,
        "4 m-lines answered:\n{answer}"
    );
    assert_eq!(answer.matches("a=recvonly").count(), 2);
    assert_eq!(answer.matches("a=inactive").count(), 2);
}

#[test]
fn tcp_framing_split_and_coalesced_messages() {
    let srs = Server::start();
    let mut tcp = TcpStream::connect(srs.sip).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let req = srs::testkit::corpus_request(&corpus("sipp-generated-invite.sip"), "tcp-split");
    let req = String::from_utf8(req)
        .unwrap()
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    // One INVITE over three writes, pauses between them.
    for chunk in [&req[..40], &req[40..700], &req[700..]] {
        tcp.write_all(chunk.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !text.contains("SIP/2.0 200") && Instant::now() < deadline {
        let mut buf = [0u8; 8192];
        if let Ok(n) = tcp.read(&mut buf) {
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert_eq!(status_lines(&text)[..2], ["100 Trying", "200 OK"], "{text}");
    assert!(text.contains(";transport=tcp>;+sip.srs"), "{text}");
    let to = text
        .lines()
        .find(|l| l.starts_with("To:") && l.contains("tag="))
        .unwrap()
        .trim_start_matches("To:")
        .trim()
        .to_string();
    // ACK, OPTIONS and BYE in a single write.
    let base = |method: &str, cseq: u32, branch: &str, to: &str| {
        format!(
            "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5070;branch={branch}\r\nFrom: <sip:src@127.0.0.1:5070>;tag=20223SIPpTag001\r\nTo: {to}\r\nCall-ID: tcp-split\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let burst = format!(
        "{}{}\r\n{}",
        base("ACK", 1, "z9hG4bK-a1", &to),
        base("OPTIONS", 2, "z9hG4bK-o1", &to),
        base("BYE", 3, "z9hG4bK-b1", &to)
    );
    let burst = burst.replace(
        "Call-ID: tcp-split",
        &format!("Call-ID: {}", call_id_of(&req)),
    );
    tcp.write_all(burst.as_bytes()).unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_lines(&text).len() < 2 && Instant::now() < deadline {
        let mut buf = [0u8; 8192];
        if let Ok(n) = tcp.read(&mut buf) {
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert_eq!(
        status_lines(&text),
        ["200 OK", "200 OK"],
        "OPTIONS and BYE answered: {text}"
    );
    assert!(
        text.contains("CSeq: 2 OPTIONS") && text.contains("CSeq: 3 BYE"),
        "{text}"
    );
    let list = srs.wait_recordings(1, Duration::from_secs(10));
    assert_eq!(list[0]["transport"], "tcp");
}

fn call_id_of(req: &str) -> String {
    req.lines()
        .find(|l| l.starts_with("Call-ID:"))
        .unwrap()
        .trim_start_matches("Call-ID:")
        .trim()
        .to_string()
}

/// CANCEL while the answer is delayed: 200 to the CANCEL, 487 to the
/// INVITE, and nothing left behind (no recording, no files, no session).
#[test]
fn cancel_before_the_answer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    std::fs::write(&cfg, "[sip]\nanswer_delay_ms = 3000\nringing = true\n").unwrap();
    let srs = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = srs::testkit::corpus_request(&corpus("sipp-generated-invite.sip"), "x");
    let inv = srs::sip::message::parse(&req).unwrap();
    sock.send_to(&req, srs.sip).unwrap();
    let mut buf = [0u8; 65535];
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        seen.extend(status_lines(&String::from_utf8_lossy(&buf[..n])));
    }
    assert_eq!(seen, ["100 Trying", "180 Ringing"]);
    let cancel = for_pending("CANCEL", &inv, "");
    sock.send_to(cancel.as_bytes(), srs.sip).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        got.extend(status_lines(&String::from_utf8_lossy(&buf[..n])));
    }
    assert_eq!(got, ["200 OK", "487 Request Terminated"]);
    // Past the 3 s answer delay, no 200 OK ever comes: only 487
    // retransmissions (Timer G, no ACK sent here).
    let until = Instant::now() + Duration::from_millis(3800);
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while Instant::now() < until {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            assert!(
                text.starts_with("SIP/2.0 487"),
                "only 487 retransmissions: {text}"
            );
        }
    }
    let health = http_get(srs.http, "/healthz").unwrap();
    assert!(health.contains("\"active_sessions\":0"), "{health}");
    assert!(
        srs.list_json().is_empty(),
        "no recording for a cancelled session"
    );
    let incoming: Vec<_> = std::fs::read_dir(srs.recordings.join(".incoming"))
        .unwrap()
        .collect();
    assert!(incoming.is_empty(), "no files left behind: {incoming:?}");
}

/// A CANCEL right behind its INVITE, while the session's files and media
/// sockets are still being made (off the SIP task): 487, and what was made
/// is removed and released (no recording, no files, the ports serve the
/// next call).
#[test]
fn cancel_during_start_up_releases_what_was_made() {
    let rtp = port_block(4);
    // Two pairs: exactly one two-stream call.
    let srs = Server::start_with(&["--rtp-ports", &format!("{rtp}-{}", rtp + 3)]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Each INVITE and its CANCEL go in one burst, so that the server
    // usually reads both at one wake-up; on a busy machine it may not, so
    // this tries up to 30 times until a CANCEL has come during a start-up
    // (every attempt must leave nothing behind either way).
    for n in 0..30 {
        if n >= 5 && srs.log().contains("ended while starting (cancelled)") {
            break;
        }
        let id = format!("early-cancel-{n}");
        let req = corpus_call(&id);
        let inv = srs::sip::message::parse(&req).unwrap();
        // One burst: the server reads both at one wake-up.
        sock.send_to(&req, srs.sip).unwrap();
        sock.send_to(for_pending("CANCEL", &inv, "").as_bytes(), srs.sip)
            .unwrap();
        let mut buf = [0u8; 65535];
        let mut finals = Vec::new();
        while finals.len() < 2 {
            let (n, _) = sock.recv_from(&mut buf).unwrap();
            finals.extend(
                status_lines(&String::from_utf8_lossy(&buf[..n]))
                    .into_iter()
                    .filter(|l| !l.starts_with('1')),
            );
        }
        finals.sort();
        // The previous attempt's start-up, cancelled, may still be giving
        // its two port pairs back (they are the only ones): then this
        // INVITE is refused before the CANCEL comes, which finds nothing.
        // Not what this test is after: ACK the 503 and go on.
        if finals
            == [
                "481 Call/Transaction Does Not Exist",
                "503 No Media Port Available",
            ]
        {
            sock.send_to(for_pending("ACK", &inv, ";tag=x").as_bytes(), srs.sip)
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        assert_eq!(finals, ["200 OK", "487 Request Terminated"], "{id}");
        // ACK the 487 (it is retransmitted otherwise).
        sock.send_to(for_pending("ACK", &inv, ";tag=x").as_bytes(), srs.sip)
            .unwrap();
    }
    // Every port pair comes back: a two-stream call is answered.
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    call_once_ports_are_free(&srs, &sock, "after-cancels");
    // (Logged when the start-up came back, after the 487.)
    assert!(
        srs.log().contains("ended while starting (cancelled)"),
        "a CANCEL came while a start-up was under way"
    );
    assert!(
        srs.list_json().is_empty(),
        "no recording for cancelled sessions"
    );
    let incoming: Vec<String> = std::fs::read_dir(srs.recordings.join(".incoming"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(incoming.len(), 1, "only the last call: {incoming:?}");
    let health = http_get(srs.http, "/healthz").unwrap();
    assert!(health.contains("\"active_sessions\":1"), "{health}");
}

/// A re-INVITE that adds a stream, and the BYE right behind it while the
/// added stream's file and sockets are being made: the session is
/// published once they are, with both streams, and every port comes back.
#[test]
fn a_bye_while_a_re_offer_adds_a_stream_publishes_both_streams() {
    let rtp = port_block(4);
    let srs = Server::start_with(&["--rtp-ports", &format!("{rtp}-{}", rtp + 3)]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = one_stream_sdp(me.ip(), "RTP/AVP", "");
    let ok = final_response(
        &sock,
        srs.sip,
        invite_request("UDP", me, "grow-1", &sdp).as_bytes(),
    );
    assert_eq!(status(&ok), 200);
    let to = ok.header("To").unwrap().to_string();
    let ack = in_dialog_request("ACK", "UDP", me, "grow-1", &to, 1);
    sock.send_to(ack.as_bytes(), srs.sip).unwrap();
    let two = format!(
        "{sdp}m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:2\r\na=sendonly\r\n"
    )
    .replace("o=- 1 1", "o=- 1 2");
    let reinvite = format!(
        "INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKgrow2\r\n\
From: <sip:src@{}>;tag=src1\r\nTo: {to}\r\nCall-ID: grow-1\r\nCSeq: 2 INVITE\r\n\
Contact: <sip:src@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{two}",
        me.ip(),
        two.len()
    );
    let bye = in_dialog_request("BYE", "UDP", me, "grow-1", &to, 3);
    // One burst: the BYE is read while the added stream is being started.
    sock.send_to(reinvite.as_bytes(), srs.sip).unwrap();
    sock.send_to(bye.as_bytes(), srs.sip).unwrap();
    let list = srs.wait_recordings(1, Duration::from_secs(10));
    let streams: Vec<&str> = list[0]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(streams, ["1", "2"], "{}", list[0]);
    assert!(
        srs.log().contains("ended while a re-offer's streams start"),
        "the BYE came while the stream was being started"
    );
    // Both pairs are free again: a two-stream call is answered.
    call_once_ports_are_free(&srs, &sock, "grow-after");
}

/// Two RTP/RTCP pairs: a two-stream call takes both, the next INVITE gets
/// `503 No Media Port Available` and leaves nothing behind, and once the
/// first call is published its ports serve a new call.
#[test]
fn no_free_rtp_port_is_503_and_ended_calls_give_their_ports_back() {
    let rtp = port_block(4);
    let srs = Server::start_with(&["--rtp-ports", &format!("{rtp}-{}", rtp + 3)]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let first = corpus_call("ports-1");
    let ok = final_response(&sock, srs.sip, &first);
    assert_eq!(status(&ok), 200);
    let full = final_response(&sock, srs.sip, &corpus_call("ports-2"));
    assert!(
        matches!(&full.start, srs::sip::message::StartLine::Response { code: 503, reason }
            if reason == "No Media Port Available"),
        "{:?}",
        full.start
    );
    assert!(
        full.header("Retry-After").is_some(),
        "a 503 tells the client when to retry"
    );
    let health = http_get(srs.http, "/healthz").unwrap();
    assert!(health.contains("\"active_sessions\":1"), "{health}");
    let inv = srs::sip::message::parse(&first).unwrap();
    let bye = bye_for(&sock, &inv, &ok, 2);
    assert_eq!(status(&final_response(&sock, srs.sip, bye.as_bytes())), 200);
    let list = srs.wait_recordings(1, Duration::from_secs(10));
    assert_eq!(list[0]["call_id"], "ports-1", "only the answered call");
    let again = final_response(&sock, srs.sip, &corpus_call("ports-3"));
    assert_eq!(status(&again), 200, "the first call's ports are free again");
    let incoming: Vec<_> = std::fs::read_dir(srs.recordings.join(".incoming"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(incoming.len(), 1, "only the live call: {incoming:?}");
}

/// A SIP client over UDP or TCP that returns each final response.
enum Wire {
    Udp(UdpSocket, std::net::SocketAddr),
    Tcp(TcpStream, String),
}

impl Wire {
    fn open(tcp: bool, srs: &Server) -> Wire {
        if tcp {
            let s = TcpStream::connect(srs.sip).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Wire::Tcp(s, String::new())
        } else {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Wire::Udp(s, srs.sip)
        }
    }

    fn via(&self) -> &'static str {
        match self {
            Wire::Udp(..) => "SIP/2.0/UDP",
            Wire::Tcp(..) => "SIP/2.0/TCP",
        }
    }

    /// Sends `req` and returns its final response (1xx skipped).
    fn final_response(&mut self, req: &str) -> srs::sip::message::Message {
        let req = req.replace("SIP/2.0/UDP", self.via());
        match self {
            Wire::Udp(s, to) => final_response(s, *to, req.as_bytes()),
            Wire::Tcp(s, pending) => {
                s.write_all(req.as_bytes()).unwrap();
                loop {
                    let mut framer = srs::sip::message::StreamFramer::new();
                    framer.push(pending.as_bytes());
                    if let Some(m) = framer.next_message().unwrap() {
                        let used = m.len();
                        pending.drain(..used.min(pending.len()));
                        let m = srs::sip::message::parse(&m).unwrap();
                        if status(&m) >= 200 {
                            return m;
                        }
                        continue;
                    }
                    let mut buf = [0u8; 8192];
                    let n = s.read(&mut buf).expect("a response");
                    assert!(n > 0, "connection closed");
                    pending.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    }
}

/// RFC 3261 §12.2.2 on the wire, over UDP and TCP: a BYE or UPDATE with
/// the Call-ID and From tag of a live recording but no To tag, sent from
/// another address, gets 481 and neither ends nor pauses the recording.
#[test]
fn in_dialog_requests_without_a_to_tag_get_481_over_udp_and_tcp() {
    let srs = Server::start();
    for (n, tcp) in [(1, false), (2, true)] {
        let id = format!("forged-{n}");
        let invite = String::from_utf8(corpus_call(&id)).unwrap();
        let mut client = Wire::open(tcp, &srs);
        let ok = client.final_response(&invite);
        assert_eq!(status(&ok), 200);
        let inv = srs::sip::message::parse(invite.as_bytes()).unwrap();
        let from = inv.header("From").unwrap();
        let to_without_tag = inv.header("To").unwrap();
        assert!(!to_without_tag.contains("tag="));
        // The attacker: another socket, knows Call-ID and From tag only.
        let mut attacker = Wire::open(tcp, &srs);
        let forged = |method: &str, cseq: u32, body: &str| {
            let ct = if body.is_empty() {
                ""
            } else {
                "Content-Type: application/sdp\r\n"
            };
            format!(
                "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6666;branch=z9hG4bK-f{method}{n}\r\nFrom: {from}\r\nTo: {to_without_tag}\r\nCall-ID: {id}\r\nCSeq: {cseq} {method}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let inactive = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=inactive\r\nm=audio 6002 RTP/AVP 0\r\na=inactive\r\n";
        let r = attacker.final_response(&forged("UPDATE", 10, inactive));
        assert_eq!(status(&r), 481, "UPDATE without To tag ({})", client.via());
        let r = attacker.final_response(&forged("BYE", 11, ""));
        assert_eq!(status(&r), 481, "BYE without To tag ({})", client.via());
        let health = http_get(srs.http, "/healthz").unwrap();
        assert!(
            health.contains("\"active_sessions\":1"),
            "still recording: {health}"
        );
        // The real client ends it.
        let bye = format!(
            "BYE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-bye{n}\r\nFrom: {from}\r\nTo: {}\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            ok.header("To").unwrap()
        );
        assert_eq!(status(&client.final_response(&bye)), 200);
        let list = srs.wait_recordings(n, Duration::from_secs(10));
        let rec = list.iter().find(|r| r["call_id"] == id.as_str()).unwrap();
        assert_eq!(rec["status"], "complete");
    }
}

/// Requests refused by the parser are answered on the wire, not dropped:
/// another SIP version gets 505, a request line with a trailing token or
/// more than 256 header lines gets 400.
#[test]
fn malformed_requests_are_answered_505_and_400() {
    let srs = Server::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = |line: &str, extra: &str, n: u32| {
        format!(
            "{line}\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-mal{n}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:srs@h>\r\nCall-ID: mal-{n}\r\nCSeq: 1 OPTIONS{extra}\r\nContent-Length: 0\r\n\r\n",
            sock.local_addr().unwrap()
        )
    };
    let reason = |m: &srs::sip::message::Message| match &m.start {
        srs::sip::message::StartLine::Response { code, reason } => format!("{code} {reason}"),
        _ => String::new(),
    };
    let r = final_response(
        &sock,
        srs.sip,
        req("OPTIONS sip:srs@h SIP/3.0", "", 1).as_bytes(),
    );
    assert_eq!(reason(&r), "505 Version Not Supported");
    let r = final_response(
        &sock,
        srs.sip,
        req("OPTIONS sip:srs@h SIP/2.0 trailing", "", 2).as_bytes(),
    );
    assert_eq!(reason(&r), "400 Bad Request");
    let many = "\r\nX-Filler: 1".repeat(300);
    let r = final_response(
        &sock,
        srs.sip,
        req("OPTIONS sip:srs@h SIP/2.0", &many, 3).as_bytes(),
    );
    assert_eq!(reason(&r), "400 Too Many Headers");
    assert_eq!(r.call_id(), Some("mal-3"));
}

/// Remote strings never reach the log raw: a Call-ID with CR and NUL in it
/// (a log-forging attempt) and a Content-Type with DEL are logged escaped,
/// and the log file holds no control character but the newline ending
/// each line (and the colour codes of the formatter).
#[test]
fn remote_control_characters_are_escaped_in_the_log() {
    let srs = Server::start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let evil = "evil\r2026-01-01T00:00:00Z ERROR forged line\u{0}\u{8}";
    let req = String::from_utf8(srs::testkit::corpus_request(
        &corpus("sipp-generated-invite.sip"),
        "x",
    ))
    .unwrap()
    .replace("Call-ID: 1-20223@127.0.0.1", &format!("Call-ID: {evil}"))
    .replace(
        "Content-Type: multipart/mixed",
        "Content-Type: multipart/mixed\u{7f}",
    );
    assert!(req.contains(evil));
    let r = final_response(&sock, srs.sip, req.as_bytes());
    assert!(status(&r) >= 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !srs.log().contains("evil\\r2026") {
        assert!(
            Instant::now() < deadline,
            "Call-ID not logged:\n{}",
            srs.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read(srs.recordings.parent().unwrap().join("srs.log")).unwrap_or_default();
    let log = if log.is_empty() {
        srs.log().into_bytes()
    } else {
        log
    };
    let raw: Vec<u8> = log
        .iter()
        .copied()
        .filter(|b| (*b < 0x20 && *b != b'\n' && *b != 0x1b) || *b == 0x7f)
        .collect();
    assert!(raw.is_empty(), "raw control bytes in the log: {raw:?}");
    // The Content-Type is quoted raw by the error it caused (415).
    let text = srs.log();
    assert!(text.contains("multipart/mixed\\x7f"), "{text}");
}

/// Over TCP, a request whose Content-Length puts it over the 64 KiB cap is
/// answered `513 Message Too Large` before the connection is closed.
#[test]
fn oversized_tcp_request_gets_513_then_the_connection_closes() {
    let srs = Server::start();
    let mut tcp = TcpStream::connect(srs.sip).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = "INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bK-big\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:srs@h>\r\nCall-ID: too-big\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 100000\r\n\r\n";
    tcp.write_all(head.as_bytes()).unwrap();
    let mut text = String::new();
    // Read to the end: the server closes after its answer.
    let _ = tcp.read_to_string(&mut text);
    assert!(
        text.starts_with("SIP/2.0 513 Message Too Large\r\n"),
        "{text}"
    );
    assert!(text.contains("Call-ID: too-big"), "{text}");
}
