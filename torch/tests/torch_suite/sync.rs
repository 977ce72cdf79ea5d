//! The training step's budget of host synchronisations, counted by [`torch::sync`]: one read from the
//! device per step (the loss, the finiteness of every gradient and the validity of class-index targets
//! together), one per evaluation, and no upload of host data within an epoch but the epoch's batch
//! order: with dropout, with norm and value clipping, for dense, convolutional and recurrent networks,
//! through `fit`, `train_batch`, `train_epoch` and the language models' clipped optimizers.
//!
//! The torch engine computes on `DLFS_TEST_DEVICE` (`cpu`, the default, or `cuda`): the counts are the
//! same on both, and on a GPU the run also shows that training works there.

use ndarray::{Array, ArrayD, IxDyn};
use scratch::ops::Activation;
use scratch::optim::{Clip, Decay};
use scratch::rng::RandomState;
use scratch::spec::{book, CellKind, DenseSpec, LayerSpec, LossSpec, NetSpec, StateMode, WeightInit};
use scratch::train::{Dataset, FitOptions};
use tch::Tensor;
use torch::convert::to_tensor;
use torch::optim::{AdaGrad, Clipped, Optimizer, SGDMomentum, SGD};
use torch::sync::{host_reads, uploads};
use torch::train::Trainer;
use torch::{Net, Options};

/// The device of `DLFS_TEST_DEVICE` (default: the CPU).
fn device() -> tch::Device {
    let name = std::env::var("DLFS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device: torch::Device = name.parse().unwrap_or_else(|e| panic!("DLFS_TEST_DEVICE: {e}"));
    device.resolve().unwrap_or_else(|e| panic!("DLFS_TEST_DEVICE={name}: {e}"))
}

/// The reads and uploads `f` makes, and what it returns.
fn counted<T>(f: impl FnOnce() -> T) -> (usize, usize, T) {
    let (reads, ups) = (host_reads(), uploads());
    let out = f();
    (host_reads() - reads, uploads() - ups, out)
}

/// A trainer of `spec` in f32 on the test device, dropout masks as `options` says.
fn trainer<O: Optimizer>(spec: &NetSpec, options: Options, loss: LossSpec, optim: O) -> Trainer<O> {
    let vs = torch::var_store::<f32>(device());
    let net = Net::with_options(vs.root(), spec, options, &mut RandomState::new(1)).unwrap();
    Trainer::new(net, loss, optim)
}

/// A dense classifier on 10 inputs with dropout after both hidden layers.
fn dense_with_dropout() -> NetSpec {
    let glorot = |n| DenseSpec::new(n).init(WeightInit::Glorot);
    NetSpec::new(
        &[10],
        vec![
            LayerSpec::Dense(glorot(16).activation(Activation::Tanh).dropout(0.8)),
            LayerSpec::Dense(glorot(8).activation(Activation::ReLU).dropout(0.5)),
            LayerSpec::Dense(glorot(3)),
        ],
    )
}

/// `rows` random inputs of `shape` and their classes (`0..classes`, as whole-number floats).
fn classes(rows: usize, shape: &[usize], classes: usize, seed: u32) -> Dataset<f32> {
    let mut rng = RandomState::new(seed);
    let x: ArrayD<f32> = rng.randn(IxDyn(&[&[rows][..], shape].concat()));
    let y = Array::from_shape_fn(IxDyn(&[rows]), |_| rng.randint(0, classes as i64).unwrap() as f32);
    Dataset::new(x, y).unwrap()
}

fn options(epochs: usize, batch_size: usize, eval_batches: Option<usize>) -> FitOptions {
    FitOptions { epochs, eval_every: 1, batch_size, early_stopping: false, eval_batches, ..Default::default() }
}

/// `fit` with dropout (libtorch's masks) and norm clipping, class-index targets, evaluations at the end
/// of every epoch and every other batch: a read per step and per evaluation; the two data sets (four
/// uploads) once, and one upload per epoch.
#[test]
fn fit_reads_once_per_step_and_once_per_evaluation() {
    let (train, test) = (classes(64, &[10], 3, 2), classes(20, &[10], 3, 3));
    let optim = Clipped::new(SGDMomentum::new(0.05, 0.9, Decay::None).unwrap(), Clip::Norm(1.0));
    let mut t = trainer(&dense_with_dropout(), Options::default(), LossSpec::CROSS_ENTROPY, optim);
    let (epochs, batches) = (3, 4);
    let (reads, ups, report) = counted(|| t.fit(&train, &test, &options(epochs, 16, Some(2)), &mut ()).unwrap());
    let evaluations = epochs + epochs * batches / 2;
    assert_eq!((report.batch_losses.len(), report.evaluations.len()), (epochs * batches, evaluations));
    assert_eq!(reads, epochs * batches + evaluations, "reads: one per step and one per evaluation");
    assert_eq!(ups, 4 + epochs, "uploads: the data sets, then one batch order per epoch");
    assert!(report.batch_losses.iter().all(|l| l.is_finite()));
}

/// The book's chapter-7 convolutional network (dropout after every layer but the last), as `dlfs run
/// ch7-convnet` trains it: one read per step and per evaluation.
#[test]
fn the_chapter7_convnet_reads_once_per_step() {
    let (train, test) = (classes(24, &[1, 28, 28], 10, 4), classes(8, &[1, 28, 28], 10, 5));
    let optim = SGDMomentum::new(0.1, 0.9, Decay::Exponential { final_lr: 0.01 }).unwrap();
    let mut t = trainer(&book::chapter7_convnet(), Options::default(), LossSpec::CROSS_ENTROPY, optim);
    let (reads, ups, report) = counted(|| t.fit(&train, &test, &options(2, 8, None), &mut ()).unwrap());
    assert_eq!((report.batch_losses.len(), report.evaluations.len()), (6, 2));
    assert_eq!((reads, ups), (6 + 2, 4 + 2));
}

/// Dropout masks from the shared stream (parity runs) are drawn on the host: one upload per dropout
/// layer and training forward pass, and still one read per step.
#[test]
fn shared_dropout_masks_upload_once_per_layer_and_step() {
    let (train, test) = (classes(32, &[10], 3, 6), classes(8, &[10], 3, 7));
    let options_parity = Options::parity(torch::layers::Kernel::Fused);
    let mut t =
        trainer(&dense_with_dropout(), options_parity, LossSpec::CROSS_ENTROPY, SGD::new(0.1, Decay::None).unwrap());
    let (reads, ups, _) = counted(|| t.fit(&train, &test, &options(2, 8, None), &mut ()).unwrap());
    let steps = 2 * 4;
    assert_eq!(reads, steps + 2);
    assert_eq!(ups, 4 + 2 + 2 * steps, "the data, the orders, and two dropout masks a step");
}

/// `train_batch` on a caller's batches: one read per step with one-hot and with class-index targets
/// (whose check joins the step's read), and an invalid index is refused in that same read, before any
/// update.
#[test]
fn train_batch_reads_once_with_one_hot_or_class_index_targets() {
    let data = classes(16, &[10], 3, 8);
    let mut t = trainer(
        &dense_with_dropout(),
        Options::default(),
        LossSpec::CROSS_ENTROPY,
        SGD::new(0.1, Decay::None).unwrap(),
    );
    let (x, indices) = (to_tensor(&data.x).to_device(device()), to_tensor(&data.y).to_device(device()));
    let one_hot = indices.to_kind(tch::Kind::Int64).one_hot(3).to_kind(tch::Kind::Float);
    for (what, y) in [("one-hot", &one_hot), ("class indices", &indices)] {
        let (reads, ups, losses) =
            counted(|| (1..=5).map(|b| t.train_batch(&x, y, (1, b)).unwrap()).collect::<Vec<_>>());
        assert_eq!((reads, ups), (5, 0), "{what}");
        assert!(losses.iter().all(|l| l.is_finite()), "{what}: {losses:?}");
    }

    let before = t.net.snapshot();
    let bad = Tensor::from_slice(&[0.0f32, 1.0, 3.0, 2.0]).to_device(device());
    let (reads, _, result) = counted(|| t.train_batch(&x.narrow(0, 0, 4), &bad, (2, 1)));
    let message = result.unwrap_err().to_string();
    assert!(message.contains("not a whole number in 0..3"), "{message}");
    assert_eq!(reads, 1);
    for (a, b) in t.net.snapshot().iter().zip(&before) {
        assert!(a.equal(b), "a refused batch changes no parameter");
    }
}

/// `train_epoch` over a shuffling data loader: one read per batch.
#[test]
fn train_epoch_reads_once_per_batch() {
    let data = classes(40, &[10], 3, 9);
    let mut loader = scratch::data::DataLoader::new(&data, 8).unwrap().shuffle(3);
    let optim = Clipped::new(AdaGrad::new(0.05, Decay::None).unwrap(), Clip::Value(2.0));
    let mut t = trainer(&dense_with_dropout(), Options::default(), LossSpec::CROSS_ENTROPY, optim);
    let (reads, _, losses) = counted(|| t.train_epoch(&mut loader, 1).unwrap());
    assert_eq!((losses.len(), reads), (5, 5));
}

/// The character language model as `dlfs run ch6-lstm` trains it: an LSTM and its projection, the
/// state carried between batches, AdaGrad with norm clipping (and value clipping), one-hot sequence
/// targets: one read per step.
#[test]
fn language_model_steps_with_clipping_read_once() {
    let (vocab, batch, steps) = (11, 4, 6);
    let spec = book::language_model(CellKind::Lstm, vocab, 16, 2, StateMode::CarryMean, steps);
    let mut rng = RandomState::new(10);
    let labels: Vec<usize> = (0..batch * (steps + 1)).map(|_| rng.randint(0, vocab as i64).unwrap() as usize).collect();
    let x = scratch::rnn::one_hot::<f32>(&labels[..batch * steps], batch, vocab).unwrap().into_dyn();
    let y = scratch::rnn::one_hot::<f32>(&labels[batch..], batch, vocab).unwrap().into_dyn();
    let (x, y) = (to_tensor(&x).to_device(device()), to_tensor(&y).to_device(device()));
    for clip in [Clip::Norm(5.0), Clip::Value(0.1)] {
        let optim = Clipped::new(AdaGrad::new(0.05, Decay::None).unwrap(), clip);
        let mut t = trainer(&spec, Options::default(), LossSpec::CROSS_ENTROPY, optim);
        let (reads, ups, losses) =
            counted(|| (1..=4).map(|i| t.train_batch(&x, &y, (1, i)).unwrap()).collect::<Vec<_>>());
        assert_eq!((reads, ups), (4, 0), "{clip:?}");
        assert!(losses[3] < losses[0], "{clip:?}: the model learns on one batch: {losses:?}");
    }
}

/// The loss function alone: checking class indices is one read, one-hot targets none.
#[test]
fn cross_entropy_reads_only_to_check_class_indices() {
    let logits = Tensor::randn([5, 4], (tch::Kind::Float, device()));
    let indices = Tensor::from_slice(&[0i64, 3, 1, 1, 2]).to_device(device());
    let one_hot = indices.one_hot(4);
    let loss = LossSpec::CROSS_ENTROPY;
    let (reads, _, a) = counted(|| torch::loss::loss(loss, &logits, &indices).unwrap());
    assert_eq!(reads, 1);
    let (reads, _, b) = counted(|| torch::loss::loss(loss, &logits, &one_hot).unwrap());
    assert_eq!(reads, 0);
    assert!(a.allclose(&b, 0.0, 0.0, false), "the same loss from indices and from one-hot rows");
    for bad in [[0.0f32, 4.0, 1.0, 1.0, 2.0], [0.0, -1.0, 1.0, 1.0, 2.0], [0.0, 1.5, 1.0, 1.0, 2.0]] {
        let bad = Tensor::from_slice(&bad).to_device(device());
        let message = torch::loss::loss(loss, &logits, &bad).unwrap_err().to_string();
        assert!(message.contains("not a whole number in 0..4"), "{bad}: {message}");
    }
}
