//! The check of `--resume` that needs the experiment's network: the checkpoint loads into it.

use std::path::Path;

use anyhow::{Context, Result};
use scratch::network::NeuralNetwork;
use scratch::rng::RandomState;
use scratch::spec::{LossSpec, NetSpec};
use scratch::Float;

/// Loads the checkpoint at `path` into a from-scratch network built from `spec` (both engines name and
/// lay out parameters alike, so this checks it for either), to find a file that is not a checkpoint, or
/// one of another network, before anything trains.
///
/// # Errors
/// If it does not load, naming the option, the experiment and why.
pub fn check<F: Float>(path: &Path, spec: &NetSpec, loss: LossSpec, experiment: &str) -> Result<()> {
    let mut net = NeuralNetwork::<F>::from_spec(spec, loss.build::<F>(), &mut RandomState::new(0))?;
    net.load(path).with_context(|| {
        format!(
            "--resume {}: not a checkpoint of {experiment}'s network; give one that `dlfs run {experiment}` saved",
            path.display()
        )
    })
}
