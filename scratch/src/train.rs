//! Training: mini-batch epochs, periodic evaluation, and early stopping (the book's `Trainer`).
//!
//! [`Trainer::fit`] follows the book's loop:
//!
//! 1. seed a generator with `seed`; with `restart`, re-initialise the network from it;
//! 2. every epoch, permute the training rows (the permutation composes with the previous epoch's order,
//!    as the book's `X, y = permute_data(X, y)` does), and train on contiguous batches of `batch_size`
//!    rows, the last one possibly smaller (or left out, with `drop_last`, as a PyTorch `DataLoader`
//!    can): forward, loss, backward, optimizer step;
//! 3. every `eval_every` epochs, compute the loss on the whole test set (saving the model to
//!    `checkpoint`, if given, whenever it improves); with early stopping, stop at the first evaluation
//!    that does not improve on the best so far, and **restore the best evaluated model**.
//!
//! The book restores a copy taken at the start of the failing epoch instead, which is neither the best
//! model nor the one its message names; this trainer restores the best one.
//!
//! Training stops with [`Error::Diverged`] when a loss stops being finite or the evaluation loss grows
//! a thousandfold: see [`divergence`] for the rule and why.
//!
//! [`Trainer::fit_loader`] runs the same loop on the batches of a [`DataLoader`] (chapter 7's
//! `train_dataloader`): the loader's own batch size, shuffling and `drop_last` replace step 2's.

use std::time::{Duration, Instant};

use ndarray::{ArrayBase, ArrayD, Axis, Data, Dimension};

use crate::data::DataLoader;
use crate::losses::class_targets;
use crate::network::{InitSeeding, NeuralNetwork, Snapshot};
use crate::ops::Mode;
use crate::optim::Optimizer;
use crate::rng::RandomState;
use crate::{Error, Float, Result};

pub mod divergence;

pub use divergence::Divergence;

/// Inputs and targets with the same number of rows (the first axis).
#[derive(Clone, Debug)]
pub struct Dataset<F> {
    /// Inputs, `(n, ...)`.
    pub x: ArrayD<F>,
    /// Targets, `(n, ...)`.
    pub y: ArrayD<F>,
}

impl<F: Float> Dataset<F> {
    /// Pairs `x` and `y`.
    ///
    /// # Errors
    /// If they have different numbers of rows, or none, or a value that is not finite (naming the
    /// array, the row and the column: the position within the row's values in row-major order).
    pub fn new(x: ArrayD<F>, y: ArrayD<F>) -> Result<Self> {
        let data = Dataset { x, y };
        data.check("dataset")?;
        Ok(data)
    }

    /// Checks what [`Dataset::new`] checks, for a dataset built by hand (its fields are public); `what`
    /// names it in the error (`the test set`).
    ///
    /// # Errors
    /// As [`Dataset::new`].
    pub fn check(&self, what: &str) -> Result<()> {
        let (x, y) = (&self.x, &self.y);
        let (nx, ny) = (x.shape().first().copied().unwrap_or(0), y.shape().first().copied().unwrap_or(0));
        if nx == 0 || x.is_empty() {
            return Err(Error::shape(what, "inputs with at least one row", x.shape()));
        }
        if nx != ny || y.is_empty() {
            return Err(Error::shape(what, format!("targets with the inputs' {nx} rows"), y.shape()));
        }
        for (name, array) in [("x (the inputs)", x), ("y (the targets)", y)] {
            if let Some(at) = array.iter().position(|v| !v.is_finite()) {
                let per_row = array.len() / array.shape()[0];
                let value = array.iter().nth(at).map_or(f64::NAN, |v| v.as_f64());
                return Err(Error::InvalidArgument(format!(
                    "{what}: {name} row {}, column {} is {value}; every input and target must be finite",
                    at / per_row,
                    at % per_row
                )));
            }
        }
        Ok(())
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.x.shape()[0]
    }

    /// Whether there are no rows (never true for a constructed dataset).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset<F> {
        Dataset { x: self.x.select(Axis(0), indices), y: self.y.select(Axis(0), indices) }
    }
}

/// The settings of [`Trainer::fit`]; the defaults are the book's, except that the model is not
/// re-initialised ([`FitOptions::restart`]).
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Number of passes over the training set (book default 100).
    pub epochs: usize,
    /// Evaluate on the test set every this many epochs (book default 10).
    pub eval_every: usize,
    /// Rows per batch; the last batch of an epoch holds the remainder (book default 32).
    pub batch_size: usize,
    /// Seed of the generator for the batch order and, with `restart`, the initial weights (book default 1).
    pub seed: u32,
    /// Re-initialise the network from `seed` before training, as the book's trainer does. Off by
    /// default: `fit` trains the model as it is (a loaded model is fine-tuned); the book's experiments
    /// turn it on.
    pub restart: bool,
    /// How a restart seeds the layers; [`InitSeeding::BookReseed`] reproduces the book's streams.
    pub init_seeding: InitSeeding,
    /// Stop at the first evaluation that does not improve, restoring the best model (book default true).
    pub early_stopping: bool,
    /// Also evaluate every this many batches within an epoch, to follow training (the book's
    /// `conv_testing`); these evaluations do not take part in early stopping.
    pub eval_batches: Option<usize>,
    /// Leave out the last batch of an epoch when it is smaller than `batch_size` (PyTorch's
    /// `DataLoader(drop_last=True)`); by default it is trained on.
    pub drop_last: bool,
    /// Save the model to this file (safetensors, the format of both engines) at every end-of-epoch
    /// evaluation that improves on the best so far, so that the file holds the best evaluated model.
    pub checkpoint: Option<std::path::PathBuf>,
}

impl FitOptions {
    /// Checks the counts.
    ///
    /// # Errors
    /// Zero epochs, evaluation interval, batch size or batches between in-epoch evaluations, naming
    /// the setting.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("epochs", Some(self.epochs)),
            ("eval_every", Some(self.eval_every)),
            ("batch_size", Some(self.batch_size)),
            ("eval_batches", self.eval_batches),
        ];
        match counts.iter().find(|(_, n)| *n == Some(0)) {
            Some((name, _)) => Err(Error::InvalidArgument(format!("FitOptions: {name} must be at least 1, got 0"))),
            None => Ok(()),
        }
    }
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            epochs: 100,
            eval_every: 10,
            batch_size: 32,
            seed: 1,
            restart: false,
            init_seeding: InitSeeding::Stream,
            early_stopping: true,
            eval_batches: None,
            drop_last: false,
            checkpoint: None,
        }
    }
}

/// The model on the whole test set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// The epoch (from 1) in which, or after which, the model was evaluated.
    pub epoch: usize,
    /// The batch of the epoch after which it was evaluated (from 1), or `None` at the end of the epoch.
    pub batch: Option<usize>,
    /// Loss on the whole test set.
    pub loss: f64,
    /// The fraction of test rows whose largest output is at their target's largest value, when the
    /// targets are one-hot rows (classification).
    pub accuracy: Option<f64>,
}

/// The size of the slices a test set is evaluated in (to bound memory).
pub const EVAL_CHUNK: usize = 1000;

/// The loss and, for classes, the accuracy of a whole test set evaluated slice by slice: `eval` gives
/// the loss of rows `start..end`, the number of positions whose class was predicted right and the
/// number of positions (a row of a sequence has one per step). Losses are means over rows (or
/// elements), so the total is their row-weighted mean.
///
/// # Errors
/// Whatever `eval` returns.
pub fn evaluate_in_chunks<E>(
    rows: usize,
    classification: bool,
    mut eval: impl FnMut(usize, usize) -> std::result::Result<(f64, usize, usize), E>,
) -> std::result::Result<(f64, Option<f64>), E> {
    let (mut loss, mut correct, mut positions) = (0.0, 0, 0);
    for start in (0..rows).step_by(EVAL_CHUNK) {
        let end = (start + EVAL_CHUNK).min(rows);
        let (l, c, p) = eval(start, end)?;
        loss += l * (end - start) as f64;
        correct += c;
        positions += p;
    }
    Ok((loss / rows as f64, classification.then(|| correct as f64 / positions.max(1) as f64)))
}

/// What happened during [`Trainer::fit`].
#[derive(Clone, Debug, Default)]
pub struct FitReport {
    /// Every evaluation, in order (including a final non-improving one that stopped training).
    pub evaluations: Vec<Evaluation>,
    /// The training loss of every batch, in order.
    pub batch_losses: Vec<f64>,
    /// The best evaluation; with early stopping, the model now holds its parameters.
    pub best: Option<Evaluation>,
    /// The epoch after which early stopping ended training, if it did.
    pub stopped_after: Option<usize>,
    /// Epochs actually trained.
    pub epochs_trained: usize,
    /// Time spent training (not evaluating, also within an epoch).
    pub train_time: Duration,
}

impl FitReport {
    /// The number of batches in each epoch (at least 1).
    pub fn batches_per_epoch(&self) -> usize {
        (self.batch_losses.len() / self.epochs_trained.max(1)).max(1)
    }

    /// Training seconds per epoch trained.
    pub fn seconds_per_epoch(&self) -> f64 {
        self.train_time.as_secs_f64() / self.epochs_trained.max(1) as f64
    }

    /// Where in training `eval` happened, in epochs: `e` after epoch `e`, `e − 1 + b / batches` after
    /// batch `b` of epoch `e`.
    pub fn position(&self, eval: &Evaluation) -> f64 {
        eval.epoch as f64 - 1.0 + eval.batch.map_or(1.0, |b| b as f64 / self.batches_per_epoch() as f64)
    }
}

/// Receives progress from [`Trainer::fit`]: progress bars, logging. Every method does nothing by
/// default; `()` is the silent observer.
pub trait Observer {
    /// Training starts: `epochs` epochs of `batches` batches each.
    fn on_start(&mut self, _epochs: usize, _batches: usize) {}
    /// A batch of epoch `epoch` (from 1) was trained with training loss `loss`.
    fn on_batch(&mut self, _epoch: usize, _batch: usize, _loss: f64) {}
    /// The model was evaluated; `improved` tells whether this is the best so far.
    fn on_eval(&mut self, _eval: &Evaluation, _improved: bool) {}
    /// Training ended.
    fn on_end(&mut self, _report: &FitReport) {}
}

impl Observer for () {}

/// Trains a [`NeuralNetwork`] with an [`Optimizer`].
pub struct Trainer<F: Float, O: Optimizer<F>> {
    /// The network being trained.
    pub net: NeuralNetwork<F>,
    /// The optimizer updating it.
    pub optim: O,
}

/// The number of rows (positions of every axis but the last) whose largest prediction is at the
/// target's class: the largest value of a one-hot (or probability) row, or a class index.
///
/// # Errors
/// Targets that are neither (see [`class_targets`]).
pub fn correct_rows<F: Float>(prediction: &ArrayD<F>, target: &ArrayD<F>) -> Result<usize> {
    let argmax = |row: ndarray::ArrayView1<F>| {
        row.iter().enumerate().fold((0, F::neg_infinity()), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
    };
    let y = class_targets(prediction.shape(), target)?;
    let classes = y.ncols();
    let p = prediction.as_standard_layout();
    let p = p.to_shape((y.nrows(), classes)).expect("class_targets checked the sizes");
    Ok(p.outer_iter().zip(y.outer_iter()).filter(|(p, t)| argmax(p.view()) == argmax(t.view())).count())
}

/// Where the batches of each epoch come from, when not from [`FitOptions`]: a [`DataLoader`].
pub trait BatchOrder {
    /// The rows per batch.
    fn batch_size(&self) -> usize;
    /// The number of batches per epoch.
    fn batches(&self) -> usize;
    /// The order of the training rows in the next epoch; its first [`batches`](Self::batches) chunks
    /// of [`batch_size`](Self::batch_size) are the batches.
    fn next_order(&mut self) -> Vec<usize>;
}

/// One batch of an epoch, as [`fit_loop`] hands it to [`TrainingLoop::train_batch`].
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// The training rows.
    pub rows: &'a [usize],
    /// Where they start in the epoch's order (see [`TrainingLoop::start_epoch`]).
    pub start: usize,
    /// The epoch, from 1 (for error messages).
    pub epoch: usize,
    /// The batch within the epoch, from 1 (for error messages).
    pub index: usize,
}

/// What the training loop of [`fit_loop`] needs from a model and its optimizer. Both engines' trainers
/// implement it, so they share one loop, and so the same batch order and the same early stopping.
pub trait TrainingLoop {
    /// The error type of the engine.
    type Error: From<Error>;
    /// A copy of the parameters, to restore the best model.
    type Snapshot;

    /// Draws fresh parameters from `rng` with the given seeding.
    fn reinitialize(&mut self, rng: &mut RandomState, seeding: InitSeeding);
    /// Training starts for `epochs` epochs (the optimizer sets up its schedule).
    fn start(&mut self, epochs: usize);
    /// An epoch starts; its batches are consecutive chunks of `order` (training row indices).
    ///
    /// # Errors
    /// Whatever the engine returns (the torch engine copies the order to its device here).
    fn start_epoch(&mut self, _order: &[usize]) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
    /// Trains on one batch: forward, loss, backward, optimizer step. Returns the loss.
    fn train_batch(&mut self, batch: Batch<'_>) -> std::result::Result<f64, Self::Error>;
    /// The loss on the whole test set in evaluation mode and, for one-hot targets, the accuracy.
    fn evaluate(&mut self) -> std::result::Result<(f64, Option<f64>), Self::Error>;
    /// A copy of the parameters.
    fn snapshot(&self) -> Self::Snapshot;
    /// Sets the parameters back to a snapshot.
    fn restore(&mut self, snapshot: &Self::Snapshot) -> std::result::Result<(), Self::Error>;
    /// An epoch ended (the optimizer decays its rate).
    fn end_epoch(&mut self);
    /// Saves the parameters to `path`.
    fn save(&self, path: &std::path::Path) -> std::result::Result<(), Self::Error>;
}

/// The training loop of both engines: see the [module documentation](self). `rows` is the number of
/// training rows; with a `loader`, its batches replace those of the options' `batch_size`, `seed` and
/// `drop_last` (the seed still draws the initial weights).
///
/// # Errors
/// Invalid options, whatever a training step or an evaluation returns, or a divergence
/// ([`Error::Diverged`], by the rule of [`divergence`]).
pub fn fit_loop<T: TrainingLoop>(
    trainer: &mut T,
    rows: usize,
    options: &FitOptions,
    mut loader: Option<&mut dyn BatchOrder>,
    observer: &mut dyn Observer,
) -> std::result::Result<FitReport, T::Error> {
    options.validate()?;
    let mut rng = RandomState::new(options.seed);
    // The book draws the first epoch's permutation before its layers initialise (lazily, in the first
    // forward pass); with per-layer re-seeding that order shows in the numbers, so keep it.
    let mut first_perm = None;
    if options.restart {
        if let (InitSeeding::BookReseed(_), None) = (options.init_seeding, &loader) {
            first_perm = Some(rng.permutation(rows));
        }
        trainer.reinitialize(&mut rng, options.init_seeding);
    }
    trainer.start(options.epochs);

    let (batch_size, batches) = match &loader {
        Some(l) => (l.batch_size(), l.batches()),
        None if options.drop_last => (options.batch_size, rows / options.batch_size),
        None => (options.batch_size, rows.div_ceil(options.batch_size)),
    };
    if batches == 0 {
        return Err(Error::InvalidArgument(format!(
            "{rows} training rows make no full batch of {batch_size} (drop_last)"
        ))
        .into());
    }
    observer.on_start(options.epochs, batches);
    let mut divergence = Divergence::default();
    let mut report = FitReport::default();
    let mut best: Option<(Evaluation, T::Snapshot)> = None;
    let mut order: Vec<usize> = (0..rows).collect();
    for epoch in 1..=options.epochs {
        let (started, mut monitoring) = (Instant::now(), Duration::ZERO);
        order = match loader.as_mut() {
            Some(l) => l.next_order(),
            None => {
                let perm = first_perm.take().unwrap_or_else(|| rng.permutation(rows));
                perm.iter().map(|&i| order[i]).collect()
            }
        };
        trainer.start_epoch(&order)?;
        for (b, rows) in order.chunks(batch_size).take(batches).enumerate() {
            let loss = trainer.train_batch(Batch { rows, start: b * batch_size, epoch, index: b + 1 })?;
            divergence.batch(loss, epoch, b + 1)?;
            report.batch_losses.push(loss);
            observer.on_batch(epoch, b + 1, loss);
            if options.eval_batches.is_some_and(|n| (b + 1) % n == 0) {
                let evaluating = Instant::now();
                let (loss, accuracy) = trainer.evaluate()?;
                divergence.evaluation(loss, epoch, b + 1)?;
                monitoring += evaluating.elapsed();
                let eval = Evaluation { epoch, batch: Some(b + 1), loss, accuracy };
                report.evaluations.push(eval);
                observer.on_eval(&eval, best.as_ref().is_none_or(|(b, _)| eval.loss < b.loss));
            }
        }
        report.train_time += started.elapsed() - monitoring;
        report.epochs_trained = epoch;

        if epoch % options.eval_every == 0 {
            let (loss, accuracy) = trainer.evaluate()?;
            divergence.evaluation(loss, epoch, batches)?;
            let eval = Evaluation { epoch, batch: None, loss, accuracy };
            let improved = best.as_ref().is_none_or(|(b, _)| eval.loss < b.loss);
            report.evaluations.push(eval);
            observer.on_eval(&eval, improved);
            if improved {
                best = Some((eval, trainer.snapshot()));
                if let Some(path) = &options.checkpoint {
                    trainer.save(path)?;
                }
            } else if options.early_stopping {
                let (_, snapshot) = best.as_ref().expect("a first evaluation always improves");
                trainer.restore(snapshot)?;
                report.stopped_after = Some(epoch);
                break;
            }
        }
        trainer.end_epoch();
    }
    report.best = best.map(|(eval, _)| eval);
    observer.on_end(&report);
    Ok(report)
}

impl<F: Float, O: Optimizer<F>> Trainer<F, O> {
    /// A trainer for `net` with `optim`.
    pub fn new(net: NeuralNetwork<F>, optim: O) -> Self {
        Trainer { net, optim }
    }

    /// One step on a batch: forward, loss, backward, update. Returns the loss.
    ///
    /// # Errors
    /// Shapes that do not fit, or a non-finite loss or gradient (naming `epoch` and `batch`).
    pub fn train_batch<S, T, D, E>(
        &mut self,
        x: &ArrayBase<S, D>,
        y: &ArrayBase<T, E>,
        (epoch, batch): (usize, usize),
    ) -> Result<f64>
    where
        S: Data<Elem = F>,
        T: Data<Elem = F>,
        D: Dimension,
        E: Dimension,
    {
        let loss = self.net.train_batch(x, y)?.as_f64();
        Divergence::default().batch(loss, epoch, batch)?;
        for (name, p) in self.net.params() {
            let sum = p.grad.iter().fold(F::zero(), |acc, &g| acc + g).as_f64();
            if !sum.is_finite() {
                return Err(Error::not_finite(epoch, batch, format_args!("the gradient of {name}")));
            }
        }
        self.optim.step(&mut self.net.params_mut())?;
        self.optim.end_step();
        Ok(loss)
    }

    /// One epoch over the batches of `loader` (numbered `epoch` in errors); the batch losses.
    ///
    /// # Errors
    /// As [`Trainer::train_batch`].
    pub fn train_epoch(&mut self, loader: &mut crate::data::DataLoader<'_, F>, epoch: usize) -> Result<Vec<f64>> {
        loader.epoch().enumerate().map(|(b, batch)| self.train_batch(&batch.x, &batch.y, (epoch, b + 1))).collect()
    }

    /// Trains on `train`, evaluating on `test`; see the [module documentation](self) for the loop.
    ///
    /// # Errors
    /// Invalid options, shapes that do not fit the network (naming the layer), or a divergence
    /// ([`Error::Diverged`], naming the epoch and batch; see [`divergence`]).
    pub fn fit(
        &mut self,
        train: &Dataset<F>,
        test: &Dataset<F>,
        options: &FitOptions,
        observer: &mut dyn Observer,
    ) -> Result<FitReport> {
        train.check("the training set")?;
        test.check("the test set")?;
        fit_loop(&mut Session { trainer: self, train, test }, train.len(), options, None, observer)
    }

    /// Trains on the batches of `loader`, evaluating on `test`, as [`Trainer::fit`] does otherwise (the
    /// loader's batch size, shuffling and `drop_last` replace the options').
    ///
    /// ```
    /// use scratch::data::DataLoader;
    /// use scratch::prelude::*;
    ///
    /// // y = 2x + 1 on 64 points, learnt by one dense unit from batches of 16.
    /// let x = ndarray::Array2::from_shape_fn((64, 1), |(i, _)| i as f64 / 64.0).into_dyn();
    /// let data = Dataset::new(x.clone(), x.mapv(|v| 2.0 * v + 1.0))?;
    /// let layer = Dense::new(1, DenseSpec::new(1), &mut RandomState::new(0))?;
    /// let mut trainer = Trainer::new(NeuralNetwork::new(vec![Box::new(layer)], MeanSquaredError::new()), SGD::new(0.2)?);
    /// let mut loader = DataLoader::new(&data, 16)?.shuffle(3);
    /// let options = FitOptions { epochs: 200, eval_every: 50, early_stopping: false, ..Default::default() };
    /// let report = trainer.fit_loader(&mut loader, &data, &options, &mut ())?;
    /// assert_eq!(report.batch_losses.len(), 200 * 4);
    /// assert!(report.best.unwrap().loss < 1e-3);
    /// # Ok::<(), scratch::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Trainer::fit`].
    pub fn fit_loader(
        &mut self,
        loader: &mut DataLoader<'_, F>,
        test: &Dataset<F>,
        options: &FitOptions,
        observer: &mut dyn Observer,
    ) -> Result<FitReport> {
        let train = loader.dataset();
        test.check("the test set")?;
        fit_loop(&mut Session { trainer: self, train, test }, train.len(), options, Some(loader), observer)
    }
}

/// A [`Trainer`] with its data, as the [`TrainingLoop`] drives it.
struct Session<'a, F: Float, O: Optimizer<F>> {
    trainer: &'a mut Trainer<F, O>,
    train: &'a Dataset<F>,
    test: &'a Dataset<F>,
}

impl<F: Float, O: Optimizer<F>> TrainingLoop for Session<'_, F, O> {
    type Error = Error;
    type Snapshot = Snapshot<F>;

    fn reinitialize(&mut self, rng: &mut RandomState, seeding: InitSeeding) {
        self.trainer.net.reinitialize(rng, seeding);
    }

    fn start(&mut self, epochs: usize) {
        self.trainer.optim.start(epochs);
    }

    fn train_batch(&mut self, batch: Batch<'_>) -> Result<f64> {
        let data = self.train.select(batch.rows);
        self.trainer.train_batch(&data.x, &data.y, (batch.epoch, batch.index))
    }

    fn evaluate(&mut self) -> Result<(f64, Option<f64>)> {
        let (net, test) = (&mut self.trainer.net, self.test);
        let classification = net.classifies();
        evaluate_in_chunks(test.len(), classification, |start, end| {
            let x = test.x.slice_axis(Axis(0), (start..end).into());
            let y = test.y.slice_axis(Axis(0), (start..end).into());
            let prediction = net.forward(&x, Mode::Eval)?;
            let loss = net.loss_on(&prediction, &y.to_owned())?.as_f64();
            let classes = prediction.shape().last().copied().unwrap_or(1).max(1);
            let positions = prediction.len() / classes;
            let correct = if classification { correct_rows(&prediction, &y.to_owned())? } else { 0 };
            Ok((loss, correct, positions))
        })
    }

    fn snapshot(&self) -> Snapshot<F> {
        self.trainer.net.snapshot()
    }

    fn restore(&mut self, snapshot: &Snapshot<F>) -> Result<()> {
        self.trainer.net.restore(snapshot)
    }

    fn end_epoch(&mut self) {
        self.trainer.optim.end_epoch();
    }

    fn save(&self, path: &std::path::Path) -> Result<()> {
        self.trainer.net.save(path)
    }
}
