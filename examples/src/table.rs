//! Plain-text tables for results.

use std::fmt::Write;

/// A table with a title, column headers and rows of cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Printed above the table.
    pub title: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows, each as long as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table.
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Self {
        Table { title: title.into(), headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    /// Whether every cell of column `j` is a number (or `-`): such columns are right-aligned.
    fn numeric(&self, j: usize) -> bool {
        self.rows.iter().all(|r| {
            let c = r[j].trim_start_matches(['-', '+']);
            c.is_empty() || c.starts_with(|ch: char| ch.is_ascii_digit())
        })
    }

    /// The table as aligned text: numeric columns right-aligned, the others left-aligned.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|j| {
                self.rows
                    .iter()
                    .map(|r| r[j].chars().count())
                    .chain([self.headers[j].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (j, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                let sep = if j == 0 { "" } else { "  " };
                if self.numeric(j) {
                    let _ = write!(s, "{sep}{cell:>w$}");
                } else {
                    let _ = write!(s, "{sep}{cell:<w$}");
                }
            }
            s.trim_end().to_string()
        };
        let rule = "-".repeat(widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1));
        let mut out = format!("{}\n{}\n{}\n", self.title, line(&self.headers), rule);
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}
