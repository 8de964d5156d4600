//! The machine's floor for receiving RTP: what the kernel and one bare
//! receiver thread cost for the same traffic the load generator sends.
//!
//!     cargo run --release --example udp_floor -- --streams N --seconds S [--pps-per-stream 50]
//!         [--sender-sockets 16] [--batch 16] [--write DIR]
//!
//! It binds N UDP sockets on 127.0.0.1. One receiver thread runs a bare
//! `epoll_wait` + `recvmmsg(2)` loop over them (level-triggered, batches of
//! `--batch` datagrams, the server's batch size by default): no parsing, no
//! writing, it only counts packets and bytes. Meanwhile the load generator's
//! own pacing sender (`examples/common/sender.rs`, the same code, the same
//! 172-byte PCMU packets and 1 ms wheel) sends one packet per stream every
//! 1000/pps ms to all N sockets for S seconds.
//!
//! With `--write DIR` it is the floor of *recording* instead: the same loop
//! also does what any recorder must do with each packet and no more: it
//! decodes the PCMU payload to 16-bit PCM (table lookup) and appends it to
//! one file per stream in DIR through an 8 KiB `BufWriter` (the server's
//! buffer size), then flushes and deletes the files at the end. The
//! difference from the bare floor is what putting 16 KB/s per stream into
//! the page cache costs on this machine.
//!
//! Reported: packets sent/received/lost, the receiver thread's CPU (user +
//! sys from `/proc/self/task/<tid>/stat`) per packet in µs, the sender
//! thread's CPU per packet, and one JSON line at the end.
//!
//! ## Comparing with the server
//!
//! The server receives two streams per call, so run both with
//! `streams = 2 × calls` and `seconds = talk`, one after the other on the
//! same (otherwise idle) machine, e.g. for 500 calls of 60 s:
//!
//!     cargo run --release -- serve --sip 127.0.0.1:15060 --http 127.0.0.1:18080 \
//!         --recordings /tmp/lg-rec --rtp-ports 30000-39999 &
//!     cargo run --release --example loadgen -- --calls 500 --cps 50 --talk 60 \
//!         --target 127.0.0.1:15060 --http 127.0.0.1:18080
//!     (server CPU: read utime+stime of /proc/<srs pid>/stat before and after)
//!     cargo run --release --example udp_floor -- --streams 1000 --seconds 60
//!
//! and divide the server's CPU per received packet by this receiver's CPU
//! per packet (the ratio). Note: on loopback the kernel's delivery of a
//! datagram (IP/UDP input, queueing on the socket) runs in the *sender's*
//! context, so it is charged to the sender thread here and to the load
//! generator there; both receivers are charged the same part (wake-up,
//! `recvmmsg` and the copy out of the socket), so the ratio compares like
//! with like. Clock-tick resolution of /proc is 10 ms: use runs of at
//! least ~10 s for a meaningful µs/packet.

#[path = "common/sender.rs"]
mod sender;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    streams: usize,
    seconds: u64,
    pps: usize,
    sender_sockets: usize,
    batch: usize,
    write: Option<std::path::PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: udp_floor --streams N --seconds S [--pps-per-stream 50] [--sender-sockets 16] [--batch 16] [--write DIR]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        streams: 0,
        seconds: 0,
        pps: 50,
        sender_sockets: 16,
        batch: 16,
        write: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        let num = |v: String| v.parse::<u64>().unwrap_or_else(|_| usage());
        match flag.as_str() {
            "--streams" => a.streams = num(val()) as usize,
            "--seconds" => a.seconds = num(val()),
            "--pps-per-stream" => a.pps = num(val()) as usize,
            "--sender-sockets" => a.sender_sockets = num(val()) as usize,
            "--batch" => a.batch = num(val()) as usize,
            "--write" => a.write = Some(val().into()),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if a.streams == 0 || a.seconds == 0 || a.sender_sockets == 0 || a.batch == 0 {
        usage();
    }
    if a.pps == 0 || 1000 % a.pps != 0 {
        eprintln!("--pps-per-stream must divide 1000 (the sender's wheel has 1 ms ticks)");
        std::process::exit(2);
    }
    a
}

/// What the receiver thread counted.
#[derive(Default)]
struct RxStats {
    packets: u64,
    bytes: u64,
    recv_calls: u64,
    wakeups: u64,
    cpu: sender::CpuTimes,
}

const BUF: usize = 2048;

/// `--write`: one file per stream and the decode buffer.
struct Sink {
    files: Vec<std::io::BufWriter<std::fs::File>>,
    pcm: Vec<u8>,
}

impl Sink {
    fn new(dir: &std::path::Path, streams: usize) -> Sink {
        std::fs::create_dir_all(dir).expect("create the --write directory");
        let files = (0..streams)
            .map(|i| {
                let f = std::fs::File::create(dir.join(format!("floor-{i}.pcm")))
                    .expect("create a --write file");
                std::io::BufWriter::with_capacity(8192, f)
            })
            .collect();
        Sink {
            files,
            pcm: Vec::with_capacity(4096),
        }
    }

    /// Decodes an RTP packet's PCMU payload and appends it to stream `i`.
    fn record(&mut self, i: usize, packet: &[u8]) {
        use std::io::Write;
        self.pcm.clear();
        for &u in packet.get(12..).unwrap_or_default() {
            self.pcm
                .extend_from_slice(&srs::media::g711::ulaw_to_linear(u).to_le_bytes());
        }
        self.files[i]
            .write_all(&self.pcm)
            .expect("write a --write file");
    }
}

fn receive(
    socks: Vec<UdpSocket>,
    batch: usize,
    stop: Arc<AtomicBool>,
    mut sink: Option<Sink>,
) -> RxStats {
    let tid = sender::gettid();
    let cpu0 = sender::thread_cpu(tid);
    // SAFETY: plain epoll set-up on descriptors owned by `socks`.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(
        ep >= 0,
        "epoll_create1: {}",
        std::io::Error::last_os_error()
    );
    for (i, s) in socks.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: `ev` is a valid event for the call.
        let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
        assert!(r == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    }
    let fds: Vec<i32> = socks.iter().map(|s| s.as_raw_fd()).collect();
    let mut bufs = vec![0u8; BUF * batch];
    // SAFETY: all-zero is a valid iovec / mmsghdr; the pointers set below
    // refer to `bufs`, `iov` and `hdr`, which are never moved or resized.
    let mut iov: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; batch];
    let mut hdr: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; batch];
    for i in 0..batch {
        iov[i].iov_base = bufs[i * BUF..].as_mut_ptr().cast();
        iov[i].iov_len = BUF;
        hdr[i].msg_hdr.msg_iov = &mut iov[i];
        hdr[i].msg_hdr.msg_iovlen = 1;
    }
    let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut st = RxStats::default();
    let mut quiet_since_stop = 0;
    loop {
        // SAFETY: `events` holds 256 entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), 256, 20) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_wait: {e}");
        }
        if n == 0 {
            if stop.load(Ordering::Relaxed) {
                quiet_since_stop += 1;
                if quiet_since_stop >= 3 {
                    break;
                }
            }
            continue;
        }
        st.wakeups += 1;
        for ev in &events[..n as usize] {
            let i = ev.u64 as usize;
            let fd = fds[i];
            loop {
                // SAFETY: `hdr` holds `batch` headers pointing into `bufs`.
                let r = unsafe {
                    libc::recvmmsg(
                        fd,
                        hdr.as_mut_ptr(),
                        batch as libc::c_uint,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                st.recv_calls += 1;
                if r <= 0 {
                    break;
                }
                let r = r as usize;
                st.packets += r as u64;
                for (k, h) in hdr[..r].iter().enumerate() {
                    st.bytes += u64::from(h.msg_len);
                    if let Some(sink) = sink.as_mut() {
                        let len = (h.msg_len as usize).min(BUF);
                        sink.record(i, &bufs[k * BUF..k * BUF + len]);
                    }
                }
                if r < batch {
                    break;
                }
            }
        }
    }
    if let Some(sink) = sink.as_mut() {
        for f in &mut sink.files {
            use std::io::Write;
            f.flush().expect("flush a --write file");
        }
    }
    st.cpu = sender::thread_cpu(tid).since(cpu0);
    // SAFETY: `ep` is ours.
    unsafe { libc::close(ep) };
    drop(socks);
    st
}

fn main() {
    let a = parse_args();
    let period_ms = 1000 / a.pps;
    let per_stream = a.seconds * a.pps as u64;
    // Receiving sockets.
    let mut rx_socks = Vec::with_capacity(a.streams);
    let mut dests = Vec::with_capacity(a.streams);
    for _ in 0..a.streams {
        let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a receiving socket");
        s.set_nonblocking(true).unwrap();
        match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(v4) => dests.push(v4),
            _ => unreachable!(),
        }
        rx_socks.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rx = {
        let stop = stop.clone();
        let batch = a.batch;
        let sink = a.write.as_deref().map(|d| Sink::new(d, a.streams));
        std::thread::Builder::new()
            .name("floor-rx".into())
            .spawn(move || receive(rx_socks, batch, stop, sink))
            .unwrap()
    };
    let tx_socks = sender::sender_sockets(Ipv4Addr::LOCALHOST, a.sender_sockets, 0)
        .expect("bind the sender sockets");
    let tones = vec![
        sender::ulaw_tone(1000, 8000.0),
        sender::ulaw_tone(400, 8000.0),
    ];
    let proc0 = sender::process_cpu();
    let t0 = Instant::now();
    let (cmd, _done, tx) = sender::spawn(tx_socks, tones, period_ms);
    for (i, d) in dests.iter().enumerate() {
        let _ = cmd.send(sender::Cmd::Add(sender::StreamSpec {
            id: i as u64,
            dest: SocketAddrV4::new(*d.ip(), d.port()),
            socket: i,
            payload_type: 0,
            ssrc: 0x5EED_0000 + i as u32,
            first_seq: (i as u16).wrapping_mul(7919),
            first_ts: (i as u32).wrapping_mul(104_729),
            tone: i % 2,
            packets: per_stream as u32,
        }));
    }
    let _ = cmd.send(sender::Cmd::Finish);
    let txs = tx.join().expect("sender thread");
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let rxs = rx.join().expect("receiver thread");
    if let Some(dir) = &a.write {
        for i in 0..a.streams {
            let _ = std::fs::remove_file(dir.join(format!("floor-{i}.pcm")));
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let proc_cpu = sender::process_cpu().since(proc0);

    let expected = per_stream * a.streams as u64;
    let lost = txs.packets.saturating_sub(rxs.packets);
    let per = |cpu: f64, n: u64| if n > 0 { cpu * 1e6 / n as f64 } else { 0.0 };
    let rx_us = per(rxs.cpu.total(), rxs.packets);
    let tx_us = per(txs.cpu.total(), txs.packets);
    println!(
        "udp_floor: {} streams x {} s at {} pps/stream ({} packets/s offered), {} sender sockets, recvmmsg batch {}{}",
        a.streams,
        a.seconds,
        a.pps,
        a.streams * a.pps,
        a.sender_sockets,
        a.batch,
        if a.write.is_some() {
            ", decoding and writing each stream to a file"
        } else {
            ""
        }
    );
    println!(
        "packets: expected {expected}, sent {}, received {}, lost {lost}, send errors {}{}",
        txs.packets,
        rxs.packets,
        txs.errors,
        txs.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!(
        "receiver thread: cpu {:.3} s (user {:.3}, sys {:.3}) = {:.2} us/packet; {} epoll wakeups, {} recvmmsg calls, {:.1} packets/wakeup",
        rxs.cpu.total(),
        rxs.cpu.user,
        rxs.cpu.sys,
        rx_us,
        rxs.wakeups,
        rxs.recv_calls,
        if rxs.wakeups > 0 { rxs.packets as f64 / rxs.wakeups as f64 } else { 0.0 }
    );
    println!(
        "sender thread: cpu {:.3} s (user {:.3}, sys {:.3}) = {:.2} us/packet; {:.0} packets/s achieved ({} in the busiest second), {} sendmmsg calls, max tick lag {:.1} ms, {} ticks >5 ms late",
        txs.cpu.total(),
        txs.cpu.user,
        txs.cpu.sys,
        tx_us,
        txs.rate(),
        txs.peak_rate,
        txs.syscalls,
        txs.max_lag.as_secs_f64() * 1e3,
        txs.late_ticks
    );
    println!(
        "process: cpu {:.3} s over {:.2} s wall (/proc has 10 ms resolution)",
        proc_cpu.total(),
        wall
    );
    let json = serde_json::json!({
        "streams": a.streams,
        "seconds": a.seconds,
        "pps_per_stream": a.pps,
        "write": a.write.is_some(),
        "packets_sent": txs.packets,
        "packets_received": rxs.packets,
        "lost": lost,
        "send_errors": txs.errors,
        "rx_cpu_s": rxs.cpu.total(),
        "rx_cpu_us_per_packet": rx_us,
        "tx_cpu_s": txs.cpu.total(),
        "tx_cpu_us_per_packet": tx_us,
        "tx_rate_pps": txs.rate(),
        "rx_packets_per_wakeup": if rxs.wakeups > 0 { rxs.packets as f64 / rxs.wakeups as f64 } else { 0.0 },
    });
    println!("{json}");
    if lost > 0 || txs.errors > 0 || txs.packets != expected {
        std::process::exit(1);
    }
}
