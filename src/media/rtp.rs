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
}
