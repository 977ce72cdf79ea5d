//! Whole training runs in both engines from the same initial weights and the same batch order: 200
//! optimizer steps (momentum, AdaGrad, learning-rate decay) on real MNIST and Boston mini-batches leave
//! the parameters within 1e-8 of each other (relative to each tensor's magnitude), in f64.

use ndarray::{s, Array2};
use parity_tests::{data_dir_or_skip, dense_pair, max_relative_difference, DenseSpec, LossKind};
use scratch::data::{boston, mnist};
use scratch::layers::WeightInit;
use scratch::network::InitSeeding;
use scratch::ops::Activation;
use scratch::optim::{self, Decay};
use scratch::train::{Dataset, FitOptions, FitReport};
use torch::optim as topt;

const RELATIVE: f64 = 1e-8;

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
    }
}

fn compare_reports(label: &str, a: &FitReport, b: &FitReport) {
    assert_eq!(a.batch_losses.len(), b.batch_losses.len(), "{label}: steps");
    for (i, (x, y)) in a.batch_losses.iter().zip(&b.batch_losses).enumerate() {
        assert!((x - y).abs() <= RELATIVE * y.abs(), "{label}: batch {} loss scratch {x} torch {y}", i + 1);
    }
    for (x, y) in a.evaluations.iter().zip(&b.evaluations) {
        assert_eq!(x.epoch, y.epoch);
        assert!((x.loss - y.loss).abs() <= RELATIVE * y.loss.abs(), "{label}: eval {x:?} vs {y:?}");
    }
}

fn mnist_subset(rows: usize, test_rows: usize) -> Option<(Dataset<f64>, Dataset<f64>, mnist::Mnist)> {
    let dir = data_dir_or_skip("mnist/train-images-idx3-ubyte")?;
    let m = mnist::load(dir.join("mnist")).unwrap();
    let (x_train, x_test) = m.book_scaled::<f64>();
    let y_train: Array2<f64> = mnist::one_hot(&m.train_labels, 10);
    let y_test: Array2<f64> = mnist::one_hot(&m.test_labels, 10);
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
    let layers = [DenseSpec::new(89, Activation::Sigmoid), DenseSpec::new(10, Activation::Linear)];
    let (net, model) = dense_pair::<f64>(784, &layers, WeightInit::Glorot, LossKind::SoftmaxCrossEntropy, 1);
    let decay = Decay::Exponential { final_lr: 0.05 };
    let mut a = scratch::train::Trainer::new(net, optim::SGDMomentum::new(0.2, 0.9, decay).unwrap());
    let mut b = torch::train::Trainer::new(model, topt::SGDMomentum::new(0.2, 0.9, decay).unwrap());
    let opts = options(5, 60); // 40 batches a epoch
    let ra = a.fit(&train, &test, &opts, &mut ()).unwrap();
    let rb = b.fit(&train, &test, &opts, &mut ()).unwrap();
    assert_eq!(ra.batch_losses.len(), 200);
    compare_reports("MNIST momentum", &ra, &rb);
    let (diff, name) = max_relative_difference(&a.net.named_parameters(), &b.model.named_arrays::<f64>());
    eprintln!("MNIST momentum: largest relative difference {diff:e} ({name})");
    assert!(diff <= RELATIVE, "MNIST momentum: {name} differs by {diff:e} relative after 200 steps");
}

#[test]
fn mnist_deep_tanh_relu_with_linear_decay_200_steps() {
    let Some((train, test, _)) = mnist_subset(1200, 500) else { return };
    let layers = [
        DenseSpec::new(178, Activation::Tanh),
        DenseSpec::new(46, Activation::ReLU),
        DenseSpec::new(10, Activation::Linear),
    ];
    let (net, model) = dense_pair::<f64>(784, &layers, WeightInit::Glorot, LossKind::SoftmaxCrossEntropy, 2);
    let decay = Decay::Linear { final_lr: 0.05 };
    let mut a = scratch::train::Trainer::new(net, optim::SGDMomentum::new(0.15, 0.9, decay).unwrap());
    let mut b = torch::train::Trainer::new(model, topt::SGDMomentum::new(0.15, 0.9, decay).unwrap());
    let opts = options(10, 60); // 20 batches a epoch
    let ra = a.fit(&train, &test, &opts, &mut ()).unwrap();
    let rb = b.fit(&train, &test, &opts, &mut ()).unwrap();
    assert_eq!(ra.batch_losses.len(), 200);
    compare_reports("MNIST deep", &ra, &rb);
    let (diff, name) = max_relative_difference(&a.net.named_parameters(), &b.model.named_arrays::<f64>());
    eprintln!("MNIST deep: largest relative difference {diff:e} ({name})");
    assert!(diff <= RELATIVE, "MNIST deep: {name} differs by {diff:e} relative after 200 steps");
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
        DenseSpec::new(13, Activation::Sigmoid),
        DenseSpec::new(13, Activation::Tanh),
        DenseSpec::new(1, Activation::Linear),
    ];
    let opts = options(17, 32); // 12 batches a epoch: 204 steps
    for which in ["sgd", "momentum", "adagrad"] {
        let (net, model) = dense_pair::<f64>(13, &layers, WeightInit::Standard, LossKind::MseRows, 3);
        let decay = Decay::Exponential { final_lr: 0.001 };
        let (ra, rb, a, b) = match which {
            "sgd" => {
                let mut a = scratch::train::Trainer::new(net, optim::SGD::with_decay(0.01, decay).unwrap());
                let mut b = torch::train::Trainer::new(model, topt::SGD::new(0.01, decay).unwrap());
                (
                    a.fit(&train, &test, &opts, &mut ()).unwrap(),
                    b.fit(&train, &test, &opts, &mut ()).unwrap(),
                    a.net.named_parameters(),
                    b.model.named_arrays::<f64>(),
                )
            }
            "momentum" => {
                let mut a = scratch::train::Trainer::new(net, optim::SGDMomentum::new(0.005, 0.9, decay).unwrap());
                let mut b = torch::train::Trainer::new(model, topt::SGDMomentum::new(0.005, 0.9, decay).unwrap());
                (
                    a.fit(&train, &test, &opts, &mut ()).unwrap(),
                    b.fit(&train, &test, &opts, &mut ()).unwrap(),
                    a.net.named_parameters(),
                    b.model.named_arrays::<f64>(),
                )
            }
            _ => {
                let mut a = scratch::train::Trainer::new(net, optim::AdaGrad::new(0.05, decay).unwrap());
                let mut b = torch::train::Trainer::new(model, topt::AdaGrad::new(0.05, decay).unwrap());
                (
                    a.fit(&train, &test, &opts, &mut ()).unwrap(),
                    b.fit(&train, &test, &opts, &mut ()).unwrap(),
                    a.net.named_parameters(),
                    b.model.named_arrays::<f64>(),
                )
            }
        };
        assert_eq!(ra.batch_losses.len(), 204);
        compare_reports(which, &ra, &rb);
        let (diff, name) = max_relative_difference(&a, &b);
        eprintln!("Boston {which}: largest relative difference {diff:e} ({name})");
        assert!(diff <= RELATIVE, "Boston {which}: {name} differs by {diff:e} relative after 204 steps");
    }
}

#[test]
fn mnist_one_epoch_accuracies_agree() {
    let Some((train, test, m)) = mnist_subset(60_000, 10_000) else { return };
    let layers = [DenseSpec::new(89, Activation::Sigmoid), DenseSpec::new(10, Activation::Linear)];
    let (net, model) = dense_pair::<f64>(784, &layers, WeightInit::Glorot, LossKind::SoftmaxCrossEntropy, 4);
    let mut a = scratch::train::Trainer::new(net, optim::SGDMomentum::new(0.1, 0.9, Decay::None).unwrap());
    let mut b = torch::train::Trainer::new(model, topt::SGDMomentum::new(0.1, 0.9, Decay::None).unwrap());
    let opts = options(1, 60);
    a.fit(&train, &test, &opts, &mut ()).unwrap();
    b.fit(&train, &test, &opts, &mut ()).unwrap();
    let scores_a = a.net.predict(&test.x).unwrap().into_dimensionality().unwrap();
    let scores_b = torch::convert::to_array::<f64>(
        &b.model.forward(&torch::convert::to_tensor(&test.x), scratch::ops::Mode::Eval).unwrap(),
    );
    let labels: Vec<usize> = m.test_labels.iter().map(|&l| usize::from(l)).collect();
    let acc_a = scratch::metrics::accuracy(&scores_a.view(), &labels) * 100.0;
    let acc_b = scratch::metrics::accuracy(&scores_b.into_dimensionality().unwrap().view(), &labels) * 100.0;
    assert!(acc_a > 90.0, "{acc_a}");
    eprintln!("MNIST one epoch: scratch {acc_a:.2} %, torch {acc_b:.2} %");
    assert!((acc_a - acc_b).abs() <= 0.05, "accuracies differ: scratch {acc_a} %, torch {acc_b} %");
}

#[test]
fn mnist_with_dropout_trains_identically_from_the_shared_mask_stream() {
    let Some((train, test, _)) = mnist_subset(1200, 500) else { return };
    let dropout = Some((0.8, scratch::ops::DropoutStyle::Inverted));
    let layers = [
        DenseSpec { neurons: 178, activation: Activation::Tanh, dropout },
        DenseSpec { neurons: 46, activation: Activation::Tanh, dropout },
        DenseSpec::new(10, Activation::Linear),
    ];
    let (net, model) = dense_pair::<f64>(784, &layers, WeightInit::Glorot, LossKind::SoftmaxCrossEntropy, 5);
    // Not the book's 0.2: at that rate the deep tanh network's training is chaotic (one weight changed
    // by 1e-15 in one engine alone moves the loss by 1e-5 within 200 steps, and by 20 % within 400),
    // which would measure the dynamics rather than the engines. At 0.05 a 1e-15 change stays 1e-15.
    let decay = Decay::Exponential { final_lr: 0.01 };
    let mut a = scratch::train::Trainer::new(net, optim::SGDMomentum::new(0.05, 0.9, decay).unwrap());
    let mut b = torch::train::Trainer::new(model, topt::SGDMomentum::new(0.05, 0.9, decay).unwrap());
    let opts = options(10, 60);
    let ra = a.fit(&train, &test, &opts, &mut ()).unwrap();
    let rb = b.fit(&train, &test, &opts, &mut ()).unwrap();
    assert_eq!(ra.batch_losses.len(), 200);
    compare_reports("MNIST dropout", &ra, &rb);
    let (diff, name) = max_relative_difference(&a.net.named_parameters(), &b.model.named_arrays::<f64>());
    eprintln!("MNIST dropout: largest relative difference {diff:e} ({name})");
    assert!(diff <= RELATIVE, "MNIST dropout: {name} differs by {diff:e} relative after 200 steps");
}
