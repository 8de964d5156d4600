//! Correlation, directory and rules on the Genesys corpus samples.

use super::*;
use crate::recording::Direction;
use crate::sip::message::parse;
use crate::siprec::read_offer;
use crate::testkit::corpus_request;
use std::collections::BTreeMap;

fn corr(raw: &str) -> BTreeMap<String, String> {
    let msg = parse(&corpus_request(raw, "g")).unwrap();
    let offer = read_offer(&msg).unwrap();
    correlation(&msg, offer.metadata.as_ref())
}

const ACME_GENESYS: &str =
    include_str!("../../tests/fixtures/corpus/acme-sbc-genesys-record-invite-tcp.sip");

/// The GVP record leg of the SIPp scenario, placeholders filled.
fn gvp_invite() -> String {
    let scen = include_str!(
        "../../tests/fixtures/corpus/genesys-gvp-record-uri-headers-acme-body.sipp.xml"
    );
    let at = scen.find("INVITE sip:").unwrap();
    let start = scen[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = scen[start..].find("]]>").unwrap() + start;
    scen[start..end]
        .replace("[service]", "recorder")
        .replace("[remote_ip]", "127.0.0.1")
        .replace("[remote_port]", "5060")
        .replace("[local_ip]", "127.0.0.1")
        .replace("[local_port]", "5070")
        .replace("[transport]", "UDP")
        .replace("[branch]", "z9hG4bK-gvp")
        .replace("[call_id]", "gvp-1")
        .replace("[call_number]", "1")
        .replace("[pid]", "1")
        .replace("[len]", "0")
}

#[test]
fn acme_genesys_sample_yields_record_dn_and_calluuid() {
    let c = corr(ACME_GENESYS);
    assert_eq!(c["recorddn"], "6325883654");
    assert_eq!(c["calluuid"], "01PEP83ES8B0FC7QD151Q2LAES00022M");
    assert_eq!(c["dn"], "6325883654");
    assert_eq!(c["otherdn"], "1992999001");
    assert_eq!(c["ani"], "6325883654");
    assert_eq!(c["dnis"], "8663738232");
    assert_eq!(c["connid"], "02c203701171b854");
    assert_eq!(c["media_id"], "01PEP83ES8B0FC7QD151Q2LAES00022M");
    assert_eq!(c["gvp_tenant_id"], "[Environment].record");
    assert_eq!(c["ucid"], "00473539660FF5A7", "Acme apkt:ucid");
    assert_eq!(c["cisco_gucid"], "00071136261712321959");
    assert!(c["uui"].starts_with("04FA08"), "Avaya UCID in User-to-User");
    // Filed under the presented Record DN by default; outbound (ANI is ours).
    let f = file(
        &[],
        &[],
        &Facts {
            correlation: &c,
            direction: direction(&c, &Directory::default()),
            ..Facts::default()
        },
    );
    assert_eq!(f.record_dn.as_deref(), Some("6325883654"));
    assert_eq!(
        f.record_dn_kind.as_deref(),
        Some("unknown"),
        "missing from the directory: filed anyway"
    );
    assert_eq!(f.direction, Direction::Outbound);
    assert!(f.record);
}

#[test]
fn gvp_record_uri_to_and_headers() {
    let c = corr(&gvp_invite());
    assert_eq!(c["calluuid"], "029TVUHRHKBA34546D51O2LAES0002JS");
    assert_eq!(
        c["recorddn"], "1992177021",
        "Request-URI wins over To's placeholder"
    );
    assert_eq!(c["agentid"], "ExampleCareService_Test4");
    assert_eq!(c["datetime"], "2024-07-25T19:19:59Z");
    assert_eq!(c["sipsappname"], "cl2-sips-ELR_1a");
    assert!(c["gvp_session_id"].starts_with("A8565000-5F6C-D09A-308B-72C19935A7E0"));
    assert_eq!(c["x_genesys_rm_application_dbid"], "108");
    assert_eq!(direction(&c, &Directory::default()), Direction::Inbound);
}

fn directory() -> Vec<DnEntry> {
    vec![
        DnEntry {
            dn: "1992177021".into(),
            kind: "extension".into(),
            geo_location: Some("paris".into()),
            site: None,
        },
        DnEntry {
            dn: "763*".into(),
            kind: "trunk".into(),
            geo_location: Some("london".into()),
            site: Some("lon-1".into()),
        },
    ]
}

#[test]
fn record_source_and_dest_with_the_directory() {
    let c = corr(&gvp_invite());
    let dir = directory();
    let facts = Facts {
        correlation: &c,
        direction: Direction::Inbound,
        ..Facts::default()
    };
    let f = file(&[], &dir, &facts);
    assert_eq!(
        (
            f.record_dn.as_deref(),
            f.record_dn_kind.as_deref(),
            f.geo_location.as_deref()
        ),
        (Some("1992177021"), Some("extension"), Some("paris")),
        "default: the agent extension and its geo-location"
    );
    let dest = vec![Rule {
        name: "trunk".into(),
        record: RecordSide::Dest,
        enabled: true,
        ..Rule::default()
    }];
    let f = file(&dest, &dir, &facts);
    assert_eq!(
        (
            f.record_dn.as_deref(),
            f.record_dn_kind.as_deref(),
            f.geo_location.as_deref(),
            f.rule.as_deref()
        ),
        (
            Some("7637176791"),
            Some("trunk"),
            Some("london"),
            Some("trunk")
        ),
        "record = dest: the trunk DN (pattern 763*) and its geo-location"
    );
}

#[test]
fn first_matching_rule_wins_and_can_disable_recording() {
    let c = corr(&gvp_invite());
    let rules = vec![
        Rule {
            name: "no-recording-for-tests".into(),
            dnis: Some("8008*".into()),
            direction: Some("outbound".into()),
            enabled: false,
            ..Rule::default()
        },
        Rule {
            name: "from-sbc".into(),
            source: Some("10.0.0.0/8".into()),
            vendor: Some("acme".into()),
            record: RecordSide::Dest,
            enabled: true,
            ..Rule::default()
        },
        Rule {
            name: "inbound-8008".into(),
            dnis: Some("8008*".into()),
            direction: Some("inbound".into()),
            enabled: false,
            ..Rule::default()
        },
    ];
    let facts = Facts {
        correlation: &c,
        direction: Direction::Inbound,
        source: Some("10.1.2.3".parse().unwrap()),
        user_agent: "Acme Packet SBC",
    };
    let f = file(&rules, &[], &facts);
    assert_eq!(f.rule.as_deref(), Some("from-sbc"));
    assert!(f.record);
    let facts = Facts {
        source: Some("192.0.2.1".parse().unwrap()),
        ..facts
    };
    let f = file(&rules, &[], &facts);
    assert_eq!(f.rule.as_deref(), Some("inbound-8008"));
    assert!(!f.record, "answered but not recorded");
}

#[test]
fn glob_and_cidr() {
    assert!(glob("7*", "7001") && glob("70?1", "7001") && glob("*", "") && !glob("7*", "8001"));
    assert!(glob("*00*1", "7001") && !glob("?", ""));
    assert!(in_cidr("10.1.2.3".parse().unwrap(), "10.0.0.0/8"));
    assert!(!in_cidr("11.1.2.3".parse().unwrap(), "10.0.0.0/8"));
    assert!(in_cidr("2001:db8::1".parse().unwrap(), "2001:db8::/32"));
    assert!(in_cidr("192.0.2.7".parse().unwrap(), "192.0.2.7"));
    assert!(!in_cidr("192.0.2.7".parse().unwrap(), "garbage"));
}

#[test]
fn other_vendors_ids() {
    let c = corr(include_str!(
        "../../tests/fixtures/corpus/sonus-sbc-offer-body.sip"
    ));
    assert!(c.contains_key("sonus_gcid"), "{c:?}");
    let c = corr(include_str!(
        "../../tests/fixtures/corpus/cisco-cube-ios16-invite-sparse-metadata.sip"
    ));
    assert!(
        c.contains_key("cisco_guid") && c.contains_key("session_id"),
        "{c:?}"
    );
    let c = corr(include_str!(
        "../../tests/fixtures/corpus/acme-sbc-carrier-invite-xacme-callid.sip"
    ));
    assert!(c.contains_key("acme_call_id"), "{c:?}");
}

#[test]
fn patterns_and_sources_are_read_once_at_load_and_match_as_before() {
    let cfg = crate::config::Config::from_toml(
        r#"
[[directory]]
dn = "70??"
kind = "extension"

[[rules]]
name = "typo"
source = "10.0.0/8"
dnis = "8008*"
"#,
        std::path::Path::new("test"),
    )
    .unwrap();
    let rule = &cfg.rules[0];
    assert_eq!(rule.dnis.as_ref().map(Glob::as_str), Some("8008*"));
    assert!(rule.dnis.as_ref().is_some_and(|g| g.matches("80081234")));
    // Text that is no network matches nothing, as it always did.
    let src = rule.source.as_ref().unwrap();
    assert_eq!(src.as_str(), "10.0.0/8");
    assert!(!src.contains("10.0.0.1".parse().unwrap()));
    assert!(Source::from(" 10.0.0.0/8").contains("10.9.9.9".parse().unwrap()));
    let dir = Directory::new(&cfg.directory);
    assert_eq!(
        dir.lookup("7001").map(|e| e.kind.as_str()),
        Some("extension")
    );
    assert!(dir.lookup("70011").is_none());
}
