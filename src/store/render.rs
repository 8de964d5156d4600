//! Text and JSON output of `srs list` and `srs show`.
//!
//! Every function returns the text without a trailing newline: print it with
//! `println!`. Strings that come from the network (ids, names, AoRs, ...)
//! have their control characters escaped in the text forms, so that a
//! crafted display name cannot drive the terminal. The JSON forms are the
//! exact objects of `metadata.json`.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use comfy_table::{presets, ContentArrangement, Table};

use crate::recording::RecordingMeta;

/// Escapes control characters (ANSI escapes, newlines, ...) of untrusted text.
/// `s` with control characters shown escaped (a terminal never runs them).
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, or the raw (cleaned) value if not RFC 3339, or `-`.
fn utc_time(t: &str) -> String {
    if t.is_empty() {
        return "-".to_string();
    }
    match DateTime::parse_from_rfc3339(t) {
        Ok(t) => t
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => clean(t),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC (<as received>)`, or the raw value, or `-`.
fn time_detail(t: &str) -> String {
    if DateTime::parse_from_rfc3339(t).is_ok() {
        format!("{} UTC ({})", utc_time(t), clean(t))
    } else {
        or_dash(t)
    }
}

/// `m:ss` (minutes are not wrapped into hours).
fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{}:{:02}", secs / 60, secs % 60)
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        clean(s)
    }
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "-".to_string(), or_dash)
}

/// Table for `srs list`: RECORDING ID, CALL-ID, RECORD DN, STARTED (UTC),
/// DURATION, PARTICIPANTS (AoR, else name, else id), FILES (count), STATUS.
/// Empty input gives `no recordings`.
pub fn list_table(recs: &[RecordingMeta]) -> String {
    if recs.is_empty() {
        return "no recordings".to_string();
    }
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .force_no_tty()
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(vec![
            "RECORDING ID",
            "CALL-ID",
            "RECORD DN",
            "STARTED",
            "DURATION",
            "PARTICIPANTS",
            "FILES",
            "STATUS",
        ]);
    if let Some(first) = table.column_mut(0) {
        first.set_padding((0, 1));
    }
    for r in recs {
        let parties: Vec<String> = r
            .participants
            .iter()
            .map(|p| {
                clean(
                    p.aor
                        .as_deref()
                        .filter(|s| !s.is_empty())
                        .or(p.name.as_deref().filter(|s| !s.is_empty()))
                        .unwrap_or(&p.id),
                )
            })
            .collect();
        table.add_row(vec![
            or_dash(&r.recording_id),
            or_dash(&r.call_id),
            opt(&r.record_dn),
            utc_time(&r.started_at),
            duration(r.duration_ms),
            if parties.is_empty() {
                "-".to_string()
            } else {
                parties.join(", ")
            },
            r.files.len().to_string(),
            or_dash(&r.status),
        ]);
    }
    table.trim_fmt()
}

/// Multi-line description of one recording for `srs show`.
pub fn show_text(rec: &RecordingMeta) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(s, "recording:  {}", or_dash(&rec.recording_id));
    let _ = writeln!(s, "call-id:    {}", or_dash(&rec.call_id));
    let _ = writeln!(s, "status:     {}", or_dash(&rec.status));
    let _ = writeln!(s, "started:    {}", time_detail(&rec.started_at));
    let _ = writeln!(s, "ended:      {}", time_detail(&rec.ended_at));
    let _ = writeln!(
        s,
        "duration:   {} ({} ms)",
        duration(rec.duration_ms),
        rec.duration_ms
    );
    let _ = writeln!(
        s,
        "source:     {} ({})",
        or_dash(&rec.source),
        or_dash(&rec.transport)
    );
    let _ = writeln!(s, "path:       {}", or_dash(&rec.path));
    let _ = writeln!(s, "metadata:   {}", opt(&rec.metadata_file));
    if let Some(err) = &rec.metadata_error {
        let _ = writeln!(s, "metadata error: {}", clean(err));
    }
    let _ = writeln!(
        s,
        "record dn:  {} (kind {})",
        opt(&rec.record_dn),
        opt(&rec.record_dn_kind)
    );
    let _ = writeln!(s, "geo:        {}", opt(&rec.geo_location));
    let _ = writeln!(s, "direction:  {}", opt(&rec.direction));
    let _ = writeln!(s, "rule:       {}", opt(&rec.rule));
    if let Some(h) = &rec.hold {
        let _ = writeln!(
            s,
            "hold:       since {} by {}{}",
            or_dash(&h.at),
            clean(&h.by),
            h.reason
                .as_deref()
                .map(|r| format!(", reason: {}", clean(r)))
                .unwrap_or_default()
        );
    }
    if let Some(m) = &rec.manifest_sha256 {
        let _ = writeln!(s, "manifest:   sha256 {}", clean(m));
    }

    let _ = writeln!(s, "correlation ({}):", rec.correlation.len());
    for (k, v) in &rec.correlation {
        let _ = writeln!(s, "  {}: {}", clean(k), or_dash(v));
    }

    let _ = writeln!(s, "participants ({}):", rec.participants.len());
    for p in &rec.participants {
        let _ = writeln!(s, "  - id:     {}", or_dash(&p.id));
        let _ = writeln!(s, "    aor:    {}", opt(&p.aor));
        let _ = writeln!(s, "    name:   {}", opt(&p.name));
        let labels: Vec<String> = p.labels.iter().map(|l| clean(l)).collect();
        let _ = writeln!(
            s,
            "    labels: {}",
            if labels.is_empty() {
                "-".to_string()
            } else {
                labels.join(", ")
            }
        );
        let _ = writeln!(s, "    file:   {}", opt(&p.file));
    }

    let _ = writeln!(s, "streams ({}):", rec.streams.len());
    for st in &rec.streams {
        let _ = writeln!(
            s,
            "  - label {}: {}, {} packets received, {} lost, sender {}",
            or_dash(&st.label),
            or_dash(&st.codec),
            st.packets_received,
            st.packets_lost,
            opt(&st.participant_id)
        );
    }

    let _ = writeln!(s, "files ({}):", rec.files.len());
    for f in &rec.files {
        let _ = writeln!(
            s,
            "  - {}: {}, {} Hz, {} ch, {} bytes",
            or_dash(&f.name),
            duration(f.duration_ms),
            f.sample_rate,
            f.channels,
            f.bytes
        );
    }

    let _ = writeln!(s, "events ({}):", rec.events.len());
    for e in &rec.events {
        let mut line = format!("  - {} {}", utc_time(&e.at), or_dash(&e.kind));
        for (name, v) in [
            ("label", &e.label),
            ("participant", &e.participant_id),
            ("aor", &e.aor),
            ("detail", &e.detail),
        ] {
            if let Some(v) = v {
                let _ = write!(line, ", {name} {}", or_dash(v));
            }
        }
        let _ = writeln!(s, "{line}");
    }

    let _ = writeln!(s, "dtmf ({}):", rec.dtmf.len());
    for d in &rec.dtmf {
        let _ = writeln!(
            s,
            "  - {} at {} (+{} ms, {} ms) on label {}",
            or_dash(&d.digit),
            utc_time(&d.at),
            d.at_ms,
            d.duration_ms,
            or_dash(&d.label)
        );
    }
    // Issue 14: the call events tied to it, and their merged attached data.
    if !rec.call_events.is_empty() {
        let _ = writeln!(s, "call events ({}):", rec.call_events.len());
        for e in &rec.call_events {
            let ev = &e.event;
            let mut line = format!("  - {} {}", utc_time(&ev.time), or_dash(&ev.event));
            for (name, v) in [
                ("calluuid", &ev.call_uuid),
                ("connid", &ev.conn_id),
                ("previous", &ev.previous_conn_id),
                ("dn", &ev.this_dn),
                ("other", &ev.other_dn),
                ("agent", &ev.agent_id),
            ] {
                if let Some(v) = v {
                    let _ = write!(line, ", {name} {}", or_dash(v));
                }
            }
            let _ = writeln!(s, "{line}");
        }
    }
    if !rec.attached_data.is_empty() {
        let _ = writeln!(s, "attached data ({}):", rec.attached_data.len());
        for (k, v) in &rec.attached_data {
            let _ = writeln!(s, "  {}: {}", clean(k), or_dash(v));
        }
    }
    s.trim_end().to_string()
}

/// `srs list --json`: a pretty JSON array of `metadata.json` objects.
pub fn list_json(recs: &[RecordingMeta]) -> String {
    serde_json::to_string_pretty(recs).unwrap_or_else(|_| "[]".to_string())
}

/// `srs show --json`: the `metadata.json` object, pretty.
pub fn show_json(rec: &RecordingMeta) -> String {
    serde_json::to_string_pretty(rec).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{DtmfMeta, EventMeta, FileMeta, ParticipantMeta, StreamMeta};

    fn sample() -> RecordingMeta {
        RecordingMeta {
            node: None,
            record_dn: Some("1001".to_string()),
            record_dn_kind: Some("extension".to_string()),
            geo_location: Some("EMEA-Paris".to_string()),
            direction: Some("inbound".to_string()),
            rule: Some("agents".to_string()),
            correlation: [("calluuid", "0A1B2C3D"), ("connid", "006f02a5\x1b[2J")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            events: vec![EventMeta {
                at: "2026-11-23T10:02:33Z".to_string(),
                kind: "participant-joined".to_string(),
                participant_id: Some("p3".to_string()),
                aor: Some("sip:7002@pbx".to_string()),
                ..Default::default()
            }],
            dtmf: vec![DtmfMeta {
                label: "1".to_string(),
                digit: "5".to_string(),
                at_ms: 1200,
                duration_ms: 100,
                at: "2026-11-23T10:02:04.700Z".to_string(),
            }],
            recording_id: "rec-0001".to_string(),
            call_id: "abc@192.0.2.1".to_string(),
            status: "complete".to_string(),
            started_at: "2026-11-23T11:02:03.500+01:00".to_string(),
            ended_at: "2026-11-23T10:03:08.500Z".to_string(),
            duration_ms: 65_000,
            source: "192.0.2.1:5060".to_string(),
            transport: "udp".to_string(),
            path: "2026/11/23/rec-0001".to_string(),
            participants: vec![
                ParticipantMeta {
                    id: "p1".to_string(),
                    aor: Some("sip:alice@example.com".to_string()),
                    name: Some("Alice".to_string()),
                    labels: vec!["1".to_string()],
                    file: Some("p1.wav".to_string()),
                },
                ParticipantMeta {
                    id: "p2".to_string(),
                    aor: None,
                    name: Some("Bob\x1b[31m".to_string()),
                    labels: vec!["2".to_string()],
                    file: None,
                },
            ],
            streams: vec![StreamMeta {
                label: "1".to_string(),
                codec: "PCMU".to_string(),
                participant_id: Some("p1".to_string()),
                attribution: Some(crate::recording::Attribution::Metadata),
                packets_received: 3250,
                packets_lost: 2,
                ..Default::default()
            }],
            files: vec![FileMeta {
                name: "p1.wav".to_string(),
                duration_ms: 65_000,
                sample_rate: 8000,
                channels: 1,
                bytes: 1_040_044,
                ..Default::default()
            }],
            metadata_file: Some("metadata.xml".to_string()),
            metadata_error: Some("no <group>".to_string()),
            limits_reached: Vec::new(),
            error: None,
            user_agent: Some("GVP MCP".to_string()),
            metadata_files: Vec::new(),
            manifest_sha256: None,
            hold: Some(crate::recording::Hold {
                reason: Some("case 42".to_string()),
                at: "2026-11-24T09:00:00.000Z".to_string(),
                by: "cli:ops".to_string(),
            }),
            call_events: vec![crate::events::StoredEvent {
                event_id: 3,
                received_at: "2026-11-23T10:02:04.000Z".to_string(),
                event: crate::events::CallEvent {
                    event: "EventEstablished".to_string(),
                    time: "2026-11-23T10:02:04.000Z".to_string(),
                    conn_id: Some("006f02a5".to_string()),
                    this_dn: Some("7001\x1b[2J".to_string()),
                    agent_id: Some("alice".to_string()),
                    ..Default::default()
                },
            }],
            attached_data: [("CaseNumber".to_string(), "C-42\x1b[2J".to_string())]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn table_has_columns_and_values() {
        let t = list_table(&[sample(), RecordingMeta::default()]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        for h in [
            "RECORDING ID",
            "CALL-ID",
            "RECORD DN",
            "STARTED",
            "DURATION",
            "PARTICIPANTS",
            "FILES",
            "STATUS",
        ] {
            assert!(lines[0].contains(h), "{t}");
        }
        let row = lines[1];
        for v in [
            "rec-0001",
            "abc@192.0.2.1",
            " 1001 ",
            "2026-11-23 10:02:03",
            "1:05",
            "sip:alice@example.com, Bob\\u{1b}[31m",
            "complete",
        ] {
            assert!(row.contains(v), "{v:?} missing in {row:?}");
        }
        assert!(!t.contains('\x1b'), "{t:?}");
        assert!(!t.ends_with('\n'));
        assert!(lines[0].starts_with("RECORDING ID"), "{t}");
    }

    #[test]
    fn empty_list_says_so() {
        assert_eq!(list_table(&[]), "no recordings");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0:00");
        assert_eq!(duration(999), "0:00");
        assert_eq!(duration(65_000), "1:05");
        assert_eq!(duration(3_725_000), "62:05");
    }

    #[test]
    fn show_text_describes_everything() {
        let t = show_text(&sample());
        for v in [
            "rec-0001",
            "abc@192.0.2.1",
            "2026-11-23 10:02:03 UTC",
            "1:05 (65000 ms)",
            "192.0.2.1:5060 (udp)",
            "2026/11/23/rec-0001",
            "sip:alice@example.com",
            "Alice",
            "labels: 1",
            "file:   p1.wav",
            "label 1: PCMU, 3250 packets received, 2 lost, sender p1",
            "p1.wav: 1:05, 8000 Hz, 1 ch, 1040044 bytes",
            "metadata error: no <group>",
            "metadata.xml",
            "record dn:  1001 (kind extension)",
            "geo:        EMEA-Paris",
            "direction:  inbound",
            "rule:       agents",
            "hold:       since 2026-11-24T09:00:00.000Z by cli:ops, reason: case 42",
            "correlation (2):",
            "  calluuid: 0A1B2C3D",
            "events (1):",
            "  - 2026-11-23 10:02:33 participant-joined, participant p3, aor sip:7002@pbx",
            "dtmf (1):",
            "  - 5 at 2026-11-23 10:02:04 (+1200 ms, 100 ms) on label 1",
            "call events (1):",
            "  - 2026-11-23 10:02:04 EventEstablished, connid 006f02a5, dn 7001\\u{1b}[2J, agent alice",
            "attached data (1):",
            "  CaseNumber: C-42\\u{1b}[2J",
        ] {
            assert!(t.contains(v), "{v:?} missing in:\n{t}");
        }
        assert!(!t.contains('\x1b'));
        assert!(!t.ends_with('\n'));
        // Degenerate input renders without panicking.
        let d = show_text(&RecordingMeta::default());
        assert!(d.contains("participants (0)"));
        assert!(d.contains("ended:      -\n"), "{d}");
        assert!(d.contains("record dn:  - (kind -)"), "{d}");
        assert!(d.contains("events (0):\ndtmf (0):"), "{d}");
        assert!(!d.contains("metadata error"));
    }

    #[test]
    fn json_round_trips() {
        let recs = vec![sample(), RecordingMeta::default()];
        let back: Vec<RecordingMeta> = serde_json::from_str(&list_json(&recs)).unwrap();
        assert_eq!(back, recs);
        assert_eq!(list_json(&[]), "[]");
        let one: RecordingMeta = serde_json::from_str(&show_json(&recs[0])).unwrap();
        assert_eq!(one, recs[0]);
    }
}
