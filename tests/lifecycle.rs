//! The life of a recording through `srs serve` and the CLI (issue 15), on
//! recordings made over SIP in the test (Genesys record legs, a tone per
//! call): retention with a rule of 0 days on a mixed set (some held) and
//! its dry run, the schedule inside the server, hold and release through
//! the CLI and the API, deletion of a held recording refused (409), the
//! erasure of a number, a recording removed by hand found missing,
//! integrity (one byte flipped in a published WAV), and encryption at rest
//! (no plain audio in the drop, the decrypted audio tone by tone, the API
//! decrypting with HTTP Range, or saying clearly that it cannot).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `srs <args>` (no --recordings added).
fn run_srs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(args)
        .output()
        .unwrap()
}

/// `srs <args> --recordings <drop>`, whatever its exit status:
/// (success, stdout, stderr).
fn cli(drop: &Path, args: &[&str]) -> (bool, String, String) {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--recordings", drop.to_str().unwrap()]);
    let out = run_srs(&a);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token_add(drop: &Path, name: &str, role: &str) -> String {
    let (ok, out, err) = cli(drop, &["token", "add", name, "--role", role]);
    assert!(ok, "{err}");
    out.trim().to_string()
}

struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
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

/// One HTTP request; `extra` are header lines.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &str,
    body: &str,
) -> Resp {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Resp {
        status: head[9..12].parse().unwrap(),
        head,
        body,
    }
}

use common::leg::Leg;

/// A Genesys record leg for Record DN `dn` (caller `ani`) sending `tones`
/// (Hz, seconds) in turn, then BYE; returns its index entry.
fn record(srs: &Server, dn: &str, ani: &str, tones: &[(f64, f64)], tag: &str) -> serde_json::Value {
    let call_id = call(srs, dn, ani, tones, tag);
    wait_indexed(srs, &call_id, Duration::from_secs(15))
}

/// [`record`] without waiting for the publication: the Call-ID.
fn call(srs: &Server, dn: &str, ani: &str, tones: &[(f64, f64)], tag: &str) -> String {
    let params = format!("calluuid=UUID-{tag};dn={dn};recorddn={dn};ani={ani}");
    let leg = Leg::start(srs, &params, &format!("sip:{dn}@pbx"), tag);
    // One RTP stream: the tones one after the other, timestamps running on.
    let start = std::time::Instant::now();
    let mut i: u32 = 0;
    for &(freq, secs) in tones {
        for _ in 0..(secs * 50.0) as u32 {
            let payload = pcmu_tone(freq, u64::from(i) * 160);
            let pkt = rtp_packet(i as u16, i * 160, 0x5151_0000, 0, &payload);
            leg.media.send_to(&pkt, leg.rtp).unwrap();
            i += 1;
            let due = start + Duration::from_millis(u64::from(i) * 20);
            if let Some(d) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(d);
            }
        }
    }
    leg.bye()
}

fn id_of(v: &serde_json::Value) -> String {
    v["recording_id"].as_str().unwrap().to_string()
}

fn dir_of(srs: &Server, v: &serde_json::Value) -> PathBuf {
    srs.recordings.join(v["path"].as_str().unwrap())
}

fn indexed(srs: &Server) -> Vec<String> {
    let mut v: Vec<String> = srs.list_json().iter().map(id_of).collect();
    v.sort();
    v
}

/// `srs audit --json` entries as (actor, action, outcome, ids).
fn audit(srs: &Server, args: &[&str]) -> Vec<(String, String, String, Vec<String>)> {
    let mut a = vec!["audit", "--json"];
    a.extend_from_slice(args);
    srs.cli(&a)
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
                e["recording_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// The tone of each 100 ms window of a mono WAV's bytes.
fn tones_of(wav: &[u8]) -> Vec<Option<f64>> {
    let r = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
    let rate = r.spec().sample_rate;
    let x: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    tone_windows(&x, rate, &[1000.0, 700.0, 400.0])
}

/// The tones in order, each run of windows counted once (silence and
/// mixed windows skipped): what a listener hears.
fn tone_sequence(wav: &[u8]) -> Vec<f64> {
    let mut seq: Vec<f64> = Vec::new();
    for t in tones_of(wav).into_iter().flatten() {
        if seq.last() != Some(&t) {
            seq.push(t);
        }
    }
    seq
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let cfg = dir.join("srs.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

const RETENTION: &str = r#"
[lifecycle]
retention_interval = 0

[[retention]]
name = "agents-70xx-none"
record_dn = "70*"
days = 0

[[retention]]
name = "everyone-else"
days = 3650
"#;

#[test]
fn retention_of_zero_days_deletes_exactly_the_unheld_matches() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let cfg = write_config(dir.path(), RETENTION);
    let srs = Server::start_with(&[
        "--config",
        cfg.to_str().unwrap(),
        "--recordings",
        drop.to_str().unwrap(),
    ]);
    let a = record(&srs, "7001", "+3311", &[(1000.0, 0.3)], "ret-a");
    let b = record(&srs, "7002", "+3312", &[(700.0, 0.3)], "ret-b");
    let c = record(&srs, "7003", "+3313", &[(400.0, 0.3)], "ret-c");
    let d = record(&srs, "8101", "+3314", &[(400.0, 0.3)], "ret-d");
    let (ida, idb, idc, idd) = (id_of(&a), id_of(&b), id_of(&c), id_of(&d));
    // b held by the CLI, c by the CLI with a reason.
    let (ok, out, err) = cli(&drop, &["hold", &idb]);
    assert!(ok && out.contains(&format!("held {idb}")), "{out}{err}");
    let (ok, _, err) = cli(&drop, &["hold", &idc, "--reason", "case 7"]);
    assert!(ok, "{err}");
    // Held recordings are searchable.
    let held: Vec<String> =
        serde_json::from_str::<Vec<serde_json::Value>>(&srs.cli(&["list", "--held", "--json"]))
            .unwrap()
            .iter()
            .map(id_of)
            .collect();
    assert_eq!(held.len(), 2);
    assert!(held.contains(&idb) && held.contains(&idc));
    let cfg_s = cfg.to_str().unwrap();

    // The dry run lists a alone and changes nothing.
    let (ok, out, err) = cli(
        &drop,
        &["retention", "run", "--config", cfg_s, "--dry-run", "--json"],
    );
    assert!(ok, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let would: Vec<&str> = plan["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["recording_id"].as_str().unwrap())
        .collect();
    assert_eq!(would, [ida.as_str()]);
    let kept: Vec<&str> = plan["held"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["recording_id"].as_str().unwrap())
        .collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&idb.as_str()) && kept.contains(&idc.as_str()));
    let mut all = vec![ida.clone(), idb.clone(), idc.clone(), idd.clone()];
    all.sort();
    assert_eq!(indexed(&srs), all, "the dry run changes nothing");
    for v in [&a, &b, &c, &d] {
        assert!(dir_of(&srs, v).join("metadata.json").is_file());
    }
    assert!(audit(&srs, &["--action", "delete"]).is_empty());

    // For real: a goes (files, rows, one audit entry by retention), the
    // held ones and d (another rule, 10 years) stay.
    let (ok, out, err) = cli(&drop, &["retention", "run", "--config", cfg_s]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("deleted {ida}")), "{out}");
    assert!(
        out.contains(&format!("kept {idc}")) && out.contains("case 7"),
        "{out}"
    );
    assert!(!dir_of(&srs, &a).exists());
    for v in [&b, &c, &d] {
        assert!(dir_of(&srs, v).join("metadata.json").is_file());
    }
    let mut left = vec![idb.clone(), idc.clone(), idd.clone()];
    left.sort();
    assert_eq!(indexed(&srs), left);
    let deletes = audit(&srs, &["--action", "delete"]);
    let done: Vec<_> = deletes.iter().filter(|e| e.2 == "ok").collect();
    assert_eq!(done.len(), 1, "{deletes:?}");
    assert_eq!(
        (done[0].0.as_str(), &done[0].3),
        ("retention", &vec![ida.clone()])
    );
    // Retention keeps held recordings without an entry per run.
    assert!(deletes.iter().all(|e| e.2 != "held"), "{deletes:?}");
    // The API's search with held=false finds d alone; the hold shows in
    // the recording's JSON.
    let q = http(
        srs.http,
        "GET",
        "/api/v1/recordings?held=false",
        None,
        "",
        "",
    );
    assert_eq!(q.json()["total"], 1);
    let c_now = http(
        srs.http,
        "GET",
        &format!("/api/v1/recordings/{idc}"),
        None,
        "",
        "",
    )
    .json();
    assert_eq!(c_now["hold"]["reason"], "case 7");
    assert!(c_now["hold"]["by"].as_str().unwrap().starts_with("cli:"));

    // Released, c is due at the next run.
    let (ok, out, _) = cli(&drop, &["release", &idc]);
    assert!(ok && out.contains("released"));
    let (ok, _, err) = cli(&drop, &["retention", "run", "--config", cfg_s]);
    assert!(ok, "{err}");
    let mut left = vec![idb.clone(), idd.clone()];
    left.sort();
    assert_eq!(indexed(&srs), left);
    assert!(!dir_of(&srs, &c).exists());
}

#[test]
fn the_server_applies_the_rules_on_its_schedule_and_finds_what_was_removed_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let cfg = write_config(
        dir.path(),
        "[lifecycle]\nretention_interval = 1\n\n[[retention]]\nname = \"trunk-none\"\nrecord_dn = \"88*\"\ndays = 0\n",
    );
    let srs = Server::start_with(&[
        "--config",
        cfg.to_str().unwrap(),
        "--recordings",
        drop.to_str().unwrap(),
    ]);
    let keep = record(&srs, "7001", "+3321", &[(1000.0, 0.3)], "sched-keep");
    // Due at once: it may be gone before a listing would show it.
    call(&srs, "8801", "+3322", &[(700.0, 0.3)], "sched-gone");
    let by_hand = record(&srs, "7002", "+3323", &[(400.0, 0.3)], "sched-hand");
    // Removed from the drop by hand: the next run drops it from the index.
    std::fs::remove_dir_all(dir_of(&srs, &by_hand)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while indexed(&srs) != vec![id_of(&keep)] {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}\n{}",
            indexed(&srs),
            srs.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deletes = audit(&srs, &["--action", "delete"]);
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    let (actor, _, outcome, ids) = &deletes[0];
    assert_eq!((actor.as_str(), outcome.as_str()), ("retention", "ok"));
    assert!(ids[0] != id_of(&keep) && ids[0] != id_of(&by_hand));
    let entry: serde_json::Value =
        serde_json::from_str(srs.cli(&["audit", "--json", "--action", "delete"]).trim()).unwrap();
    assert_eq!(entry["filters"]["rule"], "trunk-none");
    let gone_dir = srs
        .recordings
        .join(entry["filters"]["path"].as_str().unwrap());
    assert!(!gone_dir.exists() && gone_dir.parent().unwrap().is_dir());
    let missing = audit(&srs, &["--action", "found-missing"]);
    assert_eq!(
        missing,
        [(
            "retention".into(),
            "found-missing".into(),
            "ok".into(),
            vec![id_of(&by_hand)]
        )]
    );
    assert!(srs.log().contains("retention run"));
}

#[test]
fn hold_and_release_through_the_api_and_a_held_recording_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let admin = token_add(&drop, "admin", "admin");
    let viewer = token_add(&drop, "viewer", "viewer");
    let srs = Server::start_with(&["--recordings", drop.to_str().unwrap()]);
    let a = record(&srs, "7001", "+3331", &[(1000.0, 0.3)], "api-a");
    let b = record(&srs, "7002", "+3332", &[(700.0, 0.3)], "api-b");
    let (ida, idb) = (id_of(&a), id_of(&b));
    let h = srs.http;
    let hold = format!("/api/v1/recordings/{ida}/hold");
    // Only an admin holds; a viewer is refused (403, audited).
    let r = http(h, "PUT", &hold, Some(&viewer), "", "");
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let r = http(
        h,
        "PUT",
        &hold,
        Some(&admin),
        "Content-Type: application/json\r\n",
        r#"{"reason":"litigation 2026-17"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["hold"]["reason"], "litigation 2026-17");
    assert_eq!(r.json()["hold"]["by"], "admin");
    assert!(dir_of(&srs, &a).join("hold.json").is_file());
    let list = http(
        h,
        "GET",
        "/api/v1/recordings?held=true",
        Some(&viewer),
        "",
        "",
    )
    .json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["recordings"][0]["recording_id"], ida.as_str());
    // Deleting it: 409 naming the hold, by the API and by the CLI.
    let r = http(
        h,
        "DELETE",
        &format!("/api/v1/recordings/{ida}"),
        Some(&admin),
        "",
        "",
    );
    assert_eq!(r.status, 409);
    let e = r.json();
    assert!(
        e["error"].as_str().unwrap().contains("litigation 2026-17"),
        "{e}"
    );
    assert_eq!(e["hold"]["by"], "admin");
    let (ok, _, err) = cli(&drop, &["delete", &ida]);
    assert!(
        !ok && err.contains("legal hold") && err.contains("litigation 2026-17"),
        "{err}"
    );
    assert!(dir_of(&srs, &a).join("metadata.json").is_file());
    // The unheld one goes; a viewer may not delete.
    let r = http(
        h,
        "DELETE",
        &format!("/api/v1/recordings/{idb}"),
        Some(&viewer),
        "",
        "",
    );
    assert_eq!(r.status, 403);
    let r = http(
        h,
        "DELETE",
        &format!("/api/v1/recordings/{idb}"),
        Some(&admin),
        "",
        "",
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["deleted"], idb.as_str());
    assert!(!dir_of(&srs, &b).exists());
    let r = http(
        h,
        "GET",
        &format!("/api/v1/recordings/{idb}"),
        Some(&admin),
        "",
        "",
    );
    assert_eq!(r.status, 404);
    let r = http(
        h,
        "DELETE",
        &format!("/api/v1/recordings/{idb}"),
        Some(&admin),
        "",
        "",
    );
    assert_eq!(r.status, 404);
    // Released through the API, then deleted by the CLI.
    let r = http(h, "DELETE", &hold, Some(&admin), "", "");
    assert_eq!(r.status, 200);
    assert!(r.json().get("hold").is_none());
    assert!(!dir_of(&srs, &a).join("hold.json").exists());
    let (ok, out, err) = cli(&drop, &["delete", &ida]);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("deleted {ida}")));
    assert!(indexed(&srs).is_empty());
    // Every step in the audit trail, by whom, with the admin role.
    let trail: Vec<(String, String, String)> = audit(&srs, &[])
        .into_iter()
        .filter(|e| ["hold", "release", "delete"].contains(&e.1.as_str()))
        .map(|e| (e.0, e.1, e.2))
        .collect();
    let cli_actor = trail
        .iter()
        .find(|e| e.0.starts_with("cli:"))
        .unwrap()
        .0
        .clone();
    let want: Vec<(String, String, String)> = [
        ("viewer", "hold", "denied"),
        ("admin", "hold", "ok"),
        ("admin", "delete", "held"),
        (cli_actor.as_str(), "delete", "held"),
        ("viewer", "delete", "denied"),
        ("admin", "delete", "ok"),
        ("admin", "delete", "not-found"),
        ("admin", "release", "ok"),
        (cli_actor.as_str(), "delete", "ok"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(trail, want);
    let out = run_srs(&["audit", "--verify", "--recordings", drop.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn erasure_of_a_number_deletes_every_recording_it_took_part_in() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let srs = Server::start_with(&["--recordings", drop.to_str().unwrap()]);
    let a = record(&srs, "7001", "+33600000001", &[(1000.0, 0.3)], "gdpr-a");
    let b = record(&srs, "7002", "+33600000001", &[(700.0, 0.3)], "gdpr-b");
    let c = record(&srs, "7003", "+33600000002", &[(400.0, 0.3)], "gdpr-c");
    let (ok, out, err) = cli(&drop, &["delete", "--dn", "+33600000001", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("would delete {}", id_of(&a)))
            && out.contains(&format!("would delete {}", id_of(&b))),
        "{out}"
    );
    assert_eq!(indexed(&srs).len(), 3);
    let (ok, _, err) = cli(&drop, &["delete", "--dn", "+33600000001"]);
    assert!(ok, "{err}");
    assert_eq!(indexed(&srs), [id_of(&c)]);
    assert!(!dir_of(&srs, &a).exists() && !dir_of(&srs, &b).exists());
}

#[test]
fn one_byte_flipped_in_a_published_wav_fails_verify_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let srs = Server::start_with(&["--recordings", drop.to_str().unwrap()]);
    let a = record(&srs, "7001", "+3341", &[(1000.0, 0.4)], "int-a");
    let b = record(&srs, "7002", "+3342", &[(700.0, 0.4)], "int-b");
    // Hashes at publication: each file, the metadata XML, the manifest.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir_of(&srs, &a).join("metadata.json")).unwrap())
            .unwrap();
    let file = meta["files"][0]["name"].as_str().unwrap().to_string();
    assert_eq!(meta["files"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(meta["metadata_files"][0]["name"], "metadata.xml");
    assert_eq!(meta["manifest_sha256"].as_str().unwrap().len(), 64);
    let (ok, out, err) = cli(&drop, &["verify"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out.matches(" intact").count(), 2, "{out}");
    // One byte of the audio, flipped.
    let path = dir_of(&srs, &a).join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (ok, out, err) = cli(&drop, &["verify"]);
    assert!(!ok, "a flipped byte must fail: {out}");
    assert!(
        out.contains(&format!("{} DAMAGED: {file}: altered", id_of(&a))),
        "{out}"
    );
    assert!(err.contains(&file), "{err}");
    assert!(out.contains(&format!("{} intact", id_of(&b))), "{out}");
    // One recording asked for, by the API too.
    let (ok, _, _) = cli(&drop, &["verify", &id_of(&b)]);
    assert!(ok);
    let r = http(
        srs.http,
        "GET",
        &format!("/api/v1/recordings/{}/verify", id_of(&a)),
        None,
        "",
        "",
    );
    assert_eq!(r.status, 200);
    let rep = r.json();
    assert_eq!(rep["status"], "damaged");
    assert!(
        rep["problems"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{file}: altered")),
        "{rep}"
    );
    // A missing file is named too.
    std::fs::remove_file(&path).unwrap();
    let (ok, out, _) = cli(&drop, &["verify", "--json", &id_of(&a)]);
    assert!(!ok);
    let reps: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        reps[0]["problems"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{file}: missing")),
        "{reps}"
    );
}

/// Every file under the dated tree (not `.incoming`).
fn dated_files(root: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.len() == 4 && name.bytes().all(|b| b.is_ascii_digit()) {
            walk(&e.path(), &mut out);
        }
    }
    out
}

#[test]
fn with_encryption_the_drop_holds_no_plain_audio_and_readers_need_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    // Two keys (rotation): the recorder encrypts to both; the reader here
    // holds only the newer one.
    let key_old = dir.path().join("old.txt");
    let key_new = dir.path().join("new.txt");
    let gen = |k: &Path| {
        let out = run_srs(&["key", "generate", "--out", k.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (pub_old, pub_new) = (gen(&key_old), gen(&key_new));
    assert!(pub_old.starts_with("age1"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_new).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let admin = token_add(&drop, "admin", "admin");
    let writer_cfg = write_config(
        dir.path(),
        &format!("[encryption]\nrecipients = [\"{pub_old}\", \"{pub_new}\"]\n\n[output]\nformats = [\"wav\", \"stereo-wav\"]\n"),
    );
    let srs = Server::start_with(&[
        "--config",
        writer_cfg.to_str().unwrap(),
        "--recordings",
        drop.to_str().unwrap(),
    ]);
    let rec = record(
        &srs,
        "7001",
        "+3351",
        &[(1000.0, 0.6), (400.0, 0.6), (700.0, 0.6)],
        "enc-a",
    );
    let id = id_of(&rec);
    let rdir = dir_of(&srs, &rec);
    // Nothing plain in the dated tree: no WAV header anywhere in any file.
    let files = dated_files(&drop);
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".wav.age")),
        "{files:?}"
    );
    for p in &files {
        let bytes = std::fs::read(p).unwrap();
        assert!(
            !bytes.windows(8).any(|w| w == b"WAVEfmt ") && !bytes.starts_with(b"RIFF"),
            "plain WAV in {}",
            p.display()
        );
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(!name.ends_with(".wav"), "a plain file name left: {name}");
    }
    let listed: Vec<serde_json::Value> = rec["files"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{rec}");
    for f in &listed {
        assert_eq!(f["encryption"], "age");
        assert_eq!(
            f["stored_as"],
            format!("{}.age", f["name"].as_str().unwrap())
        );
        assert!(rdir.join(f["stored_as"].as_str().unwrap()).is_file());
    }
    let mono = listed.iter().find(|f| f["format"] == "wav").unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    // Hashes cover the encrypted files: verify needs no key.
    let (ok, out, err) = cli(&drop, &["verify"]);
    assert!(ok && out.contains(" intact"), "{out}{err}");
    // This server holds no identity: the API says so, clearly.
    let url = format!("/api/v1/recordings/{id}/files/{mono}");
    let r = http(srs.http, "GET", &url, Some(&admin), "", "");
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("encrypted") && e.contains("no identity"), "{e}");
    // srs export without a key refuses; with the new key it decrypts, and
    // the audio is what was sent, tone by tone.
    let out_dir = dir.path().join("export");
    let (ok, _, err) = cli(&drop, &["export", &id, "--out", out_dir.to_str().unwrap()]);
    assert!(!ok && err.contains("encrypted"), "{err}");
    let (ok, out, err) = cli(
        &drop,
        &[
            "export",
            &id,
            "--out",
            out_dir.to_str().unwrap(),
            "--identity",
            key_new.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains(&mono), "{out}");
    let plain = std::fs::read(out_dir.join(&mono)).unwrap();
    assert!(plain.starts_with(b"RIFF"));
    assert_eq!(tone_sequence(&plain), [1000.0, 400.0, 700.0]);
    let windows = tones_of(&plain);
    for (tone, n) in [(1000.0, 4), (400.0, 4), (700.0, 4)] {
        assert!(
            windows.iter().filter(|w| **w == Some(tone)).count() >= n,
            "{tone}: {windows:?}"
        );
    }
    assert!(out_dir.join("stereo.wav").is_file());
    assert!(out_dir.join("metadata.json").is_file());

    // A reading server with the newer identity serves the decrypted audio,
    // whole and by range.
    drop_server(srs);
    let reader_cfg = write_config(
        dir.path(),
        &format!(
            "[encryption]\nrecipients = [\"{pub_new}\"]\nidentities = [\"{}\"]\n",
            key_new.display()
        ),
    );
    let srs = Server::start_with(&[
        "--config",
        reader_cfg.to_str().unwrap(),
        "--recordings",
        drop.to_str().unwrap(),
    ]);
    let r = http(srs.http, "GET", &url, Some(&admin), "", "");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type").as_deref(), Some("audio/wav"));
    assert_eq!(r.body, plain, "the API serves what export decrypted");
    let r = http(
        srs.http,
        "GET",
        &url,
        Some(&admin),
        "Range: bytes=44-1043\r\n",
        "",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, plain[44..1044]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 44-1043/{}", plain.len()))
    );
    let r = http(
        srs.http,
        "GET",
        &url,
        Some(&admin),
        "Range: bytes=-10\r\n",
        "",
    );
    assert_eq!(r.body, plain[plain.len() - 10..]);
    let r = http(
        srs.http,
        "GET",
        &url,
        Some(&admin),
        &format!("Range: bytes={}-\r\n", plain.len()),
        "",
    );
    assert_eq!(r.status, 416);
    // A recording made by this server (one recipient) reads back too.
    let again = record(&srs, "7002", "+3352", &[(700.0, 0.5)], "enc-b");
    let f = again["files"][0]["name"].as_str().unwrap();
    let r = http(
        srs.http,
        "GET",
        &format!("/api/v1/recordings/{}/files/{f}", id_of(&again)),
        Some(&admin),
        "",
        "",
    );
    assert_eq!(r.status, 200);
    assert_eq!(tone_sequence(&r.body), [700.0]);
}

fn drop_server(srs: Server) {
    drop(srs);
}
