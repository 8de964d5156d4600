//! The rtpengine counterpart of `examples/loadgen.rs` (issue 6): drives
//! rtpengine's ng control protocol with the same call pattern and the same
//! RTP sender, so that its CPU per recorded call can be set beside ours.
//!
//!     cargo run --release --example rtpengine_load -- --calls N --cps R --talk S
//!         --ng 127.0.0.1:22223 --recording-dir DIR [--pid PID] [--sender-sockets 16]
//!         [--delete-after MS]
//!
//! Each call n (started at R calls per second) has two sides: A sends from
//! sender socket `2n % nsock`, B from `(2n+1) % nsock`. `offer` (from-tag
//! "a", an SDP naming A's port, `record call: yes`) returns the port B must
//! send to; `answer` (to-tag "b", an SDP naming B's port) returns the port A
//! must send to. Then A's stream (1000 Hz) and B's (400 Hz), S * 50 packets
//! of 20 ms PCMU each, are paced by the shared sender thread
//! (`examples/common/sender.rs`). `--delete-after` ms (default 100) after
//! both are sent, `delete`. The delay stands for the signalling path (a
//! BYE reaches the proxy that sends `delete` after the last RTP packet):
//! with `--delete-delay=0`, a `delete` sent the moment the last packet
//! leaves races it (rtpengine's control thread tears the call down while the
//! packet still waits in the call's socket for a media thread): on a busy
//! 2-core machine, 3 runs of 100 calls in 5 lost the last packet of one
//! stream (none in 4 runs with 100 ms). An ng
//! command without reply is sent again (same cookie) after 1 s; an error
//! reply or a second silence fails the call.
//!
//! rtpengine relays each packet to the other side, i.e. back to our sender
//! sockets, which nobody reads: their receive buffers fill and the kernel
//! drops the rest. That costs rtpengine nothing more than a normal relay.
//!
//! At the end (2 s after the last `delete`) it counts the records of every
//! `*.pcap` under `DIR/pcaps` (all records; the summary also splits them
//! into RTP / RTCP / other and counts the distinct flows). With `--pid`,
//! the CPU (user + sys, /proc/PID/stat) that process used from just before
//! the first call to 2 s after the last `delete`.
//!
//! Prints a summary and, last, one JSON line. Exits 1 on any failed call or
//! if fewer packets were recorded than sent.

#[path = "common/sender.rs"]
mod sender;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Wait for an ng reply before sending the command again (once).
const NG_RETRY: Duration = Duration::from_secs(1);
/// Pause after the last `delete` before counting (files closed, flushed).
const SETTLE: Duration = Duration::from_secs(2);

struct Args {
    calls: usize,
    cps: f64,
    talk: f64,
    ng: SocketAddr,
    recording_dir: PathBuf,
    pid: Option<u32>,
    sender_sockets: usize,
    delete_after: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: rtpengine_load --calls N --cps R --talk S --ng HOST:PORT --recording-dir DIR \
         [--pid PID] [--sender-sockets 16] [--delete-after 100]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let (mut calls, mut cps, mut talk) = (0usize, 0f64, 0f64);
    let mut ng = None;
    let mut recording_dir = None;
    let mut pid = None;
    let mut sender_sockets = 16usize;
    let mut delete_after_ms = 100u64;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--calls" => calls = val().parse().unwrap_or_else(|_| usage()),
            "--cps" => cps = val().parse().unwrap_or_else(|_| usage()),
            "--talk" => talk = val().parse().unwrap_or_else(|_| usage()),
            "--ng" => ng = Some(val()),
            "--recording-dir" => recording_dir = Some(PathBuf::from(val())),
            "--pid" => pid = Some(val().parse().unwrap_or_else(|_| usage())),
            "--sender-sockets" => sender_sockets = val().parse().unwrap_or_else(|_| usage()),
            "--delete-after" => delete_after_ms = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let (Some(ng_text), Some(recording_dir)) = (ng, recording_dir) else {
        usage()
    };
    if calls == 0 || cps <= 0.0 || talk <= 0.0 || sender_sockets == 0 {
        usage();
    }
    let ng = sender::resolve_v4(&ng_text);
    Args {
        calls,
        cps,
        talk,
        ng,
        recording_dir,
        pid,
        sender_sockets,
        delete_after: Duration::from_millis(delete_after_ms),
    }
}

// ---------------------------------------------------------------- bencode

/// A bencoded value. Dictionaries keep their keys sorted (as bencode requires).
#[derive(Debug, Clone, PartialEq)]
enum Ben {
    Int(i64),
    Str(Vec<u8>),
    List(Vec<Ben>),
    Dict(BTreeMap<Vec<u8>, Ben>),
}

impl Ben {
    fn str(s: &str) -> Ben {
        Ben::Str(s.as_bytes().to_vec())
    }

    fn dict(pairs: &[(&str, Ben)]) -> Ben {
        Ben::Dict(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        )
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Ben::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Ben::Str(s) => {
                out.extend_from_slice(format!("{}:", s.len()).as_bytes());
                out.extend_from_slice(s);
            }
            Ben::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Ben::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Ben::Str(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value at the start of `b`: (value, bytes used).
    fn decode(b: &[u8]) -> Result<(Ben, usize), String> {
        match b.first() {
            None => Err("truncated".into()),
            Some(b'i') => {
                let end = b
                    .iter()
                    .position(|&c| c == b'e')
                    .ok_or("unterminated integer")?;
                let text = std::str::from_utf8(&b[1..end]).map_err(|e| e.to_string())?;
                let i = text.parse().map_err(|_| format!("bad integer {text:?}"))?;
                Ok((Ben::Int(i), end + 1))
            }
            Some(b'l') => {
                let mut pos = 1;
                let mut items = Vec::new();
                while b.get(pos) != Some(&b'e') {
                    let (v, n) = Ben::decode(&b[pos..])?;
                    items.push(v);
                    pos += n;
                }
                Ok((Ben::List(items), pos + 1))
            }
            Some(b'd') => {
                let mut pos = 1;
                let mut map = BTreeMap::new();
                while b.get(pos) != Some(&b'e') {
                    let (k, n) = Ben::decode(&b[pos..])?;
                    let Ben::Str(k) = k else {
                        return Err("dictionary key is not a string".into());
                    };
                    pos += n;
                    let (v, n) = Ben::decode(&b[pos..])?;
                    map.insert(k, v);
                    pos += n;
                }
                Ok((Ben::Dict(map), pos + 1))
            }
            Some(c) if c.is_ascii_digit() => {
                let colon = b
                    .iter()
                    .position(|&c| c == b':')
                    .ok_or("string without ':'")?;
                let text = std::str::from_utf8(&b[..colon]).map_err(|e| e.to_string())?;
                let len: usize = text.parse().map_err(|_| format!("bad length {text:?}"))?;
                let end = colon + 1 + len;
                if end > b.len() {
                    return Err("truncated string".into());
                }
                Ok((Ben::Str(b[colon + 1..end].to_vec()), end))
            }
            Some(c) => Err(format!("unexpected byte {c:#04x}")),
        }
    }

    /// The string value of `key` in a dictionary.
    fn get_str(&self, key: &str) -> Option<String> {
        match self {
            Ben::Dict(d) => match d.get(key.as_bytes()) {
                Some(Ben::Str(s)) => Some(String::from_utf8_lossy(s).into_owned()),
                _ => None,
            },
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- ng client

struct Ng {
    sock: UdpSocket,
    server: SocketAddr,
    /// Cookies are `<prefix>-<n>`: rtpengine caches its replies by cookie,
    /// so they must not repeat, within a run or across runs.
    cookie_prefix: String,
    next_cookie: u64,
    /// Commands sent again after a silent second.
    retries: u64,
}

impl Ng {
    fn new(server: SocketAddr, cookie_prefix: String) -> std::io::Result<Ng> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        Ok(Ng {
            sock,
            server,
            cookie_prefix,
            next_cookie: 1,
            retries: 0,
        })
    }

    /// Sends one command and waits for its reply (one resend, same cookie,
    /// after [`NG_RETRY`]). Returns the reply dictionary if its result is
    /// "ok" (or "pong"), else the reason.
    fn call(&mut self, cmd: &Ben) -> Result<Ben, String> {
        let cookie = format!("{}-{}", self.cookie_prefix, self.next_cookie);
        self.next_cookie += 1;
        let mut msg = format!("{cookie} ").into_bytes();
        cmd.encode(&mut msg);
        let mut buf = vec![0u8; 65536];
        for attempt in 0..2 {
            if attempt > 0 {
                self.retries += 1;
            }
            self.sock
                .send_to(&msg, self.server)
                .map_err(|e| format!("ng send: {e}"))?;
            let deadline = Instant::now() + NG_RETRY;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.sock
                    .set_read_timeout(Some(left))
                    .map_err(|e| e.to_string())?;
                let n = match self.sock.recv_from(&mut buf) {
                    Ok((n, _)) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(format!("ng receive: {e}")),
                };
                let reply = &buf[..n];
                let Some(sp) = reply.iter().position(|&c| c == b' ') else {
                    continue;
                };
                if &reply[..sp] != cookie.as_bytes() {
                    continue; // a late reply to an earlier command
                }
                let (dict, _) =
                    Ben::decode(&reply[sp + 1..]).map_err(|e| format!("bad ng reply: {e}"))?;
                return match dict.get_str("result").as_deref() {
                    Some("ok" | "pong") => Ok(dict),
                    Some(r) => Err(format!(
                        "{r}: {}",
                        dict.get_str("error-reason").unwrap_or_default()
                    )),
                    None => Err("ng reply without result".into()),
                };
            }
        }
        Err("no ng reply".into())
    }
}

fn sdp(n: usize, port: u16) -> String {
    format!(
        "v=0\r\no=rtpengine_load {n} 1 IN IP4 127.0.0.1\r\ns=rtpengine_load\r\nc=IN IP4 127.0.0.1\r\n\
t=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// Where to send, from a returned SDP: its (first) audio port, at its
/// connection address (127.0.0.1 if none or not IPv4).
fn sdp_dest(sdp: &str) -> Result<SocketAddrV4, String> {
    let mut ip = Ipv4Addr::LOCALHOST;
    let mut port = None;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            if port.is_none() {
                if let Ok(a) = c.trim().parse() {
                    ip = a;
                }
            }
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            if port.is_none() {
                let p = m.split_whitespace().next().unwrap_or("");
                port = Some(p.parse::<u16>().map_err(|_| format!("bad m= port {p:?}"))?);
            }
        }
    }
    match port {
        Some(0) => Err("m=audio port 0".into()),
        Some(p) => Ok(SocketAddrV4::new(ip, p)),
        None => Err("no m=audio line in the returned SDP".into()),
    }
}

// ---------------------------------------------------------------- calls

struct Call {
    call_id: String,
    sent: [u32; 2],
    errors: u32,
    streams_done: u8,
    /// Started in rtpengine (needs a delete).
    offered: bool,
    finished: bool,
    fail: Option<String>,
}

impl Call {
    fn fail(&mut self, why: impl Into<String>) {
        if self.fail.is_none() {
            self.fail = Some(why.into());
        }
    }
}

struct Run {
    ng: Ng,
    calls: Vec<Call>,
    ports: Vec<u16>,
    cmd: mpsc::Sender<sender::Cmd>,
    packets: u32,
    finished: usize,
    delete_after: Duration,
    /// Calls whose streams are sent, waiting for their `delete` (in order).
    pending: VecDeque<(Instant, usize)>,
}

impl Run {
    fn start(&mut self, n: usize) {
        let nsock = self.ports.len();
        let sock = [(2 * n) % nsock, (2 * n + 1) % nsock];
        let call_id = self.calls[n].call_id.clone();
        let offer = Ben::dict(&[
            ("command", Ben::str("offer")),
            ("call-id", Ben::str(&call_id)),
            ("from-tag", Ben::str("a")),
            ("sdp", Ben::str(&sdp(n, self.ports[sock[0]]))),
            ("record call", Ben::str("yes")),
        ]);
        let to_b = self
            .ng
            .call(&offer)
            .and_then(|r| sdp_dest(&r.get_str("sdp").ok_or("offer reply without sdp")?));
        let to_b = match to_b {
            Ok(d) => d,
            Err(e) => {
                self.calls[n].fail(format!("offer: {e}"));
                self.finish(n);
                return;
            }
        };
        self.calls[n].offered = true;
        let answer = Ben::dict(&[
            ("command", Ben::str("answer")),
            ("call-id", Ben::str(&call_id)),
            ("from-tag", Ben::str("a")),
            ("to-tag", Ben::str("b")),
            ("sdp", Ben::str(&sdp(n, self.ports[sock[1]]))),
        ]);
        let to_a = self
            .ng
            .call(&answer)
            .and_then(|r| sdp_dest(&r.get_str("sdp").ok_or("answer reply without sdp")?));
        let to_a = match to_a {
            Ok(d) => d,
            Err(e) => {
                self.calls[n].fail(format!("answer: {e}"));
                self.finish(n);
                return;
            }
        };
        for (side, dest) in [to_a, to_b].into_iter().enumerate() {
            let _ = self.cmd.send(sender::Cmd::Add(sender::StreamSpec {
                id: (2 * n + side) as u64,
                dest,
                socket: sock[side],
                payload_type: 0,
                ssrc: ssrc_of(n, side),
                first_seq: first_seq_of(n, side),
                first_ts: (n as u32).wrapping_mul(2_654_435_761) ^ ((side as u32) << 30),
                tone: side,
                packets: self.packets,
            }));
        }
    }

    fn on_done(&mut self, d: sender::Done) {
        let n = (d.id / 2) as usize;
        let c = &mut self.calls[n];
        c.sent[(d.id % 2) as usize] = d.sent;
        c.errors += d.errors;
        c.streams_done += 1;
        if c.errors > 0 {
            c.fail(format!("{} send errors", c.errors));
        }
        if c.streams_done == 2 {
            if self.delete_after.is_zero() {
                self.finish(n);
            } else {
                self.pending
                    .push_back((Instant::now() + self.delete_after, n));
            }
        }
    }

    /// Deletes the calls whose delay is over; returns when the next is due.
    fn due_deletes(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(due, n)) = self.pending.front() {
            if due > now {
                return Some(due);
            }
            self.pending.pop_front();
            self.finish(n);
        }
        None
    }

    /// Ends call n: `delete` if rtpengine has it.
    fn finish(&mut self, n: usize) {
        if self.calls[n].finished {
            return;
        }
        self.calls[n].finished = true;
        self.finished += 1;
        if !self.calls[n].offered {
            return;
        }
        let delete = Ben::dict(&[
            ("command", Ben::str("delete")),
            ("call-id", Ben::str(&self.calls[n].call_id)),
            ("from-tag", Ben::str("a")),
        ]);
        if let Err(e) = self.ng.call(&delete) {
            self.calls[n].fail(format!("delete: {e}"));
        }
    }
}

fn ssrc_of(n: usize, side: usize) -> u32 {
    0x5e00_0000 | ((2 * n + side) as u32 & 0x00ff_ffff)
}

fn first_seq_of(n: usize, side: usize) -> u16 {
    ((n * 7919 + side * 104_729) & 0xffff) as u16
}

// ---------------------------------------------------------------- pcap

#[derive(Debug, Default)]
struct PcapCount {
    files: usize,
    records: u64,
    rtp: u64,
    rtcp: u64,
    other: u64,
    /// Distinct (file, src, dst) UDP flows.
    flows: usize,
    /// Files that ended inside a record, or did not parse.
    bad_files: usize,
    linktypes: BTreeMap<u32, usize>,
    /// RTP records per SSRC, and the sequence number of the last one.
    streams: HashMap<u32, (u64, u16)>,
}

fn pcap_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            pcap_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "pcap") {
            out.push(p);
        }
    }
}

/// The UDP payload of a captured packet, with (src, dst), if it is IPv4/UDP.
fn udp_of(linktype: u32, pkt: &[u8]) -> Option<(&[u8], [u8; 12])> {
    let ip = match linktype {
        101 | 228 | 12 | 14 => pkt, // raw IP
        1 if pkt.len() > 14 && pkt[12..14] == [0x08, 0x00] => &pkt[14..],
        _ => return None,
    };
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let udp = ip.get(ihl..)?;
    if udp.len() < 8 {
        return None;
    }
    let mut flow = [0u8; 12];
    flow[..8].copy_from_slice(&ip[12..20]);
    flow[8..12].copy_from_slice(&udp[..4]);
    Some((&udp[8..], flow))
}

fn count_pcaps(dir: &Path) -> PcapCount {
    let mut files = Vec::new();
    pcap_files(dir, &mut files);
    files.sort();
    let mut c = PcapCount::default();
    let mut flows = HashSet::new();
    for (fi, path) in files.iter().enumerate() {
        c.files += 1;
        let Ok(data) = std::fs::read(path) else {
            c.bad_files += 1;
            continue;
        };
        if data.len() < 24 {
            c.bad_files += 1;
            continue;
        }
        let magic = u32::from_le_bytes(data[0..4].try_into().unwrap());
        let le = match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d => true,
            0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
            _ => {
                c.bad_files += 1;
                continue;
            }
        };
        let u32_at = |b: &[u8]| {
            let a: [u8; 4] = b[..4].try_into().unwrap();
            if le {
                u32::from_le_bytes(a)
            } else {
                u32::from_be_bytes(a)
            }
        };
        let linktype = u32_at(&data[20..24]) & 0x0fff_ffff;
        *c.linktypes.entry(linktype).or_default() += 1;
        let mut pos = 24;
        while pos < data.len() {
            if pos + 16 > data.len() {
                c.bad_files += 1;
                break;
            }
            let incl = u32_at(&data[pos + 8..pos + 12]) as usize;
            let start = pos + 16;
            if start + incl > data.len() {
                c.bad_files += 1;
                break;
            }
            let pkt = &data[start..start + incl];
            c.records += 1;
            match udp_of(linktype, pkt) {
                Some((payload, flow)) if payload.len() >= 8 && payload[0] >> 6 == 2 => {
                    flows.insert((fi, flow));
                    // RTCP packet types 200..=207 sit where RTP has M + PT.
                    if (200..=207).contains(&payload[1]) {
                        c.rtcp += 1;
                    } else {
                        c.rtp += 1;
                        let ssrc = u32::from_be_bytes(payload[8..12].try_into().unwrap());
                        let seq = u16::from_be_bytes([payload[2], payload[3]]);
                        let e = c.streams.entry(ssrc).or_insert((0, seq));
                        *e = (e.0 + 1, seq);
                    }
                }
                _ => c.other += 1,
            }
            pos = start + incl;
        }
    }
    c.flows = flows.len();
    c
}

// ---------------------------------------------------------------- main

fn main() {
    let args = parse_args();
    let packets = (args.talk * 1000.0 / sender::PTIME_MS as f64).round() as u32;
    let socks =
        sender::sender_sockets(Ipv4Addr::LOCALHOST, args.sender_sockets, 0).unwrap_or_else(|e| {
            eprintln!("rtpengine_load: binding the RTP sender sockets: {e}");
            std::process::exit(2)
        });
    let ports: Vec<u16> = socks
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0))
        .collect();
    let tones = vec![
        sender::ulaw_tone(1000, 8000.0),
        sender::ulaw_tone(400, 8000.0),
    ];
    let run_id = format!("{}-{}", std::process::id(), epoch_secs());
    let mut ng = Ng::new(args.ng, run_id.clone()).unwrap_or_else(|e| {
        eprintln!("rtpengine_load: ng socket: {e}");
        std::process::exit(2)
    });
    wait_ready(&mut ng);
    let (cmd, done_rx, sender_thread) = sender::spawn(socks, tones, sender::PTIME_MS);
    let mut run = Run {
        ng,
        calls: (0..args.calls)
            .map(|n| Call {
                call_id: format!("rtpengine-load-{run_id}-{n}"),
                sent: [0, 0],
                errors: 0,
                streams_done: 0,
                offered: false,
                finished: false,
                fail: None,
            })
            .collect(),
        ports,
        cmd,
        packets,
        finished: 0,
        delete_after: args.delete_after,
        pending: VecDeque::new(),
    };
    println!(
        "rtpengine_load: {} calls at {} cps, {} s talk ({} packets per stream), ng {}, {} sender sockets, delete {} ms after the last packet",
        args.calls,
        args.cps,
        args.talk,
        packets,
        args.ng,
        args.sender_sockets,
        args.delete_after.as_millis()
    );
    let stat_path = args.pid.map(|p| format!("/proc/{p}/stat"));
    let target0 = stat_path.as_deref().map(sender::proc_cpu);
    let self0 = sender::process_cpu();
    let t0 = Instant::now();
    let mut next = 0usize;
    while run.finished < args.calls {
        let now = Instant::now();
        while next < args.calls && now >= t0 + Duration::from_secs_f64(next as f64 / args.cps) {
            run.start(next);
            next += 1;
        }
        let next_delete = run.due_deletes(now);
        let mut wake = now + Duration::from_secs(1);
        if next < args.calls {
            wake = wake.min(t0 + Duration::from_secs_f64(next as f64 / args.cps));
        }
        if let Some(d) = next_delete {
            wake = wake.min(d);
        }
        let wait = wake.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(wait) {
            Ok(d) => {
                run.on_done(d);
                while let Ok(d) = done_rx.try_recv() {
                    run.on_done(d);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eprintln!("rtpengine_load: the sender thread ended early");
                break;
            }
        }
    }
    let last_delete = t0.elapsed();
    std::thread::sleep(SETTLE);
    let target_cpu = match (&stat_path, target0) {
        (Some(p), Some(c0)) => Some(sender::proc_cpu(p).since(c0)),
        _ => None,
    };
    let self_cpu = sender::process_cpu().since(self0);
    let wall = t0.elapsed().as_secs_f64();
    let _ = run.cmd.send(sender::Cmd::Finish);
    let tx = sender_thread.join().unwrap_or_default();

    let pc = count_pcaps(&args.recording_dir.join("pcaps"));
    let calls = &run.calls;
    let failed: Vec<&Call> = calls.iter().filter(|c| c.fail.is_some()).collect();
    let ok = calls.len() - failed.len();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for c in &failed {
        *reasons
            .entry(c.fail.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let sent: u64 = calls
        .iter()
        .map(|c| u64::from(c.sent[0]) + u64::from(c.sent[1]))
        .sum();
    let loss = sent as i64 - pc.records as i64;
    // Streams with fewer RTP packets recorded than sent, their missing
    // packets, and how many of them lack their last packet.
    let (mut short, mut short_missing, mut short_tail) = (0u64, 0u64, 0u64);
    for (n, c) in calls.iter().enumerate() {
        for side in 0..2 {
            let sent = c.sent[side];
            let (got, last) = pc.streams.get(&ssrc_of(n, side)).copied().unwrap_or((0, 0));
            if got < u64::from(sent) {
                short += 1;
                short_missing += u64::from(sent) - got;
                let want_last = first_seq_of(n, side).wrapping_add(sent.wrapping_sub(1) as u16);
                if got == 0 || last != want_last {
                    short_tail += 1;
                }
            }
        }
    }
    let target_s = target_cpu.map(|c| c.total());
    let us_per_packet = target_s.filter(|_| sent > 0).map(|s| s * 1e6 / sent as f64);
    let ms_per_call = target_s.filter(|_| ok > 0).map(|s| s * 1e3 / ok as f64);

    println!(
        "calls: {} attempted, {ok} ok, {} failed; {} ng commands resent",
        calls.len(),
        failed.len(),
        run.ng.retries
    );
    for (r, n) in &reasons {
        println!("  failed: {n} x {r}");
    }
    println!(
        "packets: sent {sent} (expected {}), recorded {} in {} pcap files, loss {loss}, send errors {}",
        calls.len() as u64 * 2 * u64::from(packets),
        pc.records,
        pc.files,
        tx.errors
    );
    println!(
        "pcap records: {} RTP, {} RTCP, {} other; {} distinct UDP flows ({:.2} per file); link types {:?}; {} files truncated or unreadable",
        pc.rtp,
        pc.rtcp,
        pc.other,
        pc.flows,
        if pc.files > 0 { pc.flows as f64 / pc.files as f64 } else { 0.0 },
        pc.linktypes,
        pc.bad_files
    );
    println!(
        "streams recorded short: {short} (missing {short_missing} packets), {short_tail} of them lack their last packet"
    );
    match (target_cpu, args.pid) {
        (Some(c), Some(pid)) => println!(
            "target pid {pid}: cpu {:.2} s (user {:.2}, sys {:.2}) over {wall:.1} s = {:.2} us/packet, {:.2} ms/recorded call",
            c.total(),
            c.user,
            c.sys,
            us_per_packet.unwrap_or(0.0),
            ms_per_call.unwrap_or(0.0)
        ),
        _ => println!("target cpu: not measured (give --pid)"),
    }
    println!(
        "rtpengine_load process: cpu {:.2} s (user {:.2}, sys {:.2}); sender {:.0} packets/s, max tick lag {:.1} ms; wall {wall:.1} s (last delete at {:.1} s, then {} s settle)",
        self_cpu.total(),
        self_cpu.user,
        self_cpu.sys,
        tx.rate(),
        tx.max_lag.as_secs_f64() * 1e3,
        last_delete.as_secs_f64(),
        SETTLE.as_secs()
    );
    let json = serde_json::json!({
        "calls": calls.len(),
        "failed": failed.len(),
        "packets_sent": sent,
        "packets_recorded": pc.records,
        "pcap_files": pc.files,
        "target_cpu_s": target_s,
        "target_us_per_packet": us_per_packet,
        "target_ms_per_call": ms_per_call,
        "loadgen_cpu_s": self_cpu.total(),
        "wall_s": wall,
    });
    println!("{json}");
    let bad = !failed.is_empty() || pc.records < sent;
    std::process::exit(if bad { 1 } else { 0 });
}

/// Waits (up to 10 s) for rtpengine to answer a `ping`: a cold start on a
/// busy machine can take more than the 2 s an offer would wait.
fn wait_ready(ng: &mut Ng) {
    let t0 = Instant::now();
    let ping = Ben::dict(&[("command", Ben::str("ping"))]);
    loop {
        match ng.call(&ping) {
            Ok(_) => {
                ng.retries = 0;
                return;
            }
            Err(e) if t0.elapsed() > Duration::from_secs(10) => {
                eprintln!(
                    "rtpengine_load: no answer to ping from {} in 10 s: {e}",
                    ng.server
                );
                std::process::exit(2)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Seconds since the epoch, to make the call ids of successive runs differ.
fn epoch_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trip() {
        let v = Ben::dict(&[
            ("sdp", Ben::str("v=0\r\n")),
            ("command", Ben::str("offer")),
            ("n", Ben::Int(-3)),
            ("l", Ben::List(vec![Ben::str("a"), Ben::Int(7)])),
        ]);
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(
            out,
            b"d7:command5:offer1:ll1:ai7ee1:ni-3e3:sdp5:v=0\r\ne".to_vec()
        );
        assert_eq!(Ben::decode(&out).unwrap(), (v, out.len()));
    }

    #[test]
    fn sdp_port() {
        let d = sdp_dest("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20004 RTP/AVP 0\r\n").unwrap();
        assert_eq!(d, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 20004));
    }
}
