//! Load on the HTTP API with access control and the audit trail (issue 13).
//!
//!     cargo run --release --example api_load -- compare [--recordings 2000] [--clients 8] [--seconds 10]
//!     cargo run --release --example api_load -- hammer --http ADDR:PORT --token SECRET
//!         [--clients 8] [--seconds 0] [--stop-file PATH]
//!
//! `compare`: the API's throughput with access control and auditing on
//! (a token checked on every request, an audit entry written before every
//! answer) against off (no token, no audit trail), in one run, on the same
//! machine: two APIs in this process, each over its own copy of an index
//! of `--recordings` bulky recordings (about 4 KB of JSON each), each
//! driven in turn by `--clients` keep-alive clients for `--seconds`: two
//! in three requests a search (`?dn=<a Record DN>&limit=20`: 20
//! recordings), one in three a recording by id. It then checks that the
//! audited API wrote one entry per answered request and that the chain
//! verifies. Prints a summary, then one JSON line with `ratio` (on/off).
//!
//! `hammer`: authenticated searches against a running `srs serve`
//! (`benches/api_hammer.sh` runs it beside 2,000 recorded calls), until
//! `--seconds` (0: no limit) or until `--stop-file` exists. Prints one JSON
//! line: requests, statuses, requests/s.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use srs::recording::RecordingMeta;

fn usage() -> ! {
    eprintln!(
        "usage: api_load compare [--recordings N] [--clients N] [--seconds S]\n       \
         api_load hammer --http ADDR:PORT --token SECRET [--clients N] [--seconds S] [--stop-file PATH]"
    );
    std::process::exit(2)
}

struct Args {
    mode: String,
    recordings: usize,
    clients: usize,
    seconds: f64,
    http: Option<SocketAddr>,
    token: Option<String>,
    stop_file: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    let mut a = Args {
        mode,
        recordings: 2000,
        clients: 8,
        seconds: 10.0,
        http: None,
        token: None,
        stop_file: None,
    };
    if a.mode == "hammer" {
        a.seconds = 0.0;
    }
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--recordings" => a.recordings = val().parse().unwrap_or_else(|_| usage()),
            "--clients" => a.clients = val().parse().unwrap_or_else(|_| usage()),
            "--seconds" => a.seconds = val().parse().unwrap_or_else(|_| usage()),
            "--http" => a.http = Some(val().parse().unwrap_or_else(|_| usage())),
            "--token" => a.token = Some(val()),
            "--stop-file" => a.stop_file = Some(PathBuf::from(val())),
            _ => usage(),
        }
    }
    a
}

/// Requests and answers of a run.
#[derive(Debug, Default)]
struct Tally {
    by_status: BTreeMap<u16, u64>,
    failed_connections: u64,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        self.failed_connections += o.failed_connections;
        self.latencies_us.extend(o.latencies_us);
    }

    fn total(&self) -> u64 {
        self.by_status.values().sum()
    }

    fn ok(&self) -> u64 {
        self.by_status.get(&200).copied().unwrap_or(0)
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * p) as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }
}

/// A keep-alive HTTP/1.1 client.
struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// One GET; the status, or None if the connection failed.
    fn get(&mut self, path: &str, token: Option<&str>) -> Option<u16> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
            let _ = s.set_nodelay(true);
            self.conn = Some(BufReader::new(s));
        }
        let r = self.exchange(path, token);
        if r.is_none() {
            self.conn = None;
        }
        r
    }

    fn exchange(&mut self, path: &str, token: Option<&str>) -> Option<u16> {
        let conn = self.conn.as_mut()?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        conn.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes())
            .ok()?;
        let mut line = String::new();
        conn.read_line(&mut line).ok()?;
        let status: u16 = line.get(9..12)?.parse().ok()?;
        let (mut len, mut chunked, mut close) = (0usize, false, false);
        loop {
            line.clear();
            conn.read_line(&mut line).ok()?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().ok()?;
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        if chunked {
            loop {
                line.clear();
                conn.read_line(&mut line).ok()?;
                let n = usize::from_str_radix(line.trim(), 16).ok()?;
                let mut skip = vec![0u8; n + 2];
                conn.read_exact(&mut skip).ok()?;
                if n == 0 {
                    break;
                }
            }
        } else {
            let mut body = vec![0u8; len];
            conn.read_exact(&mut body).ok()?;
        }
        if close {
            self.conn = None;
        }
        Some(status)
    }
}

/// `clients` threads asking `paths(n)` until `stop`, with `token`.
fn drive(
    addr: SocketAddr,
    token: Option<String>,
    clients: usize,
    stop: Arc<AtomicBool>,
    paths: Arc<dyn Fn(u64) -> String + Send + Sync>,
) -> Tally {
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (token, stop, paths) = (token.clone(), stop.clone(), paths.clone());
            std::thread::spawn(move || {
                let mut client = Client { addr, conn: None };
                let mut t = Tally::default();
                let mut n = c as u64 * 7919;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let t0 = Instant::now();
                    match client.get(&paths(n), token.as_deref()) {
                        Some(s) => {
                            *t.by_status.entry(s).or_default() += 1;
                            t.latencies_us
                                .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                            if s == 503 {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                        }
                        None => {
                            t.failed_connections += 1;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                t
            })
        })
        .collect();
    let mut all = Tally::default();
    for t in threads {
        all.merge(t.join().unwrap_or_default());
    }
    all
}

/// One API over `dir` (its own index), on a free loopback port.
fn start_api(
    dir: &Path,
    audited: bool,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> SocketAddr {
    let mut config = srs::config::Config::default();
    config.storage.recordings = dir.to_path_buf();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let setup = srs::http::ApiSetup::prepare(&config).expect("API set-up");
    let setup = if audited {
        setup
    } else {
        setup.without_audit()
    };
    let state = srs::http::ApiState::new(Arc::default(), setup).expect("API state");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // This runtime only binds; the API runs on a thread and runtime of its
    // own (http::spawn), as in srs serve.
    rt.block_on(async move {
        let listener = srs::http::bind(config.http.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        srs::http::spawn(listener, state, config.http.index_connections, shutdown).unwrap();
        addr
    })
}

fn compare(a: &Args) {
    let tmp = tempfile_dir();
    let metas: Vec<RecordingMeta> = (0..a.recordings)
        .map(srs::testkit::bulky_recording)
        .collect();
    let mut secret = None;
    for (mode, with_token) in [("off", false), ("on", true)] {
        let dir = tmp.join(mode);
        let ix = srs::store::Index::open(&dir.join("index.sqlite")).unwrap();
        for chunk in metas.chunks(500) {
            ix.upsert_batch(chunk).unwrap();
        }
        if with_token {
            let s = srs::auth::tokens::add(
                ix.conn(),
                "bench",
                srs::auth::Role::Listener,
                &srs::auth::Scope::default(),
                "bench",
            )
            .unwrap();
            secret = Some(s);
        }
    }
    let n = a.recordings.max(1) as u64;
    let paths: Arc<dyn Fn(u64) -> String + Send + Sync> = Arc::new(move |i: u64| {
        if i % 3 == 2 {
            format!("/api/v1/recordings/bulk-{:06}", (i * 31) % n)
        } else {
            format!("/api/v1/recordings?dn={}&limit=20", 7000 + (i % 100))
        }
    });
    let mut results = BTreeMap::new();
    for (mode, audited) in [("off", false), ("on", true)] {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let addr = start_api(&tmp.join(mode), audited, rx);
        let token = if audited { secret.clone() } else { None };
        // Warm the index pool and the page cache.
        drive_for(addr, token.clone(), a.clients, 1.0, paths.clone());
        let mut t = drive_for(addr, token, a.clients, a.seconds, paths.clone());
        let _ = tx.send(true);
        let rps = t.total() as f64 / a.seconds;
        let ok_rps = t.ok() as f64 / a.seconds;
        let (p50, p99) = (t.percentile_ms(0.5), t.percentile_ms(0.99));
        println!(
            "{mode:>3}: {} requests in {:.0} s ({rps:.0}/s), {} ok ({ok_rps:.0}/s), statuses {:?}, failed connections {}, p50 {p50:.2} ms, p99 {p99:.2} ms",
            t.total(),
            a.seconds,
            t.ok(),
            t.by_status,
            t.failed_connections,
        );
        results.insert(mode, (ok_rps, p50, p99));
        std::thread::sleep(Duration::from_millis(300));
    }
    // Every answered request of the audited API has its entry, and the
    // chain holds.
    let ix = srs::store::Index::open_existing(&tmp.join("on/index.sqlite"))
        .unwrap()
        .unwrap();
    let entries: i64 = ix
        .conn()
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    let verified = srs::store::audit::verify(ix.conn()).unwrap();
    println!(
        "audit: {entries} entries (warm-up included), chain {}",
        if verified.is_ok() { "intact" } else { "BROKEN" }
    );
    let (off, on) = (results["off"], results["on"]);
    println!(
        "{}",
        serde_json::json!({
            "recordings": a.recordings, "clients": a.clients, "seconds": a.seconds,
            "off_ok_per_s": off.0.round(), "on_ok_per_s": on.0.round(),
            "ratio": ((on.0 / off.0.max(1.0)) * 1000.0).round() / 1000.0,
            "off_p50_ms": off.1, "off_p99_ms": off.2, "on_p50_ms": on.1, "on_p99_ms": on.2,
            "audit_entries": entries, "chain_intact": verified.is_ok(),
        })
    );
    let _ = std::fs::remove_dir_all(&tmp);
    if verified.is_err() {
        std::process::exit(1);
    }
}

fn drive_for(
    addr: SocketAddr,
    token: Option<String>,
    clients: usize,
    seconds: f64,
    paths: Arc<dyn Fn(u64) -> String + Send + Sync>,
) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(seconds));
        s.store(true, Ordering::Relaxed);
    });
    let t = drive(addr, token, clients, stop, paths);
    let _ = timer.join();
    t
}

fn hammer(a: &Args) {
    let addr = a.http.unwrap_or_else(|| usage());
    let token = a.token.clone().unwrap_or_else(|| usage());
    let stop = Arc::new(AtomicBool::new(false));
    let (s, seconds, stop_file) = (stop.clone(), a.seconds, a.stop_file.clone());
    std::thread::spawn(move || {
        let t0 = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let timed_out = seconds > 0.0 && t0.elapsed().as_secs_f64() >= seconds;
            if timed_out || stop_file.as_ref().is_some_and(|f| f.exists()) {
                s.store(true, Ordering::Relaxed);
                return;
            }
        }
    });
    let paths: Arc<dyn Fn(u64) -> String + Send + Sync> = Arc::new(|i: u64| match i % 4 {
        0 => "/api/v1/recordings?limit=50".into(),
        1 => format!(
            "/api/v1/recordings?status=complete&limit=20&offset={}",
            (i * 7) % 500
        ),
        2 => "/api/v1/recordings?since=2000-01-01&limit=100".into(),
        _ => format!("/api/v1/recordings?participant=loadgen-{}&limit=10", i % 50),
    });
    let t0 = Instant::now();
    let mut t = drive(addr, Some(token), a.clients, stop, paths);
    let secs = t0.elapsed().as_secs_f64();
    let (p50, p99) = (t.percentile_ms(0.5), t.percentile_ms(0.99));
    println!(
        "{}",
        serde_json::json!({
            "requests": t.total(), "ok": t.ok(), "statuses": t.by_status,
            "failed_connections": t.failed_connections, "seconds": (secs * 10.0).round() / 10.0,
            "ok_per_s": (t.ok() as f64 / secs).round(),
            "p50_ms": p50, "p99_ms": p99,
        })
    );
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("srs-api-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn main() {
    let a = parse_args();
    match a.mode.as_str() {
        "compare" => compare(&a),
        "hammer" => hammer(&a),
        _ => usage(),
    }
}
