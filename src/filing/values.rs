//! Reading the values correlation ids come in: cleaned for storage, and
//! the `;key=value` parameters of URIs and header values.

/// A value fit to store and show: printable, trimmed, at most 256 chars.
pub fn clean(v: &str) -> Option<String> {
    let v: String = v
        .trim()
        .trim_matches('"')
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect();
    (!v.is_empty()).then_some(v)
}

/// `;key=value` parameters of a URI or header value, lower-case keys.
/// Parameters inside a URI's user part are not taken.
pub fn params(text: &str) -> Vec<(String, String)> {
    let text = text.trim().trim_start_matches('<');
    let after_host = match text.find('@') {
        Some(i) => &text[i..],
        None => text,
    };
    after_host
        .split([';', '>', '?', '&'])
        .skip(1)
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}
