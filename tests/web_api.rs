//! The web page's API on the wire (docs/web.md), on calls recorded over
//! SIP in the test: sign-in with a token for a session cookie (its
//! attributes), the cookie's rights exactly the token's (role, scope,
//! revocation), CSRF on changes, logout, every step in the audit trail
//! under the token's name; waveform peaks (values, cap, formats, access);
//! the page's shell served without a token and with its CSP; open mode;
//! `http.web = false`.

mod common;

use common::call::TwoParty;
use common::http::{call, Resp};
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Resp {
    call(addr, "GET", path, token, "", "")
}

/// A request with a Cookie header (and extra header lines).
fn with_cookie(addr: SocketAddr, method: &str, path: &str, cookie: &str, extra: &str) -> Resp {
    call(
        addr,
        method,
        path,
        None,
        &format!("Cookie: {cookie}\r\n{extra}"),
        "",
    )
}

fn login(addr: SocketAddr, secret: &str) -> Resp {
    call(
        addr,
        "POST",
        "/api/v1/login",
        None,
        "",
        &serde_json::json!({ "token": secret }).to_string(),
    )
}

/// `name=value` of a Set-Cookie header.
fn cookie_of(r: &Resp) -> String {
    let set = r.header("set-cookie").expect("a Set-Cookie header");
    set.split(';').next().unwrap().trim().to_string()
}

/// A server on `dir`/recordings with `config` (TOML).
fn server(dir: &Path, config: &str) -> Server {
    let cfg = dir.join("srs.toml");
    std::fs::write(&cfg, config).unwrap();
    let rec = dir.join("recordings");
    Server::start_with(&[
        "--config",
        cfg.to_str().unwrap(),
        "--recordings",
        rec.to_str().unwrap(),
    ])
}

/// A recorded two-party call with Record DN `dn`: its index entry.
fn record(srs: &Server, dn: &str, tag: &str, secs: f64) -> serde_json::Value {
    let mut c = TwoParty::start(srs, dn, tag);
    c.talk(secs);
    let call_id = c.bye();
    wait_indexed(srs, &call_id, Duration::from_secs(15))
}

fn audit(srs: &Server, admin: &str) -> Vec<serde_json::Value> {
    let r = get(srs.http, "/api/v1/audit?limit=10000", Some(admin));
    assert_eq!(r.status, 200);
    r.json()["entries"].as_array().unwrap().clone()
}

#[test]
fn sign_in_gives_a_cookie_with_the_tokens_rights_and_csrf_guards_changes() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let admin = token_add(&drop, "qm-admin", "admin", &[]);
    let listener = token_add(&drop, "qm-listener", "listener", &[]);
    let viewer = token_add(&drop, "qm-viewer", "viewer", &["dn=7001"]);
    let robot = token_add(&drop, "cti", "integration", &[]);
    let temp = token_add(&drop, "temp", "listener", &[]);
    let srs = server(dir.path(), "");
    let h = srs.http;
    let a = record(&srs, "7001", "web-api-a", 0.4);
    let b = record(&srs, "7002", "web-api-b", 0.4);
    let (a_id, b_id) = (
        a["recording_id"].as_str().unwrap(),
        b["recording_id"].as_str().unwrap(),
    );
    let a_file = format!(
        "/api/v1/recordings/{a_id}/files/{}",
        a["files"][0]["name"].as_str().unwrap()
    );

    // The page's shell and assets need no token, and carry no data.
    for path in ["/", "/live", &format!("/recordings/{a_id}")] {
        let r = get(h, path, None);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(a_id), "no recording data in the shell");
    }
    let js = get(h, "/assets/app.js", None);
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(get(h, "/assets/app.css", None).status, 200);
    // Everything else still needs a token.
    assert_eq!(get(h, "/api/v1/me", None).status, 401);
    assert_eq!(get(h, "/assets/nosuch.js", None).status, 401);
    assert_eq!(get(h, "/recordings/a/b", None).status, 401);

    // Sign-in: JSON only, a known token, a role that reads.
    let r = call(
        h,
        "POST",
        "/api/v1/login",
        None,
        "Content-Type: text/plain\r\n",
        "token=x",
    );
    assert_eq!(r.status, 415, "a form post is refused");
    let r = login(h, "srs_not-a-real-token-at-all-aaaaaaaaaaaaaaaaaaaa");
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let r = login(h, &robot);
    assert_eq!(r.status, 403, "integration reads nothing: no page");
    assert!(r.header("set-cookie").is_none());
    let r = call(
        h,
        "POST",
        "/api/v1/login",
        None,
        "",
        r#"{"token":"x","role":"admin"}"#,
    );
    assert_eq!(r.status, 400, "unknown fields refused");

    let r = login(h, &listener);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let set = r.header("set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = cookie_of(&r);
    assert!(cookie.starts_with("srs_session="));
    assert!(!cookie.contains(&listener), "the cookie is not the token");
    let me = r.json();
    assert_eq!(me["actor"], "qm-listener");
    assert_eq!(me["role"], "listener");
    assert_eq!(me["rights"]["download"], true);
    assert_eq!(me["rights"]["delete"], false);
    let csrf = me["csrf"].as_str().unwrap().to_string();
    assert!(csrf.len() >= 43);

    // The cookie does what the token does.
    let r = with_cookie(h, "GET", "/api/v1/recordings", &cookie, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["total"], 2);
    let r = with_cookie(h, "GET", &a_file, &cookie, "");
    assert_eq!(r.status, 200, "a listener downloads");
    assert_eq!(&r.body[..4], b"RIFF");
    let r = with_cookie(h, "GET", "/api/v1/me", &cookie, "");
    assert_eq!(r.json()["csrf"], csrf.as_str());
    assert_eq!(r.json()["signed_in"], true);
    let r = with_cookie(h, "GET", "/api/v1/audit", &cookie, "");
    assert_eq!(r.status, 403, "no admin rights through a listener's cookie");

    // Changes need the CSRF token; a bearer token needs none.
    let r = with_cookie(h, "POST", "/api/v1/logout", &cookie, "");
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["error"].as_str().unwrap().contains("X-CSRF-Token"));
    let r = with_cookie(
        h,
        "POST",
        "/api/v1/logout",
        &cookie,
        "X-CSRF-Token: srs_wrong\r\n",
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        with_cookie(h, "GET", "/api/v1/recordings", &cookie, "").status,
        200,
        "still signed in after the refused changes"
    );
    let r = call(h, "DELETE", "/api/v1/tokens/nosuch", Some(&admin), "", "");
    assert_eq!(r.status, 404, "a bearer change needs no CSRF token");
    // Logout with it: 204, the cookie cleared, the session gone.
    let r = with_cookie(
        h,
        "POST",
        "/api/v1/logout",
        &cookie,
        &format!("X-CSRF-Token: {csrf}\r\n"),
    );
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        with_cookie(h, "GET", "/api/v1/recordings", &cookie, "").status,
        401
    );
    assert_eq!(with_cookie(h, "GET", &a_file, &cookie, "").status, 401);

    // A viewer's cookie: no audio (403), nothing out of its scope (404).
    let r = login(h, &viewer);
    assert_eq!(r.status, 200);
    let vc = cookie_of(&r);
    assert_eq!(r.json()["rights"]["download"], false);
    assert_eq!(r.json()["scopes"], serde_json::json!(["dn=7001"]));
    assert_eq!(with_cookie(h, "GET", &a_file, &vc, "").status, 403);
    let r = with_cookie(h, "GET", &format!("/api/v1/recordings/{a_id}"), &vc, "");
    assert_eq!(r.status, 200);
    let r = with_cookie(h, "GET", &format!("/api/v1/recordings/{b_id}"), &vc, "");
    assert_eq!(r.status, 404, "out of scope: not found");
    let r = with_cookie(h, "GET", "/api/v1/recordings", &vc, "");
    assert_eq!(r.json()["total"], 1);

    // A revoked token's session ends with it.
    let r = login(h, &temp);
    let tc = cookie_of(&r);
    assert_eq!(
        with_cookie(h, "GET", "/api/v1/recordings", &tc, "").status,
        200
    );
    srs.cli(&["token", "revoke", "temp"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while with_cookie(h, "GET", "/api/v1/recordings", &tc, "").status != 401 {
        assert!(
            Instant::now() < deadline,
            "the revoked token's cookie still works"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(login(h, &temp).status, 401);

    // Every step is in the audit trail, under the token's name.
    let entries = audit(&srs, &admin);
    let has = |actor: &str, action: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["outcome"] == outcome)
    };
    assert!(has("qm-listener", "login", "ok"));
    assert!(
        has("qm-listener", "search", "ok"),
        "cookie requests audited"
    );
    assert!(has("qm-listener", "download", "ok"));
    assert!(has("qm-listener", "csrf", "denied"));
    assert!(has("qm-listener", "logout", "ok"));
    assert!(has("cti", "login", "denied"));
    assert!(has("qm-viewer", "download", "denied"));
    assert!(has("qm-viewer", "view", "not-found"));
    let csrf_entry = entries.iter().find(|e| e["action"] == "csrf").unwrap();
    assert_eq!(csrf_entry["filters"]["path"], "/api/v1/logout");
    // Nothing of a secret in the trail.
    let text = serde_json::to_string(&entries).unwrap();
    for secret in [&admin, &listener, &viewer, &robot, &temp, &csrf] {
        assert!(!text.contains(secret.as_str()));
    }
    assert!(!text.contains(cookie.trim_start_matches("srs_session=")));
}

#[test]
fn peaks_of_wav_files_with_their_values_cap_and_access() {
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let admin = token_add(&drop, "admin", "admin", &[]);
    let viewer = token_add(&drop, "viewer", "viewer", &["dn=7001"]);
    let robot = token_add(&drop, "cti", "integration", &[]);
    let srs = server(
        dir.path(),
        "[output]\nformats = [\"wav\", \"stereo-wav\", \"ogg-opus\"]\n",
    );
    let h = srs.http;
    let a = record(&srs, "7001", "peaks-a", 1.0);
    let b = record(&srs, "7002", "peaks-b", 0.3);
    let a_id = a["recording_id"].as_str().unwrap();
    let b_id = b["recording_id"].as_str().unwrap();
    let name_of = |format: &str| -> String {
        a["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["format"] == format)
            .unwrap_or_else(|| panic!("a {format} file: {a}"))["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let peaks = |rid: &str, file: &str, q: &str, token: Option<&str>| {
        get(
            h,
            &format!("/api/v1/recordings/{rid}/files/{file}/peaks{q}"),
            token,
        )
    };

    // The agent's mono WAV: 440 Hz at amplitude 8000 for 1 s, then the
    // silence up to the BYE.
    let agent = a["participants"][0]["file"].as_str().unwrap().to_string();
    let r = peaks(a_id, &agent, "?points=50", Some(&viewer));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let p = r.json();
    assert_eq!(p["channels"], 1);
    assert_eq!(p["sample_rate"], 8000);
    assert_eq!(p["points"], 50);
    assert_eq!(p["format"], "wav");
    let dur = p["duration_ms"].as_u64().unwrap();
    assert!((950..2000).contains(&dur), "{dur}");
    let max: Vec<i64> = p["peaks"][0]["max"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let min: Vec<i64> = p["peaks"][0]["min"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!((max.len(), min.len()), (50, 50));
    // G.711 of a sine of 8000: peaks near +-8000 while talking.
    let loud = max
        .iter()
        .zip(&min)
        .filter(|(hi, lo)| (7000..9000).contains(*hi) && (-9000..-7000).contains(*lo))
        .count();
    let talk_share = 1000.0 / dur as f64;
    assert!(
        loud as f64 >= 50.0 * talk_share * 0.7,
        "{loud} loud buckets of 50 ({dur} ms file): {max:?}"
    );
    assert!(max.iter().all(|v| *v <= 9000) && min.iter().all(|v| *v >= -9000));
    // Default and capped point counts.
    let r = peaks(a_id, &agent, "", Some(&viewer));
    assert_eq!(r.json()["points"], 1000);
    let r = peaks(a_id, &agent, "?points=1000000", Some(&viewer));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["points"], 4000, "capped");
    assert_eq!(r.json()["peaks"][0]["max"].as_array().unwrap().len(), 4000);
    for bad in ["?points=0", "?points=abc", "?points=-1", "?width=10"] {
        let r = peaks(a_id, &agent, bad, Some(&viewer));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].is_string());
    }

    // The stereo file: one channel per party.
    let r = peaks(a_id, &name_of("stereo-wav"), "?points=20", Some(&viewer));
    assert_eq!(r.status, 200);
    let p = r.json();
    assert_eq!(p["channels"], 2);
    assert_eq!(p["peaks"].as_array().unwrap().len(), 2);
    for c in 0..2 {
        let hi = p["peaks"][c]["max"].as_array().unwrap();
        assert!(hi.iter().any(|v| v.as_i64().unwrap() > 7000), "channel {c}");
    }
    // Ogg Opus: no peaks (the WAV of the same stream has them).
    let r = peaks(a_id, &name_of("ogg-opus"), "?points=20", Some(&viewer));
    assert_eq!(r.status, 415);
    assert!(r.json()["error"].as_str().unwrap().contains("WAV"));

    // Access: a token, a reading role, the scope, a listed file.
    assert_eq!(peaks(a_id, &agent, "", None).status, 401);
    assert_eq!(peaks(a_id, &agent, "", Some(&robot)).status, 403);
    let b_file = b["participants"][0]["file"].as_str().unwrap();
    assert_eq!(peaks(b_id, b_file, "", Some(&viewer)).status, 404);
    assert_eq!(peaks(b_id, b_file, "", Some(&admin)).status, 200);
    assert_eq!(peaks(a_id, "metadata.json", "", Some(&viewer)).status, 404);
    assert_eq!(
        peaks(a_id, "..%2Fmetadata.json", "", Some(&viewer)).status,
        404
    );

    // Audited as views of the recording, with the file and the points.
    let entries = audit(&srs, &admin);
    let seen = entries.iter().find(|e| {
        e["actor"] == "viewer"
            && e["action"] == "view"
            && e["outcome"] == "ok"
            && e["filters"]["file"] == agent.as_str()
            && e["filters"]["peaks"] == 50
    });
    let seen = seen.unwrap_or_else(|| panic!("no peaks entry: {entries:?}"));
    assert_eq!(seen["recording_ids"], serde_json::json!([a_id]));
    assert!(entries
        .iter()
        .any(|e| e["actor"] == "cti" && e["action"] == "view" && e["outcome"] == "denied"));
    assert!(entries
        .iter()
        .any(|e| e["actor"] == "viewer" && e["outcome"] == "unsupported"));
}

#[test]
fn open_mode_needs_no_sign_in_and_web_false_serves_no_page() {
    let dir = tempfile::tempdir().unwrap();
    let srs = server(dir.path(), "");
    let h = srs.http;
    let r = get(h, "/api/v1/me", None);
    assert_eq!(r.status, 200);
    let me = r.json();
    assert_eq!(me["access_control"], false);
    assert_eq!(me["actor"], "anonymous");
    assert_eq!(me["rights"]["download"], true);
    assert_eq!(me["rights"]["delete"], false);
    assert_eq!(get(h, "/", None).status, 200);
    let r = login(h, "srs_anything");
    assert_eq!(r.status, 400, "no token exists: nothing to sign in with");
    drop(srs);

    let dir = tempfile::tempdir().unwrap();
    let srs = server(dir.path(), "[http]\nweb = false\n");
    let h = srs.http;
    for path in ["/", "/live", "/recordings/x", "/assets/app.js"] {
        assert_eq!(get(h, path, None).status, 404, "{path}");
    }
    assert_eq!(login(h, "srs_anything").status, 404);
    assert_eq!(get(h, "/api/v1/me", None).status, 200, "the API stays");
}
