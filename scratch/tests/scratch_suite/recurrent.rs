//! Recurrent layers: back-propagation through time against central differences for every cell, both
//! GRU forms, one and two stacked cells, with and without second biases; the fast layer against the
//! plain loops of `scratch::rnn::loops` (forward and backward, every gradient, several batch sizes,
//! lengths and widths, from zeros and from carried states, in f64 and f32); a stack and its projection
//! under a sequence loss; and the state carried between calls.

use ndarray::{s, Array3, ArrayD};
use scratch::gradcheck::{check, GradCheckConfig, LayerProbe, NetworkProbe};
use scratch::layers::Layer;
use scratch::losses::SoftmaxCrossEntropy;
use scratch::network::NeuralNetwork;
use scratch::ops::Mode;
use scratch::rng::RandomState;
use scratch::rnn::loops::{self, CellParams};
use scratch::rnn::{Recurrent, State};
use scratch::spec::{
    Biases, CellKind, DenseSpec, GruForm, LayerSpec, NetSpec, RecurrentInit, RecurrentSpec, StateMode, WeightInit,
};
use scratch::Float;

const CELLS: [CellKind; 4] =
    [CellKind::Rnn, CellKind::Lstm, CellKind::Gru(GruForm::PyTorch), CellKind::Gru(GruForm::Book)];

fn sequence(rng: &mut RandomState, batch: usize, steps: usize, width: usize) -> ArrayD<f64> {
    rng.randn::<f64, _>((batch, steps, width)).into_dyn()
}

#[test]
fn every_cell_matches_central_differences() {
    let mut rng = RandomState::new(11);
    // (batch, steps, input, hidden, stacked cells, biases)
    let cases = [
        (1, 1, 1, 1, 1, Biases::Two),
        (2, 5, 3, 4, 2, Biases::Two),
        (3, 7, 4, 6, 1, Biases::One),
        (4, 12, 5, 8, 2, Biases::One),
    ];
    for cell in CELLS {
        for &(batch, steps, input, hidden, layers, biases) in &cases {
            let spec =
                RecurrentSpec::new(cell, input, hidden).layers(layers).biases(biases).init(RecurrentInit::Normal(0.5));
            let mut layer = Recurrent::<f64>::new(spec, &mut rng).unwrap();
            let x = sequence(&mut rng, batch, steps, input);
            let report = check(&mut LayerProbe::new(&mut layer, Mode::Train, 3), &x, &GradCheckConfig::default())
                .unwrap_or_else(|e| panic!("{cell:?}: {e}"));
            assert_eq!(report.tensors.len(), 1 + spec.parameter_shapes().len());
            for t in &report.tensors {
                assert!(t.error < 1e-6, "{cell:?} {batch}x{steps}x{input} h{hidden} x{layers}: {t:?}");
            }
        }
    }
}

/// `a` within `tol` of `b`, relative to `b`'s largest magnitude (and at least 1).
fn assert_near(label: &str, a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64) {
    assert_eq!(a.shape(), b.shape(), "{label}: shape");
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= tol * scale, "{label}: off by {err:e} (scale {scale:e}, tolerance {tol:e})");
}

fn to_f64<F: Float, D: ndarray::Dimension>(a: &ndarray::Array<F, D>) -> ArrayD<f64> {
    a.mapv(|v| v.as_f64()).into_dyn()
}

/// The fast layer of `spec` in precision `F` against the loops in f64 on the same (rounded) weights
/// and inputs: the output, the final states, the input gradient and every parameter gradient, after
/// `calls` forward passes (the state carried from one to the next as the spec says; the last one is
/// differentiated).
fn compare_with_loops<F: Float>(
    spec: RecurrentSpec,
    (batch, steps): (usize, usize),
    calls: usize,
    seed: u32,
    tol: f64,
) {
    let label = format!(
        "{} {} B{batch} T{steps} H{} x{} {:?} {:?}",
        spec.cell.name(),
        F::NAME,
        spec.hidden,
        spec.layers,
        spec.biases,
        spec.state
    );
    let mut rng = RandomState::new(seed);
    let mut layer = Recurrent::<F>::new(spec.init(RecurrentInit::Normal(0.4)), &mut rng).unwrap();
    let params: Vec<CellParams<f64>> = loops::parameters(&layer)
        .iter()
        .map(|p| CellParams {
            weight_ih: p.weight_ih.mapv(|v| v.as_f64()),
            weight_hh: p.weight_hh.mapv(|v| v.as_f64()),
            bias_ih: p.bias_ih.mapv(|v| v.as_f64()),
            bias_hh: p.bias_hh.as_ref().map(|b| b.mapv(|v| v.as_f64())),
        })
        .collect();
    let lstm = spec.cell == CellKind::Lstm;
    let (layers, hidden) = (spec.layers, spec.hidden);
    let mut h0 = Array3::<f64>::zeros((layers, batch, hidden));
    let mut c0 = lstm.then(|| Array3::<f64>::zeros((layers, batch, hidden)));
    for call in 0..calls {
        let x: Array3<F> = rng.randn((batch, steps, spec.input));
        let x64 = x.mapv(|v| v.as_f64());
        let expected = loops::forward_stack(spec.cell, &params, &x64, &h0, c0.as_ref());
        let y = layer.forward(x.into_dyn(), Mode::Train).unwrap();
        let label = format!("{label} call {call}");
        assert_near(&format!("{label} output"), &to_f64(&y), &expected.output.clone().into_dyn(), tol);
        let state = layer.final_state().unwrap().clone();
        assert_near(&format!("{label} final h"), &to_f64(&state.h), &expected.h.clone().into_dyn(), tol);
        assert_eq!(state.c.is_some(), lstm, "{label}: a cell state exactly for an LSTM");
        if let (Some(c), Some(e)) = (&state.c, &expected.c) {
            assert_near(&format!("{label} final c"), &to_f64(c), &e.clone().into_dyn(), tol);
        }
        if call + 1 == calls {
            let dy: Array3<F> = rng.randn((batch, steps, hidden));
            let dx = layer.backward(dy.clone().into_dyn()).unwrap();
            let (dx_expected, grads) =
                loops::backward_stack(spec.cell, &params, &x64, &h0, c0.as_ref(), &dy.mapv(|v| v.as_f64()));
            assert_near(&format!("{label} input grad"), &to_f64(&dx), &dx_expected.into_dyn(), tol);
            for (k, (ours, theirs)) in loops::gradients(&layer).iter().zip(&grads).enumerate() {
                let pairs = [
                    ("weight_ih", to_f64(&ours.weight_ih), theirs.weight_ih.clone().into_dyn()),
                    ("weight_hh", to_f64(&ours.weight_hh), theirs.weight_hh.clone().into_dyn()),
                    ("bias_ih", to_f64(&ours.bias_ih), theirs.bias_ih.clone().into_dyn()),
                ];
                for (name, a, b) in pairs {
                    assert_near(&format!("{label} {name}_l{k} grad"), &a, &b, tol);
                }
                assert_eq!(ours.bias_hh.is_some(), theirs.bias_hh.is_some(), "{label}: bias_hh_l{k}");
                if let (Some(a), Some(b)) = (&ours.bias_hh, &theirs.bias_hh) {
                    assert_near(&format!("{label} bias_hh_l{k} grad"), &to_f64(a), &b.clone().into_dyn(), tol);
                }
            }
        }
        // Where the next call starts.
        match spec.state {
            StateMode::Reset => {}
            StateMode::Carry => {
                h0 = expected.h;
                c0 = expected.c;
            }
            StateMode::CarryMean => {
                fn mean(a: &Array3<f64>) -> Array3<f64> {
                    let m = a.mean_axis(ndarray::Axis(1)).unwrap().insert_axis(ndarray::Axis(1));
                    m.broadcast(a.raw_dim()).unwrap().to_owned()
                }
                h0 = mean(&expected.h);
                c0 = expected.c.as_ref().map(mean);
            }
        }
    }
}

/// (batch, steps, input, hidden): one of everything; odd sizes, which leave partial vectors and tiles;
/// the language model's batch; more units than fit a register tile; a step large enough for the
/// threads to share its units (on more than one core).
const LOOP_CASES: [(usize, usize, usize, usize); 6] =
    [(1, 1, 1, 1), (3, 5, 4, 7), (32, 9, 6, 16), (13, 4, 3, 37), (5, 3, 2, 70), (64, 3, 5, 130)];

fn every_cell_against_the_loops<F: Float>(tol: f64) {
    for cell in CELLS {
        for (i, &(batch, steps, input, hidden)) in LOOP_CASES.iter().enumerate() {
            for layers in [1, 2] {
                let biases = if i % 2 == 0 { Biases::Two } else { Biases::One };
                let spec = RecurrentSpec::new(cell, input, hidden).layers(layers).biases(biases);
                compare_with_loops::<F>(spec, (batch, steps), 1, 20 + i as u32, tol);
            }
        }
        // The states carried between calls.
        for state in [StateMode::Carry, StateMode::CarryMean] {
            let spec = RecurrentSpec::new(cell, 3, 9).layers(2).state(state);
            compare_with_loops::<F>(spec, (6, 4), 3, 7, tol);
        }
    }
}

#[test]
fn every_cell_matches_the_loops_f64() {
    every_cell_against_the_loops::<f64>(1e-12);
}

#[test]
fn every_cell_matches_the_loops_f32() {
    every_cell_against_the_loops::<f32>(2e-5);
}

#[test]
fn a_stack_and_its_projection_under_a_sequence_loss_match_central_differences() {
    let mut rng = RandomState::new(4);
    let vocab = 6;
    for cell in CELLS {
        let recurrent = RecurrentSpec::new(cell, vocab, 7).layers(2).init(RecurrentInit::Normal(0.4));
        let spec = NetSpec::new(
            &[9, vocab],
            vec![LayerSpec::Recurrent(recurrent), LayerSpec::Dense(DenseSpec::new(vocab).init(WeightInit::Glorot))],
        );
        let mut net = NeuralNetwork::<f64>::from_spec(&spec, SoftmaxCrossEntropy::new(), &mut rng).unwrap();
        let (batch, steps) = (3, 9);
        let labels: Vec<usize> = (0..batch * steps).map(|_| rng.randint(0, vocab as i64).unwrap() as usize).collect();
        let target = scratch::rnn::one_hot::<f64>(&labels, batch, vocab).unwrap().into_dyn();
        let x = sequence(&mut rng, batch, steps, vocab);
        let report = check(&mut NetworkProbe::new(&mut net, target), &x, &GradCheckConfig::default()).unwrap();
        assert_eq!(report.tensors.len(), 1 + 2 * 4 + 2, "the input, two cells' four tensors, the projection's two");
        report.assert_below(1e-6);
    }
}

/// Feeding a sequence one step per call with the state carried gives what one call over the whole
/// sequence gives.
#[test]
fn carried_state_continues_the_sequence() {
    for cell in CELLS {
        let mut rng = RandomState::new(8);
        let spec = RecurrentSpec::new(cell, 3, 5).layers(2).state(StateMode::Carry);
        let mut whole = Recurrent::<f64>::new(spec, &mut RandomState::new(1)).unwrap();
        let mut stepwise = Recurrent::<f64>::new(spec, &mut RandomState::new(1)).unwrap();
        let x = sequence(&mut rng, 4, 6, 3);
        let y = whole.forward(x.clone(), Mode::Eval).unwrap();
        let x3 = x.into_dimensionality::<ndarray::Ix3>().unwrap();
        for t in 0..6 {
            let step = x3.slice(s![.., t..t + 1, ..]).to_owned().into_dyn();
            let out = stepwise.forward(step, Mode::Eval).unwrap();
            let expected = y.slice(s![.., t..t + 1, ..]).into_dyn();
            assert!(out.abs_diff_eq(&expected, 1e-12), "{cell:?} step {t}");
        }
        let (a, b) = (whole.final_state().unwrap(), stepwise.final_state().unwrap());
        assert!(a.h.abs_diff_eq(&b.h, 1e-12), "{cell:?}: final h");
        assert_eq!(a.c.is_some(), b.c.is_some());
        if let (Some(x), Some(y)) = (&a.c, &b.c) {
            assert!(x.abs_diff_eq(y, 1e-12), "{cell:?}: final c");
        }
        stepwise.reset_state();
        let again = stepwise.forward(x3.slice(s![.., 0..1, ..]).to_owned().into_dyn(), Mode::Eval).unwrap();
        assert!(again.abs_diff_eq(&y.slice(s![.., 0..1, ..]).into_dyn(), 1e-12), "reset starts from zeros");
        let err = stepwise.forward(Array3::<f64>::zeros((2, 1, 3)).into_dyn(), Mode::Eval).unwrap_err();
        assert!(err.to_string().contains("reset the state first"), "{err}");
    }
}

/// The book's carry: the next call starts every row from the batch mean of the last final state.
#[test]
fn carry_mean_starts_from_the_batch_mean() {
    for cell in CELLS {
        let spec = RecurrentSpec::new(cell, 3, 4).layers(2).state(StateMode::CarryMean);
        let mut layer = Recurrent::<f64>::new(spec, &mut RandomState::new(2)).unwrap();
        let mut reference = Recurrent::<f64>::new(spec.state(StateMode::Carry), &mut RandomState::new(2)).unwrap();
        let mut rng = RandomState::new(5);
        layer.forward(sequence(&mut rng, 5, 4, 3), Mode::Train).unwrap();
        let last = layer.final_state().unwrap().clone();
        let mean = |a: &Array3<f64>| a.mean_axis(ndarray::Axis(1)).unwrap().insert_axis(ndarray::Axis(1));
        let start = State { h: mean(&last.h), c: last.c.as_ref().map(mean) };
        reference
            .set_state(
                start.h.broadcast((2, 2, 4)).unwrap().to_owned(),
                start.c.map(|c| c.broadcast((2, 2, 4)).unwrap().to_owned()),
            )
            .unwrap();
        let x = sequence(&mut rng, 2, 3, 3);
        let y = layer.forward(x.clone(), Mode::Train).unwrap();
        assert!(y.abs_diff_eq(&reference.forward(x, Mode::Train).unwrap(), 1e-12), "{cell:?}");
        assert!(layer.forward(sequence(&mut rng, 7, 2, 3), Mode::Train).is_ok(), "any batch size follows a mean carry");
    }
}

#[test]
fn bad_inputs_are_named() {
    let mut layer =
        Recurrent::<f32>::new(RecurrentSpec::new(CellKind::Gru(GruForm::PyTorch), 3, 4), &mut RandomState::new(0))
            .unwrap();
    let err = layer.forward(ArrayD::zeros(vec![2, 3]), Mode::Train).unwrap_err().to_string();
    assert!(err.contains("(batch > 0, time > 0, 3)"), "{err}");
    let err = layer.backward(ArrayD::zeros(vec![1, 1, 4])).unwrap_err().to_string();
    assert!(err.contains("before forward"), "{err}");
    assert!(Recurrent::<f32>::new(RecurrentSpec::new(CellKind::Lstm, 0, 4), &mut RandomState::new(0)).is_err());
}

/// A character LSTM learns real text: on Hamlet, a few hundred AdaGrad steps bring the held-out loss
/// from the uniform `ln V` (about 4.2 nats per character) to below 2.6 (2.24 when written).
#[test]
fn a_character_lstm_learns_hamlet() {
    use scratch::optim::{AdaGrad, Clip, Clipped, Decay};
    use scratch::rnn::{one_hot, CharWindows};
    let Some(dir) = scratch::data::available("text/shakespeare/hamlet.txt") else { return };
    let text = scratch::data::text::shakespeare(&dir, &["hamlet"]).unwrap();
    let vocab = scratch::data::text::Vocabulary::new(&text);
    let encoded = vocab.encode(&text).unwrap();
    let split = encoded.len() * 9 / 10;
    let (train, held_out) = (encoded[..split].to_vec(), &encoded[split..split + 5000]);
    let v = vocab.len();
    let spec = scratch::spec::book::language_model(CellKind::Lstm, v, 64, 1, StateMode::Reset, 20);
    let net = NeuralNetwork::from_spec(&spec, SoftmaxCrossEntropy::new(), &mut RandomState::new(1)).unwrap();
    let optim = Clipped::new(AdaGrad::new(0.05, Decay::None).unwrap(), Clip::Norm(5.0));
    let mut trainer = scratch::train::Trainer::new(net, optim);
    let mut windows = CharWindows::random(train, 16, 20, 2).unwrap();
    let (inputs, targets, n) = CharWindows::evaluation(held_out, 20);
    let (x_val, y_val) = (one_hot::<f32>(&inputs, n, v).unwrap(), one_hot::<f32>(&targets, n, v).unwrap());
    let held_out_loss = |net: &mut NeuralNetwork<f32>| {
        let p = net.forward(&x_val, Mode::Eval).unwrap();
        net.loss_on(&p, &y_val).unwrap()
    };
    let before = held_out_loss(&mut trainer.net);
    assert!((before - (v as f32).ln()).abs() < 0.3, "starts near uniform: {before}");
    for i in 0..300 {
        let (x, y) = windows.next_batch();
        let (x, y) = (one_hot::<f32>(&x, 16, v).unwrap(), one_hot::<f32>(&y, 16, v).unwrap());
        trainer.train_batch(&x, &y, (1, i + 1)).unwrap();
    }
    let after = held_out_loss(&mut trainer.net);
    assert!(after < 2.6, "held-out loss {before} -> {after}");
}

/// The one rule both engines' layers follow for where a call starts.
#[test]
fn the_state_mode_decides_where_a_call_starts() {
    use scratch::spec::StateStart;
    let start = |mode: StateMode, carried, batch| mode.start(carried, batch).unwrap();
    for mode in [StateMode::Reset, StateMode::Carry, StateMode::CarryMean] {
        assert_eq!(start(mode, None, 4), StateStart::Zeros, "{mode:?}: nothing carried");
    }
    assert_eq!(start(StateMode::Reset, Some(4), 4), StateStart::Zeros);
    assert_eq!(start(StateMode::Carry, Some(4), 4), StateStart::Carried);
    assert_eq!(start(StateMode::Carry, Some(1), 4), StateStart::Broadcast);
    assert_eq!(start(StateMode::CarryMean, Some(4), 3), StateStart::Mean);
    let err = StateMode::Carry.start(Some(4), 3).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid argument: the carried state has batch 4, this batch has 3: reset the state first, or carry \
         the batch mean (StateMode::CarryMean)"
    );
}
