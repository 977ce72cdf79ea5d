//! Layers on libtorch, each a [`tch::nn::ModuleT`] whose parameters live in a [`tch::nn::VarStore`]
//! under PyTorch's names (`weight`, `bias`, `weight_ih_l0`, ...), built from the same description
//! ([`scratch::spec`]) and drawing the same initial values from the same generator as the
//! from-scratch engine's layers.
//!
//! They mix with tch's own modules:
//!
//! ```
//! use scratch::ops::Activation;
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
//! trainer call.

mod conv;
mod dense;
mod dropout;
mod pool;
mod recurrent;
mod reshape;

use scratch::ops::Activation;
use scratch::rng::RandomState;
use scratch::spec::LayerSpec;
use tch::{nn, Tensor};

pub use conv::{conv2d, Conv2D};
pub use dense::{dense, Dense};
pub use dropout::{Dropout, Masks};
pub use pool::Pool2D;
pub use recurrent::{recurrent, Kernel, Recurrent};
pub use reshape::Reshape;

use crate::Result;

/// A layer of the libtorch engine: a [`nn::ModuleT`] with a checked forward pass, named parameters and
/// the from-scratch engine's initialisation.
pub trait Layer: nn::ModuleT {
    /// A one-line description, e.g. `Dense(13 -> 1, linear)`.
    fn describe(&self) -> String;

    /// The forward pass (`train` selects dropout's training behaviour); errors name the layer and the
    /// shapes instead of panicking.
    ///
    /// # Errors
    /// An input of the wrong shape.
    fn f_forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor>;

    /// The parameters with their names within the layer, in drawing order (PyTorch's layout).
    fn parameters(&self) -> Vec<(String, Tensor)>;

    /// Draws fresh parameters from `rng`, exactly as the from-scratch layer of the same description
    /// does.
    fn reinitialize(&self, rng: &mut RandomState);

    /// Whether the book re-seeds its generator before initialising this kind of layer (see
    /// [`scratch::network::InitSeeding::BookReseed`]).
    fn reseeds_in_book(&self) -> bool {
        false
    }

    /// The layer's dropout, if it has one (to choose its masks or inject one).
    fn dropout(&self) -> Option<&Dropout> {
        None
    }

    /// The layer as a recurrent layer, if it is one (for its state).
    fn recurrent(&self) -> Option<&Recurrent> {
        None
    }
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
pub struct Options {
    /// Where dropout draws its masks.
    pub masks: Masks,
    /// How recurrent layers compute.
    pub kernel: Kernel,
}

impl Options {
    /// The options of a parity check with the from-scratch engine: dropout masks from the shared
    /// numpy-compatible stream (so both engines drop the same units), recurrent layers with `kernel`.
    pub fn parity(kernel: Kernel) -> Self {
        Options { masks: Masks::Shared, kernel }
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
    options: Options,
    rng: &mut RandomState,
) -> Result<Box<dyn Layer>> {
    spec.output_shape(shape)?;
    let layer: Box<dyn Layer> = match spec {
        LayerSpec::Dense(d) => Box::new(dense(path, *shape.last().expect("checked"), *d, rng)?),
        LayerSpec::Conv(c) => Box::new(conv2d(path, *c, rng)?),
        LayerSpec::Pool(p) => Box::new(Pool2D::new(*p)),
        LayerSpec::Flatten => Box::new(Reshape::flatten()),
        LayerSpec::Reshape(target) => Box::new(Reshape::to(target)),
        LayerSpec::Recurrent(r) => Box::new(Recurrent::new(path, *r, options.kernel, rng)?),
    };
    if let Some(d) = layer.dropout() {
        d.set_masks(options.masks);
    }
    Ok(layer)
}

/// `activation(x)` for the activations both engines share.
pub fn activate(x: &Tensor, activation: Activation) -> Tensor {
    match activation {
        Activation::Linear => x.shallow_clone(),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Tanh => x.tanh(),
        Activation::ReLU => x.relu(),
        Activation::LeakyReLU { slope } => (x * slope).where_self(&x.le(0.0), x),
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
