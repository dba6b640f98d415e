//! Terminal safety: the one place that decides how text from the bus, the API or an operator is
//! made harmless before it reaches a terminal or a log line.
//!
//! An override reason, an agent's error text or a record value is data, and data can carry
//! characters a terminal acts on: ESC starts an escape sequence (colours, cursor moves, window
//! titles, clipboard writes), CR and LF start a fake line, NUL and other C0/C1 controls confuse
//! log readers, and Unicode bidi overrides (U+202E) or line separators reorder or split what the
//! reader sees. [`is_unsafe`] names that set; [`line`] escapes all of it for a single-line field,
//! [`block`] keeps the line feeds of multi-line text, [`json`] makes serialised JSON safe without
//! changing its meaning, and [`LogWriter`] does the same to whole log lines.
//!
//! Escapes are Rust-style (`\n`, `\r`, `\t`, `\0`, `\u{1b}`, `\u{202e}`): visible, unambiguous to
//! a reader, and made only of printable ASCII, so escaping twice changes nothing.

use std::io;

/// Whether `c` must not reach a terminal as is: control characters (C0, DEL, C1), bidi
/// embeddings, overrides, isolates and marks, the zero-width space and word joiner, the line and
/// paragraph separators, and the byte-order mark.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                  // Arabic letter mark
            | '\u{200b}'                 // zero-width space (ZWNJ/ZWJ are kept: scripts need them)
            | '\u{200e}'..='\u{200f}'   // LRM, RLM
            | '\u{2028}'..='\u{202e}'   // line/paragraph separators, LRE, RLE, PDF, LRO, RLO
            | '\u{2060}'..='\u{2069}'   // word joiner, invisible operators, LRI, RLI, FSI, PDI
            | '\u{feff}' // byte-order mark / zero-width no-break space
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\0' => out.push_str("\\0"),
        c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
    }
}

/// `s` for a single-line field: every unsafe character, line feeds and tabs included, escaped.
pub fn line(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` for multi-line text (an explanation, an error with a cause): line feeds and tabs kept,
/// every other unsafe character (CR included) escaped.
pub fn block(s: &str) -> String {
    if !s.chars().any(|c| is_unsafe(c) && c != '\n' && c != '\t') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) && c != '\n' && c != '\t' {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Serialised JSON made safe for a terminal with the same meaning: unsafe characters become
/// `\uXXXX` escapes (they can only occur inside strings, where JSON allows them), while the
/// line feeds and indentation of pretty-printing are kept. serde_json already escapes C0
/// controls inside strings; this adds DEL, C1 and the bidi and invisible characters.
pub fn json(s: &str) -> String {
    if !s
        .chars()
        .any(|c| is_unsafe(c) && c != '\n' && c != '\t' && c != '\r')
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) && c != '\n' && c != '\t' && c != '\r' {
            // Every character in the unsafe set is in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A writer for log lines: each write is one formatted event, and everything unsafe in it is
/// escaped except the line feed that ends it, so a logged value can neither run escape codes
/// nor forge a log line. Use it with the formatter's colours off (they are escape codes too):
/// `tracing_subscriber::fmt().with_ansi(false).with_writer(|| LogWriter(std::io::stderr()))`.
#[derive(Debug)]
pub struct LogWriter<W>(pub W);

impl<W: io::Write> io::Write for LogWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let safe = line(body);
        self.0.write_all(safe.as_bytes())?;
        self.0.write_all(end.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HOSTILE: &str = "ok\u{1b}[2J\u{0}\u{202e}evil\nfake line\r\u{9b}31m\u{2028}";

    #[test]
    fn a_hostile_reason_becomes_one_visible_line() {
        let l = line(HOSTILE);
        assert_eq!(
            l,
            "ok\\u{1b}[2J\\0\\u{202e}evil\\nfake line\\r\\u{9b}31m\\u{2028}"
        );
        assert!(!l.chars().any(is_unsafe));
        assert_eq!(line(&l), l, "escaping twice changes nothing");
        assert_eq!(line("mail.example.com → é"), "mail.example.com → é");
    }

    #[test]
    fn blocks_keep_their_lines_and_json_keeps_its_meaning() {
        assert_eq!(block("a\nb\u{1b}c\r"), "a\nb\\u{1b}c\\r");
        let v = serde_json::json!({ "why": HOSTILE });
        let safe = json(&serde_json::to_string_pretty(&v).unwrap());
        assert!(!safe.chars().any(|c| is_unsafe(c) && c != '\n'), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn a_log_line_cannot_forge_another() {
        let mut w = LogWriter(Vec::new());
        w.write_all(format!("INFO reason={HOSTILE}\n").as_bytes())
            .unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.ends_with('\n'));
        assert!(!out.trim_end().chars().any(is_unsafe), "{out}");
    }
}
