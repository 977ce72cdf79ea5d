//! Whole training runs in both engines from the same initial weights and the same batch order: 200
//! optimizer steps (momentum, AdaGrad, learning-rate decay) on real MNIST and Boston mini-batches leave
//! the parameters within 1e-8 of each other (relative to each tensor's magnitude), in f64.

use ndarray::{s, Array2};
use parity_tests::{
    assert_relative_sequence, assert_same_parameters, data_dir_or_skip, dense_pair, record, DenseSpec, LossSpec,
};
use scratch::data::{boston, mnist};
use scratch::network::InitSeeding;
use scratch::ops::Activation;
use scratch::optim::{self, Decay};
use scratch::spec::{MseReduction, WeightInit};
use scratch::train::{Dataset, FitOptions, FitReport};
use torch::optim as topt;

const RELATIVE: f64 = 1e-8;

fn dense(neurons: usize, activation: Activation, init: WeightInit) -> DenseSpec {
    DenseSpec::new(neurons).activation(activation).init(init)
}

fn options(epochs: usize, batch_size: usize) -> FitOptions {
    FitOptions {
        epochs,
        eval_every: 1,
        batch_size,
        seed: 20_190_119,
        restart: true,
        init_seeding: InitSeeding::Stream,
        early_stopping: false,
        eval_batches: None,
        drop_last: false,
        checkpoint: None,
    }
}

fn compare_reports(label: &str, a: &FitReport, b: &FitReport) {
    assert_relative_sequence(&format!("{label}: batch losses"), &a.batch_losses, &b.batch_losses, RELATIVE);
    let epochs = |r: &FitReport| r.evaluations.iter().map(|e| e.epoch).collect::<Vec<_>>();
    assert_eq!(epochs(a), epochs(b), "{label}: evaluated epochs");
    let losses = |r: &FitReport| r.evaluations.iter().map(|e| e.loss).collect::<Vec<_>>();
    assert_relative_sequence(&format!("{label}: evaluation losses"), &losses(a), &losses(b), RELATIVE);
}

/// Trains the two engines' copies of a network with their optimizers and the same options, and checks
/// that they went the same way: every batch loss and evaluation, and the final parameters. Returns the
/// number of steps.
fn train_both<O: optim::Optimizer<f64>, P: topt::Optimizer>(
    label: &str,
    (net, model, loss): (scratch::network::NeuralNetwork<f64>, torch::Net, LossSpec),
    (ours, theirs): (O, P),
    (train, test): (&Dataset<f64>, &Dataset<f64>),
    options: &FitOptions,
) -> usize {
    let mut a = scratch::train::Trainer::new(net, ours);
    let mut b = torch::train::Trainer::new(model, loss, theirs);
    let ra = a.fit(train, test, options, &mut ()).unwrap();
    let rb = b.fit(train, test, options, &mut ()).unwrap();
    compare_reports(label, &ra, &rb);
    let steps = ra.batch_losses.len();
    let (ours, theirs) = (a.net.named_parameters(), b.net.named_arrays::<f64>());
    assert_same_parameters(&format!("{label} after {steps} steps"), &ours, &theirs, RELATIVE);
    steps
}

fn mnist_subset(rows: usize, test_rows: usize) -> Option<(Dataset<f64>, Dataset<f64>, mnist::Mnist)> {
    let dir = data_dir_or_skip("mnist/train-images-idx3-ubyte")?;
    let m = mnist::load(dir.join("mnist")).unwrap();
    let (x_train, x_test) = m.book_scaled::<f64>();
    let y_train: Array2<f64> = mnist::one_hot(&m.train_labels, 10).unwrap();
    let y_test: Array2<f64> = mnist::one_hot(&m.test_labels, 10).unwrap();
    let train = Dataset::new(
        x_train.slice(s![..rows, ..]).to_owned().into_dyn(),
        y_train.slice(s![..rows, ..]).to_owned().into_dyn(),
    )
    .unwrap();
    let test = Dataset::new(
        x_test.slice(s![..test_rows, ..]).to_owned().into_dyn(),
        y_test.slice(s![..test_rows, ..]).to_owned().into_dyn(),
    )
    .unwrap();
    Some((train, test, m))
}

#[test]
fn mnist_momentum_with_exponential_decay_200_steps() {
    let Some((train, test, _)) = mnist_subset(2400, 1000) else { return };
    let layers =
        [dense(89, Activation::Sigmoid, WeightInit::Glorot), dense(10, Activation::Linear, WeightInit::Glorot)];
    let loss = LossSpec::CROSS_ENTROPY;
    let (net, model) = dense_pair::<f64>(784, &layers, loss, 1);
    let pair = (net, model, loss);
    let decay = Decay::Exponential { final_lr: 0.05 };
    let optimizers =
        (optim::SGDMomentum::new(0.2, 0.9, decay).unwrap(), topt::SGDMomentum::new(0.2, 0.9, decay).unwrap());
    // 40 batches an epoch
    assert_eq!(train_both("MNIST momentum", pair, optimizers, (&train, &test), &options(5, 60)), 200);
}

#[test]
fn mnist_deep_tanh_relu_with_linear_decay_200_steps() {
    let Some((train, test, _)) = mnist_subset(1200, 500) else { return };
    let layers = [
        dense(178, Activation::Tanh, WeightInit::Glorot),
        dense(46, Activation::ReLU, WeightInit::Glorot),
        dense(10, Activation::Linear, WeightInit::Glorot),
    ];
    let loss = LossSpec::CROSS_ENTROPY;
    let (net, model) = dense_pair::<f64>(784, &layers, loss, 2);
    let pair = (net, model, loss);
    let decay = Decay::Linear { final_lr: 0.05 };
    let optimizers =
        (optim::SGDMomentum::new(0.15, 0.9, decay).unwrap(), topt::SGDMomentum::new(0.15, 0.9, decay).unwrap());
    // 20 batches an epoch
    assert_eq!(train_both("MNIST deep", pair, optimizers, (&train, &test), &options(10, 60)), 200);
}

fn boston_data() -> Option<(Dataset<f64>, Dataset<f64>)> {
    let dir = data_dir_or_skip("boston/boston_house_prices.csv")?;
    let split = boston::load_book_split(&dir).unwrap();
    Some((
        Dataset::new(split.x_train.into_dyn(), split.y_train.into_dyn()).unwrap(),
        Dataset::new(split.x_test.into_dyn(), split.y_test.into_dyn()).unwrap(),
    ))
}

#[test]
fn boston_sgd_momentum_and_adagrad_200_steps() {
    let Some((train, test)) = boston_data() else { return };
    let layers = [
        dense(13, Activation::Sigmoid, WeightInit::Standard),
        dense(13, Activation::Tanh, WeightInit::Standard),
        dense(1, Activation::Linear, WeightInit::Standard),
    ];
    let opts = options(17, 32); // 12 batches an epoch: 204 steps
    let data = (&train, &test);
    let pair = || {
        let (net, model) = dense_pair::<f64>(13, &layers, LossSpec::MSE, 3);
        (net, model, LossSpec::MSE)
    };
    let decay = Decay::Exponential { final_lr: 0.001 };
    let sgd = (optim::SGD::with_decay(0.01, decay).unwrap(), topt::SGD::new(0.01, decay).unwrap());
    assert_eq!(train_both("Boston SGD", pair(), sgd, data, &opts), 204);
    let momentum =
        (optim::SGDMomentum::new(0.005, 0.9, decay).unwrap(), topt::SGDMomentum::new(0.005, 0.9, decay).unwrap());
    assert_eq!(train_both("Boston momentum", pair(), momentum, data, &opts), 204);
    let adagrad = (optim::AdaGrad::new(0.05, decay).unwrap(), topt::AdaGrad::new(0.05, decay).unwrap());
    assert_eq!(train_both("Boston AdaGrad", pair(), adagrad, data, &opts), 204);
}

#[test]
fn mnist_one_epoch_accuracies_agree() {
    let Some((train, test, m)) = mnist_subset(60_000, 10_000) else { return };
    let layers =
        [dense(89, Activation::Sigmoid, WeightInit::Glorot), dense(10, Activation::Linear, WeightInit::Glorot)];
    let (net, model) = dense_pair::<f64>(784, &layers, LossSpec::CROSS_ENTROPY, 4);
    let mut a = scratch::train::Trainer::new(net, optim::SGDMomentum::new(0.1, 0.9, Decay::None).unwrap());
    let torch_optim = topt::SGDMomentum::new(0.1, 0.9, Decay::None).unwrap();
    let mut b = torch::train::Trainer::new(model, LossSpec::CROSS_ENTROPY, torch_optim);
    let opts = options(1, 60);
    a.fit(&train, &test, &opts, &mut ()).unwrap();
    b.fit(&train, &test, &opts, &mut ()).unwrap();
    let scores_a = a.net.predict(&test.x).unwrap();
    let scores_b = torch::convert::to_array::<f64>(
        &b.net.f_forward_t(&b.net.input(&torch::convert::to_tensor(&test.x)), false).unwrap(),
    );
    let acc_a = scratch::metrics::accuracy(&scores_a, &m.test_labels).unwrap() * 100.0;
    let acc_b = scratch::metrics::accuracy(&scores_b, &m.test_labels).unwrap() * 100.0;
    assert!(acc_a > 90.0, "{acc_a}");
    eprintln!("MNIST one epoch: scratch {acc_a:.2} %, torch {acc_b:.2} %");
    let diff = (acc_a - acc_b).abs();
    record("test accuracy, in points of the 0.05 allowed", diff / 0.05, diff);
    assert!(diff <= 0.05, "accuracies differ: scratch {acc_a} %, torch {acc_b} %");
}

#[test]
fn mnist_with_dropout_trains_identically_from_the_shared_mask_stream() {
    let Some((train, test, _)) = mnist_subset(1200, 500) else { return };
    let layers = [
        dense(178, Activation::Tanh, WeightInit::Glorot).dropout(0.8),
        dense(46, Activation::Tanh, WeightInit::Glorot).dropout(0.8),
        dense(10, Activation::Linear, WeightInit::Glorot),
    ];
    let loss = LossSpec::CROSS_ENTROPY;
    let (net, model) = dense_pair::<f64>(784, &layers, loss, 5);
    let pair = (net, model, loss);
    // Not the book's 0.2: at that rate the deep tanh network's training is chaotic (one weight changed
    // by 1e-15 in one engine alone moves the loss by 1e-5 within 200 steps, and by 20 % within 400: see
    // `dlfs run divergence`), which would measure the dynamics rather than the engines.
    let decay = Decay::Exponential { final_lr: 0.01 };
    let optimizers =
        (optim::SGDMomentum::new(0.05, 0.9, decay).unwrap(), topt::SGDMomentum::new(0.05, 0.9, decay).unwrap());
    assert_eq!(train_both("MNIST dropout", pair, optimizers, (&train, &test), &options(10, 60)), 200);
}

/// Hand-written loops over a shuffling data loader that drops the last partial batch: the two
/// engines, fed from identical loaders and trained with Adam, see the same batches and stay together
/// for 5 epochs. Then `fit_loader` in both, with evaluations, for 5 more.
#[test]
fn boston_adam_over_a_data_loader() {
    let Some((train, test)) = boston_data() else { return };
    let layers = [dense(13, Activation::Tanh, WeightInit::PyTorch), dense(1, Activation::Linear, WeightInit::PyTorch)];
    let loss = LossSpec::MeanSquaredError(MseReduction::Mean);
    let (net, model) = dense_pair::<f64>(13, &layers, loss, 5);
    let mut ours = scratch::train::Trainer::new(net, optim::Adam::new(0.01, Decay::None).unwrap());
    let mut theirs = torch::train::Trainer::new(model, loss, topt::Adam::new(0.01, Decay::None).unwrap());
    let mut a = scratch::data::DataLoader::new(&train, 32).unwrap().shuffle(11).drop_last(true);
    let mut b = scratch::data::DataLoader::new(&train, 32).unwrap().shuffle(11).drop_last(true);
    for epoch in 1..=5 {
        let (la, lb) = (ours.train_epoch(&mut a, epoch).unwrap(), theirs.train_epoch(&mut b, epoch).unwrap());
        assert_eq!(la.len(), train.len() / 32);
        assert_relative_sequence(&format!("train_epoch {epoch}: batch losses"), &la, &lb, RELATIVE);
    }
    let params = |ours: &scratch::network::NeuralNetwork<f64>, theirs: &torch::Net| {
        (ours.named_parameters(), theirs.named_arrays::<f64>())
    };
    let (x, y) = params(&ours.net, &theirs.net);
    assert_same_parameters("train_epoch", &x, &y, RELATIVE);

    let options = FitOptions { restart: false, ..options(5, 1) };
    let ra = ours.fit_loader(&mut a, &test, &options, &mut ()).unwrap();
    let rb = theirs.fit_loader(&mut b, &test, &options, &mut ()).unwrap();
    assert_eq!((ra.batch_losses.len(), ra.evaluations.len()), (5 * (train.len() / 32), 5));
    compare_reports("fit_loader", &ra, &rb);
    let (x, y) = params(&ours.net, &theirs.net);
    assert_same_parameters("fit_loader", &x, &y, RELATIVE);
}
