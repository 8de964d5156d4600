//! API tokens in the index (table `tokens`, schema version 3): added,
//! listed and revoked by `srs token` and the admin API, loaded by the
//! running server every second ([`TokenSet`]).
//!
//! Only the SHA-256 of a secret is stored. A revoked token keeps its row
//! (the audit trail names it) with `revoked_at` set; its name can then be
//! given to a new token. Revoked tokens count as tokens: revoking every
//! token locks the API, it never opens it again.

use std::collections::HashMap;
use std::sync::Arc;

use crate::params;
use crate::store::db::{Db, OptionalExt};

use super::{hash_secret, new_secret, RandomError, Role, Scope, ScopeError};

/// Longest token name.
pub const MAX_NAME: usize = 64;

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token name {0:?}: use 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    BadName(String),
    #[error("a token named {0:?} exists already (revoke it first)")]
    Exists(String),
    #[error("no active token named {0:?}")]
    NoSuchToken(String),
    #[error("{0}")]
    Scope(#[from] ScopeError),
    #[error("{0}")]
    Random(#[from] RandomError),
    #[error("index: {0}")]
    Db(#[from] crate::store::db::DbError),
    #[error("index row of token {name}: {message}")]
    BadRow { name: String, message: String },
    /// The index or the audit trail could not be written.
    #[error("{0}")]
    Unavailable(String),
}

/// One token as listed (never its secret nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    /// `KEY=PATTERN` items; empty: every recording.
    pub scopes: Vec<String>,
    pub created_at: String,
    /// Who made it: `cli:<user>` or the admin token's name.
    pub created_by: String,
    pub revoked_at: Option<String>,
    #[serde(skip)]
    pub scope: Scope,
}

/// Checks a token name: short, printable, no blanks or `:` (so that it
/// never reads as a `cli:<user>` actor in the audit trail).
pub fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadName(name.to_string()))
    }
}

fn now() -> String {
    crate::store::query::utc_millis(chrono::Utc::now())
}

/// Adds a token and returns its secret, within the caller's write
/// transaction (so that its audit entry commits with it).
pub fn add(
    conn: &Db,
    name: &str,
    role: Role,
    scope: &Scope,
    by: &str,
) -> Result<String, TokenError> {
    check_name(name)?;
    let active: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM tokens WHERE name = ?1 AND revoked_at IS NULL",
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    if active.is_some() {
        return Err(TokenError::Exists(name.to_string()));
    }
    let secret = new_secret()?;
    let scopes = serde_json::to_string(&scope.items()).unwrap_or_else(|_| "[]".into());
    conn.execute(
        "INSERT INTO tokens (name, hash, role, scopes, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![name, hash_secret(&secret), role.as_str(), scopes, now(), by],
    )?;
    Ok(secret)
}

/// Revokes the active token named `name`, within the caller's write
/// transaction.
pub fn revoke(conn: &Db, name: &str) -> Result<(), TokenError> {
    let n = conn.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, now()],
    )?;
    if n == 0 {
        return Err(TokenError::NoSuchToken(name.to_string()));
    }
    Ok(())
}

/// Every token, active and revoked, in the order they were made.
pub fn list(conn: &Db) -> Result<Vec<TokenInfo>, TokenError> {
    Ok(rows(conn)?.into_iter().map(|(_, t)| t).collect())
}

/// (hash, token) of every token.
fn rows(conn: &Db) -> Result<Vec<(String, TokenInfo)>, TokenError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, hash, role, scopes, created_at, created_by, revoked_at
         FROM tokens ORDER BY id",
    )?;
    let raw = stmt.query_map([], |r| {
        Ok((
            r.get::<String>(0)?,
            r.get::<String>(1)?,
            r.get::<String>(2)?,
            r.get::<String>(3)?,
            r.get::<String>(4)?,
            r.get::<String>(5)?,
            r.get::<Option<String>>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in raw {
        let (name, hash, role, scopes, created_at, created_by, revoked_at) = row?;
        let bad = |message: String| TokenError::BadRow {
            name: name.clone(),
            message,
        };
        let role: Role = role.parse().map_err(|e| bad(format!("{e}")))?;
        let scopes: Vec<String> =
            serde_json::from_str(&scopes).map_err(|e| bad(format!("scopes: {e}")))?;
        let scope = Scope::parse(&scopes).map_err(|e| bad(e.to_string()))?;
        out.push((
            hash,
            TokenInfo {
                name,
                role,
                scopes,
                created_at,
                created_by,
                revoked_at,
                scope,
            },
        ));
    }
    Ok(out)
}

/// The tokens a running server accepts, by the hash of their secret.
#[derive(Debug, Clone, Default)]
pub struct TokenSet {
    active: HashMap<String, Arc<TokenInfo>>,
    /// Whether any token exists (revoked ones included): then every
    /// request must carry an active one.
    pub required: bool,
}

impl TokenSet {
    /// Reads the tokens. A row that cannot be read is left out (and
    /// logged): it cannot be matched, which fails closed.
    pub fn load(conn: &Db) -> Result<TokenSet, TokenError> {
        let any: i64 = conn.query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))?;
        let mut active = HashMap::new();
        match rows(conn) {
            Ok(rows) => {
                for (hash, t) in rows {
                    if t.revoked_at.is_none() {
                        active.insert(hash, Arc::new(t));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "a token row cannot be read: no token is accepted until it is fixed or revoked");
                active.clear();
            }
        }
        Ok(TokenSet {
            active,
            required: any > 0,
        })
    }

    /// A set that refuses everyone (the tokens cannot be read).
    pub fn locked() -> TokenSet {
        TokenSet {
            active: HashMap::new(),
            required: true,
        }
    }

    /// The active token whose secret this is.
    pub fn lookup(&self, secret: &str) -> Option<Arc<TokenInfo>> {
        self.active.get(&hash_secret(secret)).cloned()
    }

    /// The active token whose secret hashes to `hash` ([`hash_secret`]):
    /// a web sign-in session keeps the hash, never the secret.
    pub fn lookup_hash(&self, hash: &str) -> Option<Arc<TokenInfo>> {
        self.active.get(hash).cloned()
    }

    /// Active tokens.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Index;

    #[test]
    fn add_list_revoke_and_reuse_a_name() {
        crate::testkit::pg::each_backend("add_list_revoke_and_reuse_a_name", |at| {
            let ix = Index::open_at(at).unwrap();
            let c = ix.conn();
            assert!(!TokenSet::load(c).unwrap().required);
            let scope = Scope::parse(&["geo=paris", "dn=70*"]).unwrap();
            let s1 = add(c, "qm-paris", Role::Listener, &scope, "cli:root").unwrap();
            assert!(matches!(
                add(c, "qm-paris", Role::Viewer, &Scope::default(), "cli:root"),
                Err(TokenError::Exists(_))
            ));
            assert!(matches!(
                add(c, "bad name", Role::Viewer, &Scope::default(), "x"),
                Err(TokenError::BadName(_))
            ));
            assert!(matches!(
                add(c, "cli:root", Role::Viewer, &Scope::default(), "x"),
                Err(TokenError::BadName(_))
            ));
            let set = TokenSet::load(c).unwrap();
            assert!(set.required);
            let t = set.lookup(&s1).unwrap();
            assert_eq!((t.name.as_str(), t.role), ("qm-paris", Role::Listener));
            assert_eq!(t.scope, scope);
            assert!(set.lookup("srs_nope").is_none());
            // The secret is nowhere in the index.
            let stored: String = c
                .query_row(
                    match c.dialect() {
                        crate::store::db::Dialect::Sqlite => {
                            "SELECT group_concat(hash || scopes || name) FROM tokens"
                        }
                        crate::store::db::Dialect::Postgres => {
                            "SELECT string_agg(hash || scopes || name, ',') FROM tokens"
                        }
                    },
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(!stored.contains(&s1[4..]));

            revoke(c, "qm-paris").unwrap();
            assert!(matches!(
                revoke(c, "qm-paris"),
                Err(TokenError::NoSuchToken(_))
            ));
            let set = TokenSet::load(c).unwrap();
            assert!(set.lookup(&s1).is_none());
            assert!(set.required, "revoked tokens still lock the API");
            // The name is free again; the old secret stays dead.
            let s2 = add(c, "qm-paris", Role::Viewer, &Scope::default(), "admin-1").unwrap();
            let set = TokenSet::load(c).unwrap();
            assert!(set.lookup(&s1).is_none());
            assert_eq!(set.lookup(&s2).unwrap().role, Role::Viewer);
            let all = list(c).unwrap();
            assert_eq!(all.len(), 2);
            assert!(all[0].revoked_at.is_some());
            assert_eq!(all[0].scopes, ["dn=70*", "geo=paris"]);
            assert_eq!(all[1].created_by, "admin-1");
            let json = serde_json::to_string(&all).unwrap();
            assert!(!json.contains("hash") && !json.contains(&s2[4..]), "{json}");
        });
    }

    #[test]
    fn a_row_that_cannot_be_read_fails_closed() {
        crate::testkit::pg::each_backend("a_row_that_cannot_be_read_fails_closed", |at| {
            let ix = Index::open_at(at).unwrap();
            let c = ix.conn();
            let s = add(c, "a", Role::Admin, &Scope::default(), "x").unwrap();
            c.execute("UPDATE tokens SET role = 'root'", []).unwrap();
            let set = TokenSet::load(c).unwrap();
            assert!(set.required);
            assert!(set.lookup(&s).is_none());
            assert!(list(c).is_err());
        });
    }
}
