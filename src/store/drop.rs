//! The file drop: where finished recordings are published.
//!
//! Layout under the drop root:
//!
//! ```text
//! <root>/.incoming/<recording_id>/          being written, invisible to consumers
//! <root>/YYYY/MM/DD/<recording_id>/         published (UTC date of `started_at`)
//!     metadata.json                         pretty JSON of `RecordingMeta`
//!     *.wav, ...                            the audio and raw metadata files
//! ```
//!
//! A recording appears in its final place in one atomic `rename(2)` of its
//! directory, after all its files, `metadata.json` included, are durable.
//! Consumers watching the dated tree therefore never see a partial recording.
//!
//! Durability is a group commit ([`FileDrop::publish_batch`]): for a batch
//! of recordings, every `metadata.json` is written, one `syncfs(2)` makes
//! all their files durable, the directories are renamed into place, and a
//! second `syncfs(2)` makes the renames durable. Two flushes per batch
//! instead of a dozen fsyncs per recording (each file, each directory).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Utc};

use crate::recording::RecordingMeta;

/// Name of the staging directory under the drop root.
pub const INCOMING_DIR: &str = ".incoming";
/// Name of the in-progress description inside an incoming directory
/// (written by `recover::write_incoming`, read back after a crash).
pub const INCOMING_FILE: &str = "incoming.json";
/// Its temporary name while being rewritten.
pub const INCOMING_TMP: &str = ".incoming.json.tmp";
/// Name of the metadata file inside each recording directory.
pub const METADATA_FILE: &str = "metadata.json";

/// Longest accepted recording id.
const MAX_ID_LEN: usize = 64;

/// Errors of the file drop.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// The recording id is not `[0-9A-Za-z_-]{1,64}`.
    #[error("invalid recording id {0:?}: expected 1 to 64 characters of [0-9A-Za-z_-]")]
    InvalidId(String),
    /// The incoming directory of the recording to publish does not exist.
    #[error("incoming directory {0} does not exist")]
    IncomingMissing(PathBuf),
    /// A recording with that id was already published for that date; nothing was moved.
    #[error("target directory {0} already exists; the recording stays in the incoming directory")]
    AlreadyExists(PathBuf),
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `metadata.json` could not be serialised.
    #[error("serialising metadata.json: {0}")]
    Json(#[from] serde_json::Error),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DropError {
    let path = path.to_path_buf();
    move |source| DropError::Io { op, path, source }
}

/// Checks that `id` is `[0-9A-Za-z_-]{1,64}`, the only ids ever used in a path.
pub fn validate_recording_id(id: &str) -> Result<(), DropError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DropError::InvalidId(id.to_string()))
    }
}

/// The file drop rooted at one directory.
#[derive(Debug, Clone)]
pub struct FileDrop {
    root: PathBuf,
}

impl FileDrop {
    /// A drop rooted at `root`. Nothing is created until used.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The drop root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn incoming_dir(&self, recording_id: &str) -> Result<PathBuf, DropError> {
        validate_recording_id(recording_id)?;
        Ok(self.root.join(INCOMING_DIR).join(recording_id))
    }

    /// `<root>/.incoming/<recording_id>`, created with its parents (fine if it exists).
    /// The id must be `[0-9A-Za-z_-]{1,64}`.
    pub fn create_incoming(&self, recording_id: &str) -> Result<PathBuf, DropError> {
        let dir = self.incoming_dir(recording_id)?;
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(dir)
    }

    /// Publishes the recording whose files are in `<root>/.incoming/<recording_id>`.
    ///
    /// Sets `meta.path` to `YYYY/MM/DD/<recording_id>` (UTC date of
    /// `meta.started_at`, or of now if that is not RFC 3339), writes
    /// `metadata.json`, makes every file durable, renames the directory into
    /// the dated tree and makes that durable. Returns the absolute
    /// (root-joined) final directory.
    ///
    /// If the target exists already, fails with [`DropError::AlreadyExists`] and
    /// leaves the incoming directory in place. On any error `meta.path` is
    /// restored to its previous value.
    pub fn publish(&self, meta: &mut RecordingMeta) -> Result<PathBuf, DropError> {
        self.publish_batch(std::slice::from_mut(meta))
            .pop()
            .unwrap_or_else(|| Err(DropError::IncomingMissing(self.root.join(INCOMING_DIR))))
    }

    /// [`FileDrop::publish`] for several recordings at once, with one
    /// durability flush before the renames and one after, for the whole
    /// batch. One result per recording, in order; a recording that fails
    /// stays in `.incoming` and does not hold back the others.
    pub fn publish_batch(&self, metas: &mut [RecordingMeta]) -> Vec<Result<PathBuf, DropError>> {
        let previous: Vec<String> = metas.iter().map(|m| m.path.clone()).collect();
        let t0 = std::time::Instant::now();
        // 1. metadata.json of each, not yet durable.
        let mut staged: Vec<Result<(PathBuf, PathBuf), DropError>> =
            metas.iter_mut().map(|meta| self.stage(meta)).collect();
        let t1 = std::time::Instant::now();
        // 2. Everything written so far reaches the disk, in one flush.
        if staged.iter().any(|r| r.is_ok()) {
            if let Err(e) = self.flush() {
                let msg = e.to_string();
                for r in staged.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(DropError::Io {
                        op: "flushing",
                        path: self.root.clone(),
                        source: std::io::Error::other(msg.clone()),
                    });
                }
            }
        }
        let t2 = std::time::Instant::now();
        // 3. The renames, then one flush to make them durable.
        let results: Vec<Result<PathBuf, DropError>> = staged
            .into_iter()
            .map(|r| {
                let (incoming, target) = r?;
                let parent = target.parent().unwrap_or(&self.root);
                fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
                if target_exists(&target)? {
                    return Err(DropError::AlreadyExists(target));
                }
                fs::rename(&incoming, &target).map_err(io_err("renaming into place", &incoming))?;
                // The live description (`status: recording`) was for crash
                // recovery, which only looks in .incoming; metadata.json now
                // says it all. Removed after the rename, so a recording that
                // fails to publish keeps it; made durable by the flush below.
                for stale in [INCOMING_FILE, INCOMING_TMP] {
                    let _ = fs::remove_file(target.join(stale));
                }
                Ok(target)
            })
            .collect();
        let t3 = std::time::Instant::now();
        if results.iter().any(|r| r.is_ok()) {
            if let Err(e) = self.flush() {
                // Renamed but maybe not durable: reported, the recording is
                // in its place (a crash now may leave it in .incoming, where
                // recovery publishes it).
                tracing::error!(error = %e, "flushing the published recordings");
            }
        }
        let ms = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e3;
        let t4 = std::time::Instant::now();
        tracing::debug!(
            recordings = metas.len(),
            stage_ms = ms(t0, t1),
            sync_files_ms = ms(t1, t2),
            rename_ms = ms(t2, t3),
            sync_renames_ms = ms(t3, t4),
            "publish batch"
        );
        for ((r, meta), previous) in results.iter().zip(metas.iter_mut()).zip(previous) {
            if r.is_err() {
                meta.path = previous; // not published: the staged path is not where it is
            }
        }
        results
    }

    /// Checks a recording can be published and writes its `metadata.json`
    /// (with `meta.path` set). Returns (incoming dir, target dir).
    fn stage(&self, meta: &mut RecordingMeta) -> Result<(PathBuf, PathBuf), DropError> {
        let id = meta.recording_id.clone();
        let incoming = self.incoming_dir(&id)?;
        if !incoming.is_dir() {
            return Err(DropError::IncomingMissing(incoming));
        }
        let date = publish_date(&meta.started_at, &id);
        let (y, m, d) = (
            format!("{:04}", date.year()),
            format!("{:02}", date.month()),
            format!("{:02}", date.day()),
        );
        let target = self.root.join(&y).join(&m).join(&d).join(&id);
        // Checked before writing anything; rename(2) would silently replace an
        // empty target directory, so this check is what guarantees no overwrite.
        if target_exists(&target)? {
            return Err(DropError::AlreadyExists(target));
        }
        meta.path = format!("{y}/{m}/{d}/{id}");
        let mut json = serde_json::to_vec_pretty(&*meta)?;
        json.push(b'\n');
        let meta_file = incoming.join(METADATA_FILE);
        fs::write(&meta_file, &json).map_err(io_err("writing", &meta_file))?;
        Ok((incoming, target))
    }

    /// Makes everything written to the drop's file system durable
    /// (Linux `syncfs(2)`; the server is Linux-only: epoll, recvmmsg).
    fn flush(&self) -> Result<(), DropError> {
        use std::os::fd::AsRawFd;
        let root = File::open(&self.root).map_err(io_err("opening", &self.root))?;
        // SAFETY: syncfs only reads the descriptor, which `root` keeps open.
        if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
            return Err(DropError::Io {
                op: "syncing",
                path: self.root.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Every published recording: `YYYY/MM/DD/*/metadata.json` under the root.
    ///
    /// `.incoming` and any directory whose name is not a year, month or day
    /// are ignored; a `metadata.json` that cannot be read or parsed is skipped
    /// with a warning. `path` of each result is set to where it was found.
    /// A missing root gives an empty list. Sorted by `started_at`, then id.
    pub fn scan(&self) -> Result<Vec<RecordingMeta>, DropError> {
        let mut out = Vec::new();
        if !self.root.exists() {
            return Ok(out);
        }
        let years = fs::read_dir(&self.root).map_err(io_err("reading", &self.root))?;
        for (year, year_dir) in numbered_subdirs(years, 4, &self.root) {
            let Some(months) = read_dir_or_warn(&year_dir) else {
                continue;
            };
            for (month, month_dir) in numbered_subdirs(months, 2, &year_dir) {
                let Some(days) = read_dir_or_warn(&month_dir) else {
                    continue;
                };
                for (day, day_dir) in numbered_subdirs(days, 2, &month_dir) {
                    let Some(recs) = read_dir_or_warn(&day_dir) else {
                        continue;
                    };
                    for entry in recs.flatten() {
                        let rec_dir = entry.path();
                        if !rec_dir.is_dir() {
                            continue;
                        }
                        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                            continue;
                        };
                        if let Some(mut meta) = read_meta(&rec_dir.join(METADATA_FILE)) {
                            meta.path = format!("{year}/{month}/{day}/{name}");
                            out.push(meta);
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            (a.started_at.as_str(), a.recording_id.as_str())
                .cmp(&(b.started_at.as_str(), b.recording_id.as_str()))
        });
        Ok(out)
    }
}

/// UTC date of an RFC 3339 time, or of now.
fn publish_date(started_at: &str, id: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(started_at) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => {
            tracing::warn!(recording_id = %id, started_at, error = %e,
                "started_at is not RFC 3339; filing the recording under today's date");
            Utc::now()
        }
    }
}

fn target_exists(target: &Path) -> Result<bool, DropError> {
    match fs::symlink_metadata(target) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DropError::Io {
            op: "checking",
            path: target.to_path_buf(),
            source: e,
        }),
    }
}

fn read_dir_or_warn(dir: &Path) -> Option<fs::ReadDir> {
    match fs::read_dir(dir) {
        Ok(rd) => Some(rd),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot read directory; skipped");
            None
        }
    }
}

/// Subdirectories of `parent` whose names are exactly `digits` ASCII digits.
fn numbered_subdirs(rd: fs::ReadDir, digits: usize, parent: &Path) -> Vec<(String, PathBuf)> {
    let mut v = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %parent.display(), error = %e, "cannot read directory entry");
                continue;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.len() == digits && name.bytes().all(|b| b.is_ascii_digit()) {
            let path = entry.path();
            if path.is_dir() {
                v.push((name, path));
            }
        }
    }
    v.sort();
    v
}

fn read_meta(file: &Path) -> Option<RecordingMeta> {
    let bytes = match fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cannot read metadata.json; skipped");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "unparsable metadata.json; skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
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
            let back: RecordingMeta = serde_json::from_slice(
                &fs::read(tmp.path().join(dir).join(METADATA_FILE)).unwrap(),
            )
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
}
