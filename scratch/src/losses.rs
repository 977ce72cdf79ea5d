//! Loss functions: a scalar measuring how far predictions are from targets, and its gradient with
//! respect to the predictions.

use ndarray::{Array2, ArrayD, Axis, IxDyn, Zip};

pub use crate::spec::{CrossEntropyValue, LossSpec, MseReduction, Reduction};
use crate::{simd, Error, Float, Result};

/// A loss `L(prediction, target)`.
pub trait Loss<F: Float>: Send {
    /// The loss's name (`"MeanSquaredError"`).
    fn name(&self) -> &'static str;

    /// Computes the loss, caching what [`Loss::backward`] needs.
    fn forward(&mut self, prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<F>;

    /// `∂L/∂prediction` for the last forward pass, shaped like the prediction.
    fn backward(&mut self) -> Result<ArrayD<F>>;

    /// Whether the targets are classes, so that an accuracy means something.
    fn classifies(&self) -> bool {
        false
    }
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

    fn classifies(&self) -> bool {
        self.as_ref().classifies()
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

/// Mean squared error.
///
/// ```text
/// L = Σ (p − y)² / D,   ∂L/∂p = 2 (p − y) / D,   D = N (rows, the book's), N·C (mean, PyTorch's) or 1 (sum)
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
            MseReduction::Mean => prediction.len(),
            MseReduction::Sum => 1,
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

/// Softmax followed by cross-entropy on logits, the classes on the last axis: `(N, C)`, or
/// `(batch, time, C)` for sequences, whose `batch · time` positions are then the `N` rows. The targets
/// are, as for PyTorch's `cross_entropy`, either one-hot rows (or probabilities) of the prediction's
/// shape, or class indices shaped like the prediction without its last axis (`(N,)`, `(batch, time)`),
/// given as whole numbers in `0..C`.
///
/// ```text
/// log p = x − logsumexp(x)               (row-wise, stable for any magnitude of x)
/// L     = −Σ y ⊙ log p / N               (Reduction::Mean; without / N for Reduction::Sum)
/// ∂L/∂x = (p − y) / N
/// ```
///
/// ```
/// use ndarray::array;
/// use scratch::losses::{Loss, SoftmaxCrossEntropy};
///
/// let logits = array![[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]].into_dyn();
/// let one_hot = array![[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]].into_dyn();
/// let indices = array![0.0, 2.0].into_dyn();
/// let mut loss = SoftmaxCrossEntropy::<f64>::new();
/// let a = loss.forward(&logits, &one_hot)?;
/// let b = loss.forward(&logits, &indices)?;
/// assert!((a - b).abs() < 1e-15);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct SoftmaxCrossEntropy<F> {
    value: CrossEntropyValue,
    reduction: Reduction,
    /// `(p − y) / N` from the last forward pass.
    grad: Option<ArrayD<F>>,
}

impl<F: Float> SoftmaxCrossEntropy<F> {
    /// Softmax cross-entropy reporting the categorical cross-entropy averaged over the rows.
    pub fn new() -> Self {
        Self::with(Reduction::Mean, CrossEntropyValue::Categorical)
    }

    /// Softmax cross-entropy reporting `value`, averaged over the rows.
    pub fn reporting(value: CrossEntropyValue) -> Self {
        Self::with(Reduction::Mean, value)
    }

    /// Softmax cross-entropy with the given reduction and reported value.
    pub fn with(reduction: Reduction, value: CrossEntropyValue) -> Self {
        SoftmaxCrossEntropy { value, reduction, grad: None }
    }
}

impl<F: Float> Default for SoftmaxCrossEntropy<F> {
    fn default() -> Self {
        Self::new()
    }
}

/// The targets of a softmax cross-entropy as `(N, C)` probability rows: `target` itself when it has the
/// prediction's shape, or the one-hot rows of its class indices when it has the prediction's shape
/// without the last axis.
///
/// # Errors
/// Any other shape, or an index that is not a whole number in `0..C`.
pub fn class_targets<F: Float>(prediction: &[usize], target: &ArrayD<F>) -> Result<Array2<F>> {
    let loss = "SoftmaxCrossEntropy";
    let classes = *prediction.last().filter(|_| prediction.len() >= 2).ok_or_else(|| {
        Error::shape(format!("{loss}: prediction"), "(rows, classes) or (batch, time, classes)", prediction)
    })?;
    let rows = prediction.iter().product::<usize>() / classes.max(1);
    if target.shape() == prediction {
        return Ok(target
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((rows, classes))
            .expect("same number of values"));
    }
    if target.shape() != &prediction[..prediction.len() - 1] {
        return Err(Error::shape(
            format!("{loss}: target"),
            format!(
                "one-hot rows of the prediction's shape {prediction:?} or class indices of shape {:?}",
                &prediction[..prediction.len() - 1]
            ),
            target.shape(),
        ));
    }
    let mut one_hot = Array2::zeros((rows, classes));
    for (mut row, &index) in one_hot.rows_mut().into_iter().zip(target.iter()) {
        let i = index.as_f64();
        if !(i >= 0.0 && i < classes as f64 && i.fract() == 0.0) {
            return Err(Error::InvalidArgument(format!(
                "{loss}: target class index {i} is not a whole number in 0..{classes}"
            )));
        }
        row[i as usize] = F::one();
    }
    Ok(one_hot)
}

/// The book's printed value for each row of logits `x` against targets `y`, both `(N, C)`:
/// `Σ_c [−y log p − (1 − y) log(1 − p)]` with `p` the softmax clipped to `[1e-9, 1 − 1e-9]`, computed in
/// f64 without cancellation: `1 − p_j` is the sum of the other classes' probabilities (not a
/// difference, which near `p = 1` keeps only a few digits), and clipping `p` is clamping both
/// logarithms to `[ln 1e-9, ln(1 − 1e-9)]`. The libtorch engine computes it the same way.
fn book_binary_rows<F: Float>(x: &ndarray::ArrayView2<'_, F>, y: &Array2<F>) -> Vec<f64> {
    let (lo, hi) = (1e-9f64.ln(), (-1e-9f64).ln_1p());
    x.outer_iter()
        .zip(y.outer_iter())
        .map(|(row, targets)| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.as_f64()));
            let e: Vec<f64> = row.iter().map(|v| (v.as_f64() - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            // others[j] = Σ_{i ≠ j} e_i, from exclusive prefix and suffix sums.
            let mut others = vec![0.0; e.len()];
            let mut prefix = 0.0;
            for (o, &v) in others.iter_mut().zip(&e) {
                *o = prefix;
                prefix += v;
            }
            let mut suffix = 0.0;
            for (o, &v) in others.iter_mut().zip(&e).rev() {
                *o += suffix;
                suffix += v;
            }
            e.iter().zip(&others).zip(&targets).fold(0.0, |total, ((&v, &o), &t)| {
                let (log_p, log_q) = ((v / sum).ln().clamp(lo, hi), (o / sum).ln().clamp(lo, hi));
                let t = t.as_f64();
                total - t * log_p - (1.0 - t) * log_q
            })
        })
        .collect()
}

/// `softmax` of every row of `x`, `(N, C)`, and each row's `logsumexp`, stable for any magnitude:
/// `e = exp(x − max)`, `p = e / Σ e`, `logsumexp = max + log Σ e` (each exponential computed once).
fn softmax_rows<F: Float>(x: &ndarray::ArrayView2<'_, F>) -> (Array2<F>, ndarray::Array1<F>) {
    let mut p = x.as_standard_layout().into_owned();
    let mut lse = ndarray::Array1::zeros(p.nrows());
    Zip::from(p.rows_mut()).and(&mut lse).par_for_each(|mut row, lse| {
        let row = row.as_slice_mut().expect("standard layout");
        let max = row.iter().copied().fold(F::neg_infinity(), F::max);
        simd::for_each(row, |v| *v = (*v - max).exp_fast());
        let sum = row.iter().copied().sum::<F>();
        simd::for_each(row, |e| *e /= sum);
        *lse = max + sum.ln();
    });
    (p, lse)
}

/// `log softmax` of every row of `x`, `(N, C)`, stable for any magnitude: `x − logsumexp(x)`, with the
/// `logsumexp` of [`softmax_rows`].
fn log_softmax_rows<F: Float>(x: &ndarray::ArrayView2<'_, F>) -> Array2<F> {
    let (_, lse) = softmax_rows(x);
    x - &lse.insert_axis(Axis(1))
}

/// The value of every row: `−Σ_c y log p` or the book's printed value.
fn cross_entropy_rows<F: Float>(
    value: CrossEntropyValue,
    x: &ndarray::ArrayView2<'_, F>,
    log_p: &Array2<F>,
    y: &Array2<F>,
) -> Vec<F> {
    match value {
        CrossEntropyValue::Categorical => log_p
            .outer_iter()
            .zip(y.outer_iter())
            .map(|(lp, t)| -lp.iter().zip(&t).fold(F::zero(), |acc, (&lp, &t)| acc + t * lp))
            .collect(),
        // In f64 whatever F is: in f32, 1 − 1e-9 rounds to 1 and log(1 − p) to −∞.
        CrossEntropyValue::BookBinarySum => book_binary_rows(x, y).into_iter().map(F::cast).collect(),
    }
}

/// PyTorch's `reduction='none'`: the loss of every element of a mean squared error, `(p − y)²` shaped
/// like the prediction, or of every row of a softmax cross-entropy (the prediction's shape without its
/// last axis). Reducing it as the loss's reduction says gives the loss's value; no gradient is kept.
///
/// ```
/// use ndarray::array;
/// use scratch::losses::{unreduced, LossSpec};
///
/// let logits = array![[2.0, 0.0], [0.0, 3.0]].into_dyn();
/// let per_row = unreduced(LossSpec::CROSS_ENTROPY_SUM, &logits, &array![0.0, 1.0].into_dyn())?;
/// assert_eq!(per_row.shape(), &[2]);
/// assert!((per_row.sum() - LossSpec::CROSS_ENTROPY_SUM.build::<f64>().forward(&logits, &array![0.0, 1.0].into_dyn())?).abs() < 1e-15);
/// # Ok::<(), scratch::Error>(())
/// ```
///
/// # Errors
/// As the loss's forward pass: targets of another shape, an empty batch, a bad class index.
pub fn unreduced<F: Float>(spec: LossSpec, prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<ArrayD<F>> {
    match spec {
        LossSpec::MeanSquaredError(_) => {
            check_same_shape("MeanSquaredError", prediction, target)?;
            Ok((prediction - target).mapv(|d| d * d))
        }
        LossSpec::SoftmaxCrossEntropy { value, .. } => {
            if prediction.is_empty() {
                return Err(Error::InvalidArgument("SoftmaxCrossEntropy: empty batch".into()));
            }
            let y = class_targets(prediction.shape(), target)?;
            let x = as_rows(prediction, "SoftmaxCrossEntropy: prediction")?;
            let rows = cross_entropy_rows(value, &x.view(), &log_softmax_rows(&x.view()), &y);
            let shape = &prediction.shape()[..prediction.ndim() - 1];
            Ok(ArrayD::from_shape_vec(IxDyn(shape), rows).expect("one value per row"))
        }
    }
}

impl<F: Float> Loss<F> for SoftmaxCrossEntropy<F> {
    fn name(&self) -> &'static str {
        "SoftmaxCrossEntropy"
    }

    fn forward(&mut self, prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<F> {
        if prediction.is_empty() {
            return Err(Error::InvalidArgument(format!("{}: empty batch", self.name())));
        }
        let y = class_targets(prediction.shape(), target)?;
        let x = as_rows(prediction, "SoftmaxCrossEntropy: prediction")?;
        let n = match self.reduction {
            Reduction::Mean => F::cast(x.nrows() as f64),
            Reduction::Sum => F::one(),
        };
        let (mut grad, lse) = softmax_rows(&x.view());
        // Row by row, in parallel: −Σ_c y log p, and the gradient (p − y) / N.
        let categorical = self.value == CrossEntropyValue::Categorical;
        let mut rows = ndarray::Array1::zeros(x.nrows());
        Zip::from(grad.rows_mut()).and(x.rows()).and(y.rows()).and(&lse).and(&mut rows).par_for_each(
            |mut grad, x, y, &lse, row| {
                if categorical {
                    *row = -Zip::from(&x).and(&y).fold(F::zero(), |acc, &v, &t| acc + t * (v - lse));
                }
                grad.zip_mut_with(&y, |g, &t| *g = (*g - t) / n);
            },
        );
        let loss = match self.value {
            CrossEntropyValue::Categorical => rows.sum(),
            // In f64 whatever F is, and summed in f64 (the rows' values are f64).
            CrossEntropyValue::BookBinarySum => F::cast(book_binary_rows(&x.view(), &y).iter().sum()),
        } / n;
        self.grad = Some(grad.into_shape_with_order(IxDyn(prediction.shape())).expect("same size"));
        Ok(loss)
    }

    fn backward(&mut self) -> Result<ArrayD<F>> {
        self.grad.clone().ok_or_else(|| crate::ops::no_forward(self.name()))
    }

    fn classifies(&self) -> bool {
        true
    }
}

impl LossSpec {
    /// The from-scratch loss this describes.
    pub fn build<F: Float>(self) -> Box<dyn Loss<F>> {
        match self {
            LossSpec::MeanSquaredError(reduction) => Box::new(MeanSquaredError::with_reduction(reduction)),
            LossSpec::SoftmaxCrossEntropy { reduction, value } => Box::new(SoftmaxCrossEntropy::with(reduction, value)),
        }
    }
}
