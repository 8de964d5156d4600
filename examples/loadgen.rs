//! SIPREC load generator: an independent recording client (SRC) that sets up
//! N recording sessions, sends their RTP, ends them, and checks what the
//! server recorded.
//!
//!     cargo run --release --example loadgen -- --calls N --cps R --talk S --target HOST:PORT
//!         [--tcp] [--http ADDR:PORT] [--recordings DIR] [--rtp-base PORT] [--sender-sockets 16]
//!         [--publish-wait 30]
//!
//! Each call: INVITE (UDP, or one shared TCP connection with `--tcp`) with a
//! `multipart/mixed` body: SDP with two sendonly PCMU m-lines (labels 1 and
//! 2) and RFC 7865 metadata (caller sends label 1, callee label 2); unique
//! Call-ID `loadgen-<run>-<n>`. UDP INVITEs are retransmitted after 500 ms,
//! 1 s, 2 s... (RFC 3261 timer A, until a provisional or final response,
//! timer B = 32 s). On 200: ACK, then two RTP streams of 20 ms PCMU packets
//! for S seconds (caller 1000 Hz, callee 400 Hz). When both streams are sent,
//! BYE (so BYEs follow the INVITEs' pace), and wait for its 200.
//!
//! All the RTP of all calls is paced by one sender thread
//! (`examples/common/sender.rs`, a 1 ms timer wheel, `sendmmsg` batches from
//! `--sender-sockets` sockets, source ports `--rtp-base`, `+2`, ... or
//! ephemeral). The SDP offer names the port each stream is sent from.
//!
//! Verification, with `--http` (the server's API): `GET
//! /api/v1/recordings/<call-id>` for each call (retried up to 30 s for
//! publication); with `--recordings DIR`: the drop's
//! `YYYY/MM/DD/*/metadata.json`, matched by `call_id`. A recording verifies
//! when its status is `complete`, each stream's `packets_received` equals
//! the packets sent on that label, and each file's `duration_ms` is within
//! 5% (at least 100 ms) of the call's length (200 OK received → BYE sent).
//!
//! Prints a summary and, last, one JSON line. Exits 1 on any failed call,
//! lost packet, send error or mismatch.

#[path = "common/sender.rs"]
mod sender;

use srs::sip::message::{self, Message, Method, StartLine};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Timer T1 (RFC 3261): first retransmission interval.
const T1: Duration = Duration::from_millis(500);
/// Timer T2: the cap of non-INVITE retransmission intervals.
const T2: Duration = Duration::from_secs(4);
/// Timers B and F: transaction timeout.
const TIMEOUT: Duration = Duration::from_secs(32);
/// How long recordings may take to be published, by default
/// (`--publish-wait S`: more when Opus or stereo outputs are made after
/// the calls).
const PUBLISH_WAIT: Duration = Duration::from_secs(30);

struct Args {
    calls: usize,
    cps: f64,
    talk: f64,
    target: SocketAddr,
    target_text: String,
    tcp: bool,
    http: Option<String>,
    recordings: Option<PathBuf>,
    rtp_base: u16,
    sender_sockets: usize,
    publish_wait: Duration,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --calls N --cps R --talk S --target HOST:PORT [--tcp] [--http ADDR:PORT] \
         [--recordings DIR] [--rtp-base PORT] [--sender-sockets 16] [--publish-wait 30]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let (mut calls, mut cps, mut talk) = (0usize, 0f64, 0f64);
    let mut target = None;
    let mut tcp = false;
    let mut http = None;
    let mut recordings = None;
    let mut rtp_base = 0u16;
    let mut sender_sockets = 16usize;
    let mut publish_wait = PUBLISH_WAIT;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--calls" => calls = val().parse().unwrap_or_else(|_| usage()),
            "--cps" => cps = val().parse().unwrap_or_else(|_| usage()),
            "--talk" => talk = val().parse().unwrap_or_else(|_| usage()),
            "--target" => target = Some(val()),
            "--tcp" => tcp = true,
            "--http" => http = Some(val()),
            "--recordings" => recordings = Some(PathBuf::from(val())),
            "--rtp-base" => rtp_base = val().parse().unwrap_or_else(|_| usage()),
            "--sender-sockets" => sender_sockets = val().parse().unwrap_or_else(|_| usage()),
            "--publish-wait" => {
                publish_wait = Duration::from_secs(val().parse().unwrap_or_else(|_| usage()))
            }
            _ => usage(),
        }
    }
    let Some(target_text) = target else { usage() };
    if calls == 0 || cps <= 0.0 || talk <= 0.0 || sender_sockets == 0 {
        usage();
    }
    let target = sender::resolve_v4(&target_text);
    Args {
        calls,
        cps,
        talk,
        target,
        target_text,
        tcp,
        http,
        recordings,
        rtp_base,
        sender_sockets,
        publish_wait,
    }
}

// ---------------------------------------------------------------- SIP text

const BOUNDARY: &str = "loadgen-boundary";

fn metadata_xml(n: usize) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
<datamode>complete</datamode>
<session session_id="s{n}"><sipSessionID>loadgen-cs-{n}</sipSessionID></session>
<participant participant_id="caller{n}"><nameID aor="sip:caller{n}@loadgen.example"><name>Caller {n}</name></nameID></participant>
<participant participant_id="callee{n}"><nameID aor="sip:agent{n}@loadgen.example"><name>Agent {n}</name></nameID></participant>
<stream stream_id="st{n}a" session_id="s{n}"><label>1</label></stream>
<stream stream_id="st{n}b" session_id="s{n}"><label>2</label></stream>
<participantstreamassoc participant_id="caller{n}"><send>st{n}a</send><recv>st{n}b</recv></participantstreamassoc>
<participantstreamassoc participant_id="callee{n}"><send>st{n}b</send><recv>st{n}a</recv></participantstreamassoc>
</recording>
"#
    )
}

/// Everything needed to write one call's requests.
struct Dialog {
    call_id: String,
    local: SocketAddr,
    transport: &'static str,
    target_text: String,
    from_tag: String,
}

impl Dialog {
    fn via(&self, branch: &str) -> String {
        format!(
            "Via: SIP/2.0/{} {};branch=z9hG4bK{branch};rport",
            self.transport, self.local
        )
    }

    fn invite(&self, n: usize, ports: [u16; 2], media_ip: Ipv4Addr, branch: &str) -> Vec<u8> {
        let sdp = format!(
            "v=0\r\no=loadgen {n} 1 IN IP4 {media_ip}\r\ns=loadgen\r\nc=IN IP4 {media_ip}\r\nt=0 0\r\n\
m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=label:1\r\na=sendonly\r\n\
m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=label:2\r\na=sendonly\r\n",
            ports[0], ports[1]
        );
        let body = format!(
            "--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n--{BOUNDARY}\r\n\
Content-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n{}\r\n--{BOUNDARY}--\r\n",
            metadata_xml(n)
        );
        let transport_param = if self.transport == "TCP" {
            ";transport=tcp"
        } else {
            ""
        };
        format!(
            "INVITE sip:srs@{t} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nFrom: <sip:src@{ip}>;tag={tag}\r\n\
To: <sip:srs@{t}>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:src@{local}{transport_param}>;+sip.src\r\n\
Require: siprec\r\nAccept: application/sdp, application/rs-metadata+xml\r\nUser-Agent: srs-loadgen\r\n\
Content-Type: multipart/mixed;boundary={BOUNDARY}\r\nContent-Length: {len}\r\n\r\n{body}",
            t = self.target_text,
            via = self.via(branch),
            ip = self.local.ip(),
            tag = self.from_tag,
            cid = self.call_id,
            local = self.local,
            len = body.len(),
        )
        .into_bytes()
    }

    /// An in-dialog request (ACK for a 2xx, BYE), or the ACK of a non-2xx
    /// final response (`uri` = the INVITE's, `branch` = the INVITE's).
    fn request(&self, method: &str, uri: &str, to: &str, cseq: u32, branch: &str) -> Vec<u8> {
        format!(
            "{method} {uri} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\nFrom: <sip:src@{}>;tag={}\r\nTo: {to}\r\n\
Call-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
            self.via(branch),
            self.local.ip(),
            self.from_tag,
            self.call_id
        )
        .into_bytes()
    }
}

/// A 200 OK to a request the server sent us (BYE, OPTIONS...).
fn ok_response(req: &Message) -> Vec<u8> {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in req.headers_named(name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// The URI of a Contact (or To) header value.
fn uri_of(value: &str) -> String {
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>')) {
        if a < b {
            return value[a + 1..b].to_string();
        }
    }
    value.split(';').next().unwrap_or(value).trim().to_string()
}

// ---------------------------------------------------------------- transport

enum Transport {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream, Vec<u8>),
}

impl Transport {
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Udp(s, to) => s.send_to(data, *to).map(|_| ()),
            Transport::Tcp(s, _) => s.write_all(data),
        }
    }

    /// Waits up to `timeout` for data, then takes everything queued:
    /// complete messages are appended to `out`.
    fn poll(&mut self, timeout: Duration, out: &mut Vec<Vec<u8>>) -> std::io::Result<()> {
        let timeout = timeout.max(Duration::from_micros(100));
        let mut buf = [0u8; 65536];
        match self {
            Transport::Udp(s, _) => {
                s.set_read_timeout(Some(timeout))?;
                loop {
                    match s.recv_from(&mut buf) {
                        Ok((n, _)) => out.push(buf[..n].to_vec()),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            return Ok(())
                        }
                        // ICMP port unreachable from an earlier send.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                        Err(e) => return Err(e),
                    }
                    s.set_read_timeout(Some(Duration::from_micros(1)))?;
                }
            }
            Transport::Tcp(s, acc) => {
                s.set_read_timeout(Some(timeout))?;
                match s.read(&mut buf) {
                    Ok(0) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the server closed the TCP connection",
                        ))
                    }
                    Ok(n) => acc.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(e),
                }
                while let Some(len) = frame_len(acc) {
                    out.push(acc.drain(..len).collect());
                }
                // Keep-alive CRLFs between messages.
                let skip = acc
                    .iter()
                    .take_while(|b| **b == b'\r' || **b == b'\n')
                    .count();
                acc.drain(..skip);
                Ok(())
            }
        }
    }
}

/// Length of the first complete message in a TCP stream buffer (framed by
/// Content-Length, RFC 3261 §18.3), if it is all there.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let b = &buf[skip..];
    let end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&b[..end]).ok()?;
    let mut len = 0usize;
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                len = value.trim().parse().unwrap_or(0);
            }
        }
    }
    (b.len() >= end + len).then_some(skip + end + len)
}

// ---------------------------------------------------------------- calls

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Inviting,
    Proceeding,
    Talking,
    Byeing,
    Done,
    Failed,
}

struct Call {
    dialog: Dialog,
    state: State,
    invite: Vec<u8>,
    invite_uri: String,
    invite_branch: String,
    invite_at: Option<Instant>,
    next_retx: Instant,
    retx_interval: Duration,
    retransmits: u32,
    to: String,
    remote_target: String,
    answered_at: Option<Instant>,
    setup_ms: Option<f64>,
    /// Sender socket per label.
    sockets: [usize; 2],
    sent: [u32; 2],
    send_errors: u32,
    streams_done: u8,
    ack: Vec<u8>,
    bye: Vec<u8>,
    bye_at: Option<Instant>,
    bye_next: Instant,
    bye_interval: Duration,
    fail: Option<String>,
}

impl Call {
    fn fail(&mut self, reason: impl Into<String>) {
        if self.fail.is_none() {
            self.fail = Some(reason.into());
        }
        self.state = State::Failed;
    }

    /// Call length as the server sees it: answer to BYE.
    fn length_ms(&self) -> Option<f64> {
        Some((self.bye_at? - self.answered_at?).as_secs_f64() * 1e3)
    }
}

struct Run {
    args: Args,
    run_id: String,
    calls: Vec<Call>,
    by_id: HashMap<String, usize>,
    transport: Transport,
    local_ip: Ipv4Addr,
    sender_ports: Vec<u16>,
    cmd: std::sync::mpsc::Sender<sender::Cmd>,
    packets_per_stream: u32,
    late_200: u64,
}

impl Run {
    fn send(&mut self, data: &[u8]) {
        if let Err(e) = self.transport.send(data) {
            eprintln!("loadgen: SIP send failed: {e}");
        }
    }

    fn start_call(&mut self, i: usize, now: Instant) {
        let n = i;
        let ports = self.calls[i].sockets.map(|s| self.sender_ports[s]);
        let branch = format!("-{}-{n}-inv", self.run_id);
        let invite = self.calls[i]
            .dialog
            .invite(n, ports, self.local_ip, &branch);
        let c = &mut self.calls[i];
        c.invite = invite;
        c.invite_uri = format!("sip:srs@{}", self.args.target_text);
        c.invite_branch = branch;
        c.invite_at = Some(now);
        c.state = State::Inviting;
        c.retx_interval = T1;
        c.next_retx = now + T1;
        let data = c.invite.clone();
        self.send(&data);
    }

    fn on_message(&mut self, raw: &[u8], now: Instant) {
        let msg = match message::parse(raw) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("loadgen: unparsable message from the server: {e}");
                return;
            }
        };
        let Some(&i) = msg.call_id().and_then(|id| self.by_id.get(id)) else {
            return;
        };
        match &msg.start {
            StartLine::Request { method, .. } => self.on_request(i, &msg, method.clone()),
            StartLine::Response { code, reason } => {
                let Some((_, method)) = msg.cseq() else {
                    return;
                };
                match method {
                    Method::Invite => self.on_invite_response(i, &msg, *code, reason, now),
                    Method::Bye => self.on_bye_response(i, *code, reason),
                    _ => {}
                }
            }
        }
    }

    fn on_request(&mut self, i: usize, msg: &Message, method: Method) {
        if method == Method::Ack {
            return;
        }
        let resp = ok_response(msg);
        self.send(&resp);
        if method == Method::Bye {
            let c = &mut self.calls[i];
            if !matches!(c.state, State::Done | State::Failed) {
                c.fail("the server sent BYE");
            }
        }
    }

    fn on_invite_response(
        &mut self,
        i: usize,
        msg: &Message,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        let state = self.calls[i].state;
        if code < 200 {
            if state == State::Inviting {
                self.calls[i].state = State::Proceeding;
            }
            return;
        }
        if !matches!(state, State::Inviting | State::Proceeding) {
            // A retransmitted final response: repeat our ACK.
            if code < 300 {
                self.late_200 += 1;
                let ack = self.calls[i].ack.clone();
                if !ack.is_empty() {
                    self.send(&ack);
                }
            }
            return;
        }
        let to = msg.header("To").unwrap_or("").to_string();
        if code >= 300 {
            let c = &mut self.calls[i];
            let ack = c
                .dialog
                .request("ACK", &c.invite_uri, &to, 1, &c.invite_branch);
            c.ack = ack.clone();
            c.fail(format!("{code} {reason}"));
            self.send(&ack);
            return;
        }
        let c = &mut self.calls[i];
        c.answered_at = Some(now);
        c.setup_ms = c.invite_at.map(|t| (now - t).as_secs_f64() * 1e3);
        c.to = to;
        c.remote_target = msg
            .header("Contact")
            .map(uri_of)
            .unwrap_or_else(|| c.invite_uri.clone());
        let ack = c.dialog.request(
            "ACK",
            &c.remote_target,
            &c.to,
            1,
            &format!("-{}-{i}-ack", self.run_id),
        );
        c.ack = ack.clone();
        self.send(&ack);
        // Where to send each label.
        let dests = match answer_dests(&msg.body, self.args.target.ip()) {
            Ok(d) => d,
            Err(e) => {
                self.calls[i].fail(format!("bad answer: {e}"));
                self.start_bye(i, now);
                return;
            }
        };
        let c = &mut self.calls[i];
        c.state = State::Talking;
        for (l, dest) in dests.iter().enumerate() {
            let _ = self.cmd.send(sender::Cmd::Add(sender::StreamSpec {
                id: (2 * i + l) as u64,
                dest: *dest,
                socket: c.sockets[l],
                payload_type: 0,
                ssrc: ssrc_of(&self.run_id, i, l),
                first_seq: ((i * 7919 + l * 104_729) & 0xffff) as u16,
                first_ts: (i as u32).wrapping_mul(2_654_435_761) ^ ((l as u32) << 30),
                tone: l,
                packets: self.packets_per_stream,
            }));
        }
    }

    fn start_bye(&mut self, i: usize, now: Instant) {
        let run_id = self.run_id.clone();
        let c = &mut self.calls[i];
        let bye = c.dialog.request(
            "BYE",
            &c.remote_target,
            &c.to,
            2,
            &format!("-{run_id}-{i}-bye"),
        );
        c.bye = bye.clone();
        c.bye_at = Some(now);
        c.bye_interval = T1;
        c.bye_next = now + T1;
        if c.state != State::Failed {
            c.state = State::Byeing;
        }
        self.send(&bye);
    }

    fn on_bye_response(&mut self, i: usize, code: u16, reason: &str) {
        let c = &mut self.calls[i];
        if code < 200 {
            return;
        }
        match c.state {
            State::Byeing if code < 300 => c.state = State::Done,
            State::Byeing => c.fail(format!("BYE answered {code} {reason}")),
            _ => {}
        }
        // A failed call's BYE is only a clean-up.
        c.bye.clear();
    }

    fn on_stream_done(&mut self, d: sender::Done, now: Instant) {
        let i = (d.id / 2) as usize;
        let l = (d.id % 2) as usize;
        let c = &mut self.calls[i];
        c.sent[l] = d.sent;
        c.send_errors += d.errors;
        c.streams_done += 1;
        if c.streams_done == 2 && c.state == State::Talking {
            self.start_bye(i, now);
        }
    }

    fn timers(&mut self, now: Instant) {
        let udp = matches!(self.transport, Transport::Udp(..));
        let mut resend: Vec<Vec<u8>> = Vec::new();
        for c in &mut self.calls {
            match c.state {
                State::Inviting | State::Proceeding => {
                    let started = c.invite_at.unwrap_or(now);
                    if now - started >= TIMEOUT {
                        c.fail(if c.state == State::Proceeding {
                            "no final response in 32 s (after a provisional)"
                        } else {
                            "no response in 32 s"
                        });
                    } else if udp && c.state == State::Inviting && now >= c.next_retx {
                        resend.push(c.invite.clone());
                        c.retransmits += 1;
                        c.retx_interval *= 2;
                        c.next_retx = now + c.retx_interval;
                    }
                }
                State::Byeing | State::Failed if !c.bye.is_empty() => {
                    let started = c.bye_at.unwrap_or(now);
                    if now - started >= TIMEOUT {
                        c.bye.clear();
                        c.fail("no response to BYE in 32 s");
                    } else if udp && now >= c.bye_next {
                        resend.push(c.bye.clone());
                        c.bye_interval = (c.bye_interval * 2).min(T2);
                        c.bye_next = now + c.bye_interval;
                    }
                }
                _ => {}
            }
        }
        for r in resend {
            self.send(&r);
        }
    }
}

fn ssrc_of(run_id: &str, i: usize, l: usize) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in run_id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    // Distinct within the run: the index in the low bits.
    (h & 0xff00_0000) | ((2 * i + l) as u32 & 0x00ff_ffff)
}

/// The destination of labels 1 and 2 from the 200's SDP.
fn answer_dests(body: &[u8], fallback: IpAddr) -> Result<[SocketAddrV4; 2], String> {
    let sdp = sdp_part(body);
    let answer = srs::siprec::sdp::parse_offer(&sdp).map_err(|e| e.to_string())?;
    let mut out = [None, None];
    for (idx, m) in answer.media.iter().enumerate() {
        let l = match m.label.as_deref() {
            Some("1") => 0,
            Some("2") => 1,
            Some(other) => return Err(format!("unexpected label {other}")),
            None if idx < 2 => idx,
            None => continue,
        };
        if m.port == 0 {
            return Err(format!("label {} refused (port 0)", l + 1));
        }
        let ip = match m.connection {
            Some(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
            _ => match fallback {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => return Err("IPv6 target".into()),
            },
        };
        out[l] = Some(SocketAddrV4::new(ip, m.port));
    }
    match out {
        [Some(a), Some(b)] => Ok([a, b]),
        _ => Err(format!(
            "{} m-lines, not labels 1 and 2",
            answer.media.len()
        )),
    }
}

/// The SDP of a body that may be multipart.
fn sdp_part(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    if !text.trim_start().starts_with("--") {
        return body.to_vec();
    }
    for part in text.split("\r\n--").chain(text.split("\n--")) {
        if let Some((head, content)) = part
            .split_once("\r\n\r\n")
            .or_else(|| part.split_once("\n\n"))
        {
            if head.to_ascii_lowercase().contains("application/sdp") {
                return content.as_bytes().to_vec();
            }
        }
    }
    body.to_vec()
}

/// The local address the kernel would use towards `target`.
fn local_ip_towards(target: SocketAddr) -> Ipv4Addr {
    let probe = UdpSocket::bind("0.0.0.0:0").and_then(|s| {
        s.connect(target)?;
        s.local_addr()
    });
    match probe {
        Ok(SocketAddr::V4(a)) if !a.ip().is_unspecified() => *a.ip(),
        _ => Ipv4Addr::LOCALHOST,
    }
}

// ---------------------------------------------------------------- verification

/// One HTTP/1.1 GET: (status, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad HTTP response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let mut body = raw[end + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&rest[..p]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad())?;
            rest = &rest[p + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        body = out;
    }
    Ok((status, body))
}

/// Finds the recordings of `wanted` call ids: (call id -> metadata.json).
trait Source {
    fn fetch(&mut self, wanted: &[String]) -> HashMap<String, serde_json::Value>;
}

struct HttpSource(String);

impl Source for HttpSource {
    fn fetch(&mut self, wanted: &[String]) -> HashMap<String, serde_json::Value> {
        let mut out = HashMap::new();
        for id in wanted {
            match http_get(&self.0, &format!("/api/v1/recordings/{id}")) {
                Ok((200, body)) => match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(v) => {
                        out.insert(id.clone(), v);
                    }
                    Err(e) => eprintln!("loadgen: {id}: the API's JSON does not parse: {e}"),
                },
                Ok((404, _)) => {}
                Ok((code, body)) => eprintln!(
                    "loadgen: GET /api/v1/recordings/{id}: {code} {}",
                    String::from_utf8_lossy(&body)
                ),
                Err(e) => eprintln!("loadgen: GET /api/v1/recordings/{id}: {e}"),
            }
        }
        out
    }
}

struct DirSource(PathBuf);

fn subdirs(p: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(p) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect()
}

impl Source for DirSource {
    fn fetch(&mut self, wanted: &[String]) -> HashMap<String, serde_json::Value> {
        let wanted: std::collections::HashSet<&str> = wanted.iter().map(String::as_str).collect();
        let mut out = HashMap::new();
        for y in subdirs(&self.0) {
            for m in subdirs(&y) {
                for d in subdirs(&m) {
                    for rec in subdirs(&d) {
                        let Ok(text) = std::fs::read(rec.join("metadata.json")) else {
                            continue;
                        };
                        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
                            continue;
                        };
                        if let Some(id) = v["call_id"].as_str() {
                            if wanted.contains(id) {
                                out.insert(id.to_string(), v);
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// Checks one recording against what was sent. `Err` lists the problems.
fn check(c: &Call, rec: &serde_json::Value) -> Result<(), String> {
    let mut problems = Vec::new();
    if rec["status"] != "complete" {
        problems.push(format!("status {}", rec["status"]));
    }
    let streams = rec["streams"].as_array().cloned().unwrap_or_default();
    for (l, label) in ["1", "2"].iter().enumerate() {
        match streams.iter().find(|s| s["label"] == *label) {
            None => problems.push(format!("no stream with label {label}")),
            Some(s) => {
                let got = s["packets_received"].as_u64().unwrap_or(0);
                if got != u64::from(c.sent[l]) {
                    problems.push(format!(
                        "label {label}: {got} packets received, {} sent (lost {}, late {}, duplicated {})",
                        c.sent[l], s["packets_lost"], s["packets_late"], s["packets_duplicated"]
                    ));
                }
            }
        }
    }
    let len = c.length_ms().unwrap_or(0.0);
    let tolerance = (len * 0.05).max(100.0);
    let files = rec["files"].as_array().cloned().unwrap_or_default();
    if files.is_empty() {
        problems.push("no files".into());
    }
    for f in &files {
        let d = f["duration_ms"].as_f64().unwrap_or(-1.0);
        if (d - len).abs() > tolerance {
            problems.push(format!(
                "file {}: duration {d:.0} ms, call {len:.0} ms (tolerance {tolerance:.0} ms)",
                f["name"].as_str().unwrap_or("?")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

struct Verification {
    verified: u64,
    mismatched: Vec<(String, String)>,
    received: u64,
    /// Largest |file duration - call length| seen, milliseconds.
    max_duration_err_ms: f64,
}

fn verify(calls: &[Call], source: &mut dyn Source, wait: Duration) -> Verification {
    let mut pending: BTreeMap<String, usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.state == State::Done)
        .map(|(i, c)| (c.dialog.call_id.clone(), i))
        .collect();
    let mut v = Verification {
        verified: 0,
        mismatched: Vec::new(),
        received: 0,
        max_duration_err_ms: 0.0,
    };
    let deadline = Instant::now() + wait;
    loop {
        let wanted: Vec<String> = pending.keys().cloned().collect();
        let found = source.fetch(&wanted);
        for (id, rec) in found {
            let Some(i) = pending.remove(&id) else {
                continue;
            };
            for s in rec["streams"].as_array().into_iter().flatten() {
                v.received += s["packets_received"].as_u64().unwrap_or(0);
            }
            let len = calls[i].length_ms().unwrap_or(0.0);
            for f in rec["files"].as_array().into_iter().flatten() {
                if let Some(d) = f["duration_ms"].as_f64() {
                    v.max_duration_err_ms = v.max_duration_err_ms.max((d - len).abs());
                }
            }
            match check(&calls[i], &rec) {
                Ok(()) => v.verified += 1,
                Err(e) => v.mismatched.push((id, e)),
            }
        }
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for id in pending.into_keys() {
        v.mismatched
            .push((id, format!("not published within {} s", wait.as_secs())));
    }
    v.mismatched.sort();
    v
}

// ---------------------------------------------------------------- main

fn main() {
    let args = parse_args();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let run_id = format!("{:x}{:04x}", secs, std::process::id() & 0xffff);
    let local_ip = local_ip_towards(args.target);
    let packets_per_stream = (args.talk * 50.0).round().max(1.0) as u32;

    let transport = if args.tcp {
        let s = TcpStream::connect(args.target).unwrap_or_else(|e| {
            eprintln!("loadgen: TCP connect to {}: {e}", args.target);
            std::process::exit(2)
        });
        s.set_nodelay(true).ok();
        Transport::Tcp(s, Vec::new())
    } else {
        let s = UdpSocket::bind((local_ip, 0)).expect("bind the SIP socket");
        Transport::Udp(s, args.target)
    };
    let local = match &transport {
        Transport::Udp(s, _) => s.local_addr().unwrap(),
        Transport::Tcp(s, _) => s.local_addr().unwrap(),
    };
    let socks = sender::sender_sockets(local_ip, args.sender_sockets, args.rtp_base)
        .unwrap_or_else(|e| {
            eprintln!("loadgen: binding the RTP sender sockets: {e}");
            std::process::exit(2)
        });
    let sender_ports: Vec<u16> = socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    let nsock = socks.len();
    let tones = vec![
        sender::ulaw_tone(1000, 8000.0),
        sender::ulaw_tone(400, 8000.0),
    ];
    let (cmd, done_rx, sender_thread) = sender::spawn(socks, tones, sender::PTIME_MS);

    let transport_name = if args.tcp { "TCP" } else { "UDP" };
    let now = Instant::now();
    let calls: Vec<Call> = (0..args.calls)
        .map(|n| Call {
            dialog: Dialog {
                call_id: format!("loadgen-{run_id}-{n}"),
                local,
                transport: transport_name,
                target_text: args.target_text.clone(),
                from_tag: format!("lg{n}"),
            },
            state: State::Waiting,
            invite: Vec::new(),
            invite_uri: String::new(),
            invite_branch: String::new(),
            invite_at: None,
            next_retx: now,
            retx_interval: T1,
            retransmits: 0,
            to: String::new(),
            remote_target: String::new(),
            answered_at: None,
            setup_ms: None,
            sockets: [(2 * n) % nsock, (2 * n + 1) % nsock],
            sent: [0, 0],
            send_errors: 0,
            streams_done: 0,
            ack: Vec::new(),
            bye: Vec::new(),
            bye_at: None,
            bye_next: now,
            bye_interval: T1,
            fail: None,
        })
        .collect();
    let by_id = calls
        .iter()
        .enumerate()
        .map(|(i, c)| (c.dialog.call_id.clone(), i))
        .collect();
    println!(
        "loadgen run {run_id}: {} calls at {} cps, {} s talk ({} packets/stream), {} to {}, RTP from {} ({} sockets)",
        args.calls,
        args.cps,
        args.talk,
        packets_per_stream,
        transport_name,
        args.target,
        local_ip,
        nsock
    );
    let mut run = Run {
        args,
        run_id,
        calls,
        by_id,
        transport,
        local_ip,
        sender_ports,
        cmd,
        packets_per_stream,
        late_200: 0,
    };

    let proc0 = sender::process_cpu();
    let t0 = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / run.args.cps);
    let mut next_call = 0usize;
    let hard_deadline = t0
        + interval * run.args.calls as u32
        + Duration::from_secs_f64(run.args.talk)
        + TIMEOUT * 2;
    let mut inbox = Vec::new();
    let mut last_progress = t0;
    loop {
        let now = Instant::now();
        while next_call < run.calls.len() && now >= t0 + interval * next_call as u32 {
            run.start_call(next_call, now);
            next_call += 1;
        }
        while let Ok(d) = done_rx.try_recv() {
            run.on_stream_done(d, Instant::now());
        }
        run.timers(now);
        let finished = run
            .calls
            .iter()
            .filter(|c| c.state == State::Done || (c.state == State::Failed && c.bye.is_empty()))
            .count();
        if next_call == run.calls.len() && finished == run.calls.len() {
            // Failed calls whose streams are still sending finish on their own.
            break;
        }
        if now >= hard_deadline {
            for c in &mut run.calls {
                if !matches!(c.state, State::Done | State::Failed) {
                    let s = c.state;
                    c.fail(format!("stuck in state {s:?}"));
                }
            }
            break;
        }
        if now - last_progress >= Duration::from_secs(5) {
            last_progress = now;
            let count = |s: State| run.calls.iter().filter(|c| c.state == s).count();
            eprintln!(
                "loadgen: t={:.0}s started {next_call}, talking {}, done {}, failed {}",
                (now - t0).as_secs_f64(),
                count(State::Talking),
                count(State::Done),
                count(State::Failed)
            );
        }
        let wait = if next_call < run.calls.len() {
            (t0 + interval * next_call as u32).saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(5)
        }
        .min(Duration::from_millis(5));
        inbox.clear();
        if let Err(e) = run.transport.poll(wait, &mut inbox) {
            eprintln!("loadgen: SIP transport: {e}");
            for c in &mut run.calls {
                if !matches!(c.state, State::Done | State::Failed) {
                    c.fail(format!("transport: {e}"));
                }
            }
            break;
        }
        let now = Instant::now();
        for m in std::mem::take(&mut inbox) {
            run.on_message(&m, now);
        }
    }
    let _ = run.cmd.send(sender::Cmd::Finish);
    let tx = sender_thread.join().expect("sender thread");
    while let Ok(d) = done_rx.try_recv() {
        run.on_stream_done(d, Instant::now());
    }
    let wall = t0.elapsed().as_secs_f64();
    let proc_cpu = sender::process_cpu().since(proc0);

    // Verification.
    let verification = if let Some(addr) = run.args.http.clone() {
        Some(verify(
            &run.calls,
            &mut HttpSource(addr),
            run.args.publish_wait,
        ))
    } else {
        run.args
            .recordings
            .clone()
            .map(|dir| verify(&run.calls, &mut DirSource(dir), run.args.publish_wait))
    };

    // Summary.
    let calls = &run.calls;
    let answered = calls.iter().filter(|c| c.answered_at.is_some()).count();
    let failed: Vec<&Call> = calls.iter().filter(|c| c.state != State::Done).collect();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for c in &failed {
        *reasons
            .entry(c.fail.clone().unwrap_or_else(|| format!("{:?}", c.state)))
            .or_default() += 1;
    }
    let mut setup: Vec<f64> = calls.iter().filter_map(|c| c.setup_ms).collect();
    setup.sort_by(f64::total_cmp);
    let p50 = sender::percentile(&setup, 50.0);
    let p99 = sender::percentile(&setup, 99.0);
    let max = setup.last().copied().unwrap_or(0.0);
    let sent: u64 = calls
        .iter()
        .map(|c| u64::from(c.sent[0]) + u64::from(c.sent[1]))
        .sum();
    // Packets of the calls whose recordings are checked.
    let sent_checked: u64 = calls
        .iter()
        .filter(|c| c.state == State::Done)
        .map(|c| u64::from(c.sent[0]) + u64::from(c.sent[1]))
        .sum();
    let retransmits: u32 = calls.iter().map(|c| c.retransmits).sum();
    let (received, lost) = match &verification {
        Some(v) => (
            Some(v.received),
            Some(sent_checked.saturating_sub(v.received)),
        ),
        None => (None, None),
    };
    println!(
        "calls: {} attempted, {answered} answered, {} failed; {retransmits} INVITE retransmissions, {} repeated 200s",
        calls.len(),
        failed.len(),
        run.late_200
    );
    for (r, n) in &reasons {
        println!("  failed: {n} x {r}");
    }
    println!(
        "setup latency (INVITE -> 200): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({} answered)",
        setup.len()
    );
    let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
    println!(
        "packets: sent {sent} (expected {}), received {}, lost {}, send errors {}{}",
        answered as u64 * 2 * u64::from(run.packets_per_stream),
        opt(received),
        opt(lost),
        tx.errors,
        tx.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!(
        "sender: {:.0} packets/s achieved on average, {} in the busiest second, cpu {:.2} s (user {:.2}, sys {:.2}) = {:.2} us/packet, {} sendmmsg calls, max tick lag {:.1} ms, {} ticks >5 ms late",
        tx.rate(),
        tx.peak_rate,
        tx.cpu.total(),
        tx.cpu.user,
        tx.cpu.sys,
        if tx.packets > 0 { tx.cpu.total() * 1e6 / tx.packets as f64 } else { 0.0 },
        tx.syscalls,
        tx.max_lag.as_secs_f64() * 1e3,
        tx.late_ticks
    );
    println!(
        "loadgen process: cpu {:.2} s (user {:.2}, sys {:.2}) over {wall:.1} s",
        proc_cpu.total(),
        proc_cpu.user,
        proc_cpu.sys
    );
    match &verification {
        Some(v) => {
            println!(
                "recordings: {} verified, {} mismatched; file durations within {:.0} ms of the call lengths",
                v.verified,
                v.mismatched.len(),
                v.max_duration_err_ms
            );
            for (id, why) in v.mismatched.iter().take(5) {
                println!("  mismatch {id}: {why}");
            }
        }
        None => println!("recordings: not verified (give --http or --recordings)"),
    }
    let json = serde_json::json!({
        "calls": calls.len(),
        "answered": answered,
        "failed": failed.len(),
        "packets_sent": sent,
        "packets_received": received,
        "lost": lost,
        "setup_p50_ms": p50,
        "setup_p99_ms": p99,
        "setup_max_ms": max,
        "verified": verification.as_ref().map(|v| v.verified),
        "mismatched": verification.as_ref().map(|v| v.mismatched.len()),
        "max_duration_err_ms": verification.as_ref().map(|v| v.max_duration_err_ms),
        "send_errors": tx.errors,
        "sender_pps": tx.rate(),
        "sender_peak_pps": tx.peak_rate,
        "sender_cpu_s": tx.cpu.total(),
        "process_cpu_s": proc_cpu.total(),
    });
    println!("{json}");
    let bad = !failed.is_empty()
        || lost.unwrap_or(0) > 0
        || tx.errors > 0
        || verification
            .as_ref()
            .is_some_and(|v| !v.mismatched.is_empty());
    std::process::exit(if bad { 1 } else { 0 });
}
