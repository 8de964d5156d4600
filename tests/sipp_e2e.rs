//! The walking skeleton, end to end: the real SIPp SIPREC client
//! (tests/peers/sipp, copied from shared/peers/sipp) records one call
//! against `srs serve` on loopback, over UDP and over TCP.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const TALK_S: f64 = 10.0;

fn record_one_call(transport: &str) {
    let test = format!("sipp_siprec_call_{transport}");
    if !peers_available(&test, &["sipp", "ffmpeg"]) {
        return;
    }
    let srs = Server::start();
    let sipp_port = free_port();
    let media_port = port_block(10);
    let mut args: Vec<String> = [
        "-sf",
        "siprec_uac.xml",
        "-m",
        "1",
        "-l",
        "1",
        "-d",
        "10000",
        "-set",
        "talk_s",
        "10",
        "-i",
        "127.0.0.1",
        "-nostdin",
        "-timeout",
        "60s",
        "-timeout_error",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "-p".into(),
        sipp_port.to_string(),
        "-mp".into(),
        media_port.to_string(),
    ]);
    if transport == "tcp" {
        args.extend(["-t".into(), "t1".into()]);
    }
    args.push(srs.sip.to_string());
    let (ok, out) = run_sipp(&args, Duration::from_secs(90));
    assert!(
        ok,
        "SIPp call failed over {transport}:\n{out}\n--- srs log ---\n{}",
        srs.log()
    );

    // The index (through the CLI) shows the published call.
    let list = srs.wait_recordings(1, Duration::from_secs(15));
    assert_eq!(list.len(), 1);
    let rec = &list[0];
    assert_eq!(rec["status"], "complete");
    assert_eq!(rec["transport"], transport);
    let call_id = rec["call_id"].as_str().unwrap();
    assert!(call_id.contains("@127.0.0.1"), "SIPp Call-ID: {call_id}");
    let shown: serde_json::Value =
        serde_json::from_str(&srs.cli(&["show", call_id, "--json"])).unwrap();
    assert_eq!(
        &shown, rec,
        "show by Call-ID returns the same object as list"
    );
    let table = srs.cli(&["list"]);
    assert!(
        table.contains(rec["recording_id"].as_str().unwrap()),
        "{table}"
    );

    // Published atomically under YYYY/MM/DD/<id> with metadata.json equal to the index.
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    assert!(dir.starts_with(&srs.recordings));
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(&on_disk, rec);
    assert!(dir.join("metadata.xml").exists(), "raw metadata XML kept");
    let incoming: Vec<_> = std::fs::read_dir(srs.recordings.join(".incoming"))
        .unwrap()
        .collect();
    assert!(incoming.is_empty(), "nothing left in .incoming");

    // Attribution: label 1 = Alice (caller, 1000 Hz), label 2 = Bob (callee, 400 Hz).
    let parts = rec["participants"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    let file_of = |aor: &str| {
        let p = parts
            .iter()
            .find(|p| p["aor"] == aor)
            .unwrap_or_else(|| panic!("{aor} in {parts:?}"));
        p["file"].as_str().unwrap().to_string()
    };
    let alice = dir.join(file_of("sip:alice@example.com"));
    let bob = dir.join(file_of("sip:bob@example.com"));
    let streams = rec["streams"].as_array().unwrap();
    let s1 = streams.iter().find(|s| s["label"] == "1").unwrap();
    assert_eq!(s1["codec"], "PCMU");
    assert!(s1["packets_received"].as_u64().unwrap() >= 490, "{s1}");

    check_tone(&alice, 1000.0, 0.9);
    // ffmpeg (label 2) may start up to seconds late on a cold machine: the
    // file must still span the call, with 400 Hz wherever there is audio.
    check_tone(&bob, 400.0, 0.2);
    for f in rec["files"].as_array().unwrap() {
        assert_eq!(f["sample_rate"], 8000);
        assert_eq!(f["channels"], 1);
    }
}

/// The file lasts the talk time (within 3%), holds `freq` in at least
/// `min_fraction` of its 100 ms windows, and never the other tone.
fn check_tone(path: &Path, freq: f64, min_fraction: f64) {
    let (samples, rate) = read_wav(path);
    assert_eq!(rate, 8000);
    let secs = samples.len() as f64 / rate as f64;
    assert!(
        (secs - TALK_S).abs() <= TALK_S * 0.03,
        "{}: {secs:.3} s, want {TALK_S} s within 3%",
        path.display()
    );
    let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
    let hits = w.iter().filter(|t| **t == Some(freq)).count();
    let wrong = w
        .iter()
        .filter(|t| matches!(t, Some(f) if *f != freq))
        .count();
    assert_eq!(wrong, 0, "{}: other tone present", path.display());
    assert!(
        hits as f64 >= min_fraction * w.len() as f64,
        "{}: {freq} Hz in {hits} of {} windows",
        path.display(),
        w.len()
    );
}

#[test]
fn sipp_siprec_call_udp() {
    record_one_call("udp");
}

#[test]
fn sipp_siprec_call_tcp() {
    record_one_call("tcp");
}
