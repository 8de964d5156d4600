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
                            // A legal hold lives beside metadata.json (issue 15).
                            meta.hold = crate::lifecycle::read_hold(&rec_dir);
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
mod tests;
