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
mod tests;
