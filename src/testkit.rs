//! Helpers for tests, fuzzing and load generation: turning the published
//! vendor corpus into what a client really sends.
//!
//! The corpus keeps files as found: LF endings, stale Content-Length,
//! RFC examples indented and with `...` elisions, bodies without headers,
//! header templates without Via or Call-ID. The harness, not the files, is
//! adjusted, and only in ways a real client's transport would produce.

/// CRLF line ends and a Content-Length equal to the body's length.
pub fn normalise_sip(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let text = text.trim_start_matches('\n');
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let body = body.replace('\n', "\r\n");
    let mut out = String::new();
    for line in head.lines() {
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("content-length") || name == "l" {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Removes the first line's indentation from every line (RFC examples are
/// indented as a block, though some of their bodies start at column 0).
fn dedent(text: &str) -> String {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let indent = first.len() - first.trim_start().len();
    text.lines()
        .map(|l| {
            let strip = (l.len() - l.trim_start().len()).min(indent);
            &l[strip..]
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A corpus file as a complete request: body-only files (starting with a
/// MIME boundary) are wrapped in an INVITE; missing mandatory headers are
/// added (`call_id` names the dialog); header continuation lines that lost
/// their indentation are folded; then [`normalise_sip`].
pub fn corpus_request(raw: &str, call_id: &str) -> Vec<u8> {
    let text = dedent(&raw.replace("\r\n", "\n"));
    let text = text.trim_start_matches('\n');
    let (head, body) = if text.starts_with("--") {
        let boundary = text
            .lines()
            .next()
            .unwrap_or("--b")
            .trim_end()
            .trim_start_matches("--")
            .to_string();
        (
            format!(
                "INVITE sip:srs@127.0.0.1 SIP/2.0\nContact: <sip:src@127.0.0.1:5070>;+sip.src\nRequire: siprec\nContent-Type: multipart/mixed;boundary={boundary}"
            ),
            text.to_string(),
        )
    } else {
        let (h, b) = text.split_once("\n\n").unwrap_or((text, ""));
        (h.to_string(), b.to_string())
    };
    let mut lines: Vec<String> = Vec::new();
    for (i, line) in head.lines().enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) && !line.contains(':') {
            lines.push(format!(" {line}")); // folded value that lost its indent
        } else {
            lines.push(line.to_string());
        }
    }
    let has = |name: &str| {
        lines.iter().any(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
    };
    let method = head
        .split_whitespace()
        .next()
        .unwrap_or("INVITE")
        .to_string();
    let mut extra = Vec::new();
    if !has("via") {
        extra.push(format!(
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{call_id}"
        ));
    }
    if !has("from") {
        extra.push("From: <sip:src@127.0.0.1:5070>;tag=corpus".to_string());
    }
    if !has("to") {
        extra.push("To: <sip:srs@127.0.0.1>".to_string());
    }
    if !has("call-id") {
        extra.push(format!("Call-ID: {call_id}"));
    }
    if !has("cseq") {
        extra.push(format!("CSeq: 1 {method}"));
    }
    if !has("max-forwards") {
        extra.push("Max-Forwards: 70".to_string());
    }
    lines.splice(1..1, extra);
    let msg = format!("{}\n\n{}", lines.join("\n"), body);
    normalise_sip(msg.as_bytes())
}

/// Replaces the value of header `name` (first occurrence) in a message.
pub fn set_header(msg: &[u8], name: &str, value: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(msg);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut done = false;
    let mut out: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        let n = line.split(':').next().unwrap_or("").trim();
        if !done && !line.starts_with([' ', '\t']) && n.eq_ignore_ascii_case(name) {
            out.push(format!("{name}: {value}"));
            done = true;
        } else if done
            && line.starts_with([' ', '\t'])
            && out.last().is_some_and(|l| l.starts_with(name))
        {
            continue; // drop the old value's continuation lines
        } else {
            out.push(line.to_string());
        }
    }
    if !done {
        out.insert(1, format!("{name}: {value}"));
    }
    format!("{}\r\n\r\n{}", out.join("\r\n"), body).into_bytes()
}

/// Goertzel power of frequency `f` in `x` sampled at `rate` (tests check
/// which tone a decoded file holds).
pub fn goertzel(x: &[i16], rate: f64, f: f64) -> f64 {
    let c = 2.0 * (2.0 * std::f64::consts::PI * f / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - c * s1 * s2
}

/// The strongest frequency in `x`, scanning 100 Hz..`max` in 50 Hz steps.
pub fn dominant_frequency(x: &[i16], rate: f64, max: f64) -> f64 {
    let mut best = (0.0, f64::MIN);
    let mut f = 100.0;
    while f < max {
        let p = goertzel(x, rate, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 50.0;
    }
    best.0
}

/// `n` samples of a sine at `freq` Hz sampled at `rate`, from sample `n0`
/// (a stream cut into packets stays one continuous tone), peak `amp`.
pub fn sine(freq: f64, rate: u32, n0: u64, n: usize, amp: f64) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (n0 + i as u64) as f64 / f64::from(rate);
            (amp * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// 20 ms of a `freq` Hz tone as a PCMU payload (160 samples at 8 kHz, peak
/// 8000) from sample `n0`.
pub fn pcmu_tone(freq: f64, n0: u64) -> Vec<u8> {
    sine(freq, 8000, n0, 160, 8000.0)
        .into_iter()
        .map(ulaw_encode)
        .collect()
}

/// G.711 µ-law encoder (ITU-T G.711), for making test streams.
pub fn ulaw_encode(x: i16) -> u8 {
    let mut v = i32::from(x);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = (v + 0x84).min(32635 + 0x84);
    let exp = (31 - (v as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mant = (v >> (exp + 3)) & 0x0f;
    !(sign as u8 | ((exp as u8) << 4) | mant as u8)
}

/// A recording of some bulk, like a transferred contact-centre call (four
/// participants, correlation ids, twenty events: about 4 KB of JSON), for
/// index and API load tests: id `bulk-NNNNNN`, Record DN 7000-7099, geo
/// `paris` or `lyon`.
pub fn bulky_recording(i: usize) -> crate::recording::RecordingMeta {
    use crate::recording::{EventMeta, ParticipantMeta, RecordingMeta};
    let id = format!("bulk-{i:06}");
    let mut m = RecordingMeta {
        recording_id: id.clone(),
        call_id: format!("{id}@192.0.2.10"),
        status: "complete".into(),
        started_at: format!(
            "2026-03-01T{:02}:{:02}:{:02}Z",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60
        ),
        ended_at: format!(
            "2026-03-01T{:02}:{:02}:{:02}Z",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60
        ),
        duration_ms: 59_000,
        source: "192.0.2.10:5060".into(),
        transport: "udp".into(),
        record_dn: Some(format!("{}", 7000 + i % 100)),
        geo_location: Some(if i % 2 == 0 { "paris" } else { "lyon" }.into()),
        path: format!("2026/03/01/{id}"),
        ..Default::default()
    };
    for k in ["calluuid", "connid", "ani", "dnis", "agentid"] {
        m.correlation
            .insert(k.into(), format!("{k}-{i:08}-0123456789abcdef"));
    }
    m.participants = (0..4)
        .map(|p| ParticipantMeta {
            id: format!("participant-{p}-{i}"),
            aor: Some(format!("sip:+1555123{p:04}@carrier.example.com")),
            name: Some(format!("Participant number {p}")),
            labels: vec![p.to_string()],
            file: Some(format!("p{p}.wav")),
        })
        .collect();
    m.events = (0..20)
        .map(|e| EventMeta {
            at: m.started_at.clone(),
            kind: "participant-joined".into(),
            participant_id: Some(format!("participant-{}-{i}", e % 4)),
            aor: Some(format!("sip:{}@pbx.example.com", 7000 + e)),
            ..Default::default()
        })
        .collect();
    m
}

pub mod pg;
