//! Post-call output: the stereo WAV and Ogg Opus files made from a
//! recording's mono WAVs once its session ended, and the threads that make
//! them.
//!
//! - [`stereo_sides`]: channel mapping, which party goes left and which
//!   right (`output.stereo_left`), by participant, label or aor, never by
//!   arrival order.
//! - [`stereo`]: the stereo WAV writer (streamed, resampling to the higher
//!   rate).
//! - [`make_outputs`]: every format asked for (`output.formats`, or a
//!   rule's), the mono WAVs removed when `wav` was not asked for.
//! - [`encoders`]: the bounded pool of low-priority threads they run on.
//!
//! Opus streams are also written live as Ogg by the recorder
//! (`media::ogg_opus` on the packet path); this module then only lists them.

pub mod encoders;
pub mod stereo;

use std::path::Path;

use crate::config::{OutputConfig, StereoLeft};
use crate::media::ogg_opus;
use crate::recording::{FileMeta, Format, RecordingMeta};

/// `alice-1.wav` -> `alice-1.opus`.
pub fn opus_name(wav: &str) -> String {
    format!("{}.opus", wav.strip_suffix(".wav").unwrap_or(wav))
}

/// Whether anything is to be made after the call: the mono WAVs alone are
/// the output of `formats = ["wav"]`.
pub fn needs_encoding(formats: &[Format]) -> bool {
    formats.iter().any(|f| *f != Format::Wav)
}

/// The stereo WAV and Ogg Opus files asked for, from the mono WAVs; then
/// the mono WAVs removed if `wav` was not asked for. Failures are logged and
/// noted in the metadata error; the mono WAVs are never lost to them.
pub fn make_outputs(cfg: &OutputConfig, dir: &Path, meta: &mut RecordingMeta) {
    let mono: Vec<FileMeta> = meta
        .files
        .iter()
        .filter(|f| f.format == Format::Wav)
        .cloned()
        .collect();
    let mut made_all = true;
    if cfg.formats.contains(&Format::StereoWav) {
        let (left, right) = stereo_sides(&cfg.stereo_left, meta);
        let path_of = |f: &Option<FileMeta>| f.as_ref().map(|f| dir.join(&f.name));
        let (lp, rp) = (path_of(&left), path_of(&right));
        if lp.is_some() || rp.is_some() {
            match stereo::write_stereo(lp.as_deref(), rp.as_deref(), &dir.join("stereo.wav")) {
                Ok((duration_ms, rate)) => meta.files.push(FileMeta {
                    name: "stereo.wav".into(),
                    format: Format::StereoWav,
                    labels: [&left, &right]
                        .iter()
                        .map(|f| {
                            f.as_ref()
                                .and_then(|f| f.labels.first().cloned())
                                .unwrap_or_default()
                        })
                        .collect(),
                    duration_ms,
                    sample_rate: rate,
                    channels: 2,
                    bytes: std::fs::metadata(dir.join("stereo.wav"))
                        .map(|m| m.len())
                        .unwrap_or(0),
                    ..FileMeta::default()
                }),
                Err(e) => {
                    made_all = false;
                    tracing::error!(error = %e, "stereo file failed");
                }
            }
        }
    }
    if cfg.formats.contains(&Format::OggOpus) {
        for f in &mono {
            let name = opus_name(&f.name);
            let path = dir.join(&name);
            let passed_through = path.exists();
            let duration_ms = if passed_through {
                Ok(f.duration_ms)
            } else {
                ogg_opus::encode_wav_to_ogg_opus(&dir.join(&f.name), &path, cfg.opus_bitrate)
            };
            match duration_ms {
                Ok(duration_ms) => meta.files.push(FileMeta {
                    name: name.clone(),
                    format: Format::OggOpus,
                    labels: f.labels.clone(),
                    duration_ms,
                    sample_rate: 48_000,
                    channels: 1,
                    bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                    ..FileMeta::default()
                }),
                Err(e) => {
                    made_all = false;
                    tracing::error!(file = %f.name, error = %e, "Opus file failed");
                }
            }
        }
    }
    if !cfg.formats.contains(&Format::Wav) && made_all {
        for f in &mono {
            let _ = std::fs::remove_file(dir.join(&f.name));
        }
        meta.files.retain(|f| f.format != Format::Wav);
        for p in &mut meta.participants {
            p.file = p.file.as_ref().and_then(|w| {
                meta.files
                    .iter()
                    .find(|f| f.format == Format::OggOpus && f.name == opus_name(w))
                    .map(|f| f.name.clone())
            });
        }
    }
}

/// The mono files of the left and right parties by the configured map: by
/// participant (metadata order), label or aor, never by arrival order.
pub fn stereo_sides(
    left: &StereoLeft,
    meta: &RecordingMeta,
) -> (Option<FileMeta>, Option<FileMeta>) {
    let file_of = |label: &str| {
        meta.files
            .iter()
            .find(|f| f.format == Format::Wav && f.labels.iter().any(|l| l == label))
            .cloned()
    };
    // Each participant's first recorded stream, in metadata order.
    let mut parties: Vec<(Option<String>, FileMeta)> = Vec::new();
    for p in &meta.participants {
        if let Some(f) = p.labels.iter().find_map(|l| file_of(l)) {
            if !parties.iter().any(|(_, g)| g.name == f.name) {
                parties.push((p.aor.clone(), f));
            }
        }
    }
    // Streams nobody is known to send on, in m-line order.
    for f in meta.files.iter().filter(|f| f.format == Format::Wav) {
        if !parties.iter().any(|(_, g)| g.name == f.name) {
            parties.push((None, f.clone()));
        }
    }
    let left_idx = match left {
        StereoLeft::Second => 1,
        StereoLeft::Label(l) => parties
            .iter()
            .position(|(_, f)| f.labels.iter().any(|x| x == l))
            .unwrap_or(0),
        StereoLeft::Aor(a) => parties
            .iter()
            .position(|(aor, _)| aor.as_deref().is_some_and(|x| x.contains(a.as_str())))
            .unwrap_or(0),
        StereoLeft::First | StereoLeft::Invalid(_) => 0,
    };
    let left = parties.get(left_idx).map(|(_, f)| f.clone());
    let right = parties
        .iter()
        .enumerate()
        .find(|(i, _)| *i != left_idx)
        .map(|(_, (_, f))| f.clone());
    (left, right)
}

#[cfg(test)]
mod tests;
