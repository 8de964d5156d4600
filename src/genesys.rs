//! Correlation ids, the DN directory and recording rules: what ties a
//! recording to the contact-centre call (Genesys above all), and under
//! which DN it is filed.
//!
//! - [`correlation`] collects ids from every place they travel: the
//!   Request-URI and To parameters of Genesys record legs (`recorddn`,
//!   `calluuid`, `dn`, `otherdn`, `agentid`, `connid`, `ani`, `dnis`, ...),
//!   `X-Genesys-*` headers, metadata extension data (the Acme
//!   `apkt:request-uri` holding the whole record URI, AudioCodes
//!   `GenesysUUID`) and other vendors' ids (Avaya UCID, Cisco-Guid,
//!   Session-ID, Acme `ucid`, Sonus `callData`, BroadWorks `callID`).
//! - [`Directory`] says what a DN is (extension, trunk, route point...) and
//!   where (geo-location, site). A DN missing from it is filed all the same.
//! - [`Rules`] (first match wins) decide whether to record, which side's
//!   DN is the Record DN (`record = "source"`, the default: the DN the
//!   recording was requested for, usually the agent extension; `"dest"`:
//!   the other side, usually the trunk DN) and whose geo-location it takes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use crate::net::Cidr;
use crate::recording::Format;
use crate::sip::message::Message;
use crate::siprec::metadata::Metadata;

/// URI and To parameters of Genesys record legs, by canonical key.
const GENESYS_PARAMS: &[(&str, &str)] = &[
    ("recorddn", "recorddn"),
    ("calluuid", "calluuid"),
    ("dn", "dn"),
    ("otherdn", "otherdn"),
    ("agentid", "agentid"),
    ("connid", "connid"),
    ("ani", "ani"),
    ("dnis", "dnis"),
    ("media-id", "media_id"),
    ("datetime", "datetime"),
    ("gvp-tenant-id", "gvp_tenant_id"),
    ("sipsappname", "sipsappname"),
    ("geo-location", "geo_location"),
    ("geo_location", "geo_location"),
];

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

/// A value fit to store and show: printable, trimmed, at most 256 chars.
fn clean(v: &str) -> Option<String> {
    let v: String = v
        .trim()
        .trim_matches('"')
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect();
    (!v.is_empty()).then_some(v)
}

/// `;key=value` parameters of a URI or header value, lower-case keys.
/// Parameters inside a URI's user part are not taken.
fn params(text: &str) -> Vec<(String, String)> {
    let text = text.trim().trim_start_matches('<');
    let after_host = match text.find('@') {
        Some(i) => &text[i..],
        None => text,
    };
    after_host
        .split([';', '>', '?', '&'])
        .skip(1)
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

/// Takes the Genesys parameters of a record URI into `out` (first value wins).
fn take_genesys_params(uri: &str, out: &mut BTreeMap<String, String>) {
    let ps = params(uri);
    for (name, key) in GENESYS_PARAMS {
        if let Some((_, v)) = ps.iter().find(|(k, _)| k == name) {
            if let Some(v) = clean(v) {
                out.entry((*key).to_string()).or_insert(v);
            }
        }
    }
    // `sip:record=<id>@recorder`: the Genesys recording id.
    let user = uri
        .trim()
        .trim_start_matches('<')
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or("");
    if let Some(id) = user.strip_prefix("record=") {
        if let Some(v) = clean(id) {
            out.entry("genesys_record_id".into()).or_insert(v);
        }
    }
}

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

/// A DN's entry in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnEntry {
    /// The DN, or a pattern with `*` (any run of characters) and `?` (one).
    pub dn: String,
    /// `extension`, `trunk`, `route-point`, `acd-position`, ...
    pub kind: String,
    #[serde(default)]
    pub geo_location: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
}

/// Glob match with `*` and `?`.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The DN directory: exact entries first, then patterns in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory<'a> {
    entries: &'a [DnEntry],
}

impl<'a> Directory<'a> {
    pub fn new(entries: &'a [DnEntry]) -> Self {
        Directory { entries }
    }

    pub fn lookup(&self, dn: &str) -> Option<&'a DnEntry> {
        self.entries.iter().find(|e| e.dn == dn).or_else(|| {
            self.entries
                .iter()
                .find(|e| e.dn.contains(['*', '?']) && glob(&e.dn, dn))
        })
    }
}

/// Which side's DN is the Record DN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordSide {
    /// The DN the recording was requested for (`recorddn`, else `dn`):
    /// usually the agent extension. Genesys `record=source`.
    #[default]
    Source,
    /// The other side (`otherdn`): usually the trunk DN. Genesys
    /// `record=dest`.
    Dest,
}

/// One recording rule. Every `match` field given must match (glob
/// patterns); the first rule that matches decides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub dn: Option<String>,
    #[serde(default)]
    pub other_dn: Option<String>,
    #[serde(default)]
    pub record_dn: Option<String>,
    #[serde(default)]
    pub ani: Option<String>,
    #[serde(default)]
    pub dnis: Option<String>,
    /// `inbound` or `outbound`.
    #[serde(default)]
    pub direction: Option<String>,
    /// Source address of the recording client: an IP or a CIDR.
    #[serde(default)]
    pub source: Option<String>,
    /// Text the client's User-Agent (or Server) header contains, any case.
    #[serde(default)]
    pub vendor: Option<String>,
    /// `source` (default) or `dest`.
    #[serde(default)]
    pub record: RecordSide,
    /// false: answer the session cleanly but record nothing.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Output formats for matching recordings (default: `output.formats`).
    #[serde(default)]
    pub formats: Option<Vec<Format>>,
    /// A fixed geo-location for matching recordings.
    #[serde(default)]
    pub geo_location: Option<String>,
}

fn yes() -> bool {
    true
}

/// Is `addr` inside `cidr` (`10.0.0.0/8`, `2001:db8::/32`, or one address)?
/// Text that is not an IP or CIDR matches nothing.
pub fn in_cidr(addr: IpAddr, cidr: &str) -> bool {
    Cidr::parse(cidr).is_ok_and(|net| net.contains(addr))
}

/// What a session is matched on.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub correlation: &'a BTreeMap<String, String>,
    pub direction: &'a str,
    pub source: Option<IpAddr>,
    pub user_agent: &'a str,
}

static NO_CORRELATION: BTreeMap<String, String> = BTreeMap::new();

impl Default for Facts<'_> {
    fn default() -> Self {
        Facts {
            correlation: &NO_CORRELATION,
            direction: "unknown",
            source: None,
            user_agent: "",
        }
    }
}

impl Rule {
    fn matches(&self, f: &Facts<'_>, record_dn: Option<&str>) -> bool {
        let field = |pat: &Option<String>, val: Option<&str>| match pat {
            None => true,
            Some(p) => val.is_some_and(|v| glob(p, v)),
        };
        let c = |k: &str| f.correlation.get(k).map(String::as_str);
        field(&self.dn, c("dn"))
            && field(&self.other_dn, c("otherdn"))
            && field(&self.record_dn, record_dn)
            && field(&self.ani, c("ani"))
            && field(&self.dnis, c("dnis"))
            && self
                .direction
                .as_ref()
                .is_none_or(|d| d.eq_ignore_ascii_case(f.direction))
            && self
                .source
                .as_ref()
                .is_none_or(|cidr| f.source.is_some_and(|a| in_cidr(a, cidr)))
            && self.vendor.as_ref().is_none_or(|v| {
                f.user_agent
                    .to_ascii_lowercase()
                    .contains(&v.to_ascii_lowercase())
            })
    }
}

/// The decision for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filing {
    pub record: bool,
    pub rule: Option<String>,
    pub record_dn: Option<String>,
    pub record_dn_kind: Option<String>,
    pub geo_location: Option<String>,
    pub direction: String,
    pub formats: Option<Vec<Format>>,
}

/// `outbound` when the calling number is our own DN (the DN the recording
/// is for, or an extension in the directory), `inbound` when a caller
/// reached a dialled number, else `unknown`.
pub fn direction(c: &BTreeMap<String, String>, dir: &Directory<'_>) -> &'static str {
    let ani = c.get("ani").map(String::as_str);
    let own = |d: &str| {
        Some(d) == c.get("dn").map(String::as_str)
            || Some(d) == c.get("recorddn").map(String::as_str)
            || dir.lookup(d).is_some_and(|e| e.kind == "extension")
    };
    match (ani, c.get("dnis")) {
        (Some(a), _) if own(a) => "outbound",
        (Some(_), _) | (None, Some(_)) => "inbound",
        _ => "unknown",
    }
}

/// Applies the rules (first match wins; no rule: record, `source`).
pub fn file(rules: &[Rule], directory: &[DnEntry], f: &Facts<'_>) -> Filing {
    let dir = Directory::new(directory);
    let c = |k: &str| f.correlation.get(k).cloned();
    let side_dn = |side: RecordSide| match side {
        RecordSide::Source => c("recorddn").or_else(|| c("dn")),
        RecordSide::Dest => c("otherdn").or_else(|| c("recorddn")),
    };
    // The rule's own record_dn pattern is matched against the DN its side gives.
    let rule = rules
        .iter()
        .find(|r| r.matches(f, side_dn(r.record).as_deref()));
    let side = rule.map(|r| r.record).unwrap_or_default();
    let record_dn = side_dn(side);
    let entry = record_dn.as_deref().and_then(|d| dir.lookup(d));
    let geo_location = rule
        .and_then(|r| r.geo_location.clone())
        .or_else(|| entry.and_then(|e| e.geo_location.clone()))
        .or_else(|| c("geo_location"));
    Filing {
        record: rule.is_none_or(|r| r.enabled),
        rule: rule.map(|r| r.name.clone()),
        record_dn_kind: record_dn
            .as_ref()
            .map(|_| entry.map_or_else(|| "unknown".to_string(), |e| e.kind.clone())),
        record_dn,
        geo_location,
        direction: f.direction.to_string(),
        formats: rule.and_then(|r| r.formats.clone()),
    }
}

#[cfg(test)]
mod tests;
