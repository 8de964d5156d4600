//! Per-packet cost of the recording path: parse (in place) + reorder +
//! decode + write WAV, per codec, against a parse-only baseline measured in
//! the same run. `cargo bench --bench packet_path`
//!
//! Prints one line per case: ns/packet (median of 7 runs of 50,000 packets)
//! and the ratio to the baseline. `-- TEXT` runs only the cases whose name
//! contains TEXT (e.g. `-- PCMU`, handy under `perf record`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use srs::media::codec::CodecKind;
use srs::media::recorder::{StreamRecorder, StreamSpec};
use srs::media::rtp::{build, parse_view};

const PACKETS: u32 = 50_000;
const RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn packets(pt: u8, payload: &[u8], ts_step: u32) -> Vec<Vec<u8>> {
    (0..PACKETS)
        .map(|i| build(pt, i as u16, i.wrapping_mul(ts_step), 7, payload))
        .collect()
}

fn bench_parse(pkts: &[Vec<u8>]) -> f64 {
    median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                for p in pkts {
                    black_box(parse_view(black_box(p)).ok());
                }
                t.elapsed().as_nanos() as f64 / pkts.len() as f64
            })
            .collect(),
    )
}

fn bench_record(kind: CodecKind, pt: u8, pkts: &[Vec<u8>]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    median(
        (0..RUNS)
            .map(|run| {
                let t0 = Instant::now();
                let spec = StreamSpec::single(kind.clone(), pt);
                let path = dir.path().join(format!("b{run}.wav"));
                let mut r = StreamRecorder::create(&path, spec, t0, None).unwrap();
                let t = Instant::now();
                for (i, p) in pkts.iter().enumerate() {
                    // simulated arrival: every 20 ms
                    r.on_datagram(t0 + Duration::from_millis(20 * i as u64), p)
                        .unwrap();
                }
                let ns = t.elapsed().as_nanos() as f64 / pkts.len() as f64;
                r.finish(t0 + Duration::from_millis(20 * u64::from(PACKETS)))
                    .unwrap();
                ns
            })
            .collect(),
    )
}

fn main() {
    let g711 = packets(0, &[0x55; 160], 160);
    let base = bench_parse(&g711);
    println!(
        "{:<34} {:>9.1} ns/packet  1.00x",
        "parse only (RTP header, in place)", base
    );
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    let pcm: Vec<i16> = (0..960)
        .map(|i| ((i as f64 * 0.052).sin() * 8000.0) as i16)
        .collect();
    let mut obuf = vec![0u8; 1500];
    let n = enc.encode(&pcm, &mut obuf).unwrap();
    let cases: Vec<(&str, CodecKind, u8, Vec<Vec<u8>>)> = vec![
        ("PCMU 20 ms -> WAV 8 kHz", CodecKind::Pcmu, 0, g711.clone()),
        (
            "PCMA 20 ms -> WAV 8 kHz",
            CodecKind::Pcma,
            8,
            packets(8, &[0x55; 160], 160),
        ),
        (
            "G.722 20 ms -> WAV 16 kHz",
            CodecKind::G722,
            9,
            packets(9, &[0x55; 160], 160),
        ),
        (
            "L16 8k 20 ms -> WAV 8 kHz",
            CodecKind::L16 {
                rate: 8000,
                channels: 1,
            },
            96,
            packets(96, &[0x10; 320], 160),
        ),
        (
            "Opus 20 ms -> WAV 48 kHz",
            CodecKind::Opus,
            111,
            packets(111, &obuf[..n], 960),
        ),
    ];
    // `cargo bench` passes `--bench`; any other argument filters.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for (name, kind, pt, pkts) in cases {
        if !filter.iter().all(|f| name.contains(f.as_str())) {
            continue;
        }
        let ns = bench_record(kind, pt, &pkts);
        println!("{name:<34} {ns:>9.1} ns/packet  {:.2}x", ns / base);
    }
}
