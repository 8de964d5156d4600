//! Storage of finished recordings.
//!
//! - [`drop`](mod@drop): the file drop, where a recording's directory is published
//!   atomically as `<root>/YYYY/MM/DD/<recording_id>/` with its `metadata.json`.
//! - [`index`]: the index of published recordings (SQLite, or PostgreSQL
//!   shared by several recorders), a cache that can be rebuilt from
//!   [`FileDrop::scan`]; [`db`]: one connection API over both, [`backend`]:
//!   where the index is (`storage.index`).
//! - [`query`]: the search filters of `srs list` (and the HTTP API).
//! - [`render`]: the text and JSON output of `srs list` and `srs show`.
//! - [`recover`]: crash recovery: `incoming.json` written while recording,
//!   recordings a crash left in `.incoming` published at the next start.
//! - [`publisher`]: the publisher thread: group commit into the drop, then
//!   the index, in batches.
//! - [`audit`]: the audit trail (append-only, hash-chained) in the index.
//! - [`disk_guard`]: the low-disk guard (free bytes in, refuse or accept
//!   new sessions out).
//! - [`integrity`]: the SHA-256 of every published file and the manifest
//!   hash of each recording, and their verification.
//! - [`crypt`]: encryption at rest (age, X25519 recipients).

pub mod audit;
pub mod backend;
pub mod crypt;
pub mod db;
pub mod disk_guard;
pub mod drop;
pub mod index;
pub mod integrity;
pub mod objects;
pub mod pg_schema;
pub mod publisher;
pub mod query;
pub mod recover;
pub mod render;

pub use drop::{DropError, FileDrop};

/// Name of the index inside the drop when `storage.index` (`--index`) is
/// not given.
pub const INDEX_FILE: &str = "index.sqlite";

/// The index path: `index` if given, else [`INDEX_FILE`] inside the drop.
pub fn index_path(
    recordings: &std::path::Path,
    index: Option<&std::path::Path>,
) -> std::path::PathBuf {
    index.map_or_else(|| recordings.join(INDEX_FILE), std::path::Path::to_path_buf)
}
pub use backend::IndexAt;
pub use index::{Index, IndexError, IndexWriter, ReindexReport};
pub use query::{Query, QueryError};
