//! A bounded reorder buffer for one RTP stream: packets come out in
//! sequence order, each at most `window` after it arrived. No heap
//! allocation in steady state: payloads are copied into slots that grow to
//! the largest payload they have held, then are reused.
//!
//! - A packet whose sequence number was already released is *late* (or a
//!   *duplicate* if that exact number was released or is buffered); it is
//!   dropped and counted.
//! - Missing sequence numbers are given up on once the oldest buffered
//!   packet has waited `window`, or the buffer is full; they count as lost.
//! - A sequence jump larger than the buffer (a new SSRC, a restarted
//!   sender) releases what is buffered and restarts the count.
//! - With [`ReorderBuffer::hold_start`], the first packet of a count is
//!   held for the window too: a packet from before it that arrives within
//!   the window (the first two packets swapped) moves the start back
//!   instead of being dropped as late.

use std::time::{Duration, Instant};

/// Largest RTP payload kept: what fits a receive buffer after the 12-byte
/// header. Larger datagrams never reach the ring (the recorder drops them).
pub const MAX_PAYLOAD: usize = super::receiver::BUF - 12;

/// What each slot holds at least, once one is needed (20 ms of G.711).
const MIN_SLOT_BYTES: usize = 160;

/// Fields of a buffered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_type: u8,
    pub marker: bool,
    pub arrival: Instant,
}

#[derive(Debug)]
struct Slot {
    used: bool,
    ext_seq: i64,
    meta: Option<PacketMeta>,
    /// Grows to the largest payload this slot has held (G.711: 160 bytes),
    /// then is reused: no allocation in steady state, little memory.
    data: Vec<u8>,
}

/// What [`ReorderBuffer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Stored,
    /// Late or duplicate: counted and dropped.
    Dropped,
    /// No room before older packets are released, or a new count (SSRC,
    /// jump) starts while packets of the old one wait: `pop_oldest`, then
    /// push again.
    Full,
}

/// Counters of the buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReorderStats {
    pub late: u64,
    pub duplicated: u64,
    pub lost: u64,
    pub reordered: u64,
}

/// The reorder buffer.
#[derive(Debug)]
pub struct ReorderBuffer {
    slots: Vec<Slot>,
    window: Duration,
    /// Next extended sequence number to release.
    next: Option<i64>,
    /// Highest extended sequence number seen, and its 16-bit value.
    highest: i64,
    highest_seq: u16,
    ssrc: Option<u32>,
    buffered: usize,
    /// Bit i set: `next - 1 - i` was released (tells duplicates from late).
    released: u64,
    /// Hold the first packet of each count for the window.
    hold_start: bool,
    /// While the start of a count is held: the arrival of its first packet.
    starting: Option<Instant>,
    pub stats: ReorderStats,
}

impl ReorderBuffer {
    /// `capacity` packets at most are held (e.g. 16), each at most `window`.
    pub fn new(capacity: usize, window: Duration) -> Self {
        let slots = (0..capacity.max(2))
            .map(|_| Slot {
                used: false,
                ext_seq: 0,
                meta: None,
                data: Vec::new(),
            })
            .collect();
        ReorderBuffer {
            slots,
            window,
            next: None,
            highest: 0,
            highest_seq: 0,
            ssrc: None,
            buffered: 0,
            released: 0,
            hold_start: false,
            starting: None,
            stats: ReorderStats::default(),
        }
    }

    /// Holds the first packet of each count (a new stream, a new SSRC, a
    /// restarted sequence) for the window before releasing it, so that an
    /// earlier packet arriving just after it is still placed, in order.
    pub fn hold_start(mut self) -> Self {
        self.hold_start = true;
        self
    }

    /// The SSRC being followed, once a packet has been pushed.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    fn slot_of(&self, ext: i64) -> usize {
        ext.rem_euclid(self.slots.len() as i64) as usize
    }

    /// Whether no packet is waiting.
    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }

    /// The common case, without copying the payload in and out of a slot:
    /// nothing is buffered and `meta` is the next expected packet of the
    /// current SSRC. Then it is accounted as pushed and released at once
    /// and true is returned: the caller uses the payload where it is.
    /// Otherwise false, and nothing changed: use [`ReorderBuffer::push`].
    pub fn take_in_order(&mut self, meta: &PacketMeta) -> bool {
        let (Some(next), Some(ssrc)) = (self.next, self.ssrc) else {
            return false;
        };
        if self.buffered != 0 || ssrc != meta.ssrc || self.starting.is_some() {
            return false;
        }
        let ext = self.highest + i64::from(meta.seq.wrapping_sub(self.highest_seq) as i16);
        if ext != next || ext <= self.highest {
            return false;
        }
        self.highest = ext;
        self.highest_seq = meta.seq;
        self.next = Some(ext + 1);
        self.released = (self.released << 1) | 1;
        true
    }

    /// Offers a packet. [`Push::Dropped`] if late or a duplicate;
    /// [`Push::Full`] if the ring cannot hold it before older packets go:
    /// take them with [`ReorderBuffer::pop_oldest`] and push again. After a
    /// [`Push::Stored`], call [`ReorderBuffer::pop`] until it returns None.
    pub fn push(&mut self, meta: PacketMeta, payload: &[u8]) -> Push {
        let cap = self.slots.len() as i64;
        let mut ext = match (self.next, self.ssrc) {
            (Some(_), Some(ssrc)) if ssrc == meta.ssrc => {
                self.highest + i64::from(meta.seq.wrapping_sub(self.highest_seq) as i16)
            }
            _ => {
                // First packet, or a new SSRC: start over, once what the
                // old one left waiting is released (never thrown away).
                if self.buffered > 0 {
                    return Push::Full;
                }
                self.start_over(&meta);
                i64::from(meta.seq)
            }
        };
        let next = self.next.unwrap_or(ext);
        if ext < next {
            if self.starting.is_some() && self.highest - ext < cap {
                // The start is still held: an earlier packet (the first
                // two swapped) becomes the start.
                self.next = Some(ext);
            } else {
                let d = next - 1 - ext;
                if d < 64 && self.released & (1u64 << d) != 0 {
                    self.stats.duplicated += 1;
                } else {
                    self.stats.late += 1;
                }
                return Push::Dropped;
            }
        }
        let next = self.next.unwrap_or(ext);
        if ext - next >= cap * 4 {
            // A jump far beyond the window: the sender restarted its count.
            if self.buffered > 0 {
                return Push::Full;
            }
            self.start_over(&meta);
            ext = i64::from(meta.seq);
        }
        // No room: everything older than `ext - cap` must go first.
        if self.next.is_some_and(|n| ext - n >= cap) {
            // Missing numbers at the head are given up at once.
            while let Some(n) = self.next.filter(|n| ext - n >= cap) {
                let i = self.slot_of(n);
                if self.slots[i].used && self.slots[i].ext_seq == n {
                    return Push::Full;
                }
                self.stats.lost += 1;
                self.released <<= 1;
                self.next = Some(n + 1);
            }
        }
        let idx = self.slot_of(ext);
        if self.slots[idx].used && self.slots[idx].ext_seq == ext {
            self.stats.duplicated += 1;
            return Push::Dropped;
        }
        if ext < self.highest {
            self.stats.reordered += 1;
        }
        if ext > self.highest {
            self.highest = ext;
            self.highest_seq = meta.seq;
        }
        let len = payload.len().min(MAX_PAYLOAD);
        if self.slots[idx].data.capacity() < len {
            let want = len.max(MIN_SLOT_BYTES);
            if self.starting.is_some() {
                // A held start: only its own slot (a stream that never
                // reorders keeps its ring this small).
                let d = &mut self.slots[idx].data;
                d.reserve(want.saturating_sub(d.len()));
            } else {
                // In-order packets never reach the slots: the first push
                // that needs one sizes them all, so no later reordering
                // allocates.
                for s in &mut self.slots {
                    s.data.reserve(want.saturating_sub(s.data.len()));
                }
            }
        }
        let slot = &mut self.slots[idx];
        slot.used = true;
        slot.ext_seq = ext;
        slot.meta = Some(meta);
        slot.data.clear();
        slot.data.extend_from_slice(&payload[..len]);
        self.buffered += 1;
        Push::Stored
    }

    /// Releases the oldest buffered packet now, whatever the window, giving
    /// up on missing numbers before it (after [`Push::Full`]).
    pub fn pop_oldest(&mut self, out: &mut [u8; MAX_PAYLOAD]) -> Option<(PacketMeta, usize)> {
        self.drain(out)
    }

    /// Advances `next` to `to`, counting unbuffered numbers as lost and
    /// dropping buffered ones below `to` (they cannot be delivered in order
    /// any more).
    fn skip_to(&mut self, to: i64) {
        let Some(mut next) = self.next else { return };
        while next < to {
            let idx = self.slot_of(next);
            if self.slots[idx].used && self.slots[idx].ext_seq == next {
                // Buffered but overtaken: count as late.
                self.slots[idx].used = false;
                self.buffered -= 1;
                self.stats.late += 1;
            } else {
                self.stats.lost += 1;
            }
            self.released <<= 1;
            next += 1;
        }
        self.next = Some(next);
    }

    /// A new count begins at `meta` (nothing is buffered).
    fn start_over(&mut self, meta: &PacketMeta) {
        for s in &mut self.slots {
            s.used = false;
        }
        self.buffered = 0;
        self.released = 0;
        self.ssrc = Some(meta.ssrc);
        self.next = Some(i64::from(meta.seq));
        self.highest = i64::from(meta.seq);
        self.highest_seq = meta.seq;
        self.starting = self.hold_start.then_some(meta.arrival);
    }

    /// The next packet in order, if it is ready at `now`: it is the next
    /// expected number, or the oldest buffered packet has waited `window`
    /// (then the missing numbers before it are counted lost). `out` gets the
    /// payload; the metadata is returned.
    pub fn pop(
        &mut self,
        now: Instant,
        out: &mut [u8; MAX_PAYLOAD],
    ) -> Option<(PacketMeta, usize)> {
        let next = self.next?;
        if self.buffered == 0 {
            return None;
        }
        if let Some(first) = self.starting {
            if now.saturating_duration_since(first) < self.window {
                return None;
            }
            self.starting = None;
        }
        let idx = self.slot_of(next);
        if !(self.slots[idx].used && self.slots[idx].ext_seq == next) {
            // A gap: wait for the oldest buffered packet's deadline.
            let (oldest_ext, oldest_arrival) = self
                .slots
                .iter()
                .filter(|s| s.used)
                .filter_map(|s| s.meta.map(|m| (s.ext_seq, m.arrival)))
                .min_by_key(|(e, _)| *e)?;
            if now.saturating_duration_since(oldest_arrival) < self.window {
                return None;
            }
            self.skip_to(oldest_ext);
        }
        let next = self.next?;
        let idx = self.slot_of(next);
        let slot = &mut self.slots[idx];
        if !(slot.used && slot.ext_seq == next) {
            return None;
        }
        slot.used = false;
        self.buffered -= 1;
        self.next = Some(next + 1);
        self.released = (self.released << 1) | 1;
        let len = slot.data.len();
        out[..len].copy_from_slice(&slot.data);
        slot.meta.map(|m| (m, len))
    }

    /// When the next buffered packet becomes releasable (for a timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.buffered == 0 {
            return None;
        }
        self.slots
            .iter()
            .filter(|s| s.used)
            .filter_map(|s| s.meta.map(|m| m.arrival + self.window))
            .min()
    }

    /// Releases everything buffered, in order (stream end).
    pub fn drain(&mut self, out: &mut [u8; MAX_PAYLOAD]) -> Option<(PacketMeta, usize)> {
        if self.buffered == 0 {
            return None;
        }
        let far = Instant::now() + self.window + Duration::from_secs(3600);
        self.pop(far, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u16, at: Instant) -> PacketMeta {
        PacketMeta {
            seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 7,
            payload_type: 0,
            marker: false,
            arrival: at,
        }
    }

    impl ReorderBuffer {
        /// push, with forced releases ignored (the tests that care use push).
        fn push_t(&mut self, m: PacketMeta, p: &[u8]) -> bool {
            match self.push(m, p) {
                Push::Stored => true,
                Push::Dropped => false,
                Push::Full => panic!("unexpected full ring"),
            }
        }
    }

    fn released(b: &mut ReorderBuffer, now: Instant) -> Vec<u16> {
        let mut out = Box::new([0u8; MAX_PAYLOAD]);
        std::iter::from_fn(|| b.pop(now, &mut out).map(|(m, _)| m.seq)).collect()
    }

    #[test]
    fn in_order_passes_straight_through() {
        let t0 = Instant::now();
        let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
        for s in 0..5 {
            assert!(b.push_t(meta(s, t0), &[s as u8; 160]));
            assert_eq!(released(&mut b, t0), [s]);
        }
        assert_eq!(b.stats, ReorderStats::default());
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        let t0 = Instant::now();
        let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
        b.push_t(meta(10, t0), &[1]);
        assert_eq!(released(&mut b, t0), [10]);
        b.push_t(meta(12, t0), &[3]);
        b.push_t(meta(13, t0), &[4]);
        assert!(released(&mut b, t0).is_empty(), "waiting for 11");
        b.push_t(meta(11, t0 + Duration::from_millis(10)), &[2]);
        assert_eq!(
            released(&mut b, t0 + Duration::from_millis(10)),
            [11, 12, 13]
        );
        assert_eq!(b.stats.reordered, 1);
        assert_eq!(b.stats.lost, 0);
    }

    #[test]
    fn a_gap_is_given_up_after_the_window_and_counted_lost() {
        let t0 = Instant::now();
        let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
        b.push_t(meta(1, t0), &[0]);
        released(&mut b, t0);
        b.push_t(meta(4, t0 + Duration::from_millis(20)), &[0]);
        assert!(released(&mut b, t0 + Duration::from_millis(79)).is_empty());
        assert_eq!(released(&mut b, t0 + Duration::from_millis(80)), [4]);
        assert_eq!(b.stats.lost, 2);
        // 2 arriving now is late
        assert!(!b.push_t(meta(2, t0 + Duration::from_millis(90)), &[0]));
        assert_eq!(
            (b.stats.late, b.stats.duplicated),
            (1, 0),
            "lost then late, not a duplicate"
        );
    }

    #[test]
    fn duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
        b.push_t(meta(1, t0), &[0]);
        b.push_t(meta(3, t0), &[0]);
        assert!(!b.push_t(meta(3, t0), &[0]), "buffered duplicate");
        assert_eq!(released(&mut b, t0), [1]);
        assert!(!b.push_t(meta(1, t0), &[0]), "released duplicate");
        assert_eq!(b.stats.duplicated, 2);
    }

    #[test]
    fn full_ring_gives_up_on_missing_packets() {
        let t0 = Instant::now();
        let mut b = ReorderBuffer::new(4, Duration::from_secs(10));
        b.push_t(meta(0, t0), &[0]);
        released(&mut b, t0);
        // 1 never comes; 2..=6 arrive: the ring (4) cannot wait any longer.
        let mut got = Vec::new();
        for s in 2..=6 {
            let mut out = Box::new([0u8; MAX_PAYLOAD]);
            while b.push(meta(s, t0), &[0]) == Push::Full {
                got.extend(b.pop_oldest(&mut out).map(|(m, _)| m.seq));
            }
            got.extend(released(&mut b, t0));
        }
        // 2..=4 wait for 1; when 5 arrives the ring cannot wait any longer:
        // 1 is given up and everything flows in order.
        assert_eq!(got, [2, 3, 4, 5, 6]);
        assert_eq!(b.stats.lost, 1);
    }

    #[test]
    fn sequence_wrap_and_new_ssrc() {
        let t0 = Instant::now();
        let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
        let mut got = Vec::new();
        for s in [65534u16, 65535, 0, 1] {
            b.push_t(meta(s, t0), &[0]);
            got.extend(released(&mut b, t0));
        }
        assert_eq!(got, [65534, 65535, 0, 1]);
        let mut m = meta(500, t0);
        m.ssrc = 99;
        b.push_t(m, &[0]);
        assert_eq!(released(&mut b, t0), [500], "a new SSRC starts over");
        assert_eq!(b.stats.lost, 0);
    }

    #[test]
    fn payload_is_copied_out() {
        let t0 = Instant::now();
        let mut b = ReorderBuffer::new(4, Duration::from_millis(60));
        b.push_t(meta(1, t0), &[9, 8, 7]);
        let mut out = Box::new([0u8; MAX_PAYLOAD]);
        let (m, len) = b.pop(t0, &mut out).unwrap();
        assert_eq!((m.seq, &out[..len]), (1, &[9u8, 8, 7][..]));
    }

    #[test]
    fn the_in_order_shortcut_changes_nothing_but_the_copies() {
        // A stream with reordering, loss, duplicates and an SSRC change,
        // through push/pop only and through take_in_order first: the same
        // packets come out in the same order, with the same counters.
        let t0 = Instant::now();
        let mut seqs: Vec<(u16, u32)> = (0u16..400).map(|i| (i.wrapping_add(65000), 7)).collect();
        let mut x: u32 = 12345;
        for i in 0..seqs.len() - 1 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            match x % 17 {
                0 => seqs.swap(i, i + 1),
                1 => seqs[i].0 = seqs[i].0.wrapping_add(3),
                2 => seqs[i] = seqs[i.saturating_sub(1)],
                _ => {}
            }
        }
        for s in &mut seqs[300..] {
            s.1 = 8;
        }
        let run = |shortcut: bool, hold: bool| {
            let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
            if hold {
                b = b.hold_start();
            }
            let mut out = Vec::new();
            let mut buf = [0u8; MAX_PAYLOAD];
            for (i, (seq, ssrc)) in seqs.iter().enumerate() {
                let now = t0 + Duration::from_millis(20 * i as u64);
                let mut m = meta(*seq, now);
                m.ssrc = *ssrc;
                if shortcut && b.take_in_order(&m) {
                    out.push(m.seq);
                } else {
                    while b.push(m, &[1, 2, 3]) == Push::Full {
                        let (r, _) = b.pop_oldest(&mut buf).unwrap();
                        out.push(r.seq);
                    }
                }
                while let Some((r, _)) = b.pop(now, &mut buf) {
                    out.push(r.seq);
                }
            }
            while let Some((r, _)) = b.drain(&mut buf) {
                out.push(r.seq);
            }
            (out, b.stats)
        };
        for hold in [false, true] {
            let (plain, plain_stats) = run(false, hold);
            let (fast, fast_stats) = run(true, hold);
            assert!(plain.len() > 300);
            assert_eq!(fast, plain);
            assert_eq!(fast_stats, plain_stats);
        }
    }

    /// Pushes, releasing on `Full` as the recorder does; what came out.
    fn push_all(b: &mut ReorderBuffer, m: PacketMeta) -> Vec<u16> {
        let mut out = Box::new([0u8; MAX_PAYLOAD]);
        let mut got = Vec::new();
        while b.push(m, &[0]) == Push::Full {
            got.extend(b.pop_oldest(&mut out).map(|(m, _)| m.seq));
        }
        got
    }

    #[test]
    fn a_held_start_takes_a_packet_from_before_it() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut b = ReorderBuffer::new(8, Duration::from_millis(60)).hold_start();
        assert!(b.push_t(meta(11, t0), &[0]));
        assert!(released(&mut b, t0).is_empty(), "the start is held");
        assert!(
            b.push_t(meta(10, ms(2)), &[0]),
            "not late: the start moves back"
        );
        assert!(b.push_t(meta(12, ms(20)), &[0]));
        assert_eq!(b.next_deadline(), Some(ms(60)));
        assert!(released(&mut b, ms(59)).is_empty());
        assert_eq!(released(&mut b, ms(60)), [10, 11, 12]);
        // Then in order as usual; 9 is late now.
        assert!(b.take_in_order(&meta(13, ms(40))));
        assert!(!b.push_t(meta(9, ms(61)), &[0]));
        assert_eq!((b.stats.late, b.stats.lost), (1, 0));
        // A new SSRC is held again.
        let mut m = meta(700, ms(100));
        m.ssrc = 8;
        assert!(push_all(&mut b, m).is_empty());
        assert!(released(&mut b, ms(100)).is_empty());
        assert_eq!(released(&mut b, ms(160)), [700]);
    }

    #[test]
    fn a_new_count_releases_what_the_old_one_left_waiting() {
        let t0 = Instant::now();
        for hold in [false, true] {
            let mut b = ReorderBuffer::new(8, Duration::from_millis(60));
            if hold {
                b = b.hold_start();
            }
            b.push_t(meta(1, t0), &[0]);
            released(&mut b, t0 + Duration::from_secs(1));
            b.push_t(meta(3, t0), &[0]); // waits for 2
            let mut m = meta(500, t0);
            m.ssrc = 99;
            assert_eq!(push_all(&mut b, m), [3], "released, not thrown away");
            // A jump far ahead in the same SSRC does the same.
            let got = released(&mut b, t0 + Duration::from_secs(2));
            assert_eq!(got, [500]);
            b.push_t(meta(502, t0), &[0]); // waits for 501
            let mut m = meta(30_000, t0);
            m.ssrc = 99;
            assert_eq!(push_all(&mut b, m), [502]);
            assert_eq!(released(&mut b, t0 + Duration::from_secs(3)), [30_000]);
        }
    }
}
