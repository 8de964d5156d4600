//! [`parse`] as a whole: the lenient fallback, snapshot requests, what is
//! refused, and hostile input.

use super::testutil::{aor_of_label, corpus, extract, parse_sample};
use super::xml::{build_tree, Mode};
use super::{parse, DataMode, Metadata, MetadataError};

#[test]
fn acme_genesys_malformed_uses_fallback() {
    let xml = extract(corpus!("acme-sbc-genesys-record-invite-tcp.sip"));
    assert!(
        build_tree(xml, Mode::Strict).is_err(),
        "sample is not well-formed"
    );
    let md = parse(xml).expect("lenient fallback");
    assert_eq!(md.participants.len(), 2);
    assert_eq!(md.streams.len(), 4);
    let genesys = md.sender_of_label("1006644281").expect("sender");
    assert_eq!(genesys.aor.as_deref(), Some("sip:Genesys@10.28.70.121"));
    assert_eq!(genesys.name.as_deref(), Some("Genesys"));
    assert_eq!(md.labels_sent_by(&genesys.id), ["1006644281", "1006644283"]);
    assert_eq!(
        aor_of_label(&md, "1006644282"),
        Some("sip:record=01PEP83ES8B0FC7QD151Q2LAES00022M_2024-04-05_12-59-19@127.0.0.1")
    );
    assert_eq!(
        md.labels_sent_by("N+fijXBkQjFgPM5FhZLI9A=="),
        ["1006644282", "1006644284"]
    );
}

#[test]
fn genesys_gvp_broken_cdata_uses_fallback() {
    let xml = extract(corpus!("genesys-gvp-record-uri-headers-acme-body.sipp.xml"));
    assert!(build_tree(xml, Mode::Strict).is_err());
    let md = parse(xml).expect("lenient fallback");
    assert_eq!(md.participants.len(), 2);
    assert_eq!(
        aor_of_label(&md, "268749245"),
        Some("sip:Genesys@10.29.199.68")
    );
    assert_eq!(
        md.labels_sent_by("UaWEAnypTXljTotoD5TX5w=="),
        ["268749246", "268749248"]
    );
}

#[test]
fn requestsnapshot_is_a_snapshot_request() {
    let text = corpus!("ietf-rfc7866-srs-requestsnapshot-update.sip");
    let xml = &text[text.find("<?xml").expect("xml")..];
    let md = parse(xml).expect("snapshot request parses");
    assert!(md.is_snapshot_request);
    assert_eq!(
        md,
        Metadata {
            is_snapshot_request: true,
            ..Metadata::default()
        }
    );
    // Applying it changes nothing.
    let mut state = parse_sample(corpus!("ietf-rfc7865-complete-snapshot.xml"));
    let copy = state.clone();
    assert!(state.apply(md).is_empty());
    assert_eq!(state, copy);
}

#[test]
fn namespaces_case_and_order_are_ignored() {
    let xml = "<x:Recording xmlns:x='urn:ietf:params:xml:ns:recording:1'>\r\n\
        <x:participantStreamAssoc participant_id='p1'><x:send>s1</x:send></x:participantStreamAssoc>\r\n\
        <x:Stream stream_id='s1'\r\n\tsession_id='c1'><x:Label> L1 </x:Label></x:Stream>\r\n\
        <x:DataMode> PARTIAL </x:DataMode>\r\n\
        <x:participant participant_id='p1'><x:nameID aor='sip:a@b'><x:name> </x:name>\
        <x:name>Ann &amp; Co &#65;</x:name></x:nameID></x:participant></x:Recording>";
    let md = parse(xml).expect("parses");
    assert_eq!(md.datamode, DataMode::Partial);
    assert_eq!(md.participants.len(), 1);
    assert_eq!(md.participants[0].name.as_deref(), Some("Ann & Co A"));
    assert_eq!(aor_of_label(&md, "L1"), Some("sip:a@b"));
    assert_eq!(md.streams[0].session_id.as_deref(), Some("c1"));
}

#[test]
fn doctype_and_entities_are_not_expanded() {
    let xml = "<?xml version='1.0'?><!DOCTYPE r [<!ENTITY x 'boom'>]>\
        <recording><participant id='p'><nameID aor='&x;'/></participant></recording>";
    assert!(matches!(parse(xml), Err(MetadataError::Doctype)));
    // An undeclared entity without a DOCTYPE is dropped, never expanded.
    let md = parse("<recording><participant id='p'><name>a&x;b</name></participant></recording>")
        .expect("parses");
    assert_eq!(md.participants[0].name.as_deref(), Some("ab"));
}

#[test]
fn not_a_recording_root() {
    assert!(matches!(
        parse("<foo/>"),
        Err(MetadataError::NoRecordingRoot)
    ));
    assert!(matches!(parse(""), Err(MetadataError::NoRecordingRoot)));
    // Broken and with no recording root: the strict error is reported.
    let err = parse("<foo><bar></foo>").expect_err("broken");
    assert!(matches!(err, MetadataError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("at byte"), "{err}");
    // Broken but salvageable: the lenient pass keeps the participant.
    let md = parse("<recording><participant id='p'></recording").expect("salvaged");
    assert_eq!(md.participants[0].id, "p");
}

#[test]
fn serializes_to_json() {
    let md = parse_sample(corpus!("sipp-generated-invite.sip"));
    let json = serde_json::to_value(&md).expect("json");
    assert_eq!(json["datamode"], "complete");
    assert_eq!(json["participants"][0]["aor"], "sip:alice@example.com");
}

#[test]
fn garbage_truncated_and_hostile_input_never_panics() {
    let mut inputs: Vec<String> = [
        "",
        " ",
        "<",
        ">",
        "<<<<",
        "</recording>",
        "<recording",
        "<recording>",
        "<recording><",
        "<?xml",
        "<!--",
        "<![CDATA[",
        "<!DOCTYPE",
        "&",
        "&#x0;",
        "<recording>&#xFFFFFFFF;</recording>",
        "<recording a='1' a='2'/>",
        "<recording><stream stream_id=></stream></recording>",
        "\u{feff}<recording/>",
        "<r\u{e9}cording>é</r\u{e9}cording>",
        "\0\0\0",
        "<:/>",
        "</>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    inputs.push("<a>".repeat(10_000));
    inputs.push(format!("<recording>{}", "<participant>".repeat(10_000)));
    // Every prefix of a real sample, cut at char boundaries.
    let sample = extract(corpus!("acme-sbc-genesys-record-invite-tcp.sip"));
    for (i, _) in sample.char_indices().step_by(7) {
        inputs.push(sample[..i].to_string());
    }
    for input in &inputs {
        let _ = parse(input);
    }
    // A truncated document still yields what was read.
    let cut = &sample[..sample.find("<stream").expect("stream")];
    let md = parse(cut).expect("truncated document salvaged");
    assert_eq!(md.participants.len(), 2);
}
