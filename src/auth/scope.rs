//! Scopes: which recordings a token may see.
//!
//! A scope is a list of `KEY=PATTERN` items (`srs token add --scope`):
//!
//! | key | matches | case |
//! |---|---|---|
//! | `dn` | the recording's Record DN (`record_dn`) only: not the other DNs that took part | exact |
//! | `geo` | the recording's `geo_location` | ASCII letters in any case |
//! | `site` | the `site` of the Record DN's entry in the DN directory (`[[directory]]`), looked up when asked | ASCII letters in any case |
//!
//! Patterns are the rules' globs ([`crate::filing::glob`]): `*` any run
//! of characters, `?` one. Several items with the same key: any of them
//! (`--scope geo=paris --scope geo=lyon`: Paris or Lyon). Items with
//! different keys: all of them (`--scope geo=paris --scope dn=70*`:
//! Paris and a Record DN starting with 70). No item: every recording.
//!
//! A recording without the field a scope asks for (no Record DN, no
//! geo-location, a Record DN the directory does not place in a site) is
//! outside it: a scope only ever lets a token see less.
//!
//! Why the Record DN and not every DN of the call: a call transferred
//! from a Paris agent to a Lyon one is filed under one Record DN; a team
//! scoped to `dn=70*` must not read the other team's calls because one of
//! its agents appeared in them. Why the site is looked up when asked
//! rather than stored with the recording: the index has no site, and the
//! directory is the one source of truth; a DN moved to another site in
//! the directory moves its recordings with it.
//!
//! In SQL, the scope is one more condition over `recordings r`, with the
//! functions [`register_sql_functions`] installs on the connection.

use std::sync::Arc;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;

use crate::store::db::{Db, DbError, Dialect, Value};

use crate::filing::{glob, Directory, DnEntry};

/// Most items in one scope (a scope is a short list, not a data set).
pub const MAX_ITEMS: usize = 32;

/// A key's patterns, and the SQL of one pattern given its `?N`: without
/// wildcards, with them.
type KeySql<'a> = (&'a [String], fn(&str) -> String, fn(&str) -> String);

/// A scope item that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope {0:?}: expected KEY=PATTERN (dn=70*, geo=paris, site=par-1)")]
    Syntax(String),
    #[error("scope {item:?}: unknown key {key:?}: use dn, geo or site")]
    UnknownKey { item: String, key: String },
    #[error("scope {0:?}: empty pattern")]
    Empty(String),
    #[error("at most {MAX_ITEMS} scope items")]
    TooMany,
}

/// Which recordings a token may see (module doc). The default is every
/// recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Patterns of the Record DN (any of them).
    pub dn: Vec<String>,
    /// Patterns of the geo-location (any of them).
    pub geo: Vec<String>,
    /// Patterns of the Record DN's directory site (any of them).
    pub site: Vec<String>,
}

/// ASCII-case-insensitive glob.
fn iglob(pattern: &str, text: &str) -> bool {
    glob(&pattern.to_ascii_lowercase(), &text.to_ascii_lowercase())
}

fn has_wildcard(p: &str) -> bool {
    p.contains(['*', '?'])
}

impl Scope {
    /// Parses `KEY=PATTERN` items (blanks around either are ignored).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Scope, ScopeError> {
        if items.len() > MAX_ITEMS {
            return Err(ScopeError::TooMany);
        }
        let mut s = Scope::default();
        for item in items {
            let item = item.as_ref();
            let (k, p) = item
                .split_once('=')
                .ok_or_else(|| ScopeError::Syntax(item.to_string()))?;
            let (k, p) = (k.trim(), p.trim());
            if p.is_empty() {
                return Err(ScopeError::Empty(item.to_string()));
            }
            let list = match k {
                "dn" => &mut s.dn,
                "geo" => &mut s.geo,
                "site" => &mut s.site,
                _ => {
                    return Err(ScopeError::UnknownKey {
                        item: item.to_string(),
                        key: k.to_string(),
                    })
                }
            };
            if !list.iter().any(|x| x == p) {
                list.push(p.to_string());
            }
        }
        Ok(s)
    }

    /// The items, `KEY=PATTERN`, keys in the order dn, geo, site: what
    /// [`Scope::parse`] reads back.
    pub fn items(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, list) in [("dn", &self.dn), ("geo", &self.geo), ("site", &self.site)] {
            out.extend(list.iter().map(|p| format!("{k}={p}")));
        }
        out
    }

    /// Whether the scope lets every recording through.
    pub fn is_unrestricted(&self) -> bool {
        self.dn.is_empty() && self.geo.is_empty() && self.site.is_empty()
    }

    /// Whether a recording (or live session) with this Record DN and
    /// geo-location is inside the scope; `directory` gives the sites.
    pub fn matches(
        &self,
        record_dn: Option<&str>,
        geo: Option<&str>,
        directory: &[DnEntry],
    ) -> bool {
        let any = |list: &[String], value: Option<&str>, f: fn(&str, &str) -> bool| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|p| f(p, v)))
        };
        let site = || {
            record_dn
                .and_then(|dn| Directory::new(directory).lookup(dn))
                .and_then(|e| e.site.as_deref())
        };
        any(&self.dn, record_dn, glob)
            && any(&self.geo, geo, iglob)
            && (self.site.is_empty() || any(&self.site, site(), iglob))
    }

    /// The scope as one condition over `recordings r`, its parameters
    /// numbered from `?{first}`: `1` when unrestricted. A pattern without
    /// wildcards is an equality, which the columns' indexes serve.
    pub(crate) fn to_sql(&self, first: usize, dialect: Dialect) -> (String, Vec<Value>) {
        // PostgreSQL: srs_site is a function of the connection's own
        // temporary schema (register_sql_functions), and geo_location is
        // compared through lower() (there is no NOCASE).
        let pg = dialect == Dialect::Postgres;
        let mut params: Vec<Value> = Vec::new();
        let mut conds: Vec<String> = Vec::new();
        // (patterns, the condition for one without wildcards, with them)
        let keys: [KeySql<'_>; 3] = [
            (
                &self.dn,
                |p| format!("r.record_dn = {p}"),
                |p| format!("srs_glob({p}, r.record_dn)"),
            ),
            if pg {
                (
                    &self.geo,
                    |p| format!("lower(r.geo_location) = lower({p})"),
                    |p| format!("srs_iglob({p}, r.geo_location)"),
                )
            } else {
                (
                    &self.geo,
                    // geo_location is COLLATE NOCASE (ASCII), like srs_iglob.
                    |p| format!("r.geo_location = {p}"),
                    |p| format!("srs_iglob({p}, r.geo_location)"),
                )
            },
            if pg {
                (
                    &self.site,
                    |p| format!("srs_iglob({p}, pg_temp.srs_site(r.record_dn))"),
                    |p| format!("srs_iglob({p}, pg_temp.srs_site(r.record_dn))"),
                )
            } else {
                (
                    &self.site,
                    |p| format!("srs_iglob({p}, srs_site(r.record_dn))"),
                    |p| format!("srs_iglob({p}, srs_site(r.record_dn))"),
                )
            },
        ];
        for (patterns, exact, wild) in keys {
            if patterns.is_empty() {
                continue;
            }
            let alts: Vec<String> = patterns
                .iter()
                .map(|p| {
                    params.push(Value::Text(p.clone()));
                    let n = format!("?{}", first + params.len() - 1);
                    if has_wildcard(p) {
                        wild(&n)
                    } else {
                        exact(&n)
                    }
                })
                .collect();
            conds.push(format!("({})", alts.join(" OR ")));
        }
        if conds.is_empty() {
            ("TRUE".to_string(), params)
        } else {
            (conds.join(" AND "), params)
        }
    }
}

/// SQL text literal (quotes doubled; PostgreSQL's standard strings keep
/// backslashes as they are).
fn pg_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Installs on `db` what scoped queries call: `srs_glob(pattern, text)`,
/// `srs_iglob(pattern, text)` (ASCII case folded), both false on NULL, and
/// `srs_site(dn)`: the site of `dn`'s directory entry, or NULL.
///
/// On PostgreSQL the globs are functions of the schema
/// ([`crate::store::pg_schema`]); `srs_site` is written from the directory
/// into a function of this connection's temporary schema (exact entries
/// first, then patterns in order, as [`Directory::lookup`]).
pub fn register_sql_functions(db: &Db, directory: Arc<[DnEntry]>) -> Result<(), DbError> {
    let Some(conn) = db.as_sqlite() else {
        let mut cases = String::new();
        for e in directory.iter().filter(|e| !e.dn.is_pattern()) {
            cases.push_str(&format!(
                " WHEN dn = {} THEN {}",
                pg_literal(e.dn.as_str()),
                e.site.as_deref().map_or("NULL".into(), pg_literal)
            ));
        }
        for e in directory.iter().filter(|e| e.dn.is_pattern()) {
            cases.push_str(&format!(
                " WHEN srs_glob({}, dn) THEN {}",
                pg_literal(e.dn.as_str()),
                e.site.as_deref().map_or("NULL".into(), pg_literal)
            ));
        }
        let body = if cases.is_empty() {
            "SELECT NULL::TEXT".to_string()
        } else {
            format!("SELECT CASE{cases} END")
        };
        // A dollar-quote tag that the body cannot contain.
        let mut tag = String::from("srs_site");
        while body.contains(&format!("${tag}$")) {
            tag.push('x');
        }
        db.execute_batch(&format!(
            "CREATE OR REPLACE FUNCTION pg_temp.srs_site(dn TEXT) RETURNS TEXT
             LANGUAGE sql STABLE AS ${tag}${body}${tag}$"
        ))?;
        return Ok(());
    };
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    fn text<'a>(v: ValueRef<'a>) -> Option<&'a str> {
        match v {
            ValueRef::Text(t) => std::str::from_utf8(t).ok(),
            _ => None,
        }
    }
    conn.create_scalar_function("srs_glob", 2, flags, |ctx| {
        Ok(match (text(ctx.get_raw(0)), text(ctx.get_raw(1))) {
            (Some(p), Some(t)) => glob(p, t),
            _ => false,
        })
    })?;
    conn.create_scalar_function("srs_iglob", 2, flags, |ctx| {
        Ok(match (text(ctx.get_raw(0)), text(ctx.get_raw(1))) {
            (Some(p), Some(t)) => iglob(p, t),
            _ => false,
        })
    })?;
    conn.create_scalar_function("srs_site", 1, flags, move |ctx| {
        Ok(text(ctx.get_raw(0)).and_then(|dn| {
            Directory::new(&directory)
                .lookup(dn)
                .and_then(|e| e.site.clone())
        }))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> Vec<DnEntry> {
        let e = |dn: &str, site: Option<&str>| DnEntry {
            dn: dn.into(),
            kind: "extension".into(),
            geo_location: None,
            site: site.map(String::from),
        };
        vec![
            e("7001", Some("PAR-1")),
            e("7099", None),
            e("70*", Some("par-2")),
            e("71*", Some("lyon-1")),
        ]
    }

    #[test]
    fn parse_and_print() {
        let s = Scope::parse(&[
            "geo=paris",
            " dn = 70* ",
            "geo=lyon",
            "site=par-1",
            "geo=paris",
        ])
        .unwrap();
        assert_eq!(s.dn, ["70*"]);
        assert_eq!(s.geo, ["paris", "lyon"]);
        assert_eq!(s.site, ["par-1"]);
        assert_eq!(s.items(), ["dn=70*", "geo=paris", "geo=lyon", "site=par-1"]);
        assert_eq!(Scope::parse(&s.items()).unwrap(), s);
        assert!(Scope::parse::<&str>(&[]).unwrap().is_unrestricted());
        for (bad, what) in [
            ("geo", "KEY=PATTERN"),
            ("team=a", "unknown key"),
            ("dn=", "empty"),
            ("dn=  ", "empty"),
        ] {
            let e = Scope::parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains(what), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MAX_ITEMS).map(|i| format!("dn={i}")).collect();
        assert_eq!(Scope::parse(&many), Err(ScopeError::TooMany));
    }

    #[test]
    fn matching_in_rust() {
        let d = dir();
        let s = |items: &[&str]| Scope::parse(items).unwrap();
        let all = Scope::default();
        assert!(all.matches(None, None, &d));
        // dn: the Record DN, exact glob.
        assert!(s(&["dn=70*"]).matches(Some("7001"), None, &d));
        assert!(!s(&["dn=70*"]).matches(Some("7101"), None, &d));
        assert!(!s(&["dn=70*"]).matches(None, Some("paris"), &d));
        // Same key: any. Different keys: all.
        assert!(s(&["dn=70*", "dn=71*"]).matches(Some("7101"), None, &d));
        assert!(!s(&["dn=70*", "geo=paris"]).matches(Some("7001"), Some("lyon"), &d));
        assert!(s(&["dn=70*", "geo=paris"]).matches(Some("7001"), Some("PARIS"), &d));
        // geo: any ASCII case, globs.
        assert!(s(&["geo=emea-*"]).matches(None, Some("EMEA-Paris"), &d));
        assert!(!s(&["geo=paris"]).matches(None, Some("EMEA-Paris"), &d));
        // site: from the directory (exact entries first, then patterns).
        assert!(s(&["site=par-1"]).matches(Some("7001"), None, &d));
        assert!(!s(&["site=par-1"]).matches(Some("7002"), None, &d));
        assert!(s(&["site=par-*"]).matches(Some("7002"), None, &d));
        assert!(
            !s(&["site=par-*"]).matches(Some("7099"), None, &d),
            "no site"
        );
        assert!(
            !s(&["site=*"]).matches(Some("5000"), None, &d),
            "not listed"
        );
        assert!(!s(&["site=*"]).matches(None, None, &d));
    }

    /// The scope's SQL finds exactly what [`Scope::matches`] lets
    /// through, on SQLite and on PostgreSQL.
    #[test]
    fn sql_matches_rust() {
        crate::testkit::pg::each_backend("scope::sql_matches_rust", |at| {
            let ix = crate::store::Index::open_at(at).unwrap();
            sql_matches_rust_on(ix.conn());
        });
    }

    fn sql_matches_rust_on(conn: &Db) {
        register_sql_functions(conn, dir().into()).unwrap();
        let rows: &[(&str, Option<&str>, Option<&str>)] = &[
            ("a", Some("7001"), Some("Paris")),
            ("b", Some("7002"), Some("paris")),
            ("c", Some("7101"), Some("lyon")),
            ("d", Some("7099"), None),
            ("e", None, Some("paris")),
            ("f", Some("5000"), Some("EMEA-Paris")),
            ("g", Some("x' OR '1'='1"), None),
            ("h", Some("70_1"), Some("par%s")),
        ];
        for (id, dn, geo) in rows {
            conn.execute(
                "INSERT INTO recordings (recording_id, call_id, meta_json, record_dn, geo_location)
                 VALUES (?1, ?1, '{}', ?2, ?3)",
                crate::params![id, dn, geo],
            )
            .unwrap();
        }
        let scopes: &[&[&str]] = &[
            &[],
            &["dn=70*"],
            &["dn=7001"],
            &["dn=7001", "dn=71*"],
            &["dn=70?1"],
            &["geo=paris"],
            &["geo=PAR*"],
            &["geo=*paris"],
            &["geo=par%s"],
            &["site=par-1"],
            &["site=PAR-*"],
            &["site=*"],
            &["dn=70*", "geo=paris"],
            &["dn=70*", "site=par-2"],
            &["dn=x' OR '1'='1"],
            &["geo=%"],
            &["dn=70_1"],
        ];
        let d = dir();
        for items in scopes {
            let scope = Scope::parse(items).unwrap();
            // Parameters after two taken by a query.
            let (sql, params) = scope.to_sql(3, conn.dialect());
            let mut all = vec![Value::Integer(0), Value::Integer(0)];
            all.extend(params);
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT recording_id FROM recordings r WHERE ?1 = ?2 AND {sql} ORDER BY 1"
                ))
                .unwrap();
            let got: Vec<String> = stmt
                .query_map(&all, |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let want: Vec<String> = rows
                .iter()
                .filter(|(_, dn, geo)| scope.matches(*dn, *geo, &d))
                .map(|(id, _, _)| id.to_string())
                .collect();
            assert_eq!(got, want, "{:?} {items:?}: {sql}", conn.dialect());
        }
    }
}
