//! Layers on libtorch, each a [`tch::nn::ModuleT`] whose parameters live in a [`tch::nn::VarStore`]
//! under PyTorch's names (`weight`, `bias`, `weight_ih_l0`, ...), built from the same description
//! ([`scratch::spec`]) and drawing the same initial values from the same generator as the
//! from-scratch engine's layers.
//!
//! They mix with tch's own modules:
//!
//! ```
//! use scratch::ops::{Activation, GeluApproximation};
//! use scratch::rng::RandomState;
//! use scratch::spec::DenseSpec;
//! use tch::nn::{self, ModuleT};
//!
//! let vs = nn::VarStore::new(tch::Device::Cpu);
//! let root = vs.root();
//! let mut rng = RandomState::new(0);
//! let hidden = DenseSpec::new(16).activation(Activation::Tanh).dropout(0.8);
//! let net = nn::seq_t()
//!     .add(torch::layers::dense(&root / "0", 784, hidden, &mut rng)?)
//!     .add(nn::linear(&root / "1", 16, 10, Default::default()));
//! let logits = net.forward_t(&tch::Tensor::zeros([8, 784], tch::kind::FLOAT_CPU), true);
//! assert_eq!(logits.size(), [8, 10]);
//! assert!(vs.variables().contains_key("0.weight"));
//! # Ok::<(), torch::Error>(())
//! ```
//!
//! `ModuleT::forward_t` panics on an input of the wrong shape, as tch's modules do; [`Layer::f_forward_t`]
//! returns the error instead (naming the layer and the shapes), and is what [`crate::Net`] and the
//! trainer call. Containers ([`Sequential`], [`Residual`]) nest layers as the description's modules
//! nest.
//!
//! A layer holds handles to its parameters for its forward pass, as tch's modules do; the `VarStore`
//! is the one list of them ([`crate::Net::named_parameters`] reads it). Recurrent state is passed in and
//! returned, never kept in a layer (see [`crate::state`]).

mod attention;
mod conv;
mod dense;
mod dropout;
mod embedding;
mod layer_norm;
mod pool;
mod recurrent;
mod reshape;
mod residual;
mod sequential;

use scratch::ops::{Activation, GeluApproximation};
use scratch::rng::RandomState;
use scratch::spec::module::{join, Builder};
use scratch::spec::{LayerSpec, NetSpec};
use tch::{nn, Tensor};

pub use attention::CausalSelfAttention;
pub use conv::{conv2d, Conv2D};
pub use dense::{dense, Dense};
pub use dropout::{Dropout, Masks};
pub use embedding::{Embedding, PositionEmbedding};
pub use layer_norm::LayerNorm;
pub use pool::Pool2D;
pub use recurrent::{recurrent, Kernel, Recurrent, RecurrentState};
pub use reshape::Reshape;
pub use residual::Residual;
pub use sequential::Sequential;

use crate::state::StatePass;
use crate::Result;

/// A layer of the libtorch engine: a [`nn::ModuleT`] with a checked forward pass, named parameters and
/// the from-scratch engine's initialisation; or a container of layers (then its parameters and
/// dropouts are its children's).
pub trait Layer: nn::ModuleT {
    /// A one-line description, e.g. `Dense(13 -> 1, linear)`.
    fn describe(&self) -> String;

    /// The forward pass (`train` selects dropout's training behaviour), every recurrent layer starting
    /// from zeros; errors name the layer and the shapes instead of panicking.
    ///
    /// # Errors
    /// An input of the wrong shape.
    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor>;

    /// The forward pass with recurrent state: every recurrent layer of this one, in the order they
    /// compute, starts from the state it left in `state` (as its description's
    /// [`StateMode`](scratch::spec::StateMode) says) and leaves its final state there. Only containers
    /// and recurrent layers differ from [`Layer::f_forward_t`].
    ///
    /// # Errors
    /// As [`Layer::f_forward_t`], or a carried state that does not fit the batch.
    fn f_forward_state(&self, xs: &Tensor, train: bool, _state: &mut StatePass<'_>) -> Result<Tensor> {
        self.f_forward_t(xs, train)
    }

    /// The layers this one holds, with their names (`None`: inline, named at this level); none for a
    /// layer that is not a container.
    fn children(&self) -> Vec<(Option<&str>, &dyn Layer)> {
        Vec::new()
    }

    /// Draws fresh parameters from `rng`, exactly as the from-scratch layer of the same description
    /// does; a container's children draw in order.
    fn reinitialize(&self, rng: &mut RandomState) {
        self.children().into_iter().for_each(|(_, child)| child.reinitialize(rng));
    }

    /// Whether the book re-seeds its generator before initialising this kind of layer (see
    /// [`scratch::network::InitSeeding::BookReseed`]).
    fn reseeds_in_book(&self) -> bool {
        false
    }

    /// The layer's dropouts (to choose their masks or inject one), named within the layer (the empty
    /// name: the layer's own); a container's are its children's.
    fn dropouts(&self) -> Vec<(String, &Dropout)> {
        self.children()
            .into_iter()
            .flat_map(|(name, child)| {
                child.dropouts().into_iter().map(move |(n, d)| (join(name.unwrap_or_default(), &n), d))
            })
            .collect()
    }

    /// The layer as a recurrent layer, if it is one (for its state).
    fn recurrent(&self) -> Option<&Recurrent> {
        None
    }
}

/// Every layer of the tree under `layer` that is not a container, with its path below `prefix`, in
/// the order the network computes.
pub fn leaves<'a>(layer: &'a dyn Layer, prefix: &str) -> Vec<(String, &'a dyn Layer)> {
    let children = layer.children();
    if children.is_empty() {
        return vec![(prefix.to_string(), layer)];
    }
    children.into_iter().flat_map(|(name, child)| leaves(child, &join(prefix, name.unwrap_or_default()))).collect()
}

/// Implements [`nn::ModuleT`] for a [`Layer`] by its checked forward pass, panicking with the error
/// (as tch's own modules do on a bad input).
macro_rules! module_by_checked_forward {
    ($layer:ty) => {
        impl tch::nn::ModuleT for $layer {
            fn forward_t(&self, xs: &tch::Tensor, train: bool) -> tch::Tensor {
                use $crate::layers::Layer as _;
                self.f_forward_t(xs, train).unwrap_or_else(|e| panic!("{}: {e}", self.describe()))
            }
        }
    };
}
pub(crate) use module_by_checked_forward;

/// How the libtorch engine builds a description where it has a choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Where dropout draws its masks.
    pub masks: Masks,
    /// How recurrent layers compute.
    pub kernel: Kernel,
}

impl BuildOptions {
    /// The options of a parity check with the from-scratch engine: dropout masks from the shared
    /// numpy-compatible stream (so both engines drop the same units), recurrent layers with `kernel`.
    pub fn parity(kernel: Kernel) -> Self {
        BuildOptions { masks: Masks::Shared, kernel }
    }
}

/// The layer `spec` describes on inputs of `shape` (without the batch axis), its parameters under
/// `path`, drawn from `rng`.
///
/// # Errors
/// Invalid settings, a layer that does not fit `shape`, or a recurrent kernel that cannot compute the
/// cell.
pub fn build(
    path: &nn::Path<'_>,
    spec: &LayerSpec,
    shape: &[usize],
    options: BuildOptions,
    rng: &mut RandomState,
) -> Result<Box<dyn Layer>> {
    build_tied(path, spec, shape, options, rng, None)
}

/// As [`build`], a dense layer's weight being `shared` (a parameter of another layer) if given.
fn build_tied(
    path: &nn::Path<'_>,
    spec: &LayerSpec,
    shape: &[usize],
    options: BuildOptions,
    rng: &mut RandomState,
    shared: Option<Tensor>,
) -> Result<Box<dyn Layer>> {
    spec.output_shape(shape)?;
    let layer: Box<dyn Layer> = match spec {
        LayerSpec::Dense(d) => Box::new(dense::build(path, *shape.last().expect("checked"), *d, rng, shared)?),
        LayerSpec::Conv(c) => Box::new(conv2d(path, *c, rng)?),
        LayerSpec::Pool(p) => Box::new(Pool2D::new(*p)),
        LayerSpec::Flatten => Box::new(Reshape::flatten()),
        LayerSpec::Reshape(target) => Box::new(Reshape::to(target)),
        LayerSpec::Recurrent(r) => Box::new(Recurrent::new(path, *r, options.kernel, rng)?),
        LayerSpec::Activation(a) => Box::new(Activate(*a)),
        LayerSpec::Dropout(d) => Box::new(Dropout::new(d.keep, d.style, d.draw(rng))),
        LayerSpec::Embedding(e) => Box::new(Embedding::new(path, *e, rng)?),
        LayerSpec::PositionEmbedding(p) => Box::new(PositionEmbedding::new(path, *p, rng)?),
        LayerSpec::LayerNorm(n) => Box::new(LayerNorm::new(path, *n)?),
        LayerSpec::Attention(a) => Box::new(CausalSelfAttention::new(*a, rng)?),
    };
    for (_, d) in layer.dropouts() {
        d.set_masks(options.masks);
    }
    Ok(layer)
}

/// Builds the libtorch network of a description under a path, drawing from the generator in order.
struct Build<'a, 'p> {
    root: &'a nn::Path<'p>,
    options: BuildOptions,
    rng: &'a mut RandomState,
    ties: &'a [(String, String)],
}

/// The path `dotted` (e.g. `transformer.h.0`; empty: `root` itself) below `root`.
fn sub_path<'p>(root: &nn::Path<'p>, dotted: &str) -> nn::Path<'p> {
    dotted.split('.').filter(|s| !s.is_empty()).fold(root.clone(), |p, segment| p.sub(segment))
}

/// The variable `name` (dotted, e.g. `layers.0.weight`) below `root` in its `VarStore`, if there is one.
pub(crate) fn lookup(root: &nn::Path<'_>, name: &str) -> Option<Tensor> {
    let (at, leaf) = name.rsplit_once('.').unwrap_or(("", name));
    sub_path(root, at).get(leaf)
}

impl Builder for Build<'_, '_> {
    type Output = Box<dyn Layer>;

    fn layer(&mut self, path: &str, layer: &LayerSpec, input: &[usize]) -> scratch::Result<Self::Output> {
        let weight = join(path, "weight");
        let shared = match self.ties.iter().find(|(tied, _)| *tied == weight) {
            Some((_, source)) => Some(lookup(self.root, source).ok_or_else(|| {
                scratch::Error::InvalidArgument(format!("{weight} is tied to {source}, which is not built before it"))
            })?),
            None => None,
        };
        let at = sub_path(self.root, path);
        build_tied(&at, layer, input, self.options, self.rng, shared).map_err(|e| match e {
            crate::Error::Scratch(e) => e.within(&context(path, &layer.describe(input))),
            other => scratch::Error::InvalidArgument(format!("{}: {other}", context(path, &layer.describe(input)))),
        })
    }

    fn sequence(&mut self, path: &str, children: Vec<(Option<String>, Self::Output)>) -> scratch::Result<Self::Output> {
        Ok(Box::new(Sequential::new(path, children)))
    }

    fn residual(&mut self, path: &str, body: Self::Output) -> scratch::Result<Self::Output> {
        Ok(Box::new(Residual::new(path, body)))
    }
}

/// The layers of `spec` as one layer (the root of the tree), their parameters under `root`, drawn
/// from `rng`; a tied dense weight is its source's tensor (one variable in the `VarStore`, under both
/// names).
///
/// # Errors
/// A description that cannot run (see [`NetSpec::check`]) or does not fit in memory (see
/// [`NetSpec::check_memory`]), checked before any weight is drawn.
pub fn build_network(
    root: &nn::Path<'_>,
    spec: &NetSpec,
    options: BuildOptions,
    rng: &mut RandomState,
) -> Result<Box<dyn Layer>> {
    spec.check_memory()?;
    let ties: Vec<(String, String)> = spec.ties.iter().map(|t| (t.parameter.clone(), t.source.clone())).collect();
    Ok(spec.module.build(&spec.input, &mut Build { root, options, rng, ties: &ties })?)
}

/// How errors name a layer: its path (if it has one) and its description.
pub(crate) fn context(path: &str, describe: &str) -> String {
    if path.is_empty() {
        describe.to_string()
    } else {
        format!("{path} {describe}")
    }
}

/// An activation as a layer of its own (`nn.ReLU`, `nn.Tanh`, ...).
#[derive(Debug)]
pub struct Activate(pub Activation);

impl Layer for Activate {
    fn describe(&self) -> String {
        self.0.name().into()
    }

    fn f_forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(activate(xs, self.0))
    }
}

module_by_checked_forward!(Activate);

/// `activation(x)` for the activations both engines share.
pub fn activate(x: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Linear => x.shallow_clone(),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Tanh => x.tanh(),
        Activation::ReLU => x.relu(),
        Activation::LeakyReLU { slope } => (x * slope).where_self(&x.le(0.0), x),
        Activation::Gelu(GeluApproximation::Exact) => x.gelu("none"),
        Activation::Gelu(GeluApproximation::Tanh) => x.gelu("tanh"),
    }
}

/// Registers a trainable parameter of `shape` under `path` as `name`, of the path's kind and device.
fn parameter(path: &nn::Path<'_>, name: &str, shape: &[usize]) -> Tensor {
    let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    path.add(name, Tensor::zeros(shape.as_slice(), (path.kind(), path.device())), true)
}

/// Overwrites a parameter's values (keeping its kind and device) without recording the copy for
/// autograd.
pub fn set_values(param: &Tensor, values: &ndarray::ArrayD<f64>) {
    let source = crate::convert::to_tensor(values).to_device(param.device()).to_kind(param.kind());
    tch::no_grad(|| param.shallow_clone().copy_(&source));
}
