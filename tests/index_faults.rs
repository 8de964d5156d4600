//! Faults of the index while the server runs: no fault of the index may
//! stop the server or a recording, and the index follows its path.
//!
//! - Its files made immutable (`chattr +i`, ext4 and root): before, the
//!   next index write was a SIGBUS on the memory-mapped `-shm` of WAL mode
//!   that killed the server, every live call with it.
//! - The file deleted or replaced: before, the server wrote on into the
//!   unlinked file and nothing it published was found any more.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `chattr +i` / `-i` on a file.
fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Makes files immutable, and mutable again when dropped (or else the
/// temporary directory could never be removed).
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(files: Vec<PathBuf>) -> Immutable {
        for f in &files {
            assert!(chattr("+i", f), "chattr +i {}", f.display());
        }
        Immutable(files)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for f in &self.0 {
            chattr("-i", f);
        }
    }
}

/// Whether `chattr +i` works here (root, a file system that has the flag:
/// ext4 or XFS; not tmpfs).
fn immutable_supported(dir: &Path) -> bool {
    let probe = dir.join("chattr-probe");
    std::fs::write(&probe, b"x").unwrap();
    let ok = chattr("+i", &probe);
    chattr("-i", &probe);
    let _ = std::fs::remove_file(&probe);
    ok
}

/// The index's files as they are now: the database and whatever SQLite
/// keeps beside it (`-journal`, or `-wal` and `-shm` in WAL mode).
fn index_files(recordings: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(recordings)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("index.sqlite"))
        })
        .collect()
}

fn alive(srs: &mut Server) -> bool {
    srs.child.try_wait().unwrap().is_none() && http_get(srs.http, "/healthz").is_some()
}

#[test]
fn an_unwritable_index_stops_nothing_and_indexing_resumes_after() {
    if !peers_available("index_faults", &["chattr"]) {
        return;
    }
    let mut srs = Server::start();
    if !immutable_supported(&srs.recordings) {
        eprintln!("\n*** SKIPPED an_unwritable_index: chattr +i does not work on {} (needs root and ext4/XFS) ***\n", srs.recordings.display());
        return;
    }
    let first = short_call(&srs, "fault-1");
    wait_indexed(&srs, &first, Duration::from_secs(10));

    // Every file SQLite writes in place: the database and its journal
    // (WAL mode: the database and the -shm, the file seen failing in
    // production; its -wal, only appended to, is left writable so that
    // the write goes on to the mapped -shm, as it did there).
    let files: Vec<PathBuf> = index_files(&srs.recordings)
        .into_iter()
        .filter(|f| !f.to_string_lossy().ends_with("-wal"))
        .collect();
    let guard = Immutable::set(files.clone());
    // A call while the index cannot be written: it still lands in the drop,
    // and the server lives on and says what is wrong.
    let during = short_call(&srs, "fault-2");
    let rec = wait_in_drop(&srs, &during, Duration::from_secs(10));
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    assert!(
        dir.join(rec["files"][0]["name"].as_str().unwrap())
            .is_file(),
        "the audio is in the drop"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        alive(&mut srs),
        "the server died on an unwritable index ({files:?}): {:?}\n{}",
        srs.child.try_wait(),
        srs.log()
    );
    let log = srs.log();
    assert!(
        log.contains("index unusable"),
        "the fault is logged:\n{log}"
    );
    // And it still takes calls.
    let also_during = short_call(&srs, "fault-3");
    wait_in_drop(&srs, &also_during, Duration::from_secs(10));

    // The fault lifted: the next batch (or the 5 s retry) indexes what
    // waited, with no `srs reindex`.
    drop(guard);
    let after = short_call(&srs, "fault-4");
    for call in [&first, &during, &also_during, &after] {
        wait_indexed(&srs, call, Duration::from_secs(10));
    }
    assert!(srs.log().contains("the index is usable again"));
    assert!(alive(&mut srs));
}

#[test]
fn a_deleted_or_replaced_index_is_reopened_at_its_path() {
    let srs = Server::start();
    let index = srs.recordings.join("index.sqlite");
    let first = short_call(&srs, "swap-1");
    wait_indexed(&srs, &first, Duration::from_secs(10));

    // Deleted: the next recording goes into a new index at the path.
    for f in index_files(&srs.recordings) {
        std::fs::remove_file(f).unwrap();
    }
    let second = short_call(&srs, "swap-2");
    let listed = wait_indexed(&srs, &second, Duration::from_secs(10));
    assert_eq!(listed["call_id"], second);
    assert!(
        srs.log().contains("the index file was deleted"),
        "{}",
        srs.log()
    );

    // Replaced: `srs reindex` into a new file renamed over the index.
    let rebuilt = srs.recordings.with_file_name("rebuilt.sqlite");
    let out = Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(["reindex", "--recordings"])
        .arg(&srs.recordings)
        .arg("--index")
        .arg(&rebuilt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::rename(&rebuilt, &index).unwrap();
    let third = short_call(&srs, "swap-3");
    wait_indexed(&srs, &third, Duration::from_secs(10));
    let all: Vec<String> = srs
        .list_json()
        .iter()
        .map(|r| r["call_id"].as_str().unwrap().to_string())
        .collect();
    for call in [&first, &second, &third] {
        assert!(all.contains(call), "{call} in {all:?}");
    }
    assert!(
        srs.log().contains("the index file was replaced"),
        "{}",
        srs.log()
    );
}
