//! The published description of one recording: the schema of `metadata.json`,
//! of each element of `srs list --json`, and of the index rows.
//!
//! Field names are a contract with Quality Management tools and scripts:
//! add fields freely, never rename or remove one.
//!
//! The vocabulary of its values lives here too, one enum per concept, each
//! spelled exactly as `metadata.json` spells it: [`Format`] (a file's
//! format, also the `output.formats` config values), [`Status`],
//! [`Direction`] and [`Attribution`]. `status` and `direction` stay text in
//! [`RecordingMeta`] because the index and the API filter on them as text
//! and keep what older versions wrote; the code writes them only through
//! these enums.

use serde::{Deserialize, Serialize};

/// The format of a recording's file (`files[].format`), and an output
/// format asked for in `output.formats` or by a rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One mono WAV per recorded stream (written live, crash-safe). Files
    /// listed before `format` existed were all of this kind.
    #[default]
    Wav,
    /// One stereo WAV: one party left, the other right.
    StereoWav,
    /// Ogg Opus per stream: the packets themselves when the stream is Opus,
    /// else encoded from the WAV after the call, off the packet path.
    OggOpus,
}

impl Format {
    /// As written in `metadata.json` and the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Wav => "wav",
            Format::StereoWav => "stereo-wav",
            Format::OggOpus => "ogg-opus",
        }
    }
}

/// How a recording ended (`status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// In `.incoming` (`incoming.json`), not published yet.
    Recording,
    /// Ended by BYE or by us (shutdown, low disk space).
    Complete,
    /// The session timer (RFC 4028) expired without a refresh.
    CompleteSessionExpired,
    /// Our 200 OK was never acknowledged: what was received is published.
    CompleteNoAck,
    /// Left by a crash in `.incoming`, published at the next start.
    Recovered,
    /// A stream stopped recording before the session ended (`error` says why).
    Truncated,
    /// Cancelled by the client before our answer: nothing is published.
    Cancelled,
    /// Refused before or at its answer: nothing is published.
    Failed,
}

impl Status {
    /// As written in `metadata.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Recording => "recording",
            Status::Complete => "complete",
            Status::CompleteSessionExpired => "complete-session-expired",
            Status::CompleteNoAck => "complete-no-ack",
            Status::Recovered => "recovered",
            Status::Truncated => "truncated",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }

    /// A session never answered (cancelled or refused): nothing of it may
    /// stay in `.incoming` or be published.
    pub fn is_unanswered(self) -> bool {
        matches!(self, Status::Cancelled | Status::Failed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Status> for String {
    fn from(s: Status) -> String {
        s.as_str().to_string()
    }
}

/// Which way the recorded call went (`direction`), from the correlation
/// ids and the DN directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
    Unknown,
}

impl Direction {
    /// As written in `metadata.json` (and matched by a rule's `direction`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Unknown => "unknown",
        }
    }
}

/// How a stream's sender was found (`streams[].attribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attribution {
    /// RFC 7865 metadata associates the stream with a participant.
    Metadata,
    /// An `X-Cisco-Recording-Participant` header names the sender.
    Header,
    /// Metadata named participants but no streams: caller first, as
    /// OpenSIPS sends.
    Order,
}

/// Everything known about one recording. Serialised as `metadata.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordingMeta {
    /// Our own id: path-safe (`[0-9a-z-]`), unique, sortable by creation time.
    pub recording_id: String,
    /// SIP Call-ID of the recording session (the RS dialog), as received.
    pub call_id: String,
    /// How the recording ended: `complete` (BYE or our own end),
    /// `complete-session-expired`, `complete-no-ack`, `recovered` (left by
    /// a crash, published at the next start) or `truncated`: a stream
    /// stopped recording before the session ended (a write failed: disk
    /// full, I/O error); its file holds the audio up to the failure and
    /// `error` says what happened.
    pub status: String,
    /// RFC 3339 UTC, when the session was answered.
    pub started_at: String,
    /// RFC 3339 UTC, when the session ended (BYE or shutdown). For
    /// `complete-no-ack`, when its last media ended (what was received is
    /// published, not the 32 s of waiting for the ACK).
    pub ended_at: String,
    /// `ended_at - started_at` in milliseconds.
    pub duration_ms: u64,
    /// Address of the recording client that sent the INVITE (`ip:port`).
    pub source: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// The recorder that took the call (`[node] id`, default the host
    /// name): with several recorders sharing one index and one object
    /// store, where the recording was made (issue 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The DN the recording is filed under (agent extension, trunk, route
    /// point...), chosen by the recording rule (`record = "source"|"dest"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_dn: Option<String>,
    /// Kind of the Record DN from the DN directory (`extension`, `trunk`,
    /// `route-point`...), `unknown` when the directory does not list it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_dn_kind: Option<String>,
    /// Geo-location of the recorded side (header, URI parameter or DN
    /// directory, by the rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_location: Option<String>,
    /// `inbound`, `outbound` or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Correlation ids from every place they travel (Request-URI and To
    /// parameters, X-Genesys-* and vendor headers, metadata extensions):
    /// `calluuid`, `connid`, `agentid`, `ani`, `dnis`, `dn`, `otherdn`,
    /// `recorddn`, `ucid`, `cisco_guid`, ... each present when known.
    #[serde(default)]
    pub correlation: std::collections::BTreeMap<String, String>,
    /// Name of the recording rule that matched, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Directory of the recording relative to the drop root,
    /// e.g. `2026/11/23/<recording_id>`; empty until published.
    pub path: String,
    pub participants: Vec<ParticipantMeta>,
    pub streams: Vec<StreamMeta>,
    pub files: Vec<FileMeta>,
    /// What happened during the session, in order (see [`EventMeta`]).
    #[serde(default)]
    pub events: Vec<EventMeta>,
    /// DTMF digits, in order.
    #[serde(default)]
    pub dtmf: Vec<DtmfMeta>,
    /// Name of the raw recording metadata XML kept beside the audio, if any was received.
    pub metadata_file: Option<String>,
    /// Why the recording metadata could not be (fully) understood, if so. Media is recorded anyway.
    pub metadata_error: Option<String>,
    /// Storage caps this recording reached (its client sent more than a
    /// recording may keep): `metadata-updates`, `metadata-bytes`, `events`,
    /// `participants` (see `session::Limits`); the audio is never
    /// affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits_reached: Vec<String>,
    /// Why the audio is incomplete (status `truncated`): each failed
    /// stream's file and error, e.g. `alice-1.wav: No space left on
    /// device (os error 28)`. Absent when every stream recorded to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,

    // Issue 14: call events from the contact centre (docs/genesys.md).
    /// Call events tied to this recording (CallUUID, else ConnID), in time
    /// order. Only in the index's JSON (`srs show --json`, the API,
    /// webhooks) and `call-events.json` in the drop, never in
    /// `metadata.json` (written once, at publication).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub call_events: Vec<crate::events::StoredEvent>,
    /// The events' `user_data` merged: the latest value of each key.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attached_data: std::collections::BTreeMap<String, String>,
    // --- The life of a recording (issue 15; docs/security.md, Integrity
    // and encryption at rest; docs/operations.md, Retention). ---
    /// The recording client's `User-Agent` (or `Server`) header, as
    /// received: what a `[[retention]]` rule's `vendor` matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The raw metadata XML documents kept beside the audio
    /// (`metadata.xml`, `metadata-update-N.xml`), with their SHA-256:
    /// covered by the manifest like the audio files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata_files: Vec<StoredFile>,
    /// SHA-256 (hex) of the recording's manifest: the lines
    /// `<sha256>  <stored name>\n` of every file of `files` and
    /// `metadata_files`, sorted by stored name (`store::integrity`).
    /// Absent for recordings published before integrity existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The legal hold on the recording, if any: it is never deleted, by
    /// retention or by hand, until released. Kept in the index and in the
    /// drop (`hold.json` beside `metadata.json`), never in metadata.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
}

/// A legal hold (`srs hold`, `PUT /api/v1/recordings/{id}/hold`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Why, as given (a case or matter reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339 UTC, when it was put.
    pub at: String,
    /// Who put it: a token name or `cli:<user>`.
    pub by: String,
}

/// A file of a recording other than its audio (the metadata XML).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// File name inside the recording directory.
    pub name: String,
    /// SHA-256 (hex) of the file as stored.
    pub sha256: String,
    pub bytes: u64,
}

/// One party of the recorded call, as described by the RFC 7865 metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParticipantMeta {
    /// `participant_id` from the metadata (opaque), or a synthetic id when there was none.
    pub id: String,
    /// Address of record (`nameID aor`), e.g. `sip:alice@example.com`.
    pub aor: Option<String>,
    /// Display name (`nameID/name`).
    pub name: Option<String>,
    /// SDP labels of the streams this participant sends on.
    pub labels: Vec<String>,
    /// Audio file of this participant (name inside the recording directory), if any.
    pub file: Option<String>,
}

/// One recorded media stream (one SDP m-line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// SDP `a=label` (opaque), or `m<index>` when the m-line had none.
    pub label: String,
    /// Codec name as negotiated, e.g. `PCMU`.
    pub codec: String,
    /// Participant sending on this stream, if known.
    pub participant_id: Option<String>,
    /// How the sender was found: `metadata` (RFC 7865 associations),
    /// `header` (X-Cisco-Recording-Participant) or `order` (metadata named
    /// participants but no streams: caller first, as OpenSIPS sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
    pub packets_received: u64,
    /// Packets missing by RTP sequence number (filled with silence).
    pub packets_lost: u64,
    /// Packets that came after their place was written (dropped).
    #[serde(default)]
    pub packets_late: u64,
    /// Packets received twice (dropped).
    #[serde(default)]
    pub packets_duplicated: u64,
    /// Packets received while the stream was paused (never recorded).
    #[serde(default)]
    pub packets_discarded: u64,
    /// RFC 3550 interarrival jitter at the end of the call, milliseconds.
    #[serde(default)]
    pub jitter_ms: f64,
    /// How many times a re-offer changed the codec or payload type.
    #[serde(default)]
    pub codec_changes: u64,
    /// SRTP (SDES) stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub srtp: bool,
    /// SRTP packets that failed authentication or replay checks (dropped).
    #[serde(default)]
    pub packets_unauthenticated: u64,
    /// Packets from a source other than the client's (dropped: nobody
    /// else may inject audio).
    #[serde(default)]
    pub packets_foreign: u64,
    /// Wall clock of the sender (RTCP SR, Unix ms) at the stream's first
    /// sample position, when the sender reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_clock_ms: Option<i64>,
    /// Why this stream stopped recording before the session ended (its
    /// counters and file describe the audio up to then). Absent normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A DTMF digit received as RFC 4733 telephone-event (never in the audio).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DtmfMeta {
    /// Stream label it came on.
    pub label: String,
    pub digit: String,
    /// Offset from the recording start, milliseconds.
    pub at_ms: u64,
    pub duration_ms: u64,
    /// RFC 3339 UTC.
    pub at: String,
}

/// One audio file of the recording.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileMeta {
    /// File name inside the recording directory.
    pub name: String,
    /// `wav` (one participant), `stereo-wav` or `ogg-opus`.
    #[serde(default)]
    pub format: Format,
    /// Stream labels in the file (a stereo file: left then right).
    #[serde(default)]
    pub labels: Vec<String>,
    pub duration_ms: u64,
    pub sample_rate: u32,
    pub channels: u16,
    pub bytes: u64,

    // --- Integrity and encryption at rest (issue 15). ---
    /// SHA-256 (hex) of the file as stored on disk: of `stored_as` when
    /// the file is encrypted, so that checking it needs no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The file's name on disk when it is not `name`: `<name>.age` for a
    /// file encrypted at rest. `name` stays what the API serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_as: Option<String>,
    /// `age` when the file is encrypted at rest (`bytes`,
    /// `duration_ms`... describe the audio inside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

impl FileMeta {
    /// The file's name on disk.
    pub fn stored_name(&self) -> &str {
        self.stored_as.as_deref().unwrap_or(&self.name)
    }
}

/// One thing that happened during a recording session.
///
/// `kind` is one of:
/// - `metadata-update`: metadata arrived in a re-INVITE, UPDATE or BYE (`detail`: `partial` or `complete`);
/// - `participant-joined`, `participant-left`: from metadata (`participant_id`, `aor`);
/// - `paused`, `resumed`: a stream went `inactive` (or `c=0.0.0.0`) and back (`label`);
/// - `codec-changed`: a re-offer changed a stream's codec (`label`, `detail`: the new codec);
/// - `stream-added`: a re-offer added an m-line (`label`);
/// - `session-refreshed`: a session-timer refresh (RFC 4028).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventMeta {
    /// RFC 3339 UTC.
    pub at: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The user part of an address of record: `sip:1001@host` -> `1001`,
/// `tel:+1555` -> `+1555`, `1001@host` -> `1001`.
pub fn aor_user(aor: &str) -> &str {
    let s = aor
        .trim_start_matches('<')
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .trim_start_matches("tel:");
    s.split(['@', ';', '>']).next().unwrap_or(s)
}

impl RecordingMeta {
    /// Every DN (or party number) that took part at any moment: the Record
    /// DN, the correlation DNs and numbers, and the user part of every
    /// participant's aor (participants who joined later included). The
    /// index keeps this set so `--dn` finds a recording by any of them.
    pub fn dns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |v: &str| {
            let v = v.trim();
            if !v.is_empty() && !out.iter().any(|o| o == v) {
                out.push(v.to_string());
            }
        };
        if let Some(d) = &self.record_dn {
            add(d);
        }
        for key in ["recorddn", "dn", "otherdn", "ani", "dnis", "agentid"] {
            if let Some(v) = self.correlation.get(key) {
                add(v);
            }
        }
        for p in &self.participants {
            if let Some(a) = &p.aor {
                add(aor_user(a));
            }
        }
        for e in &self.events {
            if let Some(a) = &e.aor {
                add(aor_user(a));
            }
        }
        out
    }
}
