//! Chapter 2, Fundamentals: linear regression and a two-layer network written out step by step, every
//! intermediate kept and every derivative spelled out, before chapter 3 wraps them in abstractions.
//!
//! Both models are trained by [`train`], the chapter's loop: draw the initial weights, permute the
//! training rows, then repeatedly take the next contiguous batch (re-permuting whenever the rows are
//! used up) and step down the gradient.
//!
//! The training gradients are those of the *summed* squared error, as in the book: linear regression
//! differentiates `Σ (y − P)²` and the network `½ Σ (y − P)²`, not the printed mean. That only rescales
//! the learning rate, so it is kept. The book's network also collapses the hidden bias gradient to a
//! single number shared by every hidden unit; that is a bug, reproduced only with
//! [`BiasGradient::BookCollapsed`].

use ndarray::{s, Array2, ArrayView2, Axis};

use crate::rng::RandomState;
use crate::{Error, Float, Result};

/// The weights of linear regression, `P = X W + B`.
#[derive(Clone, Debug)]
pub struct LinearRegression<F> {
    /// `(features, 1)`.
    pub w: Array2<F>,
    /// `(1, 1)`.
    pub b: Array2<F>,
}

/// The forward pass of [`LinearRegression`], every intermediate kept.
#[derive(Clone, Debug)]
pub struct LinearForward<F> {
    /// The batch, `(batch, features)`.
    pub x: Array2<F>,
    /// `N = X W`, `(batch, 1)`.
    pub n: Array2<F>,
    /// `P = N + B`, `(batch, 1)`.
    pub p: Array2<F>,
    /// The targets, `(batch, 1)`.
    pub y: Array2<F>,
}

/// Gradients of [`LinearRegression`]'s weights.
#[derive(Clone, Debug)]
pub struct LinearGradients<F> {
    /// `∂L/∂W`, `(features, 1)`.
    pub w: Array2<F>,
    /// `∂L/∂B`, `(1, 1)`.
    pub b: Array2<F>,
}

fn check_batch<F>(x: &ArrayView2<F>, y: &ArrayView2<F>, features: usize) -> Result<()> {
    if x.ncols() != features {
        return Err(Error::shape("batch X", format!("(batch, {features})"), x.shape()));
    }
    if y.shape() != [x.nrows(), 1] {
        return Err(Error::shape("batch y", format!("({}, 1)", x.nrows()), y.shape()));
    }
    Ok(())
}

fn mean_squared_error<F: Float>(y: &Array2<F>, p: &Array2<F>) -> F {
    (y - p).mapv(|d| d * d).mean().expect("a batch is not empty")
}

impl<F: Float> LinearRegression<F> {
    /// Draws `W = randn(features, 1)` then `B = randn(1, 1)` (the book's order).
    pub fn init(features: usize, rng: &mut RandomState) -> Self {
        LinearRegression { w: rng.randn((features, 1)), b: rng.randn((1, 1)) }
    }

    /// The forward pass and the mean squared error `mean (y − P)²`.
    ///
    /// # Errors
    /// If `x` does not have the model's number of features or `y` is not one column of the same rows.
    pub fn forward_loss(&self, x: &ArrayView2<F>, y: &ArrayView2<F>) -> Result<(LinearForward<F>, F)> {
        check_batch(x, y, self.w.nrows())?;
        let n = x.dot(&self.w);
        let p = &n + &self.b;
        let loss = mean_squared_error(&y.to_owned(), &p);
        Ok((LinearForward { x: x.to_owned(), n, p, y: y.to_owned() }, loss))
    }

    /// The gradients of `Σ (y − P)²`:
    ///
    /// ```text
    /// ∂L/∂P = −2 (y − P)        (batch, 1)
    /// ∂L/∂W = Xᵀ ∂L/∂P          (features, 1)     since ∂N/∂W = Xᵀ
    /// ∂L/∂B = Σ_batch ∂L/∂P     (1, 1)            since ∂P/∂B = 1
    /// ```
    pub fn loss_gradients(&self, fwd: &LinearForward<F>) -> LinearGradients<F> {
        let dl_dp = (&fwd.y - &fwd.p) * F::cast(-2.0);
        LinearGradients { w: fwd.x.t().dot(&dl_dp), b: dl_dp.sum_axis(Axis(0)).insert_axis(Axis(0)) }
    }

    /// `X W + B`.
    pub fn predict(&self, x: &ArrayView2<F>) -> Array2<F> {
        x.dot(&self.w) + &self.b
    }
}

impl<F: Float> StepByStep<F> for LinearRegression<F> {
    fn train_step(&mut self, x: &ArrayView2<F>, y: &ArrayView2<F>, learning_rate: F) -> Result<F> {
        let (fwd, loss) = self.forward_loss(x, y)?;
        let grads = self.loss_gradients(&fwd);
        self.w.scaled_add(-learning_rate, &grads.w);
        self.b.scaled_add(-learning_rate, &grads.b);
        Ok(loss)
    }
}

/// The exact least-squares fit (scikit-learn's `LinearRegression()`, which the book prints as a
/// reference): `W, B = argmin Σ (y − X W − B)²`, from the normal equations of `[X 1]`
///
/// ```text
/// [X 1]ᵀ [X 1] θ = [X 1]ᵀ y,   θ = (W, B)
/// ```
///
/// solved by Gaussian elimination with partial pivoting.
///
/// # Errors
/// If the shapes disagree or the features are linearly dependent.
pub fn least_squares<F: Float>(x: &Array2<F>, y: &Array2<F>) -> Result<LinearRegression<F>> {
    check_batch(&x.view(), &y.view(), x.ncols())?;
    let (rows, k) = (x.nrows(), x.ncols() + 1);
    let mut a = Array2::<f64>::ones((rows, k));
    a.slice_mut(s![.., ..k - 1]).assign(&x.mapv(F::as_f64));
    let y = y.mapv(F::as_f64);
    // The augmented system [AᵀA | Aᵀy], reduced to upper-triangular form.
    let mut m = Array2::<f64>::zeros((k, k + 1));
    m.slice_mut(s![.., ..k]).assign(&a.t().dot(&a));
    m.slice_mut(s![.., k..]).assign(&a.t().dot(&y));
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| m[[i, col]].abs().total_cmp(&m[[j, col]].abs())).expect("rows left");
        if m[[pivot, col]].abs() < 1e-12 {
            return Err(Error::InvalidArgument("least squares: the features are linearly dependent".into()));
        }
        for j in 0..=k {
            m.swap([col, j], [pivot, j]);
        }
        for i in col + 1..k {
            let f = m[[i, col]] / m[[col, col]];
            for j in col..=k {
                m[[i, j]] -= f * m[[col, j]];
            }
        }
    }
    let mut theta = vec![0.0; k];
    for i in (0..k).rev() {
        let tail: f64 = (i + 1..k).map(|j| m[[i, j]] * theta[j]).sum();
        theta[i] = (m[[i, k]] - tail) / m[[i, i]];
    }
    Ok(LinearRegression {
        w: Array2::from_shape_fn((k - 1, 1), |(i, _)| F::cast(theta[i])),
        b: Array2::from_elem((1, 1), F::cast(theta[k - 1])),
    })
}

/// How [`TwoLayerNet::loss_gradients`] computes the hidden bias gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiasGradient {
    /// One derivative per hidden unit, `Σ_batch ∂L/∂N1`.
    Correct,
    /// The book's bug: that vector summed once more to a single number, applied to every hidden unit.
    /// Needed to reproduce the book's MAE 2.5951 / RMSE 3.8851.
    BookCollapsed,
}

/// The weights of the chapter's two-layer network, `P = σ(X W1 + B1) W2 + B2`.
#[derive(Clone, Debug)]
pub struct TwoLayerNet<F> {
    /// `(features, hidden)`.
    pub w1: Array2<F>,
    /// `(1, hidden)`.
    pub b1: Array2<F>,
    /// `(hidden, 1)`.
    pub w2: Array2<F>,
    /// `(1, 1)`.
    pub b2: Array2<F>,
    /// The hidden bias gradient's formula.
    pub bias_gradient: BiasGradient,
}

/// The forward pass of [`TwoLayerNet`], every intermediate kept.
#[derive(Clone, Debug)]
pub struct TwoLayerForward<F> {
    /// The batch, `(batch, features)`.
    pub x: Array2<F>,
    /// `M1 = X W1`, `(batch, hidden)`.
    pub m1: Array2<F>,
    /// `N1 = M1 + B1`.
    pub n1: Array2<F>,
    /// `O1 = σ(N1)`.
    pub o1: Array2<F>,
    /// `M2 = O1 W2`, `(batch, 1)`.
    pub m2: Array2<F>,
    /// `P = M2 + B2`.
    pub p: Array2<F>,
    /// The targets, `(batch, 1)`.
    pub y: Array2<F>,
}

/// Gradients of [`TwoLayerNet`]'s weights, each shaped like its weight.
#[derive(Clone, Debug)]
pub struct TwoLayerGradients<F> {
    /// `∂L/∂W1`.
    pub w1: Array2<F>,
    /// `∂L/∂B1`.
    pub b1: Array2<F>,
    /// `∂L/∂W2`.
    pub w2: Array2<F>,
    /// `∂L/∂B2`.
    pub b2: Array2<F>,
}

impl<F: Float> TwoLayerNet<F> {
    /// Draws `W1 = randn(features, hidden)`, `B1 = randn(1, hidden)`, `W2 = randn(hidden, 1)`,
    /// `B2 = randn(1, 1)`, in that order (the book's).
    pub fn init(features: usize, hidden: usize, bias_gradient: BiasGradient, rng: &mut RandomState) -> Self {
        TwoLayerNet {
            w1: rng.randn((features, hidden)),
            b1: rng.randn((1, hidden)),
            w2: rng.randn((hidden, 1)),
            b2: rng.randn((1, 1)),
            bias_gradient,
        }
    }

    /// The forward pass and the mean squared error `mean (y − P)²`.
    ///
    /// # Errors
    /// If `x` does not have the model's number of features or `y` is not one column of the same rows.
    pub fn forward_loss(&self, x: &ArrayView2<F>, y: &ArrayView2<F>) -> Result<(TwoLayerForward<F>, F)> {
        check_batch(x, y, self.w1.nrows())?;
        let m1 = x.dot(&self.w1);
        let n1 = &m1 + &self.b1;
        let o1 = n1.mapv(|v| F::one() / (F::one() + (-v).exp()));
        let m2 = o1.dot(&self.w2);
        let p = &m2 + &self.b2;
        let loss = mean_squared_error(&y.to_owned(), &p);
        Ok((TwoLayerForward { x: x.to_owned(), m1, n1, o1, m2, p, y: y.to_owned() }, loss))
    }

    /// The gradients of `½ Σ (y − P)²`, backwards through every step:
    ///
    /// ```text
    /// ∂L/∂P  = −(y − P)                      (batch, 1)
    /// ∂L/∂W2 = O1ᵀ ∂L/∂P                     (hidden, 1)
    /// ∂L/∂B2 = Σ_batch ∂L/∂P                 (1, 1)
    /// ∂L/∂O1 = ∂L/∂P W2ᵀ                     (batch, hidden)
    /// ∂L/∂N1 = ∂L/∂O1 ⊙ σ(N1) (1 − σ(N1))
    /// ∂L/∂B1 = Σ_batch ∂L/∂N1                (1, hidden)
    /// ∂L/∂W1 = Xᵀ ∂L/∂N1                     (features, hidden)
    /// ```
    pub fn loss_gradients(&self, fwd: &TwoLayerForward<F>) -> TwoLayerGradients<F> {
        let dl_dp = &fwd.p - &fwd.y;
        let dl_do1 = dl_dp.dot(&self.w2.t());
        let dl_dn1 = dl_do1 * fwd.o1.mapv(|o| o * (F::one() - o));
        let b1 = dl_dn1.sum_axis(Axis(0)).insert_axis(Axis(0));
        let b1 = match self.bias_gradient {
            BiasGradient::Correct => b1,
            BiasGradient::BookCollapsed => Array2::from_elem(b1.raw_dim(), b1.sum()),
        };
        TwoLayerGradients {
            w1: fwd.x.t().dot(&dl_dn1),
            b1,
            w2: fwd.o1.t().dot(&dl_dp),
            b2: dl_dp.sum_axis(Axis(0)).insert_axis(Axis(0)),
        }
    }

    /// `σ(X W1 + B1) W2 + B2`.
    pub fn predict(&self, x: &ArrayView2<F>) -> Array2<F> {
        let o1 = (x.dot(&self.w1) + &self.b1).mapv(|v| F::one() / (F::one() + (-v).exp()));
        o1.dot(&self.w2) + &self.b2
    }
}

impl<F: Float> StepByStep<F> for TwoLayerNet<F> {
    fn train_step(&mut self, x: &ArrayView2<F>, y: &ArrayView2<F>, learning_rate: F) -> Result<F> {
        let (fwd, loss) = self.forward_loss(x, y)?;
        let g = self.loss_gradients(&fwd);
        self.w1.scaled_add(-learning_rate, &g.w1);
        self.b1.scaled_add(-learning_rate, &g.b1);
        self.w2.scaled_add(-learning_rate, &g.w2);
        self.b2.scaled_add(-learning_rate, &g.b2);
        Ok(loss)
    }
}

/// A chapter-2 model: one plain gradient-descent step on a batch.
pub trait StepByStep<F: Float> {
    /// Forward pass, gradients, `w ← w − lr · ∂L/∂w` for every weight; returns the batch's loss.
    fn train_step(&mut self, x: &ArrayView2<F>, y: &ArrayView2<F>, learning_rate: F) -> Result<F>;
}

/// The settings of [`train`].
#[derive(Clone, Copy, Debug)]
pub struct TrainConfig {
    /// Number of batches (iterations) to train on.
    pub iterations: usize,
    /// The learning rate.
    pub learning_rate: f64,
    /// Rows per batch; a batch is cut short at the end of the rows.
    pub batch_size: usize,
}

/// `x` and `y` with their rows reordered by one `rng.permutation` (the book's `permute_data`).
pub fn permute_data<F: Float>(x: &Array2<F>, y: &Array2<F>, rng: &mut RandomState) -> (Array2<F>, Array2<F>) {
    let perm = rng.permutation(x.nrows());
    (x.select(Axis(0), &perm), y.select(Axis(0), &perm))
}

/// Rows `start .. start + batch_size` of `x` and `y`, cut short at the end (the book's
/// `generate_batch`).
pub fn generate_batch<'a, F>(
    x: &'a Array2<F>,
    y: &'a Array2<F>,
    start: usize,
    batch_size: usize,
) -> (ArrayView2<'a, F>, ArrayView2<'a, F>) {
    let end = (start + batch_size).min(x.nrows());
    (x.slice(s![start..end, ..]), y.slice(s![start..end, ..]))
}

/// The chapter's training loop; returns the loss of every batch.
///
/// Permutes the rows once, then for each iteration takes the next batch, re-permuting (the already
/// permuted rows) and starting over whenever the rows are used up.
///
/// # Errors
/// If the batch size is zero or the data does not fit the model.
pub fn train<F: Float>(
    model: &mut impl StepByStep<F>,
    x: &Array2<F>,
    y: &Array2<F>,
    config: &TrainConfig,
    rng: &mut RandomState,
) -> Result<Vec<F>> {
    if config.batch_size == 0 {
        return Err(Error::InvalidArgument("batch_size must be positive".into()));
    }
    let lr = F::cast(config.learning_rate);
    let (mut x, mut y) = permute_data(x, y, rng);
    let mut start = 0;
    let mut losses = Vec::with_capacity(config.iterations);
    for _ in 0..config.iterations {
        if start >= x.nrows() {
            (x, y) = permute_data(&x, &y, rng);
            start = 0;
        }
        let (xb, yb) = generate_batch(&x, &y, start, config.batch_size);
        start += config.batch_size;
        losses.push(model.train_step(&xb, &yb, lr)?);
    }
    Ok(losses)
}
