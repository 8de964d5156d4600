//! Media: the media threads ([`reactor`]: they own the RTP/RTCP sockets
//! and the recorders of their streams, and read with `recvmmsg` through
//! the batch receiver, [`receiver`]); below them, without IO of their own
//! but the files they write: RTP parsing ([`rtp`], an adapter over the
//! `rtp` crate), decoding ([`codec`], [`g711`]), RFC 4733 DTMF ([`dtmf`]),
//! SRTP with SDES keys ([`srtp`]), the reorder buffer ([`reorder`]), the
//! per-stream timeline that writes WAV ([`recorder`]) and the Ogg Opus
//! writer ([`ogg_opus`]: live for Opus streams, and the encoder the
//! `output` module uses after the call).

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
