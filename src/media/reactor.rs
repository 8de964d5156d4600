//! The media reactor: a few threads, each owning the RTP and RTCP sockets
//! and the [`StreamRecorder`]s of its share of the streams.
//!
//! A shard does not wake per packet. It sleeps for a fixed tick
//! ([`TICK`]), then asks epoll at once for every socket with data
//! (`epoll_wait` with a zero timeout, level-triggered) and drains each with
//! `recvmmsg` into the thread's pooled buffers. At 200,000 packets/s that is
//! about 200 wake-ups per second per thread instead of 200,000, and the
//! kernel's socket buffers hold the few packets that arrive within a tick.
//! Packets are stamped with the time of the batch (at most one tick late,
//! well inside the reorder window).
//!
//! The SIP side talks to shards through commands: add a stream, change its
//! codec, pause, re-anchor, stop it (the reply carries its counters).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::receiver::{BatchReceiver, BATCH};
use super::recorder::{StreamRecorder, StreamSpec, StreamStats};

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
        reply: tokio::sync::oneshot::Sender<Result<StreamStats, String>>,
    },
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
    /// Any source (the client gave no usable address).
    Any,
    /// Only this IP (the SDP's `c=`), any port.
    Ip(std::net::IpAddr),
    /// The first source seen, then only that ip:port (`media.latch`).
    Latch(Option<std::net::SocketAddr>),
}

impl SourcePolicy {
    /// RTCP comes from another port (usually RTP's + 1): the host must
    /// match; it never latches.
    fn admit_rtcp(&self, from: Option<std::net::SocketAddr>) -> bool {
        match (self, from) {
            (SourcePolicy::Any, _) | (SourcePolicy::Latch(None), Some(_)) => true,
            (SourcePolicy::Ip(ip), Some(a)) => a.ip() == *ip,
            (SourcePolicy::Latch(Some(l)), Some(a)) => l.ip() == a.ip(),
            (_, None) => false,
        }
    }

    fn admit(&mut self, from: Option<std::net::SocketAddr>) -> bool {
        match (self, from) {
            (SourcePolicy::Any, _) => true,
            (SourcePolicy::Ip(ip), Some(a)) => a.ip() == *ip,
            (SourcePolicy::Latch(l @ None), Some(a)) => {
                *l = Some(a);
                true
            }
            (SourcePolicy::Latch(Some(l)), Some(a)) => *l == a,
            (_, None) => false,
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

    /// Stops a stream at `end` (what is queued is still recorded) and
    /// returns its counters once its files are closed (a stream whose
    /// writes failed reports up to the failure, with its `error`).
    pub fn stop(
        &self,
        id: u64,
        end: Instant,
    ) -> tokio::sync::oneshot::Receiver<Result<StreamStats, String>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let _ = self.shard_of(id).send(Cmd::Stop { id, end, reply });
        rx
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
            let ok = if rtcp {
                s.source.admit_rtcp(batch.source(i))
            } else {
                s.source.admit(batch.source(i))
            };
            if !ok {
                s.foreign += 1;
                continue;
            }
            if rtcp {
                s.rec.on_rtcp_datagram_mut(batch.packet_mut(i));
            } else if s.failed.is_none() {
                // A panic (a bug, ours or a dependency's, on hostile input)
                // stops this stream, never the thread and its other streams.
                let rec = &mut s.rec;
                let packet = batch.packet_mut(i);
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    rec.on_datagram_mut(now, packet)
                })) {
                    Ok(Ok(())) => {}
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
                            Ok(st)
                        }
                        None => Err("unknown stream".into()),
                    };
                    let _ = reply.send(result);
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
mod tests {
    use super::SourcePolicy;

    #[test]
    fn nobody_else_can_inject_audio() {
        let a = Some("10.0.0.5:4000".parse().unwrap());
        let b = Some("10.0.0.9:4000".parse().unwrap());
        let a2 = Some("10.0.0.5:5000".parse().unwrap());
        let mut latch = SourcePolicy::Latch(None);
        assert!(latch.admit(a), "the first source is latched");
        assert!(latch.admit(a));
        assert!(!latch.admit(b), "another host");
        assert!(!latch.admit(a2), "another port of the same host");
        let mut strict = SourcePolicy::Ip("10.0.0.5".parse().unwrap());
        assert!(strict.admit(a) && strict.admit(a2));
        assert!(!strict.admit(b));
        assert!(!strict.admit(None));
        assert!(SourcePolicy::Any.admit(b));
        // RTCP (from port + 1) never latches and needs the same host.
        let mut fresh = SourcePolicy::Latch(None);
        assert!(fresh.admit_rtcp(Some("10.0.0.5:4001".parse().unwrap())));
        assert!(fresh.admit(a), "RTP still latches its own port");
        assert!(fresh.admit_rtcp(Some("10.0.0.5:4001".parse().unwrap())));
        assert!(!fresh.admit_rtcp(b));
    }
}
