//! The media plan of a recording session: for each offered m-line, whether
//! it is recorded, with which codec, who sends on it (from the RFC 7865
//! `participantstreamassoc`), and the file it is written to.

use crate::recording::{Attribution, ParticipantMeta};
use crate::siprec::sdp::RtpMap;
use crate::siprec::RecordingOffer;

/// One offered m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStream {
    /// Index of the m-line in the offer.
    pub index: usize,
    /// `a=label`, or `m<index>` when the line has none.
    pub label: String,
    /// The codec we record, `None` when the line is rejected.
    pub codec: Option<RtpMap>,
    /// Participant sending on it, if known.
    pub participant_id: Option<String>,
    /// How the sender was found: `metadata`, `header`
    /// (X-Cisco-Recording-Participant) or `order` (inferred, see
    /// [`MediaPlan::from_offer`]).
    pub attribution: Option<Attribution>,
    /// File name inside the recording directory (recorded lines only).
    pub file: Option<String>,
}

/// Streams and participants of one session.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlan {
    pub streams: Vec<PlannedStream>,
    pub participants: Vec<ParticipantMeta>,
}

/// Lower-case `[a-z0-9-]` slug of at most 32 characters, for file names.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 32 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The user part of an AoR (`sip:alice@example.com` -> `alice`).
pub fn aor_user(aor: &str) -> &str {
    let s = aor
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .trim_start_matches("tel:");
    s.split(['@', ';']).next().unwrap_or(s)
}

impl MediaPlan {
    pub fn from_offer(offer: &RecordingOffer) -> MediaPlan {
        let md = offer.metadata.as_ref();
        let mut participants: Vec<ParticipantMeta> = md
            .map(|m| {
                m.participants
                    .iter()
                    .map(|p| ParticipantMeta {
                        id: p.id.clone(),
                        aor: p.aor.clone(),
                        name: p.name.clone(),
                        labels: m.labels_sent_by(&p.id),
                        file: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut used_names: Vec<String> = Vec::new();
        let mut streams = Vec::new();
        for (index, m) in offer.sdp.media.iter().enumerate() {
            let label = m.label.clone().unwrap_or_else(|| format!("m{index}"));
            let codec = m.is_recordable().then(|| m.recordable_codec()).flatten();
            let sender = md.and_then(|md| md.sender_of_label(&label));
            let participant_id = sender.map(|p| p.id.clone());
            let file = codec.as_ref().map(|_| {
                let name = file_name(sender, &label, index, |n| used_names.iter().any(|u| u == n));
                used_names.push(name.clone());
                name
            });
            if let (Some(pid), Some(f)) = (&participant_id, &file) {
                if let Some(p) = participants.iter_mut().find(|p| &p.id == pid) {
                    p.file.get_or_insert_with(|| f.clone());
                }
            }
            streams.push(PlannedStream {
                index,
                label,
                codec,
                attribution: participant_id.as_ref().map(|_| Attribution::Metadata),
                participant_id,
                file,
            });
        }
        // Metadata that names participants but no stream associations at
        // all (OpenSIPS as deployed at Connectel): OpenSIPS
        // lists the caller first and offers the caller's stream first, so
        // with as many participants as recorded streams, attribute by order
        // and say so (`attribution: "order"`).
        if let Some(m) = md {
            let recorded: Vec<usize> = (0..streams.len())
                .filter(|i| streams[*i].file.is_some())
                .collect();
            let no_assoc = m
                .participants
                .iter()
                .all(|p| p.send.is_empty() && p.recv.is_empty());
            if no_assoc && !recorded.is_empty() && recorded.len() == participants.len() {
                for (p, i) in participants.iter_mut().zip(recorded) {
                    let s = &mut streams[i];
                    s.participant_id = Some(p.id.clone());
                    s.attribution = Some(Attribution::Order);
                    p.labels = vec![s.label.clone()];
                    p.file = s.file.clone();
                }
            }
        }
        // Without metadata: participants from X-Cisco-Recording-Participant
        // (by m-line index), else one synthetic participant per stream.
        if md.is_none() {
            for (n, hp) in offer.header_participants.iter().enumerate() {
                let id = format!("header-{n}");
                let mut labels = Vec::new();
                let mut file = None;
                for s in streams
                    .iter_mut()
                    .filter(|s| hp.media_index.contains(&s.index))
                {
                    s.participant_id = Some(id.clone());
                    s.attribution = Some(Attribution::Header);
                    labels.push(s.label.clone());
                    if file.is_none() {
                        if let Some(f) = &mut s.file {
                            let user = slug(aor_user(&hp.aor));
                            if !user.is_empty() && f.starts_with("stream-") {
                                *f = format!("{user}-{}", &f["stream-".len()..]);
                            }
                            file = Some(f.clone());
                        }
                    }
                }
                participants.push(ParticipantMeta {
                    id,
                    aor: Some(hp.aor.clone()),
                    name: None,
                    labels,
                    file,
                });
            }
        }
        if md.is_none() {
            for s in streams
                .iter_mut()
                .filter(|s| s.file.is_some() && s.participant_id.is_none())
            {
                let id = format!("stream-{}", s.label);
                s.participant_id = Some(id.clone());
                participants.push(ParticipantMeta {
                    id,
                    aor: None,
                    name: None,
                    labels: vec![s.label.clone()],
                    file: s.file.clone(),
                });
            }
        }
        MediaPlan {
            streams,
            participants,
        }
    }
}

/// The WAV file name of a stream: `<sender>-<label>.wav` (sender from its
/// aor's user part or name, else `stream`), made unique with `-2`, `-3`...
/// against the names `taken` says are used. Only `[a-z0-9-]`: no remote
/// string reaches a path raw.
pub fn file_name(
    sender: Option<&crate::siprec::metadata::Participant>,
    label: &str,
    index: usize,
    taken: impl Fn(&str) -> bool,
) -> String {
    let who = sender
        .and_then(|p| p.aor.as_deref().map(aor_user).or(p.name.as_deref()))
        .map(slug)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "stream".into());
    let base = format!("{who}-{}", slug_or_index(label, index));
    let mut name = format!("{base}.wav");
    let mut n = 2;
    while taken(&name) {
        name = format!("{base}-{n}.wav");
        n += 1;
    }
    name
}

fn slug_or_index(label: &str, index: usize) -> String {
    let s = slug(label);
    if s.is_empty() {
        format!("m{index}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse;
    use crate::siprec::read_offer;
    use crate::testkit::{corpus_request, normalise_sip};

    fn plan_of(raw: &str) -> MediaPlan {
        let msg = parse(&normalise_sip(raw.as_bytes())).unwrap();
        MediaPlan::from_offer(&read_offer(&msg).unwrap())
    }

    #[test]
    fn opensips_generated_invite_attribution() {
        let p = plan_of(include_str!(
            "../tests/fixtures/corpus/opensips-generated-invite.sip"
        ));
        let labels: Vec<_> = p.streams.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["1", "0"]);
        let alice = p
            .participants
            .iter()
            .find(|x| x.name.as_deref() == Some("Alice"))
            .unwrap();
        assert_eq!(alice.aor.as_deref(), Some("sip:alice@127.0.0.1:5070"));
        assert_eq!(alice.labels, ["1"]);
        assert_eq!(alice.file.as_deref(), Some("alice-1.wav"));
        let bob = p
            .participants
            .iter()
            .find(|x| x.aor.as_deref() == Some("sip:bob@127.0.0.1:5060"))
            .unwrap();
        assert_eq!(bob.labels, ["0"]);
        assert_eq!(
            p.streams[1].participant_id.as_deref(),
            Some(bob.id.as_str())
        );
        assert_eq!(bob.file.as_deref(), Some("bob-0.wav"));
    }

    #[test]
    fn sipp_invite_attribution() {
        let p = plan_of(include_str!(
            "../tests/fixtures/corpus/sipp-generated-invite.sip"
        ));
        let files: Vec<_> = p.streams.iter().map(|s| s.file.clone().unwrap()).collect();
        assert_eq!(files, ["alice-1.wav", "bob-2.wav"]);
    }

    #[test]
    fn rfc7865_example_attribution() {
        // The RFC 7865 §8.1 snapshot as the metadata of a 4-line offer.
        let xml = include_str!("../tests/fixtures/corpus/ietf-rfc7865-complete-snapshot.xml");
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\na=label:96\r\na=sendonly\r\nm=video 6002 RTP/AVP 98\r\na=label:97\r\na=sendonly\r\n\
m=audio 6004 RTP/AVP 0\r\na=label:98\r\na=sendonly\r\nm=video 6006 RTP/AVP 98\r\na=label:99\r\na=sendonly\r\n";
        let offer = RecordingOffer {
            sdp: crate::siprec::sdp::parse_offer(sdp.as_bytes()).unwrap(),
            metadata_xml: Some(xml.into()),
            metadata: Some(crate::siprec::metadata::parse(xml).unwrap()),
            metadata_error: None,
            header_participants: vec![],
            is_siprec: true,
        };
        let p = MediaPlan::from_offer(&offer);
        let bob = p.streams[0].participant_id.clone().unwrap();
        assert_eq!(
            p.streams[1].participant_id.as_deref(),
            Some(bob.as_str()),
            "97 is Bob's video"
        );
        assert_ne!(p.streams[2].participant_id.as_deref(), Some(bob.as_str()));
        assert!(p.streams[1].file.is_none(), "video is not recorded");
        assert_eq!(p.streams[0].file.as_deref(), Some("bob-96.wav"));
    }

    #[test]
    fn cisco_network_based_recording_headers_name_the_participants() {
        // A CUBE NBR INVITE: SDP only, participants in headers (Cisco docs).
        let raw = "INVITE sip:22222@10.42.29.7:5060 SIP/2.0\n\
X-Cisco-Recording-Participant: sip:708090@10.42.30.5;media-index=\"0\"\n\
X-Cisco-Recording-Participant: sip:10000@10.42.30.32;media-index=\"1\"\n\
Content-Type: application/sdp\n\n\
v=0\no=- 6906 8069 IN IP4 9.13.40.249\ns=SIP Call\nc=IN IP4 9.13.40.249\nt=0 0\n\
m=audio 17070 RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=sendonly\nm=audio 17072 RTP/AVP 0\na=sendonly\n";
        let msg = parse(&corpus_request(raw, "nbr-1")).unwrap();
        let offer = read_offer(&msg).unwrap();
        assert!(offer.metadata.is_none());
        let p = MediaPlan::from_offer(&offer);
        assert_eq!(p.participants.len(), 2);
        assert_eq!(
            p.participants[0].aor.as_deref(),
            Some("sip:708090@10.42.30.5")
        );
        assert_eq!(p.participants[0].labels, ["m0"]);
        assert_eq!(p.participants[0].file.as_deref(), Some("708090-m0.wav"));
        assert_eq!(p.participants[1].labels, ["m1"]);
        assert_eq!(p.streams[1].participant_id.as_deref(), Some("header-1"));
    }

    #[test]
    fn unreadable_metadata_still_records_and_is_flagged() {
        let raw = include_str!("../tests/fixtures/corpus/sipp-generated-invite.sip").replace(
            "<recording xmlns",
            "<<<!DOCTYPE x [<!ENTITY a 'b'>]><recording xmlns",
        );
        let msg = parse(&normalise_sip(raw.as_bytes())).unwrap();
        let offer = read_offer(&msg).unwrap();
        assert!(offer.metadata.is_none());
        assert!(
            offer.metadata_error.is_some(),
            "the error is kept for metadata.json"
        );
        assert!(
            offer.metadata_xml.as_deref().unwrap().contains("DOCTYPE"),
            "raw XML kept"
        );
        let p = MediaPlan::from_offer(&offer);
        assert_eq!(
            p.streams.iter().filter(|s| s.file.is_some()).count(),
            2,
            "both streams recorded"
        );
    }

    #[test]
    fn no_metadata_gives_one_participant_per_stream() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\na=sendonly\r\n";
        let offer = RecordingOffer {
            sdp: crate::siprec::sdp::parse_offer(sdp.as_bytes()).unwrap(),
            metadata_xml: None,
            metadata: None,
            metadata_error: None,
            header_participants: vec![],
            is_siprec: false,
        };
        let p = MediaPlan::from_offer(&offer);
        assert_eq!(p.streams[0].label, "m0");
        assert_eq!(p.participants.len(), 1);
        assert_eq!(p.participants[0].file.as_deref(), Some("stream-m0.wav"));
        assert_eq!(slug("../../etc/x"), "etc-x");
    }
}
