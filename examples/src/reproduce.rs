//! The book's deterministic results, recomputed: each printed number beside ours, rounded as the book
//! printed it.

use anyhow::Result;
use ndarray::{array, Array1, Array2, Array3, Array4};
use scratch::calculus::{matrix_function_backward_sum, matrix_function_forward_sum, sigmoid};
use scratch::conv::loops::{
    conv_1d_batch, conv_1d_sum, conv_2d, input_grad_1d, input_grad_2d, input_grad_2d_multi, param_grad_1d,
    param_grad_1d_batch, param_grad_2d, param_grad_2d_multi,
};
use scratch::conv::{Pool2D, PoolKind};
use scratch::ops::{Mode, Operation};
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

/// Chapter 5: the convolution notebook's 1-D and 2-D numbers from the loop convolutions (sums, input
/// and kernel gradients, and its finite-difference checks with the same random draws), and the math
/// notebook's pooling example.
///
/// # Errors
/// A shape error in the loops (none for these inputs).
pub fn chapter5() -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let mut push = |what: &str, book: &[f64], ours: &[f64], decimals: usize| {
        for (i, (&b, &o)) in book.iter().zip(ours).enumerate() {
            let index = if book.len() > 1 { format!("[{i}]") } else { String::new() };
            checks.push(Check::new(format!("ch5 {what}{index}"), b, o, decimals));
        }
    };
    let input = array![1.0, 2.0, 3.0, 4.0, 5.0];
    let param = array![1.0, 1.0, 1.0];
    let ones = Array1::ones(5);
    push("conv_1d_sum([1..5], [1,1,1])", &[39.0], &[conv_1d_sum(&input, &param)], 1);
    push(
        "input_grad_1d",
        &[2.0, 3.0, 3.0, 3.0, 2.0],
        input_grad_1d(&input, &param, &ones).as_slice().unwrap_or(&[]),
        0,
    );
    push("param_grad_1d", &[10.0, 15.0, 14.0], param_grad_1d(&input, &param, &ones).as_slice().unwrap_or(&[]), 0);
    let batch = array![[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]];
    push("conv_1d_batch sum", &[133.0], &[conv_1d_batch(&batch, &param).sum()], 1);
    let grad = param_grad_1d_batch(&batch, &param, &Array2::ones((2, 7)));
    push("param_grad_1d_batch", &[36.0, 49.0, 48.0], grad.as_slice().unwrap_or(&[]), 0);

    // The notebook's generator after its randint draws 4, 0, 0, 2, 2.
    let mut rng = RandomState::new(190_220);
    for high in [5, 3, 2, 7, 3] {
        rng.randint(0, high)?;
    }
    let imgs: Array3<f64> = rng.randn((3, 28, 28));
    let kernel: Array2<f64> = rng.randn((3, 3));
    let ones = Array3::ones((3, 28, 28));
    let (i, j, k) = (rng.randint(0, 3)? as usize, rng.randint(0, 28)? as usize, rng.randint(0, 28)? as usize);
    push(
        "2-D input gradient (analytic)",
        &[-3.184347739859924],
        &[input_grad_2d(&imgs, &kernel, &ones)[[i, j, k]]],
        14,
    );
    let mut bumped = imgs.clone();
    bumped[[i, j, k]] += 1.0;
    let perturbed = conv_2d(&bumped, &kernel).sum() - conv_2d(&imgs, &kernel).sum();
    push("2-D input gradient (perturbation)", &[-3.1843477398599163], &[perturbed], 10);
    let (a, b) = (rng.randint(0, 3)? as usize, rng.randint(0, 3)? as usize);
    push("2-D kernel gradient (analytic)", &[5.533490159230001], &[param_grad_2d(&imgs, &kernel, &ones)[[a, b]]], 14);

    let cifar: Array4<f64> = rng.randn((10, 3, 32, 32));
    let kernels: Array4<f64> = rng.randn((3, 16, 5, 5));
    let at =
        [10, 3, 32, 32, 3, 16, 5, 5].iter().map(|&h| Ok(rng.randint(0, h)? as usize)).collect::<Result<Vec<_>>>()?;
    let ones = Array4::ones((10, 16, 32, 32));
    let g = input_grad_2d_multi(&cifar, &kernels, &ones)[[at[0], at[1], at[2], at[3]]];
    push("multi-channel input gradient", &[2.3452987587074423], &[g], 14);
    let g = param_grad_2d_multi(&cifar, &kernels, &ones)[[at[4], at[5], at[6], at[7]]];
    push("multi-channel kernel gradient", &[-47.0912312415532], &[g], 12);

    // Math notebook: np.random.seed(20190420); randint(0, 10, (4, 4)), pooled in 2 x 2 blocks.
    let mut rng = RandomState::new(20_190_420);
    let grid = (0..16).map(|_| Ok(rng.randint(0, 10)? as f64)).collect::<Result<Vec<_>>>()?;
    let x = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[1, 1, 4, 4]), grid)?;
    for (kind, book) in [(PoolKind::Average, [3.5, 4.25, 5.0, 3.0]), (PoolKind::Max, [5.0, 6.0, 9.0, 7.0])] {
        let pooled = Pool2D::<f64>::new(kind, 2, 2)?.forward(x.clone(), Mode::Eval)?;
        push(&format!("{kind:?} pooling"), &book, &pooled.iter().copied().collect::<Vec<_>>(), 2);
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
