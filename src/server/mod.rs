//! The IO layer: it only moves bytes and time. It owns the SIP sockets
//! (UDP, TCP, TLS), the timers and the threads, and calls into the modules
//! that decide: [`SipCore`] (every SIP decision), [`ConnTable`] (which
//! connections stay), [`Overload`] (refuse while behind), [`DiskGuard`]
//! (refuse while the drop is low on space), the session bookkeeping and
//! its [`lifecycle`](crate::session::lifecycle) (filing, refusals, status).
//!
//! [`Server::bind`] binds every socket and returns what it bound
//! ([`Server::bound`]); [`Server::run`] serves until shutdown. One task
//! owns the core and the SIP UDP socket (the core loop, here); TCP and TLS
//! connections have a reader and a writer task each ([`listeners`]).
//! Sessions are carried out by the session runner (`sessions.rs`): start-up files and sockets on
//! the blocking pool, recorded streams in the media reactor's threads
//! (`media::reactor`), metadata writes on the session writer thread
//! ([`writer`]), stereo/Opus files on the encoder threads
//! (`output::encoders`), publication on the publisher thread
//! (`store::publisher`). RTP ports come from the [`ports`] pool.
//!
//! [`ConnTable`]: crate::sip::conns::ConnTable

pub mod listeners;
mod os;
pub mod ports;
mod sessions;
pub mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::http::{self, Health};
use crate::media::reactor::Reactor;
use crate::output::encoders::EncoderPool;
use crate::sip::conns::{ConnTable, Limits, LogEvery, Why};
use crate::sip::core::{ConnId, CoreConfig, Event, Peer, SipCore, Transport};
use crate::sip::overload::{Episode, Overload};
use crate::store::disk_guard::{DiskGuard, SpaceEpisode};
use crate::store::publisher::Publisher;
use crate::store::{FileDrop, IndexWriter};
use listeners::{lock_conns, ConnInput, Conns};
use ports::PortPool;
use sessions::Sessions;
use writer::SessionWriter;

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
    #[error("cannot start the {what}: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Http(#[from] crate::http::SetupError),
    #[error(transparent)]
    Crypt(#[from] crate::store::crypt::CryptError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("[storage.object]: {0}")]
    Objects(#[from] crate::store::objects::ObjectError),
}

/// Addresses actually bound (ports may have been 0 in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub sip: SocketAddr,
    pub http: SocketAddr,
    /// SIP over TLS, when configured.
    pub tls: Option<SocketAddr>,
}

/// Shared by the core loop, the start-up jobs and the publishing tasks.
struct Shared {
    drop: FileDrop,
    ports: Mutex<PortPool>,
    health: Arc<Health>,
    config: Config,
    /// Makes the stereo/Opus files after calls.
    encoders: EncoderPool,
    /// The media threads.
    reactor: Reactor,
    /// The publisher thread (which owns the index).
    publisher: Publisher,
    /// Metadata updates and `incoming.json`, in order.
    writer: SessionWriter,
    next_stream: std::sync::atomic::AtomicU64,
    /// Encryption at rest of published audio (`[encryption] recipients`).
    encryptor: Option<Arc<crate::store::crypt::Encryptor>>,
    /// Issue 14: the events thread (webhook notifications).
    events: crate::events::worker::Events,
}

/// A server whose sockets are bound, not serving yet.
pub struct Server {
    config: Config,
    bound: Bound,
    udp: UdpSocket,
    tcp: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    http: TcpListener,
    /// Access control and HTTPS of the API, checked before listening.
    api: http::ApiSetup,
    index: IndexWriter,
    conns: Conns,
    encryptor: Option<Arc<crate::store::crypt::Encryptor>>,
}

/// SIP datagrams read per wake-up at most.
const SIP_DRAIN: usize = 256;
/// SO_RCVBUF asked for the SIP/UDP socket.
const SIP_UDP_RCVBUF: usize = 4 << 20;

/// The error for a socket that cannot be bound: what it was for, where.
fn bind_error(what: &'static str, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Bind { what, addr, source }
}

fn thread_error(what: &'static str) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Thread { what, source }
}

impl Server {
    /// Prepares the drop (recordings a crash left in `.incoming` are
    /// published first), raises the descriptor limit and binds every
    /// socket: SIP over UDP and TCP, TLS when configured, HTTP.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let root = config.storage.recordings.clone();
        std::fs::create_dir_all(&root).map_err(|source| ServerError::Drop {
            path: root.clone(),
            source,
        })?;
        // The index writer never fails the start: an unusable index is
        // logged and retried by the publisher thread, which owns it.
        let mut index = IndexWriter::open(config.index_at()?);
        // Recovered recordings are sealed (hashed, encrypted) like the others.
        let encryptor =
            crate::store::crypt::Encryptor::from_recipients(&config.encryption.recipients)?
                .map(Arc::new);
        let recovered =
            crate::store::recover::recover_all_sealed(&FileDrop::new(&root), encryptor.as_deref());
        // Recovered recordings go to the object store like the others.
        if config.storage.object.is_some() {
            for m in &recovered {
                if let Err(e) = crate::store::objects::enqueue(&root, m) {
                    tracing::error!(recording_id = %m.recording_id, error = %e,
                        "cannot queue a recovered recording for upload");
                }
            }
        }
        index.index(recovered);
        let nofile = os::raise_nofile_limit();
        let conns: Conns = Arc::new(Mutex::new(ConnTable::new(connection_limits(
            &config, nofile,
        ))));
        let sip_addr = config.sip.listen;
        // SIP over UDP and TCP share one port. With port 0 the kernel picks
        // the UDP port; the same TCP port may be taken (by any connection's
        // local end): then another UDP port is tried.
        let mut tries = if sip_addr.port() == 0 { 20 } else { 1 };
        let (udp, sip, tcp) = loop {
            let udp = UdpSocket::bind(sip_addr)
                .await
                .map_err(bind_error("SIP/UDP", sip_addr))?;
            let sip = udp.local_addr().unwrap_or(sip_addr);
            match listeners::listen_stream(sip).await {
                Ok(tcp) => break (udp, sip, tcp),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries > 1 => tries -= 1,
                Err(e) => return Err(bind_error("SIP/TCP", sip)(e)),
            }
        };
        // Room for bursts (capped by net.core.rmem_max; the kernel doubles it).
        os::set_recv_buffer(&udp, SIP_UDP_RCVBUF);
        let tls = if config.tls.enabled() {
            let acceptor = TlsAcceptor::from(crate::tls::server_config(&config.tls)?);
            let listener = listeners::listen_stream(config.tls.listen)
                .await
                .map_err(bind_error("SIP/TLS", config.tls.listen))?;
            Some((listener, acceptor))
        } else {
            None
        };
        // Access control and HTTPS of the API (docs/api.md), before listening.
        let api = http::ApiSetup::prepare(&config)?;
        let http = http::bind(config.http.listen)
            .await
            .map_err(bind_error("HTTP", config.http.listen))?;
        let bound = Bound {
            sip,
            http: http.local_addr().unwrap_or(config.http.listen),
            tls: tls
                .as_ref()
                .map(|(l, _)| l.local_addr().unwrap_or(config.tls.listen)),
        };
        Ok(Server {
            config,
            bound,
            udp,
            tcp,
            tls,
            http,
            api,
            index,
            conns,
            encryptor,
        })
    }

    /// The addresses bound.
    pub fn bound(&self) -> Bound {
        self.bound
    }

    /// Serves until `shutdown` changes to true, then ends every active
    /// session (BYE), publishes them and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), ServerError> {
        let Server {
            config,
            bound,
            udp,
            tcp,
            tls,
            http: http_listener,
            api: api_setup,
            index,
            conns,
            encryptor,
        } = self;
        let health = Arc::new(Health::default());
        let drop = FileDrop::new(config.storage.recordings.clone());
        let published = health.clone();
        // Issue 14: call events, call-events.json and webhooks on their own
        // threads; the publisher only sends them a note.
        let events = crate::events::worker::Events::start(
            config.index_at()?,
            config.storage.recordings.clone(),
            config.webhooks.clone(),
            health.metrics.clone(),
        )
        .map_err(thread_error("events thread"))?;
        let notes = events.clone();
        // Issue 16: the object store, and the upload thread fed by the
        // publisher (after the drop and the index).
        let objects = match &config.storage.object {
            Some(c) => Some(crate::store::objects::Objects::from_config(c)?),
            None => None,
        };
        let uploader = match &objects {
            Some(o) => Some(
                crate::store::objects::Uploader::start(
                    o.clone(),
                    config.storage.recordings.clone(),
                    config.index_at()?,
                    Some(health.metrics.upload_backlog.clone()),
                )
                .map_err(thread_error("upload thread"))?,
            ),
            None => None,
        };
        let upload_root = config.storage.recordings.clone();
        let reactor =
            Reactor::start(config.media.threads()).map_err(thread_error("media reactor"))?;
        health.metrics.set_reactor(reactor.clone());
        let shared = Arc::new(Shared {
            publisher: Publisher::start(drop.clone(), index, move |meta, ok| {
                use crate::events::worker::Notice;
                if ok {
                    if let Some(u) = &uploader {
                        u.enqueue(&upload_root, meta);
                    }
                    published
                        .recordings_published
                        .fetch_add(1, Ordering::Relaxed);
                    notes.notify(Notice::Published, meta.clone());
                } else {
                    notes.notify(Notice::Failed, meta.clone());
                }
            })
            .map_err(thread_error("publisher thread"))?,
            drop,
            ports: Mutex::new(PortPool::new(config.media.rtp_ports)),
            health: health.clone(),
            encoders: EncoderPool::start(config.output.encoders)
                .map_err(thread_error("encoder threads"))?,
            reactor,
            writer: SessionWriter::start().map_err(thread_error("session writer thread"))?,
            next_stream: std::sync::atomic::AtomicU64::new(1),
            config: config.clone(),
            encryptor,
            events: events.clone(),
        });
        // The retention rules, on a thread of their own (issue 15).
        let _retention = crate::lifecycle::schedule::start(
            crate::lifecycle::Lifecycle::new(
                config.storage.recordings.clone(),
                config.index_at()?,
                config.directory.clone().into(),
            )
            .with_webhooks(&config.webhooks)
            .with_node(config.node.id())
            .with_objects(objects.clone()),
            config.retention.clone(),
            Duration::from_secs(config.lifecycle.retention_interval),
        )
        .map_err(thread_error("retention thread"))?;
        tracing::info!(sip = %bound.sip, tls = ?bound.tls, mutual_tls = config.tls.client_ca.is_some(),
            http = %bound.http, rtp_ports = %config.media.rtp_ports,
            recordings = %config.storage.recordings.display(), "srs listening (SIP over UDP and TCP, and TLS when configured)");
        warn_ephemeral_overlap(&config);

        // The API on a thread and runtime of its own (http::spawn): its
        // load never runs on this runtime's threads, where the SIP task and
        // the publishing tasks run, nor queues in its blocking pool.
        let api = http::ApiState::new(health.clone(), api_setup.with_events(events))?;
        http::spawn(
            http_listener,
            api,
            config.http.index_connections,
            shutdown.clone(),
        )
        .map_err(thread_error("HTTP thread"))?;

        let (conn_tx, conn_rx) = mpsc::unbounded_channel();
        let conn_ids = Arc::new(std::sync::atomic::AtomicU64::new(1));
        tokio::spawn(listeners::accept_streams(
            tcp,
            None,
            conn_ids.clone(),
            conn_tx.clone(),
            conns.clone(),
        ));
        if let Some((listener, acceptor)) = tls {
            tokio::spawn(listeners::accept_streams(
                listener,
                Some(acceptor),
                conn_ids,
                conn_tx,
                conns.clone(),
            ));
        }

        let core = SipCore::new(CoreConfig {
            max_sessions: config.sip.max_sessions,
            sip_port: bound.sip.port(),
            tls_port: bound.tls.map(|a| a.port()),
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
        let (started_tx, started_rx) = mpsc::unbounded_channel();
        let mut lp = CoreLoop {
            core,
            udp,
            conns: HashMap::new(),
            sessions: Sessions::new(shared.clone(), started_tx),
            overload: Overload::default(),
            disk: DiskGuard::new(config.storage.min_free_mb * 1024 * 1024),
            conn_table: conns,
            conn_log: LogEvery::new(Duration::from_secs(10)),
            conn_closed: [0; 2],
            refusals_seen: [0; crate::sip::core::REFUSAL_REASONS.len()],
            shared,
        };
        lp.run(conn_rx, started_rx, &mut shutdown).await;
        Ok(())
    }
}

/// Binds, tells `on_bound` the bound addresses, and serves until
/// `shutdown` changes to true ([`Server::bind`] then [`Server::run`]).
pub async fn run(
    config: Config,
    shutdown: watch::Receiver<bool>,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServerError> {
    let server = Server::bind(config).await?;
    on_bound(server.bound());
    server.run(shutdown).await
}

/// The SIP connection caps: configured, or sized from the descriptor
/// limit (logged, with a warning when the limit is too low for them).
fn connection_limits(config: &Config, nofile: u64) -> Limits {
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
    limits
}

/// Warns when part of the RTP range is in the kernel's ephemeral range.
fn warn_ephemeral_overlap(config: &Config) {
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
}

/// The task that owns the SIP core: it feeds the core what arrives (UDP
/// datagrams, messages from connection tasks, timeouts, start-ups done)
/// and carries out what the core wants (transmits, events).
struct CoreLoop {
    core: SipCore,
    udp: UdpSocket,
    conns: HashMap<ConnId, mpsc::UnboundedSender<Bytes>>,
    sessions: Sessions,
    shared: Arc<Shared>,
    /// Whether the SIP input is queueing up (new sessions refused).
    overload: Overload,
    /// Whether the drop is low on space (new sessions refused).
    disk: DiskGuard,
    /// The open TCP/TLS connections and their clocks.
    conn_table: Conns,
    /// Connections closed for their head and idle timeouts, logged at
    /// most once per 10 s.
    conn_log: LogEvery,
    conn_closed: [u64; 2],
    /// The core's refusal counts already in the metrics.
    refusals_seen: [u64; crate::sip::core::REFUSAL_REASONS.len()],
}

impl CoreLoop {
    async fn run(
        &mut self,
        mut conn_rx: mpsc::UnboundedReceiver<ConnInput>,
        mut started_rx: mpsc::UnboundedReceiver<sessions::Started>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 65_535];
        // Set once a shutdown was asked for: the exit deadline.
        let mut leaving: Option<tokio::time::Instant> = None;
        let mut disk_check = tokio::time::interval(Duration::from_secs(1));
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
                Some(done) = started_rx.recv() => self.sessions.on_started(&mut self.core, done),
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
                _ = self.sessions.reap(), if self.sessions.publishing() > 0 => {}
                _ = conn_sweep.tick() => self.sweep_conns(),
                _ = disk_check.tick() => self.check_disk(),
                _ = tokio::time::sleep_until(deadline), if leaving.is_some() => {
                    tracing::error!(left = self.sessions.publishing(),
                        "shutdown deadline reached: unfinished recordings stay in .incoming and are recovered at the next start");
                    return;
                }
            }
            self.flush().await;
            if leaving.is_some() && self.sessions.is_idle() {
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
        // Issue 14: metrics the SIP task knows (no IO, a few stores).
        let m = &self.shared.health.metrics;
        m.sessions_active.set(self.sessions.len() as i64);
        m.publish_backlog.set(self.sessions.publishing() as i64);
        let now = self.core.refusals();
        for (i, reason) in crate::sip::core::REFUSAL_REASONS.iter().enumerate() {
            if now[i] > self.refusals_seen[i] {
                m.refused(reason, now[i] - self.refusals_seen[i]);
            }
        }
        self.refusals_seen = now;
    }

    fn on_event(&mut self, ev: Event) {
        let core = &mut self.core;
        match ev {
            Event::Offered {
                session,
                peer,
                invite,
                offer,
            } => self.sessions.on_offer(core, session, peer, &invite, *offer),
            Event::Reoffered {
                session,
                sdp,
                metadata_xml,
            } => {
                if let Some(xml) = metadata_xml {
                    self.sessions.on_metadata(core, session, &xml);
                }
                self.sessions.on_reoffer(core, session, &sdp);
            }
            Event::Confirmed { session } => tracing::debug!(session, "ACK received"),
            Event::Updated {
                session,
                metadata_xml,
            } => self.sessions.on_metadata(core, session, &metadata_xml),
            Event::Refreshed { session } => tracing::debug!(session, "session refreshed"),
            Event::Ended {
                session,
                reason,
                metadata_xml,
            } => {
                if let Some(xml) = metadata_xml {
                    self.sessions.on_metadata(core, session, &xml);
                }
                self.sessions.on_ended(session, reason);
            }
        }
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
        self.shared
            .health
            .metrics
            .overload_active
            .set(i64::from(behind));
    }

    /// Reads the drop's free space: below `storage.min_free_mb` new
    /// sessions get 503 and the running recordings are ended and published.
    fn check_disk(&mut self) {
        let m = &self.shared.health.metrics;
        m.encoder_backlog.set(self.shared.encoders.backlog() as i64);
        let Some(free) = os::free_bytes(&self.shared.config.storage.recordings) else {
            return;
        };
        m.disk_free.set(i64::try_from(free).unwrap_or(i64::MAX));
        match self.disk.observe(free) {
            Some(SpaceEpisode::Low { free }) => {
                let ids = self.core.sessions();
                tracing::error!(free_mb = free / 1048576, active = ids.len(),
                    "low disk space: new sessions get 503, running recordings are ended and published");
                self.core.set_low_space(true);
                for id in ids {
                    self.core.terminate(Instant::now(), id);
                }
            }
            Some(SpaceEpisode::Back { free }) => {
                tracing::info!(
                    free_mb = free / 1048576,
                    "disk space back: accepting sessions again"
                );
                self.core.set_low_space(false);
            }
            None => {}
        }
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
        self.shared.health.metrics.sip_response(&payload);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_hands_back_every_bound_address_and_run_serves_them_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.sip.listen = "127.0.0.1:0".parse().unwrap();
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        config.storage.recordings = dir.path().join("rec");
        config.media.rtp_ports = crate::config::PortRange {
            lo: 47000,
            hi: 47019,
        };
        let server = Server::bind(config).await.unwrap();
        let b = server.bound();
        assert!(b.sip.port() != 0 && b.http.port() != 0, "{b:?}");
        assert_eq!(b.tls, None);
        let (tx, rx) = watch::channel(false);
        let serving = tokio::spawn(server.run(rx));
        // SIP over UDP is answered on the bound port.
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let options = format!(
            "OPTIONS sip:srs@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-b1\r\n\
             From: <sip:t@x>;tag=1\r\nTo: <sip:srs@x>\r\nCall-ID: bind-1\r\nCSeq: 1 OPTIONS\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            sip = b.sip,
            me = sock.local_addr().unwrap()
        );
        sock.send_to(options.as_bytes(), b.sip).await.unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            buf[..n].starts_with(b"SIP/2.0 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        // And SIP over TCP on the same port.
        tokio::net::TcpStream::connect(b.sip).await.unwrap();
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("ends at shutdown")
            .unwrap()
            .unwrap();
    }
}
