//! `dlfs`: run the experiments of *Deep Learning from Scratch* with both engines.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use examples::autoencoder::{self, AeOptions};
use examples::language_model::{self, LmOptions};
use examples::mnist::{self, Engines, RunOptions};
use examples::table::Table;
use examples::{boston, divergence, reproduce};
use scratch::spec::{CellKind, GruForm};
use torch::convert::TorchFloat;

#[derive(Parser)]
#[command(
    version,
    about = "Run the experiments of Deep Learning from Scratch with the from-scratch and libtorch engines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dtype {
    F32,
    F64,
}

/// A count of at least one, for clap.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a whole number of at least 1, got {s:?}")),
    }
}

#[derive(Args, Clone)]
struct Common {
    /// Folder with the data sets (default: the workspace's data/, or $DLFS_DATA)
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Folder for plots and results
    #[arg(long, global = true, default_value = "out")]
    out: PathBuf,
    /// Print only the results, no progress
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Which engines to run
    #[arg(long, global = true, value_enum, default_value = "both")]
    engine: Engines,
    /// Float type of the networks
    #[arg(long, global = true, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Epochs, instead of the book's number
    #[arg(long, global = true, value_parser = positive)]
    epochs: Option<usize>,
    /// Seed of the initial weights and the batch order (default: the book's seed of the chapter)
    #[arg(long, global = true)]
    seed: Option<u32>,
    /// Where the torch engine computes: cpu or cuda
    #[arg(long, global = true, default_value = "cpu")]
    device: torch::Device,
    /// The image data set of the MNIST experiments
    #[arg(long, global = true, value_enum, default_value = "mnist")]
    dataset: Dataset,
    /// Start from this checkpoint (saved by either engine) instead of fresh weights
    #[arg(long, global = true)]
    resume: Option<PathBuf>,
    /// Language models: training iterations (default 2000)
    #[arg(long, global = true, value_parser = positive)]
    iterations: Option<usize>,
    /// Language models: hidden units per recurrent layer (default 256; ch7-lstm: the vocabulary's size)
    #[arg(long, global = true, value_parser = positive)]
    hidden: Option<usize>,
    /// Language models: stacked recurrent layers
    #[arg(long, global = true, default_value_t = 1, value_parser = positive)]
    layers: usize,
    /// Language models: the learning rate (default 0.05 for AdaGrad; ch7-lstm: 0.001 for Adam)
    #[arg(long, global = true)]
    lr: Option<f64>,
    /// Language models: the book's consecutive windows with the state carried between batches
    #[arg(long, global = true)]
    book_windows: bool,
    /// Language models: sampling temperature
    #[arg(long, global = true, default_value_t = 0.7)]
    temperature: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dataset {
    /// Handwritten digits (LeCun and Cortes)
    Mnist,
    /// Zalando's clothing images, same format
    Fashion,
}

impl Dataset {
    fn folder(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::Fashion => "fashion-mnist",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// List the experiments
    List,
    /// Run experiments by name (see `dlfs list`)
    Run {
        /// Experiment names
        #[arg(required = true)]
        experiments: Vec<String>,
    },
    /// Recompute the book's deterministic results (chapters 1, 2, 3 and 5) beside its printed numbers
    Reproduce,
    /// A short tour: the book's numbers, the chapter 2-3 models, a chapter-4 network and a chapter-6
    /// character LSTM in both engines
    Tour,
}

/// The book's chapter-4 seed (BOOK.md 4a).
const CHAPTER4_SEED: u32 = 190_119;

fn run_boston(common: &Common, data: &Path) -> Result<boston::BostonResults> {
    let results = boston::run(data, common.engine, common.quiet)?;
    println!("{}", results.table().render());
    for path in results.plot(&common.out)?.into_iter().chain(results.metrics().write(&common.out)?) {
        println!("wrote {}", path.display());
    }
    Ok(results)
}

fn run_mnist_typed<F: TorchFloat>(common: &Common, data: &Path, names: &[&str], epochs: Option<usize>) -> Result<()> {
    let loaded = mnist::load::<F>(&data.join(common.dataset.folder()))?;
    let opts = RunOptions {
        engines: common.engine,
        epochs,
        seed: common.seed.unwrap_or(CHAPTER4_SEED),
        quiet: common.quiet,
        device: common.device,
        resume: common.resume.clone(),
        checkpoints: Some(common.out.clone()),
    };
    let mut rows = Vec::new();
    for name in names {
        let e = mnist::experiment(name)?;
        let results = mnist::run(e, &loaded, &opts)?;
        let plot = mnist::plot(&common.out, e, &results)?;
        let files = mnist::metrics(e, F::NAME, &results).write(&common.out)?;
        if !common.quiet {
            for path in std::iter::once(plot).chain(files) {
                eprintln!("wrote {}", path.display());
            }
        }
        rows.push((e, F::NAME.to_string(), results));
    }
    println!("{}", mnist::table(&rows, common.dataset == Dataset::Mnist).render());
    Ok(())
}

fn run_mnist(common: &Common, data: &Path, names: &[&str], epochs: Option<usize>) -> Result<()> {
    match common.dtype {
        Dtype::F32 => run_mnist_typed::<f32>(common, data, names, epochs),
        Dtype::F64 => run_mnist_typed::<f64>(common, data, names, epochs),
    }
}

/// The settings of a language-model experiment (`ch6-*`, `ch7-lstm`).
fn language_model_experiment(name: &str) -> Option<LmOptions> {
    let cell = match name {
        "ch7-lstm" => return Some(LmOptions::chapter7()),
        "ch6-rnn" => CellKind::Rnn,
        "ch6-lstm" => CellKind::Lstm,
        "ch6-gru" => CellKind::Gru(GruForm::PyTorch),
        "ch6-gru-book" => CellKind::Gru(GruForm::Book),
        _ => return None,
    };
    Some(LmOptions { cell, ..LmOptions::default() })
}

fn run_language_model_typed<F: TorchFloat>(common: &Common, data: &Path, defaults: LmOptions) -> Result<()> {
    let opts = LmOptions {
        engines: common.engine,
        hidden: common.hidden.unwrap_or(defaults.hidden),
        layers: common.layers,
        iterations: common.iterations.unwrap_or(defaults.iterations),
        lr: common.lr.unwrap_or(defaults.lr),
        book_windows: common.book_windows || defaults.book_windows,
        seed: common.seed.unwrap_or(defaults.seed),
        temperature: common.temperature,
        quiet: common.quiet,
        device: common.device,
        resume: common.resume.clone(),
        checkpoints: Some(common.out.clone()),
        ..defaults
    };
    let (corpus, opts, results) = language_model::run::<F>(data, &opts)?;
    for r in &results {
        println!("--- {} sample (temperature {}) ---\n{}\n", r.engine, opts.temperature, r.sample);
    }
    println!("{}", language_model::table(&opts, &corpus, &results).render());
    let plot = language_model::plot(&common.out, &opts, &results)?;
    let files = language_model::metrics(&opts, F::NAME, &results).write(&common.out)?;
    if !common.quiet {
        for path in std::iter::once(plot).chain(files) {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn run_language_model(common: &Common, data: &Path, defaults: LmOptions) -> Result<()> {
    match common.dtype {
        Dtype::F32 => run_language_model_typed::<f32>(common, data, defaults),
        Dtype::F64 => run_language_model_typed::<f64>(common, data, defaults),
    }
}

fn run_autoencoder_typed<F: TorchFloat>(common: &Common, data: &Path) -> Result<()> {
    let opts = AeOptions {
        engines: common.engine,
        epochs: common.epochs.unwrap_or(1),
        seed: common.seed.unwrap_or(20_190_504),
        quiet: common.quiet,
        device: common.device,
        resume: common.resume.clone(),
        checkpoints: Some(common.out.clone()),
    };
    let (m, results) = autoencoder::run::<F>(&data.join(common.dataset.folder()), &opts)?;
    println!("{}", autoencoder::table(&results).render());
    let files = autoencoder::metrics(F::NAME, &results).write(&common.out)?;
    for path in autoencoder::plots(&common.out, &m, &results)?.into_iter().chain(files) {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn run_autoencoder(common: &Common, data: &Path) -> Result<()> {
    match common.dtype {
        Dtype::F32 => run_autoencoder_typed::<f32>(common, data),
        Dtype::F64 => run_autoencoder_typed::<f64>(common, data),
    }
}

/// What an experiment takes from the command line, beyond `--engine`, `--data`, `--out` and `--quiet`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `boston`: the book's fixed chapter 2-3 schedules, f64, on the CPU.
    Boston,
    /// The chapter 4, 5 and 7 MNIST classifiers.
    Mnist,
    /// The character language models.
    LanguageModel,
    /// `ch7-autoencoder`.
    Autoencoder,
    /// `divergence`: fixed settings, both engines.
    Divergence,
}

impl Kind {
    /// The kind of experiment `name`.
    ///
    /// # Errors
    /// An unknown name.
    fn of(name: &str) -> Result<Kind> {
        Ok(match name {
            "boston" => Kind::Boston,
            "ch7-autoencoder" => Kind::Autoencoder,
            "divergence" => Kind::Divergence,
            n if language_model_experiment(n).is_some() => Kind::LanguageModel,
            n => mnist::experiment(n).map(|_| Kind::Mnist)?,
        })
    }
}

/// The options set on the command line that an experiment of `kind` does not use, e.g. `["--epochs"]`.
fn unused_options(kind: Kind, common: &Common) -> Vec<&'static str> {
    use Kind::*;
    let trains = [Mnist, LanguageModel, Autoencoder].contains(&kind);
    let images = [Mnist, Autoencoder].contains(&kind);
    let lm = kind == LanguageModel;
    let checks = [
        ("--dtype", common.dtype != Dtype::F32, trains),
        ("--epochs", common.epochs.is_some(), images),
        ("--seed", common.seed.is_some(), trains),
        ("--device", common.device != torch::Device::Cpu, trains),
        ("--dataset", common.dataset != Dataset::Mnist, images),
        ("--resume", common.resume.is_some(), trains),
        ("--engine", common.engine != Engines::Both, kind != Divergence),
        ("--iterations", common.iterations.is_some(), lm),
        ("--hidden", common.hidden.is_some(), lm),
        ("--layers", common.layers != 1, lm),
        ("--lr", common.lr.is_some(), lm),
        ("--book-windows", common.book_windows, lm),
        ("--temperature", common.temperature != 0.7, lm),
    ];
    checks.into_iter().filter(|&(_, set, used)| set && !used).map(|(flag, _, _)| flag).collect()
}

fn list() -> Table {
    let mut t = Table::new("Experiments (`dlfs run <name>`)", &["name", "chapter", "what", "book"]);
    t.push(vec![
        "boston".into(),
        "2, 3".into(),
        "regression on Boston housing: step by step, then with layers".into(),
        "MAE/RMSE".into(),
    ]);
    for e in &mnist::EXPERIMENTS {
        let book = e.book.map_or("-".into(), |(acc, table)| format!("{acc:.2} % ({table})"));
        t.push(vec![e.name.into(), e.chapter.to_string(), e.description.into(), book]);
    }
    for (name, what) in [
        ("ch6-lstm", "character-level LSTM language model on Shakespeare, validation nats/char"),
        ("ch6-gru", "the same with a GRU (PyTorch's form)"),
        ("ch6-gru-book", "the same with the book's GRU form (fixed), libtorch's step-by-step cells"),
        ("ch6-rnn", "the same with the vanilla tanh RNN"),
        ("ch7-lstm", "the book's NextCharacterModel: LSTM, Adam, one epoch of 100 000 characters"),
        ("ch7-autoencoder", "convolutional autoencoder (transposed-convolution decoder), codes in 2-D"),
    ] {
        let book = match name {
            "ch7-autoencoder" => "test MSE 0.0693",
            n if n.ends_with("-lstm") => "2.331 nats/char (ch. 7)",
            _ => "-",
        };
        let chapter = if name.starts_with("ch7") { "7" } else { "6" };
        t.push(vec![name.into(), chapter.into(), what.into(), book.into()]);
    }
    t.push(vec![
        "divergence".into(),
        "4".into(),
        "how far rounding differences grow in training, at the book's learning rate and a lower one".into(),
        "-".into(),
    ]);
    t
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let common = &cli.common;
    let data = common.data.clone().unwrap_or_else(scratch::data::default_dir);
    let start = Instant::now();
    match &cli.command {
        Command::List => println!("{}", list().render()),
        Command::Run { experiments } => {
            let kinds = experiments.iter().map(|name| Kind::of(name)).collect::<Result<Vec<_>>>()?;
            let mut mnist_names = Vec::new();
            for (name, &kind) in experiments.iter().zip(&kinds) {
                let unused = unused_options(kind, common);
                if !unused.is_empty() {
                    eprintln!("note: {name} does not use {}", unused.join(", "));
                }
                match kind {
                    Kind::Boston => drop(run_boston(common, &data)?),
                    Kind::Autoencoder => run_autoencoder(common, &data)?,
                    Kind::Divergence => {
                        println!("{}", divergence::table(&divergence::run(&data, &[0.2, 0.03])?).render())
                    }
                    Kind::LanguageModel => {
                        run_language_model(common, &data, language_model_experiment(name).expect("a language model"))?
                    }
                    Kind::Mnist => mnist_names.push(mnist::experiment(name)?.name),
                }
            }
            if !mnist_names.is_empty() {
                run_mnist(common, &data, &mnist_names, common.epochs)?;
            }
        }
        Command::Reproduce => {
            let mut checks = reproduce::chapter1()?;
            checks.extend(reproduce::boston(&boston::run(&data, common.engine, common.quiet)?));
            checks.extend(reproduce::chapter5()?);
            println!("{}", reproduce::table(&checks).render());
            let matched = checks.iter().filter(|c| c.matches()).count();
            println!("{matched} of {} printed numbers reproduced", checks.len());
        }
        Command::Tour => {
            let mut checks = reproduce::chapter1()?;
            checks.extend(reproduce::boston(&run_boston(common, &data)?));
            println!("{}", reproduce::table(&checks).render());
            let matched = checks.iter().filter(|c| c.matches()).count();
            println!("{matched} of {} printed numbers reproduced\n", checks.len());
            run_mnist(common, &data, &["ch4-glorot"], Some(common.epochs.unwrap_or(2)))?;
            let short = Common { iterations: Some(common.iterations.unwrap_or(300)), ..common.clone() };
            run_language_model(&short, &data, LmOptions::default())?;
        }
    }
    if !common.quiet && !matches!(cli.command, Command::List) {
        eprintln!("finished in {:.1} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}
