//! Synthetic RTP through the recorder; the decoded file is checked sample
//! by sample (lengths, tone positions, silence, DTMF times).

use super::*;
use crate::media::rtp::build;

const RATE: u32 = 8000;

/// G.711 µ-law encoder (ITU-T G.711), for making test streams.
fn ulaw(x: i16) -> u8 {
    crate::testkit::ulaw_encode(x)
}

/// 20 ms of a tone starting at sample `n0` (PCMU at [`RATE`]).
use crate::testkit::pcmu_tone as tone_packet;

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
        cn: None,
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
fn dtmf_from_a_new_ssrc_is_placed_at_its_time() {
    // SSRC 1 talks 0-1 s; SSRC 2 (another timestamp base) starts with a
    // digit at 1500 ms for 200 ms before any audio of its own. Before, the
    // digit was placed from SSRC 1's anchor with SSRC 2's timestamps: a
    // time hours away.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut r = StreamRecorder::create(&path, spec(), t0, None).unwrap();
    let mut s = Sender {
        seq: 100,
        ts: 1_000,
        ssrc: 1,
    };
    for i in 0..50u64 {
        let ms = 20 * i;
        r.on_datagram(at(ms), &s.packet(&tone_packet(1000.0, ms * 8)))
            .unwrap();
    }
    let (ts2, mut seq2) = (3_000_000_000u32, 9u16);
    for (k, ms) in [(0u32, 1500u64), (1, 1550), (2, 1600), (3, 1650), (4, 1700)] {
        let end = k == 4;
        let dur = if end { 1600u16 } else { (k * 400) as u16 };
        let payload = [
            7u8,
            if end { 0x80 | 10 } else { 10 },
            (dur >> 8) as u8,
            dur as u8,
        ];
        let p = build(101, seq2, ts2, 2, &payload);
        seq2 = seq2.wrapping_add(1);
        r.on_datagram(at(ms), &p).unwrap();
    }
    let stats = r.finish(at(2_000)).unwrap();
    assert_eq!(stats.dtmf.len(), 1, "{:?}", stats.dtmf);
    let d = &stats.dtmf[0];
    assert_eq!((d.digit, d.duration_ms), ('7', 200));
    assert!(
        (1490..=1510).contains(&d.at_ms),
        "placed at {} ms, sent at 1500 ms",
        d.at_ms
    );
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
        cn: None,
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

#[test]
fn verdicts_only_offered_types_are_media() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut with_cn = spec();
    with_cn.cn = Some(13);
    let mut r = StreamRecorder::create(&dir.path().join("s.wav"), with_cn, t0, None).unwrap();
    let media = |r: &mut StreamRecorder, p: &[u8]| r.on_datagram(t0, p).unwrap();
    assert_eq!(
        media(&mut r, &build(96, 1, 0, 1, &[0; 160])),
        Verdict::Other
    );
    assert_eq!(media(&mut r, &build(8, 2, 0, 1, &[0; 160])), Verdict::Other);
    assert_eq!(
        media(&mut r, &[0x80, 200, 0, 1, 0, 0, 0, 1]),
        Verdict::Other
    );
    assert_eq!(media(&mut r, b"not rtp"), Verdict::Other);
    assert_eq!(r.media_end(), None);
    assert_eq!(media(&mut r, &build(0, 3, 0, 1, &[0; 160])), Verdict::Media);
    assert_eq!(
        media(&mut r, &build(101, 4, 0, 1, &[1, 0, 0, 0])),
        Verdict::Media
    );
    assert_eq!(media(&mut r, &build(13, 5, 0, 1, &[40])), Verdict::Media);
    assert!(r.media_end().is_some());
    // Oversized: never media, never decoded.
    assert_eq!(
        media(&mut r, &build(0, 6, 160, 1, &vec![0; 60_000])),
        Verdict::Other
    );
    // Failed SRTP authentication.
    let mut srtp = spec();
    srtp.srtp = Some(crate::media::srtp::CryptoAttr {
        tag: 1,
        suite: crate::media::srtp::Suite::AesCm128HmacSha1_80,
        master_key: [7; 16],
        master_salt: [9; 14],
        mki: None,
        unencrypted_srtcp: false,
    });
    let mut r = StreamRecorder::create(&dir.path().join("t.wav"), srtp, t0, None).unwrap();
    let mut forged = build(0, 1, 0, 1, &[0; 170]);
    assert_eq!(r.on_datagram_mut(t0, &mut forged).unwrap(), Verdict::Other);
    assert_eq!(r.media_end(), None);
    assert_eq!(r.finish(t0).unwrap().packets_unauthenticated, 1);
}

/// How many times `sent` (packets of `n` samples) is interrupted in `x`:
/// from where its first packet is, each packet should follow the one
/// before; a packet found further on is a gap. Panics if one is missing.
fn gaps(x: &[i16], sent: &[i16], n: usize) -> usize {
    let find = |from: usize, p: &[i16]| {
        (from..x.len().saturating_sub(n - 1)).find(|i| x[*i..*i + n] == *p)
    };
    let mut pos = find(0, &sent[..n]).expect("the first packet");
    let mut gaps = 0;
    for p in sent.chunks(n) {
        if x.get(pos..pos + n) != Some(p) {
            pos = find(pos, p).expect("every packet");
            gaps += 1;
        }
        pos += n;
    }
    gaps
}

/// Tone windows (100 ms) of a file: how many of `from_ms..to_ms` hold `f`.
fn tone_windows(x: &[i16], from_ms: u64, to_ms: u64, f: f64) -> (usize, usize) {
    let all: Vec<bool> = (from_ms..to_ms)
        .step_by(100)
        .map(|ms| is_tone(&x[(ms * 8) as usize..((ms + 100) * 8) as usize], f))
        .collect();
    (all.iter().filter(|t| **t).count(), all.len())
}

#[test]
fn an_ssrc_that_changes_on_every_packet_keeps_the_tone() {
    // Each packet has its own SSRC, sequence number and timestamp, so each
    // is placed by its arrival time, which jitters by up to 6 ms (batch
    // stamping) and comes from a sender whose clock runs 0.5% slow (a
    // packet every 20.1 ms): the audio must come out as sent, without a
    // gap per packet.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let mut r = StreamRecorder::create(&path, spec(), t0, None).unwrap();
    let mut x: u32 = 99;
    let mut sent = Vec::new();
    for i in 0..150u64 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let jitter = u64::from(x >> 16) % 7;
        let at = t0 + Duration::from_micros(100_000 + 20_100 * i + 1000 * jitter);
        let payload = tone_packet(1000.0, i * 160);
        let mut pcm = Vec::new();
        crate::media::g711::Law::Ulaw.decode_into(&payload, &mut pcm);
        sent.extend(pcm);
        let p = build(0, x as u16, x, 1000 + i as u32, &payload);
        r.on_datagram(at, &p).unwrap();
        r.tick(at).unwrap();
    }
    let stats = r.finish(t0 + Duration::from_millis(3200)).unwrap();
    let x = read(&path);
    let (tone, all) = tone_windows(&x, 200, 3000, 1000.0);
    assert!(tone + 1 >= all, "{tone} of {all} windows hold the tone");
    assert_eq!(gaps(&x, &sent, 160), 0, "the audio as sent, contiguous");
    assert_eq!((stats.packets_late, stats.packets_lost), (0, 0));
}

#[test]
fn a_60_kb_payload_does_not_make_the_next_packets_late() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let mut r = StreamRecorder::create(&path, spec(), t0, None).unwrap();
    let mut s = Sender {
        seq: 0,
        ts: 0,
        ssrc: 1,
    };
    for i in 0..100u64 {
        let ms = 20 * i;
        let p = if i == 20 {
            s.packet(&vec![0x55; 60_000])
        } else {
            s.packet(&tone_packet(1000.0, ms * 8))
        };
        r.on_datagram(t0 + Duration::from_millis(ms), &p).unwrap();
    }
    let stats = r.finish(t0 + Duration::from_secs(2)).unwrap();
    assert_eq!(stats.packets_late, 0, "{stats:?}");
    assert_eq!(stats.packets_received, 100);
    let x = read(&path);
    assert_eq!(x.len(), 16000);
    let (tone, all) = tone_windows(&x, 500, 2000, 1000.0);
    assert_eq!(tone, all, "the packets after the oversized one are audio");
}

#[test]
fn the_first_two_packets_swapped_are_both_written_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut r = StreamRecorder::create(&path, spec(), t0, None).unwrap();
    // Constant payloads tell the packets apart in the file.
    let first = build(0, 500, 8000, 3, &[ulaw(1000); 160]);
    let second = build(0, 501, 8160, 3, &[ulaw(-3000); 160]);
    r.on_datagram(at(100), &second).unwrap();
    r.on_datagram(at(101), &first).unwrap();
    r.tick(at(150)).unwrap();
    for i in 2..10u16 {
        let ms = 100 + 20 * u64::from(i);
        let p = build(0, 500 + i, 8000 + 160 * u32::from(i), 3, &[ulaw(2000); 160]);
        r.on_datagram(at(ms), &p).unwrap();
        r.tick(at(ms)).unwrap();
    }
    let stats = r.finish(at(400)).unwrap();
    assert_eq!(
        (
            stats.packets_late,
            stats.packets_lost,
            stats.packets_received
        ),
        (0, 0, 10)
    );
    let x = read(&path);
    // The start is the first packet's arrival (101 ms: sample 808).
    let near = |v: i16, want: i16| (i32::from(v) - i32::from(want)).abs() < 100;
    assert!(x[..808].iter().all(|v| *v == 0));
    assert!(
        x[808..968].iter().all(|v| near(*v, 1000)),
        "{:?}",
        &x[800..820]
    );
    assert!(x[968..1128].iter().all(|v| near(*v, -3000)));
    assert!(x[1128..1288].iter().all(|v| near(*v, 2000)));
}

#[test]
fn an_end_before_the_written_silence_cuts_it_but_never_audio() {
    // A session never ACKed: its end is its last media, long after the
    // header checkpoints have padded the file with silence.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wav");
    let t0 = Instant::now();
    let mut r = StreamRecorder::create(&path, spec(), t0, None).unwrap();
    let mut s = Sender {
        seq: 0,
        ts: 0,
        ssrc: 1,
    };
    for i in 0..50u64 {
        let ms = 200 + 20 * i;
        r.on_datagram(
            t0 + Duration::from_millis(ms),
            &s.packet(&tone_packet(1000.0, ms * 8)),
        )
        .unwrap();
    }
    for ms in (1200..10_000u64).step_by(20) {
        r.tick(t0 + Duration::from_millis(ms)).unwrap();
    }
    let end = r.media_end().unwrap();
    assert_eq!(
        end,
        t0 + Duration::from_millis(1200),
        "the last packet's end"
    );
    let stats = r.finish(end).unwrap();
    let x = read(&path);
    assert_eq!(x.len(), 1200 * 8, "the last packet's audio ends at 1.2 s");
    assert_eq!(stats.samples_written, 1200 * 8);
    assert!(is_tone(&x[1100 * 8..], 1000.0));
}
