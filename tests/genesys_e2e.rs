//! Genesys recording end to end, each a call driven over SIP against
//! `srs serve` with a DN directory and recording rules: the Record DN
//! (extension or trunk), record = source | dest, geo-location, a transfer
//! found by the second agent, and the corpus Genesys sample; queried
//! through the CLI and the HTTP API.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;

const DIRECTORY: &str = r#"
[[directory]]
dn = "7001"
kind = "extension"
geo_location = "paris"
site = "par-1"

[[directory]]
dn = "7002"
kind = "extension"
geo_location = "lyon"

[[directory]]
dn = "8800*"
kind = "trunk"
geo_location = "london"
"#;

fn metadata(agents: &[(&str, &str)], datamode: &str) -> String {
    let mut x = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">\r\n<datamode>{datamode}</datamode>\r\n<session session_id=\"s1\"></session>\r\n"
    );
    for (id, aor) in agents {
        x.push_str(&format!(
            "<participant participant_id=\"{id}\"><nameID aor=\"{aor}\"/></participant>\r\n<participantsessionassoc participant_id=\"{id}\" session_id=\"s1\"><associate-time>2026-11-23T10:00:00Z</associate-time></participantsessionassoc>\r\n"
        ));
    }
    if datamode == "complete" {
        x.push_str("<stream stream_id=\"st1\" session_id=\"s1\"><label>1</label></stream>\r\n<participantstreamassoc participant_id=\"p1\"><send>st1</send></participantstreamassoc>\r\n");
    }
    x.push_str("</recording>\r\n");
    x
}

/// A Genesys MSR record leg: INVITE with the record URI parameters.
struct Leg {
    sock: UdpSocket,
    srs: std::net::SocketAddr,
    call_id: String,
    to: String,
    cseq: u32,
}

impl Leg {
    fn send(&mut self, method: &str, ctype: Option<&str>, body: &str) -> u16 {
        self.cseq += 1;
        let me = self.sock.local_addr().unwrap();
        let ct = ctype
            .map(|c| format!("Content-Type: {c}\r\n"))
            .unwrap_or_default();
        let m = format!(
            "{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{method}{}\r\nFrom: <sip:genesys@127.0.0.1>;tag=g1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            self.cseq, self.to, self.call_id, self.cseq, body.len()
        );
        status(&final_response(&self.sock, self.srs, m.as_bytes()))
    }
}

fn record_leg(
    srs: std::net::SocketAddr,
    params: &str,
    headers: &str,
    call_id: &str,
    md: &str,
) -> Leg {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:1\r\na=sendonly\r\n";
    let body = siprec_body(sdp, md);
    let inv = format!(
        "INVITE sip:record=REC1@127.0.0.1;{params} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKinv\r\nFrom: <sip:genesys@127.0.0.1>;tag=g1\r\nTo: <sip:record=REC1@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:genesys@{me}>;+sip.src\r\nRequire: siprec\r\nUser-Agent: GVP MCP\r\n{headers}Content-Type: multipart/mixed;boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let ok = final_response(&sock, srs, inv.as_bytes());
    assert_eq!(status(&ok), 200);
    let mut leg = Leg {
        srs,
        call_id: call_id.into(),
        to: ok.header("To").unwrap().into(),
        cseq: 1,
        sock,
    };
    let me = leg.sock.local_addr().unwrap();
    let ack = format!(
        "ACK sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKack\r\nFrom: <sip:genesys@127.0.0.1>;tag=g1\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        leg.to
    );
    leg.sock.send_to(ack.as_bytes(), srs).unwrap();
    leg.cseq = 1;
    leg
}

fn server(rules: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("srs.toml");
    std::fs::write(&cfg, format!("{DIRECTORY}\n{rules}")).unwrap();
    (
        Server::start_with(&["--config", cfg.to_str().unwrap()]),
        dir,
    )
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["call_id"].as_str().unwrap().to_string())
        .collect()
}

/// CLI `srs list --json <filters>` -> Call-IDs.
fn cli_find(srs: &Server, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["list", "--json"];
    args.extend_from_slice(filters);
    ids(&serde_json::from_str(&srs.cli(&args)).unwrap())
}

/// HTTP `GET /api/v1/recordings?<query>` -> Call-IDs.
fn api_find(srs: &Server, query: &str) -> Vec<String> {
    let body = http_get(srs.http, &format!("/api/v1/recordings?{query}")).expect("API answers 200");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    ids(&v["recordings"])
}

const INBOUND: &str = "calluuid=UUID-IN-1;dn=7001;otherdn=88001234;ani=15551230000;dnis=18005550100;connid=0a1b;recorddn=7001";

#[test]
fn inbound_default_rule_files_under_the_agent_extension() {
    let (srs, _d) = server("");
    let md = metadata(
        &[("p1", "sip:7001@pbx"), ("p2", "sip:15551230000@carrier")],
        "complete",
    );
    let mut leg = record_leg(srs.sip, INBOUND, "", "in-1", &md);
    assert_eq!(leg.send("BYE", None, ""), 200);
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    assert_eq!(rec["record_dn"], "7001");
    assert_eq!(rec["record_dn_kind"], "extension");
    assert_eq!(rec["geo_location"], "paris");
    assert_eq!(rec["direction"], "inbound");
    assert_eq!(rec["correlation"]["calluuid"], "UUID-IN-1");
    assert_eq!(rec["correlation"]["connid"], "0a1b");
    assert_eq!(cli_find(&srs, &["--record-dn", "7001"]), ["in-1"]);
    assert!(cli_find(&srs, &["--record-dn", "88001234"]).is_empty());
    assert_eq!(api_find(&srs, "record_dn=7001"), ["in-1"]);
    assert_eq!(api_find(&srs, "geo=paris"), ["in-1"]);
    let one: serde_json::Value =
        serde_json::from_str(&http_get(srs.http, "/api/v1/recordings/in-1").unwrap()).unwrap();
    assert_eq!(one["record_dn"], "7001");
}

#[test]
fn record_dest_files_under_the_trunk_dn_and_its_geo_location() {
    let (srs, _d) = server("[[rules]]\nname = \"trunk-side\"\ndn = \"70*\"\nrecord = \"dest\"\n");
    let md = metadata(&[("p1", "sip:7001@pbx")], "complete");
    let mut leg = record_leg(srs.sip, INBOUND, "", "in-dest", &md);
    assert_eq!(leg.send("BYE", None, ""), 200);
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    assert_eq!(rec["record_dn"], "88001234");
    assert_eq!(rec["record_dn_kind"], "trunk");
    assert_eq!(rec["geo_location"], "london");
    assert_eq!(rec["rule"], "trunk-side");
    assert_eq!(cli_find(&srs, &["--record-dn", "88001234"]), ["in-dest"]);
    assert_eq!(api_find(&srs, "record_dn=88001234&geo=london"), ["in-dest"]);
}

#[test]
fn outbound_full_time_recording_with_the_trunk_dn_as_record_dn() {
    let (srs, _d) = server("");
    // Full-time recording on a Trunk Group DN: the client presents the
    // trunk DN as the Record DN; the calling number is the agent's own DN.
    let params = "calluuid=UUID-OUT-9;dn=88009999;otherdn=442071234567;ani=7001;dnis=442071234567;recorddn=88009999";
    let md = metadata(
        &[("p1", "sip:7001@pbx"), ("p2", "tel:+442071234567")],
        "complete",
    );
    let mut leg = record_leg(
        srs.sip,
        params,
        "X-Genesys-geo-location: emea\r\n",
        "out-1",
        &md,
    );
    assert_eq!(leg.send("BYE", None, ""), 200);
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    assert_eq!(rec["record_dn"], "88009999");
    assert_eq!(rec["record_dn_kind"], "trunk");
    assert_eq!(rec["direction"], "outbound");
    assert_eq!(
        rec["geo_location"], "london",
        "the directory's geo-location of the trunk"
    );
    for filters in [
        &["--record-dn", "88009999"][..],
        &["--ani", "7001"],
        &["--call-uuid", "uuid-out-9"],
        &["--dn", "442071234567"],
    ] {
        assert_eq!(cli_find(&srs, filters), ["out-1"], "{filters:?}");
    }
    assert_eq!(api_find(&srs, "record_dn=88009999"), ["out-1"]);
    assert_eq!(api_find(&srs, "ani=7001"), ["out-1"]);
    assert_eq!(api_find(&srs, "call_uuid=UUID-OUT-9"), ["out-1"]);
    // A DN missing from the directory is filed all the same.
    let params = "calluuid=UUID-OUT-10;dn=5550000;ani=5550000;recorddn=5550000";
    let mut leg = record_leg(srs.sip, params, "", "out-2", &md);
    assert_eq!(leg.send("BYE", None, ""), 200);
    srs.wait_recordings(2, Duration::from_secs(10));
    let found: serde_json::Value =
        serde_json::from_str(&srs.cli(&["list", "--json", "--record-dn", "5550000"])).unwrap();
    assert_eq!(found[0]["record_dn_kind"], "unknown");
}

#[test]
fn transfer_to_a_second_agent_is_found_by_its_dn_with_the_time() {
    let (srs, _d) = server("");
    let md = metadata(
        &[("p1", "sip:7001@pbx"), ("p2", "sip:15551230000@carrier")],
        "complete",
    );
    let mut leg = record_leg(srs.sip, INBOUND, "", "xfer-1", &md);
    std::thread::sleep(Duration::from_millis(300));
    // Metadata-only UPDATE: agent 7002 joins (partial update).
    let update = metadata(&[("p3", "sip:7002@pbx")], "partial");
    assert_eq!(
        leg.send("UPDATE", Some("application/rs-metadata+xml"), &update),
        200
    );
    assert_eq!(leg.send("BYE", None, ""), 200);
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    let joined: Vec<&serde_json::Value> = rec["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "participant-joined" && e["aor"] == "sip:7002@pbx")
        .collect();
    assert_eq!(joined.len(), 1, "{:#}", rec["events"]);
    let at = chrono::DateTime::parse_from_rfc3339(joined[0]["at"].as_str().unwrap()).unwrap();
    let start = chrono::DateTime::parse_from_rfc3339(rec["started_at"].as_str().unwrap()).unwrap();
    let ms = (at - start).num_milliseconds();
    assert!(
        (250..2000).contains(&ms),
        "transfer logged {ms} ms into the call"
    );
    assert_eq!(cli_find(&srs, &["--dn", "7002"]), ["xfer-1"]);
    assert_eq!(api_find(&srs, "dn=7002"), ["xfer-1"]);
    assert_eq!(cli_find(&srs, &["--participant", "7002@"]), ["xfer-1"]);
}

#[test]
fn corpus_genesys_sample_yields_its_record_dn_and_calluuid() {
    let (srs, _d) = server("");
    let raw = std::fs::read_to_string(
        manifest_dir().join("tests/fixtures/corpus/acme-sbc-genesys-record-invite-tcp.sip"),
    )
    .unwrap();
    let req = srs::testkit::corpus_request(&raw, "genesys-corpus");
    let inv = srs::sip::message::parse(&req).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ok = final_response(&sock, srs.sip, &req);
    let bye = bye_for(&sock, &inv, &ok, 9);
    sock.send_to(bye.as_bytes(), srs.sip).unwrap();
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    assert_eq!(rec["record_dn"], "6325883654");
    assert_eq!(
        rec["correlation"]["calluuid"],
        "01PEP83ES8B0FC7QD151Q2LAES00022M"
    );
    assert_eq!(
        cli_find(&srs, &["--call-uuid", "01PEP83ES8B0FC7QD151Q2LAES00022M"]).len(),
        1
    );
}

#[test]
fn a_rule_can_decline_to_record_and_nothing_is_left() {
    let (srs, _d) =
        server("[[rules]]\nname = \"no-test-lines\"\ndnis = \"1800555*\"\nenabled = false\n");
    let md = metadata(&[("p1", "sip:7001@pbx")], "complete");
    let mut leg = record_leg(srs.sip, INBOUND, "", "skip-1", &md);
    // Metadata updates of a session not recorded are kept nowhere (they
    // were once written relative to the server's working directory).
    let update = metadata(&[("p1", "sip:7001@pbx")], "partial");
    assert_eq!(
        leg.send("UPDATE", Some("application/rs-metadata+xml"), &update),
        200
    );
    assert_eq!(leg.send("BYE", None, ""), 200, "answered cleanly");
    std::thread::sleep(Duration::from_millis(500));
    assert!(srs.list_json().is_empty(), "no recording");
    let incoming: Vec<_> = std::fs::read_dir(srs.recordings.join(".incoming"))
        .map(|d| d.collect())
        .unwrap_or_default();
    assert!(incoming.is_empty(), "no files: {incoming:?}");
    let stray: Vec<_> = std::fs::read_dir(srs.workdir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(stray.is_empty(), "nothing written elsewhere: {stray:?}");
}
