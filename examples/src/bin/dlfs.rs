//! `dlfs`: run the experiments of *Deep Learning from Scratch* with both engines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use examples::engine::Engines;
use examples::experiments::plan::{self, Context, Plan};
use examples::experiments::{listing, Opt, Options};
use examples::{boston, reproduce};

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

#[derive(Args, Clone)]
struct Common {
    /// Folder with the data sets (default: the workspace's data/, or $DLFS_DATA)
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Folder for plots, results and checkpoints
    #[arg(long, global = true, default_value = "out")]
    out: PathBuf,
    /// Print only the results, no progress
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// List the experiments
    List {
        /// Print the README's table of experiments, in Markdown
        #[arg(long)]
        markdown: bool,
    },
    /// Run experiments by name (see `dlfs list`)
    Run {
        /// Experiment names
        #[arg(required = true)]
        experiments: Vec<String>,
        #[command(flatten)]
        options: Options,
    },
    /// Recompute the book's deterministic results (chapters 1, 2, 3 and 5) beside its printed numbers
    Reproduce {
        /// Which engines recompute the Boston models
        #[arg(long, value_enum, default_value = "both")]
        engine: Engines,
    },
    /// A short tour: the book's numbers, the chapter 2-3 models, a chapter-4 network (2 epochs) and a
    /// chapter-6 character LSTM (300 iterations) in both engines
    Tour {
        #[command(flatten)]
        options: Options,
    },
}

/// The experiments of the tour.
const TOUR: [&str; 3] = ["boston", "ch4-glorot", "ch6-lstm"];

fn print_notes(notes: Vec<String>) {
    for note in notes {
        eprintln!("{note}");
    }
}

/// The reproduced numbers as a table and a count.
fn print_checks(checks: &[reproduce::Check]) {
    println!("{}", reproduce::table(checks).render());
    let matched = checks.iter().filter(|c| c.matches()).count();
    println!("{matched} of {} printed numbers reproduced", checks.len());
}

fn run(cli: &Cli) -> Result<()> {
    let common = &cli.common;
    let context = Context {
        data: common.data.clone().unwrap_or_else(scratch::data::default_dir),
        out: common.out.clone(),
        quiet: common.quiet,
    };
    match &cli.command {
        Command::List { markdown: false } => print!("{}", listing::text()),
        Command::List { markdown: true } => print!("{}", listing::markdown()),
        Command::Run { experiments, options } => {
            let experiments = plan::resolve(experiments)?;
            print_notes(plan::notes(&experiments, options));
            Plan::new(&experiments, options, &context)?.run(|_, _| Ok(()))?;
        }
        Command::Reproduce { engine } => {
            let mut checks = reproduce::chapter1()?;
            checks.extend(reproduce::boston(&boston::run(&context.data, *engine, common.quiet)?));
            checks.extend(reproduce::chapter5()?);
            print_checks(&checks);
        }
        Command::Tour { options } => {
            let experiments = plan::resolve(&TOUR)?;
            print_notes(plan::group_notes("the tour", &experiments, options));
            let mut options = options.clone();
            for (opt, value) in [(Opt::Epochs, "2"), (Opt::Iterations, "300")] {
                if !options.is_set(opt) {
                    options.set(opt, value).map_err(anyhow::Error::msg)?;
                }
            }
            let plan = Plan::new(&experiments, &options, &context)?;
            let mut checks = reproduce::chapter1()?;
            plan.run(|_, ran| {
                if !ran.checks.is_empty() {
                    checks.extend(ran.checks.iter().cloned());
                    print_checks(&checks);
                    println!();
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Prints `error` and its causes. Not its backtrace: an error is the user's to fix, and its message
/// says how; a bug panics, and a panic keeps its backtrace.
fn report(error: &anyhow::Error) {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("caused by: {cause}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let start = Instant::now();
    let result = run(&cli);
    if !cli.common.quiet && result.is_ok() && !matches!(cli.command, Command::List { .. }) {
        eprintln!("finished in {:.1} s", start.elapsed().as_secs_f64());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}
