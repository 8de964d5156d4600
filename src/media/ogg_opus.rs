//! Ogg Opus files (RFC 7845): a pass-through writer for Opus packets as
//! they arrive in RTP ([`OggOpusWriter`]) and an encoder from a finished
//! WAV ([`encode_wav_to_ogg_opus`]).
//!
//! The Ogg pages are built here rather than with the `ogg` crate: its
//! `PacketWriter` keeps every packet as an owned `Cow` until the page is
//! written (one allocation per packet on the packet path), and cannot
//! leave the last packet pending for the end-of-stream page.
//!
//! Layout of a file: the `OpusHead` page (beginning of stream), the
//! `OpusTags` page(s), then audio pages. Every page's granule position is
//! the number of 48 kHz samples decoded up to the last packet that ends on
//! it, counting the `pre_skip` samples (RFC 7845 §4); playback length is
//! `final granule - pre_skip`. The last page carries the end-of-stream
//! flag, and its granule may be lower than the packets it holds add up to
//! (end trimming, RFC 7845 §4.5).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Opus always decodes at (and RFC 7845 counts granules in) 48 kHz.
pub const OPUS_RATE: u32 = 48_000;
/// A page is closed once it holds this much audio (1 s), so a crash loses
/// at most about a second of a recording.
const PAGE_SAMPLES: u64 = OPUS_RATE as u64;
/// Samples per 20 ms at 48 kHz.
const FRAME_20MS: u64 = 960;
/// Samples per 2.5 ms at 48 kHz: the shortest Opus frame.
const FRAME_2_5MS: u64 = 120;
/// Largest packet libopus produces for one frame per channel times the
/// maximum of 120 ms (RFC 6716 §3.2.1 bounds a frame to 1275 bytes).
const MAX_PACKET: usize = 1275 * 6 * 2 + 8;
/// Serial number of the one logical stream in our files.
const SERIAL: u32 = 0x5352_5321; // "SRS!"

#[derive(Debug, thiserror::Error)]
pub enum OggOpusError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("Opus: {0}")]
    Opus(#[from] opus::Error),
    #[error("WAV file {path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Duration in 48 kHz samples of one Opus packet, read from its TOC byte
/// (RFC 6716 §3.1) and frame-count byte. `None` if the packet is
/// malformed: empty, code 1 with an odd payload, code 2 whose first frame
/// overruns the packet, code 3 with 0 frames or more than 120 ms (R1-R7
/// as far as the duration depends on them).
pub fn packet_samples(packet: &[u8]) -> Option<u64> {
    let (&toc, rest) = packet.split_first()?;
    let config = toc >> 3;
    let frame: u64 = match config {
        // SILK-only NB/MB/WB: 10, 20, 40, 60 ms
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        // Hybrid SWB/FB: 10, 20 ms
        12..=15 => [480, 960][usize::from(config % 2)],
        // CELT-only: 2.5, 5, 10, 20 ms
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u64 = match toc & 0x03 {
        0 => 1,
        1 => {
            if rest.len() % 2 != 0 {
                return None;
            }
            2
        }
        2 => {
            let (&b0, after) = rest.split_first()?;
            let (len, after) = match b0 {
                0..=251 => (usize::from(b0), after),
                _ => {
                    let (&b1, after) = after.split_first()?;
                    (usize::from(b1) * 4 + usize::from(b0), after)
                }
            };
            if len > after.len() {
                return None;
            }
            2
        }
        _ => {
            let (&count, _) = rest.split_first()?;
            let m = u64::from(count & 0x3f);
            if m == 0 {
                return None;
            }
            m
        }
    };
    let total = frame * frames;
    // R5: a packet holds at most 120 ms.
    (total <= 5760).then_some(total)
}

/// CRC-32 of Ogg pages: polynomial 0x04c11db7, no reflection, init 0.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            k += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
};

fn crc_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = (crc << 8) ^ CRC_TABLE[((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// Builds Ogg pages of one logical stream. Buffers are reused: once the
/// body buffer has grown to the largest page seen, nothing is allocated.
struct PageWriter<W: Write> {
    out: W,
    seq: u32,
    first: bool,
    /// Lacing values of the current page.
    lacing: [u8; 255],
    segments: usize,
    body: Vec<u8>,
    /// The current page starts with the continuation of a packet.
    continued: bool,
    /// Granule of the last packet that ends on the current page, if any.
    page_granule: Option<u64>,
    /// Granule of the last page written.
    last_written_granule: u64,
}

impl<W: Write> PageWriter<W> {
    fn new(out: W) -> Self {
        PageWriter {
            out,
            seq: 0,
            first: true,
            lacing: [0; 255],
            segments: 0,
            body: Vec::with_capacity(4096),
            continued: false,
            page_granule: None,
            last_written_granule: 0,
        }
    }

    /// Adds a packet ending at `granule`. A page that cannot take the whole
    /// packet is written first; a packet larger than one page spans pages.
    fn push(&mut self, mut packet: &[u8], granule: u64) -> std::io::Result<()> {
        if self.segments > 0 && self.segments + packet.len() / 255 + 1 > 255 {
            self.flush_page(false)?;
        }
        loop {
            let free = 255 - self.segments;
            let need = packet.len() / 255 + 1;
            if need <= free {
                for _ in 0..need - 1 {
                    self.lacing[self.segments] = 255;
                    self.segments += 1;
                }
                self.lacing[self.segments] = (packet.len() % 255) as u8;
                self.segments += 1;
                self.body.extend_from_slice(packet);
                self.page_granule = Some(granule);
                return Ok(());
            }
            let (head, tail) = packet.split_at(free * 255);
            self.lacing[self.segments..].fill(255);
            self.segments = 255;
            self.body.extend_from_slice(head);
            self.flush_page(false)?;
            self.continued = true;
            packet = tail;
        }
    }

    /// Writes the current page (even an empty one) and flushes `out`.
    /// `granule_override` replaces the page's granule (header pages: 0;
    /// end trimming on the last page).
    fn flush_page_with(&mut self, eos: bool, granule_override: Option<u64>) -> std::io::Result<()> {
        let granule = granule_override.or(self.page_granule);
        let mut header = [0u8; 27 + 255];
        header[..4].copy_from_slice(b"OggS");
        header[4] = 0;
        header[5] = u8::from(self.continued) | (u8::from(self.first) << 1) | (u8::from(eos) << 2);
        // -1: no packet ends on this page.
        header[6..14].copy_from_slice(&granule.unwrap_or(u64::MAX).to_le_bytes());
        header[14..18].copy_from_slice(&SERIAL.to_le_bytes());
        header[18..22].copy_from_slice(&self.seq.to_le_bytes());
        header[26] = self.segments as u8;
        let hlen = 27 + self.segments;
        header[27..hlen].copy_from_slice(&self.lacing[..self.segments]);
        let crc = crc_update(crc_update(0, &header[..hlen]), &self.body);
        header[22..26].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&header[..hlen])?;
        self.out.write_all(&self.body)?;
        self.out.flush()?;
        if let Some(g) = granule {
            self.last_written_granule = g;
        }
        self.seq = self.seq.wrapping_add(1);
        self.first = false;
        self.continued = false;
        self.segments = 0;
        self.body.clear();
        self.page_granule = None;
        Ok(())
    }

    fn flush_page(&mut self, eos: bool) -> std::io::Result<()> {
        self.flush_page_with(eos, None)
    }
}

/// Writes an Ogg Opus stream (RFC 7845): `OpusHead` (version 1, channel
/// count, pre-skip, input sample rate, gain 0, mapping family 0) and
/// `OpusTags` (vendor `srs`, plus the user comments given) pages, then
/// audio pages.
///
/// Granule positions are in 48 kHz samples (RFC 7845 §4). A page is
/// written (and `out` flushed) once it holds about 1 s of audio, so a crash
/// loses little; the page with the latest packet is kept until
/// [`finish`](Self::finish) so that it can carry the end-of-stream flag.
///
/// Used on the packet path: [`write_packet`](Self::write_packet) does not
/// allocate in steady state (the page buffer grows to the largest page
/// seen, typically a few kB, then is reused).
pub struct OggOpusWriter<W: Write> {
    pages: PageWriter<W>,
    pre_skip: u64,
    /// Granule after the last packet pushed.
    granule: u64,
    /// Audio samples on the current (unwritten) page.
    page_samples: u64,
    audio_packets: u64,
    skipped: u64,
    /// Part of a silence gap shorter than the shortest silent packet,
    /// carried to the next gap (or trimmed off the end at `finish`).
    silence_debt: u64,
    silence_20ms: Vec<u8>,
    silence_2_5ms: Vec<u8>,
}

impl<W: Write> OggOpusWriter<W> {
    /// Writes the header pages. `channels` is 1 or 2 (mapping family 0);
    /// `input_sample_rate` is informational (what the audio was captured
    /// at); `pre_skip` is in 48 kHz samples. Comment keys must be
    /// printable ASCII without `=` (RFC 7845 §5.2).
    pub fn new(
        out: W,
        channels: u8,
        input_sample_rate: u32,
        pre_skip: u16,
        comments: &[(&str, &str)],
    ) -> Result<Self, OggOpusError> {
        let ch = match channels {
            1 => opus::Channels::Mono,
            2 => opus::Channels::Stereo,
            n => {
                return Err(OggOpusError::Unsupported(format!(
                    "{n} channels (mapping family 0 holds 1 or 2)"
                )))
            }
        };
        for (k, _) in comments {
            if k.is_empty() || !k.bytes().all(|b| (0x20..=0x7d).contains(&b) && b != b'=') {
                return Err(OggOpusError::Unsupported(format!(
                    "comment key {k:?} (printable ASCII without '=')"
                )));
            }
        }
        let (silence_20ms, silence_2_5ms) = silent_packets(ch, usize::from(channels))?;

        let mut head = [0u8; 19];
        head[..8].copy_from_slice(b"OpusHead");
        head[8] = 1;
        head[9] = channels;
        head[10..12].copy_from_slice(&pre_skip.to_le_bytes());
        head[12..16].copy_from_slice(&input_sample_rate.to_le_bytes());
        // output gain 0 (16..18), mapping family 0 (18)

        let mut tags = Vec::with_capacity(64);
        tags.extend_from_slice(b"OpusTags");
        let vendor = b"srs";
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        let count = u32::try_from(comments.len())
            .map_err(|_| OggOpusError::Unsupported("too many comments".into()))?;
        tags.extend_from_slice(&count.to_le_bytes());
        for (k, v) in comments {
            let len = u32::try_from(k.len() + 1 + v.len())
                .map_err(|_| OggOpusError::Unsupported("comment too long".into()))?;
            tags.extend_from_slice(&len.to_le_bytes());
            tags.extend_from_slice(k.as_bytes());
            tags.push(b'=');
            tags.extend_from_slice(v.as_bytes());
        }

        let mut pages = PageWriter::new(out);
        pages.push(&head, 0)?;
        pages.flush_page_with(false, Some(0))?;
        // The comment header may span pages; all of them get granule 0.
        let mut rest: &[u8] = &tags;
        while rest.len() >= 255 * 255 {
            let (page, tail) = rest.split_at(255 * 255);
            pages.lacing.fill(255);
            pages.segments = 255;
            pages.body.extend_from_slice(page);
            pages.flush_page_with(false, Some(0))?;
            pages.continued = true;
            rest = tail;
        }
        pages.push(rest, 0)?;
        pages.flush_page_with(false, Some(0))?;

        Ok(OggOpusWriter {
            pages,
            pre_skip: u64::from(pre_skip),
            granule: 0,
            page_samples: 0,
            audio_packets: 0,
            skipped: 0,
            silence_debt: 0,
            silence_20ms,
            silence_2_5ms,
        })
    }

    /// Appends one Opus packet (as carried in RTP: one packet per RTP
    /// payload). Its duration is read from the TOC byte (RFC 6716 §3.1);
    /// an unparsable packet is skipped and counted
    /// ([`packets_skipped`](Self::packets_skipped)), never written.
    pub fn write_packet(&mut self, packet: &[u8]) -> Result<(), OggOpusError> {
        match packet_samples(packet) {
            Some(n) => self.push(packet, n),
            None => {
                self.skipped += 1;
                if self.skipped == 1 {
                    tracing::debug!(len = packet.len(), "unparsable Opus packet skipped");
                }
                Ok(())
            }
        }
    }

    fn push(&mut self, packet: &[u8], samples: u64) -> Result<(), OggOpusError> {
        // Close a full page before adding, so the latest packet always
        // stays pending for the end-of-stream page.
        if self.page_samples >= PAGE_SAMPLES {
            self.pages.flush_page(false)?;
            self.page_samples = 0;
        }
        let before = self.pages.seq;
        self.granule += samples;
        self.pages.push(packet, self.granule)?;
        if self.pages.seq != before {
            // pages were written to make room: the current one holds
            // (the end of) this packet only
            self.page_samples = 0;
        }
        self.page_samples += samples;
        self.audio_packets += 1;
        Ok(())
    }

    /// Silence gap (lost or paused time) of `samples_48k`: written as
    /// silent Opus packets of 20 ms and 2.5 ms encoded once at
    /// construction, so the timeline keeps its length. A remainder below
    /// 2.5 ms is carried to the next gap, or trimmed exactly at `finish`.
    pub fn write_silence(&mut self, samples_48k: u64) -> Result<(), OggOpusError> {
        let mut n = samples_48k.saturating_add(self.silence_debt);
        let p20 = std::mem::take(&mut self.silence_20ms);
        let p2 = std::mem::take(&mut self.silence_2_5ms);
        let mut result = Ok(());
        while n >= FRAME_20MS && result.is_ok() {
            result = self.push(&p20, FRAME_20MS);
            n -= FRAME_20MS;
        }
        while n >= FRAME_2_5MS && result.is_ok() {
            result = self.push(&p2, FRAME_2_5MS);
            n -= FRAME_2_5MS;
        }
        self.silence_20ms = p20;
        self.silence_2_5ms = p2;
        self.silence_debt = n;
        result
    }

    /// Granule position after the last packet written: 48 kHz samples
    /// including `pre_skip` (not counting a pending silence remainder).
    pub fn granule(&self) -> u64 {
        self.granule
    }

    /// Packets not written because their TOC could not be parsed.
    pub fn packets_skipped(&self) -> u64 {
        self.skipped
    }

    /// Writes the end-of-stream page and returns the output (flushed).
    pub fn finish(mut self) -> Result<W, OggOpusError> {
        let mut target = self.granule;
        if self.silence_debt > 0 {
            target += self.silence_debt;
            self.silence_debt = 0;
            let p = std::mem::take(&mut self.silence_2_5ms);
            self.push(&p, FRAME_2_5MS)?;
        }
        self.finish_at(target)
    }

    /// Ends the stream with the final granule `target` (end trimming when
    /// below what the packets add up to). Never lets the final granule fall
    /// below `pre_skip` or the previous page's granule.
    fn finish_at(mut self, target: u64) -> Result<W, OggOpusError> {
        let target = target.max(self.pre_skip);
        // The end-of-stream page must hold a packet: pad an empty stream
        // (or one shorter than its pre-skip) with silence.
        while self.audio_packets == 0 || self.granule < target {
            let p = std::mem::take(&mut self.silence_20ms);
            let r = self.push(&p, FRAME_20MS);
            self.silence_20ms = p;
            r?;
        }
        let final_granule = target
            .min(self.granule)
            .max(self.pages.last_written_granule);
        self.pages.flush_page_with(true, Some(final_granule))?;
        Ok(self.pages.out)
    }
}

/// Silent 20 ms and 2.5 ms packets from a fresh 48 kHz encoder (a few
/// frames in, so they are steady-state silence frames).
fn silent_packets(ch: opus::Channels, channels: usize) -> Result<(Vec<u8>, Vec<u8>), OggOpusError> {
    let mut enc = opus::Encoder::new(OPUS_RATE, ch, opus::Application::Voip)?;
    let zeros = vec![0i16; FRAME_20MS as usize * channels];
    let mut buf = vec![0u8; MAX_PACKET];
    let mut len = 0;
    for _ in 0..3 {
        len = enc.encode(&zeros, &mut buf)?;
    }
    let p20 = buf[..len].to_vec();
    let short = &zeros[..FRAME_2_5MS as usize * channels];
    for _ in 0..3 {
        len = enc.encode(short, &mut buf)?;
    }
    let p2 = buf[..len].to_vec();
    Ok((p20, p2))
}

/// Encodes a mono (or stereo) 16-bit WAV at 8, 12, 16, 24 or 48 kHz into
/// an Ogg Opus file: 20 ms frames, VOIP application, `bitrate` bits/s
/// (e.g. 24000). Pre-skip is the encoder's lookahead; the end is trimmed
/// to the WAV's exact length. Meant for a worker after the call (it
/// allocates freely). Returns the duration written in ms.
pub fn encode_wav_to_ogg_opus(wav: &Path, ogg: &Path, bitrate: i32) -> Result<u64, OggOpusError> {
    let wav_err = |source| OggOpusError::Wav {
        path: wav.to_path_buf(),
        source,
    };
    let reader = hound::WavReader::open(wav).map_err(wav_err)?;
    let spec = reader.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(OggOpusError::Unsupported(format!(
            "{}: {}-bit {:?} WAV (16-bit integer expected)",
            wav.display(),
            spec.bits_per_sample,
            spec.sample_format
        )));
    }
    let ch = match spec.channels {
        1 => opus::Channels::Mono,
        2 => opus::Channels::Stereo,
        n => {
            return Err(OggOpusError::Unsupported(format!(
                "{}: {n} channels",
                wav.display()
            )))
        }
    };
    let rate = spec.sample_rate;
    if ![8000, 12000, 16000, 24000, 48000].contains(&rate) {
        return Err(OggOpusError::Unsupported(format!(
            "{}: {rate} Hz (Opus takes 8, 12, 16, 24 or 48 kHz)",
            wav.display()
        )));
    }
    let channels = usize::from(spec.channels);
    let scale = u64::from(OPUS_RATE / rate);

    let mut enc = opus::Encoder::new(rate, ch, opus::Application::Voip)?;
    enc.set_bitrate(opus::Bitrate::Bits(bitrate))?;
    let lookahead = u64::try_from(enc.get_lookahead()?).unwrap_or(0);
    let pre_skip = lookahead * scale;
    let pre_skip_u16 = u16::try_from(pre_skip)
        .map_err(|_| OggOpusError::Unsupported(format!("pre-skip {pre_skip}")))?;

    let file = File::create(ogg).map_err(|source| OggOpusError::File {
        path: ogg.to_path_buf(),
        source,
    })?;
    let mut w = OggOpusWriter::new(
        BufWriter::new(file),
        spec.channels as u8,
        rate,
        pre_skip_u16,
        &[],
    )?;

    let frame = rate as usize / 50; // 20 ms, per channel
    let mut pcm = vec![0i16; frame * channels];
    let mut out = vec![0u8; MAX_PACKET];
    let mut samples = reader.into_samples::<i16>();
    let mut input_frames: u64 = 0; // per channel, at `rate`
    let mut exhausted = false;
    // Feed zeros past the end until the lookahead-delayed tail is out.
    loop {
        let mut filled = 0;
        if !exhausted {
            for slot in pcm.iter_mut() {
                match samples.next() {
                    Some(s) => {
                        *slot = s.map_err(wav_err)?;
                        filled += 1;
                    }
                    None => {
                        exhausted = true;
                        break;
                    }
                }
            }
        }
        pcm[filled..].fill(0);
        input_frames += (filled / channels) as u64;
        let len = enc.encode(&pcm, &mut out)?;
        w.push(&out[..len], FRAME_20MS)?;
        if exhausted && w.granule >= pre_skip + input_frames * scale {
            break;
        }
    }
    let file = w.finish_at(pre_skip + input_frames * scale)?;
    file.into_inner()
        .map_err(|e| OggOpusError::File {
            path: ogg.to_path_buf(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(|source| OggOpusError::File {
            path: ogg.to_path_buf(),
            source,
        })?;
    Ok(input_frames * 1000 / u64::from(rate))
}

#[cfg(test)]
mod tests;
