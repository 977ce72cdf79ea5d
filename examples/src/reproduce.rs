//! The book's deterministic results, recomputed: each printed number beside ours, rounded as the book
//! printed it.

use anyhow::Result;
use ndarray::Array2;
use scratch::foundations::{matrix_function_backward_sum, matrix_function_forward_sum, sigmoid};
use scratch::rng::RandomState;

use crate::boston::BostonResults;
use crate::table::Table;

/// One printed quantity.
#[derive(Clone, Debug)]
pub struct Check {
    /// What it is.
    pub quantity: String,
    /// The book's printed value.
    pub book: f64,
    /// Ours.
    pub ours: f64,
    /// Decimals the book printed.
    pub decimals: usize,
}

impl Check {
    fn new(quantity: impl Into<String>, book: f64, ours: f64, decimals: usize) -> Self {
        Check { quantity: quantity.into(), book, ours, decimals }
    }

    /// Whether ours, rounded like the book's, equals the book's.
    pub fn matches(&self) -> bool {
        format!("{:.*}", self.decimals, self.ours) == format!("{:.*}", self.decimals, self.book)
    }
}

/// Chapter 1: `L = Σ σ(X W)` for the notebook's `X` and `W`, and `dL/dX`.
pub fn chapter1() -> Result<Vec<Check>> {
    let mut rng = RandomState::new(190_204);
    let x: Array2<f64> = rng.randn((3, 3));
    let w: Array2<f64> = rng.randn((3, 2));
    let l = matrix_function_forward_sum(&x, &w, &sigmoid)?;
    let (dl_dx, _) = matrix_function_backward_sum(&x, &w, &sigmoid)?;
    let book_dl_dx = [[0.2489, -0.3748, 0.0112], [0.126, -0.2781, -0.1395], [0.2299, -0.3662, -0.0225]];
    let mut checks = vec![Check::new("ch1 L = sum(sigmoid(X W))", 2.3755, l, 4)];
    for (i, row) in book_dl_dx.iter().enumerate() {
        for (j, &b) in row.iter().enumerate() {
            checks.push(Check::new(format!("ch1 dL/dX[{i},{j}]"), b, dl_dx[[i, j]], 4));
        }
    }
    Ok(checks)
}

/// Chapters 2 and 3: MAE and RMSE of every model the book printed.
pub fn boston(results: &BostonResults) -> Vec<Check> {
    let mut checks = Vec::new();
    for o in &results.outcomes {
        if let Some((mae, rmse, d)) = o.book {
            checks.push(Check::new(format!("{} MAE ({})", o.model, o.engine), mae, o.mae, d));
            checks.push(Check::new(format!("{} RMSE ({})", o.model, o.engine), rmse, o.rmse, d));
        }
    }
    checks
}

/// The checks as a table.
pub fn table(checks: &[Check]) -> Table {
    let mut t = Table::new("The book's printed numbers, recomputed", &["quantity", "book", "ours", "match"]);
    for c in checks {
        t.push(vec![
            c.quantity.clone(),
            format!("{:.*}", c.decimals, c.book),
            format!("{:.*}", c.decimals + 2, c.ours),
            if c.matches() { "yes".into() } else { "NO".into() },
        ]);
    }
    t
}
