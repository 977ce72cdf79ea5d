//! Layers: groups of operations with their own parameters (the book's `Layer`, `Dense` and `Conv2D`),
//! each built from its description in [`crate::spec`].

use ndarray::ArrayD;

pub use conv::Conv2D;
pub use dense::Dense;

use crate::conv::Pool2D;
use crate::ops::{Dropout, Flatten, Mode, OpChain, Operation, Reshape};
use crate::param::Param;
use crate::rng::RandomState;
use crate::rnn::Recurrent;
use crate::spec::LayerSpec;
use crate::{Float, Result};

/// The from-scratch layer `spec` describes, on inputs of `shape` (without the batch axis), drawn from
/// `rng`.
///
/// # Errors
/// Invalid settings, or a layer that does not fit `shape` (see [`LayerSpec::output_shape`]).
pub fn build<F: Float>(spec: &LayerSpec, shape: &[usize], rng: &mut RandomState) -> Result<Box<dyn Layer<F>>> {
    spec.output_shape(shape)?;
    Ok(match spec {
        LayerSpec::Dense(d) => Box::new(Dense::new(*shape.last().expect("checked"), *d, rng)?),
        LayerSpec::Conv(c) => Box::new(Conv2D::new(*c, rng)?),
        LayerSpec::Pool(p) => Box::new(OpLayer::new(Pool2D::new(p.kind, p.size, p.stride)?)),
        LayerSpec::Flatten => Box::new(OpLayer::new(Flatten::new())),
        LayerSpec::Reshape(target) => Box::new(OpLayer::new(Reshape::new(target))),
        LayerSpec::Recurrent(r) => Box::new(Recurrent::new(*r, rng)?),
    })
}

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

    /// The parameters with their names within the layer (`weight`, `bias`, `weight_ih_l0`, ...).
    fn params(&self) -> Vec<(String, &Param<F>)>;

    /// Mutable access to the parameters.
    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)>;

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

    /// The layer as a recurrent layer, if it is one (for its final state).
    fn recurrent(&self) -> Option<&Recurrent<F>> {
        None
    }

    /// The layer as a recurrent layer, mutably (to set its state).
    fn recurrent_mut(&mut self) -> Option<&mut Recurrent<F>> {
        None
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

    fn params(&self) -> Vec<(String, &Param<F>)> {
        self.chain.ops().iter().filter_map(|op| op.param()).map(|(name, p)| (name.to_string(), p)).collect()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.chain.ops_mut().iter_mut().filter_map(|op| op.param_mut()).map(|(name, p)| (name.to_string(), p)).collect()
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

    fn params(&self) -> Vec<(String, &Param<F>)> {
        Vec::new()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        Vec::new()
    }

    fn reinitialize(&mut self, _rng: &mut RandomState) {}
}
