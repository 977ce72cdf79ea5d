//! Chapters 2, 3 and 7 on the Boston housing data: the step-by-step models of chapter 2 and the
//! `NeuralNetwork`s of chapter 3, with the book's seeds, so that the numbers can be compared with the
//! book's, and chapter 7's `BostonModel` (tanh hidden layer with dropout).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use scratch::data::boston::{self, Split};
use scratch::metrics::{mae, rmse};
use scratch::network::InitSeeding;
use scratch::prelude::*;
use scratch::spec::{MseReduction, OptimSpec};
use scratch::step_by_step::{self, BiasGradient, StepByStep, TrainConfig};
use torch::Device;

use crate::engine::{Engine, Engines};
use crate::experiments::{Opt, Outputs, Prepared, Ran, Settings};
use crate::network::{Network, StepByStepModel, StepByStepModels};
use crate::plot::{line_chart, Chart, Series};
use crate::progress::ProgressObserver;
use crate::table::Table;

/// The outcome of one model.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The model's name.
    pub model: String,
    /// The engine that trained it.
    pub engine: Engine,
    /// Mean absolute error on the test set.
    pub mae: f64,
    /// Root mean squared error on the test set.
    pub rmse: f64,
    /// The book's printed (MAE, RMSE), with the number of decimals it printed.
    pub book: Option<(f64, f64, usize)>,
    /// Training time in seconds.
    pub seconds: f64,
}

/// Everything the Boston experiments produce.
pub struct BostonResults {
    /// One outcome per model.
    pub outcomes: Vec<Outcome>,
    /// Per-iteration training losses of the chapter-2 models.
    pub chapter2_losses: Vec<(String, Vec<f64>)>,
    /// Validation-loss curves `(epoch, loss)` of the chapter-3 models.
    pub chapter3_validation: Vec<(String, Vec<(f64, f64)>)>,
}

fn evaluate(preds: &ndarray::Array2<f64>, data: &Split<f64>) -> (f64, f64) {
    (mae(preds, &data.y_test), rmse(preds, &data.y_test))
}

fn chapter2<M: StepByStep<f64>>(
    name: &str,
    model: &mut M,
    iterations: usize,
    rng: &mut RandomState,
    data: &Split<f64>,
) -> Result<(Vec<f64>, f64)> {
    let start = Instant::now();
    let config = TrainConfig { iterations, learning_rate: 0.001, batch_size: 23 };
    let losses = step_by_step::train(model, &data.x_train, &data.y_train, &config, rng)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok((losses, start.elapsed().as_secs_f64()))
}

/// The chapter-3 models: sigmoid hidden layers of the given widths and a linear output, the book's
/// standard-normal initialisation.
pub fn chapter3_spec(hidden: &[usize]) -> NetSpec {
    let mut layers: Vec<LayerSpec> =
        hidden.iter().map(|&h| LayerSpec::Dense(DenseSpec::new(h).activation(Activation::Sigmoid))).collect();
    layers.push(LayerSpec::Dense(DenseSpec::new(1)));
    NetSpec::new(&[boston::FEATURES], layers)
}

/// The chapter-3 training settings: 50 epochs, evaluation every 10, batches of 32, the book's seed and
/// its per-layer re-seeding.
pub fn chapter3_options(seed: u32) -> FitOptions {
    FitOptions {
        epochs: 50,
        eval_every: 10,
        batch_size: 32,
        seed,
        restart: true,
        init_seeding: InitSeeding::BookReseed(seed),
        early_stopping: true,
        eval_batches: None,
        drop_last: false,
        checkpoint: None,
    }
}

/// The three chapter-3 models: name, hidden widths, and the book's (MAE, RMSE).
pub const CHAPTER3_MODELS: [(&str, &[usize], (f64, f64)); 3] = [
    ("ch3 lr: Dense(1)", &[], (3.52, 5.01)),
    ("ch3 nn: Dense(13, sigmoid), Dense(1)", &[13], (2.60, 4.03)),
    ("ch3 dl: Dense(13, sigmoid) x2, Dense(1)", &[13, 13], (2.45, 3.83)),
];

/// Trains a chapter-2 model built by `init` from the seeded generator; returns its outcome and losses.
fn chapter2_run<M: StepByStepModel>(
    (model, engine, book): (&str, Engine, Option<(f64, f64, usize)>),
    seed: u32,
    iterations: usize,
    init: impl FnOnce(&mut RandomState) -> M,
    data: &Split<f64>,
) -> Result<(Outcome, Vec<f64>)> {
    let mut rng = RandomState::new(seed);
    let mut m = init(&mut rng);
    let (losses, seconds) = chapter2(model, &mut m, iterations, &mut rng, data)?;
    let (mae, rmse) = evaluate(&m.predict(&data.x_test.view()), data);
    Ok((Outcome { model: model.into(), engine, mae, rmse, book, seconds }, losses))
}

fn datasets(data: &Split<f64>) -> Result<(Dataset<f64>, Dataset<f64>)> {
    Ok((
        Dataset::new(data.x_train.clone().into_dyn(), data.y_train.clone().into_dyn())?,
        Dataset::new(data.x_test.clone().into_dyn(), data.y_test.clone().into_dyn())?,
    ))
}

/// The options `boston` takes: the book's schedules are fixed, in f64 on the CPU.
pub const OPTIONS: &[Opt] = &[Opt::Engine];

/// Loads the book's split of the Boston housing data under `data_dir` and trains every model of
/// chapters 2, 3 and 7 with the selected engines.
///
/// # Errors
/// Missing or malformed data, or a training failure.
pub fn run(data_dir: &Path, engines: Engines, quiet: bool) -> Result<BostonResults> {
    run_on(&boston::load_book_split(data_dir)?, engines, quiet)
}

/// Trains every model of chapters 2, 3 and 7 on `data` with the selected engines.
///
/// # Errors
/// A training failure.
pub fn run_on(data: &Split<f64>, engines: Engines, quiet: bool) -> Result<BostonResults> {
    let mut outcomes = Vec::new();
    // Each chapter-2 loss curve once: the first engine's.
    let mut chapter2_losses = Vec::new();
    let mut chapter3_validation = Vec::new();
    for (i, engine) in engines.iter().enumerate() {
        let start = Instant::now();
        let models = StepByStepModels::of(engine);
        let preds = (models.least_squares)(&data.x_train, &data.y_train)?.predict(&data.x_test.view());
        let (mae, rmse) = evaluate(&preds, data);
        let seconds = start.elapsed().as_secs_f64();
        let (model, book) = ("ch2 least squares (closed form)".into(), Some((3.5671, 5.0476, 4)));
        outcomes.push(Outcome { model, engine, mae, rmse, book, seconds });

        let features = boston::FEATURES;
        let linear = ("ch2 linear regression, step by step", engine, Some((3.5644, 5.0497, 4)));
        let (o, l) = chapter2_run(linear, 180_708, 1000, |r| (models.linear)(features, r), data)?;
        outcomes.push(o);
        if i == 0 {
            chapter2_losses.push(("linear regression".to_string(), l));
        }
        for (quirk, label, book) in [
            (BiasGradient::BookCollapsed, "ch2 two-layer net (book's bias bug)", Some((2.5951, 3.8851, 4))),
            (BiasGradient::Correct, "ch2 two-layer net (correct gradient)", None),
        ] {
            let model = (label, engine, book);
            let (o, l) = chapter2_run(model, 180_807, 10_000, |r| (models.two_layer)(features, 13, quirk, r), data)?;
            outcomes.push(o);
            if i == 0 {
                chapter2_losses.push((label.trim_start_matches("ch2 ").to_string(), l));
            }
        }

        for (name, hidden, (book_mae, book_rmse)) in CHAPTER3_MODELS {
            let seed = 20_190_501;
            let short = name.split(':').next().unwrap_or(name);
            let book = Some((book_mae, book_rmse, 2));
            let net = Network::new(engine, (&chapter3_spec(hidden), LossSpec::MSE), seed, Device::Cpu, "boston")?;
            let (outcome, curve) =
                fit_network(net, (name, book), &OptimSpec::sgd(0.01), &chapter3_options(seed), data, quiet)?;
            outcomes.push(outcome);
            chapter3_validation.push((format!("{short} {engine}"), curve));
        }
    }
    for engine in engines.iter() {
        let (outcome, curve) = chapter7(engine, data, quiet)?;
        outcomes.push(outcome);
        chapter3_validation.push((format!("ch7 BostonModel {engine}"), curve));
    }
    // Each model's engines side by side, the models in the order they trained (a stable sort).
    let mut models: Vec<String> = Vec::new();
    for o in &outcomes {
        if !models.contains(&o.model) {
            models.push(o.model.clone());
        }
    }
    outcomes.sort_by_key(|o| models.iter().position(|m| *m == o.model));
    Ok(BostonResults { outcomes, chapter2_losses, chapter3_validation })
}

/// Trains `net` (the model named `name`, with the book's numbers `book`) with `optim` and `options`;
/// returns its test outcome and its validation curve.
fn fit_network(
    net: Network<f64>,
    (name, book): (&str, Option<(f64, f64, usize)>),
    optim: &OptimSpec,
    options: &FitOptions,
    data: &Split<f64>,
    quiet: bool,
) -> Result<(Outcome, Vec<(f64, f64)>)> {
    let engine = net.engine();
    let (train, test) = datasets(data)?;
    let short = name.split(':').next().unwrap_or(name);
    let mut progress = ProgressObserver::new(format!("{short} {engine}"), quiet);
    let (report, net) = net.fit(optim, (&train, &test), options, &mut progress)?;
    let preds = net.predict(&data.x_test.clone().into_dyn())?.into_dimensionality::<ndarray::Ix2>()?;
    let (mae, rmse) = evaluate(&preds, data);
    let seconds = report.train_time.as_secs_f64();
    let outcome = Outcome { model: name.into(), engine, mae, rmse, book, seconds };
    Ok((outcome, report.evaluations.iter().map(|e| (e.epoch as f64, e.loss)).collect()))
}

/// Trains chapter 7's `BostonModel` ([`book::boston_model`]) with `engine`: PyTorch's mean
/// squared error, momentum SGD (0.001, 0.9), 100 epochs of batches of 32 (the book printed a test MSE
/// of 14.37 after one unseeded run). Returns the test outcome and the validation curve.
fn chapter7(engine: Engine, data: &Split<f64>, quiet: bool) -> Result<(Outcome, Vec<(f64, f64)>)> {
    const SEED: u32 = 20_190_325;
    let options = FitOptions {
        epochs: 100,
        eval_every: 10,
        batch_size: 32,
        seed: SEED,
        restart: true,
        early_stopping: false,
        ..Default::default()
    };
    let loss = LossSpec::MeanSquaredError(MseReduction::Mean);
    let net = Network::new(engine, (&book::boston_model(), loss), SEED, Device::Cpu, "boston")?;
    let name = "ch7 BostonModel: Dense(13, tanh, dropout), Dense(1)";
    fit_network(net, (name, None), &OptimSpec::momentum(0.001, 0.9), &options, data, quiet)
}

impl BostonResults {
    /// The results as a table, with the book's numbers beside ours.
    pub fn table(&self) -> Table {
        let mut t = Table::new(
            "Boston housing, test set (152 rows): chapters 2 and 3",
            &["model", "engine", "MAE", "RMSE", "book MAE", "book RMSE", "train s"],
        );
        for o in &self.outcomes {
            let (book_mae, book_rmse) = match o.book {
                Some((m, r, d)) => (format!("{m:.d$}"), format!("{r:.d$}")),
                None => ("-".into(), "-".into()),
            };
            t.push(vec![
                o.model.clone(),
                o.engine.to_string(),
                format!("{:.4}", o.mae),
                format!("{:.4}", o.rmse),
                book_mae,
                book_rmse,
                format!("{:.3}", o.seconds),
            ]);
        }
        t
    }

    /// Writes the loss curves as two PNG charts ([`files`]); returns their paths.
    ///
    /// # Errors
    /// If a file cannot be written.
    pub fn plot(&self, out: &Outputs) -> Result<Vec<PathBuf>> {
        let [ch2, ch3] = charts(out);
        line_chart(
            &ch2,
            &Chart {
                title: "Chapter 2: training loss (MSE per batch, mean of 50 iterations)".into(),
                x_label: "iteration".into(),
                y_label: "loss".into(),
                series: self.chapter2_losses.iter().map(|(n, l)| Series::smoothed(n.clone(), l, 50)).collect(),
                log_y: true,
            },
        )?;
        line_chart(
            &ch3,
            &Chart {
                title: "Chapter 3: validation loss (MSE on the test set)".into(),
                x_label: "epoch".into(),
                y_label: "loss".into(),
                series: self.chapter3_validation.iter().map(|(n, c)| Series::new(n.clone(), c.clone())).collect(),
                log_y: false,
            },
        )?;
        Ok(vec![ch2, ch3])
    }
}

impl BostonResults {
    /// The metrics of experiment `name`: every model's test MAE, RMSE and training seconds, by engine,
    /// and the chapter-3 validation curves.
    pub fn metrics(&self, name: &str) -> crate::metrics::Metrics {
        let mut m = crate::metrics::Metrics::new(name, "f64", "epoch");
        for o in &self.outcomes {
            m.summary(
                format!("{} / {}", o.engine, o.model),
                &[("test_mae", o.mae), ("test_rmse", o.rmse), ("train_seconds", o.seconds)],
            );
        }
        for (name, curve) in &self.chapter3_validation {
            for &(at, loss) in curve {
                m.curves.push(crate::metrics::Point {
                    engine: name.clone(),
                    split: "validation",
                    at,
                    loss,
                    accuracy: None,
                });
            }
        }
        m
    }
}

/// The two charts: chapter 2's training losses and chapter 3's validation losses.
fn charts(out: &Outputs) -> [PathBuf; 2] {
    [out.file("chapter2-training-loss.png"), out.file("chapter3-validation-loss.png")]
}

/// The files `boston` writes: its two charts and its metrics.
pub fn files(out: &Outputs) -> Vec<PathBuf> {
    charts(out).into_iter().chain(out.metrics()).collect()
}

/// `boston` with its data loaded.
struct BostonRun {
    data: Split<f64>,
    engines: Engines,
    settings: Settings,
}

impl Prepared for BostonRun {
    fn run(self: Box<Self>) -> Result<Ran> {
        let out = &self.settings.outputs;
        let results = run_on(&self.data, self.engines, self.settings.quiet)?;
        println!("{}", results.table().render());
        let mut files = results.plot(out)?;
        files.extend(results.metrics(out.experiment()).write(out)?);
        Ok(Ran { files, checks: crate::reproduce::boston(&results) })
    }
}

/// Loads the book's split of the Boston housing data.
///
/// # Errors
/// Missing or malformed data.
pub fn prepare(settings: Settings) -> Result<Box<dyn Prepared>> {
    let data = boston::load_book_split(&settings.data)?;
    Ok(Box::new(BostonRun { data, engines: settings.options.engines(), settings }))
}
