//! Media: the batch receiver ([`receiver`]), RTP parsing ([`rtp`], an
//! adapter over the `rtp` crate), decoding ([`codec`], [`g711`]), RFC 4733
//! DTMF ([`dtmf`]), SRTP with SDES keys ([`srtp`]), the reorder buffer ([`reorder`]) and the per-stream
//! timeline that writes WAV ([`recorder`]); outputs made after the call:
//! stereo WAV ([`stereo`]) and Ogg Opus ([`ogg_opus`], also written live
//! for Opus streams). No sockets here: the server feeds datagrams with
//! their arrival time.

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod ogg_opus;
pub mod reactor;
pub mod receiver;
pub mod recorder;
pub mod reorder;
pub mod rtp;
pub mod srtp;

/// The WAV format every file of ours uses: 16-bit signed PCM.
pub fn pcm16_spec(sample_rate: u32, channels: u16) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}
