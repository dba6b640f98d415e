//! Configuration loading: TOML text to typed values, with errors an operator can act on.
//!
//! Every configuration file is parsed in two steps. First serde reads the TOML into "raw"
//! structs that deny unknown fields; its errors already carry a byte span. Then each binary
//! validates the raw structs into domain types that cannot hold an invalid value. Both steps
//! report a [`ConfigError`] naming the file, the line and the dotted key
//! (`checks[2].interval`), and saying what is allowed. The key-to-line lookup uses `toml_edit`'s
//! spans so validation code only has to say which key is wrong.

pub mod duration;
pub mod secret;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySeg {
    /// `name` in `a.name`.
    Key(String),
    /// `2` in `checks[2]`.
    Index(usize),
}

/// A dotted key path such as `checks[2].interval`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<KeySeg>);

impl KeyPath {
    /// The root of the document.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(KeySeg::Key(k.to_owned()));
        Self(v)
    }

    /// This path extended by an array index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(KeySeg::Index(i));
        Self(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                KeySeg::Key(k) if n == 0 => write!(f, "{k}")?,
                KeySeg::Key(k) => write!(f, ".{k}")?,
                KeySeg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file that holds the problem.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The dotted key, when known.
    pub key: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A loaded configuration file: its path and text, used to locate validation errors.
#[derive(Debug, Clone)]
pub struct Source {
    /// Where the text came from.
    pub path: PathBuf,
    /// The TOML text.
    pub text: String,
}

impl Source {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Ok(Self {
            path: path.to_owned(),
            text,
        })
    }

    /// Wraps text that did not come from a file (embedded defaults, tests).
    pub fn inline(name: &str, text: impl Into<String>) -> Self {
        Self {
            path: PathBuf::from(name),
            text: text.into(),
        }
    }

    /// Deserializes the whole document into raw configuration structs.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let line = e.span().map(|s| self.line_of(s.start));
            ConfigError {
                file: self.path.clone(),
                line,
                key: None,
                message: e.message().trim().to_owned(),
            }
        })
    }

    /// An error about `key`, with the line where that key (or its nearest parent) stands.
    pub fn error(&self, key: &KeyPath, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            line: self.span_of(key).map(|start| self.line_of(start)),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn line_of(&self, byte: usize) -> usize {
        self.text.as_bytes()[..byte.min(self.text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// Byte offset of the deepest part of `key` that exists in the document.
    fn span_of(&self, key: &KeyPath) -> Option<usize> {
        let doc = toml_edit::Document::parse(self.text.as_str()).ok()?;
        let mut item: &toml_edit::Item = doc.as_item();
        let mut best: Option<usize> = None;
        for seg in &key.0 {
            let next = match seg {
                KeySeg::Key(k) => {
                    let table = item.as_table_like()?;
                    let (key, value) = table.get_key_value(k)?;
                    best = key.span().map(|s| s.start).or(best);
                    value
                }
                KeySeg::Index(i) => {
                    if let Some(arr) = item.as_array_of_tables() {
                        let t = arr.get(*i)?;
                        best = t.span().map(|s| s.start).or(best);
                        // Array-of-tables entries are tables; wrap for uniform walking below.
                        return self.span_in_table(t, &key.0, best);
                    }
                    let v = item.as_array()?.get(*i)?;
                    best = v.span().map(|s| s.start).or(best);
                    return best;
                }
            };
            item = next;
        }
        best
    }

    /// Continues [`Self::span_of`] inside an array-of-tables entry.
    fn span_in_table(
        &self,
        table: &toml_edit::Table,
        full: &[KeySeg],
        best: Option<usize>,
    ) -> Option<usize> {
        // Find the position of the first index segment; everything after it is inside `table`.
        let after = full.iter().position(|s| matches!(s, KeySeg::Index(_)))? + 1;
        let mut best = best;
        let mut current: &dyn toml_edit::TableLike = table;
        for seg in &full[after..] {
            match seg {
                KeySeg::Key(k) => {
                    let Some((key, value)) = current.get_key_value(k) else {
                        return best;
                    };
                    best = key.span().map(|s| s.start).or(best);
                    match value.as_table_like() {
                        Some(t) => current = t,
                        None => return best,
                    }
                }
                KeySeg::Index(_) => return best,
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        name: String,
        #[serde(default)]
        checks: Vec<RawCheck>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawCheck {
        name: String,
        interval: Option<String>,
    }

    const DOC: &str =
        "name = \"x\"\n\n[[checks]]\nname = \"a\"\n\n[[checks]]\nname = \"b\"\ninterval = \"0s\"\n";

    #[test]
    fn validation_errors_point_at_the_key_line() {
        let src = Source::inline("agent.toml", DOC);
        let err = src.error(
            &KeyPath::root().key("checks").index(1).key("interval"),
            "use at least 500ms",
        );
        assert_eq!(err.line, Some(8));
        assert_eq!(
            err.to_string(),
            "config agent.toml line 8: `checks[1].interval`: use at least 500ms"
        );
        let top = src.error(&KeyPath::root().key("name"), "bad");
        assert_eq!(top.line, Some(1));
    }

    #[test]
    fn a_valid_document_parses() {
        let raw: Raw = Source::inline("agent.toml", DOC).parse().unwrap();
        assert_eq!(raw.name, "x");
        let names: Vec<&str> = raw.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(raw.checks[1].interval.as_deref(), Some("0s"));
    }

    #[test]
    fn unknown_fields_name_the_line() {
        let src = Source::inline(
            "agent.toml",
            "name = \"x\"\n[[checks]]\nname = \"a\"\nintervall = \"2s\"\n",
        );
        let err = src.parse::<Raw>().unwrap_err();
        assert_eq!(err.line, Some(4));
        assert!(
            err.message.contains("unknown field `intervall`"),
            "{}",
            err.message
        );
    }
}
