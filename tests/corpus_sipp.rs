//! The seven vendor SIPp scenarios of the corpus
//! (tests/fixtures/corpus/*.sipp.xml), adapted to SIPp 3.6.1 in
//! tests/peers/corpus-sipp (each file lists its changes at the top), played
//! as a UAC over UDP against a fresh `srs serve`; the published recording
//! must reflect the call: participants, one stream per offered m-line, full
//! length files with the tone SIPp sent, and the `events` of the feature
//! each scenario exists for.
//!
//! | test | what it asserts (besides the common checks) |
//! |---|---|
//! | drachtio_reinvite_inactive | `paused` for a_leg and b_leg; a_leg silent in the file from the pause to the BYE although SIPp keeps sending (a paused stream's packets are discarded) |
//! | avaya_sbce_metadata_update | `metadata-update` (complete); sip:7204541001@10.64.110.32 listed, sends label 20, `participant-joined`; ASBCE still listed |
//! | broadworks_pause_resume_c0 | >= 1 s silence; `paused` then `resumed` on label 1 (hold by `c=0.0.0.0`); silence between them |
//! | metaswitch_hold_resume | >= 1 s silence; `paused` then `resumed` on label 1; silence between them; no `participant-joined` |
//! | webex_conference_updates_hold | gosrs4isif and alb25bceji listed and `participant-joined`, 4 participants, >= 6 `metadata-update`, `paused`,`resumed`,`paused`,`resumed`,`paused` on label 1; the 2nd hold silent although SIPp keeps sending |
//! | oracle_sbc_template | clean call (no pause/participant/stream/codec events); 2 participants from the injection CSVs; caller sends 16777227 |
//! | genesys_gvp_template | Genesys record URI with `datetime=...T19:19:59Z` accepted; `paused` only for the two lines offered `a=inactive`; 4 labels; 2 participants |
//!
//! All seven pass (2026-11-23). They found two server bugs, both fixed: a
//! `:` in a Request-URI parameter value was refused (rsip), and RTP that
//! kept arriving on a stream answered `inactive` was recorded.
//!
//! Common checks: SIPp exits 0; one recording, `status` complete; stream
//! labels = the offered m-line labels; the scenario's participants with
//! their exact aor; every file exists, decodes, lasts `duration_ms` within
//! 10% (and the call is about as long as the scenario); the file of the
//! stream SIPp's rtp_stream sent on (first m-line) holds the 1000 Hz tone
//! and never 400 Hz.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Scenario {
    test: &'static str,
    file: &'static str,
    extra_args: &'static [&'static str],
    /// Stream labels that must be recorded (one per offered m-line).
    labels: &'static [&'static str],
    /// Labels that may also appear (offered only by a malformed body).
    optional_labels: &'static [&'static str],
    /// Participants (aor) named by the scenario's INVITE metadata.
    aors: &'static [&'static str],
    /// The label SIPp's rtp_stream sends the 1000 Hz tone on.
    tone_label: &'static str,
    /// Nominal call length (answer to BYE) in seconds.
    call_s: f64,
}

fn corpus_dir() -> PathBuf {
    manifest_dir().join("tests/peers/corpus-sipp")
}

/// Plays the scenario, returns the server (kept alive for its log), the
/// recording as listed by `srs list --json`, and its directory.
fn play(sc: &Scenario) -> Option<(Server, Value, PathBuf)> {
    if !peers_available(sc.test, &["sipp"]) {
        return None;
    }
    let srs = Server::start();
    let err_dir = tempfile::tempdir().unwrap();
    let err_file = err_dir.path().join("sipp-errors.log");
    let mut args: Vec<String> = ["-sf", sc.file, "-m", "1", "-l", "1", "-i", "127.0.0.1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend([
        "-p".into(),
        free_port().to_string(),
        "-mp".into(),
        port_block(10).to_string(),
        "-nostdin".into(),
        "-timeout".into(),
        "30s".into(),
        "-timeout_error".into(),
        "-trace_err".into(),
        "-error_file".into(),
        err_file.display().to_string(),
    ]);
    args.extend(sc.extra_args.iter().map(|s| s.to_string()));
    args.push(srs.sip.to_string());
    let (ok, out) = run_sipp_in(&corpus_dir(), &args, Duration::from_secs(60));
    assert!(
        ok,
        "{}: SIPp failed:\n{out}\n--- SIPp errors ---\n{}\n--- srs log ---\n{}",
        sc.test,
        std::fs::read_to_string(&err_file).unwrap_or_default(),
        srs.log()
    );
    let list = srs.wait_recordings(1, Duration::from_secs(15));
    assert_eq!(list.len(), 1, "{}: one recording: {list:#?}", sc.test);
    let rec = list[0].clone();
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(on_disk, rec, "{}: metadata.json equals the index", sc.test);
    eprintln!(
        "{}: participants {}\nstreams {}\nevents {}",
        sc.test, rec["participants"], rec["streams"], rec["events"]
    );
    check_common(sc, &rec, &dir);
    Some((srs, rec, dir))
}

fn check_common(sc: &Scenario, rec: &Value, dir: &Path) {
    let t = sc.test;
    assert_eq!(rec["status"], "complete", "{t}: {rec:#}");

    // One stream per offered m-line label.
    let labels: Vec<&str> = rec["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    for l in sc.labels {
        assert!(labels.contains(l), "{t}: stream label {l} in {labels:?}");
    }
    for l in &labels {
        assert!(
            sc.labels.contains(l) || sc.optional_labels.contains(l),
            "{t}: unexpected stream label {l} in {labels:?}"
        );
    }
    assert_eq!(
        labels.len(),
        labels
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        "{t}: one stream per label: {labels:?}"
    );

    // The INVITE's participants, with their aor exactly.
    for aor in sc.aors {
        participant(rec, aor)
            .unwrap_or_else(|| panic!("{t}: participant {aor} in {:#}", rec["participants"]));
    }

    // Every file exists, decodes and spans the call.
    let dur_ms = rec["duration_ms"].as_f64().unwrap();
    assert!(
        (dur_ms / 1000.0 - sc.call_s).abs() <= sc.call_s * 0.25,
        "{t}: call lasted {dur_ms} ms, the scenario about {} s",
        sc.call_s
    );
    let files = rec["files"].as_array().unwrap();
    assert!(!files.is_empty(), "{t}: no files: {rec:#}");
    assert_eq!(
        files.len(),
        labels.len(),
        "{t}: one file per stream: {rec:#}"
    );
    for f in files {
        let path = dir.join(f["name"].as_str().unwrap());
        assert!(path.exists(), "{t}: {} missing", path.display());
        let (samples, rate) = read_wav(&path);
        // 8 kHz for G.711 offers; the highest answered codec's rate otherwise
        // (Webex offers Opus: 48 kHz).
        assert_eq!(
            u64::from(rate),
            f["sample_rate"].as_u64().unwrap(),
            "{t}: {}",
            path.display()
        );
        let secs = samples.len() as f64 / rate as f64;
        assert!(
            (secs * 1000.0 - dur_ms).abs() <= dur_ms * 0.10,
            "{t}: {} lasts {secs:.3} s, the call {dur_ms} ms",
            path.display()
        );
    }

    // The tone SIPp sent is in the file of its stream, never the other one.
    let path = dir.join(file_of_label(rec, sc.tone_label));
    let (samples, rate) = read_wav(&path);
    let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
    let hits = w.iter().filter(|x| **x == Some(1000.0)).count();
    let wrong = w.iter().filter(|x| **x == Some(400.0)).count();
    assert_eq!(wrong, 0, "{t}: 400 Hz in {}", path.display());
    assert!(
        hits as f64 >= 0.3 * w.len() as f64,
        "{t}: 1000 Hz in {hits} of {} windows of {}",
        w.len(),
        path.display()
    );
}

fn participant<'a>(rec: &'a Value, aor: &str) -> Option<&'a Value> {
    rec["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["aor"] == aor)
}

/// The file recording `label`: its sender's file, else the stream file the
/// server names after the label.
fn file_of_label(rec: &Value, label: &str) -> String {
    let by_participant = rec["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["labels"]
                .as_array()
                .is_some_and(|ls| ls.iter().any(|l| l == label))
        })
        .find_map(|p| p["file"].as_str().map(str::to_string));
    if let Some(f) = by_participant {
        return f;
    }
    let suffix = format!("-{}.wav", label.replace('_', "-"));
    rec["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .find(|n| n.ends_with(&suffix))
        .unwrap_or_else(|| panic!("no file for label {label}: {rec:#}"))
        .to_string()
}

fn events(rec: &Value) -> Vec<Value> {
    rec["events"]
        .as_array()
        .unwrap_or_else(|| panic!("metadata.json has an `events` array: {rec:#}"))
        .clone()
}

fn kinds_for_label(rec: &Value, label: &str) -> Vec<String> {
    events(rec)
        .iter()
        .filter(|e| e["label"] == label)
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The paused/resumed sequence of `label`, in order.
fn pause_sequence(rec: &Value, label: &str) -> Vec<String> {
    kinds_for_label(rec, label)
        .into_iter()
        .filter(|k| k == "paused" || k == "resumed")
        .collect()
}

fn count_kind(rec: &Value, kind: &str) -> usize {
    events(rec).iter().filter(|e| e["kind"] == kind).count()
}

fn joined(rec: &Value, aor: &str) -> bool {
    events(rec)
        .iter()
        .any(|e| e["kind"] == "participant-joined" && e["aor"] == aor)
}

/// Longest run of silent 100 ms windows in the file of `label`, in seconds.
fn longest_silence_s(rec: &Value, dir: &Path, label: &str) -> f64 {
    let (samples, rate) = read_wav(&dir.join(file_of_label(rec, label)));
    let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
    let (mut best, mut run) = (0usize, 0usize);
    for x in &w {
        if x.is_none() {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best as f64 / 10.0
}

/// Seconds from the session's start to the `n`th (0-based) event of `kind`
/// on `label`.
fn event_offset_s(rec: &Value, kind: &str, label: &str, n: usize) -> f64 {
    let ts = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap_or_else(|e| panic!("RFC 3339 time {v}: {e}"))
    };
    let e = events(rec)
        .into_iter()
        .filter(|e| e["kind"] == kind && e["label"] == label)
        .nth(n)
        .unwrap_or_else(|| panic!("{kind} #{n} on {label}: {:#}", rec["events"]));
    (ts(&e["at"]) - ts(&rec["started_at"])).num_milliseconds() as f64 / 1000.0
}

/// Asserts that the file of `label` is silent in every 100 ms window
/// lying inside [from_s, to_s] (RTP that arrives on a paused stream is not
/// recorded).
fn assert_silent_between(t: &str, rec: &Value, dir: &Path, label: &str, from_s: f64, to_s: f64) {
    let path = dir.join(file_of_label(rec, label));
    let (samples, rate) = read_wav(&path);
    let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
    let inside: Vec<(usize, &Option<f64>)> = w
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as f64 / 10.0 >= from_s && (*i + 1) as f64 / 10.0 <= to_s)
        .collect();
    assert!(
        !inside.is_empty(),
        "{t}: no window in [{from_s:.2}, {to_s:.2}] s"
    );
    let loud: Vec<f64> = inside
        .iter()
        .filter(|(_, x)| x.is_some())
        .map(|(i, _)| *i as f64 / 10.0)
        .collect();
    assert!(
        loud.is_empty(),
        "{t}: {}: label {label} paused from {from_s:.2} s to {to_s:.2} s, but audio recorded in the windows at {loud:?} s",
        path.display()
    );
}

/// A clean single call: no pause, no participant change.
fn assert_clean(t: &str, rec: &Value) {
    for kind in [
        "paused",
        "resumed",
        "participant-joined",
        "participant-left",
        "stream-added",
        "codec-changed",
    ] {
        assert_eq!(
            count_kind(rec, kind),
            0,
            "{t}: no {kind}: {:#}",
            rec["events"]
        );
    }
}

#[test]
fn drachtio_reinvite_inactive() {
    let sc = Scenario {
        test: "drachtio_reinvite_inactive",
        file: "drachtio-sipp-invite-reinvite-inactive-bye.sipp.xml",
        extra_args: &[],
        labels: &["a_leg", "b_leg"],
        optional_labels: &[],
        aors: &["sip:6001@localhost", "sip:101@localhost"],
        tone_label: "a_leg",
        call_s: 5.0,
    };
    let Some((_srs, rec, dir)) = play(&sc) else {
        return;
    };
    let t = sc.test;
    // The re-INVITE sets both streams a=inactive: each is paused (and
    // stays paused until the BYE; the files keep the full length, checked
    // above).
    for label in ["a_leg", "b_leg"] {
        assert_eq!(
            pause_sequence(&rec, label),
            ["paused"],
            "{t}: label {label}: {:#}",
            rec["events"]
        );
    }
    assert_eq!(rec["participants"].as_array().unwrap().len(), 2, "{t}");
    // SIPp's rtp_stream (like the vendor's play_pcap_audio) keeps sending
    // on a_leg after the a=inactive re-INVITE: the paused stream must be
    // silence in the file from the pause to the BYE.
    let paused = event_offset_s(&rec, "paused", "a_leg", 0);
    let end = rec["duration_ms"].as_f64().unwrap() / 1000.0;
    assert_silent_between(t, &rec, &dir, "a_leg", paused + 0.2, end - 0.2);
}

#[test]
fn avaya_sbce_metadata_update() {
    let sc = Scenario {
        test: "avaya_sbce_metadata_update",
        file: "avaya-sbce-invite-update-bye.sipp.xml",
        extra_args: &[],
        labels: &["10"],
        optional_labels: &[],
        aors: &["sip:13035381001@10.64.110.65", "sip:ASBCE@asbce.com"],
        tone_label: "10",
        call_s: 5.0,
    };
    let Some((_srs, rec, _dir)) = play(&sc) else {
        return;
    };
    let t = sc.test;
    let callee = "sip:7204541001@10.64.110.32";
    // The metadata-only UPDATE (application/rs-metadata, complete) names the
    // real callee as the sender of label 20 instead of the dummy ASBCE.
    let p = participant(&rec, callee)
        .unwrap_or_else(|| panic!("{t}: {callee} in {:#}", rec["participants"]));
    assert!(
        p["labels"].as_array().unwrap().iter().any(|l| l == "20"),
        "{t}: {callee} sends label 20: {p:#}"
    );
    assert!(
        events(&rec)
            .iter()
            .any(|e| e["kind"] == "metadata-update" && e["detail"] == "complete"),
        "{t}: metadata-update (complete): {:#}",
        rec["events"]
    );
    assert!(
        joined(&rec, callee),
        "{t}: participant-joined {callee}: {:#}",
        rec["events"]
    );
    // The caller still sends label 10, and the tone is in its file.
    let caller = participant(&rec, "sip:13035381001@10.64.110.65").unwrap();
    assert!(
        caller["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "10"),
        "{t}: caller sends label 10: {caller:#}"
    );
    assert_eq!(pause_sequence(&rec, "10"), Vec::<String>::new(), "{t}");
}

#[test]
fn broadworks_pause_resume_c0() {
    let sc = Scenario {
        test: "broadworks_pause_resume_c0",
        file: "broadworks-pause-resume-reinvite.sipp.xml",
        extra_args: &[],
        labels: &["1"],
        optional_labels: &[],
        aors: &[
            "sip:8638254725",
            "sip:+19015783200@broadcore.com;user=phone",
        ],
        tone_label: "1",
        call_s: 7.0,
    };
    let Some((_srs, rec, dir)) = play(&sc) else {
        return;
    };
    let t = sc.test;
    // Pause is an SDP-only re-INVITE with c=IN IP4 0.0.0.0 (no direction
    // attribute), resume restores the address: 3 s audio, 2 s none, 2 s audio.
    let silence = longest_silence_s(&rec, &dir, "1");
    assert!(silence >= 1.0, "{t}: silence during the pause: {silence} s");
    assert_eq!(
        pause_sequence(&rec, "1"),
        ["paused", "resumed"],
        "{t}: {:#}",
        rec["events"]
    );
    let paused = event_offset_s(&rec, "paused", "1", 0);
    let resumed = event_offset_s(&rec, "resumed", "1", 0);
    assert!(
        resumed - paused >= 1.0,
        "{t}: paused at {paused} s, resumed at {resumed} s"
    );
    assert_silent_between(t, &rec, &dir, "1", paused + 0.2, resumed - 0.2);
}

#[test]
fn metaswitch_hold_resume() {
    let sc = Scenario {
        test: "metaswitch_hold_resume",
        file: "metaswitch-hold-reinvite-bye.sipp.xml",
        extra_args: &[],
        labels: &["1"],
        optional_labels: &[],
        aors: &["7602922411", "7602922410"],
        tone_label: "1",
        call_s: 7.0,
    };
    let Some((_srs, rec, dir)) = play(&sc) else {
        return;
    };
    let t = sc.test;
    // re-INVITE with a new port (no pause), hold with c=0.0.0.0, resume.
    let silence = longest_silence_s(&rec, &dir, "1");
    assert!(silence >= 1.0, "{t}: silence during the hold: {silence} s");
    assert_eq!(
        pause_sequence(&rec, "1"),
        ["paused", "resumed"],
        "{t}: {:#}",
        rec["events"]
    );
    assert_eq!(count_kind(&rec, "participant-joined"), 0, "{t}");
    let paused = event_offset_s(&rec, "paused", "1", 0);
    let resumed = event_offset_s(&rec, "resumed", "1", 0);
    assert!(
        resumed - paused >= 1.0,
        "{t}: paused at {paused} s, resumed at {resumed} s"
    );
    assert_silent_between(t, &rec, &dir, "1", paused + 0.2, resumed - 0.2);
}

#[test]
fn webex_conference_updates_hold() {
    let sc = Scenario {
        test: "webex_conference_updates_hold",
        file: "cisco-webex-broadworks-conference-update-hold.sipp.xml",
        extra_args: &[],
        labels: &["1"],
        optional_labels: &[],
        aors: &[
            "sip:yztpfzzvkq@44936045.int10.bcld.webex.com",
            "sip:7722@10.155.7.148;user=phone",
        ],
        tone_label: "1",
        call_s: 5.8,
    };
    let Some((_srs, rec, dir)) = play(&sc) else {
        return;
    };
    let t = sc.test;
    // Participants joining the conference: gosrs4isif with the multipart
    // resume re-INVITE, alb25bceji with the 4th UPDATE (aors without scheme,
    // as sent).
    let added = [
        "gosrs4isif@44936045.int10.bcld.webex.com",
        "alb25bceji@44936045.int10.bcld.webex.com",
    ];
    for aor in added {
        assert!(
            participant(&rec, aor).is_some(),
            "{t}: participant {aor} in {:#}",
            rec["participants"]
        );
        assert!(
            joined(&rec, aor),
            "{t}: participant-joined {aor}: {:#}",
            rec["events"]
        );
    }
    assert_eq!(
        rec["participants"].as_array().unwrap().len(),
        4,
        "{t}: {:#}",
        rec["participants"]
    );
    // Six metadata-only UPDATEs (complete snapshots), plus the re-INVITE's.
    let updates = count_kind(&rec, "metadata-update");
    assert!(
        updates >= 6,
        "{t}: {updates} metadata-update events: {:#}",
        rec["events"]
    );
    // Hold (c=0.0.0.0 + a=inactive), resume with the participant, then two
    // more holds with a resume between: paused, resumed, paused, resumed,
    // paused.
    assert_eq!(
        pause_sequence(&rec, "1"),
        ["paused", "resumed", "paused", "resumed", "paused"],
        "{t}: {:#}",
        rec["events"]
    );
    // SIPp keeps sending during the holds (the vendor never pauses its
    // rtp_stream): the second hold (about 600 ms) must be silence.
    let paused = event_offset_s(&rec, "paused", "1", 1);
    let resumed = event_offset_s(&rec, "resumed", "1", 1);
    assert_silent_between(t, &rec, &dir, "1", paused + 0.1, resumed - 0.1);
}

#[test]
fn oracle_sbc_template() {
    let sc = Scenario {
        test: "oracle_sbc_template",
        file: "oracle-sbc-outbound-apkt.sipp.xml",
        extra_args: &["-inf", "tenant-users.csv", "-inf", "callee.csv"],
        labels: &["16777227"],
        // The stray "--metaswitch-boundary" part is inside the first SDP
        // part's bytes, so the offered SDP holds a second m-line (label 1).
        optional_labels: &["1"],
        aors: &["sip:2001@192.168.50.102", "sip:3001@192.168.50.10"],
        tone_label: "16777227",
        call_s: 5.2,
    };
    let Some((_srs, rec, _dir)) = play(&sc) else {
        return;
    };
    let t = sc.test;
    assert_clean(t, &rec);
    let caller = participant(&rec, "sip:2001@192.168.50.102").unwrap();
    assert!(
        caller["labels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "16777227"),
        "{t}: caller sends 16777227: {caller:#}"
    );
    assert_eq!(rec["participants"].as_array().unwrap().len(), 2, "{t}");
}

#[test]
fn genesys_gvp_template() {
    let sc = Scenario {
        test: "genesys_gvp_template",
        file: "genesys-gvp-record-uri-headers-acme-body.sipp.xml",
        extra_args: &[],
        labels: &["268749245", "268749246", "268749247", "268749248"],
        optional_labels: &[],
        aors: &[
            "sip:Genesys@10.29.199.68",
            "sip:record=00U2QRJBLKAF3CCSEDB1Q2LAES0188NT_2023-10-24_15-53-28@127.0.0.1",
        ],
        tone_label: "268749245",
        call_s: 5.0,
    };
    let Some((_srs, rec, _dir)) = play(&sc) else {
        return;
    };
    let t = sc.test;
    // The two lines offered `a=inactive` from the start are paused from the
    // start (one `paused` event each, at the session start); nothing else.
    let paused: Vec<&str> = rec["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "paused")
        .map(|e| e["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        paused,
        ["268749246", "268749248"],
        "{t}: {:#}",
        rec["events"]
    );
    for kind in [
        "resumed",
        "participant-joined",
        "participant-left",
        "stream-added",
        "codec-changed",
    ] {
        assert_eq!(
            count_kind(&rec, kind),
            0,
            "{t}: no {kind}: {:#}",
            rec["events"]
        );
    }
    assert_eq!(rec["participants"].as_array().unwrap().len(), 2, "{t}");
}
