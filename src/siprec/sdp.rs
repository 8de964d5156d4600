//! SDP offers from recording clients and our answers (RFC 3264, RFC 7866 §7, §8.3).
//!
//! Adapter over `webrtc-sdp`. Measured on the vendor corpus, `webrtc-sdp`
//! rejects SDP without `t=` and with session-level `a=ptime`, and drops
//! `a=crypto` while logging the whole line (an SRTP key leak). So before
//! parsing we add a missing `t=`, lift session-level `a=ptime`, and remove
//! `a=crypto` lines; `a=crypto` and `a=label` are read from the raw text per
//! m-section. When `webrtc-sdp` still refuses an offer, the raw per-section
//! reader below provides every field and the refusal is logged (without SDP
//! text).

use std::net::IpAddr;
use std::str::FromStr;

use crate::media::codec::CodecKind;

/// Why an offer is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP has no m= line")]
    NoMedia,
    #[error("bad m= line: {0}")]
    MediaLine(String),
}

/// Media direction attribute (RFC 3264 §5.1); `sendrecv` when absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

/// `a=rtpmap` (or a static payload type's implied mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub pt: u8,
    pub name: String,
    pub rate: u32,
    /// Channel count (`opus/48000/2`), when given.
    pub channels: Option<u16>,
}

impl RtpMap {
    /// What the recorder makes of this codec.
    pub fn kind(&self) -> CodecKind {
        CodecKind::from_rtpmap(&self.name, self.rate, self.channels)
    }
}

/// One offered m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOffer {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    pub rtpmaps: Vec<RtpMap>,
    pub direction: Direction,
    /// Media-level `c=`, else session-level.
    pub connection: Option<IpAddr>,
    pub label: Option<String>,
    pub ptime: Option<u32>,
    /// Raw `a=crypto` values (SDES keys: never log them).
    pub crypto: Vec<String>,
    /// Raw `a=fmtp` values (`<pt> <params>`).
    pub fmtp: Vec<String>,
}

/// A parsed offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpOffer {
    pub media: Vec<MediaOffer>,
    /// Whether `webrtc-sdp` accepted the (normalised) text.
    pub strict_parse: bool,
}

impl MediaOffer {
    /// Codec name of payload type `pt`: from rtpmap, else the static table.
    pub fn codec_of(&self, pt: u8) -> Option<RtpMap> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.pt == pt) {
            return Some(m.clone());
        }
        let (name, rate, channels) = match pt {
            0 => ("PCMU", 8000, None),
            8 => ("PCMA", 8000, None),
            9 => ("G722", 8000, None),
            10 => ("L16", 44100, Some(2)),
            11 => ("L16", 44100, Some(1)),
            13 => ("CN", 8000, None),
            18 => ("G729", 8000, None),
            _ => return None,
        };
        Some(RtpMap {
            pt,
            name: name.into(),
            rate,
            channels,
        })
    }

    /// First offered format we can record, in the client's order of preference.
    pub fn recordable_codec(&self) -> Option<RtpMap> {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|pt| self.codec_of(pt))
            .find(|m| m.kind().is_audio())
    }

    /// Every offered format we can record, in the client's order (the
    /// answer accepts them all, so the client may switch between them).
    pub fn recordable_codecs(&self) -> Vec<RtpMap> {
        let mut out: Vec<RtpMap> = Vec::new();
        for m in self
            .formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|pt| self.codec_of(pt))
            .filter(|m| m.kind().is_audio())
        {
            if !out.iter().any(|o| o.pt == m.pt) {
                out.push(m);
            }
        }
        out
    }

    /// telephone-event payload type offered alongside, if any.
    pub fn telephone_event(&self) -> Option<RtpMap> {
        self.rtpmaps
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case("telephone-event"))
            .cloned()
    }

    /// Payload type of comfort noise (RFC 3389) among the offered formats.
    pub fn comfort_noise(&self) -> Option<u8> {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|pt| self.codec_of(pt))
            .find(|m| m.name.eq_ignore_ascii_case("CN"))
            .map(|m| m.pt)
    }

    /// Can we record this m-line at all (audio, RTP/AVP, a codec we decode
    /// (G.711, G.722, L16, Opus; G.729 with the `g729` feature), a port)?
    pub fn is_recordable(&self) -> bool {
        self.kind == "audio"
            && self.port != 0
            && self.transport_ok()
            && self.recordable_codec().is_some()
    }

    /// An SRTP audio line we would record but for its `a=crypto` lines:
    /// what the first well-formed one uses that we do not support (inner
    /// None: none was usable or well-formed). None when something else
    /// stands in the way, or nothing does.
    pub fn crypto_refusal(&self) -> Option<Option<crate::media::srtp::Unsupported>> {
        if self.kind != "audio" || self.port == 0 || !self.is_srtp() {
            return None;
        }
        self.recordable_codec()?;
        match crate::media::srtp::choose(&self.crypto) {
            Ok(_) => None,
            Err(crate::media::srtp::SrtpError::NoSupportedCrypto { unsupported, .. }) => {
                Some(unsupported)
            }
            Err(_) => Some(None),
        }
    }

    /// Is this an SRTP profile (`RTP/SAVP`, `RTP/SAVPF`)?
    pub fn is_srtp(&self) -> bool {
        let p = self.proto.to_ascii_uppercase();
        p == "RTP/SAVP" || p == "RTP/SAVPF"
    }

    /// Plain RTP, or SRTP with an `a=crypto` line we support (RFC 4568);
    /// never a silent plain-RTP answer to an SRTP offer.
    fn transport_ok(&self) -> bool {
        let p = self.proto.to_ascii_uppercase();
        match p.as_str() {
            "RTP/AVP" | "RTP/AVPF" => true,
            "RTP/SAVP" | "RTP/SAVPF" => crate::media::srtp::choose(&self.crypto).is_ok(),
            _ => false,
        }
    }
}

/// Parses an offer.
pub fn parse_offer(raw: &[u8]) -> Result<SdpOffer, SdpError> {
    let text = std::str::from_utf8(raw).map_err(|_| SdpError::NotUtf8)?;
    let mut offer = parse_raw(text)?;
    match webrtc_sdp::parse_sdp(&normalise_for_webrtc_sdp(text), false) {
        Ok(session) if session.media.len() == offer.media.len() => {
            overlay_webrtc_sdp(&mut offer, &session);
            offer.strict_parse = true;
        }
        Ok(_) => tracing::debug!("webrtc-sdp saw a different m-line count; using the raw reader"),
        // The error's Display may quote a line; crypto lines were removed first.
        Err(e) => tracing::debug!(error = %e, "webrtc-sdp refused the offer; using the raw reader"),
    }
    Ok(offer)
}

/// What `webrtc-sdp` needs to accept real offers: `t=` present, no
/// session-level `a=ptime`, and never an `a=crypto` line (it would log it).
pub fn normalise_for_webrtc_sdp(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut has_t = false;
    let mut in_media = false;
    for line in text.lines().map(str::trim_end) {
        if line.is_empty() || line.starts_with("a=crypto:") {
            continue;
        }
        if line.starts_with("m=") {
            if !has_t {
                out.push_str("t=0 0\r\n");
                has_t = true;
            }
            in_media = true;
        }
        if line.starts_with("t=") {
            has_t = true;
        }
        if !in_media && line.starts_with("a=ptime:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

fn overlay_webrtc_sdp(offer: &mut SdpOffer, session: &webrtc_sdp::SdpSession) {
    use webrtc_sdp::attribute_type::SdpAttribute;
    let session_conn = session.get_connection().as_ref().and_then(conn_ip);
    for (ours, theirs) in offer.media.iter_mut().zip(&session.media) {
        ours.port = u16::try_from(theirs.get_port()).unwrap_or(ours.port);
        ours.connection = theirs
            .get_connection()
            .as_ref()
            .and_then(conn_ip)
            .or(session_conn)
            .or(ours.connection);
        for a in theirs.get_attributes() {
            match a {
                SdpAttribute::Rtpmap(m) => {
                    if let Some(x) = ours.rtpmaps.iter_mut().find(|x| x.pt == m.payload_type) {
                        x.name = m.codec_name.clone();
                        x.rate = m.frequency;
                    }
                }
                SdpAttribute::Sendonly => ours.direction = Direction::SendOnly,
                SdpAttribute::Recvonly => ours.direction = Direction::RecvOnly,
                SdpAttribute::Inactive => ours.direction = Direction::Inactive,
                SdpAttribute::Sendrecv => ours.direction = Direction::SendRecv,
                SdpAttribute::Label(l) => ours.label = Some(l.clone()),
                _ => {}
            }
        }
    }
}

fn conn_ip(c: &webrtc_sdp::SdpConnection) -> Option<IpAddr> {
    match &c.address {
        webrtc_sdp::address::ExplicitlyTypedAddress::Ip(ip) => Some(*ip),
        _ => None,
    }
}

/// Raw reader: every m-section with the fields we need.
fn parse_raw(text: &str) -> Result<SdpOffer, SdpError> {
    let mut session_conn = None;
    let mut session_dir = None;
    let mut session_ptime = None;
    let mut media: Vec<MediaOffer> = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        let cur = media.last_mut();
        match (kind, cur) {
            ("m", _) => media.push(parse_m_line(value)?),
            ("c", None) => session_conn = parse_c_line(value),
            ("c", Some(m)) => m.connection = parse_c_line(value),
            ("a", cur) => {
                let (name, val) = value.split_once(':').unwrap_or((value, ""));
                let dir = match name.to_ascii_lowercase().as_str() {
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    "sendrecv" => Some(Direction::SendRecv),
                    _ => None,
                };
                match (cur, name) {
                    (None, _) if dir.is_some() => session_dir = dir,
                    (None, "ptime") => session_ptime = val.trim().parse().ok(),
                    (None, _) => {}
                    (Some(m), _) if dir.is_some() => m.direction = dir.unwrap_or(m.direction),
                    (Some(m), "label") => m.label = Some(val.trim().to_string()),
                    (Some(m), "ptime") => m.ptime = val.trim().parse().ok(),
                    (Some(m), "crypto") => m.crypto.push(val.trim().to_string()),
                    (Some(m), "fmtp") => m.fmtp.push(val.trim().to_string()),
                    (Some(m), "rtpmap") => {
                        if let Some(r) = parse_rtpmap(val) {
                            m.rtpmaps.push(r);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    for m in &mut media {
        if m.connection.is_none() {
            m.connection = session_conn;
        }
        if m.ptime.is_none() {
            m.ptime = session_ptime;
        }
    }
    if let Some(d) = session_dir {
        for m in media
            .iter_mut()
            .filter(|m| m.direction == Direction::SendRecv)
        {
            m.direction = d;
        }
    }
    Ok(SdpOffer {
        media,
        strict_parse: false,
    })
}

fn parse_m_line(value: &str) -> Result<MediaOffer, SdpError> {
    let bad = || SdpError::MediaLine(value.chars().take(80).collect());
    let mut it = value.split_whitespace();
    let kind = it.next().ok_or_else(bad)?.to_ascii_lowercase();
    let port_s = it.next().ok_or_else(bad)?;
    let port = port_s
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(bad)?;
    let proto = it.next().ok_or_else(bad)?.to_string();
    Ok(MediaOffer {
        kind,
        port,
        proto,
        formats: it.map(str::to_string).collect(),
        rtpmaps: Vec::new(),
        direction: Direction::SendRecv,
        connection: None,
        label: None,
        ptime: None,
        crypto: Vec::new(),
        fmtp: Vec::new(),
    })
}

fn parse_c_line(value: &str) -> Option<IpAddr> {
    let addr = value.split_whitespace().nth(2)?;
    IpAddr::from_str(addr.split('/').next()?).ok()
}

fn parse_rtpmap(val: &str) -> Option<RtpMap> {
    let (pt, rest) = val.trim().split_once(char::is_whitespace)?;
    let mut enc = rest.trim().split('/');
    let name = enc.next()?.to_string();
    // tolerate junk after the rate (`pcmu/8000a`)
    let rate_s: String = enc
        .next()
        .unwrap_or("8000")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some(RtpMap {
        pt: pt.parse().ok()?,
        name,
        rate: rate_s.parse().unwrap_or(8000),
        channels: enc.next().and_then(|c| c.trim().parse().ok()),
    })
}

/// Our side of one m-line in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerMedia {
    /// Our RTP port, or `None` to reject the m-line (port 0).
    pub port: Option<u16>,
    /// Answer `a=inactive` whatever the offer (a session not recorded).
    pub inactive: bool,
    /// Our `a=crypto` line for an SRTP m-line (same tag and suite as the
    /// chosen offer line, our own key).
    pub crypto: Option<String>,
}

impl AnswerMedia {
    /// A plain RTP m-line received on `port` (`None`: rejected, port 0).
    pub fn recv(port: Option<u16>) -> Self {
        AnswerMedia {
            port,
            inactive: false,
            crypto: None,
        }
    }
}

/// Builds the answer: every offered m-line answered in order (RFC 7866
/// §8.3.1), label echoed, `recvonly` (or `inactive` for an inactive or
/// recvonly offer), rejected lines with port 0.
pub fn build_answer(
    offer: &SdpOffer,
    local_ip: IpAddr,
    answers: &[AnswerMedia],
    session_id: u64,
    version: u64,
) -> String {
    let ipver = if local_ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=srs {session_id} {version} IN {ipver} {local_ip}\r\ns=srs\r\nc=IN {ipver} {local_ip}\r\nt=0 0\r\n"
    );
    for (i, m) in offer.media.iter().enumerate() {
        let port = answers.get(i).and_then(|a| a.port);
        let force_inactive = answers.get(i).is_some_and(|a| a.inactive);
        match (port, m.recordable_codec()) {
            (Some(port), Some(_)) => {
                let codecs = m.recordable_codecs();
                let te = m.telephone_event();
                let mut fmts: Vec<String> = codecs.iter().map(|c| c.pt.to_string()).collect();
                if let Some(te) = &te {
                    fmts.push(te.pt.to_string());
                }
                s.push_str(&format!(
                    "m={} {port} {} {}\r\n",
                    m.kind,
                    m.proto,
                    fmts.join(" ")
                ));
                for codec in &codecs {
                    let ch = codec.channels.map(|c| format!("/{c}")).unwrap_or_default();
                    s.push_str(&format!(
                        "a=rtpmap:{} {}/{}{ch}\r\n",
                        codec.pt, codec.name, codec.rate
                    ));
                    for f in m
                        .fmtp
                        .iter()
                        .filter(|f| f.starts_with(&format!("{} ", codec.pt)))
                    {
                        s.push_str(&format!("a=fmtp:{f}\r\n"));
                    }
                }
                if let Some(te) = te {
                    s.push_str(&format!(
                        "a=rtpmap:{} telephone-event/{}\r\n",
                        te.pt, te.rate
                    ));
                    for f in m
                        .fmtp
                        .iter()
                        .filter(|f| f.starts_with(&format!("{} ", te.pt)))
                    {
                        s.push_str(&format!("a=fmtp:{f}\r\n"));
                    }
                }
                if let Some(p) = m.ptime {
                    s.push_str(&format!("a=ptime:{p}\r\n"));
                }
                // On hold (RFC 2543 `c=0.0.0.0`) there is nothing to receive.
                let held = m.connection.is_some_and(|ip| ip.is_unspecified());
                let dir = match m.direction {
                    _ if held || force_inactive => "inactive",
                    Direction::Inactive | Direction::RecvOnly => "inactive",
                    Direction::SendOnly | Direction::SendRecv => "recvonly",
                };
                if let Some(l) = &m.label {
                    s.push_str(&format!("a=label:{l}\r\n"));
                }
                if let Some(c) = answers.get(i).and_then(|a| a.crypto.as_ref()) {
                    s.push_str(&format!("a=crypto:{c}\r\n"));
                }
                s.push_str(&format!("a={dir}\r\n"));
            }
            _ => {
                let fmt = m.formats.first().map(String::as_str).unwrap_or("0");
                s.push_str(&format!("m={} 0 {} {fmt}\r\n", m.kind, m.proto));
                if let Some(l) = &m.label {
                    s.push_str(&format!("a=label:{l}\r\n"));
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=SIPp-SRC 1 2 IN IP4 127.0.0.1\r\ns=SIPREC\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=label:1\r\na=sendonly\r\n\
m=audio 6002 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=label:2\r\na=sendonly\r\n";

    #[test]
    fn parses_offer_with_webrtc_sdp() {
        let o = parse_offer(OFFER.as_bytes()).unwrap();
        assert!(o.strict_parse);
        assert_eq!(o.media.len(), 2);
        assert_eq!(o.media[0].label.as_deref(), Some("1"));
        assert_eq!(o.media[1].label.as_deref(), Some("2"));
        assert_eq!(o.media[0].direction, Direction::SendOnly);
        assert_eq!(o.media[1].recordable_codec().unwrap().name, "PCMA");
        assert_eq!(o.media[0].connection, Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn answer_has_every_m_line_recvonly_with_labels() {
        let o = parse_offer(OFFER.as_bytes()).unwrap();
        let ans = build_answer(
            &o,
            "127.0.0.1".parse().unwrap(),
            &[
                AnswerMedia::recv(Some(20000)),
                AnswerMedia::recv(Some(20002)),
            ],
            7,
            1,
        );
        let a = parse_offer(ans.as_bytes()).unwrap();
        assert!(a.strict_parse, "our answer must satisfy webrtc-sdp: {ans}");
        assert_eq!(a.media.len(), 2);
        assert_eq!(a.media[0].port, 20000);
        assert_eq!(a.media[1].port, 20002);
        assert_eq!(a.media[0].label.as_deref(), Some("1"));
        assert_eq!(a.media[1].label.as_deref(), Some("2"));
        assert!(a.media.iter().all(|m| m.direction == Direction::RecvOnly));
        assert_eq!(a.media[1].formats, ["8", "101"]);
        assert_eq!(a.media[0].formats, ["0"]);
    }

    #[test]
    fn rejected_and_inactive_lines() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 0\r\na=label:a\r\na=inactive\r\nm=video 7002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=label:v\r\n";
        let o = parse_offer(offer.as_bytes()).unwrap();
        assert!(!o.media[1].is_recordable());
        let ans = build_answer(
            &o,
            "10.0.0.2".parse().unwrap(),
            &[AnswerMedia::recv(Some(30000)), AnswerMedia::recv(None)],
            1,
            1,
        );
        assert!(ans.contains("m=audio 30000 RTP/AVP 0\r\n"));
        assert!(ans.contains("a=inactive"));
        assert!(ans.contains("m=video 0 RTP/AVP 96\r\na=label:v\r\n"));
    }

    #[test]
    fn tolerates_missing_t_session_ptime_crypto_and_typos() {
        let offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\na=ptime:20\nm=audio 7000 RTP/SAVP 0\nc=IN IP4 10.0.0.1\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:SECRETKEY\na=rtpmap:0 pcmu/8000a\na=label:0\n";
        let o = parse_offer(offer.as_bytes()).unwrap();
        assert_eq!(o.media[0].ptime, Some(20));
        assert_eq!(o.media[0].crypto.len(), 1);
        assert_eq!(o.media[0].label.as_deref(), Some("0"));
        assert_eq!(o.media[0].recordable_codec().unwrap().pt, 0);
        assert!(!normalise_for_webrtc_sdp(offer).contains("SECRETKEY"));
        assert!(normalise_for_webrtc_sdp(offer).contains("t=0 0"));
    }

    #[test]
    fn hold_by_zero_address_is_answered_inactive() {
        let held = OFFER
            .replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
            .replace("a=sendonly\r\n", "");
        let o = parse_offer(held.as_bytes()).unwrap();
        let ans = build_answer(
            &o,
            "127.0.0.1".parse().unwrap(),
            &[
                AnswerMedia::recv(Some(20000)),
                AnswerMedia::recv(Some(20002)),
            ],
            1,
            2,
        );
        let a = parse_offer(ans.as_bytes()).unwrap();
        assert!(
            a.media.iter().all(|m| m.direction == Direction::Inactive),
            "{ans}"
        );
    }

    #[test]
    fn wideband_codecs_are_recordable() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/AVP 111 9 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=label:w\r\na=sendonly\r\n";
        let o = parse_offer(offer.as_bytes()).unwrap();
        let c = o.media[0].recordable_codec().unwrap();
        assert_eq!((c.pt, c.kind()), (111, CodecKind::Opus));
        let ans = build_answer(
            &o,
            "10.0.0.2".parse().unwrap(),
            &[AnswerMedia::recv(Some(30000))],
            1,
            1,
        );
        assert!(ans.contains("m=audio 30000 RTP/AVP 111 9 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"), "{ans}");
    }

    #[test]
    fn srtp_offers_need_a_supported_crypto_line() {
        let savp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 7000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=label:s\r\na=sendonly\r\n";
        let o = parse_offer(savp.as_bytes()).unwrap();
        assert!(o.media[0].is_srtp() && o.media[0].is_recordable());
        let ans = build_answer(
            &o,
            "10.0.0.2".parse().unwrap(),
            &[AnswerMedia {
                port: Some(30000),
                inactive: false,
                crypto: Some("1 AES_CM_128_HMAC_SHA1_80 inline:OURKEY".into()),
            }],
            1,
            1,
        );
        assert!(ans.contains("m=audio 30000 RTP/SAVP 0\r\n"), "{ans}");
        assert!(
            ans.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:OURKEY\r\n"),
            "{ans}"
        );
        // Only an unsupported suite (or none at all): not recordable, never plain RTP.
        let f8 = savp.replace("AES_CM_128_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80");
        assert!(!parse_offer(f8.as_bytes()).unwrap().media[0].is_recordable());
        let none = savp.replace("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n", "");
        assert!(!parse_offer(none.as_bytes()).unwrap().media[0].is_recordable());
    }

    #[test]
    fn no_media_and_garbage() {
        assert_eq!(parse_offer(b"v=0\r\n"), Err(SdpError::NoMedia));
        assert!(parse_offer(b"m=audio\r\n").is_err());
        assert!(parse_offer(b"\xff").is_err());
    }
}
