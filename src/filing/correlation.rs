//! Correlation ids: what ties a recording to the contact-centre call,
//! collected from every place they travel: the Request-URI and To
//! parameters of Genesys record legs ([`super::genesys`]), `X-Genesys-*`
//! headers, metadata extension data (the Acme `apkt:request-uri` holding
//! the whole record URI, AudioCodes `GenesysUUID`) and other vendors' ids
//! (Avaya UCID, Cisco-Guid, Session-ID, Acme `ucid`, Sonus `callData`,
//! BroadWorks `callID`).

use std::collections::BTreeMap;

use super::genesys::take_genesys_params;
use super::values::clean;
use crate::sip::message::Message;
use crate::siprec::metadata::Metadata;

/// Headers of other vendors (and Genesys) with their canonical key.
const HEADERS: &[(&str, &str)] = &[
    ("X-Genesys-geo-location", "geo_location"),
    ("X-Genesys-CallUUID", "calluuid"),
    ("X-Genesys-Call-UUID", "calluuid"),
    ("X-Genesys-AgentId", "agentid"),
    ("X-Genesys-Agent-Id", "agentid"),
    ("X-Genesys-ConversationId", "conversation_id"),
    ("X-Genesys-Conversation-Id", "conversation_id"),
    ("X-Genesys-GVP-Session-ID", "gvp_session_id"),
    ("Cisco-Guid", "cisco_guid"),
    ("Cisco-Gucid", "cisco_gucid"),
    ("Session-ID", "session_id"),
    ("X-Acme-Call-ID", "acme_call_id"),
    ("User-to-User", "uui"),
    ("X-BroadWorks-Correlation-Info", "broadworks_correlation"),
    ("X-Avaya-UCID", "ucid"),
];

/// Metadata extension leaves with their canonical key.
const EXTENSIONS: &[(&str, &str)] = &[
    ("GenesysUUID", "calluuid"),
    ("AvayaUCID", "ucid"),
    ("ucid", "ucid"),
    ("gcid", "sonus_gcid"),
    ("callid", "vendor_call_id"),
    ("callID", "broadworks_call_id"),
];

/// Correlation ids of a recording session, from its INVITE and metadata.
pub fn correlation(invite: &Message, metadata: Option<&Metadata>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(uri) = invite.request_uri() {
        take_genesys_params(uri, &mut out);
    }
    if let Some(to) = invite.header("To") {
        take_genesys_params(to, &mut out);
    }
    for (name, key) in HEADERS {
        if let Some(v) = invite.header(name).and_then(clean) {
            out.entry((*key).to_string()).or_insert(v);
        }
    }
    // Every other X-Genesys-* header, under its own name.
    for h in &invite.headers {
        if let Some(rest) = h
            .name
            .get(..10)
            .filter(|p| p.eq_ignore_ascii_case("x-genesys-"))
            .map(|_| &h.name[10..])
        {
            let key = format!("x_genesys_{}", rest.to_ascii_lowercase().replace('-', "_"));
            if let Some(v) = clean(&h.value) {
                out.entry(key).or_insert(v);
            }
        }
    }
    if let Some(md) = metadata {
        add_metadata_ids(md, &mut out);
    }
    out
}

/// Ids carried in metadata extension data (also from later updates): the
/// Acme `apkt:request-uri` holding a Genesys record URI, AudioCodes
/// `GenesysUUID`, UCIDs, Sonus `callData`, BroadWorks `callID`. Keys
/// already known are kept.
pub fn add_metadata_ids(md: &Metadata, out: &mut BTreeMap<String, String>) {
    for (leaf, value) in md.extension_values() {
        if leaf.eq_ignore_ascii_case("request-uri") && value.contains("record=") {
            take_genesys_params(&value, out);
            continue;
        }
        if let Some((_, key)) = EXTENSIONS.iter().find(|(n, _)| *n == leaf) {
            let v = value.split(';').next().unwrap_or(&value);
            if let Some(v) = clean(v) {
                out.entry((*key).to_string()).or_insert(v);
            }
        }
    }
}
