//! Every loss: value and gradient with respect to the prediction, from-scratch against libtorch.

use ndarray::{ArrayD, IxDyn};
use parity_tests::{assert_close, assert_close_tensor, leaf, targets, tolerance, LOSSES};
use scratch::rng::RandomState;
use torch::convert::TorchFloat;

fn check<F: TorchFloat>() {
    let tol = tolerance::<F>();
    let mut rng = RandomState::new(4);
    for (batch, classes) in [(1, 1), (1, 10), (3, 2), (60, 10), (32, 1), (17, 100)] {
        for loss in LOSSES {
            if loss.is_classification() && classes == 1 {
                continue;
            }
            for scale in [1.0, 30.0] {
                // Large logits check the stability of the softmax (log-sum-exp).
                let p: ArrayD<F> = rng.randn::<F, _>(IxDyn(&[batch, classes])).mapv(|v| v * F::cast(scale));
                let y = targets::<F>(loss, batch, classes, &mut rng);
                let mut ours = loss.build::<F>();
                let value = ours.forward(&p, &y).unwrap();
                let grad = ours.backward().unwrap();
                let pt = leaf(&p);
                let lt = torch::loss::loss(loss, &pt, &torch::convert::to_tensor(&y).to_device(pt.device())).unwrap();
                lt.backward();
                let label = format!("{loss:?} {} {batch}x{classes} scale {scale}", F::NAME);
                let value_t = torch::convert::to_array::<F>(&lt);
                // Large logits put probabilities within 1e-12 of 1, where the book's printed value needs
                // log(1 − p) computed without cancellation: both engines do, so it is compared there too.
                assert_close(&format!("{label} value"), &ArrayD::from_elem(IxDyn(&[]), value), &value_t, tol);
                assert!(value.is_finite(), "{label}: {value}");
                assert_close_tensor(&format!("{label} gradient"), &grad, &pt.grad(), tol);
            }
        }
    }
}

#[test]
fn losses_f64() {
    check::<f64>();
}

#[test]
fn losses_f32() {
    check::<f32>();
}

/// PyTorch's `reduction='none'` in both engines: every element of an MSE, every row of a cross-entropy
/// (one-hot and class-index targets), equal between the engines and reducing to the loss.
#[test]
fn unreduced_losses_agree_and_reduce_to_the_loss() {
    let mut rng = RandomState::new(8);
    for loss in LOSSES {
        let (batch, time, classes) = (3, 4, 5);
        let p: ArrayD<f64> = rng.randn::<f64, _>(IxDyn(&[batch, time, classes])).mapv(|v| v * 3.0);
        let y = if loss.is_classification() {
            ndarray::ArrayD::from_shape_fn(IxDyn(&[batch, time]), |_| rng.randint(0, classes as i64).unwrap() as f64)
        } else {
            rng.randn(IxDyn(&[batch, time, classes]))
        };
        let ours = scratch::losses::unreduced(loss, &p, &y).unwrap();
        let to = |a: &ArrayD<f64>| torch::convert::to_tensor(a).to_device(parity_tests::device());
        let theirs = torch::loss::unreduced(loss, &to(&p), &to(&y)).unwrap();
        assert_close_tensor(&format!("{loss:?} unreduced"), &ours, &theirs, parity_tests::F64);
        let reduced = loss.build::<f64>().forward(&p, &y).unwrap();
        let divisor = match loss {
            scratch::spec::LossSpec::MeanSquaredError(scratch::spec::MseReduction::Rows) => batch as f64,
            scratch::spec::LossSpec::MeanSquaredError(scratch::spec::MseReduction::Mean) => ours.len() as f64,
            scratch::spec::LossSpec::SoftmaxCrossEntropy { reduction: scratch::spec::Reduction::Mean, .. } => {
                ours.len() as f64
            }
            _ => 1.0,
        };
        assert!((ours.sum() / divisor - reduced).abs() <= 1e-12 * reduced.abs().max(1.0), "{loss:?}");
    }
}
