//! Layers: groups of operations with their own parameters (the book's `Layer`, `Dense` and `Conv2D`),
//! each built from its description in [`crate::spec`], and the containers that nest them
//! ([`Sequential`], [`Residual`]) as the description's modules nest.

use ndarray::ArrayD;

pub use conv::Conv2D;
pub use dense::Dense;
pub use residual::Residual;
pub use sequential::Sequential;

use crate::conv::Pool2D;
use crate::ops::{Dropout, Flatten, Mode, OpChain, Operation, Reshape};
use crate::param::Param;
use crate::rng::RandomState;
use crate::rnn::Recurrent;
use crate::spec::module::{join, Builder};
use crate::spec::{DropoutSpec, LayerSpec, NetSpec};
use crate::transformer::{CausalSelfAttention, Embedding, LayerNorm, PositionEmbedding};
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
        LayerSpec::Activation(a) => Box::new(OpLayer { op: a.operation() }),
        LayerSpec::Dropout(d) => Box::new(DropoutLayer::new(*d, rng)?),
        LayerSpec::Embedding(e) => Box::new(Embedding::new(*e, rng)?),
        LayerSpec::PositionEmbedding(p) => Box::new(PositionEmbedding::new(*p, rng)?),
        LayerSpec::LayerNorm(n) => Box::new(LayerNorm::new(*n)?),
        LayerSpec::Attention(a) => Box::new(CausalSelfAttention::new(*a, rng)?),
    })
}

/// Builds the from-scratch network of a description: its layers drawn from the generator in order.
struct Build<'a> {
    rng: &'a mut RandomState,
}

impl<F: Float> Builder for (Build<'_>, std::marker::PhantomData<F>) {
    type Output = Box<dyn Layer<F>>;

    fn layer(&mut self, path: &str, layer: &LayerSpec, input: &[usize]) -> Result<Self::Output> {
        build(layer, input, self.0.rng).map_err(|e| e.within(&context(path, &layer.describe(input))))
    }

    fn sequence(&mut self, path: &str, children: Vec<(Option<String>, Self::Output)>) -> Result<Self::Output> {
        Ok(Box::new(Sequential::new(path, children)))
    }

    fn residual(&mut self, path: &str, body: Self::Output) -> Result<Self::Output> {
        Ok(Box::new(Residual::new(path, body)))
    }
}

/// The layers of `spec`, as one layer (the root of the tree), drawn from `rng`.
///
/// # Errors
/// A description that cannot run (see [`NetSpec::check`]) or does not fit in memory (see
/// [`NetSpec::check_memory`]), checked before any weight is drawn.
pub fn build_network<F: Float>(spec: &NetSpec, rng: &mut RandomState) -> Result<Box<dyn Layer<F>>> {
    spec.check_memory()?;
    spec.module.build(&spec.input, &mut (Build { rng }, std::marker::PhantomData::<F>))
}

/// How errors name a layer: its path (if it has one) and its description.
pub(crate) fn context(path: &str, describe: &str) -> String {
    if path.is_empty() {
        describe.to_string()
    } else {
        format!("{path} {describe}")
    }
}

/// A network layer: a differentiable map with named parameters that can be re-initialised, or a
/// container of layers (then its parameters, dropouts and state are its children's).
pub trait Layer<F: Float>: Send {
    /// A one-line description, e.g. `Dense(13 -> 1, linear)`.
    fn describe(&self) -> String;

    /// Computes the layer's output, caching what the backward pass needs.
    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>>;

    /// Computes the layer's output in evaluation mode without caching anything: prediction. A
    /// recurrent layer starts from the state it carries but does not update it.
    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>>;

    /// Given `∂L/∂output`, stores every parameter's gradient and returns `∂L/∂input`.
    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>>;

    /// The backward pass when `∂L/∂input` is not needed (the network's first layer): stores the parameter
    /// gradients only. The default runs [`Layer::backward`] and drops its result.
    fn backward_params(&mut self, output_grad: ArrayD<F>) -> Result<()> {
        self.backward(output_grad).map(drop)
    }

    /// The layers this one holds, with their names (`None`: inline, named at this level); none for a
    /// layer that is not a container.
    fn children(&self) -> Vec<(Option<&str>, &dyn Layer<F>)> {
        Vec::new()
    }

    /// Mutable access to the children.
    fn children_mut(&mut self) -> Vec<(Option<&str>, &mut dyn Layer<F>)> {
        Vec::new()
    }

    /// The parameters with their names within the layer (`weight`, `bias`, `weight_ih_l0`,
    /// `c_attn.weight`, ...); a container's are its children's, their names prefixed.
    fn params(&self) -> Vec<(String, &Param<F>)> {
        self.children()
            .into_iter()
            .flat_map(|(name, child)| {
                child.params().into_iter().map(move |(n, p)| (join(name.unwrap_or_default(), &n), p))
            })
            .collect()
    }

    /// Mutable access to the parameters.
    fn params_mut(&mut self) -> Vec<(String, &mut Param<F>)> {
        self.children_mut()
            .into_iter()
            .flat_map(|(name, child)| {
                let name = name.unwrap_or_default().to_string();
                child.params_mut().into_iter().map(move |(n, p)| (join(&name, &n), p))
            })
            .collect()
    }

    /// Draws fresh parameters from `rng`; a container's children draw in order.
    fn reinitialize(&mut self, rng: &mut RandomState) {
        self.children_mut().into_iter().for_each(|(_, child)| child.reinitialize(rng));
    }

    /// Whether the book's code re-seeds numpy's global generator before initialising this kind of layer
    /// (its `Dense` does, its `Conv2D` does not); see [`crate::network::InitSeeding::BookReseed`].
    fn reseeds_in_book(&self) -> bool {
        false
    }

    /// The layer's dropouts, to inject masks, named within the layer (the empty name: the layer's own,
    /// applied to its output); a container's are its children's.
    fn dropouts_mut(&mut self) -> Vec<(String, &mut Dropout<F>)> {
        self.children_mut()
            .into_iter()
            .flat_map(|(name, child)| {
                let name = name.unwrap_or_default().to_string();
                child.dropouts_mut().into_iter().map(move |(n, d)| (join(&name, &n), d))
            })
            .collect()
    }

    /// Forgets any state carried between calls (a recurrent layer's hidden state); a container's
    /// children forget theirs.
    fn reset_state(&mut self) {
        self.children_mut().into_iter().for_each(|(_, child)| child.reset_state());
    }

    /// The layer as a recurrent layer, if it is one (for its final state).
    fn recurrent(&self) -> Option<&Recurrent<F>> {
        None
    }

    /// The layer as a recurrent layer, mutably (to set its state).
    fn recurrent_mut(&mut self) -> Option<&mut Recurrent<F>> {
        None
    }
}

/// Every layer of the tree under `layer` that is not a container, with its path below `prefix`, in
/// the order the network computes.
pub fn leaves<'a, F: Float>(layer: &'a dyn Layer<F>, prefix: &str) -> Vec<(String, &'a dyn Layer<F>)> {
    let children = layer.children();
    if children.is_empty() {
        return vec![(prefix.to_string(), layer)];
    }
    children.into_iter().flat_map(|(name, child)| leaves(child, &join(prefix, name.unwrap_or_default()))).collect()
}

/// Calls `f` on every layer of the tree under `layer` that is not a container, mutably, with its path
/// below `prefix`, in the order the network computes.
pub fn for_each_leaf_mut<F: Float>(layer: &mut dyn Layer<F>, prefix: &str, f: &mut dyn FnMut(&str, &mut dyn Layer<F>)) {
    if layer.children().is_empty() {
        f(prefix, layer);
        return;
    }
    for (name, child) in layer.children_mut() {
        for_each_leaf_mut(child, &join(prefix, name.unwrap_or_default()), f);
    }
}

mod conv;
mod dense;
mod residual;
mod sequential;

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

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        let y = self.chain.infer(input)?;
        match &self.dropout {
            Some(dropout) => dropout.infer(y),
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

/// A parameter-free operation (an activation, flatten, pooling, reshape) used as a layer of its own.
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

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        self.op.infer(input)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        self.op.backward(output_grad)
    }
}

/// Dropout as a layer of its own (`nn.Dropout`): its mask generator is seeded by one draw when the
/// layer is (re)initialised, as a dense layer's dropout is.
pub struct DropoutLayer<F: Float> {
    dropout: Dropout<F>,
}

impl<F: Float> DropoutLayer<F> {
    /// The layer `spec` describes, its mask generator seeded from `rng`.
    ///
    /// # Errors
    /// A keep probability outside `(0, 1]`.
    pub fn new(spec: DropoutSpec, rng: &mut RandomState) -> Result<Self> {
        Ok(DropoutLayer { dropout: Dropout::new(spec.keep, spec.style, RandomState::new(spec.draw(rng)))? })
    }
}

impl<F: Float> Layer<F> for DropoutLayer<F> {
    fn describe(&self) -> String {
        format!("Dropout(keep {})", self.dropout.keep())
    }

    fn forward(&mut self, input: ArrayD<F>, mode: Mode) -> Result<ArrayD<F>> {
        self.dropout.forward(input, mode)
    }

    fn infer(&self, input: ArrayD<F>) -> Result<ArrayD<F>> {
        self.dropout.infer(input)
    }

    fn backward(&mut self, output_grad: ArrayD<F>) -> Result<ArrayD<F>> {
        self.dropout.backward(output_grad)
    }

    fn reinitialize(&mut self, rng: &mut RandomState) {
        self.dropout.reseed(rng.next_u32());
    }

    fn dropouts_mut(&mut self) -> Vec<(String, &mut Dropout<F>)> {
        vec![(String::new(), &mut self.dropout)]
    }
}
