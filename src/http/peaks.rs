//! Waveform peaks of a recording's WAV file, for the web page
//! (`GET /api/v1/recordings/{id}/files/{name}/peaks?points=N`, docs/web.md).
//!
//! The file is read once, sequentially, in 64 KiB pieces, and never decoded
//! into memory: each of the `N` buckets keeps the smallest and largest
//! sample of its share of the file, per channel (the stereo file gives two
//! channels). An hour of 8 kHz mono (57.6 MB) is one pass over the bytes
//! (measured in [`tests::an_hour_of_8khz_in_one_pass`], docs/web.md).
//!
//! Peaks work on any [`Read`], so that a reader that decrypts the file
//! (encryption at rest) can be put in front without changing this code.

use std::io::Read;

/// Buckets when the request names none.
pub const DEFAULT_POINTS: usize = 1000;
/// Most buckets a request gets (more is cut to this): a canvas 4,000
/// device pixels wide is already wider than most screens at 2x.
pub const MAX_POINTS: usize = 4000;

/// Size of each read.
const READ: usize = 64 << 10;

/// Why a file has no peaks.
#[derive(Debug, thiserror::Error)]
pub enum PeaksError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    #[error("unsupported WAV encoding: {0} (peaks are computed from 16-bit PCM)")]
    Encoding(String),
}

/// The peaks of one file: per channel, the minimum and maximum sample of
/// each bucket (16-bit values).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Peaks {
    pub sample_rate: u32,
    pub channels: u16,
    /// Sample frames in the file.
    pub frames: u64,
    pub duration_ms: u64,
    /// Buckets: the points asked for, fewer if the file has fewer frames.
    pub points: usize,
    /// One entry per channel (left then right for a stereo file).
    pub peaks: Vec<ChannelPeaks>,
}

/// One channel's buckets.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ChannelPeaks {
    pub min: Vec<i16>,
    pub max: Vec<i16>,
}

/// Where the samples are in a WAV file.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Layout {
    sample_rate: u32,
    channels: u16,
    /// Bytes of sample data (the `data` chunk's size, or what the file
    /// holds when that size is unset, as in a file cut by a crash).
    data_len: u64,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Reads the RIFF header up to the start of the `data` chunk's samples.
/// `file_len` (when known) bounds a `data` size that is unset or too large.
fn read_header(r: &mut impl Read, file_len: Option<u64>) -> Result<Layout, PeaksError> {
    let mut riff = [0u8; 12];
    r.read_exact(&mut riff)
        .map_err(|_| PeaksError::NotWav("shorter than a RIFF header"))?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(PeaksError::NotWav("no RIFF/WAVE header"));
    }
    let mut at: u64 = 12;
    let mut fmt: Option<(u32, u16)> = None;
    // A few chunks at most before `data` (fmt, LIST, fact...).
    for _ in 0..64 {
        let mut head = [0u8; 8];
        r.read_exact(&mut head)
            .map_err(|_| PeaksError::NotWav("no data chunk"))?;
        at += 8;
        let size = u64::from(u32_at(&head, 4));
        match &head[0..4] {
            b"fmt " => {
                if !(16..=1024).contains(&size) {
                    return Err(PeaksError::NotWav("bad fmt chunk"));
                }
                let mut f = vec![0u8; size as usize];
                r.read_exact(&mut f)?;
                at += size;
                let tag = u16_at(&f, 0);
                let channels = u16_at(&f, 2);
                let rate = u32_at(&f, 4);
                let bits = u16_at(&f, 14);
                // 1: PCM; 0xFFFE: extensible (PCM in our files).
                if !(tag == 1 || tag == 0xFFFE) || bits != 16 {
                    return Err(PeaksError::Encoding(format!(
                        "format tag {tag:#x}, {bits} bits"
                    )));
                }
                if channels == 0 || channels > 8 || rate == 0 {
                    return Err(PeaksError::NotWav("bad channel count or rate"));
                }
                fmt = Some((rate, channels));
                if size % 2 == 1 {
                    let mut pad = [0u8; 1];
                    r.read_exact(&mut pad)?;
                    at += 1;
                }
            }
            b"data" => {
                let (sample_rate, channels) = fmt.ok_or(PeaksError::NotWav("data before fmt"))?;
                let left = file_len.map(|l| l.saturating_sub(at));
                let data_len = match left {
                    // 0 and 0xFFFFFFFF: a size never written (a streaming
                    // writer, a crash): the rest of the file.
                    Some(left) if size == 0 || size == 0xFFFF_FFFF || size > left => left,
                    _ => size,
                };
                return Ok(Layout {
                    sample_rate,
                    channels,
                    data_len,
                });
            }
            _ => {
                let skip = size + (size % 2);
                let copied = std::io::copy(&mut r.by_ref().take(skip), &mut std::io::sink())?;
                if copied != skip {
                    return Err(PeaksError::NotWav("truncated chunk"));
                }
                at += skip;
            }
        }
    }
    Err(PeaksError::NotWav("no data chunk"))
}

/// The peaks of the WAV read from `r` in `points` buckets (at least 1, at
/// most [`MAX_POINTS`]). `file_len` is the file's size, when known.
pub fn compute(
    mut r: impl Read,
    file_len: Option<u64>,
    points: usize,
) -> Result<Peaks, PeaksError> {
    let layout = read_header(&mut r, file_len)?;
    let ch = usize::from(layout.channels);
    let frame_bytes = 2 * ch as u64;
    let frames = layout.data_len / frame_bytes;
    let n = points.clamp(1, MAX_POINTS).min(frames as usize);
    let mut out: Vec<ChannelPeaks> = (0..ch)
        .map(|_| ChannelPeaks {
            min: Vec::with_capacity(n),
            max: Vec::with_capacity(n),
        })
        .collect();
    if n > 0 {
        let mut lo = vec![i16::MAX; ch];
        let mut hi = vec![i16::MIN; ch];
        let mut bucket = 0usize;
        // Bucket b holds frames [b*frames/n, (b+1)*frames/n).
        let end_of = |b: usize| (b as u64 + 1) * frames / n as u64;
        let mut end = end_of(0);
        let mut frame: u64 = 0;
        let mut channel = 0usize;
        let mut buf = vec![0u8; READ];
        // A sample split across two reads.
        let mut carry: Option<u8> = None;
        let mut left = frames * frame_bytes;
        while left > 0 {
            let want = READ.min(usize::try_from(left).unwrap_or(READ));
            let got = r.read(&mut buf[..want])?;
            if got == 0 {
                break;
            }
            left -= got as u64;
            let mut bytes = &buf[..got];
            if let Some(first) = carry.take() {
                let s = i16::from_le_bytes([first, bytes[0]]);
                bytes = &bytes[1..];
                lo[channel] = lo[channel].min(s);
                hi[channel] = hi[channel].max(s);
                channel += 1;
                if channel == ch {
                    channel = 0;
                    frame += 1;
                    if frame == end {
                        close_bucket(&mut out, &mut lo, &mut hi);
                        bucket += 1;
                        end = end_of(bucket);
                    }
                }
            }
            let (body, tail) = bytes.split_at(bytes.len() / 2 * 2);
            if ch == 1 {
                // Mono (every per-stream file): a tight loop up to the end
                // of each bucket, without a boundary check per sample.
                let mut i = 0;
                while i < body.len() {
                    let take = usize::try_from(end - frame)
                        .unwrap_or(usize::MAX)
                        .min((body.len() - i) / 2);
                    let (mut l, mut h) = (lo[0], hi[0]);
                    for p in body[i..i + take * 2].chunks_exact(2) {
                        let s = i16::from_le_bytes([p[0], p[1]]);
                        l = l.min(s);
                        h = h.max(s);
                    }
                    (lo[0], hi[0]) = (l, h);
                    i += take * 2;
                    frame += take as u64;
                    if frame == end {
                        close_bucket(&mut out, &mut lo, &mut hi);
                        bucket += 1;
                        end = end_of(bucket);
                    }
                }
            } else {
                for p in body.chunks_exact(2) {
                    let s = i16::from_le_bytes([p[0], p[1]]);
                    lo[channel] = lo[channel].min(s);
                    hi[channel] = hi[channel].max(s);
                    channel += 1;
                    if channel == ch {
                        channel = 0;
                        frame += 1;
                        if frame == end {
                            close_bucket(&mut out, &mut lo, &mut hi);
                            bucket += 1;
                            end = end_of(bucket);
                        }
                    }
                }
            }
            carry = tail.first().copied();
        }
        // A file shorter than its header said: the last bucket as far as
        // it goes; buckets never reached stay out.
        if bucket < n && hi.iter().any(|h| *h != i16::MIN) {
            close_bucket(&mut out, &mut lo, &mut hi);
        }
    }
    let points = out.first().map_or(0, |c| c.min.len());
    Ok(Peaks {
        sample_rate: layout.sample_rate,
        channels: layout.channels,
        frames,
        duration_ms: frames * 1000 / u64::from(layout.sample_rate),
        points,
        peaks: out,
    })
}

fn close_bucket(out: &mut [ChannelPeaks], lo: &mut [i16], hi: &mut [i16]) {
    for ((c, l), h) in out.iter_mut().zip(lo.iter_mut()).zip(hi.iter_mut()) {
        // A channel with no sample in the bucket (cannot happen once a
        // frame was read, kept safe anyway) shows as silence.
        let (a, b) = if *h == i16::MIN && *l == i16::MAX {
            (0, 0)
        } else {
            (*l, *h)
        };
        c.min.push(a);
        c.max.push(b);
        *l = i16::MAX;
        *h = i16::MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A 16-bit PCM WAV of `samples` (interleaved), as hound writes it.
    fn wav(samples: &[i16], channels: u16, rate: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let spec = hound::WavSpec {
                channels,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::new(Cursor::new(&mut out), spec).unwrap();
            for s in samples {
                w.write_sample(*s).unwrap();
            }
            w.finalize().unwrap();
        }
        out
    }

    #[test]
    fn min_and_max_of_each_bucket() {
        // 10 frames, 5 buckets of 2.
        let x = [1, -2, 3, 4, -5, 6, 7, -8, 0, 0];
        let b = wav(&x, 1, 8000);
        let p = compute(Cursor::new(&b), Some(b.len() as u64), 5).unwrap();
        assert_eq!((p.frames, p.points, p.channels), (10, 5, 1));
        assert_eq!(p.peaks[0].min, [-2, 3, -5, -8, 0]);
        assert_eq!(p.peaks[0].max, [1, 4, 6, 7, 0]);
        // Uneven split: 10 frames in 3 buckets are 3, 3, 4 frames.
        let p = compute(Cursor::new(&b), Some(b.len() as u64), 3).unwrap();
        assert_eq!(p.peaks[0].min, [-2, -5, -8]);
        assert_eq!(p.peaks[0].max, [3, 6, 7]);
    }

    #[test]
    fn more_points_than_frames_gives_one_per_frame() {
        let x = [5, -5, 9];
        let b = wav(&x, 1, 8000);
        let p = compute(Cursor::new(&b), Some(b.len() as u64), 100).unwrap();
        assert_eq!(p.points, 3);
        assert_eq!(p.peaks[0].max, [5, -5, 9]);
        let empty = wav(&[], 1, 8000);
        let p = compute(Cursor::new(&empty), Some(empty.len() as u64), 100).unwrap();
        assert_eq!((p.points, p.frames), (0, 0));
        assert!(p.peaks[0].min.is_empty());
    }

    #[test]
    fn stereo_channels_apart() {
        // Left loud, right quiet.
        let mut x = Vec::new();
        for i in 0..1000 {
            let s = if i % 2 == 0 { 8000 } else { -8000 };
            x.extend_from_slice(&[s, s / 100]);
        }
        let b = wav(&x, 2, 8000);
        let p = compute(Cursor::new(&b), Some(b.len() as u64), 10).unwrap();
        assert_eq!((p.channels, p.frames, p.points), (2, 1000, 10));
        assert!(p.peaks[0].max.iter().all(|v| *v == 8000));
        assert!(p.peaks[0].min.iter().all(|v| *v == -8000));
        assert!(p.peaks[1].max.iter().all(|v| *v == 80));
        assert!(p.peaks[1].min.iter().all(|v| *v == -80));
    }

    #[test]
    fn points_are_capped() {
        let x = vec![1i16; 20_000];
        let b = wav(&x, 1, 8000);
        let p = compute(Cursor::new(&b), Some(b.len() as u64), 1_000_000).unwrap();
        assert_eq!(p.points, MAX_POINTS);
        let p = compute(Cursor::new(&b), Some(b.len() as u64), 0).unwrap();
        assert_eq!(p.points, 1);
    }

    /// Reads at most 7 bytes at a time: samples split across reads.
    struct Dribble<R>(R);
    impl<R: Read> Read for Dribble<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn samples_split_across_reads() {
        let x: Vec<i16> = (0..999).map(|i| (i * 37 % 2001 - 1000) as i16).collect();
        let b = wav(&x, 1, 8000);
        let whole = compute(Cursor::new(&b), Some(b.len() as u64), 17).unwrap();
        let dribbled = compute(Dribble(Cursor::new(&b)), Some(b.len() as u64), 17).unwrap();
        assert_eq!(whole, dribbled);
    }

    #[test]
    fn a_data_size_never_written_reads_to_the_end() {
        let x = [100i16, -100, 200, -200];
        let mut b = wav(&x, 1, 8000);
        // The data chunk's size as a crash leaves it: 0.
        let at = b.windows(4).position(|w| w == b"data").unwrap();
        b[at + 4..at + 8].copy_from_slice(&0u32.to_le_bytes());
        let p = compute(Cursor::new(&b), Some(b.len() as u64), 2).unwrap();
        assert_eq!(p.frames, 4);
        assert_eq!(p.peaks[0].max, [100, 200]);
        // A size larger than the file: what the file holds.
        b[at + 4..at + 8].copy_from_slice(&1_000_000u32.to_le_bytes());
        let p = compute(Cursor::new(&b), Some(b.len() as u64), 2).unwrap();
        assert_eq!(p.frames, 4);
    }

    #[test]
    fn what_is_not_16_bit_pcm_wav_is_refused() {
        assert!(matches!(
            compute(Cursor::new(b"OggS\0\0\0\0\0\0\0\0\0\0"), None, 10),
            Err(PeaksError::NotWav(_))
        ));
        assert!(matches!(
            compute(Cursor::new(b"RIFF"), None, 10),
            Err(PeaksError::NotWav(_))
        ));
        let mut b = wav(&[1, 2, 3], 1, 8000);
        // 8 bits per sample.
        let at = b.windows(4).position(|w| w == b"fmt ").unwrap();
        b[at + 8 + 14] = 8;
        assert!(matches!(
            compute(Cursor::new(&b), None, 10),
            Err(PeaksError::Encoding(_))
        ));
    }

    /// An hour of 8 kHz mono (57.6 MB of samples) from a file on disk, in
    /// one sequential pass: the time is printed (docs/web.md quotes it).
    #[test]
    fn an_hour_of_8khz_in_one_pass() {
        use std::io::Write;
        let frames: u64 = 8000 * 3600;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hour.wav");
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            let data = (frames * 2) as u32;
            let mut h = Vec::new();
            h.extend_from_slice(b"RIFF");
            h.extend_from_slice(&(36 + data).to_le_bytes());
            h.extend_from_slice(b"WAVEfmt ");
            h.extend_from_slice(&16u32.to_le_bytes());
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&8000u32.to_le_bytes());
            h.extend_from_slice(&16000u32.to_le_bytes());
            h.extend_from_slice(&2u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(b"data");
            h.extend_from_slice(&data.to_le_bytes());
            f.write_all(&h).unwrap();
            // One second of a 400 Hz tone at 8000, repeated; the 1800th
            // second louder (a spike the peaks must show).
            let second: Vec<u8> = crate::testkit::sine(400.0, 8000, 0, 8000, 8000.0)
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            let loud: Vec<u8> = crate::testkit::sine(400.0, 8000, 0, 8000, 30000.0)
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            for s in 0..3600 {
                f.write_all(if s == 1800 { &loud } else { &second })
                    .unwrap();
            }
        }
        let len = std::fs::metadata(&path).unwrap().len();
        let began = std::time::Instant::now();
        let file = std::fs::File::open(&path).unwrap();
        let p = compute(file, Some(len), 1000).unwrap();
        let took = began.elapsed();
        eprintln!(
            "peaks of one hour of 8 kHz mono (57.6 MB) in 1000 points: {took:?} (this build)"
        );
        assert_eq!(
            (p.frames, p.points, p.duration_ms),
            (frames, 1000, 3_600_000)
        );
        // Bucket 500 holds seconds 1800 to 1803.6: the loud second.
        assert!(p.peaks[0].max[500] > 29_000, "{}", p.peaks[0].max[500]);
        assert!(p.peaks[0].max[10] < 8100 && p.peaks[0].max[10] > 7900);
        assert!(p.peaks[0].min[10] < -7900);
        // Far below any request timeout, even in a debug build.
        assert!(took < std::time::Duration::from_secs(8), "{took:?}");
    }
}
