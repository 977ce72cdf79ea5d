//! Optimizer steps: from the same parameters and gradients, every optimizer and decay schedule of the
//! two engines makes the same updates, step after step and across epochs.

use ndarray::{ArrayD, IxDyn};
use parity_tests::{assert_close_tensor, leaf, tolerance};
use scratch::optim::{self, Decay};
use scratch::param::{Layout, Param};
use scratch::rng::RandomState;
use tch::Tensor;
use torch::convert::{to_tensor, TorchFloat};
use torch::optim::{self as topt, Optimizer as _};

const SHAPES: [&[usize]; 4] = [&[1], &[3, 4], &[89, 784], &[10]];
const DECAYS: [Decay; 3] = [Decay::None, Decay::Linear { final_lr: 0.01 }, Decay::Exponential { final_lr: 0.001 }];

/// Sets each torch parameter's gradient to `grads` by back-propagating `Σ p ⊙ g`.
fn set_torch_grads(params: &[(String, Tensor)], grads: &[ArrayD<impl TorchFloat>]) {
    for ((_, p), g) in params.iter().zip(grads) {
        p.shallow_clone().zero_grad();
        (p * to_tensor(g).to_device(p.device())).sum(p.kind()).backward();
    }
}

fn check<F: TorchFloat>(mut ours: Box<dyn optim::Optimizer<F>>, mut theirs: Box<dyn topt::Optimizer>, label: &str) {
    let mut rng = RandomState::new(7);
    let mut params: Vec<Param<F>> = SHAPES.iter().map(|s| Param::new(rng.randn(IxDyn(s)), Layout::Canonical)).collect();
    let torch_params: Vec<(String, Tensor)> =
        params.iter().enumerate().map(|(i, p)| (format!("p{i}"), leaf(&p.value))).collect();
    let (epochs, steps) = (4, 3);
    ours.start(epochs);
    theirs.start(epochs);
    for epoch in 0..epochs {
        for step in 0..steps {
            let grads: Vec<ArrayD<F>> = SHAPES.iter().map(|s| rng.randn(IxDyn(s))).collect();
            for (p, g) in params.iter_mut().zip(&grads) {
                p.grad = g.clone();
            }
            ours.step(&mut params.iter_mut().enumerate().map(|(i, p)| (format!("p{i}"), p)).collect::<Vec<_>>())
                .unwrap();
            set_torch_grads(&torch_params, &grads);
            theirs.step(&torch_params).unwrap();
            for (p, (name, t)) in params.iter().zip(&torch_params) {
                assert_close_tensor(
                    &format!("{label} {} epoch {epoch} step {step} {name}", F::NAME),
                    &p.value,
                    t,
                    tolerance::<F>(),
                );
            }
        }
        assert_eq!(ours.learning_rate(), theirs.learning_rate(), "{label}: rate after epoch {epoch}");
        ours.end_epoch();
        theirs.end_epoch();
    }
}

fn all<F: TorchFloat>() {
    for decay in DECAYS {
        check::<F>(
            Box::new(optim::SGD::with_decay(0.1, decay).unwrap()),
            Box::new(topt::SGD::new(0.1, decay).unwrap()),
            &format!("SGD {decay:?}"),
        );
        check::<F>(
            Box::new(optim::SGDMomentum::new(0.1, 0.9, decay).unwrap()),
            Box::new(topt::SGDMomentum::new(0.1, 0.9, decay).unwrap()),
            &format!("SGDMomentum {decay:?}"),
        );
        check::<F>(
            Box::new(optim::AdaGrad::new(0.1, decay).unwrap()),
            Box::new(topt::AdaGrad::new(0.1, decay).unwrap()),
            &format!("AdaGrad {decay:?}"),
        );
    }
}

#[test]
fn optimizer_steps_f64() {
    all::<f64>();
}

#[test]
fn optimizer_steps_f32() {
    all::<f32>();
}

#[test]
fn decay_schedules_follow_the_books_formulas() {
    // lr_e = lr_0 − (lr_0 − lr_f)·e/(E − 1) and lr_0·(lr_f/lr_0)^(e/(E − 1)): the last epoch uses lr_f.
    // Chapter 7's ExponentialLR: γ = (lr_f/lr_0)^(1/(E + 1)) = (1/16)^(1/4) = 1/2, epoch e uses lr_0·γ^(e+1).
    for (lr0, decay, expected) in [
        (0.15, Decay::Linear { final_lr: 0.05 }, [0.15, 0.1, 0.05]),
        (0.2, Decay::Exponential { final_lr: 0.05 }, [0.2, 0.1, 0.05]),
        (0.2, Decay::BookExponentialLR { final_lr: 0.0125 }, [0.1, 0.05, 0.025]),
    ] {
        let mut o = topt::SGD::new(lr0, decay).unwrap();
        o.start(3);
        for e in expected {
            assert!((o.learning_rate() - e).abs() < 1e-12, "{decay:?}: {} vs {e}", o.learning_rate());
            o.end_epoch();
        }
    }
}
