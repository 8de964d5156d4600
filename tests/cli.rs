//! The command line as scripts use it: config precedence, errors that say
//! what is wrong, and the list/show contract on an empty drop.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn srs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn unknown_config_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    std::fs::write(&cfg, "[storage]\nrecording = \"/tmp/x\"\n").unwrap();
    let out = srs(&["serve", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("recording"), "{err}");
    assert!(err.contains("srs.toml"), "{err}");
}

#[test]
fn config_file_sets_addresses_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let (sip, http_file, http_flag) = (free_port(), free_port(), free_port());
    let rec = dir.path().join("drop");
    let cfg = dir.path().join("srs.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nlisten = \"127.0.0.1:{sip}\"\n[http]\nlisten = \"127.0.0.1:{http_file}\"\n[storage]\nrecordings = \"{}\"\n[media]\nrtp_ports = \"{}-{}\"\n",
            rec.display(),
            port_block(10),
            port_block(10) + 9,
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .args(["--http", &format!("127.0.0.1:{http_flag}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let flag_addr = format!("127.0.0.1:{http_flag}").parse().unwrap();
    let body = loop {
        if let Some(b) = http_get(flag_addr, "/healthz") {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "server did not come up on the flag's HTTP port"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("\"status\":\"ok\""), "{body}");
    assert!(
        http_get(
            format!("127.0.0.1:{http_file}").parse().unwrap(),
            "/healthz"
        )
        .is_none(),
        "the flag overrides the file"
    );
    // SIP from the file: OPTIONS over UDP gets 200.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let opts = format!("OPTIONS sip:srs@127.0.0.1:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-cli\r\nFrom: <sip:probe@{me}>;tag=1\r\nTo: <sip:srs@127.0.0.1>\r\nCall-ID: cli-opt\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    sock.send_to(opts.as_bytes(), ("127.0.0.1", sip)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    assert!(resp.contains("Supported: siprec"), "{resp}");
    assert!(
        rec.join("index.sqlite").exists(),
        "drop and index from the file"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn list_and_show_on_an_empty_drop() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = srs(&["list", "--recordings", d, "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, serde_json::json!([]));
    let out = srs(&["list", "--recordings", d]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no recordings"));
    let out = srs(&["show", "nosuch", "--recordings", d]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no recording with id or Call-ID \"nosuch\"")
    );
}

/// `srs list --json | head -c 100` (and the table, and `show`): a reader
/// that closes the pipe early ends the CLI quietly, never a panic and
/// its backtrace on stderr.
#[test]
fn a_closed_pipe_ends_the_cli_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    // 300 recordings of ~4 KB: far more than a pipe buffer (64 KiB).
    index_bulky(&dir.path().join("index.sqlite"), 300);
    let d = dir.path().to_str().unwrap();
    for args in [
        &["list", "--json", "--limit", "300"][..],
        &["list", "--limit", "300"][..],
        &["show", "bulk-000001", "--json"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_srs"))
            .args(args)
            .args(["--recordings", d])
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Like `head -c 100`: read a little, then close the pipe.
        let mut out = child.stdout.take().unwrap();
        let mut first = [0u8; 100];
        out.read_exact(&mut first[..10]).unwrap();
        drop(out);
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(!err.contains("panicked"), "srs {args:?}: {err}");
        assert!(err.trim().is_empty(), "srs {args:?} is quiet: {err}");
        assert!(status.success(), "srs {args:?}: {status:?}");
    }
}
