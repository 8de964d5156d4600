//! An SRTP call (SDES, RFC 4568 / RFC 3711) through `srs serve`: the
//! offer's `RTP/SAVP` line is answered `RTP/SAVP` with our own key, the
//! client's protected PCMU (made here with the independent webrtc-srtp
//! implementation) decodes to its tone, a tampered packet is dropped and
//! counted, an unsupported suite gets 488, and the key never reaches the
//! logs or metadata.json.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const KEY_B64: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

fn invite(
    srs: std::net::SocketAddr,
    call_id: &str,
    crypto: &str,
) -> (UdpSocket, srs::sip::message::Message, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = one_stream_sdp(me.ip(), "RTP/SAVP", &format!("a=crypto:{crypto}\r\n"));
    let inv = invite_request("UDP", me, call_id, &sdp);
    let r = final_response(&sock, srs, inv.as_bytes());
    (sock, r, me.to_string())
}

#[test]
fn srtp_call_is_recorded_and_keys_stay_secret() {
    let srs = Server::start();
    let (sock, ok, me) = invite(
        srs.sip,
        "srtp-1",
        &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}"),
    );
    assert_eq!(status(&ok), 200);
    let body = String::from_utf8_lossy(&ok.body).to_string();
    assert!(body.contains("RTP/SAVP 0"), "{body}");
    let our = body
        .lines()
        .find(|l| l.starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"))
        .expect("our crypto line");
    assert!(!our.contains(KEY_B64), "our own key, not the client's");
    let port = srs::siprec::sdp::parse_offer(&ok.body).unwrap().media[0].port;
    let ack = in_dialog_request(
        "ACK",
        "UDP",
        me.parse().unwrap(),
        "srtp-1",
        ok.header("To").unwrap(),
        1,
    );
    sock.send_to(ack.as_bytes(), srs.sip).unwrap();
    // The client's side: an independent SRTP implementation protects.
    use base64::Engine;
    let km = base64::engine::general_purpose::STANDARD
        .decode(KEY_B64)
        .unwrap();
    let mut ctx = webrtc_srtp::context::Context::new(
        &km[..16],
        &km[16..30],
        webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = Instant::now();
    for i in 0..50u64 {
        if let Some(d) = (t0 + Duration::from_millis(20 * i)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(d);
        }
        let pcm: Vec<u8> = (0..160)
            .map(|k| {
                let t = (i * 160 + k) as f64 / 8000.0;
                srs::testkit::ulaw_encode(
                    (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16,
                )
            })
            .collect();
        let plain = srs::media::rtp::build(0, i as u16, (i * 160) as u32, 0xabc, &pcm);
        let mut protected = ctx.encrypt_rtp(&plain).unwrap().to_vec();
        if i == 25 {
            let n = protected.len();
            protected[n - 1] ^= 1; // a tampered tag: must be dropped, not played
        }
        rtp.send_to(&protected, ("127.0.0.1", port)).unwrap();
    }
    let bye = in_dialog_request(
        "BYE",
        "UDP",
        me.parse().unwrap(),
        "srtp-1",
        ok.header("To").unwrap(),
        2,
    );
    sock.send_to(bye.as_bytes(), srs.sip).unwrap();
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    let s = &rec["streams"][0];
    assert_eq!(s["srtp"], true);
    assert_eq!(s["packets_received"], 50);
    assert_eq!(s["packets_unauthenticated"], 1);
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    let (samples, rate) = read_wav(&dir.join(rec["files"][0]["name"].as_str().unwrap()));
    let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
    assert!(
        w.iter().filter(|t| **t == Some(1000.0)).count() >= 7,
        "decrypted to the tone: {w:?}"
    );
    // The key is nowhere: metadata.json, the log.
    let meta = std::fs::read_to_string(dir.join("metadata.json")).unwrap();
    assert!(!meta.contains(KEY_B64) && !meta.contains("inline:"));
    assert!(!srs.log().contains(KEY_B64), "key in the log");
}

fn reason(m: &srs::sip::message::Message) -> String {
    match &m.start {
        srs::sip::message::StartLine::Response { reason, .. } => reason.clone(),
        _ => String::new(),
    }
}

#[test]
fn an_unsupported_crypto_suite_gets_488_never_plain_rtp() {
    let srs = Server::start();
    // The reason phrase names what is not supported.
    for (n, crypto, why) in [
        (
            2,
            format!("1 F8_128_HMAC_SHA1_80 inline:{KEY_B64}"),
            "SRTP Crypto Suite Not Supported",
        ),
        (
            3,
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64} UNENCRYPTED_SRTP"),
            "SRTP Session Parameter Not Supported",
        ),
        (
            4,
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}|1:4;inline:{KEY_B64}|2:4"),
            "Several SRTP Master Keys Not Supported",
        ),
        (
            5,
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}|2^x"),
            "No Usable SRTP Crypto Attribute",
        ),
    ] {
        let (_sock, resp, _) = invite(srs.sip, &format!("srtp-{n}"), &crypto);
        assert_eq!((status(&resp), reason(&resp).as_str()), (488, why));
    }
    assert!(!srs.log().contains(KEY_B64), "key in the log");
}

/// RFC 4568's example line: lifetime, and an MKI of 1 on 4 bytes that
/// every packet carries before its tag; SRTCP declared unencrypted.
#[test]
fn mki_and_unencrypted_srtcp_are_recorded() {
    let srs = Server::start();
    let (sock, ok, me) = invite(
        srs.sip,
        "srtp-mki",
        &format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}|2^20|1:4 UNENCRYPTED_SRTCP"),
    );
    assert_eq!(status(&ok), 200, "{}", reason(&ok));
    let body = String::from_utf8_lossy(&ok.body).to_string();
    let our = body
        .lines()
        .find(|l| l.starts_with("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"))
        .expect("our crypto line");
    assert!(
        our.ends_with(" UNENCRYPTED_SRTCP"),
        "declared, so echoed: {our}"
    );
    let port = srs::siprec::sdp::parse_offer(&ok.body).unwrap().media[0].port;
    let to = ok.header("To").unwrap().to_string();
    let ack = in_dialog_request("ACK", "UDP", me.parse().unwrap(), "srtp-mki", &to, 1);
    sock.send_to(ack.as_bytes(), srs.sip).unwrap();
    use base64::Engine;
    let km = base64::engine::general_purpose::STANDARD
        .decode(KEY_B64)
        .unwrap();
    let mut ctx = webrtc_srtp::context::Context::new(
        &km[..16],
        &km[16..30],
        webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
    )
    .unwrap();
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = Instant::now();
    for i in 0..50u64 {
        if let Some(d) = (t0 + Duration::from_millis(20 * i)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(d);
        }
        let pcm: Vec<u8> = (0..160)
            .map(|k| {
                let t = (i * 160 + k) as f64 / 8000.0;
                srs::testkit::ulaw_encode(
                    (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16,
                )
            })
            .collect();
        let plain = srs::media::rtp::build(0, i as u16, (i * 160) as u32, 0xabc, &pcm);
        let p = ctx.encrypt_rtp(&plain).unwrap();
        // The MKI (1, on 4 bytes) goes between the payload and the tag.
        let at = p.len() - 10;
        let with_mki = [&p[..at], &[0, 0, 0, 1][..], &p[at..]].concat();
        rtp.send_to(&with_mki, ("127.0.0.1", port)).unwrap();
    }
    let bye = in_dialog_request("BYE", "UDP", me.parse().unwrap(), "srtp-mki", &to, 2);
    sock.send_to(bye.as_bytes(), srs.sip).unwrap();
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    let s = &rec["streams"][0];
    assert_eq!(s["packets_received"], 50);
    assert_eq!(s["packets_unauthenticated"], 0, "{s}");
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    let (samples, rate) = read_wav(&dir.join(rec["files"][0]["name"].as_str().unwrap()));
    let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
    assert!(
        w.iter().filter(|t| **t == Some(1000.0)).count() >= 7,
        "decrypted to the tone: {w:?}"
    );
}
