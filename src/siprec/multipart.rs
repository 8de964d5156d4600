//! `multipart/mixed` bodies of recording sessions (RFC 7866 §9, RFC 2046).
//!
//! Tolerates what real clients send: quoted or unquoted boundaries with or
//! without a space after `;`, LF or CRLF line ends, transport padding after
//! boundary lines, a missing CRLF after the close delimiter, parts in any
//! order, unknown extra parts (Cisco `application/gtd`), upper-case types.

/// Why a body could not be split.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MultipartError {
    #[error("multipart Content-Type without a boundary parameter")]
    NoBoundary,
    #[error("no part delimited by boundary {0:?}")]
    NoParts(String),
}

/// One body part: its headers (name lower case) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Part {
    /// Content-Type without parameters, lower case (`text/plain` when absent, RFC 2046 §5.1).
    pub fn content_type(&self) -> String {
        self.headers
            .iter()
            .find(|(n, _)| n == "content-type" || n == "c")
            .map(|(_, v)| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|| "text/plain".to_string())
    }
}

/// The `boundary` parameter of a Content-Type value.
pub fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Splits a multipart body into its parts.
pub fn split(content_type: &str, body: &[u8]) -> Result<Vec<Part>, MultipartError> {
    let boundary = boundary_of(content_type).ok_or(MultipartError::NoBoundary)?;
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    // Offsets of delimiter lines: at the start of the body or after a line end.
    let mut pos = 0usize;
    let mut current_start: Option<usize> = None;
    while pos <= body.len() {
        let line_end = body[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| pos + i)
            .unwrap_or(body.len());
        let line = trim_cr(&body[pos..line_end]);
        let trimmed = trim_ws_end(line);
        let is_delim = trimmed.starts_with(delim.as_bytes());
        if is_delim {
            let tail = &trimmed[delim.len()..];
            let is_close = tail == b"--";
            if tail.is_empty() || is_close {
                if let Some(start) = current_start.take() {
                    // The line end before the delimiter belongs to the delimiter.
                    let end = strip_one_line_end(body, start, pos);
                    parts.push(parse_part(&body[start..end]));
                }
                if is_close {
                    break;
                }
                current_start = Some((line_end + 1).min(body.len()));
            }
        }
        if line_end >= body.len() {
            break;
        }
        pos = line_end + 1;
    }
    // A last part without a close delimiter is kept (truncated bodies).
    if let Some(start) = current_start {
        if start < body.len() {
            parts.push(parse_part(&body[start..]));
        }
    }
    if parts.is_empty() {
        return Err(MultipartError::NoParts(boundary));
    }
    Ok(parts)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ws_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// End of a part's content: `delim_pos` minus the CRLF (or LF) before it.
fn strip_one_line_end(body: &[u8], start: usize, delim_pos: usize) -> usize {
    let mut end = delim_pos;
    if end > start && body[end - 1] == b'\n' {
        end -= 1;
        if end > start && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn parse_part(raw: &[u8]) -> Part {
    // Headers end at the first empty line; a part may have no headers at all.
    let mut headers = Vec::new();
    let mut pos = 0usize;
    loop {
        let line_end = raw[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| pos + i)
            .unwrap_or(raw.len());
        let line = trim_cr(&raw[pos..line_end]);
        if line.is_empty() {
            pos = (line_end + 1).min(raw.len());
            break;
        }
        let text = String::from_utf8_lossy(line);
        match text.split_once(':') {
            Some((n, v)) if is_token(n.trim()) => {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            // A line that is not a header ends the header block (some
            // senders omit the blank line): the body starts here.
            _ => break,
        }
        if line_end >= raw.len() {
            pos = raw.len();
            break;
        }
        pos = line_end + 1;
    }
    Part {
        headers,
        body: raw[pos.min(raw.len())..].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_variants() {
        assert_eq!(
            boundary_of("multipart/mixed;boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary_of("multipart/mixed; boundary=unique-boundary-1").as_deref(),
            Some("unique-boundary-1")
        );
        assert_eq!(
            boundary_of("multipart/mixed; Boundary=\"q b\"").as_deref(),
            Some("q b")
        );
        assert_eq!(boundary_of("multipart/mixed"), None);
    }

    #[test]
    fn splits_two_parts_crlf() {
        let body = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n<recording/>\r\n--b--\r\n";
        let parts = split("multipart/mixed;boundary=b", body.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type(), "application/sdp");
        assert_eq!(parts[0].body, b"v=0\r\n");
        assert_eq!(parts[1].content_type(), "application/rs-metadata+xml");
        assert_eq!(parts[1].body, b"<recording/>");
    }

    #[test]
    fn padding_lf_no_final_crlf_and_preamble() {
        let body = "preamble\n--b \nContent-Type: application/SDP\n\nv=0\n--b\nContent-Type: application/gtd\nContent-Disposition: signal;handling=optional\n\nIAM,\n--b-- ";
        let parts = split("multipart/mixed; boundary=\"b\"", body.as_bytes()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_type(), "application/sdp");
        assert_eq!(parts[0].body, b"v=0");
        assert_eq!(parts[1].content_type(), "application/gtd");
    }

    #[test]
    fn missing_blank_line_after_part_headers() {
        let body = "--b\nContent-Type: application/sdp\nv=0\na=rtpmap:0 PCMU/8000\n--b--\n";
        let parts = split("multipart/mixed;boundary=b", body.as_bytes()).unwrap();
        assert_eq!(parts[0].content_type(), "application/sdp");
        assert_eq!(parts[0].body, b"v=0\na=rtpmap:0 PCMU/8000");
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        assert_eq!(
            split("multipart/mixed", b"x"),
            Err(MultipartError::NoBoundary)
        );
        assert!(matches!(
            split("multipart/mixed;boundary=z", b"--y\r\n\r\n"),
            Err(MultipartError::NoParts(_))
        ));
        // close delimiter only
        assert!(split("multipart/mixed;boundary=z", b"--z--").is_err());
        // unterminated part is kept
        let p = split(
            "multipart/mixed;boundary=z",
            b"--z\r\nContent-Type: a/b\r\n\r\nxy",
        )
        .unwrap();
        assert_eq!(p[0].body, b"xy");
    }

    #[test]
    fn corpus_bodies_split() {
        let cisco = include_str!("../../tests/fixtures/corpus/cisco-cube-offer-body-gtd.sip");
        let parts = split("multipart/mixed;boundary=uniqueBoundary", cisco.as_bytes()).unwrap();
        let types: Vec<_> = parts.iter().map(|p| p.content_type()).collect();
        assert_eq!(
            types,
            [
                "application/sdp",
                "application/rs-metadata+xml",
                "application/gtd"
            ]
        );
    }
}
