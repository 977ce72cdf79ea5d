//! Dense layers and whole networks: outputs, loss, input gradient and every parameter gradient, from
//! identical weights, over a grid of architectures (batch 1, narrow, wide, deep) and every loss.

use ndarray::{ArrayD, IxDyn};
use parity_tests::{
    assert_close_tensor, assert_same_names, compare_networks, dense_pair, leaf, reinitialize_both, targets, DenseSpec,
    LossSpec, LOSSES,
};
use scratch::ops::{Activation, DropoutStyle, Mode};
use scratch::rng::RandomState;
use scratch::spec::{MseReduction, Reduction, WeightInit};
use torch::convert::{to_tensor, TorchFloat};

const ACTIVATIONS: [Activation; 7] = Activation::EACH;

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

fn specs(hidden: &[usize], outputs: usize, case: usize, init: WeightInit) -> Vec<DenseSpec> {
    let mut layers: Vec<DenseSpec> = hidden
        .iter()
        .enumerate()
        .map(|(i, &h)| DenseSpec::new(h).activation(ACTIVATIONS[(case + i) % ACTIVATIONS.len()]).init(init))
        .collect();
    layers.push(DenseSpec::new(outputs).init(init));
    layers
}

fn check_networks<F: TorchFloat>() {
    let mut rng = RandomState::new(5);
    let mut case = 0;
    for (n_in, hidden, outputs) in architectures() {
        for loss in LOSSES {
            for batch in [1, 7, 60] {
                case += 1;
                // A loss summed over the rows (not averaged) has gradients as many times larger as there
                // are rows, and as many times their f32 rounding: beyond the f32 tolerance's absolute part,
                // made for values of order 1. In f32 the summed losses run at batch 1 (the losses test
                // covers them at every batch size); the f64 grid runs them everywhere.
                let summed = matches!(
                    loss,
                    LossSpec::MeanSquaredError(MseReduction::Sum)
                        | LossSpec::SoftmaxCrossEntropy { reduction: Reduction::Sum, .. }
                );
                if F::SINGLE && summed && batch > 1 {
                    continue;
                }
                let init = if F::SINGLE || n_in > 100 { WeightInit::Glorot } else { WeightInit::Standard };
                let layers = specs(&hidden, outputs, case, init);
                let (mut net, model) = dense_pair::<F>(n_in, &layers, loss, case as u32);
                let x: ArrayD<F> = rng.randn(IxDyn(&[batch, n_in]));
                let y = targets::<F>(loss, batch, outputs, &mut rng);
                let label = format!("{} {n_in}-{hidden:?}-{outputs} {loss:?} batch {batch}", F::NAME);
                compare_networks(&mut net, &model, loss, &x, &y, &label);
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
            DenseSpec::new(7).activation(Activation::Tanh).init(init),
            DenseSpec::new(3).init(init).dropout(0.8),
            DenseSpec::new(2).init(init),
        ];
        let (mut net, model) = dense_pair::<f64>(5, &layers, LossSpec::MSE, 1);
        reinitialize_both(&mut net, &model, 42);
        let (ours, theirs) = (net.named_parameters(), model.named_arrays::<f64>());
        assert_same_names("reinitialised", &ours, &theirs);
        for ((n, a), (_, b)) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{n} {init:?}");
        }
    }
}

#[test]
fn dense_layers_with_dropout_and_an_injected_mask() {
    let mut rng = RandomState::new(6);
    for style in [DropoutStyle::Inverted, DropoutStyle::Book] {
        for keep in [0.5, 0.8] {
            let glorot = |n| DenseSpec::new(n).init(WeightInit::Glorot);
            let layers = [
                glorot(16).activation(Activation::Tanh).dropout_with(keep, style),
                glorot(8).activation(Activation::Sigmoid).dropout_with(keep, style),
                glorot(3),
            ];
            let (mut net, model) = dense_pair::<f64>(10, &layers, LossSpec::CROSS_ENTROPY, 3);
            let x: ArrayD<f64> = rng.randn(IxDyn(&[9, 10]));
            let y = targets::<f64>(LossSpec::CROSS_ENTROPY, 9, 3, &mut rng);
            let masks: Vec<ArrayD<f64>> = [16, 8].iter().map(|&w| rng.bernoulli_mask(keep, IxDyn(&[9, w]))).collect();
            for (i, m) in masks.iter().enumerate() {
                let path = format!("layers.{i}");
                model.dropout(&path).unwrap().inject_mask(to_tensor(m).to_device(model.device()));
                net.dropout_mut(&path).unwrap().inject_mask(m.clone());
            }
            let (out, loss) = net.forward_loss(&x, &y, Mode::Train).unwrap();
            let g = net.loss_backward().unwrap();
            let dx = net.backward(g).unwrap();
            let xt = leaf(&x);
            model.zero_grad();
            let out_t = model.f_forward_t(&xt, true).unwrap();
            let loss_t =
                torch::loss::loss(LossSpec::CROSS_ENTROPY, &out_t, &to_tensor(&y).to_device(out_t.device())).unwrap();
            loss_t.backward();
            let label = format!("dropout {style:?} keep {keep}");
            assert_close_tensor(&format!("{label} output"), &out, &out_t, parity_tests::F64);
            assert!((loss - loss_t.double_value(&[])).abs() < 1e-12);
            assert_close_tensor(&format!("{label} input grad"), &dx, &xt.grad(), parity_tests::F64);
            let params = model.named_parameters();
            assert_same_names(&label, &net.params(), &params);
            for ((name, p), (_, t)) in net.params().iter().zip(&params) {
                assert_close_tensor(&format!("{label} {name} grad"), &p.grad_canonical(), &t.grad(), parity_tests::F64);
            }
        }
    }
}

/// A GPT with a key-value cache in both engines: from the same initial weights, the libtorch engine's
/// cached logits are its whole network's at every step (past the context too, where the cache is
/// rebuilt from its last half), and both engines draw the same tokens with the same sampling and
/// generator.
#[test]
fn both_engines_generate_the_same_text_from_their_key_value_caches() {
    use scratch::network::NeuralNetwork;
    use scratch::rnn::Sampling;
    use scratch::spec::gpt::{gpt, GptConfig};

    let config = GptConfig { vocab: 11, context: 8, layers: 2, heads: 2, width: 12, dropout: 0.0, bias: true };
    let spec = gpt(&config);
    let net = NeuralNetwork::<f64>::build(&spec, &mut RandomState::new(5)).unwrap();
    let vs = parity_tests::var_store::<f64>();
    let model = torch::Net::new(vs.root(), &spec, &mut RandomState::new(5)).unwrap();

    let mut cached = torch::generate::Generator::new(&model, &config).unwrap();
    for (n, t) in (0..13).map(|i| (i * 7 + 3) % 11).enumerate() {
        let logits = torch::convert::to_array::<f64>(&cached.push(t).unwrap());
        let context: Vec<i64> = cached.tokens().iter().map(|&t| t as i64).collect();
        let x = tch::Tensor::from_slice(&context).view([1, -1]).to_device(model.device());
        let whole = tch::no_grad(|| model.f_forward_t(&x, false)).unwrap().get(0).get(-1);
        assert_close_tensor(&format!("step {n} cached logits"), &logits, &whole, parity_tests::F64);
    }

    let sampling = Sampling { temperature: 0.8, top_k: Some(5) };
    let prompt = [1, 2, 3];
    let ours = scratch::transformer::Generator::new(&net, &config)
        .unwrap()
        .generate(&prompt, 40, &sampling, &mut RandomState::new(9))
        .unwrap();
    let theirs = torch::generate::Generator::new(&model, &config)
        .unwrap()
        .generate(&prompt, 40, &sampling, &mut RandomState::new(9))
        .unwrap();
    assert_eq!(ours, theirs);
}
