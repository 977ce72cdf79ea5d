//! *Deep Learning from Scratch* on libtorch, through [`tch`], in the style of the book's chapter 7.
//!
//! The networks here are built from the same descriptions as the `scratch` crate's
//! ([`scratch::spec`]: [`NetSpec`](scratch::spec::NetSpec), the book's named networks in
//! [`scratch::spec::book`]), draw the same initial weights from the same numpy-compatible generator,
//! and name their parameters as PyTorch does, so that a model moves between the engines and PyTorch
//! and the `parity-tests` crate can prove both compute the same thing. Autograd computes the gradients
//! here; `scratch` computes them by hand.
//!
//! It reads like tch: every layer and [`Net`] is a [`tch::nn::ModuleT`] whose parameters live in a
//! [`tch::nn::VarStore`], the losses are functions ([`loss`]), and tch's optimizers train it as well as
//! this crate's [`Trainer`](train::Trainer) (the book's optimizers and training loop, step for step
//! those of the from-scratch engine).
//!
//! ```
//! use scratch::ops::Activation;
//! use scratch::rng::RandomState;
//! use scratch::spec::{DenseSpec, LayerSpec, LossSpec, NetSpec, WeightInit};
//! use tch::nn::ModuleT;
//!
//! let spec = NetSpec::new(&[13], vec![
//!     LayerSpec::Dense(DenseSpec::new(8).activation(Activation::Tanh).init(WeightInit::Glorot)),
//!     LayerSpec::Dense(DenseSpec::new(1).init(WeightInit::Glorot)),
//! ]);
//! let vs = torch::var_store::<f64>(tch::Device::Cpu);
//! let net = torch::Net::new(vs.root(), &spec, &mut RandomState::new(1))?;
//! let x = tch::Tensor::zeros([4, 13], (tch::Kind::Double, tch::Device::Cpu));
//! let y = net.forward_t(&x, false);
//! assert_eq!(y.size(), vec![4, 1]);
//! let mse = torch::loss::loss(LossSpec::MSE, &y, &y.ones_like())?;
//! assert!(mse.double_value(&[]) > 0.0);
//! # Ok::<(), torch::Error>(())
//! ```

pub mod convert;
pub mod device;
mod error;
pub mod generate;
pub mod layers;
pub mod loss;
mod net;
pub mod optim;
pub mod state;
pub mod step_by_step;
pub mod sync;
pub mod train;

pub use device::Device;
pub use error::{Error, Result};
pub use layers::{BuildOptions, Layer};
pub use net::{var_store, Net};
/// The libtorch bindings the engine is built on, re-exported so that a program uses the same version.
pub use tch;
