//! [`Metadata::apply`] over real call flows (hold, transfer, BYE, Avaya
//! UPDATE snapshots) and over every pair of corpus documents.

use crate::siprec::metadata::testutil::{
    aor_of_label, corpus, extract_all, parse_sample, participant, ALICE, BOB, CAROL,
};
use crate::siprec::metadata::{parse, Change, ChangeKind, DataMode, Metadata};

fn change(
    kind: ChangeKind,
    participant_id: Option<&str>,
    stream_id: Option<&str>,
    at: Option<&str>,
) -> Change {
    Change {
        kind,
        participant_id: participant_id.map(str::to_string),
        stream_id: stream_id.map(str::to_string),
        at: at.map(str::to_string),
    }
}

fn active_ids(md: &Metadata) -> Vec<&str> {
    md.active_participants().map(|p| p.id.as_str()).collect()
}

#[test]
fn rfc8068_hold_transfer_and_bye() {
    let mut state = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));

    // Hold: Alice's send list is emptied, Bob's is unchanged.
    let hold = parse_sample(corpus!("ietf-rfc8068-hold-reinvite-partial.sip"));
    let changes = state.apply(hold);
    assert_eq!(
        changes,
        [change(ChangeKind::SendChanged, Some(ALICE), None, None)]
    );
    let alice = participant(&state, ALICE);
    assert!(alice.send.is_empty());
    assert_eq!(
        alice.recv,
        ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
    );
    assert_eq!(alice.aor.as_deref(), Some("sip:alice@atlanta.com"), "kept");
    assert_eq!(alice.name.as_deref(), Some("Alice"), "kept");
    let bob = participant(&state, BOB);
    assert_eq!(
        bob.send,
        ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
    );
    assert!(bob.recv.is_empty());
    assert_eq!(
        state.sender_of_label("98").map(|p| p.id.as_str()),
        Some(BOB)
    );
    assert!(state.sender_of_label("96").is_none(), "Alice on hold");
    assert_eq!(state.streams.len(), 4);
    assert_eq!(state.groups.len(), 1);

    // Transfer: Carol joins, Alice leaves, Bob now receives Carol.
    let transfer = parse_sample(corpus!("ietf-rfc8068-transfer-reinvite-partial.sip"));
    let changes = state.apply(transfer);
    assert_eq!(
        changes,
        [
            change(
                ChangeKind::ParticipantLeft,
                Some(ALICE),
                None,
                Some("2013-12-16T23:41:07Z")
            ),
            change(
                ChangeKind::ParticipantJoined,
                Some(CAROL),
                None,
                Some("2013-12-16T23:41:07Z")
            ),
        ]
    );
    assert_eq!(active_ids(&state), [BOB, CAROL]);
    assert_eq!(
        state.sessions[0].sip_session_ids,
        ["3363127f0d084c10876dddd4f8e5eeb9;remote=2272bb7e70fe41dba0025ae9a26d54cf"]
    );
    let bob = participant(&state, BOB);
    assert_eq!(bob.aor.as_deref(), Some("sip:bob@biloxy.com"), "kept");
    assert_eq!(
        bob.recv,
        ["60JAJm9UTvik0Ltlih/Gzw==", "AcR5FUd3Edi8cACQJy/3JQ=="]
    );
    let carol = participant(&state, CAROL);
    assert_eq!(carol.aor.as_deref(), Some("sip:carol@example.com"));
    // Carol's stream ids are not defined by any <stream>: kept as they are.
    assert_eq!(
        carol.send,
        ["60JAJm9UTvik0Ltlih/Gzw==", "AcR5FUd3Edi8cACQJy/3JQ=="]
    );
    assert_eq!(state.streams.len(), 4);
    assert!(state.labels_sent_by(CAROL).is_empty());

    // BYE: the session stops; Bob leaves explicitly, Carol implicitly.
    let bye = parse_sample(corpus!("ietf-rfc8068-bye-with-partial-metadata.sip"));
    let changes = state.apply(bye);
    assert_eq!(
        changes,
        [
            change(
                ChangeKind::SessionStopped,
                None,
                None,
                Some("2010-12-16T23:41:07Z")
            ),
            change(
                ChangeKind::ParticipantLeft,
                Some(BOB),
                None,
                Some("2010-12-16T23:41:07Z")
            ),
            change(
                ChangeKind::ParticipantLeft,
                Some(CAROL),
                None,
                Some("2010-12-16T23:41:07Z")
            ),
        ]
    );
    assert_eq!(
        state.sessions[0].stop_time.as_deref(),
        Some("2010-12-16T23:41:07Z")
    );
    assert_eq!(state.active_participants().count(), 0);
    assert!(state
        .participants
        .iter()
        .all(|p| p.disassociate_time.is_some()));
    assert!(state
        .participant_session_assocs
        .iter()
        .all(|a| a.disassociate_time.is_some()));
    assert_eq!(state.participants.len(), 3);
}

#[test]
fn rfc7865_partial_disassociates_bob() {
    // In RFC 7865's examples srfB... is Bob and zSfP... is Paul.
    const BOB_7865: &str = ALICE;
    const PAUL_7865: &str = BOB;
    let mut state = parse_sample(corpus!("ietf-rfc7865-complete-snapshot.xml"));
    assert_eq!(active_ids(&state), [BOB_7865, PAUL_7865]);
    let update = parse_sample(corpus!("ietf-rfc7865-partial-update.xml"));
    // Bob (srfB... in RFC 7865) gets the time through his participant.
    assert_eq!(
        update.participants[0].disassociate_time.as_deref(),
        Some("2010-12-16T23:41:07Z")
    );
    let changes = state.apply(update);
    assert_eq!(
        changes,
        [change(
            ChangeKind::ParticipantLeft,
            Some(BOB_7865),
            None,
            Some("2010-12-16T23:41:07Z")
        )]
    );
    let bob = participant(&state, BOB_7865);
    assert_eq!(bob.aor.as_deref(), Some("sip:bob@biloxi.com"));
    assert_eq!(
        bob.disassociate_time.as_deref(),
        Some("2010-12-16T23:41:07Z")
    );
    // No association in the update: his send list stays.
    assert_eq!(
        bob.send,
        ["i1Pz3to5hGk8fuXl+PbwCw==", "UAAMm5GRQKSCMVvLyl4rFw=="]
    );
    assert_eq!(active_ids(&state), [PAUL_7865]);
    // Associated again with a new time: joined again.
    let rejoin = parse(
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>partial</datamode>\
         <participantsessionassoc participant_id='srfBElmCRp2QB23b7Mpk0w==' \
         session_id='hVpd7YQgRW2nD22h7q60JQ=='>\
         <associate-time>2010-12-16T23:50:00Z</associate-time>\
         </participantsessionassoc></recording>",
    )
    .expect("parses");
    assert_eq!(
        state.apply(rejoin),
        [change(
            ChangeKind::ParticipantJoined,
            Some(BOB_7865),
            None,
            Some("2010-12-16T23:50:00Z")
        )]
    );
    assert_eq!(active_ids(&state), [BOB_7865, PAUL_7865]);
}

#[test]
fn avaya_sbce_update_replaces_dummy_participant() {
    let all = extract_all(corpus!("avaya-sbce-invite-update-bye.sipp.xml"));
    let mut state = parse(all[0]).expect("INVITE metadata");
    assert_eq!(
        participant(&state, "abcdef12345678901234").aor.as_deref(),
        Some("sip:ASBCE@asbce.com")
    );
    let update = parse(all[1]).expect("UPDATE metadata");
    assert_eq!(update.datamode, DataMode::Complete);
    let changes = state.apply(update.clone());
    assert_eq!(
        changes,
        [
            change(ChangeKind::Snapshot, None, None, None),
            change(
                ChangeKind::StreamAdded,
                None,
                Some("63a24a2bc6e7c076d738"),
                None
            ),
            change(
                ChangeKind::ParticipantJoined,
                Some("6add855be46c6970e8fd"),
                None,
                Some("2017-02-13T12:54:36")
            ),
            change(
                ChangeKind::ParticipantLeft,
                Some("abcdef12345678901234"),
                None,
                None
            ),
        ]
    );
    assert_eq!(state, update, "a complete snapshot keeps nothing stale");
    let callee = state.sender_of_label("20").expect("sender of label 20");
    assert_eq!(callee.aor.as_deref(), Some("sip:7204541001@10.64.110.32"));
    assert_eq!(
        aor_of_label(&state, "10"),
        Some("sip:13035381001@10.64.110.65")
    );
    assert!(state.participants.iter().all(|p| !p
        .aor
        .as_deref()
        .unwrap_or_default()
        .contains("ASBCE")));
}

#[test]
fn complete_snapshot_after_transfer_reports_diffs() {
    let mut state = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));
    state.apply(parse_sample(corpus!(
        "ietf-rfc8068-hold-reinvite-partial.sip"
    )));
    state.apply(parse_sample(corpus!(
        "ietf-rfc8068-transfer-reinvite-partial.sip"
    )));
    assert_eq!(active_ids(&state), [BOB, CAROL]);
    let snapshot = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));
    let changes = state.apply(snapshot.clone());
    assert_eq!(
        changes,
        [
            change(ChangeKind::Snapshot, None, None, None),
            // Alice had left; the snapshot has her associated again.
            change(
                ChangeKind::ParticipantJoined,
                Some(ALICE),
                None,
                Some("2010-12-16T23:41:07Z")
            ),
            change(ChangeKind::SendChanged, Some(ALICE), None, None),
            // Carol is not in the snapshot.
            change(ChangeKind::ParticipantLeft, Some(CAROL), None, None),
        ]
    );
    assert_eq!(state, snapshot);
    assert_eq!(active_ids(&state), [ALICE, BOB]);
    // The same snapshot again changes nothing but the marker.
    assert_eq!(
        state.apply(snapshot),
        [change(ChangeKind::Snapshot, None, None, None)]
    );
}

#[test]
fn partial_upsert_rules() {
    let mut state = parse(
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>\
         <session session_id='c1'><start-time>T1</start-time></session>\
         <participant participant_id='p1'><nameID aor='sip:a@x'><name>A</name></nameID></participant>\
         <participantstreamassoc participant_id='p1'><send>s1</send><recv>s2</recv></participantstreamassoc>\
         <stream stream_id='s1' session_id='c1'><label>1</label></stream></recording>",
    )
    .expect("parses");
    let update = parse(
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>partial</datamode>\
         <participant participant_id='p1'><nameID aor='sip:a2@x'/></participant>\
         <participantstreamassoc participant_id='p2'/>\
         <stream stream_id='s1'><label>9</label></stream>\
         <stream stream_id='s3'><label>3</label></stream></recording>",
    )
    .expect("parses");
    assert!(!update.participants[0].has_stream_assoc);
    assert!(update.participants[1].has_stream_assoc);
    let changes = state.apply(update);
    assert_eq!(
        changes,
        [
            change(ChangeKind::StreamAdded, None, Some("s3"), None),
            change(ChangeKind::ParticipantJoined, Some("p2"), None, None),
        ]
    );
    let p1 = participant(&state, "p1");
    assert_eq!(p1.aor.as_deref(), Some("sip:a2@x"));
    assert_eq!(p1.name.as_deref(), Some("A"), "absent name kept");
    assert_eq!(
        (p1.send.as_slice(), p1.recv.as_slice()),
        (&["s1".to_string()][..], &["s2".to_string()][..])
    );
    assert_eq!(state.streams[0].label.as_deref(), Some("9"));
    assert_eq!(state.streams[0].session_id.as_deref(), Some("c1"), "kept");
    assert_eq!(state.sessions[0].start_time.as_deref(), Some("T1"));
    // An empty association: sends and receives nothing.
    let empty = parse(
        "<recording><datamode>partial</datamode>\
         <participantstreamassoc participant_id='p1'></participantstreamassoc></recording>",
    )
    .expect("parses");
    assert_eq!(
        state.apply(empty),
        [change(ChangeKind::SendChanged, Some("p1"), None, None)]
    );
    let p1 = participant(&state, "p1");
    assert!(p1.send.is_empty() && p1.recv.is_empty());
}

#[test]
fn session_stop_only_closes_its_own_participants() {
    let mut state = parse(
        "<recording><participant participant_id='a'/><participant participant_id='b'/>\
         <participant participant_id='c'/>\
         <participantsessionassoc participant_id='a' session_id='c1'/>\
         <participantsessionassoc participant_id='b' session_id='c2'/></recording>",
    )
    .expect("parses");
    let stop = parse(
        "<recording><datamode>partial</datamode>\
         <session session_id='c1'><stop-time>T9</stop-time></session></recording>",
    )
    .expect("parses");
    state.apply(stop);
    // a is in c1; c has no known session, so it counts as in c1 too.
    assert_eq!(active_ids(&state), ["b"]);
    assert_eq!(
        participant(&state, "a").disassociate_time.as_deref(),
        Some("T9")
    );
}

/// Every metadata document of every corpus file (lenient slicing: from
/// each root start tag to the end of the file).
fn corpus_docs() -> Vec<Metadata> {
    let files = [
        corpus!("acme-sbc-avaya-ucid-offer-body.sip"),
        corpus!("acme-sbc-carrier-invite-xacme-callid.sip"),
        corpus!("acme-sbc-genesys-record-invite-tcp.sip"),
        corpus!("acme-sbc-offer-body.sip"),
        corpus!("audiocodes-mediant-invite-tcp.sip"),
        corpus!("avaya-sbce-invite-update-bye.sipp.xml"),
        corpus!("avaya-sbce-offer-body-dataMode.sip"),
        corpus!("broadworks-pause-resume-reinvite.sipp.xml"),
        corpus!("cisco-cube-inactive-offer-body.sip"),
        corpus!("cisco-cube-ios16-invite-sparse-metadata.sip"),
        corpus!("cisco-cube-offer-body-gtd.sip"),
        corpus!("cisco-webex-broadworks-conference-update-hold.sipp.xml"),
        corpus!("drachtio-sipp-invite-reinvite-inactive-bye.sipp.xml"),
        corpus!("genesys-gvp-record-uri-headers-acme-body.sipp.xml"),
        corpus!("ietf-rfc7865-complete-snapshot.xml"),
        corpus!("ietf-rfc7865-partial-update.xml"),
        corpus!("ietf-rfc7865-schema.xsd"),
        corpus!("ietf-rfc7866-srs-requestsnapshot-update.sip"),
        corpus!("ietf-rfc8068-basic-av-invite-complete.sip"),
        corpus!("ietf-rfc8068-bye-with-partial-metadata.sip"),
        corpus!("ietf-rfc8068-hold-reinvite-partial.sip"),
        corpus!("ietf-rfc8068-mixed-participant-join-partial.sip"),
        corpus!("ietf-rfc8068-transfer-reinvite-partial.sip"),
        corpus!("intrado-viper-invite-tcp.sip"),
        corpus!("metaswitch-hold-reinvite-bye.sipp.xml"),
        corpus!("opensips-connectel-offer-body.sip"),
        corpus!("opensips-generated-invite-2.sip"),
        corpus!("opensips-generated-invite.sip"),
        corpus!("oracle-sbc-outbound-apkt.sipp.xml"),
        corpus!("sems-procomm-offer-body.sip"),
        corpus!("sipp-generated-invite.sip"),
        corpus!("sonus-sbc-offer-body.sip"),
    ];
    let mut docs = Vec::new();
    for text in files {
        for (i, _) in text.match_indices('<') {
            let rest = &text[i..];
            let starts_root = ["<recording", "<tns:recording", "<requestsnapshot"]
                .iter()
                .any(|p| rest.starts_with(p));
            if starts_root {
                if let Ok(md) = parse(rest) {
                    docs.push(md);
                }
            }
        }
    }
    docs
}

#[test]
fn merging_any_pair_of_corpus_documents_never_panics() {
    let docs = corpus_docs();
    assert!(docs.len() >= 40, "{} documents", docs.len());
    assert!(docs.iter().any(|d| d.is_snapshot_request));
    let no_duplicate_ids = |md: &Metadata| {
        md.participants
            .iter()
            .enumerate()
            .all(|(i, p)| !md.participants[..i].iter().any(|q| q.id == p.id))
    };
    for a in &docs {
        for b in &docs {
            let mut state = a.clone();
            let changes = state.apply(b.clone());
            assert!(no_duplicate_ids(&state));
            // A second application of the same document is a no-op,
            // apart from the snapshot marker.
            let again = state.clone();
            let second = state.apply(b.clone());
            assert_eq!(state, again);
            assert!(second.iter().all(|c| c.kind == ChangeKind::Snapshot));
            if b.datamode == DataMode::Complete && !b.is_snapshot_request {
                assert_eq!(&state, b);
                assert_eq!(changes[0].kind, ChangeKind::Snapshot);
            }
        }
    }
    // And everything in sequence onto one state.
    let mut state = Metadata::default();
    for d in &docs {
        state.apply(d.clone());
        assert!(no_duplicate_ids(&state));
    }
}
