//! RTP packets, through the `rtp` crate (webrtc-rs).

use bytes::Bytes;
use webrtc_util::marshal::Unmarshal;

/// The fields the recorder needs from one RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: Bytes,
}

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

/// Parses one datagram. `data` is shared, not copied.
pub fn parse(data: Bytes) -> Result<RtpPacket, RtpError> {
    if is_rtcp(&data) {
        return Err(RtpError::Rtcp);
    }
    let mut buf = data;
    let p =
        rtp::packet::Packet::unmarshal(&mut buf).map_err(|e| RtpError::Invalid(e.to_string()))?;
    Ok(RtpPacket {
        payload_type: p.header.payload_type,
        sequence: p.header.sequence_number,
        timestamp: p.header.timestamp,
        ssrc: p.header.ssrc,
        marker: p.header.marker,
        payload: p.payload,
    })
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
    fn roundtrip_and_rejections() {
        let raw = build(0, 7, 1600, 0xCA110000, &[0xff; 160]);
        let p = parse(Bytes::from(raw)).unwrap();
        assert_eq!(
            (p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (0, 7, 1600, 0xCA110000)
        );
        assert_eq!(p.payload.len(), 160);
        assert!(parse(Bytes::from_static(&[0x80, 0x00])).is_err());
        // RTCP receiver report on the RTP port
        assert_eq!(
            parse(Bytes::from_static(&[0x80, 201, 0, 1, 0, 0, 0, 1])),
            Err(RtpError::Rtcp)
        );
    }
}
