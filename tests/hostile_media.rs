//! Media that tries to take a stream over, or that is merely strange,
//! through `srs serve`: packets sprayed at a stream's port from another
//! host before the real media starts, a forged SRTP packet first, an SSRC
//! that changes on every packet, the first two packets swapped, a 60 KB
//! datagram, and a client that never ACKs our 200 OK.
//!
//! 127.0.0.2 is loopback too on Linux: the "other host" here.

mod common;

use common::*;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const KEY_B64: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

/// A recording client on 127.0.0.1 (signalling and, per its SDP, media).
struct Call {
    sock: UdpSocket,
    srs: SocketAddr,
    call_id: String,
    to: String,
    port: u16,
    answer: String,
}

impl Call {
    fn request(&self, method: &str, cseq: u32) -> String {
        format!(
            "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{method}{cseq}\r\nFrom: <sip:src@127.0.0.1>;tag=src1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.sock.local_addr().unwrap(),
            self.to,
            self.call_id
        )
    }

    fn ack(&self) {
        self.sock
            .send_to(self.request("ACK", 1).as_bytes(), self.srs)
            .unwrap();
    }

    fn bye(&self) {
        self.sock
            .send_to(self.request("BYE", 2).as_bytes(), self.srs)
            .unwrap();
    }
}

/// INVITE with one sendonly audio line (`proto`, PCMU, `extra` lines);
/// the 200 OK's port.
fn invite(srs: SocketAddr, call_id: &str, proto: &str, extra: &str) -> Call {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = one_stream_sdp(me.ip(), proto, extra);
    let inv = invite_request("UDP", me, call_id, &sdp);
    let ok = final_response(&sock, srs, inv.as_bytes());
    assert_eq!(status(&ok), 200);
    let answer = String::from_utf8_lossy(&ok.body).to_string();
    Call {
        port: srs::siprec::sdp::parse_offer(&ok.body).unwrap().media[0].port,
        to: ok.header("To").unwrap().into(),
        srs,
        call_id: call_id.into(),
        answer,
        sock,
    }
}

/// Sends `n` packets made by `make(i)` from `sock` to `port`, paced at 20 ms.
fn paced(sock: &UdpSocket, port: u16, n: u64, make: impl FnMut(u64) -> Vec<u8>) {
    paced_every(Duration::from_millis(20), sock, port, n, make)
}

fn paced_every(
    every: Duration,
    sock: &UdpSocket,
    port: u16,
    n: u64,
    mut make: impl FnMut(u64) -> Vec<u8>,
) {
    let t0 = Instant::now();
    for i in 0..n {
        if let Some(d) = (t0 + every * i as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        sock.send_to(&make(i), ("127.0.0.1", port)).unwrap();
    }
}

/// The recording's first stream, and its file's tone windows.
fn recorded(srs: &Server) -> (serde_json::Value, Vec<Option<f64>>) {
    let rec = srs.wait_recordings(1, Duration::from_secs(60))[0].clone();
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    let (x, rate) = read_wav(&dir.join(rec["files"][0]["name"].as_str().unwrap()));
    (rec, tone_windows(&x, rate, &[1000.0, 400.0]))
}

fn count(w: &[Option<f64>], f: f64) -> usize {
    w.iter().filter(|t| **t == Some(f)).count()
}

#[test]
fn packets_from_another_host_before_the_real_media_do_not_take_the_stream() {
    let srs = Server::start();
    let call = invite(srs.sip, "hijack-1", "RTP/AVP", "");
    call.ack();
    // Someone else sprays the stream's port first: valid PCMU, a 400 Hz tone.
    let other = UdpSocket::bind("127.0.0.2:0").unwrap();
    paced(&other, call.port, 10, |i| {
        srs::media::rtp::build(
            0,
            i as u16,
            (i * 160) as u32,
            0x666,
            &pcmu_tone(400.0, i * 160),
        )
    });
    // Then the real sender (127.0.0.1, the SDP's c=): 1000 Hz for 1.5 s,
    // with ten more foreign packets in the middle.
    let real = UdpSocket::bind("127.0.0.1:0").unwrap();
    paced(&real, call.port, 75, |i| {
        if (30..40).contains(&i) {
            let p = srs::media::rtp::build(0, 100 + i as u16, 0, 0x666, &pcmu_tone(400.0, 0));
            other.send_to(&p, ("127.0.0.1", call.port)).unwrap();
        }
        srs::media::rtp::build(
            0,
            i as u16,
            (i * 160) as u32,
            0xabc,
            &pcmu_tone(1000.0, i * 160),
        )
    });
    call.bye();
    let (rec, w) = recorded(&srs);
    let s = &rec["streams"][0];
    assert_eq!(rec["status"], "complete");
    assert!(count(&w, 1000.0) >= 12, "the real sender's tone: {w:?}");
    assert_eq!(count(&w, 400.0), 0, "nothing of the other host: {w:?}");
    assert_eq!(s["packets_foreign"], 20, "{s}");
    assert_eq!(s["packets_received"], 75, "{s}");
}

#[test]
fn a_forged_srtp_packet_first_does_not_silence_the_recording() {
    let srs = Server::start();
    let call = invite(
        srs.sip,
        "hijack-srtp",
        "RTP/SAVP",
        &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}\r\n"),
    );
    assert!(call.answer.contains("RTP/SAVP"), "{}", call.answer);
    call.ack();
    use base64::Engine;
    let km = base64::engine::general_purpose::STANDARD
        .decode(KEY_B64)
        .unwrap();
    let context = |key: &[u8]| {
        webrtc_srtp::context::Context::new(
            key,
            &km[16..30],
            webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
            None,
            None,
        )
        .unwrap()
    };
    // One packet under a wrong key, from another port of the client's host.
    let forger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut wrong = context(b"not the real key");
    let plain = srs::media::rtp::build(0, 0, 0, 0xabc, &pcmu_tone(400.0, 0));
    forger
        .send_to(
            &wrong.encrypt_rtp(&plain).unwrap(),
            ("127.0.0.1", call.port),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let mut ctx = context(&km[..16]);
    let real = UdpSocket::bind("127.0.0.1:0").unwrap();
    paced(&real, call.port, 50, |i| {
        let p = srs::media::rtp::build(
            0,
            i as u16,
            (i * 160) as u32,
            0xabc,
            &pcmu_tone(1000.0, i * 160),
        );
        ctx.encrypt_rtp(&p).unwrap().to_vec()
    });
    call.bye();
    let (rec, w) = recorded(&srs);
    let s = &rec["streams"][0];
    assert_eq!(s["packets_unauthenticated"], 1, "{s}");
    assert_eq!(s["packets_received"], 51, "{s}");
    assert_eq!(s["packets_foreign"], 0, "{s}");
    assert!(count(&w, 1000.0) >= 7, "the real audio, decrypted: {w:?}");
}

/// How many times the audio `sent` (packets of 160 samples) is interrupted
/// in `x`: from its first packet on, each packet should follow the one
/// before; one found further on (within 100 ms) is a gap.
fn gaps(x: &[i16], sent: &[i16]) -> usize {
    let n = 160;
    let find = |from: usize, to: usize, p: &[i16]| {
        (from..to.min(x.len().saturating_sub(n - 1))).find(|i| x[*i..*i + n] == *p)
    };
    let mut pos = find(0, x.len(), &sent[..n]).expect("the first packet");
    let mut gaps = 0;
    for p in sent.chunks(n) {
        if x.get(pos..pos + n) != Some(p) {
            pos = find(pos, pos + 800, p).expect("every packet, in order");
            gaps += 1;
        }
        pos += n;
    }
    gaps
}

#[test]
fn an_ssrc_that_changes_on_every_packet_keeps_the_tone() {
    let srs = Server::start();
    let call = invite(srs.sip, "ssrc-churn", "RTP/AVP", "");
    call.ack();
    // A new SSRC (and its own timestamps) on every packet, each placed by
    // its arrival, from a sender whose clock runs 0.5% slow (20.1 ms).
    let real = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = Vec::new();
    paced_every(Duration::from_micros(20_100), &real, call.port, 150, |i| {
        let payload = pcmu_tone(1000.0, i * 160);
        let mut pcm = Vec::new();
        srs::media::g711::Law::Ulaw.decode_into(&payload, &mut pcm);
        sent.extend(pcm);
        srs::media::rtp::build(
            0,
            (i * 7919) as u16,
            (i * 104_729) as u32,
            1000 + i as u32,
            &payload,
        )
    });
    call.bye();
    let (rec, w) = recorded(&srs);
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    let (x, _) = read_wav(&dir.join(rec["files"][0]["name"].as_str().unwrap()));
    // Contiguous as sent (a stall of the test or of srs over 40 ms may
    // leave one or two gaps).
    let gaps = gaps(&x, &sent);
    assert!(gaps <= 2, "{gaps} gaps in 150 packets");
    let tone = count(&w, 1000.0);
    assert!(tone >= 28, "{tone} windows of the tone: {w:?}");
    assert_eq!(rec["streams"][0]["packets_late"], 0);
}

#[test]
fn swapped_first_packets_and_a_60_kb_datagram_lose_nothing() {
    let srs = Server::start();
    let call = invite(srs.sip, "odd-media", "RTP/AVP", "");
    call.ack();
    let real = UdpSocket::bind("127.0.0.1:0").unwrap();
    let packet = |i: u64| {
        srs::media::rtp::build(
            0,
            i as u16,
            (i * 160) as u32,
            0xabc,
            &pcmu_tone(1000.0, i * 160),
        )
    };
    // The first two swapped, 2 ms apart (as seen from rtpengine).
    real.send_to(&packet(1), ("127.0.0.1", call.port)).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    real.send_to(&packet(0), ("127.0.0.1", call.port)).unwrap();
    paced(&real, call.port, 60, |i| {
        if i == 20 {
            // A 60 KB datagram in its place in the sequence.
            srs::media::rtp::build(0, 22, 22 * 160, 0xabc, &vec![0x55; 60_000])
        } else {
            packet(i + 2)
        }
    });
    call.bye();
    let (rec, w) = recorded(&srs);
    let s = &rec["streams"][0];
    assert_eq!(s["packets_late"], 0, "{s}");
    assert_eq!(s["packets_duplicated"], 0, "{s}");
    assert!(count(&w, 1000.0) >= 10, "{w:?}");
}

#[test]
fn a_session_never_acked_is_published_as_long_as_its_media() {
    let srs = Server::start();
    let call = invite(srs.sip, "no-ack", "RTP/AVP", "");
    // No ACK. Two seconds of media, then nothing until srs gives up (32 s).
    let real = UdpSocket::bind("127.0.0.1:0").unwrap();
    paced(&real, call.port, 100, |i| {
        srs::media::rtp::build(
            0,
            i as u16,
            (i * 160) as u32,
            0xabc,
            &pcmu_tone(1000.0, i * 160),
        )
    });
    let (rec, w) = recorded(&srs);
    assert_eq!(rec["status"], "complete-no-ack");
    let ms = rec["duration_ms"].as_u64().unwrap();
    assert!(
        (1900..=2600).contains(&ms),
        "duration {ms} ms, not 32 s: {rec:#}"
    );
    let file_ms = rec["files"][0]["duration_ms"].as_u64().unwrap();
    assert!(file_ms.abs_diff(ms) <= 100, "file {file_ms} ms vs {ms} ms");
    assert_eq!(w.len() as u64, file_ms / 100);
    assert!(count(&w, 1000.0) >= 17, "{w:?}");
    let started =
        chrono::DateTime::parse_from_rfc3339(rec["started_at"].as_str().unwrap()).unwrap();
    let ended = chrono::DateTime::parse_from_rfc3339(rec["ended_at"].as_str().unwrap()).unwrap();
    let span = (ended - started).num_milliseconds() as u64;
    assert!(
        span.abs_diff(ms) <= 5,
        "ended_at - started_at = {span} ms, duration {ms} ms"
    );
}
