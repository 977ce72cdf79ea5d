//! Chapter 5: the notebook's printed numbers from the loop convolutions, the fast convolution against
//! the loops, and finite-difference checks of the convolution, bias, pooling, flatten, the layer and a
//! whole CNN.

use ndarray::{array, Array1, Array2, Array3, Array4, ArrayD, IxDyn};
use scratch::conv::loops::*;
use scratch::conv::{ChannelBiasAdd, Conv2DOp, Pool2D, PoolKind};
use scratch::gradcheck::{check, GradCheckConfig, LayerProbe, NetworkProbe, OpProbe};
use scratch::ops::{Flatten, Operation, Reshape};
use scratch::prelude::*;

#[test]
fn one_dimensional_numbers_match_the_notebook() {
    let input = array![1.0, 2.0, 3.0, 4.0, 5.0];
    let param = array![1.0, 1.0, 1.0];
    assert_eq!(pad_1d(&input, 1), array![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.0]);
    assert_eq!(conv_1d_sum(&input, &param), 39.0);
    assert_eq!(conv_1d_sum(&input, &array![2.0, 1.0, 1.0]) - conv_1d_sum(&input, &param), 10.0);
    let ones = Array1::ones(5);
    assert_eq!(input_grad_1d(&input, &param, &ones), array![2.0, 3.0, 3.0, 3.0, 2.0]);
    assert_eq!(param_grad_1d(&input, &param, &ones), array![10.0, 15.0, 14.0]);

    let batch = array![[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]];
    let out = conv_1d_batch(&batch, &param);
    assert_eq!(out, array![[1.0, 3.0, 6.0, 9.0, 12.0, 15.0, 11.0], [3.0, 6.0, 9.0, 12.0, 15.0, 18.0, 13.0]]);
    assert_eq!(out.sum(), 133.0);
    let mut bumped = batch.clone();
    bumped[[0, 2]] += 1.0;
    assert_eq!(conv_1d_batch(&bumped, &param).sum() - out.sum(), 3.0);
    let ones = Array2::ones((2, 7));
    let row = array![2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0];
    assert_eq!(input_grad_1d_batch(&batch, &param, &ones), ndarray::stack![ndarray::Axis(0), row, row]);
    assert_eq!(conv_1d_batch(&batch, &array![1.0, 1.0, 2.0]).sum() - out.sum(), 48.0);
    assert_eq!(param_grad_1d_batch(&batch, &param, &ones), array![36.0, 49.0, 48.0]);
}

/// The notebook's generator after cells 16-44: seed 190220, then the randint draws it printed.
fn notebook_stream() -> RandomState {
    let mut rng = RandomState::new(190_220);
    let draws: Vec<i64> = [5, 3, 2, 7, 3].iter().map(|&high| rng.randint(0, high).unwrap()).collect();
    assert_eq!(draws, vec![4, 0, 0, 2, 2], "the printed randint draws");
    rng
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn two_dimensional_gradient_checks_match_the_notebook() {
    let mut rng = notebook_stream();
    let imgs: Array3<f64> = rng.randn((3, 28, 28));
    let param: Array2<f64> = rng.randn((3, 3));
    let ones = Array3::ones((3, 28, 28));
    let img_grads = input_grad_2d(&imgs, &param, &ones);
    let param_grad = param_grad_2d(&imgs, &param, &ones);
    assert_eq!((rng.randint(0, 3).unwrap(), rng.randint(0, 28).unwrap(), rng.randint(0, 28).unwrap()), (0, 6, 18));
    // The analytic values to the last printed digit; the perturbations (differences of two sums of 2352
    // terms, summed by numpy in another order) to 1e-12.
    assert!(close(img_grads[[0, 6, 18]], -3.184347739859924, 1e-15), "{}", img_grads[[0, 6, 18]]);
    let mut bumped = imgs.clone();
    bumped[[0, 6, 18]] += 1.0;
    let diff = conv_2d(&bumped, &param).sum() - conv_2d(&imgs, &param).sum();
    assert!(close(diff, -3.1843477398599163, 1e-12), "{diff}");
    assert_eq!((rng.randint(0, 3).unwrap(), rng.randint(0, 3).unwrap()), (0, 2));
    assert!(close(param_grad[[0, 2]], 5.533490159230001, 1e-15), "{}", param_grad[[0, 2]]);
    let mut p2 = param.clone();
    p2[[0, 2]] += 1.0;
    let diff = conv_2d(&imgs, &p2).sum() - conv_2d(&imgs, &param).sum();
    assert!(close(diff, 5.53349015923007, 1e-12), "{diff}");

    // Multi-channel: cifar_imgs (10, 3, 32, 32), cifar_param (3, 16, 5, 5).
    let cifar: Array4<f64> = rng.randn((10, 3, 32, 32));
    let kernel: Array4<f64> = rng.randn((3, 16, 5, 5));
    let draws: Vec<i64> = [10, 3, 32, 32, 3, 16, 5, 5].iter().map(|&h| rng.randint(0, h).unwrap()).collect();
    assert_eq!(draws, vec![3, 1, 2, 19, 0, 8, 0, 2]);
    let ones = Array4::ones((10, 16, 32, 32));
    let g = input_grad_2d_multi(&cifar, &kernel, &ones)[[3, 1, 2, 19]];
    assert!(close(g, 2.3452987587074423, 1e-15), "{g}");
    let mut bumped = cifar.clone();
    bumped[[3, 1, 2, 19]] += 1.0;
    let base = conv_2d_multi(&cifar, &kernel).sum();
    assert!(close(conv_2d_multi(&bumped, &kernel).sum() - base, 2.345298758707486, 1e-11));
    let g = param_grad_2d_multi(&cifar, &kernel, &ones)[[0, 8, 0, 2]];
    assert!(close(g, -47.0912312415532, 1e-15), "{g}");
    let mut k2 = kernel.clone();
    k2[[0, 8, 0, 2]] += 1.0;
    assert!(close(conv_2d_multi(&cifar, &k2).sum() - base, -47.09123124155292, 1e-11));
}

#[test]
fn the_fast_convolution_equals_the_loops() {
    let mut rng = RandomState::new(3);
    for (batch, c_in, c_out, k, size) in [(1, 1, 1, 1, 1), (2, 3, 4, 3, 7), (4, 2, 5, 5, 9), (3, 4, 2, 7, 8)] {
        let x: Array4<f64> = rng.randn((batch, c_in, size, size));
        let kernel: Array4<f64> = rng.randn((c_in, c_out, k, k));
        let g: Array4<f64> = rng.randn((batch, c_out, size, size));
        let mut op = Conv2DOp::new(kernel.clone(), (1, 1), (k / 2, k / 2));
        let y = op.forward(x.clone().into_dyn(), Mode::Train).unwrap();
        let dx = op.backward(g.clone().into_dyn()).unwrap();
        let dk = op.param().unwrap().1.grad.clone();
        let tol = |a: &ArrayD<f64>, b: &ArrayD<f64>| {
            a.iter().zip(b.iter()).all(|(p, q)| (p - q).abs() < 1e-12 * (1.0 + q.abs()))
        };
        assert!(tol(&y, &conv_2d_multi(&x, &kernel).into_dyn()), "forward {batch} {c_in} {c_out} {k}");
        assert!(tol(&dx, &input_grad_2d_multi(&x, &kernel, &g).into_dyn()), "input grad");
        assert!(tol(&dk, &param_grad_2d_multi(&x, &kernel, &g).into_dyn()), "kernel grad");
    }
}

fn check_op(op: &mut dyn Operation<f64>, x: ArrayD<f64>, what: &str) {
    let report = check(&mut OpProbe::new(op, Mode::Train, 1), &x, &GradCheckConfig::default()).unwrap();
    assert!(report.max_error() < 1e-6, "{what}: {report:#?}");
}

#[test]
fn convolution_gradients_for_any_stride_padding_and_shape() {
    let mut rng = RandomState::new(4);
    // (batch, in, out, kh, kw, stride, padding, h, w): non-square images and kernels, strides, paddings
    let cases = [
        (1, 1, 1, 1, 1, (1, 1), (0, 0), 1, 1),
        (2, 3, 2, 3, 3, (2, 2), (1, 1), 7, 5),
        (3, 2, 4, 2, 2, (1, 1), (0, 0), 5, 6),
        (2, 1, 3, 5, 3, (2, 1), (2, 0), 9, 4),
        (1, 4, 2, 4, 4, (3, 3), (1, 2), 10, 11),
        (2, 5, 3, 3, 2, (1, 1), (1, 0), 6, 5),
        (2, 4, 4, 3, 3, (1, 1), (3, 1), 4, 4),
        (1, 16, 2, 5, 5, (1, 1), (2, 2), 12, 12),
    ];
    for (b, c, o, kh, kw, stride, padding, h, w) in cases {
        let mut op = Conv2DOp::new(rng.randn((c, o, kh, kw)), stride, padding);
        check_op(&mut op, rng.randn(IxDyn(&[b, c, h, w])), &format!("conv {cases:?}"));
    }
    check_op(&mut ChannelBiasAdd::new(rng.randn(3)), rng.randn(IxDyn(&[2, 3, 4, 5])), "channel bias");
    check_op(&mut Flatten::new(), rng.randn(IxDyn(&[2, 3, 4, 5])), "flatten");
    check_op(&mut Reshape::new(&[3, 2, 2]), rng.randn(IxDyn(&[2, 12])), "reshape");
    for kind in [PoolKind::Max, PoolKind::Average] {
        for (size, stride) in [(2, 2), (3, 1), (2, 1)] {
            let mut pool = Pool2D::new(kind, size, stride).unwrap();
            check_op(&mut pool, rng.randn(IxDyn(&[2, 3, 6, 7])), &format!("{kind:?} pool {size} {stride}"));
        }
    }
}

#[test]
fn pooling_matches_the_math_notebook() {
    // np.random.seed(20190420); randint(0, 10, (4, 4)); pooled 2x2 blocks.
    let mut rng = RandomState::new(20_190_420);
    let grid: Vec<f64> = (0..16).map(|_| rng.randint(0, 10).unwrap() as f64).collect();
    let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 4, 4]), grid).unwrap();
    let mut max = Pool2D::<f64>::new(PoolKind::Max, 2, 2).unwrap();
    assert_eq!(max.forward(x.clone(), Mode::Eval).unwrap().into_raw_vec_and_offset().0, vec![5.0, 6.0, 9.0, 7.0]);
    let mut avg = Pool2D::<f64>::new(PoolKind::Average, 2, 2).unwrap();
    assert_eq!(avg.forward(x, Mode::Eval).unwrap().into_raw_vec_and_offset().0, vec![3.5, 4.25, 5.0, 3.0]);
}

#[test]
fn conv_layer_and_cnn_gradients() {
    let mut rng = RandomState::new(5);
    for activation in [Activation::Tanh, Activation::ReLU, Activation::Linear] {
        for (bias, flatten, stride) in [(false, false, 1), (true, true, 1), (true, false, 2)] {
            let mut layer: Conv2D<f64> = Conv2D::new(
                ConvSpec::new(2, 3, 3)
                    .activation(activation)
                    .bias(bias)
                    .flatten(flatten)
                    .stride(stride)
                    .init(WeightInit::Glorot),
                &mut rng,
            )
            .unwrap();
            let x: ArrayD<f64> = rng.randn(IxDyn(&[2, 2, 6, 5]));
            let report =
                check(&mut LayerProbe::new(&mut layer, Mode::Train, 2), &x, &GradCheckConfig::default()).unwrap();
            assert_eq!(report.tensors.len(), if bias { 3 } else { 2 });
            report.assert_below(1e-6);
        }
    }
    // A small CNN: conv -> pool -> conv (flatten) -> dense, softmax cross-entropy.
    let layers: Vec<Box<dyn Layer<f64>>> = vec![
        Box::new(
            Conv2D::new(
                ConvSpec::new(1, 4, 3).activation(Activation::Tanh).bias(true).init(WeightInit::Glorot),
                &mut rng,
            )
            .unwrap(),
        ),
        Box::new(OpLayer::new(Pool2D::new(PoolKind::Max, 2, 2).unwrap())),
        Box::new(
            Conv2D::new(
                ConvSpec::new(4, 3, 3).activation(Activation::ReLU).flatten(true).init(WeightInit::Glorot),
                &mut rng,
            )
            .unwrap(),
        ),
        Box::new(Dense::new(3 * 4 * 4, DenseSpec::new(5).init(WeightInit::Glorot), &mut rng).unwrap()),
    ];
    let mut net = NeuralNetwork::new(layers, SoftmaxCrossEntropy::new());
    let x: ArrayD<f64> = rng.randn(IxDyn(&[3, 1, 8, 8]));
    let y = scratch::data::mnist::one_hot::<f64>(&[0, 4, 2], 5).unwrap().into_dyn();
    let report = check(&mut NetworkProbe::new(&mut net, y), &x, &GradCheckConfig::default()).unwrap();
    let names: Vec<&str> = report.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["input", "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.3.weight", "layers.3.bias"]
    );
    report.assert_below(1e-6);
}

#[test]
fn wrong_channels_or_too_small_images_name_the_shapes() {
    let mut op = Conv2DOp::<f64>::new(Array4::zeros((3, 2, 5, 5)), (1, 1), (0, 0));
    let err = op.forward(ArrayD::zeros(IxDyn(&[1, 2, 8, 8])), Mode::Eval).unwrap_err().to_string();
    assert!(err.contains("(batch, 3, height, width)") && err.contains("[1, 2, 8, 8]"), "{err}");
    let err = op.forward(ArrayD::zeros(IxDyn(&[1, 3, 4, 8])), Mode::Eval).unwrap_err().to_string();
    assert!(err.contains("at least the kernel's size"), "{err}");
}

/// (batch, in, out, k, stride, padding, output padding, h, w): stride 1 to 3, padding from 0 to past the
/// kernel, output padding up to stride − 1.
const TRANSPOSED_CASES: [[usize; 9]; 9] = [
    [1, 1, 1, 1, 1, 0, 0, 1, 1],
    [1, 2, 16, 5, 1, 2, 0, 12, 12],
    [2, 3, 2, 3, 1, 1, 0, 4, 5],
    [3, 2, 4, 5, 1, 2, 0, 6, 6],
    [1, 2, 1, 3, 1, 0, 0, 2, 3],
    [2, 2, 3, 3, 2, 1, 1, 4, 3],
    [2, 3, 2, 4, 2, 1, 0, 3, 5],
    [1, 2, 2, 3, 3, 4, 2, 5, 4],
    [2, 1, 2, 2, 2, 0, 1, 1, 2],
];

#[test]
fn transposed_convolution_gradients() {
    use scratch::conv::ConvTranspose2DOp;
    let mut rng = RandomState::new(9);
    for [batch, c, o, k, s, p, q, h, w] in TRANSPOSED_CASES {
        let kernel: Array4<f64> = rng.randn((c, o, k, k));
        let mut op = ConvTranspose2DOp::new(kernel, s, p, q).unwrap();
        let x: ArrayD<f64> = rng.randn(IxDyn(&[batch, c, h, w]));
        let y = op.forward(x.clone(), Mode::Train).unwrap();
        let grow = |n: usize| (n - 1) * s + k + q - 2 * p;
        assert_eq!(y.shape(), &[batch, o, grow(h), grow(w)]);
        check_op(&mut op, x, &format!("ConvTranspose2D {c}->{o} {k}x{k} stride {s} padding {p}/{q} on {h}x{w}"));
    }
}

/// The transposed convolution is the adjoint of the convolution with the same kernel: its forward pass is
/// that convolution's input gradient, and the convolution's forward pass is its input gradient.
#[test]
fn transposed_convolution_is_the_adjoint_of_the_convolution() {
    use scratch::conv::ConvTranspose2DOp;
    let mut rng = RandomState::new(10);
    for [batch, c, o, k, s, p, q, h, w] in TRANSPOSED_CASES {
        let kernel: Array4<f64> = rng.randn((c, o, k, k));
        let mut up = ConvTranspose2DOp::new(kernel.clone(), s, p, q).unwrap();
        let mut swapped = kernel.clone();
        swapped.swap_axes(0, 1);
        let mut down = Conv2DOp::new(swapped.as_standard_layout().into_owned(), (s, s), (p, p));
        let x: ArrayD<f64> = rng.randn(IxDyn(&[batch, c, h, w]));
        let y = up.forward(x.clone(), Mode::Train).unwrap();
        let z: ArrayD<f64> = rng.randn(y.raw_dim());
        assert_eq!(down.forward(z.clone(), Mode::Train).unwrap().shape(), x.shape(), "sizes invert");
        let what = format!("{c}->{o} {k}x{k} stride {s} padding {p}/{q}");
        let up_as_grad = down.backward(x.clone()).unwrap();
        assert!(up_as_grad.abs_diff_eq(&y, 1e-12), "forward = the convolution's input gradient, {what}");
        let down_as_grad = up.backward(z.clone()).unwrap();
        let down_forward = down.forward(z, Mode::Train).unwrap();
        assert!(down_as_grad.abs_diff_eq(&down_forward, 1e-12), "input gradient = the convolution, {what}");
    }
}

#[test]
fn transposed_convolution_settings_are_checked() {
    use scratch::conv::ConvTranspose2DOp;
    let mut rng = RandomState::new(11);
    assert!(ConvTranspose2DOp::new(Array4::<f64>::zeros((1, 1, 3, 3)), 2, 0, 2).is_err(), "output padding < stride");
    assert!(ConvTranspose2DOp::new(Array4::<f64>::zeros((1, 1, 3, 3)), 0, 0, 0).is_err(), "stride > 0");
    let mut op = ConvTranspose2DOp::new(Array4::<f64>::zeros((2, 1, 3, 3)), 1, 2, 0).unwrap();
    let err = op.forward(ArrayD::zeros(IxDyn(&[1, 2, 1, 1])), Mode::Eval).unwrap_err().to_string();
    assert!(err.contains("positive output size") && err.contains("[1, 2, 1, 1]"), "{err}");
    let err = op.forward(ArrayD::zeros(IxDyn(&[1, 3, 5, 5])), Mode::Eval).unwrap_err().to_string();
    assert!(err.contains("(batch, 2, height, width)"), "{err}");
    let layer = Conv2D::<f64>::new(ConvSpec::new(2, 3, 5).output_padding(1), &mut rng);
    assert!(layer.is_err_and(|e| e.to_string().contains("needs a transposed convolution")));
    let layer = Conv2D::<f64>::new(ConvSpec::new(2, 3, 5).transposed(true).stride(2).output_padding(2), &mut rng);
    assert!(layer.is_err_and(|e| e.to_string().contains("below its stride")));
    let layer = Conv2D::<f64>::new(ConvSpec::new(2, 3, 4).transposed(true).stride(2).padding(1), &mut rng).unwrap();
    assert_eq!(layer.spec().output_size((14, 14)), Some((28, 28)), "a stride-2 decoder doubles the size");
}
