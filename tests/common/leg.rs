//! A one-party SIPREC record leg, Genesys style: the Request-URI carries
//! the routing parameters (`dn=`, `calluuid=`...), one participant `aor`
//! sends one PCMU stream (label `1`). For the tests of access control,
//! call events and the life of a recording.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::{final_response, send_pcmu_tone, siprec_body, status, Server};

/// RFC 7865 metadata: one participant sending stream label 1.
pub fn metadata(aor: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">\r\n<datamode>complete</datamode>\r\n<session session_id=\"s1\"></session>\r\n<participant participant_id=\"p1\"><nameID aor=\"{aor}\"/></participant>\r\n<participantsessionassoc participant_id=\"p1\" session_id=\"s1\"><associate-time>2026-11-23T10:00:00Z</associate-time></participantsessionassoc>\r\n<stream stream_id=\"st1\" session_id=\"s1\"><label>1</label></stream>\r\n<participantstreamassoc participant_id=\"p1\"><send>st1</send></participantstreamassoc>\r\n</recording>\r\n"
    )
}

/// A record leg that is up: its sockets and dialog.
pub struct Leg {
    pub sock: UdpSocket,
    pub media: UdpSocket,
    /// Where srs receives the stream.
    pub rtp: SocketAddr,
    pub srs: SocketAddr,
    pub call_id: String,
    pub to: String,
    pub from: String,
}

impl Leg {
    /// INVITE `sip:record=REC1@127.0.0.1;{params}` (participant `aor`),
    /// answered 200 and ACKed. Call-ID `{tag}@127.0.0.1`.
    pub fn start(srs: &Server, params: &str, aor: &str, tag: &str) -> Leg {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let media = UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = sock.local_addr().unwrap();
        let mport = media.local_addr().unwrap().port();
        let call_id = format!("{tag}@127.0.0.1");
        let sdp = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {mport} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=label:1\r\na=sendonly\r\n");
        let body = siprec_body(&sdp, &metadata(aor));
        let from = format!("<sip:genesys@127.0.0.1>;tag={tag}");
        let inv = format!(
            "INVITE sip:record=REC1@127.0.0.1;{params} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}\r\nFrom: {from}\r\nTo: <sip:record=REC1@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:genesys@{me}>;+sip.src\r\nRequire: siprec\r\nUser-Agent: GVP MCP\r\nContent-Type: multipart/mixed;boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let ok = final_response(&sock, srs.sip, inv.as_bytes());
        assert_eq!(status(&ok), 200, "{}", srs.log());
        let answer = String::from_utf8_lossy(&ok.body).to_string();
        let port: u16 = answer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no m=audio in the answer: {answer}"));
        let to = ok.header("To").unwrap().to_string();
        let ack = format!(
            "ACK sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}-ack\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(ack.as_bytes(), srs.sip).unwrap();
        Leg {
            sock,
            media,
            rtp: SocketAddr::from(([127, 0, 0, 1], port)),
            srs: srs.sip,
            call_id,
            to,
            from,
        }
    }

    /// `secs` of a `tone` Hz PCMU stream from SSRC `ssrc`, in real time.
    pub fn talk(&self, tone: f64, secs: f64, ssrc: u32) {
        send_pcmu_tone(&self.media, self.rtp, tone, secs, ssrc);
    }

    /// The BYE, with a branch of its own (the Call-ID's local part).
    fn bye_request(&self, kind: &str) -> String {
        let me = self.sock.local_addr().unwrap();
        format!(
            "BYE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{kind}-{}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            self.call_id.split('@').next().unwrap_or_default(),
            self.from,
            self.to,
            self.call_id
        )
    }

    /// BYE, answered 200; the Call-ID.
    pub fn bye(self) -> String {
        let bye = self.bye_request("bye");
        assert_eq!(
            status(&final_response(&self.sock, self.srs, bye.as_bytes())),
            200
        );
        self.call_id
    }

    /// BYE, sent again every 300 ms until its 200 comes (a UDP datagram
    /// may be lost when many calls end at once on a busy machine).
    pub fn bye_reliably(self) -> String {
        let bye = self.bye_request("rbye");
        self.sock
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 4096];
        for _ in 0..20 {
            self.sock.send_to(bye.as_bytes(), self.srs).unwrap();
            while let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.starts_with("SIP/2.0 200") && text.contains("BYE") {
                    return self.call_id;
                }
            }
        }
        panic!("no 200 to the BYE of {}", self.call_id);
    }
}
