//! Helpers shared by the metadata tests: corpus samples and lookups.

use super::{parse, Metadata, Participant};

/// The text of a corpus file (`tests/fixtures/corpus/<name>`).
macro_rules! corpus {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/corpus/",
            $name
        ))
    };
}
pub(super) use corpus;

/// Every metadata document in `text` (a SIP message, a multipart body or a
/// SIPp scenario): from the root start tag (or an `<?xml` declaration just
/// before it) to the matching closing root tag.
pub(super) fn extract_all(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(start) = ["<recording", "<tns:recording"]
        .iter()
        .filter_map(|p| text[from..].find(p).map(|i| from + i))
        .min()
    {
        let name: String = text[start + 1..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
            .collect();
        let close = format!("</{name}>");
        let end = start + text[start..].find(&close).expect("closing root tag") + close.len();
        let before = text[..start].trim_end();
        let begin = match before.rfind("<?xml") {
            Some(d) if before.ends_with("?>") => d,
            _ => start,
        };
        out.push(&text[begin..end]);
        from = end;
    }
    out
}

pub(super) fn extract(text: &str) -> &str {
    extract_all(text)
        .into_iter()
        .next()
        .expect("metadata in sample")
}

pub(super) fn parse_sample(text: &str) -> Metadata {
    parse(extract(text)).expect("sample parses")
}

pub(super) fn aor_of_label<'a>(md: &'a Metadata, label: &str) -> Option<&'a str> {
    md.sender_of_label(label).and_then(|p| p.aor.as_deref())
}

pub(super) fn participant<'a>(md: &'a Metadata, id: &str) -> &'a Participant {
    md.participants
        .iter()
        .find(|p| p.id == id)
        .expect("participant present")
}

pub(super) fn labels(md: &Metadata) -> Vec<&str> {
    md.streams
        .iter()
        .filter_map(|s| s.label.as_deref())
        .collect()
}

// Participant and CS ids of the RFC 8068 examples.
pub(super) const ALICE: &str = "srfBElmCRp2QB23b7Mpk0w==";
pub(super) const BOB: &str = "zSfPoSvdSDCmU3A3TRDxAw==";
pub(super) const CAROL: &str = "Atnm1ZRnOC6Pm5MApkrDzQ==";
pub(super) const CS: &str = "hVpd7YQgRW2nD22h7q60JQ==";
