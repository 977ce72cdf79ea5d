//! `dlfs`: run the experiments of *Deep Learning from Scratch* with both engines.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use examples::language_model::{self, LmOptions};
use examples::mnist::{self, Engines, RunOptions};
use examples::table::Table;
use examples::{boston, divergence, reproduce};
use scratch::rnn::{CellKind, GruForm};
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
    #[arg(long, global = true)]
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
    #[arg(long, global = true)]
    iterations: Option<usize>,
    /// Language models: hidden units per recurrent layer
    #[arg(long, global = true, default_value_t = 256)]
    hidden: usize,
    /// Language models: stacked recurrent layers
    #[arg(long, global = true, default_value_t = 1)]
    layers: usize,
    /// Language models: AdaGrad's learning rate
    #[arg(long, global = true, default_value_t = 0.05)]
    lr: f64,
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
    /// Recompute the book's deterministic results and compare them with its printed numbers
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

/// The cell of a `ch6-*` experiment.
fn recurrent_cell(name: &str) -> Option<CellKind> {
    match name {
        "ch6-rnn" => Some(CellKind::Rnn),
        "ch6-lstm" => Some(CellKind::Lstm),
        "ch6-gru" => Some(CellKind::Gru(GruForm::PyTorch)),
        "ch6-gru-book" => Some(CellKind::Gru(GruForm::Book)),
        _ => None,
    }
}

fn run_language_model_typed<F: TorchFloat>(common: &Common, data: &Path, cell: CellKind) -> Result<()> {
    let defaults = LmOptions::default();
    let opts = LmOptions {
        engines: common.engine,
        cell,
        hidden: common.hidden,
        layers: common.layers,
        iterations: common.iterations.unwrap_or(defaults.iterations),
        lr: common.lr,
        book_windows: common.book_windows,
        seed: common.seed.unwrap_or(defaults.seed),
        temperature: common.temperature,
        quiet: common.quiet,
        device: common.device,
        resume: common.resume.clone(),
        checkpoints: Some(common.out.clone()),
        ..defaults
    };
    let (corpus, results) = language_model::run::<F>(data, &opts)?;
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

fn run_language_model(common: &Common, data: &Path, cell: CellKind) -> Result<()> {
    match common.dtype {
        Dtype::F32 => run_language_model_typed::<f32>(common, data, cell),
        Dtype::F64 => run_language_model_typed::<f64>(common, data, cell),
    }
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
    ] {
        let book = if name == "ch6-lstm" { "2.331 nats/char (ch. 7)" } else { "-" };
        t.push(vec![name.into(), "6".into(), what.into(), book.into()]);
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
            let mut mnist_names = Vec::new();
            for name in experiments {
                match name.as_str() {
                    "boston" => drop(run_boston(common, &data)?),
                    "divergence" => println!("{}", divergence::table(&divergence::run(&data, &[0.2, 0.03])?).render()),
                    other if recurrent_cell(other).is_some() => {
                        run_language_model(common, &data, recurrent_cell(other).expect("matched"))?
                    }
                    other if other.starts_with("ch") => mnist_names.push(mnist::experiment(other)?.name),
                    other => bail!("unknown experiment {other:?}; `dlfs list` shows them"),
                }
            }
            if !mnist_names.is_empty() {
                run_mnist(common, &data, &mnist_names, common.epochs)?;
            }
        }
        Command::Reproduce => {
            let mut checks = reproduce::chapter1()?;
            checks.extend(reproduce::boston(&boston::run(&data, common.engine, common.quiet)?));
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
            run_language_model(&short, &data, CellKind::Lstm)?;
        }
    }
    if !common.quiet && !matches!(cli.command, Command::List) {
        eprintln!("finished in {:.1} s", start.elapsed().as_secs_f64());
    }
    Ok(())
}
