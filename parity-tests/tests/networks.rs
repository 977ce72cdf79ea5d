//! Dense layers and whole networks: outputs, loss, input gradient and every parameter gradient, from
//! identical weights, over a grid of architectures (batch 1, narrow, wide, deep) and every loss.

use ndarray::{ArrayD, IxDyn};
use parity_tests::{assert_close_tensor, compare_networks, dense_pair, leaf, reinitialize_both, DenseSpec, LOSSES};
use scratch::layers::WeightInit;
use scratch::ops::{Activation, DropoutStyle, Mode};
use scratch::rng::RandomState;
use torch::convert::{to_tensor, TorchFloat};

const ACTIVATIONS: [Activation; 5] =
    [Activation::Linear, Activation::Sigmoid, Activation::Tanh, Activation::ReLU, Activation::LeakyReLU { slope: 0.2 }];

/// Architectures: (inputs, hidden widths, outputs).
fn architectures() -> Vec<(usize, Vec<usize>, usize)> {
    vec![
        (1, vec![], 1),
        (13, vec![], 1),
        (13, vec![13], 1),
        (13, vec![13, 13], 1),
        (784, vec![89], 10),
        (784, vec![178, 46], 10),
        (3, vec![512], 2),
        (64, vec![2], 10),
        (8, vec![8, 8, 8, 8, 8, 8, 8], 4),
    ]
}

fn specs(hidden: &[usize], outputs: usize, case: usize) -> Vec<DenseSpec> {
    let mut layers: Vec<DenseSpec> = hidden
        .iter()
        .enumerate()
        .map(|(i, &h)| DenseSpec::new(h, ACTIVATIONS[(case + i) % ACTIVATIONS.len()]))
        .collect();
    layers.push(DenseSpec::new(outputs, Activation::Linear));
    layers
}

fn check_networks<F: TorchFloat>() {
    let mut rng = RandomState::new(5);
    let mut case = 0;
    for (n_in, hidden, outputs) in architectures() {
        for loss in LOSSES {
            for batch in [1, 7, 60] {
                case += 1;
                let init = if F::NAME == "f32" || n_in > 100 { WeightInit::Glorot } else { WeightInit::Standard };
                let layers = specs(&hidden, outputs, case);
                let (mut net, mut model) = dense_pair::<F>(n_in, &layers, init, loss, case as u32);
                let x: ArrayD<F> = rng.randn(IxDyn(&[batch, n_in]));
                let y = loss.targets::<F>(batch, outputs, &mut rng);
                let label = format!("{} {n_in}-{hidden:?}-{outputs} {loss:?} batch {batch}", F::NAME);
                compare_networks(&mut net, &mut model, &x, &y, &label);
            }
        }
    }
}

#[test]
fn networks_f64() {
    check_networks::<f64>();
}

#[test]
fn networks_f32() {
    check_networks::<f32>();
}

#[test]
fn both_engines_draw_the_same_initial_weights() {
    for init in [WeightInit::Standard, WeightInit::Glorot, WeightInit::BookGlorot2019, WeightInit::PyTorch] {
        let layers = [
            DenseSpec::new(7, Activation::Tanh),
            DenseSpec { neurons: 3, activation: Activation::Linear, dropout: Some((0.8, DropoutStyle::Inverted)) },
            DenseSpec::new(2, Activation::Linear),
        ];
        let (mut net, mut model) = dense_pair::<f64>(5, &layers, init, parity_tests::LossKind::MseRows, 1);
        reinitialize_both(&mut net, &mut model, 42);
        for ((n, a), (_, b)) in net.named_parameters().iter().zip(model.named_arrays::<f64>()) {
            assert_eq!(a, &b, "{n} {init:?}");
        }
    }
}

#[test]
fn dense_layers_with_dropout_and_an_injected_mask() {
    let mut rng = RandomState::new(6);
    for style in [DropoutStyle::Inverted, DropoutStyle::Book] {
        for keep in [0.5, 0.8] {
            let layers = [
                DenseSpec { neurons: 16, activation: Activation::Tanh, dropout: Some((keep, style)) },
                DenseSpec { neurons: 8, activation: Activation::Sigmoid, dropout: Some((keep, style)) },
                DenseSpec::new(3, Activation::Linear),
            ];
            let (mut net, mut model) =
                dense_pair::<f64>(10, &layers, WeightInit::Glorot, parity_tests::LossKind::SoftmaxCrossEntropy, 3);
            let x: ArrayD<f64> = rng.randn(IxDyn(&[9, 10]));
            let y = parity_tests::LossKind::SoftmaxCrossEntropy.targets::<f64>(9, 3, &mut rng);
            let masks: Vec<ArrayD<f64>> = [16, 8].iter().map(|&w| rng.bernoulli_mask(keep, IxDyn(&[9, w]))).collect();
            // `compare` runs two scratch forward passes (output, then loss): inject for each.
            for (i, m) in masks.iter().enumerate() {
                model.layers_mut()[i].dropout_mut().unwrap().inject_mask(to_tensor(m));
            }
            let inject = |net: &mut scratch::network::NeuralNetwork<f64>| {
                for (i, m) in masks.iter().enumerate() {
                    net.layers_mut()[i].dropout_mut().unwrap().inject_mask(m.clone());
                }
            };
            inject(&mut net);
            let out = net.forward(&x, Mode::Train).unwrap();
            inject(&mut net);
            let loss = net.forward_loss(&x, &y, Mode::Train).unwrap();
            let g = net.loss_backward().unwrap();
            let dx = net.backward(g).unwrap();
            let xt = leaf(&x);
            model.zero_grad();
            let out_t = model.forward(&xt, Mode::Train).unwrap();
            let loss_t = model.loss().forward(&out_t, &to_tensor(&y)).unwrap();
            loss_t.backward();
            let label = format!("dropout {style:?} keep {keep}");
            assert_close_tensor(&format!("{label} output"), &out, &out_t, parity_tests::F64);
            assert!((loss - loss_t.double_value(&[])).abs() < 1e-12);
            assert_close_tensor(&format!("{label} input grad"), &dx, &xt.grad(), parity_tests::F64);
            for ((name, p), (_, t)) in net.params().iter().zip(&model.named_parameters()) {
                assert_close_tensor(&format!("{label} {name} grad"), &p.grad_canonical(), &t.grad(), parity_tests::F64);
            }
        }
    }
}
