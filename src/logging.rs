//! The log writer: every control character a remote peer could put into a
//! logged value (a Call-ID, a Content-Type, a header, a parse error quoting
//! a line) is escaped before it reaches the log, so nobody can forge log
//! lines with CR/LF or hide text with NUL or backspace.
//!
//! This sits under the formatter rather than at each call site: a logged
//! remote value is escaped even where a future `tracing` call forgets to.
//! The formatter writes each event with one `write` ending in `\n`; that
//! last newline is kept and every other control byte becomes `\xNN` (or
//! `\r`, `\n`, `\t`). ESC is left to the formatter: it uses it for colours
//! and already escapes it in field values.

use std::io::{self, Write};

/// Wraps a writer (stderr): control characters escaped, see the module doc.
pub struct Escaping<W>(pub W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.split_last() {
            Some((b'\n', body)) => (body, true),
            _ => (buf, false),
        };
        if !body.iter().any(|b| needs_escape(*b)) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b if needs_escape(b) => {
                    let _ = write!(out, "\\x{b:02x}");
                }
                b => out.push(b),
            }
        }
        if newline {
            out.push(b'\n');
        }
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn needs_escape(b: u8) -> bool {
    (b < 0x20 && b != 0x1b) || b == 0x7f
}

/// A `MakeWriter` for `tracing_subscriber`: stderr, escaped.
pub fn stderr() -> Escaping<io::Stderr> {
    Escaping(io::stderr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(s: &[u8]) -> Vec<u8> {
        let mut w = Escaping(Vec::new());
        w.write_all(s).unwrap();
        w.0
    }

    #[test]
    fn remote_control_characters_cannot_forge_or_hide_lines() {
        assert_eq!(through(b"plain line\n"), b"plain line\n");
        assert_eq!(
            through(b"call_id=a\r\nFAKE ERROR line\x00\x08x\n"),
            b"call_id=a\\r\\nFAKE ERROR line\\x00\\x08x\n"
        );
        assert_eq!(through(b"tab\there\x7f\n"), b"tab\\there\\x7f\n");
        // Colours from the formatter pass.
        assert_eq!(
            through(b"\x1b[32mINFO\x1b[0m x\n"),
            b"\x1b[32mINFO\x1b[0m x\n"
        );
    }
}
