//! Loss functions: a scalar measuring how far predictions are from targets, and its gradient with
//! respect to the predictions.

use ndarray::{ArrayD, Axis, Zip};

use crate::{Error, Float, Result};

/// A loss `L(prediction, target)`.
pub trait Loss<F: Float>: Send {
    /// The loss's name (`"MeanSquaredError"`).
    fn name(&self) -> &'static str;

    /// Computes the loss, caching what [`Loss::backward`] needs.
    fn forward(&mut self, prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<F>;

    /// `∂L/∂prediction` for the last forward pass, shaped like the prediction.
    fn backward(&mut self) -> Result<ArrayD<F>>;
}

impl<F: Float> Loss<F> for Box<dyn Loss<F>> {
    fn name(&self) -> &'static str {
        self.as_ref().name()
    }

    fn forward(&mut self, prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<F> {
        self.as_mut().forward(prediction, target)
    }

    fn backward(&mut self) -> Result<ArrayD<F>> {
        self.as_mut().backward()
    }
}

/// `a` as rows of its last axis: `(N, C)` with `N` the product of the other axes.
fn as_rows<'a, F: Float>(a: &'a ArrayD<F>, context: &str) -> Result<ndarray::CowArray<'a, F, ndarray::Ix2>> {
    let bad = || Error::shape(context, "(rows, classes) or (batch, time, classes)", a.shape());
    let classes = *a.shape().last().filter(|_| a.ndim() >= 2).ok_or_else(bad)?;
    a.to_shape((a.len() / classes.max(1), classes)).map_err(|_| bad())
}

fn check_same_shape<F>(loss: &str, prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<()> {
    if prediction.shape() != target.shape() {
        return Err(Error::shape(
            format!("{loss}: target"),
            format!("the prediction's shape {:?}", prediction.shape()),
            target.shape(),
        ));
    }
    if prediction.is_empty() {
        return Err(Error::InvalidArgument(format!("{loss}: empty batch")));
    }
    Ok(())
}

/// What a mean squared error divides the sum of squares by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MseReduction {
    /// The book's convention: divide by the number of rows (the batch size), `Σ (p − y)² / N`.
    /// For one output column this is the usual mean; for ten it is ten times the element mean.
    Rows,
    /// PyTorch's `nn.MSELoss()`: divide by the number of elements.
    Elements,
}

/// Mean squared error.
///
/// ```text
/// L = Σ (p − y)² / D,   ∂L/∂p = 2 (p − y) / D,   D = N (rows) or N·C (elements)
/// ```
pub struct MeanSquaredError<F> {
    reduction: MseReduction,
    /// `(p − y)` and the divisor from the last forward pass.
    cache: Option<(ArrayD<F>, F)>,
}

impl<F: Float> MeanSquaredError<F> {
    /// The book's mean squared error, `Σ (p − y)² / N`.
    pub fn new() -> Self {
        Self::with_reduction(MseReduction::Rows)
    }

    /// A mean squared error with the given reduction.
    pub fn with_reduction(reduction: MseReduction) -> Self {
        MeanSquaredError { reduction, cache: None }
    }
}

impl<F: Float> Default for MeanSquaredError<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Float> Loss<F> for MeanSquaredError<F> {
    fn name(&self) -> &'static str {
        "MeanSquaredError"
    }

    fn forward(&mut self, prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<F> {
        check_same_shape(self.name(), prediction, target)?;
        let divisor = match self.reduction {
            MseReduction::Rows => prediction.shape()[0],
            MseReduction::Elements => prediction.len(),
        };
        let divisor = F::cast(divisor as f64);
        let diff = prediction - target;
        let loss = diff.iter().map(|&d| d * d).sum::<F>() / divisor;
        self.cache = Some((diff, divisor));
        Ok(loss)
    }

    fn backward(&mut self) -> Result<ArrayD<F>> {
        let (diff, divisor) = self.cache.as_ref().ok_or_else(|| crate::ops::no_forward(self.name()))?;
        let scale = F::cast(2.0) / *divisor;
        Ok(diff * scale)
    }
}

/// What a [`SoftmaxCrossEntropy`] reports as its value (its gradient is the same either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossEntropyValue {
    /// Categorical cross-entropy averaged over the batch, `−Σ y log p / N`: the loss the gradient belongs
    /// to, and PyTorch's `cross_entropy`.
    Categorical,
    /// The book's printed number: binary cross-entropy on every class of the clipped softmax,
    /// `Σ [−y log p − (1 − y) log(1 − p)] / N` with `p` clipped to `[1e-9, 1 − 1e-9]`. It is not the loss
    /// the gradient belongs to (BOOK.md §4, item 6); use it only to compare with the book's printouts.
    BookBinarySum,
}

/// Softmax followed by cross-entropy, on logits and one-hot (or probability) targets of the same shape,
/// the classes on the last axis: `(N, C)`, or `(batch, time, C)` for sequences, whose `batch · time`
/// positions are then the `N` rows.
///
/// ```text
/// log p = x − logsumexp(x)               (row-wise, stable for any magnitude of x)
/// L     = −Σ y ⊙ log p / N               (or without / N, summed: the book's chapter 6)
/// ∂L/∂x = (p − y) / N
/// ```
pub struct SoftmaxCrossEntropy<F> {
    value: CrossEntropyValue,
    summed: bool,
    /// `(p − y) / N` from the last forward pass.
    grad: Option<ArrayD<F>>,
}

impl<F: Float> SoftmaxCrossEntropy<F> {
    /// Softmax cross-entropy reporting the categorical cross-entropy averaged over the rows.
    pub fn new() -> Self {
        Self::reporting(CrossEntropyValue::Categorical)
    }

    /// Softmax cross-entropy reporting `value`.
    pub fn reporting(value: CrossEntropyValue) -> Self {
        SoftmaxCrossEntropy { value, summed: false, grad: None }
    }

    /// Summed over the rows instead of averaged (the book's chapter-6 loss over batch × time).
    pub fn summed() -> Self {
        SoftmaxCrossEntropy { value: CrossEntropyValue::Categorical, summed: true, grad: None }
    }
}

impl<F: Float> Default for SoftmaxCrossEntropy<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Float> Loss<F> for SoftmaxCrossEntropy<F> {
    fn name(&self) -> &'static str {
        "SoftmaxCrossEntropy"
    }

    fn forward(&mut self, prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<F> {
        check_same_shape(self.name(), prediction, target)?;
        let x = as_rows(prediction, "SoftmaxCrossEntropy: prediction")?;
        let rows = x.nrows();
        let n = if self.summed { F::one() } else { F::cast(rows as f64) };
        let mut log_p = x.into_owned();
        for mut row in log_p.axis_iter_mut(Axis(0)) {
            let max = row.iter().copied().fold(F::neg_infinity(), F::max);
            let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<F>().ln();
            row.mapv_inplace(|v| v - lse);
        }
        let y = as_rows(target, "SoftmaxCrossEntropy: target")?;
        let loss = match self.value {
            CrossEntropyValue::Categorical => -Zip::from(&log_p).and(&y).fold(F::zero(), |acc, &lp, &t| acc + t * lp),
            // In f64 whatever F is: in f32, 1 − 1e-9 rounds to 1 and log(1 − p) to −∞.
            CrossEntropyValue::BookBinarySum => F::cast(Zip::from(&log_p).and(&y).fold(0.0, |acc, &lp, &t| {
                let (p, t) = (lp.as_f64().exp().clamp(1e-9, 1.0 - 1e-9), t.as_f64());
                acc - t * p.ln() - (1.0 - t) * (1.0 - p).ln()
            })),
        } / n;
        let mut grad = log_p;
        Zip::from(&mut grad).and(&y).for_each(|g, &t| *g = (g.exp() - t) / n);
        self.grad = Some(grad.into_shape_with_order(prediction.raw_dim()).expect("same size"));
        Ok(loss)
    }

    fn backward(&mut self) -> Result<ArrayD<F>> {
        self.grad.clone().ok_or_else(|| crate::ops::no_forward(self.name()))
    }
}
