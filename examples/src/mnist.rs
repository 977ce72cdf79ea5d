//! The book's MNIST experiments — chapter 4's dense networks, chapter 5's CNN, chapter 7's ConvNet —
//! trained side by side in both engines from the same initial weights and the same batch order (and, with
//! dropout, the same masks).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result};
use ndarray::Array2;
use scratch::data::mnist::{self, Mnist};
use scratch::network::{InitSeeding, NeuralNetwork};
use scratch::optim::Decay;
use scratch::rng::RandomState;
use scratch::spec::{LossSpec, NetSpec};
use scratch::train::{Dataset, FitOptions, FitReport, EVAL_CHUNK};
use torch::convert::{to_array, to_tensor, TorchFloat};
use torch::layers::Masks;

use crate::engine::{Engine, Engines};
use crate::experiments::options::{Dtype, ImageSet};
use crate::experiments::{resume, Cache, Experiment, Opt, Outputs, Prepared, Ran, Settings};
use crate::progress::ProgressObserver;
use crate::table::Table;

/// The book's chapter-4 seed, the default of every MNIST classifier.
pub const SEED: u32 = 190_119;

/// The options an MNIST classifier takes.
pub const OPTIONS: &[Opt] = &[Opt::Engine, Opt::Dtype, Opt::Epochs, Opt::Seed, Opt::Device, Opt::Dataset, Opt::Resume];

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

/// How an MNIST classifier is trained (its registry entry says what it is).
#[derive(Clone, Debug)]
pub struct Classifier {
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
}

impl Classifier {
    /// A chapter-4 network with the book's other settings: softmax cross-entropy, early stopping.
    pub const fn chapter4(network: fn() -> NetSpec, optim: OptimChoice, epochs: usize, eval_every: usize) -> Self {
        Classifier {
            network,
            loss: LossChoice::SoftmaxCrossEntropy,
            optim,
            epochs,
            eval_every,
            eval_batches: None,
            early_stopping: true,
        }
    }
}

/// How to run an experiment.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Which engines.
    pub engines: Engines,
    /// Epochs instead of the book's.
    pub epochs: Option<usize>,
    /// The seed of the weights and the batch order.
    pub seed: u32,
    /// No progress output.
    pub quiet: bool,
    /// Where the torch engine computes.
    pub device: torch::Device,
    /// A checkpoint (of either engine) to start from instead of fresh weights.
    pub resume: Option<PathBuf>,
    /// Where each engine's final model and its best evaluated model (rewritten at every improvement)
    /// are saved.
    pub outputs: Outputs,
}

/// What one engine reached.
#[derive(Clone, Debug)]
pub struct EngineResult {
    /// The engine.
    pub engine: Engine,
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

fn fit_options(c: &Classifier, opts: &RunOptions, engine: Engine) -> FitOptions {
    let epochs = opts.epochs.unwrap_or(c.epochs);
    FitOptions {
        epochs,
        eval_every: c.eval_every.min(epochs),
        batch_size: 60,
        seed: opts.seed,
        // Resuming keeps the loaded weights.
        restart: opts.resume.is_none(),
        init_seeding: InitSeeding::Stream,
        early_stopping: c.early_stopping,
        eval_batches: c.eval_batches,
        drop_last: false,
        checkpoint: Some(opts.outputs.best_checkpoint(engine)),
    }
}

fn accuracy_of(scores: ndarray::ArrayD<impl TorchFloat>, labels: &[usize]) -> Result<f64> {
    Ok(scratch::metrics::accuracy(&scores, labels)? * 100.0)
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

fn run_scratch<F: TorchFloat>(
    (name, c): (&str, &Classifier),
    data: &MnistData<F>,
    opts: &RunOptions,
) -> Result<EngineResult> {
    let spec = (c.network)();
    let mut net = NeuralNetwork::from_spec(&spec, c.loss.spec().build::<F>(), &mut RandomState::new(opts.seed))?;
    net.set_metadata(crate::experiments::resume::EXPERIMENT, opts.outputs.experiment());
    if let Some(path) = &opts.resume {
        net.load(path)?;
    }
    let (train, test) = (shaped(&data.train, &spec.input)?, shaped(&data.test, &spec.input)?);
    let mut progress = ProgressObserver::new(format!("{name} scratch {}", F::NAME), opts.quiet);
    let options = fit_options(c, opts, Engine::Scratch);
    let (report, net) = match c.optim {
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
    net.save(opts.outputs.checkpoint(Engine::Scratch))?;
    Ok(EngineResult { engine: Engine::Scratch, report, accuracy })
}

fn run_torch<F: TorchFloat>(
    (name, c): (&str, &Classifier),
    data: &MnistData<F>,
    opts: &RunOptions,
) -> Result<EngineResult> {
    let device = opts.device.resolve()?;
    let spec = (c.network)();
    // The same dropout masks as the from-scratch engine on the CPU; libtorch's own generator on a GPU
    // (the numpy-compatible stream runs on the CPU).
    let masks = if device.is_cuda() { Masks::Torch } else { Masks::Shared };
    let vs = torch::var_store::<F>(device);
    let options = torch::Options { masks, ..Default::default() };
    let mut model = torch::Net::with_options(vs.root(), &spec, options, &mut RandomState::new(opts.seed))?;
    model.set_metadata(crate::experiments::resume::EXPERIMENT, opts.outputs.experiment());
    let loss = c.loss.spec();
    if let Some(path) = &opts.resume {
        model.load(path)?;
    }
    let (train, test) = (shaped(&data.train, &spec.input)?, shaped(&data.test, &spec.input)?);
    let mut progress = ProgressObserver::new(format!("{name} torch {}", F::NAME), opts.quiet);
    let options = fit_options(c, opts, Engine::Torch);
    let (report, model) = match c.optim {
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
    model.save(opts.outputs.checkpoint(Engine::Torch))?;
    Ok(EngineResult { engine: Engine::Torch, report, accuracy })
}

/// Runs experiment `name` (trained as `c` says) with the selected engines, printing each engine's
/// evaluations as it goes.
///
/// # Errors
/// An unavailable device, a checkpoint that does not fit, a training failure, or a file that cannot be
/// written.
pub fn run<F: TorchFloat>(
    (name, c): (&str, &Classifier),
    data: &MnistData<F>,
    opts: &RunOptions,
) -> Result<Vec<EngineResult>> {
    opts.outputs.create_dir()?;
    let mut results = Vec::new();
    for engine in opts.engines.iter() {
        let result = match engine {
            Engine::Scratch => run_scratch((name, c), data, opts),
            Engine::Torch => run_torch((name, c), data, opts),
        };
        results.push(result.with_context(|| format!("{name}: the {engine} engine"))?);
    }
    Ok(results)
}

/// The files a classifier writes: its loss curves, its metrics, and each engine's final and best
/// evaluated model.
pub fn files(out: &Outputs, engines: Engines) -> Vec<PathBuf> {
    let mut files = vec![out.loss_chart()];
    files.extend(out.metrics());
    for engine in engines.iter() {
        files.extend([out.checkpoint(engine), out.best_checkpoint(engine)]);
    }
    files
}

/// A table of the results of experiment `e` in `dtype`; `book` shows the book's accuracy (on MNIST
/// only).
pub fn table(e: &Experiment, dtype: &str, results: &[EngineResult], book: bool) -> Table {
    let mut t = Table::new(
        "Test accuracy (10 000 images) of the final model (with early stopping, the best evaluated)",
        &["experiment", "dtype", "engine", "epochs", "best val loss", "accuracy %", "book %", "s/epoch"],
    );
    let printed = e.book.and_then(|b| b.printed.value()).filter(|_| book);
    for r in results {
        let best = r.report.best.map_or("-".into(), |b| format!("{:.4} (ep {})", b.loss, b.epoch));
        t.push(vec![
            e.name.into(),
            dtype.into(),
            r.engine.to_string(),
            r.report.epochs_trained.to_string(),
            best,
            format!("{:.2}", r.accuracy),
            printed.map_or("-".into(), |b| format!("{b:.2}")),
            format!("{:.2}", r.report.seconds_per_epoch()),
        ]);
    }
    t
}

/// Plots validation-loss curves (one per engine) and smoothed training losses of experiment `e`.
///
/// # Errors
/// If the file cannot be written.
pub fn plot(out: &Outputs, e: &Experiment, results: &[EngineResult]) -> Result<PathBuf> {
    let runs: Vec<_> = results.iter().map(|r| (r.engine, &r.report)).collect();
    let path = out.loss_chart();
    crate::plot::fit_chart(&path, &format!("{}: {}", e.name, e.what), &runs)?;
    Ok(path)
}

/// The metrics of experiment `e`: each engine's validation curve (with accuracy), its per-epoch mean
/// training loss, and its final numbers.
pub fn metrics(e: &Experiment, dtype: &str, results: &[EngineResult]) -> crate::metrics::Metrics {
    let mut m = crate::metrics::Metrics::new(e.name, dtype, "epoch");
    for r in results {
        m.fit_curves(r.engine, &r.report, 100.0);
        let best = r.report.best.map_or(f64::NAN, |b| b.loss);
        m.summary(
            r.engine.name(),
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

/// A classifier with its data loaded, its options checked.
struct ClassifierRun<F> {
    experiment: &'static Experiment,
    classifier: &'static Classifier,
    data: Rc<MnistData<F>>,
    images: ImageSet,
    opts: RunOptions,
}

impl<F: TorchFloat> Prepared for ClassifierRun<F> {
    fn run(self: Box<Self>) -> Result<Ran> {
        let (e, opts) = (self.experiment, &self.opts);
        let results = run((e.name, self.classifier), &self.data, opts)?;
        println!("{}", table(e, F::NAME, &results, self.images == ImageSet::Mnist).render());
        let mut files = vec![plot(&opts.outputs, e, &results)?];
        files.extend(metrics(e, F::NAME, &results).write(&opts.outputs)?);
        for engine in opts.engines.iter() {
            files.push(opts.outputs.checkpoint(engine));
            files.extend(Some(opts.outputs.best_checkpoint(engine)).filter(|p| p.exists()));
        }
        Ok(Ran { files, checks: Vec::new() })
    }
}

/// Loads the images (once for all classifiers of a run) and checks a checkpoint to resume from.
///
/// # Errors
/// Missing or malformed data, or a checkpoint of another network.
pub fn prepare(
    e: &'static Experiment,
    c: &'static Classifier,
    settings: Settings,
    cache: &mut Cache,
) -> Result<Box<dyn Prepared>> {
    match settings.options.dtype() {
        Dtype::F32 => prepare_typed::<f32>(e, c, settings, cache),
        Dtype::F64 => prepare_typed::<f64>(e, c, settings, cache),
    }
}

fn prepare_typed<F: TorchFloat>(
    e: &'static Experiment,
    c: &'static Classifier,
    settings: Settings,
    cache: &mut Cache,
) -> Result<Box<dyn Prepared>> {
    let o = &settings.options;
    let dir = settings.data.join(o.dataset().folder());
    let data = cache.get(dir.display().to_string(), || load::<F>(&dir))?;
    if let Some(path) = o.resume() {
        resume::check::<F>(path, &(c.network)(), c.loss.spec(), e.name)?;
    }
    let opts = RunOptions {
        engines: o.engines(),
        epochs: o.count(Opt::Epochs),
        seed: o.seed().unwrap_or(SEED),
        quiet: settings.quiet,
        device: o.device(),
        resume: o.resume().map(std::path::Path::to_path_buf),
        outputs: settings.outputs,
    };
    Ok(Box::new(ClassifierRun { experiment: e, classifier: c, data, images: o.dataset(), opts }))
}
