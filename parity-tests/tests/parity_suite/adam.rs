//! Adam and AdamW in both engines against libtorch's own optimizers (`torch::optim::Adam` and `AdamW`,
//! through `tch::nn::Adam` and `tch::nn::AdamW`), step by step: 30 steps on random parameters and
//! gradient sequences, without weight decay, with L2 weight decay and with decoupled weight decay.

use ndarray::{ArrayD, IxDyn};
use parity_tests::{assert_close_tensor, device, leaf, F64};
use scratch::optim::{Adam, AdamConfig, Decay, Optimizer as _, WeightDecay};
use scratch::param::{Layout, Param};
use scratch::rng::RandomState;
use tch::nn::{self, OptimizerConfig};
use tch::Tensor;
use torch::convert::to_tensor;
use torch::optim::Optimizer as _;

const STEPS: usize = 30;
const LR: f64 = 0.01;

/// Sets `p`'s gradient to `g` through autograd: the gradient of `Σ p ⊙ g`.
fn set_grad(p: &Tensor, g: &ArrayD<f64>) {
    let mut p = p.shallow_clone();
    p.zero_grad();
    (&p * to_tensor(g).to_device(p.device())).sum(tch::Kind::Double).backward();
}

fn compare(weight_decay: WeightDecay) {
    let mut rng = RandomState::new(3);
    let shapes = [vec![4, 3], vec![3], vec![2, 2, 2]];
    let init: Vec<ArrayD<f64>> = shapes.iter().map(|s| rng.randn::<f64, _>(IxDyn(s))).collect();
    let grads: Vec<Vec<ArrayD<f64>>> =
        (0..STEPS).map(|_| shapes.iter().map(|s| rng.randn::<f64, _>(IxDyn(s))).collect()).collect();
    let names: Vec<String> = (0..shapes.len()).map(|i| format!("p{i}")).collect();

    let mut ours: Vec<Param<f64>> = init.iter().map(|v| Param::new(v.clone(), Layout::Canonical)).collect();
    let (mut scratch_adam, mut torch_adam, config_wd) = match weight_decay {
        WeightDecay::Decoupled(l) => {
            (Adam::<f64>::adamw(LR, l, Decay::None).unwrap(), torch::optim::Adam::adamw(LR, l, Decay::None).unwrap(), l)
        }
        WeightDecay::L2(l) => (
            Adam::with_config(LR, Decay::None, AdamConfig { weight_decay, ..Default::default() }).unwrap(),
            torch::optim::Adam::with_config(LR, Decay::None, AdamConfig { weight_decay, ..Default::default() })
                .unwrap(),
            l,
        ),
        WeightDecay::None => {
            (Adam::new(LR, Decay::None).unwrap(), torch::optim::Adam::new(LR, Decay::None).unwrap(), 0.0)
        }
    };
    let engine: Vec<(String, Tensor)> = names.iter().zip(&init).map(|(n, v)| (n.clone(), leaf(v))).collect();

    let mut vs = nn::VarStore::new(device());
    vs.set_kind(tch::Kind::Double);
    let reference: Vec<Tensor> = names.iter().zip(&init).map(|(n, v)| vs.root().var_copy(n, &to_tensor(v))).collect();
    let mut libtorch = match weight_decay {
        WeightDecay::Decoupled(_) => nn::AdamW { wd: config_wd, ..Default::default() }.build(&vs, LR).unwrap(),
        _ => nn::Adam { wd: config_wd, ..Default::default() }.build(&vs, LR).unwrap(),
    };

    for (step, g) in grads.iter().enumerate() {
        for (p, g) in ours.iter_mut().zip(g) {
            p.grad = g.clone();
        }
        scratch_adam.step(&mut names.iter().cloned().zip(ours.iter_mut()).collect::<Vec<_>>()).unwrap();
        for ((_, p), g) in engine.iter().zip(g) {
            set_grad(p, g);
        }
        torch_adam.step(&engine).unwrap();
        libtorch.zero_grad();
        let loss = reference
            .iter()
            .zip(g)
            .map(|(p, g)| (p * to_tensor(g).to_device(p.device())).sum(tch::Kind::Double))
            .sum::<Tensor>();
        loss.backward();
        libtorch.step();
        for ((p, (_, e)), r) in ours.iter().zip(&engine).zip(&reference) {
            let label = format!("{weight_decay:?} step {}", step + 1);
            assert_close_tensor(&format!("{label} scratch vs libtorch"), &p.value, r, F64);
            assert_close_tensor(
                &format!("{label} torch engine vs libtorch"),
                &torch::convert::to_array::<f64>(e),
                r,
                F64,
            );
        }
    }
}

#[test]
fn adam_matches_libtorch() {
    compare(WeightDecay::None);
}

#[test]
fn adam_with_l2_weight_decay_matches_libtorch() {
    compare(WeightDecay::L2(0.1));
}

#[test]
fn adamw_matches_libtorch() {
    compare(WeightDecay::Decoupled(0.05));
}
