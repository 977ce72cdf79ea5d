//! The book's MNIST experiments — chapter 4's dense networks, chapter 5's CNN, chapter 7's ConvNet —
//! trained side by side in both engines from the same initial weights and the same batch order (and, with
//! dropout, the same masks).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use ndarray::Array2;
use scratch::data::mnist::{self, Mnist};
use scratch::network::{InitSeeding, NeuralNetwork};
use scratch::ops::Activation;
use scratch::optim::Decay;
use scratch::rng::RandomState;
use scratch::spec::{book, LossSpec, NetSpec, WeightInit};
use scratch::train::{Dataset, FitOptions, FitReport, EVAL_CHUNK};
use torch::convert::{to_array, to_tensor, TorchFloat};
use torch::layers::Masks;

use crate::progress::ProgressObserver;
use crate::table::Table;

/// Which engines to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engines {
    /// The from-scratch engine only.
    Scratch,
    /// The libtorch engine only.
    Torch,
    /// Both, side by side.
    Both,
}

impl Engines {
    /// The engine names this selects.
    pub fn names(self) -> Vec<&'static str> {
        match self {
            Engines::Scratch => vec!["scratch"],
            Engines::Torch => vec!["torch"],
            Engines::Both => vec!["scratch", "torch"],
        }
    }
}

/// The loss of an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossChoice {
    /// The book's MSE (`Σ (p − y)² / N`) on sigmoid outputs.
    Mse,
    /// Softmax cross-entropy.
    SoftmaxCrossEntropy,
}

impl LossChoice {
    /// The loss, for either engine.
    pub fn spec(self) -> LossSpec {
        match self {
            LossChoice::Mse => LossSpec::MSE,
            LossChoice::SoftmaxCrossEntropy => LossSpec::CROSS_ENTROPY,
        }
    }
}

/// The optimizer of an experiment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimChoice {
    /// Plain SGD.
    Sgd {
        /// Learning rate.
        lr: f64,
    },
    /// The book's momentum SGD with a decay schedule.
    Momentum {
        /// Initial learning rate.
        lr: f64,
        /// Decay to the final rate.
        decay: Decay,
    },
}

/// One of the book's MNIST experiments.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Name on the command line.
    pub name: &'static str,
    /// The book's chapter.
    pub chapter: u8,
    /// What it shows.
    pub description: &'static str,
    /// The network.
    pub network: fn() -> NetSpec,
    /// The loss.
    pub loss: LossChoice,
    /// The optimizer.
    pub optim: OptimChoice,
    /// Epochs (the book's).
    pub epochs: usize,
    /// Evaluate every this many epochs.
    pub eval_every: usize,
    /// Also evaluate every this many batches (the book's chapter-5 `conv_testing`).
    pub eval_batches: Option<usize>,
    /// Stop at the first evaluation that does not improve (the book's runs), or train the whole
    /// schedule and report the final model (ours).
    pub early_stopping: bool,
    /// The book's test accuracy in percent, and which of its runs it comes from (BOOK.md §2).
    pub book: Option<(f64, &'static str)>,
}

fn mlp(hidden: &[(usize, Activation)], output: Activation, init: WeightInit, dropout: Option<f64>) -> NetSpec {
    book::chapter4_mlp(hidden, output, init, dropout)
}

const SIGMOID_89: &[(usize, Activation)] = &[(89, Activation::Sigmoid)];
const TANH_89: &[(usize, Activation)] = &[(89, Activation::Tanh)];
const TANH_178_46: &[(usize, Activation)] = &[(178, Activation::Tanh), (46, Activation::Tanh)];

const EXP_DECAY: Decay = Decay::Exponential { final_lr: 0.05 };

/// A chapter-4 experiment with the book's defaults (softmax cross-entropy, early stopping).
const fn ch4(
    name: &'static str,
    description: &'static str,
    network: fn() -> NetSpec,
    optim: OptimChoice,
    epochs: usize,
    eval_every: usize,
    book: (f64, &'static str),
) -> Experiment {
    Experiment {
        name,
        chapter: 4,
        description,
        network,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim,
        epochs,
        eval_every,
        eval_batches: None,
        early_stopping: true,
        book: Some(book),
    }
}

/// Every experiment: chapter 4's with the book's settings, in the book's order, then the two networks
/// behind the book's best results with our learning-rate schedules, then the CNNs of chapters 5 and 7.
pub const EXPERIMENTS: [Experiment; 13] = [
    Experiment {
        loss: LossChoice::Mse,
        ..ch4(
            "ch4-mse",
            "sigmoid output trained with MSE",
            || mlp(SIGMOID_89, Activation::Sigmoid, WeightInit::Standard, None),
            OptimChoice::Sgd { lr: 0.1 },
            50,
            5,
            (57.16, "4a-1"),
        )
    },
    ch4(
        "ch4-softmax",
        "softmax cross-entropy",
        || mlp(SIGMOID_89, Activation::Linear, WeightInit::Standard, None),
        OptimChoice::Sgd { lr: 0.1 },
        50,
        5,
        (92.61, "4a-3"),
    ),
    ch4(
        "ch4-momentum",
        "momentum",
        || mlp(SIGMOID_89, Activation::Linear, WeightInit::Standard, None),
        OptimChoice::Momentum { lr: 0.1, decay: Decay::None },
        50,
        5,
        (94.10, "4a-4"),
    ),
    ch4(
        "ch4-linear-decay",
        "momentum, linear decay 0.15 -> 0.05",
        || mlp(SIGMOID_89, Activation::Linear, WeightInit::Standard, None),
        OptimChoice::Momentum { lr: 0.15, decay: Decay::Linear { final_lr: 0.05 } },
        25,
        5,
        (94.76, "4a-5"),
    ),
    ch4(
        "ch4-exp-decay",
        "momentum, exponential decay 0.2 -> 0.05",
        || mlp(SIGMOID_89, Activation::Linear, WeightInit::Standard, None),
        OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        25,
        5,
        (94.81, "4a-6"),
    ),
    ch4(
        "ch4-glorot",
        "Glorot initialisation (784-89-10)",
        || mlp(SIGMOID_89, Activation::Linear, WeightInit::Glorot, None),
        OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        25,
        5,
        (97.46, "4a-7"),
    ),
    ch4(
        "ch4-dropout",
        "tanh, Glorot, dropout 0.8 (784-89-10)",
        || mlp(TANH_89, Activation::Linear, WeightInit::Glorot, Some(0.8)),
        OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        50,
        10,
        (96.77, "4b-l"),
    ),
    ch4(
        "ch4-deep",
        "deep 784-178-46-10, tanh, Glorot, no dropout",
        || mlp(TANH_178_46, Activation::Linear, WeightInit::Glorot, None),
        OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        100,
        10,
        (96.08, "4b-n"),
    ),
    ch4(
        "ch4-deep-dropout",
        "deep 784-178-46-10, tanh, Glorot, dropout 0.8",
        || mlp(TANH_178_46, Activation::Linear, WeightInit::Glorot, Some(0.8)),
        OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        100,
        10,
        (97.34, "4b-m"),
    ),
    Experiment {
        early_stopping: false,
        ..ch4(
            "ch4-best-89",
            "ch4-glorot with momentum 0.1 -> 0.01 and the full schedule",
            || mlp(SIGMOID_89, Activation::Linear, WeightInit::Glorot, None),
            OptimChoice::Momentum { lr: 0.1, decay: Decay::Exponential { final_lr: 0.01 } },
            25,
            5,
            (97.46, "4a-7"),
        )
    },
    Experiment {
        early_stopping: false,
        ..ch4(
            "ch4-best-deep",
            "ch4-deep-dropout with momentum 0.03 -> 0.003, 50 epochs, full schedule",
            || mlp(TANH_178_46, Activation::Linear, WeightInit::Glorot, Some(0.8)),
            OptimChoice::Momentum { lr: 0.03, decay: Decay::Exponential { final_lr: 0.003 } },
            50,
            10,
            (97.34, "4b-m"),
        )
    },
    Experiment {
        name: "ch5-cnn",
        chapter: 5,
        description: "Conv2D(16, 5x5, tanh, dropout 0.8), Dense(10), momentum 0.1, one epoch",
        network: book::chapter5_cnn,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.1, decay: Decay::None },
        epochs: 1,
        eval_every: 1,
        eval_batches: Some(100),
        early_stopping: false,
        book: Some((90.31, "5-demo")),
    },
    Experiment {
        name: "ch7-convnet",
        chapter: 7,
        description: "MNIST_ConvNet: two convolutions and a dense layer, dropout 0.8, momentum 0.01",
        network: book::chapter7_convnet,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.01, decay: Decay::None },
        epochs: 1,
        eval_every: 1,
        eval_batches: Some(250),
        early_stopping: false,
        book: Some((96.98, "7")),
    },
];

/// The experiment named `name`.
///
/// # Errors
/// If there is none.
pub fn experiment(name: &str) -> Result<&'static Experiment> {
    match EXPERIMENTS.iter().find(|e| e.name == name) {
        Some(e) => Ok(e),
        None => bail!("unknown experiment {name:?}; `dlfs list` shows them"),
    }
}

/// How to run an experiment.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Which engines.
    pub engines: Engines,
    /// Epochs instead of the book's.
    pub epochs: Option<usize>,
    /// The seed of the weights and the batch order (the book's chapter-4 seed by default).
    pub seed: u32,
    /// No progress output.
    pub quiet: bool,
    /// Where the torch engine computes.
    pub device: torch::Device,
    /// A checkpoint (of either engine) to start from instead of fresh weights.
    pub resume: Option<PathBuf>,
    /// Where each engine's final model (`<experiment>-<engine>.safetensors`) and its best evaluated
    /// model (`<experiment>-<engine>-best.safetensors`, rewritten at every improvement) are saved.
    pub checkpoints: Option<PathBuf>,
}

impl RunOptions {
    /// The checkpoint file of `engine`'s final model of experiment `e`, its folder created.
    ///
    /// # Errors
    /// If the folder cannot be created.
    pub fn checkpoint_path(&self, e: &Experiment, engine: &str) -> Result<Option<PathBuf>> {
        crate::checkpoint_path(self.checkpoints.as_deref(), e.name, engine)
    }
}

/// What one engine reached.
#[derive(Clone, Debug)]
pub struct EngineResult {
    /// `scratch` or `torch`.
    pub engine: &'static str,
    /// The fit's report (evaluations, batch losses, times).
    pub report: FitReport,
    /// Test accuracy of the final (with early stopping: the best evaluated) model, in percent.
    pub accuracy: f64,
}

/// The data the experiments use: the book's global scaling, one-hot targets.
pub struct MnistData<F> {
    /// Training images `(60000, 784)` and one-hot labels.
    pub train: Dataset<F>,
    /// Test images `(10000, 784)` and one-hot labels.
    pub test: Dataset<F>,
    /// Test labels.
    pub labels: Vec<usize>,
}

/// Loads MNIST (or Fashion-MNIST) from `dir` with the book's scaling.
///
/// # Errors
/// Missing or malformed files.
pub fn load<F: TorchFloat>(dir: &Path) -> Result<MnistData<F>> {
    let m: Mnist = mnist::load(dir)?;
    let (x_train, x_test) = m.book_scaled::<F>();
    let y_train: Array2<F> = mnist::one_hot(&m.train_labels, 10)?;
    let y_test: Array2<F> = mnist::one_hot(&m.test_labels, 10)?;
    Ok(MnistData {
        train: Dataset::new(x_train.into_dyn(), y_train.into_dyn())?,
        test: Dataset::new(x_test.into_dyn(), y_test.into_dyn())?,
        labels: m.test_labels.iter().map(|&l| usize::from(l)).collect(),
    })
}

/// `data` with every image shaped as the network's input: `(n, 784)` or `(n, 1, 28, 28)`.
fn shaped<F: TorchFloat>(data: &Dataset<F>, input: &[usize]) -> Result<Dataset<F>> {
    let mut shape = vec![data.len()];
    shape.extend(input);
    let x = data.x.to_shape(ndarray::IxDyn(&shape))?.into_owned();
    Ok(Dataset::new(x, data.y.clone())?)
}

fn fit_options(e: &Experiment, opts: &RunOptions) -> FitOptions {
    let epochs = opts.epochs.unwrap_or(e.epochs);
    FitOptions {
        epochs,
        eval_every: e.eval_every.min(epochs),
        batch_size: 60,
        seed: opts.seed,
        // Resuming keeps the loaded weights.
        restart: opts.resume.is_none(),
        init_seeding: InitSeeding::Stream,
        early_stopping: e.early_stopping,
        eval_batches: e.eval_batches,
        drop_last: false,
        checkpoint: None,
    }
}

fn accuracy_of(scores: ndarray::ArrayD<impl TorchFloat>, labels: &[usize]) -> Result<f64> {
    let scores = scores.into_dimensionality::<ndarray::Ix2>()?;
    Ok(scratch::metrics::accuracy(&scores.view(), labels) * 100.0)
}

/// The final model's test accuracy in percent, evaluated in slices.
fn test_accuracy<F: TorchFloat>(
    test: &Dataset<F>,
    labels: &[usize],
    mut predict: impl FnMut(ndarray::ArrayD<F>) -> Result<ndarray::ArrayD<F>>,
) -> Result<f64> {
    let mut correct = 0.0;
    for start in (0..test.len()).step_by(EVAL_CHUNK) {
        let end = (start + EVAL_CHUNK).min(test.len());
        let x = test.x.slice_axis(ndarray::Axis(0), (start..end).into()).to_owned();
        correct += accuracy_of(predict(x)?, &labels[start..end])? * (end - start) as f64;
    }
    Ok(correct / test.len() as f64)
}

fn run_scratch<F: TorchFloat>(e: &Experiment, data: &MnistData<F>, opts: &RunOptions) -> Result<EngineResult> {
    let spec = (e.network)();
    let mut net = NeuralNetwork::from_spec(&spec, e.loss.spec().build::<F>(), &mut RandomState::new(opts.seed))?;
    if let Some(path) = &opts.resume {
        net.load(path)?;
    }
    let (train, test) = (shaped(&data.train, &spec.input)?, shaped(&data.test, &spec.input)?);
    let mut progress = ProgressObserver::new(format!("{} scratch {}", e.name, F::NAME), opts.quiet);
    let options = FitOptions { checkpoint: opts.checkpoint_path(e, "scratch-best")?, ..fit_options(e, opts) };
    let (report, mut net) = match e.optim {
        OptimChoice::Sgd { lr } => {
            let mut t = scratch::train::Trainer::new(net, scratch::optim::SGD::new(lr)?);
            (t.fit(&train, &test, &options, &mut progress)?, t.net)
        }
        OptimChoice::Momentum { lr, decay } => {
            let mut t = scratch::train::Trainer::new(net, scratch::optim::SGDMomentum::new(lr, 0.9, decay)?);
            (t.fit(&train, &test, &options, &mut progress)?, t.net)
        }
    };
    let accuracy = test_accuracy(&test, &data.labels, |x| Ok(net.predict(&x)?))?;
    if let Some(path) = opts.checkpoint_path(e, "scratch")? {
        net.save(path)?;
    }
    Ok(EngineResult { engine: "scratch", report, accuracy })
}

fn run_torch<F: TorchFloat>(e: &Experiment, data: &MnistData<F>, opts: &RunOptions) -> Result<EngineResult> {
    let device = opts.device.resolve()?;
    let spec = (e.network)();
    // The same dropout masks as the from-scratch engine on the CPU; libtorch's own generator on a GPU
    // (the numpy-compatible stream runs on the CPU).
    let masks = if device.is_cuda() { Masks::Torch } else { Masks::Shared };
    let vs = torch::var_store::<F>(device);
    let options = torch::Options { masks, ..Default::default() };
    let model = torch::Net::with_options(vs.root(), &spec, options, &mut RandomState::new(opts.seed))?;
    let loss = e.loss.spec();
    if let Some(path) = &opts.resume {
        model.load(path)?;
    }
    let (train, test) = (shaped(&data.train, &spec.input)?, shaped(&data.test, &spec.input)?);
    let mut progress = ProgressObserver::new(format!("{} torch {}", e.name, F::NAME), opts.quiet);
    let options = FitOptions { checkpoint: opts.checkpoint_path(e, "torch-best")?, ..fit_options(e, opts) };
    let (report, model) = match e.optim {
        OptimChoice::Sgd { lr } => {
            let mut t = torch::train::Trainer::new(model, loss, torch::optim::SGD::new(lr, Decay::None)?);
            (t.fit(&train, &test, &options, &mut progress)?, t.net)
        }
        OptimChoice::Momentum { lr, decay } => {
            let mut t = torch::train::Trainer::new(model, loss, torch::optim::SGDMomentum::new(lr, 0.9, decay)?);
            (t.fit(&train, &test, &options, &mut progress)?, t.net)
        }
    };
    let accuracy = test_accuracy(&test, &data.labels, |x| {
        let scores = tch::no_grad(|| model.f_forward_t(&model.input(&to_tensor(&x)), false))?;
        Ok(to_array::<F>(&scores))
    })?;
    if let Some(path) = opts.checkpoint_path(e, "torch")? {
        model.save(path)?;
    }
    Ok(EngineResult { engine: "torch", report, accuracy })
}

/// Runs experiment `e` with the selected engines, printing each engine's evaluations as it goes.
///
/// # Errors
/// Missing data, an unavailable device, or a training failure.
pub fn run<F: TorchFloat>(e: &Experiment, data: &MnistData<F>, opts: &RunOptions) -> Result<Vec<EngineResult>> {
    let mut results = Vec::new();
    for engine in opts.engines.names() {
        results.push(match engine {
            "scratch" => run_scratch(e, data, opts)?,
            _ => run_torch(e, data, opts)?,
        });
    }
    Ok(results)
}

/// A table of the results of several experiments; `book` shows the book's accuracies (on MNIST only).
pub fn table(rows: &[(&Experiment, String, Vec<EngineResult>)], book: bool) -> Table {
    let mut t = Table::new(
        "Test accuracy (10 000 images) of the final model (with early stopping, the best evaluated)",
        &["experiment", "dtype", "engine", "epochs", "best val loss", "accuracy %", "book %", "s/epoch"],
    );
    for (e, dtype, results) in rows {
        for r in results {
            let best = r.report.best.map_or("-".into(), |b| format!("{:.4} (ep {})", b.loss, b.epoch));
            t.push(vec![
                e.name.into(),
                dtype.clone(),
                r.engine.into(),
                r.report.epochs_trained.to_string(),
                best,
                format!("{:.2}", r.accuracy),
                e.book.filter(|_| book).map_or("-".into(), |(b, _)| format!("{b:.2}")),
                format!("{:.2}", r.report.seconds_per_epoch()),
            ]);
        }
    }
    t
}

/// Plots validation-loss curves (one per engine) and smoothed training losses of one experiment.
///
/// # Errors
/// If the file cannot be written.
pub fn plot(out_dir: &Path, e: &Experiment, results: &[EngineResult]) -> Result<std::path::PathBuf> {
    let runs: Vec<_> = results.iter().map(|r| (r.engine, &r.report)).collect();
    crate::plot::fit_chart(out_dir, e.name, &format!("{}: {}", e.name, e.description), &runs)
}

/// The metrics of one experiment: each engine's validation curve (with accuracy), its per-epoch mean
/// training loss, and its final numbers.
pub fn metrics(e: &Experiment, dtype: &str, results: &[EngineResult]) -> crate::metrics::Metrics {
    let mut m = crate::metrics::Metrics::new(e.name, dtype, "epoch");
    for r in results {
        m.fit_curves(r.engine, &r.report, 100.0);
        let best = r.report.best.map_or(f64::NAN, |b| b.loss);
        m.summary(
            r.engine,
            &[
                ("test_accuracy_percent", r.accuracy),
                ("best_validation_loss", best),
                ("epochs", r.report.epochs_trained as f64),
                ("seconds_per_epoch", r.report.seconds_per_epoch()),
            ],
        );
    }
    m
}
