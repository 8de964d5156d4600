//! The thin tokio layer: owns the SIP sockets (UDP, TCP, TLS), the timer, the
//! RTP sockets and their tasks, and publishing. All protocol decisions are
//! taken by [`SipCore`]; this module only moves bytes and time in and out.
//!
//! One task owns the core and the SIP UDP socket; each TCP or TLS
//! connection has a reader task (framing by Content-Length) and a writer
//! task. Recorded streams live in the media reactor's threads. A finished
//! session's task stops its streams; stereo/Opus files are made by the
//! encoder threads; the publisher thread puts recordings into the drop and
//! then the index, in batches.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::Format;
use crate::config::{Config, PortRange};
use crate::http::{self, Health};
use crate::media::reactor::{Reactor, SourcePolicy, StreamCtl};
use crate::media::recorder::{StreamRecorder, StreamSpec};
use crate::plan::MediaPlan;
use crate::recording::RecordingMeta;
use crate::session::{crypto_answer, stream_spec, LineAction, Session, StreamReport, StreamSlot};
use crate::sip::conns::{Admission, ConnTable, Limits, LogEvery, Why};
use crate::sip::core::{ConnId, CoreConfig, EndReason, Event, Peer, SessionId, SipCore, Transport};
use crate::sip::message::{FramingError, StreamFramer};
use crate::sip::overload::{Episode, Overload};
use crate::siprec::sdp::{AnswerMedia, SdpOffer};
use crate::siprec::RecordingOffer;
use crate::store::{FileDrop, IndexWriter};

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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Http(#[from] crate::http::SetupError),
}

/// Addresses actually bound (ports may have been 0 in the config).
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub sip: SocketAddr,
    pub http: SocketAddr,
    /// SIP over TLS, when configured.
    pub tls: Option<SocketAddr>,
}

/// Even/odd RTP/RTCP port pairs from the configured range, handed out at
/// random among the free ones: ports handed out in order are easy to guess
/// for whoever wants to spray the next stream's port before its media
/// starts. A random index into the free list and `swap_remove`: O(1) per
/// allocation, whatever the range.
#[derive(Debug)]
struct PortPool {
    lo: u16,
    /// Even ports of the free pairs, in no particular order.
    free: Vec<u16>,
    /// Per pair ((port - lo) / 2): handed out and not released yet.
    used: Vec<bool>,
}

impl PortPool {
    fn new(r: PortRange) -> Self {
        let lo = u32::from(r.lo) + u32::from(r.lo % 2);
        // An even port whose odd neighbour is in the range too.
        let free: Vec<u16> = (lo..u32::from(r.hi)).step_by(2).map(|p| p as u16).collect();
        PortPool {
            lo: lo.min(u32::from(u16::MAX)) as u16,
            used: vec![false; free.len()],
            free,
        }
    }

    /// Binds an RTP socket on an even port and RTCP on the next one.
    fn bind_pair(&mut self, ip: IpAddr) -> Option<(std::net::UdpSocket, std::net::UdpSocket, u16)> {
        self.take(|port| {
            let rtp = std::net::UdpSocket::bind((ip, port)).ok()?;
            let rtcp = std::net::UdpSocket::bind((ip, port + 1)).ok()?;
            rtp.set_nonblocking(true).ok()?;
            rtcp.set_nonblocking(true).ok()?;
            Some((rtp, rtcp, port))
        })
    }

    /// Hands out a random free pair for which `bind` succeeds. A pair that
    /// cannot be bound (another process holds a port now) stays free.
    fn take<T>(&mut self, mut bind: impl FnMut(u16) -> Option<T>) -> Option<T> {
        use rand::Rng;
        let mut rng = rand::rng();
        // free[..untried] are the pairs not tried yet by this call.
        let mut untried = self.free.len();
        while untried > 0 {
            let i = rng.random_range(0..untried);
            let port = self.free[i];
            if let Some(t) = bind(port) {
                self.free.swap_remove(i);
                self.used[usize::from(port - self.lo) / 2] = true;
                return Some(t);
            }
            untried -= 1;
            self.free.swap(i, untried);
        }
        None
    }

    fn release(&mut self, port: u16) {
        let Some(i) = port.checked_sub(self.lo).map(|d| usize::from(d) / 2) else {
            return;
        };
        if self.used.get(i).copied() == Some(true) {
            self.used[i] = false;
            self.free.push(port);
        }
    }
}

/// A recorded stream, living in a media reactor shard.
struct StreamTask {
    id: u64,
    port: u16,
}

/// A session between INVITE and publication.
struct ActiveSession {
    session: Session,
    start: Instant,
    dir: PathBuf,
    media_ip: IpAddr,
    /// The recording client's signalling address: a stream's first source
    /// may come from it (`media.latch`).
    peer_ip: IpAddr,
    tasks: HashMap<usize, StreamTask>,
    /// false: a rule said not to record (answered inactive, no files).
    recorded: bool,
    /// Output formats (a rule may override `output.formats`).
    formats: Vec<Format>,
}

/// What connection tasks (TCP and TLS) tell the core task.
enum ConnInput {
    Opened(ConnId, mpsc::UnboundedSender<Bytes>),
    Message(ConnId, Transport, SocketAddr, Bytes),
    /// The head of a message over the size cap: answered 513, then the
    /// connection closes.
    Oversized(ConnId, Transport, SocketAddr, Bytes),
    Closed(ConnId),
}

/// The open TCP/TLS connections, shared by the accept tasks (caps), the
/// connection tasks (their clocks) and the core task (timeouts, dialogs).
/// Each entry's handle closes its connection.
type Conns = Arc<Mutex<ConnTable<Arc<Notify>>>>;

fn lock_conns(conns: &Conns) -> std::sync::MutexGuard<'_, ConnTable<Arc<Notify>>> {
    conns.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets a connection in the table however its task ends.
struct ConnGuard {
    conns: Conns,
    id: ConnId,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock_conns(&self.conns).closed(self.id);
    }
}

/// Raises the soft descriptor limit (RLIMIT_NOFILE) to the hard one: the
/// default soft limit (often 1,024) is far below what thousands of streams
/// need. Returns the limit in force.
fn raise_nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    if r.rlim_cur < r.rlim_max {
        let want = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            tracing::info!(
                from = r.rlim_cur,
                to = r.rlim_max,
                "raised the open-file limit"
            );
            r.rlim_cur = r.rlim_max;
        }
    }
    // The cap keeps RLIM_INFINITY sane.
    r.rlim_cur.min(1 << 30)
}

/// Is this OS error the process or the system out of descriptors?
fn out_of_descriptors(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EMFILE | libc::ENFILE))
}

/// A refused session's answer: code, reason phrase, Retry-After seconds.
type Refusal = (u16, &'static str, Option<u32>);

/// The answer to a session that cannot be stored, by the OS error: code,
/// reason and Retry-After. Descriptors and disk space come back; other
/// storage errors need an operator.
fn storage_refusal(errno: Option<i32>) -> Refusal {
    match errno {
        e if out_of_descriptors(e) => (503, "Out Of Descriptors", Some(10)),
        Some(libc::ENOSPC | libc::EDQUOT) => (503, "Insufficient Storage", Some(60)),
        _ => (500, "Cannot Store Recording", None),
    }
}

/// The OS error behind a drop error, if any.
fn drop_errno(e: &crate::store::DropError) -> Option<i32> {
    match e {
        crate::store::DropError::Io { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

/// Shared by the core task and the publishing tasks.
struct Shared {
    drop: FileDrop,
    ports: Mutex<PortPool>,
    health: Arc<Health>,
    config: Config,
    /// Makes the stereo/Opus files after calls.
    encoders: EncoderPool,
    /// The media threads.
    reactor: Reactor,
    /// To the publisher thread (which owns the index).
    publisher: std::sync::mpsc::Sender<PublishJob>,
    next_stream: std::sync::atomic::AtomicU64,
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
    // The index writer never fails the start: an unusable index is logged
    // and retried by the publisher thread, which owns it.
    let mut index = IndexWriter::open(config.index_path());
    // Recordings a crash left in .incoming are published first.
    index.index(crate::store::recover::recover_all(&FileDrop::new(
        root.clone(),
    )));
    let nofile = raise_nofile_limit();
    let rtp_ports = u64::from(config.media.rtp_ports.hi - config.media.rtp_ports.lo) + 1;
    let limits = Limits {
        head_timeout: Duration::from_secs(config.sip.connection_head_timeout),
        idle_timeout: Duration::from_secs(config.sip.connection_idle_timeout),
        per_source: config.sip.max_connections_per_source,
        max: match config.sip.max_connections {
            0 => crate::sip::conns::auto_max_connections(nofile, rtp_ports),
            n => n,
        },
    };
    tracing::info!(
        descriptors = nofile,
        max_connections = limits.max,
        max_connections_per_source = limits.per_source,
        "descriptor limit and SIP connection caps"
    );
    if nofile < 2 * rtp_ports + 1024 + limits.max as u64 {
        tracing::warn!(
            descriptors = nofile,
            rtp_ports,
            max_connections = limits.max,
            "the descriptor limit is below what media.rtp_ports (2 per port) and the connections \
             need: sessions get 503 Out Of Descriptors before the ports run out; raise LimitNOFILE \
             (systemd) or ulimit -Hn"
        );
    }
    let conns: Conns = Arc::new(Mutex::new(ConnTable::new(limits)));
    let sip_addr = config.sip.listen;
    let udp = UdpSocket::bind(sip_addr)
        .await
        .map_err(bind_error("SIP/UDP", sip_addr))?;
    let sip_bound = udp.local_addr().unwrap_or(sip_addr);
    // Room for bursts (capped by net.core.rmem_max; the kernel doubles it).
    set_recv_buffer(&udp, SIP_UDP_RCVBUF);
    let tcp = listen_stream(sip_bound)
        .await
        .map_err(bind_error("SIP/TCP", sip_bound))?;
    let tls = if config.tls.enabled() {
        let acceptor = TlsAcceptor::from(crate::tls::server_config(&config.tls)?);
        let listener = listen_stream(config.tls.listen)
            .await
            .map_err(bind_error("SIP/TLS", config.tls.listen))?;
        Some((listener, acceptor))
    } else {
        None
    };
    let tls_bound = tls
        .as_ref()
        .map(|(l, _)| l.local_addr().unwrap_or(config.tls.listen));
    // Access control and HTTPS of the API (docs/api.md), before listening.
    let api_setup = http::ApiSetup::prepare(&config)?;
    let http_listener = http::bind(config.http.listen)
        .await
        .map_err(bind_error("HTTP", config.http.listen))?;
    let http_bound = http_listener.local_addr().unwrap_or(config.http.listen);
    let health = Arc::new(Health::default());
    let (publish_tx, publish_rx) = std::sync::mpsc::channel();
    let shared = Arc::new(Shared {
        drop: FileDrop::new(root),
        ports: Mutex::new(PortPool::new(config.media.rtp_ports)),
        health: health.clone(),
        encoders: EncoderPool::start(config.output.encoders).map_err(|source| {
            ServerError::Drop {
                path: PathBuf::from("encoder threads"),
                source,
            }
        })?,
        reactor: Reactor::start(config.media.threads()).map_err(|source| ServerError::Drop {
            path: PathBuf::from("media reactor"),
            source,
        })?,
        next_stream: std::sync::atomic::AtomicU64::new(1),
        config: config.clone(),
        publisher: publish_tx,
    });
    {
        let (drop, health) = (shared.drop.clone(), health.clone());
        std::thread::Builder::new()
            .name("srs-publisher".into())
            .spawn(move || publisher(drop, index, health, publish_rx))
            .map_err(|source| ServerError::Drop {
                path: PathBuf::from("publisher thread"),
                source,
            })?;
    }
    tracing::info!(sip = %sip_bound, tls = ?tls_bound, mutual_tls = config.tls.client_ca.is_some(),
        http = %http_bound, rtp_ports = %config.media.rtp_ports,
        recordings = %config.storage.recordings.display(), "srs listening (SIP over UDP and TCP, and TLS when configured)");
    if let (Ok(local), Ok(reserved)) = (
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range"),
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports"),
    ) {
        let n = config.media.rtp_ports.ephemeral_overlap(&local, &reserved);
        if n > 0 {
            tracing::warn!(rtp_ports = %config.media.rtp_ports, ephemeral = local.trim(), ports = n,
                "part of the RTP range is in the kernel's ephemeral range: outgoing sockets may take \
                 those ports; move media.rtp_ports or add them to net.ipv4.ip_local_reserved_ports");
        }
    }
    on_bound(Bound {
        sip: sip_bound,
        http: http_bound,
        tls: tls_bound,
    });

    // The API on a thread and runtime of its own (http::spawn): its load
    // never runs on this runtime's threads, where the SIP task and the
    // publishing tasks run, nor queues in its blocking pool.
    let api = http::ApiState::new(health.clone(), api_setup)?;
    http::spawn(
        http_listener,
        api,
        config.http.index_connections,
        shutdown.clone(),
    )
    .map_err(|source| ServerError::Drop {
        path: PathBuf::from("HTTP thread"),
        source,
    })?;

    let (conn_tx, conn_rx) = mpsc::unbounded_channel();
    let conn_ids = Arc::new(std::sync::atomic::AtomicU64::new(1));
    tokio::spawn(accept_streams(
        tcp,
        None,
        conn_ids.clone(),
        conn_tx.clone(),
        conns.clone(),
    ));
    if let Some((listener, acceptor)) = tls {
        tokio::spawn(accept_streams(
            listener,
            Some(acceptor),
            conn_ids,
            conn_tx,
            conns.clone(),
        ));
    }

    let core = SipCore::new(CoreConfig {
        max_sessions: config.sip.max_sessions,
        sip_port: sip_bound.port(),
        tls_port: tls_bound.map(|a| a.port()),
        answer_delay: Duration::from_millis(config.sip.answer_delay_ms),
        ringing: config.sip.ringing,
        session_expires: Duration::from_secs(config.sip.session_expires),
        min_se: Duration::from_secs(config.sip.min_se),
        allow: crate::net::Cidr::parse_list(&config.sip.allow),
        rate_limit: config.sip.rate_limit,
        max_streams: config.sip.max_streams,
        reoffer_rate: config.sip.reoffers_per_second,
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
        routes: HashMap::new(),
        overload: Overload::default(),
        conn_table: conns,
        conn_log: LogEvery::new(Duration::from_secs(10)),
        conn_closed: [0; 2],
    };
    lp.run(conn_rx, &mut shutdown).await;
    Ok(())
}

struct CoreLoop {
    core: SipCore,
    udp: UdpSocket,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Bytes>>,
    sessions: HashMap<SessionId, ActiveSession>,
    publishing: JoinSet<()>,
    shared: Arc<Shared>,
    /// Our address towards each client IP (one routing lookup per client,
    /// not per session).
    routes: HashMap<IpAddr, IpAddr>,
    /// Whether the SIP input is queueing up (new sessions refused).
    overload: Overload,
    /// The open TCP/TLS connections and their clocks.
    conn_table: Conns,
    /// Connections closed for their head and idle timeouts, logged at
    /// most once per 10 s.
    conn_log: LogEvery,
    conn_closed: [u64; 2],
}

/// SIP datagrams read per wake-up at most.
const SIP_DRAIN: usize = 256;
/// SO_RCVBUF asked for the SIP/UDP socket.
const SIP_UDP_RCVBUF: usize = 4 << 20;

/// Pending connections the kernel may queue for the SIP/TCP and TLS
/// listeners (capped by net.core.somaxconn). tokio's default, 128, made
/// connections from a burst (an SBC failing over, a flood) wait a full
/// SYN retransmission (1 s) each time the queue overflowed.
const STREAM_BACKLOG: u32 = 4096;

/// A TCP listener with a deep accept queue.
async fn listen_stream(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(STREAM_BACKLOG)
}

/// The error for a socket that cannot be bound: what it was for, where.
fn bind_error(what: &'static str, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Bind { what, addr, source }
}

fn set_recv_buffer(sock: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt reads `v` (a c_int, size given) on a descriptor
    // `sock` owns.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "SO_RCVBUF on the SIP socket");
    }
}

impl CoreLoop {
    async fn run(
        &mut self,
        mut conn_rx: mpsc::UnboundedReceiver<ConnInput>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 65_535];
        // Set once a shutdown was asked for: the exit deadline.
        let mut leaving: Option<tokio::time::Instant> = None;
        let mut disk_check = tokio::time::interval(Duration::from_secs(1));
        let mut low_space = false;
        // The connection timeouts are checked a few times per timeout.
        let limits = lock_conns(&self.conn_table).limits();
        let mut conn_sweep = tokio::time::interval(
            (limits.head_timeout.min(limits.idle_timeout) / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(1)),
        );
        loop {
            let timeout = self.core.poll_timeout();
            let sleep = tokio::time::sleep_until(
                timeout
                    .map(tokio::time::Instant::from_std)
                    .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600)),
            );
            let deadline =
                leaving.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok((n, addr)) => {
                        // What else is queued, read now: its depth says
                        // whether new sessions can be taken.
                        let mut queued = vec![(Bytes::copy_from_slice(&buf[..n]), addr)];
                        while queued.len() < SIP_DRAIN {
                            match self.udp.try_recv_from(&mut buf) {
                                Ok((n, addr)) => queued.push((Bytes::copy_from_slice(&buf[..n]), addr)),
                                Err(_) => break,
                            }
                        }
                        self.set_behind(queued.len().max(conn_rx.len()));
                        for (data, addr) in queued {
                            let peer = Peer { transport: Transport::Udp, addr, conn: None };
                            self.core.handle_input(Instant::now(), peer, &data);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "SIP/UDP receive error"),
                },
                Some(input) = conn_rx.recv() => match input {
                    ConnInput::Opened(id, tx) => { self.conns.insert(id, tx); }
                    ConnInput::Closed(id) => { self.conns.remove(&id); }
                    ConnInput::Message(id, transport, addr, data) => {
                        self.set_behind(conn_rx.len() + 1);
                        let peer = Peer { transport, addr, conn: Some(id) };
                        self.core.handle_input(Instant::now(), peer, &data);
                    }
                    ConnInput::Oversized(id, transport, addr, head) => {
                        let peer = Peer { transport, addr, conn: Some(id) };
                        self.core.handle_oversized(Instant::now(), peer, &head);
                    }
                },
                _ = sleep, if timeout.is_some() => self.core.handle_timeout(Instant::now()),
                _ = shutdown.wait_for(|s| *s), if leaving.is_none() => {
                    let ids = self.core.sessions();
                    tracing::info!(active = ids.len(), "shutting down: new sessions get 503, active ones end with BYE");
                    self.core.drain();
                    for id in ids {
                        self.core.terminate(Instant::now(), id);
                    }
                    leaving = Some(tokio::time::Instant::now()
                        + Duration::from_secs(self.shared.config.sip.shutdown_timeout));
                }
                // Finished publishing tasks are reaped as they end: a JoinSet
                // keeps each finished task (its whole future's memory) until
                // joined, which grew the heap by ~3 KB per call (soak).
                _ = self.publishing.join_next(), if !self.publishing.is_empty() => {}
                _ = conn_sweep.tick() => self.sweep_conns(),
                _ = disk_check.tick() => {
                    let min = self.shared.config.storage.min_free_mb * 1024 * 1024;
                    if let Some(free) = free_bytes(&self.shared.config.storage.recordings) {
                        if !low_space && free < min {
                            low_space = true;
                            let ids = self.core.sessions();
                            tracing::error!(free_mb = free / 1048576, active = ids.len(),
                                "low disk space: new sessions get 503, running recordings are ended and published");
                            self.core.set_low_space(true);
                            for id in ids {
                                self.core.terminate(Instant::now(), id);
                            }
                        } else if low_space && free > min + min / 5 {
                            low_space = false;
                            tracing::info!(free_mb = free / 1048576, "disk space back: accepting sessions again");
                            self.core.set_low_space(false);
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline), if leaving.is_some() => {
                    tracing::error!(left = self.publishing.len(),
                        "shutdown deadline reached: unfinished recordings stay in .incoming and are recovered at the next start");
                    return;
                }
            }
            self.flush().await;
            if leaving.is_some() && self.sessions.is_empty() && self.publishing.is_empty() {
                tracing::info!("every recording published: exiting");
                return;
            }
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

    /// Given how many SIP messages were queued at this wake-up: refuses
    /// new sessions while the server is behind, and logs each episode once
    /// (when it starts and when it ends).
    fn set_behind(&mut self, queued: usize) {
        let (behind, episode) = self.overload.observe(Instant::now(), queued);
        match episode {
            Some(Episode::Started { queued }) => tracing::warn!(
                queued,
                "SIP input is queueing up: new sessions get 503 Overloaded until it drains"
            ),
            Some(Episode::Ended { deepest, lasted }) => tracing::warn!(
                deepest,
                secs = format_args!("{:.1}", lasted.as_secs_f64()),
                "SIP input drained: new sessions accepted again"
            ),
            None => {}
        }
        self.core.set_overloaded(behind);
    }

    /// Closes the connections past their head or idle timeout, except
    /// those carrying a dialog.
    fn sweep_conns(&mut self) {
        let in_use = self.core.conns_in_use();
        let now = Instant::now();
        let (expired, open) = {
            let mut t = lock_conns(&self.conn_table);
            t.set_dialogs(&in_use);
            (t.expired(now), t.len())
        };
        for (_, close, why) in &expired {
            close.notify_one();
            self.conn_closed[usize::from(*why == Why::Idle)] += 1;
        }
        if !expired.is_empty() && self.conn_log.hit(now).is_some() {
            let [head, idle] = std::mem::take(&mut self.conn_closed);
            tracing::info!(
                head_timeout = head,
                idle_timeout = idle,
                open,
                "closed SIP connections that sent no complete message in time or sat idle without a dialog"
            );
        }
    }

    async fn transmit(&mut self, peer: Peer, payload: Bytes) {
        match (peer.transport, peer.conn) {
            (Transport::Tcp | Transport::Tls, Some(conn)) => match self.conns.get(&conn) {
                Some(tx) => {
                    let _ = tx.send(payload);
                    lock_conns(&self.conn_table).sent(Instant::now(), conn);
                }
                None => tracing::debug!(%peer.addr, "connection gone; message dropped"),
            },
            _ => {
                if let Err(e) = self.udp.send_to(&payload, peer.addr).await {
                    tracing::debug!(%peer.addr, error = %e, "SIP/UDP send failed");
                }
            }
        }
    }

    fn on_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Offered {
                session,
                peer,
                invite,
                offer,
            } => {
                let call_id = invite.call_id().unwrap_or_default().to_string();
                match self.start_session(peer, &invite, &offer) {
                    Ok((answers, active)) => {
                        let ip = active.media_ip;
                        if self.core.accept(now, session, ip, answers) {
                            tracing::info!(session, recording_id = %active.session.meta.recording_id,
                                %call_id, source = %peer.addr, streams = active.tasks.len(),
                                record_dn = ?active.session.meta.record_dn, "recording session started");
                            let m = &active.session.meta;
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
                                participants: offer_participants(&offer),
                                streams: active.tasks.len(),
                            };
                            if let Ok(mut a) = self.shared.health.active.lock() {
                                a.insert(session, info);
                            }
                            self.sessions.insert(session, active);
                        } else {
                            self.abandon(active);
                        }
                    }
                    Err((code, reason, retry_after)) => {
                        tracing::warn!(session, %call_id, code, reason, "cannot start recording");
                        self.core
                            .reject_retry_after(now, session, code, reason, retry_after);
                    }
                }
            }
            Event::Reoffered {
                session,
                sdp,
                metadata_xml,
            } => {
                if let Some(xml) = metadata_xml {
                    self.on_metadata(session, &xml);
                }
                match self.reoffer(session, &sdp) {
                    Some((ip, answers)) => {
                        self.core.accept(now, session, ip, answers);
                    }
                    None => self.core.reject(now, session, 500, "Server Internal Error"),
                }
            }
            Event::Confirmed { session } => tracing::debug!(session, "ACK received"),
            Event::Updated {
                session,
                metadata_xml,
            } => self.on_metadata(session, &metadata_xml),
            Event::Refreshed { session } => tracing::debug!(session, "session refreshed"),
            Event::Ended {
                session,
                reason,
                metadata_xml,
            } => {
                if let Some(xml) = metadata_xml {
                    self.on_metadata(session, &xml);
                }
                if let Ok(mut a) = self.shared.health.active.lock() {
                    a.remove(&session);
                }
                if let Some(s) = self.sessions.remove(&session) {
                    let status = match reason {
                        EndReason::Bye | EndReason::Local => "complete",
                        EndReason::SessionExpired => "complete-session-expired",
                        EndReason::AckTimeout => "complete-no-ack",
                        EndReason::Cancelled => "cancelled",
                    };
                    tracing::info!(session, ?reason, recording_id = %s.session.meta.recording_id,
                        "recording session ended");
                    if status == "cancelled" {
                        // Never answered: nothing may stay behind, even if
                        // the process dies before its streams are stopped.
                        self.abandon(s);
                    } else {
                        self.finish(s, now, status);
                    }
                }
            }
        }
    }

    /// Keeps the raw update beside the recording, merges it, and asks for a
    /// full snapshot when a partial update has nothing to apply to.
    fn on_metadata(&mut self, session: SessionId, xml: &str) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if let Some(name) = s.session.keep_update(xml.len()) {
            if let Err(e) = std::fs::write(s.dir.join(&name), xml) {
                tracing::warn!(error = %e, "cannot keep metadata update");
            }
        }
        let need_snapshot = s.session.apply_metadata(Utc::now(), xml);
        let _ = crate::store::recover::write_incoming(&s.dir, &s.session.snapshot());
        if need_snapshot {
            tracing::info!(
                session,
                "partial metadata without a snapshot: requesting one"
            );
            self.core
                .request_snapshot(Instant::now(), session, "SRS has no metadata snapshot");
        }
    }

    /// Applies a re-offer: existing streams keep their ports (codec and
    /// pause changes go to their tasks), new recordable lines get a port and
    /// a recorder. Returns the answer.
    fn reoffer(
        &mut self,
        session: SessionId,
        sdp: &SdpOffer,
    ) -> Option<(IpAddr, Vec<AnswerMedia>)> {
        let bind = self.shared.config.media.bind;
        let s = self.sessions.get_mut(&session)?;
        if !s.recorded {
            return Some((s.media_ip, unrecorded_answers(sdp)));
        }
        let mut answers = vec![AnswerMedia::recv(None); sdp.media.len()];
        for action in s.session.reoffer(Utc::now(), sdp) {
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
                    let label = sdp.media[index]
                        .label
                        .clone()
                        .unwrap_or_else(|| format!("m{index}"));
                    let spec = stream_spec(&sdp.media[index]);
                    let spec_used = spec.clone();
                    let expected = sdp.media[index].connection;
                    match spawn_stream(
                        &self.shared,
                        bind,
                        &s.dir,
                        &file,
                        spec,
                        s.start,
                        &s.formats,
                        expected,
                        s.peer_ip,
                    ) {
                        Ok(task) => {
                            answers[index] = AnswerMedia {
                                port: Some(task.port),
                                inactive: false,
                                crypto: crypto_answer(&spec_used),
                            };
                            let participant_id = s
                                .session
                                .metadata
                                .as_ref()
                                .and_then(|m| m.sender_of_label(&label))
                                .map(|p| p.id.clone());
                            s.session.add_stream(StreamSlot {
                                srtp: spec_used.srtp.is_some(),
                                index,
                                label,
                                codec,
                                file,
                                port: task.port,
                                paused: false,
                                attribution: participant_id.as_ref().map(|_| "metadata"),
                                participant_id,
                            });
                            s.tasks.insert(index, task);
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot record an added stream"),
                    }
                }
                LineAction::Reject { .. } => {}
            }
        }
        Some((s.media_ip, answers))
    }

    /// Allocates the recording directory and media sockets and starts the
    /// stream tasks. On failure everything allocated is released.
    fn start_session(
        &mut self,
        peer: Peer,
        invite: &crate::sip::message::Message,
        offer: &RecordingOffer,
    ) -> Result<(Vec<AnswerMedia>, ActiveSession), Refusal> {
        let call_id = invite.call_id().unwrap_or_default();
        let cfg = &self.shared.config;
        // Who and what this call is, and under which DN it is filed.
        let correlation = crate::genesys::correlation(invite, offer.metadata.as_ref());
        let directory = crate::genesys::Directory::new(&cfg.directory);
        let direction = crate::genesys::direction(&correlation, &directory);
        let user_agent = invite
            .header("User-Agent")
            .or_else(|| invite.header("Server"))
            .unwrap_or_default();
        let filing = crate::genesys::file(
            &cfg.rules,
            &cfg.directory,
            &crate::genesys::Facts {
                correlation: &correlation,
                direction,
                source: Some(peer.addr.ip()),
                user_agent,
            },
        );
        let recording_id = uuid::Uuid::now_v7().to_string();
        let media_ip = match self.routes.get(&peer.addr.ip()) {
            Some(ip) => *ip,
            None => {
                let ip = media_ip(cfg.media.advertised_address, cfg.media.bind, peer.addr);
                if self.routes.len() >= 4096 {
                    self.routes.clear();
                }
                self.routes.insert(peer.addr.ip(), ip);
                ip
            }
        };
        let meta = RecordingMeta {
            recording_id,
            call_id: call_id.to_string(),
            status: "recording".into(),
            started_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            source: peer.addr.to_string(),
            transport: peer.transport.as_str().into(),
            metadata_file: offer.metadata_xml.as_ref().map(|_| "metadata.xml".into()),
            record_dn: filing.record_dn.clone(),
            record_dn_kind: filing.record_dn_kind.clone(),
            geo_location: filing.geo_location.clone(),
            direction: Some(filing.direction.clone()),
            rule: filing.rule.clone(),
            correlation,
            ..RecordingMeta::default()
        };
        let plan = MediaPlan::from_offer(offer);
        let limits = crate::session::Limits::of(&cfg.sip);
        let formats = filing
            .formats
            .clone()
            .unwrap_or_else(|| cfg.output.formats.clone());
        if !filing.record {
            tracing::info!(%call_id, rule = ?filing.rule, "a rule says not to record: answered inactive, no files");
            let active = ActiveSession {
                session: Session::new(meta, offer, &plan).with_limits(limits),
                start: Instant::now(),
                dir: PathBuf::new(),
                media_ip,
                peer_ip: peer.addr.ip(),
                tasks: HashMap::new(),
                recorded: false,
                formats,
            };
            return Ok((unrecorded_answers(&offer.sdp), active));
        }
        let dir = self
            .shared
            .drop
            .create_incoming(&meta.recording_id)
            .map_err(|e| {
                tracing::error!(error = %e, "cannot create recording directory");
                storage_refusal(drop_errno(&e))
            })?;
        let bind = cfg.media.bind;
        let start = Instant::now();
        let mut active = ActiveSession {
            session: Session::new(meta, offer, &plan).with_limits(limits),
            start,
            dir,
            media_ip,
            peer_ip: peer.addr.ip(),
            tasks: HashMap::new(),
            recorded: true,
            formats,
        };
        // The first writes must succeed, or the session is refused and
        // leaves nothing: a 200 OK promises a recording.
        if let Some(xml) = &offer.metadata_xml {
            if let Err(e) = std::fs::write(active.dir.join("metadata.xml"), xml) {
                tracing::error!(error = %e, "cannot keep the metadata XML: session refused");
                self.abandon(active);
                return Err(storage_refusal(e.raw_os_error()));
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
            let spec_used = stream_spec(m);
            match spawn_stream(
                &self.shared,
                bind,
                &active.dir,
                file,
                spec_used.clone(),
                start,
                &active.formats,
                m.connection,
                peer.addr.ip(),
            ) {
                Ok(task) => {
                    answers[ps.index] = AnswerMedia {
                        port: Some(task.port),
                        inactive: false,
                        crypto: crypto_answer(&spec_used),
                    };
                    if offer
                        .sdp
                        .media
                        .get(ps.index)
                        .is_some_and(crate::session::is_paused)
                    {
                        self.shared.reactor.ctl(task.id, StreamCtl::Paused(true));
                    }
                    active.session.add_stream(StreamSlot {
                        srtp: spec_used.srtp.is_some(),
                        index: ps.index,
                        label: ps.label.clone(),
                        codec: codec.clone(),
                        file: file.clone(),
                        port: task.port,
                        paused: offer
                            .sdp
                            .media
                            .get(ps.index)
                            .is_some_and(crate::session::is_paused),
                        participant_id: ps.participant_id.clone(),
                        attribution: ps.attribution,
                    });
                    active.tasks.insert(ps.index, task);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a stream: session refused");
                    self.abandon(active);
                    return Err(e.refusal());
                }
            }
        }
        if let Err(e) =
            crate::store::recover::write_incoming(&active.dir, &active.session.snapshot())
        {
            tracing::error!(error = %e, "cannot write incoming.json: session refused");
            self.abandon(active);
            return Err(storage_refusal(e.raw_os_error()));
        }
        Ok((answers, active))
    }

    /// A session refused (or cancelled) before its answer: its directory is
    /// removed now (nothing may be left in `.incoming`, even if the process
    /// dies next), its streams are stopped in the background.
    fn abandon(&mut self, active: ActiveSession) {
        if active.recorded {
            remove_incoming(&active.dir);
        }
        self.finish(active, Instant::now(), "failed");
    }

    /// Stops the streams and publishes the recording in the background.
    fn finish(&mut self, s: ActiveSession, end: Instant, status: &'static str) {
        let shared = self.shared.clone();
        let ended_at = Utc::now();
        self.publishing
            .spawn(publish(shared, s, end, ended_at, status));
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

/// Removes a refused session's directory (gone already is fine).
fn remove_incoming(dir: &std::path::Path) -> bool {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a refused session's directory yet");
            false
        }
    }
}

/// Why a stream could not be started.
#[derive(Debug, thiserror::Error)]
enum StreamStartError {
    #[error("no free media port")]
    NoPort,
    #[error("no file descriptor left for the media sockets")]
    NoDescriptors,
    #[error(transparent)]
    File(#[from] crate::media::recorder::RecorderError),
}

impl StreamStartError {
    /// The SIP answer: which resource ran out, and when to retry.
    fn refusal(&self) -> Refusal {
        match self {
            StreamStartError::NoPort => (503, "No Media Port Available", Some(5)),
            StreamStartError::NoDescriptors => storage_refusal(Some(libc::EMFILE)),
            StreamStartError::File(e) => storage_refusal(e.os_error()),
        }
    }
}

/// Binds a port pair, creates the file and starts the receiving task.
#[allow(clippy::too_many_arguments)]
fn spawn_stream(
    shared: &Shared,
    bind: IpAddr,
    dir: &std::path::Path,
    file: &str,
    spec: StreamSpec,
    start: Instant,
    formats: &[Format],
    expected: Option<IpAddr>,
    peer_ip: IpAddr,
) -> Result<StreamTask, StreamStartError> {
    let pair = shared.ports.lock().ok().and_then(|mut p| p.bind_pair(bind));
    let Some((rtp_sock, rtcp_sock, port)) = pair else {
        // Every port failed to bind: taken, or no descriptor to make a
        // socket with (then say so, not "no port").
        return Err(match std::net::UdpSocket::bind((bind, 0)) {
            Err(e) if out_of_descriptors(e.raw_os_error()) => StreamStartError::NoDescriptors,
            _ => StreamStartError::NoPort,
        });
    };
    let ogg = (spec.has(&crate::media::codec::CodecKind::Opus)
        && formats.contains(&Format::OggOpus))
    .then(|| dir.join(opus_name(file)));
    let recorder = match StreamRecorder::create(&dir.join(file), spec, start, ogg.as_deref()) {
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
    let sdp_ip = expected.filter(|ip| !ip.is_unspecified());
    let source = match (media.latch, sdp_ip) {
        (false, Some(ip)) => SourcePolicy::Ip(ip.to_canonical()),
        _ if media.latch_any_source => SourcePolicy::latch_any(),
        // The SDP's address and the client's own; either may be 0.0.0.0.
        _ => SourcePolicy::latch_from(sdp_ip.unwrap_or(peer_ip), peer_ip),
    };
    shared
        .reactor
        .add(id, rtp_sock, rtcp_sock, recorder, source);
    Ok(StreamTask { id, port })
}

/// `alice-1.wav` -> `alice-1.opus`.
fn opus_name(wav: &str) -> String {
    format!("{}.opus", wav.strip_suffix(".wav").unwrap_or(wav))
}

/// Ends the stream tasks, describes the files, publishes into the drop and
/// then indexes. The drop comes first: an index failure never loses audio.
/// A session cancelled before its answer leaves nothing behind.
async fn publish(
    shared: Arc<Shared>,
    s: ActiveSession,
    end: Instant,
    ended_at: DateTime<Utc>,
    status: &'static str,
) {
    let ActiveSession {
        session,
        start,
        dir,
        tasks,
        recorded,
        formats,
        ..
    } = s;
    if !recorded {
        return;
    }
    let dir: PathBuf = dir;
    let (end, ended_at) = if status == "complete-no-ack" {
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
    let mut reports = std::collections::BTreeMap::new();
    for (index, t) in tasks {
        let stats = match shared.reactor.stop(t.id, end).await {
            Ok(Ok(stats)) => Some(stats),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "stream failed");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "media thread gone");
                None
            }
        };
        if let Some(stats) = stats {
            reports.insert(
                index,
                StreamReport {
                    stats,
                    ..StreamReport::default()
                },
            );
        }
        if let Ok(mut p) = shared.ports.lock() {
            p.release(t.port);
        }
    }
    if status == "cancelled" || status == "failed" {
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
    for slot in session.streams.values() {
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
            tracing::warn!(recording_id = %session.meta.recording_id, file = %slot.file, error = %e,
                seconds = r.stats.samples_written / u64::from(r.stats.sample_rate.max(1)),
                "published truncated: a stream stopped recording early");
        }
    }
    let duration_ms = end.saturating_duration_since(start).as_millis() as u64;
    let mut meta = session.finish(ended_at, duration_ms, status, &reports);
    // Stereo and Opus files: made now, off the packet path, by the
    // encoder threads (bounded, and at a lower CPU priority than the media
    // threads, so encoding lags under load instead of costing packets).
    let mut out_cfg = shared.config.output.clone();
    out_cfg.formats = formats;
    let meta = if out_cfg.formats.iter().all(|f| *f == Format::Wav) {
        meta // the mono WAVs are the output: nothing to make
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        shared.encoders.run(Box::new(move || {
            make_outputs(&out_cfg, &dir, &mut meta);
            let _ = tx.send(meta);
        }));
        match rx.await {
            Ok(meta) => meta,
            Err(_) => {
                tracing::error!("an encoder thread failed; the recording stays in .incoming");
                return;
            }
        }
    };
    // Into the drop, then the index: by the publisher thread, in batches.
    let (done, published) = tokio::sync::oneshot::channel();
    let queued = shared.publisher.send(PublishJob { meta, done }).is_ok();
    if !queued || published.await.is_err() {
        tracing::error!("the publisher thread is gone; the recording stays in .incoming");
    }
}

/// Work for the encoder threads.
type EncodeJob = Box<dyn FnOnce() + Send>;

/// The threads that make stereo and Opus files after calls: `n` of them,
/// each at nice 10, so that on a saturated machine the media threads
/// (nice 0) always run first and encoding finishes later instead.
struct EncoderPool {
    tx: std::sync::mpsc::Sender<EncodeJob>,
}

impl EncoderPool {
    fn start(n: usize) -> std::io::Result<EncoderPool> {
        let (tx, rx) = std::sync::mpsc::channel::<EncodeJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("srs-encoder-{i}"))
                .spawn(move || {
                    // SAFETY: plain syscalls on the calling thread; a
                    // failure only leaves the thread at normal priority.
                    unsafe {
                        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
                    }
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panic loses that recording's extra files
                            // (its caller is told), never the thread.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return, // the server is gone
                        }
                    }
                })?;
        }
        Ok(EncoderPool { tx })
    }

    fn run(&self, job: EncodeJob) {
        if self.tx.send(job).is_err() {
            tracing::error!("no encoder thread left");
        }
    }
}

/// A finished recording for the publisher thread.
struct PublishJob {
    meta: RecordingMeta,
    /// Told once the recording is published (or failed to be).
    done: tokio::sync::oneshot::Sender<()>,
}

/// Most recordings published together.
const PUBLISH_BATCH: usize = 256;

/// While recordings wait for an unusable index, how often it is retried
/// when nothing new is published.
const INDEX_RETRY: Duration = Duration::from_secs(5);

/// The publisher thread: takes every recording waiting, publishes them into
/// the drop as one group commit ([`FileDrop::publish_batch`]: two
/// `syncfs(2)` per batch instead of a dozen fsyncs per recording), then
/// indexes the published ones in one transaction. While a batch is being
/// made durable the next one gathers, so the cost per recording falls as
/// the rate rises. The drop comes first: an index failure never loses audio,
/// and the [`IndexWriter`] keeps what the index could not take until it can
/// (retried every [`INDEX_RETRY`]), and follows the index file at its path
/// if it is deleted or replaced. It has its own connection, and the
/// API's readers never run on this thread.
fn publisher(
    drop: FileDrop,
    mut index: IndexWriter,
    health: Arc<Health>,
    rx: std::sync::mpsc::Receiver<PublishJob>,
) {
    loop {
        let first = if index.pending() > 0 {
            match rx.recv_timeout(INDEX_RETRY) {
                Ok(j) => j,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    index.index(Vec::new());
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(j) => j,
                Err(_) => break,
            }
        };
        let mut jobs = vec![first];
        while jobs.len() < PUBLISH_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut metas: Vec<RecordingMeta> = jobs
            .iter_mut()
            .map(|j| std::mem::take(&mut j.meta))
            .collect();
        let results = drop.publish_batch(&mut metas);
        let mut published = Vec::with_capacity(metas.len());
        for (r, meta) in results.into_iter().zip(metas) {
            let id = &meta.recording_id;
            match r {
                Ok(path) => {
                    tracing::info!(recording_id = %id, path = %path.display(), "recording published");
                    health.recordings_published.fetch_add(1, Ordering::Relaxed);
                    published.push(meta);
                }
                Err(e) => {
                    tracing::error!(recording_id = %id, error = %e, "publishing failed; the recording stays in .incoming");
                }
            }
        }
        index.index(published);
        for j in jobs {
            let _ = j.done.send(());
        }
    }
    if index.pending() > 0 {
        tracing::error!(
            recordings = index.pending(),
            "exiting with recordings published but not indexed: run `srs reindex`"
        );
    }
}

/// How long a TLS client may take over its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts SIP/TCP connections, or SIP/TLS ones when given an acceptor;
/// each gets a reader and a writer task. Each connection is admitted by the
/// table first (per-source and global caps); the connections it gives up
/// for a newcomer are closed, a refused one is closed at once. Failures
/// (EMFILE when descriptors run out) are logged once per 10 s with how
/// many were held back, never once per attempt.
async fn accept_streams(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ids: Arc<std::sync::atomic::AtomicU64>,
    tx: mpsc::UnboundedSender<ConnInput>,
    conns: Conns,
) {
    let kind = if tls.is_some() { "SIP/TLS" } else { "SIP/TCP" };
    let mut accept_log = LogEvery::new(Duration::from_secs(10));
    let mut cap_log = LogEvery::new(Duration::from_secs(10));
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let close = Arc::new(Notify::new());
                let now = Instant::now();
                let admission = lock_conns(&conns).admit(now, id, addr.ip(), close.clone());
                match admission {
                    Admission::Refused => {
                        if let Some(held) = cap_log.hit(now) {
                            tracing::warn!(%addr, held_back = held, transport = kind,
                                "connection refused: every connection carries a dialog at sip.max_connections");
                        }
                        continue; // `stream` is dropped: closed
                    }
                    Admission::Open(given_up) => {
                        for (_, h, why) in &given_up {
                            h.notify_one();
                            if let Some(held) = cap_log.hit(now) {
                                tracing::warn!(%addr, held_back = held, transport = kind, cap = why.as_str(),
                                    "connection cap reached: closing the least recently active connection without a dialog");
                            }
                        }
                    }
                }
                let guard = ConnGuard {
                    conns: conns.clone(),
                    id,
                };
                let _ = stream.set_nodelay(true);
                let tx = tx.clone();
                match &tls {
                    None => {
                        tokio::spawn(serve_stream(stream, Transport::Tcp, addr, tx, guard, close));
                    }
                    Some(acceptor) => {
                        let handshake = acceptor.accept(stream);
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake);
                            tokio::select! {
                                r = handshake => match r {
                                    Ok(Ok(s)) => {
                                        serve_stream(s, Transport::Tls, addr, tx, guard, close).await
                                    }
                                    Ok(Err(e)) => {
                                        tracing::warn!(%addr, error = %e, "SIP/TLS handshake failed")
                                    }
                                    Err(_) => tracing::warn!(%addr, "SIP/TLS handshake timed out"),
                                },
                                _ = close.notified() => {}
                            }
                        });
                    }
                }
            }
            Err(e) => {
                if let Some(held) = accept_log.hit(Instant::now()) {
                    let hint = if out_of_descriptors(e.raw_os_error()) {
                        "out of file descriptors: raise the limit or lower sip.max_connections"
                    } else {
                        "accept failed"
                    };
                    tracing::warn!(error = %e, held_back = held, transport = kind, "{hint}");
                }
                // The connection waits in the backlog; try again shortly.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads SIP messages framed by Content-Length from one connection and
/// writes what the core sends to it; reports its clocks to the table, and
/// ends when the table closes it (`close`).
async fn serve_stream<S>(
    stream: S,
    transport: Transport,
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<ConnInput>,
    guard: ConnGuard,
    close: Arc<Notify>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let id = guard.id;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    if tx.send(ConnInput::Opened(id, out_tx)).is_err() {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut answer_pending = false;
    'read: loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = close.notified() => break,
        };
        framer.push(&buf[..n]);
        let mut messages = 0;
        loop {
            match framer.next_message() {
                Ok(Some(m)) => {
                    messages += 1;
                    if tx.send(ConnInput::Message(id, transport, addr, m)).is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%addr, transport = transport.as_str(), error = %e,
                        "closing SIP connection");
                    if let FramingError::Oversized(head) = e {
                        // Answered 513 by the core through the writer,
                        // which then ends with the connection (below).
                        let _ = tx.send(ConnInput::Oversized(id, transport, addr, head));
                        answer_pending = true;
                    }
                    break 'read;
                }
            }
        }
        lock_conns(&guard.conns).received(Instant::now(), id, messages, framer.pending());
    }
    let _ = tx.send(ConnInput::Closed(id));
    if answer_pending {
        // The core drops its sender at Closed, after queueing the answer:
        // the writer ends once it has written it (or gives up quickly).
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    } else {
        writer.abort();
    }
    drop(guard);
}

/// The stereo WAV and Ogg Opus files asked for, from the mono WAVs; then
/// the mono WAVs removed if `wav` was not asked for. Failures are logged and
/// noted in the metadata error; the mono WAVs are never lost to them.
fn make_outputs(
    cfg: &crate::config::OutputConfig,
    dir: &std::path::Path,
    meta: &mut RecordingMeta,
) {
    use crate::media::{ogg_opus, stereo};
    use crate::recording::FileMeta;
    let mono: Vec<FileMeta> = meta
        .files
        .iter()
        .filter(|f| f.format == "wav")
        .cloned()
        .collect();
    let mut made_all = true;
    if cfg.formats.contains(&Format::StereoWav) {
        let (left, right) = stereo_sides(cfg, meta);
        let path_of = |f: &Option<FileMeta>| f.as_ref().map(|f| dir.join(&f.name));
        let (lp, rp) = (path_of(&left), path_of(&right));
        if lp.is_some() || rp.is_some() {
            match stereo::write_stereo(lp.as_deref(), rp.as_deref(), &dir.join("stereo.wav")) {
                Ok((duration_ms, rate)) => meta.files.push(FileMeta {
                    name: "stereo.wav".into(),
                    format: "stereo-wav".into(),
                    labels: [&left, &right]
                        .iter()
                        .map(|f| {
                            f.as_ref()
                                .and_then(|f| f.labels.first().cloned())
                                .unwrap_or_default()
                        })
                        .collect(),
                    duration_ms,
                    sample_rate: rate,
                    channels: 2,
                    bytes: std::fs::metadata(dir.join("stereo.wav"))
                        .map(|m| m.len())
                        .unwrap_or(0),
                }),
                Err(e) => {
                    made_all = false;
                    tracing::error!(error = %e, "stereo file failed");
                }
            }
        }
    }
    if cfg.formats.contains(&Format::OggOpus) {
        for f in &mono {
            let name = opus_name(&f.name);
            let path = dir.join(&name);
            let passed_through = path.exists();
            let duration_ms = if passed_through {
                Ok(f.duration_ms)
            } else {
                ogg_opus::encode_wav_to_ogg_opus(&dir.join(&f.name), &path, cfg.opus_bitrate)
            };
            match duration_ms {
                Ok(duration_ms) => meta.files.push(FileMeta {
                    name: name.clone(),
                    format: "ogg-opus".into(),
                    labels: f.labels.clone(),
                    duration_ms,
                    sample_rate: 48_000,
                    channels: 1,
                    bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                }),
                Err(e) => {
                    made_all = false;
                    tracing::error!(file = %f.name, error = %e, "Opus file failed");
                }
            }
        }
    }
    if !cfg.formats.contains(&Format::Wav) && made_all {
        for f in &mono {
            let _ = std::fs::remove_file(dir.join(&f.name));
        }
        meta.files.retain(|f| f.format != "wav");
        for p in &mut meta.participants {
            p.file = p.file.as_ref().and_then(|w| {
                meta.files
                    .iter()
                    .find(|f| f.format == "ogg-opus" && f.name == opus_name(w))
                    .map(|f| f.name.clone())
            });
        }
    }
}

/// The files of the left and right parties by the configured map: by
/// participant (metadata order), label or aor, never by arrival order.
fn stereo_sides(
    cfg: &crate::config::OutputConfig,
    meta: &RecordingMeta,
) -> (
    Option<crate::recording::FileMeta>,
    Option<crate::recording::FileMeta>,
) {
    let file_of = |label: &str| {
        meta.files
            .iter()
            .find(|f| f.format == "wav" && f.labels.iter().any(|l| l == label))
            .cloned()
    };
    // Each participant's first recorded stream, in metadata order.
    let mut parties: Vec<(Option<String>, crate::recording::FileMeta)> = Vec::new();
    for p in &meta.participants {
        if let Some(f) = p.labels.iter().find_map(|l| file_of(l)) {
            if !parties.iter().any(|(_, g)| g.name == f.name) {
                parties.push((p.aor.clone(), f));
            }
        }
    }
    // Streams nobody is known to send on, in m-line order.
    for f in meta.files.iter().filter(|f| f.format == "wav") {
        if !parties.iter().any(|(_, g)| g.name == f.name) {
            parties.push((None, f.clone()));
        }
    }
    let left_idx = match cfg.stereo_left.as_str() {
        "second" => 1,
        s if s.starts_with("label:") => {
            let l = &s["label:".len()..];
            parties
                .iter()
                .position(|(_, f)| f.labels.iter().any(|x| x == l))
                .unwrap_or(0)
        }
        s if s.starts_with("aor:") => {
            let a = &s["aor:".len()..];
            parties
                .iter()
                .position(|(aor, _)| aor.as_deref().is_some_and(|x| x.contains(a)))
                .unwrap_or(0)
        }
        _ => 0,
    };
    let left = parties.get(left_idx).map(|(_, f)| f.clone());
    let right = parties
        .iter()
        .enumerate()
        .find(|(i, _)| *i != left_idx)
        .map(|(_, (_, f))| f.clone());
    (left, right)
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

/// Free bytes (for unprivileged users) on the filesystem holding `path`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::PortPool;
    use crate::config::PortRange;

    #[test]
    fn rtp_ports_are_handed_out_at_random_and_every_pair_eventually() {
        // The default range: 10,000 pairs.
        let mut pool = PortPool::new(PortRange {
            lo: 10000,
            hi: 29999,
        });
        let t = std::time::Instant::now();
        let got: Vec<u16> = std::iter::from_fn(|| pool.take(Some)).collect();
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "O(1) each");
        let mut sorted = got.clone();
        sorted.sort_unstable();
        let all: Vec<u16> = (10000..29999).step_by(2).collect();
        assert_eq!(sorted, all, "every pair once, RTCP inside the range");
        let in_order = got.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(
            in_order < 50,
            "{in_order} of 9,999 steps were to the next pair"
        );
        assert_ne!(&got[..10], &all[..10]);
        // Released pairs come back (once, even if released twice).
        pool.release(got[7]);
        pool.release(got[7]);
        pool.release(9000); // not ours
        assert_eq!(pool.take(Some), Some(got[7]));
        assert_eq!(pool.take(Some), None);
    }

    #[test]
    fn a_pair_that_cannot_be_bound_stays_free() {
        let mut pool = PortPool::new(PortRange {
            lo: 20001,
            hi: 20008,
        });
        // 20002, 20004, 20006 (20008's RTCP would be outside).
        assert_eq!(pool.free.len(), 3);
        assert_eq!(pool.take(|p| (p == 20004).then_some(p)), Some(20004));
        assert_eq!(pool.take(|_| None::<u16>), None);
        let mut rest: Vec<u16> = std::iter::from_fn(|| pool.take(Some)).collect();
        rest.sort_unstable();
        assert_eq!(rest, [20002, 20006]);
    }
}
