//! How a session starts and how it ends, without IO: under which DN and
//! rule it is filed and the `RecordingMeta` it starts with, what a failed
//! start-up answers (which resource ran out, and when to retry), and the
//! status it is published with.

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::Config;
use crate::recording::{Format, RecordingMeta, Status};
use crate::sip::core::{EndReason, Peer};
use crate::sip::message::Message;
use crate::siprec::RecordingOffer;

/// What a new session is, before anything is allocated for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Opening {
    /// Its description so far (status `recording`).
    pub meta: RecordingMeta,
    /// false: a rule says not to record (answered inactive, no files).
    pub record: bool,
    /// Output formats (a rule may override `output.formats`).
    pub formats: Vec<Format>,
}

/// Files a new session: correlation ids, direction, the rule that matches
/// and the Record DN it gives, and the description it starts with.
pub fn open(
    cfg: &Config,
    peer: &Peer,
    invite: &Message,
    offer: &RecordingOffer,
    recording_id: String,
    now: DateTime<Utc>,
) -> Opening {
    use crate::filing;
    let correlation = filing::correlation(invite, offer.metadata.as_ref());
    let directory = filing::Directory::new(&cfg.directory);
    let direction = filing::direction(&correlation, &directory);
    let user_agent = invite
        .header("User-Agent")
        .or_else(|| invite.header("Server"))
        .unwrap_or_default();
    let decision = filing::file(
        &cfg.rules,
        &cfg.directory,
        &filing::Facts {
            correlation: &correlation,
            direction,
            source: Some(peer.addr.ip()),
            user_agent,
        },
    );
    let meta = RecordingMeta {
        recording_id,
        call_id: invite.call_id().unwrap_or_default().to_string(),
        status: Status::Recording.into(),
        started_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        source: peer.addr.to_string(),
        transport: peer.transport.as_str().into(),
        node: Some(cfg.node.id()),
        metadata_file: offer.metadata_xml.as_ref().map(|_| "metadata.xml".into()),
        record_dn: decision.record_dn.clone(),
        record_dn_kind: decision.record_dn_kind.clone(),
        geo_location: decision.geo_location.clone(),
        direction: Some(decision.direction.as_str().to_string()),
        rule: decision.rule.clone(),
        correlation,
        // For the retention rules' `vendor` (issue 15).
        user_agent: Some(user_agent.to_string()).filter(|u| !u.is_empty()),
        ..RecordingMeta::default()
    };
    Opening {
        meta,
        record: decision.record,
        formats: decision
            .formats
            .unwrap_or_else(|| cfg.output.formats.clone()),
    }
}

/// The status a session that ended for `reason` is published with (a
/// stream that stopped early makes it `truncated` later, in
/// [`super::LiveRecording::finish`]).
pub fn end_status(reason: EndReason) -> Status {
    match reason {
        EndReason::Bye | EndReason::Local => Status::Complete,
        EndReason::SessionExpired => Status::CompleteSessionExpired,
        EndReason::AckTimeout => Status::CompleteNoAck,
        EndReason::Cancelled | EndReason::Refused => Status::Cancelled,
    }
}

/// The answer to a session that cannot be started: code, reason phrase and
/// the Retry-After seconds, if the resource may come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub retry_after: Option<u32>,
}

impl Refusal {
    /// The answer when the recording cannot be stored, by the OS error:
    /// descriptors and disk space come back; other storage errors need an
    /// operator.
    pub fn storage(errno: Option<i32>) -> Refusal {
        let (code, reason, retry_after) = match errno {
            Some(libc::EMFILE | libc::ENFILE) => (503, "Out Of Descriptors", Some(10)),
            Some(libc::ENOSPC | libc::EDQUOT) => (503, "Insufficient Storage", Some(60)),
            _ => (500, "Cannot Store Recording", None),
        };
        Refusal {
            code,
            reason,
            retry_after,
        }
    }
}

/// Why a stream could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StreamStartError {
    #[error("no free media port")]
    NoPort,
    #[error("no file descriptor left for the media sockets")]
    NoDescriptors,
    #[error(transparent)]
    File(#[from] crate::media::recorder::RecorderError),
    /// Starting it failed unexpectedly (a bug: it panicked).
    #[error("the stream's start-up failed unexpectedly")]
    Internal,
}

impl StreamStartError {
    /// The SIP answer: which resource ran out, and when to retry.
    pub fn refusal(&self) -> Refusal {
        match self {
            StreamStartError::NoPort => Refusal {
                code: 503,
                reason: "No Media Port Available",
                retry_after: Some(5),
            },
            StreamStartError::NoDescriptors => Refusal::storage(Some(libc::EMFILE)),
            StreamStartError::File(e) => Refusal::storage(e.os_error()),
            StreamStartError::Internal => Refusal::storage(None),
        }
    }
}

/// Why a recorded session could not be started (nothing of it is left).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the recording directory: {0}")]
    Directory(#[from] crate::store::DropError),
    #[error("cannot keep the metadata XML: {0}")]
    MetadataXml(std::io::Error),
    #[error("cannot start a stream: {0}")]
    Stream(#[from] StreamStartError),
    #[error("cannot write incoming.json: {0}")]
    Incoming(std::io::Error),
    /// The start-up itself failed (a bug: it panicked).
    #[error("the start-up failed unexpectedly")]
    Internal,
}

impl StartError {
    /// The SIP answer to the offer.
    pub fn refusal(&self) -> Refusal {
        match self {
            StartError::Directory(crate::store::DropError::Io { source, .. }) => {
                Refusal::storage(source.raw_os_error())
            }
            StartError::Directory(_) => Refusal::storage(None),
            StartError::MetadataXml(e) | StartError::Incoming(e) => {
                Refusal::storage(e.raw_os_error())
            }
            StartError::Stream(e) => e.refusal(),
            StartError::Internal => Refusal::storage(None),
        }
    }
}

/// Where media goes, for the answer: the advertised address, else the bound
/// one, else `route` (the local address the kernel uses towards the
/// client, found by the caller).
pub fn media_ip(
    advertised: Option<IpAddr>,
    bind: IpAddr,
    route: impl FnOnce() -> Option<IpAddr>,
) -> IpAddr {
    advertised
        .or_else(|| (!bind.is_unspecified()).then_some(bind))
        .or_else(route)
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

#[cfg(test)]
mod tests;
