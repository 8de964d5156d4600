//! One recording session's bookkeeping, without IO: the merged metadata,
//! every participant ever seen, the recorded streams by m-line, the event
//! log, what a re-offer changes, and the final `metadata.json`.
//!
//! The server executes what this module decides (bind a port, tell a
//! stream its codec changed, re-anchor after a pause).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::media::recorder::{StreamSpec, StreamStats};
use crate::plan::{file_name, MediaPlan};
use crate::recording::{DtmfMeta, EventMeta, FileMeta, ParticipantMeta, RecordingMeta, StreamMeta};
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
    pub attribution: Option<&'static str>,
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

/// State of one session between its offer and its publication.
#[derive(Debug)]
pub struct Session {
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
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Session {
    /// A new session from its initial offer; `meta` holds the ids, source
    /// and start time. The plan decides files and attribution.
    pub fn new(mut meta: RecordingMeta, offer: &RecordingOffer, plan: &MediaPlan) -> Session {
        meta.participants.clear();
        meta.metadata_error = offer.metadata_error.clone();
        let mut s = Session {
            meta,
            metadata: offer.metadata.clone(),
            seen: plan.participants.clone(),
            streams: BTreeMap::new(),
            labels: plan.streams.iter().map(|p| p.label.clone()).collect(),
            updates: 0,
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
                format: "wav".into(),
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
        self.meta.events.push(EventMeta {
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
        crate::genesys::add_metadata_ids(&md, &mut self.meta.correlation);
        // Refresh everyone still described; newcomers join the list.
        for p in &md.participants {
            let labels = md.labels_sent_by(&p.id);
            match self.seen.iter_mut().find(|s| s.id == p.id) {
                Some(s) => {
                    if p.aor.is_some() {
                        s.aor = p.aor.clone();
                    }
                    if p.name.is_some() {
                        s.name = p.name.clone();
                    }
                    for l in labels {
                        if !s.labels.contains(&l) {
                            s.labels.push(l);
                        }
                    }
                }
                None => self.seen.push(ParticipantMeta {
                    id: p.id.clone(),
                    aor: p.aor.clone(),
                    name: p.name.clone(),
                    labels,
                    file: None,
                }),
            }
        }
        // Stream attribution follows the metadata.
        for slot in self.streams.values_mut() {
            if let Some(p) = md.sender_of_label(&slot.label) {
                slot.participant_id = Some(p.id.clone());
                slot.attribution = Some("metadata");
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
            self.meta.events.push(EventMeta {
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

    /// Keeps the raw XML of an update beside the recording: its file name.
    pub fn next_update_file(&mut self) -> String {
        self.updates += 1;
        format!("metadata-update-{}.xml", self.updates)
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
                    self.meta.events.push(EventMeta {
                        at: stamp(at),
                        kind: "codec-changed".into(),
                        label: Some(label),
                        detail: Some(name),
                        ..EventMeta::default()
                    });
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
    pub fn finish(
        mut self,
        ended_at: DateTime<Utc>,
        duration_ms: u64,
        status: &str,
        reports: &BTreeMap<usize, StreamReport>,
    ) -> RecordingMeta {
        let mut meta = std::mem::take(&mut self.meta);
        meta.status = status.into();
        meta.ended_at = stamp(ended_at);
        meta.duration_ms = duration_ms;
        let started: DateTime<Utc> = meta.started_at.parse().unwrap_or(ended_at);
        for (index, label) in self.labels.iter().enumerate() {
            let slot = self.streams.get(&index);
            let r = reports.get(&index).cloned().unwrap_or_default();
            let st = &r.stats;
            meta.streams.push(StreamMeta {
                label: label.clone(),
                codec: slot
                    .map(|s| s.codec.name.to_ascii_uppercase())
                    .unwrap_or_else(|| "rejected".into()),
                participant_id: slot.and_then(|s| s.participant_id.clone()),
                attribution: slot.and_then(|s| s.attribution.map(str::to_string)),
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
            if let Some(s) = slot {
                let rate = st.sample_rate.max(1);
                meta.files.push(FileMeta {
                    name: s.file.clone(),
                    format: "wav".into(),
                    labels: vec![s.label.clone()],
                    duration_ms: st.samples_written * 1000 / u64::from(rate),
                    sample_rate: rate,
                    channels: 1,
                    bytes: r.bytes,
                });
            }
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
            });
            meta.participants.push(p);
        }
        meta
    }
}

#[cfg(test)]
mod tests;
