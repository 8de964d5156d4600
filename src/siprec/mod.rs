//! SIPREC (RFC 7866): reading a recording session offer out of an INVITE:
//! the multipart body, the SDP offer and the recording metadata.

pub mod metadata;
pub mod multipart;
pub mod sdp;

use crate::sip::message::{has_header_flag, Message};

/// Why an INVITE cannot become a recording session; maps to a SIP response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OfferError {
    #[error("no SDP offer in the request")]
    NoSdp,
    #[error("unsupported body type {0}")]
    UnsupportedBody(String),
    #[error("multipart body: {0}")]
    Multipart(#[from] multipart::MultipartError),
    #[error("SDP: {0}")]
    Sdp(#[from] sdp::SdpError),
    #[error("no stream that can be recorded (audio RTP/AVP with PCMU or PCMA)")]
    NothingRecordable,
    /// Nothing recordable, and an SRTP line was so for its `a=crypto`
    /// lines alone: what they use that we do not support (None: none was
    /// usable or well-formed).
    #[error("no usable a=crypto line on an SRTP stream")]
    Crypto(Option<crate::media::srtp::Unsupported>),
}

impl OfferError {
    /// SIP status code and reason phrase for this rejection.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            OfferError::NoSdp => (488, "No SDP Offer"),
            OfferError::UnsupportedBody(_) => (415, "Unsupported Media Type"),
            OfferError::Multipart(_) => (400, "Bad Multipart Body"),
            OfferError::Sdp(_) => (488, "Bad SDP Offer"),
            OfferError::NothingRecordable => (488, "No Recordable Stream"),
            OfferError::Crypto(Some(u)) => (488, u.reason_phrase()),
            OfferError::Crypto(None) => (488, "No Usable SRTP Crypto Attribute"),
        }
    }
}

/// What a recording client offers: SDP plus, usually, metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingOffer {
    pub sdp: sdp::SdpOffer,
    /// The metadata part exactly as received (kept beside the recording).
    pub metadata_xml: Option<String>,
    pub metadata: Option<metadata::Metadata>,
    /// Why the metadata could not be read; the media is recorded anyway.
    pub metadata_error: Option<String>,
    /// Participants named by `X-Cisco-Recording-Participant` headers (Cisco
    /// network-based recording sends these instead of metadata).
    pub header_participants: Vec<HeaderParticipant>,
    /// The INVITE identifies itself as SIPREC (`siprec` option tag,
    /// `+sip.src`/`src` Contact feature tag, or a metadata part).
    pub is_siprec: bool,
}

/// A participant announced in a header rather than in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParticipant {
    pub aor: String,
    /// Indexes of the m-lines this participant sends on (`media-index`).
    pub media_index: Vec<usize>,
}

/// `X-Cisco-Recording-Participant: sip:708090@10.42.30.5;media-index="0"`
/// (one header per participant; `media-index` may list several lines).
pub fn cisco_participants(msg: &Message) -> Vec<HeaderParticipant> {
    msg.headers_named("X-Cisco-Recording-Participant")
        .filter_map(|v| {
            let v = v.trim();
            let (uri, params) = match v.find('<') {
                Some(s) => {
                    let e = v[s..].find('>')? + s;
                    (&v[s + 1..e], &v[e + 1..])
                }
                None => v.split_once(';').unwrap_or((v, "")),
            };
            let media_index = params
                .split(';')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("media-index"))
                .map(|(_, v)| {
                    v.trim_matches(|c| c == '"' || c == ' ')
                        .split_whitespace()
                        .filter_map(|n| n.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            Some(HeaderParticipant {
                aor: uri.trim().to_string(),
                media_index,
            })
        })
        .collect()
}

fn is_metadata_type(ct: &str) -> bool {
    ct == "application/rs-metadata+xml" || ct == "application/rs-metadata"
}

/// Reads the SDP offer and metadata of a request body. `require_media`
/// rejects offers where no m-line can be recorded.
pub fn read_offer(msg: &Message) -> Result<RecordingOffer, OfferError> {
    let (sdp_bytes, metadata_bytes) = split_body(msg)?;
    let sdp_bytes = sdp_bytes.ok_or(OfferError::NoSdp)?;
    let sdp = sdp::parse_offer(&sdp_bytes)?;
    if !sdp.media.iter().any(sdp::MediaOffer::is_recordable) {
        // Say so when the crypto alone stands in the way.
        return Err(sdp
            .media
            .iter()
            .find_map(sdp::MediaOffer::crypto_refusal)
            .map_or(OfferError::NothingRecordable, OfferError::Crypto));
    }
    let metadata_xml = metadata_bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
    let (metadata, metadata_error) = match &metadata_xml {
        Some(xml) => match metadata::parse(xml) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, None),
    };
    let contact = msg.header("Contact").unwrap_or("");
    let is_siprec = msg.tokens("Require").iter().any(|t| t == "siprec")
        || msg.tokens("Supported").iter().any(|t| t == "siprec")
        || has_header_flag(contact, "+sip.src")
        || has_header_flag(contact, "src")
        || metadata_xml.is_some();
    Ok(RecordingOffer {
        sdp,
        metadata_xml,
        metadata,
        metadata_error,
        header_participants: cisco_participants(msg),
        is_siprec,
    })
}

/// SDP and metadata parts of a body, whichever are present.
pub type BodyParts = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Splits a request body into its SDP and metadata parts.
pub fn split_body(msg: &Message) -> Result<BodyParts, OfferError> {
    if msg.body.is_empty() {
        return Ok((None, None));
    }
    let ct = msg.content_type().unwrap_or_default();
    match ct.as_str() {
        "application/sdp" => Ok((Some(msg.body.to_vec()), None)),
        t if is_metadata_type(t) => Ok((None, Some(msg.body.to_vec()))),
        "multipart/mixed" => {
            let full_ct = msg.header("Content-Type").unwrap_or_default();
            let parts = multipart::split(full_ct, &msg.body)?;
            let mut sdp = None;
            let mut meta = None;
            for p in parts {
                let t = p.content_type();
                if t == "application/sdp" && sdp.is_none() {
                    sdp = Some(p.body);
                } else if is_metadata_type(&t) && meta.is_none() {
                    meta = Some(p.body);
                }
            }
            Ok((sdp, meta))
        }
        other => Err(OfferError::UnsupportedBody(other.to_string())),
    }
}
