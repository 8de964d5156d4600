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
///
/// The same type holds the merged state of a recording session: start from
/// the first (complete) document and feed later ones to [`Metadata::apply`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Metadata {
    /// Value of `<datamode>` (any case); `Complete` when absent.
    pub datamode: DataMode,
    /// True when the root element is `<requestsnapshot>` (an SRS asking the
    /// SRC for a full snapshot, RFC 7866 §9.2); every other field is empty.
    pub is_snapshot_request: bool,
    /// The `<group>` elements (CS groups).
    pub groups: Vec<Group>,
    /// The `<session>` elements (communication sessions).
    pub sessions: Vec<CsSession>,
    /// Participants, in document order. A participant named only by a
    /// `<participantstreamassoc>` (common in partial updates) is added at the
    /// end with no aor or name. One named only by a `<participantsessionassoc>`
    /// is not added here when parsing (see `participant_session_assocs`), but
    /// [`Metadata::apply`] adds it to the merged state.
    pub participants: Vec<Participant>,
    /// The `<stream>` elements, in document order.
    pub streams: Vec<Stream>,
    /// Participant-CS associations: the `<participantsessionassoc>` elements
    /// and, in the legacy dialects, a participant's `session` attribute with
    /// its `associate-time`/`disassociate-time` children.
    pub participant_session_assocs: Vec<ParticipantSessionAssoc>,
    /// Children of the root that are not RFC 7865 elements (`extensiondata`,
    /// BroadWorks `<recording>`, ...), kept raw.
    pub extensions: Vec<Extension>,
}

/// A CS group (`<group>`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Group {
    /// `group_id` (RFC 7865) or `id` (legacy) attribute.
    pub id: String,
    /// `<associate-time>`, as written.
    pub associate_time: Option<String>,
    /// `<disassociate-time>`, as written.
    pub disassociate_time: Option<String>,
    /// Unknown children (`callData`, `call-center`, ...), kept raw.
    pub extensions: Vec<Extension>,
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
    /// Unknown children (`extensiondata`, `apkt:ucid`, ...), kept raw.
    pub extensions: Vec<Extension>,
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
    /// `<associate-time>` of its `<participantsessionassoc>` (or, legacy,
    /// directly inside `<participant>`). With several, the last one given.
    pub associate_time: Option<String>,
    /// `<disassociate-time>`, found the same way. In a merged state also set
    /// by a session `<stop-time>`. `None` means still associated.
    pub disassociate_time: Option<String>,
    /// Unknown children (`extensiondata`, `ac:GenesysUUID`, ...), kept raw.
    pub extensions: Vec<Extension>,
    /// True when `send`/`recv` come from an explicit association: a
    /// `<participantstreamassoc>` (even an empty one, which means "sends and
    /// receives nothing") or legacy `<send>`/`<recv>` children. A partial
    /// update replaces the old lists only when this is set.
    #[serde(skip)]
    pub has_stream_assoc: bool,
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
    /// Legacy `<mode>` (`separate` or `mixed`), trimmed.
    pub mode: Option<String>,
    /// `<associate-time>` inside `<stream>` (legacy Acme), as written.
    pub associate_time: Option<String>,
    /// `<disassociate-time>` inside `<stream>`, as written.
    pub disassociate_time: Option<String>,
}

/// A `<participantsessionassoc>` (or the legacy equivalent).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ParticipantSessionAssoc {
    /// `participant_id` attribute.
    pub participant_id: String,
    /// `session_id` attribute (may be empty).
    pub session_id: String,
    /// `<associate-time>`, as written.
    pub associate_time: Option<String>,
    /// `<disassociate-time>`, as written.
    pub disassociate_time: Option<String>,
}

/// Vendor extension data, kept raw (an element RFC 7865 does not define, in
/// an `xs:any` slot).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Extension {
    /// Local name as written, e.g. `extensiondata`, `callData`, `GenesysUUID`.
    pub name: String,
    /// Namespace URI of the element, resolved from its prefix (or the default
    /// namespace) in scope; `None` when there is none.
    pub namespace: Option<String>,
    /// The element as it appeared in the document (after the lenient pass
    /// escaped stray `<`, so it is well-formed); namespace declarations on
    /// ancestors are not copied in. If longer than 8 KiB, its concatenated
    /// text content instead, cut to 8 KiB.
    pub xml: String,
    /// `(path, text)` for every leaf element with non-blank text, in document
    /// order: the path of local names starts at this element
    /// (`callData/gcid`), except that an `extensiondata` wrapper is left out
    /// (`request-uri`, `header/value`, `broadWorksRecordingMetadata/callID`).
    pub text: Vec<(String, String)>,
}

/// What [`Metadata::apply`] changed, for the event log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The participant concerned, if any.
    pub participant_id: Option<String>,
    /// The stream concerned (`StreamAdded`).
    pub stream_id: Option<String>,
    /// When, as written in the metadata: associate-time (`ParticipantJoined`,
    /// `StreamAdded`), disassociate-time (`ParticipantLeft`), stop-time
    /// (`SessionStopped`); `None` when the document gives no time.
    pub at: Option<String>,
}

/// The kinds of [`Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A participant id not seen before, or one associated again after it
    /// had been disassociated.
    ParticipantJoined,
    /// A participant got a disassociate-time (explicitly, through a session
    /// stop-time, or by being absent from a complete snapshot).
    ParticipantLeft,
    /// A known participant's `send` set changed.
    SendChanged,
    /// A stream id not seen before.
    StreamAdded,
    /// A session got a stop-time.
    SessionStopped,
    /// A complete snapshot replaced the state.
    Snapshot,
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
    /// No `<recording>`, `<recording_metadata>` or `<requestsnapshot>` root
    /// element.
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

    /// Participants that are still associated (no disassociate-time).
    pub fn active_participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants
            .iter()
            .filter(|p| p.disassociate_time.is_none())
    }

    /// `(leaf local name, text)` of every extension leaf at every level
    /// (recording, groups, sessions, participants), in that order.
    pub fn extension_values(&self) -> Vec<(String, String)> {
        let all = self
            .extensions
            .iter()
            .chain(self.groups.iter().flat_map(|g| &g.extensions))
            .chain(self.sessions.iter().flat_map(|s| &s.extensions))
            .chain(self.participants.iter().flat_map(|p| &p.extensions));
        all.flat_map(|e| &e.text)
            .map(|(path, text)| {
                let leaf = path.rsplit('/').next().unwrap_or(path);
                (leaf.to_string(), text.clone())
            })
            .collect()
    }

    /// Merge a later document of the same recording session into `self` and
    /// report what changed.
    ///
    /// * A snapshot request (`is_snapshot_request`) changes nothing.
    /// * `Complete`: `self` becomes `update` (nothing of the old state is
    ///   kept); the changes are `Snapshot` plus the differences from the old
    ///   state, so a participant absent from the snapshot is reported as left.
    /// * `Partial`: groups, sessions, participants and streams are upserted by
    ///   id (a stream with an empty id by label). Scalars present in the
    ///   update replace the old ones; absent ones stay. A participant's
    ///   `send`/`recv` are replaced only when the update carries an explicit
    ///   association for it (`has_stream_assoc`). Non-empty lists
    ///   (`sip_session_ids`, `extensions`) replace the old ones. A
    ///   `<participantsessionassoc>` for an unknown participant adds it. A new
    ///   associate-time without a disassociate-time for a participant that
    ///   had left clears its disassociate-time (it joined again). Stream ids
    ///   in send/recv that no `<stream>` defines are kept as they are.
    ///
    /// In both modes a session with a stop-time disassociates every
    /// participant still associated with it (one with no known session
    /// association counts as associated): its disassociate-time becomes the
    /// stop-time.
    pub fn apply(&mut self, update: Metadata) -> Vec<Change> {
        if update.is_snapshot_request {
            return Vec::new();
        }
        let before = self.clone();
        let snapshot = update.datamode == DataMode::Complete;
        let stops: Vec<(String, String)> = update
            .sessions
            .iter()
            .filter_map(|s| s.stop_time.clone().map(|t| (s.id.clone(), t)))
            .collect();
        if snapshot {
            *self = update;
        } else {
            self.merge_partial(update);
        }
        for (session_id, time) in &stops {
            self.close_session(session_id, time);
        }
        diff(&before, self, snapshot)
    }

    fn merge_partial(&mut self, up: Metadata) {
        for g in up.groups {
            match self.groups.iter_mut().find(|o| o.id == g.id) {
                Some(o) => {
                    replace_if_some(&mut o.associate_time, g.associate_time);
                    replace_if_some(&mut o.disassociate_time, g.disassociate_time);
                    replace_if_nonempty(&mut o.extensions, g.extensions);
                }
                None => self.groups.push(g),
            }
        }
        for s in up.sessions {
            match self.sessions.iter_mut().find(|o| o.id == s.id) {
                Some(o) => {
                    replace_if_nonempty(&mut o.sip_session_ids, s.sip_session_ids);
                    replace_if_some(&mut o.start_time, s.start_time);
                    replace_if_some(&mut o.stop_time, s.stop_time);
                    replace_if_nonempty(&mut o.extensions, s.extensions);
                }
                None => self.sessions.push(s),
            }
        }
        for s in up.streams {
            let same = |o: &&mut Stream| {
                if s.id.is_empty() {
                    o.id.is_empty() && o.label == s.label
                } else {
                    o.id == s.id
                }
            };
            match self.streams.iter_mut().find(same) {
                Some(o) => {
                    replace_if_some(&mut o.label, s.label);
                    replace_if_some(&mut o.session_id, s.session_id);
                    replace_if_some(&mut o.mode, s.mode);
                    replace_if_some(&mut o.associate_time, s.associate_time);
                    replace_if_some(&mut o.disassociate_time, s.disassociate_time);
                }
                None => self.streams.push(s),
            }
        }
        for p in up.participants {
            match self.participants.iter_mut().find(|o| o.id == p.id) {
                Some(o) => {
                    replace_if_some(&mut o.aor, p.aor);
                    replace_if_some(&mut o.name, p.name);
                    if p.has_stream_assoc {
                        o.send = p.send;
                        o.recv = p.recv;
                        o.has_stream_assoc = true;
                    }
                    update_times(
                        &mut o.associate_time,
                        &mut o.disassociate_time,
                        p.associate_time,
                        p.disassociate_time,
                    );
                    replace_if_nonempty(&mut o.extensions, p.extensions);
                }
                None => self.participants.push(p),
            }
        }
        for a in up.participant_session_assocs {
            if !a.participant_id.is_empty() {
                let p = match self
                    .participants
                    .iter()
                    .position(|p| p.id == a.participant_id)
                {
                    Some(i) => &mut self.participants[i],
                    None => {
                        self.participants.push(Participant {
                            id: a.participant_id.clone(),
                            ..Participant::default()
                        });
                        let last = self.participants.len() - 1;
                        &mut self.participants[last]
                    }
                };
                update_times(
                    &mut p.associate_time,
                    &mut p.disassociate_time,
                    a.associate_time.clone(),
                    a.disassociate_time.clone(),
                );
            }
            let same = |o: &&mut ParticipantSessionAssoc| {
                o.participant_id == a.participant_id && o.session_id == a.session_id
            };
            match self.participant_session_assocs.iter_mut().find(same) {
                Some(o) => update_times(
                    &mut o.associate_time,
                    &mut o.disassociate_time,
                    a.associate_time,
                    a.disassociate_time,
                ),
                None => self.participant_session_assocs.push(a),
            }
        }
        replace_if_nonempty(&mut self.extensions, up.extensions);
    }

    /// Session `session_id` stopped at `time`: disassociate its participants.
    fn close_session(&mut self, session_id: &str, time: &str) {
        let assocs = &mut self.participant_session_assocs;
        for p in &mut self.participants {
            if p.disassociate_time.is_some() {
                continue;
            }
            let mut known = assocs.iter().filter(|a| a.participant_id == p.id);
            let first = known.next();
            let in_session = first.is_none()
                || first
                    .into_iter()
                    .chain(known)
                    .any(|a| a.session_id == session_id);
            if in_session {
                p.disassociate_time = Some(time.to_string());
            }
        }
        for a in assocs.iter_mut() {
            if a.session_id == session_id && a.disassociate_time.is_none() {
                a.disassociate_time = Some(time.to_string());
            }
        }
    }
}

fn replace_if_some<T>(old: &mut Option<T>, new: Option<T>) {
    if new.is_some() {
        *old = new;
    }
}

fn replace_if_nonempty<T>(old: &mut Vec<T>, new: Vec<T>) {
    if !new.is_empty() {
        *old = new;
    }
}

/// Merge association times: present values replace old ones, and a new
/// associate-time without a disassociate-time after a disassociation means
/// the element is associated again.
fn update_times(
    old_assoc: &mut Option<String>,
    old_disassoc: &mut Option<String>,
    new_assoc: Option<String>,
    new_disassoc: Option<String>,
) {
    let rejoined = new_disassoc.is_none()
        && old_disassoc.is_some()
        && new_assoc.is_some()
        && new_assoc != *old_assoc;
    replace_if_some(old_assoc, new_assoc);
    if rejoined {
        *old_disassoc = None;
    } else {
        replace_if_some(old_disassoc, new_disassoc);
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x)) && b.iter().all(|x| a.contains(x))
}

/// The changes from `before` to `after`.
fn diff(before: &Metadata, after: &Metadata, snapshot: bool) -> Vec<Change> {
    let change =
        |kind, participant_id: Option<&str>, stream_id: Option<&str>, at: Option<&String>| Change {
            kind,
            participant_id: participant_id.map(str::to_string),
            stream_id: stream_id.map(str::to_string),
            at: at.cloned(),
        };
    let mut out = Vec::new();
    if snapshot {
        out.push(change(ChangeKind::Snapshot, None, None, None));
    }
    for s in &after.sessions {
        let was_stopped = before
            .sessions
            .iter()
            .find(|o| o.id == s.id)
            .is_some_and(|o| o.stop_time.is_some());
        if s.stop_time.is_some() && !was_stopped {
            out.push(change(
                ChangeKind::SessionStopped,
                None,
                None,
                s.stop_time.as_ref(),
            ));
        }
    }
    for s in &after.streams {
        if !s.id.is_empty() && !before.streams.iter().any(|o| o.id == s.id) {
            let kind = ChangeKind::StreamAdded;
            out.push(change(kind, None, Some(&s.id), s.associate_time.as_ref()));
        }
    }
    for p in &after.participants {
        let id = Some(p.id.as_str());
        let old = before.participants.iter().find(|o| o.id == p.id);
        let was_active = old.is_some_and(|o| o.disassociate_time.is_none());
        if !was_active && (old.is_none() || p.disassociate_time.is_none()) {
            let kind = ChangeKind::ParticipantJoined;
            out.push(change(kind, id, None, p.associate_time.as_ref()));
        }
        if old.is_some_and(|o| !same_set(&o.send, &p.send)) {
            out.push(change(ChangeKind::SendChanged, id, None, None));
        }
        if (was_active || old.is_none()) && p.disassociate_time.is_some() {
            let kind = ChangeKind::ParticipantLeft;
            out.push(change(kind, id, None, p.disassociate_time.as_ref()));
        }
    }
    if snapshot {
        for o in &before.participants {
            let gone = !after.participants.iter().any(|p| p.id == o.id);
            if gone && o.disassociate_time.is_none() {
                let kind = ChangeKind::ParticipantLeft;
                out.push(change(kind, Some(&o.id), None, None));
            }
        }
    }
    out
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
///
/// A `<requestsnapshot>` root (RFC 7865 §7) gives `Ok` with
/// `is_snapshot_request` set and nothing else.
pub fn parse(xml: &str) -> Result<Metadata, MetadataError> {
    let xml = xml.trim_start_matches('\u{feff}').trim_start();
    match build_tree(xml, Mode::Strict) {
        Ok(roots) => find_root(&roots)
            .map(|root| metadata_from_root(root, xml))
            .ok_or(MetadataError::NoRecordingRoot),
        Err(MetadataError::Doctype) => Err(MetadataError::Doctype),
        Err(strict_err) => {
            let clean = sanitize(xml);
            match build_tree(&clean, Mode::Lenient) {
                Ok(roots) => find_root(&roots)
                    .map(|root| metadata_from_root(root, &clean))
                    .ok_or(strict_err),
                Err(_) => Err(strict_err),
            }
        }
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
    /// Local name as written (for extension data).
    local: String,
    /// Namespace prefix as written, if any.
    prefix: Option<String>,
    /// Namespace declarations on this element: (prefix, or "" for the
    /// default namespace; URI).
    ns_decls: Vec<(String, String)>,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
    /// Byte range of the whole element in the parsed text.
    span: (usize, usize),
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
    name == "recording" || name == "recording_metadata" || name == SNAPSHOT_REQUEST
}

const SNAPSHOT_REQUEST: &str = "requestsnapshot";

/// The first recording root, or else a snapshot request root.
fn find_root(roots: &[Element]) -> Option<&Element> {
    roots
        .iter()
        .find(|e| is_root_name(&e.name) && e.name != SNAPSHOT_REQUEST)
        .or_else(|| roots.iter().find(|e| e.name == SNAPSHOT_REQUEST))
}

/// Lower-cased local name (prefix removed) of a tag or attribute name.
fn local_name(qname: &[u8]) -> String {
    let local = match qname.iter().rposition(|&b| b == b':') {
        Some(i) => &qname[i + 1..],
        None => qname,
    };
    String::from_utf8_lossy(local).to_ascii_lowercase()
}

/// Prefix (if any) and local name as written.
fn split_qname(qname: &[u8]) -> (Option<String>, String) {
    match qname.iter().rposition(|&b| b == b':') {
        Some(i) => (
            Some(String::from_utf8_lossy(&qname[..i]).into_owned()),
            String::from_utf8_lossy(&qname[i + 1..]).into_owned(),
        ),
        None => (None, String::from_utf8_lossy(qname).into_owned()),
    }
}

fn element_from(start: &BytesStart<'_>, reader: &Reader<&[u8]>, at: usize) -> Element {
    let mut attrs = Vec::new();
    let mut ns_decls = Vec::new();
    for a in start
        .html_attributes()
        .with_checks(false)
        .map_while(Result::ok)
    {
        let value = a
            .decode_and_unescape_value(reader.decoder())
            .map(Cow::into_owned)
            .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned());
        let key = a.key.as_ref();
        if key == b"xmlns" {
            ns_decls.push((String::new(), value));
        } else if let Some(prefix) = key.strip_prefix(b"xmlns:") {
            ns_decls.push((String::from_utf8_lossy(prefix).into_owned(), value));
        } else {
            attrs.push((local_name(key), value));
        }
    }
    let (prefix, local) = split_qname(start.name().as_ref());
    Element {
        name: local.to_ascii_lowercase(),
        local,
        prefix,
        ns_decls,
        attrs,
        span: (at, at),
        ..Element::default()
    }
}

/// Byte offset of the reader in its input.
fn position(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

/// Pop the innermost open element, which ends at byte `end`, and attach it to
/// its parent (or the roots). Returns true when a top-level recording root
/// was just completed.
fn close(stack: &mut Vec<Element>, roots: &mut Vec<Element>, end: usize) -> bool {
    let Some(mut done) = stack.pop() else {
        return false;
    };
    done.span.1 = end;
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
        let at = position(&reader);
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
                    stack.push(element_from(&start, &reader, at));
                }
            }
            Event::Empty(start) => {
                if skipped == 0 && stack.len() < MAX_DEPTH {
                    stack.push(element_from(&start, &reader, at));
                    if close(&mut stack, &mut roots, position(&reader)) {
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
                    if close(&mut stack, &mut roots, position(&reader)) {
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
    let end = position(&reader).min(xml.len());
    while !stack.is_empty() {
        close(&mut stack, &mut roots, end);
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

/// Children of the root that RFC 7865 defines (everything else is kept as an
/// extension).
const ROOT_KNOWN: &[&str] = &[
    "datamode",
    "group",
    "session",
    "participant",
    "stream",
    "sessionrecordingassoc",
    "participantsessionassoc",
    "participantstreamassoc",
];
/// Known children of `<group>`.
const GROUP_KNOWN: &[&str] = &["associate-time", "disassociate-time"];
/// Known children of `<session>` (RFC 7865 plus the legacy times).
const SESSION_KNOWN: &[&str] = &[
    "sipsessionid",
    "reason",
    "group-ref",
    "start-time",
    "stop-time",
    "associate-time",
    "disassociate-time",
];
/// Known children of `<participant>` (RFC 7865, legacy and BroadWorks).
const PARTICIPANT_KNOWN: &[&str] = &[
    "nameid",
    "send",
    "recv",
    "associate-time",
    "disassociate-time",
    "aor",
    "name",
];

/// `src` is the text the tree was built from (for raw extension XML).
fn metadata_from_root(root: &Element, src: &str) -> Metadata {
    let mut md = Metadata::default();
    if root.name == SNAPSHOT_REQUEST {
        md.is_snapshot_request = true;
        return md;
    }
    // (participant id, send, recv) from <participantstreamassoc>, applied last
    // because they may come before the <participant> they refer to.
    let mut assocs: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for child in &root.children {
        match child.name.as_str() {
            "datamode" => md.datamode = datamode_from(&child.text),
            "group" => md.groups.push(group_from(child, root, src)),
            "session" => md.sessions.push(session_from(child, root, src)),
            "participant" => {
                let (p, assoc) = participant_from(child, root, src);
                merge_participant(&mut md.participants, p);
                md.participant_session_assocs.extend(assoc);
            }
            "stream" => merge_stream(&mut md.streams, stream_from(child)),
            "participantstreamassoc" => {
                if let Some(id) = child.attr(&["participant_id", "id"]) {
                    let (send, recv) = send_recv(child);
                    assocs.push((id.trim().to_string(), send, recv));
                }
            }
            "participantsessionassoc" => {
                if let Some(id) = child.attr(&["participant_id", "id"]) {
                    md.participant_session_assocs.push(ParticipantSessionAssoc {
                        participant_id: id.trim().to_string(),
                        session_id: attr_string(child, &["session_id", "session"]),
                        associate_time: child.child_text("associate-time"),
                        disassociate_time: child.child_text("disassociate-time"),
                    });
                }
            }
            _ => {
                if !ROOT_KNOWN.contains(&child.name.as_str()) {
                    md.extensions.push(extension_from(child, &[root], src));
                }
            }
        }
    }
    for (id, send, recv) in assocs {
        merge_participant(
            &mut md.participants,
            Participant {
                id,
                send,
                recv,
                has_stream_assoc: true,
                ..Participant::default()
            },
        );
    }
    // Association times onto the participants of this document.
    for a in &md.participant_session_assocs {
        if let Some(p) = md
            .participants
            .iter_mut()
            .find(|p| p.id == a.participant_id)
        {
            replace_if_some(&mut p.associate_time, a.associate_time.clone());
            replace_if_some(&mut p.disassociate_time, a.disassociate_time.clone());
        }
    }
    md
}

/// Unknown children of `el` as extensions; `scopes` are its ancestors.
fn extensions_of(el: &Element, known: &[&str], scopes: &[&Element], src: &str) -> Vec<Extension> {
    let mut scopes = scopes.to_vec();
    scopes.push(el);
    el.children
        .iter()
        .filter(|c| !known.contains(&c.name.as_str()))
        .map(|c| extension_from(c, &scopes, src))
        .collect()
}

/// Longest `Extension::xml` kept, in bytes.
const MAX_EXTENSION_XML: usize = 8 * 1024;
/// Most `(path, text)` pairs kept per extension.
const MAX_EXTENSION_VALUES: usize = 256;

fn extension_from(el: &Element, scopes: &[&Element], src: &str) -> Extension {
    let raw = src.get(el.span.0..el.span.1).unwrap_or_default();
    let xml = if !raw.is_empty() && raw.len() <= MAX_EXTENSION_XML {
        raw.to_string()
    } else {
        let mut all = String::new();
        text_content(el, &mut all);
        let mut cut = all.len().min(MAX_EXTENSION_XML);
        while !all.is_char_boundary(cut) {
            cut -= 1;
        }
        all.truncate(cut);
        all
    };
    let mut text = Vec::new();
    if el.name == "extensiondata" && !el.children.is_empty() {
        for c in &el.children {
            leaf_values(c, c.local.clone(), &mut text);
        }
    } else {
        leaf_values(el, el.local.clone(), &mut text);
    }
    Extension {
        name: el.local.clone(),
        namespace: namespace_of(el, scopes),
        xml,
        text,
    }
}

/// Concatenated text of `el` and its descendants.
fn text_content(el: &Element, out: &mut String) {
    out.push_str(&el.text);
    for c in &el.children {
        if out.len() > MAX_EXTENSION_XML {
            return;
        }
        text_content(c, out);
    }
}

/// `(path, trimmed text)` of every leaf under `el` (itself included) with
/// non-blank text; `path` is the path of `el`.
fn leaf_values(el: &Element, path: String, out: &mut Vec<(String, String)>) {
    if out.len() >= MAX_EXTENSION_VALUES {
        return;
    }
    if el.children.is_empty() {
        if let Some(t) = non_blank(&el.text) {
            out.push((path, t));
        }
        return;
    }
    for c in &el.children {
        leaf_values(c, format!("{path}/{}", c.local), out);
    }
}

/// Namespace URI of `el`: its prefix (or the default namespace) looked up in
/// its own declarations, then in those of `scopes` (outermost first).
fn namespace_of(el: &Element, scopes: &[&Element]) -> Option<String> {
    let prefix = el.prefix.as_deref().unwrap_or("");
    if prefix == "xml" {
        return Some("http://www.w3.org/XML/1998/namespace".to_string());
    }
    std::iter::once(el)
        .chain(scopes.iter().rev().copied())
        .find_map(|e| e.ns_decls.iter().rev().find(|(p, _)| p == prefix))
        .and_then(|(_, uri)| non_blank(uri))
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

fn group_from(el: &Element, root: &Element, src: &str) -> Group {
    Group {
        id: attr_string(el, &["group_id", "id"]),
        associate_time: el.child_text("associate-time"),
        disassociate_time: el.child_text("disassociate-time"),
        extensions: extensions_of(el, GROUP_KNOWN, &[root], src),
    }
}

fn session_from(el: &Element, root: &Element, src: &str) -> CsSession {
    CsSession {
        id: attr_string(el, &["session_id", "id"]),
        sip_session_ids: el
            .children_named("sipsessionid")
            .map(|c| c.text.split_whitespace().collect::<String>())
            .filter(|s| !s.is_empty())
            .collect(),
        start_time: el.child_text("start-time"),
        stop_time: el.child_text("stop-time"),
        extensions: extensions_of(el, SESSION_KNOWN, &[root], src),
    }
}

/// The participant, and (legacy dialects) the session association given by
/// its `session` attribute.
fn participant_from(
    el: &Element,
    root: &Element,
    src: &str,
) -> (Participant, Option<ParticipantSessionAssoc>) {
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
    let id = attr_string(el, &["participant_id", "id"]);
    let associate_time = el.child_text("associate-time");
    let disassociate_time = el.child_text("disassociate-time");
    let assoc = el
        .attr(&["session"])
        .and_then(non_blank)
        .filter(|_| !id.is_empty())
        .map(|session_id| ParticipantSessionAssoc {
            participant_id: id.clone(),
            session_id,
            associate_time: associate_time.clone(),
            disassociate_time: disassociate_time.clone(),
        });
    let participant = Participant {
        has_stream_assoc: el
            .children
            .iter()
            .any(|c| c.name == "send" || c.name == "recv"),
        id,
        aor,
        name,
        send,
        recv,
        associate_time,
        disassociate_time,
        extensions: extensions_of(el, PARTICIPANT_KNOWN, &[root], src),
    };
    (participant, assoc)
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
        mode: el.child_text("mode"),
        associate_time: el.child_text("associate-time"),
        disassociate_time: el.child_text("disassociate-time"),
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
            q.has_stream_assoc |= p.has_stream_assoc;
            if q.associate_time.is_none() {
                q.associate_time = p.associate_time;
            }
            if q.disassociate_time.is_none() {
                q.disassociate_time = p.disassociate_time;
            }
            q.extensions.extend(p.extensions);
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
            if t.mode.is_none() {
                t.mode = s.mode;
            }
            if t.associate_time.is_none() {
                t.associate_time = s.associate_time;
            }
            if t.disassociate_time.is_none() {
                t.disassociate_time = s.disassociate_time;
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
    fn requestsnapshot_is_a_snapshot_request() {
        let text = corpus!("ietf-rfc7866-srs-requestsnapshot-update.sip");
        let xml = &text[text.find("<?xml").expect("xml")..];
        let md = parse(xml).expect("snapshot request parses");
        assert!(md.is_snapshot_request);
        assert_eq!(
            md,
            Metadata {
                is_snapshot_request: true,
                ..Metadata::default()
            }
        );
        // Applying it changes nothing.
        let mut state = parse_sample(corpus!("ietf-rfc7865-complete-snapshot.xml"));
        let copy = state.clone();
        assert!(state.apply(md).is_empty());
        assert_eq!(state, copy);
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

    // -----------------------------------------------------------------------
    // Model additions, merging and extensions.

    fn change(
        kind: ChangeKind,
        participant_id: Option<&str>,
        stream_id: Option<&str>,
        at: Option<&str>,
    ) -> Change {
        Change {
            kind,
            participant_id: participant_id.map(str::to_string),
            stream_id: stream_id.map(str::to_string),
            at: at.map(str::to_string),
        }
    }

    fn active_ids(md: &Metadata) -> Vec<&str> {
        md.active_participants().map(|p| p.id.as_str()).collect()
    }

    const ALICE: &str = "srfBElmCRp2QB23b7Mpk0w==";
    const BOB: &str = "zSfPoSvdSDCmU3A3TRDxAw==";
    const CAROL: &str = "Atnm1ZRnOC6Pm5MApkrDzQ==";
    const CS: &str = "hVpd7YQgRW2nD22h7q60JQ==";

    #[test]
    fn new_model_fields_rfc8068_basic() {
        let md = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));
        assert_eq!(md.groups.len(), 1);
        let g = &md.groups[0];
        assert_eq!(g.id, "7+OTCyoxTmqmqyA/1weDAg==");
        assert_eq!(g.associate_time.as_deref(), Some("2010-12-16T23:41:07Z"));
        let names: Vec<&str> = g.extensions.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["call-center", "mydata"]);
        assert_eq!(
            g.extensions[0].namespace.as_deref(),
            Some("urn:ietf:params:xml:ns:callcenter")
        );
        assert_eq!(
            g.extensions[0].text,
            [(
                "call-center/supervisor".to_string(),
                "sip:alice@atlanta.com".to_string()
            )]
        );
        assert!(g.extensions[1]
            .xml
            .starts_with("<mydata xmlns='http://example.com/my'>"));
        assert!(g.extensions[1].xml.ends_with("</mydata>"));
        assert_eq!(md.sessions[0].extensions.len(), 1);
        assert!(md.participants.iter().all(|p| p.extensions.len() == 1
            && p.has_stream_assoc
            && p.associate_time.as_deref() == Some("2010-12-16T23:41:07Z")
            && p.disassociate_time.is_none()));
        assert_eq!(md.participant_session_assocs.len(), 2);
        assert_eq!(md.participant_session_assocs[1].participant_id, BOB);
        assert_eq!(md.participant_session_assocs[1].session_id, CS);
        // <sessionrecordingassoc> is RFC 7865, not an extension.
        assert!(md.extensions.is_empty());
        assert!(!md.is_snapshot_request);
    }

    #[test]
    fn legacy_times_mode_and_session_attribute() {
        let md = parse_sample(corpus!("acme-sbc-avaya-ucid-offer-body.sip"));
        let s = &md.streams[0];
        assert_eq!(s.mode.as_deref(), Some("separate"));
        assert_eq!(s.associate_time.as_deref(), Some("2020-03-27T13:56:05"));
        assert_eq!(s.disassociate_time, None);
        let p = &md.participants[0];
        assert_eq!(p.associate_time.as_deref(), Some("2020-03-27T13:56:05"));
        assert!(p.has_stream_assoc);
        assert_eq!(
            md.participant_session_assocs[0],
            ParticipantSessionAssoc {
                participant_id: "ARlTfnirTkxisET9jl8njg==".into(),
                session_id: "0rBXFi0CTBB0j8HyGBBrlg==".into(),
                associate_time: Some("2020-03-27T13:56:05".into()),
                disassociate_time: None,
            }
        );
        let bw = parse_sample(corpus!("broadworks-pause-resume-reinvite.sipp.xml"));
        assert_eq!(bw.streams[0].mode.as_deref(), Some("mixed"));
        assert_eq!(
            bw.groups[0].id,
            "urn:uuid:6219893c-d072-43d3-ba6c-8828cf7be472"
        );
        assert_eq!(bw.groups[0].extensions[0].name, "initiator");
    }

    #[test]
    fn rfc8068_hold_transfer_and_bye() {
        let mut state = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));

        // Hold: Alice's send list is emptied, Bob's is unchanged.
        let hold = parse_sample(corpus!("ietf-rfc8068-hold-reinvite-partial.sip"));
        let changes = state.apply(hold);
        assert_eq!(
            changes,
            [change(ChangeKind::SendChanged, Some(ALICE), None, None)]
        );
        let alice = participant(&state, ALICE);
        assert!(alice.send.is_empty());
        assert_eq!(
            alice.recv,
            ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
        );
        assert_eq!(alice.aor.as_deref(), Some("sip:alice@atlanta.com"), "kept");
        assert_eq!(alice.name.as_deref(), Some("Alice"), "kept");
        let bob = participant(&state, BOB);
        assert_eq!(
            bob.send,
            ["8zc6e0lYTlWIINA6GR+3ag==", "EiXGlc+4TruqqoDaNE76ag=="]
        );
        assert!(bob.recv.is_empty());
        assert_eq!(
            state.sender_of_label("98").map(|p| p.id.as_str()),
            Some(BOB)
        );
        assert!(state.sender_of_label("96").is_none(), "Alice on hold");
        assert_eq!(state.streams.len(), 4);
        assert_eq!(state.groups.len(), 1);

        // Transfer: Carol joins, Alice leaves, Bob now receives Carol.
        let transfer = parse_sample(corpus!("ietf-rfc8068-transfer-reinvite-partial.sip"));
        let changes = state.apply(transfer);
        assert_eq!(
            changes,
            [
                change(
                    ChangeKind::ParticipantLeft,
                    Some(ALICE),
                    None,
                    Some("2013-12-16T23:41:07Z")
                ),
                change(
                    ChangeKind::ParticipantJoined,
                    Some(CAROL),
                    None,
                    Some("2013-12-16T23:41:07Z")
                ),
            ]
        );
        assert_eq!(active_ids(&state), [BOB, CAROL]);
        assert_eq!(
            state.sessions[0].sip_session_ids,
            ["3363127f0d084c10876dddd4f8e5eeb9;remote=2272bb7e70fe41dba0025ae9a26d54cf"]
        );
        let bob = participant(&state, BOB);
        assert_eq!(bob.aor.as_deref(), Some("sip:bob@biloxy.com"), "kept");
        assert_eq!(
            bob.recv,
            ["60JAJm9UTvik0Ltlih/Gzw==", "AcR5FUd3Edi8cACQJy/3JQ=="]
        );
        let carol = participant(&state, CAROL);
        assert_eq!(carol.aor.as_deref(), Some("sip:carol@example.com"));
        // Carol's stream ids are not defined by any <stream>: kept as they are.
        assert_eq!(
            carol.send,
            ["60JAJm9UTvik0Ltlih/Gzw==", "AcR5FUd3Edi8cACQJy/3JQ=="]
        );
        assert_eq!(state.streams.len(), 4);
        assert!(state.labels_sent_by(CAROL).is_empty());

        // BYE: the session stops; Bob leaves explicitly, Carol implicitly.
        let bye = parse_sample(corpus!("ietf-rfc8068-bye-with-partial-metadata.sip"));
        let changes = state.apply(bye);
        assert_eq!(
            changes,
            [
                change(
                    ChangeKind::SessionStopped,
                    None,
                    None,
                    Some("2010-12-16T23:41:07Z")
                ),
                change(
                    ChangeKind::ParticipantLeft,
                    Some(BOB),
                    None,
                    Some("2010-12-16T23:41:07Z")
                ),
                change(
                    ChangeKind::ParticipantLeft,
                    Some(CAROL),
                    None,
                    Some("2010-12-16T23:41:07Z")
                ),
            ]
        );
        assert_eq!(
            state.sessions[0].stop_time.as_deref(),
            Some("2010-12-16T23:41:07Z")
        );
        assert_eq!(state.active_participants().count(), 0);
        assert!(state
            .participants
            .iter()
            .all(|p| p.disassociate_time.is_some()));
        assert!(state
            .participant_session_assocs
            .iter()
            .all(|a| a.disassociate_time.is_some()));
        assert_eq!(state.participants.len(), 3);
    }

    #[test]
    fn rfc7865_partial_disassociates_bob() {
        // In RFC 7865's examples srfB... is Bob and zSfP... is Paul.
        const BOB_7865: &str = ALICE;
        const PAUL_7865: &str = BOB;
        let mut state = parse_sample(corpus!("ietf-rfc7865-complete-snapshot.xml"));
        assert_eq!(active_ids(&state), [BOB_7865, PAUL_7865]);
        let update = parse_sample(corpus!("ietf-rfc7865-partial-update.xml"));
        // Bob (srfB... in RFC 7865) gets the time through his participant.
        assert_eq!(
            update.participants[0].disassociate_time.as_deref(),
            Some("2010-12-16T23:41:07Z")
        );
        let changes = state.apply(update);
        assert_eq!(
            changes,
            [change(
                ChangeKind::ParticipantLeft,
                Some(BOB_7865),
                None,
                Some("2010-12-16T23:41:07Z")
            )]
        );
        let bob = participant(&state, BOB_7865);
        assert_eq!(bob.aor.as_deref(), Some("sip:bob@biloxi.com"));
        assert_eq!(
            bob.disassociate_time.as_deref(),
            Some("2010-12-16T23:41:07Z")
        );
        // No association in the update: his send list stays.
        assert_eq!(
            bob.send,
            ["i1Pz3to5hGk8fuXl+PbwCw==", "UAAMm5GRQKSCMVvLyl4rFw=="]
        );
        assert_eq!(active_ids(&state), [PAUL_7865]);
        // Associated again with a new time: joined again.
        let rejoin = parse(
            "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>partial</datamode>\
             <participantsessionassoc participant_id='srfBElmCRp2QB23b7Mpk0w==' \
             session_id='hVpd7YQgRW2nD22h7q60JQ=='>\
             <associate-time>2010-12-16T23:50:00Z</associate-time>\
             </participantsessionassoc></recording>",
        )
        .expect("parses");
        assert_eq!(
            state.apply(rejoin),
            [change(
                ChangeKind::ParticipantJoined,
                Some(BOB_7865),
                None,
                Some("2010-12-16T23:50:00Z")
            )]
        );
        assert_eq!(active_ids(&state), [BOB_7865, PAUL_7865]);
    }

    #[test]
    fn avaya_sbce_update_replaces_dummy_participant() {
        let all = extract_all(corpus!("avaya-sbce-invite-update-bye.sipp.xml"));
        let mut state = parse(all[0]).expect("INVITE metadata");
        assert_eq!(
            participant(&state, "abcdef12345678901234").aor.as_deref(),
            Some("sip:ASBCE@asbce.com")
        );
        let update = parse(all[1]).expect("UPDATE metadata");
        assert_eq!(update.datamode, DataMode::Complete);
        let changes = state.apply(update.clone());
        assert_eq!(
            changes,
            [
                change(ChangeKind::Snapshot, None, None, None),
                change(
                    ChangeKind::StreamAdded,
                    None,
                    Some("63a24a2bc6e7c076d738"),
                    None
                ),
                change(
                    ChangeKind::ParticipantJoined,
                    Some("6add855be46c6970e8fd"),
                    None,
                    Some("2017-02-13T12:54:36")
                ),
                change(
                    ChangeKind::ParticipantLeft,
                    Some("abcdef12345678901234"),
                    None,
                    None
                ),
            ]
        );
        assert_eq!(state, update, "a complete snapshot keeps nothing stale");
        let callee = state.sender_of_label("20").expect("sender of label 20");
        assert_eq!(callee.aor.as_deref(), Some("sip:7204541001@10.64.110.32"));
        assert_eq!(
            aor_of_label(&state, "10"),
            Some("sip:13035381001@10.64.110.65")
        );
        assert!(state.participants.iter().all(|p| !p
            .aor
            .as_deref()
            .unwrap_or_default()
            .contains("ASBCE")));
    }

    #[test]
    fn complete_snapshot_after_transfer_reports_diffs() {
        let mut state = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));
        state.apply(parse_sample(corpus!(
            "ietf-rfc8068-hold-reinvite-partial.sip"
        )));
        state.apply(parse_sample(corpus!(
            "ietf-rfc8068-transfer-reinvite-partial.sip"
        )));
        assert_eq!(active_ids(&state), [BOB, CAROL]);
        let snapshot = parse_sample(corpus!("ietf-rfc8068-basic-av-invite-complete.sip"));
        let changes = state.apply(snapshot.clone());
        assert_eq!(
            changes,
            [
                change(ChangeKind::Snapshot, None, None, None),
                // Alice had left; the snapshot has her associated again.
                change(
                    ChangeKind::ParticipantJoined,
                    Some(ALICE),
                    None,
                    Some("2010-12-16T23:41:07Z")
                ),
                change(ChangeKind::SendChanged, Some(ALICE), None, None),
                // Carol is not in the snapshot.
                change(ChangeKind::ParticipantLeft, Some(CAROL), None, None),
            ]
        );
        assert_eq!(state, snapshot);
        assert_eq!(active_ids(&state), [ALICE, BOB]);
        // The same snapshot again changes nothing but the marker.
        assert_eq!(
            state.apply(snapshot),
            [change(ChangeKind::Snapshot, None, None, None)]
        );
    }

    #[test]
    fn partial_upsert_rules() {
        let mut state = parse(
            "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>\
             <session session_id='c1'><start-time>T1</start-time></session>\
             <participant participant_id='p1'><nameID aor='sip:a@x'><name>A</name></nameID></participant>\
             <participantstreamassoc participant_id='p1'><send>s1</send><recv>s2</recv></participantstreamassoc>\
             <stream stream_id='s1' session_id='c1'><label>1</label></stream></recording>",
        )
        .expect("parses");
        let update = parse(
            "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>partial</datamode>\
             <participant participant_id='p1'><nameID aor='sip:a2@x'/></participant>\
             <participantstreamassoc participant_id='p2'/>\
             <stream stream_id='s1'><label>9</label></stream>\
             <stream stream_id='s3'><label>3</label></stream></recording>",
        )
        .expect("parses");
        assert!(!update.participants[0].has_stream_assoc);
        assert!(update.participants[1].has_stream_assoc);
        let changes = state.apply(update);
        assert_eq!(
            changes,
            [
                change(ChangeKind::StreamAdded, None, Some("s3"), None),
                change(ChangeKind::ParticipantJoined, Some("p2"), None, None),
            ]
        );
        let p1 = participant(&state, "p1");
        assert_eq!(p1.aor.as_deref(), Some("sip:a2@x"));
        assert_eq!(p1.name.as_deref(), Some("A"), "absent name kept");
        assert_eq!(
            (p1.send.as_slice(), p1.recv.as_slice()),
            (&["s1".to_string()][..], &["s2".to_string()][..])
        );
        assert_eq!(state.streams[0].label.as_deref(), Some("9"));
        assert_eq!(state.streams[0].session_id.as_deref(), Some("c1"), "kept");
        assert_eq!(state.sessions[0].start_time.as_deref(), Some("T1"));
        // An empty association: sends and receives nothing.
        let empty = parse(
            "<recording><datamode>partial</datamode>\
             <participantstreamassoc participant_id='p1'></participantstreamassoc></recording>",
        )
        .expect("parses");
        assert_eq!(
            state.apply(empty),
            [change(ChangeKind::SendChanged, Some("p1"), None, None)]
        );
        let p1 = participant(&state, "p1");
        assert!(p1.send.is_empty() && p1.recv.is_empty());
    }

    #[test]
    fn session_stop_only_closes_its_own_participants() {
        let mut state = parse(
            "<recording><participant participant_id='a'/><participant participant_id='b'/>\
             <participant participant_id='c'/>\
             <participantsessionassoc participant_id='a' session_id='c1'/>\
             <participantsessionassoc participant_id='b' session_id='c2'/></recording>",
        )
        .expect("parses");
        let stop = parse(
            "<recording><datamode>partial</datamode>\
             <session session_id='c1'><stop-time>T9</stop-time></session></recording>",
        )
        .expect("parses");
        state.apply(stop);
        // a is in c1; c has no known session, so it counts as in c1 too.
        assert_eq!(active_ids(&state), ["b"]);
        assert_eq!(
            participant(&state, "a").disassociate_time.as_deref(),
            Some("T9")
        );
    }

    #[test]
    fn extension_values_acme_genesys_malformed() {
        let md = parse_sample(corpus!("acme-sbc-genesys-record-invite-tcp.sip"));
        let values = md.extension_values();
        let uri = values
            .iter()
            .find(|(k, _)| k == "request-uri")
            .map(|(_, v)| v.as_str())
            .expect("request-uri kept");
        assert!(uri.contains("recorddn=6325883654"), "{uri}");
        assert!(
            uri.starts_with("<sip:record=01PEP83ES8B0FC7QD151Q2LAES00022M_"),
            "{uri}"
        );
        assert!(values.contains(&("ucid".into(), "00473539660FF5A7".into())));
        let ext = &md.participants[0].extensions[0];
        assert_eq!(ext.name, "extensiondata");
        assert!(ext.text.contains(&(
            "header/value".into(),
            "wlss-9df06dac-AC565000-947B-5BFE-1ECF-88D28E4B0995-7094@10.28.70.121".into()
        )));
        assert!(ext.xml.starts_with("<extensiondata xmlns:apkt="));
        assert!(ext.xml.ends_with("</extensiondata>"));
        // The lenient pass escaped the raw '<', so the kept XML is well-formed.
        assert!(ext.xml.contains("<apkt:request-uri>&lt;sip:record="));
        assert!(build_tree(&ext.xml, Mode::Strict).is_ok());
    }

    #[test]
    fn extension_values_vendors() {
        let sonus = parse_sample(corpus!("sonus-sbc-offer-body.sip"));
        assert!(sonus
            .extension_values()
            .contains(&("gcid".into(), "241205267".into())));
        let call_data = &sonus.groups[0].extensions[0];
        assert_eq!(call_data.name, "callData");
        assert_eq!(
            call_data.namespace.as_deref(),
            Some("urn:ietf:params:xml:ns:callData")
        );
        assert!(call_data
            .text
            .contains(&("callData/gcid".into(), "241205267".into())));
        assert!(call_data.text.contains(&(
            "callData/fromhdr".into(),
            "\"Extension 8500\" <sip:2249888500@172.16.198.55>;tag=SerryvK5ej0jc".into()
        )));

        let ucid = parse_sample(corpus!("acme-sbc-avaya-ucid-offer-body.sip"));
        let session_ext = &ucid.sessions[0].extensions[0];
        assert_eq!(
            session_ext.namespace.as_deref(),
            Some("urn:ietf:params:xml:ns:recording")
        );
        assert_eq!(
            session_ext.text[0],
            ("ucid".into(), "00FA081003B9CF5E7DF7E5;encoding=hex".into())
        );
        assert!(ucid.extension_values().contains(&(
            "request-uri".into(),
            "sip:33187164021@10.77.91.46:5060".into()
        )));

        // The AudioCodes sample carries no GenesysUUID (nor any extension).
        let ac = parse_sample(corpus!("audiocodes-mediant-invite-tcp.sip"));
        assert!(ac.extension_values().is_empty());
        // The documented AudioCodes form, with the prefix bound on the root.
        let md = parse(
            "<recording xmlns='urn:ietf:params:xml:ns:recording' xmlns:ac='http://AudioCodes'>\
             <participant id='p'><nameID aor='a@b'/>\
             <ac:GenesysUUID xmlns='urn:ietf:params:xml:ns:Genesys'>01ABCDEF</ac:GenesysUUID>\
             </participant></recording>",
        )
        .expect("parses");
        let e = &md.participants[0].extensions[0];
        assert_eq!(e.name, "GenesysUUID");
        assert_eq!(e.namespace.as_deref(), Some("http://AudioCodes"));
        assert_eq!(
            md.extension_values(),
            [("GenesysUUID".into(), "01ABCDEF".into())]
        );

        let bw = parse_sample(corpus!("broadworks-pause-resume-reinvite.sipp.xml"));
        let names: Vec<&str> = bw.extensions.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["recording", "extensiondata"]);
        assert!(bw.extensions[1].text.contains(&(
            "broadWorksRecordingMetadata/callID".into(),
            "callhalf-[call_id]:0".into()
        )));
        assert!(bw
            .extension_values()
            .contains(&("callID".into(), "callhalf-[call_id]:0".into())));

        let ms = parse_sample(corpus!("metaswitch-hold-reinvite-bye.sipp.xml"));
        assert!(ms
            .extension_values()
            .contains(&("dialedDigits".into(), "17602922410".into())));
        assert_eq!(
            ms.extensions[0].namespace.as_deref(),
            Some("urn:ietf:params:xml:ns:recording")
        );

        let intrado = parse_sample(corpus!("intrado-viper-invite-tcp.sip"));
        assert_eq!(
            intrado.participants[0]
                .extensions
                .iter()
                .map(|e| e.text.clone())
                .collect::<Vec<_>>(),
            [
                vec![("channel".to_string(), "SIP/911202-073e".to_string())],
                vec![("role".to_string(), "calling".to_string())]
            ]
        );
        let json = serde_json::to_value(&intrado).expect("json");
        assert_eq!(json["participants"][0]["extensions"][1]["name"], "role");
        assert!(json["participants"][0].get("has_stream_assoc").is_none());
    }

    #[test]
    fn oversized_extension_falls_back_to_text() {
        let big = "x".repeat(10_000);
        let md = parse(&format!(
            "<recording><session id='s'><blob><a>{big}</a><b>é</b></blob></session></recording>"
        ))
        .expect("parses");
        let e = &md.sessions[0].extensions[0];
        assert!(e.xml.len() <= MAX_EXTENSION_XML);
        assert!(e.xml.chars().all(|c| c == 'x'));
        assert_eq!(e.text[1], ("blob/b".into(), "é".into()));
    }

    /// Every metadata document of every corpus file (lenient slicing: from
    /// each root start tag to the end of the file).
    fn corpus_docs() -> Vec<Metadata> {
        let files = [
            corpus!("acme-sbc-avaya-ucid-offer-body.sip"),
            corpus!("acme-sbc-carrier-invite-xacme-callid.sip"),
            corpus!("acme-sbc-genesys-record-invite-tcp.sip"),
            corpus!("acme-sbc-offer-body.sip"),
            corpus!("audiocodes-mediant-invite-tcp.sip"),
            corpus!("avaya-sbce-invite-update-bye.sipp.xml"),
            corpus!("avaya-sbce-offer-body-dataMode.sip"),
            corpus!("broadworks-pause-resume-reinvite.sipp.xml"),
            corpus!("cisco-cube-inactive-offer-body.sip"),
            corpus!("cisco-cube-ios16-invite-sparse-metadata.sip"),
            corpus!("cisco-cube-offer-body-gtd.sip"),
            corpus!("cisco-webex-broadworks-conference-update-hold.sipp.xml"),
            corpus!("drachtio-sipp-invite-reinvite-inactive-bye.sipp.xml"),
            corpus!("genesys-gvp-record-uri-headers-acme-body.sipp.xml"),
            corpus!("ietf-rfc7865-complete-snapshot.xml"),
            corpus!("ietf-rfc7865-partial-update.xml"),
            corpus!("ietf-rfc7865-schema.xsd"),
            corpus!("ietf-rfc7866-srs-requestsnapshot-update.sip"),
            corpus!("ietf-rfc8068-basic-av-invite-complete.sip"),
            corpus!("ietf-rfc8068-bye-with-partial-metadata.sip"),
            corpus!("ietf-rfc8068-hold-reinvite-partial.sip"),
            corpus!("ietf-rfc8068-mixed-participant-join-partial.sip"),
            corpus!("ietf-rfc8068-transfer-reinvite-partial.sip"),
            corpus!("intrado-viper-invite-tcp.sip"),
            corpus!("metaswitch-hold-reinvite-bye.sipp.xml"),
            corpus!("opensips-connectel-offer-body.sip"),
            corpus!("opensips-generated-invite-2.sip"),
            corpus!("opensips-generated-invite.sip"),
            corpus!("oracle-sbc-outbound-apkt.sipp.xml"),
            corpus!("sems-procomm-offer-body.sip"),
            corpus!("sipp-generated-invite.sip"),
            corpus!("sonus-sbc-offer-body.sip"),
        ];
        let mut docs = Vec::new();
        for text in files {
            for (i, _) in text.match_indices('<') {
                let rest = &text[i..];
                let starts_root = ["<recording", "<tns:recording", "<requestsnapshot"]
                    .iter()
                    .any(|p| rest.starts_with(p));
                if starts_root {
                    if let Ok(md) = parse(rest) {
                        docs.push(md);
                    }
                }
            }
        }
        docs
    }

    #[test]
    fn merging_any_pair_of_corpus_documents_never_panics() {
        let docs = corpus_docs();
        assert!(docs.len() >= 40, "{} documents", docs.len());
        assert!(docs.iter().any(|d| d.is_snapshot_request));
        let no_duplicate_ids = |md: &Metadata| {
            md.participants
                .iter()
                .enumerate()
                .all(|(i, p)| !md.participants[..i].iter().any(|q| q.id == p.id))
        };
        for a in &docs {
            for b in &docs {
                let mut state = a.clone();
                let changes = state.apply(b.clone());
                assert!(no_duplicate_ids(&state));
                // A second application of the same document is a no-op,
                // apart from the snapshot marker.
                let again = state.clone();
                let second = state.apply(b.clone());
                assert_eq!(state, again);
                assert!(second.iter().all(|c| c.kind == ChangeKind::Snapshot));
                if b.datamode == DataMode::Complete && !b.is_snapshot_request {
                    assert_eq!(&state, b);
                    assert_eq!(changes[0].kind, ChangeKind::Snapshot);
                }
            }
        }
        // And everything in sequence onto one state.
        let mut state = Metadata::default();
        for d in &docs {
            state.apply(d.clone());
            assert!(no_duplicate_ids(&state));
        }
    }
}
