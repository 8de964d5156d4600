//! kill -9 during 50 active recordings, restart: every partial recording is
//! published with status `recovered`, playable, complete up to at least the
//! last checkpoint, and indexed.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn kill_dash_9_during_50_recordings_then_restart_recovers_them_all() {
    if !peers_available("crash_recovery", &["sipp"]) {
        return;
    }
    // 50 calls of two streams take 100 RTP/RTCP pairs: room for twice that.
    let rtp = port_block(400);
    let mut srs = Server::start_with(&["--rtp-ports", &format!("{rtp}-{}", rtp + 399)]);
    let sipp_port = free_port();
    let media_port = port_block(10);
    let sipp_err = srs.recordings.with_file_name("sipp_errors.log");
    // 50 calls of 60 s, label 1 streaming (SIPp's rtp_stream), set up at 50/s.
    let mut sipp = Command::new("sipp")
        .current_dir(manifest_dir().join("tests/peers/sipp"))
        .args([
            "-sf",
            "siprec_uac_load.xml",
            "-r",
            "50",
            "-l",
            "50",
            "-m",
            "50",
            "-d",
            "60000",
        ])
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &sipp_port.to_string(),
            "-mp",
            &media_port.to_string(),
        ])
        .arg(srs.sip.to_string())
        .args(["-nostdin", "-timeout", "90s", "-trace_err", "-error_file"])
        .arg(&sipp_err)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until all 50 are being recorded (seconds; generous for a loaded
    // machine), then 5 s more (two checkpoints).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = http_get(srs.http, "/healthz").unwrap_or_default();
        if h.contains("\"active_sessions\":50") {
            break;
        }
        if Instant::now() >= deadline {
            let _ = sipp.kill();
            panic!(
                "50 sessions never active: {h}\nsrs warnings:\n{}\nSIPp errors:\n{}",
                warnings(&srs.log()),
                std::fs::read_to_string(&sipp_err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    // kill -9
    let _ = srs.child.kill();
    let _ = srs.child.wait();
    let _ = sipp.kill();
    let _ = sipp.wait();
    let incoming: Vec<_> = std::fs::read_dir(srs.recordings.join(".incoming"))
        .unwrap()
        .collect();
    assert_eq!(incoming.len(), 50, "50 interrupted recordings on disk");
    // Restart on the same drop: recovery runs before anything else.
    srs.restart();
    let list = srs.wait_recordings(50, Duration::from_secs(30));
    assert_eq!(list.len(), 50);
    for rec in &list {
        assert_eq!(rec["status"], "recovered", "{rec}");
        assert!(
            !rec["call_id"].as_str().unwrap().is_empty(),
            "ids kept from incoming.json"
        );
        let dir = srs.recordings.join(rec["path"].as_str().unwrap());
        let files = rec["files"].as_array().unwrap();
        assert_eq!(files.len(), 2, "both streams' files: {rec}");
        for f in files {
            let (samples, rate) = read_wav(&dir.join(f["name"].as_str().unwrap()));
            let secs = samples.len() as f64 / f64::from(rate);
            // Checkpoints every 2 s; a silent stream is padded to 0.5 s
            // behind the clock at each: at least 3 s survive.
            assert!(secs >= 3.0, "{}: only {secs:.2} s recovered", f["name"]);
            assert_eq!(
                (secs * 1000.0) as u64 / 10,
                f["duration_ms"].as_u64().unwrap() / 10
            );
        }
        // The label-1 file holds SIPp's 1000 Hz tone up to the crash.
        let part = rec["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["aor"] == "sip:alice@example.com")
            .unwrap();
        let (samples, rate) = read_wav(&dir.join(part["file"].as_str().unwrap()));
        let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
        assert!(
            w.iter().filter(|t| **t == Some(1000.0)).count() >= 15,
            "{w:?}"
        );
    }
    let incoming: Vec<_> = std::fs::read_dir(srs.recordings.join(".incoming"))
        .unwrap()
        .collect();
    assert!(incoming.is_empty(), "nothing left behind");
}

/// The WARN and ERROR lines of a server log.
fn warnings(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}
