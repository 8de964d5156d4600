//! The session runner: carries out what the SIP core and the session
//! bookkeeping decide, from the offer to publication.
//!
//! - A new session is filed on the SIP task ([`lifecycle::open`], no IO),
//!   then its directory, `metadata.xml`, media sockets, WAV files and
//!   `incoming.json` are made on the blocking pool; the result comes back
//!   to the core loop ([`Sessions::on_started`]) before the core accepts
//!   or rejects the offer. A CANCEL meanwhile makes the accept fail: what
//!   was made is removed.
//! - Every stream starts through one path ([`start_stream`]), at the offer
//!   and for a line a re-offer adds (also on the blocking pool).
//! - Metadata updates and `incoming.json` go to the session writer thread,
//!   in order.
//! - A finished session's streams are stopped, post-call files made by the
//!   encoder pool, and the recording handed to the publisher thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Shared;
use crate::media::reactor::{SourcePolicy, StopError, StreamCtl};
use crate::media::recorder::{StreamRecorder, StreamSpec};
use crate::output;
use crate::plan::MediaPlan;
use crate::recording::{Attribution, Format, Status};
use crate::session::lifecycle::{self, Refusal, StartError, StreamStartError};
use crate::session::{
    crypto_answer, stream_spec, LineAction, LiveRecording, StreamReport, StreamSlot,
};
use crate::sip::core::{EndReason, Peer, SessionId, SipCore};
use crate::sip::message::Message;
use crate::siprec::sdp::{AnswerMedia, RtpMap, SdpOffer};
use crate::siprec::RecordingOffer;

/// A recorded stream, living in a media reactor shard.
struct StreamTask {
    id: u64,
    port: u16,
}

/// Where a session's streams are recorded.
#[derive(Clone)]
struct StreamCtx {
    dir: PathBuf,
    /// The session's start: every stream's timeline begins here.
    start: Instant,
    /// Output formats (a rule may override `output.formats`).
    formats: Vec<Format>,
    /// The recording client's signalling address: a stream's first source
    /// may come from it (`media.latch`).
    peer_ip: IpAddr,
}

/// One stream to start, at the offer or for a line a re-offer adds.
struct StreamStart {
    index: usize,
    label: String,
    codec: RtpMap,
    file: String,
    spec: StreamSpec,
    /// The SDP's `c=` address.
    expected: Option<IpAddr>,
    paused: bool,
    participant_id: Option<String>,
    attribution: Option<Attribution>,
}

/// A session between its answer and publication.
struct RunningSession {
    recording: LiveRecording,
    ctx: StreamCtx,
    media_ip: IpAddr,
    tasks: HashMap<usize, StreamTask>,
    /// false: a rule said not to record (answered inactive, no files).
    recorded: bool,
    /// A re-offer whose added streams are being started: its answer so far.
    adding: Option<Vec<AnswerMedia>>,
    /// Ended while streams were being added: finished once they are.
    ended: Option<(Instant, DateTime<Utc>, Status)>,
}

/// What the blocking pool hands back to the core loop (opaque to it).
pub(super) struct Started(Done);

enum Done {
    /// A new session's files and streams, or why it cannot be recorded.
    Session {
        session: SessionId,
        call_id: String,
        peer: Peer,
        participants: Vec<String>,
        result: Result<(Vec<AnswerMedia>, Box<RunningSession>), Failed>,
    },
    /// Streams a re-offer added.
    Streams {
        session: SessionId,
        started: Vec<(StreamStart, Result<StreamTask, StreamStartError>)>,
    },
}

/// A start-up that failed, and what it had made (to be released).
struct Failed {
    error: StartError,
    left: Option<Box<RunningSession>>,
}

/// The sessions of the server and their publishing tasks.
pub(super) struct Sessions {
    shared: Arc<Shared>,
    active: HashMap<SessionId, RunningSession>,
    /// New sessions being started on the blocking pool.
    starting: HashSet<SessionId>,
    publishing: JoinSet<()>,
    /// Our address towards each client IP (one routing lookup per client,
    /// not per session).
    routes: HashMap<IpAddr, IpAddr>,
    started: mpsc::UnboundedSender<Started>,
}

impl Sessions {
    pub fn new(shared: Arc<Shared>, started: mpsc::UnboundedSender<Started>) -> Sessions {
        Sessions {
            shared,
            active: HashMap::new(),
            starting: HashSet::new(),
            publishing: JoinSet::new(),
            routes: HashMap::new(),
            started,
        }
    }

    /// Sessions answered and not ended.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Recordings still being published.
    pub fn publishing(&self) -> usize {
        self.publishing.len()
    }

    /// Nothing running, starting or being published.
    pub fn is_idle(&self) -> bool {
        self.active.is_empty() && self.starting.is_empty() && self.publishing.is_empty()
    }

    /// Reaps a finished publishing task (a JoinSet keeps each finished
    /// task, its whole future's memory, until joined).
    pub async fn reap(&mut self) {
        if self.publishing.join_next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// A new offer: filed now, started on the blocking pool (or answered
    /// at once when a rule says not to record).
    pub fn on_offer(
        &mut self,
        core: &mut SipCore,
        session: SessionId,
        peer: Peer,
        invite: &Message,
        offer: RecordingOffer,
    ) {
        let cfg = &self.shared.config;
        let opening = lifecycle::open(
            cfg,
            &peer,
            invite,
            &offer,
            uuid::Uuid::now_v7().to_string(),
            Utc::now(),
        );
        let plan = MediaPlan::from_offer(&offer);
        let limits = crate::session::Limits::of(&cfg.sip);
        let media_ip = self.media_ip(peer.addr);
        let ctx = StreamCtx {
            dir: PathBuf::new(),
            start: Instant::now(),
            formats: opening.formats,
            peer_ip: peer.addr.ip(),
        };
        let participants = offer_participants(&offer);
        let recording = LiveRecording::new(opening.meta, &offer, &plan).with_limits(limits);
        if !opening.record {
            tracing::info!(call_id = %recording.meta.call_id, rule = ?recording.meta.rule,
                "a rule says not to record: answered inactive, no files");
            let active = RunningSession {
                recording,
                ctx,
                media_ip,
                tasks: HashMap::new(),
                recorded: false,
                adding: None,
                ended: None,
            };
            let answers = unrecorded_answers(&offer.sdp);
            self.on_started(
                core,
                Started(Done::Session {
                    session,
                    call_id: invite.call_id().unwrap_or_default().to_string(),
                    peer,
                    participants,
                    result: Ok((answers, Box::new(active))),
                }),
            );
            return;
        }
        self.starting.insert(session);
        let (shared, tx) = (self.shared.clone(), self.started.clone());
        let call_id = invite.call_id().unwrap_or_default().to_string();
        tokio::task::spawn_blocking(move || {
            // A panic in there (a bug) still answers the offer (500) and
            // lets the session go: the core never waits on it forever.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                start_session(&shared, recording, ctx, media_ip, &offer, &plan)
            }))
            .unwrap_or(Err(Failed {
                error: StartError::Internal,
                left: None,
            }));
            let _ = tx.send(Started(Done::Session {
                session,
                call_id,
                peer,
                participants,
                result,
            }));
        });
    }

    /// A start-up done on the blocking pool: the offer is answered now.
    pub fn on_started(&mut self, core: &mut SipCore, Started(done): Started) {
        let now = Instant::now();
        match done {
            Done::Session {
                session,
                call_id,
                peer,
                participants,
                result,
            } => {
                self.starting.remove(&session);
                match result {
                    Ok((answers, active)) => {
                        let metrics = &self.shared.health.metrics;
                        if !core.accept(now, session, active.media_ip, answers) {
                            tracing::info!(session, %call_id,
                                "ended while starting (cancelled): what was made is released");
                            metrics.session("cancelled", "");
                            self.abandon(*active);
                            return;
                        }
                        metrics.session("answered", "");
                        if active.recorded {
                            self.shared.events.notify(
                                crate::events::worker::Notice::Started,
                                active.recording.meta.clone(),
                            );
                        }
                        let m = &active.recording.meta;
                        tracing::info!(session, recording_id = %m.recording_id,
                            %call_id, source = %peer.addr, streams = active.tasks.len(),
                            record_dn = ?m.record_dn, "recording session started");
                        let info = crate::http::ActiveSessionInfo {
                            recording_id: m.recording_id.clone(),
                            call_id: m.call_id.clone(),
                            started_at: m.started_at.clone(),
                            source: m.source.clone(),
                            transport: m.transport.clone(),
                            recorded: active.recorded,
                            record_dn: m.record_dn.clone(),
                            geo_location: m.geo_location.clone(),
                            direction: m.direction.clone(),
                            correlation: m.correlation.clone(),
                            participants,
                            streams: active.tasks.len(),
                        };
                        if let Ok(mut a) = self.shared.health.active.lock() {
                            a.insert(session, info);
                        }
                        self.active.insert(session, *active);
                    }
                    Err(Failed { error, left }) => {
                        tracing::error!(error = %error, "session refused");
                        let Refusal {
                            code,
                            reason,
                            retry_after,
                        } = error.refusal();
                        tracing::warn!(session, %call_id, code, reason, "cannot start recording");
                        core.reject_retry_after(now, session, code, reason, retry_after);
                        self.shared.health.metrics.session("failed", "");
                        // Issue 14: recording.failed, with what was filed.
                        let mut meta = left
                            .as_ref()
                            .map(|l| l.recording.meta.clone())
                            .unwrap_or_else(|| crate::recording::RecordingMeta {
                                call_id: call_id.clone(),
                                source: peer.addr.to_string(),
                                ..Default::default()
                            });
                        meta.status = Status::Failed.into();
                        meta.error = Some(format!("{code} {reason}: {error}"));
                        self.shared
                            .events
                            .notify(crate::events::worker::Notice::Failed, meta);
                        if let Some(left) = left {
                            self.abandon(*left);
                        }
                    }
                }
            }
            Done::Streams { session, started } => {
                let Some(s) = self.active.get_mut(&session) else {
                    return;
                };
                let mut answers = s.adding.take().unwrap_or_default();
                for (want, r) in started {
                    match r {
                        Ok(task) => {
                            if let Some(a) = answers.get_mut(want.index) {
                                *a = AnswerMedia {
                                    port: Some(task.port),
                                    inactive: false,
                                    crypto: crypto_answer(&want.spec),
                                };
                            }
                            s.recording.add_stream(slot(&want, task.port));
                            s.tasks.insert(want.index, task);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot record an added stream"),
                    }
                }
                if let Some((end, ended_at, status)) = s.ended.take() {
                    if let Some(s) = self.active.remove(&session) {
                        self.finish_at(s, end, ended_at, status);
                    }
                    return;
                }
                core.accept(now, session, s.media_ip, answers);
            }
        }
    }

    /// A re-offer: existing streams keep their ports (codec and pause
    /// changes go to the reactor), new recordable lines get a port and a
    /// recorder (on the blocking pool; the answer waits for them).
    pub fn on_reoffer(&mut self, core: &mut SipCore, session: SessionId, sdp: &SdpOffer) {
        let now = Instant::now();
        let Some(s) = self.active.get_mut(&session) else {
            core.reject(now, session, 500, "Server Internal Error");
            return;
        };
        if !s.recorded {
            core.accept(now, session, s.media_ip, unrecorded_answers(sdp));
            return;
        }
        let mut answers = vec![AnswerMedia::recv(None); sdp.media.len()];
        let mut wanted = Vec::new();
        for action in s.recording.reoffer(Utc::now(), sdp) {
            match action {
                LineAction::Keep {
                    index,
                    port,
                    codec,
                    reanchor,
                    paused,
                } => {
                    // An SRTP line is answered with our key again (SDES
                    // re-keys per offer/answer; we send nothing with it).
                    answers[index] = AnswerMedia {
                        port: Some(port),
                        inactive: false,
                        crypto: crypto_answer(&stream_spec(&sdp.media[index])),
                    };
                    if let Some(t) = s.tasks.get(&index) {
                        let r = &self.shared.reactor;
                        r.ctl(t.id, StreamCtl::Paused(paused));
                        if let Some(spec) = codec {
                            r.ctl(t.id, StreamCtl::Codec(spec));
                        }
                        if reanchor {
                            r.ctl(t.id, StreamCtl::Reanchor);
                        }
                    }
                }
                LineAction::Start { index, codec, file } => {
                    let m = &sdp.media[index];
                    let label = m.label.clone().unwrap_or_else(|| format!("m{index}"));
                    let participant_id = s
                        .recording
                        .metadata
                        .as_ref()
                        .and_then(|md| md.sender_of_label(&label))
                        .map(|p| p.id.clone());
                    wanted.push(StreamStart {
                        index,
                        label,
                        codec,
                        file,
                        spec: stream_spec(m),
                        expected: m.connection,
                        paused: false,
                        attribution: participant_id.as_ref().map(|_| Attribution::Metadata),
                        participant_id,
                    });
                }
                LineAction::Reject { .. } => {}
            }
        }
        if wanted.is_empty() {
            core.accept(now, session, s.media_ip, answers);
            return;
        }
        s.adding = Some(answers);
        let (shared, ctx, tx) = (self.shared.clone(), s.ctx.clone(), self.started.clone());
        tokio::task::spawn_blocking(move || {
            let started = wanted
                .into_iter()
                .map(|w| {
                    // A panic (a bug) loses that stream, never the answer.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        start_stream(&shared, &ctx, &w)
                    }))
                    .unwrap_or(Err(StreamStartError::Internal));
                    (w, r)
                })
                .collect();
            let _ = tx.send(Started(Done::Streams { session, started }));
        });
    }

    /// Keeps the raw update beside the recording, merges it, and asks for a
    /// full snapshot when a partial update has nothing to apply to.
    pub fn on_metadata(&mut self, core: &mut SipCore, session: SessionId, xml: &str) {
        let Some(s) = self.active.get_mut(&session) else {
            return;
        };
        if let Some(name) = s.recording.keep_update(xml.len()) {
            if s.recorded {
                let path = s.ctx.dir.join(name);
                self.shared.writer.file(path, xml.as_bytes().to_vec());
            }
        }
        let need_snapshot = s.recording.apply_metadata(Utc::now(), xml);
        if s.recorded {
            let dir = s.ctx.dir.clone();
            self.shared.writer.incoming(dir, s.recording.snapshot());
        }
        if need_snapshot {
            tracing::info!(
                session,
                "partial metadata without a snapshot: requesting one"
            );
            core.request_snapshot(Instant::now(), session, "SRS has no metadata snapshot");
        }
    }

    /// A session ended: it is published (or, never answered, removed).
    pub fn on_ended(&mut self, session: SessionId, reason: EndReason) {
        if let Ok(mut a) = self.shared.health.active.lock() {
            a.remove(&session);
        }
        let Some(s) = self.active.get_mut(&session) else {
            return;
        };
        let status = lifecycle::end_status(reason);
        tracing::info!(session, ?reason, recording_id = %s.recording.meta.recording_id,
            "recording session ended");
        if s.adding.is_some() {
            tracing::debug!(
                session,
                "ended while a re-offer's streams start: published once they have"
            );
            s.ended = Some((Instant::now(), Utc::now(), status));
            return;
        }
        if let Some(s) = self.active.remove(&session) {
            if status.is_unanswered() {
                // Never answered: nothing may stay behind, even if the
                // process dies before its streams are stopped.
                self.abandon(s);
            } else {
                self.finish_at(s, Instant::now(), Utc::now(), status);
            }
        }
    }

    /// A session refused (or cancelled) before its answer: its directory
    /// is removed first, its streams are stopped, nothing is published.
    fn abandon(&mut self, s: RunningSession) {
        self.finish_at(s, Instant::now(), Utc::now(), Status::Failed);
    }

    /// Stops the streams and publishes the recording in the background.
    fn finish_at(
        &mut self,
        s: RunningSession,
        end: Instant,
        ended_at: DateTime<Utc>,
        status: Status,
    ) {
        let shared = self.shared.clone();
        self.publishing
            .spawn(publish(shared, s, end, ended_at, status));
    }

    /// The address to advertise to a client at `peer`.
    fn media_ip(&mut self, peer: SocketAddr) -> IpAddr {
        if let Some(ip) = self.routes.get(&peer.ip()) {
            return *ip;
        }
        let m = &self.shared.config.media;
        let ip = lifecycle::media_ip(m.advertised_address, m.bind, || route_to(peer));
        if self.routes.len() >= 4096 {
            self.routes.clear();
        }
        self.routes.insert(peer.ip(), ip);
        ip
    }
}

/// The local address the kernel would use to reach `peer`.
fn route_to(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let s = std::net::UdpSocket::bind(any).ok()?;
    s.connect(peer).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

/// On the blocking pool: the recording's directory, `metadata.xml`, every
/// stream and `incoming.json`. The first writes must succeed, or the
/// session is refused and leaves nothing: a 200 OK promises a recording.
fn start_session(
    shared: &Shared,
    recording: LiveRecording,
    mut ctx: StreamCtx,
    media_ip: IpAddr,
    offer: &RecordingOffer,
    plan: &MediaPlan,
) -> Result<(Vec<AnswerMedia>, Box<RunningSession>), Failed> {
    ctx.dir = shared
        .drop
        .create_incoming(&recording.meta.recording_id)
        .map_err(|e| Failed {
            error: e.into(),
            left: None,
        })?;
    let mut active = Box::new(RunningSession {
        recording,
        ctx,
        media_ip,
        tasks: HashMap::new(),
        recorded: true,
        adding: None,
        ended: None,
    });
    let fail = |error: StartError, active: Box<RunningSession>| {
        // Removed now; stopping its streams follows (abandon).
        remove_incoming(&active.ctx.dir);
        Failed {
            error,
            left: Some(active),
        }
    };
    if let Some(xml) = &offer.metadata_xml {
        if let Err(e) = std::fs::write(active.ctx.dir.join("metadata.xml"), xml) {
            return Err(fail(StartError::MetadataXml(e), active));
        }
    }
    let mut answers = vec![AnswerMedia::recv(None); offer.sdp.media.len()];
    for ps in &plan.streams {
        let (Some(codec), Some(file)) = (&ps.codec, &ps.file) else {
            continue;
        };
        let Some(m) = offer.sdp.media.get(ps.index) else {
            continue;
        };
        let want = StreamStart {
            index: ps.index,
            label: ps.label.clone(),
            codec: codec.clone(),
            file: file.clone(),
            spec: stream_spec(m),
            expected: m.connection,
            paused: crate::session::is_paused(m),
            participant_id: ps.participant_id.clone(),
            attribution: ps.attribution,
        };
        match start_stream(shared, &active.ctx, &want) {
            Ok(task) => {
                answers[ps.index] = AnswerMedia {
                    port: Some(task.port),
                    inactive: false,
                    crypto: crypto_answer(&want.spec),
                };
                active.recording.add_stream(slot(&want, task.port));
                active.tasks.insert(ps.index, task);
            }
            Err(e) => return Err(fail(e.into(), active)),
        }
    }
    if let Err(e) =
        crate::store::recover::write_incoming(&active.ctx.dir, &active.recording.snapshot())
    {
        return Err(fail(StartError::Incoming(e), active));
    }
    Ok((answers, active))
}

/// The bookkeeping of a started stream.
fn slot(want: &StreamStart, port: u16) -> StreamSlot {
    StreamSlot {
        srtp: want.spec.srtp.is_some(),
        index: want.index,
        label: want.label.clone(),
        codec: want.codec.clone(),
        file: want.file.clone(),
        port,
        paused: want.paused,
        participant_id: want.participant_id.clone(),
        attribution: want.attribution,
    }
}

/// Binds a port pair, creates the file and hands the stream to the
/// reactor: the one start-up path of every stream.
fn start_stream(
    shared: &Shared,
    ctx: &StreamCtx,
    want: &StreamStart,
) -> Result<StreamTask, StreamStartError> {
    let bind = shared.config.media.bind;
    let pair = shared.ports.lock().ok().and_then(|mut p| p.bind_pair(bind));
    let Some((rtp_sock, rtcp_sock, port)) = pair else {
        // Every port failed to bind: taken, or no descriptor to make a
        // socket with (then say so, not "no port").
        return Err(match std::net::UdpSocket::bind((bind, 0)) {
            Err(e) if super::os::out_of_descriptors(e.raw_os_error()) => {
                StreamStartError::NoDescriptors
            }
            _ => StreamStartError::NoPort,
        });
    };
    let ogg = (want.spec.has(&crate::media::codec::CodecKind::Opus)
        && ctx.formats.contains(&Format::OggOpus))
    .then(|| ctx.dir.join(output::opus_name(&want.file)));
    let recorder = match StreamRecorder::create(
        &ctx.dir.join(&want.file),
        want.spec.clone(),
        ctx.start,
        ogg.as_deref(),
    ) {
        Ok(r) => r,
        Err(e) => {
            if let Ok(mut p) = shared.ports.lock() {
                p.release(port);
            }
            return Err(e.into());
        }
    };
    let id = shared
        .next_stream
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let media = &shared.config.media;
    let source = SourcePolicy::for_stream(
        media.latch,
        media.latch_any_source,
        want.expected,
        ctx.peer_ip,
    );
    shared
        .reactor
        .add(id, rtp_sock, rtcp_sock, recorder, source);
    if want.paused {
        shared.reactor.ctl(id, StreamCtl::Paused(true));
    }
    Ok(StreamTask { id, port })
}

/// Removes a refused session's directory (gone already is fine).
fn remove_incoming(dir: &Path) -> bool {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a refused session's directory yet");
            false
        }
    }
}

/// Ends the stream tasks, describes the files, makes the post-call files,
/// and hands the recording to the publisher (drop, then index: an index
/// failure never loses audio). A session never answered leaves nothing
/// behind.
async fn publish(
    shared: Arc<Shared>,
    s: RunningSession,
    end: Instant,
    ended_at: DateTime<Utc>,
    status: Status,
) {
    // From here to the drop: `srs_publish_duration_seconds`.
    let ended = Instant::now();
    let RunningSession {
        recording,
        ctx,
        tasks,
        recorded,
        ..
    } = s;
    if !recorded {
        return;
    }
    // The session's queued writes land first: none may recreate or follow
    // a directory that is published or removed.
    shared.writer.flush().await;
    let StreamCtx {
        dir,
        start,
        formats,
        ..
    } = ctx;
    if status.is_unanswered() {
        remove_incoming(&dir);
    }
    let (end, ended_at) = if status == Status::CompleteNoAck {
        // 32 s of retransmitting our 200 OK are not the call: publish what
        // was received, up to the end of the last media (or nothing).
        let mut media_end = start;
        for t in tasks.values() {
            if let Ok(Some(e)) = shared.reactor.media_end(t.id).await {
                media_end = media_end.max(e);
            }
        }
        let media_end = media_end.min(end);
        let cut = chrono::Duration::from_std(end - media_end).unwrap_or_default();
        (media_end, ended_at - cut)
    } else {
        (end, ended_at)
    };
    let mut reports = BTreeMap::new();
    for (index, t) in tasks {
        match shared.reactor.stop(t.id, end).await {
            Ok(stats) => {
                reports.insert(
                    index,
                    StreamReport {
                        stats,
                        ..StreamReport::default()
                    },
                );
            }
            Err(e @ StopError::ThreadGone) => tracing::error!(error = %e, "media thread gone"),
            Err(e) => tracing::error!(error = %e, "stream failed"),
        }
        if let Ok(mut p) = shared.ports.lock() {
            p.release(t.port);
        }
    }
    if status.is_unanswered() {
        // Nothing of an unanswered session may stay in .incoming (it would
        // come back as a phantom recording after a restart): the removal is
        // retried while, say, descriptors are short.
        for attempt in 0..5 {
            if remove_incoming(&dir) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        tracing::error!(dir = %dir.display(), "an unanswered session's directory stays; the next start removes it");
        return;
    }
    // Each file as it is on disk: only whole, playable WAVs are listed.
    // A stream without a report (its media thread died) keeps what its
    // last header rewrite covered, repaired from the disk.
    for slot in recording.streams.values() {
        let path = dir.join(&slot.file);
        let r = reports.entry(slot.index).or_insert_with(|| {
            let mut stats = crate::media::recorder::StreamStats {
                error: Some("the media thread stopped".into()),
                ..Default::default()
            };
            if let Some((frames, rate, _)) = crate::store::recover::repair_wav_frames(&path) {
                stats.samples_written = frames;
                stats.sample_rate = rate;
            }
            StreamReport {
                stats,
                ..StreamReport::default()
            }
        });
        r.playable = crate::store::recover::wav_frames(&path).is_some();
        r.bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        if let Some(e) = &r.stats.error {
            tracing::warn!(recording_id = %recording.meta.recording_id, file = %slot.file, error = %e,
                seconds = r.stats.samples_written / u64::from(r.stats.sample_rate.max(1)),
                "published truncated: a stream stopped recording early");
        }
    }
    let duration_ms = end.saturating_duration_since(start).as_millis() as u64;
    let mut meta = recording.finish(ended_at, duration_ms, status, &reports);
    // Stereo and Opus files, then the seal (encryption at rest, each
    // file's SHA-256 and the manifest: store::integrity): made now, off the
    // packet path and the SIP task, by the encoder threads (bounded, and at
    // a lower CPU priority than the media threads, so this lags under load
    // instead of costing packets).
    let encode = output::needs_encoding(&formats);
    let mut out_cfg = shared.config.output.clone();
    out_cfg.formats = formats;
    let encryptor = shared.encryptor.clone();
    let made = shared
        .encoders
        .run(move || {
            if encode {
                output::make_outputs(&out_cfg, &dir, &mut meta);
            }
            let sealed = crate::store::integrity::seal(&dir, &mut meta, encryptor.as_deref());
            (meta, sealed)
        })
        .await;
    let meta = match made {
        Some((meta, Ok(()))) => meta,
        Some((meta, Err(e))) => {
            // Never published in clear by mistake, never lost: it stays in
            // .incoming, where the next start recovers (and seals) it.
            tracing::error!(recording_id = %meta.recording_id, error = %e,
                "sealing failed (encryption or hashes); the recording stays in .incoming until the next start");
            return;
        }
        None => {
            tracing::error!("an encoder thread failed; the recording stays in .incoming");
            return;
        }
    };
    // Into the drop, then the index: by the publisher thread, in batches.
    let status = meta.status.clone();
    match shared.publisher.publish(meta).await {
        Ok(true) => shared
            .health
            .metrics
            .published(&status, ended.elapsed().as_secs_f64()),
        Ok(false) => {}
        Err(_) => {
            tracing::error!("the publisher thread is gone; the recording stays in .incoming")
        }
    }
}

/// The answer of a session not to be recorded: every m-line accepted
/// `inactive` on the discard port, so the client sees a clean 200 OK and
/// sends nothing; no socket is bound and no file written.
fn unrecorded_answers(sdp: &SdpOffer) -> Vec<AnswerMedia> {
    sdp.media
        .iter()
        .map(|m| AnswerMedia {
            port: m.is_recordable().then_some(9),
            inactive: true,
            crypto: None,
        })
        .collect()
}

/// Participants named by an offer (aor, else name), for the sessions API.
fn offer_participants(offer: &RecordingOffer) -> Vec<String> {
    let from_md = offer.metadata.iter().flat_map(|m| {
        m.participants
            .iter()
            .filter_map(|p| p.aor.clone().or_else(|| p.name.clone()))
    });
    from_md
        .chain(offer.header_participants.iter().map(|h| h.aor.clone()))
        .collect()
}
