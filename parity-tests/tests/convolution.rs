//! Convolutions against libtorch's `conv2d` (oneDNN): forward, input, kernel and bias gradients over a
//! grid of batch sizes, channels, kernels, strides, paddings and non-square images; pooling and flatten;
//! whole CNNs; and a 100-step CNN training trajectory on MNIST.

use ndarray::{s, Array2, ArrayD, IxDyn};
use parity_tests::{
    compare_networks, data_dir_or_skip, max_relative_difference, model_pair, LayerSpec, LossKind, NetSpec,
};
use scratch::conv::PoolKind;
use scratch::data::mnist;
use scratch::layers::{ConvSpec, WeightInit};
use scratch::network::InitSeeding;
use scratch::ops::{Activation, DropoutStyle};
use scratch::optim::{self, Decay};
use scratch::rng::RandomState;
use scratch::train::{Dataset, FitOptions};
use torch::convert::TorchFloat;

/// One convolutional layer (with a linear output head so that the loss sees every output) over a
/// seeded sample of the grid.
fn conv_grid<F: TorchFloat>(cases: usize) {
    let mut rng = RandomState::new(11);
    let pick = |rng: &mut RandomState, options: &[usize]| options[rng.randint(0, options.len() as i64) as usize];
    let mut done = 0;
    while done < cases {
        let (batch, c_in, c_out) =
            (pick(&mut rng, &[1, 2, 5, 16]), pick(&mut rng, &[1, 3, 16]), pick(&mut rng, &[1, 4, 16]));
        let (k, stride) = (pick(&mut rng, &[1, 3, 5, 7]), pick(&mut rng, &[1, 2, 3]));
        let padding = pick(&mut rng, &[0, k / 2, k - 1]);
        let (h, w) = (pick(&mut rng, &[5, 8, 12]), pick(&mut rng, &[7, 8, 9]));
        let mut spec = ConvSpec::new(c_in, c_out, k);
        spec.stride = stride;
        spec.padding = Some(padding);
        spec.bias = done % 2 == 0;
        spec.activation = [Activation::Tanh, Activation::Linear, Activation::ReLU][done % 3];
        spec.init = WeightInit::Glorot;
        spec.flatten = true;
        let Some((ho, wo)) = spec.geometry().output_size((h, w)) else { continue };
        done += 1;
        let layers = vec![LayerSpec::Conv(spec), LayerSpec::dense(3, Activation::Linear, WeightInit::Glorot)];
        let (mut net, mut model) =
            model_pair::<F>(&NetSpec::new(&[c_in, h, w], layers), LossKind::MseRows, done as u32);
        let x: ArrayD<F> = rng.randn(IxDyn(&[batch, c_in, h, w]));
        let y = LossKind::MseRows.targets::<F>(batch, 3, &mut rng);
        let label = format!(
            "{} conv b{batch} {c_in}->{c_out} k{k} s{stride} p{padding} {h}x{w} -> {ho}x{wo} bias {}",
            F::NAME,
            spec.bias
        );
        compare_networks(&mut net, &mut model, &x, &y, &label);
    }
}

#[test]
fn convolution_grid_f64() {
    conv_grid::<f64>(60);
}

#[test]
fn convolution_grid_f32() {
    conv_grid::<f32>(40);
}

#[test]
fn pooling_and_flatten() {
    let mut rng = RandomState::new(12);
    for kind in [PoolKind::Max, PoolKind::Average] {
        for (size, stride, h, w) in [(2, 2, 8, 8), (3, 1, 7, 9), (2, 1, 5, 6), (3, 3, 12, 10)] {
            let mut conv = ConvSpec::new(2, 3, 3);
            conv.activation = Activation::Tanh;
            let layers = vec![
                LayerSpec::Conv(conv),
                LayerSpec::Pool(kind, size, stride),
                LayerSpec::Flatten,
                LayerSpec::dense(4, Activation::Linear, WeightInit::Glorot),
            ];
            let spec = NetSpec::new(&[2, h, w], layers);
            let (mut net, mut model) = model_pair::<f64>(&spec, LossKind::SoftmaxCrossEntropy, 3);
            let x: ArrayD<f64> = rng.randn(IxDyn(&[3, 2, h, w]));
            let y = LossKind::SoftmaxCrossEntropy.targets::<f64>(3, 4, &mut rng);
            compare_networks(&mut net, &mut model, &x, &y, &format!("{kind:?} pool {size} stride {stride} {h}x{w}"));
        }
    }
}

/// Transposed convolutions (strides 1 to 3, paddings from 0 to past the kernel, output paddings, with and
/// without a bias) against libtorch's `conv_transpose2d`, in a decoder-shaped network: dense code,
/// reshape to images, two transposed convolutions.
#[test]
fn transposed_convolutions() {
    let mut rng = RandomState::new(12);
    // (in, out, k, stride, padding, output padding, bias, side)
    for (c, o, k, s, p, q, bias, side) in [
        (1, 1, 1, 1, 0, 0, false, 3),
        (3, 2, 3, 1, 1, 0, true, 5),
        (2, 4, 5, 1, 2, 0, true, 7),
        (2, 3, 3, 1, 0, 0, false, 4),
        (2, 3, 4, 2, 1, 0, true, 4),
        (3, 2, 3, 2, 1, 1, true, 5),
        (2, 2, 3, 3, 4, 2, false, 6),
        (1, 3, 2, 2, 0, 1, true, 1),
    ] {
        let mut up = ConvSpec::new(c, o, k);
        up.transposed = true;
        up.stride = s;
        up.padding = Some(p);
        up.output_padding = q;
        up.bias = bias;
        up.activation = Activation::Tanh;
        up.init = WeightInit::PyTorch;
        let mut out = ConvSpec::new(o, 1, 3);
        out.transposed = true;
        out.flatten = true;
        let layers = vec![
            LayerSpec::dense(c * side * side, Activation::Tanh, WeightInit::Glorot),
            LayerSpec::Reshape(vec![c, side, side]),
            LayerSpec::Conv(up),
            LayerSpec::Conv(out),
        ];
        let spec = NetSpec::new(&[6], layers);
        let pixels: usize = spec.shapes().unwrap().last().unwrap().iter().product();
        let (mut net, mut model) = model_pair::<f64>(&spec, LossKind::MseElements, 4);
        let x: ArrayD<f64> = rng.randn(IxDyn(&[3, 6]));
        let y: ArrayD<f64> = rng.randn(IxDyn(&[3, pixels]));
        compare_networks(
            &mut net,
            &mut model,
            &x,
            &y,
            &format!("ConvTranspose2D {c}->{o} {k}x{k} stride {s} padding {p}/{q} bias {bias}"),
        );
    }
}

/// The chapter-5 CNN: `Conv2D(1 -> 16, 5x5, tanh, flatten)`, then `Dense(10)`.
fn chapter5_cnn(dropout: Option<f64>) -> Vec<LayerSpec> {
    let mut conv = ConvSpec::new(1, 16, 5);
    conv.activation = Activation::Tanh;
    conv.flatten = true;
    conv.init = WeightInit::BookGlorot2019;
    conv.dropout = dropout.map(|k| (k, DropoutStyle::Inverted));
    vec![LayerSpec::Conv(conv), LayerSpec::dense(10, Activation::Linear, WeightInit::Glorot)]
}

/// The chapter-7 `MNIST_ConvNet`: two convolutions with dropout, a dense layer, 10 outputs.
fn chapter7_convnet() -> Vec<LayerSpec> {
    let dropout = Some((0.8, DropoutStyle::Inverted));
    let conv = |c_in, c_out, flatten| ConvSpec {
        bias: true,
        activation: Activation::Tanh,
        init: WeightInit::Glorot,
        flatten,
        dropout,
        ..ConvSpec::new(c_in, c_out, 5)
    };
    vec![
        LayerSpec::Conv(conv(1, 14, false)),
        LayerSpec::Conv(conv(14, 7, true)),
        LayerSpec::Dense { neurons: 32, activation: Activation::Tanh, init: WeightInit::Glorot, dropout },
        LayerSpec::dense(10, Activation::Linear, WeightInit::Glorot),
    ]
}

#[test]
fn whole_cnns_of_the_book() {
    let mut rng = RandomState::new(13);
    for (name, layers) in [
        ("chapter 5", chapter5_cnn(None)),
        ("chapter 5 dropout", chapter5_cnn(Some(0.8))),
        ("chapter 7", chapter7_convnet()),
    ] {
        for batch in [1, 4] {
            // Both engines draw their dropout masks from the same stream.
            let spec = NetSpec::new(&[1, 28, 28], layers.clone());
            let (mut net, mut model) = model_pair::<f64>(&spec, LossKind::SoftmaxCrossEntropy, 5);
            let x: ArrayD<f64> = rng.randn(IxDyn(&[batch, 1, 28, 28]));
            let y = LossKind::SoftmaxCrossEntropy.targets::<f64>(batch, 10, &mut rng);
            compare_networks(&mut net, &mut model, &x, &y, &format!("{name} batch {batch}"));
        }
    }
}

#[test]
fn chapter5_cnn_100_steps_on_mnist() {
    let Some(dir) = data_dir_or_skip("mnist/train-images-idx3-ubyte") else { return };
    let m = mnist::load(dir.join("mnist")).unwrap();
    let (x_train, x_test) = m.book_scaled::<f64>();
    let images = |x: &Array2<f64>, n: usize| {
        x.slice(s![..n, ..]).to_owned().into_shape_with_order((n, 1, 28, 28)).unwrap().into_dyn()
    };
    let labels = |l: &[u8], n: usize| mnist::one_hot::<f64>(&l[..n], 10).into_dyn();
    let train = Dataset::new(images(&x_train, 1000), labels(&m.train_labels, 1000)).unwrap();
    let test = Dataset::new(images(&x_test, 200), labels(&m.test_labels, 200)).unwrap();
    let spec = NetSpec::new(&[1, 28, 28], chapter5_cnn(Some(0.8)));
    let (net, model) = model_pair::<f64>(&spec, LossKind::SoftmaxCrossEntropy, 7);
    let decay = Decay::Exponential { final_lr: 0.02 };
    let mut a = scratch::train::Trainer::new(net, optim::SGDMomentum::new(0.05, 0.9, decay).unwrap());
    let mut b = torch::train::Trainer::new(model, torch::optim::SGDMomentum::new(0.05, 0.9, decay).unwrap());
    let options = FitOptions {
        epochs: 5,
        eval_every: 1,
        batch_size: 50,
        seed: 20_190_402,
        restart: true,
        init_seeding: InitSeeding::Stream,
        early_stopping: false,
        eval_batches: None,
        drop_last: false,
        checkpoint: None,
    };
    let ra = a.fit(&train, &test, &options, &mut ()).unwrap();
    let rb = b.fit(&train, &test, &options, &mut ()).unwrap();
    assert_eq!(ra.batch_losses.len(), 100);
    for (i, (x, y)) in ra.batch_losses.iter().zip(&rb.batch_losses).enumerate() {
        assert!((x - y).abs() <= 1e-8 * y.abs(), "batch {}: scratch {x}, torch {y}", i + 1);
    }
    let (diff, name) = max_relative_difference(&a.net.named_parameters(), &b.model.named_arrays::<f64>());
    eprintln!("chapter-5 CNN, 100 steps: largest relative difference {diff:e} ({name})");
    assert!(diff <= 1e-8, "{name} differs by {diff:e}");
}

/// The chapter-7 models the examples train ([`torch::book`]): `BostonModel` (tanh, dropout with shared
/// masks) and the convolutional autoencoder with its transposed-convolution decoder, on real-sized
/// inputs: outputs, losses and every gradient.
#[test]
fn chapter7_models() {
    let mut rng = RandomState::new(30);
    let (mut net, mut model) = model_pair::<f64>(&torch::book::boston_model(), LossKind::MseElements, 1);
    let x: ArrayD<f64> = rng.randn(IxDyn(&[32, 13]));
    let y: ArrayD<f64> = rng.randn(IxDyn(&[32, 1]));
    compare_networks(&mut net, &mut model, &x, &y, "BostonModel");

    let (mut net, mut model) = model_pair::<f64>(&torch::book::autoencoder(), LossKind::MseElements, 2);
    let x: ArrayD<f64> = rng.uniform_array::<f64, _>(IxDyn(&[2, 1, 28, 28])).mapv(|u| 2.0 * u - 1.0);
    compare_networks(&mut net, &mut model, &x, &x.clone(), "Autoencoder");
}
