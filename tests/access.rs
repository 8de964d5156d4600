//! Access control and the audit trail through `srs serve`, on recordings
//! made over SIP in the test (Genesys record legs with a tone per call):
//! each role and scope against each endpoint (200/401/403/404), guessed
//! ids and file names out of scope, revocation and new tokens on a
//! running server, the audit trail of a scripted session and its hash
//! chain broken by an edit, a download refused when its audit entry
//! cannot be written, HTTPS with plain HTTP refused, and the refusal to
//! expose the API without tokens.

mod common;

use common::http::{call, parse_response, request_text, Resp};
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Three extensions in two Paris sites and one Lyon site.
const DIRECTORY: &str = r#"
[[directory]]
dn = "7001"
kind = "extension"
geo_location = "paris"
site = "par-1"

[[directory]]
dn = "7002"
kind = "extension"
geo_location = "paris"
site = "par-2"

[[directory]]
dn = "8101"
kind = "extension"
geo_location = "lyon"
site = "lyo-1"
"#;

/// Runs `srs <args>` (no --recordings added).
fn run_srs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(args)
        .output()
        .unwrap()
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Resp {
    call(addr, "GET", path, token, "", "")
}

use common::leg::Leg;

/// A Genesys record leg for Record DN `dn` (CallUUID `UUID-{tag}`), up.
fn start_call(srs: &Server, dn: &str, tag: &str) -> Leg {
    let params = format!("calluuid=UUID-{tag};dn={dn};recorddn={dn}");
    Leg::start(srs, &params, &format!("sip:{dn}@pbx"), tag)
}

/// A recorded call: Record DN `dn`, `tone` Hz for 0.6 s. Its index entry.
fn record(srs: &Server, dn: &str, tone: f64, tag: &str) -> serde_json::Value {
    let leg = start_call(srs, dn, tag);
    leg.talk(tone, 0.6, 0x5151_0000 + tone as u32);
    let call_id = leg.bye();
    wait_indexed(srs, &call_id, Duration::from_secs(15))
}

/// The dominant tone of a WAV file's bytes.
fn tone_of(wav: &[u8]) -> f64 {
    let r = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
    let rate = r.spec().sample_rate;
    let x: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    let freqs = [1000.0, 700.0, 400.0];
    let windows = tone_windows(&x, rate, &freqs);
    let best = freqs
        .iter()
        .max_by_key(|f| windows.iter().filter(|w| **w == Some(**f)).count())
        .copied()
        .unwrap();
    let n = windows.iter().filter(|w| **w == Some(best)).count();
    assert!(n >= 3, "a tone in the file: {windows:?}");
    best
}

/// A server with the directory, on a drop where tokens may already exist.
fn server_in(dir: &Path) -> Server {
    let cfg = dir.join("srs.toml");
    std::fs::write(&cfg, DIRECTORY).unwrap();
    let rec = dir.join("recordings");
    Server::start_with(&[
        "--config",
        cfg.to_str().unwrap(),
        "--recordings",
        rec.to_str().unwrap(),
    ])
}

struct Rec {
    id: String,
    call_id: String,
    file: String,
    path: String,
}

fn rec_of(v: &serde_json::Value) -> Rec {
    Rec {
        id: v["recording_id"].as_str().unwrap().into(),
        call_id: v["call_id"].as_str().unwrap().into(),
        file: v["files"][0]["name"].as_str().unwrap().into(),
        path: v["path"].as_str().unwrap().into(),
    }
}

fn total(r: &Resp) -> u64 {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["total"].as_u64().unwrap()
}

fn ids_of(r: &Resp) -> Vec<String> {
    r.json()["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["recording_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_role_and_scope_against_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let t = |name: &str, role: &str, scopes: &[&str]| token_add(&drop, name, role, scopes);
    let admin = t("admin", "admin", &[]);
    let viewer = t("viewer", "viewer", &[]);
    let listener = t("listener", "listener", &[]);
    let integration = t("crm-bridge", "integration", &[]);
    let lyon = t("qm-lyon", "listener", &["geo=lyon"]);
    let team70 = t("team-70", "viewer", &["dn=70*"]);
    let par1 = t("qm-par1", "listener", &["site=par-1"]);
    let par2_admin = t("admin-par2", "admin", &["site=PAR-2"]);
    let two_keys = t("paris-71", "listener", &["geo=paris", "dn=7002"]);
    let srs = server_in(dir.path());
    let h = srs.http;

    let a = rec_of(&record(&srs, "7001", 1000.0, "acl-a"));
    let b = rec_of(&record(&srs, "7002", 700.0, "acl-b"));
    let c = rec_of(&record(&srs, "8101", 400.0, "acl-c"));
    let file = |r: &Rec| format!("/api/v1/recordings/{}/files/{}", r.id, r.file);
    let view = |r: &Rec| format!("/api/v1/recordings/{}", r.id);
    let on_disk = |r: &Rec| std::fs::read(srs.recordings.join(&r.path).join(&r.file)).unwrap();

    // /healthz: open, no recording data.
    let hz = get(h, "/healthz", None);
    assert_eq!(hz.status, 200);
    let body = String::from_utf8_lossy(&hz.body).to_string();
    for r in [&a, &b, &c] {
        assert!(
            !body.contains(&r.id) && !body.contains(&r.call_id),
            "{body}"
        );
    }
    let keys: Vec<String> = hz.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["active_sessions", "recordings_published", "status"]);

    let every = [
        "/api/v1/recordings".to_string(),
        view(&a),
        format!("/api/v1/recordings/{}", a.call_id),
        file(&a),
        "/api/v1/sessions".into(),
        "/api/v1/audit".into(),
        "/api/v1/tokens".into(),
        "/api/v1/nosuch".into(),
    ];
    // No token, a wrong one, a malformed header: 401 with the challenge.
    for path in &every {
        let r = get(h, path, None);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some(r#"Bearer realm="srs""#)
        );
        assert!(r.json()["error"].as_str().unwrap().contains("Bearer"));
        let r = get(
            h,
            path,
            Some("srs_not-a-real-token-at-all-aaaaaaaaaaaaaaaaaaaa"),
        );
        assert_eq!(r.status, 401, "{path}");
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token"));
        let r = call(
            h,
            "GET",
            path,
            None,
            &format!("Authorization: Basic {admin}\r\n"),
            "",
        );
        assert_eq!(r.status, 401, "{path}");
    }
    // The integration role reads nothing: 403 on every read endpoint.
    for path in every.iter().take(7) {
        let r = get(h, path, Some(&integration));
        assert_eq!(r.status, 403, "integration {path}");
        assert!(r.json()["error"].as_str().unwrap().contains("integration"));
    }

    // Unscoped roles.
    for tok in [&viewer, &listener, &admin] {
        let r = get(h, "/api/v1/recordings", Some(tok));
        assert_eq!(total(&r), 3);
        for x in [&a, &b, &c] {
            let r = get(h, &view(x), Some(tok));
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["recording_id"], x.id.as_str());
        }
        assert_eq!(get(h, "/api/v1/sessions", Some(tok)).status, 200);
    }
    assert_eq!(
        get(h, &file(&a), Some(&viewer)).status,
        403,
        "a viewer never downloads"
    );
    for tok in [&listener, &admin] {
        for (x, tone) in [(&a, 1000.0), (&b, 700.0), (&c, 400.0)] {
            let r = get(h, &file(x), Some(tok));
            assert_eq!(r.status, 200);
            assert_eq!(r.body, on_disk(x));
            assert_eq!(tone_of(&r.body), tone);
        }
        let r = call(h, "GET", &file(&c), Some(tok), "Range: bytes=0-43\r\n", "");
        assert_eq!((r.status, &r.body[..4]), (206, &b"RIFF"[..]));
    }
    for tok in [&viewer, &listener] {
        assert_eq!(get(h, "/api/v1/audit", Some(tok)).status, 403);
        assert_eq!(get(h, "/api/v1/tokens", Some(tok)).status, 403);
        let r = call(
            h,
            "POST",
            "/api/v1/tokens",
            Some(tok),
            "",
            r#"{"name":"x","role":"admin"}"#,
        );
        assert_eq!(r.status, 403);
        assert_eq!(
            call(h, "DELETE", "/api/v1/tokens/admin", Some(tok), "", "").status,
            403
        );
    }
    assert_eq!(get(h, "/api/v1/audit", Some(&admin)).status, 200);
    let r = get(h, "/api/v1/tokens", Some(&admin));
    assert_eq!(r.status, 200);
    let listed = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        listed.contains("qm-lyon") && listed.contains("geo=lyon"),
        "{listed}"
    );
    for secret in [&admin, &viewer, &lyon] {
        assert!(!listed.contains(&secret[4..]), "no secret listed");
    }

    // Scopes: searches count and page only what the token may see.
    let scoped: [(&str, &String, Vec<&Rec>); 5] = [
        ("geo=lyon", &lyon, vec![&c]),
        ("dn=70*", &team70, vec![&b, &a]),
        ("site=par-1", &par1, vec![&a]),
        ("site=PAR-2 (admin)", &par2_admin, vec![&b]),
        ("geo=paris dn=7002", &two_keys, vec![&b]),
    ];
    for (what, tok, sees) in &scoped {
        let r = get(h, "/api/v1/recordings", Some(tok));
        let want: Vec<String> = sees.iter().map(|x| x.id.clone()).collect();
        assert_eq!(
            (total(&r), ids_of(&r)),
            (want.len() as u64, want.clone()),
            "{what}"
        );
        // A filter for what is outside finds nothing, and the total says so.
        let r = get(h, "/api/v1/recordings?dn=8101&limit=1", Some(tok));
        let n = u64::from(sees.iter().any(|x| x.id == c.id));
        assert_eq!(total(&r), n, "{what}");
        for x in [&a, &b, &c] {
            let inside = sees.iter().any(|s| s.id == x.id);
            for path in [view(x), format!("/api/v1/recordings/{}", x.call_id)] {
                let r = get(h, &path, Some(tok));
                assert_eq!(r.status, if inside { 200 } else { 404 }, "{what} {path}");
                if !inside {
                    assert_eq!(
                        r.json()["error"],
                        "no such recording",
                        "{what}: same as absent"
                    );
                }
            }
        }
    }
    // A scoped listener cannot download what is outside its scope, by
    // guessing the id or the Call-ID and the file name: 404, the same as
    // for a recording that does not exist.
    for (tok, mine, others) in [(&lyon, &c, [&a, &b]), (&par1, &a, [&b, &c])] {
        let r = get(h, &file(mine), Some(tok));
        assert_eq!((r.status, r.body == on_disk(mine)), (200, true));
        for x in others {
            for path in [
                file(x),
                format!("/api/v1/recordings/{}/files/{}", x.call_id, x.file),
                format!("/api/v1/recordings/{}/files/{}", x.id, mine.file),
            ] {
                let r = call(h, "GET", &path, Some(tok), "Range: bytes=0-43\r\n", "");
                assert_eq!(r.status, 404, "{path}");
                assert!(!r.body.starts_with(b"RIFF"));
                assert_eq!(r.json()["error"], "no such recording");
            }
        }
        let r = get(h, "/api/v1/recordings/no-such-id/files/x.wav", Some(tok));
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (404, Some("no such recording"))
        );
    }
    // The scoped viewer: 403 on files whatever the recording (role first).
    assert_eq!(get(h, &file(&a), Some(&team70)).status, 403);
    assert_eq!(get(h, &file(&c), Some(&team70)).status, 403);
    // A scoped admin cannot read the audit trail or manage tokens (they
    // reach beyond its scope), but reads its recordings.
    assert_eq!(get(h, "/api/v1/audit", Some(&par2_admin)).status, 403);
    assert_eq!(get(h, "/api/v1/tokens", Some(&par2_admin)).status, 403);
    let r = call(
        h,
        "POST",
        "/api/v1/tokens",
        Some(&par2_admin),
        "",
        r#"{"name":"esc","role":"admin"}"#,
    );
    assert_eq!(r.status, 403, "no escape from a scope by making a token");
    assert_eq!(get(h, &file(&b), Some(&par2_admin)).status, 200);

    // Live sessions: a call up on 7001 is seen by its scopes only.
    let leg = start_call(&srs, "7001", "acl-live");
    let live = |tok: &str| -> Vec<String> {
        let r = get(h, "/api/v1/sessions", Some(tok));
        assert_eq!(r.status, 200);
        r.json()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["call_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(live(&admin), std::slice::from_ref(&leg.call_id));
    assert_eq!(live(&viewer), std::slice::from_ref(&leg.call_id));
    assert_eq!(live(&par1), std::slice::from_ref(&leg.call_id));
    assert_eq!(live(&team70), std::slice::from_ref(&leg.call_id));
    assert!(live(&lyon).is_empty());
    assert!(live(&par2_admin).is_empty());
    assert_eq!(get(h, "/api/v1/sessions", Some(&integration)).status, 403);
    leg.talk(1000.0, 0.2, 0x5151_0000 + 1000);
    leg.bye();

    // Tokens through the API (unscoped admin): made, used, revoked.
    let r = call(
        h,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        "",
        r#"{"name":"made-by-api","role":"viewer","scopes":["geo=lyon"]}"#,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let made = r.json()["secret"].as_str().unwrap().to_string();
    let r = call(
        h,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        "",
        r#"{"name":"made-by-api","role":"viewer"}"#,
    );
    assert_eq!(r.status, 409);
    let r = call(
        h,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        "",
        r#"{"name":"x","role":"root"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("root"));
    let r = call(
        h,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        "",
        r#"{"name":"x","role":"viewer","scopes":["team=a"]}"#,
    );
    assert_eq!(r.status, 400);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(h, "/api/v1/recordings", Some(&made)).status != 200 {
        assert!(
            Instant::now() < deadline,
            "the new token works within seconds"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(total(&get(h, "/api/v1/recordings", Some(&made))), 1);
    assert_eq!(
        call(
            h,
            "DELETE",
            "/api/v1/tokens/made-by-api",
            Some(&admin),
            "",
            ""
        )
        .status,
        200
    );
    assert_eq!(
        call(
            h,
            "DELETE",
            "/api/v1/tokens/made-by-api",
            Some(&admin),
            "",
            ""
        )
        .status,
        404
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(h, "/api/v1/recordings", Some(&made)).status != 401 {
        assert!(
            Instant::now() < deadline,
            "the revoked token is refused within seconds"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn revocation_and_new_tokens_take_effect_on_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let first = token_add(&drop, "first", "viewer", &[]);
    let mut srs = server_in(dir.path());
    let pid = srs.child.id();
    let h = srs.http;
    let a = rec_of(&record(&srs, "7001", 1000.0, "rev-a"));
    assert_eq!(total(&get(h, "/api/v1/recordings", Some(&first))), 1);

    // Added while running: accepted within a few seconds, no restart.
    let t0 = Instant::now();
    let second = token_add(&drop, "second", "listener", &[]);
    while get(h, &format!("/api/v1/recordings/{}", a.id), Some(&second)).status != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the new token is accepted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Revoked while running (another process): refused within seconds,
    // while the other token still works.
    let out = srs.cli(&["token", "revoke", "first"]);
    assert!(out.contains("revoked first"), "{out}");
    let t0 = Instant::now();
    loop {
        let r = get(h, "/api/v1/recordings", Some(&first));
        if r.status == 401 {
            assert!(r
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_token"));
            break;
        }
        assert_eq!(r.status, 200);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "revoked within seconds"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(get(h, "/api/v1/recordings", Some(&second)).status, 200);
    // Revoking every token locks the API: it never opens again.
    srs.cli(&["token", "revoke", "second"]);
    let t0 = Instant::now();
    while get(h, "/api/v1/recordings", Some(&second)).status != 401 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(h, "/api/v1/recordings", None).status, 401);
    // The name can be given again; the revoked secret stays dead.
    let again = token_add(&drop, "first", "viewer", &[]);
    let t0 = Instant::now();
    while get(h, "/api/v1/recordings", Some(&again)).status != 200 {
        assert!(t0.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(h, "/api/v1/recordings", Some(&first)).status, 401);
    // The same process all along.
    assert_eq!(srs.child.id(), pid);
    assert!(srs.child.try_wait().unwrap().is_none());
    let listed: serde_json::Value =
        serde_json::from_str(&srs.cli(&["token", "list", "--json"])).unwrap();
    // (name, active), in the order they were made.
    let states: Vec<(String, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["revoked_at"].is_null(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("first".to_string(), false),
            ("second".to_string(), false),
            ("first".to_string(), true)
        ]
    );
}

/// `srs audit --json --recordings <drop> <args>`: the entries.
fn audit_json(srs: &Server, args: &[&str]) -> Vec<serde_json::Value> {
    let mut a = vec!["audit", "--json"];
    a.extend_from_slice(args);
    srs.cli(&a)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(entries: &[serde_json::Value], actor: &str) -> Vec<(String, String, Vec<String>)> {
    entries
        .iter()
        .filter(|e| e["actor"] == actor)
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
                e["recording_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn the_audit_trail_of_a_scripted_session_and_a_tampered_entry() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let alice = token_add(&drop, "alice", "listener", &[]);
    let bob = token_add(&drop, "bob", "viewer", &["geo=lyon"]);
    let admin = token_add(&drop, "auditor", "admin", &[]);
    let srs = server_in(dir.path());
    let h = srs.http;
    let a = rec_of(&record(&srs, "7001", 1000.0, "aud-a"));
    let c = rec_of(&record(&srs, "8101", 400.0, "aud-c"));

    // The script.
    let r = get(h, "/api/v1/recordings?dn=7001", Some(&alice));
    assert_eq!(ids_of(&r), std::slice::from_ref(&a.id));
    let r = get(
        h,
        "/api/v1/recordings?since=2000-01-01&limit=10",
        Some(&alice),
    );
    assert_eq!(total(&r), 2);
    assert_eq!(
        get(
            h,
            &format!("/api/v1/recordings/{}", a.call_id),
            Some(&alice)
        )
        .status,
        200
    );
    let file_a = format!("/api/v1/recordings/{}/files/{}", a.id, a.file);
    let r = call(h, "GET", &file_a, Some(&alice), "Range: bytes=0-99\r\n", "");
    assert_eq!(r.status, 206);
    assert_eq!(get(h, &file_a, Some(&alice)).status, 200);
    assert_eq!(get(h, &file_a, Some(&bob)).status, 403);
    assert_eq!(
        get(h, &format!("/api/v1/recordings/{}", a.id), Some(&bob)).status,
        404
    );
    assert_eq!(total(&get(h, "/api/v1/recordings", Some(&bob))), 1);
    let shown = srs.cli(&["show", &c.id, "--json"]);
    assert!(shown.contains(&c.id));

    let all = audit_json(&srs, &[]);
    let filters_of = |actor: &str| -> Vec<serde_json::Value> {
        all.iter()
            .filter(|e| e["actor"] == actor)
            .map(|e| e["filters"].clone())
            .collect()
    };
    let ids = |v: &[&Rec]| v.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
    let mut both = ids(&[&a, &c]);
    both.sort();
    assert_eq!(
        summary(&all, "alice"),
        [
            ("search".into(), "ok".into(), ids(&[&a])),
            ("search".into(), "ok".into(), both),
            ("view".into(), "ok".into(), ids(&[&a])),
            ("download".into(), "ok".into(), ids(&[&a])),
            ("download".into(), "ok".into(), ids(&[&a])),
        ]
    );
    assert_eq!(
        filters_of("alice"),
        [
            serde_json::json!({"dn": "7001"}),
            serde_json::json!({"since": "2000-01-01", "limit": 10}),
            serde_json::json!({"id": a.call_id}),
            serde_json::json!({"id": a.id, "file": a.file, "range": "bytes=0-99"}),
            serde_json::json!({"id": a.id, "file": a.file}),
        ]
    );
    assert_eq!(
        summary(&all, "bob"),
        [
            ("download".into(), "denied".into(), vec![]),
            ("view".into(), "not-found".into(), vec![]),
            ("search".into(), "ok".into(), ids(&[&c])),
        ]
    );
    for e in all
        .iter()
        .filter(|e| e["actor"] == "alice" || e["actor"] == "bob")
    {
        assert!(
            e["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{e}"
        );
        assert_eq!(
            e["role"],
            if e["actor"] == "alice" {
                "listener"
            } else {
                "viewer"
            }
        );
    }
    // The tools are audited as cli:<user>: the token commands, every
    // `srs list` of the harness, and the `srs show`.
    let cli: Vec<&serde_json::Value> = all
        .iter()
        .filter(|e| e["actor"].as_str().unwrap().starts_with("cli:"))
        .collect();
    assert!(cli
        .iter()
        .all(|e| e["client"] == "local" && e["role"] == "cli"));
    let adds: Vec<&str> = cli
        .iter()
        .filter(|e| e["action"] == "token-add")
        .map(|e| e["filters"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(adds, ["alice", "bob", "auditor"]);
    assert!(cli.iter().any(|e| e["action"] == "search"));
    assert!(cli
        .iter()
        .any(|e| e["action"] == "view" && e["recording_ids"] == serde_json::json!([c.id])));
    // Seq from 1 without gaps, each chained to the one before.
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1);
        if i > 0 {
            assert_eq!(e["prev_hash"], all[i - 1]["hash"]);
        }
    }
    // By recording, by actor, since: the CLI and the API agree.
    let of_a = audit_json(&srs, &["--recording", &a.id]);
    assert!(of_a.iter().all(|e| e["recording_ids"]
        .as_array()
        .unwrap()
        .contains(&a.id.as_str().into())));
    assert!(summary(&of_a, "alice").len() == 5 && summary(&of_a, "bob").is_empty());
    let r = get(
        h,
        &format!("/api/v1/audit?recording={}&actor=alice", a.id),
        Some(&admin),
    );
    assert_eq!(r.status, 200);
    let api: Vec<serde_json::Value> = r.json()["entries"].as_array().unwrap().clone();
    assert_eq!(
        api,
        audit_json(&srs, &["--recording", &a.id, "--actor", "alice"])
    );
    let r = get(h, "/api/v1/audit?limit=2", Some(&admin));
    let page = r.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_after"], 2);
    let r = get(h, "/api/v1/audit?after=2&limit=1", Some(&admin));
    assert_eq!(r.json()["entries"][0]["seq"], 3);
    assert_eq!(
        get(h, "/api/v1/audit?since=tuesday", Some(&admin)).status,
        400
    );
    assert_eq!(
        get(h, "/api/v1/audit?limit=10001", Some(&admin)).status,
        400
    );
    assert!(audit_json(&srs, &["--since", "2999-01-01"]).is_empty());
    // Reading the audit trail through the API is itself audited.
    assert!(audit_json(&srs, &["--actor", "auditor", "--action", "audit"]).len() >= 3);

    // Intact.
    let out = run_srs(&["audit", "--verify", "--recordings", drop.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("intact"), "{said}");

    // An edit of one entry (alice's whole-file download made to look like
    // someone else's): refused by the table, and once the guard is
    // dropped, the chain tells, naming the entry.
    let target = all
        .iter()
        .find(|e| {
            e["actor"] == "alice"
                && e["action"] == "download"
                && e["filters"].get("range").is_none()
        })
        .unwrap()["seq"]
        .as_i64()
        .unwrap();
    let db = rusqlite::Connection::open(drop.join("index.sqlite")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let refused = db
        .execute(
            "UPDATE audit SET actor = 'mallory' WHERE seq = ?1",
            [target],
        )
        .unwrap_err()
        .to_string();
    assert!(refused.contains("append-only"), "{refused}");
    db.execute_batch("DROP TRIGGER audit_no_update").unwrap();
    db.execute(
        "UPDATE audit SET actor = 'mallory' WHERE seq = ?1",
        [target],
    )
    .unwrap();
    std::mem::drop(db);
    // The server appends on after the edit; the break stays where it is.
    assert_eq!(get(h, "/api/v1/recordings", Some(&alice)).status, 200);
    let out = run_srs(&["audit", "--verify", "--recordings", drop.to_str().unwrap()]);
    assert!(!out.status.success(), "an edited entry must fail --verify");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains(&format!("broken at entry {target}")) && err.contains("altered"),
        "{err}"
    );
    let out = run_srs(&[
        "audit",
        "--verify",
        "--json",
        "--recordings",
        drop.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["intact"].as_bool(), v["broken"]["seq"].as_i64()),
        (Some(false), Some(target))
    );
}

#[test]
fn a_download_that_cannot_be_audited_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let alice = token_add(&drop, "alice", "listener", &[]);
    let srs = server_in(dir.path());
    let h = srs.http;
    let a = rec_of(&record(&srs, "7001", 1000.0, "busy-a"));
    let file_a = format!("/api/v1/recordings/{}/files/{}", a.id, a.file);
    assert_eq!(get(h, &file_a, Some(&alice)).status, 200);

    // Another process holds the index's write lock longer than the busy
    // timeout: readers still read, but no audit entry can be written.
    let db = rusqlite::Connection::open(drop.join("index.sqlite")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let r = get(h, &file_a, Some(&alice));
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        !r.body.starts_with(b"RIFF"),
        "no audio without its audit entry"
    );
    assert!(r.json()["error"].as_str().unwrap().contains("audit trail"));
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    let r = get(h, "/api/v1/recordings", Some(&alice));
    assert_eq!(r.status, 503, "nor a search");
    db.execute_batch("ROLLBACK").unwrap();
    std::mem::drop(db);

    let r = get(h, &file_a, Some(&alice));
    assert_eq!(r.status, 200);
    assert_eq!(tone_of(&r.body), 1000.0);
    let downloads: Vec<String> = audit_json(&srs, &["--actor", "alice", "--action", "download"])
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(downloads, ["ok", "ok"], "the refused one left no entry");
    assert!(srs.log().contains("the audit trail cannot be written"));
    assert!(srs.log().contains("the audit trail can be written again"));
}

/// A CA, and a certificate for 127.0.0.1 it signed, as PEM files.
fn pki(dir: &Path) -> rcgen::Certificate {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "srs API test CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, ca_key);
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().unwrap();
    let leaf = p.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("api.crt"), format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(dir.join("api.key"), key.serialize_pem()).unwrap();
    ca
}

/// One request over HTTPS, trusting `ca`.
fn https_call(
    addr: SocketAddr,
    ca: &rcgen::Certificate,
    path: &str,
    token: Option<&str>,
) -> Option<Resp> {
    use std::sync::Arc;
    use tokio_rustls::rustls::{self, crypto::ring::default_provider, pki_types::ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request_text("GET", path, token, "", "").as_bytes())
        .ok()?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // A close without close_notify still delivered the answer.
        Err(_) if !out.is_empty() => {}
        Err(_) => return None,
    }
    Some(parse_response(&out))
}

#[test]
fn https_serves_the_api_and_plain_http_is_refused_on_that_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let drop = dir.path().join("recordings");
    let admin = token_add(&drop, "admin", "admin", &[]);
    let (sip, http) = (free_port(), free_port());
    let rtp = port_block(20);
    let cfg = dir.path().join("https.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:{http}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.path().join("api.crt").display(),
            dir.path().join("api.key").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("srs.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_srs"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .args(["--sip", &format!("127.0.0.1:{sip}")])
        .args(["--rtp-ports", &format!("{rtp}-{}", rtp + 19)])
        .args(["--recordings", drop.to_str().unwrap()])
        .stderr(log)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
        loop {
            if let Some(r) = https_call(addr, &ca, "/healthz", None) {
                assert_eq!(r.status, 200);
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none() && Instant::now() < deadline,
                "srs did not serve HTTPS: {}",
                std::fs::read_to_string(dir.path().join("srs.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Kill(child)
    };
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    let r = https_call(addr, &ca, "/api/v1/recordings", Some(&admin)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["total"], 0);
    let r = https_call(addr, &ca, "/api/v1/recordings", None).unwrap();
    assert_eq!(r.status, 401, "HTTPS does not replace the token");
    // Plain HTTP on the HTTPS listener: one plain 400 saying so, then the
    // connection is closed; the request is never served.
    for path in ["/api/v1/recordings", "/healthz"] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request_text("GET", path, Some(&admin), "", "").as_bytes())
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");
        assert!(text.contains("HTTPS"), "{text}");
        assert!(
            !text.contains("total") && !text.contains("status\":\"ok"),
            "{text}"
        );
    }
    // And a client that verifies gets nothing from a wrong name.
    let other = tempfile::tempdir().unwrap();
    let stranger = pki(other.path());
    assert!(https_call(addr, &stranger, "/healthz", None).is_none());
}

#[test]
fn an_exposed_api_without_tokens_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let serve = |extra: &str, while_up: &dyn Fn(SocketAddr)| {
        let http = free_port();
        let cfg = dir.path().join("expose.toml");
        std::fs::write(
            &cfg,
            format!("[http]\nlisten = \"0.0.0.0:{http}\"\n{extra}"),
        )
        .unwrap();
        let rtp = port_block(10);
        let mut child = Command::new(env!("CARGO_BIN_EXE_srs"))
            .args(["serve", "--config", cfg.to_str().unwrap()])
            .args(["--sip", &format!("127.0.0.1:{}", free_port())])
            .args(["--rtp-ports", &format!("{rtp}-{}", rtp + 9)])
            .args(["--recordings", drop.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (Some(status.success()), err);
            }
            if http_get(addr, "/healthz").is_some() {
                while_up(addr);
                let _ = child.kill();
                let _ = child.wait();
                return (None, String::new());
            }
            assert!(Instant::now() < deadline, "neither served nor refused");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let nothing = |_: SocketAddr| {};
    let (exited, err) = serve("", &nothing);
    assert_eq!(exited, Some(false), "refused to start");
    assert!(err.contains("no API token exists"), "{err}");
    assert!(err.contains("allow_unauthenticated"), "{err}");
    assert!(err.contains("srs token add"), "{err}");
    // The documented override.
    // The documented override: open to anyone (audited as anonymous),
    // but no token can be made through the API without a token.
    let open = |addr: SocketAddr| {
        assert_eq!(get(addr, "/api/v1/recordings", None).status, 200);
        let r = call(
            addr,
            "POST",
            "/api/v1/tokens",
            None,
            "",
            r#"{"name":"me","role":"admin"}"#,
        );
        assert_eq!(r.status, 403);
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("srs token add"));
    };
    let (exited, _) = serve("allow_unauthenticated = true\n", &open);
    assert_eq!(exited, None, "served with the override");
    // With a token, it serves, and the API wants the token.
    token_add(&drop, "ops", "admin", &[]);
    let locked = |addr: SocketAddr| {
        assert_eq!(get(addr, "/api/v1/recordings", None).status, 401);
    };
    let (exited, _) = serve("", &locked);
    assert_eq!(exited, None, "served once a token exists");
    let out = run_srs(&[
        "audit",
        "--json",
        "--actor",
        "anonymous",
        "--recordings",
        drop.to_str().unwrap(),
    ]);
    let anonymous = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(anonymous, 2, "the open API's requests are audited too");
}

#[test]
fn the_command_line_is_audited_and_shows_nothing_unaudited() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let d = drop.to_str().unwrap();
    // Without an index: nothing shown, nothing written, no index made (a
    // running server would take a new file for a replaced index).
    let out = run_srs(&["list", "--json", "--recordings", d]);
    assert!(out.status.success());
    assert!(!drop.join("index.sqlite").exists());

    let ix = srs::store::Index::open(&drop.join("index.sqlite")).unwrap();
    let meta = srs::recording::RecordingMeta {
        recording_id: "cli-rec-1".into(),
        call_id: "cli-call-1".into(),
        status: "complete".into(),
        started_at: "2026-11-23T10:00:00Z".into(),
        ended_at: "2026-11-23T10:01:00Z".into(),
        path: "2026/11/23/cli-rec-1".into(),
        record_dn: Some("7001".into()),
        ..Default::default()
    };
    ix.upsert(&meta).unwrap();
    std::mem::drop(ix);

    let out = run_srs(&["list", "--json", "--dn", "7001", "--recordings", d]);
    assert!(out.status.success());
    let out = run_srs(&["show", "cli-call-1", "--recordings", d]);
    assert!(out.status.success());
    let out = run_srs(&["show", "nosuch", "--recordings", d]);
    assert!(!out.status.success());
    let out = run_srs(&["reindex", "--recordings", d]);
    assert!(out.status.success());
    let out = run_srs(&["audit", "--json", "--recordings", d]);
    assert!(out.status.success());
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(String, String, serde_json::Value, serde_json::Value)> = entries
        .iter()
        .map(|e| {
            assert!(e["actor"].as_str().unwrap().starts_with("cli:"), "{e}");
            assert_eq!(
                (e["role"].as_str(), e["client"].as_str()),
                (Some("cli"), Some("local"))
            );
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
                e["recording_ids"].clone(),
                e["filters"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "search".into(),
                "ok".into(),
                serde_json::json!(["cli-rec-1"]),
                serde_json::json!({"dn": "7001"})
            ),
            (
                "view".into(),
                "ok".into(),
                serde_json::json!(["cli-rec-1"]),
                serde_json::json!({"id": "cli-call-1"})
            ),
            (
                "view".into(),
                "not-found".into(),
                serde_json::json!([]),
                serde_json::json!({"id": "nosuch"})
            ),
            // The reindex drops the recording gone from the drop, audited
            // as found missing (issue 15).
            (
                "found-missing".into(),
                "ok".into(),
                serde_json::json!(["cli-rec-1"]),
                serde_json::json!({"path": "2026/11/23/cli-rec-1"})
            ),
            (
                "reindex".into(),
                "ok".into(),
                serde_json::json!([]),
                serde_json::json!({"indexed": 0, "removed": 1})
            ),
        ]
    );
    // The index row was removed by the reindex (no such directory in the
    // drop); put it back, then hold the write lock from another process:
    // the tools refuse to show anything they cannot record.
    let ix = srs::store::Index::open(&drop.join("index.sqlite")).unwrap();
    ix.upsert(&meta).unwrap();
    std::mem::drop(ix);
    let db = rusqlite::Connection::open(drop.join("index.sqlite")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    for args in [vec!["list", "--json"], vec!["show", "cli-rec-1"]] {
        let mut a = args.clone();
        a.extend(["--recordings", d]);
        let out = run_srs(&a);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?} showed something unaudited");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("audit trail"), "{err}");
    }
    db.execute_batch("ROLLBACK").unwrap();
    let out = run_srs(&["audit", "--verify", "--recordings", d]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 5 entries"));
}
