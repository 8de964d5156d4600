//! Golden files: for every initial offer of the vendor corpus, recorded
//! through `srs serve`, the published `metadata.json`, `srs show --json`
//! and the API's recording JSON must stay byte-identical to the files in
//! `tests/fixtures/golden/` (after replacing what differs on every run:
//! ids, times, durations, sizes, ports). A refactor that changes any of
//! them by accident fails here.
//!
//! To record them again after an intended change: `SRS_BLESS=1 cargo test
//! --test golden`, then review the diff.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use srs::sip::message::parse;
use srs::testkit::corpus_request;

/// Keys whose values change from run to run: replaced by `"<key>"`.
const VOLATILE: &[&str] = &[
    "recording_id",
    "started_at",
    "ended_at",
    "at",
    "path",
    "indexed_at",
    "duration_ms",
    "bytes",
    // The recorder's host name (issue 16: `[node] id` defaults to it).
    "node",
    // Hashes of the audio (issue 15), which differs with packet timing.
    "sha256",
    "manifest_sha256",
];

/// The text as served, byte for byte (key order, spacing), with the values
/// of [`VOLATILE`] keys, the recording id anywhere and the client's port
/// replaced by placeholders.
fn normalise(text: &str, id: &str) -> String {
    let mut out = text.replace(id, "<recording_id>");
    for key in VOLATILE {
        let pat = format!("\"{key}\":");
        let mut from = 0;
        while let Some(k) = out[from..].find(&pat) {
            let vstart = from + k + pat.len();
            let rest = &out[vstart..];
            let ws = rest.len() - rest.trim_start().len();
            let v = vstart + ws;
            let bytes = out.as_bytes();
            let vend = if bytes[v] == b'"' {
                let mut i = v + 1;
                while bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i + 1
            } else {
                v + out[v..]
                    .find([',', '}', '\n', ']'])
                    .unwrap_or(out.len() - v)
            };
            let placeholder = format!("\"<{key}>\"");
            out.replace_range(v..vend, &placeholder);
            from = v + placeholder.len();
        }
    }
    // "source": "127.0.0.1:40123" -> "127.0.0.1:<port>"
    let pat = "\"source\":";
    let mut from = 0;
    while let Some(k) = out[from..].find(pat) {
        let v = from + k + pat.len();
        let q1 = v + out[v..].find('"').unwrap();
        let q2 = q1 + 1 + out[q1 + 1..].find('"').unwrap();
        if let Some(colon) = out[q1..q2].rfind(':') {
            out.replace_range(q1 + colon + 1..q2, "<port>");
        }
        from = q1 + 1;
    }
    out
}

fn pretty(text: &str, id: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut t = normalise(text, id);
    if !t.ends_with('\n') {
        t.push('\n');
    }
    t
}

fn golden_dir() -> PathBuf {
    common::manifest_dir().join("tests/fixtures/golden")
}

/// Compares (or, with SRS_BLESS=1, records) one golden file.
fn check(name: &str, got: &str, failures: &mut Vec<String>) {
    let path = golden_dir().join(name);
    if std::env::var("SRS_BLESS").as_deref() == Ok("1") {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (record with SRS_BLESS=1)", path.display()));
    if want != got {
        failures.push(format!("{name}:\n--- want\n{want}\n--- got\n{got}"));
    }
}

#[test]
fn corpus_recordings_match_their_golden_json() {
    let srs = common::Server::start();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut calls = Vec::new();
    for (i, file) in common::CORPUS_INITIAL.iter().enumerate() {
        let raw = std::fs::read_to_string(
            common::manifest_dir()
                .join("tests/fixtures/corpus")
                .join(file),
        )
        .unwrap();
        let req = corpus_request(&raw, &format!("golden-{i}"));
        let inv = parse(&req).unwrap();
        let ok = common::final_response(&sock, srs.sip, &req);
        assert_eq!(common::status(&ok), 200, "{file}");
        let (to, call_id, from) = (
            ok.header("To").unwrap().to_string(),
            inv.call_id().unwrap().to_string(),
            inv.header("From").unwrap().to_string(),
        );
        let (n, _) = inv.cseq().unwrap();
        let me = sock.local_addr().unwrap();
        for (method, cseq, branch) in [("ACK", n, "ack"), ("BYE", n + 1, "bye")] {
            let m = format!(
                "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch}{i}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
            );
            sock.send_to(m.as_bytes(), srs.sip).unwrap();
        }
        let mut buf = [0u8; 65535];
        let (n, _) = sock.recv_from(&mut buf).expect("BYE answered");
        assert_eq!(
            common::status(&parse(&buf[..n]).unwrap()),
            200,
            "{file}: BYE"
        );
        calls.push((*file, call_id));
    }
    let list = srs.wait_recordings(calls.len(), Duration::from_secs(20));
    let mut failures = Vec::new();
    for (file, call_id) in &calls {
        let rec = list
            .iter()
            .find(|r| r["call_id"] == call_id.as_str())
            .unwrap_or_else(|| panic!("{file}: no recording"));
        let id = rec["recording_id"].as_str().unwrap();
        let dir = srs.recordings.join(rec["path"].as_str().unwrap());
        let stem = file.trim_end_matches(".sip");
        let meta = std::fs::read_to_string(dir.join("metadata.json")).unwrap();
        check(
            &format!("{stem}.metadata.json"),
            &pretty(&meta, id),
            &mut failures,
        );
        let show = srs.cli(&["show", id, "--json"]);
        check(
            &format!("{stem}.show.json"),
            &pretty(&show, id),
            &mut failures,
        );
        let api = common::http_get(srs.http, &format!("/api/v1/recordings/{id}"))
            .unwrap_or_else(|| panic!("{file}: API"));
        check(
            &format!("{stem}.api.json"),
            &pretty(&api, id),
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "{} golden files differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
