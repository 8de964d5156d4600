//! The HTTP API on a real recording: file download with Range, active
//! sessions while a call is up, errors that say what is wrong.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

/// Raw GET: (status, headers, body bytes).
fn get(addr: std::net::SocketAddr, path: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    let r = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    let resp = common::http::call(addr, "GET", path, None, &r, "");
    (resp.status, resp.head, resp.body)
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

/// One short call recorded through the corpus INVITE; its index entry.
fn record_one(srs: &Server, tag: &str) -> serde_json::Value {
    let call_id = short_call(srs, tag);
    wait_indexed(srs, &call_id, Duration::from_secs(10))
}

/// An error response: its status and `error` message, checking that the
/// body is the documented JSON (`{"error": "..."}`), never plain text.
fn json_error(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    range: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{r}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{method} {path}: {head}\n\n{body}"
    );
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{method} {path}: no error field: {v}"))
        .to_string();
    (status, head.to_string(), msg)
}

#[test]
fn every_error_is_json_and_only_the_recordings_own_files_are_served() {
    let srs = Server::start();
    let rec = record_one(&srs, "api-err");
    let id = rec["recording_id"].as_str().unwrap();
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    // The published directory holds no live description.
    assert!(!dir.join("incoming.json").exists());
    let name = rec["files"][0]["name"].as_str().unwrap();
    let len = std::fs::metadata(dir.join(name)).unwrap().len();
    let file = format!("/api/v1/recordings/{id}/files/{name}");

    // Query strings serde cannot read, unknown parameters, unknown paths
    // and methods: JSON, with the reason.
    let (st, _, msg) = json_error(srs.http, "GET", "/api/v1/recordings?limit=abc", None);
    assert_eq!(st, 400);
    assert!(msg.contains("limit"), "{msg}");
    let (st, _, msg) = json_error(srs.http, "GET", "/api/v1/recordings?recorddn=1", None);
    assert_eq!(st, 400);
    assert!(msg.contains("recorddn"), "{msg}");
    let (st, _, _) = json_error(srs.http, "GET", "/api/v1/nosuch", None);
    assert_eq!(st, 404);
    let (st, _, _) = json_error(srs.http, "POST", "/api/v1/recordings", None);
    assert_eq!(st, 405);
    let (st, _, _) = json_error(srs.http, "GET", "/api/v1/recordings/nosuch", None);
    assert_eq!(st, 404);

    // A zero-length suffix range selects nothing: 416, not the whole file.
    let (st, head, _) = json_error(srs.http, "GET", &file, Some("bytes=-0"));
    assert_eq!(st, 416);
    assert!(head.contains(&format!("bytes */{len}")), "{head}");
    let (st, _, _) = json_error(srs.http, "GET", &file, Some(&format!("bytes={len}-")));
    assert_eq!(st, 416);

    // A symlink planted in the recording directory under a listed name is
    // never followed.
    let secret = srs.recordings.with_file_name("secret.txt");
    std::fs::write(&secret, "root:x:0:0:secret\n").unwrap();
    let wav = dir.join(name);
    let kept = dir.join("kept.wav.orig");
    std::fs::rename(&wav, &kept).unwrap();
    std::os::unix::fs::symlink(&secret, &wav).unwrap();
    let (st, _, _) = json_error(srs.http, "GET", &file, None);
    assert_eq!(st, 404);
    let (_, _, body) = get(srs.http, &file, None);
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
    std::os::unix::fs::symlink("/etc/passwd", dir.join("x.wav")).unwrap();
    std::fs::remove_file(&wav).unwrap();
    std::os::unix::fs::symlink("x.wav", &wav).unwrap();
    let (st, _, _) = json_error(srs.http, "GET", &file, None);
    assert_eq!(st, 404);
    // A hard-to-spot variant: the recording directory itself replaced by a
    // symlink to a copy outside the drop.
    std::fs::remove_file(&wav).unwrap();
    std::fs::rename(&kept, &wav).unwrap();
    let (st, _, body) = get(srs.http, &file, None);
    assert_eq!((st, body.len() as u64), (200, len), "restored file served");
    let outside = srs.recordings.with_file_name("outside");
    std::fs::rename(&dir, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &dir).unwrap();
    let (st, _, _) = json_error(srs.http, "GET", &file, None);
    assert_eq!(st, 404);
}
