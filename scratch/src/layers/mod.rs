//! Layers: groups of operations with their own parameters (the book's `Layer`, `Dense` and `Conv2D`).

use ndarray::{Array, ArrayD, IntoDimension};

pub use conv::{Conv2D, Conv2DBuilder, ConvDraw, ConvSpec};
pub use dense::{Dense, DenseBuilder, DenseDraw};

use crate::ops::{Dropout, Mode, OpChain, Operation};
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

    /// Forgets any state carried between calls (a recurrent layer's hidden state); a no-op for
    /// stateless layers.
    fn reset_state(&mut self) {}
}

/// How a layer draws its initial weights and biases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightInit {
    /// Normal with standard deviation 1: the book's default (`np.random.randn`).
    Standard,
    /// Glorot (Xavier) normal, standard deviation `sqrt(2 / (fan_in + fan_out))`; the book's current
    /// code, which applies the same scale to the bias.
    Glorot,
    /// The book's 2019 "glorot": standard deviation `2 / (fan_in + fan_out)`, without the square root.
    BookGlorot2019,
    /// PyTorch's default for `nn.Linear` and `nn.Conv2d` (Kaiming uniform with `a = √5`): weights and
    /// biases uniform in `±1 / sqrt(fan_in)`. The book's chapter-7 models use it.
    PyTorch,
}

impl WeightInit {
    /// The standard deviation of a normal initialisation, or the bound of a uniform one, for the given
    /// fans.
    pub fn scale(self, fan_in: usize, fan_out: usize) -> f64 {
        let sum = (fan_in + fan_out) as f64;
        match self {
            WeightInit::Standard => 1.0,
            WeightInit::Glorot => (2.0 / sum).sqrt(),
            WeightInit::BookGlorot2019 => 2.0 / sum,
            WeightInit::PyTorch => 1.0 / (fan_in as f64).sqrt(),
        }
    }

    /// The fans of a `k × k` convolution from `in_channels` to `out_channels`: Glorot and PyTorch count
    /// every kernel element (`C·k²`, as PyTorch's initialisers do); the book's "glorot" for convolutions
    /// is `2 / (in_channels + out_channels)` in every version.
    pub fn conv_fans(self, in_channels: usize, out_channels: usize, k: usize) -> (usize, usize) {
        match self {
            WeightInit::Glorot | WeightInit::PyTorch => (in_channels * k * k, out_channels * k * k),
            WeightInit::Standard | WeightInit::BookGlorot2019 => (in_channels, out_channels),
        }
    }

    /// Draws an array of `shape` for a layer with the given fans: `N(0, scale²)`, or `U(−scale, scale)`
    /// for [`WeightInit::PyTorch`], in row-major order.
    pub fn sample<Sh: IntoDimension>(
        self,
        rng: &mut RandomState,
        shape: Sh,
        (fan_in, fan_out): (usize, usize),
    ) -> Array<f64, Sh::Dim> {
        let scale = self.scale(fan_in, fan_out);
        match self {
            WeightInit::PyTorch => rng.uniform_array::<f64, _>(shape).mapv(|u| (2.0 * u - 1.0) * scale),
            _ => rng.normal(0.0, scale, shape),
        }
    }
}

mod conv;
mod dense;

/// A layer's operations and its optional dropout, run in order (how [`Conv2D`] computes where the
/// direct convolution does not apply).
struct LayerOps<F: Float> {
    chain: OpChain<F>,
    dropout: Option<Dropout<F>>,
}

impl<F: Float> LayerOps<F> {
    fn new(ops: Vec<Box<dyn Operation<F>>>, dropout: Option<Dropout<F>>) -> Self {
        LayerOps { chain: OpChain::new(ops), dropout }
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        let y = self.chain.forward(input, mode)?;
        match &mut self.dropout {
            Some(dropout) => dropout.forward(y, mode).map_err(|e| e.within("Dropout")),
            None => Ok(y),
        }
    }

    fn dropout_backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        match &mut self.dropout {
            Some(dropout) => dropout.backward(output_grad).map_err(|e| e.within("Dropout")),
            None => Ok(output_grad),
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
}

/// A parameter-free operation (flatten, pooling, reshape) used as a layer of its own.
pub struct OpLayer<F: Float> {
    op: Box<dyn Operation<F>>,
}

impl<F: Float> OpLayer<F> {
    /// The layer applying `op`.
    pub fn new(op: impl Operation<F> + 'static) -> Self {
        OpLayer { op: Box::new(op) }
    }
}

impl<F: Float> Layer<F> for OpLayer<F> {
    fn describe(&self) -> String {
        self.op.name().to_string()
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        self.op.forward(input, mode)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        self.op.backward(output_grad)
    }

    fn params(&self) -> Vec<(&'static str, &Param<F>)> {
        Vec::new()
    }

    fn params_mut(&mut self) -> Vec<(&'static str, &mut Param<F>)> {
        Vec::new()
    }

    fn reinitialize(&mut self, _rng: &mut RandomState) {}
}
