//! Convolutions against libtorch's `conv2d` (oneDNN): forward, input, kernel and bias gradients over a
//! grid of batch sizes, channels, kernels, strides, paddings and non-square images; pooling and flatten;
//! whole CNNs; and a 100-step CNN training trajectory on MNIST.

use ndarray::{s, Array2, ArrayD, IxDyn};
use parity_tests::{
    assert_relative_sequence, assert_same_parameters, compare_networks, data_dir_or_skip, model_pair, targets,
    DenseSpec, LayerSpec, LossSpec, NetSpec,
};
use scratch::data::mnist;
use scratch::network::InitSeeding;
use scratch::ops::Activation;
use scratch::optim::{self, Decay};
use scratch::rng::RandomState;
use scratch::spec::{book, ConvSpec, MseReduction, PoolKind, PoolSpec, WeightInit};
use scratch::train::{Dataset, FitOptions};
use torch::convert::TorchFloat;

/// One convolutional layer (with a linear output head so that the loss sees every output) over a
/// seeded sample of the grid.
fn conv_grid<F: TorchFloat>(cases: usize) {
    let mut rng = RandomState::new(11);
    let pick =
        |rng: &mut RandomState, options: &[usize]| options[rng.randint(0, options.len() as i64).unwrap() as usize];
    let mut done = 0;
    while done < cases {
        let (batch, c_in, c_out) =
            (pick(&mut rng, &[1, 2, 5, 16]), pick(&mut rng, &[1, 3, 16]), pick(&mut rng, &[1, 4, 16]));
        let (k, stride) = (pick(&mut rng, &[1, 3, 5, 7]), pick(&mut rng, &[1, 2, 3]));
        let padding = pick(&mut rng, &[0, k / 2, k - 1]);
        let (h, w) = (pick(&mut rng, &[5, 8, 12]), pick(&mut rng, &[7, 8, 9]));
        let spec = ConvSpec::new(c_in, c_out, k)
            .stride(stride)
            .padding(padding)
            .bias(done % 2 == 0)
            .activation([Activation::Tanh, Activation::Linear, Activation::ReLU][done % 3])
            .init(WeightInit::Glorot)
            .flatten(true);
        let Some((ho, wo)) = spec.geometry().output_size((h, w)) else { continue };
        done += 1;
        let layers = vec![LayerSpec::Conv(spec), LayerSpec::Dense(DenseSpec::new(3).init(WeightInit::Glorot))];
        let (mut net, model) = model_pair::<F>(&NetSpec::new(&[c_in, h, w], layers), LossSpec::MSE, done as u32);
        let x: ArrayD<F> = rng.randn(IxDyn(&[batch, c_in, h, w]));
        let y = targets::<F>(LossSpec::MSE, batch, 3, &mut rng);
        let label = format!(
            "{} conv b{batch} {c_in}->{c_out} k{k} s{stride} p{padding} {h}x{w} -> {ho}x{wo} bias {}",
            F::NAME,
            spec.bias
        );
        compare_networks(&mut net, &model, LossSpec::MSE, &x, &y, &label);
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
            let layers = vec![
                LayerSpec::Conv(ConvSpec::new(2, 3, 3).activation(Activation::Tanh)),
                LayerSpec::Pool(PoolSpec { kind, size, stride }),
                LayerSpec::Flatten,
                LayerSpec::Dense(DenseSpec::new(4).init(WeightInit::Glorot)),
            ];
            let spec = NetSpec::new(&[2, h, w], layers);
            let (mut net, model) = model_pair::<f64>(&spec, LossSpec::CROSS_ENTROPY, 3);
            let x: ArrayD<f64> = rng.randn(IxDyn(&[3, 2, h, w]));
            let y = targets::<f64>(LossSpec::CROSS_ENTROPY, 3, 4, &mut rng);
            let label = format!("{kind:?} pool {size} stride {stride} {h}x{w}");
            compare_networks(&mut net, &model, LossSpec::CROSS_ENTROPY, &x, &y, &label);
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
        let up = ConvSpec::new(c, o, k)
            .transposed(true)
            .stride(s)
            .padding(p)
            .output_padding(q)
            .bias(bias)
            .activation(Activation::Tanh)
            .init(WeightInit::PyTorch);
        let out = ConvSpec::new(o, 1, 3).transposed(true).flatten(true);
        let layers = vec![
            LayerSpec::Dense(DenseSpec::new(c * side * side).activation(Activation::Tanh).init(WeightInit::Glorot)),
            LayerSpec::Reshape(vec![c, side, side]),
            LayerSpec::Conv(up),
            LayerSpec::Conv(out),
        ];
        let spec = NetSpec::new(&[6], layers);
        let pixels: usize = spec.output_shape().unwrap().iter().product();
        let loss = LossSpec::MeanSquaredError(MseReduction::Mean);
        let (mut net, model) = model_pair::<f64>(&spec, loss, 4);
        let x: ArrayD<f64> = rng.randn(IxDyn(&[3, 6]));
        let y: ArrayD<f64> = rng.randn(IxDyn(&[3, pixels]));
        let label = format!("ConvTranspose2D {c}->{o} {k}x{k} stride {s} padding {p}/{q} bias {bias}");
        compare_networks(&mut net, &model, loss, &x, &y, &label);
    }
}

/// The chapter-5 CNN ([`book::chapter5_cnn`]), with or without its dropout.
fn chapter5_cnn(dropout: bool) -> NetSpec {
    let spec = book::chapter5_cnn();
    let mut layers: Vec<LayerSpec> = spec.book_layers().expect("the book's layout").into_iter().cloned().collect();
    if let (false, LayerSpec::Conv(conv)) = (dropout, &mut layers[0]) {
        conv.dropout = None;
    }
    NetSpec::new(&spec.input, layers)
}

#[test]
fn whole_cnns_of_the_book() {
    let mut rng = RandomState::new(13);
    for (name, spec) in [
        ("chapter 5", chapter5_cnn(false)),
        ("chapter 5 dropout", chapter5_cnn(true)),
        ("chapter 7", book::chapter7_convnet()),
    ] {
        for batch in [1, 4] {
            // Both engines draw their dropout masks from the same stream.
            let (mut net, model) = model_pair::<f64>(&spec, LossSpec::CROSS_ENTROPY, 5);
            let x: ArrayD<f64> = rng.randn(IxDyn(&[batch, 1, 28, 28]));
            let y = targets::<f64>(LossSpec::CROSS_ENTROPY, batch, 10, &mut rng);
            compare_networks(&mut net, &model, LossSpec::CROSS_ENTROPY, &x, &y, &format!("{name} batch {batch}"));
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
    let labels = |l: &[u8], n: usize| mnist::one_hot::<f64>(&l[..n], 10).unwrap().into_dyn();
    let train = Dataset::new(images(&x_train, 1000), labels(&m.train_labels, 1000)).unwrap();
    let test = Dataset::new(images(&x_test, 200), labels(&m.test_labels, 200)).unwrap();
    let (net, model) = model_pair::<f64>(&chapter5_cnn(true), LossSpec::CROSS_ENTROPY, 7);
    let decay = Decay::Exponential { final_lr: 0.02 };
    let mut a = scratch::train::Trainer::new(net, optim::SGDMomentum::new(0.05, 0.9, decay).unwrap());
    let torch_optim = torch::optim::SGDMomentum::new(0.05, 0.9, decay).unwrap();
    let mut b = torch::train::Trainer::new(model, LossSpec::CROSS_ENTROPY, torch_optim);
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
    assert_relative_sequence("chapter-5 CNN: batch losses", &ra.batch_losses, &rb.batch_losses, 1e-8);
    let (ours, theirs) = (a.net.named_parameters(), b.net.named_arrays::<f64>());
    assert_same_parameters("chapter-5 CNN after 100 steps", &ours, &theirs, 1e-8);
}

/// The chapter-7 models the examples train ([`book`]): `BostonModel` (tanh, dropout with shared
/// masks) and the convolutional autoencoder with its transposed-convolution decoder, on real-sized
/// inputs: outputs, losses and every gradient.
#[test]
fn chapter7_models() {
    let mut rng = RandomState::new(30);
    let loss = LossSpec::MeanSquaredError(MseReduction::Mean);
    let (mut net, model) = model_pair::<f64>(&book::boston_model(), loss, 1);
    let x: ArrayD<f64> = rng.randn(IxDyn(&[32, 13]));
    let y: ArrayD<f64> = rng.randn(IxDyn(&[32, 1]));
    compare_networks(&mut net, &model, loss, &x, &y, "BostonModel");

    let (mut net, model) = model_pair::<f64>(&book::autoencoder(), loss, 2);
    let x: ArrayD<f64> = rng.uniform_array::<f64, _>(IxDyn(&[2, 1, 28, 28])).mapv(|u| 2.0 * u - 1.0);
    compare_networks(&mut net, &model, loss, &x, &x.clone(), "Autoencoder");
}
