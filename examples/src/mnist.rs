//! Chapter 4 on MNIST: the book's experiments (BOOK.md 4a and 4b) trained side by side in both engines,
//! from the same initial weights and the same batch order (and, with dropout, the same masks).

use std::path::Path;

use anyhow::{bail, Result};
use ndarray::Array2;
use scratch::data::mnist::{self, Mnist};
use scratch::layers::{Dense, Layer, WeightInit};
use scratch::losses::{CrossEntropyValue, MeanSquaredError, MseReduction, SoftmaxCrossEntropy};
use scratch::network::{InitSeeding, NeuralNetwork};
use scratch::ops::{Activation, DropoutStyle, Mode};
use scratch::optim::Decay;
use scratch::rng::RandomState;
use scratch::train::{Dataset, FitOptions, FitReport};
use torch::convert::{to_array, to_tensor, TorchFloat};

use crate::plot::{line_chart, Chart, Series};
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

/// One of the chapter's experiments.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Name on the command line.
    pub name: &'static str,
    /// What it shows.
    pub description: &'static str,
    /// Hidden layers: (neurons, activation), then a 10-unit output layer.
    pub hidden: &'static [(usize, Activation)],
    /// The output activation.
    pub output: Activation,
    /// Weight initialisation.
    pub init: WeightInit,
    /// Dropout keep probability after each hidden layer.
    pub dropout: Option<f64>,
    /// The loss.
    pub loss: LossChoice,
    /// The optimizer.
    pub optim: OptimChoice,
    /// Epochs and evaluation interval (the book's).
    pub epochs: usize,
    /// Evaluate every this many epochs.
    pub eval_every: usize,
    /// Stop at the first evaluation that does not improve (the book's runs), or train the whole
    /// schedule and report the final model (ours).
    pub early_stopping: bool,
    /// The book's test accuracy in percent, and which of its runs it comes from (BOOK.md §2, tables 4a
    /// and 4b).
    pub book: Option<(f64, &'static str)>,
}

const EXP_DECAY: Decay = Decay::Exponential { final_lr: 0.05 };
const SIGMOID_89: &[(usize, Activation)] = &[(89, Activation::Sigmoid)];
const TANH_89: &[(usize, Activation)] = &[(89, Activation::Tanh)];
const TANH_178_46: &[(usize, Activation)] = &[(178, Activation::Tanh), (46, Activation::Tanh)];

/// The chapter's experiments with the book's settings, in the book's order, then the two networks the
/// book's best results came from with our learning-rate schedules.
pub const EXPERIMENTS: [Experiment; 11] = [
    Experiment {
        name: "ch4-mse",
        description: "sigmoid output trained with MSE",
        hidden: SIGMOID_89,
        output: Activation::Sigmoid,
        init: WeightInit::Standard,
        dropout: None,
        loss: LossChoice::Mse,
        optim: OptimChoice::Sgd { lr: 0.1 },
        epochs: 50,
        eval_every: 5,
        early_stopping: true,
        book: Some((57.16, "4a-1")),
    },
    Experiment {
        name: "ch4-softmax",
        description: "softmax cross-entropy",
        hidden: SIGMOID_89,
        output: Activation::Linear,
        init: WeightInit::Standard,
        dropout: None,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Sgd { lr: 0.1 },
        epochs: 50,
        eval_every: 5,
        early_stopping: true,
        book: Some((92.61, "4a-3")),
    },
    Experiment {
        name: "ch4-momentum",
        description: "momentum",
        hidden: SIGMOID_89,
        output: Activation::Linear,
        init: WeightInit::Standard,
        dropout: None,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.1, decay: Decay::None },
        epochs: 50,
        eval_every: 5,
        early_stopping: true,
        book: Some((94.10, "4a-4")),
    },
    Experiment {
        name: "ch4-linear-decay",
        description: "momentum, linear decay 0.15 -> 0.05",
        hidden: SIGMOID_89,
        output: Activation::Linear,
        init: WeightInit::Standard,
        dropout: None,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.15, decay: Decay::Linear { final_lr: 0.05 } },
        epochs: 25,
        eval_every: 5,
        early_stopping: true,
        book: Some((94.76, "4a-5")),
    },
    Experiment {
        name: "ch4-exp-decay",
        description: "momentum, exponential decay 0.2 -> 0.05",
        hidden: SIGMOID_89,
        output: Activation::Linear,
        init: WeightInit::Standard,
        dropout: None,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        epochs: 25,
        eval_every: 5,
        early_stopping: true,
        book: Some((94.81, "4a-6")),
    },
    Experiment {
        name: "ch4-glorot",
        description: "Glorot initialisation (784-89-10)",
        hidden: SIGMOID_89,
        output: Activation::Linear,
        init: WeightInit::Glorot,
        dropout: None,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        epochs: 25,
        eval_every: 5,
        early_stopping: true,
        book: Some((97.46, "4a-7")),
    },
    Experiment {
        name: "ch4-dropout",
        description: "tanh, Glorot, dropout 0.8 (784-89-10)",
        hidden: TANH_89,
        output: Activation::Linear,
        init: WeightInit::Glorot,
        dropout: Some(0.8),
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        epochs: 50,
        eval_every: 10,
        early_stopping: true,
        book: Some((96.77, "4b-l")),
    },
    Experiment {
        name: "ch4-deep",
        description: "deep 784-178-46-10, tanh, Glorot, no dropout",
        hidden: TANH_178_46,
        output: Activation::Linear,
        init: WeightInit::Glorot,
        dropout: None,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        epochs: 100,
        eval_every: 10,
        early_stopping: true,
        book: Some((96.08, "4b-n")),
    },
    Experiment {
        name: "ch4-deep-dropout",
        description: "deep 784-178-46-10, tanh, Glorot, dropout 0.8",
        hidden: TANH_178_46,
        output: Activation::Linear,
        init: WeightInit::Glorot,
        dropout: Some(0.8),
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.2, decay: EXP_DECAY },
        epochs: 100,
        eval_every: 10,
        early_stopping: true,
        book: Some((97.34, "4b-m")),
    },
    Experiment {
        name: "ch4-best-89",
        description: "ch4-glorot with momentum 0.1 -> 0.01 and the full schedule",
        hidden: SIGMOID_89,
        output: Activation::Linear,
        init: WeightInit::Glorot,
        dropout: None,
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.1, decay: Decay::Exponential { final_lr: 0.01 } },
        epochs: 25,
        eval_every: 5,
        early_stopping: false,
        book: Some((97.46, "4a-7")),
    },
    Experiment {
        name: "ch4-best-deep",
        description: "ch4-deep-dropout with momentum 0.03 -> 0.003, 50 epochs, full schedule",
        hidden: TANH_178_46,
        output: Activation::Linear,
        init: WeightInit::Glorot,
        dropout: Some(0.8),
        loss: LossChoice::SoftmaxCrossEntropy,
        optim: OptimChoice::Momentum { lr: 0.03, decay: Decay::Exponential { final_lr: 0.003 } },
        epochs: 50,
        eval_every: 10,
        early_stopping: false,
        book: Some((97.34, "4b-m")),
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

impl EngineResult {
    /// Training seconds per epoch.
    pub fn seconds_per_epoch(&self) -> f64 {
        self.report.train_time.as_secs_f64() / self.report.epochs_trained.max(1) as f64
    }
}

/// The data the experiments use: the book's global scaling, one-hot targets.
pub struct MnistData<F> {
    /// Training images and one-hot labels.
    pub train: Dataset<F>,
    /// Test images and one-hot labels.
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
    let y_train: Array2<F> = mnist::one_hot(&m.train_labels, 10);
    let y_test: Array2<F> = mnist::one_hot(&m.test_labels, 10);
    Ok(MnistData {
        train: Dataset::new(x_train.into_dyn(), y_train.into_dyn())?,
        test: Dataset::new(x_test.into_dyn(), y_test.into_dyn())?,
        labels: m.test_labels.iter().map(|&l| usize::from(l)).collect(),
    })
}

fn fit_options(e: &Experiment, opts: &RunOptions) -> FitOptions {
    FitOptions {
        epochs: opts.epochs.unwrap_or(e.epochs),
        eval_every: e.eval_every.min(opts.epochs.unwrap_or(e.epochs)),
        batch_size: 60,
        seed: opts.seed,
        restart: true,
        init_seeding: InitSeeding::Stream,
        early_stopping: e.early_stopping,
    }
}

fn layer_plan(e: &Experiment) -> Vec<(usize, usize, Activation, Option<f64>)> {
    let mut plan = Vec::new();
    let mut n_in = 784;
    for &(n, a) in e.hidden {
        plan.push((n_in, n, a, e.dropout));
        n_in = n;
    }
    plan.push((n_in, 10, e.output, None));
    plan
}

fn accuracy_of(scores: ndarray::ArrayD<impl TorchFloat>, labels: &[usize]) -> Result<f64> {
    let scores = scores.into_dimensionality::<ndarray::Ix2>()?;
    Ok(scratch::metrics::accuracy(&scores.view(), labels) * 100.0)
}

fn run_scratch<F: TorchFloat>(e: &Experiment, data: &MnistData<F>, opts: &RunOptions) -> Result<EngineResult> {
    let mut rng = RandomState::new(opts.seed);
    let mut layers: Vec<Box<dyn Layer<F>>> = Vec::new();
    for (n_in, n, activation, dropout) in layer_plan(e) {
        let mut b = Dense::builder(n_in, n).activation(activation).init(e.init);
        if let Some(keep) = dropout {
            b = b.dropout_with(keep, DropoutStyle::Inverted);
        }
        layers.push(Box::new(b.build(&mut rng)?));
    }
    let net = match e.loss {
        LossChoice::Mse => NeuralNetwork::new(layers, MeanSquaredError::with_reduction(MseReduction::Rows)),
        LossChoice::SoftmaxCrossEntropy => {
            NeuralNetwork::new(layers, SoftmaxCrossEntropy::reporting(CrossEntropyValue::Categorical))
        }
    };
    let mut progress = ProgressObserver::new(format!("{} scratch {}", e.name, F::NAME), opts.quiet);
    let options = fit_options(e, opts);
    let (report, mut net) = match e.optim {
        OptimChoice::Sgd { lr } => {
            let mut t = scratch::train::Trainer::new(net, scratch::optim::SGD::new(lr));
            (t.fit(&data.train, &data.test, &options, &mut progress)?, t.net)
        }
        OptimChoice::Momentum { lr, decay } => {
            let mut t = scratch::train::Trainer::new(net, scratch::optim::SGDMomentum::new(lr, 0.9, decay)?);
            (t.fit(&data.train, &data.test, &options, &mut progress)?, t.net)
        }
    };
    let accuracy = accuracy_of(net.predict(&data.test.x)?, &data.labels)?;
    Ok(EngineResult { engine: "scratch", report, accuracy })
}

fn run_torch<F: TorchFloat>(e: &Experiment, data: &MnistData<F>, opts: &RunOptions) -> Result<EngineResult> {
    let device = opts.device.resolve()?;
    let loss = match e.loss {
        LossChoice::Mse => torch::losses::Loss::MeanSquaredError(MseReduction::Rows),
        LossChoice::SoftmaxCrossEntropy => torch::losses::Loss::SoftmaxCrossEntropy(CrossEntropyValue::Categorical),
    };
    let mut model = torch::model::Model::new::<F>(device, loss);
    let mut rng = RandomState::new(opts.seed);
    for (n_in, n, activation, dropout) in layer_plan(e) {
        model.dense((n_in, n), activation, e.init, dropout.map(|k| (k, DropoutStyle::Inverted)), &mut rng);
    }
    let mut progress = ProgressObserver::new(format!("{} torch {}", e.name, F::NAME), opts.quiet);
    let options = fit_options(e, opts);
    let (report, mut model) = match e.optim {
        OptimChoice::Sgd { lr } => {
            let mut t = torch::train::Trainer::new(model, torch::optim::SGD::new(lr, Decay::None)?);
            (t.fit(&data.train, &data.test, &options, &mut progress)?, t.model)
        }
        OptimChoice::Momentum { lr, decay } => {
            let mut t = torch::train::Trainer::new(model, torch::optim::SGDMomentum::new(lr, 0.9, decay)?);
            (t.fit(&data.train, &data.test, &options, &mut progress)?, t.model)
        }
    };
    let scores = tch::no_grad(|| model.forward(&to_tensor(&data.test.x), Mode::Eval))?;
    let accuracy = accuracy_of(to_array::<F>(&scores), &data.labels)?;
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

/// A table of the results of several experiments.
pub fn table(rows: &[(&Experiment, String, Vec<EngineResult>)]) -> Table {
    let mut t = Table::new(
        "MNIST, chapter 4: test accuracy (10 000 images) of the final model (with early stopping, the best evaluated)",
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
                e.book.map_or("-".into(), |(b, _)| format!("{b:.2}")),
                format!("{:.2}", r.seconds_per_epoch()),
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
    let path = out_dir.join(format!("{}-loss.png", e.name));
    let batches = results.first().map_or(1, |r| r.report.batch_losses.len() / r.report.epochs_trained.max(1));
    let mut series = Vec::new();
    for r in results {
        let train: Vec<(f64, f64)> = Series::smoothed("", &r.report.batch_losses, batches)
            .points
            .into_iter()
            .map(|(x, y)| (x / batches as f64, y))
            .collect();
        series.push(Series::new(format!("{} training (epoch mean)", r.engine), train));
        let val = r.report.evaluations.iter().map(|v| (v.epoch as f64, v.loss)).collect();
        series.push(Series::new(format!("{} validation", r.engine), val));
    }
    line_chart(
        &path,
        &Chart {
            title: format!("{}: {}", e.name, e.description),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series,
            log_y: true,
        },
    )?;
    Ok(path)
}
