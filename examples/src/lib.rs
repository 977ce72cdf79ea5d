//! Side-by-side programs for *Deep Learning from Scratch*: the experiments of the book, run with the
//! from-scratch engine (`scratch`) and the libtorch engine (`torch`), with tables and plots.
//!
//! The `dlfs` binary is the front door: `dlfs list`, `dlfs run <experiment>`, `dlfs reproduce`,
//! `dlfs tour`.

pub mod autoencoder;
pub mod boston;
pub mod divergence;
pub mod language_model;
pub mod metrics;
pub mod mnist;
pub mod plot;
pub mod progress;
pub mod reproduce;
pub mod table;

/// `<dir>/<experiment>-<engine>.safetensors`, with `dir` created; `None` without a folder.
///
/// # Errors
/// If the folder cannot be created.
pub fn checkpoint_path(
    dir: Option<&std::path::Path>,
    experiment: &str,
    engine: &str,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(dir) = dir else { return Ok(None) };
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    Ok(Some(dir.join(format!("{experiment}-{engine}.safetensors"))))
}
