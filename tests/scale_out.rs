//! Issue 16, many recorders: srs nodes sharing one PostgreSQL index (and
//! one S3 bucket), the real servers started by the tests (Debian's
//! `postgresql`, `s3s-fs`, Kamailio's dispatcher, SIPp), never a mock.

mod common;

use std::os::unix::process::CommandExt;
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

/// `srs ARGS --index <db> --recordings <an empty directory>`: the CLI as
/// on another host than the recorders (no drop of its own), the password
/// from the environment.
fn srs_elsewhere(pg: &Postgres, db: &str, args: &[&str]) -> std::process::Output {
    let empty = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(args)
        .args(["--index", &pg.url(db)])
        .arg("--recordings")
        .arg(empty.path())
        .env("SRS_INDEX_PASSWORD", &pg.password)
        .output()
        .unwrap()
}

/// `srs list --index postgres://... --json` from "another host": no drop
/// of its own, the password from the environment.
fn list_shared(pg: &Postgres, db: &str) -> Vec<serde_json::Value> {
    let out = srs_elsewhere(pg, db, &["list", "--json", "--limit", "1000"]);
    assert!(
        out.status.success(),
        "srs list --index: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait_shared(
    pg: &Postgres,
    db: &str,
    n: usize,
    timeout: Duration,
    logs: &[&Server],
) -> Vec<serde_json::Value> {
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

fn object_toml(s3: &common::s3::S3, keep_local: &str) -> String {
    format!(
        "[storage.object]\nurl = \"s3://{}/srs\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nkeep_local = {keep_local}\n",
        s3.bucket,
        s3.endpoint(),
        s3.access_key,
        s3.secret_key
    )
}

/// The shared index, the bucket, a directory for the configs and the
/// configs of nodes A and B.
type TwoNodes = (
    Postgres,
    common::s3::S3,
    tempfile::TempDir,
    PathBuf,
    PathBuf,
);

/// PostgreSQL with a database `srs`, an S3 bucket, and the configs of two
/// nodes sharing both (keep_local = false); None when a peer is missing
/// (skipped loudly, an error under SRS_REQUIRE_PEERS=1).
fn two_nodes_setup(test: &str) -> Option<TwoNodes> {
    let pg = Postgres::start(test)?;
    let s3 = common::s3::S3::start(test)?;
    pg.psql("postgres", "CREATE DATABASE srs");
    let dir = tempfile::tempdir().unwrap();
    let extra = object_toml(&s3, "false");
    let a_cfg = node_config(dir.path(), &pg, "srs", "node-a", &extra);
    let b_cfg = node_config(dir.path(), &pg, "srs", "node-b", &extra);
    Some((pg, s3, dir, a_cfg, b_cfg))
}

/// `srs uploads --json` of a node's drop: the number waiting.
fn upload_backlog(srs: &Server) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&srs.cli(&["uploads", "--json"])).unwrap();
    v["backlog"].as_u64().unwrap()
}

fn wait_uploads_drained(srs: &Server, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while upload_backlog(srs) > 0 {
        assert!(
            Instant::now() < deadline,
            "uploads did not drain:\n{}",
            srs.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The recording's files as one node's API serves them.
fn download(srs: &Server, id: &str, name: &str, range: Option<&str>) -> common::http::Resp {
    let extra = range.map_or(String::new(), |r| format!("Range: {r}\r\n"));
    common::http::call(
        srs.http,
        "GET",
        &format!("/api/v1/recordings/{id}/files/{name}"),
        None,
        &extra,
        "",
    )
}

/// Two recorders, one PostgreSQL index, one S3 bucket (s3s-fs checks every
/// signature), `keep_local = false`: each recording's files are uploaded
/// under <prefix>/<path>/<file>, verified and recorded, the local copy goes,
/// and either node serves the audio from the bucket (whole and by range).
/// The bucket unreachable for a while during calls: the recordings wait in
/// the queue (srs uploads, /metrics), nothing is lost, the queue drains
/// once it is back. A deletion through the other node removes the objects.
#[test]
fn recordings_go_to_the_object_store_and_either_node_serves_them() {
    let test = "recordings_go_to_the_object_store_and_either_node_serves_them";
    let Some((pg, s3, _dir, a_cfg, b_cfg)) = two_nodes_setup(test) else {
        return;
    };
    let a = Server::start_with(&["--config", a_cfg.to_str().unwrap()]);
    let b = Server::start_with(&["--config", b_cfg.to_str().unwrap()]);

    let mut calls: Vec<String> = (0..3)
        .map(|i| short_call(&a, &format!("s3-a-{i}")))
        .collect();
    wait_shared(&pg, "srs", 3, Duration::from_secs(30), &[&a, &b]);
    wait_uploads_drained(&a, Duration::from_secs(30));

    // The bucket unreachable during calls.
    s3.stop();
    for i in 3..6 {
        calls.push(short_call(&a, &format!("s3-a-{i}")));
    }
    wait_shared(&pg, "srs", 6, Duration::from_secs(30), &[&a, &b]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        upload_backlog(&a) > 0,
        "uploads wait while the store is down"
    );
    let metrics = http_get(a.http, "/metrics").unwrap();
    let gauge: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("srs_upload_backlog "))
        .expect("srs_upload_backlog exported")
        .trim()
        .parse()
        .unwrap();
    assert!(gauge > 0.0, "{metrics}");
    s3.start_again();
    wait_uploads_drained(&a, Duration::from_secs(60));
    assert!(a.log().contains("work again"), "{}", a.log());

    let all = list_shared(&pg, "srs");
    assert_eq!(all.len(), 6);
    for r in &all {
        let id = r["recording_id"].as_str().unwrap();
        let path = r["path"].as_str().unwrap();
        // keep_local = false: no local copy left.
        assert!(!a.recordings.join(path).exists(), "{path} still local");
        for f in r["files"].as_array().unwrap() {
            let name = f["name"].as_str().unwrap();
            let key = format!("srs/{path}/{name}");
            let stored = std::fs::read(s3.object_path(&key))
                .unwrap_or_else(|e| panic!("{key} not in the bucket: {e}"));
            assert_eq!(stored.len() as u64, f["bytes"].as_u64().unwrap(), "{key}");
            // Either node serves it from the bucket.
            for srs in [&a, &b] {
                let got = download(srs, id, name, None);
                assert_eq!(got.status, 200, "{}", got.text());
                assert_eq!(got.body, stored, "{key} from {}", srs.http);
            }
            let part = download(&b, id, name, Some("bytes=4-11"));
            assert_eq!(part.status, 206);
            assert_eq!(part.body, stored[4..12]);
            assert_eq!(
                part.header("content-range"),
                Some(format!("bytes 4-11/{}", stored.len()))
            );
        }
        // metadata.json went too.
        assert!(s3
            .object_path(&format!("srs/{path}/metadata.json"))
            .is_file());
    }

    // The CLI on a third host (no drop of its own) exports a recording
    // from the object store: with the store's settings from --config; a
    // clear error without them.
    let r = &all[1];
    let id = r["recording_id"].as_str().unwrap();
    let path = r["path"].as_str().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let export = |config: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_srs"));
        c.args(["export", id, "--index", &pg.url("srs"), "--out"])
            .arg(elsewhere.path().join("out"))
            .arg("--recordings")
            .arg(elsewhere.path().join("drop"))
            .env("SRS_INDEX_PASSWORD", &pg.password);
        if let Some(cfg) = config {
            c.arg("--config").arg(cfg);
        }
        c.output().unwrap()
    };
    let refused = export(None);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("kept only in the object store") && why.contains("--config"),
        "{why}"
    );
    let done = export(Some(&a_cfg));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    for f in r["files"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let stored = std::fs::read(s3.object_path(&format!("srs/{path}/{name}"))).unwrap();
        let got = std::fs::read(elsewhere.path().join("out").join(name)).unwrap();
        assert_eq!(got, stored, "{name} exported from the object store");
    }
    assert!(
        !std::fs::read_dir(elsewhere.path().join("out"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".part")),
        "no partial download left"
    );

    // `srs delete` from the CLI: without the store's settings a recording
    // with copies there is refused (an erasure must not leave them); with
    // --config its objects go with it.
    let cli_delete = |config: Option<&Path>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_srs"));
        c.args(["delete", id, "--index", &pg.url("srs"), "--recordings"])
            .arg(elsewhere.path().join("drop"))
            .env("SRS_INDEX_PASSWORD", &pg.password);
        if let Some(cfg) = config {
            c.arg("--config").arg(cfg);
        }
        c.output().unwrap()
    };
    let meta_key = format!("srs/{path}/metadata.json");
    let refused = cli_delete(None);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("copies in the object store"), "{why}");
    assert!(s3.object_path(&meta_key).is_file(), "nothing deleted");
    assert_eq!(list_shared(&pg, "srs").len(), 6);
    let done = cli_delete(Some(&a_cfg));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(!s3.object_path(&meta_key).exists(), "objects deleted");
    let all: Vec<serde_json::Value> = list_shared(&pg, "srs");
    assert_eq!(all.len(), 5);

    // Deleted through the other node: the objects go with it.
    let victim = &all[0];
    let (id, path) = (
        victim["recording_id"].as_str().unwrap(),
        victim["path"].as_str().unwrap(),
    );
    // Tokens live in the shared index: one made from a third place is
    // honoured by node B within a second.
    let out = srs_elsewhere(&pg, "srs", &["token", "add", "ops", "--role", "admin"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        download(&b, id, "x", None).status,
        401,
        "the token is required now"
    );
    let del = common::http::call(
        b.http,
        "DELETE",
        &format!("/api/v1/recordings/{id}"),
        Some(&token),
        "",
        "",
    );
    assert!(
        del.status == 200 || del.status == 204,
        "{} {}",
        del.status,
        del.text()
    );
    assert!(!s3
        .object_path(&format!("srs/{path}/metadata.json"))
        .exists());
    assert_eq!(list_shared(&pg, "srs").len(), 4);
    let _ = calls;
}

/// Kamailio (Debian's) with examples/kamailio/srs-dispatcher.cfg, in front
/// of `nodes` (SIP over UDP), listening on a free port; killed on drop.
struct Kamailio {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Kamailio {
    fn start(test: &str, nodes: &[std::net::SocketAddr]) -> Option<Kamailio> {
        if !peers_available(test, &["kamailio"]) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let list = dir.path().join("dispatcher.list");
        let mut text = String::new();
        for n in nodes {
            text.push_str(&format!("1 sip:{n}\n"));
        }
        std::fs::write(&list, text).unwrap();
        let cfg =
            std::fs::read_to_string(manifest_dir().join("examples/kamailio/srs-dispatcher.cfg"))
                .unwrap()
                .replace(
                    "#!substdef \"!LISTEN_PORT!5060!g\"",
                    &format!("#!substdef \"!LISTEN_PORT!{port}!g\""),
                )
                // SRS_TEST_KAMAILIO_DEBUG=debug=3 logs every message it routes.
                .replace(
                    "debug=1",
                    &std::env::var("SRS_TEST_KAMAILIO_DEBUG").unwrap_or("debug=1".into()),
                )
                .replace(
                    "#!substdef \"!DISPATCHER_LIST!/etc/kamailio/srs-dispatcher.list!g\"",
                    &format!("#!substdef \"!DISPATCHER_LIST!{}!g\"", list.display()),
                );
        let cfg_path = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg_path, cfg).unwrap();
        let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
        // A process group of its own: Kamailio forks its workers, and the
        // whole group is killed on drop (killing the main process alone
        // leaves the workers running).
        let child = Command::new("kamailio")
            .process_group(0)
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-Y"])
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kamailio runs");
        let k = Kamailio {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(k.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "kamailio did not listen:\n{}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(k)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kamailio.log")).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a negative pid signals the group made at spawn.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The whole topology of docs/scale-out.md: SIPp (the recording client)
/// -> Kamailio's dispatcher (OPTIONS probing, round robin, failover) -> two
/// srs nodes -> one PostgreSQL index and one S3 bucket (keep_local =
/// false). SIPp sends a few hundred short SIPREC calls; node A gets SIGTERM
/// in the middle: it refuses new sessions (and the dispatcher's probes)
/// with 503, ends and publishes its live calls, and the dispatcher sends
/// the rest to B. Every call SIPp made is recorded exactly once, both nodes
/// recorded, every recording is found through either node's API, and its
/// audio downloads from either node (A restarted drains what it left in
/// its upload queue).
#[test]
fn two_nodes_behind_kamailio_survive_a_sigterm() {
    let test = "two_nodes_behind_kamailio_survive_a_sigterm";
    if !peers_available(test, &["sipp"]) {
        return;
    }
    let Some((pg, s3, dir, a_cfg, b_cfg)) = two_nodes_setup(test) else {
        return;
    };
    // 600 RTP ports a node (the default 200 of a test server is 50 calls of
    // two streams): after A's SIGTERM, B alone takes about 60 calls a second
    // of about a second each.
    let ports = |n: u16| {
        let lo = port_block(n);
        format!("{lo}-{}", lo + n - 1)
    };
    let (a_ports, b_ports) = (ports(600), ports(600));
    let mut a = Server::start_with(&["--config", a_cfg.to_str().unwrap(), "--rtp-ports", &a_ports]);
    let b = Server::start_with(&["--config", b_cfg.to_str().unwrap(), "--rtp-ports", &b_ports]);
    let Some(k) = Kamailio::start(test, &[a.sip, b.sip]) else {
        return;
    };
    // Both probed and active before the first call.
    std::thread::sleep(Duration::from_millis(2500));

    const CALLS: usize = 300;
    let sipp_port = free_port();
    let media = port_block(4 * 200);
    let args: Vec<String> = [
        "-sf",
        "siprec_uac_load.xml",
        "-r",
        "60",
        "-l",
        "200",
        "-m",
        &CALLS.to_string(),
        "-d",
        "800",
        "-i",
        "127.0.0.1",
        "-p",
        &sipp_port.to_string(),
        "-mp",
        &media.to_string(),
        "-nostdin",
        "-timeout",
        "60s",
        "-trace_stat",
        "-stf",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        dir.path().join("sipp-stat.csv").display().to_string(),
        k.addr.to_string(),
    ])
    .collect();
    let sipp = std::thread::spawn(move || run_sipp(&args, Duration::from_secs(90)));
    // Half-way through (60 calls/s): node A is told to stop.
    std::thread::sleep(Duration::from_millis(2500));
    let sigterm_at = chrono::Utc::now();
    unsafe { libc::kill(a.child.id() as i32, libc::SIGTERM) };
    let (_ok, out) = sipp.join().unwrap();
    // A's own shutdown: its live calls were ended and published.
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "node A did not stop:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.log().contains("signal received"), "{}", a.log());
    // Started again, A uploads what its queue kept.
    a.restart();

    let all = wait_shared(&pg, "srs", CALLS, Duration::from_secs(60), &[&a, &b]);
    let mut ids: Vec<&str> = all.iter().map(|r| r["call_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let n = ids.len();
    let twice: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| all.iter().filter(|o| o["call_id"] == r["call_id"]).count() > 1)
        .collect();
    ids.dedup();
    assert_eq!(
        (n, ids.len()),
        (CALLS, CALLS),
        "every SIPp call recorded exactly once; twice: {twice:#?}\nSIPp:\n{out}\nKamailio:\n{}\nA:\n{}\nB:\n{}",
        k.log(),
        a.log(),
        b.log()
    );
    for i in 1..=CALLS {
        assert!(
            ids.iter().any(|c| c.starts_with(&format!("{i}-"))),
            "SIPp call {i} not recorded"
        );
    }
    let on = |node: &str| all.iter().filter(|r| r["node"] == node).count();
    assert!(on("node-a") > 0 && on("node-b") > 0, "both nodes recorded");
    // A had calls in progress when it was told to stop: it ended and
    // published them (they end after the SIGTERM, on A).
    let at = |r: &serde_json::Value, k: &str| -> chrono::DateTime<chrono::Utc> {
        r[k].as_str().unwrap().parse().unwrap()
    };
    let live_on_a = all
        .iter()
        .filter(|r| r["node"] == "node-a")
        .filter(|r| at(r, "started_at") < sigterm_at && at(r, "ended_at") > sigterm_at)
        .count();
    assert!(live_on_a > 0, "node A had no live call at the SIGTERM");
    eprintln!(
        "{CALLS} calls: node A {} (of which {live_on_a} live at its SIGTERM), node B {}; SIPp ok: {_ok}",
        on("node-a"),
        on("node-b")
    );
    // From two seconds after the SIGTERM, the dispatcher chose only B.
    let later = sigterm_at + chrono::Duration::seconds(2);
    for r in &all {
        if at(r, "started_at") > later {
            assert_eq!(r["node"], "node-b", "{r}");
        }
    }
    wait_uploads_drained(&a, Duration::from_secs(60));
    wait_uploads_drained(&b, Duration::from_secs(60));
    // Found through either node's API, audio from either node.
    let ids_a = api_call_ids(&a);
    assert_eq!(ids_a.len(), CALLS);
    assert_eq!(api_call_ids(&b), ids_a);
    for (i, r) in all.iter().enumerate() {
        let path = r["path"].as_str().unwrap();
        let (home, other) = if r["node"] == "node-a" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert!(
            !home.recordings.join(path).exists(),
            "{path}: local copy left"
        );
        if i % 10 != 0 {
            continue;
        }
        let id = r["recording_id"].as_str().unwrap();
        for f in r["files"].as_array().unwrap() {
            let name = f["name"].as_str().unwrap();
            let stored = std::fs::read(s3.object_path(&format!("srs/{path}/{name}"))).unwrap();
            for srs in [home, other] {
                let got = download(srs, id, name, None);
                assert_eq!(got.status, 200, "{}", got.text());
                assert_eq!(got.body, stored);
            }
        }
    }
}
