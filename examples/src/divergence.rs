//! Why two correct engines can end a long run in different places: at a high learning rate the training
//! itself amplifies rounding differences exponentially. This experiment trains chapter 4's deep network
//! (784-178-46-10, tanh, momentum 0.9) on 6 000 MNIST images in f64 three times from the same weights:
//! from scratch, from scratch with one weight changed by one part in 10¹⁵, and on libtorch; and prints
//! how far apart the batch losses are as training goes on, at the book's learning rate and at a lower one.

use std::path::{Path, PathBuf};

use anyhow::Result;
use ndarray::{s, Array2};
use scratch::data::mnist;
use scratch::network::{InitSeeding, NeuralNetwork};
use scratch::ops::Activation;
use scratch::optim::{Decay, SGDMomentum};
use scratch::rng::RandomState;
use scratch::spec::{book, LossSpec, WeightInit};
use scratch::train::{Dataset, FitOptions, Observer, Trainer};

use crate::experiments::{Opt, Outputs, Prepared, Ran, Settings};
use crate::table::Table;

/// Records every batch loss.
struct Losses(Vec<f64>);

impl Observer for Losses {
    fn on_batch(&mut self, _epoch: usize, _batch: usize, loss: f64) {
        self.0.push(loss);
    }
}

/// The options `divergence` takes: none, its settings are fixed and it always runs both engines.
pub const OPTIONS: &[Opt] = &[];

/// The learning rates compared: the book's, and one at which training is stable.
pub const RATES: [f64; 2] = [0.2, 0.03];

/// The steps at which the losses are compared.
pub const STEPS: [usize; 7] = [10, 50, 100, 200, 400, 1000, 2000];

/// The differences measured at one learning rate.
pub struct RoundingDrift {
    /// The initial learning rate.
    pub rate: f64,
    /// At each of [`STEPS`], the relative difference of the batch loss of the perturbed from-scratch run,
    /// and of the torch run, from the from-scratch run.
    pub differences: Vec<(f64, f64)>,
}

/// The first 6 000 MNIST training images under `data_dir`, with the book's scaling.
///
/// # Errors
/// Missing or malformed data.
pub fn load(data_dir: &Path) -> Result<Dataset<f64>> {
    let m = mnist::load(data_dir.join("mnist"))?;
    let (x, _) = m.book_scaled::<f64>();
    let y: Array2<f64> = mnist::one_hot(&m.train_labels, 10)?;
    Ok(Dataset::new(x.slice(s![..6000, ..]).to_owned().into_dyn(), y.slice(s![..6000, ..]).to_owned().into_dyn())?)
}

/// Runs the experiment on `train` at each of `rates`.
///
/// # Errors
/// A training failure.
pub fn run(train: &Dataset<f64>, rates: &[f64]) -> Result<Vec<RoundingDrift>> {
    let hidden = [(178, Activation::Tanh), (46, Activation::Tanh)];
    let spec = book::chapter4_mlp(&hidden, Activation::Linear, WeightInit::Glorot, None);
    let loss = LossSpec::CROSS_ENTROPY;
    // 20 epochs of 100 batches; evaluation only at the end (on the training rows: it is not the point).
    let options = FitOptions {
        epochs: 20,
        eval_every: 20,
        batch_size: 60,
        seed: 190_119,
        restart: false,
        init_seeding: InitSeeding::Stream,
        early_stopping: false,
        eval_batches: None,
        drop_last: false,
        checkpoint: None,
    };
    let mut out = Vec::new();
    for &lr in rates {
        let decay = Decay::Exponential { final_lr: lr / 4.0 };
        let scratch_run = |perturb: bool| -> Result<Vec<f64>> {
            let mut net = NeuralNetwork::<f64>::from_spec(&spec, loss.build::<f64>(), &mut RandomState::new(1))?;
            if perturb {
                let mut params = net.params_mut();
                params[0].1.value[[0, 0]] *= 1.0 + 1e-15;
            }
            let mut trainer = Trainer::new(net, SGDMomentum::new(lr, 0.9, decay)?);
            let mut losses = Losses(Vec::new());
            trainer.fit(train, train, &options, &mut losses)?;
            Ok(losses.0)
        };
        let (a, b) = (scratch_run(false)?, scratch_run(true)?);
        let vs = torch::var_store::<f64>(tch::Device::Cpu);
        let model = torch::Net::new(vs.root(), &spec, &mut RandomState::new(1))?;
        let mut trainer = torch::train::Trainer::new(model, loss, torch::optim::SGDMomentum::new(lr, 0.9, decay)?);
        let mut losses = Losses(Vec::new());
        trainer.fit(train, train, &options, &mut losses)?;
        let c = losses.0;
        let rel = |p: f64, q: f64| (p - q).abs() / q.abs();
        let differences = STEPS.iter().map(|&s| (rel(b[s - 1], a[s - 1]), rel(c[s - 1], a[s - 1]))).collect();
        out.push(RoundingDrift { rate: lr, differences });
    }
    Ok(out)
}

/// The results as a table.
pub fn table(results: &[RoundingDrift]) -> Table {
    let mut headers = vec!["learning rate".to_string(), "compared with scratch".to_string()];
    headers.extend(STEPS.iter().map(|s| format!("step {s}")));
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut t = Table::new("Relative difference of the batch loss (f64, deep tanh network, momentum 0.9)", &headers);
    for d in results {
        for (label, pick) in [("scratch, one weight x (1 + 1e-15)", 0), ("torch", 1)] {
            let mut row = vec![format!("{}", d.rate), label.to_string()];
            row.extend(d.differences.iter().map(|d| format!("{:.0e}", if pick == 0 { d.0 } else { d.1 })));
            t.push(row);
        }
    }
    t
}

/// The files `divergence` writes: none, it prints a table.
pub fn files(_: &Outputs) -> Vec<PathBuf> {
    Vec::new()
}

/// `divergence` with its images loaded.
struct DivergenceRun {
    train: Dataset<f64>,
}

impl Prepared for DivergenceRun {
    fn run(self: Box<Self>) -> Result<Ran> {
        println!("{}", table(&run(&self.train, &RATES)?).render());
        Ok(Ran::default())
    }
}

/// Loads the images.
///
/// # Errors
/// Missing or malformed data.
pub fn prepare(settings: Settings) -> Result<Box<dyn Prepared>> {
    Ok(Box::new(DivergenceRun { train: load(&settings.data)? }))
}
