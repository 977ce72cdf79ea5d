//! Recurrent layers in both engines: RNN, LSTM and GRU (both forms), one and two layers, sequence
//! lengths 1 to 50, batches 1 to 32, hidden sizes 1 to 256. Outputs, final hidden and cell states, input
//! gradients and every parameter gradient agree between the from-scratch layer and the libtorch one,
//! with the libtorch cells written step by step and with libtorch's fused kernels (and with
//! `tch::nn::lstm` / `tch::nn::gru` themselves); 50-step training trajectories with clipping and a
//! carried state stay together.

use ndarray::ArrayD;
use parity_tests::{
    assert_close_tensor, compare_networks, leaf, max_relative_difference, model_pair, tolerance, LossKind,
};
use scratch::layers::Layer as _;
use scratch::ops::Mode;
use scratch::optim::{self, Clip, Decay};
use scratch::rng::RandomState;
use scratch::rnn::{one_hot, CellKind, CharWindows, GruForm, Recurrent, RecurrentSpec, StateMode};
use tch::nn::{self, RNN as _};
use torch::convert::{to_tensor, TorchFloat};
use torch::layers::Layer as _;
use torch::optim as topt;
use torch::recurrent::{Kernel, Recurrent as TorchRecurrent};
use torch::spec::{LayerSpec, NetSpec};

const CELLS: [CellKind; 4] =
    [CellKind::Rnn, CellKind::Lstm, CellKind::Gru(GruForm::PyTorch), CellKind::Gru(GruForm::Book)];

fn kernels(cell: CellKind) -> &'static [Kernel] {
    if cell == CellKind::Gru(GruForm::Book) {
        &[Kernel::Cells]
    } else {
        &[Kernel::Cells, Kernel::Builtin]
    }
}

/// One layer in both engines from the same draw: the output, the final state, the input gradient and
/// every parameter gradient for a random output gradient.
fn compare_layer<F: TorchFloat>(spec: RecurrentSpec, kernel: Kernel, (batch, steps): (usize, usize), seed: u32) {
    let tol = tolerance::<F>();
    let label = format!("{} {kernel:?} {} B{batch} T{steps} H{}", spec.cell.name(), F::NAME, spec.hidden);
    let mut ours = Recurrent::<F>::new(spec, &mut RandomState::new(seed)).unwrap();
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut theirs = TorchRecurrent::new(&vs.root(), spec, kernel, F::KIND, &mut RandomState::new(seed)).unwrap();
    let mut rng = RandomState::new(seed + 1);
    let x: ArrayD<F> = rng.randn::<F, _>((batch, steps, spec.input)).into_dyn();
    let dy: ArrayD<F> = rng.randn::<F, _>((batch, steps, spec.output_width())).into_dyn();

    let y = ours.forward(x.clone(), Mode::Train).unwrap();
    let dx = ours.backward(dy.clone()).unwrap();
    let xt = leaf(&x);
    let yt = theirs.forward(&xt, Mode::Train).unwrap();
    (&yt * to_tensor(&dy)).sum(yt.kind()).backward();

    assert_close_tensor(&format!("{label} output"), &y, &yt, tol);
    let state = ours.final_state().unwrap();
    let (h, c) = theirs.final_state().unwrap();
    assert_close_tensor(&format!("{label} final h"), &state.h.clone().into_dyn(), h, tol);
    assert_eq!(state.c.is_some(), c.is_some(), "{label}: cell state");
    if let (Some(ours), Some(theirs)) = (&state.c, c) {
        assert_close_tensor(&format!("{label} final c"), &ours.clone().into_dyn(), theirs, tol);
    }
    assert_close_tensor(&format!("{label} input grad"), &dx, &xt.grad(), tol);
    let params = theirs.params();
    assert_eq!(ours.params().len(), params.len(), "{label}: parameters");
    for ((name, p), (tname, t)) in ours.params().into_iter().zip(&params) {
        assert_eq!(name, *tname, "{label}: parameter order");
        assert_close_tensor(&format!("{label} {name} grad"), &p.grad_canonical(), &t.grad(), tol);
    }
}

/// (batch, steps, input, hidden, output projection)
const LAYER_CASES: [(usize, usize, usize, usize, Option<usize>); 6] = [
    (1, 1, 1, 1, None),
    (1, 50, 3, 8, Some(4)),
    (32, 7, 5, 16, None),
    (4, 25, 6, 256, Some(6)),
    (32, 50, 4, 64, Some(3)),
    (3, 12, 2, 5, None),
];

#[test]
fn single_layers_agree_f64() {
    for cell in CELLS {
        for &kernel in kernels(cell) {
            for (i, &(batch, steps, input, hidden, output)) in LAYER_CASES.iter().enumerate() {
                let mut spec = RecurrentSpec::new(cell, input, hidden);
                spec.output = output;
                if i % 2 == 1 {
                    spec.biases = scratch::rnn::Biases::One;
                }
                compare_layer::<f64>(spec, kernel, (batch, steps), 10 + i as u32);
            }
        }
    }
}

#[test]
fn single_layers_agree_f32() {
    for cell in CELLS {
        for &kernel in kernels(cell) {
            compare_layer::<f32>(RecurrentSpec::new(cell, 5, 32).with_output(5), kernel, (8, 25), 3);
        }
    }
}

/// Two stacked layers under the (averaged and summed) sequence cross-entropy, through the engines'
/// whole networks.
#[test]
fn stacked_layers_agree() {
    let vocab = 7;
    for cell in CELLS {
        for &kernel in kernels(cell) {
            for (batch, steps, hidden, loss) in
                [(1, 1, 3, LossKind::SoftmaxCrossEntropy), (32, 50, 64, LossKind::SoftmaxCrossEntropySum)]
            {
                let first = RecurrentSpec::new(cell, vocab, hidden).with_output(2 * vocab);
                let second = RecurrentSpec::new(cell, 2 * vocab, hidden).with_output(vocab);
                let spec = NetSpec::new(
                    &[steps, vocab],
                    vec![LayerSpec::Recurrent(first, kernel), LayerSpec::Recurrent(second, kernel)],
                );
                let (mut net, mut model) = model_pair::<f64>(&spec, loss, 5);
                let mut rng = RandomState::new(6);
                let labels: Vec<usize> = (0..batch * steps).map(|_| rng.randint(0, vocab as i64) as usize).collect();
                let y = one_hot::<f64>(&labels, batch, vocab).unwrap().into_dyn();
                let x = rng.randn::<f64, _>((batch, steps, vocab)).into_dyn();
                let label = format!("2 x {} {kernel:?} B{batch} T{steps} H{hidden} {loss:?}", cell.name());
                compare_networks(&mut net, &mut model, &x, &y, &label);
            }
        }
    }
}

/// The fused kernels are what `tch::nn::lstm` and `tch::nn::gru` run: loading the from-scratch
/// layer's weights into those modules gives the same sequence of hidden states.
#[test]
fn tch_modules_compute_the_same_sequences() {
    for cell in [CellKind::Lstm, CellKind::Gru(GruForm::PyTorch)] {
        let spec = RecurrentSpec::new(cell, 6, 20);
        let mut ours = Recurrent::<f64>::new(spec, &mut RandomState::new(4)).unwrap();
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let config = nn::RNNConfig { batch_first: true, ..Default::default() };
        let x = RandomState::new(5).randn::<f64, _>((3, 11, 6)).into_dyn();
        let y = ours.forward(x.clone(), Mode::Eval).unwrap();
        let (lstm, gru) = match cell {
            CellKind::Lstm => (Some(nn::lstm(vs.root(), 6, 20, config)), None),
            _ => (None, Some(nn::gru(vs.root(), 6, 20, config))),
        };
        let mut variables = vs.variables();
        for (name, p) in ours.params() {
            let t = variables.get_mut(&format!("{name}_l0")).unwrap_or_else(|| panic!("tch names {name}_l0"));
            tch::no_grad(|| t.copy_(&to_tensor(&p.to_canonical()).to_kind(t.kind())));
        }
        let xt = to_tensor(&x).to_kind(tch::Kind::Float);
        let out = match (lstm, gru) {
            (Some(m), _) => m.seq(&xt).0,
            (_, Some(m)) => m.seq(&xt).0,
            _ => unreachable!(),
        };
        assert_close_tensor(&format!("tch::nn {} output", cell.name()), &y.mapv(|v| v as f32), &out, parity_tests::F32);
    }
}

/// 50 training steps of a two-layer LSTM language model with its state carried between batches (the
/// book's batch mean), SGD with the book's ±2 value clipping and AdaGrad with norm clipping: every
/// loss and the final weights agree.
#[test]
fn training_trajectories_with_clipping_agree() {
    let vocab = 9;
    let text: Vec<usize> = (0..600).map(|i: usize| (i * i + 3 * i) % vocab).collect();
    for (clip, adagrad) in [(Clip::Value(2.0), false), (Clip::Norm(1.0), true)] {
        for cell in [CellKind::Lstm, CellKind::Gru(GruForm::Book), CellKind::Rnn] {
            let kernel = kernels(cell)[kernels(cell).len() - 1];
            let first = RecurrentSpec::new(cell, vocab, 24).with_output(12).with_state(StateMode::CarryMean);
            let second = RecurrentSpec::new(cell, 12, 24).with_output(vocab).with_state(StateMode::CarryMean);
            let spec = NetSpec::new(
                &[10, vocab],
                vec![LayerSpec::Recurrent(first, kernel), LayerSpec::Recurrent(second, kernel)],
            );
            let (net, model) = model_pair::<f64>(&spec, LossKind::SoftmaxCrossEntropySum, 21);
            let label = format!("{} {kernel:?} {clip:?}", cell.name());
            let (losses_a, losses_b, a, b) = if adagrad {
                let ours = optim::Clipped::new(optim::AdaGrad::new(0.05, Decay::None).unwrap(), clip);
                let theirs = topt::Clipped::new(topt::AdaGrad::new(0.05, Decay::None).unwrap(), clip);
                train_steps(net, model, ours, theirs, &text, vocab)
            } else {
                let ours = optim::Clipped::new(optim::SGD::new(0.01), clip);
                let theirs = topt::Clipped::new(topt::SGD::new(0.01, Decay::None).unwrap(), clip);
                train_steps(net, model, ours, theirs, &text, vocab)
            };
            for (step, (x, y)) in losses_a.iter().zip(&losses_b).enumerate() {
                assert!((x - y).abs() <= 1e-9 * y.abs(), "{label}: step {step}: scratch {x} torch {y}");
            }
            assert!(
                losses_a[49] < 0.8 * losses_a[0],
                "{label}: the model learns ({} -> {})",
                losses_a[0],
                losses_a[49]
            );
            let (diff, name) = max_relative_difference(&a, &b);
            assert!(diff <= 1e-8, "{label}: {name} differs by {diff:e} relative after 50 steps");
        }
    }
}

type Trajectories = (Vec<f64>, Vec<f64>, Vec<(String, ArrayD<f64>)>, Vec<(String, ArrayD<f64>)>);

fn train_steps<O: optim::Optimizer<f64>, P: topt::Optimizer>(
    net: scratch::network::NeuralNetwork<f64>,
    model: torch::model::Model,
    ours: O,
    theirs: P,
    text: &[usize],
    vocab: usize,
) -> Trajectories {
    let (batch, steps) = (8, 10);
    let mut a = scratch::train::Trainer::new(net, ours);
    let mut b = torch::train::Trainer::new(model, theirs);
    let mut windows = CharWindows::new(text.to_vec(), batch, steps).unwrap();
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    for step in 0..50 {
        let (inputs, targets) = windows.next_batch();
        let x = one_hot::<f64>(&inputs, batch, vocab).unwrap();
        let y = one_hot::<f64>(&targets, batch, vocab).unwrap();
        la.push(a.train_batch(&x, &y, (1, step + 1)).unwrap());
        lb.push(b.train_batch(&to_tensor(&x.clone().into_dyn()), &to_tensor(&y.into_dyn()), (1, step + 1)).unwrap());
    }
    (la, lb, a.net.named_parameters(), b.model.named_arrays::<f64>())
}
