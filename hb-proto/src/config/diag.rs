//! Line splitting and diagnostic collection shared by the three parsers.

use std::path::{Path, PathBuf};

use super::model::Diagnostic;

/// The result of a successful parse: the value plus warnings (`PATH:LINE: warning: ...`).
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    /// What the file says.
    pub value: T,
    /// Things worth saying about a valid file (a switched-off unsupported feature, `crc`
    /// authentication, a Heartbeat default with a deprecation warning, ...).
    pub warnings: Vec<Diagnostic>,
}

/// Collects errors and warnings for one file.
#[derive(Debug)]
pub(crate) struct Diags {
    path: PathBuf,
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Diags {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            path: self.path.clone(),
            line,
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            path: self.path.clone(),
            line,
            message: message.into(),
        });
    }

    pub(crate) fn finish<T>(self, value: T) -> Result<Parsed<T>, Vec<Diagnostic>> {
        if self.errors.is_empty() {
            Ok(Parsed {
                value,
                warnings: self.warnings,
            })
        } else {
            Err(self.errors)
        }
    }
}

/// Splits a file into `(1-based line number, text)`, dropping a leading UTF-8 byte-order mark
/// and the `\r` of CRLF line ends. A line that is not UTF-8 is reported in `diags` and skipped.
pub(crate) fn lines<'a>(bytes: &'a [u8], diags: &mut Diags) -> Vec<(usize, &'a str)> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(s) => out.push((i + 1, s)),
            Err(e) => diags.error(
                i + 1,
                format!(
                    "line is not valid UTF-8 (bad byte at column {})",
                    e.valid_up_to() + 1
                ),
            ),
        }
    }
    out
}

/// Heartbeat's `WHITESPACE`: `" \t\n\r\f"`.
pub(crate) fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// Heartbeat's `DELIMS` for option directives: whitespace and `,`.
pub(crate) fn is_delim(c: char) -> bool {
    c == ',' || is_ws(c)
}

/// Splits on Heartbeat whitespace, dropping empty pieces.
pub(crate) fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_ws).filter(|w| !w.is_empty())
}

/// Heartbeat's `cl_str_to_boolean`: `true/on/yes/y/1` and `false/off/no/n/0`, any case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "y" | "1" => Some(true),
        "false" | "off" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// A plausible Linux interface name: 1 to 15 bytes (IFNAMSIZ - 1), printable ASCII, no `/`,
/// `:` or whitespace, not `.` or `..` (the kernel's `dev_valid_name`).
pub(crate) fn plausible_iface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// Why an interface name was refused, for messages.
pub(crate) const IFACE_RULE: &str =
    "an interface name is 1 to 15 characters without '/', ':' or spaces";
