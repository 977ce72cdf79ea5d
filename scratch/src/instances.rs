//! The engine instantiated once, here, for `f32` and `f64`, so that the crates above it do not compile
//! it again.
//!
//! Nearly everything in this crate is generic over [`Float`], and generic code is compiled in the crate
//! that names its type: every test binary, doc test and program that builds a network would compile the
//! whole engine (every layer's forward and backward, behind [`Layer`](crate::layers::Layer)'s `dyn`, and
//! the SIMD kernels under them), for each float type it uses. Where a crate is compiled at an
//! optimisation level of 0 or 1, rustc instead shares the instantiations it made with the crates that
//! depend on it, and those link them rather than compile their own. The statics below name the engine's
//! entry points for both types, which makes this crate instantiate, and so share, all of it.
//!
//! `build.rs` sets `cfg(shared_instances)` at those levels only: at 2 and 3 (`--release`) nothing is
//! shared, and each program compiles, and fully optimises, the code it uses.

use crate::network::NeuralNetwork;
use crate::optim::{self, Optimizer};
use crate::rng::RandomState;
use crate::spec::{NetSpec, OptimSpec};
use crate::train::{Dataset, FitOptions, FitReport, Observer, Trainer};
use crate::{Float, Result};

/// A [`Trainer`] with an optimizer built from its description, as programs make it.
type BuiltTrainer<F> = Trainer<F, Box<dyn Optimizer<F>>>;

/// [`Trainer::fit`]'s signature.
type Fit<F> = fn(&mut BuiltTrainer<F>, &Dataset<F>, &Dataset<F>, &FitOptions, &mut dyn Observer) -> Result<FitReport>;

/// The entry points of the engine for one float type; never called through.
pub struct Instances<F: Float> {
    /// [`NeuralNetwork::build`]: every layer kind, through the description.
    pub build: fn(&NetSpec, &mut RandomState) -> Result<NeuralNetwork<F>>,
    /// [`optim::build`]: every optimizer and schedule.
    pub optimizer: fn(&OptimSpec) -> Result<Box<dyn Optimizer<F>>>,
    /// [`Trainer::fit`]: the training loop.
    pub fit: Fit<F>,
}

impl<F: Float> Instances<F> {
    const ALL: Self =
        Instances { build: NeuralNetwork::<F>::build, optimizer: optim::build::<F>, fit: BuiltTrainer::<F>::fit };
}

/// The engine in single precision.
pub static F32: Instances<f32> = Instances::ALL;
/// The engine in double precision.
pub static F64: Instances<f64> = Instances::ALL;
