//! Training on libtorch with the same loop, options, report and observer as the from-scratch trainer
//! ([`scratch::train`]): the same seeded batch order, evaluation every `eval_every` epochs, and early
//! stopping that restores the best evaluated model.

use std::time::Instant;

use scratch::network::InitSeeding;
use scratch::ops::Mode;
use scratch::rng::RandomState;
use scratch::train::{Dataset, Evaluation, FitOptions, FitReport, Observer};
use tch::Tensor;

use crate::convert::{to_tensor, TorchFloat};
use crate::model::Model;
use crate::optim::Optimizer;
use crate::Result;

/// Trains a [`Model`] with an [`Optimizer`].
pub struct Trainer<O: Optimizer> {
    /// The model being trained.
    pub model: Model,
    /// The optimizer updating it.
    pub optim: O,
}

fn diverged(epoch: usize, batch: usize, what: String) -> crate::Error {
    scratch::Error::Diverged { epoch, batch, what }.into()
}

impl<O: Optimizer> Trainer<O> {
    /// A trainer for `model` with `optim`.
    pub fn new(model: Model, optim: O) -> Self {
        Trainer { model, optim }
    }

    /// One step on a batch: forward, loss, backward, update. Returns the loss.
    ///
    /// # Errors
    /// Shapes that do not fit, or a non-finite loss or gradient (naming `epoch` and `batch`).
    pub fn train_batch(&mut self, x: &Tensor, y: &Tensor, (epoch, batch): (usize, usize)) -> Result<f64> {
        self.model.zero_grad();
        let loss = self.model.forward_loss(x, y, Mode::Train)?;
        loss.backward();
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(diverged(epoch, batch, "loss".into()));
        }
        let params = self.model.named_parameters();
        for (name, p) in &params {
            if p.grad().isfinite().all().int64_value(&[]) == 0 {
                return Err(diverged(epoch, batch, format!("the gradient of {name}")));
            }
        }
        self.optim.step(&params)?;
        Ok(value)
    }

    /// Trains on `train`, evaluating on `test`, exactly as [`scratch::train::Trainer::fit`] does: with
    /// the same options the two engines see the same initial weights and the same batches in the same
    /// order.
    ///
    /// # Errors
    /// Invalid options, shapes that do not fit the model, or divergence.
    pub fn fit<F: TorchFloat>(
        &mut self,
        train: &Dataset<F>,
        test: &Dataset<F>,
        options: &FitOptions,
        observer: &mut dyn Observer,
    ) -> Result<FitReport> {
        if options.epochs == 0 || options.eval_every == 0 || options.batch_size == 0 {
            return Err(scratch::Error::InvalidArgument(format!(
                "epochs, eval_every and batch_size must be positive: {options:?}"
            ))
            .into());
        }
        let device = self.model.device();
        let (x_train, y_train) = (self.model.input(&to_tensor(&train.x)), self.model.input(&to_tensor(&train.y)));
        let (x_test, y_test) = (self.model.input(&to_tensor(&test.x)), self.model.input(&to_tensor(&test.y)));
        let n = train.len();
        let mut rng = RandomState::new(options.seed);
        let mut first_perm = None;
        if options.restart {
            if let InitSeeding::BookReseed(_) = options.init_seeding {
                first_perm = Some(rng.permutation(n));
            }
            self.model.reinitialize(&mut rng, options.init_seeding);
        }
        self.optim.start(options.epochs);

        observer.on_start(options.epochs, n.div_ceil(options.batch_size));
        let mut report = FitReport::default();
        let mut best: Option<(Evaluation, Vec<Tensor>)> = None;
        let mut order: Vec<usize> = (0..n).collect();
        for epoch in 1..=options.epochs {
            let started = Instant::now();
            let perm = first_perm.take().unwrap_or_else(|| rng.permutation(n));
            order = perm.iter().map(|&i| order[i]).collect();
            for (b, rows) in order.chunks(options.batch_size).enumerate() {
                let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
                let index = Tensor::from_slice(&index).to_device(device);
                let (xb, yb) = (x_train.index_select(0, &index), y_train.index_select(0, &index));
                let loss = self.train_batch(&xb, &yb, (epoch, b + 1))?;
                report.batch_losses.push(loss);
                observer.on_batch(epoch, b + 1, loss);
            }
            report.train_time += started.elapsed();
            report.epochs_trained = epoch;

            if epoch % options.eval_every == 0 {
                let loss = tch::no_grad(|| self.model.forward_loss(&x_test, &y_test, Mode::Eval))?.double_value(&[]);
                let eval = Evaluation { epoch, loss };
                let improved = best.as_ref().is_none_or(|(b, _)| loss < b.loss);
                report.evaluations.push(eval);
                observer.on_eval(&eval, improved);
                if improved {
                    best = Some((eval, self.model.snapshot()));
                } else if options.early_stopping {
                    let (_, snapshot) = best.as_ref().expect("a first evaluation always improves");
                    self.model.restore(snapshot);
                    report.stopped_after = Some(epoch);
                    break;
                }
            }
            self.optim.end_epoch();
        }
        report.best = best.map(|(eval, _)| eval);
        observer.on_end(&report);
        Ok(report)
    }
}
