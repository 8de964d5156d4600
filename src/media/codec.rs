//! Audio codecs negotiated in SDP ([`CodecKind`]) and one decoder per
//! stream ([`Decoder`]) that turns RTP payloads into mono 16-bit PCM.
//!
//! - G.711 µ-law / A-law by table ([`super::g711`]).
//! - G.722 at 64 kbit/s (RFC 3551: clock 8000 in SDP, audio at 16 kHz), by
//!   an in-crate port of the SpanDSP decoder, writing into the caller's
//!   buffer.
//! - L16 (RFC 3551 §4.5.11): big-endian, any rate, downmixed to mono.
//! - Opus (RFC 7587) through the system libopus (`opus` crate), always
//!   decoded at 48 kHz mono (libopus downmixes stereo streams), with its
//!   packet-loss concealment.
//! - G.729 / G.729A (RFC 3551 §4.5.6) through the system libbcg729, only
//!   with the cargo feature `g729` (off by default: the default build does
//!   not need the library).
//! - Comfort noise (RFC 3389) decodes to nothing: the timeline pads
//!   silence.
//!
//! In steady state `decode` and `conceal` do not allocate: they write into
//! the caller's `out`, which should come from [`scratch`].

use super::g711::Law;

/// Samples in 120 ms at 48 kHz: the longest Opus packet, and the capacity
/// of [`scratch`].
pub const MAX_FRAME_SAMPLES: usize = 5760;

/// Opus decodes (and conceals) in multiples of 2.5 ms: 120 samples at 48 kHz.
const OPUS_PLC_GRANULE: usize = 120;

/// A PCM buffer with room for the longest packet any decoder emits
/// (120 ms at 48 kHz), to pass to [`Decoder::decode`] again and again.
pub fn scratch() -> Vec<i16> {
    Vec::with_capacity(MAX_FRAME_SAMPLES)
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("codec not supported for decoding: {0}")]
    Unsupported(String),
    #[error("Opus: {0}")]
    Opus(#[from] opus::Error),
}

/// What an SDP rtpmap (+ fmtp) negotiates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecKind {
    Pcmu,
    Pcma,
    G722,
    L16 {
        rate: u32,
        channels: u16,
    },
    Opus,
    /// Decoded only when built with the feature `g729`.
    G729,
    TelephoneEvent {
        rate: u32,
    },
    ComfortNoise,
    Unsupported(String),
}

impl CodecKind {
    /// From an rtpmap encoding name, clock rate and channels (the optional
    /// third field of `a=rtpmap`), case-insensitive.
    ///
    /// G.711 at a clock other than 8000 is `Unsupported`. G.722 is taken
    /// whatever clock is written (RFC 3551 says 8000; its RTP clock is 8000
    /// regardless). Opus is always `opus/48000/2` in SDP (RFC 7587) and is
    /// decoded at 48 kHz mono whatever the channels.
    pub fn from_rtpmap(name: &str, clock_rate: u32, channels: Option<u16>) -> CodecKind {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if let Some(law) = Law::from_codec(name) {
            if clock_rate != 8000 {
                return CodecKind::Unsupported(format!("{name}/{clock_rate}"));
            }
            return match law {
                Law::Ulaw => CodecKind::Pcmu,
                Law::Alaw => CodecKind::Pcma,
            };
        }
        if is("G722") {
            CodecKind::G722
        } else if is("L16") {
            if clock_rate == 0 {
                return CodecKind::Unsupported(format!("{name}/{clock_rate}"));
            }
            CodecKind::L16 {
                rate: clock_rate,
                channels: channels.unwrap_or(1).max(1),
            }
        } else if is("opus") {
            CodecKind::Opus
        } else if is("G729") || is("G729a") {
            CodecKind::G729
        } else if is("telephone-event") {
            CodecKind::TelephoneEvent { rate: clock_rate }
        } else if is("CN") {
            CodecKind::ComfortNoise
        } else {
            CodecKind::Unsupported(name.to_string())
        }
    }

    /// The static payload types of RFC 3551 (used when there is no
    /// rtpmap). Assigned audio types that cannot be decoded here come back
    /// as `Unsupported`; dynamic, unassigned and video types as `None`.
    pub fn from_static_pt(pt: u8) -> Option<CodecKind> {
        let unsupported = |s: &str| Some(CodecKind::Unsupported(s.to_string()));
        match pt {
            0 => Some(CodecKind::Pcmu),
            8 => Some(CodecKind::Pcma),
            9 => Some(CodecKind::G722),
            10 => Some(CodecKind::L16 {
                rate: 44100,
                channels: 2,
            }),
            11 => Some(CodecKind::L16 {
                rate: 44100,
                channels: 1,
            }),
            13 => Some(CodecKind::ComfortNoise),
            3 => unsupported("GSM"),
            4 => unsupported("G723"),
            5 | 6 | 16 | 17 => unsupported("DVI4"),
            7 => unsupported("LPC"),
            12 => unsupported("QCELP"),
            14 => unsupported("MPA"),
            15 => unsupported("G728"),
            18 => Some(CodecKind::G729),
            _ => None,
        }
    }

    /// Whether audio can be recorded from it (a [`Decoder`] exists for it;
    /// for G.729, only with the feature `g729`).
    pub fn is_audio(&self) -> bool {
        match self {
            CodecKind::Pcmu
            | CodecKind::Pcma
            | CodecKind::G722
            | CodecKind::L16 { .. }
            | CodecKind::Opus => true,
            CodecKind::G729 => cfg!(feature = "g729"),
            CodecKind::TelephoneEvent { .. }
            | CodecKind::ComfortNoise
            | CodecKind::Unsupported(_) => false,
        }
    }

    /// PCM output rate of the decoder: G.711 8000, G.722 16000, L16 its
    /// rate, Opus 48000. For the kinds without audio, their RTP clock rate.
    pub fn output_rate(&self) -> u32 {
        match self {
            CodecKind::G722 => 16000,
            other => other.rtp_clock_rate(),
        }
    }

    /// RTP clock rate: G.711 and G.722 8000 (G.722 by the RFC 3551 quirk),
    /// Opus 48000, L16 and telephone-event their rate, CN (and unsupported
    /// codecs, for want of better) 8000.
    pub fn rtp_clock_rate(&self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722 | CodecKind::G729 => 8000,
            CodecKind::L16 { rate, .. } => *rate,
            CodecKind::Opus => 48000,
            CodecKind::TelephoneEvent { rate } => *rate,
            CodecKind::ComfortNoise | CodecKind::Unsupported(_) => 8000,
        }
    }
}

/// Decoder of one stream: holds the per-stream state (G.722 predictor,
/// libopus decoder).
pub enum Decoder {
    G711(Law),
    G722(Box<G722Decoder>),
    L16 {
        rate: u32,
        channels: u16,
    },
    Opus(opus::Decoder),
    #[cfg(feature = "g729")]
    G729(g729::G729Decoder),
    ComfortNoise,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decoder::G711(law) => f.debug_tuple("G711").field(law).finish(),
            Decoder::G722(_) => f.write_str("G722"),
            Decoder::L16 { rate, channels } => f
                .debug_struct("L16")
                .field("rate", rate)
                .field("channels", channels)
                .finish(),
            Decoder::Opus(_) => f.write_str("Opus"),
            #[cfg(feature = "g729")]
            Decoder::G729(_) => f.write_str("G729"),
            Decoder::ComfortNoise => f.write_str("ComfortNoise"),
        }
    }
}

impl Decoder {
    /// A decoder for `kind`. Telephone-event (see [`super::dtmf`]) and
    /// unsupported codecs are an error.
    pub fn new(kind: &CodecKind) -> Result<Decoder, CodecError> {
        Ok(match kind {
            CodecKind::Pcmu => Decoder::G711(Law::Ulaw),
            CodecKind::Pcma => Decoder::G711(Law::Alaw),
            CodecKind::G722 => Decoder::G722(Box::default()),
            CodecKind::L16 { rate, channels } => Decoder::L16 {
                rate: *rate,
                channels: (*channels).max(1),
            },
            CodecKind::Opus => Decoder::Opus(opus::Decoder::new(48000, opus::Channels::Mono)?),
            #[cfg(feature = "g729")]
            CodecKind::G729 => Decoder::G729(g729::G729Decoder::new()?),
            #[cfg(not(feature = "g729"))]
            CodecKind::G729 => {
                return Err(CodecError::Unsupported(
                    "G729 (built without the g729 feature)".to_string(),
                ))
            }
            CodecKind::ComfortNoise => Decoder::ComfortNoise,
            CodecKind::TelephoneEvent { rate } => {
                return Err(CodecError::Unsupported(format!(
                    "telephone-event/{rate} (DTMF, not audio)"
                )))
            }
            CodecKind::Unsupported(name) => return Err(CodecError::Unsupported(name.clone())),
        })
    }

    /// PCM rate of what `decode` and `conceal` produce.
    pub fn output_rate(&self) -> u32 {
        match self {
            Decoder::G711(_) | Decoder::ComfortNoise => 8000,
            #[cfg(feature = "g729")]
            Decoder::G729(_) => 8000,
            Decoder::G722(_) => 16000,
            Decoder::L16 { rate, .. } => *rate,
            Decoder::Opus(_) => 48000,
        }
    }

    /// Decodes one RTP payload into `out` (cleared first): mono i16 at
    /// [`Decoder::output_rate`]. Does not allocate when `out` has the
    /// capacity (see [`scratch`]). Comfort noise leaves `out` empty. An
    /// L16 payload's trailing partial frame is ignored. A corrupt Opus
    /// packet is an error, with `out` empty.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        out.clear();
        match self {
            Decoder::G711(law) => law.decode_into(payload, out),
            Decoder::G722(state) => state.decode(payload, out),
            Decoder::L16 { channels, .. } => decode_l16(payload, *channels, out),
            Decoder::Opus(dec) => {
                if payload.is_empty() {
                    // libopus would take an empty packet for a loss.
                    return Ok(());
                }
                out.resize(MAX_FRAME_SAMPLES, 0);
                match dec.decode(payload, out, false) {
                    Ok(n) => out.truncate(n),
                    Err(e) => {
                        out.clear();
                        return Err(e.into());
                    }
                }
            }
            #[cfg(feature = "g729")]
            Decoder::G729(dec) => dec.decode(payload, out),
            Decoder::ComfortNoise => {}
        }
        Ok(())
    }

    /// Fills `out` (cleared first) with `samples` of concealment for lost
    /// audio: the codec's packet-loss concealment for Opus (and G.729) for
    /// the first 120 ms, silence after that (as PLC fades out anyway);
    /// silence for the others.
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<(), CodecError> {
        out.clear();
        out.resize(samples, 0);
        #[cfg(feature = "g729")]
        if let Decoder::G729(dec) = self {
            dec.conceal(&mut out[..samples.min(MAX_FRAME_SAMPLES / 6)]);
        }
        if let Decoder::Opus(dec) = self {
            let plc = samples.min(MAX_FRAME_SAMPLES) / OPUS_PLC_GRANULE * OPUS_PLC_GRANULE;
            let mut done = 0;
            while done < plc {
                let n = dec.decode(&[], &mut out[done..plc], false)?;
                if n == 0 {
                    break;
                }
                done += n;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "g729")]
mod g729 {
    //! G.729 through Debian's libbcg729 (`libbcg729-dev`).

    use super::CodecError;
    use std::os::raw::c_void;

    /// Bytes of one 10 ms G.729 frame, and the samples it decodes to.
    pub const FRAME_BYTES: usize = 10;
    pub const FRAME_SAMPLES: usize = 80;
    /// Bytes of a G.729 Annex B SID frame (RFC 3551 §4.5.6).
    const SID_BYTES: usize = 2;

    #[link(name = "bcg729")]
    extern "C" {
        fn initBcg729DecoderChannel() -> *mut c_void;
        fn closeBcg729DecoderChannel(ctx: *mut c_void);
        fn bcg729Decoder(
            ctx: *mut c_void,
            bitstream: *const u8,
            bitstream_length: u8,
            frame_erasure_flag: u8,
            sid_frame_flag: u8,
            rfc3389_payload_flag: u8,
            signal: *mut i16,
        );
    }

    /// One libbcg729 decoder channel.
    pub struct G729Decoder {
        ctx: *mut c_void,
    }

    // SAFETY: the channel context is plain memory owned by this value alone.
    unsafe impl Send for G729Decoder {}

    impl G729Decoder {
        pub fn new() -> Result<Self, CodecError> {
            // SAFETY: no arguments; returns a new context or null.
            let ctx = unsafe { initBcg729DecoderChannel() };
            if ctx.is_null() {
                return Err(CodecError::Unsupported(
                    "G729: libbcg729 could not create a decoder".to_string(),
                ));
            }
            Ok(G729Decoder { ctx })
        }

        fn frame(&mut self, bits: &[u8], sid: bool, out: &mut Vec<i16>) {
            let mut pcm = [0i16; FRAME_SAMPLES];
            // SAFETY: `bits` is valid for its length (10 or 2); `pcm` has
            // room for the 80 samples bcg729 writes.
            unsafe {
                bcg729Decoder(
                    self.ctx,
                    bits.as_ptr(),
                    bits.len() as u8,
                    0,
                    u8::from(sid),
                    0,
                    pcm.as_mut_ptr(),
                )
            };
            out.extend_from_slice(&pcm);
        }

        /// 10-byte frames, then at most one 2-byte SID frame; other
        /// trailing bytes are ignored.
        pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
            let mut frames = payload.chunks_exact(FRAME_BYTES);
            for f in frames.by_ref() {
                self.frame(f, false, out);
            }
            let rest = frames.remainder();
            if rest.len() == SID_BYTES {
                self.frame(rest, true, out);
            }
        }

        /// Overwrites `out` with concealment, frame by frame (a partial
        /// last frame is left as it is).
        pub fn conceal(&mut self, out: &mut [i16]) {
            let zero = [0u8; FRAME_BYTES];
            for chunk in out.chunks_exact_mut(FRAME_SAMPLES) {
                // SAFETY: as in `frame`; with the erasure flag the bitstream
                // is not read, but a valid 10-byte buffer is passed anyway.
                unsafe {
                    bcg729Decoder(
                        self.ctx,
                        zero.as_ptr(),
                        FRAME_BYTES as u8,
                        1,
                        0,
                        0,
                        chunk.as_mut_ptr(),
                    )
                };
            }
        }
    }

    impl Drop for G729Decoder {
        fn drop(&mut self) {
            // SAFETY: `ctx` came from initBcg729DecoderChannel, freed once.
            unsafe { closeBcg729DecoderChannel(self.ctx) };
        }
    }

    #[cfg(test)]
    pub mod encoder {
        use std::os::raw::c_void;

        #[link(name = "bcg729")]
        extern "C" {
            fn initBcg729EncoderChannel(enable_vad: u8) -> *mut c_void;
            fn closeBcg729EncoderChannel(ctx: *mut c_void);
            fn bcg729Encoder(ctx: *mut c_void, input: *const i16, bitstream: *mut u8, len: *mut u8);
        }

        /// Encodes 80-sample frames (test only).
        pub fn encode(pcm: &[i16]) -> Vec<u8> {
            let mut v = Vec::new();
            // SAFETY: buffers sized as the bcg729 API requires.
            unsafe {
                let ctx = initBcg729EncoderChannel(0);
                assert!(!ctx.is_null());
                for f in pcm.chunks_exact(super::FRAME_SAMPLES) {
                    let mut bits = [0u8; 10];
                    let mut len = 0u8;
                    bcg729Encoder(ctx, f.as_ptr(), bits.as_mut_ptr(), &mut len);
                    v.extend_from_slice(&bits[..usize::from(len)]);
                }
                closeBcg729EncoderChannel(ctx);
            }
            v
        }
    }
}

/// Big-endian 16-bit frames of `channels` samples, averaged to mono.
fn decode_l16(payload: &[u8], channels: u16, out: &mut Vec<i16>) {
    let frame = 2 * usize::from(channels.max(1));
    if frame == 2 {
        out.extend(
            payload
                .chunks_exact(2)
                .map(|b| i16::from_be_bytes([b[0], b[1]])),
        );
    } else {
        let n = i64::from(channels.max(1));
        out.extend(payload.chunks_exact(frame).map(|f| {
            let sum: i64 = f
                .chunks_exact(2)
                .map(|b| i64::from(i16::from_be_bytes([b[0], b[1]])))
                .sum();
            // The mean of i16 values is an i16.
            (sum / n) as i16
        }));
    }
}

// ---------------------------------------------------------------------------
// G.722 decoder, 64 kbit/s (mode 1), 16 kHz output.
//
// Ported from SpanDSP's g722_decode.c by Steve Underwood (public domain),
// based on the CMU G.722 codec (Chengxiang Lu and Alex Hauptmann, Carnegie
// Mellon University, 1993: use unrestricted), by way of the Rust translation
// in the `ezk-g722` crate (MIT), changed to write into the caller's buffer.
// It is checked bit for bit against `ezk-g722` in the tests.

#[derive(Debug, Default, Clone)]
struct G722Band {
    s: i32,
    sp: i32,
    sz: i32,
    r: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    p: [i32; 3],
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    sg: [i32; 7],
    nb: i32,
    det: i32,
}

/// State of one G.722 stream (64 kbit/s, one byte per two 16 kHz samples).
#[derive(Debug, Clone)]
pub struct G722Decoder {
    x: [i32; 24],
    band: [G722Band; 2],
}

impl Default for G722Decoder {
    fn default() -> Self {
        let mut band: [G722Band; 2] = Default::default();
        // As g722_decode_init: the initial step sizes.
        band[0].det = 32;
        band[1].det = 8;
        G722Decoder { x: [0; 24], band }
    }
}

fn saturate(amp: i32) -> i32 {
    amp.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

fn block4(band: &mut G722Band, d: i32) {
    // Block 4, RECONS
    band.d[0] = d;
    band.r[0] = saturate(band.s + d);

    // Block 4, PARREC
    band.p[0] = saturate(band.sz + d);

    // Block 4, UPPOL2
    for i in 0..3 {
        band.sg[i] = band.p[i] >> 15;
    }
    let wd1 = saturate(band.a[1] << 2);
    let mut wd2 = if band.sg[0] == band.sg[1] { -wd1 } else { wd1 };
    if wd2 > 32767 {
        wd2 = 32767;
    }
    let mut wd3 = (wd2 >> 7) + if band.sg[0] == band.sg[2] { 128 } else { -128 };
    wd3 += (band.a[2] * 32512) >> 15;
    band.ap[2] = wd3.clamp(-12288, 12288);

    // Block 4, UPPOL1
    band.sg[0] = band.p[0] >> 15;
    band.sg[1] = band.p[1] >> 15;
    let wd1 = if band.sg[0] == band.sg[1] { 192 } else { -192 };
    let wd2 = (band.a[1] * 32640) >> 15;
    band.ap[1] = saturate(wd1 + wd2);
    let wd3 = saturate(15360 - band.ap[2]);
    if band.ap[1] > wd3 {
        band.ap[1] = wd3;
    } else if band.ap[1] < -wd3 {
        band.ap[1] = -wd3;
    }

    // Block 4, UPZERO
    let wd1 = if d == 0 { 0 } else { 128 };
    band.sg[0] = d >> 15;
    for i in 1..7 {
        band.sg[i] = band.d[i] >> 15;
        let wd2 = if band.sg[i] == band.sg[0] { wd1 } else { -wd1 };
        let wd3 = (band.b[i] * 32640) >> 15;
        band.bp[i] = saturate(wd2 + wd3);
    }

    // Block 4, DELAYA
    for i in (1..7).rev() {
        band.d[i] = band.d[i - 1];
        band.b[i] = band.bp[i];
    }
    for i in (1..3).rev() {
        band.r[i] = band.r[i - 1];
        band.p[i] = band.p[i - 1];
        band.a[i] = band.ap[i];
    }

    // Block 4, FILTEP
    let wd1 = saturate(band.r[1] + band.r[1]);
    let wd1 = (band.a[1] * wd1) >> 15;
    let wd2 = saturate(band.r[2] + band.r[2]);
    let wd2 = (band.a[2] * wd2) >> 15;
    band.sp = saturate(wd1 + wd2);

    // Block 4, FILTEZ
    let mut sz = 0;
    for i in (1..7).rev() {
        let wd1 = saturate(band.d[i] + band.d[i]);
        sz += (band.b[i] * wd1) >> 15;
    }
    band.sz = saturate(sz);

    // Block 4, PREDIC
    band.s = saturate(band.sp + band.sz);
}

static WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
static RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
static ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
static WH: [i32; 3] = [0, -214, 798];
static RH2: [i32; 4] = [2, 1, 2, 1];
static QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
static QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
static QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
static QMF_COEFFS: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Scale factor from a log step size (blocks 3L SCALEL / 3H SCALEH).
fn scale(nb: i32, shift_base: i32) -> i32 {
    let wd1 = (nb >> 6) & 31;
    let wd2 = shift_base - (nb >> 11);
    let wd3 = if wd2 < 0 {
        ILB[wd1 as usize] << -wd2
    } else {
        ILB[wd1 as usize] >> wd2
    };
    wd3 << 2
}

impl G722Decoder {
    /// Appends two 16 kHz samples per payload byte to `out`.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) {
        for &byte in payload {
            let code = i32::from(byte);

            // Low band: 6 bits.
            let ilow = (code & 0x3f) as usize;
            let ihigh = ((code >> 6) & 0x3) as usize;
            let low = &mut self.band[0];

            // Block 5L, LOW BAND INVQBL; 5L RECONS; 6L LIMIT
            let wd2 = (low.det * QM6[ilow]) >> 15;
            let rlow = (low.s + wd2).clamp(-16384, 16383);

            // Block 2L, INVQAL
            let ilow4 = ilow >> 2;
            let dlowt = (low.det * QM4[ilow4]) >> 15;

            // Block 3L, LOGSCL
            let nb = ((low.nb * 127) >> 7) + WL[RL42[ilow4] as usize];
            low.nb = nb.clamp(0, 18432);

            // Block 3L, SCALEL
            low.det = scale(low.nb, 8);

            block4(low, dlowt);

            // High band: 2 bits.
            let high = &mut self.band[1];

            // Block 2H, INVQAH; 5H RECONS; 6H LIMIT
            let dhigh = (high.det * QM2[ihigh]) >> 15;
            let rhigh = (dhigh + high.s).clamp(-16384, 16383);

            // Block 2H, INVQAH
            let nb = ((high.nb * 127) >> 7) + WH[RH2[ihigh] as usize];
            high.nb = nb.clamp(0, 22528);

            // Block 3H, SCALEH
            high.det = scale(high.nb, 10);

            block4(high, dhigh);

            // The receive QMF.
            self.x.copy_within(2.., 0);
            self.x[22] = rlow + rhigh;
            self.x[23] = rlow - rhigh;
            let mut xout1 = 0;
            let mut xout2 = 0;
            for (i, c) in QMF_COEFFS.iter().enumerate() {
                xout2 += self.x[2 * i] * c;
                xout1 += self.x[2 * i + 1] * QMF_COEFFS[11 - i];
            }
            out.push(saturate(xout1 >> 11) as i16);
            out.push(saturate(xout2 >> 11) as i16);
        }
    }
}

#[cfg(test)]
mod tests;
