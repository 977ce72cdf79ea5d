//! A neural network: layers applied in sequence, and a loss (the book's `NeuralNetwork`).

use std::path::Path;

use ndarray::{ArrayBase, ArrayD, Data, Dimension};

use crate::checkpoint::{self, NamedArray};
use crate::layers::{self, Layer};
use crate::losses::Loss;
use crate::ops::Mode;
use crate::param::{NamedParamMut, Param};
use crate::rng::RandomState;
use crate::spec::NetSpec;
use crate::{Error, Float, Result};

/// How [`NeuralNetwork::reinitialize`] feeds random numbers to the layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitSeeding {
    /// Every layer draws from the one generator in turn: the default.
    Stream,
    /// The book's quirk: its `Dense` re-seeds numpy's global generator with the network's seed before
    /// drawing, so every dense layer starts from the same stream (in chapter 3's
    /// deep net the second layer's weights equal the first's), and the generator continues from the last
    /// layer's draws. Needed to reproduce the book's numbers exactly.
    BookReseed(u32),
}

/// A saved copy of every parameter value, to restore a model later (early stopping).
#[derive(Clone, Debug)]
pub struct Snapshot<F> {
    values: Vec<ArrayD<F>>,
}

/// Layers in sequence, and the loss they are trained on.
///
/// Parameters are named `layers.{i}.{name}`, e.g. `layers.0.weight`, `layers.0.bias`.
pub struct NeuralNetwork<F: Float> {
    layers: Vec<Box<dyn Layer<F>>>,
    loss: Box<dyn Loss<F>>,
}

impl<F: Float> NeuralNetwork<F> {
    /// A network of `layers` trained on `loss`.
    pub fn new(layers: Vec<Box<dyn Layer<F>>>, loss: impl Loss<F> + 'static) -> Self {
        NeuralNetwork { layers, loss: Box::new(loss) }
    }

    /// The network `spec` describes, trained on `loss`, its parameters drawn from `rng` layer by layer
    /// (the libtorch engine's `Net` draws the same values from the same generator).
    ///
    /// # Errors
    /// A description that cannot run (see [`NetSpec::shapes`]), checked before any weight is drawn.
    pub fn from_spec(spec: &NetSpec, loss: impl Loss<F> + 'static, rng: &mut RandomState) -> Result<Self> {
        let inputs = spec.input_shapes()?;
        let layers = spec
            .layers
            .iter()
            .zip(&inputs)
            .map(|(layer, shape)| layers::build(layer, shape, rng))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self::new(layers, loss))
    }

    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Layer<F>>] {
        &self.layers
    }

    /// Mutable access to the layers.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer<F>>] {
        &mut self.layers
    }

    /// The loss's name.
    pub fn loss_name(&self) -> &'static str {
        self.loss.name()
    }

    /// Whether the loss scores classes (an accuracy then means something).
    pub fn classifies(&self) -> bool {
        self.loss.classifies()
    }

    fn layer_context(&self, i: usize) -> String {
        format!("layers.{i} {}", self.layers[i].describe())
    }

    /// Passes `x` through every layer.
    pub fn forward<S: Data<Elem = F>, D: Dimension>(&mut self, x: &ArrayBase<S, D>, mode: Mode) -> Result<ArrayD<F>> {
        let mut out = x.to_owned().into_dyn();
        for i in 0..self.layers.len() {
            out = self.layers[i].forward(out, mode).map_err(|e| e.within(&self.layer_context(i)))?;
        }
        Ok(out)
    }

    /// Passes `∂L/∂output` back through every layer, storing parameter gradients; returns `∂L/∂input`.
    pub fn backward(&mut self, loss_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let mut grad = loss_grad;
        for i in (0..self.layers.len()).rev() {
            grad = self.layers[i].backward(grad).map_err(|e| e.within(&self.layer_context(i)))?;
        }
        Ok(grad)
    }

    /// The network's output on `x` and its loss against `y`; with [`Mode::Train`] the forward pass is
    /// cached for [`NeuralNetwork::backward`] (start it with [`NeuralNetwork::loss_backward`]).
    pub fn forward_loss<S, T, D, E>(
        &mut self,
        x: &ArrayBase<S, D>,
        y: &ArrayBase<T, E>,
        mode: Mode,
    ) -> Result<(ArrayD<F>, F)>
    where
        S: Data<Elem = F>,
        T: Data<Elem = F>,
        D: Dimension,
        E: Dimension,
    {
        let prediction = self.forward(x, mode)?;
        let loss = self.loss.forward(&prediction, &y.to_owned().into_dyn())?;
        Ok((prediction, loss))
    }

    /// The network's loss for a prediction already computed, against `y` (no backward pass follows).
    pub fn loss_on<S: Data<Elem = F>, D: Dimension>(
        &mut self,
        prediction: &ArrayD<F>,
        y: &ArrayBase<S, D>,
    ) -> Result<F> {
        self.loss.forward(prediction, &y.to_owned().into_dyn())
    }

    /// One training pass on a batch: forward, loss, backward. Returns the loss; gradients are left in the
    /// parameters for an optimizer.
    pub fn train_batch<S, T, D, E>(&mut self, x: &ArrayBase<S, D>, y: &ArrayBase<T, E>) -> Result<F>
    where
        S: Data<Elem = F>,
        T: Data<Elem = F>,
        D: Dimension,
        E: Dimension,
    {
        let (_, loss) = self.forward_loss(x, y, Mode::Train)?;
        let mut grad = self.loss_backward()?;
        // The input gradient of the first layer is not needed: skip it, as PyTorch does for data.
        for i in (1..self.layers.len()).rev() {
            grad = self.layers[i].backward(grad).map_err(|e| e.within(&self.layer_context(i)))?;
        }
        if let Some(first) = self.layers.first_mut() {
            first.backward_params(grad).map_err(|e| e.within(&self.layer_context(0)))?;
        }
        Ok(loss)
    }

    /// `∂L/∂prediction` for the last [`NeuralNetwork::forward_loss`].
    pub fn loss_backward(&mut self) -> Result<ArrayD<F>> {
        self.loss.backward()
    }

    /// The network's output in evaluation mode.
    pub fn predict<S: Data<Elem = F>, D: Dimension>(&mut self, x: &ArrayBase<S, D>) -> Result<ArrayD<F>> {
        self.forward(x, Mode::Eval)
    }

    /// Every parameter with its name, in layer order.
    pub fn params(&self) -> Vec<(String, &Param<F>)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            out.extend(layer.params().into_iter().map(|(name, p)| (format!("layers.{i}.{name}"), p)));
        }
        out
    }

    /// Every parameter with its name, mutably (for optimizers).
    pub fn params_mut(&mut self) -> Vec<NamedParamMut<'_, F>> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            out.extend(layer.params_mut().into_iter().map(|(name, p)| (format!("layers.{i}.{name}"), p)));
        }
        out
    }

    /// Forgets the state every recurrent layer carries between calls.
    pub fn reset_state(&mut self) {
        self.layers.iter_mut().for_each(|l| l.reset_state());
    }

    /// The number of trainable values.
    pub fn num_parameters(&self) -> usize {
        self.params().iter().map(|(_, p)| p.value.len()).sum()
    }

    /// Draws fresh parameters for every layer, in order.
    pub fn reinitialize(&mut self, rng: &mut RandomState, seeding: InitSeeding) {
        for layer in &mut self.layers {
            if let InitSeeding::BookReseed(seed) = seeding {
                if layer.reseeds_in_book() {
                    *rng = RandomState::new(seed);
                }
            }
            layer.reinitialize(rng);
        }
    }

    /// Every parameter's value in the canonical (PyTorch) layout, with its name.
    pub fn named_parameters(&self) -> Vec<NamedArray<F>> {
        self.params().into_iter().map(|(name, p)| (name, p.to_canonical())).collect()
    }

    /// Sets every parameter from `tensors` (canonical layout), which must match the model exactly.
    ///
    /// # Errors
    /// The list of mismatches (missing, unexpected, or differently shaped tensors); nothing changes then.
    pub fn load_named(&mut self, tensors: &[NamedArray<F>]) -> Result<()> {
        checkpoint::apply(Path::new("(tensors)"), self.params_mut(), tensors)
    }

    /// Saves the parameters as a checkpoint (see [`crate::checkpoint`]); atomic.
    ///
    /// # Errors
    /// If the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let metadata = [("engine".to_string(), "scratch".to_string())].into_iter().collect();
        checkpoint::save(path.as_ref(), &self.named_parameters(), &metadata)
    }

    /// Loads parameters saved by either engine.
    ///
    /// # Errors
    /// A missing or malformed file, or one whose tensors do not match the model (all mismatches listed).
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = checkpoint::load::<F>(path)?;
        checkpoint::apply(path, self.params_mut(), &file.tensors)
    }

    /// A copy of every parameter value.
    pub fn snapshot(&self) -> Snapshot<F> {
        Snapshot { values: self.params().into_iter().map(|(_, p)| p.value.clone()).collect() }
    }

    /// Sets every parameter back to the values in `snapshot`, taken from this network.
    ///
    /// # Errors
    /// A snapshot of another network (a different number or shape of parameters); nothing changes then.
    pub fn restore(&mut self, snapshot: &Snapshot<F>) -> Result<()> {
        let params = self.params_mut();
        let fits = params.len() == snapshot.values.len()
            && params.iter().zip(&snapshot.values).all(|((_, p), v)| p.value.shape() == v.shape());
        if !fits {
            return Err(Error::InvalidArgument("restore: the snapshot was taken from another network".into()));
        }
        for ((_, p), v) in params.into_iter().zip(&snapshot.values) {
            p.value.assign(v);
        }
        Ok(())
    }
}
