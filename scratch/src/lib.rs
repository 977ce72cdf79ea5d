//! *Deep Learning from Scratch*, from first principles on [`ndarray`].
//!
//! Every operation has a hand-written forward and backward pass; nothing here computes a gradient
//! automatically (chapter 6's scalar autodiff aside). The modules follow the book:
//!
//! | chapter | modules |
//! |---|---|
//! | 1, Foundations | [`calculus`] |
//! | 2, Fundamentals | [`step_by_step`], [`metrics`], [`data::boston`] |
//! | 3, Deep learning from scratch | [`ops`], [`layers`], [`losses`], [`network`], [`optim`], [`train`] |
//! | 4, Extensions | [`ops`] (activations, dropout), [`losses`] (softmax cross-entropy), [`optim`] (momentum, decay), [`data::mnist`] |
//! | 5, Convolutions | [`conv`] (the chapter's loops, the fast convolution, pooling), [`layers::Conv2D`] |
//! | 6, Recurrent networks and autodiff | [`autodiff`], [`rnn`], [`data::text`] |
//! | 7, PyTorch | [`spec`] (one description of a network for both engines; the book's named networks in [`spec::book`]) |
//! | 8, beyond the book: a GPT's building blocks | [`transformer`] (embeddings, layer normalisation, causal self-attention), GELU in [`ops::Activation`] |
//!
//! Arrays are generic over [`Float`] (`f32` or `f64`); randomness always comes from an explicit
//! [`rng::RandomState`], numpy-compatible so that the book's printed numbers can be reproduced exactly.
//!
//! ```
//! use scratch::prelude::*;
//!
//! let mut rng = RandomState::new(20190501);
//! let layers: Vec<Box<dyn Layer<f64>>> = vec![
//!     Box::new(Dense::new(13, DenseSpec::new(13).activation(Activation::Sigmoid), &mut rng)?),
//!     Box::new(Dense::new(13, DenseSpec::new(1), &mut rng)?),
//! ];
//! let mut net = NeuralNetwork::new(layers, MeanSquaredError::new());
//! let x = ndarray::Array2::<f64>::zeros((4, 13));
//! let y = ndarray::Array2::<f64>::ones((4, 1));
//! let loss = net.train_batch(&x, &y)?;
//! SGD::new(0.01)?.step(&mut net.params_mut())?;
//! assert!(loss > 0.0);
//! # Ok::<(), scratch::Error>(())
//! ```

pub mod autodiff;
pub mod calculus;
pub mod checkpoint;
pub mod conv;
pub mod data;
mod error;
mod float;
pub mod gradcheck;
// Not in the crate's own unit tests: they compile the crate anyway, and share with nothing.
#[cfg(all(shared_instances, not(test)))]
#[doc(hidden)]
pub mod instances;
pub mod layers;
pub mod linalg;
pub mod losses;
pub mod memory;
pub mod metrics;
pub mod network;
pub mod ops;
pub mod optim;
pub mod param;
pub mod rng;
pub mod rnn;
mod simd;
pub mod spec;
pub mod step_by_step;
pub mod train;
pub mod transformer;

pub use error::{Error, Result};
pub use float::{erf_f32, erf_f64, exp_f32, exp_f64, tanh_f32, tanh_f64, Float};
/// The array library the engine computes with, re-exported so that a program uses the same version.
pub use ndarray;

/// The types most programs need.
pub mod prelude {
    pub use crate::layers::{Conv2D, Dense, Layer, OpLayer};
    pub use crate::losses::{Loss, MeanSquaredError, SoftmaxCrossEntropy};
    pub use crate::network::{InitSeeding, NeuralNetwork};
    pub use crate::ops::{Activation, Mode};
    pub use crate::optim::{Decay, Optimizer, SGDMomentum, SGD};
    pub use crate::rng::RandomState;
    pub use crate::spec::{
        book, ConvSpec, DenseSpec, DropoutSpec, LayerSpec, LossSpec, Module, NetSpec, PoolSpec, RecurrentSpec,
        WeightInit,
    };
    pub use crate::train::{Dataset, FitOptions, FitReport, Trainer};
    pub use crate::{Error, Float, Result};
}
