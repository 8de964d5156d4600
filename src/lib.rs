//! # srs: a SIPREC recording server
//!
//! A Session Recording Server (RFC 7866) for contact centres: recording
//! clients (Genesys Media Server, SBCs, OpenSIPS...) send each call as a SIP
//! recording session with SDP and RFC 7865 metadata; the server receives the
//! RTP, writes one WAV per participant into a file drop, and indexes it.
//!
//! ## Layout
//! | module | responsibility | IO? |
//! |---|---|---|
//! | [`sip::message`] | tolerant SIP parsing in front of `rsip`, TCP framing by Content-Length, response building | no |
//! | [`sip::core`] | transactions, dialogs and timers of the recording UAS: bytes + `now` in, transmits, events and timeouts out | no |
//! | [`sip::conns`] | which SIP/TCP and TLS connections may stay open: head and idle timeouts, per-source and global caps, dialogs exempt | no |
//! | [`sip::overload`] | overload detection: queue depth + `now` in, "refuse new sessions" (503 Overloaded) out | no |
//! | [`siprec`] | reading an offer: [`siprec::multipart`], [`siprec::sdp`] (adapter over `webrtc-sdp`, answer builder), [`siprec::metadata`] (RFC 7865, every dialect seen in the field) | no |
//! | [`media`] | RTP parsing (adapter over `rtp`), G.711 decoding, the per-stream timeline that writes WAV (silence for loss and gaps) | no |
//! | [`plan`] | the media plan: which m-line is recorded, who sends on it, which file it goes to | no |
//! | [`session`] | one session's bookkeeping: merged metadata, participants ever seen, events, re-offer decisions, the final `metadata.json` | no |
//! | [`recording`] | the `metadata.json` schema | no |
//! | [`store`] | the file drop (atomic publish), the SQLite index, the audit trail, CLI rendering | files |
//! | [`genesys`] | correlation ids (Genesys record URIs, X-Genesys-*, vendor ids), the DN directory, recording rules (`record = source|dest`) | no |
//! | [`net`] | IP networks (`sip.allow`, rule sources): parsed once, matched per source address | no |
//! | [`config`] | embedded defaults, TOML config file, flag overrides | reads a file |
//! | [`server`] | the thin tokio layer: sockets (SIP over UDP, TCP and TLS), timers, tasks, publishing | yes |
//! | [`tls`] | the rustls configuration for SIP over TLS (certificate, key, mutual TLS) | reads files |
//! | [`http`] | the HTTP API: recordings, files, live sessions, the audit trail and tokens; HTTPS; access checks and audit of every request | yes |
//! | [`auth`] | access control: roles and rights, scopes (also as SQL), API tokens stored as hashes | no |
//! | [`logging`] | the log writer: control characters from remote values escaped (no forged log lines) | writes stderr |
//! | [`testkit`] | normalising corpus messages for tests, fuzzing and load generation | no |

pub mod auth;
pub mod config;
pub mod genesys;
pub mod http;
pub mod logging;
pub mod media;
pub mod net;
pub mod plan;
pub mod recording;
pub mod server;
pub mod session;
pub mod sip;
pub mod siprec;
pub mod store;
pub mod tls;

pub mod testkit;
