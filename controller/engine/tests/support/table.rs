//! Table tests: every row is a named case of inputs → expected result, in the manner of
//! raft-rs's `quorum/testdata`. A table runs every row, collects the rows whose result differs
//! from the expected one, and fails once with each of them: its name, its inputs, what was
//! expected and what came out.

use std::fmt::Debug;

/// The mismatches found while running one table.
pub struct Table {
    /// The table's name, for the failure message.
    name: &'static str,
    /// Rows run so far.
    rows: usize,
    /// One paragraph per failing row.
    failures: Vec<String>,
}

impl Table {
    /// An empty run of the table `name`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            rows: 0,
            failures: Vec::new(),
        }
    }

    /// Records row `row`: fails it unless `got == want`.
    pub fn check<T: PartialEq + Debug>(
        &mut self,
        row: &str,
        inputs: &dyn Debug,
        want: &T,
        got: &T,
    ) {
        self.rows += 1;
        if want != got {
            self.failures.push(format!(
                "row `{row}`\n  inputs: {inputs:?}\n  want:   {want:?}\n  got:    {got:?}"
            ));
        }
    }

    /// Panics with every failing row, if any.
    pub fn finish(self) {
        assert!(self.rows > 0, "table `{}` has no rows", self.name);
        if !self.failures.is_empty() {
            panic!(
                "table `{}`: {} of {} rows failed\n\n{}",
                self.name,
                self.failures.len(),
                self.rows,
                self.failures.join("\n\n")
            );
        }
    }
}

/// Fails the table if two of its rows share a name (a copied row that was never renamed).
pub fn assert_unique_names<'a>(table: &str, names: impl IntoIterator<Item = &'a str>) {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        assert!(
            seen.insert(n),
            "table `{table}`: row name `{n}` is used twice"
        );
    }
}
