//! Tolerant parser for SIPREC recording metadata (RFC 7865,
//! `application/rs-metadata+xml` and the legacy `application/rs-metadata`).
//!
//! Real SRCs send several dialects, and this parser accepts all of them:
//!
//! * RFC 7865 (`urn:ietf:params:xml:ns:recording:1`): `participant_id`,
//!   `stream_id`, `<participantstreamassoc>` with `<send>`/`<recv>`.
//! * The pre-RFC layout (Acme/Oracle, AudioCodes, Sonus, Metaswitch; namespace
//!   `urn:ietf:params:xml:ns:recording`): `id=`/`session=` attributes and
//!   `<send>`/`<recv>` directly inside `<participant>`.
//! * BroadWorks/Webex (`<recording_metadata xmlns="urn:ietf:params:xml:ns:siprec">`):
//!   `<aor>` and `<name>` directly inside `<participant>`, and
//!   `<send><id>stream</id></send>`.
//!
//! Elements are matched on their local name, case-insensitively, so prefixes,
//! namespaces and `dataMode`/`datamode` spellings do not matter. Elements may
//! come in any order; unknown elements and extension data are skipped.
//!
//! Entity declarations are never expanded: a `<!DOCTYPE` makes the document an
//! error, and only the five predefined entities and character references are
//! resolved.
//!
//! The module is split by concern:
//!
//! * `model.rs`: the RFC 7865 model ([`Metadata`], [`Participant`],
//!   [`Stream`], ...) and the queries the recorder asks of it;
//! * `merge.rs`: [`Metadata::apply`], merging a later (partial or complete)
//!   document into a session's state and reporting the [`Change`]s;
//! * `xml.rs`: the tolerant element tree (strict read, then the sanitising
//!   lenient retry);
//! * `dialects.rs`: from the tree to the model, for every dialect above,
//!   with vendor extension data kept raw.

mod dialects;
mod merge;
mod model;
mod xml;

pub use model::{
    Change, ChangeKind, CsSession, DataMode, Extension, Group, Metadata, MetadataError,
    Participant, ParticipantSessionAssoc, Stream,
};

use dialects::metadata_from_root;
use xml::{build_tree, find_root, sanitize, Mode};

/// Parse one metadata document.
///
/// Fallback: a strict parse is tried first. If the XML is not well-formed
/// (real Acme SBCs put a raw `<sip:...>` inside `<apkt:request-uri>`, and a
/// Genesys sample has `<!{CDATA{...}}>`), every `<` that cannot start a tag,
/// end tag, comment, CDATA section or processing instruction is escaped to
/// `&lt;` (see [`sanitize`]), and the result is parsed again in a lenient
/// mode: end tags need not match (they close up to the nearest open element
/// of that name, or are ignored), unclosed elements are closed at the end,
/// and a later syntax error keeps what was read before it. The strict error
/// is returned only if the lenient pass yields no recording root either.
///
/// A `<requestsnapshot>` root (RFC 7865 §7) gives `Ok` with
/// `is_snapshot_request` set and nothing else.
pub fn parse(xml: &str) -> Result<Metadata, MetadataError> {
    let xml = xml.trim_start_matches('\u{feff}').trim_start();
    match build_tree(xml, Mode::Strict) {
        Ok(roots) => find_root(&roots)
            .map(|root| metadata_from_root(root, xml))
            .ok_or(MetadataError::NoRecordingRoot),
        Err(MetadataError::Doctype) => Err(MetadataError::Doctype),
        Err(strict_err) => {
            let clean = sanitize(xml);
            match build_tree(&clean, Mode::Lenient) {
                Ok(roots) => find_root(&roots)
                    .map(|root| metadata_from_root(root, &clean))
                    .ok_or(strict_err),
                Err(_) => Err(strict_err),
            }
        }
    }
}

#[cfg(test)]
mod testutil;

#[cfg(test)]
mod tests;
