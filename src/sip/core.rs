//! The sans-IO SIP user agent server for recording sessions.
//!
//! Inputs are bytes with the peer they came from and the current time;
//! outputs are polled, in the style of quinn-proto:
//! [`SipCore::poll_transmit`] (what to send where), [`SipCore::poll_event`]
//! (sessions offered, confirmed, updated, ended) and [`SipCore::poll_timeout`]
//! (when to call [`SipCore::handle_timeout`]). No sockets, no clock.
//!
//! Transactions (RFC 3261 §17) are kept small: a server INVITE transaction
//! answers 100 Trying at once and replays its last response to
//! retransmissions; the 2xx is retransmitted over UDP from T1 doubling to T2
//! until the ACK arrives, and after 64*T1 without ACK the session is ended
//! with a BYE (§13.3.1.4). Non-INVITE responses are cached for 64*T1 (Timer
//! J) so retransmitted requests get the same answer.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::message::{self, header_param, Message, Method, ResponseBuilder, StartLine};
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
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
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
    /// Our 2xx was never acknowledged.
    AckTimeout,
    /// The IO layer asked (shutdown).
    Local,
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
    /// The client acknowledged our answer.
    Confirmed { session: SessionId },
    /// A re-INVITE or UPDATE changed the SDP and/or carried metadata.
    Updated {
        session: SessionId,
        sdp: Option<Box<SdpOffer>>,
        metadata_xml: Option<String>,
    },
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
    /// Seed for tags and branches (random in production, fixed in tests).
    pub tag_seed: u64,
    pub t1: Duration,
    pub t2: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            user_agent: concat!("srs/", env!("CARGO_PKG_VERSION")).to_string(),
            max_sessions: 10_000,
            sip_port: 5060,
            tag_seed: 0x5125,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";
pub const ACCEPT: &str =
    "application/sdp, application/rs-metadata+xml, application/rs-metadata, multipart/mixed";
/// Option tags we accept in Require.
const SUPPORTED_REQUIRE: &[&str] = &["siprec", "timer"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Offered to the IO layer, not yet answered.
    Offered,
    /// 2xx sent; `acked` once the ACK arrived.
    Answered { acked: bool },
}

#[derive(Debug)]
struct Retransmit {
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
struct Dialog {
    peer: Peer,
    local_tag: String,
    /// The request that the current INVITE transaction answers.
    invite: Message,
    invite_branch: String,
    last_response: Option<Bytes>,
    retransmit: Option<Retransmit>,
    state: State,
    offer: SdpOffer,
    media_ip: Option<IpAddr>,
    answers: Vec<AnswerMedia>,
    sdp_version: u64,
    local_cseq: u32,
}

#[derive(Debug)]
struct Cached {
    response: Bytes,
    expires: Instant,
}

/// The SIP side of the recording server, without IO.
#[derive(Debug)]
pub struct SipCore {
    config: CoreConfig,
    dialogs: HashMap<SessionId, Dialog>,
    /// (Call-ID, From tag) -> session.
    by_call: HashMap<(String, String), SessionId>,
    /// (branch, method) -> last response, for retransmitted requests.
    cache: HashMap<(String, String), Cached>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_id: u64,
}

impl SipCore {
    pub fn new(config: CoreConfig) -> Self {
        SipCore {
            config,
            dialogs: HashMap::new(),
            by_call: HashMap::new(),
            cache: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Number of sessions not yet ended.
    pub fn active_sessions(&self) -> usize {
        self.dialogs.len()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest time at which [`SipCore::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retrans = self
            .dialogs
            .values()
            .filter_map(|d| d.retransmit.as_ref())
            .map(|r| r.next.min(r.give_up));
        let cache = self.cache.values().map(|c| c.expires);
        retrans.chain(cache).min()
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

    fn send_and_cache(&mut self, now: Instant, peer: Peer, req: &Message, response: Bytes) {
        if let (Some(branch), Some((_, m))) = (req.via_branch(), req.cseq()) {
            self.cache.insert(
                (branch.to_string(), m.as_str().to_string()),
                Cached {
                    response: response.clone(),
                    expires: now + self.config.t1 * 64,
                },
            );
        }
        self.send(peer, response);
    }

    /// Feeds one datagram (UDP) or one framed message (TCP).
    pub fn handle_input(&mut self, now: Instant, peer: Peer, data: &[u8]) {
        let msg = match message::parse(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%peer.addr, error = %e, "unparsable SIP message");
                self.answer_unparsable(now, peer, data, &e.to_string());
                return;
            }
        };
        let StartLine::Request { method, .. } = &msg.start else {
            return; // we send no requests that expect a response handled here
        };
        if msg.call_id().is_none() || msg.cseq().is_none() || msg.via_branch().is_none() {
            if *method != Method::Ack {
                self.respond(now, peer, &msg, 400, "Missing Mandatory Header");
            }
            return;
        }
        // A retransmitted request: replay our answer.
        if *method != Method::Ack {
            let key = (
                msg.via_branch().unwrap_or_default().to_string(),
                method.as_str().to_string(),
            );
            if let Some(c) = self.cache.get(&key) {
                let r = c.response.clone();
                self.send(peer, r);
                return;
            }
        }
        match method.clone() {
            Method::Invite if msg.to_tag().is_none() => self.on_invite(now, peer, msg),
            Method::Invite => self.on_reinvite(now, peer, msg),
            Method::Ack => self.on_ack(msg),
            Method::Bye => self.on_bye(now, peer, msg),
            Method::Cancel => self.on_cancel(now, peer, msg),
            Method::Options => {
                let r = ResponseBuilder::new(&msg, 200, "OK", Some(&self.fresh_tag()))
                    .header("Allow", ALLOW)
                    .header("Accept", ACCEPT)
                    .header("Supported", "siprec")
                    .header("Server", &self.config.user_agent.clone())
                    .build();
                self.send_and_cache(now, peer, &msg, r);
            }
            Method::Update => self.on_update(now, peer, msg),
            Method::Info => match self.find_dialog(&msg) {
                Some(_) => self.respond(now, peer, &msg, 200, "OK"),
                None => self.respond(now, peer, &msg, 481, "Call/Transaction Does Not Exist"),
            },
            _ => self.respond(now, peer, &msg, 405, "Method Not Allowed"),
        }
    }

    /// A message we could not parse gets 400 when its headers are readable
    /// enough to address a response; otherwise it is dropped.
    fn answer_unparsable(&mut self, now: Instant, peer: Peer, data: &[u8], why: &str) {
        let Ok(head) = message::parse_head(data) else {
            return;
        };
        if head.method().is_none() || head.method() == Some(&Method::Ack) {
            return;
        }
        if head.call_id().is_some() && head.cseq().is_some() && head.via_branch().is_some() {
            let reason: String = format!("Bad Request ({why})")
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            self.respond(now, peer, &head, 400, &reason);
        }
    }

    fn dialog_key(msg: &Message) -> (String, String) {
        (
            msg.call_id().unwrap_or_default().to_string(),
            msg.from_tag().unwrap_or_default().to_string(),
        )
    }

    fn find_dialog(&self, msg: &Message) -> Option<SessionId> {
        let id = *self.by_call.get(&Self::dialog_key(msg))?;
        let d = self.dialogs.get(&id)?;
        match msg.to_tag() {
            Some(t) if t != d.local_tag => None,
            _ => Some(id),
        }
    }

    fn on_invite(&mut self, now: Instant, peer: Peer, msg: Message) {
        if let Some(id) = self.by_call.get(&Self::dialog_key(&msg)).copied() {
            // Same Call-ID and From tag, new branch: a retransmission through
            // another path; replay what we have.
            let resp = self.dialogs.get(&id).and_then(|d| d.last_response.clone());
            if let Some(r) = resp {
                self.send(peer, r);
            }
            return;
        }
        let unsupported: Vec<String> = msg
            .tokens("Require")
            .into_iter()
            .filter(|t| !SUPPORTED_REQUIRE.contains(&t.as_str()))
            .collect();
        if !unsupported.is_empty() {
            let r = ResponseBuilder::new(&msg, 420, "Bad Extension", Some(&self.fresh_tag()))
                .header("Unsupported", &unsupported.join(", "))
                .build();
            self.send_and_cache(now, peer, &msg, r);
            return;
        }
        if self.dialogs.len() >= self.config.max_sessions {
            let r =
                ResponseBuilder::new(&msg, 503, "Session Limit Reached", Some(&self.fresh_tag()))
                    .header("Retry-After", "5")
                    .build();
            self.send_and_cache(now, peer, &msg, r);
            return;
        }
        let offer = match read_offer(&msg) {
            Ok(o) => o,
            Err(e) => {
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
        self.send(peer, trying.clone());
        let id = self.next_id;
        self.next_id += 1;
        let local_tag = self.fresh_tag();
        self.by_call.insert(Self::dialog_key(&msg), id);
        self.dialogs.insert(
            id,
            Dialog {
                peer,
                local_tag,
                invite_branch: msg.via_branch().unwrap_or_default().to_string(),
                invite: msg.clone(),
                last_response: Some(trying),
                retransmit: None,
                state: State::Offered,
                offer: offer.sdp.clone(),
                media_ip: None,
                answers: Vec::new(),
                sdp_version: 1,
                local_cseq: 0,
            },
        );
        self.events.push_back(Event::Offered {
            session: id,
            peer,
            invite: Box::new(msg),
            offer: Box::new(offer),
        });
    }

    /// Answers an offered session: `answers` has one entry per offered
    /// m-line (a port, or `None` to reject that line); `media_ip` goes into
    /// the SDP and the Contact. Returns false if the session is gone
    /// (cancelled meanwhile): the caller then releases what it allocated.
    pub fn accept(
        &mut self,
        now: Instant,
        session: SessionId,
        media_ip: IpAddr,
        answers: Vec<AnswerMedia>,
    ) -> bool {
        let Some(d) = self.dialogs.get_mut(&session) else {
            return false;
        };
        if d.state != State::Offered {
            return false;
        }
        d.media_ip = Some(media_ip);
        d.answers = answers;
        d.state = State::Answered { acked: false };
        self.send_answer(now, session);
        true
    }

    /// Builds and sends the 2xx with our SDP for the dialog's current offer.
    fn send_answer(&mut self, now: Instant, session: SessionId) {
        let (t1, ua, sip_port) = (
            self.config.t1,
            self.config.user_agent.clone(),
            self.config.sip_port,
        );
        let Some(d) = self.dialogs.get_mut(&session) else {
            return;
        };
        let ip = d.media_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let sdp = sdp::build_answer(&d.offer, ip, &d.answers, session, d.sdp_version);
        let host = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let transport = match d.peer.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        let mut b = ResponseBuilder::new(&d.invite, 200, "OK", Some(&d.local_tag));
        for rr in d.invite.headers_named("Record-Route") {
            b = b.header("Record-Route", rr);
        }
        let resp = b
            .header(
                "Contact",
                &format!("<sip:srs@{host}:{sip_port}{transport}>;+sip.srs"),
            )
            .header("Allow", ALLOW)
            .header("Supported", "siprec")
            .header("Server", &ua)
            .body("application/sdp", sdp.into_bytes())
            .build();
        d.last_response = Some(resp.clone());
        d.retransmit = Some(Retransmit {
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
        });
        let peer = d.peer;
        self.send(peer, resp);
    }

    /// Refuses an offered session (e.g. no media port free).
    pub fn reject(&mut self, now: Instant, session: SessionId, code: u16, reason: &str) {
        let Some(d) = self.remove_dialog(session) else {
            return;
        };
        let tag = d.local_tag.clone();
        let r = ResponseBuilder::new(&d.invite, code, reason, Some(&tag)).build();
        self.send_and_cache(now, d.peer, &d.invite, r);
    }

    /// Ends an answered session from our side (shutdown): sends BYE and
    /// reports [`Event::Ended`].
    pub fn terminate(&mut self, session: SessionId) {
        if let Some(d) = self.remove_dialog(session) {
            self.send_bye(&d);
            self.events.push_back(Event::Ended {
                session,
                reason: EndReason::Local,
                metadata_xml: None,
            });
        }
    }

    fn remove_dialog(&mut self, session: SessionId) -> Option<Dialog> {
        let d = self.dialogs.remove(&session)?;
        self.by_call.remove(&Self::dialog_key(&d.invite));
        Some(d)
    }

    fn on_reinvite(&mut self, now: Instant, peer: Peer, msg: Message) {
        let Some(id) = self.find_dialog(&msg) else {
            self.respond(now, peer, &msg, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let Ok((sdp_bytes, meta)) = split_body(&msg) else {
            self.respond(now, peer, &msg, 415, "Unsupported Media Type");
            return;
        };
        let new_offer = match sdp_bytes.map(|b| sdp::parse_offer(&b)).transpose() {
            Ok(o) => o,
            Err(_) => {
                self.respond(now, peer, &msg, 488, "Bad SDP Offer");
                return;
            }
        };
        let Some(d) = self.dialogs.get_mut(&id) else {
            return;
        };
        if matches!(d.state, State::Offered | State::Answered { acked: false }) {
            let r = ResponseBuilder::new(&msg, 491, "Request Pending", None).build();
            self.send_and_cache(now, peer, &msg, r);
            return;
        }
        // Keep each m-line's port; new m-lines are rejected for now.
        if let Some(o) = &new_offer {
            d.offer = o.clone();
            d.answers.resize(o.media.len(), AnswerMedia { port: None });
            d.sdp_version += 1;
        }
        d.invite_branch = msg.via_branch().unwrap_or_default().to_string();
        d.invite = msg;
        d.state = State::Answered { acked: false };
        self.send_answer(now, id);
        self.events.push_back(Event::Updated {
            session: id,
            sdp: new_offer.map(Box::new),
            metadata_xml: meta.map(|m| String::from_utf8_lossy(&m).into_owned()),
        });
    }

    fn on_update(&mut self, now: Instant, peer: Peer, msg: Message) {
        let Some(id) = self.find_dialog(&msg) else {
            self.respond(now, peer, &msg, 481, "Call/Transaction Does Not Exist");
            return;
        };
        let Ok((sdp_bytes, meta)) = split_body(&msg) else {
            self.respond(now, peer, &msg, 415, "Unsupported Media Type");
            return;
        };
        if sdp_bytes.is_some() {
            // SDP in UPDATE is handled with re-INVITE semantics in a later step.
            self.respond(now, peer, &msg, 488, "SDP In UPDATE Not Supported");
            return;
        }
        self.respond(now, peer, &msg, 200, "OK");
        if let Some(m) = meta {
            self.events.push_back(Event::Updated {
                session: id,
                sdp: None,
                metadata_xml: Some(String::from_utf8_lossy(&m).into_owned()),
            });
        }
    }

    fn on_ack(&mut self, msg: Message) {
        let Some(id) = self.find_dialog(&msg) else {
            return; // ACK to a non-2xx, or stray: absorbed
        };
        if let Some(d) = self.dialogs.get_mut(&id) {
            if d.state == (State::Answered { acked: false }) {
                d.state = State::Answered { acked: true };
                d.retransmit = None;
                self.events.push_back(Event::Confirmed { session: id });
            }
        }
    }

    fn on_bye(&mut self, now: Instant, peer: Peer, msg: Message) {
        let Some(id) = self.find_dialog(&msg) else {
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
            self.dialogs
                .get(id)
                .is_some_and(|d| Some(d.invite_branch.as_str()) == msg.via_branch())
        });
        let Some(id) = target else {
            self.respond(now, peer, &msg, 481, "Call/Transaction Does Not Exist");
            return;
        };
        self.respond(now, peer, &msg, 200, "OK");
        if self.dialogs.get(&id).map(|d| d.state) == Some(State::Offered) {
            if let Some(d) = self.remove_dialog(id) {
                let r =
                    ResponseBuilder::new(&d.invite, 487, "Request Terminated", Some(&d.local_tag))
                        .build();
                self.send_and_cache(now, d.peer, &d.invite, r);
                self.events.push_back(Event::Ended {
                    session: id,
                    reason: EndReason::Cancelled,
                    metadata_xml: None,
                });
            }
        }
    }

    /// Retransmits unacknowledged 2xx, gives up after 64*T1, expires caches.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.cache.retain(|_, c| c.expires > now);
        let t2 = self.config.t2;
        let mut resend = Vec::new();
        let mut expired = Vec::new();
        for (id, d) in &mut self.dialogs {
            let Some(r) = &mut d.retransmit else { continue };
            if now >= r.give_up {
                d.retransmit = None;
                if d.state == (State::Answered { acked: false }) {
                    expired.push(*id);
                }
            } else if now >= r.next {
                r.interval = (r.interval * 2).min(t2);
                r.next = now + r.interval;
                if d.peer.transport == Transport::Udp {
                    if let Some(resp) = &d.last_response {
                        resend.push((d.peer, resp.clone()));
                    }
                }
            }
        }
        for (peer, resp) in resend {
            self.send(peer, resp);
        }
        for id in expired {
            tracing::warn!(
                session = id,
                "no ACK for our 2xx after 64*T1: ending the session"
            );
            if let Some(d) = self.remove_dialog(id) {
                self.send_bye(&d);
            }
            self.events.push_back(Event::Ended {
                session: id,
                reason: EndReason::AckTimeout,
                metadata_xml: None,
            });
        }
    }

    /// Sends BYE within a dialog (we are the UAS: the remote target is the
    /// client's Contact, the route set its Record-Route in order).
    fn send_bye(&mut self, d: &Dialog) {
        let inv = &d.invite;
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
        let branch = format!("z9hG4bK{}", self.fresh_tag());
        let proto = match d.peer.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        let host = d.media_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let from = inv.header("To").unwrap_or_default();
        let from = if header_param(from, "tag").is_some() {
            from.to_string()
        } else {
            format!("{from};tag={}", d.local_tag)
        };
        let mut text = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/{proto} {host}:{};branch={branch}\r\nMax-Forwards: 70\r\n",
            self.config.sip_port
        );
        for rr in inv.headers_named("Record-Route") {
            text.push_str(&format!("Route: {rr}\r\n"));
        }
        text.push_str(&format!(
            "From: {from}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nUser-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            inv.header("From").unwrap_or_default(),
            inv.call_id().unwrap_or_default(),
            d.local_cseq + 1,
            self.config.user_agent
        ));
        self.send(d.peer, Bytes::from(text));
    }
}

#[cfg(test)]
mod tests;
