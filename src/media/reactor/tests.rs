use super::*;
use crate::media::codec::CodecKind;
use crate::media::rtp::build;
use crate::media::srtp::{CryptoAttr, SrtpSender, Suite};

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn a_new_stream_latches_from_the_sdp_or_the_client_unless_told_otherwise() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (sdp, client) = (Some(ip("10.0.0.5")), ip("10.0.0.9"));
    assert_eq!(
        SourcePolicy::for_stream(false, false, sdp, client),
        SourcePolicy::Ip(ip("10.0.0.5")),
        "no latching: the SDP's address, any port"
    );
    assert_eq!(
        SourcePolicy::for_stream(true, false, sdp, client),
        SourcePolicy::latch_from(ip("10.0.0.5"), client)
    );
    assert_eq!(
        SourcePolicy::for_stream(true, true, sdp, client),
        SourcePolicy::latch_any()
    );
    // A held (0.0.0.0) or missing c=: the client's own address.
    for none in [None, Some(ip("0.0.0.0"))] {
        assert_eq!(
            SourcePolicy::for_stream(true, false, none, client),
            SourcePolicy::latch_from(client, client)
        );
        assert_eq!(
            SourcePolicy::for_stream(false, false, none, client),
            SourcePolicy::latch_from(client, client)
        );
    }
}

#[test]
fn nobody_else_can_inject_audio() {
    let a = addr("10.0.0.5:4000");
    let b = addr("10.0.0.9:4000");
    let a2 = addr("10.0.0.5:5000");
    let sig = "10.0.0.7".parse().unwrap();
    let mut latch = SourcePolicy::latch_from("10.0.0.5".parse().unwrap(), sig);
    assert_eq!(
        latch.admit(b),
        Admit::No,
        "neither the SDP's nor the client's host"
    );
    assert_eq!(latch.admit(a), Admit::Candidate);
    assert_eq!(
        latch.admit(addr("10.0.0.7:9")),
        Admit::Candidate,
        "signalling host"
    );
    latch.latch(a.unwrap());
    assert_eq!(latch.admit(a), Admit::Yes);
    assert_eq!(latch.admit(b), Admit::No, "another host");
    assert_eq!(latch.admit(a2), Admit::No, "another port of the same host");
    // The SDP said 0.0.0.0 (or nothing usable): the signalling host only.
    let hold = SourcePolicy::latch_from("0.0.0.0".parse().unwrap(), sig);
    assert_eq!(hold.admit(addr("10.0.0.7:1")), Admit::Candidate);
    assert_eq!(hold.admit(addr("0.0.0.0:1")), Admit::No);
    // IPv4-mapped sources compare as IPv4.
    assert_eq!(
        hold.admit(addr("[::ffff:10.0.0.7]:1")),
        Admit::Candidate,
        "mapped"
    );
    let strict = SourcePolicy::Ip("10.0.0.5".parse().unwrap());
    assert_eq!(strict.admit(a), Admit::Yes);
    assert_eq!(strict.admit(a2), Admit::Yes);
    assert_eq!(strict.admit(b), Admit::No);
    assert_eq!(strict.admit(None), Admit::No);
    assert_eq!(SourcePolicy::Any.admit(b), Admit::Yes);
    assert_eq!(SourcePolicy::latch_any().admit(b), Admit::Candidate);
    // RTCP (from port + 1) never latches and needs the same host; with
    // any source allowed, none before the latch.
    let mut fresh = SourcePolicy::latch_from("10.0.0.5".parse().unwrap(), sig);
    assert!(fresh.admit_rtcp(addr("10.0.0.5:4001")));
    assert!(!fresh.admit_rtcp(b));
    assert!(!SourcePolicy::latch_any().admit_rtcp(b));
    fresh.latch(a.unwrap());
    assert!(fresh.admit_rtcp(addr("10.0.0.5:4001")));
    assert!(!fresh.admit_rtcp(addr("10.0.0.7:4001")));
}

const KEY: [u8; 16] = *b"0123456789abcdef";
const SALT: [u8; 14] = *b"saltsaltsaltsa";

/// A stream on real sockets (127.0.0.1), fed through [`drain`] as the
/// shard does.
struct Rig {
    stream: Stream,
    batch: BatchReceiver,
    port: u16,
    t0: Instant,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(source: SourcePolicy, srtp: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_nonblocking(true).unwrap();
        rtcp.set_nonblocking(true).unwrap();
        let port = rtp.local_addr().unwrap().port();
        let spec = StreamSpec {
            codecs: vec![(0, CodecKind::Pcmu)],
            dtmf: Some((101, 8000)),
            cn: None,
            srtp: srtp.then_some(CryptoAttr {
                tag: 1,
                suite: Suite::AesCm128HmacSha1_80,
                master_key: KEY,
                master_salt: SALT,
                mki: None,
                unencrypted_srtcp: false,
            }),
        };
        let t0 = Instant::now();
        let rec = StreamRecorder::create(&dir.path().join("s.wav"), spec, t0, None).unwrap();
        Rig {
            stream: Stream {
                rtp,
                rtcp,
                rec: Box::new(rec),
                failed: None,
                source,
                foreign: 0,
            },
            batch: BatchReceiver::new(),
            port,
            t0,
            _dir: dir,
        }
    }

    /// Sends `p` from `from` and lets the stream take it.
    fn feed(&mut self, from: &UdpSocket, p: &[u8]) {
        from.send_to(p, ("127.0.0.1", self.port)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        drain(&mut self.batch, &mut self.stream, false, Instant::now());
    }

    fn latched(&self) -> Option<SocketAddr> {
        match self.stream.source {
            SourcePolicy::Latch { latched, .. } => latched,
            _ => None,
        }
    }

    fn finish(self) -> StreamStats {
        let foreign = self.stream.foreign;
        let mut st = self.stream.rec.finish(self.t0).unwrap();
        st.packets_foreign = foreign;
        st
    }
}

fn sock(ip: &str) -> UdpSocket {
    UdpSocket::bind((ip, 0)).unwrap()
}

fn pcmu(seq: u16, ssrc: u32) -> Vec<u8> {
    build(0, seq, u32::from(seq) * 160, ssrc, &[0x55; 160])
}

fn local() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

#[test]
fn an_unoffered_payload_type_never_latches() {
    let mut r = Rig::new(SourcePolicy::latch_from(local(), local()), false);
    let stray = sock("127.0.0.1");
    let real = sock("127.0.0.1");
    r.feed(&stray, &build(96, 1, 160, 9, &[0x55; 160]));
    r.feed(&stray, &build(13, 2, 320, 9, &[0x55; 1]));
    assert_eq!(r.latched(), None, "PT 96 and CN were not offered");
    r.feed(&real, &pcmu(1, 7));
    assert_eq!(r.latched(), Some(real.local_addr().unwrap()));
    r.feed(&stray, &pcmu(2, 9));
    let st = r.finish();
    assert_eq!(
        st.packets_foreign, 1,
        "after the latch, the stray port is foreign"
    );
    assert_eq!(st.packets_received, 3);
}

#[test]
fn a_packet_that_fails_srtp_authentication_never_latches() {
    let mut r = Rig::new(SourcePolicy::latch_from(local(), local()), true);
    let forger = sock("127.0.0.1");
    let real = sock("127.0.0.1");
    let mut tx = SrtpSender::new(&CryptoAttr {
        tag: 1,
        suite: Suite::AesCm128HmacSha1_80,
        master_key: KEY,
        master_salt: SALT,
        mki: None,
        unencrypted_srtcp: false,
    })
    .unwrap();
    let mut forged = pcmu(1, 7);
    forged.extend_from_slice(&[0xAB; 10]); // a made-up tag
    r.feed(&forger, &forged);
    assert_eq!(r.latched(), None, "unauthenticated");
    let mut out = Vec::new();
    tx.protect_rtp(&pcmu(1, 7), &mut out).unwrap();
    r.feed(&real, &out);
    assert_eq!(r.latched(), Some(real.local_addr().unwrap()));
    let st = r.finish();
    assert_eq!(st.packets_unauthenticated, 1);
    assert_eq!(st.packets_received, 2);
}

#[test]
fn the_first_source_must_be_the_clients_host_unless_any_source_is_allowed() {
    // Default: a packet from another host (127.0.0.2) is foreign even
    // before the real media came.
    let mut r = Rig::new(SourcePolicy::latch_from(local(), local()), false);
    let other = sock("127.0.0.2");
    let real = sock("127.0.0.1");
    r.feed(&other, &pcmu(1, 9));
    assert_eq!(r.latched(), None);
    r.feed(&real, &pcmu(1, 7));
    assert_eq!(r.latched(), Some(real.local_addr().unwrap()));
    assert_eq!(r.finish().packets_foreign, 1);
    // latch_any_source (NAT): the first source of media, from anywhere;
    // an unoffered payload type still never latches.
    let mut r = Rig::new(SourcePolicy::latch_any(), false);
    r.feed(&real, &build(96, 1, 160, 7, &[0x55; 160]));
    assert_eq!(r.latched(), None);
    r.feed(&other, &pcmu(1, 9));
    assert_eq!(r.latched(), Some(other.local_addr().unwrap()));
    r.feed(&real, &pcmu(2, 7));
    let st = r.finish();
    assert_eq!((st.packets_foreign, st.packets_received), (1, 2));
}
