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
//!
//! The libtorch side computes on [`device`] (`DLFS_TEST_DEVICE=cuda` for a GPU), the from-scratch side
//! on the CPU. Whether a GPU's kernels meet these tolerances is measured, not assumed: on CUDA (or with
//! `DLFS_PARITY_REPORT=1`) every comparison reports on standard error each time it sets a new worst for
//! its test, as a line
//!
//! ```text
//! parity-worst <test> ratio <r> diff <|a − b|> <what>
//! ```
//!
//! where `r` is how far the difference goes into its tolerance (at most 1 within it); the last such
//! line of a test is its worst comparison (up to the first failure, which ends the test). Run the tests
//! with `--nocapture` to see them.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ndarray::{ArrayD, IxDyn};
use scratch::gradcheck::unravel;
use scratch::network::{InitSeeding, NeuralNetwork};
use scratch::rng::RandomState;
use scratch::spec::{CrossEntropyValue, MseReduction, Reduction};
pub use scratch::spec::{DenseSpec, LayerSpec, LossSpec, NetSpec};
use tch::Tensor;
use torch::convert::{to_array, to_tensor, TorchFloat};
use torch::layers::{BuildOptions, Kernel};
use torch::Net;

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
    if F::SINGLE {
        F32
    } else {
        F64
    }
}

/// The device the libtorch engine computes on in these tests: `DLFS_TEST_DEVICE` (`cpu`, the default,
/// or `cuda`), while the from-scratch engine always computes on the CPU.
///
/// On CUDA, `DLFS_TEST_CUDNN=0` turns cuDNN off, so that convolutions and recurrent layers run on
/// libtorch's own CUDA kernels instead: a diagnosis, when a comparison fails on the GPU, of whether
/// cuDNN's algorithms (which libtorch lets use TensorFloat-32 for `f32` by default) are the cause.
///
/// # Panics
/// If the variable names an unknown device, or CUDA is asked for and not usable (a test run that asks
/// for the GPU must not pass on the CPU).
pub fn device() -> tch::Device {
    let name = std::env::var("DLFS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device: torch::Device = name.parse().unwrap_or_else(|e| panic!("DLFS_TEST_DEVICE: {e}"));
    let device = device.resolve().unwrap_or_else(|e| panic!("DLFS_TEST_DEVICE={name}: {e}"));
    if device.is_cuda() && std::env::var("DLFS_TEST_CUDNN").is_ok_and(|v| v == "0") {
        tch::Cuda::set_user_enabled_cudnn(false);
    }
    device
}

/// Whether comparisons report their worst differences: on CUDA, or when `DLFS_PARITY_REPORT=1`.
fn reporting() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("DLFS_PARITY_REPORT").is_ok_and(|v| v == "1") || device().is_cuda())
}

/// Notes a comparison for the report (see the [crate documentation](crate)): `ratio` is its worst
/// difference over what its tolerance allows there (at most 1 when it passes), `diff` that difference,
/// `what` names it. Prints a line when it is the worst of the running test so far.
pub fn record(what: &str, ratio: f64, diff: f64) {
    if !reporting() {
        return;
    }
    static WORST: OnceLock<Mutex<HashMap<String, f64>>> = OnceLock::new();
    let test = std::thread::current().name().unwrap_or("unnamed").to_string();
    let mut worst = WORST.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
    let previous = worst.entry(test.clone()).or_insert(-1.0);
    if ratio > *previous {
        *previous = ratio;
        eprintln!("parity-worst {test} ratio {ratio:.3e} diff {diff:.3e} {what}");
    }
}

/// A [`tch::nn::VarStore`] on the test [`device`] holding `F`.
pub fn var_store<F: TorchFloat>() -> tch::nn::VarStore {
    torch::var_store::<F>(device())
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
    record(name, ratio, (a - b).abs());
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

/// Every loss both engines implement, with every reduction: MSE by rows (the book's), by elements
/// (PyTorch's mean) and summed; softmax cross-entropy averaged (categorical and the book's printed
/// value) and summed (the book's chapter-6 sequence loss).
pub const LOSSES: [LossSpec; 6] = [
    LossSpec::MeanSquaredError(MseReduction::Rows),
    LossSpec::MeanSquaredError(MseReduction::Mean),
    LossSpec::MeanSquaredError(MseReduction::Sum),
    LossSpec::CROSS_ENTROPY,
    LossSpec::SoftmaxCrossEntropy { reduction: Reduction::Mean, value: CrossEntropyValue::BookBinarySum },
    LossSpec::CROSS_ENTROPY_SUM,
];

/// Random targets `(batch, outputs)` suited to `loss`: one-hot rows for a cross-entropy, normal values
/// otherwise.
pub fn targets<F: TorchFloat>(loss: LossSpec, batch: usize, outputs: usize, rng: &mut RandomState) -> ArrayD<F> {
    if loss.is_classification() {
        let mut y = ArrayD::zeros(IxDyn(&[batch, outputs]));
        for i in 0..batch {
            y[[i, rng.randint(0, outputs as i64).unwrap() as usize]] = F::one();
        }
        y
    } else {
        rng.randn(IxDyn(&[batch, outputs]))
    }
}

/// Asserts that two engines' named parameter lists have the same names, in the same order, and the
/// same number of entries (a parameter missing from one engine fails here, not silently).
pub fn assert_same_names<A, B>(label: &str, scratch: &[(String, A)], torch: &[(String, B)]) {
    let ours: Vec<&String> = scratch.iter().map(|(n, _)| n).collect();
    let theirs: Vec<&String> = torch.iter().map(|(n, _)| n).collect();
    assert_eq!(ours, theirs, "{label}: parameter names and order (scratch vs torch)");
}

/// The same network in both engines, both drawn from `RandomState::new(seed)`: identical weights
/// (checked) and, with [`BuildOptions::parity`], identical dropout masks; the libtorch one on the test
/// [`device`], its recurrent layers computed by `kernel`.
///
/// # Panics
/// If a layer does not fit the shape before it.
pub fn model_pair_with<F: TorchFloat>(
    spec: &NetSpec,
    loss: LossSpec,
    seed: u32,
    kernel: Kernel,
) -> (NeuralNetwork<F>, Net) {
    let net = NeuralNetwork::from_spec(spec, loss.build::<F>(), &mut RandomState::new(seed)).expect("a valid network");
    let vs = var_store::<F>();
    let model = Net::with_options(vs.root(), spec, BuildOptions::parity(kernel), &mut RandomState::new(seed))
        .expect("a valid network");
    let (ours, theirs) = (net.named_parameters(), model.named_arrays::<F>());
    assert_same_names("model_pair", &ours, &theirs);
    for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "{name}: both engines draw the same initial values");
    }
    (net, model)
}

/// [`model_pair_with`] with recurrent layers on libtorch's fused kernels.
pub fn model_pair<F: TorchFloat>(spec: &NetSpec, loss: LossSpec, seed: u32) -> (NeuralNetwork<F>, Net) {
    model_pair_with(spec, loss, seed, Kernel::Fused)
}

/// [`model_pair`] for a dense network on `n_in` inputs.
pub fn dense_pair<F: TorchFloat>(
    n_in: usize,
    layers: &[DenseSpec],
    loss: LossSpec,
    seed: u32,
) -> (NeuralNetwork<F>, Net) {
    let layers = layers.iter().map(|&d| LayerSpec::Dense(d)).collect();
    model_pair(&NetSpec::new(&[n_in], layers), loss, seed)
}

/// Forward pass, loss and full backward pass in both engines (each forward pass once, so that dropout
/// masks drawn from the shared stream line up); compares the output, the loss, the input gradient and
/// every parameter gradient, named `label ...` in failures.
pub fn compare_networks<F: TorchFloat>(
    net: &mut NeuralNetwork<F>,
    model: &Net,
    loss: LossSpec,
    x: &ArrayD<F>,
    y: &ArrayD<F>,
    label: &str,
) {
    let tol = tolerance::<F>();
    let (out, value) = net.forward_loss(x, y, scratch::ops::Mode::Train).expect("forward");
    let grad = net.loss_backward().expect("loss gradient");
    let dx = net.backward(grad).expect("backward");

    let xt = leaf(x);
    model.zero_grad();
    let out_t = model.f_forward_t(&xt, true).expect("forward");
    let value_t = torch::loss::loss(loss, &out_t, &to_tensor(y).to_device(model.device())).expect("loss");
    value_t.backward();

    assert_close_tensor(&format!("{label} output"), &out, &out_t, tol);
    assert_close(&format!("{label} loss"), &ArrayD::from_elem(IxDyn(&[]), value), &to_array(&value_t), tol);
    assert_close_tensor(&format!("{label} input grad"), &dx, &xt.grad(), tol);
    let params = model.named_parameters();
    assert_same_names(label, &net.params(), &params);
    for ((name, p), (_, t)) in net.params().iter().zip(&params) {
        assert_close_tensor(&format!("{label} {name} grad"), &p.grad_canonical(), &t.grad(), tol);
    }
}

/// A tensor of `a` on the test [`device`] that records gradients.
pub fn leaf<F: TorchFloat>(a: &ArrayD<F>) -> Tensor {
    to_tensor(a).to_device(device()).set_requires_grad(true)
}

/// Re-initialises both engines' models from the same generator state (to check that the torch engine
/// draws its weights exactly as the from-scratch one does).
pub fn reinitialize_both<F: TorchFloat>(net: &mut NeuralNetwork<F>, model: &Net, seed: u32) {
    net.reinitialize(&mut RandomState::new(seed), InitSeeding::Stream);
    model.reinitialize(&mut RandomState::new(seed), InitSeeding::Stream);
}

pub use scratch::data::available as data_dir_or_skip;

/// Panics unless the two sets of named parameters are within `limit` of each other by
/// [`max_relative_difference`] (the criterion of training trajectories); the message names the worst
/// tensor.
pub fn assert_same_parameters<F: TorchFloat>(
    label: &str,
    scratch: &[(String, ArrayD<F>)],
    torch: &[(String, ArrayD<F>)],
    limit: f64,
) {
    let (diff, name) = max_relative_difference(scratch, torch);
    record(&format!("{label}: parameters ({name}), relative to each tensor's largest value"), diff / limit, diff);
    assert!(diff <= limit, "{label}: {name} differs by {diff:e} relative (more than {limit:e})");
}

/// Panics unless every `scratch[i]` is within `rel · |torch[i]|` of `torch[i]` (sequences of losses
/// along a trajectory); the message names the first one that is not.
pub fn assert_relative_sequence(label: &str, scratch: &[f64], torch: &[f64], rel: f64) {
    assert_eq!(scratch.len(), torch.len(), "{label}: lengths (scratch vs torch)");
    // |x − y| / (rel·|y|): 0 where they are equal, infinite where that is NaN.
    let ratio = |x: f64, y: f64| {
        let d = (x - y).abs();
        if d == 0.0 {
            0.0
        } else if (d / (rel * y.abs())).is_nan() {
            f64::INFINITY
        } else {
            d / (rel * y.abs())
        }
    };
    if let Some((i, (x, y))) = scratch
        .iter()
        .zip(torch)
        .enumerate()
        .max_by(|(_, (a, b)), (_, (c, d))| ratio(**a, **b).total_cmp(&ratio(**c, **d)))
    {
        record(&format!("{label}: value {} of {}", i + 1, scratch.len()), ratio(*x, *y), (x - y).abs());
    }
    for (i, (x, y)) in scratch.iter().zip(torch).enumerate() {
        assert!(ratio(*x, *y) <= 1.0, "{label}: value {}: scratch {x}, torch {y} (relative limit {rel:e})", i + 1);
    }
}

/// The largest difference between two sets of named parameters, relative to the largest magnitude of
/// each tensor: `max |a − b| / max |b|`, with the name of the worst tensor.
pub fn max_relative_difference<F: TorchFloat>(a: &[(String, ArrayD<F>)], b: &[(String, ArrayD<F>)]) -> (f64, String) {
    assert_same_names("max_relative_difference", a, b);
    let mut worst = (0.0, String::new());
    for ((name, x), (_, y)) in a.iter().zip(b) {
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
