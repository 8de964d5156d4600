//! Every dialect of the corpus read into the model: who sends on which
//! label, the model fields, and vendor extension data.

use super::MAX_EXTENSION_XML;
use crate::siprec::metadata::testutil::{
    aor_of_label, corpus, extract_all, labels, parse_sample, participant, BOB, CS,
};
use crate::siprec::metadata::xml::{build_tree, Mode};
use crate::siprec::metadata::{parse, DataMode, ParticipantSessionAssoc};

#[test]
fn rfc7865_complete_snapshot() {
    let md = parse_sample(corpus!("ietf-rfc7865-complete-snapshot.xml"));
    assert_eq!(md.datamode, DataMode::Complete);
    assert_eq!(md.sessions.len(), 1);
    assert_eq!(md.sessions[0].id, "hVpd7YQgRW2nD22h7q60JQ==");
    assert_eq!(
        md.sessions[0].sip_session_ids,
        ["ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2"]
    );
    assert_eq!(md.participants.len(), 2);
    let bob = participant(&md, "srfBElmCRp2QB23b7Mpk0w==");
    assert_eq!(bob.aor.as_deref(), Some("sip:bob@biloxi.com"));
    assert_eq!(bob.name.as_deref(), Some("Bob"));
    assert_eq!(
        bob.send,
        ["i1Pz3to5hGk8fuXl+PbwCw==", "UAAMm5GRQKSCMVvLyl4rFw=="]
    );
    assert_eq!(
        bob.recv,
        ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
    );
    let paul = participant(&md, "zSfPoSvdSDCmU3A3TRDxAw==");
    assert_eq!(paul.aor.as_deref(), Some("sip:Paul@biloxi.com"));
    assert_eq!(paul.name.as_deref(), Some("Paul"));
    assert_eq!(labels(&md), ["96", "97", "98", "99"]);
    assert!(md
        .streams
        .iter()
        .all(|s| s.session_id.as_deref() == Some("hVpd7YQgRW2nD22h7q60JQ==")));
    // sender_of_label agrees with participantstreamassoc for every label.
    for (label, who) in [("96", bob), ("97", bob), ("98", paul), ("99", paul)] {
        assert_eq!(md.sender_of_label(label), Some(who), "label {label}");
    }
    assert_eq!(md.labels_sent_by(&bob.id), ["96", "97"]);
    assert_eq!(md.labels_sent_by(&paul.id), ["98", "99"]);
    assert!(md.labels_sent_by("nobody").is_empty());
    assert!(md.sender_of_label("100").is_none());
}

#[test]
fn rfc7865_partial_update() {
    let md = parse_sample(corpus!("ietf-rfc7865-partial-update.xml"));
    assert_eq!(md.datamode, DataMode::Partial);
    assert_eq!(md.participants.len(), 1);
    assert_eq!(
        md.participants[0].aor.as_deref(),
        Some("sip:bob@biloxi.com")
    );
    assert!(md.streams.is_empty());
}

#[test]
fn opensips_generated_invite() {
    let md = parse_sample(corpus!("opensips-generated-invite.sip"));
    let alice = md.sender_of_label("1").expect("sender of label 1");
    assert_eq!(alice.aor.as_deref(), Some("sip:alice@127.0.0.1:5070"));
    assert_eq!(alice.name.as_deref(), Some("Alice"));
    assert_eq!(aor_of_label(&md, "0"), Some("sip:bob@127.0.0.1:5060"));
    assert_eq!(md.sender_of_label("0").and_then(|p| p.name.clone()), None);
    assert_eq!(md.labels_sent_by(&alice.id), ["1"]);
    assert_eq!(md.sessions[0].sip_session_ids, ["1-18797@127.0.0.1"]);
    // The second capture carries the same metadata.
    let md2 = parse_sample(corpus!("opensips-generated-invite-2.sip"));
    assert_eq!(aor_of_label(&md2, "1"), Some("sip:alice@127.0.0.1:5070"));
}

#[test]
fn sipp_generated_invite() {
    let md = parse_sample(corpus!("sipp-generated-invite.sip"));
    assert_eq!(aor_of_label(&md, "1"), Some("sip:alice@example.com"));
    assert_eq!(aor_of_label(&md, "2"), Some("sip:bob@example.com"));
    assert_eq!(
        md.sessions[0].start_time.as_deref(),
        Some("2024-01-01T10:00:00Z")
    );
}

#[test]
fn acme_sbc_legacy_layout() {
    let md = parse_sample(corpus!("acme-sbc-offer-body.sip"));
    assert_eq!(md.sessions.len(), 1);
    assert_eq!(md.sessions[0].id, "AavRXwIIQj1Q39eJulTipQ==");
    assert_eq!(md.participants.len(), 2);
    assert_eq!(
        aor_of_label(&md, "16777227"),
        Some("sip:9000@192.168.50.102")
    );
    assert_eq!(
        aor_of_label(&md, "16777228"),
        Some("sip:1002@192.168.50.10")
    );
    let p = participant(&md, "EbccNyypRlFYXTm4iw8hxw==");
    assert_eq!(p.name.as_deref(), Some("1002"));
    assert_eq!(md.labels_sent_by(&p.id), ["16777228"]);
    assert_eq!(md.streams[0].id, "Q4O8SGLQSilXHUGQX2zd8Q==");
    assert_eq!(
        md.streams[0].session_id.as_deref(),
        Some("AavRXwIIQj1Q39eJulTipQ==")
    );
}

#[test]
fn acme_sbc_avaya_ucid() {
    let md = parse_sample(corpus!("acme-sbc-avaya-ucid-offer-body.sip"));
    assert_eq!(md.participants.len(), 2);
    assert_eq!(
        aor_of_label(&md, "201835599"),
        Some("sip:31624895902@10.10.128.62")
    );
    assert_eq!(
        aor_of_label(&md, "201835600"),
        Some("sip:33187164021@sip.webhelpgroupe.lan")
    );
}

#[test]
fn audiocodes_legacy_aor_without_scheme() {
    let md = parse_sample(corpus!("audiocodes-mediant-invite-tcp.sip"));
    assert_eq!(md.participants.len(), 2);
    let caller = md.sender_of_label("1").expect("sender of label 1");
    assert_eq!(caller.id, "+18888888888");
    assert_eq!(caller.aor.as_deref(), Some("+18888888888@fakeip.com"));
    assert_eq!(caller.name, None);
    assert_eq!(caller.recv, ["00000001-2d1c-00b6-d16f-0000000004e4"]);
    assert_eq!(aor_of_label(&md, "2"), Some("+17777777777@fakeip.com"));
    assert_eq!(md.sessions[0].id, "0000-0000-0000-0000-bf41fa8f111f3e43");
}

#[test]
fn cisco_cube_interleaved() {
    let md = parse_sample(corpus!("cisco-cube-offer-body-gtd.sip"));
    assert_eq!(md.participants.len(), 2);
    let p7301 = md.sender_of_label("1").expect("sender of label 1");
    assert_eq!(p7301.aor.as_deref(), Some("sip:7301@35.162.237.204"));
    assert_eq!(p7301.name, None);
    let p7300 = md.sender_of_label("2").expect("sender of label 2");
    assert_eq!(p7300.aor.as_deref(), Some("sip:7300@35.162.237.204"));
    assert_eq!(p7300.name.as_deref(), Some("7300"));
    let s = &md.sessions[0];
    assert_eq!(
        s.sip_session_ids,
        ["e9fffff2020a598b86962867715db0cf;remote=cd0f7093d62c5f0697098fd69a4aa57b"]
    );
    assert_eq!(s.start_time.as_deref(), Some("2017-06-23T12:16:06.040Z"));
}

#[test]
fn cisco_cube_inactive_empty_assocs() {
    let md = parse_sample(corpus!("cisco-cube-inactive-offer-body.sip"));
    assert_eq!(md.participants.len(), 2);
    assert_eq!(
        md.participants[1].aor.as_deref(),
        Some("sip:+972546136443@192.168.10.140")
    );
    assert!(md
        .participants
        .iter()
        .all(|p| p.send.is_empty() && p.recv.is_empty()));
    assert_eq!(labels(&md), ["1", "2"]);
    assert!(md.sender_of_label("1").is_none());
}

#[test]
fn cisco_cube_sparse_session_only() {
    let md = parse_sample(corpus!("cisco-cube-ios16-invite-sparse-metadata.sip"));
    assert_eq!(md.sessions.len(), 1);
    assert!(md.participants.is_empty() && md.streams.is_empty());
}

#[test]
fn sonus_prefixed_blank_name() {
    let md = parse_sample(corpus!("sonus-sbc-offer-body.sip"));
    assert_eq!(md.datamode, DataMode::Complete);
    assert_eq!(md.participants.len(), 2);
    let ext = md.sender_of_label("2").expect("sender of label 2");
    assert_eq!(ext.aor.as_deref(), Some("2249888500@172.16.198.55"));
    assert_eq!(ext.name.as_deref(), Some("Extension 8500"));
    let other = md.sender_of_label("1").expect("sender of label 1");
    assert_eq!(other.aor.as_deref(), Some("2249888012@172.16.195.72"));
    assert_eq!(other.name, None, "blank <name> is None");
    assert_eq!(
        md.sessions[0].start_time.as_deref(),
        Some("1970-05-13T03:29:05Z")
    );
}

#[test]
fn avaya_sbce_camel_case_datamode() {
    let md = parse_sample(corpus!("avaya-sbce-offer-body-dataMode.sip"));
    assert_eq!(md.datamode, DataMode::Complete);
    assert_eq!(md.sessions[0].id, "00FA0800705D4C5DCAAC41");
    assert_eq!(md.participants.len(), 2);
    assert_eq!(
        aor_of_label(&md, "10"),
        Some("sip:9878942259@212.188.68.145")
    );
    assert_eq!(aor_of_label(&md, "20"), Some("sip:ASBCE@asbce.com"));
}

#[test]
fn avaya_sbce_sipp_invite_and_update() {
    let all = extract_all(corpus!("avaya-sbce-invite-update-bye.sipp.xml"));
    assert_eq!(all.len(), 2);
    let invite = parse(all[0]).expect("INVITE metadata");
    assert_eq!(invite.participants.len(), 2);
    assert_eq!(
        aor_of_label(&invite, "10"),
        Some("sip:13035381001@10.64.110.65")
    );
    // stream_id="" for label 20: nobody sends on it.
    assert_eq!(invite.streams[1].id, "");
    assert!(invite.sender_of_label("20").is_none());
    let update = parse(all[1]).expect("UPDATE metadata");
    assert_eq!(
        aor_of_label(&update, "20"),
        Some("sip:7204541001@10.64.110.32")
    );
}

#[test]
fn opensips_connectel_no_assocs() {
    let md = parse_sample(corpus!("opensips-connectel-offer-body.sip"));
    assert_eq!(md.participants.len(), 2);
    assert_eq!(
        md.participants[0].name.as_deref(),
        Some("test_user;lang=en-US;id=22")
    );
    assert_eq!(
        md.participants[1].aor.as_deref(),
        Some("sip:0760516936@sip-cust1.connectel.io")
    );
    assert_eq!(labels(&md), ["1", "2"]);
    assert!(md.sender_of_label("1").is_none());
}

#[test]
fn sems_wrapped_attributes() {
    let md = parse_sample(corpus!("sems-procomm-offer-body.sip"));
    assert_eq!(
        aor_of_label(&md, "a_leg"),
        Some("sip:016190200@87.252.209.116")
    );
    let b = md.sender_of_label("b_leg").expect("sender of b_leg");
    assert_eq!(b.aor.as_deref(), Some("Extension-016190619@speechpath.ie"));
    assert_eq!(b.name.as_deref(), Some("Speechpath-Main-Line 016190619"));
    assert_eq!(
        md.streams[0].session_id.as_deref(),
        Some("ho9aUhEQTRS+31th7sHStA==")
    );
}

#[test]
fn intrado_mixed_stream_and_unknown_children() {
    let md = parse_sample(corpus!("intrado-viper-invite-tcp.sip"));
    assert_eq!(md.participants.len(), 1);
    let p = md.sender_of_label("1").expect("sender of label 1");
    assert_eq!(p.aor.as_deref(), Some("4058327108@10.105.190.136:5060"));
    assert_eq!(p.name, None);
    assert_eq!(p.send, p.recv);
    assert_eq!(
        md.sessions[0].start_time.as_deref(),
        Some("2022-07-21T12:36:06-06:00")
    );
}

#[test]
fn metaswitch_mixed_stream_first_sender() {
    let md = parse_sample(corpus!("metaswitch-hold-reinvite-bye.sipp.xml"));
    assert_eq!(md.participants.len(), 2);
    assert_eq!(
        md.streams[0].session_id.as_deref(),
        Some("+zzFbuKREeanqeyezQV3BA==")
    );
    // Both participants send on the one mixed stream: the first is returned.
    assert_eq!(aor_of_label(&md, "1"), Some("7602922411"));
    assert_eq!(md.labels_sent_by("+zzISOKREeanqeyezQV3BA=="), ["1"]);
}

#[test]
fn broadworks_sipp_first_invite() {
    let md = parse_sample(corpus!("broadworks-pause-resume-reinvite.sipp.xml"));
    assert_eq!(md.datamode, DataMode::Complete);
    assert_eq!(md.sessions.len(), 1);
    assert_eq!(
        md.sessions[0].id,
        "urn:uuid:139ff134-7094-4ea9-a4a4-73f0c45e6a23"
    );
    assert_eq!(
        md.sessions[0].start_time.as_deref(),
        Some("2018-06-26T17:48:23+00:00")
    );
    assert_eq!(md.participants.len(), 2);
    let p = md.sender_of_label("1").expect("sender of label 1");
    assert_eq!(p.aor.as_deref(), Some("sip:8638254725"));
    assert_eq!(p.send, ["urn:uuid:dc51a81b-aebc-4a09-8f8b-75c13ec5a4fb"]);
    assert_eq!(
        md.participants[1].aor.as_deref(),
        Some("sip:+19015783200@broadcore.com;user=phone")
    );
    assert_eq!(md.streams.len(), 1);
    assert_eq!(
        md.labels_sent_by(&md.participants[1].id),
        Vec::<String>::new()
    );
}

#[test]
fn webex_broadworks_first_invite() {
    let md = parse_sample(corpus!(
        "cisco-webex-broadworks-conference-update-hold.sipp.xml"
    ));
    assert_eq!(
        aor_of_label(&md, "1"),
        Some("sip:yztpfzzvkq@44936045.int10.bcld.webex.com")
    );
    assert_eq!(
        aor_of_label(&md, "2"),
        Some("sip:7722@10.155.7.148;user=phone")
    );
}

#[test]
fn drachtio_and_oracle_templates() {
    let md = parse_sample(corpus!(
        "drachtio-sipp-invite-reinvite-inactive-bye.sipp.xml"
    ));
    assert_eq!(
        md.participants[0].aor.as_deref(),
        Some("sip:6001@localhost")
    );
    assert_eq!(labels(&md), ["1", "2"]);
    // SIPp placeholders break the attribute quoting; the rest still parses.
    let md = parse_sample(corpus!("oracle-sbc-outbound-apkt.sipp.xml"));
    assert_eq!(md.participants.len(), 2);
    assert_eq!(md.streams.len(), 1);
    assert_eq!(md.labels_sent_by("SQnUa0JNSChs6575MG20vQ=="), ["16777227"]);
}

#[test]
fn rfc8068_basic_av() {
    let md = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));
    assert_eq!(md.participants.len(), 2);
    assert_eq!(aor_of_label(&md, "96"), Some("sip:alice@atlanta.com"));
    assert_eq!(aor_of_label(&md, "97"), Some("sip:alice@atlanta.com"));
    assert_eq!(aor_of_label(&md, "98"), Some("sip:bob@biloxy.com"));
    assert_eq!(aor_of_label(&md, "99"), Some("sip:bob@biloxy.com"));
}

#[test]
fn rfc8068_hold_partial_assocs_only() {
    let md = parse_sample(corpus!("ietf-rfc8068-hold-reinvite-partial.sip"));
    assert_eq!(md.datamode, DataMode::Partial);
    assert_eq!(md.participants.len(), 2);
    let alice = participant(&md, "srfBElmCRp2QB23b7Mpk0w==");
    assert_eq!(alice.aor, None);
    assert!(alice.send.is_empty());
    assert_eq!(
        alice.recv,
        ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
    );
    let bob = participant(&md, "zSfPoSvdSDCmU3A3TRDxAw==");
    assert_eq!(
        bob.send,
        ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
    );
    assert!(bob.recv.is_empty());
}

#[test]
fn rfc8068_transfer_partial() {
    let md = parse_sample(corpus!("ietf-rfc8068-transfer-reinvite-partial.sip"));
    assert_eq!(md.datamode, DataMode::Partial);
    assert_eq!(
        md.sessions[0].sip_session_ids,
        ["3363127f0d084c10876dddd4f8e5eeb9;remote=2272bb7e70fe41dba0025ae9a26d54cf"]
    );
    let carol = participant(&md, "Atnm1ZRnOC6Pm5MApkrDzQ==");
    assert_eq!(carol.aor.as_deref(), Some("sip:carol@example.com"));
    assert_eq!(carol.name.as_deref(), Some("Carol"));
    assert_eq!(
        carol.send,
        ["60JAJm9UTvik0Ltlih/Gzw==", "AcR5FUd3Edi8cACQJy/3JQ=="]
    );
    // Bob appears only in an association.
    assert_eq!(participant(&md, "zSfPoSvdSDCmU3A3TRDxAw==").aor, None);
    assert!(md.streams.is_empty());
}

#[test]
fn rfc8068_mixed_join_and_bye() {
    let md = parse_sample(corpus!("ietf-rfc8068-mixed-participant-join-partial.sip"));
    assert_eq!(md.datamode, DataMode::Partial);
    assert_eq!(md.sessions[0].sip_session_ids.len(), 3);
    assert_eq!(
        md.sessions[0].sip_session_ids[0],
        "fa3b60f27e91441e84c55a9a0095f075;remote=a358d2b81a444a8c8fb05950cef331e7"
    );
    let carol = participant(&md, "Atnm1ZRnOC6Pm5MApkrDzQ==");
    assert_eq!(carol.send, ["i1Pz3to5hGk8fuXl+PbwCw=="]);
    assert_eq!(carol.send, carol.recv);

    let bye = parse_sample(corpus!("ietf-rfc8068-bye-with-partial-metadata.sip"));
    assert_eq!(bye.datamode, DataMode::Partial);
    assert_eq!(
        bye.sessions[0].stop_time.as_deref(),
        Some("2010-12-16T23:41:07Z")
    );
    assert!(bye.participants.is_empty());
}

#[test]
fn new_model_fields_rfc8068_basic() {
    let md = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));
    assert_eq!(md.groups.len(), 1);
    let g = &md.groups[0];
    assert_eq!(g.id, "7+OTCyoxTmqmqyA/1weDAg==");
    assert_eq!(g.associate_time.as_deref(), Some("2010-12-16T23:41:07Z"));
    let names: Vec<&str> = g.extensions.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["call-center", "mydata"]);
    assert_eq!(
        g.extensions[0].namespace.as_deref(),
        Some("urn:ietf:params:xml:ns:callcenter")
    );
    assert_eq!(
        g.extensions[0].text,
        [(
            "call-center/supervisor".to_string(),
            "sip:alice@atlanta.com".to_string()
        )]
    );
    assert!(g.extensions[1]
        .xml
        .starts_with("<mydata xmlns='http://example.com/my'>"));
    assert!(g.extensions[1].xml.ends_with("</mydata>"));
    assert_eq!(md.sessions[0].extensions.len(), 1);
    assert!(md.participants.iter().all(|p| p.extensions.len() == 1
        && p.has_stream_assoc
        && p.associate_time.as_deref() == Some("2010-12-16T23:41:07Z")
        && p.disassociate_time.is_none()));
    assert_eq!(md.participant_session_assocs.len(), 2);
    assert_eq!(md.participant_session_assocs[1].participant_id, BOB);
    assert_eq!(md.participant_session_assocs[1].session_id, CS);
    // <sessionrecordingassoc> is RFC 7865, not an extension.
    assert!(md.extensions.is_empty());
    assert!(!md.is_snapshot_request);
}

#[test]
fn legacy_times_mode_and_session_attribute() {
    let md = parse_sample(corpus!("acme-sbc-avaya-ucid-offer-body.sip"));
    let s = &md.streams[0];
    assert_eq!(s.mode.as_deref(), Some("separate"));
    assert_eq!(s.associate_time.as_deref(), Some("2020-03-27T13:56:05"));
    assert_eq!(s.disassociate_time, None);
    let p = &md.participants[0];
    assert_eq!(p.associate_time.as_deref(), Some("2020-03-27T13:56:05"));
    assert!(p.has_stream_assoc);
    assert_eq!(
        md.participant_session_assocs[0],
        ParticipantSessionAssoc {
            participant_id: "ARlTfnirTkxisET9jl8njg==".into(),
            session_id: "0rBXFi0CTBB0j8HyGBBrlg==".into(),
            associate_time: Some("2020-03-27T13:56:05".into()),
            disassociate_time: None,
        }
    );
    let bw = parse_sample(corpus!("broadworks-pause-resume-reinvite.sipp.xml"));
    assert_eq!(bw.streams[0].mode.as_deref(), Some("mixed"));
    assert_eq!(
        bw.groups[0].id,
        "urn:uuid:6219893c-d072-43d3-ba6c-8828cf7be472"
    );
    assert_eq!(bw.groups[0].extensions[0].name, "initiator");
}

#[test]
fn extension_values_acme_genesys_malformed() {
    let md = parse_sample(corpus!("acme-sbc-genesys-record-invite-tcp.sip"));
    let values = md.extension_values();
    let uri = values
        .iter()
        .find(|(k, _)| k == "request-uri")
        .map(|(_, v)| v.as_str())
        .expect("request-uri kept");
    assert!(uri.contains("recorddn=6325883654"), "{uri}");
    assert!(
        uri.starts_with("<sip:record=01PEP83ES8B0FC7QD151Q2LAES00022M_"),
        "{uri}"
    );
    assert!(values.contains(&("ucid".into(), "00473539660FF5A7".into())));
    let ext = &md.participants[0].extensions[0];
    assert_eq!(ext.name, "extensiondata");
    assert!(ext.text.contains(&(
        "header/value".into(),
        "wlss-9df06dac-AC565000-947B-5BFE-1ECF-88D28E4B0995-7094@10.28.70.121".into()
    )));
    assert!(ext.xml.starts_with("<extensiondata xmlns:apkt="));
    assert!(ext.xml.ends_with("</extensiondata>"));
    // The lenient pass escaped the raw '<', so the kept XML is well-formed.
    assert!(ext.xml.contains("<apkt:request-uri>&lt;sip:record="));
    assert!(build_tree(&ext.xml, Mode::Strict).is_ok());
}

#[test]
fn extension_values_vendors() {
    let sonus = parse_sample(corpus!("sonus-sbc-offer-body.sip"));
    assert!(sonus
        .extension_values()
        .contains(&("gcid".into(), "241205267".into())));
    let call_data = &sonus.groups[0].extensions[0];
    assert_eq!(call_data.name, "callData");
    assert_eq!(
        call_data.namespace.as_deref(),
        Some("urn:ietf:params:xml:ns:callData")
    );
    assert!(call_data
        .text
        .contains(&("callData/gcid".into(), "241205267".into())));
    assert!(call_data.text.contains(&(
        "callData/fromhdr".into(),
        "\"Extension 8500\" <sip:2249888500@172.16.198.55>;tag=SerryvK5ej0jc".into()
    )));

    let ucid = parse_sample(corpus!("acme-sbc-avaya-ucid-offer-body.sip"));
    let session_ext = &ucid.sessions[0].extensions[0];
    assert_eq!(
        session_ext.namespace.as_deref(),
        Some("urn:ietf:params:xml:ns:recording")
    );
    assert_eq!(
        session_ext.text[0],
        ("ucid".into(), "00FA081003B9CF5E7DF7E5;encoding=hex".into())
    );
    assert!(ucid.extension_values().contains(&(
        "request-uri".into(),
        "sip:33187164021@10.77.91.46:5060".into()
    )));

    // The AudioCodes sample carries no GenesysUUID (nor any extension).
    let ac = parse_sample(corpus!("audiocodes-mediant-invite-tcp.sip"));
    assert!(ac.extension_values().is_empty());
    // The documented AudioCodes form, with the prefix bound on the root.
    let md = parse(
        "<recording xmlns='urn:ietf:params:xml:ns:recording' xmlns:ac='http://AudioCodes'>\
         <participant id='p'><nameID aor='a@b'/>\
         <ac:GenesysUUID xmlns='urn:ietf:params:xml:ns:Genesys'>01ABCDEF</ac:GenesysUUID>\
         </participant></recording>",
    )
    .expect("parses");
    let e = &md.participants[0].extensions[0];
    assert_eq!(e.name, "GenesysUUID");
    assert_eq!(e.namespace.as_deref(), Some("http://AudioCodes"));
    assert_eq!(
        md.extension_values(),
        [("GenesysUUID".into(), "01ABCDEF".into())]
    );

    let bw = parse_sample(corpus!("broadworks-pause-resume-reinvite.sipp.xml"));
    let names: Vec<&str> = bw.extensions.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["recording", "extensiondata"]);
    assert!(bw.extensions[1].text.contains(&(
        "broadWorksRecordingMetadata/callID".into(),
        "callhalf-[call_id]:0".into()
    )));
    assert!(bw
        .extension_values()
        .contains(&("callID".into(), "callhalf-[call_id]:0".into())));

    let ms = parse_sample(corpus!("metaswitch-hold-reinvite-bye.sipp.xml"));
    assert!(ms
        .extension_values()
        .contains(&("dialedDigits".into(), "17602922410".into())));
    assert_eq!(
        ms.extensions[0].namespace.as_deref(),
        Some("urn:ietf:params:xml:ns:recording")
    );

    let intrado = parse_sample(corpus!("intrado-viper-invite-tcp.sip"));
    assert_eq!(
        intrado.participants[0]
            .extensions
            .iter()
            .map(|e| e.text.clone())
            .collect::<Vec<_>>(),
        [
            vec![("channel".to_string(), "SIP/911202-073e".to_string())],
            vec![("role".to_string(), "calling".to_string())]
        ]
    );
    let json = serde_json::to_value(&intrado).expect("json");
    assert_eq!(json["participants"][0]["extensions"][1]["name"], "role");
    assert!(json["participants"][0].get("has_stream_assoc").is_none());
}

#[test]
fn oversized_extension_falls_back_to_text() {
    let big = "x".repeat(10_000);
    let md = parse(&format!(
        "<recording><session id='s'><blob><a>{big}</a><b>é</b></blob></session></recording>"
    ))
    .expect("parses");
    let e = &md.sessions[0].extensions[0];
    assert!(e.xml.len() <= MAX_EXTENSION_XML);
    assert!(e.xml.chars().all(|c| c == 'x'));
    assert_eq!(e.text[1], ("blob/b".into(), "é".into()));
}
