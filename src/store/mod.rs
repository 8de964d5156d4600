//! Storage of finished recordings.
//!
//! - [`drop`]: the file drop, where a recording's directory is published
//!   atomically as `<root>/YYYY/MM/DD/<recording_id>/` with its `metadata.json`.
//! - [`index`]: the SQLite index of published recordings, a cache that can be
//!   rebuilt from [`FileDrop::scan`].
//! - [`query`]: the search filters of `srs list` (and the HTTP API).
//! - [`render`]: the text and JSON output of `srs list` and `srs show`.
//! - [`audit`]: the audit trail (append-only, hash-chained) in the index.

pub mod audit;
pub mod drop;
pub mod index;
pub mod query;
pub mod recover;
pub mod render;

pub use drop::{DropError, FileDrop};
pub use index::{Index, IndexError, IndexWriter, ReindexReport};
pub use query::{Query, QueryError};
