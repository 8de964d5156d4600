//! Integrity of published recordings (docs/security.md, Integrity): the
//! SHA-256 of every file, a manifest hash of the whole recording, and
//! their verification (`srs verify`, `GET /api/v1/recordings/{id}/verify`).
//!
//! At publication ([`seal`], on an encoder thread, never the SIP task) and
//! at crash recovery, every file of the recording is hashed as it is
//! stored (encrypted files as encrypted: checking needs no key):
//!
//! - `files[].sha256`: each audio file (`stored_as` when encrypted);
//! - `metadata_files[]`: the raw metadata XML documents kept beside it
//!   (`metadata.xml`, `metadata-update-N.xml`), name, SHA-256, size;
//! - `manifest_sha256`: SHA-256 of the manifest, the text made of one line
//!   `<sha256>  <stored name>\n` (hex, two spaces: `sha256sum`'s format)
//!   per file of both lists, sorted by stored name (byte order). Running
//!   `sha256sum *.wav* *.opus* *.xml | sort -k2 | sha256sum` in the
//!   directory gives the same hash when nothing else is there.
//!
//! Not covered: `metadata.json` (it holds the hashes; its copy in the
//! index is compared instead: [`verify`] reports a drop whose manifest hash
//! differs from the index's) and `hold.json` (a hold changes over time).
//! A file in the directory that no list names is reported as `extra`
//! without failing the check.

use std::io::Read;
use std::path::Path;

use crate::recording::{RecordingMeta, StoredFile};
use crate::store::crypt::{self, CryptError, Encryptor};

/// Errors while sealing a recording.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("hashing {path}: {source}")]
    Hash {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Crypt(#[from] CryptError),
}

/// SHA-256 (hex) and length of a file, read in 64 KiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        ctx.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex(ctx.finish().as_ref()), len))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `(stored name, sha256)` of every file the manifest covers, sorted by
/// name; `None` if one has no hash (published before integrity existed).
fn entries(meta: &RecordingMeta) -> Option<Vec<(String, String)>> {
    let mut v: Vec<(String, String)> = Vec::new();
    for f in &meta.files {
        v.push((f.stored_name().to_string(), f.sha256.clone()?));
    }
    for f in &meta.metadata_files {
        v.push((f.name.clone(), f.sha256.clone()));
    }
    v.sort();
    Some(v)
}

/// The manifest text (module doc), `None` without hashes.
pub fn manifest_text(meta: &RecordingMeta) -> Option<String> {
    let lines = entries(meta)?;
    Some(
        lines
            .iter()
            .map(|(name, sha)| format!("{sha}  {name}\n"))
            .collect(),
    )
}

/// SHA-256 (hex) of the manifest text.
pub fn manifest_sha256(meta: &RecordingMeta) -> Option<String> {
    manifest_text(meta)
        .map(|t| hex(ring::digest::digest(&ring::digest::SHA256, t.as_bytes()).as_ref()))
}

/// Whether `name` is a raw metadata XML document kept beside the audio.
fn is_metadata_xml(name: &str) -> bool {
    name.ends_with(".xml") && !name.starts_with('.')
}

/// Seals a recording in its (incoming) directory, just before it is
/// published: encrypts each audio file when `encryptor` is given (a file
/// already encrypted is kept), then hashes every file and sets
/// `files[].sha256`, `metadata_files` and `manifest_sha256`.
///
/// A file that cannot be encrypted fails the whole seal (the recording is
/// not published in clear by mistake; it stays in `.incoming` and its
/// audio is kept). A listed file missing from the directory is left
/// without a hash (and so is the manifest): it is reported, not invented.
pub fn seal(
    dir: &Path,
    meta: &mut RecordingMeta,
    encryptor: Option<&Encryptor>,
) -> Result<(), IntegrityError> {
    if let Some(enc) = encryptor {
        for f in meta.files.iter_mut() {
            if f.encryption.is_some() || !dir.join(&f.name).is_file() {
                continue;
            }
            let stored = enc.encrypt_file(dir, &f.name)?;
            f.stored_as = Some(stored);
            f.encryption = Some(crypt::AGE.into());
        }
    }
    for f in meta.files.iter_mut() {
        let path = dir.join(f.stored_name());
        f.sha256 = match sha256_file(&path) {
            Ok((sha, _)) => Some(sha),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(recording_id = %meta.recording_id, file = %f.stored_name(),
                    "a listed file is missing at publication: it has no hash");
                None
            }
            Err(source) => return Err(IntegrityError::Hash { path, source }),
        };
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|source| IntegrityError::Hash {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_metadata_xml(n))
        .collect();
    names.sort();
    meta.metadata_files = names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let (sha256, bytes) =
                sha256_file(&path).map_err(|source| IntegrityError::Hash { path, source })?;
            Ok(StoredFile {
                name,
                sha256,
                bytes,
            })
        })
        .collect::<Result<_, IntegrityError>>()?;
    meta.manifest_sha256 = manifest_sha256(meta);
    Ok(())
}

/// What [`verify`] found for one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileCheck {
    /// The stored name.
    pub name: String,
    /// `ok`, `altered`, `missing`, `unhashed` (no hash recorded) or
    /// `extra` (in the directory, in no list; not a failure).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

/// What [`verify`] found for one recording.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub recording_id: String,
    pub path: String,
    /// `intact`, `damaged` (a file missing or altered, or the manifest
    /// not matching) or `unverifiable` (published before integrity
    /// existed: no hashes).
    pub status: &'static str,
    pub files: Vec<FileCheck>,
    /// Each problem in words, naming the file.
    pub problems: Vec<String>,
}

impl Report {
    /// Whether a file is missing or altered (the exit status of `srs verify`).
    pub fn damaged(&self) -> bool {
        self.status == "damaged"
    }
}

/// Checks the recording `meta` (as the index has it) against the drop at
/// `root`: every listed file there with its hash, the manifest hash
/// recomputed from the hashes, and the drop's `metadata.json` naming the
/// same manifest. Needs no key: the hashes are of the stored files.
pub fn verify(root: &Path, meta: &RecordingMeta) -> Report {
    let mut r = Report {
        recording_id: meta.recording_id.clone(),
        path: meta.path.clone(),
        status: "intact",
        files: Vec::new(),
        problems: Vec::new(),
    };
    let dir = root.join(&meta.path);
    if meta.path.is_empty() || !dir.join(super::drop::METADATA_FILE).is_file() {
        r.status = "damaged";
        r.problems.push(format!(
            "the recording's directory {} is missing from the drop",
            meta.path
        ));
        return r;
    }
    let mut listed: Vec<(String, Option<String>)> = meta
        .files
        .iter()
        .map(|f| (f.stored_name().to_string(), f.sha256.clone()))
        .collect();
    listed.extend(
        meta.metadata_files
            .iter()
            .map(|f| (f.name.clone(), Some(f.sha256.clone()))),
    );
    let mut unhashed = false;
    for (name, expected) in &listed {
        let path = dir.join(name);
        let check = match (expected, sha256_file(&path)) {
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                r.problems.push(format!("{name}: missing"));
                "missing"
            }
            (_, Err(e)) => {
                r.problems.push(format!("{name}: unreadable ({e})"));
                "missing"
            }
            (None, Ok(_)) => {
                unhashed = true;
                "unhashed"
            }
            (Some(want), Ok((got, _))) if *want == got => "ok",
            (Some(want), Ok((got, _))) => {
                r.problems.push(format!(
                    "{name}: altered (sha256 {got}, published as {want})"
                ));
                r.files.push(FileCheck {
                    name: name.clone(),
                    status: "altered",
                    expected: Some(want.clone()),
                    actual: Some(got),
                });
                continue;
            }
        };
        r.files.push(FileCheck {
            name: name.clone(),
            status: check,
            expected: expected.clone(),
            actual: None,
        });
    }
    // Files nobody lists (not a failure: see the module doc).
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut extra: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                n != super::drop::METADATA_FILE
                    && n != crate::lifecycle::HOLD_FILE
                    && !listed.iter().any(|(l, _)| l == n)
            })
            .collect();
        extra.sort();
        r.files.extend(extra.into_iter().map(|name| FileCheck {
            name,
            status: "extra",
            expected: None,
            actual: None,
        }));
    }
    match (&meta.manifest_sha256, manifest_sha256(meta)) {
        (Some(want), Some(got)) if *want != got => r.problems.push(format!(
            "manifest: the file hashes give {got}, the recording says {want}"
        )),
        (None, _) => unhashed = true,
        _ => {}
    }
    // The drop's own metadata.json must name the same manifest as the index.
    let on_disk: Option<RecordingMeta> = std::fs::read(dir.join(super::drop::METADATA_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match on_disk {
        Some(d) if d.manifest_sha256 != meta.manifest_sha256 => r.problems.push(format!(
            "metadata.json: its manifest hash {} differs from the index's {}",
            d.manifest_sha256.as_deref().unwrap_or("(none)"),
            meta.manifest_sha256.as_deref().unwrap_or("(none)")
        )),
        Some(_) => {}
        None => r
            .problems
            .push("metadata.json: unreadable or not a recording".into()),
    }
    r.status = if !r.problems.is_empty() {
        "damaged"
    } else if unhashed {
        "unverifiable"
    } else {
        "intact"
    };
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::FileMeta;

    fn recording(dir: &Path) -> RecordingMeta {
        std::fs::write(dir.join("a.wav"), b"RIFF-a").unwrap();
        std::fs::write(dir.join("b.wav"), b"RIFF-b").unwrap();
        std::fs::write(dir.join("metadata.xml"), b"<recording/>").unwrap();
        RecordingMeta {
            recording_id: "r1".into(),
            files: ["a.wav", "b.wav"]
                .iter()
                .map(|n| FileMeta {
                    name: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_manifest_is_sha256sum_lines_sorted_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = recording(dir.path());
        seal(dir.path(), &mut m, None).unwrap();
        let sha = |b: &[u8]| hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref());
        assert_eq!(m.files[0].sha256.as_deref(), Some(sha(b"RIFF-a").as_str()));
        assert_eq!(m.metadata_files.len(), 1);
        let text = format!(
            "{}  a.wav\n{}  b.wav\n{}  metadata.xml\n",
            sha(b"RIFF-a"),
            sha(b"RIFF-b"),
            sha(b"<recording/>")
        );
        assert_eq!(manifest_text(&m).unwrap(), text);
        assert_eq!(m.manifest_sha256.unwrap(), sha(text.as_bytes()));
    }

    #[test]
    fn verify_names_the_altered_and_the_missing_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("2026/01/02/r1");
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = recording(&dir);
        seal(&dir, &mut m, None).unwrap();
        m.path = "2026/01/02/r1".into();
        std::fs::write(dir.join("metadata.json"), serde_json::to_vec(&m).unwrap()).unwrap();
        let r = verify(root.path(), &m);
        assert_eq!(r.status, "intact", "{r:?}");
        std::fs::write(dir.join("a.wav"), b"RIFF-A").unwrap();
        std::fs::remove_file(dir.join("metadata.xml")).unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let r = verify(root.path(), &m);
        assert!(r.damaged());
        assert!(r.problems[0].starts_with("a.wav: altered"), "{r:?}");
        assert!(r.problems[1].starts_with("metadata.xml: missing"), "{r:?}");
        assert!(r
            .files
            .iter()
            .any(|f| f.name == "notes.txt" && f.status == "extra"));
        // No hashes at all: unverifiable, not damaged.
        let mut old = m.clone();
        old.files.iter_mut().for_each(|f| f.sha256 = None);
        old.metadata_files.clear();
        old.manifest_sha256 = None;
        std::fs::write(dir.join("a.wav"), b"RIFF-a").unwrap();
        std::fs::write(dir.join("metadata.json"), serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(verify(root.path(), &old).status, "unverifiable");
        // The drop's metadata.json rewritten with other hashes: caught by
        // the index's copy.
        assert!(verify(root.path(), &m)
            .problems
            .iter()
            .any(|p| p.starts_with("metadata.json")));
    }
}
