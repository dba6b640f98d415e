//! Aligned text tables for the terminal, with verdict words coloured only on a TTY.
//!
//! Widths count characters, not bytes, and colour codes are added after padding so they never
//! disturb the alignment. `NO_COLOR` (any value) turns colour off, as everywhere else. Every
//! cell's text is escaped for the terminal ([`sitewarden_contract::terminal::line`]) when the cell
//! is made, so a value from the bus or the API can neither run escape codes nor add a row; the
//! only escape codes in a table are the colours added here.

use std::io::IsTerminal;

use sitewarden_contract::terminal;

/// A colour for a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// No colour.
    Plain,
    /// Up, healthy, done.
    Good,
    /// Degraded, pending, frozen.
    Warn,
    /// Down, failing, critical.
    Bad,
    /// Unknown, stale.
    Dim,
}

impl Tone {
    fn code(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some("32"),
            Tone::Warn => Some("33"),
            Tone::Bad => Some("31;1"),
            Tone::Dim => Some("2"),
        }
    }

    /// The tone of a verdict or quorum word (`up`, `degraded`, `down`, `unknown`).
    pub fn of_verdict(word: &str) -> Tone {
        match word.to_ascii_lowercase().as_str() {
            "up" | "passing" => Tone::Good,
            "degraded" | "pending" => Tone::Warn,
            "down" | "failing" | "critical" => Tone::Bad,
            "unknown" => Tone::Dim,
            _ => Tone::Plain,
        }
    }
}

/// Whether stdout should get colour.
pub fn colour_on_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// One cell: text and a tone.
#[derive(Debug, Clone)]
pub struct Cell {
    text: String,
    tone: Tone,
}

impl Cell {
    /// A cell with a tone; `text` is escaped for the terminal.
    pub fn toned(text: impl Into<String>, tone: Tone) -> Self {
        Self {
            text: terminal::line(&text.into()),
            tone,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Self {
        Self::toned(text, Tone::Plain)
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Self {
        Self::toned(text, Tone::Plain)
    }
}

/// A table with a header row.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders with two spaces between columns; the last column is not padded.
    pub fn render(&self, colour: bool) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(c.text.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<(&str, Tone)>, out: &mut String| {
            let mut text = String::new();
            for (i, (t, tone)) in cells.iter().enumerate() {
                let last = i + 1 == cells.len();
                let pad = if last {
                    0
                } else {
                    widths[i].saturating_sub(t.chars().count())
                };
                match tone.code().filter(|_| colour) {
                    Some(code) => text.push_str(&format!("\x1b[{code}m{t}\x1b[0m")),
                    None => text.push_str(t),
                }
                if !last {
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(
            self.header
                .iter()
                .map(|h| (h.as_str(), Tone::Plain))
                .collect(),
            &mut out,
        );
        for row in &self.rows {
            let cells = (0..columns)
                .map(|i| {
                    row.get(i)
                        .map_or(("", Tone::Plain), |c| (c.text.as_str(), c.tone))
                })
                .collect();
            line(cells, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_colour_does_not_move_them() {
        let mut t = Table::new(&["SITE", "VERDICT", "NOTE"]);
        t.row(vec![
            "site1".into(),
            Cell::toned("down", Tone::Bad),
            "é".into(),
        ]);
        t.row(vec!["witness".into(), Cell::toned("up", Tone::Good)]);
        let plain = t.render(false);
        assert_eq!(
            plain,
            "SITE     VERDICT  NOTE\nsite1    down     é\nwitness  up\n"
        );
        let coloured = t.render(true);
        assert!(coloured.contains("\x1b[31;1mdown\x1b[0m     é"));
        let stripped = coloured
            .replace("\x1b[31;1m", "")
            .replace("\x1b[32m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, plain);
    }

    #[test]
    fn a_hostile_cell_stays_on_its_row() {
        let mut t = Table::new(&["WHO", "WHY"]);
        t.row(vec!["eve".into(), "x\u{1b}[31m\nfake  row\u{202e}".into()]);
        assert_eq!(
            t.render(true),
            "WHO  WHY\neve  x\\u{1b}[31m\\nfake  row\\u{202e}\n"
        );
    }
}
