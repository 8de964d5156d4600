//! The pacing RTP sender shared by `examples/loadgen.rs` and
//! `examples/udp_floor.rs`.
//!
//! One thread sends every packet of every stream. Streams sit in a timer
//! wheel of one slot per 1 ms tick of the packet period (20 slots for
//! 20 ms packets, [`PTIME_MS`]): each new
//! stream is put in the next slot round-robin, so the load is spread evenly
//! over the 20 ms period instead of one burst. Every 1 ms tick, the streams
//! of that slot each send their next packet, grouped by sender socket into
//! `sendmmsg(2)` batches.
//!
//! Per packet the cost is: patch sequence number and timestamp into the
//! stream's prebuilt 12-byte header, point two iovecs at that header and at
//! the tone table (no copy of the payload, no allocation), then the kernel.
//! Timestamps and sequence numbers follow the packet index, not wall time,
//! so a late tick makes jitter but never a gap.

#![allow(dead_code)] // each example uses a different part of this module

use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Packet period of the load generator: 20 ms (one wheel slot per ms).
pub const PTIME_MS: usize = 20;
/// Bytes of one PCMU packet payload (20 ms at 8 kHz).
pub const PAYLOAD: usize = 160;
/// Most datagrams handed to one `sendmmsg` call.
const MAX_BATCH: usize = 256;

/// A µ-law tone table of whole packets whose end joins its start without a
/// phase jump: cycling through it is a continuous sine.
pub fn ulaw_tone(freq: u32, amplitude: f64) -> Vec<u8> {
    // Smallest k with k * 160 * freq / 8000 whole periods.
    let mut k = 1usize;
    while (k * PAYLOAD * freq as usize) % 8000 != 0 && k < 400 {
        k += 1;
    }
    (0..k * PAYLOAD)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let s = amplitude * (2.0 * std::f64::consts::PI * f64::from(freq) * t).sin();
            srs::testkit::ulaw_encode(s as i16)
        })
        .collect()
}

/// One RTP stream to send.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Caller's id, given back in [`Done`].
    pub id: u64,
    pub dest: SocketAddrV4,
    /// Index of the sender socket to send from.
    pub socket: usize,
    pub payload_type: u8,
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_ts: u32,
    /// Index of the tone table.
    pub tone: usize,
    /// Packets to send.
    pub packets: u32,
}

/// Commands to the sender thread.
pub enum Cmd {
    Add(StreamSpec),
    /// No more streams: exit once the active ones are finished.
    Finish,
}

/// A finished stream.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub id: u64,
    /// Datagrams the kernel accepted.
    pub sent: u32,
    /// Datagrams refused by `sendmmsg` (not counted in `sent`).
    pub errors: u32,
    /// When its first and last packet went out.
    pub first: Instant,
    pub last: Instant,
}

/// What the sender thread did.
#[derive(Debug, Clone, Default)]
pub struct SenderStats {
    pub packets: u64,
    pub bytes: u64,
    pub errors: u64,
    pub syscalls: u64,
    pub first_send: Option<Instant>,
    pub last_send: Option<Instant>,
    /// Most packets sent in one second (whole seconds counted from the
    /// first send): the steady-state rate once every stream is active.
    pub peak_rate: u64,
    /// Packets in the current second of `peak_rate`.
    second: (u64, u64),
    /// Worst lateness of a tick behind its schedule.
    pub max_lag: Duration,
    /// Ticks processed more than 5 ms late.
    pub late_ticks: u64,
    /// The thread's own CPU (user, system) seconds, from /proc.
    pub cpu: CpuTimes,
    /// The first error message seen, if any.
    pub first_error: Option<String>,
}

impl SenderStats {
    /// Packets per second between the first and the last send.
    pub fn rate(&self) -> f64 {
        match (self.first_send, self.last_send) {
            (Some(a), Some(b)) if b > a => self.packets as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// One active stream, laid out for the send loop.
struct Stream {
    hdr: [u8; 12],
    addr: libc::sockaddr_in,
    seq: u16,
    ts: u32,
    tone: usize,
    /// Offset of the next payload in its tone table.
    pos: usize,
    remaining: u32,
    sent: u32,
    errors: u32,
    first: Option<Instant>,
    id: u64,
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// The send loop's state (lives on the sender thread: holds raw pointers).
struct Wheel {
    socks: Vec<UdpSocket>,
    tones: Vec<Vec<u8>>,
    /// `slots[slot][socket]`: streams due in that slot, from that socket.
    slots: Vec<Vec<Vec<Stream>>>,
    next_slot: usize,
    active: usize,
    iov: Vec<libc::iovec>,
    hdr: Vec<libc::mmsghdr>,
    stats: SenderStats,
    done: mpsc::Sender<Done>,
}

impl Wheel {
    fn add(&mut self, s: StreamSpec) {
        let mut hdr = [0u8; 12];
        hdr[0] = 0x80;
        hdr[1] = s.payload_type & 0x7f;
        hdr[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
        let slot = self.next_slot;
        self.next_slot = (self.next_slot + 1) % self.slots.len();
        let sock = s.socket % self.socks.len();
        if s.packets == 0 {
            let now = Instant::now();
            let _ = self.done.send(Done {
                id: s.id,
                sent: 0,
                errors: 0,
                first: now,
                last: now,
            });
            return;
        }
        self.active += 1;
        self.slots[slot][sock].push(Stream {
            hdr,
            addr: sockaddr(s.dest),
            seq: s.first_seq,
            ts: s.first_ts,
            tone: s.tone % self.tones.len(),
            pos: 0,
            remaining: s.packets,
            sent: 0,
            errors: 0,
            first: None,
            id: s.id,
        });
    }

    /// Sends the due packet of every stream in `slot`.
    fn tick(&mut self, slot: usize) {
        for sock in 0..self.socks.len() {
            let fd = self.socks[sock].as_raw_fd();
            let mut start = 0;
            while start < self.slots[slot][sock].len() {
                let end = (start + MAX_BATCH).min(self.slots[slot][sock].len());
                self.send_range(fd, slot, sock, start, end);
                start = end;
            }
            // Retire the finished streams.
            let mut i = 0;
            while i < self.slots[slot][sock].len() {
                if self.slots[slot][sock][i].remaining == 0 {
                    let s = self.slots[slot][sock].swap_remove(i);
                    self.active -= 1;
                    let now = Instant::now();
                    let _ = self.done.send(Done {
                        id: s.id,
                        sent: s.sent,
                        errors: s.errors,
                        first: s.first.unwrap_or(now),
                        last: now,
                    });
                } else {
                    i += 1;
                }
            }
        }
    }

    fn send_range(&mut self, fd: i32, slot: usize, sock: usize, start: usize, end: usize) {
        let streams = &mut self.slots[slot][sock][start..end];
        let n = streams.len();
        for (k, s) in streams.iter_mut().enumerate() {
            s.hdr[2..4].copy_from_slice(&s.seq.to_be_bytes());
            s.hdr[4..8].copy_from_slice(&s.ts.to_be_bytes());
            if s.sent == 0 && s.errors == 0 {
                s.hdr[1] |= 0x80; // marker on the first packet of a talk spurt
            } else {
                s.hdr[1] &= 0x7f;
            }
            let payload = &self.tones[s.tone][s.pos..s.pos + PAYLOAD];
            self.iov[2 * k] = libc::iovec {
                iov_base: s.hdr.as_mut_ptr().cast(),
                iov_len: 12,
            };
            self.iov[2 * k + 1] = libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: PAYLOAD,
            };
            let h = &mut self.hdr[k].msg_hdr;
            h.msg_name = (&mut s.addr as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[2 * k];
            h.msg_iovlen = 2;
        }
        let mut off = 0;
        while off < n {
            // SAFETY: headers off..n point at iovecs, addresses and payloads
            // that stay alive and unmoved for the duration of the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdr.as_mut_ptr().add(off),
                    (n - off) as libc::c_uint,
                    0,
                )
            };
            self.stats.syscalls += 1;
            let now = Instant::now();
            let (ok, failed) = if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                if self.stats.first_error.is_none() {
                    self.stats.first_error = Some(e.to_string());
                }
                (0, 1) // the first datagram failed: skip it
            } else {
                (r as usize, 0)
            };
            for s in &mut streams[off..off + ok + failed] {
                if failed == 0 {
                    s.sent += 1;
                    if s.first.is_none() {
                        s.first = Some(now);
                    }
                } else {
                    s.errors += 1;
                }
                s.seq = s.seq.wrapping_add(1);
                s.ts = s.ts.wrapping_add(PAYLOAD as u32);
                s.pos += PAYLOAD;
                if s.pos >= self.tones[s.tone].len() {
                    s.pos = 0;
                }
                s.remaining -= 1;
            }
            self.stats.packets += ok as u64;
            self.stats.bytes += (ok * (12 + PAYLOAD)) as u64;
            self.stats.errors += failed as u64;
            if ok > 0 {
                let first = *self.stats.first_send.get_or_insert(now);
                self.stats.last_send = Some(now);
                let sec = (now - first).as_secs();
                if sec != self.stats.second.0 {
                    self.stats.second = (sec, 0);
                }
                self.stats.second.1 += ok as u64;
                self.stats.peak_rate = self.stats.peak_rate.max(self.stats.second.1);
            }
            off += ok + failed;
        }
    }
}

/// Starts the sender thread: every stream sends one packet each
/// `period_ms` milliseconds (1..=1000). It sends from `sockets` (blocking UDP sockets),
/// with payloads from `tones` (see [`ulaw_tone`]). Streams are added with
/// [`Cmd::Add`]; each finished one is reported on the returned receiver. After
/// [`Cmd::Finish`] (or when the command sender is dropped) the thread ends
/// once its streams are done and returns its statistics.
pub fn spawn(
    sockets: Vec<UdpSocket>,
    tones: Vec<Vec<u8>>,
    period_ms: usize,
) -> (
    mpsc::Sender<Cmd>,
    mpsc::Receiver<Done>,
    JoinHandle<SenderStats>,
) {
    assert!(!sockets.is_empty() && !tones.is_empty());
    assert!((1..=1000).contains(&period_ms));
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    let handle = std::thread::Builder::new()
        .name("rtp-sender".into())
        .spawn(move || run(sockets, tones, period_ms, cmd_rx, done_tx))
        .expect("spawn the sender thread");
    (cmd_tx, done_rx, handle)
}

fn run(
    socks: Vec<UdpSocket>,
    tones: Vec<Vec<u8>>,
    period_ms: usize,
    cmds: mpsc::Receiver<Cmd>,
    done: mpsc::Sender<Done>,
) -> SenderStats {
    let nsock = socks.len();
    let mut w = Wheel {
        socks,
        tones,
        slots: (0..period_ms)
            .map(|_| (0..nsock).map(|_| Vec::new()).collect())
            .collect(),
        next_slot: 0,
        active: 0,
        // SAFETY: all-zero is a valid iovec / mmsghdr.
        iov: vec![unsafe { std::mem::zeroed() }; 2 * MAX_BATCH],
        hdr: vec![unsafe { std::mem::zeroed() }; MAX_BATCH],
        stats: SenderStats::default(),
        done,
    };
    let tid = gettid();
    let mut t0 = Instant::now();
    let tick_len = Duration::from_millis(1);
    let mut tick: u64 = 0;
    let mut finishing = false;
    loop {
        // Wait for the next tick, taking commands meanwhile.
        let due = t0 + tick_len * tick as u32;
        loop {
            let now = Instant::now();
            let cmd = if w.active == 0 && !finishing {
                // Idle: block until a stream arrives, then restart the clock.
                let c = cmds.recv().ok();
                t0 = Instant::now() - tick_len * tick as u32;
                c
            } else if now < due {
                match cmds.recv_timeout(due - now) {
                    Ok(c) => Some(c),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        finishing = true;
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                        break;
                    }
                }
            } else {
                match cmds.try_recv() {
                    Ok(c) => Some(c),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        finishing = true;
                        break;
                    }
                }
            };
            match cmd {
                Some(Cmd::Add(s)) => w.add(s),
                Some(Cmd::Finish) | None => finishing = true,
            }
            if finishing && w.active == 0 {
                break;
            }
        }
        if finishing && w.active == 0 {
            break;
        }
        let now = Instant::now();
        let due = t0 + tick_len * tick as u32;
        let lag = now.saturating_duration_since(due);
        if w.stats.first_send.is_some() {
            w.stats.max_lag = w.stats.max_lag.max(lag);
            if lag > Duration::from_millis(5) {
                w.stats.late_ticks += 1;
            }
        }
        w.tick((tick % period_ms as u64) as usize);
        tick += 1;
    }
    w.stats.cpu = thread_cpu(tid);
    w.stats
}

/// User and system CPU seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub user: f64,
    pub sys: f64,
}

impl CpuTimes {
    pub fn total(&self) -> f64 {
        self.user + self.sys
    }
    pub fn since(&self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user - earlier.user,
            sys: self.sys - earlier.sys,
        }
    }
}

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// utime and stime (fields 14 and 15) of a `/proc/.../stat` file, in
/// seconds. The kernel reports them in clock ticks (usually 10 ms).
pub fn proc_cpu(path: &str) -> CpuTimes {
    let Ok(text) = std::fs::read_to_string(path) else {
        return CpuTimes::default();
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 -> index 11.
    let tick = clk_tck();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / tick;
    CpuTimes {
        user: get(11),
        sys: get(12),
    }
}

/// A thread's CPU from `/proc/self/task/<tid>/stat`.
pub fn thread_cpu(tid: i32) -> CpuTimes {
    proc_cpu(&format!("/proc/self/task/{tid}/stat"))
}

/// The whole process's CPU from `/proc/self/stat`.
pub fn process_cpu() -> CpuTimes {
    proc_cpu("/proc/self/stat")
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// `n` UDP sockets for sending, bound to `ip` on port `base + 2*i` (even
/// ports, as RTP uses), or on ephemeral ports when `base` is 0.
pub fn sender_sockets(
    ip: std::net::Ipv4Addr,
    n: usize,
    base: u16,
) -> std::io::Result<Vec<UdpSocket>> {
    (0..n)
        .map(|i| {
            let port = if base == 0 { 0 } else { base + 2 * i as u16 };
            let s = UdpSocket::bind(SocketAddrV4::new(ip, port))?;
            set_sndbuf(&s, 4 << 20);
            Ok(s)
        })
        .collect()
}

fn set_sndbuf(s: &UdpSocket, bytes: i32) {
    // SAFETY: setsockopt reads `bytes` for its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// Percentile (0..=100) of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `HOST:PORT` resolved to its first IPv4 address; exits with a message
/// (status 2) when it has none.
pub fn resolve_v4(text: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(std::net::SocketAddr::is_ipv4))
        .unwrap_or_else(|| {
            eprintln!("cannot resolve {text} to an IPv4 address");
            std::process::exit(2)
        })
}
