//! The DN directory (`[[directory]]`): what a DN is (extension, trunk,
//! route point...) and where (geo-location, site). A DN missing from it is
//! filed all the same.

use serde::Deserialize;

/// A DN's entry in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnEntry {
    /// The DN, or a pattern with `*` (any run of characters) and `?` (one).
    pub dn: Glob,
    /// `extension`, `trunk`, `route-point`, `acd-position`, ...
    pub kind: String,
    #[serde(default)]
    pub geo_location: Option<String>,
    #[serde(default)]
    pub site: Option<String>,
}

/// A pattern with `*` (any run of characters) and `?` (one), read once
/// when the config is loaded; compared as text.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "String")]
pub struct Glob {
    text: String,
    chars: Box<[char]>,
}

impl Glob {
    pub fn new(text: impl Into<String>) -> Glob {
        let text = text.into();
        Glob {
            chars: text.chars().collect(),
            text,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it has a wildcard (else it matches only itself).
    pub fn is_pattern(&self) -> bool {
        self.chars.iter().any(|c| matches!(c, '*' | '?'))
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let p = &self.chars;
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some(pi);
                mark = ti;
                pi += 1;
            } else if let Some(s) = star {
                pi = s + 1;
                mark += 1;
                ti = mark;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.text == other.text
    }
}

impl Eq for Glob {}

impl From<String> for Glob {
    fn from(s: String) -> Glob {
        Glob::new(s)
    }
}

impl From<&str> for Glob {
    fn from(s: &str) -> Glob {
        Glob::new(s)
    }
}

/// Glob match with `*` and `?` (a pattern used once; see [`Glob`]).
pub fn glob(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).matches(text)
}

/// The DN directory: exact entries first, then patterns in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory<'a> {
    entries: &'a [DnEntry],
}

impl<'a> Directory<'a> {
    pub fn new(entries: &'a [DnEntry]) -> Self {
        Directory { entries }
    }

    pub fn lookup(&self, dn: &str) -> Option<&'a DnEntry> {
        self.entries
            .iter()
            .find(|e| e.dn.as_str() == dn)
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|e| e.dn.is_pattern() && e.dn.matches(dn))
            })
    }
}
