//! Chapter 7's unsupervised learning: a convolutional autoencoder on MNIST, trained in both engines from
//! the same weights, with its test reconstruction error (the book printed 0.0693 after one epoch), a
//! PNG of test images beside their reconstructions, and a PNG of the 10 000 test codes projected onto
//! their first two principal components, coloured by digit.

use std::path::PathBuf;

use std::rc::Rc;

use anyhow::{Context, Result};
use ndarray::{Array2, Axis, Ix2, IxDyn};
use scratch::data::mnist::{self, Mnist};
use scratch::network::NeuralNetwork;
use scratch::ops::Mode;
use scratch::optim::{Decay, SGDMomentum};
use scratch::rng::RandomState;
use scratch::spec::book::{self, AUTOENCODER_ENCODER_LAYERS};
use scratch::spec::{LossSpec, MseReduction};
use scratch::train::{Dataset, FitOptions, FitReport};
use torch::convert::{to_array, to_tensor, TorchFloat};

use crate::engine::{Engine, Engines};
use crate::experiments::options::Dtype;
use crate::experiments::{resume, Cache, Experiment, Opt, Outputs, Prepared, Ran, Settings};
use crate::metrics::Metrics;
use crate::plot::{fit_chart, image_grid, scatter};
use crate::progress::ProgressObserver;
use crate::table::Table;

/// The test MSE the book printed after one epoch (on its `[-1, 1]` scaling).
pub const BOOK_TEST_MSE: f64 = 0.069_289_825_856_685_64;

/// The options the autoencoder takes: those of the MNIST classifiers.
pub const OPTIONS: &[Opt] = crate::mnist::OPTIONS;

/// The book's seed of the chapter-7 autoencoder, the default.
pub const SEED: u32 = 20_190_504;

/// How the autoencoder is trained.
#[derive(Clone, Debug)]
pub struct AeOptions {
    /// Which engines.
    pub engines: Engines,
    /// Epochs (the book: 1).
    pub epochs: usize,
    /// Seed of the weights and the batch order.
    pub seed: u32,
    /// No progress output.
    pub quiet: bool,
    /// Where the torch engine computes.
    pub device: torch::Device,
    /// Start both engines from this checkpoint instead of fresh weights.
    pub resume: Option<PathBuf>,
    /// Where each engine's final model and best evaluated one are saved.
    pub outputs: Outputs,
}

/// What one engine reached.
pub struct AeResult {
    /// The engine.
    pub engine: Engine,
    /// The fit.
    pub report: FitReport,
    /// Mean squared error over the 10 000 test images.
    pub test_mse: f64,
    /// Reconstructions of the first test images, `[-1, 1]`.
    pub reconstructions: Vec<Vec<f64>>,
    /// The codes of all test images `(10 000, 28)`.
    pub codes: Array2<f64>,
}

/// The MNIST images scaled to `[-1, 1]` with the training set's minimum and maximum (the book's
/// autoencoder scaling), shaped `(n, 1, 28, 28)`.
fn scaled<F: TorchFloat>(m: &Mnist) -> Result<(Dataset<F>, Dataset<F>)> {
    let (lo, hi) = m.train_images.iter().fold((u8::MAX, u8::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, span) = (f64::from(lo), f64::from(hi - lo).max(1.0));
    let to = |images: &Array2<u8>| -> Result<Dataset<F>> {
        let x = images.mapv(|v| F::cast((f64::from(v) - lo) / span * 2.0 - 1.0));
        let x = x.into_shape_with_order(IxDyn(&[images.nrows(), 1, 28, 28]))?;
        Ok(Dataset::new(x.clone(), x)?)
    };
    Ok((to(&m.train_images)?, to(&m.test_images)?))
}

fn options(opts: &AeOptions, engine: Engine) -> FitOptions {
    FitOptions {
        epochs: opts.epochs,
        eval_every: 1,
        batch_size: 60,
        seed: opts.seed,
        restart: opts.resume.is_none(),
        early_stopping: false,
        checkpoint: Some(opts.outputs.best_checkpoint(engine)),
        ..Default::default()
    }
}

/// Shown images: the first of each digit in the test set.
fn shown(labels: &[u8]) -> Vec<usize> {
    (0..10u8).filter_map(|d| labels.iter().position(|&l| l == d)).collect()
}

/// The autoencoder's loss: the mean squared error over every pixel.
const LOSS: LossSpec = LossSpec::MeanSquaredError(MseReduction::Mean);

fn run_engine<F: TorchFloat>(engine: Engine, m: &Mnist, opts: &AeOptions) -> Result<AeResult> {
    let (train, test) = scaled::<F>(m)?;
    let spec = book::autoencoder();
    let loss = LOSS;
    let mut progress = ProgressObserver::new(format!("{} {engine}", opts.outputs.experiment()), opts.quiet);
    let index = shown(&m.test_labels);
    let chunks: Vec<usize> = (0..test.len()).step_by(500).collect();
    let (report, recon, codes) = if engine == Engine::Scratch {
        let mut net = NeuralNetwork::<F>::from_spec(&spec, loss.build::<F>(), &mut RandomState::new(opts.seed))?;
        net.set_metadata(crate::experiments::resume::EXPERIMENT, opts.outputs.experiment());
        if let Some(path) = &opts.resume {
            net.load(path)?;
        }
        let mut trainer = scratch::train::Trainer::new(net, SGDMomentum::new(0.01, 0.9, Decay::None)?);
        let report = trainer.fit(&train, &test, &options(opts, engine), &mut progress)?;
        let net = &mut trainer.net;
        net.save(opts.outputs.checkpoint(engine))?;
        let recon = net.forward(&test.select(&index).x, Mode::Eval)?.mapv(|v| v.as_f64());
        let mut codes = Vec::new();
        for &start in &chunks {
            let mut h = test.x.slice_axis(Axis(0), (start..(start + 500).min(test.len())).into()).to_owned();
            for (_, layer) in &net.leaves()[..AUTOENCODER_ENCODER_LAYERS] {
                h = layer.infer(h)?;
            }
            codes.push(h.mapv(|v| v.as_f64()).into_dimensionality::<Ix2>()?);
        }
        (report, recon, codes)
    } else {
        let vs = torch::var_store::<F>(opts.device.resolve()?);
        let mut model = torch::Net::new(vs.root(), &spec, &mut RandomState::new(opts.seed))?;
        model.set_metadata(crate::experiments::resume::EXPERIMENT, opts.outputs.experiment());
        if let Some(path) = &opts.resume {
            model.load(path)?;
        }
        let optim = torch::optim::SGDMomentum::new(0.01, 0.9, Decay::None)?;
        let mut trainer = torch::train::Trainer::new(model, loss, optim);
        let report = trainer.fit(&train, &test, &options(opts, engine), &mut progress)?;
        let model = &trainer.net;
        model.save(opts.outputs.checkpoint(engine))?;
        let recon = tch::no_grad(|| model.f_forward_t(&model.input(&to_tensor(&test.select(&index).x)), false))?;
        let recon = to_array::<f64>(&recon);
        let mut codes = Vec::new();
        for &start in &chunks {
            let x = test.x.slice_axis(Axis(0), (start..(start + 500).min(test.len())).into()).to_owned();
            let mut h = model.input(&to_tensor(&x));
            for (_, layer) in &model.leaves()[..AUTOENCODER_ENCODER_LAYERS] {
                h = tch::no_grad(|| layer.f_forward_t(&h, false))?;
            }
            codes.push(to_array::<f64>(&h).into_dimensionality::<Ix2>()?);
        }
        (report, recon, codes)
    };
    let views: Vec<_> = codes.iter().map(|c| c.view()).collect();
    let codes = ndarray::concatenate(Axis(0), &views)?;
    let test_mse = report.evaluations.last().map_or(f64::NAN, |e| e.loss);
    let reconstructions = recon.outer_iter().map(|r| r.iter().copied().collect()).collect();
    Ok(AeResult { engine, report, test_mse, reconstructions, codes })
}

/// Trains the autoencoder on `m` with the selected engines in `F`; returns each engine's result.
///
/// # Errors
/// An unavailable device, a checkpoint that does not fit, a training failure, or a file that cannot
/// be written.
pub fn run<F: TorchFloat>(m: &Mnist, opts: &AeOptions) -> Result<Vec<AeResult>> {
    opts.outputs.create_dir()?;
    let name = opts.outputs.experiment();
    opts.engines
        .iter()
        .map(|e| run_engine::<F>(e, m, opts).with_context(|| format!("{name}: the {e} engine")))
        .collect()
}

/// The first two principal components of the rows of `x`, by power iteration on the covariance
/// matrix with deflation; returns the rows projected onto them, `(n, 2)`.
pub fn principal_components(x: &Array2<f64>) -> Array2<f64> {
    let mean = x.mean_axis(Axis(0)).expect("rows");
    let centred = x - &mean;
    let mut cov = centred.t().dot(&centred) / (x.nrows().max(2) - 1) as f64;
    let d = cov.nrows();
    let mut components = Array2::zeros((d, 2));
    for k in 0..2 {
        let mut v = ndarray::Array1::from_elem(d, 1.0 / (d as f64).sqrt());
        for _ in 0..500 {
            let w = cov.dot(&v);
            let norm = w.dot(&w).sqrt();
            if norm == 0.0 {
                break;
            }
            v = w / norm;
        }
        let lambda = v.dot(&cov.dot(&v));
        cov = cov - lambda * &v.view().insert_axis(Axis(1)).dot(&v.view().insert_axis(Axis(0)));
        components.column_mut(k).assign(&v);
    }
    centred.dot(&components)
}

/// The results as a table, beside the book's test MSE (`book`, on MNIST only).
pub fn table(results: &[AeResult], book: Option<f64>) -> Table {
    let mut t = Table::new(
        "Convolutional autoencoder ([-1, 1] scaling): test mean squared error",
        &["engine", "epochs", "test MSE", "book", "s/epoch"],
    );
    for r in results {
        t.push(vec![
            r.engine.to_string(),
            r.report.epochs_trained.to_string(),
            format!("{:.4}", r.test_mse),
            book.map_or("-".into(), |b| format!("{b:.4}")),
            format!("{:.1}", r.report.seconds_per_epoch()),
        ]);
    }
    t
}

/// The metrics of the run of experiment `name`: each engine's training and test-loss curves and its
/// final numbers.
pub fn metrics(name: &str, dtype: &str, results: &[AeResult]) -> Metrics {
    let mut m = Metrics::new(name, dtype, "epoch");
    for r in results {
        m.fit_curves(r.engine, &r.report, 1.0);
        let epochs = r.report.epochs_trained as f64;
        m.summary(
            r.engine.name(),
            &[("test_mse", r.test_mse), ("epochs", epochs), ("seconds_per_epoch", r.report.seconds_per_epoch())],
        );
    }
    m
}

/// Test images above each engine's reconstructions: `<experiment>-reconstructions.png`.
fn reconstructions_chart(out: &Outputs) -> PathBuf {
    out.file("reconstructions.png")
}

/// `engine`'s codes of the test images: `<experiment>-codes-<engine>.png`.
fn codes_chart(out: &Outputs, engine: Engine) -> PathBuf {
    out.file(&format!("codes-{engine}.png"))
}

/// The files the autoencoder writes: its PNGs, its metrics, and each engine's final and best evaluated
/// model.
pub fn files(out: &Outputs, engines: Engines) -> Vec<PathBuf> {
    let mut files = vec![reconstructions_chart(out), out.loss_chart()];
    files.extend(engines.iter().map(|engine| codes_chart(out, engine)));
    files.extend(out.metrics());
    for engine in engines.iter() {
        files.extend([out.checkpoint(engine), out.best_checkpoint(engine)]);
    }
    files
}

/// Writes the PNGs: test images above each engine's reconstructions, the loss curves, and each
/// engine's codes projected onto two principal components.
///
/// # Errors
/// If a file cannot be written.
pub fn plots(out: &Outputs, m: &Mnist, results: &[AeResult]) -> Result<Vec<PathBuf>> {
    let index = shown(&m.test_labels);
    let (lo, hi) = m.train_images.iter().fold((u8::MAX, u8::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = f64::from(hi - lo).max(1.0);
    let originals: Vec<Vec<f64>> = index
        .iter()
        .map(|&i| m.test_images.row(i).iter().map(|&v| (f64::from(v) - f64::from(lo)) / span * 2.0 - 1.0).collect())
        .collect();
    let mut rows = vec![("test images".to_string(), originals)];
    rows.extend(results.iter().map(|r| (format!("{} output", r.engine), r.reconstructions.clone())));
    let grid = reconstructions_chart(out);
    image_grid(&grid, &rows, 28, 3)?;
    let runs: Vec<_> = results.iter().map(|r| (r.engine, &r.report)).collect();
    let title = format!("{}: Autoencoder(28), test mean squared error", out.experiment());
    fit_chart(&out.loss_chart(), &title, &runs)?;
    let mut paths = vec![grid, out.loss_chart()];
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    for r in results {
        let projected = principal_components(&r.codes);
        let points: Vec<(f64, f64, usize)> =
            projected.outer_iter().zip(&m.test_labels).map(|(p, &l)| (p[0], p[1], usize::from(l))).collect();
        let path = codes_chart(out, r.engine);
        let title = format!("{} codes of the 10 000 test images, first two principal components", r.engine);
        scatter(&path, &title, &points, &classes)?;
        paths.push(path);
    }
    Ok(paths)
}

/// The autoencoder with its images loaded and its options checked.
struct AeRun<F> {
    experiment: &'static Experiment,
    images: Rc<Mnist>,
    mnist: bool,
    opts: AeOptions,
    dtype: std::marker::PhantomData<F>,
}

impl<F: TorchFloat> Prepared for AeRun<F> {
    fn run(self: Box<Self>) -> Result<Ran> {
        let (m, opts) = (&*self.images, &self.opts);
        let results = run::<F>(m, opts)?;
        let book = self.experiment.book.and_then(|b| b.printed.value()).filter(|_| self.mnist);
        println!("{}", table(&results, book).render());
        let mut files = plots(&opts.outputs, m, &results)?;
        files.extend(metrics(self.experiment.name, F::NAME, &results).write(&opts.outputs)?);
        for engine in opts.engines.iter() {
            files.push(opts.outputs.checkpoint(engine));
            files.extend(Some(opts.outputs.best_checkpoint(engine)).filter(|p| p.exists()));
        }
        Ok(Ran { files, checks: Vec::new() })
    }
}

/// Loads the images (once for all experiments of a run that use them) and checks a checkpoint to
/// resume from.
///
/// # Errors
/// Missing or malformed data, or a checkpoint of another network.
pub fn prepare(e: &'static Experiment, settings: Settings, cache: &mut Cache) -> Result<Box<dyn Prepared>> {
    match settings.options.dtype() {
        Dtype::F32 => prepare_typed::<f32>(e, settings, cache),
        Dtype::F64 => prepare_typed::<f64>(e, settings, cache),
    }
}

fn prepare_typed<F: TorchFloat>(
    e: &'static Experiment,
    settings: Settings,
    cache: &mut Cache,
) -> Result<Box<dyn Prepared>> {
    let o = &settings.options;
    let dir = settings.data.join(o.dataset().folder());
    let images = cache.get(dir.display().to_string(), || Ok(mnist::load(&dir)?))?;
    if let Some(path) = o.resume() {
        resume::check::<F>(path, &book::autoencoder(), LOSS, e.name)?;
    }
    let opts = AeOptions {
        engines: o.engines(),
        epochs: o.count(Opt::Epochs).unwrap_or(1),
        seed: o.seed().unwrap_or(SEED),
        quiet: settings.quiet,
        device: o.device(),
        resume: o.resume().map(std::path::Path::to_path_buf),
        outputs: settings.outputs,
    };
    let mnist = o.dataset() == crate::experiments::options::ImageSet::Mnist;
    Ok(Box::new(AeRun::<F> { experiment: e, images, mnist, opts, dtype: std::marker::PhantomData }))
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn principal_components_find_the_directions_of_largest_variance() {
        // Points spread along (3, 4)/5 with a little spread along (-4, 3)/5.
        let x = array![[3.0, 4.0], [-3.0, -4.0], [6.0, 8.0], [-6.0, -8.0], [-0.4, 0.3], [0.4, -0.3]];
        let p = principal_components(&x);
        let first: Vec<f64> = p.column(0).iter().map(|v| v.abs()).collect();
        assert!((first[0] - 5.0).abs() < 1e-9 && (first[2] - 10.0).abs() < 1e-9, "{p}");
        assert!((p[[4, 1]].abs() - 0.5).abs() < 1e-9, "{p}");
        assert!(p.column(0).iter().take(4).zip(p.column(1)).all(|(_, b)| b.abs() < 1e-9));
    }
}
