//! A hostile (or broken) recording client floods one recording with
//! re-offers carrying large metadata: the dialog's re-offer rate is
//! limited (503 Too Many Updates + Retry-After), what the recording keeps
//! is capped (metadata updates, bytes, events) and `metadata.json` says
//! which cap was reached, while the audio stays intact.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;

fn metadata(n: usize, pad: usize) -> String {
    format!(
        "<?xml version=\"1.0\"?>\r\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\"><datamode>partial</datamode>\
<participant participant_id=\"p{n}\"><nameID aor=\"sip:{n}@example.com\"><name>{}</name></nameID></participant></recording>\r\n",
        "x".repeat(pad)
    )
}

#[test]
fn a_flood_of_metadata_reoffers_is_rate_limited_and_capped_and_audio_survives() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    std::fs::write(
        &cfg,
        "[sip]\nreoffers_per_second = 100\nmax_metadata_updates = 20\nmax_metadata_bytes = 400000\nmax_events = 30\n",
    )
    .unwrap();
    let srs = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:1\r\na=sendonly\r\n";
    let initial = "<?xml version=\"1.0\"?>\r\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\"><datamode>complete</datamode>\
<participant participant_id=\"p0\"><nameID aor=\"sip:agent@example.com\"/></participant>\
<stream stream_id=\"st1\" session_id=\"s1\"><label>1</label></stream>\
<participantstreamassoc participant_id=\"p0\"><send>st1</send></participantstreamassoc></recording>\r\n";
    let body = siprec_body(sdp, initial);
    let inv = format!(
        "INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKinv\r\nFrom: <sip:src@127.0.0.1>;tag=f1\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: flood\r\nCSeq: 1 INVITE\r\nContact: <sip:src@{me}>;+sip.src\r\nRequire: siprec\r\nContent-Type: multipart/mixed;boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let ok = final_response(&sock, srs.sip, inv.as_bytes());
    assert_eq!(status(&ok), 200);
    let to = ok.header("To").unwrap().to_string();
    let port = srs::siprec::sdp::parse_offer(&ok.body).unwrap().media[0].port;
    let ack = format!(
        "ACK sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKack\r\nFrom: <sip:src@127.0.0.1>;tag=f1\r\nTo: {to}\r\nCall-ID: flood\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), srs.sip).unwrap();
    // The audio: 3 s of 1 kHz while the flood runs.
    let media = std::thread::spawn(move || {
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        send_pcmu_tone(&rtp, ([127, 0, 0, 1], port).into(), 1000.0, 3.0, 0x1234);
    });
    std::thread::sleep(Duration::from_millis(300));
    let (mut accepted, mut refused) = (0, 0);
    for n in 1..=400u32 {
        let md = metadata(n as usize, 20_000);
        let upd = format!(
            "UPDATE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKu{n}\r\nFrom: <sip:src@127.0.0.1>;tag=f1\r\nTo: {to}\r\nCall-ID: flood\r\nCSeq: {} UPDATE\r\nContent-Type: application/rs-metadata+xml\r\nContent-Length: {}\r\n\r\n{md}",
            n + 1,
            md.len()
        );
        let r = final_response(&sock, srs.sip, upd.as_bytes());
        match status(&r) {
            200 => accepted += 1,
            503 => {
                assert!(r.header("Retry-After").is_some());
                refused += 1;
            }
            other => panic!("UPDATE {n}: {other}"),
        }
    }
    assert!(refused > 0, "a flood is rate-limited ({accepted} accepted)");
    assert!(accepted >= 20, "bursts pass ({accepted} accepted)");
    media.join().unwrap();
    let bye = format!(
        "BYE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye\r\nFrom: <sip:src@127.0.0.1>;tag=f1\r\nTo: {to}\r\nCall-ID: flood\r\nCSeq: 1000 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(status(&final_response(&sock, srs.sip, bye.as_bytes())), 200);
    let list = srs.wait_recordings(1, Duration::from_secs(10));
    let dir = srs.recordings.join(list[0]["path"].as_str().unwrap());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("metadata-update-"))
        .collect();
    assert!(
        kept.len() <= 20,
        "{} updates kept, cap 20 (and 400 KB)",
        kept.len()
    );
    let kept_bytes: u64 = kept
        .iter()
        .map(|n| std::fs::metadata(dir.join(n)).unwrap().len())
        .sum();
    assert!(kept_bytes <= 400_000, "{kept_bytes} bytes kept");
    assert!(meta["events"].as_array().unwrap().len() <= 30);
    let limits: Vec<&str> = meta["limits_reached"]
        .as_array()
        .expect("limits_reached")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(limits.contains(&"events"), "{limits:?}");
    assert!(
        limits.contains(&"metadata-updates") || limits.contains(&"metadata-bytes"),
        "{limits:?}"
    );
    // The audio is intact: 1 kHz throughout the 3 s it was sent.
    let (x, rate) = read_wav(&dir.join(meta["files"][0]["name"].as_str().unwrap()));
    let windows = tone_windows(&x, rate, &[1000.0, 400.0]);
    let tone = windows.iter().filter(|w| **w == Some(1000.0)).count();
    assert!(tone >= 28, "{tone} windows of 1 kHz of {}", windows.len());
    assert_eq!(meta["streams"][0]["packets_received"], 150);
}
