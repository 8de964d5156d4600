//! The HTTP API on a real recording: file download with Range, active
//! sessions while a call is up, errors that say what is wrong.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

/// Raw GET: (status, headers, body bytes).
fn get(addr: std::net::SocketAddr, path: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{r}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head[9..12].parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

#[test]
fn sessions_then_file_download_with_ranges() {
    let srs = Server::start();
    let raw = std::fs::read_to_string(
        manifest_dir().join("tests/fixtures/corpus/sipp-generated-invite.sip"),
    )
    .unwrap();
    let req = srs::testkit::corpus_request(&raw, "api-1");
    let inv = srs::sip::message::parse(&req).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ok = final_response(&sock, srs.sip, &req);
    // While the call is up, it is an active session.
    let (status, _, body) = get(srs.http, "/api/v1/sessions", None);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{v}");
    assert_eq!(sessions[0]["call_id"], inv.call_id().unwrap());
    assert_eq!(
        sessions[0]["participants"],
        serde_json::json!(["sip:alice@example.com", "sip:bob@example.com"])
    );
    std::thread::sleep(Duration::from_millis(400));
    let bye = bye_for(&sock, &inv, &ok, 2);
    sock.send_to(bye.as_bytes(), srs.sip).unwrap();
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    let (_, _, body) = get(srs.http, "/api/v1/sessions", None);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["sessions"],
        serde_json::json!([]),
        "the ended call is no longer active"
    );
    let id = rec["recording_id"].as_str().unwrap();
    let name = rec["files"][0]["name"].as_str().unwrap();
    let path = format!("/api/v1/recordings/{id}/files/{name}");
    let on_disk = std::fs::read(
        srs.recordings
            .join(rec["path"].as_str().unwrap())
            .join(name),
    )
    .unwrap();
    // Whole file.
    let (status, head, body) = get(srs.http, &path, None);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("accept-ranges: bytes"),
        "{head}"
    );
    assert_eq!(body, on_disk);
    // The WAV header only.
    let (status, head, body) = get(srs.http, &path, Some("bytes=0-43"));
    assert_eq!(status, 206);
    assert!(
        head.contains(&format!("bytes 0-43/{}", on_disk.len())),
        "{head}"
    );
    assert_eq!(&body[..4], b"RIFF");
    assert_eq!(body.len(), 44);
    // The last 100 bytes.
    let (status, _, body) = get(srs.http, &path, Some("bytes=-100"));
    assert_eq!(status, 206);
    assert_eq!(body, on_disk[on_disk.len() - 100..]);
    // Past the end.
    let (status, head, _) = get(srs.http, &path, Some(&format!("bytes={}-", on_disk.len())));
    assert_eq!(status, 416);
    assert!(
        head.contains(&format!("bytes */{}", on_disk.len())),
        "{head}"
    );
    // Only listed files, never a path.
    let (status, _, _) = get(
        srs.http,
        &format!("/api/v1/recordings/{id}/files/..%2Fmetadata.json"),
        None,
    );
    assert_eq!(status, 404);
    let (status, _, _) = get(
        srs.http,
        &format!("/api/v1/recordings/{id}/files/metadata.json"),
        None,
    );
    assert_eq!(status, 404);
    let (status, _, _) = get(srs.http, "/api/v1/recordings/nosuch", None);
    assert_eq!(status, 404);
    // By Call-ID too.
    let (status, _, body) = get(
        srs.http,
        &format!("/api/v1/recordings/{}", inv.call_id().unwrap()),
        None,
    );
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains(id));
    // Bad filters are 400 with the reason.
    let (status, _, body) = get(srs.http, "/api/v1/recordings?since=yesterday", None);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("since"));
    let (status, _, body) = get(srs.http, "/api/v1/recordings?recorddn=1", None);
    assert_eq!(
        status,
        400,
        "unknown parameter refused: {}",
        String::from_utf8_lossy(&body)
    );
    // Paging.
    let (status, _, body) = get(srs.http, "/api/v1/recordings?limit=1&offset=0", None);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (
            v["total"].as_u64(),
            v["limit"].as_u64(),
            v["recordings"].as_array().unwrap().len()
        ),
        (Some(1), Some(1), 1)
    );
}
