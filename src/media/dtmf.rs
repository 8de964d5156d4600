//! DTMF from RFC 4733 telephone-event packets.
//!
//! An event is identified by its RTP timestamp (its start): the sender
//! repeats packets with the same timestamp and a growing duration, then
//! sends the end packet (E bit) three times. [`DtmfTracker`] reports each
//! event once: at its first end packet, or, when all its end packets were
//! lost, when the next event starts or at [`DtmfTracker::flush`].
//!
//! Not handled: events longer than 65535 ticks (RFC 4733 §2.5.2.3, sent as
//! segments with new timestamps) come out as one unfinished event per
//! segment.

/// One key press.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfEvent {
    /// `0`-`9`, `*`, `#`, `A`-`D` (events 0..=15).
    pub digit: char,
    /// RTP timestamp of the event start.
    pub rtp_timestamp: u32,
    /// Duration in RTP ticks: that of the end packet, or the last seen.
    pub duration: u32,
    /// Volume (power level in -dBm0, 0..=63).
    pub volume: u8,
    /// Whether an end packet was received.
    pub ended: bool,
}

/// The event being received.
#[derive(Debug)]
struct Current {
    event: DtmfEvent,
    /// Already returned: later packets of it are retransmissions.
    reported: bool,
}

/// Follows the telephone-event packets of one stream.
#[derive(Debug, Default)]
pub struct DtmfTracker {
    current: Option<Current>,
}

/// The digit of an RFC 4733 DTMF event code (0..=15).
pub fn digit(event: u8) -> Option<char> {
    b"0123456789*#ABCD"
        .get(usize::from(event))
        .map(|b| char::from(*b))
}

impl DtmfTracker {
    pub fn new() -> DtmfTracker {
        DtmfTracker::default()
    }

    /// One telephone-event packet (RFC 4733 §2.3: event, E bit, volume,
    /// duration; extra bytes, e.g. redundant events, are ignored). Returns a
    /// finished event once: at the first packet with the E bit for its
    /// timestamp. An event whose end packets were all lost is returned,
    /// with `ended: false` and the last duration seen, when an event with
    /// another timestamp starts, or by [`DtmfTracker::flush`].
    ///
    /// Payloads shorter than 4 bytes, events above 15 and packets older than
    /// the current event are ignored. The timestamp alone identifies an
    /// event, so `marker` (set on an event's first packet) is not needed:
    /// the first packet of an event may be lost.
    pub fn on_packet(
        &mut self,
        rtp_timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<DtmfEvent> {
        let _ = marker;
        let [event, flags, d0, d1, ..] = *payload else {
            return None;
        };
        let digit = digit(event)?;
        let end = flags & 0x80 != 0;
        let volume = flags & 0x3f;
        let duration = u32::from(u16::from_be_bytes([d0, d1]));

        if let Some(cur) = &mut self.current {
            let delta = rtp_timestamp.wrapping_sub(cur.event.rtp_timestamp) as i32;
            if delta == 0 {
                if cur.reported {
                    return None;
                }
                cur.event.volume = volume;
                if end {
                    cur.event.duration = duration;
                    cur.event.ended = true;
                    cur.reported = true;
                    return Some(cur.event.clone());
                }
                cur.event.duration = cur.event.duration.max(duration);
                return None;
            }
            if delta < 0 {
                // A late packet of an earlier event.
                return None;
            }
        }

        // A new event: report the previous one if it never ended.
        let previous = self.current.take().filter(|c| !c.reported);
        let event = DtmfEvent {
            digit,
            rtp_timestamp,
            duration,
            volume,
            ended: end,
        };
        match previous {
            Some(prev) => {
                // One event per call: if the new one already ended (its
                // first packets were lost), it is reported at its next end
                // packet, the next event or the flush.
                self.current = Some(Current {
                    event,
                    reported: false,
                });
                Some(prev.event)
            }
            None => {
                self.current = Some(Current {
                    event: event.clone(),
                    reported: end,
                });
                end.then_some(event)
            }
        }
    }

    /// At the end of the stream: the event not yet reported, if any.
    pub fn flush(&mut self) -> Option<DtmfEvent> {
        let cur = self.current.take()?;
        (!cur.reported).then_some(cur.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
        let d = duration.to_be_bytes();
        [event, (u8::from(end) << 7) | volume, d[0], d[1]]
    }

    /// Sends one key press: start (marker), 5 updates, then `ends` end
    /// packets; returns what the tracker reported.
    fn press(t: &mut DtmfTracker, event: u8, ts: u32, ends: usize) -> Vec<DtmfEvent> {
        let mut got = Vec::new();
        got.extend(t.on_packet(ts, true, &pkt(event, false, 10, 160)));
        for i in 1..=5u16 {
            got.extend(t.on_packet(ts, false, &pkt(event, false, 10, 160 * (i + 1))));
        }
        for _ in 0..ends {
            got.extend(t.on_packet(ts, false, &pkt(event, true, 10, 1040)));
        }
        got
    }

    fn ev(digit: char, ts: u32, duration: u32, ended: bool) -> DtmfEvent {
        DtmfEvent {
            digit,
            rtp_timestamp: ts,
            duration,
            volume: 10,
            ended,
        }
    }

    #[test]
    fn one_digit_reported_once_then_another() {
        let mut t = DtmfTracker::new();
        assert_eq!(press(&mut t, 5, 1000, 3), [ev('5', 1000, 1040, true)]);
        assert_eq!(press(&mut t, 11, 9000, 3), [ev('#', 9000, 1040, true)]);
        assert_eq!(t.flush(), None);
    }

    #[test]
    fn lost_end_packets() {
        let mut t = DtmfTracker::new();
        assert!(press(&mut t, 1, 1000, 0).is_empty());
        // Reported when the next digit starts, with the last duration seen.
        let got = press(&mut t, 2, 5000, 3);
        assert_eq!(got, [ev('1', 1000, 960, false), ev('2', 5000, 1040, true)]);
        // And at the flush.
        assert!(press(&mut t, 12, 9000, 0).is_empty());
        assert_eq!(t.flush(), Some(ev('A', 9000, 960, false)));
        assert_eq!(t.flush(), None);
    }

    #[test]
    fn only_end_packets_received() {
        let mut t = DtmfTracker::new();
        let end = pkt(9, true, 10, 800);
        assert_eq!(t.on_packet(100, false, &end), Some(ev('9', 100, 800, true)));
        assert_eq!(t.on_packet(100, false, &end), None);

        // After an unfinished event, an event seen only by its end packets.
        let mut t = DtmfTracker::new();
        assert_eq!(t.on_packet(100, true, &pkt(3, false, 10, 160)), None);
        assert_eq!(
            t.on_packet(900, false, &end),
            Some(ev('3', 100, 160, false))
        );
        assert_eq!(t.on_packet(900, false, &end), Some(ev('9', 900, 800, true)));
        assert_eq!(t.on_packet(900, false, &end), None);
        assert_eq!(t.flush(), None);

        // ... whose other end packets are lost too.
        let mut t = DtmfTracker::new();
        assert_eq!(t.on_packet(100, true, &pkt(3, false, 10, 160)), None);
        assert_eq!(
            t.on_packet(900, false, &end),
            Some(ev('3', 100, 160, false))
        );
        assert_eq!(t.flush(), Some(ev('9', 900, 800, true)));
    }

    #[test]
    fn late_packets_of_an_earlier_event_are_ignored() {
        let mut t = DtmfTracker::new();
        assert_eq!(press(&mut t, 7, 1000, 1).len(), 1);
        assert!(press(&mut t, 8, 2000, 0).is_empty());
        // A delayed end packet of '7'.
        assert_eq!(t.on_packet(1000, false, &pkt(7, true, 10, 1040)), None);
        assert_eq!(t.flush(), Some(ev('8', 2000, 960, false)));

        // Across the timestamp wrap.
        let mut t = DtmfTracker::new();
        assert!(press(&mut t, 0, u32::MAX - 100, 0).is_empty());
        assert_eq!(press(&mut t, 4, 500, 1).len(), 2);
        assert_eq!(
            t.on_packet(u32::MAX - 100, false, &pkt(0, true, 10, 1)),
            None
        );
    }

    #[test]
    fn every_digit() {
        let mut t = DtmfTracker::new();
        let digits: String = (0..=15u8)
            .flat_map(|e| press(&mut t, e, u32::from(e) * 2000, 3))
            .map(|e| e.digit)
            .collect();
        assert_eq!(digits, "0123456789*#ABCD");
        assert_eq!(digit(16), None);
    }

    #[test]
    fn short_and_garbage_payloads() {
        let mut t = DtmfTracker::new();
        for p in [&[][..], &[5], &[5, 0x80], &[5, 0x80, 0]] {
            assert_eq!(t.on_packet(10, true, p), None);
        }
        // Events above 15 (flash, tones) are ignored.
        assert_eq!(t.on_packet(10, true, &pkt(16, true, 10, 160)), None);
        assert_eq!(t.on_packet(10, true, &pkt(255, true, 63, 65535)), None);
        assert_eq!(t.flush(), None);
        // Longer payloads (redundancy) use the first 4 bytes.
        let mut p = pkt(5, true, 10, 400).to_vec();
        p.extend([1, 2, 3, 4, 5]);
        assert_eq!(t.on_packet(10, false, &p), Some(ev('5', 10, 400, true)));

        let mut rng = 0x1234_5678_u64;
        let mut t = DtmfTracker::new();
        for len in 0..400 {
            let p: Vec<u8> = (0..len)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect();
            let ts = (rng >> 40) as u32 % 4 * 1000;
            if let Some(e) = t.on_packet(ts, len % 2 == 0, &p) {
                assert!("0123456789*#ABCD".contains(e.digit));
                assert!(e.volume <= 63);
            }
        }
        let _ = t.flush();
    }
}
