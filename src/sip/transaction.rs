//! SIP transaction state machines (RFC 3261 §17, RFC 6026), sans-IO.
//!
//! Every machine is a plain struct. Time is passed in as
//! [`Instant`]; nothing here reads the clock or touches a socket. Each
//! input method returns the [`Action`]s the owner must carry out, and each
//! machine exposes `poll_timeout()` (when it next wants
//! `handle_timeout(now)` to be called) in the style of quinn-proto.
//!
//! # Machines and states
//!
//! * [`ServerInvite`] (§17.2.1, Fig. 7, with RFC 6026 §7.1):
//!   `Proceeding -> Completed -> Confirmed -> Terminated` for a non-2xx
//!   final response, `Proceeding -> Accepted -> Terminated` for a 2xx.
//! * [`ServerNonInvite`] (§17.2.2, Fig. 8):
//!   `Trying -> Proceeding -> Completed -> Terminated`.
//! * [`ClientNonInvite`] (§17.1.2, Fig. 6), for the BYE and UPDATE the
//!   server sends: `Trying -> Proceeding -> Completed -> Terminated`.
//! * [`UasTwoXxRetransmitter`] (§13.3.1.4): the UAS core's 2xx
//!   retransmission until the ACK arrives.
//! * [`ServerTxns`]: a table of server transactions keyed by [`TxnKey`]
//!   (§17.2.3), with one earliest timeout for all of them.
//!
//! # Timers
//!
//! | Timer | RFC value             | Unreliable (UDP)              | Reliable (TCP/TLS)   | Machine |
//! |-------|-----------------------|-------------------------------|----------------------|---------|
//! | E     | T1, doubling to T2    | retransmit request; T2 once in Proceeding | not used | [`ClientNonInvite`] |
//! | F     | 64*T1                 | 64*T1 -> [`Action::Timeout`]  | 64*T1                | [`ClientNonInvite`] |
//! | K     | T4                    | T4 (absorb retransmitted responses) | 0              | [`ClientNonInvite`] |
//! | G     | T1, doubling to T2    | retransmit non-2xx final      | not used             | [`ServerInvite`] |
//! | H     | 64*T1                 | 64*T1 -> [`Action::Timeout`]  | 64*T1                | [`ServerInvite`] |
//! | I     | T4                    | T4 (absorb ACK retransmissions) | 0                  | [`ServerInvite`] |
//! | L     | 64*T1 (RFC 6026)      | 64*T1                         | 64*T1                | [`ServerInvite`] |
//! | J     | 64*T1                 | 64*T1                         | 0                    | [`ServerNonInvite`] |
//! | 2xx   | T1 doubling to T2, give up at 64*T1 | retransmit 2xx  | give-up only, unless `retransmit_on_reliable` | [`UasTwoXxRetransmitter`] |
//!
//! Defaults: T1 = 500 ms, T2 = 4 s, T4 = 5 s ([`Timers::default`]). A timer
//! that is 0 takes effect at once: the input that starts it returns
//! [`Action::Terminated`] itself.
//!
//! Retransmission timers are scheduled from their previous deadline, so the
//! schedule is exact (500, 1500, 3500, 7500, 11500 ms, ...) even if
//! `handle_timeout` runs a little late; one that runs later than a whole
//! interval sends once and reschedules from `now`.
//!
//! Not implemented: the client INVITE transaction (Timers A, B, D, M; the
//! server never sends INVITE), transport-error handling (§17.1.4/§17.2.4,
//! the owner can drop the transaction), and 100rel provisional
//! retransmission (RFC 3262).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::deadlines::Deadlines;
use super::message::{header_param, Message, Method, StartLine};

/// The magic cookie that starts an RFC 3261 branch (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Shortest retransmission interval used, so that zero timers cannot make
/// the owner spin.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// The RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms by default.
    pub t1: Duration,
    /// Longest retransmission interval for non-INVITE requests and INVITE
    /// responses, 4 s by default.
    pub t2: Duration,
    /// Longest time a message stays in the network, 5 s by default.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: Timers B, F, H, J, L and the 2xx give-up time.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// Whether the transport retransmits for us (§17: "reliable" is TCP, TLS,
/// SCTP; "unreliable" is UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// UDP: the transaction retransmits and keeps absorbing timers.
    Unreliable,
    /// TCP/TLS: no retransmissions, absorbing timers are 0.
    Reliable,
}

/// Why a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationReason {
    /// It ran its course (Timer I, J, K or L fired, a zero timer on a
    /// reliable transport, or the ACK stopped a 2xx retransmitter).
    Completed,
    /// Timer H, Timer F or the 2xx give-up time fired; an
    /// [`Action::Timeout`] came just before.
    Timeout,
}

/// What the owner of a transaction must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send these bytes to the transaction's peer.
    Send(Bytes),
    /// Client transactions: a response for the TU.
    Deliver(Message),
    /// Server INVITE in Accepted (RFC 6026): the ACK just given matched the
    /// transaction but belongs to the TU; pass it on.
    PassToTu,
    /// The transaction timed out (Timer F or H, or no ACK for a 2xx). For a
    /// client transaction the TU treats this as a 408 (§8.1.3.1).
    Timeout,
    /// The transaction is finished; the owner may drop it.
    Terminated(TerminationReason),
}

/// `now + d`, or `None` ("never") if that is past what `Instant` holds.
fn after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// Whether an optional deadline has been reached.
fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

/// Earliest of two optional deadlines.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A retransmission timer with a growing interval (Timers E, G, and 2xx).
#[derive(Debug, Clone, Copy)]
struct Backoff {
    next: Option<Instant>,
    interval: Duration,
}

impl Backoff {
    /// First firing at `now + t1`.
    fn start(now: Instant, t1: Duration) -> Self {
        let interval = t1.max(MIN_INTERVAL);
        Backoff {
            next: after(now, interval),
            interval,
        }
    }

    fn off() -> Self {
        Backoff {
            next: None,
            interval: Duration::ZERO,
        }
    }

    /// The timer fired; the next firing is `interval` after the deadline
    /// that fired (or after `now`, if that is already past).
    fn advance(&mut self, now: Instant, interval: Duration) {
        let interval = interval.max(MIN_INTERVAL);
        self.interval = interval;
        let from_deadline = self.next.and_then(|n| after(n, interval));
        self.next = match from_deadline {
            Some(n) if n > now => Some(n),
            _ => after(now, interval),
        };
    }

    /// MIN(2 * previous, T2).
    fn doubled(&self, t2: Duration) -> Duration {
        self.interval.saturating_mul(2).min(t2)
    }
}

// ---------------------------------------------------------------------------
// Server INVITE
// ---------------------------------------------------------------------------

/// States of a [`ServerInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// Request received, no final response yet.
    Proceeding,
    /// A 2xx was sent (RFC 6026); Timer L runs.
    Accepted,
    /// A 300-699 was sent; Timers G and H run until the ACK.
    Completed,
    /// The ACK arrived; Timer I absorbs ACK retransmissions.
    Confirmed,
    /// Finished.
    Terminated,
}

/// Server INVITE transaction (§17.2.1, Fig. 7; Accepted state from
/// RFC 6026 §7.1).
///
/// The transaction does not send 100 Trying by itself: the owner calls
/// [`ServerInvite::send_provisional`] (§17.2.1 lets the TU do it).
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliability: Reliability,
    timers: Timers,
    last_response: Option<Bytes>,
    /// Timer G.
    retransmit: Backoff,
    /// Timer H, I or L, depending on the state.
    end: Option<Instant>,
}

impl ServerInvite {
    /// A transaction for an INVITE that just arrived (state Proceeding).
    pub fn new(_now: Instant, reliability: Reliability, timers: Timers) -> Self {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            reliability,
            timers,
            last_response: None,
            retransmit: Backoff::off(),
            end: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// The TU sends a 1xx (100 Trying, 180 Ringing...). Ignored once a
    /// final response was sent.
    pub fn send_provisional(&mut self, _now: Instant, resp: Bytes) -> Vec<Action> {
        if self.state != ServerInviteState::Proceeding {
            return Vec::new();
        }
        self.last_response = Some(resp.clone());
        vec![Action::Send(resp)]
    }

    /// The TU sends a final response with status `code`.
    ///
    /// * 2xx in Proceeding: sent, state Accepted, Timer L starts.
    /// * 2xx in Accepted: sent (the TU's own retransmission or a fresh 2xx),
    ///   and it becomes the response replayed to INVITE retransmissions.
    /// * 300-699 in Proceeding: sent, state Completed, Timers G
    ///   (unreliable only) and H start.
    /// * A 1xx `code` is treated as [`ServerInvite::send_provisional`];
    ///   anything else is ignored.
    pub fn send_final(&mut self, now: Instant, code: u16, resp: Bytes) -> Vec<Action> {
        match (self.state, code) {
            (_, 100..=199) => self.send_provisional(now, resp),
            (ServerInviteState::Proceeding, 200..=299) => {
                self.state = ServerInviteState::Accepted;
                self.end = after(now, self.timers.t1x64());
                self.last_response = Some(resp.clone());
                vec![Action::Send(resp)]
            }
            (ServerInviteState::Accepted, 200..=299) => {
                self.last_response = Some(resp.clone());
                vec![Action::Send(resp)]
            }
            (ServerInviteState::Proceeding, 300..=699) => {
                self.state = ServerInviteState::Completed;
                if self.reliability == Reliability::Unreliable {
                    self.retransmit = Backoff::start(now, self.timers.t1);
                }
                self.end = after(now, self.timers.t1x64());
                self.last_response = Some(resp.clone());
                vec![Action::Send(resp)]
            }
            _ => Vec::new(),
        }
    }

    /// A retransmission of the INVITE arrived: resend the last response
    /// (the latest 1xx in Proceeding, the final in Completed, the 2xx in
    /// Accepted); absorbed otherwise.
    pub fn on_retransmitted_request(&mut self, _now: Instant) -> Vec<Action> {
        match self.state {
            ServerInviteState::Proceeding
            | ServerInviteState::Completed
            | ServerInviteState::Accepted => self
                .last_response
                .clone()
                .map(Action::Send)
                .into_iter()
                .collect(),
            ServerInviteState::Confirmed | ServerInviteState::Terminated => Vec::new(),
        }
    }

    /// An ACK matched this transaction.
    ///
    /// * Completed: state Confirmed, retransmissions stop, Timer I starts
    ///   (T4 unreliable; 0 reliable, so `Terminated` comes back at once).
    /// * Accepted: [`Action::PassToTu`] (RFC 6026: the ACK is for the TU).
    /// * Otherwise absorbed.
    pub fn on_ack(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            ServerInviteState::Completed => {
                self.retransmit = Backoff::off();
                match self.reliability {
                    Reliability::Unreliable => {
                        self.state = ServerInviteState::Confirmed;
                        self.end = after(now, self.timers.t4);
                        Vec::new()
                    }
                    Reliability::Reliable => self.terminate(TerminationReason::Completed),
                }
            }
            ServerInviteState::Accepted => vec![Action::PassToTu],
            _ => Vec::new(),
        }
    }

    /// When [`ServerInvite::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ServerInviteState::Terminated => None,
            _ => earliest(self.retransmit.next, self.end),
        }
    }

    /// Fires the timers that are due at `now`.
    ///
    /// Timer G resends the final; Timer H gives [`Action::Timeout`] then
    /// `Terminated(Timeout)`; Timers I and L give `Terminated(Completed)`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            ServerInviteState::Completed => {
                if due(self.end, now) {
                    let mut out = vec![Action::Timeout];
                    out.extend(self.terminate(TerminationReason::Timeout));
                    return out;
                }
                if due(self.retransmit.next, now) {
                    let interval = self.retransmit.doubled(self.timers.t2);
                    self.retransmit.advance(now, interval);
                    return self
                        .last_response
                        .clone()
                        .map(Action::Send)
                        .into_iter()
                        .collect();
                }
                Vec::new()
            }
            ServerInviteState::Confirmed | ServerInviteState::Accepted if due(self.end, now) => {
                self.terminate(TerminationReason::Completed)
            }
            _ => Vec::new(),
        }
    }

    fn terminate(&mut self, reason: TerminationReason) -> Vec<Action> {
        self.state = ServerInviteState::Terminated;
        self.retransmit = Backoff::off();
        self.end = None;
        vec![Action::Terminated(reason)]
    }
}

// ---------------------------------------------------------------------------
// Server non-INVITE
// ---------------------------------------------------------------------------

/// States of a [`ServerNonInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Request received, nothing sent; retransmissions are absorbed.
    Trying,
    /// A 1xx was sent; retransmissions get it again.
    Proceeding,
    /// A final was sent; Timer J runs; retransmissions get the final.
    Completed,
    /// Finished.
    Terminated,
}

/// Server non-INVITE transaction (§17.2.2, Fig. 8).
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliability: Reliability,
    timers: Timers,
    last_response: Option<Bytes>,
    /// Timer J.
    end: Option<Instant>,
}

impl ServerNonInvite {
    /// A transaction for a request that just arrived (state Trying).
    pub fn new(_now: Instant, reliability: Reliability, timers: Timers) -> Self {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            reliability,
            timers,
            last_response: None,
            end: None,
        }
    }

    /// Current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// The TU sends a 1xx: state Proceeding. Ignored after a final.
    pub fn send_provisional(&mut self, _now: Instant, resp: Bytes) -> Vec<Action> {
        match self.state {
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding => {
                self.state = ServerNonInviteState::Proceeding;
                self.last_response = Some(resp.clone());
                vec![Action::Send(resp)]
            }
            _ => Vec::new(),
        }
    }

    /// The TU sends a final response (200-699): state Completed with Timer J
    /// (64*T1 unreliable; 0 reliable, so `Terminated` comes back at once
    /// after the `Send`). A 1xx `code` is treated as a provisional; anything
    /// else, or a final after the first, is ignored.
    pub fn send_final(&mut self, now: Instant, code: u16, resp: Bytes) -> Vec<Action> {
        if (100..200).contains(&code) {
            return self.send_provisional(now, resp);
        }
        if !(200..700).contains(&code)
            || !matches!(
                self.state,
                ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
            )
        {
            return Vec::new();
        }
        self.last_response = Some(resp.clone());
        let mut out = vec![Action::Send(resp)];
        match self.reliability {
            Reliability::Unreliable => {
                self.state = ServerNonInviteState::Completed;
                self.end = after(now, self.timers.t1x64());
            }
            Reliability::Reliable => out.extend(self.terminate()),
        }
        out
    }

    /// A retransmission of the request arrived: absorbed in Trying, answered
    /// with the last response in Proceeding and Completed.
    pub fn on_retransmitted_request(&mut self, _now: Instant) -> Vec<Action> {
        match self.state {
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => self
                .last_response
                .clone()
                .map(Action::Send)
                .into_iter()
                .collect(),
            ServerNonInviteState::Trying | ServerNonInviteState::Terminated => Vec::new(),
        }
    }

    /// When [`ServerNonInvite::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ServerNonInviteState::Completed => self.end,
            _ => None,
        }
    }

    /// Fires Timer J: `Terminated(Completed)`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if self.state == ServerNonInviteState::Completed && due(self.end, now) {
            return self.terminate();
        }
        Vec::new()
    }

    fn terminate(&mut self) -> Vec<Action> {
        self.state = ServerNonInviteState::Terminated;
        self.end = None;
        vec![Action::Terminated(TerminationReason::Completed)]
    }
}

// ---------------------------------------------------------------------------
// Client non-INVITE
// ---------------------------------------------------------------------------

/// States of a [`ClientNonInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent, no response yet; Timers E and F run.
    Trying,
    /// A 1xx arrived; Timer E continues at T2, Timer F runs.
    Proceeding,
    /// A final arrived; Timer K absorbs response retransmissions.
    Completed,
    /// Finished.
    Terminated,
}

/// Client non-INVITE transaction (§17.1.2, Fig. 6), for the BYE and
/// UPDATE the server sends.
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    reliability: Reliability,
    timers: Timers,
    request: Bytes,
    /// Timer E.
    retransmit: Backoff,
    /// Timer F, then Timer K.
    end: Option<Instant>,
}

impl ClientNonInvite {
    /// Starts the transaction: returns it with the first
    /// [`Action::Send`] of `request`. Timer E (unreliable only) and Timer F
    /// start now.
    pub fn new(
        now: Instant,
        request: Bytes,
        reliability: Reliability,
        timers: Timers,
    ) -> (Self, Vec<Action>) {
        let retransmit = match reliability {
            Reliability::Unreliable => Backoff::start(now, timers.t1),
            Reliability::Reliable => Backoff::off(),
        };
        let txn = ClientNonInvite {
            state: ClientNonInviteState::Trying,
            reliability,
            timers,
            request: request.clone(),
            retransmit,
            end: after(now, timers.t1x64()),
        };
        (txn, vec![Action::Send(request)])
    }

    /// Current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// A response matched this transaction (by the caller, §17.1.3).
    ///
    /// * 1xx in Trying or Proceeding: [`Action::Deliver`], state Proceeding.
    /// * 200-699 in Trying or Proceeding: [`Action::Deliver`], state
    ///   Completed with Timer K (T4 unreliable; 0 reliable, so
    ///   `Terminated` follows at once).
    /// * Anything in Completed or Terminated, or a request, is absorbed.
    pub fn on_response(&mut self, now: Instant, msg: Message) -> Vec<Action> {
        let StartLine::Response { code, .. } = msg.start else {
            return Vec::new();
        };
        if !matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        ) {
            return Vec::new();
        }
        match code {
            100..=199 => {
                self.state = ClientNonInviteState::Proceeding;
                vec![Action::Deliver(msg)]
            }
            200..=699 => {
                self.retransmit = Backoff::off();
                let mut out = vec![Action::Deliver(msg)];
                match self.reliability {
                    Reliability::Unreliable => {
                        self.state = ClientNonInviteState::Completed;
                        self.end = after(now, self.timers.t4);
                    }
                    Reliability::Reliable => {
                        out.extend(self.terminate(TerminationReason::Completed));
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// When [`ClientNonInvite::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ClientNonInviteState::Terminated => None,
            _ => earliest(self.retransmit.next, self.end),
        }
    }

    /// Fires the timers due at `now`: Timer F gives [`Action::Timeout`] then
    /// `Terminated(Timeout)`; Timer E resends the request (next interval
    /// MIN(2*previous, T2) in Trying, T2 in Proceeding); Timer K gives
    /// `Terminated(Completed)`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding => {
                if due(self.end, now) {
                    let mut out = vec![Action::Timeout];
                    out.extend(self.terminate(TerminationReason::Timeout));
                    return out;
                }
                if due(self.retransmit.next, now) {
                    let interval = if self.state == ClientNonInviteState::Trying {
                        self.retransmit.doubled(self.timers.t2)
                    } else {
                        self.timers.t2
                    };
                    self.retransmit.advance(now, interval);
                    return vec![Action::Send(self.request.clone())];
                }
                Vec::new()
            }
            ClientNonInviteState::Completed if due(self.end, now) => {
                self.terminate(TerminationReason::Completed)
            }
            _ => Vec::new(),
        }
    }

    fn terminate(&mut self, reason: TerminationReason) -> Vec<Action> {
        self.state = ClientNonInviteState::Terminated;
        self.retransmit = Backoff::off();
        self.end = None;
        vec![Action::Terminated(reason)]
    }
}

// ---------------------------------------------------------------------------
// 2xx retransmission by the UAS core
// ---------------------------------------------------------------------------

/// The UAS core's 2xx retransmission (§13.3.1.4): the 2xx is resent at T1,
/// then at intervals doubling up to T2, until the ACK arrives; after 64*T1
/// without ACK it reports [`Action::Timeout`] (the TU should then send BYE).
///
/// The first 2xx is sent by the server transaction; this only retransmits.
/// On a reliable transport only the give-up timer runs unless
/// [`UasTwoXxRetransmitter::retransmit_on_reliable`] is set (the RFC asks
/// for retransmission end to end even over TCP, since a proxy may use UDP).
#[derive(Debug, Clone)]
pub struct UasTwoXxRetransmitter {
    response: Bytes,
    reliability: Reliability,
    timers: Timers,
    started: Instant,
    retransmit: Backoff,
    give_up: Option<Instant>,
    finished: bool,
}

impl UasTwoXxRetransmitter {
    /// Starts retransmitting `resp` (just sent at `now`).
    pub fn new(now: Instant, resp: Bytes, reliability: Reliability, timers: Timers) -> Self {
        let retransmit = match reliability {
            Reliability::Unreliable => Backoff::start(now, timers.t1),
            Reliability::Reliable => Backoff::off(),
        };
        UasTwoXxRetransmitter {
            response: resp,
            reliability,
            timers,
            started: now,
            retransmit,
            give_up: after(now, timers.t1x64()),
            finished: false,
        }
    }

    /// Whether to retransmit on a reliable transport too (default false).
    /// The schedule still counts from the `now` given to `new`.
    pub fn retransmit_on_reliable(mut self, yes: bool) -> Self {
        if self.reliability == Reliability::Reliable && !self.finished {
            self.retransmit = if yes {
                Backoff::start(self.started, self.timers.t1)
            } else {
                Backoff::off()
            };
        }
        self
    }

    /// Whether the ACK arrived or the retransmitter gave up.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The ACK arrived: stop. Returns `Terminated(Completed)` the first time.
    pub fn on_ack(&mut self) -> Vec<Action> {
        if self.finished {
            return Vec::new();
        }
        self.finish();
        vec![Action::Terminated(TerminationReason::Completed)]
    }

    /// When [`UasTwoXxRetransmitter::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        earliest(self.retransmit.next, self.give_up)
    }

    /// Resends the 2xx when due; at 64*T1 gives [`Action::Timeout`] then
    /// `Terminated(Timeout)`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        if self.finished {
            return Vec::new();
        }
        if due(self.give_up, now) {
            self.finish();
            return vec![
                Action::Timeout,
                Action::Terminated(TerminationReason::Timeout),
            ];
        }
        if due(self.retransmit.next, now) {
            let interval = self.retransmit.doubled(self.timers.t2);
            self.retransmit.advance(now, interval);
            return vec![Action::Send(self.response.clone())];
        }
        Vec::new()
    }

    fn finish(&mut self) {
        self.finished = true;
        self.retransmit = Backoff::off();
        self.give_up = None;
    }
}

// ---------------------------------------------------------------------------
// Matching (§17.2.3)
// ---------------------------------------------------------------------------

/// Identifies a server transaction (§17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnKey {
    /// RFC 3261 matching: the top Via branch (with the magic cookie), its
    /// sent-by, and the method (ACK counted as INVITE); and, beyond
    /// §17.2.3, the Call-ID. Every request of one transaction carries the
    /// same Call-ID, so a true retransmission always matches; a client that
    /// reuses a branch from the same address and port within Timer J (a
    /// counter reset by a restart, a test tool with a fixed branch) would
    /// otherwise get the earlier request's response for a new request of
    /// another call, and that BYE would never end its recording.
    Rfc3261 {
        /// The branch parameter, as received.
        branch: String,
        /// `host[:port]` of the top Via, lower case, without white space.
        sent_by: String,
        /// Call-ID, trimmed.
        call_id: String,
        /// Method of the request that created the transaction.
        method: Method,
    },
    /// RFC 2543 fallback, for a branch without the magic cookie.
    ///
    /// The To tag is left out for INVITE (and so ACK and the cancelled
    /// INVITE): an ACK carries the tag of our response, which the INVITE
    /// did not have (§17.2.3), and Call-ID, From tag and CSeq number already
    /// single out the INVITE.
    Rfc2543 {
        /// Request-URI, as received.
        request_uri: String,
        /// To tag (non-INVITE only).
        to_tag: Option<String>,
        /// From tag.
        from_tag: Option<String>,
        /// Call-ID.
        call_id: String,
        /// CSeq number.
        cseq: u32,
        /// The whole top Via value, trimmed.
        top_via: String,
        /// Method of the request that created the transaction.
        method: Method,
    },
}

/// The top Via value (first of the first Via header), trimmed.
fn top_via(msg: &Message) -> Option<&str> {
    let via = msg.header("Via")?;
    let top = via.split(',').next()?.trim();
    (!top.is_empty()).then_some(top)
}

/// The sent-by of a Via value: `host[:port]` after `SIP/2.0/transport`,
/// lower case, white space removed.
fn sent_by(via: &str) -> Option<String> {
    let before_params = via.split(';').next()?;
    // sent-protocol = name SLASH version SLASH transport, LWS allowed
    // around the slashes; the sent-by follows the transport token.
    let mut rest = before_params;
    for _ in 0..2 {
        let slash = rest.find('/')?;
        rest = &rest[slash + 1..];
    }
    let rest = rest.trim_start();
    let transport_end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '!'))
        .unwrap_or(rest.len());
    let by: String = rest[transport_end..]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    (!by.is_empty()).then_some(by)
}

fn key_with_method(msg: &Message, method: Method) -> Option<TxnKey> {
    let via = top_via(msg)?;
    let branch = header_param(via, "branch").unwrap_or("");
    if branch.starts_with(MAGIC_COOKIE) {
        return Some(TxnKey::Rfc3261 {
            branch: branch.to_string(),
            sent_by: sent_by(via)?,
            call_id: msg.call_id()?.trim().to_string(),
            method,
        });
    }
    let to_tag = if method == Method::Invite {
        None
    } else {
        msg.to_tag().map(str::to_string)
    };
    Some(TxnKey::Rfc2543 {
        request_uri: msg.request_uri()?.trim().to_string(),
        to_tag,
        from_tag: msg.from_tag().map(str::to_string),
        call_id: msg.call_id()?.trim().to_string(),
        cseq: msg.cseq()?.0,
        top_via: via.to_string(),
        method,
    })
}

/// The key of the server transaction a request belongs to (§17.2.3): an
/// ACK maps to its INVITE's transaction; every other method, CANCEL
/// included, keys its own transaction (a CANCEL is answered by its own
/// non-INVITE transaction; see [`cancelled_key`] for the INVITE it
/// cancels). `None` for responses and requests without a usable Via
/// (or, for the RFC 2543 fallback, without Call-ID or CSeq).
pub fn server_key(msg: &Message) -> Option<TxnKey> {
    let method = match msg.method()? {
        Method::Ack => Method::Invite,
        m => m.clone(),
    };
    key_with_method(msg, method)
}

/// For a CANCEL, the key of the INVITE server transaction it cancels
/// (§9.2: matched as in §17.2.3 with the method taken as INVITE). `None`
/// for other messages.
pub fn cancelled_key(msg: &Message) -> Option<TxnKey> {
    match msg.method()? {
        Method::Cancel => key_with_method(msg, Method::Invite),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Table of server transactions
// ---------------------------------------------------------------------------

/// A server transaction of either kind, as held by [`ServerTxns`].
#[derive(Debug, Clone)]
pub enum ServerTxn {
    /// An INVITE server transaction.
    Invite(ServerInvite),
    /// A non-INVITE server transaction.
    NonInvite(ServerNonInvite),
}

impl ServerTxn {
    /// Sends a provisional response through the transaction.
    pub fn send_provisional(&mut self, now: Instant, resp: Bytes) -> Vec<Action> {
        match self {
            ServerTxn::Invite(t) => t.send_provisional(now, resp),
            ServerTxn::NonInvite(t) => t.send_provisional(now, resp),
        }
    }

    /// Sends a final response through the transaction.
    pub fn send_final(&mut self, now: Instant, code: u16, resp: Bytes) -> Vec<Action> {
        match self {
            ServerTxn::Invite(t) => t.send_final(now, code, resp),
            ServerTxn::NonInvite(t) => t.send_final(now, code, resp),
        }
    }

    /// A retransmission of the creating request arrived.
    pub fn on_retransmitted_request(&mut self, now: Instant) -> Vec<Action> {
        match self {
            ServerTxn::Invite(t) => t.on_retransmitted_request(now),
            ServerTxn::NonInvite(t) => t.on_retransmitted_request(now),
        }
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ServerTxn::Invite(t) => t.poll_timeout(),
            ServerTxn::NonInvite(t) => t.poll_timeout(),
        }
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self {
            ServerTxn::Invite(t) => t.handle_timeout(now),
            ServerTxn::NonInvite(t) => t.handle_timeout(now),
        }
    }

    /// Whether the transaction reached Terminated.
    pub fn is_terminated(&self) -> bool {
        match self {
            ServerTxn::Invite(t) => t.state() == ServerInviteState::Terminated,
            ServerTxn::NonInvite(t) => t.state() == ServerNonInviteState::Terminated,
        }
    }
}

#[derive(Debug)]
struct Entry {
    txn: ServerTxn,
    /// When inserted: the deadline reported for an entry that terminated
    /// through `get_mut`, so that the next `handle_timeout` collects it.
    inserted: Instant,
}

/// The server transactions of one SIP core: routes requests to them, gives
/// the earliest timeout across all of them, and drops terminated ones.
///
/// A transaction that terminates inside [`ServerTxns::on_request`] or
/// [`ServerTxns::handle_timeout`] is removed at once. One that terminates
/// through [`ServerTxns::get_mut`] is removed by the next `on_request` for
/// its key or the next `handle_timeout` (its `poll_timeout` contribution is
/// then already due).
#[derive(Debug, Default)]
pub struct ServerTxns {
    txns: HashMap<TxnKey, Entry>,
    /// The deadline of each transaction: O(log n) per timer instead of a
    /// scan.
    deadlines: Deadlines<TxnKey>,
}

impl ServerTxns {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a transaction (normally keyed by [`server_key`] of the request
    /// that created it), replacing and returning any with the same key.
    pub fn insert(&mut self, now: Instant, key: TxnKey, txn: ServerTxn) -> Option<ServerTxn> {
        let old = self
            .txns
            .insert(key.clone(), Entry { txn, inserted: now })
            .map(|e| e.txn);
        self.reschedule(&key);
        old
    }

    /// Records the transaction's current deadline: call after changing it
    /// through [`ServerTxns::get_mut`] (sending a response).
    pub fn reschedule(&mut self, key: &TxnKey) {
        let at = self.txns.get(key).and_then(|e| {
            if e.txn.is_terminated() {
                Some(e.inserted)
            } else {
                e.txn.poll_timeout()
            }
        });
        self.deadlines.set(key.clone(), at);
    }

    /// The live transaction for `key`.
    pub fn get(&self, key: &TxnKey) -> Option<&ServerTxn> {
        self.txns
            .get(key)
            .map(|e| &e.txn)
            .filter(|t| !t.is_terminated())
    }

    /// The live transaction for `key`, to send responses through.
    pub fn get_mut(&mut self, key: &TxnKey) -> Option<&mut ServerTxn> {
        self.txns
            .get_mut(key)
            .map(|e| &mut e.txn)
            .filter(|t| !t.is_terminated())
    }

    /// Removes the transaction for `key`.
    pub fn remove(&mut self, key: &TxnKey) -> Option<ServerTxn> {
        self.deadlines.set(key.clone(), None);
        self.txns.remove(key).map(|e| e.txn)
    }

    /// Number of transactions held (terminated ones not yet collected
    /// included).
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Routes a received request to its transaction (§17.2.3).
    ///
    /// `Some(actions)`: the request matched a live transaction and was
    /// handled by it (a retransmission answered or absorbed, an ACK for a
    /// non-2xx consumed; [`Action::PassToTu`] asks to give an ACK to the TU
    /// anyway). `None`: no live transaction matched; the request is for the
    /// TU (a new request, an ACK for a 2xx, or an unkeyable message).
    pub fn on_request(&mut self, now: Instant, msg: &Message) -> Option<Vec<Action>> {
        let key = server_key(msg)?;
        let entry = self.txns.get_mut(&key)?;
        if entry.txn.is_terminated() {
            self.remove(&key);
            return None;
        }
        let is_ack = msg.method() == Some(&Method::Ack);
        let actions = match (&mut entry.txn, is_ack) {
            (ServerTxn::Invite(t), true) => t.on_ack(now),
            (t, false) => t.on_retransmitted_request(now),
            (ServerTxn::NonInvite(_), true) => Vec::new(),
        };
        if entry.txn.is_terminated() {
            self.remove(&key);
        } else {
            self.reschedule(&key);
        }
        Some(actions)
    }

    /// The earliest deadline over all transactions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// Fires every due timer, returning the actions with the key of the
    /// transaction they come from, and removes terminated transactions.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(TxnKey, Action)> {
        let mut out = Vec::new();
        while let Some(key) = self.deadlines.pop_due(now) {
            let Some(e) = self.txns.get_mut(&key) else {
                continue;
            };
            if e.txn.is_terminated() {
                self.remove(&key);
                continue;
            }
            if due(e.txn.poll_timeout(), now) {
                let actions = e.txn.handle_timeout(now);
                out.extend(actions.into_iter().map(|a| (key.clone(), a)));
            }
            // Also when nothing was due: the deadline moved through
            // `get_mut` without a `reschedule`.
            if self.txns.get(&key).is_some_and(|e| e.txn.is_terminated()) {
                self.remove(&key);
            } else {
                self.reschedule(&key);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
