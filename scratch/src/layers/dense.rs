//! The fully connected layer.

use std::marker::PhantomData;

use ndarray::{Array1, Array2, ArrayD};

use super::{Layer, LayerOps, WeightInit};
use crate::ops::{Activation, BiasAdd, Dropout, DropoutStyle, Mode, Operation, WeightMultiply};
use crate::param::Param;
use crate::rng::RandomState;
use crate::{Float, Result};

/// The settings of a [`Dense`] layer; build one with [`Dense::builder`].
#[derive(Clone, Debug)]
pub struct DenseBuilder<F> {
    n_in: usize,
    neurons: usize,
    activation: Activation,
    init: WeightInit,
    dropout: Option<(f64, DropoutStyle)>,
    float: PhantomData<F>,
}

impl<F: Float> DenseBuilder<F> {
    /// The activation applied after `X W + B` (default [`Activation::Linear`]).
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// The weight initialisation (default [`WeightInit::Standard`], the book's).
    pub fn init(mut self, init: WeightInit) -> Self {
        self.init = init;
        self
    }

    /// Inverted dropout after the activation, keeping each unit with probability `keep`.
    pub fn dropout(self, keep: f64) -> Self {
        self.dropout_with(keep, DropoutStyle::Inverted)
    }

    /// Dropout after the activation in the given style.
    pub fn dropout_with(mut self, keep: f64, style: DropoutStyle) -> Self {
        self.dropout = Some((keep, style));
        self
    }

    /// Draws the parameters from `rng` and returns the layer.
    ///
    /// # Errors
    /// If a size is zero or the dropout probability is outside `(0, 1]`.
    pub fn build(self, rng: &mut RandomState) -> Result<Dense<F>> {
        if self.n_in == 0 || self.neurons == 0 {
            return Err(crate::Error::InvalidArgument(format!(
                "Dense needs at least one input and one neuron, got {} -> {}",
                self.n_in, self.neurons
            )));
        }
        if let Some((keep, style)) = self.dropout {
            Dropout::<F>::new(keep, style, RandomState::new(0))?;
        }
        let mut layer = Dense { config: self, ops: LayerOps::new(Vec::new(), None) };
        layer.reinitialize(rng);
        Ok(layer)
    }
}

/// The initial values of a dense layer; both engines initialise from this.
pub struct DenseDraw {
    /// The weight in the book's layout `(n_in, neurons)`.
    pub weight: Array2<f64>,
    /// The bias `(neurons,)`.
    pub bias: Array1<f64>,
    /// The seed of the dropout mask generator, if the layer has dropout.
    pub dropout_seed: Option<u32>,
}

impl DenseDraw {
    /// Draws `W` of shape `(n_in, neurons)`, then `B` of shape `(neurons,)`, in that order (the book's),
    /// with [`WeightInit::sample`]; with dropout, one more draw seeds the mask generator.
    pub fn new(rng: &mut RandomState, (n_in, neurons): (usize, usize), init: WeightInit, dropout: bool) -> Self {
        let weight = init.sample(rng, (n_in, neurons), (n_in, neurons));
        let bias = init.sample(rng, neurons, (n_in, neurons));
        DenseDraw { weight, bias, dropout_seed: dropout.then(|| rng.next_u32()) }
    }
}

/// A fully connected layer: `Y = activation(X W + B)`, optionally followed by dropout.
///
/// ```text
/// X: (batch, n_in), W: (n_in, neurons), B: (1, neurons)  ->  Y: (batch, neurons)
/// ```
///
/// Its operations are [`WeightMultiply`], [`BiasAdd`], the activation and, if configured, [`Dropout`];
/// its parameters are named `weight` and `bias`.
///
/// ```
/// use scratch::layers::{Dense, Layer};
/// use scratch::ops::{Activation, Mode};
/// use scratch::rng::RandomState;
///
/// let mut layer: Dense<f64> = Dense::builder(3, 2).activation(Activation::Sigmoid).build(&mut RandomState::new(1))?;
/// let y = layer.forward(ndarray::Array2::zeros((4, 3)).into_dyn(), Mode::Eval)?;
/// assert_eq!(y.shape(), &[4, 2]);
/// # Ok::<(), scratch::Error>(())
/// ```
pub struct Dense<F: Float> {
    config: DenseBuilder<F>,
    /// `WeightMultiply`, `BiasAdd`, activation; then dropout.
    ops: LayerOps<F>,
}

impl<F: Float> Dense<F> {
    /// Settings for a dense layer from `n_in` inputs to `neurons` outputs.
    pub fn builder(n_in: usize, neurons: usize) -> DenseBuilder<F> {
        DenseBuilder {
            n_in,
            neurons,
            activation: Activation::Linear,
            init: WeightInit::Standard,
            dropout: None,
            float: PhantomData,
        }
    }

    /// The number of inputs.
    pub fn n_in(&self) -> usize {
        self.config.n_in
    }

    /// The number of outputs.
    pub fn neurons(&self) -> usize {
        self.config.neurons
    }
}

impl<F: Float> Layer<F> for Dense<F> {
    fn describe(&self) -> String {
        let c = &self.config;
        let dropout = c.dropout.map(|(keep, _)| format!(", dropout keep {keep}")).unwrap_or_default();
        format!("Dense({} -> {}, {}{dropout})", c.n_in, c.neurons, c.activation.name())
    }

    delegate_to_ops!();

    /// Draws fresh values as [`DenseDraw::new`] says.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let c = &self.config;
        let draw = DenseDraw::new(rng, (c.n_in, c.neurons), c.init, c.dropout.is_some());
        let cast = |v: f64| F::cast(v);
        let ops: Vec<Box<dyn Operation<F>>> = vec![
            Box::new(WeightMultiply::new(draw.weight.mapv(cast))),
            Box::new(BiasAdd::new(draw.bias.mapv(cast).insert_axis(ndarray::Axis(0)))),
            c.activation.operation(),
        ];
        let dropout = c.dropout.zip(draw.dropout_seed).map(|((keep, style), seed)| {
            Dropout::new(keep, style, RandomState::new(seed)).expect("validated by build")
        });
        self.ops = LayerOps::new(ops, dropout);
    }

    fn reseeds_in_book(&self) -> bool {
        true
    }
}
