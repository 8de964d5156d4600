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
//! | [`sip::core`] | transactions, dialogs and timers of the recording UAS: bytes + `now` in, transmits, events and timeouts out ([`sip::transaction`], [`sip::deadlines`]) | no |
//! | [`sip::conns`] | which SIP/TCP and TLS connections may stay open: head and idle timeouts, per-source and global caps, dialogs exempt | no |
//! | [`sip::overload`] | overload detection: queue depth + `now` in, "refuse new sessions" (503 Overloaded) out | no |
//! | [`siprec`] | reading an offer: [`siprec::multipart`], [`siprec::sdp`] (adapter over `webrtc-sdp`, answer builder), [`siprec::metadata`] (RFC 7865 model, partial-update merge, tolerant XML reader, every vendor dialect) | no |
//! | [`plan`] | the media plan: which m-line is recorded, who sends on it, which file it goes to | no |
//! | [`session`] | one recording's bookkeeping while it runs ([`session::LiveRecording`]: merged metadata, participants ever seen, events, re-offer decisions, the final `metadata.json`); [`session::lifecycle`]: filing and the starting `RecordingMeta`, which answer a failed start-up gets, the end status | no |
//! | [`filing`] | under which DN, rule and ids a recording is kept: correlation ids of every vendor, the Genesys record-leg specifics, the DN directory, recording rules | no |
//! | [`recording`] | the `metadata.json` schema and its vocabulary (format, status, direction, attribution) | no |
//! | [`media`] | the media threads ([`media::reactor`]: RTP/RTCP sockets, `recvmmsg`, epoll), RTP and SRTP, decoding, reorder buffer, the per-stream recorder writing WAV (and Ogg for Opus) | threads, sockets, files |
//! | [`output`] | post-call files: channel mapping (stereo left/right), the stereo WAV, Ogg Opus, the encoder thread pool | files, threads |
//! | [`store`] | the file drop (atomic publish), crash recovery, the publisher thread (batches), the SQLite index, the audit trail, the low-disk guard, CLI rendering, file hashes and the manifest ([`store::integrity`]), encryption at rest ([`store::crypt`]) | files |
//! | [`lifecycle`] | legal holds, deletion and erasure, retention rules and their thread, the index in step with the drop | files, a thread |
//! | [`net`] | IP networks (`sip.allow`, rule sources): parsed once, matched per source address | no |
//! | [`config`] | embedded defaults, TOML config file, flag overrides, parsed and checked once at load | reads a file |
//! | [`server`] | the IO layer: binds every socket ([`server::Server::bind`]), then runs the SIP task, connection tasks and session runner ([`server::Server::run`]) | yes |
//! | [`tls`] | the rustls configuration for SIP over TLS (certificate, key, mutual TLS) | reads files |
//! | [`http`] | the HTTP API: recordings, files, live sessions, the audit trail and tokens; HTTPS; access checks and audit of every request; the web page ([`http::web`]: embedded assets, sign-in sessions, waveform peaks) | yes |
//! | [`auth`] | access control: roles and rights, scopes (also as SQL), API tokens stored as hashes | no |
//! | [`logging`] | the log writer: control characters from remote values escaped (no forged log lines) | writes stderr |
//! | [`events`] | call events from the contact centre: checked ([`events::parse_events`]), tied to recordings ([`events::associate`], pure), stored ([`events::store`]); the events thread ([`events::worker`]) | the events thread writes the index and `call-events.json` |
//! | [`webhooks`] | webhook config, signature, backoff, the outbox in the index, the delivery thread | HTTP client |
//! | [`metrics`] | the Prometheus registry (`GET /metrics`), media totals folded on scrape | no |
//! | [`testkit`] | normalising corpus messages, tones and G.711 for tests, fuzzing and load generation | no |
//!
//! ## Where each behaviour lives
//! | behaviour | file |
//! |---|---|
//! | SIP transactions, retransmissions, dialogs, session timers (RFC 4028), CANCEL | `src/sip/core.rs`, `src/sip/transaction.rs`, `src/sip/deadlines.rs` |
//! | refusals before anything is allocated: allow-list 403, rate limit, session cap (`sip.max_sessions`), shutdown, low disk, overload | `src/sip/core.rs` (`Refusal`) |
//! | overload (503 while SIP input queues up) | `src/sip/overload.rs`; measured in `src/server/mod.rs` (`set_behind`) |
//! | connection limits (head/idle timeouts, per-source and global caps) | `src/sip/conns.rs`; carried out by `src/server/listeners.rs` |
//! | which answer a failed start-up gets (503 vs 500, reason, Retry-After) | `src/session/lifecycle.rs` (`StartError::refusal`) |
//! | filing: Record DN, rule, direction, correlation ids | `src/filing/` (`rules.rs`, `directory.rs`, `correlation.rs`, `genesys.rs`); applied in `src/session/lifecycle.rs` (`open`) |
//! | per-recording caps (metadata updates and bytes, events, participants) | `src/session.rs` (`Limits`) |
//! | session start-up off the SIP task, one stream start-up path, re-offers, metadata updates, publication | `src/server/sessions.rs` |
//! | `incoming.json` and metadata updates written in order | `src/server/writer.rs` |
//! | RTP port pool (random pairs) | `src/server/ports.rs` |
//! | the media threads (epoll, `recvmmsg`, one shard per thread) | `src/media/reactor.rs`, `src/media/receiver.rs` |
//! | latching: whose packets a stream accepts (`media.latch`) | `src/media/reactor.rs` (`SourcePolicy`) |
//! | jitter, loss, reordering, SSRC changes, silence for gaps | `src/media/recorder.rs`, `src/media/reorder.rs` |
//! | SRTP (SDES) | `src/media/srtp.rs` |
//! | channel mapping: which party is stereo-left (`output.stereo_left`) | `src/output/mod.rs` (`stereo_sides`) |
//! | stereo WAV, Ogg Opus after the call, the encoder pool | `src/output/stereo.rs`, `src/media/ogg_opus.rs`, `src/output/encoders.rs` |
//! | end status (`complete`, `complete-no-ack`, `cancelled`...) | `src/session/lifecycle.rs` (`end_status`), `truncated` in `src/session.rs` (`finish`) |
//! | low-disk guard (`storage.min_free_mb` and its margin) | `src/store/disk_guard.rs`; read every second in `src/server/mod.rs` (`check_disk`) |
//! | publish batching (group commit, index retries); a batch written with one statement per table | `src/store/publisher.rs`; `upsert_many_in` in `src/store/index.rs` |
//! | searches: filters as SQL, a DN search driven by `recording_dns (dn, started_at)` | `src/store/query.rs`; `search_sql` in `src/store/index.rs` |
//! | atomic publish into the drop | `src/store/drop.rs` |
//! | crash recovery (`.incoming` published at start, WAV headers repaired) | `src/store/recover.rs` |
//! | the index, its faults and reindexing | `src/store/index.rs` |
//! | the HTTP API and its limits | `src/http.rs` |
//! | API tokens, roles, scopes; who may see which recording | `src/auth/`; checked in `src/http/access.rs` |
//! | the audit trail (hash chain, `srs audit --verify`) | `src/store/audit.rs`; written by `src/http/access.rs` and `src/main.rs` |
//! | HTTPS for the API | `src/http/https.rs` |
//! | the web page: embedded assets, sign-in and `/api/v1/me`, peaks endpoint | `src/http/web.rs`, assets in `web/` |
//! | web sign-in sessions (cookie, CSRF, expiry) | `src/http/signin.rs`; checked in `src/http/access.rs` (`authenticate`) |
//! | waveform peaks of a WAV (one streaming pass) | `src/http/peaks.rs` |
//! | the CLI | `src/main.rs`, output in `src/store/render.rs` |
//! | retention rules, legal hold, deletion and erasure, index in step with the drop (`found-missing`) | `src/lifecycle/` (`mod.rs`, `retention.rs`, `schedule.rs`: the `srs-retention` thread) |
//! | file hashes, the manifest, `srs verify` | `src/store/integrity.rs`; sealed at publication in `src/server/sessions.rs` (`publish`) and at recovery |
//! | encryption at rest (age) and decryption for the API and `srs export` | `src/store/crypt.rs`; served in `src/http/lifecycle.rs` |
//! | call events: validation, association (matching order, window), attached data | `src/events/mod.rs`; SQL in `src/events/store.rs` (`plan_links`, `write_links` for a whole batch), hooked into `upsert_many_in` of `src/store/index.rs` |
//! | `call-events.json` in the drop, webhook outbox and deliveries | `src/events/worker.rs`, `src/webhooks/` |
//! | index back-ends: one connection API over SQLite or PostgreSQL, the two schemas side by side, `storage.index` URLs and passwords | `src/store/db.rs`, `src/store/pg_schema.rs`, `src/store/backend.rs`; test clusters in `src/testkit/pg.rs` |
//! | object store (`[storage.object]`): upload queue, verification, `keep_local`, serving and deleting objects | `src/store/objects.rs`; served in `src/http.rs` (`serve_object`), deleted through `src/lifecycle/mod.rs` (`Replicas`), exported in `src/main.rs` (`export_cmd`) |
//! | draining on SIGTERM: OPTIONS and new INVITEs 503, unanswered sessions refused, live ones ended with BYE | `src/sip/core.rs` (`drain`, `end_with_bye`); started in `src/server/mod.rs` (`run`) |
//! | several recorders: `[node] id`, dispatcher in front | `src/config.rs` (`NodeConfig`); `docs/scale-out.md`, `examples/kamailio/` |
//! | metrics (`GET /metrics`), media counters folded on scrape | `src/metrics.rs`; `Reactor::counters` in `src/media/reactor.rs`; refusals counted in `src/sip/core.rs` (`REFUSAL_REASONS`) |

pub mod auth;
pub mod config;
pub mod events;
pub mod filing;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod net;
pub mod output;
pub mod plan;
pub mod recording;
pub mod server;
pub mod session;
pub mod sip;
pub mod siprec;
pub mod store;
pub mod tls;
pub mod webhooks;

pub mod testkit;
