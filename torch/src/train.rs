//! Training on libtorch with the same loop, options, report and observer as the from-scratch trainer
//! ([`scratch::train`]): the same seeded batch order, evaluation every `eval_every` epochs, and early
//! stopping that restores the best evaluated model.
//!
//! The step is written for a GPU: the data sit on the device for the whole fit, each epoch's batch
//! order is copied there once, and a step reads back from the device once (the loss, the finiteness
//! of every gradient and, for class-index targets, their validity, gathered into one tensor; see
//! [`crate::sync`]). An evaluation reads once too.

use scratch::losses::class_targets;
use scratch::network::InitSeeding;
use scratch::rng::RandomState;
use scratch::spec::LossSpec;
use scratch::train::{fit_loop, Batch, BatchOrder, Dataset, FitOptions, FitReport, Observer, TrainingLoop, EVAL_CHUNK};
use tch::{Kind, Tensor};

use crate::convert::{to_tensor, TorchFloat};
use crate::net::Net;
use crate::optim::Optimizer;
use crate::state::NetState;
use crate::{loss, sync, Result};

/// Trains a [`Net`] on a loss with an [`Optimizer`], carrying the recurrent state from one call to
/// the next (detached) as the from-scratch engine's layers carry theirs.
pub struct Trainer<O: Optimizer> {
    /// The network being trained.
    pub net: Net,
    /// The loss it is trained on.
    pub loss: LossSpec,
    /// The optimizer updating it.
    pub optim: O,
    /// The recurrent state the last training or evaluation pass left.
    state: NetState,
}

fn diverged(epoch: usize, batch: usize, quantity: String) -> crate::Error {
    scratch::Error::not_finite(epoch, batch, quantity).into()
}

impl<O: Optimizer> Trainer<O> {
    /// A trainer for `net` on `loss` with `optim`.
    pub fn new(net: Net, loss: LossSpec, optim: O) -> Self {
        Trainer { net, loss, optim, state: NetState::new() }
    }

    /// Forgets the carried recurrent state: the next pass starts every recurrent layer from zeros.
    pub fn reset_state(&mut self) {
        self.state = NetState::new();
    }

    /// The network's output on `x` (moved to its device and kind) from the carried recurrent state,
    /// carrying the state it leaves, detached, to the next call.
    ///
    /// # Errors
    /// Shapes that do not fit.
    pub fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (prediction, state) = self.net.f_forward_state(&self.net.input(x), &self.state, train)?;
        self.state = state.detach();
        Ok(prediction)
    }

    /// The loss of the network's output on `x` against `y` (see [`Trainer::forward`]), as a scalar
    /// tensor, and the output.
    ///
    /// # Errors
    /// Shapes that do not fit.
    pub fn forward_loss(&mut self, x: &Tensor, y: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let prediction = self.forward(x, train)?;
        let value = loss::loss(self.loss, &prediction, &y.to_device(self.net.device()))?;
        Ok((prediction, value))
    }

    /// One step on a batch: forward, loss, backward, update, with one read from the device (whatever the
    /// optimizer, clipping included, and with one-hot or class-index targets). Returns the loss.
    ///
    /// # Errors
    /// Shapes that do not fit, class indices out of range (nothing is updated then), or a non-finite
    /// loss or gradient (naming `epoch` and `batch`).
    pub fn train_batch(&mut self, x: &Tensor, y: &Tensor, (epoch, batch): (usize, usize)) -> Result<f64> {
        self.net.zero_grad();
        let prediction = self.forward(x, true)?;
        let (value, valid) = loss::loss_unchecked(self.loss, &prediction, &y.to_device(self.net.device()))?;
        value.backward();
        let params = self.net.trainable_parameters();
        // Whether the targets are valid, the loss, and whether each gradient is finite, in one tensor:
        // one read.
        let scalar = |t: &Tensor| t.detach().to_kind(Kind::Double).reshape([1]);
        let mut checks = vec![valid.as_ref().map_or_else(|| Tensor::ones([1], (Kind::Double, value.device())), scalar)];
        checks.push(scalar(&value));
        for (name, p) in &params {
            let g = p.grad();
            if !g.defined() {
                return Err(scratch::Error::InvalidArgument(format!("parameter {name} has no gradient")).into());
            }
            checks.push(scalar(&g.isfinite().all()));
        }
        let checks = sync::read(&Tensor::cat(&checks, 0))?;
        let (valid, loss, finite) = (checks[0], checks[1], &checks[2..]);
        if valid != 1.0 {
            return Err(loss::invalid_indices(&prediction));
        }
        if !loss.is_finite() {
            return Err(diverged(epoch, batch, "the loss".into()));
        }
        if let Some(((name, _), _)) = params.iter().zip(finite).find(|(_, &finite)| finite == 0.0) {
            return Err(diverged(epoch, batch, format!("the gradient of {name}")));
        }
        self.optim.step(&params)?;
        self.optim.end_step();
        Ok(loss)
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
    /// Invalid options, shapes that do not fit the network, or divergence.
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
        train.check("the training set")?;
        test.check("the test set")?;
        let (x_train, y_train) = self.on_device(train)?;
        let (x_test, y_test) = self.on_device(test)?;
        // Replaced at the start of every epoch.
        let order = Tensor::zeros([0], (Kind::Int64, x_train.device()));
        let mut session = Session { trainer: self, x_train, y_train, x_test, y_test, order };
        fit_loop(&mut session, train.len(), options, loader, observer)
    }

    /// A dataset on the network's device (two uploads), of its kind, class-index targets turned into
    /// one-hot rows (checked here, once, on the host, rather than at every step).
    fn on_device<F: TorchFloat>(&self, data: &Dataset<F>) -> Result<(Tensor, Tensor)> {
        let net = &self.net;
        let out = net.spec().output_shape()?;
        let prediction: Vec<usize> = std::iter::once(data.len()).chain(out).collect();
        let y = if self.loss.is_classification() && data.y.shape() != prediction.as_slice() {
            let rows = class_targets(&prediction, &data.y)?;
            to_tensor(&rows.into_shape_with_order(ndarray::IxDyn(&prediction)).expect("same size"))
        } else {
            to_tensor(&data.y)
        };
        let device = net.device();
        Ok((net.input(&sync::upload(&to_tensor(&data.x), device)?), net.input(&sync::upload(&y, device)?)))
    }
}

/// A [`Trainer`] with its data on the network's device, as the training loop drives it.
struct Session<'a, O: Optimizer> {
    trainer: &'a mut Trainer<O>,
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    /// The epoch's batch order, on the device.
    order: Tensor,
}

impl<O: Optimizer> TrainingLoop for Session<'_, O> {
    type Error = crate::Error;
    type Snapshot = Vec<Tensor>;

    fn reinitialize(&mut self, rng: &mut RandomState, seeding: InitSeeding) {
        self.trainer.net.reinitialize(rng, seeding);
        self.trainer.reset_state();
    }

    fn start(&mut self, epochs: usize) {
        self.trainer.optim.start(epochs);
    }

    /// The epoch's order to the device: the one upload of an epoch.
    fn start_epoch(&mut self, order: &[usize]) -> Result<()> {
        let order: Vec<i64> = order.iter().map(|&r| r as i64).collect();
        self.order = sync::upload(&Tensor::from_slice(&order), self.x_train.device())?;
        Ok(())
    }

    /// The batch's rows gathered on the device from the epoch's order: no copy from the host.
    fn train_batch(&mut self, batch: Batch<'_>) -> Result<f64> {
        let index = self.order.f_narrow(0, batch.start as i64, batch.rows.len() as i64)?;
        let (x, y) = (self.x_train.index_select(0, &index), self.y_train.index_select(0, &index));
        self.trainer.train_batch(&x, &y, (batch.epoch, batch.index))
    }

    /// The loss and accuracy summed over the test set on the device, chunk by chunk, and read once.
    fn evaluate(&mut self) -> Result<(f64, Option<f64>)> {
        let trainer = &mut *self.trainer;
        let (x, y) = (&self.x_test, &self.y_test);
        let rows = x.size()[0];
        let classification = trainer.loss.is_classification();
        let totals = tch::no_grad(|| -> Result<Tensor> {
            let mut totals = Tensor::zeros([2], (Kind::Double, x.device()));
            for start in (0..rows).step_by(EVAL_CHUNK) {
                let n = (rows - start).min(EVAL_CHUNK as i64);
                let (xs, ys) = (x.narrow(0, start, n), y.narrow(0, start, n));
                let prediction = trainer.forward(&xs, false)?;
                let value = loss::loss(trainer.loss, &prediction, &ys)?.to_kind(Kind::Double) * n as f64;
                let correct = if classification {
                    prediction.argmax(-1, false).eq_tensor(&ys.argmax(-1, false)).sum(Kind::Double)
                } else {
                    Tensor::zeros([], (Kind::Double, x.device()))
                };
                totals += Tensor::stack(&[value, correct], 0);
            }
            Ok(totals)
        })?;
        let totals = sync::read(&totals)?;
        let positions = if classification { y.numel() as f64 / *y.size().last().unwrap_or(&1) as f64 } else { 1.0 };
        Ok((totals[0] / rows as f64, classification.then(|| totals[1] / positions)))
    }

    fn snapshot(&self) -> Vec<Tensor> {
        self.trainer.net.snapshot()
    }

    fn restore(&mut self, snapshot: &Vec<Tensor>) -> Result<()> {
        self.trainer.net.restore(snapshot)
    }

    fn end_epoch(&mut self) {
        self.trainer.optim.end_epoch();
    }

    fn save(&self, path: &std::path::Path) -> Result<()> {
        self.trainer.net.save(path)
    }
}
