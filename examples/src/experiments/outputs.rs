//! The files an experiment writes into the output folder (`--out`), every one named after the
//! experiment (`<experiment>-loss.png`, `<experiment>-metrics.json`, `<experiment>-<engine>.safetensors`,
//! ...), so that no two experiments write the same file. The runners take every path from here, and
//! the registry lists them without running anything ([`super::Experiment::files`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::Engine;

/// The output files of one experiment.
#[derive(Clone, Debug)]
pub struct Outputs {
    dir: PathBuf,
    experiment: &'static str,
}

impl Outputs {
    /// The files of `experiment` in `dir`.
    pub fn new(dir: impl Into<PathBuf>, experiment: &'static str) -> Self {
        Outputs { dir: dir.into(), experiment }
    }

    /// The experiment's name.
    pub fn experiment(&self) -> &'static str {
        self.experiment
    }

    /// The folder, created if it is not there.
    ///
    /// # Errors
    /// If it cannot be created.
    pub fn create_dir(&self) -> Result<&Path> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        Ok(&self.dir)
    }

    /// `<dir>/<experiment>-<suffix>`.
    pub fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}-{suffix}", self.experiment))
    }

    /// The loss curves: `<experiment>-loss.png`.
    pub fn loss_chart(&self) -> PathBuf {
        self.file("loss.png")
    }

    /// The numbers of the run: `<experiment>-metrics.json` and `<experiment>-metrics.csv`.
    pub fn metrics(&self) -> [PathBuf; 2] {
        [self.file("metrics.json"), self.file("metrics.csv")]
    }

    /// `engine`'s final model: `<experiment>-<engine>.safetensors`.
    pub fn checkpoint(&self, engine: Engine) -> PathBuf {
        self.file(&format!("{engine}.safetensors"))
    }

    /// `engine`'s best evaluated model, rewritten at every improvement:
    /// `<experiment>-<engine>-best.safetensors`.
    pub fn best_checkpoint(&self, engine: Engine) -> PathBuf {
        self.file(&format!("{engine}-best.safetensors"))
    }
}
