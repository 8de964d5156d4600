//! The packet path allocates nothing in steady state: datagrams through a
//! real UDP socket, `recvmmsg` into pooled buffers, in-place RTP parsing,
//! the reorder ring, decoding into a reserved buffer, WAV writing with its
//! header checkpoints, are measured by a counting global allocator (only
//! allocations made on this test's thread count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use srs::media::codec::CodecKind;
use srs::media::receiver::BatchReceiver;
use srs::media::recorder::{StreamRecorder, StreamSpec};
use srs::media::rtp::build;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn run(kind: CodecKind, pt: u8, payload: Vec<u8>) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_nonblocking(true).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = rx.local_addr().unwrap();
    let t0 = Instant::now();
    let spec = StreamSpec {
        codecs: vec![(pt, kind)],
        dtmf: Some((101, 8000)),
        cn: None,
        srtp: None,
    };
    let mut rec = StreamRecorder::create(&dir.path().join("s.wav"), spec, t0, None).unwrap();
    let mut batch = BatchReceiver::new();
    // Packets are built up front; sending is not the packet path.
    let packets: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| build(pt, i as u16, i * 160, 42, &payload))
        .collect();
    let mut count = |from: usize, to_: usize, measure: bool| {
        for chunk in (from..to_).collect::<Vec<_>>().chunks(8) {
            for &i in chunk {
                // every 50th packet is delayed one step: exercise reordering
                let j = if i % 50 == 1 {
                    i + 1
                } else if i % 50 == 2 {
                    i - 1
                } else {
                    i
                };
                tx.send_to(&packets[j], to).unwrap();
            }
            std::thread::sleep(Duration::from_micros(300));
            COUNTING.with(|c| c.set(measure));
            while let Ok(n) = batch.recv(rx.as_raw_fd()) {
                for k in 0..n {
                    let now = t0 + Duration::from_millis(20 * chunk[0] as u64);
                    rec.on_datagram(now, batch.packet(k)).unwrap();
                }
            }
            rec.tick(t0 + Duration::from_millis(20 * chunk[0] as u64))
                .unwrap();
            COUNTING.with(|c| c.set(false));
        }
    };
    count(0, 200, false); // warm-up: buffers reach their working size
    ALLOCS.store(0, Ordering::Relaxed);
    count(200, 3000, true); // 56 s of audio, 28 header checkpoints
    let n = ALLOCS.load(Ordering::Relaxed);
    let stats = rec.finish(t0 + Duration::from_secs(61)).unwrap();
    assert!(stats.packets_received >= 2990, "{stats:?}");
    n
}

#[test]
fn pcmu_packet_path_does_not_allocate() {
    assert_eq!(run(CodecKind::Pcmu, 0, vec![0x55; 160]), 0);
}

#[test]
fn g722_packet_path_does_not_allocate() {
    assert_eq!(run(CodecKind::G722, 9, vec![0x55; 160]), 0);
}
