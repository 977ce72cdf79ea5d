//! Chapter 2's models on libtorch: linear regression and the two-layer network as explicit tensors,
//! with autograd computing the gradients that `scratch::step_by_step` writes out by hand.
//!
//! They use the same initial draws, batches and loss conventions as the from-scratch versions (the
//! gradient of `Σ (y − P)²` for linear regression, of `½ Σ (y − P)²` for the network), so both engines
//! print the same numbers; [`BiasGradient::BookCollapsed`] reproduces the book's hidden-bias bug by
//! replacing that gradient with its sum.
//!
//! They start on the CPU; [`LinearRegression::to_device`] and [`TwoLayerNet::to_device`] move them,
//! and each step then copies its batch to their device and reads its loss back (one read, through
//! [`crate::sync::read`]).

use ndarray::{Array2, ArrayView2};
use scratch::rng::RandomState;
use scratch::step_by_step::{BiasGradient, StepByStep};
use tch::{Kind, Tensor};

use crate::convert::{to_array, to_tensor};

fn leaf(a: &Array2<f64>) -> Tensor {
    to_tensor(a).set_requires_grad(true)
}

fn values(t: &Tensor) -> Array2<f64> {
    to_array::<f64>(t).into_dimensionality().expect("a matrix")
}

/// A copy of the parameter `p` on `device`, a leaf that records gradients.
fn moved(p: &Tensor, device: tch::Device) -> Tensor {
    p.detach().to_device(device).set_requires_grad(true)
}

/// `a` on `device`.
fn on(a: &ArrayView2<f64>, device: tch::Device) -> Tensor {
    to_tensor(&a.to_owned()).to_device(device)
}

/// The mean of `residual²`, read from the device.
fn mean_square(residual: &Tensor) -> scratch::Result<f64> {
    let value = crate::sync::read(&residual.square().mean(Kind::Double))
        .map_err(|e| scratch::Error::InvalidArgument(format!("reading the loss from the device: {e}")))?;
    Ok(value[0])
}

/// Linear regression `P = X W + B` on libtorch (f64).
pub struct LinearRegression {
    /// `(features, 1)`.
    pub w: Tensor,
    /// `(1, 1)`.
    pub b: Tensor,
}

/// The exact least-squares fit (the book's scikit-learn reference), by libtorch's `linalg_lstsq` on
/// `[X 1]`.
pub fn least_squares(x: &Array2<f64>, y: &Array2<f64>) -> LinearRegression {
    let ones = Array2::<f64>::ones((x.nrows(), 1));
    let a = to_tensor(&ndarray::concatenate![ndarray::Axis(1), *x, ones]);
    let (theta, _, _, _) = a.linalg_lstsq(&to_tensor(y), None, "gelsd");
    let features = x.ncols() as i64;
    LinearRegression { w: theta.narrow(0, 0, features), b: theta.narrow(0, features, 1) }
}

impl LinearRegression {
    /// Draws `W` then `B` from `rng` as [`scratch::step_by_step::LinearRegression::init`] does.
    pub fn init(features: usize, rng: &mut RandomState) -> Self {
        let w: Array2<f64> = rng.randn((features, 1));
        let b: Array2<f64> = rng.randn((1, 1));
        LinearRegression { w: leaf(&w), b: leaf(&b) }
    }

    /// The same model with its parameters on `device`.
    pub fn to_device(&self, device: tch::Device) -> Self {
        LinearRegression { w: moved(&self.w, device), b: moved(&self.b, device) }
    }

    /// `X W + B`.
    pub fn predict(&self, x: &ArrayView2<f64>) -> Array2<f64> {
        tch::no_grad(|| values(&(on(x, self.w.device()).matmul(&self.w) + &self.b)))
    }
}

/// `p ← p − lr · ∂L/∂p` for each parameter, then clears the gradients.
fn descend(params: &mut [&mut Tensor], lr: f64) {
    tch::no_grad(|| {
        for p in params.iter_mut() {
            let step = p.grad() * lr;
            p.copy_(&(&**p - step));
            p.zero_grad();
        }
    });
}

impl StepByStep<f64> for LinearRegression {
    fn train_step(&mut self, x: &ArrayView2<f64>, y: &ArrayView2<f64>, lr: f64) -> scratch::Result<f64> {
        let (x, y) = (on(x, self.w.device()), on(y, self.w.device()));
        let p = x.matmul(&self.w) + &self.b;
        let residual = &y - &p;
        residual.square().sum(Kind::Double).backward();
        descend(&mut [&mut self.w, &mut self.b], lr);
        mean_square(&residual)
    }
}

/// The two-layer network `P = σ(X W1 + B1) W2 + B2` on libtorch (f64).
pub struct TwoLayerNet {
    /// `(features, hidden)`.
    pub w1: Tensor,
    /// `(1, hidden)`.
    pub b1: Tensor,
    /// `(hidden, 1)`.
    pub w2: Tensor,
    /// `(1, 1)`.
    pub b2: Tensor,
    /// The hidden bias gradient's formula.
    pub bias_gradient: BiasGradient,
}

impl TwoLayerNet {
    /// Draws `W1, B1, W2, B2` from `rng` as [`scratch::step_by_step::TwoLayerNet::init`] does.
    pub fn init(features: usize, hidden: usize, bias_gradient: BiasGradient, rng: &mut RandomState) -> Self {
        let w1: Array2<f64> = rng.randn((features, hidden));
        let b1: Array2<f64> = rng.randn((1, hidden));
        let w2: Array2<f64> = rng.randn((hidden, 1));
        let b2: Array2<f64> = rng.randn((1, 1));
        TwoLayerNet { w1: leaf(&w1), b1: leaf(&b1), w2: leaf(&w2), b2: leaf(&b2), bias_gradient }
    }

    /// The same model with its parameters on `device`.
    pub fn to_device(&self, device: tch::Device) -> Self {
        let [w1, b1, w2, b2] = [&self.w1, &self.b1, &self.w2, &self.b2].map(|p| moved(p, device));
        TwoLayerNet { w1, b1, w2, b2, bias_gradient: self.bias_gradient }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        (x.matmul(&self.w1) + &self.b1).sigmoid().matmul(&self.w2) + &self.b2
    }

    /// `σ(X W1 + B1) W2 + B2`.
    pub fn predict(&self, x: &ArrayView2<f64>) -> Array2<f64> {
        tch::no_grad(|| values(&self.forward(&on(x, self.w1.device()))))
    }
}

impl StepByStep<f64> for TwoLayerNet {
    fn train_step(&mut self, x: &ArrayView2<f64>, y: &ArrayView2<f64>, lr: f64) -> scratch::Result<f64> {
        let (x, y) = (on(x, self.w1.device()), on(y, self.w1.device()));
        let residual = &y - self.forward(&x);
        (residual.square().sum(Kind::Double) * 0.5).backward();
        if self.bias_gradient == BiasGradient::BookCollapsed {
            let collapsed = self.b1.grad().sum(Kind::Double).expand_as(&self.b1);
            tch::no_grad(|| self.b1.grad().copy_(&collapsed));
        }
        descend(&mut [&mut self.w1, &mut self.b1, &mut self.w2, &mut self.b2], lr);
        mean_square(&residual)
    }
}
