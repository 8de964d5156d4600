//! CPU cost of sealing a recording at publication (issue 15): each file's
//! SHA-256 and the manifest (always), and encryption at rest (age, when
//! `[encryption] recipients` is set), per recorded minute, encryption on
//! and off measured in the same run.
//!
//!     cargo run --release --example seal_cost -- [--minutes 10] [--runs 5]
//!     cargo run --release --example seal_cost -- --seconds 1 --runs 200
//!
//! The second form measures what sealing costs per call whatever its
//! length (file creations, renames, key wrapping: what the 1,000 sessions
//! per second of `benches/session_rate.sh` pay, their calls being
//! near-empty).
//!
//! Each run seals a fresh copy of one two-party call (two mono 8 kHz
//! 16-bit WAVs of `--minutes` minutes, as `srs serve` writes them) with
//! `store::integrity::seal`, the function the encoder threads run before
//! publishing; the CPU time of the sealing thread alone is measured
//! (`CLOCK_THREAD_CPUTIME_ID`: the copies are not counted). Prints the
//! median over the runs, in ms of CPU per minute of call.

use std::path::Path;
use std::time::Duration;

use srs::recording::{FileMeta, RecordingMeta};
use srs::store::crypt::{generate, Encryptor};
use srs::store::integrity::seal;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A mono 8 kHz WAV of `seconds` seconds of a tone.
fn write_wav(path: &Path, seconds: u64, freq: f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = seconds * 8000;
    let tone = srs::testkit::sine(freq, 8000, 0, 8000, 8000.0);
    for i in 0..n {
        w.write_sample(tone[(i % 8000) as usize]).unwrap();
    }
    w.finalize().unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let seconds = match arg("--seconds", 0) {
        0 => arg("--minutes", 10).max(1) * 60,
        s => s,
    };
    let minutes = seconds as f64 / 60.0;
    let runs = arg("--runs", 5).max(1);
    let tmp = tempfile::tempdir().unwrap();
    let master = tmp.path().join("master");
    std::fs::create_dir_all(&master).unwrap();
    write_wav(&master.join("caller-1.wav"), seconds, 1000.0);
    write_wav(&master.join("agent-2.wav"), seconds, 400.0);
    std::fs::write(master.join("metadata.xml"), vec![b'x'; 4096]).unwrap();
    let (_, key1) = generate();
    let (_, key2) = generate();
    let one = Encryptor::from_recipients(std::slice::from_ref(&key1)).unwrap();
    let two = Encryptor::from_recipients(&[key1, key2]).unwrap();
    let cases: [(&str, Option<&Encryptor>); 3] = [
        ("hashes only (encryption off)", None),
        ("encryption on, 1 recipient", one.as_ref()),
        ("encryption on, 2 recipients", two.as_ref()),
    ];
    let bytes: u64 = ["caller-1.wav", "agent-2.wav"]
        .iter()
        .map(|n| std::fs::metadata(master.join(n)).unwrap().len())
        .sum();
    println!(
        "one call of {seconds} s: 2 mono 8 kHz WAVs, {:.2} MB; median of {runs} runs",
        bytes as f64 / 1e6
    );
    println!("| case | CPU ms per call | CPU ms per minute of call | MB/s of CPU |");
    println!("|---|---:|---:|---:|");
    // Interleaved, so that a neighbour's load falls on every case alike.
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for run in 0..runs {
        for (c, (_, enc)) in cases.iter().enumerate() {
            let dir = tmp.path().join(format!("r{run}-{c}"));
            std::fs::create_dir_all(&dir).unwrap();
            for n in ["caller-1.wav", "agent-2.wav", "metadata.xml"] {
                std::fs::copy(master.join(n), dir.join(n)).unwrap();
            }
            let mut meta = RecordingMeta {
                recording_id: format!("r{run}-{c}"),
                files: ["caller-1.wav", "agent-2.wav"]
                    .iter()
                    .map(|n| FileMeta {
                        name: n.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            let t0 = thread_cpu();
            seal(&dir, &mut meta, *enc).unwrap();
            let cpu = (thread_cpu() - t0).as_secs_f64();
            assert!(meta.manifest_sha256.is_some());
            results[c].push(cpu);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    for ((name, _), cpu) in cases.iter().zip(results) {
        let m = median(cpu);
        println!(
            "| {name} | {:.3} | {:.2} | {:.0} |",
            m * 1e3,
            m * 1e3 / minutes,
            bytes as f64 / 1e6 / m
        );
    }
}
