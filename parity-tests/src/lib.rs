//! The harness that proves the two engines equal: build the same model in both with identical weights,
//! feed both the same inputs, and compare every output, loss and gradient elementwise.
//!
//! Tolerances (`|a − b| ≤ abs + rel · |b|`, `b` from libtorch):
//!
//! | type | abs | rel |
//! |---|---|---|
//! | f64 | 1e-12 | 1e-10 |
//! | f32 | 1e-5 | 1e-4 |
//!
//! A failing comparison names the tensor, the index of its worst element and both values.

use ndarray::{ArrayD, IxDyn};
use scratch::gradcheck::unravel;
use scratch::layers::WeightInit;
use scratch::losses::{CrossEntropyValue, MeanSquaredError, MseReduction, SoftmaxCrossEntropy};
use scratch::network::{InitSeeding, NeuralNetwork};
use scratch::ops::{Activation, DropoutStyle};
use scratch::rng::RandomState;
use tch::Tensor;
use torch::convert::{to_array, to_tensor, TorchFloat};
use torch::losses::Loss;
use torch::model::Model;
pub use torch::spec::{LayerSpec, NetSpec};

/// `|a − b| ≤ abs + rel · |b|`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Absolute part.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
}

/// The tolerance for f64 comparisons.
pub const F64: Tolerance = Tolerance { abs: 1e-12, rel: 1e-10 };
/// The tolerance for f32 comparisons.
pub const F32: Tolerance = Tolerance { abs: 1e-5, rel: 1e-4 };

/// The tolerance for `F`.
pub fn tolerance<F: TorchFloat>() -> Tolerance {
    if F::NAME == "f32" {
        F32
    } else {
        F64
    }
}

/// The worst element of a comparison: its index, both values, and how far past the tolerance it is
/// (`|a − b| / (abs + rel·|b|)`, at most 1 when within tolerance).
pub fn worst<F: TorchFloat>(a: &ArrayD<F>, b: &ArrayD<F>, tol: Tolerance) -> (Vec<usize>, f64, f64, f64) {
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let mut out = (vec![], 0.0, 0.0, -1.0);
    for (i, (&x, &y)) in a.iter().zip(b.iter()).enumerate() {
        let (x, y) = (x.as_f64(), y.as_f64());
        let ratio = (x - y).abs() / (tol.abs + tol.rel * y.abs());
        if ratio.is_nan() || ratio > out.3 {
            out = (unravel(i, b.shape()), x, y, if ratio.is_nan() { f64::INFINITY } else { ratio });
        }
    }
    out
}

/// Panics unless `scratch` and `torch` have the same shape and agree elementwise within `tol`; the
/// message names the tensor, the worst element's index and both values.
pub fn assert_close<F: TorchFloat>(name: &str, scratch: &ArrayD<F>, torch: &ArrayD<F>, tol: Tolerance) {
    assert_eq!(scratch.shape(), torch.shape(), "{name}: shapes differ (scratch vs torch)");
    let (index, a, b, ratio) = worst(scratch, torch, tol);
    assert!(
        ratio <= 1.0,
        "{name}: worst element {index:?}: scratch {a:e}, torch {b:e}, |diff| {:e} > {:e} + {:e}·|torch|",
        (a - b).abs(),
        tol.abs,
        tol.rel
    );
}

/// [`assert_close`] for a libtorch tensor.
pub fn assert_close_tensor<F: TorchFloat>(name: &str, scratch: &ArrayD<F>, torch: &Tensor, tol: Tolerance) {
    assert_close(name, scratch, &to_array::<F>(torch), tol);
}

/// A dense layer of a parity model.
#[derive(Clone, Copy, Debug)]
pub struct DenseSpec {
    /// Outputs.
    pub neurons: usize,
    /// Activation.
    pub activation: Activation,
    /// Dropout keep probability and style.
    pub dropout: Option<(f64, DropoutStyle)>,
}

impl DenseSpec {
    /// A layer without dropout.
    pub fn new(neurons: usize, activation: Activation) -> Self {
        DenseSpec { neurons, activation, dropout: None }
    }
}

/// The losses both engines implement, with the same reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// MSE divided by the rows (the book's).
    MseRows,
    /// MSE divided by the elements (PyTorch's).
    MseElements,
    /// Softmax cross-entropy, categorical value.
    SoftmaxCrossEntropy,
    /// Softmax cross-entropy reporting the book's printed value.
    SoftmaxCrossEntropyBook,
    /// Softmax cross-entropy summed over rows (the book's chapter 6 sequence loss).
    SoftmaxCrossEntropySum,
}

/// Every loss kind.
pub const LOSSES: [LossKind; 4] =
    [LossKind::MseRows, LossKind::MseElements, LossKind::SoftmaxCrossEntropy, LossKind::SoftmaxCrossEntropyBook];

impl LossKind {
    /// The from-scratch loss.
    pub fn scratch<F: TorchFloat>(self) -> Box<dyn scratch::losses::Loss<F>> {
        match self {
            LossKind::MseRows => Box::new(MeanSquaredError::with_reduction(MseReduction::Rows)),
            LossKind::MseElements => Box::new(MeanSquaredError::with_reduction(MseReduction::Elements)),
            LossKind::SoftmaxCrossEntropy => Box::new(SoftmaxCrossEntropy::new()),
            LossKind::SoftmaxCrossEntropyBook => {
                Box::new(SoftmaxCrossEntropy::reporting(CrossEntropyValue::BookBinarySum))
            }
            LossKind::SoftmaxCrossEntropySum => Box::new(SoftmaxCrossEntropy::summed()),
        }
    }

    /// The libtorch loss.
    pub fn torch(self) -> Loss {
        match self {
            LossKind::MseRows => Loss::MeanSquaredError(MseReduction::Rows),
            LossKind::MseElements => Loss::MeanSquaredError(MseReduction::Elements),
            LossKind::SoftmaxCrossEntropy => Loss::SoftmaxCrossEntropy(CrossEntropyValue::Categorical),
            LossKind::SoftmaxCrossEntropyBook => Loss::SoftmaxCrossEntropy(CrossEntropyValue::BookBinarySum),
            LossKind::SoftmaxCrossEntropySum => Loss::SoftmaxCrossEntropySum,
        }
    }

    /// Whether targets are one-hot rows (classification) rather than real values.
    pub fn classification(self) -> bool {
        !matches!(self, LossKind::MseRows | LossKind::MseElements)
    }

    /// Random targets `(batch, outputs)` suited to the loss.
    pub fn targets<F: TorchFloat>(self, batch: usize, outputs: usize, rng: &mut RandomState) -> ArrayD<F> {
        if self.classification() {
            let labels: Vec<u8> = (0..batch).map(|_| rng.randint(0, outputs as i64) as u8).collect();
            let mut y = ArrayD::zeros(IxDyn(&[batch, outputs]));
            for (i, &l) in labels.iter().enumerate() {
                y[[i, usize::from(l)]] = F::one();
            }
            y
        } else {
            rng.randn(IxDyn(&[batch, outputs]))
        }
    }
}

/// The same network in both engines, both drawn from `RandomState::new(seed)`: identical weights (checked)
/// and identical dropout masks.
///
/// # Panics
/// If a layer does not fit the shape before it.
pub fn model_pair<F: TorchFloat>(spec: &NetSpec, loss: LossKind, seed: u32) -> (NeuralNetwork<F>, Model) {
    let net = spec.scratch::<F>(loss.scratch(), &mut RandomState::new(seed)).expect("a valid network");
    let model = spec.torch::<F>(loss.torch(), tch::Device::Cpu, &mut RandomState::new(seed)).expect("a valid network");
    for ((name, a), (_, b)) in net.named_parameters().iter().zip(model.named_arrays::<F>()) {
        assert_eq!(a, &b, "{name}: both engines draw the same initial values");
    }
    (net, model)
}

/// [`model_pair`] for a dense network on `n_in` inputs.
pub fn dense_pair<F: TorchFloat>(
    n_in: usize,
    layers: &[DenseSpec],
    init: WeightInit,
    loss: LossKind,
    seed: u32,
) -> (NeuralNetwork<F>, Model) {
    let layers = layers
        .iter()
        .map(|d| LayerSpec::Dense { neurons: d.neurons, activation: d.activation, init, dropout: d.dropout })
        .collect();
    model_pair(&NetSpec::new(&[n_in], layers), loss, seed)
}

/// Forward pass, loss and full backward pass in both engines (each forward pass once, so that dropout
/// masks drawn from the shared stream line up); compares the output, the loss, the input gradient and
/// every parameter gradient, named `label ...` in failures.
pub fn compare_networks<F: TorchFloat>(
    net: &mut NeuralNetwork<F>,
    model: &mut Model,
    x: &ArrayD<F>,
    y: &ArrayD<F>,
    label: &str,
) {
    let tol = tolerance::<F>();
    let out = net.forward(x, scratch::ops::Mode::Train).expect("forward");
    let loss = net.loss_on(&out, y).expect("loss");
    let grad = net.loss_backward().expect("loss gradient");
    let dx = net.backward(grad).expect("backward");

    let xt = leaf(x);
    model.zero_grad();
    let out_t = model.forward(&xt, scratch::ops::Mode::Train).expect("forward");
    let loss_t = model.loss().forward(&out_t, &to_tensor(y)).expect("loss");
    loss_t.backward();

    assert_close_tensor(&format!("{label} output"), &out, &out_t, tol);
    assert_close(&format!("{label} loss"), &ArrayD::from_elem(IxDyn(&[]), loss), &to_array(&loss_t), tol);
    assert_close_tensor(&format!("{label} input grad"), &dx, &xt.grad(), tol);
    let params = model.named_parameters();
    assert_eq!(net.params().len(), params.len(), "{label}: number of parameters");
    for ((name, p), (tname, t)) in net.params().iter().zip(&params) {
        assert_eq!(name, tname, "{label}: parameter order");
        assert_close_tensor(&format!("{label} {name} grad"), &p.grad_canonical(), &t.grad(), tol);
    }
}

/// A torch tensor of `a` that records gradients.
pub fn leaf<F: TorchFloat>(a: &ArrayD<F>) -> Tensor {
    to_tensor(a).set_requires_grad(true)
}

/// Re-initialises both engines' models from the same generator state (to check that the torch engine
/// draws its weights exactly as the from-scratch one does).
pub fn reinitialize_both<F: TorchFloat>(net: &mut NeuralNetwork<F>, model: &mut Model, seed: u32) {
    net.reinitialize(&mut RandomState::new(seed), InitSeeding::Stream);
    model.reinitialize(&mut RandomState::new(seed), InitSeeding::Stream);
}

pub use scratch::data::available as data_dir_or_skip;

/// The largest difference between two sets of named parameters, relative to the largest magnitude of
/// each tensor: `max |a − b| / max |b|`, with the name of the worst tensor.
pub fn max_relative_difference<F: TorchFloat>(a: &[(String, ArrayD<F>)], b: &[(String, ArrayD<F>)]) -> (f64, String) {
    let mut worst = (0.0, String::new());
    for ((name, x), (other, y)) in a.iter().zip(b) {
        assert_eq!(name, other, "parameter order");
        let diff = x.iter().zip(y.iter()).map(|(p, q)| (p.as_f64() - q.as_f64()).abs()).fold(0.0, f64::max);
        let scale = y.iter().map(|q| q.as_f64().abs()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
        if diff / scale > worst.0 || diff.is_nan() {
            worst = (diff / scale, name.clone());
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    #[should_panic(expected = "w.grad: worst element [1, 0]: scratch 3e0, torch 3.1e0")]
    fn a_failing_comparison_names_the_tensor_index_and_values() {
        let a = array![[1.0f64, 2.0], [3.0, 4.0]].into_dyn();
        let b = array![[1.0f64, 2.0], [3.1, 4.0]].into_dyn();
        assert_close("w.grad", &a, &b, F64);
    }

    #[test]
    fn within_tolerance_passes_and_nan_fails() {
        let a = array![1.0f32, 1000.0].into_dyn();
        let b = array![1.000_005f32, 1000.09].into_dyn();
        assert_close("x", &a, &b, F32);
        let (_, _, _, ratio) = worst(&array![f64::NAN].into_dyn(), &array![1.0].into_dyn(), F64);
        assert!(ratio.is_infinite());
    }
}
