//! *Deep Learning from Scratch* on libtorch, through [`tch`], in the style of the book's chapter 7.
//!
//! The models here are the same as in the `scratch` crate, with the same parameter names
//! (`layers.0.weight`, ...) in PyTorch's layout, the same initialisation from the same numpy-compatible
//! generator, the same losses, optimizers (in the book's forms), training loop and checkpoint format, so
//! that a model moves between the engines and the `parity-tests` crate can prove both compute the same
//! thing. Autograd computes the gradients here; `scratch` computes them by hand.
//!
//! ```
//! use scratch::layers::WeightInit;
//! use scratch::losses::MseReduction;
//! use scratch::ops::{Activation, Mode};
//! use scratch::rng::RandomState;
//! use torch::{losses::Loss, model::Model};
//!
//! let mut rng = RandomState::new(1);
//! let mut model = Model::new::<f64>(tch::Device::Cpu, Loss::MeanSquaredError(MseReduction::Rows));
//! model.dense((13, 8), Activation::Tanh, WeightInit::Glorot, None, &mut rng);
//! model.dense((8, 1), Activation::Linear, WeightInit::Glorot, None, &mut rng);
//! let y = model.forward(&tch::Tensor::zeros([4, 13], (tch::Kind::Double, tch::Device::Cpu)), Mode::Eval)?;
//! assert_eq!(y.size(), vec![4, 1]);
//! # Ok::<(), torch::Error>(())
//! ```

pub mod book;
pub mod convert;
pub mod device;
mod error;
pub mod fundamentals;
pub mod layers;
pub mod losses;
pub mod model;
pub mod optim;
pub mod recurrent;
pub mod spec;
pub mod train;

pub use device::Device;
pub use error::{Error, Result};
