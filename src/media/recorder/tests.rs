//! Synthetic RTP through the recorder; the decoded file is checked sample
//! by sample (lengths, tone positions, silence, DTMF times).

use super::*;
use crate::media::rtp::build;

const RATE: u32 = 8000;

/// G.711 µ-law encoder (ITU-T G.711), for making test streams.
fn ulaw(x: i16) -> u8 {
    crate::testkit::ulaw_encode(x)
}

/// 20 ms of a tone starting at sample `n0`.
fn tone_packet(freq: f64, n0: u64) -> Vec<u8> {
    (0..160)
        .map(|i| {
            let t = (n0 + i) as f64 / f64::from(RATE);
            ulaw((8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16)
        })
        .collect()
}

fn goertzel(x: &[i16], f: f64) -> f64 {
    crate::testkit::goertzel(x, f64::from(RATE), f)
}

fn is_tone(x: &[i16], f: f64) -> bool {
    let other = if f == 1000.0 { 400.0 } else { 1000.0 };
    goertzel(x, f) > 100.0 * goertzel(x, other).max(1.0)
}

fn spec() -> StreamSpec {
    StreamSpec {
        codecs: vec![(0, CodecKind::Pcmu)],
        dtmf: Some((101, 8000)),
        srtp: None,
    }
}

fn read(path: &Path) -> Vec<i16> {
    hound::WavReader::open(path)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

struct Sender {
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Sender {
    fn packet(&mut self, payload: &[u8]) -> Vec<u8> {
        let p = build(0, self.seq, self.ts, self.ssrc, payload);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        p
    }
}

#[test]
fn loss_reorder_duplicates_ssrc_change_jump_pause_and_dtmf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut r = StreamRecorder::create(&path, spec(), t0, None).unwrap();
    let mut s = Sender {
        seq: 65500,
        ts: 4_000_000_000,
        ssrc: 1,
    };
    // 0..1 s: 1000 Hz, first packet at 100 ms; packet 10 lost, 20/21
    // swapped, 30 duplicated.
    let mut pkts: Vec<(u64, Vec<u8>)> = Vec::new();
    for i in 0..45u64 {
        let ms = 100 + 20 * i;
        let p = s.packet(&tone_packet(1000.0, ms * 8));
        match i {
            10 => {}
            20 => pkts.push((ms + 25, p)),
            30 => {
                pkts.push((ms, p.clone()));
                pkts.push((ms + 1, p));
            }
            _ => pkts.push((ms, p)),
        }
    }
    pkts.sort_by_key(|(ms, _)| *ms);
    for (ms, p) in &pkts {
        r.on_datagram(at(*ms), p).unwrap();
    }
    // DTMF '5' at 1000 ms for 200 ms (start, updates, 3 end packets), on its own PT.
    let dtmf_ts = s.ts;
    for (k, ms) in [
        (0u32, 1000u64),
        (1, 1050),
        (2, 1100),
        (3, 1150),
        (4, 1200),
        (4, 1205),
        (4, 1210),
    ] {
        let end = k == 4;
        let dur = if end { 1600u16 } else { (k * 400) as u16 };
        let payload = [
            5u8,
            if end { 0x80 | 10 } else { 10 },
            (dur >> 8) as u8,
            dur as u8,
        ];
        let mut p = build(101, s.seq, dtmf_ts, 1, &payload);
        if k == 0 {
            p[1] |= 0x80;
        }
        s.seq = s.seq.wrapping_add(1);
        r.on_datagram(at(ms), &p).unwrap();
    }
    // 1.0–2.0 s: a new SSRC with a random timestamp, 400 Hz from 1200 ms.
    let mut s2 = Sender {
        seq: 7,
        ts: 123_456,
        ssrc: 2,
    };
    for i in 0..40u64 {
        let ms = 1200 + 20 * i;
        r.on_datagram(at(ms), &s2.packet(&tone_packet(400.0, ms * 8)))
            .unwrap();
    }
    // A timestamp jump of an hour at 2000 ms, same SSRC: 1000 Hz to 2.5 s.
    s2.ts = s2.ts.wrapping_add(8000 * 3600);
    for i in 0..25u64 {
        let ms = 2000 + 20 * i;
        r.on_datagram(at(ms), &s2.packet(&tone_packet(1000.0, ms * 8)))
            .unwrap();
    }
    // 10 s pause (answered inactive) while the sender keeps sending.
    r.set_paused(true);
    for i in 0..500u64 {
        let ms = 2500 + 20 * i;
        r.on_datagram(at(ms), &s2.packet(&tone_packet(400.0, ms * 8)))
            .unwrap();
    }
    r.set_paused(false);
    // Resume at 12.5 s with timestamps that ignore the pause: 400 Hz for 0.5 s.
    s2.ts = s2.ts.wrapping_sub(160 * 500);
    for i in 0..25u64 {
        let ms = 12_500 + 20 * i;
        r.on_datagram(at(ms), &s2.packet(&tone_packet(400.0, ms * 8)))
            .unwrap();
    }
    let stats = r.finish(at(14_000)).unwrap();
    let x = read(&path);
    assert_eq!(x.len(), 14 * 8000, "sample-exact: the session's length");
    let win = |a_ms: u64, b_ms: u64| &x[(a_ms * 8) as usize..(b_ms * 8) as usize];
    assert!(
        win(0, 100).iter().all(|v| *v == 0),
        "silence before the first packet"
    );
    assert!(is_tone(win(100, 300), 1000.0));
    assert!(
        win(300, 320).iter().all(|v| *v == 0),
        "lost packet 10 is silence"
    );
    assert!(
        is_tone(win(320, 1000), 1000.0),
        "reordered and duplicated packets in place"
    );
    assert!(
        win(1000, 1200).iter().all(|v| *v == 0),
        "the DTMF is never audio"
    );
    assert!(
        is_tone(win(1200, 2000), 400.0),
        "new SSRC placed at its arrival"
    );
    assert!(
        is_tone(win(2000, 2500), 1000.0),
        "timestamp jump re-anchored"
    );
    assert!(
        win(2520, 12_500).iter().all(|v| *v == 0),
        "paused: silence although packets came"
    );
    assert!(
        is_tone(win(12_500, 13_000), 400.0),
        "resumed at the right time"
    );
    assert!(
        win(13_000, 14_000).iter().all(|v| *v == 0),
        "padded to the end"
    );
    assert_eq!(
        stats.dtmf,
        [DtmfOut {
            digit: '5',
            at_ms: 1000,
            duration_ms: 200
        }]
    );
    assert_eq!(stats.packets_lost, 1);
    assert_eq!(stats.packets_duplicated, 1);
    assert_eq!(stats.packets_discarded, 500);
    assert_eq!(stats.packets_received, 44 + 1 + 7 + 40 + 25 + 500 + 25);
    assert!(stats.jitter_ms < 20.0, "{}", stats.jitter_ms);
}

#[test]
fn header_is_checkpointed_so_a_crash_leaves_a_playable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let mut r = StreamRecorder::create(&path, spec(), t0, None).unwrap();
    let mut s = Sender {
        seq: 0,
        ts: 0,
        ssrc: 1,
    };
    for i in 0..150u64 {
        r.on_datagram(
            t0 + Duration::from_millis(20 * i),
            &s.packet(&tone_packet(1000.0, i * 160)),
        )
        .unwrap();
    }
    // "Crash": the recorder is leaked, never finalized.
    std::mem::forget(r);
    let reader = hound::WavReader::open(&path).expect("playable without finalize");
    let n = reader.len() as u64;
    assert!(
        (2 * 8000..=3 * 8000).contains(&n),
        "at least the last checkpoint (2 s): {n}"
    );
}

#[test]
fn codec_change_keeps_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let mut r = StreamRecorder::create(&path, spec(), t0, None).unwrap();
    let mut s = Sender {
        seq: 0,
        ts: 0,
        ssrc: 1,
    };
    r.on_datagram(t0, &s.packet(&tone_packet(1000.0, 0)))
        .unwrap();
    assert!(r.set_codec(StreamSpec::single(CodecKind::Pcma, 8)));
    let a = build(8, s.seq, s.ts, 1, &[0xd5; 160]);
    r.on_datagram(t0 + Duration::from_millis(20), &a).unwrap();
    // a stale PCMU packet after the switch is not decoded
    r.on_datagram(
        t0 + Duration::from_millis(40),
        &s.packet(&tone_packet(1000.0, 320)),
    )
    .unwrap();
    assert!(
        !r.set_codec(StreamSpec::single(CodecKind::G722, 9)),
        "the file's rate cannot change"
    );
    let stats = r.finish(t0 + Duration::from_millis(100)).unwrap();
    let x = read(&path);
    assert_eq!(x.len(), 800);
    assert_eq!(x[160], 8, "A-law decoded after the switch");
    assert_eq!(stats.codec_changes, 1);
}

#[test]
fn switching_between_answered_codecs_resamples_to_the_file_rate() {
    // Answered G.722 (16 kHz) and PCMU: the file is 16 kHz; PCMU packets
    // are upsampled and keep their place.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let spec = StreamSpec {
        codecs: vec![(9, CodecKind::G722), (0, CodecKind::Pcmu)],
        dtmf: None,
        srtp: None,
    };
    let mut r = StreamRecorder::create(&path, spec, t0, None).unwrap();
    assert_eq!(r.sample_rate(), 16000);
    let mut s = Sender {
        seq: 0,
        ts: 0,
        ssrc: 1,
    };
    for i in 0..50u64 {
        r.on_datagram(
            t0 + Duration::from_millis(20 * i),
            &s.packet(&tone_packet(1000.0, i * 160)),
        )
        .unwrap();
    }
    let stats = r.finish(t0 + Duration::from_secs(1)).unwrap();
    let x = read(&path);
    assert_eq!(x.len(), 16000);
    let w = 2.0 * std::f64::consts::PI / 16000.0;
    let g = |f: f64| {
        let c = 2.0 * (w * f).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in &x[800..15000] {
            let s0 = f64::from(v) + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - c * s1 * s2
    };
    assert!(
        g(1000.0) > 100.0 * g(400.0),
        "1000 Hz survives the upsampling"
    );
    assert_eq!(stats.sample_rate, 16000);
}
