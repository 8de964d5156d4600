//! Search filters over the index: what `srs list` flags (and the HTTP API)
//! ask for, turned into one SQL `WHERE` clause with bound parameters.
//!
//! Every filter is optional and they combine with AND. A filter value that is
//! empty (or only white space) is treated as absent, so that `?dn=` in a URL
//! means "no DN filter", not "no DN". Values are trimmed. No value is ever
//! formatted into the SQL text: each becomes a `?N` parameter.
//!
//! Case-insensitive comparisons (`call_uuid`, `geo`, `participant`) fold
//! ASCII letters only on SQLite (`NOCASE` and `lower()`); on PostgreSQL
//! they compare `lower()`s (served by indexes on `lower(column)`), which
//! also folds non-ASCII letters.

use super::db::{Dialect, Value};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// `limit` when none is given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: usize = 1000;

/// Filters of a search, all optional, combined with AND. Results are newest
/// first (`started_at`, then `recording_id`, descending).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Exact Record DN (`record_dn` of the metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_dn: Option<String>,
    /// Exact match of any DN that took part ([`crate::recording::RecordingMeta::dns`]):
    /// the Record DN, correlation `recorddn`/`dn`/`otherdn`/`ani`/`dnis`/`agentid`,
    /// and the user part of every participant's aor, later joiners included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    /// Case-insensitive substring of a participant's aor or name, or of the
    /// aor of a participant event (`participant-joined`, `participant-left`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// Exact, case-insensitive `correlation["calluuid"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_uuid: Option<String>,
    /// Exact `correlation["ani"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ani: Option<String>,
    /// Exact `correlation["dnis"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dnis: Option<String>,
    /// Exact, case-insensitive `geo_location`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo: Option<String>,
    /// Started at or after: RFC 3339, or `YYYY-MM-DD` (from 00:00 UTC that day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Started at or before: RFC 3339, or `YYYY-MM-DD` (inclusive of that whole UTC day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Exact `status` (`complete`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `true`: only recordings under legal hold; `false`: only those
    /// without (`crate::lifecycle`). Absent or empty: both.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_bool"
    )]
    pub held: Option<bool>,
    /// Page size: [`DEFAULT_LIMIT`] if absent, at most [`MAX_LIMIT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Matching recordings to skip (paging), 0 if absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    /// Issue 14: exact `attached_data` pairs, all required (`attached.KEY=VALUE`
    /// in the API, `--attached KEY=VALUE` in the CLI; not a query-string
    /// field of its own, the API reads them before the rest).
    #[serde(default, skip_deserializing, skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<(String, String)>,
}

/// `held=true|false|1|0` (an empty value is absent, like every filter).
fn optional_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Given {
        Bool(bool),
        Text(String),
    }
    match <Option<Given> as serde::Deserialize>::deserialize(d)? {
        None => Ok(None),
        Some(Given::Bool(b)) => Ok(Some(b)),
        Some(Given::Text(t)) => match t.trim() {
            "" => Ok(None),
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "invalid held: expected true or false, got {other:?}"
            ))),
        },
    }
}

/// Why a [`Query`] is not valid. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// `since` or `until` is neither RFC 3339 nor `YYYY-MM-DD`.
    #[error("invalid {field}: expected an RFC 3339 time or YYYY-MM-DD, got {value:?}")]
    BadTime { field: &'static str, value: String },
    /// An `attached.KEY=VALUE` filter without a key.
    #[error("invalid attached: expected attached.KEY=VALUE with a key")]
    BadAttached,
    /// `limit` is larger than [`MAX_LIMIT`].
    #[error("invalid limit: at most {max}, got {got}")]
    LimitTooLarge { got: usize, max: usize },
}

/// A `WHERE` clause over `recordings r` (`1` when there is no filter) and
/// the values of its `?N` parameters, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SqlFilter {
    pub where_sql: String,
    pub params: Vec<Value>,
}

/// [`Query::to_sql_by_dn`]: a search driven by a DN's entries.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DnFilter {
    /// Over `recording_dns d`.
    pub d_sql: String,
    /// Over `recordings r`, if any condition is left for it.
    pub r_sql: Option<String>,
    pub params: Vec<Value>,
}

/// One side of a time range, as compared with the stored `started_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bound {
    /// `started_at >= value`
    AtOrAfter(String),
    /// `started_at <= value`
    AtOrBefore(String),
    /// `started_at < value`
    Before(String),
    /// No bound (a `YYYY-MM-DD` until on the last representable day).
    None,
}

/// RFC 3339 UTC with milliseconds: the form `started_at` is stored in.
pub(crate) fn utc_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn day_start(d: NaiveDate) -> Option<String> {
    d.and_hms_opt(0, 0, 0).map(|t| utc_millis(t.and_utc()))
}

fn parse_bound(field: &'static str, value: &str, until: bool) -> Result<Bound, QueryError> {
    let bad = || QueryError::BadTime {
        field,
        value: value.to_string(),
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        let t = utc_millis(t.with_timezone(&Utc));
        return Ok(if until {
            Bound::AtOrBefore(t)
        } else {
            Bound::AtOrAfter(t)
        });
    }
    let d = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())?;
    if until {
        Ok(match d.succ_opt().and_then(day_start) {
            Some(next) => Bound::Before(next),
            None => Bound::None,
        })
    } else {
        day_start(d).map(Bound::AtOrAfter).ok_or_else(bad)
    }
}

/// A `since` (or, with `until`, an `until`) value as a condition on
/// `column`, a column of RFC 3339 UTC times with milliseconds (the form
/// [`utc_millis`] writes), its value pushed onto `params`. Same forms as
/// [`Query::since`] and [`Query::until`]; `None` for an empty value.
pub(crate) fn time_condition(
    column: &str,
    field: &'static str,
    value: &str,
    until: bool,
    params: &mut Vec<Value>,
) -> Result<Option<String>, QueryError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let (op, t) = match parse_bound(field, value, until)? {
        Bound::AtOrAfter(t) => (">=", t),
        Bound::AtOrBefore(t) => ("<=", t),
        Bound::Before(t) => ("<", t),
        Bound::None => return Ok(None),
    };
    params.push(Value::Text(t));
    Ok(Some(format!("{column} {op} ?{}", params.len())))
}

/// A filter value: trimmed, `None` if absent or empty.
fn value(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Query {
    /// Checks `since`, `until` and `limit`; the error names the field.
    pub fn validate(&self) -> Result<(), QueryError> {
        self.bounds().map(|_| ())?;
        if self.attached.iter().any(|(k, _)| k.trim().is_empty()) {
            return Err(QueryError::BadAttached);
        }
        if let Some(l) = self.limit {
            if l > MAX_LIMIT {
                return Err(QueryError::LimitTooLarge {
                    got: l,
                    max: MAX_LIMIT,
                });
            }
        }
        Ok(())
    }

    /// The page size that applies: `limit`, else [`DEFAULT_LIMIT`].
    pub fn effective_limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT)
    }

    /// The number of matches skipped: `offset`, else 0.
    pub fn effective_offset(&self) -> usize {
        self.offset.unwrap_or(0)
    }

    fn bounds(&self) -> Result<(Bound, Bound), QueryError> {
        let since = match value(&self.since) {
            Some(v) => parse_bound("since", v, false)?,
            None => Bound::None,
        };
        let until = match value(&self.until) {
            Some(v) => parse_bound("until", v, true)?,
            None => Bound::None,
        };
        Ok((since, until))
    }

    /// The `WHERE` clause over `recordings r` with its parameters.
    pub(crate) fn to_sql(&self, dialect: Dialect) -> Result<SqlFilter, QueryError> {
        let (where_sql, _, params) = self.build(dialect, false)?;
        Ok(SqlFilter { where_sql, params })
    }

    /// With a `dn` filter, the search driven by the DN's entries in
    /// `recording_dns d` (schema step 7): `d_sql` over `d` (the DN and the
    /// time range, on the start time stored next to it), `r_sql` the other
    /// conditions over `recordings r` (`None`: there are none, and neither
    /// the page's ids nor the count need a recording's row). `None`
    /// without a `dn` filter.
    pub(crate) fn to_sql_by_dn(&self, dialect: Dialect) -> Result<Option<DnFilter>, QueryError> {
        if value(&self.dn).is_none() {
            return Ok(None);
        }
        let (r_sql, d_sql, params) = self.build(dialect, true)?;
        Ok(Some(DnFilter {
            d_sql,
            r_sql: (r_sql != "TRUE").then_some(r_sql),
            params,
        }))
    }

    /// The conditions over `r` and, when `by_dn`, those over `d` (the DN
    /// and the time range), with their parameters.
    fn build(
        &self,
        dialect: Dialect,
        by_dn: bool,
    ) -> Result<(String, String, Vec<Value>), QueryError> {
        self.validate()?;
        let mut conds: Vec<String> = Vec::new();
        let mut d_conds: Vec<String> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        // Pushes a parameter and returns its `?N` placeholder.
        let mut bind = |v: &str| -> String {
            params.push(Value::Text(v.to_string()));
            format!("?{}", params.len())
        };
        if let Some(v) = value(&self.dn) {
            let p = bind(v);
            if by_dn {
                d_conds.push(format!("d.dn = {p}"));
            } else {
                // IN rather than EXISTS: the planner starts from the DN's
                // index. recording_dns has the call events' DNs too.
                conds.push(format!(
                    "r.recording_id IN (SELECT d.recording_id FROM recording_dns d WHERE d.dn = {p})"
                ));
            }
        }
        if let Some(v) = value(&self.record_dn) {
            conds.push(format!("r.record_dn = {}", bind(v)));
        }
        for (k, v) in &self.attached {
            // Issue 14: one indexed lookup on (key, value) per pair.
            let (k, v) = (bind(k.trim()), bind(v));
            conds.push(format!(
                "r.recording_id IN (SELECT a.recording_id FROM recording_attached a WHERE a.key = {k} AND a.value = {v})"
            ));
        }
        if let Some(v) = value(&self.participant) {
            let p = bind(v);
            conds.push(format!(
                "(EXISTS (SELECT 1 FROM participants p
                          WHERE p.recording_id = r.recording_id
                            AND (instr(lower(p.aor), lower({p})) > 0
                                 OR instr(lower(p.name), lower({p})) > 0))
                  OR EXISTS (SELECT 1 FROM events e
                             WHERE e.recording_id = r.recording_id
                               AND instr(lower(e.aor), lower({p})) > 0))"
            ));
        }
        if let Some(v) = value(&self.call_uuid) {
            let p = bind(v);
            conds.push(match dialect {
                Dialect::Sqlite => format!("r.call_uuid = {p} COLLATE NOCASE"),
                Dialect::Postgres => format!("lower(r.call_uuid) = lower({p})"),
            });
        }
        if let Some(v) = value(&self.ani) {
            conds.push(format!("r.ani = {}", bind(v)));
        }
        if let Some(v) = value(&self.dnis) {
            conds.push(format!("r.dnis = {}", bind(v)));
        }
        if let Some(v) = value(&self.geo) {
            let p = bind(v);
            conds.push(match dialect {
                Dialect::Sqlite => format!("r.geo_location = {p} COLLATE NOCASE"),
                Dialect::Postgres => format!("lower(r.geo_location) = lower({p})"),
            });
        }
        if let Some(v) = value(&self.status) {
            conds.push(format!("r.status = {}", bind(v)));
        }
        match self.held {
            Some(true) => {
                conds.push("r.recording_id IN (SELECT h.recording_id FROM holds h)".into())
            }
            Some(false) => {
                conds.push("r.recording_id NOT IN (SELECT h.recording_id FROM holds h)".into())
            }
            None => {}
        }
        let (since, until) = self.bounds()?;
        let (time, column) = if by_dn {
            (&mut d_conds, "d.started_at")
        } else {
            (&mut conds, "r.started_at")
        };
        for b in [since, until] {
            match b {
                Bound::AtOrAfter(t) => time.push(format!("{column} >= {}", bind(&t))),
                Bound::AtOrBefore(t) => time.push(format!("{column} <= {}", bind(&t))),
                Bound::Before(t) => time.push(format!("{column} < {}", bind(&t))),
                Bound::None => {}
            }
        }
        let join = |c: Vec<String>| {
            if c.is_empty() {
                "TRUE".to_string()
            } else {
                c.join("\n   AND ")
            }
        };
        Ok((join(conds), join(d_conds), params))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_limits() {
        let q = Query::default();
        assert_eq!(q.validate(), Ok(()));
        assert_eq!(q.effective_limit(), DEFAULT_LIMIT);
        assert_eq!(q.effective_offset(), 0);
        let f = q.to_sql(Dialect::Sqlite).unwrap();
        assert_eq!(f.where_sql, "TRUE");
        assert!(f.params.is_empty());
        let q = Query {
            limit: Some(MAX_LIMIT),
            ..Default::default()
        };
        assert_eq!(q.validate(), Ok(()));
        let q = Query {
            limit: Some(MAX_LIMIT + 1),
            ..Default::default()
        };
        let e = q.validate().unwrap_err();
        assert!(e.to_string().contains("limit"), "{e}");
    }

    #[test]
    fn bad_times_name_the_field() {
        for (q, field) in [
            (
                Query {
                    since: Some("yesterday".into()),
                    ..Default::default()
                },
                "since",
            ),
            (
                Query {
                    until: Some("2026-02-30".into()),
                    ..Default::default()
                },
                "until",
            ),
        ] {
            let e = q.validate().unwrap_err();
            assert!(
                matches!(&e, QueryError::BadTime { field: f, .. } if *f == field),
                "{e:?}"
            );
            assert!(e.to_string().contains(field), "{e}");
            assert!(q.to_sql(Dialect::Sqlite).is_err());
        }
    }

    #[test]
    fn time_bounds_are_normalised_utc() {
        let q = Query {
            since: Some("2026-03-01T10:00:00+01:00".into()),
            until: Some("2026-03-01".into()),
            ..Default::default()
        };
        let f = q.to_sql(Dialect::Sqlite).unwrap();
        assert_eq!(
            f.params,
            vec![
                Value::Text("2026-03-01T09:00:00.000Z".into()),
                Value::Text("2026-03-02T00:00:00.000Z".into()),
            ]
        );
        assert!(
            f.where_sql.contains("r.started_at >= ?1"),
            "{}",
            f.where_sql
        );
        assert!(f.where_sql.contains("r.started_at < ?2"), "{}", f.where_sql);

        let q = Query {
            since: Some("2026-03-01".into()),
            until: Some("2026-03-01T23:00:00Z".into()),
            ..Default::default()
        };
        let f = q.to_sql(Dialect::Sqlite).unwrap();
        assert_eq!(
            f.params,
            vec![
                Value::Text("2026-03-01T00:00:00.000Z".into()),
                Value::Text("2026-03-01T23:00:00.000Z".into()),
            ]
        );
        assert!(
            f.where_sql.contains("r.started_at <= ?2"),
            "{}",
            f.where_sql
        );
    }

    #[test]
    fn values_are_parameters_never_sql_text() {
        let evil = "x' OR '1'='1";
        let q = Query {
            record_dn: Some(evil.into()),
            dn: Some(evil.into()),
            participant: Some(evil.into()),
            call_uuid: Some(evil.into()),
            ani: Some(evil.into()),
            dnis: Some(evil.into()),
            geo: Some(evil.into()),
            status: Some(evil.into()),
            ..Default::default()
        };
        let f = q.to_sql(Dialect::Sqlite).unwrap();
        assert!(!f.where_sql.contains('\''), "{}", f.where_sql);
        assert_eq!(f.params.len(), 8);
        assert!(f.params.iter().all(|p| *p == Value::Text(evil.into())));
    }

    #[test]
    fn empty_values_are_no_filter() {
        let q = Query {
            dn: Some("  ".into()),
            since: Some(String::new()),
            record_dn: Some(" 1001 ".into()),
            ..Default::default()
        };
        let f = q.to_sql(Dialect::Sqlite).unwrap();
        assert_eq!(f.params, vec![Value::Text("1001".into())]);
    }

    #[test]
    fn deserialises_from_a_query_string_shape() {
        let q: Query = serde_json::from_value(serde_json::json!({
            "dn": "7002", "limit": 5, "since": "2026-03-01"
        }))
        .unwrap();
        assert_eq!(q.dn.as_deref(), Some("7002"));
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.effective_limit(), 5);
    }
}
