//! Recording rules (`[[rules]]`, first match wins): whether to record,
//! which side's DN is the Record DN (`record = "source"`, the default: the
//! DN the recording was requested for, usually the agent extension;
//! `"dest"`: the other side, usually the trunk DN), whose geo-location it
//! takes and in which formats; and the call's direction.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::directory::{Directory, DnEntry, Glob};
use crate::net::Cidr;
use crate::recording::{Direction, Format};

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
    pub dn: Option<Glob>,
    #[serde(default)]
    pub other_dn: Option<Glob>,
    #[serde(default)]
    pub record_dn: Option<Glob>,
    #[serde(default)]
    pub ani: Option<Glob>,
    #[serde(default)]
    pub dnis: Option<Glob>,
    /// `inbound` or `outbound`.
    #[serde(default)]
    pub direction: Option<String>,
    /// Source address of the recording client: an IP or a CIDR.
    #[serde(default)]
    pub source: Option<Source>,
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

/// A rule's `source`: an IP or CIDR, read once when the config is
/// loaded. Text that is neither matches nothing (as rules always read it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "String")]
pub struct Source {
    text: String,
    net: Option<Cidr>,
}

impl Source {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.net.is_some_and(|n| n.contains(addr))
    }
}

impl PartialEq for Source {
    fn eq(&self, other: &Source) -> bool {
        self.text == other.text
    }
}

impl Eq for Source {}

impl From<String> for Source {
    fn from(text: String) -> Source {
        Source {
            net: Cidr::parse(&text).ok(),
            text,
        }
    }
}

impl From<&str> for Source {
    fn from(text: &str) -> Source {
        Source::from(text.to_string())
    }
}

/// What a session is matched on.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub correlation: &'a BTreeMap<String, String>,
    pub direction: Direction,
    pub source: Option<IpAddr>,
    pub user_agent: &'a str,
}

static NO_CORRELATION: BTreeMap<String, String> = BTreeMap::new();

impl Default for Facts<'_> {
    fn default() -> Self {
        Facts {
            correlation: &NO_CORRELATION,
            direction: Direction::Unknown,
            source: None,
            user_agent: "",
        }
    }
}

impl Rule {
    fn matches(&self, f: &Facts<'_>, record_dn: Option<&str>) -> bool {
        let field = |pat: &Option<Glob>, val: Option<&str>| match pat {
            None => true,
            Some(p) => val.is_some_and(|v| p.matches(v)),
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
                .is_none_or(|d| d.eq_ignore_ascii_case(f.direction.as_str()))
            && self
                .source
                .as_ref()
                .is_none_or(|net| f.source.is_some_and(|a| net.contains(a)))
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
    pub direction: Direction,
    pub formats: Option<Vec<Format>>,
}

/// `outbound` when the calling number is our own DN (the DN the recording
/// is for, or an extension in the directory), `inbound` when a caller
/// reached a dialled number, else `unknown`.
pub fn direction(c: &BTreeMap<String, String>, dir: &Directory<'_>) -> Direction {
    let ani = c.get("ani").map(String::as_str);
    let own = |d: &str| {
        Some(d) == c.get("dn").map(String::as_str)
            || Some(d) == c.get("recorddn").map(String::as_str)
            || dir.lookup(d).is_some_and(|e| e.kind == "extension")
    };
    match (ani, c.get("dnis")) {
        (Some(a), _) if own(a) => Direction::Outbound,
        (Some(_), _) | (None, Some(_)) => Direction::Inbound,
        _ => Direction::Unknown,
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
        direction: f.direction,
        formats: rule.and_then(|r| r.formats.clone()),
    }
}
