//! Every operation, layer and loss of the crate checked against finite differences, in f64 (tight) and
//! f32 (loose), over several shapes.

use ndarray::{Array2, ArrayD, IxDyn};
use scratch::gradcheck::{check, GradCheckConfig, LayerProbe, NetworkProbe, OpProbe};
use scratch::layers::{Dense, Layer};
use scratch::losses::{CrossEntropyValue, Loss, MeanSquaredError, MseReduction, SoftmaxCrossEntropy};
use scratch::network::NeuralNetwork;
use scratch::ops::{Activation, BiasAdd, Dropout, DropoutStyle, Mode, Operation, WeightMultiply};
use scratch::param::Param;
use scratch::rng::RandomState;
use scratch::spec::{DenseSpec, WeightInit};
use scratch::Float;

const SHAPES: [(usize, usize, usize); 4] = [(1, 1, 1), (1, 7, 3), (5, 4, 6), (32, 13, 9)];
const ACTIVATIONS: [Activation; 7] = Activation::EACH;

fn config<F: Float>() -> GradCheckConfig {
    if F::SINGLE {
        GradCheckConfig { step: 1e-2, ..Default::default() }
    } else {
        GradCheckConfig::default()
    }
}

/// The activations checked in `F`: in f32 the difference step must be about 1e-2, which straddles the
/// kink of ReLU and leaky ReLU for inputs near 0, so those two are checked in f64 only (the code is the
/// same generic code for both types).
fn activations<F: Float>() -> Vec<Activation> {
    ACTIVATIONS
        .into_iter()
        .filter(|a| !F::SINGLE || !matches!(a, Activation::ReLU | Activation::LeakyReLU { .. }))
        .collect()
}

fn tolerance<F: Float>() -> f64 {
    if F::SINGLE {
        2e-2
    } else {
        1e-6
    }
}

fn input<F: Float>(rng: &mut RandomState, rows: usize, cols: usize) -> ArrayD<F> {
    rng.randn::<F, _>((rows, cols)).into_dyn()
}

fn check_ops<F: Float>() {
    let mut rng = RandomState::new(1);
    for (batch, n_in, n_out) in SHAPES {
        let x = input::<F>(&mut rng, batch, n_in);
        let mut ops: Vec<Box<dyn Operation<F>>> =
            vec![Box::new(WeightMultiply::new(rng.randn((n_in, n_out)))), Box::new(BiasAdd::new(rng.randn((1, n_in))))];
        ops.extend(activations::<F>().iter().map(|a| a.operation::<F>()));
        for op in &mut ops {
            let name = op.name();
            let report = check(&mut OpProbe::new(op.as_mut(), Mode::Train, 7), &x, &config::<F>()).unwrap();
            assert!(report.tensors.len() == 1 + usize::from(op.param().is_some()), "{name}");
            report.assert_below(tolerance::<F>());
        }
    }
}

#[test]
fn operations_f64() {
    check_ops::<f64>();
}

#[test]
fn operations_f32() {
    check_ops::<f32>();
}

/// Dropout with a fixed mask, re-injected before every forward pass so that the finite differences see
/// the same function.
struct FixedMaskDropout<F: Float> {
    inner: Dropout<F>,
    mask: ArrayD<F>,
}

impl<F: Float> Operation<F> for FixedMaskDropout<F> {
    fn name(&self) -> &'static str {
        "Dropout"
    }
    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> scratch::Result<ArrayD<F>> {
        self.inner.inject_mask(self.mask.clone());
        self.inner.forward(input, mode)
    }
    fn infer(&self, input: ArrayD<F>) -> scratch::Result<ArrayD<F>> {
        self.inner.infer(input)
    }
    fn backward(&mut self, g: ArrayD<F>) -> scratch::Result<ArrayD<F>> {
        self.inner.backward(g)
    }
    fn param(&self) -> Option<(&'static str, &Param<F>)> {
        None
    }
}

#[test]
fn dropout_in_both_styles_and_modes() {
    let mut rng = RandomState::new(3);
    for style in [DropoutStyle::Inverted, DropoutStyle::Book] {
        for mode in [Mode::Train, Mode::Eval] {
            let x = input::<f64>(&mut rng, 6, 5);
            let mask = rng.bernoulli_mask::<f64, _>(0.7, IxDyn(&[6, 5]));
            let inner = Dropout::new(0.7, style, RandomState::new(0)).unwrap();
            let mut op = FixedMaskDropout { inner, mask };
            let report = check(&mut OpProbe::new(&mut op, mode, 1), &x, &GradCheckConfig::default()).unwrap();
            report.assert_below(1e-7);
        }
    }
}

fn check_dense<F: Float>() {
    let mut rng = RandomState::new(11);
    for (batch, n_in, n_out) in SHAPES {
        for activation in activations::<F>() {
            for init in [WeightInit::Standard, WeightInit::Glorot] {
                let mut layer: Dense<F> =
                    Dense::new(n_in, DenseSpec::new(n_out).activation(activation).init(init), &mut rng).unwrap();
                let x = input::<F>(&mut rng, batch, n_in);
                let report = check(&mut LayerProbe::new(&mut layer, Mode::Train, 5), &x, &config::<F>()).unwrap();
                let names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
                assert_eq!(names, ["input", "weight", "bias"]);
                report.assert_below(tolerance::<F>());
            }
        }
    }
}

#[test]
fn dense_layers_f64() {
    check_dense::<f64>();
}

#[test]
fn dense_layers_f32() {
    check_dense::<f32>();
}

#[test]
fn dense_layer_with_dropout_in_evaluation_mode() {
    let mut rng = RandomState::new(5);
    let mut layer: Dense<f64> =
        Dense::new(6, DenseSpec::new(4).activation(Activation::Tanh).dropout(0.8), &mut rng).unwrap();
    let x = input::<f64>(&mut rng, 3, 6);
    check(&mut LayerProbe::new(&mut layer, Mode::Eval, 5), &x, &GradCheckConfig::default()).unwrap().assert_below(1e-7);
}

fn deep_network<F: Float>(widths: &[usize], loss: impl Loss<F> + 'static, rng: &mut RandomState) -> NeuralNetwork<F> {
    let mut layers: Vec<Box<dyn Layer<F>>> = Vec::new();
    for (i, pair) in widths.windows(2).enumerate() {
        let activation = if i + 2 == widths.len() { Activation::Linear } else { ACTIVATIONS[i % ACTIVATIONS.len()] };
        layers.push(Box::new(
            Dense::new(pair[0], DenseSpec::new(pair[1]).activation(activation).init(WeightInit::Glorot), rng).unwrap(),
        ));
    }
    NeuralNetwork::new(layers, loss)
}

#[test]
fn whole_networks_with_each_loss() {
    let mut rng = RandomState::new(17);
    for widths in [vec![3, 1], vec![13, 13, 1], vec![8, 16, 12, 10, 4], vec![5, 2, 3, 2, 2, 3]] {
        let (batch, n_out) = (7, *widths.last().unwrap());
        let x = input::<f64>(&mut rng, batch, widths[0]);
        let y: ArrayD<f64> = rng.randn((batch, n_out)).into_dyn();
        let labels: Vec<u8> = (0..batch).map(|_| rng.randint(0, n_out as i64).unwrap() as u8).collect();
        let one_hot = scratch::data::mnist::one_hot::<f64>(&labels, n_out).unwrap().into_dyn();
        let cases: Vec<(NeuralNetwork<f64>, ArrayD<f64>)> = vec![
            (deep_network(&widths, MeanSquaredError::new(), &mut rng), y.clone()),
            (deep_network(&widths, MeanSquaredError::with_reduction(MseReduction::Mean), &mut rng), y),
            (deep_network(&widths, SoftmaxCrossEntropy::new(), &mut rng), one_hot.clone()),
            (deep_network(&widths, SoftmaxCrossEntropy::reporting(CrossEntropyValue::Categorical), &mut rng), one_hot),
        ];
        for (mut net, target) in cases {
            let report = check(&mut NetworkProbe::new(&mut net, target), &x, &GradCheckConfig::default()).unwrap();
            assert_eq!(report.tensors.len(), 1 + 2 * (widths.len() - 1));
            report.assert_below(1e-6);
        }
    }
}

#[test]
fn the_checker_catches_a_wrong_gradient() {
    // A WeightMultiply whose backward forgets to transpose nothing would pass; instead corrupt a correct
    // gradient by scaling the output: y = 2 x W but backward as for x W.
    struct Wrong(WeightMultiply<f64>);
    impl Operation<f64> for Wrong {
        fn name(&self) -> &'static str {
            "Wrong"
        }
        fn forward(&mut self, x: ArrayD<f64>, mode: Mode) -> scratch::Result<ArrayD<f64>> {
            Ok(self.0.forward(x, mode)? * 2.0)
        }
        fn infer(&self, x: ArrayD<f64>) -> scratch::Result<ArrayD<f64>> {
            Ok(self.0.infer(x)? * 2.0)
        }
        fn backward(&mut self, g: ArrayD<f64>) -> scratch::Result<ArrayD<f64>> {
            self.0.backward(g)
        }
        fn param_mut(&mut self) -> Option<(&'static str, &mut Param<f64>)> {
            self.0.param_mut()
        }
    }
    let mut rng = RandomState::new(2);
    let mut op = Wrong(WeightMultiply::new(rng.randn::<f64, _>((3, 2))));
    let x: Array2<f64> = rng.randn((4, 3));
    let report = check(&mut OpProbe::new(&mut op, Mode::Train, 1), &x.into_dyn(), &GradCheckConfig::default()).unwrap();
    assert!(report.max_error() > 0.1, "{report:?}");
}
