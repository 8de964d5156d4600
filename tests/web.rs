//! The web page in a real browser: Debian's `chromium`, headless, driven
//! over WebDriver (`chromedriver`, through the `fantoccini` crate), on
//! calls recorded over SIP in the test. One browser for the whole file.
//!
//! Signed in with a listener token: a search by DN finds the call and the
//! URL holds the search (a bookmark reproduces it); the recording page
//! has one player per participant and the stereo file, each loading and
//! reporting the call's duration; each stream's waveform is drawn from
//! non-empty peaks; the pause (a re-INVITE with `a=inactive`, and back) is
//! a span on the timeline at the time it happened; clicking it (and
//! pressing Enter on a mark) seeks the players; no layout shift while
//! loading; 100 results render well under a second. Signed out, the
//! cookie is dead. A viewer token sees no player and no download, and
//! gets 403 on the file URL; a recording outside its scope is not
//! reachable by URL (404). An admin sees hold and delete; the live page
//! shows a call in progress. Screenshots of the search and recording
//! pages go to target/web-screenshots (and to docs/screenshots with
//! SRS_SCREENSHOTS=1).

mod common;

use common::call::TwoParty;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium with a fresh profile and nothing that reaches the
/// network (this machine has none: without these flags Chromium tries).
async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let binary = ["/usr/bin/chromium", "/usr/lib/chromium/chromium"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("chromium");
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--mute-audio",
        "--window-size=1280,1000",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": binary, "args": args },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with chromium")
}

/// Runs `js` (a function body) in the page.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Waits until `cond` (a JS expression) is truthy.
async fn until(c: &Client, cond: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if js(c, &format!("return !!({cond});")).await == Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let text = js(c, "return document.body.innerText;").await;
            panic!("timed out waiting for {what} ({cond}); the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sign_in(c: &Client, base: &str, secret: &str, who: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    until(c, "document.querySelector('#token')", "the sign-in form").await;
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(secret)
        .await
        .unwrap();
    c.find(Locator::Css("#signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        &format!("(document.querySelector('#whoami') || {{}}).innerText?.includes('{who}')"),
        "signed in",
    )
    .await;
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("#signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "document.querySelector('#token')",
        "the sign-in form again",
    )
    .await;
}

/// The status of a `fetch` of `path` from the page (its cookie, same
/// origin).
async fn fetch_status(c: &Client, path: &str) -> u64 {
    let v = js(
        c,
        &format!("return fetch('{path}', {{credentials: 'same-origin'}}).then(r => r.status);"),
    )
    .await;
    v.as_u64().unwrap_or(0)
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = manifest_dir().join("target/web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), &png).unwrap();
    if std::env::var("SRS_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = manifest_dir().join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(name), &png).unwrap();
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_web_page_in_chromium() {
    if !peers_available("the_web_page_in_chromium", &["chromium", "chromedriver"]) {
        return;
    }
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let drop = dir.path().join("recordings");
    let listener = token_add(&drop, "qm-listener", "listener", &[]);
    let viewer = token_add(&drop, "qm-viewer", "viewer", &["dn=7001"]);
    let admin = token_add(&drop, "supervisor", "admin", &[]);
    let cfg = dir.path().join("srs.toml");
    std::fs::write(&cfg, "[output]\nformats = [\"wav\", \"stereo-wav\"]\n").unwrap();
    let srs = Server::start_with(&[
        "--config",
        cfg.to_str().unwrap(),
        "--recordings",
        drop.to_str().unwrap(),
    ]);
    let base = format!("http://{}", srs.http);

    // The browser starts while the calls are recorded.
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let browser_ready = std::thread::scope(|s| {
        // Call A (Record DN 7001): both talk 1 s, a hold of 1 s (both
        // streams a=inactive), 1 s more. Call B (7002): out of the
        // viewer's scope.
        let a = s.spawn(|| {
            let mut c = TwoParty::start(&srs, "7001", "web-a");
            c.talk(1.0);
            let paused = c.answered.elapsed();
            c.reinvite("inactive");
            std::thread::sleep(Duration::from_millis(1000));
            let resumed = c.answered.elapsed();
            c.reinvite("sendonly");
            c.talk(0.7);
            let digit = c.answered.elapsed();
            c.dtmf(5);
            c.talk(0.3);
            (c.bye(), paused, resumed, digit)
        });
        let b = s.spawn(|| {
            let mut c = TwoParty::start(&srs, "7002", "web-b");
            c.talk(0.5);
            c.bye()
        });
        let client = rt.block_on(browser(&driver, profile.path()));
        (client, a.join().unwrap(), b.join().unwrap())
    });
    let (c, (a_call, paused, resumed, digit), b_call) = browser_ready;
    let a = wait_indexed(&srs, &a_call, Duration::from_secs(15));
    let b = wait_indexed(&srs, &b_call, Duration::from_secs(15));
    let a_id = a["recording_id"].as_str().unwrap().to_string();
    let b_id = b["recording_id"].as_str().unwrap().to_string();
    let setup = began.elapsed();

    rt.block_on(async {
        // ---- listener: search, the URL, the recording page ----
        sign_in(&c, &base, &listener, "qm-listener").await;
        let leaks = js(&c, "return [document.cookie, localStorage.length, Object.values(sessionStorage).some(v => v.includes('srs_'))];").await;
        assert_eq!(leaks, json!(["", 0, false]), "the session cookie is HttpOnly; no secret kept");
        until(&c, "document.querySelector('#results[data-state=done]')", "the first results").await;
        c.find(Locator::Css("#f-dn")).await.unwrap().send_keys("7001").await.unwrap();
        c.find(Locator::Css("#search-submit")).await.unwrap().click().await.unwrap();
        until(&c, "location.search === '?dn=7001'", "the search in the URL").await;
        until(&c, "document.querySelector('#results[data-state=done]') && document.querySelector('#f-dn').value === '7001' && document.querySelector('#search-status').innerText.includes('1 recording')", "the DN's results").await;
        let ids = js(&c, "return [...document.querySelectorAll('#results tbody tr')].map(r => r.dataset.id);").await;
        assert_eq!(ids, json!([a_id]), "DN 7001 finds call A only");
        // The URL alone reproduces the search (a bookmark, a sent link).
        c.goto(&format!("{base}/?dn=7001")).await.unwrap();
        until(&c, "document.querySelector('#results[data-state=done]')", "the bookmarked search").await;
        let again = js(&c, "return [document.querySelector('#f-dn').value, [...document.querySelectorAll('#results tbody tr')].map(r => r.dataset.id)];").await;
        assert_eq!(again, json!(["7001", [a_id]]));
        screenshot(&c, "search.png").await;
        // Open it.
        c.find(Locator::Css("#results tbody tr a")).await.unwrap().click().await.unwrap();
        until(&c, &format!("location.pathname === '/recordings/{a_id}'"), "the recording's URL").await;
        until(&c, "document.querySelector('main[data-state=done]')", "the recording page").await;

        // One player per participant, and the stereo file; each loads
        // and reports the call's duration.
        let files = js(&c, "return [...document.querySelectorAll('audio')].map(a => a.dataset.file);").await;
        let mut expected: Vec<String> = a["participants"].as_array().unwrap().iter()
            .map(|p| p["file"].as_str().unwrap().to_string()).collect();
        expected.push(a["files"].as_array().unwrap().iter()
            .find(|f| f["format"] == "stereo-wav").unwrap()["name"].as_str().unwrap().to_string());
        assert_eq!(files, json!(expected), "a player per participant, then the stereo file");
        until(&c, "[...document.querySelectorAll('audio')].every(a => a.readyState >= 1 && isFinite(a.duration))", "the players' metadata").await;
        let durations = js(&c, "return [...document.querySelectorAll('audio')].map(a => a.duration);").await;
        let call_s = a["duration_ms"].as_f64().unwrap() / 1000.0;
        for d in durations.as_array().unwrap() {
            let d = num(d);
            assert!((d - call_s).abs() < 0.6, "a player reports {d} s for a call of {call_s} s");
        }
        assert!(call_s > 2.8, "{call_s}");
        assert!(js(&c, "return document.querySelectorAll('a.download').length;").await.as_u64().unwrap() >= 3);

        // A waveform per stream, drawn from non-empty peaks.
        until(&c, "document.querySelectorAll('canvas.wave[data-drawn=true]').length === 2", "two waveforms drawn").await;
        let waves = js(&c, r#"return [...document.querySelectorAll('canvas.wave')].map(cv => {
            const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
            let inked = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) inked++;
            return {peaks: +cv.dataset.peaks, loudest: +cv.dataset.loudest, inked, width: cv.width};
        });"#).await;
        for w in waves.as_array().unwrap() {
            assert!(num(&w["peaks"]) > 100.0, "{w}");
            assert!(num(&w["loudest"]) > 6000.0, "the tones are in the peaks: {w}");
            assert!(num(&w["inked"]) > num(&w["width"]) * 10.0, "pixels drawn: {w}");
        }

        // The pause is a span at the time it happened, on each stream.
        let spans = js(&c, "return [...document.querySelectorAll('.lane .span')].map(s => ({label: s.dataset.label, start: +s.dataset.startMs, end: +s.dataset.endMs, left: parseFloat(s.style.left)}));").await;
        let spans = spans.as_array().unwrap();
        assert_eq!(spans.len(), 2, "one pause span per stream: {spans:?}");
        let total_ms = num(&js(&c, "return Math.max(...[...document.querySelectorAll('audio')].map(a => a.duration * 1000));").await);
        for s in spans {
            let (start, end) = (num(&s["start"]), num(&s["end"]));
            let want = (paused.as_millis() as f64, resumed.as_millis() as f64);
            assert!((start - want.0).abs() < 400.0, "pause starts at {start} ms, re-INVITE sent at {} ms", want.0);
            assert!((end - want.1).abs() < 400.0, "pause ends at {end} ms, re-INVITE sent at {} ms", want.1);
            // Drawn where it is: its left edge at start / length.
            let left = num(&s["left"]);
            assert!((left - 100.0 * start / total_ms).abs() < 5.0, "span at {left}% for {start} of {total_ms} ms");
        }
        // The DTMF digit is a mark on the agent's stream, at its time.
        let marks = js(&c, "return [...document.querySelectorAll('.lane .marker.dtmf')].map(m => [m.closest('.lane').dataset.label, m.innerText, +m.dataset.atMs]);").await;
        let marks = marks.as_array().unwrap();
        assert_eq!(marks.len(), 1, "{marks:?}");
        assert_eq!((&marks[0][0], &marks[0][1]), (&json!("1"), &json!("5")));
        let at = num(&marks[0][2]);
        assert!((at - digit.as_millis() as f64).abs() < 400.0, "DTMF at {at} ms, sent at {digit:?}");
        // Correlation ids and metadata, as text.
        let meta = js(&c, "return document.querySelector('#h-meta').parentElement.innerText;").await;
        let meta = meta.as_str().unwrap();
        assert!(meta.contains("UUID-web-a") && meta.contains(&a_call) && !meta.contains("[object"), "{meta}");
        // The whole page, for docs/screenshots.
        c.set_window_size(1280, 2300).await.unwrap();
        screenshot(&c, "recording.png").await;
        c.set_window_size(1280, 1000).await.unwrap();

        // Clicking the span seeks every player to the pause.
        let start_s = num(&spans[0]["start"]) / 1000.0;
        c.find(Locator::Css(".lane .span")).await.unwrap().click().await.unwrap();
        until(&c, &format!("[...document.querySelectorAll('audio')].every(a => Math.abs(a.currentTime - {start_s}) < 0.05)"), "the players at the pause").await;
        assert_eq!(num(&js(&c, "return +document.querySelector('#cursor').dataset.ms;").await).round(), (start_s * 1000.0).round());
        // With the keyboard: Enter on the event list's last button.
        let last_at = js(&c, "const b = [...document.querySelectorAll('#h-events ~ .table-wrap button')].pop(); b.focus(); return b.closest('tr').firstChild.innerText;").await;
        c.active_element().await.unwrap().send_keys("\u{E007}").await.unwrap();
        let (m, s) = last_at.as_str().unwrap().split_once(':').unwrap();
        let last_s: f64 = m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap();
        until(&c, &format!("[...document.querySelectorAll('audio')].every(a => Math.abs(a.currentTime - {last_s}) < 0.11)"), "the players at the event chosen with the keyboard").await;

        // No layout shift while the page loads (fresh load of the URL).
        c.goto(&format!("{base}/recordings/{a_id}")).await.unwrap();
        until(&c, "document.querySelectorAll('canvas.wave[data-drawn=true]').length === 2", "the page loaded again").await;
        let cls = js(&c, "return new Promise(done => { let cls = 0; new PerformanceObserver(l => { for (const e of l.getEntries()) if (!e.hadRecentInput) cls += e.value; }).observe({type: 'layout-shift', buffered: true}); setTimeout(() => done(cls), 300); });").await;
        assert!(num(&cls) < 0.05, "cumulative layout shift {cls}");

        // At 200% zoom (a CSS viewport half as wide), nothing is cut off
        // and nothing scrolls sideways but the tables in their boxes.
        c.set_window_size(640, 1000).await.unwrap();
        for page in [format!("/recordings/{a_id}"), "/?dn=7001".to_string()] {
            c.goto(&format!("{base}{page}")).await.unwrap();
            until(&c, "document.querySelector('main[data-state=done], #results[data-state=done]')", "the page at 640 px").await;
            let fits = js(&c, "return [document.documentElement.scrollWidth, window.innerWidth];").await;
            assert!(num(&fits[0]) <= num(&fits[1]) + 1.0, "{page} is wider than the window: {fits}");
        }
        c.set_window_size(1280, 1000).await.unwrap();

        // A full page of 100 results renders well under a second (100
        // rows written into the index, 4 participants and 20 events each).
        index_bulky(&drop.join("index.sqlite"), 100);
        c.goto(&format!("{base}/?since=2026-03-01&until=2026-03-01")).await.unwrap();
        until(&c, "document.querySelector('#results[data-state=done]')", "100 results").await;
        let render = js(&c, "const t = document.querySelector('#results'); return [+t.dataset.count, +t.dataset.renderMs];").await;
        assert_eq!(num(&render[0]), 100.0);
        let ms = num(&render[1]);
        eprintln!("100 results rendered in {ms} ms");
        assert!(ms < 500.0, "100 rows in {ms} ms");

        // Signed out: the cookie no longer works.
        sign_out(&c).await;
        assert_eq!(fetch_status(&c, "/api/v1/recordings").await, 401);

        // ---- viewer (scope dn=7001): no audio, nothing out of scope ----
        sign_in(&c, &base, &viewer, "qm-viewer").await;
        c.goto(&format!("{base}/recordings/{a_id}")).await.unwrap();
        until(&c, "document.querySelector('main[data-state=done]')", "the viewer's recording page").await;
        let seen = js(&c, "return [document.querySelectorAll('audio').length, document.querySelectorAll('a.download, a[download]').length, !!document.querySelector('#no-audio'), document.querySelectorAll('.lane .span').length];").await;
        assert_eq!(seen, json!([0, 0, true, 2]), "a viewer: the timeline, no player, no download");
        until(&c, "document.querySelectorAll('canvas.wave[data-drawn=true]').length === 2", "the viewer's waveforms").await;
        let file = a["files"][0]["name"].as_str().unwrap();
        assert_eq!(fetch_status(&c, &format!("/api/v1/recordings/{a_id}/files/{file}")).await, 403);
        assert!(js(&c, "return document.querySelector('#hold, #delete') === null;").await.as_bool().unwrap());
        c.goto(&format!("{base}/recordings/{b_id}")).await.unwrap();
        until(&c, "document.querySelector('main[data-state=not-found]')", "B not found for the viewer").await;
        assert!(js(&c, "return document.querySelector('h1').innerText;").await.as_str().unwrap().contains("No such recording"));
        assert_eq!(fetch_status(&c, &format!("/api/v1/recordings/{b_id}")).await, 404);
        sign_out(&c).await;

        // ---- admin: hold and delete offered; the live page ----
        sign_in(&c, &base, &admin, "supervisor").await;
        c.goto(&format!("{base}/recordings/{b_id}")).await.unwrap();
        until(&c, "document.querySelector('main[data-state=done]')", "B for the admin").await;
        c.find(Locator::Css("#hold-reason")).await.unwrap().send_keys("case 4711").await.unwrap();
        c.find(Locator::Css("#hold")).await.unwrap().click().await.unwrap();
        // The hold is placed: the badge says so, with its reason, and the
        // button now releases it.
        until(&c, "document.querySelector('#held-badge')?.innerText.includes('case 4711')", "the hold's badge").await;
        until(&c, "document.querySelector('#hold')?.innerText === 'Release legal hold'", "the release button").await;
        c.find(Locator::Css("#hold")).await.unwrap().click().await.unwrap();
        until(&c, "!document.querySelector('#held-badge') && document.querySelector('#hold')?.innerText === 'Place legal hold'", "the hold released").await;
        c.find(Locator::Css("#delete")).await.unwrap().click().await.unwrap();
        until(&c, "!document.querySelector('#delete-confirm').closest('[hidden]') && document.activeElement.id === 'delete-cancel'", "the delete confirmation, focused on Cancel").await;
        c.active_element().await.unwrap().send_keys("\u{E007}").await.unwrap();
        until(&c, "document.querySelector('#delete-confirm').closest('[hidden]') && !document.querySelector('#delete').hidden", "the confirmation cancelled").await;

        let mut live_call = TwoParty::start(&srs, "7001", "web-live");
        c.goto(&format!("{base}/live")).await.unwrap();
        until(&c, &format!("document.querySelector('#live tr[data-call-id=\"{}\"]')", live_call.call_id), "the call in progress on the live page").await;
        live_call.talk(0.1);
        let live_id = live_call.bye();
        // Refreshed: the ended call leaves the list.
        until(&c, &format!("!document.querySelector('#live tr[data-call-id=\"{live_id}\"]')"), "the ended call gone from the live page").await;
    });
    rt.block_on(c.close()).unwrap();
    eprintln!(
        "browser test: set-up {setup:?}, in all {:?}",
        began.elapsed()
    );
}
