//! A stereo WAV from the two mono WAVs of a call (one per direction), for
//! players and QM tools that want one file.
//!
//! Streams in blocks of [`BLOCK`] frames: memory does not grow with the
//! length of the call.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Frames read and written per block.
const BLOCK: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum StereoError {
    #[error("WAV file {path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: {what} (mono 16-bit integer WAV expected)")]
    Unsupported { path: PathBuf, what: String },
    #[error("no input: both channels missing")]
    NoInput,
}

/// One input channel, resampled (or not) to the output rate, yielding
/// silence after its end.
///
/// Resampling is linear interpolation between neighbouring input samples,
/// with integer arithmetic (exact at every input sample). It is only ever
/// used to go up in rate, so there is no aliasing; the images linear
/// interpolation leaves above the input's Nyquist frequency are attenuated
/// (sinc²) but not removed: fine for listening to speech, not for
/// measurement.
struct Channel {
    path: PathBuf,
    samples: Option<hound::WavIntoSamples<BufReader<File>, i16>>,
    /// Input rate, output rate.
    rate: u64,
    out_rate: u64,
    /// Output frames this channel covers.
    len: u64,
    /// Index of the next output frame.
    j: u64,
    /// Input samples `idx` and `idx + 1`.
    idx: u64,
    s0: i64,
    s1: i64,
    /// Samples read from the input so far.
    read: u64,
    input_len: u64,
}

impl Channel {
    fn open(path: &Path) -> Result<(hound::WavReader<BufReader<File>>, u32), StereoError> {
        let r = hound::WavReader::open(path).map_err(|source| StereoError::Wav {
            path: path.to_path_buf(),
            source,
        })?;
        let spec = r.spec();
        let bad = |what: String| StereoError::Unsupported {
            path: path.to_path_buf(),
            what,
        };
        if spec.channels != 1 {
            return Err(bad(format!("{} channels", spec.channels)));
        }
        if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
            return Err(bad(format!(
                "{}-bit {:?}",
                spec.bits_per_sample, spec.sample_format
            )));
        }
        if spec.sample_rate == 0 {
            return Err(bad("sample rate 0".into()));
        }
        Ok((r, spec.sample_rate))
    }

    fn new(path: &Path, r: hound::WavReader<BufReader<File>>, out_rate: u32) -> Self {
        let rate = u64::from(r.spec().sample_rate);
        let out_rate = u64::from(out_rate);
        let input_len = u64::from(r.len());
        // Output frames: ceil(n · R / r), so the tail is never cut.
        let len = (input_len * out_rate).div_ceil(rate);
        Channel {
            path: path.to_path_buf(),
            samples: Some(r.into_samples()),
            rate,
            out_rate,
            len,
            j: 0,
            idx: 0,
            s0: 0,
            s1: 0,
            read: 0,
            input_len,
        }
    }

    /// A silent channel.
    fn silent() -> Self {
        Channel {
            path: PathBuf::new(),
            samples: None,
            rate: 1,
            out_rate: 1,
            len: 0,
            j: 0,
            idx: 0,
            s0: 0,
            s1: 0,
            read: 0,
            input_len: 0,
        }
    }

    /// Next input sample; after the end, the last one is held (only the
    /// interpolation of the final output frames can look there).
    fn next_input(&mut self, hold: i64) -> Result<i64, StereoError> {
        if self.read >= self.input_len {
            return Ok(hold);
        }
        let Some(it) = self.samples.as_mut() else {
            return Ok(hold);
        };
        match it.next() {
            Some(Ok(s)) => {
                self.read += 1;
                Ok(i64::from(s))
            }
            Some(Err(source)) => Err(StereoError::Wav {
                path: self.path.clone(),
                source,
            }),
            None => {
                self.input_len = self.read;
                Ok(hold)
            }
        }
    }

    /// Fills every `stride`-th slot of `out` (starting at 0) with the next
    /// output frames.
    fn fill(&mut self, out: &mut [i16], stride: usize) -> Result<(), StereoError> {
        for slot in out.iter_mut().step_by(stride) {
            if self.j >= self.len {
                *slot = 0;
                continue;
            }
            if self.j == 0 {
                self.s0 = self.next_input(0)?;
                self.s1 = self.next_input(self.s0)?;
            }
            // Position of output frame j in input samples: j·r/R.
            let num = self.j * self.rate;
            let idx = num / self.out_rate;
            let frac = (num % self.out_rate) as i64;
            while self.idx < idx {
                self.s0 = self.s1;
                self.s1 = self.next_input(self.s0)?;
                self.idx += 1;
            }
            let r = self.out_rate as i64;
            let v = (self.s0 * (r - frac) + self.s1 * frac) / r;
            *slot = v.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
            self.j += 1;
        }
        Ok(())
    }
}

/// Interleaves two mono 16-bit WAVs into one stereo WAV: `left` on channel
/// 0, `right` on channel 1.
///
/// - Different sample rates: the lower-rate input is resampled to the
///   higher rate by linear interpolation (see [`Channel`]).
/// - Different lengths: the shorter is padded with silence to the longer.
/// - A missing input (`None`): that channel is silent, for the length of
///   the other. Both missing is an error.
///
/// Returns `(duration_ms, sample_rate)` of the output. Note that a WAV
/// holds at most 4 GiB of samples: about 18 h of 16 kHz stereo, 6 h at
/// 48 kHz.
pub fn write_stereo(
    left: Option<&Path>,
    right: Option<&Path>,
    out: &Path,
) -> Result<(u64, u32), StereoError> {
    let l = left.map(Channel::open).transpose()?;
    let r = right.map(Channel::open).transpose()?;
    let rate = match (&l, &r) {
        (Some((_, a)), Some((_, b))) => (*a).max(*b),
        (Some((_, a)), None) | (None, Some((_, a))) => *a,
        (None, None) => return Err(StereoError::NoInput),
    };
    let mut chans = [(l, left), (r, right)].map(|c| match c {
        (Some((reader, _)), Some(path)) => Channel::new(path, reader, rate),
        _ => Channel::silent(),
    });
    let total = chans[0].len.max(chans[1].len);

    let wav_err = |source| StereoError::Wav {
        path: out.to_path_buf(),
        source,
    };
    let spec = crate::media::pcm16_spec(rate, 2);
    let mut w = hound::WavWriter::create(out, spec).map_err(wav_err)?;
    let mut buf = vec![0i16; BLOCK * 2];
    let mut done = 0u64;
    while done < total {
        let frames = (total - done).min(BLOCK as u64) as usize;
        let block = &mut buf[..frames * 2];
        chans[0].fill(block, 2)?;
        chans[1].fill(&mut block[1..], 2)?;
        let mut sw = w.get_i16_writer(block.len() as u32);
        for s in block.iter() {
            sw.write_sample(*s);
        }
        sw.flush().map_err(wav_err)?;
        done += frames as u64;
    }
    w.finalize().map_err(wav_err)?;
    Ok((total * 1000 / u64::from(rate), rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_mono(path: &Path, rate: u32, samples: &[i16]) {
        let spec = crate::media::pcm16_spec(rate, 1);
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    fn tone(rate: u32, f: f64, n: usize) -> Vec<i16> {
        crate::testkit::sine(f, rate, 0, n, 10000.0)
    }

    fn goertzel(s: &[i16], rate: f64, f: f64) -> f64 {
        crate::testkit::goertzel(s, rate, f).max(0.0).sqrt() / s.len() as f64
    }

    fn dominant(s: &[i16], rate: f64) -> f64 {
        crate::testkit::dominant_frequency(s, rate, 4000.0)
    }

    /// (spec, left, right)
    fn read_stereo(path: &Path) -> (hound::WavSpec, Vec<i16>, Vec<i16>) {
        let r = hound::WavReader::open(path).unwrap();
        let spec = r.spec();
        let s: Vec<i16> = r.into_samples().map(Result::unwrap).collect();
        let l = s.iter().step_by(2).copied().collect();
        let rr = s.iter().skip(1).step_by(2).copied().collect();
        (spec, l, rr)
    }

    #[test]
    fn mixes_rates_and_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, o) = (
            dir.path().join("a.wav"),
            dir.path().join("b.wav"),
            dir.path().join("o.wav"),
        );
        write_mono(&a, 8000, &tone(8000, 1000.0, 8000));
        write_mono(&b, 16000, &tone(16000, 400.0, 8000));
        assert_eq!(write_stereo(Some(&a), Some(&b), &o).unwrap(), (1000, 16000));
        let (spec, l, r) = read_stereo(&o);
        assert_eq!((spec.channels, spec.sample_rate), (2, 16000));
        assert_eq!((l.len(), r.len()), (16000, 16000));
        assert_eq!(dominant(&l, 16000.0), 1000.0);
        assert!(goertzel(&l, 16000.0, 1000.0) > 20.0 * goertzel(&l, 16000.0, 7000.0));
        assert_eq!(dominant(&r[..8000], 16000.0), 400.0);
        assert!(
            r[8000..].iter().all(|x| *x == 0),
            "right silent after 0.5 s"
        );
        // upsampled samples fall exactly on the input at even positions
        let src = tone(8000, 1000.0, 8000);
        assert!((0..8000).all(|i| l[2 * i] == src[i]));
        assert_eq!(l[1], ((i32::from(src[0]) + i32::from(src[1])) / 2) as i16);
    }

    #[test]
    fn lower_rate_on_the_right_and_missing_channels() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, o) = (
            dir.path().join("a.wav"),
            dir.path().join("b.wav"),
            dir.path().join("o.wav"),
        );
        write_mono(&a, 8000, &tone(8000, 1000.0, 12000));
        write_mono(&b, 48000, &tone(48000, 400.0, 4800));
        assert_eq!(write_stereo(Some(&b), Some(&a), &o).unwrap(), (1500, 48000));
        let (_, l, r) = read_stereo(&o);
        assert_eq!(r.len(), 72000);
        assert_eq!(dominant(&r, 48000.0), 1000.0);
        assert_eq!(dominant(&l[..4800], 48000.0), 400.0);

        assert_eq!(write_stereo(Some(&a), None, &o).unwrap(), (1500, 8000));
        let (spec, l, r) = read_stereo(&o);
        assert_eq!(spec.sample_rate, 8000);
        assert_eq!(l, tone(8000, 1000.0, 12000), "same rate: copied exactly");
        assert_eq!(r.len(), 12000);
        assert!(r.iter().all(|x| *x == 0), "missing right is silent");

        assert_eq!(write_stereo(None, Some(&b), &o).unwrap(), (100, 48000));
        let (_, l, _) = read_stereo(&o);
        assert!(l.iter().all(|x| *x == 0));
    }

    #[test]
    fn long_inputs_stream_in_blocks() {
        // Several blocks, not a multiple of BLOCK, odd rate ratio.
        let dir = tempfile::tempdir().unwrap();
        let (a, b, o) = (
            dir.path().join("a.wav"),
            dir.path().join("b.wav"),
            dir.path().join("o.wav"),
        );
        write_mono(&a, 16000, &tone(16000, 500.0, 16000 * 3 + 7));
        write_mono(&b, 44100, &tone(44100, 1500.0, 44100 * 2));
        let (ms, rate) = write_stereo(Some(&a), Some(&b), &o).unwrap();
        assert_eq!((ms, rate), (3000, 44100));
        let (_, l, r) = read_stereo(&o);
        assert_eq!(l.len(), (48007u64 * 44100).div_ceil(16000) as usize);
        assert_eq!(dominant(&l[..44100], 44100.0), 500.0);
        assert_eq!(dominant(&l[44100 * 2..44100 * 3], 44100.0), 500.0);
        assert_eq!(dominant(&r[..44100], 44100.0), 1500.0);
        assert!(r[44100 * 2..].iter().all(|x| *x == 0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let o = dir.path().join("o.wav");
        assert!(matches!(
            write_stereo(None, None, &o),
            Err(StereoError::NoInput)
        ));
        let missing = dir.path().join("missing.wav");
        assert!(write_stereo(Some(&missing), None, &o).is_err());
        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"RIFF\x04\0\0\0WAVEjunk").unwrap();
        assert!(write_stereo(Some(&junk), None, &o).is_err());
        let st = dir.path().join("st.wav");
        let spec = crate::media::pcm16_spec(8000, 2);
        hound::WavWriter::create(&st, spec)
            .unwrap()
            .finalize()
            .unwrap();
        assert!(matches!(
            write_stereo(Some(&st), None, &o),
            Err(StereoError::Unsupported { .. })
        ));
        // empty input: empty output
        let e = dir.path().join("e.wav");
        write_mono(&e, 8000, &[]);
        assert_eq!(write_stereo(Some(&e), None, &o).unwrap(), (0, 8000));
    }
}
