//! Filing, refusals and end status.

use super::*;
use crate::config::Config;
use crate::sip::core::Transport;
use crate::sip::message::parse;
use crate::siprec::read_offer;
use crate::testkit::corpus_request;
use chrono::TimeZone;

const ACME_GENESYS: &str =
    include_str!("../../../tests/fixtures/corpus/acme-sbc-genesys-record-invite-tcp.sip");

fn opening(cfg: &Config) -> Opening {
    let invite = parse(&corpus_request(ACME_GENESYS, "c-1")).unwrap();
    let offer = read_offer(&invite).unwrap();
    let peer = Peer {
        transport: Transport::Tcp,
        addr: "10.1.2.3:5060".parse().unwrap(),
        conn: Some(1),
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
    open(cfg, &peer, &invite, &offer, "rec-1".into(), now)
}

#[test]
fn a_session_starts_filed_with_its_source_ids_and_the_configured_formats() {
    let o = opening(&Config::default());
    assert!(o.record);
    assert_eq!(o.formats, [Format::Wav]);
    let m = &o.meta;
    assert_eq!(m.recording_id, "rec-1");
    assert_eq!(
        m.call_id,
        "13b4b541dc1b6078eaaa4ab84f52d094040@10.178.60.190"
    );
    assert_eq!(m.status, "recording");
    assert_eq!(m.started_at, "2026-11-23T12:00:00.000Z");
    assert_eq!(
        (m.source.as_str(), m.transport.as_str()),
        ("10.1.2.3:5060", "tcp")
    );
    assert_eq!(m.metadata_file.as_deref(), Some("metadata.xml"));
    assert!(m.record_dn.is_some(), "the Genesys record DN: {m:?}");
    assert!(m.correlation.contains_key("calluuid"), "{m:?}");
    assert!(m.direction.is_some());
    assert_eq!(m.rule, None);
}

#[test]
fn a_rule_decides_whether_to_record_and_in_which_formats() {
    let cfg: Config = Config::from_toml(
        r#"
[[rules]]
name = "from-sbc"
source = "10.0.0.0/8"
formats = ["ogg-opus"]

[[rules]]
name = "never"
enabled = false
"#,
        std::path::Path::new("test"),
    )
    .unwrap();
    let o = opening(&cfg);
    assert_eq!(o.meta.rule.as_deref(), Some("from-sbc"));
    assert_eq!(o.formats, [Format::OggOpus]);
    assert!(o.record);
    let mut other = cfg.clone();
    other.rules.remove(0);
    let o = opening(&other);
    assert_eq!(o.meta.rule.as_deref(), Some("never"));
    assert!(!o.record, "answered inactive, no files");
}

#[test]
fn each_end_has_its_status() {
    assert_eq!(end_status(EndReason::Bye).as_str(), "complete");
    assert_eq!(end_status(EndReason::Local).as_str(), "complete");
    assert_eq!(
        end_status(EndReason::SessionExpired).as_str(),
        "complete-session-expired"
    );
    assert_eq!(
        end_status(EndReason::AckTimeout).as_str(),
        "complete-no-ack"
    );
    assert_eq!(end_status(EndReason::Cancelled).as_str(), "cancelled");
    assert!(end_status(EndReason::Cancelled).is_unanswered());
    assert!(end_status(EndReason::Refused).is_unanswered());
    assert!(!end_status(EndReason::AckTimeout).is_unanswered());
}

fn answer(r: Refusal) -> (u16, &'static str, Option<u32>) {
    (r.code, r.reason, r.retry_after)
}

#[test]
fn a_failed_start_says_which_resource_ran_out_and_when_to_retry() {
    let io = std::io::Error::from_raw_os_error;
    assert_eq!(
        answer(StreamStartError::NoPort.refusal()),
        (503, "No Media Port Available", Some(5))
    );
    assert_eq!(
        answer(StreamStartError::NoDescriptors.refusal()),
        (503, "Out Of Descriptors", Some(10))
    );
    assert_eq!(
        answer(StartError::Incoming(io(libc::ENOSPC)).refusal()),
        (503, "Insufficient Storage", Some(60))
    );
    assert_eq!(
        answer(StartError::MetadataXml(io(libc::EDQUOT)).refusal()),
        (503, "Insufficient Storage", Some(60))
    );
    assert_eq!(
        answer(StartError::MetadataXml(io(libc::ENFILE)).refusal()),
        (503, "Out Of Descriptors", Some(10))
    );
    let dir = crate::store::DropError::Io {
        op: "creating",
        path: "/x".into(),
        source: io(libc::EMFILE),
    };
    assert_eq!(
        answer(StartError::Directory(dir).refusal()),
        (503, "Out Of Descriptors", Some(10))
    );
    // What needs an operator: 500 without Retry-After.
    assert_eq!(
        answer(StartError::Internal.refusal()),
        (500, "Cannot Store Recording", None)
    );
    assert_eq!(
        answer(StartError::Incoming(io(libc::EACCES)).refusal()),
        (500, "Cannot Store Recording", None)
    );
    let file = crate::media::recorder::RecorderError::Io {
        path: "/x/a.wav".into(),
        source: io(libc::ENOSPC),
    };
    assert_eq!(
        answer(StartError::Stream(StreamStartError::File(file)).refusal()),
        (503, "Insufficient Storage", Some(60))
    );
}

#[test]
fn media_goes_to_the_advertised_then_the_bound_then_the_routed_address() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let any = ip("0.0.0.0");
    let never = || -> Option<IpAddr> { panic!("no route needed") };
    assert_eq!(
        media_ip(Some(ip("192.0.2.1")), ip("10.0.0.1"), never),
        ip("192.0.2.1")
    );
    assert_eq!(media_ip(None, ip("10.0.0.1"), never), ip("10.0.0.1"));
    assert_eq!(media_ip(None, any, || Some(ip("10.0.0.9"))), ip("10.0.0.9"));
    assert_eq!(media_ip(None, any, || None), ip("127.0.0.1"));
}
