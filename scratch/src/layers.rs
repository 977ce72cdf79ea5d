//! Layers: groups of operations with their own parameters (the book's `Layer` and `Dense`).

use std::marker::PhantomData;

use ndarray::ArrayD;

use crate::ops::{Activation, BiasAdd, Dropout, DropoutStyle, Mode, OpChain, Operation, WeightMultiply};
use crate::param::Param;
use crate::rng::RandomState;
use crate::{Float, Result};

/// A network layer: a differentiable map with named parameters that can be re-initialised.
pub trait Layer<F: Float>: Send {
    /// A one-line description, e.g. `Dense(13 -> 1, linear)`.
    fn describe(&self) -> String;

    /// Computes the layer's output.
    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>>;

    /// Given `∂L/∂output`, stores every parameter's gradient and returns `∂L/∂input`.
    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>>;

    /// The backward pass when `∂L/∂input` is not needed (the network's first layer): stores the parameter
    /// gradients only. The default runs [`Layer::backward`] and drops its result.
    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.backward(output_grad).map(drop)
    }

    /// The parameters with their names within the layer (`weight`, `bias`).
    fn params(&self) -> Vec<(&'static str, &Param<F>)>;

    /// Mutable access to the parameters.
    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)>;

    /// Draws fresh parameters from `rng`.
    fn reinitialize(&mut self, rng: &mut RandomState);

    /// Whether the book's code re-seeds numpy's global generator before initialising this kind of layer
    /// (its `Dense` does, its `Conv2D` does not); see [`crate::network::InitSeeding::BookReseed`].
    fn reseeds_in_book(&self) -> bool {
        false
    }

    /// The layer's dropout operation, if it has one (to inject masks).
    fn dropout_mut(&mut self) -> Option<&mut Dropout<F>> {
        None
    }
}

/// How a layer draws its initial weights and biases (both from a normal distribution with mean 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightInit {
    /// Standard deviation 1: the book's default (`np.random.randn`).
    Standard,
    /// Glorot (Xavier) normal, standard deviation `sqrt(2 / (fan_in + fan_out))`; the book's current
    /// code, which applies the same scale to the bias.
    Glorot,
    /// The book's 2019 "glorot": standard deviation `2 / (fan_in + fan_out)`, without the square root.
    BookGlorot2019,
}

impl WeightInit {
    /// The standard deviation for a layer with the given fans.
    pub fn scale(self, fan_in: usize, fan_out: usize) -> f64 {
        let sum = (fan_in + fan_out) as f64;
        match self {
            WeightInit::Standard => 1.0,
            WeightInit::Glorot => (2.0 / sum).sqrt(),
            WeightInit::BookGlorot2019 => 2.0 / sum,
        }
    }
}

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
        let mut layer = Dense { config: self, chain: OpChain::new(Vec::new()), dropout: None };
        layer.reinitialize(rng);
        Ok(layer)
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
    /// `WeightMultiply`, `BiasAdd`, activation.
    chain: OpChain<F>,
    dropout: Option<Dropout<F>>,
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

impl<F: Float> Dense<F> {
    fn dropout_backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        match &mut self.dropout {
            Some(dropout) => dropout.backward(output_grad).map_err(|e| e.within("Dropout")),
            None => Ok(output_grad),
        }
    }
}

impl<F: Float> Layer<F> for Dense<F> {
    fn describe(&self) -> String {
        let c = &self.config;
        let dropout = c.dropout.map(|(keep, _)| format!(", dropout keep {keep}")).unwrap_or_default();
        format!("Dense({} -> {}, {}{dropout})", c.n_in, c.neurons, c.activation.name())
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let y = self.chain.forward(input, mode)?;
        match &mut self.dropout {
            Some(dropout) => dropout.forward(y, mode).map_err(|e| e.within("Dropout")),
            None => Ok(y),
        }
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        let g = self.dropout_backward(output_grad)?;
        self.chain.backward(g)
    }

    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        let g = self.dropout_backward(output_grad)?;
        self.chain.backward_params(g)
    }

    fn params(&self) -> Vec<(&'static str, &Param<F>)> {
        self.chain.ops().iter().filter_map(|op| op.param()).collect()
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)> {
        self.chain.ops_mut().iter_mut().filter_map(|op| op.param_mut()).collect()
    }

    /// Draws `W ~ N(0, s²)` of shape `(n_in, neurons)`, then `B ~ N(0, s²)` of shape `(1, neurons)`, in
    /// that order (the book's), with `s` from the [`WeightInit`]; a dropout layer then takes one more draw
    /// to seed its mask generator.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        let c = &self.config;
        let scale = c.init.scale(c.n_in, c.neurons);
        let w = rng.normal(0.0, scale, (c.n_in, c.neurons));
        let b = rng.normal(0.0, scale, (1, c.neurons));
        let ops: Vec<Box<dyn Operation<F>>> =
            vec![Box::new(WeightMultiply::new(w)), Box::new(BiasAdd::new(b)), c.activation.operation()];
        self.chain = OpChain::new(ops);
        self.dropout = c.dropout.map(|(keep, style)| {
            Dropout::new(keep, style, RandomState::new(rng.next_u32())).expect("validated by build")
        });
    }

    fn reseeds_in_book(&self) -> bool {
        true
    }

    fn dropout_mut(&mut self) -> Option<&mut Dropout<F>> {
        self.dropout.as_mut()
    }
}
