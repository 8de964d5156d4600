//! Tolerant parser for SIPREC recording metadata (RFC 7865,
//! `application/rs-metadata+xml` and the legacy `application/rs-metadata`).
//!
//! Real SRCs send several dialects, and this parser accepts all of them:
//!
//! * RFC 7865 (`urn:ietf:params:xml:ns:recording:1`): `participant_id`,
//!   `stream_id`, `<participantstreamassoc>` with `<send>`/`<recv>`.
//! * The pre-RFC layout (Acme/Oracle, AudioCodes, Sonus, Metaswitch; namespace
//!   `urn:ietf:params:xml:ns:recording`): `id=`/`session=` attributes and
//!   `<send>`/`<recv>` directly inside `<participant>`.
//! * BroadWorks/Webex (`<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">`):
//!   `<aor>` and `<name>` directly inside `<participant>`, and
//!   `<send><id>stream</id></send>`.
//!
//! Elements are matched on their local name, case-insensitively, so prefixes,
//! namespaces and `dataMode`/`datamode` spellings do not matter. Elements may
//! come in any order; unknown elements and extension data are skipped.
//!
//! Entity declarations are never expanded: a `<!DOCTYPE` makes the document an
//! error, and only the five predefined entities and character references are
//! resolved.

use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// `complete` (a full snapshot) or `partial` (only what changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataMode {
    /// A full snapshot; the default when the element is absent.
    #[default]
    Complete,
    /// An update holding only the elements that changed.
    Partial,
}

/// The parts of one metadata document that the recorder uses.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Metadata {
    /// Value of `<datamode>` (any case); `Complete` when absent.
    pub datamode: DataMode,
    /// The `<session>` elements (communication sessions).
    pub sessions: Vec<CsSession>,
    /// Participants, in document order. A participant named only by a
    /// `<participantstreamassoc>` (common in partial updates) is added at the
    /// end with no aor or name.
    pub participants: Vec<Participant>,
    /// The `<stream>` elements, in document order.
    pub streams: Vec<Stream>,
}

/// A communication session (`<session>`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CsSession {
    /// `session_id` (RFC 7865) or `id` (legacy) attribute.
    pub id: String,
    /// `<sipSessionID>` values with the whitespace of folded lines removed.
    pub sip_session_ids: Vec<String>,
    /// `<start-time>`, as written.
    pub start_time: Option<String>,
    /// `<stop-time>`, as written.
    pub stop_time: Option<String>,
}

/// A participant and the streams it sends and receives.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Participant {
    /// `participant_id` (RFC 7865) or `id` (legacy) attribute.
    pub id: String,
    /// First `nameID aor` (or `<aor>` in the BroadWorks dialect).
    pub aor: Option<String>,
    /// First non-blank `<name>`, trimmed.
    pub name: Option<String>,
    /// Stream ids this participant sends on (`participantstreamassoc`, or
    /// legacy `<send>` inside `<participant>`).
    pub send: Vec<String>,
    /// Stream ids this participant receives.
    pub recv: Vec<String>,
}

/// A media stream (`<stream>`), tied to an SDP m-line by its label.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stream {
    /// `stream_id` (RFC 7865) or `id` (legacy) attribute; may be empty.
    pub id: String,
    /// `<label>`, matching an SDP `a=label`.
    pub label: Option<String>,
    /// `session_id` (RFC 7865) or `session` (legacy) attribute.
    pub session_id: Option<String>,
}

/// Why a metadata body could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The XML is not well-formed and the lenient retry found nothing usable.
    #[error("metadata is not well-formed XML at byte {position}: {reason}")]
    Malformed {
        /// Byte offset where the parser gave up.
        position: u64,
        /// The parser's description of the problem.
        reason: String,
    },
    /// The document has a DOCTYPE; entity declarations are never expanded.
    #[error("metadata contains a DOCTYPE declaration, which is not accepted")]
    Doctype,
    /// No `<recording>` or `<recording_metadata>` root element.
    #[error("metadata has no <recording> root element")]
    NoRecordingRoot,
}

impl Metadata {
    /// The participant who sends on the stream carrying SDP label `label`
    /// (label -> `<stream>` -> stream id -> participant whose `send` has that id).
    /// For a mixed stream where several participants send, return the first.
    pub fn sender_of_label(&self, label: &str) -> Option<&Participant> {
        let label = label.trim();
        self.streams
            .iter()
            .filter(|s| !s.id.is_empty() && s.label.as_deref() == Some(label))
            .find_map(|s| self.participants.iter().find(|p| p.send.contains(&s.id)))
    }

    /// Labels of the streams `participant_id` sends on, in stream order.
    pub fn labels_sent_by(&self, participant_id: &str) -> Vec<String> {
        let Some(p) = self.participants.iter().find(|p| p.id == participant_id) else {
            return Vec::new();
        };
        self.streams
            .iter()
            .filter(|s| p.send.contains(&s.id))
            .filter_map(|s| s.label.clone())
            .collect()
    }
}

/// Parse one metadata document.
///
/// Fallback: a strict parse is tried first. If the XML is not well-formed
/// (real Acme SBCs put a raw `<sip:...>` inside `<apkt:request-uri>`, and a
/// Genesys sample has `<!{CDATA{...}}>`), every `<` that cannot start a tag,
/// end tag, comment, CDATA section or processing instruction is escaped to
/// `&lt;` (see [`sanitize`]), and the result is parsed again in a lenient
/// mode: end tags need not match (they close up to the nearest open element
/// of that name, or are ignored), unclosed elements are closed at the end,
/// and a later syntax error keeps what was read before it. The strict error
/// is returned only if the lenient pass yields no recording root either.
pub fn parse(xml: &str) -> Result<Metadata, MetadataError> {
    let xml = xml.trim_start_matches('\u{feff}').trim_start();
    match build_tree(xml, Mode::Strict) {
        Ok(roots) => find_root(&roots)
            .map(metadata_from_root)
            .ok_or(MetadataError::NoRecordingRoot),
        Err(MetadataError::Doctype) => Err(MetadataError::Doctype),
        Err(strict_err) => match build_tree(&sanitize(xml), Mode::Lenient) {
            Ok(roots) => find_root(&roots).map(metadata_from_root).ok_or(strict_err),
            Err(_) => Err(strict_err),
        },
    }
}

// ---------------------------------------------------------------------------
// A tiny element tree, built from quick-xml events.

/// Elements nested deeper than this are skipped (keeps the tree and its
/// recursive drop bounded on hostile input).
const MAX_DEPTH: usize = 64;

/// One element: lower-cased local name, attributes, direct text, children.
#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    /// Value of the first attribute (by lower-cased local name) in `names`.
    fn attr(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| {
            self.attrs
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        })
    }

    fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Trimmed text of the first child `name` that is not blank.
    fn child_text(&self, name: &str) -> Option<String> {
        self.children_named(name).find_map(|c| non_blank(&c.text))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strict,
    Lenient,
}

fn non_blank(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn is_root_name(name: &str) -> bool {
    name == "recording" || name == "recording_metadata"
}

fn find_root(roots: &[Element]) -> Option<&Element> {
    roots.iter().find(|e| is_root_name(&e.name))
}

/// Lower-cased local name (prefix removed) of a tag or attribute name.
fn local_name(qname: &[u8]) -> String {
    let local = match qname.iter().rposition(|&b| b == b':') {
        Some(i) => &qname[i + 1..],
        None => qname,
    };
    String::from_utf8_lossy(local).to_ascii_lowercase()
}

fn element_from(start: &BytesStart<'_>, reader: &Reader<&[u8]>) -> Element {
    let attrs = start
        .html_attributes()
        .with_checks(false)
        .map_while(Result::ok)
        .filter(|a| {
            let key = a.key.as_ref();
            key != b"xmlns" && !key.starts_with(b"xmlns:")
        })
        .map(|a| {
            let value = a
                .decode_and_unescape_value(reader.decoder())
                .map(Cow::into_owned)
                .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned());
            (local_name(a.key.as_ref()), value)
        })
        .collect();
    Element {
        name: local_name(start.name().as_ref()),
        attrs,
        ..Element::default()
    }
}

/// Pop the innermost open element and attach it to its parent (or the roots).
/// Returns true when a top-level recording root was just completed.
fn close(stack: &mut Vec<Element>, roots: &mut Vec<Element>) -> bool {
    let Some(done) = stack.pop() else {
        return false;
    };
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(done);
            false
        }
        None => {
            let is_root = is_root_name(&done.name);
            roots.push(done);
            is_root
        }
    }
}

/// Read `xml` into top-level elements. Stops once a recording root is closed,
/// so trailing MIME boundaries or junk do not matter.
fn build_tree(xml: &str, mode: Mode) -> Result<Vec<Element>, MetadataError> {
    let lenient = mode == Mode::Lenient;
    let mut reader = Reader::from_str(xml);
    {
        let config = reader.config_mut();
        config.check_end_names = !lenient;
        config.allow_unmatched_ends = lenient;
        config.allow_dangling_amp = lenient;
    }
    let mut stack: Vec<Element> = Vec::new();
    let mut roots: Vec<Element> = Vec::new();
    // Open elements below MAX_DEPTH that are not stored.
    let mut skipped = 0usize;

    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            // Lenient: keep what was read before the error.
            Err(_) if lenient => break,
            Err(e) => {
                return Err(MetadataError::Malformed {
                    position: reader.error_position(),
                    reason: e.to_string(),
                })
            }
        };
        match event {
            Event::Start(start) => {
                if skipped > 0 || stack.len() >= MAX_DEPTH {
                    skipped += 1;
                } else {
                    stack.push(element_from(&start, &reader));
                }
            }
            Event::Empty(start) => {
                if skipped == 0 && stack.len() < MAX_DEPTH {
                    stack.push(element_from(&start, &reader));
                    if close(&mut stack, &mut roots) {
                        return Ok(roots);
                    }
                }
            }
            Event::End(end) => {
                if skipped > 0 {
                    skipped -= 1;
                    continue;
                }
                // Strict mode: quick-xml has already checked that names match.
                let depth = if lenient {
                    let name = local_name(end.name().as_ref());
                    match stack.iter().rposition(|e| e.name == name) {
                        Some(pos) => stack.len() - pos,
                        None => 0, // stray end tag: ignore
                    }
                } else {
                    1
                };
                for _ in 0..depth {
                    if close(&mut stack, &mut roots) {
                        return Ok(roots);
                    }
                }
            }
            Event::Text(text) => {
                if let (0, Some(top)) = (skipped, stack.last_mut()) {
                    top.text.push_str(&text.decode().unwrap_or_default());
                }
            }
            Event::CData(cdata) => {
                if let (0, Some(top)) = (skipped, stack.last_mut()) {
                    top.text.push_str(&cdata.decode().unwrap_or_default());
                }
            }
            Event::GeneralRef(reference) => {
                if let (0, Some(top)) = (skipped, stack.last_mut()) {
                    if let Ok(Some(c)) = reference.resolve_char_ref() {
                        top.text.push(c);
                    } else if let Ok(name) = reference.decode() {
                        // Only the five predefined entities; never user ones.
                        if let Some(s) = resolve_predefined_entity(&name) {
                            top.text.push_str(s);
                        }
                    }
                }
            }
            Event::DocType(_) => return Err(MetadataError::Doctype),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }

    if !lenient && !stack.is_empty() {
        let open = stack.last().map(|e| e.name.clone()).unwrap_or_default();
        return Err(MetadataError::Malformed {
            position: reader.buffer_position(),
            reason: format!("unexpected end of document inside <{open}>"),
        });
    }
    while !stack.is_empty() {
        close(&mut stack, &mut roots);
    }
    Ok(roots)
}

/// Make broken markup parseable: escape every `<` that cannot start a start
/// tag, end tag, comment, CDATA section, processing instruction or DOCTYPE,
/// e.g. the raw `<sip:user@host;param=x>` some Acme SBCs put in element text,
/// or `<!{CDATA{`. Comments, CDATA sections and processing instructions are
/// copied verbatim when they are terminated.
fn sanitize(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len() + 32);
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match markup_len(tail) {
            Some(n) => {
                out.push_str(&tail[..n]);
                rest = &tail[n..];
            }
            None => {
                out.push_str("&lt;");
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// How many bytes of `tail` (which starts with `<`) to copy verbatim, or
/// `None` if this `<` cannot start markup and must be escaped.
fn markup_len(tail: &str) -> Option<usize> {
    for (open, end) in [("<!--", "-->"), ("<![CDATA[", "]]>"), ("<?", "?>")] {
        if let Some(body) = tail.strip_prefix(open) {
            return body.find(end).map(|j| open.len() + j + end.len());
        }
    }
    if tail
        .get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case("<!doctype"))
    {
        return Some(1); // kept, so that it is rejected rather than hidden
    }
    let after = &tail[1..];
    let name = after.strip_prefix('/').unwrap_or(after);
    let mut chars = name.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_alphabetic() || c == '_' || c == ':' => {}
        _ => return None,
    }
    let end = chars.find(|&(_, c)| !(c.is_alphanumeric() || "-_.:".contains(c)));
    match end {
        // Truncated at the end of the input: leave it to the parser.
        None => Some(1),
        Some((_, c)) if c.is_whitespace() || c == '/' || c == '>' => Some(1),
        Some(_) => None,
    }
}

// ---------------------------------------------------------------------------
// From the tree to the model.

fn metadata_from_root(root: &Element) -> Metadata {
    let mut md = Metadata::default();
    // (participant id, send, recv) from <participantstreamassoc>, applied last
    // because they may come before the <participant> they refer to.
    let mut assocs: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for child in &root.children {
        match child.name.as_str() {
            "datamode" => md.datamode = datamode_from(&child.text),
            "session" => md.sessions.push(session_from(child)),
            "participant" => merge_participant(&mut md.participants, participant_from(child)),
            "stream" => merge_stream(&mut md.streams, stream_from(child)),
            "participantstreamassoc" => {
                if let Some(id) = child.attr(&["participant_id", "id"]) {
                    let (send, recv) = send_recv(child);
                    assocs.push((id.trim().to_string(), send, recv));
                }
            }
            _ => {}
        }
    }
    for (id, send, recv) in assocs {
        merge_participant(
            &mut md.participants,
            Participant {
                id,
                send,
                recv,
                ..Participant::default()
            },
        );
    }
    md
}

fn datamode_from(text: &str) -> DataMode {
    if text.trim().eq_ignore_ascii_case("partial") {
        DataMode::Partial
    } else {
        DataMode::Complete
    }
}

fn attr_string(el: &Element, names: &[&str]) -> String {
    el.attr(names).unwrap_or_default().trim().to_string()
}

fn session_from(el: &Element) -> CsSession {
    CsSession {
        id: attr_string(el, &["session_id", "id"]),
        sip_session_ids: el
            .children_named("sipsessionid")
            .map(|c| c.text.split_whitespace().collect::<String>())
            .filter(|s| !s.is_empty())
            .collect(),
        start_time: el.child_text("start-time"),
        stop_time: el.child_text("stop-time"),
    }
}

fn participant_from(el: &Element) -> Participant {
    let name_ids: Vec<&Element> = el.children_named("nameid").collect();
    // RFC 7865: <nameID aor=..><name>..</name></nameID>; BroadWorks: <aor>, <name>.
    let aor = name_ids
        .iter()
        .find_map(|n| n.attr(&["aor"]).and_then(non_blank))
        .or_else(|| el.child_text("aor"));
    let name = name_ids
        .iter()
        .find_map(|n| n.child_text("name"))
        .or_else(|| el.child_text("name"));
    let (send, recv) = send_recv(el);
    Participant {
        id: attr_string(el, &["participant_id", "id"]),
        aor,
        name,
        send,
        recv,
    }
}

/// Stream ids in the `<send>` and `<recv>` children of `el`. Each holds an id
/// as text, or (BroadWorks) one or more `<id>` children.
fn send_recv(el: &Element) -> (Vec<String>, Vec<String>) {
    let ids = |name: &str| {
        let mut out: Vec<String> = Vec::new();
        for c in el.children_named(name) {
            let found: Vec<String> = if c.children.iter().any(|i| i.name == "id") {
                c.children_named("id")
                    .filter_map(|i| non_blank(&i.text))
                    .collect()
            } else {
                non_blank(&c.text).into_iter().collect()
            };
            push_unique(&mut out, found);
        }
        out
    };
    (ids("send"), ids("recv"))
}

fn push_unique(list: &mut Vec<String>, items: Vec<String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

fn stream_from(el: &Element) -> Stream {
    Stream {
        id: attr_string(el, &["stream_id", "id"]),
        label: el.child_text("label"),
        session_id: el.attr(&["session_id", "session"]).and_then(non_blank),
    }
}

/// Add `p`, or merge it into an earlier participant with the same id.
fn merge_participant(list: &mut Vec<Participant>, p: Participant) {
    match list.iter_mut().find(|q| q.id == p.id) {
        Some(q) => {
            if q.aor.is_none() {
                q.aor = p.aor;
            }
            if q.name.is_none() {
                q.name = p.name;
            }
            push_unique(&mut q.send, p.send);
            push_unique(&mut q.recv, p.recv);
        }
        None => list.push(p),
    }
}

/// Add `s`, or fill the gaps of an earlier stream with the same non-empty id.
fn merge_stream(list: &mut Vec<Stream>, s: Stream) {
    match list.iter_mut().find(|t| !s.id.is_empty() && t.id == s.id) {
        Some(t) => {
            if t.label.is_none() {
                t.label = s.label;
            }
            if t.session_id.is_none() {
                t.session_id = s.session_id;
            }
        }
        None => list.push(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! corpus {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/corpus/", $name))
        };
    }

    /// Every metadata document in `text` (a SIP message, a multipart body or a
    /// SIPp scenario): from the root start tag (or an `<?xml` declaration just
    /// before it) to the matching closing root tag.
    fn extract_all(text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(start) = ["<recording", "<tns:recording"]
            .iter()
            .filter_map(|p| text[from..].find(p).map(|i| from + i))
            .min()
        {
            let name: String = text[start + 1..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
                .collect();
            let close = format!("</{name}>");
            let end = start + text[start..].find(&close).expect("closing root tag") + close.len();
            let before = text[..start].trim_end();
            let begin = match before.rfind("<?xml") {
                Some(d) if before.ends_with("?>") => d,
                _ => start,
            };
            out.push(&text[begin..end]);
            from = end;
        }
        out
    }

    fn extract(text: &str) -> &str {
        extract_all(text)
            .into_iter()
            .next()
            .expect("metadata in sample")
    }

    fn parse_sample(text: &str) -> Metadata {
        parse(extract(text)).expect("sample parses")
    }

    fn aor_of_label<'a>(md: &'a Metadata, label: &str) -> Option<&'a str> {
        md.sender_of_label(label).and_then(|p| p.aor.as_deref())
    }

    fn participant<'a>(md: &'a Metadata, id: &str) -> &'a Participant {
        md.participants
            .iter()
            .find(|p| p.id == id)
            .expect("participant present")
    }

    fn labels(md: &Metadata) -> Vec<&str> {
        md.streams
            .iter()
            .filter_map(|s| s.label.as_deref())
            .collect()
    }

    #[test]
    fn rfc7865_complete_snapshot() {
        let md = parse_sample(corpus!("ietf-rfc7865-complete-snapshot.xml"));
        assert_eq!(md.datamode, DataMode::Complete);
        assert_eq!(md.sessions.len(), 1);
        assert_eq!(md.sessions[0].id, "hVpd7YQgRW2nD22h7q60JQ==");
        assert_eq!(
            md.sessions[0].sip_session_ids,
            ["ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2"]
        );
        assert_eq!(md.participants.len(), 2);
        let bob = participant(&md, "srfBElmCRp2QB23b7Mpk0w==");
        assert_eq!(bob.aor.as_deref(), Some("sip:bob@biloxi.com"));
        assert_eq!(bob.name.as_deref(), Some("Bob"));
        assert_eq!(
            bob.send,
            ["i1Pz3to5hGk8fuXl+PbwCw==", "UAAMm5GRQKSCMVvLyl4rFw=="]
        );
        assert_eq!(
            bob.recv,
            ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
        );
        let paul = participant(&md, "zSfPoSvdSDCmU3A3TRDxAw==");
        assert_eq!(paul.aor.as_deref(), Some("sip:Paul@biloxi.com"));
        assert_eq!(paul.name.as_deref(), Some("Paul"));
        assert_eq!(labels(&md), ["96", "97", "98", "99"]);
        assert!(md
            .streams
            .iter()
            .all(|s| s.session_id.as_deref() == Some("hVpd7YQgRW2nD22h7q60JQ==")));
        // sender_of_label agrees with participantstreamassoc for every label.
        for (label, who) in [("96", bob), ("97", bob), ("98", paul), ("99", paul)] {
            assert_eq!(md.sender_of_label(label), Some(who), "label {label}");
        }
        assert_eq!(md.labels_sent_by(&bob.id), ["96", "97"]);
        assert_eq!(md.labels_sent_by(&paul.id), ["98", "99"]);
        assert!(md.labels_sent_by("nobody").is_empty());
        assert!(md.sender_of_label("100").is_none());
    }

    #[test]
    fn rfc7865_partial_update() {
        let md = parse_sample(corpus!("ietf-rfc7865-partial-update.xml"));
        assert_eq!(md.datamode, DataMode::Partial);
        assert_eq!(md.participants.len(), 1);
        assert_eq!(
            md.participants[0].aor.as_deref(),
            Some("sip:bob@biloxi.com")
        );
        assert!(md.streams.is_empty());
    }

    #[test]
    fn opensips_generated_invite() {
        let md = parse_sample(corpus!("opensips-generated-invite.sip"));
        let alice = md.sender_of_label("1").expect("sender of label 1");
        assert_eq!(alice.aor.as_deref(), Some("sip:alice@127.0.0.1:5070"));
        assert_eq!(alice.name.as_deref(), Some("Alice"));
        assert_eq!(aor_of_label(&md, "0"), Some("sip:bob@127.0.0.1:5060"));
        assert_eq!(md.sender_of_label("0").and_then(|p| p.name.clone()), None);
        assert_eq!(md.labels_sent_by(&alice.id), ["1"]);
        assert_eq!(md.sessions[0].sip_session_ids, ["1-18797@127.0.0.1"]);
        // The second capture carries the same metadata.
        let md2 = parse_sample(corpus!("opensips-generated-invite-2.sip"));
        assert_eq!(aor_of_label(&md2, "1"), Some("sip:alice@127.0.0.1:5070"));
    }

    #[test]
    fn sipp_generated_invite() {
        let md = parse_sample(corpus!("sipp-generated-invite.sip"));
        assert_eq!(aor_of_label(&md, "1"), Some("sip:alice@example.com"));
        assert_eq!(aor_of_label(&md, "2"), Some("sip:bob@example.com"));
        assert_eq!(
            md.sessions[0].start_time.as_deref(),
            Some("2024-01-01T10:00:00Z")
        );
    }

    #[test]
    fn acme_sbc_legacy_layout() {
        let md = parse_sample(corpus!("acme-sbc-offer-body.sip"));
        assert_eq!(md.sessions.len(), 1);
        assert_eq!(md.sessions[0].id, "AavRXwIIQj1Q39eJulTipQ==");
        assert_eq!(md.participants.len(), 2);
        assert_eq!(
            aor_of_label(&md, "16777227"),
            Some("sip:9000@192.168.50.102")
        );
        assert_eq!(
            aor_of_label(&md, "16777228"),
            Some("sip:1002@192.168.50.10")
        );
        let p = participant(&md, "EbccNyypRlFYXTm4iw8hxw==");
        assert_eq!(p.name.as_deref(), Some("1002"));
        assert_eq!(md.labels_sent_by(&p.id), ["16777228"]);
        assert_eq!(md.streams[0].id, "Q4O8SGLQSilXHUGQX2zd8Q==");
        assert_eq!(
            md.streams[0].session_id.as_deref(),
            Some("AavRXwIIQj1Q39eJulTipQ==")
        );
    }

    #[test]
    fn acme_sbc_avaya_ucid() {
        let md = parse_sample(corpus!("acme-sbc-avaya-ucid-offer-body.sip"));
        assert_eq!(md.participants.len(), 2);
        assert_eq!(
            aor_of_label(&md, "201835599"),
            Some("sip:31624895902@10.10.128.62")
        );
        assert_eq!(
            aor_of_label(&md, "201835600"),
            Some("sip:33187164021@sip.webhelpgroupe.lan")
        );
    }

    #[test]
    fn acme_genesys_malformed_uses_fallback() {
        let xml = extract(corpus!("acme-sbc-genesys-record-invite-tcp.sip"));
        assert!(
            build_tree(xml, Mode::Strict).is_err(),
            "sample is not well-formed"
        );
        let md = parse(xml).expect("lenient fallback");
        assert_eq!(md.participants.len(), 2);
        assert_eq!(md.streams.len(), 4);
        let genesys = md.sender_of_label("1006644281").expect("sender");
        assert_eq!(genesys.aor.as_deref(), Some("sip:Genesys@10.28.70.121"));
        assert_eq!(genesys.name.as_deref(), Some("Genesys"));
        assert_eq!(md.labels_sent_by(&genesys.id), ["1006644281", "1006644283"]);
        assert_eq!(
            aor_of_label(&md, "1006644282"),
            Some("sip:record=01PEP83ES8B0FC7QD151Q2LAES00022M_2024-04-05_12-59-19@127.0.0.1")
        );
        assert_eq!(
            md.labels_sent_by("N+fijXBkQjFgPM5FhZLI9A=="),
            ["1006644282", "1006644284"]
        );
    }

    #[test]
    fn genesys_gvp_broken_cdata_uses_fallback() {
        let xml = extract(corpus!("genesys-gvp-record-uri-headers-acme-body.sipp.xml"));
        assert!(build_tree(xml, Mode::Strict).is_err());
        let md = parse(xml).expect("lenient fallback");
        assert_eq!(md.participants.len(), 2);
        assert_eq!(
            aor_of_label(&md, "268749245"),
            Some("sip:Genesys@10.29.199.68")
        );
        assert_eq!(
            md.labels_sent_by("UaWEAnypTXljTotoD5TX5w=="),
            ["268749246", "268749248"]
        );
    }

    #[test]
    fn audiocodes_legacy_aor_without_scheme() {
        let md = parse_sample(corpus!("audiocodes-mediant-invite-tcp.sip"));
        assert_eq!(md.participants.len(), 2);
        let caller = md.sender_of_label("1").expect("sender of label 1");
        assert_eq!(caller.id, "+18888888888");
        assert_eq!(caller.aor.as_deref(), Some("+18888888888@fakeip.com"));
        assert_eq!(caller.name, None);
        assert_eq!(caller.recv, ["00000001-2d1c-00b6-d16f-0000000004e4"]);
        assert_eq!(aor_of_label(&md, "2"), Some("+17777777777@fakeip.com"));
        assert_eq!(md.sessions[0].id, "0000-0000-0000-0000-bf41fa8f111f3e43");
    }

    #[test]
    fn cisco_cube_interleaved() {
        let md = parse_sample(corpus!("cisco-cube-offer-body-gtd.sip"));
        assert_eq!(md.participants.len(), 2);
        let p7301 = md.sender_of_label("1").expect("sender of label 1");
        assert_eq!(p7301.aor.as_deref(), Some("sip:7301@35.162.237.204"));
        assert_eq!(p7301.name, None);
        let p7300 = md.sender_of_label("2").expect("sender of label 2");
        assert_eq!(p7300.aor.as_deref(), Some("sip:7300@35.162.237.204"));
        assert_eq!(p7300.name.as_deref(), Some("7300"));
        let s = &md.sessions[0];
        assert_eq!(
            s.sip_session_ids,
            ["e9fffff2020a598b86962867715db0cf;remote=cd0f7093d62c5f0697098fd69a4aa57b"]
        );
        assert_eq!(s.start_time.as_deref(), Some("2017-06-23T12:16:06.040Z"));
    }

    #[test]
    fn cisco_cube_inactive_empty_assocs() {
        let md = parse_sample(corpus!("cisco-cube-inactive-offer-body.sip"));
        assert_eq!(md.participants.len(), 2);
        assert_eq!(
            md.participants[1].aor.as_deref(),
            Some("sip:+972546136443@192.168.10.140")
        );
        assert!(md
            .participants
            .iter()
            .all(|p| p.send.is_empty() && p.recv.is_empty()));
        assert_eq!(labels(&md), ["1", "2"]);
        assert!(md.sender_of_label("1").is_none());
    }

    #[test]
    fn cisco_cube_sparse_session_only() {
        let md = parse_sample(corpus!("cisco-cube-ios16-invite-sparse-metadata.sip"));
        assert_eq!(md.sessions.len(), 1);
        assert!(md.participants.is_empty() && md.streams.is_empty());
    }

    #[test]
    fn sonus_prefixed_blank_name() {
        let md = parse_sample(corpus!("sonus-sbc-offer-body.sip"));
        assert_eq!(md.datamode, DataMode::Complete);
        assert_eq!(md.participants.len(), 2);
        let ext = md.sender_of_label("2").expect("sender of label 2");
        assert_eq!(ext.aor.as_deref(), Some("2249888500@172.16.198.55"));
        assert_eq!(ext.name.as_deref(), Some("Extension 8500"));
        let other = md.sender_of_label("1").expect("sender of label 1");
        assert_eq!(other.aor.as_deref(), Some("2249888012@172.16.195.72"));
        assert_eq!(other.name, None, "blank <name> is None");
        assert_eq!(
            md.sessions[0].start_time.as_deref(),
            Some("1970-05-13T03:29:05Z")
        );
    }

    #[test]
    fn avaya_sbce_camel_case_datamode() {
        let md = parse_sample(corpus!("avaya-sbce-offer-body-dataMode.sip"));
        assert_eq!(md.datamode, DataMode::Complete);
        assert_eq!(md.sessions[0].id, "00FA0800705D4C5DCAAC41");
        assert_eq!(md.participants.len(), 2);
        assert_eq!(
            aor_of_label(&md, "10"),
            Some("sip:9878942259@212.188.68.145")
        );
        assert_eq!(aor_of_label(&md, "20"), Some("sip:ASBCE@asbce.com"));
    }

    #[test]
    fn avaya_sbce_sipp_invite_and_update() {
        let all = extract_all(corpus!("avaya-sbce-invite-update-bye.sipp.xml"));
        assert_eq!(all.len(), 2);
        let invite = parse(all[0]).expect("INVITE metadata");
        assert_eq!(invite.participants.len(), 2);
        assert_eq!(
            aor_of_label(&invite, "10"),
            Some("sip:13035381001@10.64.110.65")
        );
        // stream_id="" for label 20: nobody sends on it.
        assert_eq!(invite.streams[1].id, "");
        assert!(invite.sender_of_label("20").is_none());
        let update = parse(all[1]).expect("UPDATE metadata");
        assert_eq!(
            aor_of_label(&update, "20"),
            Some("sip:7204541001@10.64.110.32")
        );
    }

    #[test]
    fn opensips_connectel_no_assocs() {
        let md = parse_sample(corpus!("opensips-connectel-offer-body.sip"));
        assert_eq!(md.participants.len(), 2);
        assert_eq!(
            md.participants[0].name.as_deref(),
            Some("test_user;lang=en-US;id=22")
        );
        assert_eq!(
            md.participants[1].aor.as_deref(),
            Some("sip:0760516936@sip-cust1.connectel.io")
        );
        assert_eq!(labels(&md), ["1", "2"]);
        assert!(md.sender_of_label("1").is_none());
    }

    #[test]
    fn sems_wrapped_attributes() {
        let md = parse_sample(corpus!("sems-procomm-offer-body.sip"));
        assert_eq!(
            aor_of_label(&md, "a_leg"),
            Some("sip:016190200@87.252.209.116")
        );
        let b = md.sender_of_label("b_leg").expect("sender of b_leg");
        assert_eq!(b.aor.as_deref(), Some("Extension-016190619@speechpath.ie"));
        assert_eq!(b.name.as_deref(), Some("Speechpath-Main-Line 016190619"));
        assert_eq!(
            md.streams[0].session_id.as_deref(),
            Some("ho9aUhEQTRS+31th7sHStA==")
        );
    }

    #[test]
    fn intrado_mixed_stream_and_unknown_children() {
        let md = parse_sample(corpus!("intrado-viper-invite-tcp.sip"));
        assert_eq!(md.participants.len(), 1);
        let p = md.sender_of_label("1").expect("sender of label 1");
        assert_eq!(p.aor.as_deref(), Some("4058327108@10.105.190.136:5060"));
        assert_eq!(p.name, None);
        assert_eq!(p.send, p.recv);
        assert_eq!(
            md.sessions[0].start_time.as_deref(),
            Some("2022-07-21T12:36:06-06:00")
        );
    }

    #[test]
    fn metaswitch_mixed_stream_first_sender() {
        let md = parse_sample(corpus!("metaswitch-hold-reinvite-bye.sipp.xml"));
        assert_eq!(md.participants.len(), 2);
        assert_eq!(
            md.streams[0].session_id.as_deref(),
            Some("+zzFbuKREeanqeyezQV3BA==")
        );
        // Both participants send on the one mixed stream: the first is returned.
        assert_eq!(aor_of_label(&md, "1"), Some("7602922411"));
        assert_eq!(md.labels_sent_by("+zzISOKREeanqeyezQV3BA=="), ["1"]);
    }

    #[test]
    fn broadworks_sipp_first_invite() {
        let md = parse_sample(corpus!("broadworks-pause-resume-reinvite.sipp.xml"));
        assert_eq!(md.datamode, DataMode::Complete);
        assert_eq!(md.sessions.len(), 1);
        assert_eq!(
            md.sessions[0].id,
            "urn:uuid:139ff134-7094-4ea9-a4a4-73f0c45e6a23"
        );
        assert_eq!(
            md.sessions[0].start_time.as_deref(),
            Some("2018-06-26T17:48:23+00:00")
        );
        assert_eq!(md.participants.len(), 2);
        let p = md.sender_of_label("1").expect("sender of label 1");
        assert_eq!(p.aor.as_deref(), Some("sip:8638254725"));
        assert_eq!(p.send, ["urn:uuid:dc51a81b-aebc-4a09-8f8b-75c13ec5a4fb"]);
        assert_eq!(
            md.participants[1].aor.as_deref(),
            Some("sip:+19015783200@broadcore.com;user=phone")
        );
        assert_eq!(md.streams.len(), 1);
        assert_eq!(
            md.labels_sent_by(&md.participants[1].id),
            Vec::<String>::new()
        );
    }

    #[test]
    fn webex_broadworks_first_invite() {
        let md = parse_sample(corpus!(
            "cisco-webex-broadworks-conference-update-hold.sipp.xml"
        ));
        assert_eq!(
            aor_of_label(&md, "1"),
            Some("sip:yztpfzzvkq@44936045.int10.bcld.webex.com")
        );
        assert_eq!(
            aor_of_label(&md, "2"),
            Some("sip:7722@10.155.7.148;user=phone")
        );
    }

    #[test]
    fn drachtio_and_oracle_templates() {
        let md = parse_sample(corpus!(
            "drachtio-sipp-invite-reinvite-inactive-bye.sipp.xml"
        ));
        assert_eq!(
            md.participants[0].aor.as_deref(),
            Some("sip:6001@localhost")
        );
        assert_eq!(labels(&md), ["1", "2"]);
        // SIPp placeholders break the attribute quoting; the rest still parses.
        let md = parse_sample(corpus!("oracle-sbc-outbound-apkt.sipp.xml"));
        assert_eq!(md.participants.len(), 2);
        assert_eq!(md.streams.len(), 1);
        assert_eq!(md.labels_sent_by("SQnUa0JNSChs6575MG20vQ=="), ["16777227"]);
    }

    #[test]
    fn rfc8068_basic_av() {
        let md = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));
        assert_eq!(md.participants.len(), 2);
        assert_eq!(aor_of_label(&md, "96"), Some("sip:alice@atlanta.com"));
        assert_eq!(aor_of_label(&md, "97"), Some("sip:alice@atlanta.com"));
        assert_eq!(aor_of_label(&md, "98"), Some("sip:bob@biloxy.com"));
        assert_eq!(aor_of_label(&md, "99"), Some("sip:bob@biloxy.com"));
    }

    #[test]
    fn rfc8068_hold_partial_assocs_only() {
        let md = parse_sample(corpus!("ietf-rfc8068-hold-reinvite-partial.sip"));
        assert_eq!(md.datamode, DataMode::Partial);
        assert_eq!(md.participants.len(), 2);
        let alice = participant(&md, "srfBElmCRp2QB23b7Mpk0w==");
        assert_eq!(alice.aor, None);
        assert!(alice.send.is_empty());
        assert_eq!(
            alice.recv,
            ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
        );
        let bob = participant(&md, "zSfPoSvdSDCmU3A3TRDxAw==");
        assert_eq!(
            bob.send,
            ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
        );
        assert!(bob.recv.is_empty());
    }

    #[test]
    fn rfc8068_transfer_partial() {
        let md = parse_sample(corpus!("ietf-rfc8068-transfer-reinvite-partial.sip"));
        assert_eq!(md.datamode, DataMode::Partial);
        assert_eq!(
            md.sessions[0].sip_session_ids,
            ["3363127f0d084c10876dddd4f8e5eeb9;remote=2272bb7e70fe41dba0025ae9a26d54cf"]
        );
        let carol = participant(&md, "Atnm1ZRnOC6Pm5MApkrDzQ==");
        assert_eq!(carol.aor.as_deref(), Some("sip:carol@example.com"));
        assert_eq!(carol.name.as_deref(), Some("Carol"));
        assert_eq!(
            carol.send,
            ["60JAJm9UTvik0Ltlih/Gzw==", "AcR5FUd3Edi8cACQJy/3JQ=="]
        );
        // Bob appears only in an association.
        assert_eq!(participant(&md, "zSfPoSvdSDCmU3A3TRDxAw==").aor, None);
        assert!(md.streams.is_empty());
    }

    #[test]
    fn rfc8068_mixed_join_and_bye() {
        let md = parse_sample(corpus!("ietf-rfc8068-mixed-participant-join-partial.sip"));
        assert_eq!(md.datamode, DataMode::Partial);
        assert_eq!(md.sessions[0].sip_session_ids.len(), 3);
        assert_eq!(
            md.sessions[0].sip_session_ids[0],
            "fa3b60f27e91441e84c55a9a0095f075;remote=a358d2b81a444a8c8fb05950cef331e7"
        );
        let carol = participant(&md, "Atnm1ZRnOC6Pm5MApkrDzQ==");
        assert_eq!(carol.send, ["i1Pz3to5hGk8fuXl+PbwCw=="]);
        assert_eq!(carol.send, carol.recv);

        let bye = parse_sample(corpus!("ietf-rfc8068-bye-with-partial-metadata.sip"));
        assert_eq!(bye.datamode, DataMode::Partial);
        assert_eq!(
            bye.sessions[0].stop_time.as_deref(),
            Some("2010-12-16T23:41:07Z")
        );
        assert!(bye.participants.is_empty());
    }

    #[test]
    fn requestsnapshot_is_not_a_recording() {
        let text = corpus!("ietf-rfc7866-srs-requestsnapshot-update.sip");
        let xml = &text[text.find("<?xml").expect("xml")..];
        assert!(matches!(parse(xml), Err(MetadataError::NoRecordingRoot)));
    }

    #[test]
    fn namespaces_case_and_order_are_ignored() {
        let xml = "<x:Recording xmlns:x='urn:ietf:params:xml:ns:recording:1'>\r\n\
            <x:participantStreamAssoc participant_id='p1'><x:send>s1</x:send></x:participantStreamAssoc>\r\n\
            <x:Stream stream_id='s1'\r\n\tsession_id='c1'><x:Label> L1 </x:Label></x:Stream>\r\n\
            <x:DataMode> PARTIAL </x:DataMode>\r\n\
            <x:participant participant_id='p1'><x:nameID aor='sip:a@b'><x:name> </x:name>\
            <x:name>Ann &amp; Co &#65;</x:name></x:nameID></x:participant></x:Recording>";
        let md = parse(xml).expect("parses");
        assert_eq!(md.datamode, DataMode::Partial);
        assert_eq!(md.participants.len(), 1);
        assert_eq!(md.participants[0].name.as_deref(), Some("Ann & Co A"));
        assert_eq!(aor_of_label(&md, "L1"), Some("sip:a@b"));
        assert_eq!(md.streams[0].session_id.as_deref(), Some("c1"));
    }

    #[test]
    fn doctype_and_entities_are_not_expanded() {
        let xml = "<?xml version='1.0'?><!DOCTYPE r [<!ENTITY x 'boom'>]>\
            <recording><participant id='p'><nameID aor='&x;'/></participant></recording>";
        assert!(matches!(parse(xml), Err(MetadataError::Doctype)));
        // An undeclared entity without a DOCTYPE is dropped, never expanded.
        let md =
            parse("<recording><participant id='p'><name>a&x;b</name></participant></recording>")
                .expect("parses");
        assert_eq!(md.participants[0].name.as_deref(), Some("ab"));
    }

    #[test]
    fn not_a_recording_root() {
        assert!(matches!(
            parse("<foo/>"),
            Err(MetadataError::NoRecordingRoot)
        ));
        assert!(matches!(parse(""), Err(MetadataError::NoRecordingRoot)));
        // Broken and with no recording root: the strict error is reported.
        let err = parse("<foo><bar></foo>").expect_err("broken");
        assert!(matches!(err, MetadataError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("at byte"), "{err}");
        // Broken but salvageable: the lenient pass keeps the participant.
        let md = parse("<recording><participant id='p'></recording").expect("salvaged");
        assert_eq!(md.participants[0].id, "p");
    }

    #[test]
    fn serializes_to_json() {
        let md = parse_sample(corpus!("sipp-generated-invite.sip"));
        let json = serde_json::to_value(&md).expect("json");
        assert_eq!(json["datamode"], "complete");
        assert_eq!(json["participants"][0]["aor"], "sip:alice@example.com");
    }

    #[test]
    fn garbage_truncated_and_hostile_input_never_panics() {
        let mut inputs: Vec<String> = [
            "",
            " ",
            "<",
            ">",
            "<<<<",
            "</recording>",
            "<recording",
            "<recording>",
            "<recording><",
            "<?xml",
            "<!--",
            "<![CDATA[",
            "<!DOCTYPE",
            "&",
            "&#x0;",
            "<recording>&#xFFFFFFFF;</recording>",
            "<recording a='1' a='2'/>",
            "<recording><stream stream_id=></stream></recording>",
            "\u{feff}<recording/>",
            "<r\u{e9}cording>é</r\u{e9}cording>",
            "\0\0\0",
            "<:/>",
            "</>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        inputs.push("<a>".repeat(10_000));
        inputs.push(format!("<recording>{}", "<participant>".repeat(10_000)));
        // Every prefix of a real sample, cut at char boundaries.
        let sample = extract(corpus!("acme-sbc-genesys-record-invite-tcp.sip"));
        for (i, _) in sample.char_indices().step_by(7) {
            inputs.push(sample[..i].to_string());
        }
        for input in &inputs {
            let _ = parse(input);
        }
        // A truncated document still yields what was read.
        let cut = &sample[..sample.find("<stream").expect("stream")];
        let md = parse(cut).expect("truncated document salvaged");
        assert_eq!(md.participants.len(), 2);
    }
}
