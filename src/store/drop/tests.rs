use super::*;
use crate::recording::{FileMeta, ParticipantMeta};

fn meta(id: &str, started_at: &str) -> RecordingMeta {
    RecordingMeta {
        recording_id: id.to_string(),
        call_id: format!("call-{id}@example.com"),
        status: "complete".to_string(),
        started_at: started_at.to_string(),
        ended_at: started_at.to_string(),
        duration_ms: 65_000,
        source: "192.0.2.1:5060".to_string(),
        transport: "udp".to_string(),
        participants: vec![ParticipantMeta {
            id: "p1".to_string(),
            aor: Some("sip:alice@example.com".to_string()),
            labels: vec!["1".to_string()],
            file: Some("p1.wav".to_string()),
            ..Default::default()
        }],
        files: vec![FileMeta {
            name: "p1.wav".to_string(),
            duration_ms: 65_000,
            sample_rate: 8000,
            channels: 1,
            bytes: 4,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn stage(fd: &FileDrop, id: &str) -> PathBuf {
    let inc = fd.create_incoming(id).unwrap();
    fs::write(inc.join("p1.wav"), b"RIFF").unwrap();
    inc
}

#[test]
fn a_batch_publishes_each_and_a_failure_holds_back_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    stage(&fd, "rec-a");
    stage(&fd, "rec-c");
    let mut metas = vec![
        meta("rec-a", "2026-11-23T10:00:00Z"),
        meta("rec-b", "2026-11-23T10:00:00Z"), // never staged
        meta("rec-c", "2026-11-24T10:00:00Z"),
    ];
    metas[1].path = "before".into();
    let results = fd.publish_batch(&mut metas);
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0].as_ref().unwrap(),
        &tmp.path().join("2026/11/23/rec-a")
    );
    assert!(matches!(results[1], Err(DropError::IncomingMissing(_))));
    assert_eq!(
        results[2].as_ref().unwrap(),
        &tmp.path().join("2026/11/24/rec-c")
    );
    assert_eq!(metas[0].path, "2026/11/23/rec-a");
    assert_eq!(metas[1].path, "before", "a failed one keeps its path");
    for (m, dir) in [
        (&metas[0], "2026/11/23/rec-a"),
        (&metas[2], "2026/11/24/rec-c"),
    ] {
        let back: RecordingMeta =
            serde_json::from_slice(&fs::read(tmp.path().join(dir).join(METADATA_FILE)).unwrap())
                .unwrap();
        assert_eq!(&back, m);
    }
    assert!(!tmp.path().join(".incoming/rec-a").exists());
    // Publishing the same again: already there, nothing moved.
    stage(&fd, "rec-a");
    let again = fd.publish_batch(&mut metas[..1]);
    assert!(matches!(again[0], Err(DropError::AlreadyExists(_))));
    assert!(tmp.path().join(".incoming/rec-a").exists());
}

#[test]
fn publish_moves_directory_into_dated_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    let inc = stage(&fd, "rec-1");
    assert_eq!(inc, tmp.path().join(".incoming/rec-1"));

    // 23:30 at -05:00 is the next day in UTC.
    let mut m = meta("rec-1", "2026-11-22T23:30:00-05:00");
    let fin = fd.publish(&mut m).unwrap();

    assert_eq!(m.path, "2026/11/23/rec-1");
    assert_eq!(fin, tmp.path().join("2026/11/23/rec-1"));
    assert!(!inc.exists());
    assert_eq!(fs::read(fin.join("p1.wav")).unwrap(), b"RIFF");
    let back: RecordingMeta =
        serde_json::from_slice(&fs::read(fin.join(METADATA_FILE)).unwrap()).unwrap();
    assert_eq!(back, m);
}

#[test]
fn the_in_progress_description_is_not_published() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    let inc = stage(&fd, "rec-j");
    let mut m = meta("rec-j", "2026-11-23T10:00:00Z");
    let mut live = m.clone();
    live.status = "recording".into();
    crate::store::recover::write_incoming(&inc, &live).unwrap();
    fs::write(inc.join(".incoming.json.tmp"), b"{").unwrap();
    let fin = fd.publish(&mut m).unwrap();
    let mut names: Vec<_> = fs::read_dir(&fin)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [METADATA_FILE, "p1.wav"]);
    // A failed publication keeps it: recovery needs it.
    let inc = stage(&fd, "rec-k");
    crate::store::recover::write_incoming(&inc, &live).unwrap();
    fs::create_dir_all(tmp.path().join("2026/11/23/rec-k")).unwrap();
    let mut k = meta("rec-k", "2026-11-23T10:00:00Z");
    assert!(fd.publish(&mut k).is_err());
    assert!(inc.join(crate::store::recover::INCOMING_FILE).is_file());
}

#[test]
fn unparsable_start_falls_back_to_today() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    stage(&fd, "r2");
    let before = Utc::now().format("%Y/%m/%d").to_string();
    let mut m = meta("r2", "not a date");
    let fin = fd.publish(&mut m).unwrap();
    let after = Utc::now().format("%Y/%m/%d").to_string();
    assert!(m.path == format!("{before}/r2") || m.path == format!("{after}/r2"));
    assert!(fin.join(METADATA_FILE).is_file());
}

#[test]
fn invalid_ids_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    let long = "a".repeat(65);
    for bad in ["../x", "", "a/b", "..", "a b", "é", long.as_str(), "a\\b"] {
        assert!(
            matches!(fd.create_incoming(bad), Err(DropError::InvalidId(_))),
            "{bad:?} accepted"
        );
        let mut m = meta(bad, "2026-11-23T10:00:00Z");
        assert!(matches!(fd.publish(&mut m), Err(DropError::InvalidId(_))));
        assert_eq!(m.path, "");
    }
    assert!(fd.create_incoming(&"a".repeat(64)).is_ok());
    assert!(fd.create_incoming("Az09_-").is_ok());
    // Nothing was created outside the incoming dir.
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(".incoming")]);
}

#[test]
fn publishing_twice_fails_and_keeps_both() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    stage(&fd, "dup");
    let mut m = meta("dup", "2026-11-23T10:00:00Z");
    let fin = fd.publish(&mut m).unwrap();

    let inc = stage(&fd, "dup");
    fs::write(inc.join("second.wav"), b"RIFF2").unwrap();
    let mut m2 = meta("dup", "2026-11-23T11:00:00Z");
    m2.path = "old".to_string();
    match fd.publish(&mut m2) {
        Err(DropError::AlreadyExists(p)) => assert_eq!(p, fin),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(m2.path, "old");
    // Both copies intact.
    assert_eq!(fs::read(inc.join("second.wav")).unwrap(), b"RIFF2");
    assert!(inc.join("p1.wav").is_file());
    assert!(fin.join("p1.wav").is_file());
    assert!(!fin.join("second.wav").exists());
    let back: RecordingMeta =
        serde_json::from_slice(&fs::read(fin.join(METADATA_FILE)).unwrap()).unwrap();
    assert_eq!(back, m);
}

#[test]
fn empty_existing_target_is_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    let inc = stage(&fd, "e1");
    fs::create_dir_all(tmp.path().join("2026/11/23/e1")).unwrap();
    let mut m = meta("e1", "2026-11-23T10:00:00Z");
    assert!(matches!(
        fd.publish(&mut m),
        Err(DropError::AlreadyExists(_))
    ));
    assert!(inc.join("p1.wav").is_file());
}

#[test]
fn publish_without_incoming_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    let mut m = meta("ghost", "2026-11-23T10:00:00Z");
    assert!(matches!(
        fd.publish(&mut m),
        Err(DropError::IncomingMissing(_))
    ));
    assert_eq!(m.path, "");
}

#[test]
fn scan_finds_published_only() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path());
    assert!(fd.scan().unwrap().is_empty());

    stage(&fd, "a");
    let mut a = meta("a", "2026-11-23T10:00:00Z");
    fd.publish(&mut a).unwrap();
    stage(&fd, "b");
    let mut b = meta("b", "2025-01-02T03:04:05Z");
    fd.publish(&mut b).unwrap();

    // Unpublished recording with a valid metadata.json: ignored.
    let inc = stage(&fd, "c");
    fs::write(
        inc.join(METADATA_FILE),
        serde_json::to_vec(&meta("c", "2026-11-23T10:00:00Z")).unwrap(),
    )
    .unwrap();
    // Garbage json in the dated tree: skipped.
    let bad = tmp.path().join("2026/11/23/garbage");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join(METADATA_FILE), b"{ not json").unwrap();
    // Directory without metadata.json, stray files, non-date directories.
    fs::create_dir_all(tmp.path().join("2026/11/23/empty")).unwrap();
    fs::write(tmp.path().join("index.sqlite"), b"x").unwrap();
    fs::write(tmp.path().join("2026/11/23/stray.json"), b"{}").unwrap();
    let other = tmp.path().join("misc/11/23/z");
    fs::create_dir_all(&other).unwrap();
    fs::write(
        other.join(METADATA_FILE),
        serde_json::to_vec(&meta("z", "2026-11-23T10:00:00Z")).unwrap(),
    )
    .unwrap();

    let found = fd.scan().unwrap();
    assert_eq!(found, vec![b, a]);
}

#[test]
fn scan_of_missing_root_is_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let fd = FileDrop::new(tmp.path().join("nope"));
    assert!(fd.scan().unwrap().is_empty());
    assert_eq!(fd.root(), tmp.path().join("nope"));
}
