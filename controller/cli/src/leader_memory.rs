//! Where the CLI last found the leader, so the next command asks it first.
//!
//! A pair is given as two URLs; reads are answered by either controller, but the leader's
//! answer is the one that acts, and a dead or black-holed first URL would otherwise cost a
//! timeout on every command. The file `$XDG_STATE_HOME/sitewarden/leaders` (or
//! `~/.local/state/sitewarden/leaders`) holds the base URLs of leaders that answered, most
//! recent first, one per line, at most [`KEEP`]. It holds no secret. Failing to read or write
//! it changes nothing but the order in which controllers are asked.

use std::path::{Path, PathBuf};

use reqwest::Url;

/// How many leader URLs are remembered (one per pair an operator talks to).
pub const KEEP: usize = 16;

/// The memory file's path, when a home or state directory is known.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        })?;
    Some(base.join("sitewarden").join("leaders"))
}

/// The remembered leader URLs, most recent first; empty when there is no file.
pub fn read(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .take(KEEP)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `urls` with the most recently remembered leader among them first; the rest keep their
/// order.
pub fn order(urls: &[Url], remembered: &[String]) -> Vec<Url> {
    let first = remembered
        .iter()
        .find_map(|r| urls.iter().position(|u| u.as_str() == r));
    let mut out = urls.to_vec();
    if let Some(i) = first {
        let leader = out.remove(i);
        out.insert(0, leader);
    }
    out
}

/// `remembered` with `leader` moved to the front, cut to [`KEEP`].
pub fn remember(remembered: &[String], leader: &Url) -> Vec<String> {
    let mut out = vec![leader.as_str().to_owned()];
    out.extend(
        remembered
            .iter()
            .filter(|r| r.as_str() != leader.as_str())
            .take(KEEP - 1)
            .cloned(),
    );
    out
}

/// Writes the list (through a temporary file and a rename, so a reader never sees half of
/// it); errors are reported to the caller, which ignores them.
pub fn write(path: &Path, remembered: &[String]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, remembered.join("\n") + "\n")?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<Url> {
        list.iter().map(|u| Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn the_remembered_leader_is_asked_first_and_the_rest_keep_their_order() {
        let pair = urls(&["http://a:9465/", "http://b:9465/", "http://c:9465/"]);
        let none = order(&pair, &[]);
        assert_eq!(none, pair);
        let remembered = vec!["http://x:9465/".to_owned(), "http://c:9465/".to_owned()];
        let got = order(&pair, &remembered);
        assert_eq!(
            got,
            urls(&["http://c:9465/", "http://a:9465/", "http://b:9465/"])
        );
    }

    #[test]
    fn remembering_moves_a_leader_to_the_front_and_keeps_the_list_short() {
        let many: Vec<String> = (0..40).map(|i| format!("http://h{i}:9465/")).collect();
        let leader = Url::parse("http://h7:9465/").unwrap();
        let got = remember(&many, &leader);
        assert_eq!(got.len(), KEEP);
        assert_eq!(got[0], "http://h7:9465/");
        assert_eq!(got.iter().filter(|u| *u == "http://h7:9465/").count(), 1);
    }

    #[test]
    fn the_file_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/sitewarden/leaders");
        assert!(read(&path).is_empty());
        write(&path, &["http://a:9465/".to_owned()]).unwrap();
        assert_eq!(read(&path), vec!["http://a:9465/".to_owned()]);
    }
}
