use super::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

// Counts the heap allocations of the current thread, so a test can
// prove that steady-state decoding makes none.
struct Counting;
thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}
fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}
fn allocations() -> u64 {
    ALLOCS.with(|c| c.get())
}
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}
#[global_allocator]
static COUNTING: Counting = Counting;

/// Relative power of `freq` in `x` (Goertzel), normalised by length.
fn goertzel(x: &[i16], rate: u32, freq: f64) -> f64 {
    crate::testkit::goertzel(x, f64::from(rate), freq)
}

fn assert_tone(x: &[i16], rate: u32, freq: f64, other: f64) {
    let p = goertzel(x, rate, freq);
    let q = goertzel(x, rate, other);
    assert!(p > 1000.0 * q, "{freq} Hz: {p}, {other} Hz: {q}");
    assert!(p > 1e5, "tone too weak: {p}");
}

fn tone(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<i16> {
    crate::testkit::sine(freq, rate, 0, n, amp)
}

// G.711 encoders (Sun's reference g711.c), for the tests only.
fn linear_to_ulaw(pcm: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut v = i32::from(pcm);
    let mask = if v < 0 {
        v = -v;
        0x7f
    } else {
        0xff
    };
    v = v.min(32635) + BIAS;
    let seg = (0..8).find(|s| v < (0x100 << s)).unwrap_or(7);
    let u = ((seg << 4) | ((v >> (seg + 3)) & 0xf)) as u8;
    u ^ mask
}

fn linear_to_alaw(pcm: i16) -> u8 {
    let mut v = i32::from(pcm) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = (0..8).find(|s| v < (0x20 << s)).unwrap_or(8);
    if seg >= 8 {
        return 0x7f ^ mask;
    }
    let mut a = (seg << 4) as u8;
    a |= if seg < 2 {
        ((v >> 1) & 0xf) as u8
    } else {
        ((v >> seg) & 0xf) as u8
    };
    a ^ mask
}

fn decode_all(kind: &CodecKind, packets: &[Vec<u8>]) -> (Vec<i16>, Vec<usize>) {
    let mut dec = Decoder::new(kind).unwrap();
    let mut out = scratch();
    let mut all = Vec::new();
    let mut sizes = Vec::new();
    for p in packets {
        dec.decode(p, &mut out).unwrap();
        sizes.push(out.len());
        all.extend_from_slice(&out);
    }
    (all, sizes)
}

#[test]
fn g711_encoders_roundtrip() {
    for b in 0..=255u8 {
        let u = crate::media::g711::ulaw_to_linear(b);
        // 0x7f is µ-law's "negative zero".
        let expected = if b == 0x7f { 0xff } else { b };
        assert_eq!(linear_to_ulaw(u), expected, "{b:#x}");
        let a = crate::media::g711::alaw_to_linear(b);
        assert_eq!(linear_to_alaw(a), b, "{b:#x}");
    }
}

#[test]
fn pcmu_and_pcma_tone() {
    let pcm = tone(1000.0, 8000, 8000, 12000.0);
    for (kind, enc) in [
        (CodecKind::Pcmu, linear_to_ulaw as fn(i16) -> u8),
        (CodecKind::Pcma, linear_to_alaw),
    ] {
        let packets: Vec<Vec<u8>> = pcm
            .chunks(160)
            .map(|c| c.iter().map(|s| enc(*s)).collect())
            .collect();
        let (out, sizes) = decode_all(&kind, &packets);
        assert!(sizes.iter().all(|n| *n == 160));
        assert_eq!(Decoder::new(&kind).unwrap().output_rate(), 8000);
        assert_tone(&out, 8000, 1000.0, 400.0);
    }
}

#[test]
fn g722_tone() {
    let pcm = tone(1000.0, 16000, 16000, 10000.0);
    let mut enc = ezk_g722::libg722::encoder::Encoder::new(
        ezk_g722::libg722::Bitrate::Mode1_64000,
        false,
        false,
    );
    let bits = enc.encode(&pcm);
    assert_eq!(bits.len(), 8000);
    let packets: Vec<Vec<u8>> = bits.chunks(160).map(<[u8]>::to_vec).collect();
    let (out, sizes) = decode_all(&CodecKind::G722, &packets);
    assert_eq!(Decoder::new(&CodecKind::G722).unwrap().output_rate(), 16000);
    assert_eq!(sizes.len(), 50);
    assert!(sizes.iter().all(|n| *n == 320));
    // Skip the adaptation at the start.
    assert_tone(&out[1600..], 16000, 1000.0, 400.0);
    assert_tone(&out[1600..], 16000, 1000.0, 3000.0);
    // The decoded tone has about the amplitude sent.
    let peak = out[1600..].iter().map(|v| v.unsigned_abs()).max().unwrap();
    assert!((8000..12000).contains(&peak), "peak {peak}");
}

/// The port matches `ezk-g722`'s decoder bit for bit (given the same
/// initial step sizes: ezk starts them at 0, SpanDSP and ITU at 32/8).
#[test]
fn g722_matches_reference_port() {
    let mut pcm = tone(1000.0, 16000, 8000, 9000.0);
    pcm.extend(tone(5200.0, 16000, 8000, 20000.0));
    let mut rng = 7u64;
    pcm.extend((0..8000).map(|_| (xorshift(&mut rng) >> 48) as i16));
    let mut enc = ezk_g722::libg722::encoder::Encoder::new(
        ezk_g722::libg722::Bitrate::Mode1_64000,
        false,
        false,
    );
    let mut bits = enc.encode(&pcm);
    bits.extend((0..4000).map(|_| xorshift(&mut rng) as u8));
    let mut reference = ezk_g722::libg722::decoder::Decoder::new(
        ezk_g722::libg722::Bitrate::Mode1_64000,
        false,
        false,
    );
    let expected = reference.decode(&bits);

    let mut ours = G722Decoder::default();
    ours.band[0].det = 0;
    ours.band[1].det = 0;
    let mut out = Vec::new();
    let mut all = Vec::new();
    for p in bits.chunks(160) {
        out.clear();
        ours.decode(p, &mut out);
        all.extend_from_slice(&out);
    }
    assert_eq!(all.len(), expected.len());
    assert!(all == expected, "G.722 output differs from the reference");
}

fn opus_packets(freq: f64, channels: opus::Channels, n: usize) -> Vec<Vec<u8>> {
    let ch = channels as usize;
    let mono = tone(freq, 48000, 960 * n, 10000.0);
    let pcm: Vec<i16> = mono
        .iter()
        .flat_map(|s| std::iter::repeat_n(*s, ch))
        .collect();
    let mut enc = opus::Encoder::new(48000, channels, opus::Application::Audio).unwrap();
    let mut buf = [0u8; 1500];
    pcm.chunks(960 * ch)
        .map(|f| {
            let len = enc.encode(f, &mut buf).unwrap();
            buf[..len].to_vec()
        })
        .collect()
}

#[test]
fn opus_tone_and_concealment() {
    for channels in [opus::Channels::Mono, opus::Channels::Stereo] {
        let packets = opus_packets(400.0, channels, 50);
        let mut dec = Decoder::new(&CodecKind::Opus).unwrap();
        assert_eq!(dec.output_rate(), 48000);
        let mut out = scratch();
        let mut all = Vec::new();
        for p in &packets {
            dec.decode(p, &mut out).unwrap();
            assert_eq!(out.len(), 960);
            all.extend_from_slice(&out);
        }
        assert_tone(&all[4800..], 48000, 400.0, 1000.0);

        dec.conceal(960, &mut out).unwrap();
        assert_eq!(out.len(), 960);
        // The concealment continues the tone rather than going silent.
        assert!(out.iter().any(|v| v.unsigned_abs() > 1000));
        for n in [0, 1, 119, 121, 5760, 10_000] {
            dec.conceal(n, &mut out).unwrap();
            assert_eq!(out.len(), n);
        }
        // And decoding goes on after it.
        dec.decode(&packets[0], &mut out).unwrap();
        assert_eq!(out.len(), 960);
    }
}

#[test]
fn opus_corrupt_packet_is_an_error_and_empty_is_nothing() {
    let mut dec = Decoder::new(&CodecKind::Opus).unwrap();
    let mut out = scratch();
    // TOC of a 20 ms CELT frame, code 3 with an impossible frame count.
    assert!(dec.decode(&[0xfb, 0x00], &mut out).is_err());
    assert!(out.is_empty());
    dec.decode(&[], &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn l16_big_endian_and_downmix() {
    let samples = [0i16, 1, -1, 32767, -32768, 0x1234];
    let payload: Vec<u8> = samples.iter().flat_map(|s| s.to_be_bytes()).collect();
    let mut out = scratch();
    let mut dec = Decoder::new(&CodecKind::L16 {
        rate: 16000,
        channels: 1,
    })
    .unwrap();
    assert_eq!(dec.output_rate(), 16000);
    dec.decode(&payload, &mut out).unwrap();
    assert_eq!(out, samples);
    // A trailing odd byte is ignored.
    let mut odd = payload.clone();
    odd.push(0x7f);
    dec.decode(&odd, &mut out).unwrap();
    assert_eq!(out, samples);

    let mut stereo = Decoder::new(&CodecKind::from_static_pt(10).unwrap()).unwrap();
    assert_eq!(stereo.output_rate(), 44100);
    let frames: [(i16, i16); 4] = [
        (100, 300),
        (-32768, -32768),
        (32767, 32767),
        (32767, -32768),
    ];
    let payload: Vec<u8> = frames
        .iter()
        .flat_map(|(l, r)| [l.to_be_bytes(), r.to_be_bytes()].concat())
        .collect();
    stereo.decode(&payload, &mut out).unwrap();
    assert_eq!(out, [200, -32768, 32767, 0]);
    // A partial frame is ignored.
    stereo
        .decode(&payload[..payload.len() - 2], &mut out)
        .unwrap();
    assert_eq!(out.len(), 3);
}

#[test]
fn comfort_noise_and_concealment_silence() {
    let mut dec = Decoder::new(&CodecKind::ComfortNoise).unwrap();
    let mut out = vec![1, 2, 3];
    dec.decode(&[40], &mut out).unwrap();
    assert!(out.is_empty());
    for kind in [CodecKind::Pcma, CodecKind::G722, CodecKind::ComfortNoise] {
        let mut dec = Decoder::new(&kind).unwrap();
        dec.conceal(320, &mut out).unwrap();
        assert_eq!(out, vec![0; 320]);
    }
}

#[test]
fn decoder_can_move_to_another_task() {
    fn send<T: Send>() {}
    send::<Decoder>();
    send::<CodecError>();
}

#[test]
fn static_payload_types() {
    assert_eq!(CodecKind::from_static_pt(0), Some(CodecKind::Pcmu));
    assert_eq!(CodecKind::from_static_pt(8), Some(CodecKind::Pcma));
    assert_eq!(CodecKind::from_static_pt(9), Some(CodecKind::G722));
    assert_eq!(
        CodecKind::from_static_pt(10),
        Some(CodecKind::L16 {
            rate: 44100,
            channels: 2
        })
    );
    assert_eq!(
        CodecKind::from_static_pt(11),
        Some(CodecKind::L16 {
            rate: 44100,
            channels: 1
        })
    );
    assert_eq!(CodecKind::from_static_pt(13), Some(CodecKind::ComfortNoise));
    assert_eq!(CodecKind::from_static_pt(18), Some(CodecKind::G729));
    assert_eq!(
        CodecKind::from_static_pt(3),
        Some(CodecKind::Unsupported("GSM".into()))
    );
    assert_eq!(CodecKind::from_static_pt(96), None);
    assert_eq!(CodecKind::from_static_pt(26), None);
    let g722 = CodecKind::from_static_pt(9).unwrap();
    assert_eq!((g722.output_rate(), g722.rtp_clock_rate()), (16000, 8000));
}

#[test]
fn rtpmap_names() {
    let k = CodecKind::from_rtpmap("G722", 8000, None);
    assert_eq!(k, CodecKind::G722);
    assert_eq!((k.output_rate(), k.rtp_clock_rate()), (16000, 8000));
    assert!(k.is_audio());

    let k = CodecKind::from_rtpmap("opus", 48000, Some(2));
    assert_eq!(k, CodecKind::Opus);
    assert_eq!((k.output_rate(), k.rtp_clock_rate()), (48000, 48000));
    assert_eq!(
        CodecKind::from_rtpmap("OPUS", 48000, Some(2)),
        CodecKind::Opus
    );

    assert_eq!(CodecKind::from_rtpmap("pcmu", 8000, None), CodecKind::Pcmu);
    assert_eq!(
        CodecKind::from_rtpmap("PCMA", 8000, Some(1)),
        CodecKind::Pcma
    );
    assert!(matches!(
        CodecKind::from_rtpmap("PCMA", 16000, None),
        CodecKind::Unsupported(_)
    ));
    let k = CodecKind::from_rtpmap("L16", 16000, Some(2));
    assert_eq!(
        k,
        CodecKind::L16 {
            rate: 16000,
            channels: 2
        }
    );
    assert_eq!((k.output_rate(), k.rtp_clock_rate()), (16000, 16000));
    assert_eq!(
        CodecKind::from_rtpmap("l16", 8000, None),
        CodecKind::L16 {
            rate: 8000,
            channels: 1
        }
    );

    let k = CodecKind::from_rtpmap("telephone-event", 8000, None);
    assert_eq!(k, CodecKind::TelephoneEvent { rate: 8000 });
    assert!(!k.is_audio());
    assert_eq!(k.rtp_clock_rate(), 8000);
    assert!(matches!(Decoder::new(&k), Err(CodecError::Unsupported(_))));
    assert_eq!(
        CodecKind::from_rtpmap("Telephone-Event", 48000, None).rtp_clock_rate(),
        48000
    );

    let k = CodecKind::from_rtpmap("CN", 8000, None);
    assert_eq!(k, CodecKind::ComfortNoise);
    assert!(!k.is_audio());

    let k = CodecKind::from_rtpmap("G729", 8000, None);
    assert_eq!(k, CodecKind::G729);
    assert_eq!(k.rtp_clock_rate(), 8000);
    assert_eq!(k.is_audio(), cfg!(feature = "g729"));
    assert_eq!(Decoder::new(&k).is_ok(), cfg!(feature = "g729"));

    let k = CodecKind::from_rtpmap("AMR", 8000, None);
    assert_eq!(k, CodecKind::Unsupported("AMR".into()));
    assert!(!k.is_audio());
    assert!(Decoder::new(&k).is_err());
}

fn every_kind() -> Vec<CodecKind> {
    vec![
        CodecKind::Pcmu,
        CodecKind::Pcma,
        CodecKind::G722,
        CodecKind::L16 {
            rate: 8000,
            channels: 1,
        },
        CodecKind::L16 {
            rate: 44100,
            channels: 2,
        },
        CodecKind::L16 {
            rate: 48000,
            channels: 3,
        },
        CodecKind::Opus,
        #[cfg(feature = "g729")]
        CodecKind::G729,
        CodecKind::ComfortNoise,
    ]
}

#[cfg(feature = "g729")]
#[test]
fn g729_tone_sid_and_concealment() {
    let pcm = tone(1000.0, 8000, 8000, 8000.0);
    let bits = g729::encoder::encode(&pcm);
    assert_eq!(bits.len(), 1000);
    let packets: Vec<Vec<u8>> = bits.chunks(20).map(<[u8]>::to_vec).collect();
    let (out, sizes) = decode_all(&CodecKind::G729, &packets);
    assert!(sizes.iter().all(|n| *n == 160));
    assert_tone(&out[800..], 8000, 1000.0, 400.0);

    let mut dec = Decoder::new(&CodecKind::G729).unwrap();
    let mut out = scratch();
    // Two frames and a SID frame.
    dec.decode(&[&bits[..20], &[0x55, 0x3a][..]].concat(), &mut out)
        .unwrap();
    assert_eq!(out.len(), 240);
    // A stray byte after a frame is ignored.
    dec.decode(&bits[..11], &mut out).unwrap();
    assert_eq!(out.len(), 80);
    for n in [0, 79, 160, 1000] {
        dec.conceal(n, &mut out).unwrap();
        assert_eq!(out.len(), n);
    }
}

#[test]
fn no_allocation_in_steady_state() {
    let mut rng = 1u64;
    for kind in every_kind() {
        let packets: Vec<Vec<u8>> = match kind {
            CodecKind::Opus => opus_packets(400.0, opus::Channels::Stereo, 20),
            _ => (0..20)
                .map(|_| (0..320).map(|_| xorshift(&mut rng) as u8).collect())
                .collect(),
        };
        let mut dec = Decoder::new(&kind).unwrap();
        let mut out = scratch();
        let (cap, ptr) = (out.capacity(), out.as_ptr());
        let before = allocations();
        for i in 0..1000 {
            let p = &packets[i % packets.len()];
            dec.decode(p, &mut out).unwrap();
            if i % 10 == 9 {
                dec.conceal(960, &mut out).unwrap();
            }
            assert_eq!(out.capacity(), cap, "{kind:?}");
            assert_eq!(out.as_ptr(), ptr, "{kind:?}");
        }
        assert_eq!(allocations(), before, "{kind:?} allocated");
    }
    // The counter does see allocations.
    let before = allocations();
    let v = std::hint::black_box(vec![0u8; 64]);
    assert!(allocations() > before && v.len() == 64);
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn random_payloads_never_panic() {
    let mut rng = 0x5eed_u64;
    let mut out = scratch();
    for kind in every_kind() {
        let mut dec = Decoder::new(&kind).unwrap();
        for len in 0..400 {
            for _ in 0..4 {
                let p: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
                // Opus may reject a packet; nothing may panic.
                let _ = dec.decode(&p, &mut out);
                assert!(out.len() <= MAX_FRAME_SAMPLES.max(2 * len), "{kind:?}");
            }
        }
        // Extreme values.
        for b in [0x00u8, 0x7f, 0x80, 0xff] {
            let _ = dec.decode(&[b; 399], &mut out);
        }
    }
}
