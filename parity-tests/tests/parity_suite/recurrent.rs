//! Recurrent layers in both engines: RNN, LSTM and GRU (both forms), one to three stacked cells,
//! sequence lengths 1 to 50, batches 1 to 32, hidden sizes 1 to 256. Outputs, final hidden and cell states, input
//! gradients and every parameter gradient agree between the from-scratch layer and the libtorch one,
//! with the libtorch cells written step by step and with libtorch's fused kernels (and with
//! `tch::nn::lstm` / `tch::nn::gru` themselves); 50-step training trajectories with clipping and a
//! carried state stay together.

use ndarray::ArrayD;
use parity_tests::{
    assert_close_tensor, assert_relative_sequence, assert_same_names, assert_same_parameters, compare_networks, device,
    leaf, model_pair_with, tolerance, var_store, DenseSpec, LayerSpec, LossSpec, NetSpec,
};
use scratch::layers::Layer as _;
use scratch::ops::Mode;
use scratch::optim::{self, Clip, Decay};
use scratch::rng::RandomState;
use scratch::rnn::{one_hot, CharWindows, Recurrent};
use scratch::spec::{Biases, CellKind, GruForm, RecurrentSpec, StateMode, WeightInit};
use tch::nn::{self, RNN as _};
use torch::convert::{to_tensor, TorchFloat};
use torch::layers::{Kernel, Recurrent as TorchRecurrent};
use torch::optim as topt;

const CELLS: [CellKind; 4] =
    [CellKind::Rnn, CellKind::Lstm, CellKind::Gru(GruForm::PyTorch), CellKind::Gru(GruForm::Book)];

fn kernels(cell: CellKind) -> &'static [Kernel] {
    if cell == CellKind::Gru(GruForm::Book) {
        &[Kernel::Cells]
    } else {
        &[Kernel::Cells, Kernel::Fused]
    }
}

/// One layer in both engines from the same draw: the output, the final states, the input gradient and
/// every parameter gradient for a random output gradient.
fn compare_layer<F: TorchFloat>(spec: RecurrentSpec, kernel: Kernel, (batch, steps): (usize, usize), seed: u32) {
    let tol = tolerance::<F>();
    let label =
        format!("{} {kernel:?} {} B{batch} T{steps} H{} x{}", spec.cell.name(), F::NAME, spec.hidden, spec.layers);
    let mut ours = Recurrent::<F>::new(spec, &mut RandomState::new(seed)).unwrap();
    let vs = var_store::<F>();
    let theirs = TorchRecurrent::new(vs.root(), spec, kernel, &mut RandomState::new(seed)).unwrap();
    let mut rng = RandomState::new(seed + 1);
    let x: ArrayD<F> = rng.randn::<F, _>((batch, steps, spec.input)).into_dyn();
    let dy: ArrayD<F> = rng.randn::<F, _>((batch, steps, spec.hidden)).into_dyn();

    let y = ours.forward(x.clone(), Mode::Train).unwrap();
    let dx = ours.backward(dy.clone()).unwrap();
    let xt = leaf(&x);
    let (yt, last) = theirs.seq(&xt, true).unwrap();
    (&yt * to_tensor(&dy).to_device(yt.device())).sum(yt.kind()).backward();

    assert_close_tensor(&format!("{label} output"), &y, &yt, tol);
    let state = ours.final_state().unwrap();
    assert_close_tensor(&format!("{label} final h"), &state.h.clone().into_dyn(), &last.h, tol);
    assert_eq!(state.c.is_some(), last.c.is_some(), "{label}: cell state");
    if let (Some(ours), Some(theirs)) = (&state.c, &last.c) {
        assert_close_tensor(&format!("{label} final c"), &ours.clone().into_dyn(), theirs, tol);
    }
    assert_close_tensor(&format!("{label} input grad"), &dx, &xt.grad(), tol);
    let store = vs.variables();
    let params: Vec<(String, tch::Tensor)> =
        spec.parameter_shapes().into_iter().map(|(name, _)| (name.clone(), store[&name].shallow_clone())).collect();
    assert_same_names(&label, &ours.params(), &params);
    for ((name, p), (_, t)) in ours.params().into_iter().zip(&params) {
        assert_close_tensor(&format!("{label} {name} grad"), &p.grad_canonical(), &t.grad(), tol);
    }
}

/// (batch, steps, input, hidden, stacked cells)
const LAYER_CASES: [(usize, usize, usize, usize, usize); 6] =
    [(1, 1, 1, 1, 1), (1, 50, 3, 8, 2), (32, 7, 5, 16, 1), (4, 25, 6, 256, 2), (32, 50, 4, 64, 1), (3, 12, 2, 5, 3)];

#[test]
fn single_layers_agree_f64() {
    for cell in CELLS {
        for &kernel in kernels(cell) {
            for (i, &(batch, steps, input, hidden, layers)) in LAYER_CASES.iter().enumerate() {
                let biases = if i % 2 == 1 { Biases::One } else { Biases::Two };
                let spec = RecurrentSpec::new(cell, input, hidden).layers(layers).biases(biases);
                compare_layer::<f64>(spec, kernel, (batch, steps), 10 + i as u32);
            }
        }
    }
}

#[test]
fn single_layers_agree_f32() {
    for cell in CELLS {
        for &kernel in kernels(cell) {
            compare_layer::<f32>(RecurrentSpec::new(cell, 5, 32).layers(2), kernel, (8, 25), 3);
        }
    }
}

/// The character language model's network (a two-cell stack and its projection onto the vocabulary)
/// under the averaged and the summed sequence cross-entropy, through the engines' whole networks.
#[test]
fn language_model_networks_agree() {
    let vocab = 7;
    for cell in CELLS {
        for &kernel in kernels(cell) {
            for (batch, steps, hidden, loss) in
                [(1, 1, 3, LossSpec::CROSS_ENTROPY), (32, 50, 64, LossSpec::CROSS_ENTROPY_SUM)]
            {
                let spec = scratch::spec::book::language_model(cell, vocab, hidden, 2, StateMode::Reset, steps);
                let (mut net, model) = model_pair_with::<f64>(&spec, loss, 5, kernel);
                let mut rng = RandomState::new(6);
                let labels: Vec<usize> =
                    (0..batch * steps).map(|_| rng.randint(0, vocab as i64).unwrap() as usize).collect();
                let y = one_hot::<f64>(&labels, batch, vocab).unwrap().into_dyn();
                let x = rng.randn::<f64, _>((batch, steps, vocab)).into_dyn();
                let label = format!("2 x {} {kernel:?} B{batch} T{steps} H{hidden} {loss:?}", cell.name());
                compare_networks(&mut net, &model, loss, &x, &y, &label);
            }
        }
    }
}

/// The fused kernels are what `tch::nn::lstm` and `tch::nn::gru` run, and the parameter names are
/// theirs: the from-scratch layer's weights load into those modules by name, one and two layers deep,
/// and give the same sequence of hidden states.
#[test]
fn tch_modules_compute_the_same_sequences() {
    for (cell, layers) in [(CellKind::Lstm, 1), (CellKind::Lstm, 2), (CellKind::Gru(GruForm::PyTorch), 2)] {
        let spec = RecurrentSpec::new(cell, 6, 20).layers(layers);
        let mut ours = Recurrent::<f64>::new(spec, &mut RandomState::new(4)).unwrap();
        let vs = nn::VarStore::new(device());
        let config = nn::RNNConfig { batch_first: true, num_layers: layers as i64, ..Default::default() };
        let x = RandomState::new(5).randn::<f64, _>((3, 11, 6)).into_dyn();
        let y = ours.forward(x.clone(), Mode::Eval).unwrap();
        let (lstm, gru) = match cell {
            CellKind::Lstm => (Some(nn::lstm(vs.root(), 6, 20, config)), None),
            _ => (None, Some(nn::gru(vs.root(), 6, 20, config))),
        };
        let mut variables = vs.variables();
        assert_eq!(variables.len(), ours.params().len(), "{} x{layers}: as many tensors as tch's", cell.name());
        for (name, p) in ours.params() {
            let t = variables.get_mut(&name).unwrap_or_else(|| panic!("tch has no {name}"));
            tch::no_grad(|| t.copy_(&to_tensor(&p.to_canonical()).to_kind(t.kind())));
        }
        let xt = to_tensor(&x).to_device(device()).to_kind(tch::Kind::Float);
        let out = match (lstm, gru) {
            (Some(m), _) => m.seq(&xt).0,
            (_, Some(m)) => m.seq(&xt).0,
            _ => unreachable!(),
        };
        assert_close_tensor(&format!("tch::nn {} output", cell.name()), &y.mapv(|v| v as f32), &out, parity_tests::F32);
    }
}

/// 50 training steps of a two-cell language model with its state carried between batches (the book's
/// batch mean), SGD with the book's ±2 value clipping and AdaGrad with norm clipping: every loss and the
/// final weights agree.
#[test]
fn training_trajectories_with_clipping_agree() {
    let vocab = 9;
    let text: Vec<usize> = (0..600).map(|i: usize| (i * i + 3 * i) % vocab).collect();
    for (clip, adagrad) in [(Clip::Value(2.0), false), (Clip::Norm(1.0), true)] {
        for cell in [CellKind::Lstm, CellKind::Gru(GruForm::Book), CellKind::Rnn] {
            let kernel = kernels(cell)[kernels(cell).len() - 1];
            let recurrent = RecurrentSpec::new(cell, vocab, 24).layers(2).state(StateMode::CarryMean);
            let spec = NetSpec::new(
                &[10, vocab],
                vec![
                    LayerSpec::Recurrent(recurrent),
                    LayerSpec::Dense(DenseSpec::new(vocab).init(WeightInit::PyTorch)),
                ],
            );
            let (net, model) = model_pair_with::<f64>(&spec, LossSpec::CROSS_ENTROPY_SUM, 21, kernel);
            let label = format!("{} {kernel:?} {clip:?}", cell.name());
            let (losses_a, losses_b, a, b) = if adagrad {
                let ours = optim::Clipped::new(optim::AdaGrad::new(0.05, Decay::None).unwrap(), clip);
                let theirs = topt::Clipped::new(topt::AdaGrad::new(0.05, Decay::None).unwrap(), clip);
                train_steps(net, model, ours, theirs, &text, vocab)
            } else {
                let ours = optim::Clipped::new(optim::SGD::new(0.01).unwrap(), clip);
                let theirs = topt::Clipped::new(topt::SGD::new(0.01, Decay::None).unwrap(), clip);
                train_steps(net, model, ours, theirs, &text, vocab)
            };
            assert_relative_sequence(&format!("{label}: losses"), &losses_a, &losses_b, 1e-9);
            assert!(
                losses_a[49] < 0.8 * losses_a[0],
                "{label}: the model learns ({} -> {})",
                losses_a[0],
                losses_a[49]
            );
            assert_same_parameters(&format!("{label} after 50 steps"), &a, &b, 1e-8);
        }
    }
}

type Trajectories = (Vec<f64>, Vec<f64>, Vec<(String, ArrayD<f64>)>, Vec<(String, ArrayD<f64>)>);

fn train_steps<O: optim::Optimizer<f64>, P: topt::Optimizer>(
    net: scratch::network::NeuralNetwork<f64>,
    model: torch::Net,
    ours: O,
    theirs: P,
    text: &[usize],
    vocab: usize,
) -> Trajectories {
    let (batch, steps) = (8, 10);
    let mut a = scratch::train::Trainer::new(net, ours);
    let mut b = torch::train::Trainer::new(model, LossSpec::CROSS_ENTROPY_SUM, theirs);
    let mut windows = CharWindows::new(text.to_vec(), batch, steps).unwrap();
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    for step in 0..50 {
        let (inputs, targets) = windows.next_batch();
        let x = one_hot::<f64>(&inputs, batch, vocab).unwrap();
        let y = one_hot::<f64>(&targets, batch, vocab).unwrap();
        la.push(a.train_batch(&x, &y, (1, step + 1)).unwrap());
        lb.push(b.train_batch(&to_tensor(&x.clone().into_dyn()), &to_tensor(&y.into_dyn()), (1, step + 1)).unwrap());
    }
    (la, lb, a.net.named_parameters(), b.net.named_arrays::<f64>())
}
