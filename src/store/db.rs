//! One connection to the index, SQLite or PostgreSQL, behind one API.
//!
//! The index's modules (recordings, tokens, the audit trail, call events,
//! the webhook outbox, holds and retention) write their SQL once, with
//! `?N` parameters, against [`Db`]: a connection that is either the
//! embedded SQLite file (the default, unchanged) or a PostgreSQL server
//! shared by several recorders (`docs/scale-out.md`). The API follows
//! rusqlite's (`execute`, `query_row`, `prepare_cached(..).query_map`,
//! transactions) so that the SQL stays next to the code that needs it.
//!
//! What differs between the two is kept small and explicit:
//! - the schema: each migration step exists in both dialects, side by side
//!   ([`crate::store::index::MIGRATIONS`], [`crate::store::index::PG_MIGRATIONS`]);
//! - the placeholders: `?N` becomes `$N` for PostgreSQL (outside quoted
//!   text), once per statement, which is then prepared and cached;
//! - types: SQLite is dynamically typed, PostgreSQL is not. Values travel
//!   as [`Value`]s and are converted to the type PostgreSQL infers for
//!   each parameter (an integer bound where text is expected is sent as
//!   its decimal text, as SQLite would compare it), and columns are read
//!   back as [`Value`]s whatever their PostgreSQL integer width;
//! - the few statements that cannot be written the same way ask
//!   [`Db::dialect`] (case folding, `group_concat`, the write lock).
//!
//! Why the synchronous `postgres` client rather than an async pool: every
//! use of the index already runs on a thread of its own (the publisher,
//! the events thread, the API's bounded pool of blocking readers,
//! `crate::http::IndexPool`, and the CLI), so the async client would only
//! be wrapped back into blocking calls; `postgres` is `tokio-postgres`
//! driven by a small runtime of its own per connection, and the API's pool
//! bounds the connections (`docs/dependencies.md`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// Which SQL a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a parameter or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Errors of a connection.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// `query_row` found no row.
    #[error("query returned no rows")]
    NoRows,
    /// A column could not be read as the type asked.
    #[error("column {column}: expected {expected}, found {found}")]
    Type {
        column: usize,
        expected: &'static str,
        found: String,
    },
    /// A column of a PostgreSQL type this layer does not read.
    #[error("column {column}: unsupported PostgreSQL type {ty}")]
    PgType { column: usize, ty: String },
    /// The connection cannot be made (the message names what is missing).
    #[error("{0}")]
    Connect(String),
}

/// The server's own message (with its detail) rather than just "db error".
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{}: {} ({d})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        },
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

impl DbError {
    /// Whether the connection itself is lost (server down or restarted):
    /// the caller drops it and connects again.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            DbError::Postgres(e) => e.is_closed() || e.as_db_error().is_none(),
            DbError::Connect(_) => true,
            _ => false,
        }
    }
}

pub type DbResult<T> = std::result::Result<T, DbError>;

/// What can be bound to a parameter.
pub trait ToArg {
    fn to_value(&self) -> Value;
}

impl ToArg for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl ToArg for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToArg for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToArg for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToArg for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToArg for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}
impl ToArg for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn to_value(&self) -> Value {
                Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_arg!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);
impl<T: ToArg + ?Sized> ToArg for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToArg> ToArg for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// The parameters of a statement: `params![a, b]`, `[a]`, `[]`, or a
/// slice of [`Value`]s built up by a query builder.
pub trait Params {
    fn values(&self) -> Vec<Value>;
}
impl Params for &[&dyn ToArg] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl Params for [&dyn ToArg; 0] {
    fn values(&self) -> Vec<Value> {
        Vec::new()
    }
}
impl Params for &[Value] {
    fn values(&self) -> Vec<Value> {
        self.to_vec()
    }
}
impl Params for &Vec<Value> {
    fn values(&self) -> Vec<Value> {
        self.to_vec()
    }
}
impl Params for Vec<Value> {
    fn values(&self) -> Vec<Value> {
        self.clone()
    }
}
macro_rules! array_params {
    ($($n:literal),*) => {$(
        impl<T: ToArg> Params for [T; $n] {
            fn values(&self) -> Vec<Value> {
                self.iter().map(ToArg::to_value).collect()
            }
        }
    )*};
}
array_params!(1, 2, 3, 4, 5, 6, 7, 8);

/// `params![a, b, ...]`: the parameters of a statement, any [`ToArg`]s.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::db::ToArg]
    };
    ($($x:expr),+ $(,)?) => {
        &[$(&$x as &dyn $crate::store::db::ToArg),+] as &[&dyn $crate::store::db::ToArg]
    };
}
pub use crate::params;

/// What a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: &Value, column: usize) -> DbResult<Self>;
}

fn found(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => format!("integer {i}"),
        Value::Real(f) => format!("real {f}"),
        Value::Text(_) => "text".into(),
        Value::Blob(_) => "blob".into(),
    }
}

impl FromValue for Value {
    fn from_value(v: &Value, _: usize) -> DbResult<Self> {
        Ok(v.clone())
    }
}
impl FromValue for String {
    fn from_value(v: &Value, column: usize) -> DbResult<Self> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(DbError::Type {
                column,
                expected: "text",
                found: found(other),
            }),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value, column: usize) -> DbResult<Self> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            Value::Text(s) => Ok(s.as_bytes().to_vec()),
            other => Err(DbError::Type {
                column,
                expected: "blob",
                found: found(other),
            }),
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: &Value, column: usize) -> DbResult<Self> {
        match v {
            Value::Real(f) => Ok(*f),
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(i) => Ok(*i as f64),
            other => Err(DbError::Type {
                column,
                expected: "real",
                found: found(other),
            }),
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value, column: usize) -> DbResult<Self> {
        match v {
            Value::Integer(i) => Ok(*i != 0),
            other => Err(DbError::Type {
                column,
                expected: "boolean",
                found: found(other),
            }),
        }
    }
}
macro_rules! int_from {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value, column: usize) -> DbResult<Self> {
                match v {
                    Value::Integer(i) => <$t>::try_from(*i).map_err(|_| DbError::Type {
                        column,
                        expected: stringify!($t),
                        found: found(v),
                    }),
                    other => Err(DbError::Type {
                        column,
                        expected: "integer",
                        found: found(other),
                    }),
                }
            }
        }
    )*};
}
int_from!(i32, i64, u32, u64, usize);
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value, column: usize) -> DbResult<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, column).map(Some),
        }
    }
}

/// One row of a result, read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    /// Column `i` as `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> DbResult<T> {
        T::from_value(self.value(i), i)
    }

    /// Column `i` as stored (NULL past the last column).
    pub fn value(&self, i: usize) -> &Value {
        self.values.get(i).unwrap_or(&Value::Null)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// `Ok(None)` for "no row" (rusqlite's `OptionalExtension`).
pub trait OptionalExt<T> {
    fn optional(self) -> DbResult<Option<T>>;
}
impl<T> OptionalExt<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A PostgreSQL connection with its prepared statements.
struct Pg {
    /// Always `Some` but in `drop` (a client dropped on an async runtime
    /// thread must be closed off it, as its own runtime blocks).
    client: Option<postgres::Client>,
    /// Prepared statements by their SQL as written (with `?N`).
    stmts: HashMap<String, postgres::Statement>,
    in_tx: bool,
}

/// Most statements kept prepared on one PostgreSQL connection (search
/// filters make statements of many shapes).
const MAX_PG_STATEMENTS: usize = 512;

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<RefCell<Pg>>),
}

/// A connection to the index (module doc).
pub struct Db {
    inner: Inner,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("dialect", &self.dialect())
            .finish()
    }
}

/// `?N` (and bare `?`) placeholders as PostgreSQL's `$N`, outside quoted
/// text and identifiers.
pub fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut next_bare = 1;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next_bare.to_string());
                    next_bare += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn to_sqlite(v: Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Null => V::Null,
        Value::Integer(i) => V::Integer(i),
        Value::Real(f) => V::Real(f),
        Value::Text(s) => V::Text(s),
        Value::Blob(b) => V::Blob(b),
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Null => Value::Null,
        V::Integer(i) => Value::Integer(i),
        V::Real(f) => Value::Real(f),
        V::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        V::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        // Converted to what PostgreSQL inferred for the parameter, as
        // SQLite's loose typing would (the SQL is shared).
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => i.to_string().as_str().to_sql(&Type::TEXT, out),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                #[allow(clippy::cast_possible_truncation)]
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_string().as_str().to_sql(&Type::TEXT, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.trim().parse::<i64>()?.to_sql(ty, out),
                Type::INT4 => s.trim().parse::<i32>()?.to_sql(ty, out),
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                // A list as one parameter (`col = ANY(?1::text[])`): the
                // JSON array that SQLite reads with json_each.
                Type::TEXT_ARRAY => serde_json::from_str::<Vec<String>>(s)?.to_sql(ty, out),
                Type::INT8_ARRAY => serde_json::from_str::<Vec<i64>>(s)?.to_sql(ty, out),
                _ => s.as_str().to_sql(&Type::TEXT, out),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => String::from_utf8_lossy(b).as_ref().to_sql(&Type::TEXT, out),
            },
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn from_pg(row: &postgres::Row) -> DbResult<Row> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row
                .try_get::<_, Option<i64>>(i)?
                .map_or(Value::Null, Value::Integer),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map_or(Value::Null, |v| Value::Integer(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map_or(Value::Null, |v| Value::Integer(v.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map_or(Value::Null, |v| Value::Integer(v.into())),
            Type::FLOAT8 => row
                .try_get::<_, Option<f64>>(i)?
                .map_or(Value::Null, Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map_or(Value::Null, |v| Value::Real(v.into())),
            Type::OID => row
                .try_get::<_, Option<u32>>(i)?
                .map_or(Value::Null, |v| Value::Integer(v.into())),
            Type::BYTEA => row
                .try_get::<_, Option<Vec<u8>>>(i)?
                .map_or(Value::Null, Value::Blob),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => row
                .try_get::<_, Option<String>>(i)?
                .map_or(Value::Null, Value::Text),
            ref other => {
                return Err(DbError::PgType {
                    column: i,
                    ty: other.name().to_string(),
                })
            }
        };
        values.push(v);
    }
    Ok(Row { values })
}

/// Runs `f` where the synchronous PostgreSQL client may block: on this
/// thread, or, when this thread runs an async runtime (the client's own
/// runtime cannot start inside another), on a scoped thread of its own.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            off_runtime(move || drop(client));
        }
    }
}

impl Pg {
    fn client(&mut self) -> &mut postgres::Client {
        self.client
            .as_mut()
            .expect("the client is only taken by drop")
    }

    fn statement(&mut self, sql: &str) -> DbResult<postgres::Statement> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(s.clone());
        }
        if self.stmts.len() >= MAX_PG_STATEMENTS {
            self.stmts.clear();
        }
        let s = self.client().prepare(&pg_placeholders(sql))?;
        self.stmts.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    fn execute(&mut self, sql: &str, values: &[Value]) -> DbResult<usize> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let n = self.client().execute(&stmt, &refs)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn query(&mut self, sql: &str, values: &[Value]) -> DbResult<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self.client().query(&stmt, &refs)?;
        rows.iter().map(from_pg).collect()
    }
}

impl Db {
    /// A SQLite connection.
    pub fn sqlite(conn: rusqlite::Connection) -> Db {
        Db {
            inner: Inner::Sqlite(conn),
        }
    }

    /// A PostgreSQL connection.
    pub fn postgres(client: postgres::Client) -> Db {
        Db {
            inner: Inner::Postgres(Box::new(RefCell::new(Pg {
                client: Some(client),
                stmts: HashMap::new(),
                in_tx: false,
            }))),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.inner {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection (pragmas, SQL functions, tests), if it is one.
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// Whether the connection is known to be broken (PostgreSQL closed it).
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(_) => false,
            Inner::Postgres(pg) => pg.borrow().client.as_ref().is_none_or(|c| c.is_closed()),
        }
    }

    /// Runs one statement; returns the number of rows changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> DbResult<usize> {
        let values = params.values();
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(
                values.into_iter().map(to_sqlite),
            ))?),
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let pg = &mut *pg;
                off_runtime(|| pg.execute(sql, &values))
            }
        }
    }

    /// Runs several statements without parameters.
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let client = pg.client();
                Ok(off_runtime(|| client.batch_execute(sql))?)
            }
        }
    }

    /// Every row of a query.
    pub fn query_all<P: Params>(&self, sql: &str, params: P) -> DbResult<Vec<Row>> {
        let values = params.values();
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(
                    values.into_iter().map(to_sqlite),
                ))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut values = Vec::with_capacity(n);
                    for i in 0..n {
                        values.push(from_sqlite(r.get_ref(i)?));
                    }
                    out.push(Row { values });
                }
                Ok(out)
            }
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let pg = &mut *pg;
                off_runtime(|| pg.query(sql, &values))
            }
        }
    }

    /// The first row, through `f`; [`DbError::NoRows`] if there is none.
    pub fn query_row<T, P: Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row) -> DbResult<T>,
    ) -> DbResult<T> {
        let rows = self.query_all(sql, params)?;
        match rows.first() {
            Some(r) => f(r),
            None => Err(DbError::NoRows),
        }
    }

    /// A statement to run (prepared and cached when first run).
    pub fn prepare_cached<'a>(&'a self, sql: &str) -> DbResult<Stmt<'a>> {
        Ok(Stmt {
            db: self,
            sql: sql.to_string(),
        })
    }

    /// Same as [`Db::prepare_cached`].
    pub fn prepare<'a>(&'a self, sql: &str) -> DbResult<Stmt<'a>> {
        self.prepare_cached(sql)
    }

    /// Begins a (deferred, on SQLite) transaction, rolled back unless
    /// committed.
    pub fn transaction(&self) -> DbResult<Tx<'_>> {
        self.begin("BEGIN")?;
        Ok(Tx {
            db: self,
            done: false,
        })
    }

    /// Same as [`Db::transaction`] (rusqlite's name).
    pub fn unchecked_transaction(&self) -> DbResult<Tx<'_>> {
        self.transaction()
    }

    /// Begins a transaction that writes: on SQLite `BEGIN IMMEDIATE`, which
    /// takes the write lock first, waiting for it up to the busy timeout (a
    /// deferred one that reads first and writes later fails at once with
    /// "database is locked" when another writer is committing: the
    /// rollback journal's lock upgrade cannot wait without a deadlock, so
    /// SQLite does not call the busy handler); on PostgreSQL a plain
    /// transaction (row locks; other writers go on).
    pub fn immediate_transaction(&self) -> DbResult<Tx<'_>> {
        match self.dialect() {
            Dialect::Sqlite => self.begin("BEGIN IMMEDIATE")?,
            Dialect::Postgres => self.begin("BEGIN")?,
        }
        Ok(Tx {
            db: self,
            done: false,
        })
    }

    /// Begins a write transaction that excludes every other writer of the
    /// index until it ends: `BEGIN IMMEDIATE` on SQLite; on PostgreSQL a
    /// transaction that takes one advisory lock first (every recorder
    /// sharing the index takes the same), so that, e.g., the audit chain
    /// read and extended inside stays one chain with concurrent writers.
    pub fn write_transaction(&self) -> DbResult<Tx<'_>> {
        match self.dialect() {
            Dialect::Sqlite => self.begin("BEGIN IMMEDIATE")?,
            Dialect::Postgres => {
                self.begin("BEGIN")?;
                let tx = Tx {
                    db: self,
                    done: false,
                };
                self.execute("SELECT pg_advisory_xact_lock(?1)", [WRITE_LOCK])?;
                return Ok(tx);
            }
        }
        Ok(Tx {
            db: self,
            done: false,
        })
    }

    fn begin(&self, sql: &str) -> DbResult<()> {
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch(sql)?,
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                let client = pg.client();
                off_runtime(|| client.batch_execute(sql))?;
                pg.in_tx = true;
            }
        }
        Ok(())
    }

    fn end(&self, sql: &str) -> DbResult<()> {
        match &self.inner {
            Inner::Sqlite(c) => c.execute_batch(sql)?,
            Inner::Postgres(pg) => {
                let mut pg = pg.borrow_mut();
                pg.in_tx = false;
                let client = pg.client();
                off_runtime(|| client.batch_execute(sql))?;
            }
        }
        Ok(())
    }

    /// Whether no transaction is open.
    pub fn is_autocommit(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(c) => c.is_autocommit(),
            Inner::Postgres(pg) => !pg.borrow().in_tx,
        }
    }
}

/// The advisory lock key of [`Db::write_transaction`] ("srs-wlk" as bytes).
pub const WRITE_LOCK: i64 = 0x0073_7273_2d77_6c6b;

/// A statement of a [`Db`].
pub struct Stmt<'a> {
    db: &'a Db,
    sql: String,
}

impl Stmt<'_> {
    pub fn execute<P: Params>(&mut self, params: P) -> DbResult<usize> {
        self.db.execute(&self.sql, params)
    }

    /// Every row through `f` (read whole, then iterated).
    pub fn query_map<T, P: Params>(
        &mut self,
        params: P,
        mut f: impl FnMut(&Row) -> DbResult<T>,
    ) -> DbResult<std::vec::IntoIter<DbResult<T>>> {
        let rows = self.db.query_all(&self.sql, params)?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }

    pub fn query_row<T, P: Params>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row) -> DbResult<T>,
    ) -> DbResult<T> {
        self.db.query_row(&self.sql, params, f)
    }

    /// The rows, read whole.
    pub fn query<P: Params>(&mut self, params: P) -> DbResult<std::vec::IntoIter<Row>> {
        Ok(self.db.query_all(&self.sql, params)?.into_iter())
    }
}

/// A transaction: rolled back when dropped uncommitted. Derefs to its
/// connection, like rusqlite's.
pub struct Tx<'a> {
    db: &'a Db,
    done: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> DbResult<()> {
        self.done = true;
        self.db.end("COMMIT")
    }

    pub fn rollback(mut self) -> DbResult<()> {
        self.done = true;
        self.db.end("ROLLBACK")
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.db.end("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(
            pg_placeholders("SELECT a FROM t WHERE x = ?1 AND y IN (?2, upper(?1)) AND z = '?3'"),
            "SELECT a FROM t WHERE x = $1 AND y IN ($2, upper($1)) AND z = '?3'"
        );
        assert_eq!(pg_placeholders("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(pg_placeholders("a ?12 b"), "a $12 b");
    }

    #[test]
    fn sqlite_round_trip() {
        let db = Db::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        db.execute_batch("CREATE TABLE t (a TEXT, b INTEGER)")
            .unwrap();
        let tx = db.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (?1, ?2)", params!["x", 5i64])
            .unwrap();
        tx.execute("INSERT INTO t VALUES (?1, ?2)", params![None::<String>, 6])
            .unwrap();
        tx.commit().unwrap();
        {
            let _tx = db.transaction().unwrap();
            db.execute("DELETE FROM t", []).unwrap();
        }
        let rows: Vec<(Option<String>, i64)> = db
            .prepare_cached("SELECT a, b FROM t ORDER BY b")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<DbResult<_>>()
            .unwrap();
        assert_eq!(rows, [(Some("x".into()), 5), (None, 6)], "rolled back");
        let none: Option<i64> = db
            .query_row("SELECT b FROM t WHERE a = ?1", ["nope"], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(none, None);
        assert!(db.is_autocommit());
    }
}
