//! The experiments of `dlfs`, one registry entry each ([`EXPERIMENTS`]): its name, chapter, what it is,
//! what the book printed and what that number is, the options it takes, and its runner. `dlfs list`,
//! `dlfs run`, the option checks, the notes about options an experiment does not use, the names of the
//! files it writes and the README's table of experiments all come from the entry.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::engine::Engines;
use crate::language_model::LmOptions;
use crate::{autoencoder, boston, divergence, gpt, language_model, mnist};

pub mod listing;
pub mod options;
pub mod outputs;
pub mod plan;
pub mod prepared;
mod registry;
pub mod resume;

pub use options::{Opt, Options};
pub use outputs::Outputs;
pub use prepared::{Cache, Prepared, Ran, Settings};
pub use registry::EXPERIMENTS;

/// A number the book printed, in its unit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Printed {
    /// A test accuracy in percent.
    Percent(f64),
    /// A validation loss in nats per character.
    NatsPerChar(f64),
    /// A test mean squared error.
    Mse(f64),
    /// Several numbers, in words.
    Words(&'static str),
}

impl Printed {
    /// The number, when it is one.
    pub fn value(self) -> Option<f64> {
        match self {
            Printed::Percent(v) | Printed::NatsPerChar(v) | Printed::Mse(v) => Some(v),
            Printed::Words(_) => None,
        }
    }
}

impl fmt::Display for Printed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Printed::Percent(v) => write!(f, "{v:.2} %"),
            Printed::NatsPerChar(v) => write!(f, "{v} nats/char"),
            Printed::Mse(v) => write!(f, "MSE {v:.4}"),
            Printed::Words(w) => f.write_str(w),
        }
    }
}

/// What the book printed for an experiment, and what that number is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Book {
    /// The number.
    pub printed: Printed,
    /// What it measured, in which of the book's runs.
    pub what: &'static str,
}

/// How an experiment runs: which module trains it, with what settings.
#[derive(Clone, Debug)]
pub enum Runner {
    /// Chapters 2, 3 and 7 on Boston housing ([`boston`]).
    Boston,
    /// An MNIST classifier ([`mnist`]).
    Classifier(mnist::Classifier),
    /// A character language model ([`language_model`]), from these defaults.
    LanguageModel(fn() -> LmOptions),
    /// Chapter 7's autoencoder ([`autoencoder`]).
    Autoencoder,
    /// Rounding differences growing in training ([`divergence`]).
    Divergence,
    /// Chapter 8's character GPT ([`gpt`]).
    Gpt,
}

/// One experiment.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Its name on the command line, and the start of the name of every file it writes.
    pub name: &'static str,
    /// The book's chapters it comes from.
    pub chapter: &'static str,
    /// What it is.
    pub what: &'static str,
    /// What the book printed for it, if anything.
    pub book: Option<Book>,
    /// The options it takes; any other option given is named in a note.
    pub options: &'static [Opt],
    /// How it runs.
    pub runner: Runner,
}

impl Experiment {
    /// The files a run with `engines` writes into `dir`.
    pub fn files(&self, dir: &Path, engines: Engines) -> Vec<PathBuf> {
        let out = Outputs::new(dir, self.name);
        match &self.runner {
            Runner::Boston => boston::files(&out),
            Runner::Classifier(_) => mnist::files(&out, engines),
            Runner::LanguageModel(_) => language_model::files(&out, engines),
            Runner::Autoencoder => autoencoder::files(&out, engines),
            Runner::Divergence => divergence::files(&out),
            Runner::Gpt => gpt::files(&out, engines),
        }
    }

    /// Loads the experiment's data and checks everything that needs it (a checkpoint to resume from
    /// against the network, a prompt against the corpus's vocabulary, ...), without training.
    ///
    /// # Errors
    /// Missing or malformed data, or an option that does not fit it.
    pub fn prepare(&'static self, settings: Settings, cache: &mut Cache) -> Result<Box<dyn Prepared>> {
        match &self.runner {
            Runner::Boston => boston::prepare(settings),
            Runner::Classifier(c) => mnist::prepare(self, c, settings, cache),
            Runner::LanguageModel(defaults) => language_model::prepare(self, defaults(), settings),
            Runner::Autoencoder => autoencoder::prepare(self, settings, cache),
            Runner::Divergence => divergence::prepare(settings),
            Runner::Gpt => gpt::prepare(self, settings),
        }
    }
}

/// The experiment named `name`.
///
/// # Errors
/// If there is none.
pub fn find(name: &str) -> Result<&'static Experiment> {
    match EXPERIMENTS.iter().find(|e| e.name == name) {
        Some(e) => Ok(e),
        None => bail!("unknown experiment {name:?}; `dlfs list` shows them"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn names_are_unique_and_every_file_is_named_after_its_experiment_and_written_by_no_other() {
        let mut owners: HashMap<PathBuf, &str> = HashMap::new();
        for e in &EXPERIMENTS {
            assert_eq!(find(e.name).map(|f| f.name).ok(), Some(e.name));
            for engines in [Engines::Both, Engines::Scratch, Engines::Torch] {
                for file in e.files(Path::new("out"), engines) {
                    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                    assert!(name.starts_with(&format!("{}-", e.name)), "{} writes {name}", e.name);
                    if let Some(other) = owners.insert(file.clone(), e.name) {
                        assert_eq!(other, e.name, "{other} and {} both write {name}", e.name);
                    }
                }
            }
        }
        assert!(owners.len() > 50, "{owners:?}");
        for name in ["ch6-gru-loss.png", "ch6-gru-book-loss.png", "ch6-lstm-loss.png", "ch7-lstm-loss.png"] {
            assert!(owners.contains_key(&Path::new("out").join(name)), "{name}");
        }
    }

    #[test]
    fn engines_name_their_checkpoints() {
        let files = find("ch4-glorot").unwrap().files(Path::new("o"), Engines::Torch);
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        for name in ["ch4-glorot-torch.safetensors", "ch4-glorot-torch-best.safetensors", "ch4-glorot-loss.png"] {
            assert!(names.contains(&name), "{names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("scratch")), "{names:?}");
    }

    #[test]
    fn unknown_names_say_where_to_look() {
        let err = find("ch9").unwrap_err().to_string();
        assert!(err.contains("\"ch9\"") && err.contains("dlfs list"), "{err}");
    }
}
