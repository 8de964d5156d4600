//! A tiny element tree, built from quick-xml events, tolerant of the broken
//! markup real SRCs send (see [`super::parse`] for the strict read and the
//! lenient retry). It knows nothing of RFC 7865 except the root names it
//! stops after.

use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::MetadataError;

/// Elements nested deeper than this are skipped (keeps the tree and its
/// recursive drop bounded on hostile input).
const MAX_DEPTH: usize = 64;

/// One element: lower-cased local name, attributes, direct text, children.
#[derive(Debug, Default)]
pub(super) struct Element {
    pub(super) name: String,
    /// Local name as written (for extension data).
    pub(super) local: String,
    /// Namespace prefix as written, if any.
    pub(super) prefix: Option<String>,
    /// Namespace declarations on this element: (prefix, or "" for the
    /// default namespace; URI).
    pub(super) ns_decls: Vec<(String, String)>,
    pub(super) attrs: Vec<(String, String)>,
    pub(super) text: String,
    pub(super) children: Vec<Element>,
    /// Byte range of the whole element in the parsed text.
    pub(super) span: (usize, usize),
}

impl Element {
    /// Value of the first attribute (by lower-cased local name) in `names`.
    pub(super) fn attr(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| {
            self.attrs
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        })
    }

    pub(super) fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Trimmed text of the first child `name` that is not blank.
    pub(super) fn child_text(&self, name: &str) -> Option<String> {
        self.children_named(name).find_map(|c| non_blank(&c.text))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Strict,
    Lenient,
}

pub(super) fn non_blank(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// The root elements, after which reading stops.
fn is_root_name(name: &str) -> bool {
    name == "recording" || name == "recording_metadata" || name == SNAPSHOT_REQUEST
}

/// Lower-cased name of the RFC 7865 §7 snapshot request root.
pub(super) const SNAPSHOT_REQUEST: &str = "requestsnapshot";

/// The first recording root, or else a snapshot request root.
pub(super) fn find_root(roots: &[Element]) -> Option<&Element> {
    roots
        .iter()
        .find(|e| is_root_name(&e.name) && e.name != SNAPSHOT_REQUEST)
        .or_else(|| roots.iter().find(|e| e.name == SNAPSHOT_REQUEST))
}

/// Lower-cased local name (prefix removed) of a tag or attribute name.
fn local_name(qname: &[u8]) -> String {
    let local = match qname.iter().rposition(|&b| b == b':') {
        Some(i) => &qname[i + 1..],
        None => qname,
    };
    String::from_utf8_lossy(local).to_ascii_lowercase()
}

/// Prefix (if any) and local name as written.
fn split_qname(qname: &[u8]) -> (Option<String>, String) {
    match qname.iter().rposition(|&b| b == b':') {
        Some(i) => (
            Some(String::from_utf8_lossy(&qname[..i]).into_owned()),
            String::from_utf8_lossy(&qname[i + 1..]).into_owned(),
        ),
        None => (None, String::from_utf8_lossy(qname).into_owned()),
    }
}

fn element_from(start: &BytesStart<'_>, reader: &Reader<&[u8]>, at: usize) -> Element {
    let mut attrs = Vec::new();
    let mut ns_decls = Vec::new();
    for a in start
        .html_attributes()
        .with_checks(false)
        .map_while(Result::ok)
    {
        let value = a
            .decode_and_unescape_value(reader.decoder())
            .map(Cow::into_owned)
            .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned());
        let key = a.key.as_ref();
        if key == b"xmlns" {
            ns_decls.push((String::new(), value));
        } else if let Some(prefix) = key.strip_prefix(b"xmlns:") {
            ns_decls.push((String::from_utf8_lossy(prefix).into_owned(), value));
        } else {
            attrs.push((local_name(key), value));
        }
    }
    let (prefix, local) = split_qname(start.name().as_ref());
    Element {
        name: local.to_ascii_lowercase(),
        local,
        prefix,
        ns_decls,
        attrs,
        span: (at, at),
        ..Element::default()
    }
}

/// Byte offset of the reader in its input.
fn position(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

/// Pop the innermost open element, which ends at byte `end`, and attach it to
/// its parent (or the roots). Returns true when a top-level recording root
/// was just completed.
fn close(stack: &mut Vec<Element>, roots: &mut Vec<Element>, end: usize) -> bool {
    let Some(mut done) = stack.pop() else {
        return false;
    };
    done.span.1 = end;
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(done);
            false
        }
        None => {
            let is_root = is_root_name(&done.name);
            roots.push(done);
            is_root
        }
    }
}

/// Read `xml` into top-level elements. Stops once a recording root is closed,
/// so trailing MIME boundaries or junk do not matter.
pub(super) fn build_tree(xml: &str, mode: Mode) -> Result<Vec<Element>, MetadataError> {
    let lenient = mode == Mode::Lenient;
    let mut reader = Reader::from_str(xml);
    {
        let config = reader.config_mut();
        config.check_end_names = !lenient;
        config.allow_unmatched_ends = lenient;
        config.allow_dangling_amp = lenient;
    }
    let mut stack: Vec<Element> = Vec::new();
    let mut roots: Vec<Element> = Vec::new();
    // Open elements below MAX_DEPTH that are not stored.
    let mut skipped = 0usize;

    loop {
        let at = position(&reader);
        let event = match reader.read_event() {
            Ok(event) => event,
            // Lenient: keep what was read before the error.
            Err(_) if lenient => break,
            Err(e) => {
                return Err(MetadataError::Malformed {
                    position: reader.error_position(),
                    reason: e.to_string(),
                })
            }
        };
        match event {
            Event::Start(start) => {
                if skipped > 0 || stack.len() >= MAX_DEPTH {
                    skipped += 1;
                } else {
                    stack.push(element_from(&start, &reader, at));
                }
            }
            Event::Empty(start) => {
                if skipped == 0 && stack.len() < MAX_DEPTH {
                    stack.push(element_from(&start, &reader, at));
                    if close(&mut stack, &mut roots, position(&reader)) {
                        return Ok(roots);
                    }
                }
            }
            Event::End(end) => {
                if skipped > 0 {
                    skipped -= 1;
                    continue;
                }
                // Strict mode: quick-xml has already checked that names match.
                let depth = if lenient {
                    let name = local_name(end.name().as_ref());
                    match stack.iter().rposition(|e| e.name == name) {
                        Some(pos) => stack.len() - pos,
                        None => 0, // stray end tag: ignore
                    }
                } else {
                    1
                };
                for _ in 0..depth {
                    if close(&mut stack, &mut roots, position(&reader)) {
                        return Ok(roots);
                    }
                }
            }
            Event::Text(text) => {
                if let (0, Some(top)) = (skipped, stack.last_mut()) {
                    top.text.push_str(&text.decode().unwrap_or_default());
                }
            }
            Event::CData(cdata) => {
                if let (0, Some(top)) = (skipped, stack.last_mut()) {
                    top.text.push_str(&cdata.decode().unwrap_or_default());
                }
            }
            Event::GeneralRef(reference) => {
                if let (0, Some(top)) = (skipped, stack.last_mut()) {
                    if let Ok(Some(c)) = reference.resolve_char_ref() {
                        top.text.push(c);
                    } else if let Ok(name) = reference.decode() {
                        // Only the five predefined entities; never user ones.
                        if let Some(s) = resolve_predefined_entity(&name) {
                            top.text.push_str(s);
                        }
                    }
                }
            }
            Event::DocType(_) => return Err(MetadataError::Doctype),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }

    if !lenient && !stack.is_empty() {
        let open = stack.last().map(|e| e.name.clone()).unwrap_or_default();
        return Err(MetadataError::Malformed {
            position: reader.buffer_position(),
            reason: format!("unexpected end of document inside <{open}>"),
        });
    }
    let end = position(&reader).min(xml.len());
    while !stack.is_empty() {
        close(&mut stack, &mut roots, end);
    }
    Ok(roots)
}

/// Make broken markup parseable: escape every `<` that cannot start a start
/// tag, end tag, comment, CDATA section, processing instruction or DOCTYPE,
/// e.g. the raw `<sip:user@host;param=x>` some Acme SBCs put in element text,
/// or `<!{CDATA{`. Comments, CDATA sections and processing instructions are
/// copied verbatim when they are terminated.
pub(super) fn sanitize(xml: &str) -> String {
    let mut out = String::with_capacity(xml.len() + 32);
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match markup_len(tail) {
            Some(n) => {
                out.push_str(&tail[..n]);
                rest = &tail[n..];
            }
            None => {
                out.push_str("&lt;");
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// How many bytes of `tail` (which starts with `<`) to copy verbatim, or
/// `None` if this `<` cannot start markup and must be escaped.
fn markup_len(tail: &str) -> Option<usize> {
    for (open, end) in [("<!--", "-->"), ("<![CDATA[", "]]>"), ("<?", "?>")] {
        if let Some(body) = tail.strip_prefix(open) {
            return body.find(end).map(|j| open.len() + j + end.len());
        }
    }
    if tail
        .get(..9)
        .is_some_and(|s| s.eq_ignore_ascii_case("<!doctype"))
    {
        return Some(1); // kept, so that it is rejected rather than hidden
    }
    let after = &tail[1..];
    let name = after.strip_prefix('/').unwrap_or(after);
    let mut chars = name.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_alphabetic() || c == '_' || c == ':' => {}
        _ => return None,
    }
    let end = chars.find(|&(_, c)| !(c.is_alphanumeric() || "-_.:".contains(c)));
    match end {
        // Truncated at the end of the input: leave it to the parser.
        None => Some(1),
        Some((_, c)) if c.is_whitespace() || c == '/' || c == '>' => Some(1),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests;
