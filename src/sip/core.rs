//! The sans-IO SIP user agent server for recording sessions.
//!
//! Inputs are bytes with the peer they came from and the current time;
//! outputs are polled, in the style of quinn-proto:
//! [`SipCore::poll_transmit`] (what to send where), [`SipCore::poll_event`]
//! (sessions offered, confirmed, updated, ended) and [`SipCore::poll_timeout`]
//! (when to call [`SipCore::handle_timeout`]). No sockets, no clock.
//!
//! Every request gets a server transaction ([`super::transaction`], RFC
//! 3261 §17 with RFC 6026): retransmitted requests are answered by it,
//! non-2xx finals to INVITE are retransmitted over UDP (Timer G) until the
//! ACK, non-INVITE answers are kept for Timer J. The 2xx to an INVITE is
//! retransmitted by the dialog ([`super::transaction::UasTwoXxRetransmitter`])
//! from T1 doubling to T2 until the ACK, and after 64*T1 without ACK the
//! session is ended with a BYE (§13.3.1.4). The BYE and UPDATE we send are
//! client transactions (Timers E, F, K).
//!
//! One timer model: every transaction and every dialog has at most one
//! current deadline, in a [`Deadlines`] queue (a dialog's is the earliest of
//! its answer delay, 2xx retransmission and session timer), so
//! [`SipCore::poll_timeout`] is O(1) and [`SipCore::handle_timeout`] visits
//! only what is due.
//!
//! Every offer, the initial INVITE's and those of re-INVITEs and UPDATEs,
//! is handed to the IO layer ([`Event::Offered`], [`Event::Reoffered`]),
//! which binds media ports and calls [`SipCore::accept`]; only then is the
//! answer sent. Session timers (RFC 4028) are honoured: the client refreshes
//! when it can (`refresher=uac`, `Require: timer`), we refresh with UPDATE
//! when asked to, and a session whose refresh never comes is ended with BYE.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::deadlines::Deadlines;
use super::message::{self, header_param, Message, Method, ParseError, ResponseBuilder, StartLine};
use super::transaction::{
    server_key, Action, ClientNonInvite, Reliability, ServerInvite, ServerNonInvite, ServerTxn,
    ServerTxns, Timers, TxnKey, UasTwoXxRetransmitter,
};
use crate::net::Cidr;
use crate::siprec::sdp::{self, AnswerMedia, SdpOffer};
use crate::siprec::{read_offer, split_body, RecordingOffer};

/// Identifies one TCP connection of the IO layer.
pub type ConnId = u64;
/// Identifies one recording session (one RS dialog).
pub type SessionId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The transport token of a Via header.
    fn via(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// Where a message came from, and so where replies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// The TCP connection, for stream transports.
    pub conn: Option<ConnId>,
}

/// Bytes to send to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub payload: Bytes,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client sent BYE.
    Bye,
    /// The client cancelled before we answered.
    Cancelled,
    /// We ended it before answering (shutdown): the INVITE was refused
    /// with 503 and nothing is published.
    Refused,
    /// Our 2xx was never acknowledged.
    AckTimeout,
    /// The IO layer asked (shutdown).
    Local,
    /// The session timer (RFC 4028) expired without a refresh.
    SessionExpired,
}

/// What the IO layer must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new recording session: bind media ports, then call
    /// [`SipCore::accept`] (or [`SipCore::reject`]).
    Offered {
        session: SessionId,
        peer: Peer,
        invite: Box<Message>,
        offer: Box<RecordingOffer>,
    },
    /// A re-INVITE or UPDATE carries a new SDP offer: call
    /// [`SipCore::accept`] with one answer per m-line of `sdp` (keep the
    /// ports of existing lines).
    Reoffered {
        session: SessionId,
        sdp: Box<SdpOffer>,
        metadata_xml: Option<String>,
    },
    /// The client acknowledged our answer.
    Confirmed { session: SessionId },
    /// Metadata without a new offer (UPDATE, offerless re-INVITE).
    Updated {
        session: SessionId,
        metadata_xml: String,
    },
    /// A session-timer refresh arrived (or our UPDATE refreshed it).
    Refreshed { session: SessionId },
    /// The session is over: stop the media, publish the recording.
    Ended {
        session: SessionId,
        reason: EndReason,
        /// Metadata carried by the BYE, if any (RFC 8068 §3.2.4).
        metadata_xml: Option<String>,
    },
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub user_agent: String,
    /// At this many sessions, new INVITEs get 503 + Retry-After.
    pub max_sessions: usize,
    /// Our SIP port, for the Contact header.
    pub sip_port: u16,
    /// Our SIP/TLS port, for the `sips:` Contact given to TLS clients.
    pub tls_port: Option<u16>,
    /// Seed for tags and branches (random in production, fixed in tests).
    pub tag_seed: u64,
    /// Delay between accepting a new session and sending its 200 OK (some
    /// B2BUA clients lose a 200 that arrives too fast); 0 sends at once.
    pub answer_delay: Duration,
    /// Send `180 Ringing` at once when the answer is delayed.
    pub ringing: bool,
    /// Session interval we ask for when the client supports timers but
    /// proposes none (RFC 4028).
    pub session_expires: Duration,
    /// Shortest session interval we accept (Min-SE); shorter gets 422.
    pub min_se: Duration,
    pub t1: Duration,
    pub t2: Duration,
    /// Recording clients allowed to talk to us (IP networks); empty: all.
    /// Others get 403 before anything is allocated.
    pub allow: Vec<Cidr>,
    /// New sessions per second accepted from one source address.
    pub rate_limit: u32,
    /// Most m-lines in one offer.
    pub max_streams: usize,
    /// re-INVITEs and UPDATEs per second accepted in one dialog (bursts of
    /// twice as many); beyond it 503 + Retry-After, the dialog goes on.
    pub reoffer_rate: u32,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            user_agent: concat!("srs/", env!("CARGO_PKG_VERSION")).to_string(),
            max_sessions: 10_000,
            sip_port: 5060,
            tls_port: None,
            tag_seed: 0x5125,
            answer_delay: Duration::ZERO,
            ringing: false,
            session_expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            allow: Vec::new(),
            rate_limit: 500,
            max_streams: 16,
            reoffer_rate: 10,
        }
    }
}

pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";
pub const ACCEPT: &str =
    "application/sdp, application/rs-metadata+xml, application/rs-metadata, multipart/mixed";
pub const SUPPORTED: &str = "siprec, timer";
/// Option tags we accept in Require.
const SUPPORTED_REQUIRE: &[&str] = &["siprec", "timer"];

/// Why a new INVITE is refused before anything is allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Refusal {
    /// Require names option tags we do not support (the list).
    #[error("requires unsupported extensions: {0}")]
    BadExtension(String),
    /// Graceful shutdown ([`SipCore::drain`]).
    #[error("shutting down")]
    ShuttingDown,
    /// The drop is low on space ([`SipCore::set_low_space`]).
    #[error("the drop is low on space")]
    LowSpace,
    /// Behind on input ([`SipCore::set_overloaded`]).
    #[error("overloaded")]
    Overloaded,
    /// Over `rate_limit` new sessions per second from this source.
    #[error("over the rate limit of its source")]
    RateLimit,
    /// `max_sessions` reached.
    #[error("session limit reached")]
    SessionLimit,
}

impl Refusal {
    /// The reason's name in [`REFUSAL_REASONS`].
    fn label(&self) -> &'static str {
        match self {
            Refusal::BadExtension(_) => "bad-extension",
            Refusal::ShuttingDown => "shutting-down",
            Refusal::LowSpace => "low-space",
            Refusal::Overloaded => "overloaded",
            Refusal::RateLimit => "rate-limit",
            Refusal::SessionLimit => "session-limit",
        }
    }

    /// SIP status code and reason phrase of the refusal.
    fn status(&self) -> (u16, &'static str) {
        match self {
            Refusal::BadExtension(_) => (420, "Bad Extension"),
            Refusal::ShuttingDown => (503, "Shutting Down"),
            Refusal::LowSpace => (503, "Low Disk Space"),
            Refusal::Overloaded => (503, "Overloaded"),
            Refusal::RateLimit => (503, "Rate Limit"),
            Refusal::SessionLimit => (503, "Session Limit Reached"),
        }
    }

    /// The header that tells the client what to do: the option tags we do
    /// not support, or how many seconds to wait before trying again.
    fn header(&self) -> (&'static str, String) {
        let retry_after = match self {
            Refusal::BadExtension(tags) => return ("Unsupported", tags.clone()),
            Refusal::ShuttingDown => 30,
            Refusal::LowSpace => 60,
            Refusal::Overloaded | Refusal::RateLimit => 1,
            Refusal::SessionLimit => 5,
        };
        ("Retry-After", retry_after.to_string())
    }
}

/// Why the session timer a request asks for is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum SessionTimerError {
    /// Session-Expires below our Min-SE (RFC 4028 §6).
    #[error("Session-Expires {asked:?} is below Min-SE {min_se:?}")]
    TooSmall { asked: Duration, min_se: Duration },
}

impl SessionTimerError {
    /// SIP status code and reason phrase of the refusal.
    fn status(&self) -> (u16, &'static str) {
        match self {
            SessionTimerError::TooSmall { .. } => (422, "Session Interval Too Small"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// An offer waits for [`SipCore::accept`] (initial or re-offer).
    Offered,
    /// Accepted; the 2xx goes out at this time (answer delay).
    Answering(Instant),
    /// 2xx to an INVITE sent; `acked` once the ACK arrived. Also the
    /// resting state between transactions.
    Answered { acked: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresher {
    Uac,
    Uas,
}

/// RFC 4028 session timer of one dialog.
#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    interval: Duration,
    refresher: Refresher,
    /// Last refresh (or the answer).
    refreshed: Instant,
}

impl SessionTimer {
    /// When we act: send our refresh (at half the interval), or give up on
    /// the client's (the interval minus min(32 s, interval/3), RFC 4028 §10).
    fn due(&self) -> Instant {
        match self.refresher {
            Refresher::Uas => self.refreshed + self.interval / 2,
            Refresher::Uac => {
                let margin = Duration::from_secs(32).min(self.interval / 3);
                self.refreshed + self.interval - margin
            }
        }
    }

    fn header(&self) -> String {
        let r = match self.refresher {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        };
        format!("{};refresher={r}", self.interval.as_secs())
    }
}

#[derive(Debug)]
struct Dialog {
    peer: Peer,
    local_tag: String,
    /// The initial INVITE: dialog identifiers, remote target, route set.
    invite: Message,
    /// The request being (or last) answered: INVITE, re-INVITE or UPDATE.
    request: Message,
    request_branch: String,
    last_response: Option<Bytes>,
    /// The 2xx to the last INVITE, until its ACK (or 64*T1).
    retransmit: Option<UasTwoXxRetransmitter>,
    state: State,
    established: bool,
    offer: SdpOffer,
    media_ip: Option<IpAddr>,
    answers: Vec<AnswerMedia>,
    sdp_version: u64,
    local_cseq: u32,
    timer: Option<SessionTimer>,
    /// re-INVITE/UPDATE token bucket: (tokens, last refill).
    reoffers: (f64, Instant),
}

impl Dialog {
    /// When [`SipCore::handle_timeout`] next has work for this dialog: the
    /// earliest of the delayed answer, the 2xx retransmission (or giving up
    /// on the ACK) and the session timer.
    fn deadline(&self) -> Option<Instant> {
        let answer = match self.state {
            State::Answering(at) => Some(at),
            _ => None,
        };
        let retransmit = self.retransmit.as_ref().and_then(|r| r.poll_timeout());
        let timer = self.timer.as_ref().map(SessionTimer::due);
        [answer, retransmit, timer].into_iter().flatten().min()
    }
}

/// The dialogs, and the deadline of each in one queue. A dialog is changed
/// only through a [`DialogMut`], which records its deadline again when
/// dropped: no change (a timer refreshed, an answer delayed, an ACK) can
/// leave the queue behind.
#[derive(Debug, Default)]
struct Dialogs {
    map: HashMap<SessionId, Dialog>,
    deadlines: Deadlines<SessionId>,
}

impl Dialogs {
    fn get(&self, id: SessionId) -> Option<&Dialog> {
        self.map.get(&id)
    }

    fn get_mut(&mut self, id: SessionId) -> Option<DialogMut<'_>> {
        let dialog = self.map.get_mut(&id)?;
        Some(DialogMut {
            id,
            dialog,
            deadlines: &mut self.deadlines,
        })
    }

    fn insert(&mut self, id: SessionId, dialog: Dialog) {
        self.deadlines.set(id, dialog.deadline());
        self.map.insert(id, dialog);
    }

    fn remove(&mut self, id: SessionId) -> Option<Dialog> {
        self.deadlines.set(id, None);
        self.map.remove(&id)
    }

    /// Records the deadline of `id` again (after [`Dialogs::drain_due`]).
    fn reschedule(&mut self, id: SessionId) {
        let at = self.map.get(&id).and_then(Dialog::deadline);
        self.deadlines.set(id, at);
    }

    /// The dialogs due at `now`; their deadlines are cleared until
    /// [`Dialogs::reschedule`].
    fn drain_due(&mut self, now: Instant) -> Vec<SessionId> {
        self.deadlines.drain_due(now)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn ids(&self) -> Vec<SessionId> {
        self.map.keys().copied().collect()
    }

    fn values(&self) -> impl Iterator<Item = &Dialog> {
        self.map.values()
    }
}

/// A dialog borrowed for change; its deadline is recorded on drop.
struct DialogMut<'a> {
    id: SessionId,
    dialog: &'a mut Dialog,
    deadlines: &'a mut Deadlines<SessionId>,
}

impl Deref for DialogMut<'_> {
    type Target = Dialog;

    fn deref(&self) -> &Dialog {
        self.dialog
    }
}

impl DerefMut for DialogMut<'_> {
    fn deref_mut(&mut self) -> &mut Dialog {
        self.dialog
    }
}

impl Drop for DialogMut<'_> {
    fn drop(&mut self) {
        self.deadlines.set(self.id, self.dialog.deadline());
    }
}

/// A request we sent, waiting for its response.
#[derive(Debug)]
struct ClientTxn {
    txn: ClientNonInvite,
    peer: Peer,
    session: SessionId,
    method: Method,
}

/// The SIP side of the recording server, without IO.
#[derive(Debug)]
pub struct SipCore {
    config: CoreConfig,
    dialogs: Dialogs,
    /// (Call-ID, From tag) -> session.
    by_call: HashMap<(String, String), SessionId>,
    /// Server transactions, and where each one's responses go.
    txns: ServerTxns,
    txn_peers: HashMap<TxnKey, Peer>,
    /// Our requests by Via branch, and their deadlines.
    clients: HashMap<String, ClientTxn>,
    client_deadlines: Deadlines<String>,
    timers: Timers,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_id: u64,
    /// New-session token buckets per source address: (tokens, last refill).
    buckets: HashMap<IpAddr, (f64, Instant)>,
    /// Shutting down: new sessions get 503.
    draining: bool,
    /// The drop is low on space: new sessions get 503.
    low_space: bool,
    /// The server is behind on its input: new sessions get 503.
    overloaded: bool,
    /// New sessions refused before anything was allocated, by reason
    /// ([`REFUSAL_REASONS`]; read by the metrics, issue 14).
    refused: [u64; REFUSAL_REASONS.len()],
}

/// Why new sessions are refused, as `srs_sessions_total{outcome="refused",
/// reason}` names them (indexes of [`SipCore::refusals`]).
pub const REFUSAL_REASONS: [&str; 10] = [
    "forbidden",
    "bad-extension",
    "shutting-down",
    "low-space",
    "overloaded",
    "rate-limit",
    "session-limit",
    "too-many-streams",
    "bad-offer",
    "session-interval",
];

fn refusal_index(reason: &str) -> usize {
    REFUSAL_REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(REFUSAL_REASONS.len() - 1)
}

/// Status code of a response we built.
fn status_of(resp: &[u8]) -> u16 {
    resp.get(8..11)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or(500)
}

/// Seconds of a `Session-Expires` or `Min-SE` value (`1800;refresher=uac`).
fn delta_seconds(v: &str) -> Option<Duration> {
    v.split(';')
        .next()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl SipCore {
    pub fn new(config: CoreConfig) -> Self {
        SipCore {
            config: config.clone(),
            dialogs: Dialogs::default(),
            by_call: HashMap::new(),
            txns: ServerTxns::new(),
            txn_peers: HashMap::new(),
            clients: HashMap::new(),
            client_deadlines: Deadlines::new(),
            timers: Timers {
                t1: config.t1,
                t2: config.t2,
                ..Timers::default()
            },
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            buckets: HashMap::new(),
            draining: false,
            low_space: false,
            overloaded: false,
            refused: [0; REFUSAL_REASONS.len()],
        }
    }

    /// The drop is low on space (or has room again): while set, new
    /// sessions get 503.
    pub fn set_low_space(&mut self, low: bool) {
        self.low_space = low;
    }

    /// The caller is behind on its input (SIP messages queue up faster than
    /// they are handled): while set, new sessions get `503 Overloaded`
    /// (cheap: nothing is allocated), so the sessions already accepted keep
    /// their ACKs, BYEs and retransmissions answered in time. Requests in
    /// existing dialogs are never refused for this.
    pub fn set_overloaded(&mut self, on: bool) {
        self.overloaded = on;
    }

    /// Stops accepting new sessions (graceful shutdown): INVITEs get 503.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.config.allow.is_empty() || self.config.allow.iter().any(|net| net.contains(ip))
    }

    /// Takes a token from the source's bucket (`rate_limit` per second,
    /// bursts of the same size).
    fn rate_ok(&mut self, now: Instant, ip: IpAddr) -> bool {
        let rate = f64::from(self.config.rate_limit.max(1));
        if self.buckets.len() > 10_000 {
            self.buckets
                .retain(|_, (_, t)| now.saturating_duration_since(*t) < Duration::from_secs(10));
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((rate, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Number of sessions not yet ended.
    pub fn active_sessions(&self) -> usize {
        self.dialogs.len()
    }

    /// Ids of the sessions not yet ended.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.dialogs.ids()
    }

    /// The stream connections that carry a live dialog (our requests in
    /// it go there): the IO layer never closes these for being idle.
    pub fn conns_in_use(&self) -> std::collections::HashSet<ConnId> {
        self.dialogs.values().filter_map(|d| d.peer.conn).collect()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest time at which [`SipCore::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let queues = [
            self.dialogs.next_deadline(),
            self.client_deadlines.next(),
            self.txns.poll_timeout(),
        ];
        queues.into_iter().flatten().min()
    }

    fn fresh_tag(&mut self) -> String {
        self.next_id += 1;
        format!("{:x}{:04x}", self.config.tag_seed, self.next_id)
    }

    fn send(&mut self, peer: Peer, payload: Bytes) {
        self.transmits.push_back(Transmit { peer, payload });
    }

    fn respond(&mut self, now: Instant, peer: Peer, req: &Message, code: u16, reason: &str) {
        let mut b = ResponseBuilder::new(req, code, reason, None)
            .header("Server", &self.config.user_agent.clone());
        if code == 405 || code == 200 {
            b = b.header("Allow", ALLOW);
        }
        if code == 415 {
            b = b.header("Accept", ACCEPT);
        }
        self.send_and_cache(now, peer, req, b.build());
    }

    fn reliability(peer: &Peer) -> Reliability {
        match peer.transport {
            Transport::Udp => Reliability::Unreliable,
            Transport::Tcp | Transport::Tls => Reliability::Reliable,
        }
    }

    /// Opens the server transaction of a new request.
    fn open_txn(&mut self, now: Instant, peer: Peer, req: &Message) {
        let Some(key) = server_key(req) else { return };
        let r = Self::reliability(&peer);
        let txn = if req.method() == Some(&Method::Invite) {
            ServerTxn::Invite(ServerInvite::new(now, r, self.timers))
        } else {
            ServerTxn::NonInvite(ServerNonInvite::new(now, r, self.timers))
        };
        self.txns.insert(now, key.clone(), txn);
        self.txn_peers.insert(key, peer);
    }

    /// Sends a response through the request's server transaction (which
    /// retransmits and answers retransmissions as RFC 3261 §17.2 says).
    fn send_and_cache(&mut self, now: Instant, peer: Peer, req: &Message, response: Bytes) {
        let code = status_of(&response);
        let key = server_key(req);
        let actions = match key.as_ref().and_then(|k| self.txns.get_mut(k)) {
            Some(t) if code < 200 => t.send_provisional(now, response.clone()),
            Some(t) => t.send_final(now, code, response.clone()),
            None => vec![Action::Send(response)],
        };
        if let Some(k) = &key {
            self.txns.reschedule(k);
        }
        self.run_server_actions(key.as_ref(), peer, actions);
    }

    fn run_server_actions(&mut self, key: Option<&TxnKey>, peer: Peer, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(b) => self.send(peer, b),
                Action::Terminated(_) => {
                    if let Some(k) = key {
                        self.txn_peers.remove(k);
                    }
                }
                _ => {}
            }
        }
    }

    /// Feeds one datagram (UDP) or one framed message (TCP).
    pub fn handle_input(&mut self, now: Instant, peer: Peer, data: &[u8]) {
        let msg = match message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%peer.addr, error = %e, "unparsable SIP message");
                self.answer_unparsable(now, peer, data, &e);
                return;
            }
        };
        if !self.allowed(peer.addr.ip()) {
            if msg.method().is_some_and(|m| *m != Method::Ack) {
                if msg.method() == Some(&Method::Invite) {
                    self.count_refusal("forbidden");
                }
                tracing::warn!(%peer.addr, "request from a source not in sip.allow: 403");
                let r = ResponseBuilder::new(&msg, 403, "Forbidden", None).build();
                self.send(peer, r);
            }
            return;
        }
        let StartLine::Request { method, .. } = &msg.start else {
            self.on_response(now, msg);
            return;
        };
        if msg.call_id().is_none() || msg.cseq().is_none() || msg.via_branch().is_none() {
            if *method != Method::Ack {
                self.respond(now, peer, &msg, 400, "Missing Mandatory Header");
            }
            return;
        }
        // A retransmission, or an ACK for a non-2xx: its transaction answers.
        if let Some(actions) = self.txns.on_request(now, &msg) {
            let pass = actions.contains(&Action::PassToTu);
            let key = server_key(&msg);
            self.run_server_actions(key.as_ref(), peer, actions);
            if !pass {
                return;
            }
        } else if *method != Method::Ack {
            self.open_txn(now, peer, &msg);
        }
        match method.clone() {
            Method::Invite if msg.to_tag().is_none() => self.on_invite(now, peer, msg),
            Method::Invite | Method::Update => self.on_reoffer(now, peer, msg),
            Method::Ack => self.on_ack(msg),
            Method::Bye => self.on_bye(now, peer, msg),
            Method::Cancel => self.on_cancel(now, peer, msg),
            Method::Options => {
                // A dispatcher (Kamailio's `dispatcher`, OpenSIPS's
                // `load_balancer`) probes recorders with OPTIONS and keeps
                // choosing those that answer 2xx: while draining, the probe
                // gets the same 503 and Retry-After a new INVITE would, so
                // new sessions go to another recorder before this one stops.
                let (code, reason) = if self.draining {
                    Refusal::ShuttingDown.status()
                } else {
                    (200, "OK")
                };
                let mut b = ResponseBuilder::new(&msg, code, reason, Some(&self.fresh_tag()));
                if self.draining {
                    let (name, value) = Refusal::ShuttingDown.header();
                    b = b.header(name, &value);
                }
                let r = b
                    .header("Allow", ALLOW)
                    .header("Accept", ACCEPT)
                    .header("Supported", SUPPORTED)
                    .header("Server", &self.config.user_agent.clone())
                    .build();
                self.send_and_cache(now, peer, &msg, r);
            }
            Method::Info => match self.find_dialog(&msg) {
                Some(_) => self.respond(now, peer, &msg, 200, "OK"),
                None => self.respond(now, peer, &msg, 481, "Call/Transaction Does Not Exist"),
            },
            _ => self.respond(now, peer, &msg, 405, "Method Not Allowed"),
        }
    }

    /// The head of a message a stream transport refused for its size
    /// (Content-Length over the cap): answered 513 when it can be
    /// addressed, before the IO layer closes the connection.
    pub fn handle_oversized(&mut self, now: Instant, peer: Peer, head: &[u8]) {
        self.answer_unparsable(now, peer, head, &ParseError::TooLarge);
    }

    /// Responses to the requests we send, through their client transaction.
    fn on_response(&mut self, now: Instant, msg: Message) {
        let Some(branch) = msg.via_branch().map(str::to_string) else {
            return;
        };
        let Some(c) = self.clients.get_mut(&branch) else {
            return;
        };
        let actions = c.txn.on_response(now, msg);
        self.run_client_actions(now, &branch, actions);
    }

    /// Carries out what a client transaction asked, then records its next
    /// deadline (none once it is gone).
    fn run_client_actions(&mut self, now: Instant, branch: &str, actions: Vec<Action>) {
        self.carry_out_client_actions(now, branch, actions);
        let at = self.clients.get(branch).and_then(|c| c.txn.poll_timeout());
        self.client_deadlines.set(branch.to_string(), at);
    }

    fn carry_out_client_actions(&mut self, now: Instant, branch: &str, actions: Vec<Action>) {
        let Some(c) = self.clients.get(branch) else {
            return;
        };
        let (peer, session, method) = (c.peer, c.session, c.method.clone());
        for a in actions {
            match a {
                Action::Send(b) => self.send(peer, b),
                Action::Deliver(resp) => {
                    let code = match resp.start {
                        StartLine::Response { code, .. } => code,
                        StartLine::Request { .. } => 0,
                    };
                    self.on_our_request_answered(now, session, &method, code);
                }
                Action::Timeout => self.on_our_request_answered(now, session, &method, 408),
                Action::Terminated(_) => {
                    self.clients.remove(branch);
                }
                Action::PassToTu => {}
            }
        }
    }

    /// A refresh answered 2xx refreshes the session; refused with 481 or
    /// 408 (or timed out) it ends the session (RFC 4028 §10).
    fn on_our_request_answered(
        &mut self,
        now: Instant,
        session: SessionId,
        method: &Method,
        code: u16,
    ) {
        if *method != Method::Update || code < 200 {
            return;
        }
        if (200..300).contains(&code) {
            if let Some(mut d) = self.dialogs.get_mut(session) {
                if let Some(t) = &mut d.timer {
                    t.refreshed = now;
                }
            }
            self.events.push_back(Event::Refreshed { session });
        } else if code == 481 || code == 408 {
            self.end_with_bye(now, session, EndReason::SessionExpired);
        }
    }

    /// A request we could not parse gets 400 (505 for another SIP version,
    /// 513 over the size cap) when its head is readable enough to address a
    /// response; otherwise (or for ACK and responses) it is dropped.
    fn answer_unparsable(&mut self, now: Instant, peer: Peer, data: &[u8], error: &ParseError) {
        let Ok(head) = message::parse_head_to_answer(data) else {
            return;
        };
        if !self.allowed(peer.addr.ip()) {
            return;
        }
        let (code, reason) = error.status();
        let why = error.to_string();
        if head.method().is_none() || head.method() == Some(&Method::Ack) {
            return;
        }
        if head.call_id().is_some() && head.cseq().is_some() && head.via_branch().is_some() {
            let why: String = why
                .chars()
                .map(|c| if c == '"' { '\'' } else { c })
                .filter(|c| !c.is_control())
                .take(160)
                .collect();
            let r = ResponseBuilder::new(&head, code, reason, Some(&self.fresh_tag()))
                .header("Warning", &format!("399 srs \"{why}\""))
                .build();
            self.open_txn(now, peer, &head);
            self.send_and_cache(now, peer, &head, r);
        }
    }

    fn dialog_key(msg: &Message) -> (String, String) {
        (
            msg.call_id().unwrap_or_default().to_string(),
            msg.from_tag().unwrap_or_default().to_string(),
        )
    }

    /// The dialog of an in-dialog request: Call-ID, the remote (From) tag
    /// and our local (To) tag must all match (RFC 3261 §12.2.2). A request
    /// without a To tag is not in any dialog, whoever sends it: a BYE or
    /// UPDATE forged from a Call-ID and From tag alone gets 481.
    fn find_dialog(&self, msg: &Message) -> Option<SessionId> {
        let id = *self.by_call.get(&Self::dialog_key(msg))?;
        let d = self.dialogs.get(id)?;
        (msg.to_tag()? == d.local_tag).then_some(id)
    }

    /// A BYE without a To tag (an RFC 2543-style client: the BroadWorks
    /// SIPp scenario of the corpus sends one) ends its dialog only when it
    /// comes from the dialog's own client: the same transport and ip:port,
    /// and over TCP/TLS the same connection. From anywhere else it is 481,
    /// so knowing a Call-ID and From tag is not enough to end a recording.
    /// No other request is matched without our To tag.
    fn legacy_bye(&self, peer: Peer, msg: &Message) -> Option<SessionId> {
        if msg.to_tag().is_some() {
            return None;
        }
        let id = *self.by_call.get(&Self::dialog_key(msg))?;
        let d = self.dialogs.get(id)?;
        if d.peer != peer {
            return None;
        }
        tracing::warn!(call_id = msg.call_id(), source = %peer.addr,
            "BYE without a To tag accepted from the dialog's own client (RFC 3261 §12.2.2 wants the tag)");
        Some(id)
    }

    /// The session timer asked for by a request (none if it asks for none).
    fn session_timer(
        &self,
        now: Instant,
        msg: &Message,
    ) -> Result<Option<SessionTimer>, SessionTimerError> {
        let supported = msg.tokens("Supported").iter().any(|t| t == "timer")
            || msg.tokens("Require").iter().any(|t| t == "timer");
        let se = msg.header("Session-Expires");
        let min_se = self.config.min_se;
        let interval = match se.and_then(delta_seconds) {
            Some(asked) if asked < min_se => {
                return Err(SessionTimerError::TooSmall { asked, min_se })
            }
            Some(i) => i,
            None if supported => self.config.session_expires,
            None => return Ok(None),
        };
        let asked = se
            .and_then(|v| header_param(&format!(">{v}"), "refresher").map(str::to_ascii_lowercase));
        let refresher = match asked.as_deref() {
            Some("uas") => Refresher::Uas,
            Some("uac") => Refresher::Uac,
            _ if supported => Refresher::Uac,
            _ => Refresher::Uas,
        };
        Ok(Some(SessionTimer {
            interval,
            refresher,
            refreshed: now,
        }))
    }

    fn reject_timer(&mut self, now: Instant, peer: Peer, msg: &Message, e: SessionTimerError) {
        let tag = self.fresh_tag();
        let (code, reason) = e.status();
        let SessionTimerError::TooSmall { min_se, .. } = e;
        let r = ResponseBuilder::new(msg, code, reason, Some(&tag))
            .header("Min-SE", &min_se.as_secs().to_string())
            .build();
        self.send_and_cache(now, peer, msg, r);
    }

    fn count_refusal(&mut self, reason: &str) {
        self.refused[refusal_index(reason)] += 1;
    }

    /// New sessions refused so far, by reason (the order of
    /// [`REFUSAL_REASONS`]).
    pub fn refusals(&self) -> [u64; REFUSAL_REASONS.len()] {
        self.refused
    }

    /// Why a new INVITE is refused before anything is allocated, if it is.
    fn refusal(&mut self, now: Instant, peer: Peer, msg: &Message) -> Option<Refusal> {
        let unsupported: Vec<String> = msg
            .tokens("Require")
            .into_iter()
            .filter(|t| !SUPPORTED_REQUIRE.contains(&t.as_str()))
            .collect();
        if !unsupported.is_empty() {
            return Some(Refusal::BadExtension(unsupported.join(", ")));
        }
        if self.draining {
            return Some(Refusal::ShuttingDown);
        }
        if self.low_space {
            return Some(Refusal::LowSpace);
        }
        if self.overloaded {
            return Some(Refusal::Overloaded);
        }
        if !self.rate_ok(now, peer.addr.ip()) {
            return Some(Refusal::RateLimit);
        }
        if self.dialogs.len() >= self.config.max_sessions {
            return Some(Refusal::SessionLimit);
        }
        None
    }

    fn on_invite(&mut self, now: Instant, peer: Peer, msg: Message) {
        if let Some(id) = self.by_call.get(&Self::dialog_key(&msg)).copied() {
            // Same Call-ID and From tag, new branch: a retransmission through
            // another path; replay what we have.
            let resp = self.dialogs.get(id).and_then(|d| d.last_response.clone());
            if let Some(r) = resp {
                self.send(peer, r);
            }
            return;
        }
        if let Some(refusal) = self.refusal(now, peer, &msg) {
            self.count_refusal(refusal.label());
            let (code, reason) = refusal.status();
            let (header, value) = refusal.header();
            let r = ResponseBuilder::new(&msg, code, reason, Some(&self.fresh_tag()))
                .header(header, &value)
                .build();
            self.send_and_cache(now, peer, &msg, r);
            return;
        }
        let timer = match self.session_timer(now, &msg) {
            Ok(timer) => timer,
            Err(e) => {
                self.count_refusal("session-interval");
                self.reject_timer(now, peer, &msg, e);
                return;
            }
        };
        let offer = match read_offer(&msg) {
            Ok(o) if o.sdp.media.len() > self.config.max_streams => {
                self.count_refusal("too-many-streams");
                let r =
                    ResponseBuilder::new(&msg, 488, "Too Many Streams", Some(&self.fresh_tag()))
                        .header(
                            "Warning",
                            &format!("399 srs \"at most {} m-lines\"", self.config.max_streams),
                        )
                        .build();
                self.send_and_cache(now, peer, &msg, r);
                return;
            }
            Ok(o) => o,
            Err(e) => {
                self.count_refusal("bad-offer");
                let (code, reason) = e.status();
                tracing::info!(call_id = msg.call_id(), code, error = %e, "recording session rejected");
                let tag = self.fresh_tag();
                let mut b = ResponseBuilder::new(&msg, code, reason, Some(&tag)).header(
                    "Warning",
                    &format!("399 srs \"{}\"", e.to_string().replace('"', "'")),
                );
                if code == 415 {
                    b = b.header("Accept", ACCEPT);
                }
                self.send_and_cache(now, peer, &msg, b.build());
                return;
            }
        };
        let trying = ResponseBuilder::new(&msg, 100, "Trying", None).build();
        self.send_and_cache(now, peer, &msg, trying.clone());
        let id = self.next_id;
        self.next_id += 1;
        let local_tag = self.fresh_tag();
        self.by_call.insert(Self::dialog_key(&msg), id);
        self.dialogs.insert(
            id,
            Dialog {
                peer,
                local_tag,
                request_branch: msg.via_branch().unwrap_or_default().to_string(),
                invite: msg.clone(),
                request: msg.clone(),
                last_response: Some(trying),
                retransmit: None,
                state: State::Offered,
                established: false,
                offer: offer.sdp.clone(),
                media_ip: None,
                answers: Vec::new(),
                sdp_version: 1,
                local_cseq: 0,
                timer,
                reoffers: (2.0 * f64::from(self.config.reoffer_rate.max(1)), now),
            },
        );
        self.events.push_back(Event::Offered {
            session: id,
            peer,
            invite: Box::new(msg),
            offer: Box::new(offer),
        });
    }

    /// Answers the pending offer of a session: `answers` has one entry per
    /// offered m-line (a port, or `None` to reject that line); `media_ip`
    /// goes into the SDP and the Contact. Returns false if the session is
    /// gone or has no pending offer (cancelled meanwhile): the caller then
    /// releases what it allocated.
    pub fn accept(
        &mut self,
        now: Instant,
        session: SessionId,
        media_ip: IpAddr,
        answers: Vec<AnswerMedia>,
    ) -> bool {
        let (delay, ringing) = (self.config.answer_delay, self.config.ringing);
        let Some(mut d) = self.dialogs.get_mut(session) else {
            return false;
        };
        if d.state != State::Offered {
            return false;
        }
        d.media_ip = Some(media_ip);
        d.answers = answers;
        if !d.established && !delay.is_zero() {
            d.state = State::Answering(now + delay);
            if ringing {
                let r =
                    ResponseBuilder::new(&d.request, 180, "Ringing", Some(&d.local_tag)).build();
                d.last_response = Some(r.clone());
                let peer = d.peer;
                drop(d);
                self.send(peer, r);
            }
            return true;
        }
        drop(d);
        self.send_answer(now, session);
        true
    }

    /// Builds and sends the 2xx with our SDP for the dialog's current offer.
    fn send_answer(&mut self, now: Instant, session: SessionId) {
        let (timers, ua) = (self.timers, self.config.user_agent.clone());
        let Some(mut d) = self.dialogs.get_mut(session) else {
            return;
        };
        let ip = d.media_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let sdp = sdp::build_answer(&d.offer, ip, &d.answers, session, d.sdp_version);
        let contact = contact_uri(&self.config, d.peer.transport, ip);
        let is_invite = d.request.method() == Some(&Method::Invite);
        let mut b = ResponseBuilder::new(&d.request, 200, "OK", Some(&d.local_tag));
        if is_invite {
            for rr in d.request.headers_named("Record-Route") {
                b = b.header("Record-Route", rr);
            }
        }
        b = b
            .header("Contact", &format!("<{contact}>;+sip.srs"))
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED)
            .header("Server", &ua);
        if let Some(t) = &mut d.timer {
            t.refreshed = now;
            b = b.header("Session-Expires", &t.header());
            if t.refresher == Refresher::Uac {
                b = b.header("Require", "timer");
            }
        }
        let resp = b.body("application/sdp", sdp.into_bytes()).build();
        d.last_response = Some(resp.clone());
        d.established = true;
        if is_invite {
            d.state = State::Answered { acked: false };
            // The transaction sends it once; the dialog retransmits it
            // (over UDP) until the ACK, and gives up after 64*T1.
            let reliability = Self::reliability(&d.peer);
            d.retransmit = Some(UasTwoXxRetransmitter::new(
                now,
                resp.clone(),
                reliability,
                timers,
            ));
        } else {
            d.state = State::Answered { acked: true };
        }
        let (peer, request) = (d.peer, d.request.clone());
        drop(d);
        self.send_and_cache(now, peer, &request, resp);
    }

    /// Refuses a pending offer. A new session is dropped; a re-offer is
    /// answered with the error and the session goes on as it was.
    pub fn reject(&mut self, now: Instant, session: SessionId, code: u16, reason: &str) {
        self.reject_retry_after(now, session, code, reason, None);
    }

    /// [`SipCore::reject`], telling the client when to try again (a
    /// resource that may come back: descriptors, disk space, ports).
    pub fn reject_retry_after(
        &mut self,
        now: Instant,
        session: SessionId,
        code: u16,
        reason: &str,
        retry_after: Option<u32>,
    ) {
        let Some(mut d) = self.dialogs.get_mut(session) else {
            return;
        };
        if d.state != State::Offered {
            return;
        }
        let mut b = ResponseBuilder::new(&d.request, code, reason, Some(&d.local_tag.clone()));
        // Out of a resource for now (ports, descriptors, disk): a 503
        // always tells the client when to try again (RFC 3261 §21.5.4), so
        // an SBC retries instead of marking us down.
        let retry_after = retry_after
            .map(|s| s.to_string())
            .or_else(|| (code == 503).then(|| REJECT_RETRY_AFTER.to_string()));
        if let Some(secs) = retry_after {
            b = b.header("Retry-After", &secs);
        }
        let r = b.build();
        let (peer, request, established) = (d.peer, d.request.clone(), d.established);
        if established {
            d.state = State::Answered { acked: true };
        }
        drop(d);
        if !established {
            self.remove_dialog(session);
        }
        self.send_and_cache(now, peer, &request, r);
    }

    /// Ends a session from our side (shutdown): sends BYE and reports
    /// [`Event::Ended`].
    pub fn terminate(&mut self, now: Instant, session: SessionId) {
        self.end_with_bye(now, session, EndReason::Local);
    }

    fn end_with_bye(&mut self, now: Instant, session: SessionId, reason: EndReason) {
        if let Some(d) = self.remove_dialog(session) {
            let reason = if d.established {
                let branch = self.new_branch();
                let cseq = d.local_cseq + 1;
                let bye = in_dialog_request(&self.config, &d, &Method::Bye, &branch, cseq, None);
                self.start_client(now, session, d.peer, branch, Method::Bye, bye);
                reason
            } else {
                // Not answered yet (its streams starting, or its 200 held
                // for the answer delay): the INVITE gets a final refusal
                // now, so the client (or a dispatcher in front) takes the
                // call elsewhere at once instead of after its own timeout,
                // and nothing is published here (the call is recorded
                // where it goes; a recording here too would be a duplicate).
                let refusal = Refusal::ShuttingDown;
                let (code, phrase) = refusal.status();
                let (name, value) = refusal.header();
                let r = ResponseBuilder::new(&d.request, code, phrase, Some(&d.local_tag))
                    .header(name, &value)
                    .build();
                self.send_and_cache(now, d.peer, &d.request, r);
                EndReason::Refused
            };
            self.events.push_back(Event::Ended {
                session,
                reason,
                metadata_xml: None,
            });
        }
    }

    fn remove_dialog(&mut self, session: SessionId) -> Option<Dialog> {
        let d = self.dialogs.remove(session)?;
        self.by_call.remove(&Self::dialog_key(&d.invite));
        Some(d)
    }

    /// re-INVITE or UPDATE within a dialog: a new offer goes to the IO layer
    /// ([`Event::Reoffered`]); without one, metadata is reported and our
    /// current SDP is answered (re-INVITE: as an offer) or nothing (UPDATE).
    fn on_reoffer(&mut self, now: Instant, peer: Peer, msg: Message) {
        let Some(id) = self.find_dialog(&msg) else {
            self.respond(now, peer, &msg, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let is_invite = msg.method() == Some(&Method::Invite);
        let Ok((sdp_bytes, meta)) = split_body(&msg) else {
            self.respond(now, peer, &msg, 415, "Unsupported Media Type");
            return;
        };
        let new_offer = match sdp_bytes.map(|b| sdp::parse_offer(&b)).transpose() {
            Ok(o) => o,
            Err(e) => {
                let r = ResponseBuilder::new(&msg, 488, "Bad SDP Offer", None)
                    .header("Warning", &format!("399 srs \"{e}\""))
                    .build();
                self.send_and_cache(now, peer, &msg, r);
                return;
            }
        };
        let timer = match self.session_timer(now, &msg) {
            Ok(timer) => timer,
            Err(e) => {
                self.reject_timer(now, peer, &msg, e);
                return;
            }
        };
        let rate = f64::from(self.config.reoffer_rate.max(1));
        let Some(mut d) = self.dialogs.get_mut(id) else {
            return;
        };
        // Each re-offer costs the IO layer work and the recording storage
        // (metadata kept, events): a client may send bursts, not floods.
        let (tokens, last) = &mut d.reoffers;
        *tokens =
            (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(2.0 * rate);
        *last = now;
        if *tokens < 1.0 {
            drop(d);
            let r = ResponseBuilder::new(&msg, 503, "Too Many Updates", None)
                .header("Retry-After", "1")
                .build();
            self.send_and_cache(now, peer, &msg, r);
            return;
        }
        *tokens -= 1.0;
        // A pending offer or an unacknowledged INVITE: glare (RFC 3261 §14.2).
        let busy = matches!(d.state, State::Offered | State::Answering(_))
            || (is_invite && d.state == (State::Answered { acked: false }));
        if busy {
            drop(d);
            let r = ResponseBuilder::new(&msg, 491, "Request Pending", None).build();
            self.send_and_cache(now, peer, &msg, r);
            return;
        }
        if let Some(t) = timer {
            d.timer = Some(t);
        } else if let Some(t) = &mut d.timer {
            t.refreshed = now; // any re-INVITE/UPDATE refreshes (RFC 4028 §7.4)
        }
        let refreshed = d.timer.is_some();
        d.request_branch = msg.via_branch().unwrap_or_default().to_string();
        d.request = msg.clone();
        d.peer = peer;
        let metadata_xml = meta.map(|m| String::from_utf8_lossy(&m).into_owned());
        match new_offer {
            Some(o) => {
                d.offer = o.clone();
                d.sdp_version += 1;
                d.state = State::Offered;
                self.events.push_back(Event::Reoffered {
                    session: id,
                    sdp: Box::new(o),
                    metadata_xml,
                });
            }
            None if is_invite => {
                // Offerless re-INVITE: our 200 carries our current SDP as
                // the offer (same streams, recvonly); the ACK has the answer.
                d.sdp_version += 1;
                drop(d);
                self.send_answer(now, id);
                if let Some(xml) = metadata_xml {
                    self.events.push_back(Event::Updated {
                        session: id,
                        metadata_xml: xml,
                    });
                }
            }
            None => {
                let mut b =
                    ResponseBuilder::new(&msg, 200, "OK", None).header("Supported", SUPPORTED);
                if let Some(t) = &d.timer {
                    b = b.header("Session-Expires", &t.header());
                }
                drop(d);
                let r = b.build();
                self.send_and_cache(now, peer, &msg, r);
                if let Some(xml) = metadata_xml {
                    self.events.push_back(Event::Updated {
                        session: id,
                        metadata_xml: xml,
                    });
                }
            }
        }
        if refreshed {
            self.events.push_back(Event::Refreshed { session: id });
        }
    }

    fn on_ack(&mut self, msg: Message) {
        let Some(id) = self.find_dialog(&msg) else {
            return; // ACK to a non-2xx, or stray: absorbed
        };
        if let Some(mut d) = self.dialogs.get_mut(id) {
            if d.state == (State::Answered { acked: false }) {
                d.state = State::Answered { acked: true };
                d.retransmit = None;
                self.events.push_back(Event::Confirmed { session: id });
            }
        }
    }

    fn on_bye(&mut self, now: Instant, peer: Peer, msg: Message) {
        let Some(id) = self
            .find_dialog(&msg)
            .or_else(|| self.legacy_bye(peer, &msg))
        else {
            self.respond(now, peer, &msg, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let metadata_xml = split_body(&msg)
            .ok()
            .and_then(|(_, m)| m)
            .map(|m| String::from_utf8_lossy(&m).into_owned());
        self.remove_dialog(id);
        self.respond(now, peer, &msg, 200, "OK");
        self.events.push_back(Event::Ended {
            session: id,
            reason: EndReason::Bye,
            metadata_xml,
        });
    }

    fn on_cancel(&mut self, now: Instant, peer: Peer, msg: Message) {
        let id = self.by_call.get(&Self::dialog_key(&msg)).copied();
        let target = id.filter(|id| {
            self.dialogs.get(*id).is_some_and(|d| {
                !d.established && Some(d.request_branch.as_str()) == msg.via_branch()
            })
        });
        let Some(id) = target else {
            // Not (or no longer) a pending INVITE of ours: RFC 3261 §9.2
            // answers 200 when the transaction exists, else 481.
            let known = id.is_some();
            let (code, reason) = if known {
                (200, "OK")
            } else {
                (481, "Call/Transaction Does Not Exist")
            };
            self.respond(now, peer, &msg, code, reason);
            return;
        };
        self.respond(now, peer, &msg, 200, "OK");
        if let Some(d) = self.remove_dialog(id) {
            let r = ResponseBuilder::new(&d.request, 487, "Request Terminated", Some(&d.local_tag))
                .build();
            self.send_and_cache(now, d.peer, &d.request, r);
            self.events.push_back(Event::Ended {
                session: id,
                reason: EndReason::Cancelled,
                metadata_xml: None,
            });
        }
    }

    /// Sends delayed answers, retransmits unacknowledged 2xx, gives up
    /// after 64*T1, runs session timers, expires caches. Only what is due
    /// is visited.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (key, a) in self.txns.handle_timeout(now) {
            if let Some(peer) = self.txn_peers.get(&key).copied() {
                self.run_server_actions(Some(&key), peer, vec![a]);
            }
        }
        for b in self.client_deadlines.drain_due(now) {
            if let Some(c) = self.clients.get_mut(&b) {
                let actions = c.txn.handle_timeout(now);
                self.run_client_actions(now, &b, actions);
            }
        }
        let due = self.dialogs.drain_due(now);
        let mut answer = Vec::new();
        let mut resend = Vec::new();
        let mut expired = Vec::new();
        let mut refresh = Vec::new();
        for &id in &due {
            let Some(mut d) = self.dialogs.get_mut(id) else {
                continue;
            };
            if let State::Answering(at) = d.state {
                if now >= at {
                    answer.push(id);
                }
            }
            if let Some(t) = &d.timer {
                if now >= t.due() {
                    match t.refresher {
                        Refresher::Uac => expired.push((id, EndReason::SessionExpired)),
                        Refresher::Uas => refresh.push(id),
                    }
                }
            }
            let (peer, unacked) = (d.peer, d.state == (State::Answered { acked: false }));
            let Some(r) = &mut d.retransmit else { continue };
            let mut finished = false;
            for a in r.handle_timeout(now) {
                match a {
                    Action::Send(resp) => resend.push((peer, resp)),
                    Action::Timeout if unacked => expired.push((id, EndReason::AckTimeout)),
                    Action::Terminated(_) => finished = true,
                    _ => {}
                }
            }
            if finished {
                d.retransmit = None;
            }
        }
        for id in answer {
            self.send_answer(now, id);
        }
        for (peer, resp) in resend {
            self.send(peer, resp);
        }
        for id in refresh {
            // We are the refresher: an UPDATE without a body (RFC 4028 §7.4).
            if let Some(mut d) = self.dialogs.get_mut(id) {
                if let Some(t) = &mut d.timer {
                    t.refreshed = now;
                }
            }
            self.send_update(now, id, None);
        }
        for (id, reason) in expired {
            tracing::warn!(session = id, ?reason, "ending the session with BYE");
            self.end_with_bye(now, id, reason);
        }
        for id in due {
            self.dialogs.reschedule(id);
        }
    }

    /// A fresh Via branch for a request we send.
    fn new_branch(&mut self) -> String {
        format!("z9hG4bK{}", self.fresh_tag())
    }

    /// Sends an UPDATE within dialog `session` (a session refresh without a
    /// body, or `body`) and advances its CSeq.
    fn send_update(&mut self, now: Instant, session: SessionId, body: Option<(&str, &[u8])>) {
        if self.dialogs.get(session).is_none() {
            return;
        }
        let branch = self.new_branch();
        let Some(mut d) = self.dialogs.get_mut(session) else {
            return;
        };
        d.local_cseq += 1;
        let request = in_dialog_request(
            &self.config,
            &d,
            &Method::Update,
            &branch,
            d.local_cseq,
            body,
        );
        let peer = d.peer;
        drop(d);
        self.start_client(now, session, peer, branch, Method::Update, request);
    }

    /// Sends `request` (ours, with Via branch `branch`) through a new client
    /// transaction.
    fn start_client(
        &mut self,
        now: Instant,
        session: SessionId,
        peer: Peer,
        branch: String,
        method: Method,
        request: Bytes,
    ) {
        let (txn, actions) =
            ClientNonInvite::new(now, request, Self::reliability(&peer), self.timers);
        self.clients.insert(
            branch.clone(),
            ClientTxn {
                txn,
                peer,
                session,
                method,
            },
        );
        self.run_client_actions(now, &branch, actions);
    }

    /// Asks the client for a full metadata snapshot (RFC 7866 §9.2): an
    /// UPDATE with a `requestsnapshot` body and no SDP.
    pub fn request_snapshot(&mut self, now: Instant, session: SessionId, reason: &str) {
        let reason: String = reason
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<requestsnapshot xmlns='urn:ietf:params:xml:ns:recording:1'>\r\n<requestreason xml:lang=\"en\">{reason}</requestreason>\r\n</requestsnapshot>\r\n"
        );
        self.send_update(
            now,
            session,
            Some(("application/rs-metadata-request", body.as_bytes())),
        );
    }
}

/// A request within dialog `d` with CSeq `cseq` (we are the UAS: the
/// remote target is the client's Contact, the route set its Record-Route
/// in order).
fn in_dialog_request(
    config: &CoreConfig,
    d: &Dialog,
    method: &Method,
    branch: &str,
    cseq: u32,
    body: Option<(&str, &[u8])>,
) -> Bytes {
    let inv = &d.invite;
    let method_name = method.as_str();
    let target = inv
        .header("Contact")
        .and_then(|c| {
            let s = c.find('<')? + 1;
            let e = c[s..].find('>')? + s;
            Some(c[s..e].to_string())
        })
        .or_else(|| {
            inv.header("Contact")
                .map(|c| c.split(';').next().unwrap_or(c).trim().to_string())
        })
        .unwrap_or_else(|| format!("sip:{}", d.peer.addr));
    let proto = d.peer.transport.via();
    let host = d.media_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let contact = contact_uri(config, d.peer.transport, host);
    let port = local_port(config, d.peer.transport);
    let host = host_text(host);
    let from = inv.header("To").unwrap_or_default();
    let from = if header_param(from, "tag").is_some() {
        from.to_string()
    } else {
        format!("{from};tag={}", d.local_tag)
    };
    let mut text = format!(
        "{method_name} {target} SIP/2.0\r\nVia: SIP/2.0/{proto} {host}:{port};branch={branch}\r\nMax-Forwards: 70\r\n"
    );
    for rr in inv.headers_named("Record-Route") {
        text.push_str(&format!("Route: {rr}\r\n"));
    }
    text.push_str(&format!(
        "From: {from}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method_name}\r\nContact: <{contact}>;+sip.srs\r\nUser-Agent: {}\r\n",
        inv.header("From").unwrap_or_default(),
        inv.call_id().unwrap_or_default(),
        config.user_agent
    ));
    if *method != Method::Bye {
        text.push_str("Require: siprec\r\n");
    }
    if let Some(t) = &d.timer {
        if *method == Method::Update {
            text.push_str(&format!(
                "Session-Expires: {}\r\nSupported: timer\r\n",
                t.header()
            ));
        }
    }
    let body = match body {
        Some((ct, b)) => {
            text.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Disposition: recording-session\r\n"
            ));
            b
        }
        None => &[],
    };
    text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    Bytes::from(bytes)
}

/// Seconds in the `Retry-After` of a 503 given to a session the IO layer
/// could not start (no free port, descriptors short).
const REJECT_RETRY_AFTER: &str = "5";

/// An IP as the host part of a SIP URI (IPv6 in brackets).
fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Our Contact URI on a transport: `sips:` on our TLS port when the
/// client reached us over TLS (RFC 3261 §8.1.1.8, §12.1.1), `sip:` with
/// `transport=tcp` over TCP.
fn contact_uri(config: &CoreConfig, transport: Transport, ip: IpAddr) -> String {
    let (host, port) = (host_text(ip), local_port(config, transport));
    match transport {
        Transport::Udp => format!("sip:srs@{host}:{port}"),
        Transport::Tcp => format!("sip:srs@{host}:{port};transport=tcp"),
        Transport::Tls => format!("sips:srs@{host}:{port}"),
    }
}

/// Our port on a transport (TLS listens on its own).
fn local_port(config: &CoreConfig, transport: Transport) -> u16 {
    match transport {
        Transport::Tls => config.tls_port.unwrap_or(config.sip_port),
        Transport::Udp | Transport::Tcp => config.sip_port,
    }
}

#[cfg(test)]
mod tests;
