use super::*;
use std::process::Command;

fn require_peers() -> bool {
    std::env::var("SRS_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// `true` if `tool` runs; otherwise prints SKIPPED (or fails when
/// SRS_REQUIRE_PEERS=1).
fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("-h").output().is_ok();
    if !ok {
        assert!(
            !require_peers(),
            "{tool} not installed and SRS_REQUIRE_PEERS=1"
        );
        eprintln!("!!!!!!!! SKIPPED: {tool} not installed, external check not run !!!!!!!!");
    }
    ok
}

/// Playback length in seconds as reported by `opusinfo`.
fn opusinfo_length(path: &Path) -> f64 {
    let out = Command::new("opusinfo").arg(path).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "opusinfo failed:\n{text}");
    assert!(!text.contains("WARNING"), "opusinfo warns:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains("Playback length"))
        .unwrap_or_else(|| panic!("no playback length in:\n{text}"));
    // "Playback length: 0m:01.000s"
    let v = line.split_once(':').unwrap().1.trim().trim_end_matches('s');
    let (m, s) = v.split_once("m:").unwrap();
    m.trim().parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
}

/// Decodes with `opusdec` at 48 kHz; returns the samples.
fn opusdec(path: &Path) -> Vec<i16> {
    let wav = path.with_extension("dec.wav");
    let out = Command::new("opusdec")
        .args(["--quiet", "--rate", "48000"])
        .arg(path)
        .arg(&wav)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.spec().sample_rate, 48000);
    r.into_samples::<i16>().map(Result::unwrap).collect()
}

fn dominant(s: &[i16], rate: f64) -> f64 {
    crate::testkit::dominant_frequency(s, rate, 3500.0)
}

fn tone(rate: u32, f: f64, n: usize, amp: f64) -> Vec<i16> {
    crate::testkit::sine(f, rate, 0, n, amp)
}

/// 50 packets of 20 ms of a 1000 Hz tone; returns (packets, lookahead).
fn tone_packets() -> (Vec<Vec<u8>>, u16) {
    let mut enc = opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let la = enc.get_lookahead().unwrap() as u16;
    let pcm = tone(48000, 1000.0, 48000, 8000.0);
    let packets = pcm
        .chunks(960)
        .map(|c| enc.encode_vec(c, 4000).unwrap())
        .collect();
    (packets, la)
}

/// Pages of a file, read back with the `ogg` crate: (granule, eos) per packet.
fn packets_of(path: &Path) -> Vec<(Vec<u8>, u64, bool)> {
    let mut r = ogg::PacketReader::new(File::open(path).unwrap());
    let mut v = Vec::new();
    while let Some(p) = r.read_packet().unwrap() {
        let (g, eos) = (p.absgp_page(), p.last_in_stream());
        v.push((p.data, g, eos));
    }
    v
}

#[test]
fn pass_through_plays_one_second_of_1000_hz() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.opus");
    let (packets, la) = tone_packets();
    let mut w = OggOpusWriter::new(
        BufWriter::new(File::create(&path).unwrap()),
        1,
        48000,
        la,
        &[("SRS_LABEL", "caller"), ("TITLE", "tone")],
    )
    .unwrap();
    for p in &packets {
        w.write_packet(p).unwrap();
    }
    assert_eq!(w.granule(), 48000);
    w.finish().unwrap().flush().unwrap();

    // Structure, read back independently with the ogg crate.
    let ps = packets_of(&path);
    assert_eq!(ps.len(), 52);
    assert!(ps[0].0.starts_with(b"OpusHead"));
    assert_eq!(ps[0].0[9], 1);
    assert_eq!(u16::from_le_bytes([ps[0].0[10], ps[0].0[11]]), la);
    assert!(ps[1].0.starts_with(b"OpusTags"));
    assert!(ps[1].0.windows(16).any(|w| w == b"SRS_LABEL=caller"));
    assert_eq!(ps[0].1, 0);
    assert_eq!(ps[1].1, 0);
    assert_eq!(
        &ps[2..].iter().map(|p| p.0.clone()).collect::<Vec<_>>(),
        &packets
    );
    let last = ps.last().unwrap();
    assert!(last.2, "end of stream flagged");
    assert_eq!(last.1, 48000);

    // In-process decode as well.
    let mut dec = opus::Decoder::new(48000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 48000];
    let mut n = 0;
    for p in &ps[2..] {
        n += dec.decode(&p.0, &mut pcm[n..], false).unwrap();
    }
    assert_eq!(n, 48000);
    assert_eq!(dominant(&pcm[4800..], 48000.0), 1000.0);

    if have("opusinfo") {
        let len = opusinfo_length(&path);
        assert!(
            (len - (1.0 - f64::from(la) / 48000.0)).abs() < 0.005,
            "length {len}"
        );
        let s = opusdec(&path);
        assert!(
            (s.len() as i64 - (48000 - i64::from(la))).abs() < 10,
            "{}",
            s.len()
        );
        assert_eq!(dominant(&s[4800..], 48000.0), 1000.0);
    }
}

#[test]
fn silence_extends_the_playback_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.opus");
    let (packets, la) = tone_packets();
    let mut w = OggOpusWriter::new(File::create(&path).unwrap(), 1, 48000, la, &[]).unwrap();
    for p in &packets[..25] {
        w.write_packet(p).unwrap();
    }
    w.write_silence(24000).unwrap();
    for p in &packets[25..] {
        w.write_packet(p).unwrap();
    }
    assert_eq!(w.granule(), 72000);
    w.finish().unwrap();

    let ps = packets_of(&path);
    let g: Vec<u64> = ps.iter().map(|p| p.1).collect();
    assert!(g.windows(2).all(|w| w[0] <= w[1]), "granules increase");
    assert!(ps.len() > 52);
    // Pages are closed at about 1 s: more than one audio page.
    let pages: std::collections::BTreeSet<u64> = g.iter().copied().collect();
    assert!(pages.len() >= 3, "{pages:?}");

    if have("opusinfo") {
        let len = opusinfo_length(&path);
        // 1.0 s of tone (less the pre-skip) + 0.5 s of silence
        let without_gap = 1.0 - f64::from(la) / 48000.0;
        assert!((len - without_gap - 0.5).abs() <= 0.02, "length {len}");
        let s = opusdec(&path);
        assert!((s.len() as i64 - (72000 - i64::from(la))).abs() < 10);
        let gap = &s[24000 + 2400..48000 - 2400];
        let peak = gap.iter().map(|x| x.unsigned_abs()).max().unwrap();
        assert!(peak < 300, "the gap is silent (peak {peak})");
        assert_eq!(dominant(&s[48000 + 4800..], 48000.0), 1000.0);
    }
}

#[test]
fn odd_silence_is_carried_and_trimmed_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.opus");
    let mut w = OggOpusWriter::new(File::create(&path).unwrap(), 2, 8000, 312, &[]).unwrap();
    w.write_silence(1000).unwrap(); // 960 + 40 carried
    assert_eq!(w.granule(), 960);
    w.write_silence(100).unwrap(); // 140 → 120 + 20 carried
    assert_eq!(w.granule(), 1080);
    w.finish().unwrap();
    let ps = packets_of(&path);
    assert_eq!(
        ps.last().unwrap().1,
        1100,
        "end trimmed to the exact length"
    );
    if have("opusinfo") {
        let len = opusinfo_length(&path);
        assert!((len - 788.0 / 48000.0).abs() < 0.001, "length {len}");
    }
}

#[test]
fn empty_stream_is_still_valid() {
    let mut w = OggOpusWriter::new(Vec::new(), 1, 8000, 312, &[]).unwrap();
    w.write_packet(&[]).unwrap();
    w.write_packet(&[0x03]).unwrap(); // code 3 without count byte
    assert_eq!(w.packets_skipped(), 2);
    let bytes = w.finish().unwrap();
    let mut r = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let mut last = None;
    while let Some(p) = r.read_packet().unwrap() {
        last = Some((p.absgp_page(), p.last_in_stream()));
    }
    assert_eq!(last, Some((312, true)), "playback length 0, never negative");
}

#[test]
fn big_packets_span_pages() {
    let mut w = OggOpusWriter::new(Vec::new(), 1, 48000, 0, &[("K", &"v".repeat(70_000))]).unwrap();
    // code 3, CELT 20 ms, 6 frames: 120 ms, 70 000 bytes (not decodable, only framed)
    let mut p = vec![0xfb, 6];
    p.resize(70_000, 0x55);
    w.write_packet(&p).unwrap();
    w.write_packet(&p).unwrap();
    let bytes = w.finish().unwrap();
    let mut r = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let mut v = Vec::new();
    while let Some(pk) = r.read_packet().unwrap() {
        v.push((pk.data.len(), pk.absgp_page()));
    }
    assert_eq!(v.len(), 4);
    assert_eq!(v[1].1, 0);
    assert!(v[1].0 > 70_000);
    assert_eq!(v[2], (70_000, 5760));
    assert_eq!(v[3], (70_000, 11520));
}

#[test]
fn bad_construction_is_an_error() {
    assert!(OggOpusWriter::new(Vec::new(), 3, 8000, 0, &[]).is_err());
    assert!(OggOpusWriter::new(Vec::new(), 0, 8000, 0, &[]).is_err());
    assert!(OggOpusWriter::new(Vec::new(), 1, 8000, 0, &[("A=B", "x")]).is_err());
    assert!(OggOpusWriter::new(Vec::new(), 1, 8000, 0, &[("", "x")]).is_err());
}

#[test]
fn toc_durations() {
    let ms = |p: &[u8]| packet_samples(p).map(|n| n as f64 / 48.0);
    // code 0, one frame
    assert_eq!(ms(&[16 << 3]), Some(2.5)); // CELT NB 2.5 ms
    assert_eq!(ms(&[(17 << 3), 1, 2]), Some(5.0));
    assert_eq!(ms(&[(18 << 3) | 0x04, 1]), Some(10.0)); // stereo bit ignored
    assert_eq!(ms(&[31 << 3, 9]), Some(20.0)); // CELT FB 20 ms
    assert_eq!(ms(&[1 << 3, 0]), Some(20.0)); // SILK NB 20 ms
    assert_eq!(ms(&[10 << 3, 0]), Some(40.0)); // SILK WB 40 ms
    assert_eq!(ms(&[11 << 3, 0]), Some(60.0)); // SILK WB 60 ms
    assert_eq!(ms(&[12 << 3, 0]), Some(10.0)); // Hybrid SWB 10 ms
    assert_eq!(ms(&[15 << 3, 0]), Some(20.0)); // Hybrid FB 20 ms
                                               // code 1: two equal frames (payload even)
    assert_eq!(ms(&[(1 << 3) | 1, 7, 7]), Some(40.0));
    assert_eq!(ms(&[(1 << 3) | 1, 7]), None, "odd payload");
    // code 2: two frames, first length given
    assert_eq!(ms(&[(9 << 3) | 2, 2, 1, 1, 5]), Some(40.0));
    assert_eq!(ms(&[(9 << 3) | 2, 9, 1]), None, "first frame overruns");
    assert_eq!(ms(&[(9 << 3) | 2]), None);
    // code 3: count byte
    assert_eq!(ms(&[(16 << 3) | 3, 4]), Some(10.0)); // 4 × 2.5 ms
    assert_eq!(ms(&[(19 << 3) | 3, 0x80 | 6, 0]), Some(120.0)); // VBR flag, 6 × 20 ms
    assert_eq!(ms(&[(3 << 3) | 3, 2]), Some(120.0)); // 2 × 60 ms
    assert_eq!(ms(&[(3 << 3) | 3, 3]), None, "180 ms is over the limit");
    assert_eq!(ms(&[(19 << 3) | 3, 0]), None, "count 0");
    assert_eq!(ms(&[(19 << 3) | 3]), None, "no count byte");
    assert_eq!(ms(&[]), None);
    let mut w = OggOpusWriter::new(Vec::new(), 1, 48000, 0, &[]).unwrap();
    w.write_packet(&[(19 << 3) | 3, 0]).unwrap();
    w.write_packet(&[(31 << 3), 1, 2, 3]).unwrap();
    assert_eq!((w.granule(), w.packets_skipped()), (960, 1));
}

#[test]
fn encodes_a_wav() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("in.wav");
    let ogg = dir.path().join("out.opus");
    let spec = crate::media::pcm16_spec(8000, 1);
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for s in tone(8000, 400.0, 16000, 10000.0) {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    assert_eq!(encode_wav_to_ogg_opus(&wav, &ogg, 24000).unwrap(), 2000);

    let ps = packets_of(&ogg);
    let pre_skip = u64::from(u16::from_le_bytes([ps[0].0[10], ps[0].0[11]]));
    assert_eq!(
        u32::from_le_bytes(ps[0].0[12..16].try_into().unwrap()),
        8000
    );
    assert_eq!(ps.last().unwrap().1, pre_skip + 96000, "trimmed to 2.000 s");

    if have("opusinfo") {
        let len = opusinfo_length(&ogg);
        assert!((len - 2.0).abs() < 0.005, "length {len}");
        let s = opusdec(&ogg);
        assert!((s.len() as i64 - 96000).abs() < 10, "{}", s.len());
        assert_eq!(dominant(&s[4800..], 48000.0), 400.0);
    }
}

#[test]
fn wav_errors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("bad.wav");
    std::fs::write(&wav, b"RIFF....not a wav").unwrap();
    let ogg = dir.path().join("o.opus");
    assert!(encode_wav_to_ogg_opus(&wav, &ogg, 24000).is_err());
    assert!(encode_wav_to_ogg_opus(&dir.path().join("missing.wav"), &ogg, 24000).is_err());
    let spec = crate::media::pcm16_spec(44100, 1);
    hound::WavWriter::create(&wav, spec)
        .unwrap()
        .finalize()
        .unwrap();
    assert!(matches!(
        encode_wav_to_ogg_opus(&wav, &ogg, 24000),
        Err(OggOpusError::Unsupported(_))
    ));
}
