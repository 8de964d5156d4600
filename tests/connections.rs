//! Connection floods against `srs serve` (small caps and timeouts from a
//! config file): thousands of idle and slowloris TCP connections from
//! 127.0.0.1 and 127.0.0.3 while a UDP call and a TCP call from 127.0.0.2
//! are recorded. The caps hold the server's descriptors, the calls are
//! recorded (tones checked), `/healthz` answers, every flooding
//! connection is closed by a cap or a timeout (never the call's, which
//! carries a dialog and stays quiet longer than the idle timeout), and
//! the server's descriptors return to their baseline.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const HEAD_TIMEOUT_S: u64 = 2;
const IDLE_TIMEOUT_S: u64 = 4;
const PER_SOURCE: usize = 1000;
const MAX_CONNECTIONS: usize = 1500;

const METADATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
<datamode>complete</datamode>
<session session_id="s1"><sipSessionID>x</sipSessionID></session>
<participant participant_id="pA"><nameID aor="sip:alice@example.com"><name>Alice</name></nameID></participant>
<stream stream_id="st1" session_id="s1"><label>1</label></stream>
<participantstreamassoc participant_id="pA"><send>st1</send></participantstreamassoc>
</recording>
"#;

/// A TCP connection from `src` (any loopback address) to `to`.
fn connect_from(src: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    let sin = |ip: [u8; 4], port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor owned by `stream` from
    // its creation; the addresses live across the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let a = sin(src, 0);
        if libc::bind(fd, (&a as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let b = sin(to.ip().octets(), to.port());
        if libc::connect(fd, (&b as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// Whether the server closed this connection (EOF or reset); a pending
/// byte from the server (a response) does not count.
fn closed_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut r = s;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn count_closed(socks: &[TcpStream]) -> usize {
    socks.iter().filter(|s| closed_by_server(s)).count()
}

fn server_fds(srs: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", srs.child.id()))
        .unwrap()
        .count()
}

fn raise_own_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on structs that live across the calls.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    assert!(
        r.rlim_cur >= 4000,
        "this test needs 4,000 descriptors (ulimit -Hn)"
    );
}

fn invite_text(transport: &str, local: SocketAddr, call_id: &str) -> String {
    let sdp = one_stream_sdp(local.ip(), "RTP/AVP", "");
    invite_request(transport, local, call_id, &siprec_body(&sdp, METADATA))
}

/// The next final response on a TCP connection.
fn tcp_final(
    tcp: &mut TcpStream,
    framer: &mut srs::sip::message::StreamFramer,
) -> srs::sip::message::Message {
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8192];
    loop {
        while let Some(m) = framer.next_message().unwrap() {
            let m = srs::sip::message::parse(&m).unwrap();
            if status(&m) >= 200 {
                return m;
            }
        }
        let n = tcp
            .read(&mut buf)
            .expect("a response on the call's connection");
        assert!(n > 0, "the call's connection was closed");
        framer.push(&buf[..n]);
    }
}

fn rtp_port(ok: &srs::sip::message::Message) -> u16 {
    srs::siprec::sdp::parse_offer(&ok.body).unwrap().media[0].port
}

#[test]
fn connection_floods_are_capped_and_timed_out_while_calls_are_recorded() {
    raise_own_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nconnection_head_timeout = {HEAD_TIMEOUT_S}\nconnection_idle_timeout = {IDLE_TIMEOUT_S}\n\
max_connections_per_source = {PER_SOURCE}\nmax_connections = {MAX_CONNECTIONS}\n"
        ),
    )
    .unwrap();
    let srs = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let baseline = server_fds(&srs);

    // 1,200 silent connections from 127.0.0.1: the 200 oldest are closed
    // at once by the per-source cap.
    let t_flood = Instant::now();
    let silent: Vec<TcpStream> = (0..PER_SOURCE + 200)
        .map(|_| connect_from([127, 0, 0, 1], srs.sip).expect("connect"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut capped = 0;
    while capped < 200 && Instant::now() < deadline {
        capped = count_closed(&silent[..200]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(capped, 200, "the per-source cap closes the oldest");
    assert!(
        t_flood.elapsed() < Duration::from_secs(HEAD_TIMEOUT_S),
        "checked before any head timeout"
    );
    assert_eq!(count_closed(&silent[200..]), 0, "the newest 1,000 stay");

    // From 127.0.0.3: 400 slowloris connections (one byte at a time, never a
    // whole message) and 100 that send OPTIONS, get their answer, then idle.
    let mut slow: Vec<TcpStream> = (0..400)
        .map(|_| connect_from([127, 0, 0, 3], srs.sip).expect("connect"))
        .collect();
    let options = "OPTIONS sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.3:5060;branch=z9hG4bKo{n}\r\nFrom: <sip:x@127.0.0.3>;tag=1\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: o{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let chatty: Vec<TcpStream> = (0..100)
        .map(|n| {
            let mut s = connect_from([127, 0, 0, 3], srs.sip).expect("connect");
            s.write_all(options.replace("{n}", &n.to_string()).as_bytes())
                .unwrap();
            s
        })
        .collect();
    for mut s in &chatty {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 2048];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"SIP/2.0 200"), "OPTIONS answered");
    }
    let t_options = Instant::now();
    let slow_writer = std::thread::spawn(move || {
        let text = b"INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.3;branch=z9hG4bKslow\r\n";
        let until = Instant::now() + Duration::from_secs(HEAD_TIMEOUT_S + 3);
        let mut i = 0;
        while Instant::now() < until {
            for s in &mut slow {
                let _ = s.write(&text[i % text.len()..][..1]);
            }
            i += 1;
            std::thread::sleep(Duration::from_millis(250));
        }
        slow
    });
    // The server holds at most the global cap of them.
    let peak = server_fds(&srs);
    assert!(
        peak <= baseline + MAX_CONNECTIONS + 10,
        "{peak} descriptors for 1,700 connections (baseline {baseline}, cap {MAX_CONNECTIONS})"
    );

    // Meanwhile, from 127.0.0.2: a UDP call (1000 Hz) and a TCP call
    // (400 Hz); the TCP one gets in although the cap is reached.
    let udp = UdpSocket::bind("127.0.0.2:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let udp_local = udp.local_addr().unwrap();
    let udp_ok = final_response(
        &udp,
        srs.sip,
        invite_text("UDP", udp_local, "flood-udp").as_bytes(),
    );
    assert_eq!(status(&udp_ok), 200);
    let udp_to = udp_ok.header("To").unwrap().to_string();
    udp.send_to(
        in_dialog_request("ACK", "UDP", udp_local, "flood-udp", &udp_to, 1).as_bytes(),
        srs.sip,
    )
    .unwrap();
    let mut tcp = connect_from([127, 0, 0, 2], srs.sip).expect("the call's connection");
    let tcp_local = tcp.local_addr().unwrap();
    let mut framer = srs::sip::message::StreamFramer::new();
    tcp.write_all(invite_text("TCP", tcp_local, "flood-tcp").as_bytes())
        .unwrap();
    let tcp_ok = tcp_final(&mut tcp, &mut framer);
    assert_eq!(status(&tcp_ok), 200);
    let tcp_to = tcp_ok.header("To").unwrap().to_string();
    tcp.write_all(in_dialog_request("ACK", "TCP", tcp_local, "flood-tcp", &tcp_to, 1).as_bytes())
        .unwrap();
    assert!(
        http_get(srs.http, "/healthz").is_some(),
        "/healthz answers during the flood"
    );

    // 6 s of audio on each call (longer than the idle timeout: the TCP
    // call's connection, quiet meanwhile, carries a dialog and stays).
    let rtp = UdpSocket::bind("127.0.0.2:0").unwrap();
    let (udp_rtp, tcp_rtp) = (rtp_port(&udp_ok), rtp_port(&tcp_ok));
    let t0 = Instant::now();
    let mut chatty_open_at_head_plus = None;
    for k in 0..300u64 {
        let due = t0 + Duration::from_millis(20 * k);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let p = srs::media::rtp::build(
            0,
            k as u16,
            (k * 160) as u32,
            1,
            &pcmu_tone(1000.0, k * 160),
        );
        rtp.send_to(&p, ("127.0.0.1", udp_rtp)).unwrap();
        let p =
            srs::media::rtp::build(0, k as u16, (k * 160) as u32, 2, &pcmu_tone(400.0, k * 160));
        rtp.send_to(&p, ("127.0.0.1", tcp_rtp)).unwrap();
        // Past the head timeout (plus a sweep), before the idle timeout:
        // the connections that completed a message are still open.
        if chatty_open_at_head_plus.is_none()
            && t_options.elapsed() >= Duration::from_millis(HEAD_TIMEOUT_S * 1000 + 800)
        {
            assert!(
                t_options.elapsed() < Duration::from_secs(IDLE_TIMEOUT_S),
                "too slow to tell the timeouts apart"
            );
            chatty_open_at_head_plus = Some(100 - count_closed(&chatty));
        }
    }
    assert_eq!(
        chatty_open_at_head_plus,
        Some(100),
        "a connection that completed its message waits for the idle timeout"
    );
    let slow = slow_writer.join().unwrap();

    // Every flooding connection is closed by now (head or idle timeout).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open = (silent.len() - count_closed(&silent))
            + (slow.len() - count_closed(&slow))
            + (chatty.len() - count_closed(&chatty));
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} flooding connections still open"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Both calls end normally, the TCP one over its own connection.
    tcp.write_all(in_dialog_request("BYE", "TCP", tcp_local, "flood-tcp", &tcp_to, 2).as_bytes())
        .unwrap();
    assert_eq!(
        status(&tcp_final(&mut tcp, &mut framer)),
        200,
        "BYE over the call's connection"
    );
    let bye = in_dialog_request("BYE", "UDP", udp_local, "flood-udp", &udp_to, 2);
    assert_eq!(status(&final_response(&udp, srs.sip, bye.as_bytes())), 200);
    let list = srs.wait_recordings(2, Duration::from_secs(10));
    for (call_id, transport, freq) in [("flood-udp", "udp", 1000.0), ("flood-tcp", "tcp", 400.0)] {
        let rec = list
            .iter()
            .find(|r| r["call_id"] == call_id)
            .unwrap_or_else(|| panic!("{call_id} recorded: {list:?}"));
        assert_eq!(
            (rec["status"].as_str(), rec["transport"].as_str()),
            (Some("complete"), Some(transport))
        );
        let dir = srs.recordings.join(rec["path"].as_str().unwrap());
        let (samples, rate) = read_wav(&dir.join(rec["files"][0]["name"].as_str().unwrap()));
        let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
        let hits = w.iter().filter(|t| **t == Some(freq)).count();
        assert!(hits >= 55, "{call_id}: {hits} windows of {freq} Hz: {w:?}");
        assert_eq!(rec["streams"][0]["packets_received"], 300, "{rec}");
    }

    // The server's descriptors are back to their baseline.
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = server_fds(&srs);
        if now <= baseline {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now} descriptors, baseline {baseline}:\n{}",
            std::fs::read_dir(format!("/proc/{}/fd", srs.child.id()))
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = srs.log();
    assert!(
        log.contains("per-source connection cap"),
        "the cap is logged"
    );
    assert!(
        log.matches("connection cap reached").count() < 10,
        "cap closings are logged at a bounded rate"
    );
}

/// The server's descriptors run out (its limit lowered under it): new
/// sessions get `503 Out Of Descriptors` with `Retry-After`, the refused
/// session leaves nothing in `.incoming` once descriptors are back, accept
/// failures are logged at a bounded rate, and service resumes.
#[test]
fn out_of_descriptors_is_answered_as_such_and_logged_at_a_bounded_rate() {
    raise_own_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    // Caps and timeouts out of the way: the descriptor limit is what bites.
    std::fs::write(
        &cfg,
        "[sip]\nconnection_head_timeout = 60\nmax_connections_per_source = 10000\nmax_connections = 10000\n",
    )
    .unwrap();
    let srs = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let baseline = server_fds(&srs) as u64;
    let limit = libc::rlimit {
        rlim_cur: baseline + 8,
        rlim_max: baseline + 8,
    };
    // SAFETY: prlimit on our child's pid with a struct that lives across it.
    let r = unsafe {
        libc::prlimit(
            srs.child.id() as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
    // 40 connections: the first few take the last descriptors, the rest
    // wait in the accept queue while accept(2) fails with EMFILE.
    let flood: Vec<TcpStream> = (0..40)
        .map(|_| connect_from([127, 0, 0, 1], srs.sip).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let udp = UdpSocket::bind("127.0.0.2:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = udp.local_addr().unwrap();
    let r = final_response(&udp, srs.sip, invite_text("UDP", local, "no-fd").as_bytes());
    assert!(
        matches!(&r.start, srs::sip::message::StartLine::Response { code: 503, reason }
            if reason == "Out Of Descriptors"),
        "{:?}\n{}",
        r.start,
        srs.log()
    );
    assert_eq!(r.header("Retry-After"), Some("10"));
    std::thread::sleep(Duration::from_millis(1500));
    // 3 s of EMFILE, an attempt every 50 ms: one line (and the next one, 10 s later).
    let log = srs.log();
    let lines = log.matches("out of file descriptors").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} accept failure lines in 3 s:\n{log}"
    );
    // Descriptors come back: the refused session's directory goes, and
    // new sessions are recorded again.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = std::fs::read_dir(srs.recordings.join(".incoming"))
            .map(|d| d.count())
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} directories left in .incoming by a refused session"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let udp2 = UdpSocket::bind("127.0.0.2:0").unwrap();
    udp2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local2 = udp2.local_addr().unwrap();
    let ok = final_response(
        &udp2,
        srs.sip,
        invite_text("UDP", local2, "fd-back").as_bytes(),
    );
    assert_eq!(status(&ok), 200, "service resumes");
}
