//! A network's description as a table: one row per node, indented by depth, with its output shape and
//! its parameters.

/// One row of a summary.
pub(crate) struct Row {
    /// How deep the node is (0: the root).
    pub depth: usize,
    /// Its name in its parent, empty for the root and inline nodes.
    pub label: String,
    /// What it is.
    pub what: String,
    /// Its output's shape, where known.
    pub output: Option<Vec<usize>>,
    /// Its own parameters (a container's are its children's).
    pub parameters: usize,
}

/// The table: a header, the rows, and a line with the total (and the ties, if any).
pub(crate) fn render(input: &[usize], rows: &[Row], total: usize, ties: &[String]) -> String {
    let name = |row: &Row| {
        let label = if row.label.is_empty() { "·" } else { &row.label };
        format!("{}{label}", "  ".repeat(row.depth))
    };
    let output = |row: &Row| row.output.as_ref().map_or_else(|| "?".to_string(), |s| format!("{s:?}"));
    let count = |row: &Row| if row.parameters == 0 { String::new() } else { row.parameters.to_string() };
    let width =
        |f: &dyn Fn(&Row) -> String, title: &str| rows.iter().map(|r| f(r).len()).max().unwrap_or(0).max(title.len());
    let (wn, ww, wo, wp) = (
        width(&name, "name"),
        width(&|r: &Row| r.what.clone(), "layer"),
        width(&output, "output"),
        width(&count, "parameters"),
    );
    let mut lines = vec![
        format!("input {input:?}"),
        format!("{:wn$}  {:ww$}  {:wo$}  {:>wp$}", "name", "layer", "output", "parameters"),
    ];
    lines.extend(rows.iter().map(|r| {
        format!("{:wn$}  {:ww$}  {:wo$}  {:>wp$}", name(r), r.what, output(r), count(r)).trim_end().to_string()
    }));
    let tied = if ties.is_empty() { String::new() } else { format!(" (tied: {})", ties.join(", ")) };
    lines.push(format!("{total} parameters{tied}"));
    lines.join("\n")
}
