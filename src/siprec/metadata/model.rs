//! The RFC 7865 model: what one metadata document says and, in the same
//! types, the merged state of a recording session, with the queries the
//! recorder asks of it. Reading is in `dialects.rs`, merging in `merge.rs`.

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
}
