//! Finite-difference gradient checking: the test every backward pass in the crate must pass.
//!
//! For an operation or layer `y = f(x; θ)`, the checker fixes random weights `G` shaped like `y` and
//! checks the scalar `L = Σ G ⊙ f(x; θ)`, whose gradient the backward pass computes when given
//! `∂L/∂y = G`. For a whole network it checks the network's own loss. Each analytic derivative is compared
//! with the central difference
//!
//! ```text
//! ∂L/∂u ≈ (L(u + h) − L(u − h)) / 2h
//! ```
//!
//! for every element of the input and of every parameter (or a random sample of them when a tensor is
//! large). The error of one element is `|analytic − numeric| / max(1, |analytic|, |numeric|)`.

use ndarray::{ArrayD, IxDyn};

use crate::layers::Layer;
use crate::network::NeuralNetwork;
use crate::ops::{Mode, Operation};
use crate::param::Param;
use crate::rng::RandomState;
use crate::{Float, Result};

/// Something with a scalar loss of an input, and a backward pass for it.
pub trait Differentiable<F: Float> {
    /// The scalar loss at `input` (caching what backward needs).
    fn loss(&mut self, input: &ArrayD<F>) -> Result<F>;
    /// `∂L/∂input` for the last [`Differentiable::loss`] call; parameter gradients are left in the
    /// parameters.
    fn backward(&mut self) -> Result<ArrayD<F>>;
    /// The parameters, with their names.
    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)>;
}

/// `L = Σ G ⊙ y` for a fixed random `G` drawn at the first forward pass.
struct Projection<F> {
    weights: Option<ArrayD<F>>,
    rng: RandomState,
}

impl<F: Float> Projection<F> {
    fn apply(&mut self, y: &ArrayD<F>) -> F {
        let rng = &mut self.rng;
        let g = self.weights.get_or_insert_with(|| rng.randn(y.raw_dim()));
        (g.clone() * y).sum()
    }

    fn weights(&self) -> ArrayD<F> {
        self.weights.clone().expect("loss was called before backward")
    }
}

/// An [`Operation`] seen through a random projection of its output.
pub struct OpProbe<'a, F: Float> {
    op: &'a mut dyn Operation<F>,
    mode: Mode,
    projection: Projection<F>,
}

impl<'a, F: Float> OpProbe<'a, F> {
    /// Probes `op` in `mode`, with projection weights drawn from a generator seeded with `seed`.
    pub fn new(op: &'a mut dyn Operation<F>, mode: Mode, seed: u32) -> Self {
        OpProbe { op, mode, projection: Projection { weights: None, rng: RandomState::new(seed) } }
    }
}

impl<F: Float> Differentiable<F> for OpProbe<'_, F> {
    fn loss(&mut self, input: &ArrayD<F>) -> Result<F> {
        let y = self.op.forward(input.clone(), self.mode)?;
        Ok(self.projection.apply(&y))
    }

    fn backward(&mut self) -> Result<ArrayD<F>> {
        self.op.backward(self.projection.weights())
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.op.param_mut().map(|(name, p)| (name.to_string(), p)).into_iter().collect()
    }
}

/// A [`Layer`] seen through a random projection of its output.
pub struct LayerProbe<'a, F: Float> {
    layer: &'a mut dyn Layer<F>,
    mode: Mode,
    projection: Projection<F>,
}

impl<'a, F: Float> LayerProbe<'a, F> {
    /// Probes `layer` in `mode`, with projection weights drawn from a generator seeded with `seed`.
    pub fn new(layer: &'a mut dyn Layer<F>, mode: Mode, seed: u32) -> Self {
        LayerProbe { layer, mode, projection: Projection { weights: None, rng: RandomState::new(seed) } }
    }
}

impl<F: Float> Differentiable<F> for LayerProbe<'_, F> {
    fn loss(&mut self, input: &ArrayD<F>) -> Result<F> {
        let y = self.layer.forward(input.clone(), self.mode)?;
        Ok(self.projection.apply(&y))
    }

    fn backward(&mut self) -> Result<ArrayD<F>> {
        self.layer.backward(self.projection.weights())
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.layer.params_mut()
    }
}

/// A [`NeuralNetwork`] with its own loss against fixed targets, in training mode.
pub struct NetworkProbe<'a, F: Float> {
    net: &'a mut NeuralNetwork<F>,
    target: ArrayD<F>,
}

impl<'a, F: Float> NetworkProbe<'a, F> {
    /// Probes `net`'s loss against `target`.
    pub fn new(net: &'a mut NeuralNetwork<F>, target: ArrayD<F>) -> Self {
        NetworkProbe { net, target }
    }
}

impl<F: Float> Differentiable<F> for NetworkProbe<'_, F> {
    fn loss(&mut self, input: &ArrayD<F>) -> Result<F> {
        Ok(self.net.forward_loss(input, &self.target, Mode::Train)?.1)
    }

    fn backward(&mut self) -> Result<ArrayD<F>> {
        let grad = self.net.loss_backward()?;
        self.net.backward(grad)
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.net.layer_params_mut()
    }
}

/// The worst element of one tensor's check.
#[derive(Clone, Debug)]
pub struct TensorCheck {
    /// `input`, or the parameter's name.
    pub name: String,
    /// The index of the worst element.
    pub index: Vec<usize>,
    /// The backward pass's value there.
    pub analytic: f64,
    /// The central difference there.
    pub numeric: f64,
    /// `|analytic − numeric| / max(1, |analytic|, |numeric|)`.
    pub error: f64,
    /// How many elements were checked.
    pub checked: usize,
}

/// The result of [`check`]: one entry per tensor.
#[derive(Clone, Debug)]
pub struct GradCheckReport {
    /// The input's entry first, then the parameters' in order.
    pub tensors: Vec<TensorCheck>,
}

impl GradCheckReport {
    /// The largest error over every tensor.
    pub fn max_error(&self) -> f64 {
        self.tensors.iter().map(|t| t.error).fold(0.0, f64::max)
    }

    /// Panics with the worst element of every failing tensor if any error exceeds `tolerance`.
    pub fn assert_below(&self, tolerance: f64) {
        let failing: Vec<_> = self.tensors.iter().filter(|t| t.error.is_nan() || t.error > tolerance).collect();
        assert!(failing.is_empty(), "gradient check failed (tolerance {tolerance:e}): {failing:#?}");
    }
}

/// How [`check`] perturbs.
#[derive(Clone, Copy, Debug)]
pub struct GradCheckConfig {
    /// The step `h`.
    pub step: f64,
    /// At most this many elements per tensor, chosen at random (all of them if the tensor is smaller).
    pub max_elements: usize,
    /// Seed for the choice of elements.
    pub seed: u32,
}

impl Default for GradCheckConfig {
    /// `h = 1e-6` (suited to `f64`), up to 200 elements per tensor.
    fn default() -> Self {
        GradCheckConfig { step: 1e-6, max_elements: 200, seed: 0 }
    }
}

fn choose(len: usize, config: &GradCheckConfig, rng: &mut RandomState) -> Vec<usize> {
    let mut all = rng.permutation(len);
    all.truncate(config.max_elements);
    all.sort_unstable();
    all
}

fn worst(name: String, shape: &[usize], results: impl Iterator<Item = (usize, f64, f64)>) -> TensorCheck {
    let mut out =
        TensorCheck { name, index: vec![], analytic: 0.0, numeric: 0.0, error: f64::NEG_INFINITY, checked: 0 };
    for (flat, analytic, numeric) in results {
        out.checked += 1;
        let error = (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs());
        if error.is_nan() || error > out.error {
            let index = unravel(flat, shape);
            out = TensorCheck { index, analytic, numeric, error, ..out };
        }
    }
    out
}

/// The multi-index of the element at position `flat` of a row-major array of `shape`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        index[i] = flat % d;
        flat /= d;
    }
    index
}

/// Checks every gradient of `model` at `input` against central differences.
///
/// # Errors
/// Whatever the model's forward or backward pass returns.
pub fn check<F: Float>(
    model: &mut dyn Differentiable<F>,
    input: &ArrayD<F>,
    config: &GradCheckConfig,
) -> Result<GradCheckReport> {
    let h = F::cast(config.step);
    let two_h = (h + h).as_f64();
    let mut rng = RandomState::new(config.seed);

    model.loss(input)?;
    let input_grad = model.backward()?;
    let param_grads: Vec<(String, ArrayD<F>)> =
        model.params_mut().into_iter().map(|(name, p)| (name, p.grad.clone())).collect();

    let mut tensors = Vec::new();
    let mut x = input.as_standard_layout().into_owned();
    let mut results = Vec::new();
    for flat in choose(x.len(), config, &mut rng) {
        let original = x.as_slice().expect("standard layout")[flat];
        x.as_slice_mut().expect("standard layout")[flat] = original + h;
        let plus = model.loss(&x)?.as_f64();
        x.as_slice_mut().expect("standard layout")[flat] = original - h;
        let minus = model.loss(&x)?.as_f64();
        x.as_slice_mut().expect("standard layout")[flat] = original;
        let analytic = input_grad.as_standard_layout().as_slice().expect("standard layout")[flat].as_f64();
        results.push((flat, analytic, (plus - minus) / two_h));
    }
    tensors.push(worst("input".into(), x.shape(), results.into_iter()));

    for (k, (name, grad)) in param_grads.iter().enumerate() {
        let shape = grad.shape().to_vec();
        let grad = grad.as_standard_layout();
        let grad = grad.as_slice().expect("standard layout");
        let mut results = Vec::new();
        for flat in choose(grad.len(), config, &mut rng) {
            let idx = IxDyn(&unravel(flat, &shape));
            let set = |value: Option<F>, model: &mut dyn Differentiable<F>| -> F {
                let mut params = model.params_mut();
                let element = &mut params[k].1.value[&idx];
                let old = *element;
                if let Some(v) = value {
                    *element = v;
                }
                old
            };
            let original = set(None, model);
            set(Some(original + h), model);
            let plus = model.loss(input)?.as_f64();
            set(Some(original - h), model);
            let minus = model.loss(input)?.as_f64();
            set(Some(original), model);
            results.push((flat, grad[flat].as_f64(), (plus - minus) / two_h));
        }
        tensors.push(worst(name.clone(), &shape, results.into_iter()));
    }
    Ok(GradCheckReport { tensors })
}
