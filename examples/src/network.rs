//! A network of either engine, as the experiments that fit one use it: built from the one
//! description, trained from the one optimizer description by its engine's fit loop (the same loop,
//! batches and masks in both), evaluated and saved. An experiment written over [`Network`] is written
//! once and runs in either engine. An experiment with a loop of its own (the language models, the GPT)
//! builds its network here too, and turns it into its model with [`Network::into_model`], giving the
//! model's two implementations as a [`Models`]. Chapter 2's models, written step by step without
//! layers, come from [`StepByStepModels::of`]. This is the one module that names each engine's types.

use std::path::Path;

use anyhow::Result;
use ndarray::{Array2, ArrayD, ArrayView2};
use scratch::network::NeuralNetwork;
use scratch::rng::RandomState;
use scratch::spec::{LossSpec, NetSpec, OptimSpec};
use scratch::step_by_step::{BiasGradient, StepByStep};
use scratch::train::{Dataset, FitOptions, FitReport, Observer};
use torch::convert::{to_array, to_tensor, TorchFloat};
use torch::layers::Masks;

use crate::engine::Engine;
use crate::experiments::resume::EXPERIMENT;

/// A chapter-2 model (weights and gradients written out, no layers) in either engine.
pub trait StepByStepModel: StepByStep<f64> {
    /// The predictions for `x`, `(rows, 1)`.
    fn predict(&self, x: &ArrayView2<f64>) -> Array2<f64>;
}

impl StepByStep<f64> for BoxedStepByStep {
    fn train_step(&mut self, x: &ArrayView2<f64>, y: &ArrayView2<f64>, learning_rate: f64) -> scratch::Result<f64> {
        (**self).train_step(x, y, learning_rate)
    }
}

impl StepByStepModel for BoxedStepByStep {
    fn predict(&self, x: &ArrayView2<f64>) -> Array2<f64> {
        (**self).predict(x)
    }
}

/// Implements [`StepByStepModel`] for an engine's chapter-2 model by its own `predict`.
macro_rules! step_by_step_model {
    ($($model:ty),*) => {$(
        impl StepByStepModel for $model {
            fn predict(&self, x: &ArrayView2<f64>) -> Array2<f64> {
                <$model>::predict(self, x)
            }
        }
    )*};
}

step_by_step_model!(
    scratch::step_by_step::LinearRegression<f64>,
    scratch::step_by_step::TwoLayerNet<f64>,
    torch::step_by_step::LinearRegression,
    torch::step_by_step::TwoLayerNet
);

/// A chapter-2 model of either engine.
pub type BoxedStepByStep = Box<dyn StepByStepModel>;

/// Chapter 2's models in one engine.
pub struct StepByStepModels {
    /// The closed-form least-squares fit of `y` on `x`.
    pub least_squares: fn(&Array2<f64>, &Array2<f64>) -> Result<BoxedStepByStep>,
    /// Linear regression on `features` inputs, its weights drawn from the generator.
    pub linear: fn(usize, &mut RandomState) -> BoxedStepByStep,
    /// The two-layer network on `features` inputs with `hidden` sigmoid units, its bias gradient as the
    /// book computes it or as it should be.
    pub two_layer: fn(usize, usize, BiasGradient, &mut RandomState) -> BoxedStepByStep,
}

impl StepByStepModels {
    /// The chapter-2 models of `engine`: the same weights from the same generator in both.
    pub fn of(engine: Engine) -> Self {
        match engine {
            Engine::Scratch => StepByStepModels {
                least_squares: |x, y| Ok(Box::new(scratch::step_by_step::least_squares(x, y)?)),
                linear: |features, rng| Box::new(scratch::step_by_step::LinearRegression::init(features, rng)),
                two_layer: |features, hidden, bias, rng| {
                    Box::new(scratch::step_by_step::TwoLayerNet::init(features, hidden, bias, rng))
                },
            },
            Engine::Torch => StepByStepModels {
                least_squares: |x, y| Ok(Box::new(torch::step_by_step::least_squares(x, y))),
                linear: |features, rng| Box::new(torch::step_by_step::LinearRegression::init(features, rng)),
                two_layer: |features, hidden, bias, rng| {
                    Box::new(torch::step_by_step::TwoLayerNet::init(features, hidden, bias, rng))
                },
            },
        }
    }
}

/// An experiment's model in each engine: what an experiment with its own training loop makes of a
/// network and its optimizer ([`Network::into_model`]), behind the one trait its loop is written over.
pub trait Models<F: TorchFloat> {
    /// The trait the experiment's loop drives (`dyn LanguageModel`, say).
    type Model: ?Sized;

    /// The model on the from-scratch engine's network (which holds its loss).
    fn scratch(&self, net: NeuralNetwork<F>, optim: Box<dyn scratch::optim::Optimizer<F>>) -> Box<Self::Model>;

    /// The model on the libtorch engine's network, trained on `loss`.
    fn torch(&self, net: torch::Net, loss: LossSpec, optim: Box<dyn torch::optim::Optimizer>) -> Box<Self::Model>;
}

/// A network in one of the two engines, with its loss.
pub enum Network<F: TorchFloat> {
    /// The from-scratch engine's network (it holds its loss).
    Scratch(NeuralNetwork<F>),
    /// The libtorch engine's network, on its own `VarStore`, and its loss.
    Torch {
        /// The network.
        net: torch::Net,
        /// The loss its trainer minimises.
        loss: LossSpec,
        /// The store that owns its parameters.
        store: tch::nn::VarStore,
    },
}

impl<F: TorchFloat> Network<F> {
    /// The network `spec` describes in `engine`, its weights drawn from the stream seeded with `seed`
    /// (the same weights in both engines), recording in its checkpoints that `experiment` wrote them.
    /// The torch engine computes on `device` and draws dropout masks from the shared stream on the CPU
    /// (the same masks as the from-scratch engine), from libtorch's generator on a GPU.
    ///
    /// # Errors
    /// A description that cannot run, or an unavailable device.
    pub fn new(
        engine: Engine,
        (spec, loss): (&NetSpec, LossSpec),
        seed: u32,
        device: torch::Device,
        experiment: &str,
    ) -> Result<Self> {
        let mut rng = RandomState::new(seed);
        Ok(match engine {
            Engine::Scratch => {
                let mut net = NeuralNetwork::from_spec(spec, loss.build::<F>(), &mut rng)?;
                net.set_metadata(EXPERIMENT, experiment);
                Network::Scratch(net)
            }
            Engine::Torch => {
                let device = device.resolve()?;
                let masks = if device.is_cuda() { Masks::Torch } else { Masks::Shared };
                let store = torch::var_store::<F>(device);
                let options = torch::BuildOptions { masks, ..Default::default() };
                let mut net = torch::Net::with_options(store.root(), spec, options, &mut rng)?;
                net.set_metadata(EXPERIMENT, experiment);
                Network::Torch { net, loss, store }
            }
        })
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        match self {
            Network::Scratch(_) => Engine::Scratch,
            Network::Torch { .. } => Engine::Torch,
        }
    }

    /// Replaces the weights with those of the checkpoint at `path` (written by either engine).
    ///
    /// # Errors
    /// A file that cannot be read or that does not fit the network (every mismatch listed).
    pub fn load(&mut self, path: &Path) -> Result<()> {
        match self {
            Network::Scratch(net) => net.load(path)?,
            Network::Torch { net, .. } => net.load(path)?,
        }
        Ok(())
    }

    /// Trains on `train` with the optimizer `optim` describes, evaluating on `test`, by the engine's
    /// trainer (both run the same fit loop).
    ///
    /// # Errors
    /// Invalid options, data that do not fit the network, or a divergence.
    pub fn fit(
        self,
        optim: &OptimSpec,
        (train, test): (&Dataset<F>, &Dataset<F>),
        options: &FitOptions,
        observer: &mut dyn Observer,
    ) -> Result<(FitReport, Self)> {
        Ok(match self {
            Network::Scratch(net) => {
                let mut trainer = scratch::train::Trainer::new(net, scratch::optim::build::<F>(optim)?);
                let report = trainer.fit(train, test, options, observer)?;
                (report, Network::Scratch(trainer.net))
            }
            Network::Torch { net, loss, store } => {
                let mut trainer = torch::train::Trainer::new(net, loss, torch::optim::build(optim)?);
                let report = trainer.fit(train, test, options, observer)?;
                (report, Network::Torch { net: trainer.net, loss, store })
            }
        })
    }

    /// The experiment's model (see [`Models`]) on this network, trained with the optimizer `optim`
    /// describes.
    ///
    /// # Errors
    /// Invalid optimizer settings.
    pub fn into_model<M: Models<F>>(self, models: &M, optim: &OptimSpec) -> Result<Box<M::Model>> {
        Ok(match self {
            Network::Scratch(net) => models.scratch(net, scratch::optim::build::<F>(optim)?),
            Network::Torch { net, loss, .. } => models.torch(net, loss, torch::optim::build(optim)?),
        })
    }

    /// The output for `x` in evaluation mode.
    ///
    /// # Errors
    /// An input that does not fit the network.
    pub fn predict(&self, x: &ArrayD<F>) -> Result<ArrayD<F>> {
        Ok(match self {
            Network::Scratch(net) => net.predict(x)?,
            Network::Torch { net, .. } => to_array::<F>(&net.predict(&to_tensor(x))?),
        })
    }

    /// The output of the first `count` leaf layers for `x` in evaluation mode (an autoencoder's codes
    /// are its encoder's output).
    ///
    /// # Errors
    /// An input that does not fit, or fewer than `count` leaves.
    pub fn forward_leaves(&self, x: &ArrayD<F>, count: usize) -> Result<ArrayD<F>> {
        let too_few = |leaves: usize| anyhow::anyhow!("the network has {leaves} layers, fewer than {count}");
        match self {
            Network::Scratch(net) => {
                let leaves = net.leaves();
                let mut h = x.clone();
                for (_, layer) in leaves.get(..count).ok_or_else(|| too_few(leaves.len()))? {
                    h = layer.infer(h)?;
                }
                Ok(h)
            }
            Network::Torch { net, .. } => {
                let leaves = net.leaves();
                let mut h = net.input(&to_tensor(x));
                for (_, layer) in leaves.get(..count).ok_or_else(|| too_few(leaves.len()))? {
                    h = tch::no_grad(|| layer.f_forward_t(&h, false))?;
                }
                Ok(to_array::<F>(&h))
            }
        }
    }

    /// Saves the weights to `path` as a safetensors checkpoint that either engine (and PyTorch) loads.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            Network::Scratch(net) => net.save(path)?,
            Network::Torch { net, .. } => net.save(path)?,
        }
        Ok(())
    }
}
