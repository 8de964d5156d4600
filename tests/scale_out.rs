//! Issue 16, many recorders: srs nodes sharing one PostgreSQL index (and
//! one S3 bucket), the real servers started by the tests (Debian's
//! `postgresql`, `s3s-fs`, Kamailio's dispatcher, SIPp), never a mock.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pg::Postgres;
use common::*;

/// A config file for one node: the shared index (password in a file), its
/// id, and whatever `extra` TOML adds.
fn node_config(dir: &Path, pg: &Postgres, db: &str, node: &str, extra: &str) -> PathBuf {
    let pw = dir.join(format!("{node}.pw"));
    std::fs::write(&pw, format!("{}\n", pg.password)).unwrap();
    let path = dir.join(format!("{node}.toml"));
    std::fs::write(
        &path,
        format!(
            "[storage]\nindex = \"{}\"\nindex_password_file = \"{}\"\n\n[node]\nid = \"{node}\"\n\n{extra}",
            pg.url(db),
            pw.display()
        ),
    )
    .unwrap();
    path
}

/// `srs list --index postgres://... --json` from "another host": no drop
/// of its own, the password from the environment.
fn list_shared(pg: &Postgres, db: &str) -> Vec<serde_json::Value> {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(["list", "--json", "--limit", "1000", "--index", &pg.url(db)])
        .arg("--recordings")
        .arg(empty.path())
        .env("SRS_INDEX_PASSWORD", &pg.password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "srs list --index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_shared(pg: &Postgres, db: &str, n: usize, timeout: Duration, logs: &[&Server]) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let l = list_shared(pg, db);
        if l.len() >= n {
            return l;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|s| s.log()).collect();
            panic!(
                "expected {n} recordings in the shared index, have {}:\n{}",
                l.len(),
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The recordings an API lists (`GET /api/v1/recordings`), by Call-ID.
fn api_call_ids(srs: &Server) -> Vec<String> {
    let body = http_get(srs.http, "/api/v1/recordings?limit=1000").expect("GET recordings");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut ids: Vec<String> = v["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["call_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Two recorders share one PostgreSQL index: each one's API and `srs list
/// --index postgres://...` from a third place see every recording, each
/// with the node that made it; PostgreSQL stopped in the middle of the
/// calls and started again loses nothing (the recordings published
/// meanwhile land in the drop and are indexed once it is back).
#[test]
fn two_nodes_share_one_postgres_index_and_survive_its_restart() {
    let Some(pg) = Postgres::start("two_nodes_share_one_postgres_index_and_survive_its_restart")
    else {
        return;
    };
    pg.psql("postgres", "CREATE DATABASE srs");
    let dir = tempfile::tempdir().unwrap();
    let a_cfg = node_config(dir.path(), &pg, "srs", "node-a", "");
    let b_cfg = node_config(dir.path(), &pg, "srs", "node-b", "");
    let a = Server::start_with(&["--config", a_cfg.to_str().unwrap()]);
    let b = Server::start_with(&["--config", b_cfg.to_str().unwrap()]);

    let mut calls = Vec::new();
    for i in 0..3 {
        calls.push(short_call(&a, &format!("pg-a-{i}")));
        calls.push(short_call(&b, &format!("pg-b-{i}")));
    }
    let all = wait_shared(&pg, "srs", 6, Duration::from_secs(30), &[&a, &b]);
    for r in &all {
        let node = r["node"].as_str().unwrap();
        let call = r["call_id"].as_str().unwrap();
        assert!(
            call.starts_with(if node == "node-a" { "pg-a-" } else { "pg-b-" }),
            "{call} recorded by {node}"
        );
    }

    // PostgreSQL goes away in the middle of calls.
    pg.stop();
    for i in 3..6 {
        calls.push(short_call(&a, &format!("pg-a-{i}")));
        calls.push(short_call(&b, &format!("pg-b-{i}")));
    }
    for c in &calls {
        let srs = if c.starts_with("pg-a-") { &a } else { &b };
        wait_in_drop(srs, c, Duration::from_secs(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again();
    let all = wait_shared(&pg, "srs", 12, Duration::from_secs(60), &[&a, &b]);
    let mut listed: Vec<String> = all
        .iter()
        .map(|r| r["call_id"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut want: Vec<String> = calls.iter().map(|c| c.replace("@127.0.0.1", "")).collect();
    want.sort();
    let listed_short: Vec<String> = listed.iter().map(|c| c.replace("@127.0.0.1", "")).collect();
    assert_eq!(listed_short, want, "every call indexed once");
    // Either node's API sees every recording.
    for srs in [&a, &b] {
        assert_eq!(api_call_ids(srs), listed);
    }
    assert!(
        a.log().contains("index unusable") && a.log().contains("usable again"),
        "the outage was seen and ended:\n{}",
        a.log()
    );
}
