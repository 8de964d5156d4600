//! One recording session's bookkeeping, without IO: the merged metadata,
//! every participant ever seen, the recorded streams by m-line, the event
//! log, what a re-offer changes, and the final `metadata.json`.
//!
//! The server executes what this module decides (bind a port, tell a
//! stream its codec changed, re-anchor after a pause).

pub mod lifecycle;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::media::recorder::{StreamSpec, StreamStats};
use crate::plan::{file_name, MediaPlan};
use crate::recording::{
    Attribution, DtmfMeta, EventMeta, FileMeta, Format, ParticipantMeta, RecordingMeta, Status,
    StreamMeta,
};
use crate::siprec::metadata::{self, ChangeKind, DataMode, Metadata};
use crate::siprec::sdp::{Direction, MediaOffer, RtpMap, SdpOffer};
use crate::siprec::RecordingOffer;

/// What the recorder needs for an m-line: every format we answer,
/// telephone-event's payload type and clock, and comfort noise's.
pub fn stream_spec(m: &MediaOffer) -> StreamSpec {
    StreamSpec {
        codecs: m
            .recordable_codecs()
            .into_iter()
            .map(|c| (c.pt, c.kind()))
            .collect(),
        dtmf: m.telephone_event().map(|t| (t.pt, t.rate)),
        cn: m.comfort_noise(),
        srtp: m
            .is_srtp()
            .then(|| crate::media::srtp::choose(&m.crypto).ok())
            .flatten(),
    }
}

/// Our `a=crypto` answer line for an SRTP m-line (RFC 4568: same tag and
/// suite as the offer line we chose, our own fresh key).
pub fn crypto_answer(spec: &StreamSpec) -> Option<String> {
    spec.srtp
        .as_ref()
        .map(|attr| crate::media::srtp::answer_line(attr).0)
}

/// What the recorder reported for one stream when it finished.
#[derive(Debug, Clone, Default)]
pub struct StreamReport {
    pub stats: StreamStats,
    /// Size of its WAV file.
    pub bytes: u64,
    /// Its WAV file is whole and playable: only then is it listed.
    pub playable: bool,
}

/// Is the client sending on this m-line? `inactive`, `recvonly`, port 0
/// and the RFC 2543 hold address `c=0.0.0.0` all mean no.
pub fn is_paused(m: &MediaOffer) -> bool {
    matches!(m.direction, Direction::Inactive | Direction::RecvOnly)
        || m.port == 0
        || m.connection.is_some_and(|ip| ip.is_unspecified())
}

/// A recorded m-line.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSlot {
    pub index: usize,
    pub label: String,
    pub codec: RtpMap,
    pub file: String,
    pub port: u16,
    pub paused: bool,
    pub participant_id: Option<String>,
    pub attribution: Option<Attribution>,
    /// SRTP (SDES) stream.
    pub srtp: bool,
}

/// What the server must do for one m-line of a re-offer.
#[derive(Debug, Clone, PartialEq)]
pub enum LineAction {
    /// Keep the stream on its port; maybe switch codec, maybe re-anchor.
    Keep {
        index: usize,
        port: u16,
        codec: Option<StreamSpec>,
        reanchor: bool,
        /// The stream is paused (answered `inactive`): drop its packets.
        paused: bool,
    },
    /// A new recordable m-line: bind a port and start a recorder to `file`.
    Start {
        index: usize,
        codec: RtpMap,
        file: String,
    },
    /// Answer with port 0.
    Reject { index: usize },
}

/// What one session may store, whatever its client sends: metadata
/// updates merged and kept beside the audio, their bytes, events,
/// participants. Past the bytes cap updates are merged but not kept; past
/// the updates cap they are ignored (the state stops growing); past the
/// events cap no event is logged. `limits_reached` in `metadata.json`
/// names each cap reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub updates: usize,
    pub bytes: u64,
    pub events: usize,
    pub participants: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            updates: 200,
            bytes: 8 << 20,
            events: 2000,
            participants: 256,
        }
    }
}

impl Limits {
    /// The limits of `[sip]` (participants: a fixed 256).
    pub fn of(c: &crate::config::SipConfig) -> Limits {
        Limits {
            updates: c.max_metadata_updates,
            bytes: c.max_metadata_bytes,
            events: c.max_events,
            ..Limits::default()
        }
    }
}

/// Names of the caps in `limits_reached`.
pub const LIMIT_UPDATES: &str = "metadata-updates";
pub const LIMIT_BYTES: &str = "metadata-bytes";
pub const LIMIT_EVENTS: &str = "events";
pub const LIMIT_PARTICIPANTS: &str = "participants";

/// What is known of a recording while its session runs, between the offer
/// and publication (the SIP side of the same session is the core's dialog,
/// its IO the server's running session).
#[derive(Debug)]
pub struct LiveRecording {
    pub meta: RecordingMeta,
    /// Merged metadata (RFC 7865 partial updates applied).
    pub metadata: Option<Metadata>,
    /// Every participant ever seen, by id, in order of appearance.
    seen: Vec<ParticipantMeta>,
    /// Recorded streams by m-line index.
    pub streams: BTreeMap<usize, StreamSlot>,
    /// Labels of every offered m-line, by index (also the unrecorded).
    labels: Vec<String>,
    updates: usize,
    /// Metadata updates merged so far.
    merged: usize,
    /// Bytes of metadata XML kept so far (initial document included).
    kept_bytes: u64,
    limits: Limits,
}

/// Longest name or aor kept for a participant (characters): metadata
/// allows any length, `metadata.json` and `incoming.json` need not.
const MAX_FIELD: usize = 512;

fn bounded(v: &Option<String>) -> Option<String> {
    v.as_ref().map(|s| match s.char_indices().nth(MAX_FIELD) {
        Some((cut, _)) => s[..cut].to_string(),
        None => s.clone(),
    })
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl LiveRecording {
    /// A new session from its initial offer; `meta` holds the ids, source
    /// and start time. The plan decides files and attribution.
    pub fn new(mut meta: RecordingMeta, offer: &RecordingOffer, plan: &MediaPlan) -> LiveRecording {
        meta.participants.clear();
        meta.metadata_error = offer.metadata_error.clone();
        let mut s = LiveRecording {
            meta,
            metadata: offer.metadata.clone(),
            seen: plan.participants.clone(),
            streams: BTreeMap::new(),
            labels: plan.streams.iter().map(|p| p.label.clone()).collect(),
            updates: 0,
            merged: 0,
            kept_bytes: offer.metadata_xml.as_ref().map_or(0, |x| x.len() as u64),
            limits: Limits::default(),
        };
        let started: DateTime<Utc> = s.meta.started_at.parse().unwrap_or_else(|_| Utc::now());
        for p in &plan.streams {
            let paused = offer.sdp.media.get(p.index).is_some_and(is_paused);
            if paused && p.file.is_some() {
                s.event(started, "paused", Some(&p.label), None);
            }
        }
        s
    }

    /// Applies other limits than the defaults.
    pub fn with_limits(mut self, limits: Limits) -> LiveRecording {
        self.limits = limits;
        self
    }

    fn limit_reached(&mut self, which: &str) {
        if !self.meta.limits_reached.iter().any(|l| l == which) {
            tracing::warn!(recording_id = %self.meta.recording_id, limit = which,
                "a recording reached a storage cap: more of it is merged but not kept");
            self.meta.limits_reached.push(which.to_string());
        }
    }

    /// Adds an event unless the recording holds its cap of them.
    fn push_event(&mut self, e: EventMeta) {
        if self.meta.events.len() >= self.limits.events {
            self.limit_reached(LIMIT_EVENTS);
            return;
        }
        self.meta.events.push(e);
    }

    /// The description known so far, for `incoming.json` (crash recovery):
    /// every participant seen and the planned files.
    pub fn snapshot(&self) -> RecordingMeta {
        let mut m = self.meta.clone();
        m.participants = self.seen.clone();
        m.files = self
            .streams
            .values()
            .map(|s| FileMeta {
                name: s.file.clone(),
                format: Format::Wav,
                labels: vec![s.label.clone()],
                ..FileMeta::default()
            })
            .collect();
        m
    }

    /// Registers a recorded stream (after its port was bound).
    pub fn add_stream(&mut self, slot: StreamSlot) {
        self.streams.insert(slot.index, slot);
    }

    fn event(&mut self, at: DateTime<Utc>, kind: &str, label: Option<&str>, detail: Option<&str>) {
        self.push_event(EventMeta {
            at: stamp(at),
            kind: kind.into(),
            label: label.map(str::to_string),
            detail: detail.map(str::to_string),
            ..EventMeta::default()
        });
    }

    /// Applies a metadata document from a re-INVITE, UPDATE or BYE.
    /// Returns true when it was a partial update with nothing to apply it
    /// to: the caller should request a full snapshot (RFC 7866 §9.2).
    pub fn apply_metadata(&mut self, at: DateTime<Utc>, xml: &str) -> bool {
        // Past the cap the client is flooding: what it sends is no longer
        // merged, so the session's state (and incoming.json) stops growing.
        if self.merged >= self.limits.updates {
            self.limit_reached(LIMIT_UPDATES);
            return false;
        }
        self.merged += 1;
        let update = match metadata::parse(xml) {
            Ok(m) => m,
            Err(e) => {
                self.meta.metadata_error = Some(format!("update: {e}"));
                return false;
            }
        };
        if update.is_snapshot_request {
            return false;
        }
        let detail = match update.datamode {
            DataMode::Complete => "complete",
            DataMode::Partial => "partial",
        };
        self.event(at, "metadata-update", None, Some(detail));
        let base_missing = self.metadata.is_none() && update.datamode == DataMode::Partial;
        let changes = match &mut self.metadata {
            Some(m) => m.apply(update),
            None => {
                let mut m = Metadata::default();
                let c = m.apply(update);
                self.metadata = Some(m);
                c
            }
        };
        let md = self.metadata.clone().unwrap_or_default();
        crate::filing::add_metadata_ids(&md, &mut self.meta.correlation);
        // Refresh everyone still described; newcomers join the list.
        for p in &md.participants {
            let labels = md.labels_sent_by(&p.id);
            let full = self.seen.len() >= self.limits.participants;
            match self.seen.iter_mut().find(|s| s.id == p.id) {
                Some(s) => {
                    if p.aor.is_some() {
                        s.aor = bounded(&p.aor);
                    }
                    if p.name.is_some() {
                        s.name = bounded(&p.name);
                    }
                    for l in labels {
                        if !s.labels.contains(&l) {
                            s.labels.push(l);
                        }
                    }
                }
                None if full => {
                    self.limit_reached(LIMIT_PARTICIPANTS);
                }
                None => self.seen.push(ParticipantMeta {
                    id: p.id.clone(),
                    aor: bounded(&p.aor),
                    name: bounded(&p.name),
                    labels,
                    file: None,
                }),
            }
        }
        // Stream attribution follows the metadata.
        for slot in self.streams.values_mut() {
            if let Some(p) = md.sender_of_label(&slot.label) {
                slot.participant_id = Some(p.id.clone());
                slot.attribution = Some(Attribution::Metadata);
            }
        }
        for c in changes {
            let kind = match c.kind {
                ChangeKind::ParticipantJoined => "participant-joined",
                ChangeKind::ParticipantLeft => "participant-left",
                ChangeKind::SendChanged => "send-changed",
                ChangeKind::SessionStopped => "session-stopped",
                ChangeKind::StreamAdded | ChangeKind::Snapshot => continue,
            };
            let aor = c
                .participant_id
                .as_ref()
                .and_then(|id| self.seen.iter().find(|p| &p.id == id))
                .and_then(|p| p.aor.clone());
            self.push_event(EventMeta {
                at: stamp(at),
                kind: kind.into(),
                participant_id: c.participant_id,
                aor,
                detail: c.at.map(|t| format!("metadata time {t}")),
                ..EventMeta::default()
            });
        }
        base_missing
    }

    /// The file name to keep the raw XML of an update of `bytes` bytes
    /// beside the recording, or None once the recording holds its cap of
    /// updates or bytes (the update is still merged).
    pub fn keep_update(&mut self, bytes: usize) -> Option<String> {
        if self.updates >= self.limits.updates {
            self.limit_reached(LIMIT_UPDATES);
            return None;
        }
        if self.kept_bytes + bytes as u64 > self.limits.bytes {
            self.limit_reached(LIMIT_BYTES);
            return None;
        }
        self.updates += 1;
        self.kept_bytes += bytes as u64;
        Some(format!("metadata-update-{}.xml", self.updates))
    }

    /// Decides, for each m-line of a re-offer, what happens to its stream,
    /// and logs pauses, resumes, codec changes and new streams.
    pub fn reoffer(&mut self, at: DateTime<Utc>, sdp: &SdpOffer) -> Vec<LineAction> {
        let mut actions = Vec::new();
        let md = self.metadata.clone();
        for (index, m) in sdp.media.iter().enumerate() {
            let label = m.label.clone().unwrap_or_else(|| format!("m{index}"));
            if index >= self.labels.len() {
                self.labels.push(label.clone());
            }
            let codec = m.recordable_codec();
            let paused = is_paused(m);
            let Some(slot) = self.streams.get_mut(&index) else {
                match codec.filter(|_| m.is_recordable()) {
                    Some(codec) => {
                        let sender = md.as_ref().and_then(|md| md.sender_of_label(&label));
                        let file = file_name(sender, &label, index, |n| {
                            self.streams.values().any(|s| s.file == n)
                        });
                        self.event(at, "stream-added", Some(&label), None);
                        actions.push(LineAction::Start { index, codec, file });
                    }
                    None => actions.push(LineAction::Reject { index }),
                }
                continue;
            };
            let mut change = None;
            if let Some(c) = &codec {
                if c.pt != slot.codec.pt || !c.name.eq_ignore_ascii_case(&slot.codec.name) {
                    change = Some(stream_spec(m));
                    slot.codec = c.clone();
                    let name = c.name.to_ascii_uppercase();
                    let label = slot.label.clone();
                    let e = EventMeta {
                        at: stamp(at),
                        kind: "codec-changed".into(),
                        label: Some(label),
                        detail: Some(name),
                        ..EventMeta::default()
                    };
                    self.push_event(e);
                }
            }
            let Some(slot) = self.streams.get_mut(&index) else {
                continue;
            };
            let was = slot.paused;
            slot.paused = paused;
            let label = slot.label.clone();
            let port = slot.port;
            if paused != was {
                self.event(
                    at,
                    if paused { "paused" } else { "resumed" },
                    Some(&label),
                    None,
                );
            }
            let reanchor = was && !paused || change.is_some();
            actions.push(LineAction::Keep {
                index,
                port,
                codec: change,
                reanchor,
                paused,
            });
        }
        actions
    }

    /// The final description, given what each stream's recorder reported.
    /// Only playable files are listed. A recorded stream that stopped
    /// early (its report has an error, its file is unusable, or it has no
    /// report) makes the status `truncated`, with `error` saying why.
    pub fn finish(
        mut self,
        ended_at: DateTime<Utc>,
        duration_ms: u64,
        status: Status,
        reports: &BTreeMap<usize, StreamReport>,
    ) -> RecordingMeta {
        let mut meta = std::mem::take(&mut self.meta);
        meta.status = status.into();
        meta.ended_at = stamp(ended_at);
        meta.duration_ms = duration_ms;
        let started: DateTime<Utc> = meta.started_at.parse().unwrap_or(ended_at);
        let mut errors = Vec::new();
        for (index, label) in self.labels.iter().enumerate() {
            let slot = self.streams.get(&index);
            let r = reports.get(&index).cloned().unwrap_or_default();
            let st = &r.stats;
            let error = slot.and_then(|_| match reports.get(&index) {
                Some(r) if r.stats.error.is_some() => r.stats.error.clone(),
                Some(r) if r.playable => None,
                Some(_) => Some("the file is unusable".to_string()),
                None => Some("the stream did not report".to_string()),
            });
            if let (Some(s), Some(e)) = (slot, &error) {
                errors.push(format!("{}: {e}", s.file));
            }
            meta.streams.push(StreamMeta {
                label: label.clone(),
                codec: slot
                    .map(|s| s.codec.name.to_ascii_uppercase())
                    .unwrap_or_else(|| "rejected".into()),
                participant_id: slot.and_then(|s| s.participant_id.clone()),
                attribution: slot.and_then(|s| s.attribution),
                packets_received: st.packets_received,
                packets_lost: st.packets_lost,
                packets_late: st.packets_late,
                packets_duplicated: st.packets_duplicated,
                packets_discarded: st.packets_discarded,
                jitter_ms: (st.jitter_ms * 100.0).round() / 100.0,
                codec_changes: st.codec_changes,
                srtp: slot.is_some_and(|s| s.srtp),
                packets_unauthenticated: st.packets_unauthenticated,
                packets_foreign: st.packets_foreign,
                sender_clock_ms: st.sender_clock_ms,
                error,
            });
            for d in &st.dtmf {
                meta.dtmf.push(DtmfMeta {
                    label: label.clone(),
                    digit: d.digit.to_string(),
                    at_ms: d.at_ms,
                    duration_ms: d.duration_ms,
                    at: stamp(started + chrono::Duration::milliseconds(d.at_ms as i64)),
                });
            }
            if let Some(s) = slot.filter(|_| r.playable) {
                let rate = st.sample_rate.max(1);
                meta.files.push(FileMeta {
                    name: s.file.clone(),
                    format: Format::Wav,
                    labels: vec![s.label.clone()],
                    duration_ms: st.samples_written * 1000 / u64::from(rate),
                    sample_rate: rate,
                    channels: 1,
                    bytes: r.bytes,
                    ..FileMeta::default()
                });
            }
        }
        if !errors.is_empty() {
            meta.status = Status::Truncated.into();
            meta.error = Some(errors.join("; "));
        }
        meta.dtmf.sort_by_key(|d| d.at_ms);
        for mut p in self.seen {
            // Labels this participant was seen sending on, from metadata or
            // from the stream attribution; its file is the first of those.
            for s in self.streams.values() {
                if s.participant_id.as_deref() == Some(p.id.as_str())
                    && !p.labels.contains(&s.label)
                {
                    p.labels.push(s.label.clone());
                }
            }
            p.file = p.labels.iter().find_map(|l| {
                self.streams
                    .values()
                    .find(|s| &s.label == l)
                    .map(|s| s.file.clone())
                    .filter(|f| meta.files.iter().any(|m| &m.name == f))
            });
            meta.participants.push(p);
        }
        meta
    }
}

#[cfg(test)]
mod tests;
