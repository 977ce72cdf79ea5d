//! Elementwise activation functions and their derivatives.
//!
//! Each one caches what its derivative needs (its output, or its input's sign) and multiplies the
//! incoming gradient elementwise: `∂L/∂x = ∂L/∂y ⊙ f'(x)`.

use ndarray::{ArrayD, Zip};

/// Arrays at least this long are processed on all cores.
const PARALLEL_LEN: usize = 1 << 16;

/// `f` applied to every element of `a`, in place, in parallel for large arrays.
fn map_inplace<F: Float>(a: &mut ArrayD<F>, f: impl Fn(F) -> F + Sync + Send) {
    if a.len() >= PARALLEL_LEN {
        Zip::from(a).par_for_each(|v| *v = f(*v));
    } else {
        a.mapv_inplace(f);
    }
}

/// `g[i] ← f(g[i], y[i])` for the gradient `g` and a cached array `y`, in parallel for large arrays.
fn zip_inplace<F: Float>(g: &mut ArrayD<F>, y: &ArrayD<F>, f: impl Fn(F, F) -> F + Sync + Send) {
    if g.len() >= PARALLEL_LEN {
        Zip::from(g).and(y).par_for_each(|g, &y| *g = f(*g, y));
    } else {
        Zip::from(g).and(y).for_each(|g, &y| *g = f(*g, y));
    }
}

use super::{no_forward, Mode, Operation};
use crate::{Float, Result};

/// Which activation a layer applies after its affine map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// The identity (the book's `Linear`).
    Linear,
    /// `σ(x) = 1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `max(0, x)`.
    ReLU,
    /// `x` for `x > 0`, `slope · x` otherwise.
    LeakyReLU {
        /// The slope for negative inputs (PyTorch's default is 0.01).
        slope: f64,
    },
}

impl Activation {
    /// A fresh operation computing this activation.
    pub fn operation<F: Float>(self) -> Box<dyn Operation<F>> {
        match self {
            Activation::Linear => Box::new(Linear { forwarded: false }),
            Activation::Sigmoid => Box::new(Sigmoid { output: None }),
            Activation::Tanh => Box::new(Tanh { output: None }),
            Activation::ReLU => Box::new(ReLU { output: None }),
            Activation::LeakyReLU { slope } => Box::new(LeakyReLU { slope: F::cast(slope), input: None }),
        }
    }

    /// The name used in layer descriptions (`"sigmoid"`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::ReLU => "relu",
            Activation::LeakyReLU { .. } => "leaky_relu",
        }
    }
}

/// The identity: `y = x`, `∂L/∂x = ∂L/∂y`.
pub struct Linear {
    forwarded: bool,
}

impl<F: Float> Operation<F> for Linear {
    fn name(&self) -> &'static str {
        "Linear"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        self.forwarded = true;
        Ok(input)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        if !self.forwarded {
            return Err(no_forward("Linear"));
        }
        Ok(output_grad)
    }
}

/// `y = σ(x) = 1 / (1 + e⁻ˣ)`, `∂L/∂x = ∂L/∂y ⊙ y (1 − y)`.
pub struct Sigmoid<F> {
    output: Option<ArrayD<F>>,
}

impl<F: Float> Operation<F> for Sigmoid<F> {
    fn name(&self) -> &'static str {
        "Sigmoid"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let mut y = input;
        map_inplace(&mut y, F::sigmoid_fast);
        self.output = Some(y.clone());
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let y = self.output.as_ref().ok_or_else(|| no_forward("Sigmoid"))?;
        let mut g = output_grad;
        zip_inplace(&mut g, y, |g, y| g * (y * (F::one() - y)));
        Ok(g)
    }
}

/// `y = tanh(x)`, `∂L/∂x = ∂L/∂y ⊙ (1 − y²)`.
pub struct Tanh<F> {
    output: Option<ArrayD<F>>,
}

impl<F: Float> Operation<F> for Tanh<F> {
    fn name(&self) -> &'static str {
        "Tanh"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let mut y = input;
        map_inplace(&mut y, F::tanh_fast);
        self.output = Some(y.clone());
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let y = self.output.as_ref().ok_or_else(|| no_forward("Tanh"))?;
        let mut g = output_grad;
        zip_inplace(&mut g, y, |g, y| g * (F::one() - y * y));
        Ok(g)
    }
}

/// `y = max(0, x)`, `∂L/∂x = ∂L/∂y ⊙ [x > 0]`.
///
/// The book's version passes the gradient where `y ≥ 0`, which is everywhere, so negative inputs get a
/// gradient too; this one is correct, and matches PyTorch (gradient 0 at `x = 0`).
pub struct ReLU<F> {
    output: Option<ArrayD<F>>,
}

impl<F: Float> Operation<F> for ReLU<F> {
    fn name(&self) -> &'static str {
        "ReLU"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let mut y = input;
        map_inplace(&mut y, |x| x.max(F::zero()));
        self.output = Some(y.clone());
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let y = self.output.as_ref().ok_or_else(|| no_forward("ReLU"))?;
        let mut g = output_grad;
        // Written as a select, not a branch: the signs are random, and a branch would be mispredicted
        // half the time.
        zip_inplace(&mut g, y, |g, y| if y > F::zero() { g } else { F::zero() });
        Ok(g)
    }
}

/// `y = x` for `x > 0`, `slope · x` otherwise; `∂L/∂x = ∂L/∂y ⊙ (1 or slope)`.
pub struct LeakyReLU<F> {
    slope: F,
    input: Option<ArrayD<F>>,
}

impl<F: Float> Operation<F> for LeakyReLU<F> {
    fn name(&self) -> &'static str {
        "LeakyReLU"
    }

    fn forward(&mut self, input: ArrayD<F>, _mode: Mode) -> Result<ArrayD<F>> {
        let slope = self.slope;
        let y = input.mapv(|x| if x > F::zero() { x } else { slope * x });
        self.input = Some(input);
        Ok(y)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let x = self.input.as_ref().ok_or_else(|| no_forward("LeakyReLU"))?;
        let slope = self.slope;
        let mut g = output_grad;
        Zip::from(&mut g).and(x).for_each(|g, &x| *g *= if x > F::zero() { F::one() } else { slope });
        Ok(g)
    }
}
