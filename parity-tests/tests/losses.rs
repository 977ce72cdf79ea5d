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
