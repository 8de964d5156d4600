//! RTP packets, through the `rtp` crate (webrtc-rs), and RTCP sender
//! reports. [`parse_view`] parses in place: the header through the crate
//! (no allocation without CSRCs or extensions), the payload a subslice of
//! the receive buffer.

use webrtc_util::marshal::Unmarshal;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("not RTP: {0}")]
    Invalid(String),
    #[error("RTCP multiplexed on the RTP port")]
    Rtcp,
}

/// Is this datagram RTCP sent on the RTP port (rtcp-mux, RFC 5761 §4)?
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && (200..=204).contains(&data[1])
}

/// An RTP packet borrowed from its receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: &'a [u8],
}

/// Parses one datagram in place.
pub fn parse_view(data: &[u8]) -> Result<RtpView<'_>, RtpError> {
    use webrtc_util::marshal::MarshalSize;
    if is_rtcp(data) {
        return Err(RtpError::Rtcp);
    }
    check_extension(data)?;
    let mut buf = data;
    let h =
        rtp::header::Header::unmarshal(&mut buf).map_err(|e| RtpError::Invalid(e.to_string()))?;
    let start = h.marshal_size();
    let mut end = data.len();
    if h.padding {
        let pad = *data.last().unwrap_or(&0) as usize;
        end = end.saturating_sub(pad);
    }
    if start > end {
        return Err(RtpError::Invalid("padding longer than the payload".into()));
    }
    Ok(RtpView {
        payload_type: h.payload_type,
        sequence: h.sequence_number,
        timestamp: h.timestamp,
        ssrc: h.ssrc,
        marker: h.marker,
        payload: &data[start..end],
    })
}

/// RFC 8285 header extension elements must stay inside their block. The
/// `rtp` crate (0.17) checks the block but not the elements, and panics
/// on an element that runs past the end of the packet (found by fuzzing:
/// `tests/fixtures/fuzz/rtp/`), so malformed ones are refused here first.
fn check_extension(data: &[u8]) -> Result<(), RtpError> {
    const ONE_BYTE: u16 = 0xBEDE;
    const TWO_BYTE: u16 = 0x1000;
    if data.len() < 12 || data[0] & 0x10 == 0 {
        return Ok(()); // no extension (short packets: the crate refuses them)
    }
    let bad = |what: &str| Err(RtpError::Invalid(format!("header extension: {what}")));
    let off = 12 + 4 * usize::from(data[0] & 0x0f);
    let Some(head) = data.get(off..off + 4) else {
        return bad("truncated");
    };
    let profile = u16::from_be_bytes([head[0], head[1]]);
    let len = usize::from(u16::from_be_bytes([head[2], head[3]])) * 4;
    let Some(block) = data.get(off + 4..off + 4 + len) else {
        return bad("longer than the packet");
    };
    let mut i = 0;
    match profile {
        ONE_BYTE => {
            while i < block.len() {
                let b = block[i];
                if b == 0 {
                    i += 1; // padding
                    continue;
                }
                if b >> 4 == 15 {
                    break; // reserved id: the rest is ignored
                }
                i += 2 + usize::from(b & 0x0f);
                if i > block.len() {
                    return bad("an element runs past its block");
                }
            }
        }
        TWO_BYTE => {
            while i < block.len() {
                if block[i] == 0 {
                    i += 1;
                    continue;
                }
                let Some(l) = block.get(i + 1) else {
                    return bad("an element runs past its block");
                };
                i += 2 + usize::from(*l);
                if i > block.len() {
                    return bad("an element runs past its block");
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// An RTCP sender report's clock mapping (RFC 3550 §6.4.1): the sender's
/// wall clock (NTP) at RTP timestamp `rtp_timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// NTP timestamp, 32.32 fixed point seconds since 1900.
    pub ntp: u64,
    pub rtp_timestamp: u32,
}

impl SenderReport {
    /// The NTP time as Unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        let secs = (self.ntp >> 32) as i64 - 2_208_988_800;
        let frac = ((self.ntp & 0xffff_ffff) * 1000) >> 32;
        secs * 1000 + frac as i64
    }
}

/// The first sender report of a (compound) RTCP packet, if any. Never
/// written into audio: RTCP only informs the clock mapping.
pub fn sender_report(data: &[u8]) -> Option<SenderReport> {
    let mut off = 0;
    while off + 4 <= data.len() {
        let b = &data[off..];
        if b[0] >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([b[2], b[3]])) + 1) * 4;
        if b[1] == 200 && b.len() >= 20 {
            return Some(SenderReport {
                ssrc: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                ntp: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
                rtp_timestamp: u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
            });
        }
        off += len;
    }
    None
}

/// Builds an RTP packet (tests and load generators).
pub fn build(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.push(0x80);
    v.push(pt & 0x7f);
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_borrows_the_payload_and_strips_padding() {
        let mut raw = build(8, 1, 2, 3, &[5; 160]);
        let v = parse_view(&raw).unwrap();
        assert_eq!(
            (v.payload_type, v.sequence, v.timestamp, v.ssrc),
            (8, 1, 2, 3)
        );
        assert_eq!(v.payload.as_ptr(), raw[12..].as_ptr(), "no copy");
        raw[0] |= 0x20; // padding: last byte says 4
        raw.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(parse_view(&raw).unwrap().payload.len(), 160);
        assert!(parse_view(&[0x80, 0, 0]).is_err());
        assert_eq!(parse_view(&[0x80, 200, 0, 6]), Err(RtpError::Rtcp));
    }

    #[test]
    fn sender_report_in_a_compound_packet() {
        // RR (empty) then SR
        let mut p = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        p.extend_from_slice(&[0x80, 200, 0, 6, 0, 0, 0, 7]);
        let ntp: u64 = (3_976_000_000u64 << 32) | (1u64 << 31); // x.5 s
        p.extend_from_slice(&ntp.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        let sr = sender_report(&p).unwrap();
        assert_eq!((sr.ssrc, sr.rtp_timestamp), (7, 1234));
        assert_eq!(
            sr.unix_ms(),
            (3_976_000_000i64 - 2_208_988_800) * 1000 + 500
        );
        assert_eq!(sender_report(&[0x80, 201, 0, 1]), None);
        assert_eq!(sender_report(&[0xff; 3]), None);
    }

    #[test]
    fn roundtrip_and_rejections() {
        let raw = build(0, 7, 1600, 0xCA110000, &[0xff; 160]);
        let p = parse_view(&raw).unwrap();
        assert_eq!(
            (p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (0, 7, 1600, 0xCA110000)
        );
        assert_eq!(p.payload.len(), 160);
        assert!(parse_view(&[0x80, 0x00]).is_err());
        // RTCP receiver report on the RTP port
        assert_eq!(
            parse_view(&[0x80, 201, 0, 1, 0, 0, 0, 1]),
            Err(RtpError::Rtcp)
        );
    }

    /// A packet with the X bit and one extension block of `words` 32-bit
    /// words holding `ext` (zero padded), then a payload.
    fn with_extension(profile: u16, words: u16, ext: &[u8]) -> Vec<u8> {
        let mut p = build(0, 1, 2, 3, &[]);
        p[0] |= 0x10;
        p.extend_from_slice(&profile.to_be_bytes());
        p.extend_from_slice(&words.to_be_bytes());
        let mut block = ext.to_vec();
        block.resize(usize::from(words) * 4, 0);
        p.extend_from_slice(&block);
        p
    }

    #[test]
    fn extension_elements_past_their_block_are_refused_not_a_panic() {
        // One-byte: id 1, length 16, in a 4-byte block at the packet's end.
        let p = with_extension(0xBEDE, 1, &[0x1f, 1, 2, 3]);
        assert!(matches!(parse_view(&p), Err(RtpError::Invalid(_))));
        // Two-byte: id 1, length 200.
        let p = with_extension(0x1000, 1, &[1, 200, 0, 0]);
        assert!(matches!(parse_view(&p), Err(RtpError::Invalid(_))));
        // Two-byte: an id with no length byte left.
        let p = with_extension(0x1000, 1, &[0, 0, 0, 7]);
        assert!(matches!(parse_view(&p), Err(RtpError::Invalid(_))));
        // Well-formed ones still parse, payload after the block.
        let mut p = with_extension(0xBEDE, 2, &[0x10, 0xaa, 0x21, 1, 2]);
        p.extend_from_slice(&[9; 160]);
        assert_eq!(parse_view(&p).unwrap().payload, &[9; 160][..]);
        let mut p = with_extension(0x1000, 1, &[1, 2, 0xaa, 0xbb]);
        p.extend_from_slice(&[9; 20]);
        assert_eq!(parse_view(&p).unwrap().payload, &[9; 20][..]);
    }

    #[test]
    fn fuzz_crash_regressions() {
        // Every crash the `rtp` fuzz target found, run as the target does.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz/rtp");
        let mut n = 0;
        for f in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(f.unwrap().path()).unwrap();
            for p in data.split(|b| *b == 0xfe) {
                let _ = parse_view(p);
                let _ = sender_report(p);
            }
            n += 1;
        }
        assert!(n >= 1);
    }
}
