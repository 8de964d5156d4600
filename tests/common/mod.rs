//! Helpers for end-to-end tests: run `srs serve` on loopback ports it binds
//! itself (port 0, read back from its "srs listening" log line), find real
//! peers (SIPp, ffmpeg), build SIP requests and RTP, decode and analyse WAV
//! files (tone detection).
#![allow(dead_code)]

pub mod call;
pub mod http;
pub mod leg;
pub mod pg;
pub mod s3;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A UDP+TCP port pair free on 127.0.0.1 (the OS picks; both checked).
/// Only for a port a test must know before the server starts (a peer's
/// own port); the server's ports are bound by the server (port 0).
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Disjoint blocks of ports for RTP ranges and SIPp media ports, so tests
/// running in parallel never collide. Blocks start from the process id so
/// concurrent test binaries differ too.
pub fn port_block(size: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Below the kernel's ephemeral range (32768-60999): no socket the OS
    // picks (ours, SIPp's, any other process's) can sit in a block.
    let base = 11000 + (std::process::id() % 20) as u16 * 1000;
    base + NEXT.fetch_add(size, Ordering::SeqCst)
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v '{program}'"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// True when the peers are present. Without them: fails if
/// SRS_REQUIRE_PEERS=1 (CI), else says loudly that the test is skipped.
pub fn peers_available(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<_> = programs.iter().filter(|p| !have(p)).collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("SRS_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{test}: SRS_REQUIRE_PEERS=1 but {missing:?} not installed");
    }
    eprintln!("\n*** SKIPPED {test}: {missing:?} not installed (apt-get install sip-tester ffmpeg; set SRS_REQUIRE_PEERS=1 to make this an error) ***\n");
    false
}

/// A running `srs serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    /// SIP over TLS, when configured.
    pub tls: Option<SocketAddr>,
    pub recordings: PathBuf,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

/// The addresses of an "srs listening" log line.
struct Listening {
    sip: SocketAddr,
    http: SocketAddr,
    tls: Option<SocketAddr>,
}

/// The value of `key=` in a log line (colours removed).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

/// Removes the terminal colour codes of a log line.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts `srs serve` with `extra` flags. SIP and HTTP are bound on
    /// 127.0.0.1 port 0 unless `extra` says where; the bound addresses are
    /// read from the server's "srs listening" line.
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        // The caller's --recordings, if any, replaces ours.
        let given = extra
            .iter()
            .position(|a| *a == "--recordings")
            .and_then(|i| extra.get(i + 1))
            .map(PathBuf::from);
        let recordings = given
            .clone()
            .unwrap_or_else(|| dir.path().join("recordings"));
        let mut args: Vec<String> = vec!["serve".into()];
        for flag in ["--sip", "--http"] {
            if !extra.contains(&flag) {
                args.push(flag.into());
                args.push("127.0.0.1:0".into());
            }
        }
        // The caller's --rtp-ports, if any, replaces ours (200 ports).
        if !extra.contains(&"--rtp-ports") {
            let rtp = port_block(200);
            args.push("--rtp-ports".into());
            args.push(format!("{rtp}-{}", rtp + 199));
        }
        if given.is_none() {
            args.push("--recordings".into());
            args.push(recordings.to_string_lossy().into_owned());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Self::spawn(&args, dir.path());
        let bound = Self::wait_listening(&mut child, dir.path(), 0);
        // A restart binds the same ports again, explicitly.
        for (flag, addr) in [("--sip", bound.sip), ("--http", bound.http)] {
            if let Some(i) = args.iter().position(|a| a == flag) {
                args[i + 1] = addr.to_string();
            }
        }
        let s = Server {
            child,
            sip: bound.sip,
            http: bound.http,
            tls: bound.tls,
            recordings,
            args,
            _dir: dir,
        };
        s.wait_healthy();
        s
    }

    fn spawn(args: &[String], dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("srs.log"))
            .unwrap();
        let cwd = dir.join("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        Command::new(env!("CARGO_BIN_EXE_srs"))
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "info,srs=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("srs binary runs")
    }

    /// Waits for the "srs listening" line written past `from` (bytes into
    /// the log) and reads the bound addresses from it.
    fn wait_listening(child: &mut Child, dir: &Path, from: usize) -> Listening {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(dir.join("srs.log")).unwrap_or_default();
            let line = log
                .get(from..)
                .and_then(|l| l.lines().find(|l| l.contains("srs listening")));
            if let Some(line) = line.map(plain) {
                let addr = |key| field(&line, key).and_then(|v| v.parse().ok());
                let tls = field(&line, "tls")
                    .and_then(|v| v.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok());
                return Listening {
                    sip: addr("sip").expect("sip= in the listening line"),
                    http: addr("http").expect("http= in the listening line"),
                    tls,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("srs exited ({status}) before listening:\n{log}");
            }
            assert!(Instant::now() < deadline, "srs did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(self.http, "/healthz").is_none() {
            assert!(
                Instant::now() < deadline,
                "srs did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the same server again (same ports, drop and config) after
    /// its process ended (killed by a test).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let from = self.log().len();
        self.child = Self::spawn(&self.args, self._dir.path());
        let bound = Self::wait_listening(&mut self.child, self._dir.path(), from);
        assert_eq!((bound.sip, bound.http), (self.sip, self.http));
        self.wait_healthy();
    }

    /// The server's working directory (empty unless it writes where it
    /// should not).
    pub fn workdir(&self) -> PathBuf {
        self._dir.path().join("cwd")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("srs.log")).unwrap_or_default()
    }

    /// Runs `srs <args> --recordings <drop>` and returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_srs"))
            .args(args)
            .arg("--recordings")
            .arg(&self.recordings)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "srs {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `srs list --json`, parsed.
    pub fn list_json(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.cli(&["list", "--json"])).unwrap()
    }

    /// Waits until `n` recordings are indexed.
    pub fn wait_recordings(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.list_json();
            if l.len() >= n {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} recordings, have {}:\n{}",
                l.len(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Minimal HTTP/1.1 GET; the body if the status is 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    if !out.starts_with("HTTP/1.1 200") {
        return None;
    }
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Mono 16-bit WAV samples and sample rate.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    assert_eq!(r.spec().channels, 1);
    assert_eq!(r.spec().bits_per_sample, 16);
    (r.into_samples::<i16>().map(Result::unwrap).collect(), rate)
}

/// Goertzel power of frequency `f` in `x`.
pub fn goertzel(x: &[i16], rate: u32, f: f64) -> f64 {
    srs::testkit::goertzel(x, f64::from(rate), f)
}

/// Per 100 ms window: which of `freqs` dominates (by 10x over the others
/// and with real energy), or None for silence/mixed.
pub fn tone_windows(x: &[i16], rate: u32, freqs: &[f64]) -> Vec<Option<f64>> {
    let n = rate as usize / 10;
    x.chunks(n)
        .filter(|c| c.len() == n)
        .map(|c| {
            let energy: f64 = c.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
            if energy < 1000.0 {
                return None;
            }
            let p: Vec<f64> = freqs.iter().map(|f| goertzel(c, rate, *f)).collect();
            let (best, pb) = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, v)| (i, *v))?;
            let others = p
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != best)
                .map(|(_, v)| *v);
            others.clone().all(|o| pb > 10.0 * o).then_some(freqs[best])
        })
        .collect()
}

/// Runs SIPp from the copied peer directory (its scenarios use relative paths).
pub fn run_sipp(args: &[String], timeout: Duration) -> (bool, String) {
    let dir = manifest_dir().join("tests/peers/sipp");
    let mut child = Command::new("sipp")
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp runs");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let _ = child.stdout.take().unwrap().read_to_string(&mut out);
            let _ = child.stderr.take().unwrap().read_to_string(&mut out);
            return (status.success(), out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return (false, "sipp timed out".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Like `run_sipp`, but from `dir` (a directory of scenarios whose media
/// file names are relative to it, e.g. tests/peers/corpus-sipp).
pub fn run_sipp_in(dir: &Path, args: &[String], timeout: Duration) -> (bool, String) {
    let mut child = Command::new("sipp")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp runs");
    // Read the pipes on threads so a chatty SIPp never blocks on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = t_out.join().unwrap_or_default();
            out.push_str(&t_err.join().unwrap_or_default());
            return (status.success(), out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (false, "sipp timed out".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A SIPREC `multipart/mixed` body (boundary `b`): the SDP, then the
/// RFC 7865 metadata.
pub fn siprec_body(sdp: &str, metadata: &str) -> String {
    format!(
        "--b\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n--b\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n{metadata}\r\n--b--\r\n"
    )
}

/// An SDP offer from `ip` with one sendonly PCMU line labelled `1` on
/// `proto` (`RTP/AVP`, `RTP/SAVP`), `extra` attribute lines added to it.
pub fn one_stream_sdp(ip: std::net::IpAddr, proto: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio 40000 {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}a=label:1\r\na=sendonly\r\n"
    )
}

/// An INVITE from a recording client at `local` over `transport` (`UDP`,
/// `TCP`): `body` is an SDP offer, or a SIPREC body from [`siprec_body`]
/// (then `Require: siprec`).
pub fn invite_request(transport: &str, local: SocketAddr, call_id: &str, body: &str) -> String {
    let host = local.ip();
    let (content_type, require) = if body.starts_with("--b") {
        ("multipart/mixed;boundary=b", "Require: siprec\r\n")
    } else {
        ("application/sdp", "")
    };
    let contact_transport = match transport {
        "UDP" => String::new(),
        t => format!(";transport={}", t.to_ascii_lowercase()),
    };
    format!(
        "INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{call_id}\r\n\
From: <sip:src@{host}>;tag=src1\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:src@{local}{contact_transport}>;+sip.src\r\n{require}Content-Type: {content_type}\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A request in the dialog of an [`invite_request`]: `to` is the To header
/// of the server's answer (with its tag).
pub fn in_dialog_request(
    method: &str,
    transport: &str,
    local: SocketAddr,
    call_id: &str,
    to: &str,
    cseq: u32,
) -> String {
    format!(
        "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{method}{call_id}\r\n\
From: <sip:src@{}>;tag=src1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        local.ip()
    )
}

/// Status code of a response (0 for a request).
pub fn status(m: &srs::sip::message::Message) -> u16 {
    match m.start {
        srs::sip::message::StartLine::Response { code, .. } => code,
        srs::sip::message::StartLine::Request { .. } => 0,
    }
}

/// Sends a request over UDP and returns its final response (1xx skipped).
pub fn final_response(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> srs::sip::message::Message {
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 65535];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("a response");
        let m = srs::sip::message::parse(&buf[..n]).unwrap();
        if status(&m) >= 200 {
            return m;
        }
    }
}

/// A BYE from the client in `sock` for the dialog of `invite`, answered
/// by `ok` (its To tag).
pub fn bye_for(
    sock: &UdpSocket,
    invite: &srs::sip::message::Message,
    ok: &srs::sip::message::Message,
    cseq: u32,
) -> String {
    format!(
        "BYE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKbye\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n",
        sock.local_addr().unwrap(),
        invite.header("From").unwrap(),
        ok.header("To").unwrap(),
        invite.call_id().unwrap()
    )
}

/// A 200 OK to a request the server sent us (its BYE or UPDATE).
pub fn ok_to(req: &srs::sip::message::Message) -> String {
    format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        req.header("Via").unwrap_or_default(),
        req.header("From").unwrap_or_default(),
        req.header("To").unwrap_or_default(),
        req.call_id().unwrap_or_default(),
        req.header("CSeq").unwrap_or_default()
    )
}

/// `n` samples of a sine at `freq` Hz from sample `n0`, amplitude 8000.
pub fn sine(freq: f64, rate: u32, n0: u64, n: usize) -> Vec<i16> {
    srs::testkit::sine(freq, rate, n0, n, 8000.0)
}

pub use srs::testkit::pcmu_tone;

/// An RTP packet (no CSRC, no extension).
pub fn rtp_packet(seq: u16, ts: u32, ssrc: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7f];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Sends `secs` of a PCMU tone at `freq` Hz to `to` in real time (20 ms
/// packets, payload type 0) from `sock`.
pub fn send_pcmu_tone(sock: &UdpSocket, to: SocketAddr, freq: f64, secs: f64, ssrc: u32) {
    let start = Instant::now();
    let packets = (secs * 50.0) as u32;
    for i in 0..packets {
        let payload = pcmu_tone(freq, u64::from(i) * 160);
        let pkt = rtp_packet(i as u16, i * 160, ssrc, 0, &payload);
        let _ = sock.send_to(&pkt, to);
        let due = start + Duration::from_millis(u64::from(i + 1) * 20);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
}

/// Writes `n` bulky recordings straight into the index at `index`
/// (rows only: no audio in the drop).
pub fn index_bulky(index: &Path, n: usize) {
    let ix = srs::store::Index::open(index).unwrap();
    let all: Vec<_> = (0..n).map(srs::testkit::bulky_recording).collect();
    ix.upsert_batch(&all).unwrap();
}

/// One short recorded call from the corpus INVITE (answered, 200 ms, BYE
/// from the client). Returns its Call-ID; publication is not awaited.
pub fn short_call(srs: &Server, tag: &str) -> String {
    let raw = std::fs::read_to_string(
        manifest_dir().join("tests/fixtures/corpus/sipp-generated-invite.sip"),
    )
    .unwrap();
    // A Call-ID and transaction of its own (the corpus message has both).
    let raw = raw
        .replace(
            "Call-ID: 1-20223@127.0.0.1",
            &format!("Call-ID: {tag}@127.0.0.1"),
        )
        .replace("branch=z9hG4bK-20223-1-0", &format!("branch=z9hG4bK-{tag}"));
    let req = srs::testkit::corpus_request(&raw, tag);
    let inv = srs::sip::message::parse(&req).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ok = final_response(&sock, srs.sip, &req);
    assert_eq!(status(&ok), 200, "{}", srs.log());
    std::thread::sleep(Duration::from_millis(200));
    let bye = bye_for(&sock, &inv, &ok, 2);
    sock.send_to(bye.as_bytes(), srs.sip).unwrap();
    inv.call_id().unwrap().to_string()
}

/// The `metadata.json` of the recording of `call_id` if it is published in
/// the drop at `root` (read from the dated tree, not the index).
pub fn published_in_drop(root: &Path, call_id: &str) -> Option<serde_json::Value> {
    let drop = srs::store::FileDrop::new(root);
    let found = drop
        .scan()
        .ok()?
        .into_iter()
        .find(|m| m.call_id == call_id)?;
    serde_json::to_value(found).ok()
}

/// Waits until the recording of `call_id` is published in the drop.
pub fn wait_in_drop(srs: &Server, call_id: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(m) = published_in_drop(&srs.recordings, call_id) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{call_id} not published in the drop within {timeout:?}:\n{}",
            srs.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `srs list` shows the recording of `call_id`.
pub fn wait_indexed(srs: &Server, call_id: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(r) = srs
            .list_json()
            .into_iter()
            .find(|r| r["call_id"] == call_id)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{call_id} not indexed within {timeout:?}:\n{}",
            srs.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The initial offers of the vendor corpus (tests/fixtures/corpus), each a
/// whole INVITE or an offer body the harness wraps in one.
pub const CORPUS_INITIAL: &[&str] = &[
    "sipp-generated-invite.sip",
    "opensips-generated-invite.sip",
    "opensips-generated-invite-2.sip",
    "acme-sbc-offer-body.sip",
    "acme-sbc-avaya-ucid-offer-body.sip",
    "acme-sbc-genesys-record-invite-tcp.sip",
    "acme-sbc-carrier-invite-xacme-callid.sip",
    "audiocodes-mediant-invite-tcp.sip",
    "avaya-sbce-offer-body-dataMode.sip",
    "cisco-cube-offer-body-gtd.sip",
    "cisco-cube-inactive-offer-body.sip",
    "cisco-cube-ios16-invite-sparse-metadata.sip",
    "intrado-viper-invite-tcp.sip",
    "opensips-connectel-offer-body.sip",
    "sems-procomm-offer-body.sip",
    "sonus-sbc-offer-body.sip",
    "ietf-rfc8068-basic-av-invite-complete.sip",
];

/// `srs token add NAME --role ROLE [--scope S]... --recordings DIR`: the
/// secret (stdout, alone).
pub fn token_add(recordings: &Path, name: &str, role: &str, scopes: &[&str]) -> String {
    let mut args = vec!["token", "add", name, "--role", role];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    let dir = recordings.to_str().unwrap();
    args.extend(["--recordings", dir]);
    let out = Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "srs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap();
    assert_eq!(secret.lines().count(), 1, "the secret alone: {secret:?}");
    let secret = secret.trim().to_string();
    assert!(secret.starts_with("srs_") && secret.len() == 47, "{secret}");
    secret
}
