//! SIP messages: a tolerant parser in front of `rsip`, and a response builder.
//!
//! Real recording clients send folded headers, compact header names, odd
//! spacing (`Content-Length:  2167`) and bodies whose length disagrees with
//! the datagram. `rsip` 0.4 fails on folded and compact headers and ignores
//! Content-Length, so this adapter:
//!
//! 1. splits head and body itself and cuts the body by Content-Length,
//! 2. unfolds continuation lines, expands compact names and trims values,
//! 3. hands the normalised message to `rsip` to validate the start line and
//!    the Request-URI,
//! 4. keeps its own simple, ordered header list for the rest of the server.

use bytes::Bytes;
use std::fmt::Write as _;

/// Longest SIP message accepted (UDP datagram or TCP frame).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Most header lines accepted in one message.
pub const MAX_HEADERS: usize = 256;

/// Why a message could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("no blank line ending the headers")]
    Incomplete,
    #[error("message larger than {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    #[error("headers are not UTF-8")]
    NotUtf8,
    #[error("bad start line: {0}")]
    StartLine(String),
    #[error("bad header line: {0}")]
    HeaderLine(String),
    #[error("bad Content-Length: {0}")]
    ContentLength(String),
    #[error("body shorter ({got} bytes) than Content-Length ({want})")]
    Truncated { want: usize, got: usize },
    #[error("rejected by the SIP grammar: {0}")]
    Grammar(String),
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("SIP version {0} not supported (only SIP/2.0)")]
    Version(String),
}

impl ParseError {
    /// The response a request refused for this reason gets, when it can
    /// be addressed: 505 for another SIP version, 513 for a message over
    /// the size cap, 400 for everything else.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            ParseError::Version(_) => (505, "Version Not Supported"),
            ParseError::TooLarge => (513, "Message Too Large"),
            ParseError::TooManyHeaders => (400, "Too Many Headers"),
            _ => (400, "Bad Request"),
        }
    }
}

/// A SIP method. `Other` keeps the token as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Update,
    Info,
    Prack,
    Register,
    Subscribe,
    Notify,
    Refer,
    Message,
    Other(String),
}

impl Method {
    pub fn parse(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "REGISTER" => Method::Register,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            other => Method::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Register => "REGISTER",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Other(s) => s,
        }
    }
}

/// First line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: Method, uri: String },
    Response { code: u16, reason: String },
}

/// One header, name in canonical form (compact forms expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

/// Compact forms (RFC 3261 §7.3.3 and extensions) and the canonical spelling
/// of the headers this server reads or writes.
fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let canon = match lower.as_str() {
        "i" | "call-id" => "Call-ID",
        "m" | "contact" => "Contact",
        "e" | "content-encoding" => "Content-Encoding",
        "l" | "content-length" => "Content-Length",
        "c" | "content-type" => "Content-Type",
        "f" | "from" => "From",
        "s" | "subject" => "Subject",
        "k" | "supported" => "Supported",
        "t" | "to" => "To",
        "v" | "via" => "Via",
        "o" | "event" => "Event",
        "r" | "refer-to" => "Refer-To",
        "b" | "referred-by" => "Referred-By",
        "u" | "allow-events" => "Allow-Events",
        "x" | "session-expires" => "Session-Expires",
        "cseq" => "CSeq",
        "require" => "Require",
        "record-route" => "Record-Route",
        "content-disposition" => "Content-Disposition",
        "max-forwards" => "Max-Forwards",
        "allow" => "Allow",
        "accept" => "Accept",
        "user-agent" => "User-Agent",
        "session-id" => "Session-ID",
        _ => return name.to_string(),
    };
    canon.to_string()
}

/// Index of the first byte after the blank line ending the head, and where
/// the head text ends (before that blank line).
fn head_end(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            // "\n\n" or "\n\r\n"
            if data.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if data.get(i + 1) == Some(&b'\r') && data.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Reads Content-Length from raw head bytes (any spelling, compact `l`).
fn content_length_of(head: &str) -> Result<Option<usize>, ParseError> {
    for line in head.lines().skip(1) {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                let v = value.trim();
                return v
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| ParseError::ContentLength(v.to_string()));
            }
        }
    }
    Ok(None)
}

/// Skips the CRLFs that clients send as keep-alives between messages.
fn skip_leading_crlf(data: &[u8]) -> usize {
    data.iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count()
}

/// Parses one complete message (a UDP datagram, or a frame cut by
/// [`StreamFramer`]). A body longer than Content-Length is cut; a shorter
/// one is an error. Without Content-Length the rest of the datagram is the body.
pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
    parse_inner(data, true)
}

/// Parses only the start line and headers, ignoring the body and
/// Content-Length.
pub fn parse_head(data: &[u8]) -> Result<Message, ParseError> {
    parse_inner(data, false)
}

/// Reads as much of a refused message's head as it takes to address a
/// response to it: the method and URI of a request line whatever its
/// version or trailing tokens, and every header line however many (the
/// size is bounded by the datagram or the framer). Never used to act on a
/// message, only to answer 400/505/513.
pub fn parse_head_to_answer(data: &[u8]) -> Result<Message, ParseError> {
    let data = &data[skip_leading_crlf(data)..];
    let (text_end, _) = head_end(data).ok_or(ParseError::Incomplete)?;
    let head = String::from_utf8_lossy(&data[..text_end]);
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut tokens = first.split_whitespace();
    let (Some(method), Some(uri)) = (tokens.next(), tokens.next()) else {
        return Err(ParseError::StartLine(first.chars().take(120).collect()));
    };
    if !method.bytes().all(|x| x.is_ascii_alphabetic()) || method.starts_with("SIP") {
        return Err(ParseError::StartLine(first.chars().take(120).collect()));
    }
    let mut headers: Vec<Header> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                headers.push(Header {
                    name: canonical_name(name),
                    value: value.trim().to_string(),
                });
            }
        }
    }
    Ok(Message {
        start: StartLine::Request {
            method: Method::parse(method),
            uri: uri.to_string(),
        },
        headers,
        body: Bytes::new(),
    })
}

fn parse_inner(data: &[u8], with_body: bool) -> Result<Message, ParseError> {
    if data.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    let data = &data[skip_leading_crlf(data)..];
    let (text_end, body_start) = head_end(data).ok_or(ParseError::Incomplete)?;
    let head = std::str::from_utf8(&data[..text_end]).map_err(|_| ParseError::NotUtf8)?;
    let rest = &data[body_start..];
    let body = match if with_body {
        content_length_of(head)?
    } else {
        Some(0)
    } {
        Some(n) if n > rest.len() => {
            return Err(ParseError::Truncated {
                want: n,
                got: rest.len(),
            })
        }
        Some(n) => &rest[..n],
        None => rest,
    };

    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or_default().trim();
    let start = parse_start_line(first)?;
    let mut headers: Vec<Header> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // folded continuation (RFC 3261 §7.3.1): joined with one space
            let last = headers
                .last_mut()
                .ok_or_else(|| ParseError::HeaderLine(line.to_string()))?;
            last.value.push(' ');
            last.value.push_str(line.trim());
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ParseError::HeaderLine(line.to_string()))?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ParseError::HeaderLine(line.to_string()));
        }
        headers.push(Header {
            name: canonical_name(name),
            value: value.trim().to_string(),
        });
    }
    let msg = Message {
        start,
        headers,
        body: Bytes::copy_from_slice(body),
    };
    if with_body {
        validate_with_rsip(&msg)?;
    }
    Ok(msg)
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::StartLine(line.chars().take(120).collect());
    let mut parts = line.splitn(3, ' ');
    let a = parts.next().ok_or_else(bad)?;
    let b = parts.next().ok_or_else(bad)?;
    let c = parts.next().unwrap_or_default().trim();
    if a.starts_with("SIP/") {
        let code: u16 = b.parse().map_err(|_| bad())?;
        if !(100..700).contains(&code) {
            return Err(bad());
        }
        Ok(StartLine::Response {
            code,
            reason: c.to_string(),
        })
    } else {
        if !a.bytes().all(|x| x.is_ascii_alphabetic()) || b.is_empty() {
            return Err(bad());
        }
        if c.starts_with("SIP/") && c != "SIP/2.0" && !c.contains(char::is_whitespace) {
            return Err(ParseError::Version(c.chars().take(20).collect()));
        }
        // Exactly `Method SP Request-URI SP SIP/2.0` (RFC 3261 §7.1): a
        // trailing token is a malformed request line.
        if c != "SIP/2.0" {
            return Err(bad());
        }
        Ok(StartLine::Request {
            method: Method::parse(a),
            uri: b.to_string(),
        })
    }
}

/// rsip 0.4's tokenizer refuses `:`, `[`, `]` and `/` in URI parameter
/// values, which RFC 3261 allows (`param-unreserved`); Genesys record URIs
/// carry `datetime=2024-07-25T19:19:59Z` and `gvp-tenant-id=[Env].record`.
/// For validation only, those characters are %-escaped after the first `;`.
fn escape_param_values(uri: &str) -> String {
    match uri.split_once(';') {
        Some((base, params)) => {
            let mut out = String::with_capacity(uri.len() + 16);
            out.push_str(base);
            out.push(';');
            for c in params.chars() {
                match c {
                    ':' => out.push_str("%3A"),
                    '[' => out.push_str("%5B"),
                    ']' => out.push_str("%5D"),
                    '/' => out.push_str("%2F"),
                    c => out.push(c),
                }
            }
            out
        }
        None => uri.to_string(),
    }
}

/// Gives the normalised start line and the Request-URI to `rsip`, which
/// checks them against the SIP grammar. Headers are left out: they are
/// already split, and `rsip` parses header values lazily anyway.
fn validate_with_rsip(msg: &Message) -> Result<(), ParseError> {
    let StartLine::Request { method, uri } = &msg.start else {
        return Ok(());
    };
    let text = format!(
        "{} {} SIP/2.0\r\n\r\n",
        method.as_str(),
        escape_param_values(uri)
    );
    match rsip::SipMessage::try_from(text.as_str()) {
        Ok(_) => Ok(()),
        Err(e) => Err(ParseError::Grammar(e.to_string())),
    }
}

impl Message {
    /// First value of header `name` (case-insensitive; canonical or compact).
    pub fn header(&self, name: &str) -> Option<&str> {
        let canon = canonical_name(name);
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(&canon))
            .map(|h| h.value.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let canon = canonical_name(name);
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(&canon))
            .map(|h| h.value.as_str())
    }

    /// Comma-separated tokens of every header `name` (Require, Supported, Allow...).
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.headers_named(name)
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect()
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, Method)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        let m = Method::parse(it.next()?);
        Some((n, m))
    }

    /// `branch` parameter of the top Via.
    pub fn via_branch(&self) -> Option<&str> {
        let via = self.header("Via")?;
        let top = via.split(',').next()?;
        header_param(top, "branch")
    }

    pub fn from_tag(&self) -> Option<&str> {
        header_param(self.header("From")?, "tag")
    }

    pub fn to_tag(&self) -> Option<&str> {
        header_param(self.header("To")?, "tag")
    }

    /// Content-Type without parameters, lower case.
    pub fn content_type(&self) -> Option<String> {
        self.header("Content-Type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// Value of parameter `name` in a header value like `<sip:a@b>;tag=x;+sip.src`.
/// Parameters inside `<...>` belong to the URI and are not looked at.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let after_uri = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after_uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Whether a header value carries a flag parameter such as `+sip.src` or `src`.
pub fn has_header_flag(value: &str, flag: &str) -> bool {
    let after_uri = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    after_uri.split(';').skip(1).any(|p| {
        let k = p.split('=').next().unwrap_or("").trim();
        k.eq_ignore_ascii_case(flag)
    })
}

/// Builds a response to `req`: Via, From, To, Call-ID and CSeq copied
/// (RFC 3261 §8.2.6.2), a To tag added when `to_tag` is given and the
/// request had none.
pub struct ResponseBuilder {
    text: String,
    body: Option<(String, Vec<u8>)>,
}

impl ResponseBuilder {
    pub fn new(req: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Self {
        let mut text = format!("SIP/2.0 {code} {reason}\r\n");
        for v in req.headers_named("Via") {
            let _ = write!(text, "Via: {v}\r\n");
        }
        if let Some(v) = req.header("From") {
            let _ = write!(text, "From: {v}\r\n");
        }
        if let Some(v) = req.header("To") {
            match to_tag {
                Some(tag) if req.to_tag().is_none() => {
                    let _ = write!(text, "To: {v};tag={tag}\r\n");
                }
                _ => {
                    let _ = write!(text, "To: {v}\r\n");
                }
            }
        }
        if let Some(v) = req.call_id() {
            let _ = write!(text, "Call-ID: {v}\r\n");
        }
        if let Some(v) = req.header("CSeq") {
            let _ = write!(text, "CSeq: {v}\r\n");
        }
        ResponseBuilder { text, body: None }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        let _ = write!(self.text, "{name}: {value}\r\n");
        self
    }

    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.body = Some((content_type.to_string(), body));
        self
    }

    pub fn build(self) -> Bytes {
        let mut text = self.text;
        let body = match self.body {
            Some((ct, body)) => {
                let _ = write!(text, "Content-Type: {ct}\r\n");
                body
            }
            None => Vec::new(),
        };
        let _ = write!(text, "Content-Length: {}\r\n\r\n", body.len());
        let mut out = text.into_bytes();
        out.extend_from_slice(&body);
        Bytes::from(out)
    }
}

/// Why a byte stream (TCP) cannot be framed any further. The connection
/// should be closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    #[error("message larger than {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    /// A complete head whose Content-Length puts the message over the cap:
    /// the head is given so the request can be answered 513.
    #[error("Content-Length puts the message over {MAX_MESSAGE_SIZE} bytes")]
    Oversized(Bytes),
    #[error("headers are not UTF-8")]
    NotUtf8,
    #[error("bad Content-Length: {0}")]
    ContentLength(String),
}

/// Cuts a byte stream into messages by Content-Length (RFC 3261 §18.3):
/// several messages in one read, one message over several reads.
///
/// Linear in the bytes pushed, however they are split: the search for the
/// end of the head resumes where the last one stopped, and a head once
/// found is not parsed again while the body trickles in (a client sending
/// one byte at a time cannot make each byte cost the whole buffer).
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for the end of the head.
    scanned: usize,
    /// The current message's total length, once its head is complete.
    frame: Option<usize>,
}

impl StreamFramer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes of an incomplete message are waiting (keep-alive CRLFs
    /// between messages do not count once [`StreamFramer::next_message`]
    /// has run).
    pub fn pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Next complete message, if the buffer holds one. A missing
    /// Content-Length on a stream counts as 0.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FramingError> {
        let total = match self.frame {
            Some(total) => total,
            None => {
                if self.scanned == 0 {
                    let skip = skip_leading_crlf(&self.buf);
                    self.buf.drain(..skip);
                }
                // A match needs up to 2 bytes after its '\n': the last two
                // positions searched may not have been decided yet.
                let from = self.scanned.saturating_sub(2);
                let Some((text_end, body_start)) = head_end(&self.buf[from..]) else {
                    self.scanned = self.buf.len();
                    if self.buf.len() > MAX_MESSAGE_SIZE {
                        return Err(FramingError::TooLarge);
                    }
                    return Ok(None);
                };
                let (text_end, body_start) = (from + text_end, from + body_start);
                let head = std::str::from_utf8(&self.buf[..text_end])
                    .map_err(|_| FramingError::NotUtf8)?;
                let len = match content_length_of(head) {
                    Ok(n) => n.unwrap_or(0),
                    Err(ParseError::ContentLength(v)) => {
                        return Err(FramingError::ContentLength(v))
                    }
                    Err(_) => 0,
                };
                let total = body_start.saturating_add(len);
                if total > MAX_MESSAGE_SIZE {
                    return Err(FramingError::Oversized(Bytes::copy_from_slice(
                        &self.buf[..body_start],
                    )));
                }
                self.frame = Some(total);
                total
            }
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg: Vec<u8> = self.buf.drain(..total).collect();
        self.scanned = 0;
        self.frame = None;
        Ok(Some(Bytes::from(msg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:srs@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
From: <sip:src@127.0.0.1>;tag=abc\r\n\
To: <sip:srs@127.0.0.1>\r\n\
Call-ID: call-1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:src@127.0.0.1:5070>;+sip.src\r\n\
Content-Length:  4\r\n\r\nbodyEXTRA";

    #[test]
    fn parses_request_and_cuts_body_by_content_length() {
        let m = parse(INVITE.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:srs@127.0.0.1:5060"));
        assert_eq!(&m.body[..], b"body");
        assert_eq!(m.via_branch(), Some("z9hG4bK-1"));
        assert_eq!(m.from_tag(), Some("abc"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(m.cseq(), Some((1, Method::Invite)));
        assert!(has_header_flag(m.header("Contact").unwrap(), "+sip.src"));
    }

    #[test]
    fn compact_and_folded_headers_and_lf_endings() {
        let raw = "BYE sip:srs@h SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK-2\nf: <sip:a@h>;tag=1\nt: <sip:b@h>\n ;tag=2\ni: cid\nCSeq: 2 BYE\nl: 0\n\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.call_id(), Some("cid"));
        assert_eq!(m.header("To"), Some("<sip:b@h> ;tag=2"));
        assert_eq!(m.to_tag(), Some("2"));
        assert_eq!(m.header("content-length"), Some("0"));
    }

    #[test]
    fn genesys_record_uri_parameters_pass_validation() {
        let uri = "sip:record=01PEP83ES8B0FC7QD151Q2LAES00022M_2024-04-05_12-59-19@10.173.186.80:5060;calluuid=01PEP83ES8B0FC7QD151Q2LAES00022M;dn=6325883654;datetime=2024-04-05T12:59:19Z;gvp-tenant-id=[Environment].record;recorddn=6325883654";
        let raw = INVITE.replace("sip:srs@127.0.0.1:5060", uri);
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.request_uri(), Some(uri), "the URI is kept as received");
    }

    #[test]
    fn short_body_is_an_error_and_garbage_never_panics() {
        let raw = INVITE.replace("Content-Length:  4", "Content-Length: 400");
        assert!(matches!(
            parse(raw.as_bytes()),
            Err(ParseError::Truncated { want: 400, .. })
        ));
        for bad in [
            &b""[..],
            b"\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"INVITE sip:x SIP/2.0\r\nNoColon\r\n\r\n",
            b"SIP/2.0 999 X\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn response_parses_and_builder_copies_dialog_headers() {
        let req = parse(INVITE.as_bytes()).unwrap();
        let resp = ResponseBuilder::new(&req, 200, "OK", Some("srs1"))
            .header("Contact", "<sip:srs@127.0.0.1>;+sip.srs")
            .body("application/sdp", b"v=0\r\n".to_vec())
            .build();
        let m = parse(&resp).unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 200,
                reason: "OK".into()
            }
        );
        assert_eq!(m.to_tag(), Some("srs1"));
        assert_eq!(m.call_id(), Some("call-1"));
        assert_eq!(&m.body[..], b"v=0\r\n");
    }

    #[test]
    fn framer_handles_split_and_coalesced_messages() {
        let one = INVITE.replace("bodyEXTRA", "body");
        let two = format!("{one}\r\n{one}");
        let mut f = StreamFramer::new();
        // byte by byte: exactly one message once complete
        let mut got = Vec::new();
        for b in one.as_bytes() {
            f.push(&[*b]);
            if let Some(m) = f.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0][..], one.as_bytes());
        // two in one read (with a keep-alive CRLF between)
        f.push(two.as_bytes());
        assert!(f.next_message().unwrap().is_some());
        assert!(f.next_message().unwrap().is_some());
        assert!(f.next_message().unwrap().is_none());
    }

    #[test]
    fn too_many_headers() {
        let many = "X-H: 1\r\n".repeat(MAX_HEADERS + 1);
        let raw = INVITE.replace("Call-ID: call-1\r\n", &format!("Call-ID: call-1\r\n{many}"));
        assert_eq!(parse(raw.as_bytes()), Err(ParseError::TooManyHeaders));
    }

    #[test]
    fn framer_gives_the_same_messages_however_the_stream_is_split() {
        let one = INVITE.replace("bodyEXTRA", "body");
        let lf = "OPTIONS sip:a SIP/2.0\nCSeq: 1 OPTIONS\nl: 2\n\nok";
        let mixed = "BYE sip:a SIP/2.0\r\nCSeq: 2 BYE\n\r\n";
        let stream = format!("\r\n{one}{lf}\r\n\r\n{mixed}{one}");
        let whole = {
            let mut f = StreamFramer::new();
            f.push(stream.as_bytes());
            std::iter::from_fn(|| f.next_message().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(whole.len(), 4);
        assert_eq!(&whole[1][..], lf.as_bytes());
        assert_eq!(&whole[2][..], mixed.as_bytes());
        for size in 1..=9 {
            let mut f = StreamFramer::new();
            let mut got = Vec::new();
            for chunk in stream.as_bytes().chunks(size) {
                f.push(chunk);
                while let Some(m) = f.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got, whole, "chunks of {size}");
        }
    }

    #[test]
    fn framer_rejects_oversized_frames() {
        let mut f = StreamFramer::new();
        let head = b"INVITE sip:a SIP/2.0\r\nContent-Length: 999999\r\n\r\n";
        f.push(head);
        assert_eq!(
            f.next_message(),
            Err(FramingError::Oversized(Bytes::from_static(head))),
            "the head comes back so the request can be answered 513"
        );
        let mut f = StreamFramer::new();
        f.push(&vec![b'x'; MAX_MESSAGE_SIZE + 1]);
        assert_eq!(f.next_message(), Err(FramingError::TooLarge));
    }

    #[test]
    fn versions_and_trailing_tokens_are_told_apart() {
        let req = |line: &str| {
            format!("{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n")
        };
        let v3 = req("OPTIONS sip:a SIP/3.0");
        assert_eq!(parse(v3.as_bytes()).unwrap_err().status().0, 505);
        let trailing = req("OPTIONS sip:a SIP/2.0 extra");
        let e = parse(trailing.as_bytes()).unwrap_err();
        assert!(matches!(e, ParseError::StartLine(_)), "{e:?}");
        assert_eq!(e.status().0, 400);
        // Both still give a head to address the answer to.
        for raw in [&v3, &trailing] {
            let h = parse_head_to_answer(raw.as_bytes()).unwrap();
            assert_eq!(h.method(), Some(&Method::Options));
            assert_eq!(h.call_id(), Some("c"));
        }
        let many = format!(
            "OPTIONS sip:a SIP/2.0\r\n{}Via: SIP/2.0/UDP h;branch=z9hG4bK-1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
            "X-H: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            parse(many.as_bytes()).unwrap_err().status(),
            (400, "Too Many Headers")
        );
        let h = parse_head_to_answer(many.as_bytes()).unwrap();
        assert!(h.via_branch().is_some() && h.cseq().is_some());
        // A response or garbage is never "answered".
        assert!(parse_head_to_answer(b"SIP/2.0 200 OK\r\n\r\n").is_err());
        assert!(parse_head_to_answer(b"\x01\x02 x\r\n\r\n").is_err());
    }
}
