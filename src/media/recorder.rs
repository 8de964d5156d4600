//! One recorded stream: RTP datagrams in, a mono WAV out that keeps the
//! session's timeline. No sockets; no heap allocation per packet in steady
//! state (the datagram is parsed in place, copied once into the reorder
//! ring, decoded into a reserved buffer, written through a `BufWriter`).
//!
//! Timeline: sample 0 is the session start. The first packet is placed at
//! its arrival time; later ones by RTP timestamp relative to it, so loss,
//! DTX and pauses become silence and the audio never shifts. Packets are
//! reordered within a bounded window (the first one is held for it too, so
//! that a stream whose first two packets arrive swapped keeps both); late
//! and duplicate ones are dropped and counted. A timestamp that strays more
//! than [`MAX_DRIFT_S`] from the wall clock (a new SSRC, a restarted
//! sender) re-anchors the stream at the present, as does resuming after a
//! pause; a re-anchored packet that arrives within [`SNAP`] of where the
//! audio stopped continues it without a gap (arrival times jitter by a few
//! milliseconds: a sender that changes SSRC on every packet must not get
//! a gap per packet). The file is padded to the session end, or cut back
//! to the end of the last audio when the session ends earlier than what is
//! written (see [`StreamRecorder::finish`]). The WAV header is rewritten
//! at least every [`CHECKPOINT`], so a crash leaves a playable file.
//!
//! Datagrams of [`super::receiver::BUF`] bytes or more (larger than any
//! audio frame we take, or truncated by the receive buffer) are dropped:
//! decoded, 60 KB of G.711 would cover the next seven seconds of packets.
//!
//! telephone-event (RFC 4733) becomes [`DtmfOut`] events, never audio;
//! comfort noise (RFC 3389) becomes silence; RTCP sender reports give the
//! sender's wall clock.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::codec::{CodecKind, Decoder};
use super::dtmf::DtmfTracker;
use super::ogg_opus::OggOpusWriter;
use super::reorder::{PacketMeta, Push, ReorderBuffer, MAX_PAYLOAD};
use super::rtp::{self, RtpError};

/// How far a packet's timestamp may stray from the wall clock before the
/// stream is re-anchored.
pub const MAX_DRIFT_S: u64 = 2;
/// Largest interval between WAV header rewrites.
pub const CHECKPOINT: Duration = Duration::from_secs(2);
/// Reorder window and ring size.
pub const REORDER_WINDOW: Duration = Duration::from_millis(80);
pub const REORDER_SLOTS: usize = 32;
/// A re-anchored packet arriving at most this long after the end of the
/// audio written so far continues it (half the reorder window).
pub const SNAP: Duration = Duration::from_millis(40);

/// What a datagram was, for the source latch: only the stream's own media
/// may decide where the stream comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// RTP of an offered payload type (audio, telephone-event or comfort
    /// noise), authenticated when the stream is SRTP.
    Media,
    /// Anything else: RTCP, not RTP, a failed SRTP authentication or replay
    /// check, an unoffered payload type, an oversized datagram.
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("WAV file {path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The live Ogg Opus file could not be started (its header written).
    #[error("Ogg Opus file {path}: {source}")]
    Ogg {
        path: PathBuf,
        source: super::ogg_opus::OggOpusError,
    },
    #[error("SRTP: {0}")]
    Srtp(#[from] super::srtp::SrtpError),
    #[error("codec: {0}")]
    Codec(String),
}

impl RecorderError {
    /// The OS error behind a file failure (`ENOSPC`, `EMFILE`...), so the
    /// caller can say which resource ran out.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            RecorderError::Wav {
                source: hound::Error::IoError(e),
                ..
            }
            | RecorderError::Io { source: e, .. }
            | RecorderError::Ogg {
                source: super::ogg_opus::OggOpusError::Io(e),
                ..
            } => e.raw_os_error(),
            _ => None,
        }
    }

    /// What failed, without the file's path (which is the `.incoming` one,
    /// gone once the recording is published): for `metadata.json`.
    pub fn reason(&self) -> String {
        match self {
            RecorderError::Wav { source, .. } => source.to_string(),
            RecorderError::Io { source, .. } => source.to_string(),
            RecorderError::Ogg { source, .. } => source.to_string(),
            RecorderError::Srtp(e) => format!("SRTP: {e}"),
            RecorderError::Codec(s) => format!("codec: {s}"),
        }
    }
}

/// What a stream carries, from the SDP: every answered audio format (the
/// client may switch between them at any packet) and telephone-event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// (payload type, codec), in the SDP's order.
    pub codecs: Vec<(u8, CodecKind)>,
    /// Payload type of telephone-event, and its clock rate.
    pub dtmf: Option<(u8, u32)>,
    /// Payload type of comfort noise (RFC 3389), when offered.
    pub cn: Option<u8>,
    /// SRTP: the client's key (its `a=crypto` line we chose), when the
    /// stream is `RTP/SAVP`. Debug output never shows the key.
    pub srtp: Option<super::srtp::CryptoAttr>,
}

impl StreamSpec {
    /// One codec, no DTMF.
    pub fn single(kind: CodecKind, pt: u8) -> Self {
        StreamSpec {
            codecs: vec![(pt, kind)],
            dtmf: None,
            cn: None,
            srtp: None,
        }
    }

    /// Does the stream carry this codec?
    pub fn has(&self, kind: &CodecKind) -> bool {
        self.codecs.iter().any(|(_, k)| k == kind)
    }
}

/// A decoder per payload type, and the linear resampler that brings its
/// output to the file's rate.
struct PtDecoder {
    pt: u8,
    kind: CodecKind,
    decoder: Decoder,
    rate: u32,
    clock: u32,
}

/// Builds the decoders of a spec; the file rate is the highest output rate.
fn decoders_of(spec: &StreamSpec) -> Result<(Vec<PtDecoder>, u32), RecorderError> {
    let mut out = Vec::new();
    for (pt, kind) in &spec.codecs {
        let decoder = Decoder::new(kind).map_err(|e| RecorderError::Codec(e.to_string()))?;
        out.push(PtDecoder {
            pt: *pt,
            rate: decoder.output_rate(),
            clock: kind.rtp_clock_rate(),
            kind: kind.clone(),
            decoder,
        });
    }
    let rate = out
        .iter()
        .map(|d| d.rate)
        .max()
        .ok_or_else(|| RecorderError::Codec("no codec".into()))?;
    Ok((out, rate))
}

/// Linear interpolation from `rate_in` to `rate_out`, continuous across
/// packets (keeps the last input sample). Writes into `out` (cleared first).
#[derive(Debug, Default)]
struct Resampler {
    last: i16,
    /// Position of the next output sample, in input samples from the
    /// previous packet's last sample.
    pos: f64,
}

impl Resampler {
    fn run(&mut self, input: &[i16], rate_in: u32, rate_out: u32, out: &mut Vec<i16>) {
        out.clear();
        if input.is_empty() {
            return;
        }
        let step = f64::from(rate_in) / f64::from(rate_out);
        // Sample at x in [0, len]: x = 0 is `last`, x = i + 1 is input[i].
        let at = |x: f64, last: i16| -> i16 {
            let i = x.floor() as usize;
            let frac = x - x.floor();
            let a = if i == 0 {
                f64::from(last)
            } else {
                f64::from(input[i - 1])
            };
            let b = f64::from(*input.get(i).unwrap_or(&input[input.len() - 1]));
            (a + (b - a) * frac).round() as i16
        };
        let len = input.len() as f64;
        while self.pos < len {
            out.push(at(self.pos, self.last));
            self.pos += step;
        }
        self.pos -= len;
        self.last = input[input.len() - 1];
    }
}

/// A DTMF digit, placed on the stream's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfOut {
    pub digit: char,
    /// Offset from the session start.
    pub at_ms: u64,
    pub duration_ms: u64,
}

/// Counters and results of one stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamStats {
    pub packets_received: u64,
    pub packets_lost: u64,
    pub packets_late: u64,
    pub packets_duplicated: u64,
    /// Arrived while the stream was paused (answered `inactive`): dropped.
    pub packets_discarded: u64,
    pub codec_changes: u64,
    /// RFC 3550 interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    /// SRTP packets that failed authentication or replay checks: dropped.
    pub packets_unauthenticated: u64,
    /// Packets from a source other than the expected (or latched) one: dropped.
    pub packets_foreign: u64,
    pub samples_written: u64,
    pub sample_rate: u32,
    /// The sender's wall clock (Unix ms) at sample 0, from its RTCP SR.
    pub sender_clock_ms: Option<i64>,
    pub dtmf: Vec<DtmfOut>,
    /// Why the stream stopped recording before its end (a write failed);
    /// the counters and `samples_written` then describe the audio on disk.
    pub error: Option<String>,
}

#[derive(Debug)]
struct Anchor {
    /// Extended RTP timestamp at `pos`.
    ext_ts: i64,
    /// Output sample position of the anchor packet.
    pos: u64,
    last_ts: u32,
    last_ext_ts: i64,
    ssrc: u32,
}

/// RFC 3550 §A.8 interarrival jitter, in RTP ticks.
#[derive(Debug, Default)]
struct Jitter {
    last_transit: Option<i64>,
    value: f64,
}

/// Writes one stream to a mono 16-bit WAV file.
pub struct StreamRecorder {
    path: PathBuf,
    writer: hound::WavWriter<BufWriter<File>>,
    spec: StreamSpec,
    decoders: Vec<PtDecoder>,
    resampler: Resampler,
    resampled: Vec<i16>,
    out_rate: u32,
    /// RTP clock of the anchored payload type.
    clock_rate: u32,
    /// A non-Opus packet was written: the pass-through Ogg is incomplete.
    ogg_mixed: bool,
    start: Instant,
    anchor: Option<Anchor>,
    written: u64,
    /// End of the last decoded audio written (`written` is further when
    /// silence was added since).
    audio_end: u64,
    /// Arrival of the last packet of the stream's media (for a session
    /// whose end is "what was received").
    last_media: Option<Instant>,
    reorder: ReorderBuffer,
    pcm: Vec<i16>,
    dtmf: DtmfTracker,
    /// SSRC of the telephone-event packets last seen (the flushed event's).
    dtmf_ssrc: u32,
    jitter: Jitter,
    stats: StreamStats,
    paused: bool,
    last_checkpoint: Instant,
    sr: Option<rtp::SenderReport>,
    /// Opus streams: the packets themselves into an Ogg Opus file. Boxed,
    /// like `srtp`: kept out of line so that the fields every packet
    /// touches share a few cache lines (thousands of streams, each visited
    /// once per 20 ms, are never in cache: each line touched is a miss).
    ogg: Option<Box<(OggOpusWriter<BufWriter<File>>, PathBuf)>>,
    /// SRTP streams: decrypts with the client's key (1.8 KB of key state).
    srtp: Option<Box<super::srtp::SrtpReceiver>>,
}

/// Pre-skip of pass-through Ogg files (RFC 7845 recommends 3840 for
/// encoders; the player drops these samples, so the same amount of silence
/// is written first to keep the timeline).
const OGG_PRE_SKIP: u16 = 312;

impl StreamRecorder {
    /// Creates the WAV file. `start` is the session start: sample 0. For an
    /// Opus stream, `ogg` names a pass-through Ogg Opus file to write too.
    pub fn create(
        path: &Path,
        spec: StreamSpec,
        start: Instant,
        ogg: Option<&Path>,
    ) -> Result<Self, RecorderError> {
        let (decoders, out_rate) = decoders_of(&spec)?;
        let wav = crate::media::pcm16_spec(out_rate, 1);
        let wav_err = |source| RecorderError::Wav {
            path: path.to_path_buf(),
            source,
        };
        let mut writer = hound::WavWriter::create(path, wav).map_err(wav_err)?;
        // The header reaches the file now: a full disk refuses the session
        // instead of leaving a 0-byte WAV behind a 200 OK.
        writer.flush().map_err(wav_err)?;
        let ogg = match ogg.filter(|_| spec.has(&CodecKind::Opus)) {
            Some(p) => {
                let file = File::create(p).map_err(|source| RecorderError::Io {
                    path: p.to_path_buf(),
                    source,
                })?;
                let mut w = OggOpusWriter::new(
                    BufWriter::new(file),
                    1,
                    48_000,
                    OGG_PRE_SKIP,
                    &[("ENCODER", "srs pass-through")],
                )
                .map_err(|source| RecorderError::Ogg {
                    path: p.to_path_buf(),
                    source,
                })?;
                w.write_silence(u64::from(OGG_PRE_SKIP))
                    .map_err(|source| RecorderError::Ogg {
                        path: p.to_path_buf(),
                        source,
                    })?;
                Some((w, p.to_path_buf()))
            }
            None => None,
        };
        let srtp = match &spec.srtp {
            Some(attr) => Some(super::srtp::SrtpReceiver::new(attr)?),
            None => None,
        };
        Ok(StreamRecorder {
            srtp: srtp.map(Box::new),
            ogg: ogg.map(Box::new),
            path: path.to_path_buf(),
            writer,
            clock_rate: decoders[0].clock,
            spec,
            decoders,
            resampler: Resampler::default(),
            resampled: Vec::new(),
            ogg_mixed: false,
            out_rate,
            start,
            anchor: None,
            written: 0,
            audio_end: 0,
            last_media: None,
            reorder: ReorderBuffer::new(REORDER_SLOTS, REORDER_WINDOW).hold_start(),
            pcm: Vec::with_capacity(960),
            dtmf: DtmfTracker::default(),
            dtmf_ssrc: 0,
            jitter: Jitter::default(),
            stats: StreamStats {
                sample_rate: out_rate,
                ..StreamStats::default()
            },
            paused: false,
            last_checkpoint: start,
            sr: None,
        })
    }

    fn wav_err(&self, source: hound::Error) -> RecorderError {
        RecorderError::Wav {
            path: self.path.clone(),
            source,
        }
    }

    /// Output rate of the file.
    pub fn sample_rate(&self) -> u32 {
        self.out_rate
    }

    /// A re-offer changed the formats. The file's rate cannot change: a
    /// spec whose highest rate is above it is refused (returns false) and
    /// the stream keeps its decoders; lower-rate codecs are resampled up.
    pub fn set_codec(&mut self, spec: StreamSpec) -> bool {
        if spec == self.spec {
            return true;
        }
        let Ok((decoders, rate)) = decoders_of(&spec) else {
            return false;
        };
        if rate > self.out_rate {
            return false;
        }
        if spec.srtp != self.spec.srtp {
            // New SDES keys in a re-offer.
            self.srtp = spec
                .srtp
                .as_ref()
                .and_then(|a| super::srtp::SrtpReceiver::new(a).ok())
                .map(Box::new);
        }
        self.decoders = decoders;
        self.spec = spec;
        self.stats.codec_changes += 1;
        self.anchor = None;
        true
    }

    /// Pauses or resumes. While paused (answered `inactive`, e.g. a PCI
    /// pause) packets are counted and dropped and the file gets silence.
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            self.anchor = None;
        }
        self.paused = paused;
    }

    /// The next packet is placed at its arrival time.
    pub fn reanchor(&mut self) {
        self.anchor = None;
    }

    fn wall_pos(&self, now: Instant) -> u64 {
        self.wall_samples(now.saturating_duration_since(self.start))
    }

    fn wall_samples(&self, d: Duration) -> u64 {
        d.as_secs() * u64::from(self.out_rate)
            + u64::from(d.subsec_nanos()) * u64::from(self.out_rate) / 1_000_000_000
    }

    /// Where the stream's received media ends on the session's clock: the
    /// end of the last audio written, or the arrival of the last media
    /// packet if later (None if no media came).
    pub fn media_end(&self) -> Option<Instant> {
        let audio = (self.audio_end > 0).then(|| {
            self.start
                + Duration::from_nanos(
                    self.audio_end * 1_000_000_000 / u64::from(self.out_rate.max(1)),
                )
        });
        audio.max(self.last_media)
    }

    fn ticks_to_samples(&self, ticks: i64) -> i64 {
        ticks * i64::from(self.out_rate) / i64::from(self.clock_rate.max(1))
    }

    /// Packets received and lost so far (the metrics read them between
    /// ticks; the final counts come with [`StreamRecorder::close`]).
    pub fn live_counts(&self) -> (u64, u64) {
        (self.stats.packets_received, self.reorder.stats.lost)
    }

    /// One datagram as received, writable: SRTP (and rtcp-mux SRTCP) is
    /// authenticated and decrypted in place first; packets that fail are
    /// counted and dropped. The verdict says whether it was the stream's
    /// media (see [`Verdict`]).
    pub fn on_datagram_mut(
        &mut self,
        now: Instant,
        data: &mut [u8],
    ) -> Result<Verdict, RecorderError> {
        let Some(srtp) = &mut self.srtp else {
            return self.on_datagram(now, data);
        };
        let plain = if rtp::is_rtcp(data) {
            srtp.unprotect_rtcp(data)
        } else {
            srtp.unprotect_rtp(data)
        };
        match plain {
            Ok(n) => self.on_datagram(now, &data[..n]),
            Err(_) => {
                self.stats.packets_received += 1;
                self.stats.packets_unauthenticated += 1;
                Ok(Verdict::Other)
            }
        }
    }

    /// SRTCP from the RTCP port (decrypted when the stream is SRTP).
    pub fn on_rtcp_datagram_mut(&mut self, data: &mut [u8]) {
        match &mut self.srtp {
            Some(srtp) => {
                if let Ok(n) = srtp.unprotect_rtcp(data) {
                    self.on_rtcp(&data[..n]);
                }
            }
            None => self.on_rtcp(data),
        }
    }

    /// One plain datagram from the RTP socket (or an rtcp-mux RTCP packet).
    pub fn on_datagram(&mut self, now: Instant, data: &[u8]) -> Result<Verdict, RecorderError> {
        let v = match rtp::parse_view(data) {
            Ok(v) => v,
            Err(RtpError::Rtcp) => {
                self.on_rtcp(data);
                return Ok(Verdict::Other);
            }
            Err(RtpError::Invalid(_)) => return Ok(Verdict::Other),
        };
        self.stats.packets_received += 1;
        if data.len() >= super::receiver::BUF {
            return Ok(Verdict::Other);
        }
        let clock = self
            .decoders
            .iter()
            .find(|d| d.pt == v.payload_type)
            .map(|d| d.clock);
        let dtmf = self.spec.dtmf.filter(|(pt, _)| *pt == v.payload_type);
        let verdict = if clock.is_some() || dtmf.is_some() || self.spec.cn == Some(v.payload_type) {
            Verdict::Media
        } else {
            Verdict::Other
        };
        if self.paused {
            self.stats.packets_discarded += 1;
            return Ok(verdict);
        }
        if verdict == Verdict::Media {
            self.last_media = Some(now);
        }
        if let Some((_, rate)) = dtmf {
            self.dtmf_ssrc = v.ssrc;
            if let Some(ev) = self.dtmf.on_packet(v.timestamp, v.marker, v.payload) {
                self.record_dtmf(now, v.ssrc, ev.digit, ev.rtp_timestamp, ev.duration, rate);
            }
        }
        // telephone-event and comfort noise (and a stray unoffered type)
        // share the audio's sequence numbers: they take their place in the
        // ring (so they are not counted lost) and are skipped when
        // released. Only audio starts or switches the count.
        if clock.is_none() && self.reorder.ssrc() != Some(v.ssrc) {
            return Ok(verdict);
        }
        let payload = if clock.is_some() { v.payload } else { &[][..] };
        if let Some(clock) = clock.filter(|c| *c != self.clock_rate) {
            // A switch to a codec with another RTP clock: its timestamps
            // are not comparable; place it by arrival.
            self.clock_rate = clock;
            self.anchor = None;
            self.jitter = Jitter::default();
        }
        if clock.is_some() {
            self.update_jitter(now, v.timestamp);
        }
        let meta = PacketMeta {
            seq: v.sequence,
            timestamp: v.timestamp,
            ssrc: v.ssrc,
            payload_type: v.payload_type,
            marker: v.marker,
            arrival: now,
        };
        if self.reorder.take_in_order(&meta) {
            // The usual case: decoded straight from the receive buffer.
            self.place(meta, payload)?;
        } else {
            let mut buf = [0u8; MAX_PAYLOAD];
            loop {
                match self.reorder.push(meta, payload) {
                    Push::Stored | Push::Dropped => break,
                    Push::Full => {
                        if let Some((m, len)) = self.reorder.pop_oldest(&mut buf) {
                            self.place(m, &buf[..len])?;
                        }
                    }
                }
            }
        }
        self.tick(now)?;
        Ok(verdict)
    }

    /// Releases the packets whose reorder wait is over (call on a timer too).
    pub fn tick(&mut self, now: Instant) -> Result<(), RecorderError> {
        if !self.reorder.is_empty() {
            let mut buf = [0u8; MAX_PAYLOAD];
            while let Some((m, len)) = self.reorder.pop(now, &mut buf) {
                self.place(m, &buf[..len])?;
            }
        }
        if now.saturating_duration_since(self.last_checkpoint) >= CHECKPOINT {
            self.last_checkpoint = now;
            // A silent or paused stream still advances on disk, up to half a
            // second behind the clock (far outside the reorder window), so a
            // crash leaves its file as long as the others.
            let behind = self
                .wall_pos(now)
                .saturating_sub(u64::from(self.out_rate) / 2);
            if behind > self.written {
                self.silence(behind - self.written)?;
            }
            self.writer.flush().map_err(|e| self.wav_err(e))?;
        }
        Ok(())
    }

    /// When [`StreamRecorder::tick`] has work next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let reorder = self.reorder.next_deadline();
        let checkpoint = self.last_checkpoint + CHECKPOINT;
        Some(reorder.map_or(checkpoint, |r| r.min(checkpoint)))
    }

    fn on_rtcp(&mut self, data: &[u8]) {
        if let Some(sr) = rtp::sender_report(data) {
            if self.sr.is_none() {
                self.sr = Some(sr);
            }
        }
    }

    /// Handles RTCP received on the RTCP port.
    pub fn on_rtcp_datagram(&mut self, data: &[u8]) {
        self.on_rtcp(data);
    }

    fn update_jitter(&mut self, now: Instant, ts: u32) {
        let d = now.saturating_duration_since(self.start);
        let arrival = (d.as_secs_f64() * f64::from(self.clock_rate)) as i64;
        let transit = arrival - i64::from(ts);
        if let Some(last) = self.jitter.last_transit {
            let delta = (transit - last).unsigned_abs() as f64;
            if delta < f64::from(self.clock_rate) * 10.0 {
                self.jitter.value += (delta - self.jitter.value) / 16.0;
            }
        }
        self.jitter.last_transit = Some(transit);
    }

    /// Sample position of a packet: by timestamp from the anchor, or at
    /// the wall clock for the first packet and after a jump or SSRC change.
    fn position(&mut self, m: &PacketMeta) -> u64 {
        let wall = self.wall_pos(m.arrival);
        let max_drift = MAX_DRIFT_S * u64::from(self.out_rate);
        if let Some(a) = &self.anchor {
            if a.ssrc == m.ssrc {
                let ext = a.last_ext_ts + i64::from(m.timestamp.wrapping_sub(a.last_ts) as i32);
                let pos = a.pos as i64 + self.ticks_to_samples(ext - a.ext_ts);
                if pos >= 0 && (pos as u64).abs_diff(wall) <= max_drift {
                    if let Some(a) = &mut self.anchor {
                        if ext > a.last_ext_ts {
                            a.last_ext_ts = ext;
                            a.last_ts = m.timestamp;
                        }
                    }
                    return pos as u64;
                }
            }
        }
        // Placed by arrival. Arrival times jitter (a datagram is stamped
        // with its batch's time): when the audio written so far ends just
        // before, continue it rather than leave a gap of a few ms.
        let snap = self.wall_samples(SNAP);
        let pos = if self.audio_end == self.written
            && self.written > 0
            && wall > self.written
            && wall - self.written <= snap
        {
            self.written
        } else {
            wall.max(self.written)
        };
        self.anchor = Some(Anchor {
            ext_ts: i64::from(m.timestamp),
            pos,
            last_ts: m.timestamp,
            last_ext_ts: i64::from(m.timestamp),
            ssrc: m.ssrc,
        });
        pos
    }

    /// Decodes a released packet and writes it at its place.
    fn place(&mut self, m: PacketMeta, payload: &[u8]) -> Result<(), RecorderError> {
        if !self.decoders.iter().any(|d| d.pt == m.payload_type) {
            return Ok(()); // telephone-event or comfort noise: no audio
        }
        let pos = self.position(&m);
        let Some(d) = self.decoders.iter_mut().find(|d| d.pt == m.payload_type) else {
            return Ok(());
        };
        if d.decoder.decode(payload, &mut self.pcm).is_err() {
            return Ok(()); // undecodable payload: silence
        }
        let is_opus = d.kind == CodecKind::Opus;
        if d.rate != self.out_rate {
            self.resampler
                .run(&self.pcm, d.rate, self.out_rate, &mut self.resampled);
            std::mem::swap(&mut self.pcm, &mut self.resampled);
        }
        if !is_opus {
            self.ogg_mixed = true;
        }
        let n = self.pcm.len() as u64;
        if n == 0 || pos + n <= self.written {
            if n > 0 {
                self.stats.packets_late += 1;
            }
            return Ok(());
        }
        if pos > self.written {
            self.silence(pos - self.written)?;
        }
        if let Some((ogg, path)) = self.ogg.as_deref_mut().filter(|_| is_opus) {
            // The Opus packet itself, at its place on a 48 kHz timeline.
            let at = ogg.granule().saturating_sub(u64::from(OGG_PRE_SKIP));
            let want = pos * 48_000 / u64::from(self.out_rate);
            let ogg_err = |source| RecorderError::Ogg {
                path: path.clone(),
                source,
            };
            if want > at {
                ogg.write_silence(want - at).map_err(ogg_err)?;
            }
            if want + n * 48_000 / u64::from(self.out_rate) > at {
                ogg.write_packet(payload).map_err(ogg_err)?;
            }
        }
        let skip = (self.written - pos.min(self.written)) as usize;
        let count = (self.pcm.len() - skip) as u32;
        let mut w = self.writer.get_i16_writer(count);
        for s in &self.pcm[skip..] {
            w.write_sample(*s);
        }
        w.flush().map_err(|e| self.wav_err(e))?;
        self.written += n - skip as u64;
        self.audio_end = self.written;
        Ok(())
    }

    fn record_dtmf(
        &mut self,
        now: Instant,
        ssrc: u32,
        digit: char,
        ts: u32,
        duration: u32,
        rate: u32,
    ) {
        let pos = match &self.anchor {
            // The audio of the same source places the event by its RTP
            // timestamp.
            Some(a) if a.ssrc == ssrc => {
                let ext = a.last_ext_ts + i64::from(ts.wrapping_sub(a.last_ts) as i32);
                // telephone-event runs at its own clock (usually the audio's)
                let ticks = (ext - a.ext_ts) * i64::from(self.clock_rate) / i64::from(rate.max(1));
                (a.pos as i64 + self.ticks_to_samples(ticks)).max(0) as u64
            }
            // No audio of this source placed yet (a new SSRC that starts
            // with a digit, or a stream of digits only): its timestamps
            // mean nothing against another source's, so the clock places
            // it; the event is reported at its end, so its start is its
            // duration earlier.
            _ => {
                let dur = u64::from(duration) * u64::from(self.out_rate) / u64::from(rate.max(1));
                self.wall_pos(now).saturating_sub(dur)
            }
        };
        self.stats.dtmf.push(DtmfOut {
            digit,
            at_ms: pos * 1000 / u64::from(self.out_rate),
            duration_ms: u64::from(duration) * 1000 / u64::from(rate.max(1)),
        });
    }

    fn silence(&mut self, n: u64) -> Result<(), RecorderError> {
        let mut left = n;
        while left > 0 {
            let chunk = left.min(4096) as u32;
            let mut w = self.writer.get_i16_writer(chunk);
            for _ in 0..chunk {
                w.write_sample(0);
            }
            w.flush().map_err(|e| self.wav_err(e))?;
            left -= u64::from(chunk);
        }
        self.written += n;
        Ok(())
    }

    /// Releases what is buffered, pads with silence up to the session end
    /// and closes the file. An `end` before what is already written (a
    /// session published as "what was received", e.g. never ACKed) cuts
    /// the silence the header checkpoints added after it; audio is never
    /// cut.
    pub fn finish(mut self, end: Instant) -> Result<StreamStats, RecorderError> {
        let (mut stats, total) = self.complete(end)?;
        self.writer
            .finalize()
            .map_err(|source| RecorderError::Wav {
                path: self.path.clone(),
                source,
            })?;
        cut_trailing_silence(&self.path, self.written, total, &mut stats);
        Ok(stats)
    }

    /// Closes the stream at `end` and always reports it: normally as
    /// [`StreamRecorder::finish`]; after a write error (`failed`, or one
    /// while finishing) as [`StreamRecorder::truncate`] does.
    pub fn close(mut self, end: Instant, failed: Option<String>) -> StreamStats {
        if let Some(e) = failed {
            return self.truncate(e);
        }
        match self.complete(end) {
            Ok((mut stats, total)) => {
                let (path, written) = (self.path.clone(), self.written);
                match self.writer.finalize() {
                    Ok(()) => {
                        cut_trailing_silence(&path, written, total, &mut stats);
                        stats
                    }
                    Err(e) => truncated_on_disk(&path, stats, e.to_string()),
                }
            }
            Err(e) => self.truncate(e.reason()),
        }
    }

    /// After a write error: the file is closed as it is on disk, its header
    /// made to cover the whole frames there, and the counters up to the
    /// failure are returned with `samples_written` counting the samples on
    /// disk and `error` saying what happened. A file with no usable header
    /// (nothing reached the disk) is removed.
    pub fn truncate(mut self, error: String) -> StreamStats {
        let stats = self.final_stats();
        if let Some((_, path)) = self.ogg.take().map(|b| *b) {
            // Incomplete: the file made after the call from the WAV replaces it.
            let _ = std::fs::remove_file(path);
        }
        let path = self.path.clone();
        // Dropping the writer tries its last flush and header update
        // (errors ignored); the header is rewritten from the disk below.
        drop(self);
        truncated_on_disk(&path, stats, error)
    }

    /// The counters at the end: the reorder buffer's, jitter, sender clock.
    fn final_stats(&mut self) -> StreamStats {
        let mut stats = std::mem::take(&mut self.stats);
        stats.samples_written = self.written;
        stats.sample_rate = self.out_rate;
        let r = self.reorder.stats;
        stats.packets_lost = r.lost;
        stats.packets_late += r.late;
        stats.packets_duplicated = r.duplicated;
        stats.jitter_ms = self.jitter.value * 1000.0 / f64::from(self.clock_rate.max(1));
        if let (Some(sr), Some(a)) = (self.sr, &self.anchor) {
            // The sender's clock at sample 0: its SR mapping moved back to
            // the anchor, then to position 0.
            let ticks = i64::from(sr.rtp_timestamp.wrapping_sub(a.last_ts) as i32)
                + (a.last_ext_ts - a.ext_ts);
            let at_anchor = sr.unix_ms() - ticks * 1000 / i64::from(self.clock_rate.max(1));
            stats.sender_clock_ms =
                Some(at_anchor - (a.pos * 1000 / u64::from(self.out_rate)) as i64);
        }
        stats
    }

    /// Everything of [`StreamRecorder::finish`] but the final header and
    /// the cut: the stats, and where the recording ends (`total`, in
    /// samples: the end, or the last audio if that is later). An `end`
    /// before what is already written (a session published as "what was
    /// received", e.g. never ACKed) leaves the silence the header
    /// checkpoints added past it for the caller to cut; audio is never cut.
    fn complete(&mut self, end: Instant) -> Result<(StreamStats, u64), RecorderError> {
        let mut buf = [0u8; MAX_PAYLOAD];
        while let Some((m, len)) = self.reorder.drain(&mut buf) {
            self.place(m, &buf[..len])?;
        }
        if let Some(ev) = self.dtmf.flush() {
            if let Some((_, rate)) = self.spec.dtmf {
                let ssrc = self.dtmf_ssrc;
                self.record_dtmf(end, ssrc, ev.digit, ev.rtp_timestamp, ev.duration, rate);
            }
        }
        let total = self.wall_pos(end).max(self.audio_end);
        if total > self.written {
            self.silence(total - self.written)?;
        }
        // Everything is in the file: a flush error now is a write error
        // like any other (the caller truncates to what is on disk).
        self.writer.flush().map_err(|e| self.wav_err(e))?;
        let mut stats = self.final_stats();
        stats.samples_written = self.written.min(total);
        if let Some((mut ogg, path)) = self.ogg.take().map(|b| *b) {
            let at = ogg.granule().saturating_sub(u64::from(OGG_PRE_SKIP));
            let want = total * 48_000 / u64::from(self.out_rate);
            let done = if want > at {
                ogg.write_silence(want - at)
            } else {
                Ok(())
            };
            if let Err(e) = done.and_then(|_| ogg.finish().map(|_| ())) {
                tracing::error!(path = %path.display(), error = %e, "Ogg pass-through file incomplete");
                self.ogg_mixed = true;
            }
            if self.ogg_mixed {
                // Not Opus throughout: the file made after the call from the
                // WAV replaces it.
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok((stats, total))
    }
}

/// Cuts a finished WAV holding `written` samples to `total` (the silence
/// header checkpoints wrote past the end); if that fails the file is kept
/// whole and reported so.
fn cut_trailing_silence(path: &Path, written: u64, total: u64, stats: &mut StreamStats) {
    if total < written && crate::store::recover::truncate_wav(path, total).is_none() {
        tracing::warn!(path = %path.display(), "cannot cut the trailing silence");
        stats.samples_written = written;
    }
}

/// The report of a stream whose writes failed: the WAV header repaired
/// to the whole frames on disk, `samples_written` set to them, `error` set.
/// Without a usable header (nothing reached the disk) the file is removed
/// and no sample counted.
fn truncated_on_disk(path: &Path, mut stats: StreamStats, error: String) -> StreamStats {
    match crate::store::recover::repair_wav_frames(path) {
        Some((frames, rate, _)) => {
            stats.samples_written = frames;
            stats.sample_rate = rate;
        }
        None => {
            let _ = std::fs::remove_file(path);
            stats.samples_written = 0;
        }
    }
    tracing::warn!(path = %path.display(), seconds = stats.samples_written / u64::from(stats.sample_rate.max(1)),
        error = %error, "a stream stopped recording early: its file keeps the audio written until then");
    stats.error = Some(error);
    stats
}

#[cfg(test)]
mod tests;
