//! Replays a JSON-lines call-event log into `POST /api/v1/call-events`
//! (issue 14): for integrators (a CTI connector's output, one event per
//! line, posted in batches), for tests, and for the load figure of
//! docs/performance.md.
//!
//!     cargo run --release --example event_feeder -- --http 127.0.0.1:8080 [--token SECRET]
//!         [--file events.jsonl | --generate CALLS] [--batch 100] [--rate EVENTS_PER_S]
//!         [--connections 4]
//!     cargo run --release --example event_feeder -- --generate CALLS --print > events.jsonl
//!
//! `--generate CALLS` makes a T-Lib-like log: per call EventRinging,
//! EventEstablished (with attached data), EventAttachedDataChanged,
//! EventPartyChanged (a transfer: a new ConnID, `previous_conn_id`),
//! EventReleased, then the disposition as attached data. `--rate 0` (the
//! default) posts as fast as the server takes them. The last line printed
//! is JSON: events, accepted, duplicates, refused (and the first refusal),
//! seconds, events_per_s.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    http: Option<SocketAddr>,
    token: Option<String>,
    file: Option<String>,
    generate: Option<usize>,
    batch: usize,
    rate: f64,
    connections: usize,
    print: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: event_feeder --http ADDR:PORT [--token SECRET] [--file FILE.jsonl | --generate CALLS] \
         [--batch 100] [--rate EVENTS_PER_S] [--connections 4] | --generate CALLS --print"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        http: None,
        token: None,
        file: None,
        generate: None,
        batch: 100,
        rate: 0.0,
        connections: 4,
        print: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--http" => a.http = Some(val().parse().unwrap_or_else(|_| usage())),
            "--token" => a.token = Some(val()),
            "--file" => a.file = Some(val()),
            "--generate" => a.generate = Some(val().parse().unwrap_or_else(|_| usage())),
            "--batch" => a.batch = val().parse().unwrap_or_else(|_| usage()),
            "--rate" => a.rate = val().parse().unwrap_or_else(|_| usage()),
            "--connections" => a.connections = val().parse().unwrap_or_else(|_| usage()),
            "--print" => a.print = true,
            _ => usage(),
        }
    }
    a
}

/// The events of `calls` synthetic calls, one JSON text each, in time order
/// per call.
fn generate(calls: usize) -> Vec<String> {
    let base = chrono::Utc::now() - chrono::Duration::minutes(10);
    let mut out = Vec::with_capacity(calls * 6);
    for i in 0..calls {
        let t =
            |s: i64| (base + chrono::Duration::milliseconds(i as i64 * 37 + s * 1000)).to_rfc3339();
        let uuid = format!("FEED{i:012}");
        let a = format!("{:016x}", 0x6f00_0000_0000_0000u64 + i as u64);
        let b = format!("{:016x}", 0x7f00_0000_0000_0000u64 + i as u64);
        let agent = 7000 + i % 500;
        let ev = [
            serde_json::json!({"event":"EventRinging","time":t(0),"call_uuid":uuid,"conn_id":a,
                "this_dn":agent.to_string(),"other_dn":"88001234","ani":"+15551230000","dnis":"18005550100",
                "call_type":"Inbound","this_queue":"sales"}),
            serde_json::json!({"event":"EventEstablished","time":t(4),"call_uuid":uuid,"conn_id":a,
                "this_dn":agent.to_string(),"agent_id":format!("agent{agent}"),
                "user_data":{"CustomerID":format!("CUST-{i}"),"Queue":"sales"}}),
            serde_json::json!({"event":"EventAttachedDataChanged","time":t(30),"call_uuid":uuid,"conn_id":a,
                "user_data":{"CaseNumber":format!("C-{i}")}}),
            serde_json::json!({"event":"EventPartyChanged","time":t(60),"call_uuid":uuid,"conn_id":b,
                "previous_conn_id":a,"this_dn":(agent + 1).to_string()}),
            serde_json::json!({"event":"EventReleased","time":t(120),"call_uuid":uuid,"conn_id":b,
                "this_dn":(agent + 1).to_string()}),
            serde_json::json!({"event":"EventAttachedDataChanged","time":t(150),"conn_id":b,
                "user_data":{"Disposition":"resolved"}}),
        ];
        out.extend(ev.iter().map(|e| e.to_string()));
    }
    out
}

/// One POST; the status and body.
fn post(addr: SocketAddr, token: Option<&str>, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_nodelay(true)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST /api/v1/call-events HTTP/1.1\r\nHost: srs\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

fn main() {
    let a = parse_args();
    let lines: Vec<String> = match (&a.file, a.generate) {
        (Some(f), _) => {
            let r: Box<dyn BufRead> = if f == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(f).unwrap_or_else(|e| panic!("{f}: {e}")),
                ))
            };
            r.lines()
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .collect()
        }
        (None, Some(n)) => generate(n),
        (None, None) => usage(),
    };
    if a.print {
        let mut out = std::io::stdout().lock();
        for l in &lines {
            let _ = writeln!(out, "{l}");
        }
        return;
    }
    let Some(addr) = a.http else { usage() };
    let batches: Vec<String> = lines
        .chunks(a.batch.max(1))
        .map(|c| format!("[{}]", c.join(",")))
        .collect();
    let sizes: Vec<usize> = lines.chunks(a.batch.max(1)).map(|c| c.len()).collect();
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let first_refusal = Arc::new(Mutex::new(None::<String>));
    let batches = Arc::new(batches);
    let sizes = Arc::new(sizes);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..a.connections.max(1))
        .map(|_| {
            let (next, accepted, duplicates, refused, first_refusal) = (
                next.clone(),
                accepted.clone(),
                duplicates.clone(),
                refused.clone(),
                first_refusal.clone(),
            );
            let (batches, sizes, token, rate) =
                (batches.clone(), sizes.clone(), a.token.clone(), a.rate);
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(body) = batches.get(i) else { return };
                if rate > 0.0 {
                    // Paced: batch i is due when the events before it are.
                    let before: usize = sizes[..i].iter().sum();
                    let due = t0 + Duration::from_secs_f64(before as f64 / rate);
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                }
                let mut tries = 0;
                loop {
                    tries += 1;
                    match post(addr, token.as_deref(), body) {
                        Ok((202, b)) => {
                            let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                            accepted
                                .fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                            duplicates.fetch_add(
                                v["duplicates"].as_u64().unwrap_or(0),
                                Ordering::Relaxed,
                            );
                        }
                        // Busy: the server said when to come back.
                        Ok((503, _)) if tries < 20 => {
                            std::thread::sleep(Duration::from_millis(100 * tries));
                            continue;
                        }
                        Ok((code, b)) => {
                            refused.fetch_add(sizes[i] as u64, Ordering::Relaxed);
                            let mut f = first_refusal.lock().unwrap();
                            f.get_or_insert(format!("HTTP {code}: {}", b.trim()));
                        }
                        Err(e) => {
                            refused.fetch_add(sizes[i] as u64, Ordering::Relaxed);
                            let mut f = first_refusal.lock().unwrap();
                            f.get_or_insert(e.to_string());
                        }
                    }
                    break;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let secs = t0.elapsed().as_secs_f64();
    let acc = accepted.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "events": lines.len(),
            "accepted": acc,
            "duplicates": duplicates.load(Ordering::Relaxed),
            "refused": refused.load(Ordering::Relaxed),
            "first_refusal": *first_refusal.lock().unwrap(),
            "batch": a.batch,
            "connections": a.connections,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "events_per_s": (acc as f64 / secs).round(),
        })
    );
}
