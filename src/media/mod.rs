//! Media: RTP parsing ([`rtp`], an adapter over the `rtp` crate), G.711
//! decoding ([`g711`]) and the per-stream timeline that writes WAV
//! ([`recorder`]). No sockets here: the server feeds packets with their
//! arrival time.

pub mod g711;
pub mod receiver;
pub mod recorder;
pub mod reorder;
pub mod rtp;
