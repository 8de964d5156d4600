use super::*;
use crate::store::audit::AuditQuery;

/// A drop with published recordings `ids` (started two days ago, Record
/// DN from the list) and their index.
fn drop_with(ids: &[(&str, &str)]) -> (tempfile::TempDir, Lifecycle) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("rec");
    let fd = FileDrop::new(&root);
    let index_path = root.join("index.sqlite");
    let ix = Index::open(&index_path).unwrap();
    let started = crate::store::query::utc_millis(chrono::Utc::now() - chrono::Duration::days(2));
    for (id, dn) in ids {
        let dir = fd.create_incoming(id).unwrap();
        std::fs::write(dir.join("a.wav"), b"RIFF").unwrap();
        let mut m = RecordingMeta {
            recording_id: id.to_string(),
            call_id: format!("call-{id}"),
            status: "complete".into(),
            started_at: started.clone(),
            record_dn: Some(dn.to_string()),
            ..Default::default()
        };
        fd.publish(&mut m).unwrap();
        ix.upsert(&m).unwrap();
    }
    let life = Lifecycle::new(&root, index_path, Arc::from(Vec::new()));
    (tmp, life)
}

fn ids(ix: &Index) -> Vec<String> {
    let mut v: Vec<String> = ix
        .list(None)
        .unwrap()
        .into_iter()
        .map(|m| m.recording_id)
        .collect();
    v.sort();
    v
}

fn index(life: &Lifecycle) -> Index {
    Index::open_existing_at(&life.index_path).unwrap().unwrap()
}

fn actions(life: &Lifecycle) -> Vec<(String, String, Vec<String>, String)> {
    let ix = index(life);
    let mut out = Vec::new();
    audit::read(ix.conn(), &AuditQuery::default(), |r| {
        out.push((r.actor, r.action, r.recording_ids, r.outcome));
        true
    })
    .unwrap();
    out
}

#[test]
fn a_held_recording_is_never_deleted_and_the_hold_survives_a_reindex() {
    let (_tmp, life) = drop_with(&[("r1", "7001"), ("r2", "7002")]);
    let who = Who::cli();
    let held = life
        .hold("r1", &Scope::default(), Some("case 42".into()), &who)
        .unwrap();
    assert_eq!(
        held.hold.as_ref().unwrap().reason.as_deref(),
        Some("case 42")
    );
    let dir = life.root().join(&held.path);
    assert!(dir.join(HOLD_FILE).is_file());
    // Searchable, and in the recording's JSON.
    let ix = index(&life);
    let q = crate::store::Query {
        held: Some(true),
        ..Default::default()
    };
    let (found, _) = ix.search(&q).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].hold, held.hold);
    let q = crate::store::Query {
        held: Some(false),
        ..Default::default()
    };
    assert_eq!(ix.search(&q).unwrap().0[0].recording_id, "r2");
    drop(ix);

    let r = life
        .delete(
            &["r1".into(), "r2".into(), "nope".into()],
            &Scope::default(),
            &who,
            false,
        )
        .unwrap();
    assert_eq!(r.deleted.len(), 1);
    assert_eq!(r.deleted[0].recording_id, "r2");
    assert_eq!(r.held[0].recording_id, "r1");
    assert_eq!(r.not_found, ["nope"]);
    assert!(dir.is_dir());
    assert_eq!(ids(&index(&life)), ["r1"]);
    assert!(!life.root().join(TRASH_DIR).join("r2").exists());

    // The index rebuilt from the drop keeps the hold.
    let ix = Index::open_at(&life.index_path).unwrap();
    ix.reindex(&life.drop, |_, _| {}).unwrap();
    assert!(ix.get("r1").unwrap().unwrap().hold.is_some());
    drop(ix);

    let (m, was) = life.release("r1", &Scope::default(), &who).unwrap();
    assert!(was && m.hold.is_none());
    assert!(!dir.join(HOLD_FILE).exists());
    let r = life
        .delete(&["r1".into()], &Scope::default(), &who, false)
        .unwrap();
    assert_eq!(r.deleted.len(), 1);
    assert!(!dir.exists());
    let a = actions(&life);
    let kinds: Vec<(&str, &str)> = a
        .iter()
        .map(|(_, act, _, out)| (act.as_str(), out.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("hold", "ok"),
            ("delete", "held"),
            ("delete", "ok"),
            ("release", "ok"),
            ("delete", "ok")
        ]
    );
    assert_eq!(a[2].2, ["r2"]);
}

#[test]
fn an_interrupted_deletion_is_settled_by_the_next_change() {
    let (_tmp, life) = drop_with(&[("r1", "7001"), ("r2", "7002")]);
    let ix = index(&life);
    let p1 = ix.get("r1").unwrap().unwrap().path;
    let p2 = ix.get("r2").unwrap().unwrap().path;
    drop(ix);
    let trash = life.root().join(TRASH_DIR);
    std::fs::create_dir_all(&trash).unwrap();
    // r1 moved to the trash but its rows never deleted: it comes back.
    std::fs::rename(life.root().join(&p1), trash.join("r1")).unwrap();
    // r2's rows deleted, its files left in the trash: they go.
    std::fs::rename(life.root().join(&p2), trash.join("r2")).unwrap();
    let rw = Index::open_at(&life.index_path).unwrap();
    crate::store::index::delete_in(rw.conn(), "r2").unwrap();
    drop(rw);
    life.reconcile(&Who::cli()).unwrap();
    assert!(life.root().join(&p1).join("metadata.json").is_file());
    assert!(!trash.join("r2").exists());
    assert_eq!(ids(&index(&life)), ["r1"]);
}

#[test]
fn a_recording_removed_by_hand_is_dropped_from_the_index_and_audited() {
    let (_tmp, life) = drop_with(&[("r1", "7001"), ("r2", "7002")]);
    let p1 = index(&life).get("r1").unwrap().unwrap().path;
    std::fs::remove_dir_all(life.root().join(&p1)).unwrap();
    let gone = life.reconcile(&Who::retention()).unwrap();
    assert_eq!(gone, ["r1"]);
    assert_eq!(ids(&index(&life)), ["r2"]);
    let a = actions(&life);
    assert_eq!(
        a.last().unwrap(),
        &(
            "retention".to_string(),
            "found-missing".to_string(),
            vec!["r1".to_string()],
            "ok".to_string()
        )
    );
}

#[test]
fn retention_first_match_wins_and_a_dry_run_changes_nothing() {
    let (_tmp, life) = drop_with(&[("a", "7001"), ("b", "7002"), ("c", "8001")]);
    let rules: Vec<RetentionRule> = toml::from_str::<toml::Table>(
        r#"
[[retention]]
name = "keep-7002"
record_dn = "7002"
days = 30
[[retention]]
name = "short"
record_dn = "7*"
days = 1
"#,
    )
    .unwrap()["retention"]
        .clone()
        .try_into()
        .unwrap();
    let now = chrono::Utc::now();
    let dry = life.retention_run(&rules, now, &Who::cli(), true).unwrap();
    assert_eq!(
        dry.deleted
            .iter()
            .map(|d| d.recording_id.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(ids(&index(&life)), ["a", "b", "c"]);
    let done = life.retention_run(&rules, now, &Who::cli(), false).unwrap();
    assert_eq!(done.deleted[0].rule.as_deref(), Some("short"));
    assert_eq!(ids(&index(&life)), ["b", "c"]);
    let last = actions(&life).pop().unwrap();
    assert_eq!((last.0.as_str(), last.1.as_str()), ("retention", "delete"));
}

#[test]
fn a_drop_that_lost_every_recording_at_once_leaves_the_index_alone() {
    // An unmounted or swapped drop, not a clean-up by hand.
    let (_tmp, life) = drop_with(&[("r1", "7001"), ("r2", "7002")]);
    for id in ["r1", "r2"] {
        let p = index(&life).get(id).unwrap().unwrap().path;
        std::fs::remove_dir_all(life.root().join(p)).unwrap();
    }
    assert!(life.reconcile(&Who::retention()).unwrap().is_empty());
    assert_eq!(ids(&index(&life)), ["r1", "r2"]);
}

/// Issue 16: several recorders share one index. Another recorder's
/// recordings are never in this drop, and one kept in the object store has
/// no local copy to find: neither is "found missing" (before, every node's
/// retention run dropped the others' recordings from the shared index).
#[test]
fn another_recorders_or_a_stored_recording_is_not_found_missing() {
    let (_tmp, life) = drop_with(&[("mine", "7001")]);
    let life = life.with_node("node-a".into());
    let ix = Index::open_at(&life.index_path).unwrap();
    let other = RecordingMeta {
        recording_id: "theirs".into(),
        call_id: "call-theirs".into(),
        status: "complete".into(),
        started_at: "2026-11-23T10:00:00.000Z".into(),
        path: "2026/11/23/theirs".into(),
        node: Some("node-b".into()),
        ..Default::default()
    };
    ix.upsert(&other).unwrap();
    let mut stored = other.clone();
    stored.recording_id = "stored".into();
    stored.path = "2026/11/23/stored".into();
    stored.node = Some("node-a".into());
    ix.upsert(&stored).unwrap();
    ix.conn()
        .execute(
            "INSERT INTO recording_objects (recording_id, name, key, size, uploaded_at)
             VALUES ('stored', 'metadata.json', 'p/stored/metadata.json', 10, 'now')",
            [],
        )
        .unwrap();
    drop(ix);
    assert_eq!(life.reconcile(&Who::cli()).unwrap(), Vec::<String>::new());
    assert_eq!(ids(&index(&life)), ["mine", "stored", "theirs"]);
    // A recording of this node gone from the drop still is.
    let mut gone = other.clone();
    gone.recording_id = "gone".into();
    gone.node = Some("node-a".into());
    Index::open_at(&life.index_path)
        .unwrap()
        .upsert(&gone)
        .unwrap();
    assert_eq!(life.reconcile(&Who::cli()).unwrap(), ["gone"]);
}
