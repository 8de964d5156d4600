//! Crash recovery: recordings left in `.incoming/` by a process that died
//! (kill -9, power loss) are published with status `recovered`.
//!
//! While a session runs, its directory holds `incoming.json` (the
//! description known so far, rewritten when it changes) and the WAV files,
//! whose headers are rewritten every 2 s. Recovery reads `incoming.json`,
//! repairs each WAV header from the data actually on disk (so everything
//! written is playable, not only what the last checkpoint covered), fills
//! in durations, and publishes. A directory without `incoming.json` is
//! still published, described from its files alone.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::recording::{FileMeta, Format, RecordingMeta, Status};
use crate::store::crypt::{self, Encryptor};
use crate::store::drop::{DropError, FileDrop, INCOMING_DIR};
pub use crate::store::drop::{INCOMING_FILE, INCOMING_TMP};
use crate::store::integrity;

/// Writes `incoming.json` atomically (temp file + rename).
pub fn write_incoming(dir: &Path, meta: &RecordingMeta) -> std::io::Result<()> {
    let tmp = dir.join(INCOMING_TMP);
    let json = serde_json::to_vec_pretty(meta).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(tmp, dir.join(INCOMING_FILE))
}

/// A WAV header's facts.
struct WavInfo {
    rate: u32,
    channels: u16,
    bits: u16,
    data_offset: u64,
}

/// Reads the `fmt ` chunk and finds `data`, whatever sizes the header says.
fn wav_info(path: &Path) -> Option<WavInfo> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head).ok()?;
    if &head[..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12u64;
    let (mut rate, mut channels, mut bits) = (0, 0, 0);
    loop {
        let mut ch = [0u8; 8];
        f.seek(SeekFrom::Start(pos)).ok()?;
        f.read_exact(&mut ch).ok()?;
        let len = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]) as u64;
        if &ch[..4] == b"fmt " {
            let mut fmt = [0u8; 16];
            f.read_exact(&mut fmt).ok()?;
            channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
            bits = u16::from_le_bytes([fmt[14], fmt[15]]);
        } else if &ch[..4] == b"data" {
            return (rate > 0 && channels > 0 && bits > 0).then_some(WavInfo {
                rate,
                channels,
                bits,
                data_offset: pos + 8,
            });
        }
        pos += 8 + len + (len & 1);
        if pos > 1 << 20 {
            return None;
        }
    }
}

/// Rewrites a WAV file's RIFF and data sizes from its length on disk
/// (dropping a partial last frame). Returns (duration_ms, rate, channels).
pub fn repair_wav(path: &Path) -> Option<(u64, u32, u16)> {
    let (frames, rate, channels) = repair_wav_frames(path)?;
    Some((frames * 1000 / u64::from(rate), rate, channels))
}

/// Whether a WAV file is whole: a header with a format and a data chunk
/// whose size matches the data on disk. Returns (frames, rate, channels).
pub fn wav_frames(path: &Path) -> Option<(u64, u32, u16)> {
    let info = wav_info(path)?;
    let len = std::fs::metadata(path).ok()?.len();
    let frame = u64::from(info.channels) * u64::from(info.bits / 8).max(1);
    let mut f = std::fs::File::open(path).ok()?;
    let mut size = [0u8; 4];
    f.seek(SeekFrom::Start(info.data_offset - 4)).ok()?;
    f.read_exact(&mut size).ok()?;
    let declared = u64::from(u32::from_le_bytes(size));
    let on_disk = len.saturating_sub(info.data_offset);
    // hound pads an odd-sized data chunk with one byte.
    (declared <= on_disk && on_disk - declared <= 1).then_some((
        declared / frame,
        info.rate,
        info.channels,
    ))
}

/// [`repair_wav`], in frames: (frames, rate, channels).
pub fn repair_wav_frames(path: &Path) -> Option<(u64, u32, u16)> {
    let info = wav_info(path)?;
    let len = std::fs::metadata(path).ok()?.len();
    let frame = u64::from(info.channels) * u64::from(info.bits / 8).max(1);
    let data = (len.saturating_sub(info.data_offset) / frame) * frame;
    let mut f = OpenOptions::new().write(true).open(path).ok()?;
    f.set_len(info.data_offset + data).ok()?;
    let riff = (info.data_offset + data - 8).min(u64::from(u32::MAX)) as u32;
    f.seek(SeekFrom::Start(4)).ok()?;
    f.write_all(&riff.to_le_bytes()).ok()?;
    f.seek(SeekFrom::Start(info.data_offset - 4)).ok()?;
    f.write_all(&(data.min(u64::from(u32::MAX)) as u32).to_le_bytes())
        .ok()?;
    f.sync_all().ok()?;
    Some((data / frame, info.rate, info.channels))
}

/// Cuts a WAV file to its first `frames` frames (and fixes its header).
/// Returns (duration_ms, rate, channels).
pub fn truncate_wav(path: &Path, frames: u64) -> Option<(u64, u32, u16)> {
    let info = wav_info(path)?;
    let frame = u64::from(info.channels) * u64::from(info.bits / 8).max(1);
    let len = std::fs::metadata(path).ok()?.len();
    let want = info.data_offset + frames * frame;
    if want < len {
        OpenOptions::new()
            .write(true)
            .open(path)
            .ok()?
            .set_len(want)
            .ok()?;
    }
    repair_wav(path)
}

/// Publishes one incoming directory as a recovered recording. A phantom,
/// with no playable audio and no Call-ID (a session refused before its
/// first write whose directory could not be removed then), is removed
/// instead: `Ok(None)`.
pub fn recover_dir(drop: &FileDrop, dir: &Path) -> Result<Option<RecordingMeta>, DropError> {
    recover_dir_sealed(drop, dir, None)
}

/// [`recover_dir`], sealed like a recording published live
/// ([`integrity::seal`]): its files hashed and, with `encryptor`,
/// its audio encrypted. What a crash left of an encryption is settled
/// first: a partial `.age.tmp` is removed; an `x.wav.age` beside its
/// `x.wav` is removed too (the plain file is the whole truth and is
/// encrypted again); an `x.wav.age` alone (its plain file was removed
/// after it was complete) is listed as it is, its duration unknown (0)
/// unless `incoming.json` planned it. A recording that cannot be sealed
/// stays in `.incoming`.
pub fn recover_dir_sealed(
    drop: &FileDrop,
    dir: &Path,
    encryptor: Option<&Encryptor>,
) -> Result<Option<RecordingMeta>, DropError> {
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let mut meta: RecordingMeta = std::fs::read(dir.join(INCOMING_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| RecordingMeta {
            recording_id: id.clone(),
            call_id: String::new(),
            ..RecordingMeta::default()
        });
    meta.recording_id = id;
    meta.status = Status::Recovered.into();
    // Every WAV on disk, repaired; the planned list is replaced by facts.
    let mut files: Vec<FileMeta> = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    let mut longest = 0;
    for p in &names {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let plain = name.strip_suffix(crypt::AGE_SUFFIX);
        let stale = crypt::is_partial(name) || plain.is_some_and(|n| dir.join(n).exists());
        if stale {
            let _ = std::fs::remove_file(p);
            continue;
        }
        if let Some(wav) = plain.filter(|n| n.ends_with(".wav")) {
            let planned = meta.files.iter().find(|f| f.name == wav);
            let stereo = wav == "stereo.wav";
            files.push(FileMeta {
                name: wav.to_string(),
                labels: planned.map(|f| f.labels.clone()).unwrap_or_default(),
                format: if stereo {
                    Format::StereoWav
                } else {
                    Format::Wav
                },
                channels: if stereo { 2 } else { 1 },
                duration_ms: planned.map_or(0, |f| f.duration_ms),
                sample_rate: planned.map_or(0, |f| f.sample_rate),
                bytes: planned.map_or(0, |f| f.bytes),
                stored_as: Some(name.to_string()),
                encryption: Some(crypt::AGE.into()),
                ..FileMeta::default()
            });
        }
    }
    for p in names {
        let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if !name.ends_with(".wav") || !p.exists() {
            continue;
        }
        if let Some((ms, rate, channels)) = repair_wav(&p) {
            longest = longest.max(ms);
            let planned = meta.files.iter().find(|f| f.name == name);
            files.push(FileMeta {
                labels: planned.map(|f| f.labels.clone()).unwrap_or_default(),
                format: if channels == 2 {
                    Format::StereoWav
                } else {
                    Format::Wav
                },
                bytes: std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0),
                name,
                duration_ms: ms,
                sample_rate: rate,
                channels,
                ..FileMeta::default()
            });
        }
    }
    meta.files = files;
    if meta.files.is_empty() && meta.call_id.is_empty() {
        tracing::warn!(dir = %dir.display(), "removing an incoming directory with no audio and no Call-ID (a refused session)");
        std::fs::remove_dir_all(dir).map_err(|source| DropError::Io {
            op: "removing",
            path: dir.to_path_buf(),
            source,
        })?;
        return Ok(None);
    }
    meta.duration_ms = longest;
    if meta.started_at.is_empty() {
        meta.started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    }
    if let Ok(start) = chrono::DateTime::parse_from_rfc3339(&meta.started_at) {
        let end = start + chrono::Duration::milliseconds(longest as i64);
        meta.ended_at = end
            .with_timezone(&chrono::Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    }
    // Hashed (and encrypted) like a recording published live.
    integrity::seal(dir, &mut meta, encryptor).map_err(|e| DropError::Io {
        op: "sealing",
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let _ = std::fs::remove_file(dir.join(INCOMING_FILE));
    let _ = std::fs::remove_file(dir.join(INCOMING_TMP));
    drop.publish(&mut meta)?;
    Ok(Some(meta))
}

/// Recovers every directory in `<drop>/.incoming` (call before accepting
/// sessions: nothing there belongs to a live session). Returns the
/// published recordings; failures are logged and left in place.
pub fn recover_all(drop: &FileDrop) -> Vec<RecordingMeta> {
    recover_all_sealed(drop, None)
}

/// [`recover_all`] with [`recover_dir_sealed`].
pub fn recover_all_sealed(drop: &FileDrop, encryptor: Option<&Encryptor>) -> Vec<RecordingMeta> {
    let incoming = drop.root().join(INCOMING_DIR);
    let Ok(rd) = std::fs::read_dir(&incoming) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        match recover_dir_sealed(drop, &p, encryptor) {
            Ok(None) => {}
            Ok(Some(m)) => {
                tracing::warn!(recording_id = %m.recording_id, files = m.files.len(),
                    duration_ms = m.duration_ms, "recovered a recording interrupted by a crash");
                out.push(m);
            }
            Err(e) => tracing::error!(dir = %p.display(), error = %e, "cannot recover"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_wav_is_repaired_to_everything_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let spec = crate::media::pcm16_spec(8000, 1);
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..8000 {
            w.write_sample((i % 100) as i16).unwrap();
        }
        w.flush().unwrap(); // checkpoint: 1 s in the header
        for i in 0..4000 {
            w.write_sample((i % 50) as i16).unwrap();
        }
        // The process dies: the BufWriter inside is flushed by drop, but the
        // header still says 1 s.
        drop(w);
        let raw = std::fs::read(&path).unwrap();
        let mut garbage = raw.clone();
        garbage.push(7); // half a sample at the end
        std::fs::write(&path, &garbage).unwrap();
        let (ms, rate, ch) = repair_wav(&path).unwrap();
        assert_eq!((ms, rate, ch), (1500, 8000, 1));
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.len(), 12000);
    }

    fn wav(path: &Path, samples: usize) {
        let spec = crate::media::pcm16_spec(8000, 1);
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..samples {
            w.write_sample((i % 100) as i16).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn a_recovered_recording_is_sealed_and_a_crash_mid_encryption_is_settled() {
        let root = tempfile::tempdir().unwrap();
        let drop = FileDrop::new(root.path());
        let dir = drop.create_incoming("rec-enc").unwrap();
        let meta = RecordingMeta {
            recording_id: "rec-enc".into(),
            call_id: "c-enc".into(),
            started_at: "2026-11-23T10:00:00.000Z".into(),
            files: vec![FileMeta {
                name: "c.wav".into(),
                labels: vec!["3".into()],
                duration_ms: 500,
                ..FileMeta::default()
            }],
            ..RecordingMeta::default()
        };
        write_incoming(&dir, &meta).unwrap();
        let (key, public) = crypt::generate();
        let enc = Encryptor::from_recipients(&[public]).unwrap().unwrap();
        // a.wav: never encrypted. b.wav: encrypted, the crash came before
        // its plain file was removed. c.wav: encrypted and removed. d: a
        // partial encryption.
        wav(&dir.join("a.wav"), 8000);
        wav(&dir.join("b.wav"), 4000);
        enc.encrypt_file(&dir, "b.wav").unwrap();
        wav(&dir.join("b.wav"), 4000);
        wav(&dir.join("c.wav"), 4000);
        enc.encrypt_file(&dir, "c.wav").unwrap();
        std::fs::write(dir.join("d.wav.age.tmp"), b"age-encryption.org/v1 partial").unwrap();
        std::fs::write(dir.join("metadata.xml"), b"<recording/>").unwrap();
        let got = recover_all_sealed(&drop, Some(&enc));
        assert_eq!(got.len(), 1);
        let m = &got[0];
        let names: Vec<(&str, &str)> = m
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.stored_name()))
            .collect();
        assert_eq!(
            names,
            [
                ("c.wav", "c.wav.age"),
                ("a.wav", "a.wav.age"),
                ("b.wav", "b.wav.age")
            ]
        );
        assert_eq!(m.files[0].labels, ["3"], "planned facts kept");
        assert_eq!(m.files[1].duration_ms, 1000);
        let published = root.path().join(&m.path);
        let mut on_disk: Vec<String> = std::fs::read_dir(&published)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        assert_eq!(
            on_disk,
            [
                "a.wav.age",
                "b.wav.age",
                "c.wav.age",
                "metadata.json",
                "metadata.xml"
            ]
        );
        assert!(m.manifest_sha256.is_some());
        assert_eq!(
            crate::store::integrity::verify(root.path(), m).status,
            "intact"
        );
        // b decrypts to its whole plain file.
        let kf = root.path().join("key.txt");
        std::fs::write(&kf, key).unwrap();
        let dec = crypt::Decryptor::from_files(&[kf]).unwrap().unwrap();
        let out = root.path().join("b.wav");
        dec.decrypt_file(&published.join("b.wav.age"), &out)
            .unwrap();
        assert_eq!(hound::WavReader::open(&out).unwrap().len(), 4000);
    }

    #[test]
    fn recover_publishes_with_status_recovered() {
        let root = tempfile::tempdir().unwrap();
        let drop = FileDrop::new(root.path());
        let dir = drop.create_incoming("rec-crash-1").unwrap();
        let meta = RecordingMeta {
            recording_id: "rec-crash-1".into(),
            call_id: "c1".into(),
            status: "recording".into(),
            started_at: "2026-11-23T10:00:00.000Z".into(),
            ..RecordingMeta::default()
        };
        write_incoming(&dir, &meta).unwrap();
        let spec = crate::media::pcm16_spec(8000, 1);
        let mut w = hound::WavWriter::create(dir.join("alice-1.wav"), spec).unwrap();
        for _ in 0..16000 {
            w.write_sample(1i16).unwrap();
        }
        w.flush().unwrap();
        std::mem::forget(w);
        // A directory with no incoming.json at all is published too...
        let bare = drop.create_incoming("rec-crash-2").unwrap();
        let mut w = hound::WavWriter::create(bare.join("x.wav"), spec).unwrap();
        w.write_sample(1i16).unwrap();
        w.finalize().unwrap();
        // ...but not a phantom: no playable audio and no Call-ID (a refused
        // session: a 0-byte WAV, its metadata XML).
        let phantom = drop.create_incoming("rec-phantom").unwrap();
        std::fs::write(phantom.join("a.wav"), b"").unwrap();
        std::fs::write(phantom.join("metadata.xml"), b"<recording/>").unwrap();
        let got = recover_all(&drop);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|m| m.recording_id != "rec-phantom"));
        let m = got
            .iter()
            .find(|m| m.recording_id == "rec-crash-1")
            .unwrap();
        assert_eq!(m.status, "recovered");
        assert_eq!(m.call_id, "c1");
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].duration_ms, 2000);
        assert_eq!(m.duration_ms, 2000);
        assert_eq!(m.ended_at, "2026-11-23T10:00:02.000Z");
        // Hashed at recovery (issue 15).
        assert_eq!(m.files[0].sha256.as_ref().map(String::len), Some(64));
        assert!(m.manifest_sha256.is_some());
        assert!(root.path().join(&m.path).join("metadata.json").exists());
        assert!(std::fs::read_dir(root.path().join(INCOMING_DIR))
            .unwrap()
            .next()
            .is_none());
    }
}
