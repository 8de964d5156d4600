use super::*;
use crate::recording::ParticipantMeta;

fn wav(name: &str, label: &str) -> FileMeta {
    FileMeta {
        name: name.into(),
        format: Format::Wav,
        labels: vec![label.into()],
        duration_ms: 1000,
        sample_rate: 8000,
        channels: 1,
        bytes: 16_044,
        ..Default::default()
    }
}

fn party(id: &str, aor: &str, label: &str) -> ParticipantMeta {
    ParticipantMeta {
        id: id.into(),
        aor: Some(aor.into()),
        labels: vec![label.into()],
        ..ParticipantMeta::default()
    }
}

/// A call whose streams arrived caller second: m-line 0 is the agent's.
fn call() -> RecordingMeta {
    RecordingMeta {
        participants: vec![
            party("p1", "sip:caller@example.com", "b"),
            party("p2", "sip:agent@example.com", "a"),
        ],
        files: vec![wav("agent.wav", "a"), wav("caller.wav", "b")],
        ..RecordingMeta::default()
    }
}

fn names(sides: (Option<FileMeta>, Option<FileMeta>)) -> (Option<String>, Option<String>) {
    (sides.0.map(|f| f.name), sides.1.map(|f| f.name))
}

#[test]
fn the_left_channel_follows_the_metadata_order_label_or_aor_never_the_m_lines() {
    let m = call();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        names(stereo_sides(&StereoLeft::First, &m)),
        (s("caller.wav"), s("agent.wav"))
    );
    assert_eq!(
        names(stereo_sides(&StereoLeft::Second, &m)),
        (s("agent.wav"), s("caller.wav"))
    );
    assert_eq!(
        names(stereo_sides(&StereoLeft::Label("a".into()), &m)),
        (s("agent.wav"), s("caller.wav"))
    );
    assert_eq!(
        names(stereo_sides(&StereoLeft::Aor("agent@".into()), &m)),
        (s("agent.wav"), s("caller.wav"))
    );
    // Nothing matches: the first party.
    assert_eq!(
        names(stereo_sides(&StereoLeft::Aor("nobody".into()), &m)),
        (s("caller.wav"), s("agent.wav"))
    );
}

#[test]
fn streams_nobody_sends_on_come_after_the_parties_in_m_line_order_and_one_file_is_one_side() {
    let mut m = call();
    m.participants.clear();
    m.files.push(FileMeta {
        format: Format::OggOpus,
        ..wav("agent.opus", "a")
    });
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        names(stereo_sides(&StereoLeft::First, &m)),
        (s("agent.wav"), s("caller.wav")),
        "only mono WAVs are sides"
    );
    m.files.truncate(1);
    assert_eq!(
        names(stereo_sides(&StereoLeft::Second, &m)),
        (None, s("agent.wav"))
    );
}

#[test]
fn opus_names_and_what_needs_encoding() {
    assert_eq!(opus_name("alice-1.wav"), "alice-1.opus");
    assert_eq!(opus_name("odd"), "odd.opus");
    assert!(!needs_encoding(&[Format::Wav]));
    assert!(needs_encoding(&[Format::Wav, Format::StereoWav]));
    assert!(needs_encoding(&[Format::OggOpus]));
}

fn write_tone(path: &std::path::Path, freq: f64) {
    let mut w = hound::WavWriter::create(path, crate::media::pcm16_spec(8000, 1)).unwrap();
    for v in crate::testkit::sine(freq, 8000, 0, 8000, 8000.0) {
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn without_wav_the_mono_files_go_and_participants_point_at_their_opus_files() {
    let dir = tempfile::tempdir().unwrap();
    write_tone(&dir.path().join("agent.wav"), 440.0);
    write_tone(&dir.path().join("caller.wav"), 1000.0);
    let mut m = call();
    m.participants[0].file = Some("caller.wav".into());
    m.participants[1].file = Some("agent.wav".into());
    let cfg = OutputConfig {
        formats: vec![Format::StereoWav, Format::OggOpus],
        ..OutputConfig::default()
    };
    make_outputs(&cfg, dir.path(), &mut m);
    let listed: Vec<(&str, Format, u16)> = m
        .files
        .iter()
        .map(|f| (f.name.as_str(), f.format, f.channels))
        .collect();
    assert_eq!(
        listed,
        [
            ("stereo.wav", Format::StereoWav, 2),
            ("agent.opus", Format::OggOpus, 1),
            ("caller.opus", Format::OggOpus, 1)
        ]
    );
    assert_eq!(m.files[0].labels, ["b", "a"], "left then right");
    assert!(!dir.path().join("agent.wav").exists());
    assert!(dir.path().join("caller.opus").exists());
    assert_eq!(m.participants[0].file.as_deref(), Some("caller.opus"));
    assert_eq!(m.participants[1].file.as_deref(), Some("agent.opus"));
}
