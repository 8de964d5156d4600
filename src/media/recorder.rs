//! One recorded stream: RTP packets in, a WAV file out that keeps the
//! session's timeline.
//!
//! The file starts at the session start and ends at its end. The first
//! packet is placed at its arrival time; later packets by RTP timestamp
//! relative to it, so loss becomes silence and the audio never shifts.
//! Packets that arrive after their place was written are dropped
//! (counted `late`); duplicates likewise. A timestamp that jumps far from
//! the wall clock (a new SSRC, a restarted sender) re-anchors the stream at
//! the present.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::g711::Law;
use super::rtp::RtpPacket;

/// Audio sample rate of G.711.
pub const RATE: u32 = 8000;
/// How far (in seconds) a packet's timestamp may stray from the wall clock
/// before the stream is re-anchored (a new SSRC, a restarted sender).
const MAX_DRIFT_S: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("WAV file {path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
}

/// Counters of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub packets_received: u64,
    pub packets_lost: u64,
    pub packets_late: u64,
    /// Packets that arrived while the stream was paused (answered
    /// `inactive`): never written.
    pub packets_discarded: u64,
    pub samples_written: u64,
}

#[derive(Debug)]
struct Anchor {
    /// Extended (unwrapped) timestamp of the anchor packet.
    ext_ts: i64,
    /// Sample position of the anchor packet.
    pos: u64,
    last_ts: u32,
    last_ext_ts: i64,
    ssrc: u32,
}

/// Writes one stream to a mono 16-bit WAV file.
pub struct StreamRecorder {
    path: PathBuf,
    writer: hound::WavWriter<BufWriter<File>>,
    law: Law,
    pt: u8,
    start: Instant,
    anchor: Option<Anchor>,
    written: u64,
    seq: SeqCounter,
    stats: StreamStats,
    pcm: Vec<i16>,
    paused: bool,
}

impl StreamRecorder {
    /// Creates the WAV file. `start` is the session start: sample 0.
    pub fn create(path: &Path, law: Law, pt: u8, start: Instant) -> Result<Self, RecorderError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|source| RecorderError::Wav {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(StreamRecorder {
            path: path.to_path_buf(),
            writer,
            law,
            pt,
            start,
            anchor: None,
            written: 0,
            seq: SeqCounter::default(),
            stats: StreamStats::default(),
            pcm: Vec::with_capacity(320),
            paused: false,
        })
    }

    /// A re-offer changed the codec or payload type (dynamic PTs follow the SDP).
    pub fn set_codec(&mut self, law: Law, pt: u8) {
        self.law = law;
        self.pt = pt;
    }

    /// Pauses or resumes recording. While paused (the session answered this
    /// stream `inactive`, e.g. a PCI pause) packets are counted and dropped,
    /// and the file gets silence. Resuming re-anchors.
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused && !paused {
            self.anchor = None;
        }
        self.paused = paused;
    }

    /// The next packet is placed at its arrival time (after a pause or hold
    /// the sender's timestamps need not reflect the time that passed).
    pub fn reanchor(&mut self) {
        self.anchor = None;
    }

    fn wall_pos(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.start);
        d.as_secs() * RATE as u64 + u64::from(d.subsec_nanos()) * RATE as u64 / 1_000_000_000
    }

    /// Records one packet that arrived at `now`.
    pub fn on_packet(&mut self, now: Instant, p: &RtpPacket) -> Result<(), RecorderError> {
        self.stats.packets_received += 1;
        if self.paused {
            self.stats.packets_discarded += 1;
            return Ok(());
        }
        self.seq.observe(p.sequence);
        if p.payload_type != self.pt {
            return Ok(()); // telephone-event, comfort noise: never written as audio
        }
        let wall = self.wall_pos(now);
        let pos = self.position(p, wall);
        self.law.decode_into(&p.payload, &mut self.pcm);
        let n = self.pcm.len() as u64;
        if pos + n <= self.written {
            self.stats.packets_late += 1;
            return Ok(());
        }
        if pos > self.written {
            self.silence(pos - self.written)?;
        }
        let skip = (self.written - pos.min(self.written)) as usize;
        let mut w = self
            .writer
            .get_i16_writer(self.pcm.len() as u32 - skip as u32);
        for s in &self.pcm[skip..] {
            w.write_sample(*s);
        }
        w.flush().map_err(|source| RecorderError::Wav {
            path: self.path.clone(),
            source,
        })?;
        self.written += n - skip as u64;
        Ok(())
    }

    /// Sample position of a packet: by timestamp from the anchor, or at the
    /// wall clock for the first packet and after a jump or SSRC change.
    fn position(&mut self, p: &RtpPacket, wall: u64) -> u64 {
        let max_drift = MAX_DRIFT_S * RATE as u64;
        if let Some(a) = &mut self.anchor {
            if a.ssrc == p.ssrc {
                let ext = a.last_ext_ts + i64::from(p.timestamp.wrapping_sub(a.last_ts) as i32);
                let pos = a.pos as i64 + (ext - a.ext_ts);
                if pos >= 0 && (pos as u64).abs_diff(wall) <= max_drift {
                    if ext > a.last_ext_ts {
                        a.last_ext_ts = ext;
                        a.last_ts = p.timestamp;
                    }
                    return pos as u64;
                }
            }
        }
        // (Re-)anchor at the present, never before what is written.
        let pos = wall.max(self.written);
        self.anchor = Some(Anchor {
            ext_ts: i64::from(p.timestamp),
            pos,
            last_ts: p.timestamp,
            last_ext_ts: i64::from(p.timestamp),
            ssrc: p.ssrc,
        });
        pos
    }

    fn silence(&mut self, n: u64) -> Result<(), RecorderError> {
        for _ in 0..n {
            self.writer
                .write_sample(0i16)
                .map_err(|source| RecorderError::Wav {
                    path: self.path.clone(),
                    source,
                })?;
        }
        self.written += n;
        Ok(())
    }

    /// Pads with silence up to the session end and closes the file.
    pub fn finish(mut self, end: Instant) -> Result<StreamStats, RecorderError> {
        let total = self.wall_pos(end);
        if total > self.written {
            self.silence(total - self.written)?;
        }
        self.writer
            .finalize()
            .map_err(|source| RecorderError::Wav {
                path: self.path.clone(),
                source,
            })?;
        let mut stats = self.stats;
        stats.packets_lost = self.seq.lost(stats.packets_received);
        stats.samples_written = self.written;
        Ok(stats)
    }
}

/// Extended RTP sequence numbers (RFC 3550 A.1, simplified) for loss counting.
#[derive(Debug, Default)]
struct SeqCounter {
    first: Option<i64>,
    max_ext: i64,
    last: u16,
}

impl SeqCounter {
    fn observe(&mut self, seq: u16) {
        match self.first {
            None => {
                self.first = Some(i64::from(seq));
                self.max_ext = i64::from(seq);
                self.last = seq;
            }
            Some(_) => {
                let delta = i64::from(seq.wrapping_sub(self.last) as i16);
                let ext = self.max_ext + delta;
                if ext > self.max_ext {
                    self.max_ext = ext;
                    self.last = seq;
                }
            }
        }
    }

    fn lost(&self, received: u64) -> u64 {
        match self.first {
            Some(first) => ((self.max_ext - first + 1).max(0) as u64).saturating_sub(received),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{build, parse};
    use bytes::Bytes;
    use std::time::Duration;

    fn pkt(seq: u16, ts: u32, byte: u8) -> RtpPacket {
        parse(Bytes::from(build(0, seq, ts, 1, &[byte; 160]))).unwrap()
    }

    fn read(path: &Path) -> Vec<i16> {
        hound::WavReader::open(path)
            .unwrap()
            .into_samples::<i16>()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn loss_reorder_duplicate_and_padding_keep_the_timeline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        let t0 = Instant::now();
        let mut r = StreamRecorder::create(&path, Law::Ulaw, 0, t0).unwrap();
        let at = |ms| t0 + Duration::from_millis(ms);
        // first packet arrives 100 ms in: 800 samples of leading silence
        r.on_packet(at(100), &pkt(10, 5000, 0x80)).unwrap();
        // seq 11 lost; 12 and 13 reordered; 13 duplicated
        r.on_packet(at(160), &pkt(13, 5480, 0x80)).unwrap();
        r.on_packet(at(161), &pkt(12, 5320, 0x80)).unwrap();
        r.on_packet(at(162), &pkt(13, 5480, 0x80)).unwrap();
        let stats = r.finish(at(1000)).unwrap();
        let s = read(&path);
        assert_eq!(s.len(), 8000, "exactly the session's length");
        assert!(s[..800].iter().all(|x| *x == 0));
        assert!(s[800..960].iter().all(|x| *x == 32124));
        assert!(
            s[960..1120].iter().all(|x| *x == 0),
            "lost packet is silence"
        );
        // 12 came late (after 13 was written past it): dropped, so silence stays.
        assert!(s[1280..1440].iter().all(|x| *x == 32124));
        assert!(s[1440..].iter().all(|x| *x == 0));
        assert_eq!(stats.packets_received, 4);
        assert_eq!(
            stats.packets_lost, 0,
            "4 received for seq 10..=13 (one duplicate)"
        );
        assert_eq!(stats.packets_late, 2);
    }

    #[test]
    fn timestamp_jump_reanchors_at_the_wall_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        let t0 = Instant::now();
        let mut r = StreamRecorder::create(&path, Law::Alaw, 0, t0).unwrap();
        r.on_packet(t0, &pkt(1, 0, 0xd5)).unwrap();
        // sender restarts with a random timestamp one second later
        r.on_packet(t0 + Duration::from_secs(1), &pkt(2, 3_000_000_000, 0xd5))
            .unwrap();
        let stats = r.finish(t0 + Duration::from_secs(2)).unwrap();
        let s = read(&path);
        assert_eq!(s.len(), 16000);
        assert!(s[8000..8160].iter().all(|x| *x == 8));
        assert_eq!(stats.samples_written, 16000);
    }

    #[test]
    fn reanchor_after_a_short_pause_keeps_the_gap() {
        // A sender paused 1 s whose timestamps continue as if no time passed:
        // without re-anchoring the audio after the pause would move 1 s early.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        let t0 = Instant::now();
        let mut r = StreamRecorder::create(&path, Law::Ulaw, 0, t0).unwrap();
        r.on_packet(t0, &pkt(1, 0, 0x80)).unwrap();
        r.reanchor();
        r.on_packet(t0 + Duration::from_millis(1020), &pkt(2, 160, 0x80))
            .unwrap();
        r.finish(t0 + Duration::from_secs(2)).unwrap();
        let s = read(&path);
        assert!(s[160..8160].iter().all(|x| *x == 0), "the pause is silence");
        assert!(s[8160..8320].iter().all(|x| *x == 32124));
    }

    #[test]
    fn packets_while_paused_are_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        let t0 = Instant::now();
        let mut r = StreamRecorder::create(&path, Law::Ulaw, 0, t0).unwrap();
        r.on_packet(t0, &pkt(1, 0, 0x80)).unwrap();
        r.set_paused(true);
        for i in 2..50u16 {
            let at = t0 + Duration::from_millis(20 * u64::from(i - 1));
            r.on_packet(at, &pkt(i, 160 * u32::from(i - 1), 0x80))
                .unwrap();
        }
        r.set_paused(false);
        r.on_packet(t0 + Duration::from_secs(1), &pkt(50, 160 * 49, 0x80))
            .unwrap();
        let stats = r.finish(t0 + Duration::from_millis(1020)).unwrap();
        let s = read(&path);
        assert!(s[160..8000].iter().all(|x| *x == 0), "silence while paused");
        assert!(s[8000..8160].iter().all(|x| *x == 32124));
        assert_eq!(stats.packets_discarded, 48);
        assert_eq!(stats.packets_lost, 0, "discarded packets are not loss");
    }

    #[test]
    fn codec_change_follows_the_sdp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wav");
        let t0 = Instant::now();
        let mut r = StreamRecorder::create(&path, Law::Ulaw, 0, t0).unwrap();
        r.on_packet(t0, &pkt(1, 0, 0x80)).unwrap();
        r.set_codec(Law::Alaw, 8);
        let a = parse(Bytes::from(build(8, 2, 160, 1, &[0xd5; 160]))).unwrap();
        r.on_packet(t0 + Duration::from_millis(20), &a).unwrap();
        // a stale PCMU packet after the switch is not decoded as A-law
        r.on_packet(t0 + Duration::from_millis(40), &pkt(3, 320, 0x80))
            .unwrap();
        r.finish(t0 + Duration::from_millis(60)).unwrap();
        let s = read(&path);
        assert_eq!(s[0], 32124);
        assert_eq!(s[160], 8, "A-law decoded after the switch");
        assert!(s[320..].iter().all(|x| *x == 0));
    }

    #[test]
    fn loss_is_counted_by_sequence() {
        let mut c = SeqCounter::default();
        for s in [65534u16, 65535, 2, 3] {
            c.observe(s);
        }
        assert_eq!(c.lost(4), 2, "0 and 1 missing across the wrap");
    }
}
