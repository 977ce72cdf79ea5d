//! The book's named networks, built from their one description ([`scratch::spec::book`]) by the
//! from-scratch engine alone: each has the parameters PyTorch's equivalent module has (names and
//! shapes), and trains: a few steps on one batch lower its loss.

use ndarray::{ArrayD, IxDyn};
use scratch::network::NeuralNetwork;
use scratch::ops::{Activation, Mode};
use scratch::optim::{Decay, Optimizer, SGDMomentum};
use scratch::rng::RandomState;
use scratch::spec::{book, CellKind, GruForm, LossSpec, MseReduction, NetSpec, StateMode, WeightInit};

/// A named network, its loss, and the parameters (name, PyTorch shape) it must have.
type Case = (&'static str, NetSpec, LossSpec, Vec<(&'static str, Vec<usize>)>);

fn networks() -> Vec<Case> {
    let ce = LossSpec::CROSS_ENTROPY;
    let mse = LossSpec::MeanSquaredError(MseReduction::Mean);
    vec![
        (
            "chapter 4 MLP",
            book::chapter4_mlp(&[(89, Activation::Tanh)], Activation::Linear, WeightInit::Glorot, Some(0.8)),
            ce,
            vec![
                ("layers.0.weight", vec![89, 784]),
                ("layers.0.bias", vec![89]),
                ("layers.1.weight", vec![10, 89]),
                ("layers.1.bias", vec![10]),
            ],
        ),
        (
            "chapter 5 CNN",
            book::chapter5_cnn(),
            ce,
            vec![
                ("layers.0.weight", vec![16, 1, 5, 5]),
                ("layers.1.weight", vec![10, 16 * 28 * 28]),
                ("layers.1.bias", vec![10]),
            ],
        ),
        (
            "chapter 7 ConvNet",
            book::chapter7_convnet(),
            ce,
            vec![
                ("layers.0.weight", vec![14, 1, 5, 5]),
                ("layers.0.bias", vec![14]),
                ("layers.1.weight", vec![7, 14, 5, 5]),
                ("layers.1.bias", vec![7]),
                ("layers.2.weight", vec![32, 7 * 28 * 28]),
                ("layers.2.bias", vec![32]),
                ("layers.3.weight", vec![10, 32]),
                ("layers.3.bias", vec![10]),
            ],
        ),
        (
            "BostonModel",
            book::boston_model(),
            mse,
            vec![
                ("layers.0.weight", vec![13, 13]),
                ("layers.0.bias", vec![13]),
                ("layers.1.weight", vec![1, 13]),
                ("layers.1.bias", vec![1]),
            ],
        ),
        (
            "Autoencoder",
            book::autoencoder(),
            mse,
            vec![
                ("layers.0.weight", vec![14, 1, 5, 5]),
                ("layers.0.bias", vec![14]),
                ("layers.1.weight", vec![7, 14, 5, 5]),
                ("layers.1.bias", vec![7]),
                ("layers.2.weight", vec![28, 5488]),
                ("layers.2.bias", vec![28]),
                ("layers.3.weight", vec![5488, 28]),
                ("layers.3.bias", vec![5488]),
                ("layers.5.weight", vec![7, 14, 5, 5]),
                ("layers.5.bias", vec![14]),
                ("layers.6.weight", vec![14, 1, 5, 5]),
                ("layers.6.bias", vec![1]),
            ],
        ),
        (
            "LSTM language model, two layers",
            book::language_model(CellKind::Lstm, 11, 16, 2, StateMode::Reset, 7),
            ce,
            vec![
                ("layers.0.weight_ih_l0", vec![64, 11]),
                ("layers.0.weight_hh_l0", vec![64, 16]),
                ("layers.0.bias_ih_l0", vec![64]),
                ("layers.0.bias_hh_l0", vec![64]),
                ("layers.0.weight_ih_l1", vec![64, 16]),
                ("layers.0.weight_hh_l1", vec![64, 16]),
                ("layers.0.bias_ih_l1", vec![64]),
                ("layers.0.bias_hh_l1", vec![64]),
                ("layers.1.weight", vec![11, 16]),
                ("layers.1.bias", vec![11]),
            ],
        ),
        (
            "GRU language model (book form)",
            book::language_model(CellKind::Gru(GruForm::Book), 11, 8, 1, StateMode::CarryMean, 7),
            ce,
            vec![
                ("layers.0.weight_ih_l0", vec![24, 11]),
                ("layers.0.weight_hh_l0", vec![24, 8]),
                ("layers.0.bias_ih_l0", vec![24]),
                ("layers.0.bias_hh_l0", vec![24]),
                ("layers.1.weight", vec![11, 8]),
                ("layers.1.bias", vec![11]),
            ],
        ),
        (
            "RNN language model",
            book::language_model(CellKind::Rnn, 11, 8, 1, StateMode::Reset, 7),
            ce,
            vec![
                ("layers.0.weight_ih_l0", vec![8, 11]),
                ("layers.0.weight_hh_l0", vec![8, 8]),
                ("layers.0.bias_ih_l0", vec![8]),
                ("layers.0.bias_hh_l0", vec![8]),
                ("layers.1.weight", vec![11, 8]),
                ("layers.1.bias", vec![11]),
            ],
        ),
    ]
}

/// A batch for `spec`: random inputs and targets of the network's output shape (class indices for a
/// cross-entropy, the input itself for the autoencoder's reconstruction, normal values otherwise).
fn batch(spec: &NetSpec, loss: LossSpec, rows: usize, rng: &mut RandomState) -> (ArrayD<f32>, ArrayD<f32>) {
    let shape: Vec<usize> = std::iter::once(rows).chain(spec.input.iter().copied()).collect();
    let x: ArrayD<f32> = rng.uniform_array::<f32, _>(IxDyn(&shape)).mapv(|u| 2.0 * u - 1.0);
    let out = spec.output_shape().unwrap();
    let y = if loss.is_classification() {
        let positions: Vec<usize> = std::iter::once(rows).chain(out[..out.len() - 1].iter().copied()).collect();
        let classes = *out.last().unwrap() as i64;
        ArrayD::from_shape_fn(IxDyn(&positions), |_| rng.randint(0, classes).unwrap() as f32)
    } else if out == spec.input {
        x.clone()
    } else {
        let shape: Vec<usize> = std::iter::once(rows).chain(out).collect();
        rng.randn(IxDyn(&shape))
    };
    (x, y)
}

#[test]
fn every_book_network_has_pytorchs_parameters_and_trains() {
    for (name, spec, loss, expected) in networks() {
        let mut rng = RandomState::new(3);
        let mut net = NeuralNetwork::<f32>::from_spec(&spec, loss.build(), &mut rng).unwrap();
        let params: Vec<(String, Vec<usize>)> =
            net.named_parameters().into_iter().map(|(n, a)| (n, a.shape().to_vec())).collect();
        let expected: Vec<(String, Vec<usize>)> = expected.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
        assert_eq!(params, expected, "{name}: parameter names and PyTorch shapes");

        let (x, y) = batch(&spec, loss, 4, &mut rng);
        let mut optim = SGDMomentum::new(0.01, 0.9, Decay::None).unwrap();
        let (_, before) = net.forward_loss(&x, &y, Mode::Eval).unwrap();
        for _ in 0..3 {
            let loss = net.train_batch(&x, &y).unwrap();
            assert!(loss.is_finite(), "{name}: {loss}");
            optim.step(&mut net.params_mut()).unwrap();
        }
        let (_, after) = net.forward_loss(&x, &y, Mode::Eval).unwrap();
        assert!(after < before, "{name}: three steps on one batch lower its loss ({before} -> {after})");
    }
}

#[test]
fn a_description_that_cannot_run_is_refused_before_any_weight_is_drawn() {
    use scratch::spec::{ConvSpec, DenseSpec, LayerSpec};
    let mut rng = RandomState::new(0);
    let state = rng.next_u32();
    let mut rng = RandomState::new(0);
    let cases = [
        (
            NetSpec::new(
                &[1, 28, 28],
                vec![LayerSpec::Conv(ConvSpec::new(1, 4, 5)), LayerSpec::Dense(DenseSpec::new(10))],
            ),
            "layers.1 Dense(? -> 10, linear): input: expected [features] or [time, features]: flatten",
        ),
        (NetSpec::new(&[3, 8, 8], vec![LayerSpec::Conv(ConvSpec::new(1, 4, 3))]), "1 channels"),
        (NetSpec::new(&[4], vec![LayerSpec::Dense(DenseSpec::new(0))]), "at least one input and one neuron"),
        (NetSpec::new(&[4], vec![LayerSpec::Dense(DenseSpec::new(3).dropout(1.5))]), "keep probability"),
        (NetSpec::new(&[6], vec![LayerSpec::Reshape(vec![4, 2])]), "8 values per row"),
    ];
    for (spec, expected) in cases {
        let err = NeuralNetwork::<f64>::from_spec(&spec, LossSpec::MSE.build(), &mut rng).err().expect("refused");
        assert!(err.to_string().contains(expected), "{expected:?} not in {err}");
    }
    assert_eq!(rng.next_u32(), state, "nothing was drawn from the generator");
}
