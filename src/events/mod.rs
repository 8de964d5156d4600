//! Call events from the contact centre (issue 14; docs/genesys.md, Call
//! events): what a CTI connector posts to `POST /api/v1/call-events`, how
//! it is checked, and how events are tied to recordings.
//!
//! - [`parse_events`]: the body of a post, one object or an array, checked
//!   field by field; the first bad field refuses the whole request
//!   ([`EventError`] names it), so nothing of it is stored.
//! - [`associate`]: which stored events belong to one recording, a pure
//!   function of the recording's keys and the candidate events (the
//!   matching order and time window are in its doc and docs/genesys.md).
//! - [`merge_attached`]: the recording's `attached_data`, the latest value
//!   of each key.
//! - [`store`]: the tables of the index, the candidates of a recording and
//!   its links (SQL); [`worker`]: the thread that stores posts, links them,
//!   writes `call-events.json` into the drop and keeps the webhook outbox.

pub mod store;
pub mod worker;

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most events in one post.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
/// Most bytes of one event's `user_data` (keys and values): T-Lib's
/// configurable maximum, 65,535 bytes packed.
pub const MAX_USER_DATA_BYTES: usize = 65_536;
/// Longest `event` name.
pub const MAX_EVENT_NAME: usize = 128;
/// Longest value of the other named fields.
pub const MAX_FIELD_LEN: usize = 512;
/// How long before a recording's start an event may be tied to it by
/// ConnID alone (ringing, queueing, IVR before the agent answers).
pub const CONN_ID_WINDOW_BEFORE: Duration = Duration::hours(4);
/// How long after a recording's end an event may be tied to it by ConnID
/// alone (after-call work, disposition and wrap-up data).
pub const CONN_ID_WINDOW_AFTER: Duration = Duration::hours(24);

/// The optional text fields of an event, by their API names.
pub const TEXT_FIELDS: [&str; 10] = [
    "call_uuid",
    "conn_id",
    "previous_conn_id",
    "this_dn",
    "other_dn",
    "this_queue",
    "agent_id",
    "ani",
    "dnis",
    "call_type",
];

/// Names the server adds to a stored event (see [`StoredEvent`]); a post
/// may not use them.
pub const RESERVED: [&str; 2] = ["event_id", "received_at"];

/// One call event, as posted and checked: the named fields, and every
/// other field kept as it came (`extra`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    /// T-Lib name (`EventEstablished`, ...) or free text.
    pub event: String,
    /// When it happened, RFC 3339 UTC with milliseconds (now if not given).
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn_id: Option<String>,
    /// The ConnID this one replaced (`EventPartyChanged` after a transfer
    /// or conference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_conn_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub this_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_dn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub this_queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ani: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnis: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_type: Option<String>,
    /// T-Lib UserData (attached data): key-value pairs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_data: BTreeMap<String, String>,
    /// Every other field, as it came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CallEvent {
    fn text_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "call_uuid" => &mut self.call_uuid,
            "conn_id" => &mut self.conn_id,
            "previous_conn_id" => &mut self.previous_conn_id,
            "this_dn" => &mut self.this_dn,
            "other_dn" => &mut self.other_dn,
            "this_queue" => &mut self.this_queue,
            "agent_id" => &mut self.agent_id,
            "ani" => &mut self.ani,
            "dnis" => &mut self.dnis,
            "call_type" => &mut self.call_type,
            _ => return None,
        })
    }

    /// The DNs a search by `dn` finds this event's recordings by.
    pub fn dns(&self) -> impl Iterator<Item = &str> {
        [&self.this_dn, &self.other_dn, &self.agent_id]
            .into_iter()
            .filter_map(|v| v.as_deref())
    }

    /// The event time (always valid once parsed; `None` for a row written
    /// by hand).
    pub fn at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A call event as a recording's JSON shows it: the server's id for it
/// (arrival order) and when it arrived, then the event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: i64,
    pub received_at: String,
    #[serde(flatten)]
    pub event: CallEvent,
}

/// Why a post is refused (400): which event and field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{field}: {message}", index.map(|i| format!("event [{i}]: ")).unwrap_or_default())]
pub struct EventError {
    /// The event's position in an array (`None`: one object, or the body).
    pub index: Option<usize>,
    /// The field: `body`, `event`, `user_data.KEY`, ...
    pub field: String,
    pub message: String,
}

fn bad(index: Option<usize>, field: impl Into<String>, message: impl Into<String>) -> EventError {
    EventError {
        index,
        field: field.into(),
        message: message.into(),
    }
}

/// RFC 3339 UTC with milliseconds: the form every time is stored in, so
/// text order is time order.
pub fn utc_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Checks a post: one event object or an array of 1 to
/// [`MAX_EVENTS_PER_REQUEST`]. Text is trimmed and an empty text is
/// absent; `now` is the time of events without one. The first bad field
/// refuses everything.
pub fn parse_events(body: &[u8], now: DateTime<Utc>) -> Result<Vec<CallEvent>, EventError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(None, "body", format!("not JSON: {e}")))?;
    match v {
        Value::Object(o) => Ok(vec![parse_event(o, None, now)?]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(bad(None, "body", "an empty array: no event"));
            }
            if items.len() > MAX_EVENTS_PER_REQUEST {
                return Err(bad(
                    None,
                    "body",
                    format!(
                        "{} events: at most {MAX_EVENTS_PER_REQUEST} per request",
                        items.len()
                    ),
                ));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(o) => parse_event(o, Some(i), now),
                    _ => Err(bad(Some(i), "body", "expected a JSON object")),
                })
                .collect()
        }
        _ => Err(bad(
            None,
            "body",
            "expected a JSON object or an array of them",
        )),
    }
}

fn text(
    v: Value,
    index: Option<usize>,
    field: &str,
    max: usize,
) -> Result<Option<String>, EventError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let t = s.trim();
            if t.chars().count() > max {
                return Err(bad(index, field, format!("longer than {max} characters")));
            }
            if t.chars().any(|c| c.is_control()) {
                return Err(bad(index, field, "contains control characters"));
            }
            Ok((!t.is_empty()).then(|| t.to_string()))
        }
        _ => Err(bad(index, field, "expected a string")),
    }
}

fn parse_event(
    mut o: Map<String, Value>,
    index: Option<usize>,
    now: DateTime<Utc>,
) -> Result<CallEvent, EventError> {
    for r in RESERVED {
        if o.contains_key(r) {
            return Err(bad(index, r, "reserved: the server sets it"));
        }
    }
    let mut e = CallEvent::default();
    match o.remove("event") {
        None => return Err(bad(index, "event", "required")),
        Some(v) => match text(v, index, "event", MAX_EVENT_NAME)? {
            Some(name) => e.event = name,
            None => return Err(bad(index, "event", "required (empty)")),
        },
    }
    e.time = match o.remove("time") {
        None | Some(Value::Null) => utc_millis(now),
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => utc_millis(t.with_timezone(&Utc)),
            Err(_) => {
                return Err(bad(
                    index,
                    "time",
                    format!("expected an RFC 3339 time, got {s:?}"),
                ))
            }
        },
        Some(_) => return Err(bad(index, "time", "expected an RFC 3339 time string")),
    };
    for name in TEXT_FIELDS {
        if let Some(v) = o.remove(name) {
            let value = text(v, index, name, MAX_FIELD_LEN)?;
            if let Some(slot) = e.text_mut(name) {
                *slot = value;
            }
        }
    }
    if e.call_uuid.is_none() && e.conn_id.is_none() {
        return Err(bad(
            index,
            "call_uuid",
            "at least one of call_uuid and conn_id is required",
        ));
    }
    match o.remove("user_data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ud)) => {
            let mut bytes = 0usize;
            for (k, v) in ud {
                let field = format!("user_data.{k}");
                if k.trim().is_empty() {
                    return Err(bad(index, "user_data", "an empty key"));
                }
                let Value::String(s) = v else {
                    return Err(bad(index, field, "expected a string value"));
                };
                bytes += k.len() + s.len();
                if bytes > MAX_USER_DATA_BYTES {
                    return Err(bad(
                        index,
                        "user_data",
                        format!("larger than {MAX_USER_DATA_BYTES} bytes"),
                    ));
                }
                e.user_data.insert(k, s);
            }
        }
        Some(_) => {
            return Err(bad(
                index,
                "user_data",
                "expected an object of string values",
            ))
        }
    }
    e.extra = o;
    Ok(e)
}

/// What [`associate`] needs of a recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingKeys {
    /// `correlation["calluuid"]`.
    pub call_uuid: Option<String>,
    /// `correlation["connid"]`.
    pub conn_id: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl RecordingKeys {
    /// The keys of a recording's metadata.
    pub fn of(meta: &crate::recording::RecordingMeta) -> RecordingKeys {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let key = |k: &str| {
            meta.correlation
                .get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        RecordingKeys {
            call_uuid: key("calluuid"),
            conn_id: key("connid"),
            started_at: t(&meta.started_at),
            ended_at: t(&meta.ended_at).or(t(&meta.started_at)),
        }
    }

    /// The time window of matching by ConnID: from
    /// [`CONN_ID_WINDOW_BEFORE`] before the start to
    /// [`CONN_ID_WINDOW_AFTER`] after the end (unbounded on a side whose
    /// time is unknown).
    pub fn window(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (
            self.started_at.map(|t| t - CONN_ID_WINDOW_BEFORE),
            self.ended_at.map(|t| t + CONN_ID_WINDOW_AFTER),
        )
    }

    /// Whether `at` is inside [`RecordingKeys::window`].
    pub fn in_window(&self, at: Option<DateTime<Utc>>) -> bool {
        let (from, to) = self.window();
        match at {
            None => true,
            Some(at) => from.is_none_or(|f| at >= f) && to.is_none_or(|t| at <= t),
        }
    }
}

/// What [`associate`] needs of a stored event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    pub id: i64,
    pub at: Option<DateTime<Utc>>,
    pub call_uuid: Option<String>,
    pub conn_id: Option<String>,
    pub previous_conn_id: Option<String>,
}

/// A ConnID as compared: ASCII lower case (T-Lib prints them in hex, some
/// connectors in upper case).
pub fn conn_key(c: &str) -> String {
    c.trim().to_ascii_lowercase()
}

/// Which of `events` belong to the recording `rec`, in the order given.
///
/// Matching order (docs/genesys.md):
/// 1. **CallUUID**: an event and a recording that both have one match if
///    it is the same (any case), whenever the event happened: the CallUUID
///    never changes and is never reused. Different CallUUIDs never match,
///    whatever their ConnIDs say.
/// 2. **ConnID** otherwise: the recording's ConnID, followed through
///    `previous_conn_id` (a transfer or conference gives the call a new
///    ConnID; the event announcing it carries both) in both directions, and
///    the ConnIDs of the events matched by CallUUID. An event whose
///    `conn_id` or `previous_conn_id` is in that chain matches if it
///    happened inside the recording's window ([`RecordingKeys::window`]:
///    4 h before its start to 24 h after its end), since ConnIDs are only
///    unique for a while.
/// 3. Nothing else matches (a DN alone is not enough).
pub fn associate(rec: &RecordingKeys, events: &[Candidate]) -> Vec<i64> {
    let uuid_match = |e: &Candidate| match (&rec.call_uuid, &e.call_uuid) {
        (Some(r), Some(c)) => Some(r.eq_ignore_ascii_case(c)),
        _ => None,
    };
    let mut chain: HashSet<String> = HashSet::new();
    if let Some(c) = &rec.conn_id {
        chain.insert(conn_key(c));
    }
    for e in events.iter().filter(|e| uuid_match(e) == Some(true)) {
        for c in [&e.conn_id, &e.previous_conn_id].into_iter().flatten() {
            chain.insert(conn_key(c));
        }
    }
    // Edges of the chain: events that could belong to this recording (no
    // other CallUUID, inside the window) and join two ConnIDs.
    let linkable = |e: &Candidate| uuid_match(e) != Some(false) && rec.in_window(e.at);
    let edges: Vec<(String, String)> = events
        .iter()
        .filter(|e| linkable(e))
        .filter_map(|e| {
            Some((
                conn_key(e.conn_id.as_ref()?),
                conn_key(e.previous_conn_id.as_ref()?),
            ))
        })
        .collect();
    // Closure: until no edge adds a ConnID (each round adds one at least).
    loop {
        let before = chain.len();
        for (a, b) in &edges {
            if chain.contains(a) || chain.contains(b) {
                chain.insert(a.clone());
                chain.insert(b.clone());
            }
        }
        if chain.len() == before {
            break;
        }
    }
    events
        .iter()
        .filter(|e| match uuid_match(e) {
            Some(m) => m,
            None => {
                linkable(e)
                    && [&e.conn_id, &e.previous_conn_id]
                        .into_iter()
                        .flatten()
                        .any(|c| chain.contains(&conn_key(c)))
            }
        })
        .map(|e| e.id)
        .collect()
}

/// The recording's `attached_data`: every event's `user_data` merged in
/// time order (then arrival order), the latest value of each key winning.
pub fn merge_attached(events: &[StoredEvent]) -> BTreeMap<String, String> {
    let mut sorted: Vec<&StoredEvent> = events.iter().collect();
    sorted.sort_by(|a, b| (&a.event.time, a.event_id).cmp(&(&b.event.time, b.event_id)));
    let mut out = BTreeMap::new();
    for e in sorted {
        for (k, v) in &e.event.user_data {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
