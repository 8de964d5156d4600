//! `srs reindex` and the `srs list` filters, as scripts use them: recordings
//! are published into a temporary drop with `FileDrop`, indexed by the
//! binary, and every filter must return exactly the expected recordings,
//! newest first.

use std::path::Path;
use std::process::{Command, Output};

use srs::recording::{DtmfMeta, EventMeta, ParticipantMeta, RecordingMeta};
use srs::store::FileDrop;

fn srs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn party(id: &str, aor: &str, name: Option<&str>) -> ParticipantMeta {
    ParticipantMeta {
        id: id.to_string(),
        aor: Some(aor.to_string()),
        name: name.map(str::to_string),
        labels: vec![id.to_string()],
        file: None,
    }
}

fn meta(id: &str, started_at: &str) -> RecordingMeta {
    RecordingMeta {
        recording_id: id.to_string(),
        call_id: format!("{id}@192.0.2.10"),
        status: "complete".to_string(),
        started_at: started_at.to_string(),
        ended_at: started_at.to_string(),
        duration_ms: 60_000,
        source: "192.0.2.10:5060".to_string(),
        transport: "udp".to_string(),
        ..Default::default()
    }
}

fn correlate(m: &mut RecordingMeta, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        m.correlation.insert(k.to_string(), v.to_string());
    }
}

/// The recordings of the drop, oldest first:
/// - `r4`: 2026-02-28 07:00 UTC (written +05:00), no Genesys data at all;
/// - `r1`: 2026-03-01 09:00, inbound to agent 1001 (Alice) in EMEA-Paris,
///   transferred to agent 7002 who joins later (event only), a DTMF digit;
/// - `r2`: 2026-03-01 23:59:59.999 (the last instant of that day), agent 1002 in APAC;
/// - `r3`: 2026-03-02 00:00 (the first instant of the next day), filed under
///   7002, status `partial`.
fn recordings() -> Vec<RecordingMeta> {
    let mut r1 = meta("r1", "2026-03-01T10:00:00+01:00");
    r1.record_dn = Some("1001".to_string());
    r1.record_dn_kind = Some("extension".to_string());
    r1.geo_location = Some("EMEA-Paris".to_string());
    r1.direction = Some("inbound".to_string());
    r1.rule = Some("agents".to_string());
    correlate(
        &mut r1,
        &[
            ("calluuid", "0A1B2C3D4E5F6071"),
            ("connid", "006f02a5c3e1d001"),
            ("ani", "+15551230001"),
            ("dnis", "8005550100"),
            ("dn", "1001"),
        ],
    );
    r1.participants = vec![
        party("p1", "sip:+15551230001@carrier.example", Some("Caller One")),
        party("p2", "sip:1001@pbx", Some("Agent Alice")),
    ];
    r1.events = vec![
        EventMeta {
            at: "2026-03-01T09:01:00Z".to_string(),
            kind: "participant-left".to_string(),
            participant_id: Some("p2".to_string()),
            aor: Some("sip:1001@pbx".to_string()),
            ..Default::default()
        },
        EventMeta {
            at: "2026-03-01T09:01:02Z".to_string(),
            kind: "participant-joined".to_string(),
            participant_id: Some("p3".to_string()),
            aor: Some("sip:7002@pbx".to_string()),
            ..Default::default()
        },
    ];
    r1.dtmf = vec![DtmfMeta {
        label: "p1".to_string(),
        digit: "5".to_string(),
        at_ms: 4000,
        duration_ms: 120,
        at: "2026-03-01T09:00:04Z".to_string(),
    }];

    let mut r2 = meta("r2", "2026-03-01T23:59:59.999Z");
    r2.record_dn = Some("1002".to_string());
    r2.geo_location = Some("APAC".to_string());
    r2.direction = Some("outbound".to_string());
    correlate(
        &mut r2,
        &[
            ("calluuid", "ffee0000aaaa0001"),
            ("ani", "1002"),
            ("dnis", "+442071234567"),
        ],
    );
    r2.participants = vec![
        party("a", "sip:1002@pbx", Some("Agent Bob")),
        party("b", "tel:+442071234567", None),
    ];

    let mut r3 = meta("r3", "2026-03-02T00:00:00Z");
    r3.status = "partial".to_string();
    r3.record_dn = Some("7002".to_string());
    r3.geo_location = Some("emea-paris".to_string());
    correlate(&mut r3, &[("calluuid", "1111222233334444")]);
    r3.participants = vec![party("x", "sip:7002@pbx", Some("Agent Carol"))];

    let mut r4 = meta("r4", "2026-02-28T12:00:00+05:00");
    r4.participants = vec![party("y", "sip:alice@example.com", None)];

    vec![r4, r1, r2, r3]
}

fn publish_all(root: &Path) {
    let fd = FileDrop::new(root);
    for mut m in recordings() {
        let dir = fd.create_incoming(&m.recording_id).unwrap();
        std::fs::write(dir.join("p1-1.wav"), b"RIFF").unwrap();
        fd.publish(&mut m).unwrap();
    }
}

struct TestDrop {
    _tmp: tempfile::TempDir,
    root: String,
}

fn drop_with_recordings() -> TestDrop {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("recordings");
    publish_all(&root);
    TestDrop {
        root: root.to_str().unwrap().to_string(),
        _tmp: tmp,
    }
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn reindex(root: &str) -> String {
    stdout(&srs(&["reindex", "--recordings", root]))
}

/// `srs list --json` with extra flags: the recording ids, in order.
fn list_ids(root: &str, flags: &[&str]) -> Vec<String> {
    let mut args = vec!["list", "--recordings", root, "--json"];
    args.extend_from_slice(flags);
    let v: serde_json::Value = serde_json::from_str(&stdout(&srs(&args))).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["recording_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn reindex_then_every_filter() {
    let d = drop_with_recordings();
    let root = d.root.as_str();
    let index = format!("{root}/index.sqlite");
    assert!(!Path::new(&index).exists());
    assert_eq!(
        reindex(root),
        format!("reindexed 4 recordings into {index}\n")
    );
    assert!(Path::new(&index).is_file());

    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["r3", "r2", "r1", "r4"]),
        (&["--record-dn", "1001"], &["r1"]),
        (&["--record-dn", "7002"], &["r3"]),
        (&["--record-dn", "100"], &[]),
        // 7002 joined r1 later by transfer; r3 is filed under it.
        (&["--dn", "7002"], &["r3", "r1"]),
        (&["--dn", "1001"], &["r1"]),
        (&["--dn", "+15551230001"], &["r1"]),
        (&["--dn", "+442071234567"], &["r2"]),
        (&["--dn", "1002"], &["r2"]),
        (&["--participant", "ALICE"], &["r1", "r4"]),
        (&["--participant", "agent"], &["r3", "r2", "r1"]),
        (&["--participant", "7002@pbx"], &["r3", "r1"]),
        (&["--participant", "carrier.example"], &["r1"]),
        (&["--call-uuid", "0a1b2c3d4e5f6071"], &["r1"]),
        (&["--call-uuid", "0A1B2C3D4E5F6071"], &["r1"]),
        (&["--call-uuid", "0a1b2c3d4e5f607"], &[]),
        (&["--ani", "+15551230001"], &["r1"]),
        (&["--ani", "15551230001"], &[]),
        (&["--dnis", "+442071234567"], &["r2"]),
        (&["--dnis", "8005550100"], &["r1"]),
        (&["--geo", "EMEA-PARIS"], &["r3", "r1"]),
        (&["--geo", "apac"], &["r2"]),
        (&["--geo", "EMEA"], &[]),
        (&["--status", "partial"], &["r3"]),
        (&["--status", "complete"], &["r2", "r1", "r4"]),
        // Day bounds: until a day includes its last instant, since a day
        // starts at its first.
        (&["--since", "2026-03-01"], &["r3", "r2", "r1"]),
        (&["--until", "2026-03-01"], &["r2", "r1", "r4"]),
        (
            &["--since", "2026-03-01", "--until", "2026-03-01"],
            &["r2", "r1"],
        ),
        (&["--since", "2026-03-02"], &["r3"]),
        (&["--until", "2026-02-28"], &["r4"]),
        // RFC 3339 bounds are instants, inclusive, any offset.
        (
            &["--since", "2026-03-01T10:00:00+01:00"],
            &["r3", "r2", "r1"],
        ),
        (&["--since", "2026-03-01T09:00:00.001Z"], &["r3", "r2"]),
        (&["--until", "2026-03-01T09:00:00Z"], &["r1", "r4"]),
        (&["--until", "2026-02-28T06:59:59Z"], &[]),
        // Filters combine with AND.
        (&["--dn", "7002", "--status", "complete"], &["r1"]),
        (&["--geo", "emea-paris", "--since", "2026-03-02"], &["r3"]),
        // Paging, newest first.
        (&["--limit", "2"], &["r3", "r2"]),
        (&["--limit", "2", "--offset", "2"], &["r1", "r4"]),
        (&["--limit", "3", "--offset", "3"], &["r4"]),
        (&["--offset", "4"], &[]),
        (&["--limit", "0"], &[]),
        (&["--dn", "7002", "--limit", "1", "--offset", "1"], &["r1"]),
        // Values are data, never SQL.
        (&["--record-dn", "x' OR '1'='1"], &[]),
        (&["--participant", "%"], &[]),
    ];
    for (flags, want) in cases {
        assert_eq!(list_ids(root, flags), *want, "srs list {flags:?}");
    }

    // The JSON objects are the metadata.json objects.
    let out = stdout(&srs(&[
        "list",
        "--recordings",
        root,
        "--json",
        "--dn",
        "7002",
    ]));
    let got: Vec<RecordingMeta> = serde_json::from_str(&out).unwrap();
    let mut want: Vec<RecordingMeta> = recordings()
        .into_iter()
        .filter(|r| r.recording_id == "r1" || r.recording_id == "r3")
        .collect();
    want.reverse();
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.recording_id, w.recording_id);
        assert_eq!(g.correlation, w.correlation);
        assert_eq!(g.events, w.events);
        assert_eq!(g.dtmf, w.dtmf);
        assert_eq!(g.record_dn, w.record_dn);
        assert!(g.path.ends_with(&w.recording_id), "{}", g.path);
    }

    // Paging says on stderr that there is more, stdout stays the JSON.
    let out = srs(&["list", "--recordings", root, "--json", "--limit", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 to 1 of 4"), "{err}");
    assert!(err.contains("--offset 1"), "{err}");

    // The table has the Record DN column.
    let table = stdout(&srs(&["list", "--recordings", root, "--record-dn", "1001"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].contains("RECORD DN"), "{table}");
    assert!(
        lines[1].contains("r1") && lines[1].contains(" 1001 "),
        "{table}"
    );
    let none = stdout(&srs(&["list", "--recordings", root, "--record-dn", "9"]));
    assert_eq!(none, "no recordings\n");

    // show: the new fields.
    let show = stdout(&srs(&["show", "r1", "--recordings", root]));
    for v in [
        "record dn:  1001 (kind extension)",
        "geo:        EMEA-Paris",
        "direction:  inbound",
        "calluuid: 0A1B2C3D4E5F6071",
        "participant-joined, participant p3, aor sip:7002@pbx",
        "5 at 2026-03-01 09:00:04",
    ] {
        assert!(show.contains(v), "{v:?} missing in:\n{show}");
    }
}

#[test]
fn reindex_is_idempotent_and_follows_the_drop() {
    let d = drop_with_recordings();
    let root = d.root.as_str();
    let index = format!("{root}/custom/idx.sqlite");
    let run = || stdout(&srs(&["reindex", "--recordings", root, "--index", &index]));
    let list = || {
        stdout(&srs(&[
            "list",
            "--recordings",
            root,
            "--index",
            &index,
            "--json",
        ]))
    };
    assert_eq!(run(), format!("reindexed 4 recordings into {index}\n"));
    let first = list();
    assert_eq!(run(), format!("reindexed 4 recordings into {index}\n"));
    assert_eq!(list(), first);
    assert_eq!(
        list_ids(root, &["--index", &index, "--dn", "7002"]),
        ["r3", "r1"]
    );

    // A recording removed from the drop leaves the index on the next reindex.
    let r2 = serde_json::from_str::<Vec<RecordingMeta>>(&first)
        .unwrap()
        .into_iter()
        .find(|r| r.recording_id == "r2")
        .unwrap();
    std::fs::remove_dir_all(Path::new(root).join(&r2.path)).unwrap();
    let out = srs(&["reindex", "--recordings", root, "--index", &index]);
    assert_eq!(
        stdout(&out),
        format!("reindexed 3 recordings into {index}\n")
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("removed 1"), "{err}");
    assert!(err.contains("found-missing: r2"), "{err}");
    assert_eq!(list_ids(root, &["--index", &index]), ["r3", "r1", "r4"]);
    // Audited as found missing, by the one who ran the reindex (issue 15).
    let trail = stdout(&srs(&[
        "audit",
        "--recordings",
        root,
        "--index",
        &index,
        "--action",
        "found-missing",
        "--json",
    ]));
    let entry: serde_json::Value = serde_json::from_str(trail.trim()).unwrap();
    assert_eq!(entry["recording_ids"], serde_json::json!(["r2"]));
    assert!(
        entry["actor"].as_str().unwrap().starts_with("cli:"),
        "{entry}"
    );
}

#[test]
fn bad_filters_fail_naming_the_flag() {
    let d = drop_with_recordings();
    let root = d.root.as_str();
    reindex(root);
    for (flag, value) in [
        ("--since", "yesterday"),
        ("--until", "2026-13-01"),
        ("--limit", "1001"),
    ] {
        let out = srs(&["list", "--recordings", root, flag, value]);
        assert!(!out.status.success(), "{flag} {value}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        let name = flag.trim_start_matches("--");
        assert!(err.contains(name), "{flag}: {err}");
        assert!(err.contains(value), "{flag}: {err}");
    }
    // Even without an index, the flags are checked.
    let empty = tempfile::tempdir().unwrap();
    let out = srs(&[
        "list",
        "--recordings",
        empty.path().to_str().unwrap(),
        "--since",
        "soon",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("since"));
}

#[test]
fn list_without_index_is_empty_and_reindex_of_empty_drop_creates_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("none");
    let root = root.to_str().unwrap();
    assert!(list_ids(root, &["--dn", "1001"]).is_empty());
    assert_eq!(
        reindex(root),
        format!("reindexed 0 recordings into {root}/index.sqlite\n")
    );
    assert!(list_ids(root, &[]).is_empty());
}
