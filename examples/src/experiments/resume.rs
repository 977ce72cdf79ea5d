//! The check of `--resume` that needs the experiment's network: the checkpoint was written by the same
//! experiment for the same description of its network (the metadata keys `experiment` and `network`
//! that every checkpoint of `dlfs run` records), and it loads into the network.

use std::path::Path;

use anyhow::{bail, Context, Result};
use scratch::checkpoint;
use scratch::network::NeuralNetwork;
use scratch::rng::RandomState;
use scratch::spec::{LossSpec, NetSpec};
use scratch::Float;

/// The metadata key naming the experiment that wrote a checkpoint.
pub const EXPERIMENT: &str = "experiment";

/// Checks the checkpoint at `path` against `experiment` and its network `spec` (both engines name and
/// lay out parameters alike, so this checks it for either), to find a file that is not a checkpoint,
/// one of another experiment, or one of another description of the network, before anything trains.
///
/// # Errors
/// If it was written by another experiment or for another description, records neither (an older
/// file), or does not load, naming the option, the experiment and why.
pub fn check<F: Float>(path: &Path, spec: &NetSpec, loss: LossSpec, experiment: &str) -> Result<()> {
    let option = format!("--resume {}", path.display());
    let hint = format!("give one that `dlfs run {experiment}` saved, or start without --resume");
    let file = checkpoint::load::<F>(path).with_context(|| format!("{option}: not a checkpoint; {hint}"))?;
    match file.metadata.get(EXPERIMENT) {
        Some(written) if written == experiment => {}
        Some(written) => bail!("{option}: written by `dlfs run {written}`, not {experiment}; {hint}"),
        None => bail!(
            "{option}: the file does not record the experiment that wrote it (a checkpoint of an earlier \
             version, or of another program); {hint}"
        ),
    }
    if file.metadata.get("network") != Some(&spec.fingerprint()) {
        bail!(
            "{option}: written for another description of {experiment}'s network (run with other options \
             that change it, such as --hidden, --layers or --dropout); resume with the options it was \
             trained with, or {hint}"
        );
    }
    let mut net = NeuralNetwork::<F>::from_spec(spec, loss.build::<F>(), &mut RandomState::new(0))?;
    net.load_named_as(path, &file.tensors, &checkpoint::Rename::default())
        .with_context(|| format!("{option}: not a checkpoint of {experiment}'s network; {hint}"))
}
