//! What a fully connected layer is.

use ndarray::{Array1, Array2};

use super::WeightInit;
use crate::ops::{Activation, DropoutStyle};
use crate::rng::RandomState;
use crate::{Error, Result};

/// A fully connected layer: `activation(x Wᵀ + b)`, then optional dropout, applied over the last
/// axis of its input (`(batch, in)` or `(batch, time, in)`, as `torch.nn.Linear`). Its input width is
/// whatever comes before it in a [`NetSpec`](super::NetSpec), or is given when the layer is built
/// alone.
///
/// Parameters, in PyTorch's layout: `weight (neurons, in)` and, unless `bias` is off (PyTorch's
/// `bias=False`), `bias (neurons,)`.
///
/// ```
/// use scratch::ops::Activation;
/// use scratch::spec::{DenseSpec, WeightInit};
///
/// let hidden = DenseSpec::new(89).activation(Activation::Tanh).init(WeightInit::Glorot).dropout(0.8);
/// assert_eq!(hidden.describe(784), "Dense(784 -> 89, tanh, dropout keep 0.8)");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DenseSpec {
    /// Outputs.
    pub neurons: usize,
    /// The activation after `x Wᵀ + b`.
    pub activation: Activation,
    /// How the weights and the bias start.
    pub init: WeightInit,
    /// Dropout after the activation: keep probability and style.
    pub dropout: Option<(f64, DropoutStyle)>,
    /// Whether the layer adds a bias.
    pub bias: bool,
}

/// The initial values of a dense layer, drawn by [`DenseSpec::draw`]; both engines initialise from it.
pub struct DenseDraw {
    /// The weight in the book's layout `(in, neurons)`.
    pub weight: Array2<f64>,
    /// The bias `(neurons,)`, if the layer has one.
    pub bias: Option<Array1<f64>>,
    /// The seed of the dropout mask generator, if the layer has dropout.
    pub dropout_seed: Option<u32>,
}

impl DenseSpec {
    /// `neurons` outputs with a bias, linear, the book's standard-normal initialisation, no dropout.
    pub fn new(neurons: usize) -> Self {
        DenseSpec { neurons, activation: Activation::Linear, init: WeightInit::Standard, dropout: None, bias: true }
    }

    /// With (or without) a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// With `activation`.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// With the initialisation `init`.
    pub fn init(mut self, init: WeightInit) -> Self {
        self.init = init;
        self
    }

    /// With inverted dropout (PyTorch's) keeping each unit with probability `keep`.
    pub fn dropout(self, keep: f64) -> Self {
        self.dropout_with(keep, DropoutStyle::Inverted)
    }

    /// With dropout in the given style.
    pub fn dropout_with(mut self, keep: f64, style: DropoutStyle) -> Self {
        self.dropout = Some((keep, style));
        self
    }

    /// Checks the sizes and the dropout probability for `inputs` inputs.
    ///
    /// # Errors
    /// A zero size, a weight that does not fit in memory (see [`crate::memory`]), or a keep probability
    /// outside `(0, 1]`.
    pub fn validate(&self, inputs: usize) -> Result<()> {
        if inputs == 0 || self.neurons == 0 {
            return Err(Error::InvalidArgument(format!(
                "Dense needs at least one input and one neuron, got {inputs} -> {}",
                self.neurons
            )));
        }
        super::product(&[inputs, self.neurons], "Dense's weight")?;
        crate::memory::check_parameters(&[&[inputs, self.neurons], &[self.neurons]])?;
        self.activation.validate()?;
        self.init.validate()?;
        super::validate_dropout(self.dropout)
    }

    /// Draws `W` of shape `(inputs, neurons)`, then `b` of shape `(neurons,)`, in that order (the
    /// book's), with [`WeightInit::sample`] and [`WeightInit::sample_bias`]; with dropout, one more
    /// draw seeds the mask generator.
    pub fn draw(&self, rng: &mut RandomState, inputs: usize) -> DenseDraw {
        let fans = (inputs, self.neurons);
        let weight = self.init.sample(rng, fans, fans);
        let bias = self.bias.then(|| self.init.sample_bias(rng, self.neurons, fans));
        DenseDraw { weight, bias, dropout_seed: self.dropout.map(|_| rng.next_u32()) }
    }

    /// A one-line description for `inputs` inputs (0: not known), e.g. `Dense(784 -> 89, tanh, dropout
    /// keep 0.8)`.
    pub fn describe(&self, inputs: usize) -> String {
        let dropout = self.dropout.map(|(keep, _)| format!(", dropout keep {keep}")).unwrap_or_default();
        let inputs = if inputs == 0 { "?".to_string() } else { inputs.to_string() };
        let bias = if self.bias { "" } else { ", no bias" };
        format!("Dense({inputs} -> {}, {}{bias}{dropout})", self.neurons, self.activation.name())
    }
}
