//! Retention rules (`[[retention]]`): how long recordings are kept.
//!
//! Each rule has match fields, like recording rules (`[[rules]]`, glob
//! patterns: `*` any run of characters, `?` one), and `days`. The first
//! rule every given field of which matches decides: the recording is due
//! once it started more than `days` days ago (`days = 0`: at once). A
//! recording no rule matches is kept forever. A held recording is never
//! deleted, whatever the rules say.
//!
//! Match fields, all optional, all given must match:
//! - `record_dn`: the Record DN;
//! - `dn`: any DN that took part (the index's DN set, as `srs list --dn`);
//! - `geo`: the geo-location (any case);
//! - `direction`: `inbound`, `outbound` or `unknown`;
//! - `source`: the recording client's address, an IP or CIDR;
//! - `vendor`: text the client's User-Agent contains (any case;
//!   recordings made before the User-Agent was kept match no vendor);
//! - `status`: the status (`complete`, `recovered`, `truncated`...);
//! - `attached.KEY`: a value attached to the call by call events (issue
//!   14): the latest value of the key ([`IndexAttached`], the index's
//!   `recording_attached`). A recording with no such value is not matched
//!   by the rule (the safe way: kept, or left to a later rule).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::filing::{Glob, Source};
use crate::recording::RecordingMeta;

/// One `[[retention]]` rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Named in the audit trail of each deletion it makes.
    pub name: String,
    /// Days a matching recording is kept after it started (0: none).
    pub days: u32,
    #[serde(default)]
    pub record_dn: Option<Glob>,
    #[serde(default)]
    pub dn: Option<Glob>,
    #[serde(default)]
    pub geo: Option<Glob>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub status: Option<Glob>,
    /// `attached = { KEY = "PATTERN" }`: values attached by call events.
    #[serde(default)]
    pub attached: BTreeMap<String, Glob>,
}

/// Values attached to a call by call events (issue 14): `(recording_id,
/// key) -> value`.
pub trait Attached {
    fn value(&self, recording_id: &str, key: &str) -> Option<String>;
}

/// The values call events attached, as the index keeps them (the latest
/// value of each key, `events::store`).
pub struct IndexAttached<'a>(pub &'a crate::store::db::Db);

impl Attached for IndexAttached<'_> {
    fn value(&self, recording_id: &str, key: &str) -> Option<String> {
        let r = self
            .0
            .prepare_cached(
                "SELECT value FROM recording_attached WHERE recording_id = ?1 AND key = ?2",
            )
            .and_then(|mut s| s.query_row(crate::params![recording_id, key], |r| r.get(0)));
        match r {
            Ok(v) => Some(v),
            Err(crate::store::db::DbError::NoRows) => None,
            Err(e) => {
                tracing::warn!(%recording_id, key, error = %e,
                    "retention: cannot read attached data; the rule does not match");
                None
            }
        }
    }
}

/// Nothing attached to any call (rules' unit tests).
pub struct NoAttached;

impl Attached for NoAttached {
    fn value(&self, _recording_id: &str, _key: &str) -> Option<String> {
        None
    }
}

/// Why the `[[retention]]` rules are not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retention rule {rule:?}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub message: String,
}

/// Checks what serde cannot: names given and unique, directions known.
pub fn validate(rules: &[RetentionRule]) -> Result<(), RuleError> {
    for (i, r) in rules.iter().enumerate() {
        let bad = |message: String| RuleError {
            rule: r.name.clone(),
            message,
        };
        if r.name.trim().is_empty() {
            return Err(bad("every [[retention]] rule needs a name".into()));
        }
        if rules[..i].iter().any(|o| o.name == r.name) {
            return Err(bad("two rules have this name".into()));
        }
        if let Some(d) = &r.direction {
            if !["inbound", "outbound", "unknown"].contains(&d.to_ascii_lowercase().as_str()) {
                return Err(bad(format!(
                    "direction {d:?}: use inbound, outbound or unknown"
                )));
            }
        }
        if let Some(s) = &r.source {
            if crate::net::Cidr::parse(s.as_str()).is_err() {
                return Err(bad(format!("source {:?} is not an IP or CIDR", s.as_str())));
            }
        }
    }
    Ok(())
}

impl RetentionRule {
    /// Whether every given field matches `m`.
    pub fn matches(&self, m: &RecordingMeta, attached: &dyn Attached) -> bool {
        let glob = |pat: &Option<Glob>, val: Option<&str>| match pat {
            None => true,
            Some(p) => val.is_some_and(|v| p.matches(v)),
        };
        let geo_ok = match &self.geo {
            None => true,
            Some(p) => m.geo_location.as_deref().is_some_and(|g| {
                Glob::new(p.as_str().to_ascii_lowercase()).matches(&g.to_ascii_lowercase())
            }),
        };
        let source_ok = self.source.as_ref().is_none_or(|net| {
            m.source
                .parse::<SocketAddr>()
                .map(|a| a.ip())
                .or_else(|_| m.source.parse())
                .is_ok_and(|ip| net.contains(ip))
        });
        glob(&self.record_dn, m.record_dn.as_deref())
            && self
                .dn
                .as_ref()
                .is_none_or(|p| m.dns().iter().any(|d| p.matches(d)))
            && geo_ok
            && self
                .direction
                .as_ref()
                .is_none_or(|d| d.eq_ignore_ascii_case(m.direction.as_deref().unwrap_or("unknown")))
            && source_ok
            && self.vendor.as_ref().is_none_or(|v| {
                m.user_agent
                    .as_deref()
                    .is_some_and(|ua| ua.to_ascii_lowercase().contains(&v.to_ascii_lowercase()))
            })
            && glob(&self.status, Some(m.status.as_str()))
            && self.attached.iter().all(|(k, p)| {
                attached
                    .value(&m.recording_id, k)
                    .is_some_and(|v| p.matches(&v))
            })
    }
}

/// The rule that decides for `m` (the first that matches), if any.
pub fn rule_for<'a>(
    rules: &'a [RetentionRule],
    m: &RecordingMeta,
    attached: &dyn Attached,
) -> Option<&'a RetentionRule> {
    rules.iter().find(|r| r.matches(m, attached))
}

/// When a recording that started at `started_at` is due under `days`:
/// `None` if `started_at` is not a time (never deleted by a rule: a
/// recording whose age is unknown is kept).
pub fn due_at(started_at: &str, days: u32) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = chrono::DateTime::parse_from_rfc3339(started_at).ok()?;
    Some(t.with_timezone(&chrono::Utc) + chrono::Duration::days(i64::from(days)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> RetentionRule {
        #[derive(Deserialize)]
        struct W {
            retention: Vec<RetentionRule>,
        }
        let w: W = toml::from_str(text).unwrap();
        validate(&w.retention).unwrap();
        w.retention.into_iter().next().unwrap()
    }

    fn rec() -> RecordingMeta {
        let mut m = RecordingMeta {
            recording_id: "r".into(),
            status: "complete".into(),
            started_at: "2026-01-01T10:00:00Z".into(),
            source: "10.1.2.3:5060".into(),
            record_dn: Some("7001".into()),
            geo_location: Some("Paris".into()),
            direction: Some("inbound".into()),
            user_agent: Some("Genesys GVP MCP 9.0".into()),
            ..Default::default()
        };
        m.correlation.insert("ani".into(), "+33100".into());
        m
    }

    #[test]
    fn every_field_given_must_match() {
        let m = rec();
        let none = &NoAttached;
        for (text, want) in [
            ("name = \"a\"\ndays = 1", true),
            ("name = \"a\"\ndays = 1\nrecord_dn = \"70*\"", true),
            ("name = \"a\"\ndays = 1\nrecord_dn = \"71*\"", false),
            ("name = \"a\"\ndays = 1\ndn = \"+33100\"", true),
            ("name = \"a\"\ndays = 1\ngeo = \"PAR*\"", true),
            ("name = \"a\"\ndays = 1\ndirection = \"Inbound\"", true),
            ("name = \"a\"\ndays = 1\ndirection = \"outbound\"", false),
            ("name = \"a\"\ndays = 1\nsource = \"10.0.0.0/8\"", true),
            ("name = \"a\"\ndays = 1\nsource = \"192.168.0.1\"", false),
            ("name = \"a\"\ndays = 1\nvendor = \"gvp\"", true),
            ("name = \"a\"\ndays = 1\nvendor = \"cisco\"", false),
            ("name = \"a\"\ndays = 1\nstatus = \"compl*\"", true),
            ("name = \"a\"\ndays = 1\nstatus = \"recovered\"", false),
            (
                "name = \"a\"\ndays = 1\nrecord_dn = \"7001\"\nstatus = \"recovered\"",
                false,
            ),
            // Nothing attached: a rule on attached data does not match.
            ("name = \"a\"\ndays = 1\nattached = { case = \"*\" }", false),
        ] {
            let r = rule(&format!("[[retention]]\n{text}\n"));
            assert_eq!(r.matches(&m, none), want, "{text}");
        }
        struct One;
        impl Attached for One {
            fn value(&self, _: &str, key: &str) -> Option<String> {
                (key == "case").then(|| "GDPR-7".into())
            }
        }
        let r = rule("[[retention]]\nname = \"a\"\ndays = 1\nattached = { case = \"GDPR-*\" }\n");
        assert!(r.matches(&m, &One));
    }

    #[test]
    fn bad_rules_are_named() {
        let rules: Vec<RetentionRule> = vec![RetentionRule {
            name: "x".into(),
            direction: Some("sideways".into()),
            ..Default::default()
        }];
        let e = validate(&rules).unwrap_err().to_string();
        assert!(e.contains("\"x\"") && e.contains("sideways"), "{e}");
        let twice = vec![
            RetentionRule {
                name: "x".into(),
                ..Default::default()
            };
            2
        ];
        assert!(validate(&twice).is_err());
        assert_eq!(
            due_at("2026-01-01T10:00:00+01:00", 2).unwrap().to_rfc3339(),
            "2026-01-03T09:00:00+00:00"
        );
        assert!(due_at("garbage", 0).is_none());
    }
}
