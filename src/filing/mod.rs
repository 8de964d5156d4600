//! Filing: under which DN, rule and ids a recording is kept, for every
//! vendor's recording client.
//!
//! - [`correlation`](mod@correlation) collects the correlation ids of a call from its
//!   INVITE and metadata (every vendor's headers and extensions).
//! - [`genesys`] reads what is Genesys's own (record-leg URI parameters).
//! - [`directory`] says what a DN is and where ([`Directory`]).
//! - [`values`] cleans what is stored and reads URI parameters.
//! - [`rules`] decide whether to record, the Record DN, its geo-location,
//!   the formats, and the call's direction ([`file`](fn@file), [`direction`](fn@direction)).

pub mod correlation;
pub mod directory;
pub mod genesys;
pub mod rules;
pub mod values;

pub use correlation::{add_metadata_ids, correlation};
pub use directory::{glob, Directory, DnEntry, Glob};
pub use rules::{direction, file, in_cidr, Facts, Filing, RecordSide, Rule, Source};

#[cfg(test)]
mod tests;
