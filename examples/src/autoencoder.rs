//! Chapter 7's unsupervised learning: a convolutional autoencoder on MNIST, trained in both engines from
//! the same weights, with its test reconstruction error (the book printed 0.0693 after one epoch), a
//! PNG of test images beside their reconstructions, and a PNG of the 10 000 test codes projected onto
//! their first two principal components, coloured by digit.

use std::path::{Path, PathBuf};

use anyhow::Result;
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

use crate::metrics::Metrics;
use crate::mnist::Engines;
use crate::plot::{fit_chart, image_grid, scatter};
use crate::progress::ProgressObserver;
use crate::table::Table;

/// The test MSE the book printed after one epoch (on its `[-1, 1]` scaling).
pub const BOOK_TEST_MSE: f64 = 0.069_289_825_856_685_64;

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
    /// Write each engine's final model (`ch7-autoencoder-<engine>.safetensors`) and best evaluated one
    /// (`-best`) into this folder.
    pub checkpoints: Option<PathBuf>,
}

/// What one engine reached.
pub struct AeResult {
    /// `scratch` or `torch`.
    pub engine: &'static str,
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

/// The experiment's name, in file names.
const NAME: &str = "ch7-autoencoder";

fn options(opts: &AeOptions, engine: &str) -> Result<FitOptions> {
    Ok(FitOptions {
        epochs: opts.epochs,
        eval_every: 1,
        batch_size: 60,
        seed: opts.seed,
        restart: opts.resume.is_none(),
        early_stopping: false,
        checkpoint: crate::checkpoint_path(opts.checkpoints.as_deref(), NAME, &format!("{engine}-best"))?,
        ..Default::default()
    })
}

/// Shown images: the first of each digit in the test set.
fn shown(labels: &[u8]) -> Vec<usize> {
    (0..10u8).filter_map(|d| labels.iter().position(|&l| l == d)).collect()
}

fn run_engine<F: TorchFloat>(engine: &'static str, m: &Mnist, opts: &AeOptions) -> Result<AeResult> {
    let (train, test) = scaled::<F>(m)?;
    let spec = book::autoencoder();
    let loss = LossSpec::MeanSquaredError(MseReduction::Mean);
    let mut progress = ProgressObserver::new(format!("{NAME} {engine}"), opts.quiet);
    let index = shown(&m.test_labels);
    let chunks: Vec<usize> = (0..test.len()).step_by(500).collect();
    let (report, recon, codes) = if engine == "scratch" {
        let mut net = NeuralNetwork::<F>::from_spec(&spec, loss.build::<F>(), &mut RandomState::new(opts.seed))?;
        if let Some(path) = &opts.resume {
            net.load(path)?;
        }
        let mut trainer = scratch::train::Trainer::new(net, SGDMomentum::new(0.01, 0.9, Decay::None)?);
        let report = trainer.fit(&train, &test, &options(opts, engine)?, &mut progress)?;
        let net = &mut trainer.net;
        if let Some(path) = crate::checkpoint_path(opts.checkpoints.as_deref(), NAME, engine)? {
            net.save(path)?;
        }
        let recon = net.forward(&test.select(&index).x, Mode::Eval)?.mapv(|v| v.as_f64());
        let mut codes = Vec::new();
        for &start in &chunks {
            let mut h = test.x.slice_axis(Axis(0), (start..(start + 500).min(test.len())).into()).to_owned();
            for layer in &mut net.layers_mut()[..AUTOENCODER_ENCODER_LAYERS] {
                h = layer.forward(h, Mode::Eval)?;
            }
            codes.push(h.mapv(|v| v.as_f64()).into_dimensionality::<Ix2>()?);
        }
        (report, recon, codes)
    } else {
        let vs = torch::var_store::<F>(opts.device.resolve()?);
        let model = torch::Net::new(vs.root(), &spec, &mut RandomState::new(opts.seed))?;
        if let Some(path) = &opts.resume {
            model.load(path)?;
        }
        let optim = torch::optim::SGDMomentum::new(0.01, 0.9, Decay::None)?;
        let mut trainer = torch::train::Trainer::new(model, loss, optim);
        let report = trainer.fit(&train, &test, &options(opts, engine)?, &mut progress)?;
        let model = &trainer.net;
        if let Some(path) = crate::checkpoint_path(opts.checkpoints.as_deref(), NAME, engine)? {
            model.save(path)?;
        }
        let recon = tch::no_grad(|| model.f_forward_t(&model.input(&to_tensor(&test.select(&index).x)), false))?;
        let recon = to_array::<f64>(&recon);
        let mut codes = Vec::new();
        for &start in &chunks {
            let x = test.x.slice_axis(Axis(0), (start..(start + 500).min(test.len())).into()).to_owned();
            let mut h = model.input(&to_tensor(&x));
            for layer in &model.layers()[..AUTOENCODER_ENCODER_LAYERS] {
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

/// Trains the autoencoder with the selected engines in `F`; returns the MNIST data and each engine's
/// result.
///
/// # Errors
/// Missing data, an unavailable device, or a training failure.
pub fn run<F: TorchFloat>(data_dir: &Path, opts: &AeOptions) -> Result<(Mnist, Vec<AeResult>)> {
    let m = mnist::load(data_dir)?;
    let results = opts.engines.names().into_iter().map(|e| run_engine::<F>(e, &m, opts)).collect::<Result<_>>()?;
    Ok((m, results))
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

/// The results as a table.
pub fn table(results: &[AeResult]) -> Table {
    let mut t = Table::new(
        "Convolutional autoencoder on MNIST ([-1, 1] scaling): test mean squared error",
        &["engine", "epochs", "test MSE", "book", "s/epoch"],
    );
    for r in results {
        t.push(vec![
            r.engine.into(),
            r.report.epochs_trained.to_string(),
            format!("{:.4}", r.test_mse),
            format!("{BOOK_TEST_MSE:.4}"),
            format!("{:.1}", r.report.seconds_per_epoch()),
        ]);
    }
    t
}

/// The metrics of the run: each engine's training and test-loss curves and its final numbers.
pub fn metrics(dtype: &str, results: &[AeResult]) -> Metrics {
    let mut m = Metrics::new(NAME, dtype, "epoch");
    for r in results {
        m.fit_curves(r.engine, &r.report, 1.0);
        let epochs = r.report.epochs_trained as f64;
        m.summary(
            r.engine,
            &[("test_mse", r.test_mse), ("epochs", epochs), ("seconds_per_epoch", r.report.seconds_per_epoch())],
        );
    }
    m
}

/// Writes the PNGs: test images above each engine's reconstructions, and each engine's codes projected
/// onto two principal components.
///
/// # Errors
/// If a file cannot be written.
pub fn plots(out: &Path, m: &Mnist, results: &[AeResult]) -> Result<Vec<PathBuf>> {
    let index = shown(&m.test_labels);
    let (lo, hi) = m.train_images.iter().fold((u8::MAX, u8::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = f64::from(hi - lo).max(1.0);
    let originals: Vec<Vec<f64>> = index
        .iter()
        .map(|&i| m.test_images.row(i).iter().map(|&v| (f64::from(v) - f64::from(lo)) / span * 2.0 - 1.0).collect())
        .collect();
    let mut rows = vec![("test images".to_string(), originals)];
    rows.extend(results.iter().map(|r| (format!("{} output", r.engine), r.reconstructions.clone())));
    let grid = out.join(format!("{NAME}-reconstructions.png"));
    image_grid(&grid, &rows, 28, 3)?;
    let runs: Vec<_> = results.iter().map(|r| (r.engine, &r.report)).collect();
    let title = format!("{NAME}: Autoencoder(28), test mean squared error");
    let mut paths = vec![grid, fit_chart(out, NAME, &title, &runs)?];
    let classes: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    for r in results {
        let projected = principal_components(&r.codes);
        let points: Vec<(f64, f64, usize)> =
            projected.outer_iter().zip(&m.test_labels).map(|(p, &l)| (p[0], p[1], usize::from(l))).collect();
        let path = out.join(format!("{NAME}-codes-{}.png", r.engine));
        let title = format!("{} codes of the 10 000 test images, first two principal components", r.engine);
        scatter(&path, &title, &points, &classes)?;
        paths.push(path);
    }
    Ok(paths)
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
