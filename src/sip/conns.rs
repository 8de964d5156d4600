//! Which SIP stream connections (TCP, TLS) may stay open, without IO.
//!
//! Every connection holds a descriptor, and descriptors are shared with the
//! RTP sockets, the WAV files, the index and the HTTP API. Without limits,
//! 21,000 idle connections from one address took them all (then calls got
//! a misleading `503 No Media Port Available` and the API stopped). So:
//!
//! - **head timeout**: a connection must complete its first message within
//!   it of opening, and every later message within it of that message's
//!   first byte (a client sending one byte a second is closed);
//! - **idle timeout**: a connection that carries no dialog and has had no
//!   complete message either way for that long is closed;
//! - **per-source cap**: at most this many connections without a dialog
//!   from one address; one more closes that address's least recently
//!   active connection without a dialog (a source can only crowd itself);
//! - **global cap**: at most this many connections in all; one more closes
//!   the least recently active connection without a dialog of the address
//!   holding the most of those, or is refused when every connection
//!   carries a dialog.
//!
//! A connection that carries a dialog (an SBC's, with calls being recorded)
//! is never closed by any of these.
//!
//! The IO layer reports opens, reads (messages completed, bytes pending),
//! writes, closes and which connections carry dialogs; this table answers
//! which to close. `H` is the IO layer's handle to close one.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::core::ConnId;

/// The limits, from `[sip]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    pub per_source: usize,
    pub max: usize,
}

/// Why a connection is closed by the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// A message was not completed within the head timeout.
    Head,
    /// No dialog and no message for the idle timeout.
    Idle,
    /// Its source reached the per-source cap and this was its least
    /// recently active connection without a dialog.
    PerSource,
    /// The global cap was reached and this was the one given up.
    Global,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Head => "head timeout",
            Why::Idle => "idle timeout",
            Why::PerSource => "per-source connection cap",
            Why::Global => "connection cap",
        }
    }
}

/// The answer to a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission<H> {
    /// Keep it; close these others first (to stay within the caps).
    Open(Vec<(ConnId, H, Why)>),
    /// Close it at once: every connection carries a dialog.
    Refused,
}

#[derive(Debug)]
struct Entry<H> {
    ip: IpAddr,
    handle: H,
    /// When it opened or last completed a message (either way).
    last: Instant,
    /// When the message being received started (its first byte; the
    /// opening for the first message), if one is incomplete.
    head_since: Option<Instant>,
    dialog: bool,
}

/// The open connections and their clocks.
#[derive(Debug)]
pub struct ConnTable<H> {
    limits: Limits,
    conns: HashMap<ConnId, Entry<H>>,
    /// Every connection of each address.
    by_source: HashMap<IpAddr, HashSet<ConnId>>,
    /// Connections without a dialog, per address.
    idle_by_source: HashMap<IpAddr, usize>,
}

impl<H: Clone> ConnTable<H> {
    pub fn new(limits: Limits) -> Self {
        ConnTable {
            limits,
            conns: HashMap::new(),
            by_source: HashMap::new(),
            idle_by_source: HashMap::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// A new connection from `ip`: kept (maybe at the cost of others,
    /// returned to be closed), or refused.
    pub fn admit(&mut self, now: Instant, id: ConnId, ip: IpAddr, handle: H) -> Admission<H> {
        let mut closed = Vec::new();
        if self.idle_by_source.get(&ip).copied().unwrap_or(0) >= self.limits.per_source.max(1) {
            if let Some(victim) = self.oldest_idle_of(ip) {
                closed.extend(self.take(victim, Why::PerSource));
            }
        }
        if self.conns.len() >= self.limits.max.max(1) {
            let hog = self
                .idle_by_source
                .iter()
                .filter(|(_, n)| **n > 0)
                .max_by_key(|(_, n)| **n)
                .map(|(ip, _)| *ip);
            match hog.and_then(|ip| self.oldest_idle_of(ip)) {
                Some(victim) => closed.extend(self.take(victim, Why::Global)),
                None => return Admission::Refused,
            }
        }
        self.conns.insert(
            id,
            Entry {
                ip,
                handle,
                last: now,
                head_since: Some(now),
                dialog: false,
            },
        );
        self.by_source.entry(ip).or_default().insert(id);
        *self.idle_by_source.entry(ip).or_default() += 1;
        Admission::Open(closed)
    }

    /// The least recently active connection without a dialog from `ip`.
    fn oldest_idle_of(&self, ip: IpAddr) -> Option<ConnId> {
        self.by_source
            .get(&ip)?
            .iter()
            .filter_map(|id| self.conns.get(id).map(|e| (id, e)))
            .filter(|(_, e)| !e.dialog)
            .min_by_key(|(id, e)| (e.last, **id))
            .map(|(id, _)| *id)
    }

    /// Forgets a connection (closed by either side, or by the table).
    pub fn closed(&mut self, id: ConnId) {
        self.take(id, Why::Idle);
    }

    fn take(&mut self, id: ConnId, why: Why) -> Option<(ConnId, H, Why)> {
        let e = self.conns.remove(&id)?;
        if let Some(set) = self.by_source.get_mut(&e.ip) {
            set.remove(&id);
            if set.is_empty() {
                self.by_source.remove(&e.ip);
            }
        }
        if !e.dialog {
            self.dec_idle(e.ip);
        }
        Some((id, e.handle, why))
    }

    fn dec_idle(&mut self, ip: IpAddr) {
        if let Some(n) = self.idle_by_source.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.idle_by_source.remove(&ip);
            }
        }
    }

    /// After a read: `messages` were completed, and `pending` says whether
    /// bytes of a further message are waiting for the rest.
    pub fn received(&mut self, now: Instant, id: ConnId, messages: usize, pending: bool) {
        let Some(e) = self.conns.get_mut(&id) else {
            return;
        };
        if messages > 0 {
            e.last = now;
            // What is pending started in this read.
            e.head_since = pending.then_some(now);
        } else if pending {
            e.head_since.get_or_insert(now);
        }
        // Else only keep-alive CRLFs came: they neither complete a message
        // nor count as traffic (a first message is still due in time).
    }

    /// A message was sent on the connection.
    pub fn sent(&mut self, now: Instant, id: ConnId) {
        if let Some(e) = self.conns.get_mut(&id) {
            e.last = now;
        }
    }

    /// Which connections carry a live dialog now (from the SIP core).
    pub fn set_dialogs(&mut self, in_use: &HashSet<ConnId>) {
        let mut changes = Vec::new();
        for (id, e) in &mut self.conns {
            let d = in_use.contains(id);
            if d != e.dialog {
                e.dialog = d;
                changes.push((e.ip, d));
            }
        }
        for (ip, d) in changes {
            if d {
                self.dec_idle(ip);
            } else {
                *self.idle_by_source.entry(ip).or_default() += 1;
            }
        }
    }

    /// The connections to close now for their timeouts (forgotten here).
    pub fn expired(&mut self, now: Instant) -> Vec<(ConnId, H, Why)> {
        let Limits {
            head_timeout,
            idle_timeout,
            ..
        } = self.limits;
        let due: Vec<(ConnId, Why)> = self
            .conns
            .iter()
            .filter_map(|(id, e)| {
                if e.head_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= head_timeout)
                {
                    Some((*id, Why::Head))
                } else if !e.dialog && now.saturating_duration_since(e.last) >= idle_timeout {
                    Some((*id, Why::Idle))
                } else {
                    None
                }
            })
            .collect();
        due.into_iter()
            .filter_map(|(id, why)| self.take(id, why))
            .collect()
    }

    /// Connections open from `ip` (for tests and logs).
    pub fn from_source(&self, ip: IpAddr) -> usize {
        self.by_source.get(&ip).map_or(0, HashSet::len)
    }
}

/// The global cap when `sip.max_connections` is 0: what the descriptor
/// limit leaves after a reserve for the media (an RTP and an RTCP socket,
/// a WAV and maybe an Ogg file per port pair: two per port of the range),
/// and 1,024 for the rest (HTTP clients, the index, logs, listeners,
/// threads). Never more than 10,000 (SBCs need a handful), never less
/// than 64, and at most a quarter of the limit when the limit is too low
/// for the media reserve (the media then cannot use the whole range
/// anyway; `srs serve` warns).
pub fn auto_max_connections(nofile: u64, rtp_ports: u64) -> usize {
    let reserve = 2 * rtp_ports + 1024;
    let left = nofile.saturating_sub(reserve);
    let cap = if left >= 64 { left } else { nofile / 4 };
    cap.clamp(64, 10_000) as usize
}

/// At most one log line per period; counts what was held back.
#[derive(Debug)]
pub struct LogEvery {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl LogEvery {
    pub fn new(period: Duration) -> Self {
        LogEvery {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the occurrences
    /// held back since the last one; `None` to stay quiet.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.period => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            per_source: 3,
            max: 5,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn opened(a: Admission<u64>) -> Vec<(ConnId, u64, Why)> {
        match a {
            Admission::Open(v) => v,
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn a_slow_or_silent_connection_meets_the_head_timeout() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = ConnTable::new(limits());
        opened(t.admit(t0, 1, ip(1), 1)); // never sends
        opened(t.admit(t0, 2, ip(1), 2)); // one byte a second
        opened(t.admit(t0, 3, ip(1), 3)); // a message, then a slow one
        t.received(s(1), 3, 1, false);
        for n in 1..10 {
            t.received(s(n), 2, 0, true);
        }
        t.received(s(5), 3, 0, true);
        assert!(t.expired(s(9)).is_empty());
        let mut gone: Vec<_> = t.expired(s(10)).into_iter().map(|c| (c.0, c.2)).collect();
        gone.sort();
        assert_eq!(gone, [(1, Why::Head), (2, Why::Head)]);
        // The third started its second message at 5 s.
        assert_eq!(t.expired(s(15)), [(3, 3, Why::Head)]);
        assert!(t.is_empty());
    }

    #[test]
    fn idle_connections_close_unless_they_carry_a_dialog() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = ConnTable::new(limits());
        opened(t.admit(t0, 1, ip(1), 1));
        opened(t.admit(t0, 2, ip(1), 2));
        t.received(s(1), 1, 1, false);
        t.received(s(1), 2, 1, false);
        t.set_dialogs(&HashSet::from([2]));
        // Traffic either way keeps a connection.
        t.sent(s(60), 1);
        assert!(t.expired(s(121)).is_empty());
        assert_eq!(t.expired(s(180)), [(1, 1, Why::Idle)]);
        // The dialog's connection stays however quiet it is...
        assert!(t.expired(s(10_000)).is_empty());
        // ...until its dialog ends.
        t.set_dialogs(&HashSet::new());
        assert_eq!(t.expired(s(10_000)), [(2, 2, Why::Idle)]);
    }

    #[test]
    fn keepalives_are_not_traffic() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = ConnTable::new(limits());
        opened(t.admit(t0, 1, ip(1), 1));
        opened(t.admit(t0, 2, ip(1), 2));
        t.received(s(1), 1, 1, false);
        // Keep-alive CRLFs only: no head clock starts, none is reset.
        for n in 2..200 {
            t.received(s(n), 1, 0, false);
            t.received(s(n), 2, 0, false);
        }
        assert_eq!(t.expired(s(10)), [(2, 2, Why::Head)]);
        assert!(t.expired(s(120)).is_empty());
        assert_eq!(t.expired(s(121)), [(1, 1, Why::Idle)]);
    }

    #[test]
    fn a_source_at_its_cap_loses_its_own_least_active_connection() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = ConnTable::new(limits());
        for id in 1..=3 {
            opened(t.admit(s(id), id, ip(1), id));
        }
        t.received(s(4), 1, 1, false); // 1 is the most recently active now
        assert_eq!(opened(t.admit(s(5), 4, ip(1), 4)), [(2, 2, Why::PerSource)]);
        assert_eq!(t.from_source(ip(1)), 3);
        // Connections carrying dialogs do not count towards the cap.
        t.set_dialogs(&HashSet::from([1, 3, 4]));
        assert!(opened(t.admit(s(6), 5, ip(1), 5)).is_empty());
        assert!(opened(t.admit(s(6), 6, ip(2), 6)).is_empty());
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn the_global_cap_takes_from_the_biggest_holder_then_refuses() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut t = ConnTable::new(limits());
        opened(t.admit(s(1), 1, ip(2), 1));
        for id in 2..=4 {
            opened(t.admit(s(id), id, ip(1), id));
        }
        opened(t.admit(s(5), 5, ip(3), 5));
        // Full (5): a newcomer costs ip(1), the biggest holder, its oldest.
        assert_eq!(opened(t.admit(s(6), 6, ip(4), 6)), [(2, 2, Why::Global)]);
        assert_eq!(t.len(), 5);
        // Every connection carries a dialog: nobody is cut, the new one is refused.
        t.set_dialogs(&HashSet::from([1, 3, 4, 5, 6]));
        assert_eq!(t.admit(s(7), 7, ip(5), 7), Admission::Refused);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn the_automatic_cap_leaves_the_media_its_descriptors() {
        // 20,000 RTP ports take 40,000 descriptors, plus 1,024 for the rest.
        assert_eq!(auto_max_connections(1 << 20, 20_000), 10_000);
        assert_eq!(auto_max_connections(45_000, 20_000), 45_000 - 41_024);
        // A limit too low for the media: a quarter of it, at least 64.
        assert_eq!(auto_max_connections(20_000, 20_000), 5_000);
        assert_eq!(auto_max_connections(1_024, 20_000), 256);
        assert_eq!(auto_max_connections(100, 20_000), 64);
    }

    #[test]
    fn log_every_holds_back_and_counts() {
        let t0 = Instant::now();
        let mut l = LogEvery::new(Duration::from_secs(10));
        assert_eq!(l.hit(t0), Some(0));
        for i in 1..=1000 {
            assert_eq!(l.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(l.hit(t0 + Duration::from_secs(10)), Some(1000));
    }
}
