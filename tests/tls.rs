//! SIP over TLS through `srs serve`: a recorded call whose signalling runs
//! over TLS decodes to the right tone on each stream, the 200 carries a
//! `sips:` Contact on the TLS port, the server's own BYE comes back over
//! the client's connection; TLS 1.2 and 1.3 both work (also with OpenSSL's
//! `s_client`, an independent implementation); with `client_ca` set only
//! clients with a certificate from that CA get in; bad TLS settings stop
//! the server with the setting named.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use srs::sip::message::{parse, Message, StreamFramer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls::{
    self,
    crypto::ring::default_provider,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, StreamOwned,
};

/// A CA and what it signed, as PEM files in a directory.
struct Pki {
    dir: tempfile::TempDir,
    ca_der: CertificateDer<'static>,
}

/// A certificate and its key, for a client.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    (cert, Issuer::new(p, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    (p.signed_by(&key, issuer).unwrap(), key)
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate.
    fn new() -> (Pki, Identity) {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, issuer) = ca("srs test CA");
        let (server, server_key) = leaf(&issuer, &["127.0.0.1", "localhost"]);
        let (client, client_key) = leaf(&issuer, &["recording-client.example"]);
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        // The chain as operators deploy it: leaf first, then the CA.
        std::fs::write(
            dir.path().join("srs.crt"),
            format!("{}{}", server.pem(), ca_cert.pem()),
        )
        .unwrap();
        std::fs::write(dir.path().join("srs.key"), server_key.serialize_pem()).unwrap();
        let id = Identity {
            chain: vec![client.der().clone()],
            key: client_key.serialize_der(),
        };
        (
            Pki {
                dir,
                ca_der: ca_cert.der().clone(),
            },
            id,
        )
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A config file enabling TLS on `port`, with mutual TLS if asked.
    fn config(&self, port: u16, mutual: bool) -> PathBuf {
        let mut text = format!(
            "[tls]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            self.path("srs.crt").display(),
            self.path("srs.key").display()
        );
        if mutual {
            text.push_str(&format!(
                "client_ca = \"{}\"\n",
                self.path("ca.pem").display()
            ));
        }
        let p = self.path(if mutual { "mtls.toml" } else { "tls.toml" });
        std::fs::write(&p, text).unwrap();
        p
    }
}

fn start_tls(pki: &Pki, mutual: bool) -> (Server, SocketAddr) {
    let cfg = pki.config(0, mutual);
    let srs = Server::start_with(&["--config", cfg.to_str().unwrap()]);
    let tls = srs.tls.expect("the TLS address in the listening line");
    (srs, tls)
}

/// A blocking SIP-over-TLS client.
struct Client {
    tls: StreamOwned<ClientConnection, TcpStream>,
    framer: StreamFramer,
    local: SocketAddr,
}

fn client_config(
    ca: &CertificateDer<'static>,
    version: &'static rustls::SupportedProtocolVersion,
    identity: Option<&Identity>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let b = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(id) => b
            .with_client_auth_cert(
                id.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.clone())),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

impl Client {
    fn connect(to: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<Client> {
        let tcp = TcpStream::connect(to)?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        let local = tcp.local_addr()?;
        let name = ServerName::IpAddress(to.ip().into());
        let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
        let mut tls = StreamOwned::new(conn, tcp);
        // Drive the handshake now, so that its failures show here.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Client {
            tls,
            framer: StreamFramer::new(),
            local,
        })
    }

    fn send(&mut self, msg: &str) -> std::io::Result<()> {
        self.tls.write_all(msg.as_bytes())?;
        self.tls.flush()
    }

    /// The next SIP message on the connection.
    fn recv(&mut self) -> std::io::Result<Message> {
        let mut buf = [0u8; 16384];
        loop {
            if let Some(m) = self.framer.next_message().unwrap() {
                return Ok(parse(&m).unwrap());
            }
            let n = self.tls.read(&mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.framer.push(&buf[..n]);
        }
    }

    /// The next final response (1xx skipped).
    fn final_response(&mut self) -> Message {
        loop {
            let m = self.recv().expect("a response");
            if status(&m) >= 200 {
                return m;
            }
        }
    }

    fn options(&mut self, to: SocketAddr) -> std::io::Result<Message> {
        let me = self.local;
        self.send(&format!(
            "OPTIONS sips:srs@{to} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKopt{}\r\nMax-Forwards: 70\r\nFrom: <sips:probe@{me}>;tag=o\r\nTo: <sips:srs@{to}>\r\nCall-ID: opt-{}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            me.port(), me.port()
        ))?;
        loop {
            let m = self.recv()?;
            if status(&m) >= 200 {
                return Ok(m);
            }
        }
    }
}

const METADATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="dGxzLXNlc3Npb24tMDE="><sipSessionID>tls-call</sipSessionID></session>
  <participant participant_id="cGFydC1hZ2VudC0wMDE="><nameID aor="sip:7001@pbx.example"/></participant>
  <participant participant_id="cGFydC1jdXN0LTAwMDE="><nameID aor="sip:+33123456789@carrier.example"/></participant>
  <stream stream_id="c3RyLWFnZW50LTAwMDE=" session_id="dGxzLXNlc3Npb24tMDE="><label>1</label></stream>
  <stream stream_id="c3RyLWN1c3QtMDAwMDE=" session_id="dGxzLXNlc3Npb24tMDE="><label>2</label></stream>
  <participantstreamassoc participant_id="cGFydC1hZ2VudC0wMDE="><send>c3RyLWFnZW50LTAwMDE=</send></participantstreamassoc>
  <participantstreamassoc participant_id="cGFydC1jdXN0LTAwMDE="><send>c3RyLWN1c3QtMDAwMDE=</send></participantstreamassoc>
</recording>
"#;

/// A SIPREC INVITE over TLS: two streams (labels 1 and 2) and metadata.
fn invite(c: &Client, to: SocketAddr, call_id: &str) -> String {
    let me = c.local;
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:1\r\na=sendonly\r\nm=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:2\r\na=sendonly\r\n";
    let body = siprec_body(sdp, METADATA);
    format!(
        "INVITE sips:srs@{to} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{call_id}\r\nMax-Forwards: 70\r\nFrom: <sips:src@{me}>;tag=s1\r\nTo: <sips:srs@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sips:src@{me}>;+sip.src\r\nRequire: siprec\r\nContent-Type: multipart/mixed;boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn in_dialog(c: &Client, to: SocketAddr, ok: &Message, method: &str, cseq: u32) -> String {
    let me = c.local;
    format!(
        "{method} sips:srs@{to} SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bK{method}{cseq}\r\nMax-Forwards: 70\r\nFrom: <sips:src@{me}>;tag=s1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        ok.header("To").unwrap(),
        ok.call_id().unwrap()
    )
}

/// Sends `secs` of 1000 Hz on the first port and 400 Hz on the second.
fn talk(ports: &[u16], packets: u64) {
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t0 = Instant::now();
    for i in 0..packets {
        if let Some(d) = (t0 + Duration::from_millis(20 * i)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(d);
        }
        for (k, (port, f)) in ports.iter().zip([1000.0, 400.0]).enumerate() {
            let p = srs::media::rtp::build(
                0,
                i as u16,
                (i * 160) as u32,
                0x100 + k as u32,
                &pcmu_tone(f, i * 160),
            );
            rtp.send_to(&p, ("127.0.0.1", *port)).unwrap();
        }
    }
}

fn answered_ports(ok: &Message) -> Vec<u16> {
    srs::siprec::sdp::parse_offer(&ok.body)
        .unwrap()
        .media
        .iter()
        .map(|m| m.port)
        .collect()
}

/// The tone heard in most 100 ms windows of a file.
fn main_tone(path: &Path) -> (Option<f64>, f64) {
    let (samples, rate) = read_wav(path);
    let w = tone_windows(&samples, rate, &[1000.0, 400.0]);
    let count = |f: f64| w.iter().filter(|t| **t == Some(f)).count();
    let best = if count(1000.0) > count(400.0) {
        1000.0
    } else {
        400.0
    };
    let share = count(best) as f64 / w.len().max(1) as f64;
    (Some(best).filter(|_| share > 0.0), share)
}

#[test]
fn a_call_signalled_over_tls_is_recorded_with_a_sips_contact() {
    let (pki, _) = Pki::new();
    let (srs, tls_addr) = start_tls(&pki, false);
    let mut c = Client::connect(
        tls_addr,
        client_config(&pki.ca_der, &rustls::version::TLS13, None),
    )
    .expect("TLS 1.3 handshake");
    c.send(&invite(&c, tls_addr, "tls-call-1")).unwrap();
    let ok = c.final_response();
    assert_eq!(status(&ok), 200, "{ok:?}");
    let contact = ok.header("Contact").unwrap();
    assert!(
        contact.starts_with(&format!("<sips:srs@127.0.0.1:{}", tls_addr.port())),
        "sips: Contact on the TLS port: {contact}"
    );
    let ports = answered_ports(&ok);
    assert_eq!(ports.len(), 2);
    let ack = in_dialog(&c, tls_addr, &ok, "ACK", 1);
    c.send(&ack).unwrap();
    talk(&ports, 100);
    c.send(&in_dialog(&c, tls_addr, &ok, "BYE", 2)).unwrap();
    assert_eq!(status(&c.final_response()), 200, "BYE answered over TLS");

    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    assert_eq!(rec["transport"], "tls");
    assert_eq!(rec["call_id"], "tls-call-1");
    let dir = srs.recordings.join(rec["path"].as_str().unwrap());
    for s in rec["streams"].as_array().unwrap() {
        assert_eq!(s["packets_received"], 100, "{s}");
    }
    let mut heard = Vec::new();
    for f in rec["files"].as_array().unwrap() {
        let file = f["name"].as_str().unwrap();
        let (tone, share) = main_tone(&dir.join(file));
        assert!(share >= 0.9, "{file}: {share}");
        heard.push((f["labels"][0].as_str().unwrap().to_string(), tone));
    }
    heard.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        heard,
        vec![("1".into(), Some(1000.0)), ("2".into(), Some(400.0))]
    );
}

#[test]
fn the_servers_bye_goes_back_over_the_tls_connection() {
    let (pki, _) = Pki::new();
    let (srs, tls_addr) = start_tls(&pki, false);
    let mut c = Client::connect(
        tls_addr,
        client_config(&pki.ca_der, &rustls::version::TLS12, None),
    )
    .expect("TLS 1.2 handshake");
    c.send(&invite(&c, tls_addr, "tls-call-2")).unwrap();
    let ok = c.final_response();
    assert_eq!(status(&ok), 200);
    c.send(&in_dialog(&c, tls_addr, &ok, "ACK", 1)).unwrap();
    talk(&answered_ports(&ok), 25);
    // SIGTERM: the server ends the session with its own BYE.
    unsafe { libc::kill(srs.child.id() as i32, libc::SIGTERM) };
    let bye = c.recv().expect("the server's BYE over TLS");
    assert!(
        matches!(&bye.start, srs::sip::message::StartLine::Request { .. })
            && bye.method() == Some(&srs::sip::message::Method::Bye),
        "{bye:?}"
    );
    let via = bye.header("Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/TLS 127.0.0.1:{}", tls_addr.port())),
        "{via}"
    );
    assert!(bye.header("Contact").unwrap().contains("sips:"));
    c.send(&ok_to(&bye)).unwrap();
    let rec = &srs.wait_recordings(1, Duration::from_secs(10))[0];
    assert_eq!(rec["transport"], "tls");
    assert_eq!(rec["status"], "complete");
}

#[test]
fn tls_1_2_and_1_3_both_work_also_with_openssl() {
    let (pki, _) = Pki::new();
    let (srs, tls_addr) = start_tls(&pki, false);
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut c = Client::connect(tls_addr, client_config(&pki.ca_der, v, None))
            .unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert_eq!(c.tls.conn.protocol_version(), Some(v.version));
        assert_eq!(status(&c.options(tls_addr).unwrap()), 200);
    }
    if !peers_available("tls_1_2_and_1_3_both_work_also_with_openssl", &["openssl"]) {
        return;
    }
    for flag in ["-tls1_2", "-tls1_3"] {
        let out = openssl_options(&pki, tls_addr, flag, None);
        assert!(out.contains("SIP/2.0 200 OK"), "openssl {flag}: {out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    }
    drop(srs);
}

/// Sends an OPTIONS through `openssl s_client` and returns what it printed.
fn openssl_options(pki: &Pki, to: SocketAddr, flag: &str, cert: Option<(&Path, &Path)>) -> String {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &to.to_string(), flag, "-CAfile"])
        .arg(pki.path("ca.pem"))
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1"]);
    if let Some((c, k)) = cert {
        cmd.arg("-cert").arg(c).arg("-key").arg(k);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let req = format!(
        "OPTIONS sips:srs@{to} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5099;branch=z9hG4bKossl{}\r\nMax-Forwards: 70\r\nFrom: <sips:probe@127.0.0.1>;tag=o\r\nTo: <sips:srs@{to}>\r\nCall-ID: openssl{flag}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        &flag[1..]
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(req.as_bytes()).unwrap();
    // Keep stdin open long enough for the answer, then close: s_client
    // exits at the end of its input.
    std::thread::sleep(Duration::from_millis(1000));
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn mutual_tls_lets_in_only_clients_with_a_certificate_from_the_ca() {
    let (pki, id) = Pki::new();
    let (srs, tls_addr) = start_tls(&pki, true);
    // A client certificate from the configured CA: in.
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut c = Client::connect(tls_addr, client_config(&pki.ca_der, v, Some(&id))).unwrap();
        assert_eq!(status(&c.options(tls_addr).unwrap()), 200, "{v:?}");
    }
    // No client certificate, or one from another CA: no SIP at all.
    let (_, stranger_issuer) = ca("another CA");
    let (stranger, stranger_key) = leaf(&stranger_issuer, &["stranger.example"]);
    let stranger = Identity {
        chain: vec![stranger.der().clone()],
        key: stranger_key.serialize_der(),
    };
    for (who, identity) in [("no certificate", None), ("another CA", Some(&stranger))] {
        for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
            // TLS 1.3 clients finish their side before the server has
            // checked their certificate: the refusal shows on first use.
            let refused = match Client::connect(tls_addr, client_config(&pki.ca_der, v, identity)) {
                Err(_) => true,
                Ok(mut c) => c.options(tls_addr).is_err(),
            };
            assert!(refused, "{who} over {v:?} got in");
        }
    }
    // OpenSSL with the client certificate: in.
    if peers_available(
        "mutual_tls_lets_in_only_clients_with_a_certificate_from_the_ca",
        &["openssl"],
    ) {
        let (client, client_key) = (pki.path("client.crt"), pki.path("client.key"));
        std::fs::write(&client, pem("CERTIFICATE", id.chain[0].as_ref())).unwrap();
        std::fs::write(&client_key, pem("PRIVATE KEY", &id.key)).unwrap();
        let out = openssl_options(&pki, tls_addr, "-tls1_3", Some((&client, &client_key)));
        assert!(out.contains("SIP/2.0 200 OK"), "{out}");
        let out = openssl_options(&pki, tls_addr, "-tls1_3", None);
        assert!(!out.contains("SIP/2.0 200 OK"), "{out}");
    }
    assert!(srs.log().contains("SIP/TLS handshake failed"));
    assert!(srs.list_json().is_empty());
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[test]
fn bad_tls_settings_stop_the_server_with_the_setting_named() {
    let (pki, _) = Pki::new();
    let run = |toml: &str| {
        let cfg = pki.path("bad.toml");
        std::fs::write(&cfg, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_srs"))
            .args([
                "serve",
                "--sip",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&cfg)
            .arg("--recordings")
            .arg(pki.path("drop"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{toml}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let crt = pki.path("srs.crt");
    let err = run(&format!("[tls]\ncert = \"{}\"\n", crt.display()));
    assert!(err.contains("tls.cert and tls.key go together"), "{err}");
    let err = run(&format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"/nonexistent/srs.key\"\n",
        crt.display()
    ));
    assert!(err.contains("/nonexistent/srs.key"), "{err}");
    // A key that does not match the certificate.
    let other = KeyPair::generate().unwrap();
    std::fs::write(pki.path("other.key"), other.serialize_pem()).unwrap();
    let err = run(&format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        crt.display(),
        pki.path("other.key").display()
    ));
    assert!(err.contains("certificate and key"), "{err}");
}
