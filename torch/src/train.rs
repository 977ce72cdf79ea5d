//! Training on libtorch with the same loop, options, report and observer as the from-scratch trainer
//! ([`scratch::train`]): the same seeded batch order, evaluation every `eval_every` epochs, and early
//! stopping that restores the best evaluated model.

use scratch::network::InitSeeding;
use scratch::ops::Mode;
use scratch::rng::RandomState;
use scratch::train::{
    evaluate_in_chunks, fit_loop, is_classification, BatchOrder, Dataset, FitOptions, FitReport, Observer, TrainingLoop,
};
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

    /// One epoch over the batches of `loader` (the same batches the from-scratch trainer's
    /// [`scratch::train::Trainer::train_epoch`] sees from an identical loader); the batch losses.
    ///
    /// # Errors
    /// As [`Trainer::train_batch`].
    pub fn train_epoch<F: TorchFloat>(
        &mut self,
        loader: &mut scratch::data::DataLoader<'_, F>,
        epoch: usize,
    ) -> Result<Vec<f64>> {
        loader
            .epoch()
            .enumerate()
            .map(|(b, batch)| self.train_batch(&to_tensor(&batch.x), &to_tensor(&batch.y), (epoch, b + 1)))
            .collect()
    }

    /// Trains on `train`, evaluating on `test`, with the loop the from-scratch trainer uses
    /// ([`scratch::train::fit_loop`]): with the same options the two engines see the same initial
    /// weights and the same batches in the same order.
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
        self.fit_with(train, test, options, None, observer)
    }

    /// Trains on the batches of `loader`, evaluating on `test`, as [`Trainer::fit`] does otherwise: the
    /// loader's batch size, shuffling and `drop_last` replace the options' (as in the from-scratch
    /// [`scratch::train::Trainer::fit_loader`], which sees the same batches from an identical loader).
    ///
    /// # Errors
    /// As [`Trainer::fit`].
    pub fn fit_loader<F: TorchFloat>(
        &mut self,
        loader: &mut scratch::data::DataLoader<'_, F>,
        test: &Dataset<F>,
        options: &FitOptions,
        observer: &mut dyn Observer,
    ) -> Result<FitReport> {
        self.fit_with(loader.dataset(), test, options, Some(loader), observer)
    }

    fn fit_with<F: TorchFloat>(
        &mut self,
        train: &Dataset<F>,
        test: &Dataset<F>,
        options: &FitOptions,
        loader: Option<&mut dyn BatchOrder>,
        observer: &mut dyn Observer,
    ) -> Result<FitReport> {
        let m = &self.model;
        let mut session = Session {
            x_train: m.input(&to_tensor(&train.x)),
            y_train: m.input(&to_tensor(&train.y)),
            x_test: m.input(&to_tensor(&test.x)),
            y_test: m.input(&to_tensor(&test.y)),
            trainer: self,
        };
        fit_loop(&mut session, train.len(), options, loader, observer)
    }
}

/// A [`Trainer`] with its data on the model's device, as the training loop drives it.
struct Session<'a, O: Optimizer> {
    trainer: &'a mut Trainer<O>,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
}

impl<O: Optimizer> TrainingLoop for Session<'_, O> {
    type Error = crate::Error;
    type Snapshot = Vec<Tensor>;

    fn reinitialize(&mut self, rng: &mut RandomState, seeding: InitSeeding) {
        self.trainer.model.reinitialize(rng, seeding);
    }

    fn start(&mut self, epochs: usize) {
        self.trainer.optim.start(epochs);
    }

    fn train_batch(&mut self, rows: &[usize], position: (usize, usize)) -> Result<f64> {
        let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        let index = Tensor::from_slice(&index).to_device(self.x_train.device());
        let (x, y) = (self.x_train.index_select(0, &index), self.y_train.index_select(0, &index));
        self.trainer.train_batch(&x, &y, position)
    }

    fn evaluate(&mut self) -> Result<(f64, Option<f64>)> {
        let model = &mut self.trainer.model;
        let (x, y) = (&self.x_test, &self.y_test);
        let classification = is_classification(&y.size().iter().map(|&d| d as usize).collect::<Vec<_>>());
        tch::no_grad(|| {
            evaluate_in_chunks(x.size()[0] as usize, classification, |start, end| {
                let (xs, ys) =
                    (x.narrow(0, start as i64, (end - start) as i64), y.narrow(0, start as i64, (end - start) as i64));
                let prediction = model.forward(&xs, Mode::Eval)?;
                let loss = model.loss().forward(&prediction, &ys)?.double_value(&[]);
                let correct = if classification {
                    prediction.argmax(1, false).eq_tensor(&ys.argmax(1, false)).sum(tch::Kind::Int64).int64_value(&[])
                        as usize
                } else {
                    0
                };
                Ok((loss, correct))
            })
        })
    }

    fn snapshot(&self) -> Vec<Tensor> {
        self.trainer.model.snapshot()
    }

    fn restore(&mut self, snapshot: &Vec<Tensor>) {
        self.trainer.model.restore(snapshot);
    }

    fn end_epoch(&mut self) {
        self.trainer.optim.end_epoch();
    }

    fn save(&self, path: &std::path::Path) -> Result<()> {
        self.trainer.model.save(path)
    }
}
