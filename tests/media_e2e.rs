//! Media end to end through `srs serve`, with a SIPREC client written here:
//! the callee sends Opus and starts first, the caller sends PCMU (with a
//! DTMF digit) 300 ms later. The stereo file's channel map follows the
//! configuration and the metadata, not the arrival order; the Opus stream
//! is passed through into an Ogg file that plays; DTMF lands in
//! metadata.json with its time.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn ulaw(x: i16) -> u8 {
    srs::testkit::ulaw_encode(x)
}

fn sine(freq: f64, rate: u32, n0: u64, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (n0 + i as u64) as f64 / f64::from(rate);
            (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

const METADATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
<datamode>complete</datamode>
<session session_id="s1"><sipSessionID>x</sipSessionID></session>
<participant participant_id="pA"><nameID aor="sip:alice@example.com"><name>Alice</name></nameID></participant>
<participant participant_id="pB"><nameID aor="sip:bob@example.com"><name>Bob</name></nameID></participant>
<stream stream_id="st1" session_id="s1"><label>1</label></stream>
<stream stream_id="st2" session_id="s1"><label>2</label></stream>
<participantstreamassoc participant_id="pA"><send>st1</send><recv>st2</recv></participantstreamassoc>
<participantstreamassoc participant_id="pB"><send>st2</send><recv>st1</recv></participantstreamassoc>
</recording>
"#;

struct Call {
    sock: UdpSocket,
    srs: std::net::SocketAddr,
    call_id: String,
    to: String,
    ports: Vec<u16>,
}

impl Call {
    fn request(&self, method: &str, cseq: u32, branch: &str) -> String {
        format!(
            "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK{branch}\r\nFrom: <sip:src@127.0.0.1>;tag=src1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.sock.local_addr().unwrap(),
            self.to,
            self.call_id
        )
    }
}

fn invite(srs: std::net::SocketAddr, call_id: &str) -> Call {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=label:1\r\na=sendonly\r\n\
m=audio 40002 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\na=label:2\r\na=sendonly\r\n";
    let inv = invite_request("UDP", me, call_id, &siprec_body(sdp, METADATA));
    let ok = final_response(&sock, srs, inv.as_bytes());
    assert_eq!(status(&ok), 200);
    let answer = srs::siprec::sdp::parse_offer(&ok.body).unwrap();
    let call = Call {
        srs,
        call_id: call_id.into(),
        to: ok.header("To").unwrap().into(),
        ports: answer.media.iter().map(|m| m.port).collect(),
        sock,
    };
    call.sock
        .send_to(call.request("ACK", 1, "ack").as_bytes(), srs)
        .unwrap();
    call
}

/// Runs one call and returns its published metadata.json and directory.
fn record(stereo_left: &str) -> (serde_json::Value, std::path::PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    std::fs::write(
        &cfg,
        format!("[output]\nformats = [\"wav\", \"stereo-wav\", \"ogg-opus\"]\nstereo_left = \"{stereo_left}\"\n"),
    )
    .unwrap();
    let srs = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    // The encoder threads run below the media threads' priority (nice 10).
    let tasks = format!("/proc/{}/task", srs.child.id());
    let mut encoders = 0;
    for t in std::fs::read_dir(&tasks).unwrap().flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        if stat.contains("(srs-encoder-") {
            let after = stat.rsplit_once(')').unwrap().1;
            let nice: i32 = after.split_whitespace().nth(16).unwrap().parse().unwrap();
            assert_eq!(nice, 10, "{stat}");
            encoders += 1;
        }
    }
    assert_eq!(encoders, 2, "output.encoders threads");
    let call = invite(srs.sip, &format!("media-{stereo_left}"));
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to1 = ("127.0.0.1", call.ports[0]);
    let to2 = ("127.0.0.1", call.ports[1]);
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let t0 = Instant::now();
    let mut opus_buf = vec![0u8; 1500];
    for i in 0..100u64 {
        // pace at 20 ms
        let due = t0 + Duration::from_millis(20 * i);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        // callee, Opus 400 Hz, from the start
        let pcm = sine(400.0, 48_000, i * 960, 960);
        let n = enc.encode(&pcm, &mut opus_buf).unwrap();
        let p = srs::media::rtp::build(111, i as u16, (i * 960) as u32, 2, &opus_buf[..n]);
        rtp.send_to(&p, to2).unwrap();
        // caller, PCMU 1000 Hz, from 300 ms; DTMF '7' at 1000-1200 ms instead of audio
        if i >= 15 {
            let k = i - 15;
            let ts = (k * 160) as u32;
            if (50..60).contains(&i) {
                let end = i == 59;
                let dur = ((i - 49) * 160) as u16;
                let payload = [
                    7u8,
                    if end { 0x8a } else { 0x0a },
                    (dur >> 8) as u8,
                    dur as u8,
                ];
                let mut p = srs::media::rtp::build(101, k as u16, (35 * 160) as u32, 1, &payload);
                if i == 50 {
                    p[1] |= 0x80;
                }
                rtp.send_to(&p, to1).unwrap();
            } else {
                let pcm = sine(1000.0, 8000, k * 160, 160);
                let payload: Vec<u8> = pcm.iter().map(|s| ulaw(*s)).collect();
                rtp.send_to(&srs::media::rtp::build(0, k as u16, ts, 1, &payload), to1)
                    .unwrap();
            }
        }
    }
    call.sock
        .send_to(call.request("BYE", 2, "bye").as_bytes(), call.srs)
        .unwrap();
    let list = srs.wait_recordings(1, Duration::from_secs(20));
    let rec = list[0].clone();
    let path = srs.recordings.join(rec["path"].as_str().unwrap());
    (rec, path, srs)
}

fn channel(path: &std::path::Path, ch: usize) -> (Vec<i16>, u32) {
    let r = hound::WavReader::open(path).unwrap();
    assert_eq!(r.spec().channels, 2);
    let rate = r.spec().sample_rate;
    let all: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    (all.iter().skip(ch).step_by(2).copied().collect(), rate)
}

fn dominant(x: &[i16], rate: u32) -> Option<f64> {
    let w = tone_windows(x, rate, &[1000.0, 400.0]);
    let hits = |f: f64| w.iter().filter(|t| **t == Some(f)).count();
    let (a, b) = (hits(1000.0), hits(400.0));
    if a > 5 && b == 0 {
        Some(1000.0)
    } else if b > 5 && a == 0 {
        Some(400.0)
    } else {
        None
    }
}

#[test]
fn stereo_map_dtmf_and_opus_pass_through() {
    if !peers_available("media_e2e", &["opusinfo"]) {
        return;
    }
    let (rec, dir, _srs) = record("first");
    // Stereo: Alice (first participant, caller, 1000 Hz) left although Bob's
    // stream arrived 300 ms earlier; Bob (400 Hz) right; 48 kHz (Opus answered).
    let stereo = rec["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["format"] == "stereo-wav")
        .unwrap();
    assert_eq!(stereo["labels"], serde_json::json!(["1", "2"]));
    let (left, rate) = channel(&dir.join("stereo.wav"), 0);
    let (right, _) = channel(&dir.join("stereo.wav"), 1);
    assert_eq!(rate, 48_000);
    assert_eq!(dominant(&left, rate), Some(1000.0), "caller left");
    assert_eq!(dominant(&right, rate), Some(400.0), "callee right");
    // DTMF: one '7' at about 1000 ms for 200 ms (10 packets), never in the audio.
    let dtmf = rec["dtmf"].as_array().unwrap();
    assert_eq!(dtmf.len(), 1, "{dtmf:?}");
    assert_eq!(dtmf[0]["digit"], "7");
    assert_eq!(dtmf[0]["label"], "1");
    let at = dtmf[0]["at_ms"].as_u64().unwrap();
    assert!((960..=1080).contains(&at), "DTMF at {at} ms");
    assert_eq!(dtmf[0]["duration_ms"], 200);
    let s1 = rec["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "1")
        .unwrap();
    assert_eq!(
        s1["packets_lost"], 0,
        "telephone-event packets are not audio loss: {s1}"
    );
    let (alice, arate) = read_wav(&dir.join("alice-1.wav"));
    assert_eq!(arate, 8000);
    let seg = &alice[(at as usize * 8 + 160)..(at as usize * 8 + 1120)];
    assert!(seg.iter().all(|s| *s == 0), "DTMF is never audio");
    // Opus pass-through: bob-2.opus plays, as long as the call.
    let dur = rec["duration_ms"].as_u64().unwrap();
    for name in ["bob-2.opus", "alice-1.opus"] {
        let f = rec["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {rec:#}"));
        assert_eq!(f["format"], "ogg-opus");
        let out = std::process::Command::new("opusinfo")
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Playback length"))
            .unwrap();
        // "Playback length: 0m:02.011s"
        let secs: f64 = line
            .rsplit(':')
            .next()
            .unwrap()
            .trim()
            .trim_end_matches('s')
            .parse()
            .unwrap();
        assert!(
            (secs * 1000.0 - dur as f64).abs() < 150.0,
            "{name}: {secs} s vs {dur} ms"
        );
    }
    let s2 = rec["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "2")
        .unwrap();
    assert_eq!(s2["codec"], "OPUS");
    assert_eq!(s2["packets_received"], 100);
    assert_eq!(s2["packets_lost"], 0);
}

#[test]
fn stereo_map_is_configurable() {
    let (rec, dir, _srs) = record("aor:bob@");
    let stereo = rec["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["format"] == "stereo-wav")
        .unwrap();
    assert_eq!(stereo["labels"], serde_json::json!(["2", "1"]));
    let (left, rate) = channel(&dir.join("stereo.wav"), 0);
    assert_eq!(
        dominant(&left, rate),
        Some(400.0),
        "bob left by configuration"
    );
}
