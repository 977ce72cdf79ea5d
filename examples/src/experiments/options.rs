//! The options of the experiments (`--epochs`, `--lr`, ...): their values as given on the command
//! line ([`Options`], every one optional: an experiment falls back on its own default), the names an
//! experiment declares in the registry ([`Opt`]), and the checks of single values that clap runs while
//! it parses them (a count of at least 1, a finite positive number, a non-empty prompt).

use std::path::PathBuf;

use crate::engine::Engines;

/// The float type of the networks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// Single precision (the default).
    #[default]
    F32,
    /// Double precision.
    F64,
}

/// The image data set of the MNIST experiments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageSet {
    /// Handwritten digits (LeCun and Cortes).
    #[default]
    Mnist,
    /// Zalando's clothing images, same format.
    Fashion,
}

impl ImageSet {
    /// Its folder under the data folder.
    pub fn folder(self) -> &'static str {
        match self {
            ImageSet::Mnist => "mnist",
            ImageSet::Fashion => "fashion-mnist",
        }
    }
}

/// A count of at least one.
///
/// # Errors
/// Anything else, with what was given.
pub fn count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, got {s:?}")),
    }
}

/// A finite number above zero (a learning rate, a temperature).
///
/// # Errors
/// Anything else (0, a negative number, `nan`, `inf`), with what was given.
pub fn positive_number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("expected a finite number above 0, got {s:?}")),
    }
}

/// A non-empty text (the sampling prompt; whether the corpus has its characters is checked once the
/// corpus is loaded).
///
/// # Errors
/// An empty text.
pub fn prompt(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("expected at least one character to start the samples from".into())
    } else {
        Ok(s.to_string())
    }
}

/// The experiment options as given on the command line; `None` (or `false`) where not given.
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// Which engines to run [default: both]
    #[arg(long, value_enum)]
    pub engine: Option<Engines>,
    /// Float type of the networks [default: f32]
    #[arg(long, value_enum)]
    pub dtype: Option<Dtype>,
    /// Epochs, instead of the book's number
    #[arg(long, value_parser = count, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Seed of the initial weights and the batch order [default: the book's seed of the chapter]
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u32>,
    /// Where the torch engine computes: cpu or cuda [default: cpu]
    #[arg(long)]
    pub device: Option<torch::Device>,
    /// The image data set of the MNIST experiments [default: mnist]
    #[arg(long, value_enum)]
    pub dataset: Option<ImageSet>,
    /// Start from this checkpoint (saved by either engine) instead of fresh weights
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Language models: training iterations [default: 2000; ch7-lstm: one epoch]
    #[arg(long, value_parser = count, allow_negative_numbers = true)]
    pub iterations: Option<usize>,
    /// Language models: hidden units per recurrent layer [default: 256; ch7-lstm: the vocabulary's size]
    #[arg(long, value_parser = count, allow_negative_numbers = true)]
    pub hidden: Option<usize>,
    /// Language models: stacked recurrent layers [default: 1]
    #[arg(long, value_parser = count, allow_negative_numbers = true)]
    pub layers: Option<usize>,
    /// Language models: the learning rate [default: 0.05 for AdaGrad; ch7-lstm: 0.001 for Adam]
    #[arg(long, value_parser = positive_number, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Language models: the book's consecutive windows with the state carried between batches
    #[arg(long)]
    pub book_windows: bool,
    /// Language models: sampling temperature [default: 0.7]
    #[arg(long, value_parser = positive_number, allow_negative_numbers = true)]
    pub temperature: Option<f64>,
    /// Language models: the text the samples start from [default: "ROMEO."]
    #[arg(long, value_parser = prompt)]
    pub prompt: Option<String>,
}

/// An option an experiment can take, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    /// `--engine`.
    Engine,
    /// `--dtype`.
    Dtype,
    /// `--epochs`.
    Epochs,
    /// `--seed`.
    Seed,
    /// `--device`.
    Device,
    /// `--dataset`.
    Dataset,
    /// `--resume`.
    Resume,
    /// `--iterations`.
    Iterations,
    /// `--hidden`.
    Hidden,
    /// `--layers`.
    Layers,
    /// `--lr`.
    Lr,
    /// `--book-windows`.
    BookWindows,
    /// `--temperature`.
    Temperature,
    /// `--prompt`.
    Prompt,
}

impl Opt {
    /// Every option, in the order notes and listings name them.
    pub const ALL: [Opt; 14] = [
        Opt::Engine,
        Opt::Dtype,
        Opt::Epochs,
        Opt::Seed,
        Opt::Device,
        Opt::Dataset,
        Opt::Resume,
        Opt::Iterations,
        Opt::Hidden,
        Opt::Layers,
        Opt::Lr,
        Opt::BookWindows,
        Opt::Temperature,
        Opt::Prompt,
    ];

    /// The flag on the command line.
    pub fn flag(self) -> &'static str {
        match self {
            Opt::Engine => "--engine",
            Opt::Dtype => "--dtype",
            Opt::Epochs => "--epochs",
            Opt::Seed => "--seed",
            Opt::Device => "--device",
            Opt::Dataset => "--dataset",
            Opt::Resume => "--resume",
            Opt::Iterations => "--iterations",
            Opt::Hidden => "--hidden",
            Opt::Layers => "--layers",
            Opt::Lr => "--lr",
            Opt::BookWindows => "--book-windows",
            Opt::Temperature => "--temperature",
            Opt::Prompt => "--prompt",
        }
    }

    /// Whether the command line gave it.
    pub fn is_set(self, o: &Options) -> bool {
        match self {
            Opt::Engine => o.engine.is_some(),
            Opt::Dtype => o.dtype.is_some(),
            Opt::Epochs => o.epochs.is_some(),
            Opt::Seed => o.seed.is_some(),
            Opt::Device => o.device.is_some(),
            Opt::Dataset => o.dataset.is_some(),
            Opt::Resume => o.resume.is_some(),
            Opt::Iterations => o.iterations.is_some(),
            Opt::Hidden => o.hidden.is_some(),
            Opt::Layers => o.layers.is_some(),
            Opt::Lr => o.lr.is_some(),
            Opt::BookWindows => o.book_windows,
            Opt::Temperature => o.temperature.is_some(),
            Opt::Prompt => o.prompt.is_some(),
        }
    }

    /// Forgets its value, as if the command line had not given it.
    fn clear(self, o: &mut Options) {
        match self {
            Opt::Engine => o.engine = None,
            Opt::Dtype => o.dtype = None,
            Opt::Epochs => o.epochs = None,
            Opt::Seed => o.seed = None,
            Opt::Device => o.device = None,
            Opt::Dataset => o.dataset = None,
            Opt::Resume => o.resume = None,
            Opt::Iterations => o.iterations = None,
            Opt::Hidden => o.hidden = None,
            Opt::Layers => o.layers = None,
            Opt::Lr => o.lr = None,
            Opt::BookWindows => o.book_windows = false,
            Opt::Temperature => o.temperature = None,
            Opt::Prompt => o.prompt = None,
        }
    }
}

impl Options {
    /// The options among `declared` that are set.
    pub fn set_among(&self, declared: &[Opt]) -> Vec<Opt> {
        Opt::ALL.into_iter().filter(|o| declared.contains(o) && o.is_set(self)).collect()
    }

    /// The options that are set but not among `declared`.
    pub fn set_outside(&self, declared: &[Opt]) -> Vec<Opt> {
        Opt::ALL.into_iter().filter(|o| !declared.contains(o) && o.is_set(self)).collect()
    }

    /// These options with only those among `declared` kept: what an experiment that takes `declared`
    /// sees, so that it cannot act on an option its registry entry does not name.
    pub fn only(&self, declared: &[Opt]) -> Options {
        let mut kept = self.clone();
        for opt in Opt::ALL.into_iter().filter(|o| !declared.contains(o)) {
            opt.clear(&mut kept);
        }
        kept
    }

    /// The engines to run.
    pub fn engines(&self) -> Engines {
        self.engine.unwrap_or_default()
    }

    /// Where the torch engine computes.
    pub fn device(&self) -> torch::Device {
        self.device.unwrap_or_default()
    }

    /// The image data set.
    pub fn dataset(&self) -> ImageSet {
        self.dataset.unwrap_or_default()
    }

    /// The float type.
    pub fn dtype(&self) -> Dtype {
        self.dtype.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Line {
        #[command(flatten)]
        options: Options,
    }

    /// A value for each flag that parses.
    fn value(opt: Opt) -> Option<&'static str> {
        match opt {
            Opt::Engine => Some("torch"),
            Opt::Dtype => Some("f64"),
            Opt::Device => Some("cpu"),
            Opt::Dataset => Some("fashion"),
            Opt::Resume => Some("a.safetensors"),
            Opt::Lr | Opt::Temperature => Some("0.5"),
            Opt::Prompt => Some("To be"),
            Opt::BookWindows => None,
            _ => Some("3"),
        }
    }

    #[test]
    fn each_flag_sets_its_option_alone_and_clearing_it_unsets_it() {
        for opt in Opt::ALL {
            let mut args = vec!["dlfs".to_string(), opt.flag().to_string()];
            args.extend(value(opt).map(String::from));
            let options = Line::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}")).options;
            assert_eq!(options.set_among(&Opt::ALL), [opt], "{args:?}");
            assert_eq!(options.set_outside(&[opt]), [], "{args:?}");
            assert_eq!(options.only(&[]), Options::default(), "{args:?}");
            assert_eq!(options.only(&[opt]), options, "{args:?}");
        }
    }

    #[test]
    fn single_values_are_checked_while_parsing() {
        for bad in ["0", "-1", "nan", "inf", "-inf", "x", ""] {
            assert!(positive_number(bad).is_err(), "{bad}");
        }
        assert_eq!(positive_number("1e-3"), Ok(1e-3));
        assert!(count("0").is_err() && count("-2").is_err() && count("1.5").is_err());
        assert_eq!(count("7"), Ok(7));
        assert!(prompt("").is_err());
        assert_eq!(prompt("ROMEO."), Ok("ROMEO.".to_string()));
    }
}
