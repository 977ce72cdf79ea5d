//! The options of the experiments (`--epochs`, `--lr`, ...), declared once, as data: each [`Opt`] has
//! one entry in `Opt::def` (its flag, its help and the values it takes), from which the command
//! line's arguments, their parsing and the checks of single values (a count of at least 1, a finite
//! positive number, a non-empty prompt) all come. [`Options`] holds what the command line gave, every
//! one optional: an experiment falls back on its own default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command, ValueEnum};

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

/// An option an experiment can take, by name. Adding one: a variant here and in [`Opt::ALL`], an arm
/// in `Opt::def`, and its use where an experiment reads its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// `--heads`.
    Heads,
    /// `--context`.
    Context,
    /// `--batch`.
    Batch,
    /// `--dropout`.
    Dropout,
    /// `--lr`.
    Lr,
    /// `--book-windows`.
    BookWindows,
    /// `--temperature`.
    Temperature,
    /// `--top-k`.
    TopK,
    /// `--prompt`.
    Prompt,
    /// `--max-seconds`.
    MaxSeconds,
}

/// The values an option takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// None: the flag alone.
    Flag,
    /// A whole number of at least 1 ([`count`]).
    Count,
    /// A finite number above zero ([`positive_number`]).
    Positive,
    /// A finite number of at least zero ([`non_negative`]).
    NonNegative,
    /// A probability in `[0, 1)` ([`probability`]).
    Probability,
    /// A seed: a whole number from 0 to 2³² − 1.
    Seed,
    /// A non-empty text ([`prompt`]).
    Text,
    /// A path.
    Path,
    /// `scratch`, `torch` or `both`.
    Engines,
    /// `f32` or `f64`.
    Dtype,
    /// `mnist` or `fashion`.
    Dataset,
    /// `cpu`, `cuda` or `auto`.
    Device,
}

/// What an option is: its flag, its help and its values.
struct Def {
    flag: &'static str,
    help: &'static str,
    kind: Kind,
}

/// A value given on the command line.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Flag,
    Count(usize),
    Number(f64),
    Seed(u32),
    Text(String),
    Path(PathBuf),
    Engines(Engines),
    Dtype(Dtype),
    Dataset(ImageSet),
    Device(torch::Device),
}

impl Opt {
    /// Every option, in the order notes, listings and `--help` name them.
    pub const ALL: [Opt; 20] = [
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
        Opt::Heads,
        Opt::Context,
        Opt::Batch,
        Opt::Dropout,
        Opt::Lr,
        Opt::BookWindows,
        Opt::Temperature,
        Opt::TopK,
        Opt::Prompt,
        Opt::MaxSeconds,
    ];

    /// The option's one declaration.
    fn def(self) -> Def {
        let def = |flag, help, kind| Def { flag, help, kind };
        match self {
            Opt::Engine => {
                def("--engine", "Which engines to run: scratch, torch or both [default: both]", Kind::Engines)
            }
            Opt::Dtype => def("--dtype", "Float type of the networks: f32 or f64 [default: f32]", Kind::Dtype),
            Opt::Epochs => def("--epochs", "Epochs, instead of the book's number", Kind::Count),
            Opt::Seed => def(
                "--seed",
                "Seed of the initial weights and the batch order [default: the book's seed of the chapter]",
                Kind::Seed,
            ),
            Opt::Device => def(
                "--device",
                "Where the torch engine computes: cpu, cuda, or auto (cuda if usable) [default: cpu]",
                Kind::Device,
            ),
            Opt::Dataset => def(
                "--dataset",
                "The image data set of the MNIST experiments: mnist or fashion [default: mnist]",
                Kind::Dataset,
            ),
            Opt::Resume => def(
                "--resume",
                "Start from this checkpoint (saved by either engine) instead of fresh weights",
                Kind::Path,
            ),
            Opt::Iterations => def(
                "--iterations",
                "Language models: training iterations [default: 2000; ch7-lstm: one epoch; ch8-gpt: 5000]",
                Kind::Count,
            ),
            Opt::Hidden => def(
                "--hidden",
                "Language models: hidden units per recurrent layer, or the GPT's width [default: 256; ch7-lstm: \
                 the vocabulary's size; ch8-gpt: 128]",
                Kind::Count,
            ),
            Opt::Layers => def(
                "--layers",
                "Language models: stacked recurrent layers, or GPT blocks [default: 1; ch8-gpt: 4]",
                Kind::Count,
            ),
            Opt::Heads => def("--heads", "GPT: attention heads per block [default: 4]", Kind::Count),
            Opt::Context => def("--context", "GPT: the context, in characters [default: 64]", Kind::Count),
            Opt::Batch => def("--batch", "GPT: windows per batch [default: 12]", Kind::Count),
            Opt::Dropout => {
                def("--dropout", "GPT: dropout probability, PyTorch's p, in [0, 1) [default: 0]", Kind::Probability)
            }
            Opt::Lr => def(
                "--lr",
                "Language models: the learning rate [default: 0.05 for AdaGrad; ch7-lstm: 0.001 for Adam; ch8-gpt: \
                 0.001, the peak of AdamW's schedule]",
                Kind::Positive,
            ),
            Opt::BookWindows => def(
                "--book-windows",
                "Language models: the book's consecutive windows with the state carried between batches",
                Kind::Flag,
            ),
            Opt::Temperature => def(
                "--temperature",
                "Language models: sampling temperature, 0 for the most likely character [default: 0.7; ch8-gpt: 0.8]",
                Kind::NonNegative,
            ),
            Opt::TopK => def("--top-k", "GPT: sample among the k most likely characters [default: 200]", Kind::Count),
            Opt::Prompt => {
                def("--prompt", "Language models: the text the samples start from [default: \"ROMEO.\"]", Kind::Text)
            }
            Opt::MaxSeconds => def(
                "--max-seconds",
                "GPT: stop training after this many seconds (the schedule stays that of --iterations)",
                Kind::Positive,
            ),
        }
    }

    /// The flag on the command line.
    pub fn flag(self) -> &'static str {
        self.def().flag
    }

    /// The option as a clap argument: parsing its value checks it.
    fn arg(self) -> Arg {
        let def = self.def();
        let arg = Arg::new(def.flag.trim_start_matches('-')).long(def.flag.trim_start_matches('-')).help(def.help);
        let kind = def.kind;
        match kind {
            Kind::Flag => arg.action(ArgAction::SetTrue),
            _ => arg.allow_negative_numbers(true).value_parser(move |s: &str| parse(kind, s)),
        }
    }
}

/// A value of `kind`, checked.
fn parse(kind: Kind, s: &str) -> Result<Value, String> {
    let choice = |e: String| format!("{e}; expected one of the values `--help` lists");
    Ok(match kind {
        Kind::Flag => Value::Flag,
        Kind::Count => Value::Count(count(s)?),
        Kind::Positive => Value::Number(positive_number(s)?),
        Kind::NonNegative => Value::Number(non_negative(s)?),
        Kind::Probability => Value::Number(probability(s)?),
        Kind::Seed => {
            Value::Seed(s.parse().map_err(|_| format!("expected a whole number from 0 to {}, got {s:?}", u32::MAX))?)
        }
        Kind::Text => Value::Text(prompt(s)?),
        Kind::Path => Value::Path(PathBuf::from(s)),
        Kind::Engines => Value::Engines(Engines::from_str(s, true).map_err(choice)?),
        Kind::Dtype => Value::Dtype(Dtype::from_str(s, true).map_err(choice)?),
        Kind::Dataset => Value::Dataset(ImageSet::from_str(s, true).map_err(choice)?),
        Kind::Device => Value::Device(s.parse().map_err(|e: torch::device::DeviceError| e.to_string())?),
    })
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

/// A finite number above zero (a learning rate, a time).
///
/// # Errors
/// Anything else (0, a negative number, `nan`, `inf`), with what was given.
pub fn positive_number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("expected a finite number above 0, got {s:?}")),
    }
}

/// A finite number of at least zero (a temperature, where 0 is greedy).
///
/// # Errors
/// Anything else, with what was given.
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("expected a finite number of at least 0, got {s:?}")),
    }
}

/// A probability of dropping a unit, in `[0, 1)`.
///
/// # Errors
/// Anything else, with what was given.
pub fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
        _ => Err(format!("expected a probability from 0 up to (not including) 1, got {s:?}")),
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

/// The experiment options as given on the command line, by option.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    values: BTreeMap<Opt, Value>,
}

impl clap::FromArgMatches for Options {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut values = BTreeMap::new();
        for opt in Opt::ALL {
            let id = opt.flag().trim_start_matches('-');
            let value = match opt.def().kind {
                Kind::Flag => matches.get_flag(id).then_some(Value::Flag),
                _ => matches.get_one::<Value>(id).cloned(),
            };
            values.extend(value.map(|v| (opt, v)));
        }
        Ok(Options { values })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for Options {
    fn augment_args(cmd: Command) -> Command {
        Opt::ALL.into_iter().fold(cmd, |cmd, opt| cmd.arg(opt.arg()))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl Options {
    /// Whether the command line gave `opt`.
    pub fn is_set(&self, opt: Opt) -> bool {
        self.values.contains_key(&opt)
    }

    /// Sets `opt` from the text `value`, as the command line would.
    ///
    /// # Errors
    /// A value `opt` does not take (a flag's `value` is ignored).
    pub fn set(&mut self, opt: Opt, value: &str) -> Result<(), String> {
        self.values.insert(opt, parse(opt.def().kind, value)?);
        Ok(())
    }

    /// The options among `declared` that are set.
    pub fn set_among(&self, declared: &[Opt]) -> Vec<Opt> {
        Opt::ALL.into_iter().filter(|o| declared.contains(o) && self.is_set(*o)).collect()
    }

    /// The options that are set but not among `declared`.
    pub fn set_outside(&self, declared: &[Opt]) -> Vec<Opt> {
        Opt::ALL.into_iter().filter(|o| !declared.contains(o) && self.is_set(*o)).collect()
    }

    /// These options with only those among `declared` kept: what an experiment that takes `declared`
    /// sees, so that it cannot act on an option its registry entry does not name.
    pub fn only(&self, declared: &[Opt]) -> Options {
        let values = self.values.iter().filter(|(o, _)| declared.contains(o)).map(|(&o, v)| (o, v.clone())).collect();
        Options { values }
    }

    /// A count option's value.
    pub fn count(&self, opt: Opt) -> Option<usize> {
        match self.values.get(&opt) {
            Some(Value::Count(n)) => Some(*n),
            _ => None,
        }
    }

    /// A number option's value.
    pub fn number(&self, opt: Opt) -> Option<f64> {
        match self.values.get(&opt) {
            Some(Value::Number(x)) => Some(*x),
            _ => None,
        }
    }

    /// Whether a flag was given.
    pub fn flag(&self, opt: Opt) -> bool {
        matches!(self.values.get(&opt), Some(Value::Flag))
    }

    /// `--seed`.
    pub fn seed(&self) -> Option<u32> {
        match self.values.get(&Opt::Seed) {
            Some(Value::Seed(s)) => Some(*s),
            _ => None,
        }
    }

    /// `--prompt`.
    pub fn prompt(&self) -> Option<&str> {
        match self.values.get(&Opt::Prompt) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// `--resume`.
    pub fn resume(&self) -> Option<&Path> {
        match self.values.get(&Opt::Resume) {
            Some(Value::Path(p)) => Some(p),
            _ => None,
        }
    }

    /// The engines to run.
    pub fn engines(&self) -> Engines {
        match self.values.get(&Opt::Engine) {
            Some(Value::Engines(e)) => *e,
            _ => Engines::default(),
        }
    }

    /// Where the torch engine computes, if given.
    pub fn device_given(&self) -> Option<torch::Device> {
        match self.values.get(&Opt::Device) {
            Some(Value::Device(d)) => Some(*d),
            _ => None,
        }
    }

    /// Where the torch engine computes.
    pub fn device(&self) -> torch::Device {
        self.device_given().unwrap_or_default()
    }

    /// The image data set.
    pub fn dataset(&self) -> ImageSet {
        match self.values.get(&Opt::Dataset) {
            Some(Value::Dataset(d)) => *d,
            _ => ImageSet::default(),
        }
    }

    /// The float type.
    pub fn dtype(&self) -> Dtype {
        match self.values.get(&Opt::Dtype) {
            Some(Value::Dtype(d)) => *d,
            _ => Dtype::default(),
        }
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

    /// A value that parses, for each kind.
    fn value(opt: Opt) -> Option<&'static str> {
        match opt.def().kind {
            Kind::Flag => None,
            Kind::Engines => Some("torch"),
            Kind::Dtype => Some("f64"),
            Kind::Device => Some("cpu"),
            Kind::Dataset => Some("fashion"),
            Kind::Path => Some("a.safetensors"),
            Kind::Positive | Kind::NonNegative | Kind::Probability => Some("0.5"),
            Kind::Text => Some("To be"),
            Kind::Count | Kind::Seed => Some("3"),
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
        let flags: std::collections::BTreeSet<_> = Opt::ALL.iter().map(|o| o.flag()).collect();
        assert_eq!(flags.len(), Opt::ALL.len(), "every flag is its own");
    }

    #[test]
    fn single_values_are_checked_while_parsing() {
        for bad in ["0", "-1", "nan", "inf", "-inf", "x", ""] {
            assert!(positive_number(bad).is_err(), "{bad}");
        }
        assert_eq!(positive_number("1e-3"), Ok(1e-3));
        assert_eq!(non_negative("0"), Ok(0.0), "temperature 0 is greedy sampling");
        assert!(non_negative("-0.1").is_err());
        assert!(probability("1").is_err() && probability("-0.1").is_err());
        assert_eq!(probability("0"), Ok(0.0));
        assert!(count("0").is_err() && count("-2").is_err() && count("1.5").is_err());
        assert_eq!(count("7"), Ok(7));
        assert!(prompt("").is_err());
        assert_eq!(prompt("ROMEO."), Ok("ROMEO.".to_string()));
        let err = Line::try_parse_from(["dlfs", "--seed", "-1"]).err().unwrap().to_string();
        assert!(err.contains("expected a whole number from 0"), "{err}");
        let err = Line::try_parse_from(["dlfs", "--engine", "neither"]).err().unwrap().to_string();
        assert!(err.contains("--engine"), "{err}");
    }
}
