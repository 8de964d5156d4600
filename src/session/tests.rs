//! LiveRecording bookkeeping on real corpus flows.

use super::*;
use crate::sip::message::parse;
use crate::siprec::{read_offer, sdp::parse_offer};
use crate::testkit::corpus_request;
use chrono::TimeZone;

fn at(s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, s).unwrap()
}

fn start(raw: &str) -> LiveRecording {
    let msg = parse(&corpus_request(raw, "s")).unwrap();
    let offer = read_offer(&msg).unwrap();
    let plan = MediaPlan::from_offer(&offer);
    let meta = RecordingMeta {
        recording_id: "r".into(),
        started_at: stamp(at(0)),
        ..RecordingMeta::default()
    };
    let mut s = LiveRecording::new(meta, &offer, &plan);
    for (n, p) in plan.streams.iter().enumerate() {
        if let (Some(codec), Some(file)) = (&p.codec, &p.file) {
            s.add_stream(StreamSlot {
                index: p.index,
                label: p.label.clone(),
                codec: codec.clone(),
                file: file.clone(),
                port: 30000 + 2 * n as u16,
                paused: false,
                participant_id: p.participant_id.clone(),
                attribution: p.attribution,
                srtp: false,
            });
        }
    }
    s
}

fn kinds(s: &LiveRecording) -> Vec<String> {
    s.meta
        .events
        .iter()
        .map(|e| match &e.label {
            Some(l) => format!("{}:{l}", e.kind),
            None => e.kind.clone(),
        })
        .collect()
}

const SIPP: &str = include_str!("../../tests/fixtures/corpus/sipp-generated-invite.sip");

fn sdp_of(raw: &str) -> SdpOffer {
    let msg = parse(&corpus_request(raw, "s")).unwrap();
    parse_offer(&crate::siprec::split_body(&msg).unwrap().0.unwrap()).unwrap()
}

#[test]
fn pause_resume_codec_change_and_new_stream() {
    let mut s = start(SIPP);
    let base = sdp_of(SIPP);
    // hold: both inactive
    let mut held = base.clone();
    for m in &mut held.media {
        m.direction = Direction::Inactive;
    }
    let a = s.reoffer(at(2), &held);
    assert!(matches!(
        a[0],
        LineAction::Keep {
            port: 30000,
            reanchor: false,
            codec: None,
            ..
        }
    ));
    // resume by c= back, second line switches to PCMA, and a third line appears
    let mut resumed = base.clone();
    resumed.media[1].rtpmaps = vec![RtpMap {
        pt: 8,
        name: "PCMA".into(),
        rate: 8000,
        channels: None,
    }];
    resumed.media[1].formats = vec!["8".into()];
    let mut extra = base.media[0].clone();
    extra.label = Some("3".into());
    resumed.media.push(extra);
    let a = s.reoffer(at(4), &resumed);
    assert!(matches!(
        a[0],
        LineAction::Keep {
            reanchor: true,
            codec: None,
            ..
        }
    ));
    assert!(matches!(
        &a[1],
        LineAction::Keep { reanchor: true, codec: Some(spec), .. }
            if spec.codecs == [(8, crate::media::codec::CodecKind::Pcma)]
    ));
    assert!(matches!(&a[2], LineAction::Start { index: 2, file, .. } if file == "stream-3.wav"));
    // c=0.0.0.0 hold with no direction (BroadWorks); line 2 back to PCMU
    let mut zero = base.clone();
    for m in &mut zero.media {
        m.direction = Direction::SendRecv;
        m.connection = Some("0.0.0.0".parse().unwrap());
    }
    s.reoffer(at(6), &zero);
    assert_eq!(
        kinds(&s),
        [
            "paused:1",
            "paused:2",
            "resumed:1",
            "codec-changed:2",
            "resumed:2",
            "stream-added:3",
            "paused:1",
            "codec-changed:2",
            "paused:2"
        ]
    );
}

#[test]
fn avaya_metadata_update_reattributes_and_logs_joins() {
    let scen = include_str!("../../tests/fixtures/corpus/avaya-sbce-invite-update-bye.sipp.xml");
    // The INVITE's and the UPDATE's metadata, out of the SIPp scenario.
    let docs: Vec<&str> = scen
        .split("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        .skip(1)
        .filter_map(|d| {
            d.find("</recording>")
                .map(|e| &d[..e + "</recording>".len()])
        })
        .collect();
    assert!(docs.len() >= 2, "two metadata documents in the scenario");
    let body = include_str!("../../tests/fixtures/corpus/avaya-sbce-offer-body-dataMode.sip");
    let mut s = start(body);
    let snapshot_needed = s.apply_metadata(at(3), docs[1]);
    assert!(!snapshot_needed);
    let ks = kinds(&s);
    assert!(ks.contains(&"metadata-update".to_string()), "{ks:?}");
    assert!(ks.iter().any(|k| k == "participant-joined"), "{ks:?}");
    let meta = s.finish(at(9), 9000, Status::Complete, &BTreeMap::new());
    let callee = meta
        .participants
        .iter()
        .find(|p| p.aor.as_deref() == Some("sip:7204541001@10.64.110.32"))
        .expect("the real callee is listed");
    assert!(callee.labels.contains(&"20".to_string()), "{callee:?}");
    assert!(
        meta.participants
            .iter()
            .any(|p| p.aor.as_deref() == Some("sip:ASBCE@asbce.com")),
        "the placeholder stays in the history"
    );
}

#[test]
fn partial_update_without_a_base_asks_for_a_snapshot() {
    let raw = SIPP.replace("<datamode>complete</datamode>", "").replace(
        "Content-Type: application/rs-metadata+xml",
        "Content-Type: application/x-other",
    );
    let mut s = start(&raw);
    assert!(s.metadata.is_none());
    let partial = include_str!("../../tests/fixtures/corpus/ietf-rfc7865-partial-update.xml");
    assert!(s.apply_metadata(at(1), partial));
    let complete = include_str!("../../tests/fixtures/corpus/ietf-rfc7865-complete-snapshot.xml");
    assert!(!s.apply_metadata(at(2), complete));
}

#[test]
fn transfer_then_bye_logs_join_leave_and_keeps_everyone() {
    let basic =
        include_str!("../../tests/fixtures/corpus/ietf-rfc8068-basic-av-invite-complete.sip");
    let mut s = start(basic);
    let xml_of = |raw: &str| {
        let msg = parse(&corpus_request(raw, "s")).unwrap();
        String::from_utf8(crate::siprec::split_body(&msg).unwrap().1.unwrap()).unwrap()
    };
    s.apply_metadata(
        at(5),
        &xml_of(include_str!(
            "../../tests/fixtures/corpus/ietf-rfc8068-transfer-reinvite-partial.sip"
        )),
    );
    s.apply_metadata(
        at(9),
        &xml_of(include_str!(
            "../../tests/fixtures/corpus/ietf-rfc8068-bye-with-partial-metadata.sip"
        )),
    );
    let meta = s.finish(at(9), 9000, Status::Complete, &BTreeMap::new());
    let ks: Vec<_> = meta.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(ks.contains(&"participant-joined"), "{ks:?}");
    assert!(ks.contains(&"participant-left"), "{ks:?}");
    assert!(ks.contains(&"session-stopped"), "{ks:?}");
    assert_eq!(
        meta.participants.len(),
        3,
        "Alice, Bob and Carol: {:?}",
        meta.participants
    );
    assert_eq!(meta.streams.len(), 4);
}

/// A recording stores at most its caps of updates, bytes, events and
/// participants, and says which caps it reached.
#[test]
fn storage_caps_are_kept_and_reported() {
    let s = start(SIPP);
    let initial = s.kept_bytes; // the INVITE's metadata counts too
    let mut s = s.with_limits(Limits {
        updates: 3,
        bytes: initial + 1000,
        events: 4,
        participants: 2,
    });
    let t = Utc::now();
    let md = |n: usize| {
        format!(
            "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>partial</datamode>\
<participant participant_id='x{n}'><nameID aor='sip:{n}@h'><name>{}</name></nameID></participant></recording>",
            "n".repeat(2000)
        )
    };
    assert!(s.keep_update(400).is_some());
    assert!(s.keep_update(400).is_some());
    assert_eq!(s.keep_update(400), None, "bytes cap (1000)");
    assert_eq!(s.keep_update(10), Some("metadata-update-3.xml".into()));
    assert_eq!(s.keep_update(10), None, "updates cap (3)");
    for n in 0..10 {
        s.apply_metadata(t, &md(n));
    }
    let m = s.snapshot();
    assert!(m.events.len() <= 4, "{}", m.events.len());
    assert!(m.participants.len() <= 2 + 1, "{}", m.participants.len());
    assert!(m
        .participants
        .iter()
        .all(|p| p.name.as_ref().is_none_or(|n| n.chars().count() <= 512)));
    let mut reached = m.limits_reached.clone();
    reached.sort();
    assert_eq!(
        reached,
        [
            "events",
            "metadata-bytes",
            "metadata-updates",
            "participants"
        ]
    );
}

#[test]
fn a_stream_cut_short_makes_the_recording_truncated_and_only_playable_files_are_listed() {
    let s = start(SIPP);
    let files: Vec<String> = s.streams.values().map(|x| x.file.clone()).collect();
    assert_eq!(files.len(), 2);
    let report = |samples: u64, error: Option<&str>, playable: bool| StreamReport {
        stats: StreamStats {
            packets_received: samples / 160,
            samples_written: samples,
            sample_rate: 8000,
            error: error.map(str::to_string),
            ..StreamStats::default()
        },
        bytes: 44 + 2 * samples,
        playable,
    };
    // Both streams whole: complete, both listed.
    let whole = BTreeMap::from([
        (0, report(72_000, None, true)),
        (1, report(72_000, None, true)),
    ]);
    let meta = start(SIPP).finish(at(9), 9000, Status::Complete, &whole);
    assert_eq!(
        (meta.status.as_str(), meta.error.as_deref()),
        ("complete", None)
    );
    assert_eq!(meta.files.len(), 2);
    // The disk filled after 7 s on the first stream; the second's file
    // never got a header.
    let cut = BTreeMap::from([
        (
            0,
            report(56_000, Some("No space left on device (os error 28)"), true),
        ),
        (
            1,
            report(0, Some("No space left on device (os error 28)"), false),
        ),
    ]);
    let meta = s.finish(at(48), 48_000, Status::Complete, &cut);
    assert_eq!(meta.status, "truncated");
    let error = meta.error.clone().unwrap();
    assert!(
        error.contains(&format!("{}: No space left", files[0]))
            && error.contains(&format!("{}: No space left", files[1])),
        "{error}"
    );
    assert_eq!(meta.files.len(), 1, "the header-less file is not listed");
    let f = &meta.files[0];
    assert_eq!(
        (f.name.as_str(), f.duration_ms, f.sample_rate, f.bytes),
        (files[0].as_str(), 7000, 8000, 112_044)
    );
    assert_eq!(meta.streams[0].packets_received, 350);
    assert!(meta.streams.iter().all(|st| st.error.is_some()));
    assert!(
        meta.participants
            .iter()
            .all(|p| p.file.as_deref() != Some(files[1].as_str())),
        "nobody points at an unlisted file: {:?}",
        meta.participants
    );
}
