//! A two-party SIPREC call for the web page's tests: a Genesys-style record
//! leg (Record DN in the Request-URI) with two participants, each sending
//! its own PCMU stream (labels `1` and `2`), which can be paused (a
//! re-INVITE with `a=inactive`, as a hold does) and resumed.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{final_response, send_pcmu_tone, siprec_body, status, Server};

/// The tones of the two parties (agent, customer).
pub const TONES: [f64; 2] = [440.0, 1000.0];

/// A call that is up.
pub struct TwoParty {
    sock: UdpSocket,
    media: [UdpSocket; 2],
    rtp: [SocketAddr; 2],
    srs: SocketAddr,
    pub call_id: String,
    to: String,
    from: String,
    tag: String,
    cseq: u32,
    segment: u32,
    /// Packets of each stream in the last [`TwoParty::talk`].
    last_packets: u32,
    /// When the 200 OK to the INVITE arrived (the recording's start, near
    /// enough).
    pub answered: Instant,
}

fn metadata(dn: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<recording xmlns=\"urn:ietf:params:xml:ns:recording:1\">\r\n<datamode>complete</datamode>\r\n<session session_id=\"s1\"></session>\r\n\
<participant participant_id=\"p1\"><nameID aor=\"sip:{dn}@pbx.example.com\"><name>Agent {dn}</name></nameID></participant>\r\n\
<participant participant_id=\"p2\"><nameID aor=\"sip:+15551230000@carrier.example.com\"><name>Customer</name></nameID></participant>\r\n\
<participantsessionassoc participant_id=\"p1\" session_id=\"s1\"><associate-time>2026-11-23T10:00:00Z</associate-time></participantsessionassoc>\r\n\
<participantsessionassoc participant_id=\"p2\" session_id=\"s1\"><associate-time>2026-11-23T10:00:00Z</associate-time></participantsessionassoc>\r\n\
<stream stream_id=\"st1\" session_id=\"s1\"><label>1</label></stream>\r\n<stream stream_id=\"st2\" session_id=\"s1\"><label>2</label></stream>\r\n\
<participantstreamassoc participant_id=\"p1\"><send>st1</send></participantstreamassoc>\r\n\
<participantstreamassoc participant_id=\"p2\"><send>st2</send></participantstreamassoc>\r\n</recording>\r\n"
    )
}

fn sdp(ports: [u16; 2], direction: &str, version: u32) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    );
    for (i, p) in ports.iter().enumerate() {
        s.push_str(&format!(
            "m=audio {p} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=label:{}\r\na={direction}\r\n",
            i + 1
        ));
    }
    s
}

impl TwoParty {
    /// INVITE (Record DN `dn`, CallUUID `UUID-<tag>`) answered 200 and
    /// ACKed.
    pub fn start(srs: &Server, dn: &str, tag: &str) -> TwoParty {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let media = [
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        ];
        let ports = [
            media[0].local_addr().unwrap().port(),
            media[1].local_addr().unwrap().port(),
        ];
        let me = sock.local_addr().unwrap();
        let call_id = format!("{tag}@127.0.0.1");
        let body = siprec_body(&sdp(ports, "sendonly", 1), &metadata(dn));
        let from = format!("<sip:genesys@127.0.0.1>;tag={tag}");
        let inv = format!(
            "INVITE sip:record=REC1@127.0.0.1;calluuid=UUID-{tag};dn={dn};recorddn={dn} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{tag}\r\nFrom: {from}\r\nTo: <sip:record=REC1@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:genesys@{me}>;+sip.src\r\nRequire: siprec\r\nUser-Agent: GVP MCP\r\nContent-Type: multipart/mixed;boundary=b\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let ok = final_response(&sock, srs.sip, inv.as_bytes());
        let answered = Instant::now();
        assert_eq!(status(&ok), 200, "{}", srs.log());
        let answer = String::from_utf8_lossy(&ok.body).to_string();
        let rtp: Vec<SocketAddr> = answer
            .lines()
            .filter_map(|l| l.strip_prefix("m=audio "))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u16>().ok())
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        assert_eq!(rtp.len(), 2, "two m-lines answered: {answer}");
        let to = ok.header("To").unwrap().to_string();
        let call = TwoParty {
            sock,
            media,
            rtp: [rtp[0], rtp[1]],
            srs: srs.sip,
            call_id,
            to,
            from,
            tag: tag.to_string(),
            cseq: 1,
            segment: 0,
            last_packets: 0,
            answered,
        };
        call.ack();
        call
    }

    fn ack(&self) {
        let me = self.sock.local_addr().unwrap();
        let ack = format!(
            "ACK sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{}-ack{}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            self.tag, self.cseq, self.from, self.to, self.call_id, self.cseq
        );
        self.sock.send_to(ack.as_bytes(), self.srs).unwrap();
    }

    /// Both parties talk for `secs` (each its own tone), in real time.
    pub fn talk(&mut self, secs: f64) {
        self.segment += 1;
        self.last_packets = (secs * 50.0) as u32;
        let seg = self.segment;
        std::thread::scope(|s| {
            for (i, ((sock, to), tone)) in self.media.iter().zip(self.rtp).zip(TONES).enumerate() {
                // A new SSRC per stretch of talk: its sequence numbers
                // start again (a new source after a hold, as phones do).
                let ssrc = 0x5eb0_0000 + (i as u32) * 0x100 + seg;
                s.spawn(move || send_pcmu_tone(sock, to, tone, secs, ssrc));
            }
        });
    }

    /// The agent (stream `1`) sends DTMF `digit` (0-9) as an RFC 4733
    /// telephone-event of 200 ms, in real time.
    /// Sent right after [`TwoParty::talk`], from the same source (its
    /// SSRC, sequence and timestamps go on), as a phone does.
    pub fn dtmf(&mut self, digit: u8) {
        let ssrc = 0x5eb0_0000 + self.segment;
        let first = self.last_packets;
        let start = Instant::now();
        for i in 0..13u16 {
            let end = i >= 10;
            let dur = 160 * (i.min(9) + 1);
            let payload = [
                digit,
                if end { 0x8a } else { 0x0a },
                (dur >> 8) as u8,
                dur as u8,
            ];
            let mut p = super::rtp_packet(first as u16 + i, first * 160, ssrc, 101, &payload);
            if i == 0 {
                p[1] |= 0x80;
            }
            let _ = self.media[0].send_to(&p, self.rtp[0]);
            let due = start + Duration::from_millis(20 * u64::from(i.min(9) + 1));
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    }

    /// A re-INVITE setting both streams to `direction` (`inactive`: a
    /// pause; `sendonly`: back), answered 200 and ACKed.
    pub fn reinvite(&mut self, direction: &str) {
        self.cseq += 1;
        let me = self.sock.local_addr().unwrap();
        let ports = [
            self.media[0].local_addr().unwrap().port(),
            self.media[1].local_addr().unwrap().port(),
        ];
        let body = sdp(ports, direction, self.cseq);
        let req = format!(
            "INVITE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{}-re{}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} INVITE\r\nContact: <sip:genesys@{me}>;+sip.src\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            self.tag,
            self.cseq,
            self.from,
            self.to,
            self.call_id,
            self.cseq,
            body.len()
        );
        let ok = final_response(&self.sock, self.srs, req.as_bytes());
        assert_eq!(status(&ok), 200, "re-INVITE {direction}");
        self.ack();
    }

    /// BYE, answered 200. The Call-ID.
    pub fn bye(mut self) -> String {
        self.cseq += 1;
        let me = self.sock.local_addr().unwrap();
        let bye = format!(
            "BYE sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{}-bye\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
            self.tag, self.from, self.to, self.call_id, self.cseq
        );
        assert_eq!(
            status(&final_response(&self.sock, self.srs, bye.as_bytes())),
            200
        );
        self.call_id
    }
}
