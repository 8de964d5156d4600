//! The thin tokio layer: owns the SIP sockets (UDP and TCP), the timer, the
//! RTP sockets and their tasks, and publishing. All protocol decisions are
//! taken by [`SipCore`]; this module only moves bytes and time in and out.
//!
//! One task owns the core and the SIP UDP socket; each TCP connection has a
//! reader task (framing by Content-Length) and a writer task; each recorded
//! stream has a task that receives RTP into its [`StreamRecorder`]; a
//! finished session is published by its own task (file drop, then index).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::config::{Config, PortRange};
use crate::http::{self, Health};
use crate::media::g711::Law;
use crate::media::recorder::{StreamRecorder, StreamStats, RATE};
use crate::media::rtp;
use crate::plan::MediaPlan;
use crate::recording::{FileMeta, RecordingMeta, StreamMeta};
use crate::sip::core::{ConnId, CoreConfig, EndReason, Event, Peer, SessionId, SipCore, Transport};
use crate::sip::message::StreamFramer;
use crate::siprec::sdp::AnswerMedia;
use crate::siprec::RecordingOffer;
use crate::store::{FileDrop, Index};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create the recordings directory {path}: {source}")]
    Drop {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Addresses actually bound (ports may have been 0 in the config).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub sip: SocketAddr,
    pub http: SocketAddr,
}

/// Even/odd RTP/RTCP port pairs from the configured range.
#[derive(Debug)]
struct PortPool {
    lo: u16,
    hi: u16,
    next: u16,
    used: HashSet<u16>,
}

impl PortPool {
    fn new(r: PortRange) -> Self {
        let lo = r.lo + (r.lo % 2);
        PortPool {
            lo,
            hi: r.hi,
            next: lo,
            used: HashSet::new(),
        }
    }

    /// Binds an RTP socket on an even port and RTCP on the next one.
    fn bind_pair(&mut self, ip: IpAddr) -> Option<(std::net::UdpSocket, std::net::UdpSocket, u16)> {
        let pairs = self.hi.saturating_sub(self.lo) as usize / 2 + 1;
        for _ in 0..pairs {
            let port = self.next;
            self.next = if port.saturating_add(3) > self.hi {
                self.lo
            } else {
                port + 2
            };
            if self.used.contains(&port) {
                continue;
            }
            let Ok(rtp) = std::net::UdpSocket::bind((ip, port)) else {
                continue;
            };
            let Ok(rtcp) = std::net::UdpSocket::bind((ip, port + 1)) else {
                continue;
            };
            if rtp.set_nonblocking(true).is_err() || rtcp.set_nonblocking(true).is_err() {
                continue;
            }
            self.used.insert(port);
            return Some((rtp, rtcp, port));
        }
        None
    }

    fn release(&mut self, port: u16) {
        self.used.remove(&port);
    }
}

/// A recorded stream's task.
struct StreamTask {
    index: usize,
    port: u16,
    stop: oneshot::Sender<Instant>,
    handle: tokio::task::JoinHandle<Result<StreamStats, String>>,
}

/// A session between INVITE and publication.
struct ActiveSession {
    meta: RecordingMeta,
    plan: MediaPlan,
    start: Instant,
    dir: PathBuf,
    streams: Vec<StreamTask>,
    updates: usize,
}

/// What connection tasks tell the core task.
enum TcpInput {
    Opened(ConnId, mpsc::UnboundedSender<Bytes>),
    Message(ConnId, SocketAddr, Bytes),
    Closed(ConnId),
}

/// Shared by the core task and the publishing tasks.
struct Shared {
    drop: FileDrop,
    index: Mutex<Option<Index>>,
    ports: Mutex<PortPool>,
    health: Arc<Health>,
    config: Config,
}

/// Runs the server until `shutdown` changes to true, then ends every
/// active session (BYE), publishes them and returns. `on_bound` is told the
/// bound addresses once listening.
pub async fn run(
    config: Config,
    mut shutdown: watch::Receiver<bool>,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServerError> {
    let root = config.storage.recordings.clone();
    std::fs::create_dir_all(&root).map_err(|source| ServerError::Drop {
        path: root.clone(),
        source,
    })?;
    let index = match Index::open(&config.index_path()) {
        Ok(i) => Some(i),
        Err(e) => {
            tracing::error!(path = %config.index_path().display(), error = %e,
                "index unavailable: recordings still land in the drop; run `srs reindex` later");
            None
        }
    };
    let sip_addr = config.sip.listen;
    let udp = UdpSocket::bind(sip_addr)
        .await
        .map_err(|source| ServerError::Bind {
            what: "SIP/UDP",
            addr: sip_addr,
            source,
        })?;
    let sip_bound = udp.local_addr().unwrap_or(sip_addr);
    let tcp = TcpListener::bind(sip_bound)
        .await
        .map_err(|source| ServerError::Bind {
            what: "SIP/TCP",
            addr: sip_bound,
            source,
        })?;
    let http_listener =
        http::bind(config.http.listen)
            .await
            .map_err(|source| ServerError::Bind {
                what: "HTTP",
                addr: config.http.listen,
                source,
            })?;
    let http_bound = http_listener.local_addr().unwrap_or(config.http.listen);
    let health = Arc::new(Health::default());
    let shared = Arc::new(Shared {
        drop: FileDrop::new(root),
        index: Mutex::new(index),
        ports: Mutex::new(PortPool::new(config.media.rtp_ports)),
        health: health.clone(),
        config: config.clone(),
    });
    tracing::info!(sip = %sip_bound, http = %http_bound, rtp_ports = %config.media.rtp_ports,
        recordings = %config.storage.recordings.display(), "srs listening (SIP over UDP and TCP)");
    on_bound(Bound {
        sip: sip_bound,
        http: http_bound,
    });

    let mut http_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let stop = async move {
            let _ = http_shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = http::serve(http_listener, health, stop).await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });

    let (tcp_tx, tcp_rx) = mpsc::unbounded_channel();
    tokio::spawn(accept_tcp(tcp, tcp_tx));

    let core = SipCore::new(CoreConfig {
        max_sessions: config.sip.max_sessions,
        sip_port: sip_bound.port(),
        tag_seed: rand::random::<u32>() as u64,
        ..CoreConfig::default()
    });
    let mut lp = CoreLoop {
        core,
        udp,
        conns: HashMap::new(),
        sessions: HashMap::new(),
        publishing: JoinSet::new(),
        shared,
    };
    lp.run(tcp_rx, &mut shutdown).await;
    Ok(())
}

struct CoreLoop {
    core: SipCore,
    udp: UdpSocket,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Bytes>>,
    sessions: HashMap<SessionId, ActiveSession>,
    publishing: JoinSet<()>,
    shared: Arc<Shared>,
}

impl CoreLoop {
    async fn run(
        &mut self,
        mut tcp_rx: mpsc::UnboundedReceiver<TcpInput>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 65_535];
        loop {
            let timeout = self.core.poll_timeout();
            let sleep = tokio::time::sleep_until(
                timeout
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            tokio::select! {
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok((n, addr)) => {
                        let peer = Peer { transport: Transport::Udp, addr, conn: None };
                        self.core.handle_input(Instant::now(), peer, &buf[..n]);
                    }
                    Err(e) => tracing::debug!(error = %e, "SIP/UDP receive error"),
                },
                Some(input) = tcp_rx.recv() => match input {
                    TcpInput::Opened(id, tx) => { self.conns.insert(id, tx); }
                    TcpInput::Closed(id) => { self.conns.remove(&id); }
                    TcpInput::Message(id, addr, data) => {
                        let peer = Peer { transport: Transport::Tcp, addr, conn: Some(id) };
                        self.core.handle_input(Instant::now(), peer, &data);
                    }
                },
                _ = sleep, if timeout.is_some() => self.core.handle_timeout(Instant::now()),
                _ = shutdown.wait_for(|s| *s) => {
                    self.shutdown().await;
                    return;
                }
            }
            self.flush().await;
        }
    }

    /// Sends what the core wants sent and acts on its events.
    async fn flush(&mut self) {
        loop {
            while let Some(t) = self.core.poll_transmit() {
                self.transmit(t.peer, t.payload).await;
            }
            let Some(ev) = self.core.poll_event() else {
                break;
            };
            self.on_event(ev);
        }
        self.shared
            .health
            .active_sessions
            .store(self.sessions.len(), Ordering::Relaxed);
    }

    async fn transmit(&mut self, peer: Peer, payload: Bytes) {
        match (peer.transport, peer.conn) {
            (Transport::Tcp, Some(conn)) => match self.conns.get(&conn) {
                Some(tx) => {
                    let _ = tx.send(payload);
                }
                None => tracing::debug!(%peer.addr, "TCP connection gone; response dropped"),
            },
            _ => {
                if let Err(e) = self.udp.send_to(&payload, peer.addr).await {
                    tracing::debug!(%peer.addr, error = %e, "SIP/UDP send failed");
                }
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Offered {
                session,
                peer,
                invite,
                offer,
            } => {
                let call_id = invite.call_id().unwrap_or_default().to_string();
                match self.start_session(session, peer, &call_id, &offer) {
                    Ok((ip, answers, active)) => {
                        if self.core.accept(Instant::now(), session, ip, answers) {
                            tracing::info!(session, recording_id = %active.meta.recording_id,
                                %call_id, source = %peer.addr, streams = active.streams.len(),
                                "recording session started");
                            self.sessions.insert(session, active);
                        } else {
                            self.finish(active, Instant::now(), "cancelled");
                        }
                    }
                    Err((code, reason)) => {
                        tracing::warn!(session, %call_id, code, reason, "cannot start recording");
                        self.core.reject(Instant::now(), session, code, reason);
                    }
                }
            }
            Event::Confirmed { session } => tracing::debug!(session, "ACK received"),
            Event::Updated {
                session,
                sdp,
                metadata_xml,
            } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    if let Some(xml) = metadata_xml {
                        s.updates += 1;
                        let name = format!("metadata-update-{}.xml", s.updates);
                        if let Err(e) = std::fs::write(s.dir.join(&name), xml) {
                            tracing::warn!(error = %e, "cannot keep metadata update");
                        }
                    }
                    tracing::info!(session, sdp = sdp.is_some(), "recording session updated");
                }
            }
            Event::Ended {
                session,
                reason,
                metadata_xml,
            } => {
                if let Some(mut s) = self.sessions.remove(&session) {
                    if let Some(xml) = metadata_xml {
                        s.updates += 1;
                        let name = format!("metadata-update-{}.xml", s.updates);
                        let _ = std::fs::write(s.dir.join(name), xml);
                    }
                    let status = match reason {
                        EndReason::Bye | EndReason::Local => "complete",
                        EndReason::AckTimeout => "complete-no-ack",
                        EndReason::Cancelled => "cancelled",
                    };
                    tracing::info!(session, ?reason, recording_id = %s.meta.recording_id, "recording session ended");
                    self.finish(s, Instant::now(), status);
                }
            }
        }
    }

    /// Allocates the recording directory and media sockets and starts the
    /// stream tasks. On failure everything allocated is released.
    #[allow(clippy::type_complexity)]
    fn start_session(
        &mut self,
        session: SessionId,
        peer: Peer,
        call_id: &str,
        offer: &RecordingOffer,
    ) -> Result<(IpAddr, Vec<AnswerMedia>, ActiveSession), (u16, &'static str)> {
        let recording_id = uuid::Uuid::now_v7().to_string();
        let dir = self
            .shared
            .drop
            .create_incoming(&recording_id)
            .map_err(|e| {
                tracing::error!(error = %e, "cannot create recording directory");
                (500, "Cannot Store Recording")
            })?;
        let plan = MediaPlan::from_offer(offer);
        let cfg = &self.shared.config.media;
        let ip = media_ip(cfg.advertised_address, cfg.bind, peer.addr);
        let start = Instant::now();
        let mut answers = vec![AnswerMedia { port: None }; offer.sdp.media.len()];
        let mut streams = Vec::new();
        let mut failure = None;
        for ps in &plan.streams {
            let (Some(codec), Some(file)) = (&ps.codec, &ps.file) else {
                continue;
            };
            let Some(law) = Law::from_codec(&codec.name) else {
                continue;
            };
            let pair = self
                .shared
                .ports
                .lock()
                .ok()
                .and_then(|mut p| p.bind_pair(cfg.bind));
            let Some((rtp_sock, rtcp_sock, port)) = pair else {
                failure = Some((503, "No Media Port Available"));
                break;
            };
            let recorder = match StreamRecorder::create(&dir.join(file), law, codec.pt, start) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot create audio file");
                    self.release_port(port);
                    failure = Some((500, "Cannot Store Recording"));
                    break;
                }
            };
            let (stop, stop_rx) = oneshot::channel();
            let handle = tokio::spawn(receive_stream(rtp_sock, rtcp_sock, recorder, stop_rx));
            answers[ps.index] = AnswerMedia { port: Some(port) };
            streams.push(StreamTask {
                index: ps.index,
                port,
                stop,
                handle,
            });
        }
        let now_utc = Utc::now();
        let meta = RecordingMeta {
            recording_id,
            call_id: call_id.to_string(),
            status: "recording".into(),
            started_at: now_utc.to_rfc3339_opts(SecondsFormat::Millis, true),
            source: peer.addr.to_string(),
            transport: peer.transport.as_str().into(),
            participants: plan.participants.clone(),
            metadata_error: offer.metadata_error.clone(),
            ..RecordingMeta::default()
        };
        if let Some(xml) = &offer.metadata_xml {
            if let Err(e) = std::fs::write(dir.join("metadata.xml"), xml) {
                tracing::warn!(error = %e, "cannot keep metadata XML");
            }
        }
        let active = ActiveSession {
            meta,
            plan,
            start,
            dir,
            streams,
            updates: 0,
        };
        if let Some(err) = failure {
            self.finish(active, Instant::now(), "failed");
            return Err(err);
        }
        let _ = session;
        Ok((ip, answers, active))
    }

    fn release_port(&self, port: u16) {
        if let Ok(mut p) = self.shared.ports.lock() {
            p.release(port);
        }
    }

    /// Stops the streams and publishes the recording in the background.
    fn finish(&mut self, s: ActiveSession, end: Instant, status: &'static str) {
        let shared = self.shared.clone();
        let ended_at = Utc::now();
        self.publishing
            .spawn(publish(shared, s, end, ended_at, status));
    }

    async fn shutdown(&mut self) {
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        tracing::info!(active = ids.len(), "shutting down: ending active sessions");
        for id in ids {
            self.core.terminate(id);
        }
        self.flush().await;
        while self.publishing.join_next().await.is_some() {}
    }
}

/// The local address to advertise for a client at `peer`.
fn media_ip(advertised: Option<IpAddr>, bind: IpAddr, peer: SocketAddr) -> IpAddr {
    if let Some(a) = advertised {
        return a;
    }
    if !bind.is_unspecified() {
        return bind;
    }
    // The address the kernel would use to reach the client.
    let any: SocketAddr = if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect(peer)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Receives one stream's RTP until told to stop at the session's end.
async fn receive_stream(
    rtp_sock: std::net::UdpSocket,
    rtcp_sock: std::net::UdpSocket,
    mut rec: StreamRecorder,
    mut stop: oneshot::Receiver<Instant>,
) -> Result<StreamStats, String> {
    let (Ok(rtp_sock), Ok(rtcp_sock)) = (
        UdpSocket::from_std(rtp_sock),
        UdpSocket::from_std(rtcp_sock),
    ) else {
        return Err("cannot register RTP socket".into());
    };
    let mut buf = vec![0u8; 2048];
    let mut cbuf = vec![0u8; 2048];
    let mut failed = None;
    let end = loop {
        tokio::select! {
            biased;
            end = &mut stop => break end.unwrap_or_else(|_| Instant::now()),
            r = rtp_sock.recv_from(&mut buf), if failed.is_none() => {
                if let Ok((n, _)) = r {
                    if let Ok(p) = rtp::parse(Bytes::copy_from_slice(&buf[..n])) {
                        if let Err(e) = rec.on_packet(Instant::now(), &p) {
                            tracing::error!(error = %e, "writing audio failed; stream stops recording");
                            failed = Some(e.to_string());
                        }
                    }
                }
            }
            _ = rtcp_sock.recv(&mut cbuf) => {}
        }
    };
    // Packets already queued arrived before the end.
    while let Ok((n, _)) = rtp_sock.try_recv_from(&mut buf) {
        if let Ok(p) = rtp::parse(Bytes::copy_from_slice(&buf[..n])) {
            let _ = rec.on_packet(end, &p);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    rec.finish(end).map_err(|e| e.to_string())
}

/// Ends the stream tasks, describes the files, publishes into the drop and
/// then indexes. The drop comes first: an index failure never loses audio.
async fn publish(
    shared: Arc<Shared>,
    s: ActiveSession,
    end: Instant,
    ended_at: DateTime<Utc>,
    status: &'static str,
) {
    let ActiveSession {
        mut meta,
        plan,
        start,
        dir,
        streams,
        ..
    } = s;
    let mut results: HashMap<usize, StreamStats> = HashMap::new();
    for st in streams {
        let _ = st.stop.send(end);
        match st.handle.await {
            Ok(Ok(stats)) => {
                results.insert(st.index, stats);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "stream failed"),
            Err(e) => tracing::error!(error = %e, "stream task failed"),
        }
        if let Ok(mut p) = shared.ports.lock() {
            p.release(st.port);
        }
    }
    meta.status = status.into();
    meta.ended_at = ended_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    meta.duration_ms = end.saturating_duration_since(start).as_millis() as u64;
    for ps in &plan.streams {
        let stats = results.get(&ps.index).copied().unwrap_or_default();
        meta.streams.push(StreamMeta {
            label: ps.label.clone(),
            codec: ps
                .codec
                .as_ref()
                .map(|c| c.name.to_ascii_uppercase())
                .unwrap_or_else(|| "rejected".into()),
            participant_id: ps.participant_id.clone(),
            attribution: ps.attribution.map(str::to_string),
            packets_received: stats.packets_received,
            packets_lost: stats.packets_lost,
        });
        if let Some(file) = &ps.file {
            let bytes = std::fs::metadata(dir.join(file))
                .map(|m| m.len())
                .unwrap_or(0);
            meta.files.push(FileMeta {
                name: file.clone(),
                duration_ms: stats.samples_written * 1000 / RATE as u64,
                sample_rate: RATE,
                channels: 1,
                bytes,
            });
        }
    }
    if dir.join("metadata.xml").exists() {
        meta.metadata_file = Some("metadata.xml".into());
    }
    let published = tokio::task::spawn_blocking(move || {
        let id = meta.recording_id.clone();
        match shared.drop.publish(&mut meta) {
            Ok(path) => {
                tracing::info!(recording_id = %id, path = %path.display(), "recording published");
                shared.health.recordings_published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(recording_id = %id, error = %e, "publishing failed; the recording stays in .incoming");
                return;
            }
        }
        let guard = shared.index.lock();
        match guard.as_deref() {
            Ok(Some(index)) => {
                if let Err(e) = index.upsert(&meta) {
                    tracing::error!(recording_id = %id, error = %e, "indexing failed; run `srs reindex`");
                }
            }
            _ => tracing::warn!(recording_id = %id, "no index: recording is in the drop only"),
        }
    })
    .await;
    if let Err(e) = published {
        tracing::error!(error = %e, "publish task failed");
    }
}

/// Accepts SIP/TCP connections; each gets a reader and a writer task.
async fn accept_tcp(listener: TcpListener, tx: mpsc::UnboundedSender<TcpInput>) {
    let mut next: ConnId = 1;
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let id = next;
                next += 1;
                tokio::spawn(serve_tcp(stream, addr, id, tx.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIP/TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_tcp(
    stream: TcpStream,
    addr: SocketAddr,
    id: ConnId,
    tx: mpsc::UnboundedSender<TcpInput>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    if tx.send(TcpInput::Opened(id, out_tx)).is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                framer.push(&buf[..n]);
                loop {
                    match framer.next_message() {
                        Ok(Some(m)) => {
                            if tx.send(TcpInput::Message(id, addr, m)).is_err() {
                                break 'read;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "closing SIP/TCP connection");
                            break 'read;
                        }
                    }
                }
            }
        }
    }
    let _ = tx.send(TcpInput::Closed(id));
    writer.abort();
}
