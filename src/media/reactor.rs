//! The media reactor: a few threads, each owning the RTP and RTCP sockets
//! and the [`StreamRecorder`]s of its share of the streams.
//!
//! A shard does not wake per packet. It sleeps for a fixed tick
//! ([`TICK`]), then asks epoll at once for every socket that received
//! something (`epoll_wait` with a zero timeout; edge-triggered, so each
//! reported socket is drained with `recvmmsg` into the thread's pooled
//! buffers until the kernel queue is empty, and idle sockets cost nothing). At 200,000 packets/s that is
//! about 200 wake-ups per second per thread instead of 200,000, and the
//! kernel's socket buffers hold the few packets that arrive within a tick.
//! Packets are stamped with the time of the batch (at most one tick late,
//! well inside the reorder window).
//!
//! The SIP side talks to shards through commands: add a stream, change its
//! codec, pause, re-anchor, stop it (the reply carries its counters).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::receiver::{BatchReceiver, BATCH};
use super::recorder::{StreamRecorder, StreamSpec, StreamStats, Verdict};

/// How long a shard sleeps between batches.
pub const TICK: Duration = Duration::from_millis(5);
/// How often every recorder gets its timers run (reorder window, checkpoints).
const TIMERS: Duration = Duration::from_millis(20);

/// A change to a running stream.
#[derive(Debug)]
pub enum StreamCtl {
    Codec(StreamSpec),
    Reanchor,
    Paused(bool),
}

enum Cmd {
    Add {
        id: u64,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        rec: Box<StreamRecorder>,
        source: SourcePolicy,
    },
    Ctl {
        id: u64,
        ctl: StreamCtl,
    },
    Stop {
        id: u64,
        end: Instant,
        reply: tokio::sync::oneshot::Sender<Result<StreamStats, StopError>>,
    },
    MediaEnd {
        id: u64,
        reply: tokio::sync::oneshot::Sender<Option<Instant>>,
    },
    /// The shard's packet totals (issue 14: metrics, folded on scrape).
    Counters {
        reply: tokio::sync::oneshot::Sender<RtpCounters>,
    },
}

/// Packet totals of the media threads since start: the ended streams'
/// final counts plus the live streams' counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpCounters {
    pub received: u64,
    pub lost: u64,
    pub foreign: u64,
}

impl std::ops::AddAssign for RtpCounters {
    fn add_assign(&mut self, o: RtpCounters) {
        self.received += o.received;
        self.lost += o.lost;
        self.foreign += o.foreign;
    }
}

/// Why a stream's report did not come back from [`Reactor::stop`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopError {
    /// The shard holds no such stream.
    #[error("unknown stream {0}")]
    UnknownStream(u64),
    /// The shard's thread is gone (it died): the stream's file holds what
    /// its last header rewrite covered.
    #[error("the media thread is gone")]
    ThreadGone,
}

/// Handle to the reactor's shards.
#[derive(Clone)]
pub struct Reactor {
    shards: Vec<mpsc::Sender<Cmd>>,
}

struct Stream {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    rec: Box<StreamRecorder>,
    failed: Option<String>,
    source: SourcePolicy,
    /// Packets from another source: dropped (counted).
    foreign: u64,
}

/// Whose packets a stream accepts: nobody else may inject audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePolicy {
    /// Any source (tests; the server always restricts).
    Any,
    /// Only this IP (the SDP's `c=`), any port (`media.latch = false`).
    Ip(IpAddr),
    /// The first source whose packet is the stream's media (see
    /// [`Verdict::Media`]: authenticated, an offered payload type), then
    /// only that ip:port. `from`: the IPs that first source may have (the
    /// SDP's `c=` and the recording client's signalling address), or None
    /// for anywhere (`media.latch_any_source`, for clients behind NAT).
    Latch {
        from: Option<[IpAddr; 2]>,
        latched: Option<SocketAddr>,
    },
}

/// What a [`SourcePolicy`] makes of a datagram's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Yes,
    /// Not latched yet and a possible first source: recorded if it is the
    /// stream's media, and then latched.
    Candidate,
    No,
}

impl SourcePolicy {
    /// Latches onto the first source of media from one of `ips` (any of
    /// them may repeat; an unspecified one is ignored).
    pub fn latch_from(a: IpAddr, b: IpAddr) -> SourcePolicy {
        let a = a.to_canonical();
        let b = b.to_canonical();
        let (a, b) = match (a.is_unspecified(), b.is_unspecified()) {
            (true, false) => (b, b),
            (false, true) => (a, a),
            _ => (a, b),
        };
        SourcePolicy::Latch {
            from: Some([a, b]),
            latched: None,
        }
    }

    /// The policy of a new stream: only the SDP's address without
    /// `media.latch`; with it, the first source of media from the SDP's
    /// address or the client's own (`client`, its signalling address), or
    /// from anywhere with `media.latch_any_source` (clients behind NAT).
    pub fn for_stream(
        latch: bool,
        latch_any_source: bool,
        sdp: Option<IpAddr>,
        client: IpAddr,
    ) -> SourcePolicy {
        let sdp = sdp.filter(|ip| !ip.is_unspecified());
        match (latch, sdp) {
            (false, Some(ip)) => SourcePolicy::Ip(ip.to_canonical()),
            _ if latch_any_source => SourcePolicy::latch_any(),
            // Either may be 0.0.0.0.
            _ => SourcePolicy::latch_from(sdp.unwrap_or(client), client),
        }
    }

    /// Latches onto the first source of media, from anywhere.
    pub fn latch_any() -> SourcePolicy {
        SourcePolicy::Latch {
            from: None,
            latched: None,
        }
    }

    /// RTCP comes from another port (usually RTP's + 1): the host must
    /// match; it never latches. Before the stream latched, only a host the
    /// first source may come from.
    fn admit_rtcp(&self, from: Option<SocketAddr>) -> bool {
        let Some(a) = from else { return false };
        match self {
            SourcePolicy::Any => true,
            SourcePolicy::Ip(ip) => a.ip().to_canonical() == *ip,
            SourcePolicy::Latch {
                latched: Some(l), ..
            } => l.ip() == a.ip(),
            SourcePolicy::Latch {
                from: Some(ips),
                latched: None,
            } => ips.contains(&a.ip().to_canonical()),
            SourcePolicy::Latch {
                from: None,
                latched: None,
            } => false,
        }
    }

    fn admit(&self, from: Option<SocketAddr>) -> Admit {
        let Some(a) = from else { return Admit::No };
        let yes = |b: bool| if b { Admit::Yes } else { Admit::No };
        match self {
            SourcePolicy::Any => Admit::Yes,
            SourcePolicy::Ip(ip) => yes(a.ip().to_canonical() == *ip),
            SourcePolicy::Latch {
                latched: Some(l), ..
            } => yes(*l == a),
            SourcePolicy::Latch {
                from: Some(ips),
                latched: None,
            } => {
                if ips.contains(&a.ip().to_canonical()) {
                    Admit::Candidate
                } else {
                    Admit::No
                }
            }
            SourcePolicy::Latch {
                from: None,
                latched: None,
            } => Admit::Candidate,
        }
    }

    fn latch(&mut self, to: SocketAddr) {
        if let SourcePolicy::Latch { latched, .. } = self {
            *latched = Some(to);
        }
    }
}

impl Reactor {
    /// Starts `threads` shards (at least one).
    pub fn start(threads: usize) -> std::io::Result<Reactor> {
        let mut shards = Vec::new();
        for n in 0..threads.max(1) {
            let (tx, rx) = mpsc::channel();
            // SAFETY: plain syscall; the result is checked.
            let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if ep < 0 {
                return Err(std::io::Error::last_os_error());
            }
            std::thread::Builder::new()
                .name(format!("srs-media-{n}"))
                .spawn(move || shard(ep, rx))?;
            shards.push(tx);
        }
        Ok(Reactor { shards })
    }

    fn shard_of(&self, id: u64) -> &mpsc::Sender<Cmd> {
        &self.shards[(id % self.shards.len() as u64) as usize]
    }

    /// Hands a stream's sockets and recorder to its shard.
    pub fn add(
        &self,
        id: u64,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        rec: StreamRecorder,
        source: SourcePolicy,
    ) {
        let _ = self.shard_of(id).send(Cmd::Add {
            id,
            rtp,
            rtcp,
            rec: Box::new(rec),
            source,
        });
    }

    pub fn ctl(&self, id: u64, ctl: StreamCtl) {
        let _ = self.shard_of(id).send(Cmd::Ctl { id, ctl });
    }

    /// Where the stream's received media ends so far (see
    /// [`StreamRecorder::media_end`]); None for no media or no such stream.
    pub fn media_end(&self, id: u64) -> tokio::sync::oneshot::Receiver<Option<Instant>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let _ = self.shard_of(id).send(Cmd::MediaEnd { id, reply });
        rx
    }

    /// The packet totals of every shard, asked at scrape time: each shard
    /// answers between two ticks from its plain counters (nothing is
    /// counted on the packet path for it).
    pub async fn counters(&self) -> RtpCounters {
        let mut waits = Vec::with_capacity(self.shards.len());
        for shard in &self.shards {
            let (reply, rx) = tokio::sync::oneshot::channel();
            if shard.send(Cmd::Counters { reply }).is_ok() {
                waits.push(rx);
            }
        }
        let mut total = RtpCounters::default();
        for w in waits {
            if let Ok(c) = w.await {
                total += c;
            }
        }
        total
    }

    /// Stops a stream at `end` (what is queued is still recorded) and
    /// returns its counters once its files are closed (a stream whose
    /// writes failed reports up to the failure, with its `error`).
    pub async fn stop(&self, id: u64, end: Instant) -> Result<StreamStats, StopError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let _ = self.shard_of(id).send(Cmd::Stop { id, end, reply });
        rx.await.map_err(|_| StopError::ThreadGone)?
    }
}

/// Hashes the reactor's own stream ids (sequential u64s, never remote
/// input) with one multiplication instead of SipHash: the lookup runs once
/// per received datagram.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads sequential ids over the high bits too.
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn epoll_add(ep: i32, fd: i32, key: u64) -> bool {
    // Edge-triggered: a socket is reported once per arrival, and drained
    // until recvmmsg returns less than a full batch (the queue is empty),
    // so idle sockets are never polled again.
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: key,
    };
    // SAFETY: valid epoll fd and socket fd; `ev` lives across the call.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) == 0 }
}

fn epoll_del(ep: i32, fd: i32) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: as above; deleting an fd that is not registered is harmless.
    unsafe {
        libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, &mut ev);
    }
}

/// Takes everything queued on one socket.
fn drain(batch: &mut BatchReceiver, s: &mut Stream, rtcp: bool, now: Instant) {
    let fd = if rtcp {
        s.rtcp.as_raw_fd()
    } else {
        s.rtp.as_raw_fd()
    };
    while let Ok(n) = batch.recv(fd) {
        for i in 0..n {
            let from = batch.source(i);
            if rtcp {
                if s.source.admit_rtcp(from) {
                    s.rec.on_rtcp_datagram_mut(batch.packet_mut(i));
                } else {
                    s.foreign += 1;
                }
                continue;
            }
            let admit = match s.source.admit(from) {
                // rtcp-mux RTCP before the latch: only from a host the first
                // source may have (it never latches).
                Admit::Candidate
                    if super::rtp::is_rtcp(batch.packet(i)) && !s.source.admit_rtcp(from) =>
                {
                    Admit::No
                }
                a => a,
            };
            if admit == Admit::No {
                s.foreign += 1;
                continue;
            }
            if s.failed.is_some() {
                continue;
            }
            // A panic (a bug, ours or a dependency's, on hostile input)
            // stops this stream, never the thread and its other streams.
            let rec = &mut s.rec;
            let packet = batch.packet_mut(i);
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rec.on_datagram_mut(now, packet)
            })) {
                Ok(Ok(verdict)) => {
                    // The latch follows the recorder's verdict: a forged or
                    // stray packet never decides where the stream comes from.
                    if admit == Admit::Candidate && verdict == Verdict::Media {
                        if let Some(from) = from {
                            s.source.latch(from);
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "writing audio failed; the stream stops recording");
                    s.failed = Some(e.reason());
                }
                Err(_) => {
                    tracing::error!(
                        "a datagram made the recorder panic; the stream stops recording"
                    );
                    s.failed = Some("internal error on a received datagram".into());
                }
            }
        }
        if n < BATCH {
            break;
        }
    }
}

fn shard(ep: i32, rx: mpsc::Receiver<Cmd>) {
    let mut streams: HashMap<u64, Stream, BuildHasherDefault<IdHasher>> = HashMap::default();
    let mut batch = BatchReceiver::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut last_timers = Instant::now();
    // The final counts of the streams this shard has ended (metrics).
    let mut ended = RtpCounters::default();
    loop {
        // Commands from the SIP side.
        loop {
            match rx.try_recv() {
                Ok(Cmd::Add {
                    id,
                    rtp,
                    rtcp,
                    rec,
                    source,
                }) => {
                    let ok = epoll_add(ep, rtp.as_raw_fd(), id << 1)
                        && epoll_add(ep, rtcp.as_raw_fd(), (id << 1) | 1);
                    if !ok {
                        tracing::error!(id, "cannot watch a media socket");
                    }
                    streams.insert(
                        id,
                        Stream {
                            rtp,
                            rtcp,
                            rec,
                            failed: None,
                            source,
                            foreign: 0,
                        },
                    );
                }
                Ok(Cmd::Ctl { id, ctl }) => {
                    if let Some(s) = streams.get_mut(&id) {
                        match ctl {
                            StreamCtl::Codec(spec) => {
                                if !s.rec.set_codec(spec) {
                                    tracing::warn!(
                                        id,
                                        "codec change to a higher sample rate refused"
                                    );
                                }
                            }
                            StreamCtl::Reanchor => s.rec.reanchor(),
                            StreamCtl::Paused(p) => s.rec.set_paused(p),
                        }
                    }
                }
                Ok(Cmd::Stop { id, end, reply }) => {
                    let result = match streams.remove(&id) {
                        Some(mut s) => {
                            // What is queued arrived before the end.
                            drain(&mut batch, &mut s, false, end);
                            epoll_del(ep, s.rtp.as_raw_fd());
                            epoll_del(ep, s.rtcp.as_raw_fd());
                            if s.foreign > 0 {
                                tracing::warn!(
                                    id,
                                    dropped = s.foreign,
                                    "packets from an unexpected source were dropped"
                                );
                            }
                            // A stream whose writes failed is still
                            // reported: its counters up to the failure and
                            // the audio on disk, with the error.
                            let mut st = s.rec.close(end, s.failed);
                            st.packets_foreign = s.foreign;
                            ended += RtpCounters {
                                received: st.packets_received,
                                lost: st.packets_lost,
                                foreign: st.packets_foreign,
                            };
                            Ok(st)
                        }
                        None => Err(StopError::UnknownStream(id)),
                    };
                    let _ = reply.send(result);
                }
                Ok(Cmd::MediaEnd { id, reply }) => {
                    let end = streams.get_mut(&id).and_then(|s| {
                        // What is queued arrived before now.
                        drain(&mut batch, s, false, Instant::now());
                        s.rec.media_end()
                    });
                    let _ = reply.send(end);
                }
                Ok(Cmd::Counters { reply }) => {
                    let mut c = ended;
                    for s in streams.values() {
                        let (received, lost) = s.rec.live_counts();
                        c += RtpCounters {
                            received,
                            lost,
                            foreign: s.foreign,
                        };
                    }
                    let _ = reply.send(c);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    // The server is gone: close every file properly.
                    let now = Instant::now();
                    for (_, s) in streams.drain() {
                        let _ = s.rec.finish(now);
                    }
                    // SAFETY: closing our own epoll fd once.
                    unsafe { libc::close(ep) };
                    return;
                }
            }
        }
        // Every socket with data, at once.
        let now = Instant::now();
        loop {
            // SAFETY: `events` has room for its length; timeout 0 never blocks.
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 0) };
            if n <= 0 {
                break;
            }
            for ev in &events[..n as usize] {
                let key = ev.u64;
                if let Some(s) = streams.get_mut(&(key >> 1)) {
                    drain(&mut batch, s, key & 1 == 1, now);
                }
            }
            if (n as usize) < events.len() {
                break;
            }
        }
        // Reorder deadlines and header checkpoints.
        if now.duration_since(last_timers) >= TIMERS {
            last_timers = now;
            for s in streams.values_mut().filter(|s| s.failed.is_none()) {
                if s.rec.next_deadline().is_some_and(|d| d <= now) {
                    if let Err(e) = s.rec.tick(now) {
                        tracing::error!(error = %e, "writing audio failed; the stream stops recording");
                        s.failed = Some(e.reason());
                    }
                }
            }
        }
        std::thread::sleep(TICK);
    }
}

#[cfg(test)]
mod tests;
